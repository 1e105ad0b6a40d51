// LeaseStore on etcd v3, drop-in compatible with flannel's layout (reference/flannel-udp-facts.md §2.2-2.6):
//   <prefix>/config                  network config JSON
//   <prefix>/subnets/<a.b.c.d>-<len>  {"PublicIP":"<ip>","PublicIPv6":null}, attached to a TTL'd etcd lease
// Fixes flannel's known problems: a lost creation race is retried (never fatal), every unary call has a
// deadline, the watch resumes after disconnects and relists after compaction with bounded backoff, renewals
// never overwrite another node's lease, and reservations (keys without a lease) stay reservations.
import { readFileSync } from 'node:fs';
import { Etcd3, isRecoverableError, type IDuplexStream, type IKeyValue, type IOptions, type IWatchRequest, type IWatchResponse } from 'etcd3';
import type { Logger } from 'pino';
import { formatIPv4, formatSubnet, parseIPv4, subnetFromKey, subnetsOverlap, subnetToKey, type Subnet } from '../net/cidr.js';
import { countSubnets, isCompatible, pickFreeSubnet } from './allocate.js';
import { ConfigError, parseNetworkConfigText } from './config.js';
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

export interface EtcdStoreOptions {
  /** `http://host:port`, `https://host:port` or `unix:///path`. */
  endpoints: string[];
  /** Key root, flannel's --etcd-prefix (default `/coreos.com/network`). */
  prefix: string;
  keyFile?: string;
  certFile?: string;
  caFile?: string;
  username?: string;
  password?: string;
  /** How long before expiry the agent renews (flannel: 60). Kept here for the agent to read. */
  renewMarginMinutes: number;
  /** TTL of each subnet lease (default 24 h, as flannel). */
  ttlSeconds?: number;
  /** Deadline for each unary etcd call (default 10 s): a dead etcd gives an error instead of a hang. */
  callTimeoutMs?: number;
  /** Random source in [0, 1) for picking a free subnet (tests inject their own). */
  random?: () => number;
}

export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';
export const DEFAULT_LEASE_TTL_SECONDS = 24 * 60 * 60;
const DEFAULT_CALL_TIMEOUT_MS = 10_000;
/** flannel's raceRetries. */
const MAX_ACQUIRE_ATTEMPTS = 10;
/** TimeToLive calls in flight while listing (5,000 leases must list quickly). */
const TTL_LOOKUP_CONCURRENCY = 32;
const WATCH_BACKOFF_MIN_MS = 100;
const WATCH_BACKOFF_MAX_MS = 5_000;
/** A watch that stayed up this long counts as healthy: the next failure starts the backoff afresh. */
const WATCH_HEALTHY_MS = 1_000;
const MAX_WARNED_KEYS = 10_000;

/** No free subnet is left between SubnetMin and SubnetMax. */
export class SubnetsExhaustedError extends Error {
  override name = 'SubnetsExhaustedError';
}

/** renew() found our subnet held by another node: the agent must re-acquire. */
export class LeaseLostError extends Error {
  override name = 'LeaseLostError';
}

/** Exactly what a stock flannel UDP node writes (v0.15+): no BackendType, PublicIPv6 null. */
export function leaseValue(publicIP: string): string {
  return JSON.stringify({ PublicIP: publicIP, PublicIPv6: null });
}

type CallOpts = { deadline: number };
type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

/** A key under <prefix>/subnets/ after parsing: a lease, or why it is not one. */
type ParsedKv = { ok: true; lease: Lease } | { ok: false; subnet?: Subnet; reason: string };

/** What a watch needs from its store (kept narrow so the store's own API stays the LeaseStore one). */
interface WatchContext {
  readonly client: Etcd3;
  /** `<prefix>/subnets/` */
  readonly prefix: string;
  readonly log: Logger;
  listKeys(): Promise<{ leases: Lease[]; revision: string }>;
  fillExpiries(leases: Lease[]): Promise<void>;
  parseKv(kv: IKeyValue): ParsedKv;
  expiries(ids: string[]): Promise<Map<string, number | undefined>>;
  noteError(message: string, err?: unknown): void;
  noteConnected(): void;
  noteSnapshot(revision: string, initial: boolean): void;
  noteRevision(revision: string): void;
}

