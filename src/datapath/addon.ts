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
  /** Address to put on the link (unsigned 32-bit), e.g. the lease's .0. */
  address: number;
  prefixLen: number;
  /** TUN transmit queue length in packets; default left as the kernel's. */
  txQueueLen?: number;
}

export interface TunReader {
  /** Stops the reader thread; joins it. Idempotent. */
  stop(): void;
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
  /** Starts a thread that reads the TUN fd and hands packets to JS in batches. */
  tunStartReader(fd: number, onBatch: TunBatchHandler): TunReader;
  /** Writes one packet into the TUN device; returns false (not throws) when the kernel refuses it. */
  tunWrite(fd: number, packet: Buffer): boolean;

  // ---- native engine (src/datapath/native.ts) ----
  /**
   * Starts the engine's threads on a TUN fd opened with `vnetHdr: true` (the engine owns it from
   * then on and closes it in engineStop) and a UDP socket it binds to bindIP:port. Throws with the
   * operation and strerror, e.g. `bind 192.168.77.2:8285: Address already in use`.
   */
  engineStart(config: NativeEngineConfig): NativeEngineHandle;
  /** Publishes a new route table: `[network, prefixLen, publicIP]` triples (unsigned 32-bit). */
  engineSetRoutes(handle: NativeEngineHandle, routes: Uint32Array): void;
  engineStats(handle: NativeEngineHandle): NativeEngineRawStats;
  /** Stops and joins the threads, closes the socket and the TUN fd. Idempotent. */
  engineStop(handle: NativeEngineHandle): void;
  /** The C side's drop reason names, in the index order of the raw stats arrays. */
  engineDropReasons(): string[];
}

export interface NativeEngineConfig {
  tunFd: number;
  mtu: number;
  /** Our lease (its .0 is the ICMP source address). */
  localNetwork: number;
  localPrefixLen: number;
  bindIP: number;
  port: number;
  /** Use UDP GSO when the kernel has it (default true; false forces one datagram per send). */
  udpGso?: boolean;
  /** TUN offloads to ask for: 2 = checksum + TSO (+ USO), 1 = checksum only, 0 = none (default 2). */
  tunOffload?: 0 | 1 | 2;
}

/** Opaque handle of a running engine. */
export type NativeEngineHandle = { readonly __nativeEngine: unique symbol };

export interface NativeEngineRawPeer {
  publicIP: number;
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
