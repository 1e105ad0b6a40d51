// LeaseStore on etcd v3, drop-in compatible with flannel's layout (see keys.ts).
// Fixes flannel's known problems: a lost creation race is retried (never fatal), every unary call has a
// deadline, the watch resumes after disconnects and relists after compaction with bounded backoff, renewals
// never overwrite another node's lease, and reservations (keys without a lease) stay reservations.
// Over 450 lines because acquire, renew and the guarded writes share one etcd client and its
// bookkeeping (granted leases, expiries, status); keys.ts and allocate.ts hold the pure parts.
import { Etcd3, isRecoverableError, type IKeyValue } from 'etcd3';
import type { Logger } from 'pino';
import { LoggedOnce } from '../../log.js';
import { formatIPv4, makeSubnetKey, parseIPv4, subnetsOverlap, type Subnet } from '../../net/cidr.js';
import { formatIPv6, formatSubnet6, parseIPv6, subnets6Overlap, type Subnet6 } from '../../net/ip6.js';
import { errorText } from '../../retry.js';
import { countSubnets, countSubnets6, isCompatible4, isCompatible6, pickFreeSubnet, pickFreeSubnet6 } from '../allocate.js';
import { leaseName, subnetText } from '../name.js';
import { parseNetworkConfigText } from '../config.js';
import { carriesIPv6 } from '../backend-data.js';
import {
  ConfigError,
  LeaseLostError,
  SubnetsExhaustedError,
  type AcquireOptions,
  type Lease,
  type LeaseStore,
  type LeaseUpdate,
  type NetworkConfig,
  type StoreStatus,
  type Watcher,
} from '../types.js';
import { etcdSource, isReservation, leaseValue, normalizePrefix, parseLeaseKv, prefixEnd, sameHolder, type ParsedKv } from './keys.js';
import { etcdClientOptions, type EtcdConnection } from './tls.js';
import { LeaseExpiries } from './expiry.js';
import { EtcdWatch, type WatchContext } from './watch.js';

export { DEFAULT_ETCD_PREFIX, leaseValue } from './keys.js';

export interface EtcdStoreOptions extends EtcdConnection {
  /** Key root, flannel's --etcd-prefix (default `/coreos.com/network`). */
  prefix: string;
  /** TTL of each subnet lease (default 24 h, as flannel). */
  ttlSeconds?: number;
  /** Deadline for each unary etcd call (default 10 s): a dead etcd gives an error instead of a hang. */
  callTimeoutMs?: number;
  /** Random source in [0, 1) for picking a free subnet (tests inject their own). */
  random?: () => number;
}

export const DEFAULT_LEASE_TTL_SECONDS = 24 * 60 * 60;
const DEFAULT_CALL_TIMEOUT_MS = 10_000;
/** flannel's raceRetries. */
const MAX_ACQUIRE_ATTEMPTS = 10;

type CallOpts = { deadline: number };

export class EtcdLeaseStore implements LeaseStore {
  readonly ttlSeconds: number;
  private readonly client: Etcd3;
  private readonly prefix: string;
  private readonly configKey: string;
  private readonly subnetsPrefix: string;
  private readonly callTimeoutMs: number;
  private readonly random: () => number;
  private readonly watchers = new Set<EtcdWatch>();
  /** etcd leases this instance granted: only these are revoked after a renewal moved the key on. */
  private readonly granted = new Set<string>();
  private readonly warned = new LoggedOnce();
  private readonly expiries: LeaseExpiries;
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
    const etcdOptions = etcdClientOptions(options);
    this.endpoints = options.endpoints;
    this.prefix = normalizePrefix(options.prefix);
    this.configKey = `${this.prefix}/config`;
    this.subnetsPrefix = `${this.prefix}/subnets/`;
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    if (!Number.isInteger(this.ttlSeconds) || this.ttlSeconds < 1) {
      throw new Error(`etcd: lease TTL must be a positive whole number of seconds, got ${options.ttlSeconds}`);
    }
    this.callTimeoutMs = options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    this.random = options.random ?? Math.random;