export class EtcdLeaseStore implements LeaseStore {
  readonly ttlSeconds: number;
  readonly renewMarginMs: number;
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly configKey: string;
  private readonly subnetsPrefix: string;
  private readonly callTimeoutMs: number;
  private readonly random: () => number;
  private readonly watchers = new Set<EtcdWatch>();
  /** etcd leases this instance granted: only these are revoked after a renewal moved the key on. */
  private readonly granted = new Set<string>();
  private readonly warned = new Set<string>();
  /**
   * etcd lease id -> expiry (ms). Leases here are never kept alive (a renewal grants a new one, as in
   * flannel), so an expiry holds until it passes; etcd only ever extends them (leader change). This
   * spares a TimeToLive call per key on every relist: 5,000 calls cost about a second of CPU.
   */
  private readonly expiryCache = new Map<string, number>();
  private closed = false;
  /** The last error that was not etcd3's "circuit breaker is open" (see call()). */
  private lastCause?: string;
  private readonly endpoints: string[];
  private readonly state: StoreStatus = {
    backend: 'etcd',
    connected: false,
    relists: 0,
    errors: 0,
    renewals: 0,
    renewalFailures: 0,
  };

  constructor(
    options: EtcdStoreOptions,
    private readonly log: Logger,
  ) {
    if (options.endpoints.length === 0) throw new Error('etcd: no endpoints given');
    this.endpoints = options.endpoints;
    for (const e of options.endpoints) {
      if (!/^(https?:\/\/[^/]+\/?|unix:\/\/.+)$/.test(e)) {
        throw new Error(`etcd: invalid endpoint "${e}" (expected http://host:port, https://host:port or unix:///path)`);
      }
    }
    this.prefix = normalizePrefix(options.prefix);
    this.configKey = `${this.prefix}/config`;
    this.subnetsPrefix = `${this.prefix}/subnets/`;
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1) {
      throw new Error(`etcd: lease TTL must be a positive whole number of seconds, got ${options.ttlSeconds}`);
    }
    if (!Number.isFinite(options.renewMarginMinutes) || options.renewMarginMinutes <= 0) {
      throw new Error(`etcd: renew margin must be a positive number of minutes, got ${options.renewMarginMinutes}`);
    }
    this.renewMarginMs = options.renewMarginMinutes * 60_000;
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.random = options.random ?? Math.random;

