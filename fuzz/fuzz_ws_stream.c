/*
 * fuzz_ws_stream.c - a WebSocket connection after the handshake, driven
 * through the module's own event handlers: ngx_http_chat_ws_read_handler()
 * (recv -> ngx_http_chat_ws_input -> _consume -> _frame -> _message),
 * the write handler, the timer, and storage completions
 * (ngx_http_chat_ws_message_stored).  The connection is opened with
 * ngx_http_chat_ws_open(), as the upgrade leaves it; the module's
 * connection, messages and codec files are linked as they are.
 *
 * The event loop around it is faked here, each fake as strict as the
 * real thing where it matters: the connection is freed when the module
 * closes it (so any later use is a use-after-free), a timer left armed
 * on freed memory fires, send() fails, stalls or writes part when the
 * input says so, and a message handed to storage is completed later, in
 * input order, with the result the input picks.
 *
 * Input: 4 header bytes (limits), then steps; see the switch below.
 *
 * Checked besides ASan/UBSan/LSan: what the server sends is a sequence of
 * well-formed unmasked frames, text frames are JSON objects, the close
 * frame carries a valid code and nothing follows it; at the end the
 * connection is closed, no timer is armed, no op is pending and nothing
 * leaks.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_json.h"
#include "ngx_http_chat_storage.h"
#include "ngx_http_chat_metrics.h"
#include "ngx_http_chat_websocket.h"
#include "ngx_http_chat_broadcast.h"

#include "fuzz_common.h"
#include "ngx_shim.h"


/* --- the fake event loop ------------------------------------------------ */

ngx_rbtree_t   ngx_event_timer_rbtree;
ngx_queue_t    ngx_posted_events;


/* ngx_event_process_posted(), after every step like after every epoll
 * round; an event that keeps posting itself is a livelock */
static void
run_posted(void)
{
    int           n;
    ngx_queue_t  *q;
    ngx_event_t  *ev;

    for (n = 0; !ngx_queue_empty(&ngx_posted_events); n++) {
        FUZZ_CHECK(n < 1000);
        q = ngx_queue_head(&ngx_posted_events);
        ev = ngx_queue_data(q, ngx_event_t, queue);
        ngx_delete_posted_event(ev);
        ev->handler(ev);
    }
}

#define FAKE_TIMERS  8

static ngx_event_t  *fake_timers[FAKE_TIMERS];


static ngx_event_t *
timer_event(ngx_rbtree_node_t *node)
{
    return (ngx_event_t *) ((u_char *) node - offsetof(ngx_event_t, timer));
}


void
ngx_rbtree_insert(ngx_rbtree_t *tree, ngx_rbtree_node_t *node)
{
    int  i, free_slot = -1;

    for (i = 0; i < FAKE_TIMERS; i++) {
        FUZZ_CHECK(fake_timers[i] == NULL
                   || &fake_timers[i]->timer != node);   /* armed twice */
        if (fake_timers[i] == NULL && free_slot < 0) {
            free_slot = i;
        }
    }

    FUZZ_CHECK(free_slot >= 0);
    fake_timers[free_slot] = timer_event(node);
}


void
ngx_rbtree_delete(ngx_rbtree_t *tree, ngx_rbtree_node_t *node)
{
    int  i;

    for (i = 0; i < FAKE_TIMERS; i++) {
        if (fake_timers[i] && &fake_timers[i]->timer == node) {
            fake_timers[i] = NULL;
            return;
        }
    }

    shim_panic("ngx_rbtree_delete: timer not armed");
}


/* ngx_event_expire_timers(): due timers leave the tree, then fire */
static void
expire_timers(void)
{
    int           i;
    ngx_event_t  *ev;

    for (i = 0; i < FAKE_TIMERS; i++) {
        ev = fake_timers[i];
        if (ev == NULL
            || (ngx_msec_int_t) (ev->timer.key - ngx_current_msec) > 0)
        {
            continue;
        }

        fake_timers[i] = NULL;
        ev->timer_set = 0;
        ev->timedout = 1;
        ev->handler(ev);
    }
}


