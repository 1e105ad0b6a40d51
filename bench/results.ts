// The shape of bench/results/latest.json (documented field by field in bench/README.md) and the
// throughput targets, judged from it. Pure: no I/O here.
import type { IperfResult } from './iperf.js';
import type { MachineCpuUse, NodeDrops, PingStats } from './probes.js';

export const RESULT_SCHEMA = 'felt-bench-throughput/1';

/** The paths, in display order (table columns, chart bars). */
export const PATH_NAMES = ['underlay', 'vxlan', 'native', 'js'] as const;
export type PathName = (typeof PATH_NAMES)[number];

/**
 * The order paths are measured in: felt native first, so its agents lease the pod subnets that
 * VXLAN then reuses (same pods), and the js agents take the same leases back after it.
 */
export const MEASURE_ORDER: readonly PathName[] = ['underlay', 'native', 'vxlan', 'js'];

export const PATH_LABELS: Record<PathName, string> = {
  underlay: 'underlay',
  vxlan: 'kernel VXLAN',
  native: 'felt native',
  js: 'felt js',
};

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
  /** Idle RTT before the TCP runs. */
  ping: PingStats | null;
  single: TcpRun | null;
  multi: TcpRun | null;
  /** This path's figures divided by kernel VXLAN's in the same run (null when either is missing). */
  vsVxlan: { singleGbps: number | null; multiGbps: number | null; rttAvg: number | null; rttP50: number | null };
  /** Set-up facts: VXLAN device settings, felt engine, pod subnets, agent features. */
  info: Record<string, unknown>;
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
  pingCount: number;
  pingIntervalMs: number;
  quick: boolean;
  only: PathName[];
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
  /** In measurement order; a path left out with --only is absent. */
  paths: Partial<Record<PathName, PathResult>>;
  targets: TargetResult[];
  notes: string[];
}

export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b <= 0) return null;
  return a / b;
}

/** Fills in vsVxlan for every path from the VXLAN path of the same run. */
export function computeRatios(paths: Partial<Record<PathName, PathResult>>): void {
  const vx = paths.vxlan;
  for (const name of PATH_NAMES) {
    const p = paths[name];
    if (!p) continue;
    p.vsVxlan = {
      singleGbps: ratio(p.single?.gbps, vx?.single?.gbps),
      multiGbps: ratio(p.multi?.gbps, vx?.multi?.gbps),
      rttAvg: ratio(p.ping?.avgMs, vx?.ping?.avgMs),
      rttP50: ratio(p.ping?.p50Ms, vx?.ping?.p50Ms),
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

/** The throughput targets of DESIGN.md "How we measure" / the bench issue. */
export function evaluateTargets(paths: Partial<Record<PathName, PathResult>>): TargetResult[] {
  const t = (id: string, description: string, value: number | null, unit: string, kind: TargetResult['kind'], limit: number): TargetResult => ({
    id, description, value, unit, limit, kind, met: judge(value, kind, limit),
  });
  const native = paths.native;
  const js = paths.js;
  return [
    t('native-single-vs-vxlan', 'felt native 1-flow TCP >= 0.5x kernel VXLAN', native?.vsVxlan.singleGbps ?? null, 'x', 'min', 0.5),
    t('native-retransmits', 'felt native retransmits < 0.1% of segments sent (1-flow and 4-flow)', worstRetransmitPct(native), '%', 'below', 0.1),
    // Judged on the median: on a shared machine one preempted reply can move the average by 2x.
    t('native-rtt-vs-vxlan', 'felt native ping RTT (median) <= 2x kernel VXLAN', native?.vsVxlan.rttP50 ?? null, 'x', 'max', 2),
    t('js-single', 'felt js 1-flow TCP >= 1 Gbit/s', js?.single?.gbps ?? null, 'Gbit/s', 'min', 1),
    t('js-retransmits', 'felt js retransmits < 0.1% of segments sent (1-flow and 4-flow)', worstRetransmitPct(js), '%', 'below', 0.1),
  ];
}
