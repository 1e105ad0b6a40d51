#include "probe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* <linux/icmp.h> clashes with <net/if.h>: its two definitions the socket needs. */
#ifndef ICMP_FILTER
#define ICMP_FILTER 1
struct icmp_filter {
  uint32_t data;
};
#endif

/* ICMP types the probe socket wants; every other type is filtered in the kernel. */
#define ICMP_T_ECHOREPLY 0
#define ICMP_T_DEST_UNREACH 3
#define ICMP_T_TIME_EXCEEDED 11
#define ICMP_T_PARAMETERPROB 12

static int raw_open(int family, int protocol, const char *what, felt_err *err) {
  int fd = socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return felt_errno(err, errno, "socket(%s, SOCK_RAW, %s)", family == AF_INET6 ? "AF_INET6" : "AF_INET", what);
  int on = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on) < 0) {
    int e = errno;
    close(fd);
    return felt_errno(err, e, "setsockopt SO_TIMESTAMPNS (%s)", what);
  }
  int rcvbuf = 1 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf); /* best effort */
  return fd;
}

int probe_icmp_open(felt_err *err) {
  int fd = raw_open(AF_INET, IPPROTO_ICMP, "IPPROTO_ICMP", err);
  if (fd < 0) return -1;
  int on = 1;
  struct icmp_filter filter = {
      .data = ~((1u << ICMP_T_ECHOREPLY) | (1u << ICMP_T_DEST_UNREACH) | (1u << ICMP_T_TIME_EXCEEDED) |
                (1u << ICMP_T_PARAMETERPROB))};
  if (setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &on, sizeof on) < 0 ||
      setsockopt(fd, SOL_RAW, ICMP_FILTER, &filter, sizeof filter) < 0) {
    int e = errno;
    close(fd);
    return felt_errno(err, e, "setsockopt on the ICMP probe socket");
  }
  return fd;
}

int probe_udp_sniff_open(felt_err *err) { return raw_open(AF_INET, IPPROTO_UDP, "IPPROTO_UDP", err); }

int probe_udp_sniff6_open(felt_err *err) { return raw_open(AF_INET6, IPPROTO_UDP, "IPPROTO_UDP", err); }

int probe_icmp6_open(felt_err *err) {
  int fd = raw_open(AF_INET6, IPPROTO_ICMPV6, "IPPROTO_ICMPV6", err);
  if (fd < 0) return -1;
  struct icmp6_filter filter;
  ICMP6_FILTER_SETBLOCKALL(&filter);
  ICMP6_FILTER_SETPASS(ICMP6_ECHO_REPLY, &filter);
  ICMP6_FILTER_SETPASS(ICMP6_DST_UNREACH, &filter);
  ICMP6_FILTER_SETPASS(ICMP6_PACKET_TOO_BIG, &filter);
  ICMP6_FILTER_SETPASS(ICMP6_TIME_EXCEEDED, &filter);
  ICMP6_FILTER_SETPASS(ICMP6_PARAM_PROB, &filter);
  int on = 1;
  if (setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter) < 0 ||
      setsockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG, &on, sizeof on) < 0) {
    int e = errno;
    close(fd);
    return felt_errno(err, e, "setsockopt on the ICMPv6 probe socket");
  }
  return fd;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int probe_send(int fd, const void *packet, size_t len, uint32_t dst, double *sent_ms, felt_err *err) {
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(dst)};
  ssize_t n;
  *sent_ms = now_ms();
  do n = sendto(fd, packet, len, 0, (struct sockaddr *)&to, sizeof to);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &to.sin_addr, ip, sizeof ip);
    return felt_errno(err, errno, "send probe to %s", ip);
  }
  return 0;
}

int probe_send6(int fd, const void *msg_data, size_t len, const uint8_t dst[16], const uint8_t *src, double *sent_ms, felt_err *err) {
  struct sockaddr_in6 to = {.sin6_family = AF_INET6};
  memcpy(&to.sin6_addr, dst, 16);
  char control[CMSG_SPACE(sizeof(struct in6_pktinfo))] __attribute__((aligned(8)));
  memset(control, 0, sizeof control);
  struct iovec iov = {.iov_base = (void *)msg_data, .iov_len = len};
  struct msghdr msg = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov, .msg_iovlen = 1};
  if (src) {
    /* The source address per packet: our IPv6 tunnel address, as the IPv4 probes set theirs. */
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
    struct in6_pktinfo info;
    memset(&info, 0, sizeof info);
    memcpy(&info.ipi6_addr, src, 16);
    memcpy(CMSG_DATA(c), &info, sizeof info);
  }
  ssize_t n;
  *sent_ms = now_ms();
  do n = sendmsg(fd, &msg, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    char ip[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &to.sin6_addr, ip, sizeof ip);
    return felt_errno(err, errno, "send probe to %s", ip);
  }
  return 0;
}

