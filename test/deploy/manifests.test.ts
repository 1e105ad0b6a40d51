// deploy/: every manifest parses and validates against the Kubernetes schema (kubernetes-models)
// with no unknown fields (the official client's model metadata), RBAC is exactly least privilege,
// the DaemonSet runs the UDP backend unprivileged with /dev/net/tun mounted, its command uses only
// flags felt accepts, the bundles match their kustomizations, and the Dockerfile is wired to them.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { DaemonSet } from 'kubernetes-models/apps/v1';
import { ClusterRole, ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { ConfigMap, Namespace, ServiceAccount } from 'kubernetes-models/v1';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseFlags } from '../../src/flags.js';
import { parseNetworkConfigText } from '../../src/lease/config.js';
import { formatSubnet } from '../../src/net/cidr.js';
import { repoRoot } from '../testbed/tcp.js';

type Obj = Record<string, any>;

const ROOT = repoRoot();
const DEPLOY = join(ROOT, 'deploy');

/** kubernetes-models class and client-node model name per apiVersion/kind. */
const KINDS: Record<string, { validate: (o: Obj) => void; model: string }> = {
  'v1/Namespace': { validate: (o) => new Namespace(o as never).validate(), model: 'V1Namespace' },
  'v1/ServiceAccount': { validate: (o) => new ServiceAccount(o as never).validate(), model: 'V1ServiceAccount' },
  'v1/ConfigMap': { validate: (o) => new ConfigMap(o as never).validate(), model: 'V1ConfigMap' },
  'apps/v1/DaemonSet': { validate: (o) => new DaemonSet(o as never).validate(), model: 'V1DaemonSet' },
  'rbac.authorization.k8s.io/v1/ClusterRole': { validate: (o) => new ClusterRole(o as never).validate(), model: 'V1ClusterRole' },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': { validate: (o) => new ClusterRoleBinding(o as never).validate(), model: 'V1ClusterRoleBinding' },
};

/** Every field must be one the API knows (a typo such as "hostNetwrok" would be silently dropped). */
function unknownFields(value: unknown, type: string, path: string): string[] {
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return Array.isArray(value) ? value.flatMap((v, i) => unknownFields(v, array[1]!, `${path}[${i}]`)) : [];
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => Array<{ baseName: string; type: string }> }>)[type];
  if (!model?.getAttributeTypeMap || typeof value !== 'object' || value === null) return [];
  const fields = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  return Object.entries(value).flatMap(([key, v]) => {
    const t = fields.get(key);
    return t === undefined ? [`${path}.${key}`] : unknownFields(v, t, `${path}.${key}`);
  });
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(name) ? [p] : [];
  });
}

function docsOf(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Obj;
  }).filter((d) => d !== null);
}

const keyOf = (o: Obj): string => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;

// ---- a tiny kustomize: exactly the features deploy/ uses, anything else is an error ---------------

function jsonPointerOps(doc: Obj, ops: Obj[]): void {
  for (const op of ops) {
    const parts = String(op.path).split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    const last = parts.pop()!;
    let parent: any = doc;
    for (const p of parts) {
      parent = parent?.[Array.isArray(parent) ? Number(p) : p];
      if (parent === undefined) throw new Error(`patch path ${op.path} does not exist`);
    }
    if (op.op === 'add') {
      if (Array.isArray(parent)) parent.splice(last === '-' ? parent.length : Number(last), 0, op.value);
      else parent[last] = op.value;
    } else if (op.op === 'replace') {
      if (!(last in parent)) throw new Error(`replace: ${op.path} does not exist`);
      parent[Array.isArray(parent) ? Number(last) : last] = op.value;
    } else if (op.op === 'remove') {
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
    } else {
      throw new Error(`unsupported JSON patch op ${op.op}`);
    }
  }
}

