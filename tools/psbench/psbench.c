/*
 * psbench.c -- push/pull benchmark of libps, run under psrun:
 *
 *   psrun -s 1 -w 1 -- psbench --op push --keys 1000 --val-len 8 --iters 1000
 *
 * Every node opens table "psbench" (f32, width L, update ADD; dense over
 * [0, N) unless --store) and the small f64 table "psbench.report", then
 * all meet at a barrier.  Each worker runs W warm-up and I measured
 * iterations of the op over the same N keys through a ring of K slots:
 * slot i % K is reused only after its previous task's completion callback
 * ran, so at most K tasks are in flight.  The callback (on a library
 * thread) stamps the completion time and wakes the loop; the latency of a
 * task is submit to callback.  Each worker then pushes its totals into the
 * report table under its rank; after a workers' barrier rank 0 pulls them
 * all and prints the result: totals over all workers and, when there are
 * several, each worker's own figures.  With --orders S the workers hand
 * the same keys over in S orders in turn (iteration i uses order i % S).  A last barrier over all nodes tells servers
 * that the workers are done, and each server prints its storage line.
 *
 * Uses only the public API.  Never: reuse a pull buffer while its task is
 * in flight; measure the warm-up.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psbench.h"

#define REPORT_WIDTH 8 /* wall_s, value bytes, keys, wire bytes, errors, resends,
                        * p50_us, submit_p50_us */

typedef struct bench bench;

typedef struct slot {
    bench *b;
    int busy;           /* submitted, callback not yet run */
    int measured;       /* its latency counts */
    double t0, t1;      /* submit and completion, seconds */
    double sub;         /* seconds inside the submitting call */
    int status;
    float *out;         /* pull buffer (pull and pushpull) */
    ps_task_opts topts;
} slot;

struct bench {
    const pb_opts *o;
    ps_table *t;
    uint64_t *keys;
    float *push;
    slot *slots;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pb_result *r;
    double next_progress, start;
};

static void die(const char *what, int rv)
{
    fprintf(stderr, "psbench: %s: %s\n", what, ps_strerror(rv));
    exit(1);
}

/* ---- keys ------------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* N distinct random keys: draw, sort, drop repeats, top up, repeat. */
static void random_keys(uint64_t *k, size_t n, uint64_t seed, int sorted)
{
    uint64_t s = seed;
    size_t have = 0;
    while (have < n) {
        while (have < n) k[have++] = splitmix64(&s);
        qsort(k, n, sizeof(*k), cmp_u64);
        size_t u = 1;
        for (size_t i = 1; i < n; i++)
            if (k[i] != k[u - 1]) k[u++] = k[i];
        have = u;
    }
    for (size_t i = n; !sorted && i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(splitmix64(&s) % i);
        uint64_t x = k[i - 1];
        k[i - 1] = k[j];
        k[j] = x;
    }
}

/* Fisher-Yates shuffle of k[0..n) from RNG state *s. */
static void shuffle(uint64_t *k, size_t n, uint64_t *s)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64(s) % i);
        uint64_t x = k[i - 1];
        k[i - 1] = k[j];
        k[j] = x;
    }
}

/* o->orders lists of N keys one after the other: the same keys, each list
 * in an order of its own (only the first with --orders 1). */
static uint64_t *make_keys(const pb_opts *o)
{
    size_t n = (size_t)o->keys, lists = (size_t)o->orders;
    uint64_t *k = malloc(lists * n * sizeof(*k)), s = o->seed ^ 0x5eed5eed5eedULL;
    if (!k) die("keys", PS_ERR_NOMEM);
    if (o->random_keys) random_keys(k, o->keys, o->seed, o->sort_keys);
    else
        for (uint64_t i = 0; i < o->keys; i++) k[i] = i;
    for (size_t l = 1; l < lists; l++) {
        memcpy(k + l * n, k, n * sizeof(*k));
        shuffle(k + l * n, n, &s);
    }
    return k;
}

/* ---- tables ------------------------------------------------------------------------ */

static ps_table *open_bench_table(const pb_opts *o)
{
    ps_table_opts to;
    ps_table *t;
    ps_table_opts_init(&to);
    to.dtype = PS_F32;
    to.width = o->val_len;
    to.update = PS_UPDATE_ADD;
    if (!o->store) {
        to.dense_lo = 0;
        to.dense_hi = o->keys;
    }
    int rv = ps_table_open("psbench", &to, &t);
    if (rv != 0) die("cannot open table psbench (see the log above)", rv);
    if (o->filters && (rv = ps_table_set_filters(t, o->filters)) != 0)
        die("bad --filters (see the log above)", rv);
    return t;
}

static ps_table *open_report_table(void)
{
    ps_table_opts to;
    ps_table *t;
    ps_table_opts_init(&to);
    to.dtype = PS_F64;
    to.width = REPORT_WIDTH;
    to.update = PS_UPDATE_ASSIGN;
    to.dense_lo = 0;
    to.dense_hi = (uint64_t)ps_num_workers();
    int rv = ps_table_open("psbench.report", &to, &t);
    if (rv != 0) die("cannot open table psbench.report", rv);
    return t;
}

