#include "reader.h"

#include <errno.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gso.h"
#include "ipv4.h"
#include "udp.h"

enum { KIND_TUN, KIND_UDP };

/* TUN: room for the byte budget plus one maximal packet, so no read is ever truncated; with a
 * virtio header, plus one TSO super-packet split into records (see split_fits). */
#define TUN_BUF_BYTES (READER_MAX_BYTES + 2 + 65535)
#define TUN_SPLIT_ROOM (256 * 1024)
#define TUN_VNET_BUF_BYTES (READER_MAX_BYTES + TUN_SPLIT_ROOM)
/* UDP: recvmmsg fills UDP_SLOTS buffers of 65,535 bytes (no datagram is truncated on receipt). */
#define UDP_SLOTS 16
#define UDP_SLOT_BYTES 65535
/* The most record space one datagram can take: a GRO datagram of 1-byte segments. */
#define UDP_MAX_DGRAM_SPACE ((size_t)UDP_SLOT_BYTES * (1 + UDP_REC_HDR))
#define UDP_BUF_BYTES (READER_MAX_BYTES + UDP_MAX_DGRAM_SPACE)

typedef union {
  char buf[CMSG_SPACE(sizeof(int))];
  struct cmsghdr align;
} udp_ctl;

struct tun_reader {
  int fd;
  int wake_fd;
  int kind;
  int vnet;       /* TUN opened with IFF_VNET_HDR: reads start with a virtio_net_hdr */
  uint8_t *rbuf;  /* vnet: one raw read (header + packet or super-packet) */
  reader_deliver_fn deliver;
  void *ctx;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int inflight; /* batches delivered and not yet acknowledged; under lock */
  int stopping; /* under lock */
  /* The batch being filled: reader thread only. */
  uint8_t *buf;
  size_t cap;
  size_t off;
  uint32_t count;
  /* UDP receive state: reader thread only. */
  uint8_t *slots;
  struct mmsghdr msgs[UDP_SLOTS];
  struct iovec iov[UDP_SLOTS];
  struct sockaddr_in from[UDP_SLOTS];
  udp_ctl ctl[UDP_SLOTS];
  /* Statistics: written by the thread with relaxed atomics, read by reader_get_stats. */
  reader_stats stats;
};

static void stat_add(uint64_t *c, uint64_t n) { __atomic_fetch_add(c, n, __ATOMIC_RELAXED); }

/* Waits until fewer than READER_MAX_INFLIGHT batches are outstanding. Returns 0, or -1 when stopping. */
static int wait_for_capacity(tun_reader *r) {
  pthread_mutex_lock(&r->lock);
  if (!r->stopping && r->inflight >= READER_MAX_INFLIGHT) stat_add(&r->stats.full_waits, 1);
  while (!r->stopping && r->inflight >= READER_MAX_INFLIGHT) pthread_cond_wait(&r->cond, &r->lock);
  int stop = r->stopping;
  if (!stop) r->inflight++;
  pthread_mutex_unlock(&r->lock);
  return stop ? -1 : 0;
}

/* Hands the current batch (if any) to the consumer and starts an empty one. Returns -1 to stop. */
static int deliver_batch(tun_reader *r) {
  if (r->count == 0) return 0;
  size_t len = r->off;
  uint32_t count = r->count;
  r->off = 0;
  r->count = 0;
  if (wait_for_capacity(r) < 0) return -1;
  uint8_t *copy = malloc(len);
  if (!copy) {
    reader_batch_done(r); /* out of memory: this batch is lost, its slot given back */
    return 0;
  }
  memcpy(copy, r->buf, len);
  stat_add(&r->stats.batches, 1);
  stat_add(&r->stats.records, count);
  int rc = r->deliver(r->ctx, copy, len, count);
  if (rc > 0) {
    reader_batch_done(r); /* dropped by the consumer: its slot given back */
    return 0;
  }
  return rc;
}

/* One read of the TUN fd into buf: the bytes read, or 0 when there is nothing to read (EAGAIN)
 * or the fd is unusable (then *fatal is set). */
static size_t tun_read(tun_reader *r, uint8_t *buf, size_t cap, int *fatal) {
  for (;;) {
    ssize_t n = read(r->fd, buf, cap);
    if (n > 0) {
      stat_add(&r->stats.reads, 1);
      return (size_t)n;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) *fatal = 1;
    return 0;
  }
}

/* Appends a TUN record of seg_len bytes to the batch: writes its length prefix and returns where
 * its bytes go. Also gso_split's space for one segment. */
static uint8_t *reserve_record(void *ctx, size_t seg_len) {
  tun_reader *r = ctx;
  uint8_t *p = r->buf + r->off;
  p[0] = (uint8_t)(seg_len >> 8);
  p[1] = (uint8_t)seg_len;
  r->off += 2 + seg_len;
  r->count++;
  return p + 2;
}

