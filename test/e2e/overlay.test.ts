// End to end (needs root, network namespaces, /dev/net/tun, the etcd binary and `npm run build`):
// real agents in node namespaces, real etcd, pods on cni0 bridges wired by the real CNI plugins
// (flannel delegate -> bridge + host-local, portmap), real packets through flannel0.
// The same suite runs for each engine. There are no timing thresholds apart from the join
// test's 2 s polling deadline (felt's join target); other timeouts only catch hangs.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentEntry, startAgent, type AgentHandle, type Engine } from '../testbed/agent.js';
import { repoRoot, tcpTransfer } from '../testbed/tcp.js';
import { Testbed, type Pod, type TestbedNode } from '../testbed/testbed.js';
import { hostIn, knownSubnets, noRouteDrops, pollReachable, subnetKey, waitFor, watchForNewLease, type NewLease } from './helpers.js';

const ENGINES: Engine[] = ['js', 'native'];
const NATIVE_SOURCE = join(repoRoot(), 'src', 'datapath', 'native.ts');
const TRANSFER_BYTES = 64 * 1024 * 1024;
/** The join target: the new node must answer within this long of its lease appearing. */
const JOIN_DEADLINE_MS = 2_000;

function artifact(name: string, data: unknown): void {
  const dir = join(repoRoot(), 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), `${JSON.stringify(data, null, 2)}\n`);
}