/* ---- the task loop ---------------------------------------------------------------- */

static void on_done(ps_table *t, int64_t ts, int status, void *arg)
{
    (void)t;
    (void)ts;
    slot *s = arg;
    double now = pb_now_s();
    pthread_mutex_lock(&s->b->mu);
    s->t1 = now;
    s->status = status;
    s->busy = 0;
    pthread_cond_broadcast(&s->b->cv);
    pthread_mutex_unlock(&s->b->mu);
}

/* Wait until slot `s` is free; account for the task it held. */
static void settle(bench *b, slot *s)
{
    pthread_mutex_lock(&b->mu);
    while (s->busy) pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    if (!s->measured) return;
    s->measured = 0;
    pb_result *r = b->r;
    r->sub_us[r->nlat] = s->sub * 1e6;
    r->lat_us[r->nlat++] = (s->t1 - s->t0) * 1e6;
    if (r->wall_s < s->t1 - b->start) r->wall_s = s->t1 - b->start;
    if (s->status != 0 && r->errors++ == 0) r->first_error = s->status;
}

/* Submit iteration i's task (key list i % orders). */
static int64_t submit(bench *b, slot *s, long i)
{
    const pb_opts *o = b->o;
    const uint64_t *k = b->keys + (size_t)(i % o->orders) * (size_t)o->keys;
    switch (o->op) {
    case PB_PUSH: return ps_push(b->t, k, o->keys, b->push, &s->topts);
    case PB_PULL: return ps_pull(b->t, k, o->keys, s->out, &s->topts);
    default: return ps_pushpull(b->t, k, o->keys, b->push, s->out, &s->topts);
    }
}

static void progress(bench *b, long done, long total)
{
    double now = pb_now_s();
    if (b->o->progress_s <= 0 || ps_my_rank() != 0 || now < b->next_progress) return;
    b->next_progress = now + b->o->progress_s;
    double el = now - b->start, vb = (double)b->o->keys * b->o->val_len * 4.0;
    fprintf(stderr, "psbench: %s %ld/%ld iters submitted (%.0f%%), %.1f s, %.3f GB/s so far\n",
            pb_op_name(b->o->op), done, total, 100.0 * (double)done / (double)total, el,
            el > 0 ? (double)done * vb / el / 1e9 : 0);
}

/* Run n iterations; measured ones are recorded in b->r.  Stops at the first
 * failed submit; failed tasks are counted by settle(). */
static int run_phase(bench *b, long n, int measure)
{
    int K = b->o->inflight;
    b->start = pb_now_s();
    b->next_progress = b->start + b->o->progress_s;
    for (long i = 0; i < n; i++) {
        slot *s = &b->slots[i % K];
        settle(b, s);
        s->measured = measure;
        s->busy = 1; /* before submit: the callback may run before it returns */
        s->t0 = pb_now_s();
        int64_t ts = submit(b, s, i);
        s->sub = pb_now_s() - s->t0;
        if (ts < 0) {
            s->busy = s->measured = 0;
            fprintf(stderr, "psbench: submit failed: %s\n", ps_strerror((int)ts));
            return (int)ts;
        }
        if (measure) progress(b, i + 1, n);
    }
    for (int i = 0; i < K; i++) settle(b, &b->slots[i]);
    return 0;
}

static void bench_init(bench *b, const pb_opts *o, ps_table *t, pb_result *r)
{
    size_t nv = (size_t)o->keys * (size_t)o->val_len;
    memset(b, 0, sizeof(*b));
    b->o = o;
    b->t = t;
    b->r = r;
    b->keys = make_keys(o);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    if (!(b->push = malloc(nv * sizeof(float)))) die("values", PS_ERR_NOMEM);
    for (size_t i = 0; i < nv; i++) b->push[i] = 1.0f;
    if (!(b->slots = calloc((size_t)o->inflight, sizeof(slot)))) die("slots", PS_ERR_NOMEM);
    for (int i = 0; i < o->inflight; i++) {
        slot *s = &b->slots[i];
        s->b = b;
        s->topts = (ps_task_opts){.done = on_done, .arg = s, .zero_copy = o->zero_copy};
        if (o->op != PB_PUSH && !(s->out = malloc(nv * sizeof(float))))
            die("pull buffers", PS_ERR_NOMEM);
    }
    r->lat_us = malloc((size_t)o->iters * sizeof(double));
    r->sub_us = malloc((size_t)o->iters * sizeof(double));
    if (!r->lat_us || !r->sub_us) die("latencies", PS_ERR_NOMEM);
}

static void bench_free(bench *b)
{
    for (int i = 0; i < b->o->inflight; i++) free(b->slots[i].out);
    free(b->slots);
    free(b->push);
    free(b->keys);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
}

