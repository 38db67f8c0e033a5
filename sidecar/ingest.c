/*
 * ingest.c - nng PULL receive (in its completion callback) and wire batch
 * decoding.
 */

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/supplemental/util/platform.h>

#include "ingest.h"
#include "isotime.h"
#include "log.h"
#include "procstats.h"

/* a batch is at most 56 + 1024 * 320 bytes (every record whole); anything far larger is junk
   that nng may discard before we can count it */
#define INGEST_MAX_MSG   (512 * 1024)
_Static_assert(INGEST_MAX_MSG >= CHAT_WIRE_BATCH_SIZE(CHAT_WIRE_MAX_RECORDS), "ingest message limit");

/* batches queued in nng while the collector is busy: ~9.4 MB of full batches
   as workers size them (1,024 records of ~96 bytes), at most 31 MB of the
   largest; beyond it the workers' non-blocking sends fail and count drops */
#define INGEST_RECVBUF   96


struct ingest_s {
    nng_socket     sock;
    nng_listener   listener;
    nng_aio       *aio;             /* the receive outstanding */
    uint64_t       rejected_batches;
    collector_t   *collector;
    coll_batch_t  *batch;
    procstats_t   *peers;          /* who may push; NULL: anyone */
    ingest_kind_e  kind;
    unsigned long  refused;        /* pipes of other processes */
};


/*
 * nng's thread, before a new pipe carries anything: with --ingest-peers
 * nginx, only the monitored master's children (its workers), or nginx
 * itself when it runs with master_process off, may push; any
 * other local process that can reach the socket is cut off and logged.
 */
static void
ingest_pipe_check(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    ingest_t       *in = arg;
    uint64_t        pid = 0;
    unsigned long   n;
    int             rv;

    (void) ev;

    rv = nng_pipe_get_uint64(pipe, NNG_OPT_IPC_PEER_PID, &pid);
    if (rv == 0 && pid > 0 && pid <= 0x7fffffff
        && procstats_is_nginx_process(in->peers, (pid_t) pid) == 1)
    {
        return;
    }

    n = __atomic_add_fetch(&in->refused, 1, __ATOMIC_RELAXED);

    /* a process may redial at will: the 1st-10th, then 16th, 32nd... */
    if (pid == 0 && (n <= 10 || (n & (n - 1)) == 0)) {
        log_warn("ingest: refused a connection without a peer pid (a "
                 "process in another pid namespace?  --ingest-peers any "
                 "accepts it) (%lu refused so far)", n);

    } else if (n <= 10 || (n & (n - 1)) == 0) {
        log_warn("ingest: refused a connection from pid %llu: not a worker "
                 "of the nginx in the pid file (%lu refused so far)",
                 (unsigned long long) pid, n);
    }
    (void) nng_pipe_close(pipe);
}


/* a wire string cleaned (records.h), never more than its field */
static size_t
ingest_string(char *dst, size_t dstsz, const char *src, size_t field,
    size_t len)
{
    return coll_text_clean(dst, dstsz, src, len < field ? len : field);
}


/*
 * A request record's three strings are back to back in text[], avail bytes
 * of which came on the wire (rec points at the record in the batch): each
 * is clamped to its field and to what is left of them, and copied as it
 * is (coll_request_raw_t; cleaned where it is read).  The fixed part is
 * read from a copy: the buffer may be unaligned.
 */
