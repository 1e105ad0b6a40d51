/* Error reporting shared by the C modules: a message buffer the N-API glue turns into a JS Error. */
#ifndef FELT_ERR_H
#define FELT_ERR_H

#include <stddef.h>

#define FELT_ERR_LEN 256

typedef struct {
  char msg[FELT_ERR_LEN];
} felt_err;

/* Formats "<what>: <strerror(errnum)>" into err; returns -1 so callers can `return felt_errno(...)`. */
int felt_errno(felt_err *err, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Formats a plain message; returns -1. */
int felt_errmsg(felt_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
