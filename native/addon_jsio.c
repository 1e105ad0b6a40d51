/* N-API glue for the js engine's batched I/O: argument checking and conversion only. The work
 * lives in reader.c (the UDP reader thread, through addon_reader.c), writer.c (batched sends and
 * TUN writes), udp.c. */
#include "addon_jsio.h"

#include <stdio.h>
#include <stdlib.h>

#include "addon_reader.h"
#include "addon_util.h"
#include "reader.h"
#include "tun.h"
#include "udp.h"
#include "writer.h"

/* Written on the JS thread only (the batch functions run there). */
static writer_stats udp_stats, tun_stats;
/* GRO scratch for tunWriteBatch on a virtio-header TUN, made on first use; JS thread only. */
static gro_batch *gro;

/* A Uint32Array's elements. */
static int get_u32_array(napi_env env, napi_value v, const char *what, uint32_t **data, size_t *count) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    napi_value ab;
    size_t offset;
    void *p;
    if (napi_get_typedarray_info(env, v, &type, count, &p, &ab, &offset) != napi_ok) return -1;
    if (type == napi_uint32_array) {
      *data = p;
      return 0;
    }
  }
  char msg[96];
  snprintf(msg, sizeof msg, "%s must be a Uint32Array", what);
  napi_throw_type_error(env, NULL, msg);
  return -1;
}

static napi_value socket_info(napi_env env, const udp_sock *u) {
  napi_value out;
  napi_create_object(env, &out);
  set_num(env, out, "fd", u->fd);
  set_bool(env, out, "gso", u->gso);
  set_bool(env, out, "gro", u->gro);
  set_num(env, out, "sndbuf", u->sndbuf);
  set_num(env, out, "rcvbuf", u->rcvbuf);
  return out;
}

/* ---- udpOpen(bindIP, port) -> {fd, gso, gro, sndbuf, rcvbuf} ---- */
static napi_value js_udp_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t ip, port;
  if (get_args(env, info, argv, 2, 2) < 0 || get_u32(env, argv[0], "bindIP", UINT32_MAX, &ip) < 0 ||
      get_u32(env, argv[1], "port", 65535, &port) < 0)
    return NULL;
  udp_sock u;
  felt_err err;
  if (udp_open(&u, ip, (uint16_t)port, &err) < 0) return throw_err(env, &err);
  return socket_info(env, &u);
}

/* ---- udpOpen6(bindIP6: 16 bytes, port) -> {fd, gso, gro, sndbuf, rcvbuf} ---- */
static napi_value js_udp_open6(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  void *ip;
  size_t ip_len;
  uint32_t port;
  if (get_args(env, info, argv, 2, 2) < 0 || get_bytes(env, argv[0], "bindIP6", &ip, &ip_len) < 0 ||
      get_u32(env, argv[1], "port", 65535, &port) < 0)
    return NULL;
  if (ip_len != 16) {
    napi_throw_range_error(env, NULL, "udpOpen6: bindIP6 must be 16 bytes");
    return NULL;
  }
  udp_sock u;
  felt_err err;
  if (udp_open6(&u, ip, (uint16_t)port, &err) < 0) return throw_err(env, &err);
  return socket_info(env, &u);
}

/* ---- udpClose(fd) ---- */
static napi_value js_udp_close(napi_env env, napi_callback_info info) { return close_fd_arg(env, info, "udpClose"); }

/* udpSendBatch / udpSendBatch6: the same arguments, the latter with `addrs` (16 bytes per address)
 * that desc[3i+2] indexes. */
