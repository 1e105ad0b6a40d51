// The peer route table: longest-prefix match for encap (IPv4 and IPv6), per-peer subnets of both
// families for decap admission, peers by underlay address. Immutable once built; the engine swaps
// in a new table on every lease change.
import { formatIPv4, prefixMask, type Subnet } from '../net/cidr.js';
import { formatIPv6, subnet6ToKey } from '../net/ip6.js';
import { readU32 } from './packet.js';
import { hash6, prefix6Has, toPrefix6, type Prefix6 } from './prefix6.js';
import type { Route } from './types.js';

/** A peer node: every lease with the same underlay identity. */
export interface TablePeer {
  /** Identity in stats: the dotted PublicIP, or the PublicIPv6 text when it has no IPv4 one. */
  readonly key: string;
  /** Position in RouteTable.peerList (engines keep per-peer state in an array by it). */
  readonly index: number;
  /** 0 when the peer has no IPv4 underlay address. */
  readonly publicIP: number;
  readonly publicIPv6: bigint | undefined;
  readonly subnets: Subnet[];
  readonly subnets6: Prefix6[];
}

/** A route as the IPv4 lookup returns it: normalized, with the peer that holds it. */
/** An IPv4 route of the table: always has its subnet. */
export interface TableRoute extends Route {
  readonly subnet: Subnet;
  readonly peer: TablePeer;
}

interface PrefixLevel {
  mask: number;
  /** Network address (host bits zero) -> route. */
  routes: Map<number, TableRoute>;
}

/**
 * IPv6 routes of one prefix length in an open-addressing hash table over typed arrays (network
 * words of route i at words[4i..4i+3]; slots hold i, or -1): a lookup touches a few contiguous
 * cache lines however many leases there are.
 */
class PrefixLevel6 {
  readonly m0: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
  readonly slots: Int32Array;
  readonly slotMask: number;
  readonly words: Uint32Array;
  readonly peers: TablePeer[] = [];

  constructor(mask: Prefix6, capacity: number) {
    this.m0 = mask.m0;
    this.m1 = mask.m1;
    this.m2 = mask.m2;
    this.m3 = mask.m3;
    let size = 8;
    while (size < capacity * 2) size *= 2;
    this.slots = new Int32Array(size).fill(-1);
    this.slotMask = size - 1;
    this.words = new Uint32Array(capacity * 4);
  }

  add(p: Prefix6, peer: TablePeer): void {
    const i = this.peers.length;
    this.peers.push(peer);
    this.words.set([p.w0, p.w1, p.w2, p.w3], i * 4);
    let s = hash6(p.w0, p.w1, p.w2, p.w3) & this.slotMask;
    while (this.slots[s] !== -1) s = (s + 1) & this.slotMask;
    this.slots[s] = i;
  }
}

/** A /128 of the peer's IPv6 underlay address, to match datagram sources against. */
interface Underlay6 {
  readonly addr: Prefix6;
  readonly peer: TablePeer;
}

function peerKey(route: Route): string {
  return route.publicIP === 0 && route.publicIPv6 !== undefined ? formatIPv6(route.publicIPv6) : formatIPv4(route.publicIP >>> 0);
}

export class RouteTable {
  /** One map per distinct prefix length, longest first (with flannel leases: a single level). */
  private readonly levels: PrefixLevel[];
  private readonly levels6: PrefixLevel6[];
  private readonly byIPv4 = new Map<number, TablePeer>();
  private readonly byIPv6 = new Map<number, Underlay6[]>();
  /** Every peer, in the order of the routes given. */
  readonly peerList: readonly TablePeer[];
  /** IPv4 routes; `size6`: IPv6 routes. */
  readonly size: number;
  readonly size6: number;

  constructor(routes: readonly Route[]) {
    // Two leases for one subnet cannot both exist in etcd; if a caller passes both, the later wins.
    const winner4 = new Map<string, number>();
    const winner6 = new Map<string, number>();
    routes.forEach((r, i) => {
      if (r.subnet) winner4.set(`${r.subnet.prefixLen}/${(r.subnet.ip & prefixMask(r.subnet.prefixLen)) >>> 0}`, i);
      if (r.subnet6) winner6.set(subnet6ToKey({ ip: toBigPrefix(r.subnet6.ip, r.subnet6.prefixLen), prefixLen: r.subnet6.prefixLen }), i);
    });
    const keep4 = new Set(winner4.values());
    const keep6 = new Set(winner6.values());

    const peers = new Map<string, { -readonly [K in keyof TablePeer]: TablePeer[K] }>();
    const levels = new Map<number, PrefixLevel>();
    const levels6 = new Map<number, PrefixLevel6>();
    const perLength6 = new Map<number, number>();
    for (const i of keep6) {
      const len = routes[i]!.subnet6!.prefixLen;
      perLength6.set(len, (perLength6.get(len) ?? 0) + 1);
    }
    routes.forEach((route, i) => {
      if (!keep4.has(i) && !keep6.has(i)) return;
      const key = peerKey(route);
      let peer = peers.get(key);
      if (!peer) {
        peer = { key, index: peers.size, publicIP: route.publicIP >>> 0, publicIPv6: route.publicIPv6, subnets: [], subnets6: [] };
        peers.set(key, peer);
      } else if (peer.publicIPv6 === undefined) {
        peer.publicIPv6 = route.publicIPv6;
      }
      if (keep4.has(i) && route.subnet) {
        const mask = prefixMask(route.subnet.prefixLen);
        const subnet = { ip: (route.subnet.ip & mask) >>> 0, prefixLen: route.subnet.prefixLen };
        let level = levels.get(subnet.prefixLen);
        if (!level) levels.set(subnet.prefixLen, (level = { mask, routes: new Map() }));
        level.routes.set(subnet.ip, { subnet, publicIP: peer.publicIP, peer });
        peer.subnets.push(subnet);
      }
      if (keep6.has(i) && route.subnet6) {
        const prefix = toPrefix6(route.subnet6);
        let level = levels6.get(prefix.prefixLen);
        if (!level) levels6.set(prefix.prefixLen, (level = new PrefixLevel6(prefix, perLength6.get(prefix.prefixLen)!)));
        level.add(prefix, peer);
        peer.subnets6.push(prefix);
      }
    });
    this.levels = [...levels.entries()].sort((a, b) => b[0] - a[0]).map(([, level]) => level);
    this.levels6 = [...levels6.entries()].sort((a, b) => b[0] - a[0]).map(([, level]) => level);
    this.size = keep4.size;
    this.size6 = keep6.size;
    this.peerList = [...peers.values()];
    for (const peer of this.peerList) {
      if (peer.publicIP !== 0) this.byIPv4.set(peer.publicIP, peer);
      if (peer.publicIPv6 !== undefined) {
        const addr = toPrefix6({ ip: peer.publicIPv6, prefixLen: 128 });
        const h = hash6(addr.w0, addr.w1, addr.w2, addr.w3);
        const list = this.byIPv6.get(h);
        if (list) list.push({ addr, peer });
        else this.byIPv6.set(h, [{ addr, peer }]);
      }
    }
  }

