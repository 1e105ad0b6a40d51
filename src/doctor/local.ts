// The node-local checks of `felt doctor`, in the order it prints them. Each reads /proc, /sys, the
// kernel through rtnetlink (the addon's routeGet) or iptables-save; none needs a tool the image
// does not ship.
// Over 450 lines on purpose: every node-local check, each with its cause and fix, in printing order.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { EXPIRING_SECONDS } from '../debug/view.js';
import { formatDuration } from '../debug/format.js';
import { ENCAP6_OVERHEAD_BYTES, ENCAP_OVERHEAD_BYTES } from './constants.js';
import { formatIPv4, formatSubnet, parseIPv4, prefixMask, subnetContainsIP, type Subnet } from '../net/cidr.js';
import { leaseName } from '../lease/name.js';
import { isRouteError, routeGet } from '../probe/socket.js';
import type { DoctorContext } from './context.js';
import { forwardOutcome, parseFilterTable, type Flow } from './forward.js';
import { lookupRoute6, readRoutes6, udp6Bindings } from './ipv6.js';
import { parseIPv6 } from '../net/ip6.js';
import type { CheckResult } from './types.js';

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** /dev/net/tun (character device 10:200) and the tun driver. */
export function checkTunDevice(): CheckResult {
  const base = { id: 'tun-device', title: '/dev/net/tun' };
  let kind = '';
  try {
    const st = statSync('/dev/net/tun');
    if (!st.isCharacterDevice()) kind = 'exists but is not a character device';
  } catch {
    kind = 'is missing';
  }
  const driver = existsSync('/sys/class/misc/tun') || existsSync('/sys/module/tun');
  if (kind) {
    return {
      ...base, verdict: 'fail', summary: `/dev/net/tun ${kind}${driver ? '' : ', and the tun driver is not loaded'}`,
      cause: 'felt creates its TUN device through /dev/net/tun; without it the agent cannot start',
      fix: driver
        ? 'in a container, mount the host\'s /dev/net/tun (hostPath, type CharDevice); on the host: mkdir -p /dev/net && mknod /dev/net/tun c 10 200'
        : 'load the driver on the host: modprobe tun (and add "tun" to /etc/modules-load.d/ to survive reboots); in a container also mount /dev/net/tun',
    };
  }
  if (!driver) {
    return { ...base, verdict: 'fail', summary: '/dev/net/tun exists but the tun driver is not loaded', cause: 'opening /dev/net/tun fails without the driver', fix: 'modprobe tun on the host' };
  }
  return { ...base, verdict: 'ok', summary: 'character device present, tun driver loaded' };
}

/** Is the agent up and ready? */
export function checkAgent(ctx: DoctorContext): CheckResult {
  const base = { id: 'agent', title: 'agent' };
  if (!ctx.view) {
    return {
      ...base, verdict: 'fail', summary: `no answer from the agent at ${ctx.agentLabel}: ${ctx.agentError ?? 'unknown error'}`,
      cause: 'the felt agent is not running on this node (or its debug server listens elsewhere); without it there is no tunnel and no route to other nodes',
      fix: 'start it and read its log (kubectl -n kube-system logs <felt pod on this node>; systemctl status felt); if it runs with another --debug-addr, pass --agent',
    };
  }
  const v = ctx.view;
  const store = `store ${v.store.backend} ${v.store.connected ? 'connected' : 'DISCONNECTED'}`;
  const facts = `engine ${v.node?.engine ?? v.datapath?.engine ?? '?'}, up ${formatDuration(v.uptimeSeconds ?? 0)}, ${store}`;
  if (ctx.ready === false || v.ready === false) {
    return {
      ...base, verdict: 'fail', summary: `running but NOT READY (${facts})`,
      cause: v.node ? 'the data path is not running or subnet.env is not written yet' : 'it holds no lease yet: it is still trying to reach the store or to allocate a subnet',
      fix: 'read the agent log for the step it retries; check the store below',
    };
  }
  return { ...base, verdict: 'ok', summary: `running and ready at ${ctx.agentLabel} (${facts})` };
}

