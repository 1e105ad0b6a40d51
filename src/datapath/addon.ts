// Typed access to the C addon (native/, built by node-gyp into build/Release/felt.node).
// This file is the contract between the TypeScript side and the C side.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export interface TunHandle {
  fd: number;
  /** The name the kernel gave the device (may differ when a %d pattern was passed). */
  name: string;
}

export interface TunOpenOptions {
  /** IFF_VNET_HDR: every read/write carries a 10-byte virtio_net_hdr (native engine). */
  vnetHdr?: boolean;
}

export interface LinkSetupOptions {
  mtu: number;
  /** Address to put on the link (unsigned 32-bit), e.g. the lease's .0; none on an IPv6-only overlay. */
  address?: number;
  prefixLen?: number;
  /** TUN transmit queue length in packets; default left as the kernel's. */
  txQueueLen?: number;
}

export interface TunReader {
  /** Stops the reader thread; joins it. Idempotent. */
  stop(): void;
  stats(): ReaderStats;
}

/**
 * A batch delivered by a TUN reader thread: `count` packets packed into `data` as
 * [u16 big-endian length][packet bytes] records, back to back. Each batch Buffer is freshly
 * allocated and owned by the handler from then on (the js engine sends views of it without copying).
 */
export type TunBatchHandler = (data: Buffer, count: number) => void;

export interface FeltAddon {
  /** Opens /dev/net/tun and creates the device (IFF_TUN | IFF_NO_PI [| IFF_VNET_HDR]), non-blocking. */
  tunOpen(name: string, options: TunOpenOptions): TunHandle;
  /** Closes the fd; a non-persistent TUN device disappears with its addresses and routes. */
  tunClose(fd: number): void;
  /** rtnetlink: sets MTU (and txqueuelen), adds the address, sets the link up. */
  linkSetup(name: string, options: LinkSetupOptions): void;
  /** rtnetlink: adds `network/prefixLen dev name` (EEXIST is not an error). */
  routeAdd(name: string, network: number, prefixLen: number): void;
  /** rtnetlink: removes that route (ENOENT/ESRCH is not an error). */
  routeDel(name: string, network: number, prefixLen: number): void;
  /** rtnetlink: adds an IPv6 address (16 bytes, network order) with no DAD, e.g. the tunnel's /128. */
  addrAdd6(name: string, address: Uint8Array, prefixLen: number): void;
  /** rtnetlink: adds the IPv6 route `network/prefixLen dev name` (EEXIST is not an error). */
  routeAdd6(name: string, network: Uint8Array, prefixLen: number): void;
  /** Starts a thread that reads the TUN fd and hands packets to JS in batches. */
  /** With `ipv6`, IPv6 reads are parsed (TSO6 split, checksum completed); without, they are not-ip drops. */
  tunStartReader(fd: number, onBatch: TunBatchHandler, options?: { ipv6?: boolean }): TunReader;
  /** Writes one packet into the TUN device; returns false (not throws) when the kernel refuses it. */
  tunWrite(fd: number, packet: Buffer): boolean;

  // ---- native engine (src/datapath/native.ts) ----
  /**
   * Starts the engine's threads on a TUN fd opened with `vnetHdr: true` (the engine owns it from
   * then on and closes it in engineStop) and a UDP socket it binds to bindIP:port. Throws with the
   * operation and strerror, e.g. `bind 192.168.77.2:8285: Address already in use`.
   */
  engineStart(config: NativeEngineConfig): NativeEngineHandle;
  /**
   * Publishes a new route table: `[network, prefixLen, publicIP]` triples (unsigned 32-bit), and
   * optionally each route's IPv6 side, 10 words per route: [flags (1 = subnet6, 2 = publicIPv6),
   * prefixLen6, subnet6 as four words (most significant first), publicIPv6 as four words].
   */
  engineSetRoutes(handle: NativeEngineHandle, routes: Uint32Array, routes6?: Uint32Array): void;
  engineStats(handle: NativeEngineHandle): NativeEngineRawStats;
  /** Stops and joins the threads, closes the socket and the TUN fd. Idempotent. */
  engineStop(handle: NativeEngineHandle): void;
  /** The C side's drop reason names, in the index order of the raw stats arrays. */
  engineDropReasons(): string[];
}

export interface NativeEngineConfig {
  tunFd: number;
  mtu: number;
  /** Our IPv4 lease (its .0 is the ICMP source address); absent on an IPv6-only overlay (IPv4 is then not-ip). */
  localNetwork?: number;
  localPrefixLen?: number;
  bindIP: number;
  port: number;
  /** Use UDP GSO when the kernel has it (default true; false forces one datagram per send). */
  udpGso?: boolean;
  /** TUN offloads to ask for: 2 = checksum + TSO (+ USO), 1 = checksum only, 0 = none (default 2). */
  tunOffload?: 0 | 1 | 2;
  /** 1: one thread serves both directions; 0: a thread per direction (default 0). */
  threads?: 0 | 1;
  /** IPv6 pod traffic: our IPv6 lease (16 bytes; its network address is the ICMPv6 source). */
  localNetwork6?: Uint8Array;
  localPrefixLen6?: number;
  /** IPv6 underlay: a second socket binds [bindIP6]:port (bindIP 0 then means no IPv4 socket). */
  bindIP6?: Uint8Array;
}

/** Opaque handle of a running engine. */
export type NativeEngineHandle = { readonly __nativeEngine: unique symbol };

export interface NativeEngineRawPeer {
  publicIP: number;
  /** Present for a peer known by its IPv6 underlay address (publicIP 0). */
  publicIPv6?: string;
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
  lastTxAt: number;
  lastRxAt: number;
  /** Indexed like engineDropReasons(). */
  drops: number[];
}

