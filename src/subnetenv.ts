// /run/flannel/subnet.env: what the flannel CNI plugin reads. Written atomically (temp file + rename)
// so the plugin never sees a half-written file.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatIPv4, formatSubnet, parseSubnet, type Subnet } from './net/cidr.js';
import { formatIPv6, formatSubnet6, parseSubnet6, type Subnet6 } from './net/ip6.js';

export interface SubnetEnv {
  /** Network and the node's IPv4 lease (EnableIPv4); FLANNEL_SUBNET is the lease's first host address. */
  network?: Subnet;
  subnet?: Subnet;
  /** IPv6Network and the node's IPv6 lease (EnableIPv6): FLANNEL_IPV6_NETWORK / FLANNEL_IPV6_SUBNET. */
  network6?: Subnet6;
  subnet6?: Subnet6;
  mtu: number;
  ipMasq: boolean;
}

/**
 * flannel's WriteSubnetFile: IPv4 lines (EnableIPv4 only: an IPv6-only overlay has none), then the IPv6
 * ones (first host of the subnet, as for IPv4), then MTU.
 */
export function formatSubnetEnv(env: SubnetEnv): string {
  const ipv4 =
    env.network && env.subnet
      ? [`FLANNEL_NETWORK=${formatSubnet(env.network)}`, `FLANNEL_SUBNET=${formatIPv4(env.subnet.ip + 1)}/${env.subnet.prefixLen}`]
      : [];
  const ipv6 =
    env.network6 && env.subnet6
      ? [
          `FLANNEL_IPV6_NETWORK=${formatSubnet6(env.network6)}`,
          `FLANNEL_IPV6_SUBNET=${formatIPv6(env.subnet6.ip + 1n)}/${env.subnet6.prefixLen}`,
        ]
      : [];
  return [
    ...ipv4,
    ...ipv6,
    `FLANNEL_MTU=${env.mtu}`,
    `FLANNEL_IPMASQ=${env.ipMasq}`,
    '',
  ].join('\n');
}

export async function writeSubnetEnv(file: string, env: SubnetEnv): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, formatSubnetEnv(env), { mode: 0o644 });
  await rename(tmp, file);
}

/** The subnet recorded by a previous run (FLANNEL_SUBNET, host bits masked), if the file is readable. */
export async function readPreviousSubnet(file: string): Promise<Subnet | undefined> {
  return (await readPreviousSubnets(file)).subnet;
}

/** Both subnets a previous run recorded (FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET; host bits masked). */
export async function readPreviousSubnets(file: string): Promise<{ subnet?: Subnet; subnet6?: Subnet6 }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return {};
  }
  const subnet = matchValue(text, 'FLANNEL_SUBNET', (v) => parseSubnet(v));
  const subnet6 = matchValue(text, 'FLANNEL_IPV6_SUBNET', (v) => parseSubnet6(v));
  return { ...(subnet ? { subnet } : {}), ...(subnet6 ? { subnet6 } : {}) };
}

/** The parsed value of `NAME=value`, undefined when absent or unparsable. */
function matchValue<T>(text: string, name: string, parse: (value: string) => T): T | undefined {
  const m = new RegExp(`^${name}=(\\S+)$`, 'm').exec(text);
  if (!m) return undefined;
  try {
    return parse(m[1]!);
  } catch {
    return undefined;
  }
}
