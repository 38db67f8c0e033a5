/*
 * wsbench.c - WebSocket fan-out load client for `make bench` (loopback only).
 *
 * Opens N WebSocket subscribers spread round-robin over G groups (the chat
 * module's /api/chat/ws/{group_id}?token=..., or nchan's /sub/{channel}),
 * then publishes messages over HTTP POST at one or more fixed rates
 * (/api/chat/groups/{group_id}/messages, or nchan's /pub/{channel}), each
 * carrying "BT:<seq>:<monotonic ns>", and measures on every subscriber:
 * delivered/expected, delivery latency (POST written -> frame read), the
 * POST response time, and the nginx workers' CPU (all threads, schedstat)
 * and RSS given with -P.  One epoll loop, one thread, no dependencies.
 *
 * The ordering hold: the module delivers a group's events in seq order, so
 * an event may wait for a lower seq still being stored.  Per step, each
 * message's "ready" time is when the POST responses of it and of every
 * message of its group with a lower seq (the seq of the POST response's
 * message; without one, the order in which the subscribers first got the
 * messages) had arrived: ready_* is that time minus the POST's write,
 * hold_* minus the message's own response (0 when nothing lower came
 * later), fanout_* each delivery's time minus it (0 when it came before:
 * fanout_before_ready counts those); late_after_post counts the messages
 * first delivered more than 1 ms after their own POST response,
 * held_behind_lower those of them whose ready time was also more than 1 ms
 * after it (a lower seq's response came later).  Measured at the client:
 * a response read late by the loop moves ready later.
 *
 * -q PORT2: a second host (make bench BENCH=cluster).  The subscribers of
 * each group are split over the two ports, the publisher connections too;
 * each delivery is counted and timed as same-host (published on the
 * subscriber's host) or cross-host.
 *
 * Output: one JSON object per line on stdout (phase "connect", then one
 * per rate step).  Exit status 0 unless setup failed.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TOOL "wsbench"
#include "benchutil.h"

#define MAX_GROUPS   1000
#define RBUF         65536

enum { M_CHAT, M_NCHAN };
enum { S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSED };

typedef struct {
    int        fd;
    int        kind;         /* 0 subscriber, 1 publisher */
    int        state;
    int        group;
    int        hostix;       /* 0: -p PORT, 1: -q PORT2 */
    uint8_t   *part;         /* unparsed bytes kept between reads */
    size_t     part_len;
    /* publisher */
    int        busy;
    uint32_t   seq;          /* the message in flight */
    uint64_t   sent_ns;
    size_t     resp_len;
    char      *resp;
    size_t     resp_cap;
    int        wpend;        /* request bytes not yet written */
    char      *wbuf;
    size_t     wlen, wpos;
} conn_t;

static int        mode = M_CHAT;
static const char *host = "127.0.0.1";
static int        port = 8001;
static int        port2;         /* -q: a second host; 0: none */
static char      *groups[MAX_GROUPS];
static int        ngroups;
static int        nsubs;
static const char *token = "";
static double     rates[32];
static int        nrates;
static double     step_sec = 5;
static int        npub = 8;
static int        pids[64];
static int        npids;
static double     idle_sec = 0;
static double     grace_sec = 2;
static int        max_handshakes = 200;
static int        stop_on_loss = 1;

static int        ep;
static conn_t    *subs;
static conn_t    *pubs;
static int        subs_open, subs_failed, subs_closed_by_server;
static int        group_subs[MAX_GROUPS];   /* open subscribers per group */
static int        group_subs_h[MAX_GROUPS][2];  /* ... per host */

/* per message: expected and received counts */
static uint32_t  *msg_expected, *msg_received;
/* -q: per message, its publisher's host and its cross-host counts */
static uint8_t   *msg_host;
static uint32_t  *msg_expected_x, *msg_received_x;
/* per message, for the ordering hold: its POST's write and OK response
   (0: none), the seq in that response (0: none), its group, the first
   delivery to any subscriber (0: none) */
static uint64_t  *msg_sent_ns, *msg_resp_ns, *msg_gseq, *msg_first_ns;
static uint16_t  *msg_group;
static uint32_t   msg_cap;
static uint32_t   next_seq;

