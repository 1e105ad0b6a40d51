// The testbed's IPv6 side (needs root, network namespaces and the etcd binary): dual-stack and
// IPv6-only underlays, etcd over IPv6 on an IPv6-only underlay, and pods with an IPv6 address,
// wired by hand and by the real CNI plugins from a dual-stack subnet.env.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { flannelDelegate, readSubnetEnv } from './testbed/cni.js';
import { HUB_IP, HUB_IP6, Testbed } from './testbed/testbed.js';

const cleanup: Testbed[] = [];
afterAll(async () => {
  for (const tb of cleanup) await tb.destroy();
});

async function create(opts: Parameters<typeof Testbed.create>[0]): Promise<Testbed> {
  const tb = await Testbed.create(opts);
  cleanup.push(tb);
  return tb;
}

const V4_ENV = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.9.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n';
const V6_ENV = 'FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:9::1/64\n';

describe('flannel CNI delegate from subnet.env (no root)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'felt-cni6-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const conf = { name: 'cbr0', cniVersion: '0.3.1', delegate: { isDefaultGateway: true } };

  it('an IPv4-only subnet.env gives one range and one route, as before', () => {
    expect(flannelDelegate(conf, file('v4.env', V4_ENV)).ipam).toEqual({
      type: 'host-local',
      ranges: [[{ subnet: '10.244.9.0/24' }]],
      routes: [{ dst: '10.244.0.0/16' }],
    });
  });

  it('a dual-stack subnet.env adds the IPv6 range and route (networks normalised)', () => {
    const env = readSubnetEnv(file('dual.env', V4_ENV + V6_ENV));
    expect(env).toMatchObject({ network6: 'fc00::/48', subnet6: 'fc00:0:0:9::/64' });
    expect(flannelDelegate(conf, file('dual2.env', V4_ENV + V6_ENV)).ipam).toEqual({
      type: 'host-local',
      ranges: [[{ subnet: '10.244.9.0/24' }], [{ subnet: 'fc00:0:0:9::/64' }]],
      routes: [{ dst: '10.244.0.0/16' }, { dst: 'fc00::/48' }],
    });
  });

  it('half of the IPv6 pair is an error', () => {
    expect(() => readSubnetEnv(file('half.env', `${V4_ENV}FLANNEL_IPV6_SUBNET=fc00:0:0:9::1/64\n`))).toThrow(/only one of/);
  });
});

