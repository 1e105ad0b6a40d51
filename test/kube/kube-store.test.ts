// KubeLeaseStore against the fake API server (in process, real HTTP on 127.0.0.1): node name
// discovery, podCIDR(s), annotations through nodes/status, the watch (events, 410 relist,
// reconnect, bookmarks, resync) and the NetworkUnavailable condition.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { KubeLeaseStore, kubeAnnotations, type KubeLeaseStoreOptions } from '../../src/lease/kube/store.js';
import { PermanentError, type Lease, type LeaseUpdate, type Watcher } from '../../src/lease/types.js';
import { formatSubnet } from '../../src/net/cidr.js';
import { FakeApiServer, type JsonObject } from '../testbed/fake-apiserver.js';
import { FAST_TIMING, PREFIX, bareNode, kubeStore, managedNode, netConf, until } from './helpers.js';
import { within } from '../support/wait.js';

let api: FakeApiServer;
let conf: ReturnType<typeof netConf>;
const stores: KubeLeaseStore[] = [];
const watchers: Watcher[] = [];

function store(extra: Partial<KubeLeaseStoreOptions> = {}): KubeLeaseStore {
  // This suite checks the NetworkUnavailable condition too.
  return kubeStore(api, conf.path, stores, { setNodeNetworkUnavailable: true, ...extra });
}

function annotations(name: string): Record<string, string> {
  return ((api.getNode(name)!.metadata as JsonObject).annotations ?? {}) as Record<string, string>;
}

/** Starts a watch and records every update. */
function watchAll(s: KubeLeaseStore): { updates: LeaseUpdate[]; watcher: Watcher } {
  const updates: LeaseUpdate[] = [];
  const watcher = s.watch((u) => updates.push(u));
  watchers.push(watcher);
  return { updates, watcher };
}

const subnets = (leases: Lease[]): string[] => leases.map((l) => formatSubnet(l.subnet!)).sort();
const events = (updates: LeaseUpdate[]) =>
  updates.flatMap((u) => (u.kind === 'events' ? u.events.map((e) => `${e.type} ${formatSubnet(e.lease.subnet!)} ${e.lease.publicIP}`) : []));

beforeAll(() => {
  conf = netConf();
});
afterAll(() => conf.cleanup());

beforeEach(async () => {
  api = await FakeApiServer.start({ bookmarkIntervalMs: 60_000 });
});

afterEach(async () => {
  for (const w of watchers.splice(0)) await w.stop();
  for (const s of stores.splice(0)) await s.close();
  await api.close();
});

describe('annotation prefix (flannel rules)', () => {
  it('appends "/" to a bare domain and "-" after a name part', () => {
    expect(kubeAnnotations('flannel.alpha.coreos.com').publicIP).toBe('flannel.alpha.coreos.com/public-ip');
    expect(kubeAnnotations('example.com/').subnetKubeManaged).toBe('example.com/kube-subnet-manager');
    expect(kubeAnnotations('example.com/felt').backendData).toBe('example.com/felt-backend-data');
    expect(kubeAnnotations('example.com/felt-').publicIPOverwrite).toBe('example.com/felt-public-ip-overwrite');
  });
  it('rejects two slashes and invalid domains clearly', () => {
    expect(() => kubeAnnotations('a.com/b/c')).toThrow(/at most one "\/"/);
    expect(() => kubeAnnotations('Not_A_Domain')).toThrow(/not a DNS subdomain/);
  });
});

