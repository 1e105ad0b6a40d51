// The probe sockets, through the addon (native/probe.c): a raw ICMP socket that sends whole IPv4
// echo requests and receives echo replies and ICMP errors with the kernel's receive time, and a raw
// UDP socket that sees every datagram arriving at the host (the doctor's NAT check).
import { loadAddon } from '../datapath/addon.js';
import { parseIPv4 } from '../net/cidr.js';
import { buildEchoRequest, parseIcmp, parseUdp, type EchoRequest, type ReceivedIcmp, type SniffedDatagram } from './packet.js';

export interface RouteLookup {
  type: string;
  oif: string;
  gateway: number;
  prefsrc: number;
  table: number;
  mtu: number;
}

export type RouteResult = RouteLookup | { errno: number; error: string };

interface ProbeAddon {
  probeIcmpOpen(): number;
  probeUdpSniffOpen(): number;
  probeClose(fd: number): void;
  probeSend(fd: number, packet: Buffer, dst: number): number;
  probeRecv(fd: number, max: number): Array<{ data: Buffer; at: number }>;
  routeGet(dst: number, src?: number | null, iif?: string | null): RouteResult;
}

function addon(): ProbeAddon {
  const a = loadAddon() as unknown as Partial<ProbeAddon>;
  if (typeof a.probeIcmpOpen !== 'function' || typeof a.routeGet !== 'function') {
    throw new Error('the native addon lacks the probe functions (rebuild it: npm install)');
  }
  return a as ProbeAddon;
}

/** `ip route get <dst> [from <src>] [iif <dev>]` through rtnetlink; errors come back as values. */
export function routeGet(dst: string | number, src?: string | number, iif?: string): RouteResult {
  const d = typeof dst === 'string' ? parseIPv4(dst) : dst;
  const s = src === undefined ? null : typeof src === 'string' ? parseIPv4(src) : src;
  return addon().routeGet(d >>> 0, s === null ? null : s >>> 0, iif ?? null);
}

export function isRouteError(r: RouteResult): r is { errno: number; error: string } {
  return 'errno' in r;
}

export type Received<T> = T & { at: number };

/** Packets a poll returns at most (the rest wait for the next poll). */
const POLL_MAX = 1024;

/** A raw socket opened by the addon: polls parse what is queued and skip what does not parse. */
abstract class RawSocket<T> {
  protected fd: number | undefined;
  protected readonly a = addon();

  constructor(open: (a: ProbeAddon) => number, private readonly parse: (data: Buffer) => T | undefined) {
    this.fd = open(this.a);
  }

  /** Everything queued that parses, with the kernel's receive time. */
  poll(): Array<Received<T>> {
    if (this.fd === undefined) return [];
    const out: Array<Received<T>> = [];
    for (const { data, at } of this.a.probeRecv(this.fd, POLL_MAX)) {
      const p = this.parse(data);
      if (p) out.push({ ...p, at });
    }
    return out;
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    this.a.probeClose(fd);
  }
}

/** A raw ICMP socket for echo probes: polls return echo replies and ICMP errors (other ICMP and
 *  malformed packets skipped). Needs CAP_NET_RAW. */
export class IcmpProbeSocket extends RawSocket<ReceivedIcmp> {
  constructor() {
    super((a) => a.probeIcmpOpen(), parseIcmp);
  }

  /** Sends one echo request; returns the send time (ms since the epoch, sub-ms resolution). */
  send(req: EchoRequest): number {
    if (this.fd === undefined) throw new Error('probe socket is closed');
    return this.a.probeSend(this.fd, buildEchoRequest(req), req.dst >>> 0);
  }
}

/** A raw UDP socket that sees every datagram delivered to this host (use briefly). */
export class UdpSniffSocket extends RawSocket<SniffedDatagram> {
  constructor() {
    super((a) => a.probeUdpSniffOpen(), parseUdp);
  }
}
