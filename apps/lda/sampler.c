/*
 * sampler.c -- the SparseLDA sampler (Yao, Mimno and McCallum, KDD 2009) of
 * pslda, over one block of words held in local dense rows.
 *
 * Collapsed Gibbs sampling draws a token's topic k with weight
 *   (alpha + n_dk) (beta + n_wk) / (V beta + n_k)
 * which SparseLDA splits into three buckets:
 *   s = sum_k alpha beta / (V beta + n_k)            (all topics, kept up to date)
 *   r = sum_{k: n_dk > 0} n_dk beta / (V beta + n_k) (the document's topics)
 *   q = sum_{k: n_wk > 0} c_k n_wk, c_k = (alpha + n_dk) / (V beta + n_k)
 * so a draw costs the number of topics of the word and of the document, not
 * K, and is exact (no Metropolis-Hastings chain to mix).  We chose it over
 * LightLDA's alias tables + MH because pslda refreshes its counts from the
 * servers every sweep anyway, K is in the tens or hundreds here, where the
 * sparse buckets are already a small fraction of K, and an exact sampler
 * leaves one less thing to tune; alias tables pay off at K in the thousands.
 *
 * Counts a worker samples with are its pulled snapshot plus its own changes
 * since; under eventual consistency they may lag, so a working count that
 * would go below zero stays at zero, while the delta (what is pushed) always
 * records the exact change.  Never: a NaN weight (every denominator is at
 * least V beta > 0), a topic outside [0, K).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lda.h"

uint64_t lda_rand(uint64_t st[2])
{
    uint64_t a = st[0], b = st[1], r = a + b;
    b ^= a;
    st[0] = ((a << 24) | (a >> 40)) ^ b ^ (b << 16);
    st[1] = (b << 37) | (b >> 27);
    return r;
}

double lda_uniform(uint64_t st[2]) { return (double)(lda_rand(st) >> 11) * 0x1.0p-53; }

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int lda_sampler_init(lda_sampler *s, int K, double alpha, double beta, size_t V, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->K = K, s->alpha = alpha, s->beta = beta, s->vbeta = beta * (double)V;
    s->nk = calloc((size_t)K, sizeof *s->nk);
    s->dnk = calloc((size_t)K, sizeof *s->dnk);
    s->ndk = calloc((size_t)K, sizeof *s->ndk);
    s->dnz = calloc((size_t)K, sizeof *s->dnz);
    s->dpos = calloc((size_t)K, sizeof *s->dpos);
    s->ck = calloc((size_t)K, sizeof *s->ck);
    s->pq = calloc((size_t)K, sizeof *s->pq);
    s->rng[0] = splitmix(&seed);
    s->rng[1] = splitmix(&seed) | 1;
    return s->nk && s->dnk && s->ndk && s->dnz && s->dpos && s->ck && s->pq ? 0 : -1;
}

void lda_sampler_free(lda_sampler *s)
{
    free(s->nk), free(s->dnk), free(s->ndk), free(s->dnz), free(s->dpos), free(s->ck);
    free(s->pq);
    memset(s, 0, sizeof *s);
}

void lda_sampler_set_totals(lda_sampler *s, const int64_t *nk)
{
    for (int k = 0; k < s->K; k++) {
        s->nk[k] = nk[k] > 0 ? (int32_t)nk[k] : 0;
        s->dnk[k] = 0;
        s->ck[k] = s->alpha / (s->vbeta + s->nk[k]);
    }
}

int lda_block_init(lda_block *b, int K, size_t nw)
{
    size_t n = nw * (size_t)K + 1;
    b->K = K, b->nw = nw;
    b->cnt = malloc(n * sizeof *b->cnt);
    b->delta = malloc(n * sizeof *b->delta);
    b->nzt = malloc(n * sizeof *b->nzt);
    b->nzpos = malloc(n * sizeof *b->nzpos);
    b->nnz = malloc((nw + 1) * sizeof *b->nnz);
    return b->cnt && b->delta && b->nzt && b->nzpos && b->nnz ? 0 : -1;
}

void lda_block_free(lda_block *b)
{
    free(b->cnt), free(b->delta), free(b->nzt), free(b->nzpos), free(b->nnz);
    memset(b, 0, sizeof *b);
}

void lda_block_load(lda_block *b, const int64_t *rows)
{
    int K = b->K;
    for (size_t w = 0; w < b->nw; w++) {
        int32_t *c = b->cnt + w * (size_t)K;
        uint16_t *t = b->nzt + w * (size_t)K, *p = b->nzpos + w * (size_t)K;
        uint16_t n = 0;
        for (int k = 0; k < K; k++) {
            int64_t v = rows[w * (size_t)K + (size_t)k];
            c[k] = v > 0 ? (int32_t)v : 0;
            if (c[k] > 0) p[k] = n, t[n++] = (uint16_t)k;
        }
        b->nnz[w] = n;
    }
    memset(b->delta, 0, b->nw * (size_t)K * sizeof *b->delta);
}

/* Add inc (+1 / -1) to a sparse row's count of topic k, keeping its list of
 * nonzero topics; the count stays >= 0. */
