// The Kubernetes LeaseStore (--kube-subnet-mgr), compatible with flannel's kube subnet manager:
// the subnet is the node's spec.podCIDR(s), peers are the nodes carrying flannel's annotations,
// and our own annotations are patched through the nodes/status subresource (so RBAC needs only
// nodes: get/list/watch, nodes/status: patch, pods: get). Leases never expire here.
//
// @kubernetes/client-node supplies the configuration (in-cluster service account, kubeconfig
// files, every auth plugin); the few HTTP calls and the watch stream are made here directly so that
// errors, timeouts and aborts stay under our control (its Watch cannot be aborted before the
// response headers arrive, and refuses http:// servers).
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../log.js';
import { formatSubnet, isIPv4, parseSubnet, subnetContains, type Subnet } from '../net/cidr.js';
import { parseNetworkConfigText } from './config.js';
import type {
  AcquireOptions,
  Lease,
  LeaseEvent,
  LeaseStore,
  LeaseUpdate,
  NetworkConfig,
  StoreStatus,
  Watcher,
} from './types.js';

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
  /** --set-node-network-unavailable: markNetworkAvailable() sets NetworkUnavailable=False. */
  setNodeNetworkUnavailable: boolean;
  /** This node's name; default env NODE_NAME, else spec.nodeName of pod POD_NAMESPACE/POD_NAME. */
  nodeName?: string;
  /** Environment for NODE_NAME / POD_NAME / POD_NAMESPACE (default process.env). */
  env?: NodeJS.ProcessEnv;
  timing?: Partial<KubeTiming>;
}

