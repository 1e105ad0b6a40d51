/* Packet helpers shared by the fuzz harnesses: a seeded PRNG, IPv4 and IPv6 packet builders (with the
 * structure mark and stream-position payload of fuzz.h), checksums and the payload oracle. */
#include "pkt.h"

#include <string.h>
#include <sys/uio.h>

#include "../gro.h"
#include "../gso.h"
#include "../ipv4.h"
#include "../routes.h"

const uint16_t FUZZ_UDP_SEG[8] = {1, 8, 100, 536, 1000, 1400, 1444, 1472};

uint16_t fuzz_sum(const uint8_t *p, size_t n, uint32_t seed) {
  uint64_t s = seed;
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)p[n - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)s; /* folded, not complemented: 0xffff over data that includes a right checksum */
}

uint32_t fuzz_pseudo_seed(const uint8_t *ip, uint8_t proto, uint32_t l4len) {
  return (uint32_t)rd16(ip + 12) + rd16(ip + 14) + rd16(ip + 16) + rd16(ip + 18) + proto + l4len;
}

uint8_t fuzz_oracle_byte(uint32_t src, uint32_t dst, uint32_t ports, uint32_t pos) {
  uint32_t h = src * 0x9e3779b1u ^ dst * 0x85ebca77u ^ ports * 0xc2b2ae3du ^ pos * 0x27d4eb2fu;
  h ^= h >> 15;
  h *= 0x2c1b3c6du;
  h ^= h >> 12;
  h *= 0x297a2d39u;
  h ^= h >> 15;
  return (uint8_t)h;
}

int fuzz_is_marked(const uint8_t *ip, size_t len) {
  unsigned hl = (ip[0] & 15u) * 4;
  if ((ip[9] != 6 && ip[9] != 17) || len < hl + 8 || (rd16(ip + 6) & (IP_MF | IP_OFFMASK))) return 0;
  return rd16(ip + hl + 2) == FUZZ_MARK_DPORT && ip[hl] == FUZZ_MARK_SPORT_HI;
}

/* Full L4 checksum of an unfragmented TCP/UDP packet of len bytes (UDP 0 = none). */
int fuzz_l4_valid(const uint8_t *ip, size_t len) {
  unsigned hl = (ip[0] & 15u) * 4;
  if (len < hl + (ip[9] == 6 ? 20u : 8u)) return 0;
  if (ip[9] == 17 && rd16(ip + hl + 6) == 0) return 1;
  return fuzz_sum(ip + hl, len - hl, fuzz_pseudo_seed(ip, ip[9], (uint32_t)(len - hl))) == 0xffff;
}

/* Payload bytes of a marked packet are where they belong in their stream. */
int fuzz_oracle_ok(const uint8_t *ip, size_t len) {
  unsigned hl = (ip[0] & 15u) * 4;
  const uint8_t *l4 = ip + hl;
  uint32_t src = rd32(ip + 12), dst = rd32(ip + 16), ports = rd32(l4);
  unsigned l4h;
  uint32_t pos0;
  if (ip[9] == 6) {
    l4h = (l4[12] >> 4) * 4u;
    pos0 = rd32(l4 + 4);
  } else {
    l4h = 8;
    pos0 = (uint32_t)rd16(ip + 4) * FUZZ_UDP_SEG[l4[1] & 7];
  }
  if (len < hl + l4h) return 0;
  for (size_t k = 0; k < len - hl - l4h; k++)
    if (l4[l4h + k] != fuzz_oracle_byte(src, dst, ports, pos0 + (uint32_t)k)) return 0;
  return 1;
}

static uint64_t rng_s[4];
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
uint64_t rnd64(void) { /* xoshiro256** */
  uint64_t r = rotl(rng_s[1] * 5, 7) * 9, t = rng_s[1] << 17;
  rng_s[2] ^= rng_s[0];
  rng_s[3] ^= rng_s[1];
  rng_s[1] ^= rng_s[2];
  rng_s[0] ^= rng_s[3];
  rng_s[2] ^= t;
  rng_s[3] = rotl(rng_s[3], 45);
  return r;
}
void rng_seed(uint64_t seed) {
  for (int i = 0; i < 4; i++) { /* splitmix64 */
    seed += 0x9e3779b97f4a7c15ull;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    rng_s[i] = z ^ (z >> 31);
  }
}
uint32_t rnd(uint32_t n) { return n ? (uint32_t)(rnd64() % n) : 0; }
int chance(uint32_t percent) { return rnd(100) < percent; }
void fill_random(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd64();
}

