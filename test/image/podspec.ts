// A DaemonSet's pod, run on one testbed node the way a kubelet would run it, derived from the
// manifest alone: every `podman run` argument below comes from a field of the pod spec, and a field
// this translation does not know is an error rather than silently dropped.
//
// The node: hostNetwork = the node's network namespace (`--network ns:/run/netns/<node>`); hostPath
// volumes live in a directory standing in for the node's filesystem, except device nodes and the
// xtables lock, which every namespace on this machine shares for real (the iptables run in the node
// namespaces by the CNI plugins and by the tests take the same /run/xtables.lock).
import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ulimitArgs } from './podman.js';

type Obj = Record<string, any>;

/** What the kubelet knows about the node and the pod it is starting. */
export interface PodContext {
  nodeName: string;
  /** Node (= host network) address: status.hostIP and, with hostNetwork, status.podIP. */
  nodeIP: string;
  /** The node's network namespace name (under /run/netns). */
  netns: string;
  /** metadata.name the DaemonSet controller gave the pod. */
  podName: string;
  podUID: string;
  /** The directory standing in for the node's filesystem root. */
  hostRoot: string;
  /** Where this pod's volumes (ConfigMaps, Secrets, emptyDirs) are materialised. */
  podDir: string;
  /** ConfigMaps and Secrets of the cluster, by name (data as strings). */
  configMaps: Record<string, Record<string, string>>;
  secrets?: Record<string, Record<string, string>>;
  /** Manifest image name -> local image; an image not listed cannot be run here. */
  images: Record<string, string>;
  /** The API server as the kubelet advertises it to every container, and the service account files. */
  apiServer?: { host: string; port: number; serviceAccountDir: string };
  /** Remove these env vars from the felt container (a test varies the manifest on purpose). */
  withoutEnv?: string[];
}

export interface ContainerRun {
  /** Container name in the manifest. */
  name: string;
  init: boolean;
  image: string;
  /** Arguments for `podman run` (without "run"), image and command included. */
  args: string[];
  /** The manifest's terminationGracePeriodSeconds (main containers: podman --stop-timeout). */
  graceSeconds: number;
  /** Set when the container cannot run here; the reason says why. */
  skipped?: string;
}

/** Paths that are the machine's own in every node namespace (see the header). */
const SHARED_HOST_PATHS = ['/run/xtables.lock'];

/** The capabilities containerd gives a container that drops none (its default spec). */
const RUNTIME_DEFAULT_CAPS = [
  'CHOWN', 'DAC_OVERRIDE', 'FSETID', 'FOWNER', 'MKNOD', 'NET_RAW', 'SETGID', 'SETUID', 'SETFCAP', 'SETPCAP',
  'NET_BIND_SERVICE', 'SYS_CHROOT', 'KILL', 'AUDIT_WRITE',
];

/** Character devices the runtime's default device cgroup allows (runc/containerd: tuntap among them). */
const RUNTIME_DEFAULT_DEVICES: Record<string, string> = { '/dev/net/tun': 'c 10:200 rwm' };

const KNOWN_CONTAINER_FIELDS = new Set([
  'name', 'image', 'command', 'args', 'env', 'envFrom', 'ports', 'livenessProbe', 'readinessProbe', 'startupProbe',
  'resources', 'securityContext', 'volumeMounts', 'imagePullPolicy', 'terminationMessagePath', 'terminationMessagePolicy',
]);

/** The one DaemonSet among `docs`. */
export function daemonSetOf(docs: Obj[]): Obj {
  const ds = docs.filter((d) => d.kind === 'DaemonSet');
  if (ds.length !== 1) throw new Error(`expected one DaemonSet, found ${ds.length}`);
  return ds[0]!;
}

/** ConfigMap data by name, from the manifests. */
export function configMapsOf(docs: Obj[]): Record<string, Record<string, string>> {
  return Object.fromEntries(docs.filter((d) => d.kind === 'ConfigMap').map((d) => [d.metadata.name, { ...(d.data ?? {}) }]));
}

