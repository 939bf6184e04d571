/*
 * store.c -- the sparse hash table and the dense paged array of store.h.
 *
 * Design (sparse): one zero-filled allocation per table generation holds
 * every slot; a slot is its key and its block.  When the block's alignment
 * (the largest power of two dividing block_bytes) is at most 8, a slot is
 * the key followed by the block, 8 + block_bytes bytes with no padding
 * (12 bytes for one f32), so a lookup touches one cache line, not three;
 * wider-aligned blocks (16, 32, 64) keep a 64-byte-aligned array of blocks
 * and a parallel array of keys.  Key 0 marks an empty slot, so the real key
 * 0 lives outside the slots, in a block of its own.  A key's home slot is
 * psi_mix64(key ^ seed) scaled to the capacity (multiply-high, so the
 * capacity need not be a power of two), and collisions probe linearly,
 * wrapping at the end; an empty slot ends a probe.  The seed is the table's
 * own: scaling keeps the hash order, so walking one table yields its keys
 * sorted by hash, and with one hash for all, inserting them one by one into
 * a new, growing table piled them into a single run at its start, each
 * insert probing the whole run (prune.c's rebuild of 60k keys took 9.7 s
 * under ASan, long enough for the server to be declared dead).  The table keeps at most 0.8 *
 * capacity keys (PSI_STORE_LOAD_*).  Growing rehashes every key into a
 * fresh allocation of max(what the keys need at 0.8, 1.5 x the capacity)
 * slots: memory per key for block_bytes = 4 is 12 / load, 15 bytes at the
 * maximum load and 22.5 right after a growth by 1.5 (power-of-two
 * doubling, before, gave 15.2 to 30.3 with a bitmap of 1/8 byte a slot);
 * a batch of new keys sizes the table for itself once (a push of 1M new
 * keys into an empty table: 1.25M slots, 15 bytes per key).
 *
 * The batch path computes each key's slot PREFETCH_AHEAD keys ahead,
 * prefetches it and keeps it in a small ring, so the cache misses of a
 * random key stream overlap and each key is hashed once.  It inserts
 * optimistically and grows only when a new key meets a full table, sized by
 * the share of new keys seen so far in the batch, then re-finds the blocks
 * it already returned: a push of existing keys into a nearly full table
 * costs one probe per key, and a push of new keys into a small table grows
 * once.  The _hint variants also take a slot per key, where a previous
 * call found the key (hints.c keeps them per key list): a key is looked
 * for there first and taken from it only if the slot holds it, so a wrong
 * or stale hint (after a growth, for a list it was not made for) costs one
 * compare and is corrected.  A hinted lookup computes no hash, walks no
 * probe sequence and mispredicts no branch: 1.3 against 10-11 ns per key
 * for 100k random keys in cache (a hint of 1 byte, the distance from the
 * home slot, still pays for the hash: 3.5 ns).
 *
 * Must never: probe a full table (the load cap keeps a free slot), store
 * key 0 in a slot, lose or duplicate a key while rehashing, or exceed the
 * byte limit when growing.
 */
#include "kv/store.h"
#include "util/util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CAPACITY 16
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 16 /* keys between prefetch and use in batch loops (a power of 2) */
#endif
#define BLOCK_ALIGN 64

/* Each table hashes with a seed of its own (a counter, mixed: runs repeat). */
static _Atomic uint64_t next_seed;

/* Where slot i's key and block are: base + i * stride for each. */
typedef struct table_arrays {
    size_t cap, alloc;
    void *raw;          /* what calloc returned */
    uint8_t *kbase, *bbase;
} table_arrays;

