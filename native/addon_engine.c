/* N-API glue for the native engine: engineStart / engineSetRoutes / engineStats / engineStop /
 * engineDropReasons. Conversion only; the engine lives in engine.c. */
#include <arpa/inet.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon_engine.h"
#include "addon_util.h"
#include "engine.h"

/* The JS handle owns this box; `e` is NULL once stopped. */
typedef struct {
  engine *e;
  napi_env env;
} engine_box;

static void box_stop(engine_box *box) {
  if (!box->e) return;
  engine_stop(box->e);
  box->e = NULL;
}

static void box_cleanup_hook(void *arg) { box_stop(arg); }

static void box_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  engine_box *box = data;
  if (box->e) {
    /* Garbage-collected while running: nobody can stop it any more, so stop it now. */
    napi_remove_env_cleanup_hook(env, box_cleanup_hook, box);
    box_stop(box);
  }
  free(box);
}

/* The running engine behind a handle, or NULL with a JS exception pending. */
static engine *get_engine(napi_env env, napi_value handle, const char *op) {
  napi_valuetype t;
  engine_box *box = NULL;
  if (napi_typeof(env, handle, &t) != napi_ok || t != napi_external ||
      napi_get_value_external(env, handle, (void **)&box) != napi_ok || !box) {
    felt_err err;
    felt_errmsg(&err, "%s: not an engine handle", op);
    throw_err(env, &err);
    return NULL;
  }
  if (!box->e) {
    felt_err err;
    felt_errmsg(&err, "%s: the engine is stopped", op);
    throw_err(env, &err);
    return NULL;
  }
  return box->e;
}

/* obj[key] as 16 bytes (a Uint8Array / Buffer) when present; *has says whether it was. */
static int get_opt_ip6(napi_env env, napi_value obj, const char *key, uint8_t out[16], int *has) {
  bool present = false;
  *has = 0;
  if (napi_has_named_property(env, obj, key, &present) != napi_ok || !present) return 0;
  napi_value v;
  napi_valuetype t;
  napi_get_named_property(env, obj, key, &v);
  napi_typeof(env, v, &t);
  if (t == napi_undefined) return 0;
  void *data;
  size_t len;
  if (get_bytes(env, v, key, &data, &len) < 0) return -1;
  if (len != 16) {
    char msg[80];
    snprintf(msg, sizeof msg, "engineStart: %s must be 16 bytes", key);
    napi_throw_range_error(env, NULL, msg);
    return -1;
  }
  memcpy(out, data, 16);
  *has = 1;
  return 0;
}

static napi_value js_engine_start(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, argv, 1, 1) < 0) return NULL;
  uint32_t tun_fd, mtu, local_net = 0, local_prefix = 0, bind_ip, port;
  bool has4 = false; /* localNetwork absent: an IPv6-only overlay */
  if (get_prop_u32(env, argv[0], "tunFd", 0, INT32_MAX, false, &tun_fd) < 0 ||
      get_prop_u32(env, argv[0], "mtu", 68, 65535 - 28, false, &mtu) < 0 ||
      get_opt_present(env, argv[0], "localNetwork", &has4) < 0 ||
      (has4 && (get_prop_u32(env, argv[0], "localNetwork", 0, UINT32_MAX, false, &local_net) < 0 ||
                get_prop_u32(env, argv[0], "localPrefixLen", 0, 32, false, &local_prefix) < 0)) ||
      get_prop_u32(env, argv[0], "bindIP", 0, UINT32_MAX, false, &bind_ip) < 0 ||
      get_prop_u32(env, argv[0], "port", 1, 65535, false, &port) < 0)
    return NULL;
  bool udp_gso = true;
  uint32_t tun_offload = 2;
  uint32_t threads = ENGINE_THREADS_PER_DIRECTION;
  if (get_opt_bool(env, argv[0], "udpGso", &udp_gso) < 0 ||
      get_prop_u32(env, argv[0], "tunOffload", 0, 2, true, &tun_offload) < 0 ||
      get_prop_u32(env, argv[0], "threads", 0, 1, true, &threads) < 0)
    return NULL;
  /* IPv6: localNetwork6 / bindIP6 as 16-byte arrays, when the node has them. */
  uint8_t net6[16] = {0}, bind6[16] = {0};
  uint32_t prefix6 = 0;
  int has6 = 0, has_bind6 = 0;
  if (get_opt_ip6(env, argv[0], "localNetwork6", net6, &has6) < 0 ||
      get_opt_ip6(env, argv[0], "bindIP6", bind6, &has_bind6) < 0 ||
      (has6 && get_prop_u32(env, argv[0], "localPrefixLen6", 0, 128, false, &prefix6) < 0))
    return NULL;
  engine_config cfg = {
      .tun_fd = (int)tun_fd,
      .mtu = mtu,
      .has4 = has4,
      .local_net = local_net,
      .local_prefix = local_prefix,
      .bind_ip = bind_ip,
      .port = (uint16_t)port,
      .udp_gso = udp_gso,
      .tun_offload = (int)tun_offload,
      .threads = (int)threads,
      .has6 = has6,
      .local_prefix6 = prefix6,
      .has_bind6 = has_bind6,
  };
  memcpy(cfg.local_net6, net6, 16);
  memcpy(cfg.bind_ip6, bind6, 16);
  engine_box *box = calloc(1, sizeof *box);
  if (!box) {
    napi_throw_error(env, NULL, "engineStart: out of memory");
    return NULL;
  }
  felt_err err;
  box->e = engine_start(&cfg, &err);
  if (!box->e) {
    free(box);
    return throw_err(env, &err);
  }
  box->env = env;
  napi_value handle;
  if (napi_create_external(env, box, box_finalize, NULL, &handle) != napi_ok) {
    box_stop(box);
    free(box);
    napi_throw_error(env, NULL, "engineStart: napi_create_external failed");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, box_cleanup_hook, box);
  return handle;
}

