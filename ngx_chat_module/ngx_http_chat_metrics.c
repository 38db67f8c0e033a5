/*
 * ngx_http_chat_metrics.c - recording every request and WebSocket event of
 * this worker and pushing them to the sidecar.
 *
 * The log-phase handler only copies a fixed-size record into the worker's
 * current batch (no allocation, no syscall but the vDSO clock).  A batch is
 * sent when it is full or when the flush timer fires, with one non-blocking
 * nng_send(): when the sidecar is absent or slow the batch is dropped and
 * counted, and the cumulative counts travel in every later batch header, so
 * that the sidecar can account for every request: served = recorded +
 * dropped.  A snapshot batch (WebSocket counts per group) doubles as a
 * heartbeat so that drop counts arrive even when traffic stops.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <signal.h>
#include <pthread.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/supplemental/util/platform.h>

#include "wire/chat_wire.h"
#include "ngx_http_chat_module.h"
#include "ngx_http_chat_correlation.h"
#include "ngx_http_chat_metrics.h"
#include "ngx_http_chat_groups.h"
#include "ngx_http_chat_cluster.h"


#define NGX_HTTP_CHAT_SNAPSHOT_INTERVAL  5000   /* ms */

/*
 * A snapshot waits until this worker's last WebSocket event is this old,
 * at most NGX_HTTP_CHAT_SNAPSHOT_DEFER times: the sidecar applies a
 * snapshot at once, and a client that just moved here from another worker
 * would be counted twice until that worker's disconnect arrived.
 */
#define NGX_HTTP_CHAT_SNAPSHOT_QUIET     300    /* ms */
#define NGX_HTTP_CHAT_SNAPSHOT_DEFER     10
#define NGX_HTTP_CHAT_CLUSTER_INTERVAL   1000   /* ms, the cluster link */

/* the bytes per record a batch's message is allocated for: a request
 * record with a 36-character correlation ID and a short endpoint is 88 */
#define NGX_HTTP_CHAT_RECORD_TYPICAL     96
/* the smallest batch a message is sized for */
#define NGX_HTTP_CHAT_CAP_FLOOR          128

/* the dialer's back-off: normal, and while the sidecar cuts every
 * connection at once (it refuses this nginx) */
#define NGX_HTTP_CHAT_REDIAL_MIN         100    /* ms */
#define NGX_HTTP_CHAT_REDIAL_MAX         1000   /* ms */
#define NGX_HTTP_CHAT_REDIAL_REFUSED     5000   /* ms */

/* a connection the sidecar closes sooner than this was cut, not used */
#define NGX_HTTP_CHAT_PIPE_CUT           100    /* ms */

/* no connection to the sidecar for this long: dial with a new dialer
 * (ngx_http_chat_metrics_watch_dialer()); checked this often */
#define NGX_HTTP_CHAT_REDIAL_RENEW       3000   /* ms */
#define NGX_HTTP_CHAT_REDIAL_CHECK       1000   /* ms */


typedef struct {
    nng_socket                  sock;
    nng_dialer                  dialer;
    ngx_flag_t                  open;

    ngx_uint_t                  batch_limit;
    ngx_uint_t                  cap;            /* records the next message
                                                   is sized for */
    ngx_msec_t                  flush_interval;

    /* the batch being filled, in place in the nng message it will be
     * sent as (no copy): header followed by records of their own sizes,
     * used bytes of size in all (nng zeroes the size it allocates, so it
     * is what typical records need, not room for the largest) */
    nng_msg                    *msg;
    chat_wire_batch_t          *batch;
    u_char                     *body;
    size_t                      used;
    size_t                      size;
    ngx_uint_t                  count;
    ngx_uint_t                  batch_requests;
    ngx_flag_t                  inited;

    uint64_t                    worker_start_us;
    uint64_t                    batch_seq;
    uint64_t                    requests_recorded;
    uint64_t                    records_dropped;
    uint64_t                    requests_dropped;

    ngx_event_t                 flush_ev;
    ngx_event_t                 snapshot_ev;
    ngx_event_t                 dial_watch_ev;

    ngx_msec_t                  last_ws_event;  /* ngx_current_msec */
    ngx_uint_t                  snapshot_deferred;

    /* since when no pipe is up (0: one is); dialers renewed since */
    ngx_msec_t                  down_since;
    ngx_uint_t                  renewals;

    ngx_event_t                 cluster_ev;

    ngx_http_chat_main_conf_t  *cmcf;
    ngx_log_t                  *log;
    ngx_uint_t                  drop_logged;
    ngx_str_t                   address;

    /* written by nng's threads (pipe callbacks), read on the event loop */
    ngx_atomic_t                pipes_up;
    ngx_atomic_t                pipes_cut;
    ngx_atomic_t                pipe_added_ms;

    /* the event loop's view of them */
    ngx_atomic_uint_t           cuts_seen;
    ngx_flag_t                  refused;
} ngx_http_chat_metrics_t;


