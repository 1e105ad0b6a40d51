// The verdict for one peer from what its probes found: the IPv4 and IPv6 tunnel probes, the
// underlay pings (over the family the tunnel uses to reach it), the ICMP/ICMPv6 errors about the
// tunnel's datagrams, NAT evidence and the lease's age. Pure: unit-tested on made-up evidence.
import { EXPIRING_SECONDS, type LeasesView } from '../debug/view.js';
import { formatDuration } from '../debug/format.js';
import { formatRtt } from '../debug/table.js';
import { formatIPv4, formatSubnet, type Subnet } from '../net/cidr.js';
import { formatSubnet6, type Subnet6 } from '../net/ip6.js';
import type { CheckResult } from './types.js';

/** A peer as the probes see it: a lease of an IPv6-only overlay has no IPv4 subnet. */
export interface ProbePeer {
  subnet?: Subnet;
  subnet6?: Subnet6;
  /** "0.0.0.0" when the peer has no IPv4 underlay address. */
  publicIP: string;
  publicIPv6?: string;
  expiresInSeconds: number | null;
}

/** The peer's name in the report and the evidence map: its IPv4 subnet, else its IPv6 one. */
export function peerKey(p: Pick<ProbePeer, 'subnet' | 'subnet6'>): string {
  return p.subnet ? formatSubnet(p.subnet) : p.subnet6 ? formatSubnet6(p.subnet6) : '?';
}

interface Tunnel {
  small: { sent: number; answered: number; rtts: number[] };
  full: { sent: number; answered: number; size: number };
}

export interface PeerEvidence extends Tunnel {
  /** The IPv6 tunnel probes (both ends have an IPv6 subnet): ICMPv6 echo to the peer's IPv6 tunnel address. */
  six: Tunnel & { target?: string };
  underlay: { sent: number; answered: number; rtts: number[] };
  /** The underlay family the tunnel uses to this peer (6: both ends have PublicIPv6); 0: none in common. */
  underlayFamily: 4 | 6 | 0;
  /** ICMP errors about the tunnel's datagrams to the peer, or about our probes to it (family 6: ICMPv6). */
  icmp: Array<{ kind: string; from: string; about: 'tunnel' | 'probe'; mtu?: number; family?: 6 }>;
  /** Outer source addresses the peer's datagrams came from, other than its lease's PublicIP. */
  natFrom: Set<string>;
}

export function emptyEvidence(size: number): PeerEvidence {
  return {
    small: { sent: 0, answered: 0, rtts: [] },
    full: { sent: 0, answered: 0, size },
    six: { small: { sent: 0, answered: 0, rtts: [] }, full: { sent: 0, answered: 0, size } },
    underlay: { sent: 0, answered: 0, rtts: [] },
    underlayFamily: 4,
    icmp: [],
    natFrom: new Set(),
  };
}

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface PeerFacts {
  lease: ProbePeer;
  ev: PeerEvidence;
  shadowedBy?: string;
  /** The agent's own probe view of the peer, when it has one. */
  agentProbe?: NonNullable<LeasesView['leases'][number]['probe']>;
}

function rttText(values: number[]): string {
  const m = median(values);
  return m === undefined ? '' : ` (p50 ${formatRtt(m)})`;
}

