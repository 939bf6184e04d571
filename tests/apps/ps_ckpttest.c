/*
 * ps_ckpttest.c -- a cluster program for the checkpoint integration test
 * (tests/integration/test_checkpoint.sh).  Every node opens three tables:
 *   "sparse"  f64 x 2, ADD: every worker adds c(i) = (i % 1000 + 1) / 2 to key
 *             ps_hash_key(i) each iteration, so after I iterations the key holds
 *             exactly I * W * c(i);
 *   "dense"   f32, ADD, keys [1000, 1000 + DENSE_N): every worker adds
 *             (j % 64) / 4 to key 1000 + j each iteration;
 *   "ada"     f32, ADAGRAD: only worker 0 pushes, a gradient that depends on
 *             (key, iteration), so its values depend on the saved AdaGrad
 *             state, and it prints a checksum of them after the last iteration.
 *
 *   ps_ckpttest write --dir D [--keys N] [--iters I] [--ckpt a,b,...]
 *       runs iterations 1..I; after the iterations listed in --ckpt the
 *       scheduler calls ps_checkpoint(D, it) between two barriers.
 *   ps_ckpttest check --dir D [--keys N] --want-iter W [--iters I]
 *       every node restores from D (servers load their keys); the restored
 *       iteration must be W; workers pull and check every value exactly; then
 *       runs iterations W+1..I of the "ada" table and prints its checksum.
 * Lines "PASS name" / "FAIL name: why"; exit status nonzero on any failure
 * (at once, without finalizing, when a restore fails).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/ps.h"
#include "testapp.h"
#include "util/util.h"

#define DENSE_LO 1000
#define DENSE_N 20000
#define ADA_N 1000


typedef struct tables {
    ps_table *sparse, *dense, *ada;
} tables;

static ps_table *open_one(const char *name, ps_dtype dt, int width, ps_update upd, int dense)
{
    ps_table_opts o;
    ps_table *t;
    ps_table_opts_init(&o);
    o.dtype = dt;
    o.width = width;
    o.update = upd;
    if (dense) {
        o.dense_lo = DENSE_LO;
        o.dense_hi = DENSE_LO + DENSE_N;
    }
    int rv = ps_table_open(name, &o, &t);
    if (rv != 0) {
        printf("FAIL open %s: %s\n", name, ps_strerror(rv));
        exit(1);
    }
    return t;
}

static void open_tables(tables *t)
{
    t->sparse = open_one("sparse", PS_F64, 2, PS_UPDATE_ADD, 0);
    t->dense = open_one("dense", PS_F32, 1, PS_UPDATE_ADD, 1);
    t->ada = open_one("ada", PS_F32, 1, PS_UPDATE_ADAGRAD, 0);
}

static double sparse_c(size_t i) { return (double)(i % 1000 + 1) * 0.5; }
static float dense_c(size_t j) { return (float)(j % 64) * 0.25f; }
static float ada_g(size_t i, long it) { return (float)((long)(i + (size_t)it) % 7 - 3) * 0.125f; }

/* ---- one iteration on a worker ------------------------------------------------------- */

typedef struct data {
    size_t n;
    uint64_t *keys, ada_keys[ADA_N];
    double *sparse;
    float dense[DENSE_N], ada[ADA_N];
} data;

static data *data_new(size_t n)
{
    data *d = calloc(1, sizeof(*d));
    d->n = n;
    d->keys = malloc(n * sizeof(uint64_t));
    d->sparse = malloc(2 * n * sizeof(double));
    if (!d->keys || !d->sparse) exit(1);
    for (size_t i = 0; i < n; i++) {
        d->keys[i] = ps_hash_key(i);
        d->sparse[2 * i] = d->sparse[2 * i + 1] = sparse_c(i);
    }
    for (size_t j = 0; j < DENSE_N; j++) d->dense[j] = dense_c(j);
    for (size_t i = 0; i < ADA_N; i++) d->ada_keys[i] = ps_hash_key(1000000 + i);
    return d;
}

static void data_free(data *d)
{
    free(d->keys);
    free(d->sparse);
    free(d);
}

static void ada_step(tables *t, data *d, long it)
{
    for (size_t i = 0; i < ADA_N; i++) d->ada[i] = ada_g(i, it);
    int rv = ps_wait(t->ada, ps_push(t->ada, d->ada_keys, ADA_N, d->ada, NULL));
    if (rv != 0) CHECK(0, "ada push", "iteration %ld: %s", it, ps_strerror(rv));
}

static void worker_iter(tables *t, data *d, long it)
{
    ps_push(t->sparse, d->keys, d->n, d->sparse, NULL);
    ps_push_range(t->dense, DENSE_LO, DENSE_LO + DENSE_N, d->dense, NULL);
    int rv = ps_wait_all(t->sparse) | ps_wait_all(t->dense);
    if (rv != 0) CHECK(0, "push", "iteration %ld: %s", it, ps_strerror(rv));
    if (ps_my_rank() == 0) ada_step(t, d, it);
}

static void print_ada(tables *t, data *d, long it)
{
    float got[ADA_N];
    int rv = ps_wait(t->ada, ps_pull(t->ada, d->ada_keys, ADA_N, got, NULL));
    CHECK(rv == 0, "ada pull", "%s", ps_strerror(rv));
    printf("ada checksum %08" PRIx32 " at iteration %ld\n", psi_crc32c(got, sizeof(got)), it);
}

