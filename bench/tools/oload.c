/*
 * oload.c - an open-loop HTTP/1.1 keep-alive load for `make bench`.
 *
 *   oload -p PORT -r RATE -d SEC [-c CONNS] [-w DRAIN_SEC]
 *         (-u PATH [-u PATH ...] | -m get|post -g GROUPS_FILE) [-H "Name: v"]
 *
 * RATE requests per second in total, for SEC seconds, over CONNS (default
 * 32) keep-alive connections to 127.0.0.1:PORT, one request in flight per
 * connection.  Request i is due at start + i / RATE, whatever happened to
 * the ones before it (open loop: wrk's closed loop sends the next request
 * only when an answer came back, so a slow server is offered less load and
 * the waits it causes are never measured).  Its latency runs from that
 * scheduled time to the end of its response: a request that had to wait
 * (the generator descheduled, or all CONNS connections busy) carries the
 * wait in its latency (no coordinated omission).  A due request finding no
 * idle connection waits for the first one to free up, in order, and is
 * counted as "late".
 *
 * Requests: GET of the -u paths in turn; or, as bench/lua/chatapi.lua does
 * for wrk, -m get: GET /api/chat/groups/G/messages?limit=50, -m post: POST
 * /api/chat/groups/G/messages with {"content":"bench message I"}, for the
 * groups G of GROUPS_FILE (one id a line) in turn, with
 * "Content-Type: application/json"; the bearer token is passed as a -H
 * header ("Authorization: Bearer ...").  Responses are read as hreq.c
 * reads them (Content-Length, or chunked up to the last chunk).
 *
 * After SEC seconds no request is scheduled; the ones due and not answered
 * get DRAIN_SEC (default 2) more, then count as "unfinished", with the time
 * they had waited by then as their latency (a lower bound, kept in the
 * percentiles so that a stall is not hidden by dropping its requests).
 *
 * Prints one JSON line: offered rate, scheduled, count (answered),
 * achieved rate (answered / the longer of SEC and the time from the first
 * scheduled send to the last answer: a load that fell behind its schedule
 * and caught up in the drain shows it), errors (I/O), non-2xx, late, unfinished,
 * latency percentiles in ms, the send lag (send time - scheduled time: the
 * generator's own delays plus the waits for a connection) and, for
 * comparison with a closed-loop client, the answered requests' latency from
 * their actual send ("sent_").  Bounded: RATE * SEC requests at most, CONNS connections.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TOOL "oload"
#include "benchutil.h"

#define MAX_CONNS  1024
#define REQ_MAX    4096

typedef struct {
    int        fd;
    int        busy;
    int        wantout;             /* EPOLLOUT registered */
    long       idx;                 /* the request in flight */
    uint64_t   sent;                /* when its first byte was written */
    char       req[REQ_MAX];
    size_t     req_len, req_off;
    char      *buf;
    size_t     cap, have;
} conn_t;

static int          port = 80;
static const char  *paths[64];
static int          npaths;
static const char  *hdrs[8];
static int          nhdrs;
static const char  *mode;           /* NULL: paths; "get" / "post": chat */
static char       **groups;
static long         ngroups;
static int          epfd;
static conn_t      *conns;
static int          nconns = 32;

static double       rate;
static uint64_t     start;

static uint32_t    *lat, *lag, *svc;
static size_t       nlat, nlag, nsvc, lcap;
static long         count, errors, non2xx, late, unfinished;

static uint64_t
due_ns(long i)
{
    return start + (uint64_t) ((double) i * 1e9 / rate);
}

static void
record(uint32_t *a, size_t *n, uint64_t ns)
{
    if (*n < lcap) {
        a[(*n)++] = (uint32_t) (ns / 1000 > UINT32_MAX ? UINT32_MAX : ns / 1000);
    }
}

static int
conn_open(conn_t *c)
{
    struct sockaddr_in   a;
    struct epoll_event   ev;
    int                  one = 1;

    if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) {
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    /* a blocking connect on loopback: done at once or refused */
    if (connect(c->fd, (struct sockaddr *) &a, sizeof(a)) < 0) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->have = 0;
    c->wantout = 0;
    return 0;
}

