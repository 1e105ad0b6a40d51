// A real etcd for tests: own temp dir, free ports, a unix socket for the test process, fault hooks.
// Every etcd started here is killed on stop(), and also when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';

export interface StartEtcdOptions {
  /** Data directory to use (kept on stop); default: a fresh one inside the helper's temp dir (removed). */
  dataDir?: string;
  /** Run etcd inside this network namespace (`ip netns exec`); needs root and `clientHost`. */
  netns?: string | { readonly name: string };
  /** Address etcd listens on for clients (port 2379) and peers (2380); default 127.0.0.1 on free ports. */
  clientHost?: string;
  /** Serve clients over TLS (https://, client certificates required); the unix socket stays plain. */
  tls?: { certFile: string; keyFile: string; caFile: string };
}

export interface EtcdServer {
  /** `http(s)://<host>:<port>`: for agents (in the namespace, when netns was given). */
  clientURL: string;
  /** `unix:///<abs dir>/etcd.sock:0`: reachable from this process whatever the namespace. */
  unixURL: string;
  dataDir: string;
  /** Current etcd process id (changes on restart). */
  readonly pid: number | undefined;
  /** Kills etcd (SIGTERM, then SIGKILL) and removes the helper's temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Freezes / thaws etcd (SIGSTOP / SIGCONT): connections stay open but nothing answers. */
  pause(): void;
  resume(): void;
  /** SIGKILL and wait for the exit; restart() brings it back on the same data dir and addresses. */
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** Compacts history up to `revision` (default: the current one); returns the revision compacted to. */
  compact(revision?: string): Promise<string>;
  /** The last lines of etcd's log. */
  logTail(lines?: number): string;
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const SOCKET_NAME = 'etcd.sock:0';
const SETPRIV = '/usr/bin/setpriv';

const live = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

/** Kills every etcd still running and removes its temp dir when the process exits (a forgotten stop()). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** A TCP port that was free a moment ago (bind port 0, read it, close). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not find a free port'));
      });
    });
  });
}

export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdServer> {
  if (options.netns && !options.clientHost) {
    throw new Error('startEtcd: netns needs clientHost (an address of that namespace)');
  }
  installExitHook();
  const workDir = mkdtempSync(join(tmpdir(), 'felt-etcd-'));
  liveDirs.add(workDir);
  const dataDir = options.dataDir ?? join(workDir, 'data');
  const logPath = join(workDir, 'etcd.log');
  const socketPath = join(workDir, SOCKET_NAME);
  const host = options.clientHost ?? '127.0.0.1';
  // An IPv6 address goes in brackets in a URL.
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const netns = typeof options.netns === 'string' ? options.netns : options.netns?.name;

  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let clientPort = 2379;
  let peerPort = 2380;

  const logTail = (lines = 30): string => {
    try {
      return readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  };

  const launch = (): void => {
    rmSync(socketPath, { force: true }); // a stale socket file makes the unix listener fail
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const client = `${options.tls ? 'https' : 'http'}://${urlHost}:${clientPort}`;
    const peer = `http://${urlHost}:${peerPort}`;
    const args = [
      '--name', 'felt-test',
      '--data-dir', dataDir,
      // The unix socket path is relative to etcd's cwd (workDir).
      '--listen-client-urls', `${client},unix://${SOCKET_NAME}`,
      '--advertise-client-urls', client,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `felt-test=${peer}`,
      '--initial-cluster-state', 'new',
    ];
    if (options.tls) {
      const { certFile, keyFile, caFile } = options.tls;
      args.push('--cert-file', certFile, '--key-file', keyFile, '--trusted-ca-file', caFile, '--client-cert-auth');
    }
    const logFd = openSync(logPath, 'a');
    try {
      // setpriv makes the kernel kill etcd if this process dies without stop() (e.g. SIGKILLed);
      // it and `ip netns exec` exec in place, so the pid is etcd's.
      const etcdArgv = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'KILL', '--', 'etcd', ...args] : ['etcd', ...args];
      const argv = netns ? ['ip', 'netns', 'exec', netns, ...etcdArgv] : etcdArgv;
      const proc = spawn(argv[0]!, argv.slice(1), { cwd: workDir, stdio: ['ignore', logFd, logFd] });
      live.add(proc);
      exited = new Promise<void>((resolve) => {
        proc.once('exit', () => {
          live.delete(proc);
          resolve();
        });
        proc.once('error', () => {
          live.delete(proc);
          resolve();
        });
      });
      child = proc;
    } finally {
      closeSync(logFd);
    }
  };

  const running = (): boolean => child !== undefined && child.exitCode === null && child.signalCode === null;

  const waitReady = async (): Promise<void> => {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (!running()) throw new Error(`etcd exited during start-up:\n${logTail()}`);
      if (existsSync(socketPath) && (await healthy(socketPath))) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd did not become healthy within ${READY_TIMEOUT_MS / 1000} s:\n${logTail()}`);
  };

  const killAndWait = async (signal: NodeJS.Signals): Promise<void> => {
    if (!running()) return;
    child!.kill('SIGCONT'); // a paused etcd cannot act on SIGTERM
    child!.kill(signal);
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_TIMEOUT_MS).unref());
    if ((await Promise.race([exited.then(() => 'exited' as const), timeout])) === 'timeout') {
      child!.kill('SIGKILL');
      await exited;
    }
  };

  const start = async (): Promise<void> => {
    // Free ports can be taken by someone else between the probe and etcd's bind: try a few times.
    for (let attempt = 1; ; attempt++) {
      if (!netns) {
        clientPort = await freePort(host);
        peerPort = await freePort(host);
      }
      launch();
      try {
        await waitReady();
        return;
      } catch (err) {
        await killAndWait('SIGKILL');
        const portClash = /address already in use/i.test(logTail());
        if (!portClash || netns || attempt >= 3) throw err;
      }
    }
  };

  try {
    await start();
  } catch (err) {
    rmSync(workDir, { recursive: true, force: true });
    liveDirs.delete(workDir);
    throw err;
  }

  const server: EtcdServer = {
    clientURL: `${options.tls ? 'https' : 'http'}://${urlHost}:${clientPort}`,
    unixURL: `unix://${socketPath}`,
    dataDir,
    get pid() {
      return running() ? child!.pid : undefined;
    },
    async stop() {
      await killAndWait('SIGTERM');
      // The data dir goes with workDir unless the caller gave their own.
      rmSync(workDir, { recursive: true, force: true });
      liveDirs.delete(workDir);
    },
    pause() {
      if (running()) child!.kill('SIGSTOP');
    },
    resume() {
      if (running()) child!.kill('SIGCONT');
    },
    async kill() {
      await killAndWait('SIGKILL');
    },
    async restart() {
      if (running()) throw new Error('etcd restart: it is still running (kill() it first)');
      // Same addresses: agents keep their endpoint. The ports were etcd's until kill(), so they are free.
      launch();
      await waitReady();
    },
    async compact(revision?: string) {
      const client = new Etcd3({ hosts: server.unixURL });
      try {
        const rev =
          revision ?? (await client.kv.range({ key: Buffer.from('\0'), count_only: true })).header.revision;
        await client.kv.compact({ revision: rev, physical: true });
        return rev;
      } finally {
        client.close();
      }
    },
    logTail,
  };
  return server;
}

/** GET /health over the unix socket: true once etcd has a leader and serves requests. */
function healthy(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/health', timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve(res.statusCode === 200 && body.includes('"true"')));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}
