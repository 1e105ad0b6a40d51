// flannel's etcd layout (https://github.com/flannel-io/flannel/blob/master/pkg/subnet/etcd/registry.go):
//   <prefix>/config                  network config JSON
//   <prefix>/subnets/<a.b.c.d>-<len>  {"PublicIP":"<ip>","PublicIPv6":null}, attached to a TTL'd etcd lease
//   <prefix>/subnets/<a.b.c.d>-<len>&<ipv6>-<len>  the same with an IPv6 subnet (dual-stack), PublicIPv6 "<ipv6>" or null
//   <prefix>/subnets/0.0.0.0-0&<ipv6>-<len>  a lease with only an IPv6 subnet (IPv6-only overlay, EnableIPv4 false)
// Turning keys and values into leases and back; nothing here talks to etcd.
import type { IKeyValue } from 'etcd3';
import { formatIPv4, NO_SUBNET, parseIPv4, parseSubnetKey, type Subnet } from '../../net/cidr.js';
import { formatIPv6, parseIPv6, type Subnet6 } from '../../net/ip6.js';
import { carriesIPv6, IPV6_TUNNEL_DATA } from '../backend-data.js';
import type { Lease } from '../types.js';

export const DEFAULT_ETCD_PREFIX = '/coreos.com/network';

/**
 * Exactly what a stock flannel UDP node writes (v0.15+): no BackendType, PublicIPv6 null; a node with
 * an IPv6 underlay address writes it (RFC 5952 text, as Go does) instead of null. With `ipv6Tunnel`
 * (a network with IPv6) felt adds its BackendV6Data, which says the node's tunnel carries IPv6 pods.
 */
export function leaseValue(publicIP: string, publicIPv6?: string, ipv6Tunnel = false): string {
  const value = { PublicIP: publicIP, PublicIPv6: publicIPv6 ?? null };
  return JSON.stringify(ipv6Tunnel ? { ...value, BackendV6Data: IPV6_TUNNEL_DATA } : value);
}

/** A key under <prefix>/subnets/ after parsing: a lease, or why it is not one. */
export type ParsedKv = { ok: true; lease: Lease } | { ok: false; subnet?: Subnet; subnet6?: Subnet6; reason: string };

/**
 * The subnets a key names. The zero IPv4 half of "0.0.0.0-0&<ipv6>-<len>" means "no IPv4 subnet"; a bare
 * "0.0.0.0-0" stays the (unroutable) lease 0.0.0.0/0 it always was, which the agent refuses.
 */
function keySubnets(name: string): { subnet?: Subnet; subnet6?: Subnet6 } | undefined {
  const parsed = name.includes('/') ? undefined : parseSubnetKey(name);
  if (!parsed) return undefined;
  const { subnet, subnet6 } = parsed;
  if (!subnet6) return { subnet };
  const noIPv4 = subnet.ip === NO_SUBNET.ip && subnet.prefixLen === NO_SUBNET.prefixLen;
  return noIPv4 ? { subnet6 } : { subnet, subnet6 };
}

/** Parses one key/value under `subnetsPrefix` (`<prefix>/subnets/`). */
export function parseLeaseKv(kv: IKeyValue, subnetsPrefix: string): ParsedKv {
  const key = kv.key.toString('utf8');
  const name = key.slice(subnetsPrefix.length);
  const parsedKey = keySubnets(name);
  if (!parsedKey) return { ok: false, reason: 'key is not <a.b.c.d>-<len> or <a.b.c.d>-<len>&<ipv6>-<len>' };
  const { subnet, subnet6 } = parsedKey;
  const taken = { ...(subnet ? { subnet } : {}), ...(subnet6 ? { subnet6 } : {}) };
  let attrs: unknown;
  try {
    attrs = JSON.parse(kv.value.toString('utf8'));
  } catch {
    return { ok: false, ...taken, reason: 'value is not valid JSON' };
  }
  if (typeof attrs !== 'object' || attrs === null || Array.isArray(attrs)) {
    return { ok: false, ...taken, reason: 'value is not a JSON object' };
  }
  const record = attrs as Record<string, unknown>;
  const rawIP = field(record, 'PublicIP');
  let publicIP: string;
  try {
    if (typeof rawIP !== 'string') throw new Error();
    publicIP = formatIPv4(parseIPv4(rawIP));
  } catch {
    return { ok: false, ...taken, reason: 'PublicIP is missing or not an IPv4 address' };
  }
  const rawIPv6 = field(record, 'PublicIPv6');
  let publicIPv6: string | undefined;
  if (rawIPv6 !== undefined && rawIPv6 !== null) {
    try {
      if (typeof rawIPv6 !== 'string') throw new Error();
      publicIPv6 = formatIPv6(parseIPv6(rawIPv6));
    } catch {
      return { ok: false, ...taken, reason: 'PublicIPv6 is not null or an IPv6 address' };
    }
  }
  const etcdLeaseId = kv.lease && kv.lease !== '0' ? kv.lease : undefined;
  const carries = subnet6 !== undefined && carriesIPv6(field(record, 'BackendV6Data'));
  return {
    ok: true,
    lease: {
      ...(subnet ? { subnet } : {}),
      publicIP,
      ...(subnet6 ? { ipv6Subnet: subnet6 } : {}),
      ...(publicIPv6 !== undefined ? { publicIPv6 } : {}),
      ...(carries ? { carriesIPv6: true } : {}),
      source: { kind: 'etcd', key, modRevision: kv.mod_revision, ...(etcdLeaseId ? { etcdLeaseId } : {}) },
      attrs: record,
    },
  };
}

/** flannel's "no IPv4 underlay address" PublicIP (the zero IP4 a node without one writes). */
export const NO_PUBLIC_IP = '0.0.0.0';

/**
 * True when two leases name the same node: the same PublicIP (flannel's identity), and for nodes
 * without an IPv4 underlay address (PublicIP 0.0.0.0, shared by all of them) the same PublicIPv6.
 */
export function sameHolder(a: Pick<Lease, 'publicIP' | 'publicIPv6'>, b: Pick<Lease, 'publicIP' | 'publicIPv6'>): boolean {
  if (a.publicIP !== b.publicIP) return false;
  return a.publicIP !== NO_PUBLIC_IP || (a.publicIPv6 !== undefined && a.publicIPv6 === b.publicIPv6);
}

/** A key written without an etcd lease (by hand, as flannel allows): it never expires. */
export function isReservation(lease: Lease): boolean {
  return lease.source.kind === 'etcd' && lease.source.etcdLeaseId === undefined;
}

/** The etcd fields of a lease this store produced. */
export function etcdSource(lease: Lease): { key: string; modRevision: string; etcdLeaseId?: string } | undefined {
  return lease.source.kind === 'etcd' ? lease.source : undefined;
}

/** A field of flannel's LeaseAttrs; Go matches keys case-insensitively, preferring the exact one. */
function field(record: Record<string, unknown>, name: string): unknown {
  if (name in record) return record[name];
  const key = Object.keys(record).find((k) => k.toLowerCase() === name.toLowerCase());
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
