/*
 * report.c -- what psbench prints: latency percentiles, throughput, the
 * wire-bytes model, and the servers' storage line.
 *
 * Definitions (also in bench/README.md):
 *   p50_us, p99_us  per-task latency on worker rank 0, from just before the
 *                   ps_push/ps_pull/ps_pushpull call to the start of its
 *                   completion callback; nearest-rank percentiles.
 *   submit_p50_us   median time spent inside that call on the caller's
 *                   thread (copying, sorting, queueing): part of p50_us.
 *   gbytes_per_s    10^9 bytes of VALUES per second over the whole run:
 *                   sum over workers of iters * keys * val_len * 4, divided
 *                   by the slowest worker's wall time (first submit to last
 *                   completion).  A pushpull counts its values once.
 *   mkeys_per_s     10^6 keys per second, the same way.
 *   per_worker      (several workers only) each worker's own figures, by
 *                   rank: its keys and values over its own wall time, its
 *                   p50_us and submit_p50_us; the totals above are these
 *                   workers' sums over the slowest one's wall time.
 *   orders          --orders: how many orders of the keys were handed over
 *                   in turn (1: the same list every time).
 *   wire_bytes      a MODEL of the request bytes worker rank 0 sent during
 *                   the measured iterations, not a measurement: per request
 *                   and per server slice a 104-byte header, plus 8 bytes per
 *                   key, plus for pushes (and pushpulls) 4 bytes per value
 *                   and a 24-byte aux segment (the push's sequence number,
 *                   origin|via and low watermark, PSI_PUSH_AUX).
 *                   A pull request carries keys only.  The request is
 *                   assumed to touch min(keys, servers) servers (exact for
 *                   one server).  Responses, UCX framing and resends are
 *                   not counted.
 *   transport       UCX_TLS, or "default" when unset; "+PS_SHM=1" is added
 *                   when PS_SHM=1 lets libps's UCX use shared memory.
 *   poll_us         PS_POLL_US as set, or -1 when unset (the library then
 *                   picks its own busy-poll window; see bench/README.md).
 * Output goes to stdout (results) and stderr (server lines); every line is
 * flushed at once because psrun prefixes and interleaves them.
 *
 * Never: print anything but JSON on stdout when --json is given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "psbench.h"

#define HDR_BYTES 104.0
#define AUX_BYTES 24.0 /* PSI_PUSH_AUX: sequence number, origin|via, low watermark */

