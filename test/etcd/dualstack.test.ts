// Dual-stack leases in etcd (needs the `etcd` binary): keys and values exactly as flannel writes
// them ("10.244.1.0-24&fc00:0:0:1::-64", {"PublicIP":…,"PublicIPv6":…}), IPv6 subnets allocated
// between IPv6SubnetMin and IPv6SubnetMax, reuse by PublicIP only when both halves fit the config,
// and IPv4-only clusters unchanged.
import { describe, expect, it } from 'vitest';
import { formatSubnet, parseSubnet } from '../../src/net/cidr.js';
import { formatSubnet6, parseSubnet6 } from '../../src/net/ip6.js';
import { useEtcd } from './helpers.js';

const t = useEtcd();
const { freshPrefix, newStore, keyInfo, subnetKeys, cleanups } = t;
const DUAL = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48' };
const first = () => 0; // always the first free candidate

describe('IPv4-only clusters are unchanged (needs the etcd binary)', () => {
  it('EnableIPv6 false: plain key, PublicIPv6 null, even when the node has an IPv6 address', async () => {
    const prefix = await freshPrefix({ Network: '10.244.0.0/16', EnableIPv6: false });
    const { store } = newStore(prefix, { random: first });
    const lease = await store.acquire('192.168.77.2', { publicIPv6: 'fd00::2' });
    expect(lease.ipv6Subnet).toBeUndefined();
    expect(await subnetKeys(prefix)).toEqual({
      [`10.244.1.0-24`]: '{"PublicIP":"192.168.77.2","PublicIPv6":null}',
    });
  });
});