describe('configuration', () => {
  it('reads net-conf.json without applying SubnetLen defaults', async () => {
    const cfg = await store().getNetworkConfig();
    expect(formatSubnet(cfg.network!)).toBe('10.244.0.0/16');
    expect(cfg.backendType).toBe('udp');
    expect(cfg.port).toBe(8285);
    expect(cfg.subnetLen).toBe(0);
  });
  it('names the file when net-conf.json is missing or invalid', async () => {
    await expect(store({ netConfigPath: join(conf.dir, 'nope.json') }).getNetworkConfig()).rejects.toThrow(/nope\.json.*--net-config-path/);
    const bad = join(conf.dir, 'bad.json');
    writeFileSync(bad, '{"Network": 5}');
    await expect(store({ netConfigPath: bad }).getNetworkConfig()).rejects.toThrow(/bad\.json: network config: Network must be a CIDR/);
  });
  it('without apiUrl, kubeconfig or in-cluster environment: a clear error', () => {
    expect(() => store({ apiUrl: undefined, env: {} })).toThrow(/--kube-api-url or --kubeconfig-file/);
  });
  it('uses a kubeconfig file with a bearer token (and reports a wrong token as 401)', async () => {
    await api.close();
    api = await FakeApiServer.start({ token: 's3cret' });
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    const kubeconfig = (token: string) => {
      const path = join(conf.dir, `kubeconfig-${token}`);
      writeFileSync(path, [
        'apiVersion: v1', 'kind: Config', 'current-context: test',
        'clusters:', `- name: fake`, `  cluster:`, `    server: ${api.url}`,
        'users:', '- name: felt', '  user:', `    token: ${token}`,
        'contexts:', '- name: test', '  context:', '    cluster: fake', '    user: felt', '',
      ].join('\n'));
      return path;
    };
    const ok = store({ apiUrl: undefined, kubeconfigFile: kubeconfig('s3cret') });
    expect(formatSubnet((await ok.acquire('192.168.77.11')).subnet!)).toBe('10.244.1.0/24');
    const bad = store({ apiUrl: undefined, kubeconfigFile: kubeconfig('wrong') });
    // Permanent: the agent's start-up loop must not retry a credentials problem.
    const err = await bad.acquire('192.168.77.11').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PermanentError);
    expect((err as Error).message).toMatch(/401 Unauthorized/);
  });
});

describe('node name', () => {
  it('comes from NODE_NAME', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    expect(await store({ env: { NODE_NAME: 'n1' } }).nodeName()).toBe('n1');
  });
  it('comes from the pod (POD_NAMESPACE/POD_NAME -> spec.nodeName) without NODE_NAME', async () => {
    api.addNode(bareNode('worker-7', '10.244.7.0/24'));
    api.addPod({ metadata: { name: 'felt-abcde', namespace: 'kube-flannel' }, spec: { nodeName: 'worker-7' } });
    const s = store({ env: { POD_NAME: 'felt-abcde', POD_NAMESPACE: 'kube-flannel' } });
    expect(await s.nodeName()).toBe('worker-7');
    expect(formatSubnet((await s.acquire('192.168.77.17')).subnet!)).toBe('10.244.7.0/24');
  });
  it('fails clearly when neither is available, or the pod does not exist', async () => {
    await expect(store({ env: {} }).nodeName()).rejects.toThrow(/set NODE_NAME.*POD_NAME and POD_NAMESPACE/);
    await expect(store({ env: { POD_NAME: 'ghost', POD_NAMESPACE: 'kube-flannel' } }).nodeName()).rejects.toThrow(/pod kube-flannel\/ghost.*404 NotFound.*pods "ghost" not found/);
  });
});

