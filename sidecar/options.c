/*
 * options.c - flags, config file and validation, see options.h.
 */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "options.h"
#include "view.h"


typedef enum {
    T_STR,          /* char[OPT_STR_SZ] */
    T_SIZE,         /* size_t */
    T_INT,          /* int */
    T_MS_US32,      /* value in ms, stored as uint32_t microseconds */
    T_S_US64,       /* value in s, stored as uint64_t microseconds */
    T_SECONDS,      /* double seconds */
    T_OCTAL,        /* int, file mode */
    T_LOGLEVEL      /* debug | info | warn | error */
} opt_type_e;

typedef struct {
    const char  *name;
    opt_type_e   type;
    size_t       off;
    double       min;
    double       max;
    const char  *arg;
    const char  *help;
} opt_def_t;

#define O(f)  offsetof(sidecar_options_t, f)

static const opt_def_t  opt_defs[] = {
    { "listen", T_STR, O(listen), 0, 0, "ADDR",
      "HTTP address, loopback only: 127.0.0.1:PORT, [::1]:PORT or PORT "
      "(default 127.0.0.1:9180; port 0 picks a free one)" },
    { "http-key-file", T_STR, O(http_key_file), 0, 0, "PATH",
      "file holding the key nginx sends as X-Sidecar-Key (16 to 256 "
      "characters of A-Z a-z 0-9 . _ ~ + / = -); required to serve" },
    { "ingest", T_STR, O(ingest), 0, 0, "URL",
      "nng PULL address for worker batches: ipc://PATH, abstract://NAME "
      "or tcp://127.0.0.1:PORT (default ipc:///tmp/chat-sidecar.ipc)" },
    { "ingest-mode", T_OCTAL, O(ingest_mode), 0, 0777, "MODE",
      "permissions of the ipc socket file (default 0666: nginx workers "
      "often run as another user)" },
    { "ingest-peers", T_STR, O(ingest_peers), 0, 0, "WHO",
      "who may push records: nginx (the process in --nginx-pid-file and its "
      "children; ipc:// and abstract:// only) or any (default: nginx when "
      "both are given, else any)" },
    { "events", T_STR, O(events), 0, 0, "URL",
      "nng PULL address for custom events from other local programs "
      "(send-test-batch -C): ipc://PATH; only custom event records are "
      "taken there (default: none)" },
    { "events-mode", T_OCTAL, O(events_mode), 0, 0777, "MODE",
      "permissions of the events socket file: who may send events "
      "(default 0600: the sidecar's own user)" },
    { "mongo-uri", T_STR, O(mongo_uri), 0, 0, "URI",
      "MongoDB URI; the database is its path (default "
      "mongodb://127.0.0.1:27017/chat)" },
    { "db-refresh", T_SECONDS, O(db_refresh_s), 0.1, 86400, "SECONDS",
      "database statistics refresh interval (default 1)" },
    { "db-timeout-ms", T_INT, O(db_timeout_ms), 100, 600000, "MS",
      "maxTimeMS of each database query (default 5000)" },
    { "nginx-pid-file", T_STR, O(nginx_pid_file), 0, 0, "PATH",
      "pid file of the monitored nginx master (uptime, memory, CPU)" },
    { "host-name", T_STR, O(host_name), 0, 0, "NAME",
      "this host's name on the dashboard and in chat_host_info until a "
      "worker's cluster record names it (default: gethostname())" },
    { "html-dir", T_STR, O(html_dir), 0, 0, "DIR",
      "directory holding dashboard.html (default html)" },
    { "pid-file", T_STR, O(pid_file), 0, 0, "PATH",
      "write the sidecar's own pid here" },
    { "log-level", T_LOGLEVEL, O(log_level), 0, 0, "LEVEL",
      "debug, info, warn or error (default info)" },
    { "slow-ms", T_MS_US32, O(coll.slow_us), 1, 4000000, "MS",
      "slow request threshold (default 1000)" },
    { "very-slow-ms", T_MS_US32, O(coll.very_slow_us), 1, 4000000, "MS",
      "very slow request threshold (default 5000)" },
    { "slow-max", T_SIZE, O(coll.slow_max), 1, 100000, "N",
      "slow requests kept (default 100)" },
    { "recent-max", T_SIZE, O(coll.recent_max), 1, 100000, "N",
      "recent requests kept (default 50)" },
    { "errors-max", T_SIZE, O(coll.errors_max), 1, 100000, "N",
      "recent errors kept (default 50)" },
    { "ws-events-max", T_SIZE, O(coll.ws_events_max), 1, 100000, "N",
      "WebSocket events kept (default 100)" },
    { "custom-max", T_SIZE, O(coll.custom_max), 1, 100000, "N",
      "custom events kept (default 100)" },
    { "endpoint-cap", T_SIZE, O(coll.endpoint_cap), 1, 100000, "N",
      "distinct endpoints with their own row; the rest share one "
      "overflow row (default 256)" },
    { "max-workers", T_SIZE, O(coll.max_workers), 1, 4096, "N",
      "worker incarnations remembered (default 64)" },
    { "max-ws-groups", T_SIZE, O(coll.max_groups), 1, 1000000, "N",
      "WebSocket groups tracked per worker (default 4096)" },
    { "worker-timeout", T_S_US64, O(coll.worker_timeout_us), 1, 86400,
      "SECONDS",
      "forget a worker's WebSockets after this long without a batch "
      "(default 15: three 5 s snapshot intervals)" },
    { "ws-reorder-ms", T_MS_US32, O(coll.ws_reorder_us), 0, 10000, "MS",
      "WebSocket events are held this long and applied in the order they "
      "happened across workers (default 250; 0: at once)" },
    { "history-minutes", T_SIZE, O(coll.history_minutes), 1, 10080, "N",
      "per-minute history kept (default 120)" },
    { NULL, T_STR, 0, 0, 0, NULL, NULL }
};


