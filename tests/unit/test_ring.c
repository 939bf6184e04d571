/*
 * test_ring.c -- unit tests of src/node/ring.c (the consistent-hash ring)
 * and src/node/hash.c (ps_hash_key, ps_hash_bytes).
 *
 * Every ring answer is checked against a brute-force model built from the
 * ring's own points (p_j is the upper bound of segment j < m): a key's
 * segment is the first point >= key (m if none), its owner that point's
 * server, wrapping to p_0's.  Ownership, segment tiling, slicing of sorted
 * key lists (sizes 0 to 1M, duplicates, one segment, exact boundaries,
 * small output buffers), the consistent-hashing property under removing and
 * adding a server, determinism, argument checks, shares, and the stability
 * and spread of the key hash.  Random inputs come from fixed seeds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node/ring.h"
#include "util/util.h"
#include "ps/kv.h"
#include "util/util.h"

#define V PSI_RING_DEFAULT_VNODES

/* XXH3-64, seed 0, of the 8 little-endian bytes of 0, 1, 2^64-1 and of "feature". */
#define PS_HASH_KEY_0 0xC77B3ABB6F87ACD9ull
#define PS_HASH_KEY_1 0x2FBC593564DB792Eull
#define PS_HASH_KEY_MAX 0x5111C7E47D784413ull
#define PS_HASH_FEATURE 0x061EA21290A5A07Aull

/* ---- helpers and the brute-force model ------------------------------------------ */

/* Node ids differ from ranks so that the two are never confused. */
static uint32_t id_of(int rank) { return 1000u + 7u * (uint32_t)rank; }

static psi_ring *ring_of(const int *ranks, int n, int vnodes)
{
    uint32_t ids[64];
    psi_ring *r;

    assert_true(n <= 64);
    for (int i = 0; i < n; i++) ids[i] = id_of(ranks[i]);
    r = psi_ring_new(ranks, ids, n, vnodes);
    assert_non_null(r);
    return r;
}

static psi_ring *ring_first(int n, int vnodes)
{
    int ranks[64];
    for (int i = 0; i < n; i++) ranks[i] = i;
    return ring_of(ranks, n, vnodes);
}

/* The ring's points and their owners' ranks, read back through the API. */
typedef struct model {
    uint32_t m;
    uint64_t *pts;
    int *rank;
} model;

static model model_of(const psi_ring *r)
{
    model md = {psi_ring_nsegs(r) - 1, NULL, NULL};
    uint64_t lo;

    md.pts = malloc((md.m + 1) * sizeof(*md.pts));
    md.rank = malloc((md.m + 1) * sizeof(*md.rank));
    assert_non_null(md.pts);
    assert_non_null(md.rank);
    for (uint32_t j = 0; j < md.m; j++) {
        psi_ring_seg_bounds(r, j, &lo, &md.pts[j]);
        md.rank[j] = psi_ring_seg_owner_rank(r, j);
        if (j > 0) assert_true(md.pts[j - 1] < md.pts[j]);
    }
    return md;
}

static void model_free(model *md)
{
    free(md->pts);
    free(md->rank);
}

/* Segment of key by a linear scan: the first point >= key, or m. */
static uint32_t linear_seg(const model *md, uint64_t key)
{
    uint32_t j = 0;
    while (j < md->m && md->pts[j] < key) j++;
    return j;
}

