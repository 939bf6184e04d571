/*
 * psdemo.c -- the smallest useful libps program: every node joins, the
 * workers print the cluster view they were given, then all nodes time a
 * series of barriers and worker 0 reports the latency distribution.
 *
 * Run it under psrun:  psrun -s 2 -w 4 -- psdemo --barriers 1000
 * It uses only the public API (ps/ps.h); read it as the first example.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ps/ps.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_view(void)
{
    ps_node_info nodes[64];
    uint32_t epoch;
    int n = ps_view(&epoch, nodes, 64);
    printf("cluster view %u: %d nodes\n", epoch, n);
    for (int i = 0; i < n && i < 64; i++)
        printf("  node %-3u %-9s rank %-3d %s\n", nodes[i].id, ps_role_name(nodes[i].role),
               nodes[i].rank, nodes[i].addr);
}

static void report(double *lat, long n)
{
    qsort(lat, (size_t)n, sizeof(double), cmp_double);
    printf("%ld barriers over %d servers + %d workers + scheduler: p50 %.1f us, p99 %.1f us, "
           "max %.1f us\n", n, ps_num_servers(), ps_num_workers(), lat[n / 2],
           lat[(long)(n * 0.99)], lat[n - 1]);
}

int main(int argc, char **argv)
{
    long iters = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--barriers") && i + 1 < argc) iters = atol(argv[++i]);
        else {
            printf("usage: psdemo [--barriers N]   (run under psrun)\n");
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    if (iters < 1) iters = 1;
    int rv = ps_start();
    if (rv != 0) {
        fprintf(stderr, "psdemo: cannot join the cluster: %s\n", ps_strerror(rv));
        return 1;
    }
    if (ps_my_role() == PS_ROLE_WORKER && ps_my_rank() == 0) print_view();
    double *lat = malloc((size_t)iters * sizeof(double));
    for (long i = 0; lat && i < iters && rv == 0; i++) {
        double t0 = now_us();
        rv = ps_barrier(PS_GROUP_ALL);
        lat[i] = now_us() - t0;
    }
    if (rv == 0 && lat && ps_my_role() == PS_ROLE_WORKER && ps_my_rank() == 0) report(lat, iters);
    free(lat);
    int frv = ps_finalize();
    if (rv == 0) rv = frv;
    if (rv != 0) fprintf(stderr, "psdemo: %s\n", ps_strerror(rv));
    return ps_exit_code(rv != 0);
}