void
options_defaults(sidecar_options_t *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->listen, sizeof(o->listen), "127.0.0.1:9180");
    snprintf(o->ingest, sizeof(o->ingest), "ipc:///tmp/chat-sidecar.ipc");
    o->ingest_mode = 0666;
    o->events_mode = 0600;
    snprintf(o->mongo_uri, sizeof(o->mongo_uri),
             "mongodb://127.0.0.1:27017/chat");
    o->db_refresh_s = 1;
    o->db_timeout_ms = 5000;
    snprintf(o->html_dir, sizeof(o->html_dir), "html");
    o->log_level = LOG_LVL_INFO;
    collector_config_defaults(&o->coll);
}


static const opt_def_t *
opt_find(const char *name)
{
    const opt_def_t  *d;
    char              norm[64];
    size_t            i;

    for (i = 0; name[i] != '\0' && i < sizeof(norm) - 1; i++) {
        norm[i] = name[i] == '_' ? '-' : name[i];
    }
    norm[i] = '\0';

    for (d = opt_defs; d->name != NULL; d++) {
        if (strcmp(d->name, norm) == 0) {
            return d;
        }
    }
    return NULL;
}


static int
opt_number(const opt_def_t *d, const char *value, double *out, char *err,
    size_t errlen)
{
    char    *end;
    double   v;

    errno = 0;
    if (d->type == T_OCTAL) {
        v = (double) strtol(value, &end, 8);
    } else {
        v = strtod(value, &end);
    }

    while (end != NULL && isspace((unsigned char) *end)) {
        end++;
    }

    if (errno != 0 || end == value || *end != '\0' || !isfinite(v)) {
        snprintf(err, errlen, "--%s: \"%s\" is not a number", d->name,
                 value);
        return -1;
    }

    if ((d->type == T_SIZE || d->type == T_INT || d->type == T_OCTAL)
        && v != floor(v))
    {
        snprintf(err, errlen, "--%s: \"%s\" is not a whole number",
                 d->name, value);
        return -1;
    }

    if (v < d->min || v > d->max) {
        snprintf(err, errlen, "--%s: %s is out of range (%g .. %g)",
                 d->name, value, d->min, d->max);
        return -1;
    }

    *out = v;
    return 0;
}