export interface NativeEngineRawStats {
  encap: { packets: number; bytes: number };
  decap: { packets: number; bytes: number };
  /** Indexed like engineDropReasons(). */
  encapDrops: number[];
  decapDrops: number[];
  icmpSent: number;
  icmpRateLimited: number;
  peers: NativeEngineRawPeer[];
  /** Offloads in use and batching counters. */
  features: Record<string, number | boolean>;
}

const here = path.dirname(fileURLToPath(import.meta.url));

/** Finds build/Release/felt.node from src/ (vitest) or dist/src/ (built). */
function addonPath(): string {
  for (const up of ['..', '../..', '../../..']) {
    const candidate = path.resolve(here, up, 'build/Release/felt.node');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error('native addon build/Release/felt.node not found: run `npm install` (it builds the addon)');
}

let cached: FeltAddon | undefined;

export function loadAddon(): FeltAddon {
  if (!cached) {
    const require = createRequire(import.meta.url);
    cached = require(addonPath()) as FeltAddon;
  }
  return cached;
}

// ---- js engine batched I/O (native/addon_jsio.c, reader.c, writer.c) ----

/** The UDP socket udpOpen made: bound, non-blocking, large buffers, UDP GRO on when available. */
export interface UdpSocketInfo {
  fd: number;
  /** UDP_SEGMENT (GSO) is usable on this socket. */
  gso: boolean;
  /** UDP_GRO is enabled: coalesced datagrams reach the reader, which splits them again. */
  gro: boolean;
  /** Buffer sizes as the kernel reports them (doubled). */
  sndbuf: number;
  rcvbuf: number;
}

export interface ReaderStats {
  batches: number;
  records: number;
  /** read()/recvmmsg() calls that returned data. */
  reads: number;
  /** Times the thread waited because the maximum of batches was in flight. */
  fullWaits: number;
  /** Reads not delivered, indexed like DROP_REASONS (the TUN offload layer's verdicts). */
  drops: number[];
}

export interface UdpReader extends TunReader {
  stats(): ReaderStats;
}

/**
 * A batch delivered by a UDP reader thread: `count` records of [u32 BE source IPv4][u16 BE
 * length][u8 flags][u8 0][datagram], back to back; flags bit 0 = truncated by the kernel. On a
 * socket from udpOpen6 the source is the 16-byte IPv6 address: [16 bytes][u16 BE length][u8 flags][u8 0]. A UDP GRO
 * datagram arrives as one record per original datagram. The Buffer is owned by the handler.
 */
export type UdpBatchHandler = (data: Buffer, count: number) => void;

export interface JsIoStats {
  udpSendSyscalls: number;
  /** sendmmsg messages that were GSO trains, and the datagrams inside them. */
  udpGsoSends: number;
  udpGsoSegments: number;
  tunWriteSyscalls: number;
  /** TUN packets written inside merged (GRO) super-packets. */
  tunGroMergedPackets: number;
}

export interface FeltAddon {
  /** socket + bind `bindIP:port` (no address reuse); throws e.g. `bind 192.168.77.2:8285: Address already in use`. */
  udpOpen(bindIP: number, port: number): UdpSocketInfo;
  /** The IPv6 underlay socket: AF_INET6, IPV6_V6ONLY, bound to `[bindIP6]:port` (16 bytes, network order). */
  udpOpen6(bindIP6: Uint8Array, port: number): UdpSocketInfo;
  udpClose(fd: number): void;
  /** Starts a thread that receives on the UDP socket (recvmmsg) and hands datagrams to JS in batches. */
  udpStartReader(fd: number, onBatch: UdpBatchHandler): UdpReader;
  /**
   * Sends `count` datagrams to `port`: datagram i is buf[desc[3i], +desc[3i+1]) to the IPv4 address
   * desc[3i+2]; ok[i] is set to 1 when the kernel took it, else 0. With `gso`, runs of equal-size
   * datagrams to one address go as UDP GSO trains. Returns 0, or the errno with which the kernel
   * refused a GSO train (those datagrams were then sent one by one): stop asking for GSO.
   */
  udpSendBatch(fd: number, port: number, buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array, gso: boolean): number;
  /**
   * udpSendBatch on a udpOpen6 socket: desc[3i+2] is an index into `addrs` (16 bytes per IPv6
   * address); a datagram whose index lies outside `addrs` is not sent (ok[i] = 0).
   */
  udpSendBatch6(
    fd: number,
    port: number,
    buf: Buffer,
    desc: Uint32Array,
    count: number,
    ok: Uint8Array,
    gso: boolean,
    addrs: Uint8Array,
  ): number;
  /**
   * Writes `count` packets into the TUN: packet i is buf[desc[2i], +desc[2i+1]); ok[i] as above.
   * With `vnet` (a TUN opened with vnetHdr), each write gets a virtio header and in-order TCP
   * segments of one flow are merged into one super-packet (userspace GRO; patches headers in buf).
   * Returns the number of packets written.
   */
  tunWriteBatch(fd: number, buf: Buffer, desc: Uint32Array, count: number, ok: Uint8Array, vnet?: boolean): number;
  /**
   * TUNSETOFFLOAD on a vnetHdr TUN: flags 1 = checksum, 2 = TSO4, 4 = TSO6. False when the kernel refuses.
   * The TUN reader then splits TSO super-packets and completes checksums before handing packets over.
   */
  tunSetOffload(fd: number, flags: number): boolean;
  /** Process-wide counters of the two batch functions. */
  jsioStats(): JsIoStats;
}
