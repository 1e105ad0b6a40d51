// Bounded memory under lease churn (needs root, /dev/net/tun and `npm install`): the native
// engine frees the per-peer state of PublicIPs that no longer hold a lease, keeping the counters
// of the most recently departed ones. 80,000 leases with never-seen PublicIPs, added and removed
// in rounds of 5,000 (nodes replaced over months, autoscaling), inside a fresh namespace.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { Netns, runPrefix } from '../testbed/netns.js';

const FIXTURE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/peer-churn.mjs');
const ROUNDS = 16;
const PER_ROUND = 5000;
const MB = 1024 * 1024;

let ns: Netns | undefined;
afterAll(async () => {
  await ns?.delete();
});

test('native engine: 80,000 churned leases leave RSS within 10 MB of the first round, departed peers bounded (needs root)', async () => {
  ns = await Netns.create(`${runPrefix()}-churn`);
  const r = await ns.exec(['node', '--expose-gc', FIXTURE, String(ROUNDS), String(PER_ROUND)], { timeoutMs: 240_000 });
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    rssAfter: number[];
    maxRegistered: number;
    registeredPeers: number;
    departedPeersFreed: number;
    departed: number[];
  };
  const growth = out.rssAfter[ROUNDS - 1]! - out.rssAfter[0]!;
  console.log(
    `peer churn: RSS after round 1 ${(out.rssAfter[0]! / MB).toFixed(1)} MB, after round ${ROUNDS} ` +
      `${(out.rssAfter[ROUNDS - 1]! / MB).toFixed(1)} MB (growth ${(growth / MB).toFixed(1)} MB)`,
  );
  expect(out.maxRegistered).toBe(PER_ROUND);
  expect(out.registeredPeers).toBe(0); // every departed peer freed
  expect(out.departedPeersFreed).toBe(ROUNDS * PER_ROUND);
  // The most recently departed first, bounded: the last round's highest PublicIPs.
  const last = ((172 << 24) | (16 << 16)) + ROUNDS * PER_ROUND;
  expect(out.departed.length).toBe(64);
  expect(new Set(out.departed).size).toBe(64);
  for (const ip of out.departed) expect(ip).toBeGreaterThan(last - PER_ROUND);
  expect(growth).toBeLessThan(10 * MB);
});
