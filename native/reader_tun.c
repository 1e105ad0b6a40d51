/* The TUN reader: plain reads become records as they are; reads with a virtio header go through
 * the TUN offload layer (split, checksum completed, or dropped with a reason). */
#include <errno.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "reader_core.h"
#include "sys.h"
#include "tun_offload.h"

/* Room for the byte budget plus one maximal packet (or segment): no read is ever truncated, and
 * a split that runs out of room delivers and carries on in an empty batch. */
#define TUN_BUF_BYTES (READER_MAX_BYTES + 2 + 65535)

typedef struct {
  int vnet;                           /* TUN opened with IFF_VNET_HDR */
  int ipv6;                           /* the cluster carries IPv6: IPv6 reads are parsed, not not-ip */
  uint8_t rbuf[VNET_HDR_LEN + 65535]; /* vnet: one raw read */
  int stop;                           /* a delivery during a split asked the thread to stop */
} tun_state;

/* One read of the TUN fd: the bytes read, or 0 when there is nothing to read (EAGAIN) or the fd
 * is unusable (then *fatal is set). */
static size_t tun_read_once(batch_reader *r, uint8_t *buf, size_t cap, int *fatal) {
  for (;;) {
    ssize_t n = felt_sys.read(r->fd, buf, cap);
    if (n > 0) {
      reader_stat_add(&r->stats.reads, 1);
      return (size_t)n;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) *fatal = 1;
    return 0;
  }
}

/* Appends a record of seg_len bytes: writes its length prefix and returns where its bytes go,
 * delivering the batch first when it has no room. NULL when the thread must stop. */
static uint8_t *reserve_record(void *ctx, size_t seg_len) {
  batch_reader *r = ctx;
  tun_state *s = r->state;
  if ((r->off + 2 + seg_len > r->cap || r->count >= READER_MAX_PACKETS) && reader_deliver(r) < 0) {
    s->stop = 1;
    return NULL;
  }
  uint8_t *p = r->buf + r->off;
  p[0] = (uint8_t)(seg_len >> 8);
  p[1] = (uint8_t)seg_len;
  r->off += 2 + seg_len;
  r->count++;
  return p + 2;
}

static int fill_plain(batch_reader *r, int *fatal) {
  while (!reader_full(r)) {
    /* Read in place, after the room for the length prefix. */
    size_t n = tun_read_once(r, r->buf + r->off + 2, 65535, fatal);
    if (n == 0) break;
    reserve_record(r, n);
  }
  return 0;
}

static int fill_vnet(batch_reader *r, int *fatal) {
  tun_state *s = r->state;
  while (!reader_full(r)) {
    size_t n = tun_read_once(r, s->rbuf, sizeof s->rbuf, fatal);
    if (n == 0) break;
    tun_read t;
    drop_reason v = tun_offload_parse_ex(s->rbuf, n, &t, s->ipv6);
    if (v != DROP_NONE) {
      reader_stat_add(&r->stats.drops[v], 1);
      continue;
    }
    tun_offload_emit(&t, reserve_record, r);
    if (s->stop) return -1;
  }
  return 0;
}

static int fill(batch_reader *r, int *fatal) {
  tun_state *s = r->state;
  return s->vnet ? fill_vnet(r, fatal) : fill_plain(r, fatal);
}

batch_reader *tun_reader_create(int fd, int vnet, reader_deliver_fn deliver, void *ctx) {
  return tun_reader_create6(fd, vnet, 0, deliver, ctx);
}

batch_reader *tun_reader_create6(int fd, int vnet, int ipv6, reader_deliver_fn deliver, void *ctx) {
  tun_state *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->vnet = vnet;
  s->ipv6 = ipv6;
  batch_reader *r = reader_create(fd, TUN_BUF_BYTES, fill, s, deliver, ctx);
  if (!r) free(s);
  return r;
}

batch_reader *tun_reader_start(int fd, reader_deliver_fn deliver, void *ctx, int options, felt_err *err) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  int vnet = ioctl(fd, TUNGETIFF, &ifr) == 0 && (ifr.ifr_flags & IFF_VNET_HDR);
  batch_reader *r = tun_reader_create6(fd, vnet, (options & READER_IPV6) != 0, deliver, ctx);
  if (!r) return felt_errno(err, ENOMEM, "tunStartReader fd %d", fd), NULL;
  return reader_run(r, "tunStartReader", err) < 0 ? NULL : r;
}
