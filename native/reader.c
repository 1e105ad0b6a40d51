/* The machinery both reader threads share: the thread and its wake-up, the batch being filled,
 * delivery to the consumer, and backpressure (at most READER_MAX_INFLIGHT batches out). */
#include "reader_core.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Waits until fewer than READER_MAX_INFLIGHT batches are outstanding. Returns 0, or -1 when stopping. */
static int wait_for_capacity(batch_reader *r) {
  pthread_mutex_lock(&r->lock);
  if (!r->stopping && r->inflight >= READER_MAX_INFLIGHT) reader_stat_add(&r->stats.full_waits, 1);
  while (!r->stopping && r->inflight >= READER_MAX_INFLIGHT) pthread_cond_wait(&r->cond, &r->lock);
  int stop = r->stopping;
  if (!stop) r->inflight++;
  pthread_mutex_unlock(&r->lock);
  return stop ? -1 : 0;
}

int reader_deliver(batch_reader *r) {
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
  reader_stat_add(&r->stats.batches, 1);
  reader_stat_add(&r->stats.records, count);
  int rc = r->deliver(r->ctx, copy, len, count);
  if (rc > 0) {
    reader_batch_done(r); /* dropped by the consumer: its slot given back */
    return 0;
  }
  return rc;
}

int reader_step(batch_reader *r) {
  int fatal = 0;
  if (r->fill(r, &fatal) < 0 || reader_deliver(r) < 0 || fatal) return -1;
  return 0;
}

static void *reader_main(void *arg) {
  batch_reader *r = arg;
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
    if (reader_step(r) < 0) break;
  }
  return NULL;
}

batch_reader *reader_create(int fd, size_t cap, reader_fill_fn fill, void *state, reader_deliver_fn deliver,
                            void *ctx) {
  batch_reader *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->fd = fd;
  r->wake_fd = -1;
  r->fill = fill;
  r->state = state;
  r->deliver = deliver;
  r->ctx = ctx;
  r->cap = cap;
  r->buf = malloc(cap);
  if (!r->buf) {
    free(r);
    return NULL;
  }
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->cond, NULL);
  return r;
}

void reader_free(batch_reader *r) {
  if (r->wake_fd >= 0) close(r->wake_fd);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->cond);
  free(r->state);
  free(r->buf);
  free(r);
}

int reader_run(batch_reader *r, const char *what, felt_err *err) {
  r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (r->wake_fd < 0) {
    felt_errno(err, errno, "%s fd %d", what, r->fd);
    reader_free(r);
    return -1;
  }
  int rc = pthread_create(&r->thread, NULL, reader_main, r);
  if (rc != 0) {
    felt_errno(err, rc, "%s fd %d: pthread_create", what, r->fd);
    reader_free(r);
    return -1;
  }
  r->started = 1;
  return 0;
}

void reader_batch_done(batch_reader *r) {
  pthread_mutex_lock(&r->lock);
  if (r->inflight > 0) r->inflight--;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
}

void reader_get_stats(batch_reader *r, reader_stats *out) {
  out->batches = __atomic_load_n(&r->stats.batches, __ATOMIC_RELAXED);
  out->records = __atomic_load_n(&r->stats.records, __ATOMIC_RELAXED);
  out->reads = __atomic_load_n(&r->stats.reads, __ATOMIC_RELAXED);
  out->full_waits = __atomic_load_n(&r->stats.full_waits, __ATOMIC_RELAXED);
  for (int i = 0; i < DROP_COUNT; i++) out->drops[i] = __atomic_load_n(&r->stats.drops[i], __ATOMIC_RELAXED);
}

void reader_stop(batch_reader *r) {
  pthread_mutex_lock(&r->lock);
  r->stopping = 1;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
  if (r->started) {
    uint64_t one = 1;
    ssize_t w = write(r->wake_fd, &one, sizeof one);
    (void)w; /* an eventfd write only fails on overflow, and the thread checks `stopping` anyway */
    pthread_join(r->thread, NULL);
  }
  reader_free(r);
}