static void
build(conn_t *c, long i)
{
    int  n, k;

    if (mode == NULL) {
        n = snprintf(c->req, REQ_MAX, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n",
                     paths[i % npaths], port);
    } else if (strcmp(mode, "post") == 0) {
        char  body[128];
        int   bl = snprintf(body, sizeof(body), "{\"content\":\"bench message %ld\"}", i);

        n = snprintf(c->req, REQ_MAX,
                     "POST /api/chat/groups/%s/messages HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n",
                     groups[i % ngroups], port, bl);
        for (k = 0; k < nhdrs; k++) {
            n += snprintf(c->req + n, REQ_MAX - n, "%s\r\n", hdrs[k]);
        }
        n += snprintf(c->req + n, REQ_MAX - n, "\r\n%s", body);
        goto done;
    } else {
        n = snprintf(c->req, REQ_MAX,
                     "GET /api/chat/groups/%s/messages?limit=50 HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\nContent-Type: application/json\r\n",
                     groups[i % ngroups], port);
    }
    for (k = 0; k < nhdrs; k++) {
        n += snprintf(c->req + n, REQ_MAX - n, "%s\r\n", hdrs[k]);
    }
    n += snprintf(c->req + n, REQ_MAX - n, "\r\n");
done:
    if (n >= REQ_MAX) {
        /* snprintf stops at the buffer; the headers did not fit */
        fprintf(stderr, "oload: a request over %d bytes\n", REQ_MAX);
        exit(2);
    }
    c->req_len = n;
}

/* write what is left of the request; 0 sent or waiting, -1 I/O error */
static int
flush_req(conn_t *c)
{
    struct epoll_event  ev;

    while (c->req_off < c->req_len) {
        ssize_t w = write(c->fd, c->req + c->req_off, c->req_len - c->req_off);
        if (w < 0 && errno == EAGAIN) {
            if (!c->wantout) {
                ev.events = EPOLLIN | EPOLLOUT;
                ev.data.ptr = c;
                epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                c->wantout = 1;
            }
            return 0;
        }
        if (w <= 0) {
            return -1;
        }
        c->req_off += w;
    }
    if (c->wantout) {
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->wantout = 0;
    }
    return 0;
}

static void
fail(conn_t *c)
{
    errors++;
    c->busy = 0;
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
}

static void
send_req(conn_t *c, long i, int was_late)
{
    uint64_t  t = bu_now_ns();

    record(lag, &nlag, t > due_ns(i) ? t - due_ns(i) : 0);
    late += was_late;
    c->busy = 1;
    c->idx = i;
    c->sent = t;
    c->have = 0;
    c->req_off = 0;
    build(c, i);
    if ((c->fd < 0 && conn_open(c) < 0) || flush_req(c) < 0) {
        fail(c);
    }
}

/* the response so far: 1 complete (status in *st), 0 not yet (as hreq.c) */
static int
complete(conn_t *c, int *st, int *close_it)
{
    char    *e, *cl, *ch;
    size_t   hl, bl;

    e = memmem(c->buf, c->have, "\r\n\r\n", 4);
    if (e == NULL) {
        return 0;
    }
    hl = e + 4 - c->buf;
    *e = '\0';                      /* header searches stop here */
    cl = strcasestr(c->buf, "\r\ncontent-length:");
    ch = strcasestr(c->buf, "chunked");
    *close_it = strcasestr(c->buf, "\r\nconnection: close") != NULL;
    *e = '\r';
    if (cl) {
        bl = strtoul(cl + 17, NULL, 10);
        if (c->have < hl + bl) {
            return 0;
        }
    } else if (ch) {
        if (c->have < 5 || memcmp(c->buf + c->have - 5, "0\r\n\r\n", 5) != 0) {
            return 0;
        }
    }
    *st = atoi(c->buf + 9);
    return 1;
}