/* per step */
static uint32_t  *lat_us;
static size_t     lat_n, lat_cap;
static uint32_t  *lat_same_us, *lat_cross_us;     /* -q */
static size_t     lat_same_n, lat_same_cap, lat_cross_n, lat_cross_cap;
static uint32_t  *post_us;
static size_t     post_n, post_cap;
static uint32_t  *dlv_seq, *dlv_us;     /* every delivery: message, latency */
static size_t     dlv_seq_n, dlv_seq_cap, dlv_us_n, dlv_us_cap;
static uint64_t   post_ok, post_err, dup_count;
static uint64_t   pings_answered;

static long
rss_kb(int pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

static void
print_rss(const char *key)
{
    long total = 0;
    printf("\"%s\":[", key);
    for (int i = 0; i < npids; i++) {
        long kb = rss_kb(pids[i]);
        total += kb;
        printf("%s%ld", i ? "," : "", kb);
    }
    printf("],\"%s_total\":%ld", key, total);
}

static int
tcp_connect(int hostix)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) bu_die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(hostix ? port2 : port);
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0
        && errno != EINPROGRESS)
    {
        bu_die("connect");
    }
    return fd;
}

static void
ep_add(conn_t *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) bu_die("epoll_ctl add");
}

static void
ep_mod(conn_t *c, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = c };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) bu_die("epoll_ctl mod");
}

static void
sub_close(conn_t *c, int by_server)
{
    if (c->state == S_CLOSED) return;
    if (c->state == S_OPEN) {
        subs_open--;
        group_subs[c->group]--;
        group_subs_h[c->group][c->hostix]--;
        if (by_server) subs_closed_by_server++;
    } else {
        subs_failed++;
    }
    c->state = S_CLOSED;
    close(c->fd);
    c->fd = -1;
    free(c->part);
    c->part = NULL;
    c->part_len = 0;
}

static void
sub_start(conn_t *c, int group)
{
    c->fd = tcp_connect(c->hostix);
    c->kind = 0;
    c->group = group;
    c->state = S_CONNECTING;
    ep_add(c, EPOLLOUT | EPOLLIN);
}

static void
sub_send_handshake(conn_t *c)
{
    char req[1024];
    int n;
    if (mode == M_CHAT) {
        n = bu_ws_chat_upgrade(req, sizeof(req), groups[c->group], token,
                               host, port);
    } else {
        n = snprintf(req, sizeof(req),
                     "GET /sub/%s HTTP/1.1\r\n"
                     "Host: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     groups[c->group], host, port);
    }
    if (write(c->fd, req, n) != n) {
        sub_close(c, 0);
        return;
    }
    c->state = S_HANDSHAKE;
    ep_mod(c, EPOLLIN);
}

static void
on_payload(void *ctx, const uint8_t *p, size_t len, uint64_t t)
{
    conn_t *c = ctx;
    long long stamp;
    unsigned long long sent;
    if (!bu_ws_stamp(p, len, "BT:", &stamp, &sent)) return;
    /* (strtoul's wrapped negative values failed this test as well) */
    if (stamp < 0 || (unsigned long long) stamp >= msg_cap) return;
    unsigned long seq = (unsigned long) stamp;
    if (msg_received[seq]++ >= msg_expected[seq]) dup_count++;
    uint64_t d = t > sent ? t - sent : 0;
    bu_push_u32(&lat_us, &lat_n, &lat_cap, (uint32_t) (d / 1000));
    bu_push_u32(&dlv_seq, &dlv_seq_n, &dlv_seq_cap, (uint32_t) seq);
    bu_push_u32(&dlv_us, &dlv_us_n, &dlv_us_cap, (uint32_t) (d / 1000));
    if (msg_first_ns[seq] == 0 || t < msg_first_ns[seq]) msg_first_ns[seq] = t;
    if (port2 == 0) return;
    if (msg_host[seq] != c->hostix) {
        msg_received_x[seq]++;
        bu_push_u32(&lat_cross_us, &lat_cross_n, &lat_cross_cap, (uint32_t) (d / 1000));
    } else {
        bu_push_u32(&lat_same_us, &lat_same_n, &lat_same_cap, (uint32_t) (d / 1000));
    }
}

static void
sub_read(conn_t *c)
{
    static uint8_t buf[RBUF + 65536];
    for (;;) {
        size_t have = c->part_len;
        if (have) memcpy(buf, c->part, have);
        ssize_t n = read(c->fd, buf + have, RBUF);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) { sub_close(c, 1); return; }
        uint64_t t = bu_now_ns();
        size_t len = have + n, used = 0;

        if (c->state == S_HANDSHAKE) {
            int hs = bu_ws_handshake(buf, len, &used);
            if (hs == 0) {
                if (len > 4096) { sub_close(c, 0); return; }
                goto keep;
            }
            if (hs < 0) {
                sub_close(c, 0);
                return;
            }
            c->state = S_OPEN;
            subs_open++;
            group_subs[c->group]++;
            group_subs_h[c->group][c->hostix]++;
        }
        int closed = 0;
        used += bu_ws_parse_frames(c->fd, buf + used, len - used, t,
                                   on_payload, c, &pings_answered, &closed);
        if (closed) sub_close(c, 1);
        if (c->state == S_CLOSED) return;
    keep:
        bu_keep_part(&c->part, &c->part_len, buf, len, used);
        if ((size_t) n < RBUF) return;
    }
}

