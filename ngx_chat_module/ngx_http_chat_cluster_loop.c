/*
 * ngx_http_chat_cluster_loop.c - nats.c on nginx's event loop, and the
 * hand-off from nats.c's threads to it (see ngx_http_chat_cluster.c).
 *
 * The adapter's callbacks (attach, read, write, detach) and the
 * connection's and subscriptions' callbacks run on whatever thread nats.c
 * is on: the event loop itself when it publishes or reads, its reconnect
 * thread, ping timer, async-callback thread or delivery pool otherwise.
 * They only note what is wanted under the link's mutex and wake the loop
 * through the eventfd; on the loop thread the change is applied at once.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <signal.h>
#include <sys/ioctl.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_groups.h"
#include "ngx_http_chat_cluster.h"
#include "ngx_http_chat_cluster_loop.h"


static void ngx_http_chat_cluster_read_handler(ngx_event_t *rev);
static void ngx_http_chat_cluster_write_handler(ngx_event_t *wev);


/* any thread: the loop runs ngx_http_chat_cluster_wake_handler() */

void
ngx_http_chat_cluster_wake(ngx_http_chat_cluster_t *cl)
{
    uint64_t  one;

    one = 1;

    /* a full counter (2^64 - 2) is a wake pending anyway */
    (void) write(cl->wake_fd, &one, sizeof(one));
}


/* what nats.c's callbacks asked for, on the event loop */

void
ngx_http_chat_cluster_apply(ngx_http_chat_cluster_t *cl)
{
    int                 fd, err;
    natsSock            sock;
    ngx_uint_t          attaches, want_read, want_write;
    ngx_connection_t   *c;

    pthread_mutex_lock(&cl->lock);
    sock = cl->sock;
    attaches = cl->attaches;
    want_read = cl->want_read;
    want_write = cl->want_write;
    fd = -1;
    err = 0;

    if (attaches != cl->attaches_seen) {
        fd = cl->sock_dup;               /* ours now */
        cl->sock_dup = -1;
        err = cl->dup_errno;
    }

    pthread_mutex_unlock(&cl->lock);

    if (attaches != cl->attaches_seen
        || sock == NGX_HTTP_CHAT_CLUSTER_NO_SOCK)
    {
        ngx_http_chat_cluster_unwatch(cl);
        cl->attaches_seen = attaches;

        if (sock == NGX_HTTP_CHAT_CLUSTER_NO_SOCK) {
            if (fd != -1) {
                (void) close(fd);
            }

            return;
        }

        if (fd == -1) {
            ngx_log_error(NGX_LOG_ALERT, cl->log, err,
                          "chat cluster: dup() of the link's socket failed");
            return;
        }

        c = ngx_get_connection(fd, cl->log);
        if (c == NULL) {
            (void) close(fd);
            return;
        }

        c->data = cl;
        c->read->handler = ngx_http_chat_cluster_read_handler;
        c->write->handler = ngx_http_chat_cluster_write_handler;
        c->read->log = cl->log;
        c->write->log = cl->log;
        cl->sock_conn = c;
    }

    c = cl->sock_conn;
    if (c == NULL) {
        return;
    }

    /* level-triggered, as nats.c expects: it reads once an event */

    if (want_read && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, cl->log, 0,
                          "chat cluster: cannot watch the link's socket");
        }

    } else if (!want_read && c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }

    if (want_write && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, cl->log, 0,
                          "chat cluster: cannot watch the link's socket");
        }

    } else if (!want_write && c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


/* our dup: out of epoll explicitly (nats.c may still hold the socket,
 * so closing ours would not remove it), then closed */

void
ngx_http_chat_cluster_unwatch(ngx_http_chat_cluster_t *cl)
{
    ngx_connection_t  *c;

    c = cl->sock_conn;
    if (c == NULL) {
        return;
    }

    cl->sock_conn = NULL;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }

    ngx_close_connection(c);
}


static void
ngx_http_chat_cluster_read_handler(ngx_event_t *rev)
{
    int                       n;
    sigset_t                  saved;
    ngx_uint_t                i;
    ngx_connection_t         *c;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_nats_link;
    c = rev->data;

    /* a socket nats.c let go since: forget it first */

    ngx_http_chat_cluster_apply(cl);

    if (cl->sock_conn != c || cl->nc == NULL) {
        return;
    }

    /* a read error starts nats.c's reconnect thread from here */

    ngx_http_chat_threads_block_signals(&saved);

    for (i = 0; i < NGX_HTTP_CHAT_CLUSTER_READS; i++) {
        natsConnection_ProcessReadEvent(cl->nc);

        if (cl->sock_conn != c
            || ioctl(c->fd, FIONREAD, &n) == -1 || n <= 0)
        {
            break;
        }
    }

    ngx_http_chat_threads_restore_signals(&saved);

    ngx_http_chat_cluster_apply(cl);
}