static void
ingest_request(const char *rec, size_t size, coll_request_raw_t *out)
{
    size_t               avail, m, e, c, mf, ef, cf, n, i;
    uint64_t             w;
    const char          *t;
    chat_wire_record_t   in;

    enum { HLEN = CHAT_WIRE_RECORD_HEAD
                  + offsetof(chat_wire_request_t, text) };

    if (size < HLEN) {
        /* what a record leaves out reads as zeros */
        memset(&in, 0, HLEN);
        memcpy(&in, rec, size);
        avail = 0;
        t = rec;

    } else {
        memcpy(&in, rec, HLEN);
        avail = size - HLEN;
        t = rec + HLEN;
    }

    m = in.u.request.method_len < avail ? in.u.request.method_len : avail;
    avail -= m;
    e = in.u.request.endpoint_len < avail ? in.u.request.endpoint_len
                                          : avail;
    avail -= e;
    c = in.u.request.cid_len < avail ? in.u.request.cid_len : avail;

    mf = m < CHAT_WIRE_METHOD_LEN ? m : CHAT_WIRE_METHOD_LEN;
    ef = e < CHAT_WIRE_ENDPOINT_LEN ? e : CHAT_WIRE_ENDPOINT_LEN;
    cf = c < CHAT_WIRE_CID_LEN ? c : CHAT_WIRE_CID_LEN;

    if (mf == m && ef == e && cf == c) {
        /* what nginx sends: the three back to back, as they came, in
           words (the record's text is a multiple of 8 bytes long, as its
           size is, and so is text[], which the three fit) */
        n = (m + e + c + 7) & ~(size_t) 7;
        for (i = 0; i < n; i += 8) {
            memcpy(&w, t + i, 8);
            memcpy(out->text + i, &w, 8);
        }

    } else {
        /* a length over its field: its first bytes, the next string
           where the wire put it */
        memcpy(out->text, t, mf);
        memcpy(out->text + mf, t + m, ef);
        memcpy(out->text + mf + ef, t + m + e, cf);
    }

    out->method_len = (uint8_t) mf;
    out->endpoint_len = (uint8_t) ef;
    out->cid_len = (uint8_t) cf;
    out->ts_us = in.timestamp_us;
    out->status = in.u.request.status;
    out->duration_us = in.u.request.duration_us;
    out->very_slow = 0;
}


static int
ingest_record(const chat_wire_record_t *in, coll_record_t *out)
{
    size_t  i;

    /* request records are ingest_request()'s; the rarer types start from
       zeros */
    out->type = in->type;
    memset(&out->u, 0, sizeof(out->u));

    switch (in->type) {

    case CHAT_REC_WS_EVENT:
        if (in->u.ws_event.event != CHAT_WS_CONNECTED
            && in->u.ws_event.event != CHAT_WS_DISCONNECTED)
        {
            return -1;
        }
        out->u.ws_event.ts_us = in->timestamp_us;
        out->u.ws_event.connected =
            in->u.ws_event.event == CHAT_WS_CONNECTED;
        out->u.ws_event.worker_count = in->u.ws_event.worker_group_count;
        ingest_string(out->u.ws_event.group_id,
                      sizeof(out->u.ws_event.group_id),
                      in->u.ws_event.group_id, CHAT_WIRE_GROUP_ID_LEN,
                      in->u.ws_event.group_id_len);
        ingest_string(out->u.ws_event.user_id,
                      sizeof(out->u.ws_event.user_id),
                      in->u.ws_event.user_id, CHAT_WIRE_USER_ID_LEN,
                      in->u.ws_event.user_id_len);
        return 0;

    case CHAT_REC_WS_SNAPSHOT:
        out->u.ws_count.count = in->u.ws_snapshot.connection_count;
        ingest_string(out->u.ws_count.group_id,
                      sizeof(out->u.ws_count.group_id),
                      in->u.ws_snapshot.group_id, CHAT_WIRE_GROUP_ID_LEN,
                      in->u.ws_snapshot.group_id_len);
        return 0;

    case CHAT_REC_CUSTOM:
        out->u.custom.ts_us = in->timestamp_us;
        ingest_string(out->u.custom.type, sizeof(out->u.custom.type),
                      in->u.custom.event_type, CHAT_WIRE_EVENT_TYPE_LEN,
                      in->u.custom.event_type_len);
        out->u.custom.nkv = in->u.custom.kv_count <= CHAT_WIRE_KV_MAX
                            ? in->u.custom.kv_count : CHAT_WIRE_KV_MAX;
        for (i = 0; i < out->u.custom.nkv; i++) {
            ingest_string(out->u.custom.kv[i].key,
                          sizeof(out->u.custom.kv[i].key),
                          in->u.custom.kv[i].key, CHAT_WIRE_KEY_LEN,
                          in->u.custom.kv[i].key_len);
            ingest_string(out->u.custom.kv[i].value,
                          sizeof(out->u.custom.kv[i].value),
                          in->u.custom.kv[i].value, CHAT_WIRE_VALUE_LEN,
                          in->u.custom.kv[i].value_len);
        }
        return 0;

    case CHAT_REC_CLUSTER:
        if (in->u.cluster.state > CHAT_CLUSTER_CLOSED) {
            return -1;
        }
        out->u.cluster.ts_us = in->timestamp_us;
        out->u.cluster.state = in->u.cluster.state;
        out->u.cluster.reconnects = in->u.cluster.reconnects;
        out->u.cluster.events_out = in->u.cluster.events_out;
        out->u.cluster.events_in = in->u.cluster.events_in;
        out->u.cluster.gaps_filled = in->u.cluster.gaps_filled;
        out->u.cluster.dropped = in->u.cluster.dropped;
        ingest_string(out->u.cluster.host, sizeof(out->u.cluster.host),
                      in->u.cluster.host, CHAT_WIRE_HOST_LEN,
                      in->u.cluster.host_len);
        ingest_string(out->u.cluster.server, sizeof(out->u.cluster.server),
                      in->u.cluster.server, CHAT_WIRE_SERVER_LEN,
                      in->u.cluster.server_len);
        ingest_string(out->u.cluster.error, sizeof(out->u.cluster.error),
                      in->u.cluster.error, CHAT_WIRE_ERROR_LEN,
                      in->u.cluster.error_len);
        return 0;

    default:
        return -1;
    }
}