/* --- publisher ------------------------------------------------------------ */

static void
pub_open(conn_t *c)
{
    c->fd = tcp_connect(c->hostix);
    c->kind = 1;
    c->state = S_OPEN;
    c->busy = 0;
    c->resp_len = 0;
    ep_add(c, EPOLLIN);
}

static void
pub_flush(conn_t *c)
{
    while (c->wpos < c->wlen) {
        ssize_t n = write(c->fd, c->wbuf + c->wpos, c->wlen - c->wpos);
        if (n < 0 && errno == EAGAIN) {
            ep_mod(c, EPOLLIN | EPOLLOUT);
            return;
        }
        if (n <= 0) return;        /* the read side reports the error */
        c->wpos += n;
    }
    ep_mod(c, EPOLLIN);
}

static void
pub_send(conn_t *c, uint32_t seq, int group)
{
    char body[128], hdr[1024];
    uint64_t t = bu_now_ns();
    int bl, hl;
    if (mode == M_CHAT) {
        bl = snprintf(body, sizeof(body), "{\"content\":\"BT:%u:%llu\"}", seq,
                      (unsigned long long) t);
        hl = snprintf(hdr, sizeof(hdr),
                      "POST /api/chat/groups/%s/messages HTTP/1.1\r\n"
                      "Host: %s:%d\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: %d\r\n\r\n",
                      groups[group], host, port, token, bl);
    } else {
        bl = snprintf(body, sizeof(body), "BT:%u:%llu", seq,
                      (unsigned long long) t);
        hl = snprintf(hdr, sizeof(hdr),
                      "POST /pub/%s HTTP/1.1\r\n"
                      "Host: %s:%d\r\nContent-Type: text/plain\r\n"
                      "Accept: text/plain\r\n"
                      "Content-Length: %d\r\n\r\n", groups[group], host, port,
                      bl);
    }
    free(c->wbuf);
    c->wbuf = malloc(hl + bl);
    memcpy(c->wbuf, hdr, hl);
    memcpy(c->wbuf + hl, body, bl);
    c->wlen = hl + bl;
    c->wpos = 0;
    c->busy = 1;
    c->seq = seq;
    c->sent_ns = t;
    c->resp_len = 0;
    msg_expected[seq] = group_subs[group];
    msg_sent_ns[seq] = t;
    msg_group[seq] = (uint16_t) group;
    if (port2) {
        msg_host[seq] = (uint8_t) c->hostix;
        msg_expected_x[seq] = group_subs_h[group][!c->hostix];
    }
    pub_flush(c);
}

/* returns 1 when a complete response was consumed */
static int
pub_response_done(conn_t *c)
{
    char *e = memmem(c->resp, c->resp_len, "\r\n\r\n", 4);
    if (e == NULL) return 0;
    size_t hlen = e + 4 - c->resp;
    char *cl = memmem(c->resp, hlen, "Content-Length:", 15);
    if (cl == NULL) cl = memmem(c->resp, hlen, "content-length:", 15);
    if (cl) {
        size_t blen = strtoul(cl + 15, NULL, 10);
        return c->resp_len >= hlen + blen;
    }
    if (memmem(c->resp, hlen, "chunked", 7)) {
        return c->resp_len >= 5
               && memcmp(c->resp + c->resp_len - 5, "0\r\n\r\n", 5) == 0;
    }
    return 1;
}

