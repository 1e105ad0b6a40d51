// Start-up errors, end to end, in both stores (needs root, network namespaces, the etcd binary,
// unshare and `npm run build`): each case runs `felt run` in its own testbed node until it exits,
// and expects one clear "felt: error:" line, exit code 1, no stack trace, no TUN device and no
// lease left behind.
//
// Errors retrying cannot fix (a bad network config in etcd or net-conf.json, a 401 or 403 from the
// API server) run with --startup-timeout 86400: an agent that retried them instead of failing at
// once would be killed by runAgentToExit's timeout and fail the case, and a "retrying" log line
// fails it too.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentEntry } from '../testbed/agent.js';
import { HUB_IP, Testbed, type TestbedNode } from '../testbed/testbed.js';
import { FAKE_API_ENTRY, nodeObject, startFakeApi } from '../support/kube-api.js';
import { runAgentToExit, tunDevices } from './fixtures/underlay.js';
import { agentArgs } from './helpers.js';

interface StartupCase {
  name: string;
  args: (tb: Testbed, node: TestbedNode) => string[];
  error: RegExp;
  /** Shown when the error line does not match: what the line must tell the operator. */
  why?: string;
  hideTun?: boolean;
  /** Retrying cannot fix it: the agent must not retry (runs with --startup-timeout 86400). */
  permanent?: boolean;
}

const NEVER = ['--startup-timeout', '86400'];
const TOKEN_API_PORT = 6443;
const FORBIDDING_API_PORT = 6444;

const CONFIGS: Record<string, string> = {
  '/felt-banana': JSON.stringify({ Network: 'banana', Backend: { Type: 'udp' } }),
  '/felt-vxlan': JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }),
  '/felt-notjson': '{"Network": "10.244.0.0/16", ',
};

/** Kubernetes mode against the API server on `port`, with net-conf.json `netConf` in the work dir. */
function kubeArgs(tb: Testbed, n: TestbedNode, port: number, netConf: string): string[] {
  return agentArgs(tb, n, 'js', ['--kube-subnet-mgr', '--kube-api-url', `http://${HUB_IP}:${port}`, '--net-config-path', join(tb.workDir, netConf), ...NEVER]);
}

const CASES: StartupCase[] = [
  { name: 'an unknown flag', args: (tb, n) => agentArgs(tb, n, 'js', ['--no-such-flag']), error: /unknown flag --no-such-flag/ },
  { name: 'a flag value out of range', args: (tb, n) => agentArgs(tb, n, 'js', ['--subnet-lease-renew-margin', '0']), error: /--subnet-lease-renew-margin: 0 is outside 1\.\.1439/ },
  { name: 'an unknown engine', args: (tb, n) => agentArgs(tb, n, 'js', ['--engine', 'warp']), error: /--engine: must be one of .*"warp"/ },
  { name: 'an interface that does not exist', args: (tb, n) => agentArgs(tb, n, 'js', [], { iface: 'nope0' }), error: /nope0/ },
  {
    name: 'unreachable etcd (--startup-timeout 3)',
    args: (tb, n) => agentArgs(tb, n, 'js', ['--etcd-endpoints', `http://${HUB_IP}:1`, '--startup-timeout', '3']),
    // The line must say why: which endpoint, and that it refused the connection.
    error: /could not read the network config: .*(ECONNREFUSED|refused|192\.168\.77\.1:1)/,
    why: 'the error line must name the cause (connection refused / the endpoint), not only etcd3\'s "circuit breaker is open"',
  },
  { name: 'etcd: network config with Network "banana"', args: (tb, n) => agentArgs(tb, n, 'js', NEVER, { prefix: '/felt-banana' }), error: /Network.*banana/, permanent: true },
  { name: 'etcd: network config with Backend vxlan', args: (tb, n) => agentArgs(tb, n, 'js', NEVER, { prefix: '/felt-vxlan' }), error: /Backend\.Type "vxlan" is not supported/, permanent: true },
  { name: 'etcd: network config that is not JSON', args: (tb, n) => agentArgs(tb, n, 'js', NEVER, { prefix: '/felt-notjson' }), error: /not valid JSON/, permanent: true },
  { name: 'etcd: no network config at all (--startup-timeout 3)', args: (tb, n) => agentArgs(tb, n, 'js', ['--startup-timeout', '3'], { prefix: '/felt-empty' }), error: /network config not found at \/felt-empty\/config/ },
  { name: 'kube: net-conf.json that is not JSON', args: (tb, n) => kubeArgs(tb, n, TOKEN_API_PORT, 'notjson.json'), error: /notjson\.json: network config is not valid JSON/, permanent: true },
  { name: 'kube: net-conf.json with Backend vxlan', args: (tb, n) => kubeArgs(tb, n, TOKEN_API_PORT, 'vxlan.json'), error: /vxlan\.json: .*Backend\.Type "vxlan" is not supported/, permanent: true },
  { name: 'kube: the API server answers 401 (no credentials)', args: (tb, n) => kubeArgs(tb, n, TOKEN_API_PORT + 10, 'good.json'), error: /401 Unauthorized.*check the credentials/, permanent: true },
  { name: 'kube: the API server answers 403 (RBAC denies)', args: (tb, n) => kubeArgs(tb, n, FORBIDDING_API_PORT, 'good.json'), error: /403 Forbidden.*check the ClusterRole/, permanent: true },
  { name: '/dev/net/tun missing (hidden in a private mount namespace)', args: (tb, n) => agentArgs(tb, n, 'js', []), error: /\/dev\/net\/tun is missing/, hideTun: true },
];

