/*
 * records.c - cleaning wire strings and expanding request rows, see
 * records.h.
 */

#include <string.h>

#include "records.h"


/*
 * length of the valid UTF-8 sequence at s (at most n bytes), 0 if none
 * (Unicode table 3-7): a lead byte c2-df, e0-ef or f0-f4 starts 2, 3 or 4
 * bytes, each after it 80-bf, but the second's range is narrower where the
 * lead alone would allow an overlong form (e0, f0), a surrogate (ed) or
 * more than U+10FFFF (f4)
 */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char  c = s[0];
    size_t         len, i;
    unsigned char  lo = 0x80, hi = 0xbf;

    if (c < 0xc2 || c > 0xf4) {
        return 0;
    }

    len = (c < 0xe0) ? 2 : (c < 0xf0) ? 3 : 4;

    if (c == 0xe0) {
        lo = 0xa0;
    } else if (c == 0xed) {
        hi = 0x9f;
    } else if (c == 0xf0) {
        lo = 0x90;
    } else if (c == 0xf4) {
        hi = 0x8f;
    }

    if (len > n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }
    return len;
}


/* all 8 bytes of w printable ASCII (0x20-0x7e): the "has less" and "has
   more" byte tests of a 64-bit word, exact for "any byte" */
#define ONES64       0x0101010101010101ull
#define PRINTABLE8(w)                                                      \
    (((((w) - ONES64 * 0x20) & ~(w))                                       \
      | (((w) + ONES64 * (127 - 0x7e)) | (w))) & (ONES64 * 0x80)) == 0


/*
 * Printable ASCII, what nginx sends nearly always, goes eight bytes at a
 * time.  Every byte out is its byte in or one '?': the length is kept.
 */
size_t
coll_text_clean(char *dst, size_t dstsz, const char *src, size_t len)
{
    const unsigned char  *s = (const unsigned char *) src;
    size_t                i = 0, o = 0, seq;
    uint64_t              w;

    if (len > dstsz - 1) {
        len = dstsz - 1;
    }

    while (i < len) {
        if (i + 8 <= len) {
            memcpy(&w, s + i, 8);
            if (PRINTABLE8(w)) {
                memcpy(dst + o, &w, 8);
                o += 8;
                i += 8;
                continue;
            }
        }
        if (i + 8 > len && o == i && len >= 8) {
            /* the tail of a string of 8 or more bytes, nothing replaced
               so far: its last 8 bytes at once (overlapping what is
               copied already, with the same bytes) */
            memcpy(&w, s + len - 8, 8);
            if (PRINTABLE8(w)) {
                memcpy(dst + len - 8, &w, 8);
                o = i = len;
                continue;
            }
        }
        if (s[i] >= 0x20 && s[i] < 0x7f) {
            dst[o++] = (char) s[i++];
            continue;
        }
        seq = (s[i] >= 0x80) ? utf8_seq(s + i, len - i) : 0;
        if (seq == 0) {
            dst[o++] = '?';
            i++;
            continue;
        }
        memcpy(dst + o, s + i, seq);
        o += seq;
        i += seq;
    }

    dst[o] = '\0';
    return o;
}


void
coll_request_expand(const coll_request_raw_t *in, coll_request_t *out)
{
    size_t       mlen, elen;
    const char  *t = in->text;

    mlen = coll_text_clean(out->method, sizeof(out->method), t,
                           in->method_len);
    elen = coll_text_clean(out->endpoint, sizeof(out->endpoint),
                           t + in->method_len, in->endpoint_len);
    (void) coll_text_clean(out->cid, sizeof(out->cid),
                           t + in->method_len + in->endpoint_len,
                           in->cid_len);

    out->ts_us = in->ts_us;
    out->status = in->status;
    out->duration_us = in->duration_us;
    out->very_slow = in->very_slow;

    /*
     * The module sends "GET /api/chat/groups" (method included), the spec's
     * endpoint key; the spec's request rows show the bare path.  Accept a
     * bare path too and build the key from the method.
     */

    if (mlen > 0 && elen > mlen && out->endpoint[mlen] == ' '
        && memcmp(out->endpoint, out->method, mlen) == 0)
    {
        /* elen - mlen - 1 < COLL_PATH_SZ: the wire field bounds it */
        memcpy(out->path, out->endpoint + mlen + 1, elen - mlen);

    } else {
        /* a bare path: the key is "METHOD path" (mlen + 1 + elen + 1 <=
           COLL_ENDPOINT_SZ by the field sizes) */
        memcpy(out->path, out->endpoint, elen + 1);
        if (mlen > 0) {
            memcpy(out->endpoint, out->method, mlen);
            out->endpoint[mlen] = ' ';
            memcpy(out->endpoint + mlen + 1, out->path, elen + 1);
        }
    }
}


/* coll_request_key() of a request that is not "METHOD path" on the wire */
const char *
coll_request_key_slow(const coll_request_raw_t *r, char *buf, size_t *len)
{
    coll_request_t  x;

    coll_request_expand(r, &x);
    *len = strlen(x.endpoint);
    memcpy(buf, x.endpoint, *len + 1);
    return buf;
}


static uint8_t
raw_put(char *dst, const char *src, size_t field)
{
    size_t  n = src != NULL ? strlen(src) : 0;

    n = n < field ? n : field;
    if (n > 0) {
        memcpy(dst, src, n);
    }
    return (uint8_t) n;
}


void
coll_request_raw_set(coll_request_raw_t *r, const char *method,
    const char *endpoint, const char *cid)
{
    r->method_len = raw_put(r->text, method, CHAT_WIRE_METHOD_LEN);
    r->endpoint_len = raw_put(r->text + r->method_len, endpoint,
                              CHAT_WIRE_ENDPOINT_LEN);
    r->cid_len = raw_put(r->text + r->method_len + r->endpoint_len, cid,
                         CHAT_WIRE_CID_LEN);
}
