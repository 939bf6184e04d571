/*
 * keys.c -- the examples of pslinear once read (data.h): the lin_data
 * container (flat CSR arrays that grow by doubling), the sorted distinct keys
 * of a shard (the keys whose weights a worker pulls), the column of every
 * entry in that key list, and the export of a lin_data as libsvm lines for
 * other tools (liblinear-train).  The reader (data.c) fills a lin_data
 * through lin_data_append.
 *
 * Design: values are stored only once some value differs from 1, so binary
 * data costs 8 bytes per feature.  Distinct keys go through an
 * open-addressing hash map u64 -> u32 with linear probing, kept at most half
 * full, which stays small (the model, not the data) while the data has
 * millions of entries; key 0 marks an empty slot, so the key 0 itself is held
 * beside the table.  The export folds keys to `bits` bits and sums the values
 * of keys that collide within an example.
 *
 * It must never leave a lin_data inconsistent (after any return,
 * lin_data_free releases everything) and never leak: every buffer it
 * allocates is freed or handed to the caller.  Only libc and the public libps
 * API; it shares nothing with data.c but data.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/ps.h"

#include "data.h"

static int keys_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static size_t grown(size_t cap, size_t need)
{
    size_t n = cap ? cap : 16;

    while (n < need) n *= 2;
    return n;
}

static int realloc_to(void **p, size_t n, size_t elem)
{
    void *q = realloc(*p, n * elem);

    if (q == NULL) return PS_ERR_NOMEM;
    *p = q;
    return 0;
}

/* ---- the container ----------------------------------------------------------- */

void lin_data_init(lin_data *d) { memset(d, 0, sizeof(*d)); }

void lin_data_clear(lin_data *d)
{
    d->n = d->nnz = 0;
    d->lines = d->bad_lines = 0;
}

void lin_data_free(lin_data *d)
{
    free(d->labels);
    free(d->offsets);
    free(d->keys);
    free(d->vals);
    lin_data_init(d);
}

void lin_data_example(const lin_data *d, size_t i, lin_example *ex)
{
    uint64_t a = d->offsets[i];

    ex->label = d->labels[i];
    ex->nfeat = (uint32_t)(d->offsets[i + 1] - a);
    ex->keys = d->keys + a;
    ex->vals = d->vals ? d->vals + a : NULL;
}

/* Room for one more example of nf features.  A cap grows only once every
 * array it sizes has grown, so a failure leaves d consistent. */
static int reserve(lin_data *d, size_t nf)
{
    if (d->n + 1 > d->cap_n) {
        size_t c = grown(d->cap_n, d->n + 1);
        if (realloc_to((void **)&d->labels, c, sizeof(float)) != 0 ||
            realloc_to((void **)&d->offsets, c + 1, sizeof(uint64_t)) != 0)
            return PS_ERR_NOMEM;
        d->cap_n = c;
    }
    if (d->nnz + nf > d->cap_nnz) {
        size_t c = grown(d->cap_nnz, d->nnz + nf);
        if (realloc_to((void **)&d->keys, c, sizeof(uint64_t)) != 0 ||
            (d->vals && realloc_to((void **)&d->vals, c, sizeof(float)) != 0))
            return PS_ERR_NOMEM;
        d->cap_nnz = c;
    }
    return 0;
}

/* Store values from now on: every entry so far was 1. */
static int start_vals(lin_data *d)
{
    float *v = malloc((d->cap_nnz ? d->cap_nnz : 1) * sizeof(*v));

    if (v == NULL) return PS_ERR_NOMEM;
    for (size_t i = 0; i < d->nnz; i++) v[i] = 1.0f;
    d->vals = v;
    return 0;
}

int lin_data_append(lin_data *d, float label, const uint64_t *k, const float *v, size_t nf)
{
    int rv;

    if ((rv = reserve(d, nf)) != 0) return rv;
    for (size_t i = 0; v != NULL && i < nf && d->vals == NULL; i++)
        if (v[i] != 1.0f && (rv = start_vals(d)) != 0) return rv;
    if (nf > 0) memcpy(d->keys + d->nnz, k, nf * sizeof(*k));
    for (size_t i = 0; d->vals != NULL && i < nf; i++) d->vals[d->nnz + i] = v ? v[i] : 1.0f;
    d->offsets[d->n] = d->nnz;
    d->labels[d->n++] = label;
    d->nnz += nf;
    d->offsets[d->n] = d->nnz;
    return 0;
}

/* ---- distinct keys: an open-addressing hash map u64 -> u32 ---------------------- */

typedef struct kmap {
    uint64_t *keys;   /* 0 = empty slot; key 0 itself lives in has0/val0 */
    uint32_t *vals;
    unsigned bits;
    size_t n;         /* nonzero keys stored */
    int has0;
    uint32_t val0;
} kmap;

static size_t kmap_slot(const kmap *m, uint64_t k)
{
    return (size_t)((k * 0x9E3779B97F4A7C15ull) >> (64 - m->bits));
}

static int kmap_init(kmap *m, unsigned bits)
{
    memset(m, 0, sizeof(*m));
    m->bits = bits < 4 ? 4 : bits;
    m->keys = calloc((size_t)1 << m->bits, sizeof(*m->keys));
    m->vals = malloc(((size_t)1 << m->bits) * sizeof(*m->vals));
    return m->keys && m->vals ? 0 : PS_ERR_NOMEM;
}

static void kmap_free(kmap *m)
{
    free(m->keys);
    free(m->vals);
}

