// flannel's node annotations (https://github.com/flannel-io/flannel/blob/master/pkg/subnet/kube/annotations.go)
// and the Node fields felt reads: which nodes are peers, and the lease each one stands for.
import { isIPv4, parseSubnet, type Subnet } from '../../net/cidr.js';
import { formatIPv6, formatSubnet6, isIPv6, parseIPv6, parseSubnet6, type Subnet6 } from '../../net/ip6.js';
import { carriesIPv6 } from '../backend-data.js';
import type { Lease } from '../types.js';
import { subnetText } from '../name.js';
import { NO_PUBLIC_IP } from '../../public-ips.js';

/** The annotation keys under a normalised prefix. */
export interface KubeAnnotations {
  prefix: string;
  subnetKubeManaged: string;
  backendType: string;
  backendData: string;
  publicIP: string;
  publicIPOverwrite: string;
  nodePublicIP: string;
  /** Dual-stack: the IPv6 twins (flannel's BackendV6Data, BackendPublicIPv6, ...). */
  backendV6Data: string;
  publicIPv6: string;
  publicIPv6Overwrite: string;
  nodePublicIPv6: string;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAME_PART = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/**
 * flannel's rules: at most one "/"; a prefix without "/" gets "/" appended; one with a "/" that
 * ends in neither "/" nor "-" gets "-" appended. The result must form valid annotation keys.
 */
export function kubeAnnotations(prefix: string): KubeAnnotations {
  const slashes = prefix.split('/').length - 1;
  if (slashes > 1) throw new Error(`--kube-annotation-prefix "${prefix}": at most one "/" is allowed`);
  let p = prefix;
  if (slashes === 0) p += '/';
  if (!p.endsWith('/') && !p.endsWith('-')) p += '-';
  const [domain, namePrefix] = p.split('/') as [string, string];
  if (domain.length > 253 || !DNS_SUBDOMAIN.test(domain)) {
    throw new Error(`--kube-annotation-prefix "${prefix}": "${domain}" is not a DNS subdomain (lower case letters, digits, "-" and ".")`);
  }
  const key = (name: string): string => {
    const full = namePrefix + name;
    if (full.length > 63 || !NAME_PART.test(full)) {
      throw new Error(`--kube-annotation-prefix "${prefix}": annotation name "${full}" is invalid (at most 63 characters of [A-Za-z0-9-_.])`);
    }
    return `${domain}/${full}`;
  };
  return {
    prefix: p,
    subnetKubeManaged: key('kube-subnet-manager'),
    backendType: key('backend-type'),
    backendData: key('backend-data'),
    publicIP: key('public-ip'),
    publicIPOverwrite: key('public-ip-overwrite'),
    nodePublicIP: key('node-public-ip'),
    backendV6Data: key('backend-v6-data'),
    publicIPv6: key('public-ipv6'),
    publicIPv6Overwrite: key('public-ipv6-overwrite'),
    nodePublicIPv6: key('node-public-ipv6'),
  };
}


export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The minimal Node shape felt reads (raw JSON from the API). */
export interface KubeNode {
  metadata: { name: string; resourceVersion?: string; annotations?: Record<string, string> };
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { conditions?: Array<Record<string, unknown>> };
}

export function asNode(v: unknown): KubeNode | undefined {
  if (!isObj(v) || !isObj(v.metadata) || typeof v.metadata.name !== 'string') return undefined;
  return v as unknown as KubeNode;
}

/** The node's IPv4 pod CIDR: the v4 entry of spec.podCIDRs, else spec.podCIDR. */
export function nodePodCIDR(node: KubeNode): Subnet | undefined {
  const candidates = [...(Array.isArray(node.spec?.podCIDRs) ? node.spec!.podCIDRs : []), node.spec?.podCIDR];
  for (const c of candidates) {
    if (typeof c !== 'string' || !c.includes('.')) continue;
    try {
      return parseSubnet(c);
    } catch {
      // Not IPv4; try the next one.
    }
  }
  return undefined;
}

/** The node's IPv6 pod CIDR: the v6 entry of spec.podCIDRs, else spec.podCIDR (flannel reads both). */
export function nodePodCIDR6(node: KubeNode): Subnet6 | undefined {
  const candidates = [...(Array.isArray(node.spec?.podCIDRs) ? node.spec!.podCIDRs : []), node.spec?.podCIDR];
  for (const c of candidates) {
    if (typeof c !== 'string' || !c.includes(':')) continue;
    try {
      return parseSubnet6(c);
    } catch {
      // Not IPv6; try the next one.
    }
  }
  return undefined;
}

/** An annotation holding JSON, parsed; kept as the raw string when it is not JSON (debug output only). */
function jsonAnnotation(raw: string | undefined): unknown {
  if (raw === undefined) return null;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/**
 * A peer lease from a node, or why it is not one. Only managed nodes with a podCIDR qualify. With
 * `ipv6` (EnableIPv6) the lease also carries the node's IPv6 pod CIDR and public-ipv6; a node
 * without them (a stock flannel UDP node: flannel keeps UDP leases IPv4-only) stays an IPv4 peer.
 * With `ipv4` false (an IPv6-only overlay) the lease has only the IPv6 pod CIDR, and a node without
 * an IPv4 public-ip (flannel writes "0.0.0.0" or nothing there) gets PublicIP 0.0.0.0.
 */
export function nodeToLease(node: KubeNode, keys: KubeAnnotations, ipv6 = false, ipv4 = true): { lease?: Lease; reason?: string } {
  const ann = node.metadata.annotations ?? {};
  if (ann[keys.subnetKubeManaged] !== 'true') return { reason: 'not managed (no kube-subnet-manager annotation)' };
  const subnet = ipv4 ? nodePodCIDR(node) : undefined;
  if (ipv4 && !subnet) return { reason: 'no IPv4 pod CIDR' };
  if (!ipv4 && !nodePodCIDR6(node)) return { reason: 'no IPv6 pod CIDR' };
  const rawIP = ann[keys.publicIP];
  const publicIP = !ipv4 && (rawIP === undefined || rawIP === '') ? NO_PUBLIC_IP : rawIP;
  if (publicIP === undefined || !isIPv4(publicIP)) return { reason: `public-ip annotation ${JSON.stringify(publicIP ?? null)} is not an IPv4 address` };
  const attrs: Record<string, unknown> = { PublicIP: publicIP, BackendType: ann[keys.backendType] ?? '', BackendData: jsonAnnotation(ann[keys.backendData]) };
  let six: { ipv6Subnet?: Subnet6; publicIPv6?: string; carriesIPv6?: boolean } = {};
  if (ipv6) {
    const ipv6Subnet = nodePodCIDR6(node);
    const rawV6 = ann[keys.publicIPv6];
    if (rawV6 !== undefined && rawV6 !== '' && !isIPv6(rawV6)) {
      return { reason: `public-ipv6 annotation ${JSON.stringify(rawV6)} is not an IPv6 address` };
    }
    const publicIPv6 = rawV6 ? formatIPv6(parseIPv6(rawV6)) : undefined;
    const backendV6Data = ann[keys.backendV6Data] !== undefined ? jsonAnnotation(ann[keys.backendV6Data]) : undefined;
    const carries = ipv6Subnet !== undefined && carriesIPv6(backendV6Data);
    six = { ...(ipv6Subnet ? { ipv6Subnet } : {}), ...(publicIPv6 ? { publicIPv6 } : {}), ...(carries ? { carriesIPv6: true } : {}) };
    attrs.PublicIPv6 = publicIPv6 ?? null;
    if (backendV6Data !== undefined) attrs.BackendV6Data = backendV6Data;
  }
  return {
    lease: {
      ...(subnet ? { subnet } : {}),
      publicIP,
      ...six,
      source: { kind: 'kube', node: node.metadata.name, resourceVersion: node.metadata.resourceVersion },
      attrs,
    },
  };
}

/** What makes two leases of one node different for the data path (flannel's update filter). */
export function leaseKey(l: Lease): string {
  const v4 = `${subnetText(l.subnet)}|${l.publicIP}|${String(l.attrs.BackendType)}|${JSON.stringify(l.attrs.BackendData)}`;
  if (!l.ipv6Subnet && l.publicIPv6 === undefined) return v4;
  return `${v4}|${l.ipv6Subnet ? formatSubnet6(l.ipv6Subnet) : ''}|${l.publicIPv6 ?? ''}|${JSON.stringify(l.attrs.BackendV6Data ?? null)}`;
}
