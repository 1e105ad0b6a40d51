/* Fuzz harness for the js engine's C I/O (native/reader.c and native/writer.c): the per-packet
 * decisions of that engine are in JavaScript (fuzzed by scripts/fuzz-js.ts), but its packets pass
 * through C on the way in and out:
 *   reader  TUN reads with a virtio header: checksum completion, TSO/USO split into records
 *           (add_vnet_read); UDP messages: GRO split into one record per datagram (append_datagram);
 *   writer  datagrams out as sendmmsg with UDP GSO trains (writer_udp_send); packets into the TUN
 *           with userspace GRO merging TCP trains (writer_tun_write_vnet).
 * The readers and the writer run as they are, their syscalls pointed at checkers through the
 * syscall seam (sys.h): nothing reaches a device or the network.
 * Every output is checked (framing, one outcome per entry, GSO train and GRO rules, checksums,
 * payload bytes in stream order via the fuzz.h oracle); injected syscall failures must show in
 * the per-entry outcomes. Build: build.sh. Usage: jsio-fuzz [--count N] [--seed S].
 * The readers are driven without their threads (reader_core.h: reader_create, reader_step).
 * Long on purpose: the reader and writer harnesses share the fake syscalls, the checkers and the driver. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../gso.h"
#include "../ipv4.h"
#include "../ipv6.h"
#include "../reader_core.h"
#include "../sys.h"
#include "../udp.h"
#include "../udp_batch.h"
#include "../writer.h"
#include "pkt.h"

#define FAKE_FD 1000003
#define PORT 8285
#define MAX_ENTRIES 512
#define BASE_CAP (1 << 20)

static uint64_t violations;
static uint64_t seed;
static uint64_t round_index;
static const char *phase = "";

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...) {
  violations++;
  if (violations > 30) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "VIOLATION (seed %" PRIu64 ", round %" PRIu64 ", %s): ", seed, round_index, phase);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

/* ---- shared: one batch of entries (slices of `base`) and what happened to each ---------------- */

typedef struct {
  uint32_t off, len, dst;
  int valid;        /* the writer must take it (in range, sane length) */
  int times;        /* how often it reached the fake fd */
  int delivered;    /* the last attempt succeeded */
  uint32_t flow;    /* TCP flow id (0: none), for the order check */
  int order;        /* position of its write among all writes, -1 none */
  uint8_t orig[64]; /* the first bytes as generated (headers are patched by GRO) */
} entry;

static uint8_t *base;
static size_t base_len;
static entry ents[MAX_ENTRIES];
static uint32_t desc[3 * MAX_ENTRIES];
static uint8_t ok[MAX_ENTRIES];
static uint32_t nents;
static int write_seq;
static unsigned fail_calls; /* the next n syscalls fail */
static int fail_errno;

static int entry_at(const void *p) {
  const uint8_t *q = p;
  for (uint32_t i = 0; i < nents; i++)
    if (q >= base + ents[i].off && q < base + ents[i].off + ents[i].len) return (int)i;
  return -1;
}

static int fail_now(void) {
  if (!fail_calls) return 0;
  fail_calls--;
  errno = fail_errno;
  return 1;
}

/* ---- writer_udp_send --------------------------------------------------------------------------- */

static int last_delivered; /* datagrams leave in entry order */

/* One message of a sendmmsg/sendmsg: its datagrams are entries' slices, to the entries' address,
 * forming a valid GSO train; when the kernel (here) accepts it, they count as delivered. */
static void check_message(const struct msghdr *m, int accepted) {
  const struct sockaddr_in *to = m->msg_name;
  if (!to || m->msg_namelen != sizeof *to || to->sin_family != AF_INET || ntohs(to->sin_port) != PORT) {
    violation("datagram to a bad address");
    return;
  }
  uint16_t seg = 0;
  for (struct cmsghdr *cm = CMSG_FIRSTHDR((struct msghdr *)m); cm; cm = CMSG_NXTHDR((struct msghdr *)m, cm))
    if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_SEGMENT) memcpy(&seg, CMSG_DATA(cm), 2);
  size_t n = m->msg_iovlen, bytes = 0;
  if (n == 0 || (n > 1 && (seg == 0 || seg != m->msg_iov[0].iov_len)) || n > WRITER_GSO_MAX_SEGS)
    violation("message of %zu datagrams with UDP_SEGMENT %u", n, seg);
  for (size_t k = 0; k < n; k++) {
    size_t len = m->msg_iov[k].iov_len;
    bytes += len;
    if (k > 0 && (len == 0 || len > m->msg_iov[0].iov_len || m->msg_iov[k - 1].iov_len < m->msg_iov[0].iov_len))
      violation("GSO train with a %zu-byte datagram after %zu-byte ones", len, m->msg_iov[k - 1].iov_len);
    int e = -1;
    if (len) {
      e = entry_at(m->msg_iov[k].iov_base);
    } else { /* an empty datagram: the first valid empty entry at that address after the last one sent */
      for (uint32_t i = (uint32_t)(last_delivered + 1); i < nents && e < 0; i++)
        if (ents[i].valid && ents[i].len == 0 && base + ents[i].off == m->msg_iov[k].iov_base) e = (int)i;
    }
    if (e < 0 || m->msg_iov[k].iov_base != base + ents[e].off || len != ents[e].len || !ents[e].valid) {
      violation("datagram %zu of a message is not a valid entry's slice", k);
      continue;
    }
    if (ents[e].dst != ntohl(to->sin_addr.s_addr)) violation("entry %d sent to the wrong address", e);
    if (!accepted) continue;
    if (e <= last_delivered) violation("entry %d delivered after entry %d", e, last_delivered);
    last_delivered = e;
    ents[e].times++;
  }
  if (bytes > WRITER_GSO_MAX_BYTES && n > 1) violation("GSO train of %zu bytes", bytes);
}

