// IPv4 addresses as unsigned 32-bit numbers, and CIDR subnets over them.
// One representation everywhere in the control plane: `number` in [0, 2^32).

import { parseSubnet6, subnet6ToKey, type Subnet6 } from './ip6.js';

export interface Subnet {
  /** Network address (host bits zero), unsigned 32-bit. */
  readonly ip: number;
  /** Prefix length 0..32. */
  readonly prefixLen: number;
}

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Parses a dotted IPv4 address; throws a clear error on anything else. */
export function parseIPv4(text: string): number {
  const m = IPV4_RE.exec(text);
  if (!m) throw new Error(`invalid IPv4 address "${text}"`);
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255 || (m[i]!.length > 1 && m[i]!.startsWith('0'))) {
      throw new Error(`invalid IPv4 address "${text}"`);
    }
    value = value * 256 + octet;
  }
  return value >>> 0;
}

export function isIPv4(text: string): boolean {
  try {
    parseIPv4(text);
    return true;
  } catch {
    return false;
  }
}

export function formatIPv4(ip: number): string {
  return `${(ip >>> 24) & 255}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

/** Netmask for a prefix length, unsigned 32-bit. */
export function prefixMask(prefixLen: number): number {
  if (!Number.isInteger(prefixLen) || prefixLen < 0 || prefixLen > 32) {
    throw new Error(`invalid prefix length ${prefixLen}`);
  }
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/** Number of addresses in a subnet of this prefix length. */
export function subnetSize(prefixLen: number): number {
  return 2 ** (32 - prefixLen);
}

export function makeSubnet(ip: number, prefixLen: number): Subnet {
  return { ip: (ip & prefixMask(prefixLen)) >>> 0, prefixLen };
}

/**
 * Parses "a.b.c.d/len". With `strict`, host bits must be zero (as etcd keys and
 * network configs require); otherwise they are masked away ("10.5.52.1/24" -> 10.5.52.0/24).
 */
export function parseSubnet(text: string, strict = false): Subnet {
  const slash = text.indexOf('/');
  if (slash < 0) throw new Error(`invalid CIDR "${text}": missing /prefix`);
  const ip = parseIPv4(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!/^\d{1,2}$/.test(lenText)) throw new Error(`invalid CIDR "${text}": bad prefix length`);
  const prefixLen = Number(lenText);
  if (prefixLen > 32) throw new Error(`invalid CIDR "${text}": prefix length above 32`);
  const subnet = makeSubnet(ip, prefixLen);
  if (strict && subnet.ip !== ip) throw new Error(`invalid CIDR "${text}": host bits set`);
  return subnet;
}

export function formatSubnet(s: Subnet): string {
  return `${formatIPv4(s.ip)}/${s.prefixLen}`;
}

export function subnetContainsIP(s: Subnet, ip: number): boolean {
  return ((ip & prefixMask(s.prefixLen)) >>> 0) === s.ip;
}

/** True when `inner` lies entirely inside `outer`. */
export function subnetContains(outer: Subnet, inner: Subnet): boolean {
  return inner.prefixLen >= outer.prefixLen && subnetContainsIP(outer, inner.ip);
}

export function subnetsOverlap(a: Subnet, b: Subnet): boolean {
  return subnetContains(a, b) || subnetContains(b, a);
}

export function subnetEquals(a: Subnet, b: Subnet): boolean {
  return a.ip === b.ip && a.prefixLen === b.prefixLen;
}

/** Last address of the subnet (broadcast), unsigned 32-bit. */
export function subnetLast(s: Subnet): number {
  return (s.ip + subnetSize(s.prefixLen) - 1) >>> 0;
}

/** The subnet right after this one, of the same size (wraps at 2^32). */
export function subnetNext(s: Subnet): Subnet {
  return { ip: (s.ip + subnetSize(s.prefixLen)) >>> 0, prefixLen: s.prefixLen };
}

/** flannel's etcd key form: "10.5.52.0-24". */
export function subnetToKey(s: Subnet): string {
  return `${formatIPv4(s.ip)}-${s.prefixLen}`;
}

const KEY_RE = /^(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

/** Parses the last path element of a subnet key (IPv4 part only; use parseSubnetKey for both halves). */
export function subnetFromKey(key: string): Subnet | undefined {
  return parseSubnetKey(key)?.subnet;
}

/** Go's zero IP4Net: the IPv4 half of the key of a lease that has no IPv4 subnet. */
export const NO_SUBNET: Subnet = Object.freeze({ ip: 0, prefixLen: 0 });

/**
 * flannel's ParseSubnetKey: "10.244.1.0-24" or dual-stack "10.244.1.0-24&fc00:0:0:1::-64" (the last path
 * element of a key). Undefined for anything malformed, including host bits set in either half.
 */
export function parseSubnetKey(key: string): { subnet: Subnet; subnet6?: Subnet6 } | undefined {
  const last = key.slice(key.lastIndexOf('/') + 1);
  const m = KEY_RE.exec(last);
  if (!m) return undefined;
  try {
    const subnet = parseSubnet(`${m[1]}/${m[2]}`, true);
    if (m[3] === undefined) return { subnet };
    if (!/^\d{1,3}$/.test(m[4]!)) return undefined;
    return { subnet, subnet6: parseSubnet6(`${m[3]}/${m[4]}`, true) };
  } catch {
    return undefined;
  }
}

/**
 * flannel's MakeSubnetKey: the IPv4 key, plus "&<ipv6>-<len>" when the lease has an IPv6 subnet. A lease
 * with no IPv4 subnet (IPv6-only overlay) gets Go's zero IP4Net as its IPv4 half: "0.0.0.0-0&<ipv6>-<len>".
 */
export function makeSubnetKey(subnet: Subnet | undefined, subnet6?: Subnet6): string {
  const v4 = subnetToKey(subnet ?? NO_SUBNET);
  return subnet6 ? `${v4}&${subnet6ToKey(subnet6)}` : v4;
}