/** The annotation keys under a normalised prefix. */
export interface KubeAnnotations {
  prefix: string;
  subnetKubeManaged: string;
  backendType: string;
  backendData: string;
  publicIP: string;
  publicIPOverwrite: string;
  nodePublicIP: string;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/**
 * flannel's rules: at most one "/"; a prefix without "/" gets "/" appended; one with a "/" that
 * ends in neither "/" nor "-" gets "-" appended. The result must form valid annotation keys.
 */
export function kubeAnnotations(prefix: string): KubeAnnotations {
  const slashes = prefix.split('/').length - 1;
  if (slashes > 1) throw new Error(`--kube-annotation-prefix "${prefix}": at most one "/" is allowed`);
  let p = prefix;
  if (slashes === 0) p += '/';
  if (!p.endsWith('/') && !p.endsWith('-')) p += '-';
  const [domain, namePrefix] = p.split('/') as [string, string];
  if (domain.length > 253 || !DNS_SUBDOMAIN.test(domain)) {
    throw new Error(`--kube-annotation-prefix "${prefix}": "${domain}" is not a DNS subdomain (lower case letters, digits, "-" and ".")`);
  }
  const key = (name: string): string => {
    const full = namePrefix + name;
    if (full.length > 63 || !NAME_PART.test(full)) {
      throw new Error(`--kube-annotation-prefix "${prefix}": annotation name "${full}" is invalid (at most 63 characters of [A-Za-z0-9-_.])`);
    }
    return `${domain}/${full}`;
  };
  return {
    prefix: p,
    subnetKubeManaged: key('kube-subnet-manager'),
    backendType: key('backend-type'),
    backendData: key('backend-data'),
    publicIP: key('public-ip'),
    publicIPOverwrite: key('public-ip-overwrite'),
    nodePublicIP: key('node-public-ip'),
  };
}

/** An error answer from the API server, with its Status reason. */
export class KubeApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The minimal Node shape felt reads (raw JSON from the API). */
export interface KubeNode {
  metadata: { name: string; resourceVersion?: string; annotations?: Record<string, string> };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { conditions?: Array<Record<string, unknown>> };
}

function asNode(v: unknown): KubeNode | undefined {
  if (!isObj(v) || !isObj(v.metadata) || typeof v.metadata.name !== 'string') return undefined;
  return v as unknown as KubeNode;
}

/** The node's IPv4 pod CIDR: the v4 entry of spec.podCIDRs, else spec.podCIDR. */
export function nodePodCIDR(node: KubeNode): Subnet | undefined {
  const candidates = [...(Array.isArray(node.spec?.podCIDRs) ? node.spec!.podCIDRs : []), node.spec?.podCIDR];
  for (const c of candidates) {
    if (typeof c !== 'string' || !c.includes('.')) continue;
    try {
      return parseSubnet(c);
    } catch {
      // Not IPv4; try the next one.
    }
  }
  return undefined;
}

/** A peer lease from a node, or why it is not one. Only managed nodes with a podCIDR qualify. */
export function nodeToLease(node: KubeNode, keys: KubeAnnotations): { lease?: Lease; reason?: string } {
  const ann = node.metadata.annotations ?? {};
  if (ann[keys.subnetKubeManaged] !== 'true') return { reason: 'not managed (no kube-subnet-manager annotation)' };
  const subnet = nodePodCIDR(node);
  if (!subnet) return { reason: 'no IPv4 pod CIDR' };
  const publicIP = ann[keys.publicIP];
  if (publicIP === undefined || !isIPv4(publicIP)) return { reason: `public-ip annotation ${JSON.stringify(publicIP ?? null)} is not an IPv4 address` };
  const rawData = ann[keys.backendData];
  let backendData: unknown = rawData ?? null;
  if (rawData !== undefined) {
    try {
      backendData = JSON.parse(rawData);
    } catch {
      // Kept as the raw string: it is only shown on the debug endpoint.
    }
  }
  return {
    lease: {
      subnet,
      publicIP,
      source: { kind: 'kube', node: node.metadata.name, resourceVersion: node.metadata.resourceVersion },
      attrs: { PublicIP: publicIP, BackendType: ann[keys.backendType] ?? '', BackendData: backendData },
    },
  };
}

/** What makes two leases of one node different for the data path (flannel's update filter). */
function leaseKey(l: Lease): string {
  return `${formatSubnet(l.subnet)}|${l.publicIP}|${String(l.attrs.BackendType)}|${JSON.stringify(l.attrs.BackendData)}`;
}

const CONDITION_REASON = 'FeltIsUp';
const CONDITION_MESSAGE = 'felt is running on this node';

/** Loads API access: kubeconfig file, else --kube-api-url alone, else the in-cluster service account. */
export function loadKubeConfig(apiUrl: string | undefined, kubeconfigFile: string | undefined, env: NodeJS.ProcessEnv): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigFile) {
    try {
      kc.loadFromFile(kubeconfigFile);
    } catch (err) {
      throw new Error(`cannot load kubeconfig ${kubeconfigFile}: ${(err as Error).message}`);
    }
    if (!kc.getCurrentCluster()) throw new Error(`kubeconfig ${kubeconfigFile}: no current context/cluster`);
  } else if (apiUrl) {
    kc.loadFromClusterAndUser({ name: 'felt', server: apiUrl, skipTLSVerify: false }, { name: 'felt' });
  } else {
    if (!env.KUBERNETES_SERVICE_HOST || !env.KUBERNETES_SERVICE_PORT) {
      throw new Error(
        'no Kubernetes API configured: outside a pod give --kube-api-url or --kubeconfig-file ' +
          '(in a pod, KUBERNETES_SERVICE_HOST/PORT and the service account token are used)',
      );
    }
    kc.loadFromCluster();
  }
  const clusters = kc.getClusters().map((c) => {
    const server = apiUrl && c.name === kc.getCurrentCluster()?.name ? apiUrl : c.server;
    // TLS settings mean nothing for plain http; client-node refuses http unless told to skip them.
    return { ...c, server, skipTLSVerify: c.skipTLSVerify || server.startsWith('http:') };
  });
  try {
    new URL(kc.getCurrentCluster()!.server);
  } catch {
    throw new Error(`invalid Kubernetes API server URL "${kc.getCurrentCluster()!.server}"`);
  }
  kc.loadFromOptions({ clusters, users: kc.getUsers(), contexts: kc.getContexts(), currentContext: kc.getCurrentContext() });
  return kc;
}

interface ApiResponse {
  status: number;
  body: unknown;
}

/** The few API calls felt makes, over node:http(s) with client-node's auth and TLS settings. */
class KubeApi {
  readonly server: string;

  constructor(
    private readonly kc: KubeConfig,
    private readonly timeoutMs: number,
  ) {
    this.server = kc.getCurrentCluster()!.server.replace(/\/+$/, '');
  }

