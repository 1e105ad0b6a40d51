// /metrics against a hand-built AgentState (no root): valid Prometheus text, the felt_* families
// with the right types, labels and values, read from the snapshot at scrape time.
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startDebugServer, type DebugServer } from '../../src/debug/server.js';
import { DROP_REASONS } from '../../src/datapath/types.js';
import { httpRequest } from '../debug/http.js';
import { parsePrometheusText, sampleValue, type Family } from '../debug/prom-text.js';
import { HandState, etcdLease, peer } from '../debug/state.js';

const log = pino({ level: 'silent' });
const servers: DebugServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function scrape(state: HandState): Promise<{ families: Map<string, Family>; text: string; contentType: string }> {
  let server = servers[0];
  if (!server) {
    server = await startDebugServer('127.0.0.1:0', state, log);
    servers.push(server);
  }
  const r = await httpRequest(server.address, '/metrics');
  expect(r.status).toBe(200);
  return { families: parsePrometheusText(r.body), text: r.body, contentType: String(r.headers['content-type']) };
}

describe('the strict Prometheus text parser used by these tests', () => {
  it('accepts a well-formed exposition', () => {
    const f = parsePrometheusText(
      '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1",y="q\\"\\\\\\n"} 3\n\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 3.5\nh_count 2\n',
    );
    expect(sampleValue(f, 'a_total', { x: '1' })).toBe(3);
    expect(f.get('a_total')!.samples[0]!.labels.y).toBe('q"\\\n');
    expect(f.get('h')!.samples).toHaveLength(4);
  });

  it.each([
    ['bad metric name', '# TYPE 1abc counter\n1abc 1\n'],
    ['bad label syntax', 'a{x=1} 1\n'],
    ['bad escape', 'a{x="\\t"} 1\n'],
    ['bad value', 'a 1,5\n'],
    ['duplicate series', 'a{x="1"} 1\na{x="1"} 2\n'],
    ['TYPE after samples', 'a 1\n# TYPE a gauge\n'],
    ['split family', 'a 1\nb 1\na{x="2"} 1\n'],
    ['negative counter', '# TYPE c_total counter\nc_total -1\n'],
    ['bucket without le', '# TYPE h histogram\nh_bucket 1\n'],
    ['missing newline', 'a 1'],
  ])('rejects %s', (_name, text) => {
    expect(() => parsePrometheusText(text)).toThrow();
  });
});

