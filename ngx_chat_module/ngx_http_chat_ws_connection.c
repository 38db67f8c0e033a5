/*
 * ngx_http_chat_ws_connection.c - a WebSocket connection after the
 * upgrade: frames in, frames out, pings, the closing handshake.
 *
 * Frames are read into a per-worker scratch buffer and parsed in place;
 * only an incomplete frame or a fragmented message is copied into memory
 * of the connection's own, so an idle subscriber holds no buffers.  Frames
 * out are shared (one encoding per event for every subscriber of the
 * worker) and queued up to chat_ws_send_queue frames: a consumer that
 * falls further behind is closed with 1008 instead of growing memory.
 * A whole message goes to ngx_http_chat_ws_messages.c.
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

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_metrics.h"
#include "ngx_http_chat_websocket.h"


#define NGX_HTTP_CHAT_WS_READ_SIZE     65536


typedef struct {
    ngx_queue_t                 queue;
    ngx_http_chat_frame_t      *frame;
} ngx_http_chat_ws_out_t;


static void ngx_http_chat_ws_deliver(ngx_http_chat_subscriber_t *s,
    ngx_http_chat_frame_t *frame);
static void ngx_http_chat_ws_read_handler(ngx_event_t *rev);
static void ngx_http_chat_ws_write_handler(ngx_event_t *wev);
static void ngx_http_chat_ws_timer_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_chat_ws_input(ngx_http_chat_ws_t *ws, u_char *p,
    size_t len);
static ngx_int_t ngx_http_chat_ws_consume(ngx_http_chat_ws_t *ws, u_char *p,
    size_t len, size_t *used);
static ngx_int_t ngx_http_chat_ws_frame(ngx_http_chat_ws_t *ws,
    ngx_http_chat_ws_frame_t *f, u_char *payload);
static void ngx_http_chat_ws_close(ngx_http_chat_ws_t *ws, ngx_uint_t code,
    const char *reason);
static ngx_int_t ngx_http_chat_ws_flush(ngx_http_chat_ws_t *ws);
static ngx_int_t ngx_http_chat_ws_linger(ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_free_handler(ngx_event_t *ev);
static void ngx_http_chat_ws_drop_queue(ngx_http_chat_ws_t *ws,
    ngx_uint_t keep_head);


static u_char  ngx_http_chat_ws_rbuf[NGX_HTTP_CHAT_WS_READ_SIZE];


/*
 * The connection is the WebSocket's: its handlers, the ping timer, the
 * group; the 101 response is its first frame out.
 */

void
ngx_http_chat_ws_open(ngx_http_chat_ws_t *ws, ngx_http_chat_frame_t *response)
{
    ngx_uint_t         count;
    ngx_connection_t  *c;

    c = ws->connection;

    c->read->handler = ngx_http_chat_ws_read_handler;
    c->write->handler = ngx_http_chat_ws_write_handler;

    ws->last_recv = ngx_current_msec;

    ws->timer.handler = ngx_http_chat_ws_timer_handler;
    ws->timer.data = ws;
    ws->timer.log = c->log;
    ngx_add_timer(&ws->timer, ws->conf->ws_ping_interval);

    ws->subscriber.send = ngx_http_chat_ws_deliver;
    ws->subscriber.hold = ngx_http_chat_ws_resume_hold;
    count = ngx_http_chat_groups_join(&ws->subscriber, ws->group_id,
                                      ws->start);
    ws->subscribed = 1;

    ngx_http_chat_metrics_ws_event(1, &ws->group, &ws->user_id, count);

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "chat ws: \"%V\" joined group %V (%ui here), "
                  "correlation_id=%V", &ws->user_id, &ws->group, count,
                  &ws->cid);

    /* idle in nginx's sense: a graceful shutdown closes it with 1001 */
    c->idle = 1;
    ngx_reusable_connection(c, 1);

    ngx_http_chat_ws_send_frame(ws, response);
    ngx_http_chat_frame_release(response);

    if (ws->closed) {
        return;
    }

    /* the replay of since=, if any, then the group's live events */

    ngx_http_chat_ws_resume_start(ws);

    if (ws->closed) {
        return;
    }

    /*
     * The worker began to shut down while the group was looked up: nginx
     * closed its idle connections already, so this one is told now, or
     * its pings would keep the old worker alive.
     */

    if (ngx_exiting || ngx_terminate) {
        c->close = 1;
        ngx_post_event(c->read, &ngx_posted_events);
        return;
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
}


