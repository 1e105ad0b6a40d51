// Starts a felt agent (dist/src/cli.js) inside a testbed node namespace and talks to its debug
// server over a unix socket: the test process lives in the root namespace and cannot reach
// namespace addresses. Logs go to test-artifacts/<prefix>/ and are kept after the run.
import { createWriteStream, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { formatSubnet6, parseSubnet6 } from '../../src/net/ip6.js';
import { sleep } from './netns.js';
import { repoRoot } from './tcp.js';
import type { Testbed, TestbedNode } from './testbed.js';

export type Engine = 'js' | 'native';

export interface AgentOptions {
  engine: Engine;
  extraArgs?: string[];
  /** Extra environment for the agent (e.g. FELT_LEASE_TTL_SECONDS). */
  env?: NodeJS.ProcessEnv;
  /** How long to wait for /readyz before giving up (default 60 s: catches hangs only). */
  readyTimeoutMs?: number;
  /** Build the node's pods once the lease is known (default: the testbed's `pods` option). */
  pods?: boolean;
}

export interface HttpResult {
  status: number;
  body: string;
}

export interface AgentHandle {
  readonly node: TestbedNode;
  readonly pid: number;
  /**
   * The lease subnet from subnet.env, as a network: FLANNEL_SUBNET 10.244.5.1/24 -> "10.244.5.0/24"; on an
   * IPv6-only overlay (no FLANNEL_SUBNET) the IPv6 one, as subnet6.
   */
  readonly subnet: string;
  /** The IPv6 lease subnet from subnet.env, as a network ("fc00:0:0:5::/64"), on a dual-stack node. */
  readonly subnet6?: string;
  /** Every key of subnet.env. */
  readonly env: Record<string, string>;
  readonly socketPath: string;
  readonly logFile: string;
  /** GET over the debug socket; throws on a non-2xx status or bad JSON. */
  fetchJSON<T = any>(path: string): Promise<T>;
  /** GET over the debug socket, any status. */
  fetchText(path: string): Promise<HttpResult>;
  /** Sends the signal and waits for the process to exit (SIGKILL after 20 s). */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill9(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True while the process runs. */
  running(): boolean;
  /** The log file's content so far. */
  logs(): string;
}

let agentSerial = 0;

/** The compiled agent entry point; the tests need `npm run build` first. */
export function agentEntry(): string {
  return join(repoRoot(), 'dist', 'src', 'cli.js');
}

/** GET `path` from an HTTP server listening on a unix socket. */
export function httpGetUnix(socketPath: string, path: string, timeoutMs = 10_000): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET unix:${socketPath}${path}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Parses subnet.env (KEY=VALUE lines). */
export function parseSubnetEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) env[m[1]!] = m[2]!.trim();
  }
  return env;
}

/** "10.244.5.1/24" -> "10.244.5.0/24" (the testbed deals in /24 leases). */
function networkOf(cidr: string): string {
  const m = /^(\d+\.\d+\.\d+)\.\d+\/24$/.exec(cidr);
  if (!m) throw new Error(`unexpected FLANNEL_SUBNET "${cidr}" (expected a /24)`);
  return `${m[1]}.0/24`;
}

/**
 * Starts `felt run` in the node's namespace and waits until /readyz answers 200. The agent's
 * state (subnet.env, debug socket) lives in `<testbed workDir>/<node>/` and survives a restart,
 * so calling this again for the same node is a restart. The testbed stops it on destroy().
 */
