// `npm run bench:scale`: felt with 5,000 subnet leases in a real etcd, for each engine:
//   - agent start to full table (every lease applied and the route table set), from the agent's log,
//     confirmed through /leases;
//   - agent RSS after settling (VmRSS), with the same agent's RSS on an empty table for comparison;
//   - lease change to data path: a prober in node n1 sends a UDP datagram every millisecond into a
//     fresh subnet; the bench puts a lease for it naming node n2 and tcpdump on n1's eth0 sees the
//     first encapsulated datagram leave (no-route -> forwarded; kernel timestamps), then the bench
//     deletes the lease and sees the last one. Reported as control-plane latency (the agent's
//     "lease event" log line) and data-path latency (first/last datagram on the wire), median
//     and max over several changes;
//   - route lookup cost with 10 to 5,000 leases: the js RouteTable and the C table (routes.c).
// Targets: full table < 2 s, change applied < 100 ms (max over the changes), RSS < 150 MB.
// Writes bench/results/scale.json. Needs root, etcd, ping, tcpdump; cc for the C lookup figure.
// Over 450 lines on purpose: set-up, the measurements and the report of one bench belong together.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { startAgent, type AgentHandle, type Engine } from '../test/testbed/agent.js';
import { sleep } from '../test/testbed/netns.js';
import { repoRoot } from '../test/testbed/tcp.js';
import { Testbed, type TestbedNode } from '../test/testbed/testbed.js';
import { RouteTable } from '../src/datapath/routes.js';
import { formatIPv4 } from '../src/net/cidr.js';

export const SCALE_SCHEMA = 'felt-bench-scale/1';

const USAGE = `usage: npm run bench:scale -- [--leases N] [--changes K] [--only native,js] [--out DIR] [--node-options OPTS]

  --leases N     subnet leases written to etcd (default 5000)
  --changes K    lease changes (put + delete) timed per engine (default 10)
  --only LIST    engines, comma-separated: native, js (default both)
  --out DIR      where scale.json goes (default bench/results)
  --node-options OPTS   NODE_OPTIONS for the agents (e.g. --max-old-space-size=96, --require=FILE)
Needs root (namespaces), etcd, ping and tcpdump; cc for the C lookup figure.`;

const TARGETS = { fullTableMs: 2000, changeMs: 100, rssMB: 150 } as const;
/** The overlay: a /8 holds 65,535 /24 leases (a /16 only 254). */
const NETWORK = { Network: '10.0.0.0/8', SubnetLen: 24, Backend: { Type: 'udp' } };
const PREFIX = '/coreos.com/network';
/** flannel's lease TTL: every subnet key rides on its own 24 h etcd lease, as 5,000 nodes' would. */
const LEASE_TTL_S = 24 * 3600;
const AGENT_ARGS = ['--iptables-forward-rules=false'];
/** Extra environment for the agents (--node-options). */
let agentEnv: NodeJS.ProcessEnv = {};
const SETTLE_MS = 5000;
const PROBE_INTERVAL_MS = 1;
const CHANGE_TIMEOUT_MS = 5000;
/** A deleted route is judged gone when no datagram for it arrived for this long. */
const QUIET_MS = 500;

const started = Date.now();
function log(message: string): void {
  const t = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  process.stdout.write(`[${t}s] ${message}\n`);
}

/** Wall clock in ms with sub-ms precision, comparable across processes (same machine clock). */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

// ---- leases -------------------------------------------------------------------------------------

/** Bench lease i: subnet 10.(1 + i / 256).(i % 256).0/24 on a fake peer 172.16.0.0/12 + i + 1. */
function benchSubnet(i: number): string {
  return `10.${1 + Math.floor(i / 256)}.${i % 256}.0`;
}
function fakePeer(i: number): string {
  return formatIPv4((0xac100000 + i + 1) >>> 0);
}
/** The subnets the change probes use (outside the bench leases and the agent's own). */
function changeSubnet(k: number): string {
  return `10.200.${k}.0`;
}
const keyOf = (subnet: string): string => `${PREFIX}/subnets/${subnet}-24`;
const leaseValue = (publicIP: string): string => JSON.stringify({ PublicIP: publicIP, PublicIPv6: null });

