/*
 * ngx_http_chat_render.c - the chat's JSON shapes.  See the header.
 *
 * Times are ISO-8601 UTC with milliseconds and "Z"; ids are ObjectIds in
 * hex.  A field a document lacks is left out, never invented.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_chat_render.h"


#define ngx_http_chat_render_lit(p, s)  ngx_cpymem(p, s, sizeof(s) - 1)


static void ngx_http_chat_render_field(cJSON *o, const bson_t *doc,
    const char *field, const char *key);
static void ngx_http_chat_render_time(cJSON *o, const char *key, int64_t ms);
static void ngx_http_chat_render_oid(cJSON *o, const char *key,
    const bson_oid_t *oid);
static void ngx_http_chat_render_seq(cJSON *o, int64_t seq);
static char *ngx_http_chat_render_print(cJSON *json);


cJSON *
ngx_http_chat_render_group(const bson_t *doc)
{
    cJSON  *o;

    o = cJSON_CreateObject();

    ngx_http_chat_render_field(o, doc, "_id", "id");
    ngx_http_chat_render_field(o, doc, "name", "name");
    ngx_http_chat_render_field(o, doc, "created_at", "created_at");
    ngx_http_chat_render_field(o, doc, "created_by", "created_by");

    return o;
}


cJSON *
ngx_http_chat_render_message(const bson_t *doc)
{
    cJSON        *o;
    bson_iter_t   it;

    o = cJSON_CreateObject();

    ngx_http_chat_render_field(o, doc, "_id", "id");
    ngx_http_chat_render_field(o, doc, "group_id", "group_id");
    ngx_http_chat_render_field(o, doc, "user_id", "user_id");

    /* a message deleted since it was sent keeps its place, not its text */

    if (bson_iter_init_find(&it, doc, "is_deleted")
        && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it))
    {
        cJSON_AddBoolToObject(o, "is_deleted", 1);

    } else {
        ngx_http_chat_render_field(o, doc, "content", "content");
    }

    ngx_http_chat_render_field(o, doc, "created_at", "created_at");
    ngx_http_chat_render_field(o, doc, "seq", "seq");

    return o;
}


cJSON *
ngx_http_chat_render_deleted(const bson_oid_t *message_id,
    const bson_oid_t *group_id, int64_t deleted_at_ms, int64_t seq)
{
    cJSON  *o;

    o = cJSON_CreateObject();

    ngx_http_chat_render_oid(o, "id", message_id);
    ngx_http_chat_render_oid(o, "group_id", group_id);
    cJSON_AddBoolToObject(o, "is_deleted", 1);
    ngx_http_chat_render_time(o, "deleted_at", deleted_at_ms);
    ngx_http_chat_render_seq(o, seq);

    return o;
}


cJSON *
ngx_http_chat_render_page(const char *items_key, const bson_oid_t *group_id,
    cJSON **list)
{
    cJSON  *o;

    o = cJSON_CreateObject();

    if (group_id) {
        ngx_http_chat_render_oid(o, "group_id", group_id);
    }

    *list = cJSON_AddArrayToObject(o, items_key);

    return o;
}


void
ngx_http_chat_render_paging(cJSON *page, int64_t number, int64_t limit,
    ngx_uint_t has_more)
{
    cJSON_AddNumberToObject(page, "page", (double) number);
    cJSON_AddNumberToObject(page, "limit", (double) limit);
    cJSON_AddBoolToObject(page, "has_more", has_more);
}


void
ngx_http_chat_render_next_before(cJSON *page, const bson_oid_t *id)
{
    if (id) {
        ngx_http_chat_render_oid(page, "next_before", id);

    } else {
        cJSON_AddNullToObject(page, "next_before");
    }
}


void
ngx_http_chat_render_next_after(cJSON *page, int64_t seq)
{
    if (seq >= 0) {
        cJSON_AddNumberToObject(page, "next_after", (double) seq);

    } else {
        cJSON_AddNullToObject(page, "next_after");
    }
}


cJSON *
ngx_http_chat_render_message_event(cJSON *message)
{
    cJSON  *event, *seq;

    event = cJSON_CreateObject();
    cJSON_AddStringToObject(event, "type", "message");
    cJSON_AddItemToObject(event, "message", message);

    seq = cJSON_GetObjectItemCaseSensitive(message, "seq");
    if (cJSON_IsNumber(seq)) {
        cJSON_AddNumberToObject(event, "seq", seq->valuedouble);
    }

    return event;
}


