// What the bench reads besides iperf3: TCP segment counters of a namespace, CPU time of a
// process and of the whole machine, and ping RTTs with percentiles. Parsers are pure.
import { readFile } from 'node:fs/promises';
import type { Netns } from '../test/testbed/netns.js';
import { parsePing } from '../test/testbed/netns.js';

// ---- TCP counters (/proc/net/snmp and /proc/net/netstat of a namespace) ------------------------

export interface TcpCounters {
  /** Tcp OutSegs: segments sent, retransmissions included. */
  outSegs: number;
  /** Tcp RetransSegs: segments retransmitted (tail loss probes included). */
  retransSegs: number;
  /** TcpExt TCPTimeouts: retransmission timer expiries. */
  timeouts: number;
  /** TcpExt TCPLossProbes: tail loss probes sent (each also counts as a retransmit). */
  lossProbes: number;
  /** TcpExt TCPDSACKRecvSegs: segments the receiver reported as duplicates (spurious retransmits). */
  dsackSegs: number;
}

/** Reads one `<prefix>` header/value line pair (the /proc/net/snmp and netstat format). */
function counterLine(text: string, prefix: string): Map<string, number> {
  const lines = text.split('\n').filter((l) => l.startsWith(`${prefix} `));
  if (lines.length < 2) throw new Error(`no ${prefix.replace(':', '')} lines in /proc/net/snmp or netstat`);
  const names = lines[0]!.trim().split(/\s+/).slice(1);
  const values = lines[1]!.trim().split(/\s+/).slice(1).map(Number);
  return new Map(names.map((n, i) => [n, values[i]!]));
}

/** Parses `cat /proc/net/snmp /proc/net/netstat`; missing TcpExt fields read as 0. */
export function parseTcpCounters(text: string): TcpCounters {
  const tcp = counterLine(text, 'Tcp:');
  const get = (name: string): number => {
    const v = tcp.get(name);
    if (v === undefined || !Number.isFinite(v)) throw new Error(`/proc/net/snmp: no Tcp ${name}`);
    return v;
  };
  let ext = new Map<string, number>();
  try {
    ext = counterLine(text, 'TcpExt:');
  } catch {
    // netstat missing: keep the Tcp figures.
  }
  const opt = (name: string): number => (Number.isFinite(ext.get(name)) ? ext.get(name)! : 0);
  return {
    outSegs: get('OutSegs'),
    retransSegs: get('RetransSegs'),
    timeouts: opt('TCPTimeouts'),
    lossProbes: opt('TCPLossProbes'),
    dsackSegs: opt('TCPDSACKRecvSegs'),
  };
}

/** These files are per network namespace: read them from a process inside `ns`. */
export async function readTcpCounters(ns: Netns): Promise<TcpCounters> {
  return parseTcpCounters((await ns.exec(['cat', '/proc/net/snmp', '/proc/net/netstat'])).stdout);
}

export function tcpDelta(before: TcpCounters, after: TcpCounters): TcpCounters {
  return {
    outSegs: after.outSegs - before.outSegs,
    retransSegs: after.retransSegs - before.retransSegs,
    timeouts: after.timeouts - before.timeouts,
    lossProbes: after.lossProbes - before.lossProbes,
    dsackSegs: after.dsackSegs - before.dsackSegs,
  };
}

// ---- kernel drops on a tunnel node -----------------------------------------------------------------

/** Packets the kernel dropped on a node around a tunnel: UDP socket errors and the tunnel device. */
export interface NodeDrops {
  /** Udp InErrors (datagrams that could not be delivered: full receive buffer, bad checksum...). */
  udpInErrors: number;
  /** Udp RcvbufErrors: datagrams dropped because a socket's receive buffer was full. */
  udpRcvbufErrors: number;
  /** Udp SndbufErrors: sends refused for lack of send buffer. */
  udpSndbufErrors: number;
  /** Tunnel device (flannel0 / flannel.1) TX drops: for a TUN, packets the agent did not read in time. */
  devTxDropped: number;
  /** Tunnel device RX drops. */
  devRxDropped: number;
}

/**
 * Reads the Udp: line of /proc/net/snmp plus the Udp6 counters of /proc/net/snmp6 (an IPv6
 * underlay's datagrams count there), and the device's stats64 (`ip -j -s link`).
 */
export function parseNodeDrops(snmp: string, ipJson: string, snmp6 = ''): NodeDrops {
  const udp = counterLine(snmp, 'Udp:');
  const udp6 = new Map<string, number>();
  for (const line of snmp6.split('\n')) {
    const m = /^Udp6(\w+)\s+(\d+)$/.exec(line.trim());
    if (m) udp6.set(m[1]!, Number(m[2]));
  }
  const n = (name: string): number => (Number.isFinite(udp.get(name)) ? udp.get(name)! : 0) + (udp6.get(name) ?? 0);
  const link = (JSON.parse(ipJson) as { stats64?: { rx?: { dropped?: number }; tx?: { dropped?: number } } }[])[0];
  return {
    udpInErrors: n('InErrors'),
    udpRcvbufErrors: n('RcvbufErrors'),
    udpSndbufErrors: n('SndbufErrors'),
    devTxDropped: link?.stats64?.tx?.dropped ?? 0,
    devRxDropped: link?.stats64?.rx?.dropped ?? 0,
  };
}

