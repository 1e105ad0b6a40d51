/* The native fuzz harness: runs bursts of records (fuzz.h) through the engine's packet path.
 * (Long on purpose: the reference model, the output checkers and the driver belong together.)
 *
 * Drives the engine's packet path through its step interface (engine_path.h) --
 * engine_enc_packet()/engine_enc_flush() for TUN reads (virtio header, validation, routing, TTL,
 * ICMP errors, TSO/USO split, UDP GSO batching) and engine_dec_drain() for received datagrams
 * (admission, validation, userspace GRO) -- without threads, devices or sockets: engine.c is
 * linked as production links it, and its write, writev, sendmsg, sendmmsg, recvmmsg and
 * clock_gettime calls reach the checkers and the generated inputs here through the syscall seam
 * (sys.h; set in fuzz_init). Everything the engine emits is checked against docs/datapath.md, and
 * every input carries the verdict the reference model (scripts/fuzz/model.ts, the one copy of the
 * rules) gives it (EXPECT records, fuzz.h), which must match the engine's counters and outputs.
 * Build: build.sh. libFuzzer: clang -fsanitize=fuzzer -DFELT_LIBFUZZER (no EXPECT records there:
 * outputs and sanitizers are checked, verdicts are not). */

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../engine.h"
#include "../engine_loop.h"
#include "../engine_path.h"
#include "../gro.h"
#include "../gso.h"
#include "../ipv4.h"
#include "../sys.h"
#include "fuzz.h"

/* Not open (poll reports POLLNVAL, so an injected EAGAIN ends like a stopping engine). */
#define FAKE_TUN_FD 1000001
#define FAKE_UDP_FD 1000002
#define FAKE_UDP6_FD 1000003

#define LOCAL_NET FUZZ_LOCAL_NET
#define LOCAL_PREFIX FUZZ_LOCAL_PREFIX
#define PORT FUZZ_PORT
#define MAX_READ FUZZ_MAX_READ
#define ENC_BURST ENGINE_TUN_READ_BURST /* reads between two flushes, as the encap loop */
#define RX_MSGS ENGINE_RX_MSGS
#define RX_BUF ENGINE_RX_BUF

/* The leases a route set is drawn from (bit i of the ROUTES mask); the same list as ROUTE_FAMILY in
 * scripts/fuzz/model.ts. Order matters: later duplicates win. */
const route_spec FUZZ_ROUTE_FAMILY[FUZZ_NFAMILY] = {
    {0x0af40b00u, 24, 0xc0a84d0bu}, /* 10.244.11.0/24 -> 192.168.77.11 */
    {0x0af40c00u, 24, 0xc0a84d0cu}, /* 10.244.12.0/24 -> .12 */
    {0x0af40d00u, 24, 0xc0a84d0du}, /* 10.244.13.0/24 -> .13 */
    {0x0af40e00u, 24, 0xc0a84d0cu}, /* 10.244.14.0/24 -> .12 (a peer with two subnets) */
    {0x0af50000u, 16, 0xc0a84d0eu}, /* 10.245.0.0/16 -> .14 */
    {0x0af50700u, 24, 0xc0a84d0fu}, /* 10.245.7.0/24 -> .15 (longer prefix inside the /16) */
    {0x0af60107u, 32, 0xc0a84d10u}, /* 10.246.1.7/32 -> .16 */
    {0x0af40100u, 24, 0xc0a84d11u}, /* 10.244.1.0/24 -> .17: our own subnet (own-subnet wins) */
    {0x0af40b00u, 24, 0xc0a84d12u}, /* 10.244.11.0/24 -> .18: duplicate of the first, wins */
    {0x00000000u, 0, 0xc0a84d13u},  /* 0.0.0.0/0 -> .19: a default route */
};

const uint8_t FUZZ_LOCAL6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 1}; /* fd00:0:0:1::/64 */

/* The same list as ROUTE_FAMILY6 in scripts/fuzz/model.ts, in the same order. */
#define R6_BOTH (ROUTE6_SUBNET | ROUTE6_PUBLIC)
const route_spec FUZZ_ROUTE_FAMILY6_V4[FUZZ_NFAMILY6] = {
    {0x0af40b00u, 24, 0xc0a84d0bu}, {0x0af40c00u, 24, 0xc0a84d0cu}, {0x0af40d00u, 24, 0},
    {0x0af40e00u, 24, 0xc0a84d0eu}, {0x0af40f00u, 24, 0xc0a84d0fu}, {0x0af41000u, 24, 0xc0a84d10u},
};
const route_spec6 FUZZ_ROUTE_FAMILY6[FUZZ_NFAMILY6] = {
    {R6_BOTH, 64, {0xfd000000u, 0x11}, {0xfd770000u, 0, 0, 0x11}},       /* fd00:0:0:11::/64, fd77::11 */
    {ROUTE6_SUBNET, 64, {0xfd000000u, 0x12}, {0}},                       /* fd00:0:0:12::/64, IPv4 underlay only */
    {R6_BOTH, 56, {0xfd000000u, 0x1300}, {0xfd770000u, 0, 0, 0x13}},     /* fd00:0:0:1300::/56, IPv6 underlay only */
    {R6_BOTH, 57, {0xfd000000u, 0x1380}, {0xfd770000u, 0, 0, 0x14}},     /* fd00:0:0:1380::/57, inside the /56 */
    {ROUTE6_SUBNET, 64, {0xfd000000u, 0x1}, {0}},                        /* fd00:0:0:1::/64: our own, leased to someone */
    {R6_BOTH, 128, {0xfd000000u, 0x16}, {0xfd770000u, 0, 0, 0x16}},      /* fd00:0:0:16::/128 */
};

/* ============================================================================================ */
/* Harness state                                                                                */

/* What the reference model says about an ENCAP record (its EXPECT_ENCAP record). */
typedef struct {
  int present;
  int reason;     /* DROP_* or DROP_NONE = forwarded */
  uint32_t units; /* packets the input counts as (segments of a super-packet) */
  int icmp;       /* 0 none, else expected type*256+code */
  uint8_t peer[16]; /* forwarded: the underlay address of the peer the route names (IPv4 mapped) */
} enc_expect;

/* One received message of a DECAP record, with its EXPECT_DECAP record when present. */
typedef struct dec_rec {
  const uint8_t *data;
  size_t len;
  uint8_t peer;
  uint16_t groseg;
  uint8_t flags;
  int expected;
  uint8_t src[16];          /* the sender the model resolved the peer index to (IPv4 mapped) */
  const uint8_t *verdicts;  /* one per datagram (VERDICT_FORWARD or a drop reason) */
  uint32_t nverdicts;
} dec_rec;

