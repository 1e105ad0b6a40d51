#include "udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

/* Tries the FORCE variant (CAP_NET_ADMIN, beyond net.core.*mem_max) first. Returns 1 if forced. */
static int set_buffer(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) == 0) return 1;
  setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes);
  return 0;
}

int udp_open(udp_sock *u, uint32_t bind_ip, uint16_t port, felt_err *err) {
  char ip[INET_ADDRSTRLEN];
  struct in_addr a = {.s_addr = htonl(bind_ip)};
  inet_ntop(AF_INET, &a, ip, sizeof ip);

  u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (u->fd < 0) return felt_errno(err, errno, "socket udp %s:%u", ip, port);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = a};
  if (bind(u->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(u->fd);
    u->fd = -1;
    return felt_errno(err, e, "bind %s:%u", ip, port);
  }
  u->forced = set_buffer(u->fd, SO_SNDBUFFORCE, SO_SNDBUF, UDP_SOCKET_BUFFER);
  u->forced &= set_buffer(u->fd, SO_RCVBUFFORCE, SO_RCVBUF, UDP_SOCKET_BUFFER);
  socklen_t len = sizeof u->sndbuf;
  getsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, &u->sndbuf, &len);
  len = sizeof u->rcvbuf;
  getsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &u->rcvbuf, &len);

  int v = 0;
  len = sizeof v;
  u->gso = getsockopt(u->fd, SOL_UDP, UDP_SEGMENT, &v, &len) == 0;
  int one = 1;
  u->gro = setsockopt(u->fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  return 0;
}
