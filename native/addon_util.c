#include "addon_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

static int type_error(napi_env env, const char *what, const char *expected) {
  char msg[128];
  snprintf(msg, sizeof msg, "%s must be %s", what, expected);
  napi_throw_type_error(env, NULL, msg);
  return -1;
}

int get_args(napi_env env, napi_callback_info info, napi_value *argv, size_t n, size_t required) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return -1;
  if (argc < required) {
    char msg[96];
    snprintf(msg, sizeof msg, "expected at least %zu arguments, got %zu", required, argc);
    napi_throw_type_error(env, NULL, msg);
    return -1;
  }
  return 0;
}

int get_string(napi_env env, napi_value v, const char *what, char *out, size_t cap) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, out, cap, &len) != napi_ok) return type_error(env, what, "a string");
  if (len + 1 >= cap) return type_error(env, what, "a short string");
  return 0;
}

int get_u32(napi_env env, napi_value v, const char *what, uint32_t max, uint32_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > (double)max || floor(d) != d) {
    char expected[64];
    snprintf(expected, sizeof expected, "an integer in [0, %u]", max);
    return type_error(env, what, expected);
  }
  *out = (uint32_t)d;
  return 0;
}

int get_prop_u32(napi_env env, napi_value obj, const char *key, uint32_t min, uint32_t max, bool optional,
                 uint32_t *out) {
  napi_valuetype t;
  napi_typeof(env, obj, &t);
  if (t != napi_object) return type_error(env, "options", "an object");
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return -1;
  napi_typeof(env, v, &t);
  if (t == napi_undefined && optional) return 0;
  uint32_t value;
  if (get_u32(env, v, key, max, &value) < 0) return -1;
  if (value < min) {
    char expected[64];
    snprintf(expected, sizeof expected, "an integer in [%u, %u]", min, max);
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
    return type_error(env, key, expected);
  }
  *out = value;
  return 0;
}

int get_opt_bool(napi_env env, napi_value obj, const char *key, bool *out) {
  napi_valuetype t;
  napi_typeof(env, obj, &t);
  if (t != napi_object) return 0;
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return -1;
  napi_typeof(env, v, &t);
  if (t == napi_undefined) return 0;
  if (t != napi_boolean) return type_error(env, key, "a boolean");
  napi_get_value_bool(env, v, out);
  return 0;
}

int get_opt_present(napi_env env, napi_value obj, const char *key, bool *out) {
  napi_valuetype t;
  napi_typeof(env, obj, &t);
  if (t != napi_object) return type_error(env, "options", "an object");
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return -1;
  napi_typeof(env, v, &t);
  *out = t != napi_undefined;
  return 0;
}

int get_bytes(napi_env env, napi_value v, const char *what, void **data, size_t *len) {
  bool is;
  if (napi_is_buffer(env, v, &is) == napi_ok && is) {
    return napi_get_buffer_info(env, v, data, len) == napi_ok ? 0 : -1;
  }
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t length, offset;
    napi_value ab;
    if (napi_get_typedarray_info(env, v, &type, &length, data, &ab, &offset) != napi_ok) return -1;
    if (type == napi_uint8_array) {
      *len = length;
      return 0;
    }
  }
  return type_error(env, what, "a Buffer or Uint8Array");
}

napi_value throw_err(napi_env env, const felt_err *err) {
  napi_throw_error(env, NULL, err->msg);
  return NULL;
}

void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

void set_bool(napi_env env, napi_value obj, const char *key, bool v) {
  napi_value b;
  napi_get_boolean(env, v, &b);
  napi_set_named_property(env, obj, key, b);
}

napi_value close_fd_arg(napi_env env, napi_callback_info info, const char *op) {
  napi_value argv[1];
  uint32_t fd;
  if (get_args(env, info, argv, 1, 1) < 0 || get_u32(env, argv[0], "fd", INT32_MAX, &fd) < 0) return NULL;
  if (close((int)fd) < 0) {
    felt_err err;
    felt_errno(&err, errno, "%s fd %u", op, fd);
    return throw_err(env, &err);
  }
  return NULL;
}
