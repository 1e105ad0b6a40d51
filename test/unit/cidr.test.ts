import { describe, expect, it } from 'vitest';
import {
  formatIPv4,
  formatSubnet,
  isIPv4,
  makeSubnet,
  parseIPv4,
  parseSubnet,
  prefixMask,
  subnetContains,
  subnetContainsIP,
  subnetEquals,
  subnetFromKey,
  subnetLast,
  subnetNext,
  subnetSize,
  subnetsOverlap,
  subnetToKey,
  makeSubnetKey,
  parseSubnetKey,
} from '../../src/net/cidr.js';
import { formatSubnet6, parseSubnet6 } from '../../src/net/ip6.js';

describe('parseIPv4 / formatIPv4', () => {
  it('round-trips dotted addresses as unsigned 32-bit numbers', () => {
    for (const text of ['0.0.0.0', '1.2.3.4', '10.244.0.1', '127.0.0.1', '192.168.77.2', '255.255.255.255']) {
      const n = parseIPv4(text);
      expect(n).toBeGreaterThanOrEqual(0);
      expect(n).toBeLessThan(2 ** 32);
      expect(formatIPv4(n)).toBe(text);
    }
    expect(parseIPv4('1.2.3.4')).toBe(0x01020304);
    expect(parseIPv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIPv4('128.0.0.0')).toBe(2 ** 31); // unsigned, not negative
  });

  it('rejects malformed addresses with the text in the error', () => {
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '1.2.3.256', '01.2.3.4', '1.2.3.04', '+1.2.3.4', '1e0.2.3.4', 'a.b.c.d', '1..2.3', '1.2.3.-4', '::1']) {
      expect(() => parseIPv4(bad), bad).toThrow(`invalid IPv4 address "${bad}"`);
      expect(isIPv4(bad)).toBe(false);
    }
    expect(isIPv4('10.0.0.1')).toBe(true);
  });
});

describe('prefixMask / subnetSize', () => {
  it('builds unsigned masks for 0..32', () => {
    expect(prefixMask(0)).toBe(0);
    expect(prefixMask(1)).toBe(0x80000000);
    expect(prefixMask(8)).toBe(0xff000000);
    expect(prefixMask(24)).toBe(0xffffff00);
    expect(prefixMask(31)).toBe(0xfffffffe);
    expect(prefixMask(32)).toBe(0xffffffff);
  });

  it('rejects lengths outside 0..32 and fractions', () => {
    for (const bad of [-1, 33, 1.5, Number.NaN]) expect(() => prefixMask(bad)).toThrow(/invalid prefix length/);
  });

  it('counts addresses', () => {
    expect(subnetSize(24)).toBe(256);
    expect(subnetSize(32)).toBe(1);
    expect(subnetSize(0)).toBe(2 ** 32);
  });
});

describe('parseSubnet / formatSubnet / makeSubnet', () => {
  it('parses and masks host bits unless strict', () => {
    expect(parseSubnet('10.244.0.0/16')).toEqual({ ip: parseIPv4('10.244.0.0'), prefixLen: 16 });
    expect(formatSubnet(parseSubnet('10.5.52.1/24'))).toBe('10.5.52.0/24');
    expect(() => parseSubnet('10.5.52.1/24', true)).toThrow(/host bits set/);
    expect(formatSubnet(parseSubnet('10.5.52.0/24', true))).toBe('10.5.52.0/24');
  });

  it('handles the edges /0 and /32', () => {
    expect(parseSubnet('0.0.0.0/0')).toEqual({ ip: 0, prefixLen: 0 });
    expect(formatSubnet(parseSubnet('1.2.3.4/0'))).toBe('0.0.0.0/0');
    expect(parseSubnet('255.255.255.255/32', true)).toEqual({ ip: 0xffffffff, prefixLen: 32 });
  });

  it('rejects malformed CIDRs clearly', () => {
    expect(() => parseSubnet('10.0.0.0')).toThrow(/missing \/prefix/);
    expect(() => parseSubnet('10.0.0.0/')).toThrow(/bad prefix length/);
    expect(() => parseSubnet('10.0.0.0/-1')).toThrow(/bad prefix length/);
    expect(() => parseSubnet('10.0.0.0/8/9')).toThrow(/bad prefix length/);
    expect(() => parseSubnet('10.0.0.0/123')).toThrow(/bad prefix length/);
    expect(() => parseSubnet('10.0.0.0/33')).toThrow(/prefix length above 32/);
    expect(() => parseSubnet('10.0.0/8')).toThrow(/invalid IPv4 address/);
  });

  it('makeSubnet masks to the prefix, unsigned', () => {
    expect(makeSubnet(0x80000001, 1)).toEqual({ ip: 0x80000000, prefixLen: 1 });
    expect(makeSubnet(0xffffffff, 32)).toEqual({ ip: 0xffffffff, prefixLen: 32 });
    expect(makeSubnet(0xffffffff, 0)).toEqual({ ip: 0, prefixLen: 0 });
  });
});

