/* C unit tests for the packet code of the native engine: checksums, TSO/USO splitting, userspace
 * GRO, route lookup, ICMP errors, the token bucket, plus a fuzz pass of random packets through
 * every parser (run under ASan/UBSan by run.sh). Prints "N passed, M failed".
 * Long on purpose: one binary for all the packet-code unit tests, so run.sh builds it once under the sanitizers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csum.h"
#include "../gro.h"
#include "../gso.h"
#include "../ipv4.h"
#include "../routes.h"
#include "../tun_offload.h"
#include "../udp.h"
#include "../udp_batch.h"

#include "check.h"

int passed, failed;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)rng_state;
}
static void fill_random(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}

/* Reference RFC 1071 checksum, big-endian words, byte by byte. */
static uint16_t ref_csum(const uint8_t *p, size_t n, uint32_t seed) {
  uint32_t s = seed;
  for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) s += (uint32_t)p[n - 1] << 8;
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

/* Full L4 checksum check of a plain IPv4 TCP/UDP packet: 1 if valid. */
static int l4_csum_ok(const uint8_t *ip, size_t len) {
  unsigned ihl = ip_hlen(ip);
  uint32_t seed = rd16(ip + 12) + rd16(ip + 14) + rd16(ip + 16) + rd16(ip + 18) + ip[9] + (uint32_t)(len - ihl);
  return ref_csum(ip + ihl, len - ihl, seed) == 0;
}

static void test_csum(void) {
  uint8_t buf[2048];
  for (int iter = 0; iter < 2000; iter++) {
    size_t n = rnd() % 1500;
    fill_random(buf, n);
    uint16_t want = ref_csum(buf, n, 0);
    uint16_t got = csum_finish(csum_add(0, buf, n));
    uint8_t be[2];
    memcpy(be, &got, 2);
    if ((uint16_t)(be[0] << 8 | be[1]) != want) {
      CHECK(0, "csum mismatch for %zu bytes", n);
      return;
    }
  }
  CHECK(1, "csum");
  /* csum_copy copies and sums the same. */
  uint8_t dst[1500];
  fill_random(buf, 1499);
  uint16_t c1 = csum_finish(csum_copy(dst, buf, 1499, 0));
  CHECK(memcmp(dst, buf, 1499) == 0 && c1 == csum_finish(csum_add(0, buf, 1499)), "csum_copy");
}

/* Builds an IPv4 TCP (or UDP) super-packet with `payload` bytes; returns its length. */
static size_t build_super(uint8_t *p, uint8_t proto, size_t payload, uint32_t seq, uint8_t tcp_flags) {
  size_t l4 = proto == IPPROTO_TCP_ ? 32 : 8; /* TCP with 12 bytes of options (NOP NOP timestamps) */
  size_t len = 20 + l4 + payload;
  memset(p, 0, 20 + l4);
  p[0] = 0x45;
  wr16(p + 2, (uint16_t)len);
  wr16(p + 4, 1000);
  wr16(p + 6, IP_DF);
  p[8] = 64;
  p[9] = proto;
  wr32(p + 12, 0x0af40100); /* 10.244.1.0 */
  wr32(p + 16, 0x0af40205); /* 10.244.2.5 */
  ipv4_set_csum(p);
  uint8_t *t = p + 20;
  wr16(t, 40000);
  wr16(t + 2, 5201);
  if (proto == IPPROTO_TCP_) {
    wr32(t + 4, seq);
    wr32(t + 8, 0x12345678);
    t[12] = (uint8_t)((l4 / 4) << 4);
    t[13] = tcp_flags;
    wr16(t + 14, 512);
    t[20] = 1;
    t[21] = 1;
    t[22] = 8;
    t[23] = 10;
    wr32(t + 24, 0xaabbccdd);
    wr32(t + 28, 0x11223344);
  } else {
    wr16(t + 4, (uint16_t)(8 + payload));
  }
  fill_random(p + 20 + l4, payload);
  return len;
}

typedef struct {
  uint8_t buf[1 << 20];
  size_t used;
  uint8_t *seg[1024];
  size_t seg_len[1024];
  int n;
} seg_sink;

static uint8_t *sink_reserve(void *ctx, size_t len) {
  seg_sink *s = ctx;
  if (s->used + len > sizeof s->buf || s->n == 1024) return NULL;
  uint8_t *p = s->buf + s->used;
  s->seg[s->n] = p;
  s->seg_len[s->n++] = len;
  s->used += len;
  return p;
}

