#include "reader.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Room for the byte budget plus one maximal packet, so no read is ever truncated. */
#define READER_BUF_BYTES (READER_MAX_BYTES + 2 + 65535)

struct tun_reader {
  int fd;
  int wake_fd;
  reader_deliver_fn deliver;
  void *ctx;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int inflight; /* batches delivered and not yet acknowledged; under lock */
  int stopping; /* under lock */
  uint8_t *buf;
};

/* Waits until fewer than READER_MAX_INFLIGHT batches are outstanding. Returns 0, or -1 when stopping. */
static int wait_for_capacity(tun_reader *r) {
  pthread_mutex_lock(&r->lock);
  while (!r->stopping && r->inflight >= READER_MAX_INFLIGHT) pthread_cond_wait(&r->cond, &r->lock);
  int stop = r->stopping;
  pthread_mutex_unlock(&r->lock);
  return stop ? -1 : 0;
}

/* Reads packets until EAGAIN or the batch is full. Returns the record bytes; *count the packets;
 * *fatal is set when the fd is unusable. */
static size_t fill_batch(tun_reader *r, uint32_t *count, int *fatal) {
  size_t off = 0;
  *count = 0;
  while (*count < READER_MAX_PACKETS && off < READER_MAX_BYTES) {
    ssize_t n = read(r->fd, r->buf + off + 2, 65535);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) *fatal = 1;
      break;
    }
    if (n == 0) break;
    r->buf[off] = (uint8_t)(n >> 8);
    r->buf[off + 1] = (uint8_t)n;
    off += 2 + (size_t)n;
    (*count)++;
  }
  return off;
}

static void *reader_main(void *arg) {
  tun_reader *r = arg;
  for (;;) {
    if (wait_for_capacity(r) < 0) break;
    struct pollfd pfd[2] = {{.fd = r->fd, .events = POLLIN}, {.fd = r->wake_fd, .events = POLLIN}};
    int n = poll(pfd, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pfd[1].revents) break;
    if (pfd[0].revents & (POLLNVAL | POLLERR | POLLHUP)) break;
    if (!(pfd[0].revents & POLLIN)) continue;

    uint32_t count;
    int fatal = 0;
    size_t len = fill_batch(r, &count, &fatal);
    if (count > 0) {
      uint8_t *copy = malloc(len);
      if (copy) {
        memcpy(copy, r->buf, len);
        pthread_mutex_lock(&r->lock);
        r->inflight++;
        pthread_mutex_unlock(&r->lock);
        if (r->deliver(r->ctx, copy, len, count) < 0) break;
      }
    }
    if (fatal) break;
  }
  return NULL;
}

tun_reader *reader_start(int fd, reader_deliver_fn deliver, void *ctx, felt_err *err) {
  tun_reader *r = calloc(1, sizeof *r);
  if (!r) return felt_errno(err, ENOMEM, "tunStartReader"), NULL;
  r->fd = fd;
  r->deliver = deliver;
  r->ctx = ctx;
  r->buf = malloc(READER_BUF_BYTES);
  r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (!r->buf || r->wake_fd < 0) {
    felt_errno(err, r->buf ? errno : ENOMEM, "tunStartReader fd %d", fd);
    goto fail;
  }
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->cond, NULL);
  int rc = pthread_create(&r->thread, NULL, reader_main, r);
  if (rc != 0) {
    felt_errno(err, rc, "tunStartReader fd %d: pthread_create", fd);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    goto fail;
  }
  return r;
fail:
  if (r->wake_fd >= 0) close(r->wake_fd);
  free(r->buf);
  free(r);
  return NULL;
}

void reader_batch_done(tun_reader *r) {
  pthread_mutex_lock(&r->lock);
  if (r->inflight > 0) r->inflight--;
  pthread_cond_signal(&r->cond);
  pthread_mutex_unlock(&r->lock);
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
  free(r->buf);
  free(r);
}