static napi_value udp_send_batch(napi_env env, napi_callback_info info, int v6) {
  const char *name = v6 ? "udpSendBatch6" : "udpSendBatch";
  napi_value argv[8];
  uint32_t fd, port, count;
  void *buf, *ok, *addrs = NULL;
  size_t buf_len, ok_len, desc_n, addrs_len = 0;
  uint32_t *desc;
  bool gso = false;
  size_t nargs = v6 ? 8 : 7;
  if (get_args(env, info, argv, nargs, nargs) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0 ||
      get_u32(env, argv[1], "port", 65535, &port) < 0 || get_bytes(env, argv[2], "buf", &buf, &buf_len) < 0 ||
      get_u32_array(env, argv[3], "desc", &desc, &desc_n) < 0 ||
      get_u32(env, argv[4], "count", WRITER_MAX_ENTRIES, &count) < 0 ||
      get_bytes(env, argv[5], "ok", &ok, &ok_len) < 0 || (v6 && get_bytes(env, argv[7], "addrs", &addrs, &addrs_len) < 0))
    return NULL;
  if (napi_get_value_bool(env, argv[6], &gso) != napi_ok) {
    napi_throw_type_error(env, NULL, "gso must be a boolean");
    return NULL;
  }
  if ((size_t)count * 3 > desc_n || count > ok_len) {
    char msg[80];
    snprintf(msg, sizeof msg, "%s: desc or ok is shorter than count", name);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  int rc = v6 ? writer_udp_send6((int)fd, (uint16_t)port, buf, buf_len, desc, count, ok, gso, 2, addrs, addrs_len / 16,
                                 &udp_stats)
              : writer_udp_send((int)fd, (uint16_t)port, buf, buf_len, desc, count, ok, gso, 2, &udp_stats);
  napi_value out;
  napi_create_int32(env, rc, &out);
  return out;
}

/* ---- udpSendBatch(fd, port, buf, desc, count, ok, gso) -> gso errno or 0 ---- */
static napi_value js_udp_send_batch(napi_env env, napi_callback_info info) { return udp_send_batch(env, info, 0); }
/* ---- udpSendBatch6(fd, port, buf, desc, count, ok, gso, addrs) -> gso errno or 0 ---- */
static napi_value js_udp_send_batch6(napi_env env, napi_callback_info info) { return udp_send_batch(env, info, 1); }

/* ---- tunWriteBatch(fd, buf, desc, count, ok, vnet?) -> packets written ---- */
static napi_value js_tun_write_batch(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  uint32_t fd, count;
  void *buf, *ok;
  size_t buf_len, ok_len, desc_n;
  uint32_t *desc;
  bool vnet = false;
  if (get_args(env, info, argv, 6, 5) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0 ||
      get_bytes(env, argv[1], "buf", &buf, &buf_len) < 0 || get_u32_array(env, argv[2], "desc", &desc, &desc_n) < 0 ||
      get_u32(env, argv[3], "count", WRITER_MAX_ENTRIES, &count) < 0 || get_bytes(env, argv[4], "ok", &ok, &ok_len) < 0)
    return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[5], &t);
  if (t != napi_undefined && napi_get_value_bool(env, argv[5], &vnet) != napi_ok) {
    napi_throw_type_error(env, NULL, "vnet must be a boolean");
    return NULL;
  }
  if ((size_t)count * 2 > desc_n || count > ok_len) {
    napi_throw_range_error(env, NULL, "tunWriteBatch: desc or ok is shorter than count");
    return NULL;
  }
  if (vnet && !gro && (gro = malloc(sizeof *gro)) != NULL) gro_init(gro);
  uint32_t n = vnet ? writer_tun_write_vnet((int)fd, buf, buf_len, desc, count, ok, gro, &tun_stats)
                    : writer_tun_write((int)fd, buf, buf_len, desc, count, ok, &tun_stats);
  napi_value out;
  napi_create_uint32(env, n, &out);
  return out;
}

/* ---- jsioStats() -> {udpSyscalls, udpGsoSends, udpGsoSegments, tunWriteSyscalls} ---- */
static napi_value js_jsio_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  napi_create_object(env, &out);
  set_num(env, out, "udpSendSyscalls", (double)udp_stats.syscalls);
  set_num(env, out, "udpGsoSends", (double)udp_stats.gso_sends);
  set_num(env, out, "udpGsoSegments", (double)udp_stats.gso_segs);
  set_num(env, out, "tunWriteSyscalls", (double)tun_stats.syscalls);
  set_num(env, out, "tunGroMergedPackets", (double)tun_stats.gro_merged);
  return out;
}

/* ---- tunSetOffload(fd, flags) -> boolean (TUNSETOFFLOAD accepted) ---- */
static napi_value js_tun_set_offload(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t fd, flags;
  if (get_args(env, info, argv, 2, 2) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0 ||
      get_u32(env, argv[1], "flags", 0xffff, &flags) < 0)
    return NULL;
  felt_err err;
  napi_value out;
  napi_get_boolean(env, tun_set_offload((int)fd, flags, &err) == 0, &out);
  return out;
}

/* ---- udpStartReader(fd, onBatch) -> {stop(), stats()} ---- */
static const reader_kind udp_reader_kind = {"udpStartReader", "felt.udpReader", udp_reader_start, true};
static napi_value js_udp_start_reader(napi_env env, napi_callback_info info) {
  return reader_js_start(env, info, &udp_reader_kind);
}

void addon_jsio_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"udpOpen", NULL, js_udp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpOpen6", NULL, js_udp_open6, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpClose", NULL, js_udp_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpStartReader", NULL, js_udp_start_reader, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSendBatch", NULL, js_udp_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSendBatch6", NULL, js_udp_send_batch6, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunWriteBatch", NULL, js_tun_write_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"jsioStats", NULL, js_jsio_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunSetOffload", NULL, js_tun_set_offload, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
