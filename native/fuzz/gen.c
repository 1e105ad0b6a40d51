/* The generator and command line of the native fuzz harness (fuzz.h): bursts of random, valid,
 * structured (TSO/USO super-packets, TCP trains for GRO) and mutated packets from a seeded PRNG.
 * --emit writes them out; scripts/fuzz-vectors.ts adds the reference model's verdicts; --vectors
 * runs the annotated bursts through harness.c. Usage: see usage() below.
 * Long on purpose: every generator of the harness in one place, sharing its PRNG and record layout. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../gso.h"
#include "../ipv4.h"
#include "fuzz.h"

/* The generator's view of the route set in force, to aim inputs at leased subnets and known
 * peers. It only aims: verdicts come from the model (scripts/fuzz/model.ts), whose list of peers
 * (distinct PublicIPs of the routes no later duplicate replaces, in order) a DECAP peer index
 * names, so a wrong view here makes inputs less well aimed, never a wrong verdict. */
typedef struct {
  route_spec routes[FUZZ_NFAMILY];
  int winner[FUZZ_NFAMILY];
  size_t nroutes;
  uint32_t peers[FUZZ_NFAMILY];
  size_t npeers;
  uint32_t mtu;
} gen_routes;
static gen_routes RS;
static const gen_routes *R = &RS;
static uint64_t gen_kind[8];
static uint64_t gen_inputs; /* ENCAP and DECAP records written */

static void aim_routes(uint32_t mask, uint32_t mtu) {
  RS.nroutes = RS.npeers = 0;
  for (size_t i = 0; i < FUZZ_NFAMILY; i++)
    if (mask & (1u << i)) RS.routes[RS.nroutes++] = FUZZ_ROUTE_FAMILY[i];
  for (size_t i = 0; i < RS.nroutes; i++) {
    RS.winner[i] = 1;
    for (size_t j = i + 1; j < RS.nroutes; j++)
      if (RS.routes[j].prefix_len == RS.routes[i].prefix_len && RS.routes[j].network == RS.routes[i].network)
        RS.winner[i] = 0;
  }
  for (size_t i = 0; i < RS.nroutes; i++) {
    size_t k = 0;
    while (k < RS.npeers && RS.peers[k] != RS.routes[i].public_ip) k++;
    if (RS.winner[i] && k == RS.npeers) RS.peers[RS.npeers++] = RS.routes[i].public_ip;
  }
  RS.mtu = mtu < 68 ? 68 : mtu > 65507 ? 65507 : mtu;
}

static uint64_t mono_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ============================================================================================ */
/* Generators                                                                                   */

/* The burst being generated. */
static uint8_t *B;
static size_t B_len, B_cap;
static void b_need(size_t n) {
  if (B_len + n <= B_cap) return;
  while (B_len + n > B_cap) B_cap = B_cap ? B_cap * 2 : 1 << 20;
  B = realloc(B, B_cap);
  if (!B) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
}
static void b_put(uint32_t v, int n) {
  b_need((size_t)n);
  for (int i = n - 1; i >= 0; i--) B[B_len++] = (uint8_t)(v >> (8 * i));
}
static void b_bytes(const uint8_t *p, size_t n) {
  b_need(n);
  memcpy(B + B_len, p, n);
  B_len += n;
}

/* Destinations for encap: leased, own, unrouted, special. */
static uint32_t pick_dst(void) {
  uint32_t k = rnd(100);
  if (k < 55 && R->nroutes) {
    const route_spec *r = &R->routes[rnd((uint32_t)R->nroutes)];
    return host_in(r->network, r->prefix_len < 8 ? 8 : r->prefix_len);
  }
  if (k < 65) return host_in(FUZZ_LOCAL_NET, FUZZ_LOCAL_PREFIX);
  if (k < 80) return 0x0afa0000u | rnd(65536); /* 10.250/16: no lease */
  if (k < 85) return 0xe0000000u | rnd(1u << 28);
  if (k < 88) return 0xffffffffu;
  if (k < 90) return 0;
  return (uint32_t)rnd64();
}

/* Sources for encap (local pods mostly) and special ones for the ICMP rules. */
static uint32_t pick_local_src(void) {
  uint32_t k = rnd(100);
  if (k < 80) return host_in(FUZZ_LOCAL_NET, FUZZ_LOCAL_PREFIX);
  if (k < 85) return 0;
  if (k < 90) return 0xe0000000u | rnd(1u << 28);
  if (k < 92) return 0xffffffffu;
  return (uint32_t)rnd64();
}

static const uint8_t TTLS[] = {0, 1, 2, 3, 64, 64, 64, 128, 255};

static size_t pick_payload(void) {
  uint32_t k = rnd(100);
  if (k < 10) return 0;
  if (k < 25) return rnd(9);
  if (k < 50) return 10 + rnd(200);
  if (k < 80) return 1380 + rnd(120);
  if (k < 90) return R->mtu - 60 + rnd(80);
  if (k < 97) return 1500 + rnd(9000);
  return rnd(65400);
}

static void random_spec(pkt_spec *s, uint32_t src, uint32_t dst) {
  memset(s, 0, sizeof *s);
  static const uint8_t protos[] = {6, 6, 6, 17, 17, 17, 1, 1, 47, 0, 255};
  s->proto = protos[rnd(sizeof protos)];
  s->src = src;
  s->dst = dst;
  s->ttl = TTLS[rnd(sizeof TTLS)];
  s->tos = chance(90) ? 0 : (uint8_t)rnd64();
  s->id = (uint16_t)rnd(4000);
  s->frag = chance(70) ? IP_DF : chance(50) ? 0 : (uint16_t)rnd64();
  s->ip_opt = chance(90) ? 0 : 4 * rnd(11);
  s->payload = pick_payload();
  s->marked = chance(70);
  s->seq = (uint32_t)rnd64();
  s->ack = (uint32_t)rnd64();
  s->tcp_flags = chance(80) ? (chance(50) ? 0x10 : 0x18) : (uint8_t)rnd64();
  s->tcp_opt = chance(60) ? 12 : 4 * rnd(11);
  s->sport = s->marked ? (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | rnd(256)) : (uint16_t)(1024 + rnd(50000));
  s->dport = s->marked ? FUZZ_MARK_DPORT : (uint16_t)rnd(60000);
  static const uint8_t itypes[] = {8, 0, 3, 4, 5, 11, 12, 13, 42};
  s->icmp_type = itypes[rnd(sizeof itypes)];
  s->icmp_code = (uint8_t)rnd(6);
  s->csum_mode = 0;
  size_t max = 65535 - 20 - s->ip_opt - 60;
  if (s->payload > max) s->payload = max;
}

