/*
 * ngx_http_chat_websocket.c - RFC 6455, server side.
 *
 * Handshake: the usual HTTP request, checked (Upgrade, Connection,
 * Sec-WebSocket-Version 13, Sec-WebSocket-Key, Origin allow-list, bearer
 * token in the header or ?token=), then the group is looked up on the
 * thread pool.  On success the 101 response is queued like any frame, the
 * HTTP request is logged and freed, and the connection becomes a
 * subscriber of its group (ngx_http_chat_broadcast.c).
 *
 * Frames are read into a per-worker scratch buffer and parsed in place;
 * only an incomplete frame or a fragmented message is copied into memory
 * of the connection's own, so an idle subscriber holds no buffers.  Frames
 * out are shared (one encoding per event for every subscriber of the
 * worker) and queued up to chat_ws_send_queue frames: a consumer that
 * falls further behind is closed with 1008 instead of growing memory.
 *
 * Closing: a close frame is answered with the same code, and the TCP
 * connection goes once our close frame is out and the peer's has arrived,
 * or after chat_ws_close_timeout.  A protocol error closes with its code
 * (1002, 1007, 1009) and stops reading the peer: once our close frame is
 * out, our FIN goes and the input is discarded until the peer's FIN or
 * the timeout.  The connection is "idle" in nginx's sense while open, so
 * a graceful shutdown or reload closes it with 1001.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_sha1.h>

#include <bson/bson.h>
#include <cjson/cJSON.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_correlation.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_jwt.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_metrics.h"
#include "ngx_http_chat_websocket.h"
#include "ngx_http_chat_broadcast.h"


#define NGX_HTTP_CHAT_WS_MAX_PENDING   8      /* messages being stored */
#define NGX_HTTP_CHAT_WS_READ_SIZE     65536



typedef struct {
    u_char                      accept[28];
    ngx_http_chat_jwt_claims_t  claims;
    ngx_str_t                   group_id;
    ngx_http_chat_op_t         *op;
} ngx_http_chat_ws_handshake_t;


typedef struct {
    ngx_queue_t                 queue;
    ngx_http_chat_frame_t      *frame;
} ngx_http_chat_ws_out_t;


typedef struct {
    ngx_queue_t                 queue;          /* while waiting */
    ngx_http_chat_ws_t         *ws;
    ngx_pool_t                 *pool;
    ngx_http_chat_op_t         *op;
} ngx_http_chat_ws_pending_t;


static ngx_table_elt_t *ngx_http_chat_ws_header(ngx_http_request_t *r,
    const char *name);
static ngx_int_t ngx_http_chat_ws_has_token(ngx_str_t *value,
    const char *token);
static ngx_int_t ngx_http_chat_ws_origin_allowed(ngx_http_request_t *r,
    ngx_http_chat_loc_conf_t *lcf);
static void ngx_http_chat_ws_group_expired(ngx_http_chat_op_t *op);
static void ngx_http_chat_ws_group_checked(ngx_http_chat_op_t *op);
static ngx_int_t ngx_http_chat_ws_upgrade(ngx_http_request_t *r,
    ngx_http_chat_ws_handshake_t *hs);

static void ngx_http_chat_ws_read_handler(ngx_event_t *rev);
static void ngx_http_chat_ws_write_handler(ngx_event_t *wev);
static void ngx_http_chat_ws_timer_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_chat_ws_input(ngx_http_chat_ws_t *ws, u_char *p,
    size_t len);
static ngx_int_t ngx_http_chat_ws_consume(ngx_http_chat_ws_t *ws, u_char *p,
    size_t len, size_t *used);
static ngx_int_t ngx_http_chat_ws_frame(ngx_http_chat_ws_t *ws,
    ngx_http_chat_ws_frame_t *f, u_char *payload);
static ngx_int_t ngx_http_chat_ws_message(ngx_http_chat_ws_t *ws,
    ngx_uint_t opcode, u_char *p, size_t len);
static void ngx_http_chat_ws_message_stored(ngx_http_chat_op_t *op);
static void ngx_http_chat_ws_post_next(ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_send_event(ngx_http_chat_ws_t *ws,
    const char *type, const char *detail);
static void ngx_http_chat_ws_close(ngx_http_chat_ws_t *ws, ngx_uint_t code,
    const char *reason);
static void ngx_http_chat_ws_fail(ngx_http_chat_ws_t *ws, ngx_uint_t code,
    const char *reason);
static ngx_int_t ngx_http_chat_ws_flush(ngx_http_chat_ws_t *ws);
static ngx_int_t ngx_http_chat_ws_linger(ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_finalize(ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_free_handler(ngx_event_t *ev);
static void ngx_http_chat_ws_drop_queue(ngx_http_chat_ws_t *ws,
    ngx_uint_t keep_head);


static u_char  ngx_http_chat_ws_rbuf[NGX_HTTP_CHAT_WS_READ_SIZE];

static ngx_str_t  ngx_http_chat_ws_guid =
    ngx_string("258EAFA5-E914-47DA-95CA-C5AB0DC85B11");

/*
 * A connection's messages are stored one at a time, in the order they
 * came, so that acks, broadcasts and the stored order all follow the
 * order sent: the one being stored is on the thread pool, the others
 * (at most NGX_HTTP_CHAT_WS_MAX_PENDING - 1 per connection) wait here.
 */



/* --- the opening handshake ------------------------------------------------ */

ngx_int_t
ngx_http_chat_ws_handler(ngx_http_request_t *r, ngx_str_t *group_id)
{
    ngx_int_t                      rc;
    ngx_str_t                      token, key;
    const char                    *detail;
    ngx_table_elt_t               *h, *version;
    ngx_http_chat_ctx_t           *ctx;
    ngx_http_chat_op_t            *op;
    ngx_http_chat_loc_conf_t      *lcf;
    ngx_http_chat_main_conf_t     *cmcf;
    ngx_http_chat_ws_handshake_t  *hs;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);
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

    /* nginx 1.22 keeps neither header in headers_in: look them up */

    h = ngx_http_chat_ws_header(r, "Upgrade");

    if (h == NULL || h->value.len != sizeof("websocket") - 1
        || ngx_strncasecmp(h->value.data, (u_char *) "websocket",
                           sizeof("websocket") - 1) != 0)
    {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "expected \"Upgrade: websocket\"");
    }

    h = ngx_http_chat_ws_header(r, "Connection");

    if (h == NULL || !ngx_http_chat_ws_has_token(&h->value, "upgrade")) {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "expected \"Connection: Upgrade\"");
    }

    version = ngx_http_chat_ws_header(r, "Sec-WebSocket-Version");

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

    h = ngx_http_chat_ws_header(r, "Sec-WebSocket-Key");
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

    if (ngx_http_chat_jwt_from_request(r, 1, &token, &detail) != NGX_OK
        || ngx_http_chat_jwt_verify(r->pool, &token, &cmcf->jwt_secret,
                                    ngx_time(), cmcf->jwt_leeway,
                                    &hs->claims, &detail) != NGX_OK)
    {
        return ngx_http_chat_send_error(r, NGX_HTTP_UNAUTHORIZED, detail);
    }

    op = ngx_http_chat_op_create(r->pool);
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (group_id->len != 24
        || !bson_oid_is_valid((const char *) group_id->data, 24))
    {
        return ngx_http_chat_send_error(r, NGX_HTTP_BAD_REQUEST,
                                        "group_id is not a valid ObjectId "
                                        "(24 hexadecimal characters)");
    }

    {
        char  buf[25];

        ngx_memcpy(buf, group_id->data, 24);
        buf[24] = '\0';
        bson_oid_init_from_string(&op->group_id, buf);
    }

    hs->group_id = *group_id;
    hs->op = op;
    ctx->api = hs;

    op->kind = NGX_HTTP_CHAT_OP_GROUP_EXISTS;
    op->done = ngx_http_chat_ws_group_checked;
    op->expire = ngx_http_chat_ws_group_expired;
    op->data = r;
    op->log = r->connection->log;

    rc = ngx_http_chat_op_post(op);
    if (rc != NGX_OK) {
        return ngx_http_chat_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                        "server busy, try again later");
    }

    /* the request waits for the thread: see ngx_http_chat_api.c */
    r->main->count++;
    r->main->blocked++;
    r->aio = 1;

    return NGX_DONE;
}


