// The etcd client's connection settings: endpoints, TLS files, user/password, gRPC keepalives.
import { readFileSync } from 'node:fs';
import type { IOptions } from 'etcd3';
import { errorText } from '../../retry.js';

export interface EtcdConnection {
  /** `http://host:port`, `https://host:port` or `unix:///path`. */
  endpoints: string[];
  keyFile?: string;
  certFile?: string;
  caFile?: string;
  username?: string;
  password?: string;
}

/** etcd3 client options for `conn`; throws a clear error for bad endpoints or unreadable files. */
export function etcdClientOptions(conn: EtcdConnection): IOptions {
  if (conn.endpoints.length === 0) throw new Error('etcd: no endpoints given');
  for (const e of conn.endpoints) {
    if (!/^(https?:\/\/[^/]+\/?|unix:\/\/.+)$/.test(e)) {
      throw new Error(`etcd: invalid endpoint "${e}" (expected http://host:port, https://host:port or unix:///path)`);
    }
  }
  const options: IOptions = {
    // etcd3 strips http(s)://; unix:// targets go to grpc as they are.
    hosts: conn.endpoints.map((e) => e.replace(/\/$/, '')),
    grpcOptions: {
      // Detects a dead or frozen etcd under an open watch stream (etcd tolerates pings >= 5 s apart).
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      // grpc's default reconnect backoff grows to 120 s: after a long outage that would delay recovery.
      'grpc.initial_reconnect_backoff_ms': 500,
      'grpc.max_reconnect_backoff_ms': 5_000,
    },
  };
  const credentials = loadCredentials(conn);
  if (credentials) options.credentials = credentials;
  if (conn.username) options.auth = { username: conn.username, password: conn.password ?? '' };
  return options;
}

function loadCredentials(conn: EtcdConnection): IOptions['credentials'] {
  const { keyFile, certFile, caFile } = conn;
  if (!keyFile && !certFile && !caFile) return undefined;
  if (Boolean(keyFile) !== Boolean(certFile)) {
    throw new Error('etcd: --etcd-keyfile and --etcd-certfile must be given together');
  }
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`etcd: cannot read ${what} ${path}: ${errorText(err)}`);
    }
  };
  const credentials: { rootCertificate?: Buffer; privateKey?: Buffer; certChain?: Buffer } = {};
  if (caFile) credentials.rootCertificate = read(caFile, 'CA file');
  if (keyFile) credentials.privateKey = read(keyFile, 'key file');
  if (certFile) credentials.certChain = read(certFile, 'certificate file');
  // grpc uses the system roots when rootCertificate is absent; etcd3's type insists on it.
  return credentials as NonNullable<IOptions['credentials']>;
}