/* The same by a textbook lower bound (for the million-key cases). */
static uint32_t lower_seg(const model *md, uint64_t key)
{
    uint32_t lo = 0, hi = md->m;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (md->pts[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int model_owner_rank(const model *md, uint32_t seg) { return md->rank[seg < md->m ? seg : 0]; }

static int rank_of_key(const psi_ring *r, uint64_t key)
{
    return psi_ring_seg_owner_rank(r, psi_ring_seg_of(r, key));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t *random_keys(uint64_t seed, size_t n)
{
    uint64_t *k = malloc((n ? n : 1) * sizeof(*k));
    psi_rng rng;

    assert_non_null(k);
    psi_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) k[i] = psi_rng_next(&rng);
    return k;
}

static uint64_t *sorted_random_keys(uint64_t seed, size_t n)
{
    uint64_t *k = random_keys(seed, n);
    qsort(k, n, sizeof(*k), cmp_u64);
    return k;
}

/* ---- ownership -------------------------------------------------------------------- */

static void check_key(const psi_ring *r, const model *md, uint64_t key)
{
    uint32_t seg = linear_seg(md, key);

    assert_int_equal(psi_ring_seg_of(r, key), seg);
    assert_int_equal(psi_ring_owner(r, key), id_of(model_owner_rank(md, seg)));
    assert_int_equal(rank_of_key(r, key), model_owner_rank(md, seg));
}

static void test_owner_matches_brute_force(void **state)
{
    (void)state;
    psi_ring *r = ring_first(5, V);
    model md = model_of(r);
    uint64_t *keys = random_keys(1, 100000);
    int per_rank[5] = {0};

    assert_int_equal(md.m, 5 * V); /* no two points coincide */
    for (uint32_t j = 0; j < md.m; j++) per_rank[md.rank[j]]++;
    for (int i = 0; i < 5; i++) assert_int_equal(per_rank[i], V);
    for (size_t i = 0; i < 100000; i++) check_key(r, &md, keys[i]);
    check_key(r, &md, 0);
    check_key(r, &md, UINT64_MAX);
    for (uint32_t j = 0; j < md.m; j++) {
        check_key(r, &md, md.pts[j]);
        check_key(r, &md, md.pts[j] + 1);
        check_key(r, &md, md.pts[j] - 1);
    }
    assert_int_equal(psi_ring_owner(r, UINT64_MAX), psi_ring_owner(r, 0)); /* wraps */
    free(keys);
    model_free(&md);
    psi_ring_free(r);
}

static void test_single_server_owns_all(void **state)
{
    (void)state;
    int rank = 3;
    uint32_t id = 42;
    psi_ring *r = psi_ring_new(&rank, &id, 1, 1);
    uint64_t lo, hi;

    assert_non_null(r);
    assert_int_equal(psi_ring_nsegs(r), 2);
    assert_int_equal(psi_ring_owner(r, 0), 42);
    assert_int_equal(psi_ring_owner(r, UINT64_MAX), 42);
    assert_int_equal(psi_ring_seg_owner_rank(r, 1), 3);
    psi_ring_seg_bounds(r, 0, &lo, &hi);
    assert_int_equal(lo, 0);
    psi_ring_seg_bounds(r, 1, &lo, &hi);
    assert_int_equal(hi, UINT64_MAX);
    psi_ring_free(r);
}

/* ---- segments ----------------------------------------------------------------------- */

static void test_segments_tile_key_space(void **state)
{
    (void)state;
    psi_ring *r = ring_first(7, 33);
    uint32_t nsegs = psi_ring_nsegs(r);
    uint64_t lo, hi, prev_hi = 0;

    assert_int_equal(nsegs, 7 * 33 + 1);
    for (uint32_t j = 0; j < nsegs; j++) {
        psi_ring_seg_bounds(r, j, &lo, &hi);
        assert_true(lo <= hi);
        assert_int_equal(lo, j == 0 ? 0 : prev_hi + 1); /* no gap, no overlap */
        assert_int_equal(psi_ring_seg_of(r, lo), j);
        assert_int_equal(psi_ring_seg_of(r, hi), j);
        assert_int_equal(psi_ring_seg_owner(r, j), id_of(psi_ring_seg_owner_rank(r, j)));
        prev_hi = hi;
    }
    assert_int_equal(prev_hi, UINT64_MAX);
    assert_int_equal(psi_ring_seg_owner(r, nsegs - 1), psi_ring_seg_owner(r, 0));
    /* Out of range: no owner, empty bounds. */
    assert_int_equal(psi_ring_seg_owner(r, nsegs), 0xFFFFFFFFu);
    assert_int_equal(psi_ring_seg_owner_rank(r, nsegs), -1);
    psi_ring_seg_bounds(r, nsegs, &lo, &hi);
    assert_true(lo > hi);
    psi_ring_free(r);
}

/* ---- slicing -------------------------------------------------------------------------- */

/*
 * Slice keys[0..n) and compare with the model: the slices are contiguous,
 * cover [0, n), each lies in one segment with the right owner, and they are
 * maximal (neighbours differ in segment).  Returns the slice count.
 */
static size_t check_slices(const psi_ring *r, const model *md, const uint64_t *keys, size_t n)
{
    size_t cap = n + 1, count, at = 0;
    psi_ring_slice *s = malloc(cap * sizeof(*s));

    assert_non_null(s);
    count = psi_ring_slice_keys(r, keys, n, s, cap);
    assert_true(count <= n && count <= psi_ring_nsegs(r));
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(s[i].begin, at);
        assert_true(s[i].end > s[i].begin);
        assert_int_equal(s[i].owner, id_of(model_owner_rank(md, s[i].seg)));
        for (size_t k = s[i].begin; k < s[i].end; k++)
            assert_int_equal(lower_seg(md, keys[k]), s[i].seg);
        if (i > 0) assert_true(s[i - 1].seg < s[i].seg); /* maximal, in key order */
        at = s[i].end;
    }
    assert_int_equal(at, n);
    free(s);
    return count;
}

/* The number of runs of equal model segment in keys[0..n). */
static size_t model_runs(const model *md, const uint64_t *keys, size_t n)
{
    size_t runs = 0;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || lower_seg(md, keys[i]) != lower_seg(md, keys[i - 1])) runs++;
    return runs;
}

static void check_random_slices(const psi_ring *r, const model *md, uint64_t seed, size_t n)
{
    uint64_t *keys = sorted_random_keys(seed, n);
    assert_int_equal(check_slices(r, md, keys, n), model_runs(md, keys, n));
    free(keys);
}

static void test_slice_random_sizes(void **state)
{
    (void)state;
    psi_ring *r = ring_first(4, V);
    model md = model_of(r);
    const size_t sizes[] = {0, 1, 2, 3, 1000, 1000000};

    assert_int_equal(psi_ring_slice_keys(r, NULL, 0, NULL, 0), 0);
    for (size_t i = 0; i < PSI_ARRAY_LEN(sizes); i++) check_random_slices(r, &md, 10 + i, sizes[i]);
    model_free(&md);
    psi_ring_free(r);
}

static void test_slice_million_keys_many_segments(void **state)
{
    (void)state;
    psi_ring *r = ring_first(32, V);
    model md = model_of(r);
    uint64_t *keys = sorted_random_keys(20, 1000000);

    /* ~120 keys per segment on average: nearly every segment gets a slice. */
    size_t count = check_slices(r, &md, keys, 1000000);
    assert_int_equal(count, model_runs(&md, keys, 1000000));
    assert_true(count > psi_ring_nsegs(r) * 9 / 10);
    free(keys);
    model_free(&md);
    psi_ring_free(r);
}

static void test_slice_duplicates(void **state)
{
    (void)state;
    psi_ring *r = ring_first(3, 16);
    model md = model_of(r);
    uint64_t *vals = random_keys(30, 40), keys[2000];

    for (size_t i = 0; i < 2000; i++) keys[i] = vals[i % 40];
    qsort(keys, 2000, sizeof(*keys), cmp_u64);
    assert_int_equal(check_slices(r, &md, keys, 2000), model_runs(&md, keys, 2000));
    for (size_t i = 0; i < 2000; i++) keys[i] = md.pts[5]; /* one key, repeated */
    assert_int_equal(check_slices(r, &md, keys, 2000), 1);
    free(vals);
    model_free(&md);
    psi_ring_free(r);
}

static void test_slice_one_segment(void **state)
{
    (void)state;
    psi_ring *r = ring_first(4, 16);
    model md = model_of(r);
    uint32_t nsegs = psi_ring_nsegs(r);
    const uint32_t segs[] = {0, 1, 5, nsegs / 2, nsegs - 2, nsegs - 1};
    uint64_t keys[1000], lo, hi;
    psi_ring_slice s;

    for (size_t t = 0; t < PSI_ARRAY_LEN(segs); t++) {
        uint32_t j = segs[t];
        psi_ring_seg_bounds(r, j, &lo, &hi);
        for (size_t i = 0; i < 1000; i++)
            keys[i] = lo + (hi - lo) / 999 * i; /* lo ... near hi, ascending */
        keys[999] = hi;
        assert_int_equal(check_slices(r, &md, keys, 1000), 1);
        assert_int_equal(psi_ring_slice_keys(r, keys, 1000, &s, 1), 1);
        assert_int_equal(s.seg, j);
        assert_int_equal(s.begin, 0);
        assert_int_equal(s.end, 1000);
    }
    model_free(&md);
    psi_ring_free(r);
}

static void test_slice_keys_at_boundaries(void **state)
{
    (void)state;
    psi_ring *r = ring_first(4, 64);
    model md = model_of(r);
    uint32_t nsegs = psi_ring_nsegs(r);
    uint64_t *keys = malloc(2 * nsegs * sizeof(*keys));
    size_t n = 0;

    assert_non_null(keys);
    for (uint32_t j = 0; j < nsegs; j++) { /* lo and hi of every segment: p_{j-1}+1, p_j */
        psi_ring_seg_bounds(r, j, &keys[n], &keys[n + 1]);
        n += 2;
    }
    assert_int_equal(check_slices(r, &md, keys, n), nsegs);
    assert_int_equal(check_slices(r, &md, keys + 1, 1), 1); /* p_0 alone */
    assert_int_equal(check_slices(r, &md, keys + 1, 2), 2); /* p_0, p_0 + 1 */
    assert_int_equal(check_slices(r, &md, keys + n - 2, 2), 1); /* p_{m-1}+1, 2^64-1 */
    free(keys);
    model_free(&md);
    psi_ring_free(r);
}

static void test_slice_small_cap(void **state)
{
    (void)state;
    psi_ring *r = ring_first(4, V);
    uint64_t *keys = sorted_random_keys(40, 1000);
    psi_ring_slice all[1000], few[4];
    size_t count = psi_ring_slice_keys(r, keys, 1000, all, 1000);

    assert_true(count > 3);
    memset(few, 0xAB, sizeof(few));
    assert_int_equal(psi_ring_slice_keys(r, keys, 1000, few, 3), count);
    assert_memory_equal(few, all, 3 * sizeof(*few));
    assert_int_equal(few[3].seg, 0xABABABABu); /* nothing written past cap */
    assert_int_equal(psi_ring_slice_keys(r, keys, 1000, NULL, 0), count);
    free(keys);
    psi_ring_free(r);
}

/* Unsorted input gives meaningless slices but never reads out of bounds. */
static void test_slice_unsorted_stays_in_bounds(void **state)
{
    (void)state;
    psi_ring *r = ring_first(4, 16);
    uint64_t *keys = random_keys(50, 5000);
    psi_ring_slice *s = malloc(5000 * sizeof(*s));
    size_t count, at = 0;

    assert_non_null(s);
    count = psi_ring_slice_keys(r, keys, 5000, s, 5000);
    assert_true(count <= 5000);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(s[i].begin, at);
        assert_true(s[i].end > at);
        at = s[i].end;
    }
    assert_int_equal(at, 5000);
    free(s);
    free(keys);
    psi_ring_free(r);
}

