// Chooses the underlay interface as flanneld does: --iface (name or IP, first match wins),
// then --iface-regex (IPs, then names), else the interface of the default route.
import { networkInterfaces } from 'node:os';
import { readFileSync } from 'node:fs';

export interface UnderlayInterface {
  name: string;
  /** First IPv4 address of the interface (the socket binds here). */
  address: string;
  mtu: number;
}

function ipv4Of(name: string): string | undefined {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4' && !a.internal)?.address
    ?? networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address;
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

function make(name: string): UnderlayInterface | undefined {
  const address = ipv4Of(name);
  return address ? { name, address, mtu: mtuOf(name) } : undefined;
}

export function chooseInterface(ifaces: string[], regexes: string[]): UnderlayInterface {
  const all = networkInterfaces();
  for (const wanted of ifaces) {
    if (all[wanted]) {
      const found = make(wanted);
      if (found) return found;
      throw new Error(`interface ${wanted} has no IPv4 address`);
    }
    for (const [name, addrs] of Object.entries(all)) {
      if (addrs?.some((a) => a.family === 'IPv4' && a.address === wanted)) {
        return { name, address: wanted, mtu: mtuOf(name) };
      }
    }
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
      if (v4) return { name, address: v4.address, mtu: mtuOf(name) };
    }
    for (const name of Object.keys(all)) {
      if (re.test(name)) {
        const found = make(name);
        if (found) return found;
      }
    }
  }
  if (regexes.length > 0) throw new Error(`no interface matches --iface-regex ${regexes.join(', ')}`);
  const name = defaultRouteInterface();
  if (!name) throw new Error('no default route to pick the interface from: pass --iface <name or IP>');
  const found = make(name);
  if (!found) throw new Error(`default-route interface ${name} has no IPv4 address: pass --iface`);
  return found;
}
