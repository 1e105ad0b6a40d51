// The image and the DaemonSet, run for real (needs root, podman + runc, debootstrap, openssl, network
// namespaces, /dev/net/tun, iptables, the etcd binary, the Debian CNI plugins, and network access to
// the Debian mirror and the npm registry for the build):
//   1. stand-ins for the Dockerfile's base images, then the repository's Dockerfile built with podman
//      (--pull=never); the image holds the agent and its production dependencies only;
//   2. the pod spec of deploy/etcd/felt-etcd.yaml, translated field by field (podspec.ts), run on
//      three testbed nodes: one container per node namespace, init containers first; pods wired by
//      the real CNI plugins from the conflist the init container installed ping every pair;
//   3. the restricted settings proven from the running process (/proc/<pid>/status, mountinfo);
//   4. the lifecycle as the kubelet drives it: stop (SIGTERM, grace period), SIGKILL, restart;
//   5. --ip-masq off: the bridge plugin masquerades instead of felt;
//   6. deploy/felt.yaml in Kubernetes mode through the in-cluster path: service-account token and
//      CA, KUBERNETES_SERVICE_HOST/PORT, TLS, and every request authorized against deploy/'s
//      ClusterRole by the fake API server: sufficient (no 403) and minimal (every verb used).
// Over 450 lines on purpose: one image build and one testbed serve every step, which run in order.
import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cniAdd, cniDel, podAddress, type CniHost } from '../testbed/cni.js';
import { FakeApiControl, type JsonObject, type PolicyRule } from '../testbed/fake-apiserver.js';
import { Netns, run as runCommand, sleep } from '../testbed/netns.js';
import { repoRoot } from '../testbed/tcp.js';
import { HUB_IP, Testbed, type TestbedNode } from '../testbed/testbed.js';
import { buildFeltImage, ensureBaseImages, type BaseImages, type FeltImage } from './images.js';
import { inspectState, logsOf, podman, removeAllContainers, removeContainer, removeLeftoverContainers, trackContainer, waitExit } from './podman.js';
import { configMapsOf, daemonSetOf, podRuns, type ContainerRun, type PodContext } from './podspec.js';

type Obj = Record<string, any>;

const ROOT = repoRoot();
const IMAGE = 'localhost/felt:0.1.0';
const FAKE_API_ENTRY = join(ROOT, 'dist', 'test', 'testbed', 'fake-apiserver.js');
const CAP_NET_ADMIN = 12;
const CAP_NET_RAW = 13;
const EXPECTED_CAPEFF = (1n << BigInt(CAP_NET_ADMIN)) | (1n << BigInt(CAP_NET_RAW)); // 0x3000
const STEP_TIMEOUT = 300_000;

const docsOf = (file: string): Obj[] =>
  parseAllDocuments(readFileSync(join(ROOT, file), 'utf8')).map((d) => d.toJS() as Obj).filter((d) => d !== null);

let bases: BaseImages;
let image: FeltImage;

// ---- helpers -------------------------------------------------------------------------------

/** The probe the manifest declares (path and port of the felt container's readinessProbe). */
function probeOf(ds: Obj, kind: 'readinessProbe' | 'livenessProbe'): { path: string; port: number } {
  const felt = (ds.spec.template.spec.containers as Obj[]).find((c) => c.name === 'felt')!;
  return { path: felt[kind].httpGet.path, port: Number(felt[kind].httpGet.port) };
}