int
options_set(sidecar_options_t *o, const char *name, const char *value,
    char *err, size_t errlen)
{
    const opt_def_t  *d;
    char             *base = (char *) o;
    double            v = 0;

    d = opt_find(name);
    if (d == NULL) {
        snprintf(err, errlen, "unknown option \"%s\"", name);
        return -1;
    }

    if (d->type == T_STR) {
        if (strlen(value) >= OPT_STR_SZ) {
            snprintf(err, errlen, "--%s: value too long", d->name);
            return -1;
        }
        snprintf(base + d->off, OPT_STR_SZ, "%s", value);
        return 0;
    }

    if (d->type == T_LOGLEVEL) {
        static const char  *names[] = { "debug", "info", "warn", "error" };
        int                 i;

        for (i = 0; i < 4; i++) {
            if (strcasecmp(value, names[i]) == 0) {
                *(int *) (base + d->off) = i;
                return 0;
            }
        }
        snprintf(err, errlen, "--%s: \"%s\" is not debug, info, warn or "
                 "error", d->name, value);
        return -1;
    }

    if (opt_number(d, value, &v, err, errlen) != 0) {
        return -1;
    }

    switch (d->type) {
    case T_SIZE:
        *(size_t *) (base + d->off) = (size_t) v;
        break;
    case T_INT:
    case T_OCTAL:
        *(int *) (base + d->off) = (int) v;
        break;
    case T_MS_US32:
        *(uint32_t *) (base + d->off) = (uint32_t) llround(v * 1000.0);
        break;
    case T_S_US64:
        *(uint64_t *) (base + d->off) = (uint64_t) llround(v * 1e6);
        break;
    case T_SECONDS:
        *(double *) (base + d->off) = v;
        break;
    default:
        break;
    }

    return 0;
}


static char *
trim(char *s)
{
    char  *e;

    while (isspace((unsigned char) *s)) {
        s++;
    }
    e = s + strlen(s);
    while (e > s && isspace((unsigned char) e[-1])) {
        *--e = '\0';
    }
    return s;
}


int
options_load_file(sidecar_options_t *o, const char *path, char *err,
    size_t errlen)
{
    FILE    *f;
    char     line[4096], msg[512], *key, *value, *eq;
    size_t   n = 0, len;

    f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open config file %s: %s", path,
                 strerror(errno));
        return -1;
    }

    while (fgets(line, sizeof(line), f) != NULL) {
        n++;

        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(err, errlen, "%s:%zu: line too long", path, n);
            fclose(f);
            return -1;
        }

        key = trim(line);
        if (*key == '\0' || *key == '#' || *key == ';') {
            continue;
        }

        eq = strchr(key, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s:%zu: expected \"key = value\"", path,
                     n);
            fclose(f);
            return -1;
        }

        *eq = '\0';
        key = trim(key);
        value = trim(eq + 1);

        len = strlen(value);
        if (len >= 2 && ((value[0] == '"' && value[len - 1] == '"')
                         || (value[0] == '\'' && value[len - 1] == '\'')))
        {
            value[len - 1] = '\0';
            value++;
        }

        if (options_set(o, key, value, msg, sizeof(msg)) != 0) {
            snprintf(err, errlen, "%s:%zu: %s", path, n, msg);
            fclose(f);
            return -1;
        }
    }

    fclose(f);
    return 0;
}


/*
 * Loopback only: the sidecar has no authentication of its own; nginx
 * (auth_basic) is the way in from outside.
 */
static int
loopback_host(const char *host, int *v6)
{
    struct in_addr   a4;
    struct in6_addr  a6;

    *v6 = 0;
    if (strcmp(host, "localhost") == 0) {
        return 1;
    }
    if (inet_pton(AF_INET, host, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        *v6 = 1;
        return IN6_IS_ADDR_LOOPBACK(&a6);
    }
    return 0;
}


/* splits "host:port", "[v6]:port" or "port"; -1 when malformed */
static int
split_host_port(const char *s, char *host, size_t hostsz, long *port)
{
    const char  *colon, *p;
    char        *end;
    size_t       len;

    if (s[0] == '[') {
        p = strchr(s, ']');
        if (p == NULL || p[1] != ':') {
            return -1;
        }
        len = (size_t) (p - s - 1);
        colon = p + 1;
        s++;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            snprintf(host, hostsz, "127.0.0.1");
            colon = s - 1;
            len = 0;
        } else {
            len = (size_t) (colon - s);
        }
    }

    if (colon >= s) {
        if (len == 0 || len >= hostsz) {
            return -1;
        }
        memcpy(host, s, len);
        host[len] = '\0';
    }

    errno = 0;
    *port = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || *port < 0
        || *port > 65535)
    {
        return -1;
    }
    return 0;
}


