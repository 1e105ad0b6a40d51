// The probe parts of the /leases document (src/debug/view.ts joins them in): per lease, what the
// prober knows about that peer; at the top, the totals. docs/debug.md documents every field.
import type { PathMtuState, PeerProbeStatus, ProbeSummary, Reachability } from './types.js';

export interface PeerProbeView {
  state: Reachability;
  /** The TUN address probed (the lease's .0). */
  target: string;
  since: string | null;
  sinceSecondsAgo: number | null;
  lastProbeAt: string | null;
  lastSuccessAt: string | null;
  lastSuccessSecondsAgo: number | null;
  lastFailureAt: string | null;
  consecutiveFailures: number;
  /** Small probes decided in the recent window, and how many were answered. */
  windowSent: number;
  windowAnswered: number;
  /** Median RTT of the answered probes in the window, ms (3 decimals). */
  rttP50Ms: number | null;
  /** Full-size probe at the TUN MTU with DF set. */
  pathMtu: { state: PathMtuState; size: number | null; checkedAt: string | null };
  /** The last ICMP error about this peer. */
  evidence: { kind: string; from: string; about: 'tunnel' | 'probe'; mtu: number | null; at: string; secondsAgo: number } | null;
}

export interface ProbesView {
  enabled: boolean;
  error: string | null;
  intervalSeconds: number;
  maxRate: number;
  timeoutMs: number;
  sent: { small: number; full: number };
  replies: number;
  lost: number;
  errors: number;
  /** IPv4 probe targets (every target when the node does not probe IPv6). */
  peers: ProbeCounts;
  /** IPv6 probe targets: only when the node probes IPv6 (EnableIPv6). */
  peers6?: ProbeCounts;
}

export interface ProbeCounts { reachable: number; unreachable: number; unknown: number; pathMtuFailing: number }

function iso(ms: number | undefined): string | null {
  return ms === undefined || !Number.isFinite(ms) || ms <= 0 ? null : new Date(ms).toISOString();
}

function ago(now: number, ms: number | undefined): number | null {
  return ms === undefined ? null : Math.max(0, Math.round((now - ms) / 1000));
}

export function peerProbeView(s: PeerProbeStatus, now: number): PeerProbeView {
  return {
    state: s.state,
    target: s.target,
    since: iso(s.since),
    sinceSecondsAgo: ago(now, s.since),
    lastProbeAt: iso(s.lastProbeAt),
    lastSuccessAt: iso(s.lastSuccessAt),
    lastSuccessSecondsAgo: ago(now, s.lastSuccessAt),
    lastFailureAt: iso(s.lastFailureAt),
    consecutiveFailures: s.consecutiveFailures,
    windowSent: s.windowSent,
    windowAnswered: s.windowAnswered,
    rttP50Ms: s.rttP50Ms === undefined ? null : Math.round(s.rttP50Ms * 1000) / 1000,
    pathMtu: { state: s.mtu.state, size: s.mtu.size || null, checkedAt: iso(s.mtu.checkedAt) },
    evidence: s.evidence
      ? { kind: s.evidence.kind, from: s.evidence.from, about: s.evidence.about, mtu: s.evidence.mtu ?? null, at: iso(s.evidence.at) ?? '', secondsAgo: ago(now, s.evidence.at) ?? 0 }
      : null,
  };
}

export function probesView(p: ProbeSummary): ProbesView {
  const peers = { reachable: 0, unreachable: 0, unknown: 0, pathMtuFailing: 0 };
  const peers6 = { reachable: 0, unreachable: 0, unknown: 0, pathMtuFailing: 0 };
  for (const s of Object.values(p.peers)) {
    const n = s.family === 6 ? peers6 : peers;
    n[s.state]++;
    if (s.mtu.state === 'failed') n.pathMtuFailing++;
  }
  return {
    enabled: p.enabled,
    error: p.error ?? null,
    intervalSeconds: p.intervalSeconds,
    maxRate: p.maxRate,
    timeoutMs: p.timeoutMs,
    sent: { ...p.sent },
    replies: p.replies,
    lost: p.lost,
    errors: p.errors,
    peers,
    ...(p.ipv6 ? { peers6 } : {}),
  };
}
