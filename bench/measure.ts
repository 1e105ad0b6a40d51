// One path's measurements, with the counters read around them: warm-up pings, sparse and dense
// ping, TCP request/response (sockperf over IPv4, bench/rr.c over IPv6), iperf3 1-flow and 4-flow,
// the felt agents' CPU and drop counters, and the path's teardown. Used by throughput.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type { Testbed } from '../test/testbed/testbed.js';
import { runIperfClient, startIperfServer } from './iperf.js';
import { buildRrTool, medianRr, runRr, runRrTool, startRrServer, startRrToolServer, type RrResult } from './latency.js';
import { setupPath, type PathEnds } from './paths.js';
import {
  dropsDelta,
  machineCpuUse,
  pingStats,
  processCpuSeconds,
  readMachineCpu,
  readNodeDrops,
  readTcpCounters,
  tcpDelta,
} from './probes.js';
import { PATH_LABELS, pathFamily, type BenchSettings, type PathName, type PathResult, type RrRun, type TcpRun } from './results.js';
import type { BenchServer } from './server.js';

/** Non-zero drop counters the agent's /leases JSON reports, keyed "encap:<reason>". */
async function agentDrops(agent: NonNullable<PathEnds['agents']>['sender']): Promise<Record<string, number>> {
  try {
    const view = await agent.fetchJSON<{ datapath?: { drops?: Record<string, Record<string, number>> } | null }>('/leases?format=json');
    const out: Record<string, number> = {};
    for (const [dir, reasons] of Object.entries(view.datapath?.drops ?? {})) {
      for (const [reason, n] of Object.entries(reasons ?? {})) if (typeof n === 'number') out[`${dir}:${reason}`] = n;
    }
    return out;
  } catch {
    return {};
  }
}

function dropDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
  return out;
}

/** Every counter read before and after an iperf3 run. */
async function readCounters(ends: PathEnds) {
  const { agents, tunnel } = ends;
  const [tcp, machine, agentCpu, agentDropsNow, nodeDrops] = await Promise.all([
    readTcpCounters(ends.client),
    readMachineCpu(),
    agents ? Promise.all([processCpuSeconds(agents.sender.pid), processCpuSeconds(agents.receiver.pid)]) : null,
    agents ? Promise.all([agentDrops(agents.sender), agentDrops(agents.receiver)]) : null,
    tunnel ? Promise.all([readNodeDrops(tunnel.senderNode, tunnel.device), readNodeDrops(tunnel.receiverNode, tunnel.device)]) : null,
  ]);
  return { tcp, machine, agentCpu, agentDrops: agentDropsNow, nodeDrops };
}

/** One iperf3 run with the counters around it. */
async function measureTcp(ends: PathEnds, settings: BenchSettings, streams: number): Promise<TcpRun> {
  const before = await readCounters(ends);
  const t0 = performance.now();
  const iperf = await runIperfClient(ends.client, ends.serverIP, { seconds: settings.durationS, omit: settings.omitS, streams });
  const wallSeconds = (performance.now() - t0) / 1000;
  const after = await readCounters(ends);

  const tcp = tcpDelta(before.tcp, after.tcp);
  const cpuPct = (i: 0 | 1): number | null => {
    const a = before.agentCpu?.[i];
    const b = after.agentCpu?.[i];
    return a == null || b == null ? null : (100 * (b - a)) / wallSeconds;
  };
  return {
    ...iperf,
    segmentsSent: tcp.outSegs,
    retransSegs: tcp.retransSegs,
    retransmitPct: tcp.outSegs > 0 ? (100 * tcp.retransSegs) / tcp.outSegs : 0,
    retransmitCauses: { timeouts: tcp.timeouts, lossProbes: tcp.lossProbes, dsackSegs: tcp.dsackSegs },
    wallSeconds,
    agentCpuPct: ends.agents ? { sender: cpuPct(0), receiver: cpuPct(1) } : null,
    machineCpu: machineCpuUse(before.machine, after.machine),
    kernelDrops: before.nodeDrops && after.nodeDrops
      ? { sender: dropsDelta(before.nodeDrops[0], after.nodeDrops[0]), receiver: dropsDelta(before.nodeDrops[1], after.nodeDrops[1]) }
      : null,
    agentDrops: before.agentDrops && after.agentDrops
      ? { sender: dropDelta(before.agentDrops[0], after.agentDrops[0]), receiver: dropDelta(before.agentDrops[1], after.agentDrops[1]) }
      : null,
  };
}

