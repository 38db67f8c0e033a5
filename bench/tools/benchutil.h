/*
 * benchutil.h - helpers shared by the load clients and probes of
 * bench/tools (wsbench, natsflood, hreq, writeprobe, seqprobe, idlookup).
 *
 * Header only: static inline functions, so that each tool is still built
 * from its one source file, as bench/run.sh and the cases do:
 *   cc -O2 -Wall -o TOOL bench/tools/TOOL.c [LIBS]
 * (the quoted include is found next to the source file).
 *
 * A tool defines BENCH_TOOL, its name, before including this file: the
 * messages printed here start with it.  The WebSocket helpers use
 * memmem(): they are there when the tool defines _GNU_SOURCE before its
 * first system header (wsbench, natsflood).
 */

#ifndef BENCHUTIL_H
#define BENCHUTIL_H

#ifndef BENCH_TOOL
#error "define BENCH_TOOL (the tool's name) before including benchutil.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


/* --- time, errors, sorting ------------------------------------------------ */

/* CLOCK_MONOTONIC, ns */
static inline uint64_t
bu_now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000ull + ts.tv_nsec;
}


/* "TOOL: what: strerror(errno)" on stderr, exit status 1 */
static inline void
bu_die(const char *m)
{
    fprintf(stderr, BENCH_TOOL ": %s: %s\n", m, strerror(errno));
    exit(1);
}


/* qsort() comparators, ascending */
static inline int
bu_cmp_u32(const void *a, const void *b)
{
    uint32_t  x = *(const uint32_t *) a, y = *(const uint32_t *) b;

    return x < y ? -1 : x > y;
}


/* the p-th percentile (0-100, nearest rank) of n sorted µs values, in ms;
   -1 when there are none */
static inline double
bu_pct_ms(const uint32_t *a, size_t n, double p)
{
    size_t  i;

    if (n == 0) {
        return -1;
    }

    i = (size_t) (p / 100.0 * (double) (n - 1) + 0.5);
    return a[i < n ? i : n - 1] / 1000.0;
}


static inline int
bu_cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return (x > y) - (x < y);
}


/* v appended to the growing array *a (*n used of *cap), doubled from 65,536 */
static inline void
bu_push_u32(uint32_t **a, size_t *n, size_t *cap, uint32_t v)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 65536;
        *a = realloc(*a, *cap * sizeof(uint32_t));
        if (*a == NULL) bu_die("realloc");
    }
    (*a)[(*n)++] = v;
}


/* --- threads ------------------------------------------------------------- */

/*
 * Runs fn in n threads (n <= 256), the i-th given (void *) (uintptr_t) i
 * as its argument, and waits for them all.
 */
static inline void
bu_run_threads(int n, void *(*fn)(void *))
{
    pthread_t  th[256];
    int        i;

    for (i = 0; i < n; i++) {
        pthread_create(&th[i], NULL, fn, (void *) (uintptr_t) i);
    }
    for (i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
    }
}


/* --- CPU of other processes ----------------------------------------------- */

/*
 * The CPU time of every thread of the given processes (nginx workers), in
 * ns: the sum of the first field of /proc/PID/task/TID/schedstat.  A
 * process or thread that is gone counts 0.
 */
static inline uint64_t
bu_cpu_ns(const int *pids, int npids)
{
    uint64_t total = 0;
    for (int i = 0; i < npids; i++) {
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task", pids[i]);
        DIR *d = opendir(path);
        if (d == NULL) continue;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char p2[320];
            snprintf(p2, sizeof(p2), "/proc/%d/task/%s/schedstat", pids[i],
                     e->d_name);
            FILE *f = fopen(p2, "r");
            if (f == NULL) continue;
            unsigned long long run = 0;
            if (fscanf(f, "%llu", &run) == 1) total += run;
            fclose(f);
        }
        closedir(d);
    }
    return total;
}


/* --- a WebSocket subscriber of the chat module ---------------------------- */

#ifdef _GNU_SOURCE

/*
 * The upgrade request of a subscriber of GROUP on the chat module
 * (/api/chat/ws/GROUP?token=TOKEN) at HOST:PORT, into req; its length.
 */
static inline int
bu_ws_chat_upgrade(char *req, size_t size, const char *group,
    const char *token, const char *host, int port)
{
    return snprintf(req, size,
                    "GET /api/chat/ws/%s?token=%s HTTP/1.1\r\n"
                    "Host: %s:%d\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n",
                    group, token, host, port);
}


