// Parsed flags (flags.ts) turned into typed settings, once: the agent and `felt leases` read these,
// never flag names. The store settings are shared, so both commands open a store the same way.
import type { FlagValues } from './flags.js';
import type { EngineName } from './datapath/index.js';
import type { EtcdStoreOptions } from './lease/etcd/store.js';
import type { KubeLeaseStoreOptions } from './lease/kube/store.js';

export type StoreSettings = { kind: 'etcd'; etcd: EtcdStoreOptions } | { kind: 'kube'; kube: KubeLeaseStoreOptions };

export interface AgentSettings {
  store: StoreSettings;
  /** --iface and --iface-regex: how to pick the underlay interface. */
  iface: string[];
  ifaceRegex: string[];
  /** --public-ip; undefined: the store's stored address, else the interface's. */
  publicIP?: string;
  /** --public-ipv6; undefined: the store's stored address, else the interface's global IPv6 address. */
  publicIPv6?: string;
  subnetFile: string;
  /** Renew this long before the lease expires. */
  renewMarginMs: number;
  startupTimeoutMs: number;
  engine: EngineName;
  /** Native engine packet threads: 1 for both directions, or 2, one per direction. */
  datapathThreads: 1 | 2;
  tunName: string;
  ipMasq: boolean;
  /** MASQUERADE with --random-fully where iptables has it. */
  randomFully: boolean;
  forwardRules: boolean;
  iptablesResyncSeconds: number;
  /** host:port or unix:/path of the debug server; undefined: none. */
  debugAddr?: string;
  /** host:port of the /healthz-only server; undefined: none. */
  healthzAddr?: string;
  /** Peer probes (--probe, --probe-interval, --probe-max-rate). */
  probes: { enabled: boolean; intervalSeconds: number; maxRate: number };
}

export interface LeasesSettings {
  store: StoreSettings;
  /** Read a running agent's /leases instead of the store. */
  agent?: string;
  json: boolean;
}

/** Typed reads of one parsed command line (flags.ts has checked types, ranges and choices). */
class Reader {
  constructor(private readonly values: FlagValues) {}

  string(name: string): string {
    const v = this.values[name];
    if (typeof v !== 'string') throw new Error(`flag --${name}: expected a string`);
    return v.trim();
  }

  /** A string flag whose empty value means "not set". */
  optional(name: string): string | undefined {
    return this.string(name) || undefined;
  }

  boolean(name: string): boolean {
    const v = this.values[name];
    if (typeof v !== 'boolean') throw new Error(`flag --${name}: expected true or false`);
    return v;
  }

  number(name: string): number {
    const v = this.values[name];
    if (typeof v !== 'number') throw new Error(`flag --${name}: expected a number`);
    return v;
  }

  list(name: string): string[] {
    const v = this.values[name];
    if (!Array.isArray(v)) throw new Error(`flag --${name}: expected a list`);
    return v;
  }

  has(name: string): boolean {
    return name in this.values;
  }
}

/** The lease store a command line names: Kubernetes with --kube-subnet-mgr, else etcd. */
export function storeSettings(values: FlagValues, env: NodeJS.ProcessEnv = process.env): StoreSettings {
  return storeFrom(new Reader(values), env);
}

function storeFrom(f: Reader, env: NodeJS.ProcessEnv): StoreSettings {
  if (f.has('kube-subnet-mgr') && f.boolean('kube-subnet-mgr')) {
    return {
      kind: 'kube',
      kube: {
        apiUrl: f.optional('kube-api-url'),
        kubeconfigFile: f.optional('kubeconfig-file'),
        annotationPrefix: f.string('kube-annotation-prefix'),
        netConfigPath: f.string('net-config-path'),
        setNodeNetworkUnavailable: f.boolean('set-node-network-unavailable'),
        env,
      },
    };
  }
  return {
    kind: 'etcd',
    etcd: {
      endpoints: f.string('etcd-endpoints').split(',').map((s) => s.trim()).filter(Boolean),
      prefix: f.string('etcd-prefix'),
      keyFile: f.optional('etcd-keyfile'),
      certFile: f.optional('etcd-certfile'),
      caFile: f.optional('etcd-cafile'),
      username: f.optional('etcd-username'),
      password: f.optional('etcd-password'),
      // Tests only: short leases, to see renewals and expiry in seconds rather than a day.
      ttlSeconds: Number(env.FELT_LEASE_TTL_SECONDS ?? '') || undefined,
    },
  };
}

/** Settings of `felt run`. */
export function agentSettings(values: FlagValues, env: NodeJS.ProcessEnv = process.env): AgentSettings {
  const f = new Reader(values);
  const healthzPort = f.number('healthz-port');
  return {
    store: storeFrom(f, env),
    iface: f.list('iface'),
    ifaceRegex: f.list('iface-regex'),
    publicIP: f.optional('public-ip'),
    publicIPv6: f.optional('public-ipv6'),
    subnetFile: f.string('subnet-file'),
    renewMarginMs: f.number('subnet-lease-renew-margin') * 60_000,
    startupTimeoutMs: f.number('startup-timeout') * 1000,
    engine: f.string('engine') as EngineName,
    datapathThreads: f.number('datapath-threads') === 2 ? 2 : 1,
    tunName: f.string('tun-name'),
    ipMasq: f.boolean('ip-masq'),
    randomFully: !f.boolean('ip-masq-fully-random-disable'),
    forwardRules: f.boolean('iptables-forward-rules'),
    iptablesResyncSeconds: f.number('iptables-resync'),
    debugAddr: f.optional('debug-addr'),
    healthzAddr: healthzPort > 0 ? `${f.string('healthz-ip')}:${healthzPort}` : undefined,
    probes: { enabled: f.boolean('probe'), intervalSeconds: f.number('probe-interval'), maxRate: f.number('probe-max-rate') },
  };
}

/** Settings of `felt leases`. */
export function leasesSettings(values: FlagValues, env: NodeJS.ProcessEnv = process.env): LeasesSettings {
  const f = new Reader(values);
  return { store: storeFrom(f, env), agent: f.optional('agent'), json: f.boolean('json') };
}