/* the registry's way to this subscriber: an event of its group */

static void
ngx_http_chat_ws_deliver(ngx_http_chat_subscriber_t *s,
    ngx_http_chat_frame_t *frame)
{
    ngx_http_chat_ws_send_frame((ngx_http_chat_ws_t *)
                                ((u_char *) s
                                 - offsetof(ngx_http_chat_ws_t, subscriber)),
                                frame);
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
    ssize_t            n;
    ngx_connection_t  *c;

    if (ws->closed || ws->close_sent) {
        return;
    }

    if (ws->out_count >= ws->conf->ws_send_queue) {
        ngx_log_error(NGX_LOG_WARN, ws->connection->log, 0,
                      "chat ws: \"%V\" in group %V is %ui frames behind, "
                      "closing the slow consumer with 1008, "
                      "correlation_id=%V", &ws->user_id, &ws->group,
                      ws->out_count, &ws->cid);

        ngx_http_chat_metrics_custom(&(ngx_str_t)
                                     ngx_string("ws_slow_consumer_closed"),
                                     &(ngx_http_chat_kv_t) {
                                         ngx_string("group_id"), ws->group },
                                     1);

        ngx_http_chat_ws_drop_queue(ws, 1);
        ngx_http_chat_ws_close(ws, NGX_HTTP_CHAT_WS_POLICY,
                               "send queue full");
        return;
    }

    if (ws->out_count) {
        /* the write handler sends it after the ones before it */
        ngx_http_chat_ws_enqueue(ws, frame);
        return;
    }

    /*
     * Nothing waits: the frame goes straight from the shared buffer to
     * the socket, and is queued (a reference taken) only for what the
     * socket did not take.  The common fan-out case costs one send().
     */

    c = ws->connection;

    n = c->send(c, frame->data, frame->len);

    if (n == (ssize_t) frame->len) {
        if (ws->resume_waits) {
            ngx_http_chat_ws_resume_drained(ws);
        }

        return;
    }

    if (n == NGX_ERROR) {
        ngx_http_chat_ws_finalize(ws);
        return;
    }

    ngx_http_chat_ws_enqueue(ws, frame);

    if (ws->closed) {
        return;
    }

    if (n > 0) {
        ws->out_pos = n;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_http_chat_ws_finalize(ws);
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

    if (ws->resume_waits) {
        ngx_http_chat_ws_resume_drained(ws);
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

void
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

void
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
        count = ngx_http_chat_groups_leave(&ws->subscriber);
        ws->subscribed = 0;

        ngx_http_chat_metrics_ws_event(0, &ws->group, &ws->user_id, count);

        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "chat ws: \"%V\" left group %V (%ui here), "
                      "correlation_id=%V", &ws->user_id, &ws->group, count,
                      &ws->cid);
    }

    if (ws->timer.timer_set) {
        ngx_del_timer(&ws->timer);
    }

    if (ws->timer.posted) {
        ngx_delete_posted_event(&ws->timer);
    }

    if (ws->resume.timer_set) {
        ngx_del_timer(&ws->resume);
    }

    if (ws->resume.posted) {
        ngx_delete_posted_event(&ws->resume);
    }

    ngx_http_chat_ws_resume_release(ws);

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
    ngx_http_chat_ws_maybe_free(ev->data);
}


/*
 * A message still being stored needs the struct for its ack, a page of
 * events being read for its handler: the last of them frees it
 * (ngx_http_chat_ws_message_stored(), ngx_http_chat_ws_resume.c).
 */

void
ngx_http_chat_ws_maybe_free(ngx_http_chat_ws_t *ws)
{
    if (ws->closed && ws->pending_ops == 0 && !ws->reading
        && !ws->timer.posted)
    {
        ngx_free(ws);
    }
}