typedef struct {
  /* fault plan */
  int send_errno;
  unsigned send_fails, tun_fails;
  /* what the checkers saw */
  int phase; /* 0 none, 1 encap, 2 decap */
  uint64_t delivered;       /* datagrams accepted by the fake socket */
  uint64_t written_segs;    /* decap: packets (segments) written into the fake TUN */
  uint64_t icmp_written;    /* encap: ICMP errors written */
  uint64_t icmp_write_fail; /* encap: ICMP writes we refused */
  int last_icmp_type, last_icmp_code;
  /* decap batch facts for the TUN-write checker: where recvmmsg put each message, its sender */
  uint32_t msg_seg[RX_MSGS], msg_len[RX_MSGS];
  uint8_t msg_src[RX_MSGS][16];
  const uint8_t *msg_buf[RX_MSGS];
  const dec_rec *msg_rec[RX_MSGS];
  /* encap: inner destination -> expected peer of the forwarded inputs since the last flush */
  uint8_t win_dst[ENC_BURST][16], win_peer[ENC_BURST][16];
  int win_n;
  /* the batch recvmmsg hands to the engine next (each family's messages once on its socket; then EAGAIN) */
  const struct dec_rec *rx_recs;
  int rx_n, rx_total, rx_left[2];
  uint32_t rec_seg[RX_MSGS], rec_len[RX_MSGS];
  /* encap: the input being run (the offending packet an ICMPv6 error quotes) */
  const uint8_t *cur_pkt;
  size_t cur_len;
  int cur_gso;        /* its virtio header asks for a split */
  size_t cur_csum_at; /* the checksum field a NEEDS_CSUM read has completed, or SIZE_MAX */
  /* dual-stack inputs: verdicts as the engine counted them (checked against the model one by one) */
  int dual;
  uint64_t v6_enc[DROP_COUNT + 1], v6_dec[DROP_COUNT + 1], v6_icmp;
  /* totals for the summary */
  uint64_t bursts, records, enc_inputs, dec_inputs, dec_datagrams, icmp_expected, merged_writes, merged6_writes, merged_segs;
  uint64_t violations;
  uint64_t t0_ns; /* fake clock at start */
  /* reporting */
  uint64_t seed, burst_index;
  const uint8_t *burst;
  size_t burst_len;
  int burst_saved;
  int saved_files; /* at most 10 per run */
  const char *save_dir;
} harness;

static harness H;
static route_spec ROUTES[FUZZ_NFAMILY]; /* the current route set */
static route_spec6 ROUTES6[FUZZ_NFAMILY];
static size_t NROUTES;
static uint32_t MTU;
static engine *E;
static uint8_t RBUF[MAX_READ + 1]; /* a TUN read: the engine edits it in place */

static int libfuzzer_mode;

static void save_burst(void);

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...) {
  H.violations++;
  if (H.violations <= 30) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "VIOLATION (seed %" PRIu64 ", burst %" PRIu64 "): ", H.seed, H.burst_index);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
  }
  save_burst();
  if (libfuzzer_mode) abort();
}

static void save_burst(void) {
  if (H.burst_saved || !H.burst || !H.save_dir || H.saved_files >= 10) return;
  H.burst_saved = 1;
  H.saved_files++;
  char path[512];
  snprintf(path, sizeof path, "%s/felt-fuzz-native-%" PRIu64 "-%" PRIu64 ".bin", H.save_dir, H.seed, H.burst_index);
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fwrite(H.burst, 1, H.burst_len, f);
  fclose(f);
  if (H.violations <= 30) fprintf(stderr, "  burst saved: %s (replay: fuzz --replay %s)\n", path, path);
}

/* The engine's clock: 3 ms pass on every monotonic reading (the ICMP token bucket's), so the
 * bucket refills at a steady, reproducible pace (about one ICMP error in three goes out) whatever
 * the speed of the machine; the wall clock (last-seen stamps) reads the same time without moving. */
#define FAKE_CLOCK_STEP_NS 3000000ull
static uint64_t fake_clock_ns = 1000000000ull;

static int fuzz_clock_gettime(clockid_t clk, struct timespec *ts) {
  if (clk == CLOCK_MONOTONIC) fake_clock_ns += FAKE_CLOCK_STEP_NS;
  ts->tv_sec = (time_t)(fake_clock_ns / 1000000000ull);
  ts->tv_nsec = (long)(fake_clock_ns % 1000000000ull);
  return 0;
}

/* ============================================================================================ */
/* Output well-formedness (not verdict rules: those come with the input, from the model)          */

/* One whole IPv4 packet: header in bounds, checksum right, total length = len. */
static int ipv4_whole(const uint8_t *p, size_t len) {
  if (len < 20 || p[0] >> 4 != 4) return 0;
  unsigned hl = (p[0] & 15u) * 4;
  return hl >= 20 && hl <= len && fuzz_sum(p, hl, 0) == 0xffff && rd16(p + 2) == len;
}

/* The verdict the model gave the datagram at byte off of received message i (1: forward, 0: a
 * drop, -1: no expectation to judge by). */
static int datagram_forwarded(int i, size_t off) {
  const dec_rec *r = H.msg_rec[i];
  if (!r || !r->expected) return -1;
  size_t k = off / H.msg_seg[i];
  return k < r->nverdicts && r->verdicts[k] == FUZZ_VERDICT_FORWARD;
}

/* ============================================================================================ */
/* Checkers of what the engine emits                                                           */

static void hexdump_head(const char *what, const uint8_t *p, size_t n) {
  if (H.violations > 30) return;
  fprintf(stderr, "  %s (%zu bytes):", what, n);
  for (size_t i = 0; i < n && i < 64; i++) fprintf(stderr, " %02x", p[i]);
  fprintf(stderr, "\n");
}

static const char *send_path = "?";

static void map4(uint8_t out[16], uint32_t a) {
  memset(out, 0, 16);
  out[10] = out[11] = 0xff;
  out[12] = (uint8_t)(a >> 24);
  out[13] = (uint8_t)(a >> 16);
  out[14] = (uint8_t)(a >> 8);
  out[15] = (uint8_t)a;
}

/* A datagram's destination as 16 bytes (IPv4 mapped), from the socket it left on; 0 if bad. */
static int dest_of(int fd, const void *name, uint8_t out[16]) {
  const struct sockaddr_in *a = name;
  const struct sockaddr_in6 *a6 = name;
  if (fd == FAKE_UDP_FD && a && a->sin_family == AF_INET && ntohs(a->sin_port) == PORT && E->udp.fd >= 0) {
    map4(out, ntohl(a->sin_addr.s_addr));
    return 1;
  }
  if (fd == FAKE_UDP6_FD && a6 && a6->sin6_family == AF_INET6 && ntohs(a6->sin6_port) == PORT && E->udp6_on) {
    memcpy(out, &a6->sin6_addr, 16);
    return 1;
  }
  return 0;
}

/* One IPv6 datagram: payload length = len, hop limit > 0; its destination to dst. */
static int check_datagram6(const uint8_t *p, size_t len, uint8_t dst[16]) {
  if (len < 40 || p[0] >> 4 != 6 || 40u + rd16(p + 4) != len) {
    violation("datagram is not one well-formed IPv6 packet (len %zu, via %s)", len, send_path);
    hexdump_head("datagram", p, len);
    return 0;
  }
  if (p[7] == 0) violation("datagram with hop limit 0");
  /* Marked TCP comes from TSO6 reads / NEEDS_CSUM packets: a split or completion that loses,
   * repeats or misplaces a byte, or leaves a wrong checksum, shows here. */
  if (fuzz_is_marked6(p, len) && (!fuzz_l4_valid6(p, len) || !fuzz_oracle_ok6(p, len))) {
    violation("IPv6 datagram of a marked flow with a bad TCP checksum or payload out of place (len %zu)", len);
    hexdump_head("datagram", p, len);
  }
  memcpy(dst, p + 24, 16);
  return 1;
}

