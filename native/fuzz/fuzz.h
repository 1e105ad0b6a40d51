/* The native fuzz harness, split in two:
 *   harness.c  runs a burst of records through the engine's packet path (engine_path.h),
 *              checks what comes out, and compares every verdict with the one the reference
 *              model (scripts/fuzz/model.ts) wrote next to the input (EXPECT records);
 *   gen.c      generates bursts from a seeded PRNG (random, structured and mutated packets),
 *              and is the command line: --emit (bursts to stdout), --vectors (run annotated ones).
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
/*   0x05 EXPECT_ENCAP u8 verdict, u32 units, u8 icmp type, u8 icmp code, u32 peer             */
/*               follows an ENCAP record: the model's verdict (0xff forward, else the drop     */
/*               reason's index in DROP_REASONS), per segment x units; the ICMP error expected */
/*               (0xff 0xff none); forwarded: the PublicIP of the peer the route names         */
/*   0x06 EXPECT_DECAP u32 source, u32 n, n x u8 verdict                                        */
/*               follows a DECAP record: the sender the peer index means, and the verdicts    */
/*               one per datagram (unknown-peer: every datagram; MSG_TRUNC or empty: one)      */
/*   0x07 ROUTES6 u8 mask (ROUTE_FAMILY6 entries leased), u8 underlays (bit 0 IPv4, bit 1 IPv6;   */
/*               none: IPv4), u16 mtu (>= 1280): the node turns dual-stack (IPv6 lease, IPv6    */
/*               routes, the IPv6 underlay socket) until the next ROUTES record; its inputs    */
/*               are IPv6 packets and their expectations the two records below                 */
/*   0x08 EXPECT_ENCAP6 u8 verdict, u32 units, u8 icmp type, u8 icmp code, 16 bytes underlay    */
/*               as EXPECT_ENCAP; the peer's underlay address (IPv4 as ::ffff:a.b.c.d)        */
/*   0x09 EXPECT_DECAP6 16 bytes source, u32 n, n x u8 verdict  as EXPECT_DECAP (IPv4 mapped)  */
/* Consecutive ENCAP records are TUN reads between two flushes (at most 64, as the engine);     */
/* consecutive DECAP records are one recvmmsg batch (at most 16) followed by a GRO flush.       */
/* gen.c writes bursts without EXPECT records; scripts/fuzz-vectors.ts adds them.               */
/* ============================================================================================ */
enum { REC_ENCAP, REC_DECAP, REC_FAULTS, REC_ROUTES, REC_GSO, REC_EXPECT_ENCAP, REC_EXPECT_DECAP,
       REC_ROUTES6, REC_EXPECT_ENCAP6, REC_EXPECT_DECAP6 };
#define REC_EXPECT_ENCAP_LEN 11
#define REC_EXPECT_ENCAP6_LEN 23
#define FUZZ_VERDICT_FORWARD 0xff
#define REC_ENCAP_HDR 5
#define REC_DECAP_HDR 9

#define FUZZ_LOCAL_NET 0x0af40100u /* 10.244.1.0/24: our lease; .0 is the tunnel address */
#define FUZZ_LOCAL_PREFIX 24
#define FUZZ_PORT 8285
#define FUZZ_MAX_READ (10 + 65535) /* virtio header + the largest packet */
#define FUZZ_NFAMILY 10
#define FUZZ_DEFAULT_MASK 0x7f

/* The leases a ROUTES mask picks from (bit i: entry i). */
extern const route_spec FUZZ_ROUTE_FAMILY[FUZZ_NFAMILY];

/* The dual-stack node: our IPv6 lease fd00:0:0:1::/64 (its network address is the ICMPv6
 * source), the peers' leases a ROUTES6 mask picks from (ROUTE_FAMILY6 in scripts/fuzz/model.ts,
 * same order: an IPv4 side with PublicIP 0 = no IPv4 underlay, an IPv6 side), and this node's
 * IPv6 underlay address fd77::. */
#define FUZZ_NFAMILY6 6
extern const uint8_t FUZZ_LOCAL6[16];
#define FUZZ_LOCAL_PREFIX6 64
extern const route_spec FUZZ_ROUTE_FAMILY6_V4[FUZZ_NFAMILY6];
extern const route_spec6 FUZZ_ROUTE_FAMILY6[FUZZ_NFAMILY6];

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
