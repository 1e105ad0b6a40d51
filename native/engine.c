/* The native engine's packet path: the per-packet decisions of docs/datapath.md and the thread
 * loops that feed them. Offloads live in tun_offload.c, batched UDP receive in udp_batch.c, and
 * start/stop/route publication in engine_ctl.c; IPv6 header rules are in ipv6.c. Over 450 lines
 * on purpose: the encap and decap paths of both families, their two underlay sockets and the
 * loops that share one thread must be read together. */
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
#include "ipv6.h"
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

/* Blocks until fd or fd2 (-1: none) has `events` or the engine stops. Returns 0, or -1 when stopping;
 * *ready (when given) gets bit 0 for fd and bit 1 for fd2 if they reported anything. */
static int wait_fds(engine *e, int fd, int fd2, short events, uint64_t *seen, int *ready) {
  if (seen) __atomic_store_n(seen, OFFLINE, __ATOMIC_SEQ_CST);
  for (;;) {
    struct pollfd pfd[3] = {{.fd = e->wake_fd, .events = POLLIN}, {.fd = fd, .events = events}, {.fd = fd2, .events = events}};
    int n = poll(pfd, 3, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || pfd[0].revents || is_stopping(e)) return -1;
    if ((pfd[1].revents | pfd[2].revents) & POLLNVAL) return -1;
    if (ready) *ready = (pfd[1].revents ? 1 : 0) | (pfd[2].revents ? 2 : 0);
    return 0;
  }
}
static int wait_fd(engine *e, int fd, short events, uint64_t *seen) { return wait_fds(e, fd, -1, events, seen, NULL); }

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
  const rt_peer *to; /* its addresses (the table is current for the whole wake-up) */
  int v6;            /* sent over the IPv6 underlay */
} tx_batch;

typedef struct enc_thread {
  engine *e;
  const route_table *table;
  peer *cur; /* destination peer of the packet being split */
  const rt_peer *cur_rp;
  int cur_v6;
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

static void enc_icmp6(enc_thread *t, const uint8_t *ip, size_t len, uint8_t type, uint8_t code, uint32_t rest) {
  engine *e = t->e;
  if (!icmp6_error_allowed(ip, len)) return;
  if (!bucket_take(&t->icmp, mono_ns())) { /* one limiter for both families */
    ctr_add(&e->enc_ctr.icmp_rate_limited, 1);
    return;
  }
  uint8_t out[VNET_HDR_LEN + ICMP6_ERR_MAX];
  memset(out, 0, VNET_HDR_LEN);
  size_t n = VNET_HDR_LEN + icmp6_build_error(out + VNET_HDR_LEN, ip, len, type, code, rest, e->cfg.local_net6);
  if (felt_sys.write(e->cfg.tun_fd, out, n) == (ssize_t)n) ctr_add(&e->enc_ctr.icmp_sent, 1);
  else enc_drop(t, DROP_TUN_WRITE_ERROR, NULL, 1);
}

/* The batch's destination: its socket and address. */
typedef struct {
  int fd;
  union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } sa;
  socklen_t len;
} tx_dest;

static void batch_dest(const engine *e, const tx_batch *b, tx_dest *d) {
  memset(d, 0, sizeof *d);
  if (b->v6) {
    d->fd = e->udp6.fd;
    d->sa.v6.sin6_family = AF_INET6;
    d->sa.v6.sin6_port = htons(e->cfg.port);
    memcpy(&d->sa.v6.sin6_addr, b->to->public_ip6, 16);
    d->len = sizeof d->sa.v6;
  } else {
    d->fd = e->udp.fd;
    d->sa.v4.sin_family = AF_INET;
    d->sa.v4.sin_port = htons(e->cfg.port);
    d->sa.v4.sin_addr.s_addr = htonl(b->to->public_ip);
    d->len = sizeof d->sa.v4;
  }
}

