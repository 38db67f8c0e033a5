/*
 * ngx_http_chat_bus.c - the transport between the workers of one nginx
 * (ngx_http_chat_transport.h): an nng bus socket per worker.
 *
 * Across workers: an nng bus socket per worker, in a full mesh of abstract
 * Unix sockets named after the master's pid, the configuration generation
 * and the worker's slot.  Worker i listens on its own name and dials every
 * slot above its own, so each pair shares exactly one pipe and a bus
 * message reaches each other worker once, in order.  A worker that
 * restarts takes its slot's name again and the others' dialers reconnect;
 * after a reload the new workers form a mesh of their own (the old ones
 * close their WebSockets with 1001).  The bus is read through its
 * NNG_OPT_RECVFD descriptor in nginx's event loop: no thread, no timer.
 *
 * Each bus message carries its origin's slot, pid and a sequence number.
 * nng's bus drops a message for a pipe whose queue is full (a worker that
 * does not read: 1024 in its receive queue, then the socket buffer, then
 * 16 a pipe at the sender, in nng 1.5) without telling the sender; the
 * worker that misses events sees the gap in the numbers at the next
 * message from the same origin, and logs how many it missed.  The gap
 * may hold events of any group, so every group with subscribers here
 * then reads what follows its seq due from the database
 * (ngx_http_chat_groups_recheck()).  So that the last events of a burst
 * are not lost until the origin's next event, each worker that has sent
 * anything also sends a tick, its last number, every
 * NGX_HTTP_CHAT_BUS_TICK: a tick lost as well is followed by the next.
 *
 * A bus message only reaches the workers whose pipe is up when it is
 * sent.  So that no subscriber joins a worker the others cannot reach
 * yet, a starting worker waits in init_process, before its event loop
 * accepts anything, until it has a pipe to every other slot (nng's pipe
 * callbacks count them), at most NGX_HTTP_CHAT_BUS_JOIN_WAIT; a slot
 * still missing then is a worker that is not running (or does not
 * answer), and it will dial or be dialed when it comes.  The warning
 * names it: a pipe's dialer tells the slots above this one apart; the
 * slots below dial in, and are named when none of them did.
 *
 * Abstract sockets have no file permissions: any local process could dial
 * a worker's name.  A pipe is kept only if the process at its other end
 * (SO_PEERCRED, through nng) is a child of this nginx's master, that is
 * another worker; anything else is closed before it can send a message.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <signal.h>
#include <pthread.h>

#include <nng/nng.h>
#include <nng/protocol/bus0/bus.h>

#include "ngx_http_chat_module.h"
#include "ngx_http_chat_groups.h"
#include "ngx_http_chat_transport.h"


#define NGX_HTTP_CHAT_BUS_MAGIC      "CHB3"
#define NGX_HTTP_CHAT_BUS_TICK_MAGIC "CHBT"     /* slot, pid, last seq */
#define NGX_HTTP_CHAT_BUS_TICK_LEN   20
#define NGX_HTTP_CHAT_BUS_SLOT       4          /* uint32_t, the origin */
#define NGX_HTTP_CHAT_BUS_PID        8          /* uint32_t */
#define NGX_HTTP_CHAT_BUS_SEQ        12         /* uint64_t, from 1 */
#define NGX_HTTP_CHAT_BUS_EVENT_SEQ  20         /* int64_t, in its group */
#define NGX_HTTP_CHAT_BUS_GROUP      28         /* the group's id */
#define NGX_HTTP_CHAT_BUS_HEADER     (28 + NGX_HTTP_CHAT_GROUP_ID_LEN)
#define NGX_HTTP_CHAT_BUS_BUF        1024       /* send, receive queues */
#define NGX_HTTP_CHAT_BUS_JOIN_WAIT  3000       /* ms, see above */
#define NGX_HTTP_CHAT_BUS_GONE       64         /* see the pipe callback */
#define NGX_HTTP_CHAT_BUS_RENEW      1000       /* ms, see the dial watch */
#define NGX_HTTP_CHAT_BUS_CHECK      250        /* ms */
#define NGX_HTTP_CHAT_BUS_TICK       1000       /* ms between ticks */


