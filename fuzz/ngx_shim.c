/*
 * ngx_shim.c - the few nginx core functions that the fuzzed module code
 * really calls, written here (clean-room, small) because Debian's
 * nginx-dev ships headers only.  Everything else the module files refer
 * to is dropped by -ffunction-sections + --gc-sections; a reference from a
 * function that stays is a link error, never a silent stub.
 *
 * Semantics follow nginx 1.22 where the module depends on them:
 *
 *   pools       every allocation is its own malloc() (so ASan puts a
 *               redzone around each), freed by ngx_destroy_pool();
 *               cleanups run in reverse order like nginx's
 *   base64      RFC 4648 alphabets; decoding stops at the first '=',
 *               rejects any other byte outside the alphabet and a length
 *               of 4n+1, and does not check the unused low bits of the
 *               last character (nginx's behaviour: tokens that differ only
 *               there decode to the same bytes)
 *   printf      ngx_vslprintf's conversions that the module uses; an
 *               unknown conversion aborts, it is never skipped
 *   escape_json nginx's: '"' and '\' backslashed, bytes < 0x20 as \n \r
 *               \t \b \f or \u00XX; NULL dst returns the extra length
 *   sha1        OpenSSL's SHA-1 kept in the ngx_sha1_t storage
 *
 * Fakes for event-loop pieces (timers, close, send) belong to the
 * harnesses that need them, not here.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_sha1.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <openssl/sha.h>      /* SHA1_*: deprecated in OpenSSL 3, still there */

#include "ngx_shim.h"


/* --- process-wide state the headers declare -------------------------- */

static ngx_log_t     shim_log;
static ngx_cycle_t   shim_cycle;

volatile ngx_cycle_t  *ngx_cycle = &shim_cycle;
ngx_pid_t              ngx_pid = 4242;
volatile ngx_msec_t    ngx_current_msec = 1000000;
static ngx_time_t      shim_time = { 1762691696, 0, 0 };
volatile ngx_time_t   *ngx_cached_time = &shim_time;
ngx_uint_t             ngx_pagesize = 4096;
ngx_uint_t             ngx_exiting;         /* a worker not shutting down */
sig_atomic_t           ngx_terminate;


__attribute__((constructor)) static void
shim_init(void)
{
    shim_log.log_level = NGX_LOG_DEBUG;    /* format every message */
    shim_cycle.log = &shim_log;
}


ngx_log_t *
shim_log_get(void)
{
    return &shim_log;
}


void
shim_set_time(time_t sec)
{
    shim_time.sec = sec;
}


void
shim_panic(const char *what)
{
    fprintf(stderr, "ngx_shim: %s\n", what);
    abort();
}


/* --- memory ------------------------------------------------------------ */

void *
ngx_alloc(size_t size, ngx_log_t *log)
{
    return malloc(size ? size : 1);
}


void *
ngx_calloc(size_t size, ngx_log_t *log)
{
    return calloc(1, size ? size : 1);
}


typedef struct shim_chunk_s  shim_chunk_t;

struct shim_chunk_s {
    shim_chunk_t  *next;
    /* the allocation follows, max-aligned */
    max_align_t    data[];
};


typedef struct {
    ngx_pool_t     pool;         /* what the module sees */
    shim_chunk_t  *chunks;
    size_t         allocated;
    size_t         limit;        /* 0: none */
} shim_pool_t;


ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    shim_pool_t  *sp;

    sp = calloc(1, sizeof(shim_pool_t));
    if (sp == NULL) {
        return NULL;
    }

    sp->pool.log = log;
    sp->pool.max = size;

    return &sp->pool;
}


void
shim_pool_limit(ngx_pool_t *pool, size_t limit)
{
    ((shim_pool_t *) pool)->limit = limit;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    shim_pool_t         *sp = (shim_pool_t *) pool;
    shim_chunk_t        *c, *next;
    ngx_pool_cleanup_t  *cln;

    for (cln = pool->cleanup; cln; cln = cln->next) {
        if (cln->handler) {
            cln->handler(cln->data);
        }
    }

    for (c = sp->chunks; c; c = next) {
        next = c->next;
        free(c);
    }

    free(sp);
}


void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    shim_pool_t   *sp = (shim_pool_t *) pool;
    shim_chunk_t  *c;

    if (sp->limit && sp->allocated + size > sp->limit) {
        return NULL;                   /* a pool that runs dry, on purpose */
    }

    c = malloc(sizeof(shim_chunk_t) + size);
    if (c == NULL) {
        return NULL;
    }

    c->next = sp->chunks;
    sp->chunks = c;
    sp->allocated += size;

    return c->data;
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


void *
ngx_pcalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    p = ngx_palloc(pool, size);
    if (p) {
        memset(p, 0, size);
    }

    return p;
}


