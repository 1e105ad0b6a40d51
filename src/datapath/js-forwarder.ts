// The js engine's per-packet decisions (docs/datapath.md): validation, routing, admission, TTL,
// ICMP and counters, in JavaScript, against the batch I/O interface JsDatapath implements. The
// reader threads hand over whole batches; the packets that pass are queued as slices of the batch
// Buffer (no copies) and leave in one call per batch (sendmmsg with UDP GSO trains; TUN writes).
// Tests drive it the same way, one packet per batch if they like (test/support/packet-io.ts).
import { subnetContainsIP, type Subnet } from '../net/cidr.js';
import {
  buildFragNeeded,
  buildNetUnreachable,
  buildTimeExceeded,
  decrementTTL,
  hasDF,
  icmpErrorAllowed,
  IP_OFF,
  readU16,
  readU32,
  TokenBucket,
  validateIPv4,
} from './packet.js';
import { DepartedPeers } from './departed.js';
import { RouteTable, subnetsContain } from './routes.js';
import { EngineCounters, PeerCounters } from './stats.js';
import type { DatapathStats, PeerStats, Route } from './types.js';

const ICMP_RATE_PER_SECOND = 100;
const ICMP_BURST = 100;
/** Packets queued for one batched call at most; a longer reader batch is flushed in parts. */
const QUEUE_CAPACITY = 1024;
/** UDP batch records: [u32 source][u16 length][u8 flags][u8 0] before each datagram. */
export const UDP_REC_HDR = 8;
/** Record flag: the kernel truncated the datagram. */
export const UDP_REC_TRUNC = 1;

/**
 * Where the forwarder's packets go in batches (JsDatapath). Entry i of `desc` names a slice of
 * `buf`; the callee sets ok[i] to 1 for each packet that left, 0 for each that did not.
 */
export interface BatchIO {
  /** Datagram i is buf[desc[3i], +desc[3i+1]) to the peer whose PublicIP is desc[3i+2]. */
  sendBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void;
  /** Packet i is buf[desc[2i], +desc[2i+1]). */
  writeTunBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void;
}

/** A peer as the packet path sees it. */
interface Peer {
  publicIP: number;
  counters: PeerCounters;
  subnets: readonly Subnet[];
}

/**
 * Packets waiting for one batched call: slices of a single Buffer with the peer each belongs to.
 * Preallocated and reused, so queueing a packet allocates nothing.
 */
class OutQueue {
  readonly desc: Uint32Array;
  readonly ok = new Uint8Array(QUEUE_CAPACITY);
  readonly peers: (Peer | undefined)[] = new Array(QUEUE_CAPACITY).fill(undefined);
  count = 0;
  buf: Buffer | undefined;

  constructor(readonly fields: 2 | 3) {
    this.desc = new Uint32Array(QUEUE_CAPACITY * fields);
  }

  /** False when the packet cannot join (queue full, or a different Buffer): flush, then retry. */
  add(buf: Buffer, start: number, length: number, peer: Peer): boolean {
    if (this.count === QUEUE_CAPACITY || (this.buf !== undefined && this.buf !== buf)) return false;
    this.buf = buf;
    const i = this.count++;
    const d = i * this.fields;
    this.desc[d] = start;
    this.desc[d + 1] = length;
    if (this.fields === 3) this.desc[d + 2] = peer.publicIP;
    this.peers[i] = peer;
    return true;
  }

  clear(): void {
    this.count = 0;
    this.buf = undefined;
  }
}

export interface ForwarderConfig {
  localSubnet: Subnet;
  mtu: number;
}

export class JsForwarder {
  private table = new RouteTable([]);
  /** Peers by numeric PublicIP, and the dotted form of each (for stats). */
  private peersByIP = new Map<number, Peer>();
  private routed: ReadonlySet<string> = new Set();
  private readonly departed = new DepartedPeers();
  readonly counters = new EngineCounters();
  private readonly tunnelIP: number;
  private readonly sends = new OutQueue(3);
  private readonly tunWrites = new OutQueue(2);
  /** A one-entry batch for the ICMP errors we write into the TUN. */
  private readonly oneDesc = new Uint32Array(2);
  private readonly oneOk = new Uint8Array(1);

  constructor(
    private readonly config: ForwarderConfig,
    private readonly io: BatchIO,
    private readonly icmpBucket = new TokenBucket(ICMP_RATE_PER_SECOND, ICMP_BURST),
  ) {
    this.tunnelIP = config.localSubnet.ip >>> 0;
  }

