/* The native engine's control side, on the Node main thread: start (socket, offloads, threads),
 * route table publication with generation-based reclamation of retired tables and departed
 * peers, and stop. The packet path is engine.c. */
#include <errno.h>
#include <linux/if_tun.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "engine.h"
#include "engine_loop.h"

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

/* ------------------------------------------------------------------------------------------ */
/* Control                                                                                    */

/* Asks for checksum + TSO (+ USO where the kernel has it), as far as the config allows; records
 * what was accepted. Whatever is refused, packets still flow (the kernel then segments and
 * checksums before handing them over). */
static void setup_offloads(engine *e) {
  int fd = e->cfg.tun_fd;
  int level = e->cfg.tun_offload;
  e->features.vnet_hdr = 1;
  /* TSO6 only with IPv6 pod traffic: an IPv4-only node asks for what it always did. */
  unsigned long tso6 = e->cfg.has6 ? TUN_F_TSO6 : 0;
  if (level >= 2 && tso6 &&
      ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | tso6 | TUN_F_USO4 | TUN_F_USO6)) == 0) {
    e->features.csum = e->features.tso4 = e->features.tso6 = e->features.uso = 1;
  } else if (level >= 2 && ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4 | TUN_F_USO4 | TUN_F_USO6)) == 0) {
    e->features.csum = e->features.tso4 = e->features.uso = 1;
  } else if (level >= 2 && ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO4)) == 0) {
    e->features.csum = e->features.tso4 = 1;
  } else if (level >= 1 && ioctl(fd, TUNSETOFFLOAD, (unsigned long)TUN_F_CSUM) == 0) {
    e->features.csum = 1;
  } else {
    ioctl(fd, TUNSETOFFLOAD, 0UL);
  }
}

engine *engine_start(const engine_config *cfg, felt_err *err) {
  if (cfg->local_prefix > 32) return felt_errmsg(err, "engineStart: invalid local prefix length"), NULL;
  if (cfg->mtu < 68 || cfg->mtu > 65535 - 28) return felt_errmsg(err, "engineStart: invalid MTU %u", cfg->mtu), NULL;
  if (!cfg->has4 && !cfg->has6) return felt_errmsg(err, "engineStart: neither an IPv4 nor an IPv6 lease"), NULL;
  engine *e = calloc(1, sizeof *e);
  if (!e) return felt_errno(err, ENOMEM, "engineStart"), NULL;
  e->cfg = *cfg;
  /* Without has4, mask and network 0 send every IPv4 packet into the own-subnet drop branch, where it
   * is counted not-ip: the IPv4 path pays no extra test for the IPv6-only overlay. */
  e->local_mask = cfg->has4 ? prefix_mask(cfg->local_prefix) : 0;
  e->cfg.local_net = cfg->has4 ? cfg->local_net & e->local_mask : 0;
  e->wake_fd = -1;
  e->udp.fd = -1;
  e->udp6.fd = -1;
  e->enc_seen = e->dec_seen = OFFLINE;
  if (cfg->has6 && cfg->local_prefix6 > 128) {
    felt_errmsg(err, "engineStart: invalid local IPv6 prefix length");
    goto fail;
  }
  if (cfg->has6) { /* keep only the network part: it is the tunnel address */
    for (uint32_t i = 0; i < 16; i++) {
      int bits = (int)cfg->local_prefix6 - 8 * (int)i;
      e->cfg.local_net6[i] = bits >= 8 ? cfg->local_net6[i] : bits <= 0 ? 0 : (uint8_t)(cfg->local_net6[i] & (0xff << (8 - bits)));
    }
  }

  /* bindIP 0 means "no IPv4 underlay" only on a node that has an IPv6 one. */
  int want4 = cfg->bind_ip != 0 || !cfg->has_bind6;
  if (want4 && udp_open(&e->udp, cfg->bind_ip, cfg->port, err) < 0) goto fail;
  if (cfg->has_bind6 && udp_open6(&e->udp6, cfg->bind_ip6, cfg->port, err) < 0) goto fail;
  e->udp6_on = cfg->has_bind6;
  const udp_sock *any = want4 ? &e->udp : &e->udp6;
  e->features.udp_gso = any->gso && (!want4 || !cfg->has_bind6 || e->udp6.gso) && cfg->udp_gso;
  e->features.udp_gro = any->gro;
  e->features.sndbuf = any->sndbuf;
  e->features.rcvbuf = any->rcvbuf;
  e->features.buffers_forced = any->forced;
  setup_offloads(e);

  e->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (e->wake_fd < 0) {
    felt_errno(err, errno, "engineStart: eventfd");
    goto fail;
  }
  e->table = rt_build(NULL, 0, &e->registry, err);
  if (!e->table || engine_threads_init(e) < 0) {
    felt_errno(err, ENOMEM, "engineStart");
    goto fail;
  }

  int rc;
  if (cfg->threads == ENGINE_THREADS_ONE) {
    rc = pthread_create(&e->enc_tid, NULL, engine_duo_main, e);
  } else {
    rc = pthread_create(&e->enc_tid, NULL, engine_enc_main, e->enc);
  }
  if (rc != 0) {
    felt_errno(err, rc, "engineStart: pthread_create");
    goto fail;
  }
  e->enc_started = 1;
  if (cfg->threads == ENGINE_THREADS_ONE) return e;
  rc = pthread_create(&e->dec_tid, NULL, engine_dec_main, e->dec);
  if (rc != 0) {
    felt_errno(err, rc, "engineStart: pthread_create");
    goto fail;
  }
  e->dec_started = 1;
  return e;

fail:
  if (e->enc_started) {
    __atomic_store_n(&e->stopping, 1, __ATOMIC_RELEASE);
    uint64_t one = 1;
    if (write(e->wake_fd, &one, sizeof one) < 0) { /* cannot fail on a fresh eventfd */
    }
    pthread_join(e->enc_tid, NULL);
  }
  if (e->wake_fd >= 0) close(e->wake_fd);
  if (e->udp.fd >= 0) close(e->udp.fd);
  if (e->udp6.fd >= 0) close(e->udp6.fd);
  rt_free(e->table);
  registry_free(&e->registry);
  engine_threads_free(e);
  free(e);
  return NULL;
}

