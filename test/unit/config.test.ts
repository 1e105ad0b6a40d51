import { describe, expect, it } from 'vitest';
import { parseNetworkConfig, parseNetworkConfigText } from '../../src/lease/config.js';
import { formatIPv4, formatSubnet } from '../../src/net/cidr.js';
import type { NetworkConfig } from '../../src/lease/types.js';

const summary = (c: NetworkConfig) => ({
  network: formatSubnet(c.network!),
  subnetLen: c.subnetLen,
  subnetMin: formatIPv4(c.subnetMin!),
  subnetMax: formatIPv4(c.subnetMax!),
  backendType: c.backendType,
  port: c.port,
});

describe('parseNetworkConfig: flannel defaults', () => {
  it('a /16 gets /24 subnets, the first skipped, up to the last one; udp on 8285', () => {
    expect(summary(parseNetworkConfig({ Network: '10.244.0.0/16' }))).toEqual({
      network: '10.244.0.0/16',
      subnetLen: 24,
      subnetMin: '10.244.1.0',
      subnetMax: '10.244.255.0',
      backendType: 'udp',
      port: 8285,
    });
  });

  it('a /22 still gets /24; /23../28 get prefix+2', () => {
    expect(parseNetworkConfig({ Network: '10.0.0.0/22' }).subnetLen).toBe(24);
    expect(summary(parseNetworkConfig({ Network: '10.0.0.0/23' }))).toMatchObject({
      subnetLen: 25,
      subnetMin: '10.0.0.128',
      subnetMax: '10.0.1.128',
    });
    expect(summary(parseNetworkConfig({ Network: '192.168.5.0/28' }))).toMatchObject({
      subnetLen: 30,
      subnetMin: '192.168.5.4',
      subnetMax: '192.168.5.12',
    });
  });

  it('a network longer than /28 is rejected', () => {
    expect(() => parseNetworkConfig({ Network: '10.0.0.0/29' })).toThrow(/Minimum useful network prefix is \/28/);
  });

  it("keeps the documented example's explicit values", () => {
    const c = parseNetworkConfig({
      Network: '10.0.0.0/8',
      SubnetLen: 20,
      SubnetMin: '10.10.0.0',
      SubnetMax: '10.99.0.0',
      Backend: { Type: 'udp', Port: 7890 },
    });
    expect(summary(c)).toEqual({
      network: '10.0.0.0/8',
      subnetLen: 20,
      subnetMin: '10.10.0.0',
      subnetMax: '10.99.0.0',
      backendType: 'udp',
      port: 7890,
    });
  });

  it('SubnetLen 0 and SubnetMin/Max 0.0.0.0 mean unset (Go zero values)', () => {
    expect(summary(parseNetworkConfig({ Network: '10.244.0.0/16', SubnetLen: 0, SubnetMin: '0.0.0.0' }))).toMatchObject({
      subnetLen: 24,
      subnetMin: '10.244.1.0',
    });
  });

  it('keys match case-insensitively, as Go JSON does', () => {
    const c = parseNetworkConfig({ network: '10.5.0.0/16', subnetlen: 26, BACKEND: { type: 'UDP', port: 9000 } });
    expect(summary(c)).toMatchObject({ network: '10.5.0.0/16', subnetLen: 26, backendType: 'udp', port: 9000 });
  });

  it('missing, null or empty Backend and empty Type mean udp', () => {
    for (const backend of [undefined, null, {}, { Type: '' }]) {
      expect(parseNetworkConfig({ Network: '10.1.0.0/16', Backend: backend }).backendType).toBe('udp');
    }
  });

  it('masks host bits in Network, as flannel does', () => {
    expect(formatSubnet(parseNetworkConfig({ Network: '10.244.7.9/16' }).network!)).toBe('10.244.0.0/16');
  });

  it('keeps the raw JSON', () => {
    const raw = { Network: '10.1.0.0/16', EnableNFTables: false };
    expect(parseNetworkConfig(raw).raw).toBe(raw);
  });
});

