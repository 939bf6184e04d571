/*
 * store.c -- the sparse hash table and the dense paged array of store.h.
 *
 * Design: one allocation per table generation holds, in this order, the
 * blocks (capacity * block_bytes, 64-byte aligned), the keys (capacity * 8)
 * and the occupancy bitmap (one bit per slot, in u64 words).  The slot of a
 * key is psi_mix64(key) & (capacity - 1) with linear probing; a clear bit ends a
 * probe.  The table keeps at most 0.8 * capacity keys (PSI_STORE_LOAD_*); an
 * insert past that doubles the capacity and rehashes every key into a fresh
 * allocation.  Memory per key for block_bytes = 4 is (4 + 8 + 1/8) / load:
 * 15.2 bytes at the maximum load 0.8, 30.3 right after growing (load 0.4).
 * The batch path computes each key's slot a few keys ahead and prefetches
 * its key, bitmap word and block, so the cache misses of a random key stream
 * overlap.  It inserts optimistically and grows only when a new key meets a
 * full table, sized by the share of new keys seen so far in the batch, then
 * re-finds the blocks it already returned: a push of existing keys into a
 * nearly full table costs one probe per key, and a push of new keys into a
 * small table grows once.
 *
 * Must never: probe a full table (the load cap keeps a free slot), treat any
 * key value as "empty", lose or duplicate a key while rehashing, or exceed
 * the byte limit when growing.
 */
#include "kv/store.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 16
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 16 /* keys between prefetch and use in batch loops */
#endif
#define BLOCK_ALIGN 64

struct psi_store {
    size_t block_bytes;
    size_t cap;      /* slots, a power of two */
    size_t max_size; /* keys allowed before growing: cap * 0.8 */
    size_t size;     /* keys stored */
    size_t limit;    /* cap on psi_store_bytes(); 0 = none */
    size_t alloc;    /* bytes of the current allocation */
    uint8_t *blocks; /* start of the allocation */
    uint64_t *keys;
    uint64_t *bits;
};

struct psi_dense {
    uint64_t lo, hi;
    size_t block_bytes;
    size_t pk;       /* keys per page */
    size_t npages;
    uint8_t **pages; /* npages entries, NULL until first written */
    size_t bytes;    /* everything allocated, struct and directory included */
    size_t limit;
    void (*init)(void *arg, uint64_t key, void *block);
    void *init_arg;
};


static inline void copy_bytes(void *dst, const void *src, size_t n)
{
    switch (n) {
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 12: memcpy(dst, src, 12); break;
    case 16: memcpy(dst, src, 16); break;
    case 24: memcpy(dst, src, 24); break;
    default: memcpy(dst, src, n); break;
    }
}

/* ---- one generation of arrays ------------------------------------------------ */

typedef struct table_arrays {
    size_t cap, alloc;
    uint8_t *blocks;
    uint64_t *keys;
    uint64_t *bits;
} table_arrays;

static size_t bitmap_words(size_t cap) { return (cap + 63) / 64; }

/* Bytes of one allocation for `cap` slots, rounded to BLOCK_ALIGN; 0 on
 * overflow. */
static size_t arrays_bytes(size_t cap, size_t block_bytes)
{
    size_t b, k, total;
    if (__builtin_mul_overflow(cap, block_bytes, &b)) return 0;
    if (__builtin_mul_overflow(cap, sizeof(uint64_t), &k)) return 0;
    if (__builtin_add_overflow(b, k, &total)) return 0;
    if (__builtin_add_overflow(total, bitmap_words(cap) * 8 + BLOCK_ALIGN - 1, &total))
        return 0;
    return total & ~(size_t)(BLOCK_ALIGN - 1);
}

/* Allocate arrays for `cap` slots with an empty bitmap; 0 or -1. */
static int arrays_new(table_arrays *a, size_t cap, size_t block_bytes)
{
    void *p;
    a->cap = cap;
    a->alloc = arrays_bytes(cap, block_bytes);
    if (a->alloc == 0 || posix_memalign(&p, BLOCK_ALIGN, a->alloc) != 0) return -1;
    a->blocks = p;
    a->keys = (uint64_t *)(a->blocks + cap * block_bytes);
    a->bits = a->keys + cap;
    memset(a->bits, 0, bitmap_words(cap) * 8);
    return 0;
}