static void
ngx_http_chat_cluster_write_handler(ngx_event_t *wev)
{
    sigset_t                  saved;
    ngx_connection_t         *c;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_nats_link;
    c = wev->data;

    ngx_http_chat_cluster_apply(cl);

    if (cl->sock_conn != c || cl->nc == NULL) {
        return;
    }

    ngx_http_chat_threads_block_signals(&saved);
    natsConnection_ProcessWriteEvent(cl->nc);
    ngx_http_chat_threads_restore_signals(&saved);

    ngx_http_chat_cluster_apply(cl);
}


/* what the callbacks below changed: applied at once on the loop's own
 * thread, else the loop is woken to apply it */

static void
ngx_http_chat_cluster_changed(ngx_http_chat_cluster_t *cl)
{
    if (pthread_equal(pthread_self(), cl->loop_thread)) {
        ngx_http_chat_cluster_apply(cl);

    } else {
        ngx_http_chat_cluster_wake(cl);
    }
}


/*
 * nats.c's event loop adapter.  These run on whatever thread nats.c is on
 * (the event loop itself when it publishes or reads; the reconnect thread,
 * the ping timer otherwise), with the connection's lock held: they only
 * note what is wanted, and wake the loop when not on it.
 */

natsStatus
ngx_http_chat_cluster_ev_attach(void **userData, void *loop,
    natsConnection *nc, natsSock socket)
{
    ngx_http_chat_cluster_t *cl = loop;

    int  fd;

    /*
     * Our duplicate is made here, while nats.c holds its lock and the
     * socket is surely its own: on the loop, later, the number might
     * already be closed and reused by another thread.  One not yet taken
     * by the loop (an attach before it ran) is closed: never watched.
     */

    fd = dup(socket);

    pthread_mutex_lock(&cl->lock);

    if (cl->sock_dup != -1) {
        (void) close(cl->sock_dup);
    }

    cl->sock_dup = fd;
    cl->dup_errno = (fd == -1) ? errno : 0;
    cl->sock = socket;
    cl->attaches++;
    cl->want_read = 1;
    cl->want_write = 0;
    cl->linked = 1;
    pthread_mutex_unlock(&cl->lock);

    *userData = cl;

    ngx_http_chat_cluster_changed(cl);

    return NATS_OK;
}


natsStatus
ngx_http_chat_cluster_ev_read(void *userData, bool add)
{
    ngx_http_chat_cluster_t *cl = userData;

    pthread_mutex_lock(&cl->lock);
    cl->want_read = add;

    if (!add) {
        cl->linked = 0;             /* nats.c stops polling: link lost */
    }

    pthread_mutex_unlock(&cl->lock);

    ngx_http_chat_cluster_changed(cl);

    return NATS_OK;
}


natsStatus
ngx_http_chat_cluster_ev_write(void *userData, bool add)
{
    ngx_http_chat_cluster_t *cl = userData;

    pthread_mutex_lock(&cl->lock);
    cl->want_write = add;
    pthread_mutex_unlock(&cl->lock);

    ngx_http_chat_cluster_changed(cl);

    return NATS_OK;
}


/* the connection is closed for good (its socket already) */

natsStatus
ngx_http_chat_cluster_ev_detach(void *userData)
{
    ngx_http_chat_cluster_t *cl = userData;

    pthread_mutex_lock(&cl->lock);
    cl->sock = NGX_HTTP_CHAT_CLUSTER_NO_SOCK;
    cl->want_read = 0;
    cl->want_write = 0;
    cl->linked = 0;

    if (cl->sock_dup != -1) {
        (void) close(cl->sock_dup);      /* never watched */
        cl->sock_dup = -1;
    }

    pthread_mutex_unlock(&cl->lock);

    if (pthread_equal(pthread_self(), cl->loop_thread)) {
        ngx_http_chat_cluster_unwatch(cl);

    } else {
        ngx_http_chat_cluster_wake(cl);
    }

    return NATS_OK;
}