/* One sendmsg carrying the whole batch as equal-size datagrams. 0, or the errno. */
static int send_gso(enc_thread *t, const tx_dest *to) {
  engine *e = t->e;
  tx_batch *b = &t->tx;
  struct iovec iov = {b->buf, b->len};
  union {
    char buf[CMSG_SPACE(sizeof(uint16_t))];
    struct cmsghdr align;
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr msg = {
      .msg_name = (void *)&to->sa,
      .msg_namelen = to->len,
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
    if (felt_sys.sendmsg(to->fd, &msg, 0) >= 0) return 0;
    if (errno == EINTR) continue;
    if (errno == EAGAIN && wait_fd(e, to->fd, POLLOUT, NULL) == 0) continue;
    return errno;
  }
}

/* One datagram per segment through sendmmsg. Returns the bytes sent; *sent / *failed count them. */
static uint64_t send_each(enc_thread *t, const tx_dest *to, uint32_t *sent, uint32_t *failed) {
  engine *e = t->e;
  tx_batch *b = &t->tx;
  uint32_t off = 0;
  for (uint32_t i = 0; i < b->nsegs; i++) {
    t->miov[i] = (struct iovec){b->buf + off, b->seg_len[i]};
    t->mmsg[i].msg_hdr = (struct msghdr){
        .msg_name = (void *)&to->sa, .msg_namelen = to->len, .msg_iov = &t->miov[i], .msg_iovlen = 1};
    off += b->seg_len[i];
  }
  uint64_t bytes = 0;
  uint32_t i = 0;
  while (i < b->nsegs) {
    ctr_add(&e->enc_ctr.udp_sends, 1);
    int n = felt_sys.sendmmsg(to->fd, t->mmsg + i, b->nsegs - i, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && wait_fd(e, to->fd, POLLOUT, NULL) == 0) continue;
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
  tx_dest to;
  batch_dest(e, b, &to);
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
  b->to = NULL;
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
    b->to = t->cur_rp;
    b->v6 = t->cur_v6;
    b->segsize = (uint32_t)seg_len;
  }
  uint8_t *out = b->buf + b->len;
  b->seg_len[b->nsegs++] = (uint32_t)seg_len;
  b->len += (uint32_t)seg_len;
  if (seg_len < b->segsize) b->closed = 1;
  return out;
}

/* The underlay to reach a peer on: IPv6 when both sides have an address, else IPv4. Sets the
 * current destination; 0 when there is no common family. */
static int choose_underlay(enc_thread *t, const rt_peer *rp) {
  const engine *e = t->e;
  if (e->udp6_on && rp->has_ip6) t->cur_v6 = 1;
  else if (e->udp.fd >= 0 && rp->public_ip != 0) t->cur_v6 = 0;
  else return 0;
  t->cur = rp->peer;
  t->cur_rp = rp;
  return 1;
}

/* docs/datapath.md "Encap", IPv6, for one validated read. */
static void enc_packet6(enc_thread *t, const tun_read *r) {
  engine *e = t->e;
  uint32_t nsegs = r->nsegs;
  uint8_t *pkt = r->pkt;
  size_t len = r->len;
  drop_reason v = ipv6_walk(pkt, len, NULL, NULL);
  if (v != DROP_NONE) {
    enc_drop(t, v, NULL, nsegs);
    return;
  }
  const uint8_t *dst = ip6_dst(pkt);
  if (ip6_in_prefix(dst, e->cfg.local_net6, e->cfg.local_prefix6)) {
    enc_drop(t, DROP_OWN_SUBNET, NULL, nsegs);
    return;
  }
  rt_peer *rp = rt_lookup6(t->table, dst);
  if (!rp) {
    enc_drop(t, DROP_NO_ROUTE, NULL, nsegs);
    enc_icmp6(t, pkt, len, 1, 0, 0);
    return;
  }
  if (pkt[7] <= 1) {
    enc_drop(t, DROP_TTL_EXPIRED, rp->peer, nsegs);
    enc_icmp6(t, pkt, len, 3, 0, 0);
    return;
  }
  if (r->biggest > e->cfg.mtu) {
    enc_drop(t, DROP_OVERSIZE, rp->peer, nsegs);
    enc_icmp6(t, pkt, len, 2, 0, e->cfg.mtu); /* IPv6 routers never fragment: always Packet Too Big */
    return;
  }
  if (!choose_underlay(t, rp)) {
    enc_drop(t, DROP_NO_UNDERLAY, rp->peer, nsegs);
    return;
  }
  pkt[7]--; /* no header checksum in IPv6 */
  tun_offload_emit(r, enc_reserve, t);
}

/* docs/datapath.md "Encap" for one TUN read (a packet or a TSO/USO super-packet). */
void engine_enc_packet(enc_thread *t, uint8_t *buf, size_t n) {
  engine *e = t->e;
  tun_read r;
  drop_reason v = tun_offload_parse_ex(buf, n, &r, e->cfg.has6);
  if (v != DROP_NONE) {
    enc_drop(t, v, NULL, 1);
    return;
  }
  if (r.gso) ctr_add(&e->enc_ctr.gso_reads, 1);
  uint32_t nsegs = r.nsegs;
  uint8_t *pkt = r.pkt;
  size_t len = r.len;
  ctr_add(&e->enc_ctr.tun_read_segments, nsegs);
  if (r.v6) {
    enc_packet6(t, &r);
    return;
  }

  uint32_t dst = ip_dst(pkt);
  if ((dst & e->local_mask) == e->cfg.local_net) {
    /* Sending it to ourselves would loop; an IPv6-only overlay lands here with every IPv4 packet. */
    enc_drop(t, e->cfg.has4 ? DROP_OWN_SUBNET : DROP_NOT_IP, NULL, nsegs);
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
  if (!choose_underlay(t, rp)) {
    enc_drop(t, DROP_NO_UNDERLAY, rp->peer, nsegs);
    return;
  }
  ipv4_dec_ttl(pkt);
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
  udp_batch rx;  /* the IPv4 socket */
  udp_batch rx6; /* the IPv6 socket (same buffers: drained one after the other, GRO flushed between) */
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

/* docs/datapath.md "Decap", IPv6, for one inner packet from a known peer. */
static void dec_packet6(dec_thread *t, const rt_peer *rp, uint8_t *p, size_t len) {
  drop_reason v = ipv6_validate(p, len, 0);
  if (v != DROP_NONE) {
    dec_drop(t, v, rp->peer, 1);
    return;
  }
  size_t total = ip6_total(p);
  v = ipv6_walk(p, total, NULL, NULL);
  if (v != DROP_NONE) {
    dec_drop(t, v, rp->peer, 1);
    return;
  }
  if (!rt_peer_admits6(t->table, rp, ip6_src(p))) {
    dec_drop(t, DROP_SPOOFED_SOURCE, rp->peer, 1);
    return;
  }
  const engine_config *c = &t->e->cfg;
  if (!ip6_in_prefix(ip6_dst(p), c->local_net6, c->local_prefix6)) {
    dec_drop(t, DROP_NO_ROUTE, rp->peer, 1); /* not ours to deliver */
    return;
  }
  if (p[7] == 0) {
    dec_drop(t, DROP_TTL_EXPIRED, rp->peer, 1);
    return;
  }
  if (gro_full(&t->gro)) gro_flush(&t->gro, dec_write, t);
  gro_add(&t->gro, p, (uint32_t)total, rp->peer); /* trailing bytes past the payload length are cut */
}

/* docs/datapath.md "Decap" steps 2-5 for one inner packet from a known peer. */
static void dec_packet(dec_thread *t, const rt_peer *rp, uint8_t *p, size_t len) {
  if (len > 0 && p[0] >> 4 == 6 && t->e->cfg.has6) {
    dec_packet6(t, rp, p, len);
    return;
  }
  drop_reason v = ipv4_validate(p, len, 1, 0);
  if (v != DROP_NONE) {
    dec_drop(t, v, rp->peer, 1);
    return;
  }
  if (!rt_peer_admits(t->table, rp, ip_src(p))) {
    /* On an IPv6-only overlay no peer has an IPv4 subnet: every IPv4 packet lands here. */
    dec_drop(t, t->e->cfg.has4 ? DROP_SPOOFED_SOURCE : DROP_NOT_IP, rp->peer, 1);
    return;
  }
  if (p[8] == 0) {
    dec_drop(t, DROP_TTL_EXPIRED, rp->peer, 1);
    return;
  }
  if (gro_full(&t->gro)) gro_flush(&t->gro, dec_write, t);
  gro_add(&t->gro, p, ip_total(p), rp->peer); /* trailing bytes past the total length are cut */
}

static void dec_message(dec_thread *t, const udp_batch *rx, int i) {
  udp_msg m;
  udp_batch_msg(rx, i, &m);
  ctr_add(&t->e->dec_ctr.udp_recv_datagrams, m.ndgrams);
  const rt_peer *rp = m.v6 ? rt_find_peer6(t->table, m.src6) : rt_find_peer(t->table, m.src);
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
static void dec_drain_socket(dec_thread *t, udp_batch *rx, int fd) {
  engine *e = t->e;
  for (int round = 0; round < RX_ROUNDS; round++) {
    int n = udp_batch_recv(rx, fd);
    if (n < 0) break; /* EAGAIN: drained */
    ctr_add(&e->dec_ctr.udp_recv_calls, 1);
    ctr_add(&e->dec_ctr.udp_recv_messages, (uint64_t)n);
    for (int i = 0; i < n; i++) dec_message(t, rx, i);
    gro_flush(&t->gro, dec_write, t);
    if (n < RX_MSGS) break;
  }
}

/* Drains the sockets that reported something: bit 0 the IPv4 socket, bit 1 the IPv6 one (a quiet
 * socket would only cost a recvmmsg returning EAGAIN on every wake-up). */
static void dec_drain_ready(dec_thread *t, int ready) {
  engine *e = t->e;
  t->table = enter_table(e, &e->dec_seen);
  t->now_ms = now_ms();
  if ((ready & 1) && e->udp.fd >= 0) dec_drain_socket(t, &t->rx, e->udp.fd);
  if ((ready & 2) && e->udp6_on) dec_drain_socket(t, &t->rx6, e->udp6.fd);
}

void engine_dec_drain(dec_thread *t) { dec_drain_ready(t, 1 | 2); }

void *engine_dec_main(void *arg) {
  dec_thread *t = arg;
  engine *e = t->e;
  int ready = 0;
  while (wait_fds(e, e->udp.fd, e->udp6_on ? e->udp6.fd : -1, POLLIN, &e->dec_seen, &ready) == 0) dec_drain_ready(t, ready);
  __atomic_store_n(&e->dec_seen, OFFLINE, __ATOMIC_SEQ_CST);
  return NULL;
}

/* One thread for both directions (ENGINE_THREADS_ONE): a packet and its reply are handled by the
 * same thread, so a round trip through the node wakes one thread instead of two, and the thread
 * that wakes is the one that ran last. Epoll keeps the fds registered between waits. */
void *engine_duo_main(void *arg) {
  engine *e = arg;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev[4];
  int ok = ep >= 0;
  /* 0 TUN, 1 IPv4 socket, 2 wake-up, 3 IPv6 socket; a socket the node lacks is left out. */
  const int fds[4] = {e->cfg.tun_fd, e->udp.fd, e->wake_fd, e->udp6_on ? e->udp6.fd : -1};
  for (int i = 0; ok && i < 4; i++) {
    if (fds[i] < 0) continue;
    struct epoll_event want = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    ok = epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &want) == 0;
  }
  while (ok && !is_stopping(e)) {
    __atomic_store_n(&e->enc_seen, OFFLINE, __ATOMIC_SEQ_CST);
    __atomic_store_n(&e->dec_seen, OFFLINE, __ATOMIC_SEQ_CST);
    int n = epoll_wait(ep, ev, 4, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    int tun = 0, udp = 0; /* udp: bit 0 the IPv4 socket, bit 1 the IPv6 one */
    for (int i = 0; i < n; i++) {
      if (ev[i].data.u32 == 2 || (ev[i].events & (EPOLLERR | EPOLLHUP) && ev[i].data.u32 == 0)) ok = 0;
      else if (ev[i].data.u32 == 0) tun = 1;
      else udp |= ev[i].data.u32 == 1 ? 1 : 2;
    }
    if (!ok || is_stopping(e)) break;
    /* Replies first: a reply waiting on the socket is the end of someone's round trip. What the
     * decap just wrote into the TUN device is often answered at once by the local kernel (ICMP
     * echo, TCP ACKs): that answer is already queued on the device, so read it without a wait. */
    if (udp) dec_drain_ready(e->dec, udp);
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
  udp_batch_init6(&e->dec->rx6, &e->dec->bufs[0][0], RX_BUF);
  return 0;
}

void engine_threads_free(engine *e) {
  free(e->enc);
  free(e->dec);
  e->enc = NULL;
  e->dec = NULL;
}

uint64_t engine_now_ms(void) { return now_ms(); }
