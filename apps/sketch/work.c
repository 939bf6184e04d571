/*
 * work.c -- what a pssketch worker does: stream its shard into the sketch,
 * then (--check) compare estimates with exact counts, (--query) answer
 * point queries, and exchange its figures through the "stats" table.
 *
 * Inserts: the shard's items go into a batch (cm.c) of --batch items; a
 * full batch becomes one push of its distinct cells with their summed
 * counts.  Up to --inflight pushes are in flight (the table is eventually
 * consistent: pushes of one worker do not wait for each other); before a
 * push reuses a ring slot it waits for the push that held it.  A push's
 * completion callback adds its items to `acked` (or counts a failure), so
 * "acknowledged inserts" is exactly what the servers confirmed, which the
 * row masses must equal at the end.
 *
 * Server deaths: sk_on_view (a view change) records the first death's wall
 * time; the first push acknowledged after it records the recovery time
 * (printed as "dead <id> at <ms>" and "recovered <ms>", for bench/sketch.sh).
 *
 * Threads: the main thread, and the library's thread that runs on_done and
 * sk_on_view; they share only the atomics below.  Never: wait in a callback.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sketch.h"

static atomic_int_fast64_t acked, failed, completed;
static atomic_uint_fast64_t dead_ms, recovered_ms;

double sk_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

uint64_t sk_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sk_on_view(uint32_t epoch, const uint32_t *dead, int ndead, void *arg)
{
    (void)epoch, (void)arg;
    for (int i = 0; i < ndead; i++) {
        if (dead[i] < 1 || dead[i] > (uint32_t)ps_num_servers()) continue; /* servers only */
        uint_fast64_t zero = 0, now = sk_wall_ms();
        atomic_compare_exchange_strong(&dead_ms, &zero, now);
        printf("dead %u at %" PRIu64 "\n", dead[i], (uint64_t)now);
        fflush(stdout);
    }
}

static void on_done(ps_table *t, int64_t ts, int status, void *arg)
{
    (void)t, (void)ts;
    if (status != 0) {
        atomic_fetch_add(&failed, 1);
    } else {
        atomic_fetch_add(&acked, (int64_t)(uintptr_t)arg);
        uint_fast64_t zero = 0, now = sk_wall_ms();
        if (atomic_load(&dead_ms) && atomic_compare_exchange_strong(&recovered_ms, &zero, now)) {
            printf("recovered %" PRIu64 "\n", (uint64_t)now);
            fflush(stdout);
        }
    }
    atomic_fetch_add(&completed, 1);
}

/* ---- inserts ------------------------------------------------------------------------------ */

typedef struct pipe {
    int64_t *ring;                /* timestamps of the pushes in flight, -1: free */
    uint64_t pushes;
} pipe_t;

/* Push batch b (if it holds anything) and empty it.  0 or a ps_err. */
static int flush(sk_job *j, cm_batch *b, pipe_t *p)
{
    if (!b->items) return 0;
    cm_batch_cells(b, j->s.hash);
    int64_t *slot = &p->ring[p->pushes % (uint64_t)j->cfg->inflight];
    if (*slot >= 0) ps_wait(j->cm, *slot); /* its status goes to on_done */
    ps_task_opts o = {.done = on_done, .arg = (void *)(uintptr_t)b->items};
    int64_t ts = ps_push(j->cm, b->cells, b->ncells, b->vals, &o);
    if (ts < 0) return (int)ts;
    *slot = ts;
    p->pushes++;
    j->st[ST_CELLS] += (int64_t)b->ncells;
    cm_batch_reset(b);
    return 0;
}

static void progress(uint64_t done, uint64_t total, double t0)
{
    double el = sk_now() - t0;
    printf("worker %d: %.2fM of %.2fM inserts (%.0f%%), %.3fM/s, %.1f s\n", ps_my_rank(),
           done / 1e6, total / 1e6, total ? 100.0 * done / total : 100.0,
           el > 0 ? done / el / 1e6 : 0.0, el);
    fflush(stdout);
}

/* Wait until every push's callback ran (ps_wait may return just before). */
static int drain(sk_job *j, uint64_t pushes)
{
    int rv = ps_wait_all(j->cm);
    double end = sk_now() + 30;
    while ((uint64_t)atomic_load(&completed) < pushes && sk_now() < end) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return (uint64_t)atomic_load(&completed) < pushes ? PS_ERR_TIMEOUT : rv;
}

