#include "tun_offload.h"

#include <string.h>

#include "ipv4.h"

drop_reason tun_offload_parse(uint8_t *buf, size_t n, tun_read *out) {
  if (n < VNET_HDR_LEN) return DROP_TRUNCATED;
  vnet_hdr h;
  vnet_parse(buf, &h);
  uint8_t *pkt = buf + VNET_HDR_LEN;
  size_t len = n - VNET_HDR_LEN;
  int gso = (h.gso_type & ~VNET_GSO_ECN) != VNET_GSO_NONE;
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
  if (r->gso) return gso_split(r->pkt, &r->plan, reserve, ctx);
  uint8_t *out = reserve(ctx, r->len);
  if (!out) return 0;
  memcpy(out, r->pkt, r->len);
  return 1;
}
