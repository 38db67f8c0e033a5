/*
 * ngx_http_chat_cluster.c - the transport between nginx hosts
 * (ngx_http_chat_transport.h): one NATS connection per worker (nats.c),
 * driven by nginx's event loop.  Used with chat_cluster, beside the nng
 * bus (which still carries a stored event to this nginx's other workers).
 *
 * A stored event is published on "chat.g.<group id>" with this nginx's
 * instance id, its seq and its group; a worker subscribes to a group's
 * subject while the group has subscribers here (the transport's interest)
 * and hands what it receives to ngx_http_chat_groups_deliver(), which
 * orders by seq and fills gaps from the database: core NATS is at most
 * once, a lost event is read again, not lost for a client.  An event
 * whose instance id is this nginx's is dropped (its workers had it on the
 * bus); NoEcho keeps a worker's own events from coming back at all.
 *
 * Threads.  nats.c runs its own: a reconnect thread (which attaches the
 * new socket), a ping timer, the async-callback thread (connected, lost,
 * closed) and the pool that calls subscription handlers.  None of them
 * touches nginx: they write what they have under a mutex (the socket to
 * watch, read/write wanted, state changes, received events in a bounded
 * queue) and wake the event loop through an eventfd registered as an
 * nginx connection.  On the event loop the same callbacks apply at once.
 * nginx watches its own dup() of nats.c's socket, so that nats.c closing
 * its descriptor on another thread can never make nginx touch a number
 * reused meanwhile (that side is ngx_http_chat_cluster_loop.c).  The
 * first connect (which nats.c does synchronously, handshake included)
 * runs on a thread of its own: the worker serves from the start, and
 * links when the cluster answers.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <signal.h>
#include <pthread.h>
#include <sys/eventfd.h>

#include <nats/nats.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_groups.h"
#include "ngx_http_chat_transport.h"
#include "ngx_http_chat_cluster.h"
#include "ngx_http_chat_cluster_loop.h"


#define NGX_HTTP_CHAT_CLUSTER_TIMEOUT   2000    /* ms, one connect */
#define NGX_HTTP_CHAT_CLUSTER_RECONNECT 500     /* ms between attempts */
#define NGX_HTTP_CHAT_CLUSTER_PENDING   (1024 * 1024)  /* bytes published
                                                   while reconnecting */
#define NGX_HTTP_CHAT_CLUSTER_CLOSE     2000    /* ms nats.c may take to
                                                   stop its threads */


static ngx_int_t ngx_http_chat_cluster_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
static void ngx_http_chat_cluster_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_chat_cluster_publish(const u_char *group_id,
    int64_t seq, const u_char *event, size_t len);
static void ngx_http_chat_cluster_interest(const u_char *group_id,
    ngx_uint_t on);
static natsStatus ngx_http_chat_cluster_options(ngx_http_chat_cluster_t *cl,
    ngx_http_chat_main_conf_t *cmcf);
static void *ngx_http_chat_cluster_connector(void *data);
static void ngx_http_chat_cluster_wake_handler(ngx_event_t *rev);
static void ngx_http_chat_cluster_linked(ngx_http_chat_cluster_t *cl);
static ngx_uint_t ngx_http_chat_cluster_receive(ngx_http_chat_cluster_t *cl);
static ngx_uint_t ngx_http_chat_cluster_is_linked(ngx_http_chat_cluster_t *cl);
static void ngx_http_chat_cluster_settle_subs(ngx_http_chat_cluster_t *cl);
static ngx_int_t ngx_http_chat_cluster_subscribe(ngx_http_chat_cluster_t *cl,
    ngx_http_chat_cluster_sub_t *s);
static void ngx_http_chat_cluster_drop(ngx_http_chat_cluster_t *cl,
    const char *what, const u_char *group_id, const char *why);
static natsStatus ngx_http_chat_cluster_nats_subscribe(
    ngx_http_chat_cluster_t *cl, natsSubscription **sub, const char *subject,
    natsMsgHandler handler);
static void ngx_http_chat_cluster_tell_handler(ngx_event_t *ev);
static void ngx_http_chat_cluster_told_handler(ngx_event_t *ev);


ngx_http_chat_transport_t  ngx_http_chat_cluster_transport = {
    "nats cluster",
    NULL,
    ngx_http_chat_cluster_init_process,
    ngx_http_chat_cluster_exit_process,
    ngx_http_chat_cluster_publish,
    ngx_http_chat_cluster_interest
};


ngx_http_chat_cluster_t         ngx_http_chat_nats_link;
static ngx_uint_t               ngx_http_chat_cluster_running;


