/* N-API glue: argument checking and conversion only. The work lives in tun.c, netlink.c, reader.c
 * (and engine*.c for the native datapath). */
#include <errno.h>
#include <node_api.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addon_engine.h"
#include "addon_jsio.h"
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
static napi_value js_tun_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint32_t fd;
  if (get_args(env, info, argv, 1, 1) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0) return NULL;
  if (close((int)fd) < 0) {
    felt_err err;
    felt_errno(&err, errno, "tunClose fd %u", fd);
    return throw_err(env, &err);
  }
  return NULL;
}

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

/* ---- linkSetup(name, {mtu, address, prefixLen, txQueueLen?}) ---- */
static napi_value js_link_setup(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (get_args(env, info, argv, 2, 2) < 0) return NULL;
  char name[64];
  uint32_t mtu, address, prefix_len, txqlen = 0;
  if (get_string(env, argv[0], "name", name, sizeof name) < 0 ||
      get_prop_u32(env, argv[1], "mtu", 68, 65535, 0, &mtu) < 0 ||
      get_prop_u32(env, argv[1], "address", 0, UINT32_MAX, 0, &address) < 0 ||
      get_prop_u32(env, argv[1], "prefixLen", 0, 32, 0, &prefix_len) < 0 ||
      get_prop_u32(env, argv[1], "txQueueLen", 1, UINT32_MAX, 1, &txqlen) < 0)
    return NULL;
  felt_err err;
  if (nl_link_setup(name, mtu, txqlen, address, (uint8_t)prefix_len, &err) < 0) return throw_err(env, &err);
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

/* ---- tunStartReader(fd, onBatch) -> {stop()} ----
 * The context is shared by the threadsafe function (until its finalizer) and the returned JS
 * object (until GC): freed when both are done. All of its fields are touched on the main thread
 * only, except `reader`'s own thread-safe API and the tsfn handle. */
typedef struct {
  tun_reader *reader;
  napi_threadsafe_function tsfn;
  int stopped;
  int refs;
} reader_ctx;

typedef struct {
  uint8_t *data;
  size_t len;
  uint32_t count;
} batch_item;

static void reader_ctx_unref(reader_ctx *ctx) {
  if (--ctx->refs == 0) free(ctx);
}

static void reader_ctx_stop(reader_ctx *ctx) {
  if (ctx->stopped) return;
  ctx->stopped = 1;
  reader_stop(ctx->reader); /* joins: no more calls into the tsfn after this */
  ctx->reader = NULL;
  napi_release_threadsafe_function(ctx->tsfn, napi_tsfn_release);
}

static void reader_cleanup_hook(void *arg) { reader_ctx_stop(arg); }

static int reader_deliver(void *arg, uint8_t *data, size_t len, uint32_t count) {
  reader_ctx *ctx = arg;
  batch_item *item = malloc(sizeof *item);
  if (!item) {
    free(data);
    return 0; /* drop this batch; the in-flight slot leaks only under OOM, acceptable */
  }
  item->data = data;
  item->len = len;
  item->count = count;
  if (napi_call_threadsafe_function(ctx->tsfn, item, napi_tsfn_nonblocking) != napi_ok) {
    free(data);
    free(item);
    return -1;
  }
  return 0;
}

static void free_external(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void reader_call_js(napi_env env, napi_value js_cb, void *context, void *data) {
  reader_ctx *ctx = context;
  batch_item *item = data;
  if (env == NULL || ctx->stopped) {
    free(item->data);
    free(item);
    return;
  }
  napi_value argv[2], undefined;
  if (napi_create_external_buffer(env, item->len, item->data, free_external, NULL, &argv[0]) != napi_ok) {
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

static void reader_tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  reader_ctx *ctx = data;
  if (!ctx->stopped) {
    /* Environment teardown without stop(): the cleanup hook already stopped the thread. */
    ctx->stopped = 1;
  }
  reader_ctx_unref(ctx);
}

static void reader_obj_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  reader_ctx_unref(data);
}

static napi_value js_reader_stop(napi_env env, napi_callback_info info) {
  reader_ctx *ctx;
  if (napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&ctx) != napi_ok) return NULL;
  if (!ctx->stopped) {
    napi_remove_env_cleanup_hook(env, reader_cleanup_hook, ctx);
    reader_ctx_stop(ctx);
  }
  return NULL;
}

static napi_value js_tun_start_reader(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  uint32_t fd;
  if (get_args(env, info, argv, 2, 2) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function) {
    napi_throw_type_error(env, NULL, "tunStartReader: onBatch must be a function");
    return NULL;
  }
  reader_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    napi_throw_error(env, NULL, "tunStartReader: out of memory");
    return NULL;
  }
  napi_value name;
  napi_create_string_utf8(env, "felt.tunReader", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, ctx, reader_tsfn_finalize, ctx,
                                      reader_call_js, &ctx->tsfn) != napi_ok) {
    free(ctx);
    napi_throw_error(env, NULL, "tunStartReader: napi_create_threadsafe_function failed");
    return NULL;
  }
  ctx->refs = 1; /* the tsfn */
  felt_err err;
  ctx->reader = reader_start((int)fd, reader_deliver, ctx, &err);
  if (!ctx->reader) {
    ctx->stopped = 1;
    napi_release_threadsafe_function(ctx->tsfn, napi_tsfn_release); /* finalizer frees ctx */
    return throw_err(env, &err);
  }
  /* Registered after the tsfn so it runs before the tsfn's own teardown. */
  napi_add_env_cleanup_hook(env, reader_cleanup_hook, ctx);

  napi_value obj, stop;
  napi_create_object(env, &obj);
  napi_create_function(env, "stop", NAPI_AUTO_LENGTH, js_reader_stop, ctx, &stop);
  napi_set_named_property(env, obj, "stop", stop);
  ctx->refs++;
  napi_add_finalizer(env, obj, ctx, reader_obj_finalize, NULL, NULL);
  return obj;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tunOpen", NULL, js_tun_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunClose", NULL, js_tun_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunWrite", NULL, js_tun_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"linkSetup", NULL, js_link_setup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"routeAdd", NULL, js_route_add, NULL, NULL, NULL, napi_enumerable, NULL},
      {"routeDel", NULL, js_route_del, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tunStartReader", NULL, js_tun_start_reader, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  addon_engine_register(env, exports);
  addon_jsio_register(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
