// The `js` engine: the reference implementation of docs/datapath.md, every per-packet decision
// in JavaScript (JsForwarder, js-forwarder.ts), the I/O around them batched in C. JsDatapath owns
// the device and the socket and feeds the forwarder: a reader thread for the TUN and one for the
// UDP socket (recvmmsg) each hand over whatever is ready as one Buffer; the forwarder's survivors
// leave in one call per batch. One JS callback per batch instead of one per packet is what makes
// this engine fast.
import type { Logger } from 'pino';
import { formatIPv4, formatSubnet } from '../net/cidr.js';
import { formatIPv6, formatSubnet6, ipv6ToBytes } from '../net/ip6.js';
import { configureTun } from './tundevice.js';
import {
  loadAddon,
  type FeltAddon,
  type TunHandle,
  type TunReader,
  type UdpReader,
  type UdpSocketInfo,
} from './addon.js';
import { JsForwarder } from './js-forwarder.js';
import { DROP_REASONS, type Datapath, type DatapathConfig, type DatapathStats, type Route } from './types.js';

export { JsForwarder, type BatchIO, type ForwarderConfig } from './js-forwarder.js';

/**
 * The TUN's transmit queue (packets the kernel holds for our reader). The kernel's default of 500
 * overflows while the reader thread waits for a CPU on a busy machine: TCP then sees loss.
 */
const TUN_TX_QUEUE_LEN = 4000;
/** TUNSETOFFLOAD flags: checksum, TSO4/TSO6 (the reader splits super-packets before JS sees them). */
const TUN_F_CSUM = 1;
const TUN_F_TSO4 = 2;
const TUN_F_TSO6 = 4;