/* One datagram leaving through a UDP socket. */
static void check_datagram(int fd, const void *name, const uint8_t *p, size_t len) {
  uint8_t peer[16], dst[16];
  if (!dest_of(fd, name, peer)) {
    violation("datagram to a bad address/port/socket");
    return;
  }
  if (len < 20 || len > MTU) {
    violation("datagram of %zu bytes (tunnel MTU %u)", len, MTU);
    hexdump_head("datagram", p, len);
    return;
  }
  if (H.dual) {
    if (!check_datagram6(p, len, dst)) return;
    int w = H.win_n - 1;
    while (w >= 0 && memcmp(H.win_dst[w], dst, 16) != 0) w--;
    if (w < 0 && !libfuzzer_mode) violation("IPv6 datagram no input the reference forwards since the last flush was for");
    else if (w >= 0 && memcmp(H.win_peer[w], peer, 16) != 0) violation("IPv6 datagram sent to another underlay address than the route's");
    return;
  }
  unsigned hl = (p[0] & 15u) * 4;
  if (p[0] >> 4 != 4 || hl < 20 || hl > len || rd16(p + 2) != len) {
    violation("datagram is not one well-formed IPv4 packet (len %zu, total %u, via %s)", len, rd16(p + 2), send_path);
    hexdump_head("datagram", p, len);
    return;
  }
  if (p[8] == 0) violation("datagram with TTL 0");
  map4(dst, rd32(p + 16));
  int w = H.win_n - 1;
  while (w >= 0 && memcmp(H.win_dst[w], dst, 16) != 0) w--;
  if (w < 0 && !libfuzzer_mode) {
    violation("datagram for %08x, which no input the reference forwards since the last flush was for", rd32(p + 16));
    return;
  }
  if (w >= 0 && memcmp(H.win_peer[w], peer, 16) != 0) {
    violation("datagram for %08x sent to %08x, the route says %08x", rd32(p + 16), rd32(peer + 12), rd32(H.win_peer[w] + 12));
    return;
  }
  if (fuzz_is_marked(p, len)) {
    /* Every encap input with a mark had right checksums (or a seeded partial one): so must the output. */
    if (fuzz_sum(p, hl, 0) != 0xffff) violation("marked datagram with a bad IP header checksum");
    if (!fuzz_l4_valid(p, len)) {
      violation("marked datagram with a bad L4 checksum");
      hexdump_head("datagram", p, len);
    } else if (!fuzz_oracle_ok(p, len)) {
      violation("marked datagram with payload bytes out of place (segmentation bug)");
      hexdump_head("datagram", p, len);
    }
  }
}

static int fake_send_failure(void) {
  if (H.send_fails == 0) return 0;
  H.send_fails--;
  errno = H.send_errno;
  return 1;
}

static ssize_t fuzz_sendmsg(int fd, const struct msghdr *msg, int flags) {
  (void)flags;
  if ((fd != FAKE_UDP_FD && fd != FAKE_UDP6_FD) || H.phase != 1) {
    violation("sendmsg on fd %d outside encap", fd);
    errno = EBADF;
    return -1;
  }
  uint16_t seg = 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR((struct msghdr *)msg); cm; cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
    if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_SEGMENT) memcpy(&seg, CMSG_DATA(cm), sizeof seg);
  }
  if (msg->msg_iovlen != 1) violation("GSO send with %zu iovecs", (size_t)msg->msg_iovlen);
  const uint8_t *p = msg->msg_iov[0].iov_base;
  size_t len = msg->msg_iov[0].iov_len;
  if (seg == 0) violation("sendmsg without UDP_SEGMENT");
  if (fake_send_failure()) return -1;
  if (seg == 0) seg = (uint16_t)len;
  /* The kernel cuts the buffer into seg-sized datagrams, the last one shorter. */
  size_t nseg = (len + seg - 1) / seg;
  if (nseg > ENGINE_TX_MAX_SEGS || len > ENGINE_TX_MAX_BYTES) violation("GSO send of %zu bytes in %zu segments", len, nseg);
  send_path = "sendmsg(UDP_SEGMENT)";
  for (size_t off = 0; off < len; off += seg) {
    check_datagram(fd, msg->msg_name, p + off, len - off < seg ? len - off : seg);
    H.delivered++;
  }
  return (ssize_t)len;
}

static int fuzz_sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags) {
  (void)flags;
  if ((fd != FAKE_UDP_FD && fd != FAKE_UDP6_FD) || H.phase != 1 || n == 0) {
    violation("sendmmsg on fd %d (n %u) outside encap", fd, n);
    errno = EBADF;
    return -1;
  }
  unsigned take = n;
  if (H.send_fails > 0) {
    /* Either refuse the first datagram (errno) or accept only part of the vector. */
    if (H.send_fails % 2 == 0 || n == 1) {
      if (fake_send_failure()) return -1;
    } else {
      H.send_fails--;
      take = 1 + (unsigned)(H.send_fails % (n - 1));
    }
  }
  send_path = "sendmmsg";
  for (unsigned i = 0; i < take; i++) {
    const struct msghdr *m = &v[i].msg_hdr;
    if (m->msg_iovlen != 1) violation("sendmmsg message with %zu iovecs", (size_t)m->msg_iovlen);
    check_datagram(fd, m->msg_name, m->msg_iov[0].iov_base, m->msg_iov[0].iov_len);
    v[i].msg_len = (unsigned)m->msg_iov[0].iov_len;
    H.delivered++;
  }
  return (int)take;
}

