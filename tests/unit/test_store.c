/*
 * test_store.c -- unit tests of src/kv/store.c: the sparse hash table
 * (1M random keys against a sorted reference, the keys 0 and 2^64-1,
 * contents across growth, foreach visiting each key once, a table copied
 * key by key in walk order staying spread out (also when reserved), batch upsert
 * equal to single upserts, the byte limit refusing inserts without harm,
 * bytes per key at the maximum load, batch find equal to find, blocks
 * aligned as store.h promises for every layout, a batch of new keys sizing
 * the table at 15 bytes per key, hinted batches answering exactly what
 * unhinted ones do whatever the hints say) and the dense paged store (lazy pages,
 * out-of-range keys, bytes only for touched pages, init and foreach).
 *
 * Blocks hold a value derived from the key (tag()), so any block handed
 * back for the wrong key, or moved without its contents, shows up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv/store.h"

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t next_key(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t tag(uint64_t key) { return key * 0x2545f4914f6cdd1dULL + 1; }

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void *put_tag(psi_store *s, uint64_t key)
{
    int ins = -1;
    uint64_t *b = psi_store_upsert(s, key, &ins);
    assert_non_null(b);
    if (ins) {
        assert_int_equal(*b, 0); /* new blocks are zero-filled */
        *b = tag(key);
    }
    return b;
}

static void check_tag(const psi_store *s, uint64_t key)
{
    uint64_t *b = psi_store_find(s, key);
    assert_non_null(b);
    assert_true(*b == tag(key));
}

/* ---- sparse ------------------------------------------------------------------ */

static void test_store_million_random_keys(void **state)
{
    const size_t n = 1000000;
    uint64_t *keys = malloc(n * sizeof(*keys)), rng = 42;
    psi_store *s = psi_store_new(sizeof(uint64_t));
    size_t uniq = 0;
    assert_non_null(keys);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        keys[i] = next_key(&rng) >> (i % 3 == 0 ? 44 : 0); /* a third collide often */
        put_tag(s, keys[i]);
    }
    qsort(keys, n, sizeof(*keys), cmp_u64);
    for (size_t i = 0; i < n; i++) uniq += i == 0 || keys[i] != keys[i - 1];
    assert_int_equal(psi_store_size(s), uniq);
    for (size_t i = 0; i < n; i++) check_tag(s, keys[i]);
    for (size_t i = 0; i < 100000; i++) {
        uint64_t k = next_key(&rng);
        int in = bsearch(&k, keys, n, sizeof(*keys), cmp_u64) != NULL;
        assert_int_equal(psi_store_find(s, k) != NULL, in);
    }
    psi_store_free(s);
    free(keys);
}

static void test_store_extreme_keys(void **state)
{
    psi_store *s = psi_store_new(sizeof(uint64_t));
    int ins;
    assert_null(psi_store_find(s, 0));
    assert_null(psi_store_find(s, UINT64_MAX));
    put_tag(s, 0);
    assert_null(psi_store_find(s, UINT64_MAX));
    put_tag(s, UINT64_MAX);
    check_tag(s, 0);
    check_tag(s, UINT64_MAX);
    assert_int_equal(psi_store_size(s), 2);
    assert_non_null(psi_store_upsert(s, 0, &ins));
    assert_int_equal(ins, 0);
    assert_int_equal(psi_store_size(s), 2);
    psi_store_free(s);
}

static void test_store_growth_preserves_contents(void **state)
{
    psi_store *s = psi_store_new(sizeof(uint64_t));
    uint64_t rng = 7, *keys = malloc(50000 * sizeof(*keys));
    size_t growths = 0, bytes = psi_store_bytes(s);
    for (size_t i = 0; i < 50000; i++) {
        keys[i] = next_key(&rng);
        put_tag(s, keys[i]);
        if (psi_store_bytes(s) == bytes) continue;
        bytes = psi_store_bytes(s);
        growths++;
        for (size_t j = 0; j <= i; j++) check_tag(s, keys[j]);
    }
    assert_true(growths >= 10);
    psi_store_free(s);
    free(keys);
}