async function writeLeases(tb: Testbed, count: number): Promise<number> {
  const etcd = tb.etcdClient;
  const t0 = nowMs();
  let next = 0;
  // Grants and puts batch well when many are in flight.
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      const { ID } = await etcd.leaseClient.leaseGrant({ TTL: LEASE_TTL_S });
      await etcd.kv.put({ key: Buffer.from(keyOf(benchSubnet(i))), value: Buffer.from(leaseValue(fakePeer(i))), lease: ID });
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  return nowMs() - t0;
}

/**
 * What an initial list costs in etcd: one range over every subnet key, and one TimeToLive call per
 * lease, 128 in flight, as src/lease/etcd.ts list() does before it delivers a snapshot.
 */
async function etcdListCost(tb: Testbed): Promise<{ keys: number; rangeMs: number; timeToLiveMs: number }> {
  const etcd = tb.etcdClient;
  const t0 = nowMs();
  const res = await etcd.kv.range({ key: Buffer.from(`${PREFIX}/subnets/`), range_end: Buffer.from(`${PREFIX}/subnets0`) });
  const rangeMs = nowMs() - t0;
  const ids = res.kvs.map((kv) => kv.lease).filter((id) => id && id !== '0');
  let next = 0;
  const t1 = nowMs();
  const worker = async (): Promise<void> => {
    while (next < ids.length) await etcd.leaseClient.leaseTimeToLive({ ID: ids[next++]! });
  };
  await Promise.all(Array.from({ length: 128 }, worker));
  return { keys: res.kvs.length, rangeMs: round1(rangeMs), timeToLiveMs: round1(nowMs() - t1) };
}

/** heap and external memory of the agent's Node process, from its /metrics (prom-client defaults). */
async function heapFromMetrics(agent: AgentHandle): Promise<{ heapUsedMB: number; heapTotalMB: number; externalMB: number } | null> {
  const text = (await agent.fetchText('/metrics')).body;
  const value = (name: string): number | undefined => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+]+)$`, 'm').exec(text);
    return m ? Number(m[1]) / 1048576 : undefined;
  };
  const used = value('nodejs_heap_size_used_bytes');
  const total = value('nodejs_heap_size_total_bytes');
  const external = value('nodejs_external_memory_bytes');
  return used === undefined || total === undefined || external === undefined
    ? null
    : { heapUsedMB: round1(used), heapTotalMB: round1(total), externalMB: round1(external) };
}

// ---- agent log --------------------------------------------------------------------------------------

interface LeaseEventLine {
  time: number;
  event: string;
  subnet: string;
}

/**
 * When the agent applied its initial table: a large snapshot is logged as one summary line
 * ("lease table updated", with the count added) instead of a line per lease.
 */
function initialTableAppliedAt(agent: AgentHandle, wanted: number): number | undefined {
  for (const line of agent.logs().split('\n')) {
    if (!line.startsWith('{') || !line.includes('"lease table updated"')) continue;
    try {
      const j = JSON.parse(line) as { time: number; added: number; msg: string };
      if (j.msg === 'lease table updated' && j.added >= wanted) return j.time;
    } catch {
      // a line cut by a concurrent write: skip
    }
  }
  const added = leaseEvents(agent).filter((e) => e.event === 'added');
  return added.length >= wanted ? added[wanted - 1]!.time : undefined;
}

function leaseEvents(agent: AgentHandle): LeaseEventLine[] {
  const out: LeaseEventLine[] = [];
  for (const line of agent.logs().split('\n')) {
    if (!line.startsWith('{') || !line.includes('"lease event"')) continue;
    try {
      const j = JSON.parse(line) as { time: number; event: string; subnet: string; msg: string };
      if (j.msg === 'lease event') out.push({ time: j.time, event: j.event, subnet: j.subnet });
    } catch {
      // a line cut by a concurrent write: skip
    }
  }
  return out;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined> | T | undefined, everyMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

function procStatusKB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

// ---- probes: a sender in n1, a listener in n2 ------------------------------------------------------

/** Sends a small UDP datagram to argv[1]:9 every PROBE_INTERVAL_MS (routed into the TUN device). */
const PROBER_SRC = `
const s = require('node:dgram').createSocket('udp4');
const buf = Buffer.alloc(32);
setInterval(() => s.send(buf, 9, process.argv[1], () => {}), ${PROBE_INTERVAL_MS});`;

/** Receives (and drops) what reaches argv[1]:8285, so n2 answers nothing (no ICMP port unreachable). */
const SINK_SRC = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', () => {});
s.bind(8285, process.argv[1], () => process.stdout.write('ready\\n'));`;