typedef struct {
    uint32_t                   pid;             /* 0: nothing heard yet */
    uint64_t                   next;            /* the number expected */
} ngx_http_chat_bus_origin_t;


typedef struct {
    nng_socket                 bus;
    ngx_flag_t                 bus_open;
    ngx_connection_t          *bus_conn;        /* fake: nng's recv fd */

    uint64_t                   sent;            /* numbers the messages */
    uint64_t                   send_failed;
    uint64_t                   missed;

    ngx_http_chat_bus_origin_t *origins;        /* by slot */
    ngx_uint_t                 norigins;

    /* pipes to other workers, kept by nng's threads */
    pthread_mutex_t            peers_lock;
    pthread_cond_t             peers_cond;
    uint32_t                  *peer_pipes;      /* ids of the kept pipes */
    uint32_t                  *peer_dialers;    /* and of their dialers */
    uint32_t                  *dialers;         /* ours, by slot */
    ngx_uint_t                 peers;
    ngx_uint_t                 max_peers;
    ngx_uint_t                 refused;         /* pipes of strangers */
    uint32_t                   gone[NGX_HTTP_CHAT_BUS_GONE];
    ngx_uint_t                 ngone;           /* ring of removed ids */

    /* the event loop's watch over our dialers (slots above ours) */
    ngx_event_t                dial_watch_ev;
    ngx_event_t                tick_ev;         /* our last number, sent */
    ngx_msec_t                *down_since;      /* by slot; 0: dialed */
    ngx_uint_t                 slot;
    ngx_uint_t                 workers;
} ngx_http_chat_bus_t;


static void ngx_http_chat_bus_configured(ngx_http_chat_main_conf_t *cmcf);
static ngx_int_t ngx_http_chat_bus_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf);
static void ngx_http_chat_bus_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_chat_bus_publish(const u_char *group_id,
    int64_t event_seq, const u_char *event, size_t len);
static void ngx_http_chat_bus_read(ngx_event_t *rev);
static void ngx_http_chat_bus_address(char *buf, size_t size,
    ngx_uint_t slot);
static void ngx_http_chat_bus_pipe_event(nng_pipe pipe, nng_pipe_ev ev,
    void *data);
static ngx_pid_t ngx_http_chat_bus_peer_parent(nng_pipe pipe,
    ngx_pid_t *pid);
static ngx_uint_t ngx_http_chat_bus_wait_peers(ngx_uint_t want,
    ngx_msec_t timeout);
static void ngx_http_chat_bus_sequence(ngx_http_chat_bus_t *b,
    u_char *header, ngx_uint_t tick);
static void ngx_http_chat_bus_tick(ngx_event_t *ev);
static void ngx_http_chat_bus_origin(u_char *p, const char *magic,
    uint64_t seq);
static u_char *ngx_http_chat_bus_missing(u_char *p, u_char *last,
    ngx_uint_t slot, ngx_uint_t workers);
static ngx_uint_t ngx_http_chat_bus_dialed(ngx_http_chat_bus_t *b,
    ngx_uint_t slot);
static int ngx_http_chat_bus_dial(ngx_http_chat_bus_t *b, ngx_uint_t slot);
static void ngx_http_chat_bus_watch_dialers(ngx_event_t *ev);


ngx_http_chat_transport_t  ngx_http_chat_bus_transport = {
    "nng bus",
    ngx_http_chat_bus_configured,
    ngx_http_chat_bus_init_process,
    ngx_http_chat_bus_exit_process,
    ngx_http_chat_bus_publish,
    NULL                                        /* every worker hears all */
};


static ngx_http_chat_bus_t  ngx_http_chat_bus;

/*
 * The bus's name: the master's pid and the configuration's generation.
 * The generation is kept in the cycle's configuration, so that a reload
 * that fails leaves the running cycle's workers (and any of them the
 * master respawns) on the name they share.  The master's pid is taken in
 * the worker (getppid()): at the first configuration load nginx has not
 * daemonized yet, and ngx_pid is still the pid of the process that exits.
 */

static ngx_uint_t  ngx_http_chat_bus_loads;
static ngx_pid_t   ngx_http_chat_bus_master;        /* in a worker */
static ngx_uint_t  ngx_http_chat_bus_generation;    /* in a worker */


