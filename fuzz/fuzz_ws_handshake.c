/*
 * fuzz_ws_handshake.c - the checks of a WebSocket opening handshake, in
 * the order ngx_http_chat_ws_handler() makes them: header lookup
 * (ngx_http_chat_header_in), "Upgrade: websocket", the "upgrade" token of
 * Connection (ngx_http_chat_ws_has_token), version 13, the key and its
 * accept value (ngx_http_chat_ws_accept_key), the Origin allow-list
 * (ngx_http_chat_ws_origin_allowed).  The handshake file is #included for
 * its static functions (the header lookup and the Origin check); the
 * codec is linked.
 *
 * Input: a first line with the allowed origins (space separated; empty:
 * no chat_ws_origins), then header lines "Name: value" (CRLF or LF).  The
 * headers go into an ngx_list_t of parts of 3, like nginx's.  Inputs with
 * a NUL byte are skipped: nginx refuses such a request before any module.
 *
 * Checked: each answer against a reference from RFC 6455 4.2.1 / 4.2.2
 * (the accept value recomputed with OpenSSL SHA-1 and base64), the header
 * lookup against a plain search, and ASan on every read.
 */

#include "ngx_http_chat_ws_handshake.c"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "fuzz_common.h"
#include "ngx_shim.h"


#define PART_SIZE  3


static int
ref_icase_eq(const u_char *a, size_t alen, const char *b)
{
    size_t  i;

    if (alen != strlen(b)) {
        return 0;
    }

    for (i = 0; i < alen; i++) {
        if (ngx_tolower(a[i]) != ngx_tolower((u_char) b[i])) {
            return 0;
        }
    }

    return 1;
}


/* the Connection header is a list of tokens: split on comma and space */
static int
ref_has_token(ngx_str_t *v, const char *token)
{
    size_t  i = 0, start;

    while (i < v->len) {
        while (i < v->len && (v->data[i] == ',' || v->data[i] == ' '
                              || v->data[i] == '\t'))
        {
            i++;
        }

        start = i;

        while (i < v->len && v->data[i] != ',' && v->data[i] != ' '
               && v->data[i] != '\t')
        {
            i++;
        }

        if (ref_icase_eq(v->data + start, i - start, token)) {
            return 1;
        }
    }

    return 0;
}


static int
b64_char(u_char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '+' || c == '/';
}


/*
 * RFC 6455 4.2.1: the key is 16 bytes in base64, i.e. 22 characters and
 * "==".  nginx's decoder stops at the first '=' and ignores the rest, so
 * the module also takes 22 characters, '=' and any 24th byte; that
 * leniency is harmless (the accept value hashes the key as sent) and is
 * what is checked here.
 */
static int
ref_key_ok(ngx_str_t *key)
{
    size_t  i;

    if (key->len != 24 || key->data[22] != '=') {
        return 0;
    }

    for (i = 0; i < 22; i++) {
        if (!b64_char(key->data[i])) {
            return 0;
        }
    }

    return 1;
}


static void
ref_accept(ngx_str_t *key, u_char out[29])
{
    u_char   digest[SHA_DIGEST_LENGTH], *buf;
    size_t   n;
    static const char  guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

    n = key->len + sizeof(guid) - 1;
    buf = malloc(n);
    memcpy(buf, key->data, key->len);
    memcpy(buf + key->len, guid, sizeof(guid) - 1);
    SHA1(buf, n, digest);
    free(buf);

    EVP_EncodeBlock(out, digest, sizeof(digest));
}


