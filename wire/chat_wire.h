/*
 * chat_wire.h - the metrics record that travels from nginx workers to the
 * sidecar over nng (PUSH -> PULL).  This is the ONE definition of the wire
 * format: ngx_chat_module writes it, the sidecar reads it.
 *
 * A message on the wire is one batch:
 *
 *     chat_wire_batch_t  header (fixed size)
 *     header.count records, back to back, each of its own size
 *
 * A record is a chat_wire_record_t cut short: its header (type, size,
 * timestamp) and as much of its body as it uses, rounded up to 8 bytes
 * (CHAT_WIRE_RECORD_SIZE); at most sizeof(chat_wire_record_t), the whole
 * structure, which is always valid.  A reader copies size bytes into a
 * zeroed chat_wire_record_t: what was cut off reads as zeros.  Request
 * records, nearly all the traffic, carry their three strings back to back
 * in text[] (method, endpoint, correlation ID: ~70 bytes for a typical
 * request instead of 320), the other types their whole structure.
 * Strings have an explicit length; a reader must use it and must not
 * trust any padding.  chat_wire_batch_check() walks the sizes, so a
 * decoder never parses more than a bounds-checked size per record.  All
 * integers are in host byte order: both ends run on the same machine
 * (ipc:// or tcp://127.0.0.1).
 *
 * An empty message (no header) is not a batch: a reader skips it without
 * counting it.  A worker sends one as its connection to the sidecar is torn
 * down, to work around a libnng 1.5 bug (ngx_http_chat_metrics.c,
 * ngx_http_chat_metrics_pipe_event()).
 *
 * Versioning: a reader rejects (and counts) a batch whose magic, version,
 * record size or count does not match what it was built with.  Any layout
 * change bumps CHAT_WIRE_VERSION.
 */

#ifndef CHAT_WIRE_H
#define CHAT_WIRE_H

#include <stddef.h>
#include <stdint.h>


#define CHAT_WIRE_MAGIC              0x54414843u   /* "CHAT" little-endian */
#define CHAT_WIRE_VERSION            5   /* 5: up to 1024 records */

/* a batch never carries more records than this; a full batch is flushed */
#define CHAT_WIRE_MAX_RECORDS        1024

#define CHAT_WIRE_METHOD_LEN         16
#define CHAT_WIRE_ENDPOINT_LEN       128
#define CHAT_WIRE_CID_LEN            64
#define CHAT_WIRE_GROUP_ID_LEN       32     /* ObjectId hex is 24 */
#define CHAT_WIRE_USER_ID_LEN        64
#define CHAT_WIRE_EVENT_TYPE_LEN     32
#define CHAT_WIRE_KV_MAX             4
#define CHAT_WIRE_KEY_LEN            24
#define CHAT_WIRE_VALUE_LEN          40


typedef enum {
    CHAT_REC_REQUEST     = 1,   /* one HTTP request served by nginx */
    CHAT_REC_WS_EVENT    = 2,   /* a WebSocket connected or disconnected */
    CHAT_REC_WS_SNAPSHOT = 3,   /* one group's live connection count on a
                                   worker; a snapshot is all such records
                                   of a batch with flag CHAT_BATCH_SNAPSHOT */
    CHAT_REC_CUSTOM      = 4,   /* generic event: type + up to 4 key/values */
    CHAT_REC_CLUSTER     = 5    /* this worker's link to the cluster (NATS),
                                   sent once a second; the latest replaces
                                   what the reader knew of the worker */
} chat_wire_record_type_e;


/* the state of a worker's cluster link */
typedef enum {
    CHAT_CLUSTER_OFF          = 0,  /* chat_cluster unset: one host */
    CHAT_CLUSTER_CONNECTING   = 1,  /* never connected yet (or retrying at
                                       start: a wrong credential, no server) */
    CHAT_CLUSTER_CONNECTED    = 2,
    CHAT_CLUSTER_RECONNECTING = 3,  /* lost, the client is reconnecting */
    CHAT_CLUSTER_CLOSED       = 4   /* given up: serving this host only */
} chat_wire_cluster_state_e;


typedef enum {
    CHAT_WS_CONNECTED    = 1,
    CHAT_WS_DISCONNECTED = 2
} chat_wire_ws_event_e;


/*
 * Batch flags.  A snapshot is this worker's complete per-group WebSocket
 * counts: the reader replaces what it knew of the worker.  It may take
 * several consecutive batches (more than CHAT_WIRE_MAX_RECORDS groups): the
 * first has CHAT_BATCH_SNAPSHOT alone, the following ones also
 * CHAT_BATCH_SNAPSHOT_CONT, so the reader clears on the first part only.
 */
#define CHAT_BATCH_SNAPSHOT       0x0001
#define CHAT_BATCH_SNAPSHOT_CONT  0x0002


