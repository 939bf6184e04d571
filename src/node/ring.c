/*
 * ring.c -- the consistent-hash ring over the u64 key space (see ring.h for
 * the ownership and segment rules).
 *
 * Design: virtual point v of the server with rank r sits at
 * splitmix64(((r << 32) | v) ^ RING_SALT).  The mixer is a bijection of u64
 * and (r, v) -> (r << 32) | v is injective for the ranks and vnode counts
 * allowed, so two points never coincide; the code still sorts by (position,
 * rank) and drops later duplicates so that even a broken mixer would give
 * the same ring on every node.  The one position 2^64-1 is moved to 2^64-2
 * so that the last segment (p_{m-1}, 2^64-1] is never empty.  The points are
 * kept sorted in a flat array with the server index of each; a segment's id
 * is the lower bound of its keys in that array, so every lookup is one
 * binary search.  Slicing gallops (exponential then binary search) both over
 * the points, to find the next key's segment, and over the keys, to find the
 * end of its run: s slices of n keys cost O(s (log m + log n)), which is
 * O(log m) for one key, O(m log n) for many keys, and never beyond
 * O(n log m).
 *
 * It must never change the position formula or RING_SALT: every node of a
 * cluster, and every checkpoint, relies on them.  It must never read outside
 * the key array, even when the keys are not sorted (the slices are then
 * meaningless but still cover [0, n)).
 */
#include "node/ring.h"
#include "util/util.h"

#include <stdlib.h>

#define RING_SALT 0x6c69627073726e67ull /* "libpsrng" */
#define ID_NONE 0xFFFFFFFFu             /* PSI_ID_NONE of node/view.h */

struct psi_ring {
    uint32_t m;       /* points */
    uint32_t nsrv;    /* servers */
    uint64_t *pts;    /* m positions, strictly ascending */
    uint32_t *pt_srv; /* server index of each point */
    int *rank;        /* nsrv ranks, strictly ascending */
    uint32_t *id;     /* node id of each server */
};

typedef struct ring_point {
    uint64_t pos;
    uint32_t srv;
} ring_point;

typedef struct ring_server {
    int rank;
    uint32_t id;
} ring_server;

/* ---- positions ---------------------------------------------------------------- */

/* splitmix64's output function (Steele, Lea, Flood 2014): a bijection of u64. */
static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Where virtual point v of the server with rank `rank` sits; never 2^64-1. */
static uint64_t point_pos(int rank, uint32_t v)
{
    uint64_t z = splitmix64((((uint64_t)(uint32_t)rank << 32) | v) ^ RING_SALT);
    return z == UINT64_MAX ? UINT64_MAX - 1 : z;
}

/* ---- sorted searches ---------------------------------------------------------- */

/* Does a value v come before the answer for x: v < x, or v <= x if strict? */
static int before(uint64_t v, uint64_t x, int strict) { return strict ? v <= x : v < x; }

/*
 * First j in [from, n] with !before(a[j], x): probes from+1, from+2, from+4,
 * ... then binary searches the last gap, so an answer d places away costs
 * O(log d) rather than O(log n).
 */
static size_t gallop_first(const uint64_t *a, size_t from, size_t n, uint64_t x, int strict)
{
    size_t lo = from, hi = from, step = 1;

    while (hi < n && before(a[hi], x, strict)) {
        lo = hi + 1;
        hi = n - hi > step ? hi + step : n;
        step *= 2;
    }
    return psi_search_u64(a, lo, hi, x, strict);
}

/* ---- construction --------------------------------------------------------------- */