static void pub_complete(conn_t *c);

/* the last "seq":N in a response (the chat module's message has one); 0 if
   none */
static uint64_t
resp_seq(const char *r, size_t len)
{
    const char *p = r, *e = r + len, *last = NULL;
    while ((p = memmem(p, e - p, "\"seq\":", 6)) != NULL) {
        last = p + 6;
        p = last;
    }
    if (last == NULL) return 0;
    uint64_t v = 0;
    while (last < e && *last >= '0' && *last <= '9') v = v * 10 + (*last++ - '0');
    return v;
}

static void
pub_read(conn_t *c)
{
    for (;;) {
        if (c->resp_cap - c->resp_len < 4096) {
            c->resp_cap = c->resp_cap ? c->resp_cap * 2 : 8192;
            c->resp = realloc(c->resp, c->resp_cap);
        }
        ssize_t n = read(c->fd, c->resp + c->resp_len,
                         c->resp_cap - c->resp_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (n <= 0) {
            /* a response may be complete right before the close
               (keepalive_requests reached): count it first */
            if (c->busy && pub_response_done(c)) pub_complete(c);
            if (c->busy) post_err++;
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            close(c->fd);
            pub_open(c);
            return;
        }
        c->resp_len += n;
    }
    if (c->busy && pub_response_done(c)) pub_complete(c);
}

static void
pub_complete(conn_t *c)
{
    {
        int status = c->resp_len > 12 ? atoi(c->resp + 9) : 0;
        uint64_t now = bu_now_ns(), d = now - c->sent_ns;
        if (status >= 200 && status < 300) {
            post_ok++;
            bu_push_u32(&post_us, &post_n, &post_cap, (uint32_t) (d / 1000));
            msg_resp_ns[c->seq] = now;
            msg_gseq[c->seq] = resp_seq(c->resp, c->resp_len);
        } else {
            post_err++;
            if (post_err < 5)
                fprintf(stderr, "wsbench: POST answered %.*s\n",
                        (int) (c->resp_len < 300 ? c->resp_len : 300),
                        c->resp);
        }
        c->busy = 0;
        c->resp_len = 0;
    }
}

/* --- the ordering hold ----------------------------------------------------- */

static const uint64_t *hold_key;    /* the order within a group */

static int
cmp_hold(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    if (msg_group[x] != msg_group[y]) return msg_group[x] < msg_group[y] ? -1 : 1;
    if (hold_key[x] != hold_key[y]) return hold_key[x] < hold_key[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

/*
 * The split of the step's delivery latency (messages first .. first+count-1)
 * into the wait until the message was deliverable in its group's order and
 * the fan-out after it, printed as fields after the step's others (none when
 * no message had an OK response).
 */
static void
print_hold(uint32_t first, uint32_t count, uint64_t *ready_ns)
{
    uint32_t *ix = malloc((count ? count : 1) * sizeof(uint32_t));
    uint32_t *ready_us = NULL, *hold_us = NULL, *fan_us = NULL;
    size_t n = 0, ready_n = 0, ready_cap = 0, hold_n = 0, hold_cap = 0;
    size_t fan_n = 0, fan_cap = 0;
    uint64_t held = 0, late = 0, before = 0;
    int by_seq = 1;

    for (uint32_t q = first; q < first + count; q++) {
        ready_ns[q] = 0;
        if (msg_resp_ns[q] && msg_gseq[q] == 0) by_seq = 0;
    }
    hold_key = by_seq ? msg_gseq : msg_first_ns;
    for (uint32_t q = first; q < first + count; q++) {
        if (msg_resp_ns[q] && hold_key[q]) ix[n++] = q;
    }
    if (n == 0) { free(ix); return; }
    qsort(ix, n, sizeof(uint32_t), cmp_hold);

    /* ready: the latest response of the message and of those before it */
    uint64_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t q = ix[i];
        if (i == 0 || msg_group[q] != msg_group[ix[i - 1]]) run = 0;
        if (msg_resp_ns[q] > run) run = msg_resp_ns[q];
        ready_ns[q] = run;
        bu_push_u32(&ready_us, &ready_n, &ready_cap,
                    (uint32_t) ((run - msg_sent_ns[q]) / 1000));
        bu_push_u32(&hold_us, &hold_n, &hold_cap,
                    (uint32_t) ((run - msg_resp_ns[q]) / 1000));
        if (msg_first_ns[q] > msg_resp_ns[q] + 1000000) {
            late++;
            if (run > msg_resp_ns[q] + 1000000) held++;
        }
    }
    for (size_t i = 0; i < dlv_seq_n; i++) {
        uint32_t q = dlv_seq[i];
        if (q < first || q >= first + count || ready_ns[q] == 0) continue;
        uint64_t t = msg_sent_ns[q] + (uint64_t) dlv_us[i] * 1000;
        if (t < ready_ns[q]) before++;
        bu_push_u32(&fan_us, &fan_n, &fan_cap,
                    t > ready_ns[q] ? (uint32_t) ((t - ready_ns[q]) / 1000) : 0);
    }
    qsort(ready_us, ready_n, sizeof(uint32_t), bu_cmp_u32);
    qsort(hold_us, hold_n, sizeof(uint32_t), bu_cmp_u32);
    qsort(fan_us, fan_n, sizeof(uint32_t), bu_cmp_u32);

    printf(",\"hold_order\":\"%s\",\"hold_messages\":%zu,"
           "\"ready_p50_ms\":%.3f,\"ready_p90_ms\":%.3f,\"ready_p99_ms\":%.3f,"
           "\"hold_p50_ms\":%.3f,\"hold_p90_ms\":%.3f,\"hold_p99_ms\":%.3f,"
           "\"fanout_p50_ms\":%.3f,\"fanout_p90_ms\":%.3f,\"fanout_p99_ms\":%.3f,"
           "\"fanout_before_ready\":%llu,\"late_after_post\":%llu,"
           "\"held_behind_lower\":%llu",
           by_seq ? "seq" : "delivery", n,
           bu_pct_ms(ready_us, ready_n, 50), bu_pct_ms(ready_us, ready_n, 90),
           bu_pct_ms(ready_us, ready_n, 99),
           bu_pct_ms(hold_us, hold_n, 50), bu_pct_ms(hold_us, hold_n, 90),
           bu_pct_ms(hold_us, hold_n, 99),
           bu_pct_ms(fan_us, fan_n, 50), bu_pct_ms(fan_us, fan_n, 90),
           bu_pct_ms(fan_us, fan_n, 99),
           (unsigned long long) before, (unsigned long long) late,
           (unsigned long long) held);
    free(ix);
    free(ready_us);
    free(hold_us);
    free(fan_us);
}

/* --- event loop ------------------------------------------------------------ */

static void
dispatch(struct epoll_event *ev)
{
    conn_t *c = ev->data.ptr;
    if (c->kind == 0) {
        if (c->state == S_CONNECTING) {
            if (ev->events & (EPOLLERR | EPOLLHUP)) { sub_close(c, 0); return; }
            if (ev->events & EPOLLOUT) sub_send_handshake(c);
            return;
        }
        if (c->state == S_CLOSED) return;
        sub_read(c);
    } else {
        if (ev->events & EPOLLOUT) pub_flush(c);
        if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP)) pub_read(c);
    }
}

