/*
 * records.h - a wire batch after decoding: the form the collector stores.
 *
 * ingest.c turns a chat_wire_batch_t buffer into a coll_batch_t: lengths
 * clamped to the field sizes, strings NUL-terminated and made printable
 * UTF-8, so that nothing downstream (JSON, Prometheus labels) ever sees
 * raw wire bytes.
 *
 * A request record, nearly every record, is the exception: it is kept as
 * received (coll_request_raw_t: its lengths clamped to the fields and to
 * the record, its bytes not yet looked at) and stored so in the
 * collector's rings, because most of them are overwritten unread.  Its
 * strings are made printable where they are read: the endpoint name when
 * the endpoint table admits a new row (endpoints.c), the whole request when
 * a snapshot expands the retained rows into coll_request_t
 * (coll_request_expand(), records.c).  Nothing downstream of the collector
 * sees raw bytes either way.
 */

#ifndef SIDECAR_RECORDS_H
#define SIDECAR_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "wire/chat_wire.h"

#define COLL_METHOD_SZ    (CHAT_WIRE_METHOD_LEN + 1)
#define COLL_PATH_SZ      (CHAT_WIRE_ENDPOINT_LEN + 1)
/* "METHOD path": the method, a space, the wire endpoint, NUL */
#define COLL_ENDPOINT_SZ                                                   \
    (CHAT_WIRE_METHOD_LEN + 1 + CHAT_WIRE_ENDPOINT_LEN + 1)
#define COLL_CID_SZ       (CHAT_WIRE_CID_LEN + 1)
#define COLL_GROUP_SZ     (CHAT_WIRE_GROUP_ID_LEN + 1)
#define COLL_USER_SZ      (CHAT_WIRE_USER_ID_LEN + 1)
#define COLL_TYPE_SZ      (CHAT_WIRE_EVENT_TYPE_LEN + 1)
#define COLL_KEY_SZ       (CHAT_WIRE_KEY_LEN + 1)
#define COLL_VALUE_SZ     (CHAT_WIRE_VALUE_LEN + 1)
#define COLL_HOST_SZ      (CHAT_WIRE_HOST_LEN + 1)
#define COLL_SERVER_SZ    (CHAT_WIRE_SERVER_LEN + 1)
#define COLL_ERROR_SZ     (CHAT_WIRE_ERROR_LEN + 1)


/* a request as rendered: what a snapshot holds (coll_request_expand()) */
typedef struct {
    uint64_t  ts_us;                    /* worker's wall clock */
    uint32_t  duration_us;
    uint16_t  status;
    uint8_t   very_slow;                /* set by the collector */
    char      method[COLL_METHOD_SZ];   /* "GET" */
    char      path[COLL_PATH_SZ];       /* "/api/chat/groups" */
    char      endpoint[COLL_ENDPOINT_SZ];  /* "GET /api/chat/groups" */
    char      cid[COLL_CID_SZ];
} coll_request_t;


/*
 * A request as received, and as the collector's rings keep it: the wire's
 * method, endpoint and correlation ID back to back in text[], their bytes
 * unchecked (not NUL-terminated, possibly not printable), their lengths
 * within the wire's fields (method_len <= CHAT_WIRE_METHOD_LEN, ...), so
 * text[] always holds them.  Only COLL_REQUEST_RAW_USED() bytes of it are
 * meaningful (and copied).
 */
typedef struct {
    uint64_t  ts_us;                    /* worker's wall clock */
    uint32_t  duration_us;
    uint16_t  status;
    uint8_t   very_slow;                /* set by the collector */
    uint8_t   method_len;
    uint8_t   endpoint_len;
    uint8_t   cid_len;
    char      text[CHAT_WIRE_METHOD_LEN + CHAT_WIRE_ENDPOINT_LEN
                   + CHAT_WIRE_CID_LEN];
} coll_request_raw_t;

#define COLL_REQUEST_RAW_USED(r)                                           \
    (offsetof(coll_request_raw_t, text) + (size_t) (r)->method_len          \
     + (r)->endpoint_len + (r)->cid_len)


typedef struct {
    uint64_t  ts_us;
    uint8_t   connected;                /* 1 connected, 0 disconnected */
    uint32_t  worker_count;             /* the worker's count, from wire */
    uint64_t  connection_count;         /* all live workers, set by the
                                           collector after applying */
    char      group_id[COLL_GROUP_SZ];
    char      user_id[COLL_USER_SZ];
} coll_ws_event_t;


typedef struct {
    char      group_id[COLL_GROUP_SZ];
    uint64_t  count;    /* a worker's is the wire's u32; a snapshot's row
                           sums the workers' (the fuzzer found a u32 sum
                           wrap below the u64 total) */
} coll_ws_count_t;