describe('parseNetworkConfig: errors name the key', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an object', [1, 2], /network config must be a JSON object/],
    ['null', null, /must be a JSON object, got null/],
    ['no Network', { SubnetLen: 24 }, /Network is missing/],
    ['Network not a string', { Network: 10 }, /Network must be a CIDR string/],
    ['Network garbage', { Network: '10.0.0/16' }, /Network: invalid IPv4 address/],
    ['Network without prefix', { Network: '10.0.0.0' }, /Network: .*missing \/prefix/],
    ['Network 0.0.0.0/0', { Network: '0.0.0.0/0' }, /Network 0\.0\.0\.0\/0/],
    ['SubnetLen above 30', { Network: '10.0.0.0/8', SubnetLen: 31 }, /SubnetLen must be at most 30/],
    ['SubnetLen too short', { Network: '10.0.0.0/16', SubnetLen: 17 }, /SubnetLen 17 is too short.*at least \/18/],
    ['SubnetLen not an integer', { Network: '10.0.0.0/16', SubnetLen: 24.5 }, /SubnetLen must be an integer/],
    ['SubnetLen a string', { Network: '10.0.0.0/16', SubnetLen: '24' }, /SubnetLen must be an integer/],
    ['SubnetLen negative', { Network: '10.0.0.0/16', SubnetLen: -1 }, /SubnetLen must be an integer/],
    ['SubnetMin outside', { Network: '10.0.0.0/16', SubnetMin: '10.1.0.0' }, /SubnetMin 10\.1\.0\.0 is not in the range of the Network/],
    ['SubnetMax outside', { Network: '10.0.0.0/16', SubnetMax: '11.0.0.0' }, /SubnetMax 11\.0\.0\.0 is not in the range/],
    ['SubnetMin unaligned', { Network: '10.0.0.0/16', SubnetMin: '10.0.1.5' }, /SubnetMin 10\.0\.1\.5 is not on a SubnetLen \(\/24\) boundary/],
    ['SubnetMax unaligned', { Network: '10.0.0.0/16', SubnetMax: '10.0.9.128' }, /SubnetMax 10\.0\.9\.128 is not on a SubnetLen/],
    ['SubnetMin not an IP', { Network: '10.0.0.0/16', SubnetMin: 'ten' }, /SubnetMin is not a valid IPv4 address/],
    ['SubnetMax a number', { Network: '10.0.0.0/16', SubnetMax: 167772160 }, /SubnetMax must be a dotted IPv4 address string/],
    ['SubnetMin above SubnetMax', { Network: '10.0.0.0/16', SubnetMin: '10.0.9.0', SubnetMax: '10.0.8.0' }, /SubnetMin 10\.0\.9\.0 is above SubnetMax 10\.0\.8\.0/],
    ['vxlan backend', { Network: '10.0.0.0/16', Backend: { Type: 'vxlan' } }, /Backend\.Type "vxlan" is not supported.*only the "udp" backend/],
    ['host-gw backend', { Network: '10.0.0.0/16', Backend: { Type: 'host-gw' } }, /Backend\.Type "host-gw"/],
    ['Backend not an object', { Network: '10.0.0.0/16', Backend: 'udp' }, /Backend must be a JSON object/],
    ['Type not a string', { Network: '10.0.0.0/16', Backend: { Type: 1 } }, /Backend\.Type must be a string/],
    ['Port 0', { Network: '10.0.0.0/16', Backend: { Port: 0 } }, /Backend\.Port must be an integer 1\.\.65535, got 0/],
    ['Port too big', { Network: '10.0.0.0/16', Backend: { Port: 65536 } }, /Backend\.Port must be an integer 1\.\.65535/],
    ['Port a string', { Network: '10.0.0.0/16', Backend: { Port: '8285' } }, /Backend\.Port/],
    ['EnableIPv4 false', { Network: '10.0.0.0/16', EnableIPv4: false }, /EnableIPv4 and EnableIPv6 are both false/],
  ];
  for (const [name, json, message] of cases) {
    it(name, () => {
      expect(() => parseNetworkConfig(json)).toThrow(message);
    });
  }

  it('every error is a single line', () => {
    for (const [, json] of cases) {
      try {
        parseNetworkConfig(json);
      } catch (err) {
        expect((err as Error).message).not.toContain('\n');
      }
    }
  });
});

describe('parseNetworkConfig without subnet defaults (Kubernetes mode)', () => {
  it('skips the SubnetLen/Min/Max defaults and checks', () => {
    const c = parseNetworkConfig({ Network: '10.244.0.0/30' }, { applySubnetDefaults: false });
    expect(c).toMatchObject({ subnetLen: 0, subnetMin: 0, subnetMax: 0, backendType: 'udp', port: 8285 });
    const odd = parseNetworkConfig({ Network: '10.244.0.0/16', SubnetLen: 31, SubnetMin: '10.9.0.0' }, { applySubnetDefaults: false });
    expect(odd.subnetLen).toBe(31);
  });

  it('still checks syntax, Network and Backend', () => {
    expect(() => parseNetworkConfig({ Network: '10.244.0.0/16', SubnetMin: 'x' }, { applySubnetDefaults: false })).toThrow(/SubnetMin/);
    expect(() => parseNetworkConfig({}, { applySubnetDefaults: false })).toThrow(/Network is missing/);
    expect(() => parseNetworkConfig({ Network: '10.0.0.0/8', Backend: { Type: 'vxlan' } }, { applySubnetDefaults: false })).toThrow(/vxlan/);
  });
});

describe('parseNetworkConfigText', () => {
  it('parses JSON text', () => {
    expect(parseNetworkConfigText('{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}').subnetLen).toBe(24);
  });

  it('reports invalid JSON clearly', () => {
    expect(() => parseNetworkConfigText('{"Network": "10.244.0.0/16",')).toThrow(/^network config is not valid JSON: /);
    expect(() => parseNetworkConfigText('')).toThrow(/not valid JSON/);
  });

  it('passes options through', () => {
    expect(parseNetworkConfigText('{"Network":"10.244.0.0/29"}', { applySubnetDefaults: false }).subnetLen).toBe(0);
  });
});