static ngx_table_elt_t *
ngx_http_chat_ws_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
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

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/* "keep-alive, Upgrade" has the token "upgrade" */

static ngx_int_t
ngx_http_chat_ws_has_token(ngx_str_t *value, const char *token)
{
    u_char  *p, *last, *start;
    size_t   len;

    len = ngx_strlen(token);
    p = value->data;
    last = p + value->len;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return 1;
        }
    }

    return 0;
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
    origin = ngx_http_chat_ws_header(r, "Origin");
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


ngx_int_t
ngx_http_chat_ws_accept_key(ngx_str_t *key, u_char *accept)
{
    u_char      raw[32], digest[20];
    ngx_str_t   src, dst;
    ngx_sha1_t  sha1;

    if (key->len != 24) {
        return NGX_ERROR;
    }

    dst.data = raw;

    if (ngx_decode_base64(&dst, key) != NGX_OK || dst.len != 16) {
        return NGX_ERROR;
    }

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, key->data, key->len);
    ngx_sha1_update(&sha1, ngx_http_chat_ws_guid.data,
                    ngx_http_chat_ws_guid.len);
    ngx_sha1_final(digest, &sha1);

    src.data = digest;
    src.len = sizeof(digest);
    dst.data = accept;

    ngx_encode_base64(&dst, &src);

    return NGX_OK;
}


/* the group lookup is not done chat_db_timeout after it was queued: the
 * handshake is answered now, as an API request is */

static void
ngx_http_chat_ws_group_expired(ngx_http_chat_op_t *op)
{
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = op->data;
    c = r->connection;

    ngx_http_chat_op_detach(op, NULL);

    r->main->blocked--;
    r->aio = 0;

    rc = c->error ? NGX_HTTP_CLIENT_CLOSED_REQUEST
                  : ngx_http_chat_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "database unavailable, "
                                             "try again later");

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_chat_ws_group_checked(ngx_http_chat_op_t *op)
{
    ngx_int_t                      rc;
    ngx_connection_t              *c;
    ngx_http_request_t            *r;
    ngx_http_chat_ctx_t           *ctx;

    r = op->data;
    c = r->connection;

    r->main->blocked--;
    r->aio = 0;

    ngx_http_chat_op_release(op);

    if (c->error) {
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        ngx_http_run_posted_requests(c);
        return;
    }

    switch (op->result) {

    case NGX_HTTP_CHAT_RES_OK:
        ctx = ngx_http_chat_get_ctx(r);

        if (ngx_http_chat_ws_upgrade(r, ctx->api) == NGX_OK) {
            /* the request is gone; the connection is the WebSocket's */
            return;
        }

        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        break;

    case NGX_HTTP_CHAT_RES_NOT_FOUND:
        rc = ngx_http_chat_send_error(r, NGX_HTTP_NOT_FOUND,
                                      "group not found");
        break;

    case NGX_HTTP_CHAT_RES_UNAVAILABLE:
        ngx_log_error(NGX_LOG_ERR, c->log, 0, "chat storage: %s", op->error);
        rc = ngx_http_chat_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "database unavailable, "
                                      "try again later");
        break;

    default:
        ngx_log_error(NGX_LOG_ERR, c->log, 0, "chat storage: %s", op->error);
        rc = ngx_http_chat_send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "internal error");
        break;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/*
 * Sends 101 and hands the connection over: the request is logged (status
 * 101, time to upgrade) and freed, with its pool; what stays is the
 * connection, its small pool and the ngx_http_chat_ws_t.
 */