static void
ngx_http_chat_bus_configured(ngx_http_chat_main_conf_t *cmcf)
{
    cmcf->bus_generation = ++ngx_http_chat_bus_loads;
}


static ngx_int_t
ngx_http_chat_bus_init_process(ngx_cycle_t *cycle,
    ngx_http_chat_main_conf_t *cmcf)
{
    int                         rv, fd;
    char                        addr[128];
    u_char                      missing[256], *last;
    sigset_t                    saved;
    ngx_uint_t                  slot, n, peers;
    ngx_msec_t                  started;
    pthread_condattr_t          cattr;
    ngx_event_t                *rev;
    ngx_core_conf_t            *ccf;
    ngx_connection_t           *c;
    ngx_http_chat_bus_t        *b;

    b = &ngx_http_chat_bus;
    ngx_memzero(b, sizeof(ngx_http_chat_bus_t));

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ngx_process == NGX_PROCESS_SINGLE || ccf->worker_processes < 2) {
        return NGX_DECLINED;                /* nobody to fan out to */
    }

    slot = ngx_worker;

    /* set before the pipe callbacks are registered: nng's threads read
     * them there (nng_pipe_notify() orders the writes before) */
    ngx_http_chat_bus_master = getppid();
    ngx_http_chat_bus_generation = cmcf->bus_generation;

    ngx_http_chat_bus_address(addr, sizeof(addr), slot);

    /* room for every other slot, and one more while a dead worker's
     * pipe is being torn down as its replacement dials in */
    b->max_peers = ccf->worker_processes;
    b->peer_pipes = ngx_alloc(b->max_peers * sizeof(uint32_t), cycle->log);
    b->peer_dialers = ngx_alloc(b->max_peers * sizeof(uint32_t), cycle->log);
    b->dialers = ngx_calloc(ccf->worker_processes * sizeof(uint32_t),
                            cycle->log);
    b->down_since = ngx_calloc(ccf->worker_processes * sizeof(ngx_msec_t),
                               cycle->log);

    if (b->peer_pipes == NULL || b->peer_dialers == NULL
        || b->dialers == NULL || b->down_since == NULL)
    {
        return NGX_ERROR;
    }

    b->norigins = ccf->worker_processes;
    b->origins = ngx_calloc(b->norigins * sizeof(ngx_http_chat_bus_origin_t),
                            cycle->log);
    if (b->origins == NULL) {
        return NGX_ERROR;
    }

    /* the wait's deadline is on the monotonic clock, immune to date(1) */
    if (pthread_condattr_init(&cattr) != 0
        || pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC) != 0
        || pthread_mutex_init(&b->peers_lock, NULL) != 0
        || pthread_cond_init(&b->peers_cond, &cattr) != 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat broadcast: cannot create the bus's peer lock");
        return NGX_ERROR;
    }

    (void) pthread_condattr_destroy(&cattr);

    started = ngx_current_msec;

    ngx_http_chat_threads_block_signals(&saved);

    rv = nng_bus0_open(&b->bus);

    if (rv == 0) {
        (void) nng_socket_set_int(b->bus, NNG_OPT_SENDBUF,
                                  NGX_HTTP_CHAT_BUS_BUF);
        (void) nng_socket_set_int(b->bus, NNG_OPT_RECVBUF,
                                  NGX_HTTP_CHAT_BUS_BUF);

        /* a slot that is coming is redialed soon; a dead one costs a
         * refused connect on an abstract socket every 100 ms */
        (void) nng_socket_set_ms(b->bus, NNG_OPT_RECONNMINT, 10);
        (void) nng_socket_set_ms(b->bus, NNG_OPT_RECONNMAXT, 100);

        rv = nng_pipe_notify(b->bus, NNG_PIPE_EV_ADD_PRE,
                             ngx_http_chat_bus_pipe_event, b);
    }

    if (rv == 0) {
        rv = nng_pipe_notify(b->bus, NNG_PIPE_EV_ADD_POST,
                             ngx_http_chat_bus_pipe_event, b);
    }

    if (rv == 0) {
        rv = nng_pipe_notify(b->bus, NNG_PIPE_EV_REM_POST,
                             ngx_http_chat_bus_pipe_event, b);
    }

    if (rv == 0) {
        rv = nng_listen(b->bus, addr, NULL, 0);
    }

    if (rv == 0) {
        for (n = slot + 1; n < (ngx_uint_t) ccf->worker_processes; n++) {
            ngx_http_chat_bus_address(addr, sizeof(addr), n);

            rv = ngx_http_chat_bus_dial(b, n);
            if (rv != 0) {
                break;
            }
        }
    }

    if (rv == 0) {
        rv = nng_socket_get_int(b->bus, NNG_OPT_RECVFD, &fd);
    }

    ngx_http_chat_threads_restore_signals(&saved);

    if (rv != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat broadcast: cannot join the workers' bus at "
                      "\"%s\": %s", addr, nng_strerror(rv));
        return NGX_ERROR;
    }

    b->bus_open = 1;

    /* nng owns the descriptor: nginx only watches it */

    c = ngx_get_connection(fd, cycle->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = b;
    rev = c->read;
    rev->handler = ngx_http_chat_bus_read;
    rev->log = cycle->log;
    b->bus_conn = c;

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    n = ccf->worker_processes - 1;
    peers = ngx_http_chat_bus_wait_peers(n, NGX_HTTP_CHAT_BUS_JOIN_WAIT);

    ngx_time_update();

    if (peers < n) {
        last = ngx_http_chat_bus_missing(missing, missing + sizeof(missing),
                                         slot, ccf->worker_processes);

        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "chat broadcast: worker slot %ui of %i reaches %ui "
                      "of its %ui peers after %M ms, not %*s: they are not "
                      "running or do not answer; this worker serves now, "
                      "and each joins when it answers",
                      slot, ccf->worker_processes, peers, n,
                      ngx_current_msec - started, last - missing, missing);
    }

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "chat broadcast: worker slot %ui of %i joined the bus "
                  "(%ui of %ui peers in %M ms)",
                  slot, ccf->worker_processes, peers, n,
                  ngx_current_msec - started);

    b->slot = slot;
    b->workers = ccf->worker_processes;

    if (slot + 1 < b->workers) {
        b->dial_watch_ev.handler = ngx_http_chat_bus_watch_dialers;
        b->dial_watch_ev.log = cycle->log;
        b->dial_watch_ev.data = b;
        b->dial_watch_ev.cancelable = 1;
        ngx_add_timer(&b->dial_watch_ev, NGX_HTTP_CHAT_BUS_CHECK);
    }

    b->tick_ev.handler = ngx_http_chat_bus_tick;
    b->tick_ev.log = cycle->log;
    b->tick_ev.data = b;
    b->tick_ev.cancelable = 1;
    ngx_add_timer(&b->tick_ev, NGX_HTTP_CHAT_BUS_TICK);

    return NGX_OK;
}


