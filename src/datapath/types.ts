// The Datapath seam: moves packets between the TUN device and the UDP socket.
// Two engines implement it: `native` (C threads in the addon) and `js` (per-packet decisions in JavaScript,
// the readable reference; TUN and UDP I/O batched by the addon).
import type { Subnet } from '../net/cidr.js';
import type { Subnet6 } from '../net/ip6.js';

/** Every reason a packet can be dropped. The same names are used by both engines and in metrics. */
export const DROP_REASONS = [
  'no-route', // encap: destination in no lease (ICMP net-unreachable sent back)
  'unknown-peer', // decap: outer source is not the PublicIP of a current lease
  'spoofed-source', // decap: inner source outside the sending lease's subnet
  'malformed', // not a valid IP packet (version, header length, checksum, total length)
  'truncated', // shorter than its headers claim
  'ttl-expired', // TTL ran out (ICMP time-exceeded sent back on encap)
  'oversize', // larger than the tunnel MTU (ICMP frag-needed when DF set) or the receive buffer
  'not-ip', // IP version neither 4 nor 6, or a family this cluster does not carry (IPv6 without EnableIPv6, IPv4 without EnableIPv4)
  'send-error', // the UDP send failed
  'tun-write-error', // writing into the TUN failed
  'own-subnet', // encap: destination is in our own subnet (would loop)
  'ext-header', // IPv6 extension header chain too long, truncated or of a kind not forwarded (fragments included)
  'no-underlay', // encap: the peer has no underlay address of a family this node can send on
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type DropCounters = Record<DropReason, number>;

/**
 * One peer's lease as the data path sees it. The underlay is chosen per peer: IPv6 when both this
 * node (DatapathConfig.bindIPv6) and the peer (publicIPv6) have one, else IPv4. A peer whose lease
 * has no IPv6 subnet (a stock flannel-UDP node) is never sent IPv6 pod traffic.
 */
export interface Route {
  /** The peer's IPv4 pod subnet; absent on an IPv6-only overlay (the route then has subnet6). */
  subnet?: Subnet;
  /** Underlay IPv4 address of the peer (unsigned 32-bit); 0 when it has none. */
  publicIP: number;
  /** The peer's IPv6 pod subnet, when its lease has one. */
  subnet6?: Subnet6;
  /** The peer's IPv6 underlay address (PublicIPv6), when it has one. */
  publicIPv6?: bigint;
}

export interface DirectionCounters {
  packets: number;
  bytes: number;
}

export interface PeerStats {
  /** Underlay address, dotted. */
  publicIP: string;
  tx: DirectionCounters;
  rx: DirectionCounters;
  /** ms since epoch of the last packet each way, 0 if none. */
  lastTxAt: number;
  lastRxAt: number;
  drops: Partial<DropCounters>;
}

export interface DatapathStats {
  engine: 'native' | 'js';
  /** TUN -> UDP (encap) and UDP -> TUN (decap) totals. */
  encap: DirectionCounters;
  decap: DirectionCounters;
  /** ICMP errors the agent wrote back into the TUN. */
  icmpSent: number;
  /** ICMP errors suppressed by the rate limit. */
  icmpRateLimited: number;
  drops: { encap: DropCounters; decap: DropCounters };
  /**
   * Keyed by the peer's dotted PublicIP: the routed peers, then the most recently departed ones
   * (bounded, most recent first; see departed.ts).
   */
  peers: Record<string, PeerStats>;
  /** Free-form engine facts (offloads in use, batch sizes...). */
  features: Record<string, unknown>;
}

export interface DatapathConfig {
  /** TUN device name, e.g. flannel0. */
  tunName: string;
  /** TUN MTU = underlay MTU - 28 (IPv4 underlay) or - 48 (IPv6 underlay in use). */
  mtu: number;
  /**
   * The whole IPv4 overlay network (route `<network> dev <tun>`) and this node's IPv4 lease subnet (its .0
   * goes on the TUN as a /32): set together, with EnableIPv4. Absent on an IPv6-only overlay: no IPv4
   * address or route on the TUN, and IPv4 packets read from it are dropped as `not-ip`.
   */
  network?: Subnet;
  localSubnet?: Subnet;
  /** IPv4 underlay address the UDP socket binds to (the interface address, as flannel); 0 = no IPv4 underlay. */
  bindIP: number;
  /** UDP port, shared by all nodes (8285 default). */
  port: number;
  /** The whole IPv6 overlay network and this node's IPv6 lease subnet: set together, with EnableIPv6. */
  network6?: Subnet6;
  localSubnet6?: Subnet6;
  /** IPv6 underlay address a second UDP socket binds to; absent when the node has no IPv6 underlay. */
  bindIPv6?: bigint;
}

export interface Datapath {
  readonly engine: 'native' | 'js';
  /** Creates and configures the TUN device, binds the socket, starts moving packets. */
  start(): Promise<void>;
  /** Replaces the whole route table atomically (cheap: called on every lease change). */
  setRoutes(routes: Route[]): void;
  stats(): DatapathStats;
  /** Stops the threads, removes the TUN device (and its route). Idempotent. */
  stop(): Promise<void>;
}

export function emptyDropCounters(): DropCounters {
  return Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as DropCounters;
}