/* An ICMP error the encap side writes into the TUN: headers, checksums, quote, suppression rules. */
static void check_icmp(const uint8_t *buf, size_t n) {
  static const uint8_t zero[VNET_HDR_LEN];
  if (n < VNET_HDR_LEN + 20 + 8 + 20 || memcmp(buf, zero, VNET_HDR_LEN) != 0) {
    violation("ICMP write of %zu bytes / non-zero virtio header", n);
    return;
  }
  const uint8_t *ip = buf + VNET_HDR_LEN;
  size_t len = n - VNET_HDR_LEN;
  if (!ipv4_whole(ip, len) || (ip[0] & 15) != 5 || ip[9] != 1 ||
      ip[8] != 64 || rd16(ip + 6) != 0 || rd32(ip + 12) != LOCAL_NET) {
    violation("ICMP error with a bad IPv4 header");
    hexdump_head("icmp", ip, len);
    return;
  }
  const uint8_t *icmp = ip + 20;
  size_t ilen = len - 20;
  if (fuzz_sum(icmp, ilen, 0) != 0xffff) violation("ICMP error with a bad ICMP checksum");
  int tc = icmp[0] * 256 + icmp[1];
  uint32_t rest = rd32(icmp + 4);
  if (!((tc == 3 * 256 && rest == 0) || (tc == 11 * 256 && rest == 0) || (tc == 3 * 256 + 4 && rest == (MTU & 0xffff))))
    violation("ICMP error type %d code %d rest %u", icmp[0], icmp[1], rest);
  const uint8_t *q = icmp + 8;
  size_t qlen = ilen - 8;
  unsigned qhl = (q[0] & 15u) * 4;
  if (qhl < 20 || qlen < qhl || qlen > qhl + 8) {
    violation("ICMP quote of %zu bytes for a %u-byte header", qlen, qhl);
    return;
  }
  if (rd32(q + 12) != rd32(ip + 16)) violation("ICMP error not sent to the offending packet's source");
  /* Whether this packet may get one at all: run_encap holds it against the model's expectation. */
  H.last_icmp_type = icmp[0];
  H.last_icmp_code = icmp[1];
}

/* An ICMPv6 error (a dual-stack node's): IPv6 header from our tunnel address to the offending
 * packet's source, checksum over the pseudo-header, type/code, the MTU in a Packet Too Big, and
 * a quote that is the start of the offending packet. Which error is due: the model's (run_encap). */
static void check_icmp6(const uint8_t *buf, size_t n) {
  static const uint8_t zero[VNET_HDR_LEN];
  if (n < VNET_HDR_LEN + 40 + 8 || memcmp(buf, zero, VNET_HDR_LEN) != 0) {
    violation("ICMPv6 write of %zu bytes / non-zero virtio header", n);
    return;
  }
  const uint8_t *ip = buf + VNET_HDR_LEN;
  size_t len = n - VNET_HDR_LEN;
  size_t plen = rd16(ip + 4);
  const uint8_t *o = H.cur_pkt;
  if (ip[0] != 0x60 || ip[6] != 58 || ip[7] != 64 || 40 + plen != len || len > 1280 ||
      memcmp(ip + 8, FUZZ_LOCAL6, 16) != 0 || !o || H.cur_len < 40 || memcmp(ip + 24, o + 8, 16) != 0) {
    violation("ICMPv6 error with a bad IPv6 header (or not from our tunnel address to the source)");
    hexdump_head("icmp6", ip, len);
    return;
  }
  /* Pseudo-header: source, destination, upper-layer length, next header 58. */
  uint32_t seed = fuzz_sum(ip + 8, 32, 0) + (uint32_t)(plen >> 16) + (uint32_t)(plen & 0xffff) + 58;
  if (fuzz_sum(ip + 40, plen, seed) != 0xffff) violation("ICMPv6 error with a bad checksum");
  const uint8_t *icmp = ip + 40;
  uint32_t rest = rd32(icmp + 4);
  if (rest != (icmp[0] == 2 ? MTU : 0)) violation("ICMPv6 type %d with rest word %u (tunnel MTU %u)", icmp[0], rest, MTU);
  /* A super-packet is quoted as the whole read; a completed checksum differs from the input. */
  size_t total = H.cur_gso ? H.cur_len : 40 + (size_t)rd16(o + 4), qlen = plen - 8;
  if (total > H.cur_len) total = H.cur_len;
  int same = qlen == (total < 1280 - 48 ? total : 1280 - 48);
  for (size_t i = 0; same && i < qlen; i++)
    same = icmp[8 + i] == o[i] || i == H.cur_csum_at || i == H.cur_csum_at + 1 || (H.cur_gso && (i == 4 || i == 5));
  if (same && H.cur_gso && rd16(icmp + 12) != H.cur_len - 40) same = 0; /* its payload length: from the read */
  if (!same) violation("ICMPv6 quote of %zu bytes is not the start of the %zu-byte packet", qlen, total);
  H.last_icmp_type = icmp[0];
  H.last_icmp_code = icmp[1];
}

static ssize_t fuzz_write(int fd, const void *buf, size_t n) {
  if (fd != FAKE_TUN_FD) return write(fd, buf, n); /* libc: not the seam */
  if (H.phase != 1) violation("single write() into the TUN outside encap");
  if (H.tun_fails > 0) {
    H.tun_fails--;
    H.icmp_write_fail++;
    errno = EIO;
    return -1;
  }
  if (n > VNET_HDR_LEN && ((const uint8_t *)buf)[VNET_HDR_LEN] >> 4 == 6) check_icmp6(buf, n);
  else check_icmp(buf, n);
  H.icmp_written++;
  return (ssize_t)n;
}

/* Which received message a pointer into the decap buffers belongs to, or -1. */
static int msg_of(const void *ptr, size_t *off) {
  const uint8_t *p = ptr;
  for (int i = 0; i < H.rx_n; i++) {
    if (H.msg_buf[i] && p >= H.msg_buf[i] && p < H.msg_buf[i] + RX_BUF) {
      *off = (size_t)(p - H.msg_buf[i]);
      return i;
    }
  }
  return -1;
}


/* One plain (unmerged) packet written into the TUN by decap. */
static void check_decap_single(const struct iovec *iov) {
  size_t off = 0;
  int i = msg_of(iov->iov_base, &off);
  const uint8_t *p = iov->iov_base;
  size_t len = iov->iov_len;
  if (i < 0) {
    violation("decap wrote bytes from outside the receive buffers");
    return;
  }
  uint32_t seg = H.msg_seg[i];
  if (off % seg != 0 || off + len > H.msg_len[i] || len > seg) {
    violation("decap write crosses its datagram (offset %zu, %zu bytes, segment %u, message %u)", off, len, seg,
              H.msg_len[i]);
    return;
  }
  if (len >= 40 && p[0] >> 4 == 6) {
    if (40u + rd16(p + 4) != len || p[7] == 0) violation("decap wrote a bad IPv6 packet (len %zu) or hop limit 0", len);
    if (datagram_forwarded(i, off) == 0) violation("decap wrote a datagram the reference drops");
    if (fuzz_is_marked6(p, len) && fuzz_l4_valid6(p, len) && !fuzz_oracle_ok6(p, len)) violation("decap changed IPv6 payload bytes");
    return;
  }
  if (!ipv4_whole(p, len)) {
    violation("decap wrote an invalid IPv4 packet (len %zu)", len);
    hexdump_head("packet", p, len);
    return;
  }
  if (p[8] == 0) violation("decap wrote a packet with TTL 0");
  if (datagram_forwarded(i, off) == 0) violation("decap wrote a datagram the reference drops");
  if (fuzz_is_marked(p, len) && fuzz_l4_valid(p, len) && !fuzz_oracle_ok(p, len)) violation("decap changed payload bytes");
}

