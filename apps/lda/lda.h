/*
 * lda.h -- shared state of pslda (topic modeling by collapsed Gibbs sampling
 * on libps): options, the corpus a node reads (corpus.c), the SparseLDA
 * sampler over one block of words (sampler.c), a worker's sweeps (worker.c),
 * held-out evaluation and model files (eval.c), the scheduler's driver
 * (driver.c), and the flags and the servers' count walks (pslda.c).
 *
 * Tables on the servers (i64, ADD): "lda_wt" holds K counts per word (key
 * ps_hash_key(word id)), "lda_t" the K topic totals under one key.  A worker
 * only ever pushes differences, so the servers' sums are exact whatever the
 * staleness of what the workers sample with.
 */
#ifndef PSLDA_LDA_H
#define PSLDA_LDA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ps/ps.h"

#define LDA_TOTALS_KEY 0x746f74616c73ULL /* the one key of table lda_t */

typedef struct lda_cfg {
    const char *train, *test, *stopwords, *save, *filters;
    int K, sweeps, json, check, blocks, tau, min_len, top, eval_every, fold_iters;
    long vocab_min, vocab_max;
    double alpha, beta;
    uint64_t seed;
} lda_cfg;

/* The vocabulary: word strings by id (id 0 the most frequent). */
typedef struct lda_vocab {
    char **words;
    uint64_t *freq;
    size_t n;
    /* lookup: open addressing, word id + 1 per slot (0 empty) */
    uint32_t *slots;
    size_t mask;
} lda_vocab;

/* A node's documents: tokens as word ids, back to back. */
typedef struct lda_docs {
    uint32_t *w;         /* word id per token */
    uint16_t *z;         /* topic per token (train) */
    size_t *off;         /* doc d: tokens off[d] .. off[d + 1] */
    size_t n, ntok;
    uint64_t lines, empty; /* lines of this shard read; docs with no known word */
} lda_docs;

/* corpus.c.  All return 0, or -1 with a message in err. */
int lda_vocab_build(const lda_cfg *c, lda_vocab *v, uint64_t *ntokens, char *err, size_t n);
long lda_vocab_find(const lda_vocab *v, const char *w, size_t len);
void lda_vocab_free(lda_vocab *v);
/* Documents of shard `rank` of `nshards` (line i with i % nshards == rank). */
int lda_docs_load(const lda_cfg *c, const char *path, const lda_vocab *v, int rank,
                  int nshards, lda_docs *d, char *err, size_t n);
void lda_docs_free(lda_docs *d);

/* sampler.c: one block of words in local dense rows. */
typedef struct lda_block {
    int K;
    size_t nw;           /* words of the block */
    int32_t *cnt;        /* [nw * K] working counts (clamped at 0) */
    int32_t *delta;      /* [nw * K] this worker's changes since the pull */
    uint16_t *nzt, *nzpos; /* [nw * K] nonzero topics of each row, and where */
    uint16_t *nnz;       /* [nw] */
} lda_block;

typedef struct lda_sampler {
    int K;
    double alpha, beta, vbeta;
    int32_t *nk;         /* [K] working topic totals (clamped at 0) */
    int32_t *dnk;        /* [K] changes of the totals since the pull */
    int32_t *ndk;        /* [K] scratch: topics of the current document */
    uint16_t *dnz, *dpos; /* nonzero topics of the document */
    int ndnz;
    double *ck;          /* [K] (alpha + ndk) / (vbeta + nk) */
    double *pq;          /* [K] scratch for the q bucket */
    double s;            /* sum_k alpha beta / (vbeta + nk) */
    double r;            /* sum over the document topics of ndk beta / (vbeta + nk) */
    uint64_t rng[2];
} lda_sampler;

int lda_sampler_init(lda_sampler *s, int K, double alpha, double beta, size_t V, uint64_t seed);
void lda_sampler_free(lda_sampler *s);
/* Set the working totals from pulled i64 values; zero dnk. */
void lda_sampler_set_totals(lda_sampler *s, const int64_t *nk);
int lda_block_init(lda_block *b, int K, size_t nw);
void lda_block_free(lda_block *b);
/* Load pulled i64 rows into the block and zero its deltas. */
void lda_block_load(lda_block *b, const int64_t *rows);
/* A document: set its topic counts from its topics z[0..n) (lda_doc_begin),
 * resample tokens of the block (lda_sample_token: row r, topic *z), then
 * clear them (lda_doc_end). */
void lda_doc_begin(lda_sampler *s, const uint16_t *z, size_t n);
void lda_sample_token(lda_sampler *s, lda_block *b, int32_t r, uint16_t *z);
void lda_doc_end(lda_sampler *s);
/* Count a token (row r, topic k) in (inc +1) or out (-1): working counts,
 * deltas, buckets. */
void lda_block_add(lda_sampler *s, lda_block *b, int32_t r, int k, int inc);
uint64_t lda_rand(uint64_t st[2]);
double lda_uniform(uint64_t st[2]);

/* worker.c */
typedef struct lda_worker {
    lda_cfg *cfg;
    ps_table *wt, *tt;
    lda_vocab voc;
    lda_docs tr, te;
    uint32_t *lw;        /* local vocabulary: sorted word ids of the shard */
    size_t nlw;
    int32_t *row;        /* [ntok] token -> row in its block */
    int32_t *bstart;     /* [blocks + 1] block b: local words bstart[b].. */
    size_t *tokord;      /* [ntok] tokens of each document ordered by block */
    size_t *dboff;       /* [n * (blocks + 1)] per doc, per block: start in tokord */
    lda_sampler smp;
    lda_block blk;
    int64_t *buf;        /* pull / push rows */
    uint64_t *keys;
    int64_t last_push[2]; /* last push tasks of lda_wt / lda_t (-1: none) */
    double sample_s, wait_s;
} lda_worker;

/* The reply of a "sweep" call. */
typedef struct lda_rep {
    double doc_ll, tokens, seconds, wait_s, docs;
    double hll, htokens, hdocs, hskipped; /* held-out (eval sweeps with --test) */
} lda_rep;
/* The reply of "info". */
typedef struct lda_info {
    double vocab, tokens, docs, empty, test_docs, test_tokens, test_empty, corpus_tokens;
} lda_info;
/* Held-out document completion on the test shard. */
typedef struct lda_hrep {
    double ll, tokens, docs, skipped;
} lda_hrep;
typedef struct lda_sweep_req { int32_t t, eval; } lda_sweep_req;

int lda_worker_setup(lda_worker *lw);
int lda_sweep_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                   size_t *reply_len);
int lda_heldout(lda_worker *lw, lda_hrep *h);
int lda_save_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                  size_t *reply_len);
int lda_topics_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                    size_t *reply_len);
/* Pull the rows of `nw` word ids (and the totals) into rows / nk. */
int lda_pull_rows(lda_worker *lw, const uint32_t *ids, size_t nw, int64_t *rows, int64_t *nk);
double lda_now(void);

/* A server's "counts" reply, 8 bytes each: f64 wll (sum over its counts
 * n > 0 of lgG(beta + n) - lgG(beta)), i64 negative counts, i64 has_tot
 * (it serves the totals key), then i64 col[K] (per topic, the sum of its
 * word-topic counts) and i64 tot[K] (the totals, when has_tot). */
#define LDA_COUNTS_LEN(K) ((3 + 2 * (size_t)(K)) * 8)

/* driver.c: the scheduler's side of a run; 0, 1 (failed), 3 (--check failed). */
int lda_run_scheduler(const lda_cfg *c, const lda_info *mine);

#endif