int
options_validate(sidecar_options_t *o, char *err, size_t errlen)
{
    char   host[256];
    long   port;
    int    v6, local;

    if (split_host_port(o->listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "--listen \"%s\": expected 127.0.0.1:PORT, "
                 "[::1]:PORT or PORT", o->listen);
        return -1;
    }
    if (!loopback_host(host, &v6)) {
        snprintf(err, errlen, "--listen \"%s\": refusing a non-loopback "
                 "address; the sidecar serves 127.0.0.1 or [::1] only "
                 "(put nginx in front for remote access)", o->listen);
        return -1;
    }
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    }
    snprintf(o->listen_url, sizeof(o->listen_url),
             v6 ? "http://[%s]:%ld" : "http://%s:%ld", host, port);

    if (strncmp(o->ingest, "ipc://", 6) == 0) {
        if (o->ingest[6] == '\0') {
            snprintf(err, errlen, "--ingest \"%s\": missing socket path",
                     o->ingest);
            return -1;
        }
    } else if (strncmp(o->ingest, "abstract://", 11) == 0) {
        /* Linux abstract socket: local by construction */
    } else if (strncmp(o->ingest, "tcp://", 6) == 0) {
        if (split_host_port(o->ingest + 6, host, sizeof(host), &port) != 0
            || strchr(o->ingest + 6, ':') == NULL
            || !loopback_host(host, &v6) || port == 0)
        {
            snprintf(err, errlen, "--ingest \"%s\": refusing; tcp ingest "
                     "must be tcp://127.0.0.1:PORT (loopback)", o->ingest);
            return -1;
        }
    } else {
        snprintf(err, errlen, "--ingest \"%s\": use ipc://PATH, "
                 "abstract://NAME or tcp://127.0.0.1:PORT", o->ingest);
        return -1;
    }

    /* a tcp peer has no credentials the kernel could tell us */
    local = strncmp(o->ingest, "tcp://", 6) != 0;

    if (o->ingest_peers[0] == '\0') {
        o->ingest_check_peers = local && o->nginx_pid_file[0] != '\0';

    } else if (strcmp(o->ingest_peers, "any") == 0) {
        o->ingest_check_peers = 0;

    } else if (strcmp(o->ingest_peers, "nginx") == 0) {
        if (!local || o->nginx_pid_file[0] == '\0') {
            snprintf(err, errlen, "--ingest-peers nginx needs an ipc:// or "
                     "abstract:// --ingest and an --nginx-pid-file");
            return -1;
        }
        o->ingest_check_peers = 1;

    } else {
        snprintf(err, errlen, "--ingest-peers \"%s\": expected nginx or any",
                 o->ingest_peers);
        return -1;
    }

    /* the socket file's permissions are the events' only access control */
    if (o->events[0] != '\0'
        && (strncmp(o->events, "ipc://", 6) != 0 || o->events[6] == '\0'
            || strcmp(o->events, o->ingest) == 0))
    {
        snprintf(err, errlen, "--events \"%s\": use ipc://PATH (its file's "
                 "permissions, --events-mode, say who may send), other than "
                 "--ingest", o->events);
        return -1;
    }

    if (o->coll.very_slow_us < o->coll.slow_us) {
        snprintf(err, errlen, "--very-slow-ms (%u) is below --slow-ms (%u)",
                 o->coll.very_slow_us / 1000, o->coll.slow_us / 1000);
        return -1;
    }

    if (strncmp(o->mongo_uri, "mongodb://", 10) != 0
        && strncmp(o->mongo_uri, "mongodb+srv://", 14) != 0)
    {
        snprintf(err, errlen, "--mongo-uri: expected mongodb://...");
        return -1;
    }

    if (o->html_dir[0] == '\0') {
        snprintf(err, errlen, "--html-dir is empty");
        return -1;
    }

    return 0;
}