function ifaceFlags(name: string): number | undefined {
  const f = read(`/sys/class/net/${name}/flags`);
  return f === undefined ? undefined : Number.parseInt(f, 16);
}

function ifaceMTU(name: string): number | undefined {
  const m = read(`/sys/class/net/${name}/mtu`);
  return m === undefined ? undefined : Number(m);
}

/** IPv4 addresses of an interface, from the kernel's view (up and running interfaces only). */
function ifaceAddresses(name: string): Array<{ address: string; prefixLen: number }> {
  return (networkInterfaces()[name] ?? [])
    .filter((a) => a.family === 'IPv4')
    .map((a) => ({ address: a.address, prefixLen: Number(a.cidr?.split('/')[1] ?? 32) }));
}

/** The TUN device: up, with the lease's .0 and the MTU the agent computed. */
export function checkTunInterface(ctx: DoctorContext): CheckResult {
  const base = { id: 'tun-interface', title: 'tun interface' };
  const name = ctx.tunName;
  const flags = ifaceFlags(name);
  if (flags === undefined) {
    return {
      ...base, verdict: 'fail', summary: `no interface ${name}`,
      cause: ctx.view ? 'the agent runs but its TUN device is gone (deleted by hand or by another tool)' : 'the agent is not running: it creates the device at start and it vanishes when the agent exits',
      fix: ctx.view ? 'restart the agent' : 'start the agent',
    };
  }
  const up = (flags & 0x1) !== 0;
  const mtu = ifaceMTU(name);
  const addrs = ifaceAddresses(name);
  const want = ctx.node.subnet ? formatIPv4(ctx.node.subnet.ip) : undefined;
  const problems: string[] = [];
  if (!up) problems.push('it is down');
  if (want && !addrs.some((a) => a.address === want)) problems.push(`it lacks our lease address ${want} (has ${addrs.map((a) => `${a.address}/${a.prefixLen}`).join(', ') || 'none'})`);
  if (ctx.node.mtu !== undefined && mtu !== ctx.node.mtu) problems.push(`its MTU is ${mtu}, the agent expects ${ctx.node.mtu}`);
  const desc = `${name} ${up ? 'up' : 'DOWN'}, ${addrs.map((a) => `${a.address}/${a.prefixLen}`).join(', ') || 'no address'}, MTU ${mtu}`;
  if (problems.length > 0) {
    return {
      ...base, verdict: 'fail', summary: `${desc}: ${problems.join('; ')}`,
      cause: 'the device is not set up as the agent left it (another tool or a hand edit changed it), so packets to other nodes do not reach the tunnel',
      fix: `restart the agent (it sets the device up again); look for tools managing ${name}`,
    };
  }
  return { ...base, verdict: 'ok', summary: want ? `${desc} (lease ${formatSubnet(ctx.node.subnet!)})` : desc };
}

interface KernelRoute {
  iface: string;
  dest: number;
  prefixLen: number;
  gateway: number;
}

/** The main table's IPv4 routes, from /proc/net/route (addresses little-endian hex). */
export function readRoutes(text = read('/proc/net/route') ?? ''): KernelRoute[] {
  const hex = (h: string) => {
    const v = Number.parseInt(h, 16) >>> 0;
    return (((v & 0xff) << 24) | (((v >>> 8) & 0xff) << 16) | (((v >>> 16) & 0xff) << 8) | (v >>> 24)) >>> 0;
  };
  const out: KernelRoute[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const mask = hex(f[7]!);
    let prefixLen = 0;
    while (prefixLen < 32 && (mask & (0x80000000 >>> prefixLen)) !== 0) prefixLen++;
    out.push({ iface: f[0]!, dest: hex(f[1]!), prefixLen, gateway: hex(f[2]!) });
  }
  return out;
}

