#include "u32map.h"

#include <stdlib.h>

int u32map_init(u32map *m, size_t expected) {
  size_t cap = 8;
  while (cap < expected * 2) cap *= 2;
  m->slots = calloc(cap, sizeof *m->slots);
  if (!m->slots) return -1;
  m->mask = (uint32_t)(cap - 1);
  m->count = 0;
  return 0;
}

void u32map_free(u32map *m) {
  free(m->slots);
  m->slots = NULL;
  m->count = 0;
}

static void insert(u32map *m, uint32_t key, void *value) {
  for (uint32_t i = u32map_hash(key) & m->mask;; i = (i + 1) & m->mask) {
    u32map_slot *s = &m->slots[i];
    if (!s->value) {
      s->key = key;
      s->value = value;
      m->count++;
      return;
    }
    if (s->key == key) {
      s->value = value;
      return;
    }
  }
}

int u32map_put(u32map *m, uint32_t key, void *value) {
  if (!m->slots && u32map_init(m, 4) < 0) return -1;
  if ((size_t)(m->count + 1) * 2 > (size_t)m->mask + 1) {
    u32map bigger;
    if (u32map_init(&bigger, (size_t)m->count + 1) < 0) return -1;
    for (uint32_t i = 0; i <= m->mask; i++)
      if (m->slots[i].value) insert(&bigger, m->slots[i].key, m->slots[i].value);
    free(m->slots);
    *m = bigger;
  }
  insert(m, key, value);
  return 0;
}

/* Backward-shift deletion: later entries of the probe run move up, so no tombstones are left. */
void u32map_remove(u32map *m, uint32_t key) {
  if (!m->slots) return;
  uint32_t i = u32map_hash(key) & m->mask;
  for (;; i = (i + 1) & m->mask) {
    if (!m->slots[i].value) return;
    if (m->slots[i].key == key) break;
  }
  for (uint32_t j = i;;) {
    j = (j + 1) & m->mask;
    if (!m->slots[j].value) break;
    uint32_t home = u32map_hash(m->slots[j].key) & m->mask;
    /* Entry j stays only if its home lies cyclically in (i, j]. */
    int stays = i < j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays) continue;
    m->slots[i] = m->slots[j];
    i = j;
  }
  m->slots[i].value = NULL;
  m->count--;
}
