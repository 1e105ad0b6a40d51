#include "map6.h"

#include <stdlib.h>

int map6_init(map6 *m, size_t expected) {
  size_t cap = 8;
  while (cap < expected * 2) cap *= 2;
  m->slots = calloc(cap, sizeof *m->slots);
  if (!m->slots) return -1;
  m->mask = (uint32_t)(cap - 1);
  m->count = 0;
  return 0;
}

void map6_free(map6 *m) {
  free(m->slots);
  m->slots = NULL;
  m->count = 0;
}

static void insert(map6 *m, key6 key, void *value) {
  for (uint32_t i = map6_hash(key) & m->mask;; i = (i + 1) & m->mask) {
    map6_slot *s = &m->slots[i];
    if (!s->value) {
      s->key = key;
      s->value = value;
      m->count++;
      return;
    }
    if (key6_eq(s->key, key)) {
      s->value = value;
      return;
    }
  }
}

int map6_put(map6 *m, key6 key, void *value) {
  if (!m->slots && map6_init(m, 4) < 0) return -1;
  if ((size_t)(m->count + 1) * 2 > (size_t)m->mask + 1) {
    map6 bigger;
    if (map6_init(&bigger, (size_t)m->count + 1) < 0) return -1;
    for (uint32_t i = 0; i <= m->mask; i++)
      if (m->slots[i].value) insert(&bigger, m->slots[i].key, m->slots[i].value);
    free(m->slots);
    *m = bigger;
  }
  insert(m, key, value);
  return 0;
}

/* Backward-shift deletion, as u32map_remove. */
void map6_remove(map6 *m, key6 key) {
  if (!m->slots) return;
  uint32_t i = map6_hash(key) & m->mask;
  for (;; i = (i + 1) & m->mask) {
    if (!m->slots[i].value) return;
    if (key6_eq(m->slots[i].key, key)) break;
  }
  for (uint32_t j = i;;) {
    j = (j + 1) & m->mask;
    if (!m->slots[j].value) break;
    uint32_t home = map6_hash(m->slots[j].key) & m->mask;
    int stays = i < j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays) continue;
    m->slots[i] = m->slots[j];
    i = j;
  }
  m->slots[i].value = NULL;
  m->count--;
}
