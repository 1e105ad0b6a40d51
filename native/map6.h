/* The IPv6 twin of u32map.h: an open-addressing hash map from 128-bit keys (16 bytes, network
 * order) to pointers. Built by one thread; lookups need no locks and no allocation. */
#ifndef FELT_MAP6_H
#define FELT_MAP6_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  uint64_t hi, lo;
} key6;

typedef struct {
  key6 key;
  void *value; /* NULL: empty slot */
} map6_slot;

typedef struct {
  map6_slot *slots;
  uint32_t mask;
  uint32_t count;
} map6;

static inline key6 key6_from(const uint8_t *a) {
  key6 k = {0, 0};
  for (int i = 0; i < 8; i++) k.hi = k.hi << 8 | a[i];
  for (int i = 8; i < 16; i++) k.lo = k.lo << 8 | a[i];
  return k;
}
static inline void key6_to(key6 k, uint8_t *a) {
  for (int i = 7; i >= 0; i--, k.hi >>= 8) a[i] = (uint8_t)k.hi;
  for (int i = 15; i >= 8; i--, k.lo >>= 8) a[i] = (uint8_t)k.lo;
}
/* The first `len` bits of k (len 0..128). */
static inline key6 key6_mask(key6 k, uint32_t len) {
  if (len == 0) return (key6){0, 0};
  if (len < 64) return (key6){k.hi & (~0ull << (64 - len)), 0};
  if (len == 64) return (key6){k.hi, 0};
  if (len < 128) return (key6){k.hi, k.lo & (~0ull << (128 - len))};
  return k;
}
static inline int key6_eq(key6 a, key6 b) { return a.hi == b.hi && a.lo == b.lo; }

static inline uint32_t map6_hash(key6 k) {
  uint64_t x = k.hi * 0x9e3779b97f4a7c15ull ^ k.lo;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (uint32_t)x;
}

int map6_init(map6 *m, size_t expected);
void map6_free(map6 *m);
int map6_put(map6 *m, key6 key, void *value);
void map6_remove(map6 *m, key6 key);

static inline void *map6_get(const map6 *m, key6 key) {
  if (!m->slots) return NULL;
  for (uint32_t i = map6_hash(key) & m->mask;; i = (i + 1) & m->mask) {
    const map6_slot *s = &m->slots[i];
    if (!s->value) return NULL;
    if (key6_eq(s->key, key)) return s->value;
  }
}

#endif