static ngx_int_t
ngx_http_chat_cluster_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    int                       err;
    sigset_t                  saved;
    natsStatus                s;
    ngx_connection_t         *c;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_nats_link;
    ngx_memzero(cl, sizeof(ngx_http_chat_cluster_t));

    cl->cmcf = cmcf;
    cl->log = cycle->log;
    cl->loop_thread = pthread_self();
    cl->instance = cmcf->cluster_instance;
    cl->sock = NGX_HTTP_CHAT_CLUSTER_NO_SOCK;
    cl->sock_dup = -1;
    cl->wake_fd = -1;
    cl->tail = &cl->head;
    cl->state = CHAT_CLUSTER_CONNECTING;

    cl->tell_ev.handler = ngx_http_chat_cluster_tell_handler;
    cl->tell_ev.data = cl;
    cl->tell_ev.log = cycle->log;
    cl->tell_ev.cancelable = 1;

    cl->told_ev.handler = ngx_http_chat_cluster_told_handler;
    cl->told_ev.data = cl;
    cl->told_ev.log = cycle->log;
    cl->told_ev.cancelable = 1;

    ngx_rbtree_init(&cl->subs, &cl->sentinel, ngx_str_rbtree_insert_value);

    if (pthread_mutex_init(&cl->lock, NULL) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat cluster: cannot create the link's lock");
        return NGX_ERROR;
    }

    cl->mutex = 1;

    cl->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (cl->wake_fd == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "chat cluster: eventfd() failed");
        return NGX_ERROR;
    }

    c = ngx_get_connection(cl->wake_fd, cycle->log);
    if (c == NULL) {
        (void) close(cl->wake_fd);
        cl->wake_fd = -1;
        return NGX_ERROR;
    }

    c->data = cl;
    c->read->handler = ngx_http_chat_cluster_wake_handler;
    c->read->log = cycle->log;
    cl->wake_conn = c;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_chat_cluster_running = 1;

    /* nats.c's threads are born with every signal blocked */

    ngx_http_chat_threads_block_signals(&saved);

    s = nats_Open(-1);

    if (s == NATS_OK) {
        cl->nats_open = 1;
        s = ngx_http_chat_cluster_options(cl, cmcf);
    }

    if (s == NATS_OK) {
        err = pthread_create(&cl->connector, NULL,
                             ngx_http_chat_cluster_connector, cl);
        if (err == 0) {
            cl->connector_running = 1;

        } else {
            s = NATS_SYS_ERROR;
        }
    }

    ngx_http_chat_threads_restore_signals(&saved);

    if (s != NATS_OK) {
        /* this host serves alone; the link's state says so */
        ngx_log_error(NGX_LOG_ERR, cycle->log, 0,
                      "chat cluster: cannot start the NATS client: %s; "
                      "serving this host only",
                      natsStatus_GetText(s));

        ngx_http_chat_cluster_set_state(cl, CHAT_CLUSTER_CLOSED, NULL,
                                        natsStatus_GetText(s));
    }

    return NGX_OK;
}


static natsStatus
ngx_http_chat_cluster_options(ngx_http_chat_cluster_t *cl,
    ngx_http_chat_main_conf_t *cmcf)
{
    char        name[NGX_HTTP_CHAT_HOST_NAME_MAX + 32];
    u_char     *p;
    natsStatus  s;

    s = natsOptions_Create(&cl->opts);

    if (s == NATS_OK) {
        s = natsOptions_SetServers(cl->opts,
                                   (const char **) cmcf->cluster_urls->elts,
                                   (int) cmcf->cluster_urls->nelts);
    }

    if (s == NATS_OK) {
        p = ngx_snprintf((u_char *) name, sizeof(name) - 1,
                         "ngx_chat %V worker %P", &cmcf->host_name, ngx_pid);
        *p = '\0';
        s = natsOptions_SetName(cl->opts, name);
    }

    if (s == NATS_OK && cmcf->cluster_user.len) {
        s = natsOptions_SetUserInfo(cl->opts,
                                  (const char *) cmcf->cluster_user.data,
                                  (const char *) cmcf->cluster_password.data);
    }

    if (s == NATS_OK && cmcf->cluster_token.len) {
        s = natsOptions_SetToken(cl->opts,
                                 (const char *) cmcf->cluster_token.data);
    }

    if (s == NATS_OK && cmcf->cluster_ca.len) {
        s = natsOptions_SetSecure(cl->opts, true);

        if (s == NATS_OK) {
            s = natsOptions_SetCATrustedCertificates(cl->opts,
                                      (const char *) cmcf->cluster_ca.data);
        }
    }

    /* a worker's own events never come back to it; the other workers of
     * this nginx drop theirs by the instance id */

    if (s == NATS_OK) {
        s = natsOptions_SetNoEcho(cl->opts, true);
    }

    /* no flusher thread: a publish asks the loop for a write at once */
    if (s == NATS_OK) {
        s = natsOptions_SetSendAsap(cl->opts, true);
    }

    /* one pool of threads calls the handlers of every subscription */
    if (s == NATS_OK) {
        s = natsOptions_UseGlobalMessageDelivery(cl->opts, true);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetTimeout(cl->opts, NGX_HTTP_CHAT_CLUSTER_TIMEOUT);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetMaxReconnect(cl->opts, -1);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetReconnectWait(cl->opts,
                                         NGX_HTTP_CHAT_CLUSTER_RECONNECT);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetReconnectBufSize(cl->opts,
                                            NGX_HTTP_CHAT_CLUSTER_PENDING);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetRetryOnFailedConnect(cl->opts, true,
                                      ngx_http_chat_cluster_on_connected, cl);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetDisconnectedCB(cl->opts,
                                  ngx_http_chat_cluster_on_disconnected, cl);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetReconnectedCB(cl->opts,
                                  ngx_http_chat_cluster_on_reconnected, cl);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetClosedCB(cl->opts,
                                    ngx_http_chat_cluster_on_closed, cl);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetErrorHandler(cl->opts,
                                        ngx_http_chat_cluster_on_error, cl);
    }

    if (s == NATS_OK) {
        s = natsOptions_SetEventLoop(cl->opts, cl,
                                     ngx_http_chat_cluster_ev_attach,
                                     ngx_http_chat_cluster_ev_read,
                                     ngx_http_chat_cluster_ev_write,
                                     ngx_http_chat_cluster_ev_detach);
    }

    return s;
}


