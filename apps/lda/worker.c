/*
 * worker.c -- a pslda worker: its shard of documents and their topics, the
 * sweeps, held-out evaluation and the model files.
 *
 * Setup draws every token's first topic at random (seeded by --seed and the
 * rank) and pushes the counts.  A sweep ("sweep" call from the scheduler)
 * pulls the topic totals, then for each block of the shard's words (the
 * local vocabulary cut into --blocks ranges, so that only one block of rows
 * is in memory): pulls its rows of word-topic counts, resamples, in every
 * document, the tokens of those words (SparseLDA, sampler.c), and pushes the
 * differences of the rows it changed without waiting for them.  The next
 * pull of a table waits for this worker's previous push to it (a task
 * dependency), so a worker always sees its own changes; other workers'
 * changes arrive when they arrive (eventual consistency; the scheduler's
 * --tau bounds how far the workers drift apart in sweeps).
 *
 * Never: a push of anything but differences (so the servers' sums are exact
 * under any staleness, drops or duplicates), a block of rows larger than the
 * largest block.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lda.h"

double lda_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorted distinct word ids of docs into *out (malloc'ed), *n of them. */
static int distinct_words(const lda_docs *d, uint32_t **out, size_t *n)
{
    uint32_t *w = malloc((d->ntok + 1) * sizeof *w);
    if (!w) return PS_ERR_NOMEM;
    if (d->ntok) memcpy(w, d->w, d->ntok * sizeof *w);
    qsort(w, d->ntok, sizeof *w, cmp_u32);
    size_t u = 0;
    for (size_t i = 0; i < d->ntok; i++)
        if (u == 0 || w[u - 1] != w[i]) w[u++] = w[i];
    *out = w;
    *n = u;
    return 0;
}

/* Local index of word id w in the sorted lw[0..n). */
static size_t local_index(const uint32_t *lw, size_t n, uint32_t w)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t m = (lo + hi) / 2;
        if (lw[m] < w) lo = m + 1;
        else hi = m;
    }
    return lo;
}

int lda_pull_rows(lda_worker *lw, const uint32_t *ids, size_t nw, int64_t *rows, int64_t *nk)
{
    for (size_t i = 0; i < nw; i++) lw->keys[i] = ps_hash_key(ids[i]);
    ps_task_opts o = {.deps = &lw->last_push[0], .ndeps = lw->last_push[0] >= 0};
    int64_t a = nw ? ps_pull(lw->wt, lw->keys, nw, rows, &o) : 0;
    uint64_t tk = LDA_TOTALS_KEY;
    ps_task_opts ot = {.deps = &lw->last_push[1], .ndeps = lw->last_push[1] >= 0};
    int64_t b = nk ? ps_pull(lw->tt, &tk, 1, nk, &ot) : 0;
    double t0 = lda_now();
    int rv = a < 0 ? (int)a : b < 0 ? (int)b : 0;
    if (rv == 0 && nw) rv = ps_wait(lw->wt, a);
    if (rv == 0 && nk) rv = ps_wait(lw->tt, b);
    lw->wait_s += lda_now() - t0;
    return rv;
}

/* Push the rows of the block's words with a nonzero delta (rows from local
 * word index lo on), and remember the task. */
static int push_block(lda_worker *lw, size_t lo)
{
    const lda_block *b = &lw->blk;
    size_t K = (size_t)b->K, n = 0;
    for (size_t r = 0; r < b->nw; r++) {
        const int32_t *d = b->delta + r * K;
        size_t k = 0;
        while (k < K && d[k] == 0) k++;
        if (k == K) continue;
        for (k = 0; k < K; k++) lw->buf[n * K + k] = d[k];
        lw->keys[n++] = ps_hash_key(lw->lw[lo + r]);
    }
    if (n == 0) return 0;
    int64_t ts = ps_push(lw->wt, lw->keys, n, lw->buf, NULL);
    if (ts < 0) return (int)ts;
    lw->last_push[0] = ts;
    return 0;
}

static int push_totals(lda_worker *lw, const int64_t *nk)
{
    uint64_t tk = LDA_TOTALS_KEY;
    int64_t ts = ps_push(lw->tt, &tk, 1, nk, NULL);
    if (ts < 0) return (int)ts;
    lw->last_push[1] = ts;
    return 0;
}

/* ---- setup --------------------------------------------------------------------------- */

