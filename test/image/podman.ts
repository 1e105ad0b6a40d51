// podman for the image tests, kept apart from the machine's own container settings: a private
// containers.conf (runc + cgroupfs: crun cannot drive hybrid cgroup hierarchies; ulimits within
// the current hard limits, since root may lack CAP_SYS_RESOURCE; no network unless asked for, no
// CNI config of the machine's)
// and a private image store under /tmp/felt-podman, which also caches the stand-in base images
// between runs. Every container started through here is removed on teardown and on process exit.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { registerExitCleanup, run, type ExecOptions, type ExecResult } from '../testbed/netns.js';

/** Everything podman keeps for these tests (images, containers, state). */
export const PODMAN_ROOT = process.env.FELT_PODMAN_ROOT ?? '/tmp/felt-podman';

function hardLimit(flag: '-Hn' | '-Hu'): number {
  const out = execFileSync('bash', ['-c', `ulimit ${flag}`], { encoding: 'utf8' }).trim();
  return out === 'unlimited' ? 1 << 20 : Number(out);
}

let envCache: NodeJS.ProcessEnv | undefined;

/** nofile/nproc at or below the current hard limits (podman's and buildah's defaults exceed them here). */
export function ulimitArgs(): string[] {
  const nofile = Math.min(hardLimit('-Hn'), 65536);
  // Below the hard limit podman's own processes end up with (lower than the shell's on some hosts).
  const nproc = Math.min(hardLimit('-Hu'), 16384);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

/** The environment every podman call gets: CONTAINERS_CONF and CONTAINERS_STORAGE_CONF of our own. */
export function podmanEnv(): NodeJS.ProcessEnv {
  if (envCache) return envCache;
  const dirs = ['storage', 'run', 'tmp', 'cni', 'volumes'].map((d) => join(PODMAN_ROOT, d));
  for (const d of dirs) mkdirSync(d, { recursive: true });
  const nofile = Math.min(hardLimit('-Hn'), 65536);
  const nproc = Math.min(hardLimit('-Hu'), 16384);
  const conf = join(PODMAN_ROOT, 'containers.conf');
  writeFileSync(conf, [
    '[containers]',
    // A container never joins podman's default bridge (it would put cni-podman0 and an address into
    // the host's namespace): the tests give --network=ns:... or --network=host explicitly.
    'netns = "none"',
    `default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]`,
    '[engine]',
    'runtime = "runc"',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    `events_logfile_path = "${join(PODMAN_ROOT, 'tmp', 'events.log')}"`,
    `tmp_dir = "${join(PODMAN_ROOT, 'tmp')}"`,
    `volume_path = "${join(PODMAN_ROOT, 'volumes')}"`,
    '[network]',
    'network_backend = "cni"',
    `network_config_dir = "${join(PODMAN_ROOT, 'cni')}"`,
    '',
  ].join('\n'));
  const storage = join(PODMAN_ROOT, 'storage.conf');
  writeFileSync(storage, [
    '[storage]',
    'driver = "overlay"',
    `graphroot = "${join(PODMAN_ROOT, 'storage')}"`,
    `runroot = "${join(PODMAN_ROOT, 'run')}"`,
    '',
  ].join('\n'));
  envCache = { ...process.env, CONTAINERS_CONF: conf, CONTAINERS_STORAGE_CONF: storage };
  return envCache;
}

/** `podman args...` with our configuration. */
export function podman(args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return run(['podman', ...args], { timeoutMs: 120_000, ...opts, env: podmanEnv() });
}

/** Containers created by this process and not yet removed (names). */
const liveContainers = new Set<string>();
let unregister: (() => void) | undefined;

/** Records a container name so that it is removed on cleanup and on process exit. */
export function trackContainer(name: string): void {
  liveContainers.add(name);
  unregister ??= registerExitCleanup(() => {
    for (const c of liveContainers) {
      try {
        execFileSync('podman', ['rm', '-f', '-t', '0', c], { stdio: 'ignore', env: podmanEnv(), timeout: 30_000 });
      } catch {
        // Best effort on exit.
      }
    }
    liveContainers.clear();
  });
}

/** Force-removes a container (kill, then delete) and forgets it. */
export async function removeContainer(name: string): Promise<void> {
  await podman(['rm', '-f', '-t', '0', '--ignore', name], { check: false });
  liveContainers.delete(name);
}

/** Removes every container this process started. */
export async function removeAllContainers(): Promise<void> {
  for (const c of [...liveContainers]) await removeContainer(c);
}

/**
 * Removes every container in the private store: all of them belong to these tests, so any found
 * at start-up are leftovers of an interrupted run.
 */
export async function removeLeftoverContainers(): Promise<string[]> {
  const out = (await podman(['ps', '-a', '--format', '{{.Names}}'])).stdout.split('\n').filter(Boolean);
  for (const c of out) await podman(['rm', '-f', '-t', '0', '--ignore', c], { check: false });
  return out;
}

export interface ContainerState {
  Status: string;
  Running: boolean;
  Pid: number;
  ExitCode: number;
  OOMKilled: boolean;
}

export async function inspectState(name: string): Promise<ContainerState> {
  const out = (await podman(['inspect', '--format', '{{json .State}}', name])).stdout;
  return JSON.parse(out) as ContainerState;
}

/** Waits for the container to exit; returns its exit code. */
export async function waitExit(name: string, timeoutMs = 120_000): Promise<number> {
  const out = (await podman(['wait', name], { timeoutMs })).stdout.trim();
  return Number(out.split('\n').pop());
}

export async function logsOf(name: string): Promise<string> {
  const r = await podman(['logs', name], { check: false });
  return r.stdout + r.stderr;
}
