// The lease document, text table and /metrics with dual-stack leases (no root): both subnets and
// PublicIPv6 per lease, peer counters joined by PublicIPv6 for a node without an IPv4 underlay,
// and IPv4-only output unchanged.
import { describe, expect, it } from 'vitest';
import { formatLeaseTable } from '../../src/debug/table.js';
import { renderLeasesPage } from '../../src/debug/html.js';
import { buildLeasesView } from '../../src/debug/view.js';
import { parseSubnet6 } from '../../src/net/ip6.js';
import type { Lease } from '../../src/lease/types.js';
import { HOUR, etcdLease, peer, sampleSnapshot } from '../debug/state.js';

function dual(subnet: string, publicIP: string, subnet6: string, publicIPv6?: string): Lease {
  const l = etcdLease(subnet, publicIP, 20 * HOUR);
  return { ...l, ipv6Subnet: parseSubnet6(subnet6), ...(publicIPv6 ? { publicIPv6 } : {}), carriesIPv6: true, attrs: { PublicIP: publicIP, PublicIPv6: publicIPv6 ?? null, BackendV6Data: { CarriesIPv6: true } } };
}

describe('lease document with IPv6 halves (no root)', () => {
  it('IPv4-only snapshot: the new fields are null and the text has no IPv6 column', () => {
    const view = buildLeasesView(sampleSnapshot(), true);
    expect(view.leases.every((l) => l.subnet6 === null && l.publicIPv6 === null)).toBe(true);
    expect(view.node).toMatchObject({ subnet6: null, publicIPv6: null, network6: null });
    const text = formatLeaseTable(view);
    expect(text).not.toMatch(/IPV6|ipv6:/);
  });

  it('shows both subnets and PublicIPv6 in JSON and text; counters of an IPv6-only peer join by its PublicIPv6', () => {
    const snap = sampleSnapshot();
    const own = dual('10.244.1.0/24', '192.168.77.11', 'fc00:0:0:1::/64', 'fd77::11');
    snap.self = { ...snap.self!, lease: own, publicIPv6: 'fd77::11', network6: 'fc00::/48' };
    snap.leases = [own, dual('10.244.2.0/24', '0.0.0.0', 'fc00:0:0:2::/64', 'fd77::12'), etcdLease('10.244.3.0/24', '192.168.77.13', 20 * HOUR)];
    snap.datapath!.peers = { 'fd77::12': peer('fd77::12', { tx: { packets: 7, bytes: 700 } }) };
    const view = buildLeasesView(snap, true);
    expect(view.node).toMatchObject({ subnet6: 'fc00:0:0:1::/64', publicIPv6: 'fd77::11', network6: 'fc00::/48' });
    expect(view.leases.map((l) => [l.subnet, l.publicIP, l.subnet6, l.publicIPv6])).toEqual([
      ['10.244.1.0/24', '192.168.77.11', 'fc00:0:0:1::/64', 'fd77::11'],
      ['10.244.2.0/24', '0.0.0.0', 'fc00:0:0:2::/64', 'fd77::12'],
      ['10.244.3.0/24', '192.168.77.13', null, null],
    ]);
    expect(view.leases[1]!.datapath?.tx.packets).toBe(7);
    expect(view.datapath!.unmatchedPeers).toEqual([]);

    const text = formatLeaseTable(view);
    expect(text).toMatch(/ipv6:\s+fc00:0:0:1::\/64 public fd77::11 {2}network fc00::\/48/);
    expect(text).toMatch(/SUBNET\s+PUBLIC IP\s+IPV6 SUBNET\s+PUBLIC IPV6\s+EXPIRES IN/);
    expect(text).toMatch(/10\.244\.2\.0\/24\s+0\.0\.0\.0\s+fc00:0:0:2::\/64\s+fd77::12/);
    expect(text).toMatch(/10\.244\.3\.0\/24\s+192\.168\.77\.13\s+-\s+-/);

    const html = renderLeasesPage(view);
    expect(html).toContain('<div class="sub">fc00:0:0:2::/64</div>');
    expect(html).toContain('<div class="sub">fd77::12</div>');
    expect(html).toContain('IPv6 network fc00::/48');
    expect(renderLeasesPage(buildLeasesView(sampleSnapshot(), true))).not.toMatch(/IPv6|fc00/);
    expect(view.leases.map((l) => l.ipv6Carried)).toEqual([true, true, null]);
    expect(text).not.toContain('not carried');
  });

  it("marks a stock flannel UDP node's IPv6 subnet (no felt BackendV6Data) as not carried in JSON, text and HTML", () => {
    const snap = sampleSnapshot();
    const own = dual('10.244.1.0/24', '192.168.77.11', 'fc00:0:0:1::/64');
    const { carriesIPv6: _, ...stock } = dual('10.244.2.0/24', '192.168.77.12', 'fc00:0:0:2::/64');
    snap.self = { ...snap.self!, lease: own, network6: 'fc00::/48' };
    snap.leases = [own, { ...stock, attrs: { PublicIP: '192.168.77.12', PublicIPv6: null } }];
    const view = buildLeasesView(snap, true);
    expect(view.leases.map((l) => l.ipv6Carried)).toEqual([true, false]);
    expect(formatLeaseTable(view)).toMatch(/10\.244\.2\.0\/24\s+192\.168\.77\.12\s+fc00:0:0:2::\/64 \(not carried\)/);
    expect(renderLeasesPage(view)).toContain('IPv6 not carried</span>');
  });
});

