// EtcdLeaseStore against a real etcd (Debian's etcd-server): needs the `etcd` binary. Config,
// acquire, values written by others, renew; list and watch are in watch.test.ts.
// Each test uses its own key prefix, so one etcd serves the whole file.
import { describe, expect, it } from 'vitest';
import { EtcdLeaseStore } from '../../src/lease/etcd/store.js';
import { LeaseLostError, SubnetsExhaustedError, type Lease } from '../../src/lease/types.js';
import { formatSubnet, parseSubnet } from '../../src/net/cidr.js';
import { captureLog, useEtcd, waitFor } from './helpers.js';

const t = useEtcd();
const { freshPrefix, newStore, keyInfo, subnetKeys, cleanups } = t;

describe('EtcdLeaseStore config (needs the etcd binary)', () => {
  it('reads and validates <prefix>/config', async () => {
    const prefix = await freshPrefix({ Network: '10.5.0.0/16', SubnetLen: 26, Backend: { Type: 'UDP', Port: 9999 } });
    const config = await newStore(prefix).store.getNetworkConfig();
    expect(formatSubnet(config.network!)).toBe('10.5.0.0/16');
    expect(config).toMatchObject({ subnetLen: 26, backendType: 'udp', port: 9999 });
  });

  it('a missing config is a clear error naming the key', async () => {
    const prefix = await freshPrefix(null);
    await expect(newStore(prefix).store.getNetworkConfig()).rejects.toThrow(`network config not found at ${prefix}/config`);
  });

  it('an invalid config is a clear error naming the key and the problem', async () => {
    const bad = await freshPrefix('{"Network": ');
    await expect(newStore(bad).store.getNetworkConfig()).rejects.toThrow(`${bad}/config: network config is not valid JSON`);
    const vxlan = await freshPrefix({ Network: '10.5.0.0/16', Backend: { Type: 'vxlan' } });
    await expect(newStore(vxlan).store.getNetworkConfig()).rejects.toThrow(/Backend\.Type "vxlan" is not supported/);
  });
});

