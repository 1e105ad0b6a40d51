// An IPv6-only overlay in Kubernetes mode end to end (needs root, network namespaces, /dev/net/tun,
// iptables and `npm run build`): three testbed nodes whose spec.podCIDRs hold only an IPv6 CIDR run
// `felt run --kube-subnet-mgr` on the js engine against the fake API server, with
// {"EnableIPv4": false, "EnableIPv6": true, ...} in net-conf.json, over the IPv4 underlay. Each node
// takes its IPv6 podCIDR, writes subnet.env without IPv4 lines, and CNI-wired pods ping -6 each other.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentEntry, startAgent, type AgentHandle, type Engine } from '../testbed/agent.js';
import type { FakeApiControl, JsonObject } from '../testbed/fake-apiserver.js';
import { Testbed, type TestbedNode } from '../testbed/testbed.js';
import { FAKE_API_ENTRY, nodeObject, startFakeApi } from '../support/kube-api.js';
import { leasesDoc, podOf, waitFor } from './helpers.js';

const PREFIX = 'flannel.alpha.coreos.com/';
const ENGINE: Engine = 'js';
const NETWORK6 = 'fc00::/48';
const podCIDR6 = (n: TestbedNode): string => `fc00:0:0:${n.index}::/64`;

describe(`Kubernetes mode, IPv6-only overlay, engine ${ENGINE} (root, netns, TUN)`, () => {
  let tb: Testbed;
  let api: { ctl: FakeApiControl; url: string };
  const agents: AgentHandle[] = [];

  beforeAll(async () => {
    if (!existsSync(agentEntry())) throw new Error(`${agentEntry()} missing: run "npm run build" first`);
    if (!existsSync(FAKE_API_ENTRY)) throw new Error(`${FAKE_API_ENTRY} missing: run "npm run build" first`);
    tb = await Testbed.create({ nodes: 3, pods: true, cni: true, etcd: true });
    api = await startFakeApi(tb);
    for (const n of tb.nodes) {
      const node = nodeObject(n);
      node.spec = { podCIDR: podCIDR6(n), podCIDRs: [podCIDR6(n)] };
      await api.ctl.addNode(node);
    }
    const netConf = join(tb.workDir, 'net-conf.json');
    writeFileSync(netConf, JSON.stringify({ EnableIPv4: false, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'udp' } }));
    for (const n of tb.nodes) {
      agents.push(await startAgent(tb, n, {
        engine: ENGINE,
        extraArgs: ['--kube-subnet-mgr', '--kube-api-url', api.url, '--net-config-path', netConf],
        env: { NODE_NAME: n.name },
      }));
    }
    const all = tb.nodes.map(podCIDR6).sort();
    await waitFor(`every agent to know ${all.join(', ')}`, async () => {
      for (const a of agents) {
        const known = (await leasesDoc(a)).leases.map((l) => String((l as { subnet6?: unknown }).subnet6)).sort();
        if (JSON.stringify(known) !== JSON.stringify(all)) return false;
      }
      return true;
    });
  });

  afterAll(async () => {
    await tb?.destroy();
  });

  it('each node takes its IPv6 podCIDR, writes subnet.env without IPv4 lines and the annotations of a UDP node', async () => {
    for (const a of agents) {
      const n = a.node;
      expect(a.subnet6).toBe(podCIDR6(n));
      const text = readFileSync(join(tb.workDir, n.name, 'subnet.env'), 'utf8');
      expect(text).toBe(`FLANNEL_IPV6_NETWORK=${NETWORK6}\nFLANNEL_IPV6_SUBNET=fc00:0:0:${n.index}::1/64\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n`);
      const annotations = ((await api.ctl.getNode(n.name))?.metadata as JsonObject).annotations;
      // The node has no IPv6 underlay address: no public-ipv6, its IPv4 one is its PublicIP.
      expect(annotations).toEqual({
        [`${PREFIX}kube-subnet-manager`]: 'true',
        [`${PREFIX}backend-type`]: '',
        [`${PREFIX}backend-data`]: 'null',
        [`${PREFIX}public-ip`]: n.underlayIP,
        [`${PREFIX}backend-v6-data`]: '{"CarriesIPv6":true}',
      });
      expect((await n.ns.ip(['-4', 'addr', 'show', 'dev', 'flannel0'])).trim()).toBe('');
    }
  });

  it('pods on every node ping -6 pods on every other node through felt', async () => {
    for (const a of tb.nodes) {
      for (const b of tb.nodes) {
        if (a === b) continue;
        const r = await tb.ping(podOf(a), podOf(b).ip6!, { count: 2, intervalS: 0.1, family: 6 });
        expect(r.received, `${podOf(a).name} -> ${podOf(b).ip6}: ${r.raw}`).toBe(2);
      }
    }
  });

  it('a node removed from the API is removed from every other agent', async () => {
    await api.ctl.deleteNode('n3');
    await waitFor('n1 and n2 to forget n3', async () => {
      for (const a of agents.slice(0, 2)) {
        if ((await leasesDoc(a)).leases.some((l) => (l as { subnet6?: unknown }).subnet6 === podCIDR6(tb.node(3)))) return false;
      }
      return true;
    });
  });
});