function fieldRef(path: string, ds: Obj, ctx: PodContext): string {
  const pod = ds.spec.template.spec;
  switch (path) {
    case 'spec.nodeName': return ctx.nodeName;
    case 'metadata.name': return ctx.podName;
    case 'metadata.namespace': return ds.metadata.namespace ?? 'default';
    case 'metadata.uid': return ctx.podUID;
    case 'spec.serviceAccountName': return pod.serviceAccountName ?? 'default';
    case 'status.hostIP': return ctx.nodeIP;
    case 'status.podIP': if (pod.hostNetwork) return ctx.nodeIP; break;
  }
  throw new Error(`fieldRef ${path} is not supported by this translation`);
}

/** The container's environment as the kubelet builds it: service env, envFrom, then env (later wins). */
function environment(c: Obj, ds: Obj, ctx: PodContext): Array<[string, string]> {
  const env = new Map<string, string>();
  if (ctx.apiServer) {
    // Every container gets the default namespace's "kubernetes" service variables.
    const { host, port } = ctx.apiServer;
    env.set('KUBERNETES_SERVICE_HOST', host);
    env.set('KUBERNETES_SERVICE_PORT', String(port));
    env.set('KUBERNETES_SERVICE_PORT_HTTPS', String(port));
    env.set('KUBERNETES_PORT', `tcp://${host}:${port}`);
    env.set(`KUBERNETES_PORT_${port}_TCP`, `tcp://${host}:${port}`);
    env.set(`KUBERNETES_PORT_${port}_TCP_PROTO`, 'tcp');
    env.set(`KUBERNETES_PORT_${port}_TCP_PORT`, String(port));
    env.set(`KUBERNETES_PORT_${port}_TCP_ADDR`, host);
  }
  for (const from of c.envFrom ?? []) {
    if (!from.configMapRef) throw new Error(`envFrom ${JSON.stringify(from)} is not supported by this translation`);
    const data = ctx.configMaps[from.configMapRef.name];
    if (!data) {
      if (from.configMapRef.optional) continue;
      throw new Error(`envFrom: ConfigMap ${from.configMapRef.name} does not exist`);
    }
    for (const [k, v] of Object.entries(data)) env.set(`${from.prefix ?? ''}${k}`, v);
  }
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env.set(e.name, String(e.value));
    else if (e.valueFrom?.fieldRef) env.set(e.name, fieldRef(e.valueFrom.fieldRef.fieldPath, ds, ctx));
    else if (e.valueFrom?.configMapKeyRef) {
      const v = ctx.configMaps[e.valueFrom.configMapKeyRef.name]?.[e.valueFrom.configMapKeyRef.key];
      if (v === undefined && !e.valueFrom.configMapKeyRef.optional) throw new Error(`env ${e.name}: ConfigMap key missing`);
      if (v !== undefined) env.set(e.name, v);
    } else if (e.valueFrom === undefined) env.set(e.name, '');
    else throw new Error(`env ${e.name}: ${JSON.stringify(e.valueFrom)} is not supported by this translation`);
  }
  for (const name of ctx.withoutEnv ?? []) env.delete(name);
  return [...env];
}

