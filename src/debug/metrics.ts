// /metrics: Prometheus text from prom-client, on a registry of our own (never the global one).
// Every felt_* value is read from one AgentSnapshot taken at scrape time: the data path and the
// store keep the monotonic counts, the metrics only mirror them, so nothing is double counted and
// a counter here moves exactly as its source does.
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AgentSnapshot, AgentState } from '../agent-state.js';
import type { PeerProbeStatus, ProbeSummary } from '../probe/types.js';
import { DROP_REASONS } from '../datapath/types.js';
import { leaseName } from '../lease/name.js';
import { leaseCarriesIPv6 } from '../lease/backend-data.js';
import { formatSubnet6 } from '../net/ip6.js';

type Labels = Record<string, string>;
type Series = Array<[Labels, number]>;

export interface AgentMetrics {
  registry: Registry;
  contentType: string;
  /** Takes one snapshot and renders every metric from it. */
  render(): Promise<string>;
}

/** Direction label values: tx = encap (TUN -> UDP), rx = decap (UDP -> TUN). */
const DIRECTIONS = [
  ['tx', 'encap'],
  ['rx', 'decap'],
] as const;

/**
 * prom-client's default process_* and nodejs_* metrics, less its event-loop-lag histogram: that one
 * samples the event loop on a 10 ms timer, which woke an idle agent 200 times a second and took
 * CPU from the packet threads. The others only read state when scraped.
 */
const DEFAULT_METRICS = [
  'processCpuTotal', 'processStartTime', 'osMemoryHeap', 'processOpenFileDescriptors', 'processMaxFileDescriptors',
  'processHandles', 'processRequests', 'heapSizeAndUsed', 'heapSpacesSizeAndUsed', 'version', 'gc',
  ...(typeof (process as { getActiveResourcesInfo?: unknown }).getActiveResourcesInfo === 'function' ? ['processResources'] : []),
];

type DefaultMetric = (registry: Registry, config: Record<string, unknown>) => void;

function registerDefaultMetrics(registry: Registry): void {
  const require = createRequire(import.meta.url);
  for (const name of DEFAULT_METRICS) (require(`prom-client/lib/metrics/${name}`) as DefaultMetric)(registry, {});
}

/**
 * The event loop's health without a timer: the lag of one setImmediate measured at scrape time, and
 * the share of time the loop was busy since the previous scrape (libuv's own accounting).
 */
function registerEventLoopMetrics(registry: Registry): void {
  new Gauge({
    name: 'nodejs_eventloop_lag_seconds',
    help: 'Lag of the event loop in seconds, measured when scraped.',
    registers: [registry],
    async collect(this: Gauge) {
      const start = performance.now();
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.set((performance.now() - start) / 1000);
    },
  });
  let last = performance.eventLoopUtilization();
  new Gauge({
    name: 'nodejs_eventloop_utilization_ratio',
    help: 'Share of time the event loop was busy (not waiting for I/O) since the previous scrape.',
    registers: [registry],
    collect(this: Gauge) {
      const now = performance.eventLoopUtilization();
      this.set(performance.eventLoopUtilization(now, last).utilization);
      last = now;
    },
  });
}

