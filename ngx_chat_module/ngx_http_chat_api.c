/*
 * ngx_http_chat_api.c - the chat REST API.
 *
 *   POST   /api/chat/groups                                 create a group
 *   GET    /api/chat/groups                                 list groups
 *   GET    /api/chat/groups/{group_id}                      one group
 *   POST   /api/chat/groups/{group_id}/messages             post a message
 *   GET    /api/chat/groups/{group_id}/messages             list messages
 *          (?after=SEQ: the group's events after SEQ, oldest first)
 *   DELETE /api/chat/groups/{group_id}/messages/{msg_id}    soft delete
 *
 * Each request is checked in this order, each check with its status:
 * route (404), method (405 + Allow), bearer token (401), ids and query
 * arguments (400), Content-Type (415), body size (413), JSON syntax (400),
 * fields (422).  Only a request that passes all of them reaches storage,
 * so a rejected request writes nothing.  The database work runs on the
 * thread pool (ngx_http_chat_storage.c); the request waits for it with its
 * reference count and "blocked" raised, so a client that goes away cannot
 * free it under the task.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <bson/bson.h>
#include <cjson/cJSON.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_api.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_jwt.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_websocket.h"
#include "ngx_http_chat_broadcast.h"
#include "ngx_http_chat_page_cache.h"


typedef enum {
    NGX_HTTP_CHAT_ROUTE_NONE = 0,
    NGX_HTTP_CHAT_ROUTE_GROUPS,
    NGX_HTTP_CHAT_ROUTE_GROUP,
    NGX_HTTP_CHAT_ROUTE_MESSAGES,
    NGX_HTTP_CHAT_ROUTE_MESSAGE,
    NGX_HTTP_CHAT_ROUTE_WS
} ngx_http_chat_route_e;


typedef struct {
    ngx_http_chat_route_e      route;
    ngx_str_t                  group_id;
    ngx_str_t                  message_id;
} ngx_http_chat_route_t;


struct ngx_http_chat_api_ctx_s {
    ngx_http_chat_route_t      route;
    ngx_http_chat_jwt_claims_t claims;
    ngx_http_chat_op_t        *op;
    ngx_uint_t                 created;       /* 201 on success */
};


static ngx_int_t ngx_http_chat_route(ngx_http_request_t *r,
    ngx_http_chat_route_t *rt);
static ngx_int_t ngx_http_chat_method_allowed(ngx_http_request_t *r,
    ngx_http_chat_route_t *rt, ngx_str_t *endpoint, ngx_str_t *allow);
static ngx_int_t ngx_http_chat_send_405(ngx_http_request_t *r,
    ngx_str_t *allow);
static ngx_int_t ngx_http_chat_authenticate(ngx_http_request_t *r,
    ngx_http_chat_api_ctx_t *actx, const char **detail);
static ngx_int_t ngx_http_chat_read_json_body(ngx_http_request_t *r,
    ngx_http_chat_api_ctx_t *actx);
static void ngx_http_chat_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_chat_body_to_op(ngx_http_request_t *r,
    ngx_http_chat_api_ctx_t *actx, cJSON *json, u_char *detail);
static ngx_int_t ngx_http_chat_start(ngx_http_request_t *r,
    ngx_http_chat_api_ctx_t *actx, ngx_uint_t in_body_handler);
static void ngx_http_chat_op_done(ngx_http_chat_op_t *op);
static void ngx_http_chat_op_expired(ngx_http_chat_op_t *op);
static void ngx_http_chat_op_done_late(ngx_http_chat_op_t *op);
static void ngx_http_chat_publish(ngx_http_chat_op_t *op);
static ngx_int_t ngx_http_chat_respond(ngx_http_request_t *r,
    ngx_http_chat_api_ctx_t *actx, ngx_http_chat_op_t *op);
static ngx_int_t ngx_http_chat_cache_header(ngx_http_request_t *r,
    const char *value);



