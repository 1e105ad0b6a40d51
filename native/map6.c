#include "map6.h"

#include <stdlib.h>

#include "hmap.h"

static uint32_t hash_key(const void *key) {
  key6 k;
  memcpy(&k, key, sizeof k);
  return map6_hash(k);
}

static const hmap_layout layout = {sizeof(map6_slot), sizeof(key6), offsetof(map6_slot, value), hash_key};

static hmap view(const map6 *m) { return (hmap){(unsigned char *)m->slots, m->mask, m->count}; }
static void store(map6 *m, hmap h) {
  m->slots = (map6_slot *)(void *)h.slots;
  m->mask = h.mask;
  m->count = h.count;
}

int map6_init(map6 *m, size_t expected) {
  hmap h;
  if (hmap_init(&layout, &h, expected) < 0) return -1;
  store(m, h);
  return 0;
}

void map6_free(map6 *m) {
  free(m->slots);
  m->slots = NULL;
  m->count = 0;
}

int map6_put(map6 *m, key6 key, void *value) {
  hmap h = view(m);
  int rc = hmap_put(&layout, &h, &key, value);
  store(m, h);
  return rc;
}

void map6_remove(map6 *m, key6 key) {
  hmap h = view(m);
  hmap_remove(&layout, &h, &key);
  store(m, h);
}