describe('EtcdLeaseStore acquire (needs the etcd binary)', () => {
  it('creates the exact flannel key and value on an etcd lease with the TTL', async () => {
    const prefix = await freshPrefix();
    const { store } = newStore(prefix, { ttlSeconds: 120 });
    const lease = await store.acquire('192.168.77.2');

    const key = `${prefix}/subnets/${formatSubnet(lease.subnet!).replace('/', '-')}`;
    expect(key).toMatch(/\/subnets\/10\.244\.\d{1,3}\.0-24$/);
    expect(lease.subnet!.prefixLen).toBe(24);
    expect(formatSubnet(lease.subnet!)).not.toBe('10.244.0.0/24'); // the first subnet is skipped
    expect(lease.publicIP).toBe('192.168.77.2');
    expect(lease.source).toMatchObject({ kind: 'etcd', key });

    const info = await keyInfo(key);
    expect(info?.value).toBe('{"PublicIP":"192.168.77.2","PublicIPv6":null}');
    expect(info?.lease).not.toBe('0');
    expect(lease.source.kind === 'etcd' && lease.source.etcdLeaseId).toBe(info?.lease);
    const ttl = await t.etcd.leaseClient.leaseTimeToLive({ ID: info!.lease });
    expect(ttl.grantedTTL).toBe('120');
    expect(Number(ttl.TTL)).toBeGreaterThan(0);
    expect(lease.expiresAt).toBeGreaterThan(Date.now());
    expect(Object.keys(await subnetKeys(prefix))).toHaveLength(1);
  });

  it('rejects a bad PublicIP clearly', async () => {
    const { store } = newStore(await freshPrefix());
    await expect(store.acquire('192.168.77')).rejects.toThrow('acquire: invalid PublicIP "192.168.77"');
  });

  it('takes back the lease naming its PublicIP after a restart (new store instance)', async () => {
    const prefix = await freshPrefix();
    const first = newStore(prefix).store;
    const before = await first.acquire('192.168.77.3');
    await first.close();

    const second = newStore(prefix).store;
    const after = await second.acquire('192.168.77.3');
    expect(formatSubnet(after.subnet!)).toBe(formatSubnet(before.subnet!));
    // Re-put on a fresh etcd lease.
    const info = await keyInfo(after.source.kind === 'etcd' ? after.source.key : '');
    expect(info?.lease).not.toBe(before.source.kind === 'etcd' ? before.source.etcdLeaseId : '');
    expect(info?.lease).toBe(after.source.kind === 'etcd' ? after.source.etcdLeaseId : '');
    expect(Object.keys(await subnetKeys(prefix))).toHaveLength(1);
  });

  it('deletes its own lease when it no longer fits the config, then allocates a fitting one', async () => {
    const prefix = await freshPrefix({ Network: '10.244.0.0/16', SubnetMin: '10.244.10.0', SubnetMax: '10.244.20.0' });
    await t.etcd.put(`${prefix}/subnets/10.244.99.0-24`).value('{"PublicIP":"192.168.77.4","PublicIPv6":null}');
    const lease = await newStore(prefix).store.acquire('192.168.77.4');
    expect(lease.subnet!.ip).toBeGreaterThanOrEqual(parseSubnet('10.244.10.0/24').ip);
    expect(lease.subnet!.ip).toBeLessThanOrEqual(parseSubnet('10.244.20.0/24').ip);
    expect(Object.keys(await subnetKeys(prefix))).toEqual([formatSubnet(lease.subnet!).replace('/', '-')]);
  });

  it('honours previousSubnet when it is free', async () => {
    const prefix = await freshPrefix();
    const lease = await newStore(prefix).store.acquire('192.168.77.5', { previousSubnet: parseSubnet('10.244.77.0/24') });
    expect(formatSubnet(lease.subnet!)).toBe('10.244.77.0/24');
  });

  it('does not take previousSubnet when another node holds it', async () => {
    const prefix = await freshPrefix();
    const holder = await newStore(prefix).store.acquire('192.168.77.6', { previousSubnet: parseSubnet('10.244.78.0/24') });
    expect(formatSubnet(holder.subnet!)).toBe('10.244.78.0/24');

    const other = await newStore(prefix).store.acquire('192.168.77.7', { previousSubnet: parseSubnet('10.244.78.0/24') });
    expect(formatSubnet(other.subnet!)).not.toBe('10.244.78.0/24');
    expect((await subnetKeys(prefix))['10.244.78.0-24']).toBe('{"PublicIP":"192.168.77.6","PublicIPv6":null}');
  });

  it('ignores an incompatible previousSubnet', async () => {
    const prefix = await freshPrefix();
    const lease = await newStore(prefix).store.acquire('192.168.77.8', { previousSubnet: parseSubnet('10.99.1.0/24') });
    expect(formatSubnet(lease.subnet!)).toMatch(/^10\.244\./);
  });

  it('10 concurrent acquirers get 10 distinct subnets', async () => {
    const prefix = await freshPrefix();
    const stores = Array.from({ length: 10 }, () => newStore(prefix).store);
    const leases = await Promise.all(stores.map((s, i) => s.acquire(`192.168.77.${20 + i}`)));
    const subnets = leases.map((l) => formatSubnet(l.subnet!));
    expect(new Set(subnets).size).toBe(10);
    const keys = await subnetKeys(prefix);
    expect(Object.keys(keys)).toHaveLength(10);
    leases.forEach((l, i) => {
      expect(keys[formatSubnet(l.subnet!).replace('/', '-')]).toBe(`{"PublicIP":"192.168.77.${20 + i}","PublicIPv6":null}`);
    });
  });

  it('10 acquirers all racing for the same subnet: losers retry, none fails, no etcd lease leaks', async () => {
    const prefix = await freshPrefix();
    const leasesBefore = (await t.etcd.leaseClient.leaseLeases()).leases.length;
    // random() = 0: every store always picks the lowest free subnet, so they collide every round.
    const stores = Array.from({ length: 10 }, () => newStore(prefix, { random: () => 0 }));
    const leases = await Promise.all(stores.map(({ store }, i) => store.acquire(`192.168.77.${40 + i}`)));
    expect(new Set(leases.map((l) => formatSubnet(l.subnet!))).size).toBe(10);
    // They took the 10 lowest subnets.
    expect(leases.map((l) => l.subnet!.ip - parseSubnet('10.244.0.0/24').ip).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 10 }, (_, i) => (i + 1) * 256),
    );
    expect(stores.some(({ lines }) => lines.some((l) => /took that subnet first/.test(l.msg)))).toBe(true);
    // Every losing grant was revoked: exactly one etcd lease per key is left.
    expect((await t.etcd.leaseClient.leaseLeases()).leases.length - leasesBefore).toBe(10);
  });

  it('with 2 possible subnets, the 3rd of 3 acquirers gets a clear exhausted error', async () => {
    const prefix = await freshPrefix({ Network: '10.9.0.0/28', SubnetLen: 30, SubnetMin: '10.9.0.4', SubnetMax: '10.9.0.8' });
    const stores = Array.from({ length: 3 }, () => newStore(prefix).store);
    const results = await Promise.allSettled(stores.map((s, i) => s.acquire(`192.168.77.${60 + i}`)));
    const ok = results.filter((r): r is PromiseFulfilledResult<Lease> => r.status === 'fulfilled').map((r) => formatSubnet(r.value.subnet!));
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(ok.sort()).toEqual(['10.9.0.4/30', '10.9.0.8/30']);
    expect(failed).toHaveLength(1);
    expect(failed[0]!.reason).toBeInstanceOf(SubnetsExhaustedError);
    expect(String(failed[0]!.reason.message)).toBe(
      'out of subnets: all 2 /30 subnets between SubnetMin 10.9.0.4 and SubnetMax 10.9.0.8 are leased',
    );
  });

  it('works over a unix socket endpoint', async () => {
    const prefix = await freshPrefix();
    const { log } = captureLog();
    const store = new EtcdLeaseStore({ endpoints: [t.server.unixURL], prefix }, log);
    cleanups.push(() => store.close());
    const lease = await store.acquire('192.168.77.70');
    const { leases } = await store.list();
    expect(leases.map((l) => formatSubnet(l.subnet!))).toEqual([formatSubnet(lease.subnet!)]);
    // Default TTL: 24 h, as flannel.
    const id = lease.source.kind === 'etcd' ? lease.source.etcdLeaseId! : '';
    expect((await t.etcd.leaseClient.leaseTimeToLive({ ID: id })).grantedTTL).toBe(String(24 * 3600));
  });
});

