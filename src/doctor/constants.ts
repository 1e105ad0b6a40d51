/** IPv4 (20) + UDP (8): a tunnel datagram is this much larger than the packet it carries. */
export const ENCAP_OVERHEAD_BYTES = 28;
/** IPv6 (40) + UDP (8): the same over an IPv6 underlay. */
export const ENCAP6_OVERHEAD_BYTES = 48;
