import { describe, expect, it } from 'vitest';
import { formatIPv4, parseIPv4, parseSubnet } from '../../src/net/cidr.js';
import { RouteTable, subnetsContain } from '../../src/datapath/routes.js';
import { ipv6ToBytes, parseIPv6, parseSubnet6 } from '../../src/net/ip6.js';
import type { Route } from '../../src/datapath/types.js';

function route(cidr: string, publicIP: string): Route {
  return { subnet: parseSubnet(cidr), publicIP: parseIPv4(publicIP) };
}

function peerOf(table: RouteTable, dst: string): string | undefined {
  const r = table.lookup(parseIPv4(dst));
  return r === undefined ? undefined : formatIPv4(r.publicIP);
}

describe('RouteTable.lookup', () => {
  it('finds nothing in an empty table', () => {
    const t = new RouteTable([]);
    expect(t.size).toBe(0);
    expect(t.lookup(parseIPv4('10.244.1.1'))).toBeUndefined();
  });

  it('matches /24 leases and misses addresses outside them', () => {
    const t = new RouteTable([route('10.244.1.0/24', '192.168.77.2'), route('10.244.2.0/24', '192.168.77.3')]);
    expect(peerOf(t, '10.244.1.0')).toBe('192.168.77.2');
    expect(peerOf(t, '10.244.1.255')).toBe('192.168.77.2');
    expect(peerOf(t, '10.244.2.17')).toBe('192.168.77.3');
    expect(peerOf(t, '10.244.3.1')).toBeUndefined();
    expect(peerOf(t, '10.243.255.255')).toBeUndefined();
  });

  it('prefers the longest prefix among overlapping routes', () => {
    const t = new RouteTable([
      route('10.0.0.0/8', '192.168.77.8'),
      route('10.244.0.0/16', '192.168.77.16'),
      route('10.244.5.0/24', '192.168.77.24'),
      route('10.244.5.128/25', '192.168.77.25'),
      route('10.244.5.7/32', '192.168.77.32'),
    ]);
    expect(peerOf(t, '10.1.1.1')).toBe('192.168.77.8');
    expect(peerOf(t, '10.244.9.9')).toBe('192.168.77.16');
    expect(peerOf(t, '10.244.5.6')).toBe('192.168.77.24');
    expect(peerOf(t, '10.244.5.200')).toBe('192.168.77.25');
    expect(peerOf(t, '10.244.5.7')).toBe('192.168.77.32');
    expect(peerOf(t, '11.0.0.1')).toBeUndefined();
  });

  it('is independent of the input order', () => {
    const routes = [route('10.244.5.0/24', '192.168.77.24'), route('10.244.0.0/16', '192.168.77.16')];
    const a = new RouteTable(routes);
    const b = new RouteTable([...routes].reverse());
    for (const dst of ['10.244.5.1', '10.244.6.1']) expect(peerOf(a, dst)).toBe(peerOf(b, dst));
  });

  it('handles a /0 default and a /32 host route', () => {
    const t = new RouteTable([route('0.0.0.0/0', '192.168.77.1'), route('255.255.255.255/32', '192.168.77.2')]);
    expect(peerOf(t, '0.0.0.0')).toBe('192.168.77.1');
    expect(peerOf(t, '8.8.8.8')).toBe('192.168.77.1');
    expect(peerOf(t, '255.255.255.254')).toBe('192.168.77.1');
    expect(peerOf(t, '255.255.255.255')).toBe('192.168.77.2');
  });

  it('masks host bits out of a route subnet', () => {
    const t = new RouteTable([{ subnet: { ip: parseIPv4('10.244.7.99'), prefixLen: 24 }, publicIP: 1 }]);
    expect(t.lookup(parseIPv4('10.244.7.1'))?.subnet.ip).toBe(parseIPv4('10.244.7.0'));
  });

  it('keeps the later of two routes for the same subnet', () => {
    const t = new RouteTable([route('10.244.1.0/24', '192.168.77.2'), route('10.244.1.0/24', '192.168.77.9')]);
    expect(t.size).toBe(1);
    expect(peerOf(t, '10.244.1.1')).toBe('192.168.77.9');
    expect(t.subnetsOf(parseIPv4('192.168.77.2'))).toBeUndefined();
  });

  it('serves 5,000 leases: every lease found, neighbours outside missed', () => {
    const routes: Route[] = [];
    for (let i = 0; i < 5000; i++) {
      // 10.0.0.0/8 carved into /24s: 10.<hi>.<lo>.0
      routes.push({ subnet: { ip: (parseIPv4('10.0.0.0') + i * 256) >>> 0, prefixLen: 24 }, publicIP: 0xc0a80000 + i });
    }
    const t = new RouteTable(routes);
    expect(t.size).toBe(5000);
    for (let i = 0; i < 5000; i++) {
      const r = t.lookup((parseIPv4('10.0.0.0') + i * 256 + (i % 256)) >>> 0);
      expect(r?.publicIP).toBe(0xc0a80000 + i);
    }
    expect(t.lookup((parseIPv4('10.0.0.0') + 5000 * 256) >>> 0)).toBeUndefined();
    expect(t.lookup(parseIPv4('9.255.255.255'))).toBeUndefined();
  });
});

