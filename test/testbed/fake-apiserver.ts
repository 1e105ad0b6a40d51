// A fake Kubernetes API server for felt's Kubernetes mode (--kube-subnet-mgr).
//
// Why it exists: no kube-apiserver can be installed on this machine (no binaries, no container
// runtime, no network access to fetch one), yet felt's KubeLeaseStore must be tested over real
// HTTP against the real wire protocol. So this server implements, faithfully, exactly the calls
// felt makes and nothing else; anything outside that subset gets an explicit error rather than a
// silently wrong answer.
//
// What it covers (core/v1 only, JSON only):
//   GET   /api/v1/nodes                      NodeList with metadata.resourceVersion (items without
//                                            kind/apiVersion, as the real server sends them)
//   GET   /api/v1/nodes?watch=true&resourceVersion=N[&allowWatchBookmarks=true][&timeoutSeconds=S]
//         JSON lines {type: ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, object}. Events after N from the
//         retained history; N older than the history -> HTTP 200 and one ERROR event carrying a
//         410 Expired Status, then end of stream (what the real watch cache does). No N, or "0":
//         synthetic ADDED events for every node, then live events.
//   GET   /api/v1/nodes/{name}[/status]
//   PATCH /api/v1/nodes/{name}[/status]     strategic-merge-patch+json (Node's patch metadata:
//         status.conditions and status.addresses merged by "type", spec.podCIDRs and
//         metadata.finalizers merged as sets, $patch: replace|delete, $retainKeys,
//         $deleteFromPrimitiveList, $setElementOrder accepted) and merge-patch+json (RFC 7386).
//         The status subresource keeps spec, the main resource keeps status (as nodeStatusStrategy
//         does); metadata.resourceVersion in a patch is a precondition (409 Conflict); a patch that
//         changes nothing does not bump the resourceVersion and emits no event.
//   GET   /api/v1/namespaces/{ns}/pods/{name}
//   Errors are Status objects (404 NotFound, 401 Unauthorized, 409 Conflict, 410 Expired, 415,
//   400 BadRequest, 405 MethodNotAllowed). resourceVersions are one global, increasing counter.
//   Optional bearer-token authentication (--token), TLS (--tls-cert/--tls-key: https://), and RBAC
//   (--rbac FILE: the token's user and a ClusterRole's rules): every authenticated request is
//   authorized as kube-apiserver's RBAC authorizer does (verb from method and query, resource and
//   subresource from the path, apiGroups/resources/verbs/resourceNames/nonResourceURLs of each rule);
//   a denied request gets the real 403 Forbidden Status. Every decision is logged (authzLog).
//
// Test controls: add/update/delete nodes, add pods, compact the watch history, drop or hold watch
// streams, send bookmarks, and observe every PATCH. In-process: the FakeApiServer methods.
// Standalone (so agents inside testbed namespaces can reach it):
//   node dist/test/testbed/fake-apiserver.js --listen 192.168.77.1:6443 --control unix:/path [--token T]
// prints one JSON line {"listening": url, "control": path} when ready; the test process drives it
// over the unix socket with FakeApiControl (same method names, async).
// Plain Node: must not import vitest.
// Over 450 lines on purpose: one faithful stand-in for the API (nodes, pods, watch, patch, TLS, RBAC) is easier to trust read whole.
import { randomUUID } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { readFileSync, rmSync } from 'node:fs';
import type { AddressInfo, Socket } from 'node:net';
import { pathToFileURL } from 'node:url';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface RecordedPatch {
  seq: number;
  /** e.g. /api/v1/nodes/n1/status */
  path: string;
  name: string;
  subresource: '' | 'status';
  contentType: string;
  body: Json;
  /** HTTP status returned. */
  status: number;
  /** Whether the object changed (and its resourceVersion was bumped). */
  changed: boolean;
}

export interface RequestRecord {
  method: string;
  /** Path and query as received. */
  url: string;
  status: number;
}

/** One rule of a (Cluster)Role, as in rbac.authorization.k8s.io/v1 PolicyRule. */
export interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
  resourceNames?: string[];
  nonResourceURLs?: string[];
}

export interface RbacOptions {
  /** The user the bearer token authenticates as, e.g. system:serviceaccount:kube-felt:felt */
  user: string;
  /** The rules bound to that user (the ClusterRole's). */
  rules: PolicyRule[];
}

/** What a request asks for, as kube-apiserver's RequestInfo sees it. */
export interface RequestAttributes {
  verb: string;
  /** Resource requests only. */
  apiGroup?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** Non-resource requests only (e.g. /version). */
  path?: string;
}