static seg_sink sink;
static uint8_t super[65536];

static void test_tso_split(void) {
  size_t payload = 60000, mss = 1420;
  uint32_t seq0 = 0xfffff000u; /* wraps */
  size_t len = build_super(super, IPPROTO_TCP_, payload, seq0, 0x18);
  gso_plan plan;
  CHECK(gso_make_plan(super, len, VNET_GSO_TCPV4, (uint16_t)mss, &plan) == 0, "plan");
  CHECK(plan.hdr_len == 52 && plan.nsegs == (payload + mss - 1) / mss && plan.seg_len == 52 + mss, "plan fields");
  memset(&sink, 0, sizeof sink);
  uint32_t n = gso_split(super, &plan, sink_reserve, &sink);
  CHECK(n == plan.nsegs && (int)n == sink.n, "segment count %u", n);
  size_t off = 0;
  int ok = 1;
  for (int i = 0; i < sink.n; i++) {
    uint8_t *s = sink.seg[i];
    size_t pl = sink.seg_len[i] - 52;
    int last = i == sink.n - 1;
    ok &= ip_total(s) == sink.seg_len[i];
    ok &= rd16(s + 4) == (uint16_t)(1000 + i);
    ok &= ipv4_validate(s, sink.seg_len[i], 1, 0) == DROP_NONE;
    ok &= l4_csum_ok(s, sink.seg_len[i]);
    ok &= rd32(s + 24) == seq0 + (uint32_t)off;
    ok &= (s[33] == (last ? 0x18 : 0x10));
    ok &= memcmp(s + 52, super + 52 + off, pl) == 0;
    ok &= last || pl == mss;
    off += pl;
  }
  CHECK(ok && off == payload, "segments well-formed and in order");

  /* FIN only on the last segment, CWR only on the first. */
  len = build_super(super, IPPROTO_TCP_, 3000, 1, 0x80 | 0x10 | 0x01);
  gso_make_plan(super, len, VNET_GSO_TCPV4, 1000, &plan);
  memset(&sink, 0, sizeof sink);
  gso_split(super, &plan, sink_reserve, &sink);
  CHECK(sink.n == 3 && sink.seg[0][33] == 0x90 && sink.seg[1][33] == 0x10 && sink.seg[2][33] == 0x11, "flags per segment");

  /* USO. */
  len = build_super(super, IPPROTO_UDP_, 5000, 0, 0);
  CHECK(gso_make_plan(super, len, VNET_GSO_UDP_L4, 1400, &plan) == 0 && plan.nsegs == 4, "uso plan");
  memset(&sink, 0, sizeof sink);
  gso_split(super, &plan, sink_reserve, &sink);
  ok = sink.n == 4;
  for (int i = 0; i < sink.n; i++) {
    ok &= rd16(sink.seg[i] + 24) == sink.seg_len[i] - 20;
    ok &= l4_csum_ok(sink.seg[i], sink.seg_len[i]);
  }
  CHECK(ok, "uso segments");

  /* Malformed plans. */
  len = build_super(super, IPPROTO_TCP_, 100, 1, 0x10);
  CHECK(gso_make_plan(super, len, VNET_GSO_TCPV4, 0, &plan) < 0, "gso_size 0");
  CHECK(gso_make_plan(super, len, VNET_GSO_UDP_L4, 50, &plan) < 0, "wrong protocol");
  CHECK(gso_make_plan(super, 30, VNET_GSO_TCPV4, 50, &plan) < 0, "short TCP header");
  super[32] = 0xf0; /* doff 15: 60 bytes, more than the 52+... fine; now cut */
  CHECK(gso_make_plan(super, 70, VNET_GSO_TCPV4, 50, &plan) < 0, "doff beyond the packet");
}

typedef struct {
  uint8_t out[64][70000];
  size_t len[64];
  vnet_hdr hdr[64];
  uint32_t nsegs[64];
  int n;
} gro_sink;
static gro_sink gsink;

static int capture(void *ctx, const struct iovec *iov, int iovcnt, uint32_t nsegs, uint32_t bytes, void *owner) {
  (void)owner;
  (void)bytes;
  gro_sink *s = ctx;
  if (s->n == 64) return -1;
  size_t off = 0;
  for (int i = 1; i < iovcnt; i++) {
    memcpy(s->out[s->n] + off, iov[i].iov_base, iov[i].iov_len);
    off += iov[i].iov_len;
  }
  vnet_parse(iov[0].iov_base, &s->hdr[s->n]);
  s->len[s->n] = off;
  s->nsegs[s->n] = nsegs;
  s->n++;
  return 0;
}

