// The js engine's IPv6 decisions (docs/datapath.md, IPv6) and the per-peer underlay choice, driven
// with real packets through the batch entry points and a recording BatchIO.
import { beforeEach, describe, expect, it } from 'vitest';
import { parseIPv4, parseSubnet } from '../../src/net/cidr.js';
import { parseIPv6, parseSubnet6 } from '../../src/net/ip6.js';
import { JsForwarder, type ForwarderConfig } from '../../src/datapath/js.js';
import { internetChecksum, TokenBucket } from '../../src/datapath/packet.js';
import type { Route } from '../../src/datapath/types.js';
import { decapOne, encapOne, RecordingIO } from '../support/packet-io.js';
import { fragmentBody, icmp6ChecksumOk, ip6Packet, PADN6 } from '../support/packets6.js';

const MTU = 1432;
/** B: both underlays; C: IPv4 only, no IPv6 lease (a stock flannel node); D: IPv6 underlay only. */
const B4 = '192.168.77.3';
const B6 = 'fd77::3';
const C4 = '192.168.77.4';
const D6 = 'fd77::5';

function routes(): Route[] {
  return [
    { subnet: parseSubnet('10.244.2.0/24'), publicIP: parseIPv4(B4), subnet6: parseSubnet6('fd00:10:244:2::/64'), publicIPv6: parseIPv6(B6) },
    { subnet: parseSubnet('10.244.3.0/24'), publicIP: parseIPv4(C4) },
    { subnet: parseSubnet('10.244.5.0/24'), publicIP: 0, subnet6: parseSubnet6('fd00:10:244:5::/64'), publicIPv6: parseIPv6(D6) },
  ];
}

const DUAL: ForwarderConfig = {
  localSubnet: parseSubnet('10.244.1.0/24'),
  mtu: MTU,
  localSubnet6: parseSubnet6('fd00:10:244:1::/64'),
  bindIP: parseIPv4('192.168.77.2'),
  bindIPv6: parseIPv6('fd77::2'),
};

let io: RecordingIO;
let fwd: JsForwarder;
let now: number;

function make(config: ForwarderConfig): void {
  io = new RecordingIO();
  now = 0;
  fwd = new JsForwarder(config, io, new TokenBucket(100, 100, () => now));
  fwd.setRoutes(routes());
}

beforeEach(() => make(DUAL));

function ipv4(src: string, dst: string): Buffer {
  const b = Buffer.alloc(36);
  b[0] = 0x45;
  b.writeUInt16BE(36, 2);
  b[8] = 64;
  b[9] = 17;
  b.writeUInt32BE(parseIPv4(src), 12);
  b.writeUInt32BE(parseIPv4(dst), 16);
  b.writeUInt16BE(internetChecksum(b, 0, 20), 10);
  return b;
}

function onlyIcmp(type: number): Buffer {
  expect(io.tun).toHaveLength(1);
  const out = io.tun[0]!;
  expect(out[6]).toBe(58);
  expect(out[40]).toBe(type);
  expect(icmp6ChecksumOk(out)).toBe(true);
  expect(out.subarray(8, 24)).toEqual(Buffer.from(ip6Packet({ src: 'fd00:10:244:1::' }).subarray(8, 24)));
  return out;
}