ssize_t probe_recv(int fd, void *buf, size_t cap, double *rx_ms, uint8_t from6[16], int *is6, felt_err *err) {
  char control[CMSG_SPACE(sizeof(struct timespec))] __attribute__((aligned(8)));
  struct sockaddr_storage from;
  memset(&from, 0, sizeof from);
  struct iovec iov = {.iov_base = buf, .iov_len = cap};
  struct msghdr msg = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
  *is6 = 0;
  ssize_t n;
  do n = recvmsg(fd, &msg, MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return felt_errno(err, errno, "recv on a probe socket");
  }
  *rx_ms = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS && c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
      struct timespec ts;
      memcpy(&ts, CMSG_DATA(c), sizeof ts);
      *rx_ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
    }
  }
  if (*rx_ms == 0) *rx_ms = now_ms();
  if (from.ss_family == AF_INET6 && msg.msg_namelen >= sizeof(struct sockaddr_in6)) {
    memcpy(from6, &((const struct sockaddr_in6 *)&from)->sin6_addr, 16);
    *is6 = 1;
  }
  return (size_t)n > cap ? (ssize_t)cap : n;
}

/* ---- route lookup ---------------------------------------------------------------------------- */

typedef struct {
  struct nlmsghdr nh;
  struct rtmsg rt;
  char attrs[128];
} route_req;

static void add_attr(route_req *req, uint16_t type, const void *data, size_t len) {
  struct rtattr *rta = (struct rtattr *)((char *)req + NLMSG_ALIGN(req->nh.nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = RTA_LENGTH(len);
  memcpy(RTA_DATA(rta), data, len);
  req->nh.nlmsg_len = NLMSG_ALIGN(req->nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static void parse_route(const struct nlmsghdr *h, probe_route *out) {
  const struct rtmsg *rt = NLMSG_DATA(h);
  out->type = rt->rtm_type;
  out->table = rt->rtm_table;
  int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *rt);
  for (const struct rtattr *a = RTM_RTA(rt); len > 0 && RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    size_t plen = RTA_PAYLOAD(a);
    uint32_t v;
    switch (a->rta_type) {
      case RTA_OIF:
        if (plen >= 4) {
          memcpy(&v, RTA_DATA(a), 4);
          if (!if_indextoname(v, out->oif)) out->oif[0] = '\0';
        }
        break;
      case RTA_GATEWAY:
        if (plen >= 4) {
          memcpy(&v, RTA_DATA(a), 4);
          out->gateway = ntohl(v);
        }
        break;
      case RTA_PREFSRC:
        if (plen >= 4) {
          memcpy(&v, RTA_DATA(a), 4);
          out->prefsrc = ntohl(v);
        }
        break;
      case RTA_TABLE:
        if (plen >= 4) memcpy(&out->table, RTA_DATA(a), 4);
        break;
      case RTA_METRICS: {
        int mlen = (int)plen;
        for (const struct rtattr *m = RTA_DATA(a); mlen > 0 && RTA_OK(m, mlen); m = RTA_NEXT(m, mlen)) {
          if (m->rta_type == RTAX_MTU && RTA_PAYLOAD(m) >= 4) memcpy(&out->mtu, RTA_DATA(m), 4);
        }
        break;
      }
      default:
        break;
    }
  }
}

int probe_route_get(uint32_t dst, uint32_t src, const char *iif, probe_route *out, felt_err *err) {
  memset(out, 0, sizeof *out);
  route_req req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
  req.nh.nlmsg_type = RTM_GETROUTE;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.rt.rtm_family = AF_INET;
  uint32_t be = htonl(dst);
  add_attr(&req, RTA_DST, &be, 4);
  req.rt.rtm_dst_len = 32;
  if (src) {
    be = htonl(src);
    add_attr(&req, RTA_SRC, &be, 4);
    req.rt.rtm_src_len = 32;
  }
  if (iif && iif[0]) {
    unsigned idx = if_nametoindex(iif);
    if (idx == 0) return felt_errno(err, errno == 0 ? ENODEV : errno, "route get: device %s", iif);
    uint32_t v = idx;
    add_attr(&req, RTA_IIF, &v, 4);
  }

  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return felt_errno(err, errno, "socket(AF_NETLINK)");
  struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  static unsigned seq_counter;
  req.nh.nlmsg_seq = (uint32_t)time(NULL) ^ __atomic_add_fetch(&seq_counter, 1, __ATOMIC_RELAXED);
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  int result = -1;
  if (sendto(fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    felt_errno(err, errno, "RTM_GETROUTE send");
    goto out;
  }
  char buf[4096] __attribute__((aligned(4)));
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      felt_errno(err, errno, "RTM_GETROUTE recv");
      goto out;
    }
    size_t left = (size_t)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != req.nh.nlmsg_seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
          result = EPROTO;
        } else {
          const struct nlmsgerr *e = NLMSG_DATA(h);
          result = e->error == 0 ? EPROTO : -e->error;
        }
        goto out;
      }
      if (h->nlmsg_type == RTM_NEWROUTE && h->nlmsg_len >= NLMSG_LENGTH(sizeof(struct rtmsg))) {
        parse_route(h, out);
        result = 0;
        goto out;
      }
    }
  }
out:
  close(fd);
  return result;
}
