/* IPv6 header checks, the extension-header walk, hop limit, and the ICMPv6 errors the engine
 * originates (docs/datapath.md, "IPv6"). Every function bounds-checks against the length given. */
#ifndef FELT_IPV6_H
#define FELT_IPV6_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "stats.h"

#define IP6_HDR_LEN 40
#define IPPROTO_HOPOPTS_ 0
#define IPPROTO_ROUTING_ 43
#define IPPROTO_FRAGMENT_ 44
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_DSTOPTS_ 60
/* The walk's bounds: at most this many extension headers, all inside the first EXT_MAX_BYTES. */
#define IP6_EXT_MAX_HEADERS 8
#define IP6_EXT_MAX_BYTES 256
/* An ICMPv6 error quotes as much of the packet as keeps it within the IPv6 minimum MTU. */
#define IP6_MIN_MTU 1280
#define ICMP6_ERR_MAX IP6_MIN_MTU

static inline uint16_t ip6_plen(const uint8_t *ip) { return (uint16_t)(ip[4] << 8 | ip[5]); }
static inline size_t ip6_total(const uint8_t *ip) { return IP6_HDR_LEN + (size_t)ip6_plen(ip); }
static inline const uint8_t *ip6_src(const uint8_t *ip) { return ip + 8; }
static inline const uint8_t *ip6_dst(const uint8_t *ip) { return ip + 24; }

/* Validates buf[0, len) as an IPv6 packet: < 40 -> TRUNCATED; version != 6 -> NOT_IP; payload
 * length 0 with a Hop-by-Hop header (a jumbogram, never carried) -> MALFORMED; 40 + payload length > len -> TRUNCATED
 * (skipped when ignore_total: TSO super-packets). DROP_NONE if fine; bytes past the end are cut. */
drop_reason ipv6_validate(const uint8_t *buf, size_t len, int ignore_total);

/* The extension-header walk: follows Hop-by-Hop (first only), Routing and Destination Options;
 * stops at a Fragment header (forwarded as it is, not looked past) or at the first other header,
 * which is the upper layer. *proto and *off (may be NULL) name where it stopped. EXT_HEADER when
 * a header runs past the packet or the first IP6_EXT_MAX_BYTES bytes, Hop-by-Hop is not first, or
 * the chain has more than IP6_EXT_MAX_HEADERS headers. len: bytes of the validated packet. */
drop_reason ipv6_walk(const uint8_t *ip, size_t len, uint8_t *proto, size_t *off);

/* Is `a` (16 bytes) inside net/prefix_len? */
int ip6_in_prefix(const uint8_t *a, const uint8_t *net, uint32_t prefix_len);

/* May an ICMPv6 error be sent about this validated packet? Not about an ICMPv6 error message
 * (type < 128) or one too short for a type, a non-first fragment, a first fragment of an ICMPv6
 * message, a packet whose headers do not walk, from :: or a multicast source, or to a multicast
 * destination. */
int icmp6_error_allowed(const uint8_t *ip, size_t len);

/* Builds an ICMPv6 error about `ip` from src (16 bytes) into out (ICMP6_ERR_MAX bytes); returns its
 * length. `rest` is the 32-bit word after the checksum (the MTU for Packet Too Big). */
size_t icmp6_build_error(uint8_t *out, const uint8_t *ip, size_t len, uint8_t type, uint8_t code, uint32_t rest,
                         const uint8_t *src);

/* The sum of the IPv6 pseudo-header (RFC 8200 8.1) for an upper-layer length and protocol. */
uint64_t csum_pseudo6(const uint8_t *saddr, const uint8_t *daddr, uint32_t l4_len, uint8_t proto);

#endif
