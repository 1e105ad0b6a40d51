// The addresses a node advertises in its lease: PublicIP (flannel's node identity) and, with
// EnableIPv6, PublicIPv6. Order as flanneld: the flag, the address the store keeps for the node
// (Kubernetes node-public-ip / node-public-ipv6 annotations), then the underlay interface's address.
import { formatIPv6, parseIPv6 } from './net/ip6.js';
import { parseIPv4 } from './net/cidr.js';
import type { UnderlayInterface } from './net/iface.js';
import type { NetworkConfig } from './lease/types.js';

/** flannel's PublicIP of a node without an IPv4 underlay address (Go's zero IP4, "0.0.0.0"). */
export const NO_PUBLIC_IP = '0.0.0.0';

export interface PublicIPSources {
  /** --public-ip / --public-ipv6 (undefined: not given). */
  flag?: string;
  flag6?: string;
  /** The store's stored addresses (read only when the flag is not given). */
  stored: () => Promise<string | undefined>;
  stored6: () => Promise<string | undefined>;
}

/**
 * PublicIP: flag, stored, interface IPv4, else 0.0.0.0 (as flannel writes for a node without one).
 * PublicIPv6 (EnableIPv6 only; an IPv4-only cluster advertises none): flag, stored, the interface's
 * global IPv6 address. Throws a one-line error when the node ends up with neither.
 */
export async function resolvePublicIPs(
  sources: PublicIPSources,
  iface: UnderlayInterface,
  config: NetworkConfig,
): Promise<{ publicIP: string; publicIPv6?: string }> {
  const publicIP = sources.flag ?? (await sources.stored()) ?? iface.address ?? NO_PUBLIC_IP;
  try {
    parseIPv4(publicIP);
  } catch {
    throw new Error(`invalid public IP "${publicIP}" (--public-ip): not an IPv4 address`);
  }
  let publicIPv6: string | undefined;
  if (config.ipv6) {
    const v6 = sources.flag6 ?? (await sources.stored6()) ?? iface.address6;
    if (v6 !== undefined) {
      try {
        publicIPv6 = formatIPv6(parseIPv6(v6));
      } catch {
        throw new Error(`invalid public IPv6 address "${v6}" (--public-ipv6)`);
      }
    }
  }
  if (publicIP === NO_PUBLIC_IP && !publicIPv6) {
    throw new Error(
      config.ipv6
        ? `interface ${iface.name} has neither an IPv4 nor a global IPv6 address, and neither --public-ip nor --public-ipv6 is given`
        : `interface ${iface.name} has no IPv4 address (an IPv6 underlay needs EnableIPv6 in the network config): pass --iface or --public-ip`,
    );
  }
  return { publicIP, ...(publicIPv6 ? { publicIPv6 } : {}) };
}
