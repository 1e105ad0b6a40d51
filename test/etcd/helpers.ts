// Helpers for the etcd store tests: a log sink, a TCP proxy that can cut the store off from etcd,
// an update collector that applies snapshots and events like a consumer would, and one etcd per
// test file (useEtcd).
import { createServer, connect, type Server, type Socket } from 'node:net';
import { Etcd3 } from 'etcd3';
import pino, { type Logger } from 'pino';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { EtcdLeaseStore, type EtcdStoreOptions } from '../../src/lease/etcd/store.js';
import type { Lease, LeaseUpdate } from '../../src/lease/types.js';
import { formatSubnet } from '../../src/net/cidr.js';
import { startEtcd, type EtcdServer } from '../testbed/etcd.js';

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger whose lines land in `lines` (level 40 = warn). */
export function captureLog(): { log: Logger; lines: LogLine[]; warnings: () => LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug' }, { write: (text: string) => void lines.push(JSON.parse(text) as LogLine) });
  return { log, lines, warnings: () => lines.filter((l) => l.level === 40) };
}

export { sleep, waitFor } from '../support/wait.js';

/** Keeps what a watch consumer would know: subnet -> PublicIP, plus every update received. */
export class Collector {
  readonly updates: LeaseUpdate[] = [];
  readonly table = new Map<string, Lease>();

  readonly onUpdate = (update: LeaseUpdate): void => {
    this.updates.push(update);
    if (update.kind === 'snapshot') {
      this.table.clear();
      for (const l of update.leases) this.table.set(formatSubnet(l.subnet!), l);
      return;
    }
    for (const e of update.events) {
      if (e.type === 'added') this.table.set(formatSubnet(e.lease.subnet!), e.lease);
      else this.table.delete(formatSubnet(e.lease.subnet!));
    }
  };

  snapshots(): Array<Extract<LeaseUpdate, { kind: 'snapshot' }>> {
    return this.updates.filter((u): u is Extract<LeaseUpdate, { kind: 'snapshot' }> => u.kind === 'snapshot');
  }

  events(): Array<{ type: string; subnet: string; publicIP: string }> {
    return this.updates.flatMap((u) =>
      u.kind === 'events'
        ? u.events.map((e) => ({ type: e.type, subnet: formatSubnet(e.lease.subnet!), publicIP: e.lease.publicIP }))
        : [],
    );
  }

  /** subnet -> PublicIP, sorted, for comparing with etcd's content. */
  view(): Record<string, string> {
    return Object.fromEntries([...this.table.entries()].map(([k, l]) => [k, l.publicIP]).sort());
  }
}

/**
 * A TCP proxy to etcd. block() cuts every open connection and refuses new ones (a network
 * partition as the store sees it); unblock() lets connections through again.
 */
export class TcpProxy {
  private blocked = false;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => {
      if (!proxy || proxy.blocked) {
        client.destroy();
        return;
      }
      const upstream = connect(targetPort, targetHost);
      const p = proxy;
      p.sockets.add(client);
      p.sockets.add(upstream);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        p.sockets.delete(client);
        p.sockets.delete(upstream);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const a = server.address();
        resolve(typeof a === 'object' && a ? a.port : 0);
      });
    });
    proxy = new TcpProxy(server, port);
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  block(): void {
    this.blocked = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  unblock(): void {
    this.blocked = false;
  }

  close(): Promise<void> {
    this.block();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/**
 * One etcd for a whole test file (each test takes its own key prefix): registers the file's hooks
 * and gives the shared pieces. Stores and proxies pushed to `cleanups` close after each test.
 */
export function useEtcd() {
  const t = {
    server: undefined as unknown as EtcdServer,
    etcd: undefined as unknown as Etcd3,
    cleanups: [] as Array<() => Promise<void> | void>,
    /** A fresh key prefix with the given network config written (or none with config null). */
    async freshPrefix(config: unknown = NET): Promise<string> {
      const prefix = `/felt-test/${process.pid}-${++prefixSeq}/network`;
      if (config !== null) await t.etcd.put(`${prefix}/config`).value(typeof config === 'string' ? config : JSON.stringify(config));
      return prefix;
    },
    newStore(prefix: string, extra: Partial<EtcdStoreOptions> = {}) {
      const { log, warnings, lines } = captureLog();
      const store = new EtcdLeaseStore({ endpoints: [t.server.clientURL], prefix, ttlSeconds: 60, ...extra }, log);
      t.cleanups.push(() => store.close());
      return { store, warnings, lines };
    },
    async keyInfo(key: string): Promise<{ value: string; lease: string } | undefined> {
      const res = await t.etcd.kv.range({ key: Buffer.from(key) });
      const kv = res.kvs[0];
      return kv ? { value: kv.value.toString(), lease: kv.lease } : undefined;
    },
    async subnetKeys(prefix: string): Promise<Record<string, string>> {
      const all = await t.etcd.getAll().prefix(`${prefix}/subnets/`).strings();
      return Object.fromEntries(Object.entries(all).map(([k, v]) => [k.slice(prefix.length + '/subnets/'.length), v]));
    },
  };
  beforeAll(async () => {
    t.server = await startEtcd();
    t.etcd = new Etcd3({ hosts: t.server.clientURL });
  });
  afterEach(async () => {
    // Newest first: stores before the proxies they talk through.
    while (t.cleanups.length > 0) await t.cleanups.pop()!();
  });
  afterAll(async () => {
    t.etcd?.close();
    await t.server?.stop();
  });
  return t;
}

const NET = { Network: '10.244.0.0/16', Backend: { Type: 'udp' } };
let prefixSeq = 0;