function kustomize(dir: string): Obj[] {
  const k = parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Obj;
  const supported = new Set(['apiVersion', 'kind', 'resources', 'patches', 'images']);
  for (const key of Object.keys(k)) if (!supported.has(key)) throw new Error(`${dir}: kustomization field "${key}" is not supported by the test renderer`);
  let docs: Obj[] = [];
  for (const r of k.resources ?? []) {
    const p = resolve(dir, r);
    docs.push(...(statSync(p).isDirectory() ? kustomize(p) : docsOf(p)));
  }
  for (const patch of k.patches ?? []) {
    const body = parseYaml(patch.patch);
    if (patch.target) {
      const targets = docs.filter((d) => d.kind === patch.target.kind && d.metadata.name === patch.target.name);
      if (targets.length !== 1) throw new Error(`patch target ${JSON.stringify(patch.target)} matches ${targets.length} objects`);
      jsonPointerOps(targets[0]!, body as Obj[]);
    } else if ((body as Obj).$patch === 'delete') {
      const before = docs.length;
      docs = docs.filter((d) => !(d.kind === body.kind && d.metadata.name === body.metadata.name));
      if (docs.length !== before - 1) throw new Error(`delete patch for ${body.kind}/${body.metadata.name} matched nothing`);
    } else {
      throw new Error('only JSON6902 patches with a target and $patch: delete are supported by the test renderer');
    }
  }
  for (const img of k.images ?? []) {
    for (const d of docs) {
      const spec = d.spec?.template?.spec;
      for (const c of [...(spec?.initContainers ?? []), ...(spec?.containers ?? [])]) {
        const [name, tag] = String(c.image).split(':');
        if (name === img.name) c.image = `${img.newName ?? name}:${img.newTag ?? tag}`;
      }
    }
  }
  return docs;
}

const byKey = (docs: Obj[]) => new Map(docs.map((d) => [keyOf(d), d]));
const find = (docs: Obj[], kind: string, name?: string): Obj => {
  const d = docs.find((x) => x.kind === kind && (name === undefined || x.metadata.name === name));
  if (!d) throw new Error(`no ${kind} ${name ?? ''}`);
  return d;
};

const kubeDocs = kustomize(DEPLOY);
const etcdDocs = kustomize(join(DEPLOY, 'etcd'));

describe('deploy/ manifests', () => {
  const files = yamlFiles(DEPLOY).filter((f) => !f.endsWith('kustomization.yaml'));

  it('has the kube-mode bundle, the etcd overlay and its bundle', () => {
    const names = files.map((f) => relative(DEPLOY, f)).sort();
    expect(names).toEqual(expect.arrayContaining(['felt.yaml', 'etcd/felt-etcd.yaml', 'base/daemonset.yaml', 'base/rbac.yaml']));
  });

  for (const file of files) {
    it(`${relative(ROOT, file)}: every object validates against the Kubernetes schema, with no unknown fields`, () => {
      const docs = docsOf(file);
      expect(docs.length).toBeGreaterThan(0);
      for (const d of docs) {
        const kind = KINDS[`${d.apiVersion}/${d.kind}`];
        if (!kind) throw new Error(`${file}: unexpected ${d.apiVersion} ${d.kind}`);
        kind.validate(d);
        expect(unknownFields(d, kind.model, `${d.kind}/${d.metadata?.name}`)).toEqual([]);
      }
    });
  }

  it('the unknown-field check catches a typo', () => {
    const ds = structuredClone(find(kubeDocs, 'DaemonSet'));
    ds.spec.template.spec.hostNetwrok = true;
    expect(unknownFields(ds, 'V1DaemonSet', 'ds')).toEqual(['ds.spec.template.spec.hostNetwrok']);
  });

  it('deploy/felt.yaml is exactly what deploy/kustomization.yaml renders', () => {
    expect(byKey(docsOf(join(DEPLOY, 'felt.yaml')))).toEqual(byKey(kubeDocs));
  });

  it('deploy/etcd/felt-etcd.yaml is exactly what deploy/etcd/kustomization.yaml renders', () => {
    expect(byKey(docsOf(join(DEPLOY, 'etcd', 'felt-etcd.yaml')))).toEqual(byKey(etcdDocs));
  });
});

