// Fuzzes the js engine's per-packet logic (JsForwarder, src/datapath/js-forwarder.ts) with random,
// valid and mutated packets from a seeded PRNG, through its entry points encapBatch/decapBatch as
// the reader threads deliver them (single packets, whole batches, and batches cut short or with a
// wrong count) and the BatchIO production uses. A reference model of docs/datapath.md
// (scripts/fuzz/model.ts) predicts every verdict; the forwarder's counters must match it, and
// everything it emits is checked against the input it came from (scripts/fuzz/io.ts). Then an
// IPv6 phase (scripts/fuzz/ipv6.ts, a quarter as many inputs) does the same for IPv6 packets in
// dual-stack forwarders with every combination of underlays, against the model's IPv6 rules.
//
//   node --expose-gc dist/scripts/fuzz-js.js [--count N] [--seed S] [--rounds R] [--json]
//
// With --expose-gc the heap is measured after a full GC at the end of every round (the inputs are
// split into R rounds): a leak shows as growth from round to round. Exit status 1 on a violation.
// The vitest suite (test/fuzz/fuzz.test.ts) calls runJsFuzz() directly with a smaller count.
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { JsForwarder } from '../src/datapath/js.js';
import { TokenBucket } from '../src/datapath/packet.js';
import { DROP_REASONS, type DropReason } from '../src/datapath/types.js';
import { formatIPv4 } from '../src/net/cidr.js';
import { genDecapDatagram, genEncapPacket, type GenKind } from './fuzz/gen.js';
import { CheckingIO, type InputRecord } from './fuzz/io.js';
import { runIpv6Fuzz, type Ipv6FuzzResult } from './fuzz/ipv6.js';
import { DEFAULT_MASK, ipOf, LOCAL, rd16, refDecapMessage, refEncap, ROUTE_FAMILY, RouteSet, setIpChecksum, wr16, wr32, type Verdict } from './fuzz/model.js';
import { Rng } from './fuzz/rng.js';

const ICMP_RATE = 100;
const ICMP_BURST = 100;
/** Fake clock: this much passes per encap input (the bucket refills 0.3 tokens per input). */
const CLOCK_STEP_MS = 3;
const MTUS = [1472, 1472, 1450, 1400, 9000, 68, 576, 65507, 1280];
/** decapBatch record header: [u32 source][u16 length][u8 flags][u8 0]; flags bit 0 = truncated. */
const UDP_REC_HDR = 8;

export interface JsFuzzOptions {
  /** Inputs to run (packets and datagrams, single or inside batches). */
  count: number;
  seed?: number;
  /** Split the run into this many rounds; with global.gc, heap is measured after each. */
  rounds?: number;
  /** Keep at most this many violation messages (default 50). */
  maxMessages?: number;
}

export interface JsFuzzReport {
  seed: number;
  inputs: { total: number; encap: number; decap: number; encapBatches: number; decapBatches: number };
  /** Per verdict ('forward' or a drop reason), as the forwarder counted them. */
  verdicts: { encap: Record<string, number>; decap: Record<string, number> };
  icmp: { sent: number; rateLimited: number; refused: number; expected: number };
  generated: Record<string, number>;
  /** The IPv6 phase (scripts/fuzz/ipv6.ts). */
  ipv6: Ipv6FuzzResult;
  violationCount: number;
  violations: string[];
  /** heapUsed (bytes) after a full GC at the end of each round; empty without --expose-gc. */
  heapAfterRound: number[];
  seconds: number;
}

/** Verdict counts, for comparing a call's outcome with the reference. */
type Tally = Map<Verdict, number>;
const tallyAdd = (t: Tally, v: Verdict, n = 1): void => {
  if (n !== 0) t.set(v, (t.get(v) ?? 0) + n);
};
const tallyText = (t: Tally): string => [...t].filter(([, n]) => n !== 0).map(([v, n]) => `${v} ${n}`).sort().join(', ') || 'nothing';

