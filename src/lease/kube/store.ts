// The Kubernetes LeaseStore (--kube-subnet-mgr), compatible with flannel's kube subnet manager
// (https://github.com/flannel-io/flannel/blob/master/pkg/subnet/kube/kube.go): the subnet is the
// node's spec.podCIDR(s), peers are the nodes carrying flannel's annotations (annotations.ts), and
// our own annotations are patched through the nodes/status subresource (so RBAC needs only
// nodes: get/list/watch, nodes/status: patch, pods: get). Leases never expire here.
import { readFile } from 'node:fs/promises';
import type { Logger } from '../../log.js';
import { LoggedOnce } from '../../log.js';
import { formatSubnet, isIPv4, subnetContains } from '../../net/cidr.js';
import { formatIPv6, formatSubnet6, isIPv6, parseIPv6, subnet6Contains } from '../../net/ip6.js';
import { errorText, retry } from '../../retry.js';
import { IPV6_TUNNEL_DATA } from '../backend-data.js';
import { parseNetworkConfigText } from '../config.js';
import {
  ConfigError,
  PermanentError,
  isPermanent,
  type AcquireOptions,
  type Lease,
  type LeaseStore,
  type LeaseUpdate,
  type NetworkConfig,
  type StoreStatus,
  type Watcher,
} from '../types.js';
import { asNode, isObj, kubeAnnotations, nodePodCIDR, nodePodCIDR6, nodeToLease, type KubeAnnotations, type KubeNode } from './annotations.js';
import { apiError, KubeApi, loadKubeConfig } from './api.js';
import { KubeWatch } from './watch.js';

export { kubeAnnotations } from './annotations.js';

export interface KubeTiming {
  /** How long acquire() waits for the node and its podCIDR (flannel: 30 s). */
  acquireTimeoutMs: number;
  /** Pause between attempts while acquiring or patching (flannel: 3 s). */
  retryIntervalMs: number;
  /** Give up patching annotations or the node condition after this long (flannel: 30 s). */
  patchTimeoutMs: number;
  /** Watch reconnect backoff, doubled per failure up to the maximum. */
  backoffMinMs: number;
  backoffMaxMs: number;
  /** Re-deliver the cached lease set as a snapshot this often (flannel's informer: 5 min); 0 = never. */
  resyncMs: number;
  /** Server-side watch timeout; each watch asks for a random value in [t, 2t) as client-go does. */
  watchTimeoutSeconds: number;
  /** Timeout of each non-watch request. */
  requestTimeoutMs: number;
}

export const DEFAULT_KUBE_TIMING: KubeTiming = {
  acquireTimeoutMs: 30_000,
  retryIntervalMs: 3_000,
  patchTimeoutMs: 30_000,
  backoffMinMs: 100,
  backoffMaxMs: 5_000,
  resyncMs: 5 * 60_000,
  watchTimeoutSeconds: 300,
  requestTimeoutMs: 30_000,
};

export interface KubeLeaseStoreOptions {
  /** API server URL (--kube-api-url); overrides the kubeconfig's server. */
  apiUrl?: string;
  /** kubeconfig file (--kubeconfig-file). Neither this nor apiUrl: in-cluster config. */
  kubeconfigFile?: string;
  /** --kube-annotation-prefix, normalised as flannel does. */
  annotationPrefix: string;
  /** --net-config-path: net-conf.json. */
  netConfigPath: string;
  /** --set-node-network-unavailable: completeLease() sets NetworkUnavailable=False. */
  setNodeNetworkUnavailable: boolean;
  /** This node's name; default env NODE_NAME, else spec.nodeName of pod POD_NAMESPACE/POD_NAME. */
  nodeName?: string;
  /** Environment for NODE_NAME / POD_NAME / POD_NAMESPACE (default process.env). */
  env?: NodeJS.ProcessEnv;
  timing?: Partial<KubeTiming>;
}

const CONDITION_REASON = 'FeltIsUp';
const CONDITION_MESSAGE = 'felt is running on this node';

export class KubeLeaseStore implements LeaseStore {
  readonly annotations: KubeAnnotations;
  private readonly api: KubeApi;
  private readonly env: NodeJS.ProcessEnv;
  private readonly timing: KubeTiming;
  private config?: NetworkConfig;
  private resolvedNodeName?: string;
  private readonly watchers = new Set<KubeWatch>();
  /** Ends every retry wait at close(). */
  private readonly abort = new AbortController();
  private readonly stats: StoreStatus = { backend: 'kube', connected: false, relists: 0, errors: 0, renewals: 0, renewalFailures: 0 };
  /** Peers already warned about, so a bad annotation is logged once per value. */
  private readonly warned = new LoggedOnce();

