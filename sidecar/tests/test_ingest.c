/*
 * test_ingest.c - wire batch validation and decoding: malformed batches
 * are rejected, lengths clamped, strings made safe.
 */

#include <stdlib.h>
#include <string.h>

#include "sidecar/ingest.h"
#include "unit.h"


typedef struct {
    chat_wire_batch_t   hdr;
    chat_wire_record_t  rec[CHAT_WIRE_MAX_RECORDS];
} wire_t;


/* whole records (size = sizeof), always valid; packed ones below */

/* a decoded request as a snapshot renders it (records.h: decoding keeps
   its bytes as they came) */
static const coll_request_t *
REQ(const coll_batch_t *b, int i)
{
    static coll_request_t  x[8];

    coll_request_expand(&b->rec[i].u.request, &x[i]);
    return &x[i];
}

static wire_t *
wire_new(uint16_t count)
{
    wire_t    *w = calloc(1, sizeof(*w));
    unsigned   i;

    for (i = 0; i < CHAT_WIRE_MAX_RECORDS; i++) {
        w->rec[i].size = sizeof(chat_wire_record_t);
    }

    w->hdr.magic = CHAT_WIRE_MAGIC;
    w->hdr.version = CHAT_WIRE_VERSION;
    w->hdr.record_size = sizeof(chat_wire_record_t);
    w->hdr.count = count;
    w->hdr.worker_pid = 4242;
    w->hdr.worker_start_us = 1;
    w->hdr.batch_seq = 1;
    return w;
}


static size_t
wire_len(const wire_t *w)
{
    return CHAT_WIRE_BATCH_SIZE(w->hdr.count);
}


static void
wire_req(chat_wire_record_t *r, const char *method, const char *endpoint,
    uint16_t status)
{
    r->type = CHAT_REC_REQUEST;
    r->timestamp_us = 1762691696789000ull;
    r->u.request.status = status;
    r->u.request.duration_us = 1234;
    chat_wire_request_put(r, method, strlen(method), endpoint,
                          strlen(endpoint), "abc", 3);
    r->size = sizeof(*r);
}


static void
ingest_decodes_a_well_formed_batch(void)
{
    wire_t        *w = wire_new(3);
    coll_batch_t  *b = malloc(sizeof(*b));

    w->hdr.flags = CHAT_BATCH_SNAPSHOT;
    w->hdr.batch_seq = 9;
    w->hdr.requests_recorded = 100;
    w->hdr.records_dropped = 3;
    w->hdr.requests_dropped = 2;
    wire_req(&w->rec[0], "GET", "GET /api/chat/groups", 200);

    w->rec[1].type = CHAT_REC_WS_EVENT;
    w->rec[1].u.ws_event.event = CHAT_WS_CONNECTED;
    w->rec[1].u.ws_event.worker_group_count = 2;
    w->rec[1].u.ws_event.group_id_len = 24;
    memcpy(w->rec[1].u.ws_event.group_id, "507f1f77bcf86cd799439011", 24);
    w->rec[1].u.ws_event.user_id_len = 2;
    memcpy(w->rec[1].u.ws_event.user_id, "u7", 2);

    w->rec[2].type = CHAT_REC_WS_SNAPSHOT;
    w->rec[2].u.ws_snapshot.group_id_len = 2;
    memcpy(w->rec[2].u.ws_snapshot.group_id, "g1", 2);
    w->rec[2].u.ws_snapshot.connection_count = 5;

    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    CHECK(b->count == 3 && b->invalid == 0);
    CHECK(b->snapshot == 1);
    CHECK(b->worker_pid == 4242 && b->batch_seq == 9);
    CHECK(b->requests_recorded == 100 && b->records_dropped == 3
          && b->requests_dropped == 2);
    CHECK(strcmp(REQ(b, 0)->endpoint, "GET /api/chat/groups") == 0);
    CHECK(strcmp(REQ(b, 0)->path, "/api/chat/groups") == 0);
    CHECK(strcmp(REQ(b, 0)->method, "GET") == 0);
    CHECK(strcmp(REQ(b, 0)->cid, "abc") == 0);
    CHECK(REQ(b, 0)->ts_us == 1762691696789000ull);
    CHECK(b->rec[1].u.ws_event.connected == 1);
    CHECK(strcmp(b->rec[1].u.ws_event.group_id,
                 "507f1f77bcf86cd799439011") == 0);
    CHECK(b->rec[2].u.ws_count.count == 5);

    /* a heartbeat: zero records */
    w->hdr.count = 0;
    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    CHECK(b->count == 0 && b->snapshot == 1);

    free(w);
    free(b);
}


