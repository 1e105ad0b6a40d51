/* The TUN offload layer: one read from a TUN device opened with IFF_VNET_HDR (a virtio_net_hdr,
 * then an IPv4 packet or a TSO/USO super-packet) made into wire-size IPv4 packets, as
 * wireguard-go's tun.Device.Read hides offloads from its callers. Every reader of the TUN (the
 * native engine's encap, the js engine's reader thread) goes through here, so they agree on
 * what a read is worth: the packets it becomes, or one drop with its reason.
 *
 * parse: the header checks, the IPv4 validation, the split plan of a super-packet, and the
 *        checksum completion of a NEEDS_CSUM packet (in place);
 * emit:  the packets, one per segment, into space the caller reserves. */
#ifndef FELT_TUN_OFFLOAD_H
#define FELT_TUN_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "gso.h"
#include "stats.h"

typedef struct {
  uint8_t *pkt;    /* the IP packet, inside the caller's read buffer */
  int v6;          /* it is IPv6 */
  size_t len;      /* plain: its total length (bytes past it are ignored); gso: the whole read */
  int gso;         /* a super-packet: `plan` says how it splits */
  gso_plan plan;
  uint32_t nsegs;  /* packets it becomes on the wire (1 for a plain packet) */
  size_t biggest;  /* bytes of the largest of them (the MTU check) */
} tun_read;

/* Makes sense of n bytes read from the TUN. DROP_NONE with *out filled, or the reason the read
 * is dropped (it then counts as one packet). A plain NEEDS_CSUM packet has its checksum completed. */
drop_reason tun_offload_parse(uint8_t *buf, size_t n, tun_read *out);
/* The same, with IPv6 understood only when `ipv6` (without, an IPv6 read is NOT_IP, or TRUNCATED
 * below 20 bytes, exactly as before IPv6 existed). tun_offload_parse understands both. */
drop_reason tun_offload_parse_ex(uint8_t *buf, size_t n, tun_read *out, int ipv6);

/* Writes the read's packets into space from reserve() (a NULL from reserve abandons the rest).
 * Returns the packets written. */
uint32_t tun_offload_emit(const tun_read *r, seg_reserve_fn reserve, void *ctx);

#endif
