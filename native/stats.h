/* Counters of the native engine. Each counter has exactly one writer thread, so updates are a
 * relaxed load + store (no locked instructions); the stats reader loads them relaxed. */
#ifndef FELT_STATS_H
#define FELT_STATS_H

#include <stdint.h>

/* Same order and names as DROP_REASONS in src/datapath/types.ts (checked at load time). */
typedef enum {
  DROP_NO_ROUTE,
  DROP_UNKNOWN_PEER,
  DROP_SPOOFED_SOURCE,
  DROP_MALFORMED,
  DROP_TRUNCATED,
  DROP_TTL_EXPIRED,
  DROP_OVERSIZE,
  DROP_NOT_IP,
  DROP_SEND_ERROR,
  DROP_TUN_WRITE_ERROR,
  DROP_OWN_SUBNET,
  DROP_EXT_HEADER,
  DROP_NO_UNDERLAY,
  DROP_COUNT,
  DROP_NONE = -1,
} drop_reason;

extern const char *const drop_reason_names[DROP_COUNT];

typedef uint64_t counter;

static inline void ctr_add(counter *c, uint64_t n) {
  __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
static inline void ctr_set(counter *c, uint64_t v) { __atomic_store_n(c, v, __ATOMIC_RELAXED); }
static inline uint64_t ctr_get(const counter *c) { return __atomic_load_n(c, __ATOMIC_RELAXED); }

/* One direction of one peer: written only by that direction's thread. */
typedef struct {
  counter packets;
  counter bytes;
  counter last_ms;
  counter drops[DROP_COUNT];
} dir_counters;

/* A peer's counters live while it holds a lease, and until no thread can still reach it
 * afterwards (routes.h: the registry frees departed peers by table generation). */
typedef struct peer {
  uint32_t public_ip;       /* its identity, or 0 when it has no IPv4 underlay address ... */
  uint8_t public_ip6[16];   /* ... then this one (has_ip6) */
  int has_ip6;
  dir_counters tx; /* encap thread */
  dir_counters rx; /* decap thread */
  /* Registry bookkeeping: control thread only. */
  int retired;              /* in no current route table */
  int listed;               /* on the registry's retired list */
  uint64_t retired_gen;     /* the table generation it left at */
  uint64_t retired_ms;      /* when (wall clock, ms) */
  struct peer *retired_next;
} peer;

#endif
