// TCP transfer between two namespaces with a sha256 on each end (fixtures/tcp-sha.mjs run via
// `ip netns exec`): proves that every byte arrived intact, not just that packets flow.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { Netns } from './netns.js';

/** The repository root: the nearest ancestor with a package.json (works from test/ and dist/test/). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root (no package.json above testbed)');
    dir = up;
  }
}

export const TCP_FIXTURE = join(repoRoot(), 'test', 'testbed', 'fixtures', 'tcp-sha.mjs');

export interface TransferEnd {
  bytes: number;
  sha256: string;
}

export interface TransferResult {
  sent: TransferEnd;
  received: TransferEnd;
  /** Wall time from connect attempt to both ends done, ms. */
  elapsedMs: number;
}

export interface TransferOptions {
  port?: number;
  /** Kill both ends after this long (only there to catch hangs). Default 300 s. */
  timeoutMs?: number;
}

interface Proc {
  /** Resolves when the fixture exits 0, rejects with its stderr otherwise. */
  done: Promise<void>;
  child: ChildProcess;
  nextLine(): Promise<Record<string, unknown>>;
}

function watch(child: ChildProcess, label: string): Proc {
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<(v: Record<string, unknown>) => void> = [];
  let stderr = '';
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const obj = JSON.parse(line) as Record<string, unknown>;
        const w = waiters.shift();
        if (w) w(obj);
        else lines.push(obj);
      } catch {
        stderr += `unparsable line: ${line}\n`;
      }
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (stderr += c));
  const done = new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${label} failed (${signal ?? `exit ${code}`}): ${stderr.trim()}`));
    });
  });
  done.catch(() => undefined); // observed through nextLine() or awaited by the caller
  // Each JSON line the fixture prints, in order.
  const nextLine = (): Promise<Record<string, unknown>> => {
    const ready = lines.shift();
    if (ready) return Promise.resolve(ready);
    return Promise.race([new Promise<Record<string, unknown>>((r) => waiters.push(r)), done.then(() => {
      throw new Error(`${label} exited without output: ${stderr.trim()}`);
    })]);
  };
  return { done, child, nextLine };
}

function asEnd(obj: Record<string, unknown>, label: string): TransferEnd {
  if (typeof obj.bytes !== 'number' || typeof obj.sha256 !== 'string') {
    throw new Error(`${label}: unexpected output ${JSON.stringify(obj)}`);
  }
  return { bytes: obj.bytes, sha256: obj.sha256 };
}

/**
 * Sends `bytes` random bytes over TCP from `client` to a server in `server` listening on
 * `serverIP`, and returns what each end hashed. Does not judge: compare the results.
 */
export async function tcpTransfer(
  server: Netns,
  serverIP: string,
  client: Netns,
  bytes: number,
  opts: TransferOptions = {},
): Promise<TransferResult> {
  const port = opts.port ?? 0;
  const node = process.execPath;
  const srv = watch(server.spawn([node, TCP_FIXTURE, 'server', serverIP, String(port)]), `tcp server in ${server.name}`);
  let cli: Proc | undefined;
  const timer = setTimeout(() => {
    srv.child.kill('SIGKILL');
    cli?.child.kill('SIGKILL');
  }, opts.timeoutMs ?? 300_000);
  try {
    const listening = await srv.nextLine();
    const actualPort = Number(listening.listening);
    if (!Number.isInteger(actualPort) || actualPort <= 0) throw new Error(`tcp server: ${JSON.stringify(listening)}`);
    const start = Date.now();
    cli = watch(client.spawn([node, TCP_FIXTURE, 'client', serverIP, String(actualPort), String(bytes)]), `tcp client in ${client.name}`);
    const [sentObj, receivedObj] = await Promise.all([cli.nextLine(), srv.nextLine()]);
    await Promise.all([cli.done, srv.done]);
    return {
      sent: asEnd(sentObj, 'tcp client'),
      received: asEnd(receivedObj, 'tcp server'),
      elapsedMs: Date.now() - start,
    };
  } finally {
    clearTimeout(timer);
    if (srv.child.exitCode === null) srv.child.kill('SIGKILL');
    if (cli && cli.child.exitCode === null) cli.child.kill('SIGKILL');
  }
}