static gro_batch gro;
static uint8_t copies[128][2048];

static void test_gro_roundtrip(void) {
  size_t payload = 60000, mss = 1420;
  size_t len = build_super(super, IPPROTO_TCP_, payload, 0xfffff000u, 0x18);
  gso_plan plan;
  gso_make_plan(super, len, VNET_GSO_TCPV4, (uint16_t)mss, &plan);
  memset(&sink, 0, sizeof sink);
  gso_split(super, &plan, sink_reserve, &sink);

  gro_init(&gro);
  memset(&gsink, 0, sizeof gsink);
  int owner;
  for (int i = 0; i < sink.n; i++) gro_add(&gro, sink.seg[i], (uint32_t)sink.seg_len[i], &owner);
  gro_flush(&gro, capture, &gsink);
  CHECK(gsink.n == 1, "one merged item, got %d", gsink.n);
  uint8_t *m = gsink.out[0];
  vnet_hdr *h = &gsink.hdr[0];
  CHECK(gsink.len[0] == len && ip_total(m) == len, "merged length %zu", gsink.len[0]);
  CHECK(h->flags == VNET_F_NEEDS_CSUM && h->gso_type == VNET_GSO_TCPV4 && h->gso_size == mss && h->hdr_len == 52 &&
            h->csum_start == 20 && h->csum_offset == 16,
        "virtio header");
  CHECK(ipv4_validate(m, len, 1, 0) == DROP_NONE, "merged IP header checksum");
  CHECK(memcmp(m + 52, super + 52, payload) == 0 && m[33] == 0x18, "payload and PSH");
  /* The kernel completes NEEDS_CSUM from the pseudo-header sum in the field: must be valid. */
  vnet_finish_csum(m, len, 20, 16);
  CHECK(l4_csum_ok(m, len), "completed checksum valid");
}

/* One TCP segment (copy) of flow `port` with seq and payload size. */
static uint8_t *seg_of(int slot, uint16_t sport, uint32_t seq, size_t pl, uint8_t flags) {
  uint8_t *p = copies[slot];
  size_t len = build_super(p, IPPROTO_TCP_, pl, seq, flags);
  wr16(p + 20, sport);
  wr16(p + 36, 0);
  uint16_t c = csum_finish(csum_add(csum_pseudo(p + 12, p + 16, 6, (uint16_t)(len - 20)), p + 20, len - 20));
  csum_store(p + 36, c);
  return p;
}

