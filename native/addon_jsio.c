/* N-API glue for the js engine's batched I/O: argument checking and conversion only. The work
 * lives in reader.c (the UDP reader thread), writer.c (batched sends and TUN writes), udp.c. */
#include "addon_jsio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addon_util.h"
#include "reader.h"
#include "tun.h"
#include "udp.h"
#include "writer.h"

/* Written on the JS thread only (the batch functions run there). */
static writer_stats udp_stats, tun_stats;
/* GRO scratch for tunWriteBatch on a virtio-header TUN, made on first use; JS thread only. */
static gro_batch *gro;

static napi_value make_u64(napi_env env, uint64_t v) {
  napi_value out;
  napi_create_double(env, (double)v, &out);
  return out;
}

static void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

static void set_bool(napi_env env, napi_value obj, const char *key, bool v) {
  napi_value b;
  napi_get_boolean(env, v, &b);
  napi_set_named_property(env, obj, key, b);
}

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
  napi_value out;
  napi_create_object(env, &out);
  set_num(env, out, "fd", u.fd);
  set_bool(env, out, "gso", u.gso);
  set_bool(env, out, "gro", u.gro);
  set_num(env, out, "sndbuf", u.sndbuf);
  set_num(env, out, "rcvbuf", u.rcvbuf);
  return out;
}

/* ---- udpClose(fd) ---- */
static napi_value js_udp_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t fd;
  if (get_args(env, info, argv, 1, 1) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0) return NULL;
  if (close((int)fd) < 0) {
    felt_err err;
    felt_errno(&err, errno, "udpClose fd %u", fd);
    return throw_err(env, &err);
  }
  return NULL;
}

/* ---- udpSendBatch(fd, port, buf, desc, count, ok, gso) -> gso errno or 0 ---- */
static napi_value js_udp_send_batch(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  uint32_t fd, port, count;
  void *buf, *ok;
  size_t buf_len, ok_len, desc_n;
  uint32_t *desc;
  bool gso = false;
  if (get_args(env, info, argv, 7, 7) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0 ||
      get_u32(env, argv[1], "port", 65535, &port) < 0 || get_bytes(env, argv[2], "buf", &buf, &buf_len) < 0 ||
      get_u32_array(env, argv[3], "desc", &desc, &desc_n) < 0 ||
      get_u32(env, argv[4], "count", WRITER_MAX_ENTRIES, &count) < 0 ||
      get_bytes(env, argv[5], "ok", &ok, &ok_len) < 0)
    return NULL;
  if (napi_get_value_bool(env, argv[6], &gso) != napi_ok) {
    napi_throw_type_error(env, NULL, "gso must be a boolean");
    return NULL;
  }
  if ((size_t)count * 3 > desc_n || count > ok_len) {
    napi_throw_range_error(env, NULL, "udpSendBatch: desc or ok is shorter than count");
    return NULL;
  }
  int rc = writer_udp_send((int)fd, (uint16_t)port, buf, buf_len, desc, count, ok, gso, 2, &udp_stats);
  napi_value out;
  napi_create_int32(env, rc, &out);
  return out;
}

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
  napi_set_named_property(env, out, "udpSendSyscalls", make_u64(env, udp_stats.syscalls));
  napi_set_named_property(env, out, "udpGsoSends", make_u64(env, udp_stats.gso_sends));
  napi_set_named_property(env, out, "udpGsoSegments", make_u64(env, udp_stats.gso_segs));
  napi_set_named_property(env, out, "tunWriteSyscalls", make_u64(env, tun_stats.syscalls));
  napi_set_named_property(env, out, "tunGroMergedPackets", make_u64(env, tun_stats.gro_merged));
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

/* ---- udpStartReader(fd, onBatch) -> {stop(), stats()} ----
 * As tunStartReader in addon.c: the context is shared by the threadsafe function (until its
 * finalizer) and the returned JS object (until GC), and freed when both are done. Its fields are
 * touched on the main thread only, except `reader`'s own thread-safe API and the tsfn handle. */
typedef struct {
  tun_reader *reader;
  napi_threadsafe_function tsfn;
  int stopped;
  int refs;
  reader_stats last; /* the counters when the thread stopped */
} rd_ctx;

typedef struct {
  uint8_t *data;
  size_t len;
  uint32_t count;
} rd_item;

static void rd_unref(rd_ctx *ctx) {
  if (--ctx->refs == 0) free(ctx);
}

static void rd_stop(rd_ctx *ctx) {
  if (ctx->stopped) return;
  ctx->stopped = 1;
  reader_get_stats(ctx->reader, &ctx->last);
  reader_stop(ctx->reader); /* joins: no more calls into the tsfn after this */
  ctx->reader = NULL;
  napi_release_threadsafe_function(ctx->tsfn, napi_tsfn_release);
}

static void rd_cleanup_hook(void *arg) { rd_stop(arg); }

