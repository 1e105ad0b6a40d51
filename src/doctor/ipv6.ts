// The IPv6 side of `felt doctor` (EnableIPv6 only): what the TUN must have for IPv6 pod traffic to
// enter the tunnel: the IPv6Network route through it, its IPv6 tunnel address (the lease's IPv6
// network address, the source of ICMPv6 errors), IPv6 forwarding, and no more specific IPv6 route
// that sends a peer's IPv6 subnet elsewhere (the IPv6 twin of the routes check's shadowing).
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

export interface Route6 {
  dest: bigint;
  prefixLen: number;
  iface: string;
  /** The next hop, when the route has one. */
  gateway?: bigint;
}

/** `dest/len dev [via]` of the kernel's IPv6 routes, from /proc/net/ipv6_route. */
export function readRoutes6(text = read('/proc/net/ipv6_route') ?? ''): Route6[] {
  const out: Route6[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || !/^[0-9a-f]{32}$/.test(f[0]!)) continue;
    const prefixLen = Number.parseInt(f[1]!, 16);
    if (!(prefixLen >= 0 && prefixLen <= 128)) continue;
    const gateway = /^[0-9a-f]{32}$/.test(f[4]!) ? BigInt(`0x${f[4]}`) : 0n;
    out.push({ dest: BigInt(`0x${f[0]}`), prefixLen, iface: f[9]!, ...(gateway !== 0n ? { gateway } : {}) });
  }
  return out;
}

function mask6(len: number): bigint {
  return len <= 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - len)) - 1n);
}

/** A route and a subnet share addresses (one contains the other). */
function overlaps6(r: Route6, s: Subnet6): boolean {
  const m = mask6(Math.min(r.prefixLen, s.prefixLen));
  return (r.dest & m) === (s.ip & m);
}

/** "fc00:0:0:2::/64 dev eth0 via fe80::1". */
export function formatRoute6(r: Route6): string {
  return `${formatIPv6(r.dest)}/${r.prefixLen} dev ${r.iface}${r.gateway !== undefined ? ` via ${formatIPv6(r.gateway)}` : ''}`;
}

/** Per peer IPv6 subnet ("fc00:0:0:2::/64"), the more specific route than IPv6Network that covers
 *  part of it and does not use the TUN. */
export function shadowed6(tunName: string, network6: Subnet6, peers: Array<{ subnet6?: Subnet6 }>, routes: Route6[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const p of peers) {
    if (!p.subnet6) continue;
    const other = routes.find((r) => r.iface !== tunName && r.prefixLen > network6.prefixLen && overlaps6(r, p.subnet6!) && overlaps6(r, network6));
    if (other) out.set(formatSubnet6(p.subnet6), formatRoute6(other));
  }
  return out;
}

/** The kernel's choice for `dst` as far as /proc shows it: the longest matching route (ties: the
 *  first listed), skipping `lo` and unreachable routes. /proc/net/ipv6_route has no route MTU
 *  metric, so callers take the interface's MTU. */
export function lookupRoute6(dst: bigint, routes: Route6[] = readRoutes6()): Route6 | undefined {
  let best: Route6 | undefined;
  for (const r of routes) {
    if (r.iface === 'lo' || (best && r.prefixLen <= best.prefixLen)) continue;
    const m = mask6(r.prefixLen);
    if ((r.dest & m) === (dst & m)) best = r;
  }
  return best;
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
  routes: Route6[];
  tunAddresses: bigint[];
  /** net.ipv6.conf.all.forwarding, undefined when unreadable. */
  forwarding?: string;
}

/** Reads the facts from /proc. */
export function ipv6Facts(tunName: string): IPv6Facts {
  return { routes: readRoutes6(), tunAddresses: addresses6(tunName), forwarding: read('/proc/sys/net/ipv6/conf/all/forwarding') };
}

/** The verdict for a node with `network6` and `subnet6` (pure: the facts are passed in). */
export function checkIPv6(tunName: string, network6: Subnet6, subnet6: Subnet6, facts: IPv6Facts, peers: Array<{ subnet6?: Subnet6; publicIP: string; publicIPv6?: string }> = []): CheckResult {
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
  const shadowed = shadowed6(tunName, network6, peers, facts.routes);
  if (problems.length > 0) {
    return {
      ...base,
      verdict: 'fail',
      summary: problems.join('; '),
      cause: 'IPv6 pod traffic to other nodes never enters the tunnel (or is not forwarded between pods and the tunnel)',
      fix: fixes.join('; '),
    };
  }
  if (shadowed.size > 0) {
    const list = [...shadowed].slice(0, 5).map(([s, how]) => `${s} -> ${how}`);
    const owner = peers.filter((p) => p.subnet6 && shadowed.has(formatSubnet6(p.subnet6))).slice(0, 5)
      .map((p) => `${formatSubnet6(p.subnet6!)} (node ${p.publicIPv6 ?? p.publicIP})`);
    return {
      ...base,
      verdict: 'fail',
      summary: `${shadowed.size} IPv6 lease${shadowed.size === 1 ? ' is' : 's are'} shadowed: ${list.join('; ')}${shadowed.size > 5 ? '; ...' : ''}`,
      evidence: [`${net} dev ${tunName} is present, but a more specific IPv6 route wins for ${owner.join(', ')}`],
      cause: 'another interface claims IPv6 addresses inside the overlay\'s IPv6 network (docker, another CNI, a VPN or a static route), so IPv6 traffic for those pods never enters the tunnel',
      fix: `delete the route (ip -6 route del ${[...shadowed.values()][0]!.split(' via ')[0]}) and move the other network out of ${net}`,
    };
  }
  return { ...base, verdict: 'ok', summary: `${net} dev ${tunName}, ${tunName} has ${formatIPv6(subnet6.ip)}, IPv6 forwarding on (lease ${formatSubnet6(subnet6)})` };
}

/** The check for this node, or undefined when it has no IPv6 network (EnableIPv6 off). */
export function checkIPv6Tunnel(ctx: DoctorContext, peers: Array<{ subnet6?: Subnet6; publicIP: string; publicIPv6?: string }> = []): CheckResult | undefined {
  const { network6, subnet6 } = ctx.node;
  if (!network6 || !subnet6) return undefined;
  return checkIPv6(ctx.tunName, network6, subnet6, ipv6Facts(ctx.tunName), peers);
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