static void test_gro_rules(void) {
  int owner;
  gro_init(&gro);
  memset(&gsink, 0, sizeof gsink);
  /* Flow 1: 3 data, a pure ACK, 2 data; flow 2 interleaved. */
  gro_add(&gro, seg_of(0, 1, 1000, 100, 0x10), 152, &owner);
  gro_add(&gro, seg_of(1, 2, 5000, 100, 0x10), 152, &owner);
  gro_add(&gro, seg_of(2, 1, 1100, 100, 0x10), 152, &owner);
  gro_add(&gro, seg_of(3, 1, 1200, 100, 0x10), 152, &owner);
  gro_add(&gro, seg_of(4, 1, 1300, 0, 0x10), 52, &owner); /* pure ACK: never merged, and a barrier */
  gro_add(&gro, seg_of(5, 2, 5100, 100, 0x10), 152, &owner);
  gro_add(&gro, seg_of(6, 1, 1300, 100, 0x10), 152, &owner);
  gro_add(&gro, seg_of(7, 1, 1400, 60, 0x10), 112, &owner); /* shorter: ends the train */
  gro_add(&gro, seg_of(8, 1, 1460, 100, 0x10), 152, &owner);
  gro_flush(&gro, capture, &gsink);
  /* Items: f1[1000..1300) x3, f2[5000..5200) x2, f1 ACK, f1[1300..1460) x2, f1[1460] */
  CHECK(gsink.n == 5, "items %d", gsink.n);
  CHECK(gsink.nsegs[0] == 3 && rd32(gsink.out[0] + 24) == 1000 && gsink.len[0] == 352, "flow 1 first train");
  CHECK(gsink.nsegs[1] == 2 && rd16(gsink.out[1] + 20) == 2, "flow 2 merged");
  CHECK(gsink.nsegs[2] == 1 && gsink.len[2] == 52 && gsink.hdr[2].gso_type == 0, "ACK alone, plain header");
  CHECK(gsink.nsegs[3] == 2 && rd32(gsink.out[3] + 24) == 1300 && gsink.len[3] == 52 + 160, "second train after ACK");
  CHECK(gsink.nsegs[4] == 1 && rd32(gsink.out[4] + 24) == 1460, "after a short segment");

  /* A gap, a bad checksum, a PSH, a differing ACK number: none merge. */
  gro_init(&gro);
  memset(&gsink, 0, sizeof gsink);
  gro_add(&gro, seg_of(0, 1, 1000, 100, 0x10), 152, &owner);
  gro_add(&gro, seg_of(1, 1, 1200, 100, 0x10), 152, &owner); /* gap */
  uint8_t *bad = seg_of(2, 1, 1300, 100, 0x10);
  bad[60] ^= 1; /* payload corrupted: checksum no longer matches */
  gro_add(&gro, bad, 152, &owner);
  gro_add(&gro, seg_of(3, 1, 1400, 100, 0x18), 152, &owner); /* PSH: may end a train, starts one here */
  gro_add(&gro, seg_of(4, 1, 1500, 100, 0x10), 152, &owner); /* nothing after a PSH */
  uint8_t *ack = seg_of(5, 1, 1600, 100, 0x10);
  wr32(ack + 28, 0x99);
  csum_store(ack + 36, 0);
  csum_store(ack + 36, csum_finish(csum_add(csum_pseudo(ack + 12, ack + 16, 6, 132), ack + 20, 132)));
  gro_add(&gro, ack, 152, &owner); /* other ACK number */
  gro_flush(&gro, capture, &gsink);
  int singles = 1;
  for (int i = 0; i < gsink.n; i++) singles &= gsink.nsegs[i] == 1;
  CHECK(gsink.n == 6 && singles, "nothing merged (%d items)", gsink.n);
  CHECK(memcmp(gsink.out[2], bad, 152) == 0, "corrupt segment passed through unchanged");
  int in_order = 1;
  for (int i = 1; i < gsink.n; i++) in_order &= rd32(gsink.out[i] + 24) > rd32(gsink.out[i - 1] + 24);
  CHECK(in_order, "order kept");

  /* Different owners (peers) never merge. */
  int other;
  gro_init(&gro);
  memset(&gsink, 0, sizeof gsink);
  gro_add(&gro, seg_of(0, 1, 1000, 100, 0x10), 152, &owner);
  gro_add(&gro, seg_of(1, 1, 1100, 100, 0x10), 152, &other);
  gro_flush(&gro, capture, &gsink);
  CHECK(gsink.n == 2, "owners kept apart");
}

static void test_routes(void) {
  peer_registry reg = {0};
  felt_err err;
  route_spec specs[200];
  for (int i = 0; i < 200; i++) {
    uint32_t len = 8 + rnd() % 25;
    specs[i] = (route_spec){(0x0a000000u | (rnd() & 0x00ffffffu)) & prefix_mask(len), len, 0xc0a84d00u + (uint32_t)i % 50};
  }
  route_table *t = rt_build(specs, 200, &reg, &err);
  CHECK(t != NULL, "build");
  int ok = 1;
  for (int iter = 0; iter < 20000; iter++) {
    uint32_t dst = 0x0a000000u | (rnd() & 0x00ffffffu);
    if (iter % 3 == 0) dst = specs[rnd() % 200].network | (rnd() & 0xff & ~prefix_mask(specs[0].prefix_len));
    int best = -1;
    for (int i = 0; i < 200; i++) {
      if ((dst & prefix_mask(specs[i].prefix_len)) != specs[i].network) continue;
      /* longest prefix; later duplicates win */
      if (best < 0 || specs[i].prefix_len > specs[best].prefix_len ||
          (specs[i].prefix_len == specs[best].prefix_len))
        best = i;
    }
    rt_peer *p = rt_lookup(t, dst);
    ok &= best < 0 ? p == NULL : (p && p->peer->public_ip == specs[best].public_ip);
  }
  CHECK(ok, "LPM agrees with a linear scan");
  rt_peer *p = rt_find_peer(t, specs[7].public_ip);
  CHECK(p && rt_peer_admits(t, p, specs[7].network) , "admits its own subnet");
  CHECK(rt_find_peer(t, 0x01020304) == NULL, "stranger");
  /* Peers keep their identity (counters) across tables. */
  route_table *t2 = rt_build(specs, 10, &reg, &err);
  CHECK(rt_find_peer(t2, specs[3].public_ip)->peer == rt_find_peer(t, specs[3].public_ip)->peer, "same peer object");
  route_spec badlen = {0, 33, 1};
  CHECK(rt_build(&badlen, 1, &reg, &err) == NULL, "prefix 33 refused");
  route_table *empty = rt_build(NULL, 0, &reg, &err);
  CHECK(empty && rt_lookup(empty, 0x0a000001) == NULL, "empty table");
  route_spec def = {0, 0, 0x01010101};
  route_table *t0 = rt_build(&def, 1, &reg, &err);
  CHECK(t0 && rt_lookup(t0, 0xdeadbeef) && rt_lookup(t0, 0xdeadbeef)->peer->public_ip == 0x01010101, "default route");
  rt_free(t);
  rt_free(t2);
  rt_free(empty);
  rt_free(t0);
  registry_free(&reg);
}