static ngx_int_t
ngx_http_chat_ws_upgrade(ngx_http_request_t *r,
    ngx_http_chat_ws_handshake_t *hs)
{
    u_char                     *p;
    size_t                      len, extra;
    ngx_buf_t                  *b;
    ngx_uint_t                  count;
    ngx_chain_t                *cl;
    ngx_connection_t           *c;
    ngx_http_chat_ws_t         *ws;
    ngx_http_connection_t      *hc;
    ngx_http_chat_frame_t      *frame;
    ngx_http_chat_ctx_t        *ctx;
    ngx_http_chat_main_conf_t  *cmcf;

    c = r->connection;
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chat_module);
    ctx = ngx_http_chat_get_ctx(r);

    ws = ngx_calloc(sizeof(ngx_http_chat_ws_t), c->log);
    if (ws == NULL) {
        return NGX_ERROR;
    }

    ws->connection = c;
    ws->conf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);
    ngx_queue_init(&ws->out);
    ngx_queue_init(&ws->waiting);
    ngx_queue_init(&ws->group_link);

    ngx_memcpy(ws->group_id, hs->group_id.data, 24);
    ngx_strlow(ws->group_id, ws->group_id, 24);

    ws->user_id.len = ngx_min(hs->claims.sub.len, sizeof(ws->user_buf));
    ws->user_id.data = ws->user_buf;
    ngx_memcpy(ws->user_buf, hs->claims.sub.data, ws->user_id.len);

    ws->cid.len = ctx->correlation_id.len;
    ws->cid.data = ws->cid_buf;
    ngx_memcpy(ws->cid_buf, ctx->correlation_id.data, ws->cid.len);

    /* the 101 response goes out through the frame queue like the rest */

    len = sizeof("HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: \r\n"
                 "\r\n") - 1
          + sizeof(hs->accept)
          + cmcf->cid_header.len + sizeof(": \r\n") - 1 + ws->cid.len;

    frame = ngx_alloc(sizeof(ngx_http_chat_frame_t) + len, c->log);
    if (frame == NULL) {
        ngx_free(ws);
        return NGX_ERROR;
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

    /* frames the client sent right behind its handshake */

    b = r->header_in;
    extra = (b && b->last > b->pos) ? (size_t) (b->last - b->pos) : 0;

    if (extra) {
        ws->partial = ngx_alloc(extra, c->log);
        if (ws->partial == NULL) {
            ngx_free(frame);
            ngx_free(ws);
            return NGX_ERROR;
        }

        ngx_memcpy(ws->partial, b->pos, extra);
        ws->partial_len = extra;
        ws->partial_size = extra;
    }

    /* log and free the request; keep the connection */

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

    /* give back the header buffers, as a keepalive connection does */

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

    c->read->handler = ngx_http_chat_ws_read_handler;
    c->write->handler = ngx_http_chat_ws_write_handler;

    ws->last_recv = ngx_current_msec;

    ws->timer.handler = ngx_http_chat_ws_timer_handler;
    ws->timer.data = ws;
    ws->timer.log = c->log;
    ngx_add_timer(&ws->timer, ws->conf->ws_ping_interval);

    count = ngx_http_chat_broadcast_subscribe(ws);
    ws->subscribed = 1;

    ngx_http_chat_metrics_ws_event(1, &(ngx_str_t) { 24, ws->group_id },
                                   &ws->user_id, count);

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "chat ws: \"%V\" joined group %*s (%ui here), "
                  "correlation_id=%V", &ws->user_id, (size_t) 24,
                  ws->group_id, count, &ws->cid);

    /* idle in nginx's sense: a graceful shutdown closes it with 1001 */
    c->idle = 1;
    ngx_reusable_connection(c, 1);

    ngx_http_chat_ws_send_frame(ws, frame);
    ngx_http_chat_frame_release(frame);

    if (ws->closed) {
        return NGX_OK;
    }

    /*
     * The worker began to shut down while the group was looked up: nginx
     * closed its idle connections already, so this one is told now, or
     * its pings would keep the old worker alive.
     */

    if (ngx_exiting || ngx_terminate) {
        c->close = 1;
        ngx_post_event(c->read, &ngx_posted_events);
        return NGX_OK;
    }

    /*
     * Frames (or the peer's FIN) that arrived while the group was looked
     * up: the request blocked reading meanwhile, and an edge-triggered
     * event will not come again for them.
     */

    if (ws->partial_len || c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);

    } else if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_chat_ws_finalize(ws);
    }

    return NGX_OK;
}


/* --- frames in ------------------------------------------------------------ */

