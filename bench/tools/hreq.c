/*
 * hreq.c - a tiny sequential HTTP/1.1 keep-alive client for `make bench`.
 *
 *   hreq -p PORT -n N [-u PATH] [-D DISTINCT] [-H "Header: v"]
 *       N requests, one after the other on one connection (callgrind runs:
 *       an exact request count).  With -D, the path gets a suffix
 *       (i * 7919) % DISTINCT, so DISTINCT different URIs are requested.
 *   hreq -p PORT -r RATE -d SEC [-u PATH] [-H ...]
 *       latency probe: one request every 1/RATE s (or right after the
 *       previous answer if that came later), for SEC seconds.
 *
 * Prints one JSON line: count, errors (non-2xx or I/O), latency
 * percentiles in ms.  Loopback only (127.0.0.1).
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TOOL "hreq"
#include "benchutil.h"

static int          port = 80;
static const char  *path = "/";
static const char  *hdrs[8];
static int          nhdrs;
static int          fd = -1;
static char        *buf;
static size_t       cap = 1 << 20, have;

static int
conn(void)
{
    struct sockaddr_in a;
    int one = 1;
    if (fd >= 0) close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    have = 0;
    return connect(fd, (struct sockaddr *) &a, sizeof(a));
}

/* one request; returns the status, or -1 */
static int
request(const char *p)
{
    char req[4096];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                     p);
    for (int i = 0; i < nhdrs; i++)
        n += snprintf(req + n, sizeof(req) - n, "%s\r\n", hdrs[i]);
    n += snprintf(req + n, sizeof(req) - n, "\r\n");

    for (int attempt = 0; attempt < 2; attempt++) {
        if (fd < 0 && conn() < 0) return -1;
        if (write(fd, req, n) != n) { close(fd); fd = -1; continue; }
        have = 0;
        for (;;) {
            if (cap - have < 65536) { cap *= 2; buf = realloc(buf, cap); }
            ssize_t r = read(fd, buf + have, cap - have);
            if (r <= 0) { close(fd); fd = -1; break; }
            have += r;
            char *e = memmem(buf, have, "\r\n\r\n", 4);
            if (e == NULL) continue;
            size_t hl = e + 4 - buf;
            char *cl = strcasestr(buf, "\r\ncontent-length:");
            if (cl && cl < e) {
                size_t bl = strtoul(cl + 17, NULL, 10);
                if (have < hl + bl) continue;
            } else if (strcasestr(buf, "chunked") && (char *) strcasestr(buf, "chunked") < e) {
                if (have < 5 || memcmp(buf + have - 5, "0\r\n\r\n", 5) != 0)
                    continue;
            }
            int status = atoi(buf + 9);
            if (strcasestr(buf, "\r\nconnection: close") != NULL) {
                close(fd);
                fd = -1;
            }
            return status;
        }
    }
    return -1;
}

int
main(int argc, char **argv)
{
    long n = 0, distinct = 0;
    double rate = 0, secs = 0;
    int opt;

    while ((opt = getopt(argc, argv, "p:n:u:D:H:r:d:")) != -1) {
        switch (opt) {
        case 'p': port = atoi(optarg); break;
        case 'n': n = atol(optarg); break;
        case 'u': path = optarg; break;
        case 'D': distinct = atol(optarg); break;
        case 'H': if (nhdrs < 8) hdrs[nhdrs++] = optarg; break;
        case 'r': rate = atof(optarg); break;
        case 'd': secs = atof(optarg); break;
        default:
            fprintf(stderr, "usage: hreq -p PORT (-n N [-D K] | -r RATE -d SEC)"
                            " [-u PATH] [-H HEADER]\n");
            return 2;
        }
    }
    buf = malloc(cap);

    size_t lcap = n ? (size_t) n : (size_t) (rate * secs) + 16, ln = 0;
    uint32_t *lat = malloc(lcap * sizeof(uint32_t));
    long errors = 0, count = 0;
    char p[2048];
    uint64_t start = bu_now_ns(), end = start + (uint64_t) (secs * 1e9);

    for (long i = 0; n ? i < n : bu_now_ns() < end; i++) {
        if (rate > 0) {
            uint64_t due = start + (uint64_t) (i * 1e9 / rate);
            uint64_t t = bu_now_ns();
            if (due > t) {
                struct timespec ts = { (due - t) / 1000000000ull,
                                       (due - t) % 1000000000ull };
                nanosleep(&ts, NULL);
            }
        }
        const char *u = path;
        if (distinct) {
            snprintf(p, sizeof(p), "%s%ld", path, (i * 7919) % distinct);
            u = p;
        }
        uint64_t t0 = bu_now_ns();
        int st = request(u);
        uint64_t d = bu_now_ns() - t0;
        count++;
        if (st < 200 || st > 299) errors++;
        if (ln < lcap) lat[ln++] = (uint32_t) (d / 1000);
    }
    double wall = (bu_now_ns() - start) / 1e9;
    qsort(lat, ln, sizeof(uint32_t), bu_cmp_u32);
    printf("{\"count\":%ld,\"errors\":%ld,\"wall_s\":%.3f,\"p50_ms\":%.3f,"
           "\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f}\n",
           count, errors, wall, bu_pct_ms(lat, ln, 50), bu_pct_ms(lat, ln, 90),
           bu_pct_ms(lat, ln, 99), bu_pct_ms(lat, ln, 99.9), ln ? lat[ln - 1] / 1000.0 : -1);
    return 0;
}