struct psi_store {
    size_t block_bytes;
    size_t kstride, bstride; /* bytes between consecutive keys, blocks */
    int split;               /* blocks in their own array (alignment > 8) */
    size_t max_size;         /* keys allowed in slots before growing: cap * 0.8 */
    size_t size;             /* keys stored, key 0 included */
    size_t limit;            /* cap on psi_store_bytes(); 0 = none */
    uint64_t seed;           /* mixed into every key's hash: this table's own slot order */
    table_arrays a;
    void *zero_raw;          /* key 0's block (allocation), or NULL */
    uint8_t *zero_block;
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

/* ---- one generation of slots ------------------------------------------------ */

/* Bytes of one allocation for `cap` slots, alignment slack included; 0 on
 * overflow. */
static size_t arrays_bytes(size_t cap, size_t block_bytes)
{
    size_t per, total;
    if (__builtin_add_overflow(block_bytes, sizeof(uint64_t), &per)) return 0;
    if (__builtin_mul_overflow(cap, per, &total)) return 0;
    if (__builtin_add_overflow(total, BLOCK_ALIGN, &total)) return 0;
    return total;
}

/* Allocate empty (zeroed) slots for `cap`; 0 or -1. */
static int arrays_new(const psi_store *s, table_arrays *a, size_t cap)
{
    a->cap = cap;
    a->alloc = arrays_bytes(cap, s->block_bytes);
    if (a->alloc == 0 || !(a->raw = calloc(1, a->alloc))) return -1;
    uint8_t *base = (uint8_t *)(((uintptr_t)a->raw + BLOCK_ALIGN - 1) &
                                ~(uintptr_t)(BLOCK_ALIGN - 1));
    if (s->split) { /* blocks first (aligned), then keys */
        a->bbase = base;
        a->kbase = base + cap * s->block_bytes;
    } else { /* key, then block, in each slot */
        a->kbase = base;
        a->bbase = base + sizeof(uint64_t);
    }
    return 0;
}

static inline uint64_t key_at(const psi_store *s, const table_arrays *a, size_t i)
{
    uint64_t k;
    memcpy(&k, a->kbase + i * s->kstride, sizeof(k));
    return k;
}

static inline void key_put(const psi_store *s, const table_arrays *a, size_t i, uint64_t k)
{
    memcpy(a->kbase + i * s->kstride, &k, sizeof(k));
}

static inline void *block_at(const psi_store *s, size_t i)
{
    return s->a.bbase + i * s->bstride;
}

/* The home slot of `key` in `cap` slots. */
static inline size_t home(const psi_store *s, uint64_t key, size_t cap)
{
    return (size_t)(((unsigned __int128)psi_mix64(key ^ s->seed) * cap) >> 64);
}

/* ---- probing ------------------------------------------------------------------ */

/* From slot i: the slot holding `key` (nonzero), or the empty slot where it
 * would go (*found 0). */
static inline size_t probe_from(const psi_store *s, size_t i, uint64_t key, int *found)
{
    for (;;) {
        uint64_t k = key_at(s, &s->a, i);
        if (k == key || k == 0) {
            *found = k != 0;
            return i;
        }
        if (++i == s->a.cap) i = 0;
    }
}

static inline size_t probe(const psi_store *s, uint64_t key, int *found)
{
    return probe_from(s, home(s, key, s->a.cap), key, found);
}

/* always_inline: GCC 12 finds a function that only prefetches "pure" and
 * deletes the calls, which silently removed every prefetch. */
static inline __attribute__((always_inline)) void prefetch_slot(const psi_store *s, size_t i)
{
    __builtin_prefetch(s->a.kbase + i * s->kstride, 0, 3);
    if (s->split) __builtin_prefetch(block_at(s, i), 1, 3);
}

static void *insert_at(psi_store *s, size_t i, uint64_t key)
{
    void *b = block_at(s, i);
    key_put(s, &s->a, i, key);
    psi_zero_small(b, s->block_bytes);
    s->size++;
    return b;
}

/* Key 0's block, created (zeroed) when `create`; NULL if absent or no memory. */
static void *zero_key(psi_store *s, int create, int *inserted)
{
    if (inserted) *inserted = 0;
    if (s->zero_block || !create) return s->zero_block;
    size_t need = s->block_bytes + BLOCK_ALIGN;
    if (s->limit && psi_store_bytes(s) + need > s->limit) return NULL;
    if (!(s->zero_raw = calloc(1, need))) return NULL;
    s->zero_block = (uint8_t *)(((uintptr_t)s->zero_raw + BLOCK_ALIGN - 1) &
                                ~(uintptr_t)(BLOCK_ALIGN - 1));
    s->size++;
    if (inserted) *inserted = 1;
    return s->zero_block;
}

/* ---- growth ------------------------------------------------------------------- */

static size_t slot_keys(const psi_store *s) { return s->size - (s->zero_block != NULL); }

static int over_limit(const psi_store *s, size_t cap)
{
    size_t b = arrays_bytes(cap, s->block_bytes);
    return b == 0 || (s->limit != 0 && b + psi_store_bytes(s) - s->a.alloc > s->limit);
}

/* Move every key of the current slots into `a` (empty, larger). */
static void rehash_into(const psi_store *s, const table_arrays *a)
{
    size_t bb = s->block_bytes;
    for (size_t from = 0; from < s->a.cap; from++) {
        uint64_t key = key_at(s, &s->a, from);
        if (key == 0) continue;
        size_t i = home(s, key, a->cap);
        while (key_at(s, a, i) != 0)
            if (++i == a->cap) i = 0;
        key_put(s, a, i, key);
        copy_bytes(a->bbase + i * s->bstride, block_at(s, from), bb);
    }
}

static void adopt(psi_store *s, const table_arrays *a)
{
    s->a = *a;
    s->max_size = a->cap / PSI_STORE_LOAD_DEN * PSI_STORE_LOAD_NUM +
                  a->cap % PSI_STORE_LOAD_DEN * PSI_STORE_LOAD_NUM / PSI_STORE_LOAD_DEN;
    if (s->max_size >= a->cap) s->max_size = a->cap - 1; /* a free slot ends every probe */
}

/* Rehash into `cap` slots; 0, or -1 (limit or no memory: unchanged). */
static int grow_to(psi_store *s, size_t cap)
{
    table_arrays a;
    if (over_limit(s, cap) || arrays_new(s, &a, cap) != 0) return -1;
    rehash_into(s, &a);
    free(s->a.raw);
    adopt(s, &a);
    return 0;
}

/* Grow once so that `need` keys fit in slots, to at least 1.5 x the
 * capacity, or as far as the limit allows; 0, or -1 when it could not
 * grow at all. */
static int reserve(psi_store *s, size_t need)
{
    size_t cap = s->a.cap, want;
    if (need > SIZE_MAX / 2) return -1;
    want = need / PSI_STORE_LOAD_NUM * PSI_STORE_LOAD_DEN + PSI_STORE_LOAD_DEN;
    if (want < cap + cap / 2) want = cap + cap / 2;
    while (want > cap && over_limit(s, want)) want = cap + (want - cap) / 2;
    while (want > cap && grow_to(s, want) != 0) want = cap + (want - cap) / 2;
    return want > cap ? 0 : -1;
}

/* ---- public: sparse ------------------------------------------------------------ */

psi_store *psi_store_new(size_t block_bytes)
{
    table_arrays a;
    psi_store *s;
    if (block_bytes == 0 || (s = calloc(1, sizeof(*s))) == NULL) return NULL;
    s->block_bytes = block_bytes;
    s->seed = psi_mix64(atomic_fetch_add_explicit(&next_seed, 1, memory_order_relaxed) + 1);
    s->split = (block_bytes & 15) == 0; /* aligned to 16 or more: its own array */
    s->kstride = s->split ? sizeof(uint64_t) : sizeof(uint64_t) + block_bytes;
    s->bstride = s->split ? block_bytes : s->kstride;
    if (arrays_new(s, &a, MIN_CAPACITY) != 0) {
        free(s);
        return NULL;
    }
    adopt(s, &a);
    return s;
}

void psi_store_free(psi_store *s)
{
    if (s == NULL) return;
    free(s->a.raw);
    free(s->zero_raw);
    free(s);
}

void *psi_store_find(const psi_store *s, uint64_t key)
{
    int found;
    if (key == 0) return s->zero_block;
    size_t i = probe(s, key, &found);
    return found ? block_at(s, i) : NULL;
}

void *psi_store_upsert(psi_store *s, uint64_t key, int *inserted)
{
    int found;
    if (key == 0) return zero_key(s, 1, inserted);
    size_t i = probe(s, key, &found);
    if (inserted != NULL) *inserted = !found;
    if (found) return block_at(s, i);
    if (slot_keys(s) >= s->max_size) {
        if (reserve(s, slot_keys(s) + 1) != 0) {
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
    uint32_t *hint; /* or NULL */
    int cannot_grow;
} batch;

/* After a growth, point blocks[0..i) (the non-NULL ones) at the new slots. */
static void refind(const psi_store *s, const batch *b, size_t i)
{
    for (size_t j = 0; j < i; j++) {
        if (j + PREFETCH_AHEAD < i && b->keys[j + PREFETCH_AHEAD])
            prefetch_slot(s, home(s, b->keys[j + PREFETCH_AHEAD], s->a.cap));
        if (b->blocks[j] != NULL) b->blocks[j] = psi_store_find(s, b->keys[j]);
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
    size_t left = b->n - i, guess;
    if (b->cannot_grow) return -1;
    if (__builtin_mul_overflow(left, b->added + 1, &guess)) guess = SIZE_MAX / 4;
    guess = guess / (i + 1) + 1;
    if (guess > SIZE_MAX / 4 - slot_keys(s)) guess = 1;
    if (reserve(s, slot_keys(s) + guess) != 0) {
        b->cannot_grow = 1;
        return -1;
    }
    refind(s, b, i);
    return 0;
}

/* The slot where keys[i] is looked for first: its hint, when it has one
 * inside the table, else its home slot. */
static inline size_t first_slot(const psi_store *s, const uint64_t *keys, const uint32_t *hint,
                                size_t i, size_t cap)
{
    return hint && hint[i] < cap ? hint[i] : home(s, keys[i], cap);
}

/* The slot of `key` (nonzero) or the empty slot where it would go, from
 * `g`, its first_slot: a hinted slot counts only if it holds the key (a
 * stale or wrong hint costs one compare, then the probe from home).  Sets
 * *hint (if not NULL) to the slot found. */
static inline size_t locate(const psi_store *s, uint64_t key, size_t g, uint32_t *hint,
                            int *found)
{
    if (hint && *hint < s->a.cap) {
        if (key_at(s, &s->a, g) == key) {
            *found = 1;
            return g;
        }
        g = home(s, key, s->a.cap);
    }
    size_t slot = probe_from(s, g, key, found);
    if (hint) *hint = slot < PSI_STORE_NO_HINT ? (uint32_t)slot : PSI_STORE_NO_HINT;
    return slot;
}

/* Upsert keys[i] (nonzero) of the batch, starting at slot `g` (first_slot);
 * NULL when full and unable to grow. */
static void *batch_upsert(psi_store *s, batch *b, size_t i, size_t g, uint8_t *inserted)
{
    int found;
    uint32_t *hint = b->hint ? &b->hint[i] : NULL;
    size_t slot = locate(s, b->keys[i], g, hint, &found);
    *inserted = 0;
    if (found) return block_at(s, slot);
    if (slot_keys(s) >= s->max_size) {
        if (grow_in_batch(s, b, i) != 0) return NULL;
        slot = locate(s, b->keys[i], home(s, b->keys[i], s->a.cap), NULL, &found);
        if (hint) *hint = PSI_STORE_NO_HINT; /* (the rare case: learnt next time) */
    }
    *inserted = 1;
    b->added++;
    return insert_at(s, slot, b->keys[i]);
}

size_t psi_store_upsert_batch_hint(psi_store *s, const uint64_t *keys, size_t n, void **blocks,
                                   uint8_t *inserted, uint32_t *hint)
{
    batch b = {.keys = keys, .n = n, .blocks = blocks, .hint = hint};
    size_t nulls = 0, ring[PREFETCH_AHEAD], cap = s->a.cap;
    uint8_t ins;
    for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++) {
        ring[i] = first_slot(s, keys, hint, i, cap);
        prefetch_slot(s, ring[i]);
    }
    for (size_t i = 0; i < n; i++) {
        size_t g = ring[i % PREFETCH_AHEAD];
        if (cap != s->a.cap) g = first_slot(s, keys, hint, i, s->a.cap); /* grew: ring is stale */
        if (i + PREFETCH_AHEAD < n) {
            size_t ng = first_slot(s, keys, hint, i + PREFETCH_AHEAD, s->a.cap);
            ring[(i + PREFETCH_AHEAD) % PREFETCH_AHEAD] = ng;
            prefetch_slot(s, ng);
        }
        if (keys[i] == 0) {
            int in;
            blocks[i] = zero_key(s, 1, &in);
            ins = (uint8_t)in;
        } else {
            blocks[i] = batch_upsert(s, &b, i, g, &ins);
        }
        if (cap != s->a.cap && i + 1 < n) { /* grew inside: re-home the ring */
            cap = s->a.cap;
            for (size_t j = i + 1; j < n && j <= i + PREFETCH_AHEAD; j++)
                ring[j % PREFETCH_AHEAD] = first_slot(s, keys, hint, j, cap);
        }
        nulls += blocks[i] == NULL;
        if (inserted != NULL) inserted[i] = ins;
    }
    return nulls;
}

size_t psi_store_upsert_batch(psi_store *s, const uint64_t *keys, size_t n, void **blocks,
                              uint8_t *inserted)
{
    return psi_store_upsert_batch_hint(s, keys, n, blocks, inserted, NULL);
}

size_t psi_store_find_batch_hint(const psi_store *s, const uint64_t *keys, size_t n,
                                 void **blocks, uint32_t *hint)
{
    size_t nulls = 0, ring[PREFETCH_AHEAD], cap = s->a.cap;
    int found;
    if (slot_keys(s) == 0) { /* nothing to probe: only key 0 can be found */
        for (size_t i = 0; i < n; i++) {
            blocks[i] = keys[i] == 0 ? s->zero_block : NULL;
            nulls += blocks[i] == NULL;
        }
        return nulls;
    }
    for (size_t i = 0; i < n && i < PREFETCH_AHEAD; i++) {
        ring[i] = first_slot(s, keys, hint, i, cap);
        prefetch_slot(s, ring[i]);
    }
    for (size_t i = 0; i < n; i++) {
        size_t g = ring[i % PREFETCH_AHEAD];
        if (i + PREFETCH_AHEAD < n) {
            size_t ng = first_slot(s, keys, hint, i + PREFETCH_AHEAD, cap);
            ring[(i + PREFETCH_AHEAD) % PREFETCH_AHEAD] = ng;
            prefetch_slot(s, ng);
        }
        if (keys[i] == 0) {
            blocks[i] = s->zero_block;
        } else {
            size_t slot = locate(s, keys[i], g, hint ? &hint[i] : NULL, &found);
            blocks[i] = found ? block_at(s, slot) : NULL;
        }
        nulls += blocks[i] == NULL;
    }
    return nulls;
}

size_t psi_store_find_batch(const psi_store *s, const uint64_t *keys, size_t n, void **blocks)
{
    return psi_store_find_batch_hint(s, keys, n, blocks, NULL);
}

size_t psi_store_size(const psi_store *s) { return s->size; }

int psi_store_reserve(psi_store *s, size_t keys)
{
    return keys <= s->max_size ? 0 : reserve(s, keys);
}

size_t psi_store_longest_run(const psi_store *s)
{
    size_t best = 0, run = 0, lead = 0, i = 0;
    for (; i < s->a.cap && key_at(s, &s->a, i) != 0; i++) lead++; /* may wrap onto the end */
    for (; i < s->a.cap; i++) {
        run = key_at(s, &s->a, i) != 0 ? run + 1 : 0;
        if (run > best) best = run;
    }
    return PSI_MAX(best, run + lead);
}

size_t psi_store_bytes(const psi_store *s)
{
    return sizeof(*s) + s->a.alloc + (s->zero_raw ? s->block_bytes + BLOCK_ALIGN : 0);
}

void psi_store_set_limit(psi_store *s, size_t max_bytes) { s->limit = max_bytes; }

int psi_store_foreach(const psi_store *s, int (*fn)(void *arg, uint64_t key, void *block),
                      void *arg)
{
    int rv;
    if (s->zero_block && (rv = fn(arg, 0, s->zero_block)) != 0) return rv;
    for (size_t i = 0; i < s->a.cap; i++) {
        uint64_t k = key_at(s, &s->a, i);
        if (k != 0 && (rv = fn(arg, k, block_at(s, i))) != 0) return rv;
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
