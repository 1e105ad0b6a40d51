// IPv4 packet handling for the js engine's hot path: validation, checksums, TTL, ICMP errors.
// Every function here takes (buffer, offset, length) and never throws on packet contents:
// bad input yields a verdict, not an exception. Nothing allocates except the ICMP builder.

/** Result of validating an IPv4 header: 'ok' or the drop reason (names as in DROP_REASONS). */
export type PacketVerdict = 'ok' | 'truncated' | 'not-ip' | 'malformed';

export const IPV4_HEADER_LEN = 20;
export const ICMP_HEADER_LEN = 8;
export const PROTO_ICMP = 1;

export const ICMP_DEST_UNREACH = 3;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_CODE_NET_UNREACH = 0;
export const ICMP_CODE_FRAG_NEEDED = 4;
export const ICMP_CODE_TTL_EXCEEDED = 0;

/** Byte offsets inside an IPv4 header. */
export const IP_OFF = {
  versionIhl: 0,
  totalLength: 2,
  flagsFragment: 6,
  ttl: 8,
  protocol: 9,
  checksum: 10,
  src: 12,
  dst: 16,
} as const;

const FLAG_DF = 0x4000;
const FRAGMENT_OFFSET_MASK = 0x1fff;
/** TTL of the ICMP errors we originate (as a fresh host would send). */
const ICMP_TTL = 64;
/** RFC 792: the quote is the offending IP header plus the first 8 payload bytes. */
const ICMP_QUOTE_PAYLOAD = 8;

/**
 * Validates the IPv4 header of `buf[start, start + length)` in the order of docs/datapath.md:
 * < 20 bytes -> truncated; version != 4 -> not-ip; IHL < 5 or total length < IHL*4 -> malformed;
 * (with `verifyChecksum`) bad header checksum -> malformed; total length > length -> truncated.
 */
export function validateIPv4(buf: Uint8Array, start: number, length: number, verifyChecksum: boolean): PacketVerdict {
  if (length < IPV4_HEADER_LEN || start < 0 || start + length > buf.length) return 'truncated';
  const vihl = buf[start]!;
  if (vihl >> 4 !== 4) return 'not-ip';
  const headerLen = (vihl & 0x0f) * 4;
  const totalLen = (buf[start + 2]! << 8) | buf[start + 3]!;
  if (headerLen < IPV4_HEADER_LEN || totalLen < headerLen) return 'malformed';
  // Options longer than the bytes we have: the packet is cut short (total length >= header).
  if (headerLen > length) return 'truncated';
  if (verifyChecksum && internetChecksum(buf, start, headerLen) !== 0) return 'malformed';
  if (totalLen > length) return 'truncated';
  return 'ok';
}

/**
 * RFC 1071 internet checksum of `buf[start, start + length)`: the one's complement of the
 * one's complement sum. Over a header that includes a correct checksum field the result is 0.
 * `initial` seeds the sum (e.g. a pseudo-header sum).
 */
