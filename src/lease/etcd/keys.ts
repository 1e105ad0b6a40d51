// flannel's etcd layout (https://github.com/flannel-io/flannel/blob/master/pkg/subnet/etcd/registry.go):
//   <prefix>/config                  network config JSON
//   <prefix>/subnets/<a.b.c.d>-<len>  {"PublicIP":"<ip>","PublicIPv6":null}, attached to a TTL'd etcd lease
// Turning keys and values into leases and back; nothing here talks to etcd.
import type { IKeyValue } from 'etcd3';
import { formatIPv4, parseIPv4, subnetFromKey, type Subnet } from '../../net/cidr.js';
import type { Lease } from '../types.js';

export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';

/** Exactly what a stock flannel UDP node writes (v0.15+): no BackendType, PublicIPv6 null. */
export function leaseValue(publicIP: string): string {
  return JSON.stringify({ PublicIP: publicIP, PublicIPv6: null });
}

/** A key under <prefix>/subnets/ after parsing: a lease, or why it is not one. */
export type ParsedKv = { ok: true; lease: Lease } | { ok: false; subnet?: Subnet; reason: string };

/** Parses one key/value under `subnetsPrefix` (`<prefix>/subnets/`). */
export function parseLeaseKv(kv: IKeyValue, subnetsPrefix: string): ParsedKv {
  const key = kv.key.toString('utf8');
  const name = key.slice(subnetsPrefix.length);
  const subnet = name.includes('/') ? undefined : subnetFromKey(name);
  if (!subnet) return { ok: false, reason: 'key is not <a.b.c.d>-<len>' };
  let attrs: unknown;
  try {
    attrs = JSON.parse(kv.value.toString('utf8'));
  } catch {
    return { ok: false, subnet, reason: 'value is not valid JSON' };
  }
  if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) {
    return { ok: false, subnet, reason: 'value is not a JSON object' };
  }
  const record = attrs as Record<string, unknown>;
  const rawIP = publicIPField(record);
  let publicIP: string;
  try {
    if (typeof rawIP !== 'string') throw new Error();
    publicIP = formatIPv4(parseIPv4(rawIP));
  } catch {
    return { ok: false, subnet, reason: 'PublicIP is missing or not an IPv4 address' };
  }
  const etcdLeaseId = kv.lease && kv.lease !== '0' ? kv.lease : undefined;
  return {
    ok: true,
    lease: {
      subnet,
      publicIP,
      source: { kind: 'etcd', key, modRevision: kv.mod_revision, ...(etcdLeaseId ? { etcdLeaseId } : {}) },
      attrs: record,
    },
  };
}

/** A key written without an etcd lease (by hand, as flannel allows): it never expires. */
export function isReservation(lease: Lease): boolean {
  return lease.source.kind === 'etcd' && lease.source.etcdLeaseId === undefined;
}

/** The etcd fields of a lease this store produced. */
export function etcdSource(lease: Lease): { key: string; modRevision: string; etcdLeaseId?: string } | undefined {
  return lease.source.kind === 'etcd' ? lease.source : undefined;
}

/** flannel's JSON field is PublicIP; Go matches keys case-insensitively, preferring the exact one. */
function publicIPField(record: Record<string, unknown>): unknown {
  if ('PublicIP' in record) return record.PublicIP;
  const key = Object.keys(record).find((k) => k.toLowerCase() === 'publicip');
  return key === undefined ? undefined : record[key];
}

/** Like Go's path.Join on the prefix: no duplicate or trailing slashes. */
export function normalizePrefix(prefix: string): string {
  const cleaned = prefix.replace(/\/{2,}/g, '/').replace(/\/+$/, '');
  if (cleaned === '') throw new Error(`etcd: invalid key prefix "${prefix}"`);
  return cleaned;
}

/** The range end that selects every key starting with `prefix`. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