export class JsDatapath implements Datapath {
  readonly engine = 'js' as const;
  private readonly forwarder: JsForwarder;
  private addon: FeltAddon | undefined;
  private tun: TunHandle | undefined;
  private udp: UdpSocketInfo | undefined;
  /** The IPv6 underlay socket (DatapathConfig.bindIPv6) and its reader. */
  private udp6: UdpSocketInfo | undefined;
  private reader: TunReader | undefined;
  private udpReader: UdpReader | undefined;
  private udpReader6: UdpReader | undefined;
  /** UDP GSO for trains of equal-size datagrams, while the kernel accepts it (per socket). */
  private gso = false;
  private gso6 = false;
  /** TSO reads from the TUN (super-packets, split by the reader thread). */
  private tunTso = false;
  private tunTso6 = false;
  private tunBatches = 0;
  private tunPackets = 0;
  /** TUN reads the reader thread's offload layer dropped, as already added to the counters. */
  private tunReaderDrops: number[] = [];
  private state: 'new' | 'starting' | 'running' | 'stopped' = 'new';
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly config: DatapathConfig,
    private readonly log?: Logger,
  ) {
    this.forwarder = new JsForwarder(config, {
      sendBatch: (buf, desc, count, ok) => this.sendBatch(buf, desc, count, ok),
      sendBatch6: (buf, desc, count, ok, addrs) => this.sendBatch6(buf, desc, count, ok, addrs),
      writeTunBatch: (buf, desc, count, ok) => this.writeTunBatch(buf, desc, count, ok),
    });
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

  private sendBatch6(buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array, addrs: Uint8Array): void {
    if (this.udp6 === undefined) {
      ok.fill(0, 0, count);
      return;
    }
    const gsoErrno = this.addon!.udpSendBatch6(this.udp6.fd, this.config.port, buf, desc, count, ok, this.gso6, addrs);
    if (gsoErrno !== 0 && this.gso6) {
      this.gso6 = false;
      this.log?.warn({ errno: gsoErrno }, 'js datapath: the kernel refused UDP GSO on the IPv6 socket; sending datagram by datagram');
    }
  }

  /** The IPv6 underlay socket and its reader, when the node has an IPv6 underlay address. */
  private openUdp6(addon: FeltAddon, bindIPv6: bigint): void {
    this.udp6 = addon.udpOpen6(ipv6ToBytes(bindIPv6), this.config.port);
    this.gso6 = this.udp6.gso;
    this.udpReader6 = addon.udpStartReader(this.udp6.fd, (data, count) => this.forwarder.decapBatch6(data, count));
  }

  /**
   * Checksum + TSO4 (+ TSO6 with an IPv6 network: the reader then splits TCP/IPv6 super-packets);
   * falls back to TSO4, then to no offloads.
   */
  private setTunOffloads(addon: FeltAddon, fd: number): boolean {
    if (this.config.localSubnet6 !== undefined && addon.tunSetOffload(fd, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)) {
      this.tunTso6 = true;
      return true;
    }
    if (addon.tunSetOffload(fd, TUN_F_CSUM | TUN_F_TSO4)) return true;
    addon.tunSetOffload(fd, 0);
    return false;
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`js datapath: start() may be called once, on a new engine (state: ${this.state})`);
    this.state = 'starting';
    const { tunName, mtu, network, localSubnet, bindIP, bindIPv6, port } = this.config;
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
        'udpOpen6',
        'udpSendBatch6',
        'tunWriteBatch',
        'tunSetOffload',
        'jsioStats',
      ] as const) {
        if (typeof this.addon[fn] !== 'function') throw new Error(`the native addon lacks ${fn}() (rebuild it)`);
      }
      // The sockets first: a port in use then leaves no device behind at all. bindIP 0: no IPv4 underlay.
      if (bindIP !== 0) {
        this.udp = this.addon.udpOpen(bindIP, port);
        this.gso = this.udp.gso;
      }
      if (bindIPv6 !== undefined) this.openUdp6(this.addon, bindIPv6);

      // A virtio header on every TUN read and write: merged writes (GRO) and TSO reads, which save
      // the kernel a trip through its stack per packet. The forwarder still sees single packets.
      this.tun = this.addon.tunOpen(tunName, { vnetHdr: true });
      this.tunTso = this.setTunOffloads(this.addon, this.tun.fd);
      configureTun(this.addon, this.tun.name, this.config, this.log, TUN_TX_QUEUE_LEN);
      if (this.udp) this.udpReader = this.addon.udpStartReader(this.udp.fd, (data, count) => this.forwarder.decapBatch(data, count));
      // With IPv6 the reader parses IPv6 reads (TSO6 split, checksums); without, they stay not-ip.
      const ipv6 = this.config.localSubnet6 !== undefined;
      this.reader = this.addon.tunStartReader(
        this.tun.fd,
        (data, count) => {
          this.tunBatches++;
          this.tunPackets += count;
          this.forwarder.encapBatch(data, count);
          this.foldReaderDrops();
        },
        { ipv6 },
      );
    } catch (err) {
      this.teardown();
      this.state = 'stopped';
      const udp6 = bindIPv6 === undefined ? '' : `, udp [${formatIPv6(bindIPv6)}]:${port}`;
      const what = `js datapath: cannot start (tun ${tunName}, udp ${formatIPv4(bindIP)}:${port}${udp6})`;
      throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
    }
    this.state = 'running';
    const v6 = this.config.localSubnet6
      ? { network6: this.config.network6 && formatSubnet6(this.config.network6), subnet6: formatSubnet6(this.config.localSubnet6), tunTso6: this.tunTso6 }
      : {};
    const underlay6 = this.udp6 ? { bindIPv6: formatIPv6(bindIPv6!), udpGso6: this.gso6, udpGro6: this.udp6.gro } : {};
    this.log?.info(
      { tun: this.tun.name, mtu, ...(network && localSubnet ? { network: formatSubnet(network), subnet: formatSubnet(localSubnet) } : {}), port, udpGso: this.gso, udpGro: this.udp?.gro, tunTso: this.tunTso, ...v6, ...underlay6 },
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
    const udpRead6 = this.udpReader6?.stats();
    const v6 = this.config.localSubnet6 ? { tunTso6: this.tunTso6 } : {};
    const underlay6 = this.udp6
      ? { udp6ReadBatches: udpRead6?.batches, udp6ReadDatagrams: udpRead6?.records, udpGso6: this.gso6, udpGro6: this.udp6.gro }
      : {};
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
      ...v6,
      ...underlay6,
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
    for (const reader of [this.reader, this.udpReader, this.udpReader6]) {
      try {
        reader?.stop();
      } catch (err) {
        this.log?.warn({ err }, 'js datapath: stopping a reader failed');
      }
    }
    this.reader = undefined;
    this.udpReader = undefined;
    this.udpReader6 = undefined;
    for (const socket of [this.udp, this.udp6]) {
      if (!socket || !this.addon) continue;
      try {
        this.addon.udpClose(socket.fd);
      } catch (err) {
        this.log?.warn({ err }, 'js datapath: closing a UDP socket failed');
      }
    }
    this.udp = undefined;
    this.udp6 = undefined;
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
