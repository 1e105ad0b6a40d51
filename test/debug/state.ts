// A hand-built AgentState for the debug-server tests: a plain object implementing the interface,
// holding a snapshot the test edits. The HTTP server under test is the real one.
import type { AgentSnapshot, AgentState } from '../../src/agent-state.js';
import type { DatapathStats, PeerStats } from '../../src/datapath/types.js';
import { emptyDropCounters } from '../../src/datapath/types.js';
import type { Lease } from '../../src/lease/types.js';
import type { PeerProbeStatus, ProbeSummary } from '../../src/probe/types.js';
import { parseSubnet } from '../../src/net/cidr.js';

export const HOUR = 3600_000;

export function etcdLease(subnet: string, publicIP: string, expiresInMs: number | undefined, rev = '7', leaseId: string | null = '694d9a2b1c3e0001'): Lease {
  const key = `/coreos.com/network/subnets/${subnet.replace('/', '-')}`;
  return {
    subnet: parseSubnet(subnet, true),
    publicIP,
    expiresAt: expiresInMs === undefined ? undefined : Date.now() + expiresInMs,
    source: { kind: 'etcd', key, modRevision: rev, etcdLeaseId: leaseId ?? undefined },
    attrs: { PublicIP: publicIP, PublicIPv6: null },
  };
}

export function peer(publicIP: string, p: Partial<PeerStats> = {}): PeerStats {
  return { publicIP, tx: { packets: 0, bytes: 0 }, rx: { packets: 0, bytes: 0 }, lastTxAt: 0, lastRxAt: 0, drops: {}, ...p };
}

export function emptyStats(engine: 'native' | 'js' = 'native'): DatapathStats {
  return {
    engine,
    encap: { packets: 0, bytes: 0 },
    decap: { packets: 0, bytes: 0 },
    icmpSent: 0,
    icmpRateLimited: 0,
    drops: { encap: emptyDropCounters(), decap: emptyDropCounters() },
    peers: {},
    features: {},
  };
}

export function probeStatus(subnet: string, publicIP: string, p: Partial<PeerProbeStatus> = {}): PeerProbeStatus {
  return {
    subnet, publicIP, target: subnet.replace(/\/\d+$/, ''), state: 'unknown', consecutiveFailures: 0, windowSent: 0, windowAnswered: 0,
    mtu: { state: 'unknown', size: 0 }, ...p,
  };
}

/** n2 reachable, n3 unreachable for 2 minutes (its agent is down: port-unreachable), n4 not decided yet. */
export function sampleProbes(now = Date.now()): ProbeSummary {
  return {
    enabled: true, intervalSeconds: 10, maxRate: 20, timeoutMs: 3000,
    sent: { small: 420, full: 70 }, replies: 466, lost: 24, errors: 6,
    peers: {
      '10.244.2.0/24': probeStatus('10.244.2.0/24', '192.168.77.12', {
        state: 'reachable', since: now - 3 * HOUR, lastProbeAt: now - 4000, lastSuccessAt: now - 4000, windowSent: 20, windowAnswered: 20, rttP50Ms: 0.412,
        mtu: { state: 'ok', size: 1472, checkedAt: now - 30_000 },
      }),
      '10.244.3.0/24': probeStatus('10.244.3.0/24', '192.168.77.13', {
        state: 'unreachable', since: now - 120_000, lastProbeAt: now - 2000, lastSuccessAt: now - 125_000, lastFailureAt: now - 2000, consecutiveFailures: 12,
        windowSent: 20, windowAnswered: 8, rttP50Ms: 0.5, mtu: { state: 'ok', size: 1472, checkedAt: now - 200_000 },
        evidence: { kind: 'port-unreachable', from: '192.168.77.13', about: 'tunnel', at: now - 3000 },
      }),
      '10.244.4.0/24': probeStatus('10.244.4.0/24', '192.168.77.14'),
    },
  };
}

/**
 * Four leases: ours (n1), a busy healthy peer (n2), a peer close to expiry that sends spoofed
 * packets (n3), an expired one (n4); plus counters of a peer with no lease (.99).
 */
export function sampleSnapshot(): AgentSnapshot {
  const own = etcdLease('10.244.1.0/24', '192.168.77.11', 23 * HOUR, '12', '694d9a2b1c3e0011');
  const now = Date.now();
  const stats = emptyStats('native');
  stats.encap = { packets: 1500, bytes: 2_100_000 };
  stats.decap = { packets: 1400, bytes: 1_900_000 };
  stats.icmpSent = 3;
  stats.drops.encap['no-route'] = 3;
  stats.drops.decap['unknown-peer'] = 2;
  stats.drops.decap['spoofed-source'] = 5;
  stats.peers = {
    '192.168.77.12': peer('192.168.77.12', { tx: { packets: 1200, bytes: 1_700_000 }, rx: { packets: 1100, bytes: 1_600_000 }, lastTxAt: now - 1000, lastRxAt: now - 2000 }),
    '192.168.77.13': peer('192.168.77.13', { tx: { packets: 300, bytes: 400_000 }, rx: { packets: 300, bytes: 300_000 }, lastTxAt: now - 65_000, lastRxAt: now - 64_000, drops: { 'spoofed-source': 5 } }),
    '192.168.77.99': peer('192.168.77.99', { tx: { packets: 4, bytes: 336 }, lastTxAt: now - 600_000 }),
  };
  return {
    self: { lease: own, publicIP: '192.168.77.11', tunName: 'flannel0', engine: 'native', mtu: 1472, network: '10.244.0.0/16', port: 8285 },
    leases: [
      own,
      etcdLease('10.244.2.0/24', '192.168.77.12', 22 * HOUR, '15'),
      etcdLease('10.244.3.0/24', '192.168.77.13', 5 * 60_000, '9'),
      etcdLease('10.244.4.0/24', '192.168.77.14', -60_000, '4'),
    ],
    datapath: stats,
    store: { backend: 'etcd', connected: true, lastRevision: '15', lastRelistAt: now - 90_000, relists: 1, errors: 0, renewals: 2, renewalFailures: 0 },
    leaseEvents: { added: 4, removed: 1, snapshots: 1, reacquired: 0 },
    startedAt: now - 3 * HOUR,
    probes: sampleProbes(now),
  };
}

/** A plain AgentState whose answers the test sets directly. */
export class HandState implements AgentState {
  isReady = false;
  failWith: Error | undefined;
  constructor(public snap: AgentSnapshot = sampleSnapshot()) {}
  ready(): boolean {
    return this.isReady;
  }
  snapshot(): AgentSnapshot {
    if (this.failWith) throw this.failWith;
    return this.snap;
  }
}