describe('acquire', () => {
  it('takes the subnet from spec.podCIDR', async () => {
    const node = bareNode('n1', '10.244.1.0/24');
    delete (node.spec as JsonObject).podCIDRs;
    api.addNode(node);
    const lease = await store().acquire('192.168.77.11');
    expect(formatSubnet(lease.subnet!)).toBe('10.244.1.0/24');
    expect(lease.publicIP).toBe('192.168.77.11');
    expect(lease.expiresAt).toBeUndefined();
    expect(lease.source).toMatchObject({ kind: 'kube', node: 'n1' });
  });
  it('takes the IPv4 entry of a dual-stack spec.podCIDRs', async () => {
    api.addNode(bareNode('n1', ['fd00:10:244:1::/64', '10.244.9.0/24']));
    expect(formatSubnet((await store().acquire('192.168.77.11')).subnet!)).toBe('10.244.9.0/24');
  });
  it('fails with flannel\'s message when no pod CIDR is assigned (after retrying)', async () => {
    api.addNode(bareNode('n1'));
    const started = api.requests.length;
    await expect(store().acquire('192.168.77.11')).rejects.toThrow(/^node "n1" pod cidr not assigned/);
    const gets = api.requests.slice(started).filter((r) => r.method === 'GET' && r.url === '/api/v1/nodes/n1');
    expect(gets.length).toBeGreaterThan(1);
  });
  it('waits for a pod CIDR assigned while it polls', async () => {
    api.addNode(bareNode('n1'));
    const s = store({ timing: { ...FAST_TIMING, acquireTimeoutMs: 20_000 } });
    const pending = s.acquire('192.168.77.11');
    await until('a GET of the node', () => api.requests.some((r) => r.url === '/api/v1/nodes/n1'));
    api.updateNode('n1', { spec: { podCIDR: '10.244.4.0/24', podCIDRs: ['10.244.4.0/24'] } });
    expect(formatSubnet((await pending).subnet!)).toBe('10.244.4.0/24');
  });
  it('rejects a pod CIDR outside the configured Network', async () => {
    api.addNode(bareNode('n1', '10.99.1.0/24'));
    await expect(store().acquire('192.168.77.11')).rejects.toThrow(/pod cidr 10\.99\.1\.0\/24 is not inside the network 10\.244\.0\.0\/16/);
  });
  it('patches the four annotations through nodes/status with a strategic merge patch, once', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    await store().acquire('192.168.77.11');
    expect(api.patches).toHaveLength(1);
    const [p] = api.patches;
    expect(p!.path).toBe('/api/v1/nodes/n1/status');
    expect(p!.contentType).toBe('application/strategic-merge-patch+json');
    expect(p!.body).toEqual({
      metadata: {
        annotations: {
          [`${PREFIX}kube-subnet-manager`]: 'true',
          [`${PREFIX}backend-type`]: '',
          [`${PREFIX}backend-data`]: 'null',
          [`${PREFIX}public-ip`]: '192.168.77.11',
        },
      },
    });
    // The status subresource left everything else alone.
    expect(api.getNode('n1')!.status).toEqual(bareNode('n1').status);
    expect((api.getNode('n1')!.metadata as JsonObject).labels).toEqual({ 'kubernetes.io/hostname': 'n1' });

    // A restart with the same address finds nothing to change and sends nothing.
    await store().acquire('192.168.77.11');
    expect(api.patches).toHaveLength(1);

    // A new address: only the changed annotation is patched.
    await store().acquire('192.168.77.12');
    expect(api.patches).toHaveLength(2);
    expect(api.patches[1]!.body).toEqual({ metadata: { annotations: { [`${PREFIX}public-ip`]: '192.168.77.12' } } });
    expect(annotations('n1')[`${PREFIX}public-ip`]).toBe('192.168.77.12');
  });
  it('honours public-ip-overwrite: advertises that address instead', async () => {
    const node = bareNode('n1', '10.244.1.0/24');
    (node.metadata as JsonObject).annotations = { [`${PREFIX}public-ip-overwrite`]: '203.0.113.7' };
    api.addNode(node);
    const lease = await store().acquire('192.168.77.11');
    expect(lease.publicIP).toBe('203.0.113.7');
    expect(annotations('n1')[`${PREFIX}public-ip`]).toBe('203.0.113.7');
    expect(annotations('n1')[`${PREFIX}public-ip-overwrite`]).toBe('203.0.113.7');
  });
  it('rejects an unusable public-ip-overwrite clearly', async () => {
    const node = bareNode('n1', '10.244.1.0/24');
    (node.metadata as JsonObject).annotations = { [`${PREFIX}public-ip-overwrite`]: 'not-an-ip' };
    api.addNode(node);
    await expect(store().acquire('192.168.77.11')).rejects.toThrow(/public-ip-overwrite="not-an-ip" is not an IPv4 address/);
  });
  it('reads node-public-ip for the agent', async () => {
    const node = bareNode('n1', '10.244.1.0/24');
    (node.metadata as JsonObject).annotations = { [`${PREFIX}node-public-ip`]: '192.168.77.50' };
    api.addNode(node);
    api.addNode(bareNode('n2', '10.244.2.0/24'));
    expect(await store().storedPublicIP()).toBe('192.168.77.50');
    expect(await store({ env: { NODE_NAME: 'n2' } }).storedPublicIP()).toBeUndefined();
  });
  it('uses a custom annotation prefix', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    await store({ annotationPrefix: 'felt.example.com/net' }).acquire('192.168.77.11');
    expect(annotations('n1')).toEqual({
      'felt.example.com/net-kube-subnet-manager': 'true',
      'felt.example.com/net-backend-type': '',
      'felt.example.com/net-backend-data': 'null',
      'felt.example.com/net-public-ip': '192.168.77.11',
    });
  });
  it('renew() is a no-op that returns the lease', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    const s = store();
    const lease = await s.acquire('192.168.77.11');
    const before = api.requests.length;
    expect(await s.renew(lease)).toBe(lease);
    expect(api.requests.length).toBe(before);
  });
});

