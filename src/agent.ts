// The agent: takes a subnet lease, runs the data path, keeps the route table in step with the
// lease store, renews the lease, writes subnet.env and serves health/debug endpoints.
// Over 450 lines: start-up, lease use, the watch, re-acquiring and renewal share one lease and data
// path; the pure parts live in lease/table.ts, public-ips.ts, subnetenv.ts and masq.ts.
import { existsSync } from 'node:fs';
import type { Logger } from './log.js';
import { LoggedOnce } from './log.js';
import type { AgentSnapshot, AgentState } from './agent-state.js';
import type { AgentSettings } from './settings.js';
import type { Lease, LeaseEvent, LeaseStore, LeaseUpdate, NetworkConfig, Watcher } from './lease/types.js';
import { LeaseLostError } from './lease/types.js';
import type { Datapath, DatapathConfig } from './datapath/types.js';
import { createDatapath } from './datapath/index.js';
import { LeaseTable } from './lease/table.js';
import { openLeaseStore } from './lease/open.js';
import { chooseInterface, type UnderlayInterface } from './net/iface.js';
import { formatSubnet, parseIPv4, subnetContains, type Subnet } from './net/cidr.js';
import { leaseName, subnetText } from './lease/name.js';
import { formatSubnet6, parseIPv6, subnet6Contains, subnet6Equals, type Subnet6 } from './net/ip6.js';
import { readPreviousSubnets, writeSubnetEnv } from './subnetenv.js';
import { NO_PUBLIC_IP, resolvePublicIPs } from './public-ips.js';
import { startDebugServer } from './debug/server.js';
import { collectGarbageSoon } from './heap.js';
import { errorText, retry } from './retry.js';
import { startPeerProbes, type PeerProbes } from './probe/index.js';

/** IPv4 (20) + UDP (8): the TUN MTU is the underlay MTU minus this. */
export const ENCAP_OVERHEAD = 28;
/** IPv6 (40) + UDP (8): the overhead when the node has an IPv6 underlay (some peers are reached over it). */
export const ENCAP_OVERHEAD_IPV6 = 48;

/** A start-up failure with a message fit for one line on stderr. */
export class StartupError extends Error {}

interface Closable {
  close(): Promise<void>;
}

interface Masquerade {
  setup(): Promise<void>;
  teardown(): Promise<void>;
}

/** A snapshot with more changes than this is logged as one summary line. */
const QUIET_CHANGES = 20;

export class Agent implements AgentState {
  private store?: LeaseStore;
  private config?: NetworkConfig;
  private iface?: UnderlayInterface;
  private publicIP = '';
  /** PublicIPv6 (RFC 5952) when the cluster has EnableIPv6 and this node an IPv6 underlay address. */
  private publicIPv6?: string;
  private lease?: Lease;
  private datapath?: Datapath;
  private watcher?: Watcher;
  private masq?: Masquerade;
  private servers: Closable[] = [];
  private probes?: PeerProbes;
  private readonly rttListeners: ((seconds: number) => void)[] = [];
  private readonly table = new LeaseTable(
    (lease) => this.leaseProblem(lease),
    ({ lease, reason }) => {
      if (this.warned.first(`${leaseName(lease)} ${lease.publicIP} ${reason}`)) {
        this.log.warn({ subnet: leaseName(lease), publicIP: lease.publicIP, reason, source: lease.source }, 'ignoring a lease that must not be routed');
      }
    },
  );
  private readonly warned = new LoggedOnce();
  private renewTimer?: NodeJS.Timeout;
  private isReady = false;
  private stopping = false;
  /** Aborted by stop(): ends every retry wait. */
  private readonly abort = new AbortController();
  private reacquiring?: Promise<void>;
  private readonly counts = { added: 0, removed: 0, snapshots: 0, reacquired: 0 };
  private readonly startedAt = Date.now();