static ngx_str_t  ngx_http_chat_prefix = ngx_string("/api/chat/");
static ngx_str_t  ngx_http_chat_cache_control = ngx_string("Cache-Control");


ngx_int_t
ngx_http_chat_api_handler(ngx_http_request_t *r)
{
    char                      *json;
    size_t                     len;
    ngx_table_elt_t           *h;
    int64_t                    limit, page;
    ngx_int_t                  rc;
    ngx_str_t                  allow, arg;
    const char                *detail;
    ngx_http_chat_op_t        *op;
    ngx_http_chat_ctx_t       *ctx;
    ngx_http_chat_api_ctx_t   *actx;
    ngx_http_chat_loc_conf_t  *lcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_chat_create_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    actx = ngx_pcalloc(r->pool, sizeof(ngx_http_chat_api_ctx_t));
    if (actx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->api = actx;
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (ngx_http_chat_route(r, &actx->route) != NGX_OK) {
        ngx_str_set(&ctx->endpoint, "/api/chat/{unknown}");
        return ngx_http_chat_send_error(r, NGX_HTTP_NOT_FOUND, "Not Found");
    }

    if (ngx_http_chat_method_allowed(r, &actx->route, &ctx->endpoint, &allow)
        != NGX_OK)
    {
        return ngx_http_chat_send_405(r, &allow);
    }

    if (actx->route.route == NGX_HTTP_CHAT_ROUTE_WS) {
        return ngx_http_chat_ws_handler(r, &actx->route.group_id);
    }

    if (ngx_http_chat_authenticate(r, actx, &detail) != NGX_OK) {
        (void) ngx_http_discard_request_body(r);
        return ngx_http_chat_send_error(r, NGX_HTTP_UNAUTHORIZED, detail);
    }

    op = ngx_http_chat_op_create(r->pool);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    actx->op = op;
    op->user_id = (const char *) actx->claims.sub.data;

    if (actx->route.group_id.len
        && ngx_http_chat_oid_parse(actx->route.group_id.data,
                                   actx->route.group_id.len, &op->group_id)
           != NGX_OK)
    {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "group_id is not a valid ObjectId "
                                        "(24 hexadecimal characters)");
    }

    if (actx->route.message_id.len
        && ngx_http_chat_oid_parse(actx->route.message_id.data,
                                   actx->route.message_id.len,
                                   &op->message_id)
           != NGX_OK)
    {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "message_id is not a valid ObjectId "
                                        "(24 hexadecimal characters)");
    }

    if (r->method == NGX_HTTP_POST) {
        op->kind = (actx->route.route == NGX_HTTP_CHAT_ROUTE_GROUPS)
                   ? NGX_HTTP_CHAT_OP_CREATE_GROUP
                   : NGX_HTTP_CHAT_OP_CREATE_MESSAGE;
        actx->created = 1;

        return ngx_http_chat_read_json_body(r, actx);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    switch (actx->route.route) {

    case NGX_HTTP_CHAT_ROUTE_GROUPS:
    case NGX_HTTP_CHAT_ROUTE_MESSAGES:

        if (ngx_http_chat_query_int(r, "limit", 1, (int64_t) lcf->page_max,
                                    (int64_t) lcf->page_size, &limit, &rc)
            != NGX_OK
            || ngx_http_chat_query_int(r, "page", 1, 100000, 1, &page, &rc)
               != NGX_OK)
        {
            return rc;
        }

        op->limit = limit;
        op->page = page;
        op->skip = (page - 1) * limit;

        if (actx->route.route == NGX_HTTP_CHAT_ROUTE_GROUPS) {
            op->kind = NGX_HTTP_CHAT_OP_LIST_GROUPS;
            break;
        }

        op->kind = NGX_HTTP_CHAT_OP_LIST_MESSAGES;

        rc = ngx_http_chat_arg(r, "before", &arg);

        if (rc == NGX_BUSY) {
            return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                            "query parameter \"before\" is "
                                            "given more than once");
        }

        if (rc == NGX_OK) {
            if (ngx_http_chat_oid_parse(arg.data, arg.len, &op->before_id)
                != NGX_OK)
            {
                return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                "before is not a valid "
                                                "message id (ObjectId)");
            }

            op->has_before = 1;
        }

        /* events after a seq, oldest first: a page of a walk forward */

        if (ngx_http_chat_query_int(r, "after", 0, NGX_HTTP_CHAT_MAX_SEQ, -1,
                                    &op->after, &rc)
            != NGX_OK)
        {
            return rc;
        }

        if (op->after >= 0) {
            if (op->has_before
                || ngx_http_chat_arg(r, "page", &arg) != NGX_DECLINED)
            {
                return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                                "after cannot be combined "
                                                "with before or page");
            }

            op->has_after = 1;
        }

        break;

    case NGX_HTTP_CHAT_ROUTE_GROUP:
        op->kind = NGX_HTTP_CHAT_OP_GET_GROUP;
        break;

    default: /* NGX_HTTP_CHAT_ROUTE_MESSAGE, DELETE */
        op->kind = NGX_HTTP_CHAT_OP_DELETE_MESSAGE;
        break;
    }

    /* a group's newest page: from the page cache if it has it (a client's
     * "Cache-Control: no-cache" reads the database, and refills it) */

    if (op->kind == NGX_HTTP_CHAT_OP_LIST_MESSAGES && !op->has_before
        && !op->has_after && op->skip == 0)
    {
        h = ngx_http_chat_header_in(r, &ngx_http_chat_cache_control);

        if (ngx_http_chat_page_cache_get(&op->group_id, op->limit,
                                         h && ngx_strlcasestrn(h->value.data,
                                                   h->value.data + h->value.len,
                                                   (u_char *) "no-cache", 8 - 1)
                                              != NULL,
                                         &json, &len, &op->cache_ticket,
                                         &op->cached_through)
            == NGX_OK)
        {
            if (ngx_http_chat_cache_header(r, "hit") != NGX_OK) {
                free(json);
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_http_chat_send_json(r, NGX_HTTP_OK, json, len);
        }

        op->revalidate = (op->cached_through >= 0);
    }

    return ngx_http_chat_start(r, actx, 0);
}


