import { describe, expect, it } from 'vitest';
import { medianRr, type RrResult } from '../../bench/latency.js';

function run(tps: number, p50: number): RrResult {
  return { messageBytes: 64, seconds: 2, transactions: tps * 2, transactionsPerS: tps, avgUs: p50, p50Us: p50, p99Us: p50 * 2, maxUs: p50 * 3 };
}

describe('bench request/response: median of short runs', () => {
  it('reports the run with the median rate, with its own percentiles, and keeps every run in order', () => {
    const runs = [run(8100, 116), run(13000, 64), run(7900, 118), run(12800, 65), run(8300, 113)];
    const m = medianRr(runs);
    expect(m.transactionsPerS).toBe(8300);
    expect(m.p50Us).toBe(113);
    expect(m.p99Us).toBe(226);
    expect(m.runs.map((r) => r.transactionsPerS)).toEqual([8100, 13000, 7900, 12800, 8300]);
    expect(m.runs[1]).toEqual({ transactionsPerS: 13000, p50Us: 64 });
  });

  it('takes the lower middle run for an even count (a real run, never an average)', () => {
    expect(medianRr([run(10, 5), run(40, 1), run(20, 3), run(30, 2)]).transactionsPerS).toBe(20);
    expect(medianRr([run(10, 5)]).transactionsPerS).toBe(10);
  });

  it('fails with a clear error when no run completed', () => {
    expect(() => medianRr([])).toThrow('request/response: no run completed');
  });
});
