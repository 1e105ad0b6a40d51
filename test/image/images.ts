// The images the image test needs: local stand-ins for the base images the Dockerfile names (no
// registry is reachable from the test machines), then felt's own image built from the repository's
// Dockerfile with --pull=never.
//
// Stand-ins (the real build uses the official images):
//   node:20-bookworm-slim  debootstrap --variant=minbase bookworm + this machine's Node.js 20 at the
//                          official image's paths (/usr/local/bin/node, /usr/local/lib/node_modules/npm,
//                          /usr/local/include/node)
//   node:20-bookworm       the slim stand-in + python3, make and g++ (what node-gyp needs; the official
//                          image is buildpack-deps, with far more build tools)
// Both are cached in the private podman store, keyed by everything they are made from.
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { run } from '../testbed/netns.js';
import { podman, ulimitArgs } from './podman.js';

/** Bump when the recipe below changes, so cached stand-ins are rebuilt. */
const STANDIN_RECIPE = 3;
const SUITE = 'bookworm';
const MIRROR = process.env.FELT_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const SECURITY_MIRROR = process.env.FELT_DEBIAN_SECURITY_MIRROR ?? 'http://deb.debian.org/debian-security';
const KEY_LABEL = 'felt.test.standin-key';

export interface BaseImages {
  /** Fully qualified names, e.g. docker.io/library/node:20-bookworm */
  build: string;
  runtime: string;
  /** Whether they were built in this run (false: reused from the cache). */
  built: boolean;
  seconds: number;
}

/** The FROM images of a Dockerfile, in order (stage names skipped). */
export function dockerfileBases(dockerfile: string): string[] {
  const stages = new Set<string>();
  const out: string[] = [];
  for (const m of dockerfile.matchAll(/^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$/gim)) {
    if (!stages.has(m[1]!)) out.push(m[1]!);
    if (m[2]) stages.add(m[2]);
  }
  return out;
}

/** "node:20-bookworm" -> "docker.io/library/node:20-bookworm" (how podman stores a Docker Hub short name). */
export function qualify(name: string): string {
  const [repo] = name.split(':');
  if (repo!.includes('/') && repo!.split('/')[0]!.includes('.')) return name;
  return repo!.includes('/') ? `docker.io/${name}` : `docker.io/library/${name}`;
}

function standinKey(): string {
  const npmPkg = JSON.parse(readFileSync(join(npmDir(), 'package.json'), 'utf8')) as { version: string };
  return createHash('sha256')
    .update(JSON.stringify({ STANDIN_RECIPE, SUITE, MIRROR, SECURITY_MIRROR, node: process.version, npm: npmPkg.version }))
    .digest('hex')
    .slice(0, 16);
}

/** The machine's npm (next to the node binary: <prefix>/lib/node_modules/npm). */
function npmDir(): string {
  const prefix = dirname(dirname(realpathSync(process.execPath)));
  const dir = join(prefix, 'lib', 'node_modules', 'npm');
  if (!existsSync(join(dir, 'package.json'))) throw new Error(`stand-in: cannot find npm at ${dir}`);
  return dir;
}

function nodeHeaders(): string {
  const prefix = dirname(dirname(realpathSync(process.execPath)));
  const dir = join(prefix, 'include', 'node');
  if (!existsSync(join(dir, 'node_api.h'))) throw new Error(`stand-in: cannot find Node.js headers at ${dir}`);
  return dir;
}

async function labelOf(image: string): Promise<string | undefined> {
  const r = await podman(['image', 'inspect', '--format', `{{index .Labels "${KEY_LABEL}"}}`, image], { check: false });
  return r.code === 0 ? r.stdout.trim() : undefined;
}

/**
 * Makes sure stand-ins for the Dockerfile's base images exist under the exact names it uses.
 * Only node:20-bookworm and node:20-bookworm-slim are known: any other FROM is an error.
 */
export async function ensureBaseImages(dockerfile: string): Promise<BaseImages> {
  const bases = dockerfileBases(dockerfile);
  const major = process.versions.node.split('.')[0];
  const known = [`node:${major}-${SUITE}`, `node:${major}-${SUITE}-slim`];
  for (const b of bases) {
    if (!known.includes(b)) throw new Error(`stand-in: the Dockerfile uses ${b}; stand-ins exist for ${known.join(' and ')} (this machine runs Node.js ${process.version})`);
  }
  const [build, runtime] = known.map(qualify) as [string, string];
  const key = standinKey();
  const started = Date.now();
  let built = false;
  if ((await labelOf(runtime)) !== key) {
    await buildSlim(runtime, key);
    built = true;
  }
  if (built || (await labelOf(build)) !== key) {
    await buildFull(runtime, build, key);
    built = true;
  }
  return { build, runtime, built, seconds: Math.round((Date.now() - started) / 1000) };
}

