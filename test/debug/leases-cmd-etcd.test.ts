// `felt leases` straight from a real etcd on loopback (needs the etcd binary; no root): the table
// and JSON show flannel-layout keys with their revision, etcd lease and expiry; an unreachable or
// frozen etcd gives one line and exit code 1 in bounded time.
import { PassThrough } from 'node:stream';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LeasesView } from '../../src/debug/view.js';
import { parseFlags } from '../../src/flags.js';
import { runLeasesCommand } from '../../src/leases-cmd.js';
import { leasesSettings } from '../../src/settings.js';
import { freePort, startEtcd, type EtcdServer } from '../testbed/etcd.js';

const PREFIX = '/felt-test/network';
let etcd: EtcdServer;
let client: Etcd3;
const revisions: Record<string, string> = {};
const leaseIds: Record<string, string> = {};

beforeAll(async () => {
  etcd = await startEtcd();
  client = new Etcd3({ hosts: etcd.clientURL });
  await client.put(`${PREFIX}/config`).value(JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } }));
  for (const [subnet, ip] of [
    ['10.244.1.0-24', '192.168.77.11'],
    ['10.244.2.0-24', '192.168.77.12'],
  ] as const) {
    const lease = client.lease(3600, { autoKeepAlive: false });
    leaseIds[subnet] = await lease.grant();
    const res = await lease.put(`${PREFIX}/subnets/${subnet}`).value(JSON.stringify({ PublicIP: ip, PublicIPv6: null })).exec();
    revisions[subnet] = res.header.revision;
  }
  // A reservation: no etcd lease, never expires.
  const res = await client.put(`${PREFIX}/subnets/10.244.3.0-24`).value(JSON.stringify({ PublicIP: '192.168.77.13' })).exec();
  revisions['10.244.3.0-24'] = res.header.revision;
});

afterAll(async () => {
  await client?.close();
  await etcd?.stop();
});

async function run(argv: string[], timeoutMs?: number): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let outText = '';
  let errText = '';
  out.on('data', (c: Buffer) => (outText += c.toString()));
  err.on('data', (c: Buffer) => (errText += c.toString()));
  const code = await runLeasesCommand(leasesSettings(parseFlags('leases', argv, {}), {}), out, { err, timeoutMs });
  return { code, out: outText, err: errText };
}

describe('felt leases from etcd (needs etcd binary)', () => {
  it('prints every lease with revision, etcd lease and expiry', async () => {
    const r = await run(['--etcd-endpoints', etcd.clientURL, '--etcd-prefix', PREFIX]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toMatch(/^store:\s+etcd revision \d+$/);
    const rows = lines.filter((l) => /^\s+10\.244\.\d\.0\/24\s/.test(l));
    expect(rows).toHaveLength(3);
    // Granted with a 3600 s TTL a moment ago.
    expect(rows[0]).toMatch(/10\.244\.1\.0\/24 +192\.168\.77\.11 +(59m\d\ds|1h00m) /);
    expect(rows[0]).toContain(`etcd rev ${revisions['10.244.1.0-24']} lease ${leaseIds['10.244.1.0-24']}`);
    expect(rows[1]).toContain('192.168.77.12');
    expect(rows[2]).toMatch(/10\.244\.3\.0\/24 +192\.168\.77\.13 +never +etcd rev \d+ no-lease/);
    expect(r.out).toContain('3 leases');
  });

  it('prints JSON with the same leases (--json)', async () => {
    const r = await run(['--etcd-endpoints', etcd.clientURL, '--etcd-prefix', PREFIX, '--json']);
    expect(r.code).toBe(0);
    const v = JSON.parse(r.out) as LeasesView;
    expect(v).toMatchObject({ ready: null, node: null, datapath: null, leaseCount: 3 });
    expect(v.leases.map((l) => [l.subnet, l.publicIP])).toEqual([
      ['10.244.1.0/24', '192.168.77.11'],
      ['10.244.2.0/24', '192.168.77.12'],
      ['10.244.3.0/24', '192.168.77.13'],
    ]);
    const first = v.leases[0]!;
    expect(first.source).toEqual({ kind: 'etcd', key: `${PREFIX}/subnets/10.244.1.0-24`, modRevision: revisions['10.244.1.0-24'], etcdLeaseId: leaseIds['10.244.1.0-24'] });
    expect(first.expiresInSeconds).toBeGreaterThan(3000);
    expect(first.expiresInSeconds).toBeLessThanOrEqual(3600);
    expect(v.leases[2]!.expiryState).toBe('none');
    expect(Number(v.store.lastRevision)).toBeGreaterThanOrEqual(Number(revisions['10.244.3.0-24']));
  });

  it('fails with one line and exit code 1 when etcd is unreachable', async () => {
    const port = await freePort();
    const r = await run(['--etcd-endpoints', `http://127.0.0.1:${port}`, '--etcd-prefix', PREFIX], 2000);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(new RegExp(`^felt leases: cannot list leases from etcd at http://127\\.0\\.0\\.1:${port}: .+\\n$`));
  });

  it('gives up on a frozen etcd (bounded time)', async () => {
    etcd.pause();
    try {
      const r = await run(['--etcd-endpoints', etcd.clientURL, '--etcd-prefix', PREFIX], 1000);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(/^felt leases: cannot list leases from etcd at .+\n$/);
    } finally {
      etcd.resume();
    }
  });
});

describe('felt leases from etcd, IPv6-only overlay (needs etcd binary)', () => {
  const V6 = '/felt-test/network6only';
  beforeAll(async () => {
    await client.put(`${V6}/config`).value(JSON.stringify({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/48' }));
    await client.put(`${V6}/subnets/0.0.0.0-0&fc00:0:0:1::-64`).value(JSON.stringify({ PublicIP: '0.0.0.0', PublicIPv6: 'fd77::11' }));
    await client.put(`${V6}/subnets/0.0.0.0-0&fc00:0:0:2::-64`).value(JSON.stringify({ PublicIP: '192.168.77.12', PublicIPv6: null }));
  });

  it('shows "-" for the IPv4 subnet beside the IPv6 one; JSON has subnet null', async () => {
    const r = await run(['--etcd-endpoints', etcd.clientURL, '--etcd-prefix', V6]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/\n\s+-\s+0\.0\.0\.0\s+fc00:0:0:1::\/64\s+fd77::11\s+never/);
    expect(r.out).toMatch(/\n\s+-\s+192\.168\.77\.12\s+fc00:0:0:2::\/64\s+-\s+never/);
    const v = JSON.parse((await run(['--etcd-endpoints', etcd.clientURL, '--etcd-prefix', V6, '--json'])).out) as LeasesView;
    expect(v.leases.map((l) => [l.subnet, l.subnet6, l.publicIP])).toEqual([
      [null, 'fc00:0:0:1::/64', '0.0.0.0'],
      [null, 'fc00:0:0:2::/64', '192.168.77.12'],
    ]);
  });
});
