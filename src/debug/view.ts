// The /leases document: an AgentSnapshot turned into plain JSON with stable field names.
// The HTML page, the plain-text table and `felt leases --agent` all read this one shape;
// docs/debug.md documents every field. Add fields freely, never rename or repurpose one.
import type { AgentSnapshot } from '../agent-state.js';
import type { DirectionCounters, DropCounters, PeerStats } from '../datapath/types.js';
import { DROP_REASONS } from '../datapath/types.js';
import type { Lease, StoreStatus } from '../lease/types.js';
import { formatSubnet } from '../net/cidr.js';
import { leaseName } from '../lease/name.js';
import { leaseCarriesIPv6 } from '../lease/backend-data.js';
import { formatSubnet6 } from '../net/ip6.js';
import { peerProbeView, probesView, type PeerProbeView, type ProbesView } from '../probe/view.js';

export const LEASES_VIEW_VERSION = 1;

/** A lease with fewer seconds than this left is flagged "expiring" (a healthy peer renews long before). */
export const EXPIRING_SECONDS = 10 * 60;

export type ExpiryState = 'ok' | 'expiring' | 'expired' | 'none';

export type SourceView =
  | { kind: 'etcd'; key: string; modRevision: string; etcdLeaseId: string | null }
  | { kind: 'kube'; node: string; resourceVersion: string | null };

export interface PeerView {
  tx: DirectionCounters;
  rx: DirectionCounters;
  lastTxAt: string | null;
  lastRxAt: string | null;
  lastTxSecondsAgo: number | null;
  lastRxSecondsAgo: number | null;
  /** Non-zero drop counters of this peer, by reason. */
  drops: Record<string, number>;
  dropsTotal: number;
}

export interface LeaseView {
  /** The IPv4 subnet; null on a lease of an IPv6-only overlay (which has subnet6). */
  subnet: string | null;
  publicIP: string;
  /** The lease's IPv6 subnet (dual-stack); null when it has none. */
  subnet6: string | null;
  /** PublicIPv6; null when the node has no IPv6 underlay address. */
  publicIPv6: string | null;
  /**
   * With an IPv6 subnet: whether the holder's tunnel carries IPv6 pods (felt's BackendV6Data). False
   * for a stock flannel UDP node, which is sent IPv4 only. Null on a lease without an IPv6 subnet.
   */
  ipv6Carried: boolean | null;
  /** True for this node's own lease. */
  self: boolean;
  expiresAt: string | null;
  expiresInSeconds: number | null;
  expiryState: ExpiryState;
  source: SourceView;
  attrs: Record<string, unknown>;
  /** This peer's data-path counters (joined by PublicIP, or PublicIPv6 when PublicIP is 0.0.0.0); null when the data path has none. */
  datapath: PeerView | null;
  /** What the peer probes found (joined by subnet); null for our own lease or without probes. */
  probe: PeerProbeView | null;
  /** The IPv6 probe of the peer's IPv6 tunnel address (joined by IPv6 subnet): only on leases with
   *  an IPv6 subnet, null while there is none (no EnableIPv6 here, our own lease, no probes). */
  probe6?: PeerProbeView | null;
}

export interface DatapathView {
  engine: string;
  /** TUN -> UDP. */
  encap: DirectionCounters;
  /** UDP -> TUN. */
  decap: DirectionCounters;
  icmpSent: number;
  /** ICMP errors suppressed by the rate limiter, when the engine reports it. */
  icmpRateLimited: number | null;
  /** Every reason, zeros included. */
  drops: { encap: DropCounters; decap: DropCounters };
  dropsTotal: { encap: number; decap: number };
  features: Record<string, unknown>;
  /** Counters of peers whose PublicIP is in no current lease (e.g. a lease that went away). */
  unmatchedPeers: Array<PeerView & { publicIP: string }>;
}

export interface StoreView {
  backend: string;
  connected: boolean;
  lastRevision: string | null;
  lastRelistAt: string | null;
  lastRelistSecondsAgo: number | null;
  relists: number;
  errors: number;
  renewals: number;
  renewalFailures: number;
  lastError: string | null;
}

export interface NodeView {
  /** Our IPv4 subnet and the Network; null on an IPv6-only overlay. */
  subnet: string | null;
  publicIP: string;
  /** Our IPv6 subnet, PublicIPv6 and the IPv6Network (EnableIPv6); null when none. */
  subnet6: string | null;
  publicIPv6: string | null;
  network6: string | null;
  tunName: string;
  engine: string;
  mtu: number;
  network: string | null;
  port: number;
  expiresAt: string | null;
  expiresInSeconds: number | null;
}