/**
 * An API server whose RBAC denies everything: every request gets the Status object kube-apiserver
 * sends for a forbidden request. (The fake API server checks a token, not roles.)
 */
async function startForbiddingApi(tb: Testbed, port: number): Promise<void> {
  const script = `
    const status = (req) => JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'nodes is forbidden: User "system:serviceaccount:kube-flannel:flannel" cannot ' + req.method.toLowerCase() + ' resource "nodes" in API group "" at the cluster scope',
      reason: 'Forbidden', details: { kind: 'nodes' }, code: 403 });
    require('node:http').createServer((req, res) => {
      req.resume();
      res.writeHead(403, { 'Content-Type': 'application/json' }).end(status(req));
    }).listen(${port}, '${HUB_IP}', () => console.log('listening'));`;
  const child = tb.hub.spawn([process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  tb.onDestroy(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the forbidding API server exited (${code})`)));
  });
}

describe('start-up errors give one clear line, a non-zero exit and no half-made device; permanent ones fail at once (root, netns, etcd, unshare)', () => {
  let tb: Testbed;
  beforeAll(async () => {
    for (const entry of [agentEntry(), FAKE_API_ENTRY]) if (!existsSync(entry)) throw new Error(`${entry} missing: run "npm run build" first`);
    tb = await Testbed.create({ nodes: CASES.length, etcd: true });
    for (const [prefix, value] of Object.entries(CONFIGS)) await tb.etcdClient.put(`${prefix}/config`).value(value);
    writeFileSync(join(tb.workDir, 'good.json'), JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } }));
    writeFileSync(join(tb.workDir, 'vxlan.json'), CONFIGS['/felt-vxlan']!);
    writeFileSync(join(tb.workDir, 'notjson.json'), CONFIGS['/felt-notjson']!);
    // The token-less agents get 401 from this one; the net-conf.json cases reach it without a token.
    const open = await startFakeApi(tb, TOKEN_API_PORT);
    await startFakeApi(tb, TOKEN_API_PORT + 10, ['--token', 'only-the-right-one']);
    for (const n of tb.nodes) await open.ctl.addNode(nodeObject(n));
    await startForbiddingApi(tb, FORBIDDING_API_PORT);
  });
  afterAll(async () => {
    await tb?.destroy();
  });

  // Each case has its own node namespace, so they run side by side (some wait out --startup-timeout).
  describe.concurrent('each case', () => {
    for (const [i, c] of CASES.entries()) {
      it(c.name, async () => {
        const node = tb.node(i + 1);
        const r = await runAgentToExit(node.ns, c.args(tb, node), { hideTun: c.hideTun, env: { NODE_NAME: node.name } });
        expect(r.signal, `the agent did not exit by itself (killed after the timeout); stderr:\n${r.stderr}`).toBeNull();
        expect(r.code, `exit code; stderr:\n${r.stderr}`).toBe(1);
        expect(r.errorLines, `exactly one "felt: error:" line; stderr:\n${r.stderr}`).toHaveLength(1);
        expect(r.errorLines[0], c.why).toMatch(c.error);
        expect(r.stderr, 'no stack trace').not.toMatch(/^\s+at /m);
        if (c.permanent) expect(r.stderr, 'an error retrying cannot fix is not retried').not.toMatch(/retrying/);
        expect(await tunDevices(node.ns), 'no TUN device left behind').toEqual([]);
        // Nothing half-made in etcd either: no lease names this node.
        const all = await tb.etcdClient.getAll().prefix('/').strings();
        expect(Object.entries(all).filter(([k, v]) => k.includes('/subnets/') && v.includes(node.underlayIP))).toEqual([]);
      });
    }
  });
});