/* ---- consistent hashing ------------------------------------------------------------- */

/*
 * Every key of `keys` (plus every point of `big` and its neighbours) owned in
 * `big` by a rank other than `extra` has the same owner in `small`, where
 * `small` is `big` without the server of rank `extra`.
 */
static void check_only_extra_moves(const psi_ring *big, const psi_ring *small, int extra)
{
    model mb = model_of(big);
    uint64_t *keys = random_keys(60, 100000);
    size_t moved = 0, total = 0;

    for (size_t i = 0; i < 100000 + 3 * (size_t)mb.m; i++) {
        uint64_t k = i < 100000 ? keys[i] : mb.pts[(i - 100000) / 3] + (i % 3) - 1;
        int rb = rank_of_key(big, k), rs = rank_of_key(small, k);
        assert_int_not_equal(rs, extra);
        if (rb != extra)
            assert_int_equal(rs, rb);
        else
            moved++;
        total++;
    }
    assert_true(moved > 0 && moved < total);
    free(keys);
    model_free(&mb);
}

static void test_remove_server_moves_only_its_keys(void **state)
{
    (void)state;
    const int all[] = {0, 1, 2, 3}, rest[] = {0, 1, 3};
    psi_ring *big = ring_of(all, 4, V), *small = ring_of(rest, 3, V);
    model mb = model_of(big), ms = model_of(small);
    uint32_t j = 0;

    /* The smaller ring's points are the bigger ring's minus rank 2's. */
    for (uint32_t i = 0; i < mb.m; i++) {
        if (mb.rank[i] == 2) continue;
        assert_true(j < ms.m);
        assert_int_equal(ms.pts[j], mb.pts[i]);
        assert_int_equal(ms.rank[j++], mb.rank[i]);
    }
    assert_int_equal(j, ms.m);
    check_only_extra_moves(big, small, 2);
    model_free(&mb);
    model_free(&ms);
    psi_ring_free(big);
    psi_ring_free(small);
}