describe('RBAC (Kubernetes mode)', () => {
  it('grants exactly nodes get/list/watch, nodes/status patch and pods get', () => {
    const role = find(kubeDocs, 'ClusterRole', 'felt');
    const rules = (role.rules as Obj[]).map((r) => ({ apiGroups: r.apiGroups, resources: [...r.resources].sort(), verbs: [...r.verbs].sort(), other: Object.keys(r).filter((key) => !['apiGroups', 'resources', 'verbs'].includes(key)) }));
    expect(rules).toEqual([
      { apiGroups: [''], resources: ['pods'], verbs: ['get'], other: [] },
      { apiGroups: [''], resources: ['nodes'], verbs: ['get', 'list', 'watch'], other: [] },
      { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'], other: [] },
    ]);
    expect(role.aggregationRule).toBeUndefined();
  });

  it('binds the role to the DaemonSet\'s ServiceAccount, in the felt namespace', () => {
    const ns = find(kubeDocs, 'Namespace').metadata.name;
    const sa = find(kubeDocs, 'ServiceAccount');
    const binding = find(kubeDocs, 'ClusterRoleBinding', 'felt');
    expect(sa.metadata.namespace).toBe(ns);
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'felt' });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: ns }]);
    expect(find(kubeDocs, 'DaemonSet').spec.template.spec.serviceAccountName).toBe(sa.metadata.name);
    for (const d of kubeDocs) if (!['Namespace', 'ClusterRole', 'ClusterRoleBinding'].includes(d.kind)) expect(d.metadata.namespace).toBe(ns);
    // The host network, hostPath and NET_ADMIN need the "privileged" Pod Security level.
    expect(find(kubeDocs, 'Namespace').metadata.labels['pod-security.kubernetes.io/enforce']).toBe('privileged');
  });

  it('the etcd variant has no Kubernetes API permissions and mounts no token', () => {
    expect(etcdDocs.filter((d) => d.kind === 'ClusterRole' || d.kind === 'ClusterRoleBinding')).toEqual([]);
    expect(find(etcdDocs, 'DaemonSet').spec.template.spec.automountServiceAccountToken).toBe(false);
  });
});