/* A GRO super-packet: header facts, piece layout, same sender, checksums, stream order. */
static void check_decap_merged(const struct iovec *iov, int iovcnt) {
  static uint8_t merged[65536 + 64];
  size_t total = 0, off0 = 0;
  int i0 = msg_of(iov[1].iov_base, &off0);
  if (i0 < 0) {
    violation("GRO packet from outside the receive buffers");
    return;
  }
  const uint8_t *sender = H.msg_src[i0];
  for (int k = 1; k < iovcnt; k++) {
    size_t off = 0;
    int i = msg_of(iov[k].iov_base, &off);
    if (i < 0 || memcmp(H.msg_src[i], sender, 16) != 0) violation("GRO merged packets from different senders");
    else if (datagram_forwarded(i, off) == 0) violation("GRO merged a datagram the reference drops");
  }
  int v6 = ((const uint8_t *)iov[1].iov_base)[0] >> 4 == 6;
  if (v6) H.merged6_writes++;
  const char *wrong = (v6 ? fuzz_gro_check6 : fuzz_gro_check)(iov[0].iov_base, iov, iovcnt, merged, &total);
  if (wrong) {
    violation("%s", wrong);
    hexdump_head("merged", merged, total);
  }
  H.merged_writes++;
}

static ssize_t fuzz_writev(int fd, const struct iovec *iov, int iovcnt) {
  if (fd != FAKE_TUN_FD) return writev(fd, iov, iovcnt);
  if (H.phase != 2 || iovcnt < 2 || iov[0].iov_len != VNET_HDR_LEN) {
    violation("writev into the TUN outside decap, or without a virtio header (%d iovecs)", iovcnt);
    errno = EINVAL;
    return -1;
  }
  if (H.tun_fails > 0) {
    H.tun_fails--;
    errno = EIO;
    return -1;
  }
  vnet_hdr h;
  vnet_parse(iov[0].iov_base, &h);
  size_t bytes = 0;
  for (int k = 0; k < iovcnt; k++) bytes += iov[k].iov_len;
  if (h.gso_type == VNET_GSO_NONE && h.flags == 0) {
    if (iovcnt != 2) violation("plain decap write with %d pieces", iovcnt - 1);
    check_decap_single(&iov[1]);
    H.written_segs++;
  } else {
    check_decap_merged(iov, iovcnt);
    H.written_segs += (uint64_t)(iovcnt - 1);
    H.merged_segs += (uint64_t)(iovcnt - 1);
  }
  return (ssize_t)bytes;
}

/* ============================================================================================ */
/* Running records through the engine                                                           */

/* An IPv4-only node (as production: no IPv6 lease, no IPv6 socket). */
static void set_routes(uint16_t mask, uint16_t mtu) {
  NROUTES = 0;
  for (size_t i = 0; i < FUZZ_NFAMILY; i++)
    if (mask & (1u << i)) ROUTES[NROUTES++] = FUZZ_ROUTE_FAMILY[i];
  H.dual = 0;
  E->cfg.has6 = 0;
  E->udp.fd = FAKE_UDP_FD;
  E->udp6_on = 0;
  felt_err err;
  if (engine_set_routes(E, ROUTES, NROUTES, &err) < 0) violation("engine_set_routes failed: %s", err.msg);
  MTU = mtu < 68 ? 68 : mtu > 65507 ? 65507 : mtu;
  E->cfg.mtu = MTU;
}

/* A dual-stack node (ROUTES6): our IPv6 lease, routes with their IPv6 sides, and the underlay
 * sockets the node has (bit 0 IPv4, bit 1 IPv6; none: IPv4), as engine_ctl.c opens them. */
static void set_routes6(uint8_t mask, uint8_t underlays, uint16_t mtu) {
  NROUTES = 0;
  for (size_t i = 0; i < FUZZ_NFAMILY6; i++)
    if (mask & (1u << i)) {
      ROUTES[NROUTES] = FUZZ_ROUTE_FAMILY6_V4[i];
      ROUTES6[NROUTES++] = FUZZ_ROUTE_FAMILY6[i];
    }
  int v4 = (underlays & 1) || !(underlays & 3), v6 = (underlays & 2) != 0;
  H.dual = 1;
  E->cfg.has6 = 1;
  memcpy(E->cfg.local_net6, FUZZ_LOCAL6, 16);
  E->cfg.local_prefix6 = FUZZ_LOCAL_PREFIX6;
  E->udp.fd = v4 ? FAKE_UDP_FD : -1;
  E->udp6.fd = FAKE_UDP6_FD;
  E->udp6_on = v6;
  felt_err err;
  if (engine_set_routes6(E, ROUTES, ROUTES6, NROUTES, &err) < 0) violation("engine_set_routes6 failed: %s", err.msg);
  MTU = mtu < 1280 ? 1280 : mtu > 65507 ? 65507 : mtu;
  E->cfg.mtu = MTU;
}

/* Encap state of a burst: segments handed to the tx batch, checked against sends at the flush. */
static uint64_t enc_queued, enc_pk0, enc_se0, enc_dl0;
static int enc_open;

static void encap_begin(void) {
  if (enc_open) return;
  enc_open = 1;
  H.phase = 1;
  H.win_n = 0;
  engine_enc_enter(E->enc);
  enc_queued = 0;
  enc_pk0 = E->enc_ctr.packets;
  enc_se0 = E->enc_ctr.drops[DROP_SEND_ERROR];
  enc_dl0 = H.delivered;
}

static void encap_end(void) {
  if (!enc_open) return;
  engine_enc_flush(E->enc);
  enc_open = 0;
  __atomic_store_n(&E->enc_seen, OFFLINE, __ATOMIC_SEQ_CST);
  uint64_t sent = E->enc_ctr.packets - enc_pk0, failed = E->enc_ctr.drops[DROP_SEND_ERROR] - enc_se0;
  if (sent + failed != enc_queued)
    violation("encap: %" PRIu64 " segments forwarded but %" PRIu64 " sent + %" PRIu64 " send-error", enc_queued, sent,
              failed);
  if (sent != H.delivered - enc_dl0)
    violation("encap: %" PRIu64 " counted sent, %" PRIu64 " datagrams reached the socket", sent, H.delivered - enc_dl0);
  H.phase = 0;
}

/* Names the one known cause of encap verdict differences: a virtio header asking for a checksum
 * to be completed from inside the IP header (the completion rewrites validated header fields). */
static const char *csum_start_hint(const uint8_t *data, size_t n) {
  if (n < VNET_HDR_LEN + 1) return "";
  vnet_hdr h;
  vnet_parse(data, &h);
  unsigned hl = (data[VNET_HDR_LEN] & 15u) * 4;
  if ((h.gso_type & ~VNET_GSO_ECN) == VNET_GSO_NONE && (h.flags & VNET_F_NEEDS_CSUM) && h.csum_start < hl)
    return " [virtio NEEDS_CSUM with csum_start inside the IP header]";
  return "";
}

