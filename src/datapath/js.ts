// The `js` engine: TUN through the addon's reader thread, UDP through node:dgram.
// The portable reference implementation of docs/datapath.md; one packet per syscall each way.
//
// Two parts: JsForwarder makes every per-packet decision (validation, routing, admission, TTL,
// ICMP, counters) against a small PacketIO interface, so it can be tested without root;
// JsDatapath owns the device and the socket and feeds the forwarder.
import dgram from 'node:dgram';
import type { Logger } from 'pino';
import { formatIPv4, formatSubnet, subnetContainsIP, type Subnet } from '../net/cidr.js';
import { configureTun } from './tundevice.js';
import { loadAddon, type FeltAddon, type TunHandle, type TunReader } from './addon.js';
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
import type { Datapath, DatapathConfig, DatapathStats, Route } from './types.js';

/** Socket buffers: large enough to absorb bursts while the event loop is busy elsewhere. */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;
/** Datagrams queued in libuv (socket buffer full) beyond this are dropped as send-error. */
const MAX_SEND_QUEUE = 4096;
const ICMP_RATE_PER_SECOND = 100;
const ICMP_BURST = 100;

/** DatapathStats plus the ICMP suppression count docs/datapath.md asks for. */

/** Where the forwarder's packets go. */
export interface PacketIO {
  /** Sends one datagram; `done` runs once with the outcome. May throw (counted as send-error). */
  send(packet: Buffer, address: string, done: (err: Error | null, bytes: number) => void): void;
  /** True when the send queue is too long to accept another datagram. */
  sendBacklogged(): boolean;
  /** Writes one packet into the TUN device; false when the kernel refused it. */
  writeTun(packet: Buffer): boolean;
}

/** A peer as the packet path sees it: counters plus the send callback, made once per peer. */
interface Peer {
  counters: PeerCounters;
  subnets: readonly Subnet[];
  onSent: (err: Error | null, bytes: number) => void;
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

  constructor(
    private readonly config: ForwarderConfig,
    private readonly io: PacketIO,
    private readonly icmpBucket = new TokenBucket(ICMP_RATE_PER_SECOND, ICMP_BURST),
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

  /** A TUN reader batch: `count` [u16 BE length][packet] records. */
  encapBatch(data: Buffer, count: number): void {
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
   * docs/datapath.md "Decap", steps 1-5, for one datagram from `address` (dotted). dgram reads
   * into 64 KiB buffers, so a datagram is never truncated on receipt (no MSG_TRUNC case here).
   */
  decap(msg: Buffer, address: string): void {
    const c = this.counters;
    const peer = this.peersByAddress.get(address);
    if (peer === undefined) {
      c.dropDecap('unknown-peer');
      return;
    }
    const counters = peer.counters;
    const verdict = validateIPv4(msg, 0, msg.length, true);
    if (verdict !== 'ok') {
      c.dropDecap(verdict, counters);
      return;
    }
    if (!subnetsContain(peer.subnets, readU32(msg, IP_OFF.src))) {
      c.dropDecap('spoofed-source', counters);
      return;
    }
    if (msg[IP_OFF.ttl] === 0) {
      c.dropDecap('ttl-expired', counters);
      return;
    }
    const totalLen = readU16(msg, IP_OFF.totalLength);
    const packet = totalLen === msg.length ? msg : msg.subarray(0, totalLen);
    if (!this.writeTun(packet)) {
      c.dropDecap('tun-write-error', counters);
      return;
    }
    counters.rxPackets++;
    counters.rxBytes += totalLen;
    counters.lastRxAt = Date.now();
    c.decapPackets++;
    c.decapBytes += totalLen;
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
  private reader: TunReader | undefined;
  private socket: dgram.Socket | undefined;
  private tunBatches = 0;
  private state: 'new' | 'starting' | 'running' | 'stopped' = 'new';
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly config: DatapathConfig,
    private readonly log?: Logger,
  ) {
    const { port } = config;
    this.forwarder = new JsForwarder(config, {
      send: (packet, address, done) => this.socket!.send(packet, port, address, done),
      sendBacklogged: () => this.socket === undefined || this.socket.getSendQueueCount() > MAX_SEND_QUEUE,
      writeTun: (packet) => this.tun !== undefined && this.addon!.tunWrite(this.tun.fd, packet),
    });
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`js datapath: start() may be called once, on a new engine (state: ${this.state})`);
    this.state = 'starting';
    const { tunName, mtu, network, localSubnet, bindIP, port } = this.config;
    try {
      this.addon = loadAddon();
      for (const fn of ['tunOpen', 'tunClose', 'linkSetup', 'routeAdd', 'tunStartReader', 'tunWrite'] as const) {
        if (typeof this.addon[fn] !== 'function') throw new Error(`the native addon lacks ${fn}() (rebuild it)`);
      }
      // The socket first: a port in use then leaves no device behind at all.
      this.socket = await bindSocket(bindIP, port);
      this.socket.on('message', (msg, rinfo) => this.forwarder.decap(msg, rinfo.address));
      this.socket.on('error', (err) => this.log?.error({ err }, 'js datapath: UDP socket error'));

      this.tun = this.addon.tunOpen(tunName, { vnetHdr: false });
      configureTun(this.addon, this.tun.name, this.config, this.log);
      this.reader = this.addon.tunStartReader(this.tun.fd, (data, count) => {
        this.tunBatches++;
        this.forwarder.encapBatch(data, count);
      });
    } catch (err) {
      this.teardown();
      this.state = 'stopped';
      const what = `js datapath: cannot start (tun ${tunName}, udp ${formatIPv4(bindIP)}:${port})`;
      throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
    }
    this.state = 'running';
    this.log?.info(
      { tun: this.tun.name, mtu, network: formatSubnet(network), subnet: formatSubnet(localSubnet), port },
      'js datapath started',
    );
  }

  setRoutes(routes: Route[]): void {
    this.forwarder.setRoutes(routes);
  }

  stats(): DatapathStats {
    return this.forwarder.stats({
      tun: this.tun?.name,
      vnetHdr: false,
      tunReadBatches: this.tunBatches,
      socketRecvBuffer: this.socketBufferSize('recv'),
      socketSendBuffer: this.socketBufferSize('send'),
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
    try {
      this.reader?.stop();
    } catch (err) {
      this.log?.warn({ err }, 'js datapath: stopping the TUN reader failed');
    }
    this.reader = undefined;
    if (this.socket) {
      this.socket.removeAllListeners('message');
      try {
        this.socket.close();
      } catch {
        // already closed
      }
      this.socket = undefined;
    }
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

  private socketBufferSize(which: 'recv' | 'send'): number | undefined {
    try {
      return which === 'recv' ? this.socket?.getRecvBufferSize() : this.socket?.getSendBufferSize();
    } catch {
      return undefined;
    }
  }
}

function bindSocket(bindIP: number, port: number): Promise<dgram.Socket> {
  const socket = dgram.createSocket({
    type: 'udp4',
    recvBufferSize: SOCKET_BUFFER_BYTES,
    sendBufferSize: SOCKET_BUFFER_BYTES,
  });
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      socket.close();
      reject(new Error(`bind ${formatIPv4(bindIP)}:${port}: ${err.message}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.bind({ address: formatIPv4(bindIP), port, exclusive: true }, () => {
      socket.off('error', onError);
      resolve(socket);
    });
  });
}

