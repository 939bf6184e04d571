/*
 * cm.c -- the CountMin sketch's geometry, row hashes and insert batches.
 *
 * Geometry (Cormode and Muthukrishnan 2005): width w = ceil(e / eps) and
 * depth d = ceil(ln(1 / delta)) give, for every key, an estimate (the
 * minimum of its d counters) that never undercounts and exceeds the true
 * count by more than eps * N with probability at most delta.  That bound
 * needs row hashes drawn from a pairwise independent family: row r maps the
 * key hash x (reduced mod p) to ((a_r x + b_r) mod p) mod w with the Mersenne
 * prime p = 2^61 - 1 and a_r in [1, p), b_r in [0, p) drawn from the seed.
 *
 * Cells live on the servers as one i64 key each in an ADD table: cell (r, c)
 * is key ps_hash_key(r * w + c + 1), which spreads the d * w cells over the
 * consistent-hash ring (raw small integers would all fall in one range).
 *
 * A batch first counts its stream items per key (an array indexed by key,
 * no hashing), then expands each touched key into its d cells, merging the
 * cells that keys share (an open-addressing table): one push carries every
 * distinct cell once, as a push must.  A cell key is never 0 (the empty
 * slot marker): cm_cell_key maps a hash of 0 to 2^63.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sketch.h"

#define P61 ((1ULL << 61) - 1)

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* x mod 2^61 - 1 for x < 2^122. */
static uint64_t mod61(unsigned __int128 x)
{
    uint64_t r = (uint64_t)(x & P61) + (uint64_t)(x >> 61);
    r = (r & P61) + (r >> 61);
    return r >= P61 ? r - P61 : r;
}

int cm_geom_init(cm_geom *g, double eps, double delta, uint32_t width, uint32_t depth,
                 uint64_t seed, const char **why)
{
    memset(g, 0, sizeof *g);
    if (width || depth) {
        if (width < 1 || width > CM_MAX_WIDTH) return *why = "--width must be 1..2^26", -1;
        if (depth < 1 || depth > CM_MAX_DEPTH) return *why = "--depth must be 1..32", -1;
        eps = M_E / width, delta = exp(-(double)depth);
    } else {
        if (!(eps > 0 && eps < 1)) return *why = "--eps must be in (0, 1)", -1;
        if (!(delta > 0 && delta < 1)) return *why = "--delta must be in (0, 1)", -1;
        double w = ceil(M_E / eps), d = ceil(log(1 / delta));
        if (w > CM_MAX_WIDTH) return *why = "--eps too small: the width passes 2^26", -1;
        if (d > CM_MAX_DEPTH) return *why = "--delta too small: the depth passes 32", -1;
        width = (uint32_t)w, depth = d < 1 ? 1 : (uint32_t)d;
    }
    g->width = width, g->depth = depth, g->eps = eps, g->delta = delta;
    for (uint32_t r = 0; r < depth; r++) {
        g->a[r] = 1 + splitmix(&seed) % (P61 - 1);
        g->b[r] = splitmix(&seed) % P61;
    }
    return 0;
}

uint32_t cm_col(const cm_geom *g, uint32_t r, uint64_t h)
{
    uint64_t x = mod61(h);
    uint64_t y = mod61((unsigned __int128)g->a[r] * x + g->b[r]);
    return (uint32_t)(y % g->width);
}

uint64_t cm_cell_key(const cm_geom *g, uint32_t r, uint32_t c)
{
    uint64_t k = ps_hash_key((uint64_t)r * g->width + c + 1);
    return k ? k : 1ULL << 63;
}

int cm_batch_init(cm_batch *b, const cm_geom *g, size_t nkeys, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->g = g, b->cap = cap;
    size_t maxcells = (cap < nkeys ? cap : nkeys) * g->depth + 1;
    b->slots = 16;
    while (b->slots < 2 * maxcells) b->slots *= 2;
    b->kcount = calloc(nkeys + 1, sizeof *b->kcount);
    b->touched = malloc((nkeys + 1) * sizeof *b->touched);
    b->skey = calloc(b->slots, sizeof *b->skey);
    b->spos = malloc(b->slots * sizeof *b->spos);
    b->cells = malloc(maxcells * sizeof *b->cells);
    b->vals = malloc(maxcells * sizeof *b->vals);
    if (b->kcount && b->touched && b->skey && b->spos && b->cells && b->vals) return 0;
    cm_batch_free(b);
    return PS_ERR_NOMEM;
}

void cm_batch_free(cm_batch *b)
{
    free(b->kcount), free(b->touched), free(b->skey), free(b->spos);
    free(b->cells), free(b->vals);
    memset(b, 0, sizeof *b);
}

/* Add v to cell `key`: the slot finds its position in cells / vals. */
static void cell_add(cm_batch *b, uint64_t key, int64_t v)
{
    size_t m = b->slots - 1, i = (size_t)(key ^ (key >> 29)) & m;
    while (b->skey[i] && b->skey[i] != key) i = (i + 1) & m;
    if (!b->skey[i]) {
        b->skey[i] = key, b->spos[i] = (uint32_t)b->ncells;
        b->cells[b->ncells] = key, b->vals[b->ncells++] = 0;
    }
    b->vals[b->spos[i]] += v;
}

void cm_batch_cells(cm_batch *b, const uint64_t *hash)
{
    const cm_geom *g = b->g;
    for (size_t t = 0; t < b->ntouched; t++) {
        uint32_t k = b->touched[t];
        for (uint32_t r = 0; r < g->depth; r++) {
            cell_add(b, cm_cell_key(g, r, cm_col(g, r, hash[k])), (int64_t)b->kcount[k]);
        }
    }
}

void cm_batch_reset(cm_batch *b)
{
    for (size_t t = 0; t < b->ntouched; t++) b->kcount[b->touched[t]] = 0;
    if (b->ncells * 8 < b->slots) { /* clear only the slots used: probing
                                      * goes past emptied slots until it
                                      * finds the key, which is there */
        for (size_t i = 0; i < b->ncells; i++) {
            size_t m = b->slots - 1, j = (size_t)(b->cells[i] ^ (b->cells[i] >> 29)) & m;
            while (b->skey[j] != b->cells[i]) j = (j + 1) & m;
            b->skey[j] = 0;
        }
    } else {
        memset(b->skey, 0, b->slots * sizeof *b->skey);
    }
    b->ntouched = b->items = b->ncells = 0;
}
