/*
 * sort.c -- sorting u64 keys while remembering where each came from, for
 * requests whose keys arrive unsorted.
 *
 * Design: an LSD radix sort on (key, position) pairs, 11 bits a pass (six
 * passes cover 64 bits), skipping every pass whose digit is the same for
 * all keys (common when keys share high bits); stable, so repeated keys
 * keep the caller's order.  Small inputs use insertion sort.  O(n) extra
 * memory for a second pair array.
 */
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define BITS 11
#define BUCKETS (1u << BITS)

typedef struct pair {
    uint64_t key;
    size_t pos;
} pair;

static void insertion(pair *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        pair x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1].key > x.key) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* One counting pass on digit `shift` from src to dst; returns 0 if it was
 * skipped (every key has the same digit), 1 if dst now holds the result. */
static int pass(const pair *src, pair *dst, size_t n, int shift, size_t *count)
{
    memset(count, 0, BUCKETS * sizeof(size_t));
    for (size_t i = 0; i < n; i++) count[(src[i].key >> shift) & (BUCKETS - 1)]++;
    if (count[(src[0].key >> shift) & (BUCKETS - 1)] == n) return 0;
    size_t sum = 0;
    for (size_t b = 0; b < BUCKETS; b++) {
        size_t c = count[b];
        count[b] = sum;
        sum += c;
    }
    for (size_t i = 0; i < n; i++) dst[count[(src[i].key >> shift) & (BUCKETS - 1)]++] = src[i];
    return 1;
}

int psi_sort_keys(const uint64_t *keys, size_t n, uint64_t *sorted, size_t *perm)
{
    pair *a = malloc(PSI_MAX(n, 1) * sizeof(pair)), *b = NULL;
    size_t *count = NULL;
    if (!a) return PS_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) a[i] = (pair){keys[i], i};
    if (n < 64) {
        insertion(a, n);
    } else {
        b = malloc(n * sizeof(pair));
        count = malloc(BUCKETS * sizeof(size_t));
        if (!b || !count) {
            free(a);
            free(b);
            free(count);
            return PS_ERR_NOMEM;
        }
        for (int shift = 0; shift < 64; shift += BITS)
            if (pass(a, b, n, shift, count)) {
                pair *t = a;
                a = b;
                b = t;
            }
    }
    for (size_t i = 0; i < n; i++) {
        sorted[i] = a[i].key;
        perm[i] = a[i].pos;
    }
    free(a);
    free(b);
    free(count);
    return PS_OK;
}
