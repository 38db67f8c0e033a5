/*
 * send-test-batch.c - pushes chat_wire batches to a running sidecar, the
 * way an nginx worker does.  For trying the sidecar without nginx, for
 * load tests, and for the README's examples: a custom event goes to the
 * sidecar's --events socket (send-test-batch -u EVENTS_URL -n 0 -C TYPE);
 * anything else to its --ingest socket, which takes it only when that
 * sidecar runs with --ingest-peers any.
 *
 * Exits 0 only if the sidecar kept the connection the batches went on:
 * a sidecar that refuses this process closes it at once, and PUSH would
 * otherwise report the batches as sent.
 *
 *   send-test-batch [-u URL] [-p PID] [-s START_US] [-q SEQ] [-b BATCHES]
 *                   [-n REQUESTS] [-e "METHOD /path"] [-r] [-c STATUS]
 *                   [-E ERROR_PCT] [-d MS] [-w GROUP] [-W GROUP]
 *                   [-S GROUP=COUNT] [-H] [-C TYPE [-k KEY=VALUE]...]
 *                   [-D DROPPED] [-i INTERVAL_MS]
 *                   [--cluster STATE [--host NAME] [--server URL]
 *                    [--error TEXT] [--counts R,O,I,G,D]]
 *
 * Build: make -C sidecar tools  (-> build/sidecar/send-test-batch)
 */

#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/supplemental/util/platform.h>

#include "wire/chat_wire.h"

#define MAX_LIST  16

/* a refusal closes the connection within a few ms of its making; a
   connection that lives this long was accepted */
#define SETTLE_MS  300


typedef struct {
    const char  *url;
    uint32_t     pid;
    uint64_t     start_us;
    uint64_t     seq;
    long         batches;
    long         requests;
    const char  *endpoint;
    int          random_paths;
    int          status;
    int          error_pct;
    double       duration_ms;
    const char  *ws_connect[MAX_LIST];
    int          nconnect;
    const char  *ws_disconnect[MAX_LIST];
    int          ndisconnect;
    const char  *snap[MAX_LIST];
    int          nsnap;
    int          heartbeat;
    const char  *custom;
    const char  *kv[CHAT_WIRE_KV_MAX];
    int          nkv;
    uint64_t     dropped;
    long         interval_ms;
    int          cluster;           /* -1: no cluster record */
    const char  *cl_host;
    const char  *cl_server;
    const char  *cl_error;
    uint64_t     cl_counts[5];      /* reconnects, out, in, gaps, dropped */
} args_t;

enum {
    OPT_CLUSTER = 256,
    OPT_HOST,
    OPT_SERVER,
    OPT_ERROR,
    OPT_COUNTS
};

static const char  *cluster_states[] = {
    "off", "connecting", "connected", "reconnecting", "closed"
};


static uint64_t
now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}


/* copies a string into a fixed wire field, returns the length used */
static uint8_t
put(char *dst, size_t size, const char *src)
{
    size_t  n = strlen(src);

    if (n > size) {
        n = size;
    }
    memcpy(dst, src, n);
    return (uint8_t) n;
}


