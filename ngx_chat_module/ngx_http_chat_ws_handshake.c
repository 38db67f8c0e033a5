/*
 * ngx_http_chat_ws_handshake.c - the opening handshake of
 * /api/chat/ws/{group_id}: the request is checked (Upgrade, Connection,
 * Sec-WebSocket-Version 13, Sec-WebSocket-Key, Origin allow-list, bearer
 * token in the header or ?token=), the group is looked up on the thread
 * pool, then the upgrade: the 101 response is queued like any frame, the
 * HTTP request is logged and freed, and the connection is handed to
 * ngx_http_chat_ws_connection.c.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <bson/bson.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_jwt.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_websocket.h"


struct ngx_http_chat_ws_handshake_s {
    u_char                      accept[NGX_HTTP_CHAT_WS_ACCEPT_LEN];
    ngx_http_chat_jwt_claims_t  claims;
    ngx_str_t                   group_id;
    int64_t                     since;       /* -1: not given */
    ngx_http_chat_op_t         *op;
};


static ngx_int_t ngx_http_chat_ws_origin_allowed(ngx_http_request_t *r,
    ngx_http_chat_loc_conf_t *lcf);
static void ngx_http_chat_ws_group_expired(ngx_http_chat_op_t *op);
static void ngx_http_chat_ws_group_checked(ngx_http_chat_op_t *op);
static ngx_int_t ngx_http_chat_ws_upgrade(ngx_http_request_t *r,
    ngx_http_chat_ws_handshake_t *hs);
static ngx_http_chat_ws_t *ngx_http_chat_ws_create(ngx_http_request_t *r,
    ngx_http_chat_ws_handshake_t *hs);
static ngx_http_chat_frame_t *ngx_http_chat_ws_response(ngx_http_request_t *r,
    ngx_http_chat_ws_handshake_t *hs, ngx_http_chat_ws_t *ws);
