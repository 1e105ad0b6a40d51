/* The underlay UDP socket: bound to <bind ip>:<port>, non-blocking, large buffers, and UDP GSO/GRO
 * when the kernel offers them. */
#ifndef FELT_UDP_H
#define FELT_UDP_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"

/* Older libc headers lack these. */
#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define UDP_SOCKET_BUFFER (8 * 1024 * 1024)

typedef struct {
  int fd;
  int gso;     /* UDP_SEGMENT usable */
  int gro;     /* UDP_GRO enabled */
  int sndbuf;  /* as the kernel reports (doubled) */
  int rcvbuf;
  int forced;  /* *BUFFORCE accepted */
} udp_sock;

int udp_open(udp_sock *u, uint32_t bind_ip, uint16_t port, felt_err *err);

/* The UDP GRO segment size of a received message, or 0 when it carries a single datagram. Inline
 * so that reader.c and engine.c can use it without linking udp.c. */
static inline size_t udp_gro_segment_size(const struct msghdr *msg) {
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
    if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO && cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int v;
      memcpy(&v, CMSG_DATA(cm), sizeof v);
      return v > 0 ? (size_t)v : 0;
    }
  }
  return 0;
}

#endif