/*
 * nats.c's delivery threads: another host asks this one's groups to read
 * what they missed (NGX_HTTP_CHAT_CLUSTER_TELL); counted, for the event
 * loop.  This nginx's own tells are for the other hosts only: its workers
 * had its events on the bus.
 */

void
ngx_http_chat_cluster_on_tell(natsConnection *nc, natsSubscription *sub,
    natsMsg *msg, void *closure)
{
    ngx_http_chat_cluster_t *cl = closure;

    uint64_t       origin;
    const u_char  *p;

    p = (const u_char *) natsMsg_GetData(msg);

    if (p == NULL
        || natsMsg_GetDataLength(msg) != NGX_HTTP_CHAT_CLUSTER_TELL_LEN
        || ngx_memcmp(p, NGX_HTTP_CHAT_CLUSTER_TELL_MAGIC, 4) != 0)
    {
        natsMsg_Destroy(msg);

        pthread_mutex_lock(&cl->lock);
        cl->thread_bad++;
        pthread_mutex_unlock(&cl->lock);
        return;
    }

    ngx_memcpy(&origin, p + NGX_HTTP_CHAT_CLUSTER_ORIGIN, 8);
    natsMsg_Destroy(msg);

    if (origin == cl->instance) {
        return;
    }

    pthread_mutex_lock(&cl->lock);
    cl->told++;
    pthread_mutex_unlock(&cl->lock);

    ngx_http_chat_cluster_wake(cl);
}


/*
 * nats.c's delivery threads: an event of another host, checked and copied
 * into the hand-off queue (at most NGX_HTTP_CHAT_CLUSTER_QUEUE: beyond,
 * dropped and counted; the event loop then has every group with
 * subscribers read what it missed from the database).
 */

void
ngx_http_chat_cluster_on_message(natsConnection *nc, natsSubscription *sub,
    natsMsg *msg, void *closure)
{
    ngx_http_chat_cluster_t *cl = closure;

    int                            len;
    int64_t                        seq;
    uint64_t                       origin;
    ngx_uint_t                     wake, i;
    const char                    *subject;
    const u_char                  *p, *g;
    ngx_http_chat_cluster_item_t  *it;

    p = (const u_char *) natsMsg_GetData(msg);
    len = natsMsg_GetDataLength(msg);

    it = NULL;

    if (p == NULL || len <= NGX_HTTP_CHAT_CLUSTER_HEADER
        || ngx_memcmp(p, NGX_HTTP_CHAT_CLUSTER_MAGIC, 4) != 0)
    {
        goto bad;
    }

    ngx_memcpy(&origin, p + NGX_HTTP_CHAT_CLUSTER_ORIGIN, 8);

    if (origin == cl->instance) {
        pthread_mutex_lock(&cl->lock);
        cl->thread_own++;
        pthread_mutex_unlock(&cl->lock);
        natsMsg_Destroy(msg);
        return;
    }

    /*
     * An event of the group whose subject it came on (24 lowercase hex
     * digits, as published), with a seq (0: none), of a bounded size;
     * anything else is counted as malformed and dropped.
     */

    len -= NGX_HTTP_CHAT_CLUSTER_HEADER;
    g = p + NGX_HTTP_CHAT_CLUSTER_GROUP;
    subject = natsMsg_GetSubject(msg);
    ngx_memcpy(&seq, p + NGX_HTTP_CHAT_CLUSTER_SEQ, 8);

    if (seq < 0 || len > NGX_HTTP_CHAT_CLUSTER_EVENT_MAX
        || subject == NULL
        || ngx_strlen(subject) != sizeof(NGX_HTTP_CHAT_CLUSTER_SUBJECT) - 1
                                  + NGX_HTTP_CHAT_GROUP_ID_LEN
        || ngx_memcmp(subject + sizeof(NGX_HTTP_CHAT_CLUSTER_SUBJECT) - 1, g,
                      NGX_HTTP_CHAT_GROUP_ID_LEN) != 0)
    {
        goto bad;
    }

    for (i = 0; i < NGX_HTTP_CHAT_GROUP_ID_LEN; i++) {
        if (!((g[i] >= '0' && g[i] <= '9') || (g[i] >= 'a' && g[i] <= 'f'))) {
            goto bad;
        }
    }

    /* malloc(), not ngx_alloc(): no nginx log from this thread */
    it = malloc(sizeof(ngx_http_chat_cluster_item_t) + len);
    if (it == NULL) {
        goto bad;
    }

    it->next = NULL;
    it->seq = seq;
    ngx_memcpy(it->group, p + NGX_HTTP_CHAT_CLUSTER_GROUP,
               NGX_HTTP_CHAT_GROUP_ID_LEN);
    it->len = len;
    ngx_memcpy(it->event, p + NGX_HTTP_CHAT_CLUSTER_HEADER, len);

    natsMsg_Destroy(msg);

    pthread_mutex_lock(&cl->lock);

    if (cl->queued >= NGX_HTTP_CHAT_CLUSTER_QUEUE) {
        cl->thread_full++;
        pthread_mutex_unlock(&cl->lock);
        free(it);
        return;
    }

    wake = (cl->head == NULL);

    *cl->tail = it;
    cl->tail = &it->next;
    cl->queued++;

    pthread_mutex_unlock(&cl->lock);

    if (wake) {
        ngx_http_chat_cluster_wake(cl);
    }

    return;

bad:

    natsMsg_Destroy(msg);

    pthread_mutex_lock(&cl->lock);
    cl->thread_bad++;
    pthread_mutex_unlock(&cl->lock);
}


