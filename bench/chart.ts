// A hand-written SVG chart of a bench result, three panels: Gbit/s bars (1-flow and 4-flow) per
// path, idle ping RTT (sparse and dense, p50 bars with p99 whiskers), and TCP request/response
// transactions per second. No dependencies.
import { PATH_LABELS, PATH_NAMES, pathFamily, type BenchResult, type Family, type PathResult } from './results.js';

const W = 1400;
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

/** Median RTT bars (sparse and dense ping side by side) with a p99 whisker, in microseconds. */
function rttPanel(paths: PathResult[], x0: number, x1: number): string[] {
  // Scaled to the medians: one slow reply must not flatten every bar. A p99 off the scale is
  // drawn as a whisker to the top with its value written there.
  const us = (ms: number | undefined) => (ms === undefined ? undefined : ms * 1000);
  const top = Math.max(0, ...paths.flatMap((p) => [us(p.pingSparse?.p50Ms) ?? 0, us(p.pingDense?.p50Ms) ?? 0]));
  const { svg, y } = axes({ x0, x1, title: 'Ping RTT p50 (idle)', unit: 'us', max: top * 1.5 });
  const slot = (x1 - x0) / Math.max(1, paths.length);
  const bw = Math.min(26, slot * 0.3);
  paths.forEach((p, i) => {
    const cx = x0 + slot * (i + 0.5);
    const runs: [typeof p.pingSparse, string, number][] = [
      [p.pingSparse, COLORS.single, cx - bw - 2],
      [p.pingDense, COLORS.multi, cx + 2],
    ];
    for (const [ping, color, x] of runs) {
      if (!ping) continue;
      const p50 = ping.p50Ms * 1000;
      const p99 = ping.p99Ms * 1000;
      svg.push(bar(x, bw, y(p50), color, `${PATH_LABELS[p.name]}: p50 ${p50.toFixed(0)} us, p99 ${p99.toFixed(0)} us`));
      const mid = x + bw / 2;
      const capY = y(p99);
      svg.push(`<line x1="${mid.toFixed(1)}" x2="${mid.toFixed(1)}" y1="${y(p50).toFixed(1)}" y2="${capY.toFixed(1)}" stroke="${COLORS.axis}"/>`);
      if (capY <= TOP + 0.5) {
        svg.push(text(mid, TOP - 4, p99.toFixed(0), `text-anchor="middle" font-size="9.5" fill="${COLORS.text}"`));
      } else {
        svg.push(`<line x1="${(mid - 4).toFixed(1)}" x2="${(mid + 4).toFixed(1)}" y1="${capY.toFixed(1)}" y2="${capY.toFixed(1)}" stroke="${COLORS.axis}" stroke-width="2"/>`);
      }
      svg.push(text(mid, y(p50) - 4, p50.toFixed(0), `text-anchor="middle" font-size="10" fill="${COLORS.text}"`));
    }
    if (!p.pingSparse && !p.pingDense) svg.push(text(cx, BOTTOM - 8, 'failed', `text-anchor="middle" font-size="12" fill="#b00"`));
    svg.push(text(cx, BOTTOM + 16, PATH_LABELS[p.name], `text-anchor="middle" font-size="11" fill="${COLORS.text}"`));
    const r = p.vsVxlan;
    const ratios = r.sparseP50 === null && r.denseP50 === null ? '' : `${r.sparseP50?.toFixed(1) ?? '-'}x / ${r.denseP50?.toFixed(1) ?? '-'}x`;
    svg.push(text(cx, BOTTOM + 30, ratios, `text-anchor="middle" font-size="10.5" fill="${COLORS.muted}"`));
  });
  const lx = x0 + 6;
  svg.push(`<rect x="${lx}" y="${TOP - 2}" width="12" height="12" fill="${COLORS.single}"/>`);
  svg.push(text(lx + 16, TOP + 8, 'every 200 ms', `font-size="11" fill="${COLORS.text}"`));
  svg.push(`<rect x="${lx + 100}" y="${TOP - 2}" width="12" height="12" fill="${COLORS.multi}"/>`);
  svg.push(text(lx + 116, TOP + 8, 'every 5 ms', `font-size="11" fill="${COLORS.text}"`));
  svg.push(text((x0 + x1) / 2, TOP - 14, 'bar = p50, whisker = p99; under each: sparse / dense vs VXLAN', `text-anchor="middle" font-size="10.5" fill="${COLORS.muted}"`));
  return svg;
}

