/* N-API glue shared by tunStartReader (addon.c) and udpStartReader (addon_jsio.c): a reader.c
 * thread whose batches reach a JS callback through a threadsafe function. */
#ifndef FELT_ADDON_READER_H
#define FELT_ADDON_READER_H

#include <node_api.h>
#include <stdbool.h>

#include "reader.h"

typedef batch_reader *(*reader_start_fn)(int fd, reader_deliver_fn deliver, void *ctx, int options, felt_err *err);

typedef struct {
  const char *op;       /* the JS function's name, e.g. "tunStartReader": starts error messages */
  const char *resource; /* the threadsafe function's async resource name */
  reader_start_fn start;
  bool with_stats;      /* the returned object also has stats() -> {batches, records, reads, fullWaits, drops} */
} reader_kind;

/* Implements `op(fd, onBatch, options?) -> {stop()[, stats()]}` (options: {ipv6?: boolean}). Each batch reaches onBatch(data, count) as
 * a fresh external Buffer that JS owns; the batch is acknowledged after onBatch returns, so a slow
 * handler slows the thread down. stop() joins the thread and is idempotent; environment teardown
 * stops it too. Returns NULL with a JS exception pending on bad arguments or failure. */
napi_value reader_js_start(napi_env env, napi_callback_info info, const reader_kind *kind);

#endif
