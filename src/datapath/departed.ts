// Counters of peers that no longer hold a lease: the last few stay visible (a node that was just
// replaced is what an operator looks for), the rest are freed, so memory stays bounded however
// many nodes come and go over months.
import { LRUCache } from 'lru-cache';
import type { PeerStats } from './types.js';

/** How many departed peers keep their counters. */
export const DEPARTED_PEERS_KEPT = 256;

export class DepartedPeers {
  private readonly left: LRUCache<string, PeerStats>;

  constructor(max = DEPARTED_PEERS_KEPT) {
    this.left = new LRUCache({ max });
  }

  /**
   * The routed peers changed from `before` to `after` (dotted PublicIPs). Peers that left keep the
   * counters `snapshot` gives for them (read only when someone left); peers that came back start
   * afresh.
   */
  update(before: ReadonlySet<string>, after: ReadonlySet<string>, snapshot: () => Record<string, PeerStats>): void {
    const gone = [...before].filter((ip) => !after.has(ip));
    if (gone.length > 0) {
      const last = snapshot();
      for (const ip of gone) {
        const stats = last[ip];
        if (stats) this.left.set(ip, stats);
      }
    }
    for (const ip of after) this.left.delete(ip);
  }

  /** The routed peers' counters from `peers`, then the departed ones, most recently departed first. */
  withDeparted(peers: Record<string, PeerStats>, routed: ReadonlySet<string>): Record<string, PeerStats> {
    const out: Record<string, PeerStats> = {};
    for (const ip of routed) if (peers[ip]) out[ip] = peers[ip];
    for (const [ip, stats] of this.left.entries()) if (!routed.has(ip)) out[ip] = stats;
    return out;
  }

  get size(): number {
    return this.left.size;
  }
}