  constructor(
    private readonly options: KubeLeaseStoreOptions,
    private readonly log: Logger,
  ) {
    this.env = options.env ?? process.env;
    this.timing = { ...DEFAULT_KUBE_TIMING, ...options.timing };
    this.annotations = kubeAnnotations(options.annotationPrefix);
    this.api = new KubeApi(loadKubeConfig(options.apiUrl, options.kubeconfigFile, this.env), this.timing.requestTimeoutMs);
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    if (this.config) return this.config;
    let text: string;
    try {
      text = await readFile(this.options.netConfigPath, 'utf8');
    } catch (err) {
      throw new Error(`cannot read the network config ${this.options.netConfigPath} (--net-config-path): ${errorText(err)}`);
    }
    try {
      this.config = parseNetworkConfigText(text, { applySubnetDefaults: false });
    } catch (err) {
      throw new ConfigError(`${this.options.netConfigPath}: ${errorText(err)}`);
    }
    return this.config;
  }

  /** This node's name: the option, NODE_NAME, or spec.nodeName of our own pod. */
  async nodeName(): Promise<string> {
    if (this.resolvedNodeName) return this.resolvedNodeName;
    const direct = this.options.nodeName || this.env.NODE_NAME;
    if (direct) return (this.resolvedNodeName = direct);
    const pod = this.env.POD_NAME;
    const ns = this.env.POD_NAMESPACE;
    if (!pod || !ns) {
      throw new PermanentError('cannot tell which node this is: set NODE_NAME (downward API spec.nodeName), or POD_NAME and POD_NAMESPACE');
    }
    let body: unknown;
    try {
      body = await this.api.call('GET', `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod)}`);
    } catch (err) {
      const message = `cannot find this node's name from pod ${ns}/${pod}: ${errorText(err)}`;
      throw isPermanent(err) ? new PermanentError(message) : new Error(message);
    }
    const nodeName = isObj(body) && isObj(body.spec) ? body.spec.nodeName : undefined;
    if (typeof nodeName !== 'string' || nodeName === '') throw new Error(`pod ${ns}/${pod} has no spec.nodeName (not scheduled yet?)`);
    return (this.resolvedNodeName = nodeName);
  }

  async getNode(name: string): Promise<KubeNode> {
    const node = asNode(await this.api.call('GET', `/api/v1/nodes/${encodeURIComponent(name)}`));
    if (!node) throw new Error(`GET node ${name}: the answer is not a Node`);
    return node;
  }

  /**
   * The `<prefix>node-public-ip` annotation of this node, if set: flannel uses it as --public-ip
   * when the flag is empty. Throws when it is set but not an IPv4 address.
   */
  async storedPublicIP(): Promise<string | undefined> {
    const name = await this.nodeName();
    const value = (await this.getNode(name)).metadata.annotations?.[this.annotations.nodePublicIP];
    if (value === undefined || value === '') return undefined;
    if (!isIPv4(value)) throw new PermanentError(`node "${name}": annotation ${this.annotations.nodePublicIP}="${value}" is not an IPv4 address`);
    return value;
  }

  /** The `<prefix>node-public-ipv6` annotation of this node, if set: flannel's stand-in for --public-ipv6. */
  async storedPublicIPv6(): Promise<string | undefined> {
    const name = await this.nodeName();
    const value = (await this.getNode(name)).metadata.annotations?.[this.annotations.nodePublicIPv6];
    if (value === undefined || value === '') return undefined;
    if (!isIPv6(value)) throw new PermanentError(`node "${name}": annotation ${this.annotations.nodePublicIPv6}="${value}" is not an IPv6 address`);
    return formatIPv6(parseIPv6(value));
  }

