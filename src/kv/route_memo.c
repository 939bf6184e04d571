/*
 * route_memo.c -- the memo of sorted key lists of route.h: a worker that
 * hands the same key list over again gets its sorted order back from a
 * compare and two copies instead of a sort.
 *
 * Design: a process-wide table of at most MEMO_MAX remembered lists (the
 * caller's keys, their sorted order and the permutation) and of SEEN_MAX
 * fingerprints of lists seen once, each tagged with its owner (a table)
 * and stamped with a use counter; the least recently used entry makes
 * room.  A fingerprint hashes the length and 64 evenly spaced keys, so it
 * costs nothing next to a sort; it only picks the candidate, and every key
 * is compared before a hit is answered.  Since a sorted order depends on
 * the keys alone, a hit is exact whoever the owner is: the owner only lets
 * a closing table give its memory back.  Lock: one mutex, a leaf; a hit
 * copies under it (psi_route_sort_cached) or takes a reference
 * (psi_route_share: the sorted keys and permutation are reference counted,
 * so a request reads them in place and an eviction only drops the memo's
 * reference), a miss sorts and allocates outside it, and evicted lists are
 * freed after it is released.
 *
 * Never: answer from a list without comparing every key; hold more than
 * PSI_ROUTE_MEMO_BYTES of lists; call out with the lock held.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kv/route.h"
#include "ps/ps.h"
#include "util/util.h"

#define MEMO_MAX 8  /* remembered lists, all owners together */
#define SEEN_MAX 32 /* fingerprints of lists seen once */
#define PER_KEY (2 * sizeof(uint64_t) + sizeof(size_t))

typedef struct memo {
    const void *owner;
    size_t n;
    uint64_t fp, used;
    uint64_t *keys;     /* the caller's order; NULL: the entry is free */
    psi_route_order *o; /* its sorted order, shared with requests (refs) */
} memo;

typedef struct seen {
    const void *owner;
    size_t n;
    uint64_t fp, used; /* used 0: free */
} seen;

static pthread_mutex_t memo_lock = PTHREAD_MUTEX_INITIALIZER;
static memo memos[MEMO_MAX];
static seen seens[SEEN_MAX];
static size_t memo_bytes;
static uint64_t memo_tick;

static uint64_t fingerprint(const uint64_t *k, size_t n)
{
    size_t step = n / 64 ? n / 64 : 1;
    uint64_t h = psi_mix64(n + 0x9e3779b97f4a7c15ULL);
    for (size_t i = 0; i < n; i += step) h = psi_mix64(h ^ k[i]);
    return psi_mix64(h ^ k[n - 1]);
}

void psi_route_release(psi_route_order *o)
{
    if (o && atomic_fetch_sub(&o->refs, 1) == 1) {
        free(o->sorted);
        free(o->perm);
        free(o);
    }
}

static void memo_free(memo *m)
{
    free(m->keys);
    psi_route_release(m->o);
}

/* The remembered list equal to keys[0..n), or NULL (lock held). */
static memo *do_find(const uint64_t *keys, size_t n, uint64_t fp)
{
    for (int i = 0; i < MEMO_MAX; i++) {
        memo *m = &memos[i];
        if (m->keys && m->n == n && m->fp == fp && memcmp(m->keys, keys, n * 8) == 0) return m;
    }
    return NULL;
}

/* Whether (owner, n, fp) was seen before: then it is dropped from the seen
 * set (it is about to be remembered), else it is added (lock held). */
static int do_seen(const void *owner, size_t n, uint64_t fp)
{
    seen *old = &seens[0];
    for (int i = 0; i < SEEN_MAX; i++) {
        seen *s = &seens[i];
        if (s->used && s->owner == owner && s->n == n && s->fp == fp) {
            s->used = 0;
            return 1;
        }
        if (s->used < old->used) old = s;
    }
    *old = (seen){owner, n, fp, ++memo_tick};
    return 0;
}

/* Make room for `bytes` more and a free entry, moving evicted lists to
 * out[] (freed by the caller after unlocking); the free entry (lock held). */
