/*
 * records.h - a wire batch after decoding: the form the collector stores.
 *
 * ingest.c turns a chat_wire_batch_t buffer into a coll_batch_t: lengths
 * clamped to the field sizes, strings NUL-terminated and made printable
 * UTF-8, so that nothing downstream (JSON, Prometheus labels) ever sees
 * raw wire bytes.
 */

#ifndef SIDECAR_RECORDS_H
#define SIDECAR_RECORDS_H

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
        coll_request_t   request;
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

#endif /* SIDECAR_RECORDS_H */
