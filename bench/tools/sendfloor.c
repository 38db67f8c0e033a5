/*
 * sendfloor.c - the kernel's floor for a WebSocket fan-out on this machine
 * (issue 15 part 3), nginx-free.  127.0.0.1 only.
 *
 * A server that does nothing but what a fan-out server cannot avoid: W
 * worker processes (default 2, like nginx's 2 workers) each accept on their
 * own SO_REUSEPORT socket, so each owns about half of the connections.  It
 * speaks just enough of the chat module's protocol for bench/tools/wsbench.c
 * (the same client that measures the module and nchan) to drive it:
 *   GET  .../ws/GROUP...      -> "101" (no key check: wsbench sends the
 *                                RFC 6455 sample key), a subscriber of GROUP
 *   POST .../groups/GROUP/... -> "201", and the body's "BT:<seq>:<ns>" goes
 *                                to every subscriber of GROUP on every worker
 *                                (one datagram to each other worker)
 * A publish is one unmasked text frame of exactly -s bytes on the wire
 * (default 212: what the chat module's worker sendto()s per delivery in
 * wsbench's one-100, 210-212 bytes, measured with strace), the same bytes
 * for every subscriber, written by each worker to its own subscribers:
 *   default  one non-blocking send() per subscriber (as ngx_unix_send())
 *   -u       io_uring: IORING_OP_SEND with MSG_DONTWAIT, one
 *            io_uring_enter() per slice of -S subscribers (default 256)
 *   -u -F    the same with the sockets registered as fixed files
 * There is no send queue: a short or refused send is counted (and wsbench
 * sees the loss); on loopback at these rates there are none.  The CPU to
 * compare is wsbench's (-P the worker pids, schedstat of all threads); at
 * exit (SIGTERM to the master) each worker also prints its getrusage() per
 * send on stderr.
 *
 * usage: sendfloor -p PORT [-w WORKERS] [-s FRAME_BYTES] [-u [-F]] [-S SLICE]
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BENCH_TOOL "sendfloor"
#include "benchutil.h"

#define MAXFD    65536
#define MAXGRP   1024
#define MAXW     8
#define HBUF     4096

enum { C_FREE, C_LISTEN, C_INBOX, C_HTTP, C_SUB };

typedef struct { int type, group, gpos; size_t blen; char *buf; } conn_t;
typedef struct { char name[64]; int *fds, n, cap; } group_t;

static int      port, nworkers = 2, frame_bytes = 212, use_uring, fixed;
static int      slice = 256, me, ep, inbox[MAXW][2];
static conn_t   conns[MAXFD];
static group_t  groups[MAXGRP];
static int      ngroups;
static unsigned long long nsends, nshort, nfail, nframes, nenters;
static volatile sig_atomic_t stop;
static struct io_uring ring;

static void
ep_add(int fd, int type, uint32_t ev)
{
    struct epoll_event e = { .events = ev, .data.fd = fd };
    conns[fd].type = type;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0) bu_die("epoll_ctl");
}

static int
group_of(const char *name, size_t len)
{
    if (len >= sizeof(groups[0].name)) len = sizeof(groups[0].name) - 1;
    for (int i = 0; i < ngroups; i++)
        if (strlen(groups[i].name) == len && memcmp(groups[i].name, name, len) == 0) return i;
    if (ngroups == MAXGRP) return -1;
    memcpy(groups[ngroups].name, name, len);
    groups[ngroups].name[len] = '\0';
    return ngroups++;
}

static void
conn_close(int fd)
{
    conn_t *c = &conns[fd];
    if (c->type == C_SUB) {           /* swap-remove from its group */
        group_t *g = &groups[c->group];
        int last = g->fds[--g->n];
        g->fds[c->gpos] = last;
        conns[last].gpos = c->gpos;
    }
    if (fixed) { int m1 = -1; io_uring_register_files_update(&ring, fd, &m1, 1); }
    free(c->buf);
    memset(c, 0, sizeof(*c));
    close(fd);                        /* also leaves the epoll set */
}

/* the frame: header + {"type":"message","content":"BT:..","pad":"xx.."}, or
   for a small -s the bare "BT:.." padded with spaces */
static size_t
make_frame(unsigned char *f, const char *bt, size_t btlen)
{
    size_t h = frame_bytes - 2 <= 125 ? 2 : 4, plen = frame_bytes - h;
    int n = snprintf((char *) f + h, plen + 1, "{\"type\":\"message\",\"content\":\"%.*s\",\"pad\":\"",
                     (int) btlen, bt);
    if (n >= 0 && (size_t) n + 2 <= plen) {
        memset(f + h + n, 'x', plen - n - 2);
        memcpy(f + frame_bytes - 2, "\"}", 2);
    } else if (btlen <= plen) {           /* small -s: "BT:..." and spaces, like nchan's bare body */
        memcpy(f + h, bt, btlen);
        memset(f + h + btlen, ' ', plen - btlen);
    } else {
        return 0;
    }
    f[0] = 0x81;
    if (h == 2) { f[1] = (unsigned char) plen; }
    else { f[1] = 126; f[2] = plen >> 8; f[3] = plen & 0xff; }
    return frame_bytes;
}

