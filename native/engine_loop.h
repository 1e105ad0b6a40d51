/* Between engine_ctl.c (start, routes, stop) and engine.c (the packet path and its threads). */
#ifndef FELT_ENGINE_LOOP_H
#define FELT_ENGINE_LOOP_H

#include <stdint.h>

#include "engine.h"

/* A data thread's `seen` while it is blocked: it holds no table. */
#define OFFLINE UINT64_MAX

/* Allocates the threads' state (e->enc, e->dec). 0, or -1 on ENOMEM (free with engine_threads_free). */
int engine_threads_init(engine *e);
void engine_threads_free(engine *e);

/* Thread bodies: per direction (arg: e->enc / e->dec), or both directions on one (arg: e). */
void *engine_enc_main(void *enc);
void *engine_dec_main(void *dec);
void *engine_duo_main(void *e);

/* Wall clock in ms, through the syscall seam. */
uint64_t engine_now_ms(void);

#endif
