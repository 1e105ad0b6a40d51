/* RFC 1071 Internet checksum over native-endian words. The one's complement sum does not depend
 * on byte order (RFC 1071 2(B)), so sums are kept in the machine's order and folded results are
 * stored with memcpy: the bytes come out in network order. Every piece summed must start at an
 * even offset from the start of the checksummed region. */
#ifndef FELT_CSUM_H
#define FELT_CSUM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Adds len bytes at data to a running 64-bit sum. */
uint64_t csum_add(uint64_t sum, const void *data, size_t len);

/* Copies len bytes and adds them to the sum in the same pass. */
uint64_t csum_copy(void *dst, const void *src, size_t len, uint64_t sum);

/* Folds a running sum to 16 bits (not complemented). */
static inline uint16_t csum_fold(uint64_t sum) {
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum;
}

/* The checksum to store: the complement of the folded sum. */
static inline uint16_t csum_finish(uint64_t sum) { return (uint16_t)~csum_fold(sum); }

/* A 16-bit value given in host order, as it would be summed from network-order bytes. */
static inline uint64_t csum_word(uint16_t host_value) {
  uint8_t b[2] = {(uint8_t)(host_value >> 8), (uint8_t)host_value};
  uint16_t w;
  memcpy(&w, b, 2);
  return w;
}

/* Sum of the IPv4 pseudo-header: src and dst (4 bytes each, as in the packet), protocol, L4 length. */
static inline uint64_t csum_pseudo(const uint8_t *saddr, const uint8_t *daddr, uint8_t proto, uint16_t l4_len) {
  uint32_t s, d;
  memcpy(&s, saddr, 4);
  memcpy(&d, daddr, 4);
  return (uint64_t)s + d + csum_word(proto) + csum_word(l4_len);
}

/* Reads/writes a 16-bit checksum field as stored (no byte swap: pairs with the native sums). */
static inline uint16_t csum_load(const uint8_t *p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}
static inline void csum_store(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

#endif
