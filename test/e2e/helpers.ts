// Helpers for the end-to-end suites: reading an agent's /leases document, waiting for conditions,
// watching etcd for a new lease, and polling reachability with short pings.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Etcd3 } from 'etcd3';
import { expect } from 'vitest';
import type { AgentHandle, Engine } from '../testbed/agent.js';
import type { Pod, Testbed, TestbedNode } from '../testbed/testbed.js';
import { ping, sleep, type Netns, type PingResult } from '../testbed/netns.js';
import { repoRoot } from '../testbed/tcp.js';
import type { LeasesDocument } from './fixtures/underlay.js';

/** The parts of the /leases document the suite relies on (see src/debug/view.ts). */
export interface LeasesDoc {
  node?: { subnet: string; publicIP: string } | null;
  /** An older, lighter shape of the document; accepted too. */
  self?: { subnet: string; publicIP: string } | null;
  leases: Array<{ subnet: string; publicIP: string; self?: boolean }>;
  datapath?: { drops?: { encap?: Record<string, number>; decap?: Record<string, number> } } | null;
}

export async function leasesDoc(agent: AgentHandle): Promise<LeasesDoc> {
  return agent.fetchJSON<LeasesDoc>('/leases');
}

/** The subnets an agent knows a lease for (its own included). */
export async function knownSubnets(agent: AgentHandle): Promise<string[]> {
  return (await leasesDoc(agent)).leases.map((l) => l.subnet).sort();
}

/** The encap `no-route` drop counter of an agent's data path. */
export async function noRouteDrops(agent: AgentHandle): Promise<number> {
  const doc = await leasesDoc(agent);
  const n = doc.datapath?.drops?.encap?.['no-route'];
  if (typeof n !== 'number') throw new Error(`/leases of ${agent.node.name} has no datapath.drops.encap["no-route"]`);
  return n;
}

import { waitFor } from '../support/wait.js';

export { waitFor };

/** "10.244.5.0/24" -> "10.244.5.0-24", flannel's key form. */
export function subnetKey(subnet: string): string {
  return subnet.replace('/', '-');
}

/** "10.244.5.0/24" -> "10.244.5.<host>" */
export function hostIn(subnet: string, host: number): string {
  return subnet.replace(/\.\d+\/\d+$/, `.${host}`);
}

export interface NewLease {
  key: string;
  /** "10.244.5.0/24" */
  subnet: string;
  value: string;
  /** Date.now() when the put event reached this process. */
  at: number;
}

/**
 * Watches `<prefix>/subnets/` and resolves on the first put of a key not in `known`.
 * Resolves `ready` once the watch is established (start the agent after that).
 */
export async function watchForNewLease(client: Etcd3, etcdPrefix: string, known: Set<string>): Promise<{ lease: Promise<NewLease>; cancel: () => Promise<void> }> {
  const dir = `${etcdPrefix}/subnets/`;
  const watcher = await client.watch().prefix(dir).create();
  const lease = new Promise<NewLease>((resolve, reject) => {
    watcher.on('put', (kv) => {
      const at = Date.now();
      const key = kv.key.toString();
      if (known.has(key)) return;
      const m = /(\d+\.\d+\.\d+\.\d+)-(\d+)$/.exec(key);
      if (!m) return;
      resolve({ key, subnet: `${m[1]}/${m[2]}`, value: kv.value.toString(), at });
    });
    watcher.on('error', reject);
  });
  lease.catch(() => undefined);
  return { lease, cancel: () => watcher.cancel() };
}

export interface ReachResult {
  /** ms from `since` to the end of the first successful ping (may lie past the deadline). */
  afterMs?: number;
  /** A ping was answered before `deadline`. */
  withinDeadline: boolean;
  /** ping processes run (each probes every 50 ms until a reply, an ICMP error or its -w). */
  attempts: number;
  last?: PingResult;
}

