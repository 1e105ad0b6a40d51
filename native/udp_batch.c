#include "udp_batch.h"

#include <errno.h>
#include <string.h>

#include "sys.h"
#include "udp.h"

void udp_batch_init(udp_batch *b, uint8_t *slots, size_t slot_bytes) {
  memset(b, 0, sizeof *b);
  b->slots = slots;
  b->slot_bytes = slot_bytes;
}

void udp_batch_init6(udp_batch *b, uint8_t *slots, size_t slot_bytes) {
  udp_batch_init(b, slots, slot_bytes);
  b->v6 = 1;
}

int udp_batch_recv(udp_batch *b, int fd) {
  for (int i = 0; i < UDP_BATCH_MAX; i++) {
    b->iov[i] = (struct iovec){b->slots + (size_t)i * b->slot_bytes, b->slot_bytes};
    b->msgs[i].msg_hdr = (struct msghdr){
        .msg_name = b->v6 ? (void *)&b->from6[i] : (void *)&b->from[i],
        .msg_namelen = b->v6 ? sizeof b->from6[i] : sizeof b->from[i],
        .msg_iov = &b->iov[i],
        .msg_iovlen = 1,
        .msg_control = b->ctl[i].buf,
        .msg_controllen = sizeof b->ctl[i].buf,
    };
  }
  for (;;) {
    int n = felt_sys.recvmmsg(fd, b->msgs, UDP_BATCH_MAX, MSG_DONTWAIT, NULL);
    if (n >= 0 || errno != EINTR) return n;
  }
}

size_t udp_gro_segment_size(const struct msghdr *msg) {
  for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
    if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO && cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int v;
      memcpy(&v, CMSG_DATA(cm), sizeof v);
      return v > 0 ? (size_t)v : 0;
    }
  }
  return 0;
}

void udp_batch_msg(const udp_batch *b, int i, udp_msg *m) {
  const struct msghdr *mh = &b->msgs[i].msg_hdr;
  size_t len = b->msgs[i].msg_len;
  if (len > b->slot_bytes) len = b->slot_bytes;
  m->data = b->slots + (size_t)i * b->slot_bytes;
  m->len = len;
  m->v6 = 0;
  m->src = 0;
  if (b->v6) {
    if (mh->msg_namelen >= sizeof(struct sockaddr_in6) && b->from6[i].sin6_family == AF_INET6) {
      m->v6 = 1;
      memcpy(m->src6, &b->from6[i].sin6_addr, 16);
    }
  } else if (mh->msg_namelen >= sizeof(struct sockaddr_in) && b->from[i].sin_family == AF_INET) {
    m->src = ntohl(b->from[i].sin_addr.s_addr);
  }
  if (!m->v6) memset(m->src6, 0, 16);
  m->trunc = (mh->msg_flags & MSG_TRUNC) != 0;
  size_t seg = udp_gro_segment_size(mh);
  if (seg == 0 || seg > len) seg = len ? len : 1;
  m->seg = seg;
  m->ndgrams = len ? (len + seg - 1) / seg : 1;
}