/* 1-4 byte-level mutations of the packet at p (len bytes, cap room); returns the new length. */
static size_t mutate(uint8_t *p, size_t len, size_t cap) {
  unmark(p, len);
  int n = 1 + (int)rnd(4);
  for (int m = 0; m < n; m++) {
    switch (rnd(14)) {
      case 0: /* bit flip */
        if (len) p[rnd((uint32_t)len)] ^= (uint8_t)(1u << rnd(8));
        break;
      case 1: /* random byte */
        if (len) p[rnd((uint32_t)len)] = (uint8_t)rnd64();
        break;
      case 2: /* truncate */
        len = rnd((uint32_t)len + 1);
        break;
      case 3: { /* extend */
        size_t add = rnd(64);
        if (len + add > cap) add = cap - len;
        if (chance(50)) fill_random(p + len, add);
        else memset(p + len, 0, add);
        len += add;
        break;
      }
      case 4: /* version */
        if (len) p[0] = (uint8_t)((rnd(16) << 4) | (p[0] & 15));
        break;
      case 5: /* IHL */
        if (len) p[0] = (uint8_t)((p[0] & 0xf0) | rnd(16));
        break;
      case 6: /* total length */
        if (len >= 4) {
          uint32_t k = rnd(5);
          uint16_t t = k == 0   ? (uint16_t)rnd64()
                       : k == 1 ? (uint16_t)len
                       : k == 2 ? (uint16_t)(len + 1 + rnd(8))
                       : k == 3 ? (uint16_t)((p[0] & 15) * 4) /* header only: no ICMP type byte */
                                : (uint16_t)rnd(40);
          wr16(p + 2, t);
        }
        break;
      case 7: /* TTL */
        if (len >= 9) p[8] = TTLS[rnd(sizeof TTLS)];
        break;
      case 8: /* checksum */
        if (len >= 12) wr16(p + 10, (uint16_t)rnd64());
        break;
      case 9: /* fragment offset / flags */
        if (len >= 8) wr16(p + 6, chance(50) ? (uint16_t)rnd64() : (uint16_t)(rnd(2) << 13 | rnd(4)));
        break;
      case 10: /* protocol ICMP with an error type */
        if (len >= 10) {
          p[9] = 1;
          unsigned hl = (p[0] & 15u) * 4;
          static const uint8_t et[] = {3, 4, 5, 11, 12, 8, 0};
          if (hl < len) p[hl] = et[rnd(sizeof et)];
        }
        break;
      case 11: /* source / destination */
        if (len >= 20) wr32(p + (chance(50) ? 12 : 16), pick_dst());
        break;
      case 12: /* protocol */
        if (len >= 10) p[9] = (uint8_t)rnd64();
        break;
      default: /* a run of random bytes */
        if (len) {
          size_t at = rnd((uint32_t)len), k = 1 + rnd(16);
          if (at + k > len) k = len - at;
          fill_random(p + at, k);
        }
        break;
    }
  }
  if (chance(50)) fix_ip_csum(p, len);
  return len;
}

static uint8_t scratch[FUZZ_MAX_READ + 256];

static void rec_encap(const uint8_t *p, size_t n) {
  gen_inputs++;
  b_put(REC_ENCAP, 1);
  b_put((uint32_t)n, 4);
  b_bytes(p, n);
}

static void rec_decap(uint8_t peer, uint16_t groseg, uint8_t flags, const uint8_t *p, size_t n) {
  gen_inputs++;
  b_put(REC_DECAP, 1);
  b_put(peer, 1);
  b_put(groseg, 2);
  b_put(flags, 1);
  b_put((uint32_t)n, 4);
  b_bytes(p, n);
}

static const uint16_t GSO_SIZES[] = {1, 7, 100, 536, 1000, 1400, 1432, 1444, 1448, 1460, 1472, 9000, 65535};

/* Generator kinds (counted in gen_kind for the summary). */
enum { G_RANDOM, G_VALID, G_MUTATED, G_SUPER, G_DEC_VALID, G_DEC_MUTATED, G_DEC_TRAIN, G_DEC_RANDOM };
static const char *const GEN_NAMES[] = {"encap random", "encap valid", "encap mutated", "encap TSO/USO",
                                        "decap valid", "decap mutated", "decap TCP train", "decap random"};

