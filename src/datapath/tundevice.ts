// Host-side set-up of the TUN device, the same for both engines: MTU, `<lease .0>/32`, link up,
// the one route `<network> dev <tun>`, and two per-device sysctls. With an IPv6 network also
// `<lease6 network address>/128` and `<network6> dev <tun>`; an IPv6-only overlay has only those.
import { writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { FeltAddon } from './addon.js';
import { ipv6ToBytes } from '../net/ip6.js';
import type { DatapathConfig } from './types.js';

export function configureTun(
  addon: FeltAddon,
  tunName: string,
  config: DatapathConfig,
  log?: Logger,
  txQueueLen?: number,
): void {
  const { network6, localSubnet6 } = config;
  if (!network6 || !localSubnet6) {
    // An IPv4-only cluster: without IPv6 on the device the kernel stops sending router
    // solicitations and MLD reports into it (they would only be counted as not-ip drops).
    setDeviceSysctl(`ipv6/conf/${tunName}/disable_ipv6`, log, 'IPv6 packets from the host will be counted as not-ip drops');
  } else {
    setDeviceSysctl(`ipv6/conf/${tunName}/disable_ipv6`, log, 'the device cannot carry IPv6', '0');
  }
  const { network, localSubnet } = config;
  // An IPv6-only overlay: no IPv4 address or route, so the host never sends IPv4 into the tunnel.
  addon.linkSetup(tunName, { mtu: config.mtu, ...(localSubnet ? { address: localSubnet.ip, prefixLen: 32 } : {}), txQueueLen });
  if (network) addon.routeAdd(tunName, network.ip, network.prefixLen);
  if (network6 && localSubnet6) {
    // The IPv6 tunnel address (the lease's network address) is the source of our ICMPv6 errors.
    addon.addrAdd6(tunName, ipv6ToBytes(localSubnet6.ip), 128);
    addon.routeAdd6(tunName, ipv6ToBytes(network6.ip), network6.prefixLen);
  }
  // Our ICMP errors come from the TUN's own address (the lease's .0). Linux drops packets arriving
  // with a local source address as martians unless accept_local is set on the receiving device.
  setDeviceSysctl(`ipv4/conf/${tunName}/accept_local`, log, 'ICMP errors from the agent will be dropped by the kernel');
}

function setDeviceSysctl(key: string, log: Logger | undefined, consequence: string, value = '1'): void {
  try {
    writeFileSync(`/proc/sys/net/${key}`, value);
  } catch (err) {
    log?.warn({ err: (err as Error).message, key }, `cannot set ${key}: ${consequence}`);
  }
}
