/*
 * natsflood.c - the cluster path at saturation, for `make bench
 * BENCH=cluster` (loopback only).
 *
 * Opens N WebSocket subscribers to one group on an nginx host, then acts
 * as another host of the cluster: a raw NATS publisher (nats.c, libnats)
 * that sends well-formed cluster messages for the group straight to its
 * subject, "chat.g.<group id>", as the module's ngx_http_chat_cluster.c
 * does: "CHC1", an instance id that is no nginx's (uint64, -I), the seq
 * (int64), the group id, then a message event's JSON whose content is
 * "NF:<seq>:<monotonic ns>".
 *
 * Seqs: 1 is the probe (sent every 50 ms until every subscriber heard it:
 * the hosts' subscriptions have reached the cluster); then 2, 3, ... at
 * RATE events/s (-r, 0: as fast as nats.c takes them), COUNT of them (-c)
 * or for SECONDS (-d), whichever ends first.  The group must have no event
 * yet (made through the API): its subscribers then expect seq 1 next, and
 * every event arrives in order without the database; an event the host
 * drops (its hand-off queue full) is a gap the database cannot fill (the
 * event was never stored), so the subscribers hear nothing more of the
 * group until the gap is given up for good: "in_order" false and the
 * delivered ratio say that the rate was past the host's capacity.
 *
 * Publishing runs on a thread of its own; the main thread reads the
 * subscribers (epoll).  Output: one JSON object on stdout.
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#define BENCH_TOOL "natsflood"
#include "benchutil.h"

#define RBUF      65536
#define GROUP_LEN 24

typedef struct {
    int        fd;
    int        open;
    uint8_t   *part;
    size_t     part_len;
    uint64_t   heard;        /* NF events */
    int64_t    last_seq;
    int        out_of_order;
} sub_t;

static const char *nats_url = "nats://127.0.0.1:4222";
static int         port = 8001;
static const char *group = "";
static const char *token = "";
static int         nsubs = 10;
static long        count = 100000;
static double      rate;         /* 0: as fast as possible */
static double      max_sec = 10;
static uint64_t    instance = 0x6e617473666c6f6full;   /* "natsfloo" */
static int         pids[16];
static int         npids;

static int         ep;
static sub_t      *subs;
static int         subs_open, subs_closed_by_server;
static uint32_t   *lat_us;
static size_t      lat_n, lat_cap;
static uint64_t    last_recv_ns;

static natsConnection *nc;
static char        subject[64];
static volatile int pub_done;
static long        published;
static uint64_t    pub_t0, pub_t1;
static int         pub_errors;

/* this thread's CPU (the subscribers' reader), ns */
static uint64_t
thread_cpu_ns(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull
           + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
}

static double
pct(double p)
{
    if (lat_n == 0) return -1;
    size_t i = (size_t) (p * (lat_n - 1));
    return lat_us[i] / 1000.0;
}

/* --- the subscribers -------------------------------------------------------- */

static void
sub_close(sub_t *s, int by_server)
{
    if (s->fd < 0) return;
    if (s->open) { subs_open--; if (by_server) subs_closed_by_server++; }
    s->open = 0;
    close(s->fd);
    s->fd = -1;
}

static void
sub_connect(sub_t *s)
{
    struct sockaddr_in a;
    char req[1024];
    int one = 1, n;

    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0) bu_die("socket");
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(s->fd, (struct sockaddr *) &a, sizeof(a)) < 0) bu_die("connect");
    n = bu_ws_chat_upgrade(req, sizeof(req), group, token, "127.0.0.1", port);
    if (write(s->fd, req, n) != n) bu_die("write");
    s->last_seq = 0;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = s };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) bu_die("epoll_ctl");
}

static void
on_payload(void *ctx, const uint8_t *p, size_t len, uint64_t t)
{
    sub_t *s = ctx;
    long long seq;
    unsigned long long sent;
    if (!bu_ws_stamp(p, len, "NF:", &seq, &sent)) return;
    if (seq == 1 && s->heard) return;           /* the probe, again */
    if (seq != s->last_seq + 1) s->out_of_order++;
    s->last_seq = seq;
    s->heard++;
    last_recv_ns = t;
    if (seq == 1) return;
    bu_push_u32(&lat_us, &lat_n, &lat_cap,
                (uint32_t) ((t > sent ? t - sent : 0) / 1000));
}