/*
 * The connector thread: nats.c's first connect (every server once, the
 * handshake) is synchronous.  A first try without retrying gives the
 * reason of a failure (nats.c forgets it when it goes on retrying): a
 * credential refused is final (nats.c would give up after the second
 * refusal anyway); otherwise a second connect leaves nats.c's reconnect
 * thread trying (NATS_NOT_YET_CONNECTED).
 */

static void *
ngx_http_chat_cluster_connector(void *data)
{
    ngx_http_chat_cluster_t *cl = data;

    const char      *text;
    natsStatus       s, ls;
    natsConnection  *nc;

    nc = NULL;
    text = NULL;

    s = natsOptions_SetRetryOnFailedConnect(cl->opts, false, NULL, NULL);

    if (s == NATS_OK) {
        s = natsConnection_Connect(&nc, cl->opts);
    }

    if (s != NATS_OK) {
        text = nats_GetLastError(&ls);

        if (text == NULL || *text == '\0') {
            text = natsStatus_GetText(s);
        }

        text = ngx_http_chat_cluster_error_text(text);

        pthread_mutex_lock(&cl->lock);
        (void) ngx_cpystrn((u_char *) cl->error, (u_char *) text,
                           sizeof(cl->error));
        cl->errors++;
        pthread_mutex_unlock(&cl->lock);

        nc = NULL;

        if (s != NATS_CONNECTION_AUTH_FAILED && s != NATS_NOT_PERMITTED) {
            s = natsOptions_SetRetryOnFailedConnect(cl->opts, true,
                                      ngx_http_chat_cluster_on_connected, cl);
            if (s == NATS_OK) {
                s = natsConnection_Connect(&nc, cl->opts);
            }
        }
    }

    pthread_mutex_lock(&cl->lock);

    cl->connect_done = 1;
    cl->connect_status = s;
    cl->connect_nc = nc;

    pthread_mutex_unlock(&cl->lock);

    ngx_http_chat_cluster_wake(cl);

    return NULL;
}


static void
ngx_http_chat_cluster_exit_process(ngx_cycle_t *cycle)
{
    ngx_rbtree_node_t              *node;
    ngx_http_chat_cluster_t        *cl;
    ngx_http_chat_cluster_sub_t    *s;
    ngx_http_chat_cluster_item_t   *it;

    cl = &ngx_http_chat_nats_link;

    if (!ngx_http_chat_cluster_running) {
        return;
    }

    /* at most one connect's timeout, once, as the worker leaves */

    if (cl->connector_running) {
        (void) pthread_join(cl->connector, NULL);
        cl->connector_running = 0;

        pthread_mutex_lock(&cl->lock);
        cl->nc = cl->connect_nc;
        pthread_mutex_unlock(&cl->lock);
    }

    if (cl->tell_sub) {
        natsSubscription_Destroy(cl->tell_sub);
        cl->tell_sub = NULL;
    }

    while (cl->subs.root != cl->subs.sentinel) {
        node = ngx_rbtree_min(cl->subs.root, cl->subs.sentinel);
        s = (ngx_http_chat_cluster_sub_t *) node;

        if (s->sub) {
            natsSubscription_Destroy(s->sub);
        }

        ngx_rbtree_delete(&cl->subs, node);
        ngx_free(s);
    }

    if (cl->nc) {
        /* detaches on this thread: our dup is closed there */
        natsConnection_Destroy(cl->nc);
        cl->nc = NULL;
    }

    if (cl->opts) {
        natsOptions_Destroy(cl->opts);
        cl->opts = NULL;
    }

    /* the module, and libnats with it, is unloaded after this */
    if (cl->nats_open) {
        cl->nats_open = 0;

        if (nats_CloseAndWait(NGX_HTTP_CHAT_CLUSTER_CLOSE) != NATS_OK) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                          "chat cluster: the NATS client's threads did not "
                          "stop within %d ms", NGX_HTTP_CHAT_CLUSTER_CLOSE);

            /* one of them may still wake the loop: the eventfd stays
             * open (the worker is leaving), nginx forgets it */
            if (cl->wake_conn) {
                cl->wake_conn->fd = (ngx_socket_t) -1;
                ngx_free_connection(cl->wake_conn);
                cl->wake_conn = NULL;
            }
        }
    }

    ngx_http_chat_cluster_unwatch(cl);

    if (cl->sock_dup != -1) {
        (void) close(cl->sock_dup);      /* made, never watched */
        cl->sock_dup = -1;
    }

    while (cl->head) {
        it = cl->head;
        cl->head = it->next;
        ngx_free(it);
    }

    if (cl->wake_conn) {
        ngx_close_connection(cl->wake_conn);
        cl->wake_conn = NULL;
    }

    if (cl->out) {
        ngx_free(cl->out);
        cl->out = NULL;
    }

    ngx_http_chat_cluster_running = 0;
}


