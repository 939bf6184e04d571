/*
 * ps_failtest.c -- the cluster program of the failover tests and of
 * bench/failover.sh.  Every node opens table "ft" (f32, ADD) with
 * --replication K.  Each worker owns its own keys (spread over the whole
 * ring by ps_hash_key) and adds 1 to every one of them per push, keeping
 * --inflight pushes in flight, and counts the pushes acknowledged.
 *
 * Phase A: --before R pushes, then it prints "phaseA" (the test script then
 * kills, pauses or adds a server).  Phase B: it keeps pushing until it has
 * seen --deaths server deaths (view changes), then --after more pushes.  In
 * the end every key must read exactly the number of pushes acknowledged:
 * one less would be a lost acknowledged update, one more a push applied
 * twice.  Any push failing is an error too (with K >= 1 a single server
 * death must be invisible).  Lines it prints for the scripts:
 *
 *   phaseA <pushes> <pushes/s>           at the end of phase A
 *   dead <id> at <unix ms>               a server was declared dead
 *   recovered <unix ms>                  first push acknowledged after that
 *   result acked=<n> lost=<n> twice=<n> failed=<n> keys=<n>
 *   PASS / FAIL <why>
 *
 * --bsp 1: the table is BSP, every worker adds 1 to the SAME keys each
 * iteration and then pulls them: after iteration i every key must read
 * exactly W * i (W workers, none dies in these tests), at every iteration,
 * across the failover too.
 *
 * With PS_LEAVE_FILE set, server 1 calls ps_leave() once that file exists
 * (the test creates it mid-run): a graceful leave, handing its ranges over.
 *
 * A server started without a rank after the cluster formed joins it: it
 * opens the table, calls ps_join() and serves its share.  With --joins J the
 * workers' phase B also waits until they have seen J such servers serving.
 *
 * Servers print their table statistics at exit.  Exit status 0 only if the
 * check passed.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ps/ps.h"
#include "testapp.h"

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static atomic_int deaths, joins;
static atomic_int recovered_logged;

/* Servers that joined the running cluster and serve now. */
static int count_joined(void)
{
    ps_node_info nodes[64];
    int n = ps_view(NULL, nodes, 64), c = 0;
    for (int i = 0; i < n && i < 64; i++)
        c += nodes[i].role == PS_ROLE_SERVER && nodes[i].rank >= ps_num_servers() &&
             nodes[i].alive && !nodes[i].joining;
    return c;
}

static void on_view(uint32_t epoch, const uint32_t *dead, int ndead, void *arg)
{
    (void)epoch, (void)arg;
    int j = count_joined();
    if (j > atomic_exchange(&joins, j)) {
        printf("joined %d at %" PRIu64 "\n", j, wall_ms());
        fflush(stdout);
    }
    for (int i = 0; i < ndead; i++) {
        if (dead[i] < 1 || dead[i] > (uint32_t)ps_num_servers()) continue;
        printf("dead %u at %" PRIu64 "\n", dead[i], wall_ms());
        fflush(stdout);
        atomic_fetch_add(&deaths, 1);
    }
}

typedef struct run {
    ps_table *t;
    uint64_t *keys;
    float *ones;
    size_t nkeys;
    int inflight;
    int64_t *ring; /* timestamps in flight, oldest first */
    int head, count;
    long acked, failed;
} run;

/* Wait for the oldest push in flight and count it. */
static void reap(run *r)
{
    int rv = ps_wait(r->t, r->ring[r->head]);
    r->head = (r->head + 1) % r->inflight;
    r->count--;
    if (rv == 0) r->acked++;
    else r->failed++;
    if (rv == 0 && atomic_load(&deaths) > 0 && !atomic_exchange(&recovered_logged, 1)) {
        printf("recovered %" PRIu64 "\n", wall_ms());
        fflush(stdout);
    }
}

static int push_one(run *r)
{
    if (r->count == r->inflight) reap(r);
    int64_t ts = ps_push(r->t, r->keys, r->nkeys, r->ones, NULL);
    if (ts < 0) {
        fprintf(stderr, "push: %s\n", ps_strerror((int)ts));
        return -1;
    }
    r->ring[(r->head + r->count++) % r->inflight] = ts;
    return 0;
}

/* BSP: push 1 to every key, pull, check W * it; returns keys that differ,
 * or -1 on an error.  One more key, `stop` (r->keys[r->nkeys]), gets 1 from
 * every worker that has seen the deaths it waits for: its pulled value is
 * the same for every worker after an iteration, so all of them agree on
 * when to stop (a BSP iteration needs every worker's push). */