static int not_dead(void *arg, uint32_t id) { return id != *(const uint32_t *)arg; }

/* A segment's chain starts at its owner, holds distinct servers, and with a
 * server dead its head is the owner on the ring without that server: so the
 * first live successor (the replica) is the one that takes over its keys. */
static void test_chain_head_is_owner_after_death(void **state)
{
    (void)state;
    const int all[] = {0, 1, 2, 3}, rest[] = {0, 1, 3};
    psi_ring *big = ring_of(all, 4, V), *small = ring_of(rest, 3, V);
    uint32_t dead = id_of(2), c[8];
    uint64_t x = 12345;

    for (uint32_t seg = 0; seg < psi_ring_nsegs(big); seg++) {
        assert_int_equal(psi_ring_seg_chain(big, seg, NULL, NULL, c, 8), 4);
        assert_int_equal(c[0], psi_ring_seg_owner(big, seg));
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < i; j++) assert_int_not_equal(c[i], c[j]);
        assert_int_equal(psi_ring_seg_chain(big, seg, NULL, NULL, c, 2), 2);
    }
    for (int i = 0; i < 20000; i++) {
        uint64_t key = psi_mix64(x += 0x9e3779b97f4a7c15ull);
        uint32_t seg = psi_ring_seg_of(big, key);
        assert_int_equal(psi_ring_seg_chain(big, seg, not_dead, &dead, c, 2), 2);
        assert_int_not_equal(c[0], dead);
        assert_int_not_equal(c[1], dead);
        assert_int_equal(c[0], psi_ring_owner(small, key));
    }
    assert_int_equal(psi_ring_seg_chain(big, psi_ring_nsegs(big), NULL, NULL, c, 8), 0);
    assert_int_equal(psi_ring_nservers(big), 4);
    psi_ring_free(big);
    psi_ring_free(small);
}

