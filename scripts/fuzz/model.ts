// The reference model of docs/datapath.md both engines' fuzzers judge them by -- the one copy of
// the verdict rules: the js fuzzer (scripts/fuzz-js.ts) calls it directly, the native one gets its
// verdicts written next to each input by scripts/fuzz/vectors.ts -- and the byte helpers it needs.
// Independent of src/datapath/ on purpose: a bug there must not hide here.
import { formatIPv4, parseSubnet } from '../../src/net/cidr.js';
import type { DropReason, Route } from '../../src/datapath/types.js';
import type { Rng } from './rng.js';

/** Our lease; its .0 is the tunnel address (the source of our ICMP errors). */
export const LOCAL = parseSubnet('10.244.1.0/24');
export const TUNNEL_IP = LOCAL.ip;

/** Leases a route set is drawn from (bit i of a mask); later duplicates win. */
export const ROUTE_FAMILY: Array<[string, string]> = [
  ['10.244.11.0/24', '192.168.77.11'],
  ['10.244.12.0/24', '192.168.77.12'],
  ['10.244.13.0/24', '192.168.77.13'],
  ['10.244.14.0/24', '192.168.77.12'], // a peer with two subnets
  ['10.245.0.0/16', '192.168.77.14'],
  ['10.245.7.0/24', '192.168.77.15'], // longer prefix inside the /16
  ['10.246.1.7/32', '192.168.77.16'],
  ['10.244.1.0/24', '192.168.77.17'], // our own subnet leased to someone: own-subnet wins
  ['10.244.11.0/24', '192.168.77.18'], // duplicate of the first: wins
  ['0.0.0.0/0', '192.168.77.19'], // a default route
];
export const DEFAULT_MASK = 0x7f;

export const rd16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
export const rd32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
export const wr16 = (b: Uint8Array, o: number, v: number): void => {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
};
export const wr32 = (b: Uint8Array, o: number, v: number): void => {
  wr16(b, o, v >>> 16);
  wr16(b, o + 2, v & 0xffff);
};