static chat_wire_record_t *ngx_http_chat_metrics_next(uint16_t type,
    size_t size);
static void ngx_http_chat_metrics_flush(void);
static void ngx_http_chat_metrics_header(chat_wire_batch_t *batch,
    ngx_uint_t count, uint16_t flags);
static void ngx_http_chat_metrics_sent(int rv, ngx_uint_t count,
    ngx_uint_t requests);
static void ngx_http_chat_metrics_flush_handler(ngx_event_t *ev);
static void ngx_http_chat_metrics_snapshot_handler(ngx_event_t *ev);
static void ngx_http_chat_metrics_cluster_handler(ngx_event_t *ev);
static ngx_uint_t ngx_http_chat_metrics_snapshot_part(
    chat_wire_record_t *rec, ngx_uint_t max, ngx_http_chat_group_t **cursor);
static void ngx_http_chat_metrics_pipe_event(nng_pipe pipe, nng_pipe_ev ev,
    void *data);
static void ngx_http_chat_metrics_watch_refusal(ngx_http_chat_metrics_t *m);
static int ngx_http_chat_metrics_dial(ngx_http_chat_metrics_t *m);
static void ngx_http_chat_metrics_watch_dialer(ngx_event_t *ev);
static size_t ngx_http_chat_copy(char *dst, size_t size, ngx_str_t *src);


static ngx_http_chat_metrics_t  ngx_http_chat_metrics;


/*
 * n <= 64 bytes (a method, a correlation ID, a short endpoint) copied with
 * at most four fixed-size moves, which may overlap: no loop and no call
 * for the few dozen bytes a request record takes.  Reads exactly the n
 * bytes at src (none when n is 0).
 */

static ngx_inline u_char *
ngx_http_chat_copy_short(u_char *dst, u_char *src, size_t n)
{
    if (n >= 16) {
        if (n > 32) {
            ngx_memcpy(dst, src, 32);
            ngx_memcpy(dst + n - 32, src + n - 32, 32);

        } else {
            ngx_memcpy(dst, src, 16);
            ngx_memcpy(dst + n - 16, src + n - 16, 16);
        }

    } else if (n >= 8) {
        ngx_memcpy(dst, src, 8);
        ngx_memcpy(dst + n - 8, src + n - 8, 8);

    } else if (n >= 4) {
        ngx_memcpy(dst, src, 4);
        ngx_memcpy(dst + n - 4, src + n - 4, 4);

    } else if (n) {
        dst[0] = src[0];
        dst[n / 2] = src[n / 2];
        dst[n - 1] = src[n - 1];
    }

    return dst + n;
}

/* snapshots (every 5 s) are built here and copied by nng_send() */
static u_char  ngx_http_chat_snapshot_buf[CHAT_WIRE_BATCH_SIZE(
                                              CHAT_WIRE_MAX_RECORDS)];


ngx_int_t
ngx_http_chat_metrics_check_address(ngx_str_t *addr)
{
    if (addr->len > sizeof("ipc:///") - 1 && addr->len < 256
        && ngx_strncmp(addr->data, "ipc:///", sizeof("ipc:///") - 1) == 0)
    {
        return NGX_OK;
    }

    if (addr->len > sizeof("tcp://127.0.0.1:") - 1
        && ngx_strncmp(addr->data, "tcp://127.0.0.1:",
                       sizeof("tcp://127.0.0.1:") - 1) == 0
        && ngx_atoi(addr->data + sizeof("tcp://127.0.0.1:") - 1,
                    addr->len - (sizeof("tcp://127.0.0.1:") - 1)) > 0)
    {
        return NGX_OK;
    }

    return NGX_ERROR;
}