describe('/metrics with IPv6 halves (no root)', () => {
  it('felt_lease_ipv6_info has one series per lease with an IPv6 half; none for IPv4-only leases', async () => {
    const { pino } = await import('pino');
    const { startDebugServer } = await import('../../src/debug/server.js');
    const { httpRequest } = await import('../debug/http.js');
    const { parsePrometheusText, sampleValue } = await import('../debug/prom-text.js');
    const { HandState } = await import('../debug/state.js');
    const snap = sampleSnapshot();
    snap.leases = [...snap.leases, dual('10.244.9.0/24', '0.0.0.0', 'fc00:0:0:9::/64', 'fd77::19')];
    const server = await startDebugServer('127.0.0.1:0', new HandState(snap), pino({ level: 'silent' }));
    try {
      const f = parsePrometheusText((await httpRequest(server.address, '/metrics')).body);
      expect(sampleValue(f, 'felt_lease_ipv6_info', { subnet: '10.244.9.0/24', subnet6: 'fc00:0:0:9::/64', public_ipv6: 'fd77::19', carried: 'true' })).toBe(1);
      expect(f.get('felt_lease_ipv6_info')!.samples).toHaveLength(1);
    } finally {
      await server.close();
    }
  });
});

/** A lease of an IPv6-only overlay: no IPv4 subnet, key "0.0.0.0-0&<ipv6>-<len>". */
function v6only(subnet6: string, publicIPv6: string): Lease {
  const { subnet: _none, ...rest } = etcdLease('10.244.250.0/24', '0.0.0.0', 20 * HOUR);
  return { ...rest, ipv6Subnet: parseSubnet6(subnet6), publicIPv6, carriesIPv6: true, attrs: { PublicIP: '0.0.0.0', PublicIPv6: publicIPv6, BackendV6Data: { CarriesIPv6: true } } };
}

function v6onlySnapshot(): ReturnType<typeof sampleSnapshot> {
  const snap = sampleSnapshot();
  const own = v6only('fc00:0:0:1::/64', 'fd77::11');
  const { network: _none, ...self } = snap.self!;
  snap.self = { ...self, lease: own, publicIP: '0.0.0.0', publicIPv6: 'fd77::11', network6: 'fc00::/48' };
  snap.leases = [own, v6only('fc00:0:0:2::/64', 'fd77::12')];
  snap.datapath!.peers = { 'fd77::12': peer('fd77::12', { tx: { packets: 5, bytes: 500 } }) };
  snap.probes = undefined;
  return snap;
}

