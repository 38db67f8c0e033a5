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


#endif /* _NGX_HTTP_CHAT_MIGRATE_H_INCLUDED_ */
