// The agent's view of every lease, fed by LeaseStore.watch() updates. Snapshots are diffed against
// what is known (so a relist turns into adds/removes), events are applied one by one.
// The table keeps our own lease too (for the debug endpoint), but routes() leaves it out.
import { formatSubnet, parseIPv4, type Subnet } from '../net/cidr.js';
import type { Route } from '../datapath/types.js';
import type { Lease, LeaseEvent, LeaseUpdate } from './types.js';

function keyOf(subnet: Subnet): string {
  return formatSubnet(subnet);
}

function sameLease(a: Lease, b: Lease): boolean {
  return a.publicIP === b.publicIP && a.subnet.ip === b.subnet.ip && a.subnet.prefixLen === b.subnet.prefixLen;
}

export class LeaseTable {
  private readonly leases = new Map<string, Lease>();

  /**
   * Applies a watch update and returns the events that changed the table (a snapshot yields
   * `added` for new or changed leases and `removed` for vanished ones). Renewals of an
   * unchanged lease update the stored lease but are not reported.
   */
  apply(update: LeaseUpdate): LeaseEvent[] {
    const changes: LeaseEvent[] = [];
    if (update.kind === 'snapshot') {
      const seen = new Set<string>();
      for (const lease of update.leases) {
        const key = keyOf(lease.subnet);
        seen.add(key);
        this.put(lease, changes);
      }
      for (const [key, lease] of this.leases) {
        if (!seen.has(key)) {
          this.leases.delete(key);
          changes.push({ type: 'removed', lease });
        }
      }
    } else {
      for (const event of update.events) {
        if (event.type === 'added') this.put(event.lease, changes);
        else {
          const key = keyOf(event.lease.subnet);
          const known = this.leases.get(key);
          if (known) {
            this.leases.delete(key);
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
    this.leases.set(key, lease);
    if (!known || !sameLease(known, lease)) changes.push({ type: 'added', lease });
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
