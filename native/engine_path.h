/* The native engine's packet path one step at a time, without threads or waits: the entry points
 * the thread loops of engine.c are made of, for the fuzz harness (native/fuzz/harness.c), which
 * allocates the thread state with engine_threads_init and points the syscalls (sys.h) at its
 * checkers. Not used by production code outside engine.c. */
#ifndef FELT_ENGINE_PATH_H
#define FELT_ENGINE_PATH_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "udp_batch.h"

#define ENGINE_TUN_READ_BURST 64 /* TUN reads per wake-up before the send batch is flushed */
#define ENGINE_TX_MAX_SEGS 64    /* UDP_MAX_SEGMENTS on older kernels */
#define ENGINE_TX_MAX_BYTES 65507 /* largest IPv4 UDP payload */
#define ENGINE_RX_MSGS UDP_BATCH_MAX
#define ENGINE_RX_BUF 65536 /* never truncates a (GRO) datagram */
#define ENGINE_ICMP_RATE 100
#define ENGINE_ICMP_BURST 100

/* Encap, as one wake-up of the encap loop: enter (route table, clock), any number of TUN reads
 * (buf: one read, virtio header first; modified in place), then flush (the send batch goes out). */
void engine_enc_enter(struct enc_thread *t);
void engine_enc_packet(struct enc_thread *t, uint8_t *buf, size_t n);
void engine_enc_flush(struct enc_thread *t);

/* Decap, as one wake-up of the decap loop: recvmmsg rounds until a short batch, each message
 * admitted and split, GRO flushed after every round. */
void engine_dec_drain(struct dec_thread *t);

#endif