/* header (magic, instance, seq, group), then the event's JSON */

static ngx_int_t
ngx_http_chat_cluster_publish(const u_char *group_id, int64_t seq,
    const u_char *event, size_t len)
{
    u_char                   *p;
    char                      subject[sizeof(NGX_HTTP_CHAT_CLUSTER_SUBJECT)
                                      + NGX_HTTP_CHAT_GROUP_ID_LEN];
    size_t                    size;
    natsStatus                s;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_nats_link;

    if (cl->nc == NULL) {
        ngx_http_chat_cluster_drop(cl, "not published", group_id,
                                   "not connected to the cluster yet");
        return NGX_ERROR;
    }

    size = NGX_HTTP_CHAT_CLUSTER_HEADER + len;

    if (size > cl->out_size) {
        p = ngx_alloc(ngx_max(size, 4096), cl->log);
        if (p == NULL) {
            ngx_http_chat_cluster_drop(cl, "not published", group_id,
                                       "out of memory");
            return NGX_ERROR;
        }

        if (cl->out) {
            ngx_free(cl->out);
        }

        cl->out = p;
        cl->out_size = ngx_max(size, 4096);
    }

    p = cl->out;
    ngx_memcpy(p, NGX_HTTP_CHAT_CLUSTER_MAGIC, 4);
    ngx_memcpy(p + NGX_HTTP_CHAT_CLUSTER_ORIGIN, &cl->instance, 8);
    ngx_memcpy(p + NGX_HTTP_CHAT_CLUSTER_SEQ, &seq, 8);
    ngx_strlow(p + NGX_HTTP_CHAT_CLUSTER_GROUP, (u_char *) group_id,
               NGX_HTTP_CHAT_GROUP_ID_LEN);
    ngx_memcpy(p + NGX_HTTP_CHAT_CLUSTER_HEADER, event, len);

    p = ngx_cpymem((u_char *) subject, NGX_HTTP_CHAT_CLUSTER_SUBJECT,
                   sizeof(NGX_HTTP_CHAT_CLUSTER_SUBJECT) - 1);
    p = ngx_cpymem(p, cl->out + NGX_HTTP_CHAT_CLUSTER_GROUP,
                   NGX_HTTP_CHAT_GROUP_ID_LEN);
    *p = '\0';

    /*
     * Linked, it never waits: it appends to nats.c's buffer and asks the
     * loop to watch for writing.  Unlinked, nats.c's reconnect thread may
     * hold the connection's lock through a whole connect attempt (up to
     * its timeout): dropped and counted instead; the other hosts read the
     * event from the database at their next one of the group.
     */

    if (!ngx_http_chat_cluster_is_linked(cl)) {
        ngx_http_chat_cluster_drop(cl, "not published", group_id,
                                   "the link is down");
        return NGX_ERROR;
    }

    s = natsConnection_Publish(cl->nc, subject, cl->out, (int) size);

    if (s != NATS_OK) {
        ngx_http_chat_cluster_drop(cl, "not published", group_id,
                                   natsStatus_GetText(s));
        return NGX_ERROR;
    }

    cl->events_out++;

    return NGX_OK;
}


static void
ngx_http_chat_cluster_interest(const u_char *group_id, ngx_uint_t on)
{
    ngx_str_t                     name;
    ngx_http_chat_cluster_t      *cl;
    ngx_http_chat_cluster_sub_t  *s;

    cl = &ngx_http_chat_nats_link;

    name.data = (u_char *) group_id;
    name.len = NGX_HTTP_CHAT_GROUP_ID_LEN;

    s = (ngx_http_chat_cluster_sub_t *)
            ngx_str_rbtree_lookup(&cl->subs, &name,
                                  ngx_crc32_short(name.data, name.len));

    if (on) {
        if (s) {
            s->unwanted = 0;

            if (s->sub == NULL && cl->nc && ngx_http_chat_cluster_is_linked(cl)) {
                (void) ngx_http_chat_cluster_subscribe(cl, s);
            }

            return;
        }

        s = ngx_calloc(sizeof(ngx_http_chat_cluster_sub_t), cl->log);
        if (s == NULL) {
            return;
        }

        ngx_memcpy(s->id, group_id, NGX_HTTP_CHAT_GROUP_ID_LEN);
        s->sn.str.data = s->id;
        s->sn.str.len = NGX_HTTP_CHAT_GROUP_ID_LEN;
        s->sn.node.key = ngx_crc32_short(s->id, NGX_HTTP_CHAT_GROUP_ID_LEN);

        ngx_rbtree_insert(&cl->subs, &s->sn.node);

        /* before the link is up: subscribed when it is */
        if (cl->nc && ngx_http_chat_cluster_is_linked(cl)) {
            (void) ngx_http_chat_cluster_subscribe(cl, s);
        }

        return;
    }

    if (s == NULL) {
        return;
    }

    /* (un)subscribing waits for nats.c's lock: not while it reconnects */

    if (s->sub && !ngx_http_chat_cluster_is_linked(cl)) {
        s->unwanted = 1;
        return;
    }

    if (s->sub) {
        (void) natsSubscription_Unsubscribe(s->sub);
        natsSubscription_Destroy(s->sub);
    }

    ngx_rbtree_delete(&cl->subs, &s->sn.node);
    ngx_free(s);
}


