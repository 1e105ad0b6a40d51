// The reference model of docs/datapath.md the js fuzzer judges the forwarder by, and the byte
// helpers it needs. Independent of src/datapath/ on purpose: a bug there must not hide here.
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

/** docs/datapath.md validation order (packet.ts): truncated / not-ip / malformed / truncated. */
export function refValidate(b: Uint8Array, start: number, len: number, csum: boolean): Verdict {
  if (len < 20) return 'truncated';
  if (b[start]! >> 4 !== 4) return 'not-ip';
  const hl = (b[start]! & 15) * 4;
  const total = rd16(b, start + 2);
  if (hl < 20 || total < hl) return 'malformed';
  if (hl > len) return 'truncated';
  if (csum && sum16(b, start, hl) !== 0xffff) return 'malformed';
  if (total > len) return 'truncated';
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
      const dup = this.routes.slice(i + 1).some((o) => o.subnet.prefixLen === r.subnet.prefixLen && o.subnet.ip === r.subnet.ip);
      if (!dup) this.winners.push({ net: r.subnet.ip, len: r.subnet.prefixLen, peer: r.publicIP });
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
  const dst = rd32(buf, start + 16);
  const total = rd16(buf, start + 2);
  const allowed = refIcmpAllowed(buf, start, length);
  if (inSubnet(dst, LOCAL.ip, LOCAL.prefixLen)) return { verdict: 'own-subnet', icmp: '' };
  if (rs.lookup(dst) === undefined) return { verdict: 'no-route', icmp: allowed ? '3/0' : '' };
  if (buf[start + 8]! <= 1) return { verdict: 'ttl-expired', icmp: allowed ? '11/0' : '' };
  if (total > mtu) return { verdict: 'oversize', icmp: allowed && (rd16(buf, start + 6) & 0x4000) !== 0 ? '3/4' : '' };
  return { verdict: 'forward', icmp: '' };
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
