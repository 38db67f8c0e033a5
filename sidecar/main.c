/*
 * main.c - chat-sidecar: options, start-up order, signals, shutdown.
 *
 * Threads: main (waits for signals), ingest (nng PULL loop), db
 * (mongoc), and nng's own HTTP worker threads.  Signals are blocked in
 * every thread (the mask is set before any thread exists) and taken with
 * sigwait() here, so no handler ever runs inside library code.
 */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mongoc/mongoc.h>

#include "collector.h"
#include "dashboard_json.h"
#include "dbstats.h"
#include "http_routes.h"
#include "ingest.h"
#include "isotime.h"
#include "log.h"
#include "options.h"
#include "procstats.h"
#include "view.h"


/*
 * mongoc's errors go through our log as warnings, its warnings as info.
 * FerretDB has no endSessions, so every client shutdown against it warns
 * "Couldn't send endSessions": harmless, kept at debug.
 */
static void
sidecar_mongoc_log(mongoc_log_level_t level, const char *domain,
    const char *msg, void *data)
{
    (void) data;

    if (level <= MONGOC_LOG_LEVEL_ERROR) {
        log_warn("mongoc %s: %s", domain, msg);
    } else if (level == MONGOC_LOG_LEVEL_WARNING) {
        if (strstr(msg, "endSessions") != NULL) {
            log_debug("mongoc %s: %s", domain, msg);
        } else {
            log_info("mongoc %s: %s", domain, msg);
        }
    }
}


static int
write_pid_file(const char *path)
{
    FILE  *f;

    f = fopen(path, "w");
    if (f == NULL) {
        log_error("cannot write pid file %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "%ld\n", (long) getpid());
    fclose(f);
    return 0;
}


/*
 * The key nginx adds to every request it passes (X-Sidecar-Key): read
 * once at start; its characters need no quoting in nginx.conf.
 */
static int
read_key_file(const char *path, char *key, size_t size)
{
    FILE    *f;
    size_t   n, i;

    if (path[0] == '\0') {
        log_error("no --http-key-file: the sidecar serves only requests "
                  "carrying the key nginx adds (see docs/SECURITY.md)");
        return -1;
    }

    f = fopen(path, "r");
    if (f == NULL) {
        log_error("cannot read --http-key-file %s: %s", path,
                  strerror(errno));
        return -1;
    }
    n = fread(key, 1, size - 1, f);
    fclose(f);
    key[n] = '\0';

    while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r'
                     || key[n - 1] == ' '))
    {
        key[--n] = '\0';
    }

    for (i = 0; i < n; i++) {
        if (strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                   "0123456789._~+/=-", key[i]) == NULL)
        {
            break;
        }
    }
    if (n < HTTP_ROUTES_KEY_MIN || n == size - 1 || i < n) {
        log_error("--http-key-file %s: expected one line of 16 to 256 "
                  "characters of A-Z a-z 0-9 . _ ~ + / = -", path);
        return -1;
    }
    return 0;
}


/* the database thread names the groups of the last 20 events and the
   live ones (dashboard_json shows 20 events) */
static size_t
ws_group_ids(void *arg, char (*ids)[DB_GROUP_ID_SZ], size_t max)
{
    static char  buf[DB_NAMES_MAX][COLL_GROUP_SZ];
    size_t       i, n;

    if (max > DB_NAMES_MAX) {
        max = DB_NAMES_MAX;
    }
    _Static_assert(COLL_GROUP_SZ <= DB_GROUP_ID_SZ, "group id sizes");

    n = collector_ws_group_ids(arg, buf, max, DASH_RECENT_WS_EVENTS);
    for (i = 0; i < n; i++) {
        memcpy(ids[i], buf[i], COLL_GROUP_SZ);
    }
    return n;
}