export interface AuthzDecision extends RequestAttributes {
  allowed: boolean;
  /** Index of the first rule that allowed it. */
  rule?: number;
}

export interface FakeApiServerOptions {
  /** host:port or {host, port}; default 127.0.0.1 on a free port. */
  listen?: string | { host: string; port: number };
  /** Require `Authorization: Bearer <token>`. */
  token?: string;
  /** Serve https with this certificate and key (PEM). */
  tls?: { cert: string; key: string };
  /** Authorize every request against these rules (needs `token`). */
  rbac?: RbacOptions;
  /** With allowWatchBookmarks, send a BOOKMARK this often (the real server: about a minute). */
  bookmarkIntervalMs?: number;
  /** How many events the watch history keeps before older ones count as compacted. */
  historyLimit?: number;
  /** The first resourceVersion (default 1000); a "restored" server continues from a higher one. */
  startResourceVersion?: number;
}

interface WatchEvent {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: JsonObject;
}

interface WatchStream {
  res: ServerResponse;
  bookmarks: boolean;
  timers: NodeJS.Timeout[];
}

const STRATEGIC = 'application/strategic-merge-patch+json';
const MERGE = 'application/merge-patch+json';

/** Lists merged by a key (Node's patchMergeKey); other object lists are replaced. */
const MERGE_KEYS: Record<string, string> = {
  'status.conditions': 'type',
  'status.addresses': 'type',
  'metadata.ownerReferences': 'uid',
  'metadata.managedFields': 'manager',
};
/** Primitive lists with patchStrategy "merge" (set union). */
const SET_LISTS = new Set(['spec.podCIDRs', 'metadata.finalizers']);

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: JsonObject,
  ) {
    super(message);
  }

  status(): JsonObject {
    const s: JsonObject = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      code: this.code,
    };
    if (this.details) s.details = this.details;
    return s;
  }
}

const notFound = (kind: string, name: string): ApiError =>
  new ApiError(404, 'NotFound', `${kind} "${name}" not found`, { name, kind });

function clone<T extends Json>(v: T): T {
  return structuredClone(v);
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function deepEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => k in b && deepEqual(a[k], b[k]));
  }
  return false;
}

/** RFC 7386 JSON merge patch. */
export function jsonMergePatch(target: Json | undefined, patch: Json): Json {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? clone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = jsonMergePatch(out[k], v);
  }
  return out;
}

/** Kubernetes strategic merge patch, for the fields Node declares (see MERGE_KEYS, SET_LISTS). */
export function strategicMergePatch(target: Json | undefined, patch: Json, path = ''): Json | undefined {
  if (!isObject(patch)) return clone(patch);
  const directive = patch['$patch'];
  if (directive === 'delete') return undefined;
  if (directive === 'replace') {
    const rest = clone(patch);
    delete rest['$patch'];
    return rest;
  }
  if (directive !== undefined) throw new ApiError(400, 'BadRequest', `unknown patch directive $patch: ${JSON.stringify(directive)} at ${path || '<root>'}`);
  let out: JsonObject = isObject(target) ? clone(target) : {};
  const retain = patch['$retainKeys'];
  if (retain !== undefined) {
    if (!Array.isArray(retain) || !retain.every((k) => typeof k === 'string')) {
      throw new ApiError(400, 'BadRequest', `$retainKeys must be a list of strings at ${path || '<root>'}`);
    }
    out = Object.fromEntries(Object.entries(out).filter(([k]) => (retain as string[]).includes(k)));
  }
  for (const [key, value] of Object.entries(patch)) {
    if (key === '$retainKeys' || key.startsWith('$setElementOrder/')) continue;
    if (key.startsWith('$deleteFromPrimitiveList/')) {
      const field = key.slice('$deleteFromPrimitiveList/'.length);
      if (!Array.isArray(value)) throw new ApiError(400, 'BadRequest', `${key} must be a list`);
      const list = out[field];
      if (Array.isArray(list)) out[field] = list.filter((x) => !value.some((d) => deepEqual(d, x)));
      continue;
    }
    if (key.startsWith('$')) throw new ApiError(400, 'BadRequest', `unknown patch directive ${key} at ${path || '<root>'}`);
    const childPath = path ? `${path}.${key}` : key;
    if (value === null) {
      delete out[key];
    } else if (Array.isArray(value) && MERGE_KEYS[childPath]) {
      out[key] = mergeKeyedList(out[key], value, MERGE_KEYS[childPath]!, childPath);
    } else if (Array.isArray(value) && SET_LISTS.has(childPath)) {
      const base = Array.isArray(out[key]) ? clone(out[key] as Json[]) : [];
      for (const v of value) if (!base.some((b) => deepEqual(b, v))) base.push(clone(v));
      out[key] = base;
    } else if (isObject(value)) {
      const merged = strategicMergePatch(out[key], value, childPath);
      if (merged === undefined) delete out[key];
      else out[key] = merged;
    } else {
      out[key] = clone(value);
    }
  }
  return out;
}

