/* Inside the reader threads (reader.c), for the two kinds (reader_tun.c, reader_udp.c) and for
 * tests that drive a reader without its thread (reader_create + reader_step). */
#ifndef FELT_READER_CORE_H
#define FELT_READER_CORE_H

#include <pthread.h>

#include "reader.h"

/* One wake-up's reading into the batch: returns -1 to stop the thread; sets *fatal when the fd is
 * unusable. It may deliver early (reader_deliver) when the batch fills. */
typedef int (*reader_fill_fn)(batch_reader *r, int *fatal);

struct batch_reader {
  int fd;
  int wake_fd;
  reader_fill_fn fill;
  void *state; /* the kind's own, freed with the reader */
  reader_deliver_fn deliver;
  void *ctx;
  pthread_t thread;
  int started;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int inflight; /* batches delivered and not yet acknowledged; under lock */
  int stopping; /* under lock */
  /* The batch being filled: reader thread only. */
  uint8_t *buf;
  size_t cap;
  size_t off;
  uint32_t count;
  /* Written by the thread with relaxed atomics, read by reader_get_stats. */
  reader_stats stats;
};

static inline void reader_stat_add(uint64_t *c, uint64_t n) { __atomic_fetch_add(c, n, __ATOMIC_RELAXED); }
static inline int reader_full(const batch_reader *r) {
  return r->count >= READER_MAX_PACKETS || r->off >= READER_MAX_BYTES;
}

/* A reader without a thread; cap: batch buffer bytes; state: freed by reader_free. NULL on ENOMEM. */
batch_reader *reader_create(int fd, size_t cap, reader_fill_fn fill, void *state, reader_deliver_fn deliver,
                            void *ctx);
/* One wake-up's work: fill, then deliver what was read. -1 when the thread should stop. */
int reader_step(batch_reader *r);
/* Hands the current batch (if any) to the consumer and starts an empty one. -1 to stop. */
int reader_deliver(batch_reader *r);
/* Starts the thread (r from reader_create). 0, or -1 with err set (r is then freed). */
int reader_run(batch_reader *r, const char *what, felt_err *err);
/* The two kinds, without their thread. */
batch_reader *tun_reader_create(int fd, int vnet, reader_deliver_fn deliver, void *ctx);
/* ipv6: IPv6 reads are parsed (READER_IPV6). */
batch_reader *tun_reader_create6(int fd, int vnet, int ipv6, reader_deliver_fn deliver, void *ctx);
batch_reader *udp_reader_create(int fd, reader_deliver_fn deliver, void *ctx);
/* Frees a reader whose thread never started or has been joined. */
void reader_free(batch_reader *r);

#endif
