// EtcdLeaseStore with 5,000 leases against a real etcd: needs the `etcd` binary.
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdLeaseStore } from '../../src/lease/etcd/store.js';
import { formatIPv4 } from '../../src/net/cidr.js';
import { startEtcd, type EtcdServer } from '../testbed/etcd.js';
import { captureLog, Collector, waitFor } from './helpers.js';

const COUNT = 5000;
const PREFIX = '/coreos.com/network';

let server: EtcdServer;
let etcd: Etcd3;

beforeAll(async () => {
  server = await startEtcd();
  etcd = new Etcd3({ hosts: server.clientURL });
  await etcd.put(`${PREFIX}/config`).value(JSON.stringify({ Network: '10.0.0.0/8' }));
  // Like 5,000 flannel nodes: one etcd lease per key. Grants batch well when many are in flight.
  const started = Date.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < COUNT) {
      const i = next++;
      const subnet = (10 << 24) + (i + 1) * 256;
      const { ID } = await etcd.leaseClient.leaseGrant({ TTL: 3600 });
      await etcd.kv.put({
        key: Buffer.from(`${PREFIX}/subnets/${formatIPv4(subnet)}-24`),
        value: Buffer.from(JSON.stringify({ PublicIP: formatIPv4((172 << 24) + 16 * 65536 + i), PublicIPv6: null })),
        lease: ID,
      });
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  console.log(`created ${COUNT} leases in ${Date.now() - started} ms`);
});

afterAll(async () => {
  etcd?.close();
  await server?.stop();
});

describe('EtcdLeaseStore at 5,000 leases (needs the etcd binary)', () => {
  it('lists every lease with its expiry; a relist reuses the known expiries', async () => {
    const { log, warnings } = captureLog();
    const store = new EtcdLeaseStore({ endpoints: [server.clientURL], prefix: PREFIX }, log);
    try {
      let started = performance.now();
      const { leases } = await store.list();
      const cold = performance.now() - started;
      expect(leases).toHaveLength(COUNT);
      expect(leases.every((l) => l.expiresAt !== undefined && l.expiresAt > Date.now())).toBe(true);
      expect(new Set(leases.map((l) => l.publicIP)).size).toBe(COUNT);
      expect(warnings()).toEqual([]);

      started = performance.now();
      const again = await store.list();
      const warm = performance.now() - started;
      // Informational only (no timing assertions): the first list asks etcd for 5,000 TTLs.
      console.log(`list() of ${COUNT} leases: first ${cold.toFixed(0)} ms, again ${warm.toFixed(0)} ms`);
      expect(again.leases.map((l) => l.expiresAt)).toEqual(leases.map((l) => l.expiresAt));
    } finally {
      await store.close();
    }
  });

  it('watch snapshot holds all of them, and a new node still gets a free subnet', async () => {
    const { log } = captureLog();
    const store = new EtcdLeaseStore({ endpoints: [server.clientURL], prefix: PREFIX }, log);
    try {
      const c = new Collector();
      const w = store.watch(c.onUpdate);
      await waitFor('snapshot', () => c.snapshots().length === 1);
      expect(c.table.size).toBe(COUNT);
      const lease = await store.acquire('192.168.77.2');
      await waitFor('own lease event', () => c.table.size === COUNT + 1);
      expect(lease.subnet!.ip).toBeGreaterThan((10 << 24) + COUNT * 256);
      await w.stop();
    } finally {
      await store.close();
    }
  });
});
