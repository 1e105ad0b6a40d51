/* Peer probes and node diagnostics (felt's prober and `felt doctor`): raw ICMP and UDP sockets that
 * see packets with the kernel's receive time, and one rtnetlink route lookup ("ip route get").
 * Addresses are IPv4 in host byte order. Nothing here is on the packet path of either engine. */
#ifndef FELT_PROBE_H
#define FELT_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* A raw ICMP socket with IP_HDRINCL (the caller writes the whole IPv4 header: source, DF, size)
 * that receives only echo replies and ICMP errors. Non-blocking. Needs CAP_NET_RAW. */
int probe_icmp_open(felt_err *err);

/* A raw UDP socket: receives a copy of every UDP datagram delivered to this host (doctor only,
 * for a few seconds: it sees where peers' datagrams really come from). Non-blocking. */
int probe_udp_sniff_open(felt_err *err);

/* The same for UDP over IPv6: what it receives starts at the UDP header (no IPv6 header on an IPv6
 * raw socket); the source address comes with each datagram (probe_recv reports it). */
int probe_udp_sniff6_open(felt_err *err);

/* A raw ICMPv6 socket: the kernel builds the IPv6 header and computes the ICMPv6 checksum (always,
 * for IPPROTO_ICMPV6: RFC 3542 section 3.1), receives only echo replies and ICMPv6 errors, and
 * never fragments what it sends (IPV6_DONTFRAG: a too-big probe fails, as DF does for IPv4).
 * Non-blocking. Needs CAP_NET_RAW. */
int probe_icmp6_open(felt_err *err);

/* Sends one ICMPv6 message to dst (16 bytes), from src (16 bytes, a local address) unless src is
 * NULL (the kernel picks). Returns 0 and the send time in *sent_ms, or -1 with err set. */
int probe_send6(int fd, const void *msg, size_t len, const uint8_t dst[16], const uint8_t *src, double *sent_ms, felt_err *err);

/* Sends one complete IPv4 packet to dst. Returns 0 and the send time (ms since the epoch, with
 * sub-microsecond resolution) in *sent_ms, or -1 with err set. */
int probe_send(int fd, const void *packet, size_t len, uint32_t dst, double *sent_ms, felt_err *err);

/* Receives one packet without blocking: returns its length (truncated to cap), 0 when nothing is
 * queued, or -1 with err set. *rx_ms is the kernel's receive time (ms since the epoch). On an IPv6
 * socket the source address goes to from6 and *is6 is 1 (a raw ICMPv6 socket gives no IPv6 header). */
ssize_t probe_recv(int fd, void *buf, size_t cap, double *rx_ms, uint8_t from6[16], int *is6, felt_err *err);

typedef struct {
  int type;          /* RTN_UNICAST, RTN_LOCAL, RTN_UNREACHABLE, RTN_BLACKHOLE, ... */
  char oif[32];      /* output device ("" when none) */
  uint32_t gateway;  /* 0 when directly connected */
  uint32_t prefsrc;  /* 0 when absent */
  uint32_t table;
  uint32_t mtu;      /* route MTU metric, 0 when absent */
} probe_route;

/* rtnetlink RTM_GETROUTE for dst, as `ip route get dst [from src] [iif dev]` does. With iif set the
 * kernel runs the input path, reverse-path filter included. Returns 0, or a positive errno from the
 * kernel (ENETUNREACH, EXDEV for a reverse-path failure, ...), or -1 with err set for a local failure. */
int probe_route_get(uint32_t dst, uint32_t src, const char *iif, probe_route *out, felt_err *err);

#endif
