// Engine-level behaviour of docs/datapath.md against real TUN devices, sockets and namespaces
// (needs root). Each engine runs in two namespaces joined by a veth pair, A = 192.168.77.2 with
// lease 10.244.1.0/24 and B = 192.168.77.3 with lease 10.244.2.0/24, through the fixture
// fixtures/engine-node.mjs, which imports the COMPILED engine from dist/: this relies on `npm test`
// running `npm run build` as its pretest step (run `npm run build` yourself before `npx vitest`).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EngineNode,
  eventually,
  inNs,
  inNsAsync,
  repoRoot,
  runPrefix,
  sendDatagram,
  TwoNodes,
  UdpListener,
  udpPacket,
  type EngineNodeConfig,
} from './harness.js';

const A_IP = '192.168.77.2';
const B_IP = '192.168.77.3';
const STRANGER_IP = '192.168.77.9'; // a second address on B's side that holds no lease
const A_SUBNET = '10.244.1.0/24';
const B_SUBNET = '10.244.2.0/24';
const A_TUNNEL = '10.244.1.0';
const B_TUNNEL = '10.244.2.0';
const PORT = 8285;
const LISTEN_PORT = 9999;

// The native engine runs the suite twice: with its default single packet thread and with a
// thread per direction (--datapath-threads 2).
const VARIANTS = [
  { engine: 'js', label: 'js', threads: undefined },
  { engine: 'native', label: 'native', threads: undefined },
  { engine: 'native', label: 'native, a thread per direction', threads: 2 },
] as const;
type Engine = (typeof VARIANTS)[number]['engine'];

function engineSource(engine: Engine): string {
  return path.join(repoRoot, 'src/datapath', `${engine}.ts`);
}

const distEntry = path.join(repoRoot, 'dist/src/datapath/index.js');

