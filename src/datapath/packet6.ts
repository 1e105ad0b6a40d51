// IPv6 packet handling for the js engine: header validation, the extension-header walk, hop limit
// and ICMPv6 errors. Like packet.ts, every function takes (buffer, offset, length), never throws on
// packet contents, and only the ICMPv6 builder allocates.
import { internetChecksum, readU16, type PacketVerdict } from './packet.js';

export const IPV6_HEADER_LEN = 40;
export const PROTO_ICMPV6 = 58;

export const ICMPV6_DEST_UNREACH = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;

/** Byte offsets inside an IPv6 header. */
export const IP6_OFF = {
  payloadLength: 4,
  nextHeader: 6,
  hopLimit: 7,
  src: 8,
  dst: 24,
} as const;

const NH_HOP_BY_HOP = 0;
const NH_ROUTING = 43;
const NH_FRAGMENT = 44;
const NH_DEST_OPTS = 60;
/** Extension headers the walk looks at: more than this many -> ext-header. */
export const EXT_MAX_HEADERS = 8;
/** Every extension header the walk looks at must end within this many bytes of the packet. */
export const EXT_MAX_BYTES = 256;

const ICMPV6_HOP_LIMIT = 64;
/** RFC 4443 2.4(c): an error carries as much of the offending packet as fits in the minimum MTU. */
const IPV6_MIN_MTU = 1280;
const ICMPV6_HEADER_LEN = 8;

/** Result of the extension-header walk. */
export type ExtVerdict = 'ok' | 'ext-header';

/**
 * Validates the fixed IPv6 header of `buf[start, start + length)`: < 40 bytes -> truncated;
 * version != 6 -> not-ip; payload length 0 with a Hop-by-Hop header (a jumbogram, RFC 2675: no
 * UDP datagram can carry one) -> malformed; 40 + payload length above `length` -> truncated.
 */
export function validateIPv6(buf: Uint8Array, start: number, length: number): PacketVerdict {
  if (length < IPV6_HEADER_LEN || start < 0 || start + length > buf.length) return 'truncated';
  if (buf[start]! >> 4 !== 6) return 'not-ip';
  const payloadLen = readU16(buf, start + IP6_OFF.payloadLength);
  if (payloadLen === 0 && buf[start + IP6_OFF.nextHeader] === NH_HOP_BY_HOP) return 'malformed';
  if (IPV6_HEADER_LEN + payloadLen > length) return 'truncated';
  return 'ok';
}

/** 40 + payload length of a validated header. */
export function ipv6TotalLength(buf: Uint8Array, start: number): number {
  return IPV6_HEADER_LEN + readU16(buf, start + IP6_OFF.payloadLength);
}

/**
 * Walks the extension headers of the validated packet at `start` (total length `totalLen`):
 * Hop-by-Hop (first only), Routing and Destination Options, stopping at a Fragment header (the
 * tunnel forwards fragments but does not look past one) or at any other next header, which is the
 * upper layer. Returns (offset of the upper-layer header, or of the Fragment header) * 256 + its
 * protocol number, or -1 (`ext-header`) when a header runs past the packet, past the first
 * EXT_MAX_BYTES bytes, is the (EXT_MAX_HEADERS + 1)th, or is a Hop-by-Hop header not in first place.
 */
export function walkIPv6(buf: Uint8Array, start: number, totalLen: number): number {
  let nh = buf[start + IP6_OFF.nextHeader]!;
  let off = IPV6_HEADER_LEN;
  const limit = Math.min(totalLen, EXT_MAX_BYTES);
  for (let count = 0; ; count++) {
    if (nh !== NH_HOP_BY_HOP && nh !== NH_ROUTING && nh !== NH_DEST_OPTS && nh !== NH_FRAGMENT) return off * 256 + nh;
    if (count === EXT_MAX_HEADERS) return -1;
    if (nh === NH_HOP_BY_HOP && off !== IPV6_HEADER_LEN) return -1;
    // Every extension header starts with next header and length; a Fragment header is 8 bytes.
    if (off + 8 > limit) return -1;
    if (nh === NH_FRAGMENT) return off * 256 + nh;
    const len = (buf[start + off + 1]! + 1) * 8;
    if (off + len > limit) return -1;
    nh = buf[start + off]!;
    off += len;
  }
}

/** ff00::/8 */
function isMulticast6(buf: Uint8Array, addrOff: number): boolean {
  return buf[addrOff] === 0xff;
}

function isUnspecified6(buf: Uint8Array, addrOff: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[addrOff + i] !== 0) return false;
  return true;
}

