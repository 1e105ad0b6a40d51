/* Reader threads for the js engine: one reads the TUN device, one the underlay UDP socket, and
 * each hands packets over in batches. Pure C: the consumer (the N-API glue) supplies a deliver
 * function and acknowledges each batch, which bounds the batches in flight (backpressure instead
 * of unbounded memory). The two share the thread, batch and backpressure machinery (reader.c);
 * what a read is made into is theirs (reader_tun.c, reader_udp.c).
 *
 * TUN batches: `count` records of [u16 BE length][packet]. With a virtio header, a read goes
 * through the TUN offload layer (tun_offload.h): a super-packet arrives split, a partial
 * checksum completed, and a read that layer rejects is counted in stats.drops, not delivered.
 * UDP batches: `count` records of [u32 BE source IPv4][u16 BE length][u8 flags][u8 0][datagram];
 * on an IPv6 socket the source is the 16-byte IPv6 address instead.
 * A datagram the kernel coalesced (UDP GRO) arrives split back into its segments, one record
 * each, all with the same source. */
#ifndef FELT_READER_H
#define FELT_READER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "stats.h"

/* A batch is delivered when the fd has nothing more to read, or at these limits. */
#define READER_MAX_PACKETS 256
#define READER_MAX_BYTES (256 * 1024)
/* Batches delivered and not yet acknowledged: the reader keeps reading while JS works on these. */
#define READER_MAX_INFLIGHT 8

#define UDP_REC_HDR 8
/* The record header on an IPv6 socket: the source is 16 bytes. */
#define UDP_REC_HDR6 20
/* flags: the kernel reported the datagram truncated (MSG_TRUNC) */
#define UDP_REC_TRUNC 1

typedef struct batch_reader batch_reader;

/* Called on the reader thread with a malloc'd batch the callee now owns. Returns 0 when the batch
 * went to the consumer (which acknowledges it with reader_batch_done), 1 when the callee dropped it
 * (out of memory: its slot is taken back here), or -1 to stop the thread (the consumer is gone). */
typedef int (*reader_deliver_fn)(void *ctx, uint8_t *data, size_t len, uint32_t count);

/* Start options: the cluster carries IPv6 (a TUN reader parses IPv6 reads; without it they are
 * not-ip drops, exactly as in an IPv4-only cluster). */
#define READER_IPV6 1

/* Reads a TUN fd (non-blocking; with or without IFF_VNET_HDR, as the fd was opened). */
batch_reader *tun_reader_start(int fd, reader_deliver_fn deliver, void *ctx, int options, felt_err *err);

/* Reads a UDP socket (non-blocking, IPv4 or IPv6) with recvmmsg; splits UDP GRO datagrams. */
batch_reader *udp_reader_start(int fd, reader_deliver_fn deliver, void *ctx, int options, felt_err *err);

/* The consumer finished one delivered batch: lets the thread read another. Thread-safe. */
void reader_batch_done(batch_reader *r);

/* Counters, read without locking (approximate while the thread runs). */
typedef struct {
  uint64_t batches;         /* batches delivered */
  uint64_t records;         /* records delivered */
  uint64_t reads;           /* read/recvmmsg calls that returned data */
  uint64_t full_waits;      /* times the thread waited because READER_MAX_INFLIGHT batches were out */
  uint64_t drops[DROP_COUNT]; /* reads not delivered, by reason (the TUN offload layer's verdicts) */
} reader_stats;
void reader_get_stats(batch_reader *r, reader_stats *out);

/* Wakes and joins the thread, then frees the reader. The fd is not touched afterwards. */
void reader_stop(batch_reader *r);

#endif
