// felt's BackendV6Data marker (no root): felt nodes in a network with IPv6 say that their tunnel carries
// IPv6 pods; a stock flannel UDP node takes an IPv6 subnet too but writes no marker and is sent IPv4 only.
import type { IKeyValue } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { carriesIPv6, leaseCarriesIPv6 } from '../../src/lease/backend-data.js';
import { leaseValue, parseLeaseKv } from '../../src/lease/etcd/keys.js';

const PREFIX = '/coreos.com/network/subnets/';
const kv = (name: string, value: string): IKeyValue =>
  ({ key: Buffer.from(PREFIX + name), value: Buffer.from(value), lease: '0', mod_revision: '7', create_revision: '7', version: '1' }) as IKeyValue;

describe('BackendV6Data: which leases carry IPv6 pods (no root)', () => {
  it('the value felt writes: the marker only with ipv6Tunnel, so IPv4-only values stay flannel\'s byte for byte', () => {
    expect(leaseValue('192.168.77.2')).toBe('{"PublicIP":"192.168.77.2","PublicIPv6":null}');
    expect(leaseValue('192.168.77.2', undefined, true)).toBe('{"PublicIP":"192.168.77.2","PublicIPv6":null,"BackendV6Data":{"CarriesIPv6":true}}');
  });

  it('parses the marker on a lease with an IPv6 subnet; stock flannel values, other data and IPv4-only keys do not carry IPv6', () => {
    const parse = (name: string, value: string) => {
      const p = parseLeaseKv(kv(name, value), PREFIX);
      if (!p.ok) throw new Error(p.reason);
      return p.lease.carriesIPv6;
    };
    const dual = '10.244.1.0-24&fc00:0:0:1::-64';
    expect(parse(dual, leaseValue('192.168.77.2', 'fd00::2', true))).toBe(true);
    expect(parse(dual, '{"PublicIP":"192.168.77.2","PublicIPv6":null}')).toBeUndefined(); // stock flannel UDP
    expect(parse(dual, '{"PublicIP":"192.168.77.2","PublicIPv6":null,"BackendV6Data":null}')).toBeUndefined();
    expect(parse(dual, '{"PublicIP":"192.168.77.2","PublicIPv6":null,"BackendV6Data":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}')).toBeUndefined();
    expect(parse(dual, '{"PublicIP":"192.168.77.2","PublicIPv6":null,"backendv6data":{"CarriesIPv6":true}}')).toBe(true); // Go matches keys case-insensitively
    expect(parse('10.244.1.0-24', leaseValue('192.168.77.2', undefined, true))).toBeUndefined(); // no IPv6 subnet: nothing to carry
  });

  it('carriesIPv6 accepts only the exact marker', () => {
    expect(carriesIPv6({ CarriesIPv6: true })).toBe(true);
    for (const v of [undefined, null, true, 'CarriesIPv6', [], {}, { CarriesIPv6: 'true' }, { CarriesIPv6: 1 }]) expect(carriesIPv6(v)).toBe(false);
  });

  it('a lease with only an IPv6 subnet (IPv6-only overlay, where no stock flannel node can be) carries IPv6 without the marker', () => {
    const subnet = { ip: 1, prefixLen: 24 };
    const ipv6Subnet = { ip: 1n, prefixLen: 64 };
    expect(leaseCarriesIPv6({ ipv6Subnet })).toBe(true);
    expect(leaseCarriesIPv6({ subnet, ipv6Subnet })).toBe(false);
    expect(leaseCarriesIPv6({ subnet, ipv6Subnet, carriesIPv6: true })).toBe(true);
    expect(leaseCarriesIPv6({ subnet, carriesIPv6: true })).toBe(false);
  });
});