describe('NetworkUnavailable condition', () => {
  it('is set to False with felt\'s reason, merged by type next to the other conditions', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    const s = store();
    await s.acquire('192.168.77.11');
    api.clearPatches();
    await s.completeLease();
    expect(api.patches).toHaveLength(1);
    expect(api.patches[0]!.path).toBe('/api/v1/nodes/n1/status');
    expect(api.patches[0]!.contentType).toBe('application/strategic-merge-patch+json');
    const conditions = ((api.getNode('n1')!.status as JsonObject).conditions ?? []) as JsonObject[];
    expect(conditions.map((c) => c.type)).toEqual(['Ready', 'NetworkUnavailable']);
    expect(conditions[1]).toMatchObject({ status: 'False', reason: 'FeltIsUp', message: 'felt is running on this node' });
    const firstTransition = conditions[1]!.lastTransitionTime;

    // Again (a restart): still one such condition, transition time kept.
    await s.completeLease();
    const again = ((api.getNode('n1')!.status as JsonObject).conditions ?? []) as JsonObject[];
    expect(again.filter((c) => c.type === 'NetworkUnavailable')).toHaveLength(1);
    expect(again[1]!.lastTransitionTime).toBe(firstTransition);
  });
  it('replaces a NetworkUnavailable=True left by someone else', async () => {
    const node = bareNode('n1', '10.244.1.0/24');
    ((node.status as JsonObject).conditions as JsonObject[]).push({ type: 'NetworkUnavailable', status: 'True', reason: 'NoRouteCreated', message: 'no routes' });
    api.addNode(node);
    await store().completeLease();
    const conditions = ((api.getNode('n1')!.status as JsonObject).conditions ?? []) as JsonObject[];
    expect(conditions.filter((c) => c.type === 'NetworkUnavailable')).toEqual([expect.objectContaining({ status: 'False', reason: 'FeltIsUp' })]);
  });
  it('logs instead of throwing when it cannot be set (the network works either way)', async () => {
    const s = store({ env: { NODE_NAME: 'ghost' } });
    await expect(s.completeLease()).resolves.toBeUndefined();
    expect(s.status()).toMatchObject({ errors: 1, lastError: expect.stringMatching(/nodes "ghost" not found/) });
  });
  it('is left alone with --set-node-network-unavailable=false', async () => {
    api.addNode(bareNode('n1', '10.244.1.0/24'));
    await store({ setNodeNetworkUnavailable: false }).completeLease();
    expect(api.patches).toHaveLength(0);
  });
});