ngx_int_t
ngx_http_chat_metrics_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    int                       rv;
    sigset_t                  saved;
    ngx_http_chat_metrics_t  *m;

    m = &ngx_http_chat_metrics;
    ngx_memzero(m, sizeof(ngx_http_chat_metrics_t));

    m->log = cycle->log;
    m->cmcf = cmcf;
    m->address = cmcf->metrics_address;
    m->batch_limit = cmcf->metrics_batch;
    m->cap = ngx_min(NGX_HTTP_CHAT_CAP_FLOOR, m->batch_limit);
    m->flush_interval = cmcf->metrics_flush;
    m->worker_start_us = ngx_http_chat_realtime_us();
    m->inited = 1;

    /*
     * nng starts its own threads: they must not take signals meant for the
     * worker's event loop, so they are born with every signal blocked.
     */

    ngx_http_chat_threads_block_signals(&saved);

    rv = nng_push0_open(&m->sock);

    if (rv == 0) {
        /* a short sidecar outage is bridged by nng's queue; a longer
         * one fills it, and from then on batches are dropped and counted */
        (void) nng_socket_set_int(m->sock, NNG_OPT_SENDBUF,
                                  (int) cmcf->metrics_queue);
        (void) nng_socket_set_ms(m->sock, NNG_OPT_RECONNMINT,
                                 NGX_HTTP_CHAT_REDIAL_MIN);
        (void) nng_socket_set_ms(m->sock, NNG_OPT_RECONNMAXT,
                                 NGX_HTTP_CHAT_REDIAL_MAX);

        rv = nng_pipe_notify(m->sock, NNG_PIPE_EV_ADD_PRE,
                             ngx_http_chat_metrics_pipe_event, m);

        if (rv == 0) {
            rv = nng_pipe_notify(m->sock, NNG_PIPE_EV_REM_POST,
                                 ngx_http_chat_metrics_pipe_event, m);
        }

        /* non-blocking dial: an absent sidecar is retried in background */
        if (rv == 0) {
            rv = ngx_http_chat_metrics_dial(m);
        }

        if (rv != 0) {
            (void) nng_close(m->sock);
        }
    }

    ngx_http_chat_threads_restore_signals(&saved);

    if (rv != 0) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "chat metrics: cannot connect to \"%s\": %s; "
                      "records will be dropped and counted",
                      cmcf->metrics_address.data, nng_strerror(rv));
        /* keep serving: every record is counted as dropped */

    } else {
        m->open = 1;
    }

    m->flush_ev.handler = ngx_http_chat_metrics_flush_handler;
    m->flush_ev.log = cycle->log;
    m->flush_ev.data = m;
    m->flush_ev.cancelable = 1;

    m->snapshot_ev.handler = ngx_http_chat_metrics_snapshot_handler;
    m->snapshot_ev.log = cycle->log;
    m->snapshot_ev.data = m;
    m->snapshot_ev.cancelable = 1;

    ngx_add_timer(&m->snapshot_ev, 200);

    m->dial_watch_ev.handler = ngx_http_chat_metrics_watch_dialer;
    m->dial_watch_ev.log = cycle->log;
    m->dial_watch_ev.data = m;
    m->dial_watch_ev.cancelable = 1;

    if (m->open) {
        ngx_add_timer(&m->dial_watch_ev, NGX_HTTP_CHAT_REDIAL_CHECK);
    }

    m->cluster_ev.handler = ngx_http_chat_metrics_cluster_handler;
    m->cluster_ev.log = cycle->log;
    m->cluster_ev.data = m;
    m->cluster_ev.cancelable = 1;

    ngx_add_timer(&m->cluster_ev, NGX_HTTP_CHAT_CLUSTER_INTERVAL);

    return NGX_OK;
}


void
ngx_http_chat_metrics_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_chat_metrics_t  *m;

    m = &ngx_http_chat_metrics;

    if (!m->inited) {
        return;
    }

    ngx_http_chat_metrics_flush();

    if (m->msg) {
        nng_msg_free(m->msg);
        m->msg = NULL;
    }

    if (m->open) {
        (void) nng_close(m->sock);
        m->open = 0;
    }
}


