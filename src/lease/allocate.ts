// Subnet allocation: pure functions over the network config and the subnets already taken.
// As flannel: walk [SubnetMin, SubnetMax], skip anything overlapping a lease, collect up to 100
// free candidates and pick one at random (allocateSubnet in
// https://github.com/flannel-io/flannel/blob/master/pkg/subnet/etcd/local_manager.go).
import { makeSubnet, prefixMask, subnetContains, subnetLast, subnetSize, type Subnet } from '../net/cidr.js';
import { makeSubnet6, prefixMask6, type Subnet6 } from '../net/ip6.js';
import type { IPv4Overlay, NetworkConfig } from './types.js';

/** flannel collects at most this many free candidates before picking one. */
export const MAX_CANDIDATES = 100;

type SubnetBounds = Omit<IPv4Overlay, 'enableIPv4'>;

/** True when a lease subnet fits the config: right length, inside Network and [SubnetMin, SubnetMax]. */
export function isCompatible(subnet: Subnet, config: SubnetBounds): boolean {
  return (
    subnet.prefixLen === config.subnetLen &&
    subnetContains(config.network, subnet) &&
    subnet.ip >= config.subnetMin &&
    subnet.ip <= config.subnetMax
  );
}

/**
 * isCompatible for a lease's optional IPv4 subnet (as isCompatible6 for the IPv6 one): with EnableIPv4 it
 * must have one that fits; on an IPv6-only overlay it must have none.
 */
export function isCompatible4(subnet: Subnet | undefined, config: NetworkConfig): boolean {
  if (!config.enableIPv4) return subnet === undefined;
  return subnet !== undefined && isCompatible(subnet, config);
}

/** How many subnets [SubnetMin, SubnetMax] holds (for error messages). */
export function countSubnets(config: SubnetBounds): number {
  if (config.subnetMax < config.subnetMin) return 0;
  return Math.floor((config.subnetMax - config.subnetMin) / subnetSize(config.subnetLen)) + 1;
}

/**
 * The first `limit` subnets in [SubnetMin, SubnetMax], in address order, that overlap none of `taken`.
 * Linear in candidates + taken: exact-size and smaller taken subnets mark the candidate holding them;
 * larger ones (rare) are checked as ranges.
 */
export function freeSubnets(config: SubnetBounds, taken: readonly Subnet[], limit = MAX_CANDIDATES): Subnet[] {
  const len = config.subnetLen;
  const size = subnetSize(len);
  const mask = prefixMask(len);
  const blocked = new Set<number>();
  const wide: Array<{ first: number; last: number }> = [];
  for (const t of taken) {
    if (t.prefixLen >= len) blocked.add((t.ip & mask) >>> 0);
    else wide.push({ first: t.ip, last: subnetLast(t) });
  }
  const out: Subnet[] = [];
  // Plain numbers (no >>> 0) so the walk cannot wrap past 255.255.255.255.
  for (let ip = config.subnetMin; ip <= config.subnetMax && out.length < limit; ip += size) {
    if (blocked.has(ip)) continue;
    if (wide.some((w) => ip >= w.first && ip <= w.last)) continue;
    out.push(makeSubnet(ip, len));
  }
  return out;
}

/**
 * A random free subnet among the first MAX_CANDIDATES free ones, or undefined when none is free.
 * `random` returns a number in [0, 1) (Math.random by default; tests inject their own).
 */
export function pickFreeSubnet(
  config: SubnetBounds,
  taken: readonly Subnet[],
  random: () => number = Math.random,
): Subnet | undefined {
  const candidates = freeSubnets(config, taken);
  if (candidates.length === 0) return undefined;
  const index = Math.min(candidates.length - 1, Math.floor(random() * candidates.length));
  return candidates[Math.max(0, index)];
}

// ---- IPv6 (dual-stack): the same walk over [IPv6SubnetMin, IPv6SubnetMax] ----

type Subnet6Bounds = NonNullable<NetworkConfig['ipv6']>;

/**
 * flannel's isIPv6SubnetConfigCompat: with EnableIPv6 a lease must have an IPv6 subnet of the right
 * length in [IPv6SubnetMin, IPv6SubnetMax]; without it, it must have none.
 */
export function isCompatible6(subnet6: Subnet6 | undefined, ipv6: Subnet6Bounds | undefined): boolean {
  if (!ipv6) return subnet6 === undefined;
  return (
    subnet6 !== undefined &&
    subnet6.prefixLen === ipv6.subnetLen &&
    subnet6.ip >= ipv6.subnetMin &&
    subnet6.ip <= ipv6.subnetMax
  );
}

/** How many IPv6 subnets [IPv6SubnetMin, IPv6SubnetMax] holds (for error messages). */
export function countSubnets6(ipv6: Subnet6Bounds): bigint {
  if (ipv6.subnetMax < ipv6.subnetMin) return 0n;
  return (ipv6.subnetMax - ipv6.subnetMin) / (1n << BigInt(128 - ipv6.subnetLen)) + 1n;
}

/** The first `limit` IPv6 subnets in [IPv6SubnetMin, IPv6SubnetMax] that overlap none of `taken`. */
export function freeSubnets6(ipv6: Subnet6Bounds, taken: readonly Subnet6[], limit = MAX_CANDIDATES): Subnet6[] {
  const len = ipv6.subnetLen;
  const size = 1n << BigInt(128 - len);
  const mask = prefixMask6(len);
  const blocked = new Set<bigint>();
  const wide: Array<{ first: bigint; last: bigint }> = [];
  for (const t of taken) {
    if (t.prefixLen >= len) blocked.add(t.ip & mask);
    else wide.push({ first: t.ip, last: t.ip + (1n << BigInt(128 - t.prefixLen)) - 1n });
  }
  const out: Subnet6[] = [];
  for (let ip = ipv6.subnetMin; ip <= ipv6.subnetMax && out.length < limit; ip += size) {
    if (blocked.has(ip)) continue;
    if (wide.some((w) => ip >= w.first && ip <= w.last)) continue;
    out.push(makeSubnet6(ip, len));
  }
  return out;
}

/** A random free IPv6 subnet among the first MAX_CANDIDATES free ones, or undefined when none is free. */
export function pickFreeSubnet6(
  ipv6: Subnet6Bounds,
  taken: readonly Subnet6[],
  random: () => number = Math.random,
): Subnet6 | undefined {
  const candidates = freeSubnets6(ipv6, taken);
  if (candidates.length === 0) return undefined;
  const index = Math.min(candidates.length - 1, Math.floor(random() * candidates.length));
  return candidates[Math.max(0, index)];
}
