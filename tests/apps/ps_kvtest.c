/*
 * ps_kvtest.c -- a cluster program for the key-value integration tests.
 * Every node opens the tables; workers run the selected check and print
 * "PASS <name>" or "FAIL <name>: why" lines that the shell tests grep; the
 * exit status is nonzero on any failure.
 *
 *   ps_kvtest sum [--keys N] [--rounds R] [--pace-ms MS]   every worker adds 1 to N keys
 *       (given unsorted, a different order per round) R times; afterwards
 *       each key must be exactly W*R on a pull, under any PS_FAULT.
 *   ps_kvtest consistency --tau T          bounded delay: records, for every
 *       task, when it started and when earlier tasks finished, and checks the
 *       bound (tau = -1: eventual, which must never wait).
 *   ps_kvtest errors                        bad input gives clear errors and
 *       leaves the table intact.
 *   ps_kvtest init                          pulls of keys never pushed read as
 *       the table's initializer, the same on every worker.
 *   ps_kvtest bsp [--iters N]              BSP table: in iteration i each worker
 *       r pushes r+1 to every key (worker 0 pushes no keys at all) and pulls;
 *       the pull must see exactly the sum of iterations 1..i of all workers.
 *   ps_kvtest var                           variable-length values: every worker
 *       adds to keys whose length depends on the key; the pull returns
 *       exactly W times the pushed vectors, in the caller's (unsorted)
 *       order; a length mismatch is refused and leaves the table intact.
 *   ps_kvtest dense                         a dense table over [1000, 51000):
 *       range push and pull, constant initializer on every key of a page,
 *       keys outside the range refused, every server holds part of it.
 *   ps_kvtest zcopy [--rounds R] [--width W] zero-copy pushes (ps_task_opts.zero_copy)
 *       of 4 keys of W values (default 3 x 2^19: wider than the old cap of
 *       2^20), sorted (sent from the caller's array)
 *       and unsorted (copied), and pushpulls; each round's array is freed
 *       right after its task finished; the sums must be exact under any
 *       PS_FAULT.
 *   ps_kvtest train [--rounds R] [--width W] [--trains 0] [--no-resends 1]  large pushes sent as trains of
 *       fragments: every worker pushes 12 keys of W values (1.5 fragments)
 *       and one key alone (sent whole) R times, in alternating order, and
 *       pulls while the others' trains are in flight (then 60000 keys of
 *       16 values, a train whose head is large too): every pull
 *       sees whole pushes, the sums are exact (under any PS_FAULT), FTRL
 *       applied by fragments equals FTRL applied whole, and every server
 *       received trains (none with --trains 0, for PS_PUSH_FRAG=0); with
 *       --no-resends (no faults) no request had to be resent, so no train
 *       head that overtook a whole push was dropped.
 *   ps_kvtest filters --spec S [--tol T]    pushes through the filter chain S
 *       (same key list every round, so keycache hits): the pulled sums match
 *       exactly (T = 0) or within relative T; a keep filter dropping odd keys
 *       leaves them at 0; prints the traffic before and after the filters.
 *   ps_kvtest calls [--calls N]             remote functions: the scheduler
 *       calls every worker N times (a chain of dependencies); each handler
 *       must run exactly N times, in order, under any PS_FAULT; a worker
 *       calls the servers and a function servers do not have.
 */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv/kv.h"
#include "ps/ps.h"
#include "testapp.h"
#include "util/util.h"

/* The first error of two results (0 when both succeeded): ORing ps_err codes
 * would print a third, unrelated one. */
static int first_err(int a, int b) { return a ? a : b; }

static ps_table *open_table(const char *name, ps_update upd, ps_consistency c, int tau)
{
    ps_table_opts o;
    ps_table *t;
    ps_table_opts_init(&o);
    o.update = upd;
    o.consistency = c;
    o.tau = tau;
    o.init = PS_INIT_RANDOM;
    o.init_scale = 0.5;
    o.init_seed = 42;
    int rv = ps_table_open(name, &o, &t);
    if (rv != 0) {
        printf("FAIL open %s: %s\n", name, ps_strerror(rv));
        exit(1);
    }
    return t;
}

/* ---- sum ------------------------------------------------------------------------ */

static void shuffle(uint64_t *k, size_t n, psi_rng *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = psi_rng_next(rng) % i;
        uint64_t x = k[i - 1];
        k[i - 1] = k[j];
        k[j] = x;
    }
}

