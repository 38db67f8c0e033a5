/*
 * ngx_http_chat_correlation.c - correlation IDs for every request nginx
 * serves (not only the chat API) in an http block that uses the module
 * (ngx_http_chat_init() registers nothing otherwise).
 *
 * An incoming ID is kept only when it is a short token of [A-Za-z0-9._:-]:
 * anything else could smuggle CR/LF into headers, quotes into logs or
 * unbounded data into the metrics pipeline, so it is replaced.  Generated
 * IDs are UUIDv4-shaped: a per-worker random prefix seeded by the kernel
 * and a counter; unique, cheap (no syscall, a copy and six table lookups
 * per request), not meant to be secret.
 *
 * W3C Trace Context: a valid "traceparent" request header wins over the
 * correlation header: its trace-id (32 lowercase hex digits) becomes the
 * correlation ID, so that the operator's tracing system and the dashboard
 * name a request alike.  The request is a span of that trace: a new span
 * id, the sampled flag kept, sent back in the response's "traceparent"
 * and offered to upstreams as $chat_traceparent.  Without a valid one the
 * request starts a trace of its own (flags 00), whose trace-id is the
 * generated correlation ID without its dashes, or 128 new bits when the
 * client chose the correlation ID.  An invalid traceparent is ignored
 * (logged at info) exactly like an unsafe correlation header.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/random.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_correlation.h"


static ngx_int_t ngx_http_chat_cid_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_chat_cid_header_filter(ngx_http_request_t *r);
static void ngx_http_chat_cid_generate(u_char *buf);
static ngx_int_t ngx_http_chat_traceparent_parse(ngx_str_t *value,
    ngx_uint_t *flags);
static ngx_int_t ngx_http_chat_traceparent_build(ngx_http_request_t *r,
    ngx_http_chat_ctx_t *ctx);
static void ngx_http_chat_cid_worker_init(void);
static uint64_t ngx_http_chat_cid_next(void);
static u_char *ngx_http_chat_hex64(u_char *p, uint64_t v, ngx_uint_t bytes);
static void ngx_http_chat_hex_increment(u_char *digits, size_t n);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;

static uint64_t  ngx_http_chat_cid_state;
static ngx_pid_t ngx_http_chat_cid_pid;

static ngx_str_t  ngx_http_chat_tp_header = ngx_string("traceparent");

/* where the span id starts in a traceparent: "00-" 32 digits "-" */
#define NGX_HTTP_CHAT_TP_SPAN  (3 + NGX_HTTP_CHAT_TRACE_ID_LEN + 1)

/* this worker's last generated ID and traceparent template
 * (ngx_http_chat_cid_worker_init()) */
static struct {
    ngx_pid_t  pid;
    u_char     id[NGX_HTTP_CHAT_UUID_LEN];
    u_char     tp[NGX_HTTP_CHAT_TRACEPARENT_LEN];
} ngx_http_chat_cid_worker;


/* where a request's trace-id comes from (ctx->trace_from) */
#define NGX_HTTP_CHAT_TRACE_CID      0   /* the correlation ID: a valid
                                            traceparent's trace-id */
#define NGX_HTTP_CHAT_TRACE_UUID     1   /* the generated UUID's digits */
#define NGX_HTTP_CHAT_TRACE_RANDOM   2   /* 128 new bits: the client chose
                                            the correlation ID */


