// IpMasq (--ip-masq, --iptables-forward-rules) inside fresh network namespaces, so the host's rules
// are never touched (needs root, ip netns, iptables). Rules: installed, exactly once after repeated
// setups, restored by the resync after an outside change, gone after teardown. Traffic: a pod's
// packets to an outside address leave with the node's address; pod-to-pod traffic keeps its source.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FORWARD_CHAIN, IpMasq, MASQ_CHAIN, supportsRandomFully, type IpMasqOptions } from '../../src/masq.js';
import { parseSubnet } from '../../src/net/cidr.js';
import { Netns, run, runPrefix } from '../testbed/netns.js';
import { expectMasqTraffic, quietLogger, until } from './helpers.js';

const NETWORK = parseSubnet('10.244.0.0/16');
const LOCAL = parseSubnet('10.244.1.0/24');

describe('supportsRandomFully', () => {
  it('is true from iptables 1.6.2 on', () => {
    expect(supportsRandomFully('iptables v1.8.9 (nf_tables)')).toBe(true);
    expect(supportsRandomFully('iptables v1.6.2')).toBe(true);
    expect(supportsRandomFully('iptables v1.6.1')).toBe(false);
    expect(supportsRandomFully('iptables v1.4.21')).toBe(false);
    expect(supportsRandomFully('garbage')).toBe(false);
  });
});

describe('IpMasq without iptables', () => {
  it('fails with a clear error when the iptables command is missing', async () => {
    const m = new IpMasq({ network: NETWORK, localSubnet: LOCAL, masquerade: true, forwardRules: true, resyncSeconds: 5, iptables: 'iptables-felt-does-not-exist' }, quietLogger());
    await expect(m.setup()).rejects.toThrow(/iptables-felt-does-not-exist not found: --ip-masq and --iptables-forward-rules need the iptables command/);
  });
});