static ngx_table_elt_t *
ref_header(ngx_table_elt_t *all, size_t n, const char *name)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (ref_icase_eq(all[i].key.data, all[i].key.len, name)) {
            return &all[i];
        }
    }

    return NULL;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                     *buf, *p, *last, *eol, *colon, accept[28];
    u_char                      ref[29];
    size_t                      n, i, nh;
    ngx_int_t                   rc;
    ngx_str_t                  *o, key, name;
    ngx_pool_t                 *pool;
    ngx_array_t                 origins;
    ngx_list_part_t            *part, **next;
    ngx_table_elt_t            *all, *h, *e;
    ngx_http_request_t          r;
    ngx_http_chat_loc_conf_t    lcf;

    /* nginx answers 400 to a request line or header with a NUL byte */
    if (memchr(data, '\0', size) != NULL) {
        return 0;
    }

    pool = ngx_create_pool(1024, shim_log_get());

    /* every line in its own allocation, exactly as long as it is */
    buf = ngx_pnalloc(pool, size ? size : 1);
    memcpy(buf, data, size);
    p = buf;
    last = buf + size;

    memset(&r, 0, sizeof(r));
    memset(&lcf, 0, sizeof(lcf));

    /* the allowed origins */

    eol = ngx_strlchr(p, last, '\n');
    if (eol == NULL) {
        eol = last;
    }

    if (eol > p) {
        origins.elts = ngx_palloc(pool, 16 * sizeof(ngx_str_t));
        origins.nelts = 0;
        origins.size = sizeof(ngx_str_t);
        origins.nalloc = 16;
        origins.pool = pool;

        while (p < eol && origins.nelts < 16) {
            u_char  *sp = ngx_strlchr(p, eol, ' ');

            if (sp == NULL) {
                sp = eol;
            }

            if (sp > p) {
                o = (ngx_str_t *) origins.elts + origins.nelts++;
                o->len = sp - p;
                o->data = ngx_pnalloc(pool, o->len);
                memcpy(o->data, p, o->len);
            }

            p = sp + 1;
        }

        lcf.ws_origins = &origins;
    }

    p = eol < last ? eol + 1 : last;

    /* the headers, in parts of PART_SIZE like an ngx_list_t */

    all = ngx_palloc(pool, (size / 2 + 1) * sizeof(ngx_table_elt_t));
    nh = 0;

    while (p < last) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        n = eol - p;
        if (n && p[n - 1] == '\r') {
            n--;
        }

        colon = ngx_strlchr(p, p + n, ':');

        if (colon && colon > p) {
            e = &all[nh++];
            memset(e, 0, sizeof(*e));
            e->key.len = colon - p;
            e->key.data = ngx_pnalloc(pool, e->key.len);
            memcpy(e->key.data, p, e->key.len);

            colon++;
            while (colon < p + n && (*colon == ' ' || *colon == '\t')) {
                colon++;
            }

            e->value.len = p + n - colon;
            e->value.data = ngx_pnalloc(pool, e->value.len + 1);
            memcpy(e->value.data, colon, e->value.len);
            e->value.data[e->value.len] = '\0';
            e->hash = 1;
        }

        p = eol + 1;
    }

    r.headers_in.headers.size = sizeof(ngx_table_elt_t);
    r.headers_in.headers.nalloc = PART_SIZE;
    r.headers_in.headers.pool = pool;

    part = &r.headers_in.headers.part;
    part->elts = all;
    part->nelts = 0;
    part->next = NULL;
    next = NULL;

    for (i = 0; i < nh; i++) {
        if (part->nelts == PART_SIZE) {
            ngx_list_part_t  *np = ngx_palloc(pool, sizeof(ngx_list_part_t));

            np->elts = &all[i];
            np->nelts = 0;
            np->next = NULL;
            part->next = np;
            part = np;
        }
        part->nelts++;
    }
    (void) next;
    r.headers_in.headers.last = part;

    /* the handler's checks, each against the reference */

    static const char  *names[] = { "Upgrade", "Connection",
        "Sec-WebSocket-Version", "Sec-WebSocket-Key", "Origin", "upgrade" };

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        name.data = (u_char *) names[i];
        name.len = strlen(names[i]);
        FUZZ_CHECK(ngx_http_chat_header_in(&r, &name)
                   == ref_header(all, nh, names[i]));
    }

    h = ngx_http_chat_header_in(&r, &ngx_http_chat_hdr_connection);
    if (h) {
        FUZZ_CHECK(!!ngx_http_chat_ws_has_token(&h->value, "upgrade")
                   == ref_has_token(&h->value, "upgrade"));
    }

    h = ngx_http_chat_header_in(&r, &ngx_http_chat_hdr_key);
    key = h ? h->value : (ngx_str_t) ngx_null_string;

    /* the key alone too, exactly sized, so that ASan sees any overread */
    memset(accept, 0, sizeof(accept));
    rc = ngx_http_chat_ws_accept_key(&key, accept);
    FUZZ_CHECK((rc == NGX_OK) == ref_key_ok(&key));

    if (rc == NGX_OK) {
        ref_accept(&key, ref);
        FUZZ_CHECK(memcmp(accept, ref, 28) == 0);
    }

    h = ngx_http_chat_header_in(&r, &ngx_http_chat_hdr_origin);

    {
        int  want = 1;

        if (lcf.ws_origins && h) {
            want = 0;
            for (i = 0; i < origins.nelts; i++) {
                o = (ngx_str_t *) origins.elts + i;
                if (o->len == h->value.len) {
                    size_t  k;

                    for (k = 0; k < o->len; k++) {
                        if (ngx_tolower(o->data[k])
                            != ngx_tolower(h->value.data[k]))
                        {
                            break;
                        }
                    }
                    if (k == o->len) {
                        want = 1;
                    }
                }
            }
        }

        FUZZ_CHECK(!!ngx_http_chat_ws_origin_allowed(&r, &lcf) == want);
    }

    ngx_destroy_pool(pool);

    return 0;
}