/* nats.c's async-callback thread */

void
ngx_http_chat_cluster_on_connected(natsConnection *nc, void *closure)
{
    ngx_http_chat_cluster_set_state(closure, CHAT_CLUSTER_CONNECTED, nc,
                                    NULL);
}


void
ngx_http_chat_cluster_on_disconnected(natsConnection *nc, void *closure)
{
    ngx_http_chat_cluster_set_state(closure, CHAT_CLUSTER_RECONNECTING, nc,
                                    NULL);
}


void
ngx_http_chat_cluster_on_reconnected(natsConnection *nc, void *closure)
{
    ngx_http_chat_cluster_t *cl = closure;

    pthread_mutex_lock(&cl->lock);
    cl->reconnects++;
    pthread_mutex_unlock(&cl->lock);

    ngx_http_chat_cluster_set_state(cl, CHAT_CLUSTER_CONNECTED, nc, NULL);
}


void
ngx_http_chat_cluster_on_closed(natsConnection *nc, void *closure)
{
    ngx_http_chat_cluster_set_state(closure, CHAT_CLUSTER_CLOSED, nc, NULL);
}


void
ngx_http_chat_cluster_on_error(natsConnection *nc, natsSubscription *sub,
    natsStatus err, void *closure)
{
    const char  *text;

    text = NULL;

    if (nc == NULL || natsConnection_GetLastError(nc, &text) == NATS_OK
        || text == NULL || *text == '\0')
    {
        text = natsStatus_GetText(err);
    }

    ngx_http_chat_cluster_set_state(closure, 0, NULL, text);
}


/* any thread; state 0: the error alone */

void
ngx_http_chat_cluster_set_state(ngx_http_chat_cluster_t *cl,
    ngx_uint_t state, natsConnection *nc, const char *error)
{
    const char  *text;

    text = NULL;

    /* the connection's last error says why it was lost or closed */

    if (error == NULL && nc != NULL
        && (state == CHAT_CLUSTER_RECONNECTING
            || state == CHAT_CLUSTER_CLOSED)
        && natsConnection_GetLastError(nc, &text) != NATS_OK
        && text && *text)
    {
        error = text;
    }

    error = ngx_http_chat_cluster_error_text(error);

    pthread_mutex_lock(&cl->lock);

    if (state && cl->state != state) {
        cl->state = state;
        cl->state_changes++;
    }

    if (state == CHAT_CLUSTER_CONNECTED) {
        cl->error[0] = '\0';
    }

    if (error) {
        (void) ngx_cpystrn((u_char *) cl->error, (u_char *) error,
                           sizeof(cl->error));
        cl->errors++;
    }

    pthread_mutex_unlock(&cl->lock);

    if (cl->wake_fd != -1) {
        if (pthread_equal(pthread_self(), cl->loop_thread)) {
            ngx_http_chat_cluster_states(cl);

        } else {
            ngx_http_chat_cluster_wake(cl);
        }
    }
}



/* nats.c's error text without its "(conn.c:1905): " origin */

const char *
ngx_http_chat_cluster_error_text(const char *text)
{
    const char  *p;

    if (text == NULL || text[0] != '(') {
        return text;
    }

    p = strstr(text, "): ");

    return p ? p + 3 : text;
}