int engine_set_routes(engine *e, const route_spec *routes, size_t n, felt_err *err) {
  return engine_set_routes6(e, routes, NULL, n, err);
}

/* Does table t still route to peer p (by p's identity)? */
static int still_routed(const route_table *t, const peer *p) {
  const rt_peer *rp = p->public_ip == 0 && p->has_ip6 ? rt_find_peer6(t, p->public_ip6) : rt_find_peer(t, p->public_ip);
  return rp && rp->peer == p;
}

int engine_set_routes6(engine *e, const route_spec *routes, const route_spec6 *routes6, size_t n, felt_err *err) {
  route_table *t = rt_build6(routes, routes6, n, &e->registry, err);
  if (!t) return -1;
  route_table *old = __atomic_exchange_n(&e->table, t, __ATOMIC_SEQ_CST);
  old->retired_gen = __atomic_add_fetch(&e->gen, 1, __ATOMIC_SEQ_CST);
  old->retired_next = e->retired;
  e->retired = old;
  /* Peers that lost their last lease: freed, like the old table, once no thread can reach them. */
  uint64_t now = engine_now_ms();
  for (uint32_t i = 0; i < old->npeers; i++) {
    peer *p = old->peer_array[i].peer;
    if (!still_routed(t, p)) registry_retire(&e->registry, p, old->retired_gen, now);
  }
  engine_reclaim(e);
  return 0;
}

/* A thread is past generation g when it is blocked (OFFLINE) or has re-read the table since. */
static int past(const uint64_t *seen, uint64_t g) {
  uint64_t s = __atomic_load_n(seen, __ATOMIC_SEQ_CST);
  return s == OFFLINE || s >= g;
}

static int threads_past(void *ctx, uint64_t g) {
  engine *e = ctx;
  return past(&e->enc_seen, g) && past(&e->dec_seen, g);
}

void engine_reclaim(engine *e) {
  registry_reclaim(&e->registry, threads_past, e);
  route_table **link = &e->retired;
  while (*link) {
    route_table *r = *link;
    if (past(&e->enc_seen, r->retired_gen) && past(&e->dec_seen, r->retired_gen)) {
      *link = r->retired_next;
      rt_free(r);
    } else {
      link = &r->retired_next;
    }
  }
}

void engine_stop(engine *e) {
  __atomic_store_n(&e->stopping, 1, __ATOMIC_RELEASE);
  uint64_t one = 1;
  if (write(e->wake_fd, &one, sizeof one) < 0) { /* an eventfd write only fails on overflow */
  }
  if (e->enc_started) pthread_join(e->enc_tid, NULL);
  if (e->dec_started) pthread_join(e->dec_tid, NULL);
  close(e->wake_fd);
  if (e->udp.fd >= 0) close(e->udp.fd);
  if (e->udp6_on) close(e->udp6.fd);
  close(e->cfg.tun_fd); /* a non-persistent TUN disappears with its address and route */
  rt_free(e->table);
  while (e->retired) {
    route_table *r = e->retired;
    e->retired = r->retired_next;
    rt_free(r);
  }
  registry_free(&e->registry);
  engine_threads_free(e);
  free(e);
}
