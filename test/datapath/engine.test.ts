// Engine-level behaviour of docs/datapath.md against real TUN devices, sockets and namespaces
// (needs root), for both engines. Each engine runs in two namespaces joined by a veth pair,
// A = 192.168.77.2 with lease 10.244.1.0/24 and B = 192.168.77.3 with lease 10.244.2.0/24, through
// test/support/fixtures/engine-node.mjs (the same fixture test/native/engine.test.ts drives), which
// imports the COMPILED engine from dist/: `npm test` builds first (else run `npm run build`).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Netns, runPrefix } from '../testbed/netns.js';
import type { FixtureDriver } from '../support/driver.js';
import { requireBuild, run, spawnEngine, stats, stopEngines, VARIANTS, type Variant } from '../support/engine-fixture.js';
import { udpPacket } from '../support/packets.js';
import { sendDatagrams, UdpListener } from '../support/udp.js';
import { waitFor } from '../support/wait.js';

const A_IP = '192.168.77.2';
const B_IP = '192.168.77.3';
const STRANGER_IP = '192.168.77.9'; // a second address on B's side that holds no lease
const A_SUBNET = '10.244.1.0/24';
const B_SUBNET = '10.244.2.0/24';
const A_TUNNEL = '10.244.1.0';
const B_TUNNEL = '10.244.2.0';
const PORT = 8285;
const LISTEN_PORT = 9999;

/** Starts the fixture for `v` in `ns` (not yet the engine: call 'start'). */
function engineNode(ns: Netns, v: Variant, subnet: string, bindIP: string, tunName = 'felt0'): FixtureDriver {
  return spawnEngine(ns, v, { tunName, mtu: 1472, network: '10.244.0.0/16', localSubnet: subnet, bindIP, port: PORT });
}

/** Two namespaces joined by a veth pair, with strict reverse-path filtering as many hosts run. */
async function twoNodes(prefix: string): Promise<[Netns, Netns]> {
  const nsA = await Netns.create(`${prefix}-a`);
  const nsB = await Netns.create(`${prefix}-b`);
  await nsA.ip(['link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth0', 'netns', nsB.name]);
  for (const [ns, addrs] of [[nsA, [A_IP]], [nsB, [B_IP, STRANGER_IP]]] as const) {
    for (const addr of addrs) await ns.ip(['addr', 'add', `${addr}/24`, 'dev', 'veth0']);
    await ns.ip(['link', 'set', 'veth0', 'up']);
    await ns.ip(['link', 'set', 'lo', 'up']);
    // Decapsulated and ICMP packets must pass strict reverse-path filtering.
    await ns.sysctl('net.ipv4.conf.all.rp_filter', '1');
  }
  return [nsA, nsB];
}

const linkExists = async (ns: Netns, dev: string): Promise<boolean> => (await run(ns, ['ip', 'link', 'show', 'dev', dev])).code === 0;