for (const engine of ENGINES) {
  if (engine === 'native' && !existsSync(NATIVE_SOURCE)) {
    describe('overlay, engine native', () => {
      it('is not available: src/datapath/native.ts does not exist, so the native engine was not tested', () => {
        throw new Error(`native engine missing (${NATIVE_SOURCE}); the e2e suite ran for js only`);
      });
    });
    continue;
  }

  describe(`overlay, engine ${engine} (root, netns, TUN, etcd)`, () => {
    let tb: Testbed;
    const agents = new Map<TestbedNode, AgentHandle>();
    const agentOf = (n: TestbedNode): AgentHandle => {
      const a = agents.get(n);
      if (!a) throw new Error(`no agent on ${n.name}`);
      return a;
    };
    const podOf = (n: TestbedNode): Pod => {
      const p = n.pods[0];
      if (!p) throw new Error(`no pod on ${n.name}`);
      return p;
    };
    const start = async (n: TestbedNode): Promise<AgentHandle> => {
      const a = await startAgent(tb, n, { engine });
      agents.set(n, a);
      return a;
    };
    /** Every running agent knows a lease for every subnet in `subnets`. */
    const converged = (subnets: string[]) =>
      waitFor(`every agent to know ${subnets.join(', ')}`, async () => {
        for (const a of agents.values()) {
          if (!a.running()) continue;
          const known = await knownSubnets(a);
          if (!subnets.every((s) => known.includes(s))) return false;
        }
        return true;
      });
    const pingPair = async (from: TestbedNode, to: TestbedNode, count = 3) => {
      const r = await tb.ping(podOf(from), podOf(to).ip, { count, intervalS: 0.1 });
      return { label: `${podOf(from).name} -> ${podOf(to).name} (${podOf(to).ip})`, r };
    };

    beforeAll(async () => {
      if (!existsSync(agentEntry())) throw new Error(`${agentEntry()} missing: run "npm run build" first`);
      tb = await Testbed.create({ nodes: 3, pods: true, cni: true, etcd: true });
      for (const n of tb.nodes) await start(n);
      await converged([...agents.values()].map((a) => a.subnet));
    });

    afterAll(async () => {
      await tb?.destroy();
    });

    it('gives each node its own /24 inside 10.244.0.0/16 and a flannel0 TUN device', async () => {
      const subnets = [...agents.values()].map((a) => a.subnet);
      expect(new Set(subnets).size).toBe(3);
      for (const s of subnets) expect(s).toMatch(/^10\.244\.\d+\.0\/24$/);
      for (const n of tb.nodes) {
        const a = agentOf(n);
        const link = await n.ns.ip(['-4', 'addr', 'show', 'dev', 'flannel0']);
        expect(link, `${n.name}: flannel0`).toContain(`${hostIn(a.subnet, 0)}/32`);
        expect(await n.ns.ip(['route', 'show', '10.244.0.0/16'])).toContain('dev flannel0');
        expect(a.env.FLANNEL_NETWORK).toBe('10.244.0.0/16');
        expect(a.env.FLANNEL_MTU).toBe('1472');
      }
    });

    it('every pair of pods on different nodes pings both ways', async () => {
      const failures: string[] = [];
      for (const from of tb.nodes) {
        for (const to of tb.nodes) {
          if (from === to) continue;
          const { label, r } = await pingPair(from, to);
          console.log(`[${engine}] ${label}: ${r.received}/${r.transmitted}, avg ${r.rtt?.avg ?? '-'} ms`);
          if (r.received !== r.transmitted) failures.push(`${label}: ${r.received}/${r.transmitted}\n${r.raw}`);
        }
      }
      expect(failures).toEqual([]);
    });

    it('a 64 MiB TCP transfer pod to pod arrives with the same sha256', async () => {
      const [n1, n2] = [tb.node(1), tb.node(2)];
      const r = await tcpTransfer(podOf(n2).ns, podOf(n2).ip, podOf(n1).ns, TRANSFER_BYTES);
      const mbits = (r.received.bytes * 8) / (r.elapsedMs / 1000) / 1e6;
      console.log(`[${engine}] 64 MiB ${podOf(n1).name} -> ${podOf(n2).name}: ${r.elapsedMs} ms (${mbits.toFixed(0)} Mbit/s)`);
      expect(r.sent.bytes).toBe(TRANSFER_BYTES);
      expect(r.received.bytes).toBe(TRANSFER_BYTES);
      expect(r.received.sha256).toBe(r.sent.sha256);
    });

    it('a fourth node joining later is reachable from the others within 2 s of its lease appearing', async () => {
      const client = tb.etcdClient;
      const known = new Set(await client.getAll().prefix(`${tb.etcdPrefix}/subnets/`).keys());
      const others = [...tb.nodes];
      const n4 = await tb.addNode();
      const watch = await watchForNewLease(client, tb.etcdPrefix, known);
      let agentStart: Promise<AgentHandle> | undefined;
      let joined: NewLease | undefined;
      try {
        agentStart = start(n4);
        agentStart.catch(() => undefined);
        const lease = await Promise.race([watch.lease, agentStart.then(() => watch.lease)]);
        joined = lease;
        expect(JSON.parse(lease.value)).toMatchObject({ PublicIP: n4.underlayIP });
        // The new node's tunnel address (<lease>.0 on its flannel0) answers as soon as its data
        // path runs and the peers have its route: no pod set-up time is measured.
        const target = hostIn(lease.subnet, 0);
        const deadline = lease.at + JOIN_DEADLINE_MS;
        const results = await Promise.all(others.map((n) => pollReachable(podOf(n).ns, target, lease.at, deadline)));
        const report = others.map((n, i) => ({
          from: podOf(n).name,
          target,
          afterMs: results[i]!.afterMs ?? null,
          withinDeadline: results[i]!.withinDeadline,
          pingProcesses: results[i]!.attempts,
        }));
        console.log(`[${engine}] join: lease ${lease.key} appeared; first successful ping after:`, report.map((x) => `${x.from} ${x.afterMs ?? 'never'} ms`).join(', '));
        artifact(`join-${engine}.json`, { engine, lease, deadlineMs: JOIN_DEADLINE_MS, results: report });
        for (const [i, res] of results.entries()) {
          const why = `${podOf(others[i]!).name} -> ${target}: not answered within ${JOIN_DEADLINE_MS} ms of the lease (first answer: ${res.afterMs ?? 'none'} ms); last ping:\n${res.last?.raw}`;
          expect(res.withinDeadline, why).toBe(true);
        }
      } finally {
        await watch.cancel();
        await agentStart?.catch(() => undefined);
      }
      // Once its pods exist, they are reachable from every other pod and back.
      const a4 = await agentStart!;
      expect(n4.pods.length).toBe(1);
      await converged([...agents.values()].map((a) => a.subnet));
      expect(a4.subnet).toBe(joined!.subnet);
      for (const n of others) {
        for (const [from, to] of [[n, n4], [n4, n]] as const) {
          const { label, r } = await pingPair(from, to);
          expect(r.received, `${label}\n${r.raw}`).toBe(r.transmitted);
        }
      }
    });

    it('after SIGTERM flannel0 and its route are gone but the lease stays in etcd; a restarted agent keeps its subnet', async () => {
      const n2 = tb.node(2);
      const before = agentOf(n2);
      const key = `${tb.etcdPrefix}/subnets/${subnetKey(before.subnet)}`;
      const exit = await before.stop('SIGTERM');
      expect(exit, `agent exit after SIGTERM; log ${before.logFile}`).toEqual({ code: 0, signal: null });

      const links = await n2.ns.ip(['-o', 'link', 'show']);
      expect(links).not.toMatch(/\bflannel0\b/);
      expect((await n2.ns.ip(['route', 'show', '10.244.0.0/16'])).trim()).toBe('');
      const value = await tb.etcdClient.get(key).string();
      expect(value, `lease key ${key} after SIGTERM`).not.toBeNull();
      expect(JSON.parse(value!)).toMatchObject({ PublicIP: n2.underlayIP });

      const after = await start(n2);
      expect(after.subnet).toBe(before.subnet);
      expect(after.pid).not.toBe(before.pid);
      // Ready means routed: pods reach the restarted node at once, and it reaches them.
      for (const n of tb.nodes.filter((x) => x !== n2)) {
        for (const [from, to] of [[n2, n], [n, n2]] as const) {
          const { label, r } = await pingPair(from, to);
          expect(r.received, `${label} right after the restart\n${r.raw}`).toBe(r.transmitted);
        }
      }
    });

    it("deleting a node's lease key makes its peers answer traffic to that subnet with net-unreachable", async () => {
      const [n1, n2, n3] = [tb.node(1), tb.node(2), tb.node(3)];
      const victim = agentOf(n3);
      const key = `${tb.etcdPrefix}/subnets/${subnetKey(victim.subnet)}`;
      // Stop the victim first: a running agent that loses its lease takes one again at once,
      // which would close the window this test looks through. The peers are what is tested.
      await victim.stop('SIGTERM');
      const dropsBefore = await noRouteDrops(agentOf(n1));
      expect(await tb.etcdClient.delete().key(key).exec()).toBeTruthy();
      expect(await tb.etcdClient.get(key).string()).toBeNull();

      for (const from of [n1, n2]) {
        await waitFor(`${from.name} to forget ${victim.subnet}`, async () => !(await knownSubnets(agentOf(from))).includes(victim.subnet), 30_000);
        const r = await tb.ping(podOf(from), podOf(n3).ip, { count: 1, waitS: 2 });
        console.log(`[${engine}] ${podOf(from).name} -> ${podOf(n3).ip} after the lease was deleted:\n${r.raw.trim()}`);
        expect(r.ok).toBe(false);
        expect(r.netUnreachable, r.raw).toBe(true);
        expect(r.raw).toContain(`From ${hostIn(agentOf(from).subnet, 0)}`);
      }
      const dropsAfter = await noRouteDrops(agentOf(n1));
      expect(dropsAfter).toBeGreaterThan(dropsBefore);
    });
  });
}
