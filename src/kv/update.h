/*
 * update.h -- a table's update function and initializer on the server: how
 * a pushed value g changes the stored value w, and what a key holds before
 * its first push.
 *
 * Design: a block (see kv/store.h) is the key's `width` values of the
 * table's dtype followed by the rule's per-key state: nothing for ADD,
 * ASSIGN, SGD and PROX; n[width] for ADAGRAD; z[width] then n[width] for
 * FTRL (state in the value dtype); state_bytes at an 8-aligned offset for
 * CUSTOM.  The values come first, so a pull is a memcpy of
 * psi_update_value_bytes() from the block.  f32 tables compute in float,
 * f64 tables in double; PS_I64 supports ADD (wrapping), ASSIGN and CUSTOM.
 * RANDOM initial values are a pure function of (init_seed, key, index), so
 * every server (and a recovering replica) gives a key the same start.
 *
 * Must never: allocate, block, or touch anything but the block and push
 * given; keep state outside the block (the store moves blocks when it grows).
 */
#ifndef PSI_KV_UPDATE_H
#define PSI_KV_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include "ps/kv.h"

/* 2^26 values: 256 MiB of f32 per key, well under a message's 1 GiB cap for
 * one key of any dtype (dense pages shrink to fit such blocks: store.h). */
#define PSI_UPDATE_MAX_WIDTH (1 << 26)
#define PSI_UPDATE_MAX_STATE (1 << 24) /* custom state_bytes per key */

typedef struct psi_update {
    ps_update kind;
    ps_dtype dtype;
    int width;
    double lr, l1, l2, beta, eps;
    const ps_update_ops *custom;
    ps_init init;
    double init_value, init_scale;
    uint64_t init_seed;
} psi_update;

/*
 * Fill `u` from table options after validating them: 0, or PS_ERR_INVAL
 * with a PSI_ERROR line naming the bad option (width outside [1, 2^26],
 * unknown dtype, update or init, a gradient rule on PS_I64, lr <= 0 for a
 * rule that uses it, l1/l2 < 0, beta < 0 (or beta = l2 = 0) for FTRL,
 * eps <= 0 for ADAGRAD, a NULL custom ops or apply for CUSTOM, init_scale
 * < 0, a number that is not finite or does not fit the dtype).
 */
int psi_update_from_opts(psi_update *u, const ps_table_opts *o);
/* Bytes of the values of one key: width * sizeof(dtype). */
size_t psi_update_value_bytes(const psi_update *u);
/* Bytes of one block: values + state, a multiple of the alignment they need. */
size_t psi_update_block_bytes(const psi_update *u);
/* Write the initial values and zero state of `key` into `block`. */
void psi_update_init_block(const psi_update *u, uint64_t key, void *block);
/* Write just the width initial values of `key` (pulls of keys never pushed). */
void psi_update_init_values(const psi_update *u, uint64_t key, void *vals);
/* Apply `push` (width values of the dtype) to the block of `key`. */
void psi_update_apply(const psi_update *u, uint64_t key, void *block, const void *push);
/* Apply push[i*width ..] to blocks[i] for i < n; NULL blocks are skipped
 * (keys the store refused).  The hot loop of a push. */
void psi_update_apply_batch(const psi_update *u, const uint64_t *keys, void **blocks,
                            const void *push, size_t n);
/* Apply `push` (cnt values) to values [j0, j0 + cnt) of `key`'s block: a
 * fragment of a wide key (src/kv/train.c).  Every rule but CUSTOM works
 * value by value, so applying a key's values in parts is applying them
 * whole; CUSTOM needs j0 = 0 and cnt = width. */
void psi_update_apply_range(const psi_update *u, uint64_t key, void *block, const void *push,
                            size_t j0, size_t cnt);

#endif /* PSI_KV_UPDATE_H */
