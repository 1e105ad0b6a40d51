// Latency over one path: ping RTT at a sparse and a dense interval, and a back-to-back TCP
// request/response test (sockperf ping-pong: one connection, a small request, the same-size reply,
// the next request as soon as the reply is in; like netperf TCP_RR or qperf tcp_lat); over IPv6,
// which sockperf 3.7 cannot address, the same exchange by bench/rr.c. The parsers are pure so they
// can be checked on saved output.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { Netns } from '../test/testbed/netns.js';
import { repoRoot } from '../test/testbed/tcp.js';
import { startServer, type BenchServer } from './server.js';

export const RR_PORT = 11111;

export interface RrResult {
  /** Request size = reply size, bytes. */
  messageBytes: number;
  /** Seconds measured (sockperf's valid duration, after its warm-up). */
  seconds: number;
  /** Completed request/response transactions. */
  transactions: number;
  transactionsPerS: number;
  /** Round-trip time of one transaction, microseconds. */
  avgUs: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
}

/** One short request/response run as kept in the report. */
export interface RrSample {
  transactionsPerS: number;
  p50Us: number;
}

/**
 * The median of several short request/response runs (by transactions per second) and every run's
 * rate and p50. On a small VM the rate is bimodal: the same path gives p50 ~65 us or ~115 us from
 * one 2-second run to the next, depending on whether an idle vCPU has to be woken. A single long
 * run lands on either mode, so two trees or two paths compared on one run each can differ by 40%
 * with no change in the code. The median run is a real run, so its percentiles belong together.
 */
export function medianRr(runs: readonly RrResult[]): RrResult & { runs: RrSample[] } {
  if (runs.length === 0) throw new Error('request/response: no run completed');
  const sorted = [...runs].sort((a, b) => a.transactionsPerS - b.transactionsPerS);
  const median = sorted[(sorted.length - 1) >> 1]!;
  return { ...median, runs: runs.map((r) => ({ transactionsPerS: r.transactionsPerS, p50Us: r.p50Us })) };
}

/** Parses sockperf's ping-pong summary (run with --full-rtt, so every figure is a round trip). */
export function parseSockperf(text: string, messageBytes: number): RrResult {
  const clean = text.replace(/\x1b\[[0-9;]*m/g, '');
  const valid = /\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=(\d+); ReceivedMessages=(\d+)/.exec(clean);
  if (!valid) throw new Error(`sockperf printed no result: ${clean.trim().split('\n').slice(-3).join(' | ') || '(nothing)'}`);
  const pct = (p: string): number => {
    const m = new RegExp(`percentile ${p.replace('.', '\\.')} =\\s*([\\d.]+)`).exec(clean);
    if (!m) throw new Error(`sockperf: no ${p} percentile in its output`);
    return Number(m[1]);
  };
  const avg = /avg-rtt=([\d.]+)/.exec(clean);
  const max = /<MAX> observation =\s*([\d.]+)/.exec(clean);
  const seconds = Number(valid[1]);
  const transactions = Number(valid[3]);
  if (!(seconds > 0) || transactions === 0) throw new Error('sockperf: no transaction completed');
  return {
    messageBytes,
    seconds,
    transactions,
    transactionsPerS: transactions / seconds,
    avgUs: avg ? Number(avg[1]) : NaN,
    p50Us: pct('50.000'),
    p99Us: pct('99.000'),
    maxUs: max ? Number(max[1]) : NaN,
  };
}

/** Starts a sockperf TCP server bound to `ip` inside `ns` and waits until it listens. */
export function startRrServer(ns: Netns, ip: string, port = RR_PORT): Promise<BenchServer> {
  return startServer(ns, ['sockperf', 'server', '--tcp', '-i', ip, '-p', String(port)], port);
}

/** One back-to-back request/response run from `ns` to a sockperf server at `serverIP`. */
export async function runRr(ns: Netns, serverIP: string, seconds: number, messageBytes: number, port = RR_PORT): Promise<RrResult> {
  const argv = ['sockperf', 'ping-pong', '--tcp', '-i', serverIP, '-p', String(port), '-m', String(messageBytes), '--full-rtt', '-t', String(seconds)];
  const r = await ns.exec(argv, { check: false, timeoutMs: (seconds + 30) * 1000 });
  return parseSockperf(r.stdout + r.stderr, messageBytes);
}

// ---- felt-rr (bench/rr.c): the same measurement for the IPv6 paths ------------------------------

/** Compiles bench/rr.c into `dir` and returns the binary's path. */
export function buildRrTool(dir: string): string {
  const out = join(dir, 'felt-rr');
  execFileSync('cc', ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-o', out, join(repoRoot(), 'bench', 'rr.c')], { stdio: ['ignore', 'ignore', 'pipe'] });
  return out;
}

/** Parses felt-rr's JSON line into the sockperf result shape. */
export function parseRrTool(text: string, messageBytes: number): RrResult {
  const line = text.trim().split('\n').find((l) => l.startsWith('{'));
  if (!line) throw new Error(`felt-rr printed no result: ${text.trim().slice(0, 300) || '(nothing)'}`);
  const r = JSON.parse(line) as { transactions: number; seconds: number; avgUs: number; p50Us: number; p99Us: number; maxUs: number };
  if (!(r.seconds > 0) || !(r.transactions > 0)) throw new Error('felt-rr: no transaction completed');
  return { messageBytes, seconds: r.seconds, transactions: r.transactions, transactionsPerS: r.transactions / r.seconds, avgUs: r.avgUs, p50Us: r.p50Us, p99Us: r.p99Us, maxUs: r.maxUs };
}

export function startRrToolServer(tool: string, ns: Netns, ip: string, port = RR_PORT): Promise<BenchServer> {
  return startServer(ns, [tool, 'server', ip, String(port)], port);
}

export async function runRrTool(tool: string, ns: Netns, serverIP: string, seconds: number, messageBytes: number, port = RR_PORT): Promise<RrResult> {
  const r = await ns.exec([tool, 'client', serverIP, String(port), String(messageBytes), String(seconds)], { check: false, timeoutMs: (seconds + 30) * 1000 });
  if (r.code !== 0) throw new Error(`felt-rr client: ${r.stderr.trim() || `exit ${r.code}`}`);
  return parseRrTool(r.stdout, messageBytes);
}