  constructor(private readonly settings: AgentSettings, private readonly log: Logger) {}

  // ---- AgentState ---------------------------------------------------------------------------

  ready(): boolean {
    return this.isReady;
  }

  onProbeRtt(listener: (seconds: number) => void): void {
    this.rttListeners.push(listener);
  }

  snapshot(): AgentSnapshot {
    const store = this.store?.status() ?? {
      backend: this.settings.store.kind,
      connected: false, relists: 0, errors: 0, renewals: 0, renewalFailures: 0,
    };
    return {
      self: this.lease && this.config
        ? {
            lease: this.lease,
            publicIP: this.publicIP,
            ...(this.publicIPv6 ? { publicIPv6: this.publicIPv6 } : {}),
            tunName: this.settings.tunName,
            engine: this.settings.engine,
            mtu: this.tunMTU(),
            ...(this.config.network ? { network: formatSubnet(this.config.network) } : {}),
            ...(this.config.ipv6 ? { network6: formatSubnet6(this.config.ipv6.network) } : {}),
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
      this.iface = chooseInterface(this.settings.iface, this.settings.ifaceRegex);
      this.log.info({ iface: this.iface.name, address: this.iface.address, address6: this.iface.address6, mtu: this.iface.mtu }, 'using interface');

      const store = await openLeaseStore(this.settings.store, this.log);
      this.store = store;
      const deadline = Date.now() + this.settings.startupTimeoutMs;
      // Kubernetes mode: flannel's node-public-ip annotation stands in for --public-ip.
      this.config = await this.startupStep(deadline, 'read the network config', () => store.getNetworkConfig());
      await this.choosePublicIPs(deadline, store, this.iface, this.config);
      this.log.info({
        ...(this.config.enableIPv4 ? { network: formatSubnet(this.config.network), subnetLen: this.config.subnetLen } : { enableIPv4: false }),
        ...(this.config.ipv6 ? { network6: formatSubnet6(this.config.ipv6.network), subnetLen6: this.config.ipv6.subnetLen } : {}),
        port: this.config.port,
        publicIP: this.publicIP,
        publicIPv6: this.publicIPv6,
      }, 'network config');

      const { subnet: previousSubnet, subnet6: previousSubnet6 } = await readPreviousSubnets(this.settings.subnetFile);
      const lease = await this.startupStep(deadline, 'acquire a subnet lease', () =>
        store.acquire(this.publicIP, { previousSubnet, previousSubnet6, publicIPv6: this.publicIPv6 }));
      this.log.info({
        subnet: subnetText(lease.subnet),
        subnet6: lease.ipv6Subnet && formatSubnet6(lease.ipv6Subnet),
        previous: previousSubnet && formatSubnet(previousSubnet),
      }, 'lease acquired');
      await this.useLease(lease);
      this.startProbes();
      this.isReady = true;
      await store.completeLease();
      this.log.info({ subnet: leaseName(lease), engine: this.settings.engine, tun: this.settings.tunName }, 'felt is up');
    } catch (err) {
      await this.stop().catch(() => {});
      throw err;
    }
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.isReady = false;
    this.abort.abort();
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

  /** PublicIP and PublicIPv6 (public-ips.ts); a node with neither cannot start. */
  private async choosePublicIPs(deadline: number, store: LeaseStore, iface: UnderlayInterface, config: NetworkConfig): Promise<void> {
    const sources = {
      flag: this.settings.publicIP,
      flag6: this.settings.publicIPv6,
      stored: () => this.startupStep(deadline, 'read the stored public IP', () => store.storedPublicIP()),
      stored6: () => this.startupStep(deadline, 'read the stored public IPv6', () => store.storedPublicIPv6()),
    };
    try {
      ({ publicIP: this.publicIP, publicIPv6: this.publicIPv6 } = await resolvePublicIPs(sources, iface, config));
    } catch (err) {
      throw err instanceof StartupError ? err : new StartupError((err as Error).message);
    }
  }

  /**
   * Retries a start-up step (etcd may still be coming up) until the deadline, then fails clearly;
   * an error retrying cannot fix (bad config, 401/403, a full network) fails at once.
   */
  private async startupStep<T>(deadline: number, what: string, step: () => Promise<T>): Promise<T> {
    try {
      return await retry(step, {
        what,
        deadline,
        signal: this.abort.signal,
        delayMs: (attempt) => Math.min(1000 * attempt, 5000),
        onRetry: (err, attempt) => this.log.warn({ attempt, err: errorText(err) }, `could not ${what}, retrying`),
      });
    } catch (err) {
      throw new StartupError(`could not ${what}: ${errorText(err)}`);
    }
  }

  /**
   * Puts a lease to use, at start and after a re-acquire: the watch (once), the data path, the
   * masquerade rules and subnet.env for its subnet (rebuilt when the subnet moved), then renewals.
   */
  private async useLease(lease: Lease): Promise<void> {
    const moved = this.lease !== undefined && (!sameSubnet(this.lease.subnet, lease.subnet) || !sameSubnet6(this.lease.ipv6Subnet, lease.ipv6Subnet));
    this.lease = lease;
    // Peers first: the watch fills the route table while the rest runs.
    this.watcher ??= this.store!.watch((update) => this.onUpdate(update));
    if (moved || !this.datapath) {
      const old = this.datapath;
      this.datapath = undefined;
      await old?.stop();
      await this.startDatapath(lease);
      // The masquerade rules name our subnet: rebuild them for the new one.
      const oldMasq = this.masq;
      this.masq = undefined;
      await oldMasq?.teardown();
      await this.startMasquerade(lease);
      await this.writeSubnetFile(lease);
    }
    this.pushRoutes();
    this.scheduleRenewal();
  }

  /** The node's IPv6 underlay address (the second socket binds it): EnableIPv6 and an IPv6 address. */
  private bindIPv6(): bigint | undefined {
    if (!this.config?.ipv6 || !this.publicIPv6) return undefined;
    return parseIPv6(this.iface?.address6 ?? this.publicIPv6);
  }

  /** Underlay MTU minus the IPv4 + UDP headers, or IPv6 + UDP when some peers are reached over IPv6. */
  private tunMTU(): number {
    return (this.iface?.mtu ?? 1500) - (this.bindIPv6() !== undefined ? ENCAP_OVERHEAD_IPV6 : ENCAP_OVERHEAD);
  }

  private async startServers(): Promise<void> {
    const { debugAddr, healthzAddr } = this.settings;
    if (debugAddr) {
      const server = await startDebugServer(debugAddr, this, this.log);
      this.servers.push(server);
      this.log.info({ address: server.address }, 'debug server listening');
    }
    if (healthzAddr) {
      const server = await startDebugServer(healthzAddr, this, this.log, { only: 'health' });
      this.servers.push(server);
    }
  }

  private datapathConfig(lease: Lease): DatapathConfig {
    const network6 = this.config!.ipv6?.network;
    const network = this.config!.network;
    const bindIPv6 = this.bindIPv6();
    return {
      tunName: this.settings.tunName,
      mtu: this.tunMTU(),
      // Absent on an IPv6-only overlay: no IPv4 on the TUN.
      ...(network && lease.subnet ? { network, localSubnet: lease.subnet } : {}),
      // 0: no IPv4 underlay address (an IPv6-only interface).
      bindIP: this.iface!.address ? parseIPv4(this.iface!.address) : 0,
      port: this.config!.port,
      ...(network6 && lease.ipv6Subnet ? { network6, localSubnet6: lease.ipv6Subnet } : {}),
      ...(bindIPv6 !== undefined ? { bindIPv6 } : {}),
    };
  }

  private async startDatapath(lease: Lease): Promise<void> {
    const engine = this.settings.engine;
    const datapath = await createDatapath(engine, this.datapathConfig(lease), this.log, { threads: this.settings.datapathThreads });
    try {
      await datapath.start();
    } catch (err) {
      await datapath.stop().catch(() => {});
      throw new StartupError(`could not start the ${engine} data path: ${(err as Error).message}`);
    }
    this.datapath = datapath;
    datapath.setRoutes(this.table.routes(lease, this.config?.ipv6 !== undefined));
  }

  /**
   * Peer probes (src/probe/): from our TUN address through our own data path to every peer's. With
   * EnableIPv6 each peer's IPv6 tunnel address is probed too, from ours (ICMPv6); an IPv6-only overlay
   * has only those.
   */
  private startProbes(): void {
    const ipv6 = this.config?.ipv6 !== undefined;
    this.probes = startPeerProbes({ ...this.settings.probes, ...(ipv6 ? { ipv6 } : {}) }, {
      local: () => {
        const lease = this.lease;
        if (!lease || !this.datapath || !this.config || (!lease.subnet && !lease.ipv6Subnet)) return undefined;
        return {
          ...(lease.subnet ? { address: lease.subnet.ip } : {}),
          ...(ipv6 && lease.ipv6Subnet ? { address6: lease.ipv6Subnet.ip } : {}),
          mtu: this.tunMTU(),
          port: this.config.port,
        };
      },
      peers: () => this.table.all().filter((l) => !this.lease || leaseName(l) !== leaseName(this.lease)),
    }, this.log);
    this.probes.onRtt((seconds) => { for (const l of this.rttListeners) l(seconds); });
  }

  /** The iptables rules for the IPv4 network (EnableIPv4), and with EnableIPv6 the ip6tables ones for the IPv6 network. */
  private async startMasquerade(lease: Lease): Promise<void> {
    const { ipMasq, forwardRules: forward } = this.settings;
    if (!ipMasq && !forward) return;
    const { IpMasq } = await import('./masq.js');
    const six = this.config!.ipv6;
    const network = this.config!.network;
    const families = [
      ...(network && lease.subnet ? [{ network, localSubnet: lease.subnet }] : []),
      ...(six && lease.ipv6Subnet ? [{ network: six.network, localSubnet: lease.ipv6Subnet }] : []),
    ];
    const installed: Masquerade[] = [];
    for (const family of families) {
      const masq: Masquerade = new IpMasq({
        ...family,
        masquerade: ipMasq,
        forwardRules: forward,
        resyncSeconds: this.settings.iptablesResyncSeconds,
        randomFully: this.settings.randomFully,
      }, this.log);
      try {
        await masq.setup();
        installed.push(masq);
      } catch (err) {
        if (ipMasq) {
          for (const m of installed) await m.teardown().catch(() => {});
          throw new StartupError(`could not set up --ip-masq rules: ${(err as Error).message}`);
        }
        // Forward rules are a convenience (on by default, as in flannel): without iptables, go on.
        this.log.error({ err: (err as Error).message }, 'could not add FORWARD accept rules; continuing without them');
      }
    }
    if (installed.length > 0) {
      this.masq = {
        setup: async () => { for (const m of installed) await m.setup(); },
        teardown: async () => { for (const m of installed) await m.teardown(); },
      };
    }
  }

  private async writeSubnetFile(lease: Lease): Promise<void> {
    const network6 = this.config!.ipv6?.network;
    const network = this.config!.network;
    await writeSubnetEnv(this.settings.subnetFile, {
      // flannel writes FLANNEL_NETWORK/FLANNEL_SUBNET only with EnableIPv4.
      ...(network && lease.subnet ? { network, subnet: lease.subnet } : {}),
      ...(network6 && lease.ipv6Subnet ? { network6, subnet6: lease.ipv6Subnet } : {}),
      mtu: this.tunMTU(),
      ipMasq: this.settings.ipMasq,
    });
  }

  // ---- lease table --------------------------------------------------------------------------

  /** Why a peer lease must not be routed; our own allocator never makes such a lease. */
  private leaseProblem(lease: Lease): string | undefined {
    const config = this.config;
    if (!config) return undefined;
    if (config.enableIPv4) {
      if (!lease.subnet) return 'has no IPv4 subnet (a lease of an IPv6-only overlay) but EnableIPv4 is set';
      if (!subnetContains(config.network, lease.subnet)) return `is outside the network ${formatSubnet(config.network)}`;
      // etcd leases all have SubnetLen bits (Kubernetes podCIDRs may differ, overlaps are still refused).
      if (lease.source.kind === 'etcd' && lease.subnet.prefixLen !== config.subnetLen) {
        return `is not a /${config.subnetLen} (SubnetLen)`;
      }
    } else if (lease.subnet) {
      return 'has an IPv4 subnet but the network config has EnableIPv4=false (an IPv6-only overlay)';
    } else if (!lease.ipv6Subnet) {
      return 'has no IPv6 subnet, and the overlay is IPv6 only';
    }
    const six = config.ipv6;
    if (six && lease.ipv6Subnet) {
      if (!subnet6Contains(six.network, lease.ipv6Subnet)) return `has IPv6 subnet ${formatSubnet6(lease.ipv6Subnet)} outside the IPv6 network ${formatSubnet6(six.network)}`;
      if (lease.source.kind === 'etcd' && lease.ipv6Subnet.prefixLen !== six.subnetLen) {
        return `has an IPv6 subnet that is not a /${six.subnetLen} (IPv6SubnetLen)`;
      }
    }
    return undefined;
  }

  // ---- lease table --------------------------------------------------------------------------

  /** A watch update: into the table, then checks on our own lease, then routes to the data path. */
  private onUpdate(update: LeaseUpdate): void {
    if (this.stopping) return;
    const changes = this.table.apply(update);
    this.count(update, changes);
    this.checkOwnLease();
    if (changes.length > 0) {
      this.pushRoutes();
      this.probes?.leaseChanged();
    }
  }

  /** Counts and logs applied changes: one line each, or a summary for a large snapshot. */
  private count(update: LeaseUpdate, changes: LeaseEvent[]): void {
    if (update.kind === 'snapshot') this.counts.snapshots++;
    const quiet = changes.length > QUIET_CHANGES;
    for (const change of changes) {
      this.counts[change.type]++;
      const l = change.lease;
      const fields = {
        event: change.type,
        subnet: subnetText(l.subnet),
        publicIP: l.publicIP,
        ...(l.ipv6Subnet ? { subnet6: formatSubnet6(l.ipv6Subnet) } : {}),
        ...(l.publicIPv6 ? { publicIPv6: l.publicIPv6 } : {}),
      };
      if (quiet) this.log.debug(fields, 'lease event');
      else this.log.info(fields, 'lease event');
    }
    if (quiet) {
      const added = changes.filter((c) => c.type === 'added').length;
      this.log.info({ added, removed: changes.length - added, leases: this.table.size }, 'lease table updated');
      collectGarbageSoon();
    }
  }

  /** Our lease as the store shows it: gone or taken over -> re-acquire; renewed -> keep its expiry. */
  private checkOwnLease(): void {
    if (!this.lease) return;
    const own = this.table.get(this.lease);
    // Compare with what our lease advertises (Kubernetes' public-ip-overwrite may differ from ours).
    if (!own || own.publicIP !== this.lease.publicIP || (own.publicIP === NO_PUBLIC_IP && own.publicIPv6 !== this.lease.publicIPv6)) {
      this.log.error({ subnet: leaseName(this.lease), holder: own?.publicIP },
        'OUR LEASE IS GONE from the store (deleted, expired or taken over): re-acquiring now');
      this.startReacquire();
    } else if (own.expiresAt !== undefined) {
      this.lease = own;
    }
  }

  private pushRoutes(): void {
    if (this.lease) this.datapath?.setRoutes(this.table.routes(this.lease, this.config?.ipv6 !== undefined));
  }

  private startReacquire(): void {
    if (this.reacquiring || this.stopping) return;
    this.reacquiring = this.reacquire().finally(() => { this.reacquiring = undefined; });
  }

  /**
   * Takes a lease again (the same subnet when still free) and puts it to use, in process, retrying
   * until it works or the agent stops: flannel exits here instead.
   */
  private async reacquire(): Promise<void> {
    clearTimeout(this.renewTimer);
    const previous = this.lease!;
    await retry(async () => {
      const lease = await this.store!.acquire(this.publicIP, {
        previousSubnet: previous.subnet,
        previousSubnet6: previous.ipv6Subnet,
        publicIPv6: this.publicIPv6,
      });
      if (sameSubnet(lease.subnet, previous.subnet) && sameSubnet6(lease.ipv6Subnet, previous.ipv6Subnet)) {
        this.log.warn({ subnet: leaseName(lease) }, 're-acquired our subnet');
      } else {
        this.log.error({ old: leaseName(previous), new: leaseName(lease) },
          'our old subnet is taken: moved to a new subnet (pods on the old one must be restarted)');
      }
      await this.useLease(lease);
      this.counts.reacquired++;
    }, {
      what: 're-acquire the lease',
      signal: this.abort.signal,
      // A network that is full or a config that is wrong now may be fixed by others: keep trying.
      permanent: () => false,
      delayMs: (attempt) => Math.min(1000 * attempt, 10_000),
      onRetry: (err, attempt) => this.log.error({ attempt, err: errorText(err) }, 're-acquiring the lease failed, retrying'),
    }).catch((err: unknown) => {
      if (!this.stopping) throw err;
    });
  }

  // ---- renewal ------------------------------------------------------------------------------

  private scheduleRenewal(delayOverride?: number): void {
    clearTimeout(this.renewTimer);
    const expiresAt = this.lease?.expiresAt;
    if (expiresAt === undefined || this.stopping) return; // Kubernetes leases do not expire
    const remaining = expiresAt - Date.now();
    let delay = delayOverride ?? remaining - this.settings.renewMarginMs;
    // A margin longer than the lease itself (short test TTLs) renews at half-life instead of spinning.
    if (delay < 1000) delay = Math.max(1000, remaining / 2);
    this.renewTimer = setTimeout(() => void this.renew(), delay);
    this.renewTimer.unref();
  }

  private async renew(): Promise<void> {
    if (!this.lease || this.stopping || this.reacquiring) return;
    try {
      this.lease = await this.store!.renew(this.lease);
      this.log.info({ subnet: leaseName(this.lease), expiresAt: this.lease.expiresAt && new Date(this.lease.expiresAt).toISOString() }, 'lease renewed');
      this.scheduleRenewal();
    } catch (err) {
      if (err instanceof LeaseLostError) {
        this.log.error({ err: err.message }, 'OUR LEASE WAS TAKEN by another node while renewing: re-acquiring now');
        this.startReacquire();
        return;
      }
      const remaining = (this.lease.expiresAt ?? Date.now()) - Date.now();
      const retryInMs = Math.max(1000, Math.min(60_000, remaining / 4));
      this.log.error({ err: errorText(err), retryInMs: Math.round(retryInMs) }, 'renewing the lease failed; retrying');
      this.scheduleRenewal(retryInMs);
    }
  }
}

function sameSubnet(a: Subnet | undefined, b: Subnet | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.ip === b.ip && a.prefixLen === b.prefixLen;
}

function sameSubnet6(a: Subnet6 | undefined, b: Subnet6 | undefined): boolean {
  return a === undefined || b === undefined ? a === b : subnet6Equals(a, b);
}