int
ingest_decode(const void *buf, size_t len, coll_batch_t *out)
{
    chat_wire_batch_t   hdr;
    chat_wire_record_t  rec;
    const char         *p;
    int                 n, i;
    uint16_t            size, type;

    n = chat_wire_batch_check(buf, len);
    if (n < 0) {
        return -1;
    }

    memcpy(&hdr, buf, sizeof(hdr));

    if (hdr.worker_pid == 0 || hdr.batch_seq == 0) {
        return -1;
    }

    out->worker_pid = hdr.worker_pid;
    out->worker_start_us = hdr.worker_start_us;
    out->batch_seq = hdr.batch_seq;
    out->requests_recorded = hdr.requests_recorded;
    out->records_dropped = hdr.records_dropped;
    out->requests_dropped = hdr.requests_dropped;
    out->snapshot = (hdr.flags & CHAT_BATCH_SNAPSHOT) != 0;
    out->snapshot_cont = out->snapshot
                         && (hdr.flags & CHAT_BATCH_SNAPSHOT_CONT) != 0;
    out->invalid = 0;
    out->count = 0;

    p = (const char *) buf + sizeof(hdr);

    for (i = 0; i < n; i++) {
        /* sizes checked by chat_wire_batch_check(); the buffer may be
           unaligned: copy before reading fields.  What a record leaves out
           reads as zeros. */
        memcpy(&size, p + 2, sizeof(size));
        memcpy(&type, p, sizeof(type));

        if (type == CHAT_REC_REQUEST) {
            out->rec[out->count].type = CHAT_REC_REQUEST;
            ingest_request(p, size, &out->rec[out->count].u.request);
            out->count++;
            p += size;
            continue;
        }

        memset(&rec, 0, sizeof(rec));
        memcpy(&rec, p, size);
        p += size;

        if (ingest_record(&rec, &out->rec[out->count]) == 0) {
            out->count++;
        } else {
            out->invalid++;
        }
    }

    return 0;
}


static void
ingest_batch(ingest_t *in, nng_msg *msg)
{
    if (nng_msg_len(msg) == 0) {
        /* not a batch: the sender's workaround for a libnng bug
         * (wire/chat_wire.h) */

    } else if (ingest_decode(nng_msg_body(msg), nng_msg_len(msg),
                             in->batch) == 0)
    {
        if (in->kind == INGEST_EVENTS) {
            collector_apply_events(in->collector, in->batch);

        } else {
            collector_apply(in->collector, in->batch, isotime_wall_us(),
                            isotime_mono_us());
        }

    } else {
        collector_reject(in->collector);
        /* one line for the first few, then one per thousand */
        if (++in->rejected_batches <= 5
            || in->rejected_batches % 1000 == 0)
        {
            log_warn("ingest: rejected malformed batch of %zu bytes "
                     "(%llu rejected so far)", nng_msg_len(msg),
                     (unsigned long long) in->rejected_batches);
        }
    }
}


