// KubeLeaseStore with EnableIPv6, against the fake API server: both podCIDRs of a node, flannel's
// public-ipv6 / public-ipv6-overwrite / backend-v6-data / node-public-ipv6 annotations, peers with
// and without an IPv6 half; an IPv4-only config leaves the IPv6 annotations alone.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KubeLeaseStore, type KubeLeaseStoreOptions } from '../../src/lease/kube/store.js';
import { formatSubnet } from '../../src/net/cidr.js';
import { formatSubnet6 } from '../../src/net/ip6.js';
import { FakeApiServer, type JsonObject } from '../testbed/fake-apiserver.js';
import { PREFIX, bareNode, kubeStore, nodeAnnotations, managedNode, netConf } from './helpers.js';

let api: FakeApiServer;
let dual: ReturnType<typeof netConf>;
let v4only: ReturnType<typeof netConf>;
const stores: KubeLeaseStore[] = [];

function store(path: string, extra: Partial<KubeLeaseStoreOptions> = {}): KubeLeaseStore {
  return kubeStore(api, path, stores, extra);
}
const annotations = (name: string) => nodeAnnotations(api, name);

beforeAll(() => {
  dual = netConf({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'udp' } });
  v4only = netConf();
});
afterAll(() => {
  dual.cleanup();
  v4only.cleanup();
});
beforeEach(async () => {
  api = await FakeApiServer.start({ bookmarkIntervalMs: 60_000 });
});
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  await api.close();
});

