// Long on purpose: each row's synthetic data sits next to the row, and rows, runner and report
// share one output schema (MICRO_SCHEMA); split, the pieces would only be read together.
// `npm run bench:micro`: tinybench micro-benchmarks of the control plane's and the js engine's hot
// functions: route lookup with 10 / 1,000 / 5,000 leases (js RouteTable, IPv4 and IPv6, and the C
// table when the addon has a lookup hook), encap and decap per packet (the js engine's pure
// per-packet work: no syscalls; also through JsForwarder's batch entry points with I/O that
// discards), and lease-table sync of 5,000 leases. Prints ops/s and ns/op, judges the lookup
// targets (5,000 leases no slower than 10 by more than 2x) and writes bench/results/micro.json.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Bench, type Task } from 'tinybench';
import { formatIPv4, makeSubnet, parseIPv4, subnetContainsIP, type Subnet } from '../src/net/cidr.js';
import { decrementTTL, internetChecksum, IP_OFF, readU16, readU32, validateIPv4 } from '../src/datapath/packet.js';
import { RouteTable, subnetsContain } from '../src/datapath/routes.js';
import { JsForwarder, type BatchIO } from '../src/datapath/js-forwarder.js';
import { ipv6ToBytes, makeSubnet6, parseIPv6 } from '../src/net/ip6.js';
import type { Route } from '../src/datapath/types.js';
import { LeaseTable } from '../src/lease/table.js';
import type { Lease } from '../src/lease/types.js';
import { repoRoot } from '../test/testbed/tcp.js';

export const MICRO_SCHEMA = 'felt-bench-micro/1';
const LEASE_COUNTS = [10, 1_000, 5_000] as const;
/** Lookups / packets per timed iteration: one call is far below the timer's resolution. */
const BATCH = 4096;
/** The overlay used for the synthetic leases: a /8 holds 65,536 /24 leases (a /16 only 256). */
const NETWORK = makeSubnet(parseIPv4('10.0.0.0'), 8);
const OWN_SUBNET = makeSubnet(parseIPv4('10.255.255.0'), 24);
const TUNNEL_MTU = 1472;

const USAGE = `usage: npm run bench:micro -- [--time MS] [--quick] [--out DIR]

  --time MS   time budget per benchmark in ms (default 1000; 250 with --quick)
  --quick     short runs
  --out DIR   where micro.json goes (default bench/results)`;

// ---- synthetic data -----------------------------------------------------------------------------

/** A deterministic PRNG (mulberry32), so every run looks up the same addresses. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` /24 leases spread over 10.0.0.0/8, each with its own PublicIP (172.16.0.0 + i). */
function makeRoutes(n: number): Route[] {
  const routes: Route[] = [];
  const stride = Math.floor(65_000 / n);
  for (let i = 0; i < n; i++) {
    routes.push({ subnet: makeSubnet((NETWORK.ip + (i * stride + 1) * 256) >>> 0, 24), publicIP: (parseIPv4('172.16.0.0') + i) >>> 0 });
  }
  return routes;
}

const NETWORK6 = parseIPv6('fd00:10::');

/** The same leases with an IPv6 /64 each as well (fd00:10:<i * stride>::/64). */
function makeRoutes6(n: number): Route[] {
  const stride = Math.floor(65_000 / n);
  return makeRoutes(n).map((r, i) => ({ ...r, subnet6: makeSubnet6(NETWORK6 + (BigInt(i * stride + 1) << 64n), 64) }));
}

/** BATCH IPv6 destinations as 16-byte addresses, each a random host inside a random lease. */
function makeDestinations6(routes: readonly Route[], seed: number): Buffer {
  const rnd = prng(seed);
  const out = Buffer.alloc(BATCH * 16);
  for (let i = 0; i < BATCH; i++) {
    const r = routes[Math.floor(rnd() * routes.length)]!;
    out.set(ipv6ToBytes(r.subnet6!.ip + BigInt(1 + Math.floor(rnd() * 65_000))), i * 16);
  }
  return out;
}