describe('/metrics (no root)', () => {
  it('is Prometheus text with HELP and TYPE for every felt_* family', async () => {
    const state = new HandState();
    state.isReady = true;
    const { families, contentType } = await scrape(state);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const expected: Record<string, Family['type']> = {
      felt_ready: 'gauge',
      felt_engine_info: 'gauge',
      felt_node_info: 'gauge',
      felt_datapath_packets_total: 'counter',
      felt_datapath_bytes_total: 'counter',
      felt_datapath_drops_total: 'counter',
      felt_icmp_sent_total: 'counter',
      felt_peer_packets_total: 'counter',
      felt_peer_bytes_total: 'counter',
      felt_peer_drops_total: 'counter',
      felt_peer_last_packet_timestamp_seconds: 'gauge',
      felt_leases: 'gauge',
      felt_lease_info: 'gauge',
      felt_lease_expiry_timestamp_seconds: 'gauge',
      felt_lease_events_total: 'counter',
      felt_lease_renewals_total: 'counter',
      felt_lease_renewal_failures_total: 'counter',
      felt_store_errors_total: 'counter',
      felt_store_relists_total: 'counter',
      felt_store_connected: 'gauge',
      felt_store_last_relist_timestamp_seconds: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) {
      const f = families.get(name);
      expect(f, name).toBeDefined();
      expect(f!.type, name).toBe(type);
      expect(f!.help, name).toMatch(/\w/);
      expect(f!.samples.length, name).toBeGreaterThan(0);
    }
    // Default process metrics ride along.
    expect(families.get('process_cpu_user_seconds_total')?.type).toBe('counter');
    expect(families.get('nodejs_heap_size_used_bytes')?.type).toBe('gauge');
  });

  it('carries the snapshot values with the right labels', async () => {
    const state = new HandState();
    state.isReady = true;
    const { families: f } = await scrape(state);
    expect(sampleValue(f, 'felt_ready')).toBe(1);
    expect(sampleValue(f, 'felt_engine_info', { engine: 'native' })).toBe(1);
    expect(sampleValue(f, 'felt_node_info', { subnet: '10.244.1.0/24', public_ip: '192.168.77.11', tun: 'flannel0', network: '10.244.0.0/16' })).toBe(1);

    expect(sampleValue(f, 'felt_datapath_packets_total', { direction: 'tx' })).toBe(1500);
    expect(sampleValue(f, 'felt_datapath_packets_total', { direction: 'rx' })).toBe(1400);
    expect(sampleValue(f, 'felt_datapath_bytes_total', { direction: 'tx' })).toBe(2_100_000);
    expect(sampleValue(f, 'felt_datapath_bytes_total', { direction: 'rx' })).toBe(1_900_000);
    // Every reason in both directions, zeros included, so rate() works from the first drop.
    expect(f.get('felt_datapath_drops_total')!.samples).toHaveLength(2 * DROP_REASONS.length);
    expect(sampleValue(f, 'felt_datapath_drops_total', { direction: 'tx', reason: 'no-route' })).toBe(3);
    expect(sampleValue(f, 'felt_datapath_drops_total', { direction: 'rx', reason: 'unknown-peer' })).toBe(2);
    expect(sampleValue(f, 'felt_datapath_drops_total', { direction: 'rx', reason: 'spoofed-source' })).toBe(5);
    expect(sampleValue(f, 'felt_datapath_drops_total', { direction: 'tx', reason: 'oversize' })).toBe(0);
    expect(sampleValue(f, 'felt_icmp_sent_total')).toBe(3);

    expect(sampleValue(f, 'felt_peer_packets_total', { peer: '192.168.77.12', direction: 'tx' })).toBe(1200);
    expect(sampleValue(f, 'felt_peer_bytes_total', { peer: '192.168.77.12', direction: 'rx' })).toBe(1_600_000);
    expect(sampleValue(f, 'felt_peer_drops_total', { peer: '192.168.77.13', reason: 'spoofed-source' })).toBe(5);
    expect(f.get('felt_peer_drops_total')!.samples).toHaveLength(1);
    const lastTx = sampleValue(f, 'felt_peer_last_packet_timestamp_seconds', { peer: '192.168.77.12', direction: 'tx' });
    expect(Math.abs(lastTx - (Date.now() / 1000 - 1))).toBeLessThan(120);
    expect(() => sampleValue(f, 'felt_peer_last_packet_timestamp_seconds', { peer: '192.168.77.99', direction: 'rx' })).toThrow(/0 samples/);

    expect(sampleValue(f, 'felt_leases')).toBe(4);
    expect(sampleValue(f, 'felt_lease_info', { subnet: '10.244.1.0/24', public_ip: '192.168.77.11', self: 'true' })).toBe(1);
    expect(sampleValue(f, 'felt_lease_info', { subnet: '10.244.2.0/24', self: 'false' })).toBe(1);
    expect(f.get('felt_lease_expiry_timestamp_seconds')!.samples).toHaveLength(4);
    expect(sampleValue(f, 'felt_lease_events_total', { type: 'added' })).toBe(4);
    expect(sampleValue(f, 'felt_lease_events_total', { type: 'removed' })).toBe(1);
    expect(sampleValue(f, 'felt_lease_events_total', { type: 'snapshot' })).toBe(1);
    expect(sampleValue(f, 'felt_lease_events_total', { type: 'reacquired' })).toBe(0);
    expect(sampleValue(f, 'felt_lease_renewals_total')).toBe(2);
    expect(sampleValue(f, 'felt_lease_renewal_failures_total')).toBe(0);
    expect(sampleValue(f, 'felt_store_errors_total', { backend: 'etcd' })).toBe(0);
    expect(sampleValue(f, 'felt_store_relists_total', { backend: 'etcd' })).toBe(1);
    expect(sampleValue(f, 'felt_store_connected', { backend: 'etcd' })).toBe(1);
  });

  it('follows the snapshot from scrape to scrape (counters move, peers and leases come and go)', async () => {
    const state = new HandState();
    await scrape(state);
    const snap = state.snap;
    snap.datapath!.encap.packets += 10;
    snap.datapath!.drops.encap['no-route'] += 1;
    snap.datapath!.peers['192.168.77.12']!.tx.packets += 10;
    delete snap.datapath!.peers['192.168.77.99'];
    snap.datapath!.peers['192.168.77.15'] = peer('192.168.77.15', { rx: { packets: 7, bytes: 700 } });
    snap.leases.push(etcdLease('10.244.5.0/24', '192.168.77.15', 3600_000));
    snap.store = { ...snap.store, connected: false, errors: 4, lastError: 'boom' };
    state.isReady = false;

    const { families: f } = await scrape(state);
    expect(sampleValue(f, 'felt_datapath_packets_total', { direction: 'tx' })).toBe(1510);
    expect(sampleValue(f, 'felt_datapath_drops_total', { direction: 'tx', reason: 'no-route' })).toBe(4);
    expect(sampleValue(f, 'felt_peer_packets_total', { peer: '192.168.77.12', direction: 'tx' })).toBe(1210);
    expect(sampleValue(f, 'felt_peer_packets_total', { peer: '192.168.77.15', direction: 'rx' })).toBe(7);
    expect(f.get('felt_peer_packets_total')!.samples.some((s) => s.labels.peer === '192.168.77.99')).toBe(false);
    expect(sampleValue(f, 'felt_leases')).toBe(5);
    expect(sampleValue(f, 'felt_lease_info', { subnet: '10.244.5.0/24' })).toBe(1);
    expect(sampleValue(f, 'felt_store_connected', { backend: 'etcd' })).toBe(0);
    expect(sampleValue(f, 'felt_store_errors_total', { backend: 'etcd' })).toBe(4);
    expect(sampleValue(f, 'felt_ready')).toBe(0);

    // Scraping again without changes gives the same numbers (nothing accumulates per scrape).
    const again = (await scrape(state)).families;
    expect(sampleValue(again, 'felt_datapath_packets_total', { direction: 'tx' })).toBe(1510);
    expect(sampleValue(again, 'felt_store_errors_total', { backend: 'etcd' })).toBe(4);
  });

  it('is still valid before the data path runs and before a lease is held', async () => {
    const state = new HandState({
      leases: [],
      store: { backend: 'kube', connected: false, relists: 0, errors: 0, renewals: 0, renewalFailures: 0 },
      leaseEvents: { added: 0, removed: 0, snapshots: 0, reacquired: 0 },
      startedAt: Date.now(),
    });
    const { families: f } = await scrape(state);
    expect(sampleValue(f, 'felt_leases')).toBe(0);
    expect(sampleValue(f, 'felt_store_connected', { backend: 'kube' })).toBe(0);
    expect(f.get('felt_engine_info')!.samples).toHaveLength(0);
    expect(f.get('felt_datapath_packets_total')!.samples).toHaveLength(0);
    expect(f.get('felt_store_last_relist_timestamp_seconds')!.samples).toHaveLength(0);
  });

  it('escapes label values from the store safely', async () => {
    const state = new HandState();
    // Peer keys come from the engine; quotes and backslashes must still give valid text.
    state.snap.datapath!.peers['a"b\\c'] = peer('a"b\\c', { tx: { packets: 1, bytes: 1 } });
    const { families: f } = await scrape(state);
    expect(sampleValue(f, 'felt_peer_packets_total', { peer: 'a"b\\c', direction: 'tx' })).toBe(1);
  });
});