async function startSink(node: TestbedNode): Promise<ChildProcess> {
  const child = node.ns.spawn([process.execPath, '-e', SINK_SRC, node.underlayIP], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolveReady, reject) => {
    child.once('exit', (code) => reject(new Error(`UDP sink in ${node.name} exited (${code})`)));
    createInterface({ input: child.stdout! }).once('line', () => resolveReady());
  });
  return child;
}

/**
 * tcpdump on a node's eth0 for the encapsulated datagrams (UDP to :8285) whose inner destination
 * is `inner`: kernel timestamps of when each left, so neither the bench's nor a listener's
 * scheduling is part of the figure.
 */
class Capture {
  private readonly times: number[] = [];
  private child?: ChildProcess;

  async start(node: TestbedNode, inner: string): Promise<void> {
    const hex = inner.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('');
    // The inner IPv4 header starts 8 bytes into the UDP header: its destination is udp[24:4].
    const filter = `udp dst port 8285 and udp[24:4] = 0x${hex}`;
    const child = node.ns.spawn(['tcpdump', '-i', 'eth0', '-n', '-l', '-tt', '--immediate-mode', '-s', '64', filter], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const t = Number(line.split(' ')[0]);
      if (Number.isFinite(t)) this.times.push(t * 1000);
    });
    await new Promise<void>((resolveReady, reject) => {
      child.once('exit', (code) => reject(new Error(`tcpdump in ${node.name} exited (${code})`)));
      createInterface({ input: child.stderr! }).on('line', (line) => {
        if (/listening on/.test(line)) resolveReady();
      });
    });
  }

  first(after: number): number | undefined {
    return this.times.find((t) => t >= after);
  }
  last(): number | undefined {
    return this.times.at(-1);
  }
  stop(): void {
    this.child?.kill('SIGKILL');
  }
}

// ---- one engine -------------------------------------------------------------------------------------

interface Latencies {
  controlPlaneMs: number[];
  dataPathMs: number[];
}

interface EngineResult {
  engine: Engine;
  leases: number;
  /** Spawn to /readyz 200. */
  startToReadyMs: number;
  /** Spawn to the agent's log line that applied the initial table (the route table is set in the same tick). */
  startToFullTableMs: number;
  /** Spawn to /leases showing every lease and the route count (an upper bound: includes polling). */
  fullTableConfirmedMs: number;
  routes: number;
  /** GET /leases with the full table, as the debug page does. */
  leasesFetchMs: number;
  rssMB: number;
  peakRssMB: number;
  /** The V8 heap and external memory at the same moment (from /metrics), null when not exported. */
  heap: { heapUsedMB: number; heapTotalMB: number; externalMB: number } | null;
  /** The same agent on a table holding only its own lease. */
  emptyTableRssMB: number | null;
  changes: { add: Latencies; delete: Latencies };
}

const median = (xs: number[]): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const max = (xs: number[]): number => (xs.length ? Math.max(...xs) : NaN);
const round1 = (x: number): number => Math.round(x * 10) / 10;

async function measureEmpty(tb: Testbed, engine: Engine): Promise<number> {
  const agent = await startAgent(tb, tb.node(1), { engine, extraArgs: AGENT_ARGS, pods: false, env: agentEnv });
  try {
    await sleep(SETTLE_MS);
    return procStatusKB(agent.pid, 'VmRSS') / 1024;
  } finally {
    await agent.stop();
  }
}