/* A TUN read: virtio header + packet. */
static void gen_encap(void) {
  uint8_t *vh = scratch;
  uint8_t *p = scratch + VNET_HDR_LEN;
  size_t cap = sizeof scratch - VNET_HDR_LEN - 64;
  vnet_hdr h = {0};
  size_t len;
  uint32_t k = rnd(100);
  pkt_spec s;
  if (k < 15) {
    gen_kind[G_RANDOM]++;
    len = chance(80) ? rnd(120) : rnd(66000);
    if (len > cap) len = cap;
    fill_random(p, len);
    if (chance(40)) p[0] = (uint8_t)(0x40 | (p[0] & 15));
    if (chance(30)) fill_random(vh, VNET_HDR_LEN);
    else vnet_write(vh, &h);
    if (chance(3)) { /* a read shorter than the virtio header */
      rec_encap(scratch, rnd(VNET_HDR_LEN));
      return;
    }
    rec_encap(scratch, VNET_HDR_LEN + len);
    return;
  }
  if (k < 40) {
    /* A TSO/USO super-packet as the kernel hands it over (checksum partial), sometimes odd. */
    gen_kind[G_SUPER]++;
    random_spec(&s, pick_local_src(), pick_dst());
    s.proto = chance(75) ? 6 : 17;
    s.marked = chance(85);
    s.sport = s.marked ? (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | rnd(256)) : (uint16_t)(1024 + rnd(50000));
    s.dport = s.marked ? FUZZ_MARK_DPORT : 80;
    s.frag = chance(90) ? IP_DF : chance(50) ? 0 : IP_MF;
    s.tcp_flags = chance(70) ? 0x18 : (uint8_t)(0x10 | (rnd64() & 0xc9)); /* PSH/FIN/CWR/ECE in the mix */
    uint16_t gs = GSO_SIZES[rnd(sizeof GSO_SIZES / sizeof GSO_SIZES[0])];
    if (chance(10)) gs = (uint16_t)rnd(70000);
    if (s.proto == 17) {
      uint32_t ix = rnd(8);
      gs = FUZZ_UDP_SEG[ix];
      s.sport = s.marked ? (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | (rnd(32) << 3) | ix) : s.sport;
      s.id = (uint16_t)rnd(100); /* the oracle needs id0 + nsegs below 65,536 */
    }
    s.payload = chance(70) ? rnd(64000) : rnd(4000);
    if (gs < 100) s.payload = rnd(2000); /* tiny segments: keep the segment count sane */
    s.csum_mode = 1;
    len = build_packet(p, &s);
    if (chance(20)) wr16(p + 2, chance(50) ? 0 : (uint16_t)rnd64()); /* the total length is not trusted */
    h.flags = VNET_F_NEEDS_CSUM;
    h.gso_type = s.proto == 6 ? VNET_GSO_TCPV4 : VNET_GSO_UDP_L4;
    if (chance(5)) h.gso_type |= VNET_GSO_ECN;
    if (chance(3)) { /* any type: the packet may be taken as a plain one, length field and all */
      h.gso_type = (uint8_t)rnd(8);
      unmark(p, len);
    }
    h.hdr_len = (uint16_t)(chance(80) ? 20 + s.ip_opt + (s.proto == 6 ? 20 + s.tcp_opt : 8) : rnd64());
    h.gso_size = chance(3) ? 0 : gs;
    h.csum_start = (uint16_t)(20 + s.ip_opt);
    h.csum_offset = s.proto == 6 ? 16 : 6;
    vnet_write(vh, &h);
    if (chance(10)) { /* unmarked and mutated: headers that do not add up */
      len = mutate(p, len, cap);
      vnet_write(vh, &h);
    }
    rec_encap(scratch, VNET_HDR_LEN + len);
    return;
  }
  random_spec(&s, pick_local_src(), pick_dst());
  if (chance(25) && (s.proto == 6 || s.proto == 17)) {
    /* Checksum left to the device: NEEDS_CSUM with the pseudo-header seed. */
    s.csum_mode = 1;
    h.flags = VNET_F_NEEDS_CSUM;
    h.csum_start = (uint16_t)(20 + s.ip_opt);
    h.csum_offset = s.proto == 6 ? 16 : 6;
  }
  len = build_packet(p, &s);
  if (chance(10)) { /* bytes past the total length */
    size_t add = rnd(100);
    fill_random(p + len, add);
    len += add;
  }
  if (k < 70) {
    gen_kind[G_VALID]++;
  } else {
    gen_kind[G_MUTATED]++;
    len = mutate(p, len, cap);
    if (chance(20)) {
      h.flags = (uint8_t)rnd(4);
      h.csum_start = (uint16_t)rnd(100);
      h.csum_offset = (uint16_t)rnd(40);
    }
    if (chance(5)) h.gso_type = (uint8_t)rnd64();
  }
  vnet_write(vh, &h);
  rec_encap(scratch, VNET_HDR_LEN + len);
}

/* The index of a peer whose leases include a route, and a source inside it. */
static int pick_sender(uint32_t *src) {
  if (R->npeers == 0) {
    *src = (uint32_t)rnd64();
    return 200;
  }
  int pi = (int)rnd((uint32_t)R->npeers);
  size_t tries = 0;
  for (size_t i = rnd((uint32_t)R->nroutes);; i = (i + 1) % R->nroutes, tries++) {
    if (R->winner[i] && R->routes[i].public_ip == R->peers[pi]) {
      *src = host_in(R->routes[i].network, R->routes[i].prefix_len);
      return pi;
    }
    if (tries > R->nroutes) break;
  }
  *src = (uint32_t)rnd64();
  return pi;
}

/* A train of TCP segments of one flow, as a sender's TSO would emit them, with perturbations. */
/* Two peers that may both send from one address (one's lease inside the other's), or 0. */
static int overlapping_peers(int *a, int *b, uint32_t *src) {
  for (size_t i = 0; i < R->nroutes; i++) {
    for (size_t j = 0; j < R->nroutes; j++) {
      const route_spec *outer = &R->routes[i], *inner = &R->routes[j];
      if (!R->winner[i] || !R->winner[j] || outer->public_ip == inner->public_ip ||
          inner->prefix_len <= outer->prefix_len ||
          (inner->network & prefix_mask(outer->prefix_len)) != (outer->network & prefix_mask(outer->prefix_len)))
        continue;
      for (size_t k = 0; k < R->npeers; k++) {
        if (R->peers[k] == outer->public_ip) *a = (int)k;
        if (R->peers[k] == inner->public_ip) *b = (int)k;
      }
      *src = host_in(inner->network, inner->prefix_len);
      return 1;
    }
  }
  return 0;
}

