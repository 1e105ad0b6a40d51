// Subnet allocation: pure functions over the network config and the subnets already taken.
// As flannel: walk [SubnetMin, SubnetMax], skip anything overlapping a lease, collect up to 100
// free candidates and pick one at random (allocateSubnet in
// https://github.com/flannel-io/flannel/blob/master/pkg/subnet/etcd/local_manager.go).
import { makeSubnet, prefixMask, subnetContains, subnetLast, subnetSize, type Subnet } from '../net/cidr.js';
import type { NetworkConfig } from './types.js';

/** flannel collects at most this many free candidates before picking one. */
export const MAX_CANDIDATES = 100;

type SubnetBounds = Pick<NetworkConfig, 'network' | 'subnetLen' | 'subnetMin' | 'subnetMax'>;

/** True when a lease subnet fits the config: right length, inside Network and [SubnetMin, SubnetMax]. */
export function isCompatible(subnet: Subnet, config: SubnetBounds): boolean {
  return (
    subnet.prefixLen === config.subnetLen &&
    subnetContains(config.network, subnet) &&
    subnet.ip >= config.subnetMin &&
    subnet.ip <= config.subnetMax
  );
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
