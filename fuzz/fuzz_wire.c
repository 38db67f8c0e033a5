/*
 * fuzz_wire.c - the metrics record decoder: chat_wire_batch_check()
 * (wire/chat_wire.h, shared by the module and the sidecar) and the
 * sidecar's ingest_decode(), which turns a received nng message into a
 * coll_batch_t.
 *
 * Input: one message as received (any bytes, any length), at an odd
 * address like an nng body may be.
 *
 * Checked besides ASan/UBSan (alignment included):
 *   - chat_wire_batch_check() equals the rule of chat_wire.h's comment:
 *     header present, magic, version, record size, count <= 1024, length
 *     exactly header + count records;
 *   - ingest_decode() accepts exactly those with a non-zero pid and seq;
 *   - every decoded string is NUL-terminated inside its buffer, no longer
 *     than its wire field, valid UTF-8 with no control byte (what JSON and
 *     Prometheus labels get verbatim); a request's endpoint is its method,
 *     a space and its path; a cluster record's state is one the wire
 *     defines; records + invalid == count;
 *   - a request, kept raw (records.h), has lengths within its wire fields,
 *     expands (coll_request_expand()) to strings that pass the checks
 *     above and keep the raw lengths, and its endpoint key
 *     (coll_request_key()), once cleaned, is the expanded endpoint: the
 *     collector's endpoint table is keyed by what the snapshot shows.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire/chat_wire.h"
#include "ingest.h"

#include "fuzz_common.h"


#define CHECK(c)  do { if (!(c)) { fprintf(stderr, "fuzz_wire.c:%d: " \
                      "invariant failed: %s\n", __LINE__, #c); abort(); } \
                  } while (0)

#include <stdio.h>


static void
check_str(const char *s, size_t bufsz, size_t field)
{
    const char  *nul = memchr(s, '\0', bufsz);
    size_t       n, i;

    CHECK(nul != NULL);
    n = nul - s;
    CHECK(n <= field);
    CHECK(ref_utf8_valid((const unsigned char *) s, n));

    for (i = 0; i < n; i++) {
        CHECK((unsigned char) s[i] >= 0x20 && s[i] != 0x7f);
    }
}


static int
ref_check(const uint8_t *p, size_t len)
{
    uint32_t  magic;
    uint16_t  version, rsize, count, size;
    size_t    off;
    unsigned  i;

    if (len < 56) {
        return -1;
    }

    memcpy(&magic, p, 4);
    memcpy(&version, p + 4, 2);
    memcpy(&rsize, p + 6, 2);
    memcpy(&count, p + 8, 2);

    if (magic != 0x54414843 || version != 5 || rsize != 320 || count > 1024
        || len > 56 + (size_t) count * 320)
    {
        return -1;
    }

    /* records of their own sizes: multiples of 8 from 16 to 320, back to
       back, filling the buffer exactly */
    for (off = 56, i = 0; i < count; i++) {
        if (off + 16 > len) {
            return -1;
        }
        memcpy(&size, p + off + 2, 2);
        if (size < 16 || size > 320 || size % 8 != 0 || off + size > len) {
            return -1;
        }
        off += size;
    }

    return off == len ? count : -1;
}


