/* A thread that reads a TUN fd and hands packets over in batches of [u16 BE length][packet] records.
 * Pure C: the consumer (the N-API glue) supplies a deliver function and acknowledges each batch,
 * which bounds the number of batches in flight (backpressure instead of unbounded memory). */
#ifndef FELT_READER_H
#define FELT_READER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define READER_MAX_PACKETS 64
#define READER_MAX_BYTES (256 * 1024)
#define READER_MAX_INFLIGHT 4

typedef struct tun_reader tun_reader;

/* Called on the reader thread with a malloc'd batch the callee now owns. Returns 0, or -1 to stop
 * the thread (the consumer is gone). */
typedef int (*reader_deliver_fn)(void *ctx, uint8_t *data, size_t len, uint32_t count);

tun_reader *reader_start(int fd, reader_deliver_fn deliver, void *ctx, felt_err *err);

/* The consumer finished one delivered batch: lets the thread read another. Thread-safe. */
void reader_batch_done(tun_reader *r);

/* Wakes and joins the thread, then frees the reader. The fd is not touched afterwards. */
void reader_stop(tun_reader *r);

#endif