/** Request/response: settings.rrRuns short runs (median reported), with the agents' and machine's CPU around them. */
async function measureRr(ends: PathEnds, settings: BenchSettings, v6: boolean): Promise<RrRun> {
  const agentCpu = () =>
    ends.agents ? Promise.all([processCpuSeconds(ends.agents.sender.pid), processCpuSeconds(ends.agents.receiver.pid)]) : null;
  const [cpu0, machine0] = await Promise.all([agentCpu(), readMachineCpu()]);
  const runs: RrResult[] = [];
  for (let i = 0; i < settings.rrRuns; i++) {
    runs.push(v6
      ? await runRrTool(rrTool(), ends.client, ends.serverIP, settings.rrSeconds, settings.rrBytes)
      : await runRr(ends.client, ends.serverIP, settings.rrSeconds, settings.rrBytes));
  }
  const [cpu1, machine1] = await Promise.all([agentCpu(), readMachineCpu()]);
  let perTransaction: number | null = null;
  if (cpu0 && cpu1 && cpu0.every((v) => v !== null) && cpu1.every((v) => v !== null)) {
    // Agent CPU over all runs (their warm-ups too), per transaction at the runs' measured rates.
    const seconds = cpu1[0]! - cpu0[0]! + (cpu1[1]! - cpu0[1]!);
    const transactions = runs.reduce((sum, r) => sum + r.transactionsPerS * settings.rrSeconds, 0);
    perTransaction = (seconds * 1e6) / transactions;
  }
  return { ...medianRr(runs), agentCpuUsPerTransaction: perTransaction, machineCpu: machineCpuUse(machine0, machine1) };
}

function describeRr(run: RrRun): string {
  const cpu = run.agentCpuUsPerTransaction === null ? '' : `, agents ${run.agentCpuUsPerTransaction.toFixed(1)} us CPU per transaction`;
  const spread = run.runs.map((r) => r.transactionsPerS.toFixed(0)).join(', ');
  return `${run.transactionsPerS.toFixed(0)} transactions/s (median of ${spread}), p50 ${run.p50Us.toFixed(1)} us, p99 ${run.p99Us.toFixed(1)} us${cpu}`;
}

function describeRun(run: TcpRun): string {
  const cpu = run.agentCpuPct ? `, agent CPU ${run.agentCpuPct.sender?.toFixed(0) ?? '?'}/${run.agentCpuPct.receiver?.toFixed(0) ?? '?'}%` : '';
  return `${run.gbps.toFixed(2)} Gbit/s, ${run.retransSegs} retransmits (${run.retransmitPct.toFixed(3)}%)${cpu}`;
}

/** False (and an error recorded once) when a felt agent has exited: later figures would be garbage. */
function agentsAlive(ends: PathEnds, result: PathResult, log: (message: string) => void): boolean {
  if (!ends.agents) return true;
  let alive = true;
  for (const agent of [ends.agents.sender, ends.agents.receiver]) {
    if (agent.running()) continue;
    alive = false;
    const message = `agent on ${agent.node.name} exited during the run; log ${agent.logFile}`;
    if (!result.errors.includes(message)) {
      result.errors.push(message);
      log(`${PATH_LABELS[result.name]}: ${message}`);
    }
  }
  return alive;
}

function emptyResult(name: PathName): PathResult {
  return {
    name, label: PATH_LABELS[name], ok: false, errors: [], clientIP: null, serverIP: null, mtu: null,
    pingSparse: null, pingDense: null, rr: null, single: null, multi: null,
    vsVxlan: { singleGbps: null, multiGbps: null, sparseP50: null, denseP50: null, rrTps: null, rrP50: null }, info: {},
  };
}

