/*
 * eval.c -- what a pslda worker does with a trained model: held-out
 * perplexity by document completion (on the sweeps that
 * evaluate, with --test) and the model files
 * (--save, "save" call, on worker 0).
 *
 * Document completion (Wallach et al. 2009): for each test document, the
 * tokens at even positions estimate its topic mix theta with the
 * topic-word matrix phi_kw = (n_wk + beta) / (n_k + V beta) fixed, by
 * --fold-iters rounds of the fixed point theta_k = (alpha + sum_i p(k | w_i))
 * / (K alpha + N_even) with p(k | w_i) proportional to theta_k phi_kw_i; the
 * tokens at odd positions are then scored, log sum_k theta_k phi_kw.
 * bench/lda/quality.py computes the same estimate from a saved matrix, so its
 * numbers and these agree.  Documents with fewer than 2 known words are
 * skipped and counted.
 *
 * Files of --save PREFIX: PREFIX.topics.txt (per topic its share of tokens
 * and its --top most probable words) and PREFIX.phi.tsv (a header line
 * "word<TAB>t0<TAB>..." then, per word of the vocabulary in id order, the
 * word and phi_kw for every topic: the format quality.py reads).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lda.h"

#define CHUNK 4096

/* phi[i * K + k] for the words ids[0..n), and the totals into nk. */
static int pull_phi(lda_worker *lw, const uint32_t *ids, size_t n, float *phi, int64_t *nk)
{
    size_t K = (size_t)lw->cfg->K;
    int rv = lda_pull_rows(lw, NULL, 0, NULL, nk);
    double vb = lw->cfg->beta * (double)lw->voc.n;
    for (size_t s = 0; rv == 0 && s < n; s += CHUNK) {
        size_t m = n - s < CHUNK ? n - s : CHUNK;
        if ((rv = lda_pull_rows(lw, ids + s, m, lw->buf, NULL)) != 0) break;
        for (size_t i = 0; i < m; i++)
            for (size_t k = 0; k < K; k++) {
                int64_t c = lw->buf[i * K + k], t = nk[k];
                phi[(s + i) * K + k] = (float)(((c > 0 ? (double)c : 0) + lw->cfg->beta) /
                                               ((t > 0 ? (double)t : 0) + vb));
            }
    }
    return rv;
}

/* Fold in one document's even tokens (rows of phi: r[0..n)), score its odd
 * ones; returns the log-likelihood, *m the tokens scored. */