int sk_insert(sk_job *j)
{
    const sk_cfg *c = j->cfg;
    cm_batch b;
    pipe_t p = {.ring = malloc((size_t)c->inflight * sizeof(int64_t))};
    int rv = p.ring ? cm_batch_init(&b, &j->g, j->s.nkeys, c->batch) : PS_ERR_NOMEM;
    if (rv != 0) return free(p.ring), rv;
    for (int i = 0; i < c->inflight; i++) p.ring[i] = -1;
    uint64_t total = (uint64_t)j->s.n * (uint64_t)c->passes, done = 0;
    double t0 = sk_now(), next = t0 + c->progress_s;
    for (int pass = 0; rv == 0 && pass < c->passes; pass++) {
        for (size_t i = 0; rv == 0 && i < j->s.n; i++) {
            cm_batch_add(&b, j->s.items[i]);
            if (b.items < c->batch) continue;
            done += b.items;
            rv = flush(j, &b, &p);
            if (c->progress_s > 0 && sk_now() >= next) {
                progress(done, total, t0);
                next += c->progress_s;
            }
        }
    }
    done += b.items;
    if (rv == 0) rv = flush(j, &b, &p);
    int drv = drain(j, p.pushes);
    if (rv == 0) rv = drv;
    double el = sk_now() - t0;
    if (c->progress_s > 0) progress(done, total, t0);
    j->st[ST_ITEMS] = (int64_t)total;
    j->st[ST_ACKED] = atomic_load(&acked);
    j->st[ST_FAILED] = atomic_load(&failed);
    j->st[ST_ELAPSED_US] = (int64_t)(el * 1e6);
    j->st[ST_PUSHES] = (int64_t)p.pushes;
    j->st[ST_DEAD_MS] = (int64_t)atomic_load(&dead_ms);
    j->st[ST_RECOVERED_MS] = (int64_t)atomic_load(&recovered_ms);
    j->st[ST_KEYS] = (int64_t)j->s.nkeys;
    cm_batch_free(&b);
    free(p.ring);
    return rv;
}

/* ---- exact counts and the check -------------------------------------------------------- */

/* "exact" holds, per key hash, one count per worker: every worker adds its
 * own column, so a key's exact count is the row's sum and the worker of the
 * lowest nonzero column is the one that checks it (each key once). */
int sk_push_exact(sk_job *j)
{
    size_t nw = (size_t)ps_num_workers(), r = (size_t)ps_my_rank(), n = j->s.nkeys;
    if (n == 0) return 0;
    int64_t *v = calloc(n * nw, sizeof *v);
    if (!v) return PS_ERR_NOMEM;
    for (size_t k = 0; k < n; k++) v[k * nw + r] = (int64_t)j->s.count[k] * j->cfg->passes;
    int rv = ps_wait(j->exact, ps_push(j->exact, j->s.hash, n, v, NULL));
    free(v);
    return rv;
}

/* The estimates of n key hashes: pull their depth cells, take the min. */
static int estimate(sk_job *j, const uint64_t *h, size_t n, int64_t *est)
{
    uint32_t d = j->g.depth;
    uint64_t *keys = malloc((n * d + 1) * sizeof *keys);
    int64_t *v = malloc((n * d + 1) * sizeof *v);
    int rv = keys && v ? 0 : PS_ERR_NOMEM;
    for (size_t i = 0; rv == 0 && i < n; i++)
        for (uint32_t r = 0; r < d; r++) keys[i * d + r] = cm_cell_key(&j->g, r, cm_col(&j->g, r, h[i]));
    if (rv == 0 && n) rv = ps_wait(j->cm, ps_pull(j->cm, keys, n * d, v, NULL));
    for (size_t i = 0; rv == 0 && i < n; i++) {
        est[i] = v[i * d];
        for (uint32_t r = 1; r < d; r++)
            if (v[i * d + r] < est[i]) est[i] = v[i * d + r];
    }
    free(keys), free(v);
    return rv;
}

/* Tally one checked key into j->chk. */
static void tally(sk_job *j, int64_t est, int64_t exact, double bound)
{
    int64_t err = est - exact;
    j->chk[ST_CHECKED]++;
    j->chk[ST_UNDER] += err < 0;
    j->chk[ST_WITHIN] += (double)err <= bound;
    j->chk[ST_ERR_SUM] += err;
    if (err > j->chk[ST_ERR_MAX]) j->chk[ST_ERR_MAX] = err;
    j->chk[ST_EXACT_MASS] += exact;
}

int sk_check(sk_job *j, int64_t total)
{
    size_t nw = (size_t)ps_num_workers(), r = (size_t)ps_my_rank(), n = j->s.nkeys, no = 0;
    int64_t *ex = malloc((n * nw + 1) * sizeof *ex), *est = malloc((n + 1) * sizeof *est);
    uint64_t *own = calloc(n + 1, sizeof *own);
    int64_t *oex = malloc((n + 1) * sizeof *oex);
    if (!ex || !est || !own || !oex) {
        free(ex), free(est), free(own), free(oex);
        return PS_ERR_NOMEM;
    }
    int rv = n ? ps_wait(j->exact, ps_pull(j->exact, j->s.hash, n, ex, NULL)) : 0;
    for (size_t k = 0; rv == 0 && k < n; k++) {
        size_t first = nw;
        int64_t sum = 0;
        for (size_t w = 0; w < nw; w++) {
            if (ex[k * nw + w] && first == nw) first = w;
            sum += ex[k * nw + w];
        }
        if (first == r) own[no] = j->s.hash[k], oex[no++] = sum;
    }
    if (rv == 0) rv = estimate(j, own, no, est);
    for (size_t i = 0; rv == 0 && i < no; i++) tally(j, est[i], oex[i], j->g.eps * (double)total);
    free(ex), free(est), free(own), free(oex);
    return rv;
}

