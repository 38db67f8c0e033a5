/*
 * fuzz_common.h - small reference checks shared by the harnesses, written
 * from the specifications (not from the code under test) so that a
 * harness can compare the module's answer with an independent one.
 */

#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>


/*
 * UTF-8 per Unicode 15, table 3-7 "Well-Formed UTF-8 Byte Sequences":
 * the ranges of each byte position, no arithmetic on code points.
 */
static inline int
ref_utf8_valid(const unsigned char *s, size_t n)
{
    size_t  i = 0;

    while (i < n) {
        unsigned char  c = s[i];
        unsigned char  lo = 0x80, hi = 0xbf;
        size_t         len, k;

        if (c < 0x80) {
            i++;
            continue;
        }

        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
        } else if (c == 0xe0) {
            len = 3; lo = 0xa0;
        } else if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef) {
            len = 3;
        } else if (c == 0xed) {
            len = 3; hi = 0x9f;
        } else if (c == 0xf0) {
            len = 4; lo = 0x90;
        } else if (c >= 0xf1 && c <= 0xf3) {
            len = 4;
        } else if (c == 0xf4) {
            len = 4; hi = 0x8f;
        } else {
            return 0;
        }

        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) {
            return 0;
        }

        for (k = 2; k < len; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xbf) {
                return 0;
            }
        }

        i += len;
    }

    return 1;
}


/* RFC 6455 7.4: close codes an endpoint may receive (1012-1014 are
 * registered with IANA since; 1004-1006 and 1015 never go on the wire) */
static inline int
ref_close_code_ok(unsigned code)
{
    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1014)
           || (code >= 3000 && code <= 4999);
}


/* a tiny deterministic generator for harness choices */
typedef struct {
    const uint8_t  *p;
    size_t          n;
} fuzz_in_t;

static inline unsigned
fuzz_byte(fuzz_in_t *in)
{
    unsigned  v;

    if (in->n == 0) {
        return 0;
    }

    v = in->p[0];
    in->p++;
    in->n--;

    return v;
}

static inline unsigned
fuzz_u16(fuzz_in_t *in)
{
    unsigned  lo = fuzz_byte(in);

    return lo | (fuzz_byte(in) << 8);
}

#endif /* FUZZ_COMMON_H */
