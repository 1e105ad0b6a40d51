// The prober's state machine and rate, against a fake socket and fake timers (no root).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Lease } from '../../src/lease/types.js';
import { parseIPv4, parseSubnet } from '../../src/net/cidr.js';
import type { EchoRequest, ReceivedIcmp } from '../../src/probe/packet.js';
import { PeerProber, type Probe6SocketLike, type ProbeSocketLike } from '../../src/probe/prober.js';
import type { EchoRequest6, ReceivedIcmp6 } from '../../src/probe/packet6.js';
import { parseIPv6, parseSubnet6 } from '../../src/net/ip6.js';
import type { Received } from '../../src/probe/socket.js';

function lease(subnet: string, publicIP: string): Lease {
  return { subnet: parseSubnet(subnet), publicIP, source: { kind: 'etcd', key: subnet, modRevision: '1' }, attrs: {} };
}

class FakeSocket implements ProbeSocketLike {
  sent: Array<EchoRequest & { at: number }> = [];
  queue: Array<Received<ReceivedIcmp>> = [];
  /** Answer small probes to these targets, full-size ones only when `full` too. */
  answer = new Map<number, { full: boolean; rttMs: number }>();
  send(req: EchoRequest): number {
    const at = Date.now();
    this.sent.push({ ...req, at });
    const a = this.answer.get(req.dst);
    if (a && (req.size < 200 || a.full)) this.queue.push({ kind: 'echo-reply', from: req.dst, to: req.src, id: req.id, seq: req.seq, size: req.size, at: at + a.rttMs });
    return at;
  }
  poll(): Array<Received<ReceivedIcmp>> {
    return this.queue.splice(0);
  }
  close(): void {}
}

const LOCAL = { address: parseIPv4('10.244.1.0'), mtu: 1472, port: 8285 };

