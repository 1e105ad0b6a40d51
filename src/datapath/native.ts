// The `native` engine: the per-packet path runs in the addon's C threads (native/engine.c), one
// per direction, with TUN offloads (IFF_VNET_HDR, TSO) and UDP GSO/GRO. This class only creates
// and configures the device, pushes route tables, and shapes the counters. docs/datapath.md is
// the contract; the js engine (js.ts) implements the same one.
import type { Logger } from 'pino';
import { formatIPv4, formatSubnet } from '../net/cidr.js';
import { formatIPv6, formatSubnet6, ipv6ToBytes, parseIPv6 } from '../net/ip6.js';
import {
  loadAddon,
  type FeltAddon,
  type NativeEngineHandle,
  type NativeEngineRawStats,
  type TunHandle,
} from './addon.js';
import { DepartedPeers } from './departed.js';
import { nonZeroDrops } from './stats.js';
import { configureTun } from './tundevice.js';
import {
  DROP_REASONS,
  emptyDropCounters,
  type Datapath,
  type DatapathConfig,
  type DatapathStats,
  type DropCounters,
  type Route,
} from './types.js';

/** TUN transmit queue: the kernel default (500) is short for bursts of super-packets. */
const TUN_TX_QUEUE_LEN = 1000;

/** DatapathStats plus the ICMP suppression count docs/datapath.md asks for. */

const ENGINE_FUNCTIONS = [
  'tunOpen',
  'tunClose',
  'linkSetup',
  'routeAdd',
  'engineStart',
  'engineSetRoutes',
  'engineStats',
  'engineStop',
  'engineDropReasons',
] as const;

/**
 * [network, prefixLen, publicIP] triples, the form engineSetRoutes takes; a route with no IPv4 subnet
 * (IPv6-only overlay) has network and prefixLen 0 and is flagged in encodeRoutes6.
 */
export function encodeRoutes(routes: readonly Route[]): Uint32Array {
  const out = new Uint32Array(routes.length * 3);
  routes.forEach((r, i) => {
    out[i * 3] = (r.subnet?.ip ?? 0) >>> 0;
    out[i * 3 + 1] = r.subnet?.prefixLen ?? 0;
    out[i * 3 + 2] = r.publicIP >>> 0;
  });
  return out;
}

/** Four 32-bit words of a 128-bit address, the most significant first. */
function words6(ip: bigint, out: Uint32Array, at: number): void {
  for (let w = 0; w < 4; w++) out[at + w] = Number((ip >> BigInt(96 - 32 * w)) & 0xffffffffn);
}

/**
 * Each route's IPv6 side, 10 words per route beside encodeRoutes' triples: [flags (1 = subnet6,
 * 2 = publicIPv6, 4 = no IPv4 subnet), prefixLen6, subnet6 (4 words), publicIPv6 (4 words)];
 * undefined when no route has either (an IPv4-only table).
 */
export function encodeRoutes6(routes: readonly Route[]): Uint32Array | undefined {
  if (!routes.some((r) => r.subnet6 !== undefined || r.publicIPv6 !== undefined)) return undefined;
  const out = new Uint32Array(routes.length * 10);
  routes.forEach((r, i) => {
    const at = i * 10;
    if (!r.subnet) out[at] |= 4;
    if (r.subnet6) {
      out[at] |= 1;
      out[at + 1] = r.subnet6.prefixLen;
      words6(r.subnet6.ip, out, at + 2);
    }
    if (r.publicIPv6 !== undefined) {
      out[at] |= 2;
      words6(r.publicIPv6, out, at + 6);
    }
  });
  return out;
}

/** A peer's identity in stats: its dotted PublicIP, or its PublicIPv6 text when it has no IPv4 one. */
export function peerKey(publicIP: number, publicIPv6?: bigint): string {
  return publicIP === 0 && publicIPv6 !== undefined ? formatIPv6(publicIPv6) : formatIPv4(publicIP);
}

/** Switches for the engine's offloads; the defaults use everything the kernel offers. */
export interface NativeDatapathOptions {
  /** UDP GSO on send (default true). */
  udpGso?: boolean;
  /** TUN offloads: 'full' = checksum + TSO (+ USO), 'csum' = checksum only, 'none' (default 'full'). */
  tunOffload?: 'full' | 'csum' | 'none';
  /** Packet threads: 1 = one for both directions (default: fewest wake-ups per round trip),
   *  2 = one per direction. */
  threads?: 1 | 2;
}

