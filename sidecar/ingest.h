/*
 * ingest.h - receives record batches from the nginx workers.
 *
 * An nng PULL socket listening on an ipc:// (or loopback tcp://) address,
 * with one receive outstanding: each message is handled in its completion,
 * on one of nng's threads, one at a time and in order.  The batch is
 * decoded with no lock held, then handed to collector_apply() (see
 * collector.h for the locking rules).  Buffers that are not a well-formed batch of this wire
 * version are counted with collector_reject() and dropped.
 */

#ifndef SIDECAR_INGEST_H
#define SIDECAR_INGEST_H

#include <stddef.h>

#include "collector.h"
#include "procstats.h"
#include "records.h"

typedef struct ingest_s  ingest_t;

/*
 * Validates and decodes one wire buffer: chat_wire_batch_check(), then a
 * non-zero pid and sequence; every string is cut to its field size, and
 * made printable UTF-8 except a request's, which are kept as they came
 * (coll_request_raw_t, records.h); unknown record types and events are
 * skipped and counted in out->invalid.  Returns 0, or -1 for a malformed
 * batch.  A request's bytes are copied: out does not point into buf.
 */
int ingest_decode(const void *buf, size_t len, coll_batch_t *out);

typedef enum {
    INGEST_WORKERS = 0,         /* nginx's workers: every record type */
    INGEST_EVENTS               /* other programs: custom events only */
} ingest_kind_e;

/*
 * Starts listening and receiving; -1 with a message in err.
 * With peers, a connection is kept only if procstats_is_nginx_process()
 * says its process is a worker of the monitored nginx.
 */
int ingest_start(ingest_t **out, ingest_kind_e kind, const char *url,
    int ipc_mode, collector_t *c, procstats_t *peers, char *err,
    size_t errlen);

/* Closes the socket, which ends the receive, and waits for a batch still
   being handled. */
void ingest_stop(ingest_t *in);

#endif /* SIDECAR_INGEST_H */
