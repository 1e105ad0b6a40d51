// A hand-written SVG chart of a throughput result: Gbit/s bars (1-flow and 4-flow) per path on the
// left, idle ping RTT (avg bar, p50 and p99 marks) per path on the right. No dependencies.
import { PATH_LABELS, PATH_NAMES, type BenchResult, type PathResult } from './results.js';

const W = 960;
const H = 450;
const TOP = 70;
const BOTTOM = H - 100;
const COLORS = { single: '#3b6ea8', multi: '#9cc3e6', rtt: '#e8833a', axis: '#444', grid: '#e3e3e3', text: '#222', muted: '#777' };

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function text(x: number, y: number, content: string, attrs = ''): string {
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(content)}</text>`;
}

/** A round axis maximum >= v with a tick step from 1, 2, 2.5, 5 x 10^k (about 5 ticks). */
export function niceScale(v: number): { max: number; step: number } {
  if (!(v > 0) || !Number.isFinite(v)) return { max: 1, step: 0.2 };
  const rough = v / 5;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= rough)!;
  return { max: Math.ceil(v / step - 1e-9) * step, step };
}

/** Enough decimals to tell the ticks apart: step 5 -> 0, 2.5 -> 1, 0.25 -> 2, 0.02 -> 2. */
function tickLabel(v: number, step: number): string {
  const exp = Math.floor(Math.log10(step));
  const lead = step / 10 ** exp;
  const digits = Math.max(0, -exp + (Math.abs(lead - Math.round(lead)) < 1e-9 ? 0 : 1));
  return v.toFixed(digits);
}

interface Panel {
  x0: number;
  x1: number;
  title: string;
  unit: string;
  max: number;
}

/** Axes, grid lines and tick labels of one panel; returns the SVG and the value -> y mapping. */
function axes(p: Panel): { svg: string[]; y: (v: number) => number } {
  const { max, step } = niceScale(p.max);
  const y = (v: number) => BOTTOM - ((BOTTOM - TOP) * Math.min(v, max)) / max;
  const svg: string[] = [];
  for (let v = 0; v <= max + step / 2; v += step) {
    svg.push(`<line x1="${p.x0}" x2="${p.x1}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="${v === 0 ? COLORS.axis : COLORS.grid}"/>`);
    svg.push(text(p.x0 - 6, y(v) + 4, tickLabel(v, step), `text-anchor="end" font-size="11" fill="${COLORS.muted}"`));
  }
  svg.push(text((p.x0 + p.x1) / 2, TOP - 28, p.title, `text-anchor="middle" font-size="14" font-weight="bold" fill="${COLORS.text}"`));
  svg.push(text(p.x0 - 6, TOP - 10, p.unit, `text-anchor="end" font-size="11" fill="${COLORS.muted}"`));
  return { svg, y };
}

function bar(x: number, w: number, y: number, color: string, title: string): string {
  const h = Math.max(0, BOTTOM - y);
  return `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${h.toFixed(1)}" fill="${color}"><title>${esc(title)}</title></rect>`;
}

function ratioNote(r: number | null): string {
  return r === null ? '' : `${r.toFixed(2)}x VXLAN`;
}

function throughputPanel(paths: PathResult[], x0: number, x1: number): string[] {
  const top = Math.max(0, ...paths.flatMap((p) => [p.single?.gbps ?? 0, p.multi?.gbps ?? 0]));
  const { svg, y } = axes({ x0, x1, title: 'TCP throughput', unit: 'Gbit/s', max: top * 1.12 });
  const slot = (x1 - x0) / Math.max(1, paths.length);
  const bw = Math.min(44, slot * 0.3);
  paths.forEach((p, i) => {
    const cx = x0 + slot * (i + 0.5);
    const runs: [number | undefined, string, number][] = [
      [p.single?.gbps, COLORS.single, cx - bw - 2],
      [p.multi?.gbps, COLORS.multi, cx + 2],
    ];
    for (const [v, color, x] of runs) {
      if (v === undefined) continue;
      svg.push(bar(x, bw, y(v), color, `${PATH_LABELS[p.name]}: ${v.toFixed(2)} Gbit/s`));
      svg.push(text(x + bw / 2, y(v) - 4, v.toFixed(v < 10 ? 2 : 1), `text-anchor="middle" font-size="11" fill="${COLORS.text}"`));
    }
    if (!p.single && !p.multi) svg.push(text(cx, BOTTOM - 8, 'failed', `text-anchor="middle" font-size="12" fill="#b00"`));
    svg.push(text(cx, BOTTOM + 16, PATH_LABELS[p.name], `text-anchor="middle" font-size="12" fill="${COLORS.text}"`));
    const r = p.vsVxlan;
    const ratios = r.singleGbps === null && r.multiGbps === null ? '' : `${r.singleGbps?.toFixed(2) ?? '-'}x / ${r.multiGbps?.toFixed(2) ?? '-'}x`;
    svg.push(text(cx, BOTTOM + 30, ratios, `text-anchor="middle" font-size="10.5" fill="${COLORS.muted}"`));
  });
  const lx = x0 + 10;
  svg.push(`<rect x="${lx}" y="${TOP - 2}" width="12" height="12" fill="${COLORS.single}"/>`);
  svg.push(text(lx + 16, TOP + 8, '1 flow', `font-size="11" fill="${COLORS.text}"`));
  svg.push(`<rect x="${lx + 70}" y="${TOP - 2}" width="12" height="12" fill="${COLORS.multi}"/>`);
  svg.push(text(lx + 86, TOP + 8, '4 flows', `font-size="11" fill="${COLORS.text}"`));
  svg.push(text(x1, TOP + 8, 'under each path: 1-flow / 4-flow vs kernel VXLAN', `text-anchor="end" font-size="10.5" fill="${COLORS.muted}"`));
  return svg;
}

