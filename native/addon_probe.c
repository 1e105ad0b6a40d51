#include "addon_probe.h"

#include <errno.h>
#include <linux/rtnetlink.h>
#include <string.h>

#include "addon_util.h"
#include "probe.h"

/* Largest packet handed to JS: an ICMP error quotes at most 576 bytes, echo replies are MTU-sized. */
#define PROBE_RECV_CAP 65535
/* Packets one probeRecv call returns at most; the rest stay queued for the next call. */
#define PROBE_RECV_MAX 4096

static napi_value fd_result(napi_env env, int fd, const felt_err *err) {
  if (fd < 0) return throw_err(env, err);
  napi_value v;
  napi_create_int32(env, fd, &v);
  return v;
}

/* ---- probeIcmpOpen() -> fd ---- */
static napi_value js_icmp_open(napi_env env, napi_callback_info info) {
  (void)info;
  felt_err err;
  int fd = probe_icmp_open(&err);
  return fd_result(env, fd, &err);
}

/* ---- probeUdpSniffOpen() -> fd ---- */
static napi_value js_udp_sniff_open(napi_env env, napi_callback_info info) {
  (void)info;
  felt_err err;
  int fd = probe_udp_sniff_open(&err);
  return fd_result(env, fd, &err);
}

/* ---- probeUdpSniff6Open() -> fd ---- */
static napi_value js_udp_sniff6_open(napi_env env, napi_callback_info info) {
  (void)info;
  felt_err err;
  int fd = probe_udp_sniff6_open(&err);
  return fd_result(env, fd, &err);
}

/* ---- probeIcmp6Open() -> fd ---- */
static napi_value js_icmp6_open(napi_env env, napi_callback_info info) {
  (void)info;
  felt_err err;
  int fd = probe_icmp6_open(&err);
  return fd_result(env, fd, &err);
}

/* ---- probeClose(fd) ---- */
static napi_value js_probe_close(napi_env env, napi_callback_info info) { return close_fd_arg(env, info, "probeClose"); }

/* ---- probeSend(fd, packet, dst) -> send time (ms since the epoch) ---- */
static napi_value js_probe_send(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint32_t fd, dst;
  void *data;
  size_t len;
  if (get_args(env, info, argv, 3, 3) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0 ||
      get_bytes(env, argv[1], "packet", &data, &len) < 0 || get_u32(env, argv[2], "dst", UINT32_MAX, &dst) < 0)
    return NULL;
  if (len < 20 || len > 65535) {
    napi_throw_range_error(env, NULL, "probeSend: packet must be a whole IPv4 packet (20..65535 bytes)");
    return NULL;
  }
  felt_err err;
  double sent;
  if (probe_send((int)fd, data, len, dst, &sent, &err) < 0) return throw_err(env, &err);
  napi_value v;
  napi_create_double(env, sent, &v);
  return v;
}

/* ---- probeSend6(fd, message, dst: 16 bytes, src: 16 bytes | null) -> send time (ms since the epoch) ---- */
static napi_value js_probe_send6(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  uint32_t fd;
  void *data, *dst, *src = NULL;
  size_t len, dlen, slen = 16;
  if (get_args(env, info, argv, 4, 3) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0 ||
      get_bytes(env, argv[1], "message", &data, &len) < 0 || get_bytes(env, argv[2], "dst", &dst, &dlen) < 0)
    return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[3], &t);
  if (t != napi_undefined && t != napi_null && get_bytes(env, argv[3], "src", &src, &slen) < 0) return NULL;
  if (dlen != 16 || slen != 16) {
    napi_throw_range_error(env, NULL, "probeSend6: dst and src must be 16-byte IPv6 addresses");
    return NULL;
  }
  if (len < 8 || len > 65535 - 40) {
    napi_throw_range_error(env, NULL, "probeSend6: message must be a whole ICMPv6 message (8..65495 bytes)");
    return NULL;
  }
  felt_err err;
  double sent;
  if (probe_send6((int)fd, data, len, dst, src, &sent, &err) < 0) return throw_err(env, &err);
  napi_value v;
  napi_create_double(env, sent, &v);
  return v;
}