/** Back-to-back TCP request/response: transactions per second, p50 latency written under. */
function rrPanel(paths: PathResult[], x0: number, x1: number): string[] {
  const top = Math.max(0, ...paths.map((p) => p.rr?.transactionsPerS ?? 0));
  const { svg, y } = axes({ x0, x1, title: 'TCP request/response', unit: 'per s', max: top * 1.15 });
  const slot = (x1 - x0) / Math.max(1, paths.length);
  const bw = Math.min(34, slot * 0.4);
  paths.forEach((p, i) => {
    const cx = x0 + slot * (i + 0.5);
    const rr = p.rr;
    if (rr) {
      svg.push(bar(cx - bw / 2, bw, y(rr.transactionsPerS), COLORS.rtt, `${PATH_LABELS[p.name]}: ${rr.transactionsPerS.toFixed(0)}/s, p50 ${rr.p50Us.toFixed(1)} us`));
      svg.push(text(cx, y(rr.transactionsPerS) - 4, `${(rr.transactionsPerS / 1000).toFixed(1)}k`, `text-anchor="middle" font-size="11" fill="${COLORS.text}"`));
    } else {
      svg.push(text(cx, BOTTOM - 8, 'failed', `text-anchor="middle" font-size="12" fill="#b00"`));
    }
    svg.push(text(cx, BOTTOM + 16, PATH_LABELS[p.name], `text-anchor="middle" font-size="11" fill="${COLORS.text}"`));
    if (rr) svg.push(text(cx, BOTTOM + 30, `p50 ${rr.p50Us.toFixed(0)} us`, `text-anchor="middle" font-size="10.5" fill="${COLORS.text}"`));
    svg.push(text(cx, BOTTOM + 44, ratioNote(p.vsVxlan.rrTps), `text-anchor="middle" font-size="10.5" fill="${COLORS.muted}"`));
  });
  svg.push(text((x0 + x1) / 2, TOP - 14, '64 B each way, back to back, one connection', `text-anchor="middle" font-size="10.5" fill="${COLORS.muted}"`));
  return svg;
}

/** The chart of one family's paths (IPv4 by default; the IPv6 paths get a chart of their own). */
export function renderChart(result: BenchResult, family: Family = 4): string {
  const paths = PATH_NAMES.filter((n) => pathFamily(n) === family).map((n) => result.paths[n]).filter((p): p is PathResult => p !== undefined);
  const testbed = family === 6 ? result.testbed6 ?? result.testbed : result.testbed;
  const s = result.settings;
  const met = result.targets.filter((t) => t.met === true).length;
  const judged = result.targets.filter((t) => t.met !== null).length;
  const body = [
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    text(20, 26, `felt bench${family === 6 ? ' (IPv6 over an IPv6 underlay)' : ''} — ${result.startedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}`, `font-size="16" font-weight="bold" fill="${COLORS.text}"`),
    family === 6
      ? text(W - 20, 26, 'no targets for IPv6: ratios to kernel VXLAN over IPv6 only', `text-anchor="end" font-size="13" fill="${COLORS.text}"`)
      : text(W - 20, 26, judged > 0 ? `targets met: ${met} of ${judged}` : 'no felt path measured: no targets judged', `text-anchor="end" font-size="13" fill="${COLORS.text}"`),
    ...throughputPanel(paths, 70, 500),
    ...rttPanel(paths, 570, 960),
    ...rrPanel(paths, 1030, 1375),
    text(20, H - 30, `iperf3 ${s.durationS} s per run, ping ${s.pingSparse.count} x ${s.pingSparse.intervalMs} ms and ${s.pingDense.count} x ${s.pingDense.intervalMs} ms, request/response median of ${s.rrRuns} x ${s.rrSeconds} s; ${result.host.cpus} CPUs, kernel ${result.host.kernel}; veth underlay, MTU ${testbed.underlayMtu ?? '?'}.`, `font-size="11" fill="${COLORS.muted}"`),
    text(20, H - 14, 'Shared 2-vCPU machine: absolute numbers are noisy; compare the ratios to kernel VXLAN measured in the same run.', `font-size="11" fill="${COLORS.muted}"`),
  ];
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`,
    ...body.map((l) => `  ${l}`),
    '</svg>',
    '',
  ].join('\n');
}