/* readable: 1 if the connection is free again */
static int
on_read(conn_t *c)
{
    int  st, close_it;

    for (;;) {
        if (c->cap - c->have < 65536) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t r = read(c->fd, c->buf + c->have, c->cap - c->have);
        if (r < 0 && errno == EAGAIN) {
            return 0;
        }
        if (r <= 0 || !c->busy) {
            /* closed, or bytes nobody asked for */
            if (c->busy) {
                fail(c);
                return 1;
            }
            epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
            return 0;
        }
        c->have += r;
        if (!complete(c, &st, &close_it)) {
            continue;
        }
        uint64_t t = bu_now_ns();
        record(lat, &nlat, t - due_ns(c->idx));
        record(svc, &nsvc, t - c->sent);
        count++;
        if (st < 200 || st > 299) {
            non2xx++;
        }
        c->busy = 0;
        c->have = 0;
        if (close_it) {
            epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            c->fd = -1;
        }
        return 1;
    }
}

static conn_t *
idle_conn(void)
{
    for (int k = 0; k < nconns; k++) {
        if (!conns[k].busy) {
            return &conns[k];
        }
    }
    return NULL;
}

static void
load_groups(const char *file)
{
    FILE   *f = fopen(file, "r");
    char    line[256];
    long    cap = 1024;

    if (f == NULL) {
        perror(file);
        exit(2);
    }
    groups = malloc(cap * sizeof(char *));
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0') {
            continue;
        }
        if (ngroups == cap) {
            cap *= 2;
            groups = realloc(groups, cap * sizeof(char *));
        }
        groups[ngroups++] = strdup(line);
    }
    fclose(f);
}