typedef struct visit {
    size_t calls, stop_after;
} visit;

static int count_visit(void *arg, uint64_t key, void *block)
{
    visit *v = arg;
    uint64_t *b = block;
    assert_true(b[0] == tag(key));
    b[1]++;
    v->calls++;
    return v->stop_after != 0 && v->calls == v->stop_after ? 7 : 0;
}

static void test_store_foreach_visits_each_key_once(void **state)
{
    psi_store *s = psi_store_new(2 * sizeof(uint64_t));
    uint64_t rng = 9, keys[30000];
    visit v = {0, 0};
    for (size_t i = 0; i < 30000; i++) put_tag(s, keys[i] = next_key(&rng) >> 20);
    assert_int_equal(psi_store_foreach(s, count_visit, &v), 0);
    assert_int_equal(v.calls, psi_store_size(s));
    for (size_t i = 0; i < 30000; i++) {
        uint64_t *b = psi_store_find(s, keys[i]);
        assert_true(b[1] == 1);
    }
    v = (visit){0, 10};
    assert_int_equal(psi_store_foreach(s, count_visit, &v), 7);
    assert_int_equal(v.calls, 10);
    psi_store_free(s);
}

typedef struct {
    psi_store *to;
    size_t n, worst; /* keys copied; the longest run seen while copying */
} copy_walk;

static int copy_one(void *arg, uint64_t key, void *block)
{
    copy_walk *c = arg;
    uint64_t *b = psi_store_upsert(c->to, key, NULL);
    if (!b) return -1;
    memcpy(b, block, sizeof(uint64_t));
    if (++c->n % 5000 == 0) { /* growth respreads the keys: look along the way */
        size_t r = psi_store_longest_run(c->to);
        if (r > c->worst) c->worst = r;
    }
    return 0;
}

/* One table's keys, walked and inserted one by one into a new table that
 * grows from empty (prune.c's rebuild, a checkpoint restored in the order it
 * was written): the walk yields them in the first table's hash order, and
 * had both tables one hash they would pile into one run at the start of the
 * second, every insert probing all of it.  Each table's own seed keeps the
 * runs as short as random keys make them (hundreds at most, at load 0.8). */
static void test_store_copy_in_walk_order_stays_spread(void **state)
{
    (void)state;
    enum { N = 200000 };
    psi_store *a = psi_store_new(sizeof(uint64_t));
    uint64_t rng = 21;
    for (size_t i = 0; i < N; i++) put_tag(a, next_key(&rng));
    copy_walk c = {psi_store_new(sizeof(uint64_t)), 0, 0};
    assert_int_equal(psi_store_foreach(a, copy_one, &c), 0);
    assert_int_equal(c.n, psi_store_size(a));
    assert_int_equal(psi_store_size(c.to), psi_store_size(a));
    print_message("longest run: %zu in the first table, %zu in its copy as it was filled\n",
                  psi_store_longest_run(a), c.worst);
    assert_true(c.worst < 2000);
    rng = 21;
    for (size_t i = 0; i < N; i++) check_tag(c.to, next_key(&rng));
    psi_store_free(c.to);
    /* sized once for all of them: no growth while copying */
    c = (copy_walk){psi_store_new(sizeof(uint64_t)), 0, 0};
    assert_int_equal(psi_store_reserve(c.to, N), 0);
    size_t bytes = psi_store_bytes(c.to);
    assert_int_equal(psi_store_foreach(a, copy_one, &c), 0);
    assert_int_equal(psi_store_bytes(c.to), bytes);
    assert_true(c.worst < 2000);
    psi_store_free(c.to);
    psi_store_free(a);
}