function overlaps(r: KernelRoute, s: Subnet): boolean {
  const len = Math.min(r.prefixLen, s.prefixLen);
  const mask = prefixMask(len);
  return ((r.dest & mask) >>> 0) === ((s.ip & mask) >>> 0);
}

export interface PeerLease {
  subnet: Subnet;
  publicIP: string;
  /** When the peer has an IPv6 underlay address. */
  publicIPv6?: string;
  expiresInSeconds: number | null;
}

/** `<Network> dev <tun>` present, and no other route (or policy rule) sends a peer's lease elsewhere. */
export function checkRoutes(ctx: DoctorContext, peers: PeerLease[]): { result: CheckResult; shadowed: Map<string, string> } {
  const base = { id: 'routes', title: 'routes' };
  const shadowed = new Map<string, string>();
  const network = ctx.node.network;
  if (!network) return { result: { ...base, verdict: 'error', summary: 'the overlay network is unknown (no agent, no store)' }, shadowed };
  const routes = readRoutes();
  const netRoute = routes.find((r) => r.dest === network.ip && r.prefixLen === network.prefixLen && r.iface === ctx.tunName);
  for (const p of peers) {
    const key = formatSubnet(p.subnet);
    // More specific routes in the main table that cover part of the lease and do not use the TUN.
    const other = routes.find((r) => r.iface !== ctx.tunName && r.prefixLen > network.prefixLen && overlaps(r, p.subnet));
    if (other) {
      shadowed.set(key, `${formatIPv4(other.dest)}/${other.prefixLen} dev ${other.iface}${other.gateway ? ` via ${formatIPv4(other.gateway)}` : ''}`);
      continue;
    }
    // Policy routing and other tables: ask the kernel where the peer's TUN address goes.
    const r = routeGet(p.subnet.ip);
    if (isRouteError(r)) shadowed.set(key, `no route (${r.error})`);
    else if (r.oif !== ctx.tunName) shadowed.set(key, `${r.type} route${r.oif ? ` dev ${r.oif}` : ''}${r.table !== 254 ? ` in table ${r.table}` : ''}`);
  }
  const net = formatSubnet(network);
  if (!netRoute && shadowed.size === peers.length && peers.length > 0) {
    return {
      result: {
        ...base, verdict: 'fail', summary: `no route ${net} dev ${ctx.tunName}`,
        cause: 'without it packets for other nodes\' pods never reach the tunnel',
        fix: 'restart the agent (it adds the route with the device); if it is there and gone again, find the tool that removes it',
      },
      shadowed,
    };
  }
  if (shadowed.size > 0) {
    const list = [...shadowed].slice(0, 5).map(([s, how]) => `${s} -> ${how}`);
    const owner = peers.filter((p) => shadowed.has(formatSubnet(p.subnet))).slice(0, 5).map((p) => `${formatSubnet(p.subnet)} (node ${p.publicIP})`);
    return {
      result: {
        ...base, verdict: 'fail', summary: `${shadowed.size} lease${shadowed.size === 1 ? ' is' : 's are'} shadowed: ${list.join('; ')}${shadowed.size > 5 ? '; ...' : ''}`,
        evidence: [`${netRoute ? `${net} dev ${ctx.tunName} is present` : `${net} dev ${ctx.tunName} is MISSING`}, but a more specific route wins for ${owner.join(', ')}`],
        cause: 'another interface claims addresses inside the overlay network (docker0, another CNI, a VPN or a static route), so traffic for those pods never enters the tunnel',
        fix: `delete the route (ip route del ${[...shadowed.values()][0]!.split(' via ')[0]}) and move the other network out of ${net} (e.g. docker's "bip" in /etc/docker/daemon.json)`,
      },
      shadowed,
    };
  }
  if (!netRoute) {
    return { result: { ...base, verdict: 'warn', summary: `no route ${net} dev ${ctx.tunName} in the main table, but every lease routes through ${ctx.tunName}` }, shadowed };
  }
  return { result: { ...base, verdict: 'ok', summary: `${net} dev ${ctx.tunName}; no route shadows any of ${peers.length} peer lease${peers.length === 1 ? '' : 's'}` }, shadowed };
}

