// The text report: a latency table and a throughput table, one column per path, one row per
// figure with its ratio to kernel VXLAN, then the targets marked met / MISSED / n/a. Pure.
import { dropsTotal } from './probes.js';
import { PATH_LABELS, PATH_NAMES, pathFamily, type BenchResult, type Family, type PathResult, type TargetResult, type TcpRun } from './results.js';

const DASH = '-';

function fixed(v: number | null | undefined, digits: number): string {
  return v == null || !Number.isFinite(v) ? DASH : v.toFixed(digits);
}

function withRatio(value: string, r: number | null): string {
  return r === null ? value : `${value} (${r.toFixed(2)}x)`;
}

function retrans(run: TcpRun | null): string {
  return run ? `${run.retransSegs} (${run.retransmitPct.toFixed(3)}%)` : DASH;
}

function causes(run: TcpRun): string {
  const c = run.retransmitCauses;
  return `${c.timeouts}/${c.lossProbes}/${c.dsackSegs}`;
}

function pair(a: number | null | undefined, b: number | null | undefined): string {
  if (a == null && b == null) return DASH;
  return `${fixed(a, 0)}/${fixed(b, 0)}`;
}

type Row = [string, (p: PathResult) => string];

function spread(values: readonly number[]): string {
  return values.length === 0 ? DASH : `${Math.min(...values).toFixed(0)}-${Math.max(...values).toFixed(0)}`;
}

function us(ms: number | null | undefined): string {
  return ms == null ? DASH : (ms * 1000).toFixed(0);
}

const LATENCY_ROWS: Row[] = [
  ['ping sparse p50 us', (p) => withRatio(us(p.pingSparse?.p50Ms), p.vsVxlan.sparseP50)],
  ['ping sparse p99 us', (p) => us(p.pingSparse?.p99Ms)],
  ['ping dense p50 us', (p) => withRatio(us(p.pingDense?.p50Ms), p.vsVxlan.denseP50)],
  ['ping dense p99 us', (p) => us(p.pingDense?.p99Ms)],
  ['TCP req/resp per s', (p) => withRatio(fixed(p.rr?.transactionsPerS, 0), p.vsVxlan.rrTps)],
  ['req/resp p50 us', (p) => withRatio(fixed(p.rr?.p50Us, 1), p.vsVxlan.rrP50)],
  ['req/resp p99 us', (p) => fixed(p.rr?.p99Us, 1)],
  ['req/resp runs min-max/s', (p) => (p.rr ? spread(p.rr.runs.map((r) => r.transactionsPerS)) : DASH)],
  ['agent CPU us/transaction', (p) => fixed(p.rr?.agentCpuUsPerTransaction, 1)],
  ['machine busy % (req/resp)', (p) => fixed(p.rr?.machineCpu.busyPct, 0)],
];

const THROUGHPUT_ROWS: Row[] = [
  ['1-flow TCP Gbit/s', (p) => withRatio(fixed(p.single?.gbps, 2), p.vsVxlan.singleGbps)],
  ['4-flow TCP Gbit/s', (p) => withRatio(fixed(p.multi?.gbps, 2), p.vsVxlan.multiGbps)],
  ['retransmits 1-flow', (p) => retrans(p.single)],
  ['retransmits 4-flow', (p) => retrans(p.multi)],
  ['  RTO/TLP/DSACK 1-flow', (p) => (p.single ? causes(p.single) : DASH)],
  ['kernel drops snd/rcv 1f', (p) => (p.single?.kernelDrops ? `${dropsTotal(p.single.kernelDrops.sender)}/${dropsTotal(p.single.kernelDrops.receiver)}` : DASH)],
  ['kernel drops snd/rcv 4f', (p) => (p.multi?.kernelDrops ? `${dropsTotal(p.multi.kernelDrops.sender)}/${dropsTotal(p.multi.kernelDrops.receiver)}` : DASH)],
  ['TCP RTT under load ms', (p) => fixed(p.single?.tcpMeanRttMs, 3)],
  ['iperf3 CPU snd/rcv %', (p) => pair(p.single?.cpu.hostTotal, p.single?.cpu.remoteTotal)],
  ['agent CPU snd/rcv %', (p) => (p.single?.agentCpuPct ? pair(p.single.agentCpuPct.sender, p.single.agentCpuPct.receiver) : DASH)],
  ['machine busy/softirq %', (p) => (p.single ? pair(p.single.machineCpu.busyPct, p.single.machineCpu.softirqPct) : DASH)],
  ['MTU', (p) => (p.mtu === null ? DASH : String(p.mtu))],
];

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