function securityArgs(c: Obj, pod: Obj): string[] {
  const sc: Obj = c.securityContext ?? {};
  const podSc: Obj = pod.securityContext ?? {};
  const known = new Set(['privileged', 'capabilities', 'allowPrivilegeEscalation', 'readOnlyRootFilesystem', 'seccompProfile']);
  for (const k of Object.keys(sc)) if (!known.has(k)) throw new Error(`securityContext.${k} is not supported by this translation`);
  for (const k of Object.keys(podSc)) if (k !== 'seccompProfile') throw new Error(`pod securityContext.${k} is not supported by this translation`);
  const args: string[] = [];
  if (sc.privileged) return ['--privileged'];
  // Start from the runtime's default set (not podman's), then the manifest's drop and add.
  const drop: string[] = (sc.capabilities?.drop ?? []).map((x: string) => x.toUpperCase());
  const add: string[] = (sc.capabilities?.add ?? []).map((x: string) => x.toUpperCase());
  const caps = drop.includes('ALL') ? new Set<string>() : new Set(RUNTIME_DEFAULT_CAPS.filter((x) => !drop.includes(x)));
  for (const a of add) caps.add(a);
  args.push('--cap-drop=all');
  for (const cap of [...caps].sort()) args.push(`--cap-add=${cap}`);
  if (sc.allowPrivilegeEscalation === false) args.push('--security-opt=no-new-privileges');
  // Kubernetes adds no tmpfs anywhere: podman's --read-only would, unless told not to.
  if (sc.readOnlyRootFilesystem) args.push('--read-only', '--read-only-tmpfs=false');
  // The kubelet's default is Unconfined; RuntimeDefault is the runtime's profile (podman's default).
  const seccomp = (sc.seccompProfile ?? podSc.seccompProfile)?.type ?? 'Unconfined';
  if (seccomp === 'Unconfined') args.push('--security-opt=seccomp=unconfined');
  else if (seccomp !== 'RuntimeDefault') throw new Error(`seccompProfile ${seccomp} is not supported by this translation`);
  return args;
}

function prepareHostPath(path: string, type: string | undefined, ctx: PodContext): string {
  const real = path.startsWith('/dev/') || SHARED_HOST_PATHS.includes(path);
  const host = real ? path : join(ctx.hostRoot, path);
  switch (type ?? '') {
    case 'DirectoryOrCreate':
      mkdirSync(host, { recursive: true, mode: 0o755 });
      break;
    case 'FileOrCreate':
      if (!existsSync(host)) {
        mkdirSync(dirname(host), { recursive: true });
        writeFileSync(host, '', { mode: 0o644 });
      }
      break;
    case 'CharDevice':
      if (!statSync(host).isCharacterDevice()) throw new Error(`hostPath ${path}: not a character device`);
      break;
    case 'Directory':
      if (!statSync(host).isDirectory()) throw new Error(`hostPath ${path}: not a directory`);
      break;
    case 'File':
      if (!statSync(host).isFile()) throw new Error(`hostPath ${path}: not a file`);
      break;
    case '':
      break;
    default:
      throw new Error(`hostPath type ${type} is not supported by this translation`);
  }
  return host;
}

/** Writes a ConfigMap/Secret volume's files (all keys, or `items`) and returns its directory. */
function projectVolume(dir: string, data: Record<string, string>, items: Obj[] | undefined): string {
  mkdirSync(dir, { recursive: true });
  const entries: Array<[string, string]> = items ? items.map((i) => [i.path, data[i.key]!]) : Object.entries(data);
  for (const [path, value] of entries) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), value, { mode: 0o644 });
  }
  chmodSync(dir, 0o755);
  return dir;
}

