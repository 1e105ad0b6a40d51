// `felt doctor`'s peer checks: probe every peer now, through the overlay (small and full-size echo
// requests from our tunnel addresses, carried by the agent's data path: ICMP to the peer's IPv4
// tunnel address, ICMPv6 to its IPv6 one when both ends have an IPv6 subnet), and on the underlay
// (an echo to the address the tunnel sends to: PublicIPv6 when both ends have one, else PublicIP);
// watch for ICMP/ICMPv6 errors about the tunnel's datagrams and, with a raw UDP socket, for the
// peer's datagrams arriving from an address other than its lease's (IPv4 underlay). The verdicts
// are in diagnose.ts.
import { createSocket } from 'node:dgram';
import { formatRtt } from '../debug/table.js';
import { formatIPv4, parseIPv4, subnetContainsIP } from '../net/cidr.js';
import { formatIPv6, parseIPv6, subnet6ContainsIP } from '../net/ip6.js';
import { buildEchoRequest, icmpErrorName, MIN_PROBE_SIZE } from '../probe/packet.js';
import { icmp6ErrorName, MIN_PROBE6_SIZE } from '../probe/packet6.js';
import { Icmp6ProbeSocket, IcmpProbeSocket, UdpSniff6Socket, UdpSniffSocket } from '../probe/socket.js';
import type { DoctorContext } from './context.js';
import { diagnosePeer, emptyEvidence, median, peerKey, type PeerEvidence, type ProbePeer } from './diagnose.js';
import type { CheckResult } from './types.js';

export { diagnosePeer, emptyEvidence, type PeerEvidence, type PeerFacts, type ProbePeer } from './diagnose.js';

const SMALL = 3;
const FULL = 2;
const UNDERLAY = 3;
const ROUND_GAP_MS = 250;
/** An IPv6 echo of ping6's default size: 40 + 8 + 56. */
const SMALL6_SIZE = 104;
/** More peers than this: only those the agent does not see as healthy are probed again. */
const MAX_ACTIVE = 512;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Kind = 'small' | 'full' | 'underlay' | 'small6' | 'full6';

/** The underlay the data path uses to a peer: IPv6 when both ends have PublicIPv6, else IPv4, else none. */
export function underlayFamily(ctx: DoctorContext, p: ProbePeer): 4 | 6 | 0 {
  if (ctx.node.publicIPv6 && p.publicIPv6) return 6;
  return p.publicIP !== '0.0.0.0' && ctx.node.publicIP !== '0.0.0.0' ? 4 : 0;
}

function ipv6Or(text: string | undefined): bigint | undefined {
  try {
    return text ? parseIPv6(text) : undefined;
  } catch {
    return undefined;
  }
}

