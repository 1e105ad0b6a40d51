#include "writer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "gso.h"
#include "ipv4.h"
#include "ipv6.h"
#include "sys.h"
#include "udp.h"

typedef union {
  char buf[CMSG_SPACE(sizeof(uint16_t))];
  struct cmsghdr align;
} seg_ctl;

/* Scratch for one call: one message per train, one iovec per datagram. */
typedef struct {
  struct mmsghdr *msgs;
  struct iovec *iov;
  struct sockaddr_in6 *to; /* room for either family */
  seg_ctl *ctl;
  uint32_t *first; /* entry index of each message's first datagram */
  uint32_t *nsegs;
} send_scratch;

static int valid_entry(size_t base_len, uint32_t off, uint32_t len, uint32_t max_len) {
  return len <= max_len && (size_t)off <= base_len && (size_t)len <= base_len - off;
}

/* Sends the datagrams of one refused train one by one; marks each outcome. */
static void send_singly(int fd, const struct msghdr *train, const struct iovec *iov, uint32_t n, uint8_t *ok,
                        writer_stats *st) {
  for (uint32_t k = 0; k < n; k++) {
    struct msghdr mh = {.msg_name = train->msg_name, .msg_namelen = train->msg_namelen,
                        .msg_iov = (struct iovec *)&iov[k], .msg_iovlen = 1};
    ssize_t r;
    do {
      st->syscalls++;
      r = felt_sys.sendmsg(fd, &mh, 0);
    } while (r < 0 && errno == EINTR);
    ok[k] = r >= 0;
  }
}

/* Fills *to with entry address `dst`: an IPv4 address, or with addrs6 an index into it (16 bytes
 * each). Returns the address length, or 0 for an index outside addrs6. */
static socklen_t entry_addr(struct sockaddr_in6 *to, uint32_t dst, uint16_t port, const uint8_t *addrs6,
                            size_t naddrs6) {
  if (!addrs6) {
    struct sockaddr_in *sin = (struct sockaddr_in *)to;
    *sin = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = {.s_addr = htonl(dst)}};
    return sizeof *sin;
  }
  if (dst >= naddrs6) return 0;
  *to = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = htons(port)};
  memcpy(&to->sin6_addr, addrs6 + (size_t)dst * 16, 16);
  return sizeof *to;
}

static int udp_send(int fd, uint16_t port, const uint8_t *base, size_t base_len, const uint32_t *desc,
                    uint32_t count, uint8_t *ok, int gso, int wait_ms, const uint8_t *addrs6, size_t naddrs6,
                    writer_stats *st) {
  memset(ok, 0, count);
  if (count == 0) return 0;
  send_scratch s;
  void *mem = calloc(count, sizeof *s.msgs + sizeof *s.iov + sizeof *s.to + sizeof *s.ctl + 2 * sizeof(uint32_t));
  if (!mem) return 0; /* every datagram counts as not sent */
  s.msgs = mem;
  s.iov = (struct iovec *)(s.msgs + count);
  s.ctl = (seg_ctl *)(s.iov + count); /* 8-byte aligned members first: sockaddr_in6 is 28 bytes */
  s.to = (struct sockaddr_in6 *)(s.ctl + count);
  s.first = (uint32_t *)(s.to + count);
  s.nsegs = s.first + count;

  /* Group the entries into messages: a GSO train is a run to one address of equal-size datagrams,
   * the last one possibly shorter, within the kernel's segment and size limits. */
  uint32_t nmsg = 0;
  for (uint32_t i = 0; i < count;) {
    uint32_t off = desc[3 * i], len = desc[3 * i + 1], dst = desc[3 * i + 2];
    socklen_t to_len = entry_addr(&s.to[nmsg], dst, port, addrs6, naddrs6);
    if (!to_len || !valid_entry(base_len, off, len, WRITER_GSO_MAX_BYTES)) {
      i++;
      continue;
    }
    s.iov[i] = (struct iovec){(void *)(base + off), len};
    uint32_t j = i + 1;
    size_t bytes = len;
    if (gso && len > 0) {
      while (j < count && j - i < WRITER_GSO_MAX_SEGS) {
        uint32_t o2 = desc[3 * j], l2 = desc[3 * j + 1];
        if (desc[3 * j + 2] != dst || l2 == 0 || l2 > len || bytes + l2 > WRITER_GSO_MAX_BYTES ||
            !valid_entry(base_len, o2, l2, WRITER_GSO_MAX_BYTES))
          break;
        s.iov[j] = (struct iovec){(void *)(base + o2), l2};
        bytes += l2;
        j++;
        if (l2 < len) break; /* a shorter datagram ends the train */
      }
    }
    struct msghdr *mh = &s.msgs[nmsg].msg_hdr;
    *mh = (struct msghdr){.msg_name = &s.to[nmsg], .msg_namelen = to_len, .msg_iov = &s.iov[i], .msg_iovlen = j - i};
    if (j - i > 1) {
      mh->msg_control = s.ctl[nmsg].buf;
      mh->msg_controllen = sizeof s.ctl[nmsg].buf;
      struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
      cm->cmsg_level = SOL_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t seg = (uint16_t)len;
      memcpy(CMSG_DATA(cm), &seg, sizeof seg);
    }
    s.first[nmsg] = i;
    s.nsegs[nmsg] = j - i;
    nmsg++;
    i = j;
  }

  int gso_errno = 0, waited = 0;
  for (uint32_t m = 0; m < nmsg;) {
    st->syscalls++;
    int n = felt_sys.sendmmsg(fd, s.msgs + m, nmsg - m, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        /* Send buffer full: wait for room once per call, then give up on the rest. */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (!waited && wait_ms > 0 && poll(&p, 1, wait_ms) > 0) {
          waited = 1;
          continue;
        }
        break;
      }
      if (s.nsegs[m] > 1) {
        /* The kernel refused the train as such (e.g. no GSO on the route): send it plainly. */
        gso_errno = errno;
        send_singly(fd, &s.msgs[m].msg_hdr, &s.iov[s.first[m]], s.nsegs[m], ok + s.first[m], st);
      }
      m++; /* a single datagram refused: it stays not-ok */
      continue;
    }
    for (int k = 0; k < n; k++) {
      uint32_t mi = m + (uint32_t)k;
      memset(ok + s.first[mi], 1, s.nsegs[mi]);
      if (s.nsegs[mi] > 1) {
        st->gso_sends++;
        st->gso_segs += s.nsegs[mi];
      }
    }
    m += (uint32_t)n;
  }
  free(mem);
  return gso_errno;
}

