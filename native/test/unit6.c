/* C unit tests for the IPv6 packet code: validation, the extension-header walk and its edge
 * cases, ICMPv6 errors (when allowed, checksum, quote size), TSO6 split, the TUN offload layer's
 * IPv6 reads, the IPv6 route table and peers known by their IPv6 address. Part of the unit binary
 * (run.sh). */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../csum.h"
#include "../gro.h"
#include "../gso.h"
#include "../ipv4.h"
#include "../ipv6.h"
#include "../map6.h"
#include "../routes.h"
#include "../tun_offload.h"
#include "check.h"

static void addr6(const char *text, uint8_t out[16]) { inet_pton(AF_INET6, text, out); }

/* Reference checksum over the IPv6 pseudo-header + the upper layer, big-endian byte by byte: 0 if valid. */
static uint16_t ref_l4_sum6(const uint8_t *ip, size_t l4_off, size_t l4_len, uint8_t proto) {
  uint32_t s = 0;
  for (int i = 8; i < 40; i += 2) s += (uint32_t)(ip[i] << 8 | ip[i + 1]);
  s += (uint32_t)(l4_len >> 16) + (uint32_t)(l4_len & 0xffff) + proto;
  const uint8_t *p = ip + l4_off;
  for (size_t i = 0; i + 1 < l4_len; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (l4_len & 1) s += (uint32_t)p[l4_len - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

/* An IPv6 packet into p: n_ext extension headers of `ext_type` (8 bytes each) then `proto` with
 * plen_l4 bytes of payload (first byte `first`). Returns its length. */
static size_t build6(uint8_t *p, const char *src, const char *dst, uint8_t hop, int n_ext, uint8_t ext_type, uint8_t proto,
                     size_t plen_l4, uint8_t first) {
  memset(p, 0, 40 + (size_t)n_ext * 8 + plen_l4);
  p[0] = 0x60;
  p[6] = n_ext ? ext_type : proto;
  p[7] = hop;
  addr6(src, p + 8);
  addr6(dst, p + 24);
  size_t at = 40;
  for (int i = 0; i < n_ext; i++, at += 8) p[at] = i + 1 < n_ext ? ext_type : proto;
  if (plen_l4) p[at] = first;
  wr16(p + 4, (uint16_t)(at - 40 + plen_l4));
  return at + plen_l4;
}

static void test_validate_walk(void) {
  uint8_t p[1024];
  size_t n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 0, 0, 17, 16, 0);
  CHECK(ipv6_validate(p, n, 0) == DROP_NONE, "plain");
  CHECK(ipv6_validate(p, 39, 0) == DROP_TRUNCATED, "under 40");
  CHECK(ipv6_validate(p, n - 1, 0) == DROP_TRUNCATED, "payload length past the read");
  CHECK(ipv6_validate(p, n + 5, 0) == DROP_NONE && ip6_total(p) == n, "trailing bytes");
  p[0] = 0x45;
  CHECK(ipv6_validate(p, n, 0) == DROP_NOT_IP, "version 4");
  p[0] = 0x60;
  wr16(p + 4, 0);
  CHECK(ipv6_validate(p, n, 0) == DROP_NONE, "payload length 0, no Hop-by-Hop");
  p[6] = 0;
  CHECK(ipv6_validate(p, n, 0) == DROP_MALFORMED, "jumbogram");

  uint8_t proto;
  size_t off;
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 8, 60, 6, 20, 0);
  CHECK(ipv6_walk(p, n, &proto, &off) == DROP_NONE && proto == 6 && off == 40 + 64, "eight headers");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 9, 60, 6, 20, 0);
  CHECK(ipv6_walk(p, n, &proto, &off) == DROP_EXT_HEADER, "nine headers");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 2, 60, 6, 20, 0);
  p[40] = 0; /* the second header is Hop-by-Hop */
  CHECK(ipv6_walk(p, n, &proto, &off) == DROP_EXT_HEADER, "Hop-by-Hop not first");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 1, 0, 17, 20, 0);
  CHECK(ipv6_walk(p, n, &proto, &off) == DROP_NONE && proto == 17 && off == 48, "Hop-by-Hop first");
  p[41] = 3; /* 32 bytes: past the packet */
  CHECK(ipv6_walk(p, 40 + 8 + 20, &proto, &off) == DROP_EXT_HEADER, "header past the packet");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 1, 43, 17, 400, 0);
  p[41] = 27; /* 224 bytes ending at 264 > 256 */
  CHECK(ipv6_walk(p, n, &proto, &off) == DROP_EXT_HEADER, "header past 256 bytes");
  p[41] = 26; /* ending at 256 exactly */
  CHECK(ipv6_walk(p, n, &proto, &off) == DROP_NONE && off == 256, "header ending at 256");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 1, 44, 17, 20, 0);
  p[40 + 1] = 0x55; /* a Fragment header's length byte is reserved: not read */
  CHECK(ipv6_walk(p, n, &proto, &off) == DROP_NONE && proto == 44 && off == 40, "stops at Fragment");
  CHECK(ipv6_walk(p, 44, &proto, &off) == DROP_EXT_HEADER, "Fragment header truncated");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 0, 0, 59, 0, 0);
  CHECK(ipv6_walk(p, n, &proto, &off) == DROP_NONE && proto == 59, "no next header");
}