  setRoutes(routes: readonly Route[]): void {
    const table = new RouteTable(routes);
    const byIP = new Map<number, Peer>();
    for (const publicIP of table.peers()) {
      const previous = this.peersByIP.get(publicIP);
      const subnets = table.subnetsOf(publicIP)!;
      // A known peer keeps its counters across table swaps; one that left is in `departed`.
      byIP.set(publicIP, previous ? { ...previous, subnets } : { publicIP, counters: new PeerCounters(publicIP), subnets });
    }
    const routed = new Set([...byIP.values()].map((p) => p.counters.address));
    this.departed.update(this.routed, routed, () => this.peerStats());
    // Plain field writes between two packets: the single JS thread makes the swap atomic.
    this.table = table;
    this.peersByIP = byIP;
    this.routed = routed;
  }

  private peerStats(): Record<string, PeerStats> {
    const peers: Record<string, PeerStats> = {};
    for (const peer of this.peersByIP.values()) peers[peer.counters.address] = peer.counters.snapshot();
    return peers;
  }

  stats(features: Record<string, unknown>): DatapathStats {
    const c = this.counters;
    const peers = this.departed.withDeparted(this.peerStats(), this.routed);
    return {
      engine: 'js',
      encap: { packets: c.encapPackets, bytes: c.encapBytes },
      decap: { packets: c.decapPackets, bytes: c.decapBytes },
      icmpSent: c.icmpSent,
      icmpRateLimited: c.icmpRateLimited,
      drops: { encap: { ...c.encapDrops }, decap: { ...c.decapDrops } },
      peers,
      features: { routes: this.table.size, ...features },
    };
  }

  /**
   * A TUN reader batch: `count` [u16 BE length][packet] records. The packets that pass go out
   * together at the end (one call); their counters are updated from its outcome.
   */
  encapBatch(data: Buffer, count: number): void {
    try {
      let off = 0;
      for (let i = 0; i < count; i++) {
        if (off + 2 > data.length) {
          this.counters.dropEncap('truncated');
          return;
        }
        const len = readU16(data, off);
        off += 2;
        if (off + len > data.length) {
          this.counters.dropEncap('truncated');
          return;
        }
        this.encap(data, off, len);
        off += len;
      }
    } finally {
      this.flushSends();
    }
  }

  /**
   * A UDP reader batch: `count` records of [u32 BE source][u16 BE length][u8 flags][u8 0][datagram]
   * (flags bit 0: the kernel truncated it). The accepted packets are written together at the end.
   */
  decapBatch(data: Buffer, count: number): void {
    const c = this.counters;
    try {
      let off = 0;
      for (let i = 0; i < count; i++) {
        if (off + UDP_REC_HDR > data.length) {
          c.dropDecap('truncated');
          return;
        }
        const src = readU32(data, off);
        const len = readU16(data, off + 4);
        const flags = data[off + 6]!;
        off += UDP_REC_HDR;
        if (off + len > data.length) {
          c.dropDecap('truncated');
          return;
        }
        const start = off;
        off += len;
        const peer = this.peersByIP.get(src);
        if (peer === undefined) {
          c.dropDecap('unknown-peer');
          continue;
        }
        if (flags & UDP_REC_TRUNC) {
          c.dropDecap('oversize', peer.counters);
          continue;
        }
        const totalLen = this.admitDecap(data, start, len, peer);
        if (totalLen < 0) continue;
        if (!this.tunWrites.add(data, start, totalLen, peer)) {
          this.flushTunWrites();
          this.tunWrites.add(data, start, totalLen, peer);
        }
      }
    } finally {
      this.flushTunWrites();
    }
  }

  /**
   * docs/datapath.md "Encap", steps 1-5, for the packet at buf[start, start + length).
   * The packet's bytes are modified (TTL) and queued for the socket without a copy.
   */
  private encap(buf: Buffer, start: number, length: number): void {
    const c = this.counters;
    const verdict = validateIPv4(buf, start, length, false);
    if (verdict !== 'ok') {
      c.dropEncap(verdict);
      return;
    }
    const dst = readU32(buf, start + IP_OFF.dst);
    if (subnetContainsIP(this.config.localSubnet, dst)) {
      // Our own subnet never leaves through the tunnel: sending it to ourselves would loop.
      c.dropEncap('own-subnet');
      return;
    }
    const route = this.table.lookup(dst);
    if (route === undefined) {
      c.dropEncap('no-route');
      this.sendIcmp(buf, start, 'unreach');
      return;
    }
    const peer = this.peersByIP.get(route.publicIP)!;
    if (buf[start + IP_OFF.ttl]! <= 1) {
      c.dropEncap('ttl-expired', peer.counters);
      this.sendIcmp(buf, start, 'ttl');
      return;
    }
    const totalLen = readU16(buf, start + IP_OFF.totalLength);
    if (totalLen > this.config.mtu) {
      c.dropEncap('oversize', peer.counters);
      if (hasDF(buf, start)) this.sendIcmp(buf, start, 'frag');
      return;
    }
    decrementTTL(buf, start);
    if (!this.sends.add(buf, start, totalLen, peer)) {
      this.flushSends();
      this.sends.add(buf, start, totalLen, peer);
    }
  }