export function internetChecksum(buf: Uint8Array, start: number, length: number, initial = 0): number {
  let sum = initial;
  const end = start + length;
  let i = start;
  // A double holds the plain sum of any IP packet's words exactly; fold once at the end.
  while (i + 1 < end) {
    sum += (buf[i]! << 8) | buf[i + 1]!;
    i += 2;
  }
  if (i < end) sum += buf[i]! << 8;
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/**
 * Decrements the TTL of the IPv4 header at `start` by one and patches the header checksum
 * incrementally (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')). The caller has checked TTL > 1.
 * Eqn. 3 never yields 0xFFFF from a valid header, so the result equals a full recompute.
 */
export function decrementTTL(buf: Uint8Array, start: number): void {
  const ttlOff = start + IP_OFF.ttl;
  const oldWord = (buf[ttlOff]! << 8) | buf[ttlOff + 1]!;
  const newWord = oldWord - 0x0100;
  buf[ttlOff] = buf[ttlOff]! - 1;
  const csOff = start + IP_OFF.checksum;
  const hc = (buf[csOff]! << 8) | buf[csOff + 1]!;
  let sum = (~hc & 0xffff) + (~oldWord & 0xffff) + newWord;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  const patched = ~sum & 0xffff;
  buf[csOff] = patched >>> 8;
  buf[csOff + 1] = patched & 0xff;
}

export function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

export function readU16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

function writeU16(buf: Uint8Array, off: number, value: number): void {
  buf[off] = (value >>> 8) & 0xff;
  buf[off + 1] = value & 0xff;
}

function writeU32(buf: Uint8Array, off: number, value: number): void {
  buf[off] = (value >>> 24) & 0xff;
  buf[off + 1] = (value >>> 16) & 0xff;
  buf[off + 2] = (value >>> 8) & 0xff;
  buf[off + 3] = value & 0xff;
}

/** Don't Fragment bit of a validated header. */
export function hasDF(buf: Uint8Array, start: number): boolean {
  return (readU16(buf, start + IP_OFF.flagsFragment) & FLAG_DF) !== 0;
}

/** 224.0.0.0/4 or the limited broadcast 255.255.255.255. */
function isMulticastOrBroadcast(ip: number): boolean {
  return ip >>> 28 === 0xe || ip === 0xffffffff;
}

function isIcmpErrorType(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12;
}

/**
 * May we send an ICMP error about this (validated) packet? Never about an ICMP error message,
 * a non-first fragment, a packet from 0.0.0.0 or a multicast/broadcast source, or one sent to a
 * multicast/broadcast destination (RFC 1122 3.2.2, RFC 1812 4.3.2.7).
 */
export function icmpErrorAllowed(buf: Uint8Array, start: number): boolean {
  if ((readU16(buf, start + IP_OFF.flagsFragment) & FRAGMENT_OFFSET_MASK) !== 0) return false;
  const src = readU32(buf, start + IP_OFF.src);
  if (src === 0 || isMulticastOrBroadcast(src)) return false;
  if (isMulticastOrBroadcast(readU32(buf, start + IP_OFF.dst))) return false;
  if (buf[start + IP_OFF.protocol] === PROTO_ICMP) {
    const headerLen = (buf[start]! & 0x0f) * 4;
    const totalLen = readU16(buf, start + IP_OFF.totalLength);
    // An ICMP packet too short to carry a type is not worth an answer either.
    if (totalLen <= headerLen) return false;
    if (isIcmpErrorType(buf[start + headerLen]!)) return false;
  }
  return true;
}

/**
 * Builds an ICMP error about the validated packet `buf[start, ...)` (whose IPv4 header is
 * complete and whose total length fits in the buffer), from `srcIP` to the packet's source:
 * IPv4 header (TTL 64, ID 0, DF clear), ICMP header (`rest` = the 32-bit "unused"/next-hop-MTU
 * word), then the offending header plus up to 8 payload bytes. Both checksums are set.
 * Callers check icmpErrorAllowed() first; this function does not.
 */
export function buildIcmpError(
  buf: Uint8Array,
  start: number,
  type: number,
  code: number,
  rest: number,
  srcIP: number,
): Buffer {
  const headerLen = (buf[start]! & 0x0f) * 4;
  const totalLen = readU16(buf, start + IP_OFF.totalLength);
  const quoteLen = headerLen + Math.min(ICMP_QUOTE_PAYLOAD, totalLen - headerLen);
  const icmpLen = ICMP_HEADER_LEN + quoteLen;
  const out = Buffer.alloc(IPV4_HEADER_LEN + icmpLen);

  out[0] = 0x45;
  writeU16(out, IP_OFF.totalLength, out.length);
  out[IP_OFF.ttl] = ICMP_TTL;
  out[IP_OFF.protocol] = PROTO_ICMP;
  writeU32(out, IP_OFF.src, srcIP);
  writeU32(out, IP_OFF.dst, readU32(buf, start + IP_OFF.src));
  writeU16(out, IP_OFF.checksum, internetChecksum(out, 0, IPV4_HEADER_LEN));

  const icmp = IPV4_HEADER_LEN;
  out[icmp] = type;
  out[icmp + 1] = code;
  writeU32(out, icmp + 4, rest);
  out.set(buf.subarray(start, start + quoteLen), icmp + ICMP_HEADER_LEN);
  writeU16(out, icmp + 2, internetChecksum(out, icmp, icmpLen));
  return out;
}

export function buildNetUnreachable(buf: Uint8Array, start: number, srcIP: number): Buffer {
  return buildIcmpError(buf, start, ICMP_DEST_UNREACH, ICMP_CODE_NET_UNREACH, 0, srcIP);
}

/** Fragmentation needed: the low 16 bits of the rest word carry the next-hop MTU (RFC 1191). */
export function buildFragNeeded(buf: Uint8Array, start: number, mtu: number, srcIP: number): Buffer {
  return buildIcmpError(buf, start, ICMP_DEST_UNREACH, ICMP_CODE_FRAG_NEEDED, mtu & 0xffff, srcIP);
}

export function buildTimeExceeded(buf: Uint8Array, start: number, srcIP: number): Buffer {
  return buildIcmpError(buf, start, ICMP_TIME_EXCEEDED, ICMP_CODE_TTL_EXCEEDED, 0, srcIP);
}

/**
 * Token bucket: `ratePerSecond` tokens added continuously, at most `burst` held; take() spends
 * one if available. The clock (ms) is injectable for tests.
 */
export class TokenBucket {
  /** Tokens in thousandths, so integer-millisecond refills add up exactly (no float drift). */
  private milliTokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(ratePerSecond > 0) || !(burst >= 1)) {
      throw new Error(`invalid token bucket: rate ${ratePerSecond}/s, burst ${burst}`);
    }
    this.milliTokens = burst * 1000;
    this.last = now();
  }

  take(): boolean {
    const t = this.now();
    const elapsedMs = t - this.last;
    this.last = t;
    // A clock stepping backwards adds nothing (and the new reading becomes the reference).
    if (elapsedMs > 0) this.milliTokens = Math.min(this.burst * 1000, this.milliTokens + elapsedMs * this.ratePerSecond);
    if (this.milliTokens < 1000) return false;
    this.milliTokens -= 1000;
    return true;
  }
}
