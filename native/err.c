#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int felt_errno(felt_err *err, int errnum, const char *fmt, ...) {
  char what[FELT_ERR_LEN - 64]; /* leaves room for the error text */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(err->msg, sizeof err->msg, "%s: %s", what, strerror(errnum));
  return -1;
}

int felt_errmsg(felt_err *err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  return -1;
}