static void test_icmp6(void) {
  uint8_t p[2048], out[ICMP6_ERR_MAX];
  size_t n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 0, 0, 58, 16, 128);
  CHECK(icmp6_error_allowed(p, n), "echo request");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 2, 60, 58, 16, 3);
  CHECK(!icmp6_error_allowed(p, n), "time exceeded behind Destination Options");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 0, 0, 58, 0, 0);
  CHECK(!icmp6_error_allowed(p, n), "ICMPv6 without a type");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 1, 44, 17, 16, 0);
  CHECK(icmp6_error_allowed(p, n), "first fragment of UDP");
  p[43] = 0x08; /* offset 1 */
  CHECK(!icmp6_error_allowed(p, n), "non-first fragment");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 1, 44, 58, 16, 128);
  CHECK(!icmp6_error_allowed(p, n), "first fragment of ICMPv6");
  n = build6(p, "::", "fd10:0:2::7", 64, 0, 0, 17, 16, 0);
  CHECK(!icmp6_error_allowed(p, n), "from ::");
  n = build6(p, "ff02::1", "fd10:0:2::7", 64, 0, 0, 17, 16, 0);
  CHECK(!icmp6_error_allowed(p, n), "multicast source");
  n = build6(p, "fd10:0:1::5", "ff02::2", 64, 0, 0, 58, 16, 133);
  CHECK(!icmp6_error_allowed(p, n), "to multicast (router solicitation)");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 9, 60, 17, 16, 0);
  CHECK(!icmp6_error_allowed(p, n), "headers that do not walk");

  uint8_t src[16];
  addr6("fd10:0:1::", src);
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 1, 0, 0, 17, 1500, 0);
  size_t m = icmp6_build_error(out, p, n, 2, 0, 1452, src);
  CHECK(m == 1280, "quote keeps the error within 1280 bytes (%zu)", m);
  CHECK(out[0] >> 4 == 6 && ip6_plen(out) == 1240 && out[6] == 58 && out[7] == 64, "header");
  CHECK(memcmp(out + 8, src, 16) == 0 && memcmp(out + 24, p + 8, 16) == 0, "addresses");
  CHECK(out[40] == 2 && rd32(out + 44) == 1452 && memcmp(out + 48, p, 1232) == 0, "type, MTU, quote");
  CHECK(ref_l4_sum6(out, 40, m - 40, 58) == 0, "ICMPv6 checksum");
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 1, 0, 0, 17, 10, 0);
  m = icmp6_build_error(out, p, n + 30, 3, 0, 0, src);
  CHECK(m == 48 + n && ref_l4_sum6(out, 40, m - 40, 58) == 0, "short packet quoted whole, trailing bytes not");
}

static uint8_t seg_space[64][2048];
static int nseg;
static uint8_t *reserve(void *ctx, size_t len) {
  (void)ctx;
  return nseg < 64 && len <= 2048 ? seg_space[nseg++] : NULL;
}