/** Sets the path up, measures it, tears it down; failures are recorded in the result, not thrown. */
export async function measurePath(tb: Testbed, name: PathName, settings: BenchSettings, log: (message: string) => void): Promise<PathResult> {
  const result = emptyResult(name);
  const label = PATH_LABELS[name];
  const step = async <T>(what: string, fn: () => Promise<T>, show: (v: T) => string): Promise<T | null> => {
    log(`${label}: ${what} ...`);
    try {
      const v = await fn();
      log(`${label}: ${what}: ${show(v)}`);
      return v;
    } catch (err) {
      const message = (err as Error).message.split('\n')[0]!;
      result.errors.push(`${what}: ${message}`);
      log(`${label}: ${what} FAILED: ${message}`);
      return null;
    }
  };

  const ends = await step('set up', () => setupPath(tb, name), (e) => `${e.clientIP} -> ${e.serverIP}, MTU ${e.mtu}`);
  if (!ends) return result;
  result.clientIP = ends.clientIP;
  result.serverIP = ends.serverIP;
  result.mtu = ends.mtu;
  result.info = { ...ends.info };
  let server: BenchServer | undefined;
  let rrServer: BenchServer | undefined;
  const showPing = (p: { avgMs: number; p50Ms: number; p99Ms: number; lossPct: number }) =>
    `avg ${p.avgMs.toFixed(3)} ms, p50 ${p.p50Ms.toFixed(3)}, p99 ${p.p99Ms.toFixed(3)}, loss ${p.lossPct}%`;
  try {
    // A few pings first: neighbour entries, caches and the agents' first packets out of the way.
    await pingStats(ends.client, ends.serverIP, 5, 0.05).catch(() => undefined);
    const { pingSparse: sparse, pingDense: dense } = settings;
    result.pingSparse = await step(
      `ping ${sparse.count} x ${sparse.intervalMs} ms`,
      () => pingStats(ends.client, ends.serverIP, sparse.count, sparse.intervalMs / 1000),
      showPing,
    );
    result.pingDense = await step(
      `ping ${dense.count} x ${dense.intervalMs} ms`,
      () => pingStats(ends.client, ends.serverIP, dense.count, dense.intervalMs / 1000),
      showPing,
    );
    // sockperf 3.7 (Debian 12) takes no IPv6 address: the IPv6 paths use bench/rr.c instead.
    const v6 = pathFamily(name) === 6;
    result.info.requestResponseTool = v6 ? 'felt-rr (bench/rr.c)' : 'sockperf ping-pong';
    rrServer = (await step(`start ${v6 ? 'felt-rr' : 'sockperf'} server`, () => (v6
      ? startRrToolServer(rrTool(), ends.server, ends.serverIP)
      : startRrServer(ends.server, ends.serverIP)), () => 'listening')) ?? undefined;
    if (rrServer && agentsAlive(ends, result, log)) {
      result.rr = await step(`TCP request/response ${settings.rrBytes} B, ${settings.rrRuns} x ${settings.rrSeconds} s`, () => measureRr(ends, settings, v6), describeRr);
    }
    await rrServer?.stop();
    rrServer = undefined;
    if (!settings.latencyOnly) {
      server = (await step('start iperf3 server', () => startIperfServer(ends.server, ends.serverIP), () => 'listening')) ?? undefined;
    }
    if (server && agentsAlive(ends, result, log)) {
      result.single = await step(`1-flow TCP ${settings.durationS} s`, () => measureTcp(ends, settings, 1), describeRun);
    }
    if (server && agentsAlive(ends, result, log)) {
      result.multi = await step(`${settings.multiStreams}-flow TCP ${settings.durationS} s`, () => measureTcp(ends, settings, settings.multiStreams), describeRun);
    }
    if (agentsAlive(ends, result, log) && ends.agents) {
      // The engines' own facts (offloads in use, batching counters over the whole path).
      const features = async (a: NonNullable<PathEnds['agents']>['sender']) =>
        (await a.fetchJSON<{ datapath?: { features?: unknown } | null }>('/leases?format=json').catch(() => null))?.datapath?.features ?? null;
      result.info.agentFeatures = { sender: await features(ends.agents.sender), receiver: await features(ends.agents.receiver) };
    }
  } finally {
    await rrServer?.stop().catch(() => undefined);
    await server?.stop().catch(() => undefined);
    await step('tear down', () => ends.teardown(), () => 'done');
  }
  const latencyOk = result.pingSparse !== null && result.pingDense !== null && result.rr !== null;
  const throughputOk = settings.latencyOnly || (result.single !== null && result.multi !== null);
  result.ok = result.errors.length === 0 && latencyOk && throughputOk;
  return result;
}

/** felt-rr, compiled on first use into a scratch directory removed at exit. */
let rrToolPath: string | undefined;
function rrTool(): string {
  if (!rrToolPath) {
    const dir = mkdtempSync(join(os.tmpdir(), 'felt-rr-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    rrToolPath = buildRrTool(dir);
  }
  return rrToolPath;
}
