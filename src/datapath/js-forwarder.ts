// The js engine's per-packet decisions (docs/datapath.md): validation, routing, admission, TTL and
// hop limit, ICMP/ICMPv6 and counters, in JavaScript, against the batch I/O interface JsDatapath
// implements. The reader threads hand over whole batches; the packets that pass are queued as
// slices of the batch Buffer (no copies) and leave in one call per batch and underlay family
// (sendmmsg with UDP GSO trains; TUN writes). Tests drive it the same way, one packet per batch if
// they like (test/support/packet-io.ts). The IPv6 byte-level work is in packet6.ts.
import { subnetContainsIP, type Subnet } from '../net/cidr.js';
import { ipv6ToBytes, type Subnet6 } from '../net/ip6.js';
import {
  decrementTTL,
  hasDF,
  IP_OFF,
  readU16,
  readU32,
  TokenBucket,
  validateIPv4,
  type PacketVerdict,
} from './packet.js';
import {
  decrementHopLimit,
  IP6_OFF,
  ipv6TotalLength,
  validateIPv6,
  walkIPv6,
} from './packet6.js';
import { prefix6Has, prefixes6Have, toPrefix6, type Prefix6 } from './prefix6.js';
import { DepartedPeers } from './departed.js';
import { ICMP_BURST, ICMP_RATE_PER_SECOND, IcmpOriginator } from './icmp-out.js';
import { OutQueue } from './out-queue.js';
import { RouteTable, subnetsContain, type TablePeer } from './routes.js';
import { EngineCounters, PeerCounters } from './stats.js';
import type { DatapathStats, PeerStats, Route } from './types.js';

/** UDP batch records: [u32 source][u16 length][u8 flags][u8 0] before each datagram. */
export const UDP_REC_HDR = 8;
/** IPv6 socket records: [16 bytes source][u16 length][u8 flags][u8 0] before each datagram. */
export const UDP6_REC_HDR = 20;
/** Record flag: the kernel truncated the datagram. */
export const UDP_REC_TRUNC = 1;

/**
 * Where the forwarder's packets go in batches (JsDatapath). Entry i of `desc` names a slice of
 * `buf`; the callee sets ok[i] to 1 for each packet that left, 0 for each that did not.
 */
export interface BatchIO {
  /** Datagram i is buf[desc[3i], +desc[3i+1]) to the peer whose IPv4 PublicIP is desc[3i+2]. */
  sendBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void;
  /** As sendBatch over the IPv6 underlay: the peer's address is addrs[16 * desc[3i+2], +16). */
  sendBatch6?(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array, addrs: Uint8Array): void;
  /** Packet i is buf[desc[2i], +desc[2i+1]). */
  writeTunBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void;
}

/** A peer as the packet path sees it. */
interface Peer {
  table: TablePeer;
  /** The peer's IPv4 subnets (decap admission), as in `table`. */
  subnets: readonly Subnet[];
  counters: PeerCounters;
  /** The underlay this node reaches the peer on: 4, 6, or 0 when they share no family. */
  underlay: 0 | 4 | 6;
  /** What goes in the send descriptor: the IPv4 PublicIP, or the index into `addrs6`. */
  address: number;
}

export interface ForwarderConfig {
  /** This node's IPv4 lease; absent on an IPv6-only overlay, where IPv4 packets are `not-ip`. */
  localSubnet?: Subnet;
  /** Tunnel MTU (the TUN's): larger packets are dropped `oversize`. */
  mtu: number;
  /** This node's IPv6 lease; without it IPv6 packets are `not-ip`. */
  localSubnet6?: Subnet6;
  /** The node's IPv4 underlay address; 0 = none (absent: present, for IPv4-only callers). */
  bindIP?: number;
  /** The node's IPv6 underlay address, when it has one. */
  bindIPv6?: bigint;
}

export class JsForwarder {
  private table = new RouteTable([]);
  /** Peers by TablePeer.index of the current table. */
  private peers: Peer[] = [];
  /** The peers' IPv6 underlay addresses, 16 bytes each, indexed by Peer.address (underlay 6). */
  private addrs6 = new Uint8Array(0);
  private peersByKey = new Map<string, Peer>();
  /** Peers by IPv4 PublicIP: the decap lookup of every datagram on the IPv4 socket. */
  private peersByIPv4 = new Map<number, Peer>();
  private routed: ReadonlySet<string> = new Set();
  private readonly departed = new DepartedPeers();
  readonly counters = new EngineCounters();
  private readonly local6: Prefix6 | undefined;
  private readonly sends = new OutQueue<Peer>(3);
  private readonly sends6 = new OutQueue<Peer>(3);
  private readonly tunWrites = new OutQueue<Peer>(2);
  private readonly icmp: IcmpOriginator;

