// Packet generators for the js fuzzer: valid packets of many kinds, random bytes, and mutations
// of valid ones (bit flips, truncation, extension, header field edits).
import { formatIPv4 } from '../../src/net/cidr.js';
import { hostIn, LOCAL, setIpChecksum, sum16, wr16, wr32, type RouteSet } from './model.js';
import type { Rng } from './rng.js';

export const TTLS = [0, 1, 2, 3, 64, 64, 64, 128, 255];

export interface Spec {
  proto: number;
  src: number;
  dst: number;
  ttl: number;
  frag: number;
  ipOpt: number;
  payload: number;
  icmpType: number;
}

function pickPayload(rng: Rng, mtu: number): number {
  const k = rng.int(100);
  if (k < 10) return 0;
  if (k < 25) return rng.int(9);
  if (k < 50) return 10 + rng.int(200);
  if (k < 80) return 1380 + rng.int(120);
  if (k < 90) return Math.max(0, mtu - 60 + rng.int(80));
  if (k < 97) return 1500 + rng.int(9000);
  return rng.int(65400);
}

export function randomSpec(rng: Rng, src: number, dst: number, mtu: number): Spec {
  const ipOpt = rng.chance(90) ? 0 : 4 * rng.int(11);
  return {
    proto: rng.pick([6, 6, 6, 17, 17, 17, 1, 1, 47, 0, 255]),
    src,
    dst,
    ttl: rng.pick(TTLS),
    frag: rng.chance(70) ? 0x4000 : rng.chance(50) ? 0 : rng.u32() & 0xffff,
    ipOpt,
    payload: Math.min(pickPayload(rng, mtu), 65535 - 20 - ipOpt - 20),
    icmpType: rng.pick([8, 0, 3, 4, 5, 11, 12, 13, 42]),
  };
}

/** A well-formed IPv4 packet (right header checksum, and L4 checksum for ICMP). */
export function buildPacket(rng: Rng, s: Spec): Buffer {
  const hl = 20 + s.ipOpt;
  const l4h = s.proto === 6 ? 20 : s.proto === 17 || s.proto === 1 ? 8 : 0;
  const len = hl + l4h + s.payload;
  const b = Buffer.alloc(len);
  b[0] = 0x40 | (hl / 4);
  wr16(b, 2, len);
  wr16(b, 4, rng.u32() & 0xffff);
  wr16(b, 6, s.frag);
  b[8] = s.ttl;
  b[9] = s.proto;
  wr32(b, 12, s.src);
  wr32(b, 16, s.dst);
  b.fill(1, 20, hl);
  rng.fill(b, hl, len);
  if (s.proto === 6) b[hl + 12] = 0x50;
  if (s.proto === 17) wr16(b, hl + 4, l4h + s.payload);
  if (s.proto === 1) {
    b[hl] = s.icmpType;
    b[hl + 1] = rng.int(6);
    wr16(b, hl + 2, 0);
    wr16(b, hl + 2, ~sum16(b, hl, len - hl) & 0xffff);
  }
  setIpChecksum(b, 0);
  return b;
}

export function pickDst(rng: Rng, rs: RouteSet): number {
  const k = rng.int(100);
  if (k < 55 && rs.routes.length > 0) {
    const r = rng.pick(rs.routes);
    return hostIn(rng, r.subnet!.ip, Math.max(8, r.subnet!.prefixLen));
  }
  if (k < 65) return hostIn(rng, LOCAL.ip, LOCAL.prefixLen);
  if (k < 80) return (0x0afa0000 | rng.int(65536)) >>> 0;
  if (k < 85) return (0xe0000000 | rng.int(1 << 28)) >>> 0;
  if (k < 88) return 0xffffffff;
  if (k < 90) return 0;
  return rng.u32();
}

export function pickLocalSrc(rng: Rng): number {
  const k = rng.int(100);
  if (k < 80) return hostIn(rng, LOCAL.ip, LOCAL.prefixLen);
  if (k < 85) return 0;
  if (k < 90) return (0xe0000000 | rng.int(1 << 28)) >>> 0;
  if (k < 92) return 0xffffffff;
  return rng.u32();
}

