/* TUN device: open/create, write, close. */
#ifndef FELT_TUN_H
#define FELT_TUN_H

#include <net/if.h>
#include <stddef.h>

#include "err.h"

/* Opens /dev/net/tun and attaches device `name` (IFF_TUN|IFF_NO_PI[|IFF_VNET_HDR]), non-blocking,
 * close-on-exec. Writes the kernel's device name into out_name. Returns the fd, or -1 with err set. */
int tun_open(const char *name, int vnet_hdr, char out_name[IFNAMSIZ], felt_err *err);

/* Enables TUN offloads (TUNSETOFFLOAD flags); returns 0 or -1 with err set. */
int tun_set_offload(int fd, unsigned flags, felt_err *err);

#endif