int writer_udp_send(int fd, uint16_t port, const uint8_t *base, size_t base_len, const uint32_t *desc,
                    uint32_t count, uint8_t *ok, int gso, int wait_ms, writer_stats *st) {
  return udp_send(fd, port, base, base_len, desc, count, ok, gso, wait_ms, NULL, 0, st);
}

int writer_udp_send6(int fd, uint16_t port, const uint8_t *base, size_t base_len, const uint32_t *desc,
                     uint32_t count, uint8_t *ok, int gso, int wait_ms, const uint8_t *addrs, size_t naddrs,
                     writer_stats *st) {
  return udp_send(fd, port, base, base_len, desc, count, ok, gso, wait_ms, addrs, naddrs, st);
}

uint32_t writer_tun_write(int fd, const uint8_t *base, size_t base_len, const uint32_t *desc, uint32_t count,
                          uint8_t *ok, writer_stats *st) {
  uint32_t written = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint32_t off = desc[2 * i], len = desc[2 * i + 1];
    ok[i] = 0;
    if (len == 0 || !valid_entry(base_len, off, len, 65535)) continue;
    ssize_t n;
    do {
      st->syscalls++;
      n = felt_sys.write(fd, base + off, len);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)len) {
      ok[i] = 1;
      written++;
    }
  }
  return written;
}

/* ---- TUN writes with a virtio header ---- */

typedef struct {
  int fd;
  const uint8_t *base;
  const uint32_t *desc;
  uint32_t count;
  uint8_t *ok;
  uint32_t written;
  writer_stats *st;
} vnet_ctx;

/* The entry whose slice holds p: entries are ascending and disjoint (checked by the caller). */
static uint32_t entry_of(const vnet_ctx *c, const uint8_t *p) {
  size_t at = (size_t)(p - c->base);
  uint32_t lo = 0, hi = c->count;
  while (hi - lo > 1) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (c->desc[2 * mid] <= at) lo = mid;
    else hi = mid;
  }
  return lo;
}

static int vnet_emit(void *ctx, const struct iovec *iov, int iovcnt, uint32_t nsegs, uint32_t bytes, void *owner) {
  (void)bytes;
  (void)owner;
  vnet_ctx *c = ctx;
  ssize_t n;
  do {
    c->st->syscalls++;
    n = felt_sys.writev(c->fd, iov, iovcnt);
  } while (n < 0 && errno == EINTR);
  uint8_t good = n >= 0;
  for (int k = 1; k < iovcnt; k++) c->ok[entry_of(c, iov[k].iov_base)] = good;
  if (good) {
    c->written += nsegs;
    if (nsegs > 1) c->st->gro_merged += nsegs;
  }
  return good ? 0 : -1;
}

uint32_t writer_tun_write_vnet(int fd, uint8_t *base, size_t base_len, const uint32_t *desc, uint32_t count,
                               uint8_t *ok, gro_batch *g, writer_stats *st) {
  memset(ok, 0, count);
  vnet_ctx c = {.fd = fd, .base = base, .desc = desc, .count = count, .ok = ok, .st = st};
  /* GRO needs to map written bytes back to entries: only for ascending, disjoint, valid slices. */
  int merge = g != NULL;
  for (uint32_t i = 0; i < count && merge; i++) {
    if (!valid_entry(base_len, desc[2 * i], desc[2 * i + 1], 65535)) merge = 0;
    else if (i > 0 && desc[2 * i] < (size_t)desc[2 * i - 2] + desc[2 * i - 1]) merge = 0;
  }
  static const uint8_t empty_hdr[VNET_HDR_LEN];
  for (uint32_t i = 0; i < count; i++) {
    uint32_t off = desc[2 * i], len = desc[2 * i + 1];
    if (len == 0 || !valid_entry(base_len, off, len, 65535)) continue;
    uint8_t *pkt = base + off;
    /* gro_add takes exactly one whole, sane IPv4 or IPv6 packet. */
    int whole = pkt[0] >> 4 == 6 ? ipv6_validate(pkt, len, 0) == DROP_NONE && ip6_total(pkt) == len
                                 : ipv4_validate(pkt, len, 0, 0) == DROP_NONE && ip_total(pkt) == len;
    if (merge && whole) {
      if (gro_full(g)) gro_flush(g, vnet_emit, &c);
      gro_add(g, pkt, len, NULL);
      continue;
    }
    if (merge) gro_flush(g, vnet_emit, &c); /* keep the order of the packets written so far */
    struct iovec iov[2] = {{(void *)empty_hdr, VNET_HDR_LEN}, {pkt, len}};
    ssize_t n;
    do {
      st->syscalls++;
      n = felt_sys.writev(fd, iov, 2);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)(VNET_HDR_LEN + len)) {
      ok[i] = 1;
      c.written++;
    }
  }
  if (merge) gro_flush(g, vnet_emit, &c);
  return c.written;
}