static void test_tso6(void) {
  static uint8_t p[70000];
  size_t payload = 5000, mss = 1400;
  size_t n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 0, 0, 6, 20 + payload, 0);
  uint8_t *tcp = p + 40;
  wr16(tcp, 40000);
  wr16(tcp + 2, 5201);
  wr32(tcp + 4, 0xfffffc00u); /* wraps */
  tcp[12] = 0x50;
  tcp[13] = 0x18 | 0x80; /* PSH ACK CWR */
  for (size_t i = 0; i < payload; i++) p[60 + i] = (uint8_t)(i * 7);
  wr16(p + 4, 0); /* a super-packet's payload length is not trusted */
  gso_plan plan;
  CHECK(gso_make_plan6(p, n, VNET_GSO_TCPV6, (uint16_t)mss, &plan) == 0 && plan.nsegs == 4 && plan.hdr_len == 60, "plan");
  CHECK(gso_make_plan6(p, n, VNET_GSO_TCPV4, (uint16_t)mss, &plan) < 0, "TCPV4 type on IPv6 refused");
  gso_make_plan6(p, n, VNET_GSO_TCPV6, (uint16_t)mss, &plan);
  nseg = 0;
  CHECK(gso_split6(p, &plan, reserve, NULL) == 4, "split");
  int ok = 1;
  for (int i = 0; i < 4; i++) {
    uint8_t *s = seg_space[i];
    size_t pl = i < 3 ? mss : payload - 3 * mss;
    ok &= ip6_plen(s) == 20 + pl && ipv6_validate(s, 60 + pl, 0) == DROP_NONE;
    ok &= rd32(s + 44) == 0xfffffc00u + (uint32_t)(i * mss);
    ok &= s[53] == (i == 3 ? 0x18 : 0x10) + (i == 0 ? 0x80 : 0); /* PSH last only, CWR first only */
    ok &= ref_l4_sum6(s, 40, 20 + pl, 6) == 0;
    ok &= memcmp(s + 60, p + 60 + i * mss, pl) == 0;
  }
  CHECK(ok, "segments: payload length, sequence, flags, checksum, bytes");

  /* The TUN offload layer: a TSO6 read split; IPv6 reads refused when IPv6 is off. */
  static uint8_t rd[10 + 70000];
  memset(rd, 0, 10);
  vnet_hdr h = {.gso_type = VNET_GSO_TCPV6, .gso_size = (uint16_t)mss, .flags = VNET_F_NEEDS_CSUM, .csum_start = 40, .csum_offset = 16};
  vnet_write(rd, &h);
  memcpy(rd + 10, p, n);
  tun_read r;
  CHECK(tun_offload_parse_ex(rd, 10 + n, &r, 1) == DROP_NONE && r.v6 && r.gso && r.nsegs == 4 && r.biggest == 60 + mss, "TSO6 read");
  /* Its payload length was 0: set from the read, so an ICMPv6 error (Packet Too Big) quotes the
   * TCP header, not just the fixed header. */
  CHECK(ip6_plen(rd + 10) == n - 40, "TSO6 read: payload length from the read");
  static uint8_t err6[1280];
  static const uint8_t tunnel[16] = {0xfd, 0x10, 0, 0, 0, 0x09};
  size_t elen = icmp6_build_error(err6, rd + 10, n, 2, 0, 1400, tunnel);
  CHECK(elen == 1280 && memcmp(err6 + 48, rd + 10, 60) == 0, "Packet Too Big about a TSO6 read quotes its TCP header");
  CHECK(tun_offload_parse_ex(rd, 10 + n, &r, 0) == DROP_NOT_IP, "IPv6 off: not-ip");
  /* A plain UDP/IPv6 read with a partial checksum gets it completed. */
  n = build6(p, "fd10:0:1::5", "fd10:0:2::7", 64, 0, 0, 17, 8 + 101, 0);
  wr16(p + 44, 8 + 101);
  uint16_t pseudo = csum_fold(csum_pseudo6(p + 8, p + 24, 8 + 101, 17));
  csum_store(p + 46, pseudo);
  h = (vnet_hdr){.flags = VNET_F_NEEDS_CSUM, .csum_start = 40, .csum_offset = 6};
  vnet_write(rd, &h);
  memcpy(rd + 10, p, n);
  CHECK(tun_offload_parse_ex(rd, 10 + n, &r, 1) == DROP_NONE && !r.gso && r.len == n, "plain UDP/IPv6 read");
  CHECK(ref_l4_sum6(rd + 10, 40, 8 + 101, 17) == 0, "UDP/IPv6 checksum completed");
  h.csum_start = 20;
  vnet_write(rd, &h);
  CHECK(tun_offload_parse_ex(rd, 10 + n, &r, 1) == DROP_MALFORMED, "csum_start inside the fixed header");
}

