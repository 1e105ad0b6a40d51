/* The native engine's packet path: the per-packet decisions of docs/datapath.md and the thread
 * loops that feed them. Offloads live in tun_offload.c, batched UDP receive in udp_batch.c, and
 * start/stop/route publication in engine_ctl.c. Somewhat over 450 lines on purpose: the encap and
 * decap paths and the loops that share one thread must be read together. */
#include "engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "gro.h"
#include "gso.h"
#include "ipv4.h"
#include "sys.h"
#include "tun_offload.h"
#include "udp_batch.h"
#include "engine_loop.h"
#include "engine_path.h"

#define TUN_READ_BURST ENGINE_TUN_READ_BURST
#define TX_MAX_SEGS ENGINE_TX_MAX_SEGS
#define TX_MAX_BYTES ENGINE_TX_MAX_BYTES
#define RX_MSGS ENGINE_RX_MSGS
#define RX_BUF ENGINE_RX_BUF
#define RX_ROUNDS 8 /* recvmmsg calls per wake-up */
#define ICMP_RATE ENGINE_ICMP_RATE
#define ICMP_BURST ENGINE_ICMP_BURST

static uint64_t now_ms(void) {
  struct timespec ts;
  felt_sys.clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  felt_sys.clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int is_stopping(const engine *e) { return __atomic_load_n(&e->stopping, __ATOMIC_ACQUIRE); }

/* Blocks until fd has `events` or the engine stops. Returns 0, or -1 when stopping. */
static int wait_fd(engine *e, int fd, short events, uint64_t *seen) {
  if (seen) __atomic_store_n(seen, OFFLINE, __ATOMIC_SEQ_CST);
  for (;;) {
    struct pollfd pfd[2] = {{.fd = fd, .events = events}, {.fd = e->wake_fd, .events = POLLIN}};
    int n = poll(pfd, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || pfd[1].revents || is_stopping(e)) return -1;
    if (pfd[0].revents & POLLNVAL) return -1;
    return 0;
  }
}

/* Takes the current table after announcing the generation it is read at. */
static const route_table *enter_table(engine *e, uint64_t *seen) {
  __atomic_store_n(seen, __atomic_load_n(&e->gen, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
  return __atomic_load_n(&e->table, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------------------------------ */
/* Encap: TUN -> UDP                                                                          */

typedef struct {
  uint8_t buf[TX_MAX_BYTES + 1];
  uint32_t len;
  uint32_t seg_len[TX_MAX_SEGS];
  uint32_t nsegs;
  uint32_t segsize;
  int closed; /* a short segment ended the GSO train */
  peer *peer;
} tx_batch;

typedef struct enc_thread {
  engine *e;
  const route_table *table;
  peer *cur; /* destination peer of the packet being split */
  int backlog; /* the last wake-up found more than one packet waiting */
  uint64_t now_ms;
  token_bucket icmp;
  tx_batch tx;
  struct mmsghdr mmsg[TX_MAX_SEGS];
  struct iovec miov[TX_MAX_SEGS];
  uint8_t rbuf[VNET_HDR_LEN + 65535 + 1];
} enc_thread;

static void enc_drop(enc_thread *t, drop_reason r, peer *p, uint64_t n) {
  ctr_add(&t->e->enc_ctr.drops[r], n);
  if (p) ctr_add(&p->tx.drops[r], n);
}

static void enc_icmp(enc_thread *t, const uint8_t *ip, size_t len, uint8_t type, uint8_t code, uint32_t rest) {
  engine *e = t->e;
  if (!icmp_error_allowed(ip, len)) return;
  if (!bucket_take(&t->icmp, mono_ns())) {
    ctr_add(&e->enc_ctr.icmp_rate_limited, 1);
    return;
  }
  uint8_t out[VNET_HDR_LEN + ICMP_ERR_MAX];
  memset(out, 0, VNET_HDR_LEN);
  size_t n = VNET_HDR_LEN + icmp_build_error(out + VNET_HDR_LEN, ip, len, type, code, rest, e->cfg.local_net);
  if (felt_sys.write(e->cfg.tun_fd, out, n) == (ssize_t)n) ctr_add(&e->enc_ctr.icmp_sent, 1);
  else enc_drop(t, DROP_TUN_WRITE_ERROR, NULL, 1); /* the ICMP error itself could not be written */
}

/* One sendmsg carrying the whole batch as equal-size datagrams. 0, or the errno. */
static int send_gso(enc_thread *t, const struct sockaddr_in *to) {
  engine *e = t->e;
  tx_batch *b = &t->tx;
  struct iovec iov = {b->buf, b->len};
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr msg = {
      .msg_name = (void *)to,
      .msg_namelen = sizeof *to,
      .msg_iov = &iov,
      .msg_iovlen = 1,
      .msg_control = ctl.buf,
      .msg_controllen = sizeof ctl.buf,
  };
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_UDP;
  cm->cmsg_type = UDP_SEGMENT;
  cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t seg = (uint16_t)b->segsize;
  memcpy(CMSG_DATA(cm), &seg, sizeof seg);
  for (;;) {
    ctr_add(&e->enc_ctr.udp_sends, 1);
    if (felt_sys.sendmsg(e->udp.fd, &msg, 0) >= 0) return 0;
    if (errno == EINTR) continue;
    if (errno == EAGAIN && wait_fd(e, e->udp.fd, POLLOUT, NULL) == 0) continue;
    return errno;
  }
}

/* One datagram per segment through sendmmsg. Returns the bytes sent; *sent / *failed count them. */
static uint64_t send_each(enc_thread *t, const struct sockaddr_in *to, uint32_t *sent, uint32_t *failed) {
  engine *e = t->e;
  tx_batch *b = &t->tx;
  uint32_t off = 0;
  for (uint32_t i = 0; i < b->nsegs; i++) {
    t->miov[i] = (struct iovec){b->buf + off, b->seg_len[i]};
    t->mmsg[i].msg_hdr = (struct msghdr){
        .msg_name = (void *)to, .msg_namelen = sizeof *to, .msg_iov = &t->miov[i], .msg_iovlen = 1};
    off += b->seg_len[i];
  }
  uint64_t bytes = 0;
  uint32_t i = 0;
  while (i < b->nsegs) {
    ctr_add(&e->enc_ctr.udp_sends, 1);
    int n = felt_sys.sendmmsg(e->udp.fd, t->mmsg + i, b->nsegs - i, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && wait_fd(e, e->udp.fd, POLLOUT, NULL) == 0) continue;
      if (errno == EAGAIN) { /* stopping: the rest is lost */
        *failed += b->nsegs - i;
        break;
      }
      (*failed)++; /* this datagram was refused; carry on with the next */
      i++;
      continue;
    }
    for (int k = 0; k < n; k++) bytes += b->seg_len[i + (uint32_t)k];
    *sent += (uint32_t)n;
    i += (uint32_t)n;
  }
  return bytes;
}

void engine_enc_flush(enc_thread *t) {
  engine *e = t->e;
  tx_batch *b = &t->tx;
  if (b->nsegs == 0) return;
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(e->cfg.port),
                           .sin_addr = {.s_addr = htonl(b->peer->public_ip)}};
  uint32_t sent = 0, failed = 0;
  uint64_t bytes = 0;
  int done = 0;
  if (b->nsegs > 1 && __atomic_load_n(&e->features.udp_gso, __ATOMIC_RELAXED)) {
    int rc = send_gso(t, &to);
    if (rc == 0) {
      sent = b->nsegs;
      bytes = b->len;
      done = 1;
    } else if (rc == EIO) {
      /* The egress device cannot checksum-offload: GSO is off for good, this batch goes one by one. */
      __atomic_store_n(&e->features.udp_gso, 0, __ATOMIC_RELAXED);
      __atomic_store_n(&e->features.udp_gso_disabled_errno, EIO, __ATOMIC_RELAXED);
    } else if (rc != EINVAL && rc != EMSGSIZE) {
      failed = b->nsegs;
      done = 1;
    }
  }
  if (!done) bytes = send_each(t, &to, &sent, &failed);
  ctr_add(&e->enc_ctr.udp_send_datagrams, sent);
  if (sent) {
    ctr_add(&e->enc_ctr.packets, sent);
    ctr_add(&e->enc_ctr.bytes, bytes);
    ctr_add(&b->peer->tx.packets, sent);
    ctr_add(&b->peer->tx.bytes, bytes);
    ctr_set(&b->peer->tx.last_ms, t->now_ms);
  }
  if (failed) enc_drop(t, DROP_SEND_ERROR, b->peer, failed);
  b->len = 0;
  b->nsegs = 0;
  b->closed = 0;
  b->peer = NULL;
}

/* Space for the next outgoing datagram: batches consecutive datagrams to one peer into one
 * UDP GSO send (equal sizes, a shorter one last, <= 64 segments and <= 65,507 bytes). */
static uint8_t *enc_reserve(void *ctx, size_t seg_len) {
  enc_thread *t = ctx;
  tx_batch *b = &t->tx;
  int gso = __atomic_load_n(&t->e->features.udp_gso, __ATOMIC_RELAXED);
  if (b->nsegs > 0 &&
      (b->peer != t->cur || b->nsegs == TX_MAX_SEGS || b->len + seg_len > TX_MAX_BYTES ||
       (gso && (b->closed || seg_len > b->segsize))))
    engine_enc_flush(t);
  if (b->nsegs == 0) {
    b->peer = t->cur;
    b->segsize = (uint32_t)seg_len;
  }
  uint8_t *out = b->buf + b->len;
  b->seg_len[b->nsegs++] = (uint32_t)seg_len;
  b->len += (uint32_t)seg_len;
  if (seg_len < b->segsize) b->closed = 1;
  return out;
}

/* docs/datapath.md "Encap" for one TUN read (a packet or a TSO/USO super-packet). */
void engine_enc_packet(enc_thread *t, uint8_t *buf, size_t n) {
  engine *e = t->e;
  tun_read r;
  drop_reason v = tun_offload_parse(buf, n, &r);
  if (v != DROP_NONE) {
    enc_drop(t, v, NULL, 1);
    return;
  }
  if (r.gso) ctr_add(&e->enc_ctr.gso_reads, 1);
  uint32_t nsegs = r.nsegs;
  uint8_t *pkt = r.pkt;
  size_t len = r.len;
  ctr_add(&e->enc_ctr.tun_read_segments, nsegs);

  uint32_t dst = ip_dst(pkt);
  if ((dst & e->local_mask) == e->cfg.local_net) {
    enc_drop(t, DROP_OWN_SUBNET, NULL, nsegs); /* sending it to ourselves would loop */
    return;
  }
  rt_peer *rp = rt_lookup(t->table, dst);
  if (!rp) {
    enc_drop(t, DROP_NO_ROUTE, NULL, nsegs);
    enc_icmp(t, pkt, len, 3, 0, 0);
    return;
  }
  if (pkt[8] <= 1) {
    enc_drop(t, DROP_TTL_EXPIRED, rp->peer, nsegs);
    enc_icmp(t, pkt, len, 11, 0, 0);
    return;
  }
  if (r.biggest > e->cfg.mtu) {
    enc_drop(t, DROP_OVERSIZE, rp->peer, nsegs);
    if (rd16(pkt + 6) & IP_DF) enc_icmp(t, pkt, len, 3, 4, e->cfg.mtu & 0xffff);
    return;
  }
  ipv4_dec_ttl(pkt);
  t->cur = rp->peer;
  tun_offload_emit(&r, enc_reserve, t);
}

/* One wake-up's worth of TUN reads, then the send batch goes out. At low rates one read per
 * wake-up: a second read would only return EAGAIN (level-triggered waiting reports the fd again
 * if more is queued). Once a wake-up finds a backlog, it drains up to TUN_READ_BURST reads so the
 * sends batch. */
void engine_enc_enter(enc_thread *t) {
  t->table = enter_table(t->e, &t->e->enc_seen);
  t->now_ms = now_ms();
}

static void enc_drain(enc_thread *t) {
  engine *e = t->e;
  engine_enc_enter(t);
  uint32_t limit = t->backlog ? TUN_READ_BURST : 1;
  uint32_t reads = 0;
  while (reads < limit) {
    ssize_t n = felt_sys.read(e->cfg.tun_fd, t->rbuf, sizeof t->rbuf);
    if (n < 0) {
      if (errno == EINTR) continue;
      break; /* EAGAIN: drained; anything else: the wait reports it */
    }
    reads++;
    ctr_add(&e->enc_ctr.tun_reads, 1);
    engine_enc_packet(t, t->rbuf, (size_t)n);
  }
  t->backlog = reads > 1 || reads == limit; /* limit 1 reached: maybe more behind it */
  engine_enc_flush(t);
}

void *engine_enc_main(void *arg) {
  enc_thread *t = arg;
  engine *e = t->e;
  while (wait_fd(e, e->cfg.tun_fd, POLLIN, &e->enc_seen) == 0) enc_drain(t);
  __atomic_store_n(&e->enc_seen, OFFLINE, __ATOMIC_SEQ_CST);
  return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Decap: UDP -> TUN                                                                          */

typedef struct dec_thread {
  engine *e;
  const route_table *table;
  uint64_t now_ms;
  udp_batch rx;
  gro_batch gro;
  uint8_t bufs[RX_MSGS][RX_BUF];
} dec_thread;

static void dec_drop(dec_thread *t, drop_reason r, peer *p, uint64_t n) {
  ctr_add(&t->e->dec_ctr.drops[r], n);
  if (p) ctr_add(&p->rx.drops[r], n);
}

static int dec_write(void *ctx, const struct iovec *iov, int iovcnt, uint32_t nsegs, uint32_t bytes, void *owner) {
  dec_thread *t = ctx;
  engine *e = t->e;
  peer *p = owner;
  ssize_t n;
  do n = felt_sys.writev(e->cfg.tun_fd, iov, iovcnt);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    dec_drop(t, DROP_TUN_WRITE_ERROR, p, nsegs);
    return -1;
  }
  ctr_add(&e->dec_ctr.tun_writes, 1);
  ctr_add(&e->dec_ctr.tun_write_packets, nsegs);
  ctr_add(&e->dec_ctr.packets, nsegs);
  ctr_add(&e->dec_ctr.bytes, bytes);
  ctr_add(&p->rx.packets, nsegs);
  ctr_add(&p->rx.bytes, bytes);
  ctr_set(&p->rx.last_ms, t->now_ms);
  return 0;
}

/* docs/datapath.md "Decap" steps 2-5 for one inner packet from a known peer. */
static void dec_packet(dec_thread *t, const rt_peer *rp, uint8_t *p, size_t len) {
  drop_reason v = ipv4_validate(p, len, 1, 0);
  if (v != DROP_NONE) {
    dec_drop(t, v, rp->peer, 1);
    return;
  }
  if (!rt_peer_admits(t->table, rp, ip_src(p))) {
    dec_drop(t, DROP_SPOOFED_SOURCE, rp->peer, 1);
    return;
  }
  if (p[8] == 0) {
    dec_drop(t, DROP_TTL_EXPIRED, rp->peer, 1);
    return;
  }
  if (gro_full(&t->gro)) gro_flush(&t->gro, dec_write, t);
  gro_add(&t->gro, p, ip_total(p), rp->peer); /* trailing bytes past the total length are cut */
}

static void dec_message(dec_thread *t, int i) {
  udp_msg m;
  udp_batch_msg(&t->rx, i, &m);
  ctr_add(&t->e->dec_ctr.udp_recv_datagrams, m.ndgrams);
  const rt_peer *rp = rt_find_peer(t->table, m.src);
  if (!rp) {
    dec_drop(t, DROP_UNKNOWN_PEER, NULL, m.ndgrams); /* the source port is not checked: NAT */
    return;
  }
  if (m.trunc) {
    dec_drop(t, DROP_OVERSIZE, rp->peer, 1);
    return;
  }
  if (m.len == 0) {
    dec_drop(t, DROP_TRUNCATED, rp->peer, 1);
    return;
  }
  for (size_t off = 0; off < m.len; off += m.seg)
    dec_packet(t, rp, m.data + off, m.len - off < m.seg ? m.len - off : m.seg);
}

/* Everything queued on the UDP socket, up to RX_ROUNDS recvmmsg calls; a short batch means the
 * socket is drained, so no call ever returns EAGAIN at low rates. */
void engine_dec_drain(dec_thread *t) {
  engine *e = t->e;
  t->table = enter_table(e, &e->dec_seen);
  t->now_ms = now_ms();
  for (int round = 0; round < RX_ROUNDS; round++) {
    int n = udp_batch_recv(&t->rx, e->udp.fd);
    if (n < 0) break; /* EAGAIN: drained */
    ctr_add(&e->dec_ctr.udp_recv_calls, 1);
    ctr_add(&e->dec_ctr.udp_recv_messages, (uint64_t)n);
    for (int i = 0; i < n; i++) dec_message(t, i);
    gro_flush(&t->gro, dec_write, t);
    if (n < RX_MSGS) break;
  }
}

void *engine_dec_main(void *arg) {
  dec_thread *t = arg;
  engine *e = t->e;
  while (wait_fd(e, e->udp.fd, POLLIN, &e->dec_seen) == 0) engine_dec_drain(t);
  __atomic_store_n(&e->dec_seen, OFFLINE, __ATOMIC_SEQ_CST);
  return NULL;
}

/* One thread for both directions (ENGINE_THREADS_ONE): a packet and its reply are handled by the
 * same thread, so a round trip through the node wakes one thread instead of two, and the thread
 * that wakes is the one that ran last. Epoll keeps the three fds registered between waits. */
void *engine_duo_main(void *arg) {
  engine *e = arg;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev[3];
  int ok = ep >= 0;
  const int fds[3] = {e->cfg.tun_fd, e->udp.fd, e->wake_fd};
  for (int i = 0; ok && i < 3; i++) {
    struct epoll_event want = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    ok = epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &want) == 0;
  }
  while (ok && !is_stopping(e)) {
    __atomic_store_n(&e->enc_seen, OFFLINE, __ATOMIC_SEQ_CST);
    __atomic_store_n(&e->dec_seen, OFFLINE, __ATOMIC_SEQ_CST);
    int n = epoll_wait(ep, ev, 3, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int tun = 0, udp = 0;
    for (int i = 0; i < n; i++) {
      if (ev[i].data.u32 == 2 || (ev[i].events & (EPOLLERR | EPOLLHUP) && ev[i].data.u32 == 0)) ok = 0;
      else if (ev[i].data.u32 == 0) tun = 1;
      else udp = 1;
    }
    if (!ok || is_stopping(e)) break;
    /* Replies first: a reply waiting on the socket is the end of someone's round trip. What the
     * decap just wrote into the TUN device is often answered at once by the local kernel (ICMP
     * echo, TCP ACKs): that answer is already queued on the device, so read it without a wait. */
    if (udp) engine_dec_drain(e->dec);
    if (tun || udp) enc_drain(e->enc);
  }
  if (ep >= 0) close(ep);
  __atomic_store_n(&e->enc_seen, OFFLINE, __ATOMIC_SEQ_CST);
  __atomic_store_n(&e->dec_seen, OFFLINE, __ATOMIC_SEQ_CST);
  return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Thread state (engine_ctl.c starts and stops the threads)                                   */

int engine_threads_init(engine *e) {
  e->enc = calloc(1, sizeof *e->enc);
  e->dec = calloc(1, sizeof *e->dec);
  if (!e->enc || !e->dec) return -1;
  e->enc->e = e;
  e->dec->e = e;
  bucket_init(&e->enc->icmp, ICMP_RATE, ICMP_BURST, mono_ns());
  gro_init(&e->dec->gro);
  udp_batch_init(&e->dec->rx, &e->dec->bufs[0][0], RX_BUF);
  return 0;
}

void engine_threads_free(engine *e) {
  free(e->enc);
  free(e->dec);
  e->enc = NULL;
  e->dec = NULL;
}

uint64_t engine_now_ms(void) { return now_ms(); }