async function measureEngine(tb: Testbed, engine: Engine, leases: number, changes: number, emptyRss: number | null): Promise<EngineResult> {
  const n1 = tb.node(1);
  const n2 = tb.node(2);
  log(`${engine}: starting the agent with ${leases} leases in etcd`);
  const t0 = nowMs();
  const agent = await startAgent(tb, n1, { engine, extraArgs: AGENT_ARGS, pods: false, readyTimeoutMs: 120_000, env: agentEnv });
  const startToReadyMs = nowMs() - t0;
  try {
    const own = agent.subnet;
    // The table is full when every bench lease and our own were applied, and /leases shows the routes.
    const view = await waitFor('the full table in /leases', 120_000, async () => {
      const v = await agent.fetchJSON<{ leaseCount: number; datapath: { features: { routes?: number } } | null }>('/leases');
      return v.leaseCount >= leases + 1 && (v.datapath?.features.routes ?? 0) >= leases ? v : undefined;
    }, 50);
    const fullTableConfirmedMs = nowMs() - t0;
    const appliedAt = initialTableAppliedAt(agent, leases + 1);
    if (appliedAt === undefined) throw new Error(`${engine}: the agent's log does not show ${leases + 1} leases applied`);
    const startToFullTableMs = appliedAt - t0;
    log(`${engine}: ready after ${startToReadyMs.toFixed(0)} ms, full table (${view.datapath?.features.routes} routes) after ${startToFullTableMs.toFixed(0)} ms (confirmed by /leases at ${fullTableConfirmedMs.toFixed(0)} ms); own lease ${own}`);

    const f0 = nowMs();
    await agent.fetchText('/leases');
    const leasesFetchMs = nowMs() - f0;

    await sleep(SETTLE_MS);
    const rssMB = procStatusKB(agent.pid, 'VmRSS') / 1024;
    const peakRssMB = procStatusKB(agent.pid, 'VmHWM') / 1024;
    const heap = await heapFromMetrics(agent);
    log(`${engine}: RSS ${rssMB.toFixed(1)} MB after settling (peak ${peakRssMB.toFixed(1)} MB; V8 heap used ${heap?.heapUsedMB ?? '?'} of ${heap?.heapTotalMB ?? '?'} MB, external ${heap?.externalMB ?? '?'} MB), GET /leases ${leasesFetchMs.toFixed(0)} ms`);

    const result = await measureChanges(tb, agent, n1, n2, changes);
    return {
      engine,
      leases,
      startToReadyMs: round1(startToReadyMs),
      startToFullTableMs: round1(startToFullTableMs),
      fullTableConfirmedMs: round1(fullTableConfirmedMs),
      routes: view.datapath?.features.routes ?? 0,
      leasesFetchMs: round1(leasesFetchMs),
      rssMB: round1(rssMB),
      peakRssMB: round1(peakRssMB),
      heap,
      emptyTableRssMB: emptyRss === null ? null : round1(emptyRss),
      changes: result,
    };
  } finally {
    await agent.stop();
  }
}

async function measureChanges(tb: Testbed, agent: AgentHandle, n1: TestbedNode, n2: TestbedNode, changes: number): Promise<{ add: Latencies; delete: Latencies }> {
  const etcd = tb.etcdClient;
  const sink = await startSink(n2);
  const add: Latencies = { controlPlaneMs: [], dataPathMs: [] };
  const del: Latencies = { controlPlaneMs: [], dataPathMs: [] };
  try {
    for (let k = 1; k <= changes; k++) {
      const subnet = changeSubnet(k);
      const target = subnet.replace(/\.0$/, '.5');
      const key = keyOf(subnet);
      await etcd.delete().key(key); // a leftover of an earlier engine's run
      // Warm n1's neighbour entry for n2, so ARP is not part of the first datagram's trip.
      await n1.ns.exec(['ping', '-c', '1', '-W', '1', n2.underlayIP], { check: false });
      const capture = new Capture();
      await capture.start(n1, target);
      const prober = n1.ns.spawn([process.execPath, '-e', PROBER_SRC, target], { stdio: 'ignore' });
      try {
        await sleep(300); // steady state: every datagram dropped no-route
        if (capture.last() !== undefined) throw new Error(`${subnet} was forwarded before its lease existed`);
        const { ID } = await etcd.leaseClient.leaseGrant({ TTL: LEASE_TTL_S });
        const tPut = nowMs();
        await etcd.kv.put({ key: Buffer.from(key), value: Buffer.from(leaseValue(n2.underlayIP)), lease: ID });
        const first = await waitFor(`the first datagram for ${subnet}`, CHANGE_TIMEOUT_MS, () => capture.first(tPut), 5);
        const addEvent = await waitFor(`the add event for ${subnet}`, CHANGE_TIMEOUT_MS, () =>
          leaseEvents(agent).find((e) => e.event === 'added' && e.subnet === `${subnet}/24`));
        add.dataPathMs.push(round1(first - tPut));
        add.controlPlaneMs.push(round1(addEvent.time - tPut));

        await sleep(300); // forwarding steadily
        const tDel = nowMs();
        await etcd.delete().key(key);
        // Gone when nothing left n1 for QUIET_MS.
        await waitFor(`${subnet} to stop being forwarded`, CHANGE_TIMEOUT_MS, () =>
          nowMs() - Math.max(capture.last() ?? 0, tDel) > QUIET_MS ? true : undefined, 10);
        const last = capture.last()!;
        const delEvent = await waitFor(`the delete event for ${subnet}`, CHANGE_TIMEOUT_MS, () =>
          leaseEvents(agent).find((e) => e.event === 'removed' && e.subnet === `${subnet}/24`));
        del.dataPathMs.push(round1(Math.max(0, last - tDel)));
        del.controlPlaneMs.push(round1(delEvent.time - tDel));
        await etcd.leaseClient.leaseRevoke({ ID }).catch(() => undefined);
        log(`${agent.node.name}: change ${k}/${changes} ${subnet}/24: add ${add.dataPathMs.at(-1)} ms (event ${add.controlPlaneMs.at(-1)} ms), delete ${del.dataPathMs.at(-1)} ms (event ${del.controlPlaneMs.at(-1)} ms)`);
      } finally {
        prober.kill('SIGKILL');
        capture.stop();
      }
    }
  } finally {
    sink.kill('SIGKILL');
  }
  return { add, delete: del };
}