describe('EtcdLeaseStore values written by others (needs the etcd binary)', () => {
  it('accepts stock flannel values with extra fields, and old values without PublicIPv6', async () => {
    const prefix = await freshPrefix();
    const vxlanStyle = '{"PublicIP":"192.168.77.80","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}';
    const etcdLease = t.etcd.lease(120, { autoKeepAlive: false });
    cleanups.push(() => etcdLease.revoke().catch(() => undefined));
    await etcdLease.put(`${prefix}/subnets/10.244.80.0-24`).value(vxlanStyle);
    await etcdLease.put(`${prefix}/subnets/10.244.81.0-24`).value('{"PublicIP":"192.168.77.81"}');
    await etcdLease.put(`${prefix}/subnets/10.244.82.0-24&fc00::-64`).value('{"PublicIP":"192.168.77.82","PublicIPv6":"fc00::82"}');
    const { store, warnings } = newStore(prefix);
    const { leases } = await store.list();
    const byIP = Object.fromEntries(leases.map((l) => [l.publicIP, l]));
    expect(Object.keys(byIP).sort()).toEqual(['192.168.77.80', '192.168.77.81', '192.168.77.82']);
    expect(formatSubnet(byIP['192.168.77.80']!.subnet!)).toBe('10.244.80.0/24');
    expect(byIP['192.168.77.80']!.attrs).toMatchObject({ BackendType: 'vxlan', BackendData: { VNI: 1 } });
    expect(byIP['192.168.77.80']!.expiresAt).toBeGreaterThan(Date.now());
    expect(formatSubnet(byIP['192.168.77.82']!.subnet!)).toBe('10.244.82.0/24');
    expect(warnings()).toEqual([]);

    // A felt node with the same PublicIP (its identity) takes the key over and writes the stock UDP value.
    const taken = await store.acquire('192.168.77.81');
    expect(formatSubnet(taken.subnet!)).toBe('10.244.81.0/24');
    expect((await keyInfo(`${prefix}/subnets/10.244.81.0-24`))?.value).toBe('{"PublicIP":"192.168.77.81","PublicIPv6":null}');
  });

  it('keeps a reservation (a key without an etcd lease) a reservation: flannel #1329', async () => {
    const prefix = await freshPrefix();
    const key = `${prefix}/subnets/10.244.90.0-24`;
    await t.etcd.put(key).value('{"PublicIP":"192.168.77.90"}');
    const { store } = newStore(prefix);
    const lease = await store.acquire('192.168.77.90');
    expect(formatSubnet(lease.subnet!)).toBe('10.244.90.0/24');
    expect(lease.expiresAt).toBeUndefined();
    const renewed = await store.renew(lease);
    expect(formatSubnet(renewed.subnet!)).toBe('10.244.90.0/24');
    expect(await keyInfo(key)).toEqual({ value: '{"PublicIP":"192.168.77.90"}', lease: '0' });
  });

  it('skips malformed keys and values with one warning per key and revision, never failing', async () => {
    const prefix = await freshPrefix({ Network: '10.9.0.0/28', SubnetLen: 30, SubnetMin: '10.9.0.4', SubnetMax: '10.9.0.8' });
    const bad: Record<string, string> = {
      '10.9.0.4-30': '{"PublicIP": ', // bad JSON, but the subnet is taken all the same
      '10.9.0.12-30': '{"PublicIPv6":null}', // no PublicIP
      '10.9.0.16-30': '{"PublicIP":"192.168.77.999"}',
      '10.9.0.20-30': '["192.168.77.1"]',
      '10.9.0.24-30': '{"PublicIP":17}',
      'garbage': '{"PublicIP":"192.168.77.1"}',
      '10.9.0.29-30': '{"PublicIP":"192.168.77.1"}', // host bits set
      'nested/10.9.0.32-30': '{"PublicIP":"192.168.77.1"}',
    };
    for (const [name, value] of Object.entries(bad)) await t.etcd.put(`${prefix}/subnets/${name}`).value(value);
    await t.etcd.put(`${prefix}/subnets/10.9.0.36-30`).value('{"PublicIP":"192.168.77.36"}');

    const { store, warnings } = newStore(prefix);
    const first = await store.list();
    expect(first.leases.map((l) => formatSubnet(l.subnet!))).toEqual(['10.9.0.36/30']);
    expect(warnings()).toHaveLength(Object.keys(bad).length);
    expect(warnings().every((w) => /^skipping malformed subnet lease: /.test(w.msg) && typeof w.key === 'string')).toBe(true);
    await store.list();
    expect(warnings()).toHaveLength(Object.keys(bad).length); // once per key and revision

    // The subnet under the bad JSON is not handed out: only 10.9.0.8/30 is left, then none.
    expect(formatSubnet((await store.acquire('192.168.77.50')).subnet!)).toBe('10.9.0.8/30');
    await expect(newStore(prefix).store.acquire('192.168.77.51')).rejects.toThrow(/out of subnets/);

    // A rewrite (new revision) of a bad key warns again.
    await t.etcd.put(`${prefix}/subnets/10.9.0.12-30`).value('{"PublicIPv6":"still no v4"}');
    await store.list();
    expect(warnings()).toHaveLength(Object.keys(bad).length + 1);
  });
});