describe('dual-stack leases (needs the etcd binary)', () => {
  it('writes flannel\'s dual-stack key and value, both subnets from their ranges', async () => {
    const prefix = await freshPrefix(DUAL);
    const { store } = newStore(prefix, { random: first });
    const lease = await store.acquire('192.168.77.2', { publicIPv6: 'FD00:0::2' });
    expect(formatSubnet(lease.subnet!)).toBe('10.244.1.0/24');
    expect(lease.ipv6Subnet && formatSubnet6(lease.ipv6Subnet)).toBe('fc00:0:0:1::/64');
    expect(lease.publicIPv6).toBe('fd00::2');
    const key = `${prefix}/subnets/10.244.1.0-24&fc00:0:0:1::-64`;
    expect(lease.source).toMatchObject({ kind: 'etcd', key });
    expect(await subnetKeys(prefix)).toEqual({ '10.244.1.0-24&fc00:0:0:1::-64': '{"PublicIP":"192.168.77.2","PublicIPv6":"fd00::2","BackendV6Data":{"CarriesIPv6":true}}' });

    // Renewal keeps both halves of the key and the value.
    const renewed = await store.renew(lease);
    expect(renewed.source).toMatchObject({ key });
    expect((await keyInfo(key))?.value).toBe('{"PublicIP":"192.168.77.2","PublicIPv6":"fd00::2","BackendV6Data":{"CarriesIPv6":true}}');
  });

  it('a node without an IPv6 underlay address writes PublicIPv6 null but still gets an IPv6 subnet', async () => {
    const prefix = await freshPrefix(DUAL);
    const lease = await newStore(prefix, { random: first }).store.acquire('192.168.77.3');
    expect(await subnetKeys(prefix)).toEqual({
      [`10.244.1.0-24&fc00:0:0:1::-64`]: '{"PublicIP":"192.168.77.3","PublicIPv6":null,"BackendV6Data":{"CarriesIPv6":true}}',
    });
    expect(lease.publicIPv6).toBeUndefined();
  });

  it('reads keys exactly as flannel writes them, and allocates around both halves', async () => {
    const prefix = await freshPrefix(DUAL);
    const etcdLease = t.etcd.lease(120, { autoKeepAlive: false });
    cleanups.push(() => etcdLease.revoke().catch(() => undefined));
    await etcdLease
      .put(`${prefix}/subnets/10.244.1.0-24&fc00:0:0:1::-64`)
      .value('{"PublicIP":"192.168.77.9","PublicIPv6":"fd00::9","BackendType":"udp"}');
    // A malformed value still occupies its subnets.
    await etcdLease.put(`${prefix}/subnets/10.244.2.0-24&fc00:0:0:2::-64`).value('{"PublicIP":"192.168.77.10","PublicIPv6":"nope"}');
    const { store, warnings } = newStore(prefix, { random: first });
    const { leases } = await store.list();
    expect(leases).toHaveLength(1);
    expect(leases[0]).toMatchObject({ publicIP: '192.168.77.9', publicIPv6: 'fd00::9' });
    expect(formatSubnet6(leases[0]!.ipv6Subnet!)).toBe('fc00:0:0:1::/64');
    expect(warnings().map((w) => w.msg)).toEqual(['skipping malformed subnet lease: PublicIPv6 is not null or an IPv6 address']);

    const mine = await store.acquire('192.168.77.11', { publicIPv6: 'fd00::11' });
    expect(formatSubnet(mine.subnet!)).toBe('10.244.3.0/24');
    expect(formatSubnet6(mine.ipv6Subnet!)).toBe('fc00:0:0:3::/64');
  });

  it('takes back its dual-stack lease by PublicIP after a restart, with the new PublicIPv6', async () => {
    const prefix = await freshPrefix(DUAL);
    const a = await newStore(prefix).store.acquire('192.168.77.2', { publicIPv6: 'fd00::2' });
    const b = await newStore(prefix).store.acquire('192.168.77.2', { publicIPv6: 'fd00::22' });
    expect(b.source).toMatchObject({ key: (a.source as { key: string }).key });
    expect(Object.values(await subnetKeys(prefix))).toEqual(['{"PublicIP":"192.168.77.2","PublicIPv6":"fd00::22","BackendV6Data":{"CarriesIPv6":true}}']);
  });

  it('an IPv4-only lease for our PublicIP is not compatible once IPv6 is enabled: replaced by a dual-stack one', async () => {
    const prefix = await freshPrefix(DUAL);
    const etcdLease = t.etcd.lease(120, { autoKeepAlive: false });
    cleanups.push(() => etcdLease.revoke().catch(() => undefined));
    await etcdLease.put(`${prefix}/subnets/10.244.7.0-24`).value('{"PublicIP":"192.168.77.2","PublicIPv6":null}');
    const lease = await newStore(prefix, { random: first }).store.acquire('192.168.77.2');
    expect(lease.ipv6Subnet).toBeDefined();
    expect(Object.keys(await subnetKeys(prefix))).toEqual([`10.244.1.0-24&fc00:0:0:1::-64`]);
  });

  it('a dual-stack lease is not compatible with an IPv4-only config: replaced by a plain one', async () => {
    const prefix = await freshPrefix({ Network: '10.244.0.0/16' });
    const etcdLease = t.etcd.lease(120, { autoKeepAlive: false });
    cleanups.push(() => etcdLease.revoke().catch(() => undefined));
    await etcdLease.put(`${prefix}/subnets/10.244.7.0-24&fc00:0:0:7::-64`).value('{"PublicIP":"192.168.77.2","PublicIPv6":null}');
    await newStore(prefix, { random: first }).store.acquire('192.168.77.2');
    expect(Object.keys(await subnetKeys(prefix))).toEqual([`10.244.1.0-24`]);
  });

  it('honours both previous subnets when both fit and are free; ignores them when the IPv6 one does not fit', async () => {
    const prefix = await freshPrefix(DUAL);
    const lease = await newStore(prefix).store.acquire('192.168.77.2', {
      previousSubnet: parseSubnet('10.244.9.0/24'),
      previousSubnet6: parseSubnet6('fc00:0:0:9::/64'),
    });
    expect([formatSubnet(lease.subnet!), formatSubnet6(lease.ipv6Subnet!)]).toEqual(['10.244.9.0/24', 'fc00:0:0:9::/64']);

    const other = await newStore(prefix, { random: first }).store.acquire('192.168.77.3', {
      previousSubnet: parseSubnet('10.244.10.0/24'),
      previousSubnet6: parseSubnet6('fc00:1::/64'), // outside IPv6Network
    });
    expect(formatSubnet(other.subnet!)).toBe('10.244.1.0/24');
  });

  it('nodes without an IPv4 underlay address (PublicIP 0.0.0.0) are told apart by PublicIPv6', async () => {
    const prefix = await freshPrefix(DUAL);
    const a = await newStore(prefix).store.acquire('0.0.0.0', { publicIPv6: 'fd00::a' });
    const b = await newStore(prefix).store.acquire('0.0.0.0', { publicIPv6: 'fd00::b' });
    expect(formatSubnet(a.subnet!)).not.toBe(formatSubnet(b.subnet!));
    const again = await newStore(prefix).store.acquire('0.0.0.0', { publicIPv6: 'fd00::b' });
    expect(formatSubnet(again.subnet!)).toBe(formatSubnet(b.subnet!));
    expect(Object.keys(await subnetKeys(prefix))).toHaveLength(2);
  });

  it('out of IPv6 subnets is a clear permanent error', async () => {
    const prefix = await freshPrefix({ ...DUAL, IPv6SubnetMin: 'fc00:0:0:5::', IPv6SubnetMax: 'fc00:0:0:5::' });
    await newStore(prefix).store.acquire('192.168.77.2');
    await expect(newStore(prefix).store.acquire('192.168.77.3')).rejects.toThrow(
      /out of IPv6 subnets: all 1 \/64 subnets between IPv6SubnetMin fc00:0:0:5:: and IPv6SubnetMax fc00:0:0:5:: are leased/,
    );
  });
});