/*
 * nng's threads: refuses strangers, keeps the ids of the workers' pipes.
 * Touches nothing of nginx's but its log (as nginx's own threads do).
 */

static void
ngx_http_chat_bus_pipe_event(nng_pipe pipe, nng_pipe_ev ev, void *data)
{
    uint32_t                    id;
    ngx_pid_t                   pid, parent;
    ngx_uint_t                  i;
    ngx_http_chat_bus_t        *b = data;

    id = (uint32_t) nng_pipe_id(pipe);

    if (ev == NNG_PIPE_EV_ADD_PRE) {
        parent = ngx_http_chat_bus_peer_parent(pipe, &pid);

        if (parent != ngx_http_chat_bus_master) {
            pthread_mutex_lock(&b->peers_lock);
            i = ++b->refused;
            pthread_mutex_unlock(&b->peers_lock);

            /* a stranger redials at will: the 1st-10th, then 16th, 32nd.. */
            if (i <= 10 || (i & (i - 1)) == 0) {
                ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                              "chat broadcast: refused a bus connection "
                              "from pid %P (parent %P): not a worker of "
                              "this nginx (%ui refused so far)",
                              pid, parent, i);
            }

            (void) nng_pipe_close(pipe);
        }

        return;
    }

    pthread_mutex_lock(&b->peers_lock);

    if (ev == NNG_PIPE_EV_ADD_POST) {

        /*
         * nng's reaper may run a pipe's REM_POST before the thread that
         * started it runs its ADD_POST (a pipe that closes at once): a
         * pipe already removed is not counted.  Ids are never reused.
         */

        for (i = 0; i < NGX_HTTP_CHAT_BUS_GONE; i++) {
            if (b->gone[i] == id) {
                b->gone[i] = 0;
                goto done;
            }
        }

        if (b->peers < b->max_peers) {
            b->peer_dialers[b->peers] =
                             (uint32_t) nng_dialer_id(nng_pipe_dialer(pipe));
            b->peer_pipes[b->peers++] = id;
            pthread_cond_broadcast(&b->peers_cond);
        }

        goto done;
    }

    for (i = 0; i < b->peers; i++) {
        if (b->peer_pipes[i] == id) {
            b->peers--;
            b->peer_pipes[i] = b->peer_pipes[b->peers];
            b->peer_dialers[i] = b->peer_dialers[b->peers];
            goto done;
        }
    }

    /* refused, or not added yet */
    b->gone[b->ngone++ % NGX_HTTP_CHAT_BUS_GONE] = id;

