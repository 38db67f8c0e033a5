/*
 * ngx_http_chat_error_pages.c - nginx's own error pages, on the API's
 * locations, in the API's JSON: a header and a body filter, set up by
 * "chat_api on" alone (no error_page lines needed).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_api.h"
#include "ngx_http_chat_json.h"


static ngx_int_t ngx_http_chat_error_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_chat_error_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_chat_is_api_request(ngx_http_request_t *r);
static const char *ngx_http_chat_status_detail(ngx_uint_t status);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_chat_error_pages_init(ngx_conf_t *cf)
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
