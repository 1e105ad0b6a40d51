/* Route lookup cost in the native engine's table (routes.c) with 10 to 5,000 leases: the C half of
 * the lookup figure of bench/scale.ts, which compiles and runs this file. Not a fuzz harness; it
 * lives here because it links the same packet-path sources.
 *
 *   cc -O2 -std=gnu11 -D_GNU_SOURCE lookup_bench.c ../routes.c ../u32map.c ../map6.c ../err.c -o lookup_bench
 *   ./lookup_bench [SIZES...]     (default 10 100 1000 5000)
 *
 * Prints one JSON array: [{"routes":N,"nsPerLookup":x,"hitRate":h}, ...]. Destinations: half in
 * leased /24s, half elsewhere in 10.0.0.0/8, pre-generated so only the lookup is timed. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../routes.h"

#define NDST (1 << 16)
#define LOOKUPS (20 * 1000 * 1000)

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t rng = 0x12345678u;
static uint32_t rnd(void) { /* xorshift32 */
  rng ^= rng << 13;
  rng ^= rng >> 17;
  rng ^= rng << 5;
  return rng;
}

/* Subnet i of the bench: 10.(1 + i / 256).(i % 256).0/24, as bench/scale.ts writes them. */
static uint32_t subnet_of(uint32_t i) { return 0x0a000000u | (1 + i / 256) << 16 | (i % 256) << 8; }

static int measure(uint32_t n, int first) {
  route_spec *specs = calloc(n ? n : 1, sizeof *specs);
  uint32_t *dst = malloc(NDST * sizeof *dst);
  if (!specs || !dst) return -1;
  for (uint32_t i = 0; i < n; i++) specs[i] = (route_spec){subnet_of(i), 24, 0xac100000u + i + 1};
  peer_registry reg = {0};
  felt_err err;
  route_table *t = rt_build(specs, n, &reg, &err);
  if (!t) {
    fprintf(stderr, "rt_build: %s\n", err.msg);
    return -1;
  }
  for (uint32_t i = 0; i < NDST; i++)
    dst[i] = i % 2 ? subnet_of(rnd() % n) | (rnd() & 0xff) : 0x0a000000u | (rnd() & 0xffffff);
  uint64_t hits = 0;
  uintptr_t sink = 0;
  uint64_t t0 = now_ns();
  for (uint32_t i = 0; i < LOOKUPS; i++) {
    rt_peer *p = rt_lookup(t, dst[i & (NDST - 1)]);
    hits += p != NULL;
    sink ^= (uintptr_t)p;
  }
  uint64_t ns = now_ns() - t0;
  printf("%s{\"routes\":%u,\"nsPerLookup\":%.2f,\"hitRate\":%.3f,\"sink\":%u}", first ? "" : ",", n,
         (double)ns / LOOKUPS, (double)hits / LOOKUPS, (unsigned)(sink & 1));
  rt_free(t);
  registry_free(&reg);
  free(specs);
  free(dst);
  return 0;
}

int main(int argc, char **argv) {
  static const uint32_t defaults[] = {10, 100, 1000, 5000};
  printf("[");
  if (argc > 1) {
    for (int i = 1; i < argc; i++)
      if (measure((uint32_t)strtoul(argv[i], NULL, 10), i == 1) < 0) return 1;
  } else {
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++)
      if (measure(defaults[i], i == 0) < 0) return 1;
  }
  printf("]\n");
  return 0;
}