static void
sub_read(sub_t *s)
{
    static uint8_t buf[RBUF + 65536];
    for (;;) {
        size_t have = s->part_len;
        if (have) memcpy(buf, s->part, have);
        ssize_t n = recv(s->fd, buf + have, RBUF, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n <= 0) { sub_close(s, 1); return; }
        uint64_t t = bu_now_ns();
        size_t len = have + n, used = 0;
        if (!s->open) {
            int hs = bu_ws_handshake(buf, len, &used);
            if (hs == 0) goto keep;
            if (hs < 0) {
                sub_close(s, 0);
                return;
            }
            s->open = 1;
            subs_open++;
        }
        int closed = 0;
        used += bu_ws_parse_frames(s->fd, buf + used, len - used, t,
                                   on_payload, s, NULL, &closed);
        if (closed) sub_close(s, 1);
        if (s->fd < 0) return;
    keep:
        bu_keep_part(&s->part, &s->part_len, buf, len, used);
        if ((size_t) n < RBUF) return;
    }
}

static void
loop_for(int ms)
{
    struct epoll_event evs[256];
    int n = epoll_wait(ep, evs, 256, ms);
    for (int i = 0; i < n; i++) sub_read(evs[i].data.ptr);
}

/* --- the publisher ---------------------------------------------------------- */

static void
publish(int64_t seq)
{
    char      msg[512];
    size_t    h = 20 + GROUP_LEN;
    int       n;
    time_t    now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    memcpy(msg, "CHC1", 4);
    memcpy(msg + 4, &instance, 8);
    memcpy(msg + 12, &seq, 8);
    memcpy(msg + 20, group, GROUP_LEN);
    n = snprintf(msg + h, sizeof(msg) - h,
                 "{\"type\":\"message\",\"message\":{\"id\":\"%024llx\","
                 "\"group_id\":\"%s\",\"user_id\":\"natsflood\","
                 "\"content\":\"NF:%lld:%llu\","
                 "\"created_at\":\"%04d-%02d-%02dT%02d:%02d:%02dZ\","
                 "\"is_deleted\":false,\"seq\":%lld},\"seq\":%lld}",
                 (unsigned long long) seq, group, (long long) seq,
                 (unsigned long long) bu_now_ns(), tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (long long) seq, (long long) seq);
    if (natsConnection_Publish(nc, subject, msg, (int) h + n) != NATS_OK) {
        pub_errors++;
    }
}

static void *
publisher(void *arg)
{
    (void) arg;
    uint64_t deadline;
    int64_t seq = 2;

    pub_t0 = bu_now_ns();
    deadline = pub_t0 + (uint64_t) (max_sec * 1e9);
    while (published < count) {
        uint64_t t = bu_now_ns();
        if (t >= deadline) break;
        if (rate > 0) {
            long due = (long) ((t - pub_t0) / 1e9 * rate) + 1;
            if (due > count) due = count;
            if (published >= due) {
                struct timespec ts = { 0, 200000 };
                nanosleep(&ts, NULL);
                continue;
            }
            while (published < due) { publish(seq++); published++; }
        } else {
            for (int i = 0; i < 64 && published < count; i++) {
                publish(seq++); published++;
            }
        }
    }
    pub_t1 = bu_now_ns();
    natsConnection_FlushTimeout(nc, 5000);
    pub_done = 1;
    return NULL;
}

static int
all_heard_probe(void)
{
    for (int i = 0; i < nsubs; i++) {
        if (subs[i].open && subs[i].heard == 0) return 0;
    }
    return 1;
}

