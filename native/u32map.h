/* A small open-addressing hash map from uint32 keys to pointers (linear probing, power-of-two
 * capacity, at most half full). Built by one thread; lookups need no locks. */
#ifndef FELT_U32MAP_H
#define FELT_U32MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t key;
  void *value; /* NULL: empty slot */
} u32map_slot;

typedef struct {
  u32map_slot *slots;
  uint32_t mask; /* capacity - 1 */
  uint32_t count;
} u32map;

/* Room for at least `expected` entries without growing. Returns 0, or -1 on ENOMEM. */
int u32map_init(u32map *m, size_t expected);
void u32map_free(u32map *m);
/* Inserts or replaces; value must not be NULL. Grows as needed. Returns 0, or -1 on ENOMEM. */
int u32map_put(u32map *m, uint32_t key, void *value);
/* Removes key if present (never while another thread reads the map). */
void u32map_remove(u32map *m, uint32_t key);

static inline uint32_t u32map_hash(uint32_t key) {
  key ^= key >> 16;
  key *= 0x7feb352dU;
  key ^= key >> 15;
  key *= 0x846ca68bU;
  key ^= key >> 16;
  return key;
}

static inline void *u32map_get(const u32map *m, uint32_t key) {
  if (!m->slots) return NULL;
  for (uint32_t i = u32map_hash(key) & m->mask;; i = (i + 1) & m->mask) {
    const u32map_slot *s = &m->slots[i];
    if (!s->value) return NULL;
    if (s->key == key) return s->value;
  }
}

#endif
