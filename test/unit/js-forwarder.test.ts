// The js engine's per-packet decisions (docs/datapath.md), driven with real packets through the
// batch entry points and a recording BatchIO: no root, no device. test/datapath/engine.test.ts
// covers the real wiring.
import { beforeEach, describe, expect, it } from 'vitest';
import { parseIPv4, parseSubnet } from '../../src/net/cidr.js';
import { JsForwarder } from '../../src/datapath/js.js';
import { internetChecksum, TokenBucket } from '../../src/datapath/packet.js';
import type { Route } from '../../src/datapath/types.js';
import { decapOne, encapOne, RecordingIO } from '../support/packet-io.js';

const PEER_B = '192.168.77.3';
const PEER_C = '192.168.77.4';
const MTU = 1472;

interface PacketOptions {
  src?: string;
  dst?: string;
  ttl?: number;
  protocol?: number;
  payload?: Buffer;
  df?: boolean;
}

function ipPacket(o: PacketOptions = {}): Buffer {
  const payload = o.payload ?? Buffer.from('0123456789abcdef');
  const buf = Buffer.alloc(20 + payload.length);
  buf[0] = 0x45;
  buf.writeUInt16BE(buf.length, 2);
  buf.writeUInt16BE(0xbeef, 4);
  buf.writeUInt16BE(o.df === false ? 0 : 0x4000, 6);
  buf[8] = o.ttl ?? 64;
  buf[9] = o.protocol ?? 17;
  buf.writeUInt32BE(parseIPv4(o.src ?? '10.244.1.5'), 12);
  buf.writeUInt32BE(parseIPv4(o.dst ?? '10.244.2.7'), 16);
  payload.copy(buf, 20);
  buf.writeUInt16BE(internetChecksum(buf, 0, 20), 10);
  return buf;
}

function routes(): Route[] {
  return [
    { subnet: parseSubnet('10.244.2.0/24'), publicIP: parseIPv4(PEER_B) },
    { subnet: parseSubnet('10.244.9.0/24'), publicIP: parseIPv4(PEER_B) },
    { subnet: parseSubnet('10.244.3.0/24'), publicIP: parseIPv4(PEER_C) },
  ];
}

let io: RecordingIO;
let fwd: JsForwarder;
let now: number;

beforeEach(() => {
  io = new RecordingIO();
  now = 0;
  fwd = new JsForwarder({ localSubnet: parseSubnet('10.244.1.0/24'), mtu: MTU }, io, new TokenBucket(100, 100, () => now));
  fwd.setRoutes(routes());
});

function encap(p: Buffer): void {
  encapOne(fwd, p);
}

function onlyIcmp(): Buffer {
  expect(io.tun).toHaveLength(1);
  return io.tun[0]!;
}

