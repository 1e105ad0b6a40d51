// iptables rules for --ip-masq and --iptables-forward-rules, equivalent to flannel's
// FLANNEL-POSTRTG / FLANNEL-FWD chains
// (https://github.com/flannel-io/flannel/blob/master/pkg/trafficmngr/iptables/iptables.go), in felt's own chains:
//
//   nat    POSTROUTING -> FELT-POSTRTG (first rule)
//            RETURN      -m mark --mark 0x4000/0x4000   kube-proxy already decided (it masquerades)
//            RETURN      -s N -d N                      pod <-> pod stays unNATed
//            RETURN      ! -s N -d L                    outside -> our own pods keeps its source
//            MASQUERADE  -s N ! -d 224.0.0.0/4          pods -> outside (not multicast)
//            MASQUERADE  ! -s N -d N                    host/outside -> remote pods
//   filter FORWARD     -> FELT-FWD (first rule)
//            ACCEPT -s N, ACCEPT -d N
//
// (N = the overlay network, L = this node's subnet.) With EnableIPv6 a second instance writes the same
// chains with ip6tables for IPv6Network and the node's IPv6 subnet, multicast being ff00::/8 there, as
// flannel's masqIP6Rules and IPv6 forward rules do. Each chain is (re)written in one
// `iptables-restore --noflush` transaction, so a rebuild never leaves a half-filled chain and
// stale rules from an earlier subnet vanish. Whichever `iptables` the system has (legacy or nft)
// is used, always with -w so we wait for the xtables lock instead of failing.
import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Logger } from './log.js';
import { formatSubnet, type Subnet } from './net/cidr.js';
import { formatSubnet6, type Subnet6 } from './net/ip6.js';

export interface IpMasqOptions {
  /** The overlay network (Network, or IPv6Network for the IPv6 rules). */
  network: Subnet | Subnet6;
  /** This node's lease subnet (IPv4, or its IPv6 subnet); the same family as `network`. */
  localSubnet: Subnet | Subnet6;
  /** --ip-masq: the FELT-POSTRTG nat chain. */
  masquerade: boolean;
  /** --iptables-forward-rules: the FELT-FWD filter chain. */
  forwardRules: boolean;
  /** --iptables-resync: seconds between checks that re-add missing rules. */
  resyncSeconds: number;
  /** MASQUERADE --random-fully; default: when iptables supports it (1.6.2 and later). */
  randomFully?: boolean;
  /** The iptables command (default "iptables", "ip6tables" for IPv6 subnets); its restore tool is "<command>-restore". */
  iptables?: string;
  /** Run every iptables command inside this named network namespace (tests). */
  netns?: string;
}

export interface IpMasqStatus {
  installed: boolean;
  /** Checks done by the resync timer. */
  resyncs: number;
  /** Times a check found rules missing and put them back. */
  repairs: number;
  errors: number;
  lastError?: string;
}

export const MASQ_CHAIN = 'FELT-POSTRTG';
export const FORWARD_CHAIN = 'FELT-FWD';
const KUBE_PROXY_MARK = '0x4000/0x4000';
const MASQ_COMMENT = 'felt masq';
const FORWARD_COMMENT = 'felt forward';