done:

    pthread_mutex_unlock(&b->peers_lock);
}


/* the parent pid of the process at the pipe's other end, or -1 */

static ngx_pid_t
ngx_http_chat_bus_peer_parent(nng_pipe pipe, ngx_pid_t *pid)
{
    int        fd;
    char       path[64], buf[512], *p;
    ssize_t    n;
    uint64_t   peer;
    ngx_pid_t  parent;

    *pid = -1;

    if (nng_pipe_get_uint64(pipe, NNG_OPT_IPC_PEER_PID, &peer) != 0
        || peer == 0 || peer > (uint64_t) NGX_MAX_INT32_VALUE)
    {
        return -1;
    }

    *pid = (ngx_pid_t) peer;

    /* /proc/PID/stat: "PID (comm) S PPID ...", comm may hold ") " */

    (void) ngx_sprintf((u_char *) path, "/proc/%P/stat%Z", *pid);

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }

    n = read(fd, buf, sizeof(buf) - 1);
    (void) close(fd);

    if (n <= 0) {
        return -1;
    }

    buf[n] = '\0';

    p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] == '\0' || p[3] != ' ') {
        return -1;
    }

    parent = (ngx_pid_t) strtol(p + 4, NULL, 10);

    return parent > 0 ? parent : -1;
}


/* before the event loop runs: waits for pipes to the other workers */

static ngx_uint_t
ngx_http_chat_bus_wait_peers(ngx_uint_t want, ngx_msec_t timeout)
{
    ngx_uint_t                  peers;
    struct timespec             deadline;
    ngx_http_chat_bus_t        *b;

    b = &ngx_http_chat_bus;

    (void) clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout / 1000;
    deadline.tv_nsec += (long) (timeout % 1000) * 1000000;

    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }

    pthread_mutex_lock(&b->peers_lock);

    while (b->peers < want) {
        if (pthread_cond_timedwait(&b->peers_cond, &b->peers_lock, &deadline)
            == ETIMEDOUT)
        {
            break;
        }
    }

    peers = b->peers;

    pthread_mutex_unlock(&b->peers_lock);

    return peers;
}



/*
 * The slots that have no pipe to this one: "slot 2", "slots 0, 2", or
 * "1 of slots 0-2" when only some of those below (which dial in, through
 * the listener, so cannot be told apart) have.
 */

static u_char *
ngx_http_chat_bus_missing(u_char *p, u_char *last, ngx_uint_t slot,
    ngx_uint_t workers)
{
    ngx_uint_t            n, dialed, below, named;
    ngx_http_chat_bus_t  *b;

    b = &ngx_http_chat_bus;

    pthread_mutex_lock(&b->peers_lock);

    dialed = 0;
    named = 0;

    for (n = slot + 1; n < workers; n++) {
        if (ngx_http_chat_bus_dialed(b, n)) {
            dialed++;

        } else {
            named++;
        }
    }

    /* the pipes that are not ours came from below */
    below = slot - ngx_min(slot, b->peers - dialed);

    if (below == slot) {
        named += slot;
    }

    if (named) {
        p = ngx_slprintf(p, last, named == 1 ? "slot " : "slots ");
    }

    named = 0;

    for (n = 0; n < workers; n++) {
        if (n == slot) {
            continue;
        }

        if (n < slot ? below == slot : !ngx_http_chat_bus_dialed(b, n)) {
            p = ngx_slprintf(p, last, "%s%ui", named++ ? ", " : "", n);
        }
    }

    if (below && below != slot) {
        p = ngx_slprintf(p, last, "%s%ui of slots 0-%ui",
                         named ? " and " : "", below, slot - 1);
    }

    pthread_mutex_unlock(&b->peers_lock);

    return p;
}


