/*
 * options.c -- psbench's command line.  A table of flags, each with its
 * parser, so adding a flag is one row; every number is range-checked and a
 * bad flag prints one line naming it plus the usage hint, and exits 2.
 * Parsing happens before ps_start, so `--help` and usage errors never need
 * a cluster.
 *
 * Never: accept a value with trailing junk, or a request over the library's
 * default 1 GiB message cap (it would only fail later, on every node).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psbench.h"

#define MAX_REQUEST_BYTES (1ull << 30)

static const char usage[] =
    "Usage: psrun -s S -w W -- psbench --op push|pull|pushpull --keys N --val-len L\n"
    "              --iters I [options]\n"
    "\n"
    "Every node opens table \"psbench\" (f32, width L, update ADD); workers run I\n"
    "iterations of the op on the same N keys with at most K tasks in flight, after\n"
    "W warm-up iterations.  Worker rank 0 prints the result (latency percentiles,\n"
    "GB/s of values, Mkeys/s, modelled wire bytes); each server prints its\n"
    "storage line {\"server\":..,\"keys\":..,\"bytes\":..,\"bytes_per_key\":..} on stderr.\n"
    "\n"
    "Options:\n"
    "  --op OP          push, pull or pushpull (required)\n"
    "  --keys N         keys per request, 1..2^32 (required)\n"
    "  --val-len L      f32 values per key (the table width), >= 1 (required)\n"
    "  --iters I        measured iterations, >= 1 (required)\n"
    "  --inflight K     most tasks in flight, 1..4096 (default 1)\n"
    "  --warmup W       unmeasured iterations first (default min(I/10, 1000))\n"
    "  --filters LIST   the table's filter chain, e.g. keycache,zstd or int8\n"
    "                   (wire_bytes then counts what the filters left)\n"
    "  --store          sparse table (servers' hash table); without it the table is\n"
    "                   dense over [0, N) and servers keep flat arrays\n"
    "  --random-keys    N distinct random u64 keys over the whole key space, fixed\n"
    "                   for the run and the same on every worker (needs --store)\n"
    "  --sort-keys      hand the random keys over sorted (skips the library's sort)\n"
    "  --orders S       hand the random keys over in S different orders in turn\n"
    "                   (default 1: the same list every time; S > 8 defeats the\n"
    "                   library's memo of sorted key lists, so every request sorts)\n"
    "  --seed S         RNG seed for --random-keys (default 42)\n"
    "  --zero-copy      push values straight from the benchmark's array\n"
    "                   (ps_task_opts.zero_copy; the array never changes)\n"
    "  --progress SECS  seconds between progress lines on stderr (default 5; 0: off)\n"
    "  --json           print the result as one JSON object per line\n"
    "  -h, --help       print this help and exit\n"
    "\n"
    "Exit status: 0 on success, 1 when a task or the cluster failed, 2 on a usage error.\n";

typedef int (*flag_fn)(pb_opts *o, const char *val);

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-') return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int set_op(pb_opts *o, const char *v)
{
    static const char *const names[] = {"push", "pull", "pushpull"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(v, names[i])) {
            o->op = (pb_op)i;
            return 0;
        }
    return -1;
}

static int set_keys(pb_opts *o, const char *v) { return parse_u64(v, 1, 1ull << 32, &o->keys); }

#define SET_INT(fn, field, lo, hi)                                     \
    static int fn(pb_opts *o, const char *v)                           \
    {                                                                  \
        uint64_t x;                                                    \
        if (parse_u64(v, lo, hi, &x)) return -1;                       \
        o->field = (__typeof__(o->field))x;                            \
        return 0;                                                      \
    }
SET_INT(set_val_len, val_len, 1, 1u << 30)
SET_INT(set_iters, iters, 1, 1ull << 40)
SET_INT(set_inflight, inflight, 1, 4096)
SET_INT(set_warmup, warmup, 0, 1ull << 40)
SET_INT(set_seed, seed, 0, UINT64_MAX)
SET_INT(set_orders, orders, 1, 1024)

static int set_progress(pb_opts *o, const char *v)
{
    char *end;
    errno = 0;
    double s = strtod(v, &end);
    if (errno || *end || end == v || !(s >= 0 && s <= 86400)) return -1;
    o->progress_s = s;
    return 0;
}

static int set_random(pb_opts *o, const char *v) { (void)v; return o->random_keys = 1, 0; }
static int set_sort(pb_opts *o, const char *v) { (void)v; return o->sort_keys = 1, 0; }
static int set_store(pb_opts *o, const char *v) { (void)v; return o->store = 1, 0; }
static int set_json(pb_opts *o, const char *v) { (void)v; return o->json = 1, 0; }
static int set_zcopy(pb_opts *o, const char *v) { (void)v; return o->zero_copy = 1, 0; }
static int set_filters(pb_opts *o, const char *v) { return o->filters = v, 0; }

static const struct flag {
    const char *name;
    int takes_value;
    flag_fn fn;
} flags[] = {
    {"--op", 1, set_op},           {"--keys", 1, set_keys},
    {"--val-len", 1, set_val_len}, {"--iters", 1, set_iters},
    {"--inflight", 1, set_inflight}, {"--warmup", 1, set_warmup},
    {"--seed", 1, set_seed},       {"--progress", 1, set_progress},
    {"--random-keys", 0, set_random}, {"--sort-keys", 0, set_sort},
    {"--store", 0, set_store},     {"--json", 0, set_json},
    {"--filters", 1, set_filters}, {"--zero-copy", 0, set_zcopy},
    {"--orders", 1, set_orders},
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "psbench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(psbench --help for usage)\n");
    return 2;
}

/* Apply one flag at argv[*i] (advancing *i past its value); 0 or 2. */
static int parse_one(int argc, char **argv, int *i, pb_opts *o)
{
    const char *arg = argv[*i], *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
        if (strlen(flags[f].name) != len || strncmp(arg, flags[f].name, len)) continue;
        const char *val = eq ? eq + 1 : NULL;
        if (flags[f].takes_value && !val) {
            if (*i + 1 >= argc) return usage_error("%s needs a value", flags[f].name);
            val = argv[++*i];
        } else if (!flags[f].takes_value && val) {
            return usage_error("%s takes no value", flags[f].name);
        }
        if (flags[f].fn(o, val) != 0) return usage_error("bad value for %s", arg);
        return 0;
    }
    return usage_error("unknown option %s", arg);
}