static void run_sum(int argc, char **argv)
{
    ps_table_opts o;
    ps_table *t;
    ps_table_opts_init(&o);
    o.dtype = PS_F64;
    o.width = 2;
    if (ps_table_open("sum", &o, &t) != 0) exit(1);
    ps_barrier(PS_GROUP_ALL);
    size_t n = (size_t)arg_long(argc, argv, "--keys", 1000);
    long rounds = arg_long(argc, argv, "--rounds", 20);
    long pace_ms = arg_long(argc, argv, "--pace-ms", 0); /* a pause per round */
    if (ps_my_role() == PS_ROLE_WORKER) {
        uint64_t *keys = malloc(n * sizeof(*keys));
        double *one = malloc(n * 2 * sizeof(double)), *got = malloc(n * 2 * sizeof(double));
        psi_rng rng;
        psi_rng_seed(&rng, (uint64_t)ps_my_rank() + 1);
        for (size_t i = 0; i < n; i++) keys[i] = ps_hash_key(i);
        for (size_t i = 0; i < 2 * n; i++) one[i] = 1.0;
        for (long r = 0; r < rounds; r++) {
            shuffle(keys, n, &rng);
            ps_push(t, keys, n, one, NULL);
            ps_report("iteration", (double)(r + 1)); /* the status page plots these */
            ps_report("progress", (double)(r + 1) / (double)rounds);
            if (pace_ms > 0) usleep((useconds_t)pace_ms * 1000);
        }
        int st = ps_wait_all(t);
        CHECK(st == 0, "sum push", "wait_all: %s", ps_strerror(st));
        ps_barrier(PS_GROUP_WORKERS);
        st = ps_wait(t, ps_pull(t, keys, n, got, NULL));
        size_t bad = 0;
        double want = (double)rounds * ps_num_workers();
        for (size_t i = 0; i < 2 * n; i++) bad += got[i] != want;
        CHECK(st == 0 && bad == 0, "sum exact", "status %s, %zu of %zu values differ from %.0f "
              "(first %.1f)", ps_strerror(st), bad, 2 * n, want, got[0]);
        ps_table_stats s;
        ps_table_stats_get(t, &s);
        printf("worker resends %" PRIu64 "\n", s.resends);
        free(keys);
        free(one);
        free(got);
    }
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_SERVER) {
        ps_table_stats s;
        ps_table_stats_get(t, &s);
        printf("server keys %" PRIu64 " applied %" PRIu64 " deduped %" PRIu64 "\n", s.keys,
               s.pushes_applied, s.pushes_deduped);
    }
}

/* ---- consistency ------------------------------------------------------------- */

#define NTASKS 200

static uint64_t started[NTASKS], finished[NTASKS];
static pthread_mutex_t trace_lock = PTHREAD_MUTEX_INITIALIZER;

static void trace(void *arg, int64_t ts, int fin, uint64_t now)
{
    (void)arg;
    pthread_mutex_lock(&trace_lock);
    if (ts >= 0 && ts < NTASKS) (fin ? finished : started)[ts] = now;
    pthread_mutex_unlock(&trace_lock);
}

static void run_consistency(int argc, char **argv)
{
    int tau = (int)arg_long(argc, argv, "--tau", 0);
    ps_consistency c = tau < 0 ? PS_EVENTUAL : tau == 0 ? PS_SEQUENTIAL : PS_BOUNDED_DELAY;
    char name[32];
    snprintf(name, sizeof(name), "cons%d", tau);
    ps_table *t = open_table(name, PS_UPDATE_ADD, c, tau < 0 ? 0 : tau);
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_WORKER) {
        psi_tq_set_trace(t->tq, trace, NULL);
        uint64_t keys[64];
        float vals[64], out[64];
        for (int i = 0; i < 64; i++) {
            keys[i] = ps_hash_key((uint64_t)i);
            vals[i] = 1;
        }
        for (int i = 0; i < NTASKS; i++) {
            int64_t ts = i % 2 ? ps_pull(t, keys, 64, out, NULL) : ps_push(t, keys, 64, vals, NULL);
            if (ts != i) printf("FAIL timestamps: got %lld for task %d\n", (long long)ts, i);
        }
        ps_wait_all(t);
        int viol = 0, waited = 0;
        for (int i = 0; i < NTASKS; i++) {
            for (int j = 0; tau >= 0 && j <= i - tau - 1; j++)
                if (finished[j] > started[i]) viol++;
            if (i > 0 && started[i] > finished[i - 1]) waited++;
        }
        CHECK(viol == 0, "bounded delay", "tau %d: %d (task, dependency) pairs started before "
              "the dependency finished", tau, viol);
        if (tau < 0) {
            int overlap = 0; /* eventual: later tasks start while earlier ones run */
            for (int i = 1; i < NTASKS; i++) overlap += started[i] < finished[i - 1];
            CHECK(overlap > 0, "eventual never waits", "no task started before its "
                  "predecessor finished (%d waited)", waited);
        }
    }
    ps_barrier(PS_GROUP_ALL);
}

/* ---- errors and initial values ---------------------------------------------------- */

