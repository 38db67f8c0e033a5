/*
 * ngx_http_chat_ws_resume.c - where a WebSocket's events start: a client
 * that connects with since=<seq> is first sent every event of its group
 * above that seq, from the database, then the live ones, with no gap and
 * no duplicate at the seam; a client without since starts at the group's
 * last seq when it connected.
 *
 * The seam: the connection joins its group before anything is read (the
 * group's live events pass it over while it is not live), then reads
 * pages of events after its last seq (ngx_http_chat_catch_up.c) and sends
 * them; once the database has nothing more, it asks the group to follow
 * it live from its last seq (ngx_http_chat_groups_go_live()): the group
 * says no while it has delivered events past that seq (they were stored
 * before the group delivered them, so the next page has them).  The
 * group's live events it gets then are those above its last seq, in
 * order.
 *
 * A client more than NGX_HTTP_CHAT_RESUME_MAX events behind is sent
 * {"type":"resync","seq":<current>} instead and goes on live from there:
 * it reloads what it missed through the REST API.  Pages follow each
 * other as the connection's send queue drains (half of
 * chat_ws_send_queue a page at most), so a replay never makes a slow
 * consumer of its client.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_groups.h"
#include "ngx_http_chat_catch_up.h"
#include "ngx_http_chat_websocket.h"


#define NGX_HTTP_CHAT_RESUME_PAGE  100   /* events a read, at most */
#define NGX_HTTP_CHAT_WS_TRY_LATER 1013  /* RFC 6455 registry: try again
                                            later */


static void ngx_http_chat_ws_resume_handler(ngx_event_t *ev);
static void ngx_http_chat_ws_resume_read(ngx_http_chat_ws_t *ws);
static void ngx_http_chat_ws_resume_page(void *data, ngx_int_t rc,
    ngx_http_chat_event_page_t *page, const char *error);
static void ngx_http_chat_ws_resume_live(ngx_http_chat_ws_t *ws,
    ngx_uint_t read_more, ngx_uint_t progress);
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

    if (ws->since < 0 || ws->since >= current) {
        /* nothing to replay: since is now, or ahead of the group */
        s->last = current;

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

    ngx_http_chat_ws_resume_read(ws);
}


static void
ngx_http_chat_ws_resume_read(ngx_http_chat_ws_t *ws)
{
    ngx_int_t   rc;
    ngx_uint_t  limit;

    limit = ngx_max(ws->conf->ws_send_queue / 2, 1);
    limit = ngx_min(limit, NGX_HTTP_CHAT_RESUME_PAGE);

    rc = ngx_http_chat_catch_up_read(ws->group_id, ws->subscriber.last,
                                     limit, ngx_http_chat_ws_resume_page, ws,
                                     ngx_cycle->log);

    if (rc == NGX_OK) {
        ws->reading = 1;
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
    ngx_uint_t                   i, n;
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

    s = &ws->subscriber;
    n = 0;

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

        s->last = e->seq;
        ngx_http_chat_ws_send_frame(ws, frame);
        ngx_http_chat_frame_release(frame);

        if (ws->closed || ws->close_sent) {
            return;
        }

        n++;
    }

    ws->replayed += n;

    ngx_http_chat_ws_resume_live(ws, page->has_more, n > 0);
}


/*
 * Live when the database has nothing more to give and the group is not
 * past s->last; else the next page: now, once the send queue has room,
 * or after NGX_HTTP_CHAT_GAP_WAIT when the database had nothing new yet
 * (the group delivered an event whose earlier ones are still being
 * written, or are not yet a gap for good).
 */

static void
ngx_http_chat_ws_resume_live(ngx_http_chat_ws_t *ws, ngx_uint_t read_more,
    ngx_uint_t progress)
{
    if (!read_more) {
        if (ngx_http_chat_groups_go_live(&ws->subscriber) == NGX_OK) {
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
