/*
 * ngx_http_chat_ws_resume.c - where a WebSocket's events start: a client
 * that connects with since=<seq> is first sent every event of its group
 * above that seq, from the database, then the live ones, with no gap and
 * no duplicate at the seam; a client without since starts at the group's
 * last seq when it connected.
 *
 * The seam: the connection joins its group before anything is read; while
 * it is not live, the group hands it its events as it delivers them (in
 * seq order) and it keeps them (its backlog, NGX_HTTP_CHAT_RESUME_BACKLOG
 * at most).  Then it reads pages of events after its last seq from the
 * database (ngx_http_chat_catch_up.c) and sends them.  Every event the
 * group delivered before a read was stored before it was delivered, so
 * once a read that began after the backlog did finds nothing more, the
 * replay and the backlog together have every event: the backlog's events
 * above the last one replayed are sent, and the connection follows the
 * group live (ngx_http_chat_groups_go_live()).  A backlog that fills up
 * is let go and kept anew: the next read, which begins after, covers what
 * it let go.
 *
 * A client more than NGX_HTTP_CHAT_RESUME_MAX events behind is sent
 * {"type":"resync","seq":<current>} instead and goes on live from there:
 * it reloads what it missed through the REST API.  A page of events
 * (NGX_HTTP_CHAT_RESUME_PAGE, the most a replay may be) is read at once
 * and its frames sent as the send queue drains, never more than half of
 * chat_ws_send_queue queued, so a replay never makes a slow consumer of
 * its client.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_groups.h"
#include "ngx_http_chat_catch_up.h"
#include "ngx_http_chat_websocket.h"


#define NGX_HTTP_CHAT_RESUME_PAGE  1000  /* events a read, at most */
#define NGX_HTTP_CHAT_SEQ_LAG      64    /* a since above the group's
                                            counter taken as the client's */
#define NGX_HTTP_CHAT_WS_TRY_LATER 1013  /* RFC 6455 registry: try again
                                            later */


