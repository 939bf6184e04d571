/*
 * pssketch.c -- a CountMin sketch on libps (the third application of the
 * OSDI 2014 Parameter Server paper): flags, the roles' common steps, and the
 * summary.  cm.c is the sketch, stream.c the inputs, work.c the workers.
 *
 * Run under psrun (every role runs this binary):
 *   psrun -s 2 -w 2 -- pssketch --input data/cache/flights/train.tsv --format routes --check
 * The servers hold the depth x width counters in table "cm" (i64, ADD, one
 * key per cell, --replicas backups of every range).  Each worker streams its
 * shard of the input (line i goes to worker i % W) in batches of --batch
 * items, aggregated per key and per cell before each push.  Then, after a
 * barrier: --check compares every distinct key's estimate with its exact
 * count (the workers' local counts, summed through table "exact"),
 * --query answers point estimates for a file of keys, and worker 0 sums
 * every row of the sketch (each must equal the acknowledged inserts: one
 * below is a lost acknowledged insert, one above an insert applied twice)
 * and prints the summary (--json: one JSON line).  Exit status 1 if a push
 * failed, a row's mass differs from the acknowledged inserts, or (--check)
 * an estimate is below the truth; 2 for a bad flag.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sketch.h"
#define FLAGS_PROG "pssketch"
#include "../common/flags.h"

static sk_cfg cfg;

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: psrun -s S -w W -- pssketch --input FILE [options]\n\n"
        "A CountMin sketch held by the servers; the workers stream their shard of FILE\n"
        "into it (line i to worker i %% W) and can check or query it at the end.\n"
        "  --input FILE      the key stream (required)\n"
        "  --format F        routes: flights TSV (label origin destination ...), key\n"
        "                    ORIGIN-DEST; counts: 'word TAB count' lines, each word\n"
        "                    replayed count times in a shuffled order; lines: one key\n"
        "                    per line (default lines)\n"
        "  --eps X           error bound: estimate <= truth + X * N (default 0.001)\n"
        "  --delta X         ... with probability >= 1 - X per key (default 0.01)\n"
        "  --width W, --depth D\n"
        "                    the sketch's size directly (both; then eps = e / W,\n"
        "                    delta = exp(-D))\n"
        "  --batch N         stream items per push, aggregated first (default 10000)\n"
        "  --inflight N      pushes in flight per worker (default 8)\n"
        "  --passes N        replay the shard N times (default 1)\n"
        "  --check           compare every distinct key's estimate with its exact count\n"
        "  --query FILE      print the estimate of each key of FILE (one per line)\n"
        "  --replicas K      every key range on K more servers (table replication,\n"
        "                    survives K server deaths; default 0)\n"
        "  --seed N          seed of the row hashes and of the counts shuffle (default 1)\n"
        "  --progress S      seconds between progress lines (default 1; 0: none)\n"
        "  --json            the summary (and query answers) as JSON lines\n"
        "  --help            this text\n");
}

/* eps and delta are open intervals: say so with the value given. */
static double open01(const char *name, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0 && v < 1)) {
        char m[160];
        snprintf(m, sizeof m, "bad value for --%s: '%%s' (want 0 < %s < 1)", name, name);
        bad_flag(m, s);
    }
    return v;
}

