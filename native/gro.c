#include "gro.h"

#include <string.h>

#include "csum.h"
#include "gso.h"
#include "ipv4.h"
#include "ipv6.h"

void gro_init(gro_batch *g) {
  memset(g, 0, sizeof *g);
  g->gen = 1;
}

/* Header facts of a TCP packet that could take part in a merge. */
typedef struct {
  unsigned ihl, thl;
  uint32_t payload;
  uint32_t seq;
  uint8_t flags;
} tcp_info;

/* The TCP part of both families' checks: th is the TCP header, ihl bytes into a packet of len
 * bytes, and pseudo the pseudo-header sum. Fills ti. */
static int tcp_segment_mergeable(const uint8_t *th, uint32_t ihl, uint32_t len, uint64_t pseudo, tcp_info *ti) {
  ti->ihl = ihl;
  ti->thl = (th[12] >> 4) * 4u;
  if (ti->thl < 20 || ihl + ti->thl > len) return 0;
  ti->payload = len - ihl - ti->thl;
  ti->flags = th[13];
  ti->seq = rd32(th + 4);
  if (ti->payload == 0) return 0;                       /* pure ACKs are never merged */
  if (ti->flags != 0x10 && ti->flags != 0x18) return 0; /* exactly ACK or ACK|PSH */
  /* The merged packet goes up as CHECKSUM_PARTIAL, unverified: verify each segment now. */
  return csum_fold(csum_add(pseudo, th, len - ihl)) == 0xffff;
}

/* Is pkt a TCP data segment we may merge (or merge into)? Fills ti. */
static int tcp_mergeable(const uint8_t *pkt, uint32_t len, tcp_info *ti) {
  if (pkt[9] != IPPROTO_TCP_ || ip_hlen(pkt) != IP_HDR_MIN) return 0;
  if (rd16(pkt + 6) & (IP_MF | IP_OFFMASK)) return 0;
  if (len < IP_HDR_MIN + 20) return 0;
  uint64_t pseudo = csum_pseudo(pkt + 12, pkt + 16, IPPROTO_TCP_, (uint16_t)(len - IP_HDR_MIN));
  return tcp_segment_mergeable(pkt + IP_HDR_MIN, IP_HDR_MIN, len, pseudo, ti);
}

/* The same for TCP/IPv6: the TCP header right after the fixed header (no extension headers). */
static int tcp_mergeable6(const uint8_t *pkt, uint32_t len, tcp_info *ti) {
  if (pkt[6] != IPPROTO_TCP_ || len < IP6_HDR_LEN + 20) return 0;
  uint64_t pseudo = csum_pseudo6(pkt + 8, pkt + 24, len - IP6_HDR_LEN, IPPROTO_TCP_);
  return tcp_segment_mergeable(pkt + IP6_HDR_LEN, IP6_HDR_LEN, len, pseudo, ti);
}

/* Can segment `pkt` (facts ti) be appended to item `it`? */
static int can_append(const gro_item *it, const uint8_t *pkt, const tcp_info *ti, void *owner) {
  if (!it->open || it->owner != owner) return 0;
  const uint8_t *h = it->pkt;
  if (it->v6 != (pkt[0] >> 4 == 6)) return 0;
  if (it->v6) {
    /* Traffic class and flow label, hop limit; the addresses exactly (the flow slot holds hashes). */
    if (memcmp(h, pkt, 4) != 0 || h[7] != pkt[7] || memcmp(h + 8, pkt + 8, 32) != 0) return 0;
  } else if (h[1] != pkt[1] || h[8] != pkt[8] || ((h[6] ^ pkt[6]) & 0x40)) {
    return 0; /* ToS, TTL, DF */
  }
  if (it->hdr_len != ti->ihl + ti->thl) return 0;
  const uint8_t *a = h + ti->ihl, *b = pkt + ti->ihl;
  if (memcmp(a + 8, b + 8, 4) != 0) return 0;                       /* ACK number */
  if (memcmp(a + 20, b + 20, ti->thl - 20) != 0) return 0;          /* options, timestamps included */
  if (ti->seq != it->next_seq) return 0;
  if (ti->payload > it->gso_size) return 0;
  if (it->total_len + ti->payload > 65535) return 0;
  if (it->nsegs >= GRO_MAX_SEGS_PER_ITEM) return 0;
  return 1;
}

static uint32_t fold6(const uint8_t *a) { return rd32(a) ^ rd32(a + 4) * 2654435761u ^ rd32(a + 8) * 40503u ^ rd32(a + 12); }

