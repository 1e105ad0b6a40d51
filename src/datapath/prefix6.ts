// IPv6 prefixes as four 32-bit words for the packet path: a bigint per packet would allocate, so
// subnets are converted once (per route table) and addresses are read straight from packet bytes.
import { prefixMask6, type Subnet6 } from '../net/ip6.js';
import { readU32 } from './packet.js';

export interface Prefix6 {
  readonly prefixLen: number;
  /** Network address words, most significant first (host bits zero). */
  readonly w0: number;
  readonly w1: number;
  readonly w2: number;
  readonly w3: number;
  /** Netmask words. */
  readonly m0: number;
  readonly m1: number;
  readonly m2: number;
  readonly m3: number;
}

function word(v: bigint, i: number): number {
  return Number((v >> BigInt(96 - 32 * i)) & 0xffffffffn);
}

export function toPrefix6(s: Subnet6): Prefix6 {
  const mask = prefixMask6(s.prefixLen);
  const ip = s.ip & mask;
  return {
    prefixLen: s.prefixLen,
    w0: word(ip, 0),
    w1: word(ip, 1),
    w2: word(ip, 2),
    w3: word(ip, 3),
    m0: word(mask, 0),
    m1: word(mask, 1),
    m2: word(mask, 2),
    m3: word(mask, 3),
  };
}

/** True when the address at buf[off, off + 16) lies in `p`. */
export function prefix6Has(p: Prefix6, buf: Uint8Array, off: number): boolean {
  return (
    ((readU32(buf, off) & p.m0) >>> 0) === p.w0 &&
    ((readU32(buf, off + 4) & p.m1) >>> 0) === p.w1 &&
    ((readU32(buf, off + 8) & p.m2) >>> 0) === p.w2 &&
    ((readU32(buf, off + 12) & p.m3) >>> 0) === p.w3
  );
}

/** True when the address at buf[off, off + 16) lies in one of the prefixes (no allocation). */
export function prefixes6Have(prefixes: readonly Prefix6[], buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < prefixes.length; i++) if (prefix6Has(prefixes[i]!, buf, off)) return true;
  return false;
}

/**
 * A 30-bit hash of four (masked) address words: keys stay small integers, which V8's Map hashes
 * fastest. Collisions are resolved by comparing the words.
 */
export function hash6(a0: number, a1: number, a2: number, a3: number): number {
  let h = Math.imul(a0 ^ 0x2545f491, 0x9e3779b1);
  h = Math.imul(h ^ a1 ^ (h >>> 15), 0x85ebca77);
  h = Math.imul(h ^ a2 ^ (h >>> 13), 0xc2b2ae3d);
  h = Math.imul(h ^ a3 ^ (h >>> 16), 0x27d4eb2f);
  return (h ^ (h >>> 15)) & 0x3fffffff;
}