static void test_store_batch_equals_single(void **state)
{
    psi_store *a = psi_store_new(sizeof(uint64_t)), *b = psi_store_new(sizeof(uint64_t));
    uint64_t rng = 3, keys[4096];
    void *blocks[4096];
    uint8_t ins[4096];
    for (size_t round = 0; round < 60; round++) {
        size_t n = 1 + (size_t)(next_key(&rng) % 4096);
        for (size_t i = 0; i < n; i++) keys[i] = next_key(&rng) % 50000; /* repeats */
        assert_int_equal(psi_store_upsert_batch(a, keys, n, blocks, ins), 0);
        for (size_t i = 0; i < n; i++) {
            int single;
            uint64_t *sb = psi_store_upsert(b, keys[i], &single);
            assert_int_equal(ins[i], single);
            *(uint64_t *)blocks[i] += keys[i] + 1;
            *sb += keys[i] + 1;
        }
    }
    assert_int_equal(psi_store_size(a), psi_store_size(b));
    for (uint64_t k = 0; k < 50000; k++) {
        uint64_t *x = psi_store_find(a, k), *y = psi_store_find(b, k);
        assert_int_equal(x == NULL, y == NULL);
        if (x != NULL) assert_true(*x == *y);
    }
    psi_store_free(a);
    psi_store_free(b);
}

/* find_batch answers what find answers, key 0 and absent keys included. */
static void test_store_find_batch_equals_find(void **state)
{
    (void)state;
    enum { N = 20000 };
    psi_store *s = psi_store_new(sizeof(uint64_t));
    static uint64_t keys[N];
    static void *blocks[N];
    uint64_t rng = 21;
    for (size_t i = 0; i < N; i++) {
        keys[i] = i % 5 == 0 ? 0 : next_key(&rng) % 30000;
        if (i % 2) put_tag(s, keys[i]);
    }
    size_t nulls = psi_store_find_batch(s, keys, N, blocks), expect = 0;
    for (size_t i = 0; i < N; i++) {
        assert_ptr_equal(blocks[i], psi_store_find(s, keys[i]));
        expect += blocks[i] == NULL;
        if (blocks[i]) assert_true(*(uint64_t *)blocks[i] == tag(keys[i]));
    }
    assert_int_equal(nulls, expect);
    assert_int_equal(psi_store_find_batch(s, keys, 0, blocks), 0);
    psi_store_free(s);
}

/* Hinted batches answer exactly what unhinted ones do, whatever the hints
 * say: right (learnt by a first call), stale (the table grew since), wrong
 * (random bytes, another list's hints) or unknown; and a list looked up
 * twice comes back with every hint known. */
static void test_store_hints_never_change_answers(void **state)
{
    (void)state;
    enum { N = 30000 };
    psi_store *a = psi_store_new(sizeof(uint64_t)), *b = psi_store_new(sizeof(uint64_t));
    static uint64_t keys[N];
    static void *ba[N], *bb[N];
    static uint8_t ia[N], ib[N];
    static uint32_t hint[N];
    uint64_t rng = 77;
    memset(hint, 0xff, sizeof(hint)); /* PSI_STORE_NO_HINT */
    for (int round = 0; round < 40; round++) {
        size_t n = 1 + (size_t)(next_key(&rng) % N);
        for (size_t i = 0; i < n; i++) keys[i] = next_key(&rng) % 60000; /* repeats, key 0 */
        if (round % 4 == 3) /* wrong hints */
            for (size_t i = 0; i < n; i++) hint[i] = (uint32_t)(next_key(&rng) % 80000);
        int find = round % 3 == 2;
        size_t na = find ? psi_store_find_batch_hint(a, keys, n, ba, hint)
                         : psi_store_upsert_batch_hint(a, keys, n, ba, ia, hint);
        size_t nb = find ? psi_store_find_batch(b, keys, n, bb)
                         : psi_store_upsert_batch(b, keys, n, bb, ib);
        assert_int_equal(na, nb);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(ba[i] == NULL, bb[i] == NULL);
            if (!find) assert_int_equal(ia[i], ib[i]);
            if (!ba[i]) continue;
            if (!find && ia[i]) { /* new: tag both the same way */
                *(uint64_t *)ba[i] = tag(keys[i]);
                *(uint64_t *)bb[i] = tag(keys[i]);
            }
            assert_true(*(uint64_t *)ba[i] == *(uint64_t *)bb[i]);
            assert_true(*(uint64_t *)ba[i] == tag(keys[i]));
        }
        /* the same list again: every key has its slot */
        if (!find && round % 4 != 3) {
            size_t unknown = 0;
            assert_int_equal(psi_store_find_batch_hint(a, keys, n, ba, hint), 0);
            for (size_t i = 0; i < n; i++) unknown += keys[i] && hint[i] == PSI_STORE_NO_HINT;
            assert_int_equal(unknown, 0);
        }
    }
    assert_int_equal(psi_store_size(a), psi_store_size(b));
    psi_store_free(a);
    psi_store_free(b);
}

