// `felt doctor`: checks this node in order and names the cause of what is broken. It reads the local
// agent's /leases (--agent, default the agent's --debug-addr), and etcd directly when asked to or when
// the agent does not answer. Exit code: 0 healthy, 1 a problem found, 2 could not check.
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import type { FlagValues } from '../flags.js';
import { createLogger } from '../log.js';
import { openLeaseStore } from '../lease/open.js';
import { storeSettings } from '../settings.js';
import { agentTarget, fromAgent, oneLine } from '../leases-cmd.js';
import { parseSubnet, type Subnet } from '../net/cidr.js';
import { leaseName } from '../lease/name.js';
import { leaseCarriesIPv6 } from '../lease/backend-data.js';
import type { DoctorContext } from './context.js';
import {
  checkAgent, checkForward, checkIpForward, checkOwnLease, checkRoutes, checkRpFilter, checkStore,
  checkTunDevice, checkTunInterface, checkUdpPort, checkUnderlayMtu, type PeerLease,
} from './local.js';
import { checkPeers, type ProbePeer } from './peers.js';
import { checkIPv6Tunnel } from './ipv6.js';
import { parseSubnet6, type Subnet6 } from '../net/ip6.js';
import { formatReport, reportJSON } from './report.js';
import { exitCodeOf, type CheckResult, type DoctorReport } from './types.js';

/** Why the IPv4 tunnel checks are skipped on an IPv6-only overlay. */
const IPV6_ONLY_NOTE = 'IPv6-only overlay (EnableIPv4 false): IPv4 checks do not apply; the IPv6 tunnel check covers the TUN';

/** flanneld's default endpoints, used when the agent is down and none were given. */
const DEFAULT_ETCD = 'http://127.0.0.1:4001,http://127.0.0.1:2379';

function str(values: FlagValues, name: string): string {
  const v = values[name];
  return typeof v === 'string' ? v.trim() : '';
}

function readyz(agent: string, timeoutMs: number): Promise<boolean> {
  const t = agentTarget(agent);
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: t.socketPath, host: t.host, port: t.port, path: '/readyz', method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

function parseEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!.trim();
  }
  return env;
}

function networkOf(cidr: string | undefined): Subnet | undefined {
  if (!cidr) return undefined;
  try {
    return parseSubnet(cidr);
  } catch {
    return undefined;
  }
}

async function readStore(values: FlagValues, endpoints: string, timeoutMs: number): Promise<NonNullable<DoctorContext['store']>> {
  const settings = storeSettings({ ...values, 'etcd-endpoints': endpoints });
  const store = await openLeaseStore(settings, createLogger('fatal'), { callTimeoutMs: timeoutMs });
  const within = <T>(p: Promise<T>): Promise<T> => {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([p, new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs); })]).finally(() => clearTimeout(timer));
  };
  try {
    const { leases } = await within(store.list());
    const config = await within(store.getNetworkConfig()).catch(() => undefined);
    return { leases, config, endpoints };
  } finally {
    await within(store.close()).catch(() => undefined);
  }
}

