// Dual-stack end to end (needs root, network namespaces, /dev/net/tun, the etcd binary and
// `npm run build`): three nodes, a real etcd holding a dual-stack network config, real agents,
// pods wired by the real CNI plugins from subnet.env with an IPv4 and an IPv6 address each.
// For each engine, over an IPv4 underlay and over an IPv6-only underlay: every pod pings every
// other pod in both families, and 64 MiB cross the overlay over TCP/IPv4 and TCP/IPv6 with the same
// sha256 at both ends. Beside them: a stock flannel node (IPv4-only lease, a plain UDP endpoint)
// in the same dual-stack cluster exchanges IPv4 traffic and is never sent IPv6 (on the IPv6-only
// underlay, where it shares no family with the nodes, its traffic is dropped as no-underlay); and an IPv4-only
// cluster's etcd keys and subnet.env are byte for byte what they were before dual-stack.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leaseValue } from '../../src/lease/etcd/keys.js';
import { agentEntry, startAgent, type AgentHandle, type Engine } from '../testbed/agent.js';
import { repoRoot, tcpTransfer } from '../testbed/tcp.js';
import { Testbed, type Pod, type TestbedNode, type UnderlayFamily } from '../testbed/testbed.js';
import { knownSubnets, leasesDoc, podOf, waitFor } from './helpers.js';
import { readJsonLines } from '../support/udp.js';

const ENGINES: Engine[] = ['js', 'native'];
const UNDERLAYS: UnderlayFamily[] = ['ipv4', 'ipv6'];
const TRANSFER_BYTES = 64 * 1024 * 1024;
const NETWORK6 = 'fc00::/48';
const DUAL_STACK_CONFIG = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'udp' } };
const UNDERLAY_MTU = 1500;
/** The stock flannel node's lease, and the pod address its stand-in answers pings for. */
const STOCK_SUBNET = '10.244.200.0/24';
const STOCK_POD = '10.244.200.2';
/** The IPv6 subnet a stock flannel node takes in a dual-stack network (its tunnel cannot carry it). */
const STOCK_SUBNET6 = 'fc00:0:0:c8::/64';
const PEER_FIXTURE = join(repoRoot(), 'test', 'e2e', 'fixtures', 'flannel-v4-peer.mjs');

/** `fc00:0:0:5::1/64` -> the address with its host part replaced by `host` (`fc00:0:0:5::<host>`). */
function host6(subnet6: string, host: number): string {
  return subnet6.replace(/::(\d*)\/\d+$/, `::${host}`);
}

/** Every running agent knows a lease for every subnet in `subnets`. */
function converged(agents: AgentHandle[], subnets: string[]): Promise<true> {
  return waitFor(`every agent to know ${subnets.join(', ')}`, async () => {
    for (const a of agents) {
      const known = await knownSubnets(a);
      if (!subnets.every((s) => known.includes(s))) return false;
    }
    return true;
  });
}

async function pingAllPairs(tb: Testbed, nodes: TestbedNode[], label: string): Promise<string[]> {
  const failures: string[] = [];
  for (const from of nodes) {
    for (const to of nodes) {
      if (from === to) continue;
      const [src, dst] = [podOf(from), podOf(to)];
      for (const [family, target] of [[4, dst.ip], [6, dst.ip6]] as const) {
        if (!target) {
          failures.push(`${dst.name} has no IPv${family} address`);
          continue;
        }
        const r = await tb.ping(src, target, { count: 3, intervalS: 0.1, waitS: 2, family });
        console.log(`[${label}] ping -${family} ${src.name} -> ${dst.name} (${target}): ${r.received}/${r.transmitted}, avg ${r.rtt?.avg ?? '-'} ms`);
        if (r.received !== r.transmitted || r.transmitted === 0) failures.push(`-${family} ${src.name} -> ${target}: ${r.received}/${r.transmitted}\n${r.raw}`);
      }
    }
  }
  return failures;
}

