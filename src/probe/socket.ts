// The probe sockets, through the addon (native/probe.c): a raw ICMP socket that sends whole IPv4
// echo requests and receives echo replies and ICMP errors with the kernel's receive time, and a raw
// UDP socket that sees every datagram arriving at the host (the doctor's NAT check), and the
// doctor's raw ICMPv6 socket (echo requests to IPv6 peers, echo replies and ICMPv6 errors back).
import { loadAddon } from '../datapath/addon.js';
import { parseIPv4 } from '../net/cidr.js';
import { ipv6ToBytes } from '../net/ip6.js';
import { buildEchoRequest, parseIcmp, parseUdp, type EchoRequest, type ReceivedIcmp, type SniffedDatagram } from './packet.js';
import { buildEchoRequest6, parseIcmp6, parseUdp6, type EchoRequest6, type ReceivedIcmp6, type SniffedDatagram6 } from './packet6.js';

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
  probeIcmp6Open(): number;
  probeUdpSniffOpen(): number;
  probeUdpSniff6Open(): number;
  probeClose(fd: number): void;
  probeSend(fd: number, packet: Buffer, dst: number): number;
  probeSend6(fd: number, message: Buffer, dst: Uint8Array, src: Uint8Array | null): number;
  /** `from`: the source address, on IPv6 sockets only. */
  probeRecv(fd: number, max: number): Array<{ data: Buffer; at: number; from?: Buffer }>;
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

  constructor(open: (a: ProbeAddon) => number, private readonly parse: (data: Buffer, from?: Buffer) => T | undefined) {
    this.fd = open(this.a);
  }

  /** Everything queued that parses, with the kernel's receive time. */
  poll(): Array<Received<T>> {
    if (this.fd === undefined) return [];
    const out: Array<Received<T>> = [];
    for (const { data, at, from } of this.a.probeRecv(this.fd, POLL_MAX)) {
      const p = this.parse(data, from);
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
    super((a) => a.probeIcmpOpen(), (data) => parseIcmp(data));
  }

  /** Sends one echo request; returns the send time (ms since the epoch, sub-ms resolution). */
  send(req: EchoRequest): number {
    if (this.fd === undefined) throw new Error('probe socket is closed');
    return this.a.probeSend(this.fd, buildEchoRequest(req), req.dst >>> 0);
  }
}

/** A raw ICMPv6 socket for echo probes: the kernel writes the IPv6 header and the checksum; polls
 *  return echo replies and ICMPv6 errors. Needs CAP_NET_RAW. */
export class Icmp6ProbeSocket extends RawSocket<ReceivedIcmp6> {
  constructor() {
    super((a) => {
      if (typeof a.probeIcmp6Open !== 'function') throw new Error('the native addon lacks probeIcmp6Open (rebuild it: npm install)');
      return a.probeIcmp6Open();
    }, (data, from) => parseIcmp6(data, from));
  }

  /** Sends one echo request; returns the send time (ms since the epoch, sub-ms resolution). */
  send(req: EchoRequest6): number {
    if (this.fd === undefined) throw new Error('probe socket is closed');
    return this.a.probeSend6(this.fd, buildEchoRequest6(req), ipv6ToBytes(req.dst), req.src === undefined ? null : ipv6ToBytes(req.src));
  }
}

/** The same for UDP over IPv6 (the doctor's NAT check on an IPv6 underlay). */
export class UdpSniff6Socket extends RawSocket<SniffedDatagram6> {
  constructor() {
    super((a) => {
      if (typeof a.probeUdpSniff6Open !== 'function') throw new Error('the native addon lacks probeUdpSniff6Open (rebuild it: npm install)');
      return a.probeUdpSniff6Open();
    }, (data, from) => parseUdp6(data, from));
  }
}

/** A raw UDP socket that sees every datagram delivered to this host (use briefly). */
export class UdpSniffSocket extends RawSocket<SniffedDatagram> {
  constructor() {
    super((a) => a.probeUdpSniffOpen(), (data) => parseUdp(data));
  }
}