  private async open(method: string, path: string, headers: Record<string, string>, signal: AbortSignal): Promise<http.ClientRequest> {
    const opts: https.RequestOptions = { headers: {} };
    await this.kc.applyToHTTPSOptions(opts);
    const url = new URL(this.server + path);
    const mod = url.protocol === 'https:' ? https : http;
    return mod.request(url, { ...opts, method, signal, headers: { ...(opts.headers as Record<string, string>), Accept: 'application/json', ...headers } });
  }

  /** One request; a non-2xx answer becomes a KubeApiError with the Status message. */
  async call(method: string, path: string, body?: unknown, contentType?: string): Promise<unknown> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {};
    if (payload !== undefined) {
      headers['Content-Type'] = contentType ?? 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(payload));
    }
    const req = await this.open(method, path, headers, signal);
    const res = await new Promise<ApiResponse>((resolve, reject) => {
      req.on('error', (err) => reject(signal.aborted ? new Error(`${method} ${path}: timed out after ${this.timeoutMs} ms`) : err));
      req.on('response', (r) => {
        let text = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => (text += c));
        r.on('error', reject);
        r.on('end', () => {
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // Not JSON (a proxy's error page): kept as text for the message.
          }
          resolve({ status: r.statusCode ?? 0, body: parsed });
        });
      });
      req.end(payload);
    });
    if (res.status < 200 || res.status > 299) throw statusError(res.status, res.body, `${method} ${path}`);
    return res.body;
  }

  /**
   * A watch stream: calls onOpen once the server accepts it, onEvent per JSON line; resolves when
   * the stream ends (server timeout, drop, abort). A non-200 answer rejects with a KubeApiError;
   * an exception from onEvent ends the stream and rejects with it.
   */
  async watch(path: string, onOpen: () => void, onEvent: (ev: Obj) => void, signal: AbortSignal): Promise<void> {
    const req = await this.open('GET', path, {}, signal);
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        if (err !== undefined && !signal.aborted) reject(err);
        else resolve();
        req.destroy();
      };
      req.on('error', (err) => finish(err));
      req.on('response', (r) => {
        r.setEncoding('utf8');
        r.on('error', (err) => finish(err));
        if (r.statusCode !== 200) {
          let text = '';
          r.on('data', (c: string) => (text += c));
          r.on('end', () => {
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              // Kept as text.
            }
            finish(statusError(r.statusCode ?? 0, parsed, `watch ${path}`));
          });
          return;
        }
        onOpen();
        let buf = '';
        r.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while (!settled && (nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            try {
              const ev: unknown = JSON.parse(line);
              if (isObj(ev)) onEvent(ev);
            } catch (err) {
              finish(err instanceof SyntaxError ? new Error(`watch ${path}: unparsable event ${line.slice(0, 120)}`) : err);
            }
          }
        });
        r.on('end', () => finish());
        r.on('close', () => finish());
      });
      req.end();
    });
  }
}

function statusError(code: number, body: unknown, what: string): KubeApiError {
  const reason = isObj(body) && typeof body.reason === 'string' ? body.reason : String(code);
  const message = isObj(body) && typeof body.message === 'string' ? body.message : typeof body === 'string' ? body.slice(0, 200) : '';
  let hint = '';
  if (code === 401) hint = ' (check the credentials: service account token or kubeconfig)';
  if (code === 403) hint = ' (check the ClusterRole: nodes get/list/watch, nodes/status patch, pods get)';
  return new KubeApiError(code, reason, `${what}: ${code} ${reason}: ${message}${hint}`);
}

/** Errors not worth retrying: the request itself is wrong or not allowed. */
function permanent(err: unknown): boolean {
  return err instanceof KubeApiError && [400, 401, 403, 404, 405, 415, 422].includes(err.code);
}