static void gen_train(void) {
  gen_kind[G_DEC_TRAIN]++;
  uint32_t src;
  int peer = pick_sender(&src);
  /* Sometimes one flow arrives from two peers that both may send it: never merged across them. */
  int peer2 = peer;
  if (chance(15) && !overlapping_peers(&peer, &peer2, &src)) peer2 = peer;
  pkt_spec s;
  random_spec(&s, src, host_in(FUZZ_LOCAL_NET, FUZZ_LOCAL_PREFIX));
  s.proto = 6;
  s.marked = 1;
  s.sport = (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | rnd(256));
  s.dport = FUZZ_MARK_DPORT;
  s.ttl = 63;
  s.frag = IP_DF;
  s.ip_opt = 0;
  s.tos = 0;
  s.tcp_flags = 0x10;
  static const size_t sizes[] = {1, 100, 536, 1000, 1400, 1420, 1448};
  size_t mss = sizes[rnd(sizeof sizes / sizeof sizes[0])];
  int n = 2 + (int)rnd(80);
  int use_gro = chance(30); /* several segments in one GRO'd message */
  size_t cap = sizeof scratch - 64;
  size_t gro_len = 0;
  size_t seglen = 0;
  for (int i = 0; i < n; i++) {
    pkt_spec t = s;
    t.payload = mss;
    if (chance(3)) t.payload = rnd((uint32_t)mss); /* a short one ends a merge */
    if (chance(3)) t.tcp_flags = 0x18;              /* PSH ends it too */
    if (chance(2)) t.tcp_flags = (uint8_t)rnd64();
    if (chance(2)) t.ack++;
    if (chance(2)) t.ttl = 62;
    if (chance(2)) t.tos = 4;
    if (chance(2)) t.frag = 0;
    if (chance(2)) t.ip_opt = 4;
    if (chance(2)) t.tcp_opt = 4 * rnd(11);
    if (chance(2)) t.frag = IP_MF;
    if (chance(2)) t.id++;
    t.seq = s.seq;
    if (chance(3)) t.seq += (uint32_t)mss; /* a gap */
    if (chance(2)) t.seq -= (uint32_t)mss; /* a retransmission */
    uint8_t *p = scratch + (use_gro ? gro_len : 0);
    if ((use_gro ? gro_len : 0) + 20 + 4 + 60 + t.payload > cap) break;
    size_t len = build_packet(p, &t);
    if (chance(2)) p[(p[0] & 15) * 4 + 16] ^= 1; /* bad TCP checksum: content intact */
    if (chance(1)) p[10] ^= 0x40;                           /* bad IP checksum */
    s.seq = t.seq + (uint32_t)t.payload;
    if (use_gro) {
      /* A GRO message: equal-size datagrams, the last may be shorter; a different size ends it. */
      if (gro_len == 0) seglen = len;
      if (len != seglen || gro_len + len > 65000) {
        if (gro_len) rec_decap((uint8_t)peer, (uint16_t)seglen, 0, scratch, gro_len);
        memmove(scratch, p, len);
        gro_len = len;
        seglen = len;
      } else {
        gro_len += len;
      }
    } else {
      rec_decap((uint8_t)(chance(50) ? peer : peer2), 0, 0, p, len);
    }
    if (chance(3)) { /* another flow interleaved */
      pkt_spec o;
      random_spec(&o, src, host_in(FUZZ_LOCAL_NET, FUZZ_LOCAL_PREFIX));
      o.ttl = 63;
      uint8_t tmp[2048];
      o.payload = o.payload > 1400 ? 1400 : o.payload;
      o.ip_opt = 0;
      size_t ol = build_packet(tmp, &o);
      rec_decap((uint8_t)peer, 0, 0, tmp, ol);
    }
  }
  if (use_gro && gro_len) rec_decap((uint8_t)peer, (uint16_t)seglen, 0, scratch, gro_len);
}

static void gen_decap(void) {
  uint32_t k = rnd(100);
  size_t cap = sizeof scratch - 64;
  if (k < 5) {
    gen_train();
    return;
  }
  uint32_t src;
  int peer = pick_sender(&src);
  if (chance(10)) peer = (int)R->npeers + (int)rnd(40); /* an unknown sender */
  uint32_t sk = rnd(100);
  if (sk < 10) { /* another peer's subnet: spoofed */
    uint32_t other;
    pick_sender(&other);
    src = other;
  } else if (sk < 15) {
    src = chance(50) ? host_in(FUZZ_LOCAL_NET, FUZZ_LOCAL_PREFIX) : (uint32_t)rnd64();
  }
  if (k < 35) {
    gen_kind[G_DEC_RANDOM]++;
    size_t len = chance(90) ? rnd(200) : rnd(70000);
    if (len > cap) len = cap;
    fill_random(scratch, len);
    if (chance(50)) scratch[0] = (uint8_t)(0x45);
    if (chance(30) && len >= 20) fix_ip_csum(scratch, len);
    uint16_t gs = chance(10) ? (uint16_t)rnd(2000) : 0;
    rec_decap((uint8_t)peer, gs, chance(2) ? 1 : 0, scratch, len);
    return;
  }
  pkt_spec s;
  random_spec(&s, src, chance(90) ? host_in(FUZZ_LOCAL_NET, FUZZ_LOCAL_PREFIX) : pick_dst());
  if (s.payload > R->mtu) s.payload = rnd(1500);
  size_t len = build_packet(scratch, &s);
  if (chance(10)) {
    size_t add = rnd(100);
    fill_random(scratch + len, add);
    len += add;
  }
  if (k < 70) {
    gen_kind[G_DEC_VALID]++;
  } else {
    gen_kind[G_DEC_MUTATED]++;
    len = mutate(scratch, len, cap);
  }
  uint16_t gs = 0;
  if (chance(5)) gs = (uint16_t)(chance(50) ? len : 1 + rnd(2000));
  rec_decap((uint8_t)peer, gs, chance(1) ? 1 : 0, scratch, len);
}

/* ============================================================================================ */
/* The dual-stack node (ROUTES6): IPv6 packets                                                   */

/* The generator's view of it: the ROUTE_FAMILY6 entries leased, and the senders in the model's
 * peer-index order (per route: its IPv4 PublicIP if this node has an IPv4 underlay, then its
 * PublicIPv6 if this node has an IPv6 one), each with the route whose subnet it may send from. */
