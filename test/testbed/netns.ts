// Network-namespace primitives for the testbed: create/delete namespaces, run commands in them,
// and make sure everything this process created is torn down, even when a test throws or the
// process is interrupted. Never touches the root namespace's addresses or routes.
// Plain Node (no vitest): compiled to dist/ and reused by bench/ and scripts/.
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** A unique per-run name prefix, `felt-<6 hex>`; every namespace of the run starts with it. */
export function runPrefix(): string {
  return `felt-${randomBytes(3).toString('hex')}`;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Throw when the command exits non-zero (default true). */
  check?: boolean;
  /** Kill the command after this long (default 60 s: only there to catch hangs). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Runs argv (no shell) and collects its output. Rejects on non-zero exit unless `check: false`. */
export function run(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [cmd, ...args] = argv;
  if (!cmd) return Promise.reject(new Error('run: empty argv'));
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: opts.env, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null;
        if (e && typeof e.code === 'string') {
          // Spawn failure (ENOENT...), not an exit status.
          reject(new Error(`${argv.join(' ')}: ${e.message}`));
          return;
        }
        const result: ExecResult = {
          code: e ? ((e.code as number | undefined) ?? null) : 0,
          signal: e?.signal ?? null,
          stdout,
          stderr,
        };
        if (result.code !== 0 && opts.check !== false) {
          const why = result.signal ? `killed by ${result.signal}` : `exit ${result.code}`;
          reject(new Error(`${argv.join(' ')}: ${why}: ${stderr.trim() || stdout.trim()}`));
          return;
        }
        resolve(result);
      },
    );
  });
}

/** `ip [-n ns] args...`; returns stdout. Without `ns` it only ever reads the root namespace. */
export async function ip(args: string[], ns?: string | Netns): Promise<string> {
  const nsName = typeof ns === 'string' ? ns : ns?.name;
  const argv = nsName ? ['ip', '-n', nsName, ...args] : ['ip', ...args];
  return (await run(argv)).stdout;
}

// ---- cleanup registry --------------------------------------------------------------------

/** Namespaces created by this process and not yet deleted. */
const liveNamespaces = new Set<string>();
/** Children spawned by this process (inside namespaces) that have not exited yet. */
const liveChildren = new Set<ChildProcess>();
/** Extra synchronous clean-up steps (e.g. removing a scratch directory), run by cleanupSync. */
const exitCleanups = new Set<() => void>();
let hooksInstalled = false;

/**
 * Registers a synchronous step for cleanupSync (process exit or a signal). Returns a function
 * that unregisters it (call it once the normal, async teardown has run).
 */
export function registerExitCleanup(fn: () => void): () => void {
  installHooks();
  exitCleanups.add(fn);
  return () => exitCleanups.delete(fn);
}

function trackChild(child: ChildProcess): void {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
  child.once('error', () => liveChildren.delete(child));
}

/** Pids of every process whose network namespace is `ns` (catches grandchildren too). */
function pidsInNamespaceSync(ns: string): number[] {
  try {
    const out = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out
      .split(/\s+/)
      .filter(Boolean)
      .map(Number)
      .filter((p) => Number.isInteger(p) && p > 0 && p !== process.pid);
  } catch {
    return [];
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Synchronous, best effort: kills every child and every process inside our namespaces, then
 * deletes the namespaces. Used from process 'exit' and signal handlers, where nothing async runs.
 */
export function cleanupSync(): void {
  for (const child of liveChildren) if (child.pid) killQuietly(child.pid, 'SIGKILL');
  liveChildren.clear();
  for (const ns of liveNamespaces) {
    for (const pid of pidsInNamespaceSync(ns)) killQuietly(pid, 'SIGKILL');
  }
  for (const ns of liveNamespaces) {
    try {
      execFileSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
    } catch {
      // Already deleted, or busy; nothing more we can do synchronously.
    }
  }
  liveNamespaces.clear();
  for (const fn of exitCleanups) {
    try {
      fn();
    } catch {
      // Best effort.
    }
  }
  exitCleanups.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  cleanupSync();
  // Re-raise with the default action so the exit status still says "killed by signal".
  process.removeListener('SIGINT', onSigint);
  process.removeListener('SIGTERM', onSigterm);
  process.kill(process.pid, signal);
}
const onSigint = (): void => onSignal('SIGINT');
const onSigterm = (): void => onSignal('SIGTERM');

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once('exit', cleanupSync);
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigterm);
}

/** Namespace names this process created and has not deleted yet (for leak checks). */
export function liveNamespaceNames(): string[] {
  return [...liveNamespaces];
}

/** Every namespace on the machine whose name starts with `prefix`. */
export async function listNamespaces(prefix = 'felt-'): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

// ---- Netns -------------------------------------------------------------------------------

const NAME_RE = /^felt-[a-z0-9-]{1,40}$/;

/** One network namespace created by this process. */
export class Netns {
  private deleted = false;
  private readonly children = new Set<ChildProcess>();

  private constructor(readonly name: string) {}

  /** Creates the namespace (name must start with `felt-`) and brings its loopback up. */
  static async create(name: string): Promise<Netns> {
    if (!NAME_RE.test(name)) throw new Error(`namespace name "${name}" must match ${NAME_RE}`);
    installHooks();
    await run(['ip', 'netns', 'add', name]);
    liveNamespaces.add(name);
    const ns = new Netns(name);
    await ns.ip(['link', 'set', 'lo', 'up']);
    return ns;
  }

