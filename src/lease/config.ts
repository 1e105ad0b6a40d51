// The network config (flannel's `<prefix>/config` / net-conf.json): parsing, defaults and checks.
// Key matching is case-insensitive, as Go's encoding/json is; defaults and checks follow flannel's
// CheckNetworkConfig (https://github.com/flannel-io/flannel/blob/master/pkg/subnet/config.go); the IPv6
// keys are in config6.ts.
import {
  formatIPv4,
  parseIPv4,
  parseSubnet,
  prefixMask,
  subnetContainsIP,
  subnetLast,
  subnetSize,
  type Subnet,
} from '../net/cidr.js';
import { parseIPv6Config } from './config6.js';
import { ConfigError, type NetworkConfig } from './types.js';

export const DEFAULT_UDP_PORT = 8285;
/** felt implements only this backend. */
export const SUPPORTED_BACKEND = 'udp';

export interface ParseNetworkConfigOptions {
  /**
   * Apply flannel's SubnetLen/SubnetMin/SubnetMax defaults and checks (etcd mode). The Kubernetes
   * mode passes false: subnets come from node podCIDRs there, and flannel ignores these keys.
   */
  applySubnetDefaults?: boolean;
}

/** Parses config text (JSON); invalid JSON gets a clear one-line error. */
export function parseNetworkConfigText(text: string, options?: ParseNetworkConfigOptions): NetworkConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`network config is not valid JSON: ${(err as Error).message}`);
  }
  return parseNetworkConfig(json, options);
}

/** Validates a parsed JSON network config and applies flannel's defaults. */
export function parseNetworkConfig(json: unknown, options: ParseNetworkConfigOptions = {}): NetworkConfig {
  const applyDefaults = options.applySubnetDefaults ?? true;
  const fields = foldKeys(json, 'network config');

  const enableIPv4 = optionalBool(fields.get('enableipv4'), 'EnableIPv4') ?? true;
  const enableIPv6 = optionalBool(fields.get('enableipv6'), 'EnableIPv6') ?? false;
  if (!enableIPv4) {
    // An IPv6-only overlay: flannel checks Network and the IPv4 subnet keys only with EnableIPv4.
    if (!enableIPv6) {
      throw new ConfigError('network config: EnableIPv4 and EnableIPv6 are both false: at least one IP family must be enabled');
    }
    const ipv6 = parseIPv6Config(fields, applyDefaults);
    return { enableIPv4, enableIPv6, ipv6, ...parseBackend(fields.get('backend')), raw: json };
  }

  const networkText = fields.get('network');
  if (networkText === undefined || networkText === null || networkText === '') {
    throw new ConfigError('network config: Network is missing (expected a CIDR such as "10.244.0.0/16")');
  }
  if (typeof networkText !== 'string') {
    throw new ConfigError(`network config: Network must be a CIDR string, got ${JSON.stringify(networkText)}`);
  }
  let network: Subnet;
  try {
    // Host bits are masked away, as flannel's IP4Net does ("10.244.1.0/16" -> 10.244.0.0/16).
    network = parseSubnet(networkText);
  } catch (err) {
    throw new ConfigError(`network config: Network: ${(err as Error).message}`);
  }
  if (network.ip === 0 && network.prefixLen === 0) {
    throw new ConfigError('network config: Network 0.0.0.0/0 is not a usable overlay network');
  }

  const givenLen = optionalUint(fields.get('subnetlen'), 'SubnetLen');
  const givenMin = optionalIPv4(fields.get('subnetmin'), 'SubnetMin');
  const givenMax = optionalIPv4(fields.get('subnetmax'), 'SubnetMax');
  const { backendType, port } = parseBackend(fields.get('backend'));
  const ipv6 = enableIPv6 ? { ipv6: parseIPv6Config(fields, applyDefaults) } : {};

  if (!applyDefaults) {
    return {
      network,
      subnetLen: givenLen ?? 0,
      subnetMin: givenMin ?? 0,
      subnetMax: givenMax ?? 0,
      enableIPv4,
      enableIPv6,
      ...ipv6,
      backendType,
      port,
      raw: json,
    };
  }

  const subnetLen = defaultSubnetLen(network, givenLen);
  const size = subnetSize(subnetLen);
  // The first subnet is skipped so that the network address is never an interface address.
  const subnetMin = givenMin ?? network.ip + size;
  const subnetMax = givenMax ?? subnetLast(network) + 1 - size;
  checkBound(subnetMin, 'SubnetMin', network, subnetLen);
  checkBound(subnetMax, 'SubnetMax', network, subnetLen);
  if (subnetMin > subnetMax) {
    // flannel does not check this and then fails every allocation with "out of subnets".
    throw new ConfigError(
      `network config: SubnetMin ${formatIPv4(subnetMin)} is above SubnetMax ${formatIPv4(subnetMax)}`,
    );
  }
  return { network, subnetLen, subnetMin, subnetMax, enableIPv4, enableIPv6, ...ipv6, backendType, port, raw: json };
}

