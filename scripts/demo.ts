// `npm run demo`: a three-node felt overlay in network namespaces on this machine, end to end.
// Builds an underlay, starts etcd and one agent per node, adds a pod per node, prints the lease
// table and pings pod to pod across every pair; then tears everything down (also on Ctrl-C).
// `--dual-stack`: the cluster has an IPv6 network too, pods get an IPv6 address, the underlay has
// both families, and every pair also pings over IPv6. `--ipv6-only`: an IPv6-only overlay
// (EnableIPv4 false) on an IPv6-only underlay; pods get only an IPv6 address and ping -6. Needs
// root. Exit status 0 only if every ping was answered.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startAgent, type AgentHandle, type Engine } from '../test/testbed/agent.js';
import { cleanupSync, sleep } from '../test/testbed/netns.js';
import { repoRoot } from '../test/testbed/tcp.js';
import {
  DEFAULT_NETWORK,
  HUB_IP,
  Testbed,
  UNDERLAY6_LEN,
  UNDERLAY6_PREFIX,
  UNDERLAY_LEN,
  UNDERLAY_PREFIX,
  type TestbedNode,
  type UnderlayFamily,
} from '../test/testbed/testbed.js';

const NODES = 3;
const PINGS = 3;
const NETWORK6 = 'fc00::/48';
const DUAL_STACK_CONFIG = { Network: DEFAULT_NETWORK, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'udp' } };
const IPV6_ONLY_CONFIG = { EnableIPv4: false, EnableIPv6: true, IPv6Network: NETWORK6, Backend: { Type: 'udp' } };

function nativeAvailable(): boolean {
  return existsSync(join(repoRoot(), 'dist', 'src', 'datapath', 'native.js'));
}

function usage(): never {
  console.log(
    'Usage: npm run demo [-- --engine native|js] [--dual-stack | --ipv6-only] [--underlay dual|ipv6|ipv4]\n\n' +
      'Runs a 3-node felt overlay in network namespaces (needs root). --dual-stack adds an IPv6 network\n' +
      '(pods get IPv4 and IPv6 addresses and ping each other over both); its underlay is dual-stack\n' +
      'unless --underlay says otherwise (ipv6: no IPv4 address on the nodes at all). --ipv6-only runs an\n' +
      'IPv6-only overlay (EnableIPv4 false: pods get only an IPv6 address and ping -6 each other), on an\n' +
      'IPv6-only underlay unless --underlay says otherwise.',
  );
  process.exit(0);
}

function step(n: number, total: number, text: string): void {
  console.log(`\n[${n}/${total}] ${text}`);
}

/** Pads every column to its widest cell. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => '    ' + r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

interface LeasesJSON {
  node?: { subnet: string | null } | null;
  /** subnet is null on an IPv6-only overlay: the lease is its subnet6. */
  leases: Array<{ subnet: string | null; subnet6?: string | null; publicIP: string; self?: boolean; expiresInSeconds?: number | null }>;
}

async function leaseTable(agent: AgentHandle): Promise<string> {
  const text = await agent.fetchText('/leases?format=table').catch(() => undefined);
  if (text && text.status === 200 && text.body.trim()) {
    return text.body.trimEnd().split('\n').map((l) => (l.trim() ? `    ${l}` : '')).join('\n');
  }
  // Older agents: format the JSON ourselves.
  const doc = await agent.fetchJSON<LeasesJSON>('/leases');
  const rows = [['SUBNET', 'PUBLIC IP', 'EXPIRES IN', '']];
  for (const l of doc.leases) {
    const exp = typeof l.expiresInSeconds === 'number' ? `${Math.round(l.expiresInSeconds / 60)} min` : '-';
    rows.push([l.subnet ?? l.subnet6 ?? '-', l.publicIP, exp, l.self ? '(this node)' : '']);
  }
  return table(rows);
}

