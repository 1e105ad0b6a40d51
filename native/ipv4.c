#include "ipv4.h"

#include <string.h>

#include "csum.h"

drop_reason ipv4_validate(const uint8_t *buf, size_t len, int verify_csum, int ignore_total) {
  if (len < IP_HDR_MIN) return DROP_TRUNCATED;
  if (buf[0] >> 4 != 4) return DROP_NOT_IP;
  unsigned hlen = ip_hlen(buf);
  unsigned total = ip_total(buf);
  if (hlen < IP_HDR_MIN || (!ignore_total && total < hlen)) return DROP_MALFORMED;
  if (hlen > len) return DROP_TRUNCATED;
  if (verify_csum && csum_fold(csum_add(0, buf, hlen)) != 0xffff) return DROP_MALFORMED;
  if (!ignore_total && total > len) return DROP_TRUNCATED;
  return DROP_NONE;
}

void ipv4_set_csum(uint8_t *ip) {
  csum_store(ip + 10, 0);
  csum_store(ip + 10, csum_finish(csum_add(0, ip, ip_hlen(ip))));
}

void ipv4_dec_ttl(uint8_t *ip) {
  /* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), on the TTL/protocol word. */
  uint16_t old_word = rd16(ip + 8);
  ip[8]--;
  uint16_t new_word = rd16(ip + 8);
  uint32_t sum = (uint32_t)(uint16_t)~rd16(ip + 10) + (uint16_t)~old_word + new_word;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  wr16(ip + 10, (uint16_t)~sum);
}

static int multicast_or_broadcast(uint32_t a) { return (a >> 28) == 0xe || a == 0xffffffffu; }

int icmp_error_allowed(const uint8_t *ip, size_t len) {
  if (rd16(ip + 6) & IP_OFFMASK) return 0;
  uint32_t src = ip_src(ip);
  if (src == 0 || multicast_or_broadcast(src) || multicast_or_broadcast(ip_dst(ip))) return 0;
  if (ip[9] == IPPROTO_ICMP_) {
    unsigned hlen = ip_hlen(ip);
    size_t avail = ip_total(ip) < len ? ip_total(ip) : len;
    if (avail <= hlen) return 0; /* too short to carry a type */
    uint8_t type = ip[hlen];
    if (type == 3 || type == 4 || type == 5 || type == 11 || type == 12) return 0;
  }
  return 1;
}

size_t icmp_build_error(uint8_t *out, const uint8_t *ip, size_t len, uint8_t type, uint8_t code, uint32_t rest,
                        uint32_t src_ip) {
  unsigned hlen = ip_hlen(ip);
  size_t avail = ip_total(ip) < len ? ip_total(ip) : len;
  size_t extra = avail > hlen ? avail - hlen : 0;
  size_t quote = hlen + (extra < 8 ? extra : 8);
  size_t icmp_len = 8 + quote;
  size_t total = IP_HDR_MIN + icmp_len;

  memset(out, 0, IP_HDR_MIN + 8);
  out[0] = 0x45;
  wr16(out + 2, (uint16_t)total);
  out[8] = 64;
  out[9] = IPPROTO_ICMP_;
  wr32(out + 12, src_ip);
  memcpy(out + 16, ip + 12, 4);
  ipv4_set_csum(out);

  uint8_t *icmp = out + IP_HDR_MIN;
  icmp[0] = type;
  icmp[1] = code;
  wr32(icmp + 4, rest);
  memcpy(icmp + 8, ip, quote);
  csum_store(icmp + 2, csum_finish(csum_add(0, icmp, icmp_len)));
  return total;
}

void bucket_init(token_bucket *b, uint32_t rate, uint32_t burst, uint64_t now_ns) {
  b->rate = rate;
  b->burst = burst;
  b->milli_tokens = (uint64_t)burst * 1000;
  b->last_ns = now_ns;
}

int bucket_take(token_bucket *b, uint64_t now_ns) {
  if (now_ns > b->last_ns) {
    uint64_t add = (now_ns - b->last_ns) / 1000000 * b->rate; /* whole ms x tokens/s = milli-tokens */
    b->last_ns += (now_ns - b->last_ns) / 1000000 * 1000000;
    b->milli_tokens += add;
    if (b->milli_tokens > (uint64_t)b->burst * 1000) b->milli_tokens = (uint64_t)b->burst * 1000;
  }
  if (b->milli_tokens < 1000) return 0;
  b->milli_tokens -= 1000;
  return 1;
}
