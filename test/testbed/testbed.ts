// The testbed: a hub namespace with a bridge (the underlay 192.168.77.0/24), node namespaces
// plugged into it, optionally etcd inside the hub, and pod namespaces on a per-node `cni0`
// bridge: wired by the real CNI plugins from subnet.env (option `cni`, see cni.ts), or by hand
// as the CNI bridge plugin would build them. Everything is torn down by destroy(),
// also when create() fails halfway. Plain Node (no vitest): reused by bench/ and scripts/.
import { mkdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { cniAdd, cniDel, FLANNEL_CONFLIST, podAddress, type CniHost } from './cni.js';
import { startEtcd } from './etcd.js';
import { Netns, ping, registerExitCleanup, runPrefix, type PingOptions, type PingResult } from './netns.js';

export const UNDERLAY_PREFIX = '192.168.77';
export const HUB_IP = `${UNDERLAY_PREFIX}.1`;
export const UNDERLAY_LEN = 24;
export const DEFAULT_NETWORK = '10.244.0.0/16';
export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';
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
}

export interface Pod {
  /** e.g. n1p1 */
  name: string;
  ns: Netns;
  /** Pod address (no prefix length), e.g. 10.244.5.2 */
  ip: string;
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
  /** 192.168.77.(10+index) */
  underlayIP: string;
  /** The lease subnet the pods were built for, e.g. 10.244.5.0/24 (set by ensurePods). */
  podSubnet?: string;
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

  private async createHub(): Promise<void> {
    this.hubNs = await Netns.create(`${this.prefix}-ul`);
    await this.hub.ip(['link', 'add', 'br0', 'type', 'bridge']);
    await this.hub.ip(['addr', 'add', `${HUB_IP}/${UNDERLAY_LEN}`, 'dev', 'br0']);
    await this.hub.ip(['link', 'set', 'br0', 'up']);
  }

  /** Adds one node namespace with `eth0` 192.168.77.(10+i)/24 plugged into the hub bridge. */
  async addNode(): Promise<TestbedNode> {
    const index = this.nodes.length + 1;
    if (index > MAX_NODES) throw new Error(`Testbed: at most ${MAX_NODES} nodes`);
    const name = `n${index}`;
    const ns = await Netns.create(`${this.prefix}-${name}`);
    const node: TestbedNode = { index, name, ns, underlayIP: `${UNDERLAY_PREFIX}.${10 + index}`, pods: [] };
    this.nodes.push(node);
    // The hub end is named after the node so `ip -n <hub> link` reads naturally.
    await ns.ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', name, 'netns', this.hub.name]);
    await this.hub.ip(['link', 'set', name, 'master', 'br0']);
    await this.hub.ip(['link', 'set', name, 'up']);
    await ns.ip(['addr', 'add', `${node.underlayIP}/${UNDERLAY_LEN}`, 'dev', 'eth0']);
    await ns.ip(['link', 'set', 'eth0', 'up']);
    return node;
  }

  private async startEtcd(): Promise<void> {
    this.etcdServer = await startEtcd({ netns: this.hub, clientHost: HUB_IP });
    this.etcd = new Etcd3({ hosts: this.etcdServer.unixURL });
    const config = this.options.networkConfig ?? { Network: DEFAULT_NETWORK, Backend: { Type: 'udp' } };
    await this.etcd.put(`${this.etcdPrefix}/config`).value(JSON.stringify(config));
  }

  /**
   * Builds the node's pods for its lease subnet (e.g. "10.244.5.0/24" or "10.244.5.1/24"), as the
   * CNI bridge plugin would: `cni0` with .1 in the node, pod namespaces with eth0 .2, .3, ... and a
   * default route via .1, IPv4 forwarding on in the node. Idempotent for the same subnet; a
   * different subnet rebuilds them.
   */
  async ensurePods(node: TestbedNode, leaseSubnet: string, count = this.options.podsPerNode ?? 1): Promise<Pod[]> {
    if (this.options.cni) return this.ensureCniPods(node, leaseSubnet, count);
    const { base, len } = splitSubnet(leaseSubnet);
    const subnet = `${base}.0/${len}`;
    if (node.podSubnet === subnet && node.pods.length >= count) return node.pods;
    if (node.podSubnet !== undefined && node.podSubnet !== subnet) await this.removePods(node);

    if (node.podSubnet === undefined) {
      await node.ns.ip(['link', 'add', 'cni0', 'type', 'bridge']);
      await node.ns.ip(['addr', 'add', `${base}.1/${len}`, 'dev', 'cni0']);
      await node.ns.ip(['link', 'set', 'cni0', 'up']);
      await node.ns.sysctl('net.ipv4.ip_forward', '1');
      node.podSubnet = subnet;
    }
    for (let p = node.pods.length + 1; p <= count; p++) {
      const name = `${node.name}p${p}`;
      const ns = await Netns.create(`${this.prefix}-${name}`);
      const pod: Pod = { name, ns, ip: `${base}.${1 + p}`, node };
      node.pods.push(pod);
      await ns.ip(['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `veth${p}`, 'netns', node.ns.name]);
      await node.ns.ip(['link', 'set', `veth${p}`, 'master', 'cni0']);
      await node.ns.ip(['link', 'set', `veth${p}`, 'up']);
      await ns.ip(['addr', 'add', `${pod.ip}/${len}`, 'dev', 'eth0']);
      await ns.ip(['link', 'set', 'eth0', 'up']);
      await ns.ip(['route', 'add', 'default', 'via', `${base}.1`]);
    }
    return node.pods;
  }

  /** The node's CNI state: plugins run in its namespace, its files under `<workDir>/<node>/`. */
  cniHost(node: TestbedNode): CniHost {
    return { ns: node.ns, subnetFile: join(this.workDir, node.name, 'subnet.env'), stateDir: join(this.workDir, node.name, 'cni') };
  }

  /** ensurePods with the CNI plugins: ADD for each new pod, after a DEL of all when the subnet moved. */
  private async ensureCniPods(node: TestbedNode, leaseSubnet: string, count: number): Promise<Pod[]> {
    const { base, len } = splitSubnet(leaseSubnet);
    const subnet = `${base}.0/${len}`;
    if (node.podSubnet !== undefined && node.podSubnet !== subnet) await this.removePods(node);
    node.podSubnet = subnet;
    const host = this.cniHost(node);
    mkdirSync(host.stateDir, { recursive: true });
    for (let p = node.pods.length + 1; p <= count; p++) {
      const name = `${node.name}p${p}`;
      const ns = await Netns.create(`${this.prefix}-${name}`);
      const pod: Pod = { name, ns, ip: '', node, cniContainerID: `${this.prefix}-${name}` };
      node.pods.push(pod);
      const result = await cniAdd(host, { containerID: pod.cniContainerID!, netns: ns, ifname: 'eth0' }, FLANNEL_CONFLIST);
      pod.ip = podAddress(result);
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
