// Peer probes (one file over ~450 lines: the send/receive/verdict loop of both families is one state
// machine sharing one queue, rate and in-flight table; split, each half would need the other's state).
//
// Every peer is sent an ICMP echo from our TUN address (lease .0) to its TUN address,
// by the kernel through our own data path, so one answer proves encap, the underlay, the peer's
// decap and the peer's kernel (a stock flannel-UDP peer answers the same way). Every few rounds a
// second, full-size probe with DF set checks the path MTU.
//
// The rate stays small at any size: one peer per tick, ticks `interval / peers` apart but never
// more than `maxRate` per second (5,000 peers at 20/s: each peer every ~4 min), each tick jittered
// by +-50% and the round order shuffled, so 5,000 nodes never probe in step. New peers and peers
// whose probe was just lost jump the queue (within the same rate) so a verdict comes quickly; a
// peer turns unreachable after three lost probes in a row, reachable again on one answer.
//
// IPv6: on a node with EnableIPv6 every peer with an IPv6 subnet gets a second probe target, an
// ICMPv6 echo from our IPv6 tunnel address to the peer's (the subnets' network addresses, /128 on
// the TUN), kept under the peer's IPv6 subnet. Both families share one queue and one rate: a
// dual-stack peer is two targets in the round, so the rate and the state per target stay bounded.
import type { Lease } from '../lease/types.js';
import { formatIPv4, formatSubnet, parseIPv4 } from '../net/cidr.js';
import { formatIPv6, formatSubnet6 } from '../net/ip6.js';
import { icmpErrorName, MIN_PROBE_SIZE, type EchoRequest, type ReceivedIcmp } from './packet.js';
import { icmp6ErrorName, MIN_PROBE6_SIZE, type EchoRequest6, type ReceivedIcmp6 } from './packet6.js';
import type { Received } from './socket.js';
import type { PeerProbeStatus, ProbeEvidence, ProbeSummary, Reachability } from './types.js';
import { leaseCarriesIPv6 } from '../lease/backend-data.js';

export interface ProberOptions {
  /** Each peer is probed about this often when the rate allows (seconds). */
  intervalSeconds: number;
  /** Probes per second at most, all peers together (full-size probes included). */
  maxRate: number;
  /** A probe not answered within this long is lost. */
  timeoutMs: number;
  /** Recent small-probe outcomes kept per peer (RTT median, answered ratio). */
  window?: number;
  /** Lost probes in a row that make a peer unreachable. */
  failuresToUnreachable?: number;
  /** A full-size probe goes with every Nth small one (and every time while it fails). */
  mtuEvery?: number;
  /** First wait before queued replies are read after a send (ms); doubles while probes are out. */
  pollMs?: number;
}

/** What the prober needs from the agent. */
export interface ProberContext {
  /** Our TUN addresses (IPv4: the lease .0, absent on an IPv6-only overlay; IPv6: the IPv6 subnet's
   *  network address, with EnableIPv6), the TUN MTU and the tunnel port; undefined while there is no data path. */
  local(): LocalEnd | undefined;
  /** The peers to probe (ours excluded): IPv4 probes to those with an IPv4 subnet, IPv6 probes
   *  (with an IPv6 probe socket) to those with an IPv6 subnet. */
  peers(): Lease[];
}

export interface LocalEnd {
  address?: number;
  address6?: bigint;
  mtu: number;
  port: number;
}

export interface ProbeSocketLike {
  send(req: EchoRequest): number;
  poll(): Array<Received<ReceivedIcmp>>;
  close(): void;
}

/** The ICMPv6 socket: echo requests to IPv6 tunnel addresses, replies and ICMPv6 errors back. */
export interface Probe6SocketLike {
  send(req: EchoRequest6): number;
  poll(): Array<Received<ReceivedIcmp6>>;
  close(): void;
}

interface InFlight {
  peer: PeerState;
  full: boolean;
  sentAt: number;
}

