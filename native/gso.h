/* The TUN side of segmentation offload: the virtio_net_hdr, finishing CHECKSUM_PARTIAL packets,
 * and splitting TSO/USO super-packets into wire-sized IPv4 packets (each with its own IP id,
 * length, header checksum, TCP sequence number / UDP length, and a complete L4 checksum). */
#ifndef FELT_GSO_H
#define FELT_GSO_H

#include <stddef.h>
#include <stdint.h>

/* struct virtio_net_hdr (10 bytes, native byte order: the TUN default on little-endian hosts). */
#define VNET_HDR_LEN 10
#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_TCPV6 4
#define VNET_GSO_UDP_L4 5
#define VNET_GSO_ECN 0x80

typedef struct {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
} vnet_hdr;

void vnet_parse(const uint8_t *p, vnet_hdr *h);
void vnet_write(uint8_t *p, const vnet_hdr *h);

/* Completes a NEEDS_CSUM packet of len bytes: sums from csum_start to the end, seeded with the
 * pseudo-header sum already in the field. Returns 0, or -1 when the offsets are out of range. */
int vnet_finish_csum(uint8_t *pkt, size_t len, uint16_t csum_start, uint16_t csum_offset);

/* How a super-packet splits. */
typedef struct {
  uint32_t hdr_len;  /* IP + L4 header, recomputed (the kernel's hdr_len is not trusted) */
  uint32_t l4_hlen;
  uint32_t payload;  /* bytes after the headers */
  uint32_t gso_size; /* payload bytes per segment */
  uint32_t nsegs;
  uint32_t seg_len;  /* bytes of every segment but the last (hdr_len + gso_size, or less if 1 segment) */
  uint8_t proto;
} gso_plan;

/* Checks a GSO packet (IPv4 header already validated) and computes its plan. 0, or -1 if malformed. */
int gso_make_plan(const uint8_t *pkt, size_t len, uint8_t gso_type, uint16_t gso_size, gso_plan *plan);

/* Space for one segment of seg_len bytes, or NULL to abandon the split. */
typedef uint8_t *(*seg_reserve_fn)(void *ctx, size_t seg_len);

/* Writes every segment of pkt into space from reserve(). Returns the segments written. */
uint32_t gso_split(const uint8_t *pkt, const gso_plan *plan, seg_reserve_fn reserve, void *ctx);

/* The same for an IPv6 super-packet (TSO6, or USO over IPv6): the TCP/UDP header must follow the
 * fixed header directly; each segment gets its payload length and a checksum over the IPv6
 * pseudo-header. */
int gso_make_plan6(const uint8_t *pkt, size_t len, uint8_t gso_type, uint16_t gso_size, gso_plan *plan);
uint32_t gso_split6(const uint8_t *pkt, const gso_plan *plan, seg_reserve_fn reserve, void *ctx);

#endif