/** Folded ones'-complement sum (0xffff over data that includes a right checksum). */
export function sum16(b: Uint8Array, start: number, len: number, seed = 0): number {
  let s = seed;
  let i = start;
  for (; i + 1 < start + len; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < start + len) s += b[i]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

export function setIpChecksum(b: Uint8Array, start: number): void {
  const hl = (b[start]! & 15) * 4;
  if (hl < 20 || start + hl > b.length) return;
  wr16(b, start + 10, 0);
  wr16(b, start + 10, ~sum16(b, start, hl) & 0xffff);
}

export const maskOf = (len: number): number => (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0);
export const inSubnet = (ip: number, net: number, len: number): boolean => ((ip & maskOf(len)) >>> 0) === ((net & maskOf(len)) >>> 0);
export const isMcastBcast = (a: number): boolean => a >>> 28 === 0xe || a === 0xffffffff;
export const ICMP_ERROR_TYPES = new Set([3, 4, 5, 11, 12]);

export type Verdict = DropReason | 'forward';

/** docs/datapath.md validation order (packet.ts): truncated / not-ip / malformed / truncated.
 *  ignoreTotal: a TSO/USO super-packet, whose total length field the kernel leaves unset. */
export function refValidate(b: Uint8Array, start: number, len: number, csum: boolean, ignoreTotal = false): Verdict {
  if (len < 20) return 'truncated';
  if (b[start]! >> 4 !== 4) return 'not-ip';
  const hl = (b[start]! & 15) * 4;
  const total = rd16(b, start + 2);
  if (hl < 20 || (!ignoreTotal && total < hl)) return 'malformed';
  if (hl > len) return 'truncated';
  if (csum && sum16(b, start, hl) !== 0xffff) return 'malformed';
  if (!ignoreTotal && total > len) return 'truncated';
  return 'forward';
}

export function refIcmpAllowed(b: Uint8Array, start: number, avail: number): boolean {
  if ((rd16(b, start + 6) & 0x1fff) !== 0) return false;
  const src = rd32(b, start + 12);
  if (src === 0 || isMcastBcast(src) || isMcastBcast(rd32(b, start + 16))) return false;
  if (b[start + 9] === 1) {
    const hl = (b[start]! & 15) * 4;
    if (Math.min(rd16(b, start + 2), avail) <= hl) return false;
    if (ICMP_ERROR_TYPES.has(b[start + hl]!)) return false;
  }
  return true;
}

/** The current route set as the reference model sees it (never the forwarder's table). */
export class RouteSet {
  readonly routes: Route[];
  private readonly winners: Array<{ net: number; len: number; peer: number }> = [];
  readonly peers: string[];
  constructor(mask: number) {
    this.routes = ROUTE_FAMILY.filter((_, i) => mask & (1 << i)).map(([cidr, peer]) => ({
      subnet: parseSubnet(cidr),
      publicIP: ipOf(peer),
    }));
    this.routes.forEach((r, i) => {
      const dup = this.routes.slice(i + 1).some((o) => o.subnet!.prefixLen === r.subnet!.prefixLen && o.subnet!.ip === r.subnet!.ip);
      if (!dup) this.winners.push({ net: r.subnet!.ip, len: r.subnet!.prefixLen, peer: r.publicIP });
    });
    this.peers = [...new Set(this.winners.map((w) => formatIPv4(w.peer)))];
  }
  lookup(dst: number): number | undefined {
    let best: { len: number; peer: number } | undefined;
    for (const w of this.winners) if (inSubnet(dst, w.net, w.len) && (!best || w.len > best.len)) best = w;
    return best?.peer;
  }
  admits(peer: string, src: number): boolean {
    return this.winners.some((w) => formatIPv4(w.peer) === peer && inSubnet(src, w.net, w.len));
  }
  /** A source address inside one of the peer's subnets. */
  hostOf(rng: Rng, peer: string): number {
    const mine = this.winners.filter((w) => formatIPv4(w.peer) === peer);
    if (mine.length === 0) return rng.u32();
    const w = rng.pick(mine);
    return hostIn(rng, w.net, w.len);
  }
}

export function ipOf(dotted: string): number {
  return dotted.split('.').reduce((a, o) => a * 256 + Number(o), 0) >>> 0;
}

export function hostIn(rng: Rng, net: number, len: number): number {
  return len >= 32 ? net >>> 0 : (((net & maskOf(len)) | (rng.u32() & ~maskOf(len))) >>> 0);
}

export interface RefEncap {
  verdict: Verdict;
  /** Expected ICMP error, "type/code", or '' for none. */
  icmp: string;
}

/** Encap steps 1-5: the verdict before the send (a refused send is judged from the batch outcome). */
export function refEncap(buf: Uint8Array, start: number, length: number, rs: RouteSet, mtu: number): RefEncap {
  const v = refValidate(buf, start, length, false);
  if (v !== 'forward') return { verdict: v, icmp: '' };
  return refEncapRoute(buf, start, length, rd16(buf, start + 2), rs, mtu);
}

/** Encap steps 2-5 for a valid packet: own subnet, route, TTL, size (`size`: the largest datagram
 *  it becomes), with the ICMP error each drop earns. avail: the bytes of it at hand. */
function refEncapRoute(buf: Uint8Array, start: number, avail: number, size: number, rs: RouteSet, mtu: number): RefEncap {
  const dst = rd32(buf, start + 16);
  const allowed = refIcmpAllowed(buf, start, avail);
  if (inSubnet(dst, LOCAL.ip, LOCAL.prefixLen)) return { verdict: 'own-subnet', icmp: '' };
  if (rs.lookup(dst) === undefined) return { verdict: 'no-route', icmp: allowed ? '3/0' : '' };
  if (buf[start + 8]! <= 1) return { verdict: 'ttl-expired', icmp: allowed ? '11/0' : '' };
  if (size > mtu) return { verdict: 'oversize', icmp: allowed && (rd16(buf, start + 6) & 0x4000) !== 0 ? '3/4' : '' };
  return { verdict: 'forward', icmp: '' };
}

export const VNET_HDR_LEN = 10;
const VNET_F_NEEDS_CSUM = 1;
const VNET_GSO_TCPV4 = 1;
const VNET_GSO_UDP_L4 = 5;
const VNET_GSO_ECN = 0x80;

export interface RefTunRead extends RefEncap {
  /** Packets the read counts as: the segments of a super-packet, else 1. */
  units: number;
}

/** The virtio_net_hdr fields the engine reads (host byte order, as the kernel writes them); the
 *  caller has checked that the buffer holds VNET_HDR_LEN bytes. */
function readVnetHeader(buf: Uint8Array): { flags: number; gsoType: number; gsoSize: number; csumStart: number; csumOffset: number } {
  const le = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    flags: buf[0]!,
    gsoType: buf[1]! & ~VNET_GSO_ECN,
    gsoSize: le.getUint16(4, true),
    csumStart: le.getUint16(6, true),
    csumOffset: le.getUint16(8, true),
  };
}