/*
 * The response to the upgrade request, at the start of buf: 0 while its
 * header is incomplete; 1 when it is a 101 (*used: the header's length,
 * frames follow); -1 when the server refused (the start of the response is
 * printed on stderr).
 */
static inline int
bu_ws_handshake(const uint8_t *buf, size_t len, size_t *used)
{
    const uint8_t  *e;

    e = memmem(buf, len, "\r\n\r\n", 4);
    if (e == NULL) {
        return 0;
    }

    if (len < 12 || memcmp(buf + 9, "101", 3) != 0) {
        fprintf(stderr, BENCH_TOOL ": handshake refused: %.*s\n",
                (int) (len < 200 ? len : 200), buf);
        return -1;
    }

    *used = (e + 4) - buf;
    return 1;
}


/*
 * The stamp a load's sender put in a message's content, TAG<seq>:<ns>
 * (e.g. "BT:12:1234567890", ns: the sender's bu_now_ns()), found anywhere
 * in the payload p: 1 and *seq, *sent_ns; 0 if there is none.
 */
static inline int
bu_ws_stamp(const uint8_t *p, size_t len, const char *tag, long long *seq,
    unsigned long long *sent_ns)
{
    size_t          tlen = strlen(tag);
    const uint8_t  *m = memmem(p, len, tag, tlen);
    char           *end;

    if (m == NULL) {
        return 0;
    }
    *seq = strtoll((const char *) m + tlen, &end, 10);
    if (*end != ':') {
        return 0;
    }
    *sent_ns = strtoull(end + 1, NULL, 10);
    return 1;
}


/* a data frame's payload (text, binary or continuation), read at t ns */
typedef void (*bu_ws_payload_pt)(void *ctx, const uint8_t *p, size_t len,
    uint64_t t);

/*
 * Parses the server's frames in b: each data frame's payload goes to
 * on_payload(ctx, ...); a ping is answered on fd at once with a pong of its
 * payload (at most 125 bytes, masked with a zero key) and counted in
 * *pings (NULL: not counted); a close frame sets *closed and consumes all
 * of b (the caller closes).  Returns the bytes consumed: the complete
 * frames; an incomplete one stays for the next read.
 */
static inline size_t
bu_ws_parse_frames(int fd, const uint8_t *b, size_t len, uint64_t t,
    bu_ws_payload_pt on_payload, void *ctx, uint64_t *pings, int *closed)
{
    size_t pos = 0;
    while (len - pos >= 2) {
        const uint8_t *f = b + pos;
        int op = f[0] & 0x0f;
        int masked = f[1] & 0x80;
        uint64_t plen = f[1] & 0x7f;
        size_t h = 2;
        if (plen == 126) {
            if (len - pos < 4) break;
            plen = ((uint64_t) f[2] << 8) | f[3];
            h = 4;
        } else if (plen == 127) {
            if (len - pos < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | f[2 + i];
            h = 10;
        }
        if (masked) h += 4;
        if (len - pos < h + plen) break;
        const uint8_t *pl = f + h;
        if (op == 0x1 || op == 0x2 || op == 0x0) {
            on_payload(ctx, pl, plen, t);
        } else if (op == 0x9) {
            uint8_t out[2 + 4 + 125];
            size_t n = plen > 125 ? 125 : plen;
            out[0] = 0x8a;
            out[1] = 0x80 | (uint8_t) n;
            memset(out + 2, 0, 4);
            memcpy(out + 6, pl, n);
            if (write(fd, out, 6 + n) < 0) { /* the next read sees it */ }
            if (pings) (*pings)++;
        } else if (op == 0x8) {
            *closed = 1;
            return len;
        }
        pos += h + plen;
    }
    return pos;
}


/*
 * Keeps the bytes of buf after used (an incomplete frame or header) in
 * *part for the next read, replacing what *part held.
 */
static inline void
bu_keep_part(uint8_t **part, size_t *part_len, const uint8_t *buf,
    size_t len, size_t used)
{
    free(*part);
    *part = NULL;
    *part_len = len - used;
    if (*part_len) {
        *part = malloc(*part_len);
        memcpy(*part, buf + used, *part_len);
    }
}

#endif /* _GNU_SOURCE */

#endif /* BENCHUTIL_H */