describe('js forwarder: encap', () => {
  it('sends a packet to the peer with TTL decremented and a valid checksum, counted per peer', () => {
    const p = ipPacket({ ttl: 64 });
    const original = Buffer.from(p);
    encap(p);
    expect(io.sent).toHaveLength(1);
    const { packet, address } = io.sent[0]!;
    expect(address).toBe(PEER_B);
    expect(packet[8]).toBe(63);
    expect(internetChecksum(packet, 0, 20)).toBe(0);
    // Unchanged apart from TTL and checksum.
    for (let i = 0; i < packet.length; i++) if (i !== 8 && i !== 10 && i !== 11) expect(packet[i]).toBe(original[i]);
    const s = fwd.stats({});
    expect(s.encap).toEqual({ packets: 1, bytes: p.length });
    expect(s.peers[PEER_B]!.tx).toEqual({ packets: 1, bytes: p.length });
    expect(s.peers[PEER_B]!.lastTxAt).toBeGreaterThan(0);
    expect(s.peers[PEER_C]!.tx.packets).toBe(0);
  });

  it('routes to the peer holding the matching lease (peer with two leases too)', () => {
    encap(ipPacket({ dst: '10.244.9.200' }));
    encap(ipPacket({ dst: '10.244.3.1' }));
    expect(io.sent.map((s) => s.address)).toEqual([PEER_B, PEER_C]);
  });

  it('ignores bytes past the total length', () => {
    const p = ipPacket();
    const withTrailer = Buffer.concat([p, Buffer.alloc(10, 0xee)]);
    encap(withTrailer);
    expect(io.sent[0]!.packet.length).toBe(p.length);
  });

  it('drops short, non-IPv4 and malformed packets with their reasons', () => {
    encap(Buffer.alloc(10));
    const v6 = Buffer.alloc(40);
    v6[0] = 0x60;
    encap(v6);
    const badIhl = ipPacket();
    badIhl[0] = 0x43;
    encap(badIhl);
    const short = ipPacket();
    encap(short.subarray(0, short.length - 1));
    const d = fwd.stats({}).drops.encap;
    expect(d.truncated).toBe(2);
    expect(d['not-ip']).toBe(1);
    expect(d.malformed).toBe(1);
    expect(io.sent).toHaveLength(0);
    expect(io.tun).toHaveLength(0);
  });

  it('does not verify the header checksum on encap (the kernel wrote it)', () => {
    const p = ipPacket();
    p[10]! ^= 0xff;
    encap(p);
    expect(io.sent).toHaveLength(1);
  });

  it('drops packets for our own subnet (own-subnet), without ICMP', () => {
    encap(ipPacket({ dst: '10.244.1.77' }));
    expect(fwd.stats({}).drops.encap['own-subnet']).toBe(1);
    expect(io.sent).toHaveLength(0);
    expect(io.tun).toHaveLength(0);
  });

  it('answers no route with ICMP net-unreachable from our tunnel address', () => {
    const p = ipPacket({ dst: '10.244.200.1', src: '10.244.1.5' });
    encap(p);
    const icmp = onlyIcmp();
    expect(icmp.readUInt32BE(12)).toBe(parseIPv4('10.244.1.0'));
    expect(icmp.readUInt32BE(16)).toBe(parseIPv4('10.244.1.5'));
    expect([icmp[20], icmp[21]]).toEqual([3, 0]);
    expect(icmp.subarray(28).equals(p.subarray(0, 28))).toBe(true);
    const s = fwd.stats({});
    expect(s.drops.encap['no-route']).toBe(1);
    expect(s.icmpSent).toBe(1);
  });

  it('answers TTL 1 (and 0) with time-exceeded, counted on the peer', () => {
    encap(ipPacket({ ttl: 1 }));
    encap(ipPacket({ ttl: 0 }));
    expect(io.tun).toHaveLength(2);
    for (const icmp of io.tun) expect([icmp[20], icmp[21]]).toEqual([11, 0]);
    // The quote carries the TTL as received.
    expect(io.tun[0]![28 + 8]).toBe(1);
    const s = fwd.stats({});
    expect(s.drops.encap['ttl-expired']).toBe(2);
    expect(s.peers[PEER_B]!.drops['ttl-expired']).toBe(2);
    expect(io.sent).toHaveLength(0);
  });

  it('drops oversize packets; frag-needed with the tunnel MTU only when DF is set', () => {
    encap(ipPacket({ payload: Buffer.alloc(MTU - 20), df: true })); // exactly the MTU: fine
    expect(io.sent).toHaveLength(1);
    encap(ipPacket({ payload: Buffer.alloc(MTU - 19), df: true }));
    const icmp = onlyIcmp();
    expect([icmp[20], icmp[21]]).toEqual([3, 4]);
    expect(icmp.readUInt16BE(26)).toBe(MTU);
    encap(ipPacket({ payload: Buffer.alloc(MTU), df: false }));
    expect(io.tun).toHaveLength(1);
    const s = fwd.stats({});
    expect(s.drops.encap.oversize).toBe(2);
    expect(s.peers[PEER_B]!.drops.oversize).toBe(2);
  });

  it('counts send-error for a throwing send call and a refused datagram', () => {
    io.sendThrows = true;
    encap(ipPacket());
    io.sendThrows = false;
    io.sendFails = true;
    encap(ipPacket());
    const s = fwd.stats({});
    expect(s.drops.encap['send-error']).toBe(2);
    expect(s.peers[PEER_B]!.drops['send-error']).toBe(2);
    expect(s.encap.packets).toBe(0);
  });

  it('never sends ICMP about ICMP errors, fragments, or multicast/broadcast', () => {
    const err = Buffer.from([3, 1, 0, 0, 0, 0, 0, 0]);
    encap(ipPacket({ dst: '10.244.200.1', protocol: 1, payload: err }));
    encap(ipPacket({ dst: '239.1.1.1' }));
    encap(ipPacket({ dst: '10.244.200.1', src: '0.0.0.0' }));
    const frag = ipPacket({ dst: '10.244.200.1' });
    frag.writeUInt16BE(0x0010, 6);
    frag.writeUInt16BE(0, 10);
    frag.writeUInt16BE(internetChecksum(frag, 0, 20), 10);
    encap(frag);
    expect(io.tun).toHaveLength(0);
    expect(fwd.stats({}).drops.encap['no-route']).toBe(4);
    // An echo request does get one.
    const echo = Buffer.from([8, 0, 0, 0, 0, 1, 0, 1]);
    encap(ipPacket({ dst: '10.244.200.1', protocol: 1, payload: echo }));
    expect(io.tun).toHaveLength(1);
  });

  it('rate-limits ICMP to a burst of 100, then 100 per second', () => {
    for (let i = 0; i < 150; i++) encap(ipPacket({ dst: '10.244.200.1' }));
    let s = fwd.stats({});
    expect(s.icmpSent).toBe(100);
    expect(s.icmpRateLimited).toBe(50);
    expect(s.drops.encap['no-route']).toBe(150);
    now += 100;
    for (let i = 0; i < 20; i++) encap(ipPacket({ dst: '10.244.200.1' }));
    s = fwd.stats({});
    expect(s.icmpSent).toBe(110);
    expect(s.icmpRateLimited).toBe(60);
  });

  it('parses a TUN batch of length-prefixed records', () => {
    const a = ipPacket({ dst: '10.244.2.1' });
    const b = ipPacket({ dst: '10.244.3.1' });
    const rec = (p: Buffer): Buffer => Buffer.concat([Buffer.from([p.length >> 8, p.length & 255]), p]);
    fwd.encapBatch(Buffer.concat([rec(a), rec(b)]), 2);
    expect(io.sent.map((s) => s.address)).toEqual([PEER_B, PEER_C]);
    // A batch that claims more than it holds: the whole records go, the rest counts truncated.
    fwd.encapBatch(Buffer.concat([rec(a), rec(b).subarray(0, 10)]), 3);
    expect(io.sent).toHaveLength(3);
    expect(fwd.stats({}).drops.encap.truncated).toBe(1);
  });
});