static memo *do_room(size_t bytes, memo *out, int *nout)
{
    for (;;) {
        memo *lru = NULL, *free_one = NULL;
        for (int i = 0; i < MEMO_MAX; i++) {
            if (!memos[i].keys) free_one = &memos[i];
            else if (!lru || memos[i].used < lru->used) lru = &memos[i];
        }
        if (free_one && memo_bytes + bytes <= PSI_ROUTE_MEMO_BYTES) return free_one;
        out[(*nout)++] = *lru;
        memo_bytes -= lru->n * PER_KEY;
        memset(lru, 0, sizeof(*lru));
    }
}

/* Remember the sorted order of keys[0..n) (best effort: no memory, no memo). */
static void remember(const void *owner, const uint64_t *keys, size_t n, uint64_t fp,
                     const uint64_t *sorted, const size_t *perm)
{
    psi_route_order *o = calloc(1, sizeof(*o));
    memo m = {owner, n, fp, 0, malloc(n * 8), o};
    memo evicted[MEMO_MAX];
    int nev = 0;
    if (o) {
        atomic_init(&o->refs, 1);
        o->n = n;
        o->sorted = malloc(n * 8);
        o->perm = malloc(n * sizeof(size_t));
    }
    if (!m.keys || !o || !o->sorted || !o->perm) {
        memo_free(&m);
        return;
    }
    memcpy(m.keys, keys, n * 8);
    memcpy(o->sorted, sorted, n * 8);
    memcpy(o->perm, perm, n * sizeof(size_t));
    o->unique = 1;
    for (size_t i = 1; i < n && o->unique; i++) o->unique = sorted[i] != sorted[i - 1];
    pthread_mutex_lock(&memo_lock);
    memo *slot = do_room(n * PER_KEY, evicted, &nev);
    m.used = ++memo_tick;
    *slot = m;
    memo_bytes += n * PER_KEY;
    pthread_mutex_unlock(&memo_lock);
    for (int i = 0; i < nev; i++) memo_free(&evicted[i]);
}

static int memo_size_ok(size_t n)
{
    return n >= PSI_ROUTE_MEMO_MIN && n <= PSI_ROUTE_MEMO_BYTES / 2 / PER_KEY;
}

psi_route_order *psi_route_share(const uint64_t *keys, size_t n)
{
    if (!memo_size_ok(n)) return NULL;
    uint64_t fp = fingerprint(keys, n);
    pthread_mutex_lock(&memo_lock);
    memo *m = do_find(keys, n, fp);
    psi_route_order *o = m ? m->o : NULL;
    if (o) {
        atomic_fetch_add(&o->refs, 1);
        m->used = ++memo_tick;
    }
    pthread_mutex_unlock(&memo_lock);
    return o;
}

int psi_route_sort_cached(const void *owner, const uint64_t *keys, size_t n, uint64_t *sorted,
                          size_t *perm)
{
    if (!memo_size_ok(n)) return psi_route_sort(keys, n, sorted, perm);
    uint64_t fp = fingerprint(keys, n);
    pthread_mutex_lock(&memo_lock);
    memo *m = do_find(keys, n, fp);
    if (m) {
        memcpy(sorted, m->o->sorted, n * 8);
        memcpy(perm, m->o->perm, n * sizeof(size_t));
        m->used = ++memo_tick;
        pthread_mutex_unlock(&memo_lock);
        return PS_OK;
    }
    int again = do_seen(owner, n, fp);
    pthread_mutex_unlock(&memo_lock);
    int rv = psi_route_sort(keys, n, sorted, perm);
    if (rv == 0 && again) remember(owner, keys, n, fp, sorted, perm);
    return rv;
}

void psi_route_forget(const void *owner)
{
    memo gone[MEMO_MAX];
    int ngone = 0;
    pthread_mutex_lock(&memo_lock);
    for (int i = 0; i < MEMO_MAX; i++)
        if (memos[i].keys && memos[i].owner == owner) {
            gone[ngone++] = memos[i];
            memo_bytes -= memos[i].n * PER_KEY;
            memset(&memos[i], 0, sizeof(memos[i]));
        }
    for (int i = 0; i < SEEN_MAX; i++)
        if (seens[i].owner == owner) memset(&seens[i], 0, sizeof(seens[i]));
    pthread_mutex_unlock(&memo_lock);
    for (int i = 0; i < ngone; i++) memo_free(&gone[i]);
}