static void row_add(int32_t *c, uint16_t *t, uint16_t *p, uint16_t *n, int k, int inc)
{
    if (inc < 0 && c[k] == 0) return; /* a lagging snapshot: stay at zero */
    c[k] += inc;
    if (inc > 0 && c[k] == 1) {
        p[k] = *n;
        t[(*n)++] = (uint16_t)k;
    } else if (inc < 0 && c[k] == 0) {
        uint16_t last = t[--(*n)];
        t[p[k]] = last;
        p[last] = p[k];
    }
}

void lda_doc_begin(lda_sampler *s, const uint16_t *z, size_t n)
{
    s->ndnz = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t n16 = (uint16_t)s->ndnz;
        row_add(s->ndk, s->dnz, s->dpos, &n16, z[i], 1);
        s->ndnz = n16;
    }
    s->s = s->r = 0;
    for (int k = 0; k < s->K; k++) s->s += s->alpha * s->beta / (s->vbeta + s->nk[k]);
    for (int j = 0; j < s->ndnz; j++) {
        int k = s->dnz[j];
        double den = s->vbeta + s->nk[k];
        s->r += s->ndk[k] * s->beta / den;
        s->ck[k] = (s->alpha + s->ndk[k]) / den;
    }
}

void lda_doc_end(lda_sampler *s)
{
    for (int j = 0; j < s->ndnz; j++) {
        int k = s->dnz[j];
        s->ndk[k] = 0;
        s->ck[k] = s->alpha / (s->vbeta + s->nk[k]);
    }
    s->ndnz = 0;
}

void lda_block_add(lda_sampler *s, lda_block *b, int32_t r, int k, int inc)
{
    size_t o = (size_t)r * (size_t)b->K;
    double den = s->vbeta + s->nk[k];
    s->s -= s->alpha * s->beta / den;
    s->r -= s->ndk[k] * s->beta / den;
    uint16_t n16 = (uint16_t)s->ndnz;
    row_add(s->ndk, s->dnz, s->dpos, &n16, k, inc);
    s->ndnz = n16;
    if (!(inc < 0 && s->nk[k] == 0)) s->nk[k] += inc;
    s->dnk[k] += inc;
    row_add(b->cnt + o, b->nzt + o, b->nzpos + o, &b->nnz[r], k, inc);
    b->delta[o + (size_t)k] += inc;
    den = s->vbeta + s->nk[k];
    s->s += s->alpha * s->beta / den;
    s->r += s->ndk[k] * s->beta / den;
    if (s->r < 0) s->r = 0;
    s->ck[k] = (s->alpha + s->ndk[k]) / den;
}

/* Draw a topic for a token of row r (its old topic already taken out). */
static int draw(lda_sampler *s, const lda_block *b, int32_t r)
{
    size_t o = (size_t)r * (size_t)b->K;
    const int32_t *c = b->cnt + o;
    const uint16_t *t = b->nzt + o;
    int n = b->nnz[r];
    double q = 0;
    for (int j = 0; j < n; j++) q += s->ck[t[j]] * c[t[j]], s->pq[j] = q;
    double u = lda_uniform(s->rng) * (s->s + s->r + q);
    if (u < q) {
        for (int j = 0; j < n; j++)
            if (u < s->pq[j]) return t[j];
        return t[n - 1];
    }
    u -= q;
    if (u < s->r) {
        for (int j = 0; j < s->ndnz; j++) {
            int k = s->dnz[j];
            u -= s->ndk[k] * s->beta / (s->vbeta + s->nk[k]);
            if (u <= 0) return k;
        }
        if (s->ndnz > 0) return s->dnz[s->ndnz - 1];
    }
    u -= s->r;
    for (int k = 0; k < s->K; k++) {
        u -= s->alpha * s->beta / (s->vbeta + s->nk[k]);
        if (u <= 0) return k;
    }
    return s->K - 1;
}

void lda_sample_token(lda_sampler *s, lda_block *b, int32_t r, uint16_t *z)
{
    lda_block_add(s, b, r, *z, -1);
    int k = draw(s, b, r);
    lda_block_add(s, b, r, k, 1);
    *z = (uint16_t)k;
}