/**
 * Probes `target` from `from` every 50 ms until it answers or `deadline` passes. One ping process
 * keeps probing until a reply comes back; an ICMP error (e.g. net-unreachable while the route is
 * still missing) ends it early, and then the next one starts.
 */
export async function pollReachable(from: Netns, target: string, since: number, deadline: number): Promise<ReachResult> {
  let attempts = 0;
  let last: PingResult | undefined;
  while (Date.now() < deadline) {
    attempts++;
    const remainingS = Math.ceil((deadline - Date.now()) / 1000);
    last = await ping(from, target, { count: 1, intervalS: 0.05, waitS: 0.2, deadlineS: remainingS });
    const now = Date.now();
    if (last.ok) return { afterMs: now - since, withinDeadline: now <= deadline, attempts, last };
    await sleep(20);
  }
  return { withinDeadline: false, attempts, last };
}

/** The arguments startAgent would pass, for agents run by runAgentToExit (debug server off). */
export function agentArgs(tb: Testbed, node: TestbedNode, engine: Engine, extra: string[], opts: { prefix?: string; iface?: string } = {}): string[] {
  return [
    '--etcd-endpoints', tb.etcdClientURL,
    '--etcd-prefix', opts.prefix ?? tb.etcdPrefix,
    '--iface', opts.iface ?? 'eth0',
    '--engine', engine,
    '--subnet-file', join(tb.workDir, `${node.name}-failing`, 'subnet.env'),
    '--debug-addr=',
    ...extra,
  ];
}

// ---- shared by the fault suites ----

export function artifact(name: string, data: unknown): void {
  const dir = join(repoRoot(), 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), `${JSON.stringify(data, null, 2)}\n`);
}


export function doc(a: AgentHandle): Promise<LeasesDocument> {
  return a.fetchJSON<LeasesDocument>('/leases');
}

export function podOf(n: TestbedNode): Pod {
  const p = n.pods[0];
  if (!p) throw new Error(`no pod on ${n.name}`);
  return p;
}

/** "10.244.5.1/24" -> "10.244.5.0/24" */
export function networkOf(cidr: string): string {
  const m = /^(\d+\.\d+\.\d+)\.\d+\/(\d+)$/.exec(cidr);
  if (!m) throw new Error(`unexpected subnet "${cidr}"`);
  return `${m[1]}.0/${m[2]}`;
}

/** subnet -> PublicIP, as the agent knows it. */
export async function leaseMap(a: AgentHandle): Promise<Map<string, string>> {
  return new Map((await doc(a)).leases.map((l) => [l.subnet, l.publicIP]));
}

/** Every agent knows exactly these subnet -> PublicIP pairs for the given subnets (undefined = must not know it). */
export function converged(agents: AgentHandle[], want: Record<string, string | undefined>, timeoutMs = 60_000): Promise<true> {
  return waitFor(`every agent to agree on ${JSON.stringify(want)}`, async () => {
    for (const a of agents) {
      const known = await leaseMap(a);
      for (const [subnet, ip] of Object.entries(want)) if (known.get(subnet) !== ip) return false;
    }
    return true;
  }, timeoutMs);
}

/** The lease map each agent's own node should see: every agent's subnet -> its PublicIP. */
export function ownLeases(agents: AgentHandle[]): Record<string, string> {
  return Object.fromEntries(agents.map((a) => [a.subnet, a.node.underlayIP]));
}

export async function etcdValue(client: Etcd3, key: string): Promise<{ value: string; lease: string } | undefined> {
  const res = await client.get(key).exec();
  const kv = res.kvs[0];
  return kv ? { value: kv.value.toString(), lease: kv.lease } : undefined;
}


export async function pingOK(from: Netns, target: string): Promise<void> {
  const r = await ping(from, target, { count: 3, intervalS: 0.1, waitS: 2 });
  expect(r.received, `ping ${target} from ${from.name}:\n${r.raw}`).toBe(r.transmitted);
}
