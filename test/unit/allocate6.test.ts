import { describe, expect, it } from 'vitest';
import { countSubnets6, freeSubnets6, isCompatible6, MAX_CANDIDATES, pickFreeSubnet6 } from '../../src/lease/allocate.js';
import { parseNetworkConfig } from '../../src/lease/config.js';
import { formatSubnet6, parseSubnet6, type Subnet6 } from '../../src/net/ip6.js';

const dual = parseNetworkConfig({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48' }).ipv6!;
const fmt = (s: Subnet6[]) => s.map(formatSubnet6);
const subnets = (...cidrs: string[]) => cidrs.map((c) => parseSubnet6(c, true));

describe('isCompatible6 (flannel isIPv6SubnetConfigCompat)', () => {
  it('with IPv6 enabled: a subnet of the right length in [IPv6SubnetMin, IPv6SubnetMax]', () => {
    expect(isCompatible6(parseSubnet6('fc00:0:0:1::/64'), dual)).toBe(true);
    expect(isCompatible6(parseSubnet6('fc00:0:0:ffff::/64'), dual)).toBe(true);
    expect(isCompatible6(parseSubnet6('fc00::/64'), dual)).toBe(false); // the skipped first subnet
    expect(isCompatible6(parseSubnet6('fc00:0:0:1::/80'), dual)).toBe(false);
    expect(isCompatible6(parseSubnet6('fc00:1::/64'), dual)).toBe(false);
    expect(isCompatible6(undefined, dual)).toBe(false);
  });

  it('with IPv6 disabled: only a lease without an IPv6 subnet', () => {
    expect(isCompatible6(undefined, undefined)).toBe(true);
    expect(isCompatible6(parseSubnet6('fc00:0:0:1::/64'), undefined)).toBe(false);
  });
});

describe('freeSubnets6 / pickFreeSubnet6', () => {
  it('walks from IPv6SubnetMin in order, skipping overlaps of any size, stopping at 100', () => {
    const free = freeSubnets6(dual, subnets('fc00:0:0:1::/64', 'fc00:0:0:2::/80', 'fc00:0:0:4::/63'));
    expect(fmt(free.slice(0, 3))).toEqual(['fc00:0:0:3::/64', 'fc00:0:0:6::/64', 'fc00:0:0:7::/64']);
    expect(free).toHaveLength(MAX_CANDIDATES);
  });

  it('stays inside IPv6SubnetMax at the top of the address space, and is empty when all are taken', () => {
    const top = parseNetworkConfig({ Network: '10.0.0.0/16', EnableIPv6: true, IPv6Network: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124' }).ipv6!;
    expect(countSubnets6(top)).toBe(3n);
    expect(fmt(freeSubnets6(top, []))).toEqual(['ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff4/126', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff8/126', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffc/126']);
    expect(pickFreeSubnet6(top, subnets('ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124'))).toBeUndefined();
  });

  it('picks with the injected random source and survives 1', () => {
    expect(formatSubnet6(pickFreeSubnet6(dual, [], () => 0)!)).toBe('fc00:0:0:1::/64');
    expect(formatSubnet6(pickFreeSubnet6(dual, [], () => 1)!)).toBe('fc00:0:0:64::/64');
  });
});