typedef struct {
    uint8_t   method_len;           /* <= CHAT_WIRE_METHOD_LEN */
    uint8_t   endpoint_len;         /* <= CHAT_WIRE_ENDPOINT_LEN */
    uint8_t   cid_len;              /* <= CHAT_WIRE_CID_LEN */
    uint8_t   pad0;
    uint16_t  status;
    uint16_t  pad1;
    uint32_t  duration_us;          /* request start to log phase */
    uint32_t  pad2;
    uint64_t  bytes_sent;
    /* the method ("GET"), the endpoint ("GET /api/chat/groups") and the
     * correlation ID, back to back, of the lengths above */
    char      text[CHAT_WIRE_METHOD_LEN + CHAT_WIRE_ENDPOINT_LEN
                   + CHAT_WIRE_CID_LEN];
} chat_wire_request_t;


typedef struct {
    uint8_t   event;                /* chat_wire_ws_event_e */
    uint8_t   group_id_len;
    uint8_t   user_id_len;
    uint8_t   pad0;
    uint32_t  worker_group_count;   /* this worker's connections to the group
                                       after the event */
    char      group_id[CHAT_WIRE_GROUP_ID_LEN];
    char      user_id[CHAT_WIRE_USER_ID_LEN];
} chat_wire_ws_event_t;


typedef struct {
    uint8_t   group_id_len;
    uint8_t   pad0[3];
    uint32_t  connection_count;
    char      group_id[CHAT_WIRE_GROUP_ID_LEN];
} chat_wire_ws_snapshot_t;


typedef struct {
    uint8_t   key_len;
    uint8_t   value_len;
    char      key[CHAT_WIRE_KEY_LEN];
    char      value[CHAT_WIRE_VALUE_LEN];
} chat_wire_kv_t;


typedef struct {
    uint8_t         event_type_len;
    uint8_t         kv_count;       /* <= CHAT_WIRE_KV_MAX */
    uint8_t         pad0[2];
    char            event_type[CHAT_WIRE_EVENT_TYPE_LEN];
    chat_wire_kv_t  kv[CHAT_WIRE_KV_MAX];
} chat_wire_custom_t;


/*
 * A worker's cluster link.  Counters are cumulative for the worker; the
 * host is chat_host_name's (the same in every worker of one nginx), the
 * server the URL the link is connected to now (empty when not), the error
 * the last one the link met (empty when none).
 */
#define CHAT_WIRE_HOST_LEN           64
#define CHAT_WIRE_SERVER_LEN         96
#define CHAT_WIRE_ERROR_LEN          64

typedef struct {
    uint8_t   state;                /* chat_wire_cluster_state_e */
    uint8_t   host_len;
    uint8_t   server_len;
    uint8_t   error_len;
    uint32_t  pad0;
    uint64_t  reconnects;           /* links re-established after a loss */
    uint64_t  events_out;           /* events published to the cluster */
    uint64_t  events_in;            /* events received from other hosts */
    uint64_t  gaps_filled;          /* events read from the database to fill
                                       a gap in a group's sequence */
    uint64_t  dropped;              /* events not published or not handled
                                       (link down, buffer full, bad message) */
    char      host[CHAT_WIRE_HOST_LEN];
    char      server[CHAT_WIRE_SERVER_LEN];
    char      error[CHAT_WIRE_ERROR_LEN];
} chat_wire_cluster_t;


typedef struct {
    uint16_t  type;                 /* chat_wire_record_type_e */
    uint16_t  size;                 /* bytes on the wire, this header
                                       included: CHAT_WIRE_RECORD_SIZE() */
    uint32_t  pad1;
    uint64_t  timestamp_us;         /* wall clock, microseconds since epoch */
    union {
        chat_wire_request_t      request;
        chat_wire_ws_event_t     ws_event;
        chat_wire_ws_snapshot_t  ws_snapshot;
        chat_wire_custom_t       custom;
        chat_wire_cluster_t      cluster;
        uint8_t                  raw[304];
    } u;
} chat_wire_record_t;


typedef struct {
    uint32_t  magic;                /* CHAT_WIRE_MAGIC */
    uint16_t  version;              /* CHAT_WIRE_VERSION */
    uint16_t  record_size;          /* sizeof(chat_wire_record_t): the
                                       largest record */
    uint16_t  count;                /* records that follow */
    uint16_t  flags;                /* CHAT_BATCH_* */
    uint32_t  worker_pid;
    uint64_t  worker_start_us;      /* identifies one worker incarnation */
    uint64_t  batch_seq;            /* per worker: 1, 2, 3 ... */
    uint64_t  requests_recorded;    /* cumulative request records this
                                       worker produced, this batch included */
    uint64_t  records_dropped;      /* cumulative records this worker could
                                       not send (no reader, queue full) */
    uint64_t  requests_dropped;     /* the request records among them */
} chat_wire_batch_t;


