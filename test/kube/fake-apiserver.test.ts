// The fake API server itself: it must answer like the real one for every call felt makes, or the
// KubeLeaseStore tests prove nothing. Checked with raw HTTP, with @kubernetes/client-node's own
// CoreV1Api and Watch (the official client must be able to use it), and as a standalone process
// driven over its control socket (how the end-to-end test runs it).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig, PatchStrategy, Watch, setHeaderOptions } from '@kubernetes/client-node';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeApiControl, FakeApiServer, forbidden, requestAttributes, ruleAllows, strategicMergePatch, type Json, type JsonObject, type PolicyRule } from '../testbed/fake-apiserver.js';
import { repoRoot } from '../testbed/tcp.js';
import { bareNode, until } from './helpers.js';

let api: FakeApiServer;
beforeEach(async () => {
  api = await FakeApiServer.start();
});
afterEach(async () => {
  await api.close();
});

async function http(method: string, path: string, body?: unknown, contentType = 'application/strategic-merge-patch+json'): Promise<{ status: number; json: JsonObject }> {
  const res = await fetch(api.url + path, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': contentType },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as JsonObject };
}

/** Reads a watch stream until `n` events arrived (or the server ends it). */
async function watchEvents(query: string, n: number): Promise<JsonObject[]> {
  const ctl = new AbortController();
  const res = await fetch(`${api.url}/api/v1/nodes?watch=true&${query}`, { signal: ctl.signal });
  expect(res.status).toBe(200);
  const events: JsonObject[] = [];
  const decoder = new TextDecoder();
  let buf = '';
  const reader = res.body!.getReader();
  try {
    while (events.length < n) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        events.push(JSON.parse(buf.slice(0, nl)) as JsonObject);
        buf = buf.slice(nl + 1);
      }
    }
  } finally {
    ctl.abort();
  }
  return events;
}

const rvOf = (o: JsonObject): number => Number((o.metadata as JsonObject).resourceVersion);