for (const { engine, label, threads } of VARIANTS) {
  const nodeConfig = (subnet: string, bindIP: string, tunName = 'felt0'): EngineNodeConfig => ({
    tunName, mtu: 1472, network: '10.244.0.0/16', localSubnet: subnet, bindIP, port: PORT, ...(threads ? { threads } : {}),
  });
  if (!existsSync(engineSource(engine))) {
    describe(`datapath engine "${label}" (root, netns)`, () => {
      it(`has an implementation at ${path.relative(repoRoot, engineSource(engine))}`, () => {
        throw new Error(`${engineSource(engine)} does not exist`);
      });
    });
    continue;
  }

  describe(`datapath engine "${label}" (root, netns)`, () => {
    const nodes = new TwoNodes(runPrefix());
    let a: EngineNode;
    let b: EngineNode;
    const extra: EngineNode[] = [];

    beforeAll(async () => {
      if (!existsSync(distEntry)) throw new Error(`${distEntry} missing: run \`npm run build\` first`);
      nodes.create([`${STRANGER_IP}/24`]);
      a = new EngineNode(nodes.a, engine, nodeConfig(A_SUBNET, A_IP));
      b = new EngineNode(nodes.b, engine, nodeConfig(B_SUBNET, B_IP));
      await Promise.all([a.ready(), b.ready()]);
      await a.setRoutes([{ subnet: B_SUBNET, publicIP: B_IP }]);
      await b.setRoutes([{ subnet: A_SUBNET, publicIP: A_IP }]);
    });

    afterAll(async () => {
      for (const n of [a, b, ...extra]) n?.kill();
      await Promise.all([a, b, ...extra].filter(Boolean).map((n) => n.waitExit()));
      nodes.destroy();
    });

    it('creates the TUN device: <lease .0>/32, the tunnel MTU, the network route', () => {
      const addr = inNs(nodes.a, 'ip', ['-o', '-4', 'addr', 'show', 'dev', 'felt0']);
      expect(addr.stdout).toContain(`inet ${A_TUNNEL}/32`);
      expect(inNs(nodes.a, 'ip', ['link', 'show', 'dev', 'felt0']).stdout).toContain('mtu 1472');
      expect(inNs(nodes.a, 'ip', ['route', 'show', 'dev', 'felt0']).stdout).toContain('10.244.0.0/16');
    });

    it('carries ping from A to B\'s tunnel address; counters move per peer on both sides', async () => {
      const r = await inNsAsync(nodes.a, 'ping', ['-c', '3', '-i', '0.2', '-W', '5', B_TUNNEL]);
      expect(r.stdout, r.stdout + r.stderr).toContain('3 received');
      expect(r.code).toBe(0);

      const sa = await a.stats();
      const sb = await b.stats();
      expect(sa.engine).toBe(engine);
      expect(sa.peers[B_IP].tx.packets).toBeGreaterThanOrEqual(3);
      expect(sa.peers[B_IP].rx.packets).toBeGreaterThanOrEqual(3);
      expect(sa.peers[B_IP].lastTxAt).toBeGreaterThan(0);
      expect(sb.peers[A_IP].rx.packets).toBeGreaterThanOrEqual(3);
      expect(sb.peers[A_IP].tx.packets).toBeGreaterThanOrEqual(3);
      // 84-byte echo packets: 20 IP + 8 ICMP + 56 data.
      expect(sa.peers[B_IP].tx.bytes).toBeGreaterThanOrEqual(3 * 84);
      expect(sa.encap.packets).toBeGreaterThanOrEqual(3);
      expect(sb.decap.packets).toBeGreaterThanOrEqual(3);
    });

    it('answers TTL 1 with ICMP time-exceeded and counts ttl-expired', async () => {
      const before = await a.stats();
      const r = await inNsAsync(nodes.a, 'ping', ['-c', '1', '-t', '1', '-W', '3', B_TUNNEL]);
      expect(r.stdout, r.stdout + r.stderr).toMatch(/Time to live exceeded/i);
      const after = await a.stats();
      expect(after.drops.encap['ttl-expired']).toBe(before.drops.encap['ttl-expired'] + 1);
      expect(after.icmpSent).toBe(before.icmpSent + 1);
    });

    describe('decap admission', () => {
      let listener: UdpListener;

      beforeAll(async () => {
        listener = new UdpListener(nodes.a, LISTEN_PORT);
        await listener.listening();
      });
      afterAll(() => listener?.close());

      it('delivers an inner packet from the sending peer\'s subnet (positive control)', async () => {
        const before = await a.stats();
        const inner = udpPacket('10.244.2.77', A_TUNNEL, LISTEN_PORT, 'from-b-subnet');
        // From B's address, but not from its engine's port: the source port is not checked.
        await sendDatagram(nodes.b, B_IP, A_IP, PORT, inner);
        expect(await eventually(async () => listener.received.includes('from-b-subnet'))).toBe(true);
        const after = await a.stats();
        expect(after.peers[B_IP].rx.packets).toBe(before.peers[B_IP].rx.packets + 1);
      });

      it('drops an inner source outside the sender\'s subnet as spoofed-source, undelivered', async () => {
        const before = await a.stats();
        await sendDatagram(nodes.b, B_IP, A_IP, PORT, udpPacket('10.244.1.66', A_TUNNEL, LISTEN_PORT, 'spoofed'));
        expect(
          await eventually(async () => {
            const s = await a.stats();
            return s.drops.decap['spoofed-source'] === before.drops.decap['spoofed-source'] + 1;
          }),
        ).toBe(true);
        const after = await a.stats();
        expect(after.peers[B_IP].drops['spoofed-source']).toBe((before.peers[B_IP].drops['spoofed-source'] ?? 0) + 1);
        expect(after.decap.packets).toBe(before.decap.packets);
        expect(listener.received).not.toContain('spoofed');
      });

      it('drops a datagram from an address holding no lease as unknown-peer, undelivered', async () => {
        const before = await a.stats();
        await sendDatagram(nodes.b, STRANGER_IP, A_IP, PORT, udpPacket('10.244.2.77', A_TUNNEL, LISTEN_PORT, 'stranger'));
        expect(
          await eventually(async () => {
            const s = await a.stats();
            return s.drops.decap['unknown-peer'] === before.drops.decap['unknown-peer'] + 1;
          }),
        ).toBe(true);
        expect((await a.stats()).decap.packets).toBe(before.decap.packets);
        expect(listener.received).not.toContain('stranger');
      });

      it('drops a datagram with a bad inner header checksum as malformed', async () => {
        const before = await a.stats();
        const inner = udpPacket('10.244.2.77', A_TUNNEL, LISTEN_PORT, 'bad-checksum');
        inner[10]! ^= 0x5a;
        await sendDatagram(nodes.b, B_IP, A_IP, PORT, inner);
        expect(
          await eventually(async () => (await a.stats()).drops.decap.malformed === before.drops.decap.malformed + 1),
        ).toBe(true);
        expect(listener.received).not.toContain('bad-checksum');
      });

      it('drops an inner TTL of 0 as ttl-expired', async () => {
        const before = await a.stats();
        await sendDatagram(nodes.b, B_IP, A_IP, PORT, udpPacket('10.244.2.77', A_TUNNEL, LISTEN_PORT, 'ttl0', 0));
        expect(
          await eventually(
            async () => (await a.stats()).drops.decap['ttl-expired'] === before.drops.decap['ttl-expired'] + 1,
          ),
        ).toBe(true);
        expect(listener.received).not.toContain('ttl0');
      });
    });

    it('answers a destination without a lease with ICMP net-unreachable and counts no-route', async () => {
      // First a destination that never had a lease, then B's own after its route is removed.
      const before = await a.stats();
      let r = await inNsAsync(nodes.a, 'ping', ['-c', '1', '-W', '3', '10.244.200.1']);
      expect(r.stdout, r.stdout + r.stderr).toContain('Destination Net Unreachable');

      await a.setRoutes([]);
      r = await inNsAsync(nodes.a, 'ping', ['-c', '1', '-W', '3', B_TUNNEL]);
      expect(r.stdout, r.stdout + r.stderr).toContain('Destination Net Unreachable');
      expect(r.code).not.toBe(0);

      const after = await a.stats();
      expect(after.drops.encap['no-route']).toBe(before.drops.encap['no-route'] + 2);
      expect(after.icmpSent).toBe(before.icmpSent + 2);
      // B left the route table: its last counters stay visible (a departed peer), unchanged.
      expect(after.peers[B_IP]).toEqual(before.peers[B_IP]);

      // And back: the route returns, ping works again.
      await a.setRoutes([{ subnet: B_SUBNET, publicIP: B_IP }]);
      r = await inNsAsync(nodes.a, 'ping', ['-c', '1', '-W', '5', B_TUNNEL]);
      expect(r.code, r.stdout + r.stderr).toBe(0);
    });

    it('fails to start with a clear error when the port is taken, leaving no device', async () => {
      const dup = new EngineNode(nodes.a, engine, nodeConfig(A_SUBNET, A_IP, 'felt9'));
      extra.push(dup);
      const err = await dup.startError();
      expect(err).toMatch(/EADDRINUSE|in use/i);
      expect(await dup.waitExit()).toBe(1);
      expect(inNs(nodes.a, 'ip', ['link', 'show', 'dev', 'felt9']).code).not.toBe(0);
    });

    it('fails to start with a clear error on a bad TUN name, leaving no device or socket', async () => {
      const bad = new EngineNode(nodes.b, engine, nodeConfig(B_SUBNET, STRANGER_IP, 'this-name-is-too-long'));
      extra.push(bad);
      const err = await bad.startError();
      expect(err).toMatch(/this-name-is-too-long/);
      expect(await bad.waitExit()).toBe(1);
      // The socket was released: the same address and port bind fine now.
      const again = new EngineNode(nodes.b, engine, nodeConfig(B_SUBNET, STRANGER_IP, 'felt8'));
      extra.push(again);
      await again.ready();
      expect(inNs(nodes.b, 'ip', ['link', 'show', 'dev', 'felt8']).code).toBe(0);
      expect(await again.stop()).toBe(0);
      expect(inNs(nodes.b, 'ip', ['link', 'show', 'dev', 'felt8']).code).not.toBe(0);
    });

    it('stop() removes the TUN device and its route', async () => {
      expect(await a.stop()).toBe(0);
      expect(inNs(nodes.a, 'ip', ['link', 'show', 'dev', 'felt0']).code).not.toBe(0);
      expect(inNs(nodes.a, 'ip', ['route', 'show', '10.244.0.0/16']).stdout.trim()).toBe('');
    });
  });
}