static int
timers_armed(void)
{
    int  i, n = 0;

    for (i = 0; i < FAKE_TIMERS; i++) {
        n += fake_timers[i] != NULL;
    }

    return n;
}


/* the connection */

enum { SEND_ALL, SEND_PART, SEND_AGAIN, SEND_FAIL };

static ngx_connection_t  *conn;
static int                send_mode;
static int                sock = -1;     /* for ngx_shutdown_socket() */


/* what shutdown(fd, SHUT_WR) sees: a socket, or none once the peer has
 * reset the connection (then send fails too) */
static void
set_send_mode(int mode)
{
    send_mode = mode;
    if (conn) {
        conn->fd = (mode == SEND_FAIL) ? -1 : sock;
    }
}

static u_char            *rx;            /* what the peer sent, not read */
static size_t             rx_len, rx_pos, rx_chunk;
static int                rx_end;        /* 0, or after rx: 1 EOF, 2 error */

static u_char            *tx;            /* what the server sent */
static size_t             tx_len, tx_size;


static ssize_t
fake_send(ngx_connection_t *c, u_char *buf, size_t size)
{
    FUZZ_CHECK(c == conn && size > 0);

    switch (send_mode) {
    case SEND_AGAIN:
        return NGX_AGAIN;
    case SEND_FAIL:
        return NGX_ERROR;
    case SEND_PART:
        if (size > 1) {
            size = (size + 1) / 2;
        }
        break;
    }

    if (tx_len + size > tx_size) {
        tx_size = (tx_len + size) * 2;
        tx = realloc(tx, tx_size);
    }

    memcpy(tx + tx_len, buf, size);
    tx_len += size;

    return size;
}


static ssize_t
fake_recv(ngx_connection_t *c, u_char *buf, size_t size)
{
    size_t  n;

    FUZZ_CHECK(c == conn);

    if (rx_pos == rx_len) {
        if (rx_end) {
            return rx_end == 1 ? 0 : NGX_ERROR;
        }
        return NGX_AGAIN;
    }

    n = rx_len - rx_pos;
    if (rx_chunk && n > rx_chunk) {
        n = rx_chunk;
    }
    if (n > size) {
        n = size;
    }

    memcpy(buf, rx + rx_pos, n);
    rx_pos += n;

    return n;
}


ngx_int_t
ngx_handle_read_event(ngx_event_t *rev, ngx_uint_t flags)
{
    FUZZ_CHECK(conn && rev == conn->read);
    return NGX_OK;
}


ngx_int_t
ngx_handle_write_event(ngx_event_t *wev, size_t lowat)
{
    FUZZ_CHECK(conn && wev == conn->write);
    return NGX_OK;
}


void
ngx_reusable_connection(ngx_connection_t *c, ngx_uint_t reusable)
{
    FUZZ_CHECK(c == conn);
}


/* frees what nginx would free: any later use is a use-after-free;
 * like ngx_close_connection(), takes its events off the posted queue */
void
ngx_http_close_connection(ngx_connection_t *c)
{
    FUZZ_CHECK(c == conn);
    FUZZ_CHECK(!c->read->timer_set && !c->write->timer_set);

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }
    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    free(c->read);
    free(c->write);
    free(c);
    conn = NULL;
}


/* --- the module's other files ------------------------------------------ */

static int  subscribed;

ngx_uint_t
ngx_http_chat_groups_join(ngx_http_chat_subscriber_t *s,
    const u_char *group_id)
{
    FUZZ_CHECK(!subscribed && s->send != NULL);
    subscribed = 1;
    return 1;
}


ngx_uint_t
ngx_http_chat_groups_leave(ngx_http_chat_subscriber_t *s)
{
    FUZZ_CHECK(subscribed);
    subscribed = 0;
    return 0;
}


/* the replay of since= (ngx_http_chat_ws_resume.c): none in the fuzzer */

void
ngx_http_chat_ws_resume_start(ngx_http_chat_ws_t *ws)
{
}


void
ngx_http_chat_ws_resume_drained(ngx_http_chat_ws_t *ws)
{
}