/* splits r->uri (already decoded and normalized by nginx) into a route */

static ngx_int_t
ngx_http_chat_route(ngx_http_request_t *r, ngx_http_chat_route_t *rt)
{
    u_char      *p, *last, *slash;
    ngx_str_t    seg[5];
    ngx_uint_t   n;

    ngx_memzero(rt, sizeof(ngx_http_chat_route_t));

    if (r->uri.len <= ngx_http_chat_prefix.len
        || ngx_strncmp(r->uri.data, ngx_http_chat_prefix.data,
                       ngx_http_chat_prefix.len) != 0)
    {
        return NGX_DECLINED;
    }

    p = r->uri.data + ngx_http_chat_prefix.len;
    last = r->uri.data + r->uri.len;

    if (last[-1] == '/') {
        last--;                          /* one trailing slash is fine */
    }

    for (n = 0; p < last; n++) {
        if (n == 5) {
            return NGX_DECLINED;
        }

        slash = ngx_strlchr(p, last, '/');
        if (slash == NULL) {
            slash = last;
        }

        if (slash == p) {
            return NGX_DECLINED;         /* empty segment */
        }

        seg[n].data = p;
        seg[n].len = slash - p;
        p = slash + 1;
    }

#define seg_is(i, s)                                                          \
    (seg[i].len == sizeof(s) - 1 && ngx_strncmp(seg[i].data, s,               \
                                                sizeof(s) - 1) == 0)

    if (n == 2 && seg_is(0, "ws")) {
        rt->route = NGX_HTTP_CHAT_ROUTE_WS;
        rt->group_id = seg[1];
        return NGX_OK;
    }

    if (n == 0 || !seg_is(0, "groups")) {
        return NGX_DECLINED;
    }

    switch (n) {

    case 1:
        rt->route = NGX_HTTP_CHAT_ROUTE_GROUPS;
        return NGX_OK;

    case 2:
        rt->route = NGX_HTTP_CHAT_ROUTE_GROUP;
        rt->group_id = seg[1];
        return NGX_OK;

    case 3:
        if (!seg_is(2, "messages")) {
            return NGX_DECLINED;
        }

        rt->route = NGX_HTTP_CHAT_ROUTE_MESSAGES;
        rt->group_id = seg[1];
        return NGX_OK;

    case 4:
        if (!seg_is(2, "messages")) {
            return NGX_DECLINED;
        }

        rt->route = NGX_HTTP_CHAT_ROUTE_MESSAGE;
        rt->group_id = seg[1];
        rt->message_id = seg[3];
        return NGX_OK;
    }

#undef seg_is

    return NGX_DECLINED;
}