static int jsio_sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags) {
  if (fd != FAKE_FD) return sendmmsg(fd, v, n, flags);
  if (fail_now()) { /* the first message is refused */
    check_message(&v[0].msg_hdr, 0);
    return -1;
  }
  unsigned take = n > 1 && chance(10) ? 1 + rnd(n - 1) : n; /* a partial send now and then */
  for (unsigned i = 0; i < take; i++) check_message(&v[i].msg_hdr, 1);
  return (int)take;
}

static ssize_t jsio_sendmsg(int fd, const struct msghdr *msg, int flags) {
  if (fd != FAKE_FD) return sendmsg(fd, msg, flags);
  if (msg->msg_iovlen != 1) violation("send_singly with %zu iovecs", (size_t)msg->msg_iovlen);
  int failed = fail_now();
  check_message(msg, !failed);
  return failed ? -1 : (ssize_t)msg->msg_iov[0].iov_len;
}

static uint64_t udp_entries, udp_sent, udp_trains_refused;

static void fuzz_udp_send(void) {
  phase = "writer_udp_send";
  static const uint32_t dsts[] = {0xc0a84d0bu, 0xc0a84d0cu, 0xc0a84d0du};
  nents = 1 + rnd(chance(20) ? MAX_ENTRIES : 80);
  base_len = 0;
  uint32_t len = 0, dst = dsts[0];
  for (uint32_t i = 0; i < nents; i++) {
    if (i == 0 || chance(15)) len = chance(5) ? rnd(70000) : chance(50) ? 1472 : 1 + rnd(1500);
    if (chance(20)) dst = dsts[rnd(3)];
    uint32_t l = chance(10) ? rnd(len + 1) : len; /* a shorter one ends a train */
    if (base_len + l + 16 > BASE_CAP) l = 0;
    entry *e = &ents[i];
    *e = (entry){.off = (uint32_t)base_len, .len = l, .dst = dst, .order = -1};
    base_len += l + rnd(8);
    if (chance(2)) e->off = (uint32_t)(BASE_CAP + rnd(1000)); /* outside the buffer */
    desc[3 * i] = e->off;
    desc[3 * i + 1] = e->len;
    desc[3 * i + 2] = e->dst;
  }
  if (base_len > BASE_CAP) base_len = BASE_CAP;
  fill_random(base, base_len);
  for (uint32_t i = 0; i < nents; i++) ents[i].valid = ents[i].len <= WRITER_GSO_MAX_BYTES && ents[i].off + (size_t)ents[i].len <= base_len;
  static const int errs[] = {EIO, EINVAL, EMSGSIZE, ENOBUFS, EAGAIN, EPERM};
  fail_calls = chance(20) ? rnd(4) : 0;
  fail_errno = errs[rnd(6)];
  int gso = chance(80);
  int faults = fail_calls > 0;
  last_delivered = -1;
  writer_stats st = {0};
  int rc = writer_udp_send(FAKE_FD, PORT, base, base_len, desc, nents, ok, gso, chance(50) ? 1 : 0, &st);
  udp_entries += nents;
  if (rc) udp_trains_refused++;
  for (uint32_t i = 0; i < nents; i++) {
    entry *e = &ents[i];
    if (e->times > 1) violation("entry %u delivered %d times", i, e->times);
    if (ok[i] != (e->times == 1)) violation("entry %u: ok %u but delivered %d times", i, ok[i], e->times);
    if (!faults && e->valid && e->times != 1) violation("valid entry %u not delivered (no faults injected)", i);
    udp_sent += ok[i];
  }
}

/* ---- writer_tun_write_vnet ---------------------------------------------------------------------- */

static uint64_t tun_entries, tun_written, tun_merged_writes, tun_merged_pkts, tun_merged6_writes;

static ssize_t jsio_write(int fd, const void *buf, size_t n) {
  if (fd != FAKE_FD) return write(fd, buf, n);
  violation("plain write() on a virtio TUN");
  return (ssize_t)n;
}

static void mark_written(int e, int good) {
  if (e < 0) {
    violation("TUN write of bytes that are no entry");
    return;
  }
  ents[e].times++;
  ents[e].delivered = good;
  ents[e].order = write_seq;
  if (ents[e].times > 1) violation("entry %d written twice", e);
}

static ssize_t jsio_writev(int fd, const struct iovec *iov, int iovcnt) {
  if (fd != FAKE_FD) return writev(fd, iov, iovcnt);
  write_seq++;
  int good = !fail_now();
  if (iovcnt < 2 || iov[0].iov_len != VNET_HDR_LEN) {
    violation("TUN write without a virtio header");
    return -1;
  }
  vnet_hdr h;
  vnet_parse(iov[0].iov_base, &h);
  size_t bytes = 0;
  for (int k = 0; k < iovcnt; k++) bytes += iov[k].iov_len;
  int e0 = entry_at(iov[1].iov_base);
  if (h.gso_type == VNET_GSO_NONE && h.flags == 0) {
    /* One packet, written as it is: exactly an entry's slice. */
    if (iovcnt != 2 || e0 < 0 || iov[1].iov_base != base + ents[e0].off || iov[1].iov_len != ents[e0].len)
      violation("plain TUN write is not one entry's slice");
    mark_written(e0, good);
    return good ? (ssize_t)bytes : -1;
  }
  /* A GRO super-packet: the first entry whole, then the payloads of the next ones. */
  static uint8_t merged[65536 + 64];
  for (int k = 1; k < iovcnt; k++) {
    int e = entry_at(iov[k].iov_base);
    if (k > 1 && (e < 0 || iov[k].iov_base + iov[k].iov_len != base + ents[e].off + ents[e].len))
      violation("GRO piece %d is not the tail of an entry", k);
    mark_written(e, good);
  }
  tun_merged_writes++;
  tun_merged_pkts += (uint64_t)(iovcnt - 1);
  size_t total;
  int v6 = ((const uint8_t *)iov[1].iov_base)[0] >> 4 == 6;
  if (v6) tun_merged6_writes++;
  const char *wrong = (v6 ? fuzz_gro_check6 : fuzz_gro_check)(iov[0].iov_base, iov, iovcnt, merged, &total);
  if (wrong) {
    violation("%s", wrong);
    return -1;
  }
  return good ? (ssize_t)bytes : -1;
}

