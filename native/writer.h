/* Batched output for the js engine: the packets of one reader batch leave in as few syscalls as
 * possible. Datagrams go out through sendmmsg, runs of equal-size datagrams to one peer as one
 * UDP GSO send; TUN packets are written one write() each (a TUN fd takes one packet per write).
 * Every entry names a slice of one buffer; each gets its own outcome. Pure C, no threads. */
#ifndef FELT_WRITER_H
#define FELT_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "gro.h"

/* Most entries one call takes (the glue rejects larger batches). */
#define WRITER_MAX_ENTRIES 4096
/* Most segments in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels). */
#define WRITER_GSO_MAX_SEGS 64
/* Most payload bytes in one GSO send: the largest UDP payload over IPv4. */
#define WRITER_GSO_MAX_BYTES 65507

typedef struct {
  uint64_t syscalls;  /* sendmmsg / write calls */
  uint64_t gro_merged; /* TUN packets that went out inside a merged super-packet */
  uint64_t gso_sends; /* messages sent as GSO trains */
  uint64_t gso_segs;  /* datagrams inside them */
} writer_stats;

/* Sends `count` datagrams to port `port`: entry i is base[desc[3i], +desc[3i+1]) to the IPv4 address
 * desc[3i+2] (host order). ok[i] becomes 1 when the kernel took the datagram, else 0 (entries
 * outside base are refused). With `gso`, runs go out as UDP GSO trains; a train the kernel refuses
 * is resent datagram by datagram and its errno returned, so the caller can stop asking for GSO.
 * Returns 0 or that errno. When the send buffer is full, waits up to `wait_ms` for room once. */
int writer_udp_send(int fd, uint16_t port, const uint8_t *base, size_t base_len, const uint32_t *desc,
                    uint32_t count, uint8_t *ok, int gso, int wait_ms, writer_stats *st);

/* The same on an IPv6 socket: desc[3i+2] is an index into addrs (naddrs IPv6 addresses of 16
 * bytes each); an entry with an index outside them is refused. */
int writer_udp_send6(int fd, uint16_t port, const uint8_t *base, size_t base_len, const uint32_t *desc,
                     uint32_t count, uint8_t *ok, int gso, int wait_ms, const uint8_t *addrs, size_t naddrs,
                     writer_stats *st);

/* Writes `count` packets into the TUN fd: entry i is base[desc[2i], +desc[2i+1]). ok[i] as above.
 * Returns the number written. */
uint32_t writer_tun_write(int fd, const uint8_t *base, size_t base_len, const uint32_t *desc, uint32_t count,
                          uint8_t *ok, writer_stats *st);

/* The same for a TUN opened with IFF_VNET_HDR: in-order TCP segments of one flow are merged by
 * userspace GRO (gro.h, scratch `g`) and written as one super-packet; everything else is written
 * as it is behind an empty virtio header. The merge patches headers in base. ok[i] is the outcome
 * of the write that carried packet i. Returns the packets written. */
uint32_t writer_tun_write_vnet(int fd, uint8_t *base, size_t base_len, const uint32_t *desc, uint32_t count,
                               uint8_t *ok, gro_batch *g, writer_stats *st);

#endif
