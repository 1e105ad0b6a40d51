/* Batched UDP receive: one recvmmsg into caller-owned slots, and what each received message
 * holds -- its source (IPv4, or IPv6 on an IPv6 socket) and, when the kernel coalesced a train (UDP GRO), the size of the
 * datagrams it carries. Used by every reader of the underlay socket (the native engine's decap,
 * the js engine's UDP reader thread), so they split messages the same way. */
#ifndef FELT_UDP_BATCH_H
#define FELT_UDP_BATCH_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define UDP_BATCH_MAX 16 /* messages per recvmmsg */

typedef struct {
  struct mmsghdr msgs[UDP_BATCH_MAX];
  struct iovec iov[UDP_BATCH_MAX];
  struct sockaddr_in from[UDP_BATCH_MAX];
  struct sockaddr_in6 from6[UDP_BATCH_MAX]; /* used instead of `from` when v6 is set */
  int v6;                                   /* the socket is AF_INET6 */
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl[UDP_BATCH_MAX];
  uint8_t *slots; /* UDP_BATCH_MAX slots of slot_bytes, back to back */
  size_t slot_bytes;
} udp_batch;

/* One received message. */
typedef struct {
  uint8_t *data;
  size_t len;
  uint32_t src;     /* IPv4 source, host order; 0.0.0.0 when the sender is not IPv4 */
  int v6;           /* the sender is IPv6: src6 holds its address */
  uint8_t src6[16];
  int trunc;        /* the kernel cut it (MSG_TRUNC) */
  size_t seg;       /* bytes per datagram, the last one shorter; >= 1 */
  uint64_t ndgrams; /* datagrams it carries (>= 1, also when empty) */
} udp_msg;

void udp_batch_init(udp_batch *b, uint8_t *slots, size_t slot_bytes);
/* The same for an IPv6 socket: sources are read as IPv6 addresses. */
void udp_batch_init6(udp_batch *b, uint8_t *slots, size_t slot_bytes);

/* One non-blocking recvmmsg (EINTR retried): the messages received, or -1 with errno set. */
int udp_batch_recv(udp_batch *b, int fd);

/* Message i of the last receive. */
void udp_batch_msg(const udp_batch *b, int i, udp_msg *m);

/* The UDP GRO segment size a received message's control data names, or 0 for a single datagram. */
size_t udp_gro_segment_size(const struct msghdr *msg);

#endif