/** Encap of one TUN read with its virtio_net_hdr (native engine; fields in host byte order, as the
 *  kernel writes them): the header's checks, then a super-packet judged by its largest segment. */
export function refEncapTunRead(buf: Uint8Array, rs: RouteSet, mtu: number): RefTunRead {
  if (buf.length < VNET_HDR_LEN) return { verdict: 'truncated', icmp: '', units: 1 };
  const { flags, gsoType, gsoSize, csumStart, csumOffset } = readVnetHeader(buf);
  const p = VNET_HDR_LEN;
  const len = buf.length - p;
  const gso = gsoType !== 0;
  const v = refValidate(buf, p, len, false, gso);
  if (v !== 'forward') return { verdict: v, icmp: '', units: 1 };
  const malformed: RefTunRead = { verdict: 'malformed', icmp: '', units: 1 };
  const hl = (buf[p]! & 15) * 4;
  if (!gso) {
    const total = rd16(buf, p + 2);
    // A checksum to complete must lie in the packet, start at an even offset, and start past the
    // IP header: completing one that starts inside it would rewrite validated header fields.
    if (flags & VNET_F_NEEDS_CSUM && (csumStart + csumOffset + 2 > total || csumStart & 1 || csumStart < hl)) return malformed;
    return { ...refEncapRoute(buf, p, total, total, rs, mtu), units: 1 };
  }
  // A super-packet: TCPv4 over TCP or UDP_L4 over UDP, not a fragment, a sane L4 header, <= 64 KiB.
  if (gsoSize === 0 || len > 65535 || (rd16(buf, p + 6) & 0x3fff) !== 0) return malformed;
  let l4: number;
  if (gsoType === VNET_GSO_TCPV4 && buf[p + 9] === 6) {
    if (len < hl + 20) return malformed;
    l4 = (buf[p + hl + 12]! >> 4) * 4;
    if (l4 < 20) return malformed;
  } else if (gsoType === VNET_GSO_UDP_L4 && buf[p + 9] === 17) {
    l4 = 8;
  } else {
    return malformed;
  }
  if (len < hl + l4) return malformed;
  const payload = len - hl - l4;
  const units = payload === 0 ? 1 : Math.ceil(payload / gsoSize);
  return { ...refEncapRoute(buf, p, len, hl + l4 + Math.min(payload, gsoSize), rs, mtu), units };
}

/** Decap steps 1-4 for one datagram from `sender` (dotted; '' or a stranger: unknown-peer). */
export function refDecap(buf: Uint8Array, start: number, len: number, sender: string, rs: RouteSet): Verdict {
  if (!rs.peers.includes(sender)) return 'unknown-peer';
  const v = refValidate(buf, start, len, true);
  if (v !== 'forward') return v;
  if (!rs.admits(sender, rd32(buf, start + 12))) return 'spoofed-source';
  if (buf[start + 8] === 0) return 'ttl-expired';
  return 'forward';
}

/** Decap of one received message of len bytes: the verdict of each datagram in it (a UDP GRO
 *  message holds datagrams of groSeg bytes, the last one shorter; groSeg 0: one datagram). A
 *  stranger's message: unknown-peer for every datagram; one the kernel cut (truncated) or an
 *  empty one: a single oversize / truncated. */
export function refDecapMessage(
  buf: Uint8Array, start: number, len: number, groSeg: number, truncated: boolean, sender: string, rs: RouteSet,
): Verdict[] {
  return splitMessage(len, groSeg, truncated, rs.peers.includes(sender), (off, n) => refDecap(buf, start + off, n, sender, rs));
}

/** A message's datagrams (see refDecapMessage), each judged by `one` (offset, length) when the
 *  sender is known. */
function splitMessage(len: number, groSeg: number, truncated: boolean, known: boolean, one: (off: number, n: number) => Verdict): Verdict[] {
  const seg = groSeg === 0 || groSeg > len ? len || 1 : groSeg;
  const datagrams = len === 0 ? 1 : Math.ceil(len / seg);
  if (!known) return new Array<Verdict>(datagrams).fill('unknown-peer');
  if (truncated) return ['oversize'];
  const out: Verdict[] = [];
  for (let off = 0; off < len || out.length === 0; off += seg) out.push(one(off, Math.min(seg, len - off)));
  return out;
}