ngx_int_t
ngx_http_chat_metrics_log_handler(ngx_http_request_t *r)
{
    u_char                    *p;
    size_t                     mlen, nlen, clen;
    ngx_str_t                  name, *cid;
    ngx_uint_t                 status;
    ngx_time_t                *tp;
    uint64_t                   us;
    ngx_msec_int_t             ms;
    chat_wire_record_t        *rec;
    chat_wire_request_t       *req;
    ngx_http_chat_ctx_t       *ctx;
    ngx_http_core_loc_conf_t  *hclcf;
    ngx_http_chat_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_chat_module);

    if (!lcf->metrics || !ngx_http_chat_metrics.inited) {
        return NGX_OK;
    }

    ctx = ngx_http_chat_get_ctx(r);

    /*
     * endpoint: "METHOD name", bounded by construction, built here and
     * only here: the record's own (truncated) method, then the API route's
     * template, chat_metrics_endpoint or the location's name.  The sidecar
     * keys its rows on it as is.
     */

    if (ctx && ctx->endpoint.len) {
        name = ctx->endpoint;

    } else if (lcf->endpoint) {
        if (ngx_http_complex_value(r, lcf->endpoint, &name) != NGX_OK) {
            ngx_str_set(&name, "(error)");
        }

    } else {
        hclcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
        name = hclcf->name;
        if (name.len == 0) {
            ngx_str_set(&name, "(unmatched)");
        }
    }

    cid = (ctx && ctx->correlation_id.len) ? &ctx->correlation_id
                                           : ngx_http_chat_correlation_id(r);

    mlen = ngx_min(r->method_name.len, CHAT_WIRE_METHOD_LEN);
    nlen = ngx_min(name.len, CHAT_WIRE_ENDPOINT_LEN - 1 - mlen);
    clen = ngx_min(cid->len, CHAT_WIRE_CID_LEN);

    rec = ngx_http_chat_metrics_next(CHAT_REC_REQUEST,
                                     CHAT_WIRE_REQUEST_SIZE(mlen,
                                                            mlen + 1 + nlen,
                                                            clen));
    if (rec == NULL) {
        ngx_http_chat_metrics.records_dropped++;
        ngx_http_chat_metrics.requests_dropped++;
        return NGX_OK;
    }

    req = &rec->u.request;

    if (ctx && ctx->start_us) {
        /* one clock read: ngx_min() evaluates its arguments twice */
        us = ngx_http_chat_monotonic_us() - ctx->start_us;
        req->duration_us = (uint32_t) ngx_min(us, 0xffffffff);

    } else {
        /* rejected before the first phase: millisecond resolution only */
        tp = ngx_timeofday();
        ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                               + (tp->msec - r->start_msec));
        req->duration_us = (uint32_t) (ngx_max(ms, 0) * 1000);
    }

    status = r->err_status ? r->err_status : r->headers_out.status;
    req->status = (uint16_t) ngx_min(status, 999);
    req->bytes_sent = r->connection->sent;

    req->method_len = (uint8_t) mlen;
    req->endpoint_len = (uint8_t) (mlen + 1 + nlen);
    req->cid_len = (uint8_t) clen;

    /* method, endpoint ("METHOD name"), correlation ID: back to back */

    p = (u_char *) req->text;

    /* none when the request line failed; an empty ngx_str_t may have no
     * data: ngx_http_chat_copy_short() reads nothing for a length of 0 */
    p = ngx_http_chat_copy_short(p, r->method_name.data, mlen);
    p = ngx_http_chat_copy_short(p, r->method_name.data, mlen);

    *p++ = ' ';

    if (nlen <= 64) {
        p = ngx_http_chat_copy_short(p, name.data, nlen);

    } else {
        p = ngx_cpymem(p, name.data, nlen);
    }

    (void) ngx_http_chat_copy_short(p, cid->data, clen);

    ngx_http_chat_metrics.batch_requests++;
    ngx_http_chat_metrics.requests_recorded++;

    if (ngx_http_chat_metrics.count >= ngx_http_chat_metrics.batch_limit) {
        ngx_http_chat_metrics_flush();
    }

    return NGX_OK;
}


void
ngx_http_chat_metrics_ws_event(ngx_uint_t connected, ngx_str_t *group_id,
    ngx_str_t *user_id, ngx_uint_t worker_group_count)
{
    chat_wire_record_t    *rec;
    chat_wire_ws_event_t  *ev;

    if (!ngx_http_chat_metrics.inited) {
        return;
    }

    ngx_http_chat_metrics.last_ws_event = ngx_current_msec;

    rec = ngx_http_chat_metrics_next(CHAT_REC_WS_EVENT,
                     CHAT_WIRE_RECORD_SIZE(sizeof(chat_wire_ws_event_t)));
    if (rec == NULL) {
        ngx_http_chat_metrics.records_dropped++;
        return;
    }

    /*
     * The sidecar applies the WebSocket events of all workers in the order
     * of these times: the clock itself, not the loop's cached millisecond,
     * so that a reconnect's disconnect on one worker and connect on
     * another, a millisecond apart or less, are never a tie.
     */
    rec->timestamp_us = ngx_http_chat_realtime_us();

    ev = &rec->u.ws_event;

    ev->event = connected ? CHAT_WS_CONNECTED : CHAT_WS_DISCONNECTED;
    ev->worker_group_count = (uint32_t) worker_group_count;
    ev->group_id_len = (uint8_t) ngx_http_chat_copy(ev->group_id,
                                                    CHAT_WIRE_GROUP_ID_LEN,
                                                    group_id);
    ev->user_id_len = (uint8_t) ngx_http_chat_copy(ev->user_id,
                                                   CHAT_WIRE_USER_ID_LEN,
                                                   user_id);

    if (ngx_http_chat_metrics.count >= ngx_http_chat_metrics.batch_limit) {
        ngx_http_chat_metrics_flush();
    }
}


void
ngx_http_chat_metrics_custom(ngx_str_t *event_type, ngx_http_chat_kv_t *kv,
    ngx_uint_t n)
{
    ngx_uint_t           i;
    chat_wire_record_t  *rec;
    chat_wire_custom_t  *c;

    if (!ngx_http_chat_metrics.inited) {
        return;
    }

    rec = ngx_http_chat_metrics_next(CHAT_REC_CUSTOM,
                     CHAT_WIRE_RECORD_SIZE(sizeof(chat_wire_custom_t)));
    if (rec == NULL) {
        ngx_http_chat_metrics.records_dropped++;
        return;
    }

    c = &rec->u.custom;

    c->event_type_len = (uint8_t) ngx_http_chat_copy(c->event_type,
                                                     CHAT_WIRE_EVENT_TYPE_LEN,
                                                     event_type);
    n = ngx_min(n, CHAT_WIRE_KV_MAX);
    c->kv_count = (uint8_t) n;

    for (i = 0; i < n; i++) {
        c->kv[i].key_len = (uint8_t) ngx_http_chat_copy(c->kv[i].key,
                                                        CHAT_WIRE_KEY_LEN,
                                                        &kv[i].key);
        c->kv[i].value_len = (uint8_t) ngx_http_chat_copy(c->kv[i].value,
                                                          CHAT_WIRE_VALUE_LEN,
                                                          &kv[i].value);
    }

    if (ngx_http_chat_metrics.count >= ngx_http_chat_metrics.batch_limit) {
        ngx_http_chat_metrics_flush();
    }
}