/* ---- probeRecv(fd, max) -> [{data: Buffer, at: ms, from?: Buffer (16 bytes, IPv6 sockets)}] (empty when nothing is queued) ---- */
static napi_value js_probe_recv(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t fd, max;
  if (get_args(env, info, argv, 2, 2) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0 ||
      get_u32(env, argv[1], "max", PROBE_RECV_MAX, &max) < 0)
    return NULL;
  static unsigned char buf[PROBE_RECV_CAP]; /* N-API calls run on the JS thread, one at a time */
  napi_value out;
  napi_create_array(env, &out);
  for (uint32_t i = 0; i < max; i++) {
    felt_err err;
    double at;
    uint8_t from6[16];
    int is6;
    ssize_t n = probe_recv((int)fd, buf, sizeof buf, &at, from6, &is6, &err);
    if (n < 0) return throw_err(env, &err);
    if (n == 0) break;
    napi_value rec, data;
    void *copy;
    if (napi_create_buffer_copy(env, (size_t)n, buf, &copy, &data) != napi_ok) return NULL;
    napi_create_object(env, &rec);
    napi_set_named_property(env, rec, "data", data);
    set_num(env, rec, "at", at);
    if (is6) {
      napi_value from;
      if (napi_create_buffer_copy(env, 16, from6, &copy, &from) != napi_ok) return NULL;
      napi_set_named_property(env, rec, "from", from);
    }
    napi_set_element(env, out, i, rec);
  }
  return out;
}

static const char *route_type_name(int type) {
  switch (type) {
    case RTN_UNICAST: return "unicast";
    case RTN_LOCAL: return "local";
    case RTN_BROADCAST: return "broadcast";
    case RTN_MULTICAST: return "multicast";
    case RTN_BLACKHOLE: return "blackhole";
    case RTN_UNREACHABLE: return "unreachable";
    case RTN_PROHIBIT: return "prohibit";
    case RTN_THROW: return "throw";
    default: return "other";
  }
}

static void set_str(napi_env env, napi_value obj, const char *key, const char *s) {
  napi_value v;
  napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, key, v);
}

/* ---- routeGet(dst, src, iif) -> {type, oif, gateway, prefsrc, table, mtu} or {errno, error} ---- */
static napi_value js_route_get(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  uint32_t dst, src = 0;
  char iif[64] = "";
  if (get_args(env, info, argv, 3, 1) < 0 || get_u32(env, argv[0], "dst", UINT32_MAX, &dst) < 0) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_undefined && t != napi_null && get_u32(env, argv[1], "src", UINT32_MAX, &src) < 0) return NULL;
  napi_typeof(env, argv[2], &t);
  if (t != napi_undefined && t != napi_null && get_string(env, argv[2], "iif", iif, sizeof iif) < 0) return NULL;

  felt_err err;
  probe_route r;
  int rc = probe_route_get(dst, src, iif, &r, &err);
  if (rc < 0) return throw_err(env, &err);
  napi_value out;
  napi_create_object(env, &out);
  if (rc > 0) {
    set_num(env, out, "errno", rc);
    set_str(env, out, "error", strerror(rc));
    return out;
  }
  set_str(env, out, "type", route_type_name(r.type));
  set_str(env, out, "oif", r.oif);
  set_num(env, out, "gateway", r.gateway);
  set_num(env, out, "prefsrc", r.prefsrc);
  set_num(env, out, "table", r.table);
  set_num(env, out, "mtu", r.mtu);
  return out;
}

void addon_probe_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"probeIcmpOpen", NULL, js_icmp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probeUdpSniffOpen", NULL, js_udp_sniff_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probeUdpSniff6Open", NULL, js_udp_sniff6_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probeIcmp6Open", NULL, js_icmp6_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probeSend6", NULL, js_probe_send6, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probeClose", NULL, js_probe_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probeSend", NULL, js_probe_send, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probeRecv", NULL, js_probe_recv, NULL, NULL, NULL, napi_enumerable, NULL},
      {"routeGet", NULL, js_route_get, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