/** One chain felt owns: its table, the built-in chain that jumps to it, and its rules in order. */
interface ChainSpec {
  table: 'nat' | 'filter';
  parent: string;
  chain: string;
  comment: string;
  rules: string[][];
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Finds `cmd` on PATH (or checks it when it has a "/"); undefined when absent. */
function findExecutable(cmd: string): string | undefined {
  const candidates = cmd.includes('/') ? [cmd] : (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter).map((d) => join(d, cmd));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** "iptables v1.8.9 (nf_tables)" -> true when >= 1.6.2 (the first with --random-fully). */
export function supportsRandomFully(versionText: string): boolean {
  const m = /v(\d+)\.(\d+)\.(\d+)/.exec(versionText);
  if (!m) return false;
  const [a, b, c] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return a > 1 || (a === 1 && (b > 6 || (b === 6 && c >= 2)));
}

function isSubnet6(s: Subnet | Subnet6): s is Subnet6 {
  return typeof s.ip === 'bigint';
}

function formatAny(s: Subnet | Subnet6): string {
  return isSubnet6(s) ? formatSubnet6(s) : formatSubnet(s);
}

/** Quotes an argument for an iptables-restore line. */
function quote(arg: string): string {
  return /^[A-Za-z0-9_./:!-]+$/.test(arg) ? arg : `"${arg.replace(/(["\\])/g, '\\$1')}"`;
}

export class IpMasq {
  private readonly iptables: string;
  private chains: ChainSpec[] = [];
  private timer?: NodeJS.Timeout;
  /** Serialises setup, resync checks and teardown. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly stats: IpMasqStatus = { installed: false, resyncs: 0, repairs: 0, errors: 0 };

  constructor(
    private readonly options: IpMasqOptions,
    private readonly log: Logger,
  ) {
    if (isSubnet6(options.network) !== isSubnet6(options.localSubnet)) throw new Error('IpMasq: network and localSubnet must be of one family');
    this.iptables = options.iptables ?? (isSubnet6(options.network) ? 'ip6tables' : 'iptables');
  }

  /** Installs the rules (idempotent) and starts the resync timer. */
  setup(): Promise<void> {
    return this.serial(async () => {
      await this.prepare();
      for (const spec of this.chains) {
        await this.writeChain(spec);
        await this.ensureJump(spec);
      }
      this.stats.installed = true;
      this.log.info(
        { masquerade: this.options.masquerade, forwardRules: this.options.forwardRules, network: formatAny(this.options.network), subnet: formatAny(this.options.localSubnet), iptables: this.iptables },
        'iptables rules installed',
      );
      this.startTimer();
    });
  }

  /**
   * Checks every rule and puts back whatever is missing (a chain with a missing, extra or unknown
   * rule is rewritten whole). Returns true when something was repaired.
   */
  ensure(): Promise<boolean> {
    return this.serial(async () => {
      if (this.chains.length === 0) await this.prepare();
      let repaired = false;
      for (const spec of this.chains) {
        if (!(await this.chainIntact(spec))) {
          await this.writeChain(spec);
          repaired = true;
        }
        if (await this.ensureJump(spec)) repaired = true;
      }
      if (repaired) {
        this.stats.repairs++;
        this.log.warn('iptables rules were missing or changed: restored');
      }
      return repaired;
    });
  }

  /** Stops the resync timer (the rules stay); resolves once a check in progress has finished. */
  stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    return this.queue.then(() => undefined);
  }

  /** Stops the resync timer and removes the jumps and chains. */
  teardown(): Promise<void> {
    void this.stop();
    return this.serial(async () => {
      if (this.chains.length === 0) await this.prepare();
      for (const spec of this.chains) {
        const jump = this.jumpRule(spec);
        // Every copy of the jump (an older run may have left one).
        for (let i = 0; i < 100; i++) {
          const r = await this.run(['-t', spec.table, '-D', spec.parent, ...jump]);
          if (r.code !== 0) break;
        }
        await this.run(['-t', spec.table, '-F', spec.chain]);
        await this.run(['-t', spec.table, '-X', spec.chain]);
      }
      this.stats.installed = false;
      this.log.info('iptables rules removed');
    });
  }

  status(): IpMasqStatus {
    return { ...this.stats };
  }

  /** The chains and rules this instance manages (exact iptables arguments), for tests and logs. */
  plan(): Array<{ table: string; parent: string; chain: string; rules: string[][] }> {
    return this.chains.map(({ table, parent, chain, rules }) => ({ table, parent, chain, rules: rules.map((r) => [...r]) }));
  }

  // ---- internals ---------------------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private startTimer(): void {
    if (this.timer || this.options.resyncSeconds <= 0) return;
    this.timer = setInterval(() => {
      this.stats.resyncs++;
      this.ensure().catch((err: Error) => {
        this.stats.errors++;
        this.stats.lastError = err.message;
        this.log.error({ err: err.message }, 'iptables resync failed');
      });
    }, this.options.resyncSeconds * 1000);
    this.timer.unref();
  }

  /** Finds iptables, learns whether it has --random-fully, and builds the rule list. */
  private async prepare(): Promise<void> {
    if (!findExecutable(this.iptables)) {
      throw new Error(
        `${this.iptables} not found: --ip-masq and --iptables-forward-rules need the ${isSubnet6(this.options.network) ? 'ip6tables' : 'iptables'} command ` +
          '(install the iptables package, or run with --ip-masq=false --iptables-forward-rules=false)',
      );
    }
    let randomFully = this.options.randomFully;
    if (randomFully === undefined) {
      const v = await this.exec([this.iptables, '--version']);
      randomFully = v.code === 0 && supportsRandomFully(v.stdout + v.stderr);
    }
    const n = formatAny(this.options.network);
    const l = formatAny(this.options.localSubnet);
    const multicast = isSubnet6(this.options.network) ? 'ff00::/8' : '224.0.0.0/4';
    const masq = ['-j', 'MASQUERADE', ...(randomFully ? ['--random-fully'] : [])];
    const mc = ['-m', 'comment', '--comment', MASQ_COMMENT];
    const fc = ['-m', 'comment', '--comment', FORWARD_COMMENT];
    this.chains = [];
    if (this.options.masquerade) {
      this.chains.push({
        table: 'nat',
        parent: 'POSTROUTING',
        chain: MASQ_CHAIN,
        comment: MASQ_COMMENT,
        rules: [
          ['-m', 'mark', '--mark', KUBE_PROXY_MARK, ...mc, '-j', 'RETURN'],
          ['-s', n, '-d', n, ...mc, '-j', 'RETURN'],
          ['!', '-s', n, '-d', l, ...mc, '-j', 'RETURN'],
          ['-s', n, '!', '-d', multicast, ...mc, ...masq],
          ['!', '-s', n, '-d', n, ...mc, ...masq],
        ],
      });
    }
    if (this.options.forwardRules) {
      this.chains.push({
        table: 'filter',
        parent: 'FORWARD',
        chain: FORWARD_CHAIN,
        comment: FORWARD_COMMENT,
        rules: [
          ['-s', n, ...fc, '-j', 'ACCEPT'],
          ['-d', n, ...fc, '-j', 'ACCEPT'],
        ],
      });
    }
  }

