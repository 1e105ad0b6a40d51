// The shape of bench/results/latest.json (documented field by field in bench/README.md) and the
// throughput targets, judged from it. Pure: no I/O here.
import type { IperfResult } from './iperf.js';
import type { RrResult, RrSample } from './latency.js';
import type { MachineCpuUse, NodeDrops, PingStats } from './probes.js';

// felt-bench/4: request/response is the median of settings.rrRuns runs of settings.rrSeconds, with
// every run in rr.runs.
// felt-bench/3 adds the IPv6 paths (underlay6, vxlan6, native6, js6), settings.families and
// testbed6; every felt-bench/2 field keeps its name and meaning.
export const RESULT_SCHEMA = 'felt-bench/4';

/** The kinds of path, as --only names them. */
export const PATH_KINDS = ['underlay', 'vxlan', 'native', 'js'] as const;
export type PathKind = (typeof PATH_KINDS)[number];

/** Address family of the pod traffic and the underlay (IPv6 paths run on an IPv6-only underlay). */
export type Family = 4 | 6;

/** The paths, in display order (table columns, chart bars): the IPv4 ones, then the IPv6 ones. */
export const PATH_NAMES = ['underlay', 'vxlan', 'native', 'js', 'underlay6', 'vxlan6', 'native6', 'js6'] as const;
export type PathName = (typeof PATH_NAMES)[number];

/**
 * The order paths are measured in: felt native first, so its agents lease the pod subnets that
 * VXLAN then reuses (same pods), and the js agents take the same leases back after it. IPv4 first,
 * on its own testbed, then IPv6 on an IPv6-only one.
 */
export const MEASURE_ORDER: readonly PathName[] = ['underlay', 'native', 'vxlan', 'js', 'underlay6', 'native6', 'vxlan6', 'js6'];

export const PATH_LABELS: Record<PathName, string> = {
  underlay: 'underlay',
  vxlan: 'kernel VXLAN',
  native: 'felt native',
  js: 'felt js',
  underlay6: 'underlay v6',
  vxlan6: 'kernel VXLAN v6',
  native6: 'felt native v6',
  js6: 'felt js v6',
};

export function pathFamily(name: PathName): Family {
  return name.endsWith('6') ? 6 : 4;
}

export function pathKind(name: PathName): PathKind {
  return name.replace(/6$/, '') as PathKind;
}

/** The path of `kind` carrying `family`. */
export function pathName(kind: PathKind, family: Family): PathName {
  return (family === 6 ? `${kind}6` : kind) as PathName;
}

/** One iperf3 run plus what the bench counted around it. */
export interface TcpRun extends IperfResult {
  /** TCP segments sent by the sender's namespace during the run (/proc/net/snmp OutSegs delta). */
  segmentsSent: number;
  /** TCP segments retransmitted by the sender's namespace during the run (RetransSegs delta). */
  retransSegs: number;
  /** 100 * retransSegs / segmentsSent. */
  retransmitPct: number;
  /** Why TCP retransmitted (sender namespace, TcpExt deltas): RTO expiries, tail loss probes, and
   *  segments the receiver reported as duplicates (DSACK: the retransmit was spurious). */
  retransmitCauses: { timeouts: number; lossProbes: number; dsackSegs: number };
  /** Wall time of the iperf3 client, s (includes connect and the omitted seconds). */
  wallSeconds: number;
  /** CPU of the felt agent processes over the run, % of one core; null on kernel paths. */
  agentCpuPct: { sender: number | null; receiver: number | null } | null;
  /** Whole machine over the run (every process, every engineer's): busy and softirq share, %. */
  machineCpu: MachineCpuUse;
  /** Tunnel paths: packets the kernel dropped on the sender's and the receiver's node during the run. */
  kernelDrops: { sender: NodeDrops; receiver: NodeDrops } | null;
  /** felt only: drops the agents counted during the run, by "encap:<reason>"/"decap:<reason>". */
  agentDrops: { sender: Record<string, number>; receiver: Record<string, number> } | null;
}