export function checkIpForward(): CheckResult {
  const base = { id: 'ip-forward', title: 'ip_forward' };
  const v = read('/proc/sys/net/ipv4/ip_forward');
  if (v === undefined) return { ...base, verdict: 'error', summary: 'cannot read /proc/sys/net/ipv4/ip_forward' };
  if (v !== '1') {
    return {
      ...base, verdict: 'fail', summary: `net.ipv4.ip_forward = ${v}`,
      cause: 'the kernel does not forward packets between the pod bridge and the TUN device: pods cannot reach other nodes (the node itself still can)',
      fix: 'sysctl -w net.ipv4.ip_forward=1, and set it in /etc/sysctl.d/ so it survives a reboot (something turned it off: docker, a hardening script?)',
    };
  }
  return { ...base, verdict: 'ok', summary: 'net.ipv4.ip_forward = 1' };
}

/** rp_filter on the TUN (the kernel uses the larger of "all" and the device's value). */
export function checkRpFilter(ctx: DoctorContext, peers: PeerLease[]): CheckResult {
  const base = { id: 'rp-filter', title: 'rp_filter' };
  const all = Number(read('/proc/sys/net/ipv4/conf/all/rp_filter') ?? 'NaN');
  const dev = Number(read(`/proc/sys/net/ipv4/conf/${ctx.tunName}/rp_filter`) ?? 'NaN');
  if (Number.isNaN(dev)) return { ...base, verdict: ctx.view ? 'error' : 'skip', summary: `no ${ctx.tunName} to check` };
  const effective = Math.max(all, dev);
  const name = ['off', 'strict', 'loose'][effective] ?? String(effective);
  const own = ctx.node.subnet;
  const desc = `${name} on ${ctx.tunName} (all=${all}, ${ctx.tunName}=${dev})`;
  if (effective !== 1 || !own) return { ...base, verdict: 'ok', summary: desc };
  // Strict: ask the kernel's input path whether a packet from each peer, arriving on the TUN, passes.
  const failing: string[] = [];
  for (const p of peers.slice(0, 512)) {
    const r = routeGet(own.ip, p.subnet.ip, ctx.tunName);
    if (isRouteError(r) && r.errno === 18 /* EXDEV: reverse-path check failed */) failing.push(formatSubnet(p.subnet));
  }
  if (failing.length > 0) {
    return {
      ...base, verdict: 'fail', summary: `${desc}: packets from ${failing.length} peer subnet${failing.length === 1 ? '' : 's'} fail the reverse-path check (${failing.slice(0, 4).join(', ')}${failing.length > 4 ? ', ...' : ''})`,
      cause: `with strict rp_filter the kernel drops a packet arriving on ${ctx.tunName} when its reply would leave by another interface; a route for those subnets points elsewhere`,
      fix: `sysctl -w net.ipv4.conf.${ctx.tunName}.rp_filter=2 net.ipv4.conf.all.rp_filter=2 (loose), or remove the route that sends those subnets elsewhere`,
    };
  }
  return { ...base, verdict: 'ok', summary: `${desc}; packets from every peer pass the reverse-path check` };
}

function runCmd(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { timeout: 10_000, maxBuffer: 32 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? ((err as unknown as { code: number }).code) : 127) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr || (err && !stdout ? err.message : '')) });
    });
  });
}

