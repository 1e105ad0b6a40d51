import { describe, expect, it } from 'vitest';
import { parseNetworkConfig } from '../../src/lease/config.js';
import { ConfigError, type NetworkConfig } from '../../src/lease/types.js';
import { formatIPv6, formatSubnet6 } from '../../src/net/ip6.js';

const v6 = (c: NetworkConfig) =>
  c.ipv6 && {
    network: formatSubnet6(c.ipv6.network),
    subnetLen: c.ipv6.subnetLen,
    subnetMin: formatIPv6(c.ipv6.subnetMin),
    subnetMax: formatIPv6(c.ipv6.subnetMax),
  };
const base = { Network: '10.244.0.0/16', EnableIPv6: true };

describe('parseNetworkConfig: IPv6 (flannel defaults)', () => {
  it('EnableIPv4 defaults to true, EnableIPv6 to false: no IPv6 section', () => {
    const c = parseNetworkConfig({ Network: '10.244.0.0/16', IPv6Network: 'fc00::/48' });
    expect(c).toMatchObject({ enableIPv4: true, enableIPv6: false });
    expect(c.ipv6).toBeUndefined();
  });

  it('a /48 gets /64 subnets, the first skipped, up to the last one', () => {
    expect(v6(parseNetworkConfig({ ...base, IPv6Network: 'fc00::/48' }))).toEqual({
      network: 'fc00::/48',
      subnetLen: 64,
      subnetMin: 'fc00:0:0:1::',
      subnetMax: 'fc00:0:0:ffff::',
    });
  });

  it('a /62 still gets /64; longer prefixes get prefix+2; host bits are masked; keys are case-insensitive', () => {
    expect(v6(parseNetworkConfig({ ...base, IPv6Network: 'fc00::/62' }))?.subnetLen).toBe(64);
    expect(v6(parseNetworkConfig({ ...base, ipv6network: 'fc00::1/120' }))).toEqual({
      network: 'fc00::/120',
      subnetLen: 122,
      subnetMin: 'fc00::40',
      subnetMax: 'fc00::c0',
    });
    expect(v6(parseNetworkConfig({ ...base, IPv6Network: 'fc00::/124' }))?.subnetLen).toBe(126);
  });

  it('keeps explicit IPv6SubnetLen/Min/Max; 0 and "::" mean unset', () => {
    expect(
      v6(parseNetworkConfig({ ...base, IPv6Network: 'fc00::/48', IPv6SubnetLen: 56, IPv6SubnetMin: 'fc00:0:0:200::', IPv6SubnetMax: 'fc00:0:0:ff00::' })),
    ).toEqual({ network: 'fc00::/48', subnetLen: 56, subnetMin: 'fc00:0:0:200::', subnetMax: 'fc00:0:0:ff00::' });
    expect(v6(parseNetworkConfig({ ...base, IPv6Network: 'fc00::/48', IPv6SubnetLen: 0, IPv6SubnetMin: '::' }))).toMatchObject({
      subnetLen: 64,
      subnetMin: 'fc00:0:0:1::',
    });
  });

  it('Kubernetes mode checks IPv6Network only', () => {
    const c = parseNetworkConfig({ ...base, IPv6Network: 'fc00::/126' }, { applySubnetDefaults: false });
    expect(v6(c)).toEqual({ network: 'fc00::/126', subnetLen: 0, subnetMin: '::', subnetMax: '::' });
  });
});

describe('parseNetworkConfig: IPv6 errors are one-line ConfigErrors', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['EnableIPv4 false without EnableIPv6', { EnableIPv4: false, Network: '10.0.0.0/16' }, /EnableIPv4 and EnableIPv6 are both false/],
    ['EnableIPv4 false without IPv6Network', { EnableIPv4: false, EnableIPv6: true }, /please define a correct IPv6Network parameter/],
    ['EnableIPv6 not a bool', { ...base, EnableIPv6: 'true' }, /EnableIPv6 must be true or false/],
    ['IPv6Network missing', base, /please define a correct IPv6Network parameter/],
    ['IPv6Network ::/0', { ...base, IPv6Network: '::/0' }, /please define a correct IPv6Network parameter/],
    ['IPv6Network IPv4', { ...base, IPv6Network: '10.0.0.0/8' }, /IPv6Network is not an IPv6 CIDR/],
    ['IPv6Network not a string', { ...base, IPv6Network: 5 }, /IPv6Network must be a CIDR string/],
    ['IPv6Network too small', { ...base, IPv6Network: 'fc00::/125' }, /Minimum useful network prefix is \/124/],
    ['IPv6SubnetLen above 126', { ...base, IPv6Network: 'fc00::/48', IPv6SubnetLen: 127 }, /IPv6SubnetLen must be less than \/127/],
    ['IPv6SubnetLen too short', { ...base, IPv6Network: 'fc00::/48', IPv6SubnetLen: 49 }, /accommodate at least four subnets/],
    ['IPv6SubnetLen not an integer', { ...base, IPv6Network: 'fc00::/48', IPv6SubnetLen: 'x' }, /IPv6SubnetLen must be an integer/],
    ['IPv6SubnetMin outside', { ...base, IPv6Network: 'fc00::/48', IPv6SubnetMin: 'fc01::' }, /IPv6SubnetMin fc01:: is not in the range of the IPv6Network fc00::\/48/],
    ['IPv6SubnetMax outside', { ...base, IPv6Network: 'fc00::/48', IPv6SubnetMax: 'fd00::' }, /IPv6SubnetMax fd00:: is not in the range/],
    ['IPv6SubnetMin unaligned', { ...base, IPv6Network: 'fc00::/48', IPv6SubnetMin: 'fc00:0:0:1::1' }, /IPv6SubnetMin is not on a SubnetLen boundary: fc00:0:0:1::1/],
    ['IPv6SubnetMin not an IP', { ...base, IPv6Network: 'fc00::/48', IPv6SubnetMin: 'x' }, /IPv6SubnetMin is not a valid IPv6 address/],
    ['IPv6SubnetMin above Max', { ...base, IPv6Network: 'fc00::/48', IPv6SubnetMin: 'fc00:0:0:9::', IPv6SubnetMax: 'fc00:0:0:8::' }, /IPv6SubnetMin fc00:0:0:9:: is above IPv6SubnetMax fc00:0:0:8::/],
  ];
  for (const [name, json, message] of cases) {
    it(name, () => {
      let error: unknown;
      try {
        parseNetworkConfig(json);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).not.toContain('\n');
    });
  }
});
