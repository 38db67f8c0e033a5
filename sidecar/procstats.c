/*
 * procstats.c - /proc readers for the nginx master and its children.
 */

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "isotime.h"
#include "procstats.h"

/* below this the previous CPU figure is reused: a delta over a few
   milliseconds is noise */
#define CPU_MIN_INTERVAL_US  1000000ull


struct procstats_s {
    char             *pid_file;
    char             *root;
    long              ticks;        /* sysconf(_SC_CLK_TCK) */
    long              page_size;
    pthread_mutex_t   lock;
    int               have_prev;
    pid_t             prev_pid;
    uint64_t          prev_mono_us;
    double            prev_cpu_s;
    double            last_percent;
};


typedef struct {
    pid_t               ppid;
    unsigned long long  utime;
    unsigned long long  stime;
    unsigned long long  starttime;
    long long           rss_pages;
} pstat_t;


procstats_t *
procstats_create(const char *pid_file, const char *proc_root)
{
    procstats_t  *p;

    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return NULL;
    }

    p->root = strdup(proc_root ? proc_root : "/proc");
    p->pid_file = pid_file ? strdup(pid_file) : NULL;
    if (p->root == NULL || (pid_file != NULL && p->pid_file == NULL)) {
        procstats_free(p);
        return NULL;
    }

    p->ticks = sysconf(_SC_CLK_TCK);
    if (p->ticks <= 0) {
        p->ticks = 100;
    }
    p->page_size = sysconf(_SC_PAGESIZE);
    if (p->page_size <= 0) {
        p->page_size = 4096;
    }

    pthread_mutex_init(&p->lock, NULL);
    return p;
}


void
procstats_free(procstats_t *p)
{
    if (p == NULL) {
        return;
    }
    free(p->pid_file);
    free(p->root);
    pthread_mutex_destroy(&p->lock);
    free(p);
}


static int
read_file(const char *path, char *buf, size_t size)
{
    FILE    *f;
    size_t   n;

    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (int) n;
}


/*
 * /proc/PID/stat: the command name (field 2) may contain spaces and
 * parentheses, so parsing starts after the LAST ')'.
 */
static int
read_pstat(const procstats_t *p, pid_t pid, pstat_t *st)
{
    char                path[256], buf[1024], *s;
    int                 ppid;
    unsigned long long  v[20];
    long long           rss;
    char                state;

    snprintf(path, sizeof(path), "%s/%d/stat", p->root, (int) pid);
    if (read_file(path, buf, sizeof(buf)) <= 0) {
        return -1;
    }

    s = strrchr(buf, ')');
    if (s == NULL) {
        return -1;
    }

    /* fields 3 (state), 4 (ppid), 5 .. 23 into v[0] .. v[18], 24 (rss) */
    if (sscanf(s + 1,
               " %c %d %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu"
               " %llu %llu %llu %llu %llu %llu %llu %llu %llu %lld",
               &state, &ppid, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12], &v[13],
               &v[14], &v[15], &v[16], &v[17], &v[18], &rss) != 22)
    {
        return -1;
    }

    if (state == 'Z' || state == 'X') {
        return -1;
    }

    st->ppid = ppid;
    st->utime = v[9];       /* field 14 */
    st->stime = v[10];      /* field 15 */
    st->starttime = v[17];  /* field 22 */
    st->rss_pages = rss;    /* field 24 */
    return 0;
}


static pid_t
read_pid_file(const char *path)
{
    char  buf[64], *end;
    long  v;

    if (read_file(path, buf, sizeof(buf)) <= 0) {
        return 0;
    }

    errno = 0;
    v = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || v <= 0 || v > 0x7fffffffL) {
        return 0;
    }
    return (pid_t) v;
}


int
procstats_is_nginx_process(const procstats_t *p, pid_t pid)
{
    char     oldbin[PATH_MAX];
    pid_t    master, old, parent;
    pstat_t  st;

    if (p->pid_file == NULL) {
        return -1;
    }

    /* read each time: nginx may have been restarted since */
    master = read_pid_file(p->pid_file);

    if (master <= 0 || pid <= 0) {
        return 0;
    }

    if (pid == master) {
        return 1;
    }

    parent = read_pstat(p, pid, &st) == 0 ? st.ppid : 0;

    if (parent == master) {
        return 1;
    }

    /*
     * A binary upgrade (nginx's USR2): the old master renames its pid file
     * to PID_FILE.oldbin and forks the new master, which writes PID_FILE;
     * until the old master is told to quit, its workers still serve and
     * push.  They are its children, and it is the new master's parent: a
     * stale .oldbin (the old master long gone, its pid reused) fails that.
     */
    if (snprintf(oldbin, sizeof(oldbin), "%s.oldbin", p->pid_file)
        >= (int) sizeof(oldbin))
    {
        return 0;
    }

    old = read_pid_file(oldbin);

    if (old <= 0 || (pid != old && parent != old)) {
        return 0;
    }

    return read_pstat(p, master, &st) == 0 && st.ppid == old;
}