static void test_icmp(void) {
  uint8_t pkt[100];
  size_t len = build_super(pkt, IPPROTO_UDP_, 40, 0, 0);
  uint8_t out[ICMP_ERR_MAX];
  size_t n = icmp_build_error(out, pkt, len, 3, 4, 1472, 0x0af40100);
  CHECK(n == 20 + 8 + 28, "length %zu", n);
  CHECK(ipv4_validate(out, n, 1, 0) == DROP_NONE && out[8] == 64 && rd16(out + 4) == 0 && rd16(out + 6) == 0, "header");
  CHECK(rd32(out + 16) == 0x0af40100 && rd32(out + 12) == 0x0af40100 && ref_csum(out + 20, n - 20, 0) == 0, "ICMP checksum");
  CHECK(rd32(out + 24) == 1472 && memcmp(out + 28, pkt, 28) == 0, "next-hop MTU and quote");
  CHECK(icmp_error_allowed(pkt, len), "allowed for UDP");
  pkt[9] = 1;
  pkt[20] = 3;
  CHECK(!icmp_error_allowed(pkt, len), "not about an ICMP error");
  pkt[20] = 8;
  CHECK(icmp_error_allowed(pkt, len), "about an echo request");
  wr16(pkt + 6, 5);
  CHECK(!icmp_error_allowed(pkt, len), "not for a non-first fragment");
  wr16(pkt + 6, 0);
  wr32(pkt + 16, 0xe0000001);
  CHECK(!icmp_error_allowed(pkt, len), "not for multicast");
  wr32(pkt + 16, 0x0af40205);
  wr32(pkt + 12, 0);
  CHECK(!icmp_error_allowed(pkt, len), "not to 0.0.0.0");

  token_bucket b;
  bucket_init(&b, 100, 100, 0);
  int taken = 0;
  for (int i = 0; i < 150; i++) taken += bucket_take(&b, 0);
  CHECK(taken == 100, "burst 100, got %d", taken);
  CHECK(bucket_take(&b, 10 * 1000000ull) == 1 && bucket_take(&b, 10 * 1000000ull) == 0, "one token per 10 ms");
}

static void test_ttl(void) {
  uint8_t pkt[64];
  size_t len = build_super(pkt, IPPROTO_UDP_, 20, 0, 0);
  for (int ttl = 2; ttl < 256; ttl++) {
    pkt[8] = (uint8_t)ttl;
    ipv4_set_csum(pkt);
    ipv4_dec_ttl(pkt);
    if (pkt[8] != ttl - 1 || ipv4_validate(pkt, len, 1, 0) != DROP_NONE) {
      CHECK(0, "ttl %d", ttl);
      return;
    }
  }
  CHECK(1, "TTL decrement keeps the checksum valid");
  CHECK(ipv4_validate(pkt, 19, 0, 0) == DROP_TRUNCATED, "short");
  pkt[0] = 0x65;
  CHECK(ipv4_validate(pkt, len, 0, 0) == DROP_NOT_IP, "v6");
  pkt[0] = 0x44;
  CHECK(ipv4_validate(pkt, len, 0, 0) == DROP_MALFORMED, "ihl 4");
  pkt[0] = 0x4f;
  CHECK(ipv4_validate(pkt, len, 0, 0) == DROP_MALFORMED, "total below a 60-byte header");
  wr16(pkt + 2, 100);
  CHECK(ipv4_validate(pkt, len, 0, 0) == DROP_TRUNCATED, "options beyond the bytes");
  pkt[0] = 0x45;
  wr16(pkt + 2, (uint16_t)(len + 1));
  CHECK(ipv4_validate(pkt, len, 0, 0) == DROP_TRUNCATED, "total above bytes");
  wr16(pkt + 2, 10);
  CHECK(ipv4_validate(pkt, len, 0, 0) == DROP_MALFORMED, "total below header");
}