static void run_encap(const uint8_t *data, size_t n, const enc_expect *ref) {
  if (n > MAX_READ) n = MAX_READ; /* a TUN read never returns more */
  encap_begin();
  H.enc_inputs++;
  if (!ref->present && !libfuzzer_mode) violation("encap input without a reference verdict (EXPECT_ENCAP)");
  counter before[DROP_COUNT];
  memcpy(before, E->enc_ctr.drops, sizeof before);
  uint64_t segs0 = E->enc_ctr.tun_read_segments, icmp0 = E->enc_ctr.icmp_sent, lim0 = E->enc_ctr.icmp_rate_limited;
  uint64_t iw0 = H.icmp_written, iwf0 = H.icmp_write_fail;
  H.last_icmp_type = H.last_icmp_code = -1;

  if (ref->present && ref->reason == DROP_NONE) {
    if (H.dual) {
      if (n >= VNET_HDR_LEN + 40) memcpy(H.win_dst[H.win_n], data + VNET_HDR_LEN + 24, 16);
      else memset(H.win_dst[H.win_n], 0, 16);
    } else {
      map4(H.win_dst[H.win_n], n >= VNET_HDR_LEN + 20 ? rd32(data + VNET_HDR_LEN + 16) : 0);
    }
    memcpy(H.win_peer[H.win_n++], ref->peer, 16);
  }
  H.cur_pkt = n > VNET_HDR_LEN ? data + VNET_HDR_LEN : NULL;
  H.cur_len = n > VNET_HDR_LEN ? n - VNET_HDR_LEN : 0;
  H.cur_gso = 0;
  H.cur_csum_at = SIZE_MAX;
  if (n >= VNET_HDR_LEN) {
    vnet_hdr vh;
    vnet_parse(data, &vh);
    H.cur_gso = (vh.gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE;
    if (vh.flags & VNET_F_NEEDS_CSUM) H.cur_csum_at = (size_t)vh.csum_start + vh.csum_offset;
  }
  memcpy(RBUF, data, n);
  engine_enc_packet(E->enc, RBUF, n);
  H.cur_pkt = NULL;

  uint64_t iw = H.icmp_written - iw0, iwf = H.icmp_write_fail - iwf0;
  uint64_t icmp = E->enc_ctr.icmp_sent - icmp0, lim = E->enc_ctr.icmp_rate_limited - lim0;
  /* One reason, once per segment; tun-write-error only for an ICMP error we refused; send-error
   * only from flushes (an earlier packet's batch may go out during this one). */
  int got = DROP_NONE, extra = 0;
  uint64_t got_units = E->enc_ctr.tun_read_segments - segs0;
  for (int r = 0; r < DROP_COUNT; r++) {
    if (r == DROP_SEND_ERROR) continue;
    uint64_t d = E->enc_ctr.drops[r] - before[r] - (r == DROP_TUN_WRITE_ERROR ? iwf : 0);
    if (d == 0) continue;
    if (got != DROP_NONE) extra = 1;
    got = r;
    got_units = d;
  }
  if (!ref->present) return;
  const char *hint = csum_start_hint(data, n);
  if (extra || got != ref->reason || got_units != ref->units) {
    violation("encap verdict: engine %s x%" PRIu64 "%s, reference %s x%u%s", got < 0 ? "forward" : drop_reason_names[got],
              got_units, extra ? " (and more reasons)" : "", ref->reason < 0 ? "forward" : drop_reason_names[ref->reason],
              ref->units, hint);
    hexdump_head("input", data, n);
  }
  if (got == DROP_NONE) enc_queued += got_units; /* judged at the flush against what was sent */
  if (icmp != iw) violation("encap: icmp_sent +%" PRIu64 " but %" PRIu64 " ICMP writes", icmp, iw);
  if (iw + iwf + lim != (ref->icmp ? 1u : 0u)) {
    violation("encap: ICMP written %" PRIu64 " / refused %" PRIu64 " / rate-limited %" PRIu64 ", reference expects %s%s",
              iw, iwf, lim, ref->icmp ? "one" : "none", hint);
    hexdump_head("input", data, n);
  } else if (iw && H.last_icmp_type * 256 + H.last_icmp_code != ref->icmp) {
    violation("encap: ICMP %d/%d, reference expects %d/%d", H.last_icmp_type, H.last_icmp_code, ref->icmp >> 8,
              ref->icmp & 255);
  }
  if (ref->icmp) H.icmp_expected++;
  if (H.dual) {
    H.v6_enc[got < 0 ? DROP_COUNT : got] += got_units;
    H.v6_icmp += iw;
  }
}

/* The sender of a DECAP record (IPv4 mapped): as the model resolved it; without one (libFuzzer) a
 * route's peer by index, or a stranger (198.51.100.x). */
static void rec_source(const dec_rec *r, uint8_t out[16]) {
  if (r->expected) memcpy(out, r->src, 16);
  else map4(out, r->peer < NROUTES && ROUTES[r->peer].public_ip ? ROUTES[r->peer].public_ip : (0xc6336400u | r->peer));
}

static int is_mapped4(const uint8_t a[16]) {
  static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(a, pre, 12) == 0;
}

/* The engine's recvmmsg: the pending batch once, as the kernel would fill it, then EAGAIN. */
static int fuzz_recvmmsg(int fd, struct mmsghdr *v, unsigned int vlen, int flags, struct timespec *timeout) {
  (void)flags;
  (void)timeout;
  int fam6 = fd == FAKE_UDP6_FD;
  if ((fd != FAKE_UDP_FD && !fam6) || H.phase != 2) {
    violation("recvmmsg on fd %d outside decap", fd);
    errno = EBADF;
    return -1;
  }
  if (!H.rx_recs || H.rx_left[fam6] == 0) {
    errno = EAGAIN;
    return -1;
  }
  /* This socket's messages of the batch, in order (the IPv4 socket is drained first). */
  int n = 0;
  for (int k = 0; k < H.rx_total && n < (int)vlen; k++) {
    const dec_rec *r = &H.rx_recs[k];
    uint8_t src[16];
    rec_source(r, src);
    if (is_mapped4(src) == fam6) continue;
    int i = n++;
    struct msghdr *m = &v[i].msg_hdr;
    size_t cap = m->msg_iov[0].iov_len, len = r->len < cap ? r->len : cap;
    memcpy(m->msg_iov[0].iov_base, r->data, len);
    H.msg_buf[i] = m->msg_iov[0].iov_base;
    H.msg_rec[i] = r;
    H.msg_seg[i] = H.rec_seg[k];
    H.msg_len[i] = H.rec_len[k];
    memcpy(H.msg_src[i], src, 16);
    if (fam6) {
      struct sockaddr_in6 from = {.sin6_family = AF_INET6, .sin6_port = htons(PORT)};
      memcpy(&from.sin6_addr, src, 16);
      if (m->msg_name && m->msg_namelen >= sizeof from) memcpy(m->msg_name, &from, sizeof from);
      m->msg_namelen = sizeof from;
    } else {
      struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(PORT), .sin_addr = {htonl(rd32(src + 12))}};
      if (m->msg_name && m->msg_namelen >= sizeof from) memcpy(m->msg_name, &from, sizeof from);
      m->msg_namelen = sizeof from;
    }
    size_t room = m->msg_controllen;
    m->msg_controllen = 0;
    if (r->groseg && room >= CMSG_SPACE(sizeof(int))) {
      memset(m->msg_control, 0, CMSG_SPACE(sizeof(int)));
      m->msg_controllen = CMSG_SPACE(sizeof(int));
      struct cmsghdr *cm = CMSG_FIRSTHDR(m);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_GRO;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      int seg = r->groseg;
      memcpy(CMSG_DATA(cm), &seg, sizeof seg);
    }
    m->msg_flags = (r->flags & 1) || r->len > cap ? MSG_TRUNC : 0;
    v[i].msg_len = (unsigned)len;
  }
  H.rx_n = n;
  H.rx_left[fam6] = 0;
  return n;
}