static void words(const char *text, uint32_t w[4]) {
  uint8_t b[16];
  addr6(text, b);
  for (int i = 0; i < 4; i++) w[i] = rd32(b + 4 * i);
}

static int all_past(void *ctx, uint64_t gen) {
  (void)ctx;
  (void)gen;
  return 1;
}

static void test_routes6(void) {
  peer_registry reg;
  memset(&reg, 0, sizeof reg);
  felt_err err;
  /* Peer 1: IPv4 192.168.77.2 and IPv6 fd77::2, subnets 10.244.1.0/24 + fd10:0:1::/64.
   * Peer 2: IPv6 only (fd77::3), subnets 10.244.2.0/24 + fd10:0:2::/64 and a longer fd10:0:2:8000::/65.
   * Peer 3: IPv4 only, no IPv6 subnet. */
  route_spec r4[4] = {{0x0af40100u, 24, 0xc0a84d02u}, {0x0af40200u, 24, 0}, {0x0af40280u, 25, 0}, {0x0af40300u, 24, 0xc0a84d04u}};
  route_spec6 r6[4];
  memset(r6, 0, sizeof r6);
  r6[0] = (route_spec6){.flags = ROUTE6_SUBNET | ROUTE6_PUBLIC, .prefix_len = 64};
  words("fd10:0:1::", r6[0].net);
  words("fd77::2", r6[0].pub);
  r6[1] = (route_spec6){.flags = ROUTE6_SUBNET | ROUTE6_PUBLIC, .prefix_len = 64};
  words("fd10:0:2::", r6[1].net);
  words("fd77::3", r6[1].pub);
  r6[2] = (route_spec6){.flags = ROUTE6_SUBNET | ROUTE6_PUBLIC, .prefix_len = 65};
  words("fd10:0:2:0:8000::", r6[2].net);
  words("fd77::3", r6[2].pub);
  route_table *t = rt_build6(r4, r6, 4, &reg, &err);
  CHECK(t && t->npeers == 3 && t->nroutes6 == 3 && t->nlevels6 == 2, "table");
  uint8_t a[16], b[16];
  addr6("fd10:0:2::1", a);
  rt_peer *p2 = rt_lookup6(t, a);
  CHECK(p2 && p2->public_ip == 0 && p2->has_ip6 && p2->peer->has_ip6, "IPv6-only peer by LPM");
  addr6("fd10:0:2:0:8000::1", a);
  CHECK(rt_lookup6(t, a) == p2, "longer prefix, same peer");
  addr6("fd10:0:3::1", a);
  CHECK(rt_lookup6(t, a) == NULL, "no route");
  addr6("fd77::3", b);
  CHECK(rt_find_peer6(t, b) == p2, "decap from its IPv6 address");
  addr6("fd77::2", b);
  rt_peer *p1 = rt_find_peer6(t, b);
  CHECK(p1 && p1 == rt_find_peer(t, 0xc0a84d02u), "a peer with both addresses is one peer");
  addr6("fd10:0:1::9", a);
  CHECK(rt_peer_admits6(t, p1, a) && !rt_peer_admits6(t, p2, a), "admission by subnet6");
  CHECK(rt_peer_admits(t, p2, 0x0af40205u) && !rt_peer_admits(t, p2, 0x0af40105u), "IPv4 admission of the IPv6-only peer");
  rt_peer *p3 = rt_find_peer(t, 0xc0a84d04u);
  CHECK(p3 && p3->nsubnets6 == 0 && !p3->has_ip6, "IPv4-only peer has no IPv6 subnet");
  CHECK(rt_lookup(t, 0x0af40281u) == p2, "IPv4 LPM to the IPv6-only peer");
  route_spec6 bad = {.flags = ROUTE6_SUBNET, .prefix_len = 129};
  CHECK(rt_build6(r4, &bad, 1, &reg, &err) == NULL, "prefix 129 refused");

  /* The IPv6-only peer leaves and returns: counters come back, found by its IPv6 identity. */
  ctr_add(&p2->peer->tx.packets, 7);
  peer *old = p2->peer;
  route_table *t2 = rt_build6(r4, r6, 1, &reg, &err);
  registry_retire(&reg, old, 1, 1000);
  CHECK(registry_live(&reg) == 3, "three live peers before reclaim");
  registry_reclaim(&reg, all_past, NULL);
  CHECK(registry_live(&reg) == 2 && reg.departed_count == 1 && registry_departed(&reg, 0)->has_ip6, "freed, among the departed");
  route_table *t3 = rt_build6(r4, r6, 4, &reg, &err);
  addr6("fd77::3", b);
  CHECK(t3 && rt_find_peer6(t3, b)->peer->tx.packets == 7, "back with its counters");
  rt_free(t);
  rt_free(t2);
  rt_free(t3);
  registry_free(&reg);

  /* map6 remove keeps probe chains intact. */
  map6 m = {0};
  key6 keys[200];
  for (int i = 0; i < 200; i++) {
    keys[i] = (key6){0xfd10000000000000ull | (uint64_t)i << 8, (uint64_t)i * 0x9e37};
    map6_put(&m, keys[i], &keys[i]);
  }
  for (int i = 0; i < 200; i += 2) map6_remove(&m, keys[i]);
  int ok = m.count == 100;
  for (int i = 0; i < 200; i++) ok &= (map6_get(&m, keys[i]) != NULL) == (i % 2 == 1);
  CHECK(ok, "map6 put/remove/get");
  map6_free(&m);
}

