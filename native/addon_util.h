/* Helpers for the N-API glue. The argument helpers return 0, or -1 with a JS exception pending. */
#ifndef FELT_ADDON_UTIL_H
#define FELT_ADDON_UTIL_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Fetches up to n arguments (missing ones are undefined); at least `required` must be given. */
int get_args(napi_env env, napi_callback_info info, napi_value *argv, size_t n, size_t required);
int get_string(napi_env env, napi_value v, const char *what, char *out, size_t cap);
/* An integer in [0, max]. */
int get_u32(napi_env env, napi_value v, const char *what, uint32_t max, uint32_t *out);
/* obj[key] as an integer in [min, max]; when `optional` and absent, *out is left unchanged. */
int get_prop_u32(napi_env env, napi_value obj, const char *key, uint32_t min, uint32_t max, bool optional,
                 uint32_t *out);
/* obj[key] as a boolean when obj is an object with that key; otherwise *out is left unchanged. */
int get_opt_bool(napi_env env, napi_value obj, const char *key, bool *out);
/* *out = whether obj (an object) has key set to something other than undefined. */
int get_opt_present(napi_env env, napi_value obj, const char *key, bool *out);
/* A Buffer / TypedArray's bytes. */
int get_bytes(napi_env env, napi_value v, const char *what, void **data, size_t *len);
/* Throws err's message as a JS Error; returns NULL for `return throw_err(...)`. */
napi_value throw_err(napi_env env, const felt_err *err);

/* obj[key] = v (a number; counters above 2^53 lose precision) / a boolean. */
void set_num(napi_env env, napi_value obj, const char *key, double v);
void set_bool(napi_env env, napi_value obj, const char *key, bool v);

/* `op(fd)`: closes the fd (tunClose, udpClose); throws "<op> fd N: <strerror>" on failure. */
napi_value close_fd_arg(napi_env env, napi_callback_info info, const char *op);

#endif