static ngx_int_t
ngx_http_chat_cluster_subscribe(ngx_http_chat_cluster_t *cl,
    ngx_http_chat_cluster_sub_t *s)
{
    u_char      *p;
    char         subject[sizeof(NGX_HTTP_CHAT_CLUSTER_SUBJECT)
                         + NGX_HTTP_CHAT_GROUP_ID_LEN];
    natsStatus   st;

    p = ngx_cpymem((u_char *) subject, NGX_HTTP_CHAT_CLUSTER_SUBJECT,
                   sizeof(NGX_HTTP_CHAT_CLUSTER_SUBJECT) - 1);
    p = ngx_cpymem(p, s->id, NGX_HTTP_CHAT_GROUP_ID_LEN);
    *p = '\0';

    st = ngx_http_chat_cluster_nats_subscribe(cl, &s->sub, subject,
                                             ngx_http_chat_cluster_on_message);

    if (st != NATS_OK) {
        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "chat cluster: cannot subscribe to \"%s\": %s; the "
                      "group's events of other hosts reach this worker "
                      "through the database only",
                      subject, natsStatus_GetText(st));
        return NGX_ERROR;
    }

    /* nats.c's own limits per subscription, above the hand-off queue's
     * (past them nats.c drops and reports a slow consumer, counted) */
    (void) natsSubscription_SetPendingLimits(s->sub,
                                             2 * NGX_HTTP_CHAT_CLUSTER_QUEUE,
                                             64 * 1024 * 1024);

    return NGX_OK;
}


/*
 * A subscription on the event loop, with the signals nginx handles
 * blocked: the delivery pool's threads start with the first one, and
 * inherit the mask.  *sub is NULL when it failed.
 */

static natsStatus
ngx_http_chat_cluster_nats_subscribe(ngx_http_chat_cluster_t *cl,
    natsSubscription **sub, const char *subject, natsMsgHandler handler)
{
    sigset_t    saved;
    natsStatus  st;

    ngx_http_chat_threads_block_signals(&saved);

    st = natsConnection_Subscribe(sub, cl->nc, subject, handler, cl);

    ngx_http_chat_threads_restore_signals(&saved);

    if (st != NATS_OK) {
        *sub = NULL;
    }

    return st;
}


/*
 * Every drop is counted; logged the 1st-10th time, then at each power of
 * two, so that a long outage does not flood the log.
 */

static void
ngx_http_chat_cluster_drop(ngx_http_chat_cluster_t *cl, const char *what,
    const u_char *group_id, const char *why)
{
    uint64_t  n;

    n = ++cl->dropped;

    if (n <= 10 || (n & (n - 1)) == 0) {
        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "chat cluster: event for group %*s %s: %s "
                      "(%uL dropped so far; the other hosts read it from "
                      "the database once this link is back)",
                      (size_t) NGX_HTTP_CHAT_GROUP_ID_LEN, group_id, what,
                      why, n);
    }
}


static void
ngx_http_chat_cluster_wake_handler(ngx_event_t *rev)
{
    uint64_t                  n;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_nats_link;

    (void) read(cl->wake_fd, &n, sizeof(n));

    if (cl->connector_running) {
        pthread_mutex_lock(&cl->lock);
        n = cl->connect_done;
        pthread_mutex_unlock(&cl->lock);

        if (n) {
            (void) pthread_join(cl->connector, NULL);
            cl->connector_running = 0;
            ngx_http_chat_cluster_linked(cl);
        }
    }

    ngx_http_chat_cluster_apply(cl);
    ngx_http_chat_cluster_states(cl);

    if (ngx_http_chat_cluster_receive(cl) == NGX_HTTP_CHAT_CLUSTER_TURN) {
        /* more: after the others' events of this turn */
        ngx_post_event(rev, &ngx_posted_events);
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rev->log, 0,
                      "chat cluster: cannot watch the wake descriptor");
    }
}


/* the connector is done: the connection, its subscriptions */