/** Sends the probes and gathers what comes back. Throws when a raw socket cannot be opened. */
export async function gatherEvidence(ctx: DoctorContext, peers: ProbePeer[], unmatched: string[]): Promise<Map<string, PeerEvidence>> {
  const own = ctx.node.subnet;
  const own6 = ctx.node.subnet6;
  const mtu = ctx.node.mtu ?? 0;
  const port = ctx.node.port;
  const evidence = new Map<string, PeerEvidence>();
  const byPublicIP = new Map<number, ProbePeer>();
  const byPublicIPv6 = new Map<bigint, ProbePeer>();
  for (const p of peers) {
    const ev = emptyEvidence(mtu);
    ev.underlayFamily = underlayFamily(ctx, p);
    if (own6 && p.subnet6) ev.six.target = formatIPv6(p.subnet6.ip);
    evidence.set(peerKey(p), ev);
    if (p.publicIP !== '0.0.0.0') byPublicIP.set(parseIPv4(p.publicIP), p);
    const v6 = ipv6Or(p.publicIPv6);
    if (v6 !== undefined) byPublicIPv6.set(v6, p);
  }
  const needs4 = peers.some((p) => (own && p.subnet) || evidence.get(peerKey(p))!.underlayFamily === 4);
  const needs6 = peers.some((p) => evidence.get(peerKey(p))!.six.target !== undefined || evidence.get(peerKey(p))!.underlayFamily === 6);
  const icmp = needs4 ? new IcmpProbeSocket() : undefined;
  let icmp6: Icmp6ProbeSocket | undefined;
  let sniff: UdpSniffSocket | undefined;
  try {
    icmp6 = needs6 ? new Icmp6ProbeSocket() : undefined;
  } catch (err) {
    icmp?.close();
    throw err;
  }
  try {
    sniff = own ? new UdpSniffSocket() : undefined;
  } catch {
    sniff = undefined; // NAT evidence is a bonus
  }
  // Peers reached over an IPv6 underlay: where their UDP/IPv6 datagrams really come from.
  let sniff6: UdpSniff6Socket | undefined;
  try {
    sniff6 = peers.some((p) => evidence.get(peerKey(p))!.underlayFamily === 6) ? new UdpSniff6Socket() : undefined;
  } catch {
    sniff6 = undefined;
  }
  const id = (process.pid * 7 + Math.floor(Math.random() * 0xffff)) & 0xffff;
  const sent = new Map<number, { key: string; kind: Kind; at: number }>();
  let seq = 0;
  const send = (p: ProbePeer, kind: Kind) => {
    const key = peerKey(p);
    const ev = evidence.get(key)!;
    seq = (seq + 1) & 0xffff;
    const six = kind === 'small6' || kind === 'full6' || (kind === 'underlay' && ev.underlayFamily === 6);
    const counter = kind === 'small6' ? ev.six.small : kind === 'full6' ? ev.six.full : ev[kind];
    try {
      let at: number;
      if (!six) {
        const dst = kind === 'underlay' ? parseIPv4(p.publicIP) : p.subnet!.ip >>> 0;
        at = icmp!.send({ src: kind === 'underlay' ? 0 : own!.ip >>> 0, dst, id, seq, size: kind === 'full' ? mtu : 84, df: kind !== 'underlay' });
      } else {
        const dst = kind === 'underlay' ? parseIPv6(p.publicIPv6!) : p.subnet6!.ip;
        at = icmp6!.send({ src: kind === 'underlay' ? undefined : own6!.ip, dst, id, seq, size: kind === 'full6' ? mtu : SMALL6_SIZE });
      }
      sent.set(seq, { key, kind, at });
      counter.sent++;
    } catch (err) {
      ev.icmp.push({ kind: `send failed (${(err as Error).message})`, from: 'this node', about: 'probe', ...(six ? { family: 6 as const } : {}) });
    }
  };
  const answer = (pktId: number, pktSeq: number, at: number) => {
    if (pktId !== id) return;
    const s = sent.get(pktSeq);
    if (!s) return;
    sent.delete(pktSeq);
    const ev = evidence.get(s.key)!;
    const counter = s.kind === 'small6' ? ev.six.small : s.kind === 'full6' ? ev.six.full : ev[s.kind];
    counter.answered++;
    if ('rtts' in counter) counter.rtts.push(Math.max(0, at - s.at));
  };
  const record = (key: string | undefined, e: PeerEvidence['icmp'][number]) => {
    if (!key) return;
    const ev = evidence.get(key)!;
    if (!ev.icmp.some((x) => x.kind === e.kind && x.about === e.about && x.family === e.family)) ev.icmp.push(e);
  };
  const collect = () => {
    for (const pkt of icmp?.poll() ?? []) {
      if (pkt.kind === 'echo-reply') {
        answer(pkt.id, pkt.seq, pkt.at);
        continue;
      }
      const q = pkt.quoted;
      const tunnel = q.protocol === 17 && q.dstPort === port;
      const p = tunnel ? byPublicIP.get(q.dst >>> 0) : undefined;
      const key = tunnel ? p && peerKey(p) : q.protocol === 1 && q.echoId === id && q.echoSeq !== undefined ? sent.get(q.echoSeq)?.key : undefined;
      record(key, { kind: icmpErrorName(pkt.type, pkt.code), from: formatIPv4(pkt.from), about: tunnel ? 'tunnel' : 'probe', ...(pkt.mtu ? { mtu: pkt.mtu } : {}) });
    }
    for (const pkt of icmp6?.poll() ?? []) {
      if (pkt.kind === 'echo-reply') {
        answer(pkt.id, pkt.seq, pkt.at);
        continue;
      }
      const q = pkt.quoted;
      const tunnel = q.protocol === 17 && q.dstPort === port;
      const p = tunnel ? byPublicIPv6.get(q.dst) : undefined;
      const key = tunnel ? p && peerKey(p) : q.protocol === 58 && q.echoId === id && q.echoSeq !== undefined ? sent.get(q.echoSeq)?.key : undefined;
      record(key, { kind: icmp6ErrorName(pkt.type, pkt.code), from: formatIPv6(pkt.from), about: tunnel ? 'tunnel' : 'probe', family: 6, ...(pkt.mtu ? { mtu: pkt.mtu } : {}) });
    }
    for (const d of sniff?.poll() ?? []) {
      if (d.dstPort !== port || !d.inner) continue;
      for (const p of peers) {
        if (p.subnet && subnetContainsIP(p.subnet, d.inner.src) && formatIPv4(d.src) !== p.publicIP) evidence.get(peerKey(p))!.natFrom.add(formatIPv4(d.src));
      }
    }
    for (const d of sniff6?.poll() ?? []) {
      if (d.dstPort !== port || !d.inner) continue;
      const inner = d.inner;
      for (const p of peers) {
        const ev = evidence.get(peerKey(p))!;
        if (ev.underlayFamily !== 6 || ipv6Or(p.publicIPv6) === d.src) continue;
        const mine = inner.version === 4 ? !!p.subnet && subnetContainsIP(p.subnet, inner.src) : !!p.subnet6 && subnet6ContainsIP(p.subnet6, inner.src);
        if (mine) ev.natFrom.add(formatIPv6(d.src));
      }
    }
  };

  try {
    for (let round = 0; round < Math.max(SMALL, FULL, UNDERLAY); round++) {
      for (const [i, p] of peers.entries()) {
        const ev = evidence.get(peerKey(p))!;
        if (own && p.subnet) {
          if (round < SMALL) send(p, 'small');
          if (round < FULL && mtu > MIN_PROBE_SIZE) send(p, 'full');
        }
        if (ev.six.target !== undefined) {
          if (round < SMALL) send(p, 'small6');
          if (round < FULL && mtu > MIN_PROBE6_SIZE) send(p, 'full6');
        }
        if (round < UNDERLAY && ev.underlayFamily !== 0) send(p, 'underlay');
        if (i % 64 === 63) await sleep(5); // spread a big cluster's probes a little
      }
      if (round === 0) await natTriggers(ctx, peers.filter((p) => evidence.get(peerKey(p))!.underlayFamily === 4), unmatched, evidence);
      await sleep(ROUND_GAP_MS);
      collect();
    }
    // Wait for stragglers, leaving early once everything is answered.
    const deadline = Date.now() + ctx.timeoutMs;
    while (Date.now() < deadline) {
      collect();
      if (sent.size === 0) break;
      await sleep(50);
    }
    collect();
  } finally {
    icmp?.close();
    icmp6?.close();
    sniff?.close();
    sniff6?.close();
  }
  return evidence;
}

