/* The open-addressing core shared by u32map and map6 (linear probing, power-of-two capacity, at
 * most half full, backward-shift deletion). A slot is a key of key_size bytes at offset 0 and a
 * void * value (NULL: empty) at value_off; keys compare bytewise, so key types have no padding.
 * Header-only so every build that links u32map.c/map6.c gets it without a new source file; with a
 * constant layout the compiler specialises each copy. Lookups stay in the typed headers (hot path). */
#ifndef FELT_HMAP_H
#define FELT_HMAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  size_t slot_size, key_size, value_off;
  uint32_t (*hash)(const void *key);
} hmap_layout;

/* The untyped view of a map: u32map and map6 copy their fields in and out of it. */
typedef struct {
  unsigned char *slots;
  uint32_t mask; /* capacity - 1 */
  uint32_t count;
} hmap;

static inline unsigned char *hmap_slot(const hmap_layout *l, const hmap *m, uint32_t i) {
  return m->slots + (size_t)i * l->slot_size;
}
static inline void *hmap_value(const hmap_layout *l, const unsigned char *slot) {
  void *v;
  memcpy(&v, slot + l->value_off, sizeof v);
  return v;
}
static inline void hmap_set_value(const hmap_layout *l, unsigned char *slot, void *v) {
  memcpy(slot + l->value_off, &v, sizeof v);
}

static inline int hmap_init(const hmap_layout *l, hmap *m, size_t expected) {
  size_t cap = 8;
  while (cap < expected * 2) cap *= 2;
  m->slots = calloc(cap, l->slot_size);
  if (!m->slots) return -1;
  m->mask = (uint32_t)(cap - 1);
  m->count = 0;
  return 0;
}

static inline void hmap_insert(const hmap_layout *l, hmap *m, const void *key, void *value) {
  for (uint32_t i = l->hash(key) & m->mask;; i = (i + 1) & m->mask) {
    unsigned char *s = hmap_slot(l, m, i);
    if (!hmap_value(l, s)) {
      memcpy(s, key, l->key_size);
      hmap_set_value(l, s, value);
      m->count++;
      return;
    }
    if (memcmp(s, key, l->key_size) == 0) {
      hmap_set_value(l, s, value);
      return;
    }
  }
}

static inline int hmap_put(const hmap_layout *l, hmap *m, const void *key, void *value) {
  if (!m->slots && hmap_init(l, m, 4) < 0) return -1;
  if ((size_t)(m->count + 1) * 2 > (size_t)m->mask + 1) {
    hmap bigger;
    if (hmap_init(l, &bigger, (size_t)m->count + 1) < 0) return -1;
    for (uint32_t i = 0; i <= m->mask; i++) {
      unsigned char *s = hmap_slot(l, m, i);
      if (hmap_value(l, s)) hmap_insert(l, &bigger, s, hmap_value(l, s));
    }
    free(m->slots);
    *m = bigger;
  }
  hmap_insert(l, m, key, value);
  return 0;
}

/* Backward-shift deletion: later entries of the probe run move up, so no tombstones are left. */
static inline void hmap_remove(const hmap_layout *l, hmap *m, const void *key) {
  if (!m->slots) return;
  uint32_t i = l->hash(key) & m->mask;
  for (;; i = (i + 1) & m->mask) {
    if (!hmap_value(l, hmap_slot(l, m, i))) return;
    if (memcmp(hmap_slot(l, m, i), key, l->key_size) == 0) break;
  }
  for (uint32_t j = i;;) {
    j = (j + 1) & m->mask;
    unsigned char *sj = hmap_slot(l, m, j);
    if (!hmap_value(l, sj)) break;
    uint32_t home = l->hash(sj) & m->mask;
    /* Entry j stays only if its home lies cyclically in (i, j]. */
    int stays = i < j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays) continue;
    memcpy(hmap_slot(l, m, i), sj, l->slot_size);
    i = j;
  }
  hmap_set_value(l, hmap_slot(l, m, i), NULL);
  m->count--;
}

#endif