describe('views of an IPv6-only overlay (no root)', () => {
  it('JSON: subnet and network null; text and HTML show "-" for the IPv4 subnet and name the lease by its IPv6 one', () => {
    const view = buildLeasesView(v6onlySnapshot(), true);
    expect(view.node).toMatchObject({ subnet: null, network: null, subnet6: 'fc00:0:0:1::/64', network6: 'fc00::/48' });
    expect(view.leases.map((l) => [l.subnet, l.subnet6, l.self])).toEqual([[null, 'fc00:0:0:1::/64', true], [null, 'fc00:0:0:2::/64', false]]);
    expect(view.leases[1]!.datapath?.tx.packets).toBe(5);

    const text = formatLeaseTable(view);
    expect(text).toMatch(/node:\s+fc00:0:0:1::\/64 public 0\.0\.0\.0/);
    expect(text).toMatch(/network:\s+none \(IPv6-only overlay\)/);
    expect(text).toMatch(/\s-\s+0\.0\.0\.0\s+fc00:0:0:2::\/64\s+fd77::12/);

    const html = renderLeasesPage(view);
    expect(html).toContain('<title>felt · fc00:0:0:1::/64 · leases</title>');
    expect(html).toContain('IPv6-only overlay');
    expect(html).toContain('<td class="mono subnet">-<div class="sub">fc00:0:0:2::/64</div></td>');
    expect(html).not.toContain('undefined');
    expect(html).not.toContain('null');
  });

  it('/metrics names each lease by its IPv6 subnet, one series per lease', async () => {
    const { pino } = await import('pino');
    const { startDebugServer } = await import('../../src/debug/server.js');
    const { httpRequest } = await import('../debug/http.js');
    const { parsePrometheusText, sampleValue } = await import('../debug/prom-text.js');
    const { HandState } = await import('../debug/state.js');
    const server = await startDebugServer('127.0.0.1:0', new HandState(v6onlySnapshot()), pino({ level: 'silent' }));
    try {
      const f = parsePrometheusText((await httpRequest(server.address, '/metrics')).body);
      expect(sampleValue(f, 'felt_lease_info', { subnet: 'fc00:0:0:1::/64', public_ip: '0.0.0.0', self: 'true' })).toBe(1);
      expect(sampleValue(f, 'felt_lease_info', { subnet: 'fc00:0:0:2::/64', public_ip: '0.0.0.0', self: 'false' })).toBe(1);
      expect(sampleValue(f, 'felt_node_info', { subnet: 'fc00:0:0:1::/64', public_ip: '0.0.0.0', tun: 'flannel0', network: '' })).toBe(1);
      expect(f.get('felt_lease_ipv6_info')!.samples).toHaveLength(2);
    } finally {
      await server.close();
    }
  });
});