export interface LeasesView {
  formatVersion: number;
  generatedAt: string;
  /** Null when the document was not made by an agent (e.g. `felt leases` reading etcd). */
  ready: boolean | null;
  startedAt: string | null;
  uptimeSeconds: number | null;
  node: NodeView | null;
  leaseCount: number;
  leases: LeaseView[];
  datapath: DatapathView | null;
  store: StoreView;
  leaseEvents: { added: number; removed: number; snapshots: number; reacquired: number };
  /** Peer probe totals; null when not made by an agent or before probing starts. */
  probes: ProbesView | null;
}

function iso(ms: number | undefined): string | null {
  return ms === undefined || !Number.isFinite(ms) || ms <= 0 ? null : new Date(ms).toISOString();
}

function secondsBetween(later: number, earlier: number): number {
  return Math.round((later - earlier) / 1000);
}

function expiryState(secondsLeft: number | null): ExpiryState {
  if (secondsLeft === null) return 'none';
  if (secondsLeft <= 0) return 'expired';
  if (secondsLeft < EXPIRING_SECONDS) return 'expiring';
  return 'ok';
}

function sourceView(lease: Lease): SourceView {
  const s = lease.source;
  if (s.kind === 'etcd') return { kind: 'etcd', key: s.key, modRevision: s.modRevision, etcdLeaseId: s.etcdLeaseId ?? null };
  return { kind: 'kube', node: s.node, resourceVersion: s.resourceVersion ?? null };
}

function nonZeroDrops(drops: Partial<DropCounters>): { drops: Record<string, number>; total: number } {
  const out: Record<string, number> = {};
  let total = 0;
  for (const [reason, n] of Object.entries(drops)) {
    if (typeof n === 'number' && n > 0) {
      out[reason] = n;
      total += n;
    }
  }
  return { drops: out, total };
}

function peerView(p: PeerStats, now: number): PeerView {
  const { drops, total } = nonZeroDrops(p.drops ?? {});
  return {
    tx: { packets: p.tx.packets, bytes: p.tx.bytes },
    rx: { packets: p.rx.packets, bytes: p.rx.bytes },
    lastTxAt: iso(p.lastTxAt),
    lastRxAt: iso(p.lastRxAt),
    lastTxSecondsAgo: p.lastTxAt > 0 ? secondsBetween(now, p.lastTxAt) : null,
    lastRxSecondsAgo: p.lastRxAt > 0 ? secondsBetween(now, p.lastRxAt) : null,
    drops,
    dropsTotal: total,
  };
}

function fullDrops(d: Partial<DropCounters> | undefined): DropCounters {
  return Object.fromEntries(DROP_REASONS.map((r) => [r, d?.[r] ?? 0])) as DropCounters;
}

function sum(d: DropCounters): number {
  return Object.values(d).reduce((a, b) => a + b, 0);
}

function storeView(s: StoreStatus, now: number): StoreView {
  return {
    backend: s.backend,
    connected: s.connected,
    lastRevision: s.lastRevision ?? null,
    lastRelistAt: iso(s.lastRelistAt),
    lastRelistSecondsAgo: s.lastRelistAt ? secondsBetween(now, s.lastRelistAt) : null,
    relists: s.relists,
    errors: s.errors,
    renewals: s.renewals,
    renewalFailures: s.renewalFailures,
    lastError: s.lastError ?? null,
  };
}

/** The data path names a peer by its PublicIP, or by its PublicIPv6 when it has no IPv4 one (0.0.0.0). */
export function peerStatsKey(lease: Pick<Lease, 'publicIP' | 'publicIPv6'>): string {
  return lease.publicIP === '0.0.0.0' && lease.publicIPv6 ? lease.publicIPv6 : lease.publicIP;
}

function isSelf(lease: Lease, snap: AgentSnapshot): boolean {
  const own = snap.self?.lease;
  return !!own && leaseName(own) === leaseName(lease);
}

/**
 * Builds the /leases document. `ready` is null when there is no agent (the caller then passes a
 * snapshot holding only leases and store state).
 */
