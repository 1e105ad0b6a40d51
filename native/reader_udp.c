/* The UDP reader: recvmmsg batches (udp_batch.h), one record per datagram, GRO trains split. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "reader_core.h"
#include "udp.h"
#include "udp_batch.h"

/* recvmmsg fills UDP_BATCH_MAX slots of 65,535 bytes (no datagram is truncated on receipt). */
#define UDP_SLOT_BYTES 65535
/* The most record space one message can take: a GRO train of 1-byte segments. */
#define UDP_MAX_MSG_SPACE ((size_t)UDP_SLOT_BYTES * (1 + UDP_REC_HDR6))
#define UDP_BUF_BYTES (READER_MAX_BYTES + UDP_MAX_MSG_SPACE)

typedef struct {
  udp_batch rx;
  uint8_t slots[(size_t)UDP_BATCH_MAX * UDP_SLOT_BYTES];
} udp_state;

/* [source][u16 BE length][flags][0][datagram]; the source is 4 bytes, or 16 on an IPv6 socket. */
static void put_record(batch_reader *r, const udp_msg *m, const uint8_t *data, size_t len, uint8_t flags) {
  udp_state *s = r->state;
  uint8_t *p = r->buf + r->off;
  size_t a = 4;
  if (s->rx.v6) {
    memcpy(p, m->src6, 16);
    a = 16;
  } else {
    p[0] = (uint8_t)(m->src >> 24);
    p[1] = (uint8_t)(m->src >> 16);
    p[2] = (uint8_t)(m->src >> 8);
    p[3] = (uint8_t)m->src;
  }
  p[a] = (uint8_t)(len >> 8);
  p[a + 1] = (uint8_t)len;
  p[a + 2] = flags;
  p[a + 3] = 0;
  memcpy(p + a + 4, data, len);
  r->off += a + 4 + len;
  r->count++;
}

/* Appends message i as one record per datagram (a truncated one as one flagged record). -1 to stop. */
static int append_message(batch_reader *r, const udp_batch *b, int i) {
  udp_msg m;
  udp_batch_msg(b, i, &m);
  size_t pieces = m.trunc ? 1 : m.ndgrams;
  size_t hdr = b->v6 ? UDP_REC_HDR6 : UDP_REC_HDR;
  if (r->off + m.len + pieces * hdr > r->cap && reader_deliver(r) < 0) return -1;
  if (pieces == 1) {
    put_record(r, &m, m.data, m.len, m.trunc ? UDP_REC_TRUNC : 0);
    return 0;
  }
  for (size_t at = 0; at < m.len; at += m.seg) put_record(r, &m, m.data + at, m.len - at < m.seg ? m.len - at : m.seg, 0);
  return 0;
}

static int fill(batch_reader *r, int *fatal) {
  udp_state *s = r->state;
  while (!reader_full(r)) {
    int n = udp_batch_recv(&s->rx, r->fd);
    if (n < 0) {
      if (errno == EBADF || errno == ENOTSOCK || errno == EINVAL || errno == EFAULT) *fatal = 1;
      break; /* EAGAIN: drained; anything else is transient (e.g. ENOMEM) */
    }
    reader_stat_add(&r->stats.reads, 1);
    for (int i = 0; i < n; i++)
      if (append_message(r, &s->rx, i) < 0) return -1;
    if (n < UDP_BATCH_MAX) break;
  }
  return 0;
}

batch_reader *udp_reader_create(int fd, reader_deliver_fn deliver, void *ctx) {
  udp_state *s = malloc(sizeof *s);
  if (!s) return NULL;
  if (udp_family(fd) == AF_INET6) udp_batch_init6(&s->rx, s->slots, UDP_SLOT_BYTES);
  else udp_batch_init(&s->rx, s->slots, UDP_SLOT_BYTES);
  batch_reader *r = reader_create(fd, UDP_BUF_BYTES, fill, s, deliver, ctx);
  if (!r) free(s);
  return r;
}

batch_reader *udp_reader_start(int fd, reader_deliver_fn deliver, void *ctx, int options, felt_err *err) {
  (void)options; /* the socket's family says what its records carry */
  batch_reader *r = udp_reader_create(fd, deliver, ctx);
  if (!r) return felt_errno(err, ENOMEM, "udpStartReader fd %d", fd), NULL;
  return reader_run(r, "udpStartReader", err) < 0 ? NULL : r;
}
