// The etcd lease watch: a snapshot, then events from the snapshot's revision on; resumes after
// disconnects and relists after compaction, with a cancellable back-off between attempts.
import type { Etcd3, IDuplexStream, IKeyValue, IWatchRequest, IWatchResponse } from 'etcd3';
import type { Logger } from 'pino';
import { Backoff, errorText, sleep } from '../../retry.js';
import type { Lease, LeaseEvent, LeaseUpdate, Watcher } from '../types.js';
import { prefixEnd, type ParsedKv } from './keys.js';

const WATCH_BACKOFF_MIN_MS = 100;
const WATCH_BACKOFF_MAX_MS = 5_000;
/** A watch that stayed up this long counts as healthy: the next failure starts the backoff afresh. */
const WATCH_HEALTHY_MS = 1_000;

type WatchStream = IDuplexStream<IWatchRequest, IWatchResponse>;

/** What a watch needs from its store (kept narrow so the store's own API stays the LeaseStore one). */
export interface WatchContext {
  readonly client: Etcd3;
  /** `<prefix>/subnets/` */
  readonly prefix: string;
  readonly log: Logger;
  listKeys(): Promise<{ leases: Lease[]; revision: string }>;
  fillExpiries(leases: Lease[]): Promise<void>;
  parseKv(kv: IKeyValue): ParsedKv;
  expiries(ids: string[]): Promise<Map<string, number | undefined>>;
  noteError(message: string, err?: unknown): void;
  noteConnected(): void;
  noteSnapshot(revision: string, initial: boolean): void;
  noteRevision(revision: string): void;
}

/**
 * One watch: snapshot, then events from the snapshot's revision + 1. Disconnects resume from the
 * last seen revision + 1 with exponential backoff (100 ms .. 5 s); compaction or a watch canceled
 * by etcd leads to a relist and a fresh snapshot. Responses are handled strictly in order.
 */
export class EtcdWatch implements Watcher {
  private stopped = false;
  private lastRevision = 0n;
  private known = new Map<string, Lease>();
  private readonly backoff = new Backoff(WATCH_BACKOFF_MIN_MS, WATCH_BACKOFF_MAX_MS);
  private readonly abort = new AbortController();
  private snapshots = 0;
  private endStream: (() => void) | undefined;
  private readonly done: Promise<void>;

  constructor(
    private readonly ctx: WatchContext,
    private readonly onUpdate: (update: LeaseUpdate) => void,
    onStopped: () => void,
  ) {
    this.done = this.run().finally(onStopped);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.endStream?.();
    await this.done;
  }

  private async run(): Promise<void> {
    const log = this.ctx.log;
    const pause = (): Promise<boolean> => sleep(this.backoff.next(), this.abort.signal);
    let needSnapshot = true;
    while (!this.stopped) {
      if (needSnapshot) {
        try {
          await this.snapshot();
          needSnapshot = false;
        } catch (err) {
          log.warn({ err: errorText(err) }, 'watch: listing leases failed; retrying');
          if (!(await pause())) break;
          continue;
        }
      }
      const outcome = await this.watchOnce(this.lastRevision + 1n);
      if (this.stopped || outcome.kind === 'stopped') break;
      if (outcome.healthy) this.backoff.reset();
      if (outcome.kind === 'canceled') {
        needSnapshot = true;
        this.ctx.noteError(`etcd: watch ${outcome.detail}`);
        log.warn({ fromRevision: String(this.lastRevision + 1n) }, `watch ${outcome.detail}; relisting`);
      } else {
        this.ctx.noteError(`etcd: watch disconnected: ${outcome.detail}`);
        log.warn({ resumeFrom: String(this.lastRevision + 1n) }, `watch disconnected (${outcome.detail}); reconnecting`);
      }
      if (!(await pause())) break;
    }
  }

  private async snapshot(): Promise<void> {
    const { leases, revision } = await this.ctx.listKeys();
    if (this.stopped) return;
    this.known = new Map(leases.map((l) => [(l.source as { key: string }).key, l]));
    this.lastRevision = BigInt(revision);
    this.ctx.noteSnapshot(revision, this.snapshots++ === 0);
    // Routes first, expiry times after: the data path must not wait for one TimeToLive call per
    // lease. The table holds these same objects, so the times show up there once known.
    this.deliver({ kind: 'snapshot', leases, revision });
    void this.ctx.fillExpiries(leases).catch((err) => {
      this.ctx.log.warn({ err: errorText(err) }, 'could not read lease expiry times; will retry at the next list');
    });
  }

