/*
 * ngx_http_chat_json.c - JSON in and out for the chat API.
 *
 * Parsing is cJSON's (Debian libcjson).  Two checks are ours because cJSON
 * leaves them to the caller: it passes bytes through without validating
 * UTF-8, and it stores strings as C strings, so anything it decodes to a
 * NUL byte would silently cut a message short: a "\u0000" escape, a raw
 * NUL byte, and a "\u" escape without four hexadecimal digits (cJSON reads
 * those as code point 0); all are rejected before parsing.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_correlation.h"
#include "ngx_http_chat_api.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_render.h"


static void ngx_http_chat_free(void *data);
static int ngx_libc_cdecl ngx_http_chat_key_cmp(const void *a, const void *b);



ngx_str_t  ngx_http_chat_json_type = ngx_string("application/json");

/* the detail naming a duplicate key: the worker is single-threaded and
 * the detail is used before the next body is parsed */
static u_char     ngx_http_chat_dup_detail[sizeof("duplicate key \"\" in "
                                                  "JSON object") + 64];


ngx_int_t
ngx_http_chat_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_http_chat_error_body(r, status, detail);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    if (r->headers_out.status == 0 || !r->header_sent) {
        ngx_http_clear_content_length(r);
        ngx_http_clear_accept_ranges(r);
    }

    r->headers_out.status = status;
    r->headers_out.content_type = ngx_http_chat_json_type;
    r->headers_out.content_type_len = ngx_http_chat_json_type.len;
    r->headers_out.content_length_n = b->last - b->pos;

    if (status == NGX_HTTP_CHAT_UNPROCESSABLE) {
        ngx_str_set(&r->headers_out.status_line, "422 Unprocessable Entity");

    } else if (status == NGX_HTTP_CHAT_UPGRADE_REQUIRED) {
        ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");
    }

    if (status == NGX_HTTP_UNAUTHORIZED) {
        ngx_table_elt_t  *h;

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        ngx_str_set(&h->value, "Bearer realm=\"chat\"");
        r->headers_out.www_authenticate = h;
    }

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* a 503 that says when to come back (RFC 9110, 10.2.3) */

ngx_int_t
ngx_http_chat_send_unavailable(ngx_http_request_t *r, ngx_uint_t retry_after,
    const char *detail)
{
    u_char           *p;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);

    if (h && p) {
        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.data = p;
        h->value.len = ngx_sprintf(p, "%ui", retry_after) - p;
    }

    return ngx_http_chat_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE, detail);
}


/*
 * From an op's expire(): the request it was posted for is answered 503
 * now; the op goes on detached (late, if not NULL, runs at its end).
 */

void
ngx_http_chat_answer_expired(ngx_http_chat_op_t *op,
    ngx_http_chat_op_done_pt late)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = op->data;
    c = r->connection;

    ngx_http_chat_op_detach(op, late);

    ngx_http_chat_request_resume(r);

    rc = c->error ? NGX_HTTP_CLIENT_CLOSED_REQUEST
                  : ngx_http_chat_send_unavailable(r,
                                                   NGX_HTTP_CHAT_RETRY_DATABASE,
                                                   "database unavailable, "
                                                   "try again later");

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * The body {"detail": ..., "correlation_id": ...} of an error, and its
 * error.log line: info for a 4xx, error for a 5xx.
 */

ngx_buf_t *
ngx_http_chat_error_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail)
{
    ngx_buf_t    *b;
    ngx_str_t    *cid;
    ngx_uint_t    level;

    cid = ngx_http_chat_correlation_id(r);

    level = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? NGX_LOG_ERR
                                                       : NGX_LOG_INFO;

    ngx_log_error(level, r->connection->log, 0,
                  "chat api: %ui %V %V: %s, correlation_id=%V",
                  status, &r->method_name, &r->uri, detail, cid);

    b = ngx_create_temp_buf(r->pool,
                            ngx_http_chat_render_error_size(NULL, detail,
                                                            cid));
    if (b == NULL) {
        return NULL;
    }

    b->last = ngx_http_chat_render_error(b->last, NULL, detail, cid);

    return b;
}