describe('IpMasq rules in a network namespace (root, netns, iptables)', () => {
  const prefix = runPrefix();
  let node: Netns;
  let hostRulesBefore = '';
  const masqs: IpMasq[] = [];

  const make = (extra: Partial<IpMasqOptions> = {}): IpMasq => {
    const m = new IpMasq({ network: NETWORK, localSubnet: LOCAL, masquerade: true, forwardRules: true, resyncSeconds: 3600, netns: node.name, ...extra }, quietLogger());
    masqs.push(m);
    return m;
  };
  const ipt = async (args: string[], check = true) => (await node.exec(['iptables', '-w', ...args], { check })).stdout;
  const rules = async (table: string, chain: string): Promise<string[]> =>
    (await node.exec(['iptables', '-w', '-t', table, '-S', chain], { check: false })).stdout.split('\n').filter((l) => l.startsWith('-A '));
  const jumps = async (table: string, parent: string, chain: string) => (await rules(table, parent)).filter((l) => l.endsWith(`-j ${chain}`));
  const hostFeltRules = async () => {
    const out = (await run(['iptables-save'], { check: false })).stdout;
    return out.split('\n').filter((l) => l.includes('FELT-')).join('\n');
  };

  beforeAll(async () => {
    hostRulesBefore = await hostFeltRules();
    node = await Netns.create(`${prefix}-node`);
  });
  afterAll(async () => {
    for (const m of masqs) await m.stop();
    await node?.delete();
    // The host's own rule set is what it was.
    expect(await hostFeltRules()).toBe(hostRulesBefore);
  });

  it('installs the flannel-equivalent chains, each jumped to once', async () => {
    await make().setup();
    const masq = '-m comment --comment "felt masq"';
    expect(await rules('nat', MASQ_CHAIN)).toEqual([
      `-A ${MASQ_CHAIN} -m mark --mark 0x4000/0x4000 ${masq} -j RETURN`,
      `-A ${MASQ_CHAIN} -s 10.244.0.0/16 -d 10.244.0.0/16 ${masq} -j RETURN`,
      `-A ${MASQ_CHAIN} ! -s 10.244.0.0/16 -d 10.244.1.0/24 ${masq} -j RETURN`,
      `-A ${MASQ_CHAIN} -s 10.244.0.0/16 ! -d 224.0.0.0/4 ${masq} -j MASQUERADE --random-fully`,
      `-A ${MASQ_CHAIN} ! -s 10.244.0.0/16 -d 10.244.0.0/16 ${masq} -j MASQUERADE --random-fully`,
    ]);
    expect(await rules('filter', FORWARD_CHAIN)).toEqual([
      `-A ${FORWARD_CHAIN} -s 10.244.0.0/16 -m comment --comment "felt forward" -j ACCEPT`,
      `-A ${FORWARD_CHAIN} -d 10.244.0.0/16 -m comment --comment "felt forward" -j ACCEPT`,
    ]);
    expect(await rules('nat', 'POSTROUTING')).toEqual([`-A POSTROUTING ${masq} -j ${MASQ_CHAIN}`]);
    expect(await rules('filter', 'FORWARD')).toEqual([`-A FORWARD -m comment --comment "felt forward" -j ${FORWARD_CHAIN}`]);
  });

  it('adds nothing twice: setup again, and a second instance, leave exactly one of each', async () => {
    const before = [await rules('nat', MASQ_CHAIN), await rules('filter', FORWARD_CHAIN), await rules('nat', 'POSTROUTING'), await rules('filter', 'FORWARD')];
    const m = make();
    await m.setup();
    await m.setup();
    await make().setup();
    expect([await rules('nat', MASQ_CHAIN), await rules('filter', FORWARD_CHAIN), await rules('nat', 'POSTROUTING'), await rules('filter', 'FORWARD')]).toEqual(before);
    expect(await m.ensure()).toBe(false); // nothing to repair
  });

  it('a new local subnet replaces the old rules instead of adding to them', async () => {
    await make({ localSubnet: parseSubnet('10.244.7.0/24') }).setup();
    const r = await rules('nat', MASQ_CHAIN);
    expect(r).toHaveLength(5);
    expect(r.filter((l) => l.includes('10.244.7.0/24'))).toHaveLength(1);
    expect(r.filter((l) => l.includes('10.244.1.0/24'))).toHaveLength(0);
    await make().setup(); // back to 10.244.1.0/24 for the next tests
  });

  it('the resync puts back a deleted rule, a deleted jump, and removes a foreign rule in its chain', async () => {
    const want = { masq: await rules('nat', MASQ_CHAIN), fwd: await rules('filter', FORWARD_CHAIN) };
    const m = make({ resyncSeconds: 1 });
    try {
      await m.setup();
      await ipt(['-t', 'nat', '-D', MASQ_CHAIN, '-s', '10.244.0.0/16', '-d', '10.244.0.0/16', '-m', 'comment', '--comment', 'felt masq', '-j', 'RETURN']);
      await ipt(['-t', 'nat', '-D', 'POSTROUTING', '-m', 'comment', '--comment', 'felt masq', '-j', MASQ_CHAIN]);
      await ipt(['-t', 'filter', '-A', FORWARD_CHAIN, '-s', '10.1.2.3/32', '-j', 'DROP']);
      // (Each iptables -D above would have failed had the rule not been there.)
      // The repair count moves when the whole check is done, after the rules are back.
      await until('the resync to restore the rules', async () =>
        m.status().repairs > 0 &&
        JSON.stringify(await rules('nat', MASQ_CHAIN)) === JSON.stringify(want.masq) &&
        JSON.stringify(await rules('filter', FORWARD_CHAIN)) === JSON.stringify(want.fwd) &&
        (await jumps('nat', 'POSTROUTING', MASQ_CHAIN)).length === 1, 30_000);
    } finally {
      await m.stop(); // no check of this instance may still be running in the next test
    }
  });

  it('a duplicated jump is reduced to one', async () => {
    await ipt(['-t', 'nat', '-A', 'POSTROUTING', '-m', 'comment', '--comment', 'felt masq', '-j', MASQ_CHAIN]);
    expect(await jumps('nat', 'POSTROUTING', MASQ_CHAIN)).toHaveLength(2);
    expect(await make().ensure()).toBe(true);
    expect(await jumps('nat', 'POSTROUTING', MASQ_CHAIN)).toHaveLength(1);
  });

  it('teardown removes the jumps and the chains', async () => {
    await make().teardown();
    expect((await node.exec(['iptables', '-w', '-t', 'nat', '-S', MASQ_CHAIN], { check: false })).code).not.toBe(0);
    expect((await node.exec(['iptables', '-w', '-t', 'filter', '-S', FORWARD_CHAIN], { check: false })).code).not.toBe(0);
    expect(await jumps('nat', 'POSTROUTING', MASQ_CHAIN)).toEqual([]);
    expect(await jumps('filter', 'FORWARD', FORWARD_CHAIN)).toEqual([]);
    await make().teardown(); // again: nothing to remove, no error
  });

  it('forward rules alone (--ip-masq=false) add no nat chain', async () => {
    const m = make({ masquerade: false });
    await m.setup();
    expect(await rules('filter', FORWARD_CHAIN)).toHaveLength(2);
    expect(await jumps('nat', 'POSTROUTING', MASQ_CHAIN)).toEqual([]);
    await m.teardown();
    expect((await node.exec(['iptables', '-w', '-t', 'filter', '-S', FORWARD_CHAIN], { check: false })).code).not.toBe(0);
  });
});