/** The FORWARD chain's verdict on a new connection each way between a local pod and a remote one. */
export async function checkForward(ctx: DoctorContext, peers: PeerLease[]): Promise<CheckResult> {
  const base = { id: 'forward', title: 'FORWARD chain' };
  const own = ctx.node.subnet;
  const network = ctx.node.network;
  if (!own || !network) return { ...base, verdict: 'error', summary: 'our subnet is unknown (no agent, no subnet.env)' };
  const save = await runCmd(['iptables-save', '-t', 'filter']);
  if (save.code === 127 && /ENOENT|not found/i.test(save.stderr)) {
    return { ...base, verdict: 'skip', summary: 'iptables-save is not installed: no iptables rules to check (nftables-only rulesets are not read)' };
  }
  if (save.code !== 0) return { ...base, verdict: 'error', summary: `iptables-save -t filter failed: ${save.stderr.trim().split('\n')[0]}` };
  const table = parseFilterTable(save.stdout);
  const local = formatIPv4(own.ip + 2);
  const remoteSubnet = peers[0]?.subnet ?? { ip: (network.ip + (1 << (32 - own.prefixLen))) >>> 0, prefixLen: own.prefixLen };
  const remote = formatIPv4(subnetContainsIP(own, remoteSubnet.ip) ? remoteSubnet.ip + 2 + (1 << (32 - own.prefixLen)) : remoteSubnet.ip + 2);
  const r = routeGet(parseIPv4(local));
  const bridge = isRouteError(r) || r.oif === ctx.tunName ? '' : r.oif;
  const flows: Array<[string, Flow]> = [
    [`pod ${local} -> remote pod ${remote}`, { src: local, dst: remote, in: bridge, out: ctx.tunName }],
    [`remote pod ${remote} -> pod ${local}`, { src: remote, dst: local, in: ctx.tunName, out: bridge }],
  ];
  const outcomes = flows.map(([what, f]) => ({ what, o: forwardOutcome(table, f) }));
  const drops = outcomes.filter((x) => x.o.result === 'drop');
  const unsure = outcomes.filter((x) => x.o.result === 'uncertain');
  const policy = table.policies.get('FORWARD') ?? 'ACCEPT';
  if (drops.length > 0) {
    return {
      ...base, verdict: 'fail',
      summary: `new connections ${drops.map((d) => d.what).join(' and ')} are dropped by "${drops[0]!.o.by}"`,
      cause: 'the kernel forwards pod traffic between the pod bridge and the TUN through the FORWARD chain, and it drops it (docker and some hardening scripts set the policy to DROP)',
      fix: `run felt with --iptables-forward-rules (the default: it accepts ${formatSubnet(network)} both ways), or add: iptables -I FORWARD -s ${formatSubnet(network)} -j ACCEPT; iptables -I FORWARD -d ${formatSubnet(network)} -j ACCEPT`,
    };
  }
  if (unsure.length > 0) {
    const u = unsure[0]!.o as { by: string; why: string };
    return { ...base, verdict: 'warn', summary: `policy ${policy}; cannot tell whether "${u.by}" drops pod traffic: it ${u.why}` };
  }
  const by = [...new Set(outcomes.map((x) => x.o.by))];
  return { ...base, verdict: 'ok', summary: `pod traffic accepted both ways (${by.map((b) => (b.startsWith('policy') ? b : `"${b}"`)).join(', ')})${policy !== 'ACCEPT' ? `; policy ${policy}` : ''}` };
}

/** Socket inodes -> the pid and command that hold them (root sees every process). */
function socketOwners(inodes: Set<string>): Map<string, { pid: number; cmd: string }> {
  const out = new Map<string, { pid: number; cmd: string }>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(link);
      if (m && inodes.has(m[1]!) && !out.has(m[1]!)) {
        const cmd = (read(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean).join(' ');
        out.set(m[1]!, { pid: Number(pid), cmd });
      }
    }
    if (out.size === inodes.size) break;
  }
  return out;
}

export interface UdpBinding {
  address: string;
  inode: string;
}

/** UDP sockets bound to `port` in this network namespace (from /proc/net/udp). */
export function udpBindings(port: number, text = read('/proc/net/udp') ?? ''): UdpBinding[] {
  const out: UdpBinding[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [addrHex, portHex] = f[1]!.split(':');
    if (Number.parseInt(portHex ?? '', 16) !== port) continue;
    const v = Number.parseInt(addrHex!, 16) >>> 0;
    const address = [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24].join('.');
    out.push({ address, inode: f[9]! });
  }
  return out;
}

