// IpMasq for IPv6 (EnableIPv6: ip6tables, flannel's masqIP6Rules and IPv6 forward rules) inside fresh
// network namespaces, so the host's rules are never touched (needs root, ip netns, ip6tables).
// Rules: the flannel-equivalent chains with ff00::/8 as multicast, removed by teardown. Traffic: a
// pod's IPv6 packets to an outside address leave with the node's address; pod-to-pod keeps its source.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORWARD_CHAIN, IpMasq, MASQ_CHAIN } from '../../src/masq.js';
import { parseSubnet6 } from '../../src/net/ip6.js';
import { parseSubnet } from '../../src/net/cidr.js';
import { Netns, run, runPrefix } from '../testbed/netns.js';
import { expectMasqTraffic, quietLogger } from './helpers.js';

const NETWORK6 = parseSubnet6('fc00::/48');
const LOCAL6 = parseSubnet6('fc00:0:0:1::/64');

describe('IpMasq for IPv6', () => {
  it('refuses a mix of families', () => {
    expect(() => new IpMasq({ network: NETWORK6, localSubnet: parseSubnet('10.244.1.0/24'), masquerade: true, forwardRules: true, resyncSeconds: 5 }, quietLogger())).toThrow(/one family/);
  });
});

describe('IpMasq IPv6 rules and traffic in network namespaces (root, netns, ip6tables)', () => {
  // pod (fc00:0:0:1::2) -- node (fc00:0:0:1::1 | fd99::1 | fc00:0:0:2::1) -- outside (fd99::2)
  //                                                                      \- remote pod (fc00:0:0:2::5)
  const prefix = runPrefix();
  const spaces: Netns[] = [];
  let node: Netns;
  let pod: Netns;
  let outside: Netns;
  let remote: Netns;
  let hostRulesBefore = '';
  const hostFeltRules = async () => (await run(['ip6tables-save'], { check: false })).stdout.split('\n').filter((l) => l.includes('FELT-')).join('\n');
  const rules = async (table: string, chain: string): Promise<string[]> =>
    (await node.exec(['ip6tables', '-w', '-t', table, '-S', chain], { check: false })).stdout.split('\n').filter((l) => l.startsWith('-A '));

  beforeAll(async () => {
    hostRulesBefore = await hostFeltRules();
    for (const name of ['node', 'pod', 'out', 'rpod']) spaces.push(await Netns.create(`${prefix}-${name}`));
    [node, pod, outside, remote] = spaces as [Netns, Netns, Netns, Netns];
    const link = async (a: Netns, aIf: string, aAddr: string, b: Netns, bIf: string, bAddr: string) => {
      await a.ip(['link', 'add', aIf, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name]);
      await a.ip(['addr', 'add', aAddr, 'dev', aIf, 'nodad']);
      await b.ip(['addr', 'add', bAddr, 'dev', bIf, 'nodad']);
      await a.ip(['link', 'set', aIf, 'up']);
      await b.ip(['link', 'set', bIf, 'up']);
    };
    await link(node, 'vpod', 'fc00:0:0:1::1/64', pod, 'eth0', 'fc00:0:0:1::2/64');
    await link(node, 'vout', 'fd99::1/64', outside, 'eth0', 'fd99::2/64');
    await link(node, 'vrem', 'fc00:0:0:2::1/64', remote, 'eth0', 'fc00:0:0:2::5/64');
    await pod.ip(['-6', 'route', 'add', 'default', 'via', 'fc00:0:0:1::1']);
    await outside.ip(['-6', 'route', 'add', 'fc00::/48', 'via', 'fd99::1']);
    await remote.ip(['-6', 'route', 'add', 'default', 'via', 'fc00:0:0:2::1']);
    await node.sysctl('net.ipv6.conf.all.forwarding', '1');
  });
  afterAll(async () => {
    for (const ns of spaces.reverse()) await ns.delete();
    expect(await hostFeltRules()).toBe(hostRulesBefore);
  });

  it('installs the flannel-equivalent ip6tables chains with ff00::/8 as multicast; teardown removes them', async () => {
    const m = new IpMasq({ network: NETWORK6, localSubnet: LOCAL6, masquerade: true, forwardRules: true, resyncSeconds: 3600, randomFully: false, netns: node.name }, quietLogger());
    await m.setup();
    const masq = '-m comment --comment "felt masq"';
    expect(await rules('nat', MASQ_CHAIN)).toEqual([
      `-A ${MASQ_CHAIN} -m mark --mark 0x4000/0x4000 ${masq} -j RETURN`,
      `-A ${MASQ_CHAIN} -s fc00::/48 -d fc00::/48 ${masq} -j RETURN`,
      `-A ${MASQ_CHAIN} ! -s fc00::/48 -d fc00:0:0:1::/64 ${masq} -j RETURN`,
      `-A ${MASQ_CHAIN} -s fc00::/48 ! -d ff00::/8 ${masq} -j MASQUERADE`,
      `-A ${MASQ_CHAIN} ! -s fc00::/48 -d fc00::/48 ${masq} -j MASQUERADE`,
    ]);
    expect(await rules('filter', FORWARD_CHAIN)).toEqual([
      `-A ${FORWARD_CHAIN} -s fc00::/48 -m comment --comment "felt forward" -j ACCEPT`,
      `-A ${FORWARD_CHAIN} -d fc00::/48 -m comment --comment "felt forward" -j ACCEPT`,
    ]);
    expect(await rules('nat', 'POSTROUTING')).toEqual([`-A POSTROUTING ${masq} -j ${MASQ_CHAIN}`]);
    // The IPv4 tables are untouched.
    expect((await node.exec(['iptables', '-w', '-t', 'nat', '-S', MASQ_CHAIN], { check: false })).code).not.toBe(0);
    await m.teardown();
    expect(await rules('nat', 'POSTROUTING')).toEqual([]);
    expect((await node.exec(['ip6tables', '-w', '-t', 'nat', '-S', MASQ_CHAIN], { check: false })).code).not.toBe(0);
  });

  it('pod -> outside leaves with the node address only when masquerading; pod -> pod keeps its source', async () => {
    const m = new IpMasq({ network: NETWORK6, localSubnet: LOCAL6, masquerade: true, forwardRules: true, resyncSeconds: 3600, netns: node.name }, quietLogger());
    await expectMasqTraffic(m, { family: 'udp6', pod, outside, remote, podIP: 'fc00:0:0:1::2', nodeIP: 'fd99::1', outsideIP: 'fd99::2', remoteIP: 'fc00:0:0:2::5' });
  });
});
