// IPv6 behaviour of docs/datapath.md ("IPv6", "Underlay per peer") against real TUN devices,
// sockets and namespaces (needs root), for both engines: IPv6 pod traffic over an IPv4 underlay
// and over an IPv6 one. Namespaces get their IPv6 addresses inside them only (nodad). Like
// engine.test.ts it drives test/support/fixtures/engine-node.mjs, which imports dist/ (build first).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Netns, runPrefix } from '../testbed/netns.js';
import { A_IP, A_IP6, A_SUBNET6, A_TUNNEL6, B_IP, B_IP6, B_SUBNET6, B_TUNNEL6, MTU, NET6, PORT, twoNodes6 } from '../support/pair6.js';
import { tcpTransfer } from '../testbed/tcp.js';
import type { FixtureDriver } from '../support/driver.js';
import { requireBuild, run, spawnEngine, stats, stopEngines, VARIANTS, type Variant } from '../support/engine-fixture.js';
import { PADN6, udp6Packet } from '../support/packets6.js';
import { sendDatagrams, UdpListener } from '../support/udp.js';
import { waitFor } from '../support/wait.js';

const LISTEN_PORT = 9999;

interface Node6 {
  subnet: string;
  subnet6: string;
  bindIP: string;
  bindIPv6?: string;
}

function engineNode(ns: Netns, v: Variant, n: Node6): FixtureDriver {
  return spawnEngine(ns, v, {
    tunName: 'felt0', mtu: MTU, network: '10.244.0.0/16', localSubnet: n.subnet, bindIP: n.bindIP, port: PORT,
    network6: NET6, localSubnet6: n.subnet6, ...(n.bindIPv6 ? { bindIPv6: n.bindIPv6 } : {}),
  });
}

/** Udp6InDatagrams of the namespace: moves only when a datagram arrived over IPv6. */
async function udp6In(ns: Netns): Promise<number> {
  const m = /Udp6InDatagrams\s+(\d+)/.exec((await run(ns, ['cat', '/proc/net/snmp6'])).stdout);
  return Number(m?.[1] ?? -1);
}

