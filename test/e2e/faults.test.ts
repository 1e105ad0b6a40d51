// Faults, end to end. Needs: root, network namespaces, /dev/net/tun, the etcd binary, nft
// (nftables), ss (iproute2), unshare and mount (util-linux), and `npm run build` (the agents run
// from dist/). Real agents in node namespaces, real etcd in the hub, pods on cni0 bridges.
//
// - etcd killed for 60 s (the one long test) and restarted while pods ping each other across
//   nodes; then etcd history compacted past a cut-off watch's revision. Both engines run side by
//   side in that testbed (n1, n2 js; n3, n4 native), so one outage covers both.
// One agent's faults (kill -9, lease deleted or taken over, many agents, exhausted network) are in
// faults-agents.test.ts; start-up errors in startup.test.ts.
//
// No timing thresholds; timeouts only catch hangs. Measured figures are printed and written to
// test-artifacts/faults-*.json.
import { existsSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { leaseValue } from '../../src/lease/etcd/keys.js';
import { agentEntry, startAgent, type AgentHandle, type Engine } from '../testbed/agent.js';
import { sleep } from '../testbed/netns.js';
import { HUB_IP, Testbed, type TestbedNode } from '../testbed/testbed.js';
import { artifact, converged, doc, etcdValue, ownLeases, pingOK, podOf, subnetKey, waitFor } from './helpers.js';
import {
  blockEtcd,
  cpuSeconds,
  startPing,
  unblockEtcd,
  type LeasesDocument,
} from './fixtures/underlay.js';

const ENGINES: Engine[] = ['js', 'native'];
const ETCD_CLIENT_PORT = 2379;
/** The outage: etcd is down this long. */
const OUTAGE_MS = 60_000;
/** "Never loses more than a handful of packets." */
const MAX_LOST_PINGS = 5;
/** Short etcd lease TTL for the outage testbed: renewals (at half-life) fall inside the outage. */
const SHORT_TTL_SECONDS = 30;
/** Generous: catches hangs, not slowness. */
const HANG_MS = 60_000;

// ---- etcd outage and compaction (both engines side by side) ----------------------------------------

describe(`faults: etcd killed for 60 s, then compacted history (engines ${ENGINES.join(' + ')} side by side; root, netns, TUN, etcd, nft, ss)`, () => {
  let tb: Testbed;
  const agents: AgentHandle[] = [];
  /** n1 and n2 run js, n3 and n4 native (all js when the native engine does not exist). */
  const engineOf = (i: number): Engine => (i >= 2 ? 'native' : 'js');
  /** Pod pairs whose traffic must flow through every fault: one pair per engine. */
  const pairs = (): Array<[TestbedNode, TestbedNode]> => [[tb.node(1), tb.node(2)], [tb.node(3), tb.node(4)]];

  beforeAll(async () => {
    if (!existsSync(agentEntry())) throw new Error(`${agentEntry()} missing: run "npm run build" first`);
    tb = await Testbed.create({ nodes: 4, pods: true, etcd: true });
    for (const [i, n] of tb.nodes.entries()) {
      agents.push(await startAgent(tb, n, {
        engine: engineOf(i),
        env: { FELT_LEASE_TTL_SECONDS: String(SHORT_TTL_SECONDS) },
        extraArgs: ['--subnet-lease-renew-margin', '1'],
      }));
    }
    await converged(agents, ownLeases(agents));
  });

  afterAll(async () => {
    await tb?.destroy();
  });

  it('etcd down 60 s: forwarding never stops, renewals fail and retry, every lease survives, and leases written while the watches were down are learned', async () => {
    const client = tb.etcdClient;
    const key = (subnet: string) => `${tb.etcdPrefix}/subnets/${subnetKey(subnet)}`;
    // D: a peer lease that exists before the outage and is deleted while no agent can see etcd.
    const D = '10.244.250.0/24';
    await client.put(key(D)).value(leaseValue('192.168.77.250'));
    await converged(agents, { ...ownLeases(agents), [D]: '192.168.77.250' });
    const before = await Promise.all(agents.map(doc));

    const pings = pairs().map(([from, to]) => ({ label: `${podOf(from).name} -> ${podOf(to).name}`, ping: startPing(podOf(from).ns, podOf(to).ip, 0.1) }));
    const report: Record<string, unknown> = { ttlSeconds: SHORT_TTL_SECONDS, outageMs: OUTAGE_MS, engines: agents.map((a, i) => `${a.node.name}:${engineOf(i)}`) };
    let pingResults;
    let during: LeasesDocument[] = [];
    let cut: LeasesDocument[] = [];
    const A = '10.244.251.0/24';
    const B = '10.244.252.0/24';
    try {
      await sleep(2_000); // traffic flows before the fault
      const killedAt = Date.now();
      await tb.etcdServer!.kill();

      // Throughout the outage every agent stays up and keeps every lease (and so every route).
      const samples: Array<{ atS: number; connected: boolean[]; renewalFailures: number[] }> = [];
      while (Date.now() - killedAt < OUTAGE_MS) {
        await sleep(Math.min(10_000, OUTAGE_MS - (Date.now() - killedAt)));
        const docs = await Promise.all(agents.map(doc));
        for (const [i, d] of docs.entries()) {
          expect(agents[i]!.running(), `${agents[i]!.node.name} exited during the outage; log ${agents[i]!.logFile}`).toBe(true);
          const known = new Map(d.leases.map((l) => [l.subnet, l.publicIP]));
          for (const [subnet, ip] of Object.entries({ ...ownLeases(agents), [D]: '192.168.77.250' })) {
            expect(known.get(subnet), `${agents[i]!.node.name} still knows ${subnet} during the outage`).toBe(ip);
          }
        }
        samples.push({
          atS: Math.round((Date.now() - killedAt) / 1000),
          connected: docs.map((d) => d.store.connected),
          renewalFailures: docs.map((d) => d.store.renewalFailures),
        });
      }
      during = await Promise.all(agents.map(doc));
      report.duringOutage = samples;

      // Keep the agents cut off for a moment after the restart, so that another client's writes
      // land while their watches are down: they must come in when the watches resume.
      for (const n of tb.nodes) await blockEtcd(n.ns, HUB_IP, ETCD_CLIENT_PORT);
      await tb.etcdServer!.restart();
      const restartedAt = Date.now();
      report.etcdDownMs = restartedAt - killedAt;
      const other = new Etcd3({ hosts: tb.etcdServer!.unixURL });
      try {
        await other.put(key(A)).value(leaseValue('192.168.77.251'));
        await other.delete().key(key(D));
        cut = await Promise.all(agents.map(doc));
        for (const n of tb.nodes) await unblockEtcd(n.ns);
        const unblockedAt = Date.now();

        await converged(agents, { [A]: '192.168.77.251', [D]: undefined });
        report.learnedWhileDisconnectedAfterMs = Date.now() - unblockedAt;
        await waitFor('every agent\'s store to be connected again', async () => (await Promise.all(agents.map(doc))).every((d) => d.store.connected), HANG_MS);

        // B: written right after the agents are back; it arrives as a watch event.
        const bAt = Date.now();
        await other.put(key(B)).value(leaseValue('192.168.77.252'));
        await converged(agents, { [B]: '192.168.77.252' });
        report.learnedAfterReconnectMs = Date.now() - bAt;

        // A renewal succeeds after the outage, before the (short) lease could run out.
        await waitFor('a successful renewal on every agent after the outage', async () => {
          const docs = await Promise.all(agents.map(doc));
          return docs.every((d, i) => d.store.renewals > cut[i]!.store.renewals);
        }, HANG_MS);
        report.firstRenewalAfterRestartMs = Date.now() - restartedAt;
      } finally {
        other.close();
      }
    } finally {
      pingResults = await Promise.all(pings.map(async (p) => ({ label: p.label, r: await p.ping.stop() })));
    }

    const after = await Promise.all(agents.map(doc));
    report.pings = pingResults.map(({ label, r }) => ({ label, transmitted: r.transmitted, received: r.received, lost: r.transmitted - r.received, errors: r.errors }));
    report.agents = agents.map((a, i) => ({
      node: a.node.name,
      engine: engineOf(i),
      renewals: [before[i]!.store.renewals, after[i]!.store.renewals],
      renewalFailures: [before[i]!.store.renewalFailures, after[i]!.store.renewalFailures],
      storeErrors: [before[i]!.store.errors, after[i]!.store.errors],
      relists: [before[i]!.store.relists, after[i]!.store.relists],
      connectedAtEndOfOutage: during[i]?.store.connected,
      connectedWhileCutOff: cut[i]?.store.connected,
      reacquired: after[i]!.leaseEvents.reacquired,
    }));
    console.log('[faults] etcd outage:', JSON.stringify({ ...report, duringOutage: undefined }));
    artifact('faults-etcd-outage.json', report);

    for (const { label, r } of pingResults) {
      // 10 probes a second for 60 s and more; half that proves ping ran through the whole outage.
      expect(r.transmitted, `${label}: ping ran through the outage`).toBeGreaterThan(OUTAGE_MS / 200);
      expect(r.transmitted - r.received, `${label}: lost ${r.transmitted - r.received} of ${r.transmitted}\n${r.raw.split('\n').slice(-4).join('\n')}`).toBeLessThanOrEqual(MAX_LOST_PINGS);
    }
    for (const [i, a] of agents.entries()) {
      const name = `${a.node.name} (${engineOf(i)})`;
      expect(a.running(), `${name} is still the same process; log ${a.logFile}`).toBe(true);
      // Renewals fell inside the outage, failed, were retried, and one succeeded afterwards.
      expect(during[i]!.store.renewalFailures, `${name}: renewal failures during the outage`).toBeGreaterThan(before[i]!.store.renewalFailures);
      expect(during[i]!.store.errors, `${name}: store errors during the outage`).toBeGreaterThan(before[i]!.store.errors);
      expect(during[i]!.store.connected, `${name}: store reported disconnected during the outage`).toBe(false);
      expect(cut[i]!.store.connected, `${name}: still cut off when A was written`).toBe(false);
      expect(after[i]!.store.renewals).toBeGreaterThan(cut[i]!.store.renewals);
      // The lease survived: same subnet, the key still names us, no re-acquisition.
      expect(after[i]!.node?.subnet).toBe(a.subnet);
      expect(after[i]!.leaseEvents.reacquired, `${name} re-acquired its lease`).toBe(before[i]!.leaseEvents.reacquired);
      const stored = await etcdValue(client, key(a.subnet));
      expect(stored && JSON.parse(stored.value), `${name}: its lease key after the outage`).toMatchObject({ PublicIP: a.node.underlayIP });
    }
    // Nothing missed: every agent knows exactly the live leases.
    await converged(agents, { ...ownLeases(agents), [A]: '192.168.77.251', [B]: '192.168.77.252', [D]: undefined });
    for (const [from, to] of pairs()) await pingOK(podOf(from).ns, podOf(to).ip);
  }, OUTAGE_MS + 4 * HANG_MS);

  it('a watch cut off while etcd history is compacted past its revision relists once: nothing missed, no hot loop', async () => {
    const client = tb.etcdClient;
    const key = (subnet: string) => `${tb.etcdPrefix}/subnets/${subnetKey(subnet)}`;
    const victims = [agents[0]!, agents[2]!]; // one per engine
    const bystanders = [agents[1]!, agents[3]!];
    const [E, F, G, H] = ['10.244.241.0/24', '10.244.242.0/24', '10.244.243.0/24', '10.244.244.0/24'];
    await client.put(key(F)).value(leaseValue('192.168.77.242'));
    await client.put(key(G)).value(leaseValue('192.168.77.243'));
    await converged(agents, { [F]: '192.168.77.242', [G]: '192.168.77.243' });
    const before = await Promise.all(agents.map(doc));

    for (const v of victims) await blockEtcd(v.node.ns, HUB_IP, ETCD_CLIENT_PORT);
    let compactedTo: string;
    try {
      await waitFor('the victims to notice the cut', async () => (await Promise.all(victims.map(doc))).every((d) => !d.store.connected), HANG_MS);
      // Another client changes the table (add, delete, change) and moves history on, then compacts.
      await client.put(key(E)).value(leaseValue('192.168.77.241'));
      await client.delete().key(key(F));
      await client.put(key(G)).value(leaseValue('192.168.77.233'));
      for (let i = 0; i < 200; i++) await client.put(`${tb.etcdPrefix}/felt-test-scratch`).value(String(i));
      compactedTo = await tb.etcdServer!.compact();
      for (const v of victims) {
        const seen = BigInt(before[agents.indexOf(v)]!.store.lastRevision ?? '0');
        expect(BigInt(compactedTo), `compaction passes ${v.node.name}'s watch revision`).toBeGreaterThan(seen + 1n);
      }
      // The bystanders' watches were never cut: they follow by events.
      await converged(bystanders, { [E]: '192.168.77.241', [F]: undefined, [G]: '192.168.77.233' });
    } finally {
      for (const v of victims) await unblockEtcd(v.node.ns);
    }
    const unblockedAt = Date.now();
    await converged(victims, { [E]: '192.168.77.241', [F]: undefined, [G]: '192.168.77.233' });
    const caughtUpMs = Date.now() - unblockedAt;

    // A quiet window after the relist: a hot loop would show as CPU, log lines and more relists.
    const window0 = { at: Date.now(), cpu: victims.map((v) => cpuSeconds(v.pid)), log: victims.map((v) => v.logs().length) };
    await sleep(5_000);
    const window1 = { at: Date.now(), cpu: victims.map((v) => cpuSeconds(v.pid)), log: victims.map((v) => v.logs().length) };
    const windowS = (window1.at - window0.at) / 1000;
    const after = await Promise.all(agents.map(doc));

    // And a later change still arrives as an event, with no further relist.
    await client.put(key(H)).value(leaseValue('192.168.77.244'));
    await converged(agents, { [H]: '192.168.77.244' });
    const final = await Promise.all(agents.map(doc));

    const report = {
      compactedTo: compactedTo!,
      caughtUpAfterUnblockMs: caughtUpMs,
      victims: victims.map((v, i) => {
        const j = agents.indexOf(v);
        return {
          node: v.node.name,
          engine: engineOf(j),
          relists: final[j]!.store.relists - before[j]!.store.relists,
          cpuShareOfOneCore: Number(((window1.cpu[i]! - window0.cpu[i]!) / windowS).toFixed(3)),
          logBytesInWindow: window1.log[i]! - window0.log[i]!,
          logBytesTotal: window1.log[i]!,
        };
      }),
      bystanderRelists: bystanders.map((b) => final[agents.indexOf(b)]!.store.relists - before[agents.indexOf(b)]!.store.relists),
    };
    console.log('[faults] compaction:', JSON.stringify(report));
    artifact('faults-compaction.json', report);

    for (const [i, v] of victims.entries()) {
      const j = agents.indexOf(v);
      const name = `${v.node.name} (${engineOf(j)})`;
      expect(final[j]!.store.relists - before[j]!.store.relists, `${name}: relists`).toBeGreaterThanOrEqual(1);
      expect(final[j]!.store.relists - before[j]!.store.relists, `${name}: relists are bounded`).toBeLessThanOrEqual(2);
      expect(final[j]!.store.relists, `${name}: no relist during the quiet window or for H`).toBe(after[j]!.store.relists);
      expect(after[j]!.store.connected).toBe(true);
      // Idle agents: far from a spinning core, and only a few log lines.
      expect(report.victims[i]!.cpuShareOfOneCore, `${name}: CPU share of one core after the relist`).toBeLessThan(0.5);
      expect(report.victims[i]!.logBytesInWindow, `${name}: log bytes written in ${windowS} s after the relist`).toBeLessThan(16 * 1024);
      expect(v.running()).toBe(true);
      expect(final[j]!.leaseEvents.reacquired).toBe(before[j]!.leaseEvents.reacquired);
      expect(final[j]!.node?.subnet).toBe(v.subnet);
    }
    for (const b of bystanders) {
      const j = agents.indexOf(b);
      expect(final[j]!.store.relists, `${b.node.name}: its watch never broke, so it never relists`).toBe(before[j]!.store.relists);
    }
    for (const [from, to] of pairs()) await pingOK(podOf(from).ns, podOf(to).ip);
  });
});
