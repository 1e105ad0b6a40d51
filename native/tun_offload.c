#include "tun_offload.h"

#include <string.h>

#include "ipv4.h"
#include "ipv6.h"

/* The IPv6 half of tun_offload_parse. */
static drop_reason parse6(uint8_t *pkt, size_t len, const vnet_hdr *h, int gso, tun_read *out) {
  drop_reason v = ipv6_validate(pkt, len, gso);
  if (v != DROP_NONE) return v;
  out->pkt = pkt;
  out->v6 = 1;
  out->gso = gso;
  if (gso) {
    if (gso_make_plan6(pkt, len, h->gso_type, h->gso_size, &out->plan) < 0) return DROP_MALFORMED;
    /* The payload length may be 0 or stale: set it from the read, so an ICMPv6 error about the
     * super-packet quotes its TCP/UDP header too (the sender needs it to find the connection). */
    wr16(pkt + 4, (uint16_t)(len - IP6_HDR_LEN));
    out->len = len;
    out->nsegs = out->plan.nsegs;
    out->biggest = out->plan.seg_len;
    return DROP_NONE;
  }
  len = ip6_total(pkt);
  /* Never inside the fixed header: it was validated and must not be rewritten. */
  if ((h->flags & VNET_F_NEEDS_CSUM) &&
      (h->csum_start < IP6_HDR_LEN || vnet_finish_csum(pkt, len, h->csum_start, h->csum_offset) < 0))
    return DROP_MALFORMED;
  out->len = len;
  out->nsegs = 1;
  out->biggest = len;
  return DROP_NONE;
}

drop_reason tun_offload_parse(uint8_t *buf, size_t n, tun_read *out) { return tun_offload_parse_ex(buf, n, out, 1); }

drop_reason tun_offload_parse_ex(uint8_t *buf, size_t n, tun_read *out, int ipv6) {
  if (n < VNET_HDR_LEN) return DROP_TRUNCATED;
  vnet_hdr h;
  vnet_parse(buf, &h);
  uint8_t *pkt = buf + VNET_HDR_LEN;
  size_t len = n - VNET_HDR_LEN;
  int gso = (h.gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE;
  if (ipv6 && len > 0 && pkt[0] >> 4 == 6) return parse6(pkt, len, &h, gso, out);
  out->v6 = 0;
  /* A super-packet's total length may be 0 or stale: the read's length is what counts. */
  drop_reason v = ipv4_validate(pkt, len, 0, gso);
  if (v != DROP_NONE) return v;
  out->pkt = pkt;
  out->gso = gso;
  if (gso) {
    /* A super-packet the kernel should never have built (bad type, fragment, L4 header beyond
     * the read, > 64 KiB): cannot be split, and sent unsplit it would exceed the tunnel MTU. */
    if (gso_make_plan(pkt, len, h.gso_type, h.gso_size, &out->plan) < 0) return DROP_MALFORMED;
    out->len = len;
    out->nsegs = out->plan.nsegs;
    out->biggest = out->plan.seg_len;
    return DROP_NONE;
  }
  len = ip_total(pkt);
  /* Offsets outside the packet or inside its IP header: completing them would write out of
   * bounds or rewrite validated header fields. */
  if ((h.flags & VNET_F_NEEDS_CSUM) && vnet_finish_csum(pkt, len, h.csum_start, h.csum_offset) < 0)
    return DROP_MALFORMED;
  out->len = len;
  out->nsegs = 1;
  out->biggest = len;
  return DROP_NONE;
}

uint32_t tun_offload_emit(const tun_read *r, seg_reserve_fn reserve, void *ctx) {
  if (r->gso) return r->v6 ? gso_split6(r->pkt, &r->plan, reserve, ctx) : gso_split(r->pkt, &r->plan, reserve, ctx);
  uint8_t *out = reserve(ctx, r->len);
  if (!out) return 0;
  memcpy(out, r->pkt, r->len);
  return 1;
}