/** BATCH destinations, each a random host inside a random lease (every lookup hits). */
function makeDestinations(routes: readonly Route[], seed: number): Uint32Array {
  const rnd = prng(seed);
  const out = new Uint32Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    const r = routes[Math.floor(rnd() * routes.length)]!;
    out[i] = (r.subnet!.ip + 1 + Math.floor(rnd() * 254)) >>> 0;
  }
  return out;
}

function makeLeases(n: number): Lease[] {
  return makeRoutes(n).map((r) => {
    const publicIP = formatIPv4(r.publicIP);
    const key = `/coreos.com/network/subnets/${formatIPv4(r.subnet!.ip)}-24`;
    return { subnet: r.subnet, publicIP, source: { kind: 'etcd', key, modRevision: '1' }, attrs: { PublicIP: publicIP } };
  });
}

/** An IPv4/TCP packet of `size` bytes from `src` to `dst`, TTL 64, DF, valid header checksum. */
function makePacket(size: number, src: number, dst: number): Buffer {
  const p = Buffer.alloc(size);
  p[0] = 0x45;
  p.writeUInt16BE(size, IP_OFF.totalLength);
  p.writeUInt16BE(0x4000, IP_OFF.flagsFragment);
  p[IP_OFF.ttl] = 64;
  p[IP_OFF.protocol] = 6;
  p.writeUInt32BE(src, IP_OFF.src);
  p.writeUInt32BE(dst, IP_OFF.dst);
  p.writeUInt16BE(internetChecksum(p, 0, 20), IP_OFF.checksum);
  for (let i = 20; i < size; i++) p[i] = i & 0xff;
  return p;
}

const OWN_SUBNET6 = NETWORK6 + (0xffffn << 64n);

/** An IPv6/TCP packet of `size` bytes from `src` to `dst`, hop limit 64. */
function makePacket6(size: number, src: bigint, dst: bigint): Buffer {
  const p = Buffer.alloc(size);
  p[0] = 0x60;
  p.writeUInt16BE(size - 40, 4);
  p[6] = 6;
  p[7] = 64;
  p.set(ipv6ToBytes(src), 8);
  p.set(ipv6ToBytes(dst), 24);
  for (let i = 40; i < size; i++) p[i] = i & 0xff;
  return p;
}

/** `count` copies of `packet`, each behind a `header`-byte record header that `fill` writes. */
function records(packet: Buffer, header: number, count: number, fill: (rec: Buffer) => void): Buffer {
  const out = Buffer.alloc(count * (header + packet.length));
  for (let i = 0; i < count; i++) {
    const rec = out.subarray(i * (header + packet.length));
    fill(rec);
    packet.copy(rec, header);
  }
  return out;
}

const DISCARD: BatchIO = {
  sendBatch: (_buf, _desc, count, ok) => void ok.fill(1, 0, count),
  sendBatch6: (_buf, _desc, count, ok) => void ok.fill(1, 0, count),
  writeTunBatch: (_buf, _desc, count, ok) => void ok.fill(1, 0, count),
};

/** A dual-stack forwarder with an IPv4 underlay only (the peers' IPv4 addresses are used). */
function forwarderFor(routes: Route[]): JsForwarder {
  const fwd = new JsForwarder(
    { localSubnet: OWN_SUBNET, mtu: TUNNEL_MTU, localSubnet6: makeSubnet6(OWN_SUBNET6, 64), bindIP: parseIPv4('172.31.0.1') },
    DISCARD,
  );
  fwd.setRoutes(routes);
  return fwd;
}

// ---- the js engine's per-packet work (as JsDatapath.encap / onDatagram, minus the syscalls) ------

let sink = 0;