for (const variant of VARIANTS) {
  const engine = variant.engine;
  describe(`datapath engine "${variant.label}" (root, netns)`, () => {
    let nsA: Netns;
    let nsB: Netns;
    let a: FixtureDriver;
    let b: FixtureDriver;
    const extra: FixtureDriver[] = [];

    beforeAll(async () => {
      requireBuild();
      [nsA, nsB] = await twoNodes(runPrefix());
      a = engineNode(nsA, variant, A_SUBNET, A_IP);
      b = engineNode(nsB, variant, B_SUBNET, B_IP);
      await Promise.all([a.call('start'), b.call('start')]);
      await a.call('setRoutes', { routes: [{ subnet: B_SUBNET, publicIP: B_IP }] });
      await b.call('setRoutes', { routes: [{ subnet: A_SUBNET, publicIP: A_IP }] });
    });

    afterAll(async () => {
      await stopEngines([a, b, ...extra], [nsA, nsB]);
    });

    it('creates the TUN device: <lease .0>/32, the tunnel MTU, the network route', async () => {
      expect((await run(nsA, ['ip', '-o', '-4', 'addr', 'show', 'dev', 'felt0'])).stdout).toContain(`inet ${A_TUNNEL}/32`);
      expect((await run(nsA, ['ip', 'link', 'show', 'dev', 'felt0'])).stdout).toContain('mtu 1472');
      expect((await run(nsA, ['ip', 'route', 'show', 'dev', 'felt0'])).stdout).toContain('10.244.0.0/16');
    });

    it('carries ping from A to B\'s tunnel address; counters move per peer on both sides', async () => {
      const r = await run(nsA, ['ping', '-c', '3', '-i', '0.2', '-W', '5', B_TUNNEL]);
      expect(r.stdout, r.stdout + r.stderr).toContain('3 received');
      expect(r.code).toBe(0);

      const sa = await stats(a);
      const sb = await stats(b);
      expect(sa.engine).toBe(engine);
      expect(sa.peers[B_IP]!.tx.packets).toBeGreaterThanOrEqual(3);
      expect(sa.peers[B_IP]!.rx.packets).toBeGreaterThanOrEqual(3);
      expect(sa.peers[B_IP]!.lastTxAt).toBeGreaterThan(0);
      expect(sb.peers[A_IP]!.rx.packets).toBeGreaterThanOrEqual(3);
      expect(sb.peers[A_IP]!.tx.packets).toBeGreaterThanOrEqual(3);
      // 84-byte echo packets: 20 IP + 8 ICMP + 56 data.
      expect(sa.peers[B_IP]!.tx.bytes).toBeGreaterThanOrEqual(3 * 84);
      expect(sa.encap.packets).toBeGreaterThanOrEqual(3);
      expect(sb.decap.packets).toBeGreaterThanOrEqual(3);
    });

    it('answers TTL 1 with ICMP time-exceeded and counts ttl-expired', async () => {
      const before = await stats(a);
      const r = await run(nsA, ['ping', '-c', '1', '-t', '1', '-W', '3', B_TUNNEL]);
      expect(r.stdout, r.stdout + r.stderr).toMatch(/Time to live exceeded/i);
      const after = await stats(a);
      expect(after.drops.encap['ttl-expired']).toBe(before.drops.encap['ttl-expired'] + 1);
      expect(after.icmpSent).toBe(before.icmpSent + 1);
    });

    describe('decap admission', () => {
      let listener: UdpListener;

      beforeAll(async () => {
        listener = await UdpListener.start(nsA, '0.0.0.0', LISTEN_PORT);
      });
      afterAll(() => listener?.close());

      it('delivers an inner packet from the sending peer\'s subnet (positive control)', async () => {
        const before = await stats(a);
        const inner = udpPacket('10.244.2.77', A_TUNNEL, LISTEN_PORT, 'from-b-subnet');
        // From B's address, but not from its engine's port: the source port is not checked.
        await sendDatagrams(nsB, B_IP, 0, A_IP, PORT, [inner]);
        await waitFor('the datagram at the listener', () => listener.payloads().includes('from-b-subnet'));
        const after = await stats(a);
        expect(after.peers[B_IP]!.rx.packets).toBe(before.peers[B_IP]!.rx.packets + 1);
      });

      it('drops an inner source outside the sender\'s subnet as spoofed-source, undelivered', async () => {
        const before = await stats(a);
        await sendDatagrams(nsB, B_IP, 0, A_IP, PORT, [udpPacket('10.244.1.66', A_TUNNEL, LISTEN_PORT, 'spoofed')]);
        await waitFor('the drop counter', async () => {
          const s = await stats(a);
          return s.drops.decap['spoofed-source'] === before.drops.decap['spoofed-source'] + 1;
        });
        const after = await stats(a);
        expect(after.peers[B_IP]!.drops['spoofed-source']).toBe((before.peers[B_IP]!.drops['spoofed-source'] ?? 0) + 1);
        expect(after.decap.packets).toBe(before.decap.packets);
        expect(listener.payloads()).not.toContain('spoofed');
      });

      it('drops a datagram from an address holding no lease as unknown-peer, undelivered', async () => {
        const before = await stats(a);
        await sendDatagrams(nsB, STRANGER_IP, 0, A_IP, PORT, [udpPacket('10.244.2.77', A_TUNNEL, LISTEN_PORT, 'stranger')]);
        await waitFor('the drop counter', async () => {
          const s = await stats(a);
          return s.drops.decap['unknown-peer'] === before.drops.decap['unknown-peer'] + 1;
        });
        expect((await stats(a)).decap.packets).toBe(before.decap.packets);
        expect(listener.payloads()).not.toContain('stranger');
      });

      it('drops a datagram with a bad inner header checksum as malformed', async () => {
        const before = await stats(a);
        const inner = udpPacket('10.244.2.77', A_TUNNEL, LISTEN_PORT, 'bad-checksum');
        inner[10]! ^= 0x5a;
        await sendDatagrams(nsB, B_IP, 0, A_IP, PORT, [inner]);
        await waitFor('the drop counter', async () => (await stats(a)).drops.decap.malformed === before.drops.decap.malformed + 1);
        expect(listener.payloads()).not.toContain('bad-checksum');
      });

      it('drops an inner TTL of 0 as ttl-expired', async () => {
        const before = await stats(a);
        await sendDatagrams(nsB, B_IP, 0, A_IP, PORT, [udpPacket('10.244.2.77', A_TUNNEL, LISTEN_PORT, 'ttl0', 0)]);
        await waitFor('the drop counter', async () => (await stats(a)).drops.decap['ttl-expired'] === before.drops.decap['ttl-expired'] + 1);
        expect(listener.payloads()).not.toContain('ttl0');
      });
    });

    it('answers a destination without a lease with ICMP net-unreachable and counts no-route', async () => {
      // First a destination that never had a lease, then B's own after its route is removed.
      const before = await stats(a);
      let r = await run(nsA, ['ping', '-c', '1', '-W', '3', '10.244.200.1']);
      expect(r.stdout, r.stdout + r.stderr).toContain('Destination Net Unreachable');

      await a.call('setRoutes', { routes: [] });
      r = await run(nsA, ['ping', '-c', '1', '-W', '3', B_TUNNEL]);
      expect(r.stdout, r.stdout + r.stderr).toContain('Destination Net Unreachable');
      expect(r.code).not.toBe(0);

      const after = await stats(a);
      expect(after.drops.encap['no-route']).toBe(before.drops.encap['no-route'] + 2);
      expect(after.icmpSent).toBe(before.icmpSent + 2);
      // B left the route table: its last counters stay visible (a departed peer), unchanged.
      expect(after.peers[B_IP]).toEqual(before.peers[B_IP]);

      // And back: the route returns, ping works again.
      await a.call('setRoutes', { routes: [{ subnet: B_SUBNET, publicIP: B_IP }] });
      r = await run(nsA, ['ping', '-c', '1', '-W', '5', B_TUNNEL]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    });

    it('fails to start with a clear error when the port is taken, leaving no device', async () => {
      const dup = engineNode(nsA, variant, A_SUBNET, A_IP, 'felt9');
      extra.push(dup);
      await expect(dup.call('start')).rejects.toThrow(/EADDRINUSE|in use/i);
      expect(await linkExists(nsA, 'felt9')).toBe(false);
    });

    it('fails to start with a clear error on a bad TUN name, leaving no device or socket', async () => {
      const bad = engineNode(nsB, variant, B_SUBNET, STRANGER_IP, 'this-name-is-too-long');
      extra.push(bad);
      await expect(bad.call('start')).rejects.toThrow(/this-name-is-too-long/);
      // The socket was released: the same address and port bind fine now.
      const again = engineNode(nsB, variant, B_SUBNET, STRANGER_IP, 'felt8');
      extra.push(again);
      await again.call('start');
      expect(await linkExists(nsB, 'felt8')).toBe(true);
      await again.call('stop');
      expect(await linkExists(nsB, 'felt8')).toBe(false);
    });

    it('stop() removes the TUN device and its route', async () => {
      await a.call('stop');
      expect(await linkExists(nsA, 'felt0')).toBe(false);
      expect((await run(nsA, ['ip', 'route', 'show', '10.244.0.0/16'])).stdout.trim()).toBe('');
    });
  });
}
