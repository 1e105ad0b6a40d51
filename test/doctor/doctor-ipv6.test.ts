// `felt doctor`'s peer probes in a dual-stack cluster (root, netns, TUN, etcd, ip6tables; `npm run
// build` first): n1 (native engine) and n2 (js engine) with IPv4 and IPv6 pods over an IPv6
// underlay (both nodes have PublicIPv6, so the tunnel runs over UDP/IPv6). Healthy, every check
// passes and the IPv6 tunnel addresses were probed (by the doctor, and by the agents' background
// probes in both families); then the IPv6 path is broken on purpose on n2, and n1's doctor (and
// n1's background IPv6 probe) must name n2 and what broke; a route on n1 that shadows n2's IPv6
// subnet is named by the IPv6 tunnel check.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type AgentHandle } from '../testbed/agent.js';
import { Testbed, type TestbedNode } from '../testbed/testbed.js';
import { waitFor } from '../e2e/helpers.js';
import { check, doctor as runDoctor, expectOnlyFailures, peerCheck, type DoctorRun } from './helpers.js';

const DUAL_CONFIG = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'udp' } };

let tb: Testbed;
const agents = new Map<string, AgentHandle>();
const n = (i: number) => tb.node(i);
const doctor = (node: TestbedNode, save?: string): Promise<DoctorRun> => runDoctor(tb, node, save);