    const etcdOptions: IOptions = {
      // etcd3 strips http(s)://; unix:// targets go to grpc as they are.
      hosts: options.endpoints.map((e) => e.replace(/\/$/, '')),
      grpcOptions: {
        // Detects a dead or frozen etcd under an open watch stream (etcd tolerates pings >= 5 s apart).
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
        // grpc's default reconnect backoff grows to 120 s: after a long outage that would delay recovery.
        'grpc.initial_reconnect_backoff_ms': 500,
        'grpc.max_reconnect_backoff_ms': 5_000,
      },
    };
    const credentials = loadCredentials(options);
    if (credentials) etcdOptions.credentials = credentials;
    if (options.username) etcdOptions.auth = { username: options.username, password: options.password ?? '' };
    try {
      this.client = new Etcd3(etcdOptions);
    } catch (err) {
      throw new Error(`etcd: cannot create client: ${errorText(err)}`);
    }
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    this.checkOpen();
    const res = await this.call('read network config', (o) =>
      this.client.kv.range({ key: Buffer.from(this.configKey) }, o),
    );
    const kv = res.kvs[0];
    if (!kv) throw new Error(`network config not found at ${this.configKey}`);
    try {
      return parseNetworkConfigText(kv.value.toString('utf8'));
    } catch (err) {
      throw new ConfigError(`${this.configKey}: ${errorText(err)}`);
    }
  }

  async acquire(publicIP: string, options: AcquireOptions = {}): Promise<Lease> {
    this.checkOpen();
    let ip: string;
    try {
      ip = formatIPv4(parseIPv4(publicIP));
    } catch {
      throw new Error(`acquire: invalid PublicIP "${publicIP}"`);
    }
    const config = await this.getNetworkConfig();
    const value = leaseValue(ip);
    const previous = options.previousSubnet;

    for (let attempt = 1; attempt <= MAX_ACQUIRE_ATTEMPTS; attempt++) {
      const { leases, occupied } = await this.listKeys();

      // 1. A lease that already names our PublicIP (our identity): take it back.
      let mine: Lease | undefined;
      for (const l of leases) {
        if (l.publicIP !== ip) continue;
        if (!isCompatible(l.subnet, config)) {
          this.log.info({ subnet: formatSubnet(l.subnet) }, 'deleting our lease: incompatible with the network config');
          await this.deleteIfUnchanged(l);
        } else if (mine) {
          this.log.warn({ subnet: formatSubnet(l.subnet), using: formatSubnet(mine.subnet) }, 'another lease also names our PublicIP; ignoring it');
        } else {
          mine = l;
        }
      }
      if (mine) {
        if (isReservation(mine)) {
          this.log.info({ subnet: formatSubnet(mine.subnet) }, 'using the reservation for our PublicIP');
          return mine;
        }
        const reused = await this.writeLease(mine.subnet, value, { modRevision: mine.source.kind === 'etcd' ? mine.source.modRevision : '0' });
        if (reused) {
          this.log.info({ subnet: formatSubnet(mine.subnet), publicIP: ip }, 'found a lease for our PublicIP, reusing it');
          return reused;
        }
        continue; // it changed under us: look again
      }

      const taken = [...leases.map((l) => l.subnet), ...occupied];
      // 2. The subnet we had before (subnet.env), if it fits and nobody holds it now.
      if (previous && isCompatible(previous, config) && !taken.some((t) => subnetsOverlap(t, previous))) {
        const created = await this.createLease(previous, value);
        if (created) {
          this.log.info({ subnet: formatSubnet(previous) }, 'took back our previous subnet');
          return created;
        }
        continue;
      }
      if (previous && attempt === 1) {
        this.log.info({ subnet: formatSubnet(previous) }, 'previous subnet is taken or incompatible; allocating another');
      }

      // 3. A random free one.
      const pick = pickFreeSubnet(config, taken, this.random);
      if (!pick) {
        throw new SubnetsExhaustedError(
          `out of subnets: all ${countSubnets(config)} /${config.subnetLen} subnets between SubnetMin ` +
            `${formatIPv4(config.subnetMin)} and SubnetMax ${formatIPv4(config.subnetMax)} are leased`,
        );
      }
      const created = await this.createLease(pick, value);
      if (created) {
        this.log.info({ subnet: formatSubnet(pick) }, 'allocated a new subnet');
        return created;
      }
      this.log.info({ subnet: formatSubnet(pick), attempt }, 'another node took that subnet first; retrying');
    }
    throw new Error(`acquire: no subnet after ${MAX_ACQUIRE_ATTEMPTS} attempts: other nodes won every race`);
  }

  async renew(lease: Lease): Promise<Lease> {
    this.checkOpen();
    try {
      const renewed = await this.renewOnce(lease);
      this.state.renewals++;
      return renewed;
    } catch (err) {
      this.state.renewalFailures++;
      throw err;
    }
  }

  async list(): Promise<{ leases: Lease[]; revision: string }> {
    this.checkOpen();
    const listed = await this.listKeys();
    await this.fillExpiries(listed.leases);
    return listed;
  }

  /**
   * Sets expiresAt on each lease (one TimeToLive call per etcd lease not yet cached: about 1.5 s
   * for 5,000 fresh leases), and forgets cached expiries no listed key uses any more.
   */
  private async fillExpiries(leases: Lease[]): Promise<void> {
    const ids = leases.map((l) => (l.source.kind === 'etcd' ? l.source.etcdLeaseId : undefined));
    const live = ids.filter((id): id is string => id !== undefined);
    const expiries = await this.expiries(live);
    for (let i = 0; i < leases.length; i++) {
      const id = ids[i];
      if (id !== undefined) leases[i]!.expiresAt = expiries.get(id);
    }
    const inUse = new Set(live);
    for (const id of this.expiryCache.keys()) if (!inUse.has(id) && !this.granted.has(id)) this.expiryCache.delete(id);
  }

  watch(onUpdate: (update: LeaseUpdate) => void): Watcher {
    this.checkOpen();
    const context: WatchContext = {
      client: this.client,
      prefix: this.subnetsPrefix,
      log: this.log,
      listKeys: () => this.listKeys(),
      fillExpiries: (leases) => this.fillExpiries(leases),
      parseKv: (kv) => this.parseKv(kv),
      expiries: (ids) => this.expiries(ids),
      noteError: (message, err) => this.noteError(message, err),
      noteConnected: () => {
        this.state.connected = true;
      },
      noteSnapshot: (revision, initial) => {
        this.state.lastRelistAt = Date.now();
        if (!initial) this.state.relists++;
        this.state.lastRevision = revision;
      },
      noteRevision: (revision) => {
        this.state.lastRevision = revision;
      },
    };
    const w = new EtcdWatch(context, onUpdate, () => this.watchers.delete(w));
    this.watchers.add(w);
    return w;
  }

  status(): StoreStatus {
    return { ...this.state };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.watchers].map((w) => w.stop()));
    this.client.close();
    this.state.connected = false;
  }

  // ---- internals ----

  /** Runs one unary call with a deadline, keeping status() current; errors say what failed. */
  private async call<T>(what: string, fn: (options: CallOpts) => Promise<T>): Promise<T> {
    try {
      const result = await fn({ deadline: Date.now() + this.callTimeoutMs });
      this.state.connected = true;
      return result;
    } catch (err) {
      let cause = errorText(err);
      // etcd3's circuit breaker replaces every error after the first with "circuit breaker is
      // open": report the real cause it is hiding (connection refused, timeout...) instead.
      if (/circuit breaker is open/i.test(cause)) {
        if (this.lastCause) cause = `${this.lastCause} (retries paused by the client's circuit breaker)`;
      } else {
        this.lastCause = cause;
      }
      const message = `etcd: ${what} failed: ${cause} [endpoints ${this.endpoints.join(', ')}]`;
      this.noteError(message, err);
      throw new Error(message, { cause: err });
    }
  }

  private noteError(message: string, err?: unknown): void {
    this.state.errors++;
    this.state.lastError = message;
    if (err === undefined || !(err instanceof Error) || isRecoverableError(err) || /circuit|closed|unavailable/i.test(err.message)) {
      this.state.connected = false;
    }
  }

  /** Every key under <prefix>/subnets/: valid leases (no expiry yet), and subnets of malformed values. */
  private async listKeys(): Promise<{ leases: Lease[]; occupied: Subnet[]; revision: string }> {
    const prefix = Buffer.from(this.subnetsPrefix);
    const res = await this.call('list leases', (o) =>
      this.client.kv.range({ key: prefix, range_end: prefixEnd(prefix) }, o),
    );
    const leases: Lease[] = [];
    const occupied: Subnet[] = [];
    for (const kv of res.kvs) {
      const parsed = this.parseKv(kv);
      if (parsed.ok) leases.push(parsed.lease);
      else if (parsed.subnet) occupied.push(parsed.subnet);
    }
    return { leases, occupied, revision: res.header.revision };
  }

  /** Parses one subnet key/value; malformed ones are logged once per key and revision. */
  private parseKv(kv: IKeyValue): ParsedKv {
    const key = kv.key.toString('utf8');
    const name = key.slice(this.subnetsPrefix.length);
    const subnet = name.includes('/') ? undefined : subnetFromKey(name);
    if (!subnet) return this.malformed(key, kv.mod_revision, 'key is not <a.b.c.d>-<len>');
    let attrs: unknown;
    try {
      attrs = JSON.parse(kv.value.toString('utf8'));
    } catch {
      return this.malformed(key, kv.mod_revision, 'value is not valid JSON', subnet);
    }
    if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) {
      return this.malformed(key, kv.mod_revision, 'value is not a JSON object', subnet);
    }
    const record = attrs as Record<string, unknown>;
    const rawIP = publicIPField(record);
    let publicIP: string;
    try {
      if (typeof rawIP !== 'string') throw new Error();
      publicIP = formatIPv4(parseIPv4(rawIP));
    } catch {
      return this.malformed(key, kv.mod_revision, 'PublicIP is missing or not an IPv4 address', subnet);
    }
    const etcdLeaseId = kv.lease && kv.lease !== '0' ? kv.lease : undefined;
    return {
      ok: true,
      lease: {
        subnet,
        publicIP,
        source: { kind: 'etcd', key, modRevision: kv.mod_revision, ...(etcdLeaseId ? { etcdLeaseId } : {}) },
        attrs: record,
      },
    };
  }

  private malformed(key: string, revision: string, reason: string, subnet?: Subnet): ParsedKv {
    const id = `${key}@${revision}`;
    if (!this.warned.has(id)) {
      if (this.warned.size >= MAX_WARNED_KEYS) this.warned.clear();
      this.warned.add(id);
      this.log.warn({ key, revision }, `skipping malformed subnet lease: ${reason}`);
    }
    return subnet ? { ok: false, subnet, reason } : { ok: false, reason };
  }

  /**
   * When each etcd lease expires (ms since epoch): from the cache while that time is still ahead,
   * else by TimeToLive, TTL_LOOKUP_CONCURRENCY calls at a time.
   */
  private async expiries(ids: string[]): Promise<Map<string, number | undefined>> {
    const out = new Map<string, number | undefined>();
    const now = Date.now();
    const unknown: string[] = [];
    for (const id of new Set(ids)) {
      const cached = this.expiryCache.get(id);
      if (cached !== undefined && cached > now) out.set(id, cached);
      else unknown.push(id);
    }
    let failures = 0;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < unknown.length) {
        const id = unknown[next++]!;
        try {
          const res = await this.client.leaseClient.leaseTimeToLive({ ID: id }, { deadline: Date.now() + this.callTimeoutMs });
          const ttl = Number(res.TTL);
          if (ttl > 0) {
            const expiresAt = Date.now() + ttl * 1000;
            this.expiryCache.set(id, expiresAt);
            out.set(id, expiresAt);
          } else {
            out.set(id, Date.now()); // -1: the lease is gone and its key about to be deleted
          }
        } catch (err) {
          if (failures++ === 0) this.noteError(`etcd: lease TimeToLive failed: ${errorText(err)}`, err);
          out.set(id, undefined);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(TTL_LOOKUP_CONCURRENCY, unknown.length) }, worker));
    if (failures > 0) this.log.warn({ failures }, 'could not read the expiry of some leases');
    return out;
  }

  private subnetKey(subnet: Subnet): string {
    return this.subnetsPrefix + subnetToKey(subnet);
  }

  private async grant(): Promise<{ id: string; ttl: number }> {
    const res = await this.call('grant lease', (o) => this.client.leaseClient.leaseGrant({ TTL: this.ttlSeconds }, o));
    if (res.error) throw new Error(`etcd: grant lease failed: ${res.error}`);
    this.granted.add(res.ID);
    this.expiryCache.set(res.ID, Date.now() + Number(res.TTL) * 1000);
    return { id: res.ID, ttl: Number(res.TTL) };
  }

  /** Best effort: the lease expires by itself anyway. */
  private async revoke(id: string): Promise<void> {
    this.granted.delete(id);
    this.expiryCache.delete(id);
    try {
      await this.call('revoke lease', (o) => this.client.leaseClient.leaseRevoke({ ID: id }, o));
    } catch (err) {
      this.log.debug({ id, err: errorText(err) }, 'could not revoke an unused etcd lease');
    }
  }

  /**
   * Puts our value on a fresh etcd lease, in a transaction guarded by `guard`: version 0 (create if
   * absent) or a mod revision (unchanged since we read it). Returns undefined, and revokes the new
   * lease, when the guard fails.
   */
  private async writeLease(
    subnet: Subnet,
    value: string,
    guard: { create: true } | { modRevision: string },
  ): Promise<Lease | undefined> {
    const key = Buffer.from(this.subnetKey(subnet));
    const compare =
      'create' in guard
        ? { key, target: 'Version' as const, result: 'Equal' as const, version: 0 }
        : { key, target: 'Mod' as const, result: 'Equal' as const, mod_revision: guard.modRevision };
    const granted = await this.grant();
    let res;
    try {
      res = await this.call('write lease', (o) =>
        this.client.kv.txn(
          { compare: [compare], success: [{ request_put: { key, value: Buffer.from(value), lease: granted.id } }], failure: [] },
          o,
        ),
      );
    } catch (err) {
      // No revoke: the put may have been applied (e.g. a lost reply), and revoking would delete the key.
      // An unused lease simply expires.
      this.granted.delete(granted.id);
      throw err;
    }
    if (!res.succeeded) {
      await this.revoke(granted.id);
      return undefined;
    }
    return {
      subnet,
      publicIP: (JSON.parse(value) as { PublicIP: string }).PublicIP,
      expiresAt: Date.now() + granted.ttl * 1000,
      source: { kind: 'etcd', key: key.toString(), modRevision: res.header.revision, etcdLeaseId: granted.id },
      attrs: JSON.parse(value) as Record<string, unknown>,
    };
  }

  private createLease(subnet: Subnet, value: string): Promise<Lease | undefined> {
    return this.writeLease(subnet, value, { create: true });
  }

  private async deleteIfUnchanged(lease: Lease): Promise<void> {
    if (lease.source.kind !== 'etcd') return;
    const key = Buffer.from(lease.source.key);
    await this.call('delete lease', (o) =>
      this.client.kv.txn(
        {
          compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: lease.source.kind === 'etcd' ? lease.source.modRevision : '0' }],
          success: [{ request_delete_range: { key } }],
          failure: [],
        },
        o,
      ),
    );
  }

  /**
   * New grant + put of the same value, but never over another node's lease (flannel's plain Put is
   * last-writer-wins): still ours -> renewed; gone -> re-created if still free; someone else's -> LeaseLostError.
   */
  private async renewOnce(lease: Lease): Promise<Lease> {
    const value = leaseValue(lease.publicIP);
    const oldId = lease.source.kind === 'etcd' ? lease.source.etcdLeaseId : undefined;
    const current = await this.readKey(lease.subnet);

    if (current && current.ok && current.lease.publicIP === lease.publicIP && isReservation(current.lease)) {
      return current.lease; // a reservation never expires: nothing to renew
    }
    let renewed: Lease | undefined;
    if (!current) {
      renewed = await this.createLease(lease.subnet, value);
      if (renewed) this.log.warn({ subnet: formatSubnet(lease.subnet) }, 'our lease had expired; re-created it');
    } else if (current.ok && current.lease.publicIP === lease.publicIP && current.lease.source.kind === 'etcd') {
      renewed = await this.writeLease(lease.subnet, value, { modRevision: current.lease.source.modRevision });
    } else {
      const holder = current.ok ? current.lease.publicIP : 'a malformed value';
      throw new LeaseLostError(`renew: subnet ${formatSubnet(lease.subnet)} is now held by ${holder}`);
    }
    if (!renewed) throw new Error(`renew: ${formatSubnet(lease.subnet)} changed while renewing; try again`);
    const newId = renewed.source.kind === 'etcd' ? renewed.source.etcdLeaseId : undefined;
    if (oldId && oldId !== newId && this.granted.has(oldId)) {
      // The key now rides on the new lease; the old one would linger for a whole TTL otherwise.
      await this.revoke(oldId);
    }
    return renewed;
  }

  private async readKey(subnet: Subnet): Promise<ParsedKv | undefined> {
    const res = await this.call('read lease', (o) => this.client.kv.range({ key: Buffer.from(this.subnetKey(subnet)) }, o));
    const kv = res.kvs[0];
    return kv ? this.parseKv(kv) : undefined;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('etcd lease store is closed');
  }
}

