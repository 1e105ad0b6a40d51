// What the running agent exposes to the debug server (/leases, /metrics, /healthz, /readyz).
import type { Lease, StoreStatus } from './lease/types.js';
import type { DatapathStats } from './datapath/types.js';
import type { ProbeSummary } from './probe/types.js';

export interface AgentSnapshot {
  /** This node: its lease and data-path settings. Undefined until a lease is held. */
  self?: {
    lease: Lease;
    publicIP: string;
    /** PublicIPv6 (EnableIPv6 and an IPv6 underlay address). */
    publicIPv6?: string;
    tunName: string;
    engine: 'native' | 'js';
    mtu: number;
    /** Network (EnableIPv4; absent on an IPv6-only overlay). */
    network?: string;
    /** IPv6Network (EnableIPv6). */
    network6?: string;
    port: number;
  };
  /** Every known lease (ours included), sorted by subnet. */
  leases: Lease[];
  /** Data-path counters; undefined before the data path runs. */
  datapath?: DatapathStats;
  store: StoreStatus;
  /** Lease events applied to the table since start, by type; plus own-lease re-acquisitions. */
  leaseEvents: { added: number; removed: number; snapshots: number; reacquired: number };
  startedAt: number;
  /** Peer probes; undefined before they start. */
  probes?: ProbeSummary;
}

/** Implemented by the agent; the debug server only reads through it. */
export interface AgentState {
  /** True once subnet.env is written and the data path runs. */
  ready(): boolean;
  snapshot(): AgentSnapshot;
  /** Called with the RTT (seconds) of every answered peer probe (the /metrics histogram). */
  onProbeRtt?(listener: (seconds: number) => void): void;
}