function mergeKeyedList(target: Json | undefined, patch: Json[], mergeKey: string, path: string): Json[] {
  // A {"$patch": "replace"} element replaces the whole list with the other elements.
  if (patch.some((p) => isObject(p) && p['$patch'] === 'replace')) {
    return patch.filter((p) => !(isObject(p) && p['$patch'] === 'replace')).map((p) => clone(p));
  }
  const out: Json[] = Array.isArray(target) ? clone(target) : [];
  for (const item of patch) {
    if (!isObject(item) || !(mergeKey in item)) {
      throw new ApiError(400, 'BadRequest', `${path}: element ${JSON.stringify(item)} does not contain declared merge key: ${mergeKey}`);
    }
    const idx = out.findIndex((o) => isObject(o) && deepEqual(o[mergeKey], item[mergeKey]));
    if (item['$patch'] === 'delete') {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (idx >= 0) out[idx] = strategicMergePatch(out[idx], item, `${path}[]`) ?? {};
    else out.push(strategicMergePatch(undefined, item, `${path}[]`) ?? {});
  }
  return out;
}

function parseListen(listen: FakeApiServerOptions['listen']): { host: string; port: number } {
  if (listen === undefined) return { host: '127.0.0.1', port: 0 };
  if (typeof listen !== 'string') return listen;
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen: expected host:port, got "${listen}"`);
  return { host: m[1]!, port: Number(m[2]) };
}

function checkStringMap(obj: JsonObject, field: 'annotations' | 'labels'): void {
  const meta = obj.metadata;
  if (!isObject(meta) || meta[field] === undefined) return;
  const map = meta[field];
  if (!isObject(map)) throw new ApiError(400, 'BadRequest', `metadata.${field} must be an object of strings`);
  for (const [k, v] of Object.entries(map)) {
    if (typeof v !== 'string') {
      throw new ApiError(400, 'BadRequest', `metadata.${field}["${k}"]: cannot unmarshal ${JSON.stringify(v)} into a string`);
    }
  }
}

const VERBS: Record<string, string> = { POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };

/** kube-apiserver's RequestInfo for a method and URL (core group /api/v1 and named groups /apis/g/v). */
export function requestAttributes(method: string, rawUrl: string): RequestAttributes {
  const url = new URL(rawUrl, 'http://fake');
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let rest: string[];
  let apiGroup: string;
  if (parts[0] === 'api' && parts.length >= 2) {
    apiGroup = '';
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 3) {
    apiGroup = parts[1]!;
    rest = parts.slice(3);
  } else {
    return { verb: method === 'GET' || method === 'HEAD' ? 'get' : (VERBS[method] ?? method.toLowerCase()), path: url.pathname };
  }
  if (rest.length === 0) return { verb: 'get', path: url.pathname };
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resource, name, subresource] = rest;
  const watch = ['true', '1'].includes(url.searchParams.get('watch') ?? '');
  let verb: string;
  if (method === 'GET' || method === 'HEAD') verb = watch ? 'watch' : name === undefined ? 'list' : 'get';
  else if (method === 'DELETE' && name === undefined) verb = 'deletecollection';
  else verb = VERBS[method] ?? method.toLowerCase();
  const attrs: RequestAttributes = { verb, apiGroup, resource: resource! };
  if (subresource !== undefined) attrs.subresource = subresource;
  if (namespace !== undefined) attrs.namespace = namespace;
  if (name !== undefined) attrs.name = name;
  return attrs;
}

/** The RBAC authorizer's rule match (rbac/v1 semantics, including "*" and resourceNames). */
export function ruleAllows(rule: PolicyRule, a: RequestAttributes): boolean {
  const has = (list: string[] | undefined, v: string): boolean => (list ?? []).includes(v) || (list ?? []).includes('*');
  if (!has(rule.verbs, a.verb)) return false;
  if (a.path !== undefined) {
    return (rule.nonResourceURLs ?? []).some((u) => u === '*' || u === a.path || (u.endsWith('*') && a.path!.startsWith(u.slice(0, -1))));
  }
  if (!has(rule.apiGroups, a.apiGroup!)) return false;
  const combined = a.subresource ? `${a.resource}/${a.subresource}` : a.resource!;
  const resources = rule.resources ?? [];
  const resourceOk = resources.includes('*') || resources.includes(combined) || (a.subresource !== undefined && resources.includes(`*/${a.subresource}`));
  if (!resourceOk) return false;
  if (rule.resourceNames && rule.resourceNames.length > 0) return a.name !== undefined && rule.resourceNames.includes(a.name);
  return true;
}

/** The 403 Status kube-apiserver sends (same message shape, reason and details). */
export function forbidden(user: string, a: RequestAttributes): ApiError {
  if (a.path !== undefined) return new ApiError(403, 'Forbidden', `forbidden: User "${user}" cannot ${a.verb} path "${a.path}"`);
  const res = a.subresource ? `${a.resource}/${a.subresource}` : a.resource!;
  const what = a.name !== undefined ? `${a.resource} "${a.name}"` : a.resource!;
  const scope = a.namespace !== undefined ? `in the namespace "${a.namespace}"` : 'at the cluster scope';
  const details: JsonObject = { kind: a.resource! };
  if (a.name !== undefined) details.name = a.name;
  if (a.apiGroup) details.group = a.apiGroup;
  return new ApiError(403, 'Forbidden', `${what} is forbidden: User "${user}" cannot ${a.verb} resource "${res}" in API group "${a.apiGroup}" ${scope}`, details);
}

export class FakeApiServer {
  readonly patches: RecordedPatch[] = [];
  /** Every RBAC decision, in order (with the rbac option). */
  readonly authz: AuthzDecision[] = [];
  readonly requests: RequestRecord[] = [];
  private rv = 1000;
  private readonly nodes = new Map<string, JsonObject>();
  private readonly pods = new Map<string, JsonObject>();
  private history: WatchEvent[] = [];
  /** Watches from a resourceVersion below this are too old (410). */
  private oldestServable = 0;
  private readonly watches = new Set<WatchStream>();
  private readonly heldWatches: Array<() => void> = [];
  private watchGateOpen = true;
  private readonly sockets = new Set<Socket>();
  private patchSeq = 0;
  private closed = false;
  url = '';

  private constructor(
    private readonly server: Server,
    private readonly options: FakeApiServerOptions,
  ) {}

  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    if (options.rbac && options.token === undefined) throw new Error('fake-apiserver: rbac needs a token to authenticate the user');
    const server = options.tls ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }) : createServer();
    const fake = new FakeApiServer(server, options);
    fake.rv = options.startResourceVersion ?? 1000;
    fake.oldestServable = fake.rv;
    server.on('request', (req, res) => fake.handle(req, res));
    server.on('connection', (s) => {
      fake.sockets.add(s);
      s.once('close', () => fake.sockets.delete(s));
    });
    const { host, port } = parseListen(options.listen);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address() as AddressInfo;
    fake.url = `${options.tls ? 'https' : 'http'}://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
    return fake;
  }

  // ---- test controls -----------------------------------------------------------------------

  /** The current (latest) resourceVersion. */
  resourceVersion(): string {
    return String(this.rv);
  }

  /** Creates a node; `node` is a partial v1 Node (metadata.name required). */
  addNode(node: JsonObject): JsonObject {
    const meta = isObject(node.metadata) ? node.metadata : {};
    const name = meta.name;
    if (typeof name !== 'string' || name === '') throw new ApiError(422, 'Invalid', 'node metadata.name is required');
    if (this.nodes.has(name)) throw new ApiError(409, 'AlreadyExists', `nodes "${name}" already exists`, { name, kind: 'nodes' });
    checkStringMap(node, 'annotations');
    checkStringMap(node, 'labels');
    const obj: JsonObject = {
      kind: 'Node',
      apiVersion: 'v1',
      ...clone(node),
      metadata: { ...clone(meta), name, uid: randomUUID(), creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z') },
    };
    if (!isObject(obj.spec)) obj.spec = {};
    if (!isObject(obj.status)) obj.status = {};
    return this.store(name, obj, 'ADDED');
  }

  /** Applies a JSON merge patch (RFC 7386) to a node as an out-of-band change (kubelet, admin). */
  updateNode(name: string, mergePatch: JsonObject): JsonObject {
    const current = this.nodes.get(name);
    if (!current) throw notFound('nodes', name);
    const next = jsonMergePatch(current, mergePatch) as JsonObject;
    checkStringMap(next, 'annotations');
    checkStringMap(next, 'labels');
    return this.commit(name, current, next).object;
  }

  deleteNode(name: string): void {
    const current = this.nodes.get(name);
    if (!current) throw notFound('nodes', name);
    this.nodes.delete(name);
    const gone = clone(current);
    (gone.metadata as JsonObject).resourceVersion = String(++this.rv);
    this.emit({ rv: this.rv, type: 'DELETED', object: gone });
  }

  getNode(name: string): JsonObject | undefined {
    const n = this.nodes.get(name);
    return n ? clone(n) : undefined;
  }

  listNodes(): JsonObject[] {
    return [...this.nodes.values()].map((n) => clone(n));
  }

  addPod(pod: JsonObject): JsonObject {
    const meta = isObject(pod.metadata) ? pod.metadata : {};
    const name = meta.name;
    const namespace = meta.namespace;
    if (typeof name !== 'string' || typeof namespace !== 'string') {
      throw new ApiError(422, 'Invalid', 'pod metadata.name and metadata.namespace are required');
    }
    const obj: JsonObject = {
      kind: 'Pod',
      apiVersion: 'v1',
      ...clone(pod),
      metadata: { ...clone(meta), uid: randomUUID(), resourceVersion: String(++this.rv) },
    };
    this.pods.set(`${namespace}/${name}`, obj);
    return clone(obj);
  }

  /** Forgets the whole watch history: a watch from any resourceVersion before now gets 410. */
  compact(): void {
    this.history = [];
    this.oldestServable = this.rv;
  }

  /** Ends every open watch stream (as an apiserver restart or a load balancer would). */
  dropWatches(): number {
    const n = this.watches.size;
    for (const w of [...this.watches]) this.endWatch(w, true);
    return n;
  }

  /**
   * Closed: new watch requests wait (no response) until the gate opens again, so a test can change
   * and compact history while a client is between watches.
   */
  setWatchGate(open: boolean): void {
    this.watchGateOpen = open;
    if (open) for (const resume of this.heldWatches.splice(0)) resume();
  }

  /** Number of watch requests currently held by a closed gate. */
  heldWatchCount(): number {
    return this.heldWatches.length;
  }

  /** Number of open watch streams. */
  watchCount(): number {
    return this.watches.size;
  }

  /** Sends a BOOKMARK to every watch that asked for them. */
  sendBookmarks(): void {
    for (const w of this.watches) if (w.bookmarks) this.writeBookmark(w);
  }

  clearPatches(): void {
    this.patches.length = 0;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.dropWatches();
    for (const resume of this.heldWatches.splice(0)) resume();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  // ---- state -------------------------------------------------------------------------------

  private store(name: string, obj: JsonObject, type: 'ADDED' | 'MODIFIED'): JsonObject {
    (obj.metadata as JsonObject).resourceVersion = String(++this.rv);
    this.nodes.set(name, obj);
    this.emit({ rv: this.rv, type, object: clone(obj) });
    return clone(obj);
  }

  /** Stores `next` unless it equals `current` (ignoring resourceVersion): a no-op changes nothing. */
  private commit(name: string, current: JsonObject, next: JsonObject): { object: JsonObject; changed: boolean } {
    const meta = next.metadata as JsonObject;
    const curMeta = current.metadata as JsonObject;
    // Identity fields are immutable.
    meta.name = curMeta.name!;
    meta.uid = curMeta.uid!;
    meta.creationTimestamp = curMeta.creationTimestamp!;
    meta.resourceVersion = curMeta.resourceVersion!;
    next.kind = 'Node';
    next.apiVersion = 'v1';
    if (deepEqual(current, next)) return { object: clone(current), changed: false };
    return { object: this.store(name, next, 'MODIFIED'), changed: true };
  }

  private emit(ev: WatchEvent): void {
    this.history.push(ev);
    const limit = this.options.historyLimit ?? 1000;
    while (this.history.length > limit) this.oldestServable = this.history.shift()!.rv;
    for (const w of this.watches) this.writeEvent(w, ev.type, ev.object);
  }

  // ---- HTTP --------------------------------------------------------------------------------

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 3 * 1024 * 1024) chunks.push(c);
    });
    req.on('end', () => {
      try {
        if (size > 3 * 1024 * 1024) throw new ApiError(413, 'RequestEntityTooLarge', 'request body too large');
        this.route(req, res, Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        this.fail(req, res, err);
      }
    });
  }

  private fail(req: IncomingMessage, res: ServerResponse, err: unknown): void {
    const e = err instanceof ApiError ? err : new ApiError(500, 'InternalError', `fake-apiserver: ${(err as Error).message}`);
    this.reply(req, res, e.code, e.status());
  }

  private reply(req: IncomingMessage, res: ServerResponse, status: number, body: Json): void {
    this.requests.push({ method: req.method ?? '', url: req.url ?? '', status });
    if (res.headersSent) {
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private route(req: IncomingMessage, res: ServerResponse, body: string): void {
    if (this.options.token !== undefined && req.headers.authorization !== `Bearer ${this.options.token}`) {
      throw new ApiError(401, 'Unauthorized', 'Unauthorized');
    }
    if (this.options.rbac) {
      const attrs = requestAttributes(req.method ?? 'GET', req.url ?? '/');
      const rule = this.options.rbac.rules.findIndex((r) => ruleAllows(r, attrs));
      this.authz.push({ ...attrs, allowed: rule >= 0, ...(rule >= 0 ? { rule } : {}) });
      if (rule < 0) throw forbidden(this.options.rbac.user, attrs);
    }
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const p = parts.join('/');

    if (p === 'api/v1/nodes') {
      if (method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', `the server does not allow this method on the requested resource`);
      for (const sel of ['fieldSelector', 'labelSelector']) {
        if (url.searchParams.get(sel)) throw new ApiError(400, 'BadRequest', `fake-apiserver: ${sel} is not implemented`);
      }
      const watch = url.searchParams.get('watch');
      if (watch === 'true' || watch === '1') return this.watch(req, res, url.searchParams);
      const items = [...this.nodes.values()].map((n) => {
        const item = clone(n);
        delete item.kind;
        delete item.apiVersion;
        return item;
      });
      return this.reply(req, res, 200, { kind: 'NodeList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items });
    }
    if (parts.length >= 4 && parts.length <= 5 && p.startsWith('api/v1/nodes/')) {
      const name = parts[3]!;
      const sub = parts[4] ?? '';
      if (sub !== '' && sub !== 'status') throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      if (method === 'GET') {
        const node = this.nodes.get(name);
        if (!node) throw notFound('nodes', name);
        return this.reply(req, res, 200, clone(node));
      }
      if (method === 'PATCH') return this.patch(req, res, name, sub, body);
      throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
    }
    if (parts.length === 6 && parts[0] === 'api' && parts[1] === 'v1' && parts[2] === 'namespaces' && parts[4] === 'pods') {
      if (method !== 'GET') throw new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
      const pod = this.pods.get(`${parts[3]}/${parts[5]}`);
      if (!pod) throw notFound('pods', parts[5]!);
      return this.reply(req, res, 200, clone(pod));
    }
    throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
  }

  private patch(req: IncomingMessage, res: ServerResponse, name: string, sub: string, body: string): void {
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim();
    const record: RecordedPatch = {
      seq: ++this.patchSeq,
      path: new URL(req.url ?? '/', 'http://fake').pathname,
      name,
      subresource: sub === 'status' ? 'status' : '',
      contentType,
      body: null,
      status: 0,
      changed: false,
    };
    this.patches.push(record);
    try {
      let patch: Json;
      try {
        patch = JSON.parse(body) as Json;
      } catch (err) {
        throw new ApiError(400, 'BadRequest', `error decoding patch: ${(err as Error).message}`);
      }
      record.body = patch;
      if (contentType !== STRATEGIC && contentType !== MERGE) {
        throw new ApiError(415, 'UnsupportedMediaType', `fake-apiserver: the body of the request was in an unknown format - accepted media types include: ${STRATEGIC}, ${MERGE}`);
      }
      if (!isObject(patch)) throw new ApiError(400, 'BadRequest', 'patch body must be a JSON object');
      const current = this.nodes.get(name);
      if (!current) throw notFound('nodes', name);
      const wantRv = isObject(patch.metadata) ? patch.metadata.resourceVersion : undefined;
      if (wantRv !== undefined && wantRv !== null && wantRv !== (current.metadata as JsonObject).resourceVersion) {
        throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on nodes "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, kind: 'nodes' });
      }
      let next = (contentType === STRATEGIC ? strategicMergePatch(current, patch) : jsonMergePatch(current, patch)) as JsonObject;
      if (!isObject(next)) throw new ApiError(422, 'Invalid', 'patch removed the whole object');
      if (!isObject(next.metadata)) next.metadata = {};
      // nodeStatusStrategy: the status subresource cannot change spec; the main resource cannot change status.
      if (sub === 'status') next.spec = clone(current.spec ?? {});
      else next.status = clone(current.status ?? {});
      checkStringMap(next, 'annotations');
      checkStringMap(next, 'labels');
      if (isObject(next.status) && next.status.conditions !== undefined) {
        const conds = next.status.conditions;
        if (!Array.isArray(conds) || !conds.every((c) => isObject(c) && typeof c.type === 'string' && typeof c.status === 'string')) {
          throw new ApiError(422, 'Invalid', 'status.conditions: every condition needs a string type and status');
        }
      }
      next = next as JsonObject;
      const { object, changed } = this.commit(name, current, next);
      record.status = 200;
      record.changed = changed;
      this.reply(req, res, 200, object);
    } catch (err) {
      record.status = err instanceof ApiError ? err.code : 500;
      throw err;
    }
  }

  private watch(req: IncomingMessage, res: ServerResponse, params: URLSearchParams): void {
    if (!this.watchGateOpen) {
      this.heldWatches.push(() => {
        if (this.closed) res.destroy();
        else this.watch(req, res, params);
      });
      return;
    }
    if (req.socket.destroyed) return; // the client gave up while the request was held
    this.requests.push({ method: req.method ?? '', url: req.url ?? '', status: 200 });
    const rvParam = params.get('resourceVersion') ?? '';
    const w: WatchStream = { res, bookmarks: params.get('allowWatchBookmarks') === 'true', timers: [] };
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    res.on('close', () => this.endWatch(w, false));

    if (rvParam === '' || rvParam === '0') {
      for (const n of this.nodes.values()) this.writeEvent(w, 'ADDED', clone(n));
    } else {
      const from = /^\d+$/.test(rvParam) ? Number(rvParam) : NaN;
      if (Number.isNaN(from)) {
        this.writeEvent(w, 'ERROR', new ApiError(400, 'BadRequest', `invalid resource version: ${rvParam}`).status());
        res.end();
        return;
      }
      if (from < this.oldestServable) {
        this.writeEvent(w, 'ERROR', new ApiError(410, 'Expired', `too old resource version: ${from} (${this.oldestServable})`).status());
        res.end();
        return;
      }
      for (const ev of this.history) if (ev.rv > from) this.writeEvent(w, ev.type, clone(ev.object));
    }
    this.watches.add(w);
    const timeout = Number(params.get('timeoutSeconds') ?? '0');
    if (timeout > 0) w.timers.push(setTimeout(() => this.endWatch(w, false), timeout * 1000));
    if (w.bookmarks) {
      const every = this.options.bookmarkIntervalMs ?? 60_000;
      w.timers.push(setInterval(() => this.writeBookmark(w), every));
    }
  }

  private writeEvent(w: WatchStream, type: string, object: JsonObject): void {
    if (!w.res.writableEnded) w.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  private writeBookmark(w: WatchStream): void {
    this.writeEvent(w, 'BOOKMARK', { kind: 'Node', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) } });
  }

  private endWatch(w: WatchStream, abrupt: boolean): void {
    if (!this.watches.delete(w) && w.res.writableEnded) return;
    for (const t of w.timers) clearTimeout(t);
    if (abrupt) w.res.socket?.destroy();
    else if (!w.res.writableEnded) w.res.end();
  }
}

// ---- control channel (standalone mode) ---------------------------------------------------------

/** Methods callable over the control socket, all mirrored by FakeApiControl. */
const CONTROL_METHODS = [
  'resourceVersion', 'addNode', 'updateNode', 'deleteNode', 'getNode', 'listNodes', 'addPod', 'compact',
  'dropWatches', 'setWatchGate', 'heldWatchCount', 'watchCount', 'sendBookmarks', 'clearPatches',
  'patchLog', 'requestLog', 'authzLog',
] as const;
type ControlMethod = (typeof CONTROL_METHODS)[number];

function callControl(fake: FakeApiServer, method: ControlMethod, args: Json[]): unknown {
  switch (method) {
    case 'patchLog':
      return fake.patches;
    case 'requestLog':
      return fake.requests;
    case 'authzLog':
      return fake.authz;
    default: {
      const fn = (fake as unknown as Record<string, (...a: Json[]) => unknown>)[method]!;
      return fn.apply(fake, args);
    }
  }
}

/** Serves POST /<method> with a JSON array of arguments on a unix socket. */
export async function serveControl(fake: FakeApiServer, socketPath: string): Promise<Server> {
  rmSync(socketPath, { force: true });
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const method = (req.url ?? '/').slice(1) as ControlMethod;
      let status = 200;
      let out: unknown;
      try {
        if (!CONTROL_METHODS.includes(method)) throw new ApiError(404, 'NotFound', `no control method "${method}"`);
        const args = body ? (JSON.parse(body) as Json[]) : [];
        out = { result: callControl(fake, method, args) ?? null };
      } catch (err) {
        status = err instanceof ApiError ? err.code : 500;
        out = { error: (err as Error).message, status: err instanceof ApiError ? err.status() : undefined };
      }
      const text = JSON.stringify(out);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}

/** Drives a standalone fake-apiserver over its control socket. */
export class FakeApiControl {
  constructor(readonly socketPath: string) {}

  private call<T>(method: ControlMethod, ...args: Json[]): Promise<T> {
    const body = JSON.stringify(args);
    return new Promise((resolve, reject) => {
      const req = request(
        { socketPath: this.socketPath, path: `/${method}`, method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }, timeout: 10_000 },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => {
            try {
              const parsed = JSON.parse(text) as { result?: T; error?: string };
              if (res.statusCode !== 200) reject(new Error(`fake-apiserver ${method}: ${parsed.error ?? text}`));
              else resolve(parsed.result as T);
            } catch {
              reject(new Error(`fake-apiserver ${method}: bad reply ${text.slice(0, 200)}`));
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`fake-apiserver ${method}: timed out`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  resourceVersion = (): Promise<string> => this.call('resourceVersion');
  addNode = (node: JsonObject): Promise<JsonObject> => this.call('addNode', node);
  updateNode = (name: string, mergePatch: JsonObject): Promise<JsonObject> => this.call('updateNode', name, mergePatch);
  deleteNode = (name: string): Promise<void> => this.call('deleteNode', name);
  getNode = (name: string): Promise<JsonObject | null> => this.call('getNode', name);
  listNodes = (): Promise<JsonObject[]> => this.call('listNodes');
  addPod = (pod: JsonObject): Promise<JsonObject> => this.call('addPod', pod);
  compact = (): Promise<void> => this.call('compact');
  dropWatches = (): Promise<number> => this.call('dropWatches');
  setWatchGate = (open: boolean): Promise<void> => this.call('setWatchGate', open);
  heldWatchCount = (): Promise<number> => this.call('heldWatchCount');
  watchCount = (): Promise<number> => this.call('watchCount');
  sendBookmarks = (): Promise<void> => this.call('sendBookmarks');
  clearPatches = (): Promise<void> => this.call('clearPatches');
  patches = (): Promise<RecordedPatch[]> => this.call('patchLog');
  requests = (): Promise<RequestRecord[]> => this.call('requestLog');
  authz = (): Promise<AuthzDecision[]> => this.call('authzLog');
}

// ---- standalone entry point ------------------------------------------------------------------

async function main(argv: string[]): Promise<void> {
  const opts: FakeApiServerOptions = {};
  let control = '';
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--listen') opts.listen = value();
    else if (flag === '--control') control = value().replace(/^unix:/, '');
    else if (flag === '--token') opts.token = value();
    else if (flag === '--tls-cert') opts.tls = { key: '', ...opts.tls, cert: readFileSync(value(), 'utf8') };
    else if (flag === '--tls-key') opts.tls = { cert: '', ...opts.tls, key: readFileSync(value(), 'utf8') };
    else if (flag === '--rbac') opts.rbac = JSON.parse(readFileSync(value(), 'utf8')) as RbacOptions;
    else if (flag === '--bookmark-interval-ms') opts.bookmarkIntervalMs = Number(value());
    else if (flag === '--history-limit') opts.historyLimit = Number(value());
    else throw new Error(`unknown flag ${flag} (flags: --listen host:port --control unix:/path [--token T] [--tls-cert F --tls-key F] [--rbac F] [--bookmark-interval-ms N] [--history-limit N])`);
  }
  if (!control) throw new Error('--control unix:/path is required');
  if (opts.tls && (!opts.tls.cert || !opts.tls.key)) throw new Error('--tls-cert and --tls-key go together');
  const fake = await FakeApiServer.start(opts);
  const ctl = await serveControl(fake, control);
  const stop = (): void => {
    ctl.close();
    rmSync(control, { force: true });
    void fake.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  process.stdout.write(`${JSON.stringify({ listening: fake.url, control })}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`fake-apiserver: ${err.message}\n`);
    process.exit(2);
  });
}