static void
fanout_local(int gi, const char *bt, size_t btlen)
{
    static unsigned char f[65536];
    static int dead[MAXFD];
    int ndead = 0;
    size_t len = make_frame(f, bt, btlen);
    group_t *g = &groups[gi];
    if (len == 0) return;
    nframes++;
    for (int i = 0; i < g->n; i += slice) {
        int k = g->n - i < slice ? g->n - i : slice;
        if (!use_uring) {
            for (int j = 0; j < k; j++) {
                int fd = g->fds[i + j];
                ssize_t r = send(fd, f, len, MSG_NOSIGNAL);
                nsends++;
                if (r == (ssize_t) len) continue;
                if (r >= 0 || errno == EAGAIN) nshort++; else { nfail++; dead[ndead++] = fd; }
            }
            continue;
        }
        for (int j = 0; j < k; j++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            int fd = g->fds[i + j];
            io_uring_prep_send(sqe, fd, f, len, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (fixed) sqe->flags |= IOSQE_FIXED_FILE;   /* index = fd */
            sqe->user_data = fd;
        }
        /* MSG_DONTWAIT: each send completes (or fails) inline, so the wait
           for k completions returns from this same io_uring_enter() */
        if (io_uring_submit_and_wait(&ring, k) < 0) bu_die("io_uring_submit_and_wait");
        nenters++;
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            nsends++;
            seen++;
            if (cqe->res == (int) len) continue;
            if (cqe->res >= 0 || cqe->res == -EAGAIN) nshort++;
            else { nfail++; dead[ndead++] = (int) cqe->user_data; }
        }
        io_uring_cq_advance(&ring, seen);
    }
    for (int i = 0; i < ndead; i++) if (conns[dead[i]].type == C_SUB) conn_close(dead[i]);
}

/* a complete request in c->buf (headers of hl bytes, body after): returns
   the bytes consumed, 0 if incomplete, -1 to close */
static long
http_request(int fd, conn_t *c)
{
    char *e = memmem(c->buf, c->blen, "\r\n\r\n", 4), *p, *q;
    if (e == NULL) return c->blen >= HBUF - 1 ? -1 : 0;
    size_t hl = e + 4 - c->buf, bl = 0;
    char *cl = strcasestr(c->buf, "content-length:");
    if (cl && cl < e) bl = strtoul(cl + 15, NULL, 10);
    if (hl + bl >= HBUF) return -1;
    if (c->blen < hl + bl) return 0;
    if (memcmp(c->buf, "GET ", 4) == 0 && (p = memmem(c->buf, hl, "/ws/", 4)) != NULL) {
        static const char r101[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        p += 4;
        int gi = group_of(p, strcspn(p, "?/ \r"));
        if (gi < 0 || send(fd, r101, sizeof(r101) - 1, MSG_NOSIGNAL) != sizeof(r101) - 1) return -1;
        group_t *g = &groups[gi];
        if (g->n == g->cap) {
            g->cap = g->cap ? g->cap * 2 : 256;
            if ((g->fds = realloc(g->fds, g->cap * sizeof(int))) == NULL) bu_die("realloc");
        }
        c->type = C_SUB; c->group = gi; c->gpos = g->n; g->fds[g->n++] = fd;
        free(c->buf); c->buf = NULL;
        return 0;
    }
    if (memcmp(c->buf, "POST ", 5) != 0 || (p = memmem(c->buf, hl, "/groups/", 8)) == NULL) return -1;
    static const char r201[] = "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}";
    if (send(fd, r201, sizeof(r201) - 1, MSG_NOSIGNAL) != sizeof(r201) - 1) return -1;
    p += 8;
    size_t gl = strcspn(p, "/ ?\r");
    char *bt = memmem(c->buf + hl, bl, "BT:", 3);
    if (bt == NULL || gl >= 64) return hl + bl;
    q = bt + strcspn(bt, "\"}\r\n");
    if (q > c->buf + hl + bl) q = c->buf + hl + bl;
    char msg[160];
    int ml = snprintf(msg, sizeof(msg), "%.*s %.*s", (int) gl, p, (int) (q - bt), bt);
    for (int w = 0; w < nworkers; w++)      /* the other workers' share */
        if (w != me && send(inbox[w][1], msg, ml, MSG_DONTWAIT) < 0) nfail++;
    int gi = group_of(p, gl);
    if (gi >= 0) fanout_local(gi, bt, q - bt);
    return hl + bl;
}

static void
on_readable(int fd)
{
    conn_t *c = &conns[fd];
    char tmp[HBUF];
    if (c->type == C_LISTEN) {
        int s;
        while ((s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
            int one = 1;
            if (s >= MAXFD) { close(s); continue; }
            setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            if (fixed && io_uring_register_files_update(&ring, s, &s, 1) != 1) bu_die("register file");
            ep_add(s, C_HTTP, EPOLLIN | EPOLLRDHUP);
        }
        return;
    }
    if (c->type == C_INBOX) {
        ssize_t n;
        while ((n = recv(fd, tmp, sizeof(tmp) - 1, MSG_DONTWAIT)) > 0) {
            char *sp = memchr(tmp, ' ', n);
            if (sp == NULL) continue;
            int gi = group_of(tmp, sp - tmp);
            if (gi >= 0) fanout_local(gi, sp + 1, tmp + n - sp - 1);
        }
        return;
    }
    if (c->type == C_SUB) {           /* the client's frames: discarded */
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN)) conn_close(fd);
        return;
    }
    if (c->buf == NULL && (c->buf = malloc(HBUF)) == NULL) bu_die("malloc");
    ssize_t n = recv(fd, c->buf + c->blen, HBUF - 1 - c->blen, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN)) { conn_close(fd); return; }
    if (n < 0) return;
    c->blen += n;
    c->buf[c->blen] = '\0';
    long used = 0;
    while (c->type == C_HTTP && (used = http_request(fd, c)) > 0) {
        memmove(c->buf, c->buf + used, c->blen - used);
        c->blen -= used;
        c->buf[c->blen] = '\0';
    }
    if (used < 0) conn_close(fd);
}

