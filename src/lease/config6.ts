// The IPv6 half of the network config (EnableIPv6, IPv6Network, IPv6SubnetLen, IPv6SubnetMin/Max):
// defaults and checks as flannel's CheckNetworkConfig applies them
// (https://github.com/flannel-io/flannel/blob/master/pkg/subnet/config.go), plus a SubnetMin <= SubnetMax
// check flannel lacks (it would fail every allocation with "out of subnets" instead).
import { formatIPv6, parseIPv6, parseSubnet6, prefixMask6, subnet6ContainsIP, type Subnet6 } from '../net/ip6.js';
import { ConfigError, type NetworkConfig } from './types.js';

export type IPv6Config = NonNullable<NetworkConfig['ipv6']>;

/**
 * Parses the IPv6 keys of a config whose keys are already lower-cased. `applyDefaults` false
 * (Kubernetes mode): only IPv6Network is checked; subnets come from the nodes' podCIDRs.
 */
export function parseIPv6Config(fields: Map<string, unknown>, applyDefaults: boolean): IPv6Config {
  const network = parseNetwork6(fields.get('ipv6network'));
  const givenLen = optionalLen6(fields.get('ipv6subnetlen'));
  const givenMin = optionalIPv6(fields.get('ipv6subnetmin'), 'IPv6SubnetMin');
  const givenMax = optionalIPv6(fields.get('ipv6subnetmax'), 'IPv6SubnetMax');
  if (!applyDefaults) return { network, subnetLen: givenLen ?? 0, subnetMin: givenMin ?? 0n, subnetMax: givenMax ?? 0n };

  const subnetLen = defaultSubnetLen6(network, givenLen);
  const size = 1n << BigInt(128 - subnetLen);
  // The first subnet is skipped so that the network address is never an interface address.
  const subnetMin = givenMin ?? network.ip + size;
  const subnetMax = givenMax ?? network.ip + (1n << BigInt(128 - network.prefixLen)) - size;
  checkBound6(subnetMin, 'IPv6SubnetMin', network, subnetLen);
  checkBound6(subnetMax, 'IPv6SubnetMax', network, subnetLen);
  if (subnetMin > subnetMax) {
    throw new ConfigError(
      `network config: IPv6SubnetMin ${formatIPv6(subnetMin)} is above IPv6SubnetMax ${formatIPv6(subnetMax)}`,
    );
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

function parseNetwork6(value: unknown): Subnet6 {
  if (value === undefined || value === null || value === '') {
    throw new ConfigError(
      'network config: please define a correct IPv6Network parameter (EnableIPv6 is set; expected a CIDR such as "fc00::/48")',
    );
  }
  if (typeof value !== 'string') {
    throw new ConfigError(`network config: IPv6Network must be a CIDR string, got ${JSON.stringify(value)}`);
  }
  let network: Subnet6;
  try {
    // Host bits are masked away, as Go's net.ParseCIDR does.
    network = parseSubnet6(value);
  } catch {
    throw new ConfigError(`network config: IPv6Network is not an IPv6 CIDR: ${JSON.stringify(value)}`);
  }
  if (network.ip === 0n && network.prefixLen === 0) {
    throw new ConfigError('network config: please define a correct IPv6Network parameter (::/0 is not a usable overlay network)');
  }
  return network;
}

/** flannel's IPv6SubnetLen default (/64 when the network is /62 or shorter) and checks. */
function defaultSubnetLen6(network: Subnet6, given: number | undefined): number {
  if (given !== undefined) {
    if (given > 126) throw new ConfigError(`network config: IPv6SubnetLen must be less than /127, got ${given}`);
    if (given < network.prefixLen + 2) {
      throw new ConfigError(
        `network config: IPv6SubnetLen ${given} is too short for IPv6Network /${network.prefixLen}: ` +
          `network must be able to accommodate at least four subnets (at least /${network.prefixLen + 2})`,
      );
    }
    return given;
  }
  if (network.prefixLen > 124) {
    throw new ConfigError(
      `network config: IPv6Network /${network.prefixLen} is too small. Minimum useful network prefix is /124`,
    );
  }
  return network.prefixLen <= 62 ? 64 : network.prefixLen + 2;
}

function checkBound6(ip: bigint, key: string, network: Subnet6, subnetLen: number): void {
  if (!subnet6ContainsIP(network, ip)) {
    throw new ConfigError(
      `network config: ${key} ${formatIPv6(ip)} is not in the range of the IPv6Network ${formatIPv6(network.ip)}/${network.prefixLen}`,
    );
  }
  if ((ip & prefixMask6(subnetLen)) !== ip) {
    throw new ConfigError(`network config: ${key} is not on a SubnetLen boundary: ${formatIPv6(ip)} (/${subnetLen})`);
  }
}

function optionalLen6(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 128) {
    throw new ConfigError(`network config: IPv6SubnetLen must be an integer prefix length 0..128, got ${JSON.stringify(value)}`);
  }
  // 0 is Go's zero value: "unset", so the default applies.
  return value === 0 ? undefined : value;
}

function optionalIPv6(value: unknown, key: string): bigint | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') {
    throw new ConfigError(`network config: ${key} must be an IPv6 address string, got ${JSON.stringify(value)}`);
  }
  let ip: bigint;
  try {
    ip = parseIPv6(value);
  } catch {
    throw new ConfigError(`network config: ${key} is not a valid IPv6 address: ${JSON.stringify(value)}`);
  }
  // :: is flannel's "empty": the default applies.
  return ip === 0n ? undefined : ip;
}