static void
ngx_http_chat_ws_read_handler(ngx_event_t *rev)
{
    ssize_t              n;
    ngx_connection_t    *c;
    ngx_http_chat_ws_t  *ws;

    c = rev->data;
    ws = c->data;

    if (c->close) {
        /* nginx is shutting down, or reclaiming idle connections */
        c->close = 0;
        ngx_http_chat_ws_close(ws, NGX_HTTP_CHAT_WS_GOING_AWAY,
                               "server going away");
        return;
    }

    if (ws->partial_len) {
        /* frames that came with the handshake, or an unfinished one */
        if (ngx_http_chat_ws_input(ws, NULL, 0) != NGX_OK) {
            return;
        }
    }

    for ( ;; ) {
        n = c->recv(c, ngx_http_chat_ws_rbuf, sizeof(ngx_http_chat_ws_rbuf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            /* the peer is gone, with or without a close frame */
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "chat ws: connection closed by peer, n:%z", n);
            ngx_http_chat_ws_finalize(ws);
            return;
        }

        ws->last_recv = ngx_current_msec;

        if (ngx_http_chat_ws_input(ws, ngx_http_chat_ws_rbuf, n) != NGX_OK) {
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_chat_ws_finalize(ws);
    }
}


/*
 * Parses what arrived, in place, and keeps only an unfinished frame.
 * Returns NGX_OK to keep reading, anything else once the WebSocket is
 * closing or closed (ws may then be freed).
 */

static ngx_int_t
ngx_http_chat_ws_input(ngx_http_chat_ws_t *ws, u_char *p, size_t len)
{
    u_char     *buf;
    size_t      used, size;
    ngx_int_t   rc;

    if (ws->partial_len == 0) {
        rc = ngx_http_chat_ws_consume(ws, p, len, &used);
        if (rc != NGX_OK) {
            return rc;
        }

        if (used == len) {
            return NGX_OK;
        }

        p += used;
        len -= used;

        size = ngx_max(len, 256);
        ws->partial = ngx_alloc(size, ws->connection->log);
        if (ws->partial == NULL) {
            ngx_http_chat_ws_finalize(ws);
            return NGX_ERROR;
        }

        ngx_memcpy(ws->partial, p, len);
        ws->partial_len = len;
        ws->partial_size = size;

        return NGX_OK;
    }

    /* append to the unfinished frame; its size is bounded by the frame
     * limit, checked as soon as its header is complete */

    if (ws->partial_len + len > ws->partial_size) {
        size = ngx_max(ws->partial_size * 2, ws->partial_len + len);

        buf = ngx_alloc(size, ws->connection->log);
        if (buf == NULL) {
            ngx_http_chat_ws_finalize(ws);
            return NGX_ERROR;
        }

        ngx_memcpy(buf, ws->partial, ws->partial_len);
        ngx_free(ws->partial);
        ws->partial = buf;
        ws->partial_size = size;
    }

    if (len) {
        ngx_memcpy(ws->partial + ws->partial_len, p, len);
        ws->partial_len += len;
    }

    rc = ngx_http_chat_ws_consume(ws, ws->partial, ws->partial_len, &used);
    if (rc != NGX_OK) {
        return rc;
    }

    if (used == ws->partial_len) {
        ngx_free(ws->partial);
        ws->partial = NULL;
        ws->partial_len = 0;
        ws->partial_size = 0;

    } else if (used) {
        ngx_memmove(ws->partial, ws->partial + used, ws->partial_len - used);
        ws->partial_len -= used;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_ws_consume(ngx_http_chat_ws_t *ws, u_char *p, size_t len,
    size_t *used)
{
    u_char                    *payload;
    size_t                     i, total;
    ngx_int_t                  rc;
    ngx_http_chat_ws_frame_t   f;

    *used = 0;

    while (*used < len) {

        if (ws->close_received) {
            /* nothing may follow a close frame */
            *used = len;
            return NGX_OK;
        }

        rc = ngx_http_chat_ws_parse_frame(p + *used, len - *used,
                                          ws->conf->ws_max_frame, &f);

        if (rc == NGX_AGAIN) {
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            ngx_http_chat_ws_fail(ws, f.close_code,
                                  f.close_code == NGX_HTTP_CHAT_WS_TOO_BIG
                                  ? "frame too big" : "protocol error");
            return NGX_DONE;
        }

        total = f.header_len + (size_t) f.payload_len;

        if (len - *used < total) {
            return NGX_OK;
        }

        payload = p + *used + f.header_len;

        for (i = 0; i < f.payload_len; i++) {
            payload[i] ^= f.mask[i & 3];
        }

        *used += total;

        rc = ngx_http_chat_ws_frame(ws, &f, payload);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chat_ws_frame(ngx_http_chat_ws_t *ws, ngx_http_chat_ws_frame_t *f,
    u_char *payload)
{
    size_t                  len;
    ngx_uint_t              code;
    ngx_http_chat_frame_t  *frame;

    len = (size_t) f->payload_len;

    switch (f->opcode) {

    case NGX_HTTP_CHAT_WS_TEXT:
    case NGX_HTTP_CHAT_WS_BINARY:

        if (ws->msg) {
            ngx_http_chat_ws_fail(ws, NGX_HTTP_CHAT_WS_PROTOCOL,
                                  "expected a continuation frame");
            return NGX_DONE;
        }

        if (f->fin) {
            /* a message in one frame: the message limit holds too */
            if (len > ws->conf->ws_max_message) {
                ngx_http_chat_ws_fail(ws, NGX_HTTP_CHAT_WS_TOO_BIG,
                                      "message too big");
                return NGX_DONE;
            }

            return ngx_http_chat_ws_message(ws, f->opcode, payload, len);
        }

        ws->msg = ngx_alloc(ws->conf->ws_max_message, ws->connection->log);
        if (ws->msg == NULL) {
            ngx_http_chat_ws_finalize(ws);
            return NGX_ERROR;
        }

        ws->msg_opcode = f->opcode;
        ws->msg_len = 0;

        /* fall through */

    case NGX_HTTP_CHAT_WS_CONT:

        if (ws->msg == NULL) {
            ngx_http_chat_ws_fail(ws, NGX_HTTP_CHAT_WS_PROTOCOL,
                                  "continuation without a message");
            return NGX_DONE;
        }

        if (ws->msg_len + len > ws->conf->ws_max_message) {
            ngx_http_chat_ws_fail(ws, NGX_HTTP_CHAT_WS_TOO_BIG,
                                  "message too big");
            return NGX_DONE;
        }

        ngx_memcpy(ws->msg + ws->msg_len, payload, len);
        ws->msg_len += len;

        if (!f->fin) {
            return NGX_OK;
        }

        {
            u_char      *msg;
            size_t       msg_len;
            ngx_int_t    rc;
            ngx_uint_t   opcode;

            msg = ws->msg;
            msg_len = ws->msg_len;
            opcode = ws->msg_opcode;
            ws->msg = NULL;
            ws->msg_len = 0;

            rc = ngx_http_chat_ws_message(ws, opcode, msg, msg_len);
            ngx_free(msg);

            return rc;
        }

    case NGX_HTTP_CHAT_WS_PING:

        if (ws->close_sent) {
            return NGX_OK;
        }

        frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_PONG, payload,
                                           len);
        if (frame == NULL) {
            ngx_http_chat_ws_finalize(ws);
            return NGX_ERROR;
        }

        ngx_http_chat_ws_send_frame(ws, frame);
        ngx_http_chat_frame_release(frame);

        return ws->closed ? NGX_ERROR : NGX_OK;

    case NGX_HTTP_CHAT_WS_PONG:
        return NGX_OK;

    default: /* NGX_HTTP_CHAT_WS_CLOSE */

        if (ngx_http_chat_ws_check_close_payload(payload, len, &code)
            != NGX_OK)
        {
            ngx_http_chat_ws_fail(ws, code, "invalid close frame");
            return NGX_DONE;
        }

        ws->close_received = 1;

        if (ws->close_sent) {
            /* the answer to our close: the handshake is complete */
            if (ws->out_count == 0) {
                ngx_http_chat_ws_finalize(ws);
            }

            return NGX_DONE;
        }

        /* echo the peer's code (RFC 6455, 5.5.1) */
        ngx_http_chat_ws_close(ws, code ? code : NGX_HTTP_CHAT_WS_NORMAL,
                               "");
        return NGX_DONE;
    }
}


/* a whole message: the chat protocol speaks JSON text */

static ngx_int_t
ngx_http_chat_ws_message(ngx_http_chat_ws_t *ws, ngx_uint_t opcode,
    u_char *p, size_t len)
{
    cJSON                       *json, *type, *content;
    u_char                      *copy, *s, buf[96];
    size_t                       clen;
    ngx_str_t                    body;
    ngx_pool_t                  *pool;
    const char                  *detail;
    ngx_http_chat_op_t          *op;
    ngx_http_chat_ws_pending_t  *pending;

    if (opcode == NGX_HTTP_CHAT_WS_TEXT && !ngx_http_chat_utf8_valid(p, len)) {
        ngx_http_chat_ws_fail(ws, NGX_HTTP_CHAT_WS_BAD_DATA,
                              "text is not valid UTF-8");
        return NGX_DONE;
    }

    if (ws->close_sent) {
        return NGX_OK;
    }

    if (opcode == NGX_HTTP_CHAT_WS_BINARY) {
        ngx_http_chat_ws_send_event(ws, "error", "binary messages are not "
                                    "supported: send JSON text");
        return ws->closed ? NGX_ERROR : NGX_OK;
    }

    body.data = p;
    body.len = len;

    json = ngx_http_chat_parse_object(&body, &detail);
    if (json == NULL) {
        ngx_http_chat_ws_send_event(ws, "error", detail);
        return ws->closed ? NGX_ERROR : NGX_OK;
    }

    type = cJSON_GetObjectItemCaseSensitive(json, "type");
    content = cJSON_GetObjectItemCaseSensitive(json, "content");
    detail = NULL;

    clen = 0;

    /* the checks and the words of a POST (ngx_http_chat_text_field) */

    if (!cJSON_IsString(type) || ngx_strcmp(type->valuestring, "message")) {
        detail = "\"type\" must be \"message\"";

    } else if (content == NULL) {
        detail = "field \"content\" is required";

    } else if (!cJSON_IsString(content)) {
        detail = "field \"content\" must be a string";

    } else {
        clen = ngx_strlen(content->valuestring);

        for (s = (u_char *) content->valuestring; *s; s++) {
            if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') {
                break;
            }
        }

        if (*s == '\0') {
            detail = "field \"content\" must not be empty";

        } else if (clen > ws->conf->max_content) {
            ngx_snprintf(buf, sizeof(buf) - 1, "field \"content\" is longer "
                         "than %uz bytes%Z", ws->conf->max_content);
            detail = (const char *) buf;
        }
    }

    if (detail == NULL && ws->pending_ops >= NGX_HTTP_CHAT_WS_MAX_PENDING) {
        detail = "too many messages waiting to be stored; wait for acks";
    }

    if (detail) {
        cJSON_Delete(json);
        ngx_http_chat_ws_send_event(ws, "error", detail);
        return ws->closed ? NGX_ERROR : NGX_OK;
    }

    /*
     * Stored exactly like a POST: same op, same thread pool.  The op may
     * outlive the connection (and its log, in the connection's pool): it
     * is stored even if the client goes away meanwhile.
     */

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        cJSON_Delete(json);
        ngx_http_chat_ws_finalize(ws);
        return NGX_ERROR;
    }

    op = ngx_http_chat_op_create(pool);
    pending = ngx_palloc(pool, sizeof(ngx_http_chat_ws_pending_t));
    copy = ngx_pnalloc(pool, clen + 1 + ws->user_id.len + 1 + 25);

    if (op == NULL || pending == NULL || copy == NULL) {
        cJSON_Delete(json);
        ngx_destroy_pool(pool);
        ngx_http_chat_ws_finalize(ws);
        return NGX_ERROR;
    }

    ngx_memcpy(copy, content->valuestring, clen + 1);
    cJSON_Delete(json);

    op->kind = NGX_HTTP_CHAT_OP_CREATE_MESSAGE;
    op->text = (const char *) copy;
    op->text_len = clen;
    copy += clen + 1;

    ngx_memcpy(copy, ws->user_id.data, ws->user_id.len);
    copy[ws->user_id.len] = '\0';
    op->user_id = (const char *) copy;
    copy += ws->user_id.len + 1;

    ngx_memcpy(copy, ws->group_id, 24);
    copy[24] = '\0';
    bson_oid_init_from_string(&op->group_id, (const char *) copy);

    pending->ws = ws;
    pending->pool = pool;
    pending->op = op;

    op->done = ngx_http_chat_ws_message_stored;
    op->data = pending;

    if (ws->pending_ops) {
        /* one at a time: it is posted once the previous one is stored */
        ngx_queue_insert_tail(&ws->waiting, &pending->queue);
        ws->pending_ops++;
        return NGX_OK;
    }

    if (ngx_http_chat_op_post(op) != NGX_OK) {
        ngx_destroy_pool(pool);
        ngx_http_chat_ws_send_event(ws, "error", "server busy, try again "
                                    "later");
        return ws->closed ? NGX_ERROR : NGX_OK;
    }

    ws->pending_ops++;

    return NGX_OK;
}


static void
ngx_http_chat_ws_message_stored(ngx_http_chat_op_t *op)
{
    u_char                      *p;
    size_t                       len;
    ngx_pool_t                  *pool;
    ngx_http_chat_ws_t          *ws;
    ngx_http_chat_frame_t       *frame;
    ngx_http_chat_ws_pending_t  *pending;

    pending = op->data;
    ws = pending->ws;
    pool = pending->pool;

    /*
     * ws->pending_ops still counts this op until the end: ws stays
     * allocated even if a delivery below (the sender is a subscriber of
     * the group too) finalizes the connection.
     */

    if (op->result == NGX_HTTP_CHAT_RES_OK && op->event_json) {
        ngx_http_chat_broadcast_publish(ws->group_id, op->event_json,
                                        op->event_json_len);
    }

    if (ws->closed || ws->close_sent) {
        goto done;
    }

    if (op->result != NGX_HTTP_CHAT_RES_OK || op->json == NULL) {
        if (op->result == NGX_HTTP_CHAT_RES_UNAVAILABLE
            || op->result == NGX_HTTP_CHAT_RES_ERROR)
        {
            ngx_log_error(NGX_LOG_ERR, ws->connection->log, 0,
                          "chat storage: %s", op->error);
        }

        ngx_http_chat_ws_send_event(ws, "error",
                                    op->result == NGX_HTTP_CHAT_RES_NOT_FOUND
                                    ? "group not found"
                                    : op->result
                                      == NGX_HTTP_CHAT_RES_UNAVAILABLE
                                      ? "database unavailable, try again "
                                        "later"
                                      : "internal error");
        goto done;
    }

    /* {"type":"ack","message":{...}} */

    len = sizeof("{\"type\":\"ack\",\"message\":}") - 1 + op->json_len;

    frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT, NULL, len);
    if (frame == NULL) {
        ngx_http_chat_ws_finalize(ws);
        goto done;
    }

    p = frame->data + frame->len - len;
    p = ngx_cpymem(p, "{\"type\":\"ack\",\"message\":",
                   sizeof("{\"type\":\"ack\",\"message\":") - 1);
    p = ngx_cpymem(p, op->json, op->json_len);
    *p = '}';

    ngx_http_chat_ws_send_frame(ws, frame);
    ngx_http_chat_frame_release(frame);

done:

    ngx_http_chat_op_release(op);
    ngx_destroy_pool(pool);

    /* the next message of the connection, stored even if it has gone */
    ngx_http_chat_ws_post_next(ws);

    if (--ws->pending_ops == 0 && ws->closed && !ws->timer.posted) {
        ngx_free(ws);
    }
}


/* posts the connection's oldest waiting message, if any */

static void
ngx_http_chat_ws_post_next(ngx_http_chat_ws_t *ws)
{
    ngx_queue_t                 *q;
    ngx_http_chat_ws_pending_t  *next;

    for ( ;; ) {

        if (ngx_queue_empty(&ws->waiting)) {
            return;
        }

        q = ngx_queue_head(&ws->waiting);
        next = ngx_queue_data(q, ngx_http_chat_ws_pending_t, queue);

        ngx_queue_remove(q);

        if (ngx_http_chat_op_post(next->op) == NGX_OK) {
            return;
        }

        /*
         * refused like a first message would be; the caller's op still
         * counts in ws->pending_ops, so ws stays
         */

        ngx_destroy_pool(next->pool);
        ws->pending_ops--;

        if (!ws->closed && !ws->close_sent) {
            ngx_http_chat_ws_send_event(ws, "error", "server busy, try "
                                        "again later");
        }
    }
}


/* {"type": ..., "detail": ..., "correlation_id": ...} */

static void
ngx_http_chat_ws_send_event(ngx_http_chat_ws_t *ws, const char *type,
    const char *detail)
{
    u_char                 *p;
    size_t                  len, dlen;
    ngx_http_chat_frame_t  *frame;

    dlen = ngx_strlen(detail);

    len = sizeof("{\"type\":\"\",\"detail\":\"\",\"correlation_id\":\"\"}") - 1
          + ngx_strlen(type) + dlen
          + ngx_escape_json(NULL, (u_char *) detail, dlen) + ws->cid.len;

    frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT, NULL, len);
    if (frame == NULL) {
        ngx_http_chat_ws_finalize(ws);
        return;
    }

    p = frame->data + frame->len - len;
    p = ngx_sprintf(p, "{\"type\":\"%s\",\"detail\":\"", type);
    p = (u_char *) ngx_escape_json(p, (u_char *) detail, dlen);
    p = ngx_sprintf(p, "\",\"correlation_id\":\"%V\"}", &ws->cid);

    ngx_http_chat_ws_send_frame(ws, frame);
    ngx_http_chat_frame_release(frame);
}