/*
 * Checks the method against the route, and names the endpoint for the
 * metrics either way: the route's template, so that ids never multiply
 * endpoint rows.  The method is not part of it: the log phase prefixes
 * every endpoint with the request's own method (ngx_http_chat_metrics.c),
 * so a HEAD is "HEAD /api/chat/groups" and a refused PUT is
 * "PUT /api/chat/groups", each a row of its own.
 */

static ngx_int_t
ngx_http_chat_method_allowed(ngx_http_request_t *r, ngx_http_chat_route_t *rt,
    ngx_str_t *endpoint, ngx_str_t *allow)
{
    ngx_uint_t  allowed;

    switch (rt->route) {

    case NGX_HTTP_CHAT_ROUTE_GROUPS:
        ngx_str_set(endpoint, "/api/chat/groups");
        ngx_str_set(allow, "GET, HEAD, POST");
        allowed = NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST;
        break;

    case NGX_HTTP_CHAT_ROUTE_GROUP:
        ngx_str_set(endpoint, "/api/chat/groups/{group_id}");
        ngx_str_set(allow, "GET, HEAD");
        allowed = NGX_HTTP_GET|NGX_HTTP_HEAD;
        break;

    case NGX_HTTP_CHAT_ROUTE_MESSAGES:
        ngx_str_set(endpoint, "/api/chat/groups/{group_id}/messages");
        ngx_str_set(allow, "GET, HEAD, POST");
        allowed = NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST;
        break;

    case NGX_HTTP_CHAT_ROUTE_MESSAGE:
        ngx_str_set(endpoint,
                    "/api/chat/groups/{group_id}/messages/{message_id}");
        ngx_str_set(allow, "DELETE");
        allowed = NGX_HTTP_DELETE;
        break;

    default: /* NGX_HTTP_CHAT_ROUTE_WS */
        ngx_str_set(endpoint, "/api/chat/ws/{group_id}");
        ngx_str_set(allow, "GET");
        allowed = NGX_HTTP_GET;
        break;
    }

    return (r->method & allowed) ? NGX_OK : NGX_DECLINED;
}


/*
 * For a response nginx itself makes on the API (ngx_http_chat_json.c):
 * the endpoint name of r->uri's route for the metrics, and the methods
 * for an Allow header; NGX_DECLINED (endpoint "{unknown}") if no route.
 */

ngx_int_t
ngx_http_chat_api_route_names(ngx_http_request_t *r, ngx_str_t *endpoint,
    ngx_str_t *allow)
{
    ngx_http_chat_route_t  rt;

    if (r->uri.len == 0 || ngx_http_chat_route(r, &rt) != NGX_OK) {
        ngx_str_set(endpoint, "/api/chat/{unknown}");
        return NGX_DECLINED;
    }

    (void) ngx_http_chat_method_allowed(r, &rt, endpoint, allow);

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_send_405(ngx_http_request_t *r, ngx_str_t *allow)
{
    ngx_table_elt_t  *h;

    (void) ngx_http_discard_request_body(r);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value = *allow;

    return ngx_http_chat_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                    "Method Not Allowed");
}