describe('js forwarder, IPv6: encap', () => {
  it('sends to the peer over the IPv6 underlay, hop limit decremented, counted on the peer by its IPv4 identity', () => {
    const p = ip6Packet({ hopLimit: 64 });
    encapOne(fwd, p);
    expect(io.sent).toHaveLength(1);
    expect(io.sent[0]!.address).toBe(B6);
    const sent = io.sent[0]!.packet;
    expect(sent[7]).toBe(63);
    sent[7] = 64;
    expect(sent).toEqual(p);
    const s = fwd.stats({});
    expect(s.encap).toEqual({ packets: 1, bytes: p.length });
    expect(s.peers[B4]!.tx).toEqual({ packets: 1, bytes: p.length });
    expect(s.features.routes6).toBe(2);
  });

  it('sends IPv4 pod traffic over the IPv6 underlay too when both ends have one', () => {
    encapOne(fwd, ipv4('10.244.1.5', '10.244.2.7'));
    encapOne(fwd, ipv4('10.244.1.5', '10.244.3.7'));
    encapOne(fwd, ipv4('10.244.1.5', '10.244.5.7'));
    expect(io.sent.map((s) => s.address)).toEqual([B6, C4, D6]);
    expect(Object.keys(fwd.stats({}).peers).sort()).toEqual([B4, C4, D6].sort());
  });

  it('uses IPv4 when this node has no IPv6 underlay; no-underlay for an IPv6-only peer', () => {
    make({ ...DUAL, bindIPv6: undefined });
    encapOne(fwd, ip6Packet());
    encapOne(fwd, ip6Packet({ dst: 'fd00:10:244:5::9' }));
    encapOne(fwd, ipv4('10.244.1.5', '10.244.5.7'));
    expect(io.sent.map((s) => s.address)).toEqual([B4]);
    const s = fwd.stats({});
    expect(s.drops.encap['no-underlay']).toBe(2);
    expect(s.peers[D6]!.drops['no-underlay']).toBe(2);
    expect(io.tun).toHaveLength(0);
  });

  it('drops no-underlay for an IPv4-only peer when this node has only an IPv6 underlay', () => {
    make({ ...DUAL, bindIP: 0 });
    encapOne(fwd, ipv4('10.244.1.5', '10.244.3.7'));
    expect(io.sent).toHaveLength(0);
    expect(fwd.stats({}).peers[C4]!.drops['no-underlay']).toBe(1);
  });

  it('never sends IPv6 pod traffic to a peer without an IPv6 lease: no-route and destination unreachable', () => {
    const p = ip6Packet({ dst: 'fd00:10:244:3::7' });
    encapOne(fwd, p);
    expect(io.sent).toHaveLength(0);
    expect(fwd.stats({}).drops.encap['no-route']).toBe(1);
    const out = onlyIcmp(1);
    expect(out[41]).toBe(0);
    expect(out.subarray(24, 40)).toEqual(p.subarray(8, 24));
    expect(fwd.stats({}).icmpSent).toBe(1);
  });

  it('drops our own IPv6 subnet (own-subnet) without ICMPv6', () => {
    encapOne(fwd, ip6Packet({ dst: 'fd00:10:244:1::9' }));
    expect(fwd.stats({}).drops.encap['own-subnet']).toBe(1);
    expect(io.tun).toHaveLength(0);
  });

  it('answers hop limit 1 and 0 with time exceeded, counted on the peer', () => {
    encapOne(fwd, ip6Packet({ hopLimit: 1 }));
    onlyIcmp(3);
    encapOne(fwd, ip6Packet({ hopLimit: 0 }));
    const s = fwd.stats({});
    expect(s.drops.encap['ttl-expired']).toBe(2);
    expect(s.peers[B4]!.drops['ttl-expired']).toBe(2);
    expect(io.sent).toHaveLength(0);
  });

  it('drops packets above the tunnel MTU with Packet Too Big carrying that MTU; sends one exactly at it', () => {
    encapOne(fwd, ip6Packet({ payload: Buffer.alloc(MTU - 40) }));
    expect(io.sent).toHaveLength(1);
    encapOne(fwd, ip6Packet({ payload: Buffer.alloc(MTU - 39) }));
    const out = onlyIcmp(2);
    expect(out.readUInt32BE(44)).toBe(MTU);
    expect(out.length).toBe(1280);
    expect(fwd.stats({}).drops.encap.oversize).toBe(1);
  });

  it('drops invalid IPv6 packets with their reasons', () => {
    const p = ip6Packet();
    encapOne(fwd, p.subarray(0, 39));
    encapOne(fwd, p.subarray(0, p.length - 1));
    const jumbo = ip6Packet({ payload: Buffer.alloc(0) });
    jumbo[6] = 0;
    encapOne(fwd, jumbo);
    encapOne(fwd, ip6Packet({ ext: [[60, PADN6], [0, PADN6]] }));
    const d = fwd.stats({}).drops.encap;
    expect(d.truncated).toBe(2);
    expect(d.malformed).toBe(1);
    expect(d['ext-header']).toBe(1);
    expect(io.sent).toHaveLength(0);
  });

  it('forwards fragments and packets with extension headers', () => {
    encapOne(fwd, ip6Packet({ ext: [[0, PADN6], [44, fragmentBody(0, true)]] }));
    encapOne(fwd, ip6Packet({ ext: [[44, fragmentBody(100, false)]] }));
    expect(io.sent).toHaveLength(2);
  });

  it('never sends ICMPv6 about an ICMPv6 error, and rate-limits through the ICMP bucket', () => {
    encapOne(fwd, ip6Packet({ dst: 'fd00:99::1', proto: 58, payload: Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]) }));
    expect(io.tun).toHaveLength(0);
    for (let i = 0; i < 150; i++) encapOne(fwd, ip6Packet({ dst: 'fd00:99::1' }));
    const s = fwd.stats({});
    expect(s.icmpSent).toBe(100);
    expect(s.icmpRateLimited).toBe(50);
  });

  it('treats IPv6 as not-ip when the cluster has no IPv6 network', () => {
    make({ localSubnet: DUAL.localSubnet, mtu: MTU });
    encapOne(fwd, ip6Packet());
    expect(fwd.stats({}).drops.encap['not-ip']).toBe(1);
    expect(io.sent).toHaveLength(0);
    expect(fwd.stats({}).features.routes6).toBeUndefined();
  });
});

