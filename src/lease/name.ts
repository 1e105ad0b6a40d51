// How a lease is named in logs, maps and views: by its IPv4 subnet (flannel's identity of a subnet),
// or by its IPv6 subnet on an IPv6-only overlay, where leases have no IPv4 subnet.
import { formatSubnet, type Subnet } from '../net/cidr.js';
import { formatSubnet6, type Subnet6 } from '../net/ip6.js';

export interface LeaseSubnets {
  subnet?: Subnet;
  ipv6Subnet?: Subnet6;
}

/** "10.244.1.0/24", or "fc00:0:0:1::/64" for a lease with no IPv4 subnet ("-" for neither: never stored). */
export function leaseName(lease: LeaseSubnets): string {
  if (lease.subnet) return formatSubnet(lease.subnet);
  return lease.ipv6Subnet ? formatSubnet6(lease.ipv6Subnet) : '-';
}

/** The IPv4 subnet as text, "-" when the lease has none (an IPv6-only overlay). */
export function subnetText(subnet: Subnet | undefined): string {
  return subnet ? formatSubnet(subnet) : '-';
}
