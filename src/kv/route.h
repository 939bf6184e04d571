/*
 * route.h -- putting a request's keys in the order the wire needs: sorted
 * ascending, with the permutation back to the caller's order.
 *
 * Why a sort and not a grouping by server: a server checks that every
 * request's keys ascend (server.c, check_request: strictly for pushes,
 * which is also how it finds repeated keys), a slice is named in answers
 * by its first and last key, replicated tables ask whether the sorted keys
 * are all in segments this node heads, and the key-caching and zstd
 * filters delta-encode sorted keys.  So each server's keys must be sorted
 * anyway; sorting all keys once costs what grouping them by server and
 * sorting each group would, and the ring then cuts the sorted keys with a
 * binary search per segment (psi_ring_slice_keys).
 *
 * Design: an MSD radix sort over the bits that vary (the keys' minimum is
 * subtracted, so keys in any narrow range sort as fast as random ones).
 * The first pass scatters the caller's keys into at most 2^11 buckets
 * straight into the result arrays (so its write streams stay in cache);
 * each bucket is then sorted in cache by the same pass on fewer bits,
 * recursively, down to insertion sort below 24 keys.  Two to three passes
 * over memory in all for random u64 keys, O(n) for any input (every level
 * consumes at least one bit of the range, so at most 64 levels), stable (a
 * repeated key keeps the caller's order).  Memory: one scratch pair of
 * arrays as large as the largest first-level bucket.
 *
 * Memo: a worker usually hands the same key list over again (pull, then
 * push the gradients of the same minibatch; the same features every
 * iteration), so psi_route_sort_cached keeps, per owner (a table), the last
 * few lists it sorted after seeing them twice, and answers a list equal to
 * one of them with a compare and two copies instead of a sort: the
 * worker-side half of the paper's key caching.  A list is recognised by a
 * fingerprint of its length and 64 sampled keys, and confirmed by comparing
 * every key, so a hit is always exact.  Memory: 24 bytes per key of a
 * remembered list, at most PSI_ROUTE_MEMO_BYTES over all owners; the oldest
 * list makes room.  Thread-safe (one mutex; a hit copies under it).
 *
 * Never: read past n, write past n in the outputs, or reorder equal keys;
 * answer from a memo without comparing every key.
 */
#ifndef PSI_KV_ROUTE_H
#define PSI_KV_ROUTE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Sort keys[0..n) into sorted[0..n) ascending, stably; perm[i] gets the
 * position in `keys` of sorted[i].  The caller owns all three arrays
 * (sorted and perm must not overlap keys).  Returns 0, or PS_ERR_NOMEM
 * when scratch memory could not be had (outputs undefined then).
 */
int psi_route_sort(const uint64_t *keys, size_t n, uint64_t *sorted, size_t *perm);

#define PSI_ROUTE_MEMO_BYTES ((size_t)96 << 20) /* all remembered lists together */
#define PSI_ROUTE_MEMO_MIN 4096                 /* shorter lists sort fast enough */

/* psi_route_sort, answered from owner's remembered lists when `keys` equals
 * one of them (same result, bit for bit); lists seen twice are remembered. */
int psi_route_sort_cached(const void *owner, const uint64_t *keys, size_t n, uint64_t *sorted,
                          size_t *perm);
/* A remembered sorted order, shared read-only by the requests that use it
 * (psi_route_share) and the memo; freed by its last psi_route_release. */
typedef struct psi_route_order {
    _Atomic size_t refs;
    size_t n;
    int unique; /* no key repeats */
    uint64_t *sorted;
    size_t *perm;
} psi_route_order;

/* On a memo hit for keys[0..n), a reference to its sorted order (nothing
 * copied; the caller must not write to it), else NULL: then sort. */
psi_route_order *psi_route_share(const uint64_t *keys, size_t n);
void psi_route_release(psi_route_order *o); /* NULL is fine */
/* Drop owner's remembered lists (its table is closing). */
void psi_route_forget(const void *owner);

#endif /* PSI_KV_ROUTE_H */