static int cmp_server(const void *a, const void *b)
{
    const ring_server *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_point(const void *a, const void *b)
{
    const ring_point *x = a, *y = b;
    if (x->pos != y->pos) return (x->pos > y->pos) - (x->pos < y->pos);
    return (x->srv > y->srv) - (x->srv < y->srv);
}

/* 1 if the arguments describe a valid ring, 0 otherwise. */
static int args_ok(const int *ranks, const uint32_t *ids, int n, int vnodes)
{
    if (!ranks || !ids || n < 1 || vnodes < 1) return 0;
    if ((uint64_t)n * (uint64_t)vnodes > PSI_RING_MAX_POINTS) return 0;
    for (int i = 0; i < n; i++)
        if (ranks[i] < 0) return 0;
    return 1;
}

/* 1 if some value occurs twice in a[0..n); sorts a. */
static int has_dup_u32(uint32_t *a, uint32_t n)
{
    qsort(a, n, sizeof(*a), cmp_u32);
    for (uint32_t i = 1; i < n; i++)
        if (a[i] == a[i - 1]) return 1;
    return 0;
}

/* Fill r->rank and r->id sorted by rank; 0, or -1 on no memory or a duplicate. */
static int set_servers(psi_ring *r, const int *ranks, const uint32_t *ids)
{
    uint32_t n = r->nsrv;
    ring_server *s = malloc(n * sizeof(*s));
    uint32_t *idc = malloc(n * sizeof(*idc));
    int rv = -1;

    if (!s || !idc) goto out;
    for (uint32_t i = 0; i < n; i++) s[i] = (ring_server){ranks[i], ids[i]};
    qsort(s, n, sizeof(*s), cmp_server);
    for (uint32_t i = 0; i < n; i++) {
        if (i > 0 && s[i].rank == s[i - 1].rank) goto out;
        r->rank[i] = s[i].rank;
        r->id[i] = idc[i] = s[i].id;
    }
    rv = has_dup_u32(idc, n) ? -1 : 0;
out:
    free(idc);
    free(s);
    return rv;
}

/* Place, sort and deduplicate the points of every server; 0 or -1 (no memory). */
static int set_points(psi_ring *r, uint32_t vnodes)
{
    uint32_t total = r->nsrv * vnodes, m = 0;
    ring_point *p = malloc(total * sizeof(*p));

    if (!p) return -1;
    for (uint32_t s = 0; s < r->nsrv; s++)
        for (uint32_t v = 0; v < vnodes; v++)
            p[s * vnodes + v] = (ring_point){point_pos(r->rank[s], v), s};
    qsort(p, total, sizeof(*p), cmp_point);
    for (uint32_t i = 0; i < total; i++) {
        if (m > 0 && p[i].pos == r->pts[m - 1]) continue; /* lower rank keeps it */
        r->pts[m] = p[i].pos;
        r->pt_srv[m++] = p[i].srv;
    }
    r->m = m;
    free(p);
    return 0;
}

psi_ring *psi_ring_new(const int *ranks, const uint32_t *ids, int n, int vnodes)
{
    psi_ring *r;
    size_t total = (size_t)n * (size_t)vnodes;

    if (!args_ok(ranks, ids, n, vnodes) || !(r = calloc(1, sizeof(*r)))) return NULL;
    r->nsrv = (uint32_t)n;
    r->pts = malloc(total * sizeof(*r->pts));
    r->pt_srv = malloc(total * sizeof(*r->pt_srv));
    r->rank = malloc((size_t)n * sizeof(*r->rank));
    r->id = malloc((size_t)n * sizeof(*r->id));
    if (!r->pts || !r->pt_srv || !r->rank || !r->id) goto fail;
    if (set_servers(r, ranks, ids) != 0 || set_points(r, (uint32_t)vnodes) != 0) goto fail;
    return r;
fail:
    psi_ring_free(r);
    return NULL;
}

void psi_ring_free(psi_ring *r)
{
    if (!r) return;
    free(r->pts);
    free(r->pt_srv);
    free(r->rank);
    free(r->id);
    free(r);
}

/* ---- queries ------------------------------------------------------------------- */

/* Server index owning segment seg < nsegs: seg m wraps to the owner of p_0. */
static uint32_t seg_srv(const psi_ring *r, uint32_t seg)
{
    return r->pt_srv[seg < r->m ? seg : 0];
}

/* Largest key of segment seg < nsegs. */
static uint64_t seg_hi(const psi_ring *r, uint32_t seg)
{
    return seg < r->m ? r->pts[seg] : UINT64_MAX;
}

uint32_t psi_ring_nsegs(const psi_ring *r) { return r->m + 1; }

uint32_t psi_ring_seg_of(const psi_ring *r, uint64_t key)
{
    return (uint32_t)psi_search_u64(r->pts, 0, r->m, key, 0);
}

uint32_t psi_ring_seg_owner(const psi_ring *r, uint32_t seg)
{
    return seg <= r->m ? r->id[seg_srv(r, seg)] : ID_NONE;
}

int psi_ring_seg_owner_rank(const psi_ring *r, uint32_t seg)
{
    return seg <= r->m ? r->rank[seg_srv(r, seg)] : -1;
}

void psi_ring_seg_bounds(const psi_ring *r, uint32_t seg, uint64_t *lo, uint64_t *hi)
{
    if (seg > r->m) {
        *lo = 1;
        *hi = 0;
        return;
    }
    *lo = seg == 0 ? 0 : r->pts[seg - 1] + 1;
    *hi = seg_hi(r, seg);
}

size_t psi_ring_seg_chain(const psi_ring *r, uint32_t seg, int (*live)(void *arg, uint32_t id),
                          void *arg, uint32_t *out, size_t cap)
{
    size_t n = 0;
    if (seg > r->m) return 0;
    uint32_t start = seg < r->m ? seg : 0;
    for (uint32_t i = 0; i < r->m && n < cap; i++) {
        uint32_t id = r->id[r->pt_srv[(start + i) % r->m]];
        int seen = 0;
        for (size_t j = 0; j < n && !seen; j++) seen = out[j] == id;
        if (!seen && (!live || live(arg, id))) out[n++] = id;
    }
    return n;
}

uint32_t psi_ring_nservers(const psi_ring *r) { return r->nsrv; }

uint32_t psi_ring_owner(const psi_ring *r, uint64_t key)
{
    return r->id[seg_srv(r, psi_ring_seg_of(r, key))];
}

size_t psi_ring_slice_keys(const psi_ring *r, const uint64_t *keys, size_t n,
                           psi_ring_slice *out, size_t cap)
{
    size_t count = 0, i = 0, seg = 0;

    while (i < n) {
        /* keys[i] lies above every earlier segment (when sorted): gallop from seg */
        seg = gallop_first(r->pts, seg, r->m, keys[i], 0);
        size_t end = seg == r->m ? n : gallop_first(keys, i + 1, n, r->pts[seg], 1);
        if (count < cap)
            out[count] = (psi_ring_slice){(uint32_t)seg, psi_ring_seg_owner(r, (uint32_t)seg),
                                          i, end};
        count++;
        i = end;
        if (seg < r->m) seg++;
    }
    return count;
}

void psi_ring_shares(const psi_ring *r, double *out)
{
    const double space = 18446744073709551616.0; /* 2^64 */

    for (uint32_t s = 0; s < r->nsrv; s++) out[s] = 0;
    for (uint32_t seg = 0; seg <= r->m; seg++) {
        uint64_t lo, hi;
        psi_ring_seg_bounds(r, seg, &lo, &hi);
        out[seg_srv(r, seg)] += ((double)(hi - lo) + 1.0) / space;
    }
}
