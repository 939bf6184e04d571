/*
 * psstore.c -- time the server's push path on one core, with no network:
 * `psstore --keys N [--random] [--batch B] [--rounds R] [--seed S] [--check]`.
 *
 * Design: the keys (random u64 with --random, else 0..N-1) are made before
 * the clock starts.  Each round pushes every key once, in batches of B, the
 * way a server applies a push: psi_store_upsert_batch, init of the new
 * blocks, psi_update_apply_batch (ADD, f32, width 1, g = 1).  One JSON line
 * on stdout: {"keys":N,"seconds":..,"mkeys_per_s":..,"bytes_per_key":..},
 * where mkeys_per_s counts N * R key updates.  --check then verifies every
 * value equals R (outside the timing).
 *
 * Must never: print anything but the JSON line to stdout, or report a rate
 * for a run where the store refused a key (exit status 1 instead).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/store.h"
#include "kv/update.h"

typedef struct bench_opts {
    size_t keys, batch, rounds;
    uint64_t seed;
    int random, check;
} bench_opts;

static const char usage[] =
    "Usage: psstore --keys N [--random] [--batch B] [--rounds R] [--seed S] [--check]\n"
    "Push N keys (random u64 with --random, else 0..N-1) R times into a server store\n"
    "(ADD, f32, width 1) in batches of B (default 65536) and print one JSON line.\n";

static int parse_size(const char *s, size_t lo, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end != '\0' || v < lo) return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_opts(int argc, char **argv, bench_opts *o)
{
    static const struct option lo[] = {
        {"keys", 1, NULL, 'k'},   {"batch", 1, NULL, 'b'}, {"rounds", 1, NULL, 'r'},
        {"seed", 1, NULL, 's'},   {"random", 0, NULL, 'R'}, {"check", 0, NULL, 'c'},
        {"help", 0, NULL, 'h'},   {NULL, 0, NULL, 0}};
    size_t seed = 1;
    int c, rv = 0;
    *o = (bench_opts){.keys = 1000000, .batch = 65536, .rounds = 1, .seed = 1};
    while (rv == 0 && (c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        if (c == 'k') rv = parse_size(optarg, 1, &o->keys);
        else if (c == 'b') rv = parse_size(optarg, 1, &o->batch);
        else if (c == 'r') rv = parse_size(optarg, 1, &o->rounds);
        else if (c == 's') rv = parse_size(optarg, 0, &seed);
        else if (c == 'R') o->random = 1;
        else if (c == 'c') o->check = 1;
        else rv = -1;
    }
    o->seed = seed;
    if (rv != 0 || optind != argc) fputs(usage, stderr);
    return rv != 0 || optind != argc ? -1 : 0;
}

static uint64_t splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* One push of keys[0..n): upsert, init new blocks, apply.  Keys refused. */
static size_t push(psi_store *s, const psi_update *u, const uint64_t *keys, size_t n,
                   const float *g, void **blocks, uint8_t *inserted)
{
    size_t nulls = psi_store_upsert_batch(s, keys, n, blocks, inserted);
    for (size_t i = 0; i < n; i++)
        if (inserted[i]) psi_update_init_block(u, keys[i], blocks[i]);
    psi_update_apply_batch(u, keys, blocks, g, n);
    return nulls;
}

/* Every key holds `want` (pushed that many times with g = 1). */
static int check_values(const psi_store *s, const uint64_t *keys, size_t n, float want)
{
    for (size_t i = 0; i < n; i++) {
        const float *v = psi_store_find(s, keys[i]);
        if (v == NULL || *v != want) {
            fprintf(stderr, "psstore: key %llu holds %g, want %g\n",
                    (unsigned long long)keys[i], v ? (double)*v : -1.0, (double)want);
            return -1;
        }
    }
    return 0;
}

static int run(const bench_opts *o, const psi_update *u, const uint64_t *keys)
{
    psi_store *s = psi_store_new(psi_update_block_bytes(u));
    size_t b = o->batch < o->keys ? o->batch : o->keys, refused = 0;
    void **blocks = malloc(b * sizeof(*blocks));
    uint8_t *inserted = malloc(b);
    float *g = malloc(b * sizeof(*g));
    double t0, t;
    int rv = 1;
    if (s == NULL || blocks == NULL || inserted == NULL || g == NULL) goto out;
    for (size_t i = 0; i < b; i++) g[i] = 1.0f;
    t0 = now_s();
    for (size_t r = 0; r < o->rounds; r++) {
        for (size_t i = 0; i < o->keys; i += b) {
            size_t n = o->keys - i < b ? o->keys - i : b;
            refused += push(s, u, keys + i, n, g, blocks, inserted);
        }
    }
    t = now_s() - t0;
    if (refused != 0) fprintf(stderr, "psstore: the store refused %zu keys\n", refused);
    else if (!o->check || check_values(s, keys, o->keys, (float)o->rounds) == 0) rv = 0;
    printf("{\"keys\":%zu,\"seconds\":%.6f,\"mkeys_per_s\":%.3f,\"bytes_per_key\":%.2f}\n",
           o->keys, t, (double)(o->keys * o->rounds) / t / 1e6,
           (double)psi_store_bytes(s) / (double)psi_store_size(s));
out:
    psi_store_free(s);
    free(blocks);
    free(inserted);
    free(g);
    return rv;
}

int main(int argc, char **argv)
{
    bench_opts o;
    ps_table_opts to;
    psi_update u;
    uint64_t *keys, state;
    int rv;
    if (parse_opts(argc, argv, &o) != 0) return 2;
    memset(&to, 0, sizeof(to));
    to.dtype = PS_F32;
    to.width = 1;
    to.update = PS_UPDATE_ADD;
    if (psi_update_from_opts(&u, &to) != 0) return 1;
    if ((keys = malloc(o.keys * sizeof(*keys))) == NULL) return 1;
    state = o.seed;
    for (size_t i = 0; i < o.keys; i++) keys[i] = o.random ? splitmix(&state) : i;
    rv = run(&o, &u, keys);
    free(keys);
    return rv;
}