export function runJsFuzz(options: JsFuzzOptions): JsFuzzReport {
  const seed = options.seed ?? 1;
  const rounds = Math.max(1, options.rounds ?? 1);
  const maxMessages = options.maxMessages ?? 50;
  const rng = new Rng(seed);
  const violations: string[] = [];
  let violationCount = 0;
  let where = '';
  const violation = (msg: string): void => {
    violationCount++;
    if (violations.length < maxMessages) violations.push(`${where}: ${msg}`);
  };
  let routes = new RouteSet(DEFAULT_MASK);
  let mtu = 1472;
  const io = new CheckingIO(routes, violation);
  let now = 1_000_000;
  const t0 = now;
  let clockStep = CLOCK_STEP_MS;

  // The MTU is part of a forwarder's config: one forwarder per MTU, all kept in step with the
  // route set.
  const forwarders = new Map<string, JsForwarder>();
  const forwarderFor = (m: number): JsForwarder => {
    const key = String(m);
    let f = forwarders.get(key);
    if (!f) {
      f = new JsForwarder({ localSubnet: LOCAL, mtu: m }, io, new TokenBucket(ICMP_RATE, ICMP_BURST, () => now));
      f.setRoutes(routes.routes);
      forwarders.set(key, f);
    }
    return f;
  };

  const generated: Record<string, number> = {};
  const gen = (k: GenKind | 'encap batch' | 'decap batch'): void => {
    generated[k] = (generated[k] ?? 0) + 1;
  };
  const inputs = { total: 0, encap: 0, decap: 0, encapBatches: 0, decapBatches: 0 };
  let icmpExpected = 0;
  const heapAfterRound: number[] = [];
  const started = performance.now();
  const gc = (globalThis as { gc?: () => void }).gc;

  /** The forwarder's counters before a call, to read what the call did. */
  const snapshot = (f: JsForwarder) => {
    const c = f.counters;
    return {
      encap: { ...c.encapDrops },
      decap: { ...c.decapDrops },
      encapPackets: c.encapPackets,
      decapPackets: c.decapPackets,
      icmpSent: c.icmpSent,
      icmpRateLimited: c.icmpRateLimited,
      batchSent: io.batchSent,
      batchFailed: io.batchFailed,
      tunWrites: io.tunWrites,
      icmpWritten: io.icmpWritten,
      icmpRefused: io.icmpRefused,
    };
  };

  /** Encap outcome of a call: drops by reason, plus 'forward' for every packet handed to I/O. */
  const encapOutcome = (f: JsForwarder, before: ReturnType<typeof snapshot>): Tally => {
    const t: Tally = new Map();
    const refused = io.icmpRefused - before.icmpRefused;
    for (const r of DROP_REASONS) tallyAdd(t, r, f.counters.encapDrops[r] - before.encap[r] - (r === 'tun-write-error' ? refused : 0));
    // A batch entry the I/O refused shows as send-error above; it was forwarded all the same.
    const refusedEntries = io.batchFailed - before.batchFailed;
    tallyAdd(t, 'send-error', -refusedEntries);
    tallyAdd(t, 'forward', io.batchSent - before.batchSent + refusedEntries);
    return t;
  };

  /** ICMP accounting of a call: every expected error written, refused or rate-limited, no other. */
  const checkIcmpCount = (f: JsForwarder, before: ReturnType<typeof snapshot>, expected: number): void => {
    const written = io.icmpWritten - before.icmpWritten;
    const refused = io.icmpRefused - before.icmpRefused;
    const limited = f.counters.icmpRateLimited - before.icmpRateLimited;
    if (f.counters.icmpSent - before.icmpSent !== written) violation(`icmpSent +${f.counters.icmpSent - before.icmpSent} but ${written} ICMP writes`);
    if (written + refused + limited !== expected) violation(`ICMP written ${written} / refused ${refused} / rate-limited ${limited}, reference expects ${expected}`);
    icmpExpected += expected;
  };

  const encapRecord = (buf: Uint8Array, start: number, length: number): InputRecord => {
    const ref = refEncap(buf, start, length, routes, mtu);
    return { start, original: copyOf(buf, start, start + length), expected: ref.verdict, icmp: ref.icmp, sender: '', emitted: 0, icmpSeen: 0 };
  };

  /**
   * A TUN reader batch of `packets`: [u16 length][packet] records; with `mangle`, sometimes cut
   * short or with a wrong count. Complete records run as packets; a cut record counts one
   * `truncated` and ends the batch.
   */
  const runEncapRecords = (f: JsForwarder, packets: Buffer[], mangle: boolean): void => {
    const parts: Buffer[] = [];
    for (const p of packets) {
      const h = Buffer.alloc(2);
      wr16(h, 0, p.length);
      parts.push(h, p);
    }
    let data = Buffer.concat(parts);
    let count = packets.length;
    if (mangle && rng.chance(20)) data = data.subarray(0, rng.int(data.length + 1));
    if (mangle && rng.chance(20)) count = Math.max(0, count + rng.int(4) - 1);
    // The reference, record by record, in the order the forwarder meets them.
    const records: InputRecord[] = [];
    const want: Tally = new Map();
    let off = 0;
    for (let i = 0; i < count; i++) {
      inputs.encap++;
      inputs.total++;
      const len = off + 2 <= data.length ? rd16(data, off) : -1;
      if (len < 0 || off + 2 + len > data.length) {
        tallyAdd(want, 'truncated');
        break;
      }
      const rec = encapRecord(data, off + 2, len);
      records.push(rec);
      tallyAdd(want, rec.expected);
      off += 2 + len;
    }
    now += clockStep * Math.max(1, records.length);
    io.begin('encap', data, records);
    const before = snapshot(f);
    try {
      f.encapBatch(data, count);
    } catch (err) {
      violation(`encapBatch threw: ${(err as Error).stack ?? err}`);
    }
    const got = encapOutcome(f, before);
    if (tallyText(got) !== tallyText(want)) violation(`encapBatch of ${count} records: [${tallyText(got)}], reference [${tallyText(want)}]${records.length === 1 ? ` (${hex(records[0]!.original)})` : ''}`);
    checkIcmpCount(f, before, records.filter((r) => r.icmp).length);
    for (const r of records) if (r.expected === 'forward' && r.emitted !== 1) violation(`forwarded record at ${r.start} sent ${r.emitted} times`);
    io.end();
  };

  /**
   * A UDP reader batch of `datagrams`: [u32 source][u16 length][u8 flags][u8 0][datagram] records;
   * with `mangle`, random truncation flags, and sometimes cut short or with a wrong count.
   */
  const runDecapRecords = (f: JsForwarder, datagrams: Array<[Buffer, string]>, mangle: boolean): void => {
    const parts: Buffer[] = [];
    const sources: number[] = [];
    const flags: number[] = [];
    for (const [msg, sender] of datagrams) {
      // The reader gives numeric IPv4 sources (0.0.0.0 for a non-IPv4 one).
      const src = /^\d+\.\d+\.\d+\.\d+$/.test(sender) ? ipOf(sender) : 0;
      const body = msg.subarray(0, Math.min(msg.length, 0xffff));
      const h = Buffer.alloc(UDP_REC_HDR);
      wr32(h, 0, src);
      wr16(h, 4, body.length);
      h[6] = mangle && rng.chance(2) ? 1 : 0;
      sources.push(src);
      flags.push(h[6]!);
      parts.push(h, body);
    }
    let data = Buffer.concat(parts);
    let count = datagrams.length;
    if (mangle && rng.chance(20)) data = data.subarray(0, rng.int(data.length + 1));
    if (mangle && rng.chance(20)) count = Math.max(0, count + rng.int(4) - 1);
    const records: InputRecord[] = [];
    const want: Tally = new Map();
    let off = 0;
    for (let i = 0; i < count; i++) {
      inputs.decap++;
      inputs.total++;
      const len = off + UDP_REC_HDR <= data.length ? rd16(data, off + 4) : -1;
      if (len < 0 || off + UDP_REC_HDR + len > data.length) {
        tallyAdd(want, 'truncated');
        break;
      }
      const start = off + UDP_REC_HDR;
      const sender = formatIPv4(sources[i]!);
      const expected = refDecapMessage(data, start, len, 0, (flags[i]! & 1) !== 0, sender, routes)[0]!;
      records.push({ start, original: copyOf(data, start, start + len), expected, icmp: '', sender, emitted: 0, icmpSeen: 0 });
      tallyAdd(want, expected);
      off = start + len;
    }
    io.begin('decap', data, records);
    const before = snapshot(f);
    try {
      f.decapBatch(data, count);
    } catch (err) {
      violation(`decapBatch threw: ${(err as Error).stack ?? err}`);
    }
    // Written or not, a packet the reference forwards reaches the TUN write.
    const got: Tally = new Map();
    for (const r of DROP_REASONS) if (r !== 'tun-write-error') tallyAdd(got, r, f.counters.decapDrops[r] - before.decap[r]);
    const written = f.counters.decapPackets - before.decapPackets;
    tallyAdd(got, 'forward', written + f.counters.decapDrops['tun-write-error'] - before.decap['tun-write-error']);
    if (tallyText(got) !== tallyText(want)) violation(`decapBatch of ${count} records: [${tallyText(got)}], reference [${tallyText(want)}]`);
    if (written !== io.tunWrites - before.tunWrites) violation(`decapBatch counted ${written} packets, ${io.tunWrites - before.tunWrites} written`);
    io.end();
  };

  const perRound = Math.ceil(options.count / rounds);
  for (let round = 0; round < rounds; round++) {
    const target = Math.min(options.count, (round + 1) * perRound);
    while (inputs.total < target) {
      where = `seed ${seed}, input ${inputs.total}`;
      // Set-up between bursts: lease churn, MTU, faults, the clock.
      if (rng.chance(10)) {
        routes = new RouteSet(rng.chance(50) ? DEFAULT_MASK : rng.int(1 << ROUTE_FAMILY.length));
        mtu = rng.pick(MTUS);
        for (const f of forwarders.values()) f.setRoutes(routes.routes);
        io.routes = routes;
        io.mtu = mtu;
      }
      // Now and then an ICMP storm: the clock stands still while no-route packets pour in, so the
      // token bucket runs dry and the rate limit has work to do.
      const storm = rng.chance(1);
      clockStep = storm ? 0 : CLOCK_STEP_MS;
      io.tunFails = rng.chance(10) ? rng.int(4) : 0;
      io.tunThrows = rng.chance(3) ? 1 : 0;
      io.batchFails = rng.chance(10) ? rng.int(5) : 0;
      io.batchThrows = rng.chance(2) ? 1 : 0;
      const f = forwarderFor(mtu);
      const n = storm ? 150 + rng.int(150) : 1 + rng.int(32);
      const dir = rng.int(3);
      for (let i = 0; i < n && inputs.total < target; i++) {
        where = `seed ${seed}, input ${inputs.total}`;
        if (storm) {
          runEncapRecords(f, [stormPacket(rng)], false);
        } else if ((dir === 2 ? rng.int(2) : dir) === 0) {
          if (rng.chance(10)) {
            gen('encap batch');
            inputs.encapBatches++;
            const packets = Array.from({ length: 1 + rng.int(12) }, () => genEncapPacket(rng, routes, mtu, gen));
            runEncapRecords(f, packets.map((p) => p.subarray(0, Math.min(p.length, 0xffff))), true);
          } else {
            runEncapRecords(f, [genEncapPacket(rng, routes, mtu, gen).subarray(0, 0xffff)], false);
          }
        } else if (rng.chance(10)) {
          gen('decap batch');
          inputs.decapBatches++;
          runDecapRecords(f, Array.from({ length: 1 + rng.int(16) }, () => genDecapDatagram(rng, routes, mtu, gen)), true);
        } else {
          runDecapRecords(f, [genDecapDatagram(rng, routes, mtu, gen)], false);
        }
      }
      // Each forwarder's bucket allows its burst plus the rate over the time so far. Tokens go to
      // ICMP errors written and to those the TUN refused (encap's only tun-write-error).
      for (const [key, f2] of forwarders) {
        const spent = f2.counters.icmpSent + f2.counters.encapDrops['tun-write-error'];
        if (spent > ICMP_BURST + (ICMP_RATE * (now - t0)) / 1000 + 1) violation(`ICMP rate limit exceeded (forwarder ${key}): ${spent} in ${(now - t0) / 1000} s (fake clock)`);
      }
    }
    if (gc) {
      gc();
      heapAfterRound.push(process.memoryUsage().heapUsed);
    }
  }

  // IPv6 inputs, judged one by one by the IPv6 model (an rng of their own: the IPv4 sequence of a
  // seed stays what it was).
  where = `seed ${seed}`;
  const ipv6 = runIpv6Fuzz(new Rng(seed ^ 0x6a6a6), Math.ceil(options.count / 4), violation);

  // The books: every input counted once (an ICMP error the TUN refused adds one tun-write-error).
  const encapDrops = dropTotals(forwarders, 'encap');
  const decapDrops = dropTotals(forwarders, 'decap');
  const encapPackets = sumOver(forwarders, (c) => c.encapPackets);
  const decapPackets = sumOver(forwarders, (c) => c.decapPackets);
  if (sumDrops(encapDrops) + encapPackets !== inputs.encap + io.icmpRefused) {
    violation(`encap books: ${encapPackets} sent + ${sumDrops(encapDrops)} dropped != ${inputs.encap} inputs + ${io.icmpRefused} refused ICMP`);
  }
  if (sumDrops(decapDrops) + decapPackets !== inputs.decap) {
    violation(`decap books: ${decapPackets} written + ${sumDrops(decapDrops)} dropped != ${inputs.decap} inputs`);
  }
  return {
    seed,
    inputs,
    verdicts: {
      encap: { forward: encapPackets, ...nonZero(encapDrops) },
      decap: { forward: decapPackets, ...nonZero(decapDrops) },
    },
    icmp: {
      sent: sumOver(forwarders, (c) => c.icmpSent),
      rateLimited: sumOver(forwarders, (c) => c.icmpRateLimited),
      refused: io.icmpRefused,
      expected: icmpExpected,
    },
    generated,
    ipv6,
    violationCount,
    violations,
    heapAfterRound,
    seconds: (performance.now() - started) / 1000,
  };
}