/*
 * The next free record of the current batch, size bytes written in place in
 * the nng message the batch will be sent as; arms the flush timer.  A
 * record that does not fit sends the batch first.  NULL when no message
 * can be had (out of memory): the caller counts a drop.
 */

static chat_wire_record_t *
ngx_http_chat_metrics_next(uint16_t type, size_t size)
{
    ngx_time_t               *tp;
    chat_wire_record_t       *rec;
    ngx_http_chat_metrics_t  *m;

    m = &ngx_http_chat_metrics;

    if (m->msg && m->used + size > m->size) {
        ngx_http_chat_metrics_flush();
    }

    if (m->msg == NULL) {
        /* room for cap typical requests, and any one record */
        m->size = sizeof(chat_wire_batch_t)
                  + ngx_max(m->cap * NGX_HTTP_CHAT_RECORD_TYPICAL,
                            sizeof(chat_wire_record_t));

        if (nng_msg_alloc(&m->msg, m->size) != 0) {
            m->msg = NULL;
            return NULL;
        }

        m->batch = nng_msg_body(m->msg);
        m->body = (u_char *) m->batch;
        m->used = sizeof(chat_wire_batch_t);
        m->count = 0;
    }

    rec = (chat_wire_record_t *) (m->body + m->used);
    m->used += size;
    m->count++;

    rec->type = type;
    rec->size = (uint16_t) size;
    rec->pad1 = 0;

    /* the cached clock is updated once per event loop turn: good enough
     * for a timestamp shown to the millisecond */
    tp = ngx_timeofday();
    rec->timestamp_us = (uint64_t) tp->sec * 1000000
                        + (uint64_t) tp->msec * 1000;

    if (!m->flush_ev.timer_set) {
        ngx_add_timer(&m->flush_ev, m->flush_interval);
    }

    return rec;
}


static void
ngx_http_chat_metrics_flush(void)
{
    int                       rv;
    ngx_http_chat_metrics_t  *m;

    m = &ngx_http_chat_metrics;

    if (m->flush_ev.timer_set) {
        ngx_del_timer(&m->flush_ev);
    }

    if (m->msg == NULL || m->count == 0) {
        return;
    }

    ngx_http_chat_metrics_header(m->batch, m->count, 0);

    /* shrinking only marks the tail unused: no copy */
    (void) nng_msg_realloc(m->msg, m->used);

    rv = m->open ? nng_sendmsg(m->sock, m->msg, NNG_FLAG_NONBLOCK)
                 : NNG_ECLOSED;

    if (rv != 0) {
        nng_msg_free(m->msg);
    }

    /* sent, nng owns it; or freed */
    m->msg = NULL;

    ngx_http_chat_metrics_sent(rv, m->count, m->batch_requests);

    /*
     * The next message's size follows the traffic: each batch costs the
     * sidecar ~50 us of nng and kernel hand-offs whatever its size, so a
     * busy worker sends up to chat_metrics_batch records a message (1024:
     * ~0.15 us of sidecar CPU per record at 100,000 a second, 128: ~0.5,
     * bench/findings.md); nng zeroes all of it, so a quiet worker's
     * batches, sent by the timer, are sized for what the last one held.
     */

    if (m->count >= m->cap
        || m->used + NGX_HTTP_CHAT_RECORD_TYPICAL > m->size)
    {
        m->cap = ngx_min(m->cap * 2, m->batch_limit);

    } else {
        m->cap = ngx_max(m->count + m->count / 4,
                         ngx_min(NGX_HTTP_CHAT_CAP_FLOOR, m->batch_limit));
        m->cap = ngx_min(m->cap, m->batch_limit);
    }

    m->count = 0;
    m->batch_requests = 0;
}


static void
ngx_http_chat_metrics_header(chat_wire_batch_t *batch, ngx_uint_t count,
    uint16_t flags)
{
    ngx_http_chat_metrics_t  *m;

    m = &ngx_http_chat_metrics;

    batch->magic = CHAT_WIRE_MAGIC;
    batch->version = CHAT_WIRE_VERSION;
    batch->record_size = sizeof(chat_wire_record_t);
    batch->count = (uint16_t) count;
    batch->flags = flags;
    batch->worker_pid = (uint32_t) ngx_pid;
    batch->worker_start_us = m->worker_start_us;
    batch->batch_seq = ++m->batch_seq;
    batch->requests_recorded = m->requests_recorded;
    batch->records_dropped = m->records_dropped;
    batch->requests_dropped = m->requests_dropped;
}