static void on_term(int s) { (void) s; stop = 1; }

static void
worker(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *) &a, sizeof(a)) < 0 || listen(lfd, 4096) < 0) bu_die("listen");
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0) bu_die("epoll_create1");
    if (use_uring) {
        struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
        if (io_uring_queue_init_params(slice, &ring, &p) < 0) {
            memset(&p, 0, sizeof(p));                       /* older kernels */
            if (io_uring_queue_init_params(slice, &ring, &p) < 0) bu_die("io_uring_queue_init");
        }
        struct rlimit rl;                 /* a table entry per possible fd */
        getrlimit(RLIMIT_NOFILE, &rl);
        int r = fixed ? io_uring_register_files_sparse(&ring, rl.rlim_cur < MAXFD ? rl.rlim_cur : MAXFD) : 0;
        if (r < 0) { errno = -r; bu_die("io_uring_register_files_sparse"); }
        io_uring_register_ring_fd(&ring);
    }
    ep_add(lfd, C_LISTEN, EPOLLIN);
    ep_add(inbox[me][0], C_INBOX, EPOLLIN);
    struct epoll_event evs[512];
    while (!stop) {
        int n = epoll_wait(ep, evs, 512, 1000);
        for (int i = 0; i < n; i++) on_readable(evs[i].data.fd);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double us = ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec, sy = ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
    int subs = 0;
    for (int i = 0; i < ngroups; i++) subs += groups[i].n;
    fprintf(stderr, "{\"sendfloor_worker\":%d,\"mode\":\"%s\",\"frame_bytes\":%d,\"subscribers\":%d,"
            "\"frames\":%llu,\"sends\":%llu,\"short\":%llu,\"failed\":%llu,\"uring_enters\":%llu,"
            "\"user_us\":%.0f,\"sys_us\":%.0f,\"cpu_us_per_send_lifetime\":%.3f}\n", me,
            use_uring ? (fixed ? "uring-fixed" : "uring") : "send", frame_bytes, subs, nframes, nsends,
            nshort, nfail, nenters, us, sy, nsends ? (us + sy) / nsends : -1);
    exit(0);
}

int
main(int argc, char **argv)
{
    int opt;
    pid_t pids[MAXW];
    while ((opt = getopt(argc, argv, "p:w:s:uFS:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'w': nworkers = atoi(optarg); break;
        case 's': frame_bytes = atoi(optarg); break;
        case 'u': use_uring = 1; break;
        case 'F': fixed = 1; break;
        case 'S': slice = atoi(optarg); break;
        default: goto usage;
        }
    }
    if (port <= 0 || nworkers < 1 || nworkers > MAXW || frame_bytes < 32 || frame_bytes > 65535
        || slice < 1 || slice > 4096 || (fixed && !use_uring))
    {
usage:
        fprintf(stderr, "usage: sendfloor -p PORT [-w WORKERS] [-s FRAME_BYTES] [-u [-F]] [-S SLICE]\n");
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max < MAXFD ? rl.rlim_max : MAXFD;
    setrlimit(RLIMIT_NOFILE, &rl);
    for (int w = 0; w < nworkers; w++)
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, inbox[w]) < 0) bu_die("socketpair");
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (me = 0; me < nworkers; me++) {
        if ((pids[me] = fork()) < 0) bu_die("fork");
        if (pids[me] == 0) worker();
    }
    while (!stop) pause();
    for (int w = 0; w < nworkers; w++) kill(pids[w], SIGTERM);
    for (int w = 0; w < nworkers; w++) waitpid(pids[w], NULL, 0);
    return 0;
}