/**
 * May we send an ICMPv6 error about this validated packet whose walk gave `walk` (not -1)?
 * Never about an ICMPv6 error message (type < 128) or an ICMPv6 packet too short to carry a type,
 * a non-first fragment, a first fragment of an ICMPv6 message (its type is past the Fragment
 * header), a packet from :: or a multicast source, or one sent to a multicast destination.
 */
export function icmp6ErrorAllowed(buf: Uint8Array, start: number, walk: number): boolean {
  if (walk < 0) return false;
  if (isUnspecified6(buf, start + IP6_OFF.src) || isMulticast6(buf, start + IP6_OFF.src)) return false;
  if (isMulticast6(buf, start + IP6_OFF.dst)) return false;
  const proto = walk & 0xff;
  const off = (walk - proto) / 256;
  if (proto === NH_FRAGMENT) {
    // Fragment header: next header, reserved, offset (13 bits) + flags. The walk checked its 8 bytes.
    if ((readU16(buf, start + off + 2) & 0xfff8) !== 0) return false;
    return buf[start + off] !== PROTO_ICMPV6;
  }
  if (proto === PROTO_ICMPV6) {
    if (off >= ipv6TotalLength(buf, start)) return false;
    if (buf[start + off]! < 128) return false;
  }
  return true;
}

/** Decrements the hop limit of the IPv6 header at `start` (IPv6 has no header checksum). */
export function decrementHopLimit(buf: Uint8Array, start: number): void {
  buf[start + IP6_OFF.hopLimit] = buf[start + IP6_OFF.hopLimit]! - 1;
}

/** Sum of the IPv6 pseudo-header words (RFC 8200 8.1) for an upper-layer packet of `length` bytes. */
export function pseudoHeaderSum6(buf: Uint8Array, ipStart: number, length: number, nextHeader: number): number {
  let sum = 0;
  for (let i = ipStart + IP6_OFF.src; i < ipStart + IP6_OFF.src + 32; i += 2) sum += readU16(buf, i);
  return sum + (length >>> 16) + (length & 0xffff) + nextHeader;
}

/**
 * Builds an ICMPv6 error about the validated packet at `buf[start, ...)`, from `src` (16 bytes) to
 * the packet's source: IPv6 header (hop limit 64), ICMPv6 type/code/checksum, the 32-bit `rest`
 * word (unused, or the MTU of Packet Too Big), then as much of the offending packet as keeps the
 * error within 1280 bytes. Callers check icmp6ErrorAllowed() first; this function does not.
 */
export function buildIcmp6Error(buf: Uint8Array, start: number, type: number, code: number, rest: number, src: Uint8Array): Buffer {
  const quoteLen = Math.min(ipv6TotalLength(buf, start), IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMPV6_HEADER_LEN);
  const icmpLen = ICMPV6_HEADER_LEN + quoteLen;
  const out = Buffer.alloc(IPV6_HEADER_LEN + icmpLen);
  out[0] = 0x60;
  out.writeUInt16BE(icmpLen, IP6_OFF.payloadLength);
  out[IP6_OFF.nextHeader] = PROTO_ICMPV6;
  out[IP6_OFF.hopLimit] = ICMPV6_HOP_LIMIT;
  out.set(src.subarray(0, 16), IP6_OFF.src);
  out.set(buf.subarray(start + IP6_OFF.src, start + IP6_OFF.src + 16), IP6_OFF.dst);
  const icmp = IPV6_HEADER_LEN;
  out[icmp] = type;
  out[icmp + 1] = code;
  out.writeUInt32BE(rest >>> 0, icmp + 4);
  out.set(buf.subarray(start, start + quoteLen), icmp + ICMPV6_HEADER_LEN);
  const csum = internetChecksum(out, icmp, icmpLen, pseudoHeaderSum6(out, 0, icmpLen, PROTO_ICMPV6));
  out.writeUInt16BE(csum, icmp + 2);
  return out;
}

export function buildIcmp6NoRoute(buf: Uint8Array, start: number, src: Uint8Array): Buffer {
  return buildIcmp6Error(buf, start, ICMPV6_DEST_UNREACH, 0, 0, src);
}

export function buildIcmp6TimeExceeded(buf: Uint8Array, start: number, src: Uint8Array): Buffer {
  return buildIcmp6Error(buf, start, ICMPV6_TIME_EXCEEDED, 0, 0, src);
}

export function buildIcmp6PacketTooBig(buf: Uint8Array, start: number, mtu: number, src: Uint8Array): Buffer {
  return buildIcmp6Error(buf, start, ICMPV6_PACKET_TOO_BIG, 0, mtu, src);
}