// ---- IPv6 (docs/datapath.md "IPv6", "Underlay per peer") ----------------------------------------
// Addresses as bigints here (slow, plain), never the packet path's word arrays.

/** Our IPv6 lease; its network address is the IPv6 tunnel address. */
export const LOCAL6 = { ip: 0xfd00_0000_0000_0001_0000_0000_0000_0000n, prefixLen: 64 } as const;
/** IPv6 leases by peer (IPv4 PublicIP, or '' for an IPv6-only peer) and the peers' IPv6 underlay. */
export const ROUTE_FAMILY6: Array<{ v4: string; subnet6: string; publicIP: string; publicIPv6?: string }> = [
  { v4: '10.244.11.0/24', subnet6: 'fd00:0:0:11::/64', publicIP: '192.168.77.11', publicIPv6: 'fd77::11' },
  { v4: '10.244.12.0/24', subnet6: 'fd00:0:0:12::/64', publicIP: '192.168.77.12' }, // IPv4 underlay only
  { v4: '10.244.13.0/24', subnet6: 'fd00:0:0:1300::/56', publicIP: '', publicIPv6: 'fd77::13' }, // IPv6 underlay only
  { v4: '10.244.14.0/24', subnet6: 'fd00:0:0:1380::/57', publicIP: '192.168.77.14', publicIPv6: 'fd77::14' }, // inside the /56
  { v4: '10.244.15.0/24', subnet6: 'fd00:0:0:1::/64', publicIP: '192.168.77.15' }, // our own IPv6 subnet leased to someone
  { v4: '10.244.16.0/24', subnet6: 'fd00:0:0:16::/128', publicIP: '192.168.77.16', publicIPv6: 'fd77::16' },
];

export const rdAddr6 = (b: Uint8Array, o: number): bigint => {
  let v = 0n;
  for (let i = 0; i < 16; i++) v = (v << 8n) | BigInt(b[o + i]!);
  return v;
};
const mask6 = (len: number): bigint => (len === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - len)) - 1n));
export const inSubnet6 = (ip: bigint, net: bigint, len: number): boolean => (ip & mask6(len)) === (net & mask6(len));

/** Fixed-header checks of a packet that is not IPv4: the IPv4 ones first (< 20 bytes truncated,
 *  version not 6 -> not-ip), then < 40 truncated / malformed (jumbogram) / truncated. */
export function refValidate6(b: Uint8Array, start: number, len: number): Verdict {
  if (len < 20) return 'truncated';
  if (b[start]! >> 4 !== 6) return 'not-ip';
  if (len < 40) return 'truncated';
  const plen = rd16(b, start + 4);
  if (plen === 0 && b[start + 6] === 0) return 'malformed';
  if (40 + plen > len) return 'truncated';
  return 'forward';
}

/** The extension-header walk: [upper-layer protocol, its offset], or undefined for ext-header. */
export function refWalk6(b: Uint8Array, start: number, total: number): [number, number] | undefined {
  const limit = Math.min(total, 256);
  let nh = b[start + 6]!;
  let off = 40;
  for (let n = 0; [0, 43, 60, 44].includes(nh); n++) {
    if (n === 8 || (nh === 0 && n > 0) || off + 8 > limit) return undefined;
    if (nh === 44) break;
    const hlen = (b[start + off + 1]! + 1) * 8;
    if (off + hlen > limit) return undefined;
    nh = b[start + off]!;
    off += hlen;
  }
  return [nh, off];
}

export function refIcmp6Allowed(b: Uint8Array, start: number, total: number): boolean {
  const src = rdAddr6(b, start + 8);
  if (src === 0n || b[start + 8] === 0xff || b[start + 24] === 0xff) return false;
  const w = refWalk6(b, start, total);
  if (!w) return false;
  const [nh, off] = w;
  if (nh === 44) return (rd16(b, start + off + 2) & 0xfff8) === 0 && b[start + off] !== 58;
  if (nh === 58) return off < total && b[start + off]! >= 128;
  return true;
}

