// The agent's view of every lease, fed by LeaseStore.watch() updates. Snapshots are diffed against
// what is known (so a relist turns into adds/removes), events are applied one by one.
// The table keeps our own lease too (for the debug endpoint), but routes() leaves it out.
import { formatSubnet, parseIPv4, subnetsOverlap, type Subnet } from '../net/cidr.js';
import type { Route } from '../datapath/types.js';
import type { Lease, LeaseEvent, LeaseUpdate } from './types.js';

function keyOf(subnet: Subnet): string {
  return formatSubnet(subnet);
}

function sameLease(a: Lease, b: Lease): boolean {
  return a.publicIP === b.publicIP && a.subnet.ip === b.subnet.ip && a.subnet.prefixLen === b.subnet.prefixLen;
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
      const listed = new Set(update.leases.map((lease) => keyOf(lease.subnet)));
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
          const key = keyOf(event.lease.subnet);
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
    const key = keyOf(lease.subnet);
    const known = this.leases.get(key);
    const problem = known ? undefined : this.check(lease) ?? this.overlapWith(lease);
    if (problem) {
      this.onReject({ lease, reason: problem });
      return;
    }
    this.leases.set(key, lease);
    if (!known) this.prefixLens.set(lease.subnet.prefixLen, (this.prefixLens.get(lease.subnet.prefixLen) ?? 0) + 1);
    if (!known || !sameLease(known, lease)) changes.push({ type: 'added', lease });
  }

  private remove(key: string): void {
    const lease = this.leases.get(key);
    if (!lease) return;
    this.leases.delete(key);
    const count = (this.prefixLens.get(lease.subnet.prefixLen) ?? 1) - 1;
    if (count > 0) this.prefixLens.set(lease.subnet.prefixLen, count);
    else this.prefixLens.delete(lease.subnet.prefixLen);
  }

  /** The lease already known that overlaps this new one (the older lease keeps its subnet). */
  private overlapWith(lease: Lease): string | undefined {
    const onlyLen = this.prefixLens.size === 0 || (this.prefixLens.size === 1 && this.prefixLens.has(lease.subnet.prefixLen));
    if (onlyLen) return undefined; // distinct subnets of one length never overlap
    for (const other of this.leases.values()) {
      if (subnetsOverlap(other.subnet, lease.subnet)) {
        return `overlaps the lease ${formatSubnet(other.subnet)} of ${other.publicIP}`;
      }
    }
    return undefined;
  }

  get(subnet: Subnet): Lease | undefined {
    return this.leases.get(keyOf(subnet));
  }

  /** Every lease, sorted by subnet address. */
  all(): Lease[] {
    return [...this.leases.values()].sort((a, b) => a.subnet.ip - b.subnet.ip || a.subnet.prefixLen - b.subnet.prefixLen);
  }

  get size(): number {
    return this.leases.size;
  }

  /** Data-path routes: every lease except our own subnet. */
  routes(own?: Subnet): Route[] {
    const routes: Route[] = [];
    for (const lease of this.leases.values()) {
      if (own && lease.subnet.ip === own.ip && lease.subnet.prefixLen === own.prefixLen) continue;
      let publicIP: number;
      try {
        publicIP = parseIPv4(lease.publicIP);
      } catch {
        continue; // the store validates PublicIP; never let one bad value break the table
      }
      routes.push({ subnet: lease.subnet, publicIP });
    }
    return routes;
  }
}
