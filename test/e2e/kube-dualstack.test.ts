// Kubernetes mode with EnableIPv6, end to end (needs root, network namespaces, /dev/net/tun and
// `npm run build`): two nodes on a dual-stack underlay with dual-stack podCIDRs run
// `felt run --kube-subnet-mgr` against the fake API server in the hub namespace. Each writes
// FLANNEL_IPV6_* from its IPv6 podCIDR and flannel's IPv6 annotations, and sees the other's IPv6 half.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../testbed/agent.js';
import type { FakeApiControl, JsonObject } from '../testbed/fake-apiserver.js';
import { Testbed, type TestbedNode } from '../testbed/testbed.js';
import { nodeObject, podCIDR, startFakeApi } from '../support/kube-api.js';
import { waitFor } from './helpers.js';

const PREFIX = 'flannel.alpha.coreos.com/';
const podCIDR6 = (n: TestbedNode): string => `fc00:0:0:${n.index}::/64`;

describe('Kubernetes mode, dual-stack (root, netns, TUN)', () => {
  let tb: Testbed;
  let api: { ctl: FakeApiControl; url: string };
  const agents: AgentHandle[] = [];

  beforeAll(async () => {
    tb = await Testbed.create({ nodes: 2, underlay: 'dual' });
    api = await startFakeApi(tb);
    for (const n of tb.nodes) {
      const node = nodeObject(n);
      (node.spec as JsonObject).podCIDRs = [podCIDR(n), podCIDR6(n)];
      await api.ctl.addNode(node);
    }
    const netConf = join(tb.workDir, 'net-conf.json');
    writeFileSync(netConf, JSON.stringify({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'udp' } }));
    for (const n of tb.nodes) {
      agents.push(await startAgent(tb, n, {
        engine: 'js',
        pods: false,
        extraArgs: ['--kube-subnet-mgr', '--kube-api-url', api.url, '--net-config-path', netConf],
        env: { NODE_NAME: n.name },
      }));
    }
  });
  afterAll(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    await tb?.destroy();
  });

  it('subnet.env from both podCIDRs, flannel\'s IPv6 annotations, and the peer\'s IPv6 half on /leases', async () => {
    const [n1, n2] = [tb.nodes[0]!, tb.nodes[1]!];
    const [a1] = agents;
    expect(a1!.env).toMatchObject({ FLANNEL_SUBNET: '10.244.1.1/24', FLANNEL_IPV6_NETWORK: 'fc00::/48', FLANNEL_IPV6_SUBNET: 'fc00:0:0:1::1/64', FLANNEL_MTU: '1452' });
    const annotations = ((await api.ctl.getNode(n1.name))?.metadata as JsonObject).annotations as Record<string, string>;
    expect(annotations).toMatchObject({
      [`${PREFIX}public-ip`]: n1.underlayIPv4,
      [`${PREFIX}public-ipv6`]: n1.underlayIPv6,
      [`${PREFIX}backend-v6-data`]: '{"CarriesIPv6":true}',
      [`${PREFIX}backend-data`]: 'null',
    });
    const doc = await waitFor('the peer on /leases', async () => {
      const d = await a1!.fetchJSON('/leases');
      return d.leases.length === 2 ? d : undefined;
    }, 30_000);
    expect(doc.leases.find((l: { self: boolean }) => !l.self)).toMatchObject({
      subnet: podCIDR(n2), subnet6: podCIDR6(n2), publicIP: n2.underlayIPv4, publicIPv6: n2.underlayIPv6,
    });
  });
});