cJSON *
ngx_http_chat_render_deleted_event(const bson_oid_t *message_id,
    const bson_oid_t *group_id, int64_t seq)
{
    cJSON  *event;

    event = cJSON_CreateObject();
    cJSON_AddStringToObject(event, "type", "message_deleted");
    ngx_http_chat_render_oid(event, "message_id", message_id);
    ngx_http_chat_render_oid(event, "group_id", group_id);
    ngx_http_chat_render_seq(event, seq);

    return event;
}


char *
ngx_http_chat_render_event_message(const cJSON *message)
{
    return ngx_http_chat_render_print(
               ngx_http_chat_render_message_event(
                   cJSON_Duplicate(message, 1)));
}


char *
ngx_http_chat_render_event_deleted(const bson_oid_t *message_id,
    const bson_oid_t *group_id, int64_t seq)
{
    return ngx_http_chat_render_print(
               ngx_http_chat_render_deleted_event(message_id, group_id, seq));
}


size_t
ngx_http_chat_render_error_size(const char *type, const char *detail,
    ngx_str_t *cid)
{
    size_t  dlen;

    dlen = ngx_strlen(detail);

    return (type ? sizeof("\"type\":\"\",") - 1 + ngx_strlen(type) : 0)
           + sizeof("{\"detail\":\"\",\"correlation_id\":\"\"}") - 1
           + dlen + ngx_escape_json(NULL, (u_char *) detail, dlen)
           + cid->len;
}


u_char *
ngx_http_chat_render_error(u_char *p, const char *type, const char *detail,
    ngx_str_t *cid)
{
    p = ngx_http_chat_render_lit(p, "{");

    if (type) {
        /* a word of the module's own: nothing to escape */
        p = ngx_http_chat_render_lit(p, "\"type\":\"");
        p = ngx_cpymem(p, type, ngx_strlen(type));
        p = ngx_http_chat_render_lit(p, "\",");
    }

    p = ngx_http_chat_render_lit(p, "\"detail\":\"");
    p = (u_char *) ngx_escape_json(p, (u_char *) detail, ngx_strlen(detail));
    p = ngx_http_chat_render_lit(p, "\",\"correlation_id\":\"");
    p = ngx_cpymem(p, cid->data, cid->len);          /* a safe charset */

    return ngx_http_chat_render_lit(p, "\"}");
}


size_t
ngx_http_chat_render_ack_size(size_t message_len)
{
    return sizeof("{\"type\":\"ack\",\"message\":}") - 1 + message_len;
}


u_char *
ngx_http_chat_render_ack(u_char *p, const char *message, size_t message_len)
{
    p = ngx_http_chat_render_lit(p, "{\"type\":\"ack\",\"message\":");
    p = ngx_cpymem(p, message, message_len);

    return ngx_http_chat_render_lit(p, "}");
}


/* copies one field of a document into the JSON output, if it has it */

static void
ngx_http_chat_render_field(cJSON *o, const bson_t *doc, const char *field,
    const char *key)
{
    bson_iter_t  it;

    if (!bson_iter_init_find(&it, doc, field)) {
        return;
    }

    if (BSON_ITER_HOLDS_OID(&it)) {
        ngx_http_chat_render_oid(o, key, bson_iter_oid(&it));

    } else if (BSON_ITER_HOLDS_UTF8(&it)) {
        cJSON_AddStringToObject(o, key, bson_iter_utf8(&it, NULL));

    } else if (BSON_ITER_HOLDS_DATE_TIME(&it)) {
        ngx_http_chat_render_time(o, key, bson_iter_date_time(&it));

    } else if (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it)) {
        /* seqs: at most 2^53, exact in a JSON number */
        cJSON_AddNumberToObject(o, key, (double) bson_iter_as_int64(&it));
    }
}


/* ISO-8601 UTC with milliseconds and "Z": 2025-11-09T12:34:56.789Z */

static void
ngx_http_chat_render_time(cJSON *o, const char *key, int64_t ms)
{
    char       buf[64];
    time_t     sec;
    struct tm  tm;

    sec = (time_t) (ms / 1000);
    ms %= 1000;
    if (ms < 0) {
        ms += 1000;
        sec--;
    }

    gmtime_r(&sec, &tm);

    (void) snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                    tm.tm_hour, tm.tm_min, tm.tm_sec, (int) ms);

    cJSON_AddStringToObject(o, key, buf);
}


static void
ngx_http_chat_render_oid(cJSON *o, const char *key, const bson_oid_t *oid)
{
    char  hex[25];

    bson_oid_to_string(oid, hex);
    cJSON_AddStringToObject(o, key, hex);
}


static void
ngx_http_chat_render_seq(cJSON *o, int64_t seq)
{
    cJSON_AddNumberToObject(o, "seq", (double) seq);
}


static char *
ngx_http_chat_render_print(cJSON *json)
{
    char  *s;

    s = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);

    return s;
}