/* Every block is aligned to the largest power of two dividing its size (up
 * to 64), whether slots hold key and block together (4, 8, 12, 24 bytes)
 * or blocks have their own array (16, 32, 64, 48). */
static void test_store_block_alignment_every_layout(void **state)
{
    (void)state;
    static const size_t sizes[] = {1, 3, 4, 8, 12, 16, 24, 32, 48, 64, 100};
    for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
        size_t bb = sizes[z], align = bb & (~bb + 1);
        psi_store *s = psi_store_new(bb);
        uint64_t rng = 31 + z;
        align = align > 64 ? 64 : align;
        for (size_t i = 0; i < 3000; i++) {
            uint64_t k = i == 7 ? 0 : next_key(&rng);
            uint8_t *b = psi_store_upsert(s, k, NULL);
            assert_non_null(b);
            assert_int_equal((uintptr_t)b % align, 0);
            memset(b, (int)(k & 0xff), bb); /* fills its own block only */
        }
        rng = 31 + z;
        for (size_t i = 0; i < 3000; i++) {
            uint64_t k = i == 7 ? 0 : next_key(&rng);
            const uint8_t *b = psi_store_find(s, k);
            assert_non_null(b);
            for (size_t j = 0; j < bb; j++) assert_int_equal(b[j], k & 0xff);
        }
        psi_store_free(s);
    }
}

/* A batch of 1M new keys into an empty table sizes it once: 15 B per
 * (u64, f32) key, and a second batch of the same keys does not grow it. */
static void test_store_batch_sizes_table_once(void **state)
{
    (void)state;
    size_t n = 1000000;
    uint64_t rng = 41, *keys = malloc(n * sizeof(*keys));
    void **blocks = malloc(n * sizeof(*blocks));
    psi_store *s = psi_store_new(4);
    for (size_t i = 0; i < n; i++) keys[i] = next_key(&rng);
    assert_int_equal(psi_store_upsert_batch(s, keys, n, blocks, NULL), 0);
    size_t bytes = psi_store_bytes(s);
    print_message("1M keys in one batch: %.2f bytes/key\n", (double)bytes / (double)n);
    assert_true((double)bytes / (double)n <= 16.0);
    assert_int_equal(psi_store_upsert_batch(s, keys, n, blocks, NULL), 0);
    assert_int_equal(psi_store_bytes(s), bytes);
    assert_int_equal(psi_store_size(s), n);
    psi_store_free(s);
    free(keys);
    free(blocks);
}

static void test_store_batch_blocks_stay_valid_across_growth(void **state)
{
    psi_store *s = psi_store_new(sizeof(uint64_t));
    uint64_t keys[20000];
    void *blocks[20000];
    for (size_t i = 0; i < 20000; i++) keys[i] = i * 977;
    assert_int_equal(psi_store_upsert_batch(s, keys, 20000, blocks, NULL), 0);
    for (size_t i = 0; i < 20000; i++) *(uint64_t *)blocks[i] = tag(keys[i]);
    for (size_t i = 0; i < 20000; i++) check_tag(s, keys[i]);
    psi_store_free(s);
}