describe('KubeLeaseStore dual-stack', () => {
  it('takes both podCIDRs and writes public-ipv6 and backend-v6-data beside the IPv4 annotations', async () => {
    api.addNode(bareNode('n1', ['10.244.1.0/24', 'fc00:0:0:1::/64']));
    const lease = await store(dual.path).acquire('192.168.77.11', { publicIPv6: 'FD00::11' });
    expect(formatSubnet(lease.subnet!)).toBe('10.244.1.0/24');
    expect(formatSubnet6(lease.ipv6Subnet!)).toBe('fc00:0:0:1::/64');
    expect(lease.publicIPv6).toBe('fd00::11');
    expect(annotations('n1')).toEqual({
      [`${PREFIX}kube-subnet-manager`]: 'true',
      [`${PREFIX}backend-type`]: '',
      [`${PREFIX}backend-data`]: 'null',
      [`${PREFIX}public-ip`]: '192.168.77.11',
      [`${PREFIX}backend-v6-data`]: '{"CarriesIPv6":true}',
      [`${PREFIX}public-ipv6`]: 'fd00::11',
    });
  });

  it('a node without an IPv6 underlay address still writes backend-v6-data (its tunnel carries IPv6 pods) but no public-ipv6', async () => {
    api.addNode(bareNode('n1', ['10.244.1.0/24', 'fc00:0:0:1::/64']));
    const lease = await store(dual.path).acquire('192.168.77.11');
    expect(lease.publicIPv6).toBeUndefined();
    expect(annotations('n1')[`${PREFIX}backend-v6-data`]).toBe('{"CarriesIPv6":true}');
    expect(annotations('n1')[`${PREFIX}public-ipv6`]).toBeUndefined();
  });

  it('honours public-ipv6-overwrite and reads node-public-ipv6; rejects bad values clearly', async () => {
    const node = bareNode('n1', ['10.244.1.0/24', 'fc00:0:0:1::/64']);
    (node.metadata as JsonObject).annotations = { [`${PREFIX}public-ipv6-overwrite`]: 'fd00::99', [`${PREFIX}node-public-ipv6`]: 'fd00::50' };
    api.addNode(node);
    expect(await store(dual.path).storedPublicIPv6()).toBe('fd00::50');
    const lease = await store(dual.path).acquire('192.168.77.11', { publicIPv6: 'fd00::11' });
    expect(lease.publicIPv6).toBe('fd00::99');
    expect(annotations('n1')[`${PREFIX}public-ipv6`]).toBe('fd00::99');

    const bad = bareNode('n2', ['10.244.2.0/24', 'fc00:0:0:2::/64']);
    (bad.metadata as JsonObject).annotations = { [`${PREFIX}public-ipv6-overwrite`]: '10.1.1.1', [`${PREFIX}node-public-ipv6`]: 'nope' };
    api.addNode(bad);
    await expect(store(dual.path, { env: { NODE_NAME: 'n2' } }).acquire('192.168.77.12', { publicIPv6: 'fd00::12' })).rejects.toThrow(/public-ipv6-overwrite="10.1.1.1" is not an IPv6 address/);
    await expect(store(dual.path, { env: { NODE_NAME: 'n2' } }).storedPublicIPv6()).rejects.toThrow(/node-public-ipv6="nope" is not an IPv6 address/);
  });

  it('an IPv6 podCIDR outside IPv6Network is a permanent error; a node without one is waited for, then a clear error', async () => {
    api.addNode(bareNode('n1', ['10.244.1.0/24', 'fd00:1::/64']));
    await expect(store(dual.path).acquire('192.168.77.11')).rejects.toThrow(/IPv6 pod cidr fd00:1::\/64 is not inside the IPv6 network fc00::\/48/);
    api.addNode(bareNode('n2', '10.244.2.0/24'));
    await expect(store(dual.path, { env: { NODE_NAME: 'n2' } }).acquire('192.168.77.12')).rejects.toThrow(/IPv6 pod cidr not assigned/);
  });

  it('lists peers with their IPv6 halves; a stock flannel UDP node (IPv4 only) stays an IPv4 peer', async () => {
    const v6peer = managedNode('n2', '10.244.2.0/24', '192.168.77.12');
    (v6peer.spec as JsonObject).podCIDRs = ['10.244.2.0/24', 'fc00:0:0:2::/64'];
    Object.assign((v6peer.metadata as JsonObject).annotations as JsonObject, { [`${PREFIX}public-ipv6`]: 'fd00::12', [`${PREFIX}backend-v6-data`]: '{"CarriesIPv6":true}' });
    api.addNode(v6peer);
    api.addNode(managedNode('n3', '10.244.3.0/24', '192.168.77.13'));
    const stock = managedNode('n4', '10.244.4.0/24', '192.168.77.14');
    (stock.spec as JsonObject).podCIDRs = ['10.244.4.0/24', 'fc00:0:0:4::/64'];
    api.addNode(stock);
    const { leases } = await store(dual.path).list();
    const byIP = Object.fromEntries(leases.map((l) => [l.publicIP, l]));
    expect(formatSubnet6(byIP['192.168.77.12']!.ipv6Subnet!)).toBe('fc00:0:0:2::/64');
    expect(byIP['192.168.77.12']!.publicIPv6).toBe('fd00::12');
    expect(byIP['192.168.77.12']!.attrs).toMatchObject({ PublicIPv6: 'fd00::12', BackendV6Data: { CarriesIPv6: true } });
    expect(byIP['192.168.77.12']!.carriesIPv6).toBe(true);
    expect(byIP['192.168.77.13']!.ipv6Subnet).toBeUndefined();
    expect(byIP['192.168.77.13']!.publicIPv6).toBeUndefined();
    // A stock flannel UDP node in the dual-stack cluster: both podCIDRs, no backend-v6-data. Its IPv6
    // subnet is listed but not carried, so the lease table gives it no IPv6 route.
    expect(formatSubnet6(byIP['192.168.77.14']!.ipv6Subnet!)).toBe('fc00:0:0:4::/64');
    expect(byIP['192.168.77.14']!.carriesIPv6).toBeUndefined();
  });

  it('IPv4-only config: the IPv6 podCIDR and annotations are ignored and none are written', async () => {
    api.addNode(bareNode('n1', ['10.244.1.0/24', 'fc00:0:0:1::/64']));
    const lease = await store(v4only.path).acquire('192.168.77.11', { publicIPv6: 'fd00::11' });
    expect(lease.ipv6Subnet).toBeUndefined();
    expect(Object.keys(annotations('n1')).sort()).toEqual([
      `${PREFIX}backend-data`, `${PREFIX}backend-type`, `${PREFIX}kube-subnet-manager`, `${PREFIX}public-ip`,
    ]);
  });
});
