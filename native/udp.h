/* The underlay UDP sockets (one per address family): bound to <bind ip>:<port>, non-blocking, large buffers, and UDP GSO/GRO
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
/* The IPv6 underlay socket: AF_INET6 with IPV6_V6ONLY, bound to [bind_ip]:port. */
int udp_open6(udp_sock *u, const uint8_t bind_ip[16], uint16_t port, felt_err *err);
/* AF_INET6 for an IPv6 socket, else AF_INET (also when fd is not a socket). */
int udp_family(int fd);

#endif
