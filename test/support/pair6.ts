// Two namespaces joined by a veth, each with an IPv4 and an IPv6 underlay address (set inside the
// namespace only, nodad), and the IPv6 overlay addressing the IPv6 engine suites share.
import { Netns } from '../testbed/netns.js';

export const A_IP = '192.168.77.2';
export const B_IP = '192.168.77.3';
export const A_IP6 = 'fd77::2';
export const B_IP6 = 'fd77::3';
export const NET6 = 'fd10::/32';
export const A_SUBNET6 = 'fd10:0:1::/64';
export const B_SUBNET6 = 'fd10:0:2::/64';
/** The nodes' IPv6 tunnel addresses: their subnets' network addresses. */
export const A_TUNNEL6 = 'fd10:0:1::';
export const B_TUNNEL6 = 'fd10:0:2::';
export const PORT = 8285;
/** Fits an IPv6 underlay (1500 - 48). */
export const MTU = 1452;

/** `<prefix>-a` and `<prefix>-b`, joined by veth0, with both underlay families up. */
export async function twoNodes6(prefix: string): Promise<[Netns, Netns]> {
  const nsA = await Netns.create(`${prefix}-a`);
  const nsB = await Netns.create(`${prefix}-b`);
  await nsA.ip(['link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth0', 'netns', nsB.name]);
  for (const [ns, v4, v6] of [[nsA, A_IP, A_IP6], [nsB, B_IP, B_IP6]] as const) {
    await ns.sysctl('net.ipv6.conf.all.disable_ipv6', '0');
    await ns.ip(['addr', 'add', `${v4}/24`, 'dev', 'veth0']);
    await ns.ip(['-6', 'addr', 'add', `${v6}/64`, 'dev', 'veth0', 'nodad']);
    await ns.ip(['link', 'set', 'veth0', 'up']);
    await ns.ip(['link', 'set', 'lo', 'up']);
  }
  return [nsA, nsB];
}