describe('containment, overlap, equality', () => {
  const s = (t: string) => parseSubnet(t, true);

  it('subnetContainsIP works in the upper half of the address space', () => {
    expect(subnetContainsIP(s('128.0.0.0/1'), parseIPv4('200.1.1.1'))).toBe(true);
    expect(subnetContainsIP(s('128.0.0.0/1'), parseIPv4('100.1.1.1'))).toBe(false);
    expect(subnetContainsIP(s('0.0.0.0/0'), 0xffffffff)).toBe(true);
    expect(subnetContainsIP(s('10.244.1.0/24'), parseIPv4('10.244.1.255'))).toBe(true);
    expect(subnetContainsIP(s('10.244.1.0/24'), parseIPv4('10.244.2.0'))).toBe(false);
  });

  it('subnetContains is one-way; overlap is either way', () => {
    expect(subnetContains(s('192.168.0.0/16'), s('192.168.3.0/24'))).toBe(true);
    expect(subnetContains(s('192.168.3.0/24'), s('192.168.0.0/16'))).toBe(false);
    expect(subnetContains(s('10.0.0.0/24'), s('10.0.0.0/24'))).toBe(true);
    expect(subnetsOverlap(s('10.0.0.0/8'), s('10.5.0.0/16'))).toBe(true);
    expect(subnetsOverlap(s('10.5.0.0/16'), s('10.0.0.0/8'))).toBe(true);
    expect(subnetsOverlap(s('10.0.0.0/16'), s('10.1.0.0/16'))).toBe(false);
    expect(subnetsOverlap(s('10.0.0.0/25'), s('10.0.0.128/25'))).toBe(false);
  });

  it('subnetEquals compares address and length', () => {
    expect(subnetEquals(s('10.0.0.0/24'), s('10.0.0.0/24'))).toBe(true);
    expect(subnetEquals(s('10.0.0.0/24'), s('10.0.0.0/25'))).toBe(false);
  });
});

describe('subnetLast / subnetNext', () => {
  it('gives the broadcast address, unsigned', () => {
    expect(formatIPv4(subnetLast(parseSubnet('10.244.1.0/24')))).toBe('10.244.1.255');
    expect(subnetLast(parseSubnet('255.255.255.0/24'))).toBe(0xffffffff);
    expect(subnetLast(parseSubnet('0.0.0.0/0'))).toBe(0xffffffff);
    expect(subnetLast(parseSubnet('1.2.3.4/32'))).toBe(parseIPv4('1.2.3.4'));
  });

  it('steps to the next subnet of the same size and wraps at 2^32', () => {
    expect(formatSubnet(subnetNext(parseSubnet('10.244.1.0/24')))).toBe('10.244.2.0/24');
    expect(formatSubnet(subnetNext(parseSubnet('10.244.255.0/24')))).toBe('10.245.0.0/24');
    expect(subnetNext(parseSubnet('255.255.255.0/24'))).toEqual({ ip: 0, prefixLen: 24 });
  });
});

describe('etcd subnet keys', () => {
  it('formats flannel keys', () => {
    expect(subnetToKey(parseSubnet('10.5.52.0/24'))).toBe('10.5.52.0-24');
  });

  it('parses the last path element of a key, dual-stack suffix ignored', () => {
    expect(subnetFromKey('10.5.52.0-24')).toEqual(parseSubnet('10.5.52.0/24'));
    expect(subnetFromKey('/coreos.com/network/subnets/10.5.52.0-24')).toEqual(parseSubnet('10.5.52.0/24'));
    expect(subnetFromKey('/coreos.com/network/subnets/10.5.52.0-24&fc00::-64')).toEqual(parseSubnet('10.5.52.0/24'));
  });

  it('returns undefined for anything malformed (never throws)', () => {
    for (const bad of ['', 'config', '10.5.52.1-24', '10.5.52.0-33', '999.5.52.0-24', 'x10.5.52.0-24', '10.5.52.0_24', '10.5.52.0-24/', '10.5.52.0-24&FC00::-64', '10.5.52.0-24&fc00::-64x', '10.5.52.0-']) {
      expect(subnetFromKey(bad), bad).toBeUndefined();
    }
  });

  it('round-trips', () => {
    for (const cidr of ['10.244.1.0/24', '10.0.16.0/20', '192.168.5.4/30', '0.0.0.0/0', '255.255.255.255/32']) {
      expect(formatSubnet(subnetFromKey(subnetToKey(parseSubnet(cidr, true)))!)).toBe(cidr);
    }
  });
});

describe('dual-stack subnet keys (flannel MakeSubnetKey / ParseSubnetKey)', () => {
  it('formats and parses both halves exactly as flannel writes them', () => {
    const subnet6 = parseSubnet6('fc00:0:0:1::/64');
    expect(makeSubnetKey(parseSubnet('10.244.1.0/24'), subnet6)).toBe('10.244.1.0-24&fc00:0:0:1::-64');
    expect(makeSubnetKey(parseSubnet('10.244.1.0/24'))).toBe('10.244.1.0-24');
    const parsed = parseSubnetKey('/coreos.com/network/subnets/10.244.1.0-24&fc00:0:0:1::-64');
    expect(parsed && formatSubnet(parsed.subnet)).toBe('10.244.1.0/24');
    expect(parsed?.subnet6 && formatSubnet6(parsed.subnet6)).toBe('fc00:0:0:1::/64');
    expect(parseSubnetKey('10.244.1.0-24')?.subnet6).toBeUndefined();
  });

  it('rejects a malformed IPv6 half (host bits, bad prefix, bad address) as a whole', () => {
    for (const bad of ['10.244.1.0-24&fc00::1-64', '10.244.1.0-24&fc00::-129', '10.244.1.0-24&fc00:::1-64', '10.244.1.0-24&fc00::-0064']) {
      expect(parseSubnetKey(bad), bad).toBeUndefined();
    }
  });
});
