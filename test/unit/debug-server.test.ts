// The debug HTTP server against a hand-built AgentState (no root): routes, formats, errors,
// listen addresses (TCP port 0, unix sockets, stale sockets).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DROP_REASONS } from '../../src/datapath/types.js';
import { parseListenAddress, startDebugServer, type DebugServer } from '../../src/debug/server.js';
import type { LeasesView } from '../../src/debug/view.js';
import { httpRequest } from '../debug/http.js';
import { HandState, etcdLease, sampleSnapshot } from '../debug/state.js';

const log = pino({ level: 'silent' });
const servers: DebugServer[] = [];
const dir = mkdtempSync(join(tmpdir(), 'felt-debug-test-'));

afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function start(state: HandState, addr = '127.0.0.1:0', options?: { only?: 'health' }): Promise<DebugServer> {
  const s = await startDebugServer(addr, state, log, options);
  servers.push(s);
  return s;
}

describe('debug server (no root)', () => {
  it('binds port 0 and reports the real address', async () => {
    const s = await start(new HandState());
    expect(s.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(s.address.endsWith(':0')).toBe(false);
  });

  it('/healthz is always 200; /readyz follows state.ready()', async () => {
    const state = new HandState();
    const s = await start(state);
    const h = await httpRequest(s.address, '/healthz');
    expect(h.status).toBe(200);
    expect(h.body.trim()).toBe('ok');
    expect((await httpRequest(s.address, '/readyz')).status).toBe(503);
    state.isReady = true;
    expect((await httpRequest(s.address, '/readyz')).status).toBe(200);
    state.isReady = false;
    expect((await httpRequest(s.address, '/readyz')).status).toBe(503);
  });

  it('/leases JSON: node, every lease with expiry, source, self flag and joined peer counters', async () => {
    const state = new HandState();
    state.isReady = true;
    const s = await start(state);
    const r = await httpRequest(s.address, '/leases');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^application\/json/);
    const v = JSON.parse(r.body) as LeasesView;

    expect(v.formatVersion).toBe(1);
    expect(v.ready).toBe(true);
    expect(new Date(v.generatedAt).toString()).not.toBe('Invalid Date');
    expect(v.uptimeSeconds).toBeGreaterThanOrEqual(3 * 3600 - 5);
    expect(v.node).toMatchObject({ subnet: '10.244.1.0/24', publicIP: '192.168.77.11', tunName: 'flannel0', engine: 'native', mtu: 1472, network: '10.244.0.0/16', port: 8285 });
    expect(v.leaseCount).toBe(4);
    expect(v.leases.map((l) => l.subnet)).toEqual(['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24']);
    expect(v.leases.map((l) => l.self)).toEqual([true, false, false, false]);
    expect(v.leases.map((l) => l.expiryState)).toEqual(['ok', 'ok', 'expiring', 'expired']);

    const n2 = v.leases[1]!;
    expect(n2.publicIP).toBe('192.168.77.12');
    expect(n2.expiresInSeconds).toBeGreaterThan(22 * 3600 - 60);
    expect(n2.expiresInSeconds).toBeLessThanOrEqual(22 * 3600);
    expect(Date.parse(n2.expiresAt!) - Date.now()).toBeGreaterThan(21 * 3600_000);
    expect(n2.source).toEqual({ kind: 'etcd', key: '/coreos.com/network/subnets/10.244.2.0-24', modRevision: '15', etcdLeaseId: '694d9a2b1c3e0001' });
    expect(n2.attrs).toEqual({ PublicIP: '192.168.77.12', PublicIPv6: null });
    expect(n2.datapath).toMatchObject({ tx: { packets: 1200, bytes: 1_700_000 }, rx: { packets: 1100, bytes: 1_600_000 }, drops: {}, dropsTotal: 0 });
    expect(n2.datapath!.lastTxSecondsAgo).toBeGreaterThanOrEqual(1);
    expect(Date.parse(n2.datapath!.lastRxAt!)).toBeLessThan(Date.now());

    const n3 = v.leases[2]!;
    expect(n3.datapath).toMatchObject({ drops: { 'spoofed-source': 5 }, dropsTotal: 5 });
    expect(v.leases[0]!.datapath).toBeNull(); // no counters for ourselves
    expect(v.leases[3]!.datapath).toBeNull(); // expired peer never talked
    expect(v.leases[3]!.expiresInSeconds).toBeLessThan(0);

    expect(v.datapath).toMatchObject({ engine: 'native', encap: { packets: 1500, bytes: 2_100_000 }, decap: { packets: 1400, bytes: 1_900_000 }, icmpSent: 3, dropsTotal: { encap: 3, decap: 7 } });
    expect(v.datapath!.drops.encap['no-route']).toBe(3);
    expect(v.datapath!.drops.decap['unknown-peer']).toBe(2);
    expect(Object.keys(v.datapath!.drops.encap)).toHaveLength(DROP_REASONS.length); // every reason, zeros included
    expect(v.datapath!.unmatchedPeers.map((p) => p.publicIP)).toEqual(['192.168.77.99']);

    expect(v.store).toMatchObject({ backend: 'etcd', connected: true, lastRevision: '15', relists: 1, errors: 0, renewals: 2, renewalFailures: 0, lastError: null });
    expect(v.store.lastRelistSecondsAgo).toBeGreaterThanOrEqual(90);
    expect(v.leaseEvents).toEqual({ added: 4, removed: 1, snapshots: 1, reacquired: 0 });
  });

  it('/leases before a lease is held: no node, no data path, still well formed', async () => {
    const state = new HandState({
      leases: [],
      store: { backend: 'etcd', connected: false, relists: 0, errors: 3, renewals: 0, renewalFailures: 0, lastError: 'connect ECONNREFUSED 127.0.0.1:2379' },
      leaseEvents: { added: 0, removed: 0, snapshots: 0, reacquired: 0 },
      startedAt: Date.now(),
    });
    const s = await start(state);
    const v = JSON.parse((await httpRequest(s.address, '/leases')).body) as LeasesView;
    expect(v).toMatchObject({ ready: false, node: null, datapath: null, leaseCount: 0, leases: [] });
    expect(v.store).toMatchObject({ connected: false, errors: 3, lastError: 'connect ECONNREFUSED 127.0.0.1:2379', lastRevision: null, lastRelistAt: null });
    const html = await httpRequest(s.address, '/leases?format=html');
    expect(html.status).toBe(200);
    expect(html.body).toContain('no lease yet');
    expect(html.body).toContain('Lease store disconnected');
    const table = await httpRequest(s.address, '/leases?format=table');
    expect(table.body).toContain('DISCONNECTED');
    expect(table.body).toContain('no leases');
  });

  it('/leases as HTML for browsers (Accept or ?format=html), escaping what the store holds', async () => {
    const snap = sampleSnapshot();
    const evil = etcdLease('10.244.9.0/24', '192.168.77.19', 3600_000);
    evil.source = { kind: 'etcd', key: '/coreos.com/network/subnets/<script>alert(1)</script>', modRevision: '"><i>pwned</i>', etcdLeaseId: undefined };
    snap.leases.push(evil);
    const s = await start(new HandState(snap));

    const byAccept = await httpRequest(s.address, '/leases', { headers: { Accept: 'text/html,application/xhtml+xml;q=0.9,*/*;q=0.8' } });
    expect(byAccept.status).toBe(200);
    expect(byAccept.headers['content-type']).toMatch(/^text\/html/);
    const byQuery = await httpRequest(s.address, '/leases?format=html');
    expect(byQuery.headers['content-type']).toMatch(/^text\/html/);

    const page = byQuery.body;
    for (const subnet of ['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24', '10.244.4.0/24', '10.244.9.0/24']) {
      expect(page).toContain(`data-subnet="${subnet}"`);
    }
    expect(page).toMatch(/<tr data-subnet="10\.244\.1\.0\/24"[^>]*class="self"/);
    expect(page).toMatch(/<tr data-subnet="10\.244\.4\.0\/24"[^>]*class="expired"/);
    expect(page).toMatch(/<tr data-subnet="10\.244\.3\.0\/24"[^>]*class="expiring"/);
    expect(page).not.toContain('<script>alert(1)');
    expect(page).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(page).not.toContain('<i>pwned');
    // No external assets: no script or image files, only inline (data:) links.
    expect(page).not.toMatch(/<(script|img)[^>]+src=/);
    expect(page).not.toMatch(/<link(?![^>]*href="data:)[^>]*>/);
  });

  it('/leases?format=table is aligned text with one line per lease', async () => {
    const s = await start(new HandState());
    const r = await httpRequest(s.address, '/leases?format=table');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
    const lines = r.body.split('\n');
    const header = lines.find((l) => l.includes('SUBNET'))!;
    const rows = lines.filter((l) => /^[* ]\s+10\.244\.\d+\.0\/24\s/.test(l));
    expect(rows).toHaveLength(4);
    // Left-aligned columns start where their header starts; right-aligned ones end where it ends.
    const ipCol = header.indexOf('PUBLIC IP');
    const txEnd = header.indexOf('TX PKTS') + 'TX PKTS'.length;
    for (const row of rows) {
      expect(row.slice(ipCol)).toMatch(/^192\.168\.77\.\d+ /);
      expect(row[txEnd - 1]).toMatch(/[\d-]/);
      expect(row[txEnd]).toBe(' ');
    }
    expect(rows[0]!.startsWith('*')).toBe(true);
    expect(rows[3]).toContain('EXPIRED');
    expect(r.body).toMatch(/drops tx:\s+no-route 3/);
    expect(r.body).toMatch(/drops rx:\s+unknown-peer 2, spoofed-source 5/);
    expect(r.body).toContain('192.168.77.99');
  });

  it('rejects an unknown format with 400', async () => {
    const s = await start(new HandState());
    const r = await httpRequest(s.address, '/leases?format=xml');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).error).toMatch(/unknown format/);
  });

  it('unknown path -> 404 JSON; POST -> 405 with Allow; HEAD -> headers only', async () => {
    const s = await start(new HandState());
    const nf = await httpRequest(s.address, '/nope');
    expect(nf.status).toBe(404);
    expect(nf.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(nf.body)).toMatchObject({ status: 404, error: expect.stringContaining('/nope') });

    const post = await httpRequest(s.address, '/leases', { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    expect(JSON.parse(post.body).error).toMatch(/POST/);

    const head = await httpRequest(s.address, '/leases', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(Number(head.headers['content-length'])).toBeGreaterThan(100);
  });

  it('a failing handler answers 500 with the message and the server keeps serving', async () => {
    const state = new HandState();
    const s = await start(state);
    state.failWith = new Error('snapshot exploded');
    for (const path of ['/leases', '/leases?format=html', '/leases?format=table', '/metrics']) {
      const r = await httpRequest(s.address, path);
      expect(r.status, path).toBe(500);
      expect(JSON.parse(r.body).error, path).toBe('snapshot exploded');
    }
    expect((await httpRequest(s.address, '/healthz')).status).toBe(200);
    state.failWith = undefined;
    expect((await httpRequest(s.address, '/leases')).status).toBe(200);
  });

  it("only: 'health' serves /healthz and /readyz alone", async () => {
    const state = new HandState();
    state.isReady = true;
    const s = await start(state, '127.0.0.1:0', { only: 'health' });
    expect((await httpRequest(s.address, '/healthz')).status).toBe(200);
    expect((await httpRequest(s.address, '/readyz')).status).toBe(200);
    expect((await httpRequest(s.address, '/leases')).status).toBe(404);
    expect((await httpRequest(s.address, '/metrics')).status).toBe(404);
  });

  it('listens on a unix socket and removes it on close', async () => {
    const path = join(dir, 'a.sock');
    const s = await startDebugServer(`unix:${path}`, new HandState(), log);
    expect(s.address).toBe(`unix:${path}`);
    expect((await httpRequest(s.address, '/healthz')).status).toBe(200);
    expect(JSON.parse((await httpRequest(s.address, '/leases')).body).leaseCount).toBe(4);
    await s.close();
    expect(existsSync(path)).toBe(false);
  });

  it('replaces a stale unix socket, refuses a live one and a non-socket file', async () => {
    // A socket file left behind by a killed process.
    const stale = join(dir, 'stale.sock');
    await new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
      child.on('exit', () => resolve());
      child.on('error', reject);
    });
    expect(existsSync(stale)).toBe(true);
    const s = await start(new HandState(), `unix:${stale}`);
    expect((await httpRequest(s.address, '/healthz')).status).toBe(200);

    // A socket somebody still answers on.
    const live = join(dir, 'live.sock');
    const other = createServer();
    await new Promise<void>((resolve) => other.listen(live, resolve));
    try {
      await expect(startDebugServer(`unix:${live}`, new HandState(), log)).rejects.toThrow(/in use/);
    } finally {
      await new Promise((resolve) => other.close(resolve));
    }

    const file = join(dir, 'regular');
    writeFileSync(file, 'keep me');
    await expect(startDebugServer(`unix:${file}`, new HandState(), log)).rejects.toThrow(/not a socket/);
    expect(existsSync(file)).toBe(true);
  });

  it('a taken TCP port is a clear error', async () => {
    const s = await start(new HandState());
    await expect(startDebugServer(s.address, new HandState(), log)).rejects.toThrow(/already in use/);
  });

  it('parses listen addresses and rejects bad ones clearly', () => {
    expect(parseListenAddress('127.0.0.1:8286')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8286 });
    expect(parseListenAddress(':8081')).toEqual({ kind: 'tcp', host: '0.0.0.0', port: 8081 });
    expect(parseListenAddress('localhost:0')).toEqual({ kind: 'tcp', host: 'localhost', port: 0 });
    expect(parseListenAddress('unix:/run/felt.sock')).toEqual({ kind: 'unix', path: '/run/felt.sock' });
    expect(() => parseListenAddress('unix:relative.sock')).toThrow(/absolute/);
    expect(() => parseListenAddress('127.0.0.1')).toThrow(/host:port/);
    expect(() => parseListenAddress('300.0.0.1:80')).toThrow(/not an IPv4/);
    expect(() => parseListenAddress('127.0.0.1:70000')).toThrow(/65535/);
    expect(() => parseListenAddress('[::1]:80')).toThrow(/host:port/);
  });
});