  /** One watch stream; resolves when it ends, after every response it delivered has been handled. */
  private async watchOnce(
    fromRevision: bigint,
  ): Promise<{ kind: 'disconnected' | 'canceled' | 'stopped'; detail: string; healthy: boolean }> {
    let stream: WatchStream;
    try {
      stream = await this.ctx.client.watchClient.watch();
    } catch (err) {
      return { kind: 'disconnected', detail: errorText(err), healthy: false };
    }
    const prefix = Buffer.from(this.ctx.prefix);
    return new Promise((resolve) => {
      let createdAt = 0;
      let progressed = false;
      let finished = false;
      let chain: Promise<void> = Promise.resolve();
      const finish = (kind: 'disconnected' | 'canceled' | 'stopped', detail: string): void => {
        if (finished) return;
        finished = true;
        this.endStream = undefined;
        stream.on('error', () => undefined); // cancel() reports CANCELLED as an error
        try {
          // end() first: etcd3 treats an error on a still-writable stream as a host failure and
          // would reset every channel to etcd for our own deliberate cancel.
          stream.end();
          stream.cancel();
        } catch {
          // already gone
        }
        const healthy = createdAt > 0 && (progressed || Date.now() - createdAt >= WATCH_HEALTHY_MS);
        void chain.then(() => resolve({ kind, detail, healthy }));
      };
      this.endStream = () => finish('stopped', 'stopped');
      stream.on('data', (res: IWatchResponse) => {
        if (finished) return;
        if (res.created && !res.canceled) {
          if (BigInt(res.header.revision) < fromRevision - 1n) {
            // etcd lost history (restored or rebuilt): it would silently wait for a revision it
            // will reach with unrelated writes. Start over from a list.
            finish('canceled', `revision went back to ${res.header.revision} (we had seen ${fromRevision - 1n})`);
            return;
          }
          createdAt = Date.now();
          this.ctx.noteConnected();
          return;
        }
        if (res.canceled || (res.compact_revision && res.compact_revision !== '0')) {
          const detail =
            res.compact_revision && res.compact_revision !== '0'
              ? `start revision ${fromRevision} is compacted (compact revision ${res.compact_revision})`
              : `canceled by etcd: ${res.cancel_reason || 'no reason given'}`;
          finish('canceled', detail);
          return;
        }
        progressed = true;
        chain = chain.then(() => this.handle(res));
      });
      stream.on('error', (err: Error) => finish('disconnected', errorText(err)));
      stream.on('end', () => finish('disconnected', 'watch stream ended'));
      if (this.stopped) {
        finish('stopped', 'stopped');
        return;
      }
      try {
        stream.write({
          create_request: {
            key: prefix,
            range_end: prefixEnd(prefix),
            start_revision: fromRevision.toString(),
            progress_notify: true,
          },
        });
      } catch (err) {
        finish('disconnected', errorText(err));
      }
    });
  }

  /** Turns one watch response into events; never throws. */
  private async handle(res: IWatchResponse): Promise<void> {
    if (this.stopped) return;
    if (res.events.length === 0) {
      // Progress notification: every event up to header.revision has been sent.
      const rev = BigInt(res.header.revision);
      if (rev > this.lastRevision) {
        this.lastRevision = rev;
        this.ctx.noteRevision(rev.toString());
      }
      return;
    }
    const leaseIds = res.events.filter((e) => e.type === 'Put' && e.kv.lease && e.kv.lease !== '0').map((e) => e.kv.lease);
    const expiries = leaseIds.length > 0 ? await this.ctx.expiries(leaseIds) : new Map<string, number | undefined>();
    if (this.stopped) return;
    const events: LeaseEvent[] = [];
    let maxRevision = this.lastRevision;
    for (const ev of res.events) {
      const key = ev.kv.key.toString('utf8');
      const rev = BigInt(ev.kv.mod_revision);
      if (rev > maxRevision) maxRevision = rev;
      const previous = this.known.get(key);
      if (ev.type === 'Put') {
        const parsed = this.ctx.parseKv(ev.kv);
        if (parsed.ok) {
          const id = ev.kv.lease !== '0' ? ev.kv.lease : undefined;
          if (id !== undefined) parsed.lease.expiresAt = expiries.get(id);
          this.known.set(key, parsed.lease);
          events.push({ type: 'added', lease: parsed.lease });
          continue;
        }
        // A valid lease overwritten with garbage no longer describes a peer.
        if (!previous) continue;
      } else if (!previous) {
        continue; // never delivered (malformed), so nothing to remove
      }
      this.known.delete(key);
      // Delete events carry only the key: the lease is the last value we knew.
      const source = { ...(previous.source as { kind: 'etcd'; key: string; modRevision: string }), modRevision: ev.kv.mod_revision };
      events.push({ type: 'removed', lease: { ...previous, source } });
    }
    this.lastRevision = maxRevision;
    this.ctx.noteRevision(maxRevision.toString());
    if (events.length > 0) this.deliver({ kind: 'events', events, revision: maxRevision.toString() });
  }

  private deliver(update: LeaseUpdate): void {
    try {
      this.onUpdate(update);
    } catch (err) {
      this.ctx.log.error({ err: errorText(err) }, 'lease watch consumer threw');
    }
  }
}