/**
 * A node behind NAT sends from an address no lease names, so our agent drops its datagrams unseen.
 * For each such address the agent counted, send it an encapsulated echo request for each silent
 * peer, from our PublicIP: the peer behind it answers, and the raw UDP socket sees from where.
 */
async function natTriggers(ctx: DoctorContext, peers: ProbePeer[], unmatched: string[], evidence: Map<string, PeerEvidence>): Promise<void> {
  const from = ctx.node.publicIP;
  if (unmatched.length === 0 || !from || !ctx.node.subnet) return;
  await sleep(ROUND_GAP_MS);
  const silent = peers.filter((p): p is ProbePeer & { subnet: NonNullable<ProbePeer['subnet']> } => p.subnet !== undefined && evidence.get(peerKey(p))!.small.answered === 0).slice(0, 16);
  if (silent.length === 0) return;
  const sock = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, from, () => resolve());
    });
    for (const addr of unmatched.slice(0, 16)) {
      for (const p of silent) {
        const pkt = buildEchoRequest({ src: ctx.node.subnet.ip, dst: p.subnet.ip, id: 0xfe17, seq: 1, size: 84, df: true });
        // The inner IPv4 checksum: the kernel fills it for our raw sends, here we must.
        fillIpChecksum(pkt);
        await new Promise<void>((resolve) => sock.send(pkt, ctx.node.port, addr, () => resolve()));
      }
    }
  } catch {
    // Our PublicIP is not a local address (we are behind NAT ourselves): no triggers.
  } finally {
    sock.close();
  }
}

