// /run/flannel/subnet.env: what the flannel CNI plugin reads. Written atomically (temp file + rename)
// so the plugin never sees a half-written file.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { formatIPv4, formatSubnet, parseSubnet, type Subnet } from './net/cidr.js';

export interface SubnetEnv {
  network: Subnet;
  /** The node's lease; FLANNEL_SUBNET is its first host address with the lease's prefix length. */
  subnet: Subnet;
  mtu: number;
  ipMasq: boolean;
}

export function formatSubnetEnv(env: SubnetEnv): string {
  return [
    `FLANNEL_NETWORK=${formatSubnet(env.network)}`,
    `FLANNEL_SUBNET=${formatIPv4(env.subnet.ip + 1)}/${env.subnet.prefixLen}`,
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
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const m = /^FLANNEL_SUBNET=(\S+)$/m.exec(text);
  if (!m) return undefined;
  try {
    return parseSubnet(m[1]!);
  } catch {
    return undefined;
  }
}