/* --- frames out ----------------------------------------------------------- */

ngx_http_chat_frame_t *
ngx_http_chat_frame_create(ngx_uint_t opcode, const u_char *payload,
    size_t len)
{
    u_char                 *p;
    size_t                  hlen;
    ngx_http_chat_frame_t  *frame;

    hlen = (len < 126) ? 2 : (len < 65536) ? 4 : 10;

    frame = ngx_alloc(sizeof(ngx_http_chat_frame_t) + hlen + len,
                      ngx_cycle->log);
    if (frame == NULL) {
        return NULL;
    }

    frame->refs = 1;
    frame->len = hlen + len;

    p = frame->data;
    *p++ = (u_char) (0x80 | opcode);               /* FIN, never masked */

    if (len < 126) {
        *p++ = (u_char) len;

    } else if (len < 65536) {
        *p++ = 126;
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;

    } else {
        *p++ = 127;
        *p++ = 0; *p++ = 0; *p++ = 0; *p++ = 0;
        *p++ = (u_char) (len >> 24);
        *p++ = (u_char) (len >> 16);
        *p++ = (u_char) (len >> 8);
        *p++ = (u_char) len;
    }

    if (payload) {
        ngx_memcpy(p, payload, len);
    }

    return frame;
}


void
ngx_http_chat_frame_release(ngx_http_chat_frame_t *frame)
{
    if (--frame->refs == 0) {
        ngx_free(frame);
    }
}