// ---- lookup cost ------------------------------------------------------------------------------------

interface LookupPoint {
  routes: number;
  nsPerLookup: number;
}

const LOOKUP_SIZES = [10, 100, 1000, 5000];

function jsLookup(): LookupPoint[] {
  const out: LookupPoint[] = [];
  const ndst = 1 << 16;
  const lookups = 5_000_000;
  let rng = 0x12345678;
  const rnd = (): number => {
    rng ^= rng << 13;
    rng ^= rng >>> 17;
    rng ^= rng << 5;
    return rng >>> 0;
  };
  for (const n of LOOKUP_SIZES) {
    const subnetIp = (i: number): number => (0x0a000000 | ((1 + Math.floor(i / 256)) << 16) | ((i % 256) << 8)) >>> 0;
    const table = new RouteTable(Array.from({ length: n }, (_, i) => ({ subnet: { ip: subnetIp(i), prefixLen: 24 }, publicIP: (0xac100000 + i + 1) >>> 0 })));
    const dst = new Uint32Array(ndst);
    for (let i = 0; i < ndst; i++) dst[i] = i % 2 ? (subnetIp(rnd() % n) | (rnd() & 0xff)) >>> 0 : (0x0a000000 | (rnd() & 0xffffff)) >>> 0;
    let best = Infinity;
    let hits = 0;
    for (let rep = 0; rep < 3; rep++) {
      const t0 = performance.now();
      for (let i = 0; i < lookups; i++) if (table.lookup(dst[i & (ndst - 1)]!) !== undefined) hits++;
      best = Math.min(best, ((performance.now() - t0) * 1e6) / lookups);
    }
    if (hits === 0) throw new Error('lookup bench: no hits');
    out.push({ routes: n, nsPerLookup: Math.round(best * 100) / 100 });
  }
  return out;
}