static void
usage(FILE *out, int status)
{
    fprintf(out,
        "usage: send-test-batch [-u URL] [-p PID] [-s START_US] [-q SEQ]\n"
        "    [-b BATCHES] [-n REQUESTS] [-e \"METHOD /path\"] [-r]\n"
        "    [-c STATUS] [-E ERROR_PCT] [-d MS] [-w GROUP] [-W GROUP]\n"
        "    [-S GROUP=COUNT] [-H] [-C TYPE [-k KEY=VALUE]...]\n"
        "    [-D DROPPED] [-i INTERVAL_MS]\n"
        "    [--cluster STATE [--host NAME] [--server URL] [--error TEXT]\n"
        "     [--counts R,O,I,G,D]]\n"
        "Pushes batches of chat_wire records to a sidecar, as an nginx\n"
        "worker does.\n"
        "  -u  the sidecar's address (ipc:///tmp/chat-sidecar.ipc): its\n"
        "      --events socket for custom events (make run:\n"
        "      ipc://$PWD/var/run/chat-events.ipc), its --ingest socket\n"
        "      for anything else (taken with --ingest-peers any only)\n"
        "  -p/-s  the fake worker's pid and start time (this process)\n"
        "  -q  first batch sequence number (1); -b batches (1)\n"
        "  -n  request records per batch (10, at most 1024; 0: none)\n"
        "  -e  their endpoint (\"GET /api/chat/groups\"); -r random paths\n"
        "  -c  status (200); -E percent of 500s; -d duration in ms (25)\n"
        "  -w/-W  WebSocket connect/disconnect on GROUP (repeatable)\n"
        "  -S  snapshot record; -H empty snapshot (heartbeat)\n"
        "  -C  custom event TYPE with up to 4 -k KEY=VALUE\n"
        "  -D  cumulative dropped requests/records to report\n"
        "  -i  pause between batches, ms\n"
        "  --cluster  a cluster link record in each batch, STATE off,\n"
        "      connecting, connected, reconnecting or closed; --host the\n"
        "      host's name, --server the server connected to, --error the\n"
        "      last error, --counts the cumulative reconnects, events out,\n"
        "      events in, gaps filled, dropped (0,0,0,0,0)\n"
        "  -h, --help  this text\n"
        "Exit status: 0 sent on a connection the sidecar kept; 1 not sent\n"
        "(no sidecar there, or it refused this process); 2 bad usage.\n"
        "Example, against make run:\n"
        "  send-test-batch -u ipc://$PWD/var/run/chat-events.ipc -n 0 \\\n"
        "      -C deploy -k version=1.2.3\n");
    exit(status);
}


/* pipes the sidecar kept, and pipes it closed, as nng's threads see them */
static volatile int  pipes_added, pipes_removed;

static void
pipe_event(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    (void) pipe;
    (void) arg;

    if (ev == NNG_PIPE_EV_ADD_POST) {
        __atomic_add_fetch(&pipes_added, 1, __ATOMIC_SEQ_CST);
    } else {
        __atomic_add_fetch(&pipes_removed, 1, __ATOMIC_SEQ_CST);
    }
}


/* 1 while a pipe the sidecar accepted is up */
static int
connected(void)
{
    return __atomic_load_n(&pipes_added, __ATOMIC_SEQ_CST)
           > __atomic_load_n(&pipes_removed, __ATOMIC_SEQ_CST);
}


static int
refused(const char *url)
{
    fprintf(stderr, "send-test-batch: the sidecar at %s closed the "
            "connection at once: it refuses this process (its --ingest "
            "takes only nginx's workers unless --ingest-peers any; send "
            "custom events to its --events socket)\n", url);
    return 1;
}


/* this fake worker's connections per group, by name */
static const char  *group_names[2 * MAX_LIST];
static int          group_counts[2 * MAX_LIST];


static int *
group_count(const char *g)
{
    int  i;

    for (i = 0; i < 2 * MAX_LIST && group_names[i] != NULL; i++) {
        if (strcmp(group_names[i], g) == 0) {
            return &group_counts[i];
        }
    }
    if (i == 2 * MAX_LIST) {
        i = 0;
    }
    group_names[i] = g;
    return &group_counts[i];
}