static struct {
  int on;
  size_t route[FUZZ_NFAMILY6], nroutes;
  size_t sender_route[2 * FUZZ_NFAMILY6], nsenders;
  uint32_t mtu;
} D;
static uint64_t gen6_enc, gen6_dec, gen6_offload, gen6_train;

static void aim_routes6(uint32_t mask, uint32_t underlays, uint32_t mtu) {
  int v4 = (underlays & 1) || !(underlays & 3), v6 = (underlays & 2) != 0;
  D.on = 1;
  D.nroutes = D.nsenders = 0;
  for (size_t i = 0; i < FUZZ_NFAMILY6; i++) {
    if (!(mask & (1u << i))) continue;
    D.route[D.nroutes++] = i;
    if (v4 && FUZZ_ROUTE_FAMILY6_V4[i].public_ip) D.sender_route[D.nsenders++] = i;
    if (v6 && (FUZZ_ROUTE_FAMILY6[i].flags & ROUTE6_PUBLIC)) D.sender_route[D.nsenders++] = i;
  }
  D.mtu = mtu < 1280 ? 1280 : mtu;
}

static void words6(uint8_t out[16], const uint32_t w[4]) {
  for (int i = 0; i < 16; i++) out[i] = (uint8_t)(w[i / 4] >> (24 - 8 * (i % 4)));
}

/* An address in a leased IPv6 subnet (ROUTE_FAMILY6 entry i), sometimes just past it. */
static void host6(uint8_t out[16], size_t i) {
  words6(out, FUZZ_ROUTE_FAMILY6[i].net);
  if (chance(10)) return; /* the network address itself (the /128) */
  out[15] = (uint8_t)rnd(256);
  out[14] = (uint8_t)rnd(256);
  if (chance(70)) fill_random(out + 8, 4);
  if (chance(15)) out[7] = (uint8_t)rnd(256); /* another /64: inside a /56, or outside the lease */
}

/* Destinations / sources: a leased subnet (towards a peer), our own, or anything (multicast too). */
static void addr6(uint8_t out[16], int towards_peer) {
  uint32_t k = rnd(10);
  if (towards_peer && D.nroutes && k < 6) {
    host6(out, D.route[rnd((uint32_t)D.nroutes)]);
  } else if (k < 8) {
    memcpy(out, FUZZ_LOCAL6, 16);
    if (chance(90)) fill_random(out + 8, 8);
  } else {
    fill_random(out, 16);
    if (k == 9) out[0] = 0xff;
  }
}

static const uint8_t HOPS6[] = {0, 1, 2, 64, 64, 64, 255};
static const uint8_t EXT6[] = {0, 43, 60, 44, 60, 51, 50, 59}; /* 51 AH, 50 ESP, 59 none: not walked */

/* An IPv6 packet into p (room for 65,575 bytes): valid, with an extension-header chain (sometimes
 * too long, fragments), an ICMPv6 error or echo, at the tunnel MTU; then often mangled. The
 * version nibble is never 4 (the IPv4 rules judge those). src_route: a sender's lease, or -1. */
static size_t gen_packet6(uint8_t *p, int encap, int src_route) {
  uint8_t *q = p + 40;
  size_t n = chance(60) ? 0 : rnd(10), at = 0;
  int at_bound = chance(10); /* 7-9 short walked headers: around the limit of 8 */
  if (at_bound) n = 7 + rnd(3);
  uint8_t types[10];
  for (size_t i = 0; i < n; i++) {
    uint8_t t = i == 0 && chance(50) ? 0 : at_bound ? (chance(50) ? 43 : 60) : EXT6[rnd(sizeof EXT6)];
    types[i] = t;
    size_t len = t == 44 || at_bound ? 8 : 8 * (1 + (chance(80) ? rnd(3) : rnd(40)));
    fill_random(q + at, len);
    q[at + 1] = t == 44 ? 0 : (uint8_t)(len / 8 - 1);
    if (t == 44) wr16(q + at + 2, chance(50) ? 0x0001 : (uint16_t)rnd64()); /* a first fragment, or any */
    at += len;
  }
  /* Next-header fields, now that the chain is known. */
  static const uint8_t protos[] = {6, 17, 58, 58, 59};
  uint8_t proto = protos[rnd(sizeof protos)];
  for (size_t i = 0, off = 0; i < n; i++) {
    size_t len = types[i] == 44 ? 8 : ((size_t)q[off + 1] + 1) * 8;
    q[off] = i + 1 < n ? types[i + 1] : proto;
    off += len;
  }
  size_t pay = chance(15) ? D.mtu - 48 + rnd(24) : chance(3) ? D.mtu + rnd(2000) : rnd(120);
  if (at + pay > 65535) pay = 65535 - at;
  fill_random(q + at, pay);
  if (proto == 58 && pay > 0) {
    static const uint8_t it[] = {1, 2, 3, 4, 127, 128, 129, 135};
    q[at] = it[rnd(sizeof it)];
  }
  size_t body = at + pay;
  p[0] = 0x60;
  p[1] = p[2] = p[3] = 0;
  wr16(p + 4, (uint16_t)body);
  p[6] = n ? types[0] : proto;
  p[7] = HOPS6[rnd(sizeof HOPS6)];
  if (!encap && src_route >= 0 && chance(70)) host6(p + 8, (size_t)src_route);
  else addr6(p + 8, !encap);
  if (encap || chance(10)) addr6(p + 24, encap);
  else {
    memcpy(p + 24, FUZZ_LOCAL6, 16);
    fill_random(p + 32, 8);
  }
  if (chance(3)) memset(p + 8, 0, 16); /* :: */
  size_t len = 40 + body;
  uint32_t k = rnd(100);
  if (k < 70) return len;
  if (k < 80) return rnd((uint32_t)len + 1); /* cut short */
  if (k < 85) { /* trailing bytes */
    size_t add = rnd(20);
    memset(p + len, 0xee, add);
    return len + add;
  }
  if (k < 90) {
    wr16(p + 4, chance(50) ? 0 : (uint16_t)rnd64()); /* payload length */
    return len;
  }
  for (int i = 1 + (int)rnd(4); i > 0; i--) p[rnd((uint32_t)len)] ^= (uint8_t)(1u << rnd(8));
  if (p[0] >> 4 == 4) p[0] = (uint8_t)(0x70 | (p[0] & 15));
  return len;
}

