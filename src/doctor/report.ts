// `felt doctor` output: one line per check, cause and fix under each failure; or the JSON report.
import type { CheckResult, DoctorReport, Verdict } from './types.js';

const LABEL: Record<Verdict, string> = { ok: 'ok', warn: 'WARN', fail: 'FAIL', skip: 'skip', error: 'ERROR' };

export function formatReport(r: DoctorReport): string {
  const out: string[] = [];
  const n = r.node;
  out.push(`felt doctor: node ${n.subnet ?? '(no lease known)'}${n.publicIP ? ` public ${n.publicIP}` : ''}, agent ${n.agent}`);
  const width = Math.max(...r.checks.map((c) => c.title.length), 10);
  for (const c of r.checks) {
    out.push(`${LABEL[c.verdict].padEnd(5)}  ${c.title.padEnd(width)}  ${c.summary}`);
    const indent = ' '.repeat(7 + width + 2);
    if (c.verdict === 'ok' || c.verdict === 'skip') continue;
    for (const e of c.evidence ?? []) out.push(`${indent}evidence: ${e}`);
    if (c.cause) out.push(`${indent}cause:    ${c.cause}`);
    if (c.fix) out.push(`${indent}fix:      ${c.fix}`);
  }
  const count = (v: Verdict) => r.checks.filter((c) => c.verdict === v).length;
  // The "peers" line sums up the per-peer lines: count the peers, not the summary.
  const fails = r.checks.filter((c) => c.verdict === 'fail' && c.id !== 'peers').length;
  const errors = count('error');
  const tail = `${count('ok')} ok, ${count('warn')} warning${count('warn') === 1 ? '' : 's'}, ${fails} problem${fails === 1 ? '' : 's'}, ${errors} not checked`;
  out.push('');
  out.push(fails > 0 ? `PROBLEMS FOUND: ${tail}` : errors > 0 ? `COULD NOT CHECK EVERYTHING: ${tail}` : `healthy: ${tail}`);
  return `${out.join('\n')}\n`;
}

export function reportJSON(r: DoctorReport): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}

export type { CheckResult };