static size_t
build(const args_t *a, uint64_t seq, uint64_t recorded, unsigned char *buf)
{
    chat_wire_batch_t   h;
    chat_wire_record_t  r;
    size_t              off = sizeof(h);
    uint16_t            n = 0;
    long                i;
    int                 k, *cnt;
    char                ep[CHAT_WIRE_ENDPOINT_LEN + 1], *sp, method[16];
    char                cid[CHAT_WIRE_CID_LEN + 1];

    memset(&h, 0, sizeof(h));
    h.magic = CHAT_WIRE_MAGIC;
    h.version = CHAT_WIRE_VERSION;
    h.record_size = sizeof(chat_wire_record_t);
    h.worker_pid = a->pid;
    h.worker_start_us = a->start_us;
    h.batch_seq = seq;
    h.requests_recorded = recorded;
    h.records_dropped = a->dropped;
    h.requests_dropped = a->dropped;
    h.flags = (a->nsnap > 0 || a->heartbeat) ? CHAT_BATCH_SNAPSHOT : 0;

    /* a request record as long as its strings, any other whole */
#define EMIT()                                                             \
    do {                                                                   \
        if (r.type != CHAT_REC_REQUEST) {                                  \
            r.size = sizeof(r);                                            \
        }                                                                  \
        memcpy(buf + off, &r, r.size);                                     \
        off += r.size;                                                     \
        n++;                                                               \
    } while (0)

    for (i = 0; i < a->requests && n < CHAT_WIRE_MAX_RECORDS; i++) {
        memset(&r, 0, sizeof(r));
        r.type = CHAT_REC_REQUEST;
        r.timestamp_us = now_us();

        snprintf(method, sizeof(method), "%s", a->endpoint);
        sp = strchr(method, ' ');
        if (sp != NULL) {
            *sp = '\0';
        }
        if (a->random_paths) {
            snprintf(ep, sizeof(ep), "%s /scan/%08x%08x", method,
                     (unsigned) rand(), (unsigned) rand());
        } else {
            snprintf(ep, sizeof(ep), "%s", a->endpoint);
        }

        snprintf(cid, sizeof(cid), "test-%u-%llu-%ld", a->pid,
                 (unsigned long long) seq, i);
        chat_wire_request_put(&r, method, strlen(method), ep, strlen(ep),
                              cid, strlen(cid));
        r.u.request.status = (uint16_t) ((rand() % 100 < a->error_pct)
                                         ? 500 : a->status);
        r.u.request.duration_us = (uint32_t) (a->duration_ms * 1000.0);
        EMIT();
    }

    for (k = 0; k < a->nconnect + a->ndisconnect
                && n < CHAT_WIRE_MAX_RECORDS; k++)
    {
        int          connect = k < a->nconnect;
        const char  *g = connect ? a->ws_connect[k]
                                 : a->ws_disconnect[k - a->nconnect];

        memset(&r, 0, sizeof(r));
        r.type = CHAT_REC_WS_EVENT;
        r.timestamp_us = now_us();
        r.u.ws_event.event = connect ? CHAT_WS_CONNECTED
                                     : CHAT_WS_DISCONNECTED;
        cnt = group_count(g);
        *cnt += connect ? 1 : -1;
        if (*cnt < 0) {
            *cnt = 0;
        }
        r.u.ws_event.worker_group_count = (uint32_t) *cnt;
        r.u.ws_event.group_id_len = put(r.u.ws_event.group_id,
                                        CHAT_WIRE_GROUP_ID_LEN, g);
        r.u.ws_event.user_id_len = put(r.u.ws_event.user_id,
                                       CHAT_WIRE_USER_ID_LEN, "test-user");
        EMIT();
    }

    for (k = 0; k < a->nsnap && n < CHAT_WIRE_MAX_RECORDS; k++) {
        const char  *eq = strchr(a->snap[k], '=');
        char         g[CHAT_WIRE_GROUP_ID_LEN + 1];

        memset(&r, 0, sizeof(r));
        r.type = CHAT_REC_WS_SNAPSHOT;
        r.timestamp_us = now_us();
        snprintf(g, sizeof(g), "%.*s",
                 (int) (eq ? (size_t) (eq - a->snap[k]) : strlen(a->snap[k])),
                 a->snap[k]);
        r.u.ws_snapshot.group_id_len = put(r.u.ws_snapshot.group_id,
                                           CHAT_WIRE_GROUP_ID_LEN, g);
        r.u.ws_snapshot.connection_count = eq ? (uint32_t) atoi(eq + 1) : 1;
        EMIT();
    }

    if (a->custom != NULL && n < CHAT_WIRE_MAX_RECORDS) {
        memset(&r, 0, sizeof(r));
        r.type = CHAT_REC_CUSTOM;
        r.timestamp_us = now_us();
        r.u.custom.event_type_len = put(r.u.custom.event_type,
                                        CHAT_WIRE_EVENT_TYPE_LEN, a->custom);
        for (k = 0; k < a->nkv; k++) {
            const char      *eq = strchr(a->kv[k], '=');
            chat_wire_kv_t  *kv = &r.u.custom.kv[k];
            char             key[CHAT_WIRE_KEY_LEN + 1];

            snprintf(key, sizeof(key), "%.*s",
                     (int) (eq ? (size_t) (eq - a->kv[k]) : strlen(a->kv[k])),
                     a->kv[k]);
            kv->key_len = put(kv->key, CHAT_WIRE_KEY_LEN, key);
            kv->value_len = put(kv->value, CHAT_WIRE_VALUE_LEN,
                                eq ? eq + 1 : "");
        }
        r.u.custom.kv_count = (uint8_t) a->nkv;
        EMIT();
    }

    if (a->cluster >= 0 && n < CHAT_WIRE_MAX_RECORDS) {
        chat_wire_cluster_t  *c = &r.u.cluster;

        memset(&r, 0, sizeof(r));
        r.type = CHAT_REC_CLUSTER;
        r.timestamp_us = now_us();
        c->state = (uint8_t) a->cluster;
        c->host_len = put(c->host, CHAT_WIRE_HOST_LEN, a->cl_host);
        c->server_len = put(c->server, CHAT_WIRE_SERVER_LEN, a->cl_server);
        c->error_len = put(c->error, CHAT_WIRE_ERROR_LEN, a->cl_error);
        c->reconnects = a->cl_counts[0];
        c->events_out = a->cl_counts[1];
        c->events_in = a->cl_counts[2];
        c->gaps_filled = a->cl_counts[3];
        c->dropped = a->cl_counts[4];
        EMIT();
    }

    h.count = n;
    memcpy(buf, &h, sizeof(h));
    return off;
}