/* Removes the mark of an IPv6 packet (its ports) before bytes that break its checksum or layout. */
static void unmark6(uint8_t *p, size_t len) {
  if (len >= 44) p[40] = p[42] = p[43] = 0;
}

/* A TSO6/USO6 super-packet (or a plain NEEDS_CSUM packet) from a local pod, as the kernel hands
 * it over, often with a virtio header that does not add up: gso_size 0, hdr_len beyond the packet,
 * csum_start/offset out of range, TCPV4 on IPv6, the wrong L4 protocol for the type, an extension
 * header before the TCP header, a cut-short read, a TCP data offset below 5. */
static size_t gen_offload6(uint8_t *vh, uint8_t *p) {
  pkt_spec s;
  memset(&s, 0, sizeof s);
  s.proto = chance(70) ? 6 : 17;
  memcpy(s.src6, FUZZ_LOCAL6, 16);
  fill_random(s.src6 + 8, 8);
  addr6(s.dst6, 1);
  s.ttl = HOPS6[rnd(sizeof HOPS6)];
  s.tos = chance(90) ? 0 : (uint8_t)rnd64();
  s.marked = chance(85);
  s.sport = s.marked ? (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | rnd(256)) : (uint16_t)(1024 + rnd(50000));
  s.dport = s.marked ? FUZZ_MARK_DPORT : 80;
  s.seq = (uint32_t)rnd64();
  s.ack = (uint32_t)rnd64();
  s.tcp_flags = chance(70) ? 0x18 : (uint8_t)(0x10 | (rnd64() & 0xc9));
  s.tcp_opt = chance(60) ? 12 : 4 * rnd(11);
  s.csum_mode = 1;
  int gso = chance(75);
  uint16_t gs = GSO_SIZES[rnd(sizeof GSO_SIZES / sizeof GSO_SIZES[0])];
  if (chance(10)) gs = (uint16_t)rnd(70000);
  s.payload = gso ? (chance(70) ? rnd(64000) : rnd(4000)) : (chance(20) ? D.mtu - 80 + rnd(100) : rnd(1400));
  if (gs < 100) s.payload = rnd(2000);
  if (s.payload > 65535 - 80) s.payload = 65535 - 80;
  size_t len = build_packet6(p, &s);
  uint16_t cs = 40, co = s.proto == 6 ? 16 : 6;
  vnet_hdr h = {.flags = VNET_F_NEEDS_CSUM, .csum_start = cs, .csum_offset = co};
  if (gso) {
    h.gso_type = s.proto == 6 ? VNET_GSO_TCPV6 : VNET_GSO_UDP_L4;
    h.gso_size = gs;
    h.hdr_len = (uint16_t)(40 + (s.proto == 6 ? 20 + s.tcp_opt : 8));
    if (chance(5)) h.gso_type |= VNET_GSO_ECN;
    if (chance(20)) wr16(p + 4, chance(50) ? 0 : (uint16_t)rnd64()); /* the payload length is not trusted */
  }
  switch (chance(30) ? rnd(10) : 99) {
    case 0: h.gso_size = 0; break;
    case 1: h.hdr_len = (uint16_t)(len + 1 + rnd(60000)); break; /* not trusted: recomputed */
    case 2: /* checksum offsets anywhere */
      h.csum_start = (uint16_t)(chance(50) ? rnd(80) : rnd64());
      h.csum_offset = (uint16_t)(chance(50) ? rnd(40) : rnd64());
      if (s.marked) unmark6(p, len);
      break;
    case 3: h.gso_type = (uint8_t)(VNET_GSO_TCPV4 | (chance(20) ? VNET_GSO_ECN : 0)); break;
    case 4: h.gso_type = s.proto == 6 ? VNET_GSO_UDP_L4 : VNET_GSO_TCPV6; break;
    case 5: p[6] = 0; break; /* a Hop-by-Hop header where the TCP/UDP header should be */
    case 6: len = rnd((uint32_t)len + 1); break; /* cut short */
    case 7:
      if (len > 52 && s.proto == 6) p[52] = (uint8_t)(rnd(5) << 4); /* TCP data offset below 5 */
      unmark6(p, len);
      break;
    case 8: h.gso_type = (uint8_t)rnd64(); unmark6(p, len); break;
    case 9: h.flags = (uint8_t)rnd64(); unmark6(p, len); break;
    default: break;
  }
  if (len && p[0] >> 4 != 6) p[0] = 0x60;
  vnet_write(vh, &h);
  return len;
}

static void gen_encap6(void) {
  gen6_enc++;
  memset(scratch, 0, VNET_HDR_LEN); /* a plain read: no offload asked for */
  uint8_t *p = scratch + VNET_HDR_LEN;
  size_t len;
  if (chance(25)) {
    gen6_offload++;
    rec_encap(scratch, VNET_HDR_LEN + gen_offload6(scratch, p));
    return;
  }
  if (chance(1)) {
    rec_encap(scratch, rnd(VNET_HDR_LEN));
    return;
  }
  if (chance(8)) {
    len = rnd(120);
    fill_random(p, len);
    if (len && (chance(50) || p[0] >> 4 == 4)) p[0] = (uint8_t)(0x60 | (p[0] & 15));
  } else {
    len = gen_packet6(p, 1, -1);
  }
  rec_encap(scratch, VNET_HDR_LEN + len);
}

/* A train of TCP/IPv6 segments of one flow (sometimes two interleaved, sometimes several in one
 * UDP_GRO message on the IPv6 socket) from a peer's lease to ours, with the perturbations that
 * must stop a merge: hop limit, traffic class, flags, ACK, options, gaps, retransmissions, bad
 * checksums, other packets in between. */
