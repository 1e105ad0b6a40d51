/* The peer route table: longest-prefix match for encap and per-peer subnets for decap admission.
 * Immutable once built; the engine publishes a new table on every change (see engine.c for the
 * pointer swap and reclamation). Lookups cost one hash probe per distinct prefix length present
 * (one, with flannel's equal-size leases), independent of the number of leases. */
#ifndef FELT_ROUTES_H
#define FELT_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "stats.h"
#include "u32map.h"

typedef struct {
  uint32_t network;
  uint32_t prefix_len;
  uint32_t public_ip;
} route_spec;

/* The counters of a peer freed after it lost its last lease. */
typedef struct {
  uint32_t public_ip;
  uint64_t departed_ms; /* when it left the route table (wall clock, ms) */
  dir_counters tx, rx;
} departed_peer;

#define REGISTRY_DEPARTED_MAX 64

/* Where peers (and their counters) come from: a registry that outlives route tables. A peer that
 * holds no lease any more is retired, then freed once no data thread can still reach it; its
 * final counters stay visible among the REGISTRY_DEPARTED_MAX most recently departed. Memory is
 * bounded by the peers holding leases, however many come and go. Control thread only. */
typedef struct {
  u32map by_ip;   /* every live peer (current or retired, not yet freed) */
  peer *retired;  /* retired peers not yet freed */
  departed_peer departed[REGISTRY_DEPARTED_MAX]; /* a ring: newest at departed_head - 1 */
  uint32_t departed_head, departed_count;
  uint64_t departed_total; /* peers freed so far */
} peer_registry;

/* The peer for a PublicIP, created if new (with its counters back if it is among the recently
 * departed), brought back if retired. NULL on ENOMEM. */
peer *registry_get(peer_registry *reg, uint32_t public_ip);
/* p has left the route table published at generation gen. */
void registry_retire(peer_registry *reg, peer *p, uint64_t gen, uint64_t now_ms);
/* Frees retired peers whose generation can_free() says every thread has passed. */
void registry_reclaim(peer_registry *reg, int (*can_free)(void *ctx, uint64_t gen), void *ctx);
/* The i-th most recently departed peer (i < departed_count). */
const departed_peer *registry_departed(const peer_registry *reg, uint32_t i);
uint32_t registry_live(const peer_registry *reg);
void registry_free(peer_registry *reg);

typedef struct {
  peer *peer;
  uint32_t first_subnet; /* index into route_table.subnets */
  uint32_t nsubnets;
} rt_peer;

typedef struct {
  uint32_t network;
  uint32_t mask;
} rt_subnet;

typedef struct {
  uint32_t mask;
  u32map routes; /* network -> rt_peer* */
} rt_level;

typedef struct route_table {
  rt_level levels[33]; /* longest prefix first; nlevels used */
  uint32_t nlevels;
  u32map peers; /* public_ip -> rt_peer* */
  rt_peer *peer_array;
  uint32_t npeers;
  rt_subnet *subnets;
  uint32_t nroutes;
  struct route_table *retired_next; /* reclamation list (engine.c) */
  uint64_t retired_gen;
} route_table;

/* Builds a table; duplicate subnets: the later route wins. NULL with err set on failure. */
route_table *rt_build(const route_spec *routes, size_t n, peer_registry *reg, felt_err *err);
void rt_free(route_table *t);

static inline uint32_t prefix_mask(uint32_t len) { return len == 0 ? 0 : 0xffffffffu << (32 - len); }

/* The peer whose subnet holds dst (longest prefix), or NULL. */
static inline rt_peer *rt_lookup(const route_table *t, uint32_t dst) {
  for (uint32_t i = 0; i < t->nlevels; i++) {
    rt_peer *p = u32map_get(&t->levels[i].routes, dst & t->levels[i].mask);
    if (p) return p;
  }
  return NULL;
}

/* The table's entry for a PublicIP, or NULL for a stranger. */
static inline rt_peer *rt_find_peer(const route_table *t, uint32_t public_ip) {
  return u32map_get(&t->peers, public_ip);
}

/* Is src inside a subnet leased to this peer? */
static inline int rt_peer_admits(const route_table *t, const rt_peer *p, uint32_t src) {
  for (uint32_t i = 0; i < p->nsubnets; i++) {
    const rt_subnet *s = &t->subnets[p->first_subnet + i];
    if ((src & s->mask) == s->network) return 1;
  }
  return 0;
}

#endif
