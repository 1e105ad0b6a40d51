// An IPv6-only overlay (EnableIPv4 false) in both engines, against real TUN devices, sockets and
// namespaces (needs root): the node has only an IPv6 lease (no network/localSubnet in its config, routes
// with only subnet6). The TUN gets no IPv4 address or route; IPv4 read from the TUN or received from a
// peer is dropped as not-ip (docs/datapath.md). Run over an IPv4 underlay and over an IPv6 one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Netns, runPrefix } from '../testbed/netns.js';
import { A_IP, A_IP6, A_SUBNET6, A_TUNNEL6, B_IP, B_IP6, B_SUBNET6, B_TUNNEL6, MTU, NET6, PORT, twoNodes6 } from '../support/pair6.js';
import { tcpTransfer } from '../testbed/tcp.js';
import type { FixtureDriver } from '../support/driver.js';
import { requireBuild, run, spawnEngine, stats, stopEngines, VARIANTS } from '../support/engine-fixture.js';
import { udpPacket } from '../support/packets.js';
import { udp6Packet } from '../support/packets6.js';
import { sendDatagrams, UdpListener } from '../support/udp.js';
import { waitFor } from '../support/wait.js';

const LISTEN_PORT = 9998;

const UNDERLAYS = [
  { label: 'an IPv4 underlay', six: false, a: A_IP, b: B_IP },
  { label: 'an IPv6 underlay', six: true, a: A_IP6, b: B_IP6 },
] as const;

for (const variant of VARIANTS) {
  for (const underlay of UNDERLAYS) {
    describe(`datapath engine "${variant.label}": IPv6-only overlay over ${underlay.label} (root, netns)`, () => {
      let nsA: Netns;
      let nsB: Netns;
      let a: FixtureDriver;
      let b: FixtureDriver;
      // The peer's key in stats: its PublicIP, or its PublicIPv6 when it has no IPv4 one.
      const peerB = underlay.six ? B_IP6 : B_IP;

      const node = (ns: Netns, subnet6: string, ip: string, ip6: string): FixtureDriver =>
        spawnEngine(ns, variant, {
          tunName: 'felt0', mtu: MTU, port: PORT, network6: NET6, localSubnet6: subnet6,
          ...(underlay.six ? { bindIP: '0.0.0.0', bindIPv6: ip6 } : { bindIP: ip }),
        });
      const route = (subnet6: string, ip: string, ip6: string) =>
        underlay.six ? { publicIP: '0.0.0.0', publicIPv6: ip6, subnet6 } : { publicIP: ip, subnet6 };

      beforeAll(async () => {
        requireBuild();
        [nsA, nsB] = await twoNodes6(runPrefix());
        a = node(nsA, A_SUBNET6, A_IP, A_IP6);
        b = node(nsB, B_SUBNET6, B_IP, B_IP6);
        await Promise.all([a.call('start'), b.call('start')]);
        await a.call('setRoutes', { routes: [route(B_SUBNET6, B_IP, B_IP6)] });
        await b.call('setRoutes', { routes: [route(A_SUBNET6, A_IP, A_IP6)] });
      });

      afterAll(async () => {
        await stopEngines([a, b], [nsA, nsB]);
      });

      it('puts only IPv6 on the device: the /128 tunnel address and the IPv6 network route, no IPv4 address or route', async () => {
        expect((await run(nsA, ['ip', '-o', '-6', 'addr', 'show', 'dev', 'felt0'])).stdout).toContain(`inet6 ${A_TUNNEL6}/128`);
        expect((await run(nsA, ['ip', '-6', 'route', 'show', 'dev', 'felt0'])).stdout).toContain(NET6);
        expect((await run(nsA, ['ip', '-o', '-4', 'addr', 'show', 'dev', 'felt0'])).stdout.trim()).toBe('');
        expect((await run(nsA, ['ip', '-4', 'route', 'show', 'dev', 'felt0'])).stdout.trim()).toBe('');
      });

      it('carries ping -6 both ways, counted on the peer', async () => {
        const r = await run(nsA, ['ping', '-6', '-c', '3', '-i', '0.2', '-W', '5', B_TUNNEL6]);
        expect(r.stdout, r.stdout + r.stderr).toContain('3 received');
        const sa = await stats(a);
        expect(sa.peers[peerB]!.tx.packets).toBeGreaterThanOrEqual(3);
        expect(sa.peers[peerB]!.rx.packets).toBeGreaterThanOrEqual(3);
        expect(sa.features.routes).toBe(0); // no IPv4 route at all
      });

      it('carries a TCP/IPv6 stream intact', async () => {
        const r = await tcpTransfer(nsB, B_TUNNEL6, nsA, 4 * 1024 * 1024);
        expect(r.received).toEqual(r.sent);
      });

      it('drops IPv4 read from the TUN as not-ip (a route added by hand sends it there), not as own-subnet', async () => {
        await nsA.ip(['route', 'add', '10.99.0.0/16', 'dev', 'felt0']);
        try {
          const before = await stats(a);
          const r = await run(nsA, ['ping', '-c', '2', '-i', '0.2', '-W', '1', '10.99.0.1']);
          expect(r.code).not.toBe(0);
          await waitFor('the not-ip drops', async () => (await stats(a)).drops.encap['not-ip'] >= before.drops.encap['not-ip'] + 2);
          const after = await stats(a);
          expect(after.drops.encap['not-ip']).toBe(before.drops.encap['not-ip'] + 2);
          expect(after.drops.encap['own-subnet']).toBe(before.drops.encap['own-subnet']);
          expect(after.drops.encap['no-route']).toBe(before.drops.encap['no-route']);
          expect(after.peers[peerB]!.tx.packets).toBe(before.peers[peerB]!.tx.packets);
        } finally {
          await nsA.ip(['route', 'del', '10.99.0.0/16', 'dev', 'felt0']);
        }
      });

      describe('decap', () => {
        let listener: UdpListener;
        beforeAll(async () => {
          listener = await UdpListener.start(nsA, '::', LISTEN_PORT);
        });
        afterAll(() => listener?.close());

        it("delivers an inner IPv6 packet from the peer's subnet6 (positive control)", async () => {
          await sendDatagrams(nsB, underlay.b, 0, underlay.a, PORT, [udp6Packet('fd10:0:2::77', A_TUNNEL6, LISTEN_PORT, 'v6only-in')]);
          await waitFor('the datagram at the listener', () => listener.payloads().includes('v6only-in'));
        });

        it('drops an inner IPv4 packet from a known peer as not-ip, counted on that peer', async () => {
          const before = await stats(a);
          await sendDatagrams(nsB, underlay.b, 0, underlay.a, PORT, [udpPacket('10.244.2.5', '10.244.1.5', LISTEN_PORT, 'v4-in')]);
          await waitFor('the not-ip drop', async () => (await stats(a)).drops.decap['not-ip'] === before.drops.decap['not-ip'] + 1);
          const after = await stats(a);
          expect(after.peers[peerB]!.drops['not-ip']).toBe((before.peers[peerB]!.drops['not-ip'] ?? 0) + 1);
          expect(after.drops.decap['spoofed-source']).toBe(before.drops.decap['spoofed-source']);
        });
      });
    });
  }
}