/* the accounting after a send: rv 0, or the records are dropped */

static void
ngx_http_chat_metrics_sent(int rv, ngx_uint_t count, ngx_uint_t requests)
{
    ngx_http_chat_metrics_t  *m;

    m = &ngx_http_chat_metrics;

    if (rv == 0) {
        if (m->drop_logged) {
            ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                          "chat metrics: sidecar reachable again, %uL "
                          "records dropped so far", m->records_dropped);
            m->drop_logged = 0;
        }

        return;
    }

    /*
     * Dropped: the records are gone, their count is not.  The batch
     * sequence number was consumed on purpose, so the sidecar sees the gap.
     */

    m->records_dropped += count;
    m->requests_dropped += requests;
    m->requests_recorded -= requests;

    if (!m->drop_logged) {
        ngx_log_error(NGX_LOG_WARN, m->log, 0,
                      "chat metrics: sidecar not accepting records (%s), "
                      "dropping and counting them", nng_strerror(rv));
        m->drop_logged = 1;
    }
}


static void
ngx_http_chat_metrics_flush_handler(ngx_event_t *ev)
{
    ngx_http_chat_metrics_flush();
}


/*
 * Once a second, this worker's cluster link (CHAT_CLUSTER_OFF and the host
 * name when chat_cluster is unset), in the current batch.
 */

static void
ngx_http_chat_metrics_cluster_handler(ngx_event_t *ev)
{
    chat_wire_record_t       *rec;
    ngx_http_chat_metrics_t  *m;

    m = ev->data;

    rec = ngx_http_chat_metrics_next(CHAT_REC_CLUSTER,
                     CHAT_WIRE_RECORD_SIZE(sizeof(chat_wire_cluster_t)));

    if (rec == NULL) {
        m->records_dropped++;

    } else {
        ngx_http_chat_cluster_link(m->cmcf, &rec->u.cluster);

        if (m->count >= m->batch_limit) {
            ngx_http_chat_metrics_flush();
        }
    }

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, NGX_HTTP_CHAT_CLUSTER_INTERVAL);
    }
}


/* at most this many parts (x CHAT_WIRE_MAX_RECORDS groups) per snapshot */
#define NGX_HTTP_CHAT_SNAPSHOT_PARTS  64

static void
ngx_http_chat_metrics_snapshot_handler(ngx_event_t *ev)
{
    uint16_t                  flags;
    ngx_uint_t                n, parts;
    chat_wire_batch_t        *batch;
    ngx_http_chat_group_t    *cursor;
    ngx_http_chat_metrics_t  *m;

    m = &ngx_http_chat_metrics;

    if (ngx_current_msec - m->last_ws_event < NGX_HTTP_CHAT_SNAPSHOT_QUIET
        && m->snapshot_deferred < NGX_HTTP_CHAT_SNAPSHOT_DEFER
        && !ngx_exiting && !ngx_quit && !ngx_terminate)
    {
        m->snapshot_deferred++;
        ngx_add_timer(ev, NGX_HTTP_CHAT_SNAPSHOT_QUIET);
        return;
    }

    m->snapshot_deferred = 0;

    ngx_http_chat_metrics_watch_refusal(m);

    /* pending records first, so that the counts in the header are final */
    ngx_http_chat_metrics_flush();

    batch = (chat_wire_batch_t *) ngx_http_chat_snapshot_buf;
    cursor = NULL;
    flags = CHAT_BATCH_SNAPSHOT;
    parts = 0;

    /* one batch holds CHAT_WIRE_MAX_RECORDS groups: more go in parts,
     * which the sidecar adds up after clearing on the first */

    do {
        n = ngx_http_chat_metrics_snapshot_part((chat_wire_record_t *)
                                                (ngx_http_chat_snapshot_buf
                                                 + sizeof(chat_wire_batch_t)),
                                                CHAT_WIRE_MAX_RECORDS,
                                                &cursor);

        ngx_http_chat_metrics_header(batch, n, flags);
        ngx_http_chat_metrics_sent(m->open
                                   ? nng_send(m->sock, batch,
                                              CHAT_WIRE_BATCH_SIZE(n),
                                              NNG_FLAG_NONBLOCK)
                                   : NNG_ECLOSED, n, 0);
        flags |= CHAT_BATCH_SNAPSHOT_CONT;

    } while (cursor != NULL && ++parts < NGX_HTTP_CHAT_SNAPSHOT_PARTS);

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(ev, NGX_HTTP_CHAT_SNAPSHOT_INTERVAL);
    }
}