/* Random and mutated packets through every parser: must never crash (ASan/UBSan watch). */
static void test_fuzz(void) {
  static uint8_t pkt[70000];
  int owner;
  gro_init(&gro);
  for (int iter = 0; iter < 200000; iter++) {
    size_t len;
    if (iter % 2) {
      len = build_super(pkt, rnd() % 2 ? IPPROTO_TCP_ : IPPROTO_UDP_, rnd() % 3000, rnd(), (uint8_t)rnd());
      for (int k = rnd() % 4; k > 0; k--) pkt[rnd() % 60] = (uint8_t)rnd();
      if (rnd() % 4 == 0) len = rnd() % (len + 1);
    } else {
      len = rnd() % 200;
      fill_random(pkt, len);
      if (len) pkt[0] = (uint8_t)(0x40 | (pkt[0] & 15));
    }
    drop_reason v = ipv4_validate(pkt, len, 0, 1);
    if (v == DROP_NONE) {
      gso_plan plan;
      if (gso_make_plan(pkt, len, rnd() % 2 ? VNET_GSO_TCPV4 : VNET_GSO_UDP_L4, (uint16_t)(1 + rnd() % 1500), &plan) == 0) {
        memset(&sink, 0, sizeof sink.seg_len);
        sink.used = 0;
        sink.n = 0;
        gso_split(pkt, &plan, sink_reserve, &sink);
      }
      icmp_error_allowed(pkt, len);
      uint8_t out[ICMP_ERR_MAX];
      icmp_build_error(out, pkt, len, 3, 0, 0, 1);
      vnet_finish_csum(pkt, len, (uint16_t)(rnd() % 80), (uint16_t)(rnd() % 40));
    }
    if (ipv4_validate(pkt, len, 1, 0) == DROP_NONE && len < sizeof copies[0]) {
      /* GRO keeps pointers until the flush: give it a stable copy. */
      uint32_t total = ip_total(pkt);
      int slot = iter % 128;
      if (slot == 0) gro_flush(&gro, capture, &gsink), gsink.n = 0;
      memcpy(copies[slot], pkt, total);
      gro_add(&gro, copies[slot], total, &owner);
    }
  }
  gro_flush(&gro, capture, &gsink);
  CHECK(1, "fuzz survived");
}

static uint8_t *null_reserve(void *ctx, size_t len) {
  (void)ctx;
  (void)len;
  return NULL;
}

/* The TUN offload layer: what a read becomes, and the drop (with its reason) for one that
 * cannot be split or completed -- the same verdict for every reader of the TUN. */
