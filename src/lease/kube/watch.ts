// The node watch of the Kubernetes store, as client-go's informer does it: list, then watch from
// the list's resourceVersion with bookmarks; relist on 410 Gone; back off on failures; re-deliver
// the cached set as a snapshot every resync period.
import type { Logger } from '../../log.js';
import { leaseName } from '../name.js';
import { Backoff, errorText, sleep } from '../../retry.js';
import type { Lease, LeaseEvent, LeaseUpdate, StoreStatus, Watcher } from '../types.js';
import { asNode, isObj, leaseKey, type KubeNode, type Obj } from './annotations.js';
import { apiError, statusError, type KubeApi } from './api.js';
import type { KubeTiming } from './store.js';

/** What a watch needs from its store. */
export interface KubeWatchContext {
  readonly api: KubeApi;
  readonly timing: KubeTiming;
  readonly log: Logger;
  /** The store's status, updated in place. */
  readonly stats: StoreStatus;
  /** The lease a node stands for, if it is a valid peer. */
  peerLease(node: KubeNode): Lease | undefined;
  /** Every node that is a valid peer, by name, with the list's resourceVersion. */
  listNodes(): Promise<{ leases: Map<string, Lease>; revision: string }>;
}

/** A 410 Gone (watch too old) as the API reports it: relist rather than back off. */
function isGone(err: unknown): boolean {
  const api = apiError(err);
  return api !== undefined && (api.code === 410 || api.reason === 'Expired' || api.reason === 'Gone');
}

export class KubeWatch implements Watcher {
  private readonly abort = new AbortController();
  /** Aborts the stream in progress (stop, a watchdog, or a 410 inside the stream). */
  private stream?: AbortController;
  private readonly backoff: Backoff;
  private readonly resyncTimer?: NodeJS.Timeout;
  /** The leases this watcher has delivered, by node name. */
  private cache = new Map<string, Lease>();
  private rv = '';
  private listed = false;
  private readonly done: Promise<void>;

  constructor(
    private readonly ctx: KubeWatchContext,
    private readonly onUpdate: (update: LeaseUpdate) => void,
    onStopped: () => void,
  ) {
    this.backoff = new Backoff(ctx.timing.backoffMinMs, ctx.timing.backoffMaxMs);
    if (ctx.timing.resyncMs > 0) {
      this.resyncTimer = setInterval(() => {
        if (this.listed && !this.stopped) this.deliver({ kind: 'snapshot', leases: [...this.cache.values()], revision: this.rv });
      }, ctx.timing.resyncMs);
      this.resyncTimer.unref();
    }
    this.done = this.run().finally(onStopped);
  }

  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  async stop(): Promise<void> {
    clearInterval(this.resyncTimer);
    this.abort.abort();
    this.stream?.abort();
    await this.done;
  }

  private async run(): Promise<void> {
    const pause = (): Promise<boolean> => sleep(this.backoff.next(), this.abort.signal);
    let needList = true;
    /** 410s in a row: a fresh list that is already too old must not spin. */
    let goneStreak = 0;
    while (!this.stopped) {
      try {
        if (needList) {
          await this.relist();
          needList = false;
        }
        const outcome = await this.watchOnce();
        if (this.stopped) break;
        if (outcome.received > 0) goneStreak = 0;
        if (outcome.gone) throw statusError(410, { reason: 'Gone', message: 'watch expired' }, 'watch nodes');
        // A stream that ends at once with nothing in it is a failure, not a timeout: back off.
        if (outcome.received === 0 && outcome.ms < 1000) throw new Error('watch stream ended immediately');
        this.backoff.reset();
      } catch (err) {
        if (this.stopped) break;
        if (isGone(err)) {
          this.ctx.log.info({ resourceVersion: this.rv }, 'node watch expired (410 Gone): relisting');
          needList = true;
          if (++goneStreak > 1 && !(await pause())) break;
          continue;
        }
        const stats = this.ctx.stats;
        stats.errors++;
        stats.connected = false;
        stats.lastError = errorText(err);
        const retryInMs = this.backoff.next();
        this.ctx.log.warn({ err: errorText(err), retryInMs: Math.round(retryInMs) }, needList ? 'listing nodes failed' : 'node watch failed');
        if (!(await sleep(retryInMs, this.abort.signal))) break;
      }
    }
  }

  private async relist(): Promise<void> {
    const listed = await this.ctx.listNodes();
    this.cache = listed.leases;
    this.rv = listed.revision;
    this.listed = true;
    const stats = this.ctx.stats;
    stats.relists++;
    stats.lastRelistAt = Date.now();
    stats.lastRevision = this.rv;
    stats.connected = true;
    this.deliver({ kind: 'snapshot', leases: [...this.cache.values()], revision: this.rv });
  }

  /**
   * One watch stream from the current resourceVersion. Says how it ended: whether a 410 came inside
   * the stream, how many events it carried, and how long it lasted.
   */
  private async watchOnce(): Promise<{ gone: boolean; received: number; ms: number }> {
    const { timing, api } = this.ctx;
    const timeoutSeconds = Math.floor(timing.watchTimeoutSeconds * (1 + Math.random()));
    const path = `/api/v1/nodes?watch=true&resourceVersion=${encodeURIComponent(this.rv)}&allowWatchBookmarks=true&timeoutSeconds=${timeoutSeconds}`;
    const ctl = new AbortController();
    this.stream = ctl;
    if (this.stopped) ctl.abort();
    // A half-open connection delivers nothing and never ends: give up a minute after the server
    // should have closed the stream itself.
    const watchdog = setTimeout(() => ctl.abort(), (timeoutSeconds + 60) * 1000);
    const started = Date.now();
    let received = 0;
    let gone = false;
    try {
      await api.watch(
        path,
        () => {
          this.ctx.stats.connected = true;
        },
        (ev) => {
          if (this.onEvent(ev) === 'gone') {
            gone = true;
            ctl.abort();
          } else {
            received++;
          }
        },
        ctl.signal,
      );
    } finally {
      clearTimeout(watchdog);
      this.stream = undefined;
    }
    return { gone, received, ms: Date.now() - started };
  }

  /** Applies one watch event to the cache and delivers what changed. */
  private onEvent(ev: Obj): 'gone' | undefined {
    const type = ev.type;
    if (type === 'ERROR') {
      const status = isObj(ev.object) ? ev.object : {};
      if (status.code === 410) return 'gone';
      throw statusError(typeof status.code === 'number' ? status.code : 500, status, 'watch nodes');
    }
    const node = asNode(ev.object);
    if (!node) return undefined;
    if (node.metadata.resourceVersion) this.rv = node.metadata.resourceVersion;
    this.ctx.stats.lastRevision = this.rv;
    if (type === 'BOOKMARK') return undefined;
    const name = node.metadata.name;
    const before = this.cache.get(name);
    const after = type === 'DELETED' ? undefined : this.ctx.peerLease(node);
    const events: LeaseEvent[] = [];
    if (before && (!after || leaseName(before) !== leaseName(after))) {
      events.push({ type: 'removed', lease: before });
    }
    if (after && (!before || leaseKey(before) !== leaseKey(after))) events.push({ type: 'added', lease: after });
    if (after) this.cache.set(name, after);
    else this.cache.delete(name);
    if (events.length > 0) this.deliver({ kind: 'events', events, revision: this.rv });
    return undefined;
  }

  private deliver(update: LeaseUpdate): void {
    try {
      this.onUpdate(update);
    } catch (err) {
      this.ctx.log.error({ err: errorText(err) }, 'lease update handler threw');
    }
  }
}
