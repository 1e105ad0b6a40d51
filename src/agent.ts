// The agent: takes a subnet lease, runs the data path, keeps the route table in step with the
// lease store, renews the lease, writes subnet.env and serves health/debug endpoints.
import { existsSync } from 'node:fs';
import type { Logger } from './log.js';
import type { FlagValues } from './flags.js';
import type { AgentSnapshot, AgentState } from './agent-state.js';
import type { Lease, LeaseEvent, LeaseStore, LeaseUpdate, NetworkConfig, Watcher } from './lease/types.js';
import type { Datapath, DatapathConfig } from './datapath/types.js';
import { createDatapath, type EngineName } from './datapath/index.js';
import { LeaseTable } from './lease/table.js';
import { EtcdLeaseStore, LeaseLostError, SubnetsExhaustedError } from './lease/etcd.js';
import { ConfigError } from './lease/config.js';
import { chooseInterface, type UnderlayInterface } from './net/iface.js';
import { formatSubnet, parseIPv4, subnetContains, type Subnet } from './net/cidr.js';
import { readPreviousSubnet, writeSubnetEnv } from './subnetenv.js';
import { startDebugServer } from './debug/server.js';
import { collectGarbageSoon } from './heap.js';
import { startPeerProbes, type PeerProbes } from './probe/index.js';

/** IPv4 (20) + UDP (8): the TUN MTU is the underlay MTU minus this. */
export const ENCAP_OVERHEAD = 28;

/** A start-up failure with a message fit for one line on stderr. */
export class StartupError extends Error {}

interface Closable {
  close(): Promise<void>;
}

/** The pieces of a Kubernetes-mode store the agent uses beyond LeaseStore. */
interface KubeExtras {
  markNetworkAvailable?(): Promise<void>;
  getNodePublicIP?(): Promise<string | undefined>;
}

