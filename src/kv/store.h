/*
 * store.h -- a server's storage for one table: a sparse open-addressing hash
 * table from u64 key to a fixed-size value block, and a dense paged array
 * for tables whose keys are a known range [lo, hi).
 *
 * Design (sparse): open addressing over one zero-filled allocation whose
 * slots hold a key and its block side by side (8 + block_bytes bytes, no
 * padding, for blocks aligned to 8 or less; blocks aligned to 16 or more
 * keep their own array beside the keys).  Key 0 marks an empty slot and the
 * real key 0 has a block of its own, so every u64, 0 and 2^64-1 included,
 * is a valid key.  The home slot is a murmur3 finalizer of the key scaled
 * to the capacity (any capacity, not only powers of two); collisions probe
 * linearly.  The maximum load factor is 0.8; past it the table grows to
 * max(what the keys need, 1.5 x) and rehashes.  For block_bytes = 4 (one
 * f32) that is 12 bytes per slot: 15 bytes per key at the maximum load,
 * 22.5 right after a growth, and 15 for a table sized by one batch of new
 * keys.  There is no delete, so there are no tombstones.
 *
 * Design (dense): a directory of pages of 4096 keys (fewer for blocks over
 * 4 KiB, so that a page stays within 16 MiB, but at least one key), each
 * page allocated on first write, so a server that owns part of the range
 * only pays for the pages it touches; a new page is filled by the init
 * callback.
 *
 * Block i is aligned to the largest power of two dividing block_bytes (up to
 * 64): callers size blocks so their types stay aligned (psi_update does).
 * Block pointers stay valid until the next call that may insert (upsert,
 * upsert_batch) or free.  Single-threaded: the caller serializes access.
 * Must never: move a block except while growing, report a key twice from
 * foreach, or grow past the byte limit.
 */
#ifndef PSI_KV_STORE_H
#define PSI_KV_STORE_H

#include <stddef.h>
#include <stdint.h>

/* Slots are grown when keys would exceed capacity * NUM / DEN (0.8). */
#define PSI_STORE_LOAD_NUM 4
#define PSI_STORE_LOAD_DEN 5
#define PSI_DENSE_PAGE_KEYS 4096   /* keys per page for blocks up to 4 KiB */
#define PSI_DENSE_PAGE_BYTES (1u << 24)

typedef struct psi_store psi_store;

/* A new empty store of blocks of `block_bytes` (>= 1); NULL on no memory. */
psi_store *psi_store_new(size_t block_bytes);
void psi_store_free(psi_store *s);
/* The block of `key`, or NULL if it was never inserted. */
void *psi_store_find(const psi_store *s, uint64_t key);
/*
 * Find or insert `key`.  A new block is zero-filled and *inserted set to 1
 * (0 for an existing key; `inserted` may be NULL).  NULL when out of memory
 * or when growing would exceed the limit (PS_ERR_TOOBIG semantics: the
 * caller reports it); the store is unchanged then.
 */
void *psi_store_upsert(psi_store *s, uint64_t key, int *inserted);
/*
 * Batch upsert for hot paths; keys in any order, repeats allowed.
 * blocks[i] gets the block of keys[i] or NULL (limit or no memory), and
 * inserted[i] (if not NULL) 1 for a key this call created.  Growing inside
 * the call re-finds earlier blocks, so all returned blocks are valid when it
 * returns, until the next insert.  Returns the number of NULLs.
 */
size_t psi_store_upsert_batch(psi_store *s, const uint64_t *keys, size_t n, void **blocks,
                              uint8_t *inserted);
/* Batch find for hot paths (pulls): blocks[i] gets the block of keys[i] or
 * NULL when it was never inserted; the slots are prefetched a few keys
 * ahead, as in upsert_batch.  Returns the number of NULLs. */
size_t psi_store_find_batch(const psi_store *s, const uint64_t *keys, size_t n, void **blocks);
/* The same with hints: hint[i] is the slot where keys[i] was last found,
 * or PSI_STORE_NO_HINT; the key is looked for there first (and taken only
 * if that slot holds it), and hint[i] is set to where the lookup found it.
 * Results are exactly those of the calls without hints, whatever the hints
 * say (hints.h keeps them per key list). */
#define PSI_STORE_NO_HINT UINT32_MAX
size_t psi_store_upsert_batch_hint(psi_store *s, const uint64_t *keys, size_t n, void **blocks,
                                   uint8_t *inserted, uint32_t *hint);
size_t psi_store_find_batch_hint(const psi_store *s, const uint64_t *keys, size_t n,
                                 void **blocks, uint32_t *hint);
size_t psi_store_size(const psi_store *s);  /* keys stored */
size_t psi_store_bytes(const psi_store *s); /* bytes allocated, struct included */
/* Size the table once for `keys` keys in all (no-op if it already holds
 * that many slots); 0, or -1 when the limit or memory forbids it. */
int psi_store_reserve(psi_store *s, size_t keys);
/* The longest run of occupied slots (wrapping): the longest probe a lookup
 * of an absent key can make.  For tests and diagnostics; walks every slot. */
size_t psi_store_longest_run(const psi_store *s);
/* Cap psi_store_bytes() after any growth (the old arrays are also held
 * while rehashing); 0 = none.  Existing keys stay reachable over the cap. */
void psi_store_set_limit(psi_store *s, size_t max_bytes);
/* Call fn for every (key, block) in slot order; stops at and returns the
 * first nonzero value fn returns, else 0.  fn must not insert. */
int psi_store_foreach(const psi_store *s, int (*fn)(void *arg, uint64_t key, void *block),
                      void *arg);

typedef struct psi_dense psi_dense;

/* A dense store for keys in [lo, hi) (hi > lo); NULL on no memory. */
psi_dense *psi_dense_new(uint64_t lo, uint64_t hi, size_t block_bytes);
void psi_dense_free(psi_dense *d);
/* Fill every block of a page when it is created (default: zeros).  `init`
 * must write all block_bytes of the block. */
void psi_dense_set_init(psi_dense *d, void (*init)(void *arg, uint64_t key, void *block),
                        void *arg);
/* Cap psi_dense_bytes(); 0 = none.  A page past the cap is not created. */
void psi_dense_set_limit(psi_dense *d, size_t max_bytes);
/* The block of `key`; with `create`, its page is allocated if missing.
 * NULL for a key out of range, a missing page without `create`, no memory
 * or the limit. */
void *psi_dense_get(psi_dense *d, uint64_t key, int create);
size_t psi_dense_bytes(const psi_dense *d);
/* Like psi_store_foreach, in key order, over the keys of existing pages. */
int psi_dense_foreach(const psi_dense *d, int (*fn)(void *arg, uint64_t key, void *block),
                      void *arg);

#endif /* PSI_KV_STORE_H */