/* prints text from column `indent` on, wrapped before column `width` */
static void
usage_wrap(const char *text, int indent, int width)
{
    const char  *p = text, *end;
    int          col = indent, len;

    while (*p != '\0') {
        end = strchr(p, ' ');
        len = end ? (int) (end - p) : (int) strlen(p);

        if (col > indent && col + 1 + len > width) {
            printf("\n%*s", indent, "");
            col = indent;
        }
        printf(" %.*s", len, p);
        col += 1 + len;
        p += len;
        while (*p == ' ') {
            p++;
        }
    }
    printf("\n");
}


void
options_usage(const char *prog)
{
    const opt_def_t  *d;
    char              flag[64];

    printf("usage: %s [options]\n\n"
           "chat-sidecar " SIDECAR_VERSION ": metrics collector and "
           "dashboard API\nfor the chat nginx module.\n\n"
           "  -c, --config FILE      read `name = value` lines (the long "
           "option names)\n"
           "  -t, --test-config      check the options and exit\n"
           "      --ping-db          ping the database once and exit "
           "(0 = answered)\n"
           "  -h, --help             this text\n"
           "  -V, --version          print the version\n\n", prog);

    for (d = opt_defs; d->name != NULL; d++) {
        snprintf(flag, sizeof(flag), "--%s %s", d->name, d->arg);
        printf("      %-26s", flag);
        usage_wrap(d->help, 32, 79);
    }
}


options_result_e
options_parse(sidecar_options_t *o, int argc, char **argv, char *err,
    size_t errlen)
{
    int          i, pass;
    const char  *arg, *name, *value;
    char         namebuf[64];
    const char  *eq;

    options_defaults(o);

    /* pass 0 finds --config and the flags without values; pass 1 applies
       the valued flags over the config file */
    for (pass = 0; pass < 2; pass++) {
        if (pass == 1 && o->config_file[0] != '\0') {
            if (options_load_file(o, o->config_file, err, errlen) != 0) {
                return OPTIONS_ERROR;
            }
        }

        for (i = 1; i < argc; i++) {
            arg = argv[i];

            if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
                if (pass == 0) {
                    options_usage(argv[0]);
                    return OPTIONS_EXIT_OK;
                }
                continue;
            }
            if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
                if (pass == 0) {
                    printf("chat-sidecar %s\n", SIDECAR_VERSION);
                    return OPTIONS_EXIT_OK;
                }
                continue;
            }
            if (strcmp(arg, "-t") == 0
                || strcmp(arg, "--test-config") == 0)
            {
                o->test_config = 1;
                continue;
            }
            if (strcmp(arg, "--ping-db") == 0) {
                o->ping_db = 1;
                continue;
            }

            if (strncmp(arg, "--", 2) != 0 && strcmp(arg, "-c") != 0) {
                snprintf(err, errlen, "unexpected argument \"%s\" (see "
                         "--help)", arg);
                return OPTIONS_ERROR;
            }

            name = strcmp(arg, "-c") == 0 ? "config" : arg + 2;
            eq = strchr(name, '=');
            if (eq != NULL) {
                snprintf(namebuf, sizeof(namebuf), "%.*s",
                         (int) (eq - name), name);
                name = namebuf;
                value = eq + 1;
            } else {
                if (i + 1 >= argc) {
                    snprintf(err, errlen, "%s needs a value", arg);
                    return OPTIONS_ERROR;
                }
                value = argv[++i];
            }

            if (strcmp(name, "config") == 0) {
                if (pass == 0) {
                    snprintf(o->config_file, sizeof(o->config_file), "%s",
                             value);
                }
                continue;
            }

            if (pass == 0) {
                if (opt_find(name) == NULL) {
                    snprintf(err, errlen, "unknown option --%s (see "
                             "--help)", name);
                    return OPTIONS_ERROR;
                }
                continue;
            }

            if (options_set(o, name, value, err, errlen) != 0) {
                return OPTIONS_ERROR;
            }
        }
    }

    if (options_validate(o, err, errlen) != 0) {
        return OPTIONS_ERROR;
    }

    return OPTIONS_RUN;
}