export interface PathResult {
  name: PathName;
  label: string;
  /** True when set-up and every measurement of the path succeeded. */
  ok: boolean;
  /** What failed (set-up or a measurement), one line each. */
  errors: string[];
  clientIP: string | null;
  serverIP: string | null;
  /** MTU of the sending interface (pod eth0 for tunnels, node eth0 for the underlay). */
  mtu: number | null;
  /** Idle ping RTT with echo requests far apart (every thread on the path asleep in between). */
  pingSparse: PingStats | null;
  /** Idle ping RTT with echo requests close together. */
  pingDense: PingStats | null;
  /** Back-to-back TCP request/response on one connection. */
  rr: RrRun | null;
  single: TcpRun | null;
  multi: TcpRun | null;
  /** This path's figures divided by kernel VXLAN's in the same run (null when either is missing). */
  vsVxlan: VsVxlan;
  /** Set-up facts: VXLAN device settings, felt engine, pod subnets, agent features. */
  info: Record<string, unknown>;
}

/** Request/response: the median of several short runs, every run's rate, and the agents' CPU. */
export interface RrRun extends RrResult {
  /** Every run's rate and p50, in the order measured (the fields above are the median run's). */
  runs: RrSample[];
  /** CPU time of both felt agents over all runs divided by all their transactions, microseconds;
   *  null on kernel paths. One transaction crosses each agent twice (request and reply). */
  agentCpuUsPerTransaction: number | null;
  /** Whole machine over the run, %. */
  machineCpu: MachineCpuUse;
}

export interface VsVxlan {
  singleGbps: number | null;
  multiGbps: number | null;
  sparseP50: number | null;
  denseP50: number | null;
  rrTps: number | null;
  rrP50: number | null;
}

export interface TargetResult {
  id: string;
  description: string;
  /** The measured figure the target is judged on, or null when it was not measured. */
  value: number | null;
  unit: string;
  /** The bound: value >= limit for 'min', value <= limit for 'max', value < limit for 'below'. */
  limit: number;
  kind: 'min' | 'max' | 'below';
  /** null: not measured in this run (path left out with --only, or it failed). */
  met: boolean | null;
}

export interface BenchSettings {
  durationS: number;
  omitS: number;
  multiStreams: number;
  /** Ping at a sparse and a dense interval: count and interval of each. */
  pingSparse: { count: number; intervalMs: number };
  pingDense: { count: number; intervalMs: number };
  /** Request/response: rrRuns runs of rrSeconds each (the median run is reported), message size. */
  rrSeconds: number;
  rrRuns: number;
  rrBytes: number;
  /** Latency only: no iperf3 runs. */
  latencyOnly: boolean;
  quick: boolean;
  /** Paths measured, in measurement order. */
  only: PathName[];
  /** Families measured (--family). */
  families: Family[];
}

export interface HostInfo {
  kernel: string;
  cpuModel: string;
  cpus: number;
  node: string;
  iperf3: string;
  loadAvg1Start: number;
  loadAvg1End: number;
}

export interface BenchResult {
  schema: typeof RESULT_SCHEMA;
  startedAt: string;
  finishedAt: string;
  wallSeconds: number;
  settings: BenchSettings;
  host: HostInfo;
  testbed: { prefix: string; underlay: string; underlayMtu: number | null };
  /** The IPv6-only testbed of the IPv6 paths, when they ran. */
  testbed6?: { prefix: string; underlay: string; underlayMtu: number | null };
  /** In measurement order; a path left out with --only is absent. */
  paths: Partial<Record<PathName, PathResult>>;
  targets: TargetResult[];
  notes: string[];
}

export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0) return null;
  return a / b;
}

