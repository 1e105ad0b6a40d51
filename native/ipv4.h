/* IPv4 header checks, TTL, and the ICMP errors the engine originates (docs/datapath.md).
 * Every function bounds-checks against the length it is given. */
#ifndef FELT_IPV4_H
#define FELT_IPV4_H

#include <stddef.h>
#include <stdint.h>

#include "stats.h"

#define IP_HDR_MIN 20
#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFMASK 0x1fff
#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void wr16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static inline unsigned ip_hlen(const uint8_t *ip) { return (ip[0] & 15u) * 4; }
static inline uint16_t ip_total(const uint8_t *ip) { return rd16(ip + 2); }
static inline uint32_t ip_src(const uint8_t *ip) { return rd32(ip + 12); }
static inline uint32_t ip_dst(const uint8_t *ip) { return rd32(ip + 16); }

/* Validates buf[0, len) as an IPv4 packet, in the order of docs/datapath.md:
 * < 20 -> TRUNCATED; version != 4 -> NOT_IP; IHL < 5 or total < IHL*4 -> MALFORMED;
 * header longer than len -> TRUNCATED; (verify_csum) bad header checksum -> MALFORMED;
 * total > len -> TRUNCATED (skipped when ignore_total: TSO super-packets). Returns DROP_NONE if fine. */
drop_reason ipv4_validate(const uint8_t *buf, size_t len, int verify_csum, int ignore_total);

/* Recomputes the header checksum in place. */
void ipv4_set_csum(uint8_t *ip);

/* TTL - 1 with an incremental checksum patch (RFC 1624). The caller checked TTL > 1. */
void ipv4_dec_ttl(uint8_t *ip);

/* May an ICMP error be sent about this validated packet (len bytes available)? */
int icmp_error_allowed(const uint8_t *ip, size_t len);

#define ICMP_ERR_MAX (IP_HDR_MIN + 8 + 60 + 8)

/* Builds an ICMP error about `ip` from src_ip into out (ICMP_ERR_MAX bytes); returns its length.
 * `rest` is the 32-bit word after the ICMP checksum (next-hop MTU for frag-needed). */
size_t icmp_build_error(uint8_t *out, const uint8_t *ip, size_t len, uint8_t type, uint8_t code, uint32_t rest,
                        uint32_t src_ip);

/* Token bucket: rate per second, burst; time in nanoseconds (monotonic). Single-threaded. */
typedef struct {
  uint64_t milli_tokens;
  uint64_t last_ns;
  uint32_t rate;
  uint32_t burst;
} token_bucket;

void bucket_init(token_bucket *b, uint32_t rate, uint32_t burst, uint64_t now_ns);
int bucket_take(token_bucket *b, uint64_t now_ns);

#endif