const TUN_OFFLOAD_LEVEL = { none: 0, csum: 1, full: 2 } as const;

export class NativeDatapath implements Datapath {
  readonly engine = 'native' as const;
  private addon: FeltAddon | undefined;
  /** The C side's drop reason order (checked against DROP_REASONS at start). */
  private reasons: string[] = [];
  private handle: NativeEngineHandle | undefined;
  private tun: TunHandle | undefined;
  private routes: Uint32Array = new Uint32Array(0);
  private routes6: Uint32Array | undefined;
  /** Dotted PublicIPs of the routed peers; counters of those that left are kept in `departed`. */
  private routed: ReadonlySet<string> = new Set();
  private readonly departed = new DepartedPeers();
  private state: 'new' | 'starting' | 'running' | 'stopped' = 'new';
  private stopping: Promise<void> | undefined;
  private lastStats: DatapathStats | undefined;
  private gsoFallbackLogged = false;

  constructor(
    private readonly config: DatapathConfig,
    private readonly log?: Logger,
    private readonly options: NativeDatapathOptions = {},
  ) {}

  async start(): Promise<void> {
    if (this.state !== 'new') throw new Error(`native datapath: start() called twice (state ${this.state})`);
    this.state = 'starting';
    const { tunName, mtu, network, localSubnet, bindIP, port, localSubnet6, bindIPv6 } = this.config;
    try {
      const addon = loadAddon();
      this.addon = addon;
      for (const fn of ENGINE_FUNCTIONS) {
        if (typeof addon[fn] !== 'function') throw new Error(`the native addon lacks ${fn}() (rebuild it)`);
      }
      this.reasons = addon.engineDropReasons();
      if (this.reasons.join() !== DROP_REASONS.join()) {
        const got = this.reasons.join(', ');
        throw new Error(`the native addon's drop reasons [${got}] differ from DROP_REASONS (rebuild it)`);
      }
      this.tun = addon.tunOpen(tunName, { vnetHdr: true });
      // The engine owns the fd from here on (engineStop closes it); it binds the socket first,
      // so a port in use fails before the device is configured.
      this.handle = addon.engineStart({
        tunFd: this.tun.fd,
        mtu,
        ...(localSubnet ? { localNetwork: localSubnet.ip, localPrefixLen: localSubnet.prefixLen } : {}),
        bindIP,
        port,
        udpGso: this.options.udpGso ?? true,
        tunOffload: TUN_OFFLOAD_LEVEL[this.options.tunOffload ?? 'full'],
        threads: (this.options.threads ?? 1) === 1 ? 1 : 0,
        ...(localSubnet6 ? { localNetwork6: ipv6ToBytes(localSubnet6.ip), localPrefixLen6: localSubnet6.prefixLen } : {}),
        ...(bindIPv6 !== undefined ? { bindIP6: ipv6ToBytes(bindIPv6) } : {}),
      });
      addon.engineSetRoutes(this.handle, this.routes, this.routes6);
      configureTun(addon, this.tun.name, this.config, this.log, TUN_TX_QUEUE_LEN);
    } catch (err) {
      this.teardown();
      this.state = 'stopped';
      const v6 = bindIPv6 !== undefined ? `, udp [${formatIPv6(bindIPv6)}]:${port}` : '';
      const what = `native datapath: cannot start (tun ${tunName}, udp ${formatIPv4(bindIP)}:${port}${v6})`;
      throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
    }
    this.state = 'running';
    this.log?.info(
      {
        tun: this.tun.name,
        mtu,
        ...(network && localSubnet ? { network: formatSubnet(network), subnet: formatSubnet(localSubnet) } : {}),
        ...(localSubnet6 ? { subnet6: formatSubnet6(localSubnet6) } : {}),
        port,
        features: this.stats().features,
      },
      'native datapath started',
    );
  }

