// What the peer prober knows about each peer, as the agent's snapshot carries it (the /leases
// document, the table and /metrics are built from this).

export type Reachability = 'reachable' | 'unreachable' | 'unknown';

/** Full-size probe outcome: 'failed' only when small probes to the peer pass meanwhile. */
export type PathMtuState = 'ok' | 'failed' | 'unknown';

/** An ICMP error that concerns a peer: evidence for why it is silent. */
export interface ProbeEvidence {
  /** "port-unreachable", "host-unreachable", "frag-needed", "net-unreachable", ... */
  kind: string;
  /** Who sent the ICMP error (dotted, or IPv6 text for an ICMPv6 error). */
  from: string;
  /** What it was about: "udp 192.168.77.13:8285" (the tunnel) or "probe" (our echo request). */
  about: 'tunnel' | 'probe';
  /** frag-needed: the next-hop MTU it names. */
  mtu?: number;
  at: number;
}

export interface PeerProbeStatus {
  subnet: string;
  publicIP: string;
  /** 6: an IPv6 probe target (keyed by the peer's IPv6 subnet); absent for IPv4 ones. */
  family?: 6;
  /** The address probed: the peer's TUN address, its lease's .0 (IPv6: its IPv6 subnet's network address). */
  target: string;
  state: Reachability;
  /** When `state` last changed (ms since the epoch); undefined before the first verdict. */
  since?: number;
  lastProbeAt?: number;
  lastSuccessAt?: number;
  lastFailureAt?: number;
  consecutiveFailures: number;
  /** Small probes over the recent window: sent (decided) and answered. */
  windowSent: number;
  windowAnswered: number;
  /** Median round-trip time of the answered small probes in the window (ms). */
  rttP50Ms?: number;
  /** Full-size probe (TUN MTU, DF set). */
  mtu: { state: PathMtuState; size: number; checkedAt?: number };
  /** The last ICMP error about this peer, if any. */
  evidence?: ProbeEvidence;
}

export interface ProbeSummary {
  enabled: boolean;
  /** Why probing does not run although enabled (e.g. no CAP_NET_RAW). */
  error?: string;
  intervalSeconds: number;
  maxRate: number;
  timeoutMs: number;
  sent: { small: number; full: number };
  replies: number;
  lost: number;
  /** ICMP errors seen that concern a peer. */
  errors: number;
  /** Whether this node probes IPv6 too (EnableIPv6): the metrics then carry a family label. */
  ipv6?: boolean;
  /** Keyed by the peer's subnet ("10.244.3.0/24"); IPv6 targets by its IPv6 subnet ("fd00:10:244:3::/64"). */
  peers: Record<string, PeerProbeStatus>;
}
