// /leases as a self-contained HTML page (no external assets). A few lines of inline JS re-fetch
// the page every 2 s and swap in the new #root, so the table stays live without a reload and
// keeps the scroll position; without JS a <noscript> meta refresh does the same job.
import { DROP_REASONS, type DropReason } from '../datapath/types.js';
import { formatAgo, formatBytes, formatCount, formatDuration } from './format.js';
import type { LeaseView, LeasesView, PeerView } from './view.js';
import type { PeerProbeView } from '../probe/view.js';
import { formatRtt } from './table.js';

export const REFRESH_MS = 2000;

const REASON_HELP: Record<DropReason, string> = {
  'no-route': 'destination in no lease (ICMP net-unreachable sent back)',
  'unknown-peer': 'outer source is not the PublicIP of a current lease',
  'spoofed-source': "inner source outside the sending lease's subnet",
  malformed: 'not a valid IPv4 packet',
  truncated: 'shorter than its headers claim',
  'ttl-expired': 'TTL ran out',
  oversize: 'larger than the tunnel MTU or the receive buffer',
  'not-ip': 'not IPv4 or IPv6, or IPv6 while the cluster has no IPv6 network',
  'send-error': 'the UDP send failed',
  'tun-write-error': 'writing into the TUN failed',
  'own-subnet': 'destination is in our own subnet (would loop)',
  'ext-header': 'IPv6 extension headers too long, truncated or not forwarded',
  'no-underlay': 'the peer has no underlay address of a family this node sends on',
};