/** Encap: validate, own-subnet check, route lookup, TTL and MTU checks, copy, TTL decrement. */
function encapOne(buf: Buffer, table: RouteTable): number {
  if (validateIPv4(buf, 0, buf.length, false) !== 'ok') return -1;
  const totalLen = readU16(buf, IP_OFF.totalLength);
  const dst = readU32(buf, IP_OFF.dst);
  if (subnetContainsIP(OWN_SUBNET, dst)) return -2;
  const route = table.lookup(dst);
  if (route === undefined) return -3;
  if (buf[IP_OFF.ttl]! <= 1) return -4;
  if (totalLen > TUNNEL_MTU) return -5;
  // The engine copies: the reader's batch buffer is reused while dgram may still queue the datagram.
  const packet = Buffer.allocUnsafe(totalLen);
  buf.copy(packet, 0, 0, totalLen);
  decrementTTL(packet, 0);
  return (route.publicIP ^ packet[IP_OFF.ttl]!) >>> 0;
}

interface DecapPeer {
  subnets: readonly Subnet[];
}

/** Decap: peer by outer address, validation with header checksum, admission, TTL check. */
function decapOne(msg: Buffer, from: string, peers: Map<string, DecapPeer>): number {
  const peer = peers.get(from);
  if (peer === undefined) return -1;
  if (validateIPv4(msg, 0, msg.length, true) !== 'ok') return -2;
  if (!subnetsContain(peer.subnets, readU32(msg, IP_OFF.src))) return -3;
  if (msg[IP_OFF.ttl] === 0) return -4;
  return readU16(msg, IP_OFF.totalLength);
}

// ---- optional native hook ---------------------------------------------------------------------

/**
 * If the addon exports `benchRouteLookup(table, dsts, rounds)` — table: Uint32Array of
 * [network, prefixLen, publicIP] triples; dsts: Uint32Array; it builds the C route table once,
 * runs rounds x dsts.length lookups in C and returns the elapsed nanoseconds as a number —
 * the C table is measured too. Otherwise those rows are skipped.
 */
type NativeLookupBench = (table: Uint32Array, dsts: Uint32Array, rounds: number) => number;

async function nativeLookupHook(): Promise<NativeLookupBench | null> {
  try {
    const { loadAddon } = await import('../src/datapath/addon.js');
    const fn = (loadAddon() as unknown as { benchRouteLookup?: unknown }).benchRouteLookup;
    return typeof fn === 'function' ? (fn as NativeLookupBench) : null;
  } catch {
    return null;
  }
}

function flatTable(routes: readonly Route[]): Uint32Array {
  const t = new Uint32Array(routes.length * 3);
  routes.forEach((r, i) => t.set([r.subnet!.ip, r.subnet!.prefixLen, r.publicIP], i * 3));
  return t;
}

// ---- running and reporting ------------------------------------------------------------------------

export interface MicroResult {
  id: string;
  group: 'lookup' | 'lookup6' | 'lookup-native' | 'packet' | 'forwarder' | 'sync';
  name: string;
  /** Leases in the table (lookup, sync) or packet size in bytes (packet). */
  size: number;
  /** Operations per timed iteration (lookups or packets; 1 for a sync). */
  opsPerIteration: number;
  /** Operations per second, from the mean. */
  opsPerSec: number;
  /** Nanoseconds per operation: mean, and the median and p99 of the per-iteration samples. */
  nsPerOp: number;
  nsPerOpP50: number;
  nsPerOpP99: number;
  /** Relative margin of error of the mean, %. */
  rmePct: number;
  samples: number;
}

interface Spec {
  id: string;
  group: MicroResult['group'];
  name: string;
  size: number;
  opsPerIteration: number;
}

function toResult(spec: Spec, task: Task): MicroResult {
  const r = task.result;
  if (r.state !== 'completed') {
    const why = r.state === 'errored' ? String((r as { error?: unknown }).error) : r.state;
    throw new Error(`benchmark "${spec.name}" did not complete: ${why}`);
  }
  const perOp = (ms: number) => (ms * 1e6) / spec.opsPerIteration;
  const nsPerOp = perOp(r.latency.mean);
  return {
    ...spec,
    opsPerSec: nsPerOp > 0 ? 1e9 / nsPerOp : 0,
    nsPerOp,
    nsPerOpP50: perOp(r.latency.p50),
    nsPerOpP99: perOp(r.latency.p99),
    rmePct: r.latency.rme,
    samples: r.latency.samplesCount,
  };
}

