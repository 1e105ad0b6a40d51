// `felt doctor`'s peer checks: probe every peer now, through the overlay (small and full-size echo
// requests from our TUN address, carried by the agent's data path), and on the underlay (an echo to
// the peer's PublicIP); watch for ICMP errors about the tunnel's datagrams and, with a raw UDP socket,
// for the peer's datagrams arriving from an address other than its lease's. Then name the most
// likely cause per unreachable peer from that evidence and the lease's age.
import { createSocket } from 'node:dgram';
import { EXPIRING_SECONDS, type LeasesView } from '../debug/view.js';
import { formatDuration } from '../debug/format.js';
import { formatRtt } from '../debug/table.js';
import { formatIPv4, formatSubnet, parseIPv4, subnetContainsIP } from '../net/cidr.js';
import { buildEchoRequest, icmpErrorName, MIN_PROBE_SIZE } from '../probe/packet.js';
import { IcmpProbeSocket, UdpSniffSocket } from '../probe/socket.js';
import type { DoctorContext } from './context.js';
import type { PeerLease } from './local.js';
import type { CheckResult } from './types.js';

const SMALL = 3;
const FULL = 2;
const UNDERLAY = 3;
const ROUND_GAP_MS = 250;
/** More peers than this: only those the agent does not see as healthy are probed again. */
const MAX_ACTIVE = 512;

export interface PeerEvidence {
  small: { sent: number; answered: number; rtts: number[] };
  full: { sent: number; answered: number; size: number };
  underlay: { sent: number; answered: number; rtts: number[] };
  /** ICMP errors about the tunnel's datagrams to the peer, or about our probes to it. */
  icmp: Array<{ kind: string; from: string; about: 'tunnel' | 'probe'; mtu?: number }>;
  /** Outer source addresses the peer's datagrams came from, other than its lease's PublicIP. */
  natFrom: Set<string>;
}