/* Whether the mutated bytes b still name the TCP flow the generated bytes a did: version and
 * header length, protocol, addresses, ports (the first 64 bytes; len: the packet's). Garbage that
 * changes any of them (unmark clears the ports) makes the packet another flow, for GRO and for
 * the receiver alike, so the writer owes it no order relative to the generated flow. */
static int same_flow(const uint8_t *a, const uint8_t *b, size_t len) {
  if (a[0] >> 4 == 6) /* IPv6: version, next header, addresses, ports */
    return len >= 44 && b[0] >> 4 == 6 && a[6] == b[6] && memcmp(a + 8, b + 8, 36) == 0;
  if (len < 20 || a[0] != b[0] || a[9] != b[9] || memcmp(a + 12, b + 12, 8) != 0) return 0;
  size_t hl = (b[0] & 15u) * 4;
  return hl + 4 <= len && hl + 4 <= 64 && memcmp(a + hl, b + hl, 4) == 0;
}

/* A TCP train plus other packets, as a decap batch would hand them over (ascending slices). */
static void fuzz_tun_write(void) {
  phase = "writer_tun_write_vnet";
  nents = 0;
  base_len = 0;
  uint32_t trains = 1 + rnd(4);
  uint32_t seqs[4];
  pkt_spec flows[4];
  int v6 = chance(35); /* TCP/IPv6 trains (GSO_TCPV6 writes), IPv4 packets in between */
  for (uint32_t f = 0; f < trains; f++) {
    pkt_spec *s = &flows[f];
    memset(s, 0, sizeof *s);
    s->proto = 6;
    s->src = 0x0af40b00u | rnd(256);
    s->dst = 0x0af40100u | rnd(256);
    static const uint8_t net6[8] = {0xfd, 0, 0, 0, 0, 0, 0, 0x0b}, local6[8] = {0xfd, 0, 0, 0, 0, 0, 0, 1};
    memcpy(s->src6, net6, 8);
    memcpy(s->dst6, local6, 8);
    fill_random(s->src6 + 8, 8);
    fill_random(s->dst6 + 8, 8);
    if (f > 0 && chance(30)) memcpy(s->src6, flows[0].src6, 16); /* same addresses, other ports */
    s->ttl = 63;
    s->frag = IP_DF;
    s->marked = 1;
    s->sport = (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | rnd(256));
    s->dport = FUZZ_MARK_DPORT;
    s->tcp_flags = 0x10;
    s->tcp_opt = 12;
    s->ack = (uint32_t)rnd64();
    s->payload = chance(50) ? 1448 : 1 + rnd(1400);
    seqs[f] = (uint32_t)rnd64();
  }
  uint32_t n = 1 + rnd(chance(10) ? 400 : 100);
  for (uint32_t i = 0; i < n && nents < MAX_ENTRIES; i++) {
    uint32_t f = rnd(trains);
    pkt_spec s = flows[f];
    s.seq = seqs[f];
    if (chance(5)) s.payload = rnd((uint32_t)flows[f].payload + 1);
    if (chance(3)) s.tcp_flags = chance(50) ? 0x18 : (uint8_t)rnd64();
    if (chance(2)) s.seq += 1000;
    if (chance(2)) s.ttl = 62;
    if (chance(8)) { /* another kind of packet in between */
      s.proto = chance(50) ? 17 : 1;
      s.payload = rnd(1400);
      s.marked = chance(50);
    }
    if (base_len + 40 + 60 + s.payload + 64 > BASE_CAP) break;
    uint8_t *p = base + base_len;
    int pv6 = v6 && (s.proto == 6 || s.proto == 17);
    if (pv6 && chance(2)) s.tos = 4; /* another traffic class: not merged */
    size_t len = pv6 ? build_packet6(p, &s) : build_packet(p, &s);
    if (s.proto == 6 && s.payload) seqs[f] = s.seq + (uint32_t)s.payload;
    if (chance(2)) p[(pv6 ? 40 : (p[0] & 15) * 4) + 16] ^= 1; /* a bad TCP checksum: not merged */
    uint8_t generated[64];
    memcpy(generated, p, len < 64 ? len : 64);
    if (chance(2)) { /* garbage: written as it is */
      if (pv6) p[40] = p[42] = p[43] = 0;
      else unmark(p, len);
      fill_random(p + rnd((uint32_t)len), 1 + rnd(4));
    }
    size_t slice = chance(3) ? len + rnd(20) : len; /* trailing bytes: not a whole packet */
    entry *e = &ents[nents];
    *e = (entry){.off = (uint32_t)base_len, .len = (uint32_t)slice, .order = -1};
    e->flow = s.proto == 6 && same_flow(generated, p, len) ? f + 1 : 0;
    memcpy(e->orig, p, slice < 64 ? slice : 64);
    desc[2 * nents] = e->off;
    desc[2 * nents + 1] = e->len;
    nents++;
    base_len += slice + 8 + rnd(4); /* the 8-byte record header of a UDP batch */
  }
  int disorder = chance(5) && nents > 2;
  if (disorder) { /* overlapping or descending slices: no merging, everything still written */
    uint32_t a = rnd(nents), b = rnd(nents);
    entry t = ents[a];
    ents[a] = ents[b];
    ents[b] = t;
    for (uint32_t i = 0; i < nents; i++) {
      desc[2 * i] = ents[i].off;
      desc[2 * i + 1] = ents[i].len;
    }
  }
  if (chance(3) && nents) desc[2 * (nents - 1) + 1] = ents[nents - 1].len = 0; /* an empty entry */
  for (uint32_t i = 0; i < nents; i++) ents[i].valid = ents[i].len > 0 && ents[i].off + (size_t)ents[i].len <= base_len;
  fail_calls = chance(10) ? rnd(3) : 0;
  fail_errno = EIO;
  write_seq = 0;
  static gro_batch g;
  static int ready;
  if (!ready) {
    gro_init(&g);
    ready = 1;
  }
  writer_stats st = {0};
  uint32_t written = writer_tun_write_vnet(FAKE_FD, base, base_len, desc, nents, ok, chance(90) ? &g : NULL, &st);
  uint32_t good = 0;
  tun_entries += nents;
  for (uint32_t i = 0; i < nents; i++) {
    entry *e = &ents[i];
    if (e->valid && e->times != 1) violation("entry %u written %d times", i, e->times);
    if (!e->valid && e->times) violation("invalid entry %u was written", i);
    if (ok[i] != (uint8_t)e->delivered) violation("entry %u: ok %u, write %s", i, ok[i], e->delivered ? "succeeded" : "failed");
    good += ok[i];
    /* Per flow, entries are written in their order. */
    for (uint32_t j = 0; j < i; j++)
      if (e->flow && ents[j].flow == e->flow && e->order >= 0 && ents[j].order > e->order && !disorder)
        violation("entry %u of flow %u written before entry %u", i, e->flow, j);
  }
  if (written != good) violation("returned %u written, %u entries ok", written, good);
  tun_written += good;
}