/* ---- queries ------------------------------------------------------------------------------ */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

int sk_query(sk_job *j)
{
    FILE *f = fopen(j->cfg->query, "r");
    if (!f) return PS_ERR_SYS;
    char **names = NULL, *line = NULL;
    uint64_t *h = NULL;
    size_t n = 0, cap = 0, lcap = 0;
    ssize_t len;
    int rv = 0;
    while (rv == 0 && (len = getline(&line, &lcap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            char **nn = realloc(names, cap * sizeof *nn);
            uint64_t *nh = nn ? realloc(h, cap * sizeof *nh) : NULL;
            if (nn) names = nn;
            if (nh) h = nh;
            if (!nn || !nh) rv = PS_ERR_NOMEM;
        }
        if (rv == 0 && !(names[n] = strdup(line))) rv = PS_ERR_NOMEM;
        if (rv == 0) h[n] = sk_key_hash(line, (size_t)len), n++;
    }
    fclose(f);
    free(line);
    int64_t *est = malloc((n + 1) * sizeof *est);
    if (rv == 0) rv = est ? estimate(j, h, n, est) : PS_ERR_NOMEM;
    for (size_t i = 0; rv == 0 && i < n; i++) {
        if (j->cfg->json) {
            fputs("{\"query\": ", stdout);
            json_str(stdout, names[i]);
            printf(", \"estimate\": %" PRId64 "}\n", est[i]);
        } else {
            printf("query\t%s\t%" PRId64 "\n", names[i], est[i]);
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names), free(h), free(est);
    return rv;
}

/* ---- row masses and the stats table ---------------------------------------------------- */

int sk_row_mass(sk_job *j, int64_t *lo, int64_t *hi)
{
    enum { CHUNK = 1 << 20 };
    uint64_t *keys = malloc(CHUNK * sizeof *keys);
    int64_t *v = malloc(CHUNK * sizeof *v);
    int rv = keys && v ? 0 : PS_ERR_NOMEM;
    *lo = INT64_MAX, *hi = INT64_MIN;
    for (uint32_t r = 0; rv == 0 && r < j->g.depth; r++) {
        int64_t sum = 0;
        for (uint32_t c0 = 0; rv == 0 && c0 < j->g.width; c0 += CHUNK) {
            uint32_t m = j->g.width - c0 < CHUNK ? j->g.width - c0 : CHUNK;
            for (uint32_t c = 0; c < m; c++) keys[c] = cm_cell_key(&j->g, r, c0 + c);
            rv = ps_wait(j->cm, ps_pull(j->cm, keys, m, v, NULL));
            for (uint32_t c = 0; rv == 0 && c < m; c++) sum += v[c];
        }
        if (sum < *lo) *lo = sum;
        if (sum > *hi) *hi = sum;
    }
    free(keys), free(v);
    return rv;
}

static uint64_t stats_key(int phase, int rank)
{
    return ps_hash_key(((uint64_t)(phase + 1) << 32) | (uint32_t)rank);
}

int sk_push_stats(sk_job *j, int phase, const int64_t *v)
{
    uint64_t k = stats_key(phase, ps_my_rank());
    return ps_wait(j->stats, ps_push(j->stats, &k, 1, v, NULL));
}

/* Every worker's figures of `phase`: their sums and their maxima. */
int sk_pull_stats(sk_job *j, int phase, int64_t *sum, int64_t *max)
{
    int nw = ps_num_workers();
    uint64_t *k = malloc((size_t)nw * sizeof *k);
    int64_t *v = malloc((size_t)nw * ST_NSTAT * sizeof *v);
    int rv = k && v ? 0 : PS_ERR_NOMEM;
    for (int w = 0; rv == 0 && w < nw; w++) k[w] = stats_key(phase, w);
    if (rv == 0) rv = ps_wait(j->stats, ps_pull(j->stats, k, (size_t)nw, v, NULL));
    for (int f = 0; rv == 0 && f < ST_NSTAT; f++) {
        sum[f] = 0, max[f] = INT64_MIN;
        for (int w = 0; w < nw; w++) {
            sum[f] += v[w * ST_NSTAT + f];
            if (v[w * ST_NSTAT + f] > max[f]) max[f] = v[w * ST_NSTAT + f];
        }
    }
    free(k), free(v);
    return rv;
}