  async acquire(publicIP: string, options: AcquireOptions = {}): Promise<Lease> {
    if (!isIPv4(publicIP)) throw new PermanentError(`acquire: public IP "${publicIP}" is not an IPv4 address`);
    const config = await this.getNetworkConfig();
    const name = await this.nodeName();
    const node = await this.waitForPodCIDR(name, config.enableIPv4, config.ipv6 !== undefined);
    // An IPv6-only overlay (EnableIPv4 false) leaves the IPv4 pod CIDR, if any, alone.
    const subnet = config.enableIPv4 ? nodePodCIDR(node)! : undefined;
    if (config.enableIPv4 && subnet && !subnetContains(config.network, subnet)) {
      throw new PermanentError(
        `node "${name}" pod cidr ${formatSubnet(subnet)} is not inside the network ${formatSubnet(config.network)} of ${this.options.netConfigPath}`,
      );
    }
    const subnet6 = config.ipv6 ? nodePodCIDR6(node)! : undefined;
    if (config.ipv6 && subnet6 && !subnet6Contains(config.ipv6.network, subnet6)) {
      throw new PermanentError(
        `node "${name}" IPv6 pod cidr ${formatSubnet6(subnet6)} is not inside the IPv6 network ${formatSubnet6(config.ipv6.network)} of ${this.options.netConfigPath}`,
      );
    }
    if (subnet && options.previousSubnet && formatSubnet(options.previousSubnet) !== formatSubnet(subnet)) {
      this.log.info({ previous: formatSubnet(options.previousSubnet), subnet: formatSubnet(subnet) }, 'the node pod CIDR differs from the subnet in the subnet file');
    }

    const ann = node.metadata.annotations ?? {};
    let advertised = publicIP;
    const overwrite = ann[this.annotations.publicIPOverwrite];
    if (overwrite !== undefined && overwrite !== '') {
      if (!isIPv4(overwrite)) {
        throw new PermanentError(`node "${name}": annotation ${this.annotations.publicIPOverwrite}="${overwrite}" is not an IPv4 address`);
      }
      if (overwrite !== publicIP) this.log.info({ publicIP, overwrite }, 'advertising the public-ip-overwrite address');
      advertised = overwrite;
    }
    const desired: Record<string, string> = {
      [this.annotations.subnetKubeManaged]: 'true',
      // What a stock flannel UDP node writes: the UDP backend sets no BackendType or BackendData.
      [this.annotations.backendType]: '',
      [this.annotations.backendData]: 'null',
      [this.annotations.publicIP]: advertised,
    };
    // Dual-stack: felt's UDP backend carries IPv6 (flannel's keeps UDP leases IPv4-only and writes none of
    // these), and says so in backend-v6-data, also when the node has no IPv6 underlay address.
    if (config.ipv6) desired[this.annotations.backendV6Data] = JSON.stringify(IPV6_TUNNEL_DATA);
    if (config.ipv6 && options.publicIPv6 !== undefined) {
      let advertised6 = formatIPv6(parseIPv6(options.publicIPv6));
      const overwrite6 = ann[this.annotations.publicIPv6Overwrite];
      if (overwrite6 !== undefined && overwrite6 !== '') {
        if (!isIPv6(overwrite6)) {
          throw new PermanentError(`node "${name}": annotation ${this.annotations.publicIPv6Overwrite}="${overwrite6}" is not an IPv6 address`);
        }
        if (overwrite6 !== advertised6) this.log.info({ publicIPv6: advertised6, overwrite: overwrite6 }, 'advertising the public-ipv6-overwrite address');
        advertised6 = overwrite6;
      }
      desired[this.annotations.publicIPv6] = advertised6;
    }
    const changes = Object.fromEntries(Object.entries(desired).filter(([k, v]) => ann[k] !== v));
    let current = node;
    if (Object.keys(changes).length > 0) {
      const patched = await this.retry(`patch the annotations of node "${name}"`, () =>
        this.api.call('PATCH', `/api/v1/nodes/${encodeURIComponent(name)}/status`, { metadata: { annotations: changes } }, 'application/strategic-merge-patch+json'),
      );
      current = asNode(patched) ?? current;
      this.log.info({ node: name, annotations: changes }, 'node annotations updated');
    }
    const lease = nodeToLease(current, this.annotations, config.ipv6 !== undefined, config.enableIPv4).lease;
    if (!lease) throw new Error(`node "${name}": annotations did not take effect`);
    return lease;
  }

  /** Kubernetes leases do not expire: nothing to renew. */
  async renew(lease: Lease): Promise<Lease> {
    return lease;
  }

  /**
   * Sets the node condition NetworkUnavailable=False (as flannel's CompleteLease does), unless
   * --set-node-network-unavailable=false. Call once the agent is up. Retries for a while; a
   * failure is logged, not thrown: the network works either way (flannel does the same).
   */
  async completeLease(): Promise<void> {
    if (!this.options.setNodeNetworkUnavailable) return;
    let name = '';
    try {
      name = await this.nodeName();
      await this.retry(`set the NetworkUnavailable condition of node "${name}"`, async () => {
        const node = await this.getNode(name);
        const existing = node.status?.conditions?.find((c) => c.type === 'NetworkUnavailable');
        const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
        // The transition time moves only when the status really changes.
        const transition = existing?.status === 'False' && typeof existing.lastTransitionTime === 'string' ? existing.lastTransitionTime : now;
        const condition = {
          type: 'NetworkUnavailable',
          status: 'False',
          reason: CONDITION_REASON,
          message: CONDITION_MESSAGE,
          lastTransitionTime: transition,
          lastHeartbeatTime: now,
        };
        return this.api.call('PATCH', `/api/v1/nodes/${encodeURIComponent(name)}/status`, { status: { conditions: [condition] } }, 'application/strategic-merge-patch+json');
      });
      this.log.info({ node: name }, 'node condition NetworkUnavailable=False set');
    } catch (err) {
      this.stats.errors++;
      this.stats.lastError = errorText(err);
      this.log.error({ node: name, err: errorText(err) }, 'could not set the NetworkUnavailable=False node condition');
    }
  }

