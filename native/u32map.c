#include "u32map.h"

#include <stdlib.h>

#include "hmap.h"

static uint32_t hash_key(const void *key) {
  uint32_t k;
  memcpy(&k, key, sizeof k);
  return u32map_hash(k);
}

static const hmap_layout layout = {sizeof(u32map_slot), sizeof(uint32_t), offsetof(u32map_slot, value), hash_key};

static hmap view(const u32map *m) { return (hmap){(unsigned char *)m->slots, m->mask, m->count}; }
static void store(u32map *m, hmap h) {
  m->slots = (u32map_slot *)(void *)h.slots;
  m->mask = h.mask;
  m->count = h.count;
}

int u32map_init(u32map *m, size_t expected) {
  hmap h;
  if (hmap_init(&layout, &h, expected) < 0) return -1;
  store(m, h);
  return 0;
}

void u32map_free(u32map *m) {
  free(m->slots);
  m->slots = NULL;
  m->count = 0;
}

int u32map_put(u32map *m, uint32_t key, void *value) {
  hmap h = view(m);
  int rc = hmap_put(&layout, &h, &key, value);
  store(m, h);
  return rc;
}

void u32map_remove(u32map *m, uint32_t key) {
  hmap h = view(m);
  hmap_remove(&layout, &h, &key);
  store(m, h);
}
