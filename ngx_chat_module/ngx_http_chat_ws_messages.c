/*
 * ngx_http_chat_ws_messages.c - the chat over a WebSocket: a client's
 * {"type":"message","content":"..."} is checked as a POST would be,
 * stored through the same op on the thread pool, broadcast to the group
 * and answered with {"type":"ack","message":{...}} or an error event.
 *
 * A connection's messages are stored one at a time, in the order they
 * came, so that acks, broadcasts and the stored order all follow the
 * order sent: the one being stored is on the thread pool, the others
 * (at most NGX_HTTP_CHAT_WS_MAX_PENDING - 1 per connection) wait in the
 * connection's queue.  The frames and the connection are
 * ngx_http_chat_ws_connection.c's.
 *
 * chat_ws_message_rate N: every data message a client sends (text or
 * binary, valid or not; not control frames) takes a token from a bucket
 * of N that refills at N a second, continuously (like limit_req with
 * burst=N nodelay): a connection idle for a second may send N at once,
 * then one every 1/N s.  A message with no token is refused, not
 * stored, and answered with an error event; the (N+1)-th refused in a
 * row (a whole second's worth more than allowed, every one refused)
 * closes the connection with 1008.  An accepted message resets the count.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <bson/bson.h>
#include <cjson/cJSON.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_render.h"
#include "ngx_http_chat_websocket.h"
#include "ngx_http_chat_broadcast.h"


#define NGX_HTTP_CHAT_WS_MAX_PENDING   8      /* messages being stored
                                                 or waiting to be */


typedef struct {
    ngx_queue_t                 queue;          /* while waiting */
    ngx_http_chat_ws_t         *ws;
    ngx_pool_t                 *pool;
    ngx_http_chat_op_t         *op;
} ngx_http_chat_ws_pending_t;


static void ngx_http_chat_ws_message_stored(ngx_http_chat_op_t *op);
static void ngx_http_chat_ws_post_next(ngx_http_chat_ws_t *ws);
static ngx_int_t ngx_http_chat_ws_rate(ngx_http_chat_ws_t *ws);


/* a whole message: the chat protocol speaks JSON text */