static void
ngx_http_chat_cluster_linked(ngx_http_chat_cluster_t *cl)
{
    char                          error[CHAT_WIRE_ERROR_LEN];
    ngx_uint_t                    n;
    natsStatus                    s;
    natsConnection               *nc;

    pthread_mutex_lock(&cl->lock);
    s = cl->connect_status;
    nc = cl->connect_nc;
    ngx_memcpy(error, cl->error, sizeof(error));
    error[sizeof(error) - 1] = '\0';
    pthread_mutex_unlock(&cl->lock);

    if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
        if (nc) {
            natsConnection_Destroy(nc);
        }

        n = cl->cmcf->cluster_urls->nelts;

        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "chat cluster: cannot connect to the cluster (%s%s): "
                      "%s; serving this host only, not retrying (check "
                      "chat_cluster's credentials)",
                      ((char **) cl->cmcf->cluster_urls->elts)[0],
                      n > 1 ? " and others" : "", error);

        cl->logged_state = CHAT_CLUSTER_CLOSED;
        ngx_http_chat_cluster_set_state(cl, CHAT_CLUSTER_CLOSED, NULL, NULL);
        return;
    }

    cl->nc = nc;

    if (s == NATS_OK
        && natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED)
    {
        /* nats.c calls the connected callback only after a retry */
        ngx_http_chat_cluster_set_state(cl, CHAT_CLUSTER_CONNECTED, NULL,
                                        NULL);
    }

    if (s == NATS_NOT_YET_CONNECTED) {
        /* the one line an operator greps for at start */
        n = cl->cmcf->cluster_urls->nelts;

        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "chat cluster: cannot connect to the cluster (%s%s): "
                      "%s; serving this host only, retrying every %d ms",
                      ((char **) cl->cmcf->cluster_urls->elts)[0],
                      n > 1 ? " and others" : "", error,
                      NGX_HTTP_CHAT_CLUSTER_RECONNECT);

        cl->logged_state = CHAT_CLUSTER_CONNECTING;
    }

    /* the groups that got subscribers while the connector ran (once
     * linked: else when it is) */

    ngx_http_chat_cluster_settle_subs(cl);
}


/* a socket of the link is being read (under the link's lock) */

static ngx_uint_t
ngx_http_chat_cluster_is_linked(ngx_http_chat_cluster_t *cl)
{
    ngx_uint_t  linked;

    pthread_mutex_lock(&cl->lock);
    linked = cl->linked;
    pthread_mutex_unlock(&cl->lock);

    return linked;
}


/*
 * Linked again: the groups that got their first subscriber meanwhile are
 * subscribed, those that lost their last are unsubscribed (nats.c itself
 * renews the subscriptions it had).
 */

static void
ngx_http_chat_cluster_settle_subs(ngx_http_chat_cluster_t *cl)
{
    natsStatus                    st;
    ngx_rbtree_node_t            *node, *next;
    ngx_http_chat_cluster_sub_t  *s;

    if (cl->nc == NULL || !ngx_http_chat_cluster_is_linked(cl)) {
        return;
    }

    /* the other hosts' requests to read what they missed, for good */

    if (cl->tell_sub == NULL) {
        st = ngx_http_chat_cluster_nats_subscribe(cl, &cl->tell_sub,
                                                 NGX_HTTP_CHAT_CLUSTER_TELL,
                                                 ngx_http_chat_cluster_on_tell);
        if (st != NATS_OK) {
            ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                          "chat cluster: cannot subscribe to \"%s\": %s; "
                          "what this worker misses of a host that was cut "
                          "off waits for its group's next event (retried "
                          "at the next link)",
                          NGX_HTTP_CHAT_CLUSTER_TELL, natsStatus_GetText(st));
        }
    }

    if (cl->subs.root == cl->subs.sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(cl->subs.root, cl->subs.sentinel);
         node;
         node = next)
    {
        next = ngx_rbtree_next(&cl->subs, node);
        s = (ngx_http_chat_cluster_sub_t *) node;

        if (s->unwanted) {
            if (s->sub) {
                (void) natsSubscription_Unsubscribe(s->sub);
                natsSubscription_Destroy(s->sub);
            }

            ngx_rbtree_delete(&cl->subs, &s->sn.node);
            ngx_free(s);
            continue;
        }

        if (s->sub == NULL) {
            (void) ngx_http_chat_cluster_subscribe(cl, s);
        }
    }
}


/* the link's state changes, logged once each */