static void parse_flags(int argc, char **argv)
{
    enum { O_EPS = 256, O_DELTA, O_WIDTH, O_DEPTH, O_BATCH, O_INFL, O_PASSES, O_INPUT,
           O_FMT, O_QUERY, O_CHECK, O_REPL, O_JSON, O_SEED, O_PROG };
    static const struct option opts[] = {
        {"eps", 1, 0, O_EPS}, {"delta", 1, 0, O_DELTA}, {"width", 1, 0, O_WIDTH},
        {"depth", 1, 0, O_DEPTH}, {"batch", 1, 0, O_BATCH}, {"inflight", 1, 0, O_INFL},
        {"passes", 1, 0, O_PASSES}, {"input", 1, 0, O_INPUT}, {"format", 1, 0, O_FMT},
        {"query", 1, 0, O_QUERY}, {"check", 0, 0, O_CHECK}, {"replicas", 1, 0, O_REPL},
        {"json", 0, 0, O_JSON}, {"seed", 1, 0, O_SEED}, {"progress", 1, 0, O_PROG},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    cfg = (sk_cfg){.eps = 0.001, .delta = 0.01, .batch = 10000, .inflight = 8, .passes = 1,
                   .fmt = SK_LINES, .seed = 1, .progress_s = 1};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_EPS: cfg.eps = open01("eps", optarg); break;
        case O_DELTA: cfg.delta = open01("delta", optarg); break;
        case O_WIDTH: cfg.width = (uint32_t)num("width", optarg, 1, CM_MAX_WIDTH); break;
        case O_DEPTH: cfg.depth = (uint32_t)num("depth", optarg, 1, CM_MAX_DEPTH); break;
        case O_BATCH: cfg.batch = (size_t)num("batch", optarg, 1, 1e7); break;
        case O_INFL: cfg.inflight = (int)num("inflight", optarg, 1, 1024); break;
        case O_PASSES: cfg.passes = (int)num("passes", optarg, 1, 1e6); break;
        case O_INPUT: cfg.input = optarg; break;
        case O_FMT:
            if (sk_format_parse(optarg, &cfg.fmt) != 0)
                bad_flag("unknown --format '%s' (routes, counts or lines)", optarg);
            break;
        case O_QUERY: cfg.query = optarg; break;
        case O_CHECK: cfg.check = 1; break;
        case O_REPL: cfg.replicas = (int)num("replicas", optarg, 0, 7); break;
        case O_JSON: cfg.json = 1; break;
        case O_SEED: cfg.seed = (uint64_t)num("seed", optarg, 0, 9007199254740992.0); break;
        case O_PROG: cfg.progress_s = num("progress", optarg, 0, 3600); break;
        case 'h': usage(stdout); exit(0);
        default: bad_flag("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) bad_flag("unexpected argument '%s'", argv[optind]);
    if (!cfg.input) bad_flag("%s is required", "--input FILE");
    if (!cfg.width != !cfg.depth) bad_flag("%s: give both or neither", "--width and --depth");
}

/* Every role checks the files before joining: a bad path fails everywhere,
 * at once, with the same message. */
static void check_files(void)
{
    char err[512];
    if (sk_file_check(cfg.input, err, sizeof err) != 0 ||
        (cfg.query && sk_file_check(cfg.query, err, sizeof err) != 0)) {
        fprintf(stderr, "pssketch: %s\n", err);
        exit(1);
    }
}

static void die(const char *what, int rv)
{
    fprintf(stderr, "pssketch: %s: %s\n", what, ps_strerror(rv));
    fflush(NULL);
    _exit(1);
}

/* ---- tables ------------------------------------------------------------------------------- */

static int open_table(const char *name, int width, ps_table **t)
{
    ps_table_opts o;
    ps_table_opts_init(&o);
    o.dtype = PS_I64;
    o.width = width;
    o.replication = cfg.replicas;
    return ps_table_open(name, &o, t);
}

static void open_tables(sk_job *j)
{
    int rv = open_table("cm", 1, &j->cm);
    if (rv == 0) rv = open_table("stats", ST_NSTAT, &j->stats);
    if (rv == 0 && cfg.check) rv = open_table("exact", ps_num_workers(), &j->exact);
    if (rv != 0) die("cannot open the tables", rv);
}

/* ---- the summary -------------------------------------------------------------------------- */

typedef struct summary {
    int64_t s1[ST_NSTAT], m1[ST_NSTAT], s2[ST_NSTAT], m2[ST_NSTAT];
    int64_t row_lo, row_hi;
} summary;

static int64_t lost(const summary *s) { return s->row_lo < s->s1[ST_ACKED] ? s->s1[ST_ACKED] - s->row_lo : 0; }
static int64_t twice(const summary *s) { return s->row_hi > s->s1[ST_ACKED] ? s->row_hi - s->s1[ST_ACKED] : 0; }

static void print_text(const sk_job *j, const summary *s, double ips)
{
    printf("sketch: %u x %u (eps %.3g, delta %.3g), %d servers, %d workers, replicas %d\n",
           j->g.depth, j->g.width, j->g.eps, j->g.delta, ps_num_servers(), ps_num_workers(),
           cfg.replicas);
    printf("inserts: %" PRId64 " in %.3f s: %.0f/s; %" PRId64 " pushes, %.3f cells per insert\n",
           s->s1[ST_ITEMS], s->m1[ST_ELAPSED_US] / 1e6, ips, s->s1[ST_PUSHES],
           s->s1[ST_ITEMS] ? (double)s->s1[ST_CELLS] / (double)s->s1[ST_ITEMS] : 0.0);
    printf("rows: mass %" PRId64 "..%" PRId64 ", acknowledged %" PRId64 ", lost %" PRId64
           ", twice %" PRId64 ", failed pushes %" PRId64 "\n", s->row_lo, s->row_hi,
           s->s1[ST_ACKED], lost(s), twice(s), s->s1[ST_FAILED]);
    if (cfg.check) {
        int64_t n = s->s2[ST_CHECKED];
        printf("check: %" PRId64 " keys, %" PRId64 " underestimates, %.3f%% within eps*N = %.1f, "
               "mean error %.2f, max %" PRId64 "\n", n, s->s2[ST_UNDER],
               n ? 100.0 * s->s2[ST_WITHIN] / n : 0.0, j->g.eps * s->s1[ST_ITEMS],
               n ? (double)s->s2[ST_ERR_SUM] / n : 0.0, s->m2[ST_ERR_MAX]);
    }
}

static void print_json(const sk_job *j, const summary *s, double ips)
{
    static const char *fmts[] = {"routes", "counts", "lines"};
    int64_t n = s->s2[ST_CHECKED], dead = s->m1[ST_DEAD_MS], rec = s->m1[ST_RECOVERED_MS];
    printf("{\"stream\": \"%s\", \"servers\": %d, \"workers\": %d, \"replicas\": %d, "
           "\"eps\": %.6g, \"delta\": %.6g, \"width\": %u, \"depth\": %u, \"batch\": %zu, "
           "\"N\": %" PRId64 ", \"elapsed_s\": %.6f, \"inserts_per_s\": %.0f, "
           "\"pushes\": %" PRId64 ", \"cells_per_insert\": %.6f, \"acked\": %" PRId64 ", "
           "\"acked_lost\": %" PRId64 ", \"applied_twice\": %" PRId64 ", \"failed_pushes\": %"
           PRId64 ", \"row_mass_min\": %" PRId64 ", \"row_mass_max\": %" PRId64,
           fmts[cfg.fmt], ps_num_servers(), ps_num_workers(), cfg.replicas, j->g.eps,
           j->g.delta, j->g.width, j->g.depth, cfg.batch, s->s1[ST_ITEMS],
           s->m1[ST_ELAPSED_US] / 1e6, ips, s->s1[ST_PUSHES],
           s->s1[ST_ITEMS] ? (double)s->s1[ST_CELLS] / (double)s->s1[ST_ITEMS] : 0.0,
           s->s1[ST_ACKED], lost(s), twice(s), s->s1[ST_FAILED], s->row_lo, s->row_hi);
    if (dead > 0 && rec > 0) printf(", \"recovered_after_death_ms\": %" PRId64, rec - dead);
    if (cfg.check)
        printf(", \"distinct_keys\": %" PRId64 ", \"exact_mass\": %" PRId64 ", "
               "\"underestimates\": %" PRId64 ", \"within_eps_pct\": %.4f, "
               "\"mean_error\": %.4f, \"max_error\": %" PRId64, n, s->s2[ST_EXACT_MASS],
               s->s2[ST_UNDER], n ? 100.0 * s->s2[ST_WITHIN] / n : 0.0,
               n ? (double)s->s2[ST_ERR_SUM] / n : 0.0, s->m2[ST_ERR_MAX]);
    printf("}\n");
}

/* Worker 0, after the last barrier: gather, print; 0 if every invariant held. */
static int report(sk_job *j)
{
    summary s = {0};
    int rv = sk_pull_stats(j, 0, s.s1, s.m1);
    if (rv == 0 && cfg.check) rv = sk_pull_stats(j, 1, s.s2, s.m2);
    if (rv == 0) rv = sk_row_mass(j, &s.row_lo, &s.row_hi);
    if (rv != 0) die("gathering the results", rv);
    double el = s.m1[ST_ELAPSED_US] / 1e6, ips = el > 0 ? s.s1[ST_ITEMS] / el : 0;
    print_text(j, &s, ips);
    if (cfg.json) print_json(j, &s, ips);
    int bad = s.s1[ST_FAILED] || lost(&s) || twice(&s) ||
              (cfg.check && (s.s2[ST_UNDER] || s.s2[ST_EXACT_MASS] != s.s1[ST_ITEMS]));
    if (bad) fprintf(stderr, "pssketch: FAILED: an invariant does not hold (see above)\n");
    return bad;
}

/* ---- roles -------------------------------------------------------------------------------- */

static void load(sk_job *j)
{
    char err[512];
    if (sk_stream_load(cfg.input, cfg.fmt, ps_my_rank(), ps_num_workers(), cfg.seed,
                       &j->s, err, sizeof err) != 0) {
        fprintf(stderr, "pssketch: %s\n", err);
        fflush(NULL);
        _exit(1);
    }
}

/* A worker: stream, exact counts, [barrier], check and query, [barrier]. */
static int worker(sk_job *j)
{
    int rv = sk_insert(j);
    if (rv != 0) fprintf(stderr, "pssketch: inserting: %s\n", ps_strerror(rv));
    if (rv == 0) rv = sk_push_stats(j, 0, j->st);
    if (rv == 0 && cfg.check) rv = sk_push_exact(j);
    if (rv != 0) die("after the stream", rv);
    if ((rv = ps_barrier(PS_GROUP_ALL)) != 0) die("barrier", rv);
    int64_t sum[ST_NSTAT], max[ST_NSTAT];
    if (cfg.check) {
        if ((rv = sk_pull_stats(j, 0, sum, max)) != 0) die("pulling the stream's size", rv);
        if ((rv = sk_check(j, sum[ST_ITEMS])) != 0) die("checking", rv);
        if ((rv = sk_push_stats(j, 1, j->chk)) != 0) die("pushing the check", rv);
    }
    if (cfg.query && ps_my_rank() == 0 && (rv = sk_query(j)) != 0) die("querying", rv);
    if ((rv = ps_barrier(PS_GROUP_ALL)) != 0) die("barrier", rv);
    return ps_my_rank() == 0 ? report(j) : 0;
}

int main(int argc, char **argv)
{
    parse_flags(argc, argv);
    static sk_job j;
    const char *why;
    if (cm_geom_init(&j.g, cfg.eps, cfg.delta, cfg.width, cfg.depth, cfg.seed, &why) != 0)
        bad_flag("%s", why);
    check_files();
    j.cfg = &cfg;
    int rv = ps_start();
    if (rv != 0) {
        fprintf(stderr, "pssketch: cannot join the cluster: %s\n", ps_strerror(rv));
        return 1;
    }
    open_tables(&j);
    int status = 0;
    if (ps_my_role() == PS_ROLE_WORKER) {
        ps_on_view_change(sk_on_view, NULL);
        load(&j);
    }
    if ((rv = ps_barrier(PS_GROUP_ALL)) != 0) die("barrier", rv);
    if (ps_my_role() == PS_ROLE_WORKER) {
        status = worker(&j);
    } else {
        for (int b = 0; rv == 0 && b < 2; b++) rv = ps_barrier(PS_GROUP_ALL);
        status = rv != 0;
    }
    sk_stream_free(&j.s);
    int frv = ps_finalize();
    return ps_exit_code(status || frv);
}