/** HTTP status of GET url from inside the node namespace, as the kubelet probes a hostNetwork pod. */
async function httpStatus(node: TestbedNode, url: string): Promise<number> {
  const r = await node.ns.exec(['curl', '-s', '-o', '/dev/null', '-m', '5', '-w', '%{http_code}', url], { check: false });
  return Number(r.stdout.trim() || 0);
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

function parseEnvFile(text: string): Record<string, string> {
  return Object.fromEntries(text.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

/** /proc/<pid>/status of the container's PID 1 (read on the host). */
function procStatus(pid: number): Record<string, string> {
  return Object.fromEntries(readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').filter(Boolean).map((l) => {
    const i = l.indexOf(':');
    return [l.slice(0, i), l.slice(i + 1).trim()];
  }));
}

/** Every process in the same pid namespace as `pid`, with its state letter. */
function processesInPidNs(pid: number): Array<{ pid: number; state: string; name: string }> {
  const ns = readlinkSync(`/proc/${pid}/ns/pid`);
  const out: Array<{ pid: number; state: string; name: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/pid`) !== ns) continue;
      const st = procStatus(Number(entry));
      out.push({ pid: Number(entry), state: st.State!.split(' ')[0]!, name: st.Name! });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** iptables rules of the node namespace (nat and filter) as iptables-save prints them. */
async function iptablesSave(node: TestbedNode): Promise<string> {
  return (await node.ns.exec(['iptables-save'])).stdout;
}

interface RunningPod {
  node: TestbedNode;
  ctx: PodContext;
  runs: ContainerRun[];
  /** Container name of felt (the main container). */
  felt: string;
  initLogs: Record<string, string>;
}

let serial = 0;

/** Runs one container of the pod; init containers run to completion and must exit 0. */
async function runContainer(prefix: string, node: TestbedNode, run: ContainerRun): Promise<string> {
  const name = `${prefix}-${node.name}-${run.name}-${++serial}`;
  trackContainer(name);
  await podman(['run', '-d', '--name', name, ...run.args]);
  if (run.init) {
    const code = await waitExit(name);
    const logs = await logsOf(name);
    if (code !== 0) throw new Error(`init container ${run.name} on ${node.name} exited ${code}: ${logs}`);
  }
  return name;
}

/** Starts the DaemonSet's pod on a node: init containers in order, then felt; waits for /readyz. */
async function startPod(tb: Testbed, ds: Obj, node: TestbedNode, ctx: PodContext): Promise<RunningPod> {
  const runs = podRuns(ds, ctx);
  const initLogs: Record<string, string> = {};
  let felt = '';
  for (const run of runs) {
    if (run.skipped) continue;
    const name = await runContainer(tb.prefix, node, run);
    if (run.init) {
      initLogs[run.name] = await logsOf(name);
      await removeContainer(name);
    } else felt = name;
  }
  const probe = probeOf(ds, 'readinessProbe');
  await waitFor(`/readyz on ${node.name}`, async () => {
    const st = await inspectState(felt);
    if (!st.Running) throw new Error(`felt on ${node.name} is not running (exit ${st.ExitCode}):\n${await logsOf(felt)}`);
    return (await httpStatus(node, `http://${node.underlayIP}:${probe.port}${probe.path}`)) === 200;
  });
  return { node, ctx, runs, felt, initLogs };
}

function podContext(tb: Testbed, node: TestbedNode, configMaps: Record<string, Record<string, string>>, extra: Partial<PodContext> = {}): PodContext {
  const hostRoot = join(tb.workDir, 'hosts', node.name);
  const podName = `felt-${randomBytes(3).toString('hex').slice(0, 5)}`;
  const podDir = join(tb.workDir, 'pods', `${node.name}-${podName}`);
  mkdirSync(hostRoot, { recursive: true });
  return {
    nodeName: node.name,
    nodeIP: node.underlayIP,
    netns: node.ns.name,
    podName,
    podUID: randomUUID(),
    hostRoot,
    podDir,
    configMaps,
    images: { 'felt:0.1.0': IMAGE },
    ...extra,
  };
}

/** The node's CNI host: plugins run in its namespace; subnet.env is the hostPath felt wrote. */
function cniHostOf(pod: RunningPod): CniHost {
  return { ns: pod.node.ns, subnetFile: join(pod.ctx.hostRoot, 'run/flannel/subnet.env'), stateDir: join(pod.ctx.hostRoot, 'var/lib/cni') };
}

/** The conflist the install-cni init container put into the node's /etc/cni/net.d. */
function installedConflist(pod: RunningPod): Obj {
  return JSON.parse(readFileSync(join(pod.ctx.hostRoot, 'etc/cni/net.d/10-flannel.conflist'), 'utf8')) as Obj;
}

interface AppPod {
  ns: Netns;
  ip: string;
  id: string;
  host: CniHost;
  conflist: Obj;
}

async function addAppPod(tb: Testbed, pod: RunningPod, tag: string): Promise<AppPod> {
  const ns = await Netns.create(`${tb.prefix}-${pod.node.name}${tag}`);
  const host = cniHostOf(pod);
  mkdirSync(host.stateDir, { recursive: true });
  const conflist = installedConflist(pod);
  const id = `${tb.prefix}-${pod.node.name}${tag}`;
  const result = await cniAdd(host, { containerID: id, netns: ns, ifname: 'eth0' }, conflist);
  return { ns, ip: podAddress(result), id, host, conflist };
}

