// The debug HTTP server: /healthz, /readyz, /leases (JSON, HTML, plain text) and /metrics.
// It listens on host:port or on a unix socket (unix:/path) and only reads through AgentState.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { lstat, unlink } from 'node:fs/promises';
import type { AgentState } from '../agent-state.js';
import type { Logger } from '../log.js';
import { createAgentMetrics, type AgentMetrics } from './metrics.js';
import { renderLeasesPage } from './html.js';
import { formatLeaseTable } from './table.js';
import { buildLeasesView } from './view.js';

export interface DebugServer {
  /** "127.0.0.1:8286" (the bound port, also when 0 was asked for) or "unix:/path". */
  address: string;
  close(): Promise<void>;
}

export interface DebugServerOptions {
  /** 'health': serve only /healthz and /readyz (flanneld's --healthz-ip/--healthz-port server). */
  only?: 'health';
}

export type ListenAddress = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

/** Parses "host:port" (IPv4 or localhost; ":port" means all interfaces) or "unix:/path". */
export function parseListenAddress(addr: string): ListenAddress {
  const text = addr.trim();
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length);
    if (!path.startsWith('/')) throw new Error(`invalid debug address "${addr}": expected unix:/absolute/path`);
    return { kind: 'unix', path };
  }
  const m = /^([0-9.]*|localhost):(\d{1,5})$/.exec(text);
  if (!m) throw new Error(`invalid debug address "${addr}": expected host:port (IPv4) or unix:/path`);
  const host = m[1] || '0.0.0.0';
  if (host !== 'localhost' && !/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(host)) {
    throw new Error(`invalid debug address "${addr}": "${host}" is not an IPv4 address`);
  }
  if (host !== 'localhost' && host.split('.').some((o) => Number(o) > 255)) {
    throw new Error(`invalid debug address "${addr}": "${host}" is not an IPv4 address`);
  }
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`invalid debug address "${addr}": port ${port} is above 65535`);
  return { kind: 'tcp', host, port };
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  res.end(body); // for HEAD, node:http sends the headers only
}

function sendJSON(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(value, null, 2)}\n`, headers);
}

type LeasesFormat = 'json' | 'html' | 'table';

function leasesFormat(req: IncomingMessage, url: URL): LeasesFormat {
  const asked = url.searchParams.get('format');
  if (asked !== null) {
    if (asked === 'json' || asked === 'html' || asked === 'table') return asked;
    if (asked === 'text') return 'table';
    throw new HttpError(400, `unknown format "${asked}" (json, html or table)`);
  }
  return (req.headers.accept ?? '').includes('text/html') ? 'html' : 'json';
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void;

function routes(state: AgentState, metrics: AgentMetrics | undefined): Map<string, Handler> {
  const table = new Map<string, Handler>([
    ['/healthz', (_req, res) => send(res, 200, 'text/plain; charset=utf-8', 'ok\n')],
    [
      '/readyz',
      (_req, res) => {
        if (state.ready()) send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
        else send(res, 503, 'text/plain; charset=utf-8', 'not ready\n');
      },
    ],
  ]);
  if (!metrics) return table;

  table.set('/leases', (req, res, url) => {
    const format = leasesFormat(req, url);
    const view = buildLeasesView(state.snapshot(), state.ready());
    if (format === 'html') send(res, 200, 'text/html; charset=utf-8', renderLeasesPage(view), { Vary: 'Accept' });
    else if (format === 'table') send(res, 200, 'text/plain; charset=utf-8', formatLeaseTable(view), { Vary: 'Accept' });
    else sendJSON(res, 200, view, { Vary: 'Accept' });
  });
  table.set('/metrics', async (_req, res) => {
    const body = await metrics.render();
    send(res, 200, metrics.contentType, body);
  });
  table.set('/', (_req, res) => {
    res.writeHead(302, { Location: '/leases', 'Content-Length': 0 });
    res.end();
  });
  return table;
}

async function removeStaleSocket(path: string): Promise<void> {
  let info;
  try {
    info = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!info.isSocket()) throw new Error(`debug socket path ${path} exists and is not a socket; refusing to remove it`);
  // A socket someone still answers on belongs to a live process: do not steal it.
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`debug socket ${path} is in use by another process`);
  await unlink(path);
}

function listen(server: Server, where: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (where.kind === 'unix') server.listen(where.path, done);
    else server.listen(where.port, where.host, done);
  });
}

/**
 * Starts the debug server on `addr` ("host:port" or "unix:/path"). With `only: 'health'` it serves
 * /healthz and /readyz alone. Rejects with a clear error when the address is invalid or taken.
 */
export async function startDebugServer(addr: string, state: AgentState, log: Logger, options: DebugServerOptions = {}): Promise<DebugServer> {
  const where = parseListenAddress(addr);
  const metrics = options.only === 'health' ? undefined : createAgentMetrics(state);
  const table = routes(state, metrics);

  const server = createServer((req, res) => {
    const handle = async () => {
      const url = new URL(req.url ?? '/', 'http://felt.invalid');
      const handler = table.get(url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname);
      if (!handler) throw new HttpError(404, `no such path ${url.pathname} (try ${[...table.keys()].filter((p) => p !== '/').join(', ')})`);
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        throw new HttpError(405, `method ${req.method} not allowed (GET or HEAD)`, { Allow: 'GET, HEAD' });
      }
      await handler(req, res, url);
    };
    handle().catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      if (status === 500) log.warn({ err, path: req.url }, 'debug server handler failed');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendJSON(res, status, { error: message, status }, err instanceof HttpError ? err.headers : {});
    });
  });
  // Requests are tiny; do not let a slow client hold a socket for long.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  if (where.kind === 'unix') await removeStaleSocket(where.path);
  try {
    await listen(server, where);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new Error(`debug server cannot listen on ${addr}: ${code === 'EADDRINUSE' ? 'address already in use' : (err as Error).message}`);
  }

  let address: string;
  if (where.kind === 'unix') {
    address = `unix:${where.path}`;
  } else {
    const bound = server.address();
    address = typeof bound === 'object' && bound ? `${bound.address}:${bound.port}` : addr;
  }
  log.debug({ address, only: options.only ?? 'all' }, options.only === 'health' ? 'health server listening' : 'debug server listening');

  let closing: Promise<void> | undefined;
  return {
    address,
    close() {
      closing ??= (async () => {
        await new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        });
        if (where.kind === 'unix') await unlink(where.path).catch(() => undefined);
      })();
      return closing;
    },
  };
}
