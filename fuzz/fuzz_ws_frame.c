/*
 * fuzz_ws_frame.c - the WebSocket frame decoder, driven over a byte
 * stream the way ngx_http_chat_ws_consume() drives it: parse a header,
 * wait for the whole payload, unmask, dispatch, go on after it.
 *
 * Input: byte 0 picks the frame and message limits, the rest is what a
 * client sent after the handshake.
 *
 * Checked for every frame, besides ASan/UBSan:
 *   - ngx_http_chat_ws_parse_frame() agrees with a reference decoder
 *     written from RFC 6455 5.2 (result, close code, lengths, mask);
 *   - its answer does not depend on how much of the stream has arrived:
 *     on every shorter prefix it says NGX_AGAIN or gives the same answer;
 *   - an accepted header never claims more than the limit, uses the
 *     minimal length encoding, and control frames are final and <= 125;
 *   - close payloads: ngx_http_chat_ws_check_close_payload() agrees with
 *     the RFC's rules (code ranges, UTF-8 reason);
 *   - text messages (reassembled from fragments like the module does):
 *     ngx_http_chat_utf8_valid() agrees with a table-driven validator,
 *     then the message goes through ngx_http_chat_parse_object().
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ngx_http_chat_json.h"
#include "ngx_http_chat_websocket.h"

#include "fuzz_common.h"
#include "ngx_shim.h"


typedef struct {
    ngx_int_t   rc;
    ngx_uint_t  close_code;
    uint64_t    payload_len;
    size_t      header_len;
    ngx_uint_t  fin, opcode;
    u_char      mask[4];
} ref_frame_t;


/* RFC 6455 5.2, plus the module's rules: masked, no RSV, minimal length */
static void
ref_parse(const u_char *p, size_t len, size_t max, ref_frame_t *r)
{
    size_t    ext, i;
    uint64_t  plen;
    unsigned  op, l7;

    memset(r, 0, sizeof(*r));
    r->close_code = NGX_HTTP_CHAT_WS_PROTOCOL;

    if (len < 2) {
        r->rc = NGX_AGAIN;
        return;
    }

    op = p[0] & 0x0f;
    l7 = p[1] & 0x7f;
    r->fin = p[0] >> 7;
    r->opcode = op;

    if ((p[0] & 0x70) || !(op <= 2 || (op >= 8 && op <= 10))
        || !(p[1] & 0x80) || (op >= 8 && (!(p[0] & 0x80) || l7 > 125)))
    {
        r->rc = NGX_ERROR;
        return;
    }

    ext = (l7 == 126) ? 2 : (l7 == 127) ? 8 : 0;

    if (len < 2 + ext) {
        r->rc = NGX_AGAIN;
        return;
    }

    plen = l7;

    if (ext) {
        plen = 0;
        for (i = 0; i < ext; i++) {
            plen = plen * 256 + p[2 + i];
        }

        if ((ext == 2 && plen < 126)
            || (ext == 8 && (plen < 65536 || plen > INT64_MAX)))
        {
            r->rc = NGX_ERROR;
            return;
        }
    }

    if (plen > max) {
        r->rc = NGX_ERROR;
        r->close_code = NGX_HTTP_CHAT_WS_TOO_BIG;
        return;
    }

    if (len < 2 + ext + 4) {
        r->rc = NGX_AGAIN;
        return;
    }

    memcpy(r->mask, p + 2 + ext, 4);
    r->payload_len = plen;
    r->header_len = 2 + ext + 4;
    r->rc = NGX_OK;
}


static void
check_close(const u_char *p, size_t len)
{
    ngx_int_t   rc;
    ngx_uint_t  code;
    unsigned    c;

    rc = ngx_http_chat_ws_check_close_payload(p, len, &code);

    if (len == 0) {
        FUZZ_CHECK(rc == NGX_OK && code == 0);
        return;
    }

    if (len == 1) {
        FUZZ_CHECK(rc == NGX_ERROR && code == NGX_HTTP_CHAT_WS_PROTOCOL);
        return;
    }

    c = (p[0] << 8) | p[1];

    if (!ref_close_code_ok(c)) {
        FUZZ_CHECK(rc == NGX_ERROR && code == NGX_HTTP_CHAT_WS_PROTOCOL);

    } else if (!ref_utf8_valid(p + 2, len - 2)) {
        FUZZ_CHECK(rc == NGX_ERROR && code == NGX_HTTP_CHAT_WS_BAD_DATA);

    } else {
        FUZZ_CHECK(rc == NGX_OK && code == c);
    }
}


static void
check_message(ngx_uint_t opcode, u_char *p, size_t len)
{
    int          valid;
    cJSON       *json;
    ngx_str_t    body;
    const char  *detail;

    valid = ngx_http_chat_utf8_valid(p, len) ? 1 : 0;
    FUZZ_CHECK(valid == ref_utf8_valid(p, len));

    if (opcode != NGX_HTTP_CHAT_WS_TEXT || !valid) {
        return;
    }

    body.data = p;
    body.len = len;
    detail = NULL;

    json = ngx_http_chat_parse_object(&body, &detail);
    if (json == NULL) {
        FUZZ_CHECK(detail != NULL);
        return;
    }

    FUZZ_CHECK(cJSON_IsObject(json));
    cJSON_Delete(json);
}