void
ngx_http_chat_cluster_states(ngx_http_chat_cluster_t *cl)
{
    char        error[CHAT_WIRE_ERROR_LEN];
    ngx_uint_t  state, changes, errors, reconnects, groups;

    pthread_mutex_lock(&cl->lock);
    state = cl->state;
    changes = cl->state_changes;
    errors = cl->errors;
    reconnects = cl->reconnects;
    ngx_memcpy(error, cl->error, sizeof(error));
    error[sizeof(error) - 1] = '\0';
    pthread_mutex_unlock(&cl->lock);

    if (changes == cl->state_seen && errors == cl->errors_seen) {
        return;
    }

    cl->state_seen = changes;

    if (errors != cl->errors_seen && state == CHAT_CLUSTER_CONNECTED
        && state == cl->logged_state && error[0])
    {
        /* an asynchronous error while linked (a permission refused, or
         * nats.c dropping events of a slow consumer: the groups read what
         * they may have missed); those of a connect are in the lines
         * below */
        groups = ngx_http_chat_groups_recheck();

        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "chat cluster: the server says: %s; %ui group(s) "
                      "with subscribers here will read what they may have "
                      "missed from the database",
                      error, groups);
    }

    cl->errors_seen = errors;

    /* the other hosts' events while unlinked were not heard here: at each
     * link, even one lost and back before this ran (the state then looks
     * unchanged, the reconnect count does not) */

    groups = 0;

    if (state == CHAT_CLUSTER_CONNECTED
        && (state != cl->logged_state
            || reconnects != cl->reconnects_rechecked))
    {
        cl->reconnects_rechecked = reconnects;
        groups = ngx_http_chat_groups_recheck();

        /* after a cut (what nats.c still held to send may be lost with
         * its node) or events it could not publish, this worker asks the
         * others to read what they missed */

        if (reconnects || cl->dropped != cl->dropped_told) {
            cl->dropped_told = cl->dropped;
            cl->tells_left = NGX_HTTP_CHAT_CLUSTER_TELLS;

            if (cl->tell_ev.timer_set) {
                ngx_del_timer(&cl->tell_ev);
            }

            ngx_http_chat_cluster_tell_handler(&cl->tell_ev);
        }

        if (state == cl->logged_state) {
            ngx_log_error(NGX_LOG_NOTICE, cl->log, 0,
                          "chat cluster: lost the link and reconnected "
                          "(%ui reconnects); %ui group(s) with subscribers "
                          "here will read what they missed from the "
                          "database", reconnects, groups);
        }
    }

    if (state == cl->logged_state) {
        return;
    }

    cl->server[0] = '\0';

    if (state == CHAT_CLUSTER_CONNECTED && cl->nc) {
        (void) natsConnection_GetConnectedUrl(cl->nc, cl->server,
                                              sizeof(cl->server));
    }

    if (state == CHAT_CLUSTER_CONNECTED && cl->nc) {
        ngx_http_chat_cluster_settle_subs(cl);
    }

    switch (state) {

    case CHAT_CLUSTER_CONNECTED:
        if (groups == 0) {
            ngx_log_error(NGX_LOG_NOTICE, cl->log, 0,
                          "chat cluster: %s %s as host \"%V\"",
                          reconnects ? "reconnected to" : "connected to",
                          cl->server, &cl->cmcf->host_name);
            break;
        }

        ngx_log_error(NGX_LOG_NOTICE, cl->log, 0,
                      "chat cluster: %s %s as host \"%V\"; %ui group(s) "
                      "with subscribers here will read what they missed "
                      "from the database",
                      reconnects ? "reconnected to" : "connected to",
                      cl->server, &cl->cmcf->host_name, groups);
        break;

    case CHAT_CLUSTER_RECONNECTING:
        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "chat cluster: lost the link to the cluster; "
                      "reconnecting, this host delivers locally meanwhile");
        break;

    case CHAT_CLUSTER_CLOSED:
        ngx_log_error(NGX_LOG_ERR, cl->log, 0,
                      "chat cluster: the link is closed%s%s; serving this "
                      "host only", error[0] ? ": " : "", error);
        break;

    default:
        break;
    }

    cl->logged_state = state;
}


/*
 * Asks the other hosts' workers to read what their groups missed: now,
 * then 1, 4 and 16 x NGX_HTTP_CHAT_CLUSTER_TELL_AGAIN apart (a node back
 * from an outage may not route to the others yet); while the link is not
 * up, each NGX_HTTP_CHAT_CLUSTER_TELL_AGAIN until it is.
 */

static void
ngx_http_chat_cluster_tell_handler(ngx_event_t *ev)
{
    u_char                    msg[NGX_HTTP_CHAT_CLUSTER_TELL_LEN];
    ngx_uint_t                closed;
    natsStatus                s;
    ngx_http_chat_cluster_t  *cl;

    cl = ev->data;

    if (cl->tells_left == 0 || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (cl->nc == NULL || !ngx_http_chat_cluster_is_linked(cl)) {
        pthread_mutex_lock(&cl->lock);
        closed = (cl->state == CHAT_CLUSTER_CLOSED);
        pthread_mutex_unlock(&cl->lock);

        if (closed) {
            cl->tells_left = 0;             /* never linked again */
            return;
        }

        /* being attached, or cut again: the next link starts over */
        ngx_add_timer(ev, NGX_HTTP_CHAT_CLUSTER_TELL_AGAIN);
        return;
    }

    ngx_memcpy(msg, NGX_HTTP_CHAT_CLUSTER_TELL_MAGIC, 4);
    ngx_memcpy(msg + NGX_HTTP_CHAT_CLUSTER_ORIGIN, &cl->instance, 8);

    s = natsConnection_Publish(cl->nc, NGX_HTTP_CHAT_CLUSTER_TELL, msg,
                               (int) sizeof(msg));

    if (s != NATS_OK) {
        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "chat cluster: cannot ask the other hosts to read "
                      "what they missed: %s", natsStatus_GetText(s));

    } else if (cl->tells_left == NGX_HTTP_CHAT_CLUSTER_TELLS) {
        ngx_log_error(NGX_LOG_NOTICE, cl->log, 0,
                      "chat cluster: asked the other hosts to read from the "
                      "database what they missed of this worker's events "
                      "(%uL not published so far)", cl->dropped);
    }

    cl->tells_left--;

    if (cl->tells_left) {
        ngx_add_timer(ev, NGX_HTTP_CHAT_CLUSTER_TELL_AGAIN
                      << (2 * (NGX_HTTP_CHAT_CLUSTER_TELLS - 1
                               - cl->tells_left)));
    }
}