export function checkUdpPort(ctx: DoctorContext): { result: CheckResult; bindAddress?: string } {
  const port = ctx.node.port;
  const base = { id: 'udp-port', title: `UDP ${port}` };
  // The IPv6 underlay's socket too (a node with PublicIPv6 binds one); an IPv4-only node has none.
  const bound = [...udpBindings(port), ...udp6Bindings(port)];
  if (bound.length === 0) {
    return {
      result: {
        ...base, verdict: 'fail', summary: `nothing listens on UDP ${port}`,
        cause: `peers send the tunnel's datagrams to UDP ${port}; this node's kernel answers them with ICMP port-unreachable, so no node reaches pods here`,
        fix: ctx.view ? 'restart the agent (its socket is gone)' : 'start the agent',
      },
    };
  }
  const owners = socketOwners(new Set(bound.map((b) => b.inode)));
  const desc = bound.map((b) => {
    const o = owners.get(b.inode);
    return `${b.address.includes(':') ? `[${b.address}]` : b.address}:${port}${o ? ` by pid ${o.pid} (${o.cmd.slice(0, 80)})` : ''}`;
  });
  const foreign = bound.filter((b) => {
    const o = owners.get(b.inode);
    return o && !/felt|cli\.js/.test(o.cmd);
  });
  if (foreign.length > 0) {
    const o = owners.get(foreign[0]!.inode)!;
    return {
      result: {
        ...base, verdict: 'fail', summary: `UDP ${port} is bound by another program: ${desc.join(', ')}`,
        cause: `${o.cmd.split(' ')[0]} (pid ${o.pid}) receives the tunnel datagrams instead of felt${/flanneld/.test(o.cmd) ? ' (flanneld still running next to felt?)' : ''}`,
        fix: `stop pid ${o.pid}, or give the network another Backend.Port`,
      },
      bindAddress: bound[0]!.address,
    };
  }
  return { result: { ...base, verdict: 'ok', summary: `bound: ${desc.join(', ')}${owners.size === 0 ? ' (owner not visible from here)' : ''}` }, bindAddress: bound[0]!.address };
}

/** The underlay interface (by the tunnel socket's address, else by the lease's PublicIP or PublicIPv6). */
function underlayInterface(addresses: Array<string | undefined>): { name: string; address: string } | undefined {
  for (const want of addresses) {
    if (!want || want === '0.0.0.0') continue;
    for (const [name, list] of Object.entries(networkInterfaces())) {
      if (list?.some((a) => (a.family === 'IPv4' || a.family === 'IPv6') && a.address === want)) return { name, address: want };
    }
  }
  return undefined;
}

/** The TUN MTU must fit the underlay: TUN MTU + 28 (+ 48 on a node with an IPv6 underlay, as the agent
 *  computes it) <= the interface's (and every peer route's) MTU: IPv4 routes to peers reached over
 *  IPv4, IPv6 routes (their interface's MTU) to peers reached over IPv6 (`peers6`: every peer lease). */
