// The LeaseStore seam: where subnet leases live (etcd, or the Kubernetes API), and the errors that
// cross it. Nothing outside src/lease/ talks to etcd or the Kubernetes API directly.
import type { Subnet } from '../net/cidr.js';
import type { Subnet6 } from '../net/ip6.js';

/**
 * An error retrying cannot fix (bad config, bad credentials, a request the server refuses): the
 * agent stops at once with its message instead of retrying until --startup-timeout.
 */
export class PermanentError extends Error {
  override name = 'PermanentError';
}

/** The network config is invalid: the operator must fix it. */
export class ConfigError extends PermanentError {
  override name = 'ConfigError';
}

/** No free subnet is left between SubnetMin and SubnetMax. */
export class SubnetsExhaustedError extends PermanentError {
  override name = 'SubnetsExhaustedError';
}

/** renew() found our subnet held by another node: the agent must re-acquire (not permanent). */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
}

/** True for errors that retrying cannot fix. */
export function isPermanent(err: unknown): err is PermanentError {
  return err instanceof PermanentError;
}

/** The IPv4 overlay of a config with EnableIPv4: Network and the IPv4 subnet bounds after flannel's defaults. */
export interface IPv4Overlay {
  enableIPv4: true;
  network: Subnet;
  subnetLen: number;
  subnetMin: number;
  subnetMax: number;
}

/**
 * EnableIPv4 false: an IPv6-only overlay (EnableIPv6 is then set). No Network, no IPv4 subnets: leases
 * carry only an IPv6 subnet (flannel's etcd key "0.0.0.0-0&<ipv6>-<len>").
 */
export interface NoIPv4Overlay {
  enableIPv4: false;
  network?: undefined;
  subnetLen?: undefined;
  subnetMin?: undefined;
  subnetMax?: undefined;
}

/** Network configuration after flannel's defaults and checks are applied. */
export type NetworkConfig = NetworkConfigCommon & (IPv4Overlay | NoIPv4Overlay);

export interface NetworkConfigCommon {
  /** Lower-cased backend type; a missing Backend means "udp". */
  backendType: string;
  /** EnableIPv6 (default false): IPv6 pod traffic, with the IPv6* fields below. */
  enableIPv6: boolean;
  /** IPv6Network, IPv6SubnetLen, IPv6SubnetMin/Max after flannel's defaults; set iff enableIPv6. */
  ipv6?: { network: Subnet6; subnetLen: number; subnetMin: bigint; subnetMax: bigint };
  /** UDP port of the backend (Backend.Port), 8285 by default. */
  port: number;
  /** The raw JSON the config was parsed from (for the debug endpoint and logs). */
  raw: unknown;
}

/** A subnet lease: one node's subnet and the address its peers send to. */
export interface Lease {
  /** The node's IPv4 pod subnet; absent on a lease of an IPv6-only overlay (which then has ipv6Subnet). */
  subnet?: Subnet;
  /** Dotted IPv4 address of the node's underlay interface (its identity in flannel). */
  publicIP: string;
  /** The node's IPv6 pod subnet (dual-stack keys "10.244.1.0-24&fc00::-64"); absent on IPv4-only leases. */
  ipv6Subnet?: Subnet6;
  /** PublicIPv6 (RFC 5952 text): the node's IPv6 underlay address; absent (null in etcd) when it has none. */
  publicIPv6?: string;
  /**
   * True when the holder's tunnel carries IPv6 pods (felt's BackendV6Data). A lease with an IPv6
   * subnet but without it (a stock flannel UDP node in a dual-stack network) is sent IPv4 only.
   */
  carriesIPv6?: boolean;
  /** When the lease expires if not renewed (ms since epoch); undefined when unknown/none. */
  expiresAt?: number;
  /** Where the lease came from, for the debug endpoint. */
  source: LeaseSource;
  /** The value as stored (flannel's LeaseAttrs JSON), for the debug endpoint. */
  attrs: Record<string, unknown>;
}

export type LeaseSource =
  | { kind: 'etcd'; key: string; modRevision: string; etcdLeaseId?: string }
  | { kind: 'kube'; node: string; resourceVersion?: string };

export type LeaseEvent =
  | { type: 'added'; lease: Lease }
  | { type: 'removed'; lease: Lease };

/**
 * What the watch delivers: either a full snapshot (initial list, or a relist after a
 * disconnect/compaction; the consumer diffs it against what it knows) or incremental events.
 */
export type LeaseUpdate =
  | { kind: 'snapshot'; leases: Lease[]; revision: string }
  | { kind: 'events'; events: LeaseEvent[]; revision: string };

export interface StoreStatus {
  backend: 'etcd' | 'kube';
  connected: boolean;
  /** Last revision (etcd) or resourceVersion (kube) the watch has seen. */
  lastRevision?: string;
  /** When the last full relist happened (ms since epoch). */
  lastRelistAt?: number;
  relists: number;
  errors: number;
  renewals: number;
  renewalFailures: number;
  lastError?: string;
}

export interface AcquireOptions {
  /** The subnet this node had before (from subnet.env), tried if still free. */
  previousSubnet?: Subnet;
  /** The IPv6 subnet this node had before (FLANNEL_IPV6_SUBNET), tried together with previousSubnet. */
  previousSubnet6?: Subnet6;
  /** This node's IPv6 underlay address (PublicIPv6), when it has one. */
  publicIPv6?: string;
}

export interface Watcher {
  stop(): Promise<void>;
}

export interface LeaseStore {
  /** Reads and validates the network config (flannel defaults applied). */
  getNetworkConfig(): Promise<NetworkConfig>;
  /** Takes a lease for this node: reuse by PublicIP, else previous subnet if free, else a free one. */
  acquire(publicIP: string, options?: AcquireOptions): Promise<Lease>;
  /** Extends our lease (etcd: new 24 h TTL). Returns the refreshed lease. */
  renew(lease: Lease): Promise<Lease>;
  /** Every current lease, with the revision the list was taken at. */
  list(): Promise<{ leases: Lease[]; revision: string }>;
  /**
   * Delivers a snapshot first, then events from the snapshot's revision on. After a disconnect
   * or compaction it relists and delivers a new snapshot, so nothing is ever missed.
   */
  watch(onUpdate: (update: LeaseUpdate) => void): Watcher;
  /**
   * The PublicIP the store holds for this node, used when --public-ip is not given (Kubernetes:
   * flannel's node-public-ip annotation). Undefined when it has none (etcd: always).
   */
  storedPublicIP(): Promise<string | undefined>;
  /** The same for PublicIPv6 (Kubernetes: flannel's node-public-ipv6 annotation; etcd: none). */
  storedPublicIPv6(): Promise<string | undefined>;
  /**
   * Called once the agent is up (flannel's CompleteLease). Kubernetes: sets the node condition
   * NetworkUnavailable=False; etcd: nothing. Logs rather than throws: the network works either way.
   */
  completeLease(): Promise<void>;
  status(): StoreStatus;
  close(): Promise<void>;
}
