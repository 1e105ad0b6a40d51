/* The peer route table: longest-prefix match for encap and per-peer subnets for decap admission.
 * Immutable once built; the engine publishes a new table on every change (see engine.c for the
 * pointer swap and reclamation). Lookups cost one hash probe per distinct prefix length present
 * (one, with flannel's equal-size leases), independent of the number of leases; the same for
 * IPv6 subnets (one hash per distinct IPv6 prefix length). A peer is known by its IPv4 PublicIP,
 * or its IPv6 one when it has none; a datagram from either of its addresses is from it. */
#ifndef FELT_ROUTES_H
#define FELT_ROUTES_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "stats.h"
#include "map6.h"
#include "u32map.h"

typedef struct {
  uint32_t network;
  uint32_t prefix_len;
  uint32_t public_ip;
} route_spec;

/* A route's IPv6 side, beside its route_spec (same index): addresses as four 32-bit words, the
 * most significant first (host order each). */
#define ROUTE6_SUBNET 1 /* net/prefix_len hold the peer's IPv6 subnet */
#define ROUTE6_PUBLIC 2 /* pub holds the peer's IPv6 underlay address */
#define ROUTE6_NO_SUBNET4 4 /* the peer has no IPv4 subnet (IPv6-only overlay): the triple's network is unused */
typedef struct {
  uint32_t flags;
  uint32_t prefix_len;
  uint32_t net[4];
  uint32_t pub[4];
} route_spec6;

/* A peer's identity: its IPv4 PublicIP, or its IPv6 one when it has no IPv4 address. */
typedef struct {
  uint32_t public_ip;
  int has_ip6;
  uint8_t public_ip6[16];
} peer_id;

/* The counters of a peer freed after it lost its last lease. */
typedef struct {
  uint32_t public_ip;
  int has_ip6;
  uint8_t public_ip6[16];
  uint64_t departed_ms; /* when it left the route table (wall clock, ms) */
  dir_counters tx, rx;
} departed_peer;

#define REGISTRY_DEPARTED_MAX 64

/* Where peers (and their counters) come from: a registry that outlives route tables. A peer that
 * holds no lease any more is retired, then freed once no data thread can still reach it; its
 * final counters stay visible among the REGISTRY_DEPARTED_MAX most recently departed. Memory is
 * bounded by the peers holding leases, however many come and go. Control thread only. */
typedef struct {
  u32map by_ip;   /* every live peer (current or retired, not yet freed) with an IPv4 identity */
  map6 by_ip6;    /* ... and those identified by their IPv6 PublicIP */
  peer *retired;  /* retired peers not yet freed */
  departed_peer departed[REGISTRY_DEPARTED_MAX]; /* a ring: newest at departed_head - 1 */
  uint32_t departed_head, departed_count;
  uint64_t departed_total; /* peers freed so far */
} peer_registry;

/* The peer for a PublicIP, created if new (with its counters back if it is among the recently
 * departed), brought back if retired. NULL on ENOMEM. */
peer *registry_get(peer_registry *reg, uint32_t public_ip);
/* The same for any identity (an IPv4 one when public_ip != 0 or it has no IPv6 address). */
peer *registry_get_id(peer_registry *reg, const peer_id *id);
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
  uint32_t first_subnet6; /* index into route_table.subnets6 */
  uint32_t nsubnets6;
  uint32_t public_ip;     /* IPv4 underlay address, 0 = none */
  int has_ip6;            /* an IPv6 underlay address: */
  uint8_t public_ip6[16];
} rt_peer;

typedef struct {
  key6 network;
  uint32_t prefix_len;
} rt_subnet6;

typedef struct {
  uint32_t prefix_len;
  map6 routes; /* network -> rt_peer* */
} rt_level6;

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
  rt_level6 levels6[129]; /* longest prefix first; nlevels6 used */
  uint32_t nlevels6;
  map6 peers6; /* IPv6 public address -> rt_peer* */
  rt_subnet6 *subnets6;
  uint32_t nroutes6;
  struct route_table *retired_next; /* reclamation list (engine.c) */
  uint64_t retired_gen;
} route_table;

/* Builds a table; duplicate subnets: the later route wins. NULL with err set on failure. */
route_table *rt_build(const route_spec *routes, size_t n, peer_registry *reg, felt_err *err);
/* The same with each route's IPv6 side (routes6 may be NULL: an IPv4-only table). */
route_table *rt_build6(const route_spec *routes, const route_spec6 *routes6, size_t n, peer_registry *reg,
                       felt_err *err);
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

/* IPv6: the peer whose subnet6 holds dst (16 bytes; longest prefix), or NULL. */
static inline rt_peer *rt_lookup6(const route_table *t, const uint8_t *dst) {
  key6 k = key6_from(dst);
  for (uint32_t i = 0; i < t->nlevels6; i++) {
    rt_peer *p = map6_get(&t->levels6[i].routes, key6_mask(k, t->levels6[i].prefix_len));
    if (p) return p;
  }
  return NULL;
}

/* The table's entry for an IPv6 underlay address (16 bytes), or NULL for a stranger. */
static inline rt_peer *rt_find_peer6(const route_table *t, const uint8_t *public_ip6) {
  return map6_get(&t->peers6, key6_from(public_ip6));
}

/* Is src (16 bytes) inside an IPv6 subnet leased to this peer? */
static inline int rt_peer_admits6(const route_table *t, const rt_peer *p, const uint8_t *src) {
  key6 k = key6_from(src);
  for (uint32_t i = 0; i < p->nsubnets6; i++) {
    const rt_subnet6 *s = &t->subnets6[p->first_subnet6 + i];
    if (key6_eq(key6_mask(k, s->prefix_len), s->network)) return 1;
  }
  return 0;
}

#endif
