#include "routes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static departed_peer *departed_at(peer_registry *reg, uint32_t i) {
  return &reg->departed[(reg->departed_head + REGISTRY_DEPARTED_MAX - 1 - i) % REGISTRY_DEPARTED_MAX];
}

/* A peer that comes back while its counters are still among the departed takes them back. */
static void take_back_departed(peer_registry *reg, peer *p) {
  for (uint32_t i = 0; i < reg->departed_count; i++) {
    if (departed_at(reg, i)->public_ip != p->public_ip) continue;
    p->tx = departed_at(reg, i)->tx;
    p->rx = departed_at(reg, i)->rx;
    for (uint32_t j = i; j + 1 < reg->departed_count; j++) *departed_at(reg, j) = *departed_at(reg, j + 1);
    reg->departed_count--;
    return;
  }
}

peer *registry_get(peer_registry *reg, uint32_t public_ip) {
  peer *p = u32map_get(&reg->by_ip, public_ip);
  if (p) {
    p->retired = 0; /* back before it was freed: same counters; reclaim unlists it */
    return p;
  }
  p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->public_ip = public_ip;
  if (u32map_put(&reg->by_ip, public_ip, p) < 0) {
    free(p);
    return NULL;
  }
  take_back_departed(reg, p);
  return p;
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
        u32map_remove(&reg->by_ip, p->public_ip);
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

uint32_t registry_live(const peer_registry *reg) { return reg->by_ip.count; }

void registry_free(peer_registry *reg) {
  for (uint32_t i = 0; reg->by_ip.slots && i <= reg->by_ip.mask; i++) free(reg->by_ip.slots[i].value);
  reg->retired = NULL;
  u32map_free(&reg->by_ip);
}

void rt_free(route_table *t) {
  if (!t) return;
  for (uint32_t i = 0; i < t->nlevels; i++) u32map_free(&t->levels[i].routes);
  u32map_free(&t->peers);
  free(t->peer_array);
  free(t->subnets);
  free(t);
}

route_table *rt_build(const route_spec *routes, size_t n, peer_registry *reg, felt_err *err) {
  route_table *t = calloc(1, sizeof *t);
  uint32_t *winner = calloc(n ? n : 1, sizeof *winner); /* per route: 1 if it is the final one for its subnet */
  u32map dedup[33];
  memset(dedup, 0, sizeof dedup);
  if (!t || !winner) goto oom;

  for (size_t i = 0; i < n; i++) {
    if (routes[i].prefix_len > 32) {
      felt_errmsg(err, "engineSetRoutes: route %zu has prefix length %u", i, routes[i].prefix_len);
      goto fail;
    }
  }
  /* Later duplicates win: remember the last index per (prefix length, network); +1 so 0 means none. */
  for (size_t i = 0; i < n; i++) {
    uint32_t len = routes[i].prefix_len;
    if (u32map_put(&dedup[len], routes[i].network & prefix_mask(len), (void *)(uintptr_t)(i + 1)) < 0) goto oom;
  }
  size_t nroutes = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t len = routes[i].prefix_len;
    if ((uintptr_t)u32map_get(&dedup[len], routes[i].network & prefix_mask(len)) == i + 1) {
      winner[i] = 1;
      nroutes++;
    }
  }

  /* Peers, with their subnets laid out contiguously. */
  t->peer_array = calloc(nroutes ? nroutes : 1, sizeof *t->peer_array);
  t->subnets = calloc(nroutes ? nroutes : 1, sizeof *t->subnets);
  if (!t->peer_array || !t->subnets || u32map_init(&t->peers, nroutes) < 0) goto oom;
  for (size_t i = 0; i < n; i++) {
    if (!winner[i]) continue;
    rt_peer *p = u32map_get(&t->peers, routes[i].public_ip);
    if (!p) {
      p = &t->peer_array[t->npeers++];
      p->peer = registry_get(reg, routes[i].public_ip);
      if (!p->peer || u32map_put(&t->peers, routes[i].public_ip, p) < 0) goto oom;
    }
    p->nsubnets++;
  }
  uint32_t next = 0;
  for (uint32_t i = 0; i < t->npeers; i++) {
    t->peer_array[i].first_subnet = next;
    next += t->peer_array[i].nsubnets;
    t->peer_array[i].nsubnets = 0; /* refilled below */
  }
  for (size_t i = 0; i < n; i++) {
    if (!winner[i]) continue;
    rt_peer *p = u32map_get(&t->peers, routes[i].public_ip);
    uint32_t mask = prefix_mask(routes[i].prefix_len);
    t->subnets[p->first_subnet + p->nsubnets++] = (rt_subnet){routes[i].network & mask, mask};
  }

  /* One level per distinct prefix length, longest first. */
  for (int len = 32; len >= 0; len--) {
    if (dedup[len].count == 0) continue;
    rt_level *lvl = &t->levels[t->nlevels++];
    lvl->mask = prefix_mask((uint32_t)len);
    if (u32map_init(&lvl->routes, dedup[len].count) < 0) goto oom;
  }
  for (size_t i = 0; i < n; i++) {
    if (!winner[i]) continue;
    uint32_t mask = prefix_mask(routes[i].prefix_len);
    for (uint32_t l = 0; l < t->nlevels; l++) {
      if (t->levels[l].mask != mask) continue;
      if (u32map_put(&t->levels[l].routes, routes[i].network & mask, u32map_get(&t->peers, routes[i].public_ip)) < 0)
        goto oom;
      break;
    }
  }
  t->nroutes = (uint32_t)nroutes;
  for (int i = 0; i <= 32; i++) u32map_free(&dedup[i]);
  free(winner);
  return t;

oom:
  felt_errno(err, ENOMEM, "engineSetRoutes");
fail:
  for (int i = 0; i <= 32; i++) u32map_free(&dedup[i]);
  free(winner);
  rt_free(t);
  return NULL;
}