export function checkUnderlayMtu(ctx: DoctorContext, peers: PeerLease[], bindAddress?: string, peers6: Array<{ publicIPv6?: string }> = []): CheckResult {
  const base = { id: 'underlay-mtu', title: 'underlay MTU' };
  const tunMtu = ifaceMTU(ctx.tunName) ?? ctx.node.mtu;
  if (tunMtu === undefined) return { ...base, verdict: ctx.view ? 'error' : 'skip', summary: 'no TUN MTU to compare (no TUN device)' };
  const iface = underlayInterface([bindAddress, ctx.node.publicIP, ctx.node.publicIPv6]);
  const overhead = ctx.node.publicIPv6 ? ENCAP6_OVERHEAD_BYTES : ENCAP_OVERHEAD_BYTES;
  const problems: string[] = [];
  let desc = '';
  if (iface) {
    const mtu = ifaceMTU(iface.name);
    desc = `${iface.name} MTU ${mtu}, TUN MTU ${tunMtu} + ${overhead}`;
    if (mtu !== undefined && tunMtu + overhead > mtu) problems.push(`${iface.name} carries ${mtu} bytes but full-size tunnel datagrams are ${tunMtu + overhead}`);
  }
  // Routes towards peers may say less (an MTU metric, another interface).
  const small = new Map<string, number>();
  // Peers reached over IPv6 (both ends have PublicIPv6): their IPv4 route is not the tunnel's path.
  const routed = peers.filter((p) => !(ctx.node.publicIPv6 && p.publicIPv6)).slice(0, 512);
  for (const p of routed) {
    let r;
    try {
      r = routeGet(p.publicIP);
    } catch {
      continue;
    }
    if (isRouteError(r)) continue;
    const mtu = r.mtu || ifaceMTU(r.oif) || 0;
    if (mtu && tunMtu + overhead > mtu) small.set(p.publicIP, mtu);
  }
  if (small.size > 0) problems.push(`the route to ${[...small].slice(0, 3).map(([ip, m]) => `${ip} allows ${m}`).join(', ')}${small.size > 3 ? ', ...' : ''}`);
  // Peers reached over IPv6: the interface of the IPv6 route to their PublicIPv6.
  const routed6 = ctx.node.publicIPv6 ? peers6.flatMap((p) => (p.publicIPv6 ? [p.publicIPv6] : [])).slice(0, 512) : [];
  const small6 = new Map<string, string>();
  const routes6 = routed6.length > 0 ? readRoutes6() : [];
  for (const ip of routed6) {
    let dst: bigint;
    try {
      dst = parseIPv6(ip);
    } catch {
      continue;
    }
    const r = lookupRoute6(dst, routes6);
    const mtu = r ? ifaceMTU(r.iface) ?? 0 : 0;
    // A route through the underlay interface itself adds nothing to what is said about that interface.
    if (r && r.iface !== iface?.name && mtu && tunMtu + overhead > mtu) small6.set(ip, `dev ${r.iface} allows ${mtu}`);
  }
  if (small6.size > 0) problems.push(`the IPv6 route to ${[...small6].slice(0, 3).map(([ip, m]) => `${ip} (${m})`).join(', ')}${small6.size > 3 ? ', ...' : ''}`);
  if (problems.length > 0) {
    return {
      ...base, verdict: 'fail', summary: `${desc ? `${desc}: ` : ''}${problems.join('; ')}`,
      cause: `the TUN MTU (${tunMtu}) was computed from a larger underlay MTU than the path has now; full-size pod packets become datagrams too big for it and are lost or fragmented`,
      fix: 'restart the agent so it recomputes the TUN MTU from the interface (FLANNEL_MTU changes: restart the pods too), or restore the underlay MTU',
    };
  }
  if (!iface) return { ...base, verdict: 'warn', summary: `cannot tell which interface carries the tunnel (no local address ${bindAddress ?? ctx.node.publicIP ?? '?'}); TUN MTU ${tunMtu}` };
  const agree = [...(routed.length > 0 ? [`routes to ${routed.length} peers agree`] : []), ...(routed6.length > 0 ? [`IPv6 routes to ${routed6.length} peers agree`] : [])];
  return { ...base, verdict: 'ok', summary: `${desc} = ${tunMtu + overhead} fits${agree.map((a) => `; ${a}`).join('')}` };
}