describe('js forwarder: decap', () => {
  it('writes a valid packet from a peer into the TUN, TTL untouched, counted per peer', () => {
    const p = ipPacket({ src: '10.244.2.9', dst: '10.244.1.5', ttl: 63 });
    decapOne(fwd, p, PEER_B);
    expect(io.tun).toHaveLength(1);
    expect(io.tun[0]!.equals(p)).toBe(true);
    const s = fwd.stats({});
    expect(s.decap).toEqual({ packets: 1, bytes: p.length });
    expect(s.peers[PEER_B]!.rx).toEqual({ packets: 1, bytes: p.length });
    expect(s.peers[PEER_B]!.lastRxAt).toBeGreaterThan(0);
  });

  it('accepts sources from every lease of the peer', () => {
    decapOne(fwd, ipPacket({ src: '10.244.9.1', dst: '10.244.1.5' }), PEER_B);
    expect(io.tun).toHaveLength(1);
  });

  it('cuts trailing bytes past the total length before the TUN write', () => {
    const p = ipPacket({ src: '10.244.2.9', dst: '10.244.1.5' });
    decapOne(fwd, Buffer.concat([p, Buffer.alloc(6, 0xaa)]), PEER_B);
    expect(io.tun[0]!.equals(p)).toBe(true);
  });

  it('drops datagrams from an address that holds no lease (unknown-peer)', () => {
    decapOne(fwd, ipPacket({ src: '10.244.2.9' }), '192.168.77.99');
    const s = fwd.stats({});
    expect(s.drops.decap['unknown-peer']).toBe(1);
    expect(io.tun).toHaveLength(0);
    expect(Object.keys(s.peers).sort()).toEqual([PEER_B, PEER_C]);
  });

  it('drops inner sources outside the sender\'s leases (spoofed-source), even another peer\'s', () => {
    decapOne(fwd, ipPacket({ src: '10.244.3.1', dst: '10.244.1.5' }), PEER_B);
    decapOne(fwd, ipPacket({ src: '10.244.1.7', dst: '10.244.1.5' }), PEER_B);
    const s = fwd.stats({});
    expect(s.drops.decap['spoofed-source']).toBe(2);
    expect(s.peers[PEER_B]!.drops['spoofed-source']).toBe(2);
    expect(io.tun).toHaveLength(0);
  });

  it('drops invalid inner packets with their reasons, counted on the peer', () => {
    decapOne(fwd, Buffer.alloc(19), PEER_B);
    const v6 = Buffer.alloc(40);
    v6[0] = 0x60;
    decapOne(fwd, v6, PEER_B);
    const badSum = ipPacket({ src: '10.244.2.9' });
    badSum[10]! ^= 1;
    decapOne(fwd, badSum, PEER_B);
    const tooLong = ipPacket({ src: '10.244.2.9' });
    decapOne(fwd, tooLong.subarray(0, tooLong.length - 1), PEER_B);
    const badIhl = ipPacket({ src: '10.244.2.9' });
    badIhl[0] = 0x44;
    decapOne(fwd, badIhl, PEER_B);
    const s = fwd.stats({});
    expect(s.drops.decap).toMatchObject({ truncated: 2, 'not-ip': 1, malformed: 2 });
    expect(s.peers[PEER_B]!.drops).toEqual({ truncated: 2, 'not-ip': 1, malformed: 2 });
    expect(io.tun).toHaveLength(0);
  });

  it('drops TTL 0 but delivers TTL 1 (decap does not decrement)', () => {
    decapOne(fwd, ipPacket({ src: '10.244.2.9', ttl: 0 }), PEER_B);
    decapOne(fwd, ipPacket({ src: '10.244.2.9', ttl: 1 }), PEER_B);
    expect(fwd.stats({}).drops.decap['ttl-expired']).toBe(1);
    expect(io.tun).toHaveLength(1);
    expect(io.tun[0]![8]).toBe(1);
  });

  it('counts tun-write-error when the kernel refuses the write', () => {
    io.tunFails = true;
    decapOne(fwd, ipPacket({ src: '10.244.2.9' }), PEER_B);
    const s = fwd.stats({});
    expect(s.drops.decap['tun-write-error']).toBe(1);
    expect(s.peers[PEER_B]!.drops['tun-write-error']).toBe(1);
    expect(s.decap.packets).toBe(0);
  });
});