static ngx_int_t
ngx_http_chat_authenticate(ngx_http_request_t *r,
    ngx_http_chat_api_ctx_t *actx, const char **detail)
{
    /* verified once: $chat_user may have done it already */
    return ngx_http_chat_jwt_user(r, 0, &actx->claims, detail);
}


/* the body limit follows the field limits: every byte escaped (\uXXXX)
 * plus room for the rest of a small object */

static size_t
ngx_http_chat_body_limit(ngx_http_chat_loc_conf_t *lcf)
{
    return ngx_max(lcf->max_content, lcf->max_name) * 6 + 1024;
}


static ngx_int_t
ngx_http_chat_read_json_body(ngx_http_request_t *r,
    ngx_http_chat_api_ctx_t *actx)
{
    u_char                     detail[96];
    ngx_int_t                  rc;
    ngx_http_chat_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (!ngx_http_chat_is_json_content_type(r)) {
        (void) ngx_http_discard_request_body(r);
        return ngx_http_chat_send_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                        "Content-Type must be "
                                        "application/json");
    }

    if (r->headers_in.content_length_n > (off_t) ngx_http_chat_body_limit(lcf))
    {
        (void) ngx_http_discard_request_body(r);
        r->keepalive = 0;
        ngx_snprintf(detail, sizeof(detail) - 1,
                     "request body is larger than %uz bytes%Z",
                     ngx_http_chat_body_limit(lcf));
        return ngx_http_chat_send_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                        (const char *) detail);
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_chat_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        r->keepalive = 0;
        return ngx_http_chat_send_error(r, rc, (rc == 413)
                                        ? "request body is too large"
                                        : "cannot read the request body");
    }

    return NGX_DONE;
}


