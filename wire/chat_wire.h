/*
 * chat_wire.h - the metrics record that travels from nginx workers to the
 * sidecar over nng (PUSH -> PULL).  This is the ONE definition of the wire
 * format: ngx_chat_module writes it, the sidecar reads it.
 *
 * A message on the wire is one batch:
 *
 *     chat_wire_batch_t  header (fixed size)
 *     chat_wire_record_t records[header.count]  (fixed size each)
 *
 * Records are fixed-size so that decoding is a bounds check and a cast-free
 * memcpy, never a parser.  Strings are NUL-padded byte arrays with an
 * explicit length; a reader must use the length and must not trust the
 * padding.  All integers are in host byte order: both ends run on the same
 * machine (ipc:// or tcp://127.0.0.1).
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
#define CHAT_WIRE_VERSION            3

/* a batch never carries more records than this; a full batch is flushed */
#define CHAT_WIRE_MAX_RECORDS        128

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
    uint8_t   method_len;
    uint8_t   endpoint_len;
    uint8_t   cid_len;
    uint8_t   pad0;
    uint16_t  status;
    uint16_t  pad1;
    uint32_t  duration_us;          /* request start to log phase */
    uint32_t  pad2;
    uint64_t  bytes_sent;
    char      method[CHAT_WIRE_METHOD_LEN];
    char      endpoint[CHAT_WIRE_ENDPOINT_LEN];  /* "GET /api/chat/groups" */
    char      correlation_id[CHAT_WIRE_CID_LEN];
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
    uint16_t  pad0;
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
    uint16_t  record_size;          /* sizeof(chat_wire_record_t) */
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


/* total size of a batch of n records */
#define CHAT_WIRE_BATCH_SIZE(n)                                               \
    (sizeof(chat_wire_batch_t) + (size_t) (n) * sizeof(chat_wire_record_t))


/*
 * chat_wire_batch_check() validates a received buffer: returns the record
 * count, or -1 when it is not a well-formed batch of this version.
 */
static inline int
chat_wire_batch_check(const void *buf, size_t len)
{
    chat_wire_batch_t  hdr;

    if (len < sizeof(chat_wire_batch_t)) {
        return -1;
    }

    __builtin_memcpy(&hdr, buf, sizeof(hdr));

    if (hdr.magic != CHAT_WIRE_MAGIC
        || hdr.version != CHAT_WIRE_VERSION
        || hdr.record_size != sizeof(chat_wire_record_t)
        || hdr.count > CHAT_WIRE_MAX_RECORDS
        || len != CHAT_WIRE_BATCH_SIZE(hdr.count))
    {
        return -1;
    }

    return hdr.count;
}


#endif /* CHAT_WIRE_H */