static long bsp_iteration(run *r, long it, float *got, int seen, float *stop)
{
    size_t n = r->nkeys;
    r->ones[n] = seen ? 1.0f : 0.0f;
    int64_t ts = ps_push(r->t, r->keys, n + 1, r->ones, NULL);
    int rv = ts < 0 ? (int)ts : ps_wait(r->t, ts);
    int64_t tp = rv == 0 ? ps_pull(r->t, r->keys, n + 1, got, NULL) : rv;
    if (rv == 0) rv = tp < 0 ? (int)tp : ps_wait(r->t, tp);
    if (rv != 0) {
        printf("iteration %ld: %s\n", it, ps_strerror(rv));
        return -1;
    }
    if (atomic_load(&deaths) > 0 && !atomic_exchange(&recovered_logged, 1))
        printf("recovered %" PRIu64 "\n", wall_ms());
    long bad = 0;
    float want = (float)(it * ps_num_workers());
    for (size_t i = 0; i < n; i++) bad += got[i] != want;
    if (bad) printf("iteration %ld: %ld keys differ, key 0 reads %.0f, want %.0f\n", it, bad,
                    (double)got[0], (double)want);
    *stop = got[n];
    return bad;
}

static int bsp_worker(run *r, long before, long after, int want_deaths, uint64_t deadline)
{
    float *got = malloc((r->nkeys + 1) * sizeof(float)), stop = 0;
    long it = 0, wrong = 0, b = 0;
    uint64_t t0 = wall_ms();
    for (; got && it < before && b >= 0; wrong += b > 0) b = bsp_iteration(r, ++it, got, 0, &stop);
    printf("phaseA %ld %.1f\n", it, (double)it * 1000.0 / (double)(wall_ms() - t0 + 1));
    /* until some worker saw the deaths (then every worker knows it), then `after` more */
    while (got && b >= 0 && stop == 0 && wall_ms() < deadline) {
        b = bsp_iteration(r, ++it, got, atomic_load(&deaths) >= want_deaths, &stop);
        wrong += b > 0;
    }
    for (long i = 0; got && b >= 0 && i < after; i++, wrong += b > 0)
        b = bsp_iteration(r, ++it, got, 1, &stop);
    printf("result iterations=%ld wrong=%ld failed=%d keys=%zu\n", it, wrong, b < 0, r->nkeys);
    int ok = got && b >= 0 && !wrong && atomic_load(&deaths) >= want_deaths;
    printf(ok ? "PASS\n" : "FAIL bsp: %ld iterations read wrong sums\n", wrong);
    free(got);
    return !ok;
}

/* Every worker adds 1 to its own keys per push; in the end each key must
 * read the number of pushes acknowledged. */
static int add_worker(run *r, long before, long after, int want_deaths, int want_joins,
                      uint64_t deadline)
{
    uint64_t t0 = wall_ms();
    long sent = 0;
    for (; sent < before; sent++)
        if (push_one(r)) return 1;
    while (r->count) reap(r);
    double secs = (double)(wall_ms() - t0) / 1000.0;
    printf("phaseA %ld %.1f\n", before, (double)before / (secs > 0 ? secs : 1e-3));
    fflush(stdout);
    while ((atomic_load(&deaths) < want_deaths || atomic_load(&joins) < want_joins) &&
           wall_ms() < deadline)
        if (push_one(r)) return 1;
    for (long i = 0; i < after && wall_ms() < deadline; i++)
        if (push_one(r)) return 1;
    while (r->count) reap(r);
    if (atomic_load(&deaths) < want_deaths || atomic_load(&joins) < want_joins) {
        printf("FAIL saw %d server deaths and %d joins before the deadline, wanted %d and %d\n",
               atomic_load(&deaths), atomic_load(&joins), want_deaths, want_joins);
        return 1;
    }
    float *got = malloc(r->nkeys * sizeof(float));
    int rv = got ? ps_wait(r->t, ps_pull(r->t, r->keys, r->nkeys, got, NULL)) : PS_ERR_NOMEM;
    long lost = 0, twice = 0;
    for (size_t i = 0; rv == 0 && i < r->nkeys; i++) {
        if (got[i] < (float)r->acked) lost++;
        if (got[i] > (float)r->acked) twice++;
    }
    for (size_t i = 0, shown = 0; rv == 0 && i < r->nkeys && shown < 3; i++)
        if (got[i] != (float)r->acked) {
            printf("key %zu (%016" PRIx64 ") reads %.0f\n", i, r->keys[i], (double)got[i]);
            shown++;
        }
    printf("result acked=%ld lost=%ld twice=%ld failed=%ld keys=%zu\n", r->acked, lost, twice,
           r->failed, r->nkeys);
    if (rv != 0 || lost || twice || r->failed) {
        printf("FAIL %s: key 0 reads %.0f after %ld acknowledged pushes\n",
               rv ? ps_strerror(rv) : "wrong sums", rv == 0 ? (double)got[0] : -1.0, r->acked);
        rv = 1;
    } else {
        printf("PASS\n");
    }
    fflush(stdout);
    free(got);
    return rv != 0;
}

