/*
 * test_procstats.c - /proc figures from a fake /proc tree, and graceful
 * degradation when /proc cannot be read.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sidecar/procstats.h"
#include "unit.h"


static void
write_file(const char *dir, const char *name, const char *text)
{
    char   path[1024];
    FILE  *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}


/* a stat line: utime, stime, starttime (ticks) and rss (pages) */
static void
fake_proc(const char *root, int pid, int ppid, const char *comm,
    unsigned long long ut, unsigned long long st, unsigned long long start,
    long rss)
{
    char  dir[512], line[512];

    snprintf(dir, sizeof(dir), "%s/%d", root, pid);
    mkdir(dir, 0755);
    snprintf(line, sizeof(line),
             "%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 %llu %llu 0 0 20 0 "
             "1 0 %llu 100000000 %ld 18446744073709551615 1 1 0 0 0 0 0 0 "
             "0 0 0 0 17 0 0 0 0 0 0\n",
             pid, comm, ppid, pid, pid, ut, st, start, rss);
    write_file(dir, "stat", line);
}


static void
procstats_sums_master_and_children(void)
{
    char            root[] = "/tmp/sidecar-procXXXXXX", pidf[600];
    procstats_t    *p;
    proc_sample_t   s;
    long            ticks = sysconf(_SC_CLK_TCK);
    double          page_mb = (double) sysconf(_SC_PAGESIZE) / 1048576.0;

    CHECK(mkdtemp(root) != NULL);
    write_file(root, "meminfo", "MemTotal:       16000000 kB\n"
                                "MemFree:         1000000 kB\n"
                                "MemAvailable:    8000000 kB\n");
    write_file(root, "uptime", "10000.00 20000.00\n");
    /* master started at 4000 s after boot: uptime 6000 s */
    fake_proc(root, 500, 1, "nginx", 100, 50, 4000ull * (unsigned) ticks,
              1000);
    fake_proc(root, 501, 500, "nginx", 300, 50, 4001ull * (unsigned) ticks,
              2000);
    fake_proc(root, 502, 500, "ng) weird (name", 0, 0, 0, 3000);
    fake_proc(root, 600, 1, "other", 999, 999, 0, 99999);
    snprintf(pidf, sizeof(pidf), "%s/nginx.pid", root);
    write_file(root, "nginx.pid", "500\n");

    p = procstats_create(pidf, root);
    procstats_sample(p, &s);

    CHECK(s.configured && s.alive && s.pid == 500);
    CHECK(s.nprocs == 3);
    CHECK(s.uptime_ok && s.uptime_s > 5999.9 && s.uptime_s < 6000.1);
    CHECK(s.mem_ok && s.rss_mb > 6000 * page_mb - 0.01
          && s.rss_mb < 6000 * page_mb + 0.01);
    CHECK(s.sys_ok && s.sys_mem_percent == 50.0);
    CHECK(s.sys_avail_mb == 8000000.0 / 1024.0);
    CHECK(s.cpu_ok);
    CHECK(s.cpu_seconds == 500.0 / (double) ticks);
    procstats_free(p);

    /* the pid file points at a process that is gone */
    write_file(root, "nginx.pid", "999\n");
    p = procstats_create(pidf, root);
    procstats_sample(p, &s);
    CHECK(s.configured && !s.alive && !s.mem_ok && !s.uptime_ok);
    CHECK(s.sys_ok);
    procstats_free(p);

    CHECK(system("rm -rf /tmp/sidecar-proc??????") == 0);
}


static void
procstats_unreadable_proc_degrades_to_missing(void)
{
    procstats_t    *p;
    proc_sample_t   s;

    p = procstats_create("/nonexistent/nginx.pid", "/nonexistent-proc");
    procstats_sample(p, &s);
    CHECK(s.configured && !s.alive);
    CHECK(!s.sys_ok && !s.mem_ok && !s.cpu_ok && !s.uptime_ok);
    procstats_free(p);

    p = procstats_create(NULL, NULL);   /* the real /proc, no nginx */
    procstats_sample(p, &s);
    CHECK(!s.configured && s.sys_ok);
    procstats_free(p);
}


