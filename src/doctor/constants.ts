/** IPv4 (20) + UDP (8): a tunnel datagram is this much larger than the packet it carries. */
export const ENCAP_OVERHEAD_BYTES = 28;