/* Reads TUN packets until EAGAIN or the batch is full. *fatal is set when the fd is unusable. */
static void fill_tun_plain(tun_reader *r, int *fatal) {
  while (r->count < READER_MAX_PACKETS && r->off < READER_MAX_BYTES) {
    /* Read in place, after the room for the length prefix. */
    size_t n = tun_read(r, r->buf + r->off + 2, 65535, fatal);
    if (n == 0) break;
    reserve_record(r, n);
  }
}

static void put_tun_record(tun_reader *r, const uint8_t *pkt, size_t len) {
  memcpy(reserve_record(r, len), pkt, len);
}

/* One read from a virtio-header TUN: a plain packet (its checksum completed when the kernel left
 * that to us) or a TSO/USO super-packet split into wire-size packets, each its own record. No
 * decisions here: whatever cannot be split or completed goes to JS as it is, and JS drops it
 * with the contract's reason (e.g. oversize, malformed). Returns -1 to stop. */
static int add_vnet_read(tun_reader *r, size_t n) {
  if (n < VNET_HDR_LEN) return 0; /* no header at all: nothing a packet could be made of */
  vnet_hdr h;
  vnet_parse(r->rbuf, &h);
  uint8_t *pkt = r->rbuf + VNET_HDR_LEN;
  size_t len = n - VNET_HDR_LEN;
  int gso = (h.gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE;
  gso_plan plan;
  if (gso && ipv4_validate(pkt, len, 0, 1) == DROP_NONE && len <= 65535 &&
      gso_make_plan(pkt, len, h.gso_type, h.gso_size, &plan) == 0) {
    size_t need = (size_t)plan.nsegs * (2 + plan.hdr_len) + plan.payload;
    if (need <= TUN_SPLIT_ROOM) {
      if (r->off + need > r->cap && deliver_batch(r) < 0) return -1;
      gso_split(pkt, &plan, reserve_record, r);
      return 0;
    }
  }
  if (!gso && (h.flags & VNET_F_NEEDS_CSUM) && ipv4_validate(pkt, len, 0, 0) == DROP_NONE) {
    /* Offsets out of range leave the packet as it is (the receiver's kernel will drop it). */
    (void)vnet_finish_csum(pkt, ip_total(pkt), h.csum_start, h.csum_offset);
  }
  if (r->off + 2 + len > r->cap && deliver_batch(r) < 0) return -1;
  put_tun_record(r, pkt, len);
  return 0;
}

static int fill_tun_vnet(tun_reader *r, int *fatal) {
  while (r->count < READER_MAX_PACKETS && r->off < READER_MAX_BYTES) {
    size_t n = tun_read(r, r->rbuf, VNET_HDR_LEN + 65535, fatal);
    if (n == 0) break;
    if (add_vnet_read(r, n) < 0) return -1;
  }
  return 0;
}

static void put_udp_record(tun_reader *r, uint32_t src_be, const uint8_t *data, size_t len, uint8_t flags) {
  uint8_t *p = r->buf + r->off;
  memcpy(p, &src_be, 4); /* already in network order */
  p[4] = (uint8_t)(len >> 8);
  p[5] = (uint8_t)len;
  p[6] = flags;
  p[7] = 0;
  memcpy(p + UDP_REC_HDR, data, len);
  r->off += UDP_REC_HDR + len;
  r->count++;
}

/* Appends message i as one record per segment. Returns -1 to stop. */
static int append_datagram(tun_reader *r, int i) {
  struct msghdr *mh = &r->msgs[i].msg_hdr;
  size_t len = r->msgs[i].msg_len;
  if (len > UDP_SLOT_BYTES) len = UDP_SLOT_BYTES;
  uint8_t flags = (mh->msg_flags & MSG_TRUNC) ? UDP_REC_TRUNC : 0;
  /* A source that is not IPv4 cannot belong to a peer: 0.0.0.0 makes it an unknown-peer drop. */
  uint32_t src_be = (mh->msg_namelen >= sizeof(struct sockaddr_in) && r->from[i].sin_family == AF_INET)
                        ? r->from[i].sin_addr.s_addr
                        : 0;
  size_t seg = flags ? 0 : udp_gro_segment_size(mh);
  if (seg == 0 || seg >= len) seg = len;
  size_t pieces = seg == 0 ? 1 : (len + seg - 1) / seg;
  size_t need = len + pieces * UDP_REC_HDR;
  if (r->off + need > r->cap && deliver_batch(r) < 0) return -1;
  const uint8_t *data = r->slots + (size_t)i * UDP_SLOT_BYTES;
  if (pieces == 1) {
    put_udp_record(r, src_be, data, len, flags);
    return 0;
  }
  for (size_t at = 0; at < len; at += seg) put_udp_record(r, src_be, data + at, len - at < seg ? len - at : seg, 0);
  return 0;
}

/* Receives datagrams until EAGAIN or the batch is full, delivering early when the buffer fills.
 * Returns -1 to stop; *fatal is set when the socket is unusable. */
static int fill_udp(tun_reader *r, int *fatal) {
  while (r->count < READER_MAX_PACKETS && r->off < READER_MAX_BYTES) {
    for (int i = 0; i < UDP_SLOTS; i++) {
      r->iov[i] = (struct iovec){r->slots + (size_t)i * UDP_SLOT_BYTES, UDP_SLOT_BYTES};
      r->msgs[i].msg_hdr = (struct msghdr){
          .msg_name = &r->from[i],
          .msg_namelen = sizeof r->from[i],
          .msg_iov = &r->iov[i],
          .msg_iovlen = 1,
          .msg_control = r->ctl[i].buf,
          .msg_controllen = sizeof r->ctl[i].buf,
      };
    }
    int n = recvmmsg(r->fd, r->msgs, UDP_SLOTS, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EBADF || errno == ENOTSOCK || errno == EINVAL || errno == EFAULT) *fatal = 1;
      break; /* EAGAIN: drained; anything else is transient (e.g. ENOMEM) */
    }
    stat_add(&r->stats.reads, 1);
    for (int i = 0; i < n; i++)
      if (append_datagram(r, i) < 0) return -1;
    if (n < UDP_SLOTS) break;
  }
  return 0;
}

