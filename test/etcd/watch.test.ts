// EtcdLeaseStore list() and watch() against a real etcd (Debian's etcd-server): needs the `etcd`
// binary. Each test uses its own key prefix, so one etcd serves the whole file.
import { describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import { EtcdLeaseStore } from '../../src/lease/etcd/store.js';
import { formatSubnet } from '../../src/net/cidr.js';
import { startEtcd } from '../testbed/etcd.js';
import { captureLog, Collector, TcpProxy, useEtcd, waitFor } from './helpers.js';

const t = useEtcd();
const { freshPrefix, newStore, cleanups } = t;

describe('EtcdLeaseStore list and watch (needs the etcd binary)', () => {
  it('list() carries expiries from the etcd lease TTL and the revision', async () => {
    const prefix = await freshPrefix();
    const { store } = newStore(prefix, { ttlSeconds: 300 });
    await store.acquire('192.168.77.110');
    const { leases, revision } = await store.list();
    expect(leases).toHaveLength(1);
    expect(leases[0]!.expiresAt! - Date.now()).toBeGreaterThan(200_000);
    expect(leases[0]!.expiresAt! - Date.now()).toBeLessThanOrEqual(300_000);
    expect(BigInt(revision)).toBeGreaterThan(0n);
  });

  it('delivers a snapshot, then added and removed events, and expiry as removal', async () => {
    const prefix = await freshPrefix();
    const { store } = newStore(prefix);
    const existing = await newStore(prefix).store.acquire('192.168.77.120');
    const c = new Collector();
    const watcher = store.watch(c.onUpdate);
    cleanups.push(() => watcher.stop());
    await waitFor('snapshot', () => c.snapshots().length === 1);
    expect(c.view()).toEqual({ [formatSubnet(existing.subnet!)]: '192.168.77.120' });

    const short = newStore(prefix, { ttlSeconds: 2 }).store;
    const added = await short.acquire('192.168.77.121');
    await waitFor('added event', () => c.events().some((e) => e.type === 'added' && e.subnet === formatSubnet(added.subnet!)));
    const addedEvent = c.updates.find((u) => u.kind === 'events')!;
    expect(addedEvent.kind === 'events' && addedEvent.events[0]!.lease.expiresAt).toBeGreaterThan(Date.now() - 5000);

    // A delete carries only the key: the removed lease is rebuilt from the last known value.
    await t.etcd.delete().key(existing.source.kind === 'etcd' ? existing.source.key : '');
    await waitFor('removed event', () => c.events().some((e) => e.type === 'removed' && e.publicIP === '192.168.77.120'));

    // Nobody renews the short lease: etcd deletes the key when its TTL runs out.
    await waitFor('expiry', () => c.events().some((e) => e.type === 'removed' && e.publicIP === '192.168.77.121'));
    expect(c.view()).toEqual({});
    expect(c.snapshots()).toHaveLength(1);
    expect(store.status()).toMatchObject({ connected: true, relists: 0 });
    expect(BigInt(store.status().lastRevision!)).toBeGreaterThan(BigInt(c.snapshots()[0]!.revision));
  });

  it('a malformed value is skipped with a warning, and overwriting a lease with garbage removes it', async () => {
    const prefix = await freshPrefix();
    const { store, warnings } = newStore(prefix);
    const c = new Collector();
    const watcher = store.watch(c.onUpdate);
    cleanups.push(() => watcher.stop());
    await waitFor('snapshot', () => c.snapshots().length === 1);
    await t.etcd.put(`${prefix}/subnets/10.244.5.0-24`).value('not json');
    await t.etcd.put(`${prefix}/subnets/10.244.6.0-24`).value('{"PublicIP":"192.168.77.6"}');
    await waitFor('good lease', () => c.view()['10.244.6.0/24'] === '192.168.77.6');
    expect(c.view()).toEqual({ '10.244.6.0/24': '192.168.77.6' });
    expect(warnings().map((w) => w.key)).toEqual([`${prefix}/subnets/10.244.5.0-24`]);

    await t.etcd.put(`${prefix}/subnets/10.244.6.0-24`).value('{"PublicIP":""}');
    await waitFor('garbage removes', () => c.events().some((e) => e.type === 'removed' && e.subnet === '10.244.6.0/24'));
    expect(c.view()).toEqual({});
  });

  it('resumes after a disconnect from the last revision: missed changes arrive as events, no relist', async () => {
    const prefix = await freshPrefix();
    const proxy = await TcpProxy.start(Number(new URL(t.server.clientURL).port));
    cleanups.push(() => proxy.close());
    const { store } = newStore(prefix, { endpoints: [proxy.url] });
    await t.etcd.put(`${prefix}/subnets/10.244.1.0-24`).value('{"PublicIP":"192.168.77.1"}');
    const c = new Collector();
    const watcher = store.watch(c.onUpdate);
    cleanups.push(() => watcher.stop());
    await waitFor('snapshot', () => c.snapshots().length === 1);

    proxy.block();
    await waitFor('disconnect noticed', () => !store.status().connected);
    await t.etcd.put(`${prefix}/subnets/10.244.2.0-24`).value('{"PublicIP":"192.168.77.2"}');
    await t.etcd.delete().key(`${prefix}/subnets/10.244.1.0-24`);
    proxy.unblock();

    await waitFor('missed changes', () => c.view()['10.244.2.0/24'] === '192.168.77.2' && !c.view()['10.244.1.0/24']);
    expect(c.events()).toEqual([
      { type: 'added', subnet: '10.244.2.0/24', publicIP: '192.168.77.2' },
      { type: 'removed', subnet: '10.244.1.0/24', publicIP: '192.168.77.1' },
    ]);
    expect(c.snapshots()).toHaveLength(1);
    expect(store.status().relists).toBe(0);
    expect(store.status().errors).toBeGreaterThan(0);
  });

  it('relists once after compaction past its revision: nothing missed, no hot loop', async () => {
    const prefix = await freshPrefix();
    const proxy = await TcpProxy.start(Number(new URL(t.server.clientURL).port));
    cleanups.push(() => proxy.close());
    const { store, warnings } = newStore(prefix, { endpoints: [proxy.url] });
    for (const n of [1, 2, 3]) await t.etcd.put(`${prefix}/subnets/10.244.${n}.0-24`).value(`{"PublicIP":"192.168.77.${n}"}`);
    const c = new Collector();
    const watcher = store.watch(c.onUpdate);
    cleanups.push(() => watcher.stop());
    await waitFor('snapshot', () => c.snapshots().length === 1);
    const watchedFrom = BigInt(c.snapshots()[0]!.revision);

    proxy.block();
    await waitFor('disconnect noticed', () => !store.status().connected);
    await t.etcd.delete().key(`${prefix}/subnets/10.244.1.0-24`);
    await t.etcd.put(`${prefix}/subnets/10.244.2.0-24`).value('{"PublicIP":"192.168.77.22"}');
    await t.etcd.put(`${prefix}/subnets/10.244.4.0-24`).value('{"PublicIP":"192.168.77.4"}');
    const compactedTo = BigInt(await t.server.compact());
    expect(compactedTo).toBeGreaterThan(watchedFrom + 1n);
    proxy.unblock();

    await waitFor('relist snapshot', () => c.snapshots().length === 2);
    const expected = { '10.244.2.0/24': '192.168.77.22', '10.244.3.0/24': '192.168.77.3', '10.244.4.0/24': '192.168.77.4' };
    expect(c.view()).toEqual(expected);
    expect(BigInt(c.snapshots()[1]!.revision)).toBeGreaterThanOrEqual(compactedTo);
    expect(warnings().some((w) => /compacted.*relisting/.test(w.msg))).toBe(true);

    // The watch is healthy again: a later change arrives as an event, with no further relist.
    await t.etcd.put(`${prefix}/subnets/10.244.5.0-24`).value('{"PublicIP":"192.168.77.5"}');
    await waitFor('event after relist', () => c.view()['10.244.5.0/24'] === '192.168.77.5');
    expect(c.snapshots()).toHaveLength(2);
    const status = store.status();
    expect(status.relists).toBe(1);
    expect(status.connected).toBe(true);
    expect(status.lastRelistAt).toBeGreaterThan(0);
  });

  it('notices a frozen etcd (SIGSTOP) by keepalive and resumes after SIGCONT', async () => {
    const prefix = await freshPrefix();
    const { store } = newStore(prefix);
    const c = new Collector();
    const watcher = store.watch(c.onUpdate);
    cleanups.push(() => watcher.stop());
    await waitFor('snapshot', () => c.snapshots().length === 1);
    t.server.pause();
    try {
      await waitFor('frozen etcd noticed', () => !store.status().connected);
    } finally {
      t.server.resume();
    }
    await t.etcd.put(`${prefix}/subnets/10.244.7.0-24`).value('{"PublicIP":"192.168.77.7"}');
    await waitFor('event after thaw', () => c.view()['10.244.7.0/24'] === '192.168.77.7');
    expect(store.status()).toMatchObject({ connected: true, relists: 0 });
    expect(store.status().lastError).toMatch(/watch disconnected/);
  });

  it('relists when etcd comes back with a lower revision (its data was lost)', async () => {
    const own = await startEtcd();
    cleanups.push(() => own.stop());
    const ownClient = new Etcd3({ hosts: own.clientURL });
    cleanups.push(() => ownClient.close());
    const prefix = '/coreos.com/network';
    for (let n = 1; n <= 20; n++) await ownClient.put(`${prefix}/subnets/10.244.${n}.0-24`).value(`{"PublicIP":"192.168.77.${n}"}`);
    const { log, warnings } = captureLog();
    const store = new EtcdLeaseStore({ endpoints: [own.clientURL], prefix }, log);
    cleanups.push(() => store.close());
    const c = new Collector();
    const watcher = store.watch(c.onUpdate);
    cleanups.push(() => watcher.stop());
    await waitFor('snapshot', () => c.snapshots().length === 1);
    expect(Object.keys(c.view())).toHaveLength(20);

    await own.kill();
    rmSync(own.dataDir, { recursive: true, force: true });
    await own.restart();
    await ownClient.put(`${prefix}/subnets/10.244.99.0-24`).value('{"PublicIP":"192.168.77.99"}');

    await waitFor('relist after data loss', () => c.snapshots().length === 2);
    expect(c.view()).toEqual({ '10.244.99.0/24': '192.168.77.99' });
    expect(warnings().some((w) => /revision went back/.test(w.msg))).toBe(true);
    expect(store.status().relists).toBe(1);
  });

  it('stop() ends the watch: no more updates', async () => {
    const prefix = await freshPrefix();
    const { store } = newStore(prefix);
    const c = new Collector();
    const watcher = store.watch(c.onUpdate);
    await waitFor('snapshot', () => c.snapshots().length === 1);
    await watcher.stop();
    await t.etcd.put(`${prefix}/subnets/10.244.9.0-24`).value('{"PublicIP":"192.168.77.9"}');
    // Another watcher sees the put, so it has been dispatched by t.etcd.
    const c2 = new Collector();
    const w2 = store.watch(c2.onUpdate);
    cleanups.push(() => w2.stop());
    await waitFor('second watcher snapshot', () => c2.snapshots().length === 1);
    expect(c2.view()).toEqual({ '10.244.9.0/24': '192.168.77.9' });
    expect(c.updates).toHaveLength(1);
  });

  it('close() stops watchers and refuses further calls', async () => {
    const prefix = await freshPrefix();
    const { store } = newStore(prefix);
    const c = new Collector();
    store.watch(c.onUpdate);
    await waitFor('snapshot', () => c.snapshots().length === 1);
    await store.close();
    await expect(store.acquire('192.168.77.130')).rejects.toThrow('etcd lease store is closed');
    expect(store.status().connected).toBe(false);
  });
});
