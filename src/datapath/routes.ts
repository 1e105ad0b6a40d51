// The peer route table: longest-prefix match for encap, per-peer subnets for decap admission.
// Immutable once built; the engine swaps in a new table on every lease change.
import { prefixMask, type Subnet } from '../net/cidr.js';
import type { Route } from './types.js';

interface PrefixLevel {
  mask: number;
  /** Network address (host bits zero) -> route. */
  routes: Map<number, Route>;
}

export class RouteTable {
  /** One map per distinct prefix length, longest first (with flannel leases: a single level). */
  private readonly levels: PrefixLevel[];
  private readonly byPeer: Map<number, Subnet[]>;
  readonly size: number;

  constructor(routes: readonly Route[]) {
    const levels = new Map<number, PrefixLevel>();
    this.byPeer = new Map();
    for (const route of routes) {
      const mask = prefixMask(route.subnet.prefixLen);
      const network = (route.subnet.ip & mask) >>> 0;
      const publicIP = route.publicIP >>> 0;
      const normalized: Route = { subnet: { ip: network, prefixLen: route.subnet.prefixLen }, publicIP };
      let level = levels.get(route.subnet.prefixLen);
      if (!level) {
        level = { mask, routes: new Map() };
        levels.set(route.subnet.prefixLen, level);
      }
      // Two leases for one subnet cannot both exist in etcd; if a caller passes both, the later wins.
      level.routes.set(network, normalized);
    }
    this.levels = [...levels.entries()].sort((a, b) => b[0] - a[0]).map(([, level]) => level);
    let size = 0;
    for (const level of this.levels) {
      size += level.routes.size;
      for (const route of level.routes.values()) {
        const subnets = this.byPeer.get(route.publicIP);
        if (subnets) subnets.push(route.subnet);
        else this.byPeer.set(route.publicIP, [route.subnet]);
      }
    }
    this.size = size;
  }

  /** Longest-prefix match of an unsigned 32-bit destination. */
  lookup(dstIP: number): Route | undefined {
    const levels = this.levels;
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i]!;
      const route = level.routes.get((dstIP & level.mask) >>> 0);
      if (route !== undefined) return route;
    }
    return undefined;
  }

  /** The subnets leased to a PublicIP (a peer may hold several), or undefined for a stranger. */
  subnetsOf(publicIP: number): readonly Subnet[] | undefined {
    return this.byPeer.get(publicIP >>> 0);
  }

  /** Decap admission: is `innerSrc` inside a subnet leased to `publicIP`? */
  admits(publicIP: number, innerSrc: number): boolean {
    const subnets = this.byPeer.get(publicIP >>> 0);
    return subnets !== undefined && subnetsContain(subnets, innerSrc);
  }

  /** Every distinct peer PublicIP. */
  peers(): IterableIterator<number> {
    return this.byPeer.keys();
  }
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