for (const underlay of UNDERLAYS) {
  for (const engine of ENGINES) {
    const label = `${engine}, ${underlay} underlay`;
    describe(`dual-stack overlay, engine ${engine}, ${underlay === 'ipv4' ? 'IPv4' : 'IPv6-only'} underlay (root, netns, TUN, etcd)`, () => {
      let tb: Testbed;
      const agents: AgentHandle[] = [];

      beforeAll(async () => {
        if (!existsSync(agentEntry())) throw new Error(`${agentEntry()} missing: run "npm run build" first`);
        tb = await Testbed.create({ nodes: 3, pods: true, cni: true, etcd: true, underlay, networkConfig: DUAL_STACK_CONFIG });
        for (const n of tb.nodes) agents.push(await startAgent(tb, n, { engine }));
        await converged(agents, agents.map((a) => a.subnet));
      });

      afterAll(async () => {
        await tb?.destroy();
      });

      it('each node leases a /24 and a /64 under one key, writes FLANNEL_IPV6_* and puts both tunnel addresses on flannel0', async () => {
        const keys = await tb.etcdClient.getAll().prefix(`${tb.etcdPrefix}/subnets/`).strings();
        const tunMtu = UNDERLAY_MTU - (underlay === 'ipv6' ? 48 : 28);
        for (const a of agents) {
          const n = a.node;
          expect(a.subnet6, `${n.name}: subnet.env ${JSON.stringify(a.env)}`).toMatch(/^fc00:[0-9a-f:]*\/64$/);
          expect(a.env.FLANNEL_IPV6_NETWORK).toBe(NETWORK6);
          expect(a.env.FLANNEL_IPV6_SUBNET).toBe(host6(a.subnet6!, 1).concat('/64'));
          expect(a.env.FLANNEL_MTU).toBe(String(tunMtu));
          const key = `${tb.etcdPrefix}/subnets/${a.subnet.replace('/', '-')}&${a.subnet6!.replace('/', '-')}`;
          expect(Object.keys(keys), `${n.name}'s lease key`).toContain(key);
          const value = JSON.parse(keys[key]!) as { PublicIP?: string | null; PublicIPv6?: string | null };
          if (underlay === 'ipv6') expect(value.PublicIPv6).toBe(n.underlayIPv6);
          else expect(value.PublicIP).toBe(n.underlayIPv4);
          expect(await n.ns.ip(['-6', 'addr', 'show', 'dev', 'flannel0'])).toContain(`${a.subnet6!.replace(/\/64$/, '')}/128`);
          expect(await n.ns.ip(['-6', 'route', 'show', NETWORK6])).toContain('dev flannel0');
          expect(podOf(n).ip6, `${n.name}'s pod`).toBe(host6(a.subnet6!, 2));
        }
      });

      it('every pod pings every other pod over IPv4 and IPv6', async () => {
        expect(await pingAllPairs(tb, tb.nodes, label)).toEqual([]);
      });

      for (const family of [4, 6] as const) {
        it(`64 MiB over TCP/IPv${family} pod to pod arrive with the same sha256`, async () => {
          const [from, to]: Pod[] = [podOf(tb.node(1)), podOf(tb.node(2))];
          const serverIP = family === 4 ? to.ip : to.ip6;
          if (!serverIP) throw new Error(`${to.name} has no IPv${family} address`);
          const r = await tcpTransfer(to.ns, serverIP, from.ns, TRANSFER_BYTES);
          const mbits = (r.received.bytes * 8) / (r.elapsedMs / 1000) / 1e6;
          console.log(`[${label}] 64 MiB TCP/IPv${family} ${from.name} -> ${to.name}: ${r.elapsedMs} ms (${mbits.toFixed(0)} Mbit/s)`);
          expect(r.sent.bytes).toBe(TRANSFER_BYTES);
          expect(r.received.bytes).toBe(TRANSFER_BYTES);
          expect(r.received.sha256).toBe(r.sent.sha256);
        });
      }

      if (underlay === 'ipv6') {
        it('a stock flannel IPv4-only lease shares no underlay family with these nodes: its traffic is dropped as no-underlay, IPv6 keeps flowing', async () => {
          const lease = tb.etcdClient.lease(3600);
          try {
            await lease.put(`${tb.etcdPrefix}/subnets/${STOCK_SUBNET.replace('/', '-')}`).value(leaseValue('192.168.77.99'));
            await converged(agents, [STOCK_SUBNET]);
            const before = await noUnderlayDrops(agents[0]!);
            const r = await tb.ping(podOf(tb.node(1)), STOCK_POD, { count: 2, intervalS: 0.1, waitS: 1 });
            expect(r.received, r.raw).toBe(0);
            await waitFor('the no-underlay drops to be counted', async () => (await noUnderlayDrops(agents[0]!)) >= before + 2);
            expect(await pingAllPairs(tb, tb.nodes, `${label}, stock lease present`)).toEqual([]);
            for (const a of agents) expect(a.running(), `agent on ${a.node.name}`).toBe(true);
          } finally {
            await lease.revoke().catch(() => undefined);
          }
        });
      }

      if (underlay === 'ipv4') {
        it('a stock flannel node (dual-stack lease without felt\'s BackendV6Data, plain UDP endpoint) exchanges IPv4 traffic and is never sent IPv6', async () => {
          const stock: TestbedNode = await tb.addNode();
          const peer = await startStockPeer(stock);
          const lease = tb.etcdClient.lease(3600);
          try {
            // What stock flannel writes given EnableIPv6: an IPv6 subnet too, PublicIPv6 null, no BackendV6Data.
            const key = `${STOCK_SUBNET.replace('/', '-')}&${STOCK_SUBNET6.replace('/', '-')}`;
            await lease.put(`${tb.etcdPrefix}/subnets/${key}`).value(leaseValue(stock.underlayIP));
            await converged(agents, [STOCK_SUBNET]);
            for (const n of tb.nodes.filter((x) => x !== stock)) {
              const r = await tb.ping(podOf(n), STOCK_POD, { count: 3, intervalS: 0.1, waitS: 2 });
              expect(r.received, `${podOf(n).name} -> stock node ${STOCK_POD}\n${r.raw}`).toBe(3);
            }
            // IPv6 keeps flowing between the felt nodes meanwhile, and an IPv6 destination without a
            // lease is not handed to anyone.
            expect(await pingAllPairs(tb, tb.nodes.filter((x) => x !== stock), `${label}, stock peer present`)).toEqual([]);
            const lost = await tb.ping(podOf(tb.node(1)), 'fc00:0:ffff::2', { count: 1, waitS: 1, family: 6 });
            expect(lost.ok).toBe(false);
            // The stock node's IPv6 subnet has no route: the pod hears "unreachable" at once.
            const toStock6 = await tb.ping(podOf(tb.node(1)), host6(STOCK_SUBNET6, 2), { count: 2, intervalS: 0.1, waitS: 1, family: 6 });
            expect(toStock6.ok).toBe(false);
            expect(toStock6.raw).toMatch(/unreachable/i);
            const view = await leasesDoc(agents[0]!);
            expect(view.leases.find((l) => l.subnet === STOCK_SUBNET)).toMatchObject({ subnet6: STOCK_SUBNET6, ipv6Carried: false });
            const got = peer.records();
            console.log(`[${label}] stock node got ${got.length} datagrams: versions ${[...new Set(got.map((g) => g.version))].join(', ')}`);
            expect(got.filter((g) => g.replied).length).toBeGreaterThanOrEqual(6);
            expect(got.filter((g) => g.version !== 4)).toEqual([]);
            const senders = new Set(got.map((g) => g.from));
            for (const n of tb.nodes.filter((x) => x !== stock)) expect(senders).toContain(n.underlayIPv4);
          } finally {
            await lease.revoke().catch(() => undefined);
            peer.stop();
          }
        });
      }
    });
  }
}