static double complete_doc(const lda_cfg *c, const float *phi, const size_t *r, size_t n,
                           double *theta, double *acc, double *p, size_t *m)
{
    size_t K = (size_t)c->K, ne = (n + 1) / 2;
    for (size_t k = 0; k < K; k++) theta[k] = 1.0 / (double)K;
    for (int it = 0; it < c->fold_iters; it++) {
        memset(acc, 0, K * sizeof *acc);
        for (size_t i = 0; i < n; i += 2) {
            const float *f = phi + r[i] * K;
            double z = 0;
            for (size_t k = 0; k < K; k++) z += p[k] = theta[k] * f[k];
            for (size_t k = 0; k < K; k++) acc[k] += p[k] / z;
        }
        for (size_t k = 0; k < K; k++)
            theta[k] = (c->alpha + acc[k]) / ((double)K * c->alpha + (double)ne);
    }
    double ll = 0;
    *m = 0;
    for (size_t i = 1; i < n; i += 2, (*m)++) {
        const float *f = phi + r[i] * K;
        double z = 0;
        for (size_t k = 0; k < K; k++) z += theta[k] * f[k];
        ll += log(z);
    }
    return ll;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Held-out log-likelihood of this worker's test shard into *h. */
int lda_heldout(lda_worker *lw, lda_hrep *h)
{
    const lda_docs *d = &lw->te;
    size_t K = (size_t)lw->cfg->K, nu = 0;
    uint32_t *ids = malloc((d->ntok + 1) * sizeof *ids);
    size_t *r = malloc((d->ntok + 1) * sizeof *r);
    int64_t *nk = malloc(K * sizeof *nk);
    double *sc = malloc(3 * K * sizeof *sc);
    if (!ids || !r || !nk || !sc) return free(ids), free(r), free(nk), free(sc), PS_ERR_NOMEM;
    if (d->ntok) memcpy(ids, d->w, d->ntok * sizeof *ids);
    qsort(ids, d->ntok, sizeof *ids, cmp_u32);
    for (size_t i = 0; i < d->ntok; i++)
        if (nu == 0 || ids[nu - 1] != ids[i]) ids[nu++] = ids[i];
    for (size_t i = 0; i < d->ntok; i++)
        r[i] = (size_t)((uint32_t *)bsearch(&d->w[i], ids, nu, sizeof *ids, cmp_u32) - ids);
    float *phi = malloc((nu * K + 1) * sizeof *phi);
    int rv = phi ? pull_phi(lw, ids, nu, phi, nk) : PS_ERR_NOMEM;
    memset(h, 0, sizeof *h);
    h->skipped = (double)d->empty;
    for (size_t i = 0; rv == 0 && i < d->n; i++) {
        size_t n = d->off[i + 1] - d->off[i], m;
        if (n < 2) {
            h->skipped++;
            continue;
        }
        h->ll += complete_doc(lw->cfg, phi, r + d->off[i], n, sc, sc + K, sc + 2 * K, &m);
        h->tokens += (double)m;
        h->docs++;
    }
    free(ids), free(r), free(nk), free(sc), free(phi);
    return rv;
}

/* ---- model files ------------------------------------------------------------------------- */

typedef struct topw { float p; uint32_t w; } topw;
static int by_p(const void *a, const void *b)
{
    float x = ((const topw *)a)->p, y = ((const topw *)b)->p;
    return x > y ? -1 : x < y;
}

static int write_topics(lda_worker *lw, const char *path, const float *phi, const int64_t *nk)
{
    size_t K = (size_t)lw->cfg->K, V = lw->voc.n, top = (size_t)lw->cfg->top;
    FILE *f = fopen(path, "w");
    topw *t = malloc((V + 1) * sizeof *t);
    if (!f || !t) return free(t), f ? fclose(f) : 0, PS_ERR_SYS;
    double tot = 0;
    for (size_t k = 0; k < K; k++) tot += (double)(nk[k] > 0 ? nk[k] : 0);
    for (size_t k = 0; k < K; k++) {
        for (size_t w = 0; w < V; w++) t[w] = (topw){phi[w * K + k], (uint32_t)w};
        qsort(t, V, sizeof *t, by_p);
        fprintf(f, "topic %zu (%.2f%% of tokens):", k, tot > 0 ? 100.0 * (double)nk[k] / tot : 0);
        for (size_t i = 0; i < top && i < V; i++) fprintf(f, " %s", lw->voc.words[t[i].w]);
        fputc('\n', f);
    }
    free(t);
    return fclose(f) == 0 ? 0 : PS_ERR_SYS;
}

static int write_phi(lda_worker *lw, const char *path, const float *phi)
{
    size_t K = (size_t)lw->cfg->K;
    FILE *f = fopen(path, "w");
    if (!f) return PS_ERR_SYS;
    fputs("word", f);
    for (size_t k = 0; k < K; k++) fprintf(f, "\tt%zu", k);
    fputc('\n', f);
    for (size_t w = 0; w < lw->voc.n; w++) {
        fputs(lw->voc.words[w], f);
        for (size_t k = 0; k < K; k++) fprintf(f, "\t%.6g", phi[w * K + k]);
        fputc('\n', f);
    }
    return fclose(f) == 0 ? 0 : PS_ERR_SYS;
}

int lda_save_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                  size_t *reply_len)
{
    (void)caller, (void)reply, (void)reply_len;
    lda_worker *lw = arg;
    char prefix[4096], path[4200];
    if (len == 0 || len >= sizeof prefix) return PS_ERR_INVAL;
    memcpy(prefix, req, len);
    prefix[len] = 0;
    size_t K = (size_t)lw->cfg->K, V = lw->voc.n;
    uint32_t *ids = malloc((V + 1) * sizeof *ids);
    float *phi = malloc((V * K + 1) * sizeof *phi);
    int64_t *nk = malloc(K * sizeof *nk);
    int rv = ids && phi && nk ? 0 : PS_ERR_NOMEM;
    for (size_t w = 0; rv == 0 && w < V; w++) ids[w] = (uint32_t)w;
    if (rv == 0) rv = pull_phi(lw, ids, V, phi, nk);
    snprintf(path, sizeof path, "%s.topics.txt", prefix);
    if (rv == 0 && (rv = write_topics(lw, path, phi, nk)) != 0)
        fprintf(stderr, "pslda: cannot write %s: %s\n", path, strerror(errno));
    snprintf(path, sizeof path, "%s.phi.tsv", prefix);
    if (rv == 0 && (rv = write_phi(lw, path, phi)) != 0)
        fprintf(stderr, "pslda: cannot write %s: %s\n", path, strerror(errno));
    free(ids), free(phi), free(nk);
    return rv;
}