static void
read_meminfo(const procstats_t *p, proc_sample_t *out)
{
    char                path[256], buf[8192], *s;
    unsigned long long  total = 0, avail = 0;
    int                 have_avail = 0;

    snprintf(path, sizeof(path), "%s/meminfo", p->root);
    if (read_file(path, buf, sizeof(buf)) <= 0) {
        return;
    }

    if ((s = strstr(buf, "MemTotal:")) != NULL) {
        total = strtoull(s + 9, NULL, 10);
    }
    if ((s = strstr(buf, "MemAvailable:")) != NULL) {
        avail = strtoull(s + 13, NULL, 10);
        have_avail = 1;
    }

    if (total == 0 || !have_avail) {
        return;
    }

    out->sys_ok = 1;
    out->sys_total_mb = (double) total / 1024.0;
    out->sys_avail_mb = (double) avail / 1024.0;
    out->sys_mem_percent = 100.0 * (double) (total - (avail < total ? avail
                                                                   : total))
                           / (double) total;
}


static int
read_sys_uptime(const procstats_t *p, double *uptime)
{
    char  path[256], buf[128];

    snprintf(path, sizeof(path), "%s/uptime", p->root);
    if (read_file(path, buf, sizeof(buf)) <= 0) {
        return -1;
    }
    *uptime = strtod(buf, NULL);
    return *uptime > 0 ? 0 : -1;
}


/*
 * Sums RSS and CPU ticks over the master and its direct children (nginx
 * workers, cache manager/loader); one pass over /proc.
 */
static void
sum_family(const procstats_t *p, pid_t master, const pstat_t *mst,
    proc_sample_t *out, unsigned long long *ticks)
{
    DIR            *d;
    struct dirent  *e;
    pstat_t         st;
    long long       rss_pages;
    char           *end;
    long            pid;

    rss_pages = mst->rss_pages;
    *ticks = mst->utime + mst->stime;
    out->nprocs = 1;

    d = opendir(p->root);
    if (d != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (!isdigit((unsigned char) e->d_name[0])) {
                continue;
            }
            pid = strtol(e->d_name, &end, 10);
            if (*end != '\0' || pid == master) {
                continue;
            }
            if (read_pstat(p, (pid_t) pid, &st) != 0 || st.ppid != master) {
                continue;
            }
            rss_pages += st.rss_pages;
            *ticks += st.utime + st.stime;
            out->nprocs++;
        }
        closedir(d);
    }

    out->rss_mb = (double) rss_pages * (double) p->page_size
                  / (1024.0 * 1024.0);
    out->mem_ok = 1;
    if (out->sys_ok && out->sys_total_mb > 0) {
        out->mem_percent = 100.0 * out->rss_mb / out->sys_total_mb;
    }
}


/*
 * CPU percent is a delta of utime+stime over wall time between samples,
 * like psutil's cpu_percent(interval=None).  The first sample, or one
 * after the master changed, averages over the master's lifetime instead.
 * Children that exited take their ticks with them, so a negative delta is
 * clamped to zero.
 */
static void
cpu_percent(procstats_t *p, pid_t pid, double cpu_s, double uptime_s,
    proc_sample_t *out)
{
    uint64_t  now = isotime_mono_us();
    double    dt;

    pthread_mutex_lock(&p->lock);

    if (!p->have_prev || p->prev_pid != pid) {
        out->cpu_percent = uptime_s > 0 ? 100.0 * cpu_s / uptime_s : 0.0;
        p->have_prev = 1;
        p->prev_pid = pid;
        p->prev_mono_us = now;
        p->prev_cpu_s = cpu_s;
        p->last_percent = out->cpu_percent;

    } else if (now - p->prev_mono_us < CPU_MIN_INTERVAL_US) {
        out->cpu_percent = p->last_percent;

    } else {
        dt = (double) (now - p->prev_mono_us) / 1e6;
        out->cpu_percent = cpu_s > p->prev_cpu_s
                           ? 100.0 * (cpu_s - p->prev_cpu_s) / dt : 0.0;
        p->prev_mono_us = now;
        p->prev_cpu_s = cpu_s;
        p->last_percent = out->cpu_percent;
    }

    pthread_mutex_unlock(&p->lock);
    out->cpu_ok = 1;
}


void
procstats_sample(procstats_t *p, proc_sample_t *out)
{
    pstat_t             mst;
    pid_t               pid;
    double              sys_up;
    unsigned long long  ticks;

    memset(out, 0, sizeof(*out));

    read_meminfo(p, out);

    if (p->pid_file == NULL) {
        return;
    }
    out->configured = 1;

    pid = read_pid_file(p->pid_file);
    if (pid == 0 || read_pstat(p, pid, &mst) != 0) {
        return;
    }

    out->alive = 1;
    out->pid = pid;

    if (read_sys_uptime(p, &sys_up) == 0) {
        out->uptime_s = sys_up - (double) mst.starttime / (double) p->ticks;
        if (out->uptime_s < 0) {
            out->uptime_s = 0;
        }
        out->uptime_ok = 1;
        out->start_wall_s = (double) isotime_wall_us() / 1e6 - out->uptime_s;
    }

    sum_family(p, pid, &mst, out, &ticks);
    out->cpu_seconds = (double) ticks / (double) p->ticks;
    cpu_percent(p, pid, out->cpu_seconds, out->uptime_ok ? out->uptime_s : 0,
                out);
}