/**
 * One watch: snapshot, then events from the snapshot's revision + 1. Disconnects resume from the
 * last seen revision + 1 with exponential backoff (100 ms .. 5 s); compaction or a watch canceled
 * by etcd leads to a relist and a fresh snapshot. Responses are handled strictly in order.
 */
class EtcdWatch implements Watcher {
  private stopped = false;
  private lastRevision = 0n;
  private known = new Map<string, Lease>();
  private failures = 0;
  private snapshots = 0;
  private wake: (() => void) | undefined;
  private endStream: (() => void) | undefined;
  private readonly done: Promise<void>;

  constructor(
    private readonly ctx: WatchContext,
    private readonly onUpdate: (update: LeaseUpdate) => void,
    onStopped: () => void,
  ) {
    this.done = this.run().finally(onStopped);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    this.endStream?.();
    await this.done;
  }

  private async run(): Promise<void> {
    const log = this.ctx.log;
    let needSnapshot = true;
    while (!this.stopped) {
      if (this.failures > 0) {
        await this.sleep(Math.min(WATCH_BACKOFF_MAX_MS, WATCH_BACKOFF_MIN_MS * 2 ** (this.failures - 1)));
        if (this.stopped) break;
      }
      if (needSnapshot) {
        try {
          await this.snapshot();
          needSnapshot = false;
        } catch (err) {
          this.failures++;
          log.warn({ err: errorText(err) }, 'watch: listing leases failed; retrying');
          continue;
        }
      }
      const outcome = await this.watchOnce(this.lastRevision + 1n);
      if (this.stopped || outcome.kind === 'stopped') break;
      this.failures = outcome.healthy ? 1 : this.failures + 1;
      if (outcome.kind === 'canceled') {
        needSnapshot = true;
        this.ctx.noteError(`etcd: watch ${outcome.detail}`);
        log.warn({ fromRevision: String(this.lastRevision + 1n) }, `watch ${outcome.detail}; relisting`);
      } else {
        this.ctx.noteError(`etcd: watch disconnected: ${outcome.detail}`);
        log.warn({ resumeFrom: String(this.lastRevision + 1n) }, `watch disconnected (${outcome.detail}); reconnecting`);
      }
    }
  }

