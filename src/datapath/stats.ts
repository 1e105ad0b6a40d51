// Counter bookkeeping for an engine's TS side: plain mutable numbers on the hot path,
// turned into the DatapathStats shape only when stats() is asked for.
import { DROP_REASONS, emptyDropCounters, type DropCounters, type DropReason, type PeerStats } from './types.js';

export class PeerCounters {
  txPackets = 0;
  txBytes = 0;
  rxPackets = 0;
  rxBytes = 0;
  lastTxAt = 0;
  lastRxAt = 0;
  readonly drops: DropCounters = emptyDropCounters();

  /** `address`: the peer's identity in stats (dotted PublicIP, or PublicIPv6 text without one). */
  constructor(readonly address: string) {}

  snapshot(): PeerStats {
    return {
      publicIP: this.address,
      tx: { packets: this.txPackets, bytes: this.txBytes },
      rx: { packets: this.rxPackets, bytes: this.rxBytes },
      lastTxAt: this.lastTxAt,
      lastRxAt: this.lastRxAt,
      drops: nonZeroDrops(this.drops),
    };
  }
}

export class EngineCounters {
  encapPackets = 0;
  encapBytes = 0;
  decapPackets = 0;
  decapBytes = 0;
  icmpSent = 0;
  icmpRateLimited = 0;
  readonly encapDrops: DropCounters = emptyDropCounters();
  readonly decapDrops: DropCounters = emptyDropCounters();

  dropEncap(reason: DropReason, peer?: PeerCounters): void {
    this.encapDrops[reason]++;
    if (peer) peer.drops[reason]++;
  }

  dropDecap(reason: DropReason, peer?: PeerCounters): void {
    this.decapDrops[reason]++;
    if (peer) peer.drops[reason]++;
  }
}

/** Only the reasons that happened, so per-peer stats stay small. */
export function nonZeroDrops(drops: DropCounters): Partial<DropCounters> {
  const out: Partial<DropCounters> = {};
  for (const reason of DROP_REASONS) if (drops[reason] > 0) out[reason] = drops[reason];
  return out;
}