/* queue nodes are recycled per worker: no allocation per delivery */

static ngx_queue_t  ngx_http_chat_ws_free_nodes;
static ngx_uint_t   ngx_http_chat_ws_free_inited;


static ngx_http_chat_ws_out_t *
ngx_http_chat_ws_node(void)
{
    ngx_queue_t  *q;

    if (!ngx_http_chat_ws_free_inited) {
        ngx_queue_init(&ngx_http_chat_ws_free_nodes);
        ngx_http_chat_ws_free_inited = 1;
    }

    if (!ngx_queue_empty(&ngx_http_chat_ws_free_nodes)) {
        q = ngx_queue_head(&ngx_http_chat_ws_free_nodes);
        ngx_queue_remove(q);
        return ngx_queue_data(q, ngx_http_chat_ws_out_t, queue);
    }

    return ngx_alloc(sizeof(ngx_http_chat_ws_out_t), ngx_cycle->log);
}


static void
ngx_http_chat_ws_free_node(ngx_http_chat_ws_out_t *node)
{
    ngx_queue_insert_head(&ngx_http_chat_ws_free_nodes, &node->queue);
}


static void
ngx_http_chat_ws_enqueue(ngx_http_chat_ws_t *ws, ngx_http_chat_frame_t *frame)
{
    ngx_http_chat_ws_out_t  *node;

    node = ngx_http_chat_ws_node();
    if (node == NULL) {
        ngx_http_chat_ws_finalize(ws);
        return;
    }

    frame->refs++;
    node->frame = frame;
    ngx_queue_insert_tail(&ws->out, &node->queue);
    ws->out_count++;
}


void
ngx_http_chat_ws_send_frame(ngx_http_chat_ws_t *ws,
    ngx_http_chat_frame_t *frame)
{
    if (ws->closed || ws->close_sent) {
        return;
    }

    if (ws->out_count >= ws->conf->ws_send_queue) {
        ngx_log_error(NGX_LOG_WARN, ws->connection->log, 0,
                      "chat ws: \"%V\" in group %*s is %ui frames behind, "
                      "closing the slow consumer with 1008, "
                      "correlation_id=%V", &ws->user_id, (size_t) 24,
                      ws->group_id, ws->out_count, &ws->cid);

        ngx_http_chat_metrics_custom(&(ngx_str_t)
                                     ngx_string("ws_slow_consumer_closed"),
                                     &(ngx_http_chat_kv_t) {
                                         ngx_string("group_id"),
                                         { 24, ws->group_id } }, 1);

        ngx_http_chat_ws_drop_queue(ws, 1);
        ngx_http_chat_ws_close(ws, NGX_HTTP_CHAT_WS_POLICY,
                               "send queue full");
        return;
    }

    ngx_http_chat_ws_enqueue(ws, frame);

    if (!ws->closed && ws->out_count == 1) {
        (void) ngx_http_chat_ws_flush(ws);
    }
}