  private jumpRule(spec: ChainSpec): string[] {
    return ['-m', 'comment', '--comment', spec.comment, '-j', spec.chain];
  }

  /** Creates or replaces the whole chain atomically (a chain line in --noflush mode flushes it). */
  private async writeChain(spec: ChainSpec): Promise<void> {
    const lines = [`*${spec.table}`, `:${spec.chain} - [0:0]`];
    for (const rule of spec.rules) lines.push(['-A', spec.chain, ...rule].map(quote).join(' '));
    lines.push('COMMIT', '');
    const r = await this.exec([`${this.iptables}-restore`, '-w', '--noflush'], lines.join('\n'));
    if (r.code !== 0) {
      throw new Error(`${this.iptables}-restore (table ${spec.table}, chain ${spec.chain}) failed: ${(r.stderr || r.stdout).trim()}`);
    }
  }

  /**
   * Exactly one jump in the parent chain, inserted at the top when missing. Its position is not
   * enforced afterwards: two tools that both insist on being first would undo each other forever.
   * Returns true when it had to change something.
   */
  private async ensureJump(spec: ChainSpec): Promise<boolean> {
    const listing = await this.run(['-t', spec.table, '-S', spec.parent]);
    if (listing.code !== 0) throw new Error(`iptables -t ${spec.table} -S ${spec.parent} failed: ${listing.stderr.trim()}`);
    const target = new RegExp(`\\s-j ${spec.chain}(\\s|$)`);
    const ruleLines = listing.stdout.split('\n').filter((line) => line.startsWith('-A '));
    const jumps = ruleLines.filter((line) => target.test(line)).length;
    if (jumps === 1) return false;
    const jump = this.jumpRule(spec);
    if (jumps > 1) {
      for (let i = 1; i < jumps; i++) await this.run(['-t', spec.table, '-D', spec.parent, ...jump]);
      return true;
    }
    await this.mustRun(['-t', spec.table, '-I', spec.parent, '1', ...jump]);
    return true;
  }

  /** Every expected rule present (iptables -C) and nothing else in the chain. */
  private async chainIntact(spec: ChainSpec): Promise<boolean> {
    const listing = await this.run(['-t', spec.table, '-S', spec.chain]);
    if (listing.code !== 0) return false; // the chain is gone
    const count = listing.stdout.split('\n').filter((line) => line.startsWith('-A ')).length;
    if (count !== spec.rules.length) return false;
    for (const rule of spec.rules) {
      if ((await this.run(['-t', spec.table, '-C', spec.chain, ...rule])).code !== 0) return false;
    }
    return true;
  }

  private run(args: string[]): Promise<RunResult> {
    return this.exec([this.iptables, '-w', ...args]);
  }

  private async mustRun(args: string[]): Promise<void> {
    const r = await this.run(args);
    if (r.code !== 0) throw new Error(`${this.iptables} ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim()}`);
  }

  /** Runs argv (inside the netns when set); never rejects for an exit status. */
  private exec(argv: string[], input?: string): Promise<RunResult> {
    const full = this.options.netns ? ['ip', 'netns', 'exec', this.options.netns, ...argv] : argv;
    return new Promise((resolve, reject) => {
      const child = execFile(full[0]!, full.slice(1), { timeout: 60_000, encoding: 'utf8' }, (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
        if (e && typeof e.code === 'string') {
          reject(new Error(`${full.join(' ')}: ${e.message}`));
          return;
        }
        resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr });
      });
      // The command may exit before reading its input (EPIPE): its exit status tells what happened.
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input);
    });
  }
}