uint32_t host_in(uint32_t net, uint32_t len) {
  uint32_t host = len >= 32 ? 0 : (uint32_t)rnd64() & ~prefix_mask(len);
  return (net & prefix_mask(len)) | host;
}

/* Writes the packet described by s into p; returns its length. */
size_t build_packet(uint8_t *p, const pkt_spec *s) {
  unsigned hl = 20 + s->ip_opt;
  unsigned l4h = s->proto == 6 ? 20 + s->tcp_opt : (s->proto == 17 || s->proto == 1) ? 8 : 0;
  size_t len = hl + l4h + s->payload;
  memset(p, 0, hl + l4h);
  p[0] = (uint8_t)(0x40 | (hl / 4));
  p[1] = s->tos;
  wr16(p + 2, (uint16_t)len);
  wr16(p + 4, s->id);
  wr16(p + 6, s->frag);
  p[8] = s->ttl;
  p[9] = s->proto;
  wr32(p + 12, s->src);
  wr32(p + 16, s->dst);
  for (unsigned i = 20; i < hl; i++) p[i] = 1; /* NOP options */
  uint8_t *l4 = p + hl;
  uint8_t *pl = l4 + l4h;
  if (s->proto == 6 || s->proto == 17) {
    wr16(l4, s->sport);
    wr16(l4 + 2, s->dport);
  }
  if (s->proto == 6) {
    wr32(l4 + 4, s->seq);
    wr32(l4 + 8, s->ack);
    l4[12] = (uint8_t)((l4h / 4) << 4);
    l4[13] = s->tcp_flags;
    wr16(l4 + 14, 64240);
    for (unsigned i = 20; i < l4h; i++) l4[i] = (uint8_t)(i == 20 ? 8 : i == 21 ? 10 : (s->ack >> (i & 3)));
  } else if (s->proto == 17) {
    wr16(l4 + 4, (uint16_t)(8 + s->payload));
  } else if (s->proto == 1) {
    l4[0] = s->icmp_type;
    l4[1] = s->icmp_code;
  }
  if (s->marked && (s->proto == 6 || s->proto == 17)) {
    uint32_t ports = rd32(l4);
    uint32_t pos0 = s->proto == 6 ? s->seq : (uint32_t)s->id * FUZZ_UDP_SEG[s->sport & 7];
    for (size_t k = 0; k < s->payload; k++) pl[k] = fuzz_oracle_byte(s->src, s->dst, ports, pos0 + (uint32_t)k);
  } else {
    fill_random(pl, s->payload);
  }
  size_t l4len = l4h + s->payload;
  if (s->proto == 6 || s->proto == 17) {
    uint8_t *cf = s->proto == 6 ? l4 + 16 : l4 + 6;
    uint32_t seed = fuzz_pseudo_seed(p, s->proto, (uint32_t)l4len);
    if (s->csum_mode == 1) {
      uint32_t f = seed;
      while (f >> 16) f = (f & 0xffff) + (f >> 16);
      wr16(cf, (uint16_t)f);
    } else if (s->csum_mode == 2) {
      wr16(cf, (uint16_t)rnd64());
    } else {
      uint16_t c = (uint16_t)~fuzz_sum(l4, l4len, seed);
      if (s->proto == 17 && c == 0) c = 0xffff;
      wr16(cf, c);
    }
  } else if (s->proto == 1) {
    wr16(l4 + 2, (uint16_t)~fuzz_sum(l4, l4len, 0));
  }
  wr16(p + 10, 0);
  wr16(p + 10, (uint16_t)~fuzz_sum(p, hl, 0));
  return len;
}

/* Removes the structure mark before byte-level mutation (the oracle only judges intact streams). */
void unmark(uint8_t *ip, size_t len) {
  if (len < 20) return;
  unsigned hl = (ip[0] & 15u) * 4;
  if (len >= hl + 4 && (ip[9] == 6 || ip[9] == 17)) {
    ip[hl] = 0;
    ip[hl + 2] = 0;
    ip[hl + 3] = 0;
  }
}

void fix_ip_csum(uint8_t *ip, size_t len) {
  if (len < 20) return;
  unsigned hl = (ip[0] & 15u) * 4;
  if (hl < 20 || hl > len) return;
  wr16(ip + 10, 0);
  wr16(ip + 10, (uint16_t)~fuzz_sum(ip, hl, 0));
}