double pb_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double pb_wire_bytes_per_iter(const pb_opts *o, int servers)
{
    double n = (double)o->keys, slices = n < servers ? n : servers;
    double b = slices * HDR_BYTES + n * 8.0;
    if (o->op != PB_PULL) b += n * (double)o->val_len * 4.0 + slices * AUX_BYTES;
    return b;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double pb_pct(const double *v, long n, double p)
{
    if (n <= 0) return 0;
    long i = (long)(p / 100.0 * (double)n + 0.999999) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static double mean(const double *v, long n)
{
    double s = 0;
    for (long i = 0; i < n; i++) s += v[i];
    return n ? s / (double)n : 0;
}

/* UCX_TLS (or "default"), plus "+PS_SHM=1" when libps may use shared memory. */
static const char *transport(void)
{
    static char buf[256];
    const char *tls = getenv("UCX_TLS"), *shm = getenv("PS_SHM");
    snprintf(buf, sizeof(buf), "%s%s", tls && *tls ? tls : "default",
             shm && strcmp(shm, "1") == 0 ? "+PS_SHM=1" : "");
    return buf;
}

/* PS_POLL_US as set, or -1 when unset (the library picks its default). */
static long poll_us(void)
{
    const char *v = getenv("PS_POLL_US");
    return v && *v ? strtol(v, NULL, 10) : -1;
}

void pb_sort_results(pb_result *r)
{
    qsort(r->lat_us, (size_t)r->nlat, sizeof(double), cmp_double);
    qsort(r->sub_us, (size_t)r->nlat, sizeof(double), cmp_double);
}

static double rate(double x, double wall_s, double unit) { return wall_s > 0 ? x / wall_s / unit : 0; }

static void print_json_workers(const pb_total *t)
{
    if (t->nworkers < 2) return;
    printf(",\"per_worker\":[");
    for (int i = 0; i < t->nworkers; i++) {
        const pb_worker *w = &t->per[i];
        printf("%s{\"rank\":%d,\"wall_s\":%.4f,\"gbytes_per_s\":%.4f,\"mkeys_per_s\":%.4f,"
               "\"p50_us\":%.2f,\"submit_p50_us\":%.2f}",
               i ? "," : "", i, w->wall_s, rate(w->value_bytes, w->wall_s, 1e9),
               rate(w->keys, w->wall_s, 1e6), w->p50_us, w->submit_p50_us);
    }
    printf("]");
}

static void print_json(const pb_opts *o, const pb_result *r, const pb_total *t, double gbs,
                       double mks)
{
    long n = r->nlat;
    printf("{\"op\":\"%s\",\"keys\":%llu,\"val_len\":%d,\"servers\":%d,\"workers\":%d,"
           "\"iters\":%ld,\"warmup\":%ld,\"inflight\":%d,\"random_keys\":%s,\"store\":%s,"
           "\"zero_copy\":%s,\"orders\":%d,",
           pb_op_name(o->op), (unsigned long long)o->keys, o->val_len, ps_num_servers(),
           ps_num_workers(), o->iters, o->warmup, o->inflight, o->random_keys ? "true" : "false",
           o->store ? "true" : "false", o->zero_copy ? "true" : "false", o->orders);
    printf("\"p50_us\":%.2f,\"p99_us\":%.2f,\"mean_us\":%.2f,\"max_us\":%.2f,"
           "\"submit_p50_us\":%.2f,",
           pb_pct(r->lat_us, n, 50), pb_pct(r->lat_us, n, 99), mean(r->lat_us, n),
           n ? r->lat_us[n - 1] : 0, pb_pct(r->sub_us, n, 50));
    printf("\"wall_s\":%.4f,\"gbytes_per_s\":%.4f,\"mkeys_per_s\":%.4f,\"wire_bytes\":%.0f,"
           "\"wire_gbytes_per_s\":%.4f,\"resends\":%.0f,\"errors\":%.0f,\"transport\":\"%s\","
           "\"poll_us\":%ld",
           t->wall_s, gbs, mks, r->wire_bytes,
           r->wall_s > 0 ? r->wire_bytes / r->wall_s / 1e9 : 0, t->resends, t->errors,
           transport(), poll_us());
    print_json_workers(t);
    printf("}\n");
}

static void print_text(const pb_opts *o, const pb_result *r, const pb_total *t, double gbs,
                       double mks)
{
    long n = r->nlat;
    printf("psbench %s: %llu keys x %d f32, %d servers, %d workers, %ld iters (+%ld warm-up), "
           "inflight %d, %s%s table, transport %s\n",
           pb_op_name(o->op), (unsigned long long)o->keys, o->val_len, ps_num_servers(),
           ps_num_workers(), o->iters, o->warmup, o->inflight,
           o->random_keys ? "random keys, " : "", o->store ? "sparse" : "dense", transport());
    printf("  latency  p50 %.2f us  p99 %.2f us  mean %.2f us  max %.2f us  "
           "(p50 %.2f us inside the call)\n",
           pb_pct(r->lat_us, n, 50), pb_pct(r->lat_us, n, 99), mean(r->lat_us, n),
           n ? r->lat_us[n - 1] : 0, pb_pct(r->sub_us, n, 50));
    printf("  rate     %.4f GB/s of values  %.4f Mkeys/s  (%.3f s wall)%s\n", gbs, mks,
           t->wall_s, t->nworkers > 1 ? ", all workers" : "");
    printf("  wire     %.0f request bytes (model) from worker 0, %.0f resends, %.0f errors\n",
           r->wire_bytes, t->resends, t->errors);
    for (int i = 0; t->nworkers > 1 && i < t->nworkers; i++) {
        const pb_worker *w = &t->per[i];
        printf("  worker %d %.4f GB/s  %.4f Mkeys/s  p50 %.2f us (%.2f us inside the call)  "
               "(%.3f s wall)\n",
               i, rate(w->value_bytes, w->wall_s, 1e9), rate(w->keys, w->wall_s, 1e6), w->p50_us,
               w->submit_p50_us, w->wall_s);
    }
}

void pb_report(const pb_opts *o, pb_result *r, const pb_total *t)
{
    pb_sort_results(r);
    double gbs = t->wall_s > 0 ? t->value_bytes / t->wall_s / 1e9 : 0;
    double mks = t->wall_s > 0 ? t->keys / t->wall_s / 1e6 : 0;
    if (o->json) print_json(o, r, t, gbs, mks);
    else print_text(o, r, t, gbs, mks);
    fflush(stdout);
}

void pb_report_server(const pb_opts *o, ps_table *t)
{
    ps_table_stats st;
    int rv = ps_table_stats_get(t, &st);
    if (rv != 0) {
        fprintf(stderr, "psbench: server %d: no table stats: %s\n", ps_my_rank(),
                ps_strerror(rv));
        return;
    }
    fprintf(stderr, "{\"server\":%d,\"store\":%s,\"keys\":%llu,\"bytes\":%llu,", ps_my_rank(),
            o->store ? "true" : "false", (unsigned long long)st.keys,
            (unsigned long long)st.bytes);
    if (st.keys) fprintf(stderr, "\"bytes_per_key\":%.2f,", (double)st.bytes / (double)st.keys);
    else fprintf(stderr, "\"bytes_per_key\":null,");
    fprintf(stderr, "\"pushes_applied\":%llu,\"pushes_deduped\":%llu}\n",
            (unsigned long long)st.pushes_applied, (unsigned long long)st.pushes_deduped);
    fflush(stderr);
}
