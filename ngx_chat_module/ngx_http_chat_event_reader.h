/*
 * ngx_http_chat_event_reader.h - reading a group's event log by _id
 * (ngx_http_chat_event_reader.c): the states of a seq, the buckets, the
 * reader the walks of ngx_http_chat_event_log.c use.  Pool thread only.
 */

#ifndef _NGX_HTTP_CHAT_EVENT_READER_H_INCLUDED_
#define _NGX_HTTP_CHAT_EVENT_READER_H_INCLUDED_


#include <mongoc/mongoc.h>
#include <cjson/cJSON.h>

#include "ngx_http_chat_storage.h"


/*
 * The bounds of a walk of the log (see ngx_http_chat_op_list_events()).
 * A seq is settled 2 chat_db_timeouts after it was taken: its claim, then
 * its event's write, each bounded by chat_db_timeout (the client's socket
 * and selection timeouts), follow the $inc at once on the same thread.
 * Every subscriber of the group waits that long for a seq whose taker
 * died (a worker killed between the claim and the write).
 */
#define NGX_HTTP_CHAT_SEQ_SETTLE           2
#define NGX_HTTP_CHAT_WALK_SLACK           64
#define NGX_HTTP_CHAT_TAIL                 1024


typedef enum {
    NGX_HTTP_CHAT_EV_MISSING = 0,
    NGX_HTTP_CHAT_EV_PENDING,
    NGX_HTTP_CHAT_EV_GAP,
    NGX_HTTP_CHAT_EV_CREATED,
    NGX_HTTP_CHAT_EV_DELETED
} ngx_http_chat_ev_e;


typedef struct {
    ngx_http_chat_ev_e   state;
    int64_t              at;             /* the claim's time (ms), or 0 */
    bson_oid_t           mid;
    bson_t              *msg;            /* CREATED: the message as sent */
} ngx_http_chat_ev_t;


#define NGX_HTTP_CHAT_BUCKET       16
#define NGX_HTTP_CHAT_BUCKET_FULL  0xffff


typedef struct {
    ngx_http_chat_op_t   *op;
    mongoc_collection_t  *seqs;
    mongoc_collection_t  *messages;
    int64_t               cur;           /* the group's seq */
    int64_t               young;         /* settle: later than this (ms) */
    int64_t               k;             /* the bucket in slots, or -1 */
    ngx_uint_t            sealed;        /* slots from its document */
    uint32_t              resolved;      /* else: the slots resolved */
    ngx_http_chat_ev_t    slots[NGX_HTTP_CHAT_BUCKET];

    bson_oid_t           *deleted;       /* messages seen deleted */
    ngx_uint_t            ndeleted;
    ngx_uint_t            nalloc;
} ngx_http_chat_log_t;


ngx_int_t ngx_http_chat_event_resolve(ngx_http_chat_op_t *op,
    mongoc_collection_t *seqs, mongoc_collection_t *messages, int64_t seq,
    ngx_http_chat_ev_t *ev);
void ngx_http_chat_event_free(ngx_http_chat_ev_t *ev);
void ngx_http_chat_log_init(ngx_http_chat_log_t *log, ngx_http_chat_op_t *op,
    mongoc_client_t *client, int64_t cur);
void ngx_http_chat_log_clear(ngx_http_chat_log_t *log);
void ngx_http_chat_log_done(ngx_http_chat_log_t *log);
ngx_int_t ngx_http_chat_log_load(ngx_http_chat_log_t *log, int64_t k);
ngx_int_t ngx_http_chat_log_void(ngx_http_chat_log_t *log, int64_t from,
    int64_t to);
void ngx_http_chat_log_seal(ngx_http_chat_log_t *log);
ngx_int_t ngx_http_chat_log_at(ngx_http_chat_log_t *log, int64_t seq,
    ngx_http_chat_ev_t **ev);
ngx_int_t ngx_http_chat_log_add_deleted(ngx_http_chat_log_t *log,
    const bson_oid_t *mid);
ngx_uint_t ngx_http_chat_log_is_deleted(ngx_http_chat_log_t *log,
    const bson_oid_t *mid);
cJSON *ngx_http_chat_log_render(const ngx_http_chat_ev_t *ev,
    ngx_uint_t deleted);


#endif /* _NGX_HTTP_CHAT_EVENT_READER_H_INCLUDED_ */
