import { describe, expect, it } from 'vitest';
import { addresses6, checkIPv6, lookupRoute6, readRoutes6, udp6Bindings } from '../../src/doctor/ipv6.js';
import { parseIPv6, parseSubnet6 } from '../../src/net/ip6.js';

const NET6 = parseSubnet6('fc00::/48');
const SUB6 = parseSubnet6('fc00:0:0:5::/64');
const ROUTES = [
  'fc000000000000000000000000000000 30 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 flannel0',
  'fd770000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000002 00000000 00000001     eth0',
].join('\n');
const ADDRS = [
  'fc000000000000050000000000000000 05 80 00 80 flannel0',
  'fd770000000000000000000000000011 02 40 00 80     eth0',
].join('\n');

describe('doctor: IPv6 tunnel (no root)', () => {
  it('parses /proc/net/ipv6_route and /proc/net/if_inet6', () => {
    expect(readRoutes6(ROUTES)).toEqual([
      { dest: parseIPv6('fc00::'), prefixLen: 48, iface: 'flannel0' },
      { dest: parseIPv6('fd77::'), prefixLen: 64, iface: 'eth0' },
    ]);
    expect(addresses6('flannel0', ADDRS)).toEqual([parseIPv6('fc00:0:0:5::')]);
  });

  it('ok with the route, the tunnel address and forwarding', () => {
    const r = checkIPv6('flannel0', NET6, SUB6, { routes: readRoutes6(ROUTES), tunAddresses: addresses6('flannel0', ADDRS), forwarding: '1' });
    expect(r.verdict).toBe('ok');
    expect(r.summary).toBe('fc00::/48 dev flannel0, flannel0 has fc00:0:0:5::, IPv6 forwarding on (lease fc00:0:0:5::/64)');
  });

  it('fails naming each missing piece, with a fix', () => {
    const r = checkIPv6('flannel0', NET6, SUB6, { routes: readRoutes6(ROUTES).filter((x) => x.iface !== 'flannel0'), tunAddresses: [], forwarding: '0' });
    expect(r.verdict).toBe('fail');
    expect(r.summary).toBe('no route fc00::/48 dev flannel0; flannel0 lacks its IPv6 tunnel address fc00:0:0:5::/128; net.ipv6.conf.all.forwarding is 0');
    expect(r.fix).toMatch(/restart the agent.*sysctl -w net\.ipv6\.conf\.all\.forwarding=1/);
  });
});

describe('doctor: IPv6 routes that shadow the overlay (no root)', () => {
  const own = 'fc000000000000050000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     cni0';
  const peerRoute = 'fc000000000000070000000000000000 40 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0';
  const peers = [{ subnet6: parseSubnet6('fc00:0:0:7::/64'), publicIP: '0.0.0.0', publicIPv6: 'fd77::17' }, { subnet6: parseSubnet6('fc00:0:0:8::/64'), publicIP: '192.168.77.18' }];

  it('a more specific IPv6 route than IPv6Network, not through the TUN, names the peer it shadows; our own subnet\'s route does not count', () => {
    const routes = readRoutes6([ROUTES, own, peerRoute].join('\n'));
    expect(routes[3]).toEqual({ dest: parseIPv6('fc00:0:0:7::'), prefixLen: 64, iface: 'eth0', gateway: parseIPv6('fe80::1') });
    const r = checkIPv6('flannel0', NET6, SUB6, { routes, tunAddresses: [SUB6.ip], forwarding: '1' }, peers);
    expect(r.verdict).toBe('fail');
    expect(r.summary).toBe('1 IPv6 lease is shadowed: fc00:0:0:7::/64 -> fc00:0:0:7::/64 dev eth0 via fe80::1');
    expect(r.evidence).toEqual(['fc00::/48 dev flannel0 is present, but a more specific IPv6 route wins for fc00:0:0:7::/64 (node fd77::17)']);
    expect(r.fix).toMatch(/^delete the route \(ip -6 route del fc00:0:0:7::\/64 dev eth0\)/);
    expect(checkIPv6('flannel0', NET6, SUB6, { routes: readRoutes6([ROUTES, own].join('\n')), tunAddresses: [SUB6.ip], forwarding: '1' }, peers).verdict).toBe('ok');
  });
});

describe('lookupRoute6 (the underlay MTU check\'s IPv6 route to a peer)', () => {
  it('the longest matching route wins; lo and non-matching routes are skipped; no match: undefined', () => {
    const routes = [
      { dest: 0n, prefixLen: 0, iface: 'eth0' },
      { dest: parseIPv6('fd77::'), prefixLen: 64, iface: 'eth0' },
      { dest: parseIPv6('fd77::12'), prefixLen: 128, iface: 'eth1' },
      { dest: parseIPv6('fd77::11'), prefixLen: 128, iface: 'lo' },
    ];
    expect(lookupRoute6(parseIPv6('fd77::12'), routes)?.iface).toBe('eth1');
    expect(lookupRoute6(parseIPv6('fd77::13'), routes)).toMatchObject({ prefixLen: 64, iface: 'eth0' });
    expect(lookupRoute6(parseIPv6('fd77::11'), routes)).toMatchObject({ prefixLen: 64 });
    expect(lookupRoute6(parseIPv6('2001:db8::1'), routes)).toMatchObject({ prefixLen: 0 });
    expect(lookupRoute6(parseIPv6('2001:db8::1'), routes.slice(1))).toBeUndefined();
  });
});

describe('udp6Bindings', () => {
  const table = [
    '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops',
    '  123: 000077FD000000000000000011000000:205D 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 45678 2 0000000000000000 0',
    '  124: 00000000000000000000000000000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 45679 2 0000000000000000 0',
    '  125: 0000ZZZZ000000000000000011000000:205D 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 0',
    'garbage',
  ].join('\n');
  it('finds the IPv6 underlay socket on the port, address in network order; skips other ports and malformed lines', () => {
    expect(udp6Bindings(8285, table)).toEqual([{ address: 'fd77::11', inode: '45678' }]);
    expect(udp6Bindings(5353, table)).toEqual([{ address: '::', inode: '45679' }]);
    expect(udp6Bindings(8285, '')).toEqual([]);
  });
});