  constructor(
    private readonly config: ForwarderConfig,
    private readonly io: BatchIO,
    icmpBucket = new TokenBucket(ICMP_RATE_PER_SECOND, ICMP_BURST),
  ) {
    this.local6 = config.localSubnet6 ? toPrefix6(config.localSubnet6) : undefined;
    this.icmp = new IcmpOriginator(config, io, this.counters, icmpBucket);
  }

  /** IPv6 underlay when both ends have one, else IPv4 when both do, else none. */
  private underlayOf(p: TablePeer): 0 | 4 | 6 {
    if (this.config.bindIPv6 !== undefined && p.publicIPv6 !== undefined) return 6;
    if (this.config.bindIP !== 0 && p.publicIP !== 0) return 4;
    return 0;
  }

  setRoutes(routes: readonly Route[]): void {
    const table = new RouteTable(routes);
    const peers: Peer[] = [];
    const byKey = new Map<string, Peer>();
    const byIPv4 = new Map<number, Peer>();
    const v6 = table.peerList.filter((p) => this.underlayOf(p) === 6);
    const addrs6 = new Uint8Array(16 * v6.length);
    v6.forEach((p, i) => addrs6.set(ipv6ToBytes(p.publicIPv6!), 16 * i));
    let next6 = 0;
    for (const tp of table.peerList) {
      const underlay = this.underlayOf(tp);
      const address = underlay === 6 ? next6++ : tp.publicIP;
      // A known peer keeps its counters across table swaps; one that left is in `departed`.
      const counters = this.peersByKey.get(tp.key)?.counters ?? new PeerCounters(tp.key);
      const peer: Peer = { table: tp, subnets: tp.subnets, counters, underlay, address };
      peers.push(peer);
      byKey.set(tp.key, peer);
      if (tp.publicIP !== 0) byIPv4.set(tp.publicIP, peer);
    }
    const routed = new Set(byKey.keys());
    this.departed.update(this.routed, routed, () => this.peerStats());
    // Plain field writes between two batches: the single JS thread makes the swap atomic.
    this.table = table;
    this.peers = peers;
    this.addrs6 = addrs6;
    this.peersByKey = byKey;
    this.peersByIPv4 = byIPv4;
    this.routed = routed;
  }

  private peerStats(): Record<string, PeerStats> {
    const out: Record<string, PeerStats> = {};
    for (const peer of this.peersByKey.values()) out[peer.counters.address] = peer.counters.snapshot();
    return out;
  }

  stats(features: Record<string, unknown>): DatapathStats {
    const c = this.counters;
    const peers = this.departed.withDeparted(this.peerStats(), this.routed);
    const routes6 = this.local6 ? { routes6: this.table.size6 } : {};
    return {
      engine: 'js',
      encap: { packets: c.encapPackets, bytes: c.encapBytes },
      decap: { packets: c.decapPackets, bytes: c.decapBytes },
      icmpSent: c.icmpSent,
      icmpRateLimited: c.icmpRateLimited,
      drops: { encap: { ...c.encapDrops }, decap: { ...c.decapDrops } },
      peers,
      features: { routes: this.table.size, ...routes6, ...features },
    };
  }

  /**
   * A TUN reader batch: `count` [u16 BE length][packet] records. The packets that pass go out
   * together at the end (one call per underlay family); their counters follow from its outcome.
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
      this.flushSends(this.sends);
      this.flushSends(this.sends6);
    }
  }

  /**
   * A batch from the IPv4 socket's reader: `count` records of [u32 BE source][u16 BE length][u8
   * flags][u8 0][datagram] (flags bit 0: the kernel truncated it). Accepted packets are written
   * together at the end.
   */
  decapBatch(data: Buffer, count: number): void {
    this.decapRecords(data, count, false);
  }

  /** A batch from the IPv6 socket's reader: as decapBatch with a 16-byte source address. */
  decapBatch6(data: Buffer, count: number): void {
    this.decapRecords(data, count, true);
  }

