#include "routes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static departed_peer *departed_at(peer_registry *reg, uint32_t i) {
  return &reg->departed[(reg->departed_head + REGISTRY_DEPARTED_MAX - 1 - i) % REGISTRY_DEPARTED_MAX];
}

static int same_id(uint32_t ip_a, int has6_a, const uint8_t *ip6_a, uint32_t ip_b, int has6_b, const uint8_t *ip6_b) {
  if (ip_a != ip_b) return 0;
  if (ip_a != 0) return 1;
  return has6_a == has6_b && (!has6_a || memcmp(ip6_a, ip6_b, 16) == 0);
}

/* A peer that comes back while its counters are still among the departed takes them back. */
static void take_back_departed(peer_registry *reg, peer *p) {
  for (uint32_t i = 0; i < reg->departed_count; i++) {
    const departed_peer *d = departed_at(reg, i);
    if (!same_id(d->public_ip, d->has_ip6, d->public_ip6, p->public_ip, p->has_ip6, p->public_ip6)) continue;
    p->tx = departed_at(reg, i)->tx;
    p->rx = departed_at(reg, i)->rx;
    for (uint32_t j = i; j + 1 < reg->departed_count; j++) *departed_at(reg, j) = *departed_at(reg, j + 1);
    reg->departed_count--;
    return;
  }
}

static int keyed_by_ip6(const peer *p) { return p->public_ip == 0 && p->has_ip6; }

peer *registry_get_id(peer_registry *reg, const peer_id *id) {
  int by6 = id->public_ip == 0 && id->has_ip6;
  key6 k = by6 ? key6_from(id->public_ip6) : (key6){0, 0};
  peer *p = by6 ? map6_get(&reg->by_ip6, k) : u32map_get(&reg->by_ip, id->public_ip);
  if (p) {
    p->retired = 0; /* back before it was freed: same counters; reclaim unlists it */
    return p;
  }
  p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->public_ip = id->public_ip;
  if (by6) {
    p->has_ip6 = 1;
    memcpy(p->public_ip6, id->public_ip6, 16);
  }
  if ((by6 ? map6_put(&reg->by_ip6, k, p) : u32map_put(&reg->by_ip, id->public_ip, p)) < 0) {
    free(p);
    return NULL;
  }
  take_back_departed(reg, p);
  return p;
}

peer *registry_get(peer_registry *reg, uint32_t public_ip) {
  peer_id id = {.public_ip = public_ip};
  return registry_get_id(reg, &id);
}

void registry_retire(peer_registry *reg, peer *p, uint64_t gen, uint64_t now_ms) {
  p->retired = 1;
  p->retired_gen = gen;
  p->retired_ms = now_ms;
  if (p->listed) return;
  p->listed = 1;
  p->retired_next = reg->retired;
  reg->retired = p;
}

static void remember_departed(peer_registry *reg, const peer *p) {
  departed_peer *d = &reg->departed[reg->departed_head];
  d->public_ip = p->public_ip;
  d->has_ip6 = p->has_ip6;
  memcpy(d->public_ip6, p->public_ip6, 16);
  d->departed_ms = p->retired_ms;
  d->tx = p->tx;
  d->rx = p->rx;
  reg->departed_head = (reg->departed_head + 1) % REGISTRY_DEPARTED_MAX;
  if (reg->departed_count < REGISTRY_DEPARTED_MAX) reg->departed_count++;
  reg->departed_total++;
}

void registry_reclaim(peer_registry *reg, int (*can_free)(void *ctx, uint64_t gen), void *ctx) {
  peer **link = &reg->retired;
  while (*link) {
    peer *p = *link;
    if (!p->retired || can_free(ctx, p->retired_gen)) {
      *link = p->retired_next;
      p->listed = 0;
      if (p->retired) {
        remember_departed(reg, p);
        if (keyed_by_ip6(p)) map6_remove(&reg->by_ip6, key6_from(p->public_ip6));
        else u32map_remove(&reg->by_ip, p->public_ip);
        free(p);
      }
    } else {
      link = &p->retired_next;
    }
  }
}

const departed_peer *registry_departed(const peer_registry *reg, uint32_t i) {
  return departed_at((peer_registry *)reg, i);
}

uint32_t registry_live(const peer_registry *reg) { return reg->by_ip.count + reg->by_ip6.count; }

void registry_free(peer_registry *reg) {
  for (uint32_t i = 0; reg->by_ip.slots && i <= reg->by_ip.mask; i++) free(reg->by_ip.slots[i].value);
  for (uint32_t i = 0; reg->by_ip6.slots && i <= reg->by_ip6.mask; i++) free(reg->by_ip6.slots[i].value);
  reg->retired = NULL;
  u32map_free(&reg->by_ip);
  map6_free(&reg->by_ip6);
}