for (const [mode, docs] of [['Kubernetes mode', kubeDocs], ['etcd mode', etcdDocs]] as const) {
  describe(`DaemonSet, ${mode}`, () => {
    const ds = find(docs, 'DaemonSet');
    const pod = ds.spec.template.spec;
    const felt = (pod.containers as Obj[]).find((c) => c.name === 'felt')!;
    const volume = (name: string): Obj => (pod.volumes as Obj[]).find((v) => v.name === name)!;
    const mountOf = (c: Obj, path: string): Obj | undefined => (c.volumeMounts as Obj[] | undefined)?.find((m) => m.mountPath === path);

    it('runs on every Linux node, on the host network, as a node-critical pod', () => {
      expect(pod.hostNetwork).toBe(true);
      expect(pod.priorityClassName).toBe('system-node-critical');
      expect(pod.tolerations).toEqual([{ operator: 'Exists', effect: 'NoSchedule' }]);
      expect(pod.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions).toEqual([{ key: 'kubernetes.io/os', operator: 'In', values: ['linux'] }]);
      expect(ds.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'felt' });
      expect(ds.spec.template.metadata.labels).toMatchObject(ds.spec.selector.matchLabels);
    });

    it('is restricted: every capability dropped but NET_ADMIN and NET_RAW, no escalation, read-only root, RuntimeDefault seccomp', () => {
      for (const c of [...(pod.initContainers ?? []), ...pod.containers] as Obj[]) {
        expect(c.securityContext?.privileged ?? false).toBe(false);
        expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, seccompProfile: { type: 'RuntimeDefault' } });
        expect(c.securityContext.capabilities.drop).toEqual(['ALL']);
      }
      for (const c of pod.initContainers as Obj[]) expect(c.securityContext.capabilities.add).toBeUndefined();
      expect(felt.securityContext).toEqual({
        privileged: false,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] },
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.hostPID ?? false).toBe(false);
      expect(pod.hostIPC ?? false).toBe(false);
    });

    it('mounts /dev/net/tun from the host as a character device (flannel-io/flannel#1267)', () => {
      const m = mountOf(felt, '/dev/net/tun')!;
      expect(m).toBeDefined();
      expect(volume(m.name).hostPath).toEqual({ path: '/dev/net/tun', type: 'CharDevice' });
    });

    it('mounts /run/flannel, the CNI directories and the xtables lock', () => {
      expect(volume(mountOf(felt, '/run/flannel')!.name).hostPath).toEqual({ path: '/run/flannel', type: 'DirectoryOrCreate' });
      expect(volume(mountOf(felt, '/run/xtables.lock')!.name).hostPath).toEqual({ path: '/run/xtables.lock', type: 'FileOrCreate' });
      const [plugin, conf] = pod.initContainers as Obj[];
      expect(plugin.name).toBe('install-cni-plugin');
      expect(plugin.args).toEqual(['-f', '/flannel', '/opt/cni/bin/flannel']);
      expect(volume(mountOf(plugin!, '/opt/cni/bin')!.name).hostPath).toEqual({ path: '/opt/cni/bin', type: 'DirectoryOrCreate' });
      expect(conf.name).toBe('install-cni');
      expect(volume(mountOf(conf!, '/etc/cni/net.d')!.name).hostPath).toEqual({ path: '/etc/cni/net.d', type: 'DirectoryOrCreate' });
      const script = [...conf.command, ...conf.args].join(' ');
      expect(script).toMatch(/cp -f \/etc\/kube-flannel\/cni-conf\.json \S+ && mv -f \S+ \/etc\/cni\/net\.d\/10-flannel\.conflist/);
      expect(volume(mountOf(conf!, '/etc/kube-flannel/')!.name).configMap.name).toBe('felt-cfg');
    });

    it('starts `felt run` with flags felt accepts, probes /healthz and /readyz on --healthz-port', () => {
      const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
      const entrypoint = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
      expect(felt.command).toEqual(entrypoint);
      // The environment the container gets: plain values and whole ConfigMaps (etcd mode).
      const env: Record<string, string> = {};
      for (const from of felt.envFrom ?? []) Object.assign(env, find(docs, 'ConfigMap', from.configMapRef.name).data);
      for (const e of felt.env ?? []) if (typeof e.value === 'string') env[e.name] = e.value;
      const flags = parseFlags('run', felt.args, env);
      expect(flags['ip-masq']).toBe(true);
      expect(flags['healthz-port']).toBe(8081);
      expect(felt.livenessProbe.httpGet).toEqual({ path: '/healthz', port: flags['healthz-port'] });
      expect(felt.readinessProbe.httpGet).toEqual({ path: '/readyz', port: flags['healthz-port'] });
      expect(felt.resources.requests).toEqual({ cpu: '100m', memory: '100Mi' });
      expect(felt.resources.limits).toBeUndefined();
      if (mode === 'Kubernetes mode') {
        expect(flags['kube-subnet-mgr']).toBe(true);
        // The net-conf.json it reads is the ConfigMap's, mounted where the flag points.
        const confDir = mountOf(felt, '/etc/kube-flannel/')!;
        expect(volume(confDir.name).configMap.name).toBe('felt-cfg');
        expect(flags['net-config-path']).toBe('/etc/kube-flannel/net-conf.json');
      } else {
        expect(flags['kube-subnet-mgr']).toBe(false);
        expect(flags['etcd-endpoints']).toBe('https://192.0.2.10:2379');
        expect(flags['etcd-prefix']).toBe('/coreos.com/network');
        expect(flags['etcd-cafile']).toBe('');
        expect(volume(mountOf(felt, '/etc/felt/etcd-tls')!.name).secret).toEqual({ secretName: 'felt-etcd-tls', optional: true });
      }
    });

    it('gives the node name and pod identity through the downward API', () => {
      const fieldOf = (name: string) => (felt.env as Obj[]).find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath;
      expect(fieldOf('NODE_NAME')).toBe('spec.nodeName');
      expect(fieldOf('POD_NAME')).toBe('metadata.name');
      expect(fieldOf('POD_NAMESPACE')).toBe('metadata.namespace');
    });

    it('uses one felt image for the agent and the CNI config installer', () => {
      const images = new Set([felt.image, (pod.initContainers as Obj[])[1]!.image]);
      expect([...images]).toEqual(['felt:0.1.0']);
    });
  });
}