/* Existing keys first, new keys after: the batch grows several times in the
 * middle and must re-find the blocks it already returned. */
static void test_store_batch_growth_after_existing_keys(void **state)
{
    enum { OLD = 5000, NEW = 40000 };
    psi_store *s = psi_store_new(sizeof(uint64_t));
    static uint64_t keys[OLD + NEW];
    static void *blocks[OLD + NEW];
    static uint8_t ins[OLD + NEW];
    uint64_t rng = 17;
    for (size_t i = 0; i < OLD + NEW; i++) keys[i] = next_key(&rng);
    for (size_t i = 0; i < OLD; i++) put_tag(s, keys[i]);
    assert_int_equal(psi_store_upsert_batch(s, keys, OLD + NEW, blocks, ins), 0);
    for (size_t i = 0; i < OLD + NEW; i++) {
        assert_int_equal(ins[i], i >= OLD);
        assert_ptr_equal(blocks[i], psi_store_find(s, keys[i]));
        if (i < OLD) assert_true(*(uint64_t *)blocks[i] == tag(keys[i]));
    }
    assert_int_equal(psi_store_size(s), OLD + NEW);
    psi_store_free(s);
}

/* Keys stored when the next new key makes the table grow (at least `min`). */
static size_t full_size(size_t min)
{
    psi_store *s = psi_store_new(4);
    size_t bytes = psi_store_bytes(s), n = 0;
    for (;;) {
        assert_non_null(psi_store_upsert(s, n, NULL));
        n++;
        if (psi_store_bytes(s) != bytes && n - 1 >= min) break;
        bytes = psi_store_bytes(s);
    }
    psi_store_free(s);
    return n - 1;
}

/* A batch of keys already stored never grows a full table. */
static void test_store_batch_of_existing_keys_does_not_grow(void **state)
{
    size_t full = full_size(1000), bytes;
    psi_store *s = psi_store_new(4);
    uint64_t keys[4000];
    void *blocks[4000];
    for (size_t i = 0; i < full; i++) assert_non_null(psi_store_upsert(s, i * 31, NULL));
    bytes = psi_store_bytes(s);
    for (size_t i = 0; i < 4000; i++) keys[i] = (i % full) * 31;
    assert_int_equal(psi_store_upsert_batch(s, keys, 4000, blocks, NULL), 0);
    assert_int_equal(psi_store_bytes(s), bytes);
    assert_non_null(psi_store_upsert(s, 7, NULL)); /* one new key: grows */
    assert_true(psi_store_bytes(s) > bytes);
    psi_store_free(s);
}

static void test_store_limit_refuses_without_corrupting(void **state)
{
    psi_store *s = psi_store_new(sizeof(uint64_t));
    uint64_t rng = 11, keys[4000], more[100];
    void *blocks[100];
    uint8_t ins[100];
    size_t n = 0, size;
    for (; n < 1000; n++) put_tag(s, keys[n] = next_key(&rng));
    psi_store_set_limit(s, psi_store_bytes(s)); /* no more growth */
    while (n < 4000) {
        int inserted = -1;
        uint64_t k = next_key(&rng);
        uint64_t *b = psi_store_upsert(s, k, &inserted);
        if (b == NULL) {
            assert_int_equal(inserted, 0);
            assert_null(psi_store_find(s, k));
            break;
        }
        *b = tag(k);
        keys[n++] = k;
    }
    assert_true(n < 4000);
    size = psi_store_size(s);
    for (size_t i = 0; i < n; i++) check_tag(s, keys[i]);
    for (size_t i = 0; i < 100; i++) more[i] = i % 2 ? keys[i] : next_key(&rng);
    assert_int_equal(psi_store_upsert_batch(s, more, 100, blocks, ins), 50);
    for (size_t i = 0; i < 100; i++) {
        assert_int_equal(blocks[i] == NULL, i % 2 == 0);
        assert_int_equal(ins[i], 0);
    }
    assert_int_equal(psi_store_size(s), size);
    for (size_t i = 0; i < n; i++) check_tag(s, keys[i]);
    psi_store_set_limit(s, 0);
    put_tag(s, more[0]);
    assert_int_equal(psi_store_size(s), size + 1);
    psi_store_free(s);
}