  /**
   * Decap steps 2-4 for the datagram at buf[start, start + length) from a known peer. Returns the
   * inner packet's total length (trailing bytes are not written), or -1 after counting the drop.
   */
  private admitDecap(buf: Buffer, start: number, length: number, peer: Peer): number {
    const c = this.counters;
    const counters = peer.counters;
    const verdict = validateIPv4(buf, start, length, true);
    if (verdict !== 'ok') {
      c.dropDecap(verdict, counters);
      return -1;
    }
    if (!subnetsContain(peer.subnets, readU32(buf, start + IP_OFF.src))) {
      c.dropDecap('spoofed-source', counters);
      return -1;
    }
    if (buf[start + IP_OFF.ttl] === 0) {
      c.dropDecap('ttl-expired', counters);
      return -1;
    }
    return readU16(buf, start + IP_OFF.totalLength);
  }

  private countRx(peer: Peer, bytes: number, now: number): void {
    const counters = peer.counters;
    counters.rxPackets++;
    counters.rxBytes += bytes;
    counters.lastRxAt = now;
    this.counters.decapPackets++;
    this.counters.decapBytes += bytes;
  }

  /** Sends the queued datagrams in one BatchIO call and counts each outcome. */
  private flushSends(): void {
    const q = this.sends;
    if (q.count === 0) return;
    try {
      this.io.sendBatch(q.buf!, q.desc, q.count, q.ok);
    } catch {
      q.ok.fill(0, 0, q.count);
    }
    const c = this.counters;
    const now = Date.now();
    for (let i = 0; i < q.count; i++) {
      const counters = q.peers[i]!.counters;
      if (q.ok[i] !== 1) {
        c.dropEncap('send-error', counters);
        continue;
      }
      const bytes = q.desc[i * 3 + 1]!;
      counters.txPackets++;
      counters.txBytes += bytes;
      counters.lastTxAt = now;
      c.encapPackets++;
      c.encapBytes += bytes;
    }
    q.clear();
  }

  /** Writes the queued packets into the TUN in one BatchIO call and counts each outcome. */
  private flushTunWrites(): void {
    const q = this.tunWrites;
    if (q.count === 0) return;
    try {
      this.io.writeTunBatch(q.buf!, q.desc, q.count, q.ok);
    } catch {
      q.ok.fill(0, 0, q.count);
    }
    const now = Date.now();
    for (let i = 0; i < q.count; i++) {
      const peer = q.peers[i]!;
      if (q.ok[i] === 1) this.countRx(peer, q.desc[i * 2 + 1]!, now);
      else this.counters.dropDecap('tun-write-error', peer.counters);
    }
    q.clear();
  }

  /** Writes one packet (an ICMP error) into the TUN; false when it was refused. */
  private writeTun(packet: Buffer): boolean {
    this.oneDesc[0] = 0;
    this.oneDesc[1] = packet.length;
    try {
      this.io.writeTunBatch(packet, this.oneDesc, 1, this.oneOk);
      return this.oneOk[0] === 1;
    } catch {
      return false;
    }
  }

  /** "ICMP we originate": suppression rules, rate limit, then one write into the TUN. */
  private sendIcmp(buf: Buffer, start: number, kind: 'unreach' | 'ttl' | 'frag'): void {
    if (!icmpErrorAllowed(buf, start)) return;
    if (!this.icmpBucket.take()) {
      this.counters.icmpRateLimited++;
      return;
    }
    const icmp =
      kind === 'unreach'
        ? buildNetUnreachable(buf, start, this.tunnelIP)
        : kind === 'ttl'
          ? buildTimeExceeded(buf, start, this.tunnelIP)
          : buildFragNeeded(buf, start, this.config.mtu, this.tunnelIP);
    if (this.writeTun(icmp)) this.counters.icmpSent++;
    else this.counters.encapDrops['tun-write-error']++; // the ICMP error itself could not be written
  }
}