static void
ngx_http_chat_body_handler(ngx_http_request_t *r)
{
    u_char                     detail[96];
    cJSON                     *json;
    ngx_int_t                  rc;
    ngx_str_t                  body;
    const char                *err;
    ngx_http_chat_ctx_t       *ctx;
    ngx_http_chat_api_ctx_t   *actx;
    ngx_http_chat_loc_conf_t  *lcf;

    ctx = ngx_http_chat_get_ctx(r);
    actx = ctx->api;
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (ngx_http_chat_body(r, &body) != NGX_OK) {
        ngx_http_finalize_request(r, ngx_http_chat_send_error(r,
                                  NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "cannot read the request body"));
        return;
    }

    if (body.len > ngx_http_chat_body_limit(lcf)) {
        ngx_snprintf(detail, sizeof(detail) - 1,
                     "request body is larger than %uz bytes%Z",
                     ngx_http_chat_body_limit(lcf));
        ngx_http_finalize_request(r, ngx_http_chat_send_error(r,
                                  NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  (const char *) detail));
        return;
    }

    json = ngx_http_chat_parse_object(&body, &err);
    if (json == NULL) {
        ngx_http_finalize_request(r, ngx_http_chat_send_error(r,
                                  NGX_HTTP_BAD_REQUEST, err));
        return;
    }

    rc = ngx_http_chat_body_to_op(r, actx, json, detail);
    cJSON_Delete(json);

    if (rc == NGX_DECLINED) {
        ngx_http_finalize_request(r, ngx_http_chat_send_error(r,
                                  NGX_HTTP_CHAT_UNPROCESSABLE,
                                  (const char *) detail));
        return;
    }

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_http_chat_start(r, actx, 1);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


static ngx_int_t
ngx_http_chat_body_to_op(ngx_http_request_t *r, ngx_http_chat_api_ctx_t *actx,
    cJSON *json, u_char *detail)
{
    u_char                    *copy;
    ngx_str_t                  value;
    ngx_http_chat_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if ((actx->op->kind == NGX_HTTP_CHAT_OP_CREATE_GROUP
         ? ngx_http_chat_text_field(json, "name", lcf->max_name, 1, &value,
                                    detail, 96)
         : ngx_http_chat_text_field(json, "content", lcf->max_content, 0,
                                    &value, detail, 96))
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    copy = ngx_pnalloc(r->pool, value.len + 1);
    if (copy == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(copy, value.data, value.len);
    copy[value.len] = '\0';

    actx->op->text = (const char *) copy;
    actx->op->text_len = value.len;

    return NGX_OK;
}


/*
 * Posts the op.  The request stays alive until ngx_http_chat_op_done():
 * its count is raised (in a body handler, read_client_request_body
 * already did) and "blocked" keeps ngx_http_terminate_request() from
 * freeing it while a pool thread may still write into the op.
 */

static ngx_int_t
ngx_http_chat_start(ngx_http_request_t *r, ngx_http_chat_api_ctx_t *actx,
    ngx_uint_t in_body_handler)
{
    ngx_int_t            rc;
    ngx_http_chat_op_t  *op;

    op = actx->op;
    op->done = ngx_http_chat_op_done;
    op->expire = ngx_http_chat_op_expired;
    op->data = r;
    op->log = r->connection->log;

    rc = ngx_http_chat_op_post(op);

    if (rc != NGX_OK) {
        return ngx_http_chat_send_unavailable(r, NGX_HTTP_CHAT_RETRY_BUSY,
                                              rc == NGX_BUSY
                                              ? "server busy: too many "
                                                "database operations queued"
                                              : "storage is not available");
    }

    ngx_http_chat_request_wait(r, !in_body_handler);

    return NGX_DONE;
}


static void
ngx_http_chat_op_done(ngx_http_chat_op_t *op)
{
    char                     *json;
    size_t                    len;
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_http_request_t       *r;
    ngx_http_chat_ctx_t      *ctx;

    r = op->data;
    c = r->connection;

    ngx_http_chat_request_resume(r);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "chat op %d done: result %d in %uLus", op->kind,
                   op->result, ngx_http_chat_monotonic_us() - op->posted_us);

    if (op->result == NGX_HTTP_CHAT_RES_OK && op->error[0] != '\0') {
        /* the op's note: a newest page read by a scan, not by the log */
        ngx_log_error(NGX_LOG_INFO, c->log, 0, "chat api: %s", op->error);
    }

    /*
     * The page cache's expired page, found current by the group's seq:
     * valid again, and the answer.  If it changed meanwhile (a write
     * dropped it), the page is read after all: the op again, without the
     * check (the request's count is still raised for it).
     */

    if (op->page_current && op->result == NGX_HTTP_CHAT_RES_OK) {
        op->page_current = 0;

        if (ngx_http_chat_page_cache_renew(&op->group_id, op->limit,
                                           &json, &len)
            == NGX_OK)
        {
            rc = NGX_HTTP_CLIENT_CLOSED_REQUEST;

            if (!c->error) {
                rc = (ngx_http_chat_cache_header(r, "revalidated") == NGX_OK)
                     ? ngx_http_chat_send_json(r, NGX_HTTP_OK, json, len)
                     : NGX_HTTP_INTERNAL_SERVER_ERROR;

            } else {
                free(json);
            }

            ngx_http_chat_op_release(op);
            ngx_http_finalize_request(r, rc);
            ngx_http_run_posted_requests(c);
            return;
        }

        op->revalidate = 0;
        op->cache_ticket = 0;            /* its read is not kept */

        if (!c->error) {
            rc = ngx_http_chat_start(r, ngx_http_chat_get_ctx(r)->api, 1);

            if (rc == NGX_DONE) {
                return;
            }

            ngx_http_finalize_request(r, rc);
            ngx_http_run_posted_requests(c);
            return;
        }
    }

    /* a newest page read for a miss of the page cache: offered to it */

    if (op->cache_ticket && op->result == NGX_HTTP_CHAT_RES_OK
        && op->page_read && op->json)
    {
        ngx_http_chat_page_cache_put(&op->group_id, op->limit,
                                     op->cache_ticket, op->through,
                                     op->through == op->seq, op->json,
                                     op->json_len);

        if (ngx_http_chat_cache_header(r, "miss") != NGX_OK) {
            ngx_http_chat_op_release(op);
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            ngx_http_run_posted_requests(c);
            return;
        }
    }

    rc = NGX_HTTP_CLIENT_CLOSED_REQUEST;

    if (!c->error) {
        /* the response first: its bytes are on the socket before the
         * fan-out starts, so the POST never waits for the subscribers */
        ctx = ngx_http_chat_get_ctx(r);
        rc = ngx_http_chat_respond(r, ctx->api, op);
    }

    /* what was stored is announced even if its author has gone away */
    ngx_http_chat_publish(op);

    ngx_http_chat_op_release(op);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * chat_db_timeout after the op was posted, and it is not done: queued
 * behind stalled operations, or running longer than one call's timeout.
 * The bound is the request's: it is answered 503 now, and the op goes on
 * without it (a queued op will not run; a running write may still land,
 * and is then announced like any other).
 */

static void
ngx_http_chat_op_expired(ngx_http_chat_op_t *op)
{
    ngx_http_chat_answer_expired(op, ngx_http_chat_op_done_late);
}


static void
ngx_http_chat_op_done_late(ngx_http_chat_op_t *op)
{
    /* the driver's own reason, for the operator, when it comes */
    if (op->result != NGX_HTTP_CHAT_RES_OK && !op->cancelled) {
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "chat storage: %s (its request was answered 503 "
                      "at chat_db_timeout)", op->error);
    }

    ngx_http_chat_publish(op);
    ngx_http_chat_op_release(op);
}


static void
ngx_http_chat_publish(ngx_http_chat_op_t *op)
{
    u_char  gid[NGX_HTTP_CHAT_OID_LEN + 1];

    if (op->result == NGX_HTTP_CHAT_RES_OK && op->event_json) {
        bson_oid_to_string(&op->group_id, (char *) gid);
        ngx_http_chat_broadcast_publish(gid, op->seq, op->event_json,
                                        op->event_json_len);
    }
}


/* "X-Chat-Cache: hit" or "miss" on a newest page, when the page cache
 * is on (what the tests and the benchmark look at) */

static ngx_int_t
ngx_http_chat_cache_header(ngx_http_request_t *r, const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Chat-Cache");
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_respond(ngx_http_request_t *r, ngx_http_chat_api_ctx_t *actx,
    ngx_http_chat_op_t *op)
{
    u_char           *p;
    char             *json;
    ngx_uint_t        status;
    const char       *detail;
    ngx_table_elt_t  *h;

    if (op->result != NGX_HTTP_CHAT_RES_OK) {
        status = ngx_http_chat_op_status(op, r->connection->log, &detail);

        if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
            return ngx_http_chat_send_unavailable(r,
                                                  NGX_HTTP_CHAT_RETRY_DATABASE,
                                                  detail);
        }

        return ngx_http_chat_send_error(r, status, detail);
    }

    if (actx->created && op->id_hex[0]) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_pnalloc(r->pool,
                        r->uri.len + 1 + NGX_HTTP_CHAT_OID_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Location");
        h->value.data = p;
        p = ngx_cpymem(p, r->uri.data, r->uri.len);
        if (p[-1] != '/') {
            *p++ = '/';
        }
        p = ngx_cpymem(p, op->id_hex, NGX_HTTP_CHAT_OID_LEN);
        h->value.len = p - h->value.data;
    }

    json = op->json;
    op->json = NULL;                     /* the response owns it now */

    return ngx_http_chat_send_json(r, actx->created ? NGX_HTTP_CREATED
                                                    : NGX_HTTP_OK,
                                   json, op->json_len);
}