describe('fake API server: HTTP behaviour', () => {
  it('GET node, NodeList with a list resourceVersion, 404 as a Status object', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    api.addNode(bareNode('n2', '10.244.2.0/24'));
    const one = await http('GET', '/api/v1/nodes/n1');
    expect(one.status).toBe(200);
    expect(one.json).toMatchObject({ kind: 'Node', apiVersion: 'v1', metadata: { name: 'n1' }, spec: { podCIDR: '10.244.1.0/24' } });
    const list = await http('GET', '/api/v1/nodes');
    expect(list.json.kind).toBe('NodeList');
    expect((list.json.metadata as JsonObject).resourceVersion).toBe(api.resourceVersion());
    const items = list.json.items as JsonObject[];
    expect(items.map((i) => (i.metadata as JsonObject).name)).toEqual(['n1', 'n2']);
    expect(items[0]!.kind).toBeUndefined(); // list items carry no kind, as from the real server
    const missing = await http('GET', '/api/v1/nodes/ghost');
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'nodes "ghost" not found', reason: 'NotFound', details: { name: 'ghost', kind: 'nodes' }, code: 404,
    });
    expect((await http('GET', '/api/v1/namespaces')).status).toBe(404);
    expect((await http('DELETE', '/api/v1/nodes/n1')).status).toBe(405);
  });

  it('resourceVersions only grow; a patch that changes nothing keeps the resourceVersion', async () => {
    const a = api.addNode(bareNode('n1', '10.244.1.0/24'));
    const patch = { metadata: { annotations: { x: '1' } } };
    const p1 = await http('PATCH', '/api/v1/nodes/n1/status', patch);
    expect(rvOf(p1.json)).toBeGreaterThan(rvOf(a));
    const p2 = await http('PATCH', '/api/v1/nodes/n1/status', patch);
    expect(rvOf(p2.json)).toBe(rvOf(p1.json));
    expect(api.patches.map((p) => p.changed)).toEqual([true, false]);
    api.updateNode('n1', { metadata: { labels: { y: '2' } } });
    expect(Number(api.resourceVersion())).toBeGreaterThan(rvOf(p1.json));
  });

  it('strategic merge: conditions merged by type, $patch delete, primitive set lists, null deletes', () => {
    const node: Json = {
      metadata: { annotations: { a: '1', b: '2' }, finalizers: ['x'] },
      spec: { podCIDRs: ['10.244.1.0/24'] },
      status: { conditions: [{ type: 'Ready', status: 'True' }, { type: 'MemoryPressure', status: 'False' }] },
    };
    const out = strategicMergePatch(node, {
      metadata: { annotations: { a: null, c: '3' }, finalizers: ['y'] },
      spec: { podCIDRs: ['fd00::/64'] },
      status: { conditions: [{ type: 'NetworkUnavailable', status: 'False' }, { type: 'Ready', status: 'False' }, { type: 'MemoryPressure', $patch: 'delete' }] },
    }) as JsonObject;
    expect(out).toEqual({
      metadata: { annotations: { b: '2', c: '3' }, finalizers: ['x', 'y'] },
      spec: { podCIDRs: ['10.244.1.0/24', 'fd00::/64'] },
      status: { conditions: [{ type: 'Ready', status: 'False' }, { type: 'NetworkUnavailable', status: 'False' }] },
    });
    // A list without a merge key (images) is replaced; $patch: replace on a map replaces it.
    expect(strategicMergePatch({ status: { images: [{ names: ['a'] }] } }, { status: { images: [{ names: ['b'] }] } })).toEqual({ status: { images: [{ names: ['b'] }] } });
    expect(strategicMergePatch({ metadata: { labels: { a: '1' } } }, { metadata: { labels: { $patch: 'replace', b: '2' } } })).toEqual({ metadata: { labels: { b: '2' } } });
  });

  it('PATCH status cannot change spec; PATCH on the node cannot change status; bad input gets 4xx Status', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    const viaStatus = await http('PATCH', '/api/v1/nodes/n1/status', { spec: { podCIDR: '10.9.9.0/24' }, status: { phase: 'x' } });
    expect((viaStatus.json.spec as JsonObject).podCIDR).toBe('10.244.1.0/24');
    expect((viaStatus.json.status as JsonObject).phase).toBe('x');
    const viaMain = await http('PATCH', '/api/v1/nodes/n1', { spec: { unschedulable: true }, status: { phase: 'y' } }, 'application/merge-patch+json');
    expect((viaMain.json.spec as JsonObject).unschedulable).toBe(true);
    expect((viaMain.json.status as JsonObject).phase).toBe('x');
    expect((await http('PATCH', '/api/v1/nodes/n1/status', { a: 1 }, 'application/json-patch+json')).status).toBe(415);
    expect((await http('PATCH', '/api/v1/nodes/n1/status', { metadata: { annotations: { a: 5 } } })).status).toBe(400);
    expect((await http('PATCH', '/api/v1/nodes/n1/status', { status: { conditions: [{ status: 'True' }] } })).json.message).toMatch(/merge key: type/);
    const conflict = await http('PATCH', '/api/v1/nodes/n1/status', { metadata: { resourceVersion: '1', annotations: { a: 'b' } } });
    expect(conflict.status).toBe(409);
    expect(conflict.json.reason).toBe('Conflict');
    expect((await http('PATCH', '/api/v1/nodes/ghost/status', {})).status).toBe(404);
  });

  it('watch: synthetic ADDED without a resourceVersion; history after N; 410 Expired as an ERROR event', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    const rv = api.resourceVersion();
    api.addNode(bareNode('n2', '10.244.2.0/24'));
    api.updateNode('n1', { metadata: { labels: { a: 'b' } } });
    api.deleteNode('n2');

    const initial = await watchEvents('', 1);
    expect(initial.map((e) => e.type)).toEqual(['ADDED']);
    expect((initial[0]!.object as JsonObject).kind).toBe('Node');

    const fromRv = await watchEvents(`resourceVersion=${rv}`, 3);
    expect(fromRv.map((e) => `${e.type} ${((e.object as JsonObject).metadata as JsonObject).name}`)).toEqual(['ADDED n2', 'MODIFIED n1', 'DELETED n2']);
    expect(rvOf(fromRv[2]!.object as JsonObject)).toBe(Number(api.resourceVersion()));

    api.compact();
    const expired = await watchEvents(`resourceVersion=${rv}`, 2);
    expect(expired).toEqual([{ type: 'ERROR', object: expect.objectContaining({ kind: 'Status', code: 410, reason: 'Expired' }) }]);
  });

  it('watch: bookmarks only when asked for; timeoutSeconds ends the stream', async () => {
    await api.close();
    api = await FakeApiServer.start({ bookmarkIntervalMs: 50 });
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    const rv = api.resourceVersion();
    const withBookmarks = await watchEvents(`resourceVersion=${rv}&allowWatchBookmarks=true`, 1);
    expect(withBookmarks[0]).toEqual({ type: 'BOOKMARK', object: { kind: 'Node', apiVersion: 'v1', metadata: { resourceVersion: rv } } });
    const ended = await watchEvents(`resourceVersion=${rv}&timeoutSeconds=1`, 1);
    expect(ended).toEqual([]);
  });
});

