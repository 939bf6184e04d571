/*
 * test_route.c -- unit tests of src/kv/route.c, the radix sort that puts a
 * request's keys in the order the wire needs: every result is checked
 * against a reference (qsort of (key, position) pairs, which orders equal
 * keys by position, i.e. what a stable sort must give), for empty input,
 * one key, small inputs (insertion sort only), repeated keys, all keys
 * equal, keys sharing high bits or a narrow range, the extreme keys 0 and
 * 2^64-1, already sorted and reversed input, a skewed input whose first
 * bucket holds nearly everything, and 1M random keys.  The memo
 * (psi_route_sort_cached) must give the same answer as a sort every time:
 * for a list seen once, twice and again, for a list that differs from a
 * remembered one in a single key the fingerprint does not sample, for
 * lists of several owners past the memory cap, and after forgetting; a
 * shared order (psi_route_share) is the sort's and outlives its eviction.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv/route.h"

typedef struct pair {
    uint64_t key;
    size_t pos;
} pair;

static uint64_t next_key(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int cmp_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Sort keys[0..n) with psi_route_sort and compare with the stable reference. */
static void check_sort(const uint64_t *keys, size_t n)
{
    uint64_t *sorted = malloc((n + 1) * sizeof(*sorted));
    size_t *perm = malloc((n + 1) * sizeof(*perm));
    pair *ref = malloc((n + 1) * sizeof(*ref));
    assert_non_null(sorted);
    assert_non_null(perm);
    assert_non_null(ref);
    sorted[n] = 0xdeadbeef; /* guards: nothing is written past n */
    perm[n] = 777;
    for (size_t i = 0; i < n; i++) ref[i] = (pair){keys[i], i};
    qsort(ref, n, sizeof(*ref), cmp_pair);
    assert_int_equal(psi_route_sort(keys, n, sorted, perm), 0);
    for (size_t i = 0; i < n; i++) {
        assert_true(sorted[i] == ref[i].key);
        assert_int_equal(perm[i], ref[i].pos); /* stable: equal keys keep caller order */
        assert_true(keys[perm[i]] == sorted[i]);
    }
    assert_true(sorted[n] == 0xdeadbeef);
    assert_int_equal(perm[n], 777);
    free(sorted);
    free(perm);
    free(ref);
}

static void test_route_empty_and_one(void **state)
{
    (void)state;
    uint64_t k = 42;
    check_sort(&k, 0);
    check_sort(&k, 1);
}

static void test_route_small_sizes(void **state)
{
    (void)state;
    uint64_t s = 1, k[100];
    for (size_t n = 2; n <= 100; n++) {
        for (size_t i = 0; i < n; i++) k[i] = next_key(&s);
        check_sort(k, n);
    }
}

static void test_route_repeated_keys_stay_in_caller_order(void **state)
{
    (void)state;
    size_t n = 50000;
    uint64_t s = 2, *k = malloc(n * sizeof(*k));
    for (size_t i = 0; i < n; i++) k[i] = next_key(&s) % 97; /* ~515 copies of each */
    check_sort(k, n);
    for (size_t i = 0; i < n; i++) k[i] = next_key(&s) % 3 ? 5 : UINT64_MAX; /* two values */
    check_sort(k, n);
    for (size_t i = 0; i < n; i++) k[i] = 12345; /* all equal */
    check_sort(k, n);
    free(k);
}

static void test_route_narrow_ranges_and_extremes(void **state)
{
    (void)state;
    size_t n = 40000;
    uint64_t s = 3, *k = malloc(n * sizeof(*k));
    for (size_t i = 0; i < n; i++) k[i] = 0xabcd000000000000ULL | (next_key(&s) & 0xffff);
    check_sort(k, n); /* common high bits, repeats */
    for (size_t i = 0; i < n; i++) k[i] = 1000000 + next_key(&s) % 3000; /* narrow range */
    check_sort(k, n);
    for (size_t i = 0; i < n; i++) k[i] = next_key(&s) & 1 ? 0 : UINT64_MAX; /* extremes */
    k[n / 2] = 1;
    k[n / 3] = UINT64_MAX - 1;
    check_sort(k, n);
    for (size_t i = 0; i < n; i++) k[i] = (n - i) * 3; /* reversed */
    check_sort(k, n);
    for (size_t i = 0; i < n; i++) k[i] = i; /* sorted */
    check_sort(k, n);
    free(k);
}

/* One huge outlier puts every other key into the first bucket: the scratch
 * must hold that bucket, and the deeper passes must still finish it. */
static void test_route_skewed_one_bucket(void **state)
{
    (void)state;
    size_t n = 100000;
    uint64_t s = 4, *k = malloc(n * sizeof(*k));
    for (size_t i = 0; i < n; i++) k[i] = next_key(&s) % 1000000;
    k[777] = UINT64_MAX;
    check_sort(k, n);
    for (size_t i = 0; i < n; i++) k[i] = (uint64_t)1 << (next_key(&s) % 64); /* powers of 2 */
    check_sort(k, n);
    free(k);
}