_Static_assert(sizeof(chat_wire_request_t) == 232, "request record layout");
_Static_assert(sizeof(chat_wire_ws_event_t) == 104, "ws event layout");
_Static_assert(sizeof(chat_wire_ws_snapshot_t) == 40, "ws snapshot layout");
_Static_assert(sizeof(chat_wire_custom_t) == 300, "custom event layout");
_Static_assert(sizeof(chat_wire_cluster_t) == 272, "cluster link layout");
_Static_assert(sizeof(chat_wire_record_t) == 320, "record layout");
_Static_assert(offsetof(chat_wire_record_t, u) == 16, "record header");
_Static_assert(sizeof(chat_wire_batch_t) == 56, "batch header layout");
_Static_assert(offsetof(chat_wire_batch_t, batch_seq) == 24,
               "batch header layout");


_Static_assert(offsetof(chat_wire_request_t, text) == 24, "request text");


/* the largest batch of n records (every record whole) */
#define CHAT_WIRE_BATCH_SIZE(n)                                               \
    (sizeof(chat_wire_batch_t) + (size_t) (n) * sizeof(chat_wire_record_t))

/* a record's size on the wire: its 16-byte header and body bytes of its
 * body in use, rounded up to 8 */
#define CHAT_WIRE_RECORD_HEAD        16
#define CHAT_WIRE_RECORD_SIZE(body)                                           \
    ((CHAT_WIRE_RECORD_HEAD + (size_t) (body) + 7) & ~(size_t) 7)

/* a request record of these string lengths */
#define CHAT_WIRE_REQUEST_SIZE(method, endpoint, cid)                         \
    CHAT_WIRE_RECORD_SIZE(offsetof(chat_wire_request_t, text)                 \
                          + (size_t) (method) + (size_t) (endpoint)           \
                          + (size_t) (cid))


/*
 * For writers other than the module (tests, tools): a request record's
 * strings, each cut to its field, into r->u.request; sets the lengths and
 * r->size.
 */
static inline void
chat_wire_request_put(chat_wire_record_t *r, const char *method, size_t mlen,
    const char *endpoint, size_t elen, const char *cid, size_t clen)
{
    chat_wire_request_t  *q = &r->u.request;

    mlen = mlen < CHAT_WIRE_METHOD_LEN ? mlen : CHAT_WIRE_METHOD_LEN;
    elen = elen < CHAT_WIRE_ENDPOINT_LEN ? elen : CHAT_WIRE_ENDPOINT_LEN;
    clen = clen < CHAT_WIRE_CID_LEN ? clen : CHAT_WIRE_CID_LEN;

    __builtin_memcpy(q->text, method, mlen);
    __builtin_memcpy(q->text + mlen, endpoint, elen);
    __builtin_memcpy(q->text + mlen + elen, cid, clen);

    q->method_len = (uint8_t) mlen;
    q->endpoint_len = (uint8_t) elen;
    q->cid_len = (uint8_t) clen;

    r->size = (uint16_t) CHAT_WIRE_REQUEST_SIZE(mlen, elen, clen);
}


/*
 * chat_wire_batch_check() validates a received buffer: returns the record
 * count, or -1 when it is not a well-formed batch of this version: a bad
 * header, or record sizes that are not multiples of 8 from 16 to
 * sizeof(chat_wire_record_t) adding up exactly to the buffer's length.
 */
static inline int
chat_wire_batch_check(const void *buf, size_t len)
{
    chat_wire_batch_t  hdr;
    const uint8_t     *p = (const uint8_t *) buf;
    size_t             off;
    uint16_t           size;
    unsigned           i;

    if (len < sizeof(chat_wire_batch_t)) {
        return -1;
    }

    __builtin_memcpy(&hdr, buf, sizeof(hdr));

    if (hdr.magic != CHAT_WIRE_MAGIC
        || hdr.version != CHAT_WIRE_VERSION
        || hdr.record_size != sizeof(chat_wire_record_t)
        || hdr.count > CHAT_WIRE_MAX_RECORDS
        || len > CHAT_WIRE_BATCH_SIZE(hdr.count))
    {
        return -1;
    }

    off = sizeof(chat_wire_batch_t);

    for (i = 0; i < hdr.count; i++) {
        if (len - off < CHAT_WIRE_RECORD_HEAD) {
            return -1;
        }

        __builtin_memcpy(&size, p + off + 2, sizeof(size));

        if (size < CHAT_WIRE_RECORD_HEAD
            || size > sizeof(chat_wire_record_t)
            || (size & 7) != 0
            || size > len - off)
        {
            return -1;
        }

        off += size;
    }

    return off == len ? (int) hdr.count : -1;
}


#endif /* CHAT_WIRE_H */