describe('testbed with an IPv6 underlay (root, netns, etcd binary)', () => {
  it('IPv6-only: eth0 has no IPv4 address, nodes ping6 each other and the hub, etcd answers on [fd77::1]', async () => {
    const tb = await create({ nodes: 2, etcd: true, underlay: 'ipv6' });
    expect(tb.nodes.map((n) => [n.underlayIP, n.underlayIPv4, n.underlayIPv6])).toEqual([
      ['fd77::11', undefined, 'fd77::11'],
      ['fd77::12', undefined, 'fd77::12'],
    ]);
    for (const n of tb.nodes) expect((await n.ns.ip(['-4', 'addr', 'show', 'dev', 'eth0'])).trim()).toBe('');
    const [a, b] = tb.nodes as [(typeof tb.nodes)[0], (typeof tb.nodes)[0]];
    for (const target of [HUB_IP6, b.underlayIP]) {
      const r = await tb.ping(a, target, { count: 2, family: 6 });
      expect(r.received, `${a.name} -> ${target}\n${r.raw}`).toBe(2);
    }
    expect((await tb.ping(a, HUB_IP, { count: 1, waitS: 0.5 })).ok).toBe(false);
    expect(tb.etcdClientURL).toBe(`http://[${HUB_IP6}]:2379`);
    const got = await b.ns.exec(['etcdctl', '--endpoints', tb.etcdClientURL, 'get', '--print-value-only', '/coreos.com/network/config'], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    expect(JSON.parse(got.stdout.trim())).toMatchObject({ Network: '10.244.0.0/16' });
  });

  it('dual-stack: both families reach the other node; etcd stays on the IPv4 hub address', async () => {
    const tb = await create({ nodes: 2, etcd: true, underlay: 'dual' });
    const [a, b] = tb.nodes as [(typeof tb.nodes)[0], (typeof tb.nodes)[0]];
    expect([b.underlayIP, b.underlayIPv4, b.underlayIPv6]).toEqual(['192.168.77.12', '192.168.77.12', 'fd77::12']);
    for (const target of [b.underlayIPv4!, b.underlayIPv6!]) {
      const r = await tb.ping(a, target, { count: 2 });
      expect(r.received, `${a.name} -> ${target}\n${r.raw}`).toBe(2);
    }
    expect(tb.etcdClientURL).toBe(`http://${HUB_IP}:2379`);
  });
});

describe('dual-stack pods (root, netns; CNI plugins)', () => {
  it('by hand: cni0 gets ::1, pods ::2, ::3 and an IPv6 default route; they ping6 each other', async () => {
    const tb = await create({ nodes: 1 });
    const node = tb.nodes[0]!;
    const pods = await tb.ensurePods(node, '10.244.9.0/24', 2, 'fc00:0:0:9::/64');
    expect(pods.map((p) => [p.ip, p.ip6])).toEqual([
      ['10.244.9.2', 'fc00:0:0:9::2'],
      ['10.244.9.3', 'fc00:0:0:9::3'],
    ]);
    expect(node.podSubnet6).toBe('fc00:0:0:9::/64');
    expect(await pods[0]!.ns.ip(['-6', 'route', 'show', 'default'])).toContain('via fc00:0:0:9::1');
    expect((await node.ns.exec(['sysctl', '-n', 'net.ipv6.conf.all.forwarding'])).stdout.trim()).toBe('1');
    for (const target of ['fc00:0:0:9::1', 'fc00:0:0:9::3', '10.244.9.3']) {
      const r = await tb.ping(pods[0]!, target, { count: 1 });
      expect(r.ok, `${target}\n${r.raw}`).toBe(true);
    }
    // Without an IPv6 subnet the pods are rebuilt IPv4-only.
    const v4 = await tb.ensurePods(node, '10.244.9.0/24', 1);
    expect(v4.map((p) => [p.ip, p.ip6])).toEqual([['10.244.9.2', undefined]]);
    expect((await v4[0]!.ns.ip(['-6', 'addr', 'show', 'scope', 'global'])).trim()).toBe('');
  });

  it('CNI: a dual-stack subnet.env gives every pod an IPv4 and an IPv6 address from host-local', async () => {
    const tb = await create({ nodes: 1, cni: true });
    const node = tb.nodes[0]!;
    const host = tb.cniHost(node);
    mkdirSync(dirname(host.subnetFile), { recursive: true });
    writeFileSync(host.subnetFile, V4_ENV + V6_ENV);
    const pods = await tb.ensurePods(node, '10.244.9.0/24', 2, 'fc00:0:0:9::/64');
    expect(pods.map((p) => [p.ip, p.ip6])).toEqual([
      ['10.244.9.2', 'fc00:0:0:9::2'],
      ['10.244.9.3', 'fc00:0:0:9::3'],
    ]);
    const addrs = await pods[0]!.ns.ip(['-6', 'addr', 'show', 'dev', 'eth0']);
    expect(addrs).toContain('fc00:0:0:9::2/64');
    expect(addrs).not.toContain('tentative');
    expect(await pods[0]!.ns.ip(['-6', 'route', 'show'])).toMatch(/fc00::\/48 via fc00:0:0:9::1/);
    for (const target of ['fc00:0:0:9::1', 'fc00:0:0:9::3']) {
      const r = await tb.ping(pods[0]!, target, { count: 1, family: 6 });
      expect(r.ok, `${target}\n${r.raw}`).toBe(true);
    }
  });
});
