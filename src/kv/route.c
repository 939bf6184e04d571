/*
 * route.c -- the MSD radix sort of route.h: a request's keys in ascending
 * order with the permutation back to the caller's order.
 *
 * Design: a pass takes the keys' minimum lo and maximum hi, and buckets
 * each key by the top `bits` of (key - lo), counting first, then scattering
 * stably; the buckets are then sorted the same way on the bits below.  The
 * first pass (at most 2^11 buckets) reads the caller's keys and writes the
 * result arrays directly; the deeper ones copy their bucket to a scratch
 * pair of arrays and scatter it back, in cache.  A pass uses about n/4
 * buckets (so random keys end in buckets of a few keys, finished by
 * insertion sort), never more than the range has bits for.  Keys all equal
 * end a bucket at once.  Counts live on the stack: 2^11 words at the top,
 * 2^8 + 1 per deeper level, and a level uses at least 3 bits of a range of
 * at most 64, so the stack stays under 50 KiB.
 *
 * Never: allocate per bucket, or recurse into a bucket of fewer than SMALL
 * keys (insertion sort is faster there).
 */
#include <stdlib.h>
#include <string.h>

#include "kv/route.h"
#include "ps/ps.h"

#define SMALL 24     /* buckets below this many keys: insertion sort */
#define TOP_BITS 11  /* first pass: at most 2048 buckets (16 KiB of counts) */
#define SUB_BITS 8   /* deeper passes: at most 256 */

static int bit_len(uint64_t x) { return x ? 64 - __builtin_clzll(x) : 0; }

/* Stable insertion sort of k[0..n) carrying p along. */
static void insertion(uint64_t *k, size_t *p, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        uint64_t x = k[i];
        size_t y = p[i], j = i;
        while (j > 0 && k[j - 1] > x) {
            k[j] = k[j - 1];
            p[j] = p[j - 1];
            j--;
        }
        k[j] = x;
        p[j] = y;
    }
}

static void min_max(const uint64_t *k, size_t n, uint64_t *lo, uint64_t *hi)
{
    uint64_t a = k[0], b = k[0];
    for (size_t i = 1; i < n; i++) {
        a = k[i] < a ? k[i] : a;
        b = k[i] > b ? k[i] : b;
    }
    *lo = a;
    *hi = b;
}

/* Digit bits for n keys whose range (hi - lo) is `range`: about n/4
 * buckets, between 1 and `max`, and no more bits than the range has. */
static int digit_bits(size_t n, uint64_t range, int max)
{
    int b = bit_len(n) - 2, rb = bit_len(range);
    b = b > max ? max : b < 1 ? 1 : b;
    return b < rb ? b : rb;
}

/* Sort k/p[0..n) in place; tk/tp: scratch for at least n entries. */
static void sort_sub(uint64_t *k, size_t *p, size_t n, uint64_t *tk, size_t *tp)
{
    size_t end[(1u << SUB_BITS) + 1];
    uint64_t lo, hi;
    if (n < SMALL) {
        insertion(k, p, n);
        return;
    }
    min_max(k, n, &lo, &hi);
    if (lo == hi) return;
    int bits = digit_bits(n, hi - lo, SUB_BITS), shift = bit_len(hi - lo) - bits;
    size_t nb = (size_t)1 << bits, sum = 0;
    memset(end, 0, nb * sizeof(size_t));
    for (size_t i = 0; i < n; i++) end[(k[i] - lo) >> shift]++;
    for (size_t b = 0; b < nb; b++) { /* counts -> starts */
        size_t c = end[b];
        end[b] = sum;
        sum += c;
    }
    memcpy(tk, k, n * sizeof(*k));
    memcpy(tp, p, n * sizeof(*p));
    for (size_t i = 0; i < n; i++) { /* starts -> ends */
        size_t d = end[(tk[i] - lo) >> shift]++;
        k[d] = tk[i];
        p[d] = tp[i];
    }
    for (size_t b = 0, s = 0; b < nb; s = end[b++])
        if (end[b] - s > 1) sort_sub(k + s, p + s, end[b] - s, tk, tp);
}

static void identity(const uint64_t *keys, size_t n, uint64_t *sorted, size_t *perm)
{
    memcpy(sorted, keys, n * sizeof(*keys));
    for (size_t i = 0; i < n; i++) perm[i] = i;
}

int psi_route_sort(const uint64_t *keys, size_t n, uint64_t *sorted, size_t *perm)
{
    size_t end[1u << TOP_BITS], sum = 0, big = 0;
    uint64_t lo, hi;
    if (n < SMALL || (min_max(keys, n, &lo, &hi), lo == hi)) {
        identity(keys, n, sorted, perm);
        insertion(sorted, perm, n < SMALL ? n : 0);
        return PS_OK;
    }
    int bits = digit_bits(n, hi - lo, TOP_BITS), shift = bit_len(hi - lo) - bits;
    size_t nb = (size_t)1 << bits;
    memset(end, 0, nb * sizeof(size_t));
    for (size_t i = 0; i < n; i++) end[(keys[i] - lo) >> shift]++;
    for (size_t b = 0; b < nb; b++) {
        size_t c = end[b];
        end[b] = sum;
        sum += c;
        big = c > big ? c : big;
    }
    for (size_t i = 0; i < n; i++) {
        size_t d = end[(keys[i] - lo) >> shift]++;
        sorted[d] = keys[i];
        perm[d] = i;
    }
    if (big < SMALL) { /* every bucket is small: no scratch needed */
        for (size_t b = 0, s = 0; b < nb; s = end[b++]) insertion(sorted + s, perm + s, end[b] - s);
        return PS_OK;
    }
    uint64_t *tk = malloc(big * sizeof(*tk));
    size_t *tp = malloc(big * sizeof(*tp));
    if (!tk || !tp) {
        free(tk);
        free(tp);
        return PS_ERR_NOMEM;
    }
    for (size_t b = 0, s = 0; b < nb; s = end[b++])
        if (end[b] - s > 1) sort_sub(sorted + s, perm + s, end[b] - s, tk, tp);
    free(tk);
    free(tp);
    return PS_OK;
}