interface Masquerade {
  setup(): Promise<void>;
  teardown(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Agent implements AgentState {
  private store?: LeaseStore & KubeExtras;
  private config?: NetworkConfig;
  private iface?: UnderlayInterface;
  private publicIP = '';
  private lease?: Lease;
  private datapath?: Datapath;
  private watcher?: Watcher;
  private masq?: Masquerade;
  private servers: Closable[] = [];
  private probes?: PeerProbes;
  private readonly rttListeners: ((seconds: number) => void)[] = [];
  private readonly table = new LeaseTable(
    (lease) => this.leaseProblem(lease),
    ({ lease, reason }) => this.warnOnce(`${formatSubnet(lease.subnet)} ${lease.publicIP} ${reason}`,
      { subnet: formatSubnet(lease.subnet), publicIP: lease.publicIP, reason, source: lease.source }, 'ignoring a lease that must not be routed'),
  );
  private readonly warned = new Set<string>();
  private renewTimer?: NodeJS.Timeout;
  private isReady = false;
  private stopping = false;
  private reacquiring?: Promise<void>;
  private readonly leaseListeners: ((e: LeaseEvent) => void)[] = [];
  private readonly counts = { added: 0, removed: 0, snapshots: 0, reacquired: 0 };
  private readonly startedAt = Date.now();

  constructor(private readonly flags: FlagValues, private readonly log: Logger) {}

  private flag<T extends string | number | boolean | string[]>(name: string): T {
    return this.flags[name] as T;
  }

  // ---- AgentState ---------------------------------------------------------------------------

  ready(): boolean {
    return this.isReady;
  }

  onLeaseEvent(listener: (event: LeaseEvent) => void): void {
    this.leaseListeners.push(listener);
  }

  onProbeRtt(listener: (seconds: number) => void): void {
    this.rttListeners.push(listener);
  }

  snapshot(): AgentSnapshot {
    const store = this.store?.status() ?? {
      backend: this.flag<boolean>('kube-subnet-mgr') ? 'kube' : 'etcd',
      connected: false, relists: 0, errors: 0, renewals: 0, renewalFailures: 0,
    };
    return {
      self: this.lease && this.config
        ? {
            lease: this.lease,
            publicIP: this.publicIP,
            tunName: this.flag<string>('tun-name'),
            engine: this.flag<EngineName>('engine'),
            mtu: this.tunMTU(),
            network: formatSubnet(this.config.network),
            port: this.config.port,
          }
        : undefined,
      leases: this.table.all(),
      datapath: this.datapath?.stats(),
      store,
      leaseEvents: { ...this.counts },
      startedAt: this.startedAt,
      probes: this.probes?.summary(),
    };
  }

  // ---- start / stop -------------------------------------------------------------------------

  async start(): Promise<void> {
    try {
      await this.startServers();
      if (!existsSync('/dev/net/tun')) {
        throw new StartupError('/dev/net/tun is missing: load the tun module, or mount /dev/net/tun into the container (hostPath, type CharDevice)');
      }
      this.iface = chooseInterface(this.flag<string[]>('iface'), this.flag<string[]>('iface-regex'));
      this.publicIP = this.flag<string>('public-ip') || this.iface.address;
      parseIPv4(this.publicIP);
      this.log.info({ iface: this.iface.name, address: this.iface.address, publicIP: this.publicIP, mtu: this.iface.mtu }, 'using interface');

      this.store = await this.createStore();
      if (!this.flag<string>('public-ip')) {
        // Kubernetes mode: flannel's node-public-ip annotation stands in for --public-ip.
        const annotated = await this.store.getNodePublicIP?.();
        if (annotated) this.publicIP = annotated;
      }
      const deadline = Date.now() + this.flag<number>('startup-timeout') * 1000;
      this.config = await this.retryUntil(deadline, 'read the network config', () => this.store!.getNetworkConfig());
      this.log.info({ network: formatSubnet(this.config.network), subnetLen: this.config.subnetLen, port: this.config.port }, 'network config');

      const subnetFile = this.flag<string>('subnet-file');
      const previousSubnet = await readPreviousSubnet(subnetFile);
      this.lease = await this.retryUntil(deadline, 'acquire a subnet lease', () =>
        this.store!.acquire(this.publicIP, { previousSubnet }));
      this.log.info({ subnet: formatSubnet(this.lease.subnet), previous: previousSubnet && formatSubnet(previousSubnet) }, 'lease acquired');

      await this.startDatapath(this.lease.subnet);
      // Peers first: the watch fills the route table while the rest of start-up runs.
      this.watcher = this.store.watch((update) => this.onUpdate(update));
      await this.startMasquerade();
      this.startProbes();
      await this.writeSubnetFile();
      this.scheduleRenewal();
      this.isReady = true;
      await this.store.markNetworkAvailable?.();
      this.log.info({ subnet: formatSubnet(this.lease.subnet), engine: this.flag('engine'), tun: this.flag('tun-name') }, 'felt is up');
    } catch (err) {
      await this.stop().catch(() => {});
      throw err;
    }
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.isReady = false;
    clearTimeout(this.renewTimer);
    this.probes?.stop();
    await this.watcher?.stop().catch((err) => this.log.warn({ err }, 'stopping the watch failed'));
    await this.reacquiring?.catch(() => {});
    await this.datapath?.stop().catch((err) => this.log.warn({ err }, 'stopping the data path failed'));
    await this.masq?.teardown().catch((err) => this.log.warn({ err }, 'removing iptables rules failed'));
    // The lease is deliberately kept: a restarted agent takes the same subnet back.
    await this.store?.close().catch(() => {});
    for (const server of this.servers) await server.close().catch(() => {});
    this.log.info(this.lease ? 'felt stopped (lease kept for a restart)' : 'felt stopped');
  }

  private tunMTU(): number {
    return (this.iface?.mtu ?? 1500) - ENCAP_OVERHEAD;
  }

  private async startServers(): Promise<void> {
    const debugAddr = this.flag<string>('debug-addr');
    if (debugAddr) {
      const server = await startDebugServer(debugAddr, this, this.log);
      this.servers.push(server);
      this.log.info({ address: server.address }, 'debug server listening');
    }
    const healthzPort = this.flag<number>('healthz-port');
    if (healthzPort > 0) {
      const server = await startDebugServer(`${this.flag<string>('healthz-ip')}:${healthzPort}`, this, this.log, { only: 'health' });
      this.servers.push(server);
    }
  }

  private async createStore(): Promise<LeaseStore & KubeExtras> {
    if (this.flag<boolean>('kube-subnet-mgr')) {
      const { KubeLeaseStore } = await import('./lease/kube.js');
      return new KubeLeaseStore({
        apiUrl: this.flag<string>('kube-api-url') || undefined,
        kubeconfigFile: this.flag<string>('kubeconfig-file') || undefined,
        annotationPrefix: this.flag<string>('kube-annotation-prefix'),
        netConfigPath: this.flag<string>('net-config-path'),
        setNodeNetworkUnavailable: this.flag<boolean>('set-node-network-unavailable'),
      }, this.log);
    }
    const ttl = Number(process.env.FELT_LEASE_TTL_SECONDS ?? '') || undefined; // tests only: short leases
    return new EtcdLeaseStore({
      endpoints: this.flag<string>('etcd-endpoints').split(',').map((s) => s.trim()).filter(Boolean),
      prefix: this.flag<string>('etcd-prefix'),
      keyFile: this.flag<string>('etcd-keyfile') || undefined,
      certFile: this.flag<string>('etcd-certfile') || undefined,
      caFile: this.flag<string>('etcd-cafile') || undefined,
      username: this.flag<string>('etcd-username') || undefined,
      password: this.flag<string>('etcd-password') || undefined,
      renewMarginMinutes: this.flag<number>('subnet-lease-renew-margin'),
      ttlSeconds: ttl,
    }, this.log);
  }

  /** Retries a start-up step (etcd may still be coming up) until the deadline, then fails clearly. */
  private async retryUntil<T>(deadline: number, what: string, step: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await step();
      } catch (err) {
        const message = (err as Error).message;
        // A bad config or a full network will not fix itself: fail now rather than at the deadline.
        const hopeless = err instanceof ConfigError || err instanceof SubnetsExhaustedError;
        if (hopeless || Date.now() >= deadline || this.stopping) {
          throw new StartupError(`could not ${what}: ${message}`);
        }
        this.log.warn({ attempt, err: message }, `could not ${what}, retrying`);
        await sleep(Math.min(1000 * attempt, 5000, Math.max(100, deadline - Date.now())));
      }
    }
  }