/*
 * A dialer to a slot above ours, started without waiting; its id is
 * recorded before any of its pipes can come up.
 */

static int
ngx_http_chat_bus_dial(ngx_http_chat_bus_t *b, ngx_uint_t slot)
{
    int         rv;
    char        addr[128];
    nng_dialer  dialer;

    ngx_http_chat_bus_address(addr, sizeof(addr), slot);

    rv = nng_dialer_create(&dialer, b->bus, addr);
    if (rv != 0) {
        return rv;
    }

    pthread_mutex_lock(&b->peers_lock);
    b->dialers[slot] = (uint32_t) nng_dialer_id(dialer);
    pthread_mutex_unlock(&b->peers_lock);

    rv = nng_dialer_start(dialer, NNG_FLAG_NONBLOCK);
    if (rv != 0) {
        (void) nng_dialer_close(dialer);
    }

    return rv;
}


/*
 * The event loop, every second: a dialer of ours without a pipe to its
 * slot for NGX_HTTP_CHAT_BUS_RENEW is closed and replaced.  libnng 1.5.2's
 * dialer stops redialing for good when a connection is cut before its
 * handshake (see ngx_http_chat_metrics_watch_dialer()): a worker killed
 * as another dials it could leave the pair without a pipe until one of
 * them restarts, and every event between them to the database's gap fill.
 * The slot's worker may just be down (being respawned): then a new dialer
 * costs a refused connect.  1 s is ten of the dialer's own attempts, and
 * well within the 3 s a replacement worker waits at start for its peers.
 */

static void
ngx_http_chat_bus_watch_dialers(ngx_event_t *ev)
{
    int                   rv;
    sigset_t              saved;
    nng_dialer            old;
    ngx_uint_t            n, dialed;
    ngx_http_chat_bus_t  *b;

    b = ev->data;

    if (!b->bus_open || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_CHAT_BUS_CHECK);

    for (n = b->slot + 1; n < b->workers; n++) {

        pthread_mutex_lock(&b->peers_lock);
        dialed = ngx_http_chat_bus_dialed(b, n);
        old.id = b->dialers[n];
        pthread_mutex_unlock(&b->peers_lock);

        if (dialed) {
            b->down_since[n] = 0;
            continue;
        }

        if (b->down_since[n] == 0) {
            b->down_since[n] = ngx_current_msec;
            continue;
        }

        if (ngx_current_msec - b->down_since[n] < NGX_HTTP_CHAT_BUS_RENEW) {
            continue;
        }

        ngx_http_chat_threads_block_signals(&saved);

        (void) nng_dialer_close(old);
        rv = ngx_http_chat_bus_dial(b, n);

        ngx_http_chat_threads_restore_signals(&saved);

        b->down_since[n] = ngx_current_msec;

        if (rv != 0) {
            ngx_log_error(NGX_LOG_ALERT, ev->log, 0,
                          "chat broadcast: cannot dial worker slot %ui "
                          "anew: %s; retrying in %d ms",
                          n, nng_strerror(rv), NGX_HTTP_CHAT_BUS_CHECK);
            continue;
        }

        ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                      "chat broadcast: no pipe to worker slot %ui for "
                      "%d ms; dialing it with a new dialer",
                      n, NGX_HTTP_CHAT_BUS_RENEW);
    }
}


/* a pipe of our dialer to that slot is up; under peers_lock */