int
main(int argc, char **argv)
{
    double               secs = 0, drain = 2;
    const char          *gfile = NULL;
    int                  opt;
    long                 next = 0, total;
    uint64_t             starved = 0;
    struct epoll_event   evs[256];

    while ((opt = getopt(argc, argv, "p:r:d:c:w:u:m:g:H:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': secs = atof(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 'w': drain = atof(optarg); break;
        case 'u': if (npaths < 64) paths[npaths++] = optarg; break;
        case 'm': mode = optarg; break;
        case 'g': gfile = optarg; break;
        case 'H': if (nhdrs < 8) hdrs[nhdrs++] = optarg; break;
        default:
            goto usage;
        }
    }
    if (rate <= 0 || secs <= 0 || nconns < 1 || nconns > MAX_CONNS
        || (mode == NULL && npaths == 0)
        || (mode != NULL && (gfile == NULL
                             || (strcmp(mode, "get") != 0 && strcmp(mode, "post") != 0))))
    {
usage:
        fprintf(stderr, "usage: oload -p PORT -r RATE -d SEC [-c CONNS] [-w DRAIN_SEC]"
                        " (-u PATH ... | -m get|post -g GROUPS_FILE) [-H HEADER]\n");
        return 2;
    }
    if (mode != NULL) {
        load_groups(gfile);
        if (ngroups == 0) {
            fprintf(stderr, "oload: no groups in %s\n", gfile);
            return 2;
        }
    }

    /* every request fits in REQ_MAX: the longest path or group id, the
     * headers, and at most 256 bytes of request line, fixed headers, body */
    size_t longest = 0, need = 256;
    for (int k = 0; k < npaths; k++) {
        longest = strlen(paths[k]) > longest ? strlen(paths[k]) : longest;
    }
    for (long k = 0; k < ngroups; k++) {
        longest = strlen(groups[k]) > longest ? strlen(groups[k]) : longest;
    }
    for (int k = 0; k < nhdrs; k++) {
        need += strlen(hdrs[k]) + 2;
    }
    if (need + longest >= REQ_MAX) {
        fprintf(stderr, "oload: requests would exceed %d bytes\n", REQ_MAX);
        return 2;
    }

    total = (long) (rate * secs);
    lcap = (size_t) total + 16;
    lat = malloc(lcap * sizeof(uint32_t));
    lag = malloc(lcap * sizeof(uint32_t));
    svc = malloc(lcap * sizeof(uint32_t));
    epfd = epoll_create1(0);
    conns = calloc(nconns, sizeof(conn_t));
    for (int k = 0; k < nconns; k++) {
        conns[k].fd = -1;
        conns[k].cap = 1 << 16;
        conns[k].buf = malloc(conns[k].cap);
        if (conn_open(&conns[k]) < 0) {
            fprintf(stderr, "oload: cannot connect to 127.0.0.1:%d\n", port);
            return 1;
        }
    }
    start = bu_now_ns() + 1000000;     /* the first request 1 ms from now */
    uint64_t end = start + (uint64_t) (secs * 1e9);
    uint64_t stop = end + (uint64_t) (drain * 1e9);

    for (;;) {
        uint64_t t = bu_now_ns();
        int inflight = 0;

        /* every request due by now, on an idle connection if there is one */
        starved = 0;
        while (next < total && due_ns(next) <= t) {
            conn_t *c = idle_conn();
            if (c == NULL) {
                starved = t;        /* the rest wait for a connection */
                break;
            }
            send_req(c, next++, 0);
        }
        for (int k = 0; k < nconns; k++) {
            inflight += conns[k].busy;
        }
        if ((next >= total && inflight == 0) || t >= stop) {
            break;
        }

        /* wake at the next due time (ns resolution) unless requests are
         * already waiting for a connection, or at the end of the drain */
        uint64_t wake = stop;
        if (next < total && due_ns(next) > t) {
            wake = due_ns(next);
        }
        struct timespec tmo = { (wake - t) / 1000000000ull, (wake - t) % 1000000000ull };
        int n = epoll_pwait2(epfd, evs, 256, &tmo, NULL);

        for (int k = 0; k < n; k++) {
            conn_t *c = evs[k].data.ptr;
            if (c->fd < 0) {
                continue;
            }
            if ((evs[k].events & EPOLLOUT) && c->busy && flush_req(c) < 0) {
                fail(c);
                continue;
            }
            if (!(evs[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                continue;
            }
            /* free again: the oldest waiting request, if due, takes it
             * (late if it was due when no connection was idle) */
            if (on_read(c) && next < total && due_ns(next) <= bu_now_ns()) {
                send_req(c, next, starved && due_ns(next) <= starved);
                next++;
            }
        }
    }

    /* what is still in flight or never sent: unfinished, waited until now */
    uint64_t t = bu_now_ns();
    for (int k = 0; k < nconns; k++) {
        if (conns[k].busy) {
            unfinished++;
            record(lat, &nlat, t - due_ns(conns[k].idx));
        }
    }
    for (long i = next; i < total && due_ns(i) <= end; i++) {
        unfinished++;
        record(lat, &nlat, t > due_ns(i) ? t - due_ns(i) : 0);
    }

    double wall = (t - start) / 1e9;
    qsort(lat, nlat, sizeof(uint32_t), bu_cmp_u32);
    qsort(lag, nlag, sizeof(uint32_t), bu_cmp_u32);
    qsort(svc, nsvc, sizeof(uint32_t), bu_cmp_u32);
    printf("{\"rate\":%.1f,\"conns\":%d,\"seconds\":%.3f,\"scheduled\":%ld,\"count\":%ld,"
           "\"achieved_rps\":%.1f,\"errors\":%ld,\"non2xx\":%ld,\"late\":%ld,\"unfinished\":%ld,"
           "\"wall_s\":%.3f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
           "\"max_ms\":%.3f,\"lag_p50_ms\":%.3f,\"lag_p99_ms\":%.3f,"
           "\"sent_p50_ms\":%.3f,\"sent_p99_ms\":%.3f}\n",
           rate, nconns, secs, total, count, count / (wall > secs ? wall : secs), errors, non2xx, late,
           unfinished,
           wall, bu_pct_ms(lat, nlat, 50), bu_pct_ms(lat, nlat, 90), bu_pct_ms(lat, nlat, 99),
           bu_pct_ms(lat, nlat, 99.9), nlat ? lat[nlat - 1] / 1000.0 : -1,
           bu_pct_ms(lag, nlag, 50), bu_pct_ms(lag, nlag, 99), bu_pct_ms(svc, nsvc, 50), bu_pct_ms(svc, nsvc, 99));
    return 0;
}