/** An error retrying cannot fix (the agent's start-up retry loop gives up on `fatal`). */
function fatal(message: string): Error {
  return Object.assign(new Error(message), { fatal: true });
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class KubeLeaseStore implements LeaseStore {
  readonly annotations: KubeAnnotations;
  private readonly api: KubeApi;
  private readonly env: NodeJS.ProcessEnv;
  private readonly timing: KubeTiming;
  private config?: NetworkConfig;
  private resolvedNodeName?: string;
  private readonly watchers = new Set<{ stop(): Promise<void> }>();
  private readonly sleepers = new Set<() => void>();
  private closed = false;
  private readonly stats: StoreStatus = { backend: 'kube', connected: false, relists: 0, errors: 0, renewals: 0, renewalFailures: 0 };
  /** Peers already warned about, so a bad annotation is logged once per value. */
  private readonly warned = new Set<string>();

  constructor(
    private readonly options: KubeLeaseStoreOptions,
    private readonly log: Logger,
  ) {
    this.env = options.env ?? process.env;
    this.timing = { ...DEFAULT_KUBE_TIMING, ...options.timing };
    this.annotations = kubeAnnotations(options.annotationPrefix);
    this.api = new KubeApi(loadKubeConfig(options.apiUrl, options.kubeconfigFile, this.env), this.timing.requestTimeoutMs);
  }

  /** The API server in use (for logs). */
  get server(): string {
    return this.api.server;
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    if (this.config) return this.config;
    let text: string;
    try {
      text = await readFile(this.options.netConfigPath, 'utf8');
    } catch (err) {
      throw new Error(`cannot read the network config ${this.options.netConfigPath} (--net-config-path): ${errMessage(err)}`);
    }
    try {
      this.config = parseNetworkConfigText(text, { applySubnetDefaults: false });
    } catch (err) {
      throw fatal(`${this.options.netConfigPath}: ${errMessage(err)}`);
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
      throw fatal('cannot tell which node this is: set NODE_NAME (downward API spec.nodeName), or POD_NAME and POD_NAMESPACE');
    }
    let body: unknown;
    try {
      body = await this.api.call('GET', `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod)}`);
    } catch (err) {
      const message = `cannot find this node's name from pod ${ns}/${pod}: ${errMessage(err)}`;
      throw permanent(err) ? fatal(message) : new Error(message);
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
  async getNodePublicIP(): Promise<string | undefined> {
    const name = await this.nodeName();
    const value = (await this.getNode(name)).metadata.annotations?.[this.annotations.nodePublicIP];
    if (value === undefined || value === '') return undefined;
    if (!isIPv4(value)) throw new Error(`node "${name}": annotation ${this.annotations.nodePublicIP}="${value}" is not an IPv4 address`);
    return value;
  }

  async acquire(publicIP: string, options: AcquireOptions = {}): Promise<Lease> {
    if (!isIPv4(publicIP)) throw fatal(`acquire: public IP "${publicIP}" is not an IPv4 address`);
    const config = await this.getNetworkConfig();
    const name = await this.nodeName();
    const node = await this.waitForPodCIDR(name);
    const subnet = nodePodCIDR(node)!;
    if (!subnetContains(config.network, subnet)) {
      throw fatal(
        `node "${name}" pod cidr ${formatSubnet(subnet)} is not inside the network ${formatSubnet(config.network)} of ${this.options.netConfigPath}`,
      );
    }
    if (options.previousSubnet && formatSubnet(options.previousSubnet) !== formatSubnet(subnet)) {
      this.log.info({ previous: formatSubnet(options.previousSubnet), subnet: formatSubnet(subnet) }, 'the node pod CIDR differs from the subnet in the subnet file');
    }

    const ann = node.metadata.annotations ?? {};
    let advertised = publicIP;
    const overwrite = ann[this.annotations.publicIPOverwrite];
    if (overwrite !== undefined && overwrite !== '') {
      if (!isIPv4(overwrite)) {
        throw fatal(`node "${name}": annotation ${this.annotations.publicIPOverwrite}="${overwrite}" is not an IPv4 address`);
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
    const changes = Object.fromEntries(Object.entries(desired).filter(([k, v]) => ann[k] !== v));
    let current = node;
    if (Object.keys(changes).length > 0) {
      const patched = await this.retry(`patch the annotations of node "${name}"`, () =>
        this.api.call('PATCH', `/api/v1/nodes/${encodeURIComponent(name)}/status`, { metadata: { annotations: changes } }, 'application/strategic-merge-patch+json'),
      );
      current = asNode(patched) ?? current;
      this.log.info({ node: name, annotations: changes }, 'node annotations updated');
    }
    const lease = nodeToLease(current, this.annotations).lease;
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
  async markNetworkAvailable(): Promise<void> {
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
      this.stats.lastError = errMessage(err);
      this.log.error({ node: name, err: errMessage(err) }, 'could not set the NetworkUnavailable=False node condition');
    }
  }

  async list(): Promise<{ leases: Lease[]; revision: string }> {
    const { leases, revision } = await this.listNodes();
    return { leases: [...leases.values()], revision };
  }

  watch(onUpdate: (update: LeaseUpdate) => void): Watcher {
    let stopped = false;
    let abort: AbortController | undefined;
    let loopDone: Promise<void> = Promise.resolve();
    let resyncTimer: NodeJS.Timeout | undefined;
    /** The leases this watcher has delivered, by node name. */
    let cache = new Map<string, Lease>();
    let rv = '';

    const deliver = (update: LeaseUpdate): void => {
      try {
        onUpdate(update);
      } catch (err) {
        this.log.error({ err: errMessage(err) }, 'lease update handler threw');
      }
    };

    const onEvent = (ev: Obj): 'gone' | undefined => {
      const type = ev.type;
      if (type === 'ERROR') {
        const status = isObj(ev.object) ? ev.object : {};
        if (status.code === 410) return 'gone';
        throw statusError(typeof status.code === 'number' ? status.code : 500, status, 'watch nodes');
      }
      const node = asNode(ev.object);
      if (!node) return undefined;
      if (node.metadata.resourceVersion) rv = node.metadata.resourceVersion;
      this.stats.lastRevision = rv;
      if (type === 'BOOKMARK') return undefined;
      const name = node.metadata.name;
      const before = cache.get(name);
      const after = type === 'DELETED' ? undefined : this.peerLease(node);
      const events: LeaseEvent[] = [];
      if (before && (!after || formatSubnet(before.subnet) !== formatSubnet(after.subnet))) {
        events.push({ type: 'removed', lease: before });
      }
      if (after && (!before || leaseKey(before) !== leaseKey(after))) events.push({ type: 'added', lease: after });
      if (after) cache.set(name, after);
      else cache.delete(name);
      if (events.length > 0) deliver({ kind: 'events', events, revision: rv });
      return undefined;
    };

    const relist = async (): Promise<void> => {
      const listed = await this.listNodes();
      cache = listed.leases;
      rv = listed.revision;
      this.stats.relists++;
      this.stats.lastRelistAt = Date.now();
      this.stats.lastRevision = rv;
      this.stats.connected = true;
      deliver({ kind: 'snapshot', leases: [...cache.values()], revision: rv });
    };

    const loop = async (): Promise<void> => {
      let backoff = this.timing.backoffMinMs;
      let needList = true;
      /** 410s in a row: a fresh list that is already too old must not spin. */
      let goneStreak = 0;
      while (!stopped && !this.closed) {
        try {
          if (needList) {
            await relist();
            needList = false;
          }
          const timeoutSeconds = Math.floor(this.timing.watchTimeoutSeconds * (1 + Math.random()));
          const path = `/api/v1/nodes?watch=true&resourceVersion=${encodeURIComponent(rv)}&allowWatchBookmarks=true&timeoutSeconds=${timeoutSeconds}`;
          const ctl = new AbortController();
          abort = ctl;
          // A half-open connection delivers nothing and never ends: give up a minute after the
          // server should have closed the stream itself.
          const watchdog = setTimeout(() => ctl.abort(), (timeoutSeconds + 60) * 1000);
          const started = Date.now();
          let received = 0;
          let gone = false;
          try {
            await this.api.watch(
              path,
              () => {
                this.stats.connected = true;
              },
              (ev) => {
                if (onEvent(ev) === 'gone') {
                  gone = true;
                  ctl.abort();
                } else {
                  received++;
                  goneStreak = 0;
                }
              },
              ctl.signal,
            );
          } finally {
            clearTimeout(watchdog);
          }
          if (stopped) break;
          if (gone) {
            this.log.info({ resourceVersion: rv }, 'node watch expired (410 Gone): relisting');
            needList = true;
            if (++goneStreak > 1) await this.pause(backoff, (b) => (backoff = b));
            continue;
          }
          // A stream that ends at once with nothing in it is a failure, not a timeout: back off.
          if (received === 0 && Date.now() - started < 1000) throw new Error('watch stream ended immediately');
          backoff = this.timing.backoffMinMs;
        } catch (err) {
          if (stopped) break;
          if (err instanceof KubeApiError && (err.code === 410 || err.reason === 'Expired' || err.reason === 'Gone')) {
            needList = true;
            if (++goneStreak > 1) await this.pause(backoff, (b) => (backoff = b));
            continue;
          }
          this.stats.errors++;
          this.stats.connected = false;
          this.stats.lastError = errMessage(err);
          this.log.warn({ err: errMessage(err), retryInMs: backoff }, needList ? 'listing nodes failed' : 'node watch failed');
          await this.pause(backoff, (b) => (backoff = b));
        }
      }
    };

    loopDone = loop();
    if (this.timing.resyncMs > 0) {
      resyncTimer = setInterval(() => {
        if (this.stats.relists > 0 && !stopped) deliver({ kind: 'snapshot', leases: [...cache.values()], revision: rv });
      }, this.timing.resyncMs);
      resyncTimer.unref();
    }
    const handle = {
      stop: async (): Promise<void> => {
        stopped = true;
        clearInterval(resyncTimer);
        abort?.abort();
        for (const wake of this.sleepers) wake();
        await loopDone;
        this.watchers.delete(handle);
      },
    };
    this.watchers.add(handle);
    return handle;
  }

  status(): StoreStatus {
    return { ...this.stats };
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.sleepers) wake();
    await Promise.all([...this.watchers].map((w) => w.stop()));
  }

  // ---- internals ---------------------------------------------------------------------------

  private peerLease(node: KubeNode): Lease | undefined {
    const { lease, reason } = nodeToLease(node, this.annotations);
    const managed = node.metadata.annotations?.[this.annotations.subnetKubeManaged] === 'true';
    if (!lease && managed && reason) {
      const key = `${node.metadata.name}|${reason}`;
      if (!this.warned.has(key)) {
        if (this.warned.size >= 10_000) this.warned.clear();
        this.warned.add(key);
        this.log.warn({ node: node.metadata.name, reason }, 'managed node ignored');
      }
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

  /** Polls the node until it exists with an IPv4 podCIDR (bounded, like flannel's 30 s). */
  private async waitForPodCIDR(name: string): Promise<KubeNode> {
    const deadline = Date.now() + this.timing.acquireTimeoutMs;
    for (;;) {
      let why: string;
      try {
        const node = await this.getNode(name);
        if (nodePodCIDR(node)) return node;
        why = `node "${name}" pod cidr not assigned`;
      } catch (err) {
        if (err instanceof KubeApiError && err.code === 404) why = `node "${name}" not found`;
        else if (permanent(err)) throw fatal(errMessage(err));
        else why = errMessage(err);
      }
      if (Date.now() + this.timing.retryIntervalMs > deadline || this.closed) {
        const hint = why.endsWith('pod cidr not assigned')
          ? ' (the controller manager assigns it with --allocate-node-cidrs --cluster-cidr; kubeadm with --pod-network-cidr)'
          : '';
        throw new Error(`${why}${hint}`);
      }
      this.log.info({ node: name, reason: why }, 'waiting for the node pod CIDR');
      await this.sleep(this.timing.retryIntervalMs);
    }
  }

  /** Retries transient failures every retryIntervalMs for up to patchTimeoutMs. */
  private async retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.timing.patchTimeoutMs;
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (permanent(err)) throw fatal(`cannot ${what}: ${errMessage(err)}`);
        if (Date.now() + this.timing.retryIntervalMs > deadline || this.closed) {
          throw new Error(`cannot ${what}: ${errMessage(err)}`);
        }
        this.log.warn({ err: errMessage(err) }, `cannot ${what}; retrying`);
        await this.sleep(this.timing.retryIntervalMs);
      }
    }
  }

  /** Sleeps about `backoff` (with jitter) and hands back the doubled, capped next backoff. */
  private async pause(backoff: number, next: (b: number) => void): Promise<void> {
    await this.sleep(backoff * (0.75 + Math.random() / 2));
    next(Math.min(backoff * 2, this.timing.backoffMaxMs));
  }

  /** A sleep that stop()/close() cut short. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }
}