export async function startAgent(testbed: Testbed, node: TestbedNode, opts: AgentOptions): Promise<AgentHandle> {
  const entry = agentEntry();
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run "npm run build" first`);
  const stateDir = join(testbed.workDir, node.name);
  mkdirSync(stateDir, { recursive: true });
  const subnetFile = join(stateDir, 'subnet.env');
  const socketPath = join(stateDir, 'felt.sock');
  const artifacts = join(repoRoot(), 'test-artifacts', testbed.prefix);
  mkdirSync(artifacts, { recursive: true });
  const logFile = join(artifacts, `${node.name}-agent-${++agentSerial}-${opts.engine}.log`);

  const argv = [
    process.execPath,
    entry,
    'run',
    // Without etcd in the testbed (e.g. --kube-subnet-mgr runs), extraArgs say where leases live.
    ...(testbed.etcdServer ? ['--etcd-endpoints', testbed.etcdClientURL, '--etcd-prefix', testbed.etcdPrefix] : []),
    '--iface', 'eth0',
    '--engine', opts.engine,
    '--subnet-file', subnetFile,
    '--debug-addr', `unix:${socketPath}`,
    ...(opts.extraArgs ?? []),
  ];
  const log = createWriteStream(logFile);
  log.write(`# ${new Date().toISOString()} ip netns exec ${node.ns.name} ${argv.join(' ')}\n`);
  const child: ChildProcess = node.ns.spawn(argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
    cwd: repoRoot(),
  });
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      // Let the pipes drain into the log before closing it.
      setTimeout(() => log.end(`# exited: ${signal ?? `code ${code}`}\n`), 50);
      resolve(exited);
    });
  });
  const logs = (): string => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (!exited) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exitPromise;
      clearTimeout(timer);
    }
    return exited!;
  };
  testbed.onDestroy(() => stop('SIGTERM').then(() => undefined));

  // Wait for readiness: the process must stay up and /readyz must answer 200.
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 60_000);
  let last = 'no answer yet';
  for (;;) {
    if (exited) {
      throw new Error(`agent on ${node.name} exited before ready (${exited.signal ?? `code ${exited.code}`}); log ${logFile}:\n${tail(logs())}`);
    }
    if (Date.now() > deadline) {
      await stop('SIGKILL');
      throw new Error(`agent on ${node.name} not ready after ${opts.readyTimeoutMs ?? 60_000} ms (${last}); log ${logFile}:\n${tail(logs())}`);
    }
    if (existsSync(socketPath)) {
      try {
        const r = await httpGetUnix(socketPath, '/readyz', 2_000);
        if (r.status === 200) break;
        last = `/readyz ${r.status}: ${r.body.trim().slice(0, 200)}`;
      } catch (err) {
        last = (err as Error).message;
      }
    }
    await sleep(100);
  }

  const env = parseSubnetEnv(await readFile(subnetFile, 'utf8').catch((err: Error) => {
    throw new Error(`agent on ${node.name} is ready but ${subnetFile} is unreadable: ${err.message}`);
  }));
  if (!env.FLANNEL_SUBNET && !env.FLANNEL_IPV6_SUBNET) throw new Error(`${subnetFile} has neither FLANNEL_SUBNET nor FLANNEL_IPV6_SUBNET:\n${JSON.stringify(env)}`);
  const subnet4 = env.FLANNEL_SUBNET ? networkOf(env.FLANNEL_SUBNET) : undefined;
  const subnet6 = env.FLANNEL_IPV6_SUBNET ? formatSubnet6(parseSubnet6(env.FLANNEL_IPV6_SUBNET)) : undefined;
  const subnet = subnet4 ?? subnet6!;

  if (opts.pods ?? testbed.options.pods) await testbed.ensurePods(node, subnet4, undefined, subnet6);

  const fetchText = (path: string) => httpGetUnix(socketPath, path);
  return {
    node,
    pid: child.pid!,
    subnet,
    subnet6,
    env,
    socketPath,
    logFile,
    fetchText,
    async fetchJSON<T>(path: string): Promise<T> {
      const r = await fetchText(path);
      if (r.status < 200 || r.status >= 300) throw new Error(`GET ${path} on ${node.name}: ${r.status} ${r.body.slice(0, 300)}`);
      try {
        return JSON.parse(r.body) as T;
      } catch {
        throw new Error(`GET ${path} on ${node.name}: not JSON: ${r.body.slice(0, 300)}`);
      }
    },
    stop,
    kill9: () => stop('SIGKILL'),
    running: () => !exited,
    logs,
  };
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