/** The verdict for one peer: undefined when it is healthy. */
export function diagnosePeer(f: PeerFacts, port: number, ownSubnet: string): CheckResult | undefined {
  const { lease, ev } = f;
  const subnet = peerKey(lease);
  // The address the tunnel sends to, and how the texts name the underlay (IPv4 texts as they always were).
  const v6 = ev.underlayFamily === 6;
  const ip = v6 ? lease.publicIPv6! : lease.publicIP === '0.0.0.0' && lease.publicIPv6 ? lease.publicIPv6 : lease.publicIP;
  const udp = v6 ? `UDP/IPv6 ${port}` : `UDP ${port}`;
  const dest = v6 ? `[${ip}]:${port}` : `${ip}:${port}`;
  const overhead = v6 ? 48 : 28;
  const base = { id: 'peer', title: `peer ${subnet}`, peer: { subnet, publicIP: lease.publicIP, ...(lease.publicIPv6 ? { publicIPv6: lease.publicIPv6 } : {}) } };
  const has4 = lease.subnet !== undefined;
  const has6 = ev.six.target !== undefined;
  const evidence: string[] = [];
  if (has4) {
    evidence.push(`overlay: ${ev.small.answered} of ${ev.small.sent} probes to ${formatIPv4(lease.subnet!.ip)} answered${rttText(ev.small.rtts)}` +
      (ev.full.sent > 0 ? `; full-size ${ev.full.size}-byte DF probes: ${ev.full.answered} of ${ev.full.sent} answered` : ''));
  }
  if (has6) {
    evidence.push(`overlay IPv6: ${ev.six.small.answered} of ${ev.six.small.sent} ICMPv6 probes to ${ev.six.target} answered${rttText(ev.six.small.rtts)}` +
      (ev.six.full.sent > 0 ? `; full-size ${ev.six.full.size}-byte probes: ${ev.six.full.answered} of ${ev.six.full.sent} answered` : ''));
  }
  if (ev.underlayFamily === 0) evidence.push(`underlay: none in common (the peer's PublicIP ${lease.publicIP}, PublicIPv6 ${lease.publicIPv6 ?? 'none'})`);
  else evidence.push(`underlay: ${ev.underlay.answered} of ${ev.underlay.sent} pings to ${ip} answered${rttText(ev.underlay.rtts)}`);
  for (const e of ev.icmp) {
    evidence.push(`${e.family === 6 ? 'ICMPv6' : 'ICMP'} ${e.kind} from ${e.from} about ${e.about === 'tunnel' ? `UDP ${dest}` : 'a probe'}${e.mtu ? ` (${e.family === 6 ? 'MTU' : 'next-hop MTU'} ${e.mtu})` : ''}`);
  }
  if (ev.natFrom.size > 0) evidence.push(`its datagrams arrive from ${[...ev.natFrom].join(', ')}, not from its lease's ${[...ev.natFrom][0]!.includes(':') ? 'PublicIPv6' : 'PublicIP'} ${ip}`);
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
  const answered = ev.small.answered + ev.six.small.answered;
  const stale = left !== null && left < EXPIRING_SECONDS;
  const portUnreach = ev.icmp.find((e) => e.about === 'tunnel' && e.kind === 'port-unreachable');
  if (stale) {
    const agentDown = portUnreach ? ` (its agent is not running: ICMP port-unreachable from ${portUnreach.from})` : answered === 0 ? ' (and it does not answer)' : '';
    return {
      ...base, verdict: 'fail',
      summary: `${ip}: lease is stale, ${left! <= 0 ? `expired ${formatDuration(-left!)} ago` : `expires in ${formatDuration(left!)}`} and nobody renews it${agentDown}`, evidence,
      cause: 'the node that holds the lease stopped renewing it (a healthy agent renews an hour before expiry): its agent is down or cannot reach the store; at expiry every node drops the route to its pods',
      fix: `check the agent on ${ip} (kubectl -n kube-system get pods -o wide | grep ${ip}; its log); if the node is gone for good, nothing to do: the lease expires by itself`,
    };
  }
  if (ev.underlayFamily === 0) {
    return {
      ...base, verdict: 'fail', summary: `${ip}: no underlay family in common: it has ${lease.publicIP === '0.0.0.0' ? 'only an IPv6' : 'only an IPv4'} underlay address, this node none of that family`, evidence,
      cause: 'the tunnel reaches a peer over IPv6 only when both nodes have a PublicIPv6, else over IPv4; with neither the data path drops the traffic (no-underlay)',
      fix: `give this node an underlay address of the peer's family (--public-ip or --public-ipv6, or --iface with such an address) and restart its agent, or give ${ip} one of this node's family`,
    };
  }
  if (answered > 0) return healthyTunnel(f, ip, base, evidence, overhead);
  if (portUnreach) {
    return {
      ...base, verdict: 'fail', summary: `${ip}: agent not running there (${portUnreach.family === 6 ? 'ICMPv6' : 'ICMP'} port-unreachable from ${portUnreach.from} for ${udp})`, evidence,
      cause: `nothing listens on ${udp} on ${ip}: felt (or flanneld) is not running there, or a firewall rejects the port with port-unreachable`,
      fix: `start the agent on ${ip} and read its log (kubectl -n kube-system get pods -o wide | grep ${ip})`,
    };
  }
  const rejected = ev.icmp.find((e) => e.about === 'tunnel' && /prohibited|reject/.test(e.kind));
  if (rejected) {
    return {
      ...base, verdict: 'fail', summary: `${ip}: a firewall rejects ${udp} (${rejected.family === 6 ? 'ICMPv6' : 'ICMP'} ${rejected.kind} from ${rejected.from})`, evidence,
      cause: `a firewall between this node and ${ip}, or on it, rejects the tunnel's UDP datagrams`,
      fix: v6 ? `allow UDP ${port} over IPv6 between all nodes, both ways (ip6tables/nftables on ${ip}, cloud security groups)` : `allow UDP ${port} between all nodes, both ways (iptables/nftables on ${ip}, cloud security groups)`,
    };
  }
  if (ev.natFrom.size > 0) {
    const real = [...ev.natFrom][0]!;
    if (real.includes(':')) {
      // Seen by the IPv6 sniff socket: the peer's UDP/IPv6 datagrams come from another address than its PublicIPv6.
      return {
        ...base, verdict: 'fail', summary: `${ip}: NAT on the IPv6 underlay, its datagrams arrive from ${real} but its lease's PublicIPv6 is ${lease.publicIPv6 ?? 'none'}`, evidence,
        cause: `the node sits behind NAT66 (or advertises an IPv6 address others cannot reach): we send to ${lease.publicIPv6 ?? ip}, which does not reach it, and drop what it sends from ${real} as coming from no known node`,
        fix: `run the agent on that node with --public-ipv6 ${real} (and let UDP/IPv6 ${port} through the NAT to it), or give it an IPv6 address every node can reach`,
      };
    }
    return {
      ...base, verdict: 'fail', summary: `${ip}: NAT, its datagrams arrive from ${real} but its lease says ${ip}`, evidence,
      cause: `the node sits behind NAT (or advertises an address others cannot reach): we send to ${ip}, which does not reach it, and drop what it sends from ${real} as coming from no known node`,
      fix: `run the agent on that node with --public-ip ${real} (and let UDP ${port} through the NAT to it), or give it an address every node can reach`,
    };
  }
  if (ev.underlay.answered > 0) {
    return {
      ...base, verdict: 'fail', summary: `${ip}: ${udp} filtered: the node answers on the ${v6 ? 'IPv6 ' : ''}underlay, the tunnel stays silent`, evidence,
      cause: `datagrams to or from ${dest} are dropped silently on the way or at the peer (${v6 ? 'ip6tables' : 'iptables'}/nftables on either node, a cloud security group), or the peer's agent does not know this node's lease ${ownSubnet}`,
      fix: `allow UDP ${port}${v6 ? ' over IPv6' : ''} between all nodes, both ways (on ${ip}: ${v6 ? 'ip6tables' : 'iptables'} -S INPUT; nft list ruleset; cloud: security group), and check that felt leases on ${ip} lists ${ownSubnet}`,
    };
  }
  return {
    ...base, verdict: 'fail', summary: `${ip}: unreachable, neither the tunnel nor the ${v6 ? 'IPv6 ' : ''}underlay answers`, evidence,
    cause: `the node is down, or ${ip} is not an address this node can reach (a wrong --public-ip${v6 ? 'v6' : ''}/--iface there, routing, or a firewall dropping everything)`,
    fix: `check that the node is up and that ${ip} is reachable from here (the lease's PublicIP${v6 ? 'v6' : ''} must be an address every node can reach)`,
  };
}