static void test_add_server_takes_only_to_new(void **state)
{
    (void)state;
    const int old4[] = {0, 1, 2, 3}, new5[] = {0, 1, 2, 3, 4};
    psi_ring *before = ring_of(old4, 4, V), *after = ring_of(new5, 5, V);
    double shares[5];

    check_only_extra_moves(after, before, 4); /* after = before + rank 4 */
    psi_ring_shares(after, shares);
    assert_true(shares[4] > 0.5 / 5 && shares[4] < 1.5 / 5); /* it takes about 1/5 */
    psi_ring_free(before);
    psi_ring_free(after);
}

/* ---- determinism and arguments ---------------------------------------------------------- */

static void assert_rings_equal(const psi_ring *a, const psi_ring *b)
{
    uint64_t alo, ahi, blo, bhi;

    assert_int_equal(psi_ring_nsegs(a), psi_ring_nsegs(b));
    for (uint32_t j = 0; j < psi_ring_nsegs(a); j++) {
        psi_ring_seg_bounds(a, j, &alo, &ahi);
        psi_ring_seg_bounds(b, j, &blo, &bhi);
        assert_int_equal(alo, blo);
        assert_int_equal(ahi, bhi);
        assert_int_equal(psi_ring_seg_owner(a, j), psi_ring_seg_owner(b, j));
        assert_int_equal(psi_ring_seg_owner_rank(a, j), psi_ring_seg_owner_rank(b, j));
    }
}