ngx_int_t
ngx_pfree(ngx_pool_t *pool, void *p)
{
    return NGX_DECLINED;               /* nginx frees only large blocks */
}


ngx_pool_cleanup_t *
ngx_pool_cleanup_add(ngx_pool_t *p, size_t size)
{
    ngx_pool_cleanup_t  *c;

    c = ngx_palloc(p, sizeof(ngx_pool_cleanup_t));
    if (c == NULL) {
        return NULL;
    }

    if (size) {
        c->data = ngx_palloc(p, size);
        if (c->data == NULL) {
            return NULL;
        }

    } else {
        c->data = NULL;
    }

    c->handler = NULL;
    c->next = p->cleanup;
    p->cleanup = c;

    return c;
}


/* --- strings ----------------------------------------------------------- */

u_char *
ngx_cpystrn(u_char *dst, u_char *src, size_t n)
{
    if (n == 0) {
        return dst;
    }

    while (--n) {
        *dst = *src;

        if (*dst == '\0') {
            return dst;
        }

        dst++;
        src++;
    }

    *dst = '\0';

    return dst;
}


ngx_int_t
ngx_strcasecmp(u_char *s1, u_char *s2)
{
    ngx_uint_t  c1, c2;

    for ( ;; ) {
        c1 = ngx_tolower(*s1); s1++;
        c2 = ngx_tolower(*s2); s2++;

        if (c1 != c2) {
            return c1 - c2;
        }

        if (c1 == 0) {
            return 0;
        }
    }
}


/* like nginx's: stops at a NUL that both strings have */
ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    ngx_uint_t  c1, c2;

    while (n--) {
        c1 = ngx_tolower(*s1); s1++;
        c2 = ngx_tolower(*s2); s2++;

        if (c1 != c2) {
            return c1 - c2;
        }

        if (c1 == 0) {
            return 0;
        }
    }

    return 0;
}


ngx_int_t
ngx_atoi(u_char *line, size_t n)
{
    ngx_int_t  value, cutoff, cutlim;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_INT_T_VALUE / 10;
    cutlim = NGX_MAX_INT_T_VALUE % 10;

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        if (value >= cutoff && (value > cutoff || *line - '0' > cutlim)) {
            return NGX_ERROR;
        }

        value = value * 10 + (*line - '0');
    }

    return value;
}


off_t
ngx_atoof(u_char *line, size_t n)
{
    off_t  value, cutoff, cutlim;

    if (n == 0) {
        return NGX_ERROR;
    }

    cutoff = NGX_MAX_OFF_T_VALUE / 10;
    cutlim = NGX_MAX_OFF_T_VALUE % 10;

    for (value = 0; n--; line++) {
        if (*line < '0' || *line > '9') {
            return NGX_ERROR;
        }

        if (value >= cutoff && (value > cutoff || *line - '0' > cutlim)) {
            return NGX_ERROR;
        }

        value = value * 10 + (*line - '0');
    }

    return value;
}


u_char *
ngx_hex_dump(u_char *dst, u_char *src, size_t len)
{
    static const u_char  hex[] = "0123456789abcdef";

    while (len--) {
        *dst++ = hex[*src >> 4];
        *dst++ = hex[*src++ & 0xf];
    }

    return dst;
}


uintptr_t
ngx_escape_json(u_char *dst, u_char *src, size_t size)
{
    u_char      c;
    ngx_uint_t  len;

    if (dst == NULL) {
        len = 0;

        while (size--) {
            c = *src++;

            if (c == '\\' || c == '"') {
                len++;

            } else if (c <= 0x1f) {
                switch (c) {
                case '\n': case '\r': case '\t': case '\b': case '\f':
                    len++;
                    break;
                default:
                    len += sizeof("\\u001F") - 2;
                }
            }
        }

        return (uintptr_t) len;
    }

    while (size--) {
        c = *src++;

        if (c > 0x1f) {
            if (c == '\\' || c == '"') {
                *dst++ = '\\';
            }

            *dst++ = c;
            continue;
        }

        *dst++ = '\\';

        switch (c) {
        case '\n': *dst++ = 'n'; break;
        case '\r': *dst++ = 'r'; break;
        case '\t': *dst++ = 't'; break;
        case '\b': *dst++ = 'b'; break;
        case '\f': *dst++ = 'f'; break;
        default:
            *dst++ = 'u'; *dst++ = '0'; *dst++ = '0';
            *dst++ = '0' + (c >> 4);
            c &= 0xf;
            *dst++ = (c < 10) ? ('0' + c) : ('A' + c - 10);
        }
    }

    return (uintptr_t) dst;
}


/* --- base64 (RFC 4648) ------------------------------------------------- */