/* An IPv6-only overlay: routes flagged ROUTE6_NO_SUBNET4 put nothing in the IPv4 table, whatever
 * their (unused) IPv4 triple holds. */
static void test_routes_v6only(void) {
  peer_registry reg;
  memset(&reg, 0, sizeof reg);
  felt_err err;
  /* Two peers without an IPv4 underlay address; the second's triple holds garbage (prefix 99). */
  route_spec r4[2] = {{0, 0, 0}, {0xdeadbeefu, 99, 0}};
  route_spec6 r6[2];
  memset(r6, 0, sizeof r6);
  r6[0] = (route_spec6){.flags = ROUTE6_SUBNET | ROUTE6_PUBLIC | ROUTE6_NO_SUBNET4, .prefix_len = 64};
  words("fd10:0:1::", r6[0].net);
  words("fd77::2", r6[0].pub);
  r6[1] = (route_spec6){.flags = ROUTE6_SUBNET | ROUTE6_PUBLIC | ROUTE6_NO_SUBNET4, .prefix_len = 64};
  words("fd10:0:2::", r6[1].net);
  words("fd77::3", r6[1].pub);
  route_table *t = rt_build6(r4, r6, 2, &reg, &err);
  CHECK(t && t->npeers == 2 && t->nroutes == 0 && t->nlevels == 0 && t->nroutes6 == 2, "no IPv4 routes, two IPv6 ones");
  uint8_t a[16];
  addr6("fd10:0:2::7", a);
  rt_peer *p2 = rt_lookup6(t, a);
  CHECK(p2 && p2->nsubnets == 0 && p2->nsubnets6 == 1, "peer by its IPv6 subnet only");
  CHECK(rt_lookup(t, 0) == NULL && rt_lookup(t, 0xdeadbeefu) == NULL, "nothing matches IPv4");
  CHECK(!rt_peer_admits(t, p2, 0x0af40205u), "no IPv4 source is admitted");
  /* Without the flag the same triple is checked as before. */
  r6[1].flags &= ~(uint32_t)ROUTE6_NO_SUBNET4;
  CHECK(rt_build6(r4, r6, 2, &reg, &err) == NULL, "an IPv4 prefix 99 is still refused");
  rt_free(t);
  registry_free(&reg);
}

/* A TCP/IPv6 segment with a valid checksum. */
static size_t tcp6_seg(uint8_t *p, uint32_t seq, size_t payload, uint8_t flags, uint8_t fill) {
  size_t n = build6(p, "fd10:0:2::7", "fd10:0:1::5", 63, 0, 0, 6, 20 + payload, 0);
  uint8_t *th = p + 40;
  wr16(th, 5201);
  wr16(th + 2, 40000);
  wr32(th + 4, seq);
  wr32(th + 8, 77);
  th[12] = 0x50;
  th[13] = flags;
  wr16(th + 14, 500);
  memset(th + 20, fill, payload);
  uint64_t sum = csum_pseudo6(p + 8, p + 24, (uint32_t)(20 + payload), 6);
  csum_store(th + 16, csum_finish(csum_add(sum, th, 20 + payload)));
  return n;
}