function rttPanel(paths: PathResult[], x0: number, x1: number): string[] {
  // Scaled to the averages: one slow reply must not flatten every bar. A p99 off the scale is
  // drawn as a whisker to the top with its value written there.
  const top = Math.max(0, ...paths.map((p) => Math.max(p.ping?.avgMs ?? 0, p.ping?.p50Ms ?? 0)));
  const { svg, y } = axes({ x0, x1, title: 'Ping RTT (idle)', unit: 'ms', max: top * 1.6 });
  const slot = (x1 - x0) / Math.max(1, paths.length);
  const bw = Math.min(34, slot * 0.4);
  paths.forEach((p, i) => {
    const cx = x0 + slot * (i + 0.5);
    const ping = p.ping;
    if (ping) {
      svg.push(bar(cx - bw / 2, bw, y(ping.avgMs), COLORS.rtt, `${PATH_LABELS[p.name]}: avg ${ping.avgMs.toFixed(3)} ms`));
      svg.push(`<line x1="${(cx - bw / 2).toFixed(1)}" x2="${(cx + bw / 2).toFixed(1)}" y1="${y(ping.p50Ms).toFixed(1)}" y2="${y(ping.p50Ms).toFixed(1)}" stroke="#fff" stroke-width="2"><title>p50 ${ping.p50Ms.toFixed(3)} ms</title></line>`);
      const capY = y(ping.p99Ms);
      svg.push(`<line x1="${cx.toFixed(1)}" x2="${cx.toFixed(1)}" y1="${y(ping.avgMs).toFixed(1)}" y2="${capY.toFixed(1)}" stroke="${COLORS.axis}"><title>p99 ${ping.p99Ms.toFixed(3)} ms</title></line>`);
      if (capY <= TOP + 0.5) {
        svg.push(`<path d="M${(cx - 5).toFixed(1)} ${(TOP + 6).toFixed(1)} L${cx.toFixed(1)} ${TOP.toFixed(1)} L${(cx + 5).toFixed(1)} ${(TOP + 6).toFixed(1)} Z" fill="${COLORS.axis}"/>`);
        svg.push(text(cx, TOP - 4, `p99 ${ping.p99Ms.toFixed(2)}`, `text-anchor="middle" font-size="10" fill="${COLORS.text}"`));
      } else {
        svg.push(`<line x1="${(cx - 6).toFixed(1)}" x2="${(cx + 6).toFixed(1)}" y1="${capY.toFixed(1)}" y2="${capY.toFixed(1)}" stroke="${COLORS.axis}" stroke-width="2"/>`);
      }
    } else {
      svg.push(text(cx, BOTTOM - 8, 'failed', `text-anchor="middle" font-size="12" fill="#b00"`));
    }
    svg.push(text(cx, BOTTOM + 16, PATH_LABELS[p.name], `text-anchor="middle" font-size="11" fill="${COLORS.text}"`));
    if (ping) svg.push(text(cx, BOTTOM + 30, `p50 ${ping.p50Ms.toFixed(3)}`, `text-anchor="middle" font-size="10.5" fill="${COLORS.text}"`));
    svg.push(text(cx, BOTTOM + 44, ratioNote(p.vsVxlan.rttP50), `text-anchor="middle" font-size="10.5" fill="${COLORS.muted}"`));
  });
  svg.push(text((x0 + x1) / 2, TOP - 14, 'bar = avg, white line = p50, whisker = p99', `text-anchor="middle" font-size="10.5" fill="${COLORS.muted}"`));
  return svg;
}

export function renderChart(result: BenchResult): string {
  const paths = PATH_NAMES.map((n) => result.paths[n]).filter((p): p is PathResult => p !== undefined);
  const s = result.settings;
  const met = result.targets.filter((t) => t.met === true).length;
  const judged = result.targets.filter((t) => t.met !== null).length;
  const body = [
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    text(20, 26, `felt throughput bench — ${result.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}`, `font-size="16" font-weight="bold" fill="${COLORS.text}"`),
    text(W - 20, 26, judged > 0 ? `targets met: ${met} of ${judged}` : 'no felt path measured: no targets judged', `text-anchor="end" font-size="13" fill="${COLORS.text}"`),
    ...throughputPanel(paths, 70, 520),
    ...rttPanel(paths, 600, 935),
    text(20, H - 30, `iperf3 ${s.durationS} s per run, ping ${s.pingCount} x ${s.pingIntervalMs} ms; ${result.host.cpus} CPUs, kernel ${result.host.kernel}; veth underlay, MTU ${result.testbed.underlayMtu ?? '?'}.`, `font-size="11" fill="${COLORS.muted}"`),
    text(20, H - 14, 'Shared 2-vCPU machine: absolute numbers are noisy; compare the ratios to kernel VXLAN measured in the same run.', `font-size="11" fill="${COLORS.muted}"`),
  ];
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`,
    ...body.map((l) => `  ${l}`),
    '</svg>',
    '',
  ].join('\n');
}
