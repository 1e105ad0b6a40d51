// The agent in a dual-stack cluster, end to end (needs root, network namespaces, the etcd binary
// and `npm run build`): what it writes (etcd keys and values exactly as flannel's, subnet.env with
// FLANNEL_IPV6_*, the TUN MTU with an IPv6 underlay), what /leases shows, an IPv6-only node
// (PublicIP 0.0.0.0 as flannel writes), and an IPv4-only cluster on the same underlay: unchanged.
import { afterAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../testbed/agent.js';
import { Testbed } from '../testbed/testbed.js';
import { waitFor } from '../support/wait.js';

const DUAL_CONFIG = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'udp' } };
/** felt's BackendV6Data in a value: its tunnel carries IPv6 pods. */
const MARK = '"BackendV6Data":{"CarriesIPv6":true}';
const testbeds: Testbed[] = [];
const agents: AgentHandle[] = [];
afterAll(async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  for (const tb of testbeds) await tb.destroy();
});

async function subnetValues(tb: Testbed): Promise<Record<string, string>> {
  const all = await tb.etcdClient.getAll().prefix(`${tb.etcdPrefix}/subnets/`).strings();
  return Object.fromEntries(Object.entries(all).map(([k, v]) => [k.slice(`${tb.etcdPrefix}/subnets/`.length), v]));
}

async function bed(opts: Parameters<typeof Testbed.create>[0]): Promise<Testbed> {
  const tb = await Testbed.create(opts);
  testbeds.push(tb);
  return tb;
}

async function agent(tb: Testbed, index: number, pods = false): Promise<AgentHandle> {
  const a = await startAgent(tb, tb.nodes[index]!, { engine: 'js', pods });
  agents.push(a);
  return a;
}

describe('felt run in a dual-stack cluster (root, netns, etcd)', () => {
  it('dual-stack underlay: flannel keys and values, FLANNEL_IPV6_* and MTU 1452 in subnet.env, both halves on /leases', async () => {
    const tb = await bed({ nodes: 2, etcd: true, underlay: 'dual', networkConfig: DUAL_CONFIG });
    const [a, b] = [await agent(tb, 0), await agent(tb, 1)];
    expect(a.env.FLANNEL_IPV6_NETWORK).toBe('fc00::/48');
    expect(a.env.FLANNEL_IPV6_SUBNET).toMatch(/^fc00:0:0:[0-9a-f]{1,4}::1\/64$/);
    expect(a.env.FLANNEL_MTU).toBe('1452'); // 1500 - IPv6 (40) - UDP (8)
    expect(Object.keys(a.env)).toEqual(['FLANNEL_NETWORK', 'FLANNEL_SUBNET', 'FLANNEL_IPV6_NETWORK', 'FLANNEL_IPV6_SUBNET', 'FLANNEL_MTU', 'FLANNEL_IPMASQ']);

    const values = await subnetValues(tb);
    const keyA = `${a.subnet.replace('/', '-')}&${a.subnet6!.replace('/', '-')}`;
    expect(values[keyA]).toBe(`{"PublicIP":"${tb.nodes[0]!.underlayIPv4}","PublicIPv6":"${tb.nodes[0]!.underlayIPv6}",${MARK}}`);
    expect(Object.keys(values)).toHaveLength(2);

    const doc = await waitFor('the peer on /leases', async () => {
      const d = await a.fetchJSON('/leases');
      return d.leases.length === 2 ? d : undefined;
    }, 30_000);
    const peer = doc.leases.find((l: { self: boolean }) => !l.self);
    expect(peer).toMatchObject({ subnet: b.subnet, subnet6: b.subnet6, publicIP: tb.nodes[1]!.underlayIPv4, publicIPv6: tb.nodes[1]!.underlayIPv6 });
    expect(doc.node).toMatchObject({ subnet6: a.subnet6, publicIPv6: tb.nodes[0]!.underlayIPv6, network6: 'fc00::/48', mtu: 1452 });
  });

  it('IPv6-only underlay: PublicIP 0.0.0.0 (what flannel writes) and the node\'s IPv6 address', async () => {
    const tb = await bed({ nodes: 1, etcd: true, underlay: 'ipv6', networkConfig: DUAL_CONFIG });
    const a = await agent(tb, 0);
    expect(a.env.FLANNEL_MTU).toBe('1452');
    const values = await subnetValues(tb);
    expect(values[`${a.subnet.replace('/', '-')}&${a.subnet6!.replace('/', '-')}`]).toBe(`{"PublicIP":"0.0.0.0","PublicIPv6":"${tb.nodes[0]!.underlayIPv6}",${MARK}}`);
  });

  it('an IPv4-only cluster on a dual-stack underlay is unchanged: plain key, PublicIPv6 null, no IPv6 lines, MTU 1472', async () => {
    const tb = await bed({ nodes: 1, etcd: true, underlay: 'dual' });
    const a = await agent(tb, 0);
    expect(Object.keys(a.env)).toEqual(['FLANNEL_NETWORK', 'FLANNEL_SUBNET', 'FLANNEL_MTU', 'FLANNEL_IPMASQ']);
    expect(a.env.FLANNEL_MTU).toBe('1472');
    expect(await subnetValues(tb)).toEqual({ [a.subnet.replace('/', '-')]: `{"PublicIP":"${tb.nodes[0]!.underlayIPv4}","PublicIPv6":null}` });
  });

  it('IPv4 pods reach each other over an IPv6-only underlay: routes carry PublicIPv6 for peers whose PublicIP is 0.0.0.0', async () => {
    const tb = await bed({ nodes: 2, etcd: true, underlay: 'ipv6', networkConfig: DUAL_CONFIG });
    const a = await agent(tb, 0, true);
    await agent(tb, 1, true);
    const [p1, p2] = [tb.nodes[0]!.pods[0]!, tb.nodes[1]!.pods[0]!];
    await waitFor('an IPv4 ping across nodes', async () => ((await tb.ping(p1, p2.ip, { count: 1, waitS: 1 })).received === 1 ? true : undefined), 30_000);
    const doc = await a.fetchJSON('/leases');
    const peer = doc.leases.find((l: { self: boolean }) => !l.self);
    expect(peer).toMatchObject({ publicIP: '0.0.0.0', publicIPv6: tb.nodes[1]!.underlayIPv6 });
    expect(peer.datapath.tx.packets).toBeGreaterThan(0);
  });
});