async function waitForConvergence(agents: AgentHandle[], timeoutMs = 30_000): Promise<void> {
  const want = agents.map((a) => a.subnet);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const docs = await Promise.all(agents.map((a) => a.fetchJSON<LeasesJSON>('/leases').catch(() => undefined)));
    // AgentHandle.subnet is the IPv6 subnet on an IPv6-only overlay.
    const ok = docs.every((d) => d && want.every((s) => d.leases.some((l) => (l.subnet ?? l.subnet6) === s)));
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`agents did not learn each other's leases within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      engine: { type: 'string' },
      'dual-stack': { type: 'boolean' },
      'ipv6-only': { type: 'boolean' },
      underlay: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) usage();
  const engine = (values.engine ?? (nativeAvailable() ? 'native' : 'js')) as Engine;
  if (engine !== 'native' && engine !== 'js') throw new Error(`--engine must be native or js, got "${engine}"`);
  if (engine === 'native' && !nativeAvailable()) throw new Error('the native engine is not built (dist/src/datapath/native.js missing); try --engine js');
  if (process.getuid?.() !== 0) throw new Error('the demo creates network namespaces: run it as root');
  const dual = values['dual-stack'] === true;
  const v6only = values['ipv6-only'] === true;
  if (dual && v6only) throw new Error('--dual-stack and --ipv6-only exclude each other');
  if (values.underlay !== undefined && !dual && !v6only) throw new Error('--underlay goes with --dual-stack or --ipv6-only');
  const underlay = (values.underlay ?? (dual ? 'dual' : v6only ? 'ipv6' : 'ipv4')) as UnderlayFamily;
  if (!['ipv4', 'dual', 'ipv6'].includes(underlay)) throw new Error(`--underlay must be dual, ipv6 or ipv4, got "${underlay}"`);
  const networkConfig = dual ? DUAL_STACK_CONFIG : v6only ? IPV6_ONLY_CONFIG : undefined;
  // Which pod address families the pairs ping over.
  const families: (4 | 6)[] = dual ? [4, 6] : v6only ? [6] : [4];

  console.log(`felt demo: ${NODES} nodes, each with one ${dual ? 'dual-stack ' : v6only ? 'IPv6-only ' : ''}pod, connected by felt's UDP overlay (engine: ${engine}).`);
  console.log('Everything lives in network namespaces named felt-<run id>-*; nothing touches the host network.');
  const total = 5;
  let tb: Testbed | undefined;
  process.once('SIGINT', () => {
    // Synchronous: kills the agents and etcd, deletes this run's namespaces and scratch files.
    console.log('\nInterrupted: tearing everything down.');
    cleanupSync();
    process.exit(130);
  });
  try {
    const nets = [
      ...(underlay !== 'ipv6' ? [`${UNDERLAY_PREFIX}.0/${UNDERLAY_LEN}`] : []),
      ...(underlay !== 'ipv4' ? [`${UNDERLAY6_PREFIX}/${UNDERLAY6_LEN}`] : []),
    ];
    tb = await Testbed.create({ nodes: NODES, pods: true, etcd: true, underlay, ...(networkConfig ? { networkConfig } : {}) });
    const etcdURL = tb.etcdClientURL.replace(/^http:\/\//, '');
    step(1, total, `Underlay: a bridge ${nets.join(' + ')} in a hub namespace, etcd on it at ${etcdURL}`);
    console.log(`    hub ${tb.hub.name}  (${underlay === 'ipv6' ? etcdURL.replace(/:\d+$/, '') : HUB_IP}, etcd)`);
    for (const n of tb.nodes) console.log(`    node ${n.name}  ${n.ns.name}  eth0 ${[n.underlayIPv4, n.underlayIPv6].filter(Boolean).join(' ')}`);
    const config = networkConfig ? JSON.stringify(networkConfig) : `{"Network":"${DEFAULT_NETWORK}","Backend":{"Type":"udp"}}`;
    console.log(`    etcd key ${tb.etcdPrefix}/config = ${config}`);

    step(2, total, `Agents: each node runs \`felt run\`, takes a ${v6only ? '/64' : dual ? '/24 and a /64' : '/24'} lease and opens flannel0; a pod is wired to it`);
    const agents: AgentHandle[] = [];
    for (const n of tb.nodes) {
      const t0 = Date.now();
      const a = await startAgent(tb, n, { engine });
      agents.push(a);
      const pod = n.pods[0]!;
      const v6 = dual ? ` + ${a.subnet6 ?? '(no IPv6 lease!)'}` : '';
      const tun6 = a.subnet6 ? ` ${a.subnet6.replace(/\/\d+$/, '/128')}` : '';
      // An IPv6-only overlay: the lease is the /64 alone, flannel0 has no IPv4 address.
      const tun4 = v6only ? '' : ` ${a.subnet.replace(/\.0\/24$/, '.0/32')}`;
      const addrs = [...new Set([pod.ip, pod.ip6].filter(Boolean))].join(' ');
      console.log(`    ${n.name}: lease ${a.subnet}${v6}, flannel0${tun4}${tun6}, pod ${pod.name} ${addrs}  (ready in ${Date.now() - t0} ms)`);
    }
    await waitForConvergence(agents);
    console.log('    every agent has learned every lease from etcd');

    step(3, total, `Lease table, as agent ${tb.nodes[0]!.name} sees it (GET /leases?format=table on its debug socket):`);
    console.log(await leaseTable(agents[0]!));

    const what = dual ? `${PINGS} pings and ping -6` : v6only ? `${PINGS} ping -6` : `${PINGS} pings`;
    step(4, total, `Pod to pod: ${what} across every pair (pod -> cni0 -> flannel0 -> UDP 8285 -> peer -> flannel0 -> pod)`);
    const failures = await pingAll(tb, tb.nodes, families);

    step(5, total, 'Tearing down');
    await tb.destroy();
    tb = undefined;
    console.log('    agents stopped, etcd stopped, namespaces deleted');
    if (failures > 0) {
      console.log(`\nFAILED: ${failures} pair(s) did not answer every ping. Agent logs: test-artifacts/`);
      return 1;
    }
    console.log('\nAll pods reached each other through the overlay.');
    return 0;
  } finally {
    await tb?.destroy().catch((err: Error) => console.error(`teardown: ${err.message}`));
  }
}

async function pingAll(tb: Testbed, nodes: TestbedNode[], families: (4 | 6)[]): Promise<number> {
  const rows = [['FROM', '', 'TO', '', 'REPLIES', 'RTT min/avg/max']];
  let failures = 0;
  for (const family of families) {
    for (const a of nodes) {
      for (const b of nodes) {
        if (a === b) continue;
        const [pa, pb] = [a.pods[0]!, b.pods[0]!];
        const [src, dst] = family === 6 ? [pa.ip6 ?? '(none)', pb.ip6] : [pa.ip, pb.ip];
        const r = dst ? await tb.ping(pa, dst, { count: PINGS, intervalS: 0.2, family }) : undefined;
        const ok = r !== undefined && r.received === r.transmitted && r.transmitted === PINGS;
        if (!ok) failures++;
        const rtt = r?.rtt ? `${r.rtt.min.toFixed(3)}/${r.rtt.avg.toFixed(3)}/${r.rtt.max.toFixed(3)} ms` : '-';
        rows.push([pa.name, src, pb.name, dst ?? '(no IPv6 address)', r ? `${r.received}/${r.transmitted}${ok ? '' : '  FAIL'}` : 'FAIL', rtt]);
      }
    }
  }
  console.log(table(rows));
  return failures;
}

main().then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(`\ndemo failed: ${err.message}`);
    process.exit(1);
  },
);