/** 1-4 byte-level mutations (bit flips, truncation, extension, header field edits). */
export function mutate(rng: Rng, input: Buffer, rs: RouteSet): Buffer {
  let b: Buffer = Buffer.from(input);
  const n = 1 + rng.int(4);
  for (let m = 0; m < n; m++) {
    const len = b.length;
    switch (rng.int(14)) {
      case 0:
        if (len) b[rng.int(len)]! ^= 1 << rng.int(8);
        break;
      case 1:
        if (len) b[rng.int(len)] = rng.u32() & 0xff;
        break;
      case 2:
        b = b.subarray(0, rng.int(len + 1));
        break;
      case 3: {
        const add = Buffer.alloc(rng.int(64));
        if (rng.chance(50)) rng.fill(add);
        b = Buffer.concat([b, add]);
        break;
      }
      case 4:
        if (len) b[0] = (rng.int(16) << 4) | (b[0]! & 15);
        break;
      case 5:
        if (len) b[0] = (b[0]! & 0xf0) | rng.int(16);
        break;
      case 6:
        // Random, exact, too long, header only (no ICMP type byte), tiny.
        if (len >= 4) wr16(b, 2, rng.pick([rng.u32() & 0xffff, len, len + 1 + rng.int(8), (b[0]! & 15) * 4, rng.int(40)]) & 0xffff);
        break;
      case 7:
        if (len >= 9) b[8] = rng.pick(TTLS);
        break;
      case 8:
        if (len >= 12) wr16(b, 10, rng.u32() & 0xffff);
        break;
      case 9:
        if (len >= 8) wr16(b, 6, rng.chance(50) ? rng.u32() & 0xffff : (rng.int(2) << 13) | rng.int(4));
        break;
      case 10:
        if (len >= 10) {
          b[9] = 1;
          const hl = (b[0]! & 15) * 4;
          if (hl < len) b[hl] = rng.pick([3, 4, 5, 11, 12, 8, 0]);
        }
        break;
      case 11:
        if (len >= 20) wr32(b, rng.chance(50) ? 12 : 16, pickDst(rng, rs));
        break;
      case 12:
        if (len >= 10) b[9] = rng.u32() & 0xff;
        break;
      default:
        if (len) {
          const at = rng.int(len);
          rng.fill(b, at, Math.min(len, at + 1 + rng.int(16)));
        }
    }
  }
  if (rng.chance(50) && b.length >= 20) setIpChecksum(b, 0);
  return b;
}


/** Kinds of generated input, counted for the summary. */
export type GenKind =
  | 'encap random'
  | 'encap valid'
  | 'encap mutated'
  | 'decap valid'
  | 'decap mutated'
  | 'decap random'
  | 'decap stranger';

/** A packet as the TUN would hand it over: mostly from local pods, some odd. */
export function genEncapPacket(rng: Rng, rs: RouteSet, mtu: number, count: (k: GenKind) => void): Buffer {
  const k = rng.int(100);
  if (k < 20) {
    count('encap random');
    const b = Buffer.alloc(rng.chance(80) ? rng.int(120) : rng.int(66000));
    rng.fill(b);
    if (rng.chance(40) && b.length) b[0] = 0x40 | (b[0]! & 15);
    return b;
  }
  let b = buildPacket(rng, randomSpec(rng, pickLocalSrc(rng), pickDst(rng, rs), mtu));
  if (rng.chance(10)) b = Buffer.concat([b, Buffer.alloc(rng.int(100), 0xee)]);
  if (k < 60) {
    count('encap valid');
    return b;
  }
  count('encap mutated');
  return mutate(rng, b, rs);
}

const STRANGERS = ['198.51.100.7', '192.168.77.250', '0.0.0.0', '255.255.255.255', '', '::ffff:192.168.77.11', 'not-an-address'];

/** A datagram and its sender (dotted): mostly a peer sending from its lease, some spoofed or odd. */
export function genDecapDatagram(rng: Rng, rs: RouteSet, mtu: number, count: (k: GenKind) => void): [Buffer, string] {
  let sender = rs.peers.length ? rng.pick(rs.peers) : '198.51.100.1';
  let stranger = false;
  if (rng.chance(8)) {
    sender = rng.chance(50) ? rng.pick(STRANGERS) : formatIPv4(rng.u32());
    stranger = true;
  }
  let src = rs.hostOf(rng, sender);
  const sk = rng.int(100);
  if (sk < 10 && rs.peers.length) src = rs.hostOf(rng, rng.pick(rs.peers)); // maybe spoofed
  else if (sk < 15) src = rng.chance(50) ? hostIn(rng, LOCAL.ip, LOCAL.prefixLen) : rng.u32();
  const k = rng.int(100);
  if (k < 15) {
    count(stranger ? 'decap stranger' : 'decap random');
    const b = Buffer.alloc(rng.chance(90) ? rng.int(200) : rng.int(66000));
    rng.fill(b);
    if (rng.chance(50) && b.length) b[0] = 0x45;
    if (rng.chance(30) && b.length >= 20) setIpChecksum(b, 0);
    return [b, sender];
  }
  const spec = randomSpec(rng, src, rng.chance(90) ? hostIn(rng, LOCAL.ip, LOCAL.prefixLen) : pickDst(rng, rs), mtu);
  spec.payload = Math.min(spec.payload, 1500);
  let b = buildPacket(rng, spec);
  if (rng.chance(10)) b = Buffer.concat([b, Buffer.alloc(rng.int(100), 0xee)]);
  if (k < 60) {
    count(stranger ? 'decap stranger' : 'decap valid');
    return [b, sender];
  }
  count(stranger ? 'decap stranger' : 'decap mutated');
  return [mutate(rng, b, rs), sender];
}
