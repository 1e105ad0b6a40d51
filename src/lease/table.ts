// The agent's view of every lease, fed by LeaseStore.watch() updates. Snapshots are diffed against
// what is known (so a relist turns into adds/removes), events are applied one by one.
// The table keeps our own lease too (for the debug endpoint), but routes() leaves it out.
import { formatSubnet, parseIPv4, subnetsOverlap, type Subnet } from '../net/cidr.js';
import { formatSubnet6, parseIPv6, subnet6Equals, subnets6Overlap, type Subnet6 } from '../net/ip6.js';
import type { Route } from '../datapath/types.js';
import type { Lease, LeaseEvent, LeaseUpdate } from './types.js';
import { leaseName, type LeaseSubnets } from './name.js';
import { leaseCarriesIPv6 } from './backend-data.js';

/** Leases are keyed by their IPv4 subnet, or by their IPv6 subnet when they have none (IPv6-only overlay). */
const keyOf = leaseName;

function sameLease(a: Lease, b: Lease): boolean {
  return (
    a.publicIP === b.publicIP &&
    sameSubnet(a.subnet, b.subnet) &&
    a.publicIPv6 === b.publicIPv6 &&
    sameSubnet6(a.ipv6Subnet, b.ipv6Subnet)
  );
}

function sameSubnet(a: Subnet | undefined, b: Subnet | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.ip === b.ip && a.prefixLen === b.prefixLen;
}

function sameSubnet6(a: Subnet6 | undefined, b: Subnet6 | undefined): boolean {
  return a === undefined || b === undefined ? a === b : subnet6Equals(a, b);
}

/** Says why a lease must not be routed (e.g. outside the network), or undefined when it is fine. */
export type LeaseCheck = (lease: Lease) => string | undefined;

/**
 * A lease the table refused: one bad key in the store must never take other nodes' traffic
 * (a /25 inside someone's /24 would win the longest-prefix match; 0.0.0.0/0 would take everything).
 */
export interface RejectedLease {
  lease: Lease;
  reason: string;
}

export class LeaseTable {
  private readonly leases = new Map<string, Lease>();
  /** How many leases of each prefix length: overlaps are only possible across lengths. */
  private readonly prefixLens = new Map<number, number>();
  /** IPv6 subnet -> the IPv4 key of the lease holding it, and the same per-length counts. */
  private readonly subnets6 = new Map<string, string>();
  private readonly prefixLens6 = new Map<number, number>();

  constructor(
    private readonly check: LeaseCheck = () => undefined,
    private readonly onReject: (rejected: RejectedLease) => void = () => {},
  ) {}

  /**
   * Applies a watch update and returns the events that changed the table (a snapshot yields
   * `added` for new or changed leases and `removed` for vanished ones). Renewals of an
   * unchanged lease update the stored lease but are not reported.
   */
  apply(update: LeaseUpdate): LeaseEvent[] {
    const changes: LeaseEvent[] = [];
    if (update.kind === 'snapshot') {
      const listed = new Set(update.leases.map(keyOf));
      for (const [key, lease] of this.leases) {
        if (!listed.has(key)) {
          this.remove(key);
          changes.push({ type: 'removed', lease });
        }
      }
      for (const lease of update.leases) this.put(lease, changes);
    } else {
      for (const event of update.events) {
        if (event.type === 'added') this.put(event.lease, changes);
        else {
          const key = keyOf(event.lease);
          const known = this.leases.get(key);
          if (known) {
            this.remove(key);
            changes.push({ type: 'removed', lease: known });
          }
        }
      }
    }
    return changes;
  }

  private put(lease: Lease, changes: LeaseEvent[]): void {
    const key = keyOf(lease);
    const known = this.leases.get(key);
    // A renewal is not checked again, unless its IPv6 half changed.
    const fresh = !known || !sameSubnet6(known.ipv6Subnet, lease.ipv6Subnet);
    const problem = fresh ? this.check(lease) ?? (known ? undefined : this.overlapWith(lease)) ?? this.overlap6With(lease, key) : undefined;
    if (problem) {
      this.onReject({ lease, reason: problem });
      return;
    }
    if (known) this.remove(key);
    this.leases.set(key, lease);
    if (lease.subnet) this.prefixLens.set(lease.subnet.prefixLen, (this.prefixLens.get(lease.subnet.prefixLen) ?? 0) + 1);
    if (lease.ipv6Subnet) {
      this.subnets6.set(formatSubnet6(lease.ipv6Subnet), key);
      this.prefixLens6.set(lease.ipv6Subnet.prefixLen, (this.prefixLens6.get(lease.ipv6Subnet.prefixLen) ?? 0) + 1);
    }
    if (!known || !sameLease(known, lease)) changes.push({ type: 'added', lease });
  }

