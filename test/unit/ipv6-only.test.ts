// The IPv6-only overlay (EnableIPv4 false) through the pure parts: config, etcd keys, subnet.env,
// allocation checks, the lease table, the native route encoding and Kubernetes node leases.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { IKeyValue } from 'etcd3';
import { afterEach, describe, expect, it } from 'vitest';
import { isCompatible4, isCompatible6 } from '../../src/lease/allocate.js';
import { parseNetworkConfig } from '../../src/lease/config.js';
import { leaseValue, parseLeaseKv } from '../../src/lease/etcd/keys.js';
import { kubeAnnotations, nodeToLease } from '../../src/lease/kube/annotations.js';
import { LeaseTable } from '../../src/lease/table.js';
import type { Lease } from '../../src/lease/types.js';
import { encodeRoutes, encodeRoutes6 } from '../../src/datapath/native.js';
import { formatSubnet, makeSubnetKey, parseSubnet } from '../../src/net/cidr.js';
import { formatIPv6, formatSubnet6, parseIPv6, parseSubnet6 } from '../../src/net/ip6.js';
import { formatSubnetEnv, readPreviousSubnets, writeSubnetEnv } from '../../src/subnetenv.js';

const V6_ONLY = { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/48' };
const PREFIX = '/coreos.com/network/subnets/';

const kv = (name: string, value: string): IKeyValue =>
  ({ key: Buffer.from(PREFIX + name), value: Buffer.from(value), lease: '0', mod_revision: '7', create_revision: '7', version: '1' }) as IKeyValue;

const lease6 = (subnet6: string, publicIPv6: string, publicIP = '0.0.0.0'): Lease => ({
  publicIP,
  ipv6Subnet: parseSubnet6(subnet6),
  carriesIPv6: true,
  publicIPv6,
  attrs: { PublicIP: publicIP, PublicIPv6: publicIPv6 },
  source: { kind: 'etcd', key: PREFIX + makeSubnetKey(undefined, parseSubnet6(subnet6)), modRevision: '1' },
});

describe('IPv6-only overlay: network config', () => {
  it('needs no Network; the IPv6 half gets flannel defaults; no IPv4 bounds at all', () => {
    const c = parseNetworkConfig(V6_ONLY);
    expect(c.enableIPv4).toBe(false);
    expect(c.network).toBeUndefined();
    expect(c.subnetLen).toBeUndefined();
    expect(c.ipv6 && formatSubnet6(c.ipv6.network)).toBe('fc00::/48');
    expect(c.ipv6 && [c.ipv6.subnetLen, formatIPv6(c.ipv6.subnetMin), formatIPv6(c.ipv6.subnetMax)]).toEqual([64, 'fc00:0:0:1::', 'fc00:0:0:ffff::']);
  });

  it('ignores Network and the IPv4 subnet keys, as flannel checks them only with EnableIPv4', () => {
    const c = parseNetworkConfig({ ...V6_ONLY, Network: '10.244.0.0/30', SubnetLen: 99 });
    expect(c.network).toBeUndefined();
    expect(parseNetworkConfig(V6_ONLY, { applySubnetDefaults: false }).ipv6?.subnetLen).toBe(0);
  });
});

describe('IPv6-only overlay: etcd keys (flannel MakeSubnetKey / ParseSubnetKey)', () => {
  it('a lease with no IPv4 subnet has the zero IPv4 half "0.0.0.0-0"', () => {
    expect(makeSubnetKey(undefined, parseSubnet6('fc00:0:0:1::/64'))).toBe('0.0.0.0-0&fc00:0:0:1::-64');
    // Dual-stack and IPv4-only keys are as before.
    expect(makeSubnetKey(parseSubnet('10.244.1.0/24'), parseSubnet6('fc00:0:0:1::/64'))).toBe('10.244.1.0-24&fc00:0:0:1::-64');
    expect(makeSubnetKey(parseSubnet('10.244.1.0/24'))).toBe('10.244.1.0-24');
  });

  it('parses "0.0.0.0-0&<v6>" into a lease with only an IPv6 subnet, PublicIP 0.0.0.0 and PublicIPv6', () => {
    const parsed = parseLeaseKv(kv('0.0.0.0-0&fc00:0:0:1::-64', leaseValue('0.0.0.0', 'fd77::11')), PREFIX);
    expect(parsed.ok).toBe(true);
    const lease = parsed.ok ? parsed.lease : undefined;
    expect(lease?.subnet).toBeUndefined();
    expect(lease?.ipv6Subnet && formatSubnet6(lease.ipv6Subnet)).toBe('fc00:0:0:1::/64');
    expect([lease?.publicIP, lease?.publicIPv6]).toEqual(['0.0.0.0', 'fd77::11']);
    expect(leaseValue('0.0.0.0', 'fd77::11')).toBe('{"PublicIP":"0.0.0.0","PublicIPv6":"fd77::11"}');
  });

  it('keeps a bare "0.0.0.0-0" what it was (the lease 0.0.0.0/0, which the agent refuses to route)', () => {
    const parsed = parseLeaseKv(kv('0.0.0.0-0', leaseValue('192.168.77.9')), PREFIX);
    expect(parsed.ok && parsed.lease.subnet && formatSubnet(parsed.lease.subnet)).toBe('0.0.0.0/0');
  });
});

describe('IPv6-only overlay: subnet.env (flannel WriteSubnetFile)', () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('has no FLANNEL_NETWORK/FLANNEL_SUBNET lines, and reads back only the IPv6 subnet', async () => {
    const env = { network6: parseSubnet6('fc00::/48'), subnet6: parseSubnet6('fc00:0:0:7::/64'), mtu: 1452, ipMasq: true };
    expect(formatSubnetEnv(env)).toBe('FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:7::1/64\nFLANNEL_MTU=1452\nFLANNEL_IPMASQ=true\n');
    const dir = mkdtempSync(path.join(tmpdir(), 'felt-v6only-'));
    dirs.push(dir);
    const file = path.join(dir, 'subnet.env');
    await writeSubnetEnv(file, env);
    const previous = await readPreviousSubnets(file);
    expect(previous.subnet).toBeUndefined();
    expect(previous.subnet6 && formatSubnet6(previous.subnet6)).toBe('fc00:0:0:7::/64');
  });
});