  async list(): Promise<{ leases: Lease[]; revision: string }> {
    // The config says whether the IPv6 halves count; `felt leases` lists even when it is unreadable.
    await this.getNetworkConfig().catch(() => undefined);
    const { leases, revision } = await this.listNodes();
    return { leases: [...leases.values()], revision };
  }

  watch(onUpdate: (update: LeaseUpdate) => void): Watcher {
    const context = {
      api: this.api,
      timing: this.timing,
      log: this.log,
      stats: this.stats,
      peerLease: (node: KubeNode) => this.peerLease(node),
      listNodes: () => this.listNodes(),
    };
    const w = new KubeWatch(context, onUpdate, () => this.watchers.delete(w));
    this.watchers.add(w);
    return w;
  }

  status(): StoreStatus {
    return { ...this.stats };
  }

  async close(): Promise<void> {
    this.abort.abort();
    await Promise.all([...this.watchers].map((w) => w.stop()));
  }

  // ---- internals ---------------------------------------------------------------------------

  private peerLease(node: KubeNode): Lease | undefined {
    const { lease, reason } = nodeToLease(node, this.annotations, this.config?.ipv6 !== undefined, this.config?.enableIPv4 ?? true);
    const managed = node.metadata.annotations?.[this.annotations.subnetKubeManaged] === 'true';
    if (!lease && managed && reason) {
      if (this.warned.first(`${node.metadata.name}|${reason}`)) this.log.warn({ node: node.metadata.name, reason }, 'managed node ignored');
    }
    return lease;
  }

  private async listNodes(): Promise<{ leases: Map<string, Lease>; revision: string }> {
    const body = await this.api.call('GET', '/api/v1/nodes');
    if (!isObj(body) || !Array.isArray(body.items) || !isObj(body.metadata)) throw new Error('GET /api/v1/nodes: the answer is not a NodeList');
    const leases = new Map<string, Lease>();
    for (const item of body.items) {
      const node = asNode(item);
      if (!node) continue;
      const lease = this.peerLease(node);
      if (lease) leases.set(node.metadata.name, lease);
    }
    return { leases, revision: String(body.metadata.resourceVersion ?? '') };
  }

  /** Polls the node until it exists with an IPv4 podCIDR (with `ipv4`) and an IPv6 one (with `ipv6`); bounded, like flannel's 30 s. */
  private async waitForPodCIDR(name: string, ipv4: boolean, ipv6: boolean): Promise<KubeNode> {
    const step = async (): Promise<KubeNode> => {
      let node: KubeNode;
      try {
        node = await this.getNode(name);
      } catch (err) {
        // The kubelet may not have registered the node yet.
        if (apiError(err)?.code === 404) throw new Error(`node "${name}" not found`);
        throw err;
      }
      if (ipv4 && !nodePodCIDR(node)) throw new Error(`node "${name}" pod cidr not assigned`);
      if (ipv6 && !nodePodCIDR6(node)) throw new Error(`node "${name}" IPv6 pod cidr not assigned`);
      return node;
    };
    try {
      return await retry(step, {
        what: 'wait for the node pod CIDR',
        delayMs: () => this.timing.retryIntervalMs,
        deadline: Date.now() + this.timing.acquireTimeoutMs,
        signal: this.abort.signal,
        onRetry: (err) => this.log.info({ node: name, reason: errorText(err) }, 'waiting for the node pod CIDR'),
      });
    } catch (err) {
      if (isPermanent(err)) throw err;
      const why = errorText(err);
      const hint = why.endsWith('pod cidr not assigned')
        ? ' (the controller manager assigns it with --allocate-node-cidrs --cluster-cidr; kubeadm with --pod-network-cidr; dual-stack: an IPv4 and an IPv6 cluster CIDR)'
        : '';
      throw new Error(`${why}${hint}`);
    }
  }

  /** Retries transient failures every retryIntervalMs for up to patchTimeoutMs. */
  private async retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await retry(fn, {
        what,
        delayMs: () => this.timing.retryIntervalMs,
        deadline: Date.now() + this.timing.patchTimeoutMs,
        signal: this.abort.signal,
        onRetry: (err) => this.log.warn({ err: errorText(err) }, `cannot ${what}; retrying`),
      });
    } catch (err) {
      const message = `cannot ${what}: ${errorText(err)}`;
      throw isPermanent(err) ? new PermanentError(message) : new Error(message);
    }
  }
}
