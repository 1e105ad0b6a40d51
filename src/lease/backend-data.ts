// What felt puts in flannel's BackendV6Data (the etcd lease value's field, or the Kubernetes
// backend-v6-data annotation), shared by both lease stores.

/**
 * felt's BackendV6Data (etcd value, or the backend-v6-data annotation): the node decapsulates IPv6 pod
 * packets from its UDP tunnel. A stock flannel UDP node given EnableIPv6 takes an IPv6 subnet as well,
 * but its tunnel carries only IPv4 and it writes no BackendV6Data; felt never sends it IPv6.
 */
export const IPV6_TUNNEL_DATA = { CarriesIPv6: true } as const;

/** True when a BackendV6Data value is felt's IPV6_TUNNEL_DATA. */
export function carriesIPv6(backendV6Data: unknown): boolean {
  return typeof backendV6Data === 'object' && backendV6Data !== null && (backendV6Data as Record<string, unknown>).CarriesIPv6 === true;
}

/**
 * Whether IPv6 pod traffic may go to a lease's holder: its lease has an IPv6 subnet and felt's marker,
 * or has only an IPv6 subnet (an IPv6-only overlay, which no stock flannel UDP node can join, so a
 * reservation written by hand without the marker still works there).
 */
export function leaseCarriesIPv6(lease: { subnet?: unknown; ipv6Subnet?: unknown; carriesIPv6?: boolean }): boolean {
  return lease.ipv6Subnet !== undefined && (lease.carriesIPv6 === true || lease.subnet === undefined);
}