/** The IPv6 side of a route set: which ROUTE_FAMILY6 entries exist, and this node's underlays. */
export class RouteSet6 {
  readonly routes: Route[];
  constructor(
    mask: number,
    readonly hasV4 = true,
    readonly hasV6 = true,
  ) {
    this.routes = ROUTE_FAMILY6.filter((_, i) => mask & (1 << i)).map((f) => ({
      subnet: parseSubnet(f.v4),
      publicIP: f.publicIP === '' ? 0 : ipOf(f.publicIP),
      subnet6: { ip: parseIPv6Plain(f.subnet6.split('/')[0]!), prefixLen: Number(f.subnet6.split('/')[1]) },
      ...(f.publicIPv6 ? { publicIPv6: parseIPv6Plain(f.publicIPv6) } : {}),
    }));
  }
  /** The longest IPv6 prefix holding dst: its route, or undefined. */
  lookup6(dst: bigint): Route | undefined {
    let best: Route | undefined;
    for (const r of this.routes) if (inSubnet6(dst, r.subnet6!.ip, r.subnet6!.prefixLen) && (!best || r.subnet6!.prefixLen > best.subnet6!.prefixLen)) best = r;
    return best;
  }
  /** Where datagrams for the peer of `r` go: an IPv6 address text, a dotted one, or '' (none). */
  underlayOf(r: Route): string {
    if (this.hasV6 && r.publicIPv6 !== undefined) return formatIPv6Plain(r.publicIPv6);
    if (this.hasV4 && r.publicIP !== 0) return formatIPv4(r.publicIP);
    return '';
  }
  /** The route a datagram from `sender` (either of a peer's addresses) speaks for. */
  peerRoutes(sender: string): Route[] {
    return this.routes.filter((r) => (r.publicIP !== 0 && formatIPv4(r.publicIP) === sender) || (r.publicIPv6 !== undefined && formatIPv6Plain(r.publicIPv6) === sender));
  }
}