/* ---- reader: TUN reads with a virtio header ------------------------------------------------------ */

#define FAKE_TUN_FD 1000004
#define FAKE_UDP_FD 1000005

typedef struct {
  uint32_t nrec;      /* records this read should become (0: dropped) */
  int drop;           /* dropped: the reason */
  uint32_t seg_max;   /* split: the largest segment */
  int split;          /* split into segments (1) or one record (0) */
  size_t len;         /* one record: its length */
  uint8_t head[64];   /* one record: its first bytes (csum field may change) */
  uint32_t csum_at;   /* the checksum field the reader may complete, or ~0 */
  int v6;             /* an IPv6 read */
} read_expect;

#define MAX_READS 64
static read_expect rexp[MAX_READS];
static uint8_t rqueue[MAX_READS][VNET_HDR_LEN + 65535];
static size_t rqueue_len[MAX_READS];
static uint32_t nreads, rqueue_next, rexp_next, rexp_recs; /* the read being matched, records of it seen */
static uint64_t reads_total, records_total, split_reads, dropped_reads, reads6_total, split6_reads;
static batch_reader *R;

/* The TUN side of the seam: hands out the queued reads, then EAGAIN. */
static ssize_t jsio_read(int fd, void *buf, size_t cap) {
  if (fd != FAKE_TUN_FD) return read(fd, buf, cap);
  if (rqueue_next >= nreads) {
    errno = EAGAIN;
    return -1;
  }
  size_t n = rqueue_len[rqueue_next];
  if (n > cap) violation("read buffer of %zu bytes for a %zu-byte read", cap, n);
  memcpy(buf, rqueue[rqueue_next++], n < cap ? n : cap);
  return (ssize_t)(n < cap ? n : cap);
}

static void check_tun_record(const uint8_t *p, size_t len) {
  while (rexp_next < nreads && rexp[rexp_next].nrec == 0) rexp_next++;
  if (rexp_next >= nreads) {
    violation("a record no read accounts for");
    return;
  }
  read_expect *x = &rexp[rexp_next];
  if (x->split && x->v6) {
    if (len < 40 || p[0] >> 4 != 6 || 40u + rd16(p + 4) != len || len > x->seg_max)
      violation("TSO6/USO6 segment of %zu bytes is not a valid IPv6 packet", len);
    else if (!fuzz_l4_valid6(p, len)) violation("TSO6/USO6 segment with a bad L4 checksum");
    else if (fuzz_is_marked6(p, len) && !fuzz_oracle_ok6(p, len)) violation("TSO6 segment with payload out of place");
  } else if (x->split) {
    if (len < 20 || rd16(p + 2) != len || fuzz_sum(p, (p[0] & 15u) * 4, 0) != 0xffff || len > x->seg_max)
      violation("TSO segment of %zu bytes is not a valid packet", len);
    else if (!fuzz_l4_valid(p, len)) violation("TSO segment with a bad L4 checksum");
    else if (fuzz_is_marked(p, len) && !fuzz_oracle_ok(p, len)) violation("TSO segment with payload out of place");
  } else {
    if (len != x->len) violation("record of %zu bytes for a %zu-byte packet", len, x->len);
    for (size_t i = 0; i < len && i < 64; i++)
      if (p[i] != x->head[i] && i != x->csum_at && i != x->csum_at + 1) {
        violation("record byte %zu differs from the read", i);
        break;
      }
  }
  records_total++;
  if (++rexp_recs == x->nrec) {
    rexp_next++;
    rexp_recs = 0;
  }
}

static int deliver_tun(void *ctx, uint8_t *data, size_t len, uint32_t count) {
  (void)ctx;
  size_t off = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (off + 2 > len) {
      violation("TUN batch shorter than its %u records", count);
      break;
    }
    size_t l = (size_t)data[off] << 8 | data[off + 1];
    if (off + 2 + l > len) {
      violation("TUN record runs past the batch");
      break;
    }
    check_tun_record(data + off + 2, l);
    off += 2 + l;
  }
  if (off != len) violation("TUN batch of %zu bytes, records end at %zu", len, off);
  free(data);
  reader_batch_done(R);
  return 0;
}