void gro_add(gro_batch *g, uint8_t *pkt, uint32_t len, void *owner) {
  if (gro_full(g)) return; /* caller's contract; never overrun */
  tcp_info ti = {0};
  int v6 = pkt[0] >> 4 == 6;
  int mergeable = v6 ? tcp_mergeable6(pkt, len, &ti) : tcp_mergeable(pkt, len, &ti);

  /* TCP packets (first fragments included) keep their flow's slot pointing at the newest item,
   * so nothing is ever appended behind a later packet of the same flow. An IPv6 TCP header behind
   * extension headers is not looked for: such a packet ends every merge, like a non-first fragment. */
  gro_flow_slot *slot = NULL;
  int is_tcp_head = v6 ? pkt[6] == IPPROTO_TCP_ && len >= IP6_HDR_LEN + 4
                       : pkt[9] == IPPROTO_TCP_ && (rd16(pkt + 6) & IP_OFFMASK) == 0 && len >= ip_hlen(pkt) + 4;
  int maybe_tcp = v6 ? pkt[6] == IPPROTO_TCP_ || pkt[6] == IPPROTO_HOPOPTS_ || pkt[6] == IPPROTO_ROUTING_ ||
                           pkt[6] == IPPROTO_FRAGMENT_ || pkt[6] == IPPROTO_DSTOPTS_
                     : pkt[9] == IPPROTO_TCP_;
  if (is_tcp_head) {
    const uint8_t *th = pkt + (v6 ? IP6_HDR_LEN : ip_hlen(pkt));
    uint32_t src = v6 ? fold6(pkt + 8) : rd32(pkt + 12), dst = v6 ? fold6(pkt + 24) : rd32(pkt + 16), ports = rd32(th);
    slot = &g->flows[(src * 2654435761u ^ dst * 2246822519u ^ ports * 3266489917u) >> 24 & (GRO_FLOW_SLOTS - 1)];
    if (mergeable && slot->gen == g->gen && slot->src == src && slot->dst == dst && slot->ports == ports) {
      gro_item *it = &g->items[slot->item];
      if (can_append(it, pkt, &ti, owner)) {
        uint32_t p = g->npieces++;
        g->piece_ptr[p] = pkt + it->hdr_len;
        g->piece_len[p] = ti.payload;
        g->piece_next[p] = -1;
        if (it->last_piece >= 0) g->piece_next[it->last_piece] = (int32_t)p;
        else it->first_piece = (int32_t)p;
        it->last_piece = (int32_t)p;
        it->total_len += ti.payload;
        it->orig_bytes += len;
        it->next_seq += ti.payload;
        it->nsegs++;
        /* The newest window advertisement wins. */
        memcpy(it->pkt + ti.ihl + 14, pkt + ti.ihl + 14, 2);
        if (ti.flags & 0x08) it->psh = 1;
        if (ti.payload < it->gso_size || it->psh) it->open = 0;
        g->merged_segments++;
        return;
      }
    }
    slot->gen = g->gen;
    slot->src = src;
    slot->dst = dst;
    slot->ports = ports;
    slot->item = g->nitems;
  } else if (maybe_tcp) {
    /* A non-first TCP fragment (or TCP behind IPv6 extension headers): its ports are unknown, so
     * stop every merge in progress. */
    for (uint32_t i = 0; i < g->nitems; i++) g->items[i].open = 0;
  }

  gro_item *it = &g->items[g->nitems++];
  memset(it, 0, sizeof *it);
  it->pkt = pkt;
  it->first_len = len;
  it->total_len = len;
  it->orig_bytes = len;
  it->nsegs = 1;
  it->first_piece = it->last_piece = -1;
  it->owner = owner;
  it->v6 = (uint8_t)v6;
  if (mergeable) {
    it->hdr_len = (uint16_t)(ti.ihl + ti.thl);
    it->gso_size = (uint16_t)ti.payload;
    it->next_seq = ti.seq + ti.payload;
    it->psh = (ti.flags & 0x08) != 0;
    it->open = !it->psh;
  }
}

/* Patches the first packet's headers for a merged item and fills its virtio header. */
static void finish_merged(gro_item *it, uint8_t *vh) {
  uint8_t *ip = it->pkt;
  unsigned l3 = it->v6 ? IP6_HDR_LEN : IP_HDR_MIN;
  uint8_t *th = ip + l3;
  uint16_t tcp_len = (uint16_t)(it->total_len - l3);
  uint64_t pseudo;
  if (it->v6) {
    wr16(ip + 4, tcp_len);
    pseudo = csum_pseudo6(ip + 8, ip + 24, tcp_len, IPPROTO_TCP_);
  } else {
    wr16(ip + 2, (uint16_t)it->total_len);
    ipv4_set_csum(ip);
    pseudo = csum_pseudo(ip + 12, ip + 16, IPPROTO_TCP_, tcp_len);
  }
  if (it->psh) th[13] |= 0x08;
  /* NEEDS_CSUM: the field holds the folded, uncomplemented pseudo-header sum. */
  csum_store(th + 16, csum_fold(pseudo));
  vnet_hdr h = {
      .flags = VNET_F_NEEDS_CSUM,
      .gso_type = it->v6 ? VNET_GSO_TCPV6 : VNET_GSO_TCPV4,
      .hdr_len = it->hdr_len,
      .gso_size = it->gso_size,
      .csum_start = (uint16_t)l3,
      .csum_offset = 16,
  };
  vnet_write(vh, &h);
}

void gro_flush(gro_batch *g, gro_write_fn emit, void *ctx) {
  static const uint8_t zero_hdr[VNET_HDR_LEN];
  uint8_t vh[VNET_HDR_LEN];
  struct iovec iov[GRO_MAX_SEGS_PER_ITEM + 2];
  for (uint32_t i = 0; i < g->nitems; i++) {
    gro_item *it = &g->items[i];
    int n = 0;
    if (it->nsegs > 1) {
      finish_merged(it, vh);
      iov[n++] = (struct iovec){vh, VNET_HDR_LEN};
    } else {
      iov[n++] = (struct iovec){(void *)zero_hdr, VNET_HDR_LEN};
    }
    iov[n++] = (struct iovec){it->pkt, it->first_len};
    for (int32_t p = it->first_piece; p >= 0; p = g->piece_next[p])
      iov[n++] = (struct iovec){g->piece_ptr[p], g->piece_len[p]};
    emit(ctx, iov, n, it->nsegs, it->orig_bytes, it->owner);
  }
  g->nitems = 0;
  g->npieces = 0;
  if (++g->gen == 0) {
    memset(g->flows, 0, sizeof g->flows);
    g->gen = 1;
  }
}