/*
 * One receive is outstanding at a time, and each batch is decoded and
 * applied in its completion, on nng's own thread: no hand-off to a thread
 * of ours per batch (a wake-up and a context switch each), and batches
 * still apply one at a time, in their order.  The callback re-arms the
 * receive; a closed socket or a stopped aio ends it.
 */
static void
ingest_recv_cb(void *arg)
{
    ingest_t  *in = arg;
    nng_msg   *msg;
    int        rv;

    rv = nng_aio_result(in->aio);

    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        return;
    }

    if (rv != 0) {
        log_warn("ingest: receive failed: %s", nng_strerror(rv));
        nng_msleep(100);

    } else {
        msg = nng_aio_get_msg(in->aio);
        ingest_batch(in, msg);
        nng_msg_free(msg);
    }

    nng_recv_aio(in->sock, in->aio);
}


int
ingest_start(ingest_t **out, ingest_kind_e kind, const char *url,
    int ipc_mode, collector_t *c, procstats_t *peers, char *err,
    size_t errlen)
{
    ingest_t  *in;
    int        rv;

    in = calloc(1, sizeof(*in));
    if (in == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    in->collector = c;
    in->kind = kind;
    in->peers = peers;
    in->batch = malloc(sizeof(coll_batch_t));
    if (in->batch == NULL) {
        free(in);
        snprintf(err, errlen, "out of memory");
        return -1;
    }

    if ((rv = nng_aio_alloc(&in->aio, ingest_recv_cb, in)) != 0) {
        snprintf(err, errlen, "nng_aio_alloc: %s", nng_strerror(rv));
        goto fail;
    }

    if ((rv = nng_pull0_open(&in->sock)) != 0) {
        snprintf(err, errlen, "nng_pull0_open: %s", nng_strerror(rv));
        goto fail;
    }

    (void) nng_socket_set_size(in->sock, NNG_OPT_RECVMAXSZ, INGEST_MAX_MSG);
    (void) nng_socket_set_int(in->sock, NNG_OPT_RECVBUF, INGEST_RECVBUF);

    if (peers != NULL
        && (rv = nng_pipe_notify(in->sock, NNG_PIPE_EV_ADD_PRE,
                                 ingest_pipe_check, in)) != 0)
    {
        snprintf(err, errlen, "ingest: cannot watch new pipes: %s",
                 nng_strerror(rv));
        goto fail_sock;
    }

    if ((rv = nng_listener_create(&in->listener, in->sock, url)) != 0) {
        snprintf(err, errlen, "ingest address \"%s\": %s", url,
                 nng_strerror(rv));
        goto fail_sock;
    }

    if (strncmp(url, "ipc://", 6) == 0) {
        rv = nng_listener_set_int(in->listener, NNG_OPT_IPC_PERMISSIONS,
                                  ipc_mode);
        if (rv != 0) {
            snprintf(err, errlen, "ingest \"%s\": permissions: %s", url,
                     nng_strerror(rv));
            goto fail_sock;
        }
    }

    if ((rv = nng_listener_start(in->listener, 0)) != 0) {
        snprintf(err, errlen, "cannot listen on ingest address \"%s\": %s",
                 url, nng_strerror(rv));
        goto fail_sock;
    }

    nng_recv_aio(in->sock, in->aio);

    *out = in;
    return 0;

fail_sock:
    nng_close(in->sock);
fail:
    if (in->aio != NULL) {
        nng_aio_free(in->aio);
    }
    free(in->batch);
    free(in);
    return -1;
}


void
ingest_stop(ingest_t *in)
{
    if (in == NULL) {
        return;
    }

    /* the receive outstanding fails with NNG_ECLOSED and is not re-armed;
       nng_aio_free() waits for a callback still running */
    nng_close(in->sock);
    nng_aio_stop(in->aio);
    nng_aio_free(in->aio);
    free(in->batch);
    free(in);
}