describe('felt doctor probes IPv6 peers (root, netns, TUN, etcd, ip6tables; both engines)', () => {
  beforeAll(async () => {
    tb = await Testbed.create({ nodes: 2, pods: true, etcd: true, underlay: 'dual', networkConfig: DUAL_CONFIG });
    const probe = ['--probe-interval', '2'];
    agents.set('n1', await startAgent(tb, n(1), { engine: 'native', extraArgs: probe }));
    agents.set('n2', await startAgent(tb, n(2), { engine: 'js', extraArgs: probe }));
    for (const name of ['n1', 'n2']) {
      await waitFor(`${name}'s probes to see its peer reachable`, async () => (await agents.get(name)!.fetchJSON('/leases')).probes?.peers.reachable === 1);
    }
  });
  afterAll(async () => {
    await tb?.destroy();
  });

  it('healthy: exit 0, every check passes on both nodes, the peer probed at its IPv6 tunnel address and over the IPv6 underlay', async () => {
    for (const node of [n(1), n(2)]) {
      const run = await doctor(node, node.name === 'n1' ? 'ipv6-healthy' : undefined);
      expect(run.code, run.text).toBe(0);
      expect(run.report.checks.filter((c) => c.verdict !== 'ok'), run.text).toEqual([]);
      expect(run.report.checks.map((c) => c.id)).toEqual([
        'tun-device', 'agent', 'tun-interface', 'routes', 'ip-forward', 'ipv6', 'rp-filter', 'forward', 'udp-port', 'underlay-mtu', 'own-lease', 'store', 'peers',
      ]);
      expect(check(run, 'underlay-mtu').summary, run.text).toBe('eth0 MTU 1500, TUN MTU 1452 + 48 = 1500 fits; IPv6 routes to 1 peers agree');
      expect(check(run, 'udp-port').summary, run.text).toMatch(new RegExp(`^bound: ${node.underlayIPv4}:8285 by pid \\d+ .*, \\[${node.underlayIPv6}\\]:8285 by pid \\d+ `));
      expect(check(run, 'peers').summary, run.text).toMatch(/^1 of 1 peer answer through the tunnel .*; IPv6 too: 1 IPv6 tunnel address, 1 over an IPv6 underlay$/);
    }
  });

  it("the agent's background probes: the peer's IPv4 and IPv6 tunnel addresses each reachable; the peer's IPv6 return route removed, only probe6 turns unreachable, and back", async () => {
    const a1 = agents.get('n1')!;
    const target6 = agents.get('n2')!.subnet6!.split('/')[0];
    const peerView = async () => (await a1.fetchJSON('/leases')).leases.find((l: { subnet: string }) => l.subnet === agents.get('n2')!.subnet);
    const healthy = await waitFor("n1's probes of n2 in both families to pass, full-size included", async () => {
      const l = await peerView();
      return l?.probe?.state === 'reachable' && l.probe6?.state === 'reachable' && l.probe6.pathMtu.state === 'ok' ? l : undefined;
    });
    expect(healthy.probe6).toMatchObject({ target: target6, pathMtu: { size: 1452 }, consecutiveFailures: 0 });
    expect(healthy.probe.target).toBe(agents.get('n2')!.subnet.split('/')[0]);
    const doc = await a1.fetchJSON('/leases');
    expect(doc.probes.peers6).toMatchObject({ reachable: 1, unreachable: 0 });
    expect((await a1.fetchText('/leases?format=table')).body).toMatch(/ok \d+\.\d+ms, v6 ok \d+\.\d+ms\s+ok 1452, v6 ok 1452/);
    const metrics = (await a1.fetchText('/metrics')).body;
    expect(metrics).toMatch(/felt_probe_peers\{state="reachable",family="ipv6"\} 1/);

    const route = (await n(2).ns.ip(['-6', 'route', 'show', 'fc00::/48'])).trim();
    await n(2).ns.ip(['-6', 'route', 'del', 'fc00::/48', 'dev', 'flannel0']);
    try {
      const broken = await waitFor("n1's IPv6 probe of n2 to turn unreachable", async () => {
        const l = await peerView();
        return l?.probe6?.state === 'unreachable' ? l : undefined;
      });
      expect(broken.probe6.consecutiveFailures).toBeGreaterThanOrEqual(3);
      expect(broken.probe6.lastSuccessAt).not.toBeNull();
      // The IPv4 path is untouched: its probe stays reachable throughout.
      expect(broken.probe.state).toBe('reachable');
      expect(broken.probe.consecutiveFailures).toBe(0);
      expect((await a1.fetchJSON('/leases')).probes.peers6).toMatchObject({ reachable: 0, unreachable: 1 });
      expect((await a1.fetchText('/leases?format=table')).body).toMatch(/ok \d+\.\d+ms, v6 UNREACHABLE/);
    } finally {
      await n(2).ns.ip(['-6', 'route', 'replace', ...route.split(/\s+/)]);
    }
    await waitFor("n1's IPv6 probe of n2 to pass again", async () => (await peerView())?.probe6?.state === 'reachable');
  });

  it("the peer's IPv6Network route removed: IPv4 passes, IPv6 through the tunnel fails, named for that peer (and by its own IPv6 check)", async () => {
    const route = (await n(2).ns.ip(['-6', 'route', 'show', 'fc00::/48'])).trim();
    expect(route, 'the agent installs fc00::/48 dev flannel0').toMatch(/^fc00::\/48 dev flannel0/);
    await n(2).ns.ip(['-6', 'route', 'del', 'fc00::/48', 'dev', 'flannel0']);
    try {
      const run = await doctor(n(1), 'ipv6-route-removed');
      expectOnlyFailures(run, [`peer ${n(2).underlayIP}`]);
      const peer = peerCheck(run, n(2));
      expect(peer.summary, run.text).toBe(`${n(2).underlayIPv6}: IPv6 through the tunnel fails: IPv4 probes pass, ICMPv6 echo to ${agents.get('n2')!.subnet6!.split('/')[0]} gets no answer`);
      expect(peer.evidence?.join('\n'), run.text).toMatch(/overlay: 3 of 3 probes .* answered/);
      expect(peer.evidence?.join('\n'), run.text).toMatch(/overlay IPv6: 0 of 3 ICMPv6 probes/);
      const there = await doctor(n(2));
      expect(check(there, 'ipv6').verdict, there.text).toBe('fail');
      expect(check(there, 'ipv6').summary).toContain('no route fc00::/48 dev flannel0');
    } finally {
      await n(2).ns.ip(['-6', 'route', 'replace', ...route.split(/\s+/)]);
    }
    const after = await doctor(n(1));
    expect(after.code, after.text).toBe(0);
  });

  it("a more specific IPv6 route sends the peer's IPv6 subnet to eth0: the IPv6 tunnel check names the route and the peer", async () => {
    const sub6 = agents.get('n2')!.subnet6!;
    await n(1).ns.ip(['-6', 'route', 'add', sub6, 'dev', 'eth0']);
    try {
      const run = await doctor(n(1), 'ipv6-shadowed');
      const six = check(run, 'ipv6');
      expect(six.verdict, run.text).toBe('fail');
      expect(six.summary, run.text).toBe(`1 IPv6 lease is shadowed: ${sub6} -> ${sub6} dev eth0`);
      expect(six.evidence?.join('\n'), run.text).toContain(`a more specific IPv6 route wins for ${sub6} (node ${n(2).underlayIPv6})`);
      expect(six.fix).toContain(`ip -6 route del ${sub6} dev eth0`);
      // The IPv4 routes check is about IPv4 routes only: it still passes.
      expect(check(run, 'routes').verdict, run.text).toBe('ok');
    } finally {
      await n(1).ns.ip(['-6', 'route', 'del', sub6, 'dev', 'eth0']);
    }
    expect(check(await doctor(n(1)), 'ipv6').verdict).toBe('ok');
  });

  it('UDP 8285 dropped by ip6tables on the peer: "UDP/IPv6 8285 filtered" (the IPv6 underlay answers, the tunnel does not)', async () => {
    const rule = ['INPUT', '-p', 'udp', '--dport', '8285', '-j', 'DROP'];
    await n(2).ns.exec(['ip6tables', '-w', '-I', ...rule]);
    try {
      const run = await doctor(n(1), 'ipv6-udp-filtered');
      expectOnlyFailures(run, [`peer ${n(2).underlayIP}`]);
      const peer = peerCheck(run, n(2));
      expect(peer.summary, run.text).toBe(`${n(2).underlayIPv6}: UDP/IPv6 8285 filtered: the node answers on the IPv6 underlay, the tunnel stays silent`);
      expect(peer.fix).toMatch(/ip6tables -S INPUT/);
      expect(peer.peer).toEqual({ subnet: agents.get('n2')!.subnet, publicIP: n(2).underlayIPv4, publicIPv6: n(2).underlayIPv6 });
    } finally {
      await n(2).ns.exec(['ip6tables', '-w', '-D', ...rule]);
    }
  });

  it("the peer's underlay MTU lowered: small probes pass, full-size ones are lost, named as path MTU with the IPv6 underlay's 48 bytes; the peer's own check sees it", async () => {
    await n(2).ns.ip(['link', 'set', 'eth0', 'mtu', '1400']);
    try {
      const run = await doctor(n(1), 'ipv6-mtu');
      expectOnlyFailures(run, [`peer ${n(2).underlayIP}`]);
      const peer = peerCheck(run, n(2));
      // Which family loses every full-size probe varies between runs (a full-size IPv4 probe was seen
      // to get through now and then); either way the verdict is the path MTU.
      expect(peer.summary, run.text).toMatch(new RegExp(`^${n(2).underlayIPv6}: path MTU too small(: small probes pass, full-size 1452-byte probes with DF| for IPv6: small ICMPv6 probes pass, full-size 1452-byte probes) are lost$`));
      expect(peer.cause).toMatch(/carries less than 1500 bytes/);
      expect(peer.fix).toMatch(/underlay MTU - 48 \(IPv6 underlay\)/);
      expect(peer.evidence?.join('\n'), run.text).toMatch(/overlay IPv6: 3 of 3 ICMPv6 probes/);
      const there = await doctor(n(2));
      expect(check(there, 'underlay-mtu').summary, there.text).toBe('eth0 MTU 1400, TUN MTU 1452 + 48: eth0 carries 1400 bytes but full-size tunnel datagrams are 1500');
    } finally {
      await n(2).ns.ip(['link', 'set', 'eth0', 'mtu', '1500']);
    }
  });
});