static int rd_deliver(void *arg, uint8_t *data, size_t len, uint32_t count) {
  rd_ctx *ctx = arg;
  rd_item *item = malloc(sizeof *item);
  if (!item) {
    free(data);
    reader_batch_done(ctx->reader); /* the batch is lost; give its slot back */
    return 0;
  }
  *item = (rd_item){data, len, count};
  if (napi_call_threadsafe_function(ctx->tsfn, item, napi_tsfn_nonblocking) != napi_ok) {
    free(data);
    free(item);
    return -1;
  }
  return 0;
}

static void rd_free_external(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void rd_call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  rd_ctx *ctx = context;
  rd_item *item = data;
  if (env == NULL || ctx->stopped) {
    free(item->data);
    free(item);
    return;
  }
  napi_value argv[2], undefined;
  if (napi_create_external_buffer(env, item->len, item->data, rd_free_external, NULL, &argv[0]) != napi_ok) {
    napi_create_buffer_copy(env, item->len, item->data, NULL, &argv[0]);
    free(item->data);
  }
  napi_create_uint32(env, item->count, &argv[1]);
  napi_get_undefined(env, &undefined);
  free(item);
  napi_call_function(env, undefined, js_cb, 2, argv, NULL);
  /* Acknowledge after the handler returned, so a slow handler slows the reader down. */
  if (ctx->reader) reader_batch_done(ctx->reader);
}

static void rd_tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  rd_ctx *ctx = data;
  ctx->stopped = 1; /* environment teardown without stop(): the cleanup hook stopped the thread */
  rd_unref(ctx);
}

static void rd_obj_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  rd_unref(data);
}

static napi_value js_rd_stop(napi_env env, napi_callback_info info) {
  rd_ctx *ctx;
  if (napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&ctx) != napi_ok) return NULL;
  if (!ctx->stopped) {
    napi_remove_env_cleanup_hook(env, rd_cleanup_hook, ctx);
    rd_stop(ctx);
  }
  return NULL;
}

static napi_value js_rd_stats(napi_env env, napi_callback_info info) {
  rd_ctx *ctx;
  if (napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&ctx) != napi_ok) return NULL;
  reader_stats s = ctx->last;
  if (ctx->reader) reader_get_stats(ctx->reader, &s);
  napi_value out;
  napi_create_object(env, &out);
  napi_set_named_property(env, out, "batches", make_u64(env, s.batches));
  napi_set_named_property(env, out, "records", make_u64(env, s.records));
  napi_set_named_property(env, out, "reads", make_u64(env, s.reads));
  napi_set_named_property(env, out, "fullWaits", make_u64(env, s.full_waits));
  return out;
}

static napi_value js_udp_start_reader(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t fd;
  if (get_args(env, info, argv, 2, 2) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function) {
    napi_throw_type_error(env, NULL, "udpStartReader: onBatch must be a function");
    return NULL;
  }
  rd_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    napi_throw_error(env, NULL, "udpStartReader: out of memory");
    return NULL;
  }
  napi_value name;
  napi_create_string_utf8(env, "felt.udpReader", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, ctx, rd_tsfn_finalize, ctx, rd_call_js,
                                      &ctx->tsfn) != napi_ok) {
    free(ctx);
    napi_throw_error(env, NULL, "udpStartReader: napi_create_threadsafe_function failed");
    return NULL;
  }
  ctx->refs = 1; /* the tsfn */
  felt_err err;
  ctx->reader = reader_start_udp((int)fd, rd_deliver, ctx, &err);
  if (!ctx->reader) {
    ctx->stopped = 1;
    napi_release_threadsafe_function(ctx->tsfn, napi_tsfn_release); /* finalizer frees ctx */
    return throw_err(env, &err);
  }
  /* Registered after the tsfn so it runs before the tsfn's own teardown. */
  napi_add_env_cleanup_hook(env, rd_cleanup_hook, ctx);

  napi_value obj, fn;
  napi_create_object(env, &obj);
  napi_create_function(env, "stop", NAPI_AUTO_LENGTH, js_rd_stop, ctx, &fn);
  napi_set_named_property(env, obj, "stop", fn);
  napi_create_function(env, "stats", NAPI_AUTO_LENGTH, js_rd_stats, ctx, &fn);
  napi_set_named_property(env, obj, "stats", fn);
  ctx->refs++;
  napi_add_finalizer(env, obj, ctx, rd_obj_finalize, NULL, NULL);
  return obj;
}

void addon_jsio_register(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"udpOpen", NULL, js_udp_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpClose", NULL, js_udp_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpStartReader", NULL, js_udp_start_reader, NULL, NULL, NULL, napi_enumerable, NULL},
      {"udpSendBatch", NULL, js_udp_send_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunWriteBatch", NULL, js_tun_write_batch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"jsioStats", NULL, js_jsio_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunSetOffload", NULL, js_tun_set_offload, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}
