#include "netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* One request: the netlink header, the family-specific header, then attributes. */
typedef struct {
  struct nlmsghdr nh;
  union {
    struct ifinfomsg ifi;
    struct ifaddrmsg ifa;
    struct rtmsg rt;
  } u;
  char attrs[256];
} nl_req;

static void nl_init(nl_req *req, uint16_t type, uint16_t flags, size_t body_len) {
  memset(req, 0, sizeof *req);
  req->nh.nlmsg_len = NLMSG_LENGTH(body_len);
  req->nh.nlmsg_type = type;
  req->nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
}

static void nl_attr(nl_req *req, uint16_t type, const void *data, size_t len) {
  struct rtattr *rta = (struct rtattr *)((char *)req + NLMSG_ALIGN(req->nh.nlmsg_len));
  rta->rta_type = type;
  rta->rta_len = RTA_LENGTH(len);
  memcpy(RTA_DATA(rta), data, len);
  req->nh.nlmsg_len = NLMSG_ALIGN(req->nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static void nl_attr_u32(nl_req *req, uint16_t type, uint32_t value) { nl_attr(req, type, &value, sizeof value); }

/* Sends req and waits for its ACK. Returns 0, or a positive errno (from the kernel or a syscall). */
static int nl_transact(nl_req *req) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return errno;
  struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  static unsigned seq_counter;
  uint32_t seq = (uint32_t)time(NULL) ^ __atomic_add_fetch(&seq_counter, 1, __ATOMIC_RELAXED);
  req->nh.nlmsg_seq = seq;

  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  int result = 0;
  if (sendto(fd, req, req->nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    result = errno;
    goto out;
  }
  char buf[8192] __attribute__((aligned(4)));
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      result = errno;
      goto out;
    }
    size_t left = (size_t)n;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) {
          result = EPROTO;
        } else {
          const struct nlmsgerr *e = NLMSG_DATA(h);
          result = -e->error; /* 0 is the ACK */
        }
        goto out;
      }
      if (h->nlmsg_type == NLMSG_DONE) goto out;
    }
  }
out:
  close(fd);
  return result;
}

static int ifindex_of(const char *ifname, const char *op, felt_err *err) {
  if (strlen(ifname) >= IFNAMSIZ) {
    felt_errmsg(err, "%s %s: device name too long", op, ifname);
    return 0;
  }
  unsigned idx = if_nametoindex(ifname);
  if (idx == 0) felt_errno(err, errno == 0 ? ENODEV : errno, "%s %s", op, ifname);
  return (int)idx;
}