describe('js forwarder: route table swaps', () => {
  it('keeps counters of peers that stay and of peers that left, admits by the new table', () => {
    decapOne(fwd, ipPacket({ src: '10.244.2.9' }), PEER_B);
    decapOne(fwd, ipPacket({ src: '10.244.3.9' }), PEER_C);
    fwd.setRoutes([{ subnet: parseSubnet('10.244.2.0/24'), publicIP: parseIPv4(PEER_B) }]);
    let s = fwd.stats({});
    // C left: its last counters stay visible after the routed peers.
    expect(Object.keys(s.peers)).toEqual([PEER_B, PEER_C]);
    expect(s.peers[PEER_B]!.rx.packets).toBe(1);
    expect(s.peers[PEER_C]!.rx.packets).toBe(1);
    expect(s.features.routes).toBe(1);
    // 10.244.9.0/24 no longer belongs to B; C is gone entirely.
    decapOne(fwd, ipPacket({ src: '10.244.9.1' }), PEER_B);
    decapOne(fwd, ipPacket({ src: '10.244.3.1' }), PEER_C);
    encap(ipPacket({ dst: '10.244.3.1' }));
    s = fwd.stats({});
    expect(s.drops.decap['spoofed-source']).toBe(1);
    expect(s.drops.decap['unknown-peer']).toBe(1);
    expect(s.drops.encap['no-route']).toBe(1);
  });

  it('keeps the counters of the 256 most recently departed peers, most recent first, and frees the rest', () => {
    const peerIP = (i: number): string => `172.16.${i >> 8}.${i & 255}`;
    const route = (i: number): Route => ({ subnet: parseSubnet(`10.${100 + (i >> 8)}.${i & 255}.0/24`), publicIP: parseIPv4(peerIP(i)) });
    // 600 peers come and go one after another (nodes replaced over months).
    for (let i = 0; i < 600; i++) fwd.setRoutes([...routes(), route(i)]);
    fwd.setRoutes(routes());
    const departed = Object.keys(fwd.stats({}).peers).filter((ip) => ip !== PEER_B && ip !== PEER_C);
    expect(departed).toHaveLength(256);
    expect(departed.slice(0, 3)).toEqual([peerIP(599), peerIP(598), peerIP(597)]);
    expect(departed.at(-1)).toBe(peerIP(600 - 256));
    // A peer that comes back is routed again and counts afresh.
    fwd.setRoutes([...routes(), route(599)]);
    expect(Object.keys(fwd.stats({}).peers).slice(0, 3)).toEqual([PEER_B, PEER_C, peerIP(599)]);
  });

  it('starts empty: everything is no-route / unknown-peer', () => {
    const empty = new JsForwarder({ localSubnet: parseSubnet('10.244.1.0/24'), mtu: MTU }, io);
    const p = ipPacket();
    encapOne(empty, p);
    decapOne(empty, ipPacket({ src: '10.244.2.9' }), PEER_B);
    const s = empty.stats({});
    expect(s.drops.encap['no-route']).toBe(1);
    expect(s.drops.decap['unknown-peer']).toBe(1);
    expect(s.peers).toEqual({});
  });
});