/* Slot of nonzero k: where it is, or the empty slot where it would go. */
static size_t kmap_find(const kmap *m, uint64_t k)
{
    size_t mask = ((size_t)1 << m->bits) - 1, i = kmap_slot(m, k);

    while (m->keys[i] != 0 && m->keys[i] != k) i = (i + 1) & mask;
    return i;
}

static int kmap_grow(kmap *m)
{
    kmap bigger;
    size_t cap = (size_t)1 << m->bits;

    if (kmap_init(&bigger, m->bits + 1) != 0) return kmap_free(&bigger), PS_ERR_NOMEM;
    for (size_t i = 0; i < cap; i++) {
        if (m->keys[i] == 0) continue;
        size_t j = kmap_find(&bigger, m->keys[i]);
        bigger.keys[j] = m->keys[i];
        bigger.vals[j] = m->vals[i];
    }
    bigger.n = m->n;
    bigger.has0 = m->has0;
    bigger.val0 = m->val0;
    kmap_free(m);
    *m = bigger;
    return 0;
}

/* Insert k -> v unless k is there already. */
static int kmap_put(kmap *m, uint64_t k, uint32_t v)
{
    size_t i;

    if (k == 0) {
        if (!m->has0) m->has0 = 1, m->val0 = v;
        return 0;
    }
    if (2 * (m->n + 1) > ((size_t)1 << m->bits) && kmap_grow(m) != 0) return PS_ERR_NOMEM;
    i = kmap_find(m, k);
    if (m->keys[i] == 0) {
        m->keys[i] = k;
        m->vals[i] = v;
        m->n++;
    }
    return 0;
}

static const uint32_t *kmap_get(const kmap *m, uint64_t k)
{
    size_t i;

    if (k == 0) return m->has0 ? &m->val0 : NULL;
    i = kmap_find(m, k);
    return m->keys[i] == k ? &m->vals[i] : NULL;
}

int lin_data_unique_keys(const lin_data *d, uint64_t **keys, size_t *n)
{
    kmap m;
    size_t cap, k = 0;
    uint64_t *out;

    *keys = NULL;
    *n = 0;
    if (kmap_init(&m, 10) != 0) return kmap_free(&m), PS_ERR_NOMEM;
    for (size_t j = 0; j < d->nnz; j++)
        if (kmap_put(&m, d->keys[j], 0) != 0) return kmap_free(&m), PS_ERR_NOMEM;
    cap = (size_t)1 << m.bits;
    if ((out = malloc((m.n + 1) * sizeof(*out))) == NULL) return kmap_free(&m), PS_ERR_NOMEM;
    if (m.has0) out[k++] = 0;
    for (size_t i = 0; i < cap; i++)
        if (m.keys[i] != 0) out[k++] = m.keys[i];
    kmap_free(&m);
    qsort(out, k, sizeof(*out), keys_cmp_u64);
    *keys = out;
    *n = k;
    return 0;
}

int lin_data_columns(const lin_data *d, const uint64_t *uniq, size_t nuniq, uint32_t *cols)
{
    kmap m;
    unsigned bits = 4;
    int rv = 0;

    if (nuniq > UINT32_MAX) return PS_ERR_INVAL;
    while (((size_t)1 << bits) < 2 * nuniq) bits++;
    if (kmap_init(&m, bits) != 0) return kmap_free(&m), PS_ERR_NOMEM;
    for (size_t i = 0; i < nuniq && rv == 0; i++) rv = kmap_put(&m, uniq[i], (uint32_t)i);
    for (size_t j = 0; j < d->nnz && rv == 0; j++) {
        const uint32_t *c = kmap_get(&m, d->keys[j]);
        if (c == NULL) rv = PS_ERR_NOTFOUND;
        else cols[j] = *c;
    }
    kmap_free(&m);
    return rv;
}

/* ---- export for other tools ------------------------------------------------------ */

typedef struct lin_pair {
    uint64_t idx;
    float val;
} lin_pair;

static int cmp_pair(const void *a, const void *b)
{
    return keys_cmp_u64(&((const lin_pair *)a)->idx, &((const lin_pair *)b)->idx);
}

/* One example as a libsvm line; p has room for its features. */
static void write_example(const lin_example *ex, lin_pair *p, uint64_t mask, FILE *f)
{
    for (uint32_t j = 0; j < ex->nfeat; j++) {
        p[j].idx = (ex->keys[j] & mask) + 1;
        p[j].val = ex->vals ? ex->vals[j] : 1.0f;
    }
    qsort(p, ex->nfeat, sizeof(*p), cmp_pair);
    fputs(ex->label > 0 ? "+1" : "-1", f);
    for (uint32_t j = 0; j < ex->nfeat; j++) {
        float v = p[j].val;
        while (j + 1 < ex->nfeat && p[j + 1].idx == p[j].idx) v += p[++j].val;
        fprintf(f, " %llu:%.9g", (unsigned long long)p[j].idx, (double)v);
    }
    fputc('\n', f);
}

int lin_data_write_libsvm(const lin_data *d, FILE *f, unsigned bits)
{
    lin_pair *p = NULL;
    size_t cap = 0;
    lin_example ex;

    if (bits < 1 || bits > 63) return PS_ERR_INVAL;
    for (size_t i = 0; i < d->n; i++) {
        lin_data_example(d, i, &ex);
        if (ex.nfeat > cap) {
            cap = grown(cap, ex.nfeat);
            if (realloc_to((void **)&p, cap, sizeof(*p)) != 0) return free(p), PS_ERR_NOMEM;
        }
        write_example(&ex, p, ((uint64_t)1 << bits) - 1, f);
    }
    free(p);
    return fflush(f) != 0 || ferror(f) ? PS_ERR_SYS : 0;
}
