// One line of `felt doctor`: a check, its verdict, and for a failure the cause and the fix.

/** ok: passed; warn: works but deserves a look; fail: a problem; skip: does not apply; error: could not check. */
export type Verdict = 'ok' | 'warn' | 'fail' | 'skip' | 'error';

export interface CheckResult {
  /** Stable identifier for --json readers: "tun-device", "agent", ..., "peer". */
  id: string;
  /** Short label printed in the second column. */
  title: string;
  verdict: Verdict;
  /** One line: what was found. */
  summary: string;
  /** What was observed that led to the verdict (peer checks, mostly). */
  evidence?: string[];
  cause?: string;
  fix?: string;
  /** Peer checks: which peer. */
  peer?: { subnet: string; publicIP: string; /** when the lease has one */ publicIPv6?: string };
}

export interface DoctorReport {
  /** 0 healthy, 1 a problem found, 2 could not check. */
  exitCode: 0 | 1 | 2;
  node: { subnet: string | null; publicIP: string | null; agent: string };
  checks: CheckResult[];
  generatedAt: string;
}

export function exitCodeOf(checks: CheckResult[]): 0 | 1 | 2 {
  if (checks.some((c) => c.verdict === 'fail')) return 1;
  if (checks.some((c) => c.verdict === 'error')) return 2;
  return 0;
}
