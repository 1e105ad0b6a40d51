#include "tun.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int tun_open(const char *name, int vnet_hdr, char out_name[IFNAMSIZ], felt_err *err) {
  size_t len = strlen(name);
  if (len == 0) return felt_errmsg(err, "TUNSETIFF: empty device name");
  if (len >= IFNAMSIZ) {
    return felt_errmsg(err, "TUNSETIFF %s: device name too long (max %d bytes)", name, IFNAMSIZ - 1);
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return felt_errno(err, errno, "open /dev/net/tun");

  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, len);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet_hdr ? IFF_VNET_HDR : 0);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    return felt_errno(err, e, "TUNSETIFF %s", name);
  }
  memcpy(out_name, ifr.ifr_name, IFNAMSIZ);
  out_name[IFNAMSIZ - 1] = '\0';
  return fd;
}

int tun_set_offload(int fd, unsigned flags, felt_err *err) {
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags) < 0) {
    return felt_errno(err, errno, "TUNSETOFFLOAD 0x%x", flags);
  }
  return 0;
}
