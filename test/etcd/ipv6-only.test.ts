// IPv6-only overlay leases in etcd (needs the `etcd` binary): EnableIPv4 false gives leases with only
// an IPv6 subnet, under flannel's key "0.0.0.0-0&<ipv6>-<len>", allocated between IPv6SubnetMin and
// IPv6SubnetMax, reused by PublicIP or (for nodes without an IPv4 address) by PublicIPv6.
import { describe, expect, it } from 'vitest';
import { formatSubnet6, parseSubnet6 } from '../../src/net/ip6.js';
import type { LeaseUpdate } from '../../src/lease/types.js';
import { useEtcd } from './helpers.js';

const t = useEtcd();
const { freshPrefix, newStore, keyInfo, subnetKeys, cleanups } = t;
const V6_ONLY = { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/48' };
const first = () => 0; // always the first free candidate

describe('IPv6-only overlay leases (needs the etcd binary)', () => {
  it('writes "0.0.0.0-0&<v6>" with PublicIP 0.0.0.0 and PublicIPv6, and renews it under the same key', async () => {
    const prefix = await freshPrefix(V6_ONLY);
    const { store } = newStore(prefix, { random: first });
    const lease = await store.acquire('0.0.0.0', { publicIPv6: 'fd77::11' });
    expect(lease.subnet).toBeUndefined();
    expect(lease.ipv6Subnet && formatSubnet6(lease.ipv6Subnet)).toBe('fc00:0:0:1::/64');
    const key = `${prefix}/subnets/0.0.0.0-0&fc00:0:0:1::-64`;
    expect(lease.source).toMatchObject({ kind: 'etcd', key });
    expect(await subnetKeys(prefix)).toEqual({ '0.0.0.0-0&fc00:0:0:1::-64': '{"PublicIP":"0.0.0.0","PublicIPv6":"fd77::11","BackendV6Data":{"CarriesIPv6":true}}' });

    const renewed = await store.renew(lease);
    expect(renewed.source).toMatchObject({ key });
    expect(renewed.subnet).toBeUndefined();
    expect((await keyInfo(key))?.value).toBe('{"PublicIP":"0.0.0.0","PublicIPv6":"fd77::11","BackendV6Data":{"CarriesIPv6":true}}');
  });

  it('a second node gets the next IPv6 subnet; each takes its own lease back by PublicIPv6', async () => {
    const prefix = await freshPrefix(V6_ONLY);
    const a = await newStore(prefix, { random: first }).store.acquire('0.0.0.0', { publicIPv6: 'fd77::a' });
    const b = await newStore(prefix, { random: first }).store.acquire('0.0.0.0', { publicIPv6: 'fd77::b' });
    expect([formatSubnet6(a.ipv6Subnet!), formatSubnet6(b.ipv6Subnet!)]).toEqual(['fc00:0:0:1::/64', 'fc00:0:0:2::/64']);
    const again = await newStore(prefix, { random: first }).store.acquire('0.0.0.0', { publicIPv6: 'fd77::b' });
    expect(again.source).toMatchObject({ key: (b.source as { key: string }).key });
    expect(Object.keys(await subnetKeys(prefix)).sort()).toEqual(['0.0.0.0-0&fc00:0:0:1::-64', '0.0.0.0-0&fc00:0:0:2::-64']);
  });

  it('a node with an IPv4 underlay address is identified by PublicIP as usual', async () => {
    const prefix = await freshPrefix(V6_ONLY);
    const a = await newStore(prefix).store.acquire('192.168.77.2', { publicIPv6: 'fd77::2' });
    const b = await newStore(prefix).store.acquire('192.168.77.2', { publicIPv6: 'fd77::22' });
    expect(b.source).toMatchObject({ key: (a.source as { key: string }).key });
    expect(Object.values(await subnetKeys(prefix))).toEqual(['{"PublicIP":"192.168.77.2","PublicIPv6":"fd77::22","BackendV6Data":{"CarriesIPv6":true}}']);
  });

  it('takes back the previous IPv6 subnet alone (subnet.env has no FLANNEL_SUBNET), unless it does not fit', async () => {
    const prefix = await freshPrefix(V6_ONLY);
    const lease = await newStore(prefix).store.acquire('0.0.0.0', { publicIPv6: 'fd77::9', previousSubnet6: parseSubnet6('fc00:0:0:9::/64') });
    expect(formatSubnet6(lease.ipv6Subnet!)).toBe('fc00:0:0:9::/64');
    const other = await newStore(prefix, { random: first }).store.acquire('0.0.0.0', {
      publicIPv6: 'fd77::10',
      previousSubnet6: parseSubnet6('fc00:1::/64'), // outside IPv6Network
    });
    expect(formatSubnet6(other.ipv6Subnet!)).toBe('fc00:0:0:1::/64');
  });

  it('a dual-stack lease for our PublicIP does not fit an IPv6-only config: replaced by an IPv6-only one', async () => {
    const prefix = await freshPrefix(V6_ONLY);
    const etcdLease = t.etcd.lease(120, { autoKeepAlive: false });
    cleanups.push(() => etcdLease.revoke().catch(() => undefined));
    await etcdLease.put(`${prefix}/subnets/10.244.7.0-24&fc00:0:0:7::-64`).value('{"PublicIP":"192.168.77.2","PublicIPv6":null}');
    const lease = await newStore(prefix, { random: first }).store.acquire('192.168.77.2');
    expect(lease.subnet).toBeUndefined();
    expect(Object.keys(await subnetKeys(prefix))).toEqual(['0.0.0.0-0&fc00:0:0:1::-64']);
  });

  it('reads flannel-written "0.0.0.0-0&" keys in list and watch, and allocates around them', async () => {
    const prefix = await freshPrefix(V6_ONLY);
    const etcdLease = t.etcd.lease(120, { autoKeepAlive: false });
    cleanups.push(() => etcdLease.revoke().catch(() => undefined));
    await etcdLease.put(`${prefix}/subnets/0.0.0.0-0&fc00:0:0:1::-64`).value('{"PublicIP":"0.0.0.0","PublicIPv6":"fd77::99"}');
    const { store } = newStore(prefix, { random: first });
    const { leases } = await store.list();
    expect(leases.map((l) => [l.subnet, formatSubnet6(l.ipv6Subnet!), l.publicIPv6])).toEqual([[undefined, 'fc00:0:0:1::/64', 'fd77::99']]);

    const updates: LeaseUpdate[] = [];
    const watcher = store.watch((u) => updates.push(u));
    cleanups.push(() => watcher.stop());
    await expect.poll(() => updates.length).toBeGreaterThan(0);
    const mine = await store.acquire('0.0.0.0', { publicIPv6: 'fd77::1' });
    expect(formatSubnet6(mine.ipv6Subnet!)).toBe('fc00:0:0:2::/64');
    await expect
      .poll(() => updates.flatMap((u) => (u.kind === 'events' ? u.events : [])).map((e) => `${e.type} ${formatSubnet6(e.lease.ipv6Subnet!)} ${e.lease.subnet ?? '-'}`))
      .toEqual(['added fc00:0:0:2::/64 -']);
  });

  it('out of IPv6 subnets is the only exhaustion (no IPv4 range to run out of)', async () => {
    const prefix = await freshPrefix({ ...V6_ONLY, IPv6SubnetMin: 'fc00:0:0:5::', IPv6SubnetMax: 'fc00:0:0:5::' });
    await newStore(prefix).store.acquire('0.0.0.0', { publicIPv6: 'fd77::2' });
    await expect(newStore(prefix).store.acquire('0.0.0.0', { publicIPv6: 'fd77::3' })).rejects.toThrow(/out of IPv6 subnets: all 1 \/64 subnets/);
  });
});