  private remove(key: string): void {
    const lease = this.leases.get(key);
    if (!lease) return;
    this.leases.delete(key);
    if (lease.subnet) decrement(this.prefixLens, lease.subnet.prefixLen);
    if (lease.ipv6Subnet) {
      this.subnets6.delete(formatSubnet6(lease.ipv6Subnet));
      decrement(this.prefixLens6, lease.ipv6Subnet.prefixLen);
    }
  }

  /** The lease of another node whose IPv6 subnet overlaps this one's (the older lease keeps it). */
  private overlap6With(lease: Lease, key: string): string | undefined {
    const six = lease.ipv6Subnet;
    if (!six) return undefined;
    const holderKey = this.subnets6.get(formatSubnet6(six));
    const onlyLen = this.prefixLens6.size === 0 || (this.prefixLens6.size === 1 && this.prefixLens6.has(six.prefixLen));
    let holder = holderKey !== undefined && holderKey !== key ? this.leases.get(holderKey) : undefined;
    if (!holder && !onlyLen) {
      for (const [otherKey, other] of this.leases) {
        if (otherKey !== key && other.ipv6Subnet && subnets6Overlap(other.ipv6Subnet, six)) holder = other;
      }
    }
    return holder ? `has an IPv6 subnet overlapping ${formatSubnet6(holder.ipv6Subnet!)} of ${holder.publicIP}` : undefined;
  }

  /** The lease already known that overlaps this new one (the older lease keeps its subnet). */
  private overlapWith(lease: Lease): string | undefined {
    const subnet = lease.subnet;
    if (!subnet) return undefined;
    const onlyLen = this.prefixLens.size === 0 || (this.prefixLens.size === 1 && this.prefixLens.has(subnet.prefixLen));
    if (onlyLen) return undefined; // distinct subnets of one length never overlap
    for (const other of this.leases.values()) {
      if (other.subnet && subnetsOverlap(other.subnet, subnet)) {
        return `overlaps the lease ${formatSubnet(other.subnet)} of ${other.publicIP}`;
      }
    }
    return undefined;
  }

  /** The lease holding the same subnets' key (its IPv4 subnet, else its IPv6 subnet). */
  get(subnets: LeaseSubnets): Lease | undefined {
    return this.leases.get(keyOf(subnets));
  }

  /** Every lease, sorted by IPv4 subnet address (by IPv6 subnet on an IPv6-only overlay). */
  all(): Lease[] {
    return [...this.leases.values()].sort(byAddress);
  }

  get size(): number {
    return this.leases.size;
  }

  /**
   * Data-path routes: every lease except our own subnet. With `ipv6` (EnableIPv6) routes carry the
   * lease's IPv6 subnet and PublicIPv6; an IPv4-only cluster never routes IPv6.
   */
  routes(own?: LeaseSubnets, ipv6 = false): Route[] {
    const routes: Route[] = [];
    const ownKey = own && keyOf(own);
    for (const [key, lease] of this.leases) {
      if (key === ownKey) continue;
      let publicIP: number;
      let publicIPv6: bigint | undefined;
      try {
        publicIP = parseIPv4(lease.publicIP);
        publicIPv6 = ipv6 && lease.publicIPv6 !== undefined ? parseIPv6(lease.publicIPv6) : undefined;
      } catch {
        continue; // the store validates PublicIP; never let one bad value break the table
      }
      const route: Route = lease.subnet ? { subnet: lease.subnet, publicIP } : { publicIP };
      // Only to a holder whose tunnel carries IPv6: a stock flannel UDP node's IPv6 subnet gets no route.
      if (ipv6 && lease.ipv6Subnet && leaseCarriesIPv6(lease)) route.subnet6 = lease.ipv6Subnet;
      if (!route.subnet && !route.subnet6) continue; // an IPv6-only lease in a cluster without IPv6: nothing to route
      if (publicIPv6 !== undefined) route.publicIPv6 = publicIPv6;
      routes.push(route);
    }
    return routes;
  }
}

function byAddress(a: Lease, b: Lease): number {
  if (a.subnet && b.subnet) return a.subnet.ip - b.subnet.ip || a.subnet.prefixLen - b.subnet.prefixLen;
  if (a.subnet || b.subnet) return a.subnet ? -1 : 1;
  const x = a.ipv6Subnet?.ip ?? 0n;
  const y = b.ipv6Subnet?.ip ?? 0n;
  return x < y ? -1 : x > y ? 1 : (a.ipv6Subnet?.prefixLen ?? 0) - (b.ipv6Subnet?.prefixLen ?? 0);
}

function decrement(counts: Map<number, number>, len: number): void {
  const count = (counts.get(len) ?? 1) - 1;
  if (count > 0) counts.set(len, count);
  else counts.delete(len);
}