/** Our own lease: in the store, naming our PublicIP, far from expiry. */
export function checkOwnLease(ctx: DoctorContext): CheckResult {
  const base = { id: 'own-lease', title: 'own lease' };
  // An IPv6-only overlay's lease has only an IPv6 subnet: it is named (and found) by that.
  const own = ctx.node.subnet || ctx.node.subnet6 ? { subnet: ctx.node.subnet, ipv6Subnet: ctx.node.subnet6 } : undefined;
  if (!own) {
    return {
      ...base, verdict: ctx.view || ctx.store ? 'fail' : 'error', summary: 'this node holds no lease (none in the agent, none in subnet.env)',
      cause: 'without a lease no other node routes to this node\'s pods', fix: 'start the agent and read its log (network config, subnet exhaustion)',
    };
  }
  const key = leaseName(own);
  const fromStore = ctx.store?.leases.find((l) => leaseName(l) === key);
  const fromAgent = ctx.view?.leases.find((l) => l.self);
  if (ctx.store && !fromStore) {
    return {
      ...base, verdict: 'fail', summary: `${key} is not in the store (${ctx.store.endpoints})`,
      cause: 'the lease expired or was deleted: other nodes have dropped the route to this node\'s pods',
      fix: ctx.view ? 'the agent re-acquires it when it sees the deletion; if it does not, restart it' : 'start the agent: it takes the subnet back from subnet.env if still free',
    };
  }
  const publicIP = fromStore?.publicIP ?? fromAgent?.publicIP;
  if (ctx.node.publicIP && publicIP && publicIP !== ctx.node.publicIP) {
    return {
      ...base, verdict: 'fail', summary: `${key} names ${publicIP}, but this node is ${ctx.node.publicIP}`,
      cause: 'another node holds our subnet: packets for our pods go there', fix: 'restart the agent: it re-acquires a subnet of its own',
    };
  }
  const expiresAt = fromStore?.expiresAt ?? (fromAgent?.expiresAt ? Date.parse(fromAgent.expiresAt) : undefined);
  const left = expiresAt === undefined ? null : Math.round((expiresAt - Date.now()) / 1000);
  if (left !== null && left < EXPIRING_SECONDS) {
    return {
      ...base, verdict: 'fail', summary: `${key} (${publicIP}) ${left <= 0 ? `expired ${formatDuration(-left)} ago` : `expires in ${formatDuration(left)}`}`,
      cause: 'a healthy agent renews its lease long before expiry (flannel: an hour before); renewals are failing or the agent is stopped',
      fix: 'check the store connection and the agent log for "renewing the lease failed"',
    };
  }
  return { ...base, verdict: 'ok', summary: `${key} (${publicIP ?? '?'}) ${left === null ? 'does not expire' : `expires in ${formatDuration(left)}`}${ctx.store ? ', present in the store' : ''}` };
}

export function checkStore(ctx: DoctorContext): CheckResult {
  const base = { id: 'store', title: 'lease store' };
  const agentStore = ctx.view?.store;
  if (ctx.storeError) {
    return {
      ...base, verdict: 'fail', summary: ctx.storeError,
      cause: 'without the store the agent cannot renew its lease nor learn of nodes that come and go',
      fix: 'check the endpoints, TLS files and credentials (the same flags as felt run), and that etcd runs and is reachable from this node',
    };
  }
  if (agentStore && !agentStore.connected) {
    return {
      ...base, verdict: 'fail', summary: `the agent is disconnected from ${agentStore.backend}${agentStore.lastError ? `: ${agentStore.lastError}` : ''}`,
      cause: 'the agent cannot renew its lease nor learn of nodes that come and go', fix: 'check the store endpoints, credentials and network path from this node',
    };
  }
  const parts: string[] = [];
  if (ctx.store) parts.push(`read ${ctx.store.leases.length} lease${ctx.store.leases.length === 1 ? '' : 's'} from ${ctx.store.endpoints}`);
  if (agentStore) parts.push(`agent connected to ${agentStore.backend}${agentStore.lastRevision ? ` (revision ${agentStore.lastRevision})` : ''}, ${agentStore.errors} error${agentStore.errors === 1 ? '' : 's'}`);
  if (parts.length === 0) return { ...base, verdict: 'error', summary: 'neither the agent nor the store answered (pass --etcd-endpoints)' };
  return { ...base, verdict: 'ok', summary: parts.join('; ') };
}
