// Host-side set-up of the TUN device, the same for both engines: MTU, `<lease .0>/32`, link up,
// the one route `<network> dev <tun>`, and two per-device sysctls.
import { writeFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { FeltAddon } from './addon.js';
import type { DatapathConfig } from './types.js';

export function configureTun(
  addon: FeltAddon,
  tunName: string,
  config: DatapathConfig,
  log?: Logger,
  txQueueLen?: number,
): void {
  // felt carries IPv4 only: without IPv6 on the device the kernel stops sending router
  // solicitations and MLD reports into it (they would only be counted as not-ip drops).
  setDeviceSysctl(`ipv6/conf/${tunName}/disable_ipv6`, log, 'IPv6 packets from the host will be counted as not-ip drops');
  addon.linkSetup(tunName, { mtu: config.mtu, address: config.localSubnet.ip, prefixLen: 32, txQueueLen });
  addon.routeAdd(tunName, config.network.ip, config.network.prefixLen);
  // Our ICMP errors come from the TUN's own address (the lease's .0). Linux drops packets arriving
  // with a local source address as martians unless accept_local is set on the receiving device.
  setDeviceSysctl(`ipv4/conf/${tunName}/accept_local`, log, 'ICMP errors from the agent will be dropped by the kernel');
}

function setDeviceSysctl(key: string, log: Logger | undefined, consequence: string): void {
  try {
    writeFileSync(`/proc/sys/net/${key}`, '1');
  } catch (err) {
    log?.warn({ err: (err as Error).message, key }, `cannot set ${key}: ${consequence}`);
  }
}