  private async snapshot(): Promise<void> {
    const { leases, revision } = await this.ctx.listKeys();
    if (this.stopped) return;
    this.known = new Map(leases.map((l) => [(l.source as { key: string }).key, l]));
    this.lastRevision = BigInt(revision);
    this.ctx.noteSnapshot(revision, this.snapshots++ === 0);
    // Routes first, expiry times after: the data path must not wait for one TimeToLive call per
    // lease. The table holds these same objects, so the times show up there once known.
    this.deliver({ kind: 'snapshot', leases, revision });
    void this.ctx.fillExpiries(leases).catch((err) => {
      this.ctx.log.warn({ err: errorText(err) }, 'could not read lease expiry times; will retry at the next list');
    });
  }

  /** One watch stream; resolves when it ends, after every response it delivered has been handled. */
  private async watchOnce(
    fromRevision: bigint,
  ): Promise<{ kind: 'disconnected' | 'canceled' | 'stopped'; detail: string; healthy: boolean }> {
    let stream: WatchStream;
    try {
      stream = await this.ctx.client.watchClient.watch();
    } catch (err) {
      return { kind: 'disconnected', detail: errorText(err), healthy: false };
    }
    const prefix = Buffer.from(this.ctx.prefix);
    return new Promise((resolve) => {
      let createdAt = 0;
      let progressed = false;
      let finished = false;
      let chain: Promise<void> = Promise.resolve();
      const finish = (kind: 'disconnected' | 'canceled' | 'stopped', detail: string): void => {
        if (finished) return;
        finished = true;
        this.endStream = undefined;
        stream.on('error', () => undefined); // cancel() reports CANCELLED as an error
        try {
          // end() first: etcd3 treats an error on a still-writable stream as a host failure and
          // would reset every channel to etcd for our own deliberate cancel.
          stream.end();
          stream.cancel();
        } catch {
          // already gone
        }
        const healthy = createdAt > 0 && (progressed || Date.now() - createdAt >= WATCH_HEALTHY_MS);
        void chain.then(() => resolve({ kind, detail, healthy }));
      };
      this.endStream = () => finish('stopped', 'stopped');
      stream.on('data', (res: IWatchResponse) => {
        if (finished) return;
        if (res.created && !res.canceled) {
          if (BigInt(res.header.revision) < fromRevision - 1n) {
            // etcd lost history (restored or rebuilt): it would silently wait for a revision it
            // will reach with unrelated writes. Start over from a list.
            finish('canceled', `revision went back to ${res.header.revision} (we had seen ${fromRevision - 1n})`);
            return;
          }
          createdAt = Date.now();
          this.ctx.noteConnected();
          return;
        }
        if (res.canceled || (res.compact_revision && res.compact_revision !== '0')) {
          const detail =
            res.compact_revision && res.compact_revision !== '0'
              ? `start revision ${fromRevision} is compacted (compact revision ${res.compact_revision})`
              : `canceled by etcd: ${res.cancel_reason || 'no reason given'}`;
          finish('canceled', detail);
          return;
        }
        progressed = true;
        chain = chain.then(() => this.handle(res));
      });
      stream.on('error', (err: Error) => finish('disconnected', errorText(err)));
      stream.on('end', () => finish('disconnected', 'watch stream ended'));
      if (this.stopped) {
        finish('stopped', 'stopped');
        return;
      }
      try {
        stream.write({
          create_request: {
            key: prefix,
            range_end: prefixEnd(prefix),
            start_revision: fromRevision.toString(),
            progress_notify: true,
          },
        });
      } catch (err) {
        finish('disconnected', errorText(err));
      }
    });
  }