void rt_free(route_table *t) {
  if (!t) return;
  for (uint32_t i = 0; i < t->nlevels; i++) u32map_free(&t->levels[i].routes);
  for (uint32_t i = 0; i < t->nlevels6; i++) map6_free(&t->levels6[i].routes);
  u32map_free(&t->peers);
  map6_free(&t->peers6);
  free(t->peer_array);
  free(t->subnets);
  free(t->subnets6);
  free(t);
}

static void words_to_bytes(const uint32_t w[4], uint8_t out[16]) {
  for (int i = 0; i < 4; i++) {
    out[4 * i] = (uint8_t)(w[i] >> 24);
    out[4 * i + 1] = (uint8_t)(w[i] >> 16);
    out[4 * i + 2] = (uint8_t)(w[i] >> 8);
    out[4 * i + 3] = (uint8_t)w[i];
  }
}

static key6 words_key(const uint32_t w[4]) {
  return (key6){(uint64_t)w[0] << 32 | w[1], (uint64_t)w[2] << 32 | w[3]};
}

/* Route i's peer identity and IPv6 underlay address. */
static void route_id(const route_spec *r, const route_spec6 *r6, peer_id *id) {
  memset(id, 0, sizeof *id);
  id->public_ip = r->public_ip;
  if (r6 && (r6->flags & ROUTE6_PUBLIC)) {
    id->has_ip6 = 1;
    words_to_bytes(r6->pub, id->public_ip6);
  }
}

/* The table entry for route i's peer, made on first sight (in t->peers, or t->peers6 when it is
 * known by its IPv6 address only). NULL on ENOMEM. */
static rt_peer *table_peer(route_table *t, const peer_id *id, peer_registry *reg, int create) {
  int by6 = id->public_ip == 0 && id->has_ip6;
  rt_peer *p = by6 ? map6_get(&t->peers6, key6_from(id->public_ip6)) : u32map_get(&t->peers, id->public_ip);
  if (p || !create) return p;
  p = &t->peer_array[t->npeers++];
  p->peer = registry_get_id(reg, id);
  p->public_ip = id->public_ip;
  p->has_ip6 = id->has_ip6;
  memcpy(p->public_ip6, id->public_ip6, 16);
  if (!p->peer) return NULL;
  if (by6 ? map6_put(&t->peers6, key6_from(id->public_ip6), p) < 0 : u32map_put(&t->peers, id->public_ip, p) < 0)
    return NULL;
  return p;
}

/* Whether route i has an IPv4 subnet (every route of an IPv4-only table does). */
static int has_subnet4(const route_spec6 *routes6, size_t i) {
  return !routes6 || !(routes6[i].flags & ROUTE6_NO_SUBNET4);
}

route_table *rt_build(const route_spec *routes, size_t n, peer_registry *reg, felt_err *err) {
  return rt_build6(routes, NULL, n, reg, err);
}

