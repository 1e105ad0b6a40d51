// "ICMP we originate" (docs/datapath.md) for the js engine: the suppression rules, one rate limit
// shared by ICMP and ICMPv6, and the write into the TUN.
import { ipv6ToBytes } from '../net/ip6.js';
import { buildFragNeeded, buildNetUnreachable, buildTimeExceeded, icmpErrorAllowed, TokenBucket } from './packet.js';
import { buildIcmp6NoRoute, buildIcmp6PacketTooBig, buildIcmp6TimeExceeded, icmp6ErrorAllowed } from './packet6.js';
import type { BatchIO, ForwarderConfig } from './js-forwarder.js';
import type { EngineCounters } from './stats.js';

export const ICMP_RATE_PER_SECOND = 100;
export const ICMP_BURST = 100;

export class IcmpOriginator {
  private readonly tunnelIP: number;
  /** Our IPv6 tunnel address (the IPv6 lease's network address). */
  private readonly tunnelIP6: Uint8Array;
  /** A one-entry batch for the errors we write into the TUN. */
  private readonly oneDesc = new Uint32Array(2);
  private readonly oneOk = new Uint8Array(1);

  constructor(
    private readonly config: ForwarderConfig,
    private readonly io: BatchIO,
    private readonly counters: EngineCounters,
    private readonly bucket = new TokenBucket(ICMP_RATE_PER_SECOND, ICMP_BURST),
  ) {
    // 0 on an IPv6-only overlay: no IPv4 packet is ever answered there.
    this.tunnelIP = (config.localSubnet?.ip ?? 0) >>> 0;
    this.tunnelIP6 = ipv6ToBytes(config.localSubnet6?.ip ?? 0n);
  }

  /** "ICMP we originate": suppression rules, rate limit, then one write into the TUN. */
  v4(buf: Buffer, start: number, kind: 'unreach' | 'ttl' | 'frag'): void {
    if (!icmpErrorAllowed(buf, start) || !this.icmpToken()) return;
    this.writeIcmp(
      kind === 'unreach'
        ? buildNetUnreachable(buf, start, this.tunnelIP)
        : kind === 'ttl'
          ? buildTimeExceeded(buf, start, this.tunnelIP)
          : buildFragNeeded(buf, start, this.config.mtu, this.tunnelIP),
    );
  }

  /** The same for ICMPv6, from our IPv6 tunnel address, through the same rate limit. */
  v6(buf: Buffer, start: number, walk: number, kind: 'unreach' | 'ttl' | 'too-big'): void {
    if (!icmp6ErrorAllowed(buf, start, walk) || !this.icmpToken()) return;
    this.writeIcmp(
      kind === 'unreach'
        ? buildIcmp6NoRoute(buf, start, this.tunnelIP6)
        : kind === 'ttl'
          ? buildIcmp6TimeExceeded(buf, start, this.tunnelIP6)
          : buildIcmp6PacketTooBig(buf, start, this.config.mtu, this.tunnelIP6),
    );
  }

  private icmpToken(): boolean {
    if (this.bucket.take()) return true;
    this.counters.icmpRateLimited++;
    return false;
  }

  /** Writes one ICMP error into the TUN; a refusal counts `tun-write-error` on top of the drop. */
  private writeIcmp(packet: Buffer): void {
    this.oneDesc[0] = 0;
    this.oneDesc[1] = packet.length;
    let ok = false;
    try {
      this.io.writeTunBatch(packet, this.oneDesc, 1, this.oneOk);
      ok = this.oneOk[0] === 1;
    } catch {
      ok = false;
    }
    if (ok) this.counters.icmpSent++;
    else this.counters.encapDrops['tun-write-error']++;
  }
}
