/*
 * ps_testnode.c -- a cluster node for the integration tests: joins, runs
 * barriers, reports view changes, and leaves.  Every line it prints is
 * machine-checked by the scripts in tests/integration, so the formats are stable.
 *
 *   ps_testnode [--barriers N] [--wait-dead N] [--wait-ms MS] [--pid-dir DIR]
 *
 * --wait-dead N: after the barriers, wait (at most --wait-ms, default 10000)
 * until the view shows N dead nodes, printing "dead ID at MS" (wall clock)
 * for each as it is reported, then finalize.
 * --pid-dir DIR: write DIR/ROLE.RANK.pid once joined (for fault tests).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ps/ps.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int ndead;

static long long wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void on_view(uint32_t epoch, const uint32_t *dead, int n, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n; i++) printf("dead %u at %lld epoch %u\n", dead[i], wall_ms(), epoch);
    fflush(stdout);
    ndead += n;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static int wait_dead(int want, long wait_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (wait_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&lock);
    int rc = 0;
    while (ndead < want && rc == 0) rc = pthread_cond_timedwait(&cond, &lock, &ts);
    int ok = ndead >= want;
    pthread_mutex_unlock(&lock);
    return ok;
}

static void write_pid(const char *dir)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.%d.pid", dir, ps_role_name(ps_my_role()), ps_my_rank());
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%d\n", (int)getpid());
        fclose(f);
    }
}

int main(int argc, char **argv)
{
    long barriers = 0, want_dead = 0, wait_ms = 10000;
    const char *pid_dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--barriers") && i + 1 < argc) barriers = atol(argv[++i]);
        else if (!strcmp(argv[i], "--wait-dead") && i + 1 < argc) want_dead = atol(argv[++i]);
        else if (!strcmp(argv[i], "--wait-ms") && i + 1 < argc) wait_ms = atol(argv[++i]);
        else if (!strcmp(argv[i], "--pid-dir") && i + 1 < argc) pid_dir = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--barriers N] [--wait-dead N] [--wait-ms MS] [--pid-dir DIR]\n", argv[0]);
            return 2;
        }
    }
    ps_on_view_change(on_view, NULL);
    int rv = ps_start();
    if (rv != 0) {
        fprintf(stderr, "ps_start: %s\n", ps_strerror(rv));
        return 1;
    }
    uint32_t epoch;
    int n = ps_view(&epoch, NULL, 0);
    printf("joined id %u rank %d nodes %d epoch %u\n", ps_my_id(), ps_my_rank(), n, epoch);
    fflush(stdout);
    if (pid_dir) write_pid(pid_dir);
    for (long b = 0; b < barriers; b++) {
        if ((rv = ps_barrier(PS_GROUP_ALL)) != 0) {
            fprintf(stderr, "barrier %ld: %s\n", b, ps_strerror(rv));
            ps_finalize();
            return 1;
        }
    }
    printf("barriers %ld done\n", barriers);
    fflush(stdout);
    if (want_dead && !wait_dead((int)want_dead, wait_ms)) {
        fprintf(stderr, "timed out waiting for %ld dead nodes\n", want_dead);
        ps_finalize();
        return 1;
    }
    rv = ps_finalize();
    printf("finalized: %s\n", ps_strerror(rv));
    return rv == 0 ? 0 : 1;
}