static inline int bit_test(const uint64_t *bits, size_t i)
{
    return (int)((bits[i >> 6] >> (i & 63)) & 1);
}

static inline void bit_set(uint64_t *bits, size_t i) { bits[i >> 6] |= 1ULL << (i & 63); }

/* ---- probing ------------------------------------------------------------------ */

/* The slot holding `key`, or the free slot where it would go (*found 0). */
static inline size_t probe(const psi_store *s, uint64_t key, int *found)
{
    size_t mask = s->cap - 1, i = (size_t)psi_mix64(key) & mask;
    for (;;) {
        if (!bit_test(s->bits, i)) {
            *found = 0;
            return i;
        }
        if (s->keys[i] == key) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static inline void *block_at(const psi_store *s, size_t i)
{
    return s->blocks + i * s->block_bytes;
}

/* always_inline: GCC 12 finds a function that only prefetches "pure" and
 * deletes the calls, which silently removed every prefetch. */
static inline __attribute__((always_inline)) void prefetch_key(const psi_store *s,
                                                               uint64_t key)
{
    size_t i = (size_t)psi_mix64(key) & (s->cap - 1);
    __builtin_prefetch(&s->bits[i >> 6], 0, 3);
    __builtin_prefetch(&s->keys[i], 0, 3);
    __builtin_prefetch(block_at(s, i), 1, 3);
}

static void *insert_at(psi_store *s, size_t i, uint64_t key)
{
    void *b = block_at(s, i);
    bit_set(s->bits, i);
    s->keys[i] = key;
    psi_zero_small(b, s->block_bytes);
    s->size++;
    return b;
}

/* ---- growth ------------------------------------------------------------------- */

static int over_limit(const psi_store *s, size_t cap)
{
    size_t b = arrays_bytes(cap, s->block_bytes);
    return b == 0 || (s->limit != 0 && b + sizeof(*s) > s->limit);
}

/* Move every key of the current arrays into `a` (empty, larger). */
static void rehash_into(const psi_store *s, table_arrays *a)
{
    size_t mask = a->cap - 1, bb = s->block_bytes;
    for (size_t w = 0; w < bitmap_words(s->cap); w++) {
        for (uint64_t x = s->bits[w]; x != 0; x &= x - 1) {
            size_t from = w * 64 + (size_t)__builtin_ctzll(x);
            uint64_t key = s->keys[from];
            size_t i = (size_t)psi_mix64(key) & mask;
            while (bit_test(a->bits, i)) i = (i + 1) & mask;
            bit_set(a->bits, i);
            a->keys[i] = key;
            copy_bytes(a->blocks + i * bb, block_at(s, from), bb);
        }
    }
}

static void adopt(psi_store *s, const table_arrays *a)
{
    s->cap = a->cap;
    s->max_size = a->cap / PSI_STORE_LOAD_DEN * PSI_STORE_LOAD_NUM;
    s->alloc = a->alloc;
    s->blocks = a->blocks;
    s->keys = a->keys;
    s->bits = a->bits;
}

/* Rehash into `cap` slots; 0, or -1 (limit or no memory: unchanged). */
static int grow_to(psi_store *s, size_t cap)
{
    table_arrays a;
    if (over_limit(s, cap) || arrays_new(&a, cap, s->block_bytes) != 0) return -1;
    rehash_into(s, &a);
    free(s->blocks);
    adopt(s, &a);
    return 0;
}

/* Grow once so that `need` keys fit, or as far as the limit allows; if
 * that much memory is not there, try a plain doubling. */
static void reserve(psi_store *s, size_t need)
{
    size_t cap = s->cap;
    while (cap / PSI_STORE_LOAD_DEN * PSI_STORE_LOAD_NUM < need && cap <= SIZE_MAX / 4)
        cap *= 2;
    while (cap > s->cap && over_limit(s, cap)) cap /= 2;
    if (cap > s->cap && grow_to(s, cap) != 0 && cap > 2 * s->cap)
        (void)grow_to(s, 2 * s->cap);
}

/* ---- public: sparse ------------------------------------------------------------ */

psi_store *psi_store_new(size_t block_bytes)
{
    table_arrays a;
    psi_store *s;
    if (block_bytes == 0 || (s = calloc(1, sizeof(*s))) == NULL) return NULL;
    s->block_bytes = block_bytes;
    if (arrays_new(&a, MIN_CAPACITY, block_bytes) != 0) {
        free(s);
        return NULL;
    }
    adopt(s, &a);
    return s;
}

void psi_store_free(psi_store *s)
{
    if (s == NULL) return;
    free(s->blocks);
    free(s);
}

void *psi_store_find(const psi_store *s, uint64_t key)
{
    int found;
    size_t i = probe(s, key, &found);
    return found ? block_at(s, i) : NULL;
}

void *psi_store_upsert(psi_store *s, uint64_t key, int *inserted)
{
    int found;
    size_t i = probe(s, key, &found);
    if (inserted != NULL) *inserted = !found;
    if (found) return block_at(s, i);
    if (s->size >= s->max_size) {
        if (s->cap > SIZE_MAX / 2 || grow_to(s, s->cap * 2) != 0) {
            if (inserted != NULL) *inserted = 0;
            return NULL;
        }
        i = probe(s, key, &found);
    }
    return insert_at(s, i, key);
}

/* A batch in progress: how many keys it inserted, whether growing failed. */
typedef struct batch {
    const uint64_t *keys;
    size_t n, added;
    void **blocks;
    int cannot_grow;
} batch;

/* After a growth, point blocks[0..i) (the non-NULL ones) at the new arrays. */
static void refind(const psi_store *s, const batch *b, size_t i)
{
    int found;
    for (size_t j = 0; j < i; j++) {
        if (j + PREFETCH_AHEAD < i) prefetch_key(s, b->keys[j + PREFETCH_AHEAD]);
        if (b->blocks[j] != NULL) b->blocks[j] = block_at(s, probe(s, b->keys[j], &found));
    }
}

/*
 * The table is full and keys[i] is new: grow for the new keys the rest of
 * the batch probably holds (the prefix's ratio of new keys, at least one
 * more), then re-find the blocks already handed out.  0, or -1 when the
 * limit or memory forbids growing (not retried in this batch).
 */
static int grow_in_batch(psi_store *s, batch *b, size_t i)
{
    size_t left = b->n - i, guess, cap = s->cap;
    if (b->cannot_grow) return -1;
    if (__builtin_mul_overflow(left, b->added + 1, &guess)) guess = SIZE_MAX / 2;
    guess = guess / (i + 1) + 1;
    reserve(s, s->size + (guess < SIZE_MAX / 2 - s->size ? guess : 1));
    if (s->cap == cap) {
        b->cannot_grow = 1;
        return -1;
    }
    refind(s, b, i);
    return 0;
}

/* Upsert keys[i] of the batch; NULL when full and unable to grow. */
static void *batch_upsert(psi_store *s, batch *b, size_t i, uint8_t *inserted)
{
    int found;
    size_t slot = probe(s, b->keys[i], &found);
    *inserted = 0;
    if (found) return block_at(s, slot);
    if (s->size >= s->max_size) {
        if (grow_in_batch(s, b, i) != 0) return NULL;
        slot = probe(s, b->keys[i], &found);
    }
    *inserted = 1;
    b->added++;
    return insert_at(s, slot, b->keys[i]);
}

size_t psi_store_upsert_batch(psi_store *s, const uint64_t *keys, size_t n, void **blocks,
                              uint8_t *inserted)
{
    batch b = {.keys = keys, .n = n, .blocks = blocks};
    size_t nulls = 0;
    uint8_t ins;
    for (size_t i = 0; i < n; i++) {
        if (i + PREFETCH_AHEAD < n) prefetch_key(s, keys[i + PREFETCH_AHEAD]);
        blocks[i] = batch_upsert(s, &b, i, &ins);
        nulls += blocks[i] == NULL;
        if (inserted != NULL) inserted[i] = ins;
    }
    return nulls;
}

size_t psi_store_size(const psi_store *s) { return s->size; }

size_t psi_store_bytes(const psi_store *s) { return sizeof(*s) + s->alloc; }

void psi_store_set_limit(psi_store *s, size_t max_bytes) { s->limit = max_bytes; }

int psi_store_foreach(const psi_store *s, int (*fn)(void *arg, uint64_t key, void *block),
                      void *arg)
{
    int rv;
    for (size_t w = 0; w < bitmap_words(s->cap); w++) {
        for (uint64_t x = s->bits[w]; x != 0; x &= x - 1) {
            size_t i = w * 64 + (size_t)__builtin_ctzll(x);
            if ((rv = fn(arg, s->keys[i], block_at(s, i))) != 0) return rv;
        }
    }
    return 0;
}

/* ---- public: dense ---------------------------------------------------------------- */

psi_dense *psi_dense_new(uint64_t lo, uint64_t hi, size_t block_bytes)
{
    psi_dense *d;
    uint64_t span = hi - lo, npages;
    if (hi <= lo || block_bytes == 0) return NULL;
    size_t pk = PSI_DENSE_PAGE_BYTES / block_bytes;
    pk = pk > PSI_DENSE_PAGE_KEYS ? PSI_DENSE_PAGE_KEYS : pk ? pk : 1;
    npages = span / pk + (span % pk != 0);
    if (npages > (SIZE_MAX - sizeof(*d)) / sizeof(uint8_t *)) return NULL;
    if ((d = calloc(1, sizeof(*d))) == NULL) return NULL;
    if ((d->pages = calloc((size_t)npages, sizeof(uint8_t *))) == NULL) {
        free(d);
        return NULL;
    }
    d->lo = lo;
    d->hi = hi;
    d->block_bytes = block_bytes;
    d->pk = pk;
    d->npages = (size_t)npages;
    d->bytes = sizeof(*d) + d->npages * sizeof(uint8_t *);
    return d;
}

void psi_dense_free(psi_dense *d)
{
    if (d == NULL) return;
    for (size_t p = 0; p < d->npages; p++) free(d->pages[p]);
    free(d->pages);
    free(d);
}

void psi_dense_set_init(psi_dense *d, void (*init)(void *arg, uint64_t key, void *block),
                        void *arg)
{
    d->init = init;
    d->init_arg = arg;
}

void psi_dense_set_limit(psi_dense *d, size_t max_bytes) { d->limit = max_bytes; }

/* Keys in page p (the last page may be short). */
static size_t page_keys(const psi_dense *d, size_t p)
{
    uint64_t first = (uint64_t)p * d->pk, left = d->hi - d->lo - first;
    return left < d->pk ? (size_t)left : d->pk;
}

/* Allocate and initialize page p; NULL on no memory or the limit. */
static uint8_t *page_new(psi_dense *d, size_t p)
{
    size_t nk = page_keys(d, p), bytes;
    uint64_t first = d->lo + (uint64_t)p * d->pk;
    uint8_t *page;
    if (__builtin_mul_overflow(nk, d->block_bytes, &bytes)) return NULL;
    if (d->limit != 0 && (bytes > d->limit || d->bytes > d->limit - bytes)) return NULL;
    if ((page = calloc(nk, d->block_bytes)) == NULL) return NULL;
    if (d->init != NULL)
        for (size_t k = 0; k < nk; k++)
            d->init(d->init_arg, first + k, page + k * d->block_bytes);
    d->bytes += bytes;
    d->pages[p] = page;
    return page;
}

void *psi_dense_get(psi_dense *d, uint64_t key, int create)
{
    uint64_t idx;
    uint8_t *page;
    if (key < d->lo || key >= d->hi) return NULL;
    idx = key - d->lo;
    page = d->pages[idx / d->pk];
    if (page == NULL) {
        if (!create) return NULL;
        if ((page = page_new(d, (size_t)(idx / d->pk))) == NULL) return NULL;
    }
    return page + (size_t)(idx % d->pk) * d->block_bytes;
}

size_t psi_dense_bytes(const psi_dense *d) { return d->bytes; }

int psi_dense_foreach(const psi_dense *d, int (*fn)(void *arg, uint64_t key, void *block),
                      void *arg)
{
    int rv;
    for (size_t p = 0; p < d->npages; p++) {
        uint64_t first = d->lo + (uint64_t)p * d->pk;
        if (d->pages[p] == NULL) continue;
        for (size_t k = 0; k < page_keys(d, p); k++)
            if ((rv = fn(arg, first + k, d->pages[p] + k * d->block_bytes)) != 0) return rv;
    }
    return 0;
}