  private datapathConfig(subnet: Subnet): DatapathConfig {
    return {
      tunName: this.flag<string>('tun-name'),
      mtu: this.tunMTU(),
      network: this.config!.network,
      localSubnet: subnet,
      bindIP: parseIPv4(this.iface!.address),
      port: this.config!.port,
    };
  }

  private async startDatapath(subnet: Subnet): Promise<void> {
    const engine = this.flag<EngineName>('engine');
    const threads = this.flag<number>('datapath-threads') === 2 ? 2 : 1;
    const datapath = await createDatapath(engine, this.datapathConfig(subnet), this.log, { threads });
    try {
      await datapath.start();
    } catch (err) {
      await datapath.stop().catch(() => {});
      throw new StartupError(`could not start the ${engine} data path: ${(err as Error).message}`);
    }
    this.datapath = datapath;
    datapath.setRoutes(this.table.routes(subnet));
  }

  /** Peer probes (src/probe/): from our TUN address through our own data path to every peer's. */
  private startProbes(): void {
    this.probes = startPeerProbes({
      enabled: this.flag<boolean>('probe'),
      intervalSeconds: this.flag<number>('probe-interval'),
      maxRate: this.flag<number>('probe-max-rate'),
    }, {
      local: () => (this.lease && this.datapath && this.config ? { address: this.lease.subnet.ip, mtu: this.tunMTU(), port: this.config.port } : undefined),
      peers: () => this.table.all().filter((l) => !this.lease || l.subnet.ip !== this.lease.subnet.ip || l.subnet.prefixLen !== this.lease.subnet.prefixLen),
    }, this.log);
    this.probes.onRtt((seconds) => { for (const l of this.rttListeners) l(seconds); });
    this.onLeaseEvent(() => this.probes?.leaseChanged());
  }