export function emptyEvidence(size: number): PeerEvidence {
  return {
    small: { sent: 0, answered: 0, rtts: [] },
    full: { sent: 0, answered: 0, size },
    underlay: { sent: 0, answered: 0, rtts: [] },
    icmp: [],
    natFrom: new Set(),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

type Kind = 'small' | 'full' | 'underlay';

/** Sends the probes and gathers what comes back. Throws when the raw socket cannot be opened. */
export async function gatherEvidence(ctx: DoctorContext, peers: PeerLease[], unmatched: string[]): Promise<Map<string, PeerEvidence>> {
  const own = ctx.node.subnet!;
  const src = own.ip >>> 0;
  const mtu = ctx.node.mtu ?? 0;
  const port = ctx.node.port;
  const icmp = new IcmpProbeSocket();
  let sniff: UdpSniffSocket | undefined;
  try {
    sniff = new UdpSniffSocket();
  } catch {
    sniff = undefined; // NAT evidence is a bonus
  }
  const id = (process.pid * 7 + Math.floor(Math.random() * 0xffff)) & 0xffff;
  const evidence = new Map<string, PeerEvidence>();
  const byPublicIP = new Map<number, PeerLease>();
  const sent = new Map<number, { key: string; kind: Kind; at: number }>();
  let seq = 0;
  for (const p of peers) {
    evidence.set(formatSubnet(p.subnet), emptyEvidence(mtu));
    byPublicIP.set(parseIPv4(p.publicIP), p);
  }
  const send = (p: PeerLease, kind: Kind) => {
    const key = formatSubnet(p.subnet);
    const ev = evidence.get(key)!;
    seq = (seq + 1) & 0xffff;
    const dst = kind === 'underlay' ? parseIPv4(p.publicIP) : p.subnet.ip >>> 0;
    try {
      const at = icmp.send({ src: kind === 'underlay' ? 0 : src, dst, id, seq, size: kind === 'full' ? mtu : 84, df: kind !== 'underlay' });
      sent.set(seq, { key, kind, at });
      ev[kind].sent++;
    } catch (err) {
      ev.icmp.push({ kind: `send failed (${(err as Error).message})`, from: 'this node', about: 'probe' });
    }
  };
  const collect = () => {
    for (const pkt of icmp.poll()) {
      if (pkt.kind === 'echo-reply') {
        if (pkt.id !== id) continue;
        const s = sent.get(pkt.seq);
        if (!s) continue;
        sent.delete(pkt.seq);
        const ev = evidence.get(s.key)!;
        ev[s.kind].answered++;
        if (s.kind !== 'full') ev[s.kind].rtts.push(Math.max(0, pkt.at - s.at));
        continue;
      }
      const q = pkt.quoted;
      let key: string | undefined;
      let about: 'tunnel' | 'probe' = 'probe';
      if (q.protocol === 17 && q.dstPort === port) {
        const p = byPublicIP.get(q.dst >>> 0);
        key = p && formatSubnet(p.subnet);
        about = 'tunnel';
      } else if (q.protocol === 1 && q.echoId === id && q.echoSeq !== undefined) {
        key = sent.get(q.echoSeq)?.key;
      }
      if (!key) continue;
      const ev = evidence.get(key)!;
      const kind = icmpErrorName(pkt.type, pkt.code);
      if (!ev.icmp.some((e) => e.kind === kind && e.about === about)) ev.icmp.push({ kind, from: formatIPv4(pkt.from), about, ...(pkt.mtu ? { mtu: pkt.mtu } : {}) });
    }
    for (const d of sniff?.poll() ?? []) {
      if (d.dstPort !== port || !d.inner) continue;
      for (const p of peers) {
        if (subnetContainsIP(p.subnet, d.inner.src) && formatIPv4(d.src) !== p.publicIP) evidence.get(formatSubnet(p.subnet))!.natFrom.add(formatIPv4(d.src));
      }
    }
  };

  try {
    for (let round = 0; round < Math.max(SMALL, FULL, UNDERLAY); round++) {
      for (const [i, p] of peers.entries()) {
        if (round < SMALL) send(p, 'small');
        if (round < FULL && mtu > MIN_PROBE_SIZE) send(p, 'full');
        if (round < UNDERLAY) send(p, 'underlay');
        if (i % 64 === 63) await sleep(5); // spread a big cluster's probes a little
      }
      if (round === 0) await natTriggers(ctx, peers, unmatched, evidence);
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
    icmp.close();
    sniff?.close();
  }
  return evidence;
}

/**
 * A node behind NAT sends from an address no lease names, so our agent drops its datagrams unseen.
 * For each such address the agent counted, send it an encapsulated echo request for each silent
 * peer, from our PublicIP: the peer behind it answers, and the raw UDP socket sees from where.
 */
async function natTriggers(ctx: DoctorContext, peers: PeerLease[], unmatched: string[], evidence: Map<string, PeerEvidence>): Promise<void> {
  const from = ctx.node.publicIP;
  if (unmatched.length === 0 || !from || !ctx.node.subnet) return;
  await sleep(ROUND_GAP_MS);
  const silent = peers.filter((p) => evidence.get(formatSubnet(p.subnet))!.small.answered === 0).slice(0, 16);
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

export interface PeerFacts {
  lease: PeerLease;
  ev: PeerEvidence;
  shadowedBy?: string;
  /** The agent's own probe view of the peer, when it has one. */
  agentProbe?: NonNullable<LeasesView['leases'][number]['probe']>;
}

function rttText(values: number[]): string {
  const m = median(values);
  return m === undefined ? '' : ` (p50 ${formatRtt(m)})`;
}

/** The verdict for one peer: undefined when it is healthy. Pure: unit-tested on made-up evidence. */
export function diagnosePeer(f: PeerFacts, port: number, ownSubnet: string): CheckResult | undefined {
  const { lease, ev } = f;
  const subnet = formatSubnet(lease.subnet);
  const ip = lease.publicIP;
  const base = { id: 'peer', title: `peer ${subnet}`, peer: { subnet, publicIP: ip } };
  const evidence: string[] = [];
  evidence.push(`overlay: ${ev.small.answered} of ${ev.small.sent} probes to ${formatIPv4(lease.subnet.ip)} answered${rttText(ev.small.rtts)}` +
    (ev.full.sent > 0 ? `; full-size ${ev.full.size}-byte DF probes: ${ev.full.answered} of ${ev.full.sent} answered` : ''));
  evidence.push(`underlay: ${ev.underlay.answered} of ${ev.underlay.sent} pings to ${ip} answered${rttText(ev.underlay.rtts)}`);
  for (const e of ev.icmp) evidence.push(`ICMP ${e.kind} from ${e.from} about ${e.about === 'tunnel' ? `UDP ${ip}:${port}` : 'a probe'}${e.mtu ? ` (next-hop MTU ${e.mtu})` : ''}`);
  if (ev.natFrom.size > 0) evidence.push(`its datagrams arrive from ${[...ev.natFrom].join(', ')}, not from its lease's PublicIP ${ip}`);
  if (f.agentProbe && f.agentProbe.state === 'unreachable') {
    evidence.push(`the agent's own probes: unreachable for ${formatDuration(f.agentProbe.sinceSecondsAgo ?? 0)}, last answer ${f.agentProbe.lastSuccessSecondsAgo === null ? 'never' : `${formatDuration(f.agentProbe.lastSuccessSecondsAgo)} ago`}`);
  }
  const left = lease.expiresInSeconds;
  if (left !== null) evidence.push(`lease ${left <= 0 ? `expired ${formatDuration(-left)} ago` : `expires in ${formatDuration(left)}`}`);

  if (f.shadowedBy) {
    return {
      ...base, verdict: 'fail', summary: `${ip}: traffic for it is routed elsewhere (${f.shadowedBy}), not into the tunnel`, evidence,
      cause: 'a route more specific than the overlay network sends this lease\'s addresses to another interface (docker0, another CNI, a VPN, a static route)',
      fix: `delete that route (ip route del ${f.shadowedBy.split(' via ')[0]!.replace(/ route$/, '')}) and move the other network out of the overlay's range`,
    };
  }
  const stale = left !== null && left < EXPIRING_SECONDS;
  const portUnreach = ev.icmp.find((e) => e.about === 'tunnel' && e.kind === 'port-unreachable');
  if (stale) {
    const agentDown = portUnreach ? ` (its agent is not running: ICMP port-unreachable from ${portUnreach.from})` : ev.small.answered === 0 ? ' (and it does not answer)' : '';
    return {
      ...base, verdict: 'fail',
      summary: `${ip}: lease is stale, ${left! <= 0 ? `expired ${formatDuration(-left!)} ago` : `expires in ${formatDuration(left!)}`} and nobody renews it${agentDown}`, evidence,
      cause: 'the node that holds the lease stopped renewing it (a healthy agent renews an hour before expiry): its agent is down or cannot reach the store; at expiry every node drops the route to its pods',
      fix: `check the agent on ${ip} (kubectl -n kube-system get pods -o wide | grep ${ip}; its log); if the node is gone for good, nothing to do: the lease expires by itself`,
    };
  }
  if (ev.small.answered > 0) {
    if (ev.full.sent > 0 && ev.full.answered === 0) {
      const frag = ev.icmp.find((e) => e.kind === 'frag-needed');
      return {
        ...base, verdict: 'fail', summary: `${ip}: path MTU too small: small probes pass, full-size ${ev.full.size}-byte probes with DF are lost`, evidence,
        cause: `the underlay between this node and ${ip} carries less than ${ev.full.size + 28} bytes (${frag?.mtu ? `a hop says ${frag.mtu}` : 'the peer\'s interface or a link on the way has a smaller MTU'}); pods see small packets pass and large transfers hang`,
        fix: `give every node's underlay the same MTU (ip link show on ${ip}), then restart the agents: each computes its TUN MTU as underlay MTU - 28`,
      };
    }
    if (ev.small.answered < ev.small.sent) {
      return { ...base, verdict: 'warn', summary: `${ip}: lossy, ${ev.small.answered} of ${ev.small.sent} probes answered`, evidence };
    }
    return undefined;
  }
  if (portUnreach) {
    return {
      ...base, verdict: 'fail', summary: `${ip}: agent not running there (ICMP port-unreachable from ${portUnreach.from} for UDP ${port})`, evidence,
      cause: `nothing listens on UDP ${port} on ${ip}: felt (or flanneld) is not running there, or a firewall rejects the port with port-unreachable`,
      fix: `start the agent on ${ip} and read its log (kubectl -n kube-system get pods -o wide | grep ${ip})`,
    };
  }
  const rejected = ev.icmp.find((e) => e.about === 'tunnel' && /prohibited/.test(e.kind));
  if (rejected) {
    return {
      ...base, verdict: 'fail', summary: `${ip}: a firewall rejects UDP ${port} (ICMP ${rejected.kind} from ${rejected.from})`, evidence,
      cause: `a firewall between this node and ${ip}, or on it, rejects the tunnel's UDP datagrams`,
      fix: `allow UDP ${port} between all nodes, both ways (iptables/nftables on ${ip}, cloud security groups)`,
    };
  }
  if (ev.natFrom.size > 0) {
    const real = [...ev.natFrom][0]!;
    return {
      ...base, verdict: 'fail', summary: `${ip}: NAT, its datagrams arrive from ${real} but its lease says ${ip}`, evidence,
      cause: `the node sits behind NAT (or advertises an address others cannot reach): we send to ${ip}, which does not reach it, and drop what it sends from ${real} as coming from no known node`,
      fix: `run the agent on that node with --public-ip ${real} (and let UDP ${port} through the NAT to it), or give it an address every node can reach`,
    };
  }
  if (ev.underlay.answered > 0) {
    return {
      ...base, verdict: 'fail', summary: `${ip}: UDP ${port} filtered: the node answers on the underlay, the tunnel stays silent`, evidence,
      cause: `datagrams to or from ${ip}:${port} are dropped silently on the way or at the peer (iptables/nftables on either node, a cloud security group), or the peer's agent does not know this node's lease ${ownSubnet}`,
      fix: `allow UDP ${port} between all nodes, both ways (on ${ip}: iptables -S INPUT; nft list ruleset; cloud: security group), and check that felt leases on ${ip} lists ${ownSubnet}`,
    };
  }
  return {
    ...base, verdict: 'fail', summary: `${ip}: unreachable, neither the tunnel nor the underlay answers`, evidence,
    cause: `the node is down, or ${ip} is not an address this node can reach (a wrong --public-ip/--iface there, routing, or a firewall dropping everything)`,
    fix: `check that the node is up and that ${ip} is reachable from here (the lease's PublicIP must be an address every node can reach)`,
  };
}

/** One line for all healthy peers, plus one line per peer with a problem. */
export async function checkPeers(ctx: DoctorContext, peers: PeerLease[], shadowed: Map<string, string>): Promise<CheckResult[]> {
  const base = { id: 'peers', title: 'peers' };
  if (!ctx.view || !ctx.node.subnet) {
    return [{ ...base, verdict: 'skip', summary: 'not probed: without a running agent there is no tunnel to probe through' }];
  }
  if (peers.length === 0) return [{ ...base, verdict: 'ok', summary: 'no other nodes hold a lease' }];
  const agentProbe = new Map(ctx.view.leases.filter((l) => l.probe).map((l) => [l.subnet, l.probe!]));
  let active = peers;
  let skipped = 0;
  if (peers.length > MAX_ACTIVE) {
    // Trust the agent's recent verdicts for a large cluster; probe the doubtful ones again.
    active = peers.filter((p) => {
      const a = agentProbe.get(formatSubnet(p.subnet));
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
  for (const p of active) {
    const key = formatSubnet(p.subnet);
    const ev = evidence.get(key)!;
    const r = diagnosePeer({ lease: p, ev, shadowedBy: shadowed.get(key), agentProbe: agentProbe.get(key) }, ctx.node.port, formatSubnet(ctx.node.subnet));
    if (r) results.push(r);
    else {
      healthy++;
      rtts.push(...ev.small.rtts);
    }
  }
  const m = median(rtts);
  const summary = `${healthy} of ${active.length} peer${active.length === 1 ? '' : 's'} answer through the tunnel${m !== undefined ? ` (p50 ${formatRtt(m)})` : ''}, full-size probes included` +
    (skipped ? `; ${skipped} more the agent sees as reachable were not probed again` : '');
  return [{ ...base, verdict: results.some((r) => r.verdict === 'fail') ? 'fail' : 'ok', summary }, ...results];
}