static void test_tun_offload(void) {
  static uint8_t rd[VNET_HDR_LEN + 65535];
  size_t len = build_super(rd + VNET_HDR_LEN, IPPROTO_TCP_, 30000, 1, 0x18);
  vnet_hdr h = {.flags = VNET_F_NEEDS_CSUM, .gso_type = VNET_GSO_TCPV4, .gso_size = 1400, .csum_start = 20,
                .csum_offset = 16};
  vnet_write(rd, &h);
  tun_read r;
  CHECK(tun_offload_parse(rd, VNET_HDR_LEN + len, &r) == DROP_NONE && r.gso && r.nsegs == (30000 + 1399) / 1400 &&
            r.biggest == 52 + 1400,
        "TSO read: %u segments", r.nsegs);
  memset(&sink, 0, sizeof sink);
  CHECK(tun_offload_emit(&r, sink_reserve, &sink) == r.nsegs && sink.n == (int)r.nsegs, "emitted every segment");
  int ok = 1;
  for (int i = 0; i < sink.n; i++) ok &= ipv4_validate(sink.seg[i], sink.seg_len[i], 1, 0) == DROP_NONE;
  CHECK(ok, "segments valid");
  /* A super-packet that cannot be split (gso_size 0, wrong L4 type, a fragment) is one malformed drop. */
  h.gso_size = 0;
  vnet_write(rd, &h);
  CHECK(tun_offload_parse(rd, VNET_HDR_LEN + len, &r) == DROP_MALFORMED, "gso_size 0: malformed");
  h.gso_size = 1400;
  h.gso_type = VNET_GSO_UDP_L4; /* but the packet is TCP */
  vnet_write(rd, &h);
  CHECK(tun_offload_parse(rd, VNET_HDR_LEN + len, &r) == DROP_MALFORMED, "UDP_L4 over TCP: malformed");
  /* Plain packet with a partial checksum: completed; offsets inside the IP header: malformed. */
  uint8_t *ip = rd + VNET_HDR_LEN;
  size_t plen = build_super(ip, IPPROTO_TCP_, 500, 7, 0x18);
  uint8_t *tcp = ip + 20;
  tcp[16] = tcp[17] = 0;
  uint32_t ps = rd16(ip + 12) + rd16(ip + 14) + rd16(ip + 16) + rd16(ip + 18) + 6 + (uint32_t)(plen - 20);
  while (ps >> 16) ps = (ps & 0xffff) + (ps >> 16);
  tcp[16] = (uint8_t)(ps >> 8);
  tcp[17] = (uint8_t)ps;
  vnet_hdr hp = {.flags = VNET_F_NEEDS_CSUM, .csum_start = 20, .csum_offset = 16};
  vnet_write(rd, &hp);
  CHECK(tun_offload_parse(rd, VNET_HDR_LEN + plen + 9, &r) == DROP_NONE && !r.gso && r.len == plen && r.nsegs == 1,
        "plain read: trailing bytes ignored");
  CHECK(l4_csum_ok(ip, plen), "checksum completed");
  hp.csum_start = 10;
  vnet_write(rd, &hp);
  CHECK(tun_offload_parse(rd, VNET_HDR_LEN + plen, &r) == DROP_MALFORMED, "csum_start inside the IP header");
  CHECK(tun_offload_parse(rd, VNET_HDR_LEN - 1, &r) == DROP_TRUNCATED, "shorter than the virtio header");
  rd[VNET_HDR_LEN] = 0x50;
  CHECK(tun_offload_parse(rd, VNET_HDR_LEN + plen, &r) == DROP_NOT_IP, "version 5");
  rd[VNET_HDR_LEN] = 0x60;
  CHECK(tun_offload_parse(rd, VNET_HDR_LEN + 39, &r) == DROP_TRUNCATED, "IPv6 shorter than its header");
  /* A reserve that gives up abandons the split. */
  CHECK(tun_offload_emit(&(tun_read){.pkt = ip, .len = 20, .nsegs = 1}, null_reserve, NULL) == 0, "abandoned");
}

/* udp_batch: a message's source, GRO segment size and datagram count. */
static void test_udp_batch(void) {
  static uint8_t slots[UDP_BATCH_MAX * 2048];
  udp_batch b;
  udp_batch_init(&b, slots, 2048);
  udp_msg m;
  b.from[0] = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = {htonl(0xc0a84d02u)}};
  b.msgs[0].msg_hdr = (struct msghdr){.msg_name = &b.from[0], .msg_namelen = sizeof b.from[0],
                                      .msg_control = b.ctl[0].buf, .msg_controllen = sizeof b.ctl[0].buf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&b.msgs[0].msg_hdr);
  cm->cmsg_level = SOL_UDP;
  cm->cmsg_type = UDP_GRO;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  int seg = 500;
  memcpy(CMSG_DATA(cm), &seg, sizeof seg);
  b.msgs[0].msg_len = 1200;
  udp_batch_msg(&b, 0, &m);
  CHECK(m.src == 0xc0a84d02u && m.seg == 500 && m.ndgrams == 3 && m.len == 1200 && !m.trunc && m.data == slots,
        "GRO train of 3");
  b.msgs[0].msg_hdr.msg_controllen = 0;
  b.msgs[0].msg_len = 0;
  udp_batch_msg(&b, 0, &m);
  CHECK(m.seg == 1 && m.ndgrams == 1 && m.len == 0, "empty datagram counts once");
  b.msgs[0].msg_len = 9999; /* more than the slot: clamped */
  b.msgs[0].msg_hdr.msg_flags = MSG_TRUNC;
  b.from[0].sin_family = AF_INET6;
  udp_batch_msg(&b, 0, &m);
  CHECK(m.len == 2048 && m.trunc && m.src == 0 && m.ndgrams == 1, "truncated, not IPv4");
}