static void
ingest_rejects_malformed_batches(void)
{
    wire_t        *w = wire_new(2);
    coll_batch_t  *b = malloc(sizeof(*b));
    size_t         len = wire_len(w);

    wire_req(&w->rec[0], "GET", "/a", 200);
    wire_req(&w->rec[1], "GET", "/a", 200);
    CHECK(ingest_decode(w, len, b) == 0);

    CHECK(ingest_decode(w, 0, b) == -1);
    CHECK(ingest_decode(w, sizeof(chat_wire_batch_t) - 1, b) == -1);
    CHECK(ingest_decode(w, len - 1, b) == -1);          /* truncated */
    CHECK(ingest_decode(w, len + 320, b) == -1);        /* count short */

    w->hdr.magic ^= 1;
    CHECK(ingest_decode(w, len, b) == -1);
    w->hdr.magic ^= 1;

    w->hdr.version = CHAT_WIRE_VERSION + 1;
    CHECK(ingest_decode(w, len, b) == -1);
    w->hdr.version = CHAT_WIRE_VERSION;

    w->hdr.record_size = 300;
    CHECK(ingest_decode(w, len, b) == -1);
    w->hdr.record_size = sizeof(chat_wire_record_t);

    w->hdr.count = CHAT_WIRE_MAX_RECORDS + 1;
    CHECK(ingest_decode(w, CHAT_WIRE_BATCH_SIZE(CHAT_WIRE_MAX_RECORDS + 1),
                        b) == -1);
    w->hdr.count = 2;

    w->hdr.worker_pid = 0;
    CHECK(ingest_decode(w, len, b) == -1);
    w->hdr.worker_pid = 1;

    w->hdr.batch_seq = 0;
    CHECK(ingest_decode(w, len, b) == -1);

    free(w);
    free(b);
}


static void
ingest_clamps_lengths_to_the_field_sizes(void)
{
    wire_t        *w = wire_new(2);
    coll_batch_t  *b = malloc(sizeof(*b));

    wire_req(&w->rec[0], "GET", "/x", 200);
    memset(w->rec[0].u.request.text + 3, 'a',
           sizeof(w->rec[0].u.request.text) - 3);
    w->rec[0].u.request.endpoint_len = 255;         /* lies */
    w->rec[0].u.request.cid_len = 255;              /* past the record */

    w->rec[1].type = CHAT_REC_CUSTOM;
    w->rec[1].u.custom.kv_count = 9;                /* > 4 */
    w->rec[1].u.custom.event_type_len = 255;
    memset(w->rec[1].u.custom.event_type, 't', CHAT_WIRE_EVENT_TYPE_LEN);
    w->rec[1].u.custom.kv[3].key_len = 255;
    memset(w->rec[1].u.custom.kv[3].key, 'k', CHAT_WIRE_KEY_LEN);

    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    CHECK(strlen(REQ(b, 0)->path) == CHAT_WIRE_ENDPOINT_LEN);
    CHECK(strlen(REQ(b, 0)->method) <= CHAT_WIRE_METHOD_LEN);
    CHECK(strlen(REQ(b, 0)->cid) <= CHAT_WIRE_CID_LEN);
    CHECK(strlen(REQ(b, 0)->endpoint) < COLL_ENDPOINT_SZ);

    /* lengths past the record's bytes are cut to them */
    wire_req(&w->rec[0], "GET", "GET /x", 200);
    w->rec[0].u.request.method_len = 255;
    w->rec[0].u.request.endpoint_len = 255;
    w->rec[0].u.request.cid_len = 255;
    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    CHECK(strlen(REQ(b, 0)->method) <= CHAT_WIRE_METHOD_LEN);
    CHECK(strlen(REQ(b, 0)->path) <= CHAT_WIRE_ENDPOINT_LEN);
    CHECK(REQ(b, 0)->cid[0] == '\0');
    CHECK(b->rec[1].u.custom.nkv == CHAT_WIRE_KV_MAX);
    CHECK(strlen(b->rec[1].u.custom.type) == CHAT_WIRE_EVENT_TYPE_LEN);
    CHECK(strlen(b->rec[1].u.custom.kv[3].key) == CHAT_WIRE_KEY_LEN);

    free(w);
    free(b);
}