ngx_int_t
ngx_http_chat_send_json(ngx_http_request_t *r, ngx_uint_t status,
    char *json, size_t len)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_pool_cleanup_t  *cln;

    /* the JSON was built off the event loop with malloc(): hand it to
     * the output chain as is and free it with the request */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        free(json);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_chat_free;
    cln->data = json;

    r->headers_out.status = status;
    r->headers_out.content_type = ngx_http_chat_json_type;
    r->headers_out.content_type_len = ngx_http_chat_json_type.len;
    r->headers_out.content_length_n = len;

    if (r->method == NGX_HTTP_HEAD || len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = (u_char *) json;
    b->last = (u_char *) json + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static void
ngx_http_chat_free(void *data)
{
    free(data);
}


ngx_int_t
ngx_http_chat_is_json_content_type(ngx_http_request_t *r)
{
    u_char     *p, *last;
    ngx_str_t  *ct;

    if (r->headers_in.content_type == NULL) {
        return 0;
    }

    ct = &r->headers_in.content_type->value;
    p = ct->data;
    last = p + ct->len;

    if (ct->len < ngx_http_chat_json_type.len
        || ngx_strncasecmp(p, ngx_http_chat_json_type.data,
                           ngx_http_chat_json_type.len) != 0)
    {
        return 0;
    }

    p += ngx_http_chat_json_type.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return (p == last || *p == ';') ? 1 : 0;
}


/*
 * The body is small (bounded by the handler before reading).  It may
 * still sit in a temporary file when client_body_buffer_size is smaller
 * than the limit; reading a few KB from a file just written is what
 * nginx's own modules do in that case.
 */

ngx_int_t
ngx_http_chat_body(ngx_http_request_t *r, ngx_str_t *body)
{
    size_t        len;
    u_char       *p;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_ERROR;
            }

            p += n;
            continue;
        }

        if (b->last > b->pos) {           /* an empty buf may have no pos */
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    *p = '\0';
    body->len = len;

    return NGX_OK;
}