async function delAppPod(p: AppPod): Promise<void> {
  await cniDel(p.host, { containerID: p.id, netns: p.ns, ifname: 'eth0' }, p.conflist);
  await p.ns.delete();
}

/** Pings every ordered pair of pods; returns one line per pair. */
async function pingAllPairs(tb: Testbed, pods: AppPod[]): Promise<string[]> {
  const lines: string[] = [];
  for (const a of pods) {
    for (const b of pods) {
      if (a === b) continue;
      const r = await tb.ping(a.ns, b.ip, { count: 3, intervalS: 0.2, deadlineS: 10 });
      lines.push(`${a.ns.name.split('-').pop()} ${a.ip} -> ${b.ip}: ${r.received}/${r.transmitted}${r.rtt ? ` rtt avg ${r.rtt.avg} ms` : ''}`);
      expect(r.received, `${a.ip} -> ${b.ip}:\n${r.raw}`).toBeGreaterThan(0);
    }
  }
  return lines;
}

async function stopPod(pod: RunningPod): Promise<{ code: number; seconds: number }> {
  const started = Date.now();
  await podman(['stop', '-t', String(pod.runs.find((r) => !r.init)!.graceSeconds), pod.felt], { timeoutMs: 120_000 });
  const seconds = (Date.now() - started) / 1000;
  const code = (await inspectState(pod.felt)).ExitCode;
  return { code, seconds };
}

// ---- the image -------------------------------------------------------------------------------