describe('fake API server: the official client can use it', () => {
  function client(): { core: CoreV1Api; kc: KubeConfig } {
    const kc = new KubeConfig();
    kc.loadFromClusterAndUser({ name: 'fake', server: api.url, skipTLSVerify: true }, { name: 'u' });
    return { core: kc.makeApiClient(CoreV1Api), kc };
  }

  it('readNode, listNode, patchNodeStatus (strategic merge), readNamespacedPod, ApiException 404', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    api.addPod({ metadata: { name: 'p', namespace: 'kube-flannel' }, spec: { nodeName: 'n1' } });
    const { core } = client();
    expect((await core.readNode({ name: 'n1' })).spec?.podCIDR).toBe('10.244.1.0/24');
    const list = await core.listNode();
    expect(list.metadata?.resourceVersion).toBe(api.resourceVersion());
    expect(list.items.map((n) => n.metadata?.name)).toEqual(['n1']);
    const patched = await core.patchNodeStatus(
      { name: 'n1', body: { status: { conditions: [{ type: 'NetworkUnavailable', status: 'False', reason: 'FeltIsUp' }] } } },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
    expect(patched.status?.conditions?.map((c) => c.type)).toEqual(['Ready', 'NetworkUnavailable']);
    expect(api.patches[0]!.contentType).toBe('application/strategic-merge-patch+json');
    expect((await core.readNamespacedPod({ name: 'p', namespace: 'kube-flannel' })).spec?.nodeName).toBe('n1');
    await expect(core.readNode({ name: 'ghost' })).rejects.toMatchObject({ code: 404 });
  });

  it('Watch delivers the stream as the client library parses it', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    const rv = api.resourceVersion();
    const { kc } = client();
    const seen: string[] = [];
    const ctl = await new Watch(kc).watch('/api/v1/nodes', { resourceVersion: rv, allowWatchBookmarks: true }, (type, obj) => seen.push(`${type} ${obj.metadata?.name ?? ''}`), () => undefined);
    try {
      await until('the stream', () => api.watchCount() === 1);
      api.addNode(bareNode('n2', '10.244.2.0/24'));
      api.sendBookmarks();
      await until('both events', () => seen.length === 2);
      expect(seen).toEqual(['ADDED n2', 'BOOKMARK ']);
    } finally {
      ctl.abort();
    }
  });
});