  setRoutes(routes: Route[]): void {
    const routed = new Set(routes.map((r) => peerKey(r.publicIP, r.publicIPv6)));
    // Read before the swap: the engine may free the counters of a peer with no route.
    this.departed.update(this.routed, routed, () => this.stats().peers);
    this.routed = routed;
    this.routes = encodeRoutes(routes);
    this.routes6 = encodeRoutes6(routes);
    if (this.handle && this.addon) this.addon.engineSetRoutes(this.handle, this.routes, this.routes6);
  }

  stats(): DatapathStats {
    if (!this.handle || !this.addon) return this.lastStats ?? emptyStats(this.tun?.name);
    const stats = shapeStats(this.addon.engineStats(this.handle), this.reasons, this.tun?.name);
    stats.peers = this.departed.withDeparted(stats.peers, this.routed);
    if (stats.features.udpGso === false && stats.features.udpGsoDisabledErrno && !this.gsoFallbackLogged) {
      this.gsoFallbackLogged = true;
      this.log?.warn(
        { errno: stats.features.udpGsoDisabledErrno },
        'native datapath: UDP GSO refused, sending datagrams one by one',
      );
    }
    return stats;
  }

  stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        if (this.handle) this.lastStats = this.stats();
        this.teardown();
        this.state = 'stopped';
        this.log?.info('native datapath stopped');
      })();
    }
    return this.stopping;
  }

  /** Releases whatever start() created; safe on a half-started engine. */
  private teardown(): void {
    const addon = this.addon;
    if (this.handle && addon) {
      addon.engineStop(this.handle); // joins the threads, closes the socket and the TUN fd
    } else if (this.tun && addon) {
      try {
        addon.tunClose(this.tun.fd);
      } catch (err) {
        this.log?.warn({ err }, 'native datapath: closing the TUN device failed');
      }
    }
    this.handle = undefined;
    this.tun = undefined;
  }
}

function dropsFrom(raw: number[], reasons: string[]): DropCounters {
  const out = emptyDropCounters();
  reasons.forEach((reason, i) => {
    if (reason in out) out[reason as keyof DropCounters] = raw[i] ?? 0;
  });
  return out;
}

function ratio(a: unknown, b: unknown): number {
  return typeof a === 'number' && typeof b === 'number' && b > 0 ? Math.round((a / b) * 100) / 100 : 0;
}

/** The addon's raw counters in the DatapathStats shape. */
export function shapeStats(raw: NativeEngineRawStats, reasons: string[], tunName?: string): DatapathStats {
  const peers: DatapathStats['peers'] = {};
  for (const p of raw.peers) {
    const address = peerKey(p.publicIP, p.publicIPv6 !== undefined ? parseIPv6(p.publicIPv6) : undefined);
    peers[address] = {
      publicIP: address,
      tx: { packets: p.txPackets, bytes: p.txBytes },
      rx: { packets: p.rxPackets, bytes: p.rxBytes },
      lastTxAt: p.lastTxAt,
      lastRxAt: p.lastRxAt,
      drops: nonZeroDrops(dropsFrom(p.drops, reasons)),
    };
  }
  const f = raw.features;
  return {
    engine: 'native',
    encap: raw.encap,
    decap: raw.decap,
    icmpSent: raw.icmpSent,
    icmpRateLimited: raw.icmpRateLimited,
    drops: { encap: dropsFrom(raw.encapDrops, reasons), decap: dropsFrom(raw.decapDrops, reasons) },
    peers,
    features: {
      tun: tunName,
      ...f,
      // Batch sizes: how much each syscall carried on average.
      segmentsPerTunRead: ratio(f.tunReadSegments, f.tunReads),
      datagramsPerUdpSend: ratio(f.udpSendDatagrams, f.udpSends),
      datagramsPerUdpRecvCall: ratio(f.udpRecvDatagrams, f.udpRecvCalls),
      packetsPerTunWrite: ratio(f.tunWritePackets, f.tunWrites),
    },
  };
}

function emptyStats(tunName?: string): DatapathStats {
  return {
    engine: 'native',
    encap: { packets: 0, bytes: 0 },
    decap: { packets: 0, bytes: 0 },
    icmpSent: 0,
    icmpRateLimited: 0,
    drops: { encap: emptyDropCounters(), decap: emptyDropCounters() },
    peers: {},
    features: { tun: tunName, vnetHdr: true },
  };
}

