// What `felt doctor` knows before it checks anything: the agent's /leases document (when it answers),
// the store's leases and config (read directly when asked to, or when the agent is down), subnet.env.
import type { LeasesView } from '../debug/view.js';
import type { Lease, NetworkConfig } from '../lease/types.js';
import type { Subnet } from '../net/cidr.js';
import type { Subnet6 } from '../net/ip6.js';

export interface DoctorContext {
  /** "unix:/run/felt.sock" or "127.0.0.1:8286". */
  agentLabel: string;
  /** The agent's /leases document; undefined when it did not answer. */
  view?: LeasesView;
  agentError?: string;
  /** /readyz answered 200. */
  ready?: boolean;
  /** Read from the store directly. */
  store?: { leases: Lease[]; config?: NetworkConfig; endpoints: string };
  storeError?: string;
  /** Keys of subnet.env, when readable. */
  subnetEnv?: Record<string, string>;
  subnetFile: string;
  tunName: string;
  /** This node, from the agent, else from subnet.env and the store. */
  node: {
    subnet?: Subnet;
    publicIP?: string;
    /** Our IPv6 underlay address, when we have one. */
    publicIPv6?: string;
    /** The TUN MTU the agent uses (or FLANNEL_MTU). */
    mtu?: number;
    network?: Subnet;
    /** IPv6Network and our IPv6 subnet (EnableIPv6). */
    network6?: Subnet6;
    subnet6?: Subnet6;
    port: number;
  };
  /** How long active probes wait for answers (ms). */
  timeoutMs: number;
}