type Base = Pick<CheckResult, 'id' | 'title' | 'peer'>;

/** Some tunnel probe was answered: a family that stays silent, the path MTU, loss. */
function healthyTunnel(f: PeerFacts, ip: string, base: Base, evidence: string[], overhead: number): CheckResult | undefined {
  const { lease, ev } = f;
  const has4 = lease.subnet !== undefined && ev.small.sent > 0;
  const has6 = ev.six.target !== undefined && ev.six.small.sent > 0;
  if (has4 && has6 && (ev.small.answered === 0) !== (ev.six.small.answered === 0)) {
    const [bad, good] = ev.six.small.answered === 0 ? ['IPv6', 'IPv4'] : ['IPv4', 'IPv6'];
    const target = bad === 'IPv6' ? ev.six.target! : formatIPv4(lease.subnet!.ip);
    return {
      ...base, verdict: 'fail', summary: `${ip}: ${bad} through the tunnel fails: ${good} probes pass, ${bad === 'IPv6' ? 'ICMPv6' : 'ICMP'} echo to ${target} gets no answer`, evidence,
      cause: `the tunnel to ${ip} works (${good} answers) but that node does not answer at its ${bad} tunnel address (${target}): its ${bad} side is broken (the TUN lacks that address or the ${bad === 'IPv6' ? 'IPv6Network' : 'Network'} route, ${bad} forwarding is off, a firewall drops ${bad === 'IPv6' ? 'ICMPv6' : 'ICMP'}), or its agent does not know this node's ${bad} subnet`,
      fix: `run felt doctor on ${ip} (its ${bad === 'IPv6' ? 'IPv6 tunnel' : 'tun interface and routes'} check names what is missing), or look there: ip ${bad === 'IPv6' ? '-6 ' : ''}route; ${bad === 'IPv6' ? 'ip6tables' : 'iptables'} -S`,
    };
  }
  const tunnels: Array<{ t: Tunnel; six: boolean }> = [];
  if (ev.small.answered > 0) tunnels.push({ t: ev, six: false });
  if (has6 && ev.six.small.answered > 0) tunnels.push({ t: ev.six, six: true });
  for (const { t, six } of tunnels) {
    if (t.full.sent > 0 && t.full.answered === 0) {
      const frag = ev.icmp.find((e) => e.kind === 'frag-needed' || e.kind === 'packet-too-big');
      return {
        ...base, verdict: 'fail',
        summary: six ? `${ip}: path MTU too small for IPv6: small ICMPv6 probes pass, full-size ${t.full.size}-byte probes are lost` : `${ip}: path MTU too small: small probes pass, full-size ${t.full.size}-byte probes with DF are lost`, evidence,
        cause: `the underlay between this node and ${ip} carries less than ${t.full.size + overhead} bytes (${frag?.mtu ? `a hop says ${frag.mtu}` : 'the peer\'s interface or a link on the way has a smaller MTU'}); pods see small packets pass and large transfers hang`,
        fix: `give every node's underlay the same MTU (ip link show on ${ip}), then restart the agents: each computes its TUN MTU as underlay MTU - ${overhead === 28 ? '28' : '48 (IPv6 underlay)'}`,
      };
    }
  }
  for (const { t, six } of tunnels) {
    if (t.small.answered < t.small.sent) {
      return { ...base, verdict: 'warn', summary: `${ip}: lossy, ${t.small.answered} of ${t.small.sent} ${six ? 'ICMPv6 ' : ''}probes answered`, evidence };
    }
  }
  return undefined;
}