int
main(int argc, char **argv)
{
    args_t          a;
    nng_socket      sock;
    unsigned char  *buf;
    size_t          len;
    uint64_t        recorded = 0, requests;
    int             opt, rv, k;
    long            b;

    static const struct option  longopts[] = {
        { "help", no_argument, NULL, 'h' },
        { "cluster", required_argument, NULL, OPT_CLUSTER },
        { "host", required_argument, NULL, OPT_HOST },
        { "server", required_argument, NULL, OPT_SERVER },
        { "error", required_argument, NULL, OPT_ERROR },
        { "counts", required_argument, NULL, OPT_COUNTS },
        { NULL, 0, NULL, 0 }
    };

    memset(&a, 0, sizeof(a));
    a.url = "ipc:///tmp/chat-sidecar.ipc";
    a.pid = (uint32_t) getpid();
    a.start_us = now_us();
    a.seq = 1;
    a.batches = 1;
    a.requests = 10;
    a.endpoint = "GET /api/chat/groups";
    a.status = 200;
    a.duration_ms = 25;
    a.cluster = -1;
    a.cl_host = "";
    a.cl_server = "";
    a.cl_error = "";

    while ((opt = getopt_long(argc, argv,
                              "u:p:s:q:b:n:e:rc:E:d:w:W:S:HC:k:D:i:h",
                              longopts, NULL))
           != -1)
    {
        switch (opt) {
        case 'u': a.url = optarg; break;
        case 'p': a.pid = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 's': a.start_us = strtoull(optarg, NULL, 10); break;
        case 'q': a.seq = strtoull(optarg, NULL, 10); break;
        case 'b': a.batches = atol(optarg); break;
        case 'n': a.requests = atol(optarg); break;
        case 'e': a.endpoint = optarg; break;
        case 'r': a.random_paths = 1; break;
        case 'c': a.status = atoi(optarg); break;
        case 'E': a.error_pct = atoi(optarg); break;
        case 'd': a.duration_ms = atof(optarg); break;
        case 'w':
            if (a.nconnect < MAX_LIST) {
                a.ws_connect[a.nconnect++] = optarg;
            }
            break;
        case 'W':
            if (a.ndisconnect < MAX_LIST) {
                a.ws_disconnect[a.ndisconnect++] = optarg;
            }
            break;
        case 'S':
            if (a.nsnap < MAX_LIST) {
                a.snap[a.nsnap++] = optarg;
            }
            break;
        case 'H': a.heartbeat = 1; break;
        case 'C': a.custom = optarg; break;
        case 'k':
            if (a.nkv < CHAT_WIRE_KV_MAX) {
                a.kv[a.nkv++] = optarg;
            }
            break;
        case 'D': a.dropped = strtoull(optarg, NULL, 10); break;
        case 'i': a.interval_ms = atol(optarg); break;
        case 'h': usage(stdout, 0); break;
        case OPT_CLUSTER:
            for (k = 0; k < 5; k++) {
                if (strcmp(optarg, cluster_states[k]) == 0) {
                    a.cluster = k;
                }
            }
            if (a.cluster < 0) {
                usage(stderr, 2);
            }
            break;
        case OPT_HOST: a.cl_host = optarg; break;
        case OPT_SERVER: a.cl_server = optarg; break;
        case OPT_ERROR: a.cl_error = optarg; break;
        case OPT_COUNTS:
            if (sscanf(optarg, "%" SCNu64 ",%" SCNu64 ",%" SCNu64 ",%" SCNu64
                       ",%" SCNu64, &a.cl_counts[0], &a.cl_counts[1],
                       &a.cl_counts[2], &a.cl_counts[3], &a.cl_counts[4])
                != 5)
            {
                usage(stderr, 2);
            }
            break;
        default: usage(stderr, 2);
        }
    }

    if (optind < argc || a.requests < 0 || a.requests > CHAT_WIRE_MAX_RECORDS
        || a.batches < 1 || a.pid == 0 || a.seq == 0)
    {
        usage(stderr, 2);
    }

    buf = malloc(CHAT_WIRE_BATCH_SIZE(CHAT_WIRE_MAX_RECORDS));
    if (buf == NULL) {
        return 1;
    }

    if ((rv = nng_push0_open(&sock)) != 0
        || (rv = nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 2000)) != 0
        || (rv = nng_pipe_notify(sock, NNG_PIPE_EV_ADD_POST, pipe_event,
                                 NULL)) != 0
        || (rv = nng_pipe_notify(sock, NNG_PIPE_EV_REM_POST, pipe_event,
                                 NULL)) != 0
        || (rv = nng_dial(sock, a.url, NULL, 0)) != 0)
    {
        fprintf(stderr, "send-test-batch: %s: %s\n", a.url, nng_strerror(rv));
        return 1;
    }

    /* a sidecar that refuses this process closes the pipe as it starts */
    nng_msleep(SETTLE_MS);
    if (!connected()) {
        return refused(a.url);
    }

    srand((unsigned) (now_us() ^ a.pid));
    requests = 0;

    for (b = 0; b < a.batches; b++) {
        recorded += (uint64_t) a.requests;
        len = build(&a, a.seq + (uint64_t) b, recorded, buf);
        if ((rv = nng_send(sock, buf, len, 0)) != 0) {
            fprintf(stderr, "send-test-batch: send: %s\n", nng_strerror(rv));
            return 1;
        }
        requests += (uint64_t) a.requests;
        if (a.interval_ms > 0) {
            nng_msleep((nng_duration) a.interval_ms);
        }
    }

    /* let the pipe drain: closing a PUSH socket drops what is queued */
    nng_msleep(200);
    if (!connected()) {
        return refused(a.url);
    }
    nng_close(sock);
    free(buf);

    printf("sent %ld batch(es), %llu request record(s), pid %u, seq %llu.."
           "%llu\n", a.batches, (unsigned long long) requests, a.pid,
           (unsigned long long) a.seq,
           (unsigned long long) (a.seq + (uint64_t) a.batches - 1));
    return 0;
}