  /** Turns one watch response into events; never throws. */
  private async handle(res: IWatchResponse): Promise<void> {
    if (this.stopped) return;
    if (res.events.length === 0) {
      // Progress notification: every event up to header.revision has been sent.
      const rev = BigInt(res.header.revision);
      if (rev > this.lastRevision) {
        this.lastRevision = rev;
        this.ctx.noteRevision(rev.toString());
      }
      return;
    }
    const leaseIds = res.events.filter((e) => e.type === 'Put' && e.kv.lease && e.kv.lease !== '0').map((e) => e.kv.lease);
    const expiries = leaseIds.length > 0 ? await this.ctx.expiries(leaseIds) : new Map<string, number | undefined>();
    if (this.stopped) return;
    const events: LeaseEvent[] = [];
    let maxRevision = this.lastRevision;
    for (const ev of res.events) {
      const key = ev.kv.key.toString('utf8');
      const rev = BigInt(ev.kv.mod_revision);
      if (rev > maxRevision) maxRevision = rev;
      const previous = this.known.get(key);
      if (ev.type === 'Put') {
        const parsed = this.ctx.parseKv(ev.kv);
        if (parsed.ok) {
          const id = ev.kv.lease !== '0' ? ev.kv.lease : undefined;
          if (id !== undefined) parsed.lease.expiresAt = expiries.get(id);
          this.known.set(key, parsed.lease);
          events.push({ type: 'added', lease: parsed.lease });
          continue;
        }
        // A valid lease overwritten with garbage no longer describes a peer.
        if (!previous) continue;
      } else if (!previous) {
        continue; // never delivered (malformed), so nothing to remove
      }
      this.known.delete(key);
      // Delete events carry only the key: the lease is the last value we knew.
      const source = { ...(previous.source as { kind: 'etcd'; key: string; modRevision: string }), modRevision: ev.kv.mod_revision };
      events.push({ type: 'removed', lease: { ...previous, source } });
    }
    this.lastRevision = maxRevision;
    this.ctx.noteRevision(maxRevision.toString());
    if (events.length > 0) this.deliver({ kind: 'events', events, revision: maxRevision.toString() });
  }

