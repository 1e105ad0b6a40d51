/* The native fuzz harness, split in two:
 *   harness.c  runs a burst of records through the engine's packet path (engine_path.h),
 *              checks what comes out, and compares every verdict with a reference model;
 *   gen.c      generates bursts from a seeded PRNG (random, structured and mutated packets).
 * A libFuzzer build uses harness.c alone (-DFELT_LIBFUZZER): its input is one burst. */
#ifndef FELT_FUZZ_H
#define FELT_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "../routes.h"
#include "pkt.h"

/* ============================================================================================ */
/* RECORD FORMAT (one burst = records back to back; all integers big-endian)                    */
/*   0x00 ENCAP  u32 len, bytes          a TUN read: virtio_net_hdr + packet                    */
/*   0x01 DECAP  u8 peer, u16 groseg, u8 flags, u32 len, bytes                                  */
/*               peer: index into the current peers, >= their count = an unknown address;      */
/*               groseg: UDP_GRO segment size (0 = none); flags bit 0: MSG_TRUNC                */
/*   0x02 FAULTS u8 send_errno_code, u8 send_fails, u8 tun_fails (apply to what follows)        */
/*   0x03 ROUTES u16 mask (which of the route family are leased), u16 mtu                       */
/*   0x04 GSO    u8 on (UDP GSO usable)                                                          */
/* Consecutive ENCAP records are TUN reads between two flushes (at most 64, as the engine);     */
/* consecutive DECAP records are one recvmmsg batch (at most 16) followed by a GRO flush.       */
/* ============================================================================================ */
enum { REC_ENCAP, REC_DECAP, REC_FAULTS, REC_ROUTES, REC_GSO };
#define REC_ENCAP_HDR 5
#define REC_DECAP_HDR 9

#define FUZZ_LOCAL_NET 0x0af40100u /* 10.244.1.0/24: our lease; .0 is the tunnel address */
#define FUZZ_LOCAL_PREFIX 24
#define FUZZ_PORT 8285
#define FUZZ_MAX_READ (10 + 65535) /* virtio header + the largest packet */
#define FUZZ_NFAMILY 10
#define FUZZ_DEFAULT_MASK 0x7f

/* The route set in force (the generator aims at it). */
typedef struct {
  route_spec routes[FUZZ_NFAMILY];
  int winner[FUZZ_NFAMILY]; /* 0: a later duplicate replaces it */
  size_t nroutes;
  uint32_t peers[FUZZ_NFAMILY]; /* distinct PublicIPs of the winning routes */
  size_t npeers;
  uint32_t mtu;
} fuzz_routes;

const fuzz_routes *fuzz_current_routes(void);

/* Harness life cycle. save_dir: where a burst that breaks an invariant is written (NULL: not). */
void fuzz_init(uint64_t seed, const char *save_dir);
void fuzz_run_burst(const uint8_t *data, size_t size, uint64_t burst_index);
/* Inputs (TUN reads + received messages) run so far. */
uint64_t fuzz_inputs(void);
uint64_t fuzz_violations(void);
/* Counts per verdict, as the engine counted them. */
void fuzz_print_summary(double seconds);
void fuzz_free(void);

#endif
