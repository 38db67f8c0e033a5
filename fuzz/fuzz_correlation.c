/*
 * fuzz_correlation.c - ngx_http_chat_correlation_is_safe(): which
 * client-sent X-Correlation-ID values are echoed in response headers,
 * logs and the metrics pipeline.
 *
 * Checked: the answer is exactly "1 to 64 bytes of [A-Za-z0-9._:-]",
 * so nothing accepted can carry CR, LF, quotes, spaces or non-ASCII; ASan
 * sees any read past the value.
 */

#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_http_chat_correlation.h"

#include "ngx_shim.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char  *buf;
    size_t   i;
    int      want;

    buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    want = size >= 1 && size <= 64;

    for (i = 0; i < size && want; i++) {
        want = memchr("abcdefghijklmnopqrstuvwxyz"
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-",
                      buf[i], 66) != NULL && buf[i] != '\0';
    }

    FUZZ_CHECK(!!ngx_http_chat_correlation_is_safe(buf, size) == want);

    free(buf);

    return 0;
}
