/*
 * test_options.c - defaults, loopback-only listening, config file and
 * command line precedence, bad values refused.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sidecar/options.h"
#include "unit.h"


static options_result_e
parse(sidecar_options_t *o, char *err, size_t errlen, ...)
{
    char     *argv[32];
    int       argc = 0;
    va_list   ap;
    char     *a;

    argv[argc++] = "chat-sidecar";
    va_start(ap, errlen);
    while ((a = va_arg(ap, char *)) != NULL && argc < 31) {
        argv[argc++] = a;
    }
    va_end(ap);
    argv[argc] = NULL;

    return options_parse(o, argc, argv, err, errlen);
}


static void
options_defaults_are_the_specs(void)
{
    static sidecar_options_t  o;
    char                      err[512];

    CHECK(parse(&o, err, sizeof(err), NULL) == OPTIONS_RUN);
    CHECK(o.coll.slow_max == 100);
    CHECK(o.coll.recent_max == 50);
    CHECK(o.coll.errors_max == 50);
    CHECK(o.coll.ws_events_max == 100);
    CHECK(o.coll.custom_max == 100);
    CHECK(o.coll.slow_us == 1000000);
    CHECK(o.coll.very_slow_us == 5000000);
    CHECK(o.coll.worker_timeout_us == 15000000);
    CHECK(o.host_name[0] == '\0');         /* gethostname() */
    CHECK(parse(&o, err, sizeof(err), "--host-name", "chat-2", NULL)
          == OPTIONS_RUN);
    CHECK(strcmp(o.host_name, "chat-2") == 0);
    CHECK(o.coll.history_minutes >= 60);
    CHECK(o.db_refresh_s == 1);
    CHECK(strcmp(o.listen_url, "http://127.0.0.1:9180") == 0);
}


static void
options_refuse_non_loopback_listen_addresses(void)
{
    static sidecar_options_t  o;
    char                      err[512];

    CHECK(parse(&o, err, sizeof(err), "--listen", "0.0.0.0:9180", NULL)
          == OPTIONS_ERROR);
    CHECK(strstr(err, "non-loopback") != NULL);
    CHECK(parse(&o, err, sizeof(err), "--listen", "10.1.2.3:80", NULL)
          == OPTIONS_ERROR);
    CHECK(parse(&o, err, sizeof(err), "--listen=[::]:80", NULL)
          == OPTIONS_ERROR);
    CHECK(parse(&o, err, sizeof(err), "--listen", "example.com:80", NULL)
          == OPTIONS_ERROR);
    CHECK(parse(&o, err, sizeof(err), "--ingest", "tcp://0.0.0.0:5555",
                NULL) == OPTIONS_ERROR);
    CHECK(parse(&o, err, sizeof(err), "--ingest", "ws://127.0.0.1:1/x",
                NULL) == OPTIONS_ERROR);
}


static void
options_accept_loopback_forms(void)
{
    static sidecar_options_t  o;
    char                      err[512];

    CHECK(parse(&o, err, sizeof(err), "--listen", "127.0.0.1:8000", NULL)
          == OPTIONS_RUN);
    CHECK(strcmp(o.listen_url, "http://127.0.0.1:8000") == 0);
    CHECK(parse(&o, err, sizeof(err), "--listen=8001", NULL) == OPTIONS_RUN);
    CHECK(strcmp(o.listen_url, "http://127.0.0.1:8001") == 0);
    CHECK(parse(&o, err, sizeof(err), "--listen", "[::1]:8002", NULL)
          == OPTIONS_RUN);
    CHECK(strcmp(o.listen_url, "http://[::1]:8002") == 0);
    CHECK(parse(&o, err, sizeof(err), "--listen", "localhost:0",
                "--ingest", "tcp://127.0.0.1:5555", NULL) == OPTIONS_RUN);
    CHECK(strcmp(o.listen_url, "http://127.0.0.1:0") == 0);
}