  /** `ip -n <name> args...` */
  ip(args: string[]): Promise<string> {
    return ip(args, this.name);
  }

  /** Runs argv inside the namespace (`ip netns exec`) and collects its output. */
  exec(argv: string[], opts?: ExecOptions): Promise<ExecResult> {
    return run(['ip', 'netns', 'exec', this.name, ...argv], opts);
  }

  /**
   * Starts argv inside the namespace. `ip netns exec` execs the command in place, so the child's
   * pid is the command's pid and signals reach it directly. Tracked: killed on delete()/exit.
   */
  spawn(argv: string[], opts: SpawnOptions = {}): ChildProcess {
    if (this.deleted) throw new Error(`namespace ${this.name} is deleted`);
    const child = spawn('ip', ['netns', 'exec', this.name, ...argv], { stdio: 'pipe', ...opts });
    trackChild(child);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    child.once('error', () => this.children.delete(child));
    return child;
  }

  /** Writes a sysctl inside the namespace, e.g. sysctl('net.ipv4.ip_forward', '1'). */
  async sysctl(key: string, value: string): Promise<void> {
    await this.exec(['sysctl', '-q', '-w', `${key}=${value}`]);
  }

  /** Pids of every process living in this namespace. */
  pids(): number[] {
    return this.deleted ? [] : pidsInNamespaceSync(this.name);
  }

  /** Kills everything inside, then deletes the namespace. Idempotent. */
  async delete(): Promise<void> {
    if (this.deleted) return;
    this.deleted = true;
    for (const child of this.children) if (child.pid) killQuietly(child.pid, 'SIGKILL');
    for (const pid of pidsInNamespaceSync(this.name)) killQuietly(pid, 'SIGKILL');
    await waitUntil(() => pidsInNamespaceSync(this.name).length === 0, 5_000);
    await run(['ip', 'netns', 'delete', this.name], { check: false });
    liveNamespaces.delete(this.name);
  }

  get isDeleted(): boolean {
    return this.deleted;
  }
}

async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---- ping --------------------------------------------------------------------------------

export interface PingResult {
  /** True when at least one reply came back. */
  ok: boolean;
  transmitted: number;
  received: number;
  /** ICMP errors ping reported ("+N errors"). */
  errors: number;
  lossPct: number;
  /** RTT summary in ms, when any reply came back. */
  rtt?: { min: number; avg: number; max: number; mdev: number };
  /** A "Destination Net Unreachable" (ICMPv6: "Destination unreachable: No route") came back. */
  netUnreachable: boolean;
  exitCode: number | null;
  raw: string;
}

export interface PingOptions {
  count?: number;
  /** Seconds between probes (root allows < 0.2). */
  intervalS?: number;
  /** Seconds to wait for each reply. */
  waitS?: number;
  /** ICMP payload size in bytes. */
  size?: number;
  /**
   * Whole seconds (ping -w): keep probing every interval until `count` replies or this deadline.
   * ping still stops at the first ICMP error it gets back.
   */
  deadlineS?: number;
  /** ping -4 / ping -6 (default: the family of `target`). */
  family?: 4 | 6;
}

/** Parses iputils ping output. Pure, so it can be unit-tested. */
export function parsePing(raw: string, exitCode: number | null = null): PingResult {
  const stats = /(\d+) packets transmitted, (\d+) (?:packets )?received(?:, \+(\d+) errors)?(?:, [^,]*)?, ([\d.]+)% packet loss/.exec(raw);
  const rttM = /rtt min\/avg\/max\/mdev = ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(raw);
  const transmitted = stats ? Number(stats[1]) : 0;
  const received = stats ? Number(stats[2]) : 0;
  return {
    ok: received > 0,
    transmitted,
    received,
    errors: stats?.[3] ? Number(stats[3]) : 0,
    lossPct: stats ? Number(stats[4]) : 100,
    rtt: rttM ? { min: Number(rttM[1]), avg: Number(rttM[2]), max: Number(rttM[3]), mdev: Number(rttM[4]) } : undefined,
    // IPv4 "Destination Net Unreachable"; IPv6 "Destination unreachable: No route".
    netUnreachable: /Destination Net Unreachable|Destination unreachable: No route/i.test(raw),
    exitCode,
    raw,
  };
}

/** Pings `target` from inside `from`. Never throws on loss; look at the result. */
export async function ping(from: Netns, target: string, opts: PingOptions = {}): Promise<PingResult> {
  const count = opts.count ?? 3;
  const interval = opts.intervalS ?? 0.2;
  const wait = opts.waitS ?? 1;
  const argv = ['ping', ...(opts.family ? [`-${opts.family}`] : []), '-n', '-c', String(count), '-i', String(interval), '-W', String(wait)];
  if (opts.size !== undefined) argv.push('-s', String(opts.size));
  if (opts.deadlineS !== undefined) argv.push('-w', String(Math.max(1, Math.ceil(opts.deadlineS))));
  argv.push(target);
  const timeoutMs = ((opts.deadlineS ?? 0) + count * interval + wait + 10) * 1000;
  const r = await from.exec(argv, { check: false, timeoutMs });
  return parsePing(r.stdout + r.stderr, r.code);
}