function fillIpChecksum(p: Buffer): void {
  p.writeUInt16BE(0x1234, 4);
  p.writeUInt16BE(0, 10);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  p.writeUInt16BE(~sum & 0xffff, 10);
}

/** One line for all healthy peers, plus one line per peer with a problem. */
export async function checkPeers(ctx: DoctorContext, peers: ProbePeer[], shadowed: Map<string, string>): Promise<CheckResult[]> {
  const base = { id: 'peers', title: 'peers' };
  if (!ctx.view || (!ctx.node.subnet && !ctx.node.subnet6)) {
    return [{ ...base, verdict: 'skip', summary: 'not probed: without a running agent there is no tunnel to probe through' }];
  }
  if (peers.length === 0) return [{ ...base, verdict: 'ok', summary: 'no other nodes hold a lease' }];
  const agentProbe = new Map(ctx.view.leases.filter((l) => l.probe).map((l) => [l.subnet, l.probe!]));
  let active = peers;
  let skipped = 0;
  if (peers.length > MAX_ACTIVE) {
    // Trust the agent's recent verdicts for a large cluster; probe the doubtful ones again.
    active = peers.filter((p) => {
      const a = agentProbe.get(peerKey(p));
      return !a || a.state !== 'reachable' || a.pathMtu.state === 'failed';
    }).slice(0, MAX_ACTIVE);
    skipped = peers.length - active.length;
  }
  const unmatched = (ctx.view.datapath?.unmatchedPeers ?? []).filter((u) => (u.drops['unknown-peer'] ?? 0) > 0 || u.rx.packets > 0).map((u) => u.publicIP);
  let evidence: Map<string, PeerEvidence>;
  try {
    evidence = await gatherEvidence(ctx, active, unmatched);
  } catch (err) {
    return [{
      ...base, verdict: 'error', summary: `cannot probe peers: ${(err as Error).message}`,
      fix: 'run felt doctor as root (it needs CAP_NET_RAW for its ICMP probes), e.g. kubectl exec into the felt pod of this node',
    }];
  }
  const results: CheckResult[] = [];
  const rtts: number[] = [];
  let healthy = 0;
  let probed6 = 0;
  let over6 = 0;
  const six = (ev: PeerEvidence) => ev.six.target !== undefined;
  for (const p of active) {
    const key = peerKey(p);
    const ev = evidence.get(key)!;
    const r = diagnosePeer({ lease: p, ev, shadowedBy: shadowed.get(key), agentProbe: agentProbe.get(key) }, ctx.node.port, peerKey({ subnet: ctx.node.subnet, subnet6: ctx.node.subnet6 }));
    if (six(ev)) probed6++;
    if (ev.underlayFamily === 6) over6++;
    if (r) results.push(r);
    else {
      healthy++;
      rtts.push(...(p.subnet ? ev.small.rtts : ev.six.small.rtts));
    }
  }
  // Said only when something went over IPv6: an IPv4-only cluster's line is unchanged.
  const ipv6 = probed6 || over6 ? `; IPv6 too: ${probed6} IPv6 tunnel address${probed6 === 1 ? '' : 'es'}, ${over6} over an IPv6 underlay` : '';
  const m = median(rtts);
  const summary = `${healthy} of ${active.length} peer${active.length === 1 ? '' : 's'} answer through the tunnel${m !== undefined ? ` (p50 ${formatRtt(m)})` : ''}, full-size probes included${ipv6}` +
    (skipped ? `; ${skipped} more the agent sees as reachable were not probed again` : '');
  return [{ ...base, verdict: results.some((r) => r.verdict === 'fail') ? 'fail' : 'ok', summary }, ...results];
}