/*
 * nng's threads: a pipe to the sidecar is being added (before it starts)
 * or has been removed (closed, not yet freed).
 *
 * The removal works around a use-after-free in libnng before 1.6 (Debian
 * 12 ships 1.5.2).  PUSH starts a receive on a new pipe before it lists
 * the pipe as ready to send; a peer that closes the connection at once (a
 * sidecar that refuses this nginx, or any listener that hangs up) fails
 * that receive, and the pipe can be closed before it is listed, listed
 * after, then freed while still listed: the next nng_send() takes it and
 * the worker dies on freed memory.  Here, before the free, one empty
 * non-blocking send takes the head of the ready list.  If it is this pipe
 * the send fails on the closed pipe and nng frees the message; if the list
 * is empty the message waits in the queue (the sidecar skips empty
 * messages), and a pipe still being started then takes that message
 * instead of listing itself.  The socket has one dialer, so no other pipe
 * exists until this one is gone, and its queue holds at least one message
 * (chat_metrics_queue >= 1), so every order of the two threads ends with
 * the pipe off the list.
 *
 * The times also tell the event loop when the sidecar cuts every
 * connection as it is made: ngx_http_chat_metrics_watch_refusal().
 */

static void
ngx_http_chat_metrics_pipe_event(nng_pipe pipe, nng_pipe_ev ev, void *data)
{
    nng_msg                  *msg;
    ngx_atomic_uint_t         added;
    ngx_http_chat_metrics_t  *m;

    m = data;

    if (ev == NNG_PIPE_EV_ADD_PRE) {
        m->pipe_added_ms = (ngx_atomic_uint_t) nng_clock();
        (void) ngx_atomic_fetch_add(&m->pipes_up, 1);
        return;
    }

    /* NNG_PIPE_EV_REM_POST: every pipe that had ADD_PRE gets it */

    if (nng_msg_alloc(&msg, 0) == 0
        && nng_sendmsg(m->sock, msg, NNG_FLAG_NONBLOCK) != 0)
    {
        nng_msg_free(msg);
    }

    added = m->pipe_added_ms;

    if ((ngx_atomic_uint_t) nng_clock() - added < NGX_HTTP_CHAT_PIPE_CUT) {
        (void) ngx_atomic_fetch_add(&m->pipes_cut, 1);
    }

    (void) ngx_atomic_fetch_add(&m->pipes_up, (ngx_atomic_int_t) -1);
}


/*
 * The event loop, every snapshot: a sidecar that closes each connection as
 * it is made (it refuses this nginx: its --nginx-pid-file names another
 * master) would be redialed every 100 ms, each time a refusal on both
 * sides.  Say so once, in an operator's words, and redial slowly until a
 * connection lasts again.
 */

static void
ngx_http_chat_metrics_watch_refusal(ngx_http_chat_metrics_t *m)
{
    ngx_atomic_uint_t  cuts;

    if (!m->open) {
        return;
    }

    cuts = m->pipes_cut;

    if (cuts != m->cuts_seen) {
        if (!m->refused) {
            ngx_log_error(NGX_LOG_WARN, m->log, 0,
                          "chat metrics: the sidecar at \"%V\" closed %uA "
                          "connection(s) as soon as they were made (does "
                          "its --nginx-pid-file name this nginx?); "
                          "redialing every %d ms, records are dropped "
                          "and counted", &m->address, cuts - m->cuts_seen,
                          NGX_HTTP_CHAT_REDIAL_REFUSED);

            (void) nng_dialer_set_ms(m->dialer, NNG_OPT_RECONNMAXT,
                                     NGX_HTTP_CHAT_REDIAL_REFUSED);
            (void) nng_dialer_set_ms(m->dialer, NNG_OPT_RECONNMINT,
                                     NGX_HTTP_CHAT_REDIAL_REFUSED);
            m->refused = 1;
        }

        m->cuts_seen = cuts;
        return;
    }

    if (m->refused && m->pipes_up > 0) {
        ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                      "chat metrics: the sidecar at \"%V\" keeps a "
                      "connection again", &m->address);

        (void) nng_dialer_set_ms(m->dialer, NNG_OPT_RECONNMINT,
                                 NGX_HTTP_CHAT_REDIAL_MIN);
        (void) nng_dialer_set_ms(m->dialer, NNG_OPT_RECONNMAXT,
                                 NGX_HTTP_CHAT_REDIAL_MAX);
        m->refused = 0;
    }
}


/*
 * A dialer for the socket, started without waiting: nng connects in the
 * background and redials when the connection is lost, as often as the
 * refusal watch above allows.
 */

static int
ngx_http_chat_metrics_dial(ngx_http_chat_metrics_t *m)
{
    int           rv;
    nng_dialer    d;
    nng_duration  min, max;

    rv = nng_dialer_create(&d, m->sock, (const char *) m->address.data);
    if (rv != 0) {
        return rv;
    }

    min = m->refused ? NGX_HTTP_CHAT_REDIAL_REFUSED : NGX_HTTP_CHAT_REDIAL_MIN;
    max = m->refused ? NGX_HTTP_CHAT_REDIAL_REFUSED : NGX_HTTP_CHAT_REDIAL_MAX;

    (void) nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, min);
    (void) nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, max);

    rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        (void) nng_dialer_close(d);
        return rv;
    }

    m->dialer = d;

    return 0;
}