  private async startMasquerade(): Promise<void> {
    const ipMasq = this.flag<boolean>('ip-masq');
    const forward = this.flag<boolean>('iptables-forward-rules');
    if (!ipMasq && !forward) return;
    const { IpMasq } = await import('./masq.js');
    const masq: Masquerade = new IpMasq({
      network: this.config!.network,
      localSubnet: this.lease!.subnet,
      masquerade: ipMasq,
      forwardRules: forward,
      resyncSeconds: this.flag<number>('iptables-resync'),
      randomFully: !this.flag<boolean>('ip-masq-fully-random-disable'),
    }, this.log);
    try {
      await masq.setup();
      this.masq = masq;
    } catch (err) {
      if (ipMasq) throw new StartupError(`could not set up --ip-masq rules: ${(err as Error).message}`);
      // Forward rules are a convenience (on by default, as in flannel): without iptables, go on.
      this.log.error({ err: (err as Error).message }, 'could not add FORWARD accept rules; continuing without them');
    }
  }

  private async writeSubnetFile(): Promise<void> {
    await writeSubnetEnv(this.flag<string>('subnet-file'), {
      network: this.config!.network,
      subnet: this.lease!.subnet,
      mtu: this.tunMTU(),
      ipMasq: this.flag<boolean>('ip-masq'),
    });
  }

  // ---- lease table --------------------------------------------------------------------------

  /** Why a peer lease must not be routed; our own allocator never makes such a lease. */
  private leaseProblem(lease: Lease): string | undefined {
    const config = this.config;
    if (!config) return undefined;
    if (!subnetContains(config.network, lease.subnet)) return `is outside the network ${formatSubnet(config.network)}`;
    // etcd leases all have SubnetLen bits (Kubernetes podCIDRs may differ, overlaps are still refused).
    if (lease.source.kind === 'etcd' && lease.subnet.prefixLen !== config.subnetLen) {
      return `is not a /${config.subnetLen} (SubnetLen)`;
    }
    return undefined;
  }

  private warnOnce(key: string, fields: Record<string, unknown>, message: string): void {
    if (this.warned.has(key)) return;
    if (this.warned.size > 10_000) this.warned.clear();
    this.warned.add(key);
    this.log.warn(fields, message);
  }

  private onUpdate(update: LeaseUpdate): void {
    if (this.stopping) return;
    const changes = this.table.apply(update);
    if (update.kind === 'snapshot') this.counts.snapshots++;
    // One line per change, except for a large snapshot (5,000 leases at start): a summary instead.
    const quiet = changes.length > 20;
    for (const change of changes) {
      this.counts[change.type]++;
      const fields = { event: change.type, subnet: formatSubnet(change.lease.subnet), publicIP: change.lease.publicIP };
      if (quiet) this.log.debug(fields, 'lease event');
      else this.log.info(fields, 'lease event');
      for (const listener of this.leaseListeners) listener(change);
    }
    if (quiet) {
      const added = changes.filter((c) => c.type === 'added').length;
      this.log.info({ added, removed: changes.length - added, leases: this.table.size }, 'lease table updated');
      collectGarbageSoon();
    }
    if (!this.lease) return;
    const own = this.table.get(this.lease.subnet);
    // Compare with what our lease advertises (Kubernetes' public-ip-overwrite may differ from ours).
    if (!own || own.publicIP !== this.lease.publicIP) {
      this.log.error({ subnet: formatSubnet(this.lease.subnet), holder: own?.publicIP },
        'OUR LEASE IS GONE from the store (deleted, expired or taken over): re-acquiring now');
      this.startReacquire();
    } else if (own.expiresAt !== undefined) {
      this.lease = own;
    }
    if (changes.length > 0) this.datapath?.setRoutes(this.table.routes(this.lease.subnet));
  }