/*
 * Other hosts' workers asked: one recheck of this worker's groups at most
 * every NGX_HTTP_CHAT_CLUSTER_TELL_AGAIN, so that a whole cluster
 * relinking at once (every worker of every host tells, and tells again)
 * costs each group here a read a second, not one a request.
 */

static void
ngx_http_chat_cluster_told_handler(ngx_event_t *ev)
{
    uint64_t                  told;
    ngx_uint_t                groups;
    ngx_http_chat_cluster_t  *cl;

    cl = ev->data;

    pthread_mutex_lock(&cl->lock);
    told = cl->told;
    pthread_mutex_unlock(&cl->lock);

    if (told == cl->told_seen || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    cl->told_seen = told;
    groups = ngx_http_chat_groups_recheck();

    ngx_log_error(NGX_LOG_INFO, cl->log, 0,
                  "chat cluster: another host's worker asked, linked "
                  "again; %ui group(s) with subscribers here will read what "
                  "they missed from the database", groups);

    /* the ones that come meanwhile wait for this */
    ngx_add_timer(ev, NGX_HTTP_CHAT_CLUSTER_TELL_AGAIN);
}


/* the received events, in order, to the groups */

static ngx_uint_t
ngx_http_chat_cluster_receive(ngx_http_chat_cluster_t *cl)
{
    uint64_t                       full, bad, told;
    ngx_uint_t                     n;
    ngx_http_chat_cluster_item_t  *it, *next;

    pthread_mutex_lock(&cl->lock);

    full = cl->thread_full;
    bad = cl->thread_bad;
    told = cl->told;

    it = cl->head;
    n = 0;

    while (cl->head && n < NGX_HTTP_CHAT_CLUSTER_TURN) {
        cl->head = cl->head->next;
        n++;
    }

    if (cl->head == NULL) {
        cl->tail = &cl->head;
    }

    cl->queued -= n;

    pthread_mutex_unlock(&cl->lock);

    /* the delivery threads' drops: the first of each kind at once, then
     * at most once a second (the link's record has the exact count) */

    if (full != cl->full_rechecked) {
        cl->full_rechecked = full;
        (void) ngx_http_chat_groups_recheck();
    }

    if (told != cl->told_seen && !cl->told_ev.timer_set) {
        ngx_http_chat_cluster_told_handler(&cl->told_ev);
    }

    if (full != cl->full_seen
        && (cl->full_seen == 0 || ngx_time() != cl->full_logged))
    {
        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "chat cluster: %uL event(s) from the cluster "
                      "dropped: the hand-off queue was full (%d) (%uL so "
                      "far); the groups with subscribers here will read "
                      "them from the database",
                      full - cl->full_seen, NGX_HTTP_CHAT_CLUSTER_QUEUE,
                      full);

        cl->full_seen = full;
        cl->full_logged = ngx_time();
    }

    if (bad != cl->bad_seen
        && (cl->bad_seen == 0 || ngx_time() != cl->bad_logged))
    {
        ngx_log_error(NGX_LOG_WARN, cl->log, 0,
                      "chat cluster: %uL malformed message(s) from the "
                      "cluster dropped (%uL so far)",
                      bad - cl->bad_seen, bad);

        cl->bad_seen = bad;
        cl->bad_logged = ngx_time();
    }

    for (n = 0; it && n < NGX_HTTP_CHAT_CLUSTER_TURN; it = next, n++) {
        next = it->next;

        cl->events_in++;

        (void) ngx_http_chat_groups_deliver(it->group, it->seq, it->event,
                                            it->len);
        ngx_free(it);
    }

    return n;
}


void
ngx_http_chat_cluster_link(ngx_http_chat_main_conf_t *cmcf,
    chat_wire_cluster_t *link)
{
    size_t                    len;
    ngx_http_chat_cluster_t  *cl;

    cl = &ngx_http_chat_nats_link;

    ngx_memzero(link, sizeof(chat_wire_cluster_t));

    len = ngx_min(cmcf->host_name.len, CHAT_WIRE_HOST_LEN);
    ngx_memcpy(link->host, cmcf->host_name.data, len);
    link->host_len = (uint8_t) len;

    link->gaps_filled = ngx_http_chat_groups_gaps_filled();

    if (!ngx_http_chat_cluster_running) {
        link->state = CHAT_CLUSTER_OFF;
        return;
    }

    pthread_mutex_lock(&cl->lock);

    link->state = (uint8_t) cl->state;
    link->reconnects = cl->reconnects;
    link->dropped = cl->thread_full + cl->thread_bad;

    len = ngx_strnlen((u_char *) cl->error, sizeof(cl->error));
    ngx_memcpy(link->error, cl->error, len);
    link->error_len = (uint8_t) len;

    pthread_mutex_unlock(&cl->lock);

    link->dropped += cl->dropped;
    link->events_out = cl->events_out;
    link->events_in = cl->events_in;

    if (link->state == CHAT_CLUSTER_CONNECTED) {
        len = ngx_strnlen((u_char *) cl->server, sizeof(cl->server));
        ngx_memcpy(link->server, cl->server, len);
        link->server_len = (uint8_t) len;
    }
}

