/* The native datapath engine: one thread per direction, moving packets between a TUN device
 * (IFF_VNET_HDR, offloads) and the underlay UDP sockets (IPv4, IPv6 or both), as docs/datapath.md specifies.
 * Control (routes, stats, stop) comes from one thread: the Node main thread. */
#ifndef FELT_ENGINE_H
#define FELT_ENGINE_H

#include <pthread.h>
#include <stdint.h>

#include "err.h"
#include "routes.h"
#include "stats.h"
#include "udp.h"

typedef struct {
  int tun_fd; /* opened with IFF_VNET_HDR, non-blocking; owned by the engine once started */
  uint32_t mtu;
  /* IPv4 pod traffic: our lease; its .0 is the tunnel address (ICMP source). has4 0 = an IPv6-only
   * overlay (then has6): every IPv4 packet is dropped not-ip. */
  int has4;
  uint32_t local_net;
  uint32_t local_prefix;
  uint32_t bind_ip;   /* 0 with has_bind6: no IPv4 underlay (no IPv4 socket) */
  uint16_t port;
  /* IPv6 pod traffic: our IPv6 lease (its network address is the tunnel address, ICMPv6 source). */
  int has6;
  uint8_t local_net6[16];
  uint32_t local_prefix6;
  /* IPv6 underlay: a second socket bound to [bind_ip6]:port. */
  int has_bind6;
  uint8_t bind_ip6[16];
  int udp_gso;     /* use UDP GSO when the kernel has it (0: one datagram per send, for fallback tests) */
  int tun_offload; /* TUNSETOFFLOAD request: 2 = csum+TSO(+USO), 1 = csum only, 0 = none */
  int threads;     /* ENGINE_THREADS_ONE or ENGINE_THREADS_PER_DIRECTION */
} engine_config;

enum { ENGINE_THREADS_PER_DIRECTION = 0, ENGINE_THREADS_ONE = 1 };

/* Encap (TUN -> UDP) counters: written by the encap thread only. */
typedef struct {
  counter packets, bytes;
  counter drops[DROP_COUNT];
  counter icmp_sent, icmp_rate_limited;
  counter tun_reads, tun_read_segments, gso_reads;
  counter udp_sends, udp_send_datagrams;
} encap_counters;

/* Decap (UDP -> TUN) counters: written by the decap thread only. */
typedef struct {
  counter packets, bytes;
  counter drops[DROP_COUNT];
  counter udp_recv_calls, udp_recv_messages, udp_recv_datagrams;
  counter tun_writes, tun_write_packets;
} decap_counters;

typedef struct {
  int vnet_hdr, csum, tso4, tso6, uso;
  int udp_gso; /* may be cleared by the encap thread (EIO): read with __atomic_load_n */
  int udp_gso_disabled_errno;
  int udp_gro;
  int sndbuf, rcvbuf, buffers_forced;
} engine_features;

struct enc_thread;
struct dec_thread;

typedef struct engine {
  engine_config cfg;
  uint32_t local_mask; /* 0 without has4: every IPv4 destination takes the own-subnet branch, where it is not-ip */
  udp_sock udp;  /* IPv4 underlay socket; fd -1 when the node has none */
  udp_sock udp6; /* IPv6 underlay socket, when udp6_on */
  int udp6_on;
  int wake_fd;
  int stopping;
  pthread_t enc_tid, dec_tid;
  int enc_started, dec_started;
  struct enc_thread *enc;
  struct dec_thread *dec;

  /* Route table publication: the data threads read `table` once per wake-up and announce, in
   * `seen`, the generation they read it at (or OFFLINE while blocked), so a retired table is freed
   * once every thread has moved past its generation. No lock on the packet path. */
  route_table *table;
  uint64_t gen;
  uint64_t enc_seen, dec_seen;
  route_table *retired; /* control thread only */
  peer_registry registry; /* control thread only */

  encap_counters enc_ctr;
  decap_counters dec_ctr;
  engine_features features;
} engine;

/* Starts the threads. On failure returns NULL with err set and leaves cfg->tun_fd open. */
engine *engine_start(const engine_config *cfg, felt_err *err);

/* Publishes a new route table built from routes[0, n). 0, or -1 with err set (old table kept). */
int engine_set_routes(engine *e, const route_spec *routes, size_t n, felt_err *err);
/* The same with each route's IPv6 side (routes6[i] beside routes[i]; NULL: IPv4 only). */
int engine_set_routes6(engine *e, const route_spec *routes, const route_spec6 *routes6, size_t n, felt_err *err);

/* Frees retired tables no thread can still be reading. Called by set_routes and stats. */
void engine_reclaim(engine *e);

/* The current table (control thread only: it is the only one that frees tables). */
static inline const route_table *engine_table(const engine *e) { return e->table; }

/* Stops and joins the threads, closes the socket and the TUN fd, frees everything. */
void engine_stop(engine *e);

#endif
