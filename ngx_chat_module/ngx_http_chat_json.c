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


static ngx_buf_t *ngx_http_chat_error_body(ngx_http_request_t *r,
    ngx_uint_t status, const char *detail);
static ngx_int_t ngx_http_chat_error_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_chat_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_chat_is_api_request(ngx_http_request_t *r);
static const char *ngx_http_chat_status_detail(ngx_uint_t status);
static void ngx_http_chat_free(void *data);
static int ngx_libc_cdecl ngx_http_chat_key_cmp(const void *a, const void *b);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static ngx_str_t  ngx_http_chat_json_type = ngx_string("application/json");

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


/*
 * The body {"detail": ..., "correlation_id": ...} of an error, and its
 * error.log line: info for a 4xx, error for a 5xx.
 */

static ngx_buf_t *
ngx_http_chat_error_body(ngx_http_request_t *r, ngx_uint_t status,
    const char *detail)
{
    size_t        len, dlen;
    u_char       *p;
    ngx_buf_t    *b;
    ngx_str_t    *cid;
    ngx_uint_t    level;

    cid = ngx_http_chat_correlation_id(r);
    dlen = ngx_strlen(detail);

    level = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? NGX_LOG_ERR
                                                       : NGX_LOG_INFO;

    ngx_log_error(level, r->connection->log, 0,
                  "chat api: %ui %V %V: %s, correlation_id=%V",
                  status, &r->method_name, &r->uri, detail, cid);

    len = sizeof("{\"detail\":\"\",\"correlation_id\":\"\"}") - 1
          + dlen + ngx_escape_json(NULL, (u_char *) detail, dlen)
          + cid->len;

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NULL;
    }

    p = ngx_cpymem(b->last, "{\"detail\":\"", sizeof("{\"detail\":\"") - 1);
    p = (u_char *) ngx_escape_json(p, (u_char *) detail, dlen);
    p = ngx_cpymem(p, "\",\"correlation_id\":\"",
                   sizeof("\",\"correlation_id\":\"") - 1);
    p = ngx_cpymem(p, cid->data, cid->len);    /* safe charset only */
    p = ngx_cpymem(p, "\"}", 2);
    b->last = p;

    return b;
}


ngx_int_t
ngx_http_chat_json_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_chat_error_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_chat_error_body_filter;

    return NGX_OK;
}


/*
 * nginx's own error pages are HTML: ngx_http_special_response_handler()
 * sets r->err_status and "text/html", then sends a page of its static
 * ones.  On the API they become the API's JSON, whatever produced them:
 * checks nginx makes before a location is chosen (a bad URI, TRACE, a
 * header or URI too large, an unknown Transfer-Encoding), a body above
 * client_max_body_size, or a status a handler returned.  The header is
 * rewritten here; the page is swallowed by the body filter, which sends
 * the JSON instead.
 */

static ngx_int_t
ngx_http_chat_error_header_filter(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_buf_t            *b;
    ngx_str_t             allow, endpoint;
    ngx_uint_t            status;
    ngx_table_elt_t      *h;
    const char           *detail;
    ngx_http_chat_ctx_t  *ctx;

    status = r->err_status;

    if (r != r->main || status < NGX_HTTP_BAD_REQUEST
        || r->headers_out.content_type.len != sizeof("text/html") - 1
        || ngx_strncmp(r->headers_out.content_type.data, "text/html",
                       sizeof("text/html") - 1) != 0
        || !ngx_http_chat_is_api_request(r))
    {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_chat_create_ctx(r);
    if (ctx == NULL || ctx->error_body) {
        return ngx_http_next_header_filter(r);
    }

    detail = ngx_http_chat_status_detail(status);

    b = ngx_http_chat_error_body(r, status, detail);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last_buf = 1;
    b->last_in_chain = 1;
    ctx->error_body = b;

    r->headers_out.content_type = ngx_http_chat_json_type;
    r->headers_out.content_type_len = ngx_http_chat_json_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = b->last - b->pos;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    rc = ngx_http_chat_api_route_names(r, &endpoint, &allow);

    if (ctx->endpoint.len == 0) {
        ctx->endpoint = endpoint;
    }

    if (status == NGX_HTTP_NOT_ALLOWED && rc == NGX_OK) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Allow");
        h->value = allow;
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_chat_error_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t           out, *cl;
    ngx_http_chat_ctx_t  *ctx;

    ctx = (r == r->main) ? ngx_http_get_module_ctx(r, ngx_http_chat_module)
                         : NULL;

    if (ctx == NULL || ctx->error_body == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    /* the HTML page (and MSIE padding) is consumed, never sent */

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->error_sent) {
        return ngx_http_next_body_filter(r, NULL);    /* a flush, if any */
    }

    ctx->error_sent = 1;

    out.buf = ctx->error_body;
    out.next = NULL;

    return ngx_http_next_body_filter(r, &out);
}


/*
 * An API request: its location has chat_api on; or nginx refused it
 * before choosing a location (the configuration is still the server's)
 * on a server with a chat_api location, and its URI, as far as it was
 * read, starts with /api/chat/.
 */

static ngx_int_t
ngx_http_chat_is_api_request(ngx_http_request_t *r)
{
    u_char                    *p, *last;
    ngx_http_chat_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (lcf->api) {
        return 1;
    }

    if (!lcf->api_server) {
        return 0;
    }

    if (r->uri.len) {
        p = r->uri.data;
        last = p + r->uri.len;

    } else if (r->uri_start) {
        /* a URI nginx could not parse (%00) or that was too long */
        p = r->uri_start;
        last = r->uri_end ? r->uri_end
               : (r->header_in ? r->header_in->last : p);

    } else {
        return 0;
    }

    return ((size_t) (last - p) >= sizeof("/api/chat/") - 1
            && ngx_strncmp(p, "/api/chat/", sizeof("/api/chat/") - 1) == 0)
           ? 1 : 0;
}


static const char *
ngx_http_chat_status_detail(ngx_uint_t status)
{
    switch (status) {

    case NGX_HTTP_BAD_REQUEST:
        return "bad request: malformed request line, URI or header, "
               "or a header too large";

    case NGX_HTTP_UNAUTHORIZED:
        return "unauthorized";

    case NGX_HTTP_FORBIDDEN:
        return "forbidden";

    case NGX_HTTP_NOT_FOUND:
        return "Not Found";

    case NGX_HTTP_NOT_ALLOWED:
        return "Method Not Allowed";

    case NGX_HTTP_REQUEST_TIME_OUT:
        return "request timed out";

    case NGX_HTTP_LENGTH_REQUIRED:
        return "Content-Length required";

    case NGX_HTTP_REQUEST_ENTITY_TOO_LARGE:
        return "request body is larger than client_max_body_size";

    case NGX_HTTP_REQUEST_URI_TOO_LARGE:
        return "request URI is too long";

    case NGX_HTTP_UNSUPPORTED_MEDIA_TYPE:
        return "unsupported media type";

    case NGX_HTTP_RANGE_NOT_SATISFIABLE:
        return "range not satisfiable";

    case NGX_HTTP_TOO_MANY_REQUESTS:
        return "too many requests";

    case NGX_HTTP_NOT_IMPLEMENTED:
        return "not implemented: unknown Transfer-Encoding";

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        return "service unavailable, try again later";

    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_GATEWAY_TIME_OUT:
    case NGX_HTTP_INTERNAL_SERVER_ERROR:
        return "internal error";

    default:
        return (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? "internal error"
                                                          : "request refused";
    }
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
