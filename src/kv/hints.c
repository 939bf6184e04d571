/*
 * hints.c -- remembered key lists and their slot hints (hints.h has the
 * design): a small LRU of (length, fingerprint) -> one slot per key.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/hints.h"
#include "kv/store.h"
#include "util/util.h"

#define HINTS_MAX 8
#define HINTS_SLACK ((size_t)1 << 20) /* bytes allowed whatever the store's size */

typedef struct hint_list {
    size_t n;
    uint64_t fp, used; /* used 0: free */
    uint32_t *slot;
} hint_list;

struct psi_hints {
    hint_list lists[HINTS_MAX];
    size_t bytes;
    uint64_t tick;
};

psi_hints *psi_hints_new(void) { return calloc(1, sizeof(psi_hints)); }

void psi_hints_free(psi_hints *h)
{
    if (!h) return;
    for (int i = 0; i < HINTS_MAX; i++) free(h->lists[i].slot);
    free(h);
}

size_t psi_hints_bytes(const psi_hints *h) { return h ? sizeof(*h) + h->bytes : 0; }

static uint64_t fingerprint(const uint64_t *k, size_t n)
{
    size_t step = n / 64 ? n / 64 : 1;
    uint64_t f = psi_mix64(n ^ 0x5bd1e9955bd1e995ULL);
    for (size_t i = 0; i < n; i += step) f = psi_mix64(f ^ k[i]);
    return psi_mix64(f ^ k[n - 1]);
}

static void drop(psi_hints *h, hint_list *l)
{
    h->bytes -= l->n * sizeof(uint32_t);
    free(l->slot);
    memset(l, 0, sizeof(*l));
}

uint32_t *psi_hints_for(psi_hints *h, const uint64_t *keys, size_t n, size_t store_bytes)
{
    if (!h || n < PSI_HINTS_MIN_KEYS) return NULL;
    uint64_t fp = fingerprint(keys, n);
    hint_list *lru = &h->lists[0];
    for (int i = 0; i < HINTS_MAX; i++) {
        hint_list *l = &h->lists[i];
        if (l->used && l->n == n && l->fp == fp) {
            l->used = ++h->tick;
            return l->slot;
        }
        if (l->used < lru->used) lru = l;
    }
    size_t cap = store_bytes / 16 + HINTS_SLACK, bytes = n * sizeof(uint32_t);
    if (bytes > cap) return NULL;
    if (lru->used) drop(h, lru);
    /* make room: the least recently used lists go first */
    while (h->bytes + bytes > cap) {
        hint_list *old = NULL;
        for (int i = 0; i < HINTS_MAX; i++)
            if (h->lists[i].used && (!old || h->lists[i].used < old->used)) old = &h->lists[i];
        drop(h, old);
    }
    if (!(lru->slot = malloc(bytes))) return NULL;
    memset(lru->slot, 0xff, bytes); /* PSI_STORE_NO_HINT */
    lru->n = n;
    lru->fp = fp;
    lru->used = ++h->tick;
    h->bytes += bytes;
    return lru->slot;
}