static coll_batch_t  batch;


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t        *mem, *buf;
    int             n, rc;
    uint32_t        pid;
    uint64_t        seq;
    uint16_t        flags;
    uint32_t        i;
    coll_record_t  *r;
    char            expect[COLL_ENDPOINT_SZ + 8];
    char            kbuf[COLL_ENDPOINT_SZ], kclean[COLL_ENDPOINT_SZ];
    const char     *key;
    size_t          klen;
    coll_request_t  x;

    mem = malloc(size + 1);
    buf = mem + 1;                       /* unaligned, like an nng body */
    memcpy(buf, data, size);

    n = chat_wire_batch_check(buf, size);
    CHECK(n == ref_check(buf, size));

    memset(&batch, 0xa5, sizeof(batch));
    rc = ingest_decode(buf, size, &batch);

    if (n < 0) {
        CHECK(rc == -1);
        free(mem);
        return 0;
    }

    memcpy(&pid, buf + 12, 4);
    memcpy(&seq, buf + 24, 8);
    memcpy(&flags, buf + 10, 2);

    if (pid == 0 || seq == 0) {
        CHECK(rc == -1);
        free(mem);
        return 0;
    }

    CHECK(rc == 0);
    CHECK(batch.worker_pid == pid && batch.batch_seq == seq);
    CHECK(batch.count + batch.invalid == (uint32_t) n);
    CHECK(batch.snapshot == !!(flags & CHAT_BATCH_SNAPSHOT));
    CHECK(batch.snapshot_cont == (batch.snapshot
                                  && (flags & CHAT_BATCH_SNAPSHOT_CONT)));

    for (i = 0; i < batch.count; i++) {
        r = &batch.rec[i];

        switch (r->type) {

        case CHAT_REC_REQUEST:
            CHECK(r->u.request.method_len <= CHAT_WIRE_METHOD_LEN);
            CHECK(r->u.request.endpoint_len <= CHAT_WIRE_ENDPOINT_LEN);
            CHECK(r->u.request.cid_len <= CHAT_WIRE_CID_LEN);
            CHECK(COLL_REQUEST_RAW_USED(&r->u.request)
                  <= sizeof(coll_request_raw_t));

            coll_request_expand(&r->u.request, &x);
            check_str(x.method, COLL_METHOD_SZ, CHAT_WIRE_METHOD_LEN);
            check_str(x.path, COLL_PATH_SZ, CHAT_WIRE_ENDPOINT_LEN);
            check_str(x.endpoint, COLL_ENDPOINT_SZ, COLL_ENDPOINT_SZ - 1);
            check_str(x.cid, COLL_CID_SZ, CHAT_WIRE_CID_LEN);
            CHECK(strlen(x.method) == r->u.request.method_len);
            CHECK(strlen(x.cid) == r->u.request.cid_len);

            if (x.method[0]) {
                snprintf(expect, sizeof(expect), "%s %s", x.method, x.path);
            } else {
                snprintf(expect, sizeof(expect), "%s", x.path);
            }
            CHECK(strcmp(expect, x.endpoint) == 0);

            key = coll_request_key(&r->u.request, kbuf, &klen);
            CHECK(coll_text_clean(kclean, sizeof(kclean), key, klen) == klen);
            CHECK(strcmp(kclean, x.endpoint) == 0);
            break;

        case CHAT_REC_WS_EVENT:
            CHECK(r->u.ws_event.connected <= 1);
            check_str(r->u.ws_event.group_id, COLL_GROUP_SZ,
                      CHAT_WIRE_GROUP_ID_LEN);
            check_str(r->u.ws_event.user_id, COLL_USER_SZ,
                      CHAT_WIRE_USER_ID_LEN);
            break;

        case CHAT_REC_WS_SNAPSHOT:
            check_str(r->u.ws_count.group_id, COLL_GROUP_SZ,
                      CHAT_WIRE_GROUP_ID_LEN);
            break;

        case CHAT_REC_CUSTOM:
            CHECK(r->u.custom.nkv <= CHAT_WIRE_KV_MAX);
            check_str(r->u.custom.type, COLL_TYPE_SZ,
                      CHAT_WIRE_EVENT_TYPE_LEN);
            for (unsigned k = 0; k < r->u.custom.nkv; k++) {
                check_str(r->u.custom.kv[k].key, COLL_KEY_SZ,
                          CHAT_WIRE_KEY_LEN);
                check_str(r->u.custom.kv[k].value, COLL_VALUE_SZ,
                          CHAT_WIRE_VALUE_LEN);
            }
            break;

        case CHAT_REC_CLUSTER:
            CHECK(r->u.cluster.state <= CHAT_CLUSTER_CLOSED);
            check_str(r->u.cluster.host, COLL_HOST_SZ, CHAT_WIRE_HOST_LEN);
            check_str(r->u.cluster.server, COLL_SERVER_SZ,
                      CHAT_WIRE_SERVER_LEN);
            check_str(r->u.cluster.error, COLL_ERROR_SZ,
                      CHAT_WIRE_ERROR_LEN);
            break;

        default:
            CHECK(!"a record of unknown type was kept");
        }
    }

    free(mem);

    return 0;
}
