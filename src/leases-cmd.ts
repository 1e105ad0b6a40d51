// `felt leases`: prints the lease table straight from the lease store, or from a running agent's /leases.
import { request } from 'node:http';
import type { LeasesSettings, StoreSettings } from './settings.js';
import { createLogger } from './log.js';
import { openLeaseStore } from './lease/open.js';
import { buildLeasesView, isLeasesView, type LeasesView } from './debug/view.js';
import { formatLeaseTable } from './debug/table.js';

export interface LeasesCommandOptions {
  /** Where the one-line error goes (default stderr). */
  err?: NodeJS.WritableStream;
  /** Give up on an unreachable source after this long (default 5 s). */
  timeoutMs?: number;
}

/** A failure with a message fit for one line. */
class SourceError extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SourceError(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  // grpc appends an empty "Resolution note:" to connection errors.
  return text.split('\n')[0]!.replace(/\s*Resolution note:\s*$/, '').trim() || 'unknown error';
}

/** "unix:/run/felt.sock", "http://127.0.0.1:8286" or "127.0.0.1:8286" -> request target. */
export function agentTarget(agent: string): { socketPath?: string; host?: string; port?: number; label: string } {
  if (agent.startsWith('unix:')) {
    const socketPath = agent.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (!socketPath.startsWith('/')) throw new SourceError(`--agent ${agent}: expected unix:/absolute/path`);
    return { socketPath, label: `unix:${socketPath}` };
  }
  let url: URL;
  try {
    url = new URL(/^[a-z]+:\/\//i.test(agent) ? agent : `http://${agent}`);
  } catch {
    throw new SourceError(`--agent ${agent}: expected http://host:port or unix:/path`);
  }
  if (url.protocol !== 'http:') throw new SourceError(`--agent ${agent}: only http:// and unix: are supported`);
  return { host: url.hostname, port: Number(url.port || 80), label: `${url.hostname}:${url.port || 80}` };
}

/** GET /leases?format=json from a running agent. */
export async function fromAgent(agent: string, timeoutMs: number): Promise<LeasesView> {
  const target = agentTarget(agent);
  const body = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const req = request(
        { socketPath: target.socketPath, host: target.host, port: target.port, path: '/leases?format=json', method: 'GET', headers: { Accept: 'application/json' } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => {
            if (res.statusCode === 200) resolve(text);
            else reject(new SourceError(`agent at ${target.label} answered ${res.statusCode}: ${text.trim().slice(0, 200)}`));
          });
          res.on('error', reject);
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new SourceError(`no answer within ${timeoutMs / 1000} s`)));
      req.on('error', reject);
      req.end();
    }),
    timeoutMs,
    `agent at ${target.label}`,
  ).catch((err: unknown) => {
    if (err instanceof SourceError && err.message.startsWith('agent')) throw err;
    throw new SourceError(`cannot reach the agent at ${target.label}: ${oneLine(err)}`);
  });
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new SourceError(`agent at ${target.label} did not answer JSON (is it a felt debug server?)`);
  }
  if (!isLeasesView(parsed)) throw new SourceError(`agent at ${target.label} answered an unexpected document (not a felt /leases)`);
  return parsed;
}

/** Where the store is, for messages. */
function storeLabel(settings: StoreSettings): string {
  return settings.kind === 'etcd' ? `etcd at ${settings.etcd.endpoints.join(',')}` : 'the Kubernetes API';
}

/** Lists the leases in the store (the view has no node, data path or agent state). */
async function fromStore(settings: StoreSettings, timeoutMs: number): Promise<LeasesView> {
  if (settings.kind === 'etcd' && settings.etcd.endpoints.length === 0) throw new SourceError('no etcd endpoints (--etcd-endpoints)');
  const label = storeLabel(settings);
  // The command prints its own one-line error.
  const store = await openLeaseStore(settings, createLogger('fatal'), { callTimeoutMs: timeoutMs });
  try {
    const { leases, revision } = await withTimeout(store.list(), timeoutMs, label).catch((err: unknown) => {
      throw new SourceError(`cannot list leases from ${label}: ${oneLine(err)}`);
    });
    const snapshot = {
      leases,
      store: { ...store.status(), connected: true, lastRevision: revision },
      leaseEvents: { added: 0, removed: 0, snapshots: 0, reacquired: 0 },
      startedAt: Date.now(),
    };
    return buildLeasesView(snapshot, null);
  } finally {
    // A client that never connected may hang on close: do not let it hold the command.
    await withTimeout(store.close(), 2000, 'closing the store client').catch(() => undefined);
  }
}

/**
 * Prints the lease table from the store (default) or from a running agent (--agent), as aligned text
 * or JSON (--json). Returns the exit code: 0, or 1 with a one-line error when the source fails.
 */
export async function runLeasesCommand(settings: LeasesSettings, out: NodeJS.WritableStream, options: LeasesCommandOptions = {}): Promise<number> {
  const err = options.err ?? process.stderr;
  const timeoutMs = options.timeoutMs ?? 5000;
  try {
    const view = settings.agent ? await fromAgent(settings.agent, timeoutMs) : await fromStore(settings.store, timeoutMs);
    out.write(settings.json ? `${JSON.stringify(view, null, 2)}\n` : formatLeaseTable(view));
    return 0;
  } catch (e) {
    err.write(`felt leases: ${oneLine(e)}\n`);
    return 1;
  }
}