describe('EtcdLeaseStore renew (needs the etcd binary)', () => {
  it('moves the key to a fresh etcd lease with a full TTL and revokes the old one', async () => {
    const prefix = await freshPrefix();
    const { store } = newStore(prefix, { ttlSeconds: 30 });
    const lease = await store.acquire('192.168.77.100');
    const oldId = lease.source.kind === 'etcd' ? lease.source.etcdLeaseId! : '';
    // Let the old lease run down a little (etcd reports whole seconds), so the fresh one must be longer.
    const remainingBefore = await waitFor('the old lease to run down', async () => {
      const ttl = Number((await t.etcd.leaseClient.leaseTimeToLive({ ID: oldId })).TTL);
      return ttl <= 28 ? ttl : undefined;
    });

    const renewed = await store.renew(lease);
    expect(formatSubnet(renewed.subnet!)).toBe(formatSubnet(lease.subnet!));
    expect(renewed.expiresAt!).toBeGreaterThan(lease.expiresAt!);
    const newId = renewed.source.kind === 'etcd' ? renewed.source.etcdLeaseId! : '';
    expect(newId).not.toBe(oldId);
    const key = renewed.source.kind === 'etcd' ? renewed.source.key : '';
    expect(await keyInfo(key)).toEqual({ value: '{"PublicIP":"192.168.77.100","PublicIPv6":null}', lease: newId });
    const fresh = await t.etcd.leaseClient.leaseTimeToLive({ ID: newId });
    expect(fresh.grantedTTL).toBe('30');
    expect(Number(fresh.TTL)).toBeGreaterThan(remainingBefore);
    expect((await t.etcd.leaseClient.leaseTimeToLive({ ID: oldId })).TTL).toBe('-1'); // revoked
    expect(store.status()).toMatchObject({ renewals: 1, renewalFailures: 0 });
  });

  it('keeps a short-TTL lease alive for several TTLs by renewing: the key never lapses in between', async () => {
    const prefix = await freshPrefix();
    const { store, warnings } = newStore(prefix, { ttlSeconds: 3 });
    let lease = await store.acquire('192.168.77.101');
    const key = lease.source.kind === 'etcd' ? lease.source.key : '';
    // A lapse would delete the key (and a renewal would quietly re-create it): watch for that.
    const watcher = await t.etcd.watch().key(key).create();
    let deletes = 0;
    watcher.on('delete', () => deletes++);
    const leaseIds = new Set<string>();
    try {
      for (let i = 0; i < 6; i++) {
        const id = lease.source.kind === 'etcd' ? lease.source.etcdLeaseId! : '';
        leaseIds.add(id);
        // Renew in the lease's last second or two (etcd reports whole seconds): six leases run down
        // this way span several TTLs.
        await waitFor('the lease to run down', async () => Number((await t.etcd.leaseClient.leaseTimeToLive({ ID: id })).TTL) <= 1);
        lease = await store.renew(lease);
      }
      expect((await keyInfo(key))?.value).toBe('{"PublicIP":"192.168.77.101","PublicIPv6":null}');
    } finally {
      await watcher.cancel();
    }
    expect(deletes, 'the key was deleted (its lease lapsed) between renewals').toBe(0);
    expect(warnings().map((w) => w.msg)).not.toContain('our lease had expired; re-created it');
    // Every renewal moved the key to a fresh lease (six renewals, six leases before the last).
    expect(leaseIds.size).toBe(6);
  });

  it('re-creates its lease when the key vanished and nobody took the subnet', async () => {
    const prefix = await freshPrefix();
    const { store } = newStore(prefix);
    const lease = await store.acquire('192.168.77.102');
    const key = lease.source.kind === 'etcd' ? lease.source.key : '';
    await t.etcd.delete().key(key);
    const renewed = await store.renew(lease);
    expect(formatSubnet(renewed.subnet!)).toBe(formatSubnet(lease.subnet!));
    expect((await keyInfo(key))?.value).toBe('{"PublicIP":"192.168.77.102","PublicIPv6":null}');
  });

  it("never overwrites another node's lease: LeaseLostError instead", async () => {
    const prefix = await freshPrefix();
    const a = newStore(prefix).store;
    const b = newStore(prefix).store;
    const lease = await a.acquire('192.168.77.103');
    const key = lease.source.kind === 'etcd' ? lease.source.key : '';
    await t.etcd.delete().key(key);
    const stolen = await b.acquire('192.168.77.104', { previousSubnet: lease.subnet });
    expect(formatSubnet(stolen.subnet!)).toBe(formatSubnet(lease.subnet!));

    const err = await a.renew(lease).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LeaseLostError);
    expect((err as Error).message).toBe(`renew: subnet ${formatSubnet(lease.subnet!)} is now held by 192.168.77.104`);
    expect((await keyInfo(key))?.value).toBe('{"PublicIP":"192.168.77.104","PublicIPv6":null}');
    expect(a.status()).toMatchObject({ renewals: 0, renewalFailures: 1 });
  });

  it('fails with an error, not a hang, while etcd is frozen (SIGSTOP)', async () => {
    const prefix = await freshPrefix();
    const { store } = newStore(prefix, { callTimeoutMs: 1000 });
    const lease = await store.acquire('192.168.77.105');
    t.server.pause();
    try {
      await expect(store.renew(lease)).rejects.toThrow(/^etcd: read lease failed: /);
    } finally {
      t.server.resume();
    }
    expect(store.status()).toMatchObject({ renewalFailures: 1, connected: false });
    expect(store.status().lastError).toMatch(/read lease failed/);
    // And it recovers once etcd answers again.
    await waitFor('renewal after resume', () => store.renew(lease).then(() => true, () => false));
    expect(store.status().connected).toBe(true);
  });
});