export function buildLeasesView(snap: AgentSnapshot, ready: boolean | null, now: number = Date.now()): LeasesView {
  const stats = snap.datapath;
  const peers = stats?.peers ?? {};
  const leasedIPs = new Set<string>();

  const leases: LeaseView[] = snap.leases.map((lease) => {
    const statsKey = peerStatsKey(lease);
    leasedIPs.add(statsKey);
    const secondsLeft = lease.expiresAt !== undefined ? secondsBetween(lease.expiresAt, now) : null;
    const peer = peers[statsKey];
    const probed = lease.subnet && snap.probes?.peers[formatSubnet(lease.subnet)];
    const probeOf = probed && probed.publicIP === lease.publicIP ? probed : undefined;
    const probed6 = lease.ipv6Subnet && snap.probes?.peers[formatSubnet6(lease.ipv6Subnet)];
    const probe6Of = probed6 && probed6.family === 6 && probed6.publicIP === lease.publicIP ? probed6 : undefined;
    return {
      subnet: lease.subnet ? formatSubnet(lease.subnet) : null,
      publicIP: lease.publicIP,
      subnet6: lease.ipv6Subnet ? formatSubnet6(lease.ipv6Subnet) : null,
      publicIPv6: lease.publicIPv6 ?? null,
      ipv6Carried: lease.ipv6Subnet ? leaseCarriesIPv6(lease) : null,
      self: isSelf(lease, snap),
      expiresAt: iso(lease.expiresAt),
      expiresInSeconds: secondsLeft,
      expiryState: expiryState(secondsLeft),
      source: sourceView(lease),
      attrs: lease.attrs ?? {},
      datapath: peer ? peerView(peer, now) : null,
      probe: probeOf ? peerProbeView(probeOf, now) : null,
      ...(lease.ipv6Subnet ? { probe6: probe6Of ? peerProbeView(probe6Of, now) : null } : {}),
    };
  });

  let datapath: DatapathView | null = null;
  if (stats) {
    const encapDrops = fullDrops(stats.drops?.encap);
    const decapDrops = fullDrops(stats.drops?.decap);
    // The data-path docs count rate-limited ICMP; engines may report it top-level or in features.
    const limited = (stats as { icmpRateLimited?: unknown }).icmpRateLimited ?? stats.features?.icmpRateLimited;
    datapath = {
      engine: stats.engine,
      encap: { packets: stats.encap.packets, bytes: stats.encap.bytes },
      decap: { packets: stats.decap.packets, bytes: stats.decap.bytes },
      icmpSent: stats.icmpSent,
      icmpRateLimited: typeof limited === 'number' ? limited : null,
      drops: { encap: encapDrops, decap: decapDrops },
      dropsTotal: { encap: sum(encapDrops), decap: sum(decapDrops) },
      features: stats.features ?? {},
      unmatchedPeers: Object.entries(peers)
        .filter(([ip]) => !leasedIPs.has(ip))
        .map(([ip, p]) => ({ publicIP: ip, ...peerView(p, now) })),
    };
  }

  let node: NodeView | null = null;
  if (snap.self) {
    const s = snap.self;
    node = {
      subnet: s.lease.subnet ? formatSubnet(s.lease.subnet) : null,
      publicIP: s.publicIP,
      subnet6: s.lease.ipv6Subnet ? formatSubnet6(s.lease.ipv6Subnet) : null,
      publicIPv6: s.publicIPv6 ?? null,
      network6: s.network6 ?? null,
      tunName: s.tunName,
      engine: s.engine,
      mtu: s.mtu,
      network: s.network ?? null,
      port: s.port,
      expiresAt: iso(s.lease.expiresAt),
      expiresInSeconds: s.lease.expiresAt !== undefined ? secondsBetween(s.lease.expiresAt, now) : null,
    };
  }

  return {
    formatVersion: LEASES_VIEW_VERSION,
    generatedAt: new Date(now).toISOString(),
    ready,
    startedAt: ready === null ? null : iso(snap.startedAt),
    uptimeSeconds: ready === null ? null : secondsBetween(now, snap.startedAt),
    node,
    leaseCount: leases.length,
    leases,
    datapath,
    store: storeView(snap.store, now),
    leaseEvents: { ...snap.leaseEvents },
    probes: snap.probes ? probesView(snap.probes) : null,
  };
}

/** Checks that a document fetched from an agent has the shape this version reads. */
export function isLeasesView(value: unknown): value is LeasesView {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<LeasesView>;
  return typeof v.formatVersion === 'number' && Array.isArray(v.leases) && typeof v.store === 'object' && v.store !== null;
}
