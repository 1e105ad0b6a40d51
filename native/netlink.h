/* rtnetlink requests for the TUN device: link settings, its address, and routes through it.
 * IPv4 addresses are in host byte order, IPv6 ones 16 bytes in network order. Every call waits for the kernel's ACK. */
#ifndef FELT_NETLINK_H
#define FELT_NETLINK_H

#include <stdint.h>

#include "err.h"

/* Sets MTU (and txqueuelen when txqlen > 0), adds *address/prefix_len (none when NULL), sets the link up. */
int nl_link_setup(const char *ifname, uint32_t mtu, uint32_t txqlen, const uint32_t *address, uint8_t prefix_len,
                  felt_err *err);

/* Adds `network/prefix_len dev ifname` to the main table; an existing route is not an error. */
int nl_route_add(const char *ifname, uint32_t network, uint8_t prefix_len, felt_err *err);

/* Removes that route; a missing route is not an error. */
int nl_route_del(const char *ifname, uint32_t network, uint8_t prefix_len, felt_err *err);

/* IPv6: adds address/prefix_len (no duplicate address detection) to the device. */
int nl_addr_add6(const char *ifname, const uint8_t address[16], uint8_t prefix_len, felt_err *err);

/* IPv6: adds `network/prefix_len dev ifname`; an existing route is not an error. */
int nl_route_add6(const char *ifname, const uint8_t network[16], uint8_t prefix_len, felt_err *err);

#endif
