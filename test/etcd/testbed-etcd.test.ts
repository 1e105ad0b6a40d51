// The startEtcd test helper: needs the `etcd` binary (and root for the namespace case).
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterEach, describe, expect, it } from 'vitest';
import { Netns, runPrefix } from '../testbed/netns.js';
import { startEtcd, type EtcdServer } from '../testbed/etcd.js';

const started: EtcdServer[] = [];
const namespaces: Netns[] = [];
const clients: Etcd3[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of started.splice(0)) await s.stop();
  for (const ns of namespaces.splice(0)) await ns.delete();
});

function client(hosts: string): Etcd3 {
  const c = new Etcd3({ hosts });
  clients.push(c);
  return c;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('startEtcd (needs the etcd binary)', () => {
  it('serves on a free TCP port and on the unix socket; stop() kills it and removes its dir', async () => {
    const server = await startEtcd();
    started.push(server);
    expect(server.clientURL).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(server.unixURL).toMatch(/^unix:\/\/\/.+\/etcd\.sock:0$/);
    await client(server.clientURL).put('/k').value('tcp');
    expect(await client(server.unixURL).get('/k').string()).toBe('tcp');

    const pid = server.pid!;
    expect(alive(pid)).toBe(true);
    await server.stop();
    expect(alive(pid)).toBe(false);
    expect(existsSync(server.dataDir)).toBe(false);
    await server.stop(); // idempotent
  });

  it('two servers run side by side on different ports', async () => {
    const a = await startEtcd();
    started.push(a);
    const b = await startEtcd();
    started.push(b);
    expect(a.clientURL).not.toBe(b.clientURL);
    await client(a.clientURL).put('/which').value('a');
    expect(await client(b.clientURL).get('/which').string()).toBeNull();
  });

  it('kill() and restart() keep the data and the addresses', async () => {
    const server = await startEtcd();
    started.push(server);
    const url = server.clientURL;
    await client(url).put('/survives').value('yes');
    const before = server.pid;
    await server.kill();
    expect(server.pid).toBeUndefined();
    await server.restart();
    expect(server.pid).not.toBe(before);
    expect(server.clientURL).toBe(url);
    expect(await client(url).get('/survives').string()).toBe('yes');
  });

  it('compact() compacts to the current revision', async () => {
    const server = await startEtcd();
    started.push(server);
    const c = client(server.clientURL);
    await c.put('/a').value('1');
    await c.put('/a').value('2');
    const rev = await server.compact();
    expect(Number(rev)).toBeGreaterThanOrEqual(3);
    // Reading below the compacted revision now fails.
    await expect(c.kv.range({ key: Buffer.from('/a'), revision: Number(rev) - 1 })).rejects.toThrow(/compacted/);
  });

  it('pause() freezes it and resume() thaws it', async () => {
    const server = await startEtcd();
    started.push(server);
    const c = client(server.clientURL);
    await c.put('/p').value('1');
    server.pause();
    try {
      await expect(c.kv.range({ key: Buffer.from('/p') }, { deadline: Date.now() + 500 })).rejects.toThrow(/deadline/i);
    } finally {
      server.resume();
    }
    // A fresh client: the first one's circuit breaker stays open for a while after those timeouts.
    expect(await client(server.clientURL).get('/p').string()).toBe('1');
  });

  it('fails loudly with the log tail when etcd cannot start', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'felt-etcd-bad-'));
    try {
      mkdirSync(join(dataDir, 'member', 'wal'), { recursive: true });
      writeFileSync(join(dataDir, 'member', 'wal', '0000000000000000-0000000000000000.wal'), 'not a wal');
      const err = (await startEtcd({ dataDir }).catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(Error);
      expect(err.message).toMatch(/^etcd exited during start-up:\n/);
      expect(err.message.split('\n').length).toBeGreaterThan(2); // the log tail follows
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('startEtcd in a network namespace (needs root and the etcd binary)', () => {
  it('listens on the namespace address and on the unix socket reachable from here', async () => {
    const ns = await Netns.create(`${runPrefix()}-etcd`);
    namespaces.push(ns);
    const server = await startEtcd({ netns: ns, clientHost: '127.0.0.1' });
    started.push(server);
    expect(server.clientURL).toBe('http://127.0.0.1:2379');
    await client(server.unixURL).put('/in-ns').value('yes');
    // The TCP listener is inside the namespace: curl from there reaches it.
    const res = await ns.exec(['curl', '-s', `${server.clientURL}/health`]);
    expect(res.stdout).toContain('"health":"true"');
    expect(ns.pids()).toContain(server.pid);
  });
});