/** An echo request from a local pod into 10.250.0.0/16 (no lease there unless a default route). */
function stormPacket(rng: Rng): Buffer {
  const b = Buffer.alloc(28);
  b[0] = 0x45;
  wr16(b, 2, 28);
  b[8] = 64;
  b[9] = 1;
  wr32(b, 12, (LOCAL.ip | (2 + rng.int(250))) >>> 0);
  wr32(b, 16, (0x0afa0000 | rng.int(65536)) >>> 0);
  b[20] = 8;
  setIpChecksum(b, 0);
  return b;
}

type Counters = JsForwarder['counters'];

function sumOver(forwarders: Map<string, JsForwarder>, pick: (c: Counters) => number): number {
  let n = 0;
  for (const f of forwarders.values()) n += pick(f.counters);
  return n;
}

function dropTotals(forwarders: Map<string, JsForwarder>, which: 'encap' | 'decap'): Record<DropReason, number> {
  const out = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  for (const f of forwarders.values()) {
    const d = which === 'encap' ? f.counters.encapDrops : f.counters.decapDrops;
    for (const r of DROP_REASONS) out[r] += d[r];
  }
  return out;
}

function sumDrops(d: Record<DropReason, number>): number {
  return DROP_REASONS.reduce((a, r) => a + d[r], 0);
}