static void run_errors(void)
{
    ps_table *t = open_table("errs", PS_UPDATE_ADD, PS_EVENTUAL, 0);
    ps_table *other;
    ps_table_opts o;
    ps_table_opts_init(&o);
    o.width = 3;
    int rv = ps_table_open("errs", &o, &other);
    CHECK(rv == PS_ERR_INVAL, "reopen with other options", "got %s", ps_strerror(rv));
    rv = ps_table_open("", NULL, &other);
    CHECK(rv == PS_ERR_INVAL, "empty table name", "got %s", ps_strerror(rv));
    ps_table *only_workers = NULL;
    if (ps_my_role() == PS_ROLE_WORKER) ps_table_open("workers-only", NULL, &only_workers);
    ps_barrier(PS_GROUP_ALL);
    uint64_t k[3] = {5, 9, 5};
    float v[3] = {1, 2, 3}, out[3];
    if (ps_my_role() != PS_ROLE_WORKER) {
        int64_t ts = ps_push(t, k, 2, v, NULL);
        CHECK(ts == PS_ERR_STATE, "push on a non-worker", "got %lld", (long long)ts);
    } else {
        int64_t ts = ps_push(t, k, 3, v, NULL);
        CHECK(ts == PS_ERR_INVAL, "duplicate keys in a push", "got %lld", (long long)ts);
        ts = ps_push(t, k, 2, NULL, NULL);
        CHECK(ts == PS_ERR_INVAL, "push without values", "got %lld", (long long)ts);
        rv = ps_wait(t, ps_pull(t, k, 3, out, NULL));
        CHECK(rv == 0 && out[0] == out[2], "pull with a repeated key", "%s %f %f",
              ps_strerror(rv), out[0], out[2]);
        rv = ps_wait(only_workers, ps_push(only_workers, k, 2, v, NULL));
        CHECK(rv == PS_ERR_NOTFOUND, "table unknown to the servers", "got %s", ps_strerror(rv));
        rv = ps_wait(t, 12345);
        CHECK(rv == PS_ERR_INVAL, "wait on a timestamp never issued", "got %s", ps_strerror(rv));
    }
    ps_barrier(PS_GROUP_ALL);
}

static void run_init(void)
{
    ps_table *t = open_table("init", PS_UPDATE_ADD, PS_EVENTUAL, 0);
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_WORKER) {
        uint64_t keys[256];
        float a[256], b[256];
        for (int i = 0; i < 256; i++) keys[i] = ps_hash_key((uint64_t)i * 7 + 1);
        int rv = ps_wait(t, ps_pull(t, keys, 256, a, NULL));
        rv = first_err(rv, ps_wait(t, ps_pull(t, keys, 256, b, NULL)));
        int same = !memcmp(a, b, sizeof(a)), in_range = 1, distinct = 0;
        for (int i = 0; i < 256; i++) {
            in_range &= fabsf(a[i]) <= 0.5f;
            distinct += i > 0 && a[i] != a[i - 1];
        }
        CHECK(rv == 0 && same && in_range && distinct > 200, "random init", "rv %d same %d "
              "range %d distinct %d", rv, same, in_range, distinct);
        printf("init sum %.6f\n", (double)(a[0] + a[1] + a[2]));
    }
    ps_barrier(PS_GROUP_ALL);
}

/* ---- variable-length values ------------------------------------------------------ */

static void run_var(void)
{
    ps_table_opts o;
    ps_table *t;
    ps_table_opts_init(&o);
    o.width = 0;
    o.dtype = PS_I64;
    if (ps_table_open("var", &o, &t) != 0) exit(1);
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_WORKER) {
        enum { N = 500 };
        uint64_t keys[N];
        uint32_t lens[N];
        size_t total = 0;
        for (int i = 0; i < N; i++) {
            keys[i] = ps_hash_key((uint64_t)(N - i)); /* not sorted */
            lens[i] = (uint32_t)(i % 7);             /* including empty vectors */
            total += lens[i];
        }
        int64_t *vals = malloc(total * sizeof(int64_t)), *p = vals;
        for (int i = 0; i < N; i++)
            for (uint32_t j = 0; j < lens[i]; j++) *p++ = (int64_t)i * 100 + j;
        int rv = ps_wait(t, ps_push_var(t, keys, N, lens, vals, NULL));
        ps_barrier(PS_GROUP_WORKERS);
        ps_var_vals got;
        rv = first_err(rv, ps_wait(t, ps_pull_var(t, keys, N, &got, NULL)));
        int bad = got.total != total;
        int64_t w = ps_num_workers();
        for (int i = 0; !bad && i < N; i++) {
            bad |= got.lens[i] != lens[i];
            for (uint32_t j = 0; !bad && j < lens[i]; j++)
                bad |= ((int64_t *)got.vals)[got.offs[i] + j] != w * ((int64_t)i * 100 + j);
        }
        CHECK(rv == 0 && !bad, "var push and pull", "status %d, total %zu of %zu", rv, got.total, total);
        ps_var_free(&got);
        uint32_t wrong = 9;
        int64_t nine[9] = {0};
        rv = ps_wait(t, ps_push_var(t, &keys[1], 1, &wrong, nine, NULL));
        CHECK(rv == PS_ERR_INVAL, "var length mismatch refused", "got %s", ps_strerror(rv));
        rv = ps_wait(t, ps_pull_var(t, &keys[1], 1, &got, NULL));
        CHECK(rv == 0 && got.lens[0] == lens[1] && ((int64_t *)got.vals)[0] == w * 100,
              "var table intact after a refused push", "len %u", rv == 0 ? got.lens[0] : 0);
        ps_var_free(&got);
        float f = 1;
        CHECK(ps_push(t, keys, 1, &f, NULL) == PS_ERR_INVAL, "fixed-width push on a var table", "-");
        free(vals);
    }
    ps_barrier(PS_GROUP_ALL);
}