typedef struct {
  int calls;
  uint32_t nsegs[8];
  uint8_t vh[8][VNET_HDR_LEN];
  uint8_t pkt[8][4096];
  size_t len[8];
} gro_sink;

static int gro_emit(void *ctx, const struct iovec *iov, int iovcnt, uint32_t nsegs, uint32_t bytes, void *owner) {
  (void)bytes;
  (void)owner;
  gro_sink *s = ctx;
  int c = s->calls++;
  s->nsegs[c] = nsegs;
  memcpy(s->vh[c], iov[0].iov_base, VNET_HDR_LEN);
  size_t at = 0;
  for (int i = 1; i < iovcnt; i++) {
    memcpy(s->pkt[c] + at, iov[i].iov_base, iov[i].iov_len);
    at += iov[i].iov_len;
  }
  s->len[c] = at;
  return 0;
}

static void test_gro6(void) {
  static gro_batch g;
  static uint8_t seg[6][1200];
  static gro_sink sink;
  gro_init(&g);
  memset(&sink, 0, sizeof sink);
  size_t n0 = tcp6_seg(seg[0], 1000, 1000, 0x10, 'a');
  size_t n1 = tcp6_seg(seg[1], 2000, 1000, 0x10, 'b');
  size_t n2 = tcp6_seg(seg[2], 3000, 500, 0x18, 'c'); /* shorter, PSH: ends the train */
  size_t n3 = tcp6_seg(seg[3], 9000, 1000, 0x10, 'd'); /* out of order: its own item */
  size_t n4 = tcp6_seg(seg[4], 10000, 1000, 0x10, 'e');
  seg[4][1] ^= 0x01; /* a different flow label: not merged */
  size_t n5 = tcp6_seg(seg[5], 11000, 1000, 0x10, 'f');
  seg[5][40 + 16] ^= 0xff; /* a bad checksum: passed through, never merged */
  gro_add(&g, seg[0], (uint32_t)n0, NULL);
  gro_add(&g, seg[1], (uint32_t)n1, NULL);
  gro_add(&g, seg[2], (uint32_t)n2, NULL);
  gro_add(&g, seg[3], (uint32_t)n3, NULL);
  gro_add(&g, seg[4], (uint32_t)n4, NULL);
  gro_add(&g, seg[5], (uint32_t)n5, NULL);
  gro_flush(&g, gro_emit, &sink);
  CHECK(sink.calls == 4 && sink.nsegs[0] == 3 && sink.nsegs[1] == 1 && sink.nsegs[2] == 1 && sink.nsegs[3] == 1,
        "items: one merged train of 3, three singles (%d)", sink.calls);
  vnet_hdr h;
  vnet_parse(sink.vh[0], &h);
  CHECK(h.gso_type == VNET_GSO_TCPV6 && h.gso_size == 1000 && h.hdr_len == 60 && h.csum_start == 40 && h.csum_offset == 16 &&
            (h.flags & VNET_F_NEEDS_CSUM),
        "virtio header");
  uint8_t *m = sink.pkt[0];
  CHECK(sink.len[0] == 60 + 2500 && ip6_plen(m) == 20 + 2500 && (m[53] & 0x08), "merged length and PSH");
  /* Split it again as the kernel would: every segment checks out and carries the original bytes. */
  gso_plan plan;
  CHECK(gso_make_plan6(m, sink.len[0], VNET_GSO_TCPV6, h.gso_size, &plan) == 0 && plan.nsegs == 3, "plan");
  nseg = 0;
  gso_split6(m, &plan, reserve, NULL);
  int ok = 1;
  for (int i = 0; i < 3; i++) {
    size_t pl = i < 2 ? 1000 : 500;
    ok &= ref_l4_sum6(seg_space[i], 40, 20 + pl, 6) == 0 && rd32(seg_space[i] + 44) == 1000u + (uint32_t)(i * 1000);
    ok &= memcmp(seg_space[i] + 60, (const uint8_t *)(i == 0 ? "a" : i == 1 ? "b" : "c"), 1) == 0;
  }
  CHECK(ok, "round trip");
  vnet_parse(sink.vh[1], &h);
  CHECK(h.gso_type == VNET_GSO_NONE && sink.len[1] == n3 && memcmp(sink.pkt[1], seg[3], n3) == 0, "single written as it is");
}

