import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../../src/lease/table.js';
import { parseIPv4, parseSubnet } from '../../src/net/cidr.js';
import { parseIPv6, parseSubnet6 } from '../../src/net/ip6.js';
import type { Lease } from '../../src/lease/types.js';

// A felt lease: an IPv6 subnet comes with felt's BackendV6Data (its tunnel carries IPv6).
const lease = (subnet: string, publicIP: string, subnet6?: string, publicIPv6?: string): Lease => ({
  subnet: parseSubnet(subnet),
  publicIP,
  ...(subnet6 ? { ipv6Subnet: parseSubnet6(subnet6), carriesIPv6: true } : {}),
  ...(publicIPv6 ? { publicIPv6 } : {}),
  attrs: { PublicIP: publicIP, PublicIPv6: publicIPv6 ?? null },
  source: { kind: 'etcd', key: subnet, modRevision: '1' },
});

describe('LeaseTable with IPv6 halves', () => {
  it('routes carry subnet6 and publicIPv6 only when the cluster has IPv6; a peer without an IPv4 underlay has publicIP 0', () => {
    const t = new LeaseTable();
    t.apply({
      kind: 'snapshot',
      revision: '1',
      leases: [
        lease('10.244.1.0/24', '192.168.77.11', 'fc00:0:0:1::/64', 'fd00::11'),
        lease('10.244.2.0/24', '192.168.77.12'), // a stock flannel UDP node: IPv4 only
        lease('10.244.3.0/24', '0.0.0.0', 'fc00:0:0:3::/64', 'fd00::13'),
      ],
    });
    expect(t.routes(undefined, true)).toEqual([
      { subnet: parseSubnet('10.244.1.0/24'), publicIP: parseIPv4('192.168.77.11'), subnet6: parseSubnet6('fc00:0:0:1::/64'), publicIPv6: parseIPv6('fd00::11') },
      { subnet: parseSubnet('10.244.2.0/24'), publicIP: parseIPv4('192.168.77.12') },
      { subnet: parseSubnet('10.244.3.0/24'), publicIP: 0, subnet6: parseSubnet6('fc00:0:0:3::/64'), publicIPv6: parseIPv6('fd00::13') },
    ]);
    expect(t.routes(undefined, false).map((r) => Object.keys(r))).toEqual([['subnet', 'publicIP'], ['subnet', 'publicIP'], ['subnet', 'publicIP']]);
  });

  it("a stock flannel UDP node's IPv6 subnet (no felt BackendV6Data) gets no IPv6 route: it is sent IPv4 only", () => {
    const t = new LeaseTable();
    const { carriesIPv6: _, ...stock } = lease('10.244.2.0/24', '192.168.77.12', 'fc00:0:0:2::/64');
    t.apply({ kind: 'snapshot', revision: '1', leases: [lease('10.244.1.0/24', '192.168.77.11', 'fc00:0:0:1::/64'), stock] });
    expect(t.routes(undefined, true)).toEqual([
      { subnet: parseSubnet('10.244.1.0/24'), publicIP: parseIPv4('192.168.77.11'), subnet6: parseSubnet6('fc00:0:0:1::/64') },
      { subnet: parseSubnet('10.244.2.0/24'), publicIP: parseIPv4('192.168.77.12') },
    ]);
    // The node starts felt: its lease is rewritten with the marker, and the IPv6 route appears.
    t.apply({ kind: 'events', revision: '2', events: [{ type: 'added', lease: lease('10.244.2.0/24', '192.168.77.12', 'fc00:0:0:2::/64') }] });
    expect(t.routes(undefined, true)[1]).toEqual({ subnet: parseSubnet('10.244.2.0/24'), publicIP: parseIPv4('192.168.77.12'), subnet6: parseSubnet6('fc00:0:0:2::/64') });
  });

  it('a changed IPv6 half or PublicIPv6 is an add; a duplicate IPv6 subnet of another node is refused', () => {
    const rejected: string[] = [];
    const t = new LeaseTable(undefined, ({ reason }) => rejected.push(reason));
    t.apply({ kind: 'events', revision: '1', events: [{ type: 'added', lease: lease('10.244.1.0/24', '192.168.77.11', 'fc00:0:0:1::/64') }] });
    const changed = t.apply({ kind: 'events', revision: '2', events: [{ type: 'added', lease: lease('10.244.1.0/24', '192.168.77.11', 'fc00:0:0:1::/64', 'fd00::11') }] });
    expect(changed).toHaveLength(1);
    const dup = t.apply({ kind: 'events', revision: '3', events: [{ type: 'added', lease: lease('10.244.2.0/24', '192.168.77.12', 'fc00:0:0:1::/64') }] });
    expect(dup).toEqual([]);
    const wide = t.apply({ kind: 'events', revision: '4', events: [{ type: 'added', lease: lease('10.244.3.0/24', '192.168.77.13', 'fc00::/48') }] });
    expect(wide).toEqual([]);
    expect(rejected).toEqual([
      'has an IPv6 subnet overlapping fc00:0:0:1::/64 of 192.168.77.11',
      'has an IPv6 subnet overlapping fc00:0:0:1::/64 of 192.168.77.11',
    ]);
    // Once the holder is gone, the subnet is free again.
    t.apply({ kind: 'events', revision: '5', events: [{ type: 'removed', lease: lease('10.244.1.0/24', '192.168.77.11') }] });
    expect(t.apply({ kind: 'events', revision: '6', events: [{ type: 'added', lease: lease('10.244.2.0/24', '192.168.77.12', 'fc00:0:0:1::/64') }] })).toHaveLength(1);
  });
});
