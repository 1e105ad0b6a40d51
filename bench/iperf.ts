// iperf3 inside network namespaces: a server per path, one client run per measurement, and a
// parser for iperf3's JSON report (`-J`). The parser is pure so it can be checked on saved output.
import type { Netns } from '../test/testbed/netns.js';
import { startServer, type BenchServer } from './server.js';

export const IPERF_PORT = 5201;

export interface IperfCpu {
  /** iperf3's own CPU use on the client (sender) host, % of one core; user + system. */
  hostTotal: number;
  hostUser: number;
  hostSystem: number;
  /** The same on the server (receiver) side, as the server reported it. */
  remoteTotal: number;
  remoteUser: number;
  remoteSystem: number;
}

export interface IperfResult {
  streams: number;
  /** Seconds measured (after the omitted warm-up seconds). */
  seconds: number;
  /** Receiver-side goodput, Gbit/s (the headline figure). */
  gbps: number;
  /** Sender-side rate, Gbit/s. */
  senderGbps: number;
  bytesReceived: number;
  /** TCP retransmits counted by iperf3 on the sender (sum over streams). */
  retransmits: number;
  /** Mean smoothed RTT the sender's TCP saw under load, ms (average over streams); null if absent. */
  tcpMeanRttMs: number | null;
  cpu: IperfCpu;
}

type Json = Record<string, any>;

function num(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`iperf3 JSON: ${what} missing or not a number`);
  return value;
}

/** Parses the text iperf3 -J printed. Throws a clear error when iperf3 reported one. */
export function parseIperfJson(text: string): IperfResult {
  let doc: Json;
  try {
    doc = JSON.parse(text) as Json;
  } catch {
    throw new Error(`iperf3 printed no JSON: ${text.trim().slice(0, 300) || '(nothing)'}`);
  }
  if (typeof doc.error === 'string') throw new Error(`iperf3: ${doc.error}`);
  const end = doc.end as Json | undefined;
  if (!end?.sum_sent || !end?.sum_received) throw new Error('iperf3 JSON: no end.sum_sent/sum_received (test did not finish)');
  const cpu = (end.cpu_utilization_percent ?? {}) as Json;
  const streams = Array.isArray(end.streams) ? (end.streams as Json[]) : [];
  const rtts = streams.map((s) => s.sender?.mean_rtt).filter((v): v is number => typeof v === 'number' && v > 0);
  return {
    streams: Math.max(1, streams.length),
    seconds: num(end.sum_received.seconds, 'sum_received.seconds'),
    gbps: num(end.sum_received.bits_per_second, 'sum_received.bits_per_second') / 1e9,
    senderGbps: num(end.sum_sent.bits_per_second, 'sum_sent.bits_per_second') / 1e9,
    bytesReceived: num(end.sum_received.bytes, 'sum_received.bytes'),
    retransmits: typeof end.sum_sent.retransmits === 'number' ? end.sum_sent.retransmits : 0,
    // iperf3 reports mean_rtt in microseconds.
    tcpMeanRttMs: rtts.length > 0 ? rtts.reduce((a, b) => a + b, 0) / rtts.length / 1000 : null,
    cpu: {
      hostTotal: cpu.host_total ?? 0,
      hostUser: cpu.host_user ?? 0,
      hostSystem: cpu.host_system ?? 0,
      remoteTotal: cpu.remote_total ?? 0,
      remoteUser: cpu.remote_user ?? 0,
      remoteSystem: cpu.remote_system ?? 0,
    },
  };
}

/** Starts `iperf3 -s` bound to `ip` and waits until it listens; stop() kills it. */
export function startIperfServer(ns: Netns, ip: string, port = IPERF_PORT): Promise<BenchServer> {
  return startServer(ns, ['iperf3', '-s', '-B', ip, '-p', String(port)], port);
}

export interface IperfClientOptions {
  seconds: number;
  /** Seconds at the start left out of the figures (slow start, ARP). */
  omit: number;
  streams: number;
  port?: number;
}

/** Runs one iperf3 client test from `ns` to `serverIP` and parses its report. */
export async function runIperfClient(ns: Netns, serverIP: string, opts: IperfClientOptions): Promise<IperfResult> {
  const argv = [
    'iperf3', '-c', serverIP, '-p', String(opts.port ?? IPERF_PORT),
    '-t', String(opts.seconds), '-O', String(opts.omit), '-P', String(opts.streams),
    '-J', '--connect-timeout', '5000',
  ];
  // The timeout only catches a hung run (e.g. the tunnel died mid-test and the control
  // connection stalls); a slow path still ends after -t seconds.
  const timeoutS = opts.seconds + opts.omit + 30;
  const t0 = Date.now();
  const r = await ns.exec(argv, { check: false, timeoutMs: timeoutS * 1000 });
  if (r.signal || Date.now() - t0 >= timeoutS * 1000) throw new Error(`iperf3 client hung: killed after ${timeoutS} s`);
  return parseIperfJson(r.stdout);
}