describe('js forwarder, IPv6: decap', () => {
  const fromB = () => ip6Packet({ src: 'fd00:10:244:2::7', dst: 'fd00:10:244:1::5', hopLimit: 63 });

  it('writes an IPv6 packet from a peer into the TUN, hop limit untouched, trailing bytes cut', () => {
    const p = fromB();
    decapOne(fwd, Buffer.concat([p, Buffer.alloc(3)]), B6);
    expect(io.tun).toEqual([p]);
    const s = fwd.stats({});
    expect(s.decap).toEqual({ packets: 1, bytes: p.length });
    expect(s.peers[B4]!.rx.packets).toBe(1);
  });

  it('knows a peer by either underlay address, and an IPv6-only peer by its IPv6 one', () => {
    decapOne(fwd, fromB(), B4);
    decapOne(fwd, ipv4('10.244.2.7', '10.244.1.5'), B6);
    decapOne(fwd, ip6Packet({ src: 'fd00:10:244:5::7', dst: 'fd00:10:244:1::5' }), D6);
    decapOne(fwd, fromB(), 'fd77::99');
    expect(io.tun).toHaveLength(3);
    const s = fwd.stats({});
    expect(s.peers[B4]!.rx.packets).toBe(2);
    expect(s.peers[D6]!.rx.packets).toBe(1);
    expect(s.drops.decap['unknown-peer']).toBe(1);
  });

  it('drops inner sources outside the sender\'s IPv6 subnet (spoofed-source)', () => {
    decapOne(fwd, ip6Packet({ src: 'fd00:10:244:5::7', dst: 'fd00:10:244:1::5' }), B6);
    decapOne(fwd, ip6Packet({ src: 'fd00:10:244:3::7', dst: 'fd00:10:244:1::5' }), C4);
    expect(io.tun).toHaveLength(0);
    const s = fwd.stats({});
    expect(s.peers[B4]!.drops['spoofed-source']).toBe(1);
    expect(s.peers[C4]!.drops['spoofed-source']).toBe(1);
  });

  it('drops destinations outside our IPv6 subnet (no-route), hop limit 0, bad headers and truncation', () => {
    decapOne(fwd, ip6Packet({ src: 'fd00:10:244:2::7', dst: 'fd00:10:244:9::5' }), B6);
    decapOne(fwd, ip6Packet({ src: 'fd00:10:244:2::7', dst: 'fd00:10:244:1::5', hopLimit: 0 }), B6);
    decapOne(fwd, ip6Packet({ src: 'fd00:10:244:2::7', dst: 'fd00:10:244:1::5', ext: [[60, PADN6], [0, PADN6]] }), B6);
    decapOne(fwd, fromB().subarray(0, 50), B6);
    decapOne(fwd, fromB(), B6, 1);
    expect(io.tun).toHaveLength(0);
    const d = fwd.stats({}).peers[B4]!.drops;
    expect(d).toEqual({ 'no-route': 1, 'ttl-expired': 1, 'ext-header': 1, truncated: 1, oversize: 1 });
  });

  it('drops IPv6 inner packets as not-ip when the cluster has no IPv6 network', () => {
    make({ localSubnet: DUAL.localSubnet, mtu: MTU });
    decapOne(fwd, fromB(), B4);
    expect(fwd.stats({}).drops.decap['not-ip']).toBe(1);
  });

  it('drops a record cut short in an IPv6 reader batch as truncated', () => {
    const record = Buffer.alloc(19);
    fwd.decapBatch6(record, 1);
    expect(fwd.stats({}).drops.decap.truncated).toBe(1);
  });
});