describe('IPv6-only overlay: lease compatibility', () => {
  const config = parseNetworkConfig(V6_ONLY);
  it('a lease fits only without an IPv4 subnet and with an IPv6 one inside the bounds', () => {
    expect(isCompatible4(undefined, config)).toBe(true);
    expect(isCompatible4(parseSubnet('10.244.1.0/24'), config)).toBe(false);
    expect(isCompatible6(parseSubnet6('fc00:0:0:1::/64'), config.ipv6)).toBe(true);
    expect(isCompatible6(undefined, config.ipv6)).toBe(false);
    // With EnableIPv4 a lease must have an IPv4 subnet again.
    expect(isCompatible4(undefined, parseNetworkConfig({ Network: '10.244.0.0/16' }))).toBe(false);
  });
});

describe('IPv6-only overlay: lease table and routes', () => {
  const own = lease6('fc00:0:0:1::/64', 'fd77::11');
  const a = lease6('fc00:0:0:2::/64', 'fd77::12');
  const b = lease6('fc00:0:0:3::/64', 'fd77::13', '192.168.77.13');

  it('keys leases by their IPv6 subnet, routes them by subnet6 only, and leaves our own out', () => {
    const t = new LeaseTable();
    const changes = t.apply({ kind: 'snapshot', revision: '1', leases: [b, own, a] });
    expect(changes).toHaveLength(3);
    expect(t.all().map((l) => formatSubnet6(l.ipv6Subnet!))).toEqual(['fc00:0:0:1::/64', 'fc00:0:0:2::/64', 'fc00:0:0:3::/64']);
    expect(t.get(own)?.publicIPv6).toBe('fd77::11');
    const routes = t.routes(own, true);
    expect(routes.map((r) => [r.subnet, r.subnet6 && formatSubnet6(r.subnet6), r.publicIP, r.publicIPv6 !== undefined && formatIPv6(r.publicIPv6)])).toEqual([
      [undefined, 'fc00:0:0:3::/64', 0xc0a84d0d, 'fd77::13'],
      [undefined, 'fc00:0:0:2::/64', 0, 'fd77::12'],
    ]);
    expect(t.apply({ kind: 'events', revision: '2', events: [{ type: 'removed', lease: a }] })).toHaveLength(1);
    expect(t.size).toBe(2);
  });

  it('refuses a second lease for an IPv6 subnet already held', () => {
    const rejected: string[] = [];
    const t = new LeaseTable(undefined, ({ reason }) => rejected.push(reason));
    t.apply({ kind: 'snapshot', revision: '1', leases: [a] });
    t.apply({ kind: 'events', revision: '2', events: [{ type: 'added', lease: lease6('fc00:0:0:2::/65', 'fd77::99') }] });
    expect(rejected).toEqual(['has an IPv6 subnet overlapping fc00:0:0:2::/64 of 0.0.0.0']);
  });

  it('encodes routes without an IPv4 subnet for the native engine with flag 4', () => {
    const routes = [{ publicIP: 0, subnet6: parseSubnet6('fc00:0:0:2::/64'), publicIPv6: parseIPv6('fd77::12') }];
    expect([...encodeRoutes(routes)]).toEqual([0, 0, 0]);
    const six = encodeRoutes6(routes)!;
    expect(six[0]).toBe(1 | 2 | 4);
    expect(six[1]).toBe(64);
    // A dual-stack route has no flag 4.
    expect(encodeRoutes6([{ ...routes[0]!, subnet: parseSubnet('10.244.2.0/24') }])![0]).toBe(1 | 2);
  });
});

describe('IPv6-only overlay: Kubernetes node leases', () => {
  const keys = kubeAnnotations('flannel.alpha.coreos.com');
  const node = (podCIDRs: string[], annotations: Record<string, string>) => ({
    metadata: { name: 'n1', annotations: { [keys.subnetKubeManaged]: 'true', ...annotations } },
    spec: { podCIDRs },
  });

  it('takes only the IPv6 pod CIDR; a node without an IPv4 public-ip gets PublicIP 0.0.0.0', () => {
    const { lease } = nodeToLease(node(['fc00:0:0:5::/64'], { [keys.publicIPv6]: 'fd77::15' }), keys, true, false);
    expect(lease?.subnet).toBeUndefined();
    expect(lease?.ipv6Subnet && formatSubnet6(lease.ipv6Subnet)).toBe('fc00:0:0:5::/64');
    expect([lease?.publicIP, lease?.publicIPv6]).toEqual(['0.0.0.0', 'fd77::15']);
    // An IPv4 pod CIDR beside it is not used: the overlay carries no IPv4.
    const dual = nodeToLease(node(['10.244.5.0/24', 'fc00:0:0:5::/64'], { [keys.publicIP]: '192.168.77.15' }), keys, true, false).lease;
    expect([dual?.subnet, dual?.publicIP]).toEqual([undefined, '192.168.77.15']);
  });

  it('refuses a node with no IPv6 pod CIDR', () => {
    expect(nodeToLease(node(['10.244.5.0/24'], { [keys.publicIP]: '192.168.77.15' }), keys, true, false).reason).toBe('no IPv6 pod CIDR');
  });
});