const char *fuzz_gro_check(const uint8_t *vnet_hdr_bytes, const struct iovec *iov, int iovcnt, uint8_t *merged,
                           size_t *total) {
  vnet_hdr h;
  vnet_parse(vnet_hdr_bytes, &h);
  *total = 0;
  int nsegs = iovcnt - 1;
  if (nsegs < 2 || nsegs > GRO_MAX_SEGS_PER_ITEM) return "GRO packet of fewer than 2 or more than 64 segments";
  for (int k = 1; k < iovcnt; k++) {
    if (*total + iov[k].iov_len > 65535) return "GRO packet above 65,535 bytes";
    memcpy(merged + *total, iov[k].iov_base, iov[k].iov_len);
    *total += iov[k].iov_len;
  }
  size_t n = *total;
  if (n < 40 || merged[0] != 0x45 || rd16(merged + 2) != n || merged[9] != 6 || fuzz_sum(merged, 20, 0) != 0xffff)
    return "GRO packet with a bad IPv4 header";
  unsigned thl = (merged[32] >> 4) * 4u;
  if (h.flags != VNET_F_NEEDS_CSUM || h.gso_type != VNET_GSO_TCPV4 || h.hdr_len != 20 + thl || h.csum_start != 20 ||
      h.csum_offset != 16 || h.gso_size == 0 || iov[1].iov_len != 20 + thl + h.gso_size)
    return "GRO virtio header does not describe the packet";
  for (int k = 2; k < iovcnt; k++)
    if (iov[k].iov_len > h.gso_size || (k < iovcnt - 1 && iov[k].iov_len != h.gso_size))
      return "GRO piece that is not gso_size long (only the last may be shorter)";
  if (merged[33] != 0x10 && merged[33] != 0x18) return "GRO packet with TCP flags other than ACK or ACK|PSH";
  /* Finish the checksum as the kernel would (the field holds the pseudo-header sum), then verify. */
  uint16_t c = (uint16_t)~fuzz_sum(merged + 20, n - 20, 0);
  merged[36] = (uint8_t)(c >> 8);
  merged[37] = (uint8_t)c;
  if (!fuzz_l4_valid(merged, n)) return "GRO packet's TCP checksum does not verify once finished";
  if (fuzz_is_marked(merged, n) && !fuzz_oracle_ok(merged, n)) return "GRO packet with payload bytes out of order";
  return NULL;
}

/* ---- IPv6 (TCP/UDP right after the fixed header; the mark as for IPv4, the oracle keyed by
 * the last 32 bits of each address; marked UDP/IPv6 carries no stream position) ---------------- */

static uint32_t pseudo_seed6(const uint8_t *ip, uint8_t proto, uint32_t l4len) {
  return (uint32_t)fuzz_sum(ip + 8, 32, 0) + proto + (l4len >> 16) + (l4len & 0xffff);
}

size_t build_packet6(uint8_t *p, const pkt_spec *s) {
  unsigned l4h = s->proto == 6 ? 20 + s->tcp_opt : 8;
  size_t l4len = l4h + s->payload;
  memset(p, 0, 40 + l4h);
  p[0] = (uint8_t)(0x60 | (s->tos >> 4));
  p[1] = (uint8_t)(s->tos << 4);
  wr16(p + 4, (uint16_t)l4len);
  p[6] = s->proto;
  p[7] = s->ttl;
  memcpy(p + 8, s->src6, 16);
  memcpy(p + 24, s->dst6, 16);
  uint8_t *l4 = p + 40, *pl = l4 + l4h;
  wr16(l4, s->sport);
  wr16(l4 + 2, s->dport);
  if (s->proto == 6) {
    wr32(l4 + 4, s->seq);
    wr32(l4 + 8, s->ack);
    l4[12] = (uint8_t)((l4h / 4) << 4);
    l4[13] = s->tcp_flags;
    wr16(l4 + 14, 64240);
    for (unsigned i = 20; i < l4h; i++) l4[i] = (uint8_t)(i == 20 ? 8 : i == 21 ? 10 : (s->ack >> (i & 3)));
  } else {
    wr16(l4 + 4, (uint16_t)l4len);
  }
  if (s->marked && s->proto == 6) {
    uint32_t ports = rd32(l4);
    for (size_t k = 0; k < s->payload; k++) pl[k] = fuzz_oracle_byte(rd32(p + 20), rd32(p + 36), ports, s->seq + (uint32_t)k);
  } else {
    fill_random(pl, s->payload);
  }
  uint8_t *cf = s->proto == 6 ? l4 + 16 : l4 + 6;
  uint32_t seed = pseudo_seed6(p, s->proto, (uint32_t)l4len);
  if (s->csum_mode == 1) {
    while (seed >> 16) seed = (seed & 0xffff) + (seed >> 16);
    wr16(cf, (uint16_t)seed);
  } else if (s->csum_mode == 2) {
    wr16(cf, (uint16_t)rnd64());
  } else {
    uint16_t c = (uint16_t)~fuzz_sum(l4, l4len, seed);
    wr16(cf, c == 0 && s->proto == 17 ? 0xffff : c);
  }
  return 40 + l4len;
}

