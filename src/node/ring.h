/*
 * ring.h -- the consistent-hash ring that cuts the u64 key space over the
 * servers, and the slicing of sorted key lists by ring segment.
 *
 * Design: server i (rank r, node id) places V virtual points on the u64
 * circle at positions that depend only on (r, v), so every node that knows
 * the same server set computes the same ring with no communication.  With
 * the points sorted p_0 < ... < p_{m-1}, key k is owned by the server of the
 * first point >= k, and keys above p_{m-1} wrap to the owner of p_0.  The
 * ring is cut into m + 1 segments: seg j = (p_{j-1}, p_j] for j < m (seg 0 =
 * [0, p_0]) and seg m = (p_{m-1}, 2^64-1], owned like seg 0.  Segments are
 * the unit of request slicing, replication and vector clocks; their ids are
 * stable for a given server set.  Adding or removing a server moves only the
 * keys of its own arcs.
 *
 * A ring is immutable after psi_ring_new, so any number of threads may query
 * it at once.  Pure code: no locks, no I/O, no networking.
 */
#ifndef PSI_NODE_RING_H
#define PSI_NODE_RING_H

#include <stddef.h>
#include <stdint.h>

typedef struct psi_ring psi_ring;

/*
 * Virtual points per server, chosen with `build/bin/psring 1000` (tables in
 * bench/ring-balance.md; max share / mean share, 1.0 is perfect).  At V = 256
 * the ring libps builds for S = 2..32 servers is within 1.12, within 1.17
 * after any one server left, and random rings (any salt or rank set) average
 * at most 1.13.  V = 128 is the smallest that meets 1.15 on the ring itself
 * (1.15 at S = 16), but only by luck: random rings average 1.19 at S = 32 and
 * 1.23 after a failure; V = 64 already reaches 1.38.  V = 512 would buy about
 * 0.04 more at twice the segments (vector clocks, slices).  Cost at V = 256:
 * 32 servers hold 8192 points (96 KiB), a lookup is 13 comparisons, and a
 * request is cut into at most 8193 slices.
 */
#define PSI_RING_DEFAULT_VNODES 256

/* Upper bound on servers x vnodes (16M points, 192 MiB), to refuse absurd args. */
#define PSI_RING_MAX_POINTS (1u << 24)

/*
 * A ring of n >= 1 servers, each with vnodes >= 1 virtual points; ranks[i]
 * and ids[i] describe server i.  Ranks must be distinct and >= 0, ids
 * distinct; the order of the arrays does not matter.  The arrays are copied.
 * Returns NULL on no memory or bad arguments.
 */
psi_ring *psi_ring_new(const int *ranks, const uint32_t *ids, int n, int vnodes);
void psi_ring_free(psi_ring *r);

/* Number of segments: points + 1. */
uint32_t psi_ring_nsegs(const psi_ring *r);
/* The segment that holds `key` (always < nsegs). */
uint32_t psi_ring_seg_of(const psi_ring *r, uint64_t key);
/* Owner of a segment as a node id, or 0xFFFFFFFF (PSI_ID_NONE) if seg >= nsegs. */
uint32_t psi_ring_seg_owner(const psi_ring *r, uint32_t seg);
/* Owner of a segment as a server rank, or -1 if seg >= nsegs. */
int psi_ring_seg_owner_rank(const psi_ring *r, uint32_t seg);
/*
 * Inclusive bounds [lo, hi] of a segment; every segment is non-empty and the
 * segments 0..nsegs-1 tile [0, 2^64-1] in order.  seg >= nsegs gives the
 * empty lo = 1, hi = 0.
 */
void psi_ring_seg_bounds(const psi_ring *r, uint32_t seg, uint64_t *lo, uint64_t *hi);
/*
 * The chain of a segment: the distinct servers met walking the ring's points
 * from the segment's own point onwards (its owner first, then its successors),
 * skipping those for which live(arg, id) is 0 (live may be NULL: all live).
 * Writes up to `cap` node ids to out and returns how many it wrote.  With
 * every server live, out[0] is the owner and out[1..k] are the k backups of
 * chain replication; when the owner died, the first live successor, which
 * held its replica, comes first.  Cost: O(points walked), on average about
 * nservers * H(cap) / nservers per id for small cap.
 */
size_t psi_ring_seg_chain(const psi_ring *r, uint32_t seg, int (*live)(void *arg, uint32_t id),
                          void *arg, uint32_t *out, size_t cap);
/* Number of servers on the ring. */
uint32_t psi_ring_nservers(const psi_ring *r);

/* Owner of a key as a node id. */
uint32_t psi_ring_owner(const psi_ring *r, uint64_t key);

/* keys[begin, end) all lie in segment `seg`, owned by node id `owner`. */
typedef struct psi_ring_slice {
    uint32_t seg;
    uint32_t owner;
    size_t begin, end;
} psi_ring_slice;

/*
 * Cut sorted keys[0..n) (ascending, duplicates allowed) into maximal runs
 * lying in one segment, in key order.  Writes the first min(cap, count)
 * slices to out (out may be NULL when cap == 0) and returns count, which is
 * <= min(n, nsegs); a caller with a small buffer can retry with count.
 * Cost: O(log m) for one key and O(s (log m + log n)) for s slices, never
 * more than O(n log m); see ring.c.
 */
size_t psi_ring_slice_keys(const psi_ring *r, const uint64_t *keys, size_t n,
                           psi_ring_slice *out, size_t cap);

/*
 * Fraction of the key space owned by each server, out[0..n): out[i] belongs
 * to the server with the i-th smallest rank (so out[rank] when the ranks are
 * 0..n-1).  The fractions sum to 1 up to rounding.
 */
void psi_ring_shares(const psi_ring *r, double *out);

#endif /* PSI_NODE_RING_H */