static void *reader_main(void *arg) {
  tun_reader *r = arg;
  for (;;) {
    struct pollfd pfd[2] = {{.fd = r->fd, .events = POLLIN}, {.fd = r->wake_fd, .events = POLLIN}};
    int n = poll(pfd, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pfd[1].revents) break;
    if (pfd[0].revents & (POLLNVAL | POLLERR | POLLHUP)) break;
    if (!(pfd[0].revents & POLLIN)) continue;

    int fatal = 0;
    if (r->kind == KIND_TUN && !r->vnet) {
      fill_tun_plain(r, &fatal);
    } else if ((r->kind == KIND_TUN ? fill_tun_vnet(r, &fatal) : fill_udp(r, &fatal)) < 0) {
      break;
    }
    if (deliver_batch(r) < 0) break;
    if (fatal) break;
  }
  return NULL;
}

static tun_reader *start(int fd, int kind, reader_deliver_fn deliver, void *ctx, felt_err *err) {
  const char *what = kind == KIND_TUN ? "tunStartReader" : "udpStartReader";
  tun_reader *r = calloc(1, sizeof *r);
  if (!r) return felt_errno(err, ENOMEM, "%s", what), NULL;
  r->fd = fd;
  r->kind = kind;
  r->deliver = deliver;
  r->ctx = ctx;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  r->vnet = kind == KIND_TUN && ioctl(fd, TUNGETIFF, &ifr) == 0 && (ifr.ifr_flags & IFF_VNET_HDR);
  r->cap = kind == KIND_UDP ? UDP_BUF_BYTES : r->vnet ? TUN_VNET_BUF_BYTES : TUN_BUF_BYTES;
  r->buf = malloc(r->cap);
  if (kind == KIND_UDP) r->slots = malloc((size_t)UDP_SLOTS * UDP_SLOT_BYTES);
  if (r->vnet) r->rbuf = malloc(VNET_HDR_LEN + 65535);
  r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (!r->buf || (kind == KIND_UDP && !r->slots) || (r->vnet && !r->rbuf) || r->wake_fd < 0) {
    felt_errno(err, r->wake_fd < 0 ? errno : ENOMEM, "%s fd %d", what, fd);
    goto fail;
  }
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->cond, NULL);
  int rc = pthread_create(&r->thread, NULL, reader_main, r);
  if (rc != 0) {
    felt_errno(err, rc, "%s fd %d: pthread_create", what, fd);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    goto fail;
  }
  return r;
fail:
  if (r->wake_fd >= 0) close(r->wake_fd);
  free(r->rbuf);
  free(r->slots);
  free(r->buf);
  free(r);
  return NULL;
}

tun_reader *reader_start(int fd, reader_deliver_fn deliver, void *ctx, felt_err *err) {
  return start(fd, KIND_TUN, deliver, ctx, err);
}

tun_reader *reader_start_udp(int fd, reader_deliver_fn deliver, void *ctx, felt_err *err) {
  return start(fd, KIND_UDP, deliver, ctx, err);
}

void reader_batch_done(tun_reader *r) {
  pthread_mutex_lock(&r->lock);
  if (r->inflight > 0) r->inflight--;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

void reader_get_stats(tun_reader *r, reader_stats *out) {
  out->batches = __atomic_load_n(&r->stats.batches, __ATOMIC_RELAXED);
  out->records = __atomic_load_n(&r->stats.records, __ATOMIC_RELAXED);
  out->reads = __atomic_load_n(&r->stats.reads, __ATOMIC_RELAXED);
  out->full_waits = __atomic_load_n(&r->stats.full_waits, __ATOMIC_RELAXED);
}

void reader_stop(tun_reader *r) {
  pthread_mutex_lock(&r->lock);
  r->stopping = 1;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
  uint64_t one = 1;
  ssize_t w = write(r->wake_fd, &one, sizeof one);
  (void)w; /* an eventfd write only fails on overflow, and the thread checks `stopping` anyway */
  pthread_join(r->thread, NULL);
  close(r->wake_fd);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->cond);
  free(r->rbuf);
  free(r->slots);
  free(r->buf);
  free(r);
}