void
ngx_http_chat_broadcast_publish(const u_char *group_id_hex, int64_t seq,
    const char *json, size_t len)
{
    volatile u_char  sink = 0;
    size_t           i;

    for (i = 0; i < 24; i++) {
        sink ^= group_id_hex[i];
    }
    for (i = 0; i < len; i++) {
        sink ^= (u_char) json[i];
    }
    (void) sink;
}


void
ngx_http_chat_metrics_ws_event(ngx_uint_t connected, ngx_str_t *group_id,
    ngx_str_t *user_id, ngx_uint_t worker_group_count)
{
    FUZZ_CHECK(group_id->len == 24 && user_id->len <= 64);
    (void) ngx_http_chat_utf8_valid(group_id->data, group_id->len);
    (void) ngx_http_chat_utf8_valid(user_id->data, user_id->len);
}


void
ngx_http_chat_metrics_custom(ngx_str_t *event_type, ngx_http_chat_kv_t *kv,
    ngx_uint_t n)
{
    ngx_uint_t  i;

    (void) ngx_http_chat_utf8_valid(event_type->data, event_type->len);
    for (i = 0; i < n; i++) {
        (void) ngx_http_chat_utf8_valid(kv[i].key.data, kv[i].key.len);
        (void) ngx_http_chat_utf8_valid(kv[i].value.data, kv[i].value.len);
    }
}


/* storage: ops run "on the thread pool" until the input completes them */

#define FAKE_OPS  64

static ngx_http_chat_op_t  *ops[FAKE_OPS];
static int                  nops;
static int                  post_busy;


ngx_http_chat_op_t *
ngx_http_chat_op_create(ngx_pool_t *pool)
{
    return ngx_pcalloc(pool, sizeof(ngx_http_chat_op_t));
}


ngx_int_t
ngx_http_chat_op_post(ngx_http_chat_op_t *op)
{
    FUZZ_CHECK(op->done != NULL && op->text != NULL);
    FUZZ_CHECK(strlen(op->text) == op->text_len);

    if (post_busy || nops == FAKE_OPS) {
        return NGX_BUSY;
    }

    ops[nops++] = op;

    return NGX_OK;
}


void
ngx_http_chat_op_release(ngx_http_chat_op_t *op)
{
    free(op->json);
    free(op->event_json);
    op->json = NULL;
    op->event_json = NULL;
}


static void
complete_op(unsigned how)
{
    ngx_http_chat_op_t  *op;

    if (nops == 0) {
        return;
    }

    op = ops[0];
    memmove(ops, ops + 1, --nops * sizeof(ops[0]));

    switch (how & 3) {
    case 0:
        op->result = NGX_HTTP_CHAT_RES_OK;
        op->json = strdup("{\"id\":\"0123456789abcdef01234567\"}");
        op->json_len = strlen(op->json);
        op->event_json = strdup("{\"type\":\"message\"}");
        op->event_json_len = strlen(op->event_json);
        break;
    case 1:
        op->result = NGX_HTTP_CHAT_RES_NOT_FOUND;
        break;
    case 2:
        op->result = NGX_HTTP_CHAT_RES_UNAVAILABLE;
        strcpy(op->error, "no server");
        break;
    default:
        op->result = NGX_HTTP_CHAT_RES_ERROR;
        strcpy(op->error, "failed");
        break;
    }

    op->done(op);
}


/* --- what the server sent ------------------------------------------------ */