/*
 * The event loop, every second: a dialer that has had no connection for
 * NGX_HTTP_CHAT_REDIAL_RENEW (twice that when it redials slowly after
 * refusals) is closed and replaced.
 *
 * libnng 1.5.2 stops redialing for good when a connection is cut during
 * its handshake in one particular way: the peer gone before the dialer
 * sends its header makes the send fail with EPIPE, which nng reports as
 * NNG_ECLOSED, and its dialer takes NNG_ECLOSED to mean that it is itself
 * being closed (core/dialer.c, dialer_connect_cb).  A sidecar killed or
 * restarted while a worker is dialing it does that now and then, and the
 * worker then lost every record until it restarted.  A new dialer costs a
 * connection attempt; the socket and the records queued in it stay, so
 * they reach the sidecar once a dialer connects.  Closing the old dialer
 * waits only for its callbacks to return: it has no pipe (none is up) and
 * its pending connect is cancelled, not awaited.
 */

static void
ngx_http_chat_metrics_watch_dialer(ngx_event_t *ev)
{
    int                       rv;
    sigset_t                  saved;
    ngx_msec_t                renew;
    ngx_http_chat_metrics_t  *m;

    m = ev->data;

    if (!m->open || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_CHAT_REDIAL_CHECK);

    if (m->pipes_up > 0) {
        m->down_since = 0;
        m->renewals = 0;
        return;
    }

    if (m->down_since == 0) {
        m->down_since = ngx_current_msec;
        return;
    }

    renew = m->refused ? 2 * NGX_HTTP_CHAT_REDIAL_REFUSED
                       : NGX_HTTP_CHAT_REDIAL_RENEW;

    if (ngx_current_msec - m->down_since < renew) {
        return;
    }

    ngx_http_chat_threads_block_signals(&saved);

    (void) nng_dialer_close(m->dialer);
    rv = ngx_http_chat_metrics_dial(m);

    ngx_http_chat_threads_restore_signals(&saved);

    m->down_since = ngx_current_msec;
    m->renewals++;

    if (rv != 0) {
        ngx_log_error(NGX_LOG_ALERT, m->log, 0,
                      "chat metrics: cannot dial \"%V\" anew: %s; "
                      "records will be dropped and counted",
                      &m->address, nng_strerror(rv));
        (void) nng_close(m->sock);
        m->open = 0;
        return;
    }

    /* once per outage: it repeats while the sidecar stays away */
    if (m->renewals == 1) {
        ngx_log_error(NGX_LOG_NOTICE, m->log, 0,
                      "chat metrics: no connection to the sidecar at \"%V\" "
                      "for %M ms; dialing it with a new dialer",
                      &m->address, renew);
    }
}


/*
 * One part of a snapshot: the worker's WebSocket count of each group, at
 * most max records, from *cursor on (NULL: the first group); *cursor is
 * where the next part starts, NULL after the last.  The groups do not
 * change between the parts: they are all built in one event.
 */

static ngx_uint_t
ngx_http_chat_metrics_snapshot_part(chat_wire_record_t *rec, ngx_uint_t max,
    ngx_http_chat_group_t **cursor)
{
    uint64_t                now;
    ngx_uint_t              n;
    ngx_http_chat_group_t  *g;

    now = ngx_http_chat_realtime_us();
    n = 0;

    for (g = *cursor ? *cursor : ngx_http_chat_groups_next(NULL);
         g;
         g = ngx_http_chat_groups_next(g))
    {
        if (g->count == 0) {
            continue;                   /* being freed after a delivery */
        }

        if (n == max) {
            *cursor = g;
            return n;
        }

        ngx_memzero(&rec[n], sizeof(chat_wire_record_t));
        rec[n].type = CHAT_REC_WS_SNAPSHOT;
        rec[n].size = sizeof(chat_wire_record_t);    /* whole: every 5 s */
        rec[n].timestamp_us = now;
        rec[n].u.ws_snapshot.group_id_len = NGX_HTTP_CHAT_GROUP_ID_LEN;
        rec[n].u.ws_snapshot.connection_count = (uint32_t) g->count;
        ngx_memcpy(rec[n].u.ws_snapshot.group_id, g->id,
                   NGX_HTTP_CHAT_GROUP_ID_LEN);
        n++;
    }

    *cursor = NULL;

    return n;
}


/* bounded copy of an ngx_str_t into a fixed wire field; returns length */

static size_t
ngx_http_chat_copy(char *dst, size_t size, ngx_str_t *src)
{
    size_t  n;

    n = ngx_min(src->len, size);

    if (n) {                       /* an empty ngx_str_t may have no data */
        ngx_memcpy(dst, src->data, n);
    }

    return n;
}