function measured(p: PathResult): boolean {
  return p.ok || p.single !== null || p.pingSparse !== null || p.rr !== null;
}

function formatRows(result: BenchResult, family: Family, title: string, rowSet: Row[], withErrors: boolean): string {
  const paths = PATH_NAMES.filter((n) => pathFamily(n) === family).map((n) => result.paths[n]).filter((p): p is PathResult => p !== undefined);
  const header = [title, ...paths.map((p) => PATH_LABELS[p.name])];
  const body = rowSet.map(([label, cell]) => [label, ...paths.map((p) => (measured(p) ? cell(p) : 'failed'))]);
  const rows = [header, ...body];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)) + 2);
  const lines = rows.map((r) => r.map((c, i) => pad(c, widths[i]!)).join('').trimEnd());
  lines.splice(1, 0, '-'.repeat(widths.reduce((a, b) => a + b, 0) - 2));
  if (withErrors) for (const p of paths) for (const e of p.errors) lines.push(`! ${PATH_LABELS[p.name]}: ${e}`);
  return lines.join('\n');
}

/** One latency and one throughput table per family measured (IPv4 first), ratios within the family. */
export function formatTable(result: BenchResult): string {
  const families = ([4, 6] as const).filter((f) => PATH_NAMES.some((n) => pathFamily(n) === f && result.paths[n]));
  const parts: string[] = [];
  for (const family of families) {
    const suffix = families.length > 1 || family === 6 ? ` (IPv${family})` : '';
    parts.push(formatRows(result, family, `Latency${suffix}`, LATENCY_ROWS, result.settings.latencyOnly));
    if (!result.settings.latencyOnly) parts.push(formatRows(result, family, `Throughput${suffix}`, THROUGHPUT_ROWS, true));
  }
  return parts.join('\n\n');
}

function targetValue(t: TargetResult): string {
  if (t.value === null) return 'not measured';
  const digits = t.unit === '%' ? 3 : 2;
  return t.unit === 'x' ? `${t.value.toFixed(digits)}x` : `${t.value.toFixed(digits)} ${t.unit}`;
}

export function formatTargets(targets: readonly TargetResult[]): string {
  const mark = (m: boolean | null) => (m === null ? '[ n/a  ]' : m ? '[ met  ]' : '[MISSED]');
  const width = Math.max(...targets.map((t) => t.description.length)) + 2;
  return targets.map((t) => `${mark(t.met)} ${pad(t.description, width)}${targetValue(t)}`).join('\n');
}

export function formatReport(result: BenchResult): string {
  const s = result.settings;
  return [
    `felt bench, ${result.startedAt} (${result.wallSeconds.toFixed(0)} s)`,
    `ping ${s.pingSparse.count} x ${s.pingSparse.intervalMs} ms (sparse) and ${s.pingDense.count} x ${s.pingDense.intervalMs} ms (dense), ` +
      `TCP request/response ${s.rrBytes} B each way, median of ${s.rrRuns} runs of ${s.rrSeconds} s (sockperf ping-pong)` +
      (s.latencyOnly ? '' : `, iperf3 ${s.durationS} s per run (+${s.omitS} s omitted), ${s.multiStreams}-flow = -P ${s.multiStreams}`) +
      '; ratios are to kernel VXLAN in this run',
    `${result.host.cpus} CPUs (${result.host.cpuModel}), kernel ${result.host.kernel}, load ${result.host.loadAvg1Start.toFixed(2)} -> ${result.host.loadAvg1End.toFixed(2)}`,
    '',
    formatTable(result),
    '',
    'Targets',
    formatTargets(result.targets),
    '',
    ...result.notes.map((n) => `note: ${n}`),
  ].join('\n');
}
