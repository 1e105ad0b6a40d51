// End to end in Kubernetes mode (needs root, network namespaces, /dev/net/tun, iptables and
// `npm run build`): three testbed nodes run `felt run --kube-subnet-mgr --ip-masq` against the fake
// API server, which runs in the hub namespace at 192.168.77.1:6443 (no real API server can be
// installed here; see test/testbed/fake-apiserver.ts). The test process drives it over a unix
// socket. Subnets come from the nodes' podCIDRs; pods ping across nodes through felt; the watch
// carries node adds and deletes (and a 410 relist) to every agent; --ip-masq masquerades pod
// traffic leaving the overlay. (The testbed also starts etcd: startAgent always passes
// --etcd-endpoints, which Kubernetes mode ignores.)
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentEntry, startAgent, type AgentHandle, type Engine } from '../testbed/agent.js';
import type { FakeApiControl, JsonObject } from '../testbed/fake-apiserver.js';
import { HUB_IP, Testbed, type Pod, type TestbedNode } from '../testbed/testbed.js';
import { FAKE_API_ENTRY, nodeObject, podCIDR, startFakeApi } from '../support/kube-api.js';
import { sendOneDatagram, sourceReceiver } from '../support/udp-source.js';
import { knownSubnets, waitFor } from './helpers.js';

const PREFIX = 'flannel.alpha.coreos.com/';
const ENGINE: Engine = 'native';