export function escapeHtml(value: unknown): string {
  return String(value)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const e = escapeHtml;

function reasonTitle(reason: string): string {
  return REASON_HELP[reason as DropReason] ?? reason;
}

function badge(text: string, kind: 'ok' | 'warn' | 'bad' | 'info' | 'muted', title?: string): string {
  return `<span class="badge ${kind}"${title ? ` title="${e(title)}"` : ''}>${e(text)}</span>`;
}

function header(v: LeasesView): string {
  const n = v.node;
  const s = v.store;
  const badges: string[] = [];
  if (v.ready !== null) badges.push(v.ready ? badge('ready', 'ok') : badge('not ready', 'warn', '/readyz answers 503'));
  const engine = v.datapath?.engine ?? n?.engine;
  if (engine) badges.push(badge(`engine ${engine}`, 'info'));
  badges.push(
    s.connected
      ? badge(`${s.backend} connected`, s.errors > 0 ? 'warn' : 'ok', s.lastError ? `last error: ${s.lastError}` : undefined)
      : badge(`${s.backend} disconnected`, 'bad', s.lastError ?? undefined),
  );
  const title = n
    ? `<span class="subnet">${e(n.subnet ?? n.subnet6 ?? '-')}</span><span class="sep">·</span>${e(n.publicIP)}`
    : '<span class="subnet">no lease yet</span>';
  const facts = n
    ? [n.network ? `network ${n.network}` : 'IPv6-only overlay', ...(n.network6 ? [`IPv6 network ${n.network6}`] : []), ...(n.subnet6 ? [`IPv6 subnet ${n.subnet6}`] : []), ...(n.publicIPv6 ? [`public IPv6 ${n.publicIPv6}`] : []), `tun ${n.tunName}`, `MTU ${n.mtu}`, `UDP port ${n.port}`, n.expiresInSeconds !== null ? `lease expires in ${formatDuration(n.expiresInSeconds)}` : 'lease never expires']
    : [];
  if (v.uptimeSeconds !== null) facts.push(`up ${formatDuration(v.uptimeSeconds)}`);
  return `<header>
  <div class="brand"><span class="logo">felt</span> <span class="what">lease table</span></div>
  <h1>${title}</h1>
  <div class="facts">${facts.map((f) => `<span>${e(f)}</span>`).join('')}</div>
  <div class="badges">${badges.join('')}</div>
</header>`;
}

function banners(v: LeasesView): string {
  const out: string[] = [];
  if (!v.store.connected) {
    out.push(`<div class="banner bad"><b>Lease store disconnected.</b> Peers added or removed meanwhile are not seen until it reconnects and relists.${v.store.lastError ? ` Last error: <code>${e(v.store.lastError)}</code>` : ''}</div>`);
  } else if (v.store.lastError && v.store.errors > 0) {
    out.push(`<div class="banner warn"><b>${formatCount(v.store.errors)} store error${v.store.errors === 1 ? '' : 's'}</b> so far. Last: <code>${e(v.store.lastError)}</code></div>`);
  }
  if (v.ready === false) out.push('<div class="banner warn"><b>Not ready:</b> no lease held yet or the data path is not running.</div>');
  const unreachable = v.leases.filter((l) => l.probe?.state === 'unreachable' || l.probe6?.state === 'unreachable');
  if (unreachable.length > 0) {
    const list = unreachable.slice(0, 5).map((l) => `${l.subnet ?? l.subnet6 ?? '-'} (${l.publicIP})`).join(', ');
    out.push(`<div class="banner bad"><b>${unreachable.length} peer${unreachable.length === 1 ? '' : 's'} unreachable</b> through the overlay: ${e(list)}${unreachable.length > 5 ? ', …' : ''}. Run <code>felt doctor</code> on this node for the likely cause.</div>`);
  }
  const expired = v.leases.filter((l) => l.expiryState === 'expired').length;
  if (expired > 0) out.push(`<div class="banner bad"><b>${expired} expired lease${expired === 1 ? '' : 's'}</b> still in the table.</div>`);
  return out.join('\n');
}

function card(label: string, value: string, sub: string, kind = ''): string {
  return `<div class="card ${kind}"><div class="label">${e(label)}</div><div class="value">${value}</div><div class="sub">${sub}</div></div>`;
}

function cards(v: LeasesView): string {
  const d = v.datapath;
  const s = v.store;
  const ev = v.leaseEvents;
  const out = [
    card('Leases', formatCount(v.leaseCount), `${formatCount(ev.added)} added · ${formatCount(ev.removed)} removed${ev.reacquired ? ` · ${formatCount(ev.reacquired)} re-acquired` : ''}`),
  ];
  if (d) {
    out.push(card('TX · encap', `${formatCount(d.encap.packets)} <small>pkts</small>`, e(formatBytes(d.encap.bytes))));
    out.push(card('RX · decap', `${formatCount(d.decap.packets)} <small>pkts</small>`, e(formatBytes(d.decap.bytes))));
    const dropped = d.dropsTotal.encap + d.dropsTotal.decap;
    out.push(card('Drops', formatCount(dropped), `tx ${formatCount(d.dropsTotal.encap)} · rx ${formatCount(d.dropsTotal.decap)}`, dropped > 0 ? 'alert' : ''));
    out.push(card('ICMP sent', formatCount(d.icmpSent), d.icmpRateLimited !== null ? `${formatCount(d.icmpRateLimited)} rate-limited` : 'errors back to senders'));
  } else {
    out.push(card('Data path', '—', 'not running'));
  }
  const p = v.probes;
  if (p && p.enabled) {
    // A node probing IPv6 too gets a card per family (IPv4 left out when it has no IPv4 targets).
    const v4 = p.peers.reachable + p.peers.unreachable + p.peers.unknown;
    const families: Array<[string, typeof p.peers]> = !p.peers6 ? [['Peers reachable', p.peers]]
      : [...(v4 > 0 ? [['Peers reachable · IPv4', p.peers] as [string, typeof p.peers]] : []), ['Peers reachable · IPv6', p.peers6]];
    for (const [label, n] of families) {
      const sub = p.error && p.sent.small === 0
        ? e(p.error)
        : `${formatCount(n.unreachable)} unreachable · ${formatCount(n.unknown)} unknown${n.pathMtuFailing ? ` · <b>${formatCount(n.pathMtuFailing)} fail full-size</b>` : ''}`;
      out.push(card(label, `${formatCount(n.reachable)} <small>of ${formatCount(n.reachable + n.unreachable + n.unknown)}</small>`, sub, n.unreachable > 0 || n.pathMtuFailing > 0 || (p.error && p.sent.small === 0) ? 'alert' : ''));
    }
  }
  const relist = `${s.lastRelistSecondsAgo !== null ? `listed ${formatAgo(s.lastRelistSecondsAgo)}` : 'not listed yet'} · ${formatCount(s.relists)} relist${s.relists === 1 ? '' : 's'}`;
  out.push(
    card(
      `Store · ${s.backend}`,
      s.lastRevision !== null ? `rev ${e(s.lastRevision)}` : '—',
      `${e(relist)} · ${formatCount(s.errors)} error${s.errors === 1 ? '' : 's'} · ${formatCount(s.renewals)} renewal${s.renewals === 1 ? '' : 's'}${s.renewalFailures ? ` (<b>${formatCount(s.renewalFailures)} failed</b>)` : ''}`,
      `wide ${!s.connected ? 'bad' : s.errors > 0 || s.renewalFailures > 0 ? 'warm' : ''}`,
    ),
  );
  return `<section class="cards">${out.join('')}</section>`;
}

function dropChips(v: LeasesView): string {
  const d = v.datapath;
  if (!d) return '';
  const chips: string[] = [];
  for (const [dir, key] of [['tx', 'encap'], ['rx', 'decap']] as const) {
    for (const reason of DROP_REASONS) {
      const n = d.drops[key][reason];
      if (n > 0) chips.push(`<span class="chip" title="${e(`${key}: ${reasonTitle(reason)}`)}"><span class="dir">${dir}</span>${e(reason)} <b>${formatCount(n)}</b></span>`);
    }
  }
  const body = chips.length ? chips.join('') : '<span class="none">no drops</span>';
  return `<section class="drops"><span class="label">Drops by reason</span>${body}</section>`;
}

function sourceCell(l: LeaseView): string {
  const s = l.source;
  if (s.kind === 'etcd') {
    return `<div class="mono key">${e(s.key)}</div><div class="sub">rev ${e(s.modRevision)} · ${s.etcdLeaseId ? `lease ${e(s.etcdLeaseId)}` : 'no etcd lease'}</div>`;
  }
  return `<div>node <b>${e(s.node)}</b></div><div class="sub">${s.resourceVersion ? `rv ${e(s.resourceVersion)}` : 'Kubernetes'}</div>`;
}

function trafficCell(p: PeerView | null, dir: 'tx' | 'rx'): string {
  if (!p) return '<td class="num dim">—</td>';
  const c = p[dir];
  return `<td class="num">${formatCount(c.packets)}<div class="sub">${e(formatBytes(c.bytes))}</div></td>`;
}

function dropsCell(p: PeerView | null): string {
  if (!p) return '<td class="num dim">—</td>';
  if (p.dropsTotal === 0) return '<td class="num dim">0</td>';
  const detail = Object.entries(p.drops).map(([r, n]) => `${r} ${formatCount(n)}`);
  const title = Object.entries(p.drops).map(([r, n]) => `${r}: ${n} (${reasonTitle(r)})`).join('\n');
  return `<td class="num hot" title="${e(title)}">${formatCount(p.dropsTotal)}<div class="sub">${e(detail.join(', '))}</div></td>`;
}

function lastCell(p: PeerView | null): string {
  if (!p) return '<td class="dim">—</td>';
  const when = (s: number | null) => (s === null ? '<span class="dim">never</span>' : e(formatAgo(s)));
  return `<td class="last"><div><span class="dir">tx</span>${when(p.lastTxSecondsAgo)}</div><div><span class="dir">rx</span>${when(p.lastRxSecondsAgo)}</div></td>`;
}

function expiresCell(l: LeaseView): string {
  const title = l.expiresAt ? ` title="${e(l.expiresAt)}"` : '';
  const left = l.expiresInSeconds ?? 0;
  const [main, sub] =
    l.expiryState === 'none' ? ['never', 'no etcd lease']
    : l.expiryState === 'expired' ? ['expired', `${formatDuration(-left)} ago`]
    : l.expiryState === 'expiring' ? [formatDuration(left), 'expiring soon']
    : [formatDuration(left), ''];
  return `<td class="num expires ${l.expiryState}"${title}>${e(main)}${sub ? `<div class="sub">${e(sub)}</div>` : ''}</td>`;
}

/** The reachability cell: the IPv4 probe, then the IPv6 one under an "IPv6" tag on a dual-stack
 *  peer; the IPv6 one alone on an IPv6-only overlay (the lease has no IPv4 subnet). */
function probeCell(l: LeaseView, enabled: boolean): string {
  if (!enabled) return '';
  const p6 = l.probe6 ?? null;
  if (!p6) return probeOne(l.probe);
  if (l.subnet === null) return probeOne(p6);
  const inner = (cell: string): string => cell.replace(/^<td class="probe( dim)?">/, '').replace(/<\/td>$/, '');
  return `<td class="probe">${inner(probeOne(l.probe))}<div class="sub fam">IPv6</div>${inner(probeOne(p6))}</td>`;
}

function probeOne(p: PeerProbeView | null | undefined): string {
  if (!p) return '<td class="probe dim">—</td>';
  const mtu = p.pathMtu.state === 'failed'
    ? `<div class="sub hot" title="full-size probes (${p.pathMtu.size ?? '?'} bytes, DF) are lost while small ones pass">full-size ${p.pathMtu.size ?? ''} FAILS</div>`
    : p.pathMtu.state === 'ok' ? `<div class="sub">full-size ${p.pathMtu.size ?? ''} ok</div>` : '';
  const loss = p.windowSent > 0 ? ` · ${p.windowAnswered}/${p.windowSent}` : '';
  if (p.state === 'reachable') {
    return `<td class="probe">${badge('reachable', 'ok', `since ${p.since ?? '?'}`)}<div class="sub">${p.rttP50Ms !== null ? `p50 ${e(formatRtt(p.rttP50Ms))}` : ''}${loss}</div>${mtu}</td>`;
  }
  if (p.state === 'unreachable') {
    const since = p.sinceSecondsAgo !== null ? `for ${formatDuration(p.sinceSecondsAgo)}` : '';
    const why = p.evidence ? `<div class="sub">${e(p.evidence.kind)} from ${e(p.evidence.from)} ${e(formatAgo(p.evidence.secondsAgo))}</div>` : '';
    const last = `<div class="sub">last ok ${p.lastSuccessSecondsAgo !== null ? e(formatAgo(p.lastSuccessSecondsAgo)) : 'never'}</div>`;
    return `<td class="probe">${badge('unreachable', 'bad', `since ${p.since ?? '?'}`)}<div class="sub">${e(since)}${loss}</div>${why}${last}</td>`;
  }
  return `<td class="probe">${badge('probing', 'muted')}</td>`;
}

function leaseRow(l: LeaseView, probes: boolean): string {
  const classes = [l.self ? 'self' : '', l.expiryState === 'expired' ? 'expired' : '', l.expiryState === 'expiring' ? 'expiring' : '']
    .filter(Boolean)
    .join(' ');
  const tag = l.self ? '<span class="tag">this node</span>' : '';
  // A lease of an IPv6-only overlay has no IPv4 subnet: "-", its IPv6 subnet below as for dual-stack.
  return `<tr data-subnet="${e(l.subnet ?? l.subnet6 ?? '-')}" data-public-ip="${e(l.publicIP)}"${classes ? ` class="${classes}"` : ''}>
  <td class="mono subnet">${e(l.subnet ?? '-')}${tag}${l.subnet6 ? `<div class="sub">${e(l.subnet6)}${l.ipv6Carried === false ? ' <span class="tag" title="a stock flannel UDP node: its tunnel carries IPv4 only, felt sends it no IPv6">IPv6 not carried</span>' : ''}</div>` : ''}</td>
  <td class="mono">${e(l.publicIP)}${l.publicIPv6 ? `<div class="sub">${e(l.publicIPv6)}</div>` : ''}</td>
  ${expiresCell(l)}
  <td class="source">${sourceCell(l)}</td>
  ${l.self ? `<td class="local" colspan="${probes ? 5 : 4}">local subnet, not tunnelled</td>` : `${probeCell(l, probes)}${trafficCell(l.datapath, 'tx')}${trafficCell(l.datapath, 'rx')}${dropsCell(l.datapath)}${lastCell(l.datapath)}`}
</tr>`;
}

function leaseTable(v: LeasesView): string {
  if (v.leases.length === 0) return '<div class="empty">No leases known yet.</div>';
  const probes = !!v.probes?.enabled;
  return `<table id="leases">
<thead><tr><th>Subnet</th><th>Public IP</th><th class="num">Expires in</th><th>Source</th>${probes ? '<th>Reachability</th>' : ''}<th class="num">TX</th><th class="num">RX</th><th class="num">Drops</th><th>Last packet</th></tr></thead>
<tbody>
${v.leases.map((l) => leaseRow(l, probes)).join('\n')}
</tbody>
</table>`;
}

function strayTable(v: LeasesView): string {
  const strays = v.datapath?.unmatchedPeers ?? [];
  if (strays.length === 0) return '';
  const rows = strays
    .map((p) => `<tr data-public-ip="${e(p.publicIP)}"><td class="mono">${e(p.publicIP)}</td>${trafficCell(p, 'tx')}${trafficCell(p, 'rx')}${dropsCell(p)}${lastCell(p)}</tr>`)
    .join('\n');
  return `<h2>Counters of peers with no current lease</h2>
<table id="unmatched"><thead><tr><th>Public IP</th><th class="num">TX</th><th class="num">RX</th><th class="num">Drops</th><th>Last packet</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

const STYLE = `
:root{--bg:#f5f7fa;--panel:#fff;--text:#1c2430;--muted:#6b7686;--line:#e3e8ef;--accent:#2563eb;--self:#eaf1ff;
--ok:#0f7b4b;--okbg:#e3f6ec;--warn:#9a5b00;--warnbg:#fff3d6;--bad:#b42318;--badbg:#fde8e6;--info:#3b4a9a;--infobg:#e8ebfb}
@media (prefers-color-scheme:dark){:root{--bg:#0f141b;--panel:#161d27;--text:#e3e8ef;--muted:#8b96a8;--line:#263140;--accent:#6ea0ff;
--self:#172a4a;--ok:#5fd49a;--okbg:#123326;--warn:#f5c060;--warnbg:#3a2c0e;--bad:#ff8a80;--badbg:#3d1714;--info:#aab6ff;--infobg:#1e2448}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
#root{max-width:1280px;margin:0 auto;padding:20px 24px 8px}
.mono,code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:13px}
header{display:grid;grid-template-columns:1fr auto;gap:2px 16px;align-items:center;margin-bottom:16px}
.brand{grid-column:1/3;color:var(--muted);font-size:12px;letter-spacing:.08em;text-transform:uppercase}
.brand .logo{color:var(--accent);font-weight:700}
h1{margin:0;font-size:24px;font-weight:650;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
h1 .sep{color:var(--muted);margin:0 10px;font-weight:400}
h2{font-size:14px;color:var(--muted);font-weight:600;margin:22px 0 8px}
.facts{grid-column:1;color:var(--muted);font-size:13px}
.facts span+span:before{content:"·";margin:0 8px;color:var(--line)}
.badges{grid-column:2;grid-row:2/4;display:flex;gap:6px;flex-wrap:wrap;justify-content:flex-end}
.badge{padding:3px 10px;border-radius:999px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.ok{color:var(--ok);background:var(--okbg)}.badge.warn{color:var(--warn);background:var(--warnbg)}
.badge.bad{color:var(--bad);background:var(--badbg)}.badge.info{color:var(--info);background:var(--infobg)}
.badge.muted{color:var(--muted);background:var(--bg)}
td.probe{min-width:140px;max-width:220px}td.probe .sub{margin-top:2px}
.banner{padding:10px 14px;border-radius:8px;margin:0 0 12px;border:1px solid}
.banner.bad{color:var(--bad);background:var(--badbg);border-color:var(--bad)}
.banner.warn{color:var(--warn);background:var(--warnbg);border-color:var(--warn)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:10px;margin-bottom:12px}
.card{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:10px 14px}
.card .label{color:var(--muted);font-size:11px;text-transform:uppercase;letter-spacing:.06em}
.card .value{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums;margin:2px 0}
.card .value small{font-size:12px;color:var(--muted);font-weight:500}
.card .sub{color:var(--muted);font-size:12px}
.card.wide{grid-column:span 2}
.card.alert .value{color:var(--bad)}.card.warm{border-color:var(--warn)}.card.bad{border-color:var(--bad);background:var(--badbg)}
.drops{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin-bottom:14px}
.drops .label{color:var(--muted);font-size:12px;margin-right:4px}
.chip{background:var(--badbg);color:var(--bad);border-radius:6px;padding:2px 8px;font-size:12px}
.chip b{font-variant-numeric:tabular-nums}
.dir{display:inline-block;min-width:18px;color:var(--muted);font-size:10px;text-transform:uppercase;font-weight:700;margin-right:4px}
.chip .dir{color:inherit;opacity:.7}
.none{color:var(--ok);font-size:12px;font-weight:600}
table{width:100%;border-collapse:separate;border-spacing:0;background:var(--panel);border:1px solid var(--line);border-radius:10px;overflow:hidden}
th{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);text-align:left;font-weight:600;padding:9px 12px;border-bottom:1px solid var(--line);background:var(--panel)}
td{padding:8px 12px;border-bottom:1px solid var(--line);vertical-align:top}
tbody tr:last-child td{border-bottom:0}
tbody tr:hover td{background:color-mix(in srgb,var(--accent) 5%,transparent)}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td .sub{color:var(--muted);font-size:12px}
.dim{color:var(--muted)}
.hot{color:var(--bad);font-weight:600}
td.subnet{font-weight:650;white-space:nowrap}
.key{font-size:12px;word-break:break-all}
.tag{margin-left:8px;font:600 10px system-ui,sans-serif;color:#fff;background:var(--accent);border-radius:4px;padding:1px 6px;text-transform:uppercase;letter-spacing:.05em;vertical-align:2px}
tr.self td{background:var(--self)}
tr.self td:first-child{box-shadow:inset 3px 0 0 var(--accent)}
tr.expired td{background:var(--badbg)}
tr.expired td:first-child{box-shadow:inset 3px 0 0 var(--bad)}
tr.expiring td{background:color-mix(in srgb,var(--warnbg) 55%,var(--panel))}
tr.expiring td:first-child{box-shadow:inset 3px 0 0 var(--warn)}
td.local{color:var(--muted);text-align:center;font-size:12px;vertical-align:middle}
.expires.expired{color:var(--bad);font-weight:700}.expires.expiring{color:var(--warn);font-weight:700}.expires.none{color:var(--muted)}
td.last{white-space:nowrap;font-size:13px}
.empty{padding:40px;text-align:center;color:var(--muted);background:var(--panel);border:1px dashed var(--line);border-radius:10px}
footer{max-width:1280px;margin:0 auto;padding:10px 24px 24px;color:var(--muted);font-size:12px;display:flex;gap:14px;flex-wrap:wrap;align-items:center}
footer a{color:var(--accent);text-decoration:none}
#status.ok:before{content:"●";color:var(--ok);margin-right:5px}
#status.err{color:var(--bad)}#status.err:before{content:"●";margin-right:5px}
`;

const SCRIPT = `
(() => {
  const status = document.getElementById('status');
  const pause = document.getElementById('pause');
  let busy = false;
  async function refresh() {
    if (busy || pause.checked) return;
    busy = true;
    try {
      const r = await fetch(location.pathname + location.search, { headers: { Accept: 'text/html' }, cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const doc = new DOMParser().parseFromString(await r.text(), 'text/html');
      const fresh = doc.getElementById('root');
      if (!fresh) throw new Error('unexpected page');
      document.getElementById('root').replaceWith(document.adoptNode(fresh));
      document.title = doc.title;
      status.textContent = 'live, refreshed ' + new Date().toLocaleTimeString();
      status.className = 'ok';
    } catch (err) {
      status.textContent = 'agent unreachable (' + err.message + '), retrying';
      status.className = 'err';
    } finally {
      busy = false;
    }
  }
  setInterval(refresh, ${REFRESH_MS});
})();
`;

// Inline, so the browser does not ask the agent for /favicon.ico.
const FAVICON =
  "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='4' fill='%232563eb'/%3E%3Cpath d='M5 13V5.5A2.5 2.5 0 0 1 7.5 3H11M4 8h6' stroke='white' stroke-width='2' fill='none'/%3E%3C/svg%3E";

/** The whole page. Everything from the agent or the store is escaped. */
export function renderLeasesPage(v: LeasesView): string {
  const title = v.node ? `felt · ${v.node.subnet ?? v.node.subnet6 ?? '-'} · leases` : 'felt · leases';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${e(title)}</title>
<link rel="icon" href="${FAVICON}">
<noscript><meta http-equiv="refresh" content="${REFRESH_MS / 1000}"></noscript>
<style>${STYLE}</style>
</head>
<body>
<div id="root" data-generated-at="${e(v.generatedAt)}">
${header(v)}
${banners(v)}
${cards(v)}
${dropChips(v)}
${leaseTable(v)}
${strayTable(v)}
</div>
<footer>
  <span id="status" class="ok">live, refreshing every ${REFRESH_MS / 1000} s</span>
  <label><input type="checkbox" id="pause"> pause</label>
  <span>as JSON: <a href="?format=json">/leases</a></span>
  <a href="?format=table">plain text</a>
  <a href="metrics">/metrics</a>
</footer>
<script>${SCRIPT}</script>
</body>
</html>
`;
}