/* Cross-flag rules and defaults; 0 or 2. */
static int finish(pb_opts *o, int have_op)
{
    if (!have_op || !o->keys || !o->val_len || !o->iters)
        return usage_error("%s", "--op, --keys, --val-len and --iters are required");
    if (o->random_keys && !o->store)
        return usage_error("%s", "--random-keys needs --store (a dense table covers [0, N) only)");
    if (o->sort_keys && !o->random_keys)
        return usage_error("%s", "--sort-keys only applies to --random-keys");
    if (o->orders > 1 && (!o->random_keys || o->sort_keys))
        return usage_error("%s", "--orders only applies to unsorted --random-keys");
    if ((double)o->orders * (double)o->keys * 8 > (double)MAX_REQUEST_BYTES)
        return usage_error("%s", "--orders x --keys would need over 1 GiB of key lists");
    if ((double)o->keys * ((double)o->val_len * 4 + 8) > (double)MAX_REQUEST_BYTES)
        return usage_error("%s", "one request would exceed the 1 GiB message cap");
    if (o->warmup < 0) o->warmup = o->iters / 10 < 1000 ? o->iters / 10 : 1000;
    return 0;
}

int pb_parse(int argc, char **argv, pb_opts *o)
{
    int have_op = 0, rv;
    memset(o, 0, sizeof(*o));
    o->inflight = 1;
    o->warmup = -1;
    o->seed = 42;
    o->orders = 1;
    o->progress_s = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage, stdout);
            return 1;
        }
        if (!strncmp(argv[i], "--op", 4) && (argv[i][4] == 0 || argv[i][4] == '=')) have_op = 1;
        if ((rv = parse_one(argc, argv, &i, o)) != 0) return rv;
    }
    return finish(o, have_op);
}

const char *pb_op_name(pb_op op)
{
    return op == PB_PUSH ? "push" : op == PB_PULL ? "pull" : "pushpull";
}