export async function readNodeDrops(ns: Netns, device: string): Promise<NodeDrops> {
  const [snmp, snmp6, link] = await Promise.all([
    ns.exec(['cat', '/proc/net/snmp']),
    ns.exec(['cat', '/proc/net/snmp6'], { check: false }),
    ns.ip(['-j', '-s', 'link', 'show', 'dev', device]),
  ]);
  return parseNodeDrops(snmp.stdout, link, snmp6.stdout);
}

/** after - before, field by field. */
export function dropsDelta(before: NodeDrops, after: NodeDrops): NodeDrops {
  const out = { ...after };
  for (const k of Object.keys(out) as (keyof NodeDrops)[]) out[k] = after[k] - before[k];
  return out;
}

export function dropsTotal(d: NodeDrops): number {
  return d.udpInErrors + d.udpSndbufErrors + d.devTxDropped + d.devRxDropped; // RcvbufErrors is inside InErrors
}

// ---- CPU time -----------------------------------------------------------------------------------

/** Clock ticks per second for /proc/<pid>/stat and /proc/stat (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** utime + stime of a process (all its threads), in seconds; null when it is gone. */
export async function processCpuSeconds(pid: number): Promise<number | null> {
  try {
    return parseProcStat(await readFile(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** Fields 14 and 15 (utime, stime) of /proc/<pid>/stat; the command name may contain spaces. */
export function parseProcStat(text: string): number {
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('/proc/<pid>/stat: cannot read utime/stime');
  return (utime + stime) / USER_HZ;
}

export interface MachineCpu {
  /** Jiffies by kind, summed over all CPUs. */
  total: number;
  idle: number;
  softirq: number;
}

export function parseProcStatCpu(text: string): MachineCpu {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat: no cpu line');
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already inside user/nice).
  const total = v.slice(0, 8).reduce((a, b) => a + (b || 0), 0);
  return { total, idle: (v[3] ?? 0) + (v[4] ?? 0), softirq: v[6] ?? 0 };
}

export async function readMachineCpu(): Promise<MachineCpu> {
  return parseProcStatCpu(await readFile('/proc/stat', 'utf8'));
}

export interface MachineCpuUse {
  /** Share of all CPUs busy (not idle/iowait), %. */
  busyPct: number;
  /** Share of all CPUs spent in softirq (where kernel networking runs), %. */
  softirqPct: number;
}

export function machineCpuUse(before: MachineCpu, after: MachineCpu): MachineCpuUse {
  const total = after.total - before.total;
  if (total <= 0) return { busyPct: 0, softirqPct: 0 };
  return {
    busyPct: (100 * (total - (after.idle - before.idle))) / total,
    softirqPct: (100 * (after.softirq - before.softirq)) / total,
  };
}

// ---- ping ---------------------------------------------------------------------------------------

export interface PingStats {
  sent: number;
  received: number;
  lossPct: number;
  minMs: number;
  avgMs: number;
  maxMs: number;
  mdevMs: number;
  p50Ms: number;
  p99Ms: number;
}

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Per-reply RTTs (`time=0.051 ms`) plus iputils' summary line. */
export function parsePingStats(raw: string): PingStats {
  const times = [...raw.matchAll(/time[=<]([\d.]+) ?ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  const summary = parsePing(raw);
  if (times.length === 0 || !summary.rtt) {
    throw new Error(`ping: no replies (${summary.transmitted} sent, ${summary.lossPct}% loss)`);
  }
  return {
    sent: summary.transmitted,
    received: summary.received,
    lossPct: summary.lossPct,
    minMs: summary.rtt.min,
    avgMs: summary.rtt.avg,
    maxMs: summary.rtt.max,
    mdevMs: summary.rtt.mdev,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
  };
}

/** `count` echo requests `intervalS` apart from `from` to `target`. */
export async function pingStats(from: Netns, target: string, count: number, intervalS: number): Promise<PingStats> {
  // Not -q: the per-reply lines give the percentiles.
  const argv = ['ping', '-n', '-c', String(count), '-i', String(intervalS), '-W', '1', target];
  const r = await from.exec(argv, { check: false, timeoutMs: (count * intervalS + 15) * 1000 });
  return parsePingStats(r.stdout + r.stderr);
}

/** Pings until one reply comes back or `timeoutMs` passes; true when the path works. */
export async function waitForPing(from: Netns, target: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await from.exec(['ping', '-n', '-c', '1', '-W', '1', target], { check: false, timeoutMs: 5_000 });
    if (r.code === 0) return true;
    if (Date.now() > deadline) return false;
  }
}