/** Compiles native/fuzz/lookup_bench.c against native/routes.c and runs it; null without cc. */
function nativeLookup(): LookupPoint[] | null {
  const dir = mkdtempSync(join(os.tmpdir(), 'felt-lookup-'));
  try {
    const native = join(repoRoot(), 'native');
    const bin = join(dir, 'lookup_bench');
    execFileSync('cc', ['-O2', '-std=gnu11', '-D_GNU_SOURCE', '-o', bin, join(native, 'fuzz/lookup_bench.c'), join(native, 'routes.c'), join(native, 'u32map.c'), join(native, 'err.c')], { stdio: 'pipe' });
    const runs = [0, 1, 2].map(() => JSON.parse(execFileSync(bin, LOOKUP_SIZES.map(String), { encoding: 'utf8' })) as LookupPoint[]);
    return LOOKUP_SIZES.map((n, i) => ({ routes: n, nsPerLookup: Math.min(...runs.map((r) => r[i]!.nsPerLookup)) }));
  } catch (err) {
    log(`C lookup figure skipped: ${(err as Error).message.split('\n')[0]}`);
    return null;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- report -----------------------------------------------------------------------------------------

interface TargetCheck {
  engine: Engine;
  name: string;
  target: string;
  value: number;
  met: boolean;
}

function evaluate(results: EngineResult[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  for (const r of results) {
    out.push({ engine: r.engine, name: 'start to full table (ms)', target: `< ${TARGETS.fullTableMs}`, value: round1(r.startToFullTableMs), met: r.startToFullTableMs < TARGETS.fullTableMs });
    const worst = Math.max(max(r.changes.add.dataPathMs), max(r.changes.delete.dataPathMs), max(r.changes.add.controlPlaneMs), max(r.changes.delete.controlPlaneMs));
    out.push({ engine: r.engine, name: 'change applied, max (ms)', target: `< ${TARGETS.changeMs}`, value: worst, met: worst < TARGETS.changeMs });
    out.push({ engine: r.engine, name: 'RSS after settling (MB)', target: `< ${TARGETS.rssMB}`, value: r.rssMB, met: r.rssMB < TARGETS.rssMB });
  }
  return out;
}

type ListCost = Awaited<ReturnType<typeof etcdListCost>>;

function formatReport(results: EngineResult[], targets: TargetCheck[], lookup: { js: LookupPoint[]; native: LookupPoint[] | null }, writeMs: number, leases: number, listCost: ListCost | null): string {
  const lines: string[] = [];
  const pad = (s: string, n: number): string => s.padEnd(n);
  lines.push('', `felt at ${leases} leases (etcd write of ${leases} leases: ${(writeMs / 1000).toFixed(1)} s)`);
  if (listCost) {
    lines.push(`etcd, seen from the bench: one range of ${listCost.keys} keys ${listCost.rangeMs.toFixed(0)} ms; ${listCost.keys} lease TimeToLive calls, 128 in flight (as the lease store's list() does) ${listCost.timeToLiveMs.toFixed(0)} ms`);
  }
  lines.push('');
  lines.push(`${pad('', 36)}${results.map((r) => pad(r.engine, 22)).join('')}`);
  const row = (label: string, f: (r: EngineResult) => string): void => {
    lines.push(`${pad(label, 36)}${results.map((r) => pad(f(r), 22)).join('')}`);
  };
  const lat = (xs: number[]): string => `${median(xs).toFixed(1)} / ${max(xs).toFixed(1)}`;
  row('start to ready (ms)', (r) => r.startToReadyMs.toFixed(0));
  row('start to full table (ms)', (r) => r.startToFullTableMs.toFixed(0));
  row('  confirmed by /leases (ms)', (r) => r.fullTableConfirmedMs.toFixed(0));
  row('routes in the data path', (r) => String(r.routes));
  row('RSS settled / peak (MB)', (r) => `${r.rssMB.toFixed(1)} / ${r.peakRssMB.toFixed(1)}`);
  row('RSS with an empty table (MB)', (r) => (r.emptyTableRssMB === null ? '-' : r.emptyTableRssMB.toFixed(1)));
  row('V8 heap used / total (MB)', (r) => (r.heap ? `${r.heap.heapUsedMB.toFixed(1)} / ${r.heap.heapTotalMB.toFixed(1)}` : '-'));
  row('GET /leases (ms)', (r) => r.leasesFetchMs.toFixed(0));
  row('add: lease event, med / max (ms)', (r) => lat(r.changes.add.controlPlaneMs));
  row('add: first packet, med / max (ms)', (r) => lat(r.changes.add.dataPathMs));
  row('delete: lease event, med / max', (r) => lat(r.changes.delete.controlPlaneMs));
  row('delete: last packet, med / max', (r) => lat(r.changes.delete.dataPathMs));
  lines.push('', `route lookup, ns per lookup (half hits, half misses in 10.0.0.0/8):`);
  lines.push(`  ${pad('routes', 10)}${LOOKUP_SIZES.map((n) => pad(String(n), 10)).join('')}`);
  lines.push(`  ${pad('js', 10)}${lookup.js.map((p) => pad(p.nsPerLookup.toFixed(1), 10)).join('')}`);
  lines.push(`  ${pad('C', 10)}${lookup.native ? lookup.native.map((p) => pad(p.nsPerLookup.toFixed(1), 10)).join('') : 'not measured (no cc)'}`);
  lines.push('', 'targets:');
  for (const t of targets) lines.push(`  ${pad(t.engine, 8)}${pad(t.name, 30)}${pad(`${t.value}`, 10)}${pad(t.target, 10)}${t.met ? 'met' : 'MISSED'}`);
  return lines.join('\n');
}

// ---- main -------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        leases: { type: 'string', default: '5000' },
        changes: { type: 'string', default: '10' },
        only: { type: 'string', default: 'native,js' },
        out: { type: 'string', default: join(repoRoot(), 'bench', 'results') },
        'node-options': { type: 'string', default: '' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`bench:scale: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const leases = Number(values.leases);
  const changes = Number(values.changes);
  const engines = values.only.split(',').map((s) => s.trim()) as Engine[];
  if (!Number.isInteger(leases) || leases < 1 || leases > 40_000 || !Number.isInteger(changes) || changes < 1 || changes > 250 || engines.some((e) => e !== 'native' && e !== 'js')) {
    process.stderr.write(`bench:scale: bad arguments\n${USAGE}\n`);
    process.exit(2);
  }
  if (values['node-options']) agentEnv = { NODE_OPTIONS: values['node-options'] };
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench:scale: needs root (network namespaces)\n');
    process.exit(2);
  }

  log('lookup cost (js RouteTable, C routes.c)');
  const lookup = { js: jsLookup(), native: nativeLookup() };

  const tb = await Testbed.create({ nodes: 2, etcd: true, networkConfig: NETWORK });
  const results: EngineResult[] = [];
  let writeMs = 0;
  let listCost: ListCost | null = null;
  try {
    log(`testbed ${tb.prefix}: nodes n1 (agent) and n2 (probe listener), etcd in the hub`);
    const empty = new Map<Engine, number>();
    for (const engine of engines) {
      empty.set(engine, await measureEmpty(tb, engine));
      log(`${engine}: RSS with an empty table ${empty.get(engine)!.toFixed(1)} MB`);
    }
    log(`writing ${leases} leases (one etcd lease each, ${LEASE_TTL_S / 3600} h TTL)`);
    writeMs = await writeLeases(tb, leases);
    log(`wrote ${leases} leases in ${(writeMs / 1000).toFixed(1)} s`);
    listCost = await etcdListCost(tb);
    log(`etcd: range of ${listCost.keys} keys ${listCost.rangeMs} ms, ${listCost.keys} TimeToLive calls ${listCost.timeToLiveMs} ms`);
    for (const engine of engines) results.push(await measureEngine(tb, engine, leases, changes, empty.get(engine) ?? null));
  } finally {
    await tb.destroy();
  }

  const targets = evaluate(results);
  console.log(formatReport(results, targets, lookup, writeMs, leases, listCost));
  const report = {
    schema: SCALE_SCHEMA,
    generatedAt: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? '', kernel: os.release(), node: process.version },
    settings: { leases, changes, nodeOptions: values['node-options'] || null, network: NETWORK, fakePeers: '172.16.0.0/12 (never contacted)', probeIntervalMs: PROBE_INTERVAL_MS, settleMs: SETTLE_MS, agentArgs: AGENT_ARGS },
    etcdWriteMs: round1(writeMs),
    etcdListCost: listCost,
    engines: Object.fromEntries(results.map((r) => [r.engine, r])),
    summary: Object.fromEntries(results.map((r) => {
      const stat = (xs: number[]) => ({ median: round1(median(xs)), max: round1(max(xs)) });
      return [r.engine, {
        addDataPathMs: stat(r.changes.add.dataPathMs),
        addControlPlaneMs: stat(r.changes.add.controlPlaneMs),
        deleteDataPathMs: stat(r.changes.delete.dataPathMs),
        deleteControlPlaneMs: stat(r.changes.delete.controlPlaneMs),
      }];
    })),
    lookup,
    targets,
  };
  const outDir = resolve(values.out);
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'scale.json');
  writeFileSync(`${file}.tmp`, `${JSON.stringify(report, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  log(`wrote ${file}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:scale failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
