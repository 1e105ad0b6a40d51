/* Packet helpers shared by the fuzz harnesses (pkt.c). */
#ifndef FELT_FUZZ_PKT_H
#define FELT_FUZZ_PKT_H

#include <stddef.h>
#include <stdint.h>

/* Structured packets carry this in their ports; their payload bytes are a function of the flow
 * and the stream position (fuzz_oracle_byte), so lost, reordered or misplaced bytes show. TCP:
 * the position is the sequence number. UDP: ip id x FUZZ_UDP_SEG[sport & 7] + offset, so the
 * segments of a USO super-packet (ids id0, id0+1, ...) continue the stream. */
#define FUZZ_MARK_DPORT 0xf17f
#define FUZZ_MARK_SPORT_HI 0xf0
extern const uint16_t FUZZ_UDP_SEG[8];

uint8_t fuzz_oracle_byte(uint32_t src, uint32_t dst, uint32_t ports, uint32_t pos);
/* Folded ones'-complement sum over big-endian words (0xffff over data with a right checksum). */
uint16_t fuzz_sum(const uint8_t *p, size_t n, uint32_t seed);
/* The pseudo-header part of a TCP/UDP checksum (addresses from the IPv4 header at ip). */
uint32_t fuzz_pseudo_seed(const uint8_t *ip, uint8_t proto, uint32_t l4len);
/* An unfragmented TCP/UDP packet carrying the mark. */
int fuzz_is_marked(const uint8_t *ip, size_t len);
/* Its full L4 checksum verifies (UDP 0 = none). */
int fuzz_l4_valid(const uint8_t *ip, size_t len);
/* Its payload bytes are where they belong in the stream. */
int fuzz_oracle_ok(const uint8_t *ip, size_t len);

/* A GRO super-packet written as iov[1..iovcnt) under the virtio header h (iov[0]): gathers it into
 * merged (room for 65,535 bytes; *total its length) and checks it is one TCP/IPv4 packet of 2..64
 * segments that h describes (gso_size pieces, the last may be shorter; flags ACK or ACK|PSH),
 * whose checksum verifies once finished as the kernel would, and whose marked payload is in
 * stream order. NULL when all holds, else what does not. */
struct iovec;
const char *fuzz_gro_check(const uint8_t *vnet_hdr_bytes, const struct iovec *iov, int iovcnt, uint8_t *merged,
                           size_t *total);

/* PRNG (xoshiro256**). */
void rng_seed(uint64_t seed);
uint64_t rnd64(void);
uint32_t rnd(uint32_t n); /* 0 <= r < n */
int chance(uint32_t percent);
void fill_random(uint8_t *p, size_t n);
/* A random host address inside net/len. */
uint32_t host_in(uint32_t net, uint32_t len);

typedef struct {
  uint8_t proto;
  uint32_t src, dst;
  uint8_t ttl, tos;
  uint16_t id;
  uint16_t frag; /* flags + offset */
  unsigned ip_opt;  /* bytes of IP options (multiple of 4) */
  size_t payload;   /* L4 payload bytes (after the TCP/UDP/ICMP header) */
  int marked;
  uint32_t seq, ack;
  uint8_t tcp_flags;
  unsigned tcp_opt; /* bytes of TCP options (multiple of 4) */
  uint16_t sport, dport;
  uint8_t icmp_type, icmp_code;
  int csum_mode; /* 0 full L4 checksum, 1 partial (NEEDS_CSUM seed), 2 garbage */
  uint16_t udp_seg; /* marked UDP: the stream's segment size (index into FUZZ_UDP_SEG via sport) */
  uint8_t src6[16], dst6[16]; /* build_packet6: the addresses (ttl: hop limit, tos: traffic class) */
} pkt_spec;

/* Writes the packet described by s into p (room for its length); returns its length. */
size_t build_packet(uint8_t *p, const pkt_spec *s);
/* Removes the mark (before byte-level mutation: the oracle only judges intact streams). */
void unmark(uint8_t *ip, size_t len);
/* IPv6: TCP (proto 6) or UDP right after the fixed header; marked TCP payload as for IPv4, its
 * oracle keyed by the last 32 bits of the addresses (UDP/IPv6 carries no stream position). */
size_t build_packet6(uint8_t *p, const pkt_spec *s);
int fuzz_is_marked6(const uint8_t *ip, size_t len);
int fuzz_l4_valid6(const uint8_t *ip, size_t len);
int fuzz_oracle_ok6(const uint8_t *ip, size_t len);
/* fuzz_gro_check for a TCP/IPv6 GRO super-packet (GSO_TCPV6, csum_start 40). */
const char *fuzz_gro_check6(const uint8_t *vnet_hdr_bytes, const struct iovec *iov, int iovcnt, uint8_t *merged,
                            size_t *total);
/* Recomputes the IPv4 header checksum when the header fits in len. */
void fix_ip_csum(uint8_t *ip, size_t len);

#endif
