// IPv6 addresses as unsigned 128-bit bigints, and CIDR subnets over them: the IPv6 twin of
// cidr.ts. Text is parsed strictly and formatted as RFC 5952 (lower case, longest zero run as
// "::"), which is also how flannel (Go's net.IP.String) writes IPv6 addresses into keys and
// annotations, so formatted text can be compared with what flannel wrote.
import { isIPv6 as nodeIsIPv6 } from 'node:net';

export interface Subnet6 {
  /** Network address (host bits zero), unsigned 128-bit. */
  readonly ip: bigint;
  /** Prefix length 0..128. */
  readonly prefixLen: number;
}

const ALL_ONES = (1n << 128n) - 1n;

/** Parses an IPv6 address ("fc00::1", "::ffff:10.0.0.1"); throws a clear error on anything else. */
export function parseIPv6(text: string): bigint {
  // node:net knows the grammar (including an embedded dotted quad); zones are not addresses.
  if (!nodeIsIPv6(text) || text.includes('%')) throw new Error(`invalid IPv6 address "${text}"`);
  let body = text;
  const lastColon = body.lastIndexOf(':');
  const last = body.slice(lastColon + 1);
  if (last.includes('.')) {
    // An embedded dotted quad is two groups written another way.
    const q = last.split('.').map(Number);
    body = `${body.slice(0, lastColon + 1)}${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`;
  }
  const halves = body.split('::');
  const groups = (part: string): number[] => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  const total = head.length + rest.length;
  const zeros = halves.length === 2 ? 8 - total : 0;
  const all = [...head, ...new Array<number>(zeros).fill(0), ...rest];
  if (all.length !== 8) throw new Error(`invalid IPv6 address "${text}"`);
  let value = 0n;
  for (const g of all) value = (value << 16n) | BigInt(g);
  return value;
}

export function isIPv6(text: string): boolean {
  try {
    parseIPv6(text);
    return true;
  } catch {
    return false;
  }
}

/** RFC 5952 text: lower-case hex, leading zeros dropped, the longest run (>= 2) of zero groups as "::". */
export function formatIPv6(ip: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Netmask for a prefix length, unsigned 128-bit. */
export function prefixMask6(prefixLen: number): bigint {
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 128) {
    throw new Error(`invalid IPv6 prefix length ${prefixLen}`);
  }
  return prefixLen === 0 ? 0n : (ALL_ONES << BigInt(128 - prefixLen)) & ALL_ONES;
}

export function makeSubnet6(ip: bigint, prefixLen: number): Subnet6 {
  return { ip: ip & prefixMask6(prefixLen), prefixLen };
}

/** Parses "fc00::/64". With `strict`, host bits must be zero; otherwise they are masked away. */
export function parseSubnet6(text: string, strict = false): Subnet6 {
  const slash = text.indexOf('/');
  if (slash < 0) throw new Error(`invalid IPv6 CIDR "${text}": missing /prefix`);
  const ip = parseIPv6(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > 128) {
    throw new Error(`invalid IPv6 CIDR "${text}": bad prefix length`);
  }
  const subnet = makeSubnet6(ip, Number(lenText));
  if (strict && subnet.ip !== ip) throw new Error(`invalid IPv6 CIDR "${text}": host bits set`);
  return subnet;
}

export function formatSubnet6(s: Subnet6): string {
  return `${formatIPv6(s.ip)}/${s.prefixLen}`;
}

export function subnet6ContainsIP(s: Subnet6, ip: bigint): boolean {
  return (ip & prefixMask6(s.prefixLen)) === s.ip;
}

/** True when `inner` lies entirely inside `outer`. */
export function subnet6Contains(outer: Subnet6, inner: Subnet6): boolean {
  return inner.prefixLen >= outer.prefixLen && subnet6ContainsIP(outer, inner.ip);
}

export function subnets6Overlap(a: Subnet6, b: Subnet6): boolean {
  return subnet6Contains(a, b) || subnet6Contains(b, a);
}

export function subnet6Equals(a: Subnet6, b: Subnet6): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/** The subnet right after this one, of the same size (wraps at 2^128). */
export function subnet6Next(s: Subnet6): Subnet6 {
  return { ip: (s.ip + (1n << BigInt(128 - s.prefixLen))) & ALL_ONES, prefixLen: s.prefixLen };
}

/** flannel's key form of the IPv6 half: "fc00::-64". */
export function subnet6ToKey(s: Subnet6): string {
  return `${formatIPv6(s.ip)}-${s.prefixLen}`;
}

/** The 16 network-order bytes of an address (what the data path and the addon take). */
export function ipv6ToBytes(ip: bigint): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 15; i >= 0; i--) {
    out[i] = Number(ip & 0xffn);
    ip >>= 8n;
  }
  return out;
}

export function ipv6FromBytes(bytes: Uint8Array, offset = 0): bigint {
  let value = 0n;
  for (let i = 0; i < 16; i++) value = (value << 8n) | BigInt(bytes[offset + i]!);
  return value;
}