  private deliver(update: LeaseUpdate): void {
    try {
      this.onUpdate(update);
    } catch (err) {
      this.ctx.log.error({ err: errorText(err) }, 'lease watch consumer threw');
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    }).finally(() => {
      this.wake = undefined;
    });
  }
}

function isReservation(lease: Lease): boolean {
  return lease.source.kind === 'etcd' && lease.source.etcdLeaseId === undefined;
}

/** flannel's JSON field is PublicIP; Go matches keys case-insensitively, preferring the exact one. */
function publicIPField(record: Record<string, unknown>): unknown {
  if ('PublicIP' in record) return record.PublicIP;
  const key = Object.keys(record).find((k) => k.toLowerCase() === 'publicip');
  return key === undefined ? undefined : record[key];
}

/** Like Go's path.Join on the prefix: no duplicate or trailing slashes. */
function normalizePrefix(prefix: string): string {
  const cleaned = prefix.replace(/\/{2,}/g, '/').replace(/\/+$/, '');
  if (cleaned === '') throw new Error(`etcd: invalid key prefix "${prefix}"`);
  return cleaned;
}

/** The range end that selects every key starting with `prefix`. */
function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

function loadCredentials(options: EtcdStoreOptions): IOptions['credentials'] {
  const { keyFile, certFile, caFile } = options;
  if (!keyFile && !certFile && !caFile) return undefined;
  if (Boolean(keyFile) !== Boolean(certFile)) {
    throw new Error('etcd: --etcd-keyfile and --etcd-certfile must be given together');
  }
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`etcd: cannot read ${what} ${path}: ${errorText(err)}`);
    }
  };
  const credentials: { rootCertificate?: Buffer; privateKey?: Buffer; certChain?: Buffer } = {};
  if (caFile) credentials.rootCertificate = read(caFile, 'CA file');
  if (keyFile) credentials.privateKey = read(keyFile, 'key file');
  if (certFile) credentials.certChain = read(certFile, 'certificate file');
  // grpc uses the system roots when rootCertificate is absent; etcd3's type insists on it.
  return credentials as NonNullable<IOptions['credentials']>;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