static void expect_drop(read_expect *x, int reason) {
  x->nrec = 0;
  x->drop = reason;
}

/* An IPv6 read (reader with IPv6 on): TSO6 / USO6 super-packets, NEEDS_CSUM packets and plain
 * ones, with virtio headers that often do not add up (gso_size 0, hdr_len past the packet,
 * csum_start/offset out of range, TCPV4 on IPv6, the type of the other protocol, an extension
 * header before TCP, a TCP data offset below 5, cut-short reads). The reference: ipv6_validate
 * and gso_make_plan6 (judged against the model by the native harness), the split checked here. */
static void expect_read6(const uint8_t *buf, size_t n, read_expect *x);
static size_t gen_tun_read6(uint8_t *buf, read_expect *x) {
  uint8_t *p = buf + VNET_HDR_LEN;
  pkt_spec s;
  memset(&s, 0, sizeof s);
  s.proto = chance(70) ? 6 : 17;
  static const uint8_t src[8] = {0xfd, 0, 0, 0, 0, 0, 0, 1}, dst[8] = {0xfd, 0, 0, 0, 0, 0, 0, 0x0b};
  memcpy(s.src6, src, 8);
  memcpy(s.dst6, dst, 8);
  fill_random(s.src6 + 8, 8);
  fill_random(s.dst6 + 8, 8);
  s.ttl = 64;
  s.marked = 1;
  s.sport = (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | rnd(256));
  s.dport = FUZZ_MARK_DPORT;
  s.seq = (uint32_t)rnd64();
  s.tcp_flags = 0x18;
  s.tcp_opt = chance(50) ? 12 : 0;
  s.csum_mode = 1;
  uint32_t k = rnd(100);
  int gso = k < 55;
  static const uint16_t sizes[] = {1, 100, 536, 1400, 1440, 9000, 65535};
  uint16_t gs = sizes[rnd(7)];
  s.payload = gso ? (gs < 100 ? rnd(3000) : rnd(65000)) : rnd(1500);
  size_t len = build_packet6(p, &s);
  vnet_hdr h = {0};
  if (gso) {
    h = (vnet_hdr){.flags = VNET_F_NEEDS_CSUM, .gso_type = s.proto == 6 ? VNET_GSO_TCPV6 : VNET_GSO_UDP_L4,
                   .hdr_len = (uint16_t)(40 + (s.proto == 6 ? 20 + s.tcp_opt : 8)), .gso_size = gs, .csum_start = 40,
                   .csum_offset = s.proto == 6 ? 16 : 6};
    if (chance(10)) wr16(p + 4, chance(50) ? 0 : (uint16_t)rnd64()); /* not trusted */
  } else if (chance(60)) {
    h = (vnet_hdr){.flags = VNET_F_NEEDS_CSUM, .csum_start = 40, .csum_offset = s.proto == 6 ? 16 : 6};
  } else {
    s.csum_mode = 0;
    len = build_packet6(p, &s);
  }
  int keep_hdr = 0;
  switch (chance(35) ? rnd(9) : 99) {
    case 0: h.gso_size = 0; break;
    case 1: h.hdr_len = (uint16_t)(len + 1 + rnd(1000)); break;
    case 2: h.csum_start = (uint16_t)rnd(100); h.csum_offset = (uint16_t)rnd(70000); break;
    case 3: h.gso_type = VNET_GSO_TCPV4; break;
    case 4: h.gso_type = s.proto == 6 ? VNET_GSO_UDP_L4 : VNET_GSO_TCPV6; break;
    case 5: p[6] = 0; break;
    case 6: if (len > 52) p[52] = (uint8_t)(rnd(5) << 4); break;
    case 7: len = rnd((uint32_t)len + 1); break;
    case 8: fill_random(buf, VNET_HDR_LEN); keep_hdr = 1; break;
    default: break;
  }
  /* Only a split is judged by checksum and oracle, and a split recomputes both: no unmarking. */
  if (!keep_hdr) vnet_write(buf, &h);
  size_t n = VNET_HDR_LEN + len;
  expect_read6(buf, n, x);
  return n;
}