describe('RouteTable admission', () => {
  const t = new RouteTable([
    route('10.244.1.0/24', '192.168.77.2'),
    route('10.244.2.0/24', '192.168.77.3'),
    route('10.244.9.0/24', '192.168.77.3'), // one peer holding two leases
  ]);

  it('lists the subnets of each peer', () => {
    expect(t.subnetsOf(parseIPv4('192.168.77.2'))).toEqual([parseSubnet('10.244.1.0/24')]);
    expect(t.subnetsOf(parseIPv4('192.168.77.3'))).toHaveLength(2);
    expect(t.subnetsOf(parseIPv4('192.168.77.4'))).toBeUndefined();
    expect([...t.peers()].map(formatIPv4).sort()).toEqual(['192.168.77.2', '192.168.77.3']);
  });

  it('admits inner sources from the sender\'s own subnets only', () => {
    const b = parseIPv4('192.168.77.3');
    expect(t.admits(b, parseIPv4('10.244.2.0'))).toBe(true);
    expect(t.admits(b, parseIPv4('10.244.9.200'))).toBe(true);
    expect(t.admits(b, parseIPv4('10.244.1.5'))).toBe(false); // another peer's subnet
    expect(t.admits(b, parseIPv4('10.244.3.1'))).toBe(false);
    expect(t.admits(parseIPv4('192.168.77.4'), parseIPv4('10.244.2.1'))).toBe(false); // stranger
  });

  it('subnetsContain handles /0 and /32', () => {
    expect(subnetsContain([parseSubnet('0.0.0.0/0')], parseIPv4('1.2.3.4'))).toBe(true);
    expect(subnetsContain([parseSubnet('1.2.3.4/32')], parseIPv4('1.2.3.4'))).toBe(true);
    expect(subnetsContain([parseSubnet('1.2.3.4/32')], parseIPv4('1.2.3.5'))).toBe(false);
    expect(subnetsContain([], 0)).toBe(false);
  });
});