cJSON *
ngx_http_chat_parse_object(ngx_str_t *body, const char **detail)
{
    u_char      *p, c;
    size_t       dlen, i;
    cJSON       *json;
    const char  *end, *key;

    if (body->len == 0) {
        *detail = "request body is empty; expected a JSON object";
        return NULL;
    }

    if (!ngx_http_chat_utf8_valid(body->data, body->len)) {
        *detail = "request body is not valid UTF-8";
        return NULL;
    }

    *detail = ngx_http_chat_json_nul_check(body->data, body->len);
    if (*detail) {
        return NULL;
    }

    end = NULL;
    json = cJSON_ParseWithLengthOpts((const char *) body->data, body->len,
                                     &end, 0);
    if (json == NULL) {
        *detail = "request body is not valid JSON";
        return NULL;
    }

    /* nothing but whitespace may follow the value */

    while (end && end < (const char *) body->data + body->len
           && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
    {
        end++;
    }

    if (end != (const char *) body->data + body->len) {
        cJSON_Delete(json);
        *detail = "request body has trailing data after the JSON value";
        return NULL;
    }

    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        *detail = "request body must be a JSON object";
        return NULL;
    }

    /*
     * cJSON keeps every member of an object, and its lookups return the
     * first of a name: {"name":"a","name":"b"} would mean "a" here and
     * "b" to most other parsers.  Neither is guessed.
     */

    key = ngx_http_chat_json_duplicate_key(json);

    if (key) {
        /* the name goes to the client and to the error log: at most 64
         * bytes, cut on a character boundary, with no control character,
         * quote or backslash */

        dlen = ngx_strlen(key);
        if (dlen > 64) {
            dlen = 64;
            while (dlen && ((u_char) key[dlen] & 0xc0) == 0x80) {
                dlen--;
            }
        }

        p = ngx_cpymem(ngx_http_chat_dup_detail, "duplicate key \"",
                       sizeof("duplicate key \"") - 1);

        for (i = 0; i < dlen; i++) {
            c = (u_char) key[i];
            *p++ = (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
                   ? '?' : c;
        }

        (void) ngx_cpystrn(p, (u_char *) "\" in JSON object",
                           sizeof("\" in JSON object"));

        cJSON_Delete(json);
        *detail = (const char *) ngx_http_chat_dup_detail;
        return NULL;
    }

    return json;
}


/*
 * The first name that appears twice in one object, at any depth, or NULL.
 * A small object is compared pair by pair; a large one (a hostile body may
 * hold thousands of members) through a sorted copy of its names.
 */

const char *
ngx_http_chat_json_duplicate_key(cJSON *json)
{
    char        **names;
    cJSON        *a, *b;
    ngx_uint_t    n, i;
    const char   *dup;

    if (!(cJSON_IsObject(json) || cJSON_IsArray(json))) {
        return NULL;
    }

    n = 0;

    for (a = json->child; a; a = a->next) {
        dup = ngx_http_chat_json_duplicate_key(a);
        if (dup) {
            return dup;
        }

        n++;
    }

    if (!cJSON_IsObject(json) || n < 2) {
        return NULL;
    }

    names = (n > 16) ? ngx_alloc(n * sizeof(char *), ngx_cycle->log) : NULL;

    if (names == NULL) {
        for (a = json->child; a; a = a->next) {
            for (b = a->next; b; b = b->next) {
                if (ngx_strcmp(a->string, b->string) == 0) {
                    return a->string;
                }
            }
        }

        return NULL;
    }

    i = 0;
    for (a = json->child; a; a = a->next) {
        names[i++] = a->string;
    }

    ngx_qsort(names, n, sizeof(char *), ngx_http_chat_key_cmp);

    dup = NULL;

    for (i = 1; i < n; i++) {
        if (ngx_strcmp(names[i - 1], names[i]) == 0) {
            dup = names[i];
            break;
        }
    }

    ngx_free(names);

    return dup;
}


static int ngx_libc_cdecl
ngx_http_chat_key_cmp(const void *a, const void *b)
{
    return ngx_strcmp(*(char **) a, *(char **) b);
}


ngx_int_t
ngx_http_chat_utf8_valid(const u_char *p, size_t len)
{
    u_char        c;
    uint32_t      cp, min;
    ngx_uint_t    i, n;
    const u_char *last;

    last = p + len;

    while (p < last) {
        c = *p++;

        if (c < 0x80) {
            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            n = 1; cp = c & 0x1f; min = 0x80;

        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2; cp = c & 0x0f; min = 0x800;

        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3; cp = c & 0x07; min = 0x10000;

        } else {
            return 0;
        }

        if ((size_t) (last - p) < n) {
            return 0;
        }

        for (i = 0; i < n; i++) {
            if ((p[i] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (p[i] & 0x3f);
        }

        p += n;

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }
    }

    return 1;
}


/*
 * Finds what cJSON would decode to a NUL byte: a raw NUL, a \u0000
 * escape, or a \u escape whose next four bytes are not all hexadecimal
 * digits (cJSON's parse_hex4() returns 0 for those).  Escaped backslashes
 * are stepped over.  Returns the detail for the client, or NULL.
 */

const char *
ngx_http_chat_json_nul_check(const u_char *p, size_t len)
{
    ngx_uint_t     i;
    const u_char  *last;

    last = p + len;

    while (p < last) {
        if (*p == '\0') {
            return "request body must not contain NUL bytes";
        }

        if (*p++ != '\\' || p == last) {
            continue;
        }

        if (*p == 'u') {
            if (last - p < 5) {
                return "request body is not valid JSON";
            }

            for (i = 1; i <= 4; i++) {
                if (!((p[i] >= '0' && p[i] <= '9')
                      || ((p[i] | 0x20) >= 'a' && (p[i] | 0x20) <= 'f')))
                {
                    return "request body is not valid JSON";
                }
            }

            if (p[1] == '0' && p[2] == '0' && p[3] == '0' && p[4] == '0') {
                return "strings must not contain \\u0000";
            }
        }

        p++;   /* the escaped character, whatever it is */
    }

    return NULL;
}


/*
 * A required, non-blank string field of at most max bytes, the rule of a
 * POST body and of a WebSocket message alike.  Unknown fields are
 * ignored, as most JSON APIs do.  The value points into the cJSON string,
 * trimmed of surrounding white space when trim is set (a group name;
 * message content is kept as sent).  NGX_DECLINED with the reason in
 * detail (a 422 for HTTP).
 */

ngx_int_t
ngx_http_chat_text_field(cJSON *json, const char *name, size_t max,
    ngx_uint_t trim, ngx_str_t *value, u_char *detail, size_t size)
{
    u_char  *s, *e, *p;
    cJSON   *v;

    v = cJSON_GetObjectItemCaseSensitive(json, name);

    if (v == NULL) {
        ngx_snprintf(detail, size - 1, "field \"%s\" is required%Z", name);
        return NGX_DECLINED;
    }

    if (!cJSON_IsString(v)) {
        ngx_snprintf(detail, size - 1, "field \"%s\" must be a string%Z",
                     name);
        return NGX_DECLINED;
    }

    s = (u_char *) v->valuestring;
    e = s + ngx_strlen(s);

    if (trim) {
        while (s < e && ngx_http_chat_is_blank(*s)) {
            s++;
        }

        while (e > s && ngx_http_chat_is_blank(e[-1])) {
            e--;
        }
    }

    for (p = s; p < e && ngx_http_chat_is_blank(*p); p++) {
        /* void */
    }

    if (p == e) {
        ngx_snprintf(detail, size - 1, "field \"%s\" must not be empty%Z",
                     name);
        return NGX_DECLINED;
    }

    if ((size_t) (e - s) > max) {
        ngx_snprintf(detail, size - 1,
                     "field \"%s\" is longer than %uz bytes%Z", name, max);
        return NGX_DECLINED;
    }

    value->data = s;
    value->len = e - s;

    return NGX_OK;
}


ngx_uint_t
ngx_http_chat_op_status(ngx_http_chat_op_t *op, ngx_log_t *log,
    const char **detail)
{
    switch (op->result) {

    case NGX_HTTP_CHAT_RES_OK:
        *detail = NULL;
        return NGX_HTTP_OK;

    case NGX_HTTP_CHAT_RES_NOT_FOUND:
        *detail = (op->kind == NGX_HTTP_CHAT_OP_DELETE_MESSAGE)
                  ? "message not found" : "group not found";
        return NGX_HTTP_NOT_FOUND;

    case NGX_HTTP_CHAT_RES_FORBIDDEN:
        *detail = "only the author may delete a message";
        return NGX_HTTP_FORBIDDEN;

    case NGX_HTTP_CHAT_RES_BAD_CURSOR:
        *detail = "before does not name a message of this group";
        return NGX_HTTP_BAD_REQUEST;

    case NGX_HTTP_CHAT_RES_UNAVAILABLE:
        ngx_log_error(NGX_LOG_ERR, log, 0, "chat storage: %s", op->error);
        *detail = "database unavailable, try again later";
        return NGX_HTTP_SERVICE_UNAVAILABLE;

    default:
        ngx_log_error(NGX_LOG_ERR, log, 0, "chat storage: %s", op->error);
        *detail = "internal error";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
}


ngx_int_t
ngx_http_chat_oid_parse(const u_char *s, size_t len, bson_oid_t *oid)
{
    char  buf[NGX_HTTP_CHAT_OID_LEN + 1];

    if (len != NGX_HTTP_CHAT_OID_LEN
        || !bson_oid_is_valid((const char *) s, NGX_HTTP_CHAT_OID_LEN))
    {
        return NGX_ERROR;
    }

    ngx_memcpy(buf, s, NGX_HTTP_CHAT_OID_LEN);
    buf[NGX_HTTP_CHAT_OID_LEN] = '\0';
    bson_oid_init_from_string(oid, buf);

    return NGX_OK;
}
