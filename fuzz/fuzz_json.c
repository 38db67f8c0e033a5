/*
 * fuzz_json.c - request bodies: ngx_http_chat_parse_object() (our UTF-8
 * and "\u0000" checks in front of cJSON) and ngx_http_chat_utf8_valid().
 *
 * Input: the body as received.
 *
 * Checked besides ASan/UBSan:
 *   - ngx_http_chat_utf8_valid() agrees with a table-driven validator
 *     (Unicode table 3-7), on the body and on every suffix start;
 *   - an accepted body is valid UTF-8, an object, and "no string is cut
 *     short" (what parse_object promises): every string token of the body
 *     is decoded here by an independent RFC 8259 decoder, and its length
 *     must equal strlen() of the key or value cJSON made of it, in
 *     document order; a body with an escape RFC 8259 does not allow must
 *     not be accepted;
 *   - a refused body has a detail.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include <cjson/cJSON.h>

#include "ngx_http_chat_json.h"

#include "fuzz_common.h"
#include "ngx_shim.h"


#define MAX_STRINGS  4096


static int
hexval(u_char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}


static long
hex4(const u_char *p, const u_char *last)
{
    long  v = 0;
    int   i, h;

    if (last - p < 4) {
        return -1;
    }

    for (i = 0; i < 4; i++) {
        h = hexval(p[i]);
        if (h < 0) {
            return -1;
        }
        v = v * 16 + h;
    }

    return v;
}


/*
 * The decoded byte length of every string token, in order; -1 when an
 * escape is not one RFC 8259 allows (or a surrogate is unpaired, which
 * cJSON refuses too).  Only strings are looked at: the body is known to
 * parse, so the tokens are where cJSON found them.
 */
static int
ref_string_lengths(const u_char *p, size_t len, size_t *out, size_t *n)
{
    const u_char  *last = p + len;
    size_t         slen;
    long           cp, lo;

    *n = 0;

    while (p < last) {
        if (*p++ != '"') {
            continue;
        }

        slen = 0;

        while (p < last && *p != '"') {
            if (*p != '\\') {
                slen++;
                p++;
                continue;
            }

            p++;
            if (p == last) {
                return -1;
            }

            switch (*p++) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n':
            case 'r': case 't':
                slen++;
                break;

            case 'u':
                cp = hex4(p, last);
                if (cp < 0) {
                    return -1;
                }
                p += 4;

                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (last - p < 6 || p[0] != '\\' || p[1] != 'u') {
                        return -1;
                    }
                    lo = hex4(p + 2, last);
                    if (lo < 0xdc00 || lo > 0xdfff) {
                        return -1;
                    }
                    p += 6;
                    slen += 4;

                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    return -1;

                } else {
                    slen += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
                }
                break;

            default:
                return -1;
            }
        }

        p++;                                     /* the closing quote */

        if (*n < MAX_STRINGS) {
            out[(*n)++] = slen;
        }
    }

    return 0;
}


static void
tree_lengths(cJSON *item, size_t *out, size_t *n)
{
    cJSON  *c;

    for (c = item; c; c = c->next) {
        if (c->string && *n < MAX_STRINGS) {
            out[(*n)++] = strlen(c->string);
        }

        if (cJSON_IsString(c) && *n < MAX_STRINGS) {
            out[(*n)++] = strlen(c->valuestring);
        }

        if (c->child) {
            tree_lengths(c->child, out, n);
        }
    }
}


static size_t  ref_len[MAX_STRINGS], got_len[MAX_STRINGS];


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *buf;
    size_t       i, nref, ngot;
    cJSON       *json;
    ngx_str_t    body;
    const char  *detail;

    buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    FUZZ_CHECK(!!ngx_http_chat_utf8_valid(buf, size)
               == ref_utf8_valid(buf, size));

    for (i = 1; i < size && i < 8; i++) {
        FUZZ_CHECK(!!ngx_http_chat_utf8_valid(buf + i, size - i)
                   == ref_utf8_valid(buf + i, size - i));
    }

    body.data = buf;
    body.len = size;
    detail = NULL;

    json = ngx_http_chat_parse_object(&body, &detail);

    if (json == NULL) {
        FUZZ_CHECK(detail != NULL);
        free(buf);
        return 0;
    }

    FUZZ_CHECK(cJSON_IsObject(json));
    FUZZ_CHECK(ref_utf8_valid(buf, size));

    /* an escape RFC 8259 does not allow must not get through */
    FUZZ_CHECK(ref_string_lengths(buf, size, ref_len, &nref) == 0);

    ngot = 0;
    tree_lengths(json->child, got_len, &ngot);

    FUZZ_CHECK(nref == ngot);
    for (i = 0; i < nref; i++) {
        FUZZ_CHECK(ref_len[i] == got_len[i]);    /* not cut short */
    }

    cJSON_Delete(json);
    free(buf);

    return 0;
}
