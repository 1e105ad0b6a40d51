// The lease document and its plain-text form (no root): formatters, expiry states, the
// store-only view `felt leases` prints from etcd, Kubernetes sources.
import { describe, expect, it } from 'vitest';
import { alignColumns, formatBytes, formatCount, formatDuration } from '../../src/debug/format.js';
import { formatLeaseTable } from '../../src/debug/table.js';
import { buildLeasesView, isLeasesView } from '../../src/debug/view.js';
import { parseSubnet } from '../../src/net/cidr.js';
import { HOUR, etcdLease, sampleSnapshot } from '../debug/state.js';

describe('formatters (no root)', () => {
  it('formats bytes, counts and durations', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 3)).toBe('5.0 GiB');
    expect(formatBytes(-1)).toBe('-');
    expect(formatCount(0)).toBe('0');
    expect(formatCount(1234567)).toBe('1,234,567');
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(65)).toBe('1m05s');
    expect(formatDuration(3600 * 23 + 59 * 60 + 5)).toBe('23h59m');
    expect(formatDuration(86400 * 2 + 3600)).toBe('2d01h');
    expect(formatDuration(-90)).toBe('-1m30s');
  });

  it('aligns columns, right-aligning the ones asked for', () => {
    const lines = alignColumns(
      [
        ['A', 'NUM', 'Z'],
        ['long', '5', 'x'],
        ['b', '12345', 'y'],
      ],
      new Set([1]),
    );
    expect(lines).toEqual(['A       NUM  Z', 'long      5  x', 'b     12345  y']);
  });
});

describe('lease document (no root)', () => {
  it('classifies expiry: ok, expiring (< 10 min), expired, none', () => {
    const snap = sampleSnapshot();
    snap.leases.push({ ...etcdLease('10.244.8.0/24', '192.168.77.18', undefined, '3', null) });
    const v = buildLeasesView(snap, true);
    expect(v.leases.map((l) => [l.subnet, l.expiryState])).toEqual([
      ['10.244.1.0/24', 'ok'],
      ['10.244.2.0/24', 'ok'],
      ['10.244.3.0/24', 'expiring'],
      ['10.244.4.0/24', 'expired'],
      ['10.244.8.0/24', 'none'],
    ]);
    const none = v.leases[4]!;
    expect(none).toMatchObject({ expiresAt: null, expiresInSeconds: null, source: { etcdLeaseId: null } });
    expect(isLeasesView(JSON.parse(JSON.stringify(v)))).toBe(true);
    expect(isLeasesView({ leases: 'no' })).toBe(false);
    expect(formatLeaseTable(v)).toMatch(/10\.244\.8\.0\/24 +192\.168\.77\.18 +never +.*no-lease/);
  });

  it('prints the store-only view (felt leases from etcd) without data-path columns', () => {
    const v = buildLeasesView(
      {
        leases: [etcdLease('10.244.1.0/24', '192.168.77.11', 20 * HOUR, '21'), etcdLease('10.244.2.0/24', '192.168.77.12', 21 * HOUR, '22')],
        store: { backend: 'etcd', connected: true, lastRevision: '22', relists: 0, errors: 0, renewals: 0, renewalFailures: 0 },
        leaseEvents: { added: 0, removed: 0, snapshots: 0, reacquired: 0 },
        startedAt: Date.now(),
      },
      null,
    );
    expect(v).toMatchObject({ ready: null, startedAt: null, uptimeSeconds: null, node: null, datapath: null, leaseCount: 2 });
    const text = formatLeaseTable(v);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^store:\s+etcd revision 22$/);
    const header = lines.find((l) => l.includes('SUBNET'))!;
    expect(header).not.toContain('TX PKTS');
    expect(header.trim().split(/\s{2,}/)).toEqual(['SUBNET', 'PUBLIC IP', 'EXPIRES IN', 'SOURCE']);
    const rows = lines.filter((l) => /^\s+10\.244/.test(l));
    expect(rows).toHaveLength(2);
    const src = header.indexOf('SOURCE');
    expect(rows.map((r) => r.slice(src))).toEqual(['etcd rev 21 lease 694d9a2b1c3e0001', 'etcd rev 22 lease 694d9a2b1c3e0001']);
    expect(text).toContain('2 leases');
    expect(text).not.toContain('this node');
  });

  it('shows Kubernetes sources', () => {
    const snap = sampleSnapshot();
    snap.leases = [{ subnet: parseSubnet('10.244.7.0/24'), publicIP: '192.168.77.17', source: { kind: 'kube', node: 'worker-7', resourceVersion: '4242' }, attrs: {} }];
    const v = buildLeasesView(snap, true);
    expect(v.leases[0]!.source).toEqual({ kind: 'kube', node: 'worker-7', resourceVersion: '4242' });
    expect(formatLeaseTable(v)).toContain('kube node worker-7');
  });
});