describe('RouteTable, IPv6', () => {
  const r6 = (cidr4: string, publicIP: string, cidr6?: string, publicIPv6?: string): Route => ({
    subnet: parseSubnet(cidr4),
    publicIP: publicIP === '' ? 0 : parseIPv4(publicIP),
    ...(cidr6 ? { subnet6: parseSubnet6(cidr6) } : {}),
    ...(publicIPv6 ? { publicIPv6: parseIPv6(publicIPv6) } : {}),
  });
  const at = (ip: string): Buffer => Buffer.from(ipv6ToBytes(parseIPv6(ip)));
  const peer6 = (t: RouteTable, dst: string) => t.lookup6(at(dst), 0)?.key;

  it('matches IPv6 leases by longest prefix, misses addresses outside them', () => {
    const t = new RouteTable([
      r6('10.244.1.0/24', '192.168.77.2', 'fd00:10:244:1::/64'),
      r6('10.244.2.0/24', '192.168.77.3', 'fd00:10:244::/48'),
      r6('10.244.3.0/24', '192.168.77.4', 'fd00:10:244:1:8000::/65'),
      r6('10.244.4.0/24', '192.168.77.5'),
    ]);
    expect(t.size6).toBe(3);
    expect(peer6(t, 'fd00:10:244:1::5')).toBe('192.168.77.2');
    expect(peer6(t, 'fd00:10:244:1:8000::5')).toBe('192.168.77.4');
    expect(peer6(t, 'fd00:10:244:7::5')).toBe('192.168.77.3');
    expect(peer6(t, 'fd00:10:245::1')).toBeUndefined();
    expect(new RouteTable([]).lookup6(at('::1'), 0)).toBeUndefined();
  });

  it('handles /128 and /0, and masks host bits out of a route subnet', () => {
    const t = new RouteTable([r6('10.0.0.0/24', '1.1.1.1', '::/0'), r6('10.0.1.0/24', '1.1.1.2', 'fd00::1/128')]);
    expect(peer6(t, 'fd00::1')).toBe('1.1.1.2');
    expect(peer6(t, 'fd00::2')).toBe('1.1.1.1');
    const masked = new RouteTable([{ subnet: parseSubnet('10.0.0.0/24'), publicIP: 1, subnet6: { ip: parseIPv6('fd00:1:2:3:4::9'), prefixLen: 64 } }]);
    expect(peer6(masked, 'fd00:1:2:3::1')).toBe('0.0.0.1');
  });

  it('serves 5,000 IPv6 leases: every lease found, neighbours outside missed', () => {
    const routes: Route[] = [];
    for (let i = 0; i < 5000; i++) {
      routes.push(r6(`10.${(i >> 8) & 255}.${i & 255}.0/24`, `172.16.${(i >> 8) & 255}.${i & 255}`, `fd00:10:${(2 * i).toString(16)}::/64`));
    }
    const t = new RouteTable(routes);
    for (let i = 0; i < 5000; i++) {
      expect(peer6(t, `fd00:10:${(2 * i).toString(16)}::${i.toString(16)}`)).toBe(`172.16.${(i >> 8) & 255}.${i & 255}`);
      expect(peer6(t, `fd00:10:${(2 * i + 1).toString(16)}::1`)).toBeUndefined();
    }
  });

  it('identifies peers by IPv4 PublicIP, or by PublicIPv6 without one; finds them by either underlay address', () => {
    const t = new RouteTable([
      r6('10.244.1.0/24', '192.168.77.2', 'fd00:10:244:1::/64', 'fd77::2'),
      r6('10.244.9.0/24', '192.168.77.2', 'fd00:10:244:9::/64'),
      r6('10.244.5.0/24', '', 'fd00:10:244:5::/64', 'fd77::5'),
    ]);
    expect(t.peerList.map((p) => p.key)).toEqual(['192.168.77.2', 'fd77::5']);
    expect(t.peerByIPv4(parseIPv4('192.168.77.2'))?.subnets6).toHaveLength(2);
    expect(t.peerByIPv6(at('fd77::2'), 0)?.key).toBe('192.168.77.2');
    expect(t.peerByIPv6(at('fd77::5'), 0)?.key).toBe('fd77::5');
    expect(t.peerByIPv6(at('fd77::6'), 0)).toBeUndefined();
    expect(t.peerByIPv4(0)).toBeUndefined();
    expect(t.peers()).toEqual([parseIPv4('192.168.77.2')]);
  });
});