static ngx_uint_t
ngx_http_chat_bus_dialed(ngx_http_chat_bus_t *b, ngx_uint_t slot)
{
    ngx_uint_t  i;

    for (i = 0; i < b->peers; i++) {
        if (b->peer_dialers[i] == b->dialers[slot]) {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_chat_bus_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_chat_bus_t  *b;

    b = &ngx_http_chat_bus;

    if (b->bus_conn) {
        /* not ours to close: forget it without touching the fd */
        b->bus_conn->fd = (ngx_socket_t) -1;
        ngx_free_connection(b->bus_conn);
        b->bus_conn = NULL;
    }

    if (b->bus_open) {
        (void) nng_close(b->bus);   /* no pipe callback runs after it */
        b->bus_open = 0;
    }

    if (b->peer_pipes) {
        ngx_free(b->peer_pipes);
        b->peer_pipes = NULL;
    }

    if (b->peer_dialers) {
        ngx_free(b->peer_dialers);
        b->peer_dialers = NULL;
    }

    if (b->dialers) {
        ngx_free(b->dialers);
        b->dialers = NULL;
    }

    if (b->down_since) {
        ngx_free(b->down_since);
        b->down_since = NULL;
    }

    if (b->origins) {
        ngx_free(b->origins);
        b->origins = NULL;
    }
}


static void
ngx_http_chat_bus_address(char *buf, size_t size, ngx_uint_t slot)
{
    u_char  *p;

    p = ngx_snprintf((u_char *) buf, size - 1,
                     "abstract://ngx-chat-%P-%ui-%ui",
                     ngx_http_chat_bus_master, ngx_http_chat_bus_generation,
                     slot);
    *p = '\0';
}


/*
 * One message for the others: magic, origin, the number of the message
 * among those sent (a failed send uses none), the event's seq in its
 * group, group, JSON; never waits.
 */

static ngx_int_t
ngx_http_chat_bus_publish(const u_char *group_id, int64_t event_seq,
    const u_char *event, size_t len)
{
    int                   rv;
    u_char               *p;
    nng_msg              *msg;
    ngx_http_chat_bus_t  *b;

    b = &ngx_http_chat_bus;

    rv = nng_msg_alloc(&msg, NGX_HTTP_CHAT_BUS_HEADER + len);
    if (rv == 0) {
        p = nng_msg_body(msg);

        ngx_http_chat_bus_origin(p, NGX_HTTP_CHAT_BUS_MAGIC, b->sent + 1);
        ngx_memcpy(p + NGX_HTTP_CHAT_BUS_EVENT_SEQ, &event_seq, 8);
        ngx_memcpy(p + NGX_HTTP_CHAT_BUS_GROUP, group_id,
                   NGX_HTTP_CHAT_GROUP_ID_LEN);
        ngx_memcpy(p + NGX_HTTP_CHAT_BUS_HEADER, event, len);

        rv = nng_sendmsg(b->bus, msg, NNG_FLAG_NONBLOCK);
        if (rv != 0) {
            nng_msg_free(msg);
        }
    }

    if (rv == 0) {
        b->sent++;
        return NGX_OK;
    }

    b->send_failed++;

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "chat broadcast: event for group %*s not sent to the "
                  "other workers: %s (%uL so far)",
                  (size_t) NGX_HTTP_CHAT_GROUP_ID_LEN, group_id,
                  nng_strerror(rv), b->send_failed);

    return NGX_ERROR;
}


/* edge-triggered: drain every waiting message */

static void
ngx_http_chat_bus_read(ngx_event_t *rev)
{
    int                         rv;
    u_char                     *p;
    size_t                      len;
    int64_t                     event_seq;
    nng_msg                    *msg;
    ngx_http_chat_bus_t        *b;

    b = &ngx_http_chat_bus;

    for ( ;; ) {
        rv = nng_recvmsg(b->bus, &msg, NNG_FLAG_NONBLOCK);

        if (rv == NNG_EAGAIN) {
            break;
        }

        if (rv != 0) {
            ngx_log_error(NGX_LOG_ALERT, rev->log, 0,
                          "chat broadcast: receive failed: %s",
                          nng_strerror(rv));
            break;
        }

        p = nng_msg_body(msg);
        len = nng_msg_len(msg);

        if (len == NGX_HTTP_CHAT_BUS_TICK_LEN
            && ngx_memcmp(p, NGX_HTTP_CHAT_BUS_TICK_MAGIC, 4) == 0)
        {
            ngx_http_chat_bus_sequence(b, p, 1);

        } else if (len > NGX_HTTP_CHAT_BUS_HEADER
                   && ngx_memcmp(p, NGX_HTTP_CHAT_BUS_MAGIC, 4) == 0)
        {
            ngx_http_chat_bus_sequence(b, p, 0);
            ngx_memcpy(&event_seq, p + NGX_HTTP_CHAT_BUS_EVENT_SEQ, 8);
            (void) ngx_http_chat_groups_deliver(p + NGX_HTTP_CHAT_BUS_GROUP,
                                                event_seq,
                                                p + NGX_HTTP_CHAT_BUS_HEADER,
                                                len - NGX_HTTP_CHAT_BUS_HEADER);
        }

        nng_msg_free(msg);
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, rev->log, 0,
                      "chat broadcast: cannot watch the bus descriptor");
    }
}


