/*
 * fuzz_route.c - ngx_http_chat_route(), the static router of
 * ngx_http_chat_api.c (the file is #included to reach it): r->uri, as
 * nginx leaves it after decoding and normalizing, into a route and the
 * group and message id segments.
 *
 * Checked besides ASan (the URI is in an allocation of its exact size):
 * the answer equals a reference router written from the API table at the
 * top of ngx_http_chat_api.c: "/api/chat/" then segments separated by
 * single slashes, none empty, one trailing slash allowed; ids point into
 * the URI and hold no slash.
 *
 * One leniency of the module is reproduced on purpose rather than
 * reported on every run: a URI ending in "//" is routed as if it ended in
 * "/" (the last empty segment is not seen).  With nginx's default
 * merge_slashes on, r->uri never has "//"; see fuzz/README.md.
 */

#include "ngx_http_chat_api.c"

#include "fuzz_common.h"
#include "ngx_shim.h"


typedef struct {
    int        route;
    ngx_str_t  group_id, message_id;
} ref_route_t;


static int
seg_eq(ngx_str_t *s, const char *lit)
{
    return s->len == strlen(lit) && memcmp(s->data, lit, s->len) == 0;
}


static void
ref_route(u_char *uri, size_t len, ref_route_t *rt)
{
    u_char     *p, *last, *s;
    ngx_str_t   seg[6];
    size_t      n = 0;

    memset(rt, 0, sizeof(*rt));

    if (len <= 10 || memcmp(uri, "/api/chat/", 10) != 0) {
        return;
    }

    p = uri + 10;
    last = uri + len;

    if (last[-1] == '/') {
        last--;
    }

    /* a slash right before last ends the loop without an empty segment:
     * that is the "//" leniency, the same in the module */
    while (p < last) {
        s = memchr(p, '/', last - p);
        if (s == NULL) {
            s = last;
        }
        if (s == p || n == 5) {
            return;                             /* empty, or too deep */
        }
        seg[n].data = p;
        seg[n].len = s - p;
        n++;
        p = s + 1;
    }

    if (n == 2 && seg_eq(&seg[0], "ws")) {
        rt->route = NGX_HTTP_CHAT_ROUTE_WS;
        rt->group_id = seg[1];
        return;
    }

    if (n == 0 || !seg_eq(&seg[0], "groups")) {
        return;
    }

    if (n == 1) {
        rt->route = NGX_HTTP_CHAT_ROUTE_GROUPS;
    } else if (n == 2) {
        rt->route = NGX_HTTP_CHAT_ROUTE_GROUP;
        rt->group_id = seg[1];
    } else if (n <= 4 && seg_eq(&seg[2], "messages")) {
        rt->route = n == 3 ? NGX_HTTP_CHAT_ROUTE_MESSAGES
                           : NGX_HTTP_CHAT_ROUTE_MESSAGE;
        rt->group_id = seg[1];
        if (n == 4) {
            rt->message_id = seg[3];
        }
    }
}


static void
check_id(ngx_str_t *id, ngx_str_t *ref, u_char *uri, size_t len)
{
    FUZZ_CHECK(id->len == ref->len);

    if (id->len == 0) {
        return;
    }

    FUZZ_CHECK(id->data == ref->data);
    FUZZ_CHECK(id->data >= uri && id->data + id->len <= uri + len);
    FUZZ_CHECK(memchr(id->data, '/', id->len) == NULL);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t               rc;
    ref_route_t             ref;
    ngx_http_request_t      r;
    ngx_http_chat_route_t   rt;

    memset(&r, 0, sizeof(r));
    r.uri.len = size;
    r.uri.data = malloc(size ? size : 1);
    memcpy(r.uri.data, data, size);

    memset(&rt, 0x5a, sizeof(rt));
    rc = ngx_http_chat_route(&r, &rt);

    ref_route(r.uri.data, size, &ref);

    if (ref.route == 0) {
        FUZZ_CHECK(rc == NGX_DECLINED);

    } else {
        FUZZ_CHECK(rc == NGX_OK);
        FUZZ_CHECK((int) rt.route == ref.route);
        check_id(&rt.group_id, &ref.group_id, r.uri.data, size);
        check_id(&rt.message_id, &ref.message_id, r.uri.data, size);
    }

    free(r.uri.data);

    return 0;
}