static uint64_t fz = 0x243f6a8885a308d3ull;
static uint32_t fz_rnd(void) {
  fz ^= fz << 13;
  fz ^= fz >> 7;
  fz ^= fz << 17;
  return (uint32_t)fz;
}

static int null_emit(void *ctx, const struct iovec *iov, int iovcnt, uint32_t nsegs, uint32_t bytes, void *owner) {
  (void)ctx, (void)iov, (void)iovcnt, (void)nsegs, (void)bytes, (void)owner;
  return 0;
}

/* Random and mutated IPv6 packets through every IPv6 parser (ASan/UBSan watch for any overrun). */
static void test_fuzz6(void) {
  static uint8_t p[70000], rd[10 + 70000], copies[64][2048], out[ICMP6_ERR_MAX];
  static gro_batch g;
  gro_init(&g);
  uint8_t src[16] = {0xfd};
  for (int iter = 0; iter < 100000; iter++) {
    size_t n;
    if (iter % 2) {
      int next = fz_rnd() % 4;
      static const uint8_t kinds[4] = {0, 43, 44, 60};
      n = build6(p, "fd10:0:1::5", "fd10:0:2::7", (uint8_t)fz_rnd(), (int)(fz_rnd() % 10), kinds[next],
                 fz_rnd() % 3 ? 6 : 58, fz_rnd() % 1600, (uint8_t)fz_rnd());
      for (int k = fz_rnd() % 5; k > 0; k--) p[fz_rnd() % (n < 140 ? n : 140)] = (uint8_t)fz_rnd();
      if (fz_rnd() % 4 == 0) n = fz_rnd() % (n + 1);
    } else {
      n = fz_rnd() % 300;
      for (size_t i = 0; i < n; i++) p[i] = (uint8_t)fz_rnd();
      if (n) p[0] = (uint8_t)(0x60 | (p[0] & 15));
    }
    if (ipv6_validate(p, n, 1) == DROP_NONE) {
      gso_plan plan;
      if (gso_make_plan6(p, n, fz_rnd() % 2 ? VNET_GSO_TCPV6 : VNET_GSO_UDP_L4, (uint16_t)(1 + fz_rnd() % 1500), &plan) == 0) {
        nseg = 0;
        gso_split6(p, &plan, reserve, NULL);
      }
    }
    if (ipv6_validate(p, n, 0) == DROP_NONE) {
      size_t total = ip6_total(p);
      uint8_t proto;
      size_t off;
      ipv6_walk(p, total, &proto, &off);
      if (icmp6_error_allowed(p, total)) icmp6_build_error(out, p, n, 1, 0, 0, src);
      if (total <= sizeof copies[0]) {
        int slot = iter % 64;
        if (slot == 0) gro_flush(&g, null_emit, NULL);
        memcpy(copies[slot], p, total);
        gro_add(&g, copies[slot], (uint32_t)total, NULL);
      }
    }
    /* The TUN offload layer, with a random virtio header. */
    for (int i = 0; i < 10; i++) rd[i] = (uint8_t)fz_rnd();
    rd[1] = (uint8_t)(rd[1] % 2 ? VNET_GSO_TCPV6 : rd[1] % 3 ? VNET_GSO_NONE : VNET_GSO_UDP_L4);
    memcpy(rd + 10, p, n);
    tun_read r;
    if (tun_offload_parse_ex(rd, 10 + n, &r, 1) == DROP_NONE) {
      nseg = 0;
      tun_offload_emit(&r, reserve, NULL);
    }
  }
  gro_flush(&g, null_emit, NULL);
  CHECK(1, "IPv6 fuzz survived");
}

void test_ipv6(void) {
  test_fuzz6();
  test_gro6();
  test_validate_walk();
  test_icmp6();
  test_tso6();
  test_routes6();
  test_routes_v6only();
}