/* A receive batch: up to RX_MSGS messages, received in one recvmmsg by one wake-up of the decap loop. */
static void run_decap_batch(const dec_rec *recs, int n) {
  if (n == 0) return;
  H.phase = 2;
  uint64_t want[DROP_COUNT] = {0}, want_fwd = 0;
  int judged = 1; /* every message has the model's verdicts */
  H.rx_left[0] = H.rx_left[1] = 0;
  for (int i = 0; i < n; i++) {
    const dec_rec *r = &recs[i];
    uint8_t src[16];
    rec_source(r, src);
    H.rx_left[!is_mapped4(src)]++;
    H.dec_inputs++;
    size_t len = r->len > RX_BUF ? RX_BUF : r->len; /* recvmmsg cuts it (MSG_TRUNC) */
    /* A GRO message holds datagrams of seg bytes, the last one shorter (the checkers' layout). */
    size_t seg = r->groseg;
    if (seg == 0 || seg > len) seg = len ? len : 1;
    H.rec_seg[i] = (uint32_t)seg;
    H.rec_len[i] = (uint32_t)len;
    H.msg_rec[i] = NULL;
    H.dec_datagrams += len == 0 ? 1 : (len + seg - 1) / seg;
    if (!r->expected) {
      if (!libfuzzer_mode) violation("decap input without a reference verdict (EXPECT_DECAP)");
      judged = 0;
      continue;
    }
    for (uint32_t k = 0; k < r->nverdicts; k++) {
      uint8_t v = r->verdicts[k];
      if (v == FUZZ_VERDICT_FORWARD) want_fwd++;
      else if (v < DROP_COUNT) want[v]++;
      else violation("decap: EXPECT_DECAP verdict %u is no drop reason", v);
    }
  }
  counter before[DROP_COUNT];
  memcpy(before, E->dec_ctr.drops, sizeof before);
  uint64_t pk0 = E->dec_ctr.packets, ws0 = H.written_segs;
  H.rx_recs = recs;
  H.rx_total = n;
  H.rx_n = 0;
  engine_dec_drain(E->dec);
  __atomic_store_n(&E->dec_seen, OFFLINE, __ATOMIC_SEQ_CST); /* as the loop's wait does */
  if (H.rx_left[0] || H.rx_left[1]) violation("decap: the engine did not receive the batch");
  H.rx_recs = NULL;
  H.rx_n = 0;
  if (!judged) {
    H.phase = 0;
    return;
  }

  uint64_t twe = E->dec_ctr.drops[DROP_TUN_WRITE_ERROR] - before[DROP_TUN_WRITE_ERROR];
  for (int r = 0; r < DROP_COUNT; r++) {
    if (r == DROP_TUN_WRITE_ERROR) continue;
    uint64_t d = E->dec_ctr.drops[r] - before[r];
    if (d != want[r]) violation("decap: %s counted %" PRIu64 ", reference says %" PRIu64, drop_reason_names[r], d, want[r]);
  }
  uint64_t pk = E->dec_ctr.packets - pk0;
  if (pk + twe != want_fwd)
    violation("decap: %" PRIu64 " written + %" PRIu64 " tun-write-error, reference forwards %" PRIu64, pk, twe, want_fwd);
  if (pk != H.written_segs - ws0)
    violation("decap: counted %" PRIu64 " packets, %" PRIu64 " reached the TUN", pk, H.written_segs - ws0);
  if (H.dual) {
    for (int r = 0; r < DROP_COUNT; r++) H.v6_dec[r] += want[r];
    H.v6_dec[DROP_COUNT] += want_fwd;
  }
  H.phase = 0;
}

