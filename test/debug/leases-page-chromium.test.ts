// The /leases HTML page in a real headless Chromium (needs /usr/bin/chromium; no root): every
// lease is a visible row, the page refreshes itself without a reload, and a screenshot is kept
// as test-artifacts/leases-page.png (FELT_UPDATE_SCREENSHOT=1 also refreshes docs/leases-page.png for the README).
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDebugServer, type DebugServer } from '../../src/debug/server.js';
import { repoRoot } from '../testbed/tcp.js';
import { HOUR, HandState, etcdLease, peer, probeStatus, sampleSnapshot } from '../debug/state.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);

let server: DebugServer | undefined;
let context: BrowserContext | undefined;
let profile: string | undefined;
const state = new HandState(demoSnapshot());
state.isReady = true;

/** The sample state dressed up as a busy six-node cluster, for a representative screenshot. */
function demoSnapshot() {
  const snap = sampleSnapshot();
  const now = Date.now();
  snap.leases.splice(3, 0, etcdLease('10.244.6.0/24', '192.168.77.16', 18 * HOUR, '21', '694d9a2b1c3e0016'));
  snap.leases.sort((a, b) => a.subnet!.ip - b.subnet!.ip);
  snap.datapath!.peers['192.168.77.16'] = peer('192.168.77.16', {
    tx: { packets: 48_211, bytes: 61_402_112 },
    rx: { packets: 45_907, bytes: 3_207_451 },
    lastTxAt: now - 400,
    lastRxAt: now - 300,
  });
  snap.datapath!.encap = { packets: 49_715, bytes: 63_502_448 };
  snap.datapath!.decap = { packets: 47_307, bytes: 5_107_451 };
  snap.leaseEvents = { added: 5, removed: 1, snapshots: 1, reacquired: 0 };
  snap.probes!.peers['10.244.6.0/24'] = probeStatus('10.244.6.0/24', '192.168.77.16', {
    state: 'reachable', since: now - 18 * HOUR, lastSuccessAt: now - 1500, windowSent: 20, windowAnswered: 20, rttP50Ms: 0.387,
    mtu: { state: 'ok', size: 1472, checkedAt: now - 40_000 },
  });
  return snap;
}

beforeAll(async () => {
  if (!haveChromium) return;
  server = await startDebugServer('127.0.0.1:0', state, pino({ level: 'silent' }));
  profile = mkdtempSync(join(tmpdir(), 'felt-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 800 },
    colorScheme: 'light',
  });
});

afterAll(async () => {
  await context?.close();
  await server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe('leases page in headless chromium (needs /usr/bin/chromium)', () => {
  it('shows every lease, refreshes in place, and is kept as a screenshot (needs /usr/bin/chromium)', async () => {
    if (!haveChromium) throw new Error(`${CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium`);
    const page = await context!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') errors.push(msg.text());
    });

    // A browser's own Accept header picks the HTML form of /leases.
    const response = await page.goto(`http://${server!.address}/leases`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-type']).toMatch(/^text\/html/);

    const rows = page.locator('#leases tbody tr');
    expect(await rows.count()).toBe(state.snap.leases.length);
    for (const lease of state.snap.leases) {
      const subnet = `${lease.subnet!.ip >>> 24}.${(lease.subnet!.ip >>> 16) & 255}.${(lease.subnet!.ip >>> 8) & 255}.${lease.subnet!.ip & 255}/${lease.subnet!.prefixLen}`;
      const row = page.locator(`#leases tr[data-subnet="${subnet}"]`);
      expect(await row.isVisible(), subnet).toBe(true);
      expect(await row.locator('td').first().innerText(), subnet).toContain(subnet);
      expect(await row.innerText(), subnet).toContain(lease.publicIP);
    }
    expect(await page.locator('tr.self').getAttribute('data-subnet')).toBe('10.244.1.0/24');
    expect(await page.locator('tr.expired').getAttribute('data-subnet')).toBe('10.244.4.0/24');
    expect(await page.locator('h1').innerText()).toContain('10.244.1.0/24');

    // The state changes; the page shows it without a reload (a marker on window survives).
    await page.evaluate(() => ((window as unknown as { feltMarker: number }).feltMarker = 42));
    state.snap.leases.push(etcdLease('10.244.7.0/24', '192.168.77.17', 23 * HOUR + 59 * 60_000, '31', '694d9a2b1c3e0017'));
    state.snap.datapath!.drops.encap['no-route'] += 1;
    for (const ip of ['192.168.77.12', '192.168.77.16']) {
      const p = state.snap.datapath!.peers[ip]!;
      p.lastTxAt = Date.now() - 300;
      p.lastRxAt = Date.now() - 200;
    }
    await page.locator('#leases tr[data-subnet="10.244.7.0/24"]').waitFor({ state: 'visible', timeout: 30_000 });
    expect(await page.evaluate(() => (window as unknown as { feltMarker?: number }).feltMarker)).toBe(42);
    expect(await rows.count()).toBe(state.snap.leases.length);
    expect(await page.locator('#status').getAttribute('class')).toBe('ok');
    expect(await page.locator('.drops').innerText()).toContain('no-route 4');

    // Wait for a refresh after the row appeared so the status line reads "refreshed".
    await page.waitForFunction(() => document.getElementById('status')?.textContent?.includes('refreshed'), undefined, { timeout: 30_000 });
    const artifacts = join(repoRoot(), 'test-artifacts');
    mkdirSync(artifacts, { recursive: true });
    const shot = join(artifacts, 'leases-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    // The README's docs/leases-page.png is refreshed only on request, so test runs leave git clean.
    if (process.env.FELT_UPDATE_SCREENSHOT) copyFileSync(shot, join(repoRoot(), 'docs', 'leases-page.png'));

    // When the agent goes away the page says so instead of freezing on stale numbers.
    state.failWith = new Error('agent stopped');
    await page.waitForFunction(() => document.getElementById('status')?.className === 'err', undefined, { timeout: 30_000 });
    expect(await page.locator('#status').innerText()).toContain('HTTP 500');
    state.failWith = undefined;
    expect(errors.filter((e) => !e.includes('500'))).toEqual([]);
  });
});