static void gen_train6(int peer, int src_route) {
  gen6_train++;
  pkt_spec fl[2];
  int nfl = chance(30) ? 2 : 1;
  for (int f = 0; f < nfl; f++) {
    pkt_spec *s = &fl[f];
    memset(s, 0, sizeof *s);
    s->proto = 6;
    if (src_route >= 0) host6(s->src6, (size_t)src_route);
    else fill_random(s->src6, 16);
    memcpy(s->dst6, FUZZ_LOCAL6, 16);
    fill_random(s->dst6 + 8, 8);
    s->ttl = 63;
    s->marked = 1;
    s->sport = (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | rnd(256));
    s->dport = FUZZ_MARK_DPORT;
    s->tcp_flags = 0x10;
    s->tcp_opt = chance(60) ? 12 : 0;
    s->ack = (uint32_t)rnd64();
    s->seq = (uint32_t)rnd64();
  }
  static const size_t sizes[] = {1, 100, 536, 1000, 1220, 1400, 1428};
  size_t mss = sizes[rnd(sizeof sizes / sizeof sizes[0])];
  if (mss + 100 > D.mtu) mss = D.mtu - 100;
  int n = 2 + (int)rnd(80);
  int use_gro = chance(30);
  size_t cap = sizeof scratch - 64, gro_len = 0, seglen = 0;
  for (int i = 0; i < n; i++) {
    int f = (int)rnd((uint32_t)nfl);
    pkt_spec t = fl[f];
    t.payload = mss;
    if (chance(4)) t.payload = rnd((uint32_t)mss + 1); /* a short one ends a merge */
    if (chance(2)) t.tcp_flags = (uint8_t)rnd64();
    if (chance(2)) t.tcp_flags = 0x18;
    if (chance(2)) t.ack++;
    if (chance(2)) t.ttl = 62;
    if (chance(2)) t.tos = 4;
    if (chance(2)) t.tcp_opt = 4 * rnd(11);
    if (chance(3)) t.seq += (uint32_t)mss; /* a gap */
    if (chance(2)) t.seq -= (uint32_t)mss; /* a retransmission */
    uint8_t *p = scratch + (use_gro ? gro_len : 0);
    if ((use_gro ? gro_len : 0) + 40 + 60 + t.payload > cap) break;
    size_t len = build_packet6(p, &t);
    if (chance(2)) p[56] ^= 1; /* a bad TCP checksum: content intact */
    fl[f].seq = t.seq + (uint32_t)t.payload;
    if (use_gro) {
      if (gro_len == 0) seglen = len;
      if (len != seglen || gro_len + len > 65000) {
        if (gro_len) rec_decap((uint8_t)peer, (uint16_t)seglen, 0, scratch, gro_len);
        memmove(scratch, p, len);
        gro_len = seglen = len;
      } else {
        gro_len += len;
      }
    } else {
      rec_decap((uint8_t)peer, 0, 0, p, len);
    }
    if (chance(3) && !use_gro) { /* another packet in between */
      size_t ol = gen_packet6(scratch, 0, src_route); /* the segment before is written already */
      rec_decap((uint8_t)peer, 0, 0, scratch, ol);
    }
  }
  if (use_gro && gro_len) rec_decap((uint8_t)peer, (uint16_t)seglen, 0, scratch, gro_len);
}

static void gen_decap6(void) {
  gen6_dec++;
  int peer = D.nsenders && chance(90) ? (int)rnd((uint32_t)D.nsenders) : (int)D.nsenders + (int)rnd(40);
  int src_route = peer < (int)D.nsenders ? (int)D.sender_route[peer] : -1;
  size_t len;
  if (chance(4)) {
    gen_train6(peer, src_route);
    return;
  }
  if (chance(5)) { /* several datagrams in one UDP_GRO message on the IPv6 socket */
    static uint8_t one[FUZZ_MAX_READ + 256];
    size_t at = 0, seg = 0;
    for (int k = 1 + (int)rnd(8); k > 0 && at + 1400 < sizeof scratch - 64; k--) {
      size_t l = gen_packet6(one, 0, src_route);
      if (l > 1400) l = 1400; /* cut: judged as such */
      if (seg == 0) seg = l ? l : 1;
      size_t take = l < seg ? l : seg;
      memcpy(scratch + at, one, take);
      at += take;
      if (take < seg) break; /* only the last may be shorter */
    }
    uint16_t gs = (uint16_t)seg; /* another size would start datagrams mid-packet, IPv4 nibbles and all */
    rec_decap((uint8_t)peer, gs, chance(2) ? 1 : 0, scratch, at);
    return;
  }
  if (chance(8)) {
    len = rnd(120);
    fill_random(scratch, len);
    if (len && (chance(50) || scratch[0] >> 4 == 4)) scratch[0] = (uint8_t)(0x60 | (scratch[0] & 15));
  } else {
    len = gen_packet6(scratch, 0, src_route);
  }
  rec_decap((uint8_t)peer, 0, chance(1) ? 1 : 0, scratch, len);
}