typedef struct {
    char      key[COLL_KEY_SZ];
    char      value[COLL_VALUE_SZ];
} coll_kv_t;


typedef struct {
    uint64_t   ts_us;
    uint8_t    nkv;
    char       type[COLL_TYPE_SZ];
    coll_kv_t  kv[CHAT_WIRE_KV_MAX];
} coll_custom_t;


/* a worker's cluster link (CHAT_REC_CLUSTER): the latest replaces the
   worker's previous one; the counters are the worker's cumulative ones */
typedef struct {
    uint64_t  ts_us;
    uint8_t   state;                    /* chat_wire_cluster_state_e */
    uint64_t  reconnects;
    uint64_t  events_out;
    uint64_t  events_in;
    uint64_t  gaps_filled;
    uint64_t  dropped;
    char      host[COLL_HOST_SZ];
    char      server[COLL_SERVER_SZ];
    char      error[COLL_ERROR_SZ];
} coll_cluster_t;


typedef struct {
    int  type;                          /* chat_wire_record_type_e */
    union {
        coll_request_raw_t  request;
        coll_ws_event_t  ws_event;
        coll_ws_count_t  ws_count;
        coll_custom_t    custom;
        coll_cluster_t   cluster;
    } u;
} coll_record_t;


typedef struct {
    uint32_t       worker_pid;
    uint64_t       worker_start_us;
    uint64_t       batch_seq;
    uint64_t       requests_recorded;
    uint64_t       records_dropped;
    uint64_t       requests_dropped;
    int            snapshot;            /* CHAT_BATCH_SNAPSHOT was set */
    int            snapshot_cont;       /* a later part of a snapshot */
    uint32_t       invalid;             /* records skipped: unknown type or
                                           event */
    uint32_t       count;
    coll_record_t  rec[CHAT_WIRE_MAX_RECORDS];
} coll_batch_t;


/*
 * Copies len bytes of src (at most dstsz - 1) to dst, replacing control
 * bytes and invalid UTF-8 with '?' byte for byte: the result, the same
 * length, goes verbatim into JSON and Prometheus label values; it is
 * NUL-terminated and its length is returned.  Printable ASCII and valid
 * UTF-8 come out unchanged, so cleaning clean text changes nothing.
 */
size_t coll_text_clean(char *dst, size_t dstsz, const char *src, size_t len);

/*
 * The request as rendered: its strings cleaned; "METHOD path" as the
 * endpoint, from the wire's endpoint (which nginx sends with its method)
 * or built from a bare path.
 */
void coll_request_expand(const coll_request_raw_t *in, coll_request_t *out);

/* n bytes of a and b equal: eight at a time, the tail as the last eight
   (short keys are compared on every request; no call, no over-read) */
static inline int
coll_bytes_eq(const char *a, const char *b, size_t n)
{
    uint64_t  x, y;
    size_t    i;

    if (n < 8) {
        for (i = 0; i < n; i++) {
            if (a[i] != b[i]) {
                return 0;
            }
        }
        return 1;
    }

    for (i = 0; i + 8 < n; i += 8) {
        __builtin_memcpy(&x, a + i, 8);
        __builtin_memcpy(&y, b + i, 8);
        if (x != y) {
            return 0;
        }
    }

    __builtin_memcpy(&x, a + n - 8, 8);
    __builtin_memcpy(&y, b + n - 8, 8);
    return x == y;
}


const char *coll_request_key_slow(const coll_request_raw_t *r, char *buf,
    size_t *len);

/*
 * The endpoint table's key of a request, not yet cleaned (endpoints.c
 * cleans a key it does not know): the wire's endpoint itself when it
 * starts with the method and a space (what nginx sends), else the
 * expanded "METHOD path", written to buf (COLL_ENDPOINT_SZ bytes).
 *
 * The wire's endpoint is the key when its first method_len + 1 bytes are
 * the method and a space: cleaning keeps every byte's place and a space
 * ends any UTF-8 sequence, so the expanded request passes the same test
 * and its endpoint is this one cleaned.  Any other request (a bare path;
 * bytes that only match once cleaned) takes the expansion's own answer.
 */
static inline const char *
coll_request_key(const coll_request_raw_t *r, char *buf, size_t *len)
{
    size_t       m = r->method_len, e = r->endpoint_len;
    const char  *t = r->text;

    if (m > 0 && e > m && t[m + m] == ' ' && coll_bytes_eq(t, t + m, m)) {
        *len = e;
        return t + m;
    }

    return coll_request_key_slow(r, buf, len);
}

/* sets a request's strings from C strings (tests and tools), each cut to
   its wire field */
void coll_request_raw_set(coll_request_raw_t *r, const char *method,
    const char *endpoint, const char *cid);

#endif /* SIDECAR_RECORDS_H */