static void
options_config_file_then_command_line(void)
{
    static sidecar_options_t  o;
    char                      err[512], path[] = "/tmp/sidecar-optXXXXXX";
    FILE                     *f;
    int                       fd;

    fd = mkstemp(path);
    f = fdopen(fd, "w");
    fprintf(f, "# comment\n\n"
               "listen = 127.0.0.1:7000\n"
               "slow_ms = 250\n"
               "very-slow-ms = 2000\n"
               "endpoint-cap = 10\n"
               "html-dir = \"/srv/html\"\n"
               "db-refresh = 2.5\n");
    fclose(f);

    CHECK(parse(&o, err, sizeof(err), "--config", path, "--endpoint-cap",
                "20", NULL) == OPTIONS_RUN);
    CHECK(strcmp(o.listen_url, "http://127.0.0.1:7000") == 0);
    CHECK(o.coll.slow_us == 250000);
    CHECK(o.coll.very_slow_us == 2000000);
    CHECK(o.coll.endpoint_cap == 20);           /* command line wins */
    CHECK(strcmp(o.html_dir, "/srv/html") == 0);
    CHECK(o.db_refresh_s == 2.5);

    f = fopen(path, "w");
    fprintf(f, "listen = 127.0.0.1:7000\nno-such-thing = 1\n");
    fclose(f);
    CHECK(parse(&o, err, sizeof(err), "-c", path, NULL) == OPTIONS_ERROR);
    CHECK(strstr(err, ":2:") != NULL);

    unlink(path);
}


static void
options_refuse_bad_values(void)
{
    static sidecar_options_t  o;
    char                      err[512];

    CHECK(parse(&o, err, sizeof(err), "--slow-max", "0", NULL)
          == OPTIONS_ERROR);
    CHECK(parse(&o, err, sizeof(err), "--slow-max", "12x", NULL)
          == OPTIONS_ERROR);
    CHECK(parse(&o, err, sizeof(err), "--endpoint-cap", "-5", NULL)
          == OPTIONS_ERROR);
    CHECK(parse(&o, err, sizeof(err), "--slow-ms", "3000", NULL)
          == OPTIONS_RUN);                  /* still below very-slow */
    CHECK(parse(&o, err, sizeof(err), "--slow-ms", "6000", NULL)
          == OPTIONS_ERROR);
    CHECK(strstr(err, "very-slow") != NULL);
    CHECK(parse(&o, err, sizeof(err), "--bogus", "1", NULL)
          == OPTIONS_ERROR);
    CHECK(parse(&o, err, sizeof(err), "--listen", NULL) == OPTIONS_ERROR);
}


static void
options_ingest_peers_default_to_nginx_with_a_pid_file(void)
{
    static sidecar_options_t  o;
    char                      err[512];

    CHECK(parse(&o, err, sizeof(err), NULL) == OPTIONS_RUN);
    CHECK(o.ingest_check_peers == 0);       /* no pid file: cannot tell */

    CHECK(parse(&o, err, sizeof(err), "--nginx-pid-file", "/run/nginx.pid",
                NULL) == OPTIONS_RUN);
    CHECK(o.ingest_check_peers == 1);

    CHECK(parse(&o, err, sizeof(err), "--nginx-pid-file", "/run/nginx.pid",
                "--ingest", "abstract://chat", NULL) == OPTIONS_RUN);
    CHECK(o.ingest_check_peers == 1);

    CHECK(parse(&o, err, sizeof(err), "--nginx-pid-file", "/run/nginx.pid",
                "--ingest-peers", "any", NULL) == OPTIONS_RUN);
    CHECK(o.ingest_check_peers == 0);

    CHECK(parse(&o, err, sizeof(err), "--nginx-pid-file", "/run/nginx.pid",
                "--ingest", "tcp://127.0.0.1:7000", NULL) == OPTIONS_RUN);
    CHECK(o.ingest_check_peers == 0);       /* tcp has no peer pid */

    CHECK(parse(&o, err, sizeof(err), "--nginx-pid-file", "/run/nginx.pid",
                "--ingest", "tcp://127.0.0.1:7000", "--ingest-peers", "nginx",
                NULL) == OPTIONS_ERROR);
    CHECK(strstr(err, "--ingest-peers nginx needs") != NULL);

    CHECK(parse(&o, err, sizeof(err), "--ingest-peers", "nginx", NULL)
          == OPTIONS_ERROR);                /* no pid file */

    CHECK(parse(&o, err, sizeof(err), "--ingest-peers", "all", NULL)
          == OPTIONS_ERROR);
    CHECK(strstr(err, "expected nginx or any") != NULL);
}


void
suite_options(void)
{
    RUN(options_defaults_are_the_specs);
    RUN(options_refuse_non_loopback_listen_addresses);
    RUN(options_accept_loopback_forms);
    RUN(options_config_file_then_command_line);
    RUN(options_refuse_bad_values);
    RUN(options_ingest_peers_default_to_nginx_with_a_pid_file);
}