function fmtNs(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} us`;
  return `${ns.toFixed(1)} ns`;
}

function fmtOps(ops: number): string {
  if (ops >= 1e6) return `${(ops / 1e6).toFixed(2)} M`;
  if (ops >= 1e3) return `${(ops / 1e3).toFixed(1)} k`;
  return ops.toFixed(1);
}

function formatTable(results: readonly MicroResult[]): string {
  const rows = [
    ['benchmark', 'ops/s', 'ns/op (mean)', 'p50', 'p99', '+-%'],
    ...results.map((r) => [r.name, fmtOps(r.opsPerSec), fmtNs(r.nsPerOp), fmtNs(r.nsPerOpP50), fmtNs(r.nsPerOpP99), r.rmePct.toFixed(1)]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)) + 2);
  const lines = rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('').trimEnd());
  lines.splice(1, 0, '-'.repeat(widths.reduce((a, b) => a + b, 0)));
  return lines.join('\n');
}

export interface MicroTarget {
  id: string;
  description: string;
  /** p50 ns/lookup with 5,000 leases divided by p50 ns/lookup with 10. */
  value: number | null;
  limit: number;
  met: boolean | null;
}

function lookupTarget(results: readonly MicroResult[], group: 'lookup' | 'lookup6' | 'lookup-native', label: string): MicroTarget | null {
  const small = results.find((r) => r.group === group && r.size === 10);
  const large = results.find((r) => r.group === group && r.size === 5_000);
  if (!small && !large) return null;
  const value = small && large && small.nsPerOpP50 > 0 ? large.nsPerOpP50 / small.nsPerOpP50 : null;
  return {
    id: `${group}-5000-vs-10`,
    description: `${label} route lookup, 5,000 leases vs 10: <= 2x`,
    value,
    limit: 2,
    met: value === null ? null : value <= 2,
  };
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        time: { type: 'string' },
        quick: { type: 'boolean', default: false },
        out: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`bench:micro: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let timeMs = values.quick ? 250 : 1000;
  if (values.time !== undefined) {
    if (!/^\d+$/.test(values.time) || Number(values.time) < 10) {
      process.stderr.write(`bench:micro: --time must be a whole number of ms >= 10, got "${values.time}"\n`);
      process.exit(2);
    }
    timeMs = Number(values.time);
  }
  const outDir = resolve(values.out ?? join(repoRoot(), 'bench', 'results'));
  const startedAt = new Date().toISOString();

  const bench = new Bench({ time: timeMs, warmupTime: Math.min(250, timeMs), iterations: 10 });
  const specs = new Map<string, Spec>();
  const add = (spec: Spec, fn: () => unknown): void => {
    specs.set(spec.name, spec);
    bench.add(spec.name, fn);
  };

  // Route lookup, js RouteTable.
  for (const n of LEASE_COUNTS) {
    const routes = makeRoutes(n);
    const table = new RouteTable(routes);
    const dsts = makeDestinations(routes, n);
    add({ id: `lookup-js-${n}`, group: 'lookup', name: `lookup js, ${n.toLocaleString('en')} leases`, size: n, opsPerIteration: BATCH }, () => {
      let acc = 0;
      for (let i = 0; i < dsts.length; i++) acc ^= table.lookup(dsts[i]!)!.publicIP;
      sink ^= acc;
    });
  }

  // Route lookup, js RouteTable, IPv6 destinations (read from packet bytes, as the engine does).
  for (const n of LEASE_COUNTS) {
    const routes = makeRoutes6(n);
    const table = new RouteTable(routes);
    const dsts = makeDestinations6(routes, n);
    add({ id: `lookup6-js-${n}`, group: 'lookup6', name: `lookup js IPv6, ${n.toLocaleString('en')} leases`, size: n, opsPerIteration: BATCH }, () => {
      let acc = 0;
      for (let i = 0; i < BATCH; i++) acc ^= table.lookup6(dsts, i * 16)!.index;
      sink ^= acc;
    });
  }

  // Route lookup, C table (only when the addon offers the hook): C times its own loop.
  const native = await nativeLookupHook();
  if (native) {
    for (const n of LEASE_COUNTS) {
      const routes = makeRoutes(n);
      const table = flatTable(routes);
      const dsts = makeDestinations(routes, n);
      const rounds = 16;
      add({ id: `lookup-native-${n}`, group: 'lookup-native', name: `lookup native, ${n.toLocaleString('en')} leases`, size: n, opsPerIteration: BATCH * rounds }, () => ({
        overriddenDuration: native(table, dsts, rounds) / 1e6,
      }));
    }
  }

  // Per-packet work of the js engine, with a 5,000-lease table.
  const routes = makeRoutes(5_000);
  const table = new RouteTable(routes);
  const peer = routes[routes.length - 1]!;
  const peers = new Map<string, DecapPeer>();
  for (const publicIP of table.peers()) peers.set(formatIPv4(publicIP), { subnets: table.subnetsOf(publicIP)! });
  const from = formatIPv4(peer.publicIP);
  for (const size of [84, 1472]) {
    // Encap: from our pod to a host in the peer's subnet; decap: from the peer's pod to ours.
    const out = makePacket(size, (OWN_SUBNET.ip + 2) >>> 0, (peer.subnet!.ip + 2) >>> 0);
    const inn = makePacket(size, (peer.subnet!.ip + 2) >>> 0, (OWN_SUBNET.ip + 2) >>> 0);
    if (encapOne(out, table) < 0 || decapOne(inn, from, peers) < 0) throw new Error('micro: synthetic packets do not pass the checks');
    add({ id: `encap-${size}`, group: 'packet', name: `encap js, ${size} B packet`, size, opsPerIteration: BATCH }, () => {
      let acc = 0;
      for (let i = 0; i < BATCH; i++) acc ^= encapOne(out, table);
      sink ^= acc;
    });
    add({ id: `decap-${size}`, group: 'packet', name: `decap js, ${size} B packet`, size, opsPerIteration: BATCH }, () => {
      let acc = 0;
      for (let i = 0; i < BATCH; i++) acc ^= decapOne(inn, from, peers);
      sink ^= acc;
    });
  }

  // The same through JsForwarder: a TUN batch of 64 packets (encap) and a UDP batch of 64 datagrams
  // (decap) per call, 5,000 dual-stack leases, I/O that takes everything and keeps nothing.
  for (const family of [4, 6] as const) {
    const fwd = forwarderFor(makeRoutes6(5_000));
    const last = makeRoutes6(5_000)[4_999]!;
    const enc = family === 4 ? makePacket(84, (OWN_SUBNET.ip + 2) >>> 0, (last.subnet!.ip + 2) >>> 0) : makePacket6(84, OWN_SUBNET6 + 2n, last.subnet6!.ip + 2n);
    const dec = family === 4 ? makePacket(84, (last.subnet!.ip + 2) >>> 0, (OWN_SUBNET.ip + 2) >>> 0) : makePacket6(84, last.subnet6!.ip + 2n, OWN_SUBNET6 + 2n);
    const tunBatch = records(enc, 2, 64, (rec) => rec.writeUInt16BE(enc.length, 0));
    const udpBatch = records(dec, 8, 64, (rec) => {
      rec.writeUInt32BE(last.publicIP, 0);
      rec.writeUInt16BE(dec.length, 4);
    });
    const hop = family === 4 ? IP_OFF.ttl : 7;
    add({ id: `fwd-encap${family}-84`, group: 'forwarder', name: `forwarder encap IPv${family}, 84 B, batches of 64`, size: 84, opsPerIteration: 64 * 64 }, () => {
      for (let i = 0; i < 64; i++) {
        // Put the TTL / hop limit back, so every round forwards instead of expiring.
        for (let r = 0; r < 64; r++) tunBatch[r * (enc.length + 2) + 2 + hop] = 64;
        fwd.encapBatch(tunBatch, 64);
      }
    });
    add({ id: `fwd-decap${family}-84`, group: 'forwarder', name: `forwarder decap IPv${family}, 84 B, batches of 64`, size: 84, opsPerIteration: 64 * 64 }, () => {
      for (let i = 0; i < 64; i++) fwd.decapBatch(udpBatch, 64);
    });
    const s = fwd.stats({});
    fwd.encapBatch(tunBatch, 64);
    fwd.decapBatch(udpBatch, 64);
    const after = fwd.stats({});
    if (after.encap.packets - s.encap.packets !== 64 || after.decap.packets - s.decap.packets !== 64) {
      throw new Error(`micro: the IPv${family} forwarder batches do not pass the checks`);
    }
  }

  // Lease-table sync: a 5,000-lease snapshot into an empty table (agent start), and the same
  // snapshot again into a full table (a relist after a disconnect, nothing changed); each time
  // followed by routes() and a new RouteTable, as the agent does before Datapath.setRoutes().
  const leases = makeLeases(5_000);
  const snapshot = { kind: 'snapshot' as const, leases, revision: '1' };
  add({ id: 'sync-5000-initial', group: 'sync', name: 'sync 5,000 leases, initial snapshot', size: 5_000, opsPerIteration: 1 }, () => {
    const lt = new LeaseTable();
    const changes = lt.apply(snapshot);
    sink ^= changes.length ^ new RouteTable(lt.routes({ subnet: OWN_SUBNET })).size;
  });
  const full = new LeaseTable();
  full.apply(snapshot);
  add({ id: 'sync-5000-relist', group: 'sync', name: 'sync 5,000 leases, unchanged relist', size: 5_000, opsPerIteration: 1 }, () => {
    const changes = full.apply(snapshot);
    sink ^= changes.length ^ new RouteTable(full.routes({ subnet: OWN_SUBNET })).size;
  });

  process.stdout.write(`bench:micro: ${specs.size} benchmarks, ${timeMs} ms each${native ? '' : ' (the addon has no benchRouteLookup hook: C lookup skipped)'}\n`);
  bench.addEventListener('cycle', (evt) => {
    const task = (evt as unknown as { task?: Task }).task;
    if (task) process.stdout.write(`  done: ${task.name}\n`);
  });
  const tasks = await bench.run();
  const results = tasks.map((t) => toResult(specs.get(t.name)!, t));
  const targets = [lookupTarget(results, 'lookup', 'js'), lookupTarget(results, 'lookup6', 'js IPv6'), lookupTarget(results, 'lookup-native', 'native')].filter(
    (t): t is MicroTarget => t !== null,
  );

  process.stdout.write(`\n${formatTable(results)}\n\nTargets\n`);
  for (const t of targets) {
    const mark = t.met === null ? '[ n/a  ]' : t.met ? '[ met  ]' : '[MISSED]';
    process.stdout.write(`${mark} ${t.description}: ${t.value === null ? 'not measured' : `${t.value.toFixed(2)}x`} (median ns/lookup)\n`);
  }
  process.stdout.write('note: shared 2-vCPU machine; single runs are noisy, the ratios are the figures to trust.\n');

  const doc = {
    schema: MICRO_SCHEMA,
    startedAt,
    finishedAt: new Date().toISOString(),
    settings: { timeMs, batch: BATCH, quick: values.quick === true },
    host: { kernel: os.release(), cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown', cpus: os.cpus().length, node: process.version, loadAvg1: os.loadavg()[0] },
    nativeLookupHook: native !== null,
    results,
    targets,
  };
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'micro.json');
  writeFileSync(`${file}.${process.pid}.tmp`, `${JSON.stringify(doc, null, 2)}\n`);
  renameSync(`${file}.${process.pid}.tmp`, file);
  process.stdout.write(`wrote ${file}\n`);
}

main().catch((err) => {
  process.stderr.write(`bench:micro: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 2;
});