int fuzz_is_marked6(const uint8_t *ip, size_t len) {
  return len >= 60 && ip[0] >> 4 == 6 && ip[6] == 6 && rd16(ip + 42) == FUZZ_MARK_DPORT && ip[40] == FUZZ_MARK_SPORT_HI;
}

int fuzz_l4_valid6(const uint8_t *ip, size_t len) {
  if (len < 40 + (ip[6] == 6 ? 20u : 8u) || (ip[6] != 6 && ip[6] != 17)) return 0;
  return fuzz_sum(ip + 40, len - 40, pseudo_seed6(ip, ip[6], (uint32_t)(len - 40))) == 0xffff;
}

int fuzz_oracle_ok6(const uint8_t *ip, size_t len) {
  const uint8_t *l4 = ip + 40;
  unsigned l4h = (l4[12] >> 4) * 4u;
  if (len < 40 + l4h) return 0;
  uint32_t pos0 = rd32(l4 + 4), ports = rd32(l4);
  for (size_t k = 0; k < len - 40 - l4h; k++)
    if (l4[l4h + k] != fuzz_oracle_byte(rd32(ip + 20), rd32(ip + 36), ports, pos0 + (uint32_t)k)) return 0;
  return 1;
}

const char *fuzz_gro_check6(const uint8_t *vnet_hdr_bytes, const struct iovec *iov, int iovcnt, uint8_t *merged,
                            size_t *total) {
  vnet_hdr h;
  vnet_parse(vnet_hdr_bytes, &h);
  *total = 0;
  int nsegs = iovcnt - 1;
  if (nsegs < 2 || nsegs > GRO_MAX_SEGS_PER_ITEM) return "GRO6 packet of fewer than 2 or more than 64 segments";
  for (int k = 1; k < iovcnt; k++) {
    if (*total + iov[k].iov_len > 65535) return "GRO6 packet above 65,535 bytes";
    memcpy(merged + *total, iov[k].iov_base, iov[k].iov_len);
    *total += iov[k].iov_len;
  }
  size_t n = *total;
  if (n < 60 || merged[0] >> 4 != 6 || 40u + rd16(merged + 4) != n || merged[6] != 6 || merged[7] == 0)
    return "GRO6 packet with a bad IPv6 header";
  unsigned thl = (merged[52] >> 4) * 4u;
  if (h.flags != VNET_F_NEEDS_CSUM || h.gso_type != VNET_GSO_TCPV6 || h.hdr_len != 40 + thl || h.csum_start != 40 ||
      h.csum_offset != 16 || h.gso_size == 0 || iov[1].iov_len != 40 + thl + h.gso_size)
    return "GRO6 virtio header does not describe the packet";
  for (int k = 2; k < iovcnt; k++)
    if (iov[k].iov_len > h.gso_size || (k < iovcnt - 1 && iov[k].iov_len != h.gso_size))
      return "GRO6 piece that is not gso_size long (only the last may be shorter)";
  if (merged[53] != 0x10 && merged[53] != 0x18) return "GRO6 packet with TCP flags other than ACK or ACK|PSH";
  uint16_t c = (uint16_t)~fuzz_sum(merged + 40, n - 40, 0);
  merged[56] = (uint8_t)(c >> 8);
  merged[57] = (uint8_t)c;
  if (!fuzz_l4_valid6(merged, n)) return "GRO6 packet's TCP checksum does not verify once finished";
  if (fuzz_is_marked6(merged, n) && !fuzz_oracle_ok6(merged, n)) return "GRO6 packet with payload bytes out of order";
  return NULL;
}