export function createAgentMetrics(state: AgentState): AgentMetrics {
  const registry = new Registry();
  let scrapeSnapshot: AgentSnapshot | undefined;
  // Within render() every collector sees the same snapshot; a direct registry.metrics() call
  // (e.g. from a test) still works and takes its own.
  const snap = (): AgentSnapshot => scrapeSnapshot ?? state.snapshot();

  const counter = (name: string, help: string, labelNames: string[], series: (s: AgentSnapshot) => Series) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect(this: Counter) {
        this.reset();
        for (const [labels, value] of series(snap())) {
          if (Number.isFinite(value) && value >= 0) this.inc(labels, value);
        }
      },
    });
  const gauge = (name: string, help: string, labelNames: string[], series: (s: AgentSnapshot) => Series) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect(this: Gauge) {
        this.reset();
        for (const [labels, value] of series(snap())) {
          if (Number.isFinite(value)) this.set(labels, value);
        }
      },
    });

  gauge('felt_ready', 'Whether the agent is ready (subnet.env written, data path running): 1 or 0.', [], () => [[{}, state.ready() ? 1 : 0]]);
  gauge('felt_engine_info', 'Data-path engine in use (value is always 1).', ['engine'], (s) => {
    const engine = s.datapath?.engine ?? s.self?.engine;
    return engine ? [[{ engine }, 1]] : [];
  });
  gauge('felt_node_info', "This node's lease and tunnel (value is always 1).", ['subnet', 'public_ip', 'tun', 'network'], (s) =>
    // An IPv6-only overlay names leases by their IPv6 subnet and has no IPv4 network (network "").
    s.self ? [[{ subnet: leaseName(s.self.lease), public_ip: s.self.publicIP, tun: s.self.tunName, network: s.self.network ?? '' }, 1]] : [],
  );

  // Data path totals.
  counter('felt_datapath_packets_total', 'Packets carried through the tunnel; direction tx = encap (TUN to UDP), rx = decap (UDP to TUN).', ['direction'], (s) =>
    s.datapath ? DIRECTIONS.map(([dir, key]) => [{ direction: dir }, s.datapath![key].packets]) : [],
  );
  counter('felt_datapath_bytes_total', 'Inner-packet bytes carried through the tunnel, by direction (tx = encap, rx = decap).', ['direction'], (s) =>
    s.datapath ? DIRECTIONS.map(([dir, key]) => [{ direction: dir }, s.datapath![key].bytes]) : [],
  );
  counter('felt_datapath_drops_total', 'Packets dropped by the data path, by direction (tx = encap, rx = decap) and reason.', ['direction', 'reason'], (s) => {
    const d = s.datapath;
    if (!d) return [];
    const out: Series = [];
    for (const [dir, key] of DIRECTIONS) {
      for (const reason of DROP_REASONS) out.push([{ direction: dir, reason }, d.drops[key][reason] ?? 0]);
    }
    return out;
  });
  counter('felt_icmp_sent_total', 'ICMP errors the agent wrote back into the TUN device.', [], (s) => (s.datapath ? [[{}, s.datapath.icmpSent]] : []));
  counter('felt_icmp_rate_limited_total', 'ICMP errors suppressed by the rate limit (100/s per engine).', [], (s) => (s.datapath ? [[{}, s.datapath.icmpRateLimited]] : []));

  // Per peer, keyed by the peer's PublicIP (join with felt_lease_info on public_ip for the subnet).
  const peers = (s: AgentSnapshot) => Object.values(s.datapath?.peers ?? {});
  counter('felt_peer_packets_total', 'Packets exchanged with one peer, by direction (tx = sent to it, rx = received from it).', ['peer', 'direction'], (s) =>
    peers(s).flatMap((p): Series => [
      [{ peer: p.publicIP, direction: 'tx' }, p.tx.packets],
      [{ peer: p.publicIP, direction: 'rx' }, p.rx.packets],
    ]),
  );
  counter('felt_peer_bytes_total', 'Inner-packet bytes exchanged with one peer, by direction.', ['peer', 'direction'], (s) =>
    peers(s).flatMap((p): Series => [
      [{ peer: p.publicIP, direction: 'tx' }, p.tx.bytes],
      [{ peer: p.publicIP, direction: 'rx' }, p.rx.bytes],
    ]),
  );
  counter('felt_peer_drops_total', 'Drops attributed to one peer, by reason (only reasons that occurred).', ['peer', 'reason'], (s) =>
    peers(s).flatMap((p): Series =>
      Object.entries(p.drops ?? {})
        .filter(([, n]) => typeof n === 'number' && n > 0)
        .map(([reason, n]) => [{ peer: p.publicIP, reason }, n as number]),
    ),
  );
  gauge('felt_peer_last_packet_timestamp_seconds', 'Unix time of the last packet exchanged with one peer, by direction (absent if none).', ['peer', 'direction'], (s) =>
    peers(s).flatMap((p): Series => {
      const out: Series = [];
      if (p.lastTxAt > 0) out.push([{ peer: p.publicIP, direction: 'tx' }, p.lastTxAt / 1000]);
      if (p.lastRxAt > 0) out.push([{ peer: p.publicIP, direction: 'rx' }, p.lastRxAt / 1000]);
      return out;
    }),
  );

  // Leases.
  gauge('felt_leases', 'Subnet leases currently known (ours included).', [], (s) => [[{}, s.leases.length]]);
  gauge('felt_lease_info', 'One series per known lease (value is always 1); self="true" marks our own.', ['subnet', 'public_ip', 'self'], (s) => {
    const own = s.self ? leaseName(s.self.lease) : undefined;
    return s.leases.map((l) => {
      const subnet = leaseName(l);
      return [{ subnet, public_ip: l.publicIP, self: String(subnet === own) }, 1];
    });
  });
  // Dual-stack leases only, so an IPv4-only cluster's series are unchanged (join on subnet).
  gauge('felt_lease_ipv6_info', 'One series per lease with an IPv6 half (value is always 1): its IPv6 subnet, PublicIPv6, and whether its tunnel carries IPv6 pods (false: a stock flannel UDP node, sent IPv4 only).', ['subnet', 'subnet6', 'public_ipv6', 'carried'], (s) =>
    s.leases
      .filter((l) => l.ipv6Subnet || l.publicIPv6)
      .map((l) => [{ subnet: leaseName(l), subnet6: l.ipv6Subnet ? formatSubnet6(l.ipv6Subnet) : '', public_ipv6: l.publicIPv6 ?? '', carried: String(leaseCarriesIPv6(l)) }, 1]),
  );
  gauge('felt_lease_expiry_timestamp_seconds', 'Unix time at which a lease expires unless renewed (absent when it has no expiry).', ['subnet', 'public_ip'], (s) =>
    s.leases.filter((l) => l.expiresAt !== undefined).map((l) => [{ subnet: leaseName(l), public_ip: l.publicIP }, l.expiresAt! / 1000]),
  );
  counter('felt_lease_events_total', 'Lease events applied to the table, by type (added, removed, snapshot, reacquired = own lease taken again).', ['type'], (s) => [
    [{ type: 'added' }, s.leaseEvents.added],
    [{ type: 'removed' }, s.leaseEvents.removed],
    [{ type: 'snapshot' }, s.leaseEvents.snapshots],
    [{ type: 'reacquired' }, s.leaseEvents.reacquired],
  ]);
  counter('felt_lease_renewals_total', 'Successful renewals of our own lease.', [], (s) => [[{}, s.store.renewals]]);
  counter('felt_lease_renewal_failures_total', 'Failed attempts to renew our own lease.', [], (s) => [[{}, s.store.renewalFailures]]);

  // Lease store (etcd or Kubernetes).
  counter('felt_store_errors_total', 'Errors talking to the lease store (etcd or the Kubernetes API).', ['backend'], (s) => [[{ backend: s.store.backend }, s.store.errors]]);
  counter('felt_store_relists_total', 'Full relists of the lease store after disconnects and compactions.', ['backend'], (s) => [[{ backend: s.store.backend }, s.store.relists]]);
  gauge('felt_store_connected', 'Whether the lease store connection is up: 1 or 0.', ['backend'], (s) => [[{ backend: s.store.backend }, s.store.connected ? 1 : 0]]);
  gauge('felt_store_last_relist_timestamp_seconds', 'Unix time of the last full list of the lease store, initial or relist (absent before the first).', ['backend'], (s) =>
    s.store.lastRelistAt ? [[{ backend: s.store.backend }, s.store.lastRelistAt / 1000]] : [],
  );

  // Peer probes: counts and one RTT histogram, never a label per peer (5,000 peers stay 3 series).
  gauge('felt_probe_enabled', 'Whether peer probes run: 1, or 0 when off or when the probe socket could not be opened.', [], (s) =>
    s.probes ? [[{}, s.probes.enabled && !(s.probes.error && s.probes.sent.small === 0) ? 1 : 0]] : [],
  );
  // A node that probes IPv6 too (EnableIPv6) labels these by family (ipv4, ipv6; an IPv6-only
  // overlay has only ipv6); an IPv4-only node's series stay unlabelled.
  const families = (p: ProbeSummary): Array<[Record<string, string>, PeerProbeStatus[]]> => {
    const all = Object.values(p.peers);
    if (!p.ipv6) return [[{}, all]];
    const v4 = all.filter((x) => x.family !== 6);
    return [...(v4.length > 0 || all.length === 0 ? [[{ family: 'ipv4' }, v4] as [Record<string, string>, PeerProbeStatus[]]] : []), [{ family: 'ipv6' }, all.filter((x) => x.family === 6)]];
  };
  gauge('felt_probe_peers', 'Peers by what the probes found: state = reachable, unreachable, unknown (not decided yet).', ['state', 'family'], (s) => {
    if (!s.probes?.enabled) return [];
    return families(s.probes).flatMap(([labels, list]) => {
      const n = { reachable: 0, unreachable: 0, unknown: 0 };
      for (const p of list) n[p.state]++;
      return Object.entries(n).map(([state, v]) => [{ state, ...labels }, v] as [Record<string, string>, number]);
    });
  });
  gauge('felt_probe_path_mtu_failing_peers', 'Peers whose full-size probes (TUN MTU, DF set) are lost while small probes pass.', ['family'], (s) =>
    s.probes?.enabled ? families(s.probes).map(([labels, list]) => [labels, list.filter((p) => p.mtu.state === 'failed').length]) : [],
  );
  counter('felt_probes_sent_total', 'Peer probes sent, by size (small, full = the TUN MTU with DF set).', ['size'], (s) =>
    s.probes ? [[{ size: 'small' }, s.probes.sent.small], [{ size: 'full' }, s.probes.sent.full]] : [],
  );
  counter('felt_probes_lost_total', 'Peer probes not answered within the timeout.', [], (s) => (s.probes ? [[{}, s.probes.lost]] : []));
  counter('felt_probe_icmp_errors_total', 'ICMP errors received that concern a peer (port unreachable from its tunnel port, ...).', [], (s) => (s.probes ? [[{}, s.probes.errors]] : []));
  const rtt = new Histogram({
    name: 'felt_probe_rtt_seconds',
    help: 'Round-trip time of answered small peer probes, through both data paths and the underlay.',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  state.onProbeRtt?.((seconds) => rtt.observe(seconds));

  registerDefaultMetrics(registry);
  registerEventLoopMetrics(registry);
  let queue: Promise<unknown> = Promise.resolve();

  return {
    registry,
    contentType: registry.contentType,
    render() {
      // Scrapes run one after another so each renders from its own single snapshot.
      const run = queue.then(async () => {
        scrapeSnapshot = state.snapshot();
        try {
          return await registry.metrics();
        } finally {
          scrapeSnapshot = undefined;
        }
      });
      queue = run.catch(() => undefined);
      return run;
    },
  };
}