export async function gatherContext(values: FlagValues): Promise<DoctorContext> {
  const timeoutMs = Number(values.timeout ?? 3) * 1000;
  const agent = str(values, 'agent') || str(values, 'debug-addr');
  const ctx: DoctorContext = {
    agentLabel: agent || '(none: --debug-addr is off)',
    subnetFile: str(values, 'subnet-file') || '/run/flannel/subnet.env',
    tunName: str(values, 'tun-name') || 'flannel0',
    node: { port: 8285 },
    timeoutMs,
  };
  if (agent) {
    try {
      ctx.agentLabel = agentTarget(agent).label;
      ctx.view = await fromAgent(agent, 5000);
      ctx.ready = await readyz(agent, 5000).catch(() => undefined);
    } catch (err) {
      ctx.agentError = oneLine(err);
    }
  }
  try {
    ctx.subnetEnv = parseEnv(readFileSync(ctx.subnetFile, 'utf8'));
  } catch {
    ctx.subnetEnv = undefined;
  }
  // The store directly: when endpoints are given, or when the agent cannot tell us what it holds.
  const given = str(values, 'etcd-endpoints');
  const kube = ctx.view?.store.backend === 'kube';
  if (given || (!ctx.view && !kube)) {
    const endpoints = given || DEFAULT_ETCD;
    try {
      ctx.store = await readStore(values, endpoints, 5000);
    } catch (err) {
      ctx.storeError = `cannot read the store at ${endpoints}: ${oneLine(err)}`;
    }
  }

  const n = ctx.view?.node;
  if (n) {
    ctx.tunName = n.tunName;
    ctx.node = {
      // Both null on an IPv6-only overlay.
      ...(n.subnet ? { subnet: parseSubnet(n.subnet) } : {}), publicIP: n.publicIP, mtu: n.mtu,
      ...(n.publicIPv6 ? { publicIPv6: n.publicIPv6 } : {}),
      ...(n.network ? { network: parseSubnet(n.network) } : {}), port: n.port,
      ...ipv6Of(n.network6 ?? undefined, n.subnet6 ?? undefined),
    };
  } else {
    const env = ctx.subnetEnv;
    const subnet = networkOf(env?.FLANNEL_SUBNET);
    const six = ipv6Of(env?.FLANNEL_IPV6_NETWORK, env?.FLANNEL_IPV6_SUBNET);
    // An IPv6-only overlay's subnet.env has no FLANNEL_SUBNET: its lease is found by the IPv6 subnet.
    const own = subnet || six.subnet6 ? leaseName({ subnet, ipv6Subnet: six.subnet6 }) : undefined;
    const lease = own === undefined ? undefined : ctx.store?.leases.find((l) => leaseName(l) === own);
    ctx.node = {
      subnet,
      publicIP: lease?.publicIP,
      ...(lease?.publicIPv6 ? { publicIPv6: lease.publicIPv6 } : {}),
      mtu: env?.FLANNEL_MTU ? Number(env.FLANNEL_MTU) : undefined,
      network: networkOf(env?.FLANNEL_NETWORK) ?? ctx.store?.config?.network,
      port: ctx.store?.config?.port ?? 8285,
      ...six,
    };
  }
  return ctx;
}

/** The leases of every other node, with their time left: all of them for the peer probes (IPv6-only
 *  overlay and IPv6-underlay peers included). */
function probePeers(ctx: DoctorContext): ProbePeer[] {
  const { subnet: own, subnet6: own6 } = ctx.node;
  const isOwn = (l: { subnet?: Subnet; subnet6?: Subnet6 }) =>
    l.subnet ? !!own && l.subnet.ip === own.ip && l.subnet.prefixLen === own.prefixLen : !!own6 && !!l.subnet6 && l.subnet6.ip === own6.ip && l.subnet6.prefixLen === own6.prefixLen;
  if (ctx.view) {
    return ctx.view.leases.filter((l) => !l.self && (l.subnet !== null || l.subnet6 !== null))
      .map((l) => ({
        // A stock flannel node's IPv6 subnet (ipv6Carried false) is sent no IPv6: not probed.
        ...(l.subnet !== null ? { subnet: parseSubnet(l.subnet) } : {}), ...(l.subnet6 !== null && l.ipv6Carried !== false ? { subnet6: parseSubnet6(l.subnet6) } : {}),
        publicIP: l.publicIP, ...(l.publicIPv6 ? { publicIPv6: l.publicIPv6 } : {}), expiresInSeconds: l.expiresInSeconds,
      }))
      .filter((l) => !isOwn(l));
  }
  return (ctx.store?.leases ?? []).filter((l) => (l.subnet || l.ipv6Subnet) && !isOwn({ subnet: l.subnet, subnet6: l.ipv6Subnet })).map((l) => ({
    ...(l.subnet ? { subnet: l.subnet } : {}), ...(l.ipv6Subnet && leaseCarriesIPv6(l) ? { subnet6: l.ipv6Subnet } : {}),
    publicIP: l.publicIP, ...(l.publicIPv6 ? { publicIPv6: l.publicIPv6 } : {}),
    expiresInSeconds: l.expiresAt === undefined ? null : Math.round((l.expiresAt - Date.now()) / 1000),
  }));
}

/** The peers of the IPv4 local checks (routes, rp_filter, FORWARD, underlay MTU): an IPv4 subnet and PublicIP. */
function ipv4Peers(all: ProbePeer[]): PeerLease[] {
  return all.flatMap((l) => (l.subnet && l.publicIP !== '0.0.0.0' ? [{ subnet: l.subnet, publicIP: l.publicIP, ...(l.publicIPv6 ? { publicIPv6: l.publicIPv6 } : {}), expiresInSeconds: l.expiresInSeconds }] : []));
}

