/* N-API glue: argument checking and conversion only. The work lives in tun.c, netlink.c, reader.c
 * (through addon_reader.c) and engine*.c for the native datapath. */
#include <errno.h>
#include <node_api.h>
#include <stdio.h>
#include <unistd.h>

#include "addon_engine.h"
#include "addon_jsio.h"
#include "addon_probe.h"
#include "addon_reader.h"
#include "addon_util.h"
#include "netlink.h"
#include "reader.h"
#include "tun.h"

/* ---- tunOpen(name, {vnetHdr}) -> {fd, name} ---- */
static napi_value js_tun_open(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, argv, 2, 1) < 0) return NULL;
  char name[64];
  if (get_string(env, argv[0], "name", name, sizeof name) < 0) return NULL;
  bool vnet = false;
  if (get_opt_bool(env, argv[1], "vnetHdr", &vnet) < 0) return NULL;

  felt_err err;
  char kname[IFNAMSIZ];
  int fd = tun_open(name, vnet, kname, &err);
  if (fd < 0) return throw_err(env, &err);

  napi_value out, v;
  napi_create_object(env, &out);
  napi_create_int32(env, fd, &v);
  napi_set_named_property(env, out, "fd", v);
  napi_create_string_utf8(env, kname, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, out, "name", v);
  return out;
}

/* ---- tunClose(fd) ---- */
static napi_value js_tun_close(napi_env env, napi_callback_info info) { return close_fd_arg(env, info, "tunClose"); }

/* ---- tunWrite(fd, packet) -> boolean ---- */
static napi_value js_tun_write(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t fd;
  if (get_args(env, info, argv, 2, 2) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0) return NULL;
  void *data;
  size_t len;
  if (get_bytes(env, argv[1], "packet", &data, &len) < 0) return NULL;
  ssize_t n;
  do n = write((int)fd, data, len);
  while (n < 0 && errno == EINTR);
  napi_value out;
  napi_get_boolean(env, n >= 0 && (size_t)n == len, &out);
  return out;
}

/* ---- linkSetup(name, {mtu, address?, prefixLen?, txQueueLen?}): no address on an IPv6-only overlay ---- */
static napi_value js_link_setup(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, argv, 2, 2) < 0) return NULL;
  char name[64];
  uint32_t mtu, address = 0, prefix_len = 32, txqlen = 0;
  bool with_address = false;
  if (get_string(env, argv[0], "name", name, sizeof name) < 0 ||
      get_prop_u32(env, argv[1], "mtu", 68, 65535, 0, &mtu) < 0 ||
      get_opt_present(env, argv[1], "address", &with_address) < 0 ||
      (with_address && (get_prop_u32(env, argv[1], "address", 0, UINT32_MAX, 0, &address) < 0 ||
                        get_prop_u32(env, argv[1], "prefixLen", 0, 32, 0, &prefix_len) < 0)) ||
      get_prop_u32(env, argv[1], "txQueueLen", 1, UINT32_MAX, 1, &txqlen) < 0)
    return NULL;
  felt_err err;
  if (nl_link_setup(name, mtu, txqlen, with_address ? &address : NULL, (uint8_t)prefix_len, &err) < 0)
    return throw_err(env, &err);
  return NULL;
}

/* ---- routeAdd / routeDel (name, network, prefixLen) ---- */
static napi_value route_op(napi_env env, napi_callback_info info, int add) {
  napi_value argv[3];
  char name[64];
  uint32_t network, prefix_len;
  if (get_args(env, info, argv, 3, 3) < 0 || get_string(env, argv[0], "name", name, sizeof name) < 0 ||
      get_u32(env, argv[1], "network", UINT32_MAX, &network) < 0 ||
      get_u32(env, argv[2], "prefixLen", 32, &prefix_len) < 0)
    return NULL;
  felt_err err;
  int rc = add ? nl_route_add(name, network, (uint8_t)prefix_len, &err)
               : nl_route_del(name, network, (uint8_t)prefix_len, &err);
  if (rc < 0) return throw_err(env, &err);
  return NULL;
}
static napi_value js_route_add(napi_env env, napi_callback_info info) { return route_op(env, info, 1); }
static napi_value js_route_del(napi_env env, napi_callback_info info) { return route_op(env, info, 0); }

/* ---- addrAdd6 / routeAdd6 (name, address: 16 bytes, prefixLen) ---- */
static napi_value v6_op(napi_env env, napi_callback_info info, int route) {
  const char *op = route ? "routeAdd6" : "addrAdd6";
  napi_value argv[3];
  char name[64];
  void *ip;
  size_t ip_len;
  uint32_t prefix_len;
  if (get_args(env, info, argv, 3, 3) < 0 || get_string(env, argv[0], "name", name, sizeof name) < 0 ||
      get_bytes(env, argv[1], "address", &ip, &ip_len) < 0 || get_u32(env, argv[2], "prefixLen", 128, &prefix_len) < 0)
    return NULL;
  if (ip_len != 16) {
    char msg[64];
    snprintf(msg, sizeof msg, "%s: the address must be 16 bytes", op);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  felt_err err;
  int rc = route ? nl_route_add6(name, ip, (uint8_t)prefix_len, &err) : nl_addr_add6(name, ip, (uint8_t)prefix_len, &err);
  if (rc < 0) return throw_err(env, &err);
  return NULL;
}
static napi_value js_addr_add6(napi_env env, napi_callback_info info) { return v6_op(env, info, 0); }
static napi_value js_route_add6(napi_env env, napi_callback_info info) { return v6_op(env, info, 1); }

/* ---- tunStartReader(fd, onBatch) -> {stop(), stats()} ---- */
static const reader_kind tun_reader_kind = {"tunStartReader", "felt.tunReader", tun_reader_start, true};
static napi_value js_tun_start_reader(napi_env env, napi_callback_info info) {
  return reader_js_start(env, info, &tun_reader_kind);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tunOpen", NULL, js_tun_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunClose", NULL, js_tun_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunWrite", NULL, js_tun_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"linkSetup", NULL, js_link_setup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"routeAdd", NULL, js_route_add, NULL, NULL, NULL, napi_enumerable, NULL},
      {"routeDel", NULL, js_route_del, NULL, NULL, NULL, napi_enumerable, NULL},
      {"addrAdd6", NULL, js_addr_add6, NULL, NULL, NULL, napi_enumerable, NULL},
      {"routeAdd6", NULL, js_route_add6, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunStartReader", NULL, js_tun_start_reader, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  addon_engine_register(env, exports);
  addon_jsio_register(env, exports);
  addon_probe_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