route_table *rt_build6(const route_spec *routes, const route_spec6 *routes6, size_t n, peer_registry *reg,
                       felt_err *err) {
  route_table *t = calloc(1, sizeof *t);
  uint8_t *winner = calloc(n ? n : 1, 1); /* per route: bit 0 final for its IPv4 subnet, bit 1 for its IPv6 one */
  u32map dedup[33];
  map6 dedup6[129];
  memset(dedup, 0, sizeof dedup);
  memset(dedup6, 0, sizeof dedup6);
  if (!t || !winner) goto oom;

  for (size_t i = 0; i < n; i++) {
    if (has_subnet4(routes6, i) && routes[i].prefix_len > 32) {
      felt_errmsg(err, "engineSetRoutes: route %zu has prefix length %u", i, routes[i].prefix_len);
      goto fail;
    }
    if (routes6 && (routes6[i].flags & ROUTE6_SUBNET) && routes6[i].prefix_len > 128) {
      felt_errmsg(err, "engineSetRoutes: route %zu has IPv6 prefix length %u", i, routes6[i].prefix_len);
      goto fail;
    }
  }
  /* Later duplicates win: remember the last index per (prefix length, network); +1 so 0 means none. */
  for (size_t i = 0; i < n; i++) {
    uint32_t len = routes[i].prefix_len;
    if (has_subnet4(routes6, i) &&
        u32map_put(&dedup[len], routes[i].network & prefix_mask(len), (void *)(uintptr_t)(i + 1)) < 0)
      goto oom;
    if (routes6 && (routes6[i].flags & ROUTE6_SUBNET)) {
      uint32_t l6 = routes6[i].prefix_len;
      if (map6_put(&dedup6[l6], key6_mask(words_key(routes6[i].net), l6), (void *)(uintptr_t)(i + 1)) < 0) goto oom;
    }
  }
  size_t nroutes = 0, nroutes6 = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t len = routes[i].prefix_len;
    if (has_subnet4(routes6, i) && (uintptr_t)u32map_get(&dedup[len], routes[i].network & prefix_mask(len)) == i + 1) {
      winner[i] |= 1;
      nroutes++;
    }
    if (routes6 && (routes6[i].flags & ROUTE6_SUBNET)) {
      uint32_t l6 = routes6[i].prefix_len;
      if ((uintptr_t)map6_get(&dedup6[l6], key6_mask(words_key(routes6[i].net), l6)) == i + 1) {
        winner[i] |= 2;
        nroutes6++;
      }
    }
  }

  /* Peers, with their subnets of each family laid out contiguously. */
  size_t maxpeers = nroutes + nroutes6;
  t->peer_array = calloc(maxpeers ? maxpeers : 1, sizeof *t->peer_array);
  t->subnets = calloc(nroutes ? nroutes : 1, sizeof *t->subnets);
  t->subnets6 = calloc(nroutes6 ? nroutes6 : 1, sizeof *t->subnets6);
  if (!t->peer_array || !t->subnets || !t->subnets6 || u32map_init(&t->peers, maxpeers) < 0) goto oom;
  peer_id id;
  for (size_t i = 0; i < n; i++) {
    if (!winner[i]) continue;
    route_id(&routes[i], routes6 ? &routes6[i] : NULL, &id);
    rt_peer *p = table_peer(t, &id, reg, 1);
    if (!p) goto oom;
    if (id.has_ip6 && !p->has_ip6) { /* a later route names the peer's IPv6 underlay address */
      p->has_ip6 = 1;
      memcpy(p->public_ip6, id.public_ip6, 16);
    }
    if (winner[i] & 1) p->nsubnets++;
    if (winner[i] & 2) p->nsubnets6++;
  }
  uint32_t next = 0, next6 = 0;
  for (uint32_t i = 0; i < t->npeers; i++) {
    rt_peer *p = &t->peer_array[i];
    p->first_subnet = next;
    next += p->nsubnets;
    p->nsubnets = 0; /* refilled below */
    p->first_subnet6 = next6;
    next6 += p->nsubnets6;
    p->nsubnets6 = 0;
    /* A datagram from the peer's IPv6 address is from it, whatever it is known by. */
    if (p->has_ip6 && map6_put(&t->peers6, key6_from(p->public_ip6), p) < 0) goto oom;
  }
  for (size_t i = 0; i < n; i++) {
    if (!winner[i]) continue;
    route_id(&routes[i], routes6 ? &routes6[i] : NULL, &id);
    rt_peer *p = table_peer(t, &id, reg, 0);
    if (winner[i] & 1) {
      uint32_t mask = prefix_mask(routes[i].prefix_len);
      t->subnets[p->first_subnet + p->nsubnets++] = (rt_subnet){routes[i].network & mask, mask};
    }
    if (winner[i] & 2) {
      uint32_t l6 = routes6[i].prefix_len;
      t->subnets6[p->first_subnet6 + p->nsubnets6++] = (rt_subnet6){key6_mask(words_key(routes6[i].net), l6), l6};
    }
  }

  /* One level per distinct prefix length, longest first. */
  for (int len = 32; len >= 0; len--) {
    if (dedup[len].count == 0) continue;
    rt_level *lvl = &t->levels[t->nlevels++];
    lvl->mask = prefix_mask((uint32_t)len);
    if (u32map_init(&lvl->routes, dedup[len].count) < 0) goto oom;
  }
  for (int len = 128; len >= 0; len--) {
    if (dedup6[len].count == 0) continue;
    rt_level6 *lvl = &t->levels6[t->nlevels6++];
    lvl->prefix_len = (uint32_t)len;
    if (map6_init(&lvl->routes, dedup6[len].count) < 0) goto oom;
  }
  for (size_t i = 0; i < n; i++) {
    if (!winner[i]) continue;
    route_id(&routes[i], routes6 ? &routes6[i] : NULL, &id);
    rt_peer *p = table_peer(t, &id, reg, 0);
    if (winner[i] & 1) {
      uint32_t mask = prefix_mask(routes[i].prefix_len);
      for (uint32_t l = 0; l < t->nlevels; l++) {
        if (t->levels[l].mask != mask) continue;
        if (u32map_put(&t->levels[l].routes, routes[i].network & mask, p) < 0) goto oom;
        break;
      }
    }
    if (winner[i] & 2) {
      uint32_t l6 = routes6[i].prefix_len;
      for (uint32_t l = 0; l < t->nlevels6; l++) {
        if (t->levels6[l].prefix_len != l6) continue;
        if (map6_put(&t->levels6[l].routes, key6_mask(words_key(routes6[i].net), l6), p) < 0) goto oom;
        break;
      }
    }
  }
  t->nroutes = (uint32_t)nroutes;
  t->nroutes6 = (uint32_t)nroutes6;
  for (int i = 0; i <= 32; i++) u32map_free(&dedup[i]);
  for (int i = 0; i <= 128; i++) map6_free(&dedup6[i]);
  free(winner);
  return t;

oom:
  felt_errno(err, ENOMEM, "engineSetRoutes");
fail:
  for (int i = 0; i <= 32; i++) u32map_free(&dedup[i]);
  for (int i = 0; i <= 128; i++) map6_free(&dedup6[i]);
  free(winner);
  rt_free(t);
  return NULL;
}