/* what the module sends: request records as long as their strings */
static void
ingest_decodes_packed_records(void)
{
    unsigned char        buf[CHAT_WIRE_BATCH_SIZE(3)];
    chat_wire_batch_t    hdr;
    chat_wire_record_t   r;
    coll_batch_t        *b = malloc(sizeof(*b));
    size_t               off, first;
    uint16_t             bad;

    memset(&hdr, 0, sizeof(hdr));
    hdr.magic = CHAT_WIRE_MAGIC;
    hdr.version = CHAT_WIRE_VERSION;
    hdr.record_size = sizeof(chat_wire_record_t);
    hdr.count = 3;
    hdr.worker_pid = 7;
    hdr.batch_seq = 1;
    memcpy(buf, &hdr, sizeof(hdr));
    off = sizeof(hdr);

    memset(&r, 0, sizeof(r));
    r.type = CHAT_REC_REQUEST;
    chat_wire_request_put(&r, "GET", 3, "GET /", 5,
                          "0f3c1a2b-4d5e-4f60-8a7b-000000000001", 36);
    CHECK(r.size == 88);                    /* 16 + 24 + 44, rounded to 8 */
    memcpy(buf + off, &r, r.size);
    first = off;
    off += r.size;

    memset(&r, 0, sizeof(r));
    r.type = CHAT_REC_WS_SNAPSHOT;
    r.size = CHAT_WIRE_RECORD_SIZE(sizeof(chat_wire_ws_snapshot_t));
    r.u.ws_snapshot.group_id_len = 2;
    memcpy(r.u.ws_snapshot.group_id, "g1", 2);
    r.u.ws_snapshot.connection_count = 4;
    memcpy(buf + off, &r, r.size);
    off += r.size;

    /* a request record cut to its header: empty strings */
    memset(&r, 0, sizeof(r));
    r.type = CHAT_REC_REQUEST;
    r.size = CHAT_WIRE_RECORD_HEAD;
    memcpy(buf + off, &r, r.size);
    off += r.size;

    CHECK(ingest_decode(buf, off, b) == 0);
    CHECK(b->count == 3 && b->invalid == 0);
    CHECK(strcmp(REQ(b, 0)->endpoint, "GET /") == 0);
    CHECK(strcmp(REQ(b, 0)->path, "/") == 0);
    CHECK(strcmp(REQ(b, 0)->cid,
                 "0f3c1a2b-4d5e-4f60-8a7b-000000000001") == 0);
    CHECK(strcmp(b->rec[1].u.ws_count.group_id, "g1") == 0
          && b->rec[1].u.ws_count.count == 4);
    CHECK(REQ(b, 2)->path[0] == '\0'
          && REQ(b, 2)->cid[0] == '\0');

    /* sizes must add up to the length, each a multiple of 8 in 16-320 */
    CHECK(ingest_decode(buf, off - 8, b) == -1);
    CHECK(ingest_decode(buf, off + 8, b) == -1);
    memcpy(&bad, buf + first + 2, 2);
    bad += 1;
    memcpy(buf + first + 2, &bad, 2);
    CHECK(ingest_decode(buf, off, b) == -1);
    bad = 8;
    memcpy(buf + first + 2, &bad, 2);
    CHECK(ingest_decode(buf, off, b) == -1);
    bad = sizeof(chat_wire_record_t) + 8;
    memcpy(buf + first + 2, &bad, 2);
    CHECK(ingest_decode(buf, off, b) == -1);

    free(b);
}


