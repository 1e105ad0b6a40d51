// The four paths the bench measures, all across the same testbed underlay (node namespaces on a
// hub bridge, pods behind a per-node cni0 bridge):
//   underlay  node eth0 -> node eth0, no tunnel (what the wire gives);
//   vxlan     pod -> pod through kernel VXLAN set up as flannel's vxlan backend does;
//   native    pod -> pod through felt agents with the native (C) data path;
//   js        pod -> pod through felt agents with the js (node:dgram) data path.
// Each in IPv4 (on an IPv4 underlay) and in IPv6 (the `...6` paths: IPv6 pod traffic over an
// IPv6-only underlay, kernel VXLAN as flannel's flannel-v6.1 device).
// Only one path is live at a time: each set-up returns a teardown that removes what it added.
// Everything happens inside the testbed's namespaces (`ip -n`); the root namespace is never touched.
import type { Netns } from '../test/testbed/netns.js';
import type { Testbed, TestbedNode } from '../test/testbed/testbed.js';
import { startAgent, type AgentHandle } from '../test/testbed/agent.js';
import { waitForPing } from './probes.js';
import { pathFamily, pathKind, type Family, type PathName } from './results.js';


/** flannel's vxlan backend: VNI 1, UDP 8472, 50 bytes of outer headers (70 over IPv6). */
export const VXLAN = { device: 'flannel.1', vni: 1, port: 8472, overhead: 50 } as const;
export const VXLAN6 = { device: 'flannel-v6.1', vni: 1, port: 8472, overhead: 70 } as const;

/** The agent's TUN device (the `--tun-name` default, which startAgent keeps). */
const FELT_TUN = 'flannel0';

/** Extra `felt run` flags for the bench's agents (see setupFelt). */
export const AGENT_ARGS = ['--iptables-forward-rules=false'];

/** Pod subnets used when no agent has leased any yet (kernel paths measured on their own). */
const DEFAULT_POD_SUBNETS = ['10.244.1.0/24', '10.244.2.0/24'];
const DEFAULT_POD_SUBNETS6 = ['fc00:0:0:1::/64', 'fc00:0:0:2::/64'];