static void test_deterministic_and_order_free(void **state)
{
    (void)state;
    const int fwd[] = {0, 1, 2, 3, 4, 5}, rev[] = {5, 3, 1, 0, 4, 2};
    psi_ring *a = ring_of(fwd, 6, V), *b = ring_of(fwd, 6, V), *c = ring_of(rev, 6, V);
    double sa[6], sc[6];

    assert_rings_equal(a, b);
    assert_rings_equal(a, c);
    psi_ring_shares(a, sa);
    psi_ring_shares(c, sc);
    assert_memory_equal(sa, sc, sizeof(sa));
    psi_ring_free(a);
    psi_ring_free(b);
    psi_ring_free(c);
}

/* Positions depend on the rank alone: other node ids give the same cut. */
static void test_positions_ignore_ids(void **state)
{
    (void)state;
    const int ranks[] = {0, 1, 2};
    const uint32_t ids[] = {77, 5, 9};
    psi_ring *a = ring_of(ranks, 3, 32), *b = psi_ring_new(ranks, ids, 3, 32);
    uint64_t alo, ahi, blo, bhi;

    assert_non_null(b);
    for (uint32_t j = 0; j < psi_ring_nsegs(a); j++) {
        psi_ring_seg_bounds(a, j, &alo, &ahi);
        psi_ring_seg_bounds(b, j, &blo, &bhi);
        assert_int_equal(ahi, bhi);
        assert_int_equal(psi_ring_seg_owner(b, j), ids[psi_ring_seg_owner_rank(a, j)]);
    }
    psi_ring_free(a);
    psi_ring_free(b);
}

static void test_bad_args_rejected(void **state)
{
    (void)state;
    const int ranks[] = {0, 1, 2}, dup_rank[] = {0, 1, 1}, neg_rank[] = {0, -1, 2};
    const uint32_t ids[] = {10, 11, 12}, dup_id[] = {10, 11, 10};

    assert_null(psi_ring_new(ranks, ids, 0, 4));
    assert_null(psi_ring_new(ranks, ids, -1, 4));
    assert_null(psi_ring_new(ranks, ids, 3, 0));
    assert_null(psi_ring_new(ranks, ids, 3, -5));
    assert_null(psi_ring_new(NULL, ids, 3, 4));
    assert_null(psi_ring_new(ranks, NULL, 3, 4));
    assert_null(psi_ring_new(dup_rank, ids, 3, 4));
    assert_null(psi_ring_new(neg_rank, ids, 3, 4));
    assert_null(psi_ring_new(ranks, dup_id, 3, 4));
    assert_null(psi_ring_new(ranks, ids, 3, (int)(PSI_RING_MAX_POINTS / 3 + 1)));
    psi_ring_free(NULL);
}

/* ---- shares ------------------------------------------------------------------------------ */

static void test_shares_sum_to_one(void **state)
{
    (void)state;
    const int sizes[] = {1, 3, 8, 32};

    for (size_t t = 0; t < PSI_ARRAY_LEN(sizes); t++) {
        int n = sizes[t];
        psi_ring *r = ring_first(n, V);
        double shares[32], sum = 0;
        psi_ring_shares(r, shares);
        for (int i = 0; i < n; i++) {
            assert_true(shares[i] > 0);
            sum += shares[i];
        }
        assert_true(sum > 1 - 1e-12 && sum < 1 + 1e-12);
        psi_ring_free(r);
    }
}

/* The default V keeps the real ring within the balance bench/ring-balance.md reports. */
static void test_default_vnodes_balance(void **state)
{
    (void)state;
    for (int n = 2; n <= 32; n *= 2) {
        psi_ring *r = ring_first(n, V);
        double shares[32], mx = 0;
        psi_ring_shares(r, shares);
        for (int i = 0; i < n; i++) mx = PSI_MAX(mx, shares[i]);
        assert_true(mx * n <= 1.15);
        psi_ring_free(r);
    }
}

