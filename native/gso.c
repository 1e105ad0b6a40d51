#include "gso.h"

#include <string.h>

#include "csum.h"
#include "ipv4.h"
#include "ipv6.h"

void vnet_parse(const uint8_t *p, vnet_hdr *h) {
  h->flags = p[0];
  h->gso_type = p[1];
  memcpy(&h->hdr_len, p + 2, 2);
  memcpy(&h->gso_size, p + 4, 2);
  memcpy(&h->csum_start, p + 6, 2);
  memcpy(&h->csum_offset, p + 8, 2);
}

void vnet_write(uint8_t *p, const vnet_hdr *h) {
  p[0] = h->flags;
  p[1] = h->gso_type;
  memcpy(p + 2, &h->hdr_len, 2);
  memcpy(p + 4, &h->gso_size, 2);
  memcpy(p + 6, &h->csum_start, 2);
  memcpy(p + 8, &h->csum_offset, 2);
}

int vnet_finish_csum(uint8_t *pkt, size_t len, uint16_t csum_start, uint16_t csum_offset) {
  if ((size_t)csum_start + csum_offset + 2 > len) return -1;
  /* Never inside the IP header: that was validated already and must not be rewritten. */
  unsigned hlen = len > 0 && pkt[0] >> 4 == 6 ? IP6_HDR_LEN : ip_hlen(pkt);
  if (len < IP_HDR_MIN || csum_start < hlen) return -1;
  /* The region must start at an even offset for the native-order sum; L4 headers always do. */
  if (csum_start & 1) return -1;
  uint16_t c = csum_finish(csum_add(0, pkt + csum_start, len - csum_start));
  csum_store(pkt + csum_start + csum_offset, c ? c : 0xffff);
  return 0;
}

/* The plan once the network header (l3 bytes, upper-layer protocol proto) is known; tcp_type is
 * the family's TSO gso_type. */
static int make_plan(const uint8_t *pkt, size_t len, unsigned l3, uint8_t proto, uint8_t gso_type, uint8_t tcp_type,
                     uint16_t gso_size, gso_plan *plan) {
  gso_type &= (uint8_t)~VNET_GSO_ECN;
  if (gso_size == 0 || len > 65535) return -1; /* no BIG TCP through TUN */
  uint32_t l4;
  if (gso_type == tcp_type && proto == IPPROTO_TCP_) {
    if (len < l3 + 20) return -1;
    l4 = (pkt[l3 + 12] >> 4) * 4u;
    if (l4 < 20) return -1;
  } else if (gso_type == VNET_GSO_UDP_L4 && proto == IPPROTO_UDP_) {
    l4 = 8;
  } else {
    return -1; /* IPv6: extension headers in a super-packet, the kernel does not build those */
  }
  if (len < l3 + l4) return -1;
  plan->hdr_len = l3 + l4;
  plan->l4_hlen = l4;
  plan->payload = (uint32_t)(len - plan->hdr_len);
  plan->gso_size = gso_size;
  plan->nsegs = plan->payload == 0 ? 1 : (plan->payload + gso_size - 1) / gso_size;
  plan->seg_len = plan->hdr_len + (plan->payload < gso_size ? plan->payload : gso_size);
  plan->proto = proto;
  return 0;
}

int gso_make_plan(const uint8_t *pkt, size_t len, uint8_t gso_type, uint16_t gso_size, gso_plan *plan) {
  if (rd16(pkt + 6) & (IP_MF | IP_OFFMASK)) return -1; /* a fragment cannot be a TSO packet */
  return make_plan(pkt, len, ip_hlen(pkt), pkt[9], gso_type, VNET_GSO_TCPV4, gso_size, plan);
}

/* IPv6 (TSO6 / USO over IPv6): the upper layer right after the fixed header. */
int gso_make_plan6(const uint8_t *pkt, size_t len, uint8_t gso_type, uint16_t gso_size, gso_plan *plan) {
  if (len < IP6_HDR_LEN) return -1;
  return make_plan(pkt, len, IP6_HDR_LEN, pkt[6], gso_type, VNET_GSO_TCPV6, gso_size, plan);
}

/* Both families: the network header is copied and fixed per family, the transport part is shared. */
static uint32_t split(const uint8_t *pkt, const gso_plan *plan, seg_reserve_fn reserve, void *ctx, int v6) {
  unsigned l3 = plan->hdr_len - plan->l4_hlen;
  const uint8_t *l4 = pkt + l3;
  const uint8_t *payload = pkt + plan->hdr_len;
  uint16_t id0 = v6 ? 0 : rd16(pkt + 4);
  uint32_t seq0 = plan->proto == IPPROTO_TCP_ ? rd32(l4 + 4) : 0;
  uint32_t off = 0;
  for (uint32_t i = 0; i < plan->nsegs; i++) {
    uint32_t pl = plan->payload - off < plan->gso_size ? plan->payload - off : plan->gso_size;
    uint32_t seg_len = plan->hdr_len + pl;
    uint8_t *out = reserve(ctx, seg_len);
    if (!out) return i;
    int last = i + 1 == plan->nsegs;

    uint16_t l4_len = (uint16_t)(plan->l4_hlen + pl);
    memcpy(out, pkt, l3);
    uint64_t sum;
    if (v6) {
      wr16(out + 4, l4_len); /* payload length: no extension headers here */
      sum = csum_pseudo6(out + 8, out + 24, l4_len, plan->proto);
    } else {
      wr16(out + 2, (uint16_t)seg_len);
      wr16(out + 4, (uint16_t)(id0 + i));
      ipv4_set_csum(out);
      sum = csum_pseudo(out + 12, out + 16, plan->proto, l4_len);
    }

    uint8_t *o4 = out + l3;
    memcpy(o4, l4, plan->l4_hlen);
    uint8_t *csum_field;
    if (plan->proto == IPPROTO_TCP_) {
      wr32(o4 + 4, seq0 + off);
      if (!last) o4[13] &= (uint8_t)~0x09; /* FIN and PSH only on the last segment */
      if (i > 0) o4[13] &= (uint8_t)~0x80; /* CWR only on the first */
      csum_field = o4 + 16;
    } else {
      wr16(o4 + 4, l4_len);
      csum_field = o4 + 6;
    }
    csum_store(csum_field, 0);
    sum = csum_add(sum, o4, plan->l4_hlen);
    sum = csum_copy(o4 + plan->l4_hlen, payload + off, pl, sum);
    uint16_t c = csum_finish(sum);
    /* 0 would mean "no checksum" for UDP (not allowed over IPv6): send its one's-complement twin 0xffff. */
    csum_store(csum_field, c == 0 && (v6 || plan->proto == IPPROTO_UDP_) ? 0xffff : c);
    off += pl;
  }
  return plan->nsegs;
}

uint32_t gso_split(const uint8_t *pkt, const gso_plan *plan, seg_reserve_fn reserve, void *ctx) {
  return split(pkt, plan, reserve, ctx, 0);
}

uint32_t gso_split6(const uint8_t *pkt, const gso_plan *plan, seg_reserve_fn reserve, void *ctx) {
  return split(pkt, plan, reserve, ctx, 1);
}