for (const variant of VARIANTS) {
  describe(`datapath engine "${variant.label}": IPv6 pods over an IPv4 underlay (root, netns)`, () => {
    let nsA: Netns;
    let nsB: Netns;
    let a: FixtureDriver;
    let b: FixtureDriver;
    const routeToB = { subnet: '10.244.2.0/24', publicIP: B_IP, subnet6: B_SUBNET6 };

    beforeAll(async () => {
      requireBuild();
      [nsA, nsB] = await twoNodes6(runPrefix());
      a = engineNode(nsA, variant, { subnet: '10.244.1.0/24', subnet6: A_SUBNET6, bindIP: A_IP });
      b = engineNode(nsB, variant, { subnet: '10.244.2.0/24', subnet6: B_SUBNET6, bindIP: B_IP });
      await Promise.all([a.call('start'), b.call('start')]);
      await a.call('setRoutes', { routes: [routeToB] });
      await b.call('setRoutes', { routes: [{ subnet: '10.244.1.0/24', publicIP: A_IP, subnet6: A_SUBNET6 }] });
    });

    afterAll(async () => {
      await stopEngines([a, b], [nsA, nsB]);
    });

    it('puts the IPv6 tunnel address (/128) and the IPv6 network route on the device', async () => {
      expect((await run(nsA, ['ip', '-o', '-6', 'addr', 'show', 'dev', 'felt0'])).stdout).toContain(`inet6 ${A_TUNNEL6}/128`);
      expect((await run(nsA, ['ip', '-6', 'route', 'show', 'dev', 'felt0'])).stdout).toContain(NET6);
    });

    it('carries ping -6 both ways, counted on the peer', async () => {
      const r = await run(nsA, ['ping', '-6', '-c', '3', '-i', '0.2', '-W', '5', B_TUNNEL6]);
      expect(r.stdout, r.stdout + r.stderr).toContain('3 received');
      const sa = await stats(a);
      expect(sa.peers[B_IP]!.tx.packets).toBeGreaterThanOrEqual(3);
      expect(sa.peers[B_IP]!.rx.packets).toBeGreaterThanOrEqual(3);
      expect((await stats(b)).peers[A_IP]!.rx.packets).toBeGreaterThanOrEqual(3);
    });

    it('answers hop limit 1 with ICMPv6 time exceeded and counts ttl-expired', async () => {
      const before = await stats(a);
      const r = await run(nsA, ['ping', '-6', '-c', '1', '-t', '1', '-W', '3', B_TUNNEL6]);
      expect(r.stdout, r.stdout + r.stderr).toMatch(/Time exceeded/i);
      const after = await stats(a);
      expect(after.drops.encap['ttl-expired']).toBe(before.drops.encap['ttl-expired'] + 1);
      expect(after.icmpSent).toBe(before.icmpSent + 1);
    });

    it('answers a destination without an IPv6 lease with ICMPv6 unreachable and counts no-route', async () => {
      const before = await stats(a);
      const r = await run(nsA, ['ping', '-6', '-c', '1', '-W', '3', 'fd10:0:99::1']);
      expect(r.stdout, r.stdout + r.stderr).toMatch(/Destination unreachable/i);
      const after = await stats(a);
      expect(after.drops.encap['no-route']).toBe(before.drops.encap['no-route'] + 1);
      expect(after.icmpSent).toBe(before.icmpSent + 1);
    });

    it('answers a packet above the tunnel MTU with Packet Too Big naming that MTU', async () => {
      // The device MTU raised past the engine's: the kernel now hands over bigger packets.
      await nsA.ip(['link', 'set', 'felt0', 'mtu', '1500']);
      try {
        const before = await stats(a);
        const r = await run(nsA, ['ping', '-6', '-c', '1', '-W', '3', '-M', 'do', '-s', '1440', B_TUNNEL6]);
        expect(r.stdout, r.stdout + r.stderr).toMatch(new RegExp(`Packet too big: mtu=${MTU}`, 'i'));
        const after = await stats(a);
        expect(after.drops.encap.oversize).toBe(before.drops.encap.oversize + 1);
        expect(after.icmpSent).toBe(before.icmpSent + 1);
      } finally {
        await nsA.ip(['link', 'set', 'felt0', 'mtu', String(MTU)]);
      }
    });

    describe('decap admission', () => {
      let listener: UdpListener;
      beforeAll(async () => {
        listener = await UdpListener.start(nsA, '::', LISTEN_PORT);
      });
      afterAll(() => listener?.close());

      it('delivers an inner IPv6 packet from the sending peer\'s subnet6 (positive control)', async () => {
        await sendDatagrams(nsB, B_IP, 0, A_IP, PORT, [udp6Packet('fd10:0:2::77', A_TUNNEL6, LISTEN_PORT, 'from-b6')]);
        await waitFor('the datagram at the listener', () => listener.payloads().includes('from-b6'));
      });

      it('drops an inner IPv6 source outside the sender\'s subnet6 as spoofed-source', async () => {
        const before = await stats(a);
        await sendDatagrams(nsB, B_IP, 0, A_IP, PORT, [udp6Packet('fd10:0:1::66', A_TUNNEL6, LISTEN_PORT, 'spoofed6')]);
        await waitFor('the drop counter', async () => (await stats(a)).drops.decap['spoofed-source'] === before.drops.decap['spoofed-source'] + 1);
        expect((await stats(a)).peers[B_IP]!.drops['spoofed-source']).toBe((before.peers[B_IP]!.drops['spoofed-source'] ?? 0) + 1);
        expect(listener.payloads()).not.toContain('spoofed6');
      });

      it('drops extension header chains past the bounds, and a Hop-by-Hop header not first, as ext-header', async () => {
        const before = await stats(a);
        const nine = Array.from({ length: 9 }, () => [60, PADN6] as [number, Buffer]);
        const late = [[60, PADN6], [0, PADN6]] as [number, Buffer][];
        await sendDatagrams(nsB, B_IP, 0, A_IP, PORT, [udp6Packet('fd10:0:2::77', A_TUNNEL6, LISTEN_PORT, 'nine', 64, nine), udp6Packet('fd10:0:2::77', A_TUNNEL6, LISTEN_PORT, 'late', 64, late)]);
        await waitFor('the drop counter', async () => (await stats(a)).drops.decap['ext-header'] === before.drops.decap['ext-header'] + 2);
        // Eight headers are within the bounds: delivered.
        const eight = Array.from({ length: 8 }, () => [60, PADN6] as [number, Buffer]);
        await sendDatagrams(nsB, B_IP, 0, A_IP, PORT, [udp6Packet('fd10:0:2::77', A_TUNNEL6, LISTEN_PORT, 'eight', 64, eight)]);
        await waitFor('the datagram at the listener', () => listener.payloads().includes('eight'));
        expect(listener.payloads()).not.toContain('nine');
      });
    });

    it('never sends IPv6 pod traffic to a peer whose lease has no IPv6 subnet', async () => {
      await a.call('setRoutes', { routes: [{ subnet: '10.244.2.0/24', publicIP: B_IP }] });
      try {
        const before = await stats(a);
        const r = await run(nsA, ['ping', '-6', '-c', '1', '-W', '3', B_TUNNEL6]);
        expect(r.code).not.toBe(0);
        const after = await stats(a);
        expect(after.drops.encap['no-route']).toBe(before.drops.encap['no-route'] + 1);
        expect(after.peers[B_IP]!.tx.packets).toBe(before.peers[B_IP]!.tx.packets);
        // IPv4 to it still flows.
        expect((await run(nsA, ['ping', '-c', '1', '-W', '5', '10.244.2.0'])).code).toBe(0);
      } finally {
        await a.call('setRoutes', { routes: [routeToB] });
      }
    });
  });

  describe(`datapath engine "${variant.label}": over an IPv6 underlay (root, netns)`, () => {
    let nsA: Netns;
    let nsB: Netns;
    let a: FixtureDriver;
    let b: FixtureDriver;

    beforeAll(async () => {
      requireBuild();
      [nsA, nsB] = await twoNodes6(runPrefix());
      // A has both underlays; B has only an IPv6 one (its peers know it by its PublicIPv6).
      a = engineNode(nsA, variant, { subnet: '10.244.1.0/24', subnet6: A_SUBNET6, bindIP: A_IP, bindIPv6: A_IP6 });
      b = engineNode(nsB, variant, { subnet: '10.244.2.0/24', subnet6: B_SUBNET6, bindIP: '0.0.0.0', bindIPv6: B_IP6 });
      await Promise.all([a.call('start'), b.call('start')]);
      await a.call('setRoutes', { routes: [{ subnet: '10.244.2.0/24', publicIP: '0.0.0.0', subnet6: B_SUBNET6, publicIPv6: B_IP6 }] });
      await b.call('setRoutes', { routes: [{ subnet: '10.244.1.0/24', publicIP: A_IP, publicIPv6: A_IP6, subnet6: A_SUBNET6 }] });
    });

    afterAll(async () => {
      await stopEngines([a, b], [nsA, nsB]);
    });

    it('carries IPv6 and IPv4 pod traffic both ways over IPv6 datagrams; the IPv6-only peer is keyed by its PublicIPv6', async () => {
      const inA = await udp6In(nsA);
      const inB = await udp6In(nsB);
      let r = await run(nsA, ['ping', '-6', '-c', '3', '-i', '0.2', '-W', '5', B_TUNNEL6]);
      expect(r.stdout, r.stdout + r.stderr).toContain('3 received');
      r = await run(nsA, ['ping', '-c', '3', '-i', '0.2', '-W', '5', '10.244.2.0']);
      expect(r.stdout, r.stdout + r.stderr).toContain('3 received');
      expect(await udp6In(nsB)).toBeGreaterThanOrEqual(inB + 6);
      expect(await udp6In(nsA)).toBeGreaterThan(inA); // the replies came back over IPv6 too (GRO may merge counts)
      const sa = await stats(a);
      expect(sa.peers[B_IP6]!.publicIP).toBe(B_IP6);
      expect(sa.peers[B_IP6]!.tx.packets).toBeGreaterThanOrEqual(6);
      expect((await stats(b)).peers[A_IP]!.rx.packets).toBeGreaterThanOrEqual(6);
    });

    it('carries a TCP/IPv6 stream intact (TSO6 super-packets split on encap, segments merged on decap)', async () => {
      const before = await stats(a);
      const r = await tcpTransfer(nsB, B_TUNNEL6, nsA, 8 * 1024 * 1024);
      expect(r.received).toEqual(r.sent);
      if (variant.engine === 'native') {
        // The kernel hands a bulk TCP/IPv6 sender's data over as TSO6 super-packets.
        const after = await stats(a);
        expect(after.features.tso6).toBe(true);
        expect(Number(after.features.tunGsoReads)).toBeGreaterThan(Number(before.features.tunGsoReads));
      }
    });

    it('drops traffic to a peer with no underlay family in common as no-underlay', async () => {
      // B has no IPv4 socket: a peer known only by an IPv4 address cannot be reached from it.
      await b.call('setRoutes', { routes: [{ subnet: '10.244.1.0/24', publicIP: A_IP, subnet6: A_SUBNET6 }] });
      const before = await stats(b);
      const r = await run(nsB, ['ping', '-6', '-c', '1', '-W', '2', A_TUNNEL6]);
      expect(r.code).not.toBe(0);
      const after = await stats(b);
      expect(after.drops.encap['no-underlay']).toBe(before.drops.encap['no-underlay'] + 1);
      expect(after.peers[A_IP]!.drops['no-underlay']).toBe((before.peers[A_IP]!.drops['no-underlay'] ?? 0) + 1);
    });
  });
}