/*
 * A gap in an origin's numbers: events the bus dropped on their way here.
 * A new pid in the slot (a worker that restarted) starts over.  An event
 * carries its own number; a tick the origin's last one, so the number it
 * expects next is one more.
 */

static void
ngx_http_chat_bus_sequence(ngx_http_chat_bus_t *b, u_char *header,
    ngx_uint_t tick)
{
    uint32_t                     slot, pid;
    uint64_t                     seq, missed;
    ngx_uint_t                   groups;
    ngx_http_chat_bus_origin_t  *o;

    ngx_memcpy(&slot, header + NGX_HTTP_CHAT_BUS_SLOT, 4);
    ngx_memcpy(&pid, header + NGX_HTTP_CHAT_BUS_PID, 4);
    ngx_memcpy(&seq, header + NGX_HTTP_CHAT_BUS_SEQ, 8);

    if (slot >= b->norigins) {
        return;
    }

    o = &b->origins[slot];

    if (tick) {
        seq++;                              /* as if the next event came */
    }

    if (o->pid == pid && seq > o->next) {
        missed = seq - o->next;
        b->missed += missed;

        groups = ngx_http_chat_groups_recheck();

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat broadcast: missed %uL events of worker slot %uD "
                      "(pid %uD): the bus dropped them while this worker's "
                      "queue was full or its pipe down (%uL missed so far); "
                      "%ui group(s) with subscribers here will read them "
                      "from the database (seen at a %s)",
                      missed, slot, pid, b->missed, groups,
                      tick ? "tick" : "later event");
    }

    o->pid = pid;
    o->next = tick ? seq : seq + 1;
}


/*
 * Every NGX_HTTP_CHAT_BUS_TICK: the number of the last message this worker
 * sent, to the others, so that one which lost the last ones knows (never
 * waits; nothing when nothing was sent yet).
 */

static void
ngx_http_chat_bus_tick(ngx_event_t *ev)
{
    u_char               *p;
    nng_msg              *msg;
    ngx_http_chat_bus_t  *b;

    b = ev->data;

    if (!b->bus_open || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_add_timer(ev, NGX_HTTP_CHAT_BUS_TICK);

    if (b->sent == 0 || nng_msg_alloc(&msg, NGX_HTTP_CHAT_BUS_TICK_LEN) != 0) {
        return;
    }

    p = nng_msg_body(msg);

    ngx_http_chat_bus_origin(p, NGX_HTTP_CHAT_BUS_TICK_MAGIC, b->sent);

    if (nng_sendmsg(b->bus, msg, NNG_FLAG_NONBLOCK) != 0) {
        nng_msg_free(msg);                  /* the next tick says it */
    }
}


/* a bus message's kind and origin: this worker's slot and pid, a number */

static void
ngx_http_chat_bus_origin(u_char *p, const char *magic, uint64_t seq)
{
    uint32_t  n;

    ngx_memcpy(p, magic, 4);
    n = (uint32_t) ngx_worker;
    ngx_memcpy(p + NGX_HTTP_CHAT_BUS_SLOT, &n, 4);
    n = (uint32_t) ngx_pid;
    ngx_memcpy(p + NGX_HTTP_CHAT_BUS_PID, &n, 4);
    ngx_memcpy(p + NGX_HTTP_CHAT_BUS_SEQ, &seq, 8);
}