static int worker(ps_table *t, int argc, char **argv)
{
    run r = {.t = t, .nkeys = (size_t)arg_long(argc, argv, "--keys", 2000),
             .inflight = (int)arg_long(argc, argv, "--inflight", 8)};
    long before = arg_long(argc, argv, "--before", 50), after = arg_long(argc, argv, "--after", 50);
    int want_deaths = (int)arg_long(argc, argv, "--deaths", 1);
    int want_joins = (int)arg_long(argc, argv, "--joins", 0);
    uint64_t deadline = wall_ms() + (uint64_t)arg_long(argc, argv, "--deadline-ms", 60000);
    r.keys = malloc((r.nkeys + 1) * sizeof(uint64_t)); /* + the BSP stop key */
    r.ones = malloc((r.nkeys + 1) * sizeof(float));
    r.ring = malloc((size_t)r.inflight * sizeof(int64_t));
    if (!r.keys || !r.ones || !r.ring || r.inflight < 1) {
        free(r.keys);
        free(r.ones);
        free(r.ring);
        return 1;
    }
    int bsp = (int)arg_long(argc, argv, "--bsp", 0);
    for (size_t i = 0; i < r.nkeys; i++) {
        r.keys[i] = ps_hash_key(((uint64_t)(bsp ? 0 : ps_my_rank()) << 40) | i);
        r.ones[i] = 1.0f;
    }
    r.keys[r.nkeys] = ps_hash_key(1ull << 62);
    int rv = bsp ? bsp_worker(&r, before, after, want_deaths, deadline)
                 : add_worker(&r, before, after, want_deaths, want_joins, deadline);
    ps_table_stats st;
    if (ps_table_stats_get(t, &st) == 0)
        printf("worker %d: slices moved %" PRIu64 " resends %" PRIu64 "\n", ps_my_rank(),
               st.slices_moved, st.resends);
    free(r.keys);
    free(r.ones);
    free(r.ring);
    return rv;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    ps_on_view_change(on_view, NULL);
    int rv = ps_start();
    if (rv != 0) {
        fprintf(stderr, "ps_start: %s\n", ps_strerror(rv));
        return 2;
    }
    ps_table_opts o;
    ps_table_opts_init(&o);
    o.replication = (int)arg_long(argc, argv, "--replication", 1);
    o.bsp = (int)arg_long(argc, argv, "--bsp", 0);
    ps_table *t = NULL;
    int status = 0;
    if (ps_my_role() != PS_ROLE_SCHEDULER && (rv = ps_table_open("ft", &o, &t)) != 0) {
        fprintf(stderr, "open: %s\n", ps_strerror(rv));
        status = 1;
    }
    const char *piddir = getenv("PS_PID_DIR");
    if (piddir && ps_my_role() == PS_ROLE_SERVER) {
        char path[512];
        snprintf(path, sizeof(path), "%s/server.%d.pid", piddir, ps_my_rank());
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    /* a server that joined late: the others passed the first barrier */
    int late = 0;
    if (status == 0 && ps_my_role() != PS_ROLE_SCHEDULER) {
        uint64_t t0 = wall_ms();
        late = ps_join();
        if (late) printf("join: %s in %" PRIu64 " ms\n", ps_strerror(late < 0 ? late : 0),
                         wall_ms() - t0);
        status = late < 0;
    }
    if (status == 0 && !late && (rv = ps_barrier(PS_GROUP_ALL)) != 0) {
        fprintf(stderr, "barrier: %s\n", ps_strerror(rv));
        status = 1;
    }
    if (status == 0 && ps_my_role() == PS_ROLE_WORKER) status = worker(t, argc, argv);
    const char *leave = getenv("PS_LEAVE_FILE"); /* server 1 leaves once it exists */
    int left = 0;
    if (status == 0 && leave && ps_my_role() == PS_ROLE_SERVER && ps_my_rank() == 1) {
        while (access(leave, F_OK) != 0) {
            struct timespec pause = {0, 10 * 1000 * 1000}; /* polls a condition */
            nanosleep(&pause, NULL);
        }
        rv = ps_leave();
        printf("left: %s\n", ps_strerror(rv));
        status = rv != 0;
        left = 1;
    }
    if (!left && (rv = ps_barrier(PS_GROUP_ALL)) != 0) {
        fprintf(stderr, "final barrier: %s\n", ps_strerror(rv));
        status = status ? status : 3;
    }
    if (t && ps_my_role() == PS_ROLE_SERVER) {
        ps_table_stats st;
        ps_table_stats_get(t, &st);
        printf("server %d: keys %" PRIu64 " applied %" PRIu64 " deduped %" PRIu64
               " forwards %" PRIu64 " copied %" PRIu64 " takeovers %" PRIu64 " held %" PRIu64
               "\n", ps_my_rank(), st.keys, st.pushes_applied, st.pushes_deduped, st.forwards,
               st.keys_copied, st.takeovers_applied, st.takeovers_held);
    }
    rv = ps_finalize();
    return status ? status : rv != 0;
}
