// The native engine end to end (needs root, /dev/net/tun, namespaces, and `npm run build`):
// two namespaces joined by a veth pair (underlay 192.168.77.1/.2), each running a NativeDatapath
// from dist/ via test/support/fixtures/engine-node.mjs with a static route to the other.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Netns, ping, runPrefix } from '../testbed/netns.js';
import { tcpTransfer } from '../testbed/tcp.js';
import { FixtureDriver } from '../support/driver.js';
import { icmpEcho, ipv4 } from '../support/packets.js';
import { sendDatagrams } from '../support/udp.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ENGINE_FIXTURE = path.join(here, '../support/fixtures/engine-node.mjs');
const DIST_NATIVE = path.resolve(here, '../../dist/src/datapath/native.js');
const PORT = 8285;
const MTU = 1472;

interface PeerStats {
  tx: { packets: number; bytes: number };
  rx: { packets: number; bytes: number };
  lastTxAt: number;
  lastRxAt: number;
  drops: Record<string, number>;
}

interface Stats {
  engine: string;
  encap: { packets: number; bytes: number };
  decap: { packets: number; bytes: number };
  icmpSent: number;
  icmpRateLimited: number;
  drops: { encap: Record<string, number>; decap: Record<string, number> };
  peers: Record<string, PeerStats>;
  features: Record<string, unknown>;
}

interface Node {
  ns: Netns;
  drv: FixtureDriver;
  underlay: string;
  subnet: string;
  tunnelIP: string;
}

const A_ROUTES = [{ subnet: '10.244.2.0/24', publicIP: '192.168.77.2' }];
const B_ROUTES = [{ subnet: '10.244.1.0/24', publicIP: '192.168.77.1' }];

/** Two namespaces joined by a veth pair: A = 192.168.77.1, B = 192.168.77.2 (+ .3, a stranger). */
async function underlay(prefix: string): Promise<[Netns, Netns]> {
  const nsA = await Netns.create(`${prefix}-ea`);
  const nsB = await Netns.create(`${prefix}-eb`);
  await nsA.ip(['link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul0', 'netns', nsB.name]);
  await nsA.ip(['addr', 'add', '192.168.77.1/24', 'dev', 'ul0']);
  await nsB.ip(['addr', 'add', '192.168.77.2/24', 'dev', 'ul0']);
  await nsB.ip(['addr', 'add', '192.168.77.3/24', 'dev', 'ul0']);
  await nsA.ip(['link', 'set', 'ul0', 'up']);
  await nsB.ip(['link', 'set', 'ul0', 'up']);
  return [nsA, nsB];
}

async function startNode(
  ns: Netns,
  underlayIP: string,
  subnet: string,
  routes: typeof A_ROUTES,
  options: Record<string, unknown> = {},
): Promise<Node> {
  const config = {
    tunName: 'flannel0',
    mtu: MTU,
    network: '10.244.0.0/16',
    localSubnet: subnet,
    bindIP: underlayIP,
    port: PORT,
    routes,
    options,
  };
  const drv = FixtureDriver.spawn(ns, ENGINE_FIXTURE, [JSON.stringify(config)]);
  await drv.call('start');
  return { ns, drv, underlay: underlayIP, subnet, tunnelIP: subnet.replace(/\/\d+$/, '') };
}

const stats = (n: Node): Promise<Stats> => n.drv.call<Stats>('stats');

const built = existsSync(DIST_NATIVE);

if (!built) {
  describe('native engine build', () => {
    test('exists in dist/ (npm test builds it first)', () => {
      throw new Error(`${DIST_NATIVE} is missing: run npm run build`);
    });
  });
}