ngx_int_t
ngx_http_chat_ws_message(ngx_http_chat_ws_t *ws, ngx_uint_t opcode,
    u_char *p, size_t len)
{
    cJSON                       *json, *type;
    u_char                      *copy, buf[96];
    ngx_str_t                    body, content;
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

    switch (ngx_http_chat_ws_rate(ws)) {

    case NGX_DECLINED:
        ngx_snprintf(buf, sizeof(buf) - 1, "message rate limit exceeded: at "
                     "most %ui messages a second%Z",
                     ws->conf->ws_message_rate);
        ngx_http_chat_ws_send_event(ws, "error", (const char *) buf);
        return ws->closed ? NGX_ERROR : NGX_OK;

    case NGX_ABORT:
        ngx_log_error(NGX_LOG_WARN, ws->connection->log, 0,
                      "chat ws: %ui messages in a row over "
                      "chat_ws_message_rate %ui, closing with 1008, "
                      "user=\"%V\", correlation_id=%V", ws->rate_refused,
                      ws->conf->ws_message_rate, &ws->user_id, &ws->cid);
        ngx_http_chat_ws_fail(ws, NGX_HTTP_CHAT_WS_POLICY,
                              "message rate limit exceeded");
        return NGX_DONE;

    default:
        break;
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
    detail = NULL;

    /* the checks and the words of a POST */

    if (!cJSON_IsString(type) || ngx_strcmp(type->valuestring, "message")) {
        detail = "\"type\" must be \"message\"";

    } else if (ngx_http_chat_text_field(json, "content",
                                        ws->conf->max_content, 0, &content,
                                        buf, sizeof(buf))
               != NGX_OK)
    {
        detail = (const char *) buf;
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
    copy = ngx_pnalloc(pool, content.len + 1 + ws->user_id.len + 1);

    if (op == NULL || pending == NULL || copy == NULL) {
        cJSON_Delete(json);
        ngx_destroy_pool(pool);
        ngx_http_chat_ws_finalize(ws);
        return NGX_ERROR;
    }

    ngx_memcpy(copy, content.data, content.len);
    copy[content.len] = '\0';
    cJSON_Delete(json);

    op->kind = NGX_HTTP_CHAT_OP_CREATE_MESSAGE;
    op->text = (const char *) copy;
    op->text_len = content.len;
    copy += content.len + 1;

    ngx_memcpy(copy, ws->user_id.data, ws->user_id.len);
    copy[ws->user_id.len] = '\0';
    op->user_id = (const char *) copy;
    copy += ws->user_id.len + 1;

    (void) ngx_http_chat_oid_parse(ws->group_id, NGX_HTTP_CHAT_OID_LEN,
                                   &op->group_id);  /* checked at handshake */

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
    size_t                       len;
    ngx_pool_t                  *pool;
    const char                  *detail;
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
        ngx_http_chat_broadcast_publish(ws->group_id, op->seq,
                                        op->event_json,
                                        op->event_json_len);
    }

    if (ws->closed || ws->close_sent) {
        goto done;
    }

    if (op->result != NGX_HTTP_CHAT_RES_OK) {
        (void) ngx_http_chat_op_status(op, ws->connection->log, &detail);
        ngx_http_chat_ws_send_event(ws, "error", detail);
        goto done;
    }

    if (op->json == NULL) {
        ngx_http_chat_ws_send_event(ws, "error", "internal error");
        goto done;
    }

    len = ngx_http_chat_render_ack_size(op->json_len);

    frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT, NULL, len);
    if (frame == NULL) {
        ngx_http_chat_ws_finalize(ws);
        goto done;
    }

    (void) ngx_http_chat_render_ack(frame->data + frame->len - len,
                                    op->json, op->json_len);

    ngx_http_chat_ws_send_frame(ws, frame);
    ngx_http_chat_frame_release(frame);

done:

    ngx_http_chat_op_release(op);
    ngx_destroy_pool(pool);

    /* the next message of the connection, stored even if it has gone */
    ngx_http_chat_ws_post_next(ws);

    ws->pending_ops--;
    ngx_http_chat_ws_maybe_free(ws);
}


/*
 * The token bucket of chat_ws_message_rate, kept as limit_req keeps it:
 * the "excess" over a full bucket in thousandths of a message, drained by
 * the time elapsed.  NGX_OK: the message counts; NGX_DECLINED: refused;
 * NGX_ABORT: refused, and it persists (see the top of this file).
 */

static ngx_int_t
ngx_http_chat_ws_rate(ngx_http_chat_ws_t *ws)
{
    ngx_uint_t      rate, drained;
    ngx_msec_int_t  ms;

    rate = ws->conf->ws_message_rate;

    if (rate == 0) {
        return NGX_OK;
    }

    ms = (ngx_msec_int_t) (ngx_current_msec - ws->rate_last);

    if (ws->rate_last == 0 || ms >= 1000) {
        ws->rate_excess = 0;             /* a second refills the bucket */

    } else if (ms > 0) {
        drained = (ngx_uint_t) ms * rate;
        ws->rate_excess = (drained >= ws->rate_excess)
                          ? 0 : ws->rate_excess - drained;
    }

    ws->rate_last = ngx_current_msec;

    if (ws->rate_excess + 1000 > rate * 1000) {
        ws->rate_refused++;
        return (ws->rate_refused > rate) ? NGX_ABORT : NGX_DECLINED;
    }

    ws->rate_excess += 1000;
    ws->rate_refused = 0;

    return NGX_OK;
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

void
ngx_http_chat_ws_send_event(ngx_http_chat_ws_t *ws, const char *type,
    const char *detail)
{
    size_t                  len;
    ngx_http_chat_frame_t  *frame;

    len = ngx_http_chat_render_error_size(type, detail, &ws->cid);

    frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT, NULL, len);
    if (frame == NULL) {
        ngx_http_chat_ws_finalize(ws);
        return;
    }

    (void) ngx_http_chat_render_error(frame->data + frame->len - len, type,
                                      detail, &ws->cid);

    ngx_http_chat_ws_send_frame(ws, frame);
    ngx_http_chat_frame_release(frame);
}