/* What a reader with IPv6 on makes of a read of n bytes whose packet has version 6. */
static void expect_read6(const uint8_t *buf, size_t n, read_expect *x) {
  const uint8_t *p = buf + VNET_HDR_LEN;
  vnet_hdr h;
  memset(x, 0, sizeof *x);
  x->csum_at = ~0u;
  x->v6 = 1;
  vnet_parse(buf, &h);
  size_t plen = n - VNET_HDR_LEN;
  int g = (h.gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE;
  drop_reason v = plen > 0 && p[0] >> 4 == 6 ? ipv6_validate(p, plen, g) : DROP_TRUNCATED;
  if (v != DROP_NONE) {
    expect_drop(x, v);
    return;
  }
  gso_plan plan;
  if (g) {
    if (gso_make_plan6(p, plen, h.gso_type, h.gso_size, &plan) < 0) {
      expect_drop(x, DROP_MALFORMED);
      return;
    }
    x->split = 1;
    x->nrec = plan.nsegs;
    x->seg_max = plan.seg_len;
    return;
  }
  size_t tot = 40 + (size_t)rd16(p + 4);
  if ((h.flags & VNET_F_NEEDS_CSUM) &&
      ((size_t)h.csum_start + h.csum_offset + 2 > tot || (h.csum_start & 1) || h.csum_start < 40)) {
    expect_drop(x, DROP_MALFORMED);
    return;
  }
  x->nrec = 1;
  x->len = tot;
  memcpy(x->head, p, tot < 64 ? tot : 64);
  if (h.flags & VNET_F_NEEDS_CSUM) x->csum_at = (uint32_t)h.csum_start + h.csum_offset;
  return;
}

static size_t gen_tun_read(uint8_t *buf, read_expect *x, int ipv6) {
  uint8_t *p = buf + VNET_HDR_LEN;
  vnet_hdr h = {0};
  pkt_spec s;
  memset(&s, 0, sizeof s);
  s.proto = chance(70) ? 6 : 17;
  s.src = 0x0af40100u | rnd(256);
  s.dst = 0x0af40b00u | rnd(256);
  s.ttl = 64;
  s.frag = IP_DF;
  s.marked = 1;
  s.sport = (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | rnd(256));
  s.dport = FUZZ_MARK_DPORT;
  s.seq = (uint32_t)rnd64();
  s.tcp_flags = 0x18;
  s.tcp_opt = chance(50) ? 12 : 0;
  s.ip_opt = chance(95) ? 0 : 4 * rnd(6);
  s.csum_mode = 1;
  uint32_t k = rnd(100);
  int gso = k < 50;
  static const uint16_t sizes[] = {1, 100, 536, 1400, 1448, 9000, 65535};
  uint16_t gs = sizes[rnd(7)];
  if (s.proto == 17) {
    uint32_t ix = rnd(8);
    gs = FUZZ_UDP_SEG[ix];
    s.sport = (uint16_t)(FUZZ_MARK_SPORT_HI << 8 | (rnd(32) << 3) | ix);
  }
  s.id = (uint16_t)rnd(100);
  s.payload = gso ? (gs < 100 ? rnd(3000) : rnd(64000)) : rnd(1500);
  size_t len = build_packet(p, &s);
  if (gso) {
    h = (vnet_hdr){.flags = VNET_F_NEEDS_CSUM, .gso_type = s.proto == 6 ? VNET_GSO_TCPV4 : VNET_GSO_UDP_L4,
                   .gso_size = gs, .csum_start = (uint16_t)(20 + s.ip_opt), .csum_offset = s.proto == 6 ? 16 : 6};
    if (chance(5)) h.gso_size = 0;
    if (chance(5)) wr16(p + 2, 0); /* the total length of a super-packet is not trusted */
  } else if (chance(60)) {
    h = (vnet_hdr){.flags = VNET_F_NEEDS_CSUM, .csum_start = (uint16_t)(20 + s.ip_opt), .csum_offset = s.proto == 6 ? 16 : 6};
  } else {
    s.csum_mode = 0;
    len = build_packet(p, &s);
  }
  if (k >= 90) { /* garbage in the header or the packet: split if it still can be, else dropped */
    unmark(p, len);
    fill_random(p + rnd((uint32_t)len), 1 + rnd(8));
    if (chance(30)) len = rnd((uint32_t)len + 1);
    if (chance(30)) fill_random(buf, VNET_HDR_LEN);
    else vnet_write(buf, &h);
  } else {
    vnet_write(buf, &h);
  }
  size_t n = VNET_HDR_LEN + len;
  if (chance(2)) n = 1 + rnd(VNET_HDR_LEN - 1); /* shorter than the virtio header (a read never returns 0) */

  /* What the reader should make of it: the packets it becomes, or one drop with its reason
   * (gso_make_plan and ipv4_validate are fuzzed against the reference model of the native harness). */
  memset(x, 0, sizeof *x);
  x->csum_at = ~0u;
  if (n < VNET_HDR_LEN) {
    expect_drop(x, DROP_TRUNCATED);
    return n;
  }
  if (ipv6 && n > VNET_HDR_LEN && p[0] >> 4 == 6) { /* garbage made it an IPv6 read */
    expect_read6(buf, n, x);
    return n;
  }
  vnet_parse(buf, &h);
  size_t plen = n - VNET_HDR_LEN;
  gso_plan plan;
  int g = (h.gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE;
  drop_reason v = ipv4_validate(p, plen, 0, g);
  if (v != DROP_NONE) {
    expect_drop(x, v);
    return n;
  }
  if (g) {
    if (gso_make_plan(p, plen, h.gso_type, h.gso_size, &plan) < 0) {
      expect_drop(x, DROP_MALFORMED);
      return n;
    }
    x->split = 1;
    x->nrec = plan.nsegs;
    x->seg_max = plan.seg_len;
    return n;
  }
  size_t tot = rd16(p + 2);
  unsigned hl = (p[0] & 15u) * 4;
  if ((h.flags & VNET_F_NEEDS_CSUM) &&
      ((size_t)h.csum_start + h.csum_offset + 2 > tot || (h.csum_start & 1) || h.csum_start < hl)) {
    expect_drop(x, DROP_MALFORMED);
    return n;
  }
  x->nrec = 1;
  x->len = tot;
  memcpy(x->head, p, tot < 64 ? tot : 64);
  /* Checksum completion rewrites only the two bytes of the checksum field. */
  if (h.flags & VNET_F_NEEDS_CSUM) x->csum_at = (uint32_t)h.csum_start + h.csum_offset;
  return n;
}

static void fuzz_tun_reader(int v6) {
  phase = v6 ? "TUN reader (IPv6 on)" : "TUN reader";
  nreads = 1 + rnd(MAX_READS);
  rqueue_next = rexp_next = rexp_recs = 0;
  uint64_t want[DROP_COUNT] = {0};
  reader_stats before;
  reader_get_stats(R, &before);
  for (uint32_t i = 0; i < nreads; i++) {
    rqueue_len[i] = v6 && chance(60) ? gen_tun_read6(rqueue[i], &rexp[i]) : gen_tun_read(rqueue[i], &rexp[i], v6);
    reads6_total += rexp[i].v6;
    split6_reads += rexp[i].v6 && rexp[i].split;
    reads_total++;
    split_reads += rexp[i].split != 0;
    if (rexp[i].nrec == 0) {
      want[rexp[i].drop]++;
      dropped_reads++;
    }
  }
  while (rqueue_next < nreads)
    if (reader_step(R) < 0) violation("the TUN reader stopped");
  reader_stats after;
  reader_get_stats(R, &after);
  for (int r = 0; r < DROP_COUNT; r++)
    if (after.drops[r] - before.drops[r] != want[r])
      violation("TUN reader counted %" PRIu64 " %s drops, expected %" PRIu64, after.drops[r] - before.drops[r],
                drop_reason_names[r], want[r]);
  while (rexp_next < nreads && rexp[rexp_next].nrec == 0) rexp_next++;
  if (rexp_next != nreads) violation("%u of %u reads never became records", nreads - rexp_next, nreads);
}

/* ---- reader: UDP messages (GRO split) ------------------------------------------------------------ */

typedef struct {
  uint32_t src_be;
  uint8_t src6[16]; /* the IPv6 socket's records: 16-byte sources (zeros: no IPv6 sender) */
  size_t len, seg;
  uint8_t flags;
  const uint8_t *data;
  uint32_t pieces, seen;
} msg_expect;

static msg_expect mexp[UDP_BATCH_MAX];
static uint32_t nmsgs, mexp_next;
static int udp_pending; /* a batch waits for the next recvmmsg */
static int udp6_fd = -1; /* an unbound AF_INET6 socket: its family makes the reader an IPv6 one; never used for I/O */
static uint64_t udp6_msgs_total, udp6_gro_msgs;
static uint64_t udp_msgs_total, udp_records_total;

static int deliver_udp(void *ctx, uint8_t *data, size_t len, uint32_t count) {
  (void)ctx;
  size_t off = 0;
  int v6 = ctx != NULL;
  size_t hdr = v6 ? UDP_REC_HDR6 : UDP_REC_HDR, a = hdr - 4;
  for (uint32_t i = 0; i < count; i++) {
    if (off + hdr > len) {
      violation("UDP batch shorter than its %u records", count);
      break;
    }
    uint32_t src = 0;
    if (!v6) memcpy(&src, data + off, 4);
    size_t l = (size_t)data[off + a] << 8 | data[off + a + 1];
    uint8_t flags = data[off + a + 2];
    if (off + hdr + l > len) {
      violation("UDP record runs past the batch");
      break;
    }
    while (mexp_next < nmsgs && mexp[mexp_next].seen == mexp[mexp_next].pieces) mexp_next++;
    if (mexp_next >= nmsgs) {
      violation("a UDP record no message accounts for");
      break;
    }
    msg_expect *x = &mexp[mexp_next];
    size_t at = (size_t)x->seen * x->seg;
    size_t want = x->pieces == 1 ? x->len : (x->len - at < x->seg ? x->len - at : x->seg);
    if ((v6 ? memcmp(data + off, x->src6, 16) != 0 : src != x->src_be) || l != want ||
        flags != (x->pieces == 1 ? x->flags : 0) || memcmp(data + off + hdr, x->data + at, l) != 0)
      violation("UDP record %u of a message: %zu bytes flags %u (want %zu, flags %u)", x->seen, l, flags, want, x->flags);
    x->seen++;
    udp_records_total++;
    off += hdr + l;
  }
  if (off != len) violation("UDP batch of %zu bytes, records end at %zu", len, off);
  free(data);
  reader_batch_done(R);
  return 0;
}

/* The UDP side of the seam: one batch of generated messages written into the reader's own
 * buffers (as the kernel would), then EAGAIN. */
static int jsio_recvmmsg(int fd, struct mmsghdr *v, unsigned int vlen, int flags, struct timespec *timeout) {
  (void)flags;
  (void)timeout;
  if ((fd != FAKE_UDP_FD && fd != udp6_fd) || !udp_pending) {
    errno = EAGAIN;
    return -1;
  }
  int v6 = fd == udp6_fd;
  udp_pending = 0;
  if (nmsgs > vlen) violation("recvmmsg for %u messages, %u queued", vlen, nmsgs);
  for (uint32_t i = 0; i < nmsgs && i < vlen; i++) {
    struct msghdr *mh = &v[i].msg_hdr;
    uint8_t *slot = mh->msg_iov[0].iov_base;
    size_t cap = mh->msg_iov[0].iov_len;
    size_t len = chance(70) ? rnd(1500) : rnd((uint32_t)cap + 1);
    fill_random(slot, len);
    struct sockaddr_in *from = mh->msg_name;
    struct sockaddr_in6 *from6 = mh->msg_name;
    if (v6) {
      *from6 = (struct sockaddr_in6){.sin6_family = AF_INET6};
      from6->sin6_addr.s6_addr[0] = 0xfd;
      from6->sin6_addr.s6_addr[1] = 0x77;
      from6->sin6_addr.s6_addr[15] = (uint8_t)rnd(256);
      mh->msg_namelen = sizeof *from6;
      if (chance(3)) from6->sin6_family = AF_INET;
    } else {
      *from = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr = {htonl(0xc0a84d00u | rnd(256))}};
      mh->msg_namelen = sizeof *from;
      if (chance(3)) from->sin_family = AF_INET6;
    }
    if (chance(3)) mh->msg_namelen = 0;
    size_t ctl_cap = mh->msg_controllen;
    mh->msg_controllen = 0;
    size_t seg = 0;
    if (chance(40) && ctl_cap >= CMSG_SPACE(sizeof(int))) {
      seg = chance(10) ? rnd(70000) : 1 + rnd(1500);
      memset(mh->msg_control, 0, ctl_cap);
      mh->msg_controllen = CMSG_SPACE(sizeof(int));
      struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_GRO;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      int val = chance(5) ? -(int)rnd(100) : (int)seg;
      memcpy(CMSG_DATA(cm), &val, sizeof val);
      seg = val > 0 ? (size_t)val : 0;
    }
    mh->msg_flags = chance(3) ? MSG_TRUNC : 0;
    v[i].msg_len = (unsigned)len;
    /* The reference: one record per GRO segment; a truncated message is one record, flagged. */
    msg_expect *x = &mexp[i];
    x->src_be = (!v6 && mh->msg_namelen >= sizeof(struct sockaddr_in) && from->sin_family == AF_INET) ? from->sin_addr.s_addr : 0;
    memset(x->src6, 0, 16);
    if (v6 && mh->msg_namelen >= sizeof(struct sockaddr_in6) && from6->sin6_family == AF_INET6)
      memcpy(x->src6, &from6->sin6_addr, 16);
    udp6_msgs_total += v6;
    udp6_gro_msgs += v6 && seg > 0 && seg < len && !(mh->msg_flags & MSG_TRUNC);
    x->len = len;
    x->flags = mh->msg_flags & MSG_TRUNC ? UDP_REC_TRUNC : 0;
    if (x->flags) seg = 0;
    if (seg == 0 || seg >= len) seg = len;
    x->seg = seg;
    x->pieces = seg == 0 ? 1 : (uint32_t)((len + seg - 1) / seg);
    x->data = slot;
    x->seen = 0;
    udp_msgs_total++;
  }
  return (int)(nmsgs < vlen ? nmsgs : vlen);
}

static void fuzz_udp_reader(int v6) {
  phase = v6 ? "UDP reader (IPv6 socket)" : "UDP reader";
  nmsgs = 1 + rnd(UDP_BATCH_MAX);
  mexp_next = 0;
  udp_pending = 1;
  if (reader_step(R) < 0) violation("the UDP reader stopped");
  while (mexp_next < nmsgs && mexp[mexp_next].seen == mexp[mexp_next].pieces) mexp_next++;
  if (mexp_next != nmsgs) violation("%u of %u messages not (fully) delivered", nmsgs - mexp_next, nmsgs);
}

/* ---- main ---------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
  uint64_t count = 1000000;
  seed = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--count") && i + 1 < argc) count = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
    else {
      fprintf(stderr, "usage: jsio-fuzz [--count N] [--seed S]   N inputs (default 1,000,000)\n");
      return 2;
    }
  }
  rng_seed(seed);
  base = malloc(BASE_CAP + 4096);
  felt_sys.read = jsio_read;
  felt_sys.write = jsio_write;
  felt_sys.writev = jsio_writev;
  felt_sys.sendmsg = jsio_sendmsg;
  felt_sys.sendmmsg = jsio_sendmmsg;
  felt_sys.recvmmsg = jsio_recvmmsg;
  batch_reader *tun = tun_reader_create(FAKE_TUN_FD, 1, deliver_tun, NULL);
  batch_reader *tun6 = tun_reader_create6(FAKE_TUN_FD, 1, 1, deliver_tun, NULL);
  batch_reader *udp = udp_reader_create(FAKE_UDP_FD, deliver_udp, NULL);
  udp6_fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  static int six = 1; /* deliver_udp's ctx: records carry 16-byte sources */
  batch_reader *udp6 = udp6_fd >= 0 ? udp_reader_create(udp6_fd, deliver_udp, &six) : NULL;
  if (!base || !tun || !tun6 || !udp || !udp6) return 2;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (round_index = 0; udp_entries + tun_entries + reads_total + udp_msgs_total < count; round_index++) {
    switch (rnd(4)) {
      case 0: fuzz_udp_send(); break;
      case 1: fuzz_tun_write(); break;
      case 2:
        if (chance(40)) {
          R = tun6;
          fuzz_tun_reader(1);
        } else {
          R = tun;
          fuzz_tun_reader(0);
        }
        break;
      default:
        if (chance(40)) {
          R = udp6;
          fuzz_udp_reader(1);
        } else {
          R = udp;
          fuzz_udp_reader(0);
        }
        break;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("js engine C I/O fuzz: %" PRIu64 " inputs in %" PRIu64 " rounds, %.1f s\n",
         udp_entries + tun_entries + reads_total + udp_msgs_total, round_index, secs);
  printf("  writer_udp_send: %" PRIu64 " entries, %" PRIu64 " sent, %" PRIu64 " refused GSO trains resent singly\n",
         udp_entries, udp_sent, udp_trains_refused);
  printf("  writer_tun_write_vnet: %" PRIu64 " entries, %" PRIu64 " written, %" PRIu64 " in %" PRIu64
         " GRO super-packets (%" PRIu64 " TCP/IPv6)\n",
         tun_entries, tun_written, tun_merged_pkts, tun_merged_writes, tun_merged6_writes);
  printf("  reader TUN: %" PRIu64 " reads (%" PRIu64 " split, %" PRIu64 " dropped; IPv6 %" PRIu64 ", %" PRIu64
         " of them split) -> %" PRIu64 " records\n",
         reads_total, split_reads, dropped_reads, reads6_total, split6_reads, records_total);
  printf("  reader UDP: %" PRIu64 " messages (IPv6 socket %" PRIu64 ", %" PRIu64 " of them UDP_GRO trains) -> %" PRIu64
         " records\n", udp_msgs_total, udp6_msgs_total, udp6_gro_msgs, udp_records_total);
  printf("%s: %" PRIu64 " violations\n", violations ? "FAIL" : "OK", violations);
  reader_free(tun);
  reader_free(tun6);
  reader_free(udp);
  reader_free(udp6);
  close(udp6_fd);
  free(base);
  return violations ? 1 : 0;
}