function nonZero(d: Record<DropReason, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(d).filter(([, n]) => n > 0));
}

/** A copy (Buffer#slice would be a view, and the forwarder edits packets in place). */
function copyOf(b: Uint8Array, start: number, end: number): Uint8Array {
  return Uint8Array.prototype.slice.call(b, start, end);
}

function hex(b: Uint8Array): string {
  const head = Buffer.from(b.subarray(0, 48)).toString('hex');
  return `${head}${b.length > 48 ? '...' : ''} (${b.length} bytes)`;
}

/** Human-readable summary, counts per verdict. */
export function formatJsFuzzReport(r: JsFuzzReport): string {
  const line = (o: Record<string, number>): string => Object.entries(o).map(([k, v]) => `${k} ${v}`).join(', ');
  const heap = r.heapAfterRound.length
    ? `\n  heap after GC per round (MB): ${r.heapAfterRound.map((h) => (h / 1048576).toFixed(2)).join(' ')}`
    : '';
  return [
    `js fuzz: ${r.inputs.total} inputs (${r.inputs.encap} encap, ${r.inputs.decap} decap; ${r.inputs.encapBatches} TUN and ${r.inputs.decapBatches} UDP reader batches), seed ${r.seed}, ${r.seconds.toFixed(1)} s`,
    `  generated: ${line(r.generated)}`,
    `  encap: ${line(r.verdicts.encap)}; ICMP sent ${r.icmp.sent}, rate-limited ${r.icmp.rateLimited}, refused ${r.icmp.refused} (expected ${r.icmp.expected})`,
    `  decap: ${line(r.verdicts.decap)}${heap}`,
    `  IPv6: ${r.ipv6.inputs} inputs (${r.ipv6.faults} with an injected I/O failure), ${r.ipv6.icmp6} ICMPv6 errors expected; encap: ${line(r.ipv6.verdicts.encap)}; decap: ${line(r.ipv6.verdicts.decap)}`,
    ...r.violations.map((v) => `  VIOLATION ${v}`),
    `${r.violationCount ? 'FAIL' : 'OK'}: ${r.violationCount} violations`,
  ].join('\n');
}

