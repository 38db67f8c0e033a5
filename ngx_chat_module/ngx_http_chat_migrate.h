/*
 * ngx_http_chat_migrate.h - the event log given to data of older code
 * (pool thread side).
 */

#ifndef _NGX_HTTP_CHAT_MIGRATE_H_INCLUDED_
#define _NGX_HTTP_CHAT_MIGRATE_H_INCLUDED_


#include <mongoc/mongoc.h>

#include "ngx_http_chat_storage.h"


/* numbers the messages and deletions that have no seq, then marks every
 * group logged; idempotent.  Its counts in op->json on success */
void ngx_http_chat_migrate(ngx_http_chat_op_t *op, mongoc_client_t *client);

/* a message without seq (older code's) numbered now: its creation takes
 * its group's next seq, unless it got one meanwhile (the first number
 * set stays; another's record is a gap).  NGX_OK, NGX_DECLINED (no such
 * group), NGX_ERROR (op->result) */
ngx_int_t ngx_http_chat_migrate_message(ngx_http_chat_op_t *op,
    mongoc_client_t *client, const bson_oid_t *mid);


#endif /* _NGX_HTTP_CHAT_MIGRATE_H_INCLUDED_ */
