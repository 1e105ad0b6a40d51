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

#endif