static ngx_http_variable_t  ngx_http_chat_cid_vars[] = {

    { ngx_string("chat_correlation_id"), NULL,
      ngx_http_chat_cid_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("chat_traceparent"), NULL,
      ngx_http_chat_cid_variable, 1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_chat_correlation_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_chat_cid_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_correlation_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_chat_cid_header_filter;

    return NGX_OK;
}


ngx_int_t
ngx_http_chat_correlation_is_safe(u_char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > NGX_HTTP_CHAT_CID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!(ngx_http_chat_isalnum(s[i]) || s[i] == '.' || s[i] == '_'
              || s[i] == ':' || s[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


ngx_int_t
ngx_http_chat_correlation_settle(ngx_http_request_t *r,
    ngx_http_chat_ctx_t *ctx)
{
    ngx_uint_t                  flags, i;
    ngx_list_part_t            *part;
    ngx_table_elt_t            *h, *tp, *cid;
    ngx_http_chat_main_conf_t  *cmcf;

    if (ctx->correlation_id.len) {
        return NGX_OK;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    /* both headers in one pass over the request's */

    tp = NULL;
    cid = NULL;

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (tp == NULL
                && h[i].key.len == ngx_http_chat_tp_header.len
                && ngx_strncasecmp(h[i].key.data, ngx_http_chat_tp_header.data,
                                   ngx_http_chat_tp_header.len) == 0)
            {
                tp = &h[i];

            } else if (cid == NULL
                       && h[i].key.len == cmcf->cid_header_lc.len
                       && ngx_strncasecmp(h[i].key.data,
                                          cmcf->cid_header_lc.data,
                                          cmcf->cid_header_lc.len) == 0)
            {
                cid = &h[i];
            }
        }
    }

    /*
     * The request's span (its traceparent) is built only when a response
     * header or $chat_traceparent asks for it: here only where its trace-id
     * will come from.  A client's ID is used where it is, in its request
     * header, which lives as long as the request.
     */

    if (tp) {
        if (ngx_http_chat_traceparent_parse(&tp->value, &flags) == NGX_OK) {
            ctx->correlation_id.data = tp->value.data + 3;
            ctx->correlation_id.len = NGX_HTTP_CHAT_TRACE_ID_LEN;
            ctx->trace_from = NGX_HTTP_CHAT_TRACE_CID;
            ctx->trace_sampled = flags;
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "chat correlation: ignored invalid \"traceparent\" "
                      "header of %uz bytes, starting a new trace",
                      tp->value.len);
    }

    if (cid
        && ngx_http_chat_correlation_is_safe(cid->value.data, cid->value.len))
    {
        ctx->correlation_id = cid->value;
        ctx->trace_from = NGX_HTTP_CHAT_TRACE_RANDOM;

        return NGX_OK;
    }

    if (cid) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "chat correlation: ignored unsafe \"%V\" header "
                      "of %uz bytes, generating a new ID",
                      &cmcf->cid_header, cid->value.len);
    }

    /* the trace is the UUID's 32 hex digits: never all zeros (version 4) */

    ngx_http_chat_cid_generate(ctx->uuid_buf);
    ctx->correlation_id.data = ctx->uuid_buf;
    ctx->correlation_id.len = NGX_HTTP_CHAT_UUID_LEN;
    ctx->trace_from = NGX_HTTP_CHAT_TRACE_UUID;

    return NGX_OK;
}


/*
 * "version-trace_id-parent_id-flags" of W3C Trace Context (level 1):
 * lowercase hex only; version ff, an all-zero trace-id or parent-id are
 * invalid; version 00 is exactly 55 characters; a later version may be
 * longer, with a '-' after the 55th (its fields are read as 00's).
 */

static ngx_int_t
ngx_http_chat_traceparent_parse(ngx_str_t *value, ngx_uint_t *flags)
{
    u_char      *p, c;
    ngx_uint_t   i, nonzero, f;

    static const u_char  dashes[] = { 2, 35, 52 };

    p = value->data;

    if (value->len < NGX_HTTP_CHAT_TRACEPARENT_LEN) {
        return NGX_DECLINED;
    }

    for (i = 0; i < NGX_HTTP_CHAT_TRACEPARENT_LEN; i++) {
        c = p[i];

        if (i == dashes[0] || i == dashes[1] || i == dashes[2]) {
            if (c != '-') {
                return NGX_DECLINED;
            }

            continue;
        }

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return NGX_DECLINED;
        }
    }

    if (p[0] == 'f' && p[1] == 'f') {
        return NGX_DECLINED;
    }

    if (p[0] == '0' && p[1] == '0') {
        if (value->len != NGX_HTTP_CHAT_TRACEPARENT_LEN) {
            return NGX_DECLINED;
        }

    } else if (value->len > NGX_HTTP_CHAT_TRACEPARENT_LEN
               && p[NGX_HTTP_CHAT_TRACEPARENT_LEN] != '-')
    {
        return NGX_DECLINED;
    }

    for (nonzero = 0, i = 3; i < 35; i++) {
        nonzero |= (p[i] != '0');
    }

    if (!nonzero) {
        return NGX_DECLINED;
    }

    for (nonzero = 0, i = 36; i < 52; i++) {
        nonzero |= (p[i] != '0');
    }

    if (!nonzero) {
        return NGX_DECLINED;
    }

    f = ngx_hextoi(p + 53, 2);
    if (f == (ngx_uint_t) NGX_ERROR) {
        return NGX_DECLINED;
    }

    /* "sampled" is the only flag of level 1; the others are not passed on */
    *flags = f & 0x01;

    return NGX_OK;
}


/*
 * This request's span of the trace: "00-<trace-id>-<new span id>-<flags>",
 * a copy of the worker's template (its last span id, incremented here, and
 * the trace-id of its generated IDs but for their counter) with the
 * trace-id and the flags put in.
 */

