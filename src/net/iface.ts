// Chooses the underlay interface as flanneld does: --iface (name or IP, first match wins),
// then --iface-regex (IPv4 addresses, IPv6 addresses, then names), else the interface of the
// default route (IPv4, else IPv6). Its IPv6 underlay address is, as in flannel, a global-scope
// IPv6 address of that interface; an interface with only IPv6 addresses is an IPv6-only underlay.
import { networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';
import { formatIPv6, isIPv6, parseIPv6 } from './ip6.js';

export interface UnderlayInterface {
  name: string;
  /** First IPv4 address of the interface (the IPv4 socket binds here); undefined: none (IPv6-only). */
  address?: string;
  /** Its IPv6 underlay address (RFC 5952): a global-scope one, or the --iface address given. */
  address6?: string;
  mtu: number;
}

function ipv4Of(name: string): string | undefined {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4' && !a.internal)?.address
    ?? networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address;
}

/** IFA_F_DADFAILED | IFA_F_DEPRECATED | IFA_F_TENTATIVE: skipped, as flannel skips deprecated ones. */
const UNUSABLE_FLAGS = 0x08 | 0x20 | 0x40;

/**
 * Global-scope IPv6 addresses per interface, in the kernel's order, from /proc/net/if_inet6.
 * flannel's GetInterfaceIP6Addrs prefers global ones too but would fall back to a link-local
 * address; felt does not, since peers on other links cannot reach one.
 */
function globalIPv6(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let text = '';
  try {
    text = readFileSync('/proc/net/if_inet6', 'utf8');
  } catch {
    return out; // no IPv6 in this kernel
  }
  for (const line of text.split('\n')) {
    const [hex, , , scope, flags, name] = line.trim().split(/\s+/);
    if (!hex || hex.length !== 32 || !name || scope !== '00') continue;
    if (parseInt(flags ?? '0', 16) & UNUSABLE_FLAGS) continue;
    const list = out.get(name) ?? [];
    list.push(formatIPv6(BigInt(`0x${hex}`)));
    out.set(name, list);
  }
  return out;
}

function ipv6Of(name: string): string | undefined {
  return globalIPv6().get(name)?.[0];
}

function mtuOf(name: string): number {
  try {
    return Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim());
  } catch {
    throw new Error(`cannot read the MTU of interface ${name}`);
  }
}

/** Interface of the IPv4 default route, from /proc/net/route. */
function defaultRouteInterface(): string | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/net/route', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n').slice(1)) {
    const [iface, destination, , , , , , mask] = line.trim().split(/\s+/);
    if (destination === '00000000' && mask === '00000000' && iface) return iface;
  }
  return undefined;
}

/** Interface of the IPv6 default route (::/0), from /proc/net/ipv6_route. */
function defaultRouteInterface6(): string | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/net/ipv6_route', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 10 && /^0{32}$/.test(f[0]!) && f[1] === '00' && f[9] !== 'lo') return f[9];
  }
  return undefined;
}

/** The interface with its first IPv4 and first global IPv6 address; undefined when it has neither. */
function make(name: string, address6?: string): UnderlayInterface | undefined {
  const address = ipv4Of(name);
  const v6 = address6 ?? ipv6Of(name);
  if (!address && !v6) return undefined;
  return { name, ...(address ? { address } : {}), ...(v6 ? { address6: v6 } : {}), mtu: mtuOf(name) };
}

/** The interface holding an address given by --iface (IPv4 or IPv6). */
function byAddress(wanted: string): UnderlayInterface | undefined {
  const all = networkInterfaces();
  if (isIPv6(wanted)) {
    const ip = parseIPv6(wanted);
    for (const [name, addrs] of Object.entries(all)) {
      if (addrs?.some((a) => a.family === 'IPv6' && isIPv6(a.address) && parseIPv6(a.address) === ip)) {
        // The given IPv6 address is the underlay address, as flannel's --iface <ipv6> is.
        return make(name, formatIPv6(ip));
      }
    }
    return undefined;
  }
  for (const [name, addrs] of Object.entries(all)) {
    if (addrs?.some((a) => a.family === 'IPv4' && a.address === wanted)) {
      return { ...make(name)!, address: wanted };
    }
  }
  return undefined;
}

export function chooseInterface(ifaces: string[], regexes: string[]): UnderlayInterface {
  const all = networkInterfaces();
  for (const wanted of ifaces) {
    if (all[wanted]) {
      const found = make(wanted);
      if (found) return found;
      throw new Error(`interface ${wanted} has no IPv4 and no global IPv6 address`);
    }
    const found = byAddress(wanted);
    if (found) return found;
  }
  if (ifaces.length > 0) throw new Error(`none of the interfaces given by --iface exists: ${ifaces.join(', ')}`);
  for (const pattern of regexes) {
    let re: RegExp;
    try {
      re = new RegExp(pattern);
    } catch (err) {
      throw new Error(`invalid --iface-regex "${pattern}": ${(err as Error).message}`);
    }
    for (const [name, addrs] of Object.entries(all)) {
      const v4 = addrs?.find((a) => a.family === 'IPv4' && !a.internal && re.test(a.address));
      if (v4) return { ...make(name)!, address: v4.address };
    }
    for (const [name, addrs] of globalIPv6()) {
      const v6 = addrs.find((a) => re.test(a));
      if (v6) return make(name, v6)!;
    }
    for (const name of Object.keys(all)) {
      if (re.test(name)) {
        const found = make(name);
        if (found) return found;
      }
    }
  }
  if (regexes.length > 0) throw new Error(`no interface matches --iface-regex ${regexes.join(', ')}`);
  const name = defaultRouteInterface() ?? defaultRouteInterface6();
  if (!name) throw new Error('no default route to pick the interface from: pass --iface <name or IP>');
  const found = make(name);
  if (!found) throw new Error(`default-route interface ${name} has no IPv4 and no global IPv6 address: pass --iface`);
  return found;
}