/** flannel's SubnetLen default and checks. */
function defaultSubnetLen(network: Subnet, given: number | undefined): number {
  if (given !== undefined) {
    if (given > 30) throw new ConfigError(`network config: SubnetLen must be at most 30, got ${given}`);
    if (given < network.prefixLen + 2) {
      throw new ConfigError(
        `network config: SubnetLen ${given} is too short for Network /${network.prefixLen}: ` +
          `it must be at least /${network.prefixLen + 2} (the network must hold at least four subnets)`,
      );
    }
    return given;
  }
  if (network.prefixLen > 28) {
    throw new ConfigError(
      `network config: Network /${network.prefixLen} is too small. Minimum useful network prefix is /28`,
    );
  }
  return network.prefixLen <= 22 ? 24 : network.prefixLen + 2;
}

function checkBound(ip: number, key: string, network: Subnet, subnetLen: number): void {
  if (!subnetContainsIP(network, ip)) {
    throw new ConfigError(
      `network config: ${key} ${formatIPv4(ip)} is not in the range of the Network ${formatIPv4(network.ip)}/${network.prefixLen}`,
    );
  }
  if (((ip & prefixMask(subnetLen)) >>> 0) !== ip) {
    throw new ConfigError(`network config: ${key} ${formatIPv4(ip)} is not on a SubnetLen (/${subnetLen}) boundary`);
  }
}

function parseBackend(value: unknown): { backendType: string; port: number } {
  // A missing or empty Backend means udp (flannel's parseBackendType).
  if (value === undefined || value === null) return { backendType: SUPPORTED_BACKEND, port: DEFAULT_UDP_PORT };
  const fields = foldKeys(value, 'Backend');
  const typeValue = fields.get('type');
  let backendType = SUPPORTED_BACKEND;
  if (typeValue !== undefined && typeValue !== null && typeValue !== '') {
    if (typeof typeValue !== 'string') {
      throw new ConfigError(`network config: Backend.Type must be a string, got ${JSON.stringify(typeValue)}`);
    }
    backendType = typeValue.toLowerCase();
  }
  if (backendType !== SUPPORTED_BACKEND) {
    throw new ConfigError(
      `network config: Backend.Type "${backendType}" is not supported: felt implements only the "udp" backend`,
    );
  }
  const portValue = fields.get('port');
  let port = DEFAULT_UDP_PORT;
  if (portValue !== undefined && portValue !== null) {
    if (typeof portValue !== 'number' || !Number.isInteger(portValue) || portValue < 1 || portValue > 65535) {
      throw new ConfigError(`network config: Backend.Port must be an integer 1..65535, got ${JSON.stringify(portValue)}`);
    }
    port = portValue;
  }
  return { backendType, port };
}

/** Object keys lower-cased (Go's JSON decoding ignores key case); a later duplicate wins, as in Go. */
function foldKeys(value: unknown, what: string): Map<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`network config: ${what} must be a JSON object, got ${describe(value)}`);
  }
  const out = new Map<string, unknown>();
  for (const [key, v] of Object.entries(value)) out.set(key.toLowerCase(), v);
  return out;
}

function optionalBool(value: unknown, key: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw new ConfigError(`network config: ${key} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

function optionalUint(value: unknown, key: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 32) {
    throw new ConfigError(`network config: ${key} must be an integer prefix length 0..32, got ${JSON.stringify(value)}`);
  }
  // 0 is Go's zero value: "unset", so the default applies.
  return value === 0 ? undefined : value;
}

function optionalIPv4(value: unknown, key: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') {
    throw new ConfigError(`network config: ${key} must be a dotted IPv4 address string, got ${JSON.stringify(value)}`);
  }
  let ip: number;
  try {
    ip = parseIPv4(value);
  } catch {
    throw new ConfigError(`network config: ${key} is not a valid IPv4 address: ${JSON.stringify(value)}`);
  }
  // 0.0.0.0 is Go's zero value: "unset".
  return ip === 0 ? undefined : ip;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? `the string ${JSON.stringify(value)}` : `${typeof value} ${String(value)}`;
}