static ngx_int_t
ngx_http_chat_traceparent_build(ngx_http_request_t *r,
    ngx_http_chat_ctx_t *ctx)
{
    u_char  *p, *tp;

    p = ngx_pnalloc(r->pool, NGX_HTTP_CHAT_TRACEPARENT_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_chat_cid_worker.pid != ngx_pid) {
        ngx_http_chat_cid_worker_init();
    }

    tp = ngx_http_chat_cid_worker.tp;

    /* span ids, like generated IDs, count from a random per-worker start:
     * unique for the worker's life (2^64 of them), never all zeros */
    ngx_http_chat_hex_increment(tp + NGX_HTTP_CHAT_TP_SPAN, 16);

    ngx_memcpy(p, tp, NGX_HTTP_CHAT_TRACEPARENT_LEN);

    switch (ctx->trace_from) {

    case NGX_HTTP_CHAT_TRACE_UUID:
        /* the UUID without its dashes: all but its counter (its last 12
         * digits) are the template's already */
        ngx_memcpy(p + NGX_HTTP_CHAT_TP_SPAN - 1 - 12,
                   ctx->correlation_id.data + NGX_HTTP_CHAT_UUID_LEN - 12, 12);
        break;

    case NGX_HTTP_CHAT_TRACE_RANDOM:
        tp = ngx_http_chat_hex64(p + 3, ngx_http_chat_cid_next(), 8);
        (void) ngx_http_chat_hex64(tp, ngx_http_chat_cid_next(), 8);
        break;

    default: /* NGX_HTTP_CHAT_TRACE_CID */
        ngx_memcpy(p + 3, ctx->correlation_id.data,
                   NGX_HTTP_CHAT_TRACE_ID_LEN);
        break;
    }

    p[NGX_HTTP_CHAT_TRACEPARENT_LEN - 1] = ctx->trace_sampled ? '1' : '0';

    ctx->traceparent.data = p;
    ctx->traceparent.len = NGX_HTTP_CHAT_TRACEPARENT_LEN;

    return NGX_OK;
}


ngx_str_t *
ngx_http_chat_traceparent(ngx_http_request_t *r)
{
    static ngx_str_t      empty = ngx_null_string;
    ngx_http_chat_ctx_t  *ctx;

    if (ngx_http_chat_correlation_id(r)->len == 0) {
        return &empty;
    }

    ctx = ngx_http_chat_get_ctx(r->main);
    if (ctx == NULL) {
        return &empty;
    }

    if (ctx->traceparent.len == 0
        && ngx_http_chat_traceparent_build(r->main, ctx) != NGX_OK)
    {
        return &empty;
    }

    return &ctx->traceparent;
}


ngx_str_t *
ngx_http_chat_correlation_id(ngx_http_request_t *r)
{
    static ngx_str_t      empty = ngx_null_string;
    ngx_http_chat_ctx_t  *ctx;

    r = r->main;

    ctx = ngx_http_chat_create_ctx(r);
    if (ctx == NULL) {
        return &empty;
    }

    if (ctx->correlation_id.len == 0) {
        (void) ngx_http_chat_correlation_settle(r, ctx);
    }

    return &ctx->correlation_id;
}


/* $chat_correlation_id (data 0) and $chat_traceparent (data 1) */