it('checks the underlay last: hop limit and size first, as for any peer', () => {
  make({ ...DUAL, bindIPv6: undefined });
  encapOne(fwd, ip6Packet({ dst: 'fd00:10:244:5::9', hopLimit: 1 }));
  encapOne(fwd, ip6Packet({ dst: 'fd00:10:244:5::9', payload: Buffer.alloc(MTU) }));
  const d = fwd.stats({}).peers[D6]!.drops;
  expect(d).toEqual({ 'ttl-expired': 1, oversize: 1 });
  expect(io.tun).toHaveLength(2);
});

describe('js forwarder, IPv6-only overlay (no IPv4 lease, routes with only subnet6)', () => {
  const V6_ONLY: ForwarderConfig = { mtu: MTU, localSubnet6: parseSubnet6('fd00:10:244:1::/64'), bindIP: 0, bindIPv6: parseIPv6('fd77::2') };
  beforeEach(() => {
    io = new RecordingIO();
    fwd = new JsForwarder(V6_ONLY, io, new TokenBucket(100, 100, () => 0));
    fwd.setRoutes([{ publicIP: 0, subnet6: parseSubnet6('fd00:10:244:2::/64'), publicIPv6: parseIPv6(B6) }]);
  });

  it('carries IPv6 to the peer by its PublicIPv6; has no IPv4 route', () => {
    encapOne(fwd, ip6Packet());
    expect(io.sent.map((s) => s.address)).toEqual([B6]);
    const s = fwd.stats({});
    expect(s.peers[B6]!.tx.packets).toBe(1);
    expect([s.features.routes, s.features.routes6]).toEqual([0, 1]);
  });

  it('drops IPv4 from the TUN as not-ip after validation: a broken IPv4 header still counts as itself; no ICMP', () => {
    encapOne(fwd, ipv4('10.244.1.5', '10.244.2.7'));
    const short = ipv4('10.244.1.5', '10.244.2.7').subarray(0, 12);
    encapOne(fwd, short);
    const badLen = ipv4('10.244.1.5', '10.244.2.7');
    badLen.writeUInt16BE(10, 2); // total length below the header length
    encapOne(fwd, badLen);
    const s = fwd.stats({});
    expect(s.drops.encap['not-ip']).toBe(1);
    expect(s.drops.encap.truncated).toBe(1);
    expect(s.drops.encap.malformed).toBe(1);
    expect(s.drops.encap['own-subnet']).toBe(0);
    expect(io.sent).toEqual([]);
    expect(io.tun).toEqual([]);
  });

  it('decap: delivers an inner IPv6 packet from the peer; an inner IPv4 one is not-ip, counted on the peer', () => {
    decapOne(fwd, ip6Packet({ src: 'fd00:10:244:2::7', dst: 'fd00:10:244:1::9' }), B6);
    expect(io.tun).toHaveLength(1);
    decapOne(fwd, ipv4('10.244.2.7', '10.244.1.9'), B6);
    const s = fwd.stats({});
    expect(s.drops.decap['not-ip']).toBe(1);
    expect(s.drops.decap['spoofed-source']).toBe(0);
    expect(s.peers[B6]!.drops['not-ip']).toBe(1);
    expect(io.tun).toHaveLength(1);
  });
});
