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

/* socket + options + bind, the same for both families; `ip` is the address text for errors. */
static int open_bound(udp_sock *u, int family, const struct sockaddr *sa, socklen_t sa_len, const char *ip,
                      uint16_t port, felt_err *err) {
  u->fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (u->fd < 0) return felt_errno(err, errno, "socket udp %s:%u", ip, port);
  int one = 1;
  /* An IPv6 socket carries IPv6 only: the IPv4 underlay has its own socket on the same port. */
  if (family == AF_INET6 && setsockopt(u->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) {
    int e = errno;
    close(u->fd);
    u->fd = -1;
    return felt_errno(err, e, "IPV6_V6ONLY [%s]:%u", ip, port);
  }
  if (bind(u->fd, sa, sa_len) < 0) {
    int e = errno;
    close(u->fd);
    u->fd = -1;
    return family == AF_INET6 ? felt_errno(err, e, "bind [%s]:%u", ip, port) : felt_errno(err, e, "bind %s:%u", ip, port);
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
  u->gro = setsockopt(u->fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  return 0;
}

int udp_open(udp_sock *u, uint32_t bind_ip, uint16_t port, felt_err *err) {
  char ip[INET_ADDRSTRLEN];
  struct in_addr a = {.s_addr = htonl(bind_ip)};
  inet_ntop(AF_INET, &a, ip, sizeof ip);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = a};
  return open_bound(u, AF_INET, (struct sockaddr *)&sa, sizeof sa, ip, port, err);
}

int udp_open6(udp_sock *u, const uint8_t bind_ip[16], uint16_t port, felt_err *err) {
  char ip[INET6_ADDRSTRLEN];
  struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
  memcpy(&sa.sin6_addr, bind_ip, 16);
  inet_ntop(AF_INET6, &sa.sin6_addr, ip, sizeof ip);
  return open_bound(u, AF_INET6, (struct sockaddr *)&sa, sizeof sa, ip, port, err);
}

int udp_family(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return AF_INET;
  return ss.ss_family == AF_INET6 ? AF_INET6 : AF_INET;
}
