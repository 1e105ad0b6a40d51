// The IPv6 side of `felt doctor` (EnableIPv6 only): what the TUN must have for IPv6 pod traffic to
// enter the tunnel: the IPv6Network route through it, its IPv6 tunnel address (the lease's IPv6
// network address, the source of ICMPv6 errors), and IPv6 forwarding.
import { readFileSync } from 'node:fs';
import { formatIPv6, formatSubnet6, type Subnet6 } from '../net/ip6.js';
import type { DoctorContext } from './context.js';
import type { CheckResult } from './types.js';

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** `dest/len dev` of the main table's IPv6 routes, from /proc/net/ipv6_route. */
export function readRoutes6(text = read('/proc/net/ipv6_route') ?? ''): Array<{ dest: bigint; prefixLen: number; iface: string }> {
  const out: Array<{ dest: bigint; prefixLen: number; iface: string }> = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^[0-9a-f]{32}$/.test(f[0]!)) continue;
    out.push({ dest: BigInt(`0x${f[0]}`), prefixLen: Number.parseInt(f[1]!, 16), iface: f[9]! });
  }
  return out;
}

/** IPv6 addresses of one interface, from /proc/net/if_inet6. */
export function addresses6(iface: string, text = read('/proc/net/if_inet6') ?? ''): bigint[] {
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 6 && f[5] === iface && /^[0-9a-f]{32}$/.test(f[0]!))
    .map((f) => BigInt(`0x${f[0]}`));
}

export interface IPv6Facts {
  routes: Array<{ dest: bigint; prefixLen: number; iface: string }>;
  tunAddresses: bigint[];
  /** net.ipv6.conf.all.forwarding, undefined when unreadable. */
  forwarding?: string;
}

/** Reads the facts from /proc. */
export function ipv6Facts(tunName: string): IPv6Facts {
  return { routes: readRoutes6(), tunAddresses: addresses6(tunName), forwarding: read('/proc/sys/net/ipv6/conf/all/forwarding') };
}

/** The verdict for a node with `network6` and `subnet6` (pure: the facts are passed in). */
export function checkIPv6(tunName: string, network6: Subnet6, subnet6: Subnet6, facts: IPv6Facts): CheckResult {
  const base = { id: 'ipv6', title: 'IPv6 tunnel' };
  const net = formatSubnet6(network6);
  const problems: string[] = [];
  const fixes: string[] = [];
  if (!facts.routes.some((r) => r.dest === network6.ip && r.prefixLen === network6.prefixLen && r.iface === tunName)) {
    problems.push(`no route ${net} dev ${tunName}`);
    fixes.push('restart the agent (it adds the route with the device)');
  }
  if (!facts.tunAddresses.includes(subnet6.ip)) {
    problems.push(`${tunName} lacks its IPv6 tunnel address ${formatIPv6(subnet6.ip)}/128`);
    if (fixes.length === 0) fixes.push('restart the agent (it sets the address with the device)');
  }
  if (facts.forwarding !== undefined && facts.forwarding !== '1') {
    problems.push(`net.ipv6.conf.all.forwarding is ${facts.forwarding}`);
    fixes.push('sysctl -w net.ipv6.conf.all.forwarding=1 (and persist it in /etc/sysctl.d/)');
  }
  if (problems.length > 0) {
    return {
      ...base,
      verdict: 'fail',
      summary: problems.join('; '),
      cause: 'IPv6 pod traffic to other nodes never enters the tunnel (or is not forwarded between pods and the tunnel)',
      fix: fixes.join('; '),
    };
  }
  return { ...base, verdict: 'ok', summary: `${net} dev ${tunName}, ${tunName} has ${formatIPv6(subnet6.ip)}, IPv6 forwarding on (lease ${formatSubnet6(subnet6)})` };
}

/** The check for this node, or undefined when it has no IPv6 network (EnableIPv6 off). */
export function checkIPv6Tunnel(ctx: DoctorContext): CheckResult | undefined {
  const { network6, subnet6 } = ctx.node;
  if (!network6 || !subnet6) return undefined;
  return checkIPv6(ctx.tunName, network6, subnet6, ipv6Facts(ctx.tunName));
}

/** UDP/IPv6 sockets bound to `port` (from /proc/net/udp6: each 32-bit word of the address in host
 *  byte order, little-endian as the IPv4 table is read). Addresses without brackets. */
export function udp6Bindings(port: number, text = read('/proc/net/udp6') ?? ''): Array<{ address: string; inode: string }> {
  const out: Array<{ address: string; inode: string }> = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [addrHex, portHex] = f[1]!.split(':');
    if (!addrHex || !/^[0-9A-Fa-f]{32}$/.test(addrHex) || Number.parseInt(portHex ?? '', 16) !== port) continue;
    let ip = 0n;
    for (let w = 0; w < 4; w++) {
      const word = addrHex.slice(w * 8, w * 8 + 8);
      // Host-order word -> network-order bytes.
      const bytes = word.match(/../g)!.reverse().join('');
      ip = (ip << 32n) | BigInt(`0x${bytes}`);
    }
    out.push({ address: formatIPv6(ip), inode: f[9]! });
  }
  return out;
}