describe('list and watch', () => {
  beforeEach(() => {
    api.addNode(managedNode('n1', '10.244.1.0/24', '192.168.77.11'));
    api.addNode(managedNode('n2', '10.244.2.0/24', '192.168.77.12'));
    api.addNode(bareNode('plain', '10.244.50.0/24')); // no felt/flannel on it: not a lease
    const noCidr = managedNode('pending', '10.244.51.0/24', '192.168.77.51');
    (noCidr.spec as JsonObject) = {};
    api.addNode(noCidr); // annotated but without a podCIDR: not a lease
  });

  it('list() returns only managed nodes with a pod CIDR, and the list resourceVersion', async () => {
    const { leases, revision } = await store().list();
    expect(subnets(leases)).toEqual(['10.244.1.0/24', '10.244.2.0/24']);
    expect(revision).toBe(api.resourceVersion());
    const n1 = leases.find((l) => l.publicIP === '192.168.77.11')!;
    expect(n1.attrs).toEqual({ PublicIP: '192.168.77.11', BackendType: '', BackendData: null });
    expect(n1.source).toEqual({ kind: 'kube', node: 'n1', resourceVersion: (api.getNode('n1')!.metadata as JsonObject).resourceVersion });
  });

  it('delivers a snapshot, then adds, relevant updates and deletes as events', async () => {
    const s = store();
    const { updates } = watchAll(s);
    await until('the snapshot', () => updates[0]);
    expect(updates[0]!.kind).toBe('snapshot');
    expect(subnets((updates[0] as Extract<LeaseUpdate, { kind: 'snapshot' }>).leases)).toEqual(['10.244.1.0/24', '10.244.2.0/24']);
    await until('the watch stream', () => api.watchCount() === 1);

    api.addNode(managedNode('n3', '10.244.3.0/24', '192.168.77.13'));
    await until('added n3', () => events(updates).includes('added 10.244.3.0/24 192.168.77.13'));

    // Irrelevant changes (a heartbeat, a label) produce nothing.
    api.updateNode('n1', { metadata: { labels: { role: 'x' } }, status: { conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: new Date().toISOString() }] } });
    // A relevant one: a new public IP.
    api.updateNode('n2', { metadata: { annotations: { [`${PREFIX}public-ip`]: '192.168.77.22' } } });
    await until('n2 re-added with its new address', () => events(updates).includes('added 10.244.2.0/24 192.168.77.22'));
    // A podCIDR change: the old subnet goes, the new one comes.
    api.updateNode('n3', { spec: { podCIDR: '10.244.33.0/24', podCIDRs: ['10.244.33.0/24'] } });
    await until('n3 moved', () => events(updates).includes('added 10.244.33.0/24 192.168.77.13'));
    // The annotation removed: no longer a lease.
    api.updateNode('n2', { metadata: { annotations: { [`${PREFIX}kube-subnet-manager`]: null } } });
    await until('n2 gone', () => events(updates).includes('removed 10.244.2.0/24 192.168.77.22'));
    // A plain node gets annotated: now it is one.
    api.updateNode('plain', { metadata: { annotations: { [`${PREFIX}kube-subnet-manager`]: 'true', [`${PREFIX}public-ip`]: '192.168.77.50' } } });
    api.deleteNode('n1');
    await until('n1 deleted', () => events(updates).includes('removed 10.244.1.0/24 192.168.77.11'));

    expect(events(updates)).toEqual([
      'added 10.244.3.0/24 192.168.77.13',
      'added 10.244.2.0/24 192.168.77.22',
      'removed 10.244.3.0/24 192.168.77.13',
      'added 10.244.33.0/24 192.168.77.13',
      'removed 10.244.2.0/24 192.168.77.22',
      'added 10.244.50.0/24 192.168.77.50',
      'removed 10.244.1.0/24 192.168.77.11',
    ]);
    const last = updates.at(-1)!;
    expect(last.revision).toBe(api.resourceVersion());
    expect(s.status()).toMatchObject({ backend: 'kube', connected: true, relists: 1, lastRevision: api.resourceVersion() });
  });

  it('reconnects from its resourceVersion after the server drops the stream (no relist, nothing missed)', async () => {
    const s = store();
    const { updates } = watchAll(s);
    await until('the watch stream', () => api.watchCount() === 1);
    const watchesBefore = api.requests.filter((r) => r.url.includes('watch=true')).length;
    // Hold the reconnect so the change happens while no stream is open.
    api.setWatchGate(false);
    expect(api.dropWatches()).toBe(1);
    await until('the reconnect attempt', () => api.heldWatchCount() === 1);
    api.addNode(managedNode('n3', '10.244.3.0/24', '192.168.77.13'));
    const rvBefore = s.status().lastRevision!;
    api.setWatchGate(true);
    await until('added n3 after the reconnect', () => events(updates).includes('added 10.244.3.0/24 192.168.77.13'));
    const watches = api.requests.filter((r) => r.url.includes('watch=true'));
    expect(watches.length).toBe(watchesBefore + 1);
    expect(watches.at(-1)!.url).toContain(`resourceVersion=${rvBefore}`);
    expect(s.status().relists).toBe(1);
    expect(updates.filter((u) => u.kind === 'snapshot')).toHaveLength(1);
  });

  it('relists and delivers a fresh snapshot on 410 Gone', async () => {
    const s = store();
    const { updates } = watchAll(s);
    await until('the watch stream', () => api.watchCount() === 1);
    api.setWatchGate(false);
    api.dropWatches();
    await until('the reconnect attempt', () => api.heldWatchCount() === 1);
    // While disconnected: n1 deleted, n4 added, then history compacted past the client.
    api.deleteNode('n1');
    api.addNode(managedNode('n4', '10.244.4.0/24', '192.168.77.14'));
    api.compact();
    api.setWatchGate(true);
    await until('a second snapshot', () => updates.filter((u) => u.kind === 'snapshot').length === 2);
    const snap = updates.filter((u) => u.kind === 'snapshot')[1] as Extract<LeaseUpdate, { kind: 'snapshot' }>;
    expect(subnets(snap.leases)).toEqual(['10.244.2.0/24', '10.244.4.0/24']);
    expect(snap.revision).toBe(api.resourceVersion());
    expect(s.status().relists).toBe(2);
    // And it carries on watching from the new list.
    await until('the new watch stream', () => api.watchCount() === 1);
    api.addNode(managedNode('n5', '10.244.5.0/24', '192.168.77.15'));
    await until('added n5', () => events(updates).includes('added 10.244.5.0/24 192.168.77.15'));
  });

  it('backs off and recovers while the API server is unreachable', async () => {
    const s = store();
    const { updates } = watchAll(s);
    await until('the watch stream', () => api.watchCount() === 1);
    const url = api.url;
    await api.close();
    await until('an error in the status', () => s.status().errors > 0 && !s.status().connected);
    // Same address again, with state that moved on while it was away: a new server has no
    // history for the old resourceVersion, so the client must relist.
    const [, port] = /:(\d+)$/.exec(url)!;
    api = await FakeApiServer.start({ listen: { host: '127.0.0.1', port: Number(port) }, startResourceVersion: 5000 });
    api.addNode(managedNode('n9', '10.244.9.0/24', '192.168.77.19'));
    api.compact();
    await until('a snapshot from the new server', () => {
      const snaps = updates.filter((u): u is Extract<LeaseUpdate, { kind: 'snapshot' }> => u.kind === 'snapshot');
      return snaps.length >= 2 && subnets(snaps.at(-1)!.leases).join() === '10.244.9.0/24';
    });
    expect(s.status().connected).toBe(true);
  });

  it('follows bookmarks and re-delivers its lease set on the resync period', async () => {
    const s = store({ timing: { ...FAST_TIMING, resyncMs: 100 } });
    const { updates } = watchAll(s);
    await until('the watch stream', () => api.watchCount() === 1);
    api.updateNode('plain', { metadata: { labels: { x: 'y' } } }); // not a lease: no event, rv moves
    api.sendBookmarks();
    await until('the bookmark revision', () => s.status().lastRevision === api.resourceVersion());
    await until('resync snapshots', () => updates.filter((u) => u.kind === 'snapshot').length >= 3);
    expect(s.status().relists).toBe(1); // resync comes from the cache, not from the server
    for (const u of updates) if (u.kind === 'snapshot') expect(subnets(u.leases)).toEqual(['10.244.1.0/24', '10.244.2.0/24']);
  });

  it('stop() ends the watch promptly, even while reconnecting: without waiting for the server', async () => {
    const s = store();
    const { watcher } = watchAll(s);
    await until('the watch stream', () => api.watchCount() === 1);
    api.setWatchGate(false);
    api.dropWatches();
    await until('the held reconnect', () => api.heldWatchCount() === 1);
    // The server never answers the held request while the gate is shut: stop() must abort it.
    // (The bound only turns a hang into a failure.)
    await within(watcher.stop(), 10_000, 'stop() while the server holds the reconnect');
    expect(api.heldWatchCount(), 'stop() returned before the server answered').toBe(1);
    api.setWatchGate(true);
    // The client closed its connection: the server ends up with no stream.
    await until('no open stream', () => api.watchCount() === 0 && api.heldWatchCount() === 0);
  });
});