static const char  preamble[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";


static void
check_output(int complete)
{
    size_t    pos, hlen, plen;
    u_char   *p;
    unsigned  op, code;
    int       closed = 0;
    cJSON    *json;

    if (tx_len < sizeof(preamble) - 1) {
        return;
    }

    FUZZ_CHECK(memcmp(tx, preamble, sizeof(preamble) - 1) == 0);
    pos = sizeof(preamble) - 1;

    while (pos < tx_len) {
        p = tx + pos;

        if (tx_len - pos < 2) {
            break;
        }

        FUZZ_CHECK(p[0] & 0x80);                 /* FIN, no RSV */
        FUZZ_CHECK((p[0] & 0x70) == 0);
        FUZZ_CHECK((p[1] & 0x80) == 0);          /* server: unmasked */
        FUZZ_CHECK(!closed);                     /* nothing after close */

        op = p[0] & 0x0f;
        plen = p[1] & 0x7f;
        hlen = 2;

        if (plen == 126) {
            if (tx_len - pos < 4) break;
            plen = (p[2] << 8) | p[3];
            hlen = 4;
            FUZZ_CHECK(plen >= 126);
        } else if (plen == 127) {
            if (tx_len - pos < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | p[2 + i];
            hlen = 10;
            FUZZ_CHECK(plen >= 65536);
        }

        if (tx_len - pos - hlen < plen) {
            break;
        }

        p += hlen;

        switch (op) {
        case NGX_HTTP_CHAT_WS_TEXT:
            FUZZ_CHECK(ref_utf8_valid(p, plen));
            json = cJSON_ParseWithLength((const char *) p, plen);
            FUZZ_CHECK(json != NULL && cJSON_IsObject(json));
            FUZZ_CHECK(cJSON_IsString(cJSON_GetObjectItem(json, "type")));
            cJSON_Delete(json);
            break;
        case NGX_HTTP_CHAT_WS_PING:
        case NGX_HTTP_CHAT_WS_PONG:
            FUZZ_CHECK(plen <= 125);
            break;
        case NGX_HTTP_CHAT_WS_CLOSE:
            FUZZ_CHECK(plen >= 2 && plen <= 125);
            code = (p[0] << 8) | p[1];
            FUZZ_CHECK(ref_close_code_ok(code));
            FUZZ_CHECK(ref_utf8_valid(p + 2, plen - 2));
            closed = 1;
            break;
        default:
            shim_panic("server sent an unexpected opcode");
        }

        pos += hlen + plen;
    }

    if (complete) {
        FUZZ_CHECK(pos == tx_len);
    }
}


/* --- the harness ------------------------------------------------------- */

static const size_t  limits[4][2] = {     /* max frame, max message */
    { 65536, 65536 }, { 125, 200 }, { 300, 1000 }, { 16, 16 }
};


static void
read_event(void)
{
    if (conn) {
        conn->read->ready = 1;
        conn->read->handler(conn->read);
    }
}


static void
write_event(void)
{
    if (conn) {
        conn->write->ready = 1;
        conn->write->handler(conn->write);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned                   ctl, h0, h1, i, n;
    fuzz_in_t                  in = { data, size };
    ngx_http_chat_ws_t        *ws;
    ngx_http_chat_frame_t     *frame;
    ngx_http_chat_loc_conf_t   conf;

    if (size < 4) {
        return 0;
    }

    h0 = fuzz_byte(&in);
    h1 = fuzz_byte(&in);
    (void) fuzz_byte(&in);
    (void) fuzz_byte(&in);

    memset(&conf, 0, sizeof(conf));
    conf.ws_max_frame = limits[h0 & 3][0];
    conf.ws_max_message = limits[h0 & 3][1];
    conf.max_content = (h0 & 4) ? 8 : 4096;
    conf.ws_send_queue = (h1 & 7) + 1;
    conf.ws_ping_interval = 10000;
    conf.ws_idle_timeout = 30000;
    conf.ws_close_timeout = 5000;

    if (sock == -1) {
        int  sv[2];

        FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
        sock = sv[0];
    }

    ngx_queue_init(&ngx_posted_events);
    ngx_current_msec = 1000000;
    send_mode = SEND_ALL;
    post_busy = 0;
    rx = NULL;
    rx_len = rx_pos = rx_chunk = 0;
    rx_end = 0;
    tx = NULL;
    tx_len = tx_size = 0;

    /* the connection as ngx_http_chat_ws_upgrade() leaves it */

    conn = calloc(1, sizeof(ngx_connection_t));
    conn->read = calloc(1, sizeof(ngx_event_t));
    conn->write = calloc(1, sizeof(ngx_event_t));
    conn->read->data = conn;
    conn->write->data = conn;
    conn->log = shim_log_get();
    conn->read->log = conn->log;
    conn->write->log = conn->log;
    conn->send = fake_send;
    conn->recv = fake_recv;
    conn->fd = sock;

    ws = ngx_calloc(sizeof(ngx_http_chat_ws_t), conn->log);
    ws->connection = conn;
    ws->conf = &conf;
    ngx_queue_init(&ws->out);
    ngx_queue_init(&ws->waiting);
    memcpy(ws->group_id, "0123456789abcdef01234567", 24);
    ws->group.data = ws->group_id;
    ws->group.len = 24;
    ws->user_id.data = ws->user_buf;
    ws->user_id.len = 5;
    memcpy(ws->user_buf, "alice", 5);
    ws->cid.data = ws->cid_buf;
    ws->cid.len = 6;
    memcpy(ws->cid_buf, "cid-42", 6);

    frame = ngx_alloc(sizeof(ngx_http_chat_frame_t) + sizeof(preamble),
                      conn->log);
    memcpy(frame->data, preamble, sizeof(preamble) - 1);
    frame->len = sizeof(preamble) - 1;
    frame->refs = 1;

    conn->data = ws;
    ngx_http_chat_ws_open(ws, frame);
    FUZZ_CHECK(subscribed && conn->idle);
    ws = NULL;                 /* from here on only the module holds it */

    while (in.n) {
        ctl = fuzz_byte(&in);

        switch (ctl & 7) {

        case 0:         /* bytes arrive (up to 255), read in pieces */
        case 1:         /* bytes arrive (up to 65535) */
            n = (ctl & 7) ? fuzz_u16(&in) : fuzz_byte(&in);
            if (n > in.n) {
                n = in.n;
            }
            if (rx_end) {
                in.p += n; in.n -= n;
                break;
            }
            rx = realloc(rx, rx_len + n + 1);
            memcpy(rx + rx_len, in.p, n);
            rx_len += n;
            in.p += n;
            in.n -= n;
            rx_chunk = (ctl >> 3) * 7;
            read_event();
            break;

        case 2:         /* the socket becomes writable */
            set_send_mode((ctl >> 3) & 3);
            write_event();
            break;

        case 3:         /* how send() behaves from now on */
            set_send_mode((ctl >> 3) & 3);
            break;

        case 4:         /* time passes */
            ngx_current_msec += (ctl >> 3) * 1000;
            expire_timers();
            break;

        case 5:         /* storage finishes the oldest op */
            complete_op(ctl >> 3);
            break;

        case 6:         /* storage queue full or not */
            post_busy = (ctl >> 3) & 1;
            break;

        default:        /* the peer goes away, or nginx shuts down */
            if (ctl & 0x10) {
                if (conn) {
                    conn->close = 1;
                    read_event();
                }
            } else if (!rx_end) {
                rx_end = (ctl & 8) ? 2 : 1;
                read_event();
            }
            break;
        }

        run_posted();
    }

    /* the end: storage finishes, the socket drains, nginx shuts down and
     * the close timeout passes; the connection must be gone after it */

    set_send_mode(SEND_ALL);
    post_busy = 0;

    for (i = 0; i < 4 * FAKE_OPS && nops; i++) {
        complete_op(0);
        run_posted();
    }

    write_event();
    run_posted();

    if (conn) {
        conn->close = 1;
        read_event();
        run_posted();
    }

    for (i = 0; i < 20 && timers_armed(); i++) {
        ngx_current_msec += 10000;
        expire_timers();
        run_posted();
        write_event();
        run_posted();
    }

    for (i = 0; i < 4 * FAKE_OPS && nops; i++) {
        complete_op(0);
        run_posted();
    }

    run_posted();

    FUZZ_CHECK(conn == NULL);
    FUZZ_CHECK(timers_armed() == 0);
    FUZZ_CHECK(nops == 0);
    FUZZ_CHECK(!subscribed);
    /* messages still waiting to be stored would be leaked pools: LSan */
    FUZZ_CHECK(ngx_queue_empty(&ngx_posted_events));

    check_output(0);

    free(rx);
    free(tx);

    return 0;
}