static void
ngx_http_chat_ws_write_handler(ngx_event_t *wev)
{
    ngx_connection_t    *c;
    ngx_http_chat_ws_t  *ws;

    c = wev->data;
    ws = c->data;

    (void) ngx_http_chat_ws_flush(ws);
}


/* writes what the socket takes; NGX_ERROR once ws is finalized */

static ngx_int_t
ngx_http_chat_ws_flush(ngx_http_chat_ws_t *ws)
{
    ssize_t                  n;
    ngx_queue_t             *q;
    ngx_connection_t        *c;
    ngx_http_chat_frame_t   *frame;
    ngx_http_chat_ws_out_t  *node;

    c = ws->connection;

    while (!ngx_queue_empty(&ws->out)) {
        q = ngx_queue_head(&ws->out);
        node = ngx_queue_data(q, ngx_http_chat_ws_out_t, queue);
        frame = node->frame;

        n = c->send(c, frame->data + ws->out_pos, frame->len - ws->out_pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_chat_ws_finalize(ws);
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        if (n == NGX_ERROR) {
            ngx_http_chat_ws_finalize(ws);
            return NGX_ERROR;
        }

        ws->out_pos += n;

        if (ws->out_pos < frame->len) {
            continue;
        }

        ws->out_pos = 0;
        ngx_queue_remove(q);
        ws->out_count--;
        ngx_http_chat_frame_release(frame);
        ngx_http_chat_ws_free_node(node);
    }

    if (ws->close_sent && ws->close_received) {
        if (ws->input_failed) {
            return ngx_http_chat_ws_linger(ws);
        }

        ngx_http_chat_ws_finalize(ws);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Our close frame is out after the peer's input failed: our FIN, then the
 * input is read and discarded until the peer's FIN, or until
 * chat_ws_close_timeout.  Closing the socket at once would answer the
 * rest of what it sends (say, a frame too big) with a RST, which may
 * destroy our close frame before the peer has read it.
 */

static ngx_int_t
ngx_http_chat_ws_linger(ngx_http_chat_ws_t *ws)
{
    ngx_connection_t  *c;

    c = ws->connection;

    if (ngx_shutdown_socket(c->fd, NGX_WRITE_SHUTDOWN) == -1) {
        /* the peer is gone already */
        ngx_http_chat_ws_finalize(ws);
        return NGX_ERROR;
    }

    /* what is already there, with the peer's FIN, comes with no new event */
    ngx_post_event(c->read, &ngx_posted_events);

    return NGX_OK;
}


static void
ngx_http_chat_ws_drop_queue(ngx_http_chat_ws_t *ws, ngx_uint_t keep_head)
{
    ngx_queue_t             *q, *next;
    ngx_http_chat_ws_out_t  *node;

    q = ngx_queue_head(&ws->out);

    /* a frame half written must be finished, or the stream is garbage */
    if (keep_head && ws->out_pos && q != ngx_queue_sentinel(&ws->out)) {
        q = ngx_queue_next(q);
    }

    while (q != ngx_queue_sentinel(&ws->out)) {
        next = ngx_queue_next(q);
        node = ngx_queue_data(q, ngx_http_chat_ws_out_t, queue);

        ngx_queue_remove(q);
        ws->out_count--;
        ngx_http_chat_frame_release(node->frame);
        ngx_http_chat_ws_free_node(node);

        q = next;
    }

    if (!keep_head) {
        ws->out_pos = 0;
    }
}


/* starts the closing handshake: our close frame, then wait for theirs */

static void
ngx_http_chat_ws_close(ngx_http_chat_ws_t *ws, ngx_uint_t code,
    const char *reason)
{
    u_char                  payload[125];
    size_t                  len;
    ngx_http_chat_frame_t  *frame;

    if (ws->closed || ws->close_sent) {
        return;
    }

    payload[0] = (u_char) (code >> 8);
    payload[1] = (u_char) code;
    len = ngx_min(ngx_strlen(reason), sizeof(payload) - 2);
    ngx_memcpy(payload + 2, reason, len);

    frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_CLOSE, payload,
                                       len + 2);
    if (frame == NULL) {
        ngx_http_chat_ws_finalize(ws);
        return;
    }

    /* the close frame goes out even past the queue limit */
    ngx_http_chat_ws_enqueue(ws, frame);
    ngx_http_chat_frame_release(frame);

    if (ws->closed) {
        return;
    }

    ws->close_sent = 1;

    ngx_reusable_connection(ws->connection, 0);
    ws->connection->idle = 0;

    if (ws->timer.timer_set) {
        ngx_del_timer(&ws->timer);
    }

    ngx_add_timer(&ws->timer, ws->conf->ws_close_timeout);

    if (ws->out_count == 1) {
        (void) ngx_http_chat_ws_flush(ws);
    }
}


/* a protocol error: logged, then the closing handshake with its code */

static void
ngx_http_chat_ws_fail(ngx_http_chat_ws_t *ws, ngx_uint_t code,
    const char *reason)
{
    if (ws->closed || ws->close_sent) {
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                  "chat ws: protocol error, closing with %ui: %s, "
                  "correlation_id=%V", code, reason, &ws->cid);

    /*
     * The peer's input is not parsed any more (after a framing error it
     * cannot be), so its close frame is not waited for (RFC 6455, 7.1.7):
     * close_received makes the rest be discarded, and the connection
     * lingers once our close frame is out.
     */

    if (ws->msg) {
        ngx_free(ws->msg);
        ws->msg = NULL;
    }

    ws->input_failed = 1;
    ws->close_received = 1;

    ngx_http_chat_ws_close(ws, code, reason);
}


static void
ngx_http_chat_ws_timer_handler(ngx_event_t *ev)
{
    ngx_msec_t              idle;
    ngx_http_chat_ws_t     *ws;
    ngx_http_chat_frame_t  *frame;

    ws = ev->data;

    if (ws->close_sent) {
        /* the peer did not answer our close frame in time */
        ngx_http_chat_ws_finalize(ws);
        return;
    }

    idle = ngx_current_msec - ws->last_recv;

    if (idle >= ws->conf->ws_idle_timeout) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "chat ws: \"%V\" silent for %M ms, closing, "
                      "correlation_id=%V", &ws->user_id, idle, &ws->cid);
        ngx_http_chat_ws_finalize(ws);
        return;
    }

    if (idle >= ws->conf->ws_ping_interval) {
        frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_PING,
                                           (u_char *) "ka", 2);
        if (frame == NULL) {
            ngx_http_chat_ws_finalize(ws);
            return;
        }

        ngx_http_chat_ws_send_frame(ws, frame);
        ngx_http_chat_frame_release(frame);

        if (ws->closed || ws->close_sent) {
            return;
        }
    }

    ngx_add_timer(&ws->timer, ws->conf->ws_ping_interval);
}