/** Fills in vsVxlan for every path from the VXLAN path of the same run and family. */
export function computeRatios(paths: Partial<Record<PathName, PathResult>>): void {
  for (const name of PATH_NAMES) {
    const p = paths[name];
    if (!p) continue;
    const vx = paths[pathName('vxlan', pathFamily(name))];
    p.vsVxlan = {
      singleGbps: ratio(p.single?.gbps, vx?.single?.gbps),
      multiGbps: ratio(p.multi?.gbps, vx?.multi?.gbps),
      sparseP50: ratio(p.pingSparse?.p50Ms, vx?.pingSparse?.p50Ms),
      denseP50: ratio(p.pingDense?.p50Ms, vx?.pingDense?.p50Ms),
      rrTps: ratio(p.rr?.transactionsPerS, vx?.rr?.transactionsPerS),
      rrP50: ratio(p.rr?.p50Us, vx?.rr?.p50Us),
    };
  }
}

/** Worst retransmit share over the 1-flow and 4-flow runs; null unless both ran. */
function worstRetransmitPct(p: PathResult | undefined): number | null {
  if (!p?.single || !p.multi) return null;
  return Math.max(p.single.retransmitPct, p.multi.retransmitPct);
}

function judge(value: number | null, kind: TargetResult['kind'], limit: number): boolean | null {
  if (value === null || !Number.isFinite(value)) return null;
  if (kind === 'min') return value >= limit;
  if (kind === 'max') return value <= limit;
  return value < limit;
}

/** The throughput and latency targets, as ratios to kernel VXLAN in the same run (IPv4 paths; IPv6 has none). */
export function evaluateTargets(paths: Partial<Record<PathName, PathResult>>): TargetResult[] {
  const t = (id: string, description: string, value: number | null, unit: string, kind: TargetResult['kind'], limit: number): TargetResult => ({
    id, description, value, unit, limit, kind, met: judge(value, kind, limit),
  });
  const native = paths.native;
  const js = paths.js;
  // Latency is judged on medians: on a shared machine one preempted reply can move an average by 2x.
  return [
    t('native-single-vs-vxlan', 'felt native 1-flow TCP >= 0.55x kernel VXLAN', native?.vsVxlan.singleGbps ?? null, 'x', 'min', 0.55),
    t('native-retransmits', 'felt native retransmits < 0.1% of segments sent (1-flow and 4-flow)', worstRetransmitPct(native), '%', 'below', 0.1),
    t('native-sparse-rtt', 'felt native sparse ping RTT (p50) <= 2.5x kernel VXLAN', native?.vsVxlan.sparseP50 ?? null, 'x', 'max', 2.5),
    t('native-dense-rtt', 'felt native dense ping RTT (p50) <= 8x kernel VXLAN', native?.vsVxlan.denseP50 ?? null, 'x', 'max', 8),
    t('native-rr', 'felt native TCP request/response >= 0.5x kernel VXLAN transactions/s', native?.vsVxlan.rrTps ?? null, 'x', 'min', 0.5),
    t('native-rr-moonshot', 'felt native TCP request/response >= 0.7x kernel VXLAN (moonshot)', native?.vsVxlan.rrTps ?? null, 'x', 'min', 0.7),
    t('js-single', 'felt js 1-flow TCP >= 1 Gbit/s', js?.single?.gbps ?? null, 'Gbit/s', 'min', 1),
    t('js-retransmits', 'felt js retransmits < 0.1% of segments sent (1-flow and 4-flow)', worstRetransmitPct(js), '%', 'below', 0.1),
    t('js-sparse-rtt', 'felt js sparse ping RTT (p50) <= 2x felt native', ratio(js?.pingSparse?.p50Ms, native?.pingSparse?.p50Ms), 'x', 'max', 2),
    t('js-dense-rtt', 'felt js dense ping RTT (p50) <= 2x felt native', ratio(js?.pingDense?.p50Ms, native?.pingDense?.p50Ms), 'x', 'max', 2),
  ];
}
