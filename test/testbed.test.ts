// The testbed itself (needs root, network namespaces and the etcd binary): underlay reachability,
// etcd from a node namespace and from the test process, pods, the TCP helper, and that nothing
// is left behind, also when a test throws or the process is killed.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listNamespaces, Netns, parsePing, ping, run, runPrefix, sleep } from './testbed/netns.js';
import { repoRoot, tcpTransfer } from './testbed/tcp.js';
import { HUB_IP, Testbed } from './testbed/testbed.js';

const cleanup: Testbed[] = [];
afterAll(async () => {
  for (const tb of cleanup) await tb.destroy();
});

async function create(opts: Parameters<typeof Testbed.create>[0]): Promise<Testbed> {
  const tb = await Testbed.create(opts);
  cleanup.push(tb);
  return tb;
}

/** Running (a zombie waiting for its reaper counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

describe('parsePing (no root)', () => {
  it('reads replies, loss and RTT', () => {
    const r = parsePing(
      [
        'PING 10.244.2.2 (10.244.2.2) 56(84) bytes of data.',
        '64 bytes from 10.244.2.2: icmp_seq=1 ttl=62 time=0.412 ms',
        '',
        '--- 10.244.2.2 ping statistics ---',
        '3 packets transmitted, 2 received, 33.3333% packet loss, time 402ms',
        'rtt min/avg/max/mdev = 0.301/0.356/0.412/0.055 ms',
      ].join('\n'),
      1,
    );
    expect(r).toMatchObject({ ok: true, transmitted: 3, received: 2, errors: 0, netUnreachable: false, exitCode: 1 });
    expect(r.lossPct).toBeCloseTo(33.3333);
    expect(r.rtt).toEqual({ min: 0.301, avg: 0.356, max: 0.412, mdev: 0.055 });
  });

  it('recognises Destination Net Unreachable and the error count', () => {
    const r = parsePing(
      [
        'PING 10.244.3.2 (10.244.3.2) 56(84) bytes of data.',
        'From 10.244.1.0 icmp_seq=1 Destination Net Unreachable',
        '',
        '--- 10.244.3.2 ping statistics ---',
        '1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms',
      ].join('\n'),
      1,
    );
    expect(r).toMatchObject({ ok: false, transmitted: 1, received: 0, errors: 1, lossPct: 100, netUnreachable: true });
    expect(r.rtt).toBeUndefined();
  });
});

describe('testbed (root, netns)', () => {
  it('nodes ping each other and the hub over the underlay (root, netns)', async () => {
    const tb = await create({ nodes: 3 });
    expect(tb.nodes.map((n) => n.underlayIP)).toEqual(['192.168.77.11', '192.168.77.12', '192.168.77.13']);
    for (const from of tb.nodes) {
      const targets = [HUB_IP, ...tb.nodes.filter((n) => n !== from).map((n) => n.underlayIP)];
      for (const target of targets) {
        const r = await tb.ping(from, target, { count: 2 });
        expect(r.received, `${from.name} -> ${target}\n${r.raw}`).toBe(2);
      }
    }
    // The hub reaches a node too; and an address nobody has does not answer.
    expect((await tb.ping(tb.hub, '192.168.77.12', { count: 1 })).ok).toBe(true);
    expect((await tb.ping(tb.nodes[0]!, '192.168.77.99', { count: 1, waitS: 0.5 })).ok).toBe(false);
  });

  it('addNode() adds a reachable node later (root, netns)', async () => {
    const tb = await create({ nodes: 1 });
    const n2 = await tb.addNode();
    expect(n2).toMatchObject({ index: 2, name: 'n2', underlayIP: '192.168.77.12' });
    expect(n2.ns.name).toBe(`${tb.prefix}-n2`);
    const r = await tb.ping(tb.nodes[0]!, n2.underlayIP, { count: 1 });
    expect(r.ok, r.raw).toBe(true);
  });

  it('pods get cni0 .1, eth0 .2 and a default route; pods on one node reach each other (root, netns)', async () => {
    const tb = await create({ nodes: 1 });
    const node = tb.nodes[0]!;
    const pods = await tb.ensurePods(node, '10.244.9.1/24', 2);
    expect(pods.map((p) => [p.name, p.ip, p.ns.name])).toEqual([
      ['n1p1', '10.244.9.2', `${tb.prefix}-n1p1`],
      ['n1p2', '10.244.9.3', `${tb.prefix}-n1p2`],
    ]);
    expect(await node.ns.ip(['-4', 'addr', 'show', 'cni0'])).toContain('10.244.9.1/24');
    expect(await pods[0]!.ns.ip(['route', 'show', 'default'])).toContain('via 10.244.9.1');
    expect((await node.ns.exec(['sysctl', '-n', 'net.ipv4.ip_forward'])).stdout.trim()).toBe('1');
    expect((await tb.ping(pods[0]!, '10.244.9.1', { count: 1 })).ok).toBe(true);
    expect((await tb.ping(pods[0]!, '10.244.9.3', { count: 1 })).ok).toBe(true);
    // The same subnet again is a no-op; another subnet rebuilds the pods.
    expect(await tb.ensurePods(node, '10.244.9.0/24', 2)).toBe(pods);
    const rebuilt = await tb.ensurePods(node, '10.244.10.0/24', 1);
    expect(rebuilt.map((p) => p.ip)).toEqual(['10.244.10.2']);
    expect(await listNamespaces(tb.prefix)).not.toContain(`${tb.prefix}-n1p2`);
    expect((await tb.ping(rebuilt[0]!, '10.244.10.1', { count: 1 })).ok).toBe(true);
  });

  it('tcpTransfer moves 8 MiB between two nodes with equal sha256 on both ends (root, netns)', async () => {
    const tb = await create({ nodes: 2 });
    const [a, b] = tb.nodes as [(typeof tb.nodes)[0], (typeof tb.nodes)[0]];
    const r = await tcpTransfer(b.ns, b.underlayIP, a.ns, 8 * 1024 * 1024);
    expect(r.sent.bytes).toBe(8 * 1024 * 1024);
    expect(r.received).toEqual(r.sent);
    expect(r.sent.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('tcpTransfer reports a failure when nothing listens at the far end (root, netns)', async () => {
    const tb = await create({ nodes: 2 });
    // The server binds an address that is not in its namespace: the fixture must fail clearly.
    await expect(tcpTransfer(tb.nodes[1]!.ns, '192.168.77.99', tb.nodes[0]!.ns, 1024)).rejects.toThrow(/tcp server/);
  });
});

describe('testbed with etcd (root, netns, etcd binary)', () => {
  it('etcd is reachable from a node namespace (etcdctl) and from the test process (unix socket)', async () => {
    const tb = await create({ nodes: 2, etcd: true });
    expect(tb.etcdClientURL).toBe(`http://${HUB_IP}:2379`);
    expect(tb.etcdServer!.unixURL).toMatch(/^unix:\/\/\/.+:0$/);
    // Written by create() through the unix socket...
    const config = JSON.parse((await tb.etcdClient.get('/coreos.com/network/config').string()) ?? 'null');
    expect(config).toEqual({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } });
    // ...read back from inside a node over the underlay.
    const got = await tb.nodes[1]!.ns.exec(
      ['etcdctl', '--endpoints', tb.etcdClientURL, 'get', '--print-value-only', '/coreos.com/network/config'],
      { env: { ...process.env, ETCDCTL_API: '3' } },
    );
    expect(JSON.parse(got.stdout.trim())).toEqual(config);
    // And a write from the node is visible to the test process.
    await tb.nodes[0]!.ns.exec(['etcdctl', '--endpoints', tb.etcdClientURL, 'put', '/felt-test/x', 'from-n1'], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    expect(await tb.etcdClient.get('/felt-test/x').string()).toBe('from-n1');
  });

  it('destroy() leaves no namespace and no etcd process, also after a test that throws', async () => {
    let tb: Testbed | undefined;
    let etcdPids: number[] = [];
    const body = async () => {
      tb = await Testbed.create({ nodes: 2, etcd: true });
      await tb.ensurePods(tb.nodes[0]!, '10.244.1.0/24');
      etcdPids = tb.hub.pids();
      // A stray process in a node namespace is killed too.
      tb.nodes[1]!.ns.spawn(['sleep', '600']);
      throw new Error('the test body failed');
    };
    try {
      await expect(body()).rejects.toThrow('the test body failed');
    } finally {
      await tb?.destroy();
    }
    expect(tb).toBeDefined();
    expect(etcdPids.length).toBeGreaterThan(0);
    expect(await listNamespaces(tb!.prefix)).toEqual([]);
    for (const pid of etcdPids) expect(alive(pid), `pid ${pid} still alive`).toBe(false);
    expect(existsSync(tb!.workDir)).toBe(false);
    await tb!.destroy(); // idempotent
  });

  it('create() that fails halfway deletes what it made', async () => {
    const prefix = runPrefix();
    // Someone else's namespace where node 2 would go makes create() fail at n2.
    const squatter = await Netns.create(`${prefix}-n2`);
    try {
      await expect(Testbed.create({ nodes: 3, etcd: true, prefix })).rejects.toThrow(/netns add/);
      expect(await listNamespaces(prefix)).toEqual([`${prefix}-n2`]);
    } finally {
      await squatter.delete();
    }
    expect(await listNamespaces(prefix)).toEqual([]);
  });
});

describe('process exit hook (root, netns; needs npm run build)', () => {
  it('SIGTERM to a process using the testbed deletes its namespaces and kills its children', async () => {
    const compiled = join(repoRoot(), 'dist', 'test', 'testbed', 'netns.js');
    const source = join(repoRoot(), 'test', 'testbed', 'netns.ts');
    expect(existsSync(compiled), `${compiled} missing: run npm run build`).toBe(true);
    expect(statSync(compiled).mtimeMs, `${compiled} is older than its source: run npm run build`).toBeGreaterThanOrEqual(
      statSync(source).mtimeMs,
    );
    const prefix = runPrefix();
    const script = `
      const { Netns } = await import(${JSON.stringify(compiled)});
      const ns = await Netns.create(${JSON.stringify(`${prefix}-x`)});
      const child = ns.spawn(['sleep', '600']);
      await new Promise((r) => setTimeout(r, 200));
      console.log(JSON.stringify({ sleepPid: child.pid }));
      setInterval(() => {}, 1000);
    `;
    const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (c) => (out += c));
    proc.stderr.on('data', (c) => (err += c));
    const exited = new Promise<NodeJS.Signals | null>((r) => proc.once('exit', (_c, s) => r(s)));
    try {
      for (let i = 0; i < 200 && !out.includes('\n'); i++) await sleep(50);
      expect(out, err).toContain('sleepPid');
      const { sleepPid } = JSON.parse(out) as { sleepPid: number };
      expect(await listNamespaces(prefix)).toEqual([`${prefix}-x`]);
      proc.kill('SIGTERM');
      expect(await exited).toBe('SIGTERM');
      expect(await listNamespaces(prefix)).toEqual([]);
      expect(alive(sleepPid)).toBe(false);
    } finally {
      proc.kill('SIGKILL');
      // In case the hook failed: leave nothing behind.
      for (const ns of await listNamespaces(prefix)) await run(['ip', 'netns', 'delete', ns], { check: false });
    }
  });
});

describe('ping helper (root, netns)', () => {
  it('reports loss for an unreachable address and RTT for a reachable one', async () => {
    const tb = await create({ nodes: 2 });
    const good = await ping(tb.nodes[0]!.ns, tb.nodes[1]!.underlayIP, { count: 3, intervalS: 0.05 });
    expect(good).toMatchObject({ ok: true, transmitted: 3, received: 3, lossPct: 0, exitCode: 0 });
    expect(good.rtt!.avg).toBeGreaterThan(0);
    const bad = await ping(tb.nodes[0]!.ns, '10.99.0.1', { count: 1 });
    expect(bad.ok).toBe(false);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.raw).toMatch(/Network is unreachable|100% packet loss/);
  });
});