describe('IPv6 peer probes in the lease document, text, HTML and /metrics (no root)', () => {
  it('a dual-stack peer: probe and probe6 apart, "v6" after the IPv4 result in text, an IPv6 block in HTML, family labels on the probe gauges', async () => {
    const { probeStatus } = await import('../debug/state.js');
    const now = Date.now();
    const snap = sampleSnapshot();
    const own = dual('10.244.1.0/24', '192.168.77.11', 'fc00:0:0:1::/64');
    snap.self = { ...snap.self!, lease: own, network6: 'fc00::/48' };
    snap.leases = [own, dual('10.244.2.0/24', '192.168.77.12', 'fc00:0:0:2::/64'), etcdLease('10.244.3.0/24', '192.168.77.13', 20 * HOUR)];
    snap.probes = { ...snap.probes!, ipv6: true, peers: {
      '10.244.2.0/24': snap.probes!.peers['10.244.2.0/24']!,
      '10.244.3.0/24': snap.probes!.peers['10.244.3.0/24']!,
      'fc00:0:0:2::/64': { ...probeStatus('fc00:0:0:2::/64', '192.168.77.12', {
        state: 'unreachable', since: now - 60_000, lastFailureAt: now - 1000, consecutiveFailures: 5, windowSent: 5, windowAnswered: 0,
        evidence: { kind: 'no-route', from: 'fc00:0:0:1::', about: 'probe', at: now - 1000 },
      }), family: 6, target: 'fc00:0:0:2::' },
    } };
    const view = buildLeasesView(snap, true);
    const two = view.leases[1]!;
    expect(two.probe?.state).toBe('reachable');
    expect(two.probe6).toMatchObject({ state: 'unreachable', target: 'fc00:0:0:2::', evidence: { kind: 'no-route', from: 'fc00:0:0:1::' } });
    expect('probe6' in view.leases[2]!).toBe(false);
    expect(view.probes?.peers).toEqual({ reachable: 1, unreachable: 1, unknown: 0, pathMtuFailing: 0 });
    expect(view.probes?.peers6).toEqual({ reachable: 0, unreachable: 1, unknown: 0, pathMtuFailing: 0 });

    const text = formatLeaseTable(view);
    expect(text).toMatch(/probes:\s+ipv4 1 reachable {2}1 unreachable {2}0 unknown {2}ipv6 0 reachable {2}1 unreachable {2}0 unknown/);
    expect(text).toMatch(/10\.244\.2\.0\/24 .*ok 0\.41ms, v6 UNREACHABLE 1m\d\ds \(no-route from fc00:0:0:1::\)\s+ok 1472, v6 \?/);
    const html = renderLeasesPage(view);
    expect(html).toMatch(/<div class="sub fam">IPv6<\/div><span[^>]*>unreachable/);
    expect(html).toContain('Peers reachable · IPv6');

    const { pino } = await import('pino');
    const { startDebugServer } = await import('../../src/debug/server.js');
    const { httpRequest } = await import('../debug/http.js');
    const { parsePrometheusText, sampleValue } = await import('../debug/prom-text.js');
    const { HandState } = await import('../debug/state.js');
    const server = await startDebugServer('127.0.0.1:0', new HandState(snap), pino({ level: 'silent' }));
    try {
      const f = parsePrometheusText((await httpRequest(server.address, '/metrics')).body);
      expect(sampleValue(f, 'felt_probe_peers', { state: 'unreachable', family: 'ipv4' })).toBe(1);
      expect(sampleValue(f, 'felt_probe_peers', { state: 'unreachable', family: 'ipv6' })).toBe(1);
      expect(sampleValue(f, 'felt_probe_peers', { state: 'reachable', family: 'ipv6' })).toBe(0);
      expect(f.get('felt_probe_path_mtu_failing_peers')!.samples).toHaveLength(2);
    } finally {
      await server.close();
    }
  });

  it('an IPv6-only overlay: the IPv6 probe alone, untagged in text; only family="ipv6" series', () => {
    const now = Date.now();
    const snap = v6onlySnapshot();
    snap.probes = { enabled: true, ipv6: true, intervalSeconds: 10, maxRate: 20, timeoutMs: 3000, sent: { small: 3, full: 1 }, replies: 4, lost: 0, errors: 0, peers: {
      'fc00:0:0:2::/64': { subnet: 'fc00:0:0:2::/64', publicIP: '0.0.0.0', family: 6, target: 'fc00:0:0:2::', state: 'reachable', since: now - 5000,
        consecutiveFailures: 0, windowSent: 3, windowAnswered: 3, rttP50Ms: 0.3, mtu: { state: 'ok', size: 1452, checkedAt: now } },
    } };
    const view = buildLeasesView(snap, true);
    expect(view.leases[1]!.probe).toBeNull();
    expect(view.leases[1]!.probe6?.state).toBe('reachable');
    const text = formatLeaseTable(view);
    expect(text).toMatch(/probes:\s+ipv6 1 reachable {2}0 unreachable {2}0 unknown {2}\(every/);
    expect(text).toMatch(/fc00:0:0:2::\/64 .*\s+ok 0\.30ms\s+ok 1452\s/);
    expect(text).not.toMatch(/v6 ok/);
  });
});