/* ---- write ---------------------------------------------------------------------------- */

static int is_ckpt(const char *list, long it)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save = NULL, *s = strtok_r(buf, ",", &save); s; s = strtok_r(NULL, ",", &save))
        if (atol(s) == it) return 1;
    return 0;
}

static void run_write(int argc, char **argv, const char *dir, tables *t)
{
    long iters = arg_long(argc, argv, "--iters", 4);
    const char *ck = arg_str(argc, argv, "--ckpt", "");
    size_t keys = (size_t)arg_long(argc, argv, "--keys", 5000);
    data *d = ps_my_role() == PS_ROLE_WORKER ? data_new(keys) : NULL;
    for (long it = 1; it <= iters; it++) {
        if (d) worker_iter(t, d, it);
        ps_barrier(PS_GROUP_ALL); /* no push in flight from here ... */
        if (ps_my_role() == PS_ROLE_SCHEDULER && is_ckpt(ck, it)) {
            int rv = ps_checkpoint(dir, (uint64_t)it);
            char name[64];
            snprintf(name, sizeof(name), "checkpoint %ld", it);
            CHECK(rv == 0, name, "%s", ps_strerror(rv));
        }
        ps_barrier(PS_GROUP_ALL); /* ... to here */
    }
    if (d && ps_my_rank() == 0) print_ada(t, d, iters);
    if (d) data_free(d);
}

/* ---- check ---------------------------------------------------------------------------- */

static void check_values(tables *t, data *d, long w)
{
    double *got = malloc(2 * d->n * sizeof(double));
    static float dgot[DENSE_N];
    int rv = ps_wait(t->sparse, ps_pull(t->sparse, d->keys, d->n, got, NULL));
    size_t bad = 0;
    double k = (double)w * ps_num_workers();
    for (size_t i = 0; i < 2 * d->n; i++) bad += got[i] != k * sparse_c(i / 2);
    CHECK(rv == 0 && bad == 0, "sparse values exact", "status %s, %zu of %zu values wrong "
          "(key 0: %.2f, want %.2f)", ps_strerror(rv), bad, 2 * d->n, got[0], k * sparse_c(0));
    rv = ps_wait(t->dense, ps_pull_range(t->dense, DENSE_LO, DENSE_LO + DENSE_N, dgot, NULL));
    bad = 0;
    for (size_t j = 0; j < DENSE_N; j++) bad += dgot[j] != (float)k * dense_c(j);
    CHECK(rv == 0 && bad == 0, "dense values exact", "status %s, %zu of %d values wrong",
          ps_strerror(rv), bad, DENSE_N);
    free(got);
}

static void restore_all(const char *dir, tables *t, long want)
{
    ps_table *ts[3] = {t->sparse, t->dense, t->ada};
    for (int i = 0; i < 3; i++) {
        uint64_t iter = 0;
        int rv = ps_table_restore(ts[i], dir, &iter);
        if (rv != 0) {
            printf("FAIL restore: %s\n", ps_strerror(rv));
            fflush(stdout);
            exit(3);
        }
        CHECK((long)iter == want, "restored iteration", "got %" PRIu64 ", want %ld", iter, want);
    }
}

static void run_check(int argc, char **argv, const char *dir, tables *t)
{
    long want = arg_long(argc, argv, "--want-iter", 0);
    long iters = arg_long(argc, argv, "--iters", want);
    restore_all(dir, t, want);
    ps_table_opts o;
    ps_table *var;
    ps_table_opts_init(&o);
    o.width = 0;
    if (ps_table_open("var", &o, &var) == 0)
        CHECK(ps_table_restore(var, dir, NULL) == PS_ERR_INVAL, "variable-length table refused",
              "-");
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_SERVER) {
        ps_table_stats s;
        ps_table_stats_get(t->sparse, &s);
        printf("server sparse keys %" PRIu64 "\n", s.keys);
    }
    if (ps_my_role() == PS_ROLE_WORKER) {
        data *d = data_new((size_t)arg_long(argc, argv, "--keys", 5000));
        check_values(t, d, want);
        if (ps_my_rank() == 0) {
            for (long it = want + 1; it <= iters; it++) ada_step(t, d, it);
            print_ada(t, d, iters);
        }
        data_free(d);
    }
    ps_barrier(PS_GROUP_ALL);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "", *dir = arg_str(argc, argv, "--dir", NULL);
    if ((strcmp(mode, "write") && strcmp(mode, "check")) || !dir) {
        fprintf(stderr, "usage: ps_ckpttest write|check --dir D [options]\n");
        return 2;
    }
    int rv = ps_start();
    if (rv != 0) {
        fprintf(stderr, "ps_start: %s\n", ps_strerror(rv));
        return 1;
    }
    tables t;
    open_tables(&t);
    if (!strcmp(mode, "write")) {
        /* a fresh start: on servers this enables checkpoints of each table */
        for (int i = 0; i < 3; i++)
            ps_table_restore(i == 0 ? t.sparse : i == 1 ? t.dense : t.ada, dir, NULL);
        ps_barrier(PS_GROUP_ALL);
        run_write(argc, argv, dir, &t);
    } else {
        run_check(argc, argv, dir, &t);
    }
    rv = ps_finalize();
    return failures || rv != 0 ? 1 : 0;
}