static void test_route_million_random_keys(void **state)
{
    (void)state;
    size_t n = 1000000;
    uint64_t s = 5, *k = malloc(n * sizeof(*k));
    for (size_t i = 0; i < n; i++) k[i] = next_key(&s);
    check_sort(k, n);
    for (size_t i = 0; i < n; i++) k[i] = next_key(&s) % n; /* dense ids, shuffled */
    check_sort(k, n);
    free(k);
}

/* psi_route_sort_cached against psi_route_sort on keys[0..n). */
static void check_cached(const void *owner, const uint64_t *keys, size_t n)
{
    uint64_t *a = malloc(n * sizeof(*a)), *b = malloc(n * sizeof(*b));
    size_t *pa = malloc(n * sizeof(*pa)), *pb = malloc(n * sizeof(*pb));
    assert_int_equal(psi_route_sort(keys, n, a, pa), 0);
    assert_int_equal(psi_route_sort_cached(owner, keys, n, b, pb), 0);
    assert_memory_equal(a, b, n * sizeof(*a));
    assert_memory_equal(pa, pb, n * sizeof(*pa));
    free(a);
    free(b);
    free(pa);
    free(pb);
}

static void test_route_memo_is_exact(void **state)
{
    (void)state;
    size_t n = 100000;
    int owner1, owner2;
    uint64_t s = 6, *k = malloc(n * sizeof(*k));
    for (size_t i = 0; i < n; i++) k[i] = next_key(&s);
    for (int round = 0; round < 4; round++) check_cached(&owner1, k, n); /* remembered at 2 */
    k[n / 64 * 7 + 3] ^= 1; /* not a sampled position: same fingerprint, another list */
    check_cached(&owner1, k, n);
    check_cached(&owner1, k, n);
    k[n / 64 * 7 + 3] ^= 1; /* the first list again */
    check_cached(&owner1, k, n);
    check_cached(&owner2, k, n); /* another owner: a hit is exact for it too */
    psi_route_forget(&owner1);
    check_cached(&owner1, k, n);
    /* lists larger than the cap allows together: the oldest make room */
    size_t big = PSI_ROUTE_MEMO_BYTES / 24 / 3;
    uint64_t *b = malloc(big * sizeof(*b));
    for (int list = 0; list < 5; list++) {
        for (size_t i = 0; i < big; i++) b[i] = next_key(&s) % (big * 4);
        check_cached(&owner2, b, big);
        check_cached(&owner2, b, big);
        check_cached(&owner2, b, big);
    }
    check_cached(&owner1, k, n);
    psi_route_forget(&owner1);
    psi_route_forget(&owner2);
    free(b);
    free(k);
}

/* psi_route_share: nothing before a list is remembered, then the same
 * order a sort gives, never for a list one unsampled key apart; a shared
 * order outlives its list's eviction and forgetting (the request holding
 * it reads it after), and is freed by the last release (ASan checks). */
static void test_route_share(void **state)
{
    (void)state;
    size_t n = 50000;
    int owner;
    uint64_t s = 9, *k = malloc(n * sizeof(*k)), *a = malloc(n * sizeof(*a));
    size_t *pa = malloc(n * sizeof(*pa));
    for (size_t i = 0; i < n; i++) k[i] = next_key(&s);
    assert_int_equal(psi_route_sort(k, n, a, pa), 0);
    assert_null(psi_route_share(k, n));
    check_cached(&owner, k, n);
    assert_null(psi_route_share(k, n)); /* seen once: not remembered yet */
    check_cached(&owner, k, n);
    psi_route_order *o = psi_route_share(k, n), *o2 = psi_route_share(k, n);
    assert_non_null(o);
    assert_ptr_equal(o, o2);
    assert_int_equal(o->n, n);
    assert_true(o->unique); /* (64-bit random keys) */
    assert_memory_equal(o->sorted, a, n * sizeof(*a));
    assert_memory_equal(o->perm, pa, n * sizeof(*pa));
    k[n / 64 * 5 + 1] ^= 2;
    assert_null(psi_route_share(k, n));
    k[n / 64 * 5 + 1] ^= 2;
    psi_route_forget(&owner);
    assert_null(psi_route_share(k, n));
    assert_memory_equal(o->sorted, a, n * sizeof(*a)); /* still ours */
    psi_route_release(o);
    assert_memory_equal(o2->perm, pa, n * sizeof(*pa));
    psi_route_release(o2);
    psi_route_release(NULL);
    k[7] = k[4000]; /* a repeated key: remembered, and known not unique */
    check_cached(&owner, k, n);
    check_cached(&owner, k, n);
    assert_non_null(o = psi_route_share(k, n));
    assert_false(o->unique);
    psi_route_release(o);
    psi_route_forget(&owner);
    free(k);
    free(a);
    free(pa);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_empty_and_one),
        cmocka_unit_test(test_route_small_sizes),
        cmocka_unit_test(test_route_repeated_keys_stay_in_caller_order),
        cmocka_unit_test(test_route_narrow_ranges_and_extremes),
        cmocka_unit_test(test_route_skewed_one_bucket),
        cmocka_unit_test(test_route_million_random_keys),
        cmocka_unit_test(test_route_memo_is_exact),
        cmocka_unit_test(test_route_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
