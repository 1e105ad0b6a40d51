// Pods wired by the real CNI plugins (Debian's containernetworking-plugins: bridge, host-local,
// portmap, loopback in /usr/lib/cni), the way the kubelet's runtime runs a flannel conflist:
// each plugin of the list in order with the previous result (DEL in reverse), the plugin process
// running in the node's network namespace, the pod's namespace given as CNI_NETNS.
//
// flannel's own CNI plugin is not packaged anywhere we can install from, so its small, public logic
// (https://github.com/flannel-io/cni-plugin, flannel.go + flannel_linux.go) is reproduced here: read
// subnet.env, build the delegate config (type bridge, ipMasq = !FLANNEL_IPMASQ, mtu = FLANNEL_MTU,
// isGateway, host-local IPAM on FLANNEL_SUBNET with a route to FLANNEL_NETWORK, plus a second range
// on FLANNEL_IPV6_SUBNET and a route to FLANNEL_IPV6_NETWORK when present), save it for DEL in
// its data dir, and invoke the delegate. The testbed's nodes share one filesystem, so every path a
// node would keep to itself (subnet.env, flannel's data dir, host-local's data dir) is given
// explicitly: flannel's `subnetFile` and `dataDir` keys, and `ipam.dataDir`, which flannel passes
// through to host-local.
// Plain Node (no vitest): reused by the e2e suites and the image test.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatSubnet6, parseSubnet6 } from '../../src/net/ip6.js';
import { Netns, run } from './netns.js';

export const CNI_BIN_DIR = '/usr/lib/cni';

/** deploy/'s cni-conf.json (the ConfigMap the install-cni init container copies). */
export const FLANNEL_CONFLIST = {
  name: 'cbr0',
  cniVersion: '0.3.1',
  plugins: [
    { type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } },
    { type: 'portmap', capabilities: { portMappings: true } },
  ],
};

type Obj = Record<string, any>;

/** Where one node keeps its CNI state. */
export interface CniHost {
  /** The node namespace: plugins run there (the host side of the pod network). */
  ns: Netns;
  /** subnet.env felt wrote for this node. */
  subnetFile: string;
  /** A directory of the node's own: flannel's data dir and host-local's live below it. */
  stateDir: string;
}

export interface CniPod {
  containerID: string;
  /** The pod's namespace. */
  netns: Netns;
  ifname: string;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ version?: string; address: string; gateway?: string; interface?: number }>;
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: Obj;
}

export class CniError extends Error {}

export interface FlannelSubnetEnv {
  /** FLANNEL_NETWORK / FLANNEL_SUBNET, absent on an IPv6-only overlay (flannel's plugin needs one family). */
  network?: string;
  subnet?: string;
  /** FLANNEL_IPV6_NETWORK / FLANNEL_IPV6_SUBNET, present together on a dual-stack or IPv6-only node. */
  network6?: string;
  subnet6?: string;
  mtu: number;
  ipMasq: boolean;
}

/** flannel's subnet.env parser (FLANNEL_* keys; CIDRs normalised to their network as net.ParseCIDR does). */
export function readSubnetEnv(file: string): FlannelSubnetEnv {
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) env[line.slice(0, i)] = line.slice(i + 1);
  }
  const v4 = [env.FLANNEL_NETWORK, env.FLANNEL_SUBNET];
  const v6 = [env.FLANNEL_IPV6_NETWORK, env.FLANNEL_IPV6_SUBNET];
  const ipv6Only = v4.every((v) => v === undefined) && v6.every((v) => v !== undefined);
  const missing = [...(ipv6Only ? [] : ['FLANNEL_NETWORK', 'FLANNEL_SUBNET']), 'FLANNEL_MTU', 'FLANNEL_IPMASQ'].filter((k) => env[k] === undefined);
  if (missing.length > 0) throw new CniError(`${file} is missing ${missing.join(', ')}`);
  if (v6.filter((v) => v !== undefined).length === 1) throw new CniError(`${file} has only one of FLANNEL_IPV6_NETWORK, FLANNEL_IPV6_SUBNET`);
  return {
    ...(ipv6Only ? {} : { network: networkOf(env.FLANNEL_NETWORK!), subnet: networkOf(env.FLANNEL_SUBNET!) }),
    ...(v6[0] !== undefined ? { network6: network6Of(v6[0]), subnet6: network6Of(v6[1]!) } : {}),
    mtu: Number(env.FLANNEL_MTU),
    ipMasq: env.FLANNEL_IPMASQ === 'true',
  };
}