  private decapRecords(data: Buffer, count: number, v6: boolean): void {
    const c = this.counters;
    const hdr = v6 ? UDP6_REC_HDR : UDP_REC_HDR;
    try {
      let off = 0;
      for (let i = 0; i < count; i++) {
        if (off + hdr > data.length) {
          c.dropDecap('truncated');
          return;
        }
        const len = readU16(data, off + hdr - 4);
        const flags = data[off + hdr - 2]!;
        const peer = v6 ? this.peerByIPv6(data, off) : this.peersByIPv4.get(readU32(data, off));
        off += hdr;
        if (off + len > data.length) {
          c.dropDecap('truncated');
          return;
        }
        const start = off;
        off += len;
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
        if (!this.tunWrites.add(data, start, totalLen, peer, 0)) {
          this.flushTunWrites();
          this.tunWrites.add(data, start, totalLen, peer, 0);
        }
      }
    } finally {
      this.flushTunWrites();
    }
  }

  private peerByIPv6(buf: Buffer, off: number): Peer | undefined {
    const tp = this.table.peerByIPv6(buf, off);
    return tp === undefined ? undefined : this.peers[tp.index];
  }

  /** Queues a packet for the peer's underlay socket, or drops it `no-underlay`. */
  private queueSend(buf: Buffer, start: number, totalLen: number, peer: Peer): void {
    const q = peer.underlay === 6 ? this.sends6 : this.sends;
    if (!q.add(buf, start, totalLen, peer, peer.address)) {
      this.flushSends(q);
      q.add(buf, start, totalLen, peer, peer.address);
    }
  }

  /**
   * docs/datapath.md "Encap", steps 1-6, for the packet at buf[start, start + length).
   * The packet's bytes are modified (TTL) and queued for the socket without a copy.
   */
  private encap(buf: Buffer, start: number, length: number): void {
    const c = this.counters;
    const verdict = validateIPv4(buf, start, length, false);
    if (verdict !== 'ok') {
      if (verdict === 'not-ip' && buf[start]! >> 4 === 6 && this.local6 !== undefined) this.encap6(buf, start, length);
      else c.dropEncap(verdict);
      return;
    }
    const dst = readU32(buf, start + IP_OFF.dst);
    const local = this.config.localSubnet;
    if (local === undefined || subnetContainsIP(local, dst)) {
      // Our own subnet never leaves through the tunnel: sending it to ourselves would loop. An IPv6-only
      // overlay (no IPv4 lease) carries no IPv4 at all; telling it apart here costs the IPv4 path nothing.
      c.dropEncap(local === undefined ? 'not-ip' : 'own-subnet');
      return;
    }
    const route = this.table.lookup(dst);
    if (route === undefined) {
      c.dropEncap('no-route');
      this.icmp.v4(buf, start, 'unreach');
      return;
    }
    const peer = this.peers[route.peer.index]!;
    if (buf[start + IP_OFF.ttl]! <= 1) {
      c.dropEncap('ttl-expired', peer.counters);
      this.icmp.v4(buf, start, 'ttl');
      return;
    }
    const totalLen = readU16(buf, start + IP_OFF.totalLength);
    if (totalLen > this.config.mtu) {
      c.dropEncap('oversize', peer.counters);
      if (hasDF(buf, start)) this.icmp.v4(buf, start, 'frag');
      return;
    }
    if (peer.underlay === 0) {
      c.dropEncap('no-underlay', peer.counters);
      return;
    }
    decrementTTL(buf, start);
    this.queueSend(buf, start, totalLen, peer);
  }

