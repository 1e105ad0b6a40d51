// Access to the Kubernetes API: @kubernetes/client-node supplies the configuration (in-cluster
// service account, kubeconfig files, every auth plugin); the few HTTP calls and the watch stream
// are made here directly so that errors, timeouts and aborts stay under our control (its Watch
// cannot be aborted before the response headers arrive, and refuses http:// servers).
import http from 'node:http';
import https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import { PermanentError } from '../types.js';
import { isObj, type Obj } from './annotations.js';

/** An error answer from the API server, with its Status reason. */
export class KubeApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** Codes of requests that are wrong or not allowed: retrying cannot help. */
const PERMANENT_CODES = new Set([400, 401, 403, 404, 405, 415, 422]);

/** Loads API access: kubeconfig file, else --kube-api-url alone, else the in-cluster service account. */
export function loadKubeConfig(apiUrl: string | undefined, kubeconfigFile: string | undefined, env: NodeJS.ProcessEnv): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigFile) {
    try {
      kc.loadFromFile(kubeconfigFile);
    } catch (err) {
      throw new Error(`cannot load kubeconfig ${kubeconfigFile}: ${(err as Error).message}`);
    }
    if (!kc.getCurrentCluster()) throw new Error(`kubeconfig ${kubeconfigFile}: no current context/cluster`);
  } else if (apiUrl) {
    kc.loadFromClusterAndUser({ name: 'felt', server: apiUrl, skipTLSVerify: false }, { name: 'felt' });
  } else {
    if (!env.KUBERNETES_SERVICE_HOST || !env.KUBERNETES_SERVICE_PORT) {
      throw new Error(
        'no Kubernetes API configured: outside a pod give --kube-api-url or --kubeconfig-file ' +
          '(in a pod, KUBERNETES_SERVICE_HOST/PORT and the service account token are used)',
      );
    }
    kc.loadFromCluster();
  }
  const clusters = kc.getClusters().map((c) => {
    const server = apiUrl && c.name === kc.getCurrentCluster()?.name ? apiUrl : c.server;
    // TLS settings mean nothing for plain http; client-node refuses http unless told to skip them.
    return { ...c, server, skipTLSVerify: c.skipTLSVerify || server.startsWith('http:') };
  });
  try {
    new URL(kc.getCurrentCluster()!.server);
  } catch {
    throw new Error(`invalid Kubernetes API server URL "${kc.getCurrentCluster()!.server}"`);
  }
  kc.loadFromOptions({ clusters, users: kc.getUsers(), contexts: kc.getContexts(), currentContext: kc.getCurrentContext() });
  return kc;
}

interface ApiResponse {
  status: number;
  body: unknown;
}

/** The few API calls felt makes, over node:http(s) with client-node's auth and TLS settings. */
export class KubeApi {
  readonly server: string;

  constructor(
    private readonly kc: KubeConfig,
    private readonly timeoutMs: number,
  ) {
    this.server = kc.getCurrentCluster()!.server.replace(/\/+$/, '');
  }

  private async open(method: string, path: string, headers: Record<string, string>, signal: AbortSignal): Promise<http.ClientRequest> {
    const opts: https.RequestOptions = { headers: {} };
    await this.kc.applyToHTTPSOptions(opts);
    const url = new URL(this.server + path);
    const mod = url.protocol === 'https:' ? https : http;
    return mod.request(url, { ...opts, method, signal, headers: { ...(opts.headers as Record<string, string>), Accept: 'application/json', ...headers } });
  }

  /** One request; a non-2xx answer becomes an error with the Status message (see statusError). */
  async call(method: string, path: string, body?: unknown, contentType?: string): Promise<unknown> {
    const signal = AbortSignal.timeout(this.timeoutMs);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string> = {};
    if (payload !== undefined) {
      headers['Content-Type'] = contentType ?? 'application/json';
      headers['Content-Length'] = String(Buffer.byteLength(payload));
    }
    const req = await this.open(method, path, headers, signal);
    const res = await new Promise<ApiResponse>((resolve, reject) => {
      req.on('error', (err) => reject(signal.aborted ? new Error(`${method} ${path}: timed out after ${this.timeoutMs} ms`) : err));
      req.on('response', (r) => {
        r.on('error', reject);
        readBody(r, (body) => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.end(payload);
    });
    if (res.status < 200 || res.status > 299) throw statusError(res.status, res.body, `${method} ${path}`);
    return res.body;
  }

  /**
   * A watch stream: calls onOpen once the server accepts it, onEvent per JSON line; resolves when
   * the stream ends (server timeout, drop, abort). A non-200 answer rejects (see statusError);
   * an exception from onEvent ends the stream and rejects with it.
   */
  async watch(path: string, onOpen: () => void, onEvent: (ev: Obj) => void, signal: AbortSignal): Promise<void> {
    const req = await this.open('GET', path, {}, signal);
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (err?: unknown): void => {
        if (settled) return;
        settled = true;
        if (err !== undefined && !signal.aborted) reject(err);
        else resolve();
        req.destroy();
      };
      req.on('error', (err) => finish(err));
      req.on('response', (r) => {
        r.on('error', (err) => finish(err));
        if (r.statusCode !== 200) {
          readBody(r, (body) => finish(statusError(r.statusCode ?? 0, body, `watch ${path}`)));
          return;
        }
        r.setEncoding('utf8');
        onOpen();
        let buf = '';
        r.on('data', (chunk: string) => {
          buf += chunk;
          let nl: number;
          while (!settled && (nl = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, nl).trim();
            buf = buf.slice(nl + 1);
            if (!line) continue;
            try {
              const ev: unknown = JSON.parse(line);
              if (isObj(ev)) onEvent(ev);
            } catch (err) {
              finish(err instanceof SyntaxError ? new Error(`watch ${path}: unparsable event ${line.slice(0, 120)}`) : err);
            }
          }
        });
        r.on('end', () => finish());
        r.on('close', () => finish());
      });
      req.end();
    });
  }
}

/** Collects a response body: parsed JSON, or the text (a proxy's error page) for the message. */
function readBody(res: http.IncomingMessage, done: (body: unknown) => void): void {
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (c: string) => (text += c));
  res.on('end', () => {
    try {
      done(JSON.parse(text));
    } catch {
      done(text);
    }
  });
}

/**
 * The error for a non-2xx answer: a KubeApiError, wrapped in a PermanentError (as its cause) when
 * retrying cannot help.
 */
export function statusError(code: number, body: unknown, what: string): Error {
  const reason = isObj(body) && typeof body.reason === 'string' ? body.reason : String(code);
  const message = isObj(body) && typeof body.message === 'string' ? body.message : typeof body === 'string' ? body.slice(0, 200) : '';
  let hint = '';
  if (code === 401) hint = ' (check the credentials: service account token or kubeconfig)';
  if (code === 403) hint = ' (check the ClusterRole: nodes get/list/watch, nodes/status patch, pods get)';
  const text = `${what}: ${code} ${reason}: ${message}${hint}`;
  const err = new KubeApiError(code, reason, text);
  return PERMANENT_CODES.has(code) ? new PermanentError(text, { cause: err }) : err;
}

/** The API answer behind an error (also when wrapped as permanent), or undefined. */
export function apiError(err: unknown): KubeApiError | undefined {
  if (err instanceof KubeApiError) return err;
  if (err instanceof PermanentError && err.cause instanceof KubeApiError) return err.cause;
  return undefined;
}