/* ---- dense tables and ranges ------------------------------------------------------- */

static void run_dense(void)
{
    enum { LO = 1000, N = 50000 };
    ps_table_opts o;
    ps_table *t;
    ps_table_opts_init(&o);
    o.width = 2;
    o.init = PS_INIT_CONST;
    o.init_value = 0.5;
    o.dense_lo = LO;
    o.dense_hi = LO + N;
    if (ps_table_open("dense", &o, &t) != 0) exit(1);
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_WORKER) {
        float *v = malloc(2 * N * sizeof(float)), *got = malloc(2 * N * sizeof(float));
        for (int i = 0; i < 2 * N; i++) v[i] = 1;
        int rv = ps_wait(t, ps_push_range(t, LO + 10, LO + N, v, NULL));
        ps_barrier(PS_GROUP_WORKERS);
        rv = first_err(rv, ps_wait(t, ps_pull_range(t, LO, LO + N, got, NULL)));
        int bad = 0;
        float want = 0.5f + (float)ps_num_workers();
        for (int i = 0; i < 2 * N; i++) bad += got[i] != (i < 20 ? 0.5f : want);
        CHECK(rv == 0 && !bad, "dense range push and pull", "status %d, %d wrong values", rv, bad);
        uint64_t out = LO + N;
        CHECK(ps_push(t, &out, 1, v, NULL) == PS_ERR_INVAL, "key outside the dense range", "-");
        free(v);
        free(got);
    }
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_SERVER) {
        ps_table_stats s;
        ps_table_stats_get(t, &s);
        printf("server dense bytes %" PRIu64 "\n", s.bytes);
    }
}

/* ---- zero-copy pushes ------------------------------------------------------------------ */

static void run_zcopy(int argc, char **argv)
{
    enum { K = 4 };
    /* default 6 MiB per key: over the old 2^20-value cap */
    const int W = (int)arg_long(argc, argv, "--width", 3 << 19);
    ps_table_opts o;
    ps_table *t;
    ps_table_opts_init(&o);
    o.width = W;
    o.dense_lo = 0;
    o.dense_hi = K;
    if (ps_table_open("zcopy", &o, &t) != 0) exit(1);
    ps_barrier(PS_GROUP_ALL);
    long rounds = arg_long(argc, argv, "--rounds", 6);
    if (ps_my_role() == PS_ROLE_WORKER) {
        uint64_t sorted[K] = {0, 1, 2, 3}, mixed[K] = {2, 0, 3, 1};
        ps_task_opts zc = {.zero_copy = 1};
        int rv = 0;
        double want = 0;
        for (long r = 0; r < rounds && rv == 0; r++) {
            float *v = malloc((size_t)K * W * sizeof(float));
            for (size_t i = 0; i < (size_t)K * W; i++) v[i] = (float)(r + 1);
            const uint64_t *keys = r % 3 == 2 ? mixed : sorted;
            rv = ps_wait(t, ps_push(t, keys, K, v, &zc));
            memset(v, 0x7f, (size_t)K * W * sizeof(float)); /* the library must be done with it */
            free(v);
            want += (double)(r + 1) * ps_num_workers();
        }
        CHECK(rv == 0, "zero-copy pushes", "status %s", ps_strerror(rv));
        ps_barrier(PS_GROUP_WORKERS);
        float *got = malloc((size_t)K * W * sizeof(float));
        rv = ps_wait(t, ps_pull_range(t, 0, K, got, NULL));
        size_t bad = 0;
        for (size_t i = 0; i < (size_t)K * W; i++) bad += got[i] != (float)want;
        CHECK(rv == 0 && bad == 0, "zero-copy sums exact", "status %s, %zu values differ from "
              "%.0f (first %.1f)", ps_strerror(rv), bad, want, got[0]);
        /* the default transport received that pull into `got` itself */
        const char *tr = getenv("PS_TRANSPORT");
        ps_table_stats st;
        if ((!tr || !strcmp(tr, "tcp")) && (size_t)W * sizeof(float) >= (256u << 10)) {
            ps_table_stats_get(t, &st);
            CHECK(st.pulls_in_place > 0, "large pull answers received in place",
                  "%llu of them", (unsigned long long)st.pulls_in_place);
        }
        ps_barrier(PS_GROUP_WORKERS);
        /* pushpull from the caller's array: reads back what it added */
        float *one = malloc((size_t)K * W * sizeof(float));
        for (size_t i = 0; i < (size_t)K * W; i++) one[i] = 1;
        rv = ps_wait(t, ps_pushpull(t, sorted, K, one, got, &zc));
        bad = 0;
        for (size_t i = 0; i < (size_t)K * W; i++)
            bad += got[i] < (float)want + 1 || got[i] > (float)want + (float)ps_num_workers();
        CHECK(rv == 0 && bad == 0, "zero-copy pushpull", "status %s, %zu values out of range",
              ps_strerror(rv), bad);
        free(one);
        free(got);
    }
    ps_barrier(PS_GROUP_ALL);
}