static const char  b64_std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char  b64_url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


static void
shim_encode_base64(ngx_str_t *dst, ngx_str_t *src, const char *alphabet,
    int pad)
{
    u_char  *d, *s;
    size_t   len;

    len = src->len;
    s = src->data;
    d = dst->data;

    while (len > 2) {
        *d++ = alphabet[s[0] >> 2];
        *d++ = alphabet[((s[0] & 3) << 4) | (s[1] >> 4)];
        *d++ = alphabet[((s[1] & 0x0f) << 2) | (s[2] >> 6)];
        *d++ = alphabet[s[2] & 0x3f];
        s += 3;
        len -= 3;
    }

    if (len) {
        *d++ = alphabet[s[0] >> 2];

        if (len == 1) {
            *d++ = alphabet[(s[0] & 3) << 4];
            if (pad) {
                *d++ = '=';
            }

        } else {
            *d++ = alphabet[((s[0] & 3) << 4) | (s[1] >> 4)];
            *d++ = alphabet[(s[1] & 0x0f) << 2];
        }

        if (pad) {
            *d++ = '=';
        }
    }

    dst->len = d - dst->data;
}


static int
shim_b64_value(u_char c, const char *alphabet)
{
    int  i;

    for (i = 0; i < 64; i++) {
        if ((u_char) alphabet[i] == c) {
            return i;
        }
    }

    return -1;
}


static ngx_int_t
shim_decode_base64(ngx_str_t *dst, ngx_str_t *src, const char *alphabet)
{
    u_char  *d, *s;
    size_t   len, i;
    int      v[4];

    for (len = 0; len < src->len; len++) {
        if (src->data[len] == '=') {
            break;
        }

        if (shim_b64_value(src->data[len], alphabet) < 0) {
            return NGX_ERROR;
        }
    }

    if (len % 4 == 1) {
        return NGX_ERROR;
    }

    s = src->data;
    d = dst->data;

    while (len) {
        size_t  n = len < 4 ? len : 4;

        for (i = 0; i < 4; i++) {
            v[i] = i < n ? shim_b64_value(s[i], alphabet) : 0;
        }

        *d++ = (u_char) (v[0] << 2 | v[1] >> 4);
        if (n > 2) {
            *d++ = (u_char) (v[1] << 4 | v[2] >> 2);
        }
        if (n > 3) {
            *d++ = (u_char) (v[2] << 6 | v[3]);
        }

        s += n;
        len -= n;
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


void
ngx_encode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    shim_encode_base64(dst, src, b64_std, 1);
}


void
ngx_encode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    shim_encode_base64(dst, src, b64_url, 0);
}


ngx_int_t
ngx_decode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    return shim_decode_base64(dst, src, b64_std);
}


ngx_int_t
ngx_decode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    return shim_decode_base64(dst, src, b64_url);
}


/* --- SHA-1 ------------------------------------------------------------- */

_Static_assert(sizeof(SHA_CTX) <= sizeof(ngx_sha1_t),
               "SHA_CTX fits in ngx_sha1_t");

void
ngx_sha1_init(ngx_sha1_t *ctx)
{
    SHA1_Init((SHA_CTX *) ctx);
}


void
ngx_sha1_update(ngx_sha1_t *ctx, const void *data, size_t size)
{
    SHA1_Update((SHA_CTX *) ctx, data, size);
}


void
ngx_sha1_final(u_char result[20], ngx_sha1_t *ctx)
{
    SHA1_Final(result, (SHA_CTX *) ctx);
}


/* --- printf: the subset of ngx_vslprintf the module uses --------------- */

static u_char *
shim_num(u_char *buf, u_char *last, uint64_t ui, int neg, int hex,
    size_t width, u_char zero)
{
    u_char   tmp[NGX_INT64_LEN + 2], *p;
    size_t   len;
    const char *digits = hex == 2 ? "0123456789ABCDEF" : "0123456789abcdef";

    p = tmp + sizeof(tmp);

    do {
        if (hex) {
            *--p = digits[ui & 0xf];
            ui >>= 4;
        } else {
            *--p = (u_char) ('0' + ui % 10);
            ui /= 10;
        }
    } while (ui);

    if (neg) {
        *--p = '-';
    }

    len = tmp + sizeof(tmp) - p;

    while (len < width-- && buf < last) {
        *buf++ = zero;
    }

    if (len > (size_t) (last - buf)) {
        len = last - buf;
    }

    memcpy(buf, p, len);

    return buf + len;
}