/** Heap growth from the second round to the last (the first warms up JIT and caches). */
export function heapGrowth(r: JsFuzzReport): number {
  const h = r.heapAfterRound;
  return h.length >= 3 ? h[h.length - 1]! - h[1]! : 0;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      count: { type: 'string', default: '1000000' },
      seed: { type: 'string', default: '1' },
      rounds: { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
      'max-heap-growth-mb': { type: 'string', default: '8' },
    },
  });
  const count = Number(values.count);
  const seed = Number(values.seed);
  const rounds = Number(values.rounds);
  if (!Number.isInteger(count) || count < 1 || !Number.isInteger(seed) || !Number.isInteger(rounds) || rounds < 1) {
    console.error('usage: node --expose-gc dist/scripts/fuzz-js.js [--count N] [--seed S] [--rounds R] [--json] [--max-heap-growth-mb M]');
    process.exit(2);
  }
  const report = runJsFuzz({ count, seed, rounds });
  const growthMB = heapGrowth(report) / 1048576;
  const heapOk = growthMB <= Number(values['max-heap-growth-mb']);
  if (values.json) {
    console.log(JSON.stringify({ ...report, heapGrowthMB: growthMB, heapOk }));
  } else {
    console.log(formatJsFuzzReport(report));
    if (report.heapAfterRound.length) console.log(`heap growth round 2 -> ${rounds}: ${growthMB.toFixed(2)} MB (${heapOk ? 'ok' : 'TOO MUCH'})`);
    else console.log('heap not measured (run with node --expose-gc)');
  }
  process.exit(report.violationCount === 0 && heapOk ? 0 : 1);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) main();