/** The network config of the IPv6 paths' cluster: dual-stack pods (the agents need an IPv4 lease too). */
export const DUAL_STACK_CONFIG = { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48', Backend: { Type: 'udp' } };

/** A live path: where iperf3/ping run, and how to take the path down again. */
export interface PathEnds {
  name: PathName;
  /** Sender side (iperf3 client, ping source). */
  client: Netns;
  clientIP: string;
  /** Receiver side (iperf3 server, ping target). */
  server: Netns;
  serverIP: string;
  /** MTU of the interface the client sends on. */
  mtu: number;
  /** Tunnel paths: the tunnel device and the node namespaces, for kernel drop counters. */
  tunnel?: { device: string; senderNode: Netns; receiverNode: Netns };
  /** felt only: the agents on the sender's and the receiver's node. */
  agents?: { sender: AgentHandle; receiver: AgentHandle };
  /** Facts about the set-up, kept in the JSON report. */
  info: Record<string, unknown>;
  teardown(): Promise<void>;
}

async function linkMtu(ns: Netns, dev: string): Promise<number> {
  const links = JSON.parse(await ns.ip(['-j', 'link', 'show', 'dev', dev])) as { mtu: number }[];
  const mtu = links[0]?.mtu;
  if (typeof mtu !== 'number') throw new Error(`cannot read the MTU of ${dev} in ${ns.name}`);
  return mtu;
}

/** The MTU of a node's underlay interface (eth0). */
export function underlayMtu(node: TestbedNode): Promise<number> {
  return linkMtu(node.ns, 'eth0');
}

/** "10.244.5.0/24" -> "10.244.5" (the testbed deals in /24 pod subnets). */
function base24(subnet: string): string {
  const m = /^(\d+\.\d+\.\d+)\.0\/24$/.exec(subnet);
  if (!m) throw new Error(`expected a /24 pod subnet, got ${subnet}`);
  return m[1]!;
}

/**
 * Sets the MTU of the node's first pod, on both ends of its veth, as the CNI plugin does from
 * subnet.env (FLANNEL_MTU): then TCP picks the right MSS instead of learning it by PMTU discovery.
 */
async function setPodMtu(node: TestbedNode, mtu: number): Promise<void> {
  const pod = node.pods[0];
  if (!pod) throw new Error(`node ${node.name} has no pod`);
  await pod.ns.ip(['link', 'set', 'eth0', 'mtu', String(mtu)]);
  await node.ns.ip(['link', 'set', 'veth1', 'mtu', String(mtu)]);
}

function twoNodes(tb: Testbed): [TestbedNode, TestbedNode] {
  if (tb.nodes.length < 2) throw new Error('the bench needs a testbed with 2 nodes');
  return [tb.nodes[0]!, tb.nodes[1]!];
}

// ---- underlay -----------------------------------------------------------------------------------

export async function setupUnderlay(tb: Testbed, family: Family = 4): Promise<PathEnds> {
  const [a, b] = twoNodes(tb);
  const addr = (n: TestbedNode): string => {
    const ip = family === 6 ? n.underlayIPv6 : n.underlayIPv4;
    if (!ip) throw new Error(`node ${n.name} has no IPv${family} underlay address`);
    return ip;
  };
  return {
    name: family === 6 ? 'underlay6' : 'underlay',
    client: a.ns,
    clientIP: addr(a),
    server: b.ns,
    serverIP: addr(b),
    mtu: await underlayMtu(a),
    info: { from: `${a.name} eth0`, to: `${b.name} eth0` },
    teardown: async () => undefined,
  };
}

// ---- kernel VXLAN -------------------------------------------------------------------------------

/** A fixed, locally administered MAC per node, so FDB/neighbour entries can be written up front. */
function vtepMac(node: TestbedNode): string {
  return `02:fe:00:00:00:${node.index.toString(16).padStart(2, '0')}`;
}

export async function setupVxlan(tb: Testbed): Promise<PathEnds> {
  const nodes = twoNodes(tb);
  const ulMtu = await underlayMtu(nodes[0]);
  const mtu = ulMtu - VXLAN.overhead;
  // Reuse the subnets an agent leased earlier in this run (same pods), else fixed ones.
  const subnets = nodes.map((n, i) => n.podSubnet ?? DEFAULT_POD_SUBNETS[i]!);
  for (const [i, node] of nodes.entries()) await tb.ensurePods(node, subnets[i]!);

  const added: TestbedNode[] = [];
  const teardown = async (): Promise<void> => {
    for (const node of added) await node.ns.ip(['link', 'del', VXLAN.device]).catch(() => undefined);
  };
  try {
    // As flannel's vxlan backend: a VTEP per node on its underlay address, no learning, and per
    // peer a route via the peer's .0 (onlink), a permanent neighbour entry and an FDB entry.
    for (const node of nodes) {
      const dev = VXLAN.device;
      await node.ns.ip([
        'link', 'add', dev, 'type', 'vxlan', 'id', String(VXLAN.vni), 'local', node.underlayIP,
        'dev', 'eth0', 'dstport', String(VXLAN.port), 'nolearning',
      ]);
      added.push(node);
      await node.ns.ip(['link', 'set', dev, 'address', vtepMac(node), 'mtu', String(mtu)]);
      await node.ns.ip(['addr', 'add', `${base24(node.podSubnet!)}.0/32`, 'dev', dev]);
      await node.ns.ip(['link', 'set', dev, 'up']);
    }
    for (const node of nodes) {
      for (const peer of nodes) {
        if (peer === node) continue;
        const gw = `${base24(peer.podSubnet!)}.0`;
        await node.ns.ip(['neigh', 'replace', gw, 'lladdr', vtepMac(peer), 'dev', VXLAN.device, 'nud', 'permanent']);
        await node.ns.exec(['bridge', 'fdb', 'append', vtepMac(peer), 'dev', VXLAN.device, 'dst', peer.underlayIP, 'self', 'permanent']);
        await node.ns.ip(['route', 'replace', peer.podSubnet!, 'via', gw, 'dev', VXLAN.device, 'onlink']);
      }
    }
    for (const node of nodes) await setPodMtu(node, mtu);
    const [client, server] = [nodes[0].pods[0]!, nodes[1].pods[0]!];
    if (!(await waitForPing(client.ns, server.ip, 10_000))) throw new Error(`no ping reply ${client.ip} -> ${server.ip} over VXLAN`);
    return {
      name: 'vxlan',
      client: client.ns,
      clientIP: client.ip,
      server: server.ns,
      serverIP: server.ip,
      mtu,
      tunnel: { device: VXLAN.device, senderNode: nodes[0].ns, receiverNode: nodes[1].ns },
      info: { device: VXLAN.device, vni: VXLAN.vni, dstport: VXLAN.port, learning: false, mtu, podSubnets: subnets },
      teardown,
    };
  } catch (err) {
    await teardown();
    throw err;
  }
}

/** "fc00:0:0:5::/64" -> "fc00:0:0:5::" (the network address: flannel's VTEP address on flannel-v6.1). */
function net6(subnet6: string): string {
  const m = /^([0-9a-f:]+::)\/\d+$/.exec(subnet6);
  if (!m) throw new Error(`expected an IPv6 pod subnet ending in ::/len, got ${subnet6}`);
  return m[1]!;
}

/** The same as setupVxlan for IPv6 pod traffic over the IPv6 underlay (flannel's flannel-v6.1). */
export async function setupVxlan6(tb: Testbed): Promise<PathEnds> {
  const nodes = twoNodes(tb);
  const ulMtu = await underlayMtu(nodes[0]);
  const mtu = ulMtu - VXLAN6.overhead;
  const subnets = nodes.map((n, i) => n.podSubnet ?? DEFAULT_POD_SUBNETS[i]!);
  const subnets6 = nodes.map((n, i) => n.podSubnet6 ?? DEFAULT_POD_SUBNETS6[i]!);
  for (const [i, node] of nodes.entries()) await tb.ensurePods(node, subnets[i]!, undefined, subnets6[i]!);

  const dev = VXLAN6.device;
  const added: TestbedNode[] = [];
  const teardown = async (): Promise<void> => {
    for (const node of added) await node.ns.ip(['link', 'del', dev]).catch(() => undefined);
  };
  try {
    for (const node of nodes) {
      if (!node.underlayIPv6) throw new Error(`node ${node.name} has no IPv6 underlay address`);
      await node.ns.ip([
        'link', 'add', dev, 'type', 'vxlan', 'id', String(VXLAN6.vni), 'local', node.underlayIPv6,
        'dev', 'eth0', 'dstport', String(VXLAN6.port), 'nolearning',
      ]);
      added.push(node);
      await node.ns.ip(['link', 'set', dev, 'address', vtepMac(node), 'mtu', String(mtu)]);
      await node.ns.ip(['addr', 'add', `${net6(node.podSubnet6!)}/128`, 'dev', dev, 'nodad']);
      await node.ns.ip(['link', 'set', dev, 'up']);
    }
    for (const node of nodes) {
      for (const peer of nodes) {
        if (peer === node) continue;
        const gw = net6(peer.podSubnet6!);
        await node.ns.ip(['-6', 'neigh', 'replace', gw, 'lladdr', vtepMac(peer), 'dev', dev, 'nud', 'permanent']);
        await node.ns.exec(['bridge', 'fdb', 'append', vtepMac(peer), 'dev', dev, 'dst', peer.underlayIPv6!, 'self', 'permanent']);
        await node.ns.ip(['-6', 'route', 'replace', peer.podSubnet6!, 'via', gw, 'dev', dev, 'onlink']);
      }
    }
    for (const node of nodes) await setPodMtu(node, mtu);
    const [client, server] = [nodes[0].pods[0]!, nodes[1].pods[0]!];
    if (!(await waitForPing(client.ns, server.ip6!, 10_000))) throw new Error(`no ping reply ${client.ip6} -> ${server.ip6} over VXLAN`);
    return {
      name: 'vxlan6',
      client: client.ns,
      clientIP: client.ip6!,
      server: server.ns,
      serverIP: server.ip6!,
      mtu,
      tunnel: { device: dev, senderNode: nodes[0].ns, receiverNode: nodes[1].ns },
      info: { device: dev, vni: VXLAN6.vni, dstport: VXLAN6.port, learning: false, mtu, podSubnets: subnets6, underlay: 'IPv6' },
      teardown,
    };
  } catch (err) {
    await teardown();
    throw err;
  }
}

// ---- felt ---------------------------------------------------------------------------------------

export async function setupFelt(tb: Testbed, engine: 'native' | 'js', family: Family = 4): Promise<PathEnds> {
  const nodes = twoNodes(tb);
  const agents: AgentHandle[] = [];
  const teardown = async (): Promise<void> => {
    for (const agent of agents.splice(0)) await agent.stop('SIGTERM').catch(() => undefined);
  };
  try {
    // startAgent waits for /readyz and builds the node's pods for its lease. No iptables rules:
    // the namespaces' FORWARD policy is ACCEPT anyway, and the rules' resync (an iptables process
    // every few seconds) would only add CPU noise to a data-path measurement.
    for (const node of nodes) {
      agents.push(await startAgent(tb, node, { engine, pods: true, extraArgs: AGENT_ARGS }));
    }
    const mtu = Number(agents[0]!.env.FLANNEL_MTU);
    if (!Number.isInteger(mtu) || mtu < 68) throw new Error(`subnet.env has no usable FLANNEL_MTU: ${agents[0]!.env.FLANNEL_MTU}`);
    for (const node of nodes) await setPodMtu(node, mtu);
    const [client, server] = [nodes[0].pods[0]!, nodes[1].pods[0]!];
    const [clientIP, serverIP] = family === 6 ? [client.ip6, server.ip6] : [client.ip, server.ip];
    if (!clientIP || !serverIP) throw new Error(`the pods have no IPv${family} address (does subnet.env have FLANNEL_IPV6_SUBNET?)`);
    // The first agent learns the second one's lease through its etcd watch: allow a moment.
    if (!(await waitForPing(client.ns, serverIP, 20_000))) throw new Error(`no ping reply ${clientIP} -> ${serverIP} through felt ${engine}`);
    return {
      name: family === 6 ? `${engine}6` : engine,
      client: client.ns,
      clientIP,
      server: server.ns,
      serverIP,
      mtu,
      agents: { sender: agents[0]!, receiver: agents[1]! },
      tunnel: { device: FELT_TUN, senderNode: nodes[0].ns, receiverNode: nodes[1].ns },
      info: {
        engine, mtu, agentArgs: AGENT_ARGS, agentLogs: agents.map((a) => a.logFile),
        podSubnets: agents.map((a) => (family === 6 ? a.subnet6 : a.subnet)),
      },
      teardown,
    };
  } catch (err) {
    await teardown();
    throw err;
  }
}

export function setupPath(tb: Testbed, name: PathName): Promise<PathEnds> {
  const family = pathFamily(name);
  const kind = pathKind(name);
  switch (kind) {
    case 'underlay':
      return setupUnderlay(tb, family);
    case 'vxlan':
      return family === 6 ? setupVxlan6(tb) : setupVxlan(tb);
    case 'native':
    case 'js':
      return setupFelt(tb, kind, family);
  }
}
