/*
 * ngx_http_chat_request.c - what every file of the module needs of a
 * request or of time: the request's chat context (found again after an
 * internal redirect), a query argument, a request header, the clocks, and
 * the signal mask around library threads.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <pthread.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_json.h"


static void ngx_http_chat_ctx_cleanup(void *data);


void
ngx_http_chat_threads_block_signals(sigset_t *saved)
{
    sigset_t  all;

    sigfillset(&all);
    (void) pthread_sigmask(SIG_BLOCK, &all, saved);
}


void
ngx_http_chat_threads_restore_signals(sigset_t *saved)
{
    (void) pthread_sigmask(SIG_SETMASK, saved, NULL);
}


uint64_t
ngx_http_chat_realtime_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


/*
 * A query argument, like ngx_http_arg() (names compared without case),
 * but one given twice is an error: "limit=1&limit=2" would mean 1 here
 * and 2 to another parser, so neither is guessed.  NGX_OK with the raw
 * value, NGX_DECLINED when absent, NGX_BUSY when given more than once.
 */

ngx_int_t
ngx_http_chat_arg(ngx_http_request_t *r, const char *name, ngx_str_t *value)
{
    size_t       len;
    u_char      *p, *last, *amp, *eq;
    ngx_uint_t   found;

    len = ngx_strlen(name);
    p = r->args.data;
    last = p + r->args.len;
    found = 0;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        eq = ngx_strlchr(p, amp, '=');

        if ((size_t) ((eq ? eq : amp) - p) == len
            && ngx_strncasecmp(p, (u_char *) name, len) == 0)
        {
            if (found++) {
                return NGX_BUSY;
            }

            value->data = eq ? eq + 1 : amp;
            value->len = amp - value->data;
        }

        p = amp + 1;
    }

    return found ? NGX_OK : NGX_DECLINED;
}


/*
 * The per-request context.  It is registered as a pool cleanup (with no
 * work to do) so that it can be found again after an internal redirect,
 * which clears r->ctx, as ngx_http_realip_module does; the cleanup and the
 * context are one allocation, linked into the pool by hand.
 */

typedef struct {
    ngx_pool_cleanup_t   cln;
    ngx_http_chat_ctx_t  ctx;
} ngx_http_chat_ctx_block_t;


ngx_http_chat_ctx_t *
ngx_http_chat_find_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t   *cln;
    ngx_http_chat_ctx_t  *ctx;

    /* r->ctx was cleared by an internal redirect: find it again */

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_chat_ctx_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_chat_module);
            return ctx;
        }
    }

    return NULL;
}


ngx_http_chat_ctx_t *
ngx_http_chat_new_ctx(ngx_http_request_t *r)
{
    ngx_http_chat_ctx_block_t  *b;

    b = ngx_palloc(r->pool, sizeof(ngx_http_chat_ctx_block_t));
    if (b == NULL) {
        return NULL;
    }

    /* what ngx_pool_cleanup_add() does, without its second allocation */

    b->cln.handler = ngx_http_chat_ctx_cleanup;
    b->cln.data = &b->ctx;
    b->cln.next = r->pool->cleanup;
    r->pool->cleanup = &b->cln;

    /* all but the generated ID's buffer, which is written before use */
    ngx_memzero(&b->ctx, offsetof(ngx_http_chat_ctx_t, uuid_buf));

    ngx_http_set_ctx(r, &b->ctx, ngx_http_chat_module);

    return &b->ctx;
}


ngx_http_chat_ctx_t *
ngx_http_chat_create_ctx(ngx_http_request_t *r)
{
    ngx_http_chat_ctx_t  *ctx;

    ctx = ngx_http_chat_get_ctx(r);
    if (ctx) {
        return ctx;
    }

    return ngx_http_chat_new_ctx(r);
}


static void
ngx_http_chat_ctx_cleanup(void *data)
{
    /* only a marker for ngx_http_chat_find_ctx(): nothing to release */
}


/* the first request header of that name (any case), or NULL */

ngx_table_elt_t *
ngx_http_chat_header_in(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            return &h[i];
        }
    }
}


/*
 * The integer query parameter name, from min to max (dflt when absent):
 * NGX_OK and *value; NGX_ERROR: the request was answered 400 (*rc).
 */

ngx_int_t
ngx_http_chat_query_int(ngx_http_request_t *r, const char *name, int64_t min,
    int64_t max, int64_t dflt, int64_t *value, ngx_int_t *rc)
{
    off_t      n;
    u_char     detail[128];
    ngx_str_t  arg;

    switch (ngx_http_chat_arg(r, name, &arg)) {

    case NGX_DECLINED:
        *value = dflt;
        return NGX_OK;

    case NGX_BUSY:
        ngx_snprintf(detail, sizeof(detail) - 1,
                     "query parameter \"%s\" is given more than once%Z",
                     name);
        *rc = ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       (const char *) detail);
        return NGX_ERROR;

    default: /* NGX_OK */
        break;
    }

    /* digits only (no sign, no blanks); ngx_atoof() refuses an overflow */
    n = (arg.len > 0 && arg.len < NGX_OFF_T_LEN) ? ngx_atoof(arg.data, arg.len)
                                                 : NGX_ERROR;

    if (n == NGX_ERROR || n < min || n > max) {
        ngx_snprintf(detail, sizeof(detail) - 1,
                     "%s must be an integer from %L to %L%Z",
                     name, min, max);
        *rc = ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                       (const char *) detail);
        return NGX_ERROR;
    }

    *value = (int64_t) n;

    return NGX_OK;
}