static void
usage(void)
{
    fprintf(stderr,
        "usage: natsflood -u NATS_URL -p PORT -g GROUP -t TOKEN [-n SUBS]\n"
        "                 [-c COUNT] [-r RATE (0: max)] [-d SECONDS]\n"
        "                 [-I INSTANCE] [-P PID,...]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "u:p:g:t:n:c:r:d:I:P:")) != -1) {
        switch (opt) {
        case 'u': nats_url = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'g': group = optarg; break;
        case 't': token = optarg; break;
        case 'n': nsubs = atoi(optarg); break;
        case 'c': count = atol(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': max_sec = atof(optarg); break;
        case 'I': instance = strtoull(optarg, NULL, 0); break;
        case 'P':
            for (char *p = strtok(optarg, ","); p && npids < 16; p = strtok(NULL, ","))
                pids[npids++] = atoi(p);
            break;
        default: usage();
        }
    }
    if (strlen(group) != GROUP_LEN || nsubs < 1 || count < 1) usage();
    snprintf(subject, sizeof(subject), "chat.g.%s", group);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) bu_die("epoll_create1");
    subs = calloc(nsubs, sizeof(sub_t));
    for (int i = 0; i < nsubs; i++) sub_connect(&subs[i]);
    uint64_t t = bu_now_ns();
    while (subs_open < nsubs && bu_now_ns() - t < 10000000000ull) loop_for(50);
    if (subs_open < nsubs) {
        fprintf(stderr, "natsflood: %d of %d subscribers open\n", subs_open, nsubs);
        return 1;
    }

    if (natsConnection_ConnectTo(&nc, nats_url) != NATS_OK) {
        fprintf(stderr, "natsflood: cannot connect to %s: %s\n", nats_url,
                nats_GetLastError(NULL));
        return 1;
    }

    /* the probe: until the host's subscription reached the cluster */
    t = bu_now_ns();
    while (!all_heard_probe()) {
        if (bu_now_ns() - t > 10000000000ull) {
            fprintf(stderr, "natsflood: the probe did not reach every subscriber\n");
            return 1;
        }
        publish(1);
        natsConnection_Flush(nc);
        loop_for(50);
    }

    uint64_t c0 = bu_cpu_ns(pids, npids), r0 = thread_cpu_ns();
    pthread_t th;
    if (pthread_create(&th, NULL, publisher, NULL) != 0) bu_die("pthread_create");

    /* read until the publisher is done, then until every subscriber heard
     * the last event or nothing came for 2 s (bounded: 30 s) */
    while (!pub_done) loop_for(20);
    uint64_t tend = bu_now_ns();
    int64_t last = published + 1;
    for (;;) {
        int done = 1;
        for (int i = 0; i < nsubs; i++) {
            if (subs[i].open && subs[i].last_seq < last) { done = 0; break; }
        }
        uint64_t now = bu_now_ns();
        if (done || now - (last_recv_ns > tend ? last_recv_ns : tend) > 2000000000ull
            || now - tend > 30000000000ull)
        {
            break;
        }
        loop_for(20);
    }
    uint64_t c1 = bu_cpu_ns(pids, npids), r1 = thread_cpu_ns();
    pthread_join(th, NULL);

    uint64_t heard = 0, complete = 0, ooo = 0;
    for (int i = 0; i < nsubs; i++) {
        heard += subs[i].heard ? subs[i].heard - 1 : 0;    /* not the probe */
        if (subs[i].last_seq == last) complete++;
        ooo += subs[i].out_of_order;
    }
    qsort(lat_us, lat_n, sizeof(uint32_t), bu_cmp_u32);
    double pub_sec = (pub_t1 - pub_t0) / 1e9;
    double recv_sec = (last_recv_ns > pub_t0 ? last_recv_ns - pub_t0 : 1) / 1e9;
    double expected = (double) published * nsubs;

    printf("{\"subs\":%d,\"open\":%d,\"closed_by_server\":%d,\"rate\":%.0f,"
           "\"published\":%ld,\"publish_errors\":%d,\"pub_sec\":%.3f,"
           "\"pub_rate\":%.0f,\"delivered\":%llu,\"delivered_ratio\":%.6f,"
           "\"subs_complete\":%llu,\"in_order\":%s,\"recv_sec\":%.3f,"
           "\"events_per_sec\":%.0f,\"deliveries_per_sec\":%.0f,"
           "\"lat_p50_ms\":%.2f,\"lat_p99_ms\":%.2f,\"lat_max_ms\":%.2f,"
           "\"cpu_us_per_delivery\":%.3f,\"cpu_us_per_event\":%.2f,"
           "\"nginx_cpu_s\":%.3f,\"reader_cpu_s\":%.3f}\n",
           nsubs, subs_open, subs_closed_by_server, rate, published,
           pub_errors, pub_sec, published / pub_sec,
           (unsigned long long) heard, heard / expected,
           (unsigned long long) complete, ooo ? "false" : "true", recv_sec,
           heard / (double) nsubs / recv_sec, heard / recv_sec,
           pct(0.5), pct(0.99), lat_n ? lat_us[lat_n - 1] / 1000.0 : -1,
           heard ? (c1 - c0) / 1e3 / heard : -1,
           heard ? (c1 - c0) / 1e3 / (heard / (double) nsubs) : -1,
           (c1 - c0) / 1e9, (r1 - r0) / 1e9);

    natsConnection_Destroy(nc);
    return 0;
}