/* Bytes per key just before each growth (max load) and just after. */
static void test_store_bytes_per_key_f32(void **state)
{
    psi_store *s = psi_store_new(4);
    uint64_t rng = 5;
    size_t bytes = psi_store_bytes(s), checked = 0;
    for (size_t i = 1; i <= 3000000; i++) {
        assert_non_null(psi_store_upsert(s, next_key(&rng), NULL));
        if (psi_store_bytes(s) == bytes) continue;
        if (i > 4096) {
            double at_max = (double)bytes / (double)(i - 1);
            double after = (double)psi_store_bytes(s) / (double)i;
            print_message("keys %zu: %.2f bytes/key at max load, %.2f after growth\n", i - 1,
                          at_max, after);
            assert_true(at_max <= 18.0);
            checked++;
        }
        bytes = psi_store_bytes(s);
    }
    assert_true(checked >= 5);
    psi_store_free(s);
}

/* ---- dense -------------------------------------------------------------------- */

#define LO 1000ULL
#define PAGE PSI_DENSE_PAGE_KEYS

static void dense_tag(void *arg, uint64_t key, void *block)
{
    (*(size_t *)arg)++;
    *(uint64_t *)block = tag(key);
}

/* Wide blocks (10 MiB, one key of the bandwidth benchmark) get pages of at
 * most PSI_DENSE_PAGE_BYTES, never less than one key: writing one key of a
 * long range allocates that key only. */
static void test_dense_wide_blocks_small_pages(void **state)
{
    (void)state;
    size_t bb = 10u << 20, inits = 0;
    psi_dense *d = psi_dense_new(0, 1000, bb);
    assert_non_null(d);
    size_t base = psi_dense_bytes(d);
    psi_dense_set_init(d, dense_tag, &inits);
    uint64_t *b = psi_dense_get(d, 500, 1);
    assert_non_null(b);
    assert_true(*b == tag(500));
    assert_int_equal(inits, 1);
    assert_int_equal(psi_dense_bytes(d), base + bb);
    assert_null(psi_dense_get(d, 501, 0));
    psi_dense_free(d);
    /* 4 KiB blocks: 4096 per page (16 MiB), as before */
    d = psi_dense_new(0, 10000, 4096);
    inits = 0;
    psi_dense_set_init(d, dense_tag, &inits);
    assert_non_null(psi_dense_get(d, 1, 1));
    assert_int_equal(inits, PAGE);
    psi_dense_free(d);
}

static void test_dense_lazy_pages(void **state)
{
    uint64_t hi = LO + 3 * PAGE + 10;
    psi_dense *d = psi_dense_new(LO, hi, sizeof(uint64_t));
    size_t base = psi_dense_bytes(d), inits = 0;
    uint64_t *b;
    psi_dense_set_init(d, dense_tag, &inits);
    assert_true(base < 1024);
    assert_null(psi_dense_get(d, LO, 0));
    assert_int_equal(psi_dense_bytes(d), base);
    b = psi_dense_get(d, LO + 5, 1);
    assert_non_null(b);
    assert_true(*b == tag(LO + 5));
    assert_int_equal(inits, PAGE);
    assert_int_equal(psi_dense_bytes(d), base + PAGE * 8);
    assert_ptr_equal(psi_dense_get(d, LO + 5, 0), b);
    assert_null(psi_dense_get(d, LO + PAGE, 0)); /* next page untouched */
    assert_non_null(psi_dense_get(d, hi - 1, 1)); /* short last page */
    assert_int_equal(inits, PAGE + 10);
    assert_int_equal(psi_dense_bytes(d), base + PAGE * 8 + 80);
    psi_dense_free(d);
}