function network6Of(cidr: string): string {
  try {
    return formatSubnet6(parseSubnet6(cidr.trim()));
  } catch (err) {
    throw new CniError((err as Error).message);
  }
}

function networkOf(cidr: string): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr.trim());
  if (!m) throw new CniError(`bad CIDR "${cidr}"`);
  const len = Number(m[5]);
  const ip = m.slice(1, 5).reduce((a, o) => a * 256 + Number(o), 0);
  const masked = len === 0 ? 0 : (ip - (ip % 2 ** (32 - len)));
  return `${[24, 16, 8, 0].map((s) => Math.floor(masked / 2 ** s) % 256).join('.')}/${len}`;
}

/** The delegate config flannel's plugin builds from its own config and subnet.env (doCmdAdd). */
export function flannelDelegate(conf: Obj, subnetFile: string): Obj {
  const fenv = readSubnetEnv(subnetFile);
  const d: Obj = { ...(conf.delegate ?? {}) };
  if ('name' in d) throw new CniError("'delegate' dictionary must not have 'name' field, it'll be set by flannel");
  if ('ipam' in d) throw new CniError("'delegate' dictionary must not have 'ipam' field, it'll be set by flannel");
  if (conf.runtimeConfig) d.runtimeConfig = conf.runtimeConfig;
  d.name = conf.name;
  d.type ??= 'bridge';
  // If felt is not masquerading, the bridge plugin should.
  if (!('ipMasq' in d)) d.ipMasq = !fenv.ipMasq;
  if (!('mtu' in d)) d.mtu = fenv.mtu;
  if (d.type === 'bridge' && !('isGateway' in d)) d.isGateway = true;
  if (conf.cniVersion) d.cniVersion = conf.cniVersion;
  const ipam: Obj = { ...(conf.ipam ?? {}) };
  ipam.type ??= 'host-local';
  ipam.ranges = [...(fenv.subnet ? [[{ subnet: fenv.subnet }]] : []), ...(fenv.subnet6 ? [[{ subnet: fenv.subnet6 }]] : [])];
  ipam.routes = [...(conf.ipam?.routes ?? []), ...(fenv.network ? [{ dst: fenv.network }] : []), ...(fenv.network6 ? [{ dst: fenv.network6 }] : [])];
  d.ipam = ipam;
  return d;
}