/* ---- key hash ------------------------------------------------------------------------------ */

static void test_hash_stable(void **state)
{
    (void)state;
    uint8_t le[8];

    /* Pinned: a change here moves every stored key (hash.c must never change). */
    assert_int_equal(ps_hash_bytes("", 0), 0x2D06800538D394C2ull); /* XXH3-64 of "" */
    assert_int_equal(ps_hash_bytes(NULL, 0), 0x2D06800538D394C2ull);
    assert_int_equal(ps_hash_key(0), PS_HASH_KEY_0);
    assert_int_equal(ps_hash_key(1), PS_HASH_KEY_1);
    assert_int_equal(ps_hash_key(UINT64_MAX), PS_HASH_KEY_MAX);
    assert_int_equal(ps_hash_bytes("feature", 7), PS_HASH_FEATURE);
    for (uint64_t x = 0; x < 1000; x++) {
        uint64_t raw = x * 0x9E3779B97F4A7C15ull;
        psi_put_u64(le, raw);
        assert_int_equal(ps_hash_key(raw), ps_hash_key(raw));
        assert_int_equal(ps_hash_key(raw), ps_hash_bytes(le, 8));
    }
}

/* Pearson's chi-square of 65536 values over 16 buckets of 4 bits at `shift`. */
static double chi_square(const uint64_t *h, size_t n, int shift)
{
    double count[16] = {0}, expect = (double)n / 16, chi = 0;
    for (size_t i = 0; i < n; i++) count[(h[i] >> shift) & 15]++;
    for (int b = 0; b < 16; b++) chi += (count[b] - expect) * (count[b] - expect) / expect;
    return chi;
}

/*
 * Consecutive ids spread: the top 4 bits (the ones the ring cuts on) and the
 * low 4 bits are near-uniform.  37.70 is the 0.999 quantile of chi-square
 * with 15 degrees of freedom; the inputs are fixed, so this cannot flake.
 */
static void test_hash_spreads_consecutive_ids(void **state)
{
    (void)state;
    uint64_t *h = malloc(65536 * sizeof(*h));
    char name[32];

    assert_non_null(h);
    for (uint64_t i = 0; i < 65536; i++) h[i] = ps_hash_key(i);
    assert_true(chi_square(h, 65536, 60) < 37.70);
    assert_true(chi_square(h, 65536, 0) < 37.70);
    qsort(h, 65536, sizeof(*h), cmp_u64);
    for (size_t i = 1; i < 65536; i++) assert_true(h[i] != h[i - 1]);
    for (int i = 0; i < 65536; i++) {
        int len = snprintf(name, sizeof(name), "feature_%d", i);
        h[i] = ps_hash_bytes(name, (size_t)len);
    }
    assert_true(chi_square(h, 65536, 60) < 37.70);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_owner_matches_brute_force),
        cmocka_unit_test(test_single_server_owns_all),
        cmocka_unit_test(test_chain_head_is_owner_after_death),
        cmocka_unit_test(test_segments_tile_key_space),
        cmocka_unit_test(test_slice_random_sizes),
        cmocka_unit_test(test_slice_million_keys_many_segments),
        cmocka_unit_test(test_slice_duplicates),
        cmocka_unit_test(test_slice_one_segment),
        cmocka_unit_test(test_slice_keys_at_boundaries),
        cmocka_unit_test(test_slice_small_cap),
        cmocka_unit_test(test_slice_unsorted_stays_in_bounds),
        cmocka_unit_test(test_remove_server_moves_only_its_keys),
        cmocka_unit_test(test_add_server_takes_only_to_new),
        cmocka_unit_test(test_deterministic_and_order_free),
        cmocka_unit_test(test_positions_ignore_ids),
        cmocka_unit_test(test_bad_args_rejected),
        cmocka_unit_test(test_shares_sum_to_one),
        cmocka_unit_test(test_default_vnodes_balance),
        cmocka_unit_test(test_hash_stable),
        cmocka_unit_test(test_hash_spreads_consecutive_ids),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