interface PeerState {
  status: PeerProbeStatus;
  family: 4 | 6;
  target: number | bigint;
  /** The lease's underlay addresses ("192.168.77.12|fd77::12"): a change makes a new target. */
  underlay: string;
  /** Those addresses as text: ICMP errors about tunnel datagrams to them concern this target. */
  underlayAddrs: string[];
  rounds: number;
  rtts: number[];
  outcomes: boolean[];
  fullFailures: number;
  removed: boolean;
}

const DEFAULTS = { window: 20, failuresToUnreachable: 3, mtuEvery: 6, pollMs: 5 };
/** Longest wait between reads while probes are out. */
const MAX_POLL_MS = 250;

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export class PeerProber {
  private readonly opts: Required<ProberOptions>;
  private readonly peers = new Map<string, PeerState>();
  /** Targets by underlay address text: both families of a dual-stack peer share its tunnel. */
  private readonly byUnderlay = new Map<string, PeerState[]>();
  private ring: string[] = [];
  private ringPos = 0;
  private readonly urgent: string[] = [];
  private readonly inFlight = new Map<number, InFlight>();
  private seq = Math.floor(Math.random() * 0x10000);
  private readonly id: number;
  private tickTimer?: NodeJS.Timeout;
  private pollTimer?: NodeJS.Timeout;
  private pollDelay = 0;
  private stopped = false;
  private syncQueued = false;
  private readonly counts = { small: 0, full: 0, replies: 0, lost: 0, errors: 0 };
  private readonly rttListeners: Array<(seconds: number) => void> = [];
  private lastError?: string;

  constructor(
    private readonly ctx: ProberContext,
    private readonly socket: ProbeSocketLike,
    options: ProberOptions,
    private readonly now: () => number = Date.now,
    /** With EnableIPv6 only: peers' IPv6 subnets are probed through it. */
    private readonly socket6?: Probe6SocketLike,
  ) {
    this.opts = { ...DEFAULTS, ...options };
    // Echo ids tell our replies from other pingers' (and from the doctor's).
    this.id = (process.pid ^ Math.floor(Math.random() * 0x10000)) & 0xffff;
  }

  start(): void {
    this.syncPeers();
    this.scheduleTick(Math.random() * 1000);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.tickTimer);
    clearTimeout(this.pollTimer);
    this.socket.close();
    this.socket6?.close();
  }

  /** Called with each answered probe's RTT (seconds), for the /metrics histogram. */
  onRtt(listener: (seconds: number) => void): void {
    this.rttListeners.push(listener);
  }

  /** A lease appeared or went away: probe a new peer soon, forget a removed one. */
  leaseChanged(): void {
    // A 5,000-lease snapshot is 5,000 events: one sync after the burst.
    if (this.syncQueued || this.stopped) return;
    this.syncQueued = true;
    setImmediate(() => {
      this.syncQueued = false;
      if (!this.stopped) this.syncPeers();
    });
  }

  summary(): Omit<ProbeSummary, 'enabled' | 'error'> & { error?: string } {
    const peers: Record<string, PeerProbeStatus> = {};
    for (const [key, p] of this.peers) peers[key] = { ...p.status, mtu: { ...p.status.mtu }, evidence: p.status.evidence && { ...p.status.evidence } };
    return {
      error: this.lastError,
      intervalSeconds: this.opts.intervalSeconds,
      maxRate: this.opts.maxRate,
      timeoutMs: this.opts.timeoutMs,
      sent: { small: this.counts.small, full: this.counts.full },
      replies: this.counts.replies,
      lost: this.counts.lost,
      errors: this.counts.errors,
      peers,
    };
  }

  // ---- peers ------------------------------------------------------------------------------------

  private syncPeers(): void {
    const seen = new Set<string>();
    for (const lease of this.ctx.peers()) {
      const underlayAddrs = [lease.publicIP, ...(lease.publicIPv6 ? [lease.publicIPv6] : [])];
      const underlay = underlayAddrs.join('|');
      if (lease.subnet !== undefined) {
        try {
          parseIPv4(lease.publicIP);
        } catch {
          continue;
        }
        const key = formatSubnet(lease.subnet);
        seen.add(key);
        this.track(key, lease, underlay, underlayAddrs, 4, lease.subnet.ip >>> 0, formatIPv4(lease.subnet.ip));
      }
      // Not a stock flannel node's IPv6 subnet: felt sends it no IPv6, so there is nothing to probe.
      if (this.socket6 && lease.ipv6Subnet !== undefined && leaseCarriesIPv6(lease)) {
        const key = formatSubnet6(lease.ipv6Subnet);
        seen.add(key);
        this.track(key, lease, underlay, underlayAddrs, 6, lease.ipv6Subnet.ip, formatIPv6(lease.ipv6Subnet.ip));
      }
    }
    for (const [key, p] of this.peers) if (!seen.has(key)) this.forget(key, p);
  }

  /** A target per peer subnet: kept while the lease's underlay addresses stay the same. */
  private track(key: string, lease: Lease, underlay: string, underlayAddrs: string[], family: 4 | 6, target: number | bigint, targetText: string): void {
    const existing = this.peers.get(key);
    if (existing && existing.underlay === underlay) return;
    if (existing) this.forget(key, existing);
    const state: PeerState = {
      family,
      target,
      underlay,
      underlayAddrs,
      rounds: 0,
      rtts: [],
      outcomes: [],
      fullFailures: 0,
      removed: false,
      status: {
        subnet: key,
        publicIP: lease.publicIP,
        ...(family === 6 ? { family: 6 as const } : {}),
        target: targetText,
        state: 'unknown',
        consecutiveFailures: 0,
        windowSent: 0,
        windowAnswered: 0,
        mtu: { state: 'unknown', size: 0 },
      },
    };
    this.peers.set(key, state);
    for (const a of underlayAddrs) this.byUnderlay.set(a, [...(this.byUnderlay.get(a) ?? []), state]);
    this.urgent.push(key);
  }

  private forget(key: string, p: PeerState): void {
    p.removed = true;
    this.peers.delete(key);
    for (const a of p.underlayAddrs) {
      const rest = (this.byUnderlay.get(a) ?? []).filter((q) => q !== p);
      if (rest.length > 0) this.byUnderlay.set(a, rest);
      else this.byUnderlay.delete(a);
    }
  }

  private nextPeer(): PeerState | undefined {
    while (this.urgent.length > 0) {
      const p = this.peers.get(this.urgent.shift()!);
      if (p) return p;
    }
    for (let tries = 0; tries < 2; tries++) {
      while (this.ringPos < this.ring.length) {
        const p = this.peers.get(this.ring[this.ringPos++]!);
        if (p) return p;
      }
      // A new round: the current peers in a fresh random order.
      this.ring = [...this.peers.keys()];
      for (let i = this.ring.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1));
        [this.ring[i], this.ring[j]] = [this.ring[j]!, this.ring[i]!];
      }
      this.ringPos = 0;
    }
    return undefined;
  }

  // ---- sending ----------------------------------------------------------------------------------

  /** Milliseconds between ticks: the interval spread over the peers, capped by the rate. */
  private period(): number {
    const n = Math.max(1, this.peers.size);
    return Math.max((this.opts.intervalSeconds * 1000) / n, 1000 / this.opts.maxRate);
  }

  private scheduleTick(delay?: number): void {
    if (this.stopped) return;
    const d = delay ?? this.period() * (0.5 + Math.random());
    this.tickTimer = setTimeout(() => this.tick(), d);
    this.tickTimer.unref();
  }

  private tick(): void {
    try {
      this.expire();
      const local = this.ctx.local();
      const peer = local ? this.nextPeer() : undefined;
      // A target of a family we have no tunnel address for is skipped (its turn comes again).
      if (peer && local && (peer.family === 4 ? local.address !== undefined : local.address6 !== undefined)) {
        peer.rounds++;
        this.sendProbe(peer, local, false);
        // Sized probes say nothing while small ones are lost: none to an unreachable peer.
        const mtuDue = peer.status.state !== 'unreachable' && peer.status.consecutiveFailures === 0 &&
          (peer.status.mtu.state !== 'ok' || peer.rounds % this.opts.mtuEvery === 1 || this.opts.mtuEvery <= 1);
        if (mtuDue && local.mtu > (peer.family === 4 ? MIN_PROBE_SIZE : MIN_PROBE6_SIZE)) this.sendProbe(peer, local, true);
      }
    } catch (err) {
      this.lastError = (err as Error).message;
    } finally {
      // A full-size probe counts against the rate too.
      this.scheduleTick();
    }
  }

  private sendProbe(peer: PeerState, local: LocalEnd, full: boolean): void {
    this.seq = (this.seq + 1) & 0xffff;
    const seq = this.seq;
    let sentAt: number;
    try {
      if (peer.family === 4) {
        sentAt = this.socket.send({ src: local.address!, dst: peer.target as number, id: this.id, seq, size: full ? local.mtu : MIN_PROBE_SIZE + 22, df: true });
      } else {
        // The same small size as IPv4's 84 bytes would be; IPv6 has no DF (the socket never fragments).
        sentAt = this.socket6!.send({ src: local.address6, dst: peer.target as bigint, id: this.id, seq, size: full ? local.mtu : MIN_PROBE6_SIZE + 22 });
      }
      this.lastError = undefined;
    } catch (err) {
      // A send that fails at once (no route, device gone) is a lost probe, decided now.
      this.lastError = (err as Error).message;
      sentAt = this.now();
      if (full) this.counts.full++;
      else this.counts.small++;
      this.lost({ peer, full, sentAt });
      return;
    }
    if (full) this.counts.full++;
    else this.counts.small++;
    peer.status.lastProbeAt = sentAt;
    this.inFlight.set(seq, { peer, full, sentAt });
    // Read soon after a send and back off while answers are missing: an idle agent is not woken
    // by a polling timer (RTTs come from the kernel's receive timestamps, not from when we read).
    this.pollDelay = this.opts.pollMs;
    if (!this.pollTimer) this.schedulePoll();
  }

  private schedulePoll(): void {
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      this.pollNow();
      if (this.inFlight.size > 0) {
        this.pollDelay = Math.min(this.pollDelay * 2, MAX_POLL_MS);
        this.schedulePoll();
      }
    }, this.pollDelay);
    this.pollTimer.unref();
  }

  private expire(): void {
    const cutoff = this.now() - this.opts.timeoutMs;
    for (const [seq, f] of this.inFlight) {
      if (f.sentAt > cutoff) continue;
      this.inFlight.delete(seq);
      this.lost(f);
    }
  }

  // ---- receiving --------------------------------------------------------------------------------

  /** Reads whatever the socket holds (ICMP errors that came in meanwhile included). */
  pollNow(): void {
    if (this.stopped) return;
    try {
      for (const p of this.socket.poll()) {
        if (p.kind === 'echo-reply') this.onReply(p);
        else this.onError(p);
      }
      for (const p of this.socket6?.poll() ?? []) {
        if (p.kind === 'echo-reply') this.onReply(p);
        else this.onError6(p);
      }
    } catch (err) {
      this.lastError = (err as Error).message;
      return;
    }
    this.expire();
  }

  private onReply(p: { id: number; seq: number; from: number | bigint; size: number; at: number }): void {
    if (p.id !== this.id) return;
    const f = this.inFlight.get(p.seq);
    // Targets of the two families never compare equal (number vs bigint).
    if (!f || f.peer.target !== p.from) return;
    this.inFlight.delete(p.seq);
    this.counts.replies++;
    const peer = f.peer;
    if (peer.removed) return;
    const s = peer.status;
    if (f.full) {
      s.mtu = { state: 'ok', size: p.size, checkedAt: p.at };
      peer.fullFailures = 0;
      return;
    }
    const rtt = Math.max(0, p.at - f.sentAt);
    this.record(peer, true);
    peer.rtts.push(rtt);
    if (peer.rtts.length > this.opts.window) peer.rtts.shift();
    s.rttP50Ms = median(peer.rtts);
    s.lastSuccessAt = p.at;
    s.consecutiveFailures = 0;
    this.setState(peer, 'reachable', p.at);
    for (const l of this.rttListeners) l(rtt / 1000);
  }

  private lost(f: InFlight): void {
    this.counts.lost++;
    const peer = f.peer;
    if (peer.removed) return;
    const s = peer.status;
    const at = this.now();
    if (f.full) {
      // Conclusive only when a small probe got through since: then size is what failed.
      if (s.lastSuccessAt !== undefined && s.lastSuccessAt >= f.sentAt - this.opts.timeoutMs) {
        peer.fullFailures++;
        if (peer.fullFailures >= 2 || s.mtu.state === 'failed') s.mtu = { state: 'failed', size: this.ctx.local()?.mtu ?? s.mtu.size, checkedAt: at };
      }
      return;
    }
    this.record(peer, false);
    s.lastFailureAt = at;
    s.consecutiveFailures++;
    if (s.consecutiveFailures >= this.opts.failuresToUnreachable) this.setState(peer, 'unreachable', at);
    else this.urgent.push(s.subnet); // confirm soon
  }

  private record(peer: PeerState, answered: boolean): void {
    peer.outcomes.push(answered);
    if (peer.outcomes.length > this.opts.window) peer.outcomes.shift();
    peer.status.windowSent = peer.outcomes.length;
    peer.status.windowAnswered = peer.outcomes.filter(Boolean).length;
  }

  private setState(peer: PeerState, state: Reachability, at: number): void {
    if (peer.status.state === state) return;
    peer.status.state = state;
    peer.status.since = at;
  }

  /** ICMP errors: about the tunnel datagrams to a peer (UDP to its port), or about our probes. */
  private onError(p: Received<ReceivedIcmp & { kind: 'error' }>): void {
    const q = p.quoted;
    if (q.protocol === 17 && q.dstPort === this.ctx.local()?.port) {
      this.evidence(this.byUnderlay.get(formatIPv4(q.dst)) ?? [], icmpErrorName(p.type, p.code), formatIPv4(p.from), 'tunnel', p.mtu, p.at);
    } else if (q.protocol === 1 && q.echoId === this.id && q.echoSeq !== undefined) {
      const f = this.inFlight.get(q.echoSeq);
      if (f?.peer.family === 4) this.evidence([f.peer], icmpErrorName(p.type, p.code), formatIPv4(p.from), 'probe', p.mtu, p.at);
    }
  }

  /** ICMPv6 errors: about tunnel datagrams over an IPv6 underlay, or about our IPv6 probes. */
  private onError6(p: Received<ReceivedIcmp6 & { kind: 'error' }>): void {
    const q = p.quoted;
    const name = icmp6ErrorName(p.type, p.code);
    if (q.protocol === 17 && q.dstPort === this.ctx.local()?.port) {
      this.evidence(this.byUnderlay.get(formatIPv6(q.dst)) ?? [], name, formatIPv6(p.from), 'tunnel', p.mtu, p.at);
    } else if (q.protocol === 58 && q.echoId === this.id && q.echoSeq !== undefined) {
      const f = this.inFlight.get(q.echoSeq);
      if (f?.peer.family === 6) this.evidence([f.peer], name, formatIPv6(p.from), 'probe', p.mtu, p.at);
    }
  }

  /** An error about a peer's tunnel concerns every target behind it (both families of a dual-stack peer). */
  private evidence(peers: PeerState[], kind: string, from: string, about: ProbeEvidence['about'], mtu: number | undefined, at: number): void {
    const live = peers.filter((p) => !p.removed);
    if (live.length === 0) return;
    this.counts.errors++;
    for (const peer of live) peer.status.evidence = { kind, from, about, ...(mtu ? { mtu } : {}), at };
  }
}