static const size_t  limits[8][2] = {   /* max frame, max message */
    { 65536, 65536 },                    /* the defaults */
    { 125, 125 },
    { 126, 300 },
    { 65535, 65535 },
    { 65536, 200000 },
    { 16, 64 },
    { 0, 0 },
    { 1 << 20, 1 << 20 },
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                    *buf, *msg, *payload;
    size_t                     len, pos, k, max_frame, max_msg, msg_len;
    size_t                     total, i;
    ngx_int_t                  rc;
    ngx_uint_t                 msg_opcode, in_msg;
    ref_frame_t                ref;
    ngx_http_chat_ws_frame_t   f, g;

    if (size < 1) {
        return 0;
    }

    max_frame = limits[data[0] & 7][0];
    max_msg = limits[data[0] & 7][1];

    /* exactly the bytes received, so that ASan sees any read past them */
    len = size - 1;
    buf = malloc(len ? len : 1);
    memcpy(buf, data + 1, len);

    msg = NULL;
    msg_len = 0;
    msg_opcode = 0;
    in_msg = 0;
    pos = 0;

    while (pos < len) {

        memset(&f, 0xa5, sizeof(f));
        rc = ngx_http_chat_ws_parse_frame(buf + pos, len - pos, max_frame, &f);

        ref_parse(buf + pos, len - pos, max_frame, &ref);
        FUZZ_CHECK(rc == ref.rc);

        if (rc == NGX_ERROR) {
            FUZZ_CHECK(f.close_code == ref.close_code);
        }

        /* a shorter read gives NGX_AGAIN or the same answer */
        for (k = 0; k < len - pos && k <= 14; k++) {
            memset(&g, 0x5a, sizeof(g));
            ngx_int_t rc2 = ngx_http_chat_ws_parse_frame(buf + pos, k,
                                                         max_frame, &g);
            FUZZ_CHECK(rc2 == NGX_AGAIN || rc2 == rc);
            if (rc2 == NGX_ERROR) {
                FUZZ_CHECK(g.close_code == f.close_code);
            }
            if (rc2 == NGX_OK) {
                FUZZ_CHECK(g.header_len == f.header_len
                           && g.payload_len == f.payload_len);
            }
        }

        if (rc != NGX_OK) {
            break;                 /* AGAIN: wait for more; ERROR: close */
        }

        FUZZ_CHECK(f.header_len == ref.header_len);
        FUZZ_CHECK(f.payload_len == ref.payload_len);
        FUZZ_CHECK(memcmp(f.mask, ref.mask, 4) == 0);
        FUZZ_CHECK(f.fin == ref.fin && f.opcode == ref.opcode);
        FUZZ_CHECK(f.masked == 1 && f.rsv == 0);
        FUZZ_CHECK(f.payload_len <= max_frame);
        FUZZ_CHECK(f.header_len == 6 || f.header_len == 8
                   || f.header_len == 14);
        FUZZ_CHECK(f.header_len <= len - pos);
        if (f.opcode & 8) {
            FUZZ_CHECK(f.fin && f.payload_len <= 125);
        }

        total = f.header_len + (size_t) f.payload_len;

        if (len - pos < total) {
            break;                               /* payload incomplete */
        }

        payload = buf + pos + f.header_len;

        for (i = 0; i < f.payload_len; i++) {
            payload[i] ^= f.mask[i & 3];
        }

        pos += total;

        /* the frame-level rules of ngx_http_chat_ws_frame() */

        switch (f.opcode) {

        case NGX_HTTP_CHAT_WS_TEXT:
        case NGX_HTTP_CHAT_WS_BINARY:
            if (in_msg) {
                goto done;                       /* 1002 */
            }

            if (f.fin) {
                if (f.payload_len > max_msg) {
                    goto done;                   /* 1009 */
                }
                check_message(f.opcode, payload, f.payload_len);
                break;
            }

            msg = malloc(max_msg ? max_msg : 1);
            msg_len = 0;
            msg_opcode = f.opcode;
            in_msg = 1;

            /* fall through */

        case NGX_HTTP_CHAT_WS_CONT:
            if (!in_msg) {
                goto done;                       /* 1002 */
            }

            if (msg_len + f.payload_len > max_msg) {
                goto done;                       /* 1009 */
            }

            memcpy(msg + msg_len, payload, f.payload_len);
            msg_len += f.payload_len;

            if (f.fin) {
                check_message(msg_opcode, msg, msg_len);
                free(msg);
                msg = NULL;
                in_msg = 0;
            }
            break;

        case NGX_HTTP_CHAT_WS_CLOSE:
            check_close(payload, f.payload_len);
            goto done;                           /* nothing may follow */

        default:                                 /* ping, pong */
            break;
        }
    }

done:

    free(msg);
    free(buf);

    return 0;
}