/* the ingest's peer check: a worker is a child of the pid file's master */
static void
procstats_tells_nginx_children_from_others(void)
{
    char          root[] = "/tmp/sidecar-procXXXXXX", pidf[600];
    procstats_t  *p;

    CHECK(mkdtemp(root) != NULL);
    fake_proc(root, 500, 1, "nginx", 0, 0, 0, 1);
    fake_proc(root, 501, 500, "nginx", 0, 0, 0, 1);
    fake_proc(root, 502, 501, "sh", 0, 0, 0, 1);       /* a grandchild */
    fake_proc(root, 600, 1, "intruder", 0, 0, 0, 1);
    snprintf(pidf, sizeof(pidf), "%s/nginx.pid", root);
    write_file(root, "nginx.pid", "500\n");

    p = procstats_create(pidf, root);
    CHECK(procstats_is_nginx_process(p, 501) == 1);
    CHECK(procstats_is_nginx_process(p, 502) == 0);
    CHECK(procstats_is_nginx_process(p, 600) == 0);
    CHECK(procstats_is_nginx_process(p, 500) == 1);   /* master_process off */
    CHECK(procstats_is_nginx_process(p, 777) == 0);       /* gone */
    CHECK(procstats_is_nginx_process(p, 0) == 0);

    /* nginx restarted under another master: read again, 501 is out */
    write_file(root, "nginx.pid", "600\n");
    CHECK(procstats_is_nginx_process(p, 501) == 0);
    write_file(root, "nginx.pid", "garbage\n");
    CHECK(procstats_is_nginx_process(p, 501) == 0);
    procstats_free(p);

    p = procstats_create(NULL, root);
    CHECK(procstats_is_nginx_process(p, 501) == -1);     /* cannot tell */
    procstats_free(p);
}


/* nginx's binary upgrade: old master 500 (nginx.pid.oldbin) forked the new
   master 700 (nginx.pid); both generations' workers may push until the old
   master quits, and only while the new master is the old one's child */
static void
procstats_accepts_both_generations_of_a_binary_upgrade(void)
{
    char          root[] = "/tmp/sidecar-procXXXXXX", pidf[600];
    procstats_t  *p;

    CHECK(mkdtemp(root) != NULL);
    fake_proc(root, 500, 1, "nginx", 0, 0, 0, 1);
    fake_proc(root, 501, 500, "nginx", 0, 0, 0, 1);      /* old worker */
    fake_proc(root, 700, 500, "nginx", 0, 0, 0, 1);      /* new master */
    fake_proc(root, 701, 700, "nginx", 0, 0, 0, 1);      /* new worker */
    fake_proc(root, 600, 1, "intruder", 0, 0, 0, 1);
    fake_proc(root, 601, 600, "intruder", 0, 0, 0, 1);
    snprintf(pidf, sizeof(pidf), "%s/nginx.pid", root);

    write_file(root, "nginx.pid", "700\n");
    p = procstats_create(pidf, root);

    /* before the rename (or without one): only the new generation */
    CHECK(procstats_is_nginx_process(p, 701) == 1);
    CHECK(procstats_is_nginx_process(p, 501) == 0);

    write_file(root, "nginx.pid.oldbin", "500\n");
    CHECK(procstats_is_nginx_process(p, 701) == 1);
    CHECK(procstats_is_nginx_process(p, 501) == 1);
    CHECK(procstats_is_nginx_process(p, 500) == 1);
    CHECK(procstats_is_nginx_process(p, 600) == 0);
    CHECK(procstats_is_nginx_process(p, 601) == 0);

    /* a stale .oldbin naming a process the new master is no child of */
    write_file(root, "nginx.pid.oldbin", "600\n");
    CHECK(procstats_is_nginx_process(p, 601) == 0);
    CHECK(procstats_is_nginx_process(p, 501) == 0);
    CHECK(procstats_is_nginx_process(p, 701) == 1);
    procstats_free(p);
}


void
suite_procstats(void)
{
    RUN(procstats_sums_master_and_children);
    RUN(procstats_unreadable_proc_degrades_to_missing);
    RUN(procstats_tells_nginx_children_from_others);
    RUN(procstats_accepts_both_generations_of_a_binary_upgrade);
}