static int
run(const sidecar_options_t *o, const sigset_t *sigs)
{
    collector_t        *collector = NULL;
    procstats_t        *proc = NULL;
    ingest_t           *ingest = NULL, *events = NULL;
    dbstats_t          *db = NULL;
    http_routes_t      *http = NULL;
    http_routes_ctx_t   ctx;
    dbstats_config_t    dbc;
    char                err[1024], key[258];
    static char         hostname[OPT_STR_SZ];
    int                 sig, port, rc = 1;
    uint64_t            mono = isotime_mono_us();

    if (read_key_file(o->http_key_file, key, sizeof(key)) != 0) {
        return 1;
    }

    collector = collector_create(&o->coll, isotime_wall_us(), mono);
    if (collector == NULL) {
        log_error("cannot create the collector (out of memory?)");
        goto done;
    }

    proc = procstats_create(o->nginx_pid_file[0] ? o->nginx_pid_file : NULL,
                            NULL);
    if (proc == NULL) {
        log_error("out of memory");
        goto done;
    }

    dbc.uri = o->mongo_uri;
    dbc.refresh_us = (uint64_t) (o->db_refresh_s * 1e6);
    dbc.query_timeout_ms = o->db_timeout_ms;
    dbc.want_names = ws_group_ids;
    dbc.want_arg = collector;
    if (dbstats_start(&db, &dbc, err, sizeof(err)) != 0) {
        log_error("%s", err);
        goto done;
    }

    if (ingest_start(&ingest, INGEST_WORKERS, o->ingest, o->ingest_mode,
                     collector, o->ingest_check_peers ? proc : NULL, err,
                     sizeof(err)) != 0)
    {
        log_error("%s", err);
        goto done;
    }

    if (o->events[0] != '\0'
        && ingest_start(&events, INGEST_EVENTS, o->events, o->events_mode,
                        collector, NULL, err, sizeof(err)) != 0)
    {
        log_error("%s", err);
        goto done;
    }

    ctx.collector = collector;
    ctx.db = db;
    ctx.proc = proc;
    ctx.html_dir = o->html_dir;
    ctx.ingest_url = o->ingest;
    if (o->host_name[0] != '\0') {
        snprintf(hostname, sizeof(hostname), "%s", o->host_name);

    } else if (gethostname(hostname, sizeof(hostname)) != 0) {
        hostname[0] = '\0';
    }
    hostname[sizeof(hostname) - 1] = '\0';
    ctx.hostname = hostname;
    ctx.start_mono_us = mono;
    ctx.key = key;

    if (http_routes_start(&http, o->listen_url, &ctx, &port, err,
                          sizeof(err)) != 0)
    {
        log_error("%s", err);
        goto done;
    }

    if (o->pid_file[0] != '\0' && write_pid_file(o->pid_file) != 0) {
        goto done;
    }

    log_info("started %s: http on %s (port %d), ingest on %s from %s, "
             "custom events on %s, nginx pid file %s", SIDECAR_VERSION,
             o->listen_url, port, o->ingest,
             o->ingest_check_peers ? "nginx's workers" : "anyone",
             o->events[0] ? o->events : "(none)",
             o->nginx_pid_file[0] ? o->nginx_pid_file : "(none)");

    for ( ;; ) {
        if (sigwait(sigs, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            log_info("SIGHUP ignored (restart to change options)");
            continue;
        }
        log_info("signal %d: shutting down", sig);
        break;
    }

    rc = 0;

done:
    /* reverse order: nothing is stopped while something still uses it */
    http_routes_stop(http);
    ingest_stop(events);
    ingest_stop(ingest);
    dbstats_stop(db);
    procstats_free(proc);
    collector_free(collector);

    if (rc == 0 && o->pid_file[0] != '\0') {
        unlink(o->pid_file);
    }
    if (rc == 0) {
        log_info("stopped");
    }
    return rc;
}


int
main(int argc, char **argv)
{
    static sidecar_options_t  opts;
    sigset_t                  sigs;
    char                      err[1024];
    int                       rc;

    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    switch (options_parse(&opts, argc, argv, err, sizeof(err))) {
    case OPTIONS_EXIT_OK:
        return 0;
    case OPTIONS_ERROR:
        fprintf(stderr, "chat-sidecar: %s\n", err);
        return 2;
    default:
        break;
    }

    log_set_level((log_level_e) opts.log_level);

    if (opts.test_config) {
        printf("chat-sidecar: configuration ok (http %s, ingest %s)\n",
               opts.listen_url, opts.ingest);
        return 0;
    }

    mongoc_init();
    mongoc_log_set_handler(sidecar_mongoc_log, NULL);

    if (opts.ping_db) {
        rc = dbstats_ping(opts.mongo_uri, opts.db_timeout_ms, err,
                          sizeof(err));
        if (rc == 0) {
            printf("chat-sidecar: database ping ok\n");
        } else {
            fprintf(stderr, "chat-sidecar: %s\n", err);
        }
        mongoc_cleanup();
        return rc == 0 ? 0 : 1;
    }

    rc = run(&opts, &sigs);
    mongoc_cleanup();
    return rc;
}