static ngx_int_t
ngx_http_chat_cid_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t  *value;

    value = data ? ngx_http_chat_traceparent(r)
                 : ngx_http_chat_correlation_id(r);

    if (value->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = value->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    v->data = value->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_cid_header_filter(ngx_http_request_t *r)
{
    ngx_table_elt_t            *h;
    ngx_http_chat_ctx_t        *ctx;
    ngx_http_chat_loc_conf_t   *lcf;
    ngx_http_chat_main_conf_t  *cmcf;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    if (!lcf->cid_response && !lcf->tp_response) {
        return ngx_http_next_header_filter(r);
    }

    /* settled in the post-read phase, unless rejected before it */

    ctx = ngx_http_chat_create_ctx(r);
    if (ctx == NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx->correlation_id.len == 0) {
        (void) ngx_http_chat_correlation_settle(r, ctx);
    }

    if (lcf->cid_response) {
        cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        h->key = cmcf->cid_header;
        h->value = ctx->correlation_id;
    }

    if (!lcf->tp_response) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx->traceparent.len == 0
        && ngx_http_chat_traceparent_build(r, ctx) != NGX_OK)
    {
        return ngx_http_next_header_filter(r);
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = ngx_http_chat_tp_header;
    h->value = ctx->traceparent;

    return ngx_http_next_header_filter(r);
}


/*
 * splitmix64: a tiny, well-known generator with full 64-bit period; seeded
 * per worker from getrandom() so that workers never share a sequence.
 */

static uint64_t
ngx_http_chat_cid_next(void)
{
    uint64_t  z;

    if (ngx_http_chat_cid_pid != ngx_pid) {
        if (getrandom(&ngx_http_chat_cid_state,
                      sizeof(ngx_http_chat_cid_state), 0)
            != (ssize_t) sizeof(ngx_http_chat_cid_state))
        {
            ngx_http_chat_cid_state = ngx_http_chat_realtime_us()
                                      ^ ((uint64_t) ngx_pid << 32);
        }

        ngx_http_chat_cid_pid = ngx_pid;
    }

    z = (ngx_http_chat_cid_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;

    return z ^ (z >> 31);
}


/* 8 bytes as 16 lowercase hex digits, two digits per table lookup */

static u_char *
ngx_http_chat_hex64(u_char *p, uint64_t v, ngx_uint_t bytes)
{
    static const char  digits[] =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
        "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

    ngx_uint_t  i, b;

    for (i = 0; i < bytes; i++) {
        b = (v >> (8 * (bytes - 1 - i))) & 0xff;
        *p++ = digits[2 * b];
        *p++ = digits[2 * b + 1];
    }

    return p;
}


/*
 * A UUID-shaped ID (8-4-4-4-12 hex digits, version 4, RFC 4122 variant):
 * the first 80 bits are drawn once per worker, the last 48 count
 * requests from a random start.  Unique across workers and restarts
 * without 128 fresh bits per request; an ID is a label, not a secret.
 * The counter is kept as its 12 hex digits and incremented in place, so
 * a new ID is one 36-byte copy and, mostly, one changed digit.
 */

static void
ngx_http_chat_cid_generate(u_char *buf)
{
    u_char  *id;

    if (ngx_http_chat_cid_worker.pid != ngx_pid) {
        ngx_http_chat_cid_worker_init();
    }

    id = ngx_http_chat_cid_worker.id;

    /* the next value of the 48-bit counter, wrapping to zero */
    ngx_http_chat_hex_increment(id + 24, 12);

    ngx_memcpy(buf, id, NGX_HTTP_CHAT_UUID_LEN);
}


/*
 * The worker's generated-ID prefix and counter start, its span id start
 * (never all zeros or all ones), and the traceparent template: "00-", the
 * UUID's digits without dashes, "-", the last span id, "-00".
 */

static void
ngx_http_chat_cid_worker_init(void)
{
    u_char    *p, *id;
    uint64_t   a, b, v;

    id = ngx_http_chat_cid_worker.id;

    a = ngx_http_chat_cid_next();
    b = ngx_http_chat_cid_next();

    a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL; /* v4 */
    b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL; /* var */

    p = ngx_http_chat_hex64(id, a >> 32, 4);
    *p++ = '-';
    p = ngx_http_chat_hex64(p, a >> 16, 2);
    *p++ = '-';
    p = ngx_http_chat_hex64(p, a, 2);
    *p++ = '-';
    p = ngx_http_chat_hex64(p, b >> 48, 2);
    *p++ = '-';
    (void) ngx_http_chat_hex64(p, ngx_http_chat_cid_next(), 6);

    do {
        v = ngx_http_chat_cid_next();
    } while (v == 0 || v == (uint64_t) -1);

    p = ngx_cpymem(ngx_http_chat_cid_worker.tp, "00-", 3);
    p = ngx_cpymem(p, id, 8);
    p = ngx_cpymem(p, id + 9, 4);
    p = ngx_cpymem(p, id + 14, 4);
    p = ngx_cpymem(p, id + 19, 4);
    p = ngx_cpymem(p, id + 24, 12);
    *p++ = '-';
    p = ngx_http_chat_hex64(p, v, 8);
    (void) ngx_cpymem(p, "-00", 3);

    ngx_http_chat_cid_worker.pid = ngx_pid;
}


/* adds one to n lowercase hex digits in place (wrapping to all zeros) */

static void
ngx_http_chat_hex_increment(u_char *digits, size_t n)
{
    u_char  *p;

    for (p = digits + n; p > digits; /* void */) {
        p--;

        if (*p == '9') {
            *p = 'a';
            return;
        }

        if (*p != 'f') {
            (*p)++;
            return;
        }

        *p = '0';
    }
}