// NAT on the IPv6 underlay: n2's outgoing UDP/IPv6 8285 is rewritten to another source (ip6tables
// SNAT). SNAT applies to flows n2 starts, so n1's agent does not probe (it would start the flow
// first) and n2's probes open it. n1 hears n2 from the other address: its doctor must name NAT and
// the family.
describe('felt doctor names NAT on the IPv6 underlay (root, netns, TUN, etcd, ip6tables nat)', () => {
  let tb2: Testbed;
  const NATTED = 'fd77::99';
  beforeAll(async () => {
    tb2 = await Testbed.create({ nodes: 2, pods: true, etcd: true, underlay: 'dual', networkConfig: DUAL_CONFIG });
    await tb2.node(2).ns.exec(['ip6tables', '-w', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'eth0', '-p', 'udp', '--sport', '8285', '-j', 'SNAT', '--to-source', NATTED]);
    await startAgent(tb2, tb2.node(1), { engine: 'native', extraArgs: ['--probe=false'] });
    const a2 = await startAgent(tb2, tb2.node(2), { engine: 'js', extraArgs: ['--probe-interval', '1'] });
    await waitFor("n2's probes of n1 to be sent (and lost: n1 drops datagrams from the NAT address)", async () =>
      (await a2.fetchJSON('/leases')).probes?.lost > 0);
  });
  afterAll(async () => {
    await tb2?.destroy();
  });

  it(`n2's datagrams arrive from ${NATTED}, not its PublicIPv6: "NAT on the IPv6 underlay", --public-ipv6 suggested`, async () => {
    const n1 = tb2.node(1);
    const n2 = tb2.node(2);
    const run = await runDoctor(tb2, n1, 'ipv6-nat');
    const peer = peerCheck(run, n2);
    expect(peer.summary, run.text).toBe(`${n2.underlayIPv6}: NAT on the IPv6 underlay, its datagrams arrive from ${NATTED} but its lease's PublicIPv6 is ${n2.underlayIPv6}`);
    expect(peer.fix).toContain(`--public-ipv6 ${NATTED}`);
    expect(peer.evidence?.join('\n'), run.text).toContain(`its datagrams arrive from ${NATTED}, not from its lease's PublicIPv6 ${n2.underlayIPv6}`);
  });
});
