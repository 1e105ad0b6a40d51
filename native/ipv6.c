#include "ipv6.h"

#include "csum.h"

drop_reason ipv6_validate(const uint8_t *buf, size_t len, int ignore_total) {
  if (len < IP6_HDR_LEN) return DROP_TRUNCATED;
  if (buf[0] >> 4 != 6) return DROP_NOT_IP;
  if (ignore_total) return DROP_NONE;
  if (ip6_plen(buf) == 0 && buf[6] == IPPROTO_HOPOPTS_) return DROP_MALFORMED; /* a jumbogram */
  if (ip6_total(buf) > len) return DROP_TRUNCATED;
  return DROP_NONE;
}

drop_reason ipv6_walk(const uint8_t *ip, size_t len, uint8_t *proto, size_t *off) {
  uint8_t next = ip[6];
  size_t at = IP6_HDR_LEN;
  size_t limit = len < IP6_EXT_MAX_BYTES ? len : IP6_EXT_MAX_BYTES;
  for (int n = 0;; n++) {
    if (next != IPPROTO_HOPOPTS_ && next != IPPROTO_ROUTING_ && next != IPPROTO_DSTOPTS_ && next != IPPROTO_FRAGMENT_)
      break; /* the upper layer */
    if (n == IP6_EXT_MAX_HEADERS) return DROP_EXT_HEADER;
    if (next == IPPROTO_HOPOPTS_ && at != IP6_HDR_LEN) return DROP_EXT_HEADER; /* only right after the fixed header */
    if (at + 8 > limit) return DROP_EXT_HEADER; /* every header has 8 bytes at least; a Fragment header exactly */
    if (next == IPPROTO_FRAGMENT_) break;   /* forwarded, not looked past */
    size_t hlen = ((size_t)ip[at + 1] + 1) * 8;
    if (at + hlen > limit) return DROP_EXT_HEADER;
    next = ip[at];
    at += hlen;
  }
  if (proto) *proto = next;
  if (off) *off = at;
  return DROP_NONE;
}

int ip6_in_prefix(const uint8_t *a, const uint8_t *net, uint32_t prefix_len) {
  uint32_t full = prefix_len / 8, bits = prefix_len % 8;
  if (full > 16) return 0;
  if (memcmp(a, net, full) != 0) return 0;
  if (bits == 0 || full == 16) return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - bits));
  return (a[full] & mask) == (net[full] & mask);
}

static int unspecified(const uint8_t *a) {
  static const uint8_t zero[16];
  return memcmp(a, zero, 16) == 0;
}

int icmp6_error_allowed(const uint8_t *ip, size_t len) {
  if (unspecified(ip6_src(ip)) || ip6_src(ip)[0] == 0xff || ip6_dst(ip)[0] == 0xff) return 0;
  size_t avail = ip6_total(ip) < len ? ip6_total(ip) : len;
  uint8_t proto;
  size_t off;
  if (ipv6_walk(ip, avail, &proto, &off) != DROP_NONE) return 0;
  if (proto == IPPROTO_FRAGMENT_) {
    if (((ip[off + 2] << 8 | ip[off + 3]) & 0xfff8) != 0) return 0; /* not the first fragment */
    return ip[off] != IPPROTO_ICMPV6_; /* the ICMPv6 type lies past the Fragment header */
  }
  if (proto == IPPROTO_ICMPV6_) return off < avail && ip[off] >= 128; /* informational only */
  return 1;
}

uint64_t csum_pseudo6(const uint8_t *saddr, const uint8_t *daddr, uint32_t l4_len, uint8_t proto) {
  uint64_t sum = csum_add(0, saddr, 16);
  sum = csum_add(sum, daddr, 16);
  uint8_t tail[8] = {(uint8_t)(l4_len >> 24), (uint8_t)(l4_len >> 16), (uint8_t)(l4_len >> 8), (uint8_t)l4_len,
                     0, 0, 0, proto};
  return csum_add(sum, tail, 8);
}

size_t icmp6_build_error(uint8_t *out, const uint8_t *ip, size_t len, uint8_t type, uint8_t code, uint32_t rest,
                         const uint8_t *src) {
  size_t avail = ip6_total(ip) < len ? ip6_total(ip) : len;
  size_t quote = avail < ICMP6_ERR_MAX - IP6_HDR_LEN - 8 ? avail : ICMP6_ERR_MAX - IP6_HDR_LEN - 8;
  size_t icmp_len = 8 + quote;
  memset(out, 0, IP6_HDR_LEN + 8);
  out[0] = 0x60;
  out[4] = (uint8_t)(icmp_len >> 8);
  out[5] = (uint8_t)icmp_len;
  out[6] = IPPROTO_ICMPV6_;
  out[7] = 64;
  memcpy(out + 8, src, 16);
  memcpy(out + 24, ip6_src(ip), 16);
  uint8_t *icmp = out + IP6_HDR_LEN;
  icmp[0] = type;
  icmp[1] = code;
  icmp[4] = (uint8_t)(rest >> 24);
  icmp[5] = (uint8_t)(rest >> 16);
  icmp[6] = (uint8_t)(rest >> 8);
  icmp[7] = (uint8_t)rest;
  memcpy(icmp + 8, ip, quote);
  uint64_t sum = csum_pseudo6(out + 8, out + 24, (uint32_t)icmp_len, IPPROTO_ICMPV6_);
  csum_store(icmp + 2, csum_finish(csum_add(sum, icmp, icmp_len)));
  return IP6_HDR_LEN + icmp_len;
}