describe('ConfigMap', () => {
  const cm = find(kubeDocs, 'ConfigMap', 'felt-cfg');

  it('net-conf.json is a valid felt network config for the UDP backend', () => {
    const cfg = parseNetworkConfigText(cm.data['net-conf.json'], { applySubnetDefaults: false });
    expect(cfg.backendType).toBe('udp');
    expect(cfg.port).toBe(8285);
    expect(formatSubnet(cfg.network!)).toBe('10.244.0.0/16');
  });

  it('cni-conf.json is a conflist for the flannel CNI plugin (plus portmap)', () => {
    const conf = JSON.parse(cm.data['cni-conf.json']) as Obj;
    expect(conf.name).toBe('cbr0');
    expect(conf.cniVersion).toBe('0.3.1');
    expect(conf.plugins.map((p: Obj) => p.type)).toEqual(['flannel', 'portmap']);
    expect(conf.plugins[0].delegate).toEqual({ hairpinMode: true, isDefaultGateway: true });
  });
});

describe('Dockerfile and .dockerignore', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const froms = [...dockerfile.matchAll(/^FROM (\S+)(?: AS (\S+))?$/gm)].map((m) => [m[1], m[2]]);

  it('builds in node:20-bookworm (npm ci compiles the addon, npm run build) and runs in a slim image with iptables', () => {
    expect(froms).toEqual([['node:20-bookworm', 'build'], ['node:20-bookworm-slim', undefined]]);
    const [build, runtime] = dockerfile.split(/^FROM node:20-bookworm-slim$/m) as [string, string];
    expect(build).toMatch(/^RUN npm ci\b/m);
    expect(build).toMatch(/npm run build:image/);
    expect(build).toMatch(/test -f build\/Release\/felt\.node/);
    expect(runtime).toMatch(/apt-get install -y --no-install-recommends iptables/);
    expect(runtime).toMatch(/COPY --from=build \/src\/build\/Release\/felt\.node \.\/build\/Release\/felt\.node/);
    expect(runtime).toMatch(/^ENTRYPOINT \["node", "\/app\/dist\/src\/cli\.js", "run"\]$/m);
  });

  it('copies only paths that exist and the image\'s TypeScript build (src/ alone) needs', () => {
    const tsconfig = JSON.parse(readFileSync(join(ROOT, 'tsconfig.image.json'), 'utf8')) as { include: string[] };
    expect(tsconfig.include).toEqual(['src/**/*.ts']);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts['build:image']).toBe('tsc -p tsconfig.image.json');
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/));
    for (const p of copied) expect(statSync(join(ROOT, p)), p).toBeTruthy();
    for (const inc of tsconfig.include) {
      const top = inc.split('/**')[0]!;
      expect(copied.some((c) => top === c || top.startsWith(`${c}/`)), `${inc} is copied`).toBe(true);
    }
  });

  it('.dockerignore keeps local build output out of the context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
    for (const p of ['node_modules', 'dist', 'build', '.git']) expect(ignored).toContain(p);
  });
});