describe('peer prober', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('marks answering peers reachable with an RTT median and a passing full-size probe; silent ones unreachable after three losses', async () => {
    const peers = [lease('10.244.2.0/24', '192.168.77.12'), lease('10.244.3.0/24', '192.168.77.13')];
    const sock = new FakeSocket();
    sock.answer.set(parseIPv4('10.244.2.0'), { full: true, rttMs: 0.5 });
    const prober = new PeerProber({ local: () => LOCAL, peers: () => peers }, sock, { intervalSeconds: 1, maxRate: 50, timeoutMs: 500 });
    prober.start();
    await vi.advanceTimersByTimeAsync(10_000);
    const s = prober.summary();
    prober.stop();
    const good = s.peers['10.244.2.0/24']!;
    expect(good.state).toBe('reachable');
    expect(good.rttP50Ms).toBeCloseTo(0.5);
    expect(good.mtu.state).toBe('ok');
    expect(good.mtu.size).toBe(1472);
    const bad = s.peers['10.244.3.0/24']!;
    expect(bad.state).toBe('unreachable');
    expect(bad.consecutiveFailures).toBeGreaterThanOrEqual(3);
    expect(bad.lastSuccessAt).toBeUndefined();
    expect(sock.sent.every((p) => p.src === LOCAL.address && p.df)).toBe(true);
    // Full-size probes go to a silent peer only until its first loss is decided, never once it is unreachable.
    const fullToBad = sock.sent.filter((p) => p.dst === parseIPv4('10.244.3.0') && p.size === 1472);
    const smallToBad = sock.sent.filter((p) => p.dst === parseIPv4('10.244.3.0') && p.size < 200);
    expect(fullToBad.length).toBeLessThanOrEqual(3);
    expect(smallToBad.length).toBeGreaterThan(fullToBad.length + 3);
  });

  it('fails the path MTU only when small probes pass and full-size ones do not', async () => {
    const peers = [lease('10.244.2.0/24', '192.168.77.12')];
    const sock = new FakeSocket();
    sock.answer.set(parseIPv4('10.244.2.0'), { full: false, rttMs: 1 });
    const prober = new PeerProber({ local: () => LOCAL, peers: () => peers }, sock, { intervalSeconds: 1, maxRate: 50, timeoutMs: 500 });
    prober.start();
    await vi.advanceTimersByTimeAsync(8_000);
    const p = prober.summary().peers['10.244.2.0/24']!;
    prober.stop();
    expect(p.state).toBe('reachable');
    expect(p.mtu.state).toBe('failed');
  });

  it('attributes an ICMP port-unreachable about UDP to a peer\'s tunnel port to that peer', async () => {
    const peers = [lease('10.244.3.0/24', '192.168.77.13')];
    const sock = new FakeSocket();
    const prober = new PeerProber({ local: () => LOCAL, peers: () => peers }, sock, { intervalSeconds: 1, maxRate: 50, timeoutMs: 500 });
    prober.start();
    sock.queue.push({
      kind: 'error', from: parseIPv4('192.168.77.13'), to: parseIPv4('192.168.77.11'), type: 3, code: 3, mtu: 0,
      quoted: { protocol: 17, src: parseIPv4('192.168.77.11'), dst: parseIPv4('192.168.77.13'), srcPort: 8285, dstPort: 8285 }, at: Date.now(),
    });
    // Read with the replies to the next probe (no timer wakes an idle prober just to read).
    await vi.advanceTimersByTimeAsync(2000);
    const p = prober.summary().peers['10.244.3.0/24']!;
    prober.stop();
    expect(p.evidence).toMatchObject({ kind: 'port-unreachable', from: '192.168.77.13', about: 'tunnel' });
  });

  it('keeps the total rate under maxRate at 5,000 peers, and forgets removed peers', async () => {
    let peers = Array.from({ length: 5000 }, (_, i) => lease(`10.${100 + (i >> 8)}.${i & 255}.0/24`, `172.16.${i >> 8}.${i & 255}`));
    const sock = new FakeSocket();
    const prober = new PeerProber({ local: () => LOCAL, peers: () => peers }, sock, { intervalSeconds: 10, maxRate: 20, timeoutMs: 3000 });
    prober.start();
    await vi.advanceTimersByTimeAsync(60_000);
    // 20/s for 60 s, each tick at most one small and one full-size probe; jitter averages out.
    const small = sock.sent.filter((p) => p.size < 200).length;
    expect(small).toBeLessThanOrEqual(20 * 60 * 1.2);
    expect(small).toBeGreaterThan(20 * 60 * 0.5);
    expect(Object.keys(prober.summary().peers)).toHaveLength(5000);
    peers = peers.slice(0, 10);
    prober.leaseChanged();
    await vi.advanceTimersByTimeAsync(1000);
    expect(Object.keys(prober.summary().peers)).toHaveLength(10);
    prober.stop();
  });

  it('sends nothing while there is no data path', async () => {
    const sock = new FakeSocket();
    const prober = new PeerProber({ local: () => undefined, peers: () => [lease('10.244.2.0/24', '192.168.77.12')] }, sock, { intervalSeconds: 1, maxRate: 50, timeoutMs: 500 });
    prober.start();
    await vi.advanceTimersByTimeAsync(5000);
    prober.stop();
    expect(sock.sent).toHaveLength(0);
  });

  describe('IPv6', () => {
    class FakeSocket6 implements Probe6SocketLike {
      sent: Array<EchoRequest6 & { at: number }> = [];
      queue: Array<Received<ReceivedIcmp6>> = [];
      answer = new Map<bigint, { full: boolean }>();
      send(req: EchoRequest6): number {
        const at = Date.now();
        this.sent.push({ ...req, at });
        const a = this.answer.get(req.dst);
        if (a && (req.size < 200 || a.full)) this.queue.push({ kind: 'echo-reply', from: req.dst, id: req.id, seq: req.seq, size: req.size, at: at + 1 });
        return at;
      }
      poll(): Array<Received<ReceivedIcmp6>> {
        return this.queue.splice(0);
      }
      close(): void {}
    }
    const dual = (subnet: string, subnet6: string, publicIP: string, publicIPv6?: string): Lease => ({
      ...lease(subnet, publicIP), ipv6Subnet: parseSubnet6(subnet6), carriesIPv6: true, ...(publicIPv6 ? { publicIPv6 } : {}),
    });
    const LOCAL6 = { ...LOCAL, address6: parseIPv6('fd00:10:244:1::') };

    it('probes a dual-stack peer in both families, kept apart: the IPv6 path fails on its own', async () => {
      const peers = [dual('10.244.2.0/24', 'fd00:10:244:2::/64', '192.168.77.12')];
      const sock = new FakeSocket();
      const sock6 = new FakeSocket6();
      sock.answer.set(parseIPv4('10.244.2.0'), { full: true, rttMs: 0.5 });
      const prober = new PeerProber({ local: () => LOCAL6, peers: () => peers }, sock, { intervalSeconds: 1, maxRate: 50, timeoutMs: 500 }, Date.now, sock6);
      prober.start();
      await vi.advanceTimersByTimeAsync(10_000);
      let s = prober.summary();
      expect(s.peers['10.244.2.0/24']!.state).toBe('reachable');
      expect(s.peers['10.244.2.0/24']!.family).toBeUndefined();
      const six = s.peers['fd00:10:244:2::/64']!;
      expect(six).toMatchObject({ family: 6, state: 'unreachable', target: 'fd00:10:244:2::', publicIP: '192.168.77.12' });
      expect(sock6.sent.every((p) => p.src === LOCAL6.address6 && p.dst === parseIPv6('fd00:10:244:2::'))).toBe(true);
      // The IPv6 path comes back: one answer makes it reachable, full-size probes at the TUN MTU pass.
      sock6.answer.set(parseIPv6('fd00:10:244:2::'), { full: true });
      await vi.advanceTimersByTimeAsync(10_000);
      s = prober.summary();
      prober.stop();
      expect(s.peers['fd00:10:244:2::/64']).toMatchObject({ state: 'reachable', mtu: { state: 'ok', size: 1472 } });
      // One queue, one rate for both families.
      expect(sock.sent.length + sock6.sent.length).toBeLessThanOrEqual(50 * 20 * 2);
    });

    it("a stock flannel node's IPv6 subnet (no felt BackendV6Data) is not probed over IPv6: felt sends it IPv4 only", async () => {
      const { carriesIPv6: _, ...stock } = dual('10.244.3.0/24', 'fd00:10:244:3::/64', '192.168.77.13');
      const peers: Lease[] = [stock];
      const sock = new FakeSocket();
      const sock6 = new FakeSocket6();
      sock.answer.set(parseIPv4('10.244.3.0'), { full: true, rttMs: 0.5 });
      const prober = new PeerProber({ local: () => LOCAL6, peers: () => peers }, sock, { intervalSeconds: 1, maxRate: 50, timeoutMs: 500 }, Date.now, sock6);
      prober.start();
      await vi.advanceTimersByTimeAsync(10_000);
      const s = prober.summary();
      prober.stop();
      expect(Object.keys(s.peers)).toEqual(['10.244.3.0/24']);
      expect(s.peers['10.244.3.0/24']!.state).toBe('reachable');
      expect(sock6.sent).toHaveLength(0);
    });

    it('an IPv6-only overlay: only IPv6 targets, no IPv4 probe sent', async () => {
      const peers: Lease[] = [{ ...dual('10.244.2.0/24', 'fd00:10:244:2::/64', '0.0.0.0', 'fd77::12'), subnet: undefined }];
      const sock = new FakeSocket();
      const sock6 = new FakeSocket6();
      sock6.answer.set(parseIPv6('fd00:10:244:2::'), { full: false });
      const local = { address6: LOCAL6.address6, mtu: 1452, port: 8285 };
      const prober = new PeerProber({ local: () => local, peers: () => peers }, sock, { intervalSeconds: 1, maxRate: 50, timeoutMs: 500 }, Date.now, sock6);
      prober.start();
      await vi.advanceTimersByTimeAsync(10_000);
      // An ICMPv6 port unreachable about a tunnel datagram to the peer's IPv6 underlay address is its evidence.
      sock6.queue.push({ kind: 'error', from: parseIPv6('fd77::12'), type: 1, code: 4, mtu: 0, at: Date.now(),
        quoted: { protocol: 17, src: parseIPv6('fd77::11'), dst: parseIPv6('fd77::12'), srcPort: 8285, dstPort: 8285 } });
      prober.pollNow();
      const s = prober.summary();
      prober.stop();
      expect(sock.sent).toHaveLength(0);
      expect(Object.keys(s.peers)).toEqual(['fd00:10:244:2::/64']);
      expect(s.peers['fd00:10:244:2::/64']).toMatchObject({ state: 'reachable', mtu: { state: 'failed', size: 1452 } });
      expect(s.peers['fd00:10:244:2::/64']!.evidence).toMatchObject({ kind: 'port-unreachable', from: 'fd77::12', about: 'tunnel' });
    });
  });
});
