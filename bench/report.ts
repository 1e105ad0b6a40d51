// The text report: one column per path, one row per figure with its ratio to kernel VXLAN,
// then the targets marked met / MISSED / n/a. Pure: returns the text.
import { dropsTotal } from './probes.js';
import { PATH_LABELS, PATH_NAMES, type BenchResult, type PathResult, type TargetResult, type TcpRun } from './results.js';

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

const ROWS: Row[] = [
  ['1-flow TCP Gbit/s', (p) => withRatio(fixed(p.single?.gbps, 2), p.vsVxlan.singleGbps)],
  ['4-flow TCP Gbit/s', (p) => withRatio(fixed(p.multi?.gbps, 2), p.vsVxlan.multiGbps)],
  ['retransmits 1-flow', (p) => retrans(p.single)],
  ['retransmits 4-flow', (p) => retrans(p.multi)],
  ['  RTO/TLP/DSACK 1-flow', (p) => (p.single ? causes(p.single) : DASH)],
  ['kernel drops snd/rcv 1f', (p) => (p.single?.kernelDrops ? `${dropsTotal(p.single.kernelDrops.sender)}/${dropsTotal(p.single.kernelDrops.receiver)}` : DASH)],
  ['kernel drops snd/rcv 4f', (p) => (p.multi?.kernelDrops ? `${dropsTotal(p.multi.kernelDrops.sender)}/${dropsTotal(p.multi.kernelDrops.receiver)}` : DASH)],
  ['ping RTT avg ms', (p) => withRatio(fixed(p.ping?.avgMs, 3), p.vsVxlan.rttAvg)],
  ['ping RTT p50 ms', (p) => withRatio(fixed(p.ping?.p50Ms, 3), p.vsVxlan.rttP50)],
  ['ping RTT p99 ms', (p) => fixed(p.ping?.p99Ms, 3)],
  ['TCP RTT under load ms', (p) => fixed(p.single?.tcpMeanRttMs, 3)],
  ['iperf3 CPU snd/rcv %', (p) => pair(p.single?.cpu.hostTotal, p.single?.cpu.remoteTotal)],
  ['agent CPU snd/rcv %', (p) => (p.single?.agentCpuPct ? pair(p.single.agentCpuPct.sender, p.single.agentCpuPct.receiver) : DASH)],
  ['machine busy/softirq %', (p) => (p.single ? pair(p.single.machineCpu.busyPct, p.single.machineCpu.softirqPct) : DASH)],
  ['MTU', (p) => (p.mtu === null ? DASH : String(p.mtu))],
];

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

export function formatTable(result: BenchResult): string {
  const paths = PATH_NAMES.map((n) => result.paths[n]).filter((p): p is PathResult => p !== undefined);
  const header = ['', ...paths.map((p) => PATH_LABELS[p.name])];
  const body = ROWS.map(([label, cell]) => [label, ...paths.map((p) => (p.ok || p.single || p.ping ? cell(p) : 'failed'))]);
  const rows = [header, ...body];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)) + 2);
  const lines = rows.map((r) => r.map((c, i) => pad(c, widths[i]!)).join('').trimEnd());
  lines.splice(1, 0, '-'.repeat(widths.reduce((a, b) => a + b, 0) - 2));
  for (const p of paths) for (const e of p.errors) lines.push(`! ${PATH_LABELS[p.name]}: ${e}`);
  return lines.join('\n');
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
    `felt throughput bench, ${result.startedAt} (${result.wallSeconds.toFixed(0)} s)`,
    `iperf3 ${s.durationS} s per run (+${s.omitS} s omitted), ${s.multiStreams}-flow = -P ${s.multiStreams}, ` +
      `ping ${s.pingCount} x ${s.pingIntervalMs} ms; ratios are to kernel VXLAN in this run`,
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
