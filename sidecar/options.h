/*
 * options.h - command line flags and the `key = value` config file.
 *
 * Every long flag --name VALUE (or --name=VALUE) can also be written in
 * the file given by --config as `name = value` ('_' may replace '-').
 * Precedence: defaults < config file < command line.  Validation happens
 * here, before anything starts: a non-loopback listen address, a
 * non-local ingest transport or an impossible size is refused with one
 * clear line.
 */

#ifndef SIDECAR_OPTIONS_H
#define SIDECAR_OPTIONS_H

#include <stddef.h>

#include "collector.h"

#define OPT_STR_SZ  1024

typedef struct {
    char           config_file[OPT_STR_SZ];
    char           listen[OPT_STR_SZ];       /* as given */
    char           listen_url[OPT_STR_SZ];   /* http://127.0.0.1:9180 */
    char           http_key_file[OPT_STR_SZ];
    char           ingest[OPT_STR_SZ];
    int            ingest_mode;
    char           mongo_uri[OPT_STR_SZ];
    double         db_refresh_s;
    int            db_timeout_ms;
    char           nginx_pid_file[OPT_STR_SZ];
    char           ingest_peers[OPT_STR_SZ]; /* "nginx", "any" or "" */
    int            ingest_check_peers;       /* derived by validate */
    char           events[OPT_STR_SZ];       /* ipc:// or "" (off) */
    int            events_mode;
    char           html_dir[OPT_STR_SZ];
    char           host_name[OPT_STR_SZ];    /* "": gethostname() */
    char           pid_file[OPT_STR_SZ];
    int            log_level;                /* log_level_e */
    coll_config_t  coll;
    int            ping_db;
    int            test_config;
} sidecar_options_t;

typedef enum {
    OPTIONS_RUN = 0,            /* start the daemon */
    OPTIONS_EXIT_OK,            /* --help or --version printed */
    OPTIONS_ERROR               /* message in err */
} options_result_e;

void options_defaults(sidecar_options_t *o);

options_result_e options_parse(sidecar_options_t *o, int argc, char **argv,
    char *err, size_t errlen);

/* one option by long name; used by the parser and by tests */
int options_set(sidecar_options_t *o, const char *name, const char *value,
    char *err, size_t errlen);

/* reads a `key = value` file; -1 with "FILE:LINE: problem" in err */
int options_load_file(sidecar_options_t *o, const char *path, char *err,
    size_t errlen);

/* checks values and derives listen_url; -1 with a message in err */
int options_validate(sidecar_options_t *o, char *err, size_t errlen);

void options_usage(const char *prog);

#endif /* SIDECAR_OPTIONS_H */