static void ngx_http_chat_ws_resume_handler(ngx_event_t *ev);
static void ngx_http_chat_ws_resume_read(ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_resume_send(ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_resume_page(void *data, ngx_int_t rc,
    ngx_http_chat_event_page_t *page, const char *error);
static void ngx_http_chat_ws_resume_live(ngx_http_chat_ws_t *ws,
    ngx_uint_t read_more, ngx_uint_t progress);
static ngx_int_t ngx_http_chat_ws_resume_backlog(ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_resync(ngx_http_chat_ws_t *ws, int64_t seq);


void
ngx_http_chat_ws_resume_start(ngx_http_chat_ws_t *ws)
{
    int64_t                      current;
    ngx_http_chat_subscriber_t  *s;

    s = &ws->subscriber;
    current = ws->start;

    ws->resume.handler = ngx_http_chat_ws_resume_handler;
    ws->resume.data = ws;
    ws->resume.log = ws->connection->log;
    ws->resume.cancelable = 1;

    if (ws->since < 0 || ws->since == current) {
        /* nothing to replay */
        s->last = current;

    } else if (ws->since > current) {
        /*
         * Ahead of the group's counter.  A counter may lag the seqs taken
         * for a moment (FerretDB's $inc is not atomic: a write of a
         * stale read steps it back until its taker tries again), by one
         * taker a worker at most: the client has what it says.  Far
         * ahead, it made since up: it gets the events after the counter.
         */
        s->last = (ws->since - current <= NGX_HTTP_CHAT_SEQ_LAG)
                  ? ws->since : current;

    } else if (current - ws->since > NGX_HTTP_CHAT_RESUME_MAX) {
        ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                      "chat ws: \"%V\" asked for the %L events of group %V "
                      "after seq %L, more than %d: resync at %L, "
                      "correlation_id=%V", &ws->user_id, current - ws->since,
                      &ws->group, ws->since, NGX_HTTP_CHAT_RESUME_MAX,
                      current, &ws->cid);

        ngx_http_chat_ws_resync(ws, current);
        s->last = current;

    } else {
        s->last = ws->since;
    }

    if (ws->closed || ws->close_sent) {
        return;
    }

    ngx_http_chat_ws_resume_live(ws, s->last < current, 1);
}


/* the send queue drained (or a wait ended): the next page */

void
ngx_http_chat_ws_resume_drained(ngx_http_chat_ws_t *ws)
{
    if (ws->resume_waits) {
        ws->resume_waits = 0;
        ngx_post_event(&ws->resume, &ngx_posted_events);
    }
}


static void
ngx_http_chat_ws_resume_handler(ngx_event_t *ev)
{
    ngx_http_chat_ws_t  *ws;

    ws = ev->data;

    if (ws->closed || ws->close_sent || ws->reading) {
        return;
    }

    if (ws->page) {
        ngx_http_chat_ws_resume_send(ws);
        return;
    }

    ngx_http_chat_ws_resume_read(ws);
}


static void
ngx_http_chat_ws_resume_read(ngx_http_chat_ws_t *ws)
{
    ngx_int_t   rc;
    ngx_uint_t  limit;

    limit = NGX_HTTP_CHAT_RESUME_PAGE;

    rc = ngx_http_chat_catch_up_read(ws->group_id, ws->subscriber.last,
                                     limit, ngx_http_chat_ws_resume_page, ws,
                                     ngx_cycle->log);

    if (rc == NGX_OK) {
        ws->reading = 1;
        ws->read_restarts = ws->restarts;
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ws->connection->log, 0,
                  "chat ws: the events of group %V after seq %L cannot be "
                  "read now (%s), correlation_id=%V", &ws->group,
                  ws->subscriber.last,
                  rc == NGX_BUSY ? "the thread pool's queue is full"
                                 : "no storage",
                  &ws->cid);

    ngx_http_chat_ws_send_event(ws, "error", "the missed events cannot be "
                                "read now; reconnect with since later");
    if (!ws->closed) {
        ngx_http_chat_ws_fail(ws, NGX_HTTP_CHAT_WS_TRY_LATER,
                              "try again later");
    }
}


static void
ngx_http_chat_ws_resume_page(void *data, ngx_int_t rc,
    ngx_http_chat_event_page_t *page, const char *error)
{
    ngx_uint_t                   i;
    ngx_http_chat_ws_t          *ws;
    ngx_http_chat_frame_t       *frame;
    ngx_http_chat_event_item_t  *e;
    ngx_http_chat_subscriber_t  *s;

    ws = data;
    ws->reading = 0;

    if (ws->closed) {
        /* the connection went while the page was read */
        ngx_http_chat_ws_maybe_free(ws);
        return;
    }

    if (ws->close_sent) {
        return;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ws->connection->log, 0,
                      "chat ws: the events of group %V after seq %L cannot "
                      "be read: %s, correlation_id=%V", &ws->group,
                      ws->subscriber.last, error, &ws->cid);

        ngx_http_chat_ws_send_event(ws, "error", "the missed events cannot "
                                    "be read now; reconnect with since "
                                    "later");
        if (!ws->closed) {
            ngx_http_chat_ws_fail(ws, NGX_HTTP_CHAT_WS_TRY_LATER,
                                  "try again later");
        }

        return;
    }

    /* the page's frames, sent as the send queue takes them */

    s = &ws->subscriber;

    ws->page = ngx_alloc((page->nitems ? page->nitems : 1)
                         * sizeof(ngx_http_chat_held_t), ngx_cycle->log);
    if (ws->page == NULL) {
        ngx_http_chat_ws_finalize(ws);
        return;
    }

    ws->npage = 0;
    ws->page_pos = 0;
    ws->page_more = page->has_more;
    ws->page_next_after = page->next_after;

    for (i = 0; i < page->nitems; i++) {
        e = &page->items[i];

        if (e->seq <= s->last) {
            continue;
        }

        frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT,
                                           e->json.data, e->json.len);
        if (frame == NULL) {
            ngx_http_chat_ws_finalize(ws);
            return;
        }

        ws->page[ws->npage].seq = e->seq;
        ws->page[ws->npage].frame = frame;
        ws->npage++;
    }

    ngx_http_chat_ws_resume_send(ws);
}


/* the page read, while the send queue is under half of its bound */

static void
ngx_http_chat_ws_resume_send(ngx_http_chat_ws_t *ws)
{
    ngx_uint_t                   progress;
    ngx_http_chat_held_t        *h;
    ngx_http_chat_subscriber_t  *s;

    s = &ws->subscriber;

    while (ws->page_pos < ws->npage) {

        if (ws->out_count >= ngx_max(ws->conf->ws_send_queue / 2, 1)) {
            ws->resume_waits = 1;        /* ngx_http_chat_ws_flush() */
            return;
        }

        h = &ws->page[ws->page_pos++];

        if (h->seq > s->last) {
            s->last = h->seq;

            if (h->seq > ws->since) {    /* else the client has it */
                ngx_http_chat_ws_send_frame(ws, h->frame);
                ws->replayed++;
            }
        }

        ngx_http_chat_frame_release(h->frame);
        h->frame = NULL;

        if (ws->closed || ws->close_sent) {
            return;                      /* the rest: resume_release() */
        }
    }

    progress = (ws->npage > 0);

    /* the seqs the walk passed up to there are gaps for good */

    if (ws->page_next_after > s->last) {
        s->last = ws->page_next_after;
        progress = 1;
    }

    ngx_free(ws->page);
    ws->page = NULL;
    ws->npage = 0;
    ws->page_pos = 0;

    ngx_http_chat_ws_resume_live(ws, ws->page_more, progress);
}


/*
 * Live once a read that began after the backlog did found nothing more:
 * the backlog's events above the last one sent, then the group's.  Else
 * the next page: now, once the send queue has room.  (The group says no
 * to a subscriber behind it only if an event it delivered is in neither:
 * then the database is read again after NGX_HTTP_CHAT_GAP_WAIT.)
 */