/* the end: unsubscribe, report, close the socket, free what we hold */

static void
ngx_http_chat_ws_finalize(ngx_http_chat_ws_t *ws)
{
    ngx_uint_t         count;
    ngx_connection_t  *c;

    if (ws->closed) {
        return;
    }

    ws->closed = 1;
    c = ws->connection;

    if (ws->subscribed) {
        count = ngx_http_chat_broadcast_unsubscribe(ws);
        ws->subscribed = 0;

        ngx_http_chat_metrics_ws_event(0, &(ngx_str_t) { 24, ws->group_id },
                                       &ws->user_id, count);

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "chat ws: \"%V\" left group %*s (%ui here), "
                      "correlation_id=%V", &ws->user_id, (size_t) 24,
                      ws->group_id, count, &ws->cid);
    }

    if (ws->timer.timer_set) {
        ngx_del_timer(&ws->timer);
    }

    if (ws->timer.posted) {
        ngx_delete_posted_event(&ws->timer);
    }

    ngx_http_chat_ws_drop_queue(ws, 0);

    if (ws->partial) {
        ngx_free(ws->partial);
        ws->partial = NULL;
    }

    if (ws->msg) {
        ngx_free(ws->msg);
        ws->msg = NULL;
    }

    ws->connection = NULL;
    ngx_http_close_connection(c);

    /*
     * ws itself goes later: the callers up the stack (a send in a frame
     * handler, a delivery to the group) still look at ws->closed.  The
     * timer event is free now; it is posted to run once they are done.
     */

    ws->timer.handler = ngx_http_chat_ws_free_handler;
    ws->timer.log = ngx_cycle->log;
    ngx_post_event(&ws->timer, &ngx_posted_events);
}


static void
ngx_http_chat_ws_free_handler(ngx_event_t *ev)
{
    ngx_http_chat_ws_t  *ws;

    ws = ev->data;

    /*
     * a message still being stored needs the struct for its ack: then
     * ngx_http_chat_ws_message_stored() frees it
     */

    if (ws->pending_ops == 0) {
        ngx_free(ws);
    }
}


/* --- protocol checks without I/O ----------------------------------------- */

ngx_int_t
ngx_http_chat_ws_parse_frame(const u_char *p, size_t len, size_t max_payload,
    ngx_http_chat_ws_frame_t *f)
{
    size_t     hlen;
    uint64_t   plen;
    ngx_uint_t l7, i;

    f->close_code = NGX_HTTP_CHAT_WS_PROTOCOL;

    if (len < 2) {
        return NGX_AGAIN;
    }

    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 7;
    f->opcode = p[0] & 0x0f;
    f->masked = p[1] >> 7;
    l7 = p[1] & 0x7f;

    if (f->rsv) {
        return NGX_ERROR;                        /* no extension agreed */
    }

    switch (f->opcode) {
    case NGX_HTTP_CHAT_WS_CONT:
    case NGX_HTTP_CHAT_WS_TEXT:
    case NGX_HTTP_CHAT_WS_BINARY:
    case NGX_HTTP_CHAT_WS_CLOSE:
    case NGX_HTTP_CHAT_WS_PING:
    case NGX_HTTP_CHAT_WS_PONG:
        break;
    default:
        return NGX_ERROR;                        /* reserved opcode */
    }

    if (!f->masked) {
        return NGX_ERROR;                        /* clients must mask */
    }

    if ((f->opcode & 0x8) && (!f->fin || l7 > 125)) {
        return NGX_ERROR;                        /* control frame rules */
    }

    hlen = 2;

    if (l7 == 126) {
        if (len < 4) {
            return NGX_AGAIN;
        }

        plen = ((uint64_t) p[2] << 8) | p[3];
        hlen = 4;

        if (plen < 126) {
            return NGX_ERROR;                    /* not the minimal form */
        }

    } else if (l7 == 127) {
        if (len < 10) {
            return NGX_AGAIN;
        }

        plen = 0;
        for (i = 0; i < 8; i++) {
            plen = (plen << 8) | p[2 + i];
        }

        hlen = 10;

        if (plen >> 63 || plen < 65536) {
            return NGX_ERROR;
        }

    } else {
        plen = l7;
    }

    if (plen > max_payload) {
        f->close_code = NGX_HTTP_CHAT_WS_TOO_BIG;
        return NGX_ERROR;
    }

    if (len < hlen + 4) {
        return NGX_AGAIN;
    }

    ngx_memcpy(f->mask, p + hlen, 4);

    f->payload_len = plen;
    f->header_len = hlen + 4;

    return NGX_OK;
}


/*
 * A close frame's payload: empty, or a valid code and a UTF-8 reason.
 * *code is the code to answer with: the peer's, or the error's.
 */

ngx_int_t
ngx_http_chat_ws_check_close_payload(const u_char *p, size_t len,
    ngx_uint_t *code)
{
    ngx_uint_t  c;

    *code = 0;

    if (len == 0) {
        return NGX_OK;
    }

    if (len == 1) {
        *code = NGX_HTTP_CHAT_WS_PROTOCOL;
        return NGX_ERROR;
    }

    c = ((ngx_uint_t) p[0] << 8) | p[1];

    if (!((c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014)
          || (c >= 3000 && c <= 4999)))
    {
        *code = NGX_HTTP_CHAT_WS_PROTOCOL;
        return NGX_ERROR;
    }

    if (!ngx_http_chat_utf8_valid(p + 2, len - 2)) {
        *code = NGX_HTTP_CHAT_WS_BAD_DATA;
        return NGX_ERROR;
    }

    *code = c;

    return NGX_OK;
}
