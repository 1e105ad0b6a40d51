// IPv6-only overlay end to end (needs root, network namespaces, /dev/net/tun, the etcd binary and
// `npm run build`): three nodes, a real etcd holding {"EnableIPv4": false, "EnableIPv6": true, ...},
// real agents, pods wired by the real CNI plugins from subnet.env (an IPv6 address only). For each
// engine over an IPv6-only underlay, and for the native engine over an IPv4 underlay: the lease keys
// are flannel's "0.0.0.0-0&<ipv6>-<len>", subnet.env is what flannel's WriteSubnetFile writes without
// EnableIPv4, every pod pings every other pod over IPv6, 64 MiB cross over TCP/IPv6 with the same sha256,
// the agents' background probes watch each peer's IPv6 tunnel address, and IPv4 has no way in: no IPv4 route or address on flannel0 or in the pods, and IPv4 a route added
// by hand sends into flannel0 is dropped as not-ip.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DoctorReport } from '../../src/doctor/types.js';
import { leaseValue } from '../../src/lease/etcd/keys.js';
import { agentEntry, startAgent, type AgentHandle, type Engine } from '../testbed/agent.js';
import { tcpTransfer } from '../testbed/tcp.js';
import { Testbed, type Pod, type UnderlayFamily } from '../testbed/testbed.js';
import { leasesDoc, podOf, waitFor } from './helpers.js';

const NETWORK6 = 'fc00::/48';
const V6_ONLY_CONFIG = { EnableIPv4: false, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'udp' } };
const TRANSFER_BYTES = 64 * 1024 * 1024;
const UNDERLAY_MTU = 1500;
// The IPv4-underlay run also masquerades (--ip-masq): its rules must be ip6tables ones only.
const RUNS: Array<{ engine: Engine; underlay: UnderlayFamily; masq: boolean }> = [
  { engine: 'js', underlay: 'ipv6', masq: false },
  { engine: 'native', underlay: 'ipv6', masq: false },
  { engine: 'native', underlay: 'ipv4', masq: true },
];

/** `fc00:0:0:5::/64` -> `fc00:0:0:5::<host>`. */
function host6(subnet6: string, host: number): string {
  return subnet6.replace(/::(\d*)\/\d+$/, `::${host}`);
}

/** The IPv6 subnets an agent knows a lease for (its own included). */
async function knownSubnets6(agent: AgentHandle): Promise<string[]> {
  return (await leasesDoc(agent)).leases.map((l) => String((l as { subnet6?: unknown }).subnet6)).sort();
}

async function notIpDrops(agent: AgentHandle): Promise<number> {
  const n = (await leasesDoc(agent)).datapath?.drops?.encap?.['not-ip'];
  if (typeof n !== 'number') throw new Error(`/leases of ${agent.node.name} has no datapath.drops.encap["not-ip"]`);
  return n;
}