/* The peer registry frees peers without a lease once no thread can reach them. */
static int allow_gen;
static int can_free_upto(void *ctx, uint64_t gen) {
  (void)ctx;
  return gen <= (uint64_t)allow_gen;
}
static void test_registry(void) {
  peer_registry reg = {0};
  felt_err err;
  route_spec a[3] = {{0x0a000100u, 24, 1}, {0x0a000200u, 24, 2}, {0x0a000300u, 24, 3}};
  route_table *t1 = rt_build(a, 3, &reg, &err);
  peer *p1 = rt_find_peer(t1, 1)->peer;
  p1->tx.packets = 42;
  registry_retire(&reg, p1, 1, 1000);
  registry_retire(&reg, rt_find_peer(t1, 2)->peer, 1, 1000);
  allow_gen = 0;
  registry_reclaim(&reg, can_free_upto, NULL);
  CHECK(registry_live(&reg) == 3 && reg.departed_count == 0, "kept while a thread may read generation 1");
  /* Peer 2 comes back before it is freed: same object, not freed. */
  route_table *t2 = rt_build(&a[1], 1, &reg, &err);
  allow_gen = 1;
  registry_reclaim(&reg, can_free_upto, NULL);
  CHECK(registry_live(&reg) == 2 && reg.departed_count == 1 && reg.departed_total == 1, "peer 1 freed, 2 kept");
  const departed_peer *d = registry_departed(&reg, 0);
  CHECK(d->public_ip == 1 && d->tx.packets == 42 && d->departed_ms == 1000, "departed counters kept");
  CHECK(rt_find_peer(t2, 2)->peer == rt_find_peer(t1, 2)->peer, "peer 2 kept its identity");
  route_table *t3 = rt_build(&a[0], 1, &reg, &err);
  CHECK(rt_find_peer(t3, 1)->peer->tx.packets == 42 && reg.departed_count == 0, "a returning peer takes its counters back");
  registry_retire(&reg, rt_find_peer(t3, 1)->peer, 1, 1000);
  registry_reclaim(&reg, can_free_upto, NULL);
  rt_free(t3);
  for (uint32_t i = 0; i < 3 * REGISTRY_DEPARTED_MAX; i++) {
    route_spec s = {0x0b000000u + (i << 8), 24, 100 + i};
    route_table *t = rt_build(&s, 1, &reg, &err);
    registry_retire(&reg, rt_find_peer(t, 100 + i)->peer, 1, i);
    registry_reclaim(&reg, can_free_upto, NULL);
    rt_free(t);
  }
  CHECK(reg.departed_count == REGISTRY_DEPARTED_MAX && registry_departed(&reg, 0)->public_ip == 100 + 3 * REGISTRY_DEPARTED_MAX - 1 &&
            registry_departed(&reg, REGISTRY_DEPARTED_MAX - 1)->public_ip == 100 + 2 * REGISTRY_DEPARTED_MAX,
        "bounded, most recent first");
  CHECK(registry_live(&reg) == 2, "only peers with leases (and the retired-but-unreachable) stay");
  rt_free(t1);
  rt_free(t2);
  registry_free(&reg);
  /* u32map_remove keeps every other key reachable. */
  u32map m = {0};
  int ok = 1;
  for (uintptr_t i = 1; i <= 3000; i++) ok &= u32map_put(&m, (uint32_t)(i * 7919u), (void *)i) == 0;
  for (uintptr_t i = 1; i <= 3000; i += 2) u32map_remove(&m, (uint32_t)(i * 7919u));
  for (uintptr_t i = 1; i <= 3000; i++) ok &= u32map_get(&m, (uint32_t)(i * 7919u)) == (i % 2 ? NULL : (void *)i);
  CHECK(ok && m.count == 1500, "u32map_remove");
  u32map_free(&m);
}

int main(void) {
  test_csum();
  test_ttl();
  test_tso_split();
  test_gro_roundtrip();
  test_gro_rules();
  test_routes();
  test_tun_offload();
  test_udp_batch();
  test_registry();
  test_icmp();
  test_fuzz();
  test_ipv6(); /* unit6.c */
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