  private startReacquire(): void {
    if (this.reacquiring) return;
    this.reacquiring = this.reacquire().finally(() => { this.reacquiring = undefined; });
  }

  /** Takes a lease again (the same subnet when still free), in process: flannel exits here instead. */
  private async reacquire(): Promise<void> {
    const previous = this.lease!.subnet;
    for (let attempt = 1; !this.stopping; attempt++) {
      try {
        const lease = await this.store!.acquire(this.publicIP, { previousSubnet: previous });
        this.counts.reacquired++;
        this.lease = lease;
        if (lease.subnet.ip !== previous.ip || lease.subnet.prefixLen !== previous.prefixLen) {
          this.log.error({ old: formatSubnet(previous), new: formatSubnet(lease.subnet) },
            'our old subnet is taken: moved to a new subnet (pods on the old one must be restarted)');
          const old = this.datapath;
          this.datapath = undefined;
          await old?.stop();
          await this.startDatapath(lease.subnet);
          // The masquerade rules name our subnet: rebuild them for the new one.
          const oldMasq = this.masq;
          this.masq = undefined;
          await oldMasq?.teardown();
          await this.startMasquerade();
          await this.writeSubnetFile();
        } else {
          this.log.warn({ subnet: formatSubnet(lease.subnet) }, 're-acquired our subnet');
        }
        this.datapath?.setRoutes(this.table.routes(lease.subnet));
        this.scheduleRenewal();
        return;
      } catch (err) {
        this.log.error({ attempt, err: (err as Error).message }, 're-acquiring the lease failed, retrying');
        await sleep(Math.min(1000 * attempt, 10_000));
      }
    }
  }

  // ---- renewal ------------------------------------------------------------------------------

  private scheduleRenewal(delayOverride?: number): void {
    clearTimeout(this.renewTimer);
    const expiresAt = this.lease?.expiresAt;
    if (expiresAt === undefined || this.stopping) return; // Kubernetes leases do not expire
    const remaining = expiresAt - Date.now();
    let delay = delayOverride ?? remaining - this.flag<number>('subnet-lease-renew-margin') * 60_000;
    // A margin longer than the lease itself (short test TTLs) renews at half-life instead of spinning.
    if (delay < 1000) delay = Math.max(1000, remaining / 2);
    this.renewTimer = setTimeout(() => void this.renew(), delay);
    this.renewTimer.unref();
  }

  private async renew(): Promise<void> {
    if (!this.lease || this.stopping || this.reacquiring) return;
    try {
      this.lease = await this.store!.renew(this.lease);
      this.log.info({ subnet: formatSubnet(this.lease.subnet), expiresAt: this.lease.expiresAt && new Date(this.lease.expiresAt).toISOString() }, 'lease renewed');
      this.scheduleRenewal();
    } catch (err) {
      if (err instanceof LeaseLostError) {
        this.log.error({ err: err.message }, 'OUR LEASE WAS TAKEN by another node while renewing: re-acquiring now');
        this.startReacquire();
        return;
      }
      const remaining = (this.lease.expiresAt ?? Date.now()) - Date.now();
      const retry = Math.max(1000, Math.min(60_000, remaining / 4));
      this.log.error({ err: (err as Error).message, retryInMs: Math.round(retry) }, 'renewing the lease failed; retrying');
      this.scheduleRenewal(retry);
    }
  }
}
