// The debug endpoint of real agents (needs root, network namespaces, /dev/net/tun, the etcd binary
// and `npm run build`): counters move when pods talk, a packet to a subnet nobody leases is counted
// as a `no-route` drop, a lease written to etcd shows up in /leases (and leaves again), /metrics
// parses, and `felt leases` reads both the agent and etcd. Timeouts only catch hangs.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LeaseView, LeasesView } from '../../src/debug/view.js';
import { agentEntry, startAgent, type AgentHandle, type Engine } from '../testbed/agent.js';
import { sleep } from '../testbed/netns.js';
import { repoRoot } from '../testbed/tcp.js';
import { Testbed, type TestbedNode } from '../testbed/testbed.js';
import { parsePrometheusText, sampleValue, type Family } from './prom-text.js';

const ENGINES: Engine[] = ['js', 'native'];
const NATIVE_SOURCE = join(repoRoot(), 'src', 'datapath', 'native.ts');
/** Inside 10.244.0.0/16 but far from what the allocator hands out first; checked unleased below. */
const UNLEASED_HOST = '10.244.251.7';

async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr = '';
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      lastErr = ` (last error: ${(err as Error).message})`;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastErr}`);
    await sleep(100);
  }
}

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [agentEntry(), ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

for (const engine of ENGINES) {
  const suite = `debug endpoint of real agents, engine ${engine} (root, netns, TUN, etcd)`;
  if (engine === 'native' && !existsSync(NATIVE_SOURCE)) {
    describe(suite, () => {
      it('is not available: src/datapath/native.ts does not exist', () => {
        throw new Error(`native engine missing (${NATIVE_SOURCE})`);
      });
    });
    continue;
  }

  describe(suite, () => {
    let tb: Testbed;
    let n1: TestbedNode;
    let n2: TestbedNode;
    let a1: AgentHandle;
    let a2: AgentHandle;

    const leases = (a: AgentHandle) => a.fetchJSON<LeasesView>('/leases');
    const metrics = async (a: AgentHandle): Promise<Map<string, Family>> => {
      const r = await a.fetchText('/metrics');
      expect(r.status).toBe(200);
      return parsePrometheusText(r.body);
    };
    const rowFor = (doc: LeasesView, publicIP: string): LeaseView => {
      const row = doc.leases.find((l) => l.publicIP === publicIP);
      if (!row) throw new Error(`no lease for ${publicIP} in /leases: ${doc.leases.map((l) => `${l.subnet}@${l.publicIP}`).join(', ')}`);
      return row;
    };

    beforeAll(async () => {
      if (!existsSync(agentEntry())) throw new Error(`${agentEntry()} missing: run "npm run build" first`);
      tb = await Testbed.create({ nodes: 2, pods: true, etcd: true });
      [n1, n2] = [tb.node(1), tb.node(2)];
      // iptables rules are not this suite's subject (fresh namespaces forward anyway): leave them out.
      const opts = { engine, extraArgs: ['--iptables-forward-rules=false'] };
      a1 = await startAgent(tb, n1, opts);
      a2 = await startAgent(tb, n2, opts);
      // Both agents know both leases before the tests look at counters.
      for (const a of [a1, a2]) {
        await waitFor(`${a.node.name} to know both leases`, async () => {
          const subnets = (await leases(a)).leases.map((l) => l.subnet);
          return subnets.includes(a1.subnet) && subnets.includes(a2.subnet);
        });
      }
    });

    afterAll(async () => {
      await tb?.destroy();
    });

    it('serves /healthz, /readyz and a /leases document describing this node', async () => {
      expect((await a1.fetchText('/healthz')).status).toBe(200);
      expect((await a1.fetchText('/readyz')).status).toBe(200);
      const doc = await leases(a1);
      expect(doc.ready).toBe(true);
      expect(doc.node).toMatchObject({ subnet: a1.subnet, publicIP: n1.underlayIP, engine, network: '10.244.0.0/16', port: 8285 });
      expect(doc.datapath?.engine).toBe(engine);
      expect(doc.store).toMatchObject({ backend: 'etcd', connected: true });
      const own = rowFor(doc, n1.underlayIP);
      expect(own.self).toBe(true);
      expect(own.subnet).toBe(a1.subnet);
      const peer = rowFor(doc, n2.underlayIP);
      expect(peer.self).toBe(false);
      expect(peer.subnet).toBe(a2.subnet);
      for (const l of [own, peer]) {
        expect(l.source.kind).toBe('etcd');
        if (l.source.kind !== 'etcd') continue;
        expect(l.source.key).toBe(`${tb.etcdPrefix}/subnets/${l.subnet!.replace('/', '-')}`);
        expect(Number(l.source.modRevision)).toBeGreaterThan(0);
        expect(l.source.etcdLeaseId).toMatch(/^\w+$/);
        expect(l.expiresInSeconds).toBeGreaterThan(0);
        expect(l.expiryState).toBe('ok');
      }
    });

    it('counts packets per peer and in total when pods talk', async () => {
      const before1 = await leases(a1);
      const before2 = await leases(a2);
      const m1Before = await metrics(a1);
      const tx = (d: LeasesView, ip: string) => rowFor(d, ip).datapath?.tx.packets ?? 0;
      const rx = (d: LeasesView, ip: string) => rowFor(d, ip).datapath?.rx.packets ?? 0;

      const r = await tb.ping(n1.pods[0]!, n2.pods[0]!.ip, { count: 5, intervalS: 0.1 });
      expect(r.received, r.raw).toBe(5);

      // Echo requests n1 -> n2, replies n2 -> n1: at least five each way on each side.
      const after1 = await leases(a1);
      const after2 = await leases(a2);
      expect(tx(after1, n2.underlayIP) - tx(before1, n2.underlayIP)).toBeGreaterThanOrEqual(5);
      expect(rx(after1, n2.underlayIP) - rx(before1, n2.underlayIP)).toBeGreaterThanOrEqual(5);
      expect(rx(after2, n1.underlayIP) - rx(before2, n1.underlayIP)).toBeGreaterThanOrEqual(5);
      expect(tx(after2, n1.underlayIP) - tx(before2, n1.underlayIP)).toBeGreaterThanOrEqual(5);
      const peerRow = rowFor(after1, n2.underlayIP).datapath!;
      expect(peerRow.tx.bytes).toBeGreaterThanOrEqual(5 * 84); // 84-byte echo packets
      expect(peerRow.lastTxAt).not.toBeNull();
      expect(peerRow.lastRxAt).not.toBeNull();
      expect(after1.datapath!.encap.packets - before1.datapath!.encap.packets).toBeGreaterThanOrEqual(5);
      expect(after1.datapath!.decap.packets - before1.datapath!.decap.packets).toBeGreaterThanOrEqual(5);

      const m1After = await metrics(a1);
      const peerTx = (m: Map<string, Family>) => {
        try {
          return sampleValue(m, 'felt_peer_packets_total', { peer: n2.underlayIP, direction: 'tx' });
        } catch {
          return 0; // no series before the first packet
        }
      };
      expect(peerTx(m1After) - peerTx(m1Before)).toBeGreaterThanOrEqual(5);
      expect(sampleValue(m1After, 'felt_datapath_packets_total', { direction: 'rx' }) - sampleValue(m1Before, 'felt_datapath_packets_total', { direction: 'rx' })).toBeGreaterThanOrEqual(5);
    });

    it('counts a packet to a subnet with no lease as a no-route drop (and answers with ICMP)', async () => {
      const before = await leases(a1);
      expect(before.leases.some((l) => l.subnet === '10.244.251.0/24')).toBe(false);
      const m0 = await metrics(a1);
      const r = await tb.ping(n1.pods[0]!, UNLEASED_HOST, { count: 2, intervalS: 0.2 });
      expect(r.received).toBe(0);
      expect(r.netUnreachable, r.raw).toBe(true);

      const after = await leases(a1);
      expect(after.datapath!.drops.encap['no-route'] - before.datapath!.drops.encap['no-route']).toBeGreaterThanOrEqual(2);
      expect(after.datapath!.dropsTotal.encap - before.datapath!.dropsTotal.encap).toBeGreaterThanOrEqual(2);
      expect(after.datapath!.icmpSent - before.datapath!.icmpSent).toBeGreaterThanOrEqual(1);
      const m1 = await metrics(a1);
      const noRoute = (m: Map<string, Family>) => sampleValue(m, 'felt_datapath_drops_total', { direction: 'tx', reason: 'no-route' });
      expect(noRoute(m1) - noRoute(m0)).toBeGreaterThanOrEqual(2);
      expect((await a1.fetchText('/leases?format=table')).body).toMatch(/drops tx:\s+.*no-route \d+/);
    });

    it('shows a lease written to etcd, with its revision and etcd lease, and drops it when deleted', async () => {
      const client = tb.etcdClient;
      const key = `${tb.etcdPrefix}/subnets/10.244.200.0-24`;
      const eventsBefore = (await leases(a1)).leaseEvents;
      const etcdLease = client.lease(600, { autoKeepAlive: false });
      const leaseId = await etcdLease.grant();
      const put = await etcdLease.put(key).value(JSON.stringify({ PublicIP: '192.168.77.200', PublicIPv6: null })).exec();
      try {
        const row = await waitFor('the new lease in /leases of n1', async () => (await leases(a1)).leases.find((l) => l.subnet === '10.244.200.0/24'));
        expect(row).toMatchObject({ publicIP: '192.168.77.200', self: false, source: { kind: 'etcd', key, modRevision: put.header.revision, etcdLeaseId: leaseId } });
        expect(row.expiresInSeconds).toBeGreaterThan(0);
        expect(row.expiresInSeconds).toBeLessThanOrEqual(600);
        // Nobody has talked to it (an engine may list every route's peer with zero counters).
        expect(row.datapath?.tx.packets ?? 0).toBe(0);
        expect(row.datapath?.rx.packets ?? 0).toBe(0);
        const doc = await leases(a1);
        expect(doc.leaseEvents.added).toBeGreaterThan(eventsBefore.added);
        expect(sampleValue(await metrics(a1), 'felt_leases')).toBe(doc.leaseCount);
        expect(sampleValue(await metrics(a1), 'felt_lease_info', { subnet: '10.244.200.0/24', public_ip: '192.168.77.200', self: 'false' })).toBe(1);
        const page = await a1.fetchText('/leases?format=html');
        expect(page.body).toContain('data-subnet="10.244.200.0/24"');
      } finally {
        await client.delete().key(key);
        await etcdLease.revoke().catch(() => undefined);
      }
      await waitFor('the deleted lease to leave /leases of n1', async () => !(await leases(a1)).leases.some((l) => l.subnet === '10.244.200.0/24'));
      expect((await leases(a1)).leaseEvents.removed).toBeGreaterThan(eventsBefore.removed);
    });

    it('/metrics is valid Prometheus text describing this agent', async () => {
      const m = await metrics(a2);
      expect(sampleValue(m, 'felt_ready')).toBe(1);
      expect(sampleValue(m, 'felt_engine_info', { engine })).toBe(1);
      expect(sampleValue(m, 'felt_node_info', { subnet: a2.subnet, public_ip: n2.underlayIP })).toBe(1);
      expect(sampleValue(m, 'felt_store_connected', { backend: 'etcd' })).toBe(1);
      expect(sampleValue(m, 'felt_lease_info', { subnet: a1.subnet, self: 'false' })).toBe(1);
      expect(sampleValue(m, 'felt_lease_info', { subnet: a2.subnet, self: 'true' })).toBe(1);
      expect(sampleValue(m, 'felt_lease_events_total', { type: 'snapshot' })).toBeGreaterThanOrEqual(1);
      expect(m.get('process_resident_memory_bytes')?.type).toBe('gauge');
    });

    it('felt leases prints the table from the agent and from etcd', async () => {
      const fromAgent = await runCli(['leases', '--agent', `unix:${a1.socketPath}`]);
      expect(fromAgent.stderr).toBe('');
      expect(fromAgent.code).toBe(0);
      expect(fromAgent.stdout).toMatch(new RegExp(`^\\*\\s+${a1.subnet.replace(/\./g, '\\.')}\\s+${n1.underlayIP.replace(/\./g, '\\.')}\\s`, 'm'));
      expect(fromAgent.stdout).toContain(a2.subnet);
      expect(fromAgent.stdout).toContain('TX PKTS');
      mkdirSync(join(repoRoot(), 'test-artifacts'), { recursive: true });
      writeFileSync(join(repoRoot(), 'test-artifacts', `felt-leases-${engine}.txt`), fromAgent.stdout);

      const fromEtcd = await runCli(['leases', '--etcd-endpoints', tb.etcdServer!.unixURL, '--etcd-prefix', tb.etcdPrefix, '--json']);
      expect(fromEtcd.stderr).toBe('');
      expect(fromEtcd.code).toBe(0);
      const doc = JSON.parse(fromEtcd.stdout) as LeasesView;
      expect(doc.leases.map((l) => l.subnet).sort()).toEqual([a1.subnet, a2.subnet].sort());
      expect(doc.datapath).toBeNull();
    });
  });
}