/* ---- trains: large pushes in fragments (src/kv/train.c) ---------------------------------- */

static float pattern(size_t j) { return (float)(1 + j % 7); }

static void run_train(int argc, char **argv)
{
    enum { K = 12 };
    /* a key of 1.5 fragments: a push of one key goes whole (a rendezvous),
     * a push of all K is a train to each server */
    size_t frag = psi_kv_train_frag_bytes() ? psi_kv_train_frag_bytes() : 256 << 10;
    const int W = (int)arg_long(argc, argv, "--width", (long)(frag * 3 / 2 / sizeof(float)));
    const int WF = (int)(frag * 5 / sizeof(float)); /* FTRL: one key of 5 fragments */
    const long rounds = arg_long(argc, argv, "--rounds", 8);
    ps_table_opts o, fo;
    ps_table *t, *f;
    ps_table_opts_init(&o);
    o.width = W;
    ps_table_opts_init(&fo);
    fo.width = WF;
    fo.update = PS_UPDATE_FTRL;
    fo.lr = 0.1, fo.l1 = 0.01, fo.l2 = 0.01, fo.beta = 1;
    ps_table_opts no;
    ps_table *n;
    ps_table_opts_init(&no);
    no.width = 16;
    if (ps_table_open("train.add", &o, &t) != 0 || ps_table_open("train.ftrl", &fo, &f) != 0 ||
        ps_table_open("train.narrow", &no, &n) != 0)
        exit(1);
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_WORKER) {
        uint64_t keys[K];
        for (int i = 0; i < K; i++) keys[i] = ps_hash_key((uint64_t)i); /* on both servers */
        size_t nv = (size_t)K * W;
        float *v = malloc(nv * sizeof(float)), *one = malloc((size_t)W * sizeof(float));
        float *got = malloc(((size_t)WF > nv ? (size_t)WF : nv) * sizeof(float));
        double extra[K] = {0};
        size_t torn = 0;
        int rv = 0;
        /* Each round pushes every key (a train to each server) and one key
         * alone (sent whole), in either order without waiting in between,
         * so a train's head can overtake a whole push still arriving.
         * Other workers' trains are in flight during every pull: a pull that
         * saw one in part would find a key whose values are not all the
         * same multiple of the pattern. */
        for (long r = 0; r < rounds; r++) {
            for (size_t i = 0; i < nv; i++) v[i] = (float)(r + 1) * pattern(i % (size_t)W);
            for (size_t j = 0; j < (size_t)W; j++) one[j] = (float)(r + 1) * pattern(j);
            uint64_t k1 = keys[r % K];
            int64_t a, b;
            if (r % 2) {
                a = ps_push(t, &k1, 1, one, NULL);
                b = ps_push(t, keys, K, v, NULL);
            } else {
                a = ps_push(t, keys, K, v, NULL);
                b = ps_push(t, &k1, 1, one, NULL);
            }
            extra[r % K] += (double)(r + 1);
            rv = first_err(rv, first_err(ps_wait(t, a), ps_wait(t, b)));
            rv = first_err(rv, ps_wait(t, ps_pull(t, keys, K, got, NULL)));
            for (size_t i = 0; i < K; i++)
                for (size_t j = 0; j < (size_t)W; j++)
                    torn += got[i * W + j] != got[i * W] * pattern(j);
        }
        CHECK(rv == 0 && torn == 0, "train pulls whole", "status %s, %zu values from a push "
              "seen in part", ps_strerror(rv), torn);
        ps_barrier(PS_GROUP_WORKERS);
        rv = ps_wait(t, ps_pull(t, keys, K, got, NULL));
        size_t bad = 0;
        for (size_t i = 0; i < K; i++) {
            float want = (float)(ps_num_workers() * (rounds * (rounds + 1) / 2 + extra[i]));
            for (size_t j = 0; j < (size_t)W; j++) bad += got[i * W + j] != want * pattern(j);
        }
        CHECK(rv == 0 && bad == 0, "train sums exact", "status %s, %zu values differ "
              "(first %.1f)", ps_strerror(rv), bad, got[0]);
        /* many narrow keys: the head's keys are large too (it must not be
         * overtaken by its fragments) */
        enum { NK = 60000, NW = 16 };
        uint64_t *nkeys = malloc(NK * sizeof(uint64_t));
        float *nval = malloc((size_t)NK * NW * sizeof(float)), *ngot = malloc((size_t)NK * NW * sizeof(float));
        for (size_t i = 0; i < NK; i++) nkeys[i] = ps_hash_key(i + 1000);
        for (size_t i = 0; i < (size_t)NK * NW; i++) nval[i] = pattern(i);
        rv = 0;
        for (long r = 0; r < rounds; r++) rv = first_err(rv, ps_wait(n, ps_push(n, nkeys, NK, nval, NULL)));
        ps_barrier(PS_GROUP_WORKERS);
        rv = first_err(rv, ps_wait(n, ps_pull(n, nkeys, NK, ngot, NULL)));
        bad = 0;
        for (size_t i = 0; i < (size_t)NK * NW; i++)
            bad += ngot[i] != (float)(ps_num_workers() * rounds) * pattern(i);
        CHECK(rv == 0 && bad == 0, "train narrow keys exact", "status %s, %zu values differ",
              ps_strerror(rv), bad);
        free(nkeys);
        free(nval);
        free(ngot);
        if (arg_long(argc, argv, "--no-resends", 0)) { /* no fault: nothing waited for one */
            ps_table_stats st;
            ps_table_stats_get(t, &st);
            ps_table_stats sn;
            ps_table_stats_get(n, &sn);
            CHECK(st.resends + sn.resends == 0, "train no resends", "%" PRIu64 " requests resent",
                  st.resends + sn.resends);
        }
        if (ps_my_rank() == 0) {
            /* FTRL applied fragment by fragment equals FTRL applied whole */
            psi_update u;
            uint64_t key = ps_hash_key(99);
            float *g = malloc((size_t)WF * sizeof(float));
            void *block = calloc(1, 3 * (size_t)WF * sizeof(float));
            psi_update_from_opts(&u, &fo);
            psi_update_init_block(&u, key, block);
            rv = 0;
            for (long r = 0; r < rounds; r++) {
                for (size_t j = 0; j < (size_t)WF; j++) g[j] = sinf(0.001f * (float)j + (float)r);
                rv = first_err(rv, ps_wait(f, ps_push(f, &key, 1, g, NULL)));
                psi_update_apply(&u, key, block, g);
            }
            rv = first_err(rv, ps_wait(f, ps_pull(f, &key, 1, got, NULL)));
            CHECK(rv == 0 && memcmp(got, block, (size_t)WF * sizeof(float)) == 0,
                  "train ftrl matches", "status %s, first value %g, want %g", ps_strerror(rv),
                  got[0], ((float *)block)[0]);
            free(block);
            free(g);
        }
        free(v);
        free(one);
        free(got);
    }
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_SERVER) {
        ps_table_stats s, sn;
        ps_table_stats_get(t, &s);
        ps_table_stats_get(n, &sn);
        printf("server trains %" PRIu64 " stalled %" PRIu64 " narrow trains %" PRIu64 "\n",
               s.trains, s.trains_stalled, sn.trains);
        if (arg_long(argc, argv, "--trains", 1))
            CHECK(s.trains > 0, "trains used", "no push came in fragments");
        else
            CHECK(s.trains == 0, "no trains", "%" PRIu64 " pushes came in fragments", s.trains);
    }
}

