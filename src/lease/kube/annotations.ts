// flannel's node annotations (https://github.com/flannel-io/flannel/blob/master/pkg/subnet/kube/annotations.go)
// and the Node fields felt reads: which nodes are peers, and the lease each one stands for.
import { formatSubnet, isIPv4, parseSubnet, type Subnet } from '../../net/cidr.js';
import type { Lease } from '../types.js';

/** The annotation keys under a normalised prefix. */
export interface KubeAnnotations {
  prefix: string;
  subnetKubeManaged: string;
  backendType: string;
  backendData: string;
  publicIP: string;
  publicIPOverwrite: string;
  nodePublicIP: string;
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

/** A peer lease from a node, or why it is not one. Only managed nodes with a podCIDR qualify. */
export function nodeToLease(node: KubeNode, keys: KubeAnnotations): { lease?: Lease; reason?: string } {
  const ann = node.metadata.annotations ?? {};
  if (ann[keys.subnetKubeManaged] !== 'true') return { reason: 'not managed (no kube-subnet-manager annotation)' };
  const subnet = nodePodCIDR(node);
  if (!subnet) return { reason: 'no IPv4 pod CIDR' };
  const publicIP = ann[keys.publicIP];
  if (publicIP === undefined || !isIPv4(publicIP)) return { reason: `public-ip annotation ${JSON.stringify(publicIP ?? null)} is not an IPv4 address` };
  const rawData = ann[keys.backendData];
  let backendData: unknown = rawData ?? null;
  if (rawData !== undefined) {
    try {
      backendData = JSON.parse(rawData);
    } catch {
      // Kept as the raw string: it is only shown on the debug endpoint.
    }
  }
  return {
    lease: {
      subnet,
      publicIP,
      source: { kind: 'kube', node: node.metadata.name, resourceVersion: node.metadata.resourceVersion },
      attrs: { PublicIP: publicIP, BackendType: ann[keys.backendType] ?? '', BackendData: backendData },
    },
  };
}

/** What makes two leases of one node different for the data path (flannel's update filter). */
export function leaseKey(l: Lease): string {
  return `${formatSubnet(l.subnet)}|${l.publicIP}|${String(l.attrs.BackendType)}|${JSON.stringify(l.attrs.BackendData)}`;
}
