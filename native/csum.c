#include "csum.h"

/* 32-bit words into a 64-bit accumulator: no carry handling needed for any IP packet size. */
uint64_t csum_add(uint64_t sum, const void *data, size_t len) {
  const uint8_t *p = data;
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  while (len >= 16) {
    uint32_t w[4];
    memcpy(w, p, 16);
    s0 += w[0];
    s1 += w[1];
    s2 += w[2];
    s3 += w[3];
    p += 16;
    len -= 16;
  }
  sum += s0 + s1 + s2 + s3;
  while (len >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    sum += w;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    sum += w;
    p += 2;
    len -= 2;
  }
  if (len) {
    uint8_t b[2] = {p[0], 0};
    uint16_t w;
    memcpy(&w, b, 2);
    sum += w;
  }
  return sum;
}

uint64_t csum_copy(void *dst, const void *src, size_t len, uint64_t sum) {
  memcpy(dst, src, len);
  return csum_add(sum, dst, len); /* dst is hot in cache right after the copy */
}