static void
ngx_http_chat_ws_resume_live(ngx_http_chat_ws_t *ws, ngx_uint_t read_more,
    ngx_uint_t progress)
{
    ngx_int_t  rc;

    if (!read_more && ws->read_restarts == ws->restarts) {

        rc = ngx_http_chat_ws_resume_backlog(ws);

        if (rc == NGX_ERROR) {
            return;                           /* closed */
        }

        if (rc == NGX_OK
            && ngx_http_chat_groups_go_live(&ws->subscriber) == NGX_OK)
        {
            ngx_http_chat_ws_resume_release(ws);

            if (ws->since >= 0) {
                ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                              "chat ws: \"%V\" resumed group %V: %ui "
                              "event(s) after seq %L replayed, live from "
                              "seq %L, correlation_id=%V", &ws->user_id,
                              &ws->group, ws->replayed, ws->since,
                              ws->subscriber.last, &ws->cid);
            }

            return;
        }

        if (!progress) {
            ngx_add_timer(&ws->resume, NGX_HTTP_CHAT_GAP_WAIT);
            return;
        }
    }

    if (ws->out_count > ws->conf->ws_send_queue / 2) {
        ws->resume_waits = 1;            /* ngx_http_chat_ws_flush() */
        return;
    }

    ngx_http_chat_ws_resume_read(ws);
}


/*
 * The backlog's events above the last one sent, in order: NGX_OK; NGX_AGAIN
 * when the database has not yet given the events just under the
 * backlog's first (seqs taken before the group started here, still
 * being written, or not yet a gap for good): read again; NGX_ERROR:
 * closed.
 */

static ngx_int_t
ngx_http_chat_ws_resume_backlog(ngx_http_chat_ws_t *ws)
{
    ngx_uint_t                   i, first;
    ngx_http_chat_held_t        *h;
    ngx_http_chat_subscriber_t  *s;

    s = &ws->subscriber;
    first = 1;

    for (i = 0; i < ws->nbacklog; i++) {
        h = &ws->backlog[i];

        if (h->seq <= s->last) {
            continue;
        }

        if (first && h->seq != s->last + 1) {
            return NGX_AGAIN;
        }

        first = 0;
        s->last = h->seq;

        if (h->seq <= ws->since) {
            continue;                        /* the client has it */
        }

        ngx_http_chat_ws_send_frame(ws, h->frame);

        if (ws->closed || ws->close_sent) {
            return NGX_ERROR;
        }
    }

    ngx_http_chat_ws_resume_release(ws);

    return NGX_OK;
}


void
ngx_http_chat_ws_resume_hold(ngx_http_chat_subscriber_t *s, int64_t seq,
    ngx_http_chat_frame_t *frame)
{
    ngx_http_chat_ws_t  *ws;

    ws = (ngx_http_chat_ws_t *) ((u_char *) s
                                 - offsetof(ngx_http_chat_ws_t, subscriber));

    if (seq <= s->last) {
        return;                          /* replayed already */
    }

    if (ws->backlog == NULL) {
        ws->backlog = ngx_alloc(NGX_HTTP_CHAT_RESUME_BACKLOG
                                * sizeof(ngx_http_chat_held_t),
                                ngx_cycle->log);
        if (ws->backlog == NULL) {
            ws->restarts++;              /* as if let go: read again */
            return;
        }
    }

    if (ws->nbacklog == NGX_HTTP_CHAT_RESUME_BACKLOG) {
        /* let go; the next read begins after and covers it */
        while (ws->nbacklog) {
            ngx_http_chat_frame_release(ws->backlog[--ws->nbacklog].frame);
        }

        ws->restarts++;
    }

    frame->refs++;
    ws->backlog[ws->nbacklog].seq = seq;
    ws->backlog[ws->nbacklog].frame = frame;
    ws->nbacklog++;
}


void
ngx_http_chat_ws_resume_release(ngx_http_chat_ws_t *ws)
{
    if (ws->page) {
        while (ws->page_pos < ws->npage) {
            ngx_http_chat_frame_release(ws->page[ws->page_pos++].frame);
        }

        ngx_free(ws->page);
        ws->page = NULL;
    }

    while (ws->nbacklog) {
        ngx_http_chat_frame_release(ws->backlog[--ws->nbacklog].frame);
    }

    if (ws->backlog) {
        ngx_free(ws->backlog);
        ws->backlog = NULL;
    }
}


static void
ngx_http_chat_ws_resync(ngx_http_chat_ws_t *ws, int64_t seq)
{
    u_char                  buf[sizeof("{\"type\":\"resync\",\"seq\":}")
                                + NGX_INT64_LEN];
    u_char                 *p;
    ngx_http_chat_frame_t  *frame;

    p = ngx_sprintf(buf, "{\"type\":\"resync\",\"seq\":%L}", seq);

    frame = ngx_http_chat_frame_create(NGX_HTTP_CHAT_WS_TEXT, buf, p - buf);
    if (frame == NULL) {
        ngx_http_chat_ws_finalize(ws);
        return;
    }

    ngx_http_chat_ws_send_frame(ws, frame);
    ngx_http_chat_frame_release(frame);
}
