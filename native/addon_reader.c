#include "addon_reader.h"

#include <stdint.h>
#include <stdlib.h>

#include "addon_util.h"

/* The context is shared by the threadsafe function (until its finalizer) and the returned JS
 * object (until GC): freed when both are done. All of its fields are touched on the main thread
 * only, except `reader`'s own thread-safe API and the tsfn handle. */
typedef struct {
  batch_reader *reader; /* NULL once stopped */
  napi_threadsafe_function tsfn;
  int stopped;
  int refs;
  reader_stats last; /* the counters when the thread stopped */
} reader_ctx;

typedef struct {
  uint8_t *data;
  size_t len;
  uint32_t count;
} batch_item;

static void ctx_unref(reader_ctx *ctx) {
  if (--ctx->refs == 0) free(ctx);
}

static void ctx_stop(reader_ctx *ctx) {
  if (ctx->stopped) return;
  ctx->stopped = 1;
  reader_get_stats(ctx->reader, &ctx->last);
  reader_stop(ctx->reader); /* joins: no more calls into the tsfn after this */
  ctx->reader = NULL;
  napi_release_threadsafe_function(ctx->tsfn, napi_tsfn_release);
}

static void cleanup_hook(void *arg) { ctx_stop(arg); }

/* On the reader thread. */
static int deliver(void *arg, uint8_t *data, size_t len, uint32_t count) {
  reader_ctx *ctx = arg;
  batch_item *item = malloc(sizeof *item);
  if (!item) {
    free(data);
    return 1; /* the batch is lost; the reader takes its slot back */
  }
  *item = (batch_item){data, len, count};
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

static void call_js(napi_env env, napi_value js_cb, void *context, void *data) {
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

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  reader_ctx *ctx = data;
  ctx->stopped = 1; /* environment teardown without stop(): the cleanup hook stopped the thread */
  ctx_unref(ctx);
}

static void obj_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  ctx_unref(data);
}

static napi_value js_stop(napi_env env, napi_callback_info info) {
  reader_ctx *ctx;
  if (napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&ctx) != napi_ok) return NULL;
  if (!ctx->stopped) {
    napi_remove_env_cleanup_hook(env, cleanup_hook, ctx);
    ctx_stop(ctx);
  }
  return NULL;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  reader_ctx *ctx;
  if (napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&ctx) != napi_ok) return NULL;
  reader_stats s = ctx->last;
  if (ctx->reader) reader_get_stats(ctx->reader, &s);
  napi_value out;
  napi_create_object(env, &out);
  set_num(env, out, "batches", (double)s.batches);
  set_num(env, out, "records", (double)s.records);
  set_num(env, out, "reads", (double)s.reads);
  set_num(env, out, "fullWaits", (double)s.full_waits);
  /* Reads not delivered, indexed like engineDropReasons() (the TUN offload layer's verdicts). */
  napi_value drops;
  napi_create_array_with_length(env, DROP_COUNT, &drops);
  for (uint32_t i = 0; i < DROP_COUNT; i++) {
    napi_value n;
    napi_create_double(env, (double)s.drops[i], &n);
    napi_set_element(env, drops, i, n);
  }
  napi_set_named_property(env, out, "drops", drops);
  return out;
}

static void add_method(napi_env env, napi_value obj, const char *name, napi_callback cb, reader_ctx *ctx) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, ctx, &fn);
  napi_set_named_property(env, obj, name, fn);
}

napi_value reader_js_start(napi_env env, napi_callback_info info, const reader_kind *kind) {
  napi_value argv[3];
  uint32_t fd;
  bool ipv6 = false;
  if (get_args(env, info, argv, 3, 2) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0 ||
      get_opt_bool(env, argv[2], "ipv6", &ipv6) < 0)
    return NULL;
  felt_err err;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function) {
    felt_errmsg(&err, "%s: onBatch must be a function", kind->op);
    napi_throw_type_error(env, NULL, err.msg);
    return NULL;
  }
  reader_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) {
    felt_errmsg(&err, "%s: out of memory", kind->op);
    return throw_err(env, &err);
  }
  napi_value name;
  napi_create_string_utf8(env, kind->resource, NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, ctx, tsfn_finalize, ctx, call_js,
                                      &ctx->tsfn) != napi_ok) {
    free(ctx);
    felt_errmsg(&err, "%s: napi_create_threadsafe_function failed", kind->op);
    return throw_err(env, &err);
  }
  ctx->refs = 1; /* the tsfn */
  ctx->reader = kind->start((int)fd, deliver, ctx, ipv6 ? READER_IPV6 : 0, &err);
  if (!ctx->reader) {
    ctx->stopped = 1;
    napi_release_threadsafe_function(ctx->tsfn, napi_tsfn_release); /* finalizer frees ctx */
    return throw_err(env, &err);
  }
  /* Registered after the tsfn so it runs before the tsfn's own teardown. */
  napi_add_env_cleanup_hook(env, cleanup_hook, ctx);

  napi_value obj;
  napi_create_object(env, &obj);
  add_method(env, obj, "stop", js_stop, ctx);
  if (kind->with_stats) add_method(env, obj, "stats", js_stats, ctx);
  ctx->refs++;
  napi_add_finalizer(env, obj, ctx, obj_finalize, NULL, NULL);
  return obj;
}