u_char *
ngx_vslprintf(u_char *buf, u_char *last, const char *fmt, va_list args)
{
    u_char      *p, zero;
    size_t       len, width, slen;
    int64_t      i64;
    uint64_t     ui64;
    ngx_str_t   *v;
    ngx_uint_t   sign, hex, max_width;

    while (*fmt && buf < last) {

        if (*fmt != '%') {
            *buf++ = *fmt++;
            continue;
        }

        fmt++;

        zero = (u_char) ((*fmt == '0') ? '0' : ' ');
        width = 0;
        sign = 1;
        hex = 0;
        max_width = 0;
        slen = (size_t) -1;

        while (*fmt >= '0' && *fmt <= '9') {
            width = width * 10 + (*fmt++ - '0');
        }

        for ( ;; ) {
            switch (*fmt) {
            case 'u': sign = 0; fmt++; continue;
            case 'm': max_width = 1; fmt++; continue;
            case 'X': hex = 2; sign = 0; fmt++; continue;
            case 'x': hex = 1; sign = 0; fmt++; continue;
            case '*': slen = va_arg(args, size_t); fmt++; continue;
            default: break;
            }
            break;
        }

        (void) max_width;

        switch (*fmt) {

        case 'V':
            v = va_arg(args, ngx_str_t *);
            len = ngx_min((size_t) (last - buf), v->len);
            memcpy(buf, v->data, len);
            buf += len;
            fmt++;
            continue;

        case 's':
            p = va_arg(args, u_char *);
            if (slen == (size_t) -1) {
                while (*p && buf < last) {
                    *buf++ = *p++;
                }

            } else {
                len = ngx_min((size_t) (last - buf), slen);
                memcpy(buf, p, len);
                buf += len;
            }
            fmt++;
            continue;

        case 'c':
            *buf++ = (u_char) (va_arg(args, int) & 0xff);
            fmt++;
            continue;

        case 'Z':
            *buf++ = '\0';
            fmt++;
            continue;

        case 'N':
            *buf++ = '\n';
            fmt++;
            continue;

        case '%':
            *buf++ = '%';
            fmt++;
            continue;

        case 'z':
            if (sign) { i64 = (int64_t) va_arg(args, ssize_t); }
            else { ui64 = (uint64_t) va_arg(args, size_t); }
            break;

        case 'i':
            if (sign) { i64 = (int64_t) va_arg(args, ngx_int_t); }
            else { ui64 = (uint64_t) va_arg(args, ngx_uint_t); }
            break;

        case 'd':
            if (sign) { i64 = (int64_t) va_arg(args, int); }
            else { ui64 = (uint64_t) va_arg(args, u_int); }
            break;

        case 'l':
            if (sign) { i64 = (int64_t) va_arg(args, long); }
            else { ui64 = (uint64_t) va_arg(args, u_long); }
            break;

        case 'D':
            if (sign) { i64 = (int64_t) va_arg(args, int32_t); }
            else { ui64 = (uint64_t) va_arg(args, uint32_t); }
            break;

        case 'L':
            if (sign) { i64 = va_arg(args, int64_t); }
            else { ui64 = va_arg(args, uint64_t); }
            break;

        case 'O':
            i64 = (int64_t) va_arg(args, off_t); sign = 1;
            break;

        case 'T':
            i64 = (int64_t) va_arg(args, time_t); sign = 1;
            break;

        case 'P':
            i64 = (int64_t) va_arg(args, ngx_pid_t); sign = 1;
            break;

        case 'M':
            ui64 = (uint64_t) va_arg(args, ngx_msec_t); sign = 0;
            break;

        case 'p':
            ui64 = (uintptr_t) va_arg(args, void *); sign = 0; hex = 1;
            break;

        default:
            fprintf(stderr, "ngx_shim: ngx_vslprintf: conversion '%%%c' "
                    "is not implemented in fuzz/ngx_shim.c\n", *fmt);
            abort();
        }

        fmt++;

        if (sign) {
            buf = shim_num(buf, last, i64 < 0 ? (uint64_t) -(i64 + 1) + 1
                                              : (uint64_t) i64,
                           i64 < 0, hex, width, zero);
        } else {
            buf = shim_num(buf, last, ui64, 0, hex, width, zero);
        }
    }

    return buf;
}


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, (void *) -1, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_snprintf(u_char *buf, size_t max, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + max, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_slprintf(u_char *buf, u_char *last, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, last, fmt, args);
    va_end(args);

    return p;
}


/* formats every message (so that a bad %V or %s argument is caught),
 * prints it only with FUZZ_NGX_LOG set */

void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    u_char   line[NGX_MAX_ERROR_STR], *p;
    va_list  args;

    va_start(args, fmt);
    p = ngx_vslprintf(line, line + sizeof(line), fmt, args);
    va_end(args);

    if (getenv("FUZZ_NGX_LOG")) {
        fprintf(stderr, "[ngx %lu] %.*s\n", (unsigned long) level,
                (int) (p - line), line);
    }
}