describe('IpMasq traffic (root, netns, iptables)', () => {
  // pod (10.244.1.2) -- node (10.244.1.1 | 192.168.99.1 | 10.244.2.1) -- outside (192.168.99.2)
  //                                                                   \- remote pod (10.244.2.5)
  const prefix = runPrefix();
  const spaces: Netns[] = [];
  let node: Netns;
  let pod: Netns;
  let outside: Netns;
  let remote: Netns;
  let masq: IpMasq;

  beforeAll(async () => {
    for (const name of ['node', 'pod', 'out', 'rpod']) spaces.push(await Netns.create(`${prefix}-${name}`));
    [node, pod, outside, remote] = spaces as [Netns, Netns, Netns, Netns];
    const link = async (a: Netns, aIf: string, aAddr: string, b: Netns, bIf: string, bAddr: string) => {
      await a.ip(['link', 'add', aIf, 'type', 'veth', 'peer', 'name', bIf, 'netns', b.name]);
      await a.ip(['addr', 'add', aAddr, 'dev', aIf]);
      await b.ip(['addr', 'add', bAddr, 'dev', bIf]);
      await a.ip(['link', 'set', aIf, 'up']);
      await b.ip(['link', 'set', bIf, 'up']);
    };
    await link(node, 'vpod', '10.244.1.1/24', pod, 'eth0', '10.244.1.2/24');
    await link(node, 'vout', '192.168.99.1/24', outside, 'eth0', '192.168.99.2/24');
    await link(node, 'vrem', '10.244.2.1/24', remote, 'eth0', '10.244.2.5/24');
    await pod.ip(['route', 'add', 'default', 'via', '10.244.1.1']);
    await node.sysctl('net.ipv4.ip_forward', '1');
    masq = new IpMasq({ network: NETWORK, localSubnet: LOCAL, masquerade: true, forwardRules: true, resyncSeconds: 3600, netns: node.name }, quietLogger());
  });
  afterAll(async () => {
    await masq?.stop();
    for (const ns of spaces.reverse()) await ns.delete();
  });

  it('pod -> outside leaves with the node address only when masquerading; pod -> pod keeps its source', async () => {
    await expectMasqTraffic(masq, { family: 'udp4', pod, outside, remote, podIP: '10.244.1.2', nodeIP: '192.168.99.1', outsideIP: '192.168.99.2', remoteIP: '10.244.2.5' });
  });
});