describe(`Kubernetes mode end to end, engine ${ENGINE} (root, netns, TUN, iptables)`, () => {
  let tb: Testbed;
  let api: { ctl: FakeApiControl; url: string };
  let netConf = '';
  const agents = new Map<string, AgentHandle>();

  const start = async (n: TestbedNode): Promise<AgentHandle> => {
    const a = await startAgent(tb, n, {
      engine: ENGINE,
      extraArgs: ['--kube-subnet-mgr', '--kube-api-url', api.url, '--net-config-path', netConf, '--ip-masq'],
      env: { NODE_NAME: n.name },
    });
    agents.set(n.name, a);
    return a;
  };
  const podOf = (n: TestbedNode): Pod => {
    const p = n.pods[0];
    if (!p) throw new Error(`no pod on ${n.name}`);
    return p;
  };
  const converged = (nodes: TestbedNode[], subnets: string[]) =>
    waitFor(`${nodes.map((n) => n.name).join(',')} to know exactly ${subnets.join(', ')}`, async () => {
      for (const n of nodes) {
        const known = await knownSubnets(agents.get(n.name)!);
        if (JSON.stringify(known) !== JSON.stringify([...subnets].sort())) return false;
      }
      return true;
    });
  const annotationsOf = async (name: string): Promise<Record<string, string>> =>
    (((await api.ctl.getNode(name))?.metadata as JsonObject | undefined)?.annotations ?? {}) as Record<string, string>;

  beforeAll(async () => {
    if (!existsSync(agentEntry())) throw new Error(`${agentEntry()} missing: run "npm run build" first`);
    if (!existsSync(FAKE_API_ENTRY)) throw new Error(`${FAKE_API_ENTRY} missing: run "npm run build" first`);
    tb = await Testbed.create({ nodes: 3, pods: true, cni: true, etcd: true });
    api = await startFakeApi(tb);
    for (const n of tb.nodes) await api.ctl.addNode(nodeObject(n));
    netConf = join(tb.workDir, 'net-conf.json');
    writeFileSync(netConf, JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } }));
    for (const n of tb.nodes) await start(n);
    await converged(tb.nodes, tb.nodes.map(podCIDR));
  });

  afterAll(async () => {
    await tb?.destroy();
  });

  it('each node takes its podCIDR as its subnet', () => {
    for (const n of tb.nodes) expect(agents.get(n.name)!.subnet).toBe(podCIDR(n));
  });

  it('annotates each node as a flannel UDP node would, through nodes/status, once', async () => {
    for (const n of tb.nodes) {
      expect(await annotationsOf(n.name)).toEqual({
        [`${PREFIX}kube-subnet-manager`]: 'true',
        [`${PREFIX}backend-type`]: '',
        [`${PREFIX}backend-data`]: 'null',
        [`${PREFIX}public-ip`]: n.underlayIP,
      });
    }
    const patches = await api.ctl.patches();
    for (const n of tb.nodes) {
      const mine = patches.filter((p) => p.name === n.name);
      expect(mine.every((p) => p.path === `/api/v1/nodes/${n.name}/status` && p.contentType === 'application/strategic-merge-patch+json' && p.status === 200)).toBe(true);
      expect(mine.filter((p) => JSON.stringify(p.body).includes('annotations'))).toHaveLength(1);
    }
  });

  it('sets NetworkUnavailable=False on each node, keeping the kubelet\'s conditions', async () => {
    for (const n of tb.nodes) {
      const conditions = await waitFor(`the condition on ${n.name}`, async () => {
        const c = (((await api.ctl.getNode(n.name))?.status as JsonObject).conditions ?? []) as JsonObject[];
        return c.some((x) => x.type === 'NetworkUnavailable') ? c : undefined;
      });
      expect(conditions.map((c) => c.type)).toEqual(['Ready', 'NetworkUnavailable']);
      expect(conditions[1]).toMatchObject({ status: 'False', reason: 'FeltIsUp' });
    }
  });

  it('pods on every node reach pods on every other node through felt', async () => {
    for (const a of tb.nodes) {
      for (const b of tb.nodes) {
        if (a === b) continue;
        const r = await tb.ping(podOf(a), podOf(b).ip, { count: 2, intervalS: 0.1 });
        expect(r.received, `${podOf(a).name} -> ${podOf(b).ip}: ${r.raw}`).toBe(2);
      }
    }
  });

  it('--ip-masq: pod traffic leaving the overlay carries the node address; the chain is in place', async () => {
    const n1 = tb.node(1);
    const rules = (await n1.ns.exec(['iptables', '-w', '-t', 'nat', '-S', 'FELT-POSTRTG'])).stdout;
    expect(rules).toContain(`! -s 10.244.0.0/16 -d ${podCIDR(n1)}`);
    const rx = await sourceReceiver(tb.hub, 'udp4', HUB_IP, 7777);
    try {
      await sendOneDatagram(podOf(n1).ns, 'udp4', HUB_IP, 7777);
      expect(await rx.next()).toBe(n1.underlayIP);
    } finally {
      rx.stop();
    }
  });

  it('a node that joins the cluster is learned by every agent through the watch, and reachable', async () => {
    const n4 = await tb.addNode();
    await api.ctl.addNode(nodeObject(n4));
    await start(n4);
    await converged(tb.nodes, tb.nodes.map(podCIDR));
    for (const n of tb.nodes.slice(0, 3)) {
      const r = await tb.ping(podOf(n), podOf(n4).ip, { count: 2, intervalS: 0.1 });
      expect(r.received, `${podOf(n).name} -> ${podOf(n4).ip}: ${r.raw}`).toBe(2);
    }
  });

  it('a node deleted while the watches are down (history compacted: 410) disappears after the relist', async () => {
    const n4 = tb.node(4);
    await agents.get(n4.name)!.stop();
    const three = tb.nodes.slice(0, 3);
    await api.ctl.setWatchGate(false);
    await api.ctl.dropWatches();
    await waitFor('all three agents to try to reconnect', async () => (await api.ctl.heldWatchCount()) >= 3);
    await api.ctl.deleteNode(n4.name);
    await api.ctl.compact();
    await api.ctl.setWatchGate(true);
    await converged(three, three.map(podCIDR));
    const r = await tb.ping(podOf(three[0]!), podOf(three[1]!).ip, { count: 2, intervalS: 0.1 });
    expect(r.received).toBe(2);
    // Each agent got there by relisting (its first list was at start-up).
    for (const n of three) {
      const doc = await agents.get(n.name)!.fetchJSON<{ store: { relists: number } }>('/leases');
      expect(doc.store.relists).toBeGreaterThanOrEqual(2);
    }
  });
});