function mountArgs(c: Obj, pod: Obj, ctx: PodContext): string[] {
  const args: string[] = [];
  const volumes = new Map<string, Obj>((pod.volumes ?? []).map((v: Obj) => [v.name, v]));
  for (const m of c.volumeMounts ?? []) {
    const v = volumes.get(m.name);
    if (!v) throw new Error(`volumeMount ${m.name}: no such volume`);
    let source: string;
    let readOnly = Boolean(m.readOnly);
    if (v.hostPath) {
      source = prepareHostPath(v.hostPath.path, v.hostPath.type, ctx);
      if (v.hostPath.type === 'CharDevice' && RUNTIME_DEFAULT_DEVICES[v.hostPath.path]) {
        args.push(`--device-cgroup-rule=${RUNTIME_DEFAULT_DEVICES[v.hostPath.path]}`);
      }
    } else if (v.configMap) {
      const data = ctx.configMaps[v.configMap.name];
      if (!data) throw new Error(`volume ${v.name}: ConfigMap ${v.configMap.name} does not exist`);
      source = projectVolume(join(ctx.podDir, 'volumes', v.name), data, v.configMap.items);
      readOnly = true; // the kubelet mounts ConfigMap volumes read-only
    } else if (v.secret) {
      const data = ctx.secrets?.[v.secret.secretName];
      if (!data && !v.secret.optional) throw new Error(`volume ${v.name}: Secret ${v.secret.secretName} does not exist`);
      source = projectVolume(join(ctx.podDir, 'volumes', v.name), data ?? {}, v.secret.items);
      readOnly = true;
    } else if (v.emptyDir) {
      source = join(ctx.podDir, 'volumes', v.name);
      mkdirSync(source, { recursive: true });
    } else {
      throw new Error(`volume ${v.name}: ${Object.keys(v).filter((k) => k !== 'name').join(',')} is not supported by this translation`);
    }
    args.push('--volume', `${source}:${m.mountPath.replace(/\/$/, '')}${readOnly ? ':ro' : ''}`);
  }
  const automount = pod.automountServiceAccountToken !== false;
  if (automount && ctx.apiServer) {
    args.push('--volume', `${ctx.apiServer.serviceAccountDir}:/var/run/secrets/kubernetes.io/serviceaccount:ro`);
  }
  return args;
}

/** resources.requests.cpu as the kubelet turns it into cgroup v1 cpu.shares (MilliCPUToShares). */
function cpuShares(c: Obj): string[] {
  const cpu = c.resources?.requests?.cpu;
  if (cpu === undefined) return [];
  const milli = String(cpu).endsWith('m') ? Number(String(cpu).slice(0, -1)) : Number(cpu) * 1000;
  return [`--cpu-shares=${Math.max(2, Math.floor((milli * 1024) / 1000))}`];
}

/** The init containers (in order) and the containers of the DaemonSet's pod on one node. */
export function podRuns(ds: Obj, ctx: PodContext): ContainerRun[] {
  const pod = ds.spec.template.spec;
  if (!pod.hostNetwork) throw new Error('only hostNetwork pods are supported by this translation');
  if (pod.hostPID || pod.hostIPC) throw new Error('hostPID/hostIPC are not supported by this translation');
  const grace = Number(pod.terminationGracePeriodSeconds ?? 30);
  // The kubelet sets every volume up before the first container starts.
  for (const v of pod.volumes ?? []) if (v.hostPath) prepareHostPath(v.hostPath.path, v.hostPath.type, ctx);
  const runs: ContainerRun[] = [];
  for (const [init, list] of [[true, pod.initContainers ?? []], [false, pod.containers]] as const) {
    for (const c of list as Obj[]) {
      for (const k of Object.keys(c)) if (!KNOWN_CONTAINER_FIELDS.has(k)) throw new Error(`container ${c.name}: field ${k} is not supported by this translation`);
      const image = ctx.images[c.image];
      const run: ContainerRun = { name: c.name, init, image: image ?? c.image, args: [], graceSeconds: grace };
      if (!image) {
        run.skipped = `image ${c.image} is not available on this machine`;
        runs.push(run);
        continue;
      }
      const args = [
        '--pull=never',
        `--network=ns:/run/netns/${ctx.netns}`,
        `--hostname=${ctx.nodeName}`,
        ...ulimitArgs(),
        ...securityArgs(c, pod),
        ...mountArgs(c, pod, ctx),
        ...cpuShares(c),
        ...environment(c, ds, ctx).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
      ];
      if (!init) args.push(`--stop-timeout=${grace}`);
      // command replaces the image's ENTRYPOINT, args its CMD.
      if (c.command) args.push(`--entrypoint=${JSON.stringify(c.command)}`);
      args.push(image, ...(c.args ?? []));
      run.args = args;
      runs.push(run);
    }
  }
  return runs;
}
