/*
 * fuzz_http_head.c - the sidecar's HTTP request head parser,
 * httpd_parse() (sidecar/httpd.c): the one parser of our own that any
 * local process can reach (the sidecar refuses requests without its key,
 * but only after parsing them).
 *
 * Input: the bytes of a head, any length up to HTTPD_HEAD_MAX, with the
 * empty line that ends it added by the harness as the server finds it.
 *
 * Checked besides ASan/UBSan (every read of the parser is inside the
 * buffer, which is exactly as long as the head):
 *   - the answer is 0 or one of the statuses httpd.h documents (400, 413,
 *     431, 501, 505), and a refusal has a reason: a NUL-terminated,
 *     printable line;
 *   - a head with a NUL byte, or a CR not followed by LF, is refused with
 *     400 (RFC 9112 2.2);
 *   - an accepted head has a method of token characters (RFC 9110 5.6.2),
 *     a path that starts with "/" and holds no space, HTTP/1.0 or 1.1, and
 *     a key and a bearer token (when present) without CR, LF or NUL;
 *   - never both chunked and a Content-Length.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"


#define CHECK(c)  do { if (!(c)) { fprintf(stderr, "fuzz_http_head.c:%d: " \
                      "invariant failed: %s\n", __LINE__, #c); abort(); } \
                  } while (0)


static int
is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z')
           || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}


/* RFC 9112 2.2: a bare CR anywhere, or a NUL, must not be taken */
static int
has_nul_or_bare_cr(const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (p[i] == '\0') {
            return 1;
        }
        if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n')) {
            return 1;
        }
    }

    return 0;
}


/*
 * Where the head the parser reads ends: leading empty lines (CRLF or LF)
 * skipped, then
 * lines ending in LF (a CR before it belongs to the end), up to and with
 * the first empty one; n when the input has none (the harness adds one).
 */
static size_t
head_end(const unsigned char *p, size_t n)
{
    size_t  i = 0, start, first = 1;

    while (i < n && (p[i] == '\n'
                     || (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')))
    {
        i++;
    }

    for ( ;; ) {
        start = i;
        while (i < n && p[i] != '\n') {
            i++;
        }
        if (i == n) {
            return n;
        }
        if (!first && (i == start || (i == start + 1 && p[start] == '\r'))) {
            return i + 1;                       /* past its LF */
        }
        first = 0;
        i++;
    }
}


static int
clean_value(const char *s)
{
    return s == NULL || strpbrk(s, "\r\n") == NULL;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           rc;
    char         *buf;
    size_t        len, i;
    httpd_req_t   req;
    const char   *reason;

    if (size > HTTPD_HEAD_MAX - 4) {
        return 0;
    }

    /* what the server hands the parser: the head and its empty line */
    len = size + 4;
    buf = malloc(len);
    if (buf == NULL) {
        return 0;
    }
    memcpy(buf, data, size);
    memcpy(buf + size, "\r\n\r\n", 4);

    rc = httpd_parse(buf, len, &req, &reason);

    CHECK(rc == 0 || rc == 400 || rc == 413 || rc == 431 || rc == 501
          || rc == 505);

    if (rc != 0) {
        CHECK(reason != NULL && reason[0] != '\0');
        for (i = 0; reason[i]; i++) {
            CHECK((unsigned char) reason[i] >= 0x20
                  && (unsigned char) reason[i] != 0x7f);
        }

    } else {
        /* the added empty line may end a head that had an end already:
         * only the bytes of the input up to the first empty line count */
        CHECK(!has_nul_or_bare_cr(data, head_end(data, size)));

        CHECK(req.method != NULL && req.method[0] != '\0');
        for (i = 0; req.method[i]; i++) {
            CHECK(is_tchar((unsigned char) req.method[i]));
        }

        CHECK(req.path != NULL
              && (req.path[0] == '/' || strcmp(req.path, "*") == 0));
        CHECK(strpbrk(req.path, " \r\n") == NULL);
        CHECK(req.minor >= 0 && req.minor <= 9);
        CHECK(clean_value(req.key) && clean_value(req.bearer));
        CHECK(!(req.chunked && req.content_length >= 0));
    }

    free(buf);
    return 0;
}