describe('fake API server: standalone process (needs npm run build)', () => {
  let child: ChildProcess | undefined;
  let dir = '';
  afterEach(() => {
    child?.kill('SIGKILL');
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves the API on --listen and is driven over --control', async () => {
    const entry = join(repoRoot(), 'dist', 'test', 'testbed', 'fake-apiserver.js');
    if (!existsSync(entry)) throw new Error(`${entry} missing: run "npm run build" first`);
    dir = mkdtempSync(join(tmpdir(), 'felt-fakeapi-'));
    const sock = join(dir, 'control.sock');
    const proc = spawn(process.execPath, [entry, '--listen', '127.0.0.1:0', '--control', `unix:${sock}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    const ready = await new Promise<{ listening: string }>((resolve, reject) => {
      let out = '';
      proc.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]!) as { listening: string });
      });
      proc.once('exit', (code) => reject(new Error(`fake-apiserver exited ${code}`)));
    });
    const ctl = new FakeApiControl(sock);
    await ctl.addNode(bareNode('n1', '10.244.1.0/24'));
    const res = await fetch(`${ready.listening}/api/v1/nodes/n1/status`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/strategic-merge-patch+json' },
      body: JSON.stringify({ metadata: { annotations: { k: 'v' } } }),
    });
    expect(res.status).toBe(200);
    expect(((await ctl.getNode('n1'))!.metadata as JsonObject).annotations).toEqual({ k: 'v' });
    expect((await ctl.patches()).map((p) => p.path)).toEqual(['/api/v1/nodes/n1/status']);
    await expect(ctl.deleteNode('ghost')).rejects.toThrow(/nodes "ghost" not found/);
    proc.kill('SIGTERM');
    const code = await new Promise((r) => proc.once('exit', r));
    expect(code).toBe(0);
    expect(existsSync(sock)).toBe(false);
  });
});

describe('fake API server: RBAC authorization as kube-apiserver does it', () => {
  it('derives verb, resource and subresource from the request as RequestInfo does', () => {
    expect(requestAttributes('GET', '/api/v1/nodes')).toEqual({ verb: 'list', apiGroup: '', resource: 'nodes' });
    expect(requestAttributes('GET', '/api/v1/nodes?watch=true&resourceVersion=5')).toEqual({ verb: 'watch', apiGroup: '', resource: 'nodes' });
    expect(requestAttributes('GET', '/api/v1/nodes/n1')).toEqual({ verb: 'get', apiGroup: '', resource: 'nodes', name: 'n1' });
    expect(requestAttributes('PATCH', '/api/v1/nodes/n1/status')).toEqual({ verb: 'patch', apiGroup: '', resource: 'nodes', subresource: 'status', name: 'n1' });
    expect(requestAttributes('GET', '/api/v1/namespaces/kube-felt/pods/p')).toEqual({ verb: 'get', apiGroup: '', resource: 'pods', namespace: 'kube-felt', name: 'p' });
    expect(requestAttributes('DELETE', '/apis/apps/v1/namespaces/x/daemonsets')).toEqual({ verb: 'deletecollection', apiGroup: 'apps', resource: 'daemonsets', namespace: 'x' });
    expect(requestAttributes('GET', '/version')).toEqual({ verb: 'get', path: '/version' });
  });

  it('matches rules on group, resource/subresource, verb and resourceNames', () => {
    const nodes: PolicyRule = { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'] };
    const status: PolicyRule = { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'] };
    expect(ruleAllows(nodes, requestAttributes('GET', '/api/v1/nodes/n1'))).toBe(true);
    expect(ruleAllows(nodes, requestAttributes('GET', '/api/v1/nodes/n1/status'))).toBe(false);
    expect(ruleAllows(nodes, requestAttributes('PATCH', '/api/v1/nodes/n1'))).toBe(false);
    expect(ruleAllows(status, requestAttributes('PATCH', '/api/v1/nodes/n1/status'))).toBe(true);
    expect(ruleAllows(status, requestAttributes('PATCH', '/api/v1/nodes/n1'))).toBe(false);
    expect(ruleAllows({ ...nodes, apiGroups: ['apps'] }, requestAttributes('GET', '/api/v1/nodes'))).toBe(false);
    expect(ruleAllows({ apiGroups: ['*'], resources: ['*'], verbs: ['*'] }, requestAttributes('DELETE', '/api/v1/nodes/n1/status'))).toBe(true);
    expect(ruleAllows({ ...nodes, resourceNames: ['n1'] }, requestAttributes('GET', '/api/v1/nodes/n1'))).toBe(true);
    expect(ruleAllows({ ...nodes, resourceNames: ['n1'] }, requestAttributes('GET', '/api/v1/nodes'))).toBe(false);
    expect(ruleAllows({ verbs: ['get'], nonResourceURLs: ['/healthz*'] }, requestAttributes('GET', '/healthz/ready'))).toBe(true);
  });

  it('denies with 403 and the apiserver\'s Status (message, reason, details), and logs every decision', async () => {
    const fake = await FakeApiServer.start({ token: 't', rbac: { user: 'system:serviceaccount:kube-felt:felt', rules: [{ apiGroups: [''], resources: ['nodes'], verbs: ['list'] }] } });
    try {
      const call = async (method: string, path: string, body?: string) => {
        const r = await fetch(`${fake.url}${path}`, { method, body, headers: { Authorization: 'Bearer t', 'Content-Type': 'application/merge-patch+json' } });
        return { status: r.status, body: (await r.json()) as JsonObject };
      };
      expect((await call('GET', '/api/v1/nodes')).status).toBe(200);
      expect(await call('PATCH', '/api/v1/nodes/n1/status', '{}')).toEqual({
        status: 403,
        body: {
          kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Forbidden', code: 403,
          message: 'nodes "n1" is forbidden: User "system:serviceaccount:kube-felt:felt" cannot patch resource "nodes/status" in API group "" at the cluster scope',
          details: { name: 'n1', kind: 'nodes' },
        },
      });
      expect(fake.authz.map((d) => [d.verb, d.allowed, d.rule])).toEqual([['list', true, 0], ['patch', false, undefined]]);
      expect(forbidden('u', { verb: 'get', path: '/version' }).message).toBe('forbidden: User "u" cannot get path "/version"');
    } finally {
      await fake.close();
    }
  });
});
