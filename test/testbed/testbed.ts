// The testbed: a hub namespace with a bridge (the underlay 192.168.77.0/24, and/or fd77::/64 with
// option `underlay`), node namespaces plugged into it, optionally etcd inside the hub, and pod
// namespaces on a per-node `cni0` bridge: wired by the real CNI plugins from subnet.env (option
// `cni`, see cni.ts), or by hand as the CNI bridge plugin would build them; pods get an IPv6
// address too when the node's lease has an IPv6 subnet. Everything is torn down by destroy(),
// also when create() fails halfway. Plain Node (no vitest): reused by bench/ and scripts/.
import { mkdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { formatIPv6, parseSubnet6 } from '../../src/net/ip6.js';
import { cniAdd, cniDel, FLANNEL_CONFLIST, podAddress, podAddress6, type CniHost } from './cni.js';
import { startEtcd } from './etcd.js';
import { Netns, ping, registerExitCleanup, runPrefix, type PingOptions, type PingResult } from './netns.js';

export const UNDERLAY_PREFIX = '192.168.77';
export const HUB_IP = `${UNDERLAY_PREFIX}.1`;
export const UNDERLAY_LEN = 24;
export const DEFAULT_NETWORK = '10.244.0.0/16';
export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';
/** The IPv6 underlay: the hub is fd77::1, node i fd77::(10+i) (written in decimal digits, as the IPv4 plan). */
export const UNDERLAY6_PREFIX = 'fd77::';
export const HUB_IP6 = `${UNDERLAY6_PREFIX}1`;
export const UNDERLAY6_LEN = 64;

/** Address families of the node interfaces: IPv4 only (the default), both, or IPv6 only. */
export type UnderlayFamily = 'ipv4' | 'dual' | 'ipv6';
/** Node i gets 192.168.77.(10+i); the /24 leaves room for this many. */
const MAX_NODES = 244;

export type EtcdHandle = Awaited<ReturnType<typeof startEtcd>>;

export interface TestbedOptions {
  nodes: number;
  /** Build pod namespaces once a node's lease is known (see ensurePods; startAgent calls it). */
  pods?: boolean;
  /** Pods per node when `pods` is set (default 1). */
  podsPerNode?: number;
  /**
   * Wire pods with the real CNI plugins (flannel's delegate to bridge + host-local, then portmap)
   * from the node's subnet.env at `<workDir>/<node>/subnet.env` (where startAgent has felt write it),
   * instead of by hand.
   */
  cni?: boolean;
  /** Start etcd inside the hub namespace and write the network config. */
  etcd?: boolean;
  /** Namespace name prefix; default a fresh `felt-<6 hex>`. */
  prefix?: string;
  /** The value written to `<etcdPrefix>/config` (default udp backend on 10.244.0.0/16). */
  networkConfig?: Record<string, unknown>;
  etcdPrefix?: string;
  /**
   * Underlay families (default 'ipv4'). 'dual' adds fd77::/64 beside 192.168.77.0/24; 'ipv6' leaves
   * the node interfaces without an IPv4 address, and etcd then listens on the hub's fd77::1.
   */
  underlay?: UnderlayFamily;
}

export interface Pod {
  /** e.g. n1p1 */
  name: string;
  ns: Netns;
  /** Pod address (no prefix length), e.g. 10.244.5.2; on an IPv6-only overlay its IPv6 address (= ip6). */
  ip: string;
  /** The pod's IPv6 address (no prefix length) when the node's lease has an IPv6 subnet. */
  ip6?: string;
  node: TestbedNode;
  /** Set when the pod was wired by the CNI plugins (its container ID for DEL). */
  cniContainerID?: string;
}

export interface TestbedNode {
  /** 1-based */
  index: number;
  /** e.g. n1 (the namespace is `<prefix>-n1`) */
  name: string;
  ns: Netns;
  /** 192.168.77.(10+index); on an IPv6-only underlay the IPv6 address (the node has no other). */
  underlayIP: string;
  /** 192.168.77.(10+index), unless the underlay is IPv6 only. */
  underlayIPv4?: string;
  /** fd77::(10+index), when the underlay has IPv6. */
  underlayIPv6?: string;
  /** The lease subnet the pods were built for, e.g. 10.244.5.0/24 (set by ensurePods). */
  podSubnet?: string;
  /** The lease's IPv6 subnet the pods were built for, e.g. fc00:0:0:5::/64 (set by ensurePods). */
  podSubnet6?: string;
  pods: Pod[];
}

type Cleanup = () => Promise<void> | void;

export class Testbed {
  readonly nodes: TestbedNode[] = [];
  /** etcd server handle (clientURL for agents, unixURL for this process), when requested. */
  etcdServer?: EtcdHandle;
  /** etcd client of the test process, over the unix socket. */
  etcd?: Etcd3;
  readonly etcdPrefix: string;
  readonly underlay: UnderlayFamily;
  private readonly cleanups: Cleanup[] = [];
  private destroyed = false;
  private hubNs?: Netns;
  private readonly unregisterExitCleanup: () => void;

  private constructor(
    readonly prefix: string,
    /** Scratch directory for this run (agent state, sockets); removed by destroy(). */
    readonly workDir: string,
    readonly options: TestbedOptions,
  ) {
    this.etcdPrefix = options.etcdPrefix ?? DEFAULT_ETCD_PREFIX;
    this.underlay = options.underlay ?? 'ipv4';
    // Namespaces and processes are handled by netns.ts on exit; the scratch directory here.
    this.unregisterExitCleanup = registerExitCleanup(() => rmSync(workDir, { recursive: true, force: true }));
  }

  static async create(options: TestbedOptions): Promise<Testbed> {
    if (!Number.isInteger(options.nodes) || options.nodes < 0 || options.nodes > MAX_NODES) {
      throw new Error(`Testbed: nodes must be an integer in 0..${MAX_NODES}, got ${options.nodes}`);
    }
    const prefix = options.prefix ?? runPrefix();
    const workDir = await mkdtemp(join(tmpdir(), `${prefix}-`));
    const tb = new Testbed(prefix, workDir, options);
    try {
      await tb.createHub();
      for (let i = 0; i < options.nodes; i++) await tb.addNode();
      if (options.etcd) await tb.startEtcd();
      return tb;
    } catch (err) {
      await tb.destroy().catch(() => undefined);
      throw err;
    }
  }

  /** The hub namespace: the underlay bridge, 192.168.77.1, and etcd when requested. */
  get hub(): Netns {
    if (!this.hubNs) throw new Error('testbed has no hub namespace');
    return this.hubNs;
  }

  /** The etcd client URL agents in node namespaces use. */
  get etcdClientURL(): string {
    if (!this.etcdServer) throw new Error('testbed was created without etcd');
    return this.etcdServer.clientURL;
  }

  /** The etcd client; throws when the testbed has no etcd. */
  get etcdClient(): Etcd3 {
    if (!this.etcd) throw new Error('testbed was created without etcd');
    return this.etcd;
  }

  node(nameOrIndex: string | number): TestbedNode {
    const n = this.nodes.find((x) => x.name === nameOrIndex || x.index === nameOrIndex);
    if (!n) throw new Error(`no node ${nameOrIndex} in testbed ${this.prefix}`);
    return n;
  }

  /** Registers a teardown step; destroy() runs them newest first, before deleting namespaces. */
  onDestroy(fn: Cleanup): void {
    this.cleanups.push(fn);
  }

  get hasIPv4Underlay(): boolean {
    return this.underlay !== 'ipv6';
  }

  get hasIPv6Underlay(): boolean {
    return this.underlay !== 'ipv4';
  }

  private async createHub(): Promise<void> {
    this.hubNs = await Netns.create(`${this.prefix}-ul`);
    if (this.hasIPv6Underlay) await noDad(this.hub);
    await this.hub.ip(['link', 'add', 'br0', 'type', 'bridge']);
    if (this.hasIPv4Underlay) await this.hub.ip(['addr', 'add', `${HUB_IP}/${UNDERLAY_LEN}`, 'dev', 'br0']);
    if (this.hasIPv6Underlay) await this.hub.ip(['addr', 'add', `${HUB_IP6}/${UNDERLAY6_LEN}`, 'dev', 'br0', 'nodad']);
    await this.hub.ip(['link', 'set', 'br0', 'up']);
  }

  /** Adds one node namespace with `eth0` 192.168.77.(10+i)/24 and/or fd77::(10+i)/64 plugged into the hub bridge. */
  async addNode(): Promise<TestbedNode> {
    const index = this.nodes.length + 1;
    if (index > MAX_NODES) throw new Error(`Testbed: at most ${MAX_NODES} nodes`);
    const name = `n${index}`;
    const ns = await Netns.create(`${this.prefix}-${name}`);
    const v4 = this.hasIPv4Underlay ? `${UNDERLAY_PREFIX}.${10 + index}` : undefined;
    const v6 = this.hasIPv6Underlay ? `${UNDERLAY6_PREFIX}${10 + index}` : undefined;
    const node: TestbedNode = { index, name, ns, underlayIP: (v4 ?? v6)!, underlayIPv4: v4, underlayIPv6: v6, pods: [] };
    this.nodes.push(node);
    if (v6) await noDad(ns);
    // The hub end is named after the node so `ip -n <hub> link` reads naturally.
    await ns.ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', name, 'netns', this.hub.name]);
    await this.hub.ip(['link', 'set', name, 'master', 'br0']);
    await this.hub.ip(['link', 'set', name, 'up']);
    if (v4) await ns.ip(['addr', 'add', `${v4}/${UNDERLAY_LEN}`, 'dev', 'eth0']);
    if (v6) await ns.ip(['addr', 'add', `${v6}/${UNDERLAY6_LEN}`, 'dev', 'eth0', 'nodad']);
    await ns.ip(['link', 'set', 'eth0', 'up']);
    return node;
  }

  private async startEtcd(): Promise<void> {
    // On an IPv6-only underlay the agents can only reach the hub over IPv6.
    this.etcdServer = await startEtcd({ netns: this.hub, clientHost: this.hasIPv4Underlay ? HUB_IP : HUB_IP6 });
    this.etcd = new Etcd3({ hosts: this.etcdServer.unixURL });
    const config = this.options.networkConfig ?? { Network: DEFAULT_NETWORK, Backend: { Type: 'udp' } };
    await this.etcd.put(`${this.etcdPrefix}/config`).value(JSON.stringify(config));
  }

  /**
   * Builds the node's pods for its lease subnet (e.g. "10.244.5.0/24" or "10.244.5.1/24"), as the
   * CNI bridge plugin would: `cni0` with .1 in the node, pod namespaces with eth0 .2, .3, ... and a
   * default route via .1, IPv4 forwarding on in the node. With `leaseSubnet6` (e.g. "fc00:0:0:5::/64")
   * the same in IPv6: ::1 on cni0, ::2, ::3, ... in the pods, IPv6 forwarding on. Idempotent for the
   * same subnets; different subnets rebuild them.
   */
  /** `leaseSubnet` undefined: an IPv6-only overlay (then `leaseSubnet6` is set); pods get only IPv6. */
  async ensurePods(node: TestbedNode, leaseSubnet: string | undefined, count = this.options.podsPerNode ?? 1, leaseSubnet6?: string): Promise<Pod[]> {
    if (this.options.cni) return this.ensureCniPods(node, leaseSubnet, count, leaseSubnet6);
    const v4 = leaseSubnet === undefined ? undefined : splitSubnet(leaseSubnet);
    const subnet = v4 ? `${v4.base}.0/${v4.len}` : undefined;
    const v6 = leaseSubnet6 === undefined ? undefined : splitSubnet6(leaseSubnet6);
    if (!v4 && !v6) throw new Error(`${node.name}: ensurePods needs an IPv4 or an IPv6 lease subnet`);
    // The key the pods were built for: the IPv4 subnet, or the IPv6 one on an IPv6-only overlay.
    const built = subnet ?? v6!.subnet;
    if (node.podSubnet === built && node.podSubnet6 === v6?.subnet && node.pods.length >= count) return node.pods;
    if (node.podSubnet !== undefined && (node.podSubnet !== built || node.podSubnet6 !== v6?.subnet)) await this.removePods(node);

    if (node.podSubnet === undefined) {
      if (v6) await noDad(node.ns);
      await node.ns.ip(['link', 'add', 'cni0', 'type', 'bridge']);
      if (v4) await node.ns.ip(['addr', 'add', `${v4.base}.1/${v4.len}`, 'dev', 'cni0']);
      if (v6) await node.ns.ip(['addr', 'add', `${v6.host(1)}/${v6.len}`, 'dev', 'cni0', 'nodad']);
      await node.ns.ip(['link', 'set', 'cni0', 'up']);
      await node.ns.sysctl('net.ipv4.ip_forward', '1');
      if (v6) await node.ns.sysctl('net.ipv6.conf.all.forwarding', '1');
      node.podSubnet = built;
      node.podSubnet6 = v6?.subnet;
    }
    for (let p = node.pods.length + 1; p <= count; p++) {
      const name = `${node.name}p${p}`;
      const ns = await Netns.create(`${this.prefix}-${name}`);
      const pod: Pod = { name, ns, ip: v4 ? `${v4.base}.${1 + p}` : v6!.host(1 + p), ip6: v6?.host(1 + p), node };
      node.pods.push(pod);
      if (v6) await noDad(ns);
      await ns.ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `veth${p}`, 'netns', node.ns.name]);
      await node.ns.ip(['link', 'set', `veth${p}`, 'master', 'cni0']);
      await node.ns.ip(['link', 'set', `veth${p}`, 'up']);
      if (v4) await ns.ip(['addr', 'add', `${pod.ip}/${v4.len}`, 'dev', 'eth0']);
      if (v6) await ns.ip(['addr', 'add', `${pod.ip6}/${v6.len}`, 'dev', 'eth0', 'nodad']);
      await ns.ip(['link', 'set', 'eth0', 'up']);
      if (v4) await ns.ip(['route', 'add', 'default', 'via', `${v4.base}.1`]);
      if (v6) await ns.ip(['-6', 'route', 'add', 'default', 'via', v6.host(1)]);
    }
    return node.pods;
  }

  /** The node's CNI state: plugins run in its namespace, its files under `<workDir>/<node>/`. */
  cniHost(node: TestbedNode): CniHost {
    return { ns: node.ns, subnetFile: join(this.workDir, node.name, 'subnet.env'), stateDir: join(this.workDir, node.name, 'cni') };
  }

  /**
   * ensurePods with the CNI plugins: ADD for each new pod, after a DEL of all when a subnet moved.
   * The IPv6 address comes from subnet.env as on a real node; `leaseSubnet6` only says one is due.
   */
  private async ensureCniPods(node: TestbedNode, leaseSubnet: string | undefined, count: number, leaseSubnet6?: string): Promise<Pod[]> {
    const v4 = leaseSubnet === undefined ? undefined : splitSubnet(leaseSubnet);
    const subnet6 = leaseSubnet6 === undefined ? undefined : splitSubnet6(leaseSubnet6).subnet;
    const subnet = v4 ? `${v4.base}.0/${v4.len}` : subnet6;
    if (node.podSubnet !== undefined && (node.podSubnet !== subnet || node.podSubnet6 !== subnet6)) await this.removePods(node);
    node.podSubnet = subnet;
    node.podSubnet6 = subnet6;
    const host = this.cniHost(node);
    mkdirSync(host.stateDir, { recursive: true });
    // No duplicate address detection on cni0 (the bridge plugin adds the gateway) nor in the pods:
    // otherwise every IPv6 address stays tentative for a second or more.
    if (subnet6) await noDad(node.ns);
    for (let p = node.pods.length + 1; p <= count; p++) {
      const name = `${node.name}p${p}`;
      const ns = await Netns.create(`${this.prefix}-${name}`);
      const pod: Pod = { name, ns, ip: '', node, cniContainerID: `${this.prefix}-${name}` };
      node.pods.push(pod);
      if (subnet6) await noDad(ns);
      const result = await cniAdd(host, { containerID: pod.cniContainerID!, netns: ns, ifname: 'eth0' }, FLANNEL_CONFLIST);
      pod.ip6 = podAddress6(result);
      // An IPv6-only overlay: the pod's only address is its IPv6 one.
      pod.ip = v4 ? podAddress(result) : pod.ip6 ?? '';
      if (subnet6 && !pod.ip6) throw new Error(`${name}: the lease has ${subnet6} but CNI gave the pod no IPv6 address (subnet.env without FLANNEL_IPV6_SUBNET?)`);
    }
    return node.pods;
  }

  /** Deletes the node's pods (CNI DEL first for CNI-wired ones) and its cni0 bridge. */
  async removePods(node: TestbedNode): Promise<void> {
    for (const pod of node.pods) {
      if (pod.cniContainerID && !node.ns.isDeleted) {
        await cniDel(this.cniHost(node), { containerID: pod.cniContainerID, netns: pod.ns, ifname: 'eth0' }, FLANNEL_CONFLIST);
      }
      await pod.ns.delete();
    }
    node.pods = [];
    if (node.podSubnet !== undefined && !node.ns.isDeleted) {
      await node.ns.ip(['link', 'del', 'cni0']).catch(() => undefined);
    }
    node.podSubnet = undefined;
    node.podSubnet6 = undefined;
  }

  /** Every pod of every node, in node order. */
  get pods(): Pod[] {
    return this.nodes.flatMap((n) => n.pods);
  }

  /** Pings from a node, pod or namespace; see netns.ping. */
  ping(from: TestbedNode | Pod | Netns, target: string, opts?: PingOptions): Promise<PingResult> {
    return ping(from instanceof Netns ? from : from.ns, target, opts);
  }

  /**
   * Stops everything: registered cleanups (agents) newest first, the etcd client and server, then
   * every namespace (pods, nodes, hub). Never throws halfway: it keeps going and reports at the end.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    const errors: unknown[] = [];
    const attempt = async (fn: () => Promise<unknown> | unknown): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    };
    for (const fn of this.cleanups.splice(0).reverse()) await attempt(fn);
    if (this.etcd) await attempt(() => this.etcd!.close());
    if (this.etcdServer) await attempt(() => this.etcdServer!.stop());
    for (const node of this.nodes) for (const pod of node.pods) await attempt(() => pod.ns.delete());
    for (const node of this.nodes) await attempt(() => node.ns.delete());
    if (this.hubNs) await attempt(() => this.hubNs!.delete());
    await attempt(() => rm(this.workDir, { recursive: true, force: true }));
    this.unregisterExitCleanup();
    if (errors.length > 0) {
      throw new AggregateError(errors, `testbed ${this.prefix}: ${errors.length} error(s) during destroy`);
    }
  }
}

/** "10.244.5.1/24" -> { base: "10.244.5", len: 24 }; the testbed only deals in /24 leases. */
function splitSubnet(text: string): { base: string; len: number } {
  const m = /^(\d+\.\d+\.\d+)\.\d+\/(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`Testbed: cannot read subnet "${text}"`);
  const len = Number(m[2]);
  if (len !== 24) throw new Error(`Testbed: pods need a /24 lease, got ${text}`);
  return { base: m[1]!, len };
}

/** "fc00:0:0:5::/64" (host bits allowed) -> its network text, prefix length and a host-address maker. */
function splitSubnet6(text: string): { subnet: string; len: number; host: (n: number) => string } {
  const s = parseSubnet6(text.trim());
  if (s.prefixLen > 120) throw new Error(`Testbed: pods need an IPv6 lease of /120 or larger, got ${text}`);
  return { subnet: `${formatIPv6(s.ip)}/${s.prefixLen}`, len: s.prefixLen, host: (n) => formatIPv6(s.ip + BigInt(n)) };
}

/** Addresses added later in `ns` skip duplicate address detection (link-local ones included). */
async function noDad(ns: Netns): Promise<void> {
  await ns.sysctl('net.ipv6.conf.all.accept_dad', '0');
  await ns.sysctl('net.ipv6.conf.default.accept_dad', '0');
}
