import { describe, expect, it } from 'vitest';
import { countSubnets, freeSubnets, isCompatible, MAX_CANDIDATES, pickFreeSubnet } from '../../src/lease/allocate.js';
import { parseNetworkConfig } from '../../src/lease/config.js';
import type { IPv4Overlay, NetworkConfig } from '../../src/lease/types.js';
import { formatSubnet, parseSubnet } from '../../src/net/cidr.js';

/** An IPv4 config (these functions take the IPv4 overlay's bounds). */
function v4(json: unknown): NetworkConfig & IPv4Overlay {
  const config = parseNetworkConfig(json);
  if (!config.enableIPv4) throw new Error('expected an IPv4 config');
  return config;
}

const net16 = v4({ Network: '10.244.0.0/16' });
const fmt = (subnets: Array<{ ip: number; prefixLen: number }>) => subnets.map(formatSubnet);
const subnets = (...cidrs: string[]) => cidrs.map((c) => parseSubnet(c, true));

describe('isCompatible', () => {
  it('accepts a subnet of the right length inside [SubnetMin, SubnetMax]', () => {
    expect(isCompatible(parseSubnet('10.244.1.0/24'), net16)).toBe(true);
    expect(isCompatible(parseSubnet('10.244.255.0/24'), net16)).toBe(true);
  });

  it('rejects the skipped first subnet, other lengths, and subnets outside the network or the range', () => {
    expect(isCompatible(parseSubnet('10.244.0.0/24'), net16)).toBe(false);
    expect(isCompatible(parseSubnet('10.244.4.0/23'), net16)).toBe(false);
    expect(isCompatible(parseSubnet('10.244.4.0/25'), net16)).toBe(false);
    expect(isCompatible(parseSubnet('10.245.1.0/24'), net16)).toBe(false);
    const narrow = v4({ Network: '10.0.0.0/8', SubnetLen: 20, SubnetMin: '10.10.0.0', SubnetMax: '10.99.0.0' });
    expect(isCompatible(parseSubnet('10.10.0.0/20'), narrow)).toBe(true);
    expect(isCompatible(parseSubnet('10.99.0.0/20'), narrow)).toBe(true);
    expect(isCompatible(parseSubnet('10.9.240.0/20'), narrow)).toBe(false);
    expect(isCompatible(parseSubnet('10.99.16.0/20'), narrow)).toBe(false);
  });
});

describe('freeSubnets', () => {
  it('walks from SubnetMin in address order and stops at 100 candidates', () => {
    const free = freeSubnets(net16, []);
    expect(free).toHaveLength(MAX_CANDIDATES);
    expect(formatSubnet(free[0]!)).toBe('10.244.1.0/24');
    expect(formatSubnet(free[99]!)).toBe('10.244.100.0/24');
  });

  it('skips subnets overlapping a lease of any size', () => {
    const taken = subnets('10.244.1.0/24', '10.244.2.128/25', '10.244.4.0/22', '10.244.9.0/24');
    expect(fmt(freeSubnets(net16, taken, 5))).toEqual([
      '10.244.3.0/24',
      '10.244.8.0/24',
      '10.244.10.0/24',
      '10.244.11.0/24',
      '10.244.12.0/24',
    ]);
  });

  it('ignores leases outside the range', () => {
    expect(fmt(freeSubnets(net16, subnets('10.244.0.0/24', '192.168.0.0/16'), 1))).toEqual(['10.244.1.0/24']);
  });

  it('stays inside SubnetMax, even at the top of the address space', () => {
    const top = v4({ Network: '255.255.255.0/24' });
    expect(fmt(freeSubnets(top, []))).toEqual(['255.255.255.64/26', '255.255.255.128/26', '255.255.255.192/26']);
  });

  it('returns nothing when every subnet is taken', () => {
    const tiny = v4({ Network: '10.9.0.0/28' }); // /30s: .4 .8 .12
    expect(countSubnets(tiny)).toBe(3);
    expect(freeSubnets(tiny, subnets('10.9.0.4/30', '10.9.0.8/30', '10.9.0.12/30'))).toEqual([]);
    expect(freeSubnets(tiny, subnets('10.9.0.0/28'))).toEqual([]);
  });

  it('handles 5,000 taken subnets', () => {
    const wide = v4({ Network: '10.0.0.0/8' });
    const taken = Array.from({ length: 5000 }, (_, i) => ({ ip: (10 << 24) + (i + 1) * 256, prefixLen: 24 }));
    const free = freeSubnets(wide, taken);
    expect(free).toHaveLength(100);
    expect(formatSubnet(free[0]!)).toBe('10.19.137.0/24'); // 5001 * 256 past 10.0.0.0
  });
});

describe('pickFreeSubnet', () => {
  it('picks among the free candidates with the injected random source', () => {
    const taken = subnets('10.244.2.0/24');
    expect(formatSubnet(pickFreeSubnet(net16, taken, () => 0)!)).toBe('10.244.1.0/24');
    expect(formatSubnet(pickFreeSubnet(net16, taken, () => 0.999999)!)).toBe('10.244.101.0/24');
    expect(formatSubnet(pickFreeSubnet(net16, taken, () => 0.015)!)).toBe('10.244.3.0/24');
  });

  it('survives a random source that returns 1', () => {
    expect(pickFreeSubnet(net16, [], () => 1)).toBeDefined();
  });

  it('returns undefined when nothing is free', () => {
    const tiny = v4({ Network: '10.9.0.0/28' });
    expect(pickFreeSubnet(tiny, subnets('10.9.0.0/28'))).toBeUndefined();
  });

  it('spreads picks over the candidates', () => {
    let seed = 1;
    const random = () => ((seed = (seed * 48271) % 2147483647) / 2147483647);
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) seen.add(formatSubnet(pickFreeSubnet(net16, [], random)!));
    expect(seen.size).toBeGreaterThan(50);
    for (const s of seen) expect(isCompatible(parseSubnet(s), net16)).toBe(true);
  });
});