    try {
      this.client = new Etcd3(etcdOptions);
    } catch (err) {
      throw new Error(`etcd: cannot create client: ${errorText(err)}`);
    }
    this.expiries = new LeaseExpiries(this.client, this.callTimeoutMs, log, (message, err) => this.noteError(message, err));
  }

  /** etcd keeps no PublicIP for a node that has no lease yet: --public-ip or the interface decides. */
  async storedPublicIP(): Promise<string | undefined> {
    return undefined;
  }

  async storedPublicIPv6(): Promise<string | undefined> {
    return undefined;
  }

  /** Nothing to do: flannel's etcd manager completes a lease without further writes. */
  async completeLease(): Promise<void> {}

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
    let ipv6: string | undefined;
    try {
      ipv6 = options.publicIPv6 === undefined ? undefined : formatIPv6(parseIPv6(options.publicIPv6));
    } catch {
      throw new Error(`acquire: invalid PublicIPv6 "${options.publicIPv6}"`);
    }
    const config = await this.getNetworkConfig();
    // An IPv4-only cluster publishes no IPv6 address: its values stay exactly what flannel's UDP nodes write.
    if (!config.ipv6) ipv6 = undefined;
    const me = { publicIP: ip, publicIPv6: ipv6 };
    // felt's BackendV6Data only where the network has IPv6: IPv4-only values stay flannel's, byte for byte.
    const value = leaseValue(ip, ipv6, config.ipv6 !== undefined);
    // flannel reuses the previous IPv6 subnet only together with the IPv4 one, and only if it fits the config;
    // on an IPv6-only overlay the IPv6 subnet alone.
    const previous = config.enableIPv4 ? options.previousSubnet : undefined;
    const previous6 = config.ipv6 ? options.previousSubnet6 : undefined;
    const hadPrevious = config.enableIPv4 ? previous !== undefined : previous6 !== undefined;

    for (let attempt = 1; attempt <= MAX_ACQUIRE_ATTEMPTS; attempt++) {
      const { leases, occupied } = await this.listKeys();

      // 1. A lease that already names our PublicIP (our identity): take it back.
      let mine: Lease | undefined;
      for (const l of leases) {
        if (!sameHolder(l, me)) continue;
        if (!isCompatible4(l.subnet, config) || !isCompatible6(l.ipv6Subnet, config.ipv6)) {
          this.log.info({ subnet: leaseName(l) }, 'deleting our lease: incompatible with the network config');
          await this.deleteIfUnchanged(l);
        } else if (mine) {
          this.log.warn({ subnet: leaseName(l), using: leaseName(mine) }, 'another lease also names our PublicIP; ignoring it');
        } else {
          mine = l;
        }
      }
      if (mine) {
        if (isReservation(mine)) {
          this.log.info({ subnet: leaseName(mine) }, 'using the reservation for our PublicIP');
          return mine;
        }
        const reused = await this.writeLease(mine.subnet, mine.ipv6Subnet, value, { modRevision: etcdSource(mine)?.modRevision ?? '0' });
        if (reused) {
          this.log.info({ subnet: leaseName(mine), publicIP: ip }, 'found a lease for our PublicIP, reusing it');
          return reused;
        }
        continue; // it changed under us: look again
      }

      const taken = [...leases.flatMap((l) => l.subnet ?? []), ...occupied.flatMap((o) => o.subnet ?? [])];
      const taken6 = [...leases.flatMap((l) => l.ipv6Subnet ?? []), ...occupied.flatMap((o) => o.subnet6 ?? [])];
      // 2. The subnet we had before (subnet.env), if it fits and nobody holds it now.
      if (
        hadPrevious &&
        isCompatible4(previous, config) &&
        isCompatible6(previous6, config.ipv6) &&
        !(previous && taken.some((t) => subnetsOverlap(t, previous))) &&
        !(previous6 && taken6.some((t) => subnets6Overlap(t, previous6)))
      ) {
        const created = await this.createLease(previous, previous6, value);
        if (created) {
          this.log.info({ subnet: leaseName({ subnet: previous, ipv6Subnet: previous6 }) }, 'took back our previous subnet');
          return created;
        }
        continue;
      }
      if (hadPrevious && attempt === 1) {
        this.log.info({ subnet: leaseName({ subnet: previous, ipv6Subnet: previous6 }) }, 'previous subnet is taken or incompatible; allocating another');
      }

      // 3. A random free one.
      const pick = config.enableIPv4 ? pickFreeSubnet(config, taken, this.random) : undefined;
      if (config.enableIPv4 && !pick) {
        throw new SubnetsExhaustedError(
          `out of subnets: all ${countSubnets(config)} /${config.subnetLen} subnets between SubnetMin ` +
            `${formatIPv4(config.subnetMin)} and SubnetMax ${formatIPv4(config.subnetMax)} are leased`,
        );
      }
      const pick6 = config.ipv6 ? pickFreeSubnet6(config.ipv6, taken6, this.random) : undefined;
      if (config.ipv6 && !pick6) {
        throw new SubnetsExhaustedError(
          `out of IPv6 subnets: all ${countSubnets6(config.ipv6)} /${config.ipv6.subnetLen} subnets between ` +
            `IPv6SubnetMin ${formatIPv6(config.ipv6.subnetMin)} and IPv6SubnetMax ${formatIPv6(config.ipv6.subnetMax)} are leased`,
        );
      }
      const created = await this.createLease(pick, pick6, value);
      if (created) {
        this.log.info({ subnet: subnetText(pick), ...(pick6 ? { subnet6: formatSubnet6(pick6) } : {}) }, 'allocated a new subnet');
        return created;
      }
      this.log.info({ subnet: leaseName({ subnet: pick, ipv6Subnet: pick6 }), attempt }, 'another node took that subnet first; retrying');
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
    await this.expiries.fill(listed.leases, this.granted);
    return listed;
  }

  watch(onUpdate: (update: LeaseUpdate) => void): Watcher {
    this.checkOpen();
    const context: WatchContext = {
      client: this.client,
      prefix: this.subnetsPrefix,
      log: this.log,
      listKeys: () => this.listKeys(),
      fillExpiries: (leases) => this.expiries.fill(leases, this.granted),
      parseKv: (kv) => this.parseKv(kv),
      expiries: (ids) => this.expiries.lookup(ids),
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
  private async listKeys(): Promise<{ leases: Lease[]; occupied: Array<{ subnet?: Subnet; subnet6?: Subnet6 }>; revision: string }> {
    const prefix = Buffer.from(this.subnetsPrefix);
    const res = await this.call('list leases', (o) =>
      this.client.kv.range({ key: prefix, range_end: prefixEnd(prefix) }, o),
    );
    const leases: Lease[] = [];
    const occupied: Array<{ subnet?: Subnet; subnet6?: Subnet6 }> = [];
    for (const kv of res.kvs) {
      const parsed = this.parseKv(kv);
      if (parsed.ok) leases.push(parsed.lease);
      else if (parsed.subnet || parsed.subnet6) occupied.push({ ...(parsed.subnet ? { subnet: parsed.subnet } : {}), ...(parsed.subnet6 ? { subnet6: parsed.subnet6 } : {}) });
    }
    return { leases, occupied, revision: res.header.revision };
  }

  /** Parses one subnet key/value; malformed ones are logged once per key and revision. */
  private parseKv(kv: IKeyValue): ParsedKv {
    const parsed = parseLeaseKv(kv, this.subnetsPrefix);
    if (!parsed.ok) {
      const key = kv.key.toString('utf8');
      if (this.warned.first(`${key}@${kv.mod_revision}`)) {
        this.log.warn({ key, revision: kv.mod_revision }, `skipping malformed subnet lease: ${parsed.reason}`);
      }
    }
    return parsed;
  }

  private subnetKey(subnet: Subnet | undefined, subnet6: Subnet6 | undefined): string {
    return this.subnetsPrefix + makeSubnetKey(subnet, subnet6);
  }

  private async grant(): Promise<{ id: string; ttl: number }> {
    const res = await this.call('grant lease', (o) => this.client.leaseClient.leaseGrant({ TTL: this.ttlSeconds }, o));
    if (res.error) throw new Error(`etcd: grant lease failed: ${res.error}`);
    this.granted.add(res.ID);
    this.expiries.remember(res.ID, Date.now() + Number(res.TTL) * 1000);
    return { id: res.ID, ttl: Number(res.TTL) };
  }

  /** Best effort: the lease expires by itself anyway. */
  private async revoke(id: string): Promise<void> {
    this.granted.delete(id);
    this.expiries.forget(id);
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
    subnet: Subnet | undefined,
    subnet6: Subnet6 | undefined,
    value: string,
    guard: { create: true } | { modRevision: string },
  ): Promise<Lease | undefined> {
    const key = Buffer.from(this.subnetKey(subnet, subnet6));
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
    const attrs = JSON.parse(value) as { PublicIP: string; PublicIPv6: string | null; BackendV6Data?: unknown };
    return {
      ...(subnet ? { subnet } : {}),
      publicIP: attrs.PublicIP,
      ...(subnet6 ? { ipv6Subnet: subnet6 } : {}),
      ...(attrs.PublicIPv6 !== null ? { publicIPv6: attrs.PublicIPv6 } : {}),
      ...(subnet6 && carriesIPv6(attrs.BackendV6Data) ? { carriesIPv6: true } : {}),
      expiresAt: Date.now() + granted.ttl * 1000,
      source: { kind: 'etcd', key: key.toString(), modRevision: res.header.revision, etcdLeaseId: granted.id },
      attrs: JSON.parse(value) as Record<string, unknown>,
    };
  }

  private createLease(subnet: Subnet | undefined, subnet6: Subnet6 | undefined, value: string): Promise<Lease | undefined> {
    return this.writeLease(subnet, subnet6, value, { create: true });
  }

  private async deleteIfUnchanged(lease: Lease): Promise<void> {
    const source = etcdSource(lease);
    if (!source) return;
    const key = Buffer.from(source.key);
    await this.call('delete lease', (o) =>
      this.client.kv.txn(
        {
          compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: source.modRevision }],
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
    const value = leaseValue(lease.publicIP, lease.publicIPv6, lease.carriesIPv6 === true);
    const oldId = etcdSource(lease)?.etcdLeaseId;
    const current = await this.readKey(lease.subnet, lease.ipv6Subnet);

    if (current && current.ok && sameHolder(current.lease, lease) && isReservation(current.lease)) {
      return current.lease; // a reservation never expires: nothing to renew
    }
    let renewed: Lease | undefined;
    if (!current) {
      renewed = await this.createLease(lease.subnet, lease.ipv6Subnet, value);
      if (renewed) this.log.warn({ subnet: leaseName(lease) }, 'our lease had expired; re-created it');
    } else if (current.ok && sameHolder(current.lease, lease) && current.lease.source.kind === 'etcd') {
      renewed = await this.writeLease(lease.subnet, lease.ipv6Subnet, value, { modRevision: current.lease.source.modRevision });
    } else {
      const holder = current.ok ? current.lease.publicIP : 'a malformed value';
      throw new LeaseLostError(`renew: subnet ${leaseName(lease)} is now held by ${holder}`);
    }
    if (!renewed) throw new Error(`renew: ${leaseName(lease)} changed while renewing; try again`);
    const newId = etcdSource(renewed)?.etcdLeaseId;
    if (oldId && oldId !== newId && this.granted.has(oldId)) {
      // The key now rides on the new lease; the old one would linger for a whole TTL otherwise.
      await this.revoke(oldId);
    }
    return renewed;
  }

  private async readKey(subnet: Subnet | undefined, subnet6: Subnet6 | undefined): Promise<ParsedKv | undefined> {
    const res = await this.call('read lease', (o) =>
      this.client.kv.range({ key: Buffer.from(this.subnetKey(subnet, subnet6)) }, o),
    );
    const kv = res.kvs[0];
    return kv ? this.parseKv(kv) : undefined;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('etcd lease store is closed');
  }
}