/* Order each document's tokens by block (a counting sort per document). */
static int order_tokens(lda_worker *lw, const int32_t *blk_of)
{
    const lda_docs *d = &lw->tr;
    size_t B = (size_t)lw->cfg->blocks;
    lw->tokord = malloc((d->ntok + 1) * sizeof *lw->tokord);
    lw->dboff = malloc((d->n * (B + 1) + 1) * sizeof *lw->dboff);
    if (!lw->tokord || !lw->dboff) return PS_ERR_NOMEM;
    for (size_t i = 0; i < d->n; i++) {
        size_t *o = lw->dboff + i * (B + 1);
        memset(o, 0, (B + 1) * sizeof *o);
        for (size_t j = d->off[i]; j < d->off[i + 1]; j++) o[blk_of[j] + 1]++;
        o[0] = d->off[i];
        for (size_t b = 1; b <= B; b++) o[b] += o[b - 1];
        size_t fill[B + 1];
        memcpy(fill, o, (B + 1) * sizeof *o);
        for (size_t j = d->off[i]; j < d->off[i + 1]; j++) lw->tokord[fill[blk_of[j]]++] = j;
    }
    return 0;
}

/* Local vocabulary, blocks, rows of tokens, token order. */
static int index_shard(lda_worker *lw)
{
    lda_docs *d = &lw->tr;
    int B = lw->cfg->blocks, rv = distinct_words(d, &lw->lw, &lw->nlw);
    if (rv != 0) return rv;
    lw->bstart = malloc(((size_t)B + 1) * sizeof *lw->bstart);
    lw->row = malloc((d->ntok + 1) * sizeof *lw->row);
    int32_t *blk_of = malloc((d->ntok + 1) * sizeof *blk_of);
    if (!lw->bstart || !lw->row || !blk_of) return free(blk_of), PS_ERR_NOMEM;
    for (int b = 0; b <= B; b++) lw->bstart[b] = (int32_t)((size_t)b * lw->nlw / (size_t)B);
    for (size_t i = 0; i < d->ntok; i++) {
        int32_t li = (int32_t)local_index(lw->lw, lw->nlw, d->w[i]), b = 0;
        while (li >= lw->bstart[b + 1]) b++;
        blk_of[i] = b;
        lw->row[i] = li - lw->bstart[b];
    }
    rv = order_tokens(lw, blk_of);
    free(blk_of);
    return rv;
}

/* Random first topics; push the counts they make, block by block. */
static int init_topics(lda_worker *lw)
{
    lda_docs *d = &lw->tr;
    size_t K = (size_t)lw->cfg->K;
    int64_t *nk = calloc(K, sizeof *nk);
    if (!nk) return PS_ERR_NOMEM;
    for (size_t i = 0; i < d->ntok; i++) {
        d->z[i] = (uint16_t)(lda_rand(lw->smp.rng) % K);
        nk[d->z[i]]++;
    }
    int rv = 0;
    for (int b = 0; rv == 0 && b < lw->cfg->blocks; b++) {
        memset(lw->blk.delta, 0, lw->blk.nw * K * sizeof *lw->blk.delta);
        for (size_t di = 0; di < d->n; di++)
            for (size_t j = lw->dboff[di * ((size_t)lw->cfg->blocks + 1) + (size_t)b];
                 j < lw->dboff[di * ((size_t)lw->cfg->blocks + 1) + (size_t)b + 1]; j++) {
                size_t t = lw->tokord[j];
                lw->blk.delta[(size_t)lw->row[t] * K + d->z[t]]++;
            }
        size_t nw = (size_t)(lw->bstart[b + 1] - lw->bstart[b]);
        size_t save = lw->blk.nw;
        lw->blk.nw = nw;
        rv = push_block(lw, (size_t)lw->bstart[b]);
        lw->blk.nw = save;
    }
    if (rv == 0) rv = push_totals(lw, nk);
    free(nk);
    if (rv == 0) rv = ps_wait_all(lw->wt);
    if (rv == 0) rv = ps_wait_all(lw->tt);
    return rv;
}

int lda_worker_setup(lda_worker *lw)
{
    const lda_cfg *c = lw->cfg;
    lw->last_push[0] = lw->last_push[1] = -1;
    int rv = index_shard(lw);
    size_t maxw = 0;
    for (int b = 0; rv == 0 && b < c->blocks; b++)
        if ((size_t)(lw->bstart[b + 1] - lw->bstart[b]) > maxw)
            maxw = (size_t)(lw->bstart[b + 1] - lw->bstart[b]);
    if (rv == 0 && lda_sampler_init(&lw->smp, c->K, c->alpha, c->beta, lw->voc.n,
                                    c->seed * 1000003ULL + (uint64_t)ps_my_rank()) != 0)
        rv = PS_ERR_NOMEM;
    if (rv == 0 && lda_block_init(&lw->blk, c->K, maxw) != 0) rv = PS_ERR_NOMEM;
    size_t cap = maxw > 4096 ? maxw : 4096; /* test and save pull up to 4096 rows */
    if (rv == 0 && !(lw->buf = malloc((cap * (size_t)c->K + 1) * sizeof *lw->buf)))
        rv = PS_ERR_NOMEM;
    if (rv == 0 && !(lw->keys = malloc((cap + 1) * sizeof *lw->keys))) rv = PS_ERR_NOMEM;
    if (rv == 0) rv = init_topics(lw);
    return rv;
}