  /** The IPv6 twin of encap(): the same steps, hop limit for TTL, ICMPv6 for ICMP. */
  private encap6(buf: Buffer, start: number, length: number): void {
    const c = this.counters;
    const verdict = validateIPv6(buf, start, length);
    if (verdict !== 'ok') {
      c.dropEncap(verdict);
      return;
    }
    const totalLen = ipv6TotalLength(buf, start);
    const walk = walkIPv6(buf, start, totalLen);
    if (walk < 0) {
      c.dropEncap('ext-header');
      return;
    }
    if (prefix6Has(this.local6!, buf, start + IP6_OFF.dst)) {
      c.dropEncap('own-subnet');
      return;
    }
    const tp = this.table.lookup6(buf, start + IP6_OFF.dst);
    if (tp === undefined) {
      c.dropEncap('no-route');
      this.icmp.v6(buf, start, walk, 'unreach');
      return;
    }
    const peer = this.peers[tp.index]!;
    if (buf[start + IP6_OFF.hopLimit]! <= 1) {
      c.dropEncap('ttl-expired', peer.counters);
      this.icmp.v6(buf, start, walk, 'ttl');
      return;
    }
    if (totalLen > this.config.mtu) {
      // IPv6 routers never fragment: always Packet Too Big.
      c.dropEncap('oversize', peer.counters);
      this.icmp.v6(buf, start, walk, 'too-big');
      return;
    }
    if (peer.underlay === 0) {
      c.dropEncap('no-underlay', peer.counters);
      return;
    }
    decrementHopLimit(buf, start);
    this.queueSend(buf, start, totalLen, peer);
  }

  /**
   * Decap steps 2-4 for the datagram at buf[start, start + length) from a known peer. Returns the
   * inner packet's total length (trailing bytes are not written), or -1 after counting the drop.
   */
  private admitDecap(buf: Buffer, start: number, length: number, peer: Peer): number {
    const counters = peer.counters;
    const verdict = validateIPv4(buf, start, length, true);
    if (verdict !== 'ok') {
      if (verdict === 'not-ip' && buf[start]! >> 4 === 6 && this.local6 !== undefined) return this.admitDecap6(buf, start, length, peer);
      return this.decapDrop(verdict, counters);
    }
    if (!subnetsContain(peer.subnets, readU32(buf, start + IP_OFF.src))) {
      // On an IPv6-only overlay no peer has an IPv4 subnet: every IPv4 packet lands here, and is not-ip.
      return this.decapDrop(this.config.localSubnet === undefined ? 'not-ip' : 'spoofed-source', counters);
    }
    if (buf[start + IP_OFF.ttl] === 0) return this.decapDrop('ttl-expired', counters);
    return readU16(buf, start + IP_OFF.totalLength);
  }

  /** admitDecap() for an inner IPv6 packet; the destination must also be ours. */
  private admitDecap6(buf: Buffer, start: number, length: number, peer: Peer): number {
    const counters = peer.counters;
    const verdict = validateIPv6(buf, start, length);
    if (verdict !== 'ok') return this.decapDrop(verdict, counters);
    const totalLen = ipv6TotalLength(buf, start);
    if (walkIPv6(buf, start, totalLen) < 0) return this.decapDrop('ext-header', counters);
    if (!prefixes6Have(peer.table.subnets6, buf, start + IP6_OFF.src)) return this.decapDrop('spoofed-source', counters);
    if (!prefix6Has(this.local6!, buf, start + IP6_OFF.dst)) return this.decapDrop('no-route', counters);
    if (buf[start + IP6_OFF.hopLimit] === 0) return this.decapDrop('ttl-expired', counters);
    return totalLen;
  }

  private decapDrop(reason: PacketVerdict | 'spoofed-source' | 'ttl-expired' | 'ext-header' | 'no-route', counters: PeerCounters): -1 {
    if (reason !== 'ok') this.counters.dropDecap(reason, counters);
    return -1;
  }

  /** Sends a queue's datagrams in one BatchIO call and counts each outcome. */
  private flushSends(q: OutQueue<Peer>): void {
    if (q.count === 0) return;
    try {
      if (q === this.sends) this.io.sendBatch(q.buf!, q.desc, q.count, q.ok);
      else if (this.io.sendBatch6) this.io.sendBatch6(q.buf!, q.desc, q.count, q.ok, this.addrs6);
      else q.ok.fill(0, 0, q.count);
    } catch {
      q.ok.fill(0, 0, q.count);
    }
    const c = this.counters;
    const now = Date.now();
    for (let i = 0; i < q.count; i++) {
      const counters = q.owners[i]!.counters;
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
    const c = this.counters;
    const now = Date.now();
    for (let i = 0; i < q.count; i++) {
      const counters = q.owners[i]!.counters;
      if (q.ok[i] !== 1) {
        c.dropDecap('tun-write-error', counters);
        continue;
      }
      const bytes = q.desc[i * 2 + 1]!;
      counters.rxPackets++;
      counters.rxBytes += bytes;
      counters.lastRxAt = now;
      c.decapPackets++;
      c.decapBytes += bytes;
    }
    q.clear();
  }
}