  /** Longest-prefix match of an unsigned 32-bit destination. */
  lookup(dstIP: number): TableRoute | undefined {
    const levels = this.levels;
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i]!;
      const route = level.routes.get((dstIP & level.mask) >>> 0);
      if (route !== undefined) return route;
    }
    return undefined;
  }

  /** Longest-prefix match of the IPv6 address at buf[off, off + 16): the peer holding it. */
  lookup6(buf: Uint8Array, off: number): TablePeer | undefined {
    const levels = this.levels6;
    if (levels.length === 0) return undefined;
    const a0 = readU32(buf, off);
    const a1 = readU32(buf, off + 4);
    const a2 = readU32(buf, off + 8);
    const a3 = readU32(buf, off + 12);
    for (let i = 0; i < levels.length; i++) {
      const l = levels[i]!;
      const w0 = (a0 & l.m0) >>> 0;
      const w1 = (a1 & l.m1) >>> 0;
      const w2 = (a2 & l.m2) >>> 0;
      const w3 = (a3 & l.m3) >>> 0;
      const words = l.words;
      const slots = l.slots;
      for (let s = hash6(w0, w1, w2, w3) & l.slotMask; ; s = (s + 1) & l.slotMask) {
        const e = slots[s]!;
        if (e < 0) break;
        const b = e * 4;
        if (words[b] === w0 && words[b + 1] === w1 && words[b + 2] === w2 && words[b + 3] === w3) return l.peers[e];
      }
    }
    return undefined;
  }

  /** The peer whose IPv4 underlay address is `publicIP`. */
  peerByIPv4(publicIP: number): TablePeer | undefined {
    return this.byIPv4.get(publicIP >>> 0);
  }

  /** The peer whose IPv6 underlay address is at buf[off, off + 16). */
  peerByIPv6(buf: Uint8Array, off: number): TablePeer | undefined {
    const list = this.byIPv6.get(hash6(readU32(buf, off), readU32(buf, off + 4), readU32(buf, off + 8), readU32(buf, off + 12)));
    if (list === undefined) return undefined;
    for (let i = 0; i < list.length; i++) if (prefix6Has(list[i]!.addr, buf, off)) return list[i]!.peer;
    return undefined;
  }

  /** The IPv4 subnets leased to a PublicIP (a peer may hold several), or undefined for a stranger. */
  subnetsOf(publicIP: number): readonly Subnet[] | undefined {
    const subnets = this.byIPv4.get(publicIP >>> 0)?.subnets;
    return subnets === undefined || subnets.length === 0 ? undefined : subnets;
  }

  /** Decap admission: is `innerSrc` inside an IPv4 subnet leased to `publicIP`? */
  admits(publicIP: number, innerSrc: number): boolean {
    const peer = this.byIPv4.get(publicIP >>> 0);
    return peer !== undefined && subnetsContain(peer.subnets, innerSrc);
  }

  /** Every distinct IPv4 PublicIP that holds an IPv4 route. */
  peers(): number[] {
    return this.peerList.filter((p) => p.publicIP !== 0 && p.subnets.length > 0).map((p) => p.publicIP);
  }
}

function toBigPrefix(ip: bigint, prefixLen: number): bigint {
  return prefixLen === 0 ? 0n : (ip >> BigInt(128 - prefixLen)) << BigInt(128 - prefixLen);
}

/** True when `ip` lies in one of the subnets (no allocation; used per decapsulated packet). */
export function subnetsContain(subnets: readonly Subnet[], ip: number): boolean {
  for (let i = 0; i < subnets.length; i++) {
    const s = subnets[i]!;
    const mask = s.prefixLen === 0 ? 0 : (0xffffffff << (32 - s.prefixLen)) >>> 0;
    if (((ip & mask) >>> 0) === s.ip) return true;
  }
  return false;
}