static void test_dense_out_of_range(void **state)
{
    psi_dense *d = psi_dense_new(LO, LO + 100, 4);
    assert_null(psi_dense_get(d, LO - 1, 1));
    assert_null(psi_dense_get(d, LO + 100, 1));
    assert_null(psi_dense_get(d, UINT64_MAX, 1));
    assert_null(psi_dense_get(d, 0, 1));
    assert_non_null(psi_dense_get(d, LO + 99, 1));
    psi_dense_free(d);
    assert_null(psi_dense_new(5, 5, 4));
    assert_null(psi_dense_new(6, 5, 4));
    d = psi_dense_new(UINT64_MAX - 10, UINT64_MAX, 4); /* top of the key space */
    assert_non_null(psi_dense_get(d, UINT64_MAX - 1, 1));
    assert_null(psi_dense_get(d, UINT64_MAX, 1));
    psi_dense_free(d);
}

static int dense_visit(void *arg, uint64_t key, void *block)
{
    uint64_t *last = arg;
    assert_true(key > last[0] || last[1] == 0);
    assert_true(*(uint64_t *)block == tag(key));
    last[0] = key;
    last[1]++;
    return 0;
}

static void test_dense_foreach_existing_pages(void **state)
{
    psi_dense *d = psi_dense_new(0, 100 * PAGE, sizeof(uint64_t));
    uint64_t last[2] = {0, 0};
    size_t inits = 0;
    psi_dense_set_init(d, dense_tag, &inits);
    assert_non_null(psi_dense_get(d, 7 * PAGE + 3, 1));
    assert_non_null(psi_dense_get(d, 42 * PAGE, 1));
    assert_int_equal(psi_dense_foreach(d, dense_visit, last), 0);
    assert_int_equal(last[1], 2 * PAGE);
    assert_true(psi_dense_bytes(d) < 3 * PAGE * 8);
    psi_dense_free(d);
}

static void test_dense_limit(void **state)
{
    psi_dense *d = psi_dense_new(0, 10 * PAGE, 4);
    psi_dense_set_limit(d, psi_dense_bytes(d) + PAGE * 4);
    assert_non_null(psi_dense_get(d, 0, 1));
    assert_null(psi_dense_get(d, PAGE, 1));
    assert_non_null(psi_dense_get(d, 1, 1));
    assert_int_equal(*(float *)psi_dense_get(d, 1, 0), 0.0f); /* zeros by default */
    psi_dense_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_million_random_keys),
        cmocka_unit_test(test_store_extreme_keys),
        cmocka_unit_test(test_store_growth_preserves_contents),
        cmocka_unit_test(test_store_foreach_visits_each_key_once),
        cmocka_unit_test(test_store_copy_in_walk_order_stays_spread),
        cmocka_unit_test(test_store_batch_equals_single),
        cmocka_unit_test(test_store_find_batch_equals_find),
        cmocka_unit_test(test_store_hints_never_change_answers),
        cmocka_unit_test(test_store_block_alignment_every_layout),
        cmocka_unit_test(test_store_batch_sizes_table_once),
        cmocka_unit_test(test_store_batch_blocks_stay_valid_across_growth),
        cmocka_unit_test(test_store_batch_growth_after_existing_keys),
        cmocka_unit_test(test_store_batch_of_existing_keys_does_not_grow),
        cmocka_unit_test(test_store_limit_refuses_without_corrupting),
        cmocka_unit_test(test_store_bytes_per_key_f32),
        cmocka_unit_test(test_dense_lazy_pages),
        cmocka_unit_test(test_dense_wide_blocks_small_pages),
        cmocka_unit_test(test_dense_out_of_range),
        cmocka_unit_test(test_dense_foreach_existing_pages),
        cmocka_unit_test(test_dense_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