/* One generated burst: set-up records, then a mix of encap and decap inputs. */
static uint32_t last_mask = FUZZ_DEFAULT_MASK, last_mtu = 1472;
static void gen_burst(void) {
  B_len = 0;
  int dual = chance(20);
  if (dual) {
    static const uint16_t mtus[] = {1452, 1452, 1280, 1400, 9000, 1500};
    uint32_t mask = chance(40) ? 0x3f : rnd(1u << FUZZ_NFAMILY6), underlays = 1 + rnd(3);
    uint16_t mtu = mtus[rnd(sizeof mtus / sizeof mtus[0])];
    b_put(REC_ROUTES6, 1);
    b_put(mask, 1);
    b_put(underlays, 1);
    b_put(mtu, 2);
    aim_routes6(mask, underlays, mtu);
  } else if (chance(10) || D.on) {
    /* A new IPv4 route set, or back from a dual-stack burst to the last one. */
    if (!D.on) {
      last_mask = chance(50) ? FUZZ_DEFAULT_MASK : rnd(1u << FUZZ_NFAMILY);
      static const uint16_t mtus[] = {1472, 1472, 1450, 1400, 9000, 68, 576, 65507, 1280};
      last_mtu = mtus[rnd(sizeof mtus / sizeof mtus[0])];
    }
    D.on = 0;
    b_put(REC_ROUTES, 1);
    b_put(last_mask, 2);
    b_put(last_mtu, 2);
    aim_routes(last_mask, last_mtu);
  }
  if (chance(5)) {
    b_put(REC_GSO, 1);
    b_put(chance(70), 1);
  }
  if (chance(15)) {
    b_put(REC_FAULTS, 1);
    b_put(rnd(8), 1);
    b_put(rnd(6), 1);
    b_put(chance(50) ? rnd(4) : 0, 1);
  }
  int n = 1 + (int)rnd(48);
  int dir = (int)rnd(3); /* 0 encap, 1 decap, 2 both */
  for (int i = 0; i < n; i++) {
    int d = dir == 2 ? (int)rnd(2) : dir;
    if (dual) d == 0 ? gen_encap6() : gen_decap6();
    else if (d == 0) gen_encap();
    else gen_decap();
  }
}

static void usage(void) {
  fprintf(stderr,
          "usage: fuzz --emit [--count N] [--seed S]     N inputs (default 1,000,000) from seed S (default 1): bursts to\n"
          "                                               stdout, each a u32 BE length and the records (fuzz.h)\n"
          "       fuzz --vectors FILE|- [--seed S] [--save-dir DIR]\n"
          "                                               run bursts annotated by scripts/fuzz-vectors.ts (same framing)\n"
          "       fuzz --replay FILE...                   run saved (annotated) bursts again\n"
          "The usual pipeline is scripts/fuzz.sh: fuzz --emit | node dist/scripts/fuzz-vectors.js | fuzz --vectors -\n"
          "Prints counts per verdict. A burst that breaks an invariant is saved to DIR (default .).\n"
          "Exit status: 0 all invariants held, 1 a violation, 2 bad usage or input.\n");
}

static int emit(uint64_t count, uint64_t seed) {
  rng_seed(seed);
  while (gen_inputs < count) {
    gen_burst();
    uint8_t len[4] = {(uint8_t)(B_len >> 24), (uint8_t)(B_len >> 16), (uint8_t)(B_len >> 8), (uint8_t)B_len};
    if (fwrite(len, 1, 4, stdout) != 4 || fwrite(B, 1, B_len, stdout) != B_len) {
      perror("fuzz --emit");
      return 2;
    }
  }
  if (fflush(stdout) != 0) {
    perror("fuzz --emit");
    return 2;
  }
  fprintf(stderr, "fuzz --emit: %" PRIu64 " inputs, seed %" PRIu64 "; generated:", gen_inputs, seed);
  for (int k = 0; k < 8; k++) fprintf(stderr, " %s %" PRIu64 ";", GEN_NAMES[k], gen_kind[k]);
  fprintf(stderr, " IPv6 (dual-stack node) encap %" PRIu64 " (TSO6/USO6/NEEDS_CSUM %" PRIu64 "), decap %" PRIu64
          " (TCP/IPv6 trains %" PRIu64 ")\n", gen6_enc, gen6_offload, gen6_dec, gen6_train);
  return 0;
}

/* Runs a stream of framed bursts. */
static int run_vectors(const char *path) {
  FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
  if (!f) {
    perror(path);
    return 2;
  }
  uint64_t burst = 0;
  uint8_t len[4];
  size_t got;
  while ((got = fread(len, 1, 4, f)) == 4) {
    size_t n = (size_t)len[0] << 24 | (size_t)len[1] << 16 | (size_t)len[2] << 8 | len[3];
    B_len = 0;
    b_need(n);
    if (fread(B, 1, n, f) != n) break;
    fuzz_run_burst(B, n, burst++);
  }
  int bad = ferror(f) || got != 0 || !feof(f);
  if (f != stdin) fclose(f);
  if (bad) {
    fprintf(stderr, "%s: a burst is cut short or unreadable after %" PRIu64 " bursts\n", path, burst);
    return 2;
  }
  if (burst == 0) {
    fprintf(stderr, "%s: no bursts\n", path);
    return 2;
  }
  return 0;
}

static int replay(char **files, int n) {
  static uint8_t buf[1 << 24];
  for (int i = 0; i < n; i++) {
    FILE *f = fopen(files[i], "rb");
    if (!f) {
      perror(files[i]);
      return 2;
    }
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    fuzz_run_burst(buf, len, (uint64_t)i);
  }
  return 0;
}

int main(int argc, char **argv) {
  uint64_t count = 1000000, seed = 1;
  const char *save_dir = ".", *vectors = NULL;
  int replay_from = 0, do_emit = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--count") && i + 1 < argc) count = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--save-dir") && i + 1 < argc) save_dir = argv[++i];
    else if (!strcmp(argv[i], "--emit")) do_emit = 1;
    else if (!strcmp(argv[i], "--vectors") && i + 1 < argc) vectors = argv[++i];
    else if (!strcmp(argv[i], "--replay") && i + 1 < argc) {
      replay_from = i + 1;
      break;
    } else {
      usage();
      return 2;
    }
  }
  aim_routes(FUZZ_DEFAULT_MASK, 1472);
  if (do_emit + !!vectors + !!replay_from != 1) {
    usage();
    return 2;
  }
  if (do_emit) {
    int rc = emit(count, seed);
    free(B);
    return rc;
  }
  fuzz_init(seed, replay_from ? NULL : save_dir);
  uint64_t t0 = mono_now_ns();
  int rc = replay_from ? replay(argv + replay_from, argc - replay_from) : run_vectors(vectors);
  if (rc) return rc;
  fuzz_print_summary((double)(mono_now_ns() - t0) / 1e9);
  rc = fuzz_violations() ? 1 : 0;
  fuzz_free();
  free(B);
  return rc;
}
