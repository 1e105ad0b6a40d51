// Fuzzing both engines' packet paths with random, valid and mutated packets.
// A reference model of docs/datapath.md predicts every verdict; the engines' counters and
// everything they emit are checked against it. The full runs (>= 1,000,000 inputs each for the js
// engine, its C I/O and the native engine, the C ones also under ASan/UBSan) are `npm run fuzz`
// (scripts/fuzz.sh); these are smaller. native/fuzz/README.md says what is checked.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { formatJsFuzzReport, heapGrowth, runJsFuzz, type JsFuzzReport } from '../../scripts/fuzz-js.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const JS_COUNT = 200_000;
const NATIVE_COUNT = 200_000;
/** Bounded heap growth over rounds 2..10 of the child run (a per-input leak of even 10 bytes shows). */
const MAX_HEAP_GROWTH_BYTES = 4 * 1024 * 1024;

function run(file: string, args: string[], timeoutMs = 600_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: root, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

function totals(r: JsFuzzReport): { encap: number; decap: number } {
  const sum = (o: Record<string, number>): number => Object.values(o).reduce((a, b) => a + b, 0);
  return { encap: sum(r.verdicts.encap), decap: sum(r.verdicts.decap) };
}

describe('js engine fuzz (JsForwarder, no root)', () => {
  it(`${JS_COUNT.toLocaleString('en')} inputs: no throw, every verdict as the reference says, counters add up to the inputs`, () => {
    const report = runJsFuzz({ count: JS_COUNT, seed: 1 });
    console.log(formatJsFuzzReport(report));
    expect(report.violations).toEqual([]);
    expect(report.violationCount).toBe(0);
    expect(report.inputs.total).toBeGreaterThanOrEqual(JS_COUNT);
    const t = totals(report);
    // An ICMP error the TUN refused is counted as an extra tun-write-error (see the report).
    expect(t.encap).toBe(report.inputs.encap + report.icmp.refused);
    expect(t.decap).toBe(report.inputs.decap);
    // The fuzz reached every verdict the contract has on each side (not just the easy ones).
    for (const v of ['forward', 'no-route', 'own-subnet', 'ttl-expired', 'oversize', 'malformed', 'truncated', 'not-ip', 'send-error', 'tun-write-error']) {
      expect(report.verdicts.encap[v] ?? 0, `encap ${v}`).toBeGreaterThan(0);
    }
    for (const v of ['forward', 'unknown-peer', 'spoofed-source', 'ttl-expired', 'malformed', 'truncated', 'not-ip', 'tun-write-error']) {
      expect(report.verdicts.decap[v] ?? 0, `decap ${v}`).toBeGreaterThan(0);
    }
    expect(report.icmp.sent).toBeGreaterThan(0);
    expect(report.icmp.rateLimited).toBeGreaterThan(0);
    // The IPv6 phase too (scripts/fuzz/ipv6.ts).
    for (const v of ['forward', 'no-route', 'own-subnet', 'ttl-expired', 'oversize', 'malformed', 'truncated', 'not-ip', 'ext-header', 'no-underlay']) {
      expect(report.ipv6.verdicts.encap[v] ?? 0, `IPv6 encap ${v}`).toBeGreaterThan(0);
    }
    for (const v of ['forward', 'unknown-peer', 'spoofed-source', 'no-route', 'ttl-expired', 'truncated', 'ext-header']) {
      expect(report.ipv6.verdicts.decap[v] ?? 0, `IPv6 decap ${v}`).toBeGreaterThan(0);
    }
    expect(report.ipv6.icmp6).toBeGreaterThan(0);
    // Injected I/O failures in the IPv6 phase: each a send-error / tun-write-error.
    expect(report.ipv6.faults).toBeGreaterThan(0);
    expect(report.ipv6.verdicts.encap['send-error'] ?? 0, 'IPv6 encap send-error').toBeGreaterThan(0);
    expect(report.ipv6.verdicts.decap['tun-write-error'] ?? 0, 'IPv6 decap tun-write-error').toBeGreaterThan(0);
  });

  it('heap stays flat across 10 rounds of fuzzing (child process with --expose-gc; needs npm run build)', async () => {
    const script = path.join(root, 'dist/scripts/fuzz-js.js');
    expect(existsSync(script), `${script} is missing: run npm run build`).toBe(true);
    const { code, out } = await run(process.execPath, ['--expose-gc', script, '--count', '100000', '--seed', '2', '--rounds', '10', '--json']);
    const report = JSON.parse(out.trim().split('\n').pop()!) as JsFuzzReport & { heapGrowthMB: number };
    console.log(`heap after GC per round (MB): ${report.heapAfterRound.map((h) => (h / 1048576).toFixed(2)).join(' ')}`);
    expect(report.violations).toEqual([]);
    expect(code).toBe(0);
    expect(report.heapAfterRound).toHaveLength(10);
    expect(heapGrowth(report)).toBeLessThan(MAX_HEAP_GROWTH_BYTES);
  });
});

describe('C fuzz harnesses (native/fuzz; needs cc with libasan/libubsan)', () => {
  // Made on first use, so a filtered run that skips these tests leaves no directory behind.
  let out = '';
  let built: Promise<{ code: number; out: string }> | undefined;
  const build = () => {
    out ||= mkdtempSync(path.join(tmpdir(), 'felt-fuzz-'));
    return (built ??= run('sh', [path.join(root, 'native/fuzz/build.sh'), out]));
  };
  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });

  it(`js engine C I/O (reader.c, writer.c): ${NATIVE_COUNT.toLocaleString('en')} inputs, plain and ASan/UBSan builds, every output checked`, async () => {
    const b = await build();
    expect(b.code, b.out).toBe(0);
    for (const [binary, seed] of [['jsio-fuzz', '1'], ['jsio-fuzz-asan', '2']] as const) {
      const r = await run(path.join(out, binary), ['--count', String(NATIVE_COUNT), '--seed', seed]);
      console.log(`${binary}:\n${r.out}`);
      expect(r.out, `${binary} output`).toMatch(/^OK: 0 violations$/m);
      expect(r.code, r.out).toBe(0);
      expect(Number(/C I\/O fuzz: (\d+) inputs/.exec(r.out)?.[1])).toBeGreaterThanOrEqual(NATIVE_COUNT);
    }
  });

  it(`native engine packet path (engine.c): ${NATIVE_COUNT.toLocaleString('en')} inputs, plain and ASan/UBSan builds, verdicts as the reference model (scripts/fuzz/model.ts) says`, async () => {
    const b = await build();
    expect(b.code, b.out).toBe(0);
    const vectors = path.join(root, 'dist/scripts/fuzz-vectors.js');
    expect(existsSync(vectors), `${vectors} is missing: run npm run build`).toBe(true);
    for (const [binary, seed] of [['fuzz', '1'], ['fuzz-asan', '2']] as const) {
      // The generator's bursts, with the model's verdict written next to every input, run through the engine.
      const bin = path.join(out, binary);
      const pipeline = `"${bin}" --emit --count ${NATIVE_COUNT} --seed ${seed} | "${process.execPath}" "${vectors}" | "${bin}" --vectors - --seed ${seed} --save-dir "${out}"`;
      const r = await run('bash', ['-o', 'pipefail', '-c', pipeline]);
      console.log(`${binary}:\n${r.out}`);
      expect(r.out, `${binary} output`).toMatch(/^OK: 0 violations$/m);
      expect(r.code, r.out).toBe(0);
      const inputs = Number(/native fuzz: (\d+) inputs/.exec(r.out)?.[1]);
      expect(inputs).toBeGreaterThanOrEqual(NATIVE_COUNT);
      // The dual-stack node's IPv6 inputs reached every IPv6 verdict (as the js IPv6 phase does).
      const v6 = (side: string): Record<string, number> => {
        const line = new RegExp(`^  IPv6 ${side}: (.*)$`, 'm').exec(r.out)?.[1] ?? '';
        return Object.fromEntries(line.split(/[,;] /).map((kv) => kv.split(/ (?=\d+$)/)).map(([k, n]) => [k, Number(n)]));
      };
      const enc6 = v6('encap');
      const dec6 = v6('decap');
      for (const v of ['forward', 'no-route', 'own-subnet', 'ttl-expired', 'oversize', 'malformed', 'truncated', 'not-ip', 'ext-header', 'no-underlay']) {
        expect(enc6[v] ?? 0, `${binary} IPv6 encap ${v}`).toBeGreaterThan(0);
      }
      for (const v of ['forward', 'unknown-peer', 'spoofed-source', 'no-route', 'ttl-expired', 'truncated', 'ext-header']) {
        expect(dec6[v] ?? 0, `${binary} IPv6 decap ${v}`).toBeGreaterThan(0);
      }
      expect(enc6['ICMPv6 errors'] ?? 0, `${binary} ICMPv6 errors`).toBeGreaterThan(0);
      // TCP/IPv6 trains reached GRO on the TUN write side, and were merged.
      expect(Number(/super-packets \((\d+) TCP\/IPv6\)/.exec(r.out)?.[1] ?? 0), `${binary} TCP/IPv6 GRO writes`).toBeGreaterThan(0);
    }
  });
});
