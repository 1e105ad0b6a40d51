import { describe, expect, it } from 'vitest';
import { LeaseTable } from '../../src/lease/table.js';
import { formatSubnet, parseSubnet, parseIPv4 } from '../../src/net/cidr.js';
import type { Lease } from '../../src/lease/types.js';

const lease = (subnet: string, publicIP: string, rev = '1'): Lease => ({
  subnet: parseSubnet(subnet), publicIP, attrs: { PublicIP: publicIP },
  source: { kind: 'etcd', key: `/coreos.com/network/subnets/${subnet.replace('/', '-')}`, modRevision: rev },
});

describe('LeaseTable', () => {
  it('diffs snapshots into adds and removes', () => {
    const t = new LeaseTable();
    let changes = t.apply({ kind: 'snapshot', revision: '5', leases: [lease('10.244.1.0/24', '192.168.77.11'), lease('10.244.2.0/24', '192.168.77.12')] });
    expect(changes.map((c) => `${c.type} ${formatSubnet(c.lease.subnet!)}`)).toEqual(['added 10.244.1.0/24', 'added 10.244.2.0/24']);
    changes = t.apply({ kind: 'snapshot', revision: '9', leases: [lease('10.244.2.0/24', '192.168.77.12', '7'), lease('10.244.3.0/24', '192.168.77.13')] });
    expect(changes.map((c) => `${c.type} ${formatSubnet(c.lease.subnet!)}`)).toEqual(['removed 10.244.1.0/24', 'added 10.244.3.0/24']);
    expect(t.size).toBe(2);
  });

  it('reports a changed PublicIP as an add, a renewal as nothing', () => {
    const t = new LeaseTable();
    t.apply({ kind: 'events', revision: '2', events: [{ type: 'added', lease: lease('10.244.1.0/24', '192.168.77.11') }] });
    expect(t.apply({ kind: 'events', revision: '3', events: [{ type: 'added', lease: lease('10.244.1.0/24', '192.168.77.11', '3') }] })).toEqual([]);
    const moved = t.apply({ kind: 'events', revision: '4', events: [{ type: 'added', lease: lease('10.244.1.0/24', '192.168.77.99', '4') }] });
    expect(moved).toHaveLength(1);
    expect(t.get({ subnet: parseSubnet('10.244.1.0/24') })?.publicIP).toBe('192.168.77.99');
  });

  it('ignores removal of an unknown lease and leaves our own subnet out of the routes', () => {
    const t = new LeaseTable();
    expect(t.apply({ kind: 'events', revision: '2', events: [{ type: 'removed', lease: lease('10.244.9.0/24', '192.168.77.19') }] })).toEqual([]);
    t.apply({ kind: 'snapshot', revision: '3', leases: [lease('10.244.1.0/24', '192.168.77.11'), lease('10.244.2.0/24', '192.168.77.12')] });
    const routes = t.routes({ subnet: parseSubnet('10.244.1.0/24') });
    expect(routes).toEqual([{ subnet: parseSubnet('10.244.2.0/24'), publicIP: parseIPv4('192.168.77.12') }]);
  });

  it('refuses leases the check rejects and leases overlapping a known one, reporting why', () => {
    const rejected: string[] = [];
    const t = new LeaseTable(
      (l) => (l.subnet!.prefixLen === 0 ? 'is the whole internet' : undefined),
      ({ lease: l, reason }) => rejected.push(`${formatSubnet(l.subnet!)} ${reason}`),
    );
    t.apply({ kind: 'snapshot', revision: '1', leases: [lease('10.244.1.0/24', '192.168.77.11'), lease('0.0.0.0/0', '192.168.77.66')] });
    const changes = t.apply({ kind: 'events', revision: '2', events: [
      { type: 'added', lease: lease('10.244.1.128/25', '192.168.77.66') },
      { type: 'added', lease: lease('10.244.0.0/16', '192.168.77.66') },
      { type: 'added', lease: lease('10.244.2.0/24', '192.168.77.12') },
    ] });
    expect(changes.map((c) => formatSubnet(c.lease.subnet!))).toEqual(['10.244.2.0/24']);
    expect(rejected).toEqual([
      '0.0.0.0/0 is the whole internet',
      '10.244.1.128/25 overlaps the lease 10.244.1.0/24 of 192.168.77.11',
      '10.244.0.0/16 overlaps the lease 10.244.1.0/24 of 192.168.77.11',
    ]);
    expect(t.routes().map((r) => formatSubnet(r.subnet!))).toEqual(['10.244.1.0/24', '10.244.2.0/24']);
    // Once the older lease is gone, the other one may take its place.
    t.apply({ kind: 'events', revision: '3', events: [{ type: 'removed', lease: lease('10.244.1.0/24', '192.168.77.11') }] });
    expect(t.apply({ kind: 'events', revision: '4', events: [{ type: 'added', lease: lease('10.244.1.128/25', '192.168.77.66') }] })).toHaveLength(1);
  });
});
