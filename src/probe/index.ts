// The agent's hook for peer probes: opens the probe socket and runs the prober, or reports why it
// cannot (probing is a diagnostic: failing to start it never stops the agent).
import type { Logger } from '../log.js';
import { PeerProber, type ProberContext } from './prober.js';
import { Icmp6ProbeSocket, IcmpProbeSocket } from './socket.js';
import type { ProbeSummary } from './types.js';

export type { ProbeSummary, PeerProbeStatus, Reachability } from './types.js';

export interface PeerProbeOptions {
  enabled: boolean;
  intervalSeconds: number;
  maxRate: number;
  /** Default 3000 ms. */
  timeoutMs?: number;
  /** The node has EnableIPv6: peers' IPv6 tunnel addresses are probed too (ICMPv6 socket). */
  ipv6?: boolean;
}

export interface PeerProbes {
  summary(): ProbeSummary;
  /** Call on every lease event; bursts are coalesced. */
  leaseChanged(): void;
  onRtt(listener: (seconds: number) => void): void;
  stop(): void;
}

export function startPeerProbes(options: PeerProbeOptions, ctx: ProberContext, log: Logger): PeerProbes {
  const base = { intervalSeconds: options.intervalSeconds, maxRate: options.maxRate, timeoutMs: options.timeoutMs ?? 3000, ...(options.ipv6 ? { ipv6: true } : {}) };
  const idle = (error?: string): PeerProbes => ({
    summary: () => ({ enabled: options.enabled, ...(error ? { error } : {}), ...base, sent: { small: 0, full: 0 }, replies: 0, lost: 0, errors: 0, peers: {} }),
    leaseChanged: () => undefined,
    onRtt: () => undefined,
    stop: () => undefined,
  });
  if (!options.enabled) return idle();
  let socket: IcmpProbeSocket;
  let socket6: Icmp6ProbeSocket | undefined;
  try {
    socket = new IcmpProbeSocket();
  } catch (err) {
    const message = `peer probes are off: cannot open the ICMP probe socket (${(err as Error).message}; it needs CAP_NET_RAW)`;
    log.warn(message);
    return idle(message);
  }
  try {
    socket6 = options.ipv6 ? new Icmp6ProbeSocket() : undefined;
  } catch (err) {
    socket.close();
    const message = `peer probes are off: cannot open the ICMPv6 probe socket (${(err as Error).message}; it needs CAP_NET_RAW)`;
    log.warn(message);
    return idle(message);
  }
  const prober = new PeerProber(ctx, socket, base, Date.now, socket6);
  prober.start();
  log.info({ intervalSeconds: base.intervalSeconds, maxRate: base.maxRate }, 'peer probes started');
  return {
    summary: () => ({ enabled: true, ...prober.summary(), ...(options.ipv6 ? { ipv6: true } : {}) }),
    leaseChanged: () => prober.leaseChanged(),
    onRtt: (l) => prober.onRtt(l),
    stop: () => prober.stop(),
  };
}
