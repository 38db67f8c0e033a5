/*
 * ngx_shim.h - helpers the harnesses get from fuzz/ngx_shim.c besides the
 * nginx functions it implements (see that file).
 */

#ifndef FUZZ_NGX_SHIM_H
#define FUZZ_NGX_SHIM_H

#include <ngx_config.h>
#include <ngx_core.h>

/* the log every shimmed ngx_cycle->log points at (formats everything) */
ngx_log_t *shim_log_get(void);

/* ngx_time() */
void shim_set_time(time_t sec);

/* pool allocations fail once the pool has handed out this many bytes */
void shim_pool_limit(ngx_pool_t *pool, size_t limit);

/* prints and aborts: a harness invariant that does not hold */
void shim_panic(const char *what) __attribute__((noreturn));

#define FUZZ_CHECK(cond)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            shim_panic(__FILE__ ":" NGX_SHIM_STR(__LINE__)                    \
                       ": invariant failed: " #cond);                         \
        }                                                                     \
    } while (0)

#define NGX_SHIM_STR2(x)  #x
#define NGX_SHIM_STR(x)   NGX_SHIM_STR2(x)

#endif /* FUZZ_NGX_SHIM_H */