/* ---- filters ------------------------------------------------------------------------ */

static int keep_even(void *arg, uint64_t key, const void *vals)
{
    (void)arg;
    (void)vals;
    return (key & 1) == 0;
}

static void run_filters(int argc, char **argv)
{
    enum { N = 4000, ROUNDS = 12 };
    const char *spec = arg_str(argc, argv, "--spec", "");
    double tol = atof(arg_str(argc, argv, "--tol", "0"));
    ps_table *t, *k;
    if (ps_table_open("filtered", NULL, &t) != 0 || ps_table_open("kept", NULL, &k) != 0) exit(1);
    int rv = ps_table_set_filters(t, spec);
    CHECK(rv == 0, "set filters", "%s: %s", spec, ps_strerror(rv));
    CHECK(ps_table_set_filters(t, "gzip") == PS_ERR_INVAL, "unknown filter refused", "-");
    ps_table_set_filters(t, spec);
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_WORKER) {
        static uint64_t keys[N];
        static float v[N], got[N];
        for (int i = 0; i < N; i++) keys[i] = (uint64_t)i * 977;
        for (int i = 0; i < N; i++) v[i] = 0.37f * (float)((i % 13) - 6);
        for (int r = 0; r < ROUNDS; r++) ps_push(t, keys, N, v, NULL);
        rv = ps_wait_all(t);
        rv = first_err(rv, ps_wait(t, ps_push_flush(t, NULL)));
        ps_barrier(PS_GROUP_WORKERS);
        rv = first_err(rv, ps_wait(t, ps_pull(t, keys, N, got, NULL)));
        double worst = 0, scale = 0.37 * 6 * ROUNDS * ps_num_workers();
        int nbad = 0;
        for (int i = 0; i < N; i++) {
            double want = (double)v[i] * ROUNDS * ps_num_workers();
            worst = PSI_MAX(worst, fabs(got[i] - want) / scale);
            if (fabs(got[i] - want) / scale > tol + 1e-6 && nbad++ < 3)
                printf("key %d: got %g want %g (v %g)\n", i, (double)got[i], want, (double)v[i]);
        }
        if (nbad) printf("%d keys wrong\n", nbad);
        CHECK(rv == 0 && worst <= tol + 1e-6, "filtered sums", "status %d, worst relative error %g "
              "(allowed %g)", rv, worst, tol);
        ps_traffic x;
        ps_table_traffic(t, &x);
        printf("traffic raw %llu wire %llu keys %llu filtered %llu errors %llu\n",
               (unsigned long long)x.bytes_sent_raw, (unsigned long long)x.bytes_sent_wire,
               (unsigned long long)x.keys_sent, (unsigned long long)x.keys_filtered,
               (unsigned long long)x.filter_errors);
        ps_barrier(PS_GROUP_WORKERS); /* every worker has read its sums: push more */
        ps_traffic a, b;
        ps_table_traffic(t, &a);
        ps_task_opts none = {.filters = "none"}, kc = {.filters = "keycache"};
        rv = ps_wait(t, ps_push(t, keys, N, v, &none));
        ps_table_traffic(t, &b);
        CHECK(rv == 0 && b.bytes_sent_wire - a.bytes_sent_wire == b.bytes_sent_raw - a.bytes_sent_raw,
              "per-request override: none", "status %d, %llu wire vs %llu raw bytes", rv,
              (unsigned long long)(b.bytes_sent_wire - a.bytes_sent_wire),
              (unsigned long long)(b.bytes_sent_raw - a.bytes_sent_raw));
        CHECK(ps_push(t, keys, N, v, &kc) == PS_ERR_INVAL, "per-request keycache refused", "-");
        ps_table_set_keep(k, keep_even, NULL);
        rv = ps_wait(k, ps_push(k, keys, 100, v, NULL));
        ps_barrier(PS_GROUP_WORKERS);
        rv = first_err(rv, ps_wait(k, ps_pull(k, keys, 100, got, NULL)));
        int bad = 0;
        for (int i = 0; i < 100; i++)
            bad += got[i] != (keys[i] & 1 ? 0.0f : v[i] * (float)ps_num_workers());
        CHECK(rv == 0 && !bad, "keep filter drops pairs", "status %d, %d wrong", rv, bad);
    }
    ps_barrier(PS_GROUP_ALL);
}

