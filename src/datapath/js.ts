// The `js` engine: the reference implementation of docs/datapath.md, every per-packet decision
// in JavaScript, the I/O around them batched in C.
//
// Two parts: JsForwarder makes every per-packet decision (validation, routing, admission, TTL,
// ICMP, counters) against small I/O interfaces, so it can be tested without root; JsDatapath owns
// the device and the socket and feeds the forwarder. Packets move in batches: a reader thread for
// the TUN and one for the UDP socket (recvmmsg) each hand over whatever is ready as one Buffer;
// the forwarder decides packet by packet and queues the survivors as slices of that Buffer (no
// copies); the queue leaves in one call per batch (sendmmsg with UDP GSO trains; TUN writes).
// One JS callback per batch instead of one per packet is what makes this engine fast.
import type { Logger } from 'pino';
import { formatIPv4, formatSubnet, parseIPv4, subnetContainsIP, type Subnet } from '../net/cidr.js';
import { configureTun } from './tundevice.js';
import {
  loadAddon,
  type FeltAddon,
  type TunHandle,
  type TunReader,
  type UdpReader,
  type UdpSocketInfo,
} from './addon.js';
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
import { RouteTable, subnetsContain } from './routes.js';
import { EngineCounters, PeerCounters } from './stats.js';
import { DROP_REASONS, type Datapath, type DatapathConfig, type DatapathStats, type Route } from './types.js';

const ICMP_RATE_PER_SECOND = 100;
const ICMP_BURST = 100;
/**
 * The TUN's transmit queue (packets the kernel holds for our reader). The kernel's default of 500
 * overflows while the reader thread waits for a CPU on a busy machine: TCP then sees loss.
 */
const TUN_TX_QUEUE_LEN = 4000;
/** TUNSETOFFLOAD flags: checksum, TSO4 (the reader splits super-packets before JS sees them). */
const TUN_F_CSUM = 1;
const TUN_F_TSO4 = 2;
/** Packets queued for one batched call at most; a longer reader batch is flushed in parts. */
const QUEUE_CAPACITY = 1024;
/** UDP batch records: [u32 source][u16 length][u8 flags][u8 0] before each datagram. */
const UDP_REC_HDR = 8;
const UDP_REC_TRUNC = 1;

/** Where the forwarder's packets go, one at a time (the unit tests; ICMP errors). */
export interface PacketIO {
  /** Sends one datagram; `done` runs once with the outcome. May throw (counted as send-error). */
  send(packet: Buffer, address: string, done: (err: Error | null, bytes: number) => void): void;
  /** True when the send queue is too long to accept another datagram. */
  sendBacklogged(): boolean;
  /** Writes one packet into the TUN device; false when the kernel refused it. */
  writeTun(packet: Buffer): boolean;
}

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

/** A peer as the packet path sees it: counters plus the send callback, made once per peer. */
interface Peer {
  publicIP: number;
  counters: PeerCounters;
  subnets: readonly Subnet[];
  onSent: (err: Error | null, bytes: number) => void;
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
  /** Peers by numeric PublicIP (encap) and dotted PublicIP (decap: rinfo.address is a string). */
  private peersByIP = new Map<number, Peer>();
  private peersByAddress = new Map<string, Peer>();
  readonly counters = new EngineCounters();
  private readonly tunnelIP: number;
  /** Set only while encapBatch runs with a BatchIO: encap() then queues instead of sending. */
  private sendQueue: OutQueue | undefined;
  private readonly sends = new OutQueue(3);
  private readonly tunWrites = new OutQueue(2);

  /** Without `batchIO`, the batch entry points fall back to one PacketIO call per packet. */
  constructor(
    private readonly config: ForwarderConfig,
    private readonly io: PacketIO,
    private readonly icmpBucket = new TokenBucket(ICMP_RATE_PER_SECOND, ICMP_BURST),
    private readonly batchIO?: BatchIO,
  ) {
    this.tunnelIP = config.localSubnet.ip >>> 0;
  }

  get routeCount(): number {
    return this.table.size;
  }