/** The encap `no-underlay` drop counter of an agent's data path. */
async function noUnderlayDrops(agent: AgentHandle): Promise<number> {
  const doc = await leasesDoc(agent);
  const n = doc.datapath?.drops?.encap?.['no-underlay'];
  if (typeof n !== 'number') throw new Error(`/leases of ${agent.node.name} has no datapath.drops.encap["no-underlay"]`);
  return n;
}

interface PeerRecord {
  from: string;
  version: number | null;
  replied: boolean;
}

/** The flannel stand-in on `node`, bound to its underlay address on UDP 8285. */
async function startStockPeer(node: TestbedNode): Promise<{ records: () => PeerRecord[]; stop: () => void }> {
  const child: ChildProcess = node.ns.spawn([process.execPath, PEER_FIXTURE, node.underlayIP, '8285', STOCK_POD], { stdio: ['ignore', 'pipe', 'pipe'] });
  const records: PeerRecord[] = [];
  await readJsonLines(child, `stock peer on ${node.name}`, (obj) => records.push(obj as unknown as PeerRecord));
  return { records: () => [...records], stop: () => void (child.exitCode === null && child.kill('SIGKILL')) };
}

describe('IPv4-only cluster: etcd keys and subnet.env exactly as before dual-stack (root, netns, TUN, etcd)', () => {
  let tb: Testbed;
  const agents: AgentHandle[] = [];

  beforeAll(async () => {
    tb = await Testbed.create({ nodes: 2, etcd: true });
    for (const n of tb.nodes) agents.push(await startAgent(tb, n, { engine: 'native' }));
  });

  afterAll(async () => {
    await tb?.destroy();
  });

  it('keys are <a.b.c.d>-24 with {"PublicIP":...,"PublicIPv6":null}; subnet.env has the four IPv4 lines only', async () => {
    const kvs = await tb.etcdClient.getAll().prefix(`${tb.etcdPrefix}/subnets/`).strings();
    const want = Object.fromEntries(agents.map((a) => [`${tb.etcdPrefix}/subnets/${a.subnet.replace('/', '-')}`, leaseValue(a.node.underlayIP)]));
    expect(kvs).toEqual(want);
    for (const a of agents) {
      const text = readFileSync(join(tb.workDir, a.node.name, 'subnet.env'), 'utf8');
      expect(text).toBe(`FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${a.subnet.replace(/\.0\/24$/, '.1/24')}\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n`);
      expect((await a.node.ns.ip(['-6', 'addr', 'show', 'dev', 'flannel0', 'scope', 'global'])).trim()).toBe('');
    }
  });
});