function cniEnv(command: 'ADD' | 'DEL', pod: CniPod): NodeJS.ProcessEnv {
  return {
    // go-iptables (bridge ipMasq, portmap) looks iptables up in PATH.
    PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin`,
    CNI_COMMAND: command,
    CNI_CONTAINERID: pod.containerID,
    CNI_NETNS: `/run/netns/${pod.netns.name}`,
    CNI_IFNAME: pod.ifname,
    CNI_PATH: CNI_BIN_DIR,
  };
}

/** Runs one real plugin binary in the node namespace with `conf` on stdin. */
async function execPlugin(host: CniHost, command: 'ADD' | 'DEL', pod: CniPod, conf: Obj): Promise<CniResult | undefined> {
  const type = String(conf.type);
  if (!/^[a-z0-9-]+$/.test(type)) throw new CniError(`bad plugin type "${type}"`);
  const input = JSON.stringify(conf);
  // `ip netns exec` so the plugin's host side is the node; the config goes through a file on stdin.
  const confFile = join(host.stateDir, `.stdin-${pod.containerID}-${type}.json`);
  writeFileSync(confFile, input);
  try {
    const r = await run(['sh', '-c', `exec ip netns exec "$0" "$1" < "$2"`, host.ns.name, join(CNI_BIN_DIR, type), confFile], {
      check: false,
      env: cniEnv(command, pod),
    });
    if (r.code !== 0) {
      let msg = r.stdout.trim() || r.stderr.trim();
      try {
        const e = JSON.parse(r.stdout) as { msg?: string; details?: string; code?: number };
        msg = `${e.msg ?? ''}${e.details ? `: ${e.details}` : ''} (code ${e.code})`;
      } catch {
        // Not a CNI error object.
      }
      throw new CniError(`${type} ${command} for ${pod.netns.name}/${pod.ifname}: ${msg}`);
    }
    return command === 'ADD' ? (JSON.parse(r.stdout) as CniResult) : undefined;
  } finally {
    rmSync(confFile, { force: true });
  }
}

function flannelPaths(host: CniHost, conf: Obj): { subnetFile: string; dataDir: string; conf: Obj } {
  const dataDir = conf.dataDir ?? join(host.stateDir, 'flannel');
  const ipam = { dataDir: join(host.stateDir, 'networks'), ...(conf.ipam ?? {}) };
  return { subnetFile: conf.subnetFile ?? host.subnetFile, dataDir, conf: { ...conf, ipam } };
}

/** flannel's cmdAdd: delegate built from subnet.env, saved for DEL, then the delegate's ADD. */
async function flannelAdd(host: CniHost, pod: CniPod, conf: Obj): Promise<CniResult> {
  const p = flannelPaths(host, conf);
  const delegate = flannelDelegate(p.conf, p.subnetFile);
  mkdirSync(p.dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(p.dataDir, pod.containerID), JSON.stringify(delegate), { mode: 0o600 });
  return (await execPlugin(host, 'ADD', pod, delegate))!;
}

/** flannel's cmdDel: the saved delegate's DEL; nothing saved means nothing to do. */
async function flannelDel(host: CniHost, pod: CniPod, conf: Obj): Promise<void> {
  const p = flannelPaths(host, conf);
  const file = join(p.dataDir, pod.containerID);
  let saved: string;
  try {
    saved = readFileSync(file, 'utf8');
  } catch {
    return;
  }
  await execPlugin(host, 'DEL', pod, JSON.parse(saved) as Obj);
  rmSync(file, { force: true });
}

/** One plugin's config in a list, as libcni builds it (name and cniVersion from the list). */
function pluginConf(list: Obj, plugin: Obj, prevResult: CniResult | undefined, runtimeConfig: Obj): Obj {
  const conf: Obj = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (prevResult) conf.prevResult = prevResult;
  const caps = Object.keys(plugin.capabilities ?? {}).filter((c) => plugin.capabilities[c] && runtimeConfig[c] !== undefined);
  if (caps.length > 0) conf.runtimeConfig = Object.fromEntries(caps.map((c) => [c, runtimeConfig[c]]));
  return conf;
}

/** The pod's loopback, as the container runtime brings it up (the loopback plugin on `lo`). */
const LOOPBACK = { cniVersion: '0.3.1', name: 'cni-loopback', type: 'loopback' };

/** ADD: loopback, then every plugin of the list in order; returns the list's final result. */
export async function cniAdd(host: CniHost, pod: CniPod, list: Obj, runtimeConfig: Obj = {}): Promise<CniResult> {
  await execPlugin(host, 'ADD', { ...pod, ifname: 'lo' }, LOOPBACK);
  let result: CniResult | undefined;
  for (const plugin of list.plugins as Obj[]) {
    const conf = pluginConf(list, plugin, result, runtimeConfig);
    result = plugin.type === 'flannel' ? await flannelAdd(host, pod, conf) : await execPlugin(host, 'ADD', pod, conf);
  }
  if (!result) throw new CniError('empty plugin list');
  return result;
}

/** DEL: every plugin of the list in reverse order, then loopback. */
export async function cniDel(host: CniHost, pod: CniPod, list: Obj, runtimeConfig: Obj = {}): Promise<void> {
  for (const plugin of [...(list.plugins as Obj[])].reverse()) {
    const conf = pluginConf(list, plugin, undefined, runtimeConfig);
    if (plugin.type === 'flannel') await flannelDel(host, pod, conf);
    else await execPlugin(host, 'DEL', pod, conf);
  }
  await execPlugin(host, 'DEL', { ...pod, ifname: 'lo' }, LOOPBACK);
}

/** The pod's IPv4 address from a result (without the prefix length). */
export function podAddress(result: CniResult): string {
  const ip = result.ips?.find((i) => !i.address.includes(':'));
  if (!ip) throw new CniError(`CNI result has no IPv4 address: ${JSON.stringify(result)}`);
  return ip.address.split('/')[0]!;
}

/** The pod's IPv6 address from a result (without the prefix length), if it got one. */
export function podAddress6(result: CniResult): string | undefined {
  return result.ips?.find((i) => i.address.includes(':'))?.address.split('/')[0];
}
