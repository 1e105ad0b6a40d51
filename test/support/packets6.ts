// IPv6 test packets and an independent ICMPv6 checksum check (written from RFC 8200 8.1 and RFC
// 1071 here, not with the code under test).
import { ipv6ToBytes, parseIPv6 } from '../../src/net/ip6.js';
import { udpDatagram } from './packets.js';

export interface Packet6Options {
  src?: string;
  dst?: string;
  hopLimit?: number;
  /** Next header of the last extension header (or of the fixed header without any). */
  proto?: number;
  payload?: Buffer;
  /** Extension headers as [type, body] pairs; body lengths must make each header a multiple of 8. */
  ext?: [number, Buffer][];
}

/** An IPv6 packet: fixed header, extension headers (each chained by its next header), payload. */
export function ip6Packet(o: Packet6Options = {}): Buffer {
  const payload = o.payload ?? Buffer.from('0123456789abcdef');
  const ext = o.ext ?? [];
  const parts: Buffer[] = [];
  for (let i = 0; i < ext.length; i++) {
    const body = ext[i]![1];
    const next = i + 1 < ext.length ? ext[i + 1]![0] : (o.proto ?? 17);
    const h = Buffer.alloc(2 + body.length);
    h[0] = next;
    // A Fragment header's second byte is reserved; AH carries (length / 4) - 2, the others (length / 8) - 1.
    const type = ext[i]![0];
    h[1] = type === 44 ? 0 : type === 51 ? (h.length >> 2) - 2 : (h.length >> 3) - 1;
    body.copy(h, 2);
    parts.push(h);
  }
  const rest = Buffer.concat([...parts, payload]);
  const p = Buffer.alloc(40 + rest.length);
  p[0] = 0x60;
  p.writeUInt16BE(rest.length, 4);
  p[6] = ext.length > 0 ? ext[0]![0] : (o.proto ?? 17);
  p[7] = o.hopLimit ?? 64;
  p.set(ipv6ToBytes(parseIPv6(o.src ?? 'fd00:10:244:1::5')), 8);
  p.set(ipv6ToBytes(parseIPv6(o.dst ?? 'fd00:10:244:2::7')), 24);
  rest.copy(p, 40);
  return p;
}

/** A 6-byte option body (pad to 8 with the 2 header bytes): a PadN option. */
export const PADN6 = Buffer.from([1, 4, 0, 0, 0, 0]);

/** A Fragment header body: offset (in 8-byte units), more-fragments flag, identification. */
export function fragmentBody(offset: number, more: boolean): Buffer {
  const b = Buffer.alloc(6);
  b.writeUInt16BE((offset << 3) | (more ? 1 : 0), 0);
  b.writeUInt32BE(0x12345678, 2);
  return b;
}

/** The folded one's-complement sum of the IPv6 pseudo-header of `p` and `upper` (its upper-layer message, next header `proto`). */
function pseudoSum6(p: Buffer, proto: number, upper: Buffer): number {
  const pseudo = Buffer.alloc(40);
  p.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(upper.length, 32);
  pseudo[39] = proto;
  const all = Buffer.concat([pseudo, upper, Buffer.alloc(upper.length % 2)]);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) {
    sum += all.readUInt16BE(i);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  return sum;
}

/** True when the ICMPv6 message after the 40-byte header of `p` carries a correct checksum. */
export function icmp6ChecksumOk(p: Buffer): boolean {
  const len = p.readUInt16BE(4);
  return pseudoSum6(p, 58, p.subarray(40, 40 + len)) === 0xffff;
}

/** IPv6 + UDP (source port 40000) with a correct UDP checksum (a receiving kernel checks it). */
export function udp6Packet(src: string, dst: string, dstPort: number, payload: string, hopLimit = 64, ext?: [number, Buffer][]): Buffer {
  const udp = udpDatagram(dstPort, payload);
  const p = ip6Packet({ src, dst, hopLimit, proto: 17, payload: udp, ext });
  const udpAt = p.length - udp.length;
  p.writeUInt16BE(~pseudoSum6(p, 17, p.subarray(udpAt)) & 0xffff || 0xffff, udpAt + 6);
  return p;
}