describe.runIf(built)('native engine between two namespaces (needs root; run `npm run build` first)', () => {
  const prefix = runPrefix();
  let a: Node;
  let b: Node;

  /** Sends one datagram from `bindIP` inside `from` to A's engine port. */
  async function sendDatagram(from: Netns, bindIP: string, payload: Buffer): Promise<void> {
    await sendDatagrams(from, bindIP, 0, a.underlay, PORT, [payload]);
  }

  beforeAll(async () => {
    // B also holds 192.168.77.3, nobody's lease: the "unknown peer".
    const [nsA, nsB] = await underlay(prefix);
    a = await startNode(nsA, '192.168.77.1', '10.244.1.0/24', A_ROUTES);
    b = await startNode(nsB, '192.168.77.2', '10.244.2.0/24', B_ROUTES);
  });

  afterAll(async () => {
    await a?.ns.delete();
    await b?.ns.delete();
  });

  test('the TUN device is configured: vnet header offloads, MTU, address, route', async () => {
    const s = await stats(a);
    expect(s.engine).toBe('native');
    expect(s.features.vnetHdr).toBe(true);
    const links = JSON.parse(await a.ns.ip(['-j', 'link', 'show', 'flannel0'])) as { mtu: number; flags: string[] }[];
    expect(links[0]!.mtu).toBe(MTU);
    expect(links[0]!.flags).toContain('UP');
    const routes = JSON.parse(await a.ns.ip(['-j', 'route', 'show', 'dev', 'flannel0'])) as { dst: string }[];
    expect(routes.map((r) => r.dst)).toContain('10.244.0.0/16');
  });

  test('ping crosses the tunnel both ways and the counters move', async () => {
    const before = await stats(a);
    const r = await ping(a.ns, b.tunnelIP, { count: 3 });
    expect(r.received).toBe(3);
    const after = await stats(a);
    expect(after.encap.packets - before.encap.packets).toBeGreaterThanOrEqual(3);
    expect(after.decap.packets - before.decap.packets).toBeGreaterThanOrEqual(3);
    const peer = after.peers['192.168.77.2']!;
    expect(peer.tx.packets).toBeGreaterThanOrEqual(3);
    expect(peer.rx.packets).toBeGreaterThanOrEqual(3);
    expect(peer.lastRxAt).toBeGreaterThan(0);
    const bStats = await stats(b);
    expect(bStats.peers['192.168.77.1']!.rx.packets).toBeGreaterThanOrEqual(3);
  });

  test('a 16 MB TCP transfer arrives intact in both directions', async () => {
    const there = await tcpTransfer(b.ns, b.tunnelIP, a.ns, 16 * 1024 * 1024);
    expect(there.received).toEqual(there.sent);
    expect(there.sent.bytes).toBe(16 * 1024 * 1024);
    const back = await tcpTransfer(a.ns, a.tunnelIP, b.ns, 16 * 1024 * 1024);
    expect(back.received).toEqual(back.sent);
    const s = await stats(a);
    expect(s.drops.decap['malformed']).toBe(0);
    expect(s.drops.encap['send-error']).toBe(0);
    expect(s.drops.decap['tun-write-error']).toBe(0);
  });

  test('a datagram from an unknown source is dropped as unknown-peer and not delivered', async () => {
    // A valid inner echo request to A's tunnel address: delivered, the kernel would answer it.
    const inner = ipv4('10.244.2.7', a.tunnelIP, 1, icmpEcho(0x7001, 1, Buffer.from('stranger')));
    const before = await stats(a);
    await sendDatagram(b.ns, '192.168.77.3', inner);
    await expect.poll(async () => (await stats(a)).drops.decap['unknown-peer'], { timeout: 10_000 }).toBe(
      before.drops.decap['unknown-peer']! + 1,
    );
    const after = await stats(a);
    expect(after.decap.packets).toBe(before.decap.packets);
    expect(after.encap.packets).toBe(before.encap.packets); // no echo reply went out
  });

  test('a known peer sending an inner source outside its lease is dropped as spoofed-source', async () => {
    const inner = ipv4('10.244.9.9', a.tunnelIP, 1, icmpEcho(0x7002, 1, Buffer.from('spoof')));
    const before = await stats(a);
    await sendDatagram(b.ns, '192.168.77.2', inner); // B's address, another source port
    await expect.poll(async () => (await stats(a)).drops.decap['spoofed-source'], { timeout: 10_000 }).toBe(
      before.drops.decap['spoofed-source']! + 1,
    );
    const after = await stats(a);
    const peerDrops = (s: Stats): number => s.peers['192.168.77.2']!.drops['spoofed-source'] ?? 0;
    expect(peerDrops(after)).toBe(peerDrops(before) + 1);
    expect(after.decap.packets).toBe(before.decap.packets);
  });

  test('a bad inner header checksum is malformed, a short datagram truncated', async () => {
    const inner = ipv4('10.244.2.7', a.tunnelIP, 1, icmpEcho(0x7003, 1, Buffer.from('bad')));
    inner[10] ^= 0xff;
    const before = await stats(a);
    await sendDatagram(b.ns, '192.168.77.2', inner);
    await sendDatagram(b.ns, '192.168.77.2', Buffer.from('45000010', 'hex'));
    await expect
      .poll(async () => (await stats(a)).drops.decap['truncated'], { timeout: 10_000 })
      .toBe(before.drops.decap['truncated']! + 1);
    expect((await stats(a)).drops.decap['malformed']).toBe(before.drops.decap['malformed']! + 1);
  });

  test('no lease for the destination: no-route drop and ICMP net unreachable back to the sender', async () => {
    const before = await stats(a);
    const r = await ping(a.ns, '10.244.77.1', { count: 1, waitS: 2 });
    expect(r.received).toBe(0);
    expect(r.netUnreachable).toBe(true);
    const after = await stats(a);
    expect(after.drops.encap['no-route']).toBe(before.drops.encap['no-route']! + 1);
    expect(after.icmpSent).toBe(before.icmpSent + 1);
  });

  test('TTL 1: ttl-expired drop and ICMP time exceeded', async () => {
    const before = await stats(a);
    const res = await a.ns.exec(['ping', '-n', '-c', '1', '-W', '2', '-t', '1', b.tunnelIP], { check: false });
    expect(res.stdout).toMatch(/Time to live exceeded/);
    const after = await stats(a);
    expect(after.drops.encap['ttl-expired']).toBe(before.drops.encap['ttl-expired']! + 1);
    expect(after.peers['192.168.77.2']!.drops['ttl-expired']).toBeGreaterThanOrEqual(1);
  });

  test('setRoutes swaps the table atomically: removing the peer cuts traffic, restoring it heals it', async () => {
    await a.drv.call('setRoutes', { routes: [] });
    const cut = await ping(a.ns, b.tunnelIP, { count: 1, waitS: 2 });
    expect(cut.received).toBe(0);
    expect(cut.netUnreachable).toBe(true);
    await a.drv.call('setRoutes', { routes: A_ROUTES });
    const healed = await ping(a.ns, b.tunnelIP, { count: 2 });
    expect(healed.received).toBe(2);
    // Counters of a peer survive its removal and return.
    expect((await stats(a)).peers['192.168.77.2']!.tx.packets).toBeGreaterThan(2);
  });

  test('route tables swapped hundreds of times during a transfer: no loss, no crash', async () => {
    // 2,000 other leases plus the real one, republished while 8 MB cross the tunnel.
    const many = Array.from({ length: 2000 }, (_, i) => ({
      subnet: `10.${100 + Math.floor(i / 256)}.${i % 256}.0/24`,
      publicIP: `192.168.${78 + (i % 100)}.${1 + (i % 200)}`,
    }));
    let swapping = true;
    let swaps = 0;
    const churn = (async () => {
      while (swapping) {
        await a.drv.call('setRoutes', { routes: swaps % 2 ? A_ROUTES : [...many, ...A_ROUTES] });
        swaps++;
      }
    })();
    try {
      const r = await tcpTransfer(b.ns, b.tunnelIP, a.ns, 8 * 1024 * 1024);
      expect(r.received).toEqual(r.sent);
    } finally {
      swapping = false;
      await churn;
    }
    expect(swaps).toBeGreaterThan(10);
    await a.drv.call('setRoutes', { routes: A_ROUTES });
    expect((await stats(a)).features.routes).toBe(1);
  });

  test('stop() joins the threads and removes the TUN device with its route', async () => {
    await b.drv.call('stop');
    await b.drv.call('stop'); // idempotent
    const links = JSON.parse(await b.ns.ip(['-j', 'link', 'show'])) as { ifname: string }[];
    expect(links.map((l) => l.ifname)).not.toContain('flannel0');
    expect(await b.ns.ip(['route', 'show', '10.244.0.0/16'])).toBe('');
    b.drv.endInput();
    expect(await b.drv.exited).toBe(0);
  });
});