export async function runChecks(ctx: DoctorContext): Promise<DoctorReport> {
  const allPeers = probePeers(ctx);
  const peers = ipv4Peers(allPeers);
  const checks: CheckResult[] = [];
  const guard = async (id: string, title: string, fn: () => CheckResult | Promise<CheckResult>): Promise<CheckResult> => {
    try {
      return await fn();
    } catch (err) {
      return { id, title, verdict: 'error', summary: `check failed: ${oneLine(err)}` };
    }
  };
  // An IPv6-only overlay (a lease with only an IPv6 subnet): the IPv4 tunnel checks do not apply.
  const ipv6Only = !ctx.node.subnet && ctx.node.subnet6 !== undefined;
  const ipv4 = (id: string, title: string, fn: () => CheckResult | Promise<CheckResult>): Promise<CheckResult> =>
    ipv6Only ? Promise.resolve({ id, title, verdict: 'skip', summary: IPV6_ONLY_NOTE }) : guard(id, title, fn);
  checks.push(await guard('tun-device', '/dev/net/tun', () => checkTunDevice()));
  checks.push(await guard('agent', 'agent', () => checkAgent(ctx)));
  checks.push(await ipv4('tun-interface', 'tun interface', () => checkTunInterface(ctx)));
  let shadowed = new Map<string, string>();
  checks.push(await ipv4('routes', 'routes', () => {
    const r = checkRoutes(ctx, peers);
    shadowed = r.shadowed;
    return r.result;
  }));
  checks.push(await ipv4('ip-forward', 'ip_forward', () => checkIpForward()));
  // Dual-stack nodes only: an IPv4-only node's report is unchanged.
  const ipv6 = await guard('ipv6', 'IPv6 tunnel', () => checkIPv6Tunnel(ctx, allPeers) ?? { id: 'ipv6', title: 'IPv6 tunnel', verdict: 'skip', summary: '' });
  if (ipv6.verdict !== 'skip') checks.push(ipv6);
  checks.push(await ipv4('rp-filter', 'rp_filter', () => checkRpFilter(ctx, peers)));
  checks.push(await ipv4('forward', 'FORWARD chain', () => checkForward(ctx, peers)));
  let bindAddress: string | undefined;
  checks.push(await guard('udp-port', `UDP ${ctx.node.port}`, () => {
    const r = checkUdpPort(ctx);
    bindAddress = r.bindAddress;
    return r.result;
  }));
  checks.push(await guard('underlay-mtu', 'underlay MTU', () => checkUnderlayMtu(ctx, peers, bindAddress, allPeers)));
  checks.push(await guard('own-lease', 'own lease', () => checkOwnLease(ctx)));
  checks.push(await guard('store', 'lease store', () => checkStore(ctx)));
  try {
    checks.push(...(await checkPeers(ctx, allPeers, shadowed)));
  } catch (err) {
    checks.push({ id: 'peers', title: 'peers', verdict: 'error', summary: `check failed: ${oneLine(err)}` });
  }
  return {
    exitCode: exitCodeOf(checks),
    node: { subnet: ctx.node.subnet || ctx.node.subnet6 ? leaseName({ subnet: ctx.node.subnet, ipv6Subnet: ctx.node.subnet6 }) : null, publicIP: ctx.node.publicIP ?? null, agent: ctx.agentLabel },
    checks,
    generatedAt: new Date().toISOString(),
  };
}

/** Runs every check and prints the report; returns the exit code. */
export async function runDoctorCommand(values: FlagValues, out: NodeJS.WritableStream): Promise<number> {
  const ctx = await gatherContext(values);
  const report = await runChecks(ctx);
  out.write(values.json === true ? reportJSON(report) : formatReport(report));
  return report.exitCode;
}

/** Both IPv6 networks (host bits masked), or nothing when either is missing or unparsable. */
function ipv6Of(network6?: string, subnet6?: string): { network6?: Subnet6; subnet6?: Subnet6 } {
  if (!network6 || !subnet6) return {};
  try {
    return { network6: parseSubnet6(network6), subnet6: parseSubnet6(subnet6) };
  } catch {
    return {};
  }
}