static ngx_int_t ngx_http_chat_ws_keep_pipelined(ngx_http_request_t *r,
    ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_release_request(ngx_http_request_t *r,
    ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_free_header_buffers(ngx_connection_t *c,
    ngx_http_connection_t *hc);


/* the request headers the handshake reads */
static ngx_str_t  ngx_http_chat_hdr_upgrade = ngx_string("Upgrade");
static ngx_str_t  ngx_http_chat_hdr_connection = ngx_string("Connection");
static ngx_str_t  ngx_http_chat_hdr_version =
    ngx_string("Sec-WebSocket-Version");
static ngx_str_t  ngx_http_chat_hdr_key = ngx_string("Sec-WebSocket-Key");
static ngx_str_t  ngx_http_chat_hdr_origin = ngx_string("Origin");


/* --- the opening handshake ------------------------------------------------ */

ngx_int_t
ngx_http_chat_ws_handler(ngx_http_request_t *r, ngx_str_t *group_id)
{
    ngx_int_t                      rc;
    ngx_str_t                      key;
    const char                    *detail;
    ngx_table_elt_t               *h, *version;
    ngx_http_chat_ctx_t           *ctx;
    ngx_http_chat_op_t            *op;
    ngx_http_chat_loc_conf_t      *lcf;
    ngx_http_chat_ws_handshake_t  *hs;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    ctx = ngx_http_chat_get_ctx(r);

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->http_version != NGX_HTTP_VERSION_11) {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "a WebSocket handshake needs "
                                        "HTTP/1.1");
    }

    /*
     * nginx 1.22 declares headers_in.upgrade and .connection but sets
     * neither (its Connection handler keeps only connection_type; 1.23
     * keeps both): look them up.  Checked: with headers_in, every
     * handshake of t/04 is a 400.
     */

    h = ngx_http_chat_header_in(r, &ngx_http_chat_hdr_upgrade);

    if (h == NULL || h->value.len != sizeof("websocket") - 1
        || ngx_strncasecmp(h->value.data, (u_char *) "websocket",
                           sizeof("websocket") - 1) != 0)
    {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "expected \"Upgrade: websocket\"");
    }

    h = ngx_http_chat_header_in(r, &ngx_http_chat_hdr_connection);

    if (h == NULL || !ngx_http_chat_ws_has_token(&h->value, "upgrade")) {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "expected \"Connection: Upgrade\"");
    }

    version = ngx_http_chat_header_in(r, &ngx_http_chat_hdr_version);

    if (version == NULL || version->value.len != 2
        || ngx_strncmp(version->value.data, "13", 2) != 0)
    {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Sec-WebSocket-Version");
        ngx_str_set(&h->value, "13");

        return ngx_http_chat_send_error(r, NGX_HTTP_CHAT_UPGRADE_REQUIRED,
                                        "only WebSocket version 13 is "
                                        "supported");
    }

    hs = ngx_pcalloc(r->pool, sizeof(ngx_http_chat_ws_handshake_t));
    if (hs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_http_chat_header_in(r, &ngx_http_chat_hdr_key);
    key = h ? h->value : (ngx_str_t) ngx_null_string;

    if (ngx_http_chat_ws_accept_key(&key, hs->accept) != NGX_OK) {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "Sec-WebSocket-Key must be 16 bytes "
                                        "in base64");
    }

    if (!ngx_http_chat_ws_origin_allowed(r, lcf)) {
        return ngx_http_chat_send_error(r, NGX_HTTP_FORBIDDEN,
                                        "Origin is not allowed");
    }

    if (ngx_http_chat_jwt_user(r, 1, &hs->claims, &detail) != NGX_OK) {
        return ngx_http_chat_send_error(r, NGX_HTTP_UNAUTHORIZED, detail);
    }

    op = ngx_http_chat_op_create(r->pool);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_chat_oid_parse(group_id->data, group_id->len,
                                &op->group_id)
        != NGX_OK)
    {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "group_id is not a valid ObjectId "
                                        "(24 hexadecimal characters)");
    }

    /* the events to replay first: those above since */

    if (ngx_http_chat_query_int(r, "since", 0, NGX_HTTP_CHAT_MAX_SEQ, -1,
                                &hs->since, &rc)
        != NGX_OK)
    {
        return rc;
    }

    hs->group_id = *group_id;
    hs->op = op;
    ctx->handshake = hs;

    op->kind = NGX_HTTP_CHAT_OP_GROUP_EXISTS;
    op->done = ngx_http_chat_ws_group_checked;
    op->expire = ngx_http_chat_ws_group_expired;
    op->data = r;
    op->log = r->connection->log;

    rc = ngx_http_chat_op_post(op);
    if (rc != NGX_OK) {
        return ngx_http_chat_send_unavailable(r, NGX_HTTP_CHAT_RETRY_BUSY,
                                              "server busy, try again later");
    }

    ngx_http_chat_request_wait(r, 1);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_chat_ws_origin_allowed(ngx_http_request_t *r,
    ngx_http_chat_loc_conf_t *lcf)
{
    ngx_str_t        *allowed;
    ngx_uint_t        i;
    ngx_table_elt_t  *origin;

    if (lcf->ws_origins == NULL) {
        return 1;
    }

    /* non-browser clients send no Origin; browsers always do */
    origin = ngx_http_chat_header_in(r, &ngx_http_chat_hdr_origin);
    if (origin == NULL) {
        return 1;
    }

    allowed = lcf->ws_origins->elts;

    for (i = 0; i < lcf->ws_origins->nelts; i++) {
        if (allowed[i].len == origin->value.len
            && ngx_strncasecmp(allowed[i].data, origin->value.data,
                               origin->value.len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* the group lookup is not done chat_db_timeout after it was queued: the
 * handshake is answered now, as an API request is */

static void
ngx_http_chat_ws_group_expired(ngx_http_chat_op_t *op)
{
    ngx_http_chat_answer_expired(op, NULL);
}


static void
ngx_http_chat_ws_group_checked(ngx_http_chat_op_t *op)
{
    ngx_int_t             rc;
    ngx_uint_t            status;
    const char           *detail;
    ngx_connection_t     *c;
    ngx_http_request_t   *r;
    ngx_http_chat_ctx_t  *ctx;

    r = op->data;
    c = r->connection;

    ngx_http_chat_request_resume(r);

    ngx_http_chat_op_release(op);

    if (c->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        ngx_http_run_posted_requests(c);
        return;
    }

    status = ngx_http_chat_op_status(op, c->log, &detail);

    if (status == NGX_HTTP_OK) {
        ctx = ngx_http_chat_get_ctx(r);

        if (ngx_http_chat_ws_upgrade(r, ctx->handshake) == NGX_OK) {
            /* the request is gone; the connection is the WebSocket's */
            return;
        }

        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    } else if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        rc = ngx_http_chat_send_unavailable(r, NGX_HTTP_CHAT_RETRY_DATABASE,
                                            detail);

    } else {
        rc = ngx_http_chat_send_error(r, status, detail);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * Sends 101 and hands the connection over: the request is logged (status
 * 101, time to upgrade) and freed, with its pool; what stays is the
 * connection, its small pool and the ngx_http_chat_ws_t.  NGX_ERROR only
 * while the request is still there to answer 500.
 */

static ngx_int_t
ngx_http_chat_ws_upgrade(ngx_http_request_t *r,
    ngx_http_chat_ws_handshake_t *hs)
{
    ngx_http_chat_ws_t     *ws;
    ngx_http_chat_frame_t  *response;

    ws = ngx_http_chat_ws_create(r, hs);
    if (ws == NULL) {
        return NGX_ERROR;
    }

    response = ngx_http_chat_ws_response(r, hs, ws);
    if (response == NULL) {
        ngx_free(ws);
        return NGX_ERROR;
    }

    if (ngx_http_chat_ws_keep_pipelined(r, ws) != NGX_OK) {
        ngx_http_chat_frame_release(response);
        ngx_free(ws);
        return NGX_ERROR;
    }

    ngx_http_chat_ws_release_request(r, ws);

    ngx_http_chat_ws_open(ws, response);

    return NGX_OK;
}


/* the WebSocket's own struct: who, in which group, under which ID */

static ngx_http_chat_ws_t *
ngx_http_chat_ws_create(ngx_http_request_t *r,
    ngx_http_chat_ws_handshake_t *hs)
{
    ngx_http_chat_ws_t   *ws;
    ngx_http_chat_ctx_t  *ctx;

    ctx = ngx_http_chat_get_ctx(r);

    ws = ngx_calloc(sizeof(ngx_http_chat_ws_t), r->connection->log);
    if (ws == NULL) {
        return NULL;
    }

    ws->connection = r->connection;
    ws->conf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    ngx_queue_init(&ws->out);
    ngx_queue_init(&ws->waiting);

    ngx_memcpy(ws->group_id, hs->group_id.data, NGX_HTTP_CHAT_OID_LEN);
    ngx_strlow(ws->group_id, ws->group_id, NGX_HTTP_CHAT_OID_LEN);
    ws->group.data = ws->group_id;
    ws->group.len = NGX_HTTP_CHAT_OID_LEN;

    ws->user_id.len = ngx_min(hs->claims.sub.len, sizeof(ws->user_buf));
    ws->user_id.data = ws->user_buf;
    ngx_memcpy(ws->user_buf, hs->claims.sub.data, ws->user_id.len);

    ws->cid.len = ctx->correlation_id.len;
    ws->cid.data = ws->cid_buf;
    ngx_memcpy(ws->cid_buf, ctx->correlation_id.data, ws->cid.len);

    ws->since = hs->since;
    ws->start = hs->op->seq;            /* the group's, when looked up */

    return ws;
}


/* the 101 response, sent through the frame queue like the rest */

static ngx_http_chat_frame_t *
ngx_http_chat_ws_response(ngx_http_request_t *r,
    ngx_http_chat_ws_handshake_t *hs, ngx_http_chat_ws_t *ws)
{
    u_char                     *p;
    size_t                      len;
    ngx_http_chat_frame_t      *frame;
    ngx_http_chat_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);

    len = sizeof("HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: \r\n"
                 "\r\n") - 1
          + sizeof(hs->accept)
          + cmcf->cid_header.len + sizeof(": \r\n") - 1 + ws->cid.len;

    frame = ngx_alloc(sizeof(ngx_http_chat_frame_t) + len,
                      r->connection->log);
    if (frame == NULL) {
        return NULL;
    }

    p = ngx_sprintf(frame->data, "HTTP/1.1 101 Switching Protocols\r\n"
                    "Upgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %*s\r\n"
                    "%V: %V\r\n\r\n",
                    sizeof(hs->accept), hs->accept,
                    &cmcf->cid_header, &ws->cid);
    frame->len = p - frame->data;
    frame->refs = 1;

    return frame;
}


/* frames the client sent right behind its handshake, kept for the reader */

static ngx_int_t
ngx_http_chat_ws_keep_pipelined(ngx_http_request_t *r, ngx_http_chat_ws_t *ws)
{
    size_t      extra;
    ngx_buf_t  *b;

    b = r->header_in;
    extra = (b && b->last > b->pos) ? (size_t) (b->last - b->pos) : 0;

    if (extra == 0) {
        return NGX_OK;
    }

    ws->partial = ngx_alloc(extra, r->connection->log);
    if (ws->partial == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ws->partial, b->pos, extra);
    ws->partial_len = extra;
    ws->partial_size = extra;

    return NGX_OK;
}


/* logs and frees the request, keeps the connection for ws */

static void
ngx_http_chat_ws_release_request(ngx_http_request_t *r,
    ngx_http_chat_ws_t *ws)
{
    ngx_connection_t       *c;
    ngx_http_connection_t  *hc;

    c = r->connection;

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    r->keepalive = 0;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    hc = r->http_connection;

    ngx_http_free_request(r, 0);

    c->destroyed = 0;
    c->data = ws;
    c->log->action = "serving a WebSocket";

    ngx_http_chat_ws_free_header_buffers(c, hc);
}


/*
 * The connection's header buffers go back to its pool, as
 * ngx_http_set_keepalive() (ngx_http_request.c) gives them back between
 * two requests: an idle subscriber keeps none.
 */

static void
ngx_http_chat_ws_free_header_buffers(ngx_connection_t *c,
    ngx_http_connection_t *hc)
{
    ngx_chain_t  *cl;

    if (hc) {
        for (cl = hc->free; cl; cl = cl->next) {
            (void) ngx_pfree(c->pool, cl->buf->start);
        }

        for (cl = hc->busy; cl; cl = cl->next) {
            (void) ngx_pfree(c->pool, cl->buf->start);
        }

        hc->free = NULL;
        hc->busy = NULL;
        hc->nbusy = 0;
    }

    if (c->buffer && ngx_pfree(c->pool, c->buffer->start) == NGX_OK) {
        c->buffer = NULL;
    }
}
