// `felt doctor` against real faults. Needs: root, network namespaces, /dev/net/tun, the etcd binary,
// iptables, and `npm run build` (the agents and the doctor run from dist/). One testbed of three
// nodes (n1 native engine, n2 js engine without felt's FORWARD rules, n3 native); each fault is
// injected for real, the doctor runs on the affected node (or on n1 for a peer's fault) and must
// name the fault and the peer, then the fault is removed before the next one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../testbed/agent.js';
import { sleep } from '../testbed/netns.js';
import { Testbed, type TestbedNode } from '../testbed/testbed.js';
import { subnetKey, waitFor } from '../e2e/helpers.js';
import { check, doctor as runDoctor, expectOnlyFailures, peerCheck, type DoctorRun } from './helpers.js';

let tb: Testbed;
const agents = new Map<string, AgentHandle>();

const doctor = (node: TestbedNode, save?: string): Promise<DoctorRun> => runDoctor(tb, node, save);

const n = (i: number) => tb.node(i);

describe('felt doctor names injected faults (root, netns, TUN, etcd, iptables; both engines)', () => {
  beforeAll(async () => {
    tb = await Testbed.create({ nodes: 3, pods: true, etcd: true });
    const probe = ['--probe-interval', '2'];
    agents.set('n1', await startAgent(tb, n(1), { engine: 'native', extraArgs: probe }));
    agents.set('n2', await startAgent(tb, n(2), { engine: 'js', extraArgs: [...probe, '--iptables-forward-rules=false'] }));
    agents.set('n3', await startAgent(tb, n(3), { engine: 'native', extraArgs: probe }));
  });
  afterAll(async () => {
    await tb?.destroy();
  });

  it('a healthy cluster: exit 0, every check passes, on a native and a js node; the agents see every peer reachable', async () => {
    for (const name of ['n1', 'n2']) {
      await waitFor(`${name}'s probes to see both peers reachable`, async () => {
        const doc = await agents.get(name)!.fetchJSON('/leases');
        return doc.probes.peers.reachable === 2 && doc.leases.filter((l: any) => !l.self).every((l: any) => l.probe?.pathMtu.state === 'ok');
      });
    }
    for (const node of [n(1), n(2)]) {
      const run = await doctor(node, node.name === 'n1' ? 'healthy' : undefined);
      expect(run.code, run.text).toBe(0);
      expect(run.report.checks.filter((c) => c.verdict !== 'ok'), run.text).toEqual([]);
      expect(run.report.checks.map((c) => c.id)).toEqual([
        'tun-device', 'agent', 'tun-interface', 'routes', 'ip-forward', 'rp-filter', 'forward', 'udp-port', 'underlay-mtu', 'own-lease', 'store', 'peers',
      ]);
      expect(check(run, 'peers').summary).toMatch(/^2 of 2 peers answer/);
    }
  });

  it('UDP 8285 dropped by iptables on a peer: "UDP 8285 filtered" for that peer', async () => {
    const rule = ['INPUT', '-p', 'udp', '--dport', '8285', '-j', 'DROP'];
    await n(3).ns.exec(['iptables', '-w', '-I', ...rule]);
    try {
      const run = await doctor(n(1), 'udp-filtered');
      expectOnlyFailures(run, [`peer ${n(3).underlayIP}`]);
      expect(peerCheck(run, n(3)).summary).toMatch(/UDP 8285 filtered/);
    } finally {
      await n(3).ns.exec(['iptables', '-w', '-D', ...rule]);
    }
  });

  it("a peer's underlay MTU lowered: small probes pass, full-size fail, named as MTU (and the peer's own doctor sees its underlay MTU)", async () => {
    await n(3).ns.ip(['link', 'set', 'eth0', 'mtu', '1400']);
    try {
      const run = await doctor(n(1), 'mtu');
      expectOnlyFailures(run, [`peer ${n(3).underlayIP}`]);
      expect(peerCheck(run, n(3)).summary).toMatch(/path MTU too small/);
      const there = await doctor(n(3));
      expect(check(there, 'underlay-mtu').verdict, there.text).toBe('fail');
      expect(check(there, 'underlay-mtu').summary).toMatch(/eth0 carries 1400 bytes/);
    } finally {
      await n(3).ns.ip(['link', 'set', 'eth0', 'mtu', '1500']);
    }
  });

  it('ip_forward off', async () => {
    await n(1).ns.sysctl('net.ipv4.ip_forward', '0');
    try {
      const run = await doctor(n(1), 'ip-forward');
      expectOnlyFailures(run, ['ip-forward']);
      expect(check(run, 'ip-forward').fix).toMatch(/sysctl -w net.ipv4.ip_forward=1/);
    } finally {
      await n(1).ns.sysctl('net.ipv4.ip_forward', '1');
    }
  });

  it("FORWARD policy DROP: a failure without felt's rules (n2), a pass with them (n1)", async () => {
    for (const node of [n(1), n(2)]) await node.ns.exec(['iptables', '-w', '-P', 'FORWARD', 'DROP']);
    try {
      const run = await doctor(n(2), 'forward-drop');
      expectOnlyFailures(run, ['forward']);
      expect(check(run, 'forward').summary).toMatch(/dropped by "policy DROP"/);
      const withRules = await doctor(n(1));
      expect(withRules.code, withRules.text).toBe(0);
      expect(check(withRules, 'forward').summary).toMatch(/FELT-FWD.*policy DROP/);
    } finally {
      for (const node of [n(1), n(2)]) await node.ns.exec(['iptables', '-w', '-P', 'FORWARD', 'ACCEPT']);
    }
  });

  it("a route shadowing a peer's lease (docker0 claiming n3's subnet)", async () => {
    const subnet = agents.get('n3')!.subnet;
    await n(1).ns.ip(['link', 'add', 'docker0', 'type', 'bridge']);
    await n(1).ns.ip(['link', 'set', 'docker0', 'up']);
    await n(1).ns.ip(['route', 'add', subnet, 'dev', 'docker0']);
    try {
      const run = await doctor(n(1), 'shadow');
      expectOnlyFailures(run, ['routes', `peer ${n(3).underlayIP}`]);
      expect(check(run, 'routes').summary).toContain(`${subnet} -> ${subnet} dev docker0`);
      expect(peerCheck(run, n(3)).summary).toMatch(/routed elsewhere/);
    } finally {
      await n(1).ns.ip(['link', 'del', 'docker0']);
    }
  });

  it("a peer's agent stopped: port-unreachable from its 8285, in the doctor and in the agent's own probes; then its lease expiring", async () => {
    const n3 = agents.get('n3')!;
    await n3.stop('SIGTERM');
    const run = await doctor(n(1), 'agent-stopped');
    expectOnlyFailures(run, [`peer ${n(3).underlayIP}`]);
    expect(peerCheck(run, n(3)).summary).toMatch(/agent not running there \(ICMP port-unreachable from 192\.168\.77\.13 for UDP 8285\)/);
    await waitFor("n1's probes to mark n3 unreachable with port-unreachable evidence", async () => {
      const doc = await agents.get('n1')!.fetchJSON('/leases');
      const l = doc.leases.find((x: any) => x.publicIP === n(3).underlayIP);
      return l?.probe?.state === 'unreachable' && l.probe.evidence?.kind === 'port-unreachable' && doc.probes.peers.unreachable === 1;
    });
    const table = (await agents.get('n1')!.fetchText('/leases?format=table')).body;
    expect(table).toMatch(/UNREACHABLE \S+ \(port-unreachable from 192\.168\.77\.13\)/);
    // On the stopped node itself: the agent, its device and its socket are named; the lease is read from etcd.
    const local = await doctor(n(3), 'agent-down-local');
    expectOnlyFailures(local, ['agent', 'tun-interface', 'routes', 'udp-port']);
    expect(check(local, 'own-lease').summary).toMatch(/present in the store/);
    expect(check(local, 'peers').verdict).toBe('skip');

    // The lease it left behind, as a node that died a day ago leaves it: 15 s from expiry, unrenewed.
    const key = `${tb.etcdPrefix}/subnets/${subnetKey(n3.subnet)}`;
    const value = (await tb.etcdClient.get(key).string())!;
    const lease = tb.etcdClient.lease(15, { autoKeepAlive: false });
    await lease.put(key).value(value);
    await waitFor("n1 to see n3's lease expiring", async () => {
      const doc = await agents.get('n1')!.fetchJSON('/leases');
      return doc.leases.find((x: any) => x.publicIP === n(3).underlayIP)?.expiryState === 'expiring';
    });
    const stale = await doctor(n(1), 'lease-expiring');
    expectOnlyFailures(stale, [`peer ${n(3).underlayIP}`]);
    expect(peerCheck(stale, n(3)).summary).toMatch(/lease is stale, expires in \d+s and nobody renews it/);
    // At expiry etcd deletes it and every node forgets the peer: healthy again with one peer.
    await waitFor("n1 to forget n3's expired lease", async () => !(await agents.get('n1')!.fetchJSON('/leases')).leases.some((x: any) => x.publicIP === n(3).underlayIP), 60_000, 500);
    await sleep(100);
    const after = await doctor(n(1));
    expect(after.code, after.text).toBe(0);
  });
});
