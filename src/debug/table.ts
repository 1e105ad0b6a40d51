// /leases?format=table and `felt leases`: the lease document as aligned plain text for a terminal.
import type { LeaseView, LeasesView, PeerView, SourceView } from './view.js';
import type { PeerProbeView, ProbeCounts, ProbesView } from '../probe/view.js';
import { alignColumns, formatAgo, formatBytes, formatCount, formatDuration } from './format.js';

function sourceText(s: SourceView): string {
  if (s.kind === 'etcd') return `etcd rev ${s.modRevision}${s.etcdLeaseId ? ` lease ${s.etcdLeaseId}` : ' no-lease'}`;
  return `kube node ${s.node}`;
}

export function expiresText(l: Pick<LeaseView, 'expiryState' | 'expiresInSeconds'>): string {
  switch (l.expiryState) {
    case 'none':
      return 'never';
    case 'expired':
      return 'EXPIRED';
    case 'expiring':
      return `${formatDuration(l.expiresInSeconds ?? 0)} (!)`;
    default:
      return formatDuration(l.expiresInSeconds ?? 0);
  }
}

function dropsText(drops: Record<string, number>): string {
  const parts = Object.entries(drops)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${formatCount(n)}`);
  return parts.length ? parts.join(', ') : 'none';
}

function peerCells(p: PeerView | null): string[] {
  if (!p) return ['-', '-', '-', '-', '-', '-', '-'];
  return [
    formatCount(p.tx.packets),
    formatBytes(p.tx.bytes),
    formatCount(p.rx.packets),
    formatBytes(p.rx.bytes),
    p.dropsTotal > 0 ? `${formatCount(p.dropsTotal)} (${dropsText(p.drops)})` : '0',
    formatAgo(p.lastTxSecondsAgo),
    formatAgo(p.lastRxSecondsAgo),
  ];
}

/** "ok 0.42ms", "UNREACHABLE 1m02s (port-unreachable from 192.168.77.13)", "unknown". */
export function probeText(p: PeerProbeView | null): string {
  if (!p) return '-';
  const since = p.sinceSecondsAgo !== null ? ` ${formatDuration(p.sinceSecondsAgo)}` : '';
  if (p.state === 'reachable') return `ok ${p.rttP50Ms !== null ? `${formatRtt(p.rttP50Ms)}` : ''}`.trim();
  if (p.state === 'unreachable') {
    const why = p.evidence ? ` (${p.evidence.kind} from ${p.evidence.from})` : '';
    return `UNREACHABLE${since}${why}`;
  }
  return 'unknown';
}

/** A lease's probe cell: the IPv4 probe's text, the IPv6 one after it as "v6 ..." on a dual-stack
 *  peer, the IPv6 one alone on an IPv6-only overlay (no IPv4 subnet). */
function familyCells(l: LeaseView, text: (p: PeerProbeView | null) => string): string {
  const p6 = l.probe6 ?? null;
  if (!p6) return text(l.probe ?? null);
  if (l.subnet === null) return text(p6);
  return `${text(l.probe ?? null)}, v6 ${text(p6)}`;
}

export function pathMtuText(p: PeerProbeView | null): string {
  if (!p) return '-';
  if (p.pathMtu.state === 'ok') return `ok ${p.pathMtu.size ?? ''}`.trim();
  if (p.pathMtu.state === 'failed') return `FAIL ${p.pathMtu.size ?? ''}`.trim();
  return '?';
}

/** 0.4213 -> "0.42ms", 12.5 -> "12.5ms". */
export function formatRtt(ms: number): string {
  return `${ms < 10 ? ms.toFixed(2) : ms.toFixed(1)}ms`;
}

function summaryLines(v: LeasesView): string[] {
  const rows: string[][] = [];
  if (v.node) {
    const n = v.node;
    rows.push([
      'node',
      `${n.subnet ?? n.subnet6 ?? '-'} public ${n.publicIP}  tun ${n.tunName} mtu ${n.mtu} port ${n.port}  engine ${n.engine}` +
        (v.ready !== null ? `  ${v.ready ? 'ready' : 'NOT READY'}` : '') +
        (v.uptimeSeconds !== null ? `  up ${formatDuration(v.uptimeSeconds)}` : ''),
    ]);
    // An IPv6-only overlay has no IPv4 network: its IPv6 one is on the ipv6 line.
    rows.push(['network', n.network ?? 'none (IPv6-only overlay)']);
    // Dual-stack only: an IPv4-only node's summary stays as it was.
    if (n.subnet6 !== null || n.publicIPv6 !== null) {
      rows.push(['ipv6', `${n.subnet6 ?? 'no IPv6 subnet'} public ${n.publicIPv6 ?? 'none'}${n.network6 ? `  network ${n.network6}` : ''}`]);
    }
  } else if (v.ready !== null) {
    rows.push(['node', `no lease yet  ${v.ready ? 'ready' : 'NOT READY'}`]);
  }
  const s = v.store;
  if (v.ready === null) {
    // Not an agent's view (e.g. `felt leases` reading etcd): only the list revision means anything.
    rows.push(['store', `${s.backend}${s.lastRevision !== null ? ` revision ${s.lastRevision}` : ''}`]);
    return alignColumns(rows.map(([k, val]) => [`${k}:`, val!]));
  }
  rows.push([
    'store',
    `${s.backend} ${s.connected ? 'connected' : 'DISCONNECTED'}` +
      (s.lastRevision !== null ? `  revision ${s.lastRevision}` : '') +
      `${s.lastRelistSecondsAgo !== null ? `  listed ${formatAgo(s.lastRelistSecondsAgo)}` : '  not listed yet'}  relists ${s.relists}` +
      `  errors ${s.errors}  renewals ${s.renewals} (${s.renewalFailures} failed)`,
  ]);
  if (s.lastError) rows.push(['last error', s.lastError]);
  const e = v.leaseEvents;
  rows.push(['events', `added ${e.added}  removed ${e.removed}  snapshots ${e.snapshots}  reacquired ${e.reacquired}`]);
  const d = v.datapath;
  if (d) {
    rows.push([
      'traffic',
      `tx ${formatCount(d.encap.packets)} pkts ${formatBytes(d.encap.bytes)}  rx ${formatCount(d.decap.packets)} pkts ${formatBytes(d.decap.bytes)}` +
        `  icmp sent ${formatCount(d.icmpSent)}${d.icmpRateLimited !== null ? ` (rate-limited ${formatCount(d.icmpRateLimited)})` : ''}`,
    ]);
    rows.push(['drops tx', dropsText(d.drops.encap)]);
    rows.push(['drops rx', dropsText(d.drops.decap)]);
  }
  const p = v.probes;
  if (p) {
    rows.push([
      'probes',
      !p.enabled ? 'off (--probe=false)'
      : p.error && p.sent.small === 0 ? `not running: ${p.error}`
      : `${probeCountsText(p)}  (every ${p.intervalSeconds}s, at most ${p.maxRate}/s)`,
    ]);
  }
  return alignColumns(rows.map(([k, val]) => [`${k}:`, val!]));
}

function countsText(n: ProbeCounts): string {
  return `${n.reachable} reachable  ${n.unreachable} unreachable  ${n.unknown} unknown${n.pathMtuFailing ? `  ${n.pathMtuFailing} failing full-size` : ''}`;
}

/** IPv4 counts as before; a node probing IPv6 too shows each family ("ipv4 ...  ipv6 ..."), an
 *  IPv6-only one (no IPv4 targets) only "ipv6 ...". */
function probeCountsText(p: ProbesView): string {
  if (!p.peers6) return countsText(p.peers);
  const n4 = p.peers.reachable + p.peers.unreachable + p.peers.unknown;
  return [...(n4 > 0 ? [`ipv4 ${countsText(p.peers)}`] : []), `ipv6 ${countsText(p.peers6)}`].join('  ');
}

/** The IPv6 subnet cell; a stock flannel UDP node's IPv6 subnet is marked: felt sends it IPv4 only. */
function subnet6Text(l: LeaseView): string {
  if (l.subnet6 === null || l.subnet6 === undefined) return '-';
  return l.ipv6Carried === false ? `${l.subnet6} (not carried)` : l.subnet6;
}

/** Renders the lease document as aligned text (one line per lease, numbers right-aligned). */
export function formatLeaseTable(v: LeasesView): string {
  const withPath = v.datapath !== null;
  const withProbes = v.probes !== null && v.probes !== undefined && v.probes.enabled;
  // IPv6 columns only when some lease has an IPv6 half: IPv4-only output is unchanged.
  const withIPv6 = v.leases.some((l) => (l.subnet6 ?? null) !== null || (l.publicIPv6 ?? null) !== null);
  const header = ['', 'SUBNET', 'PUBLIC IP', ...(withIPv6 ? ['IPV6 SUBNET', 'PUBLIC IPV6'] : []), 'EXPIRES IN'];
  if (withProbes) header.push('PROBE', 'FULL-SIZE');
  if (withPath) header.push('TX PKTS', 'TX BYTES', 'RX PKTS', 'RX BYTES', 'DROPS', 'LAST TX', 'LAST RX');
  header.push('SOURCE');
  const rows = [header];
  for (const l of v.leases) {
    const row = [l.self ? '*' : '', l.subnet ?? '-', l.publicIP, ...(withIPv6 ? [subnet6Text(l), l.publicIPv6 ?? '-'] : []), expiresText(l)];
    if (withProbes) row.push(l.self ? 'self' : familyCells(l, probeText), l.self ? '' : familyCells(l, pathMtuText));
    if (withPath) row.push(...peerCells(l.datapath));
    row.push(sourceText(l.source));
    rows.push(row);
  }
  const six = withIPv6 ? 2 : 0;
  const shift = (withProbes ? 2 : 0) + six;
  const right = new Set(withPath ? [3 + six, 4 + shift, 5 + shift, 6 + shift, 7 + shift] : [3 + six]);

  const out = summaryLines(v);
  out.push('');
  if (v.leases.length === 0) {
    out.push('no leases');
  } else {
    out.push(...alignColumns(rows, right));
    out.push('', `${v.leases.length} lease${v.leases.length === 1 ? '' : 's'}${v.leases.some((l) => l.self) ? '; * = this node' : ''}`);
  }

  const strays = v.datapath?.unmatchedPeers ?? [];
  if (strays.length > 0) {
    out.push('', 'counters of peers with no current lease:');
    const prow = [['PUBLIC IP', 'TX PKTS', 'TX BYTES', 'RX PKTS', 'RX BYTES', 'DROPS', 'LAST TX', 'LAST RX']];
    for (const p of strays) prow.push([p.publicIP, ...peerCells(p)]);
    out.push(...alignColumns(prow, new Set([1, 2, 3, 4])));
  }
  return `${out.join('\n')}\n`;
}