describe('felt image: Dockerfile built with podman from stand-in bases, DaemonSet pod run from deploy/ (needs root, podman, runc, debootstrap, netns, TUN, etcd, CNI plugins)', () => {
  beforeAll(async () => {
    for (const bin of ['podman', 'runc', 'debootstrap', 'openssl', 'curl']) {
      execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    }
    for (const p of ['bridge', 'host-local', 'portmap', 'loopback']) statSync(join('/usr/lib/cni', p));
    const leftovers = await removeLeftoverContainers();
    if (leftovers.length > 0) console.log(`removed leftover containers of an interrupted run: ${leftovers.join(', ')}`);
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    bases = await ensureBaseImages(dockerfile);
    if (bases.built) await podman(['image', 'prune', '-f']);
    image = await buildFeltImage(ROOT, IMAGE);
    console.log(`stand-in bases ${bases.built ? `built in ${bases.seconds} s` : 'reused from the cache'}; felt image built in ${image.seconds} s, ${(image.size / 1e6).toFixed(0)} MB`);
  }, 2_400_000);

  afterAll(async () => {
    await removeAllContainers();
  });

  it('holds the agent and its production dependencies only; reports what its size is made of', async () => {
    const sh = async (script: string) => (await podman(['run', '--rm', '--pull=never', '--network=none', '--entrypoint', 'sh', IMAGE, '-c', script])).stdout;
    expect((await sh('ls /app/dist')).split('\n').filter(Boolean)).toEqual(['src']);
    expect(await sh('find /app/dist -name "*.map" | wc -l')).toBe('0\n');
    expect((await sh('ls /app')).split('\n').filter(Boolean).sort()).toEqual(['build', 'dist', 'node_modules', 'package.json']);
    const modules = (await sh('ls /app/node_modules /app/node_modules/@kubernetes')).split(/\s+/);
    for (const dev of ['vitest', 'typescript', 'yaml', 'kubernetes-models', 'tinybench', 'playwright-core']) expect(modules, dev).not.toContain(dev);
    for (const prod of ['etcd3', 'pino', 'prom-client', 'client-node']) expect(modules, prod).toContain(prod);
    expect((await sh('node /app/dist/src/cli.js --version')).trim()).toMatch(/^felt \d+\.\d+\.\d+$/);

    const history = (await podman(['history', '--format', '{{.Size}}\t{{.CreatedBy}}', IMAGE])).stdout.trim().split('\n')
      .map((l) => l.replace(/\/bin\/sh -c (#\(nop\) )?/, '').slice(0, 100));
    const du = await sh('du -sk /app/node_modules /app/dist /app/build; cd /app/node_modules && du -sk * @*/* | sort -rn | head -6');
    console.log(`image ${IMAGE}: ${(image.size / 1e6).toFixed(0)} MB\nlayers:\n  ${history.join('\n  ')}\n/app (KiB):\n  ${du.trim().split('\n').join('\n  ')}`);
  });

  // ---- etcd mode ------------------------------------------------------------------------------

  describe('etcd mode, three nodes (deploy/etcd/felt-etcd.yaml)', () => {
    let tb: Testbed;
    let ds: Obj;
    let configMaps: Record<string, Record<string, string>>;
    const pods = new Map<string, RunningPod>();
    const appPods = new Map<string, AppPod>();
    const subnets = new Map<string, string>();

    const subnetEnvOf = (p: RunningPod): Record<string, string> => parseEnvFile(readFileSync(join(p.ctx.hostRoot, 'run/flannel/subnet.env'), 'utf8'));

    beforeAll(async () => {
      const docs = docsOf('deploy/etcd/felt-etcd.yaml');
      ds = daemonSetOf(docs);
      tb = await Testbed.create({ nodes: 3, etcd: true });
      tb.onDestroy(() => removeAllContainers());
      // A node has a default route (felt picks its interface from it, as flanneld does).
      for (const n of tb.nodes) await n.ns.ip(['route', 'add', 'default', 'via', HUB_IP]);
      // What a user edits before applying: the felt-etcd ConfigMap's endpoints.
      configMaps = configMapsOf(docs);
      configMaps['felt-etcd']!.FLANNELD_ETCD_ENDPOINTS = tb.etcdClientURL;
      for (const n of tb.nodes) pods.set(n.name, await startPod(tb, ds, n, podContext(tb, n, configMaps)));
      for (const n of tb.nodes) subnets.set(n.name, subnetEnvOf(pods.get(n.name)!).FLANNEL_SUBNET!);
    }, STEP_TIMEOUT);

    afterAll(async () => {
      for (const p of appPods.values()) await p.ns.delete().catch(() => undefined);
      await removeAllContainers();
      await tb?.destroy();
    }, STEP_TIMEOUT);

    it('init containers: install-cni puts the ConfigMap\'s conflist into the node\'s /etc/cni/net.d; the flannel CNI image is the only one not run', () => {
      for (const p of pods.values()) {
        expect(p.runs.filter((r) => r.skipped).map((r) => r.name)).toEqual(['install-cni-plugin']);
        expect(readFileSync(join(p.ctx.hostRoot, 'etc/cni/net.d/10-flannel.conflist'), 'utf8')).toBe(configMaps['felt-cfg']!['cni-conf.json']);
        expect(readdirSync(join(p.ctx.hostRoot, 'etc/cni/net.d'))).toEqual(['10-flannel.conflist']);
        // hostPath DirectoryOrCreate made the plugin directory even though nothing was copied.
        expect(statSync(join(p.ctx.hostRoot, 'opt/cni/bin')).isDirectory()).toBe(true);
      }
    });

    it('felt answers /readyz and /healthz with 200 on the probes\' port; subnet.env is in the host path /run/flannel', async () => {
      for (const p of pods.values()) {
        for (const kind of ['readinessProbe', 'livenessProbe'] as const) {
          const probe = probeOf(ds, kind);
          expect(await httpStatus(p.node, `http://${p.node.underlayIP}:${probe.port}${probe.path}`)).toBe(200);
        }
        const env = subnetEnvOf(p);
        expect(env).toMatchObject({ FLANNEL_NETWORK: '10.244.0.0/16', FLANNEL_MTU: '1472', FLANNEL_IPMASQ: 'true' });
        expect(env.FLANNEL_SUBNET).toMatch(/^10\.244\.\d+\.1\/24$/);
      }
      expect(new Set(subnets.values()).size).toBe(3);
      console.log(`subnets: ${[...subnets].map(([n, s]) => `${n} ${s}`).join(', ')}`);
    });

    it('runs restricted: CapEff NET_ADMIN|NET_RAW only, no new privileges, seccomp filter, read-only root; felt is PID 1 and alone', async () => {
      for (const p of pods.values()) {
        const { Pid } = await inspectState(p.felt);
        const st = procStatus(Pid);
        expect(BigInt(`0x${st.CapEff}`), `CapEff ${st.CapEff}`).toBe(EXPECTED_CAPEFF);
        expect(BigInt(`0x${st.CapPrm}`)).toBe(EXPECTED_CAPEFF);
        expect(BigInt(`0x${st.CapBnd}`)).toBe(EXPECTED_CAPEFF);
        expect(st.NoNewPrivs).toBe('1');
        expect(st.Seccomp).toBe('2'); // SECCOMP_MODE_FILTER: the runtime's default profile
        expect(st.Uid!.split(/\s+/)[0]).toBe('0');
        expect(st.NSpid!.split(/\s+/).pop()).toBe('1');
        expect(readFileSync(`/proc/${Pid}/cmdline`, 'utf8').split('\0').slice(0, 3)).toEqual(['node', '/app/dist/src/cli.js', 'run']);
        const rootMount = readFileSync(`/proc/${Pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === '/')!;
        expect(rootMount.split(' ')[5]!.split(',')).toContain('ro');
        const write = await podman(['exec', p.felt, 'sh', '-c', 'echo x > /app/probe'], { check: false });
        expect(write.code).not.toBe(0);
        expect(write.stderr).toMatch(/Read-only file system/);
        // The mounted xtables lock is the node's (this machine's) own.
        const lock = await podman(['exec', p.felt, 'stat', '-c', '%i', '/run/xtables.lock']);
        expect(Number(lock.stdout.trim())).toBe(statSync('/run/xtables.lock').ino);
        // No children left over (iptables runs come and go), and no zombies.
        const procs = processesInPidNs(Pid);
        expect(procs.filter((x) => x.state === 'Z')).toEqual([]);
        expect(procs.map((x) => x.pid)).toEqual([Pid]);
      }
      const { Pid } = await inspectState(pods.get('n1')!.felt);
      console.log(`felt container CapEff: 0x${procStatus(Pid).CapEff} (NET_ADMIN|NET_RAW = 0x${EXPECTED_CAPEFF.toString(16)})`);
    });

    it('pods wired by the real CNI plugins from subnet.env reach each other across every pair of nodes (felt masquerades, the bridge does not)', async () => {
      for (const p of pods.values()) appPods.set(p.node.name, await addAppPod(tb, p, 'p1'));
      for (const [name, ap] of appPods) {
        expect(ap.ip.replace(/\.\d+$/, '')).toBe(subnets.get(name)!.replace(/\.\d+\/24$/, ''));
        const node = pods.get(name)!.node;
        expect(await node.ns.ip(['-o', 'addr', 'show', 'dev', 'cni0'])).toContain(subnets.get(name)!);
        expect(await node.ns.ip(['-o', 'link', 'show', 'dev', 'cni0'])).toContain('mtu 1472');
        expect(await ap.ns.ip(['route', 'show'])).toContain(`10.244.0.0/16 via ${subnets.get(name)!.replace(/\/24$/, '')}`);
        const rules = await iptablesSave(node);
        expect(rules).toContain('FELT-POSTRTG');
        expect(rules).not.toMatch(/-j CNI-/); // ipMasq false in the delegate: FLANNEL_IPMASQ=true
      }
      const lines = await pingAllPairs(tb, [...appPods.values()]);
      console.log(`three-node run (etcd mode, --ip-masq):\n  ${lines.join('\n  ')}`);
    }, STEP_TIMEOUT);

    it('podman stop: SIGTERM ends felt with exit 0 before the grace period; TUN, route and chains are gone; the lease stays; a new container takes the same subnet', async () => {
      const p = pods.get('n2')!;
      const subnet = subnets.get('n2')!;
      const leaseKey = `${tb.etcdPrefix}/subnets/${subnet.replace(/\.1\/24$/, '.0-24')}`;
      const { code, seconds } = await stopPod(p);
      // Exit 0 (not 137): felt ended on SIGTERM, before podman's SIGKILL at the grace period.
      expect(code, await logsOf(p.felt)).toBe(0);
      console.log(`podman stop: exit ${code} after ${seconds.toFixed(1)} s (terminationGracePeriodSeconds ${p.runs.find((r) => !r.init)!.graceSeconds})`);
      expect(await logsOf(p.felt)).toMatch(/shutting down/);
      expect((await p.node.ns.ip(['-o', 'link', 'show'])).includes('flannel0')).toBe(false);
      expect((await p.node.ns.ip(['route', 'show', '10.244.0.0/16'])).trim()).toBe('');
      expect(await iptablesSave(p.node)).not.toContain('FELT-');
      const lease = await tb.etcdClient.get(leaseKey).string();
      expect(JSON.parse(lease ?? 'null')).toMatchObject({ PublicIP: p.node.underlayIP });
      await removeContainer(p.felt);

      const again = await startPod(tb, ds, p.node, podContext(tb, p.node, configMaps, { podName: p.ctx.podName }));
      pods.set('n2', again);
      expect(subnetEnvOf(again).FLANNEL_SUBNET).toBe(subnet);
      await pingAllPairs(tb, [...appPods.values()]);
    }, STEP_TIMEOUT);

    it('SIGKILL: the container dies with 137 and stale chains; a new one comes back cleanly on the same subnet', async () => {
      const p = pods.get('n3')!;
      const subnet = subnets.get('n3')!;
      await podman(['kill', '--signal', 'KILL', p.felt]);
      expect(await waitExit(p.felt)).toBe(137);
      expect((await p.node.ns.ip(['-o', 'link', 'show'])).includes('flannel0')).toBe(false); // the kernel closed the TUN
      expect(await iptablesSave(p.node)).toContain('FELT-POSTRTG'); // nobody removed them
      await removeContainer(p.felt);

      const again = await startPod(tb, ds, p.node, podContext(tb, p.node, configMaps, { podName: p.ctx.podName }));
      pods.set('n3', again);
      expect(subnetEnvOf(again).FLANNEL_SUBNET).toBe(subnet);
      const rules = await iptablesSave(p.node);
      expect(rules.match(/-A POSTROUTING .*-j FELT-POSTRTG/g) ?? [], rules).toHaveLength(1);
      await pingAllPairs(tb, [...appPods.values()]);
    }, STEP_TIMEOUT);

    it('--ip-masq off (the manifest edited): subnet.env says FLANNEL_IPMASQ=false, re-added pods get a masquerading bridge, and still reach each other', async () => {
      for (const ap of appPods.values()) await delAppPod(ap);
      for (const [name, ap] of appPods) {
        // DEL released the address and removed the veth.
        expect(readdirSync(join(ap.host.stateDir, 'networks', 'cbr0')).filter((f) => /^\d/.test(f))).toEqual([]);
        expect(await pods.get(name)!.node.ns.ip(['-o', 'link', 'show', 'master', 'cni0'])).toBe('');
      }
      appPods.clear();
      const edited = structuredClone(ds);
      const felt = (edited.spec.template.spec.containers as Obj[]).find((c) => c.name === 'felt')!;
      felt.args = (felt.args as string[]).filter((a) => a !== '--ip-masq');
      for (const [name, p] of pods) {
        expect((await stopPod(p)).code).toBe(0);
        await removeContainer(p.felt);
        pods.set(name, await startPod(tb, edited, p.node, podContext(tb, p.node, configMaps, { podName: p.ctx.podName })));
      }
      for (const p of pods.values()) {
        expect(subnetEnvOf(p).FLANNEL_IPMASQ).toBe('false');
        expect(subnetEnvOf(p).FLANNEL_SUBNET).toBe(subnets.get(p.node.name));
        appPods.set(p.node.name, await addAppPod(tb, p, 'p2'));
        const rules = await iptablesSave(p.node);
        expect(rules).not.toContain('FELT-POSTRTG');
        expect(rules).toMatch(/-A POSTROUTING -s 10\.244\.\d+\.\d+\/32 -m comment --comment "name: \\"cbr0\\" id: \\"[^"]+\\"" -j CNI-/);
      }
      const lines = await pingAllPairs(tb, [...appPods.values()]);
      console.log(`three-node run (etcd mode, no --ip-masq, bridge ipMasq):\n  ${lines.join('\n  ')}`);
      for (const ap of appPods.values()) await delAppPod(ap);
      appPods.clear();
    }, STEP_TIMEOUT);
  });

  // ---- Kubernetes mode ------------------------------------------------------------------------

  describe('Kubernetes mode through the in-cluster path (deploy/felt.yaml): service-account token + CA, TLS, RBAC from deploy/base/rbac.yaml', () => {
    const API_PORT = 6443;
    const USER = 'system:serviceaccount:kube-felt:felt';
    let tb: Testbed;
    let ds: Obj;
    let rules: PolicyRule[];
    let ctl: FakeApiControl;
    let apiChild: ChildProcess;
    let certDir: string;
    let token: string;
    const pods = new Map<string, RunningPod>();
    const podCIDR = (n: TestbedNode): string => `10.244.${n.index}.0/24`;

    const openssl = (args: string[]): void => {
      execFileSync('openssl', args, { cwd: certDir, stdio: 'pipe' });
    };

    beforeAll(async () => {
      const docs = docsOf('deploy/felt.yaml');
      ds = daemonSetOf(docs);
      const role = docs.find((d) => d.kind === 'ClusterRole')!;
      const binding = docs.find((d) => d.kind === 'ClusterRoleBinding')!;
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: ds.spec.template.spec.serviceAccountName, namespace: ds.metadata.namespace }]);
      expect(USER).toBe(`system:serviceaccount:${ds.metadata.namespace}:${ds.spec.template.spec.serviceAccountName}`);
      rules = role.rules as PolicyRule[];
      tb = await Testbed.create({ nodes: 2 });
      tb.onDestroy(() => removeAllContainers());
      for (const n of tb.nodes) await n.ns.ip(['route', 'add', 'default', 'via', HUB_IP]);

      // A cluster CA and the API server's certificate for the address the pods are told.
      certDir = join(tb.workDir, 'pki');
      mkdirSync(certDir);
      openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=felt-test-cluster-ca', '-keyout', 'ca.key', '-out', 'ca.crt']);
      writeFileSync(join(certDir, 'server.ext'), `subjectAltName=IP:${HUB_IP},DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n`);
      openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=kube-apiserver', '-keyout', 'server.key', '-out', 'server.csr']);
      openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'server.ext', '-out', 'server.crt']);
      token = randomBytes(24).toString('base64url');
      writeFileSync(join(certDir, 'rbac.json'), JSON.stringify({ user: USER, rules }));

      const socket = join(tb.workDir, 'kube-api.sock');
      apiChild = tb.hub.spawn([process.execPath, FAKE_API_ENTRY, '--listen', `${HUB_IP}:${API_PORT}`, '--control', `unix:${socket}`, '--token', token,
        '--tls-cert', join(certDir, 'server.crt'), '--tls-key', join(certDir, 'server.key'), '--rbac', join(certDir, 'rbac.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
      tb.onDestroy(() => {
        apiChild.kill('SIGKILL');
      });
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        let err = '';
        apiChild.stdout!.on('data', (c: Buffer) => {
          out += c.toString();
          if (out.includes('\n')) resolve((JSON.parse(out.slice(0, out.indexOf('\n'))) as { listening: string }).listening);
        });
        apiChild.stderr!.on('data', (c: Buffer) => (err += c.toString()));
        apiChild.once('exit', (code) => reject(new Error(`fake-apiserver exited (${code}): ${err}`)));
      });
      expect(url).toBe(`https://${HUB_IP}:${API_PORT}`);
      ctl = new FakeApiControl(socket);

      const saDir = join(tb.workDir, 'serviceaccount');
      mkdirSync(saDir);
      writeFileSync(join(saDir, 'token'), token);
      writeFileSync(join(saDir, 'ca.crt'), readFileSync(join(certDir, 'ca.crt')));
      writeFileSync(join(saDir, 'namespace'), ds.metadata.namespace);

      const configMaps = configMapsOf(docs);
      for (const n of tb.nodes) {
        await ctl.addNode({
          metadata: { name: n.name, labels: { 'kubernetes.io/hostname': n.name, 'kubernetes.io/os': 'linux' } },
          spec: { podCIDR: podCIDR(n), podCIDRs: [podCIDR(n)] },
          status: { conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'kubelet is posting ready status' }], addresses: [{ type: 'InternalIP', address: n.underlayIP }] },
        } as JsonObject);
      }
      for (const n of tb.nodes) {
        // Node 2's pod lacks the downward-API NODE_NAME on purpose: felt then looks its own pod up
        // (POD_NAMESPACE/POD_NAME), the ClusterRole's "pods get".
        const ctx = podContext(tb, n, configMaps, {
          apiServer: { host: HUB_IP, port: API_PORT, serviceAccountDir: saDir },
          ...(n.index === 2 ? { withoutEnv: ['NODE_NAME'] } : {}),
        });
        await ctl.addPod({ metadata: { name: ctx.podName, namespace: ds.metadata.namespace }, spec: { nodeName: n.name, hostNetwork: true } } as JsonObject);
        pods.set(n.name, await startPod(tb, ds, n, ctx));
      }
    }, STEP_TIMEOUT);

    afterAll(async () => {
      await removeAllContainers();
      await tb?.destroy();
    }, STEP_TIMEOUT);

    it('each node takes its podCIDR over HTTPS with the token; pods wired by the CNI plugins reach each other', async () => {
      for (const p of pods.values()) {
        const env = parseEnvFile(readFileSync(join(p.ctx.hostRoot, 'run/flannel/subnet.env'), 'utf8'));
        expect(env.FLANNEL_SUBNET).toBe(podCIDR(p.node).replace(/\.0\/24$/, '.1/24'));
        const { Pid } = await inspectState(p.felt);
        expect(BigInt(`0x${procStatus(Pid).CapEff}`)).toBe(EXPECTED_CAPEFF);
      }
      const app: AppPod[] = [];
      for (const p of pods.values()) app.push(await addAppPod(tb, p, 'p1'));
      // Both agents see each other's node through the watch before traffic can flow.
      await waitFor('the peers through the watch', async () => {
        for (const a of app) if (!(await tb.ping(a.ns, app.find((b) => b !== a)!.ip, { count: 1, waitS: 1 })).ok) return false;
        return true;
      });
      const lines = await pingAllPairs(tb, app);
      console.log(`Kubernetes mode (in-cluster TLS + RBAC):\n  ${lines.join('\n  ')}`);
      for (const a of app) await delAppPod(a);
    }, STEP_TIMEOUT);

    it('the ClusterRole is sufficient (no 403 in a full run: list, watch, get, nodes/status patch, pod lookup, shutdown) and minimal (every verb of every rule used)', async () => {
      // A full run includes the shutdown.
      for (const p of pods.values()) expect((await stopPod(p)).code, await logsOf(p.felt)).toBe(0);
      const decisions = await ctl.authz();
      expect(decisions.filter((d) => !d.allowed)).toEqual([]);
      const used = new Set(decisions.map((d) => `${d.rule}:${d.subresource ? `${d.resource}/${d.subresource}` : d.resource}:${d.verb}`));
      const granted = rules.flatMap((r, i) => r.resources!.flatMap((res) => r.verbs.map((v) => `${i}:${res}:${v}`)));
      expect([...used].sort()).toEqual([...granted].sort());
      const patches = await ctl.patches();
      expect(patches.length).toBeGreaterThan(0);
      expect(patches.every((p) => p.subresource === 'status' && p.status === 200)).toBe(true);
      console.log(`RBAC: ${decisions.length} requests authorized, none denied; used ${[...used].sort().join(', ')}`);
    }, STEP_TIMEOUT);

    it('a request outside the role gets the real 403 Forbidden Status', async () => {
      const curl = async (method: string, path: string, body?: string): Promise<{ status: number; json: Obj }> => {
        const args = ['curl', '-s', '-m', '5', '--cacert', join(certDir, 'ca.crt'), '-H', `Authorization: Bearer ${token}`, '-X', method, '-w', '\n%{http_code}'];
        if (body) args.push('-H', 'Content-Type: application/merge-patch+json', '--data', body);
        const out = (await tb.hub.exec([...args, `https://${HUB_IP}:${API_PORT}${path}`])).stdout.trim().split('\n');
        return { status: Number(out.pop()), json: JSON.parse(out.join('\n')) as Obj };
      };
      const patchNode = await curl('PATCH', '/api/v1/nodes/n1', '{"metadata":{"labels":{"x":"y"}}}');
      expect(patchNode).toEqual({
        status: 403,
        json: {
          kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Forbidden', code: 403,
          message: `nodes "n1" is forbidden: User "${USER}" cannot patch resource "nodes" in API group "" at the cluster scope`,
          details: { name: 'n1', kind: 'nodes' },
        },
      });
      const secrets = await curl('GET', '/api/v1/namespaces/kube-felt/secrets');
      expect(secrets.status).toBe(403);
      expect(secrets.json.message).toBe(`secrets is forbidden: User "${USER}" cannot list resource "secrets" in API group "" in the namespace "kube-felt"`);
      const noToken = (await tb.hub.exec(['curl', '-s', '-m', '5', '--cacert', join(certDir, 'ca.crt'), '-o', '/dev/null', '-w', '%{http_code}', `https://${HUB_IP}:${API_PORT}/api/v1/nodes`])).stdout;
      expect(noToken).toBe('401');
    });
  });

  it('leaves nothing behind: no container, no podman bridge or CNI chain in the host\'s namespace', async () => {
    expect((await podman(['ps', '-a', '--format', '{{.Names}}'])).stdout.trim()).toBe('');
    expect((await runCommand(['ip', '-o', 'link', 'show'])).stdout).not.toMatch(/cni-podman|\bcni0\b/);
    expect((await runCommand(['iptables-save'])).stdout).not.toMatch(/CNI-/);
  });
});