/* ---- BSP ---------------------------------------------------------------------- */

static void run_bsp(int argc, char **argv)
{
    long iters = arg_long(argc, argv, "--iters", 30);
    ps_table_opts o;
    ps_table *t;
    ps_table_opts_init(&o);
    o.dtype = PS_F64;
    o.bsp = 1;
    if (ps_table_open("bsp", &o, &t) != 0) exit(1);
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_WORKER) {
        enum { N = 300 };
        uint64_t keys[N];
        double push[N], got[N];
        int w = ps_num_workers(), bad = 0, rv = 0;
        double per_iter = 0;
        for (int r = 1; r < w; r++) per_iter += r + 1; /* worker 0 pushes nothing */
        for (int i = 0; i < N; i++) {
            keys[i] = ps_hash_key((uint64_t)i);
            push[i] = ps_my_rank() + 1;
        }
        for (long it = 1; it <= iters && !rv; it++) {
            rv = ps_wait(t, ps_push(t, keys, ps_my_rank() == 0 ? 0 : N, push, NULL));
            if (rv == 0) rv = ps_wait(t, ps_pull(t, keys, N, got, NULL));
            for (int i = 0; i < N; i++) bad += got[i] != per_iter * (double)it;
        }
        CHECK(rv == 0 && bad == 0, "bsp iterations", "status %s, %d values not at their "
              "iteration's sum", ps_strerror(rv), bad);
    }
    ps_barrier(PS_GROUP_ALL);
}

