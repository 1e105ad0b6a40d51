// KubeLeaseStore with an IPv6-only overlay (EnableIPv4 false), against the fake API server: a node
// whose spec.podCIDRs holds only an IPv6 CIDR gets a lease with only that subnet, its annotations are
// written as for dual-stack (public-ip 0.0.0.0 on a node without an IPv4 address), and peers are
// listed and watched by their IPv6 subnet.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KubeLeaseStore, type KubeLeaseStoreOptions } from '../../src/lease/kube/store.js';
import { formatSubnet6 } from '../../src/net/ip6.js';
import type { LeaseUpdate } from '../../src/lease/types.js';
import { FakeApiServer, type JsonObject } from '../testbed/fake-apiserver.js';
import { PREFIX, bareNode, kubeStore, nodeAnnotations, netConf, until } from './helpers.js';

let api: FakeApiServer;
let v6only: ReturnType<typeof netConf>;
const stores: KubeLeaseStore[] = [];

function store(path: string, extra: Partial<KubeLeaseStoreOptions> = {}): KubeLeaseStore {
  return kubeStore(api, path, stores, extra);
}
const annotations = (name: string) => nodeAnnotations(api, name);

/** A node felt already manages on an IPv6-only overlay: only an IPv6 podCIDR, PublicIP 0.0.0.0. */
function managedNode6(name: string, podCIDR6: string, publicIPv6: string): JsonObject {
  const node = bareNode(name, [podCIDR6]);
  (node.metadata as JsonObject).annotations = {
    [`${PREFIX}kube-subnet-manager`]: 'true',
    [`${PREFIX}backend-type`]: '',
    [`${PREFIX}backend-data`]: 'null',
    [`${PREFIX}public-ip`]: '0.0.0.0',
    [`${PREFIX}backend-v6-data`]: '{"CarriesIPv6":true}',
    [`${PREFIX}public-ipv6`]: publicIPv6,
  };
  return node;
}

beforeAll(() => {
  v6only = netConf({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'udp' } });
});
afterAll(() => v6only.cleanup());
beforeEach(async () => {
  api = await FakeApiServer.start({ bookmarkIntervalMs: 60_000 });
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  await api.close();
});

describe('KubeLeaseStore IPv6-only overlay', () => {
  it('takes the only (IPv6) podCIDR; writes public-ip 0.0.0.0 and public-ipv6 for a node without IPv4', async () => {
    api.addNode(bareNode('n1', ['fc00:0:0:1::/64']));
    const lease = await store(v6only.path).acquire('0.0.0.0', { publicIPv6: 'fd00::11' });
    expect(lease.subnet).toBeUndefined();
    expect(formatSubnet6(lease.ipv6Subnet!)).toBe('fc00:0:0:1::/64');
    expect([lease.publicIP, lease.publicIPv6]).toEqual(['0.0.0.0', 'fd00::11']);
    expect(annotations('n1')).toEqual({
      [`${PREFIX}kube-subnet-manager`]: 'true',
      [`${PREFIX}backend-type`]: '',
      [`${PREFIX}backend-data`]: 'null',
      [`${PREFIX}public-ip`]: '0.0.0.0',
      [`${PREFIX}backend-v6-data`]: '{"CarriesIPv6":true}',
      [`${PREFIX}public-ipv6`]: 'fd00::11',
    });
  });

  it('waits for the IPv6 podCIDR only, then fails clearly without one; an IPv4 podCIDR beside it is not used', async () => {
    api.addNode(bareNode('n1', ['10.244.1.0/24']));
    await expect(store(v6only.path).acquire('192.168.77.11', { publicIPv6: 'fd00::11' })).rejects.toThrow(/IPv6 pod cidr not assigned/);
    api.addNode(bareNode('n2', ['10.244.2.0/24', 'fc00:0:0:2::/64']));
    const lease = await store(v6only.path, { env: { NODE_NAME: 'n2' } }).acquire('192.168.77.12', { publicIPv6: 'fd00::12' });
    expect(lease.subnet).toBeUndefined();
    expect(formatSubnet6(lease.ipv6Subnet!)).toBe('fc00:0:0:2::/64');
  });

  it('lists and watches peers by their IPv6 subnet', async () => {
    api.addNode(managedNode6('n2', 'fc00:0:0:2::/64', 'fd00::12'));
    const s = store(v6only.path);
    const { leases } = await s.list();
    expect(leases.map((l) => [l.subnet, formatSubnet6(l.ipv6Subnet!), l.publicIP, l.publicIPv6])).toEqual([[undefined, 'fc00:0:0:2::/64', '0.0.0.0', 'fd00::12']]);

    const updates: LeaseUpdate[] = [];
    const watcher = s.watch((u) => updates.push(u));
    try {
      await until('the first snapshot', () => updates.length > 0);
      api.addNode(managedNode6('n3', 'fc00:0:0:3::/64', 'fd00::13'));
      const events = () => updates.flatMap((u) => (u.kind === 'events' ? u.events : [])).map((e) => `${e.type} ${formatSubnet6(e.lease.ipv6Subnet!)}`);
      await until('the added event', () => events().includes('added fc00:0:0:3::/64'));
      api.deleteNode('n2');
      await until('the removed event', () => events().includes('removed fc00:0:0:2::/64'));
    } finally {
      await watcher.stop();
    }
  });
});