static void
ingest_makes_strings_printable_utf8(void)
{
    wire_t        *w = wire_new(1);
    coll_batch_t  *b = malloc(sizeof(*b));
    const char     ep[] = "/a\"b\n\x01\xff/\xc3\xa9t\xe2\x82";

    wire_req(&w->rec[0], "GET", ep, 200);
    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    /* quote kept (JSON escapes it), controls and broken UTF-8 -> '?',
       the valid "é" kept, the truncated 3-byte sequence replaced */
    CHECK(strcmp(REQ(b, 0)->path, "/a\"b??" "?/\xc3\xa9t??") == 0);

    /* printable ASCII goes eight bytes at a time, the tail as the last
       eight: a control byte anywhere is still found */
    wire_req(&w->rec[0], "GET", "/abcdefg\x01" "jk", 200);
    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    CHECK(strcmp(REQ(b, 0)->path, "/abcdefg?jk") == 0);
    wire_req(&w->rec[0], "GET", "/a\x02" "cdefghijklmnopq", 200);
    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    CHECK(strcmp(REQ(b, 0)->path, "/a?cdefghijklmnopq") == 0);
    wire_req(&w->rec[0], "GET", "/abcdefghijklmno\x7f", 200);
    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    CHECK(strcmp(REQ(b, 0)->path, "/abcdefghijklmno?") == 0);

    free(w);
    free(b);
}


static void
ingest_skips_unknown_record_types_and_events(void)
{
    wire_t        *w = wire_new(4);
    coll_batch_t  *b = malloc(sizeof(*b));

    wire_req(&w->rec[0], "GET", "/a", 200);
    w->rec[1].type = 99;
    w->rec[2].type = CHAT_REC_WS_EVENT;
    w->rec[2].u.ws_event.event = 7;
    wire_req(&w->rec[3], "GET", "/b", 200);

    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    CHECK(b->count == 2);
    CHECK(b->invalid == 2);
    CHECK(strcmp(REQ(b, 1)->path, "/b") == 0);

    free(w);
    free(b);
}


static void
ingest_accepts_endpoint_with_or_without_method(void)
{
    wire_t        *w = wire_new(3);
    coll_batch_t  *b = malloc(sizeof(*b));

    wire_req(&w->rec[0], "DELETE", "DELETE /api/chat/groups/1", 204);
    wire_req(&w->rec[1], "GET", "/api/chat/groups", 200);
    wire_req(&w->rec[2], "GET", "GETX /odd", 200);

    CHECK(ingest_decode(w, wire_len(w), b) == 0);
    CHECK(strcmp(REQ(b, 0)->endpoint,
                 "DELETE /api/chat/groups/1") == 0);
    CHECK(strcmp(REQ(b, 0)->path, "/api/chat/groups/1") == 0);
    CHECK(strcmp(REQ(b, 1)->endpoint, "GET /api/chat/groups") == 0);
    CHECK(strcmp(REQ(b, 1)->path, "/api/chat/groups") == 0);
    CHECK(strcmp(REQ(b, 2)->endpoint, "GET GETX /odd") == 0);

    free(w);
    free(b);
}


static void
ingest_rejected_batch_is_counted_by_the_collector(void)
{
    coll_config_t     cfg;
    collector_t      *c;
    coll_snapshot_t  *s;
    char              junk[100];

    memset(junk, 0x5a, sizeof(junk));
    collector_config_defaults(&cfg);
    c = collector_create(&cfg, 1, 1);

    if (ingest_decode(junk, sizeof(junk), NULL) != 0) {
        collector_reject(c);
    }
    s = collector_snapshot(c, 2, 2);
    CHECK(s->n.batches_rejected == 1);
    CHECK(s->n.batches_applied == 0);
    collector_snapshot_free(s);
    collector_free(c);
}


void
suite_ingest(void)
{
    RUN(ingest_decodes_a_well_formed_batch);
    RUN(ingest_rejects_malformed_batches);
    RUN(ingest_clamps_lengths_to_the_field_sizes);
    RUN(ingest_decodes_packed_records);
    RUN(ingest_makes_strings_printable_utf8);
    RUN(ingest_skips_unknown_record_types_and_events);
    RUN(ingest_accepts_endpoint_with_or_without_method);
    RUN(ingest_rejected_batch_is_counted_by_the_collector);
}