/* ---- sweeps --------------------------------------------------------------------------- */

/* Resample the tokens of block b in every document. */
static void sample_block(lda_worker *lw, int b)
{
    lda_docs *d = &lw->tr;
    size_t B1 = (size_t)lw->cfg->blocks + 1;
    for (size_t i = 0; i < d->n; i++) {
        size_t s = lw->dboff[i * B1 + (size_t)b], e = lw->dboff[i * B1 + (size_t)b + 1];
        if (s == e) continue;
        lda_doc_begin(&lw->smp, d->z + d->off[i], d->off[i + 1] - d->off[i]);
        for (size_t j = s; j < e; j++) {
            size_t t = lw->tokord[j];
            lda_sample_token(&lw->smp, &lw->blk, lw->row[t], &d->z[t]);
        }
        lda_doc_end(&lw->smp);
    }
}

/* The document part of the collapsed log-likelihood, summed over the shard:
 * sum_d [lgG(Ka) - lgG(Ka + N_d) + sum_k (lgG(a + n_dk) - lgG(a))]. */
static double doc_loglik(lda_worker *lw)
{
    const lda_docs *d = &lw->tr;
    int K = lw->cfg->K;
    double a = lw->cfg->alpha, ll = 0, lga = lgamma(a), lgka = lgamma(K * a);
    int32_t *n = lw->smp.ndk; /* zero between documents */
    for (size_t i = 0; i < d->n; i++) {
        size_t s = d->off[i], e = d->off[i + 1];
        ll += lgka - lgamma(K * a + (double)(e - s));
        for (size_t j = s; j < e; j++) n[d->z[j]]++;
        for (size_t j = s; j < e; j++)
            if (n[d->z[j]] > 0) {
                ll += lgamma(a + n[d->z[j]]) - lga;
                n[d->z[j]] = 0;
            }
    }
    return ll;
}

static int sweep(lda_worker *lw)
{
    int K = lw->cfg->K, rv;
    int64_t *nk = malloc((size_t)K * sizeof *nk);
    if (!nk) return PS_ERR_NOMEM;
    if ((rv = lda_pull_rows(lw, NULL, 0, NULL, nk)) == 0) lda_sampler_set_totals(&lw->smp, nk);
    for (int b = 0; rv == 0 && b < lw->cfg->blocks; b++) {
        size_t lo = (size_t)lw->bstart[b], nw = (size_t)lw->bstart[b + 1] - lo;
        if ((rv = lda_pull_rows(lw, lw->lw + lo, nw, lw->buf, NULL)) != 0) break;
        lw->blk.nw = nw;
        lda_block_load(&lw->blk, lw->buf);
        double t0 = lda_now();
        sample_block(lw, b);
        lw->sample_s += lda_now() - t0;
        rv = push_block(lw, lo);
    }
    for (int k = 0; rv == 0 && k < K; k++) nk[k] = lw->smp.dnk[k];
    if (rv == 0) rv = push_totals(lw, nk);
    free(nk);
    double t0 = lda_now(); /* the next pull waits for these anyway */
    if (rv == 0) rv = ps_wait_all(lw->wt);
    if (rv == 0) rv = ps_wait_all(lw->tt);
    lw->wait_s += lda_now() - t0;
    return rv;
}

int lda_sweep_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                   size_t *reply_len)
{
    (void)caller;
    lda_worker *lw = arg;
    lda_sweep_req q;
    if (len != sizeof q) return PS_ERR_INVAL;
    memcpy(&q, req, sizeof q);
    double t0 = lda_now(), w0 = lw->wait_s;
    int rv = sweep(lw);
    lda_rep *r = calloc(1, sizeof *r);
    if (!r) return PS_ERR_NOMEM;
    if (rv != 0) return free(r), rv;
    r->seconds = lda_now() - t0;
    r->wait_s = lw->wait_s - w0;
    r->tokens = (double)lw->tr.ntok;
    r->docs = (double)lw->tr.n;
    if (q.eval) {
        lda_hrep h = {0};
        r->doc_ll = doc_loglik(lw);
        if (lw->cfg->test && (rv = lda_heldout(lw, &h)) != 0) return free(r), rv;
        r->hll = h.ll, r->htokens = h.tokens, r->hdocs = h.docs, r->hskipped = h.skipped;
    }
    *reply = r;
    *reply_len = sizeof *r;
    return 0;
}

/* "topics": this shard's tokens per topic (K i64), from its assignments. */
int lda_topics_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                    size_t *reply_len)
{
    (void)caller, (void)req, (void)len;
    lda_worker *lw = arg;
    int64_t *n = calloc((size_t)lw->cfg->K, sizeof *n);
    if (!n) return PS_ERR_NOMEM;
    for (size_t i = 0; i < lw->tr.ntok; i++) n[lw->tr.z[i]]++;
    *reply = n;
    *reply_len = (size_t)lw->cfg->K * sizeof *n;
    return 0;
}