static napi_value js_engine_set_routes(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (get_args(env, info, argv, 3, 2) < 0) return NULL;
  engine *e = get_engine(env, argv[0], "engineSetRoutes");
  if (!e) return NULL;
  bool is_ta = false;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (napi_is_typedarray(env, argv[1], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_uint32_array || length % 3 != 0) {
    napi_throw_type_error(env, NULL,
                          "engineSetRoutes: routes must be a Uint32Array of [network, prefixLen, publicIP] triples");
    return NULL;
  }
  /* route_spec is three uint32 fields: the triples are used in place. */
  _Static_assert(sizeof(route_spec) == 12, "route_spec layout");
  /* The IPv6 side: one route_spec6 (10 words) per route, when given. */
  const route_spec6 *r6 = NULL;
  napi_valuetype t6;
  napi_typeof(env, argv[2], &t6);
  if (t6 != napi_undefined) {
    size_t len6 = 0;
    void *data6 = NULL;
    _Static_assert(sizeof(route_spec6) == 40, "route_spec6 layout");
    if (napi_is_typedarray(env, argv[2], &is_ta) != napi_ok || !is_ta ||
        napi_get_typedarray_info(env, argv[2], &type, &len6, &data6, NULL, NULL) != napi_ok ||
        type != napi_uint32_array || len6 != length / 3 * 10) {
      napi_throw_type_error(env, NULL, "engineSetRoutes: routes6 must be a Uint32Array of 10 words per route");
      return NULL;
    }
    r6 = data6;
  }
  felt_err err;
  if (engine_set_routes6(e, (const route_spec *)data, r6, length / 3, &err) < 0) return throw_err(env, &err);
  return NULL;
}

static napi_value counter_array(napi_env env, const counter *c, const counter *c2) {
  napi_value arr;
  napi_create_array_with_length(env, DROP_COUNT, &arr);
  for (uint32_t i = 0; i < DROP_COUNT; i++) {
    napi_value n;
    napi_create_double(env, (double)(ctr_get(&c[i]) + (c2 ? ctr_get(&c2[i]) : 0)), &n);
    napi_set_element(env, arr, i, n);
  }
  return arr;
}

static napi_value direction(napi_env env, const counter *packets, const counter *bytes) {
  napi_value o;
  napi_create_object(env, &o);
  set_num(env, o, "packets", (double)ctr_get(packets));
  set_num(env, o, "bytes", (double)ctr_get(bytes));
  return o;
}

static napi_value peer_object(napi_env env, uint32_t public_ip, int has_ip6, const uint8_t *public_ip6,
                              const dir_counters *tx, const dir_counters *rx) {
  napi_value o;
  napi_create_object(env, &o);
  set_num(env, o, "publicIP", public_ip);
  if (has_ip6) {
    char text[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, public_ip6, text, sizeof text);
    napi_value s;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &s);
    napi_set_named_property(env, o, "publicIPv6", s);
  }
  set_num(env, o, "txPackets", (double)ctr_get(&tx->packets));
  set_num(env, o, "txBytes", (double)ctr_get(&tx->bytes));
  set_num(env, o, "rxPackets", (double)ctr_get(&rx->packets));
  set_num(env, o, "rxBytes", (double)ctr_get(&rx->bytes));
  set_num(env, o, "lastTxAt", (double)ctr_get(&tx->last_ms));
  set_num(env, o, "lastRxAt", (double)ctr_get(&rx->last_ms));
  napi_set_named_property(env, o, "drops", counter_array(env, tx->drops, rx->drops));
  return o;
}