function parseIPv6Plain(text: string): bigint {
  const [head, tail] = text.split('::') as [string, string | undefined];
  const hs = head ? head.split(':') : [];
  const ts = tail ? tail.split(':') : [];
  const groups = [...hs, ...new Array<string>(8 - hs.length - ts.length).fill('0'), ...ts];
  return groups.reduce((v, g) => (v << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** Full form, lower case, no compression: compared after normalising both sides with it. */
export function formatIPv6Plain(ip: bigint): string {
  const g: string[] = [];
  for (let i = 7; i >= 0; i--) g.push(((ip >> BigInt(16 * i)) & 0xffffn).toString(16));
  return g.join(':');
}

/** Encap of an IPv6 packet, with the ICMPv6 error expected ("type/code") and the underlay used. */
export function refEncap6(b: Uint8Array, start: number, len: number, rs: RouteSet6, mtu: number): RefEncap & { to: string } {
  const v = refValidate6(b, start, len);
  if (v !== 'forward') return { verdict: v, icmp: '', to: '' };
  const total = 40 + rd16(b, start + 4);
  return refEncap6Route(b, start, total, total, rs, mtu);
}

/** The rules after validation: total bytes are walked and quoted, size is checked against the MTU
 *  (a super-packet: its whole read, and its largest segment). */
function refEncap6Route(b: Uint8Array, start: number, total: number, size: number, rs: RouteSet6, mtu: number): RefEncap & { to: string } {
  const none = { icmp: '', to: '' };
  if (!refWalk6(b, start, total)) return { verdict: 'ext-header', ...none };
  const dst = rdAddr6(b, start + 24);
  if (inSubnet6(dst, LOCAL6.ip, LOCAL6.prefixLen)) return { verdict: 'own-subnet', ...none };
  const allowed = refIcmp6Allowed(b, start, total);
  const r = rs.lookup6(dst);
  if (!r) return { verdict: 'no-route', icmp: allowed ? '1/0' : '', to: '' };
  if (b[start + 7]! <= 1) return { verdict: 'ttl-expired', icmp: allowed ? '3/0' : '', to: '' };
  if (size > mtu) return { verdict: 'oversize', icmp: allowed ? '2/0' : '', to: '' };
  const to = rs.underlayOf(r);
  if (to === '') return { verdict: 'no-underlay', ...none };
  return { verdict: 'forward', icmp: '', to };
}

/** Decap of an inner IPv6 packet from `sender` (a peer's IPv4 or IPv6 underlay address). */
export function refDecap6(b: Uint8Array, start: number, len: number, sender: string, rs: RouteSet6): Verdict {
  const mine = rs.peerRoutes(sender);
  if (mine.length === 0) return 'unknown-peer';
  const v = refValidate6(b, start, len);
  if (v !== 'forward') return v;
  if (!refWalk6(b, start, 40 + rd16(b, start + 4))) return 'ext-header';
  const src = rdAddr6(b, start + 8);
  if (!mine.some((r) => inSubnet6(src, r.subnet6!.ip, r.subnet6!.prefixLen))) return 'spoofed-source';
  if (!inSubnet6(rdAddr6(b, start + 24), LOCAL6.ip, LOCAL6.prefixLen)) return 'no-route';
  if (b[start + 7] === 0) return 'ttl-expired';
  return 'forward';
}

/** refDecapMessage for a dual-stack node: every datagram an IPv6 inner packet (refDecap6). */
export function refDecapMessage6(
  buf: Uint8Array, start: number, len: number, groSeg: number, truncated: boolean, sender: string, rs: RouteSet6,
): Verdict[] {
  const known = rs.peerRoutes(sender).length > 0;
  return splitMessage(len, groSeg, truncated, known, (off, n) => {
    if (n >= 20 && buf[start + off]! >> 4 === 4) throw new Error('IPv6 model: an IPv4 inner packet (the IPv4 rules judge those)');
    return refDecap6(buf, start + off, n, sender, rs);
  });
}

const VNET_GSO_TCPV6 = 4;

/** refEncapTunRead for a dual-stack node reading IPv6 packets behind their virtio header.
 *  Plain (gso_type 0, ECN bit aside): the fixed-header checks; a checksum to complete
 *  (NEEDS_CSUM) must start past the fixed header, at an even offset, and end inside the payload
 *  length, else malformed. A super-packet: only the version and 40 bytes are checked (the payload
 *  length is not trusted: the read's length counts), then it must be TCPV6 over TCP or UDP_L4 over
 *  UDP right after the fixed header (no extension headers), gso_size > 0, a TCP data offset >= 5,
 *  its L4 header inside the read, else malformed (one unit); hdr_len and csum_start/offset are
 *  not trusted (recomputed). It counts as its segments, is walked and quoted as the whole read,
 *  and judged for the MTU by its largest segment. */
export function refEncapTunRead6(buf: Uint8Array, rs: RouteSet6, mtu: number): RefTunRead & { to: string } {
  const none = { icmp: '', to: '', units: 1 };
  if (buf.length < VNET_HDR_LEN) return { verdict: 'truncated', ...none };
  const p = VNET_HDR_LEN;
  const len = buf.length - p;
  if (len >= 20 && buf[p]! >> 4 === 4) throw new Error('IPv6 model: an IPv4 packet (the IPv4 rules judge those)');
  const { flags, gsoType, gsoSize, csumStart, csumOffset } = readVnetHeader(buf);
  const malformed = { verdict: 'malformed' as Verdict, ...none };
  if (gsoType === 0) {
    const v = refValidate6(buf, p, len);
    if (v !== 'forward') return { verdict: v, ...none };
    const total = 40 + rd16(buf, p + 4);
    if (flags & VNET_F_NEEDS_CSUM && (csumStart < 40 || csumStart + csumOffset + 2 > total || csumStart & 1)) return malformed;
    return { ...refEncap6Route(buf, p, total, total, rs, mtu), units: 1 };
  }
  if (len < 20) return { verdict: 'truncated', ...none };
  if (buf[p]! >> 4 !== 6) return { verdict: 'not-ip', ...none };
  if (len < 40) return { verdict: 'truncated', ...none };
  if (gsoSize === 0 || len > 65535) return malformed;
  const nh = buf[p + 6]!;
  let l4: number;
  if (gsoType === VNET_GSO_TCPV6 && nh === 6) {
    if (len < 60) return malformed;
    l4 = (buf[p + 52]! >> 4) * 4;
    if (l4 < 20) return malformed;
  } else if (gsoType === VNET_GSO_UDP_L4 && nh === 17) {
    l4 = 8;
  } else {
    return malformed; // TCPV4 on IPv6, the type for the other protocol, extension headers, any other type
  }
  if (len < 40 + l4) return malformed;
  const payload = len - 40 - l4;
  const units = payload === 0 ? 1 : Math.ceil(payload / gsoSize);
  return { ...refEncap6Route(buf, p, len, 40 + l4 + Math.min(payload, gsoSize), rs, mtu), units };
}

/** An address text (dotted, or formatIPv6Plain) as 16 bytes; IPv4 as ::ffff:a.b.c.d. */
export function addr16(text: string): Uint8Array {
  const out = new Uint8Array(16);
  if (!text.includes(':')) {
    out[10] = out[11] = 0xff;
    wr32(out, 12, ipOf(text));
    return out;
  }
  let v = parseIPv6Plain(text);
  for (let i = 15; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}