static int run_worker(const pb_opts *o, ps_table *t, pb_result *r)
{
    bench b;
    int rv;
    ps_traffic t0, t1;
    bench_init(&b, o, t, r);
    rv = run_phase(&b, o->warmup, 0);
    int brv = ps_barrier(PS_GROUP_WORKERS); /* start together, even after a failure */
    ps_table_traffic(t, &t0);
    if (rv == 0 && (rv = brv) == 0) rv = run_phase(&b, o->iters, 1);
    ps_table_traffic(t, &t1);
    bench_free(&b);
    ps_table_stats st;
    if (ps_table_stats_get(t, &st) == 0) r->resends = (double)st.resends;
    /* measured: what this worker's requests put on the wire during the run,
     * after filters (resends included); the model is kept for runs without */
    r->wire_bytes = o->filters ? (double)(t1.bytes_sent_wire - t0.bytes_sent_wire)
                               : pb_wire_bytes_per_iter(o, ps_num_servers()) * (double)r->nlat;
    return rv;
}

/* ---- gathering every worker's totals ------------------------------------------------- */

static int share(const pb_opts *o, ps_table *rep, pb_result *r)
{
    pb_sort_results(r);
    double n = (double)r->nlat, v[REPORT_WIDTH] = {
        r->wall_s, n * (double)o->keys * o->val_len * 4.0, n * (double)o->keys,
        r->wire_bytes, (double)r->errors, r->resends,
        pb_pct(r->lat_us, r->nlat, 50), pb_pct(r->sub_us, r->nlat, 50)};
    uint64_t key = (uint64_t)ps_my_rank();
    int64_t ts = ps_push(rep, &key, 1, v, NULL);
    int rv = ts < 0 ? (int)ts : ps_wait(rep, ts);
    return rv ? rv : ps_barrier(PS_GROUP_WORKERS);
}

/* Totals over the workers and each one's figures (tot->per: the caller frees). */
static int gather(ps_table *rep, pb_total *tot)
{
    int w = ps_num_workers();
    double *v = calloc((size_t)w * REPORT_WIDTH, sizeof(double));
    memset(tot, 0, sizeof(*tot));
    if (!v || !(tot->per = calloc((size_t)w, sizeof(*tot->per)))) {
        free(v);
        return PS_ERR_NOMEM;
    }
    int64_t ts = ps_pull_range(rep, 0, (uint64_t)w, v, NULL);
    int rv = ts < 0 ? (int)ts : ps_wait(rep, ts);
    tot->nworkers = rv == 0 ? w : 0;
    for (int i = 0; rv == 0 && i < w; i++) {
        const double *x = v + (size_t)i * REPORT_WIDTH;
        if (x[0] > tot->wall_s) tot->wall_s = x[0];
        tot->value_bytes += x[1];
        tot->keys += x[2];
        tot->wire_bytes += x[3];
        tot->errors += x[4];
        tot->resends += x[5];
        tot->per[i] = (pb_worker){x[0], x[1], x[2], x[6], x[7]};
    }
    free(v);
    return rv;
}

/* A worker's whole part; returns 0 or a ps_err (already printed). */
static int worker_main(const pb_opts *o, ps_table *t, ps_table *rep)
{
    pb_result r = {0};
    pb_total tot = {0};
    int rv = run_worker(o, t, &r);
    if (rv != 0 && r.errors++ == 0) r.first_error = rv;
    rv = share(o, rep, &r); /* even after a failure, so no worker waits forever */
    if (rv == 0 && ps_my_rank() == 0 && (rv = gather(rep, &tot)) == 0) pb_report(o, &r, &tot);
    if (rv == 0 && r.errors) {
        fprintf(stderr, "psbench: %ld of %ld tasks failed, first: %s\n", r.errors, r.nlat,
                ps_strerror(r.first_error));
        rv = r.first_error;
    }
    free(r.lat_us);
    free(r.sub_us);
    free(tot.per);
    return rv;
}

int main(int argc, char **argv)
{
    pb_opts o;
    int rv = pb_parse(argc, argv, &o);
    if (rv != 0) return rv == 1 ? 0 : 2;
    if ((rv = ps_start()) != 0) die("cannot join the cluster (run it under psrun)", rv);
    ps_table *t = open_bench_table(&o), *rep = open_report_table();
    if ((rv = ps_barrier(PS_GROUP_ALL)) != 0) die("barrier", rv);
    if (ps_my_role() == PS_ROLE_WORKER && (rv = worker_main(&o, t, rep)) != 0)
        fprintf(stderr, "psbench: worker %d: %s\n", ps_my_rank(), ps_strerror(rv));
    int brv = ps_barrier(PS_GROUP_ALL); /* the workers are done */
    if (brv == 0 && ps_my_role() == PS_ROLE_SERVER) pb_report_server(&o, t);
    int frv = ps_finalize();
    return ps_exit_code(rv || brv || frv);
}