/** debootstrap minbase + Node.js, imported as the slim image. */
async function buildSlim(name: string, key: string): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'felt-standin-'));
  try {
    const rootfs = join(work, 'rootfs');
    await run(['debootstrap', '--variant=minbase', SUITE, rootfs, MIRROR], { timeoutMs: 900_000 });
    // As the official Debian images: deb822 sources with updates and security, no package lists.
    rmSync(join(rootfs, 'etc/apt/sources.list'), { force: true });
    writeFileSync(join(rootfs, 'etc/apt/sources.list.d/debian.sources'), [
      `Types: deb\nURIs: ${MIRROR}\nSuites: ${SUITE} ${SUITE}-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`,
      `Types: deb\nURIs: ${SECURITY_MIRROR}\nSuites: ${SUITE}-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n`,
    ].join('\n'));
    // The apt and dpkg settings the official Debian images carry (debuerreotype): no caches, and for
    // -slim no documentation, man pages or translations.
    const apt = join(rootfs, 'etc/apt/apt.conf.d');
    const clean = 'rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true';
    writeFileSync(join(apt, 'docker-clean'), `DPkg::Post-Invoke { "${clean}"; };\nAPT::Update::Post-Invoke { "${clean}"; };\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n`);
    writeFileSync(join(apt, 'docker-no-languages'), 'Acquire::Languages "none";\n');
    writeFileSync(join(apt, 'docker-gzip-indexes'), 'Acquire::GzipIndexes "true";\n');
    writeFileSync(join(apt, 'docker-autoremove-suggests'), 'Apt::AutoRemove::SuggestsImportant "false";\n');
    writeFileSync(join(rootfs, 'etc/dpkg/dpkg.cfg.d/docker'), ['/usr/share/doc/*', '/usr/share/groff/*', '/usr/share/info/*', '/usr/share/linda/*', '/usr/share/lintian/overrides/*', '/usr/share/locale/*', '/usr/share/man/*']
      .map((p) => `path-exclude ${p}`).concat(['path-include /usr/share/doc/*/copyright']).join('\n') + '\n');
    await run(['sh', '-c', `cd ${rootfs} && find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete; rm -rf usr/share/man/* usr/share/locale/* usr/share/info/* usr/share/groff/*`]);
    for (const d of ['var/lib/apt/lists', 'var/cache/apt']) {
      rmSync(join(rootfs, d), { recursive: true, force: true });
      mkdirSync(join(rootfs, d, d.endsWith('lists') ? 'partial' : 'archives/partial'), { recursive: true });
    }
    // Node.js where the official node images keep it.
    const local = join(rootfs, 'usr/local');
    mkdirSync(join(local, 'bin'), { recursive: true });
    mkdirSync(join(local, 'lib/node_modules'), { recursive: true });
    mkdirSync(join(local, 'include'), { recursive: true });
    cpSync(realpathSync(process.execPath), join(local, 'bin/node'));
    cpSync(npmDir(), join(local, 'lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
    cpSync(nodeHeaders(), join(local, 'include/node'), { recursive: true });
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin/npm'));
    symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin/npx'));
    const tar = join(work, 'rootfs.tar');
    await run(['tar', '--numeric-owner', '-C', rootfs, '-cf', tar, '.'], { timeoutMs: 300_000 });
    await podman([
      'import',
      '--change', 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      '--change', `ENV NODE_VERSION=${process.versions.node}`,
      '--change', `LABEL ${KEY_LABEL}=${key}`,
      '--change', 'CMD ["node"]',
      tar, name,
    ], { timeoutMs: 300_000 });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The slim stand-in plus the compilers node-gyp needs, as the full image. */
async function buildFull(slim: string, name: string, key: string): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'felt-standin-'));
  try {
    writeFileSync(join(work, 'Containerfile'), [
      `FROM ${slim}`,
      'RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*',
      `LABEL ${KEY_LABEL}=${key}`,
      '',
    ].join('\n'));
    // Host network: RUN steps reach the mirror without podman creating a bridge on the host.
    await podman(['build', '--pull=never', '--network=host', ...ulimitArgs(), '-t', name, work], { timeoutMs: 900_000 });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface FeltImage {
  name: string;
  seconds: number;
  /** Bytes, as podman reports the image. */
  size: number;
  log: string;
}

/** The CA bundle npm uses on this machine (its cafile setting), if any: the build needs it behind a TLS-intercepting proxy. */
function hostCABundle(): string | undefined {
  for (const candidate of [process.env.npm_config_cafile, '/etc/ssl/certs/ca-certificates.crt']) {
    if (candidate && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Builds the repository's Dockerfile, unchanged, as `name`. What only this machine needs is given
 * from outside: the host's CA bundle (read-only) with an npmrc pointing npm's cafile at it, mounted
 * into every RUN step, and the host network for the RUN steps.
 */
export async function buildFeltImage(root: string, name: string): Promise<FeltImage> {
  const work = mkdtempSync(join(tmpdir(), 'felt-build-'));
  try {
    const mounts: string[] = [];
    const ca = hostCABundle();
    if (ca) {
      writeFileSync(join(work, 'npmrc'), 'cafile=/run/felt-build/ca.crt\n');
      mounts.push('--volume', `${ca}:/run/felt-build/ca.crt:ro`, '--volume', `${join(work, 'npmrc')}:/usr/local/etc/npmrc:ro`);
    }
    const started = Date.now();
    const r = await podman(['build', '--pull=never', '--network=host', ...ulimitArgs(), ...mounts, '-f', join(root, 'Dockerfile'), '-t', name, root], { timeoutMs: 1_800_000 });
    const seconds = Math.round((Date.now() - started) / 1000);
    const size = Number((await podman(['image', 'inspect', '--format', '{{.Size}}', name])).stdout.trim());
    return { name, seconds, size, log: r.stdout + r.stderr };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