describe.runIf(built)('native engine with offloads turned off (needs root; run `npm run build` first)', () => {
  const prefix = runPrefix();
  let a: Node;
  let b: Node;

  beforeAll(async () => {
    const [nsA, nsB] = await underlay(prefix);
    // A: TUN checksum offload only (CHECKSUM_PARTIAL packets, no TSO) and no UDP GSO.
    // B: no TUN offloads at all, UDP GSO on (it batches equal-size plain packets).
    a = await startNode(nsA, '192.168.77.1', '10.244.1.0/24', A_ROUTES, { tunOffload: 'csum', udpGso: false });
    b = await startNode(nsB, '192.168.77.2', '10.244.2.0/24', B_ROUTES, { tunOffload: 'none' });
  });

  afterAll(async () => {
    await a?.ns.delete();
    await b?.ns.delete();
  });

  test('the features say which offloads are off', async () => {
    const fa = (await stats(a)).features;
    expect(fa).toMatchObject({ vnetHdr: true, tunCsum: true, tso4: false, udpGso: false });
    const fb = (await stats(b)).features;
    expect(fb).toMatchObject({ vnetHdr: true, tunCsum: false, tso4: false });
  });

  test('ping and a 16 MB TCP transfer each way still arrive intact', async () => {
    expect((await ping(a.ns, b.tunnelIP, { count: 2 })).received).toBe(2);
    const there = await tcpTransfer(b.ns, b.tunnelIP, a.ns, 16 * 1024 * 1024);
    expect(there.received).toEqual(there.sent);
    const back = await tcpTransfer(a.ns, a.tunnelIP, b.ns, 16 * 1024 * 1024);
    expect(back.received).toEqual(back.sent);
    const sa = await stats(a);
    expect(sa.features.tunGsoReads).toBe(0);
    expect(sa.features.udpSendDatagrams).toBe(sa.encap.packets);
    for (const s of [sa, await stats(b)]) {
      expect(s.drops.encap['malformed']).toBe(0);
      expect(s.drops.decap['malformed']).toBe(0);
      expect(s.drops.encap['send-error']).toBe(0);
      expect(s.drops.decap['tun-write-error']).toBe(0);
    }
  });
});