static uint32_t get_be(const uint8_t *p, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

static const int SEND_ERRNOS[] = {EIO, EINVAL, EMSGSIZE, ENOBUFS, EPERM, EAGAIN, ECONNREFUSED, ENETUNREACH};

/* Runs one burst (the libFuzzer unit). Malformed record streams end the burst where they break. */
void fuzz_run_burst(const uint8_t *data, size_t size, uint64_t burst_index) {
  H.burst_index = burst_index;
  H.burst = data;
  H.burst_len = size;
  H.burst_saved = 0;
  H.bursts++;
  H.send_fails = H.tun_fails = 0;
  dec_rec recs[RX_MSGS];
  int nrecs = 0;
  int enc_count = 0;
  size_t off = 0;
  while (off < size) {
    uint8_t kind = data[off++];
    H.records++;
    if (kind != REC_DECAP && nrecs) {
      run_decap_batch(recs, nrecs);
      nrecs = 0;
    }
    if (kind != REC_ENCAP) {
      encap_end();
      enc_count = 0;
    }
    switch (kind) {
      case REC_ENCAP: {
        if (off + 4 > size) goto out;
        size_t len = get_be(data + off, 4);
        off += 4;
        if (len > size - off) len = size - off;
        const uint8_t *pkt = data + off;
        off += len;
        enc_expect x = {0};
        int six = off < size && data[off] == REC_EXPECT_ENCAP6;
        size_t xlen = six ? REC_EXPECT_ENCAP6_LEN : REC_EXPECT_ENCAP_LEN;
        if (off + 1 + xlen <= size && (data[off] == REC_EXPECT_ENCAP || six)) {
          const uint8_t *q = data + off + 1;
          x = (enc_expect){.present = 1, .reason = q[0] == FUZZ_VERDICT_FORWARD ? DROP_NONE : q[0],
                           .units = get_be(q + 1, 4), .icmp = q[5] == 0xff ? 0 : q[5] * 256 + q[6]};
          if (six) memcpy(x.peer, q + 7, 16);
          else map4(x.peer, get_be(q + 7, 4));
          if (six != H.dual) violation("encap: an expectation for the other node kind (dual-stack %d)", H.dual);
          off += 1 + xlen;
          H.records++;
        }
        if (enc_count == ENC_BURST) {
          encap_end();
          enc_count = 0;
        }
        run_encap(pkt, len, &x);
        enc_count++;
        break;
      }
      case REC_DECAP: {
        if (off + 8 > size) goto out;
        dec_rec r = {.peer = data[off], .groseg = (uint16_t)get_be(data + off + 1, 2), .flags = data[off + 3]};
        size_t len = get_be(data + off + 4, 4);
        off += 8;
        if (len > size - off) len = size - off;
        r.data = data + off;
        r.len = len;
        off += len;
        if (off + 9 <= size && data[off] == REC_EXPECT_DECAP) {
          uint32_t nv = get_be(data + off + 5, 4);
          if (nv <= size - off - 9) {
            r.expected = 1;
            map4(r.src, get_be(data + off + 1, 4));
            r.nverdicts = nv;
            r.verdicts = data + off + 9;
            off += 9 + nv;
            H.records++;
          }
        } else if (off + 21 <= size && data[off] == REC_EXPECT_DECAP6) {
          uint32_t nv = get_be(data + off + 17, 4);
          if (nv <= size - off - 21) {
            r.expected = 1;
            memcpy(r.src, data + off + 1, 16);
            r.nverdicts = nv;
            r.verdicts = data + off + 21;
            off += 21 + nv;
            H.records++;
          }
        }
        if (r.expected && !H.dual && !is_mapped4(r.src)) violation("decap: an IPv6 sender for an IPv4-only node");
        recs[nrecs++] = r;
        if (nrecs == RX_MSGS) {
          run_decap_batch(recs, nrecs);
          nrecs = 0;
        }
        break;
      }
      case REC_FAULTS:
        if (off + 3 > size) goto out;
        H.send_errno = SEND_ERRNOS[data[off] % (sizeof SEND_ERRNOS / sizeof SEND_ERRNOS[0])];
        H.send_fails = data[off + 1];
        H.tun_fails = data[off + 2];
        off += 3;
        break;
      case REC_ROUTES:
        if (off + 4 > size) goto out;
        set_routes((uint16_t)get_be(data + off, 2), (uint16_t)get_be(data + off + 2, 2));
        off += 4;
        break;
      case REC_ROUTES6:
        if (off + 4 > size) goto out;
        set_routes6(data[off], data[off + 1], (uint16_t)get_be(data + off + 2, 2));
        off += 4;
        break;
      case REC_GSO:
        if (off + 1 > size) goto out;
        E->features.udp_gso = data[off] & 1;
        off += 1;
        break;
      default:
        goto out;
    }
  }
out:
  if (nrecs) run_decap_batch(recs, nrecs);
  encap_end();
  /* The token bucket: at most the burst plus the rate over the elapsed time. */
  double elapsed = (double)(fake_clock_ns - H.t0_ns) / 1e9;
  if ((double)E->enc_ctr.icmp_sent + (double)H.icmp_write_fail > ENGINE_ICMP_BURST + ENGINE_ICMP_RATE * elapsed + 1)
    violation("ICMP rate limit exceeded: %" PRIu64 " in %.3f s", E->enc_ctr.icmp_sent, elapsed);
  H.burst = NULL;
}

void fuzz_init(uint64_t seed, const char *save_dir) {
  H.seed = seed;
  H.save_dir = save_dir;
  felt_sys.write = fuzz_write;
  felt_sys.writev = fuzz_writev;
  felt_sys.sendmsg = fuzz_sendmsg;
  felt_sys.sendmmsg = fuzz_sendmmsg;
  felt_sys.recvmmsg = fuzz_recvmmsg;
  felt_sys.clock_gettime = fuzz_clock_gettime;
  H.t0_ns = fake_clock_ns;
  E = calloc(1, sizeof *E);
  if (!E || engine_threads_init(E) < 0) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  E->cfg = (engine_config){.tun_fd = FAKE_TUN_FD, .mtu = 1472, .has4 = 1, .local_net = LOCAL_NET, .local_prefix = LOCAL_PREFIX,
                           .port = PORT, .udp_gso = 1, .tun_offload = 2};
  E->local_mask = prefix_mask(LOCAL_PREFIX);
  E->udp.fd = FAKE_UDP_FD;
  E->wake_fd = -1;
  E->enc_seen = E->dec_seen = OFFLINE;
  E->features.udp_gso = 1;
  felt_err err;
  E->table = rt_build(NULL, 0, &E->registry, &err);
  if (!E->table) {
    fprintf(stderr, "rt_build: %s\n", err.msg);
    exit(2);
  }
  set_routes(FUZZ_DEFAULT_MASK, 1472);
}

void fuzz_free(void) {
  engine_stop(E); /* no threads to join; closing the fake fds fails harmlessly */
}

uint64_t fuzz_inputs(void) { return H.enc_inputs + H.dec_inputs; }
uint64_t fuzz_violations(void) { return H.violations; }

void fuzz_print_summary(double secs) {
  const encap_counters *ec = &E->enc_ctr;
  const decap_counters *dc = &E->dec_ctr;
  printf("native fuzz: %" PRIu64 " inputs (%" PRIu64 " TUN reads, %" PRIu64 " UDP messages = %" PRIu64
         " datagrams) in %" PRIu64 " bursts, %.1f s\n",
         H.enc_inputs + H.dec_inputs, H.enc_inputs, H.dec_inputs, H.dec_datagrams, H.bursts, secs);
  printf("  encap (per segment): forwarded %" PRIu64, ec->packets);
  for (int r = 0; r < DROP_COUNT; r++)
    if (ec->drops[r]) printf(", %s %" PRIu64, drop_reason_names[r], ec->drops[r]);
  printf("; %" PRIu64 " segments from %" PRIu64 " super-packets; ICMP sent %" PRIu64 ", rate-limited %" PRIu64
         ", refused %" PRIu64 " (expected %" PRIu64 ")\n",
         ec->tun_read_segments, ec->gso_reads, ec->icmp_sent, ec->icmp_rate_limited, H.icmp_write_fail, H.icmp_expected);
  printf("  decap (per datagram): forwarded %" PRIu64, dc->packets);
  for (int r = 0; r < DROP_COUNT; r++)
    if (dc->drops[r]) printf(", %s %" PRIu64, drop_reason_names[r], dc->drops[r]);
  printf("; GRO merged %" PRIu64 " segments into %" PRIu64 " super-packets (%" PRIu64 " TCP/IPv6)\n", H.merged_segs,
         H.merged_writes, H.merged6_writes);
  printf("  UDP datagrams delivered %" PRIu64 " in %" PRIu64 " sends\n", H.delivered, ec->udp_sends);
  /* The dual-stack node's share (IPv6 inputs), per verdict: the model's, which the engine matched. */
  for (int side = 0; side < 2; side++) {
    const uint64_t *c = side ? H.v6_dec : H.v6_enc;
    printf("  IPv6 %s: forward %" PRIu64, side ? "decap" : "encap", c[DROP_COUNT]);
    for (int r = 0; r < DROP_COUNT; r++)
      if (c[r]) printf(", %s %" PRIu64, drop_reason_names[r], c[r]);
    if (side) printf("\n");
    else printf("; ICMPv6 errors %" PRIu64 "\n", H.v6_icmp);
  }
  printf("%s: %" PRIu64 " violations\n", H.violations ? "FAIL" : "OK", H.violations);
}

#ifdef FELT_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    libfuzzer_mode = 1;
    fuzz_init(0, NULL);
    ready = 1;
  }
  set_routes(FUZZ_DEFAULT_MASK, 1472);
  E->features.udp_gso = 1;
  fuzz_run_burst(data, size, 0);
  return 0;
}
#endif