static void
loop_for(int ms)
{
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, ms);
    for (int i = 0; i < n; i++) dispatch(&evs[i]);
}

static void
run_until(uint64_t deadline)
{
    for (;;) {
        uint64_t t = bu_now_ns();
        if (t >= deadline) return;
        uint64_t ms = (deadline - t) / 1000000;
        loop_for(ms > 100 ? 100 : (int) ms);
    }
}

static void
parse_list(const char *s, void (*add)(const char *))
{
    char *copy = strdup(s), *save, *tok;
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        add(tok);
    free(copy);
}

static void add_rate(const char *s) { if (nrates < 32) rates[nrates++] = atof(s); }
static void add_pid(const char *s) { if (npids < 64) pids[npids++] = atoi(s); }

static void
load_groups(const char *file, int limit)
{
    FILE *f = fopen(file, "r");
    char line[256];
    if (f == NULL) bu_die(file);
    while (fgets(line, sizeof(line), f) && ngroups < MAX_GROUPS
           && (limit == 0 || ngroups < limit))
    {
        line[strcspn(line, "\r\n ")] = '\0';
        if (line[0]) groups[ngroups++] = strdup(line);
    }
    fclose(f);
}

static void
usage(void)
{
    fprintf(stderr,
        "usage: wsbench -p PORT [-q PORT2] -g GROUPS_FILE [-G N] -n SUBS [-m chat|nchan]\n"
        "       [-t TOKEN] [-r RATE[,RATE...]] [-d STEP_SEC] [-c PUB_CONNS]\n"
        "       [-P PID,...] [-i IDLE_SEC] [-w GRACE_SEC] [-H HANDSHAKES] [-k]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    int opt, glimit = 0;
    const char *gfile = NULL;

    while ((opt = getopt(argc, argv, "h:p:q:m:g:G:n:t:r:d:c:P:i:w:H:k")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'q': port2 = atoi(optarg); break;
        case 'm': mode = strcmp(optarg, "nchan") == 0 ? M_NCHAN : M_CHAT; break;
        case 'g': gfile = optarg; break;
        case 'G': glimit = atoi(optarg); break;
        case 'n': nsubs = atoi(optarg); break;
        case 't': token = optarg; break;
        case 'r': parse_list(optarg, add_rate); break;
        case 'd': step_sec = atof(optarg); break;
        case 'c': npub = atoi(optarg); break;
        case 'P': parse_list(optarg, add_pid); break;
        case 'i': idle_sec = atof(optarg); break;
        case 'w': grace_sec = atof(optarg); break;
        case 'H': max_handshakes = atoi(optarg); break;
        case 'k': stop_on_loss = 0; break;
        default: usage();
        }
    }
    if (gfile == NULL) usage();
    load_groups(gfile, glimit);
    if (ngroups == 0) { fprintf(stderr, "wsbench: no groups\n"); return 1; }

    struct rlimit rl = { 200000, 200000 };
    setrlimit(RLIMIT_NOFILE, &rl);

    ep = epoll_create1(EPOLL_CLOEXEC);
    subs = calloc(nsubs ? nsubs : 1, sizeof(conn_t));
    pubs = calloc(npub, sizeof(conn_t));

    /* --- connect ---------------------------------------------------------- */
    long rss0[64];
    for (int i = 0; i < npids; i++) rss0[i] = rss_kb(pids[i]);
    uint64_t t0 = bu_now_ns();
    int started = 0;
    uint64_t give_up = t0 + 120ull * 1000000000ull;
    while (subs_open + subs_failed < nsubs && bu_now_ns() < give_up) {
        while (started < nsubs
               && started - subs_open - subs_failed < max_handshakes)
        {
            /* -q: a group's subscribers alternate between the hosts */
            subs[started].hostix = port2 ? (started / ngroups) % 2 : 0;
            sub_start(&subs[started], started % ngroups);
            started++;
        }
        loop_for(10);
    }
    double connect_s = (bu_now_ns() - t0) / 1e9;
    run_until(bu_now_ns() + (uint64_t) (idle_sec * 1e9) + 500000000ull);

    printf("{\"phase\":\"connect\",\"mode\":\"%s\",\"subscribers\":%d,"
           "\"groups\":%d,\"open\":%d,\"failed\":%d,\"connect_s\":%.3f,"
           "\"rss_before_kb\":[", mode == M_CHAT ? "chat" : "nchan", nsubs,
           ngroups, subs_open, subs_failed, connect_s);
    long tot0 = 0;
    for (int i = 0; i < npids; i++) {
        printf("%s%ld", i ? "," : "", rss0[i]);
        tot0 += rss0[i];
    }
    printf("],\"rss_before_kb_total\":%ld,", tot0);
    print_rss("rss_idle_kb");
    printf("}\n");
    fflush(stdout);

    if (nrates == 0) {
        for (int i = 0; i < nsubs; i++) if (subs[i].state != S_CLOSED) close(subs[i].fd);
        return 0;
    }

    for (int i = 0; i < npub; i++) {
        pubs[i].hostix = port2 ? i % 2 : 0;
        pub_open(&pubs[i]);
    }
    run_until(bu_now_ns() + 200000000ull);

    msg_cap = 0;
    for (int s = 0; s < nrates; s++) msg_cap += (uint32_t) (rates[s] * step_sec) + 16;
    msg_expected = calloc(msg_cap, sizeof(uint32_t));
    msg_received = calloc(msg_cap, sizeof(uint32_t));
    msg_host = calloc(msg_cap, 1);
    msg_expected_x = calloc(msg_cap, sizeof(uint32_t));
    msg_received_x = calloc(msg_cap, sizeof(uint32_t));
    msg_sent_ns = calloc(msg_cap, sizeof(uint64_t));
    msg_resp_ns = calloc(msg_cap, sizeof(uint64_t));
    msg_gseq = calloc(msg_cap, sizeof(uint64_t));
    msg_first_ns = calloc(msg_cap, sizeof(uint64_t));
    msg_group = calloc(msg_cap, sizeof(uint16_t));
    uint64_t *ready_ns = calloc(msg_cap, sizeof(uint64_t));

    /* --- rate steps ------------------------------------------------------- */
    for (int s = 0; s < nrates; s++) {
        double rate = rates[s];
        uint32_t first = next_seq, count = (uint32_t) (rate * step_sec);
        lat_n = post_n = lat_same_n = lat_cross_n = 0;
        dlv_seq_n = dlv_us_n = 0;
        post_ok = post_err = dup_count = 0;
        int closed0 = subs_closed_by_server;
        uint64_t cpu0 = bu_cpu_ns(pids, npids);
        uint64_t start = bu_now_ns();
        uint64_t late = 0, max_lag_ns = 0;

        /* the step ends on time even if the publisher fell behind: the
           messages it could not send are simply not sent (and reported as
           a lower achieved rate) */
        uint64_t stop_at = start + (uint64_t) (step_sec * 1e9);
        while (next_seq < first + count && bu_now_ns() < stop_at) {
            uint64_t due = start + (uint64_t) ((next_seq - first) * 1e9 / rate);
            uint64_t t = bu_now_ns();
            if (t >= due) {
                /* round robin over the free connections, so that the
                   POSTs spread over every worker the connections landed on */
                static int rr;
                conn_t *free_c = NULL;
                for (int k = 0; k < npub; k++) {
                    int i = (rr + k) % npub;
                    if (!pubs[i].busy) { free_c = &pubs[i]; rr = i + 1; break; }
                }
                if (free_c) {
                    if (t - due > 1000000) late++;
                    if (t - due > max_lag_ns) max_lag_ns = t - due;
                    pub_send(free_c, next_seq, next_seq % ngroups);
                    next_seq++;
                    continue;
                }
                loop_for(1);
                continue;
            }
            uint64_t ms = (due - t) / 1000000;
            loop_for(ms > 50 ? 50 : (int) ms);
        }
        uint64_t pub_end = bu_now_ns();
        uint32_t planned = count;
        count = next_seq - first;
        double achieved = count / ((pub_end - start) / 1e9);

        /* wait for the stragglers: until all delivered or grace is over */
        uint64_t deadline = bu_now_ns() + (uint64_t) (grace_sec * 1e9);
        uint64_t expected = 0, received = 0;
        for (;;) {
            int busy = 0;
            for (int i = 0; i < npub; i++) busy |= pubs[i].busy;
            expected = received = 0;
            for (uint32_t q = first; q < first + count; q++) {
                expected += msg_expected[q];
                received += msg_received[q] < msg_expected[q]
                            ? msg_received[q] : msg_expected[q];
            }
            if ((!busy && received >= expected) || bu_now_ns() >= deadline) break;
            loop_for(20);
        }
        uint64_t cpu1 = bu_cpu_ns(pids, npids);
        double cpu_s = (cpu1 - cpu0) / 1e9;

        qsort(lat_us, lat_n, sizeof(uint32_t), bu_cmp_u32);
        qsort(lat_same_us, lat_same_n, sizeof(uint32_t), bu_cmp_u32);
        qsort(lat_cross_us, lat_cross_n, sizeof(uint32_t), bu_cmp_u32);
        uint64_t expected_x = 0, received_x = 0;
        for (uint32_t q = first; port2 && q < first + count; q++) {
            expected_x += msg_expected_x[q];
            received_x += msg_received_x[q] < msg_expected_x[q]
                          ? msg_received_x[q] : msg_expected_x[q];
        }
        qsort(post_us, post_n, sizeof(uint32_t), bu_cmp_u32);
        double ratio = expected ? (double) received / expected : 1.0;

        printf("{\"phase\":\"step\",\"mode\":\"%s\",\"rate\":%g,"
               "\"achieved_rate\":%.1f,\"late_sends\":%llu,"
               "\"max_send_lag_ms\":%.2f,"
               "\"subscribers_open\":%d,\"closed_by_server\":%d,"
               "\"planned\":%u,\"published\":%u,\"post_ok\":%llu,\"post_err\":%llu,"
               "\"expected\":%llu,\"delivered\":%llu,\"duplicates\":%llu,"
               "\"delivered_ratio\":%.6f,"
               "\"lat_p50_ms\":%.3f,\"lat_p90_ms\":%.3f,\"lat_p99_ms\":%.3f,"
               "\"lat_max_ms\":%.3f,"
               "\"post_p50_ms\":%.3f,\"post_p90_ms\":%.3f,\"post_p99_ms\":%.3f,\"post_max_ms\":%.3f,"
               "\"nginx_cpu_s\":%.4f,\"cpu_us_per_delivery\":%.3f,"
               "\"cpu_us_per_publish\":%.1f,\"pings_answered\":%llu,",
               mode == M_CHAT ? "chat" : "nchan", rate, achieved,
               (unsigned long long) late, max_lag_ns / 1e6, subs_open,
               subs_closed_by_server - closed0, planned, count,
               (unsigned long long) post_ok, (unsigned long long) post_err,
               (unsigned long long) expected, (unsigned long long) received,
               (unsigned long long) dup_count, ratio,
               bu_pct_ms(lat_us, lat_n, 50), bu_pct_ms(lat_us, lat_n, 90),
               bu_pct_ms(lat_us, lat_n, 99), lat_n ? lat_us[lat_n - 1] / 1000.0 : -1,
               bu_pct_ms(post_us, post_n, 50), bu_pct_ms(post_us, post_n, 90),
               bu_pct_ms(post_us, post_n, 99),
               post_n ? post_us[post_n - 1] / 1000.0 : -1,
               cpu_s, received ? cpu_s * 1e6 / received : -1,
               count ? cpu_s * 1e6 / count : -1,
               (unsigned long long) pings_answered);
        print_rss("rss_kb");
        if (port2) {
            printf(",\"cross_expected\":%llu,\"cross_delivered\":%llu,"
                   "\"same_n\":%zu,\"same_p50_ms\":%.3f,\"same_p99_ms\":%.3f,"
                   "\"same_max_ms\":%.3f,"
                   "\"cross_n\":%zu,\"cross_p50_ms\":%.3f,\"cross_p99_ms\":%.3f,"
                   "\"cross_max_ms\":%.3f",
                   (unsigned long long) expected_x, (unsigned long long) received_x,
                   lat_same_n, bu_pct_ms(lat_same_us, lat_same_n, 50),
                   bu_pct_ms(lat_same_us, lat_same_n, 99),
                   lat_same_n ? lat_same_us[lat_same_n - 1] / 1000.0 : -1,
                   lat_cross_n, bu_pct_ms(lat_cross_us, lat_cross_n, 50),
                   bu_pct_ms(lat_cross_us, lat_cross_n, 99),
                   lat_cross_n ? lat_cross_us[lat_cross_n - 1] / 1000.0 : -1);
        }
        print_hold(first, count, ready_ns);
        printf("}\n");
        fflush(stdout);

        if (stop_on_loss && s + 1 < nrates
            && (received < expected || post_err || achieved < 0.95 * rate))
        {
            break;
        }
    }

    for (int i = 0; i < nsubs; i++) if (subs[i].state != S_CLOSED) close(subs[i].fd);
    for (int i = 0; i < npub; i++) close(pubs[i].fd);
    return 0;
}