  setRoutes(routes: readonly Route[]): void {
    const table = new RouteTable(routes);
    const byIP = new Map<number, Peer>();
    const byAddress = new Map<string, Peer>();
    for (const publicIP of table.peers()) {
      const previous = this.peersByIP.get(publicIP);
      const subnets = table.subnetsOf(publicIP)!;
      // A known peer keeps its counters across table swaps; peers no longer leased are forgotten.
      const peer: Peer = previous ? { ...previous, subnets } : this.newPeer(publicIP, subnets);
      byIP.set(publicIP, peer);
      byAddress.set(peer.counters.address, peer);
    }
    // Plain field writes between two packets: the single JS thread makes the swap atomic.
    this.table = table;
    this.peersByIP = byIP;
    this.peersByAddress = byAddress;
  }

  stats(features: Record<string, unknown>): DatapathStats {
    const c = this.counters;
    const peers: DatapathStats['peers'] = {};
    for (const peer of this.peersByIP.values()) peers[peer.counters.address] = peer.counters.snapshot();
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
   * A TUN reader batch: `count` [u16 BE length][packet] records. With a BatchIO the packets that
   * pass go out together at the end (one call); their counters are updated from its outcome.
   */
  encapBatch(data: Buffer, count: number): void {
    if (this.batchIO) this.sendQueue = this.sends;
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
      this.sendQueue = undefined;
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
   * The packet's bytes are modified (TTL) and handed to the socket without a copy.
   */
  encap(buf: Buffer, start: number, length: number): void {
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
    const queue = this.sendQueue;
    if (queue !== undefined) {
      decrementTTL(buf, start);
      if (!queue.add(buf, start, totalLen, peer)) {
        this.flushSends();
        queue.add(buf, start, totalLen, peer);
      }
      return;
    }
    if (this.io.sendBacklogged()) {
      c.dropEncap('send-error', peer.counters);
      return;
    }
    decrementTTL(buf, start);
    try {
      this.io.send(buf.subarray(start, start + totalLen), peer.counters.address, peer.onSent);
    } catch {
      c.dropEncap('send-error', peer.counters);
    }
  }

  /**
   * docs/datapath.md "Decap", steps 1-5, for one datagram from `address` (dotted), written at once
   * through PacketIO. (JsDatapath receives through decapBatch.)
   */
  decap(msg: Buffer, address: string): void {
    const peer = this.peersByAddress.get(address);
    if (peer === undefined) {
      this.counters.dropDecap('unknown-peer');
      return;
    }
    const totalLen = this.admitDecap(msg, 0, msg.length, peer);
    if (totalLen < 0) return;
    const packet = totalLen === msg.length ? msg : msg.subarray(0, totalLen);
    if (!this.writeTun(packet)) {
      this.counters.dropDecap('tun-write-error', peer.counters);
      return;
    }
    this.countRx(peer, totalLen, Date.now());
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
      this.batchIO!.sendBatch(q.buf!, q.desc, q.count, q.ok);
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
    if (this.batchIO) {
      try {
        this.batchIO.writeTunBatch(q.buf!, q.desc, q.count, q.ok);
      } catch {
        q.ok.fill(0, 0, q.count);
      }
    } else {
      for (let i = 0; i < q.count; i++) {
        const start = q.desc[i * 2]!;
        q.ok[i] = this.writeTun(q.buf!.subarray(start, start + q.desc[i * 2 + 1]!)) ? 1 : 0;
      }
    }
    const now = Date.now();
    for (let i = 0; i < q.count; i++) {
      const peer = q.peers[i]!;
      if (q.ok[i] === 1) this.countRx(peer, q.desc[i * 2 + 1]!, now);
      else this.counters.dropDecap('tun-write-error', peer.counters);
    }
    q.clear();
  }

  private writeTun(packet: Buffer): boolean {
    try {
      return this.io.writeTun(packet);
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

  private newPeer(publicIP: number, subnets: readonly Subnet[]): Peer {
    const counters = new PeerCounters(publicIP);
    const engine = this.counters;
    return {
      publicIP,
      counters,
      subnets,
      onSent: (err, bytes) => {
        if (err) {
          engine.dropEncap('send-error', counters);
          return;
        }
        counters.txPackets++;
        counters.txBytes += bytes;
        counters.lastTxAt = Date.now();
        engine.encapPackets++;
        engine.encapBytes += bytes;
      },
    };
  }
}

export class JsDatapath implements Datapath {
  readonly engine = 'js' as const;
  private readonly forwarder: JsForwarder;
  private addon: FeltAddon | undefined;
  private tun: TunHandle | undefined;
  private udp: UdpSocketInfo | undefined;
  private reader: TunReader | undefined;
  private udpReader: UdpReader | undefined;
  /** UDP GSO for trains of equal-size datagrams, while the kernel accepts it. */
  private gso = false;
  /** TSO reads from the TUN (super-packets, split by the reader thread). */
  private tunTso = false;
  private tunBatches = 0;
  private tunPackets = 0;
  /** TUN reads the reader thread's offload layer dropped, as already added to the counters. */
  private tunReaderDrops: number[] = [];
  private state: 'new' | 'starting' | 'running' | 'stopped' = 'new';
  private stopping: Promise<void> | undefined;
  /** One-entry batches for PacketIO (ICMP errors into the TUN; send is unused by the batched path). */
  private readonly oneDesc = new Uint32Array(3);
  private readonly oneOk = new Uint8Array(1);

  constructor(
    private readonly config: DatapathConfig,
    private readonly log?: Logger,
  ) {
    this.forwarder = new JsForwarder(
      config,
      {
        send: (packet, address, done) => {
          this.oneDesc[0] = 0;
          this.oneDesc[1] = packet.length;
          this.oneDesc[2] = parseIPv4(address);
          this.sendBatch(packet, this.oneDesc, 1, this.oneOk);
          if (this.oneOk[0] === 1) done(null, packet.length);
          else done(new Error(`send to ${address} failed`), 0);
        },
        sendBacklogged: () => this.udp === undefined,
        writeTun: (packet) => {
          this.oneDesc[0] = 0;
          this.oneDesc[1] = packet.length;
          this.writeTunBatch(packet, this.oneDesc, 1, this.oneOk);
          return this.oneOk[0] === 1;
        },
      },
      undefined,
      {
        sendBatch: (buf, desc, count, ok) => this.sendBatch(buf, desc, count, ok),
        writeTunBatch: (buf, desc, count, ok) => this.writeTunBatch(buf, desc, count, ok),
      },
    );
  }

  /** The TUN carries a virtio header: every write gets one, and TCP trains are merged (GRO). */
  private writeTunBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void {
    if (this.tun === undefined) ok.fill(0, 0, count);
    else this.addon!.tunWriteBatch(this.tun.fd, buf, desc, count, ok, true);
  }

  private sendBatch(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array): void {
    if (this.udp === undefined) {
      ok.fill(0, 0, count);
      return;
    }
    const gsoErrno = this.addon!.udpSendBatch(this.udp.fd, this.config.port, buf, desc, count, ok, this.gso);
    if (gsoErrno !== 0 && this.gso) {
      // The datagrams went out one by one; stop asking for GSO (e.g. the route's device lacks it).
      this.gso = false;
      this.log?.warn({ errno: gsoErrno }, 'js datapath: the kernel refused UDP GSO; sending datagram by datagram');
    }
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`js datapath: start() may be called once, on a new engine (state: ${this.state})`);
    this.state = 'starting';
    const { tunName, mtu, network, localSubnet, bindIP, port } = this.config;
    try {
      this.addon = loadAddon();
      for (const fn of [
        'tunOpen',
        'tunClose',
        'linkSetup',
        'routeAdd',
        'tunStartReader',
        'tunWrite',
        'udpOpen',
        'udpClose',
        'udpStartReader',
        'udpSendBatch',
        'tunWriteBatch',
        'tunSetOffload',
        'jsioStats',
      ] as const) {
        if (typeof this.addon[fn] !== 'function') throw new Error(`the native addon lacks ${fn}() (rebuild it)`);
      }
      // The socket first: a port in use then leaves no device behind at all.
      this.udp = this.addon.udpOpen(bindIP, port);
      this.gso = this.udp.gso;

      // A virtio header on every TUN read and write: merged writes (GRO) and TSO reads, which save
      // the kernel a trip through its stack per packet. The forwarder still sees single packets.
      this.tun = this.addon.tunOpen(tunName, { vnetHdr: true });
      this.tunTso = this.addon.tunSetOffload(this.tun.fd, TUN_F_CSUM | TUN_F_TSO4);
      if (!this.tunTso) this.addon.tunSetOffload(this.tun.fd, 0);
      configureTun(this.addon, this.tun.name, this.config, this.log, TUN_TX_QUEUE_LEN);
      this.udpReader = this.addon.udpStartReader(this.udp.fd, (data, count) => this.forwarder.decapBatch(data, count));
      this.reader = this.addon.tunStartReader(this.tun.fd, (data, count) => {
        this.tunBatches++;
        this.tunPackets += count;
        this.forwarder.encapBatch(data, count);
        this.foldReaderDrops();
      });
    } catch (err) {
      this.teardown();
      this.state = 'stopped';
      const what = `js datapath: cannot start (tun ${tunName}, udp ${formatIPv4(bindIP)}:${port})`;
      throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
    }
    this.state = 'running';
    this.log?.info(
      { tun: this.tun.name, mtu, network: formatSubnet(network), subnet: formatSubnet(localSubnet), port, udpGso: this.gso, udpGro: this.udp.gro, tunTso: this.tunTso },
      'js datapath started',
    );
  }

  setRoutes(routes: Route[]): void {
    this.forwarder.setRoutes(routes);
  }

  /** Reads the TUN reader dropped (malformed super-packets etc.) count as encap drops. */
  private foldReaderDrops(): void {
    const drops = this.reader?.stats().drops;
    if (!drops) return;
    drops.forEach((n, i) => {
      const reason = DROP_REASONS[i];
      const seen = this.tunReaderDrops[i] ?? 0;
      if (reason === undefined || n <= seen) return;
      this.forwarder.counters.encapDrops[reason] += n - seen;
      this.tunReaderDrops[i] = n;
    });
  }

  stats(): DatapathStats {
    this.foldReaderDrops();
    const udpRead = this.udpReader?.stats();
    const io = this.addon?.jsioStats();
    return this.forwarder.stats({
      tun: this.tun?.name,
      vnetHdr: true,
      tunTso: this.tunTso,
      tunReadBatches: this.tunBatches,
      tunReadPackets: this.tunPackets,
      udpReadBatches: udpRead?.batches,
      udpReadDatagrams: udpRead?.records,
      udpRecvCalls: udpRead?.reads,
      udpReaderFullWaits: udpRead?.fullWaits,
      udpGso: this.gso,
      udpGro: this.udp?.gro,
      udpSendCalls: io?.udpSendSyscalls,
      udpGsoSends: io?.udpGsoSends,
      udpGsoSegments: io?.udpGsoSegments,
      tunWriteCalls: io?.tunWriteSyscalls,
      tunGroMergedPackets: io?.tunGroMergedPackets,
      socketRecvBuffer: this.udp?.rcvbuf,
      socketSendBuffer: this.udp?.sndbuf,
    });
  }

  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        const wasRunning = this.state === 'running';
        this.teardown();
        this.state = 'stopped';
        if (wasRunning) this.log?.info('js datapath stopped');
      })();
    }
    return this.stopping;
  }

  /** Releases whatever start() created; safe on a half-started engine. */
  private teardown(): void {
    // Readers first: they join their threads, so nothing reads a closed (or reused) fd.
    for (const reader of [this.reader, this.udpReader]) {
      try {
        reader?.stop();
      } catch (err) {
        this.log?.warn({ err }, 'js datapath: stopping a reader failed');
      }
    }
    this.reader = undefined;
    this.udpReader = undefined;
    if (this.udp && this.addon) {
      try {
        this.addon.udpClose(this.udp.fd);
      } catch (err) {
        this.log?.warn({ err }, 'js datapath: closing the UDP socket failed');
      }
    }
    this.udp = undefined;
    if (this.tun && this.addon) {
      // Closing the fd of a non-persistent TUN removes the device, its address and route.
      try {
        this.addon.tunClose(this.tun.fd);
      } catch (err) {
        this.log?.warn({ err }, 'js datapath: closing the TUN device failed');
      }
    }
    this.tun = undefined;
  }
}