for (const { engine, underlay, masq } of RUNS) {
  const label = `${engine}, ${underlay} underlay`;
  describe(`IPv6-only overlay, engine ${engine}, ${underlay === 'ipv6' ? 'IPv6-only' : 'IPv4'} underlay (root, netns, TUN, etcd)`, () => {
    let tb: Testbed;
    const agents: AgentHandle[] = [];

    beforeAll(async () => {
      if (!existsSync(agentEntry())) throw new Error(`${agentEntry()} missing: run "npm run build" first`);
      tb = await Testbed.create({ nodes: 3, pods: true, cni: true, etcd: true, underlay, networkConfig: V6_ONLY_CONFIG });
      for (const n of tb.nodes) agents.push(await startAgent(tb, n, { engine, extraArgs: masq ? ['--ip-masq'] : [] }));
      const all = agents.map((a) => a.subnet6!);
      await waitFor(`every agent to know ${all.join(', ')}`, async () => {
        for (const a of agents) {
          const known = await knownSubnets6(a);
          if (!all.every((s) => known.includes(s))) return false;
        }
        return true;
      });
    });

    afterAll(async () => {
      await tb?.destroy();
    });

    it("leases only a /64 under flannel's 0.0.0.0-0&<ipv6> key; subnet.env has no IPv4 lines", async () => {
      const kvs = await tb.etcdClient.getAll().prefix(`${tb.etcdPrefix}/subnets/`).strings();
      const tunMtu = UNDERLAY_MTU - (underlay === 'ipv6' ? 48 : 28);
      const want: Record<string, string> = {};
      for (const a of agents) {
        const n = a.node;
        expect(a.subnet6, `${n.name}: subnet.env ${JSON.stringify(a.env)}`).toMatch(/^fc00:[0-9a-f:]*\/64$/);
        // With felt's BackendV6Data ({"CarriesIPv6":true}), pinned byte for byte in the unit tests.
        const value = underlay === 'ipv6' ? leaseValue('0.0.0.0', n.underlayIPv6, true) : leaseValue(n.underlayIPv4!, undefined, true);
        want[`${tb.etcdPrefix}/subnets/0.0.0.0-0&${a.subnet6!.replace('/', '-')}`] = value;
        const text = readFileSync(join(tb.workDir, n.name, 'subnet.env'), 'utf8');
        expect(text).toBe(`FLANNEL_IPV6_NETWORK=${NETWORK6}\nFLANNEL_IPV6_SUBNET=${host6(a.subnet6!, 1)}/64\nFLANNEL_MTU=${tunMtu}\nFLANNEL_IPMASQ=${masq}\n`);
      }
      expect(kvs).toEqual(want);
    });

    it('puts only IPv6 on flannel0, and the pods get only an IPv6 address', async () => {
      for (const a of agents) {
        const n = a.node;
        expect(await n.ns.ip(['-6', 'addr', 'show', 'dev', 'flannel0'])).toContain(`${a.subnet6!.replace(/\/64$/, '')}/128`);
        expect(await n.ns.ip(['-6', 'route', 'show', NETWORK6])).toContain('dev flannel0');
        expect((await n.ns.ip(['-4', 'addr', 'show', 'dev', 'flannel0'])).trim()).toBe('');
        expect((await n.ns.ip(['-4', 'route', 'show', 'dev', 'flannel0'])).trim()).toBe('');
        const pod = podOf(n);
        expect(pod.ip6).toBe(host6(a.subnet6!, 2));
        expect((await pod.ns.ip(['-4', 'addr', 'show', 'dev', 'eth0'])).trim()).toBe('');
        const doc = await leasesDoc(a);
        expect(doc.leases.map((l) => l.subnet)).toEqual([null, null, null]);
      }
    });

    it(`writes ip6tables rules only (FELT-FWD${masq ? ', FELT-POSTRTG' : ''}), no iptables ones`, async () => {
      for (const a of agents) {
        const v4 = (await a.node.ns.exec(['iptables-save'])).stdout;
        const v6 = (await a.node.ns.exec(['ip6tables-save'])).stdout;
        expect(v4, `${a.node.name} iptables-save`).not.toMatch(/FELT-/);
        expect(v6, `${a.node.name} ip6tables-save`).toMatch(/-A FELT-FWD -s fc00::\/48 .*-j ACCEPT/);
        if (masq) expect(v6).toContain(':FELT-POSTRTG');
        else expect(v6).not.toContain('FELT-POSTRTG');
      }
    });

    it('every pod pings every other pod over IPv6', async () => {
      const failures: string[] = [];
      for (const from of tb.nodes) {
        for (const to of tb.nodes) {
          if (from === to) continue;
          const [src, dst] = [podOf(from), podOf(to)];
          const r = await tb.ping(src, dst.ip6!, { count: 3, intervalS: 0.1, waitS: 2, family: 6 });
          console.log(`[${label}] ping -6 ${src.name} -> ${dst.name} (${dst.ip6}): ${r.received}/${r.transmitted}, avg ${r.rtt?.avg ?? '-'} ms`);
          if (r.received !== r.transmitted || r.transmitted === 0) failures.push(`${src.name} -> ${dst.ip6}: ${r.received}/${r.transmitted}\n${r.raw}`);
        }
      }
      expect(failures).toEqual([]);
    });

    it("the agents' background probes are IPv6 ones: each peer's IPv6 tunnel address reachable, no IPv4 probe; the peer's IPv6Network route removed, unreachable, and back", async () => {
      const a1 = agents[0]!;
      const peer6 = (doc: Awaited<ReturnType<typeof leasesDoc>>, subnet6: string) => (doc.leases as Array<Record<string, any>>).find((l) => l.subnet6 === subnet6);
      for (const a of agents) {
        await waitFor(`${a.node.name}'s IPv6 probes of both peers to pass`, async () => {
          const doc = await leasesDoc(a);
          return agents.filter((o) => o !== a).every((o) => peer6(doc, o.subnet6!)?.probe6?.state === 'reachable');
        });
        const doc = await leasesDoc(a);
        for (const o of agents.filter((x) => x !== a)) {
          const l = peer6(doc, o.subnet6!)!;
          expect(l.probe, `${a.node.name} -> ${o.node.name}`).toBeNull();
          expect(l.probe6.target).toBe(o.subnet6!.split('/')[0]);
        }
        expect((doc as Record<string, any>).probes.peers6).toMatchObject({ reachable: 2, unreachable: 0 });
      }
      const table = (await a1.fetchText('/leases?format=table')).body;
      expect(table).toMatch(/probes:\s+ipv6 2 reachable {2}0 unreachable/);
      expect(table).not.toMatch(/v6 ok/);

      const n2 = tb.node(2);
      const target = agents[1]!.subnet6!;
      const route = (await n2.ns.ip(['-6', 'route', 'show', NETWORK6])).trim();
      await n2.ns.ip(['-6', 'route', 'del', NETWORK6, 'dev', 'flannel0']);
      try {
        const broken = await waitFor(`${a1.node.name}'s IPv6 probe of ${n2.name} to turn unreachable`, async () => {
          const l = peer6(await leasesDoc(a1), target);
          return l?.probe6?.state === 'unreachable' ? l : undefined;
        });
        expect(broken.probe6.consecutiveFailures).toBeGreaterThanOrEqual(3);
        // The third node is untouched.
        expect(peer6(await leasesDoc(a1), agents[2]!.subnet6!)?.probe6?.state).toBe('reachable');
      } finally {
        await n2.ns.ip(['-6', 'route', 'replace', ...route.split(/\s+/)]);
      }
      await waitFor(`${a1.node.name}'s IPv6 probe of ${n2.name} to pass again`, async () => peer6(await leasesDoc(a1), target)?.probe6?.state === 'reachable');
    });

    it('64 MiB over TCP/IPv6 pod to pod arrive with the same sha256', async () => {
      const [from, to]: Pod[] = [podOf(tb.node(1)), podOf(tb.node(2))];
      const r = await tcpTransfer(to.ns, to.ip6!, from.ns, TRANSFER_BYTES);
      const mbits = (r.received.bytes * 8) / (r.elapsedMs / 1000) / 1e6;
      console.log(`[${label}] 64 MiB TCP/IPv6 ${from.name} -> ${to.name}: ${r.elapsedMs} ms (${mbits.toFixed(0)} Mbit/s)`);
      expect(r.sent.bytes).toBe(TRANSFER_BYTES);
      expect(r.received.bytes).toBe(TRANSFER_BYTES);
      expect(r.received.sha256).toBe(r.sent.sha256);
    });

    it('IPv4 has no way in: a pod has no IPv4 route, and IPv4 routed into flannel0 by hand is dropped as not-ip', async () => {
      const pod = podOf(tb.node(1));
      const fromPod = await tb.ping(pod, '10.244.2.2', { count: 1, waitS: 1 });
      expect(fromPod.received, fromPod.raw).toBe(0);
      const n = tb.node(1);
      const agent = agents[0]!;
      await n.ns.ip(['route', 'add', '10.99.0.0/16', 'dev', 'flannel0']);
      try {
        const before = await notIpDrops(agent);
        const r = await tb.ping(n, '10.99.0.1', { count: 2, intervalS: 0.1, waitS: 1 });
        expect(r.received, r.raw).toBe(0);
        await waitFor('the not-ip drops', async () => (await notIpDrops(agent)) >= before + 2);
        expect(await notIpDrops(agent)).toBe(before + 2);
      } finally {
        await n.ns.ip(['route', 'del', '10.99.0.0/16', 'dev', 'flannel0']);
      }
      for (const a of agents) expect(a.running(), `agent on ${a.node.name}`).toBe(true);
    });

    it('leases with an IPv4 subnet (IPv4-only or dual-stack keys) are not routed in an IPv6-only cluster', async () => {
      const lease = tb.etcdClient.lease(3600);
      try {
        await lease.put(`${tb.etcdPrefix}/subnets/10.244.9.0-24`).value(leaseValue('192.168.77.99'));
        await lease.put(`${tb.etcdPrefix}/subnets/10.244.8.0-24&fc00:0:0:ff::-64`).value(leaseValue('0.0.0.0', 'fd77::99'));
        // A valid IPv6-only lease written after them: once it is known, the two before were seen too.
        await lease.put(`${tb.etcdPrefix}/subnets/0.0.0.0-0&fc00:0:0:fe::-64`).value(leaseValue('0.0.0.0', 'fd77::98'));
        await waitFor('every agent to know fc00:0:0:fe::/64', async () => {
          for (const a of agents) if (!(await knownSubnets6(a)).includes('fc00:0:0:fe::/64')) return false;
          return true;
        });
        for (const a of agents) {
          expect(await knownSubnets6(a)).not.toContain('fc00:0:0:ff::/64');
          expect((await leasesDoc(a)).leases).toHaveLength(4);
          expect(a.logs()).toMatch(/has an IPv4 subnet but the network config has EnableIPv4=false/);
        }
        const r = await tb.ping(podOf(tb.node(1)), 'fc00:0:0:ff::2', { count: 1, waitS: 1, family: 6 });
        expect(r.received, r.raw).toBe(0);
      } finally {
        await lease.revoke().catch(() => undefined);
      }
    });

    it('felt doctor: exit 0, the IPv4 checks skipped with a note, the IPv6 tunnel, the lease and the IPv6 peer probes ok', async () => {
      const n = tb.node(1);
      // The test before put leases of unreachable nodes and revoked them: the agent must have let go.
      await waitFor('the agent to hold only the three real leases', async () => (await leasesDoc(agents[0]!)).leases.length === 3);
      const r = await n.ns.exec([
        process.execPath, agentEntry(), 'doctor', '--json', '--timeout', '2',
        '--agent', `unix:${agents[0]!.socketPath}`,
        '--etcd-endpoints', tb.etcdClientURL, '--etcd-prefix', tb.etcdPrefix,
        '--subnet-file', join(tb.workDir, n.name, 'subnet.env'),
      ], { check: false, timeoutMs: 60_000 });
      const report = JSON.parse(r.stdout) as DoctorReport;
      const verdicts = Object.fromEntries(report.checks.map((c) => [c.id, c.verdict]));
      expect(verdicts, r.stdout).toEqual({
        'tun-device': 'ok', agent: 'ok', 'tun-interface': 'skip', routes: 'skip', 'ip-forward': 'skip', ipv6: 'ok', 'rp-filter': 'skip',
        forward: 'skip', 'udp-port': 'ok', 'underlay-mtu': 'ok', 'own-lease': 'ok', store: 'ok', peers: 'ok',
      });
      // Both peers probed at their IPv6 tunnel addresses (ICMPv6 through the tunnel), the underlay pinged over its family.
      const over6 = underlay === 'ipv6' ? 2 : 0;
      expect(report.checks.find((c) => c.id === 'peers')?.summary, r.stdout).toMatch(new RegExp(`^2 of 2 peers answer through the tunnel .*; IPv6 too: 2 IPv6 tunnel addresses, ${over6} over an IPv6 underlay$`));
      expect(report.checks.find((c) => c.id === 'underlay-mtu')?.summary, r.stdout).toMatch(underlay === 'ipv6' ? /TUN MTU 1452 \+ 48 = 1500 fits/ : /TUN MTU 1472 \+ 28 = 1500 fits/);
      expect(report.checks.find((c) => c.id === 'routes')?.summary).toMatch(/IPv6-only overlay/);
      expect(report.node.subnet).toBe(agents[0]!.subnet6);
      expect(r.code, r.stdout).toBe(0);
    });
  });
}