/* ---- remote calls ---------------------------------------------------------------- */

static long counted, last_seen = -1, out_of_order;

static int count_fn(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                    size_t *rlen)
{
    (void)arg;
    (void)caller;
    long v = len == sizeof(long) ? *(const long *)req : -2;
    out_of_order += v != last_seen + 1;
    last_seen = v;
    counted++;
    long *r = malloc(sizeof(long));
    *r = v * 2;
    *reply = r;
    *rlen = sizeof(long);
    return 0;
}

static int echo_fn(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                   size_t *rlen)
{
    (void)arg;
    char *r = malloc(len + 16);
    int n = snprintf(r, len + 16, "%d:%.*s", ps_my_rank(), (int)len, (const char *)req);
    *reply = r;
    *rlen = (size_t)n;
    return caller == 0 ? PS_ERR_STATE : 0;
}

static void run_calls(int argc, char **argv)
{
    long ncalls = arg_long(argc, argv, "--calls", 50);
    if (ps_my_role() == PS_ROLE_WORKER) ps_register("count", count_fn, NULL);
    if (ps_my_role() == PS_ROLE_SERVER) ps_register("echo", echo_fn, NULL);
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_SCHEDULER) {
        int64_t prev = -1, ts = -1;
        int bad = 0;
        for (long i = 0; i < ncalls; i++) {
            ps_task_opts o = {.deps = &prev, .ndeps = prev >= 0};
            ts = ps_call_group(PS_GROUP_WORKERS, "count", &i, sizeof(i), &o);
            if (ts < 0) bad++;
            prev = ts;
        }
        const ps_reply *r;
        int n = 0, rv = ps_call_wait(ts, &r, &n);
        int ok = rv == 0 && n == ps_num_workers();
        for (int i = 0; ok && i < n; i++)
            ok = r[i].status == 0 && r[i].len == sizeof(long) &&
                 *(const long *)r[i].data == 2 * (ncalls - 1);
        CHECK(ok && !bad, "call group with dependencies", "rv %s n %d bad %d", ps_strerror(rv), n, bad);
        ps_call_release(ts);
    }
    if (ps_my_role() == PS_ROLE_WORKER && ps_my_rank() == 0) {
        const ps_reply *r;
        int n = 0;
        int64_t ts = ps_call_group(PS_GROUP_SERVERS, "echo", "hi", 2, NULL);
        int rv = ps_call_wait(ts, &r, &n), ok = rv == 0 && n == ps_num_servers();
        for (int i = 0; ok && i < n; i++)
            ok = r[i].len >= 4 && !memcmp((const char *)r[i].data + r[i].len - 3, ":hi", 3);
        CHECK(ok, "call servers", "rv %s n %d", ps_strerror(rv), n);
        ps_call_release(ts);
        rv = ps_call_wait(ps_call(1, "count", NULL, 0, NULL), NULL, NULL);
        CHECK(rv == PS_ERR_NOTFOUND, "worker function called on a server", "got %s", ps_strerror(rv));
        CHECK(ps_call(9999, "echo", NULL, 0, NULL) == PS_ERR_NOTFOUND, "call to no such node", "-");
    }
    ps_barrier(PS_GROUP_ALL);
    if (ps_my_role() == PS_ROLE_WORKER)
        CHECK(counted == ncalls && out_of_order == 0, "each call ran once, in order",
              "ran %ld of %ld, %ld out of order", counted, ncalls, out_of_order);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: ps_kvtest sum|consistency|errors|init [options]\n");
        return 2;
    }
    if (ps_start() != 0) return 1;
    if (!strcmp(argv[1], "sum")) run_sum(argc, argv);
    else if (!strcmp(argv[1], "consistency")) run_consistency(argc, argv);
    else if (!strcmp(argv[1], "errors")) run_errors();
    else if (!strcmp(argv[1], "init")) run_init();
    else if (!strcmp(argv[1], "calls")) run_calls(argc, argv);
    else if (!strcmp(argv[1], "bsp")) run_bsp(argc, argv);
    else if (!strcmp(argv[1], "var")) run_var();
    else if (!strcmp(argv[1], "dense")) run_dense();
    else if (!strcmp(argv[1], "filters")) run_filters(argc, argv);
    else if (!strcmp(argv[1], "zcopy")) run_zcopy(argc, argv);
    else if (!strcmp(argv[1], "train")) run_train(argc, argv);
    else failures++;
    int rv = ps_finalize();
    return failures || rv ? 1 : 0;
}
