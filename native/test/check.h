/* The CHECK macro and counters shared by the unit test files (unit.c owns the counters). */
#ifndef FELT_TEST_CHECK_H
#define FELT_TEST_CHECK_H

#include <stdio.h>

extern int passed, failed;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      passed++;                                            \
    } else {                                               \
      failed++;                                            \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                        \
      fprintf(stderr, "\n");                               \
    }                                                      \
  } while (0)

/* unit6.c: the IPv6 packet code. */
void test_ipv6(void);

#endif
