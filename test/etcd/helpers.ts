// Helpers for the etcd store tests: a log sink, a TCP proxy that can cut the store off from etcd,
// and an update collector that applies snapshots and events like a consumer would.
import { createServer, connect, type Server, type Socket } from 'node:net';
import pino, { type Logger } from 'pino';
import type { Lease, LeaseUpdate } from '../../src/lease/types.js';
import { formatSubnet } from '../../src/net/cidr.js';

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
      for (const l of update.leases) this.table.set(formatSubnet(l.subnet), l);
      return;
    }
    for (const e of update.events) {
      if (e.type === 'added') this.table.set(formatSubnet(e.lease.subnet), e.lease);
      else this.table.delete(formatSubnet(e.lease.subnet));
    }
  };

  snapshots(): Array<Extract<LeaseUpdate, { kind: 'snapshot' }>> {
    return this.updates.filter((u): u is Extract<LeaseUpdate, { kind: 'snapshot' }> => u.kind === 'snapshot');
  }

  events(): Array<{ type: string; subnet: string; publicIP: string }> {
    return this.updates.flatMap((u) =>
      u.kind === 'events'
        ? u.events.map((e) => ({ type: e.type, subnet: formatSubnet(e.lease.subnet), publicIP: e.lease.publicIP }))
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
