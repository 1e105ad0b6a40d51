/* Userspace GRO for the TUN write side: in-order TCP segments of one flow (received in one batch)
 * are merged into a super-packet written with a virtio_net_hdr (GSO_TCPV4, NEEDS_CSUM). Follows the
 * kernel's tcp_gro_receive rules as summarised in the perf notes: same addresses/ports/ACK, equal
 * ToS/TTL/DF, no IP options, no fragments, identical TCP options, flags exactly ACK or ACK|PSH,
 * adjacent sequence numbers, equal-size segments (a smaller one ends the train), PSH only last,
 * at most 65,535 bytes, and each segment's TCP checksum verified first. Everything else passes
 * through unchanged, and packets are written in arrival order per flow. */
#ifndef FELT_GRO_H
#define FELT_GRO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define GRO_MAX_ITEMS 1024
#define GRO_MAX_PIECES 2048
#define GRO_MAX_SEGS_PER_ITEM 64
#define GRO_FLOW_SLOTS 256

typedef struct {
  uint8_t *pkt;        /* first packet; its headers are patched in place at flush */
  uint32_t first_len;  /* bytes of the first packet */
  uint32_t total_len;  /* IP total length of the merged packet */
  uint32_t orig_bytes; /* sum of the original packets' lengths (for counters) */
  uint32_t next_seq;
  uint16_t hdr_len;    /* IP + TCP header bytes */
  uint16_t gso_size;
  uint16_t nsegs;
  uint8_t open;        /* further segments may be appended */
  uint8_t psh;         /* the last appended segment carried PSH */
  uint8_t v6;          /* TCP/IPv6 (merged as GSO_TCPV6) */
  int32_t first_piece, last_piece; /* appended payloads: a list through gro_batch.piece_next */
  void *owner;
} gro_item;

typedef struct {
  uint32_t gen;
  uint32_t item;
  uint32_t src, dst, ports;
} gro_flow_slot;

typedef struct {
  gro_item items[GRO_MAX_ITEMS];
  uint32_t nitems;
  uint8_t *piece_ptr[GRO_MAX_PIECES];
  uint32_t piece_len[GRO_MAX_PIECES];
  int32_t piece_next[GRO_MAX_PIECES];
  uint32_t npieces;
  gro_flow_slot flows[GRO_FLOW_SLOTS];
  uint32_t gen; /* bumps per flush: stale flow slots need no clearing */
  /* statistics */
  uint64_t merged_segments;
} gro_batch;

void gro_init(gro_batch *g);

/* True when no more packets fit before a flush. */
static inline int gro_full(const gro_batch *g) { return g->nitems >= GRO_MAX_ITEMS || g->npieces >= GRO_MAX_PIECES; }

/* Adds a validated IPv4 or IPv6 packet of exactly its total length. The caller flushes when gro_full(). */
void gro_add(gro_batch *g, uint8_t *pkt, uint32_t len, void *owner);

/* Writes one item: iov[0] is the 10-byte virtio header. Returns 0 on success, -1 on failure. */
typedef int (*gro_write_fn)(void *ctx, const struct iovec *iov, int iovcnt, uint32_t nsegs, uint32_t bytes,
                            void *owner);

/* Emits every item in order (merged ones with their headers patched) and empties the batch. */
void gro_flush(gro_batch *g, gro_write_fn emit, void *ctx);

#endif