static napi_value js_engine_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, argv, 1, 1) < 0) return NULL;
  engine *e = get_engine(env, argv[0], "engineStats");
  if (!e) return NULL;
  engine_reclaim(e);
  const encap_counters *ec = &e->enc_ctr;
  const decap_counters *dc = &e->dec_ctr;

  napi_value out;
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "encap", direction(env, &ec->packets, &ec->bytes));
  napi_set_named_property(env, out, "decap", direction(env, &dc->packets, &dc->bytes));
  napi_set_named_property(env, out, "encapDrops", counter_array(env, ec->drops, NULL));
  napi_set_named_property(env, out, "decapDrops", counter_array(env, dc->drops, NULL));
  set_num(env, out, "icmpSent", (double)ctr_get(&ec->icmp_sent));
  set_num(env, out, "icmpRateLimited", (double)ctr_get(&ec->icmp_rate_limited));

  const route_table *t = engine_table(e);
  napi_value peers;
  napi_create_array_with_length(env, t->npeers, &peers);
  for (uint32_t i = 0; i < t->npeers; i++) {
    const peer *p = t->peer_array[i].peer;
    napi_set_element(env, peers, i, peer_object(env, p->public_ip, p->has_ip6, p->public_ip6, &p->tx, &p->rx));
  }
  napi_set_named_property(env, out, "peers", peers);
  /* Peers freed after losing their last lease: the most recent first, bounded. */
  const peer_registry *reg = &e->registry;
  napi_value departed;
  napi_create_array_with_length(env, reg->departed_count, &departed);
  for (uint32_t i = 0; i < reg->departed_count; i++) {
    const departed_peer *d = registry_departed(reg, i);
    napi_value o = peer_object(env, d->public_ip, d->has_ip6, d->public_ip6, &d->tx, &d->rx);
    set_num(env, o, "departedAt", (double)d->departed_ms);
    napi_set_element(env, departed, i, o);
  }
  napi_set_named_property(env, out, "departedPeers", departed);
  set_num(env, out, "departedPeersFreed", (double)reg->departed_total);
  set_num(env, out, "registeredPeers", registry_live(reg));

  const engine_features *f = &e->features;
  napi_value feat;
  napi_create_object(env, &feat);
  set_bool(env, feat, "vnetHdr", f->vnet_hdr);
  set_bool(env, feat, "tunCsum", f->csum);
  set_bool(env, feat, "tso4", f->tso4);
  if (e->cfg.has6) set_bool(env, feat, "tso6", f->tso6);
  if (e->udp6_on) set_bool(env, feat, "udp6", true);
  set_bool(env, feat, "uso", f->uso);
  set_bool(env, feat, "udpGso", __atomic_load_n(&f->udp_gso, __ATOMIC_RELAXED));
  set_num(env, feat, "udpGsoDisabledErrno", __atomic_load_n(&f->udp_gso_disabled_errno, __ATOMIC_RELAXED));
  set_bool(env, feat, "udpGro", f->udp_gro);
  set_num(env, feat, "socketSendBuffer", f->sndbuf);
  set_num(env, feat, "socketRecvBuffer", f->rcvbuf);
  set_bool(env, feat, "socketBuffersForced", f->buffers_forced);
  set_num(env, feat, "routes", t->nroutes);
  if (e->cfg.has6) set_num(env, feat, "routes6", t->nroutes6);
  set_num(env, feat, "tunReads", (double)ctr_get(&ec->tun_reads));
  set_num(env, feat, "tunReadSegments", (double)ctr_get(&ec->tun_read_segments));
  set_num(env, feat, "tunGsoReads", (double)ctr_get(&ec->gso_reads));
  set_num(env, feat, "udpSends", (double)ctr_get(&ec->udp_sends));
  set_num(env, feat, "udpSendDatagrams", (double)ctr_get(&ec->udp_send_datagrams));
  set_num(env, feat, "udpRecvCalls", (double)ctr_get(&dc->udp_recv_calls));
  set_num(env, feat, "udpRecvMessages", (double)ctr_get(&dc->udp_recv_messages));
  set_num(env, feat, "udpRecvDatagrams", (double)ctr_get(&dc->udp_recv_datagrams));
  set_num(env, feat, "tunWrites", (double)ctr_get(&dc->tun_writes));
  set_num(env, feat, "tunWritePackets", (double)ctr_get(&dc->tun_write_packets));
  napi_set_named_property(env, out, "features", feat);
  return out;
}

static napi_value js_engine_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (get_args(env, info, argv, 1, 1) < 0) return NULL;
  napi_valuetype t;
  engine_box *box = NULL;
  if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_external ||
      napi_get_value_external(env, argv[0], (void **)&box) != napi_ok || !box) {
    napi_throw_type_error(env, NULL, "engineStop: not an engine handle");
    return NULL;
  }
  if (box->e) {
    napi_remove_env_cleanup_hook(env, box_cleanup_hook, box);
    box_stop(box);
  }
  return NULL;
}

static napi_value js_engine_drop_reasons(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value arr;
  napi_create_array_with_length(env, DROP_COUNT, &arr);
  for (uint32_t i = 0; i < DROP_COUNT; i++) {
    napi_value s;
    napi_create_string_utf8(env, drop_reason_names[i], NAPI_AUTO_LENGTH, &s);
    napi_set_element(env, arr, i, s);
  }
  return arr;
}

void addon_engine_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"engineStart", NULL, js_engine_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"engineSetRoutes", NULL, js_engine_set_routes, NULL, NULL, NULL, napi_enumerable, NULL},
      {"engineStats", NULL, js_engine_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"engineStop", NULL, js_engine_stop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"engineDropReasons", NULL, js_engine_drop_reasons, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