static void fmt_ip(uint32_t ip, char out[16]) {
  snprintf(out, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

int nl_link_setup(const char *ifname, uint32_t mtu, uint32_t txqlen, const uint32_t *address, uint8_t prefix_len,
                  felt_err *err) {
  int idx = ifindex_of(ifname, "linkSetup", err);
  if (idx == 0) return -1;
  if (prefix_len > 32) return felt_errmsg(err, "linkSetup %s: invalid prefix length %u", ifname, prefix_len);
  nl_req req;
  int rc;

  /* MTU and queue length first, so the link comes up with them. */
  nl_init(&req, RTM_NEWLINK, 0, sizeof(struct ifinfomsg));
  req.u.ifi.ifi_family = AF_UNSPEC;
  req.u.ifi.ifi_index = idx;
  nl_attr_u32(&req, IFLA_MTU, mtu);
  if (txqlen > 0) nl_attr_u32(&req, IFLA_TXQLEN, txqlen);
  if ((rc = nl_transact(&req)) != 0) return felt_errno(err, rc, "RTM_NEWLINK %s mtu %u", ifname, mtu);

  /* Address (none on an IPv6-only overlay); REPLACE makes a repeated setup harmless. */
  if (address != NULL) {
    nl_init(&req, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, sizeof(struct ifaddrmsg));
    req.u.ifa.ifa_family = AF_INET;
    req.u.ifa.ifa_prefixlen = prefix_len;
    req.u.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
    req.u.ifa.ifa_index = (uint32_t)idx;
    uint32_t be = htonl(*address);
    nl_attr(&req, IFA_LOCAL, &be, 4);
    nl_attr(&req, IFA_ADDRESS, &be, 4);
    if ((rc = nl_transact(&req)) != 0) {
      char ip[16];
      fmt_ip(*address, ip);
      return felt_errno(err, rc, "RTM_NEWADDR %s/%u dev %s", ip, prefix_len, ifname);
    }
  }

  nl_init(&req, RTM_NEWLINK, 0, sizeof(struct ifinfomsg));
  req.u.ifi.ifi_family = AF_UNSPEC;
  req.u.ifi.ifi_index = idx;
  req.u.ifi.ifi_flags = IFF_UP;
  req.u.ifi.ifi_change = IFF_UP;
  if ((rc = nl_transact(&req)) != 0) return felt_errno(err, rc, "RTM_NEWLINK %s up", ifname);
  return 0;
}

static int nl_route(int add, const char *ifname, uint32_t network, uint8_t prefix_len, felt_err *err) {
  const char *op = add ? "routeAdd" : "routeDel";
  char ip[16];
  fmt_ip(network, ip);
  if (prefix_len > 32) return felt_errmsg(err, "%s %s/%u: invalid prefix length", op, ip, prefix_len);
  int idx = ifindex_of(ifname, op, err);
  if (idx == 0) return -1;

  nl_req req;
  nl_init(&req, add ? RTM_NEWROUTE : RTM_DELROUTE, add ? (NLM_F_CREATE | NLM_F_EXCL) : 0, sizeof(struct rtmsg));
  req.u.rt.rtm_family = AF_INET;
  req.u.rt.rtm_dst_len = prefix_len;
  req.u.rt.rtm_table = RT_TABLE_MAIN;
  req.u.rt.rtm_protocol = add ? RTPROT_BOOT : 0; /* 0: delete matches any protocol */
  req.u.rt.rtm_scope = add ? RT_SCOPE_UNIVERSE : RT_SCOPE_NOWHERE; /* NOWHERE: delete matches any scope */
  req.u.rt.rtm_type = RTN_UNICAST;
  uint32_t dst = htonl(prefix_len == 0 ? 0 : network & (0xffffffffu << (32 - prefix_len)));
  nl_attr(&req, RTA_DST, &dst, 4);
  nl_attr_u32(&req, RTA_OIF, (uint32_t)idx);
  nl_attr_u32(&req, RTA_TABLE, RT_TABLE_MAIN);

  int rc = nl_transact(&req);
  if (rc == 0 || (add && rc == EEXIST) || (!add && (rc == ENOENT || rc == ESRCH))) return 0;
  return felt_errno(err, rc, "%s %s/%u dev %s", op, ip, prefix_len, ifname);
}

int nl_route_add(const char *ifname, uint32_t network, uint8_t prefix_len, felt_err *err) {
  return nl_route(1, ifname, network, prefix_len, err);
}

int nl_route_del(const char *ifname, uint32_t network, uint8_t prefix_len, felt_err *err) {
  return nl_route(0, ifname, network, prefix_len, err);
}

/* ---- IPv6 ---- */

static void fmt_ip6(const uint8_t ip[16], char out[INET6_ADDRSTRLEN]) { inet_ntop(AF_INET6, ip, out, INET6_ADDRSTRLEN); }

/* The checks both IPv6 requests start with: formats the address into ip, returns the ifindex or 0. */
static int prepare6(const char *what, const char *ifname, const uint8_t address[16], uint8_t prefix_len,
                    char ip[INET6_ADDRSTRLEN], felt_err *err) {
  fmt_ip6(address, ip);
  if (prefix_len > 128) {
    felt_errmsg(err, "%s %s/%u: invalid prefix length", what, ip, prefix_len);
    return 0;
  }
  return ifindex_of(ifname, what, err);
}

int nl_addr_add6(const char *ifname, const uint8_t address[16], uint8_t prefix_len, felt_err *err) {
  char ip[INET6_ADDRSTRLEN];
  int idx = prepare6("addrAdd6", ifname, address, prefix_len, ip, err);
  if (idx == 0) return -1;
  nl_req req;
  nl_init(&req, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, sizeof(struct ifaddrmsg));
  req.u.ifa.ifa_family = AF_INET6;
  req.u.ifa.ifa_prefixlen = prefix_len;
  /* NODAD: a point-to-point tunnel has no neighbours to collide with; usable at once. */
  req.u.ifa.ifa_flags = IFA_F_NODAD;
  req.u.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  req.u.ifa.ifa_index = (uint32_t)idx;
  nl_attr(&req, IFA_LOCAL, address, 16);
  nl_attr(&req, IFA_ADDRESS, address, 16);
  int rc = nl_transact(&req);
  if (rc != 0) return felt_errno(err, rc, "RTM_NEWADDR %s/%u dev %s", ip, prefix_len, ifname);
  return 0;
}

int nl_route_add6(const char *ifname, const uint8_t network[16], uint8_t prefix_len, felt_err *err) {
  char ip[INET6_ADDRSTRLEN];
  int idx = prepare6("routeAdd6", ifname, network, prefix_len, ip, err);
  if (idx == 0) return -1;
  uint8_t dst[16];
  for (int i = 0; i < 16; i++) {
    int bits = prefix_len - 8 * i;
    dst[i] = bits >= 8 ? network[i] : bits <= 0 ? 0 : (uint8_t)(network[i] & (0xff << (8 - bits)));
  }
  nl_req req;
  nl_init(&req, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, sizeof(struct rtmsg));
  req.u.rt.rtm_family = AF_INET6;
  req.u.rt.rtm_dst_len = prefix_len;
  req.u.rt.rtm_table = RT_TABLE_MAIN;
  req.u.rt.rtm_protocol = RTPROT_BOOT;
  req.u.rt.rtm_scope = RT_SCOPE_UNIVERSE;
  req.u.rt.rtm_type = RTN_UNICAST;
  nl_attr(&req, RTA_DST, dst, 16);
  nl_attr_u32(&req, RTA_OIF, (uint32_t)idx);
  nl_attr_u32(&req, RTA_TABLE, RT_TABLE_MAIN);
  int rc = nl_transact(&req);
  if (rc == 0 || rc == EEXIST) return 0;
  return felt_errno(err, rc, "routeAdd6 %s/%u dev %s", ip, prefix_len, ifname);
}
