/*
 * lin.h -- shared state of pslinear: options, a worker's data, the reply a
 * worker sends the scheduler after each iteration, and the solver entry points
 * (bpg.c: Block Proximal Gradient; ckpt.c: checkpoints and --resume;
 * model.c: model files and --predict; pslinear.c: flags, data, FTRL/SGD,
 * evaluation, the scheduler).
 */
#ifndef PSLINEAR_LIN_H
#define PSLINEAR_LIN_H

#include <stddef.h>
#include <stdint.h>

#include "ps/ps.h"
#include "data.h"

enum { ALGO_BPG = 0, ALGO_FTRL = 1, ALGO_SGD = 2 };
#define LIN_NB 16384 /* score histogram buckets per label (test AUC) */

typedef struct lin_cfg {
    const char *train, *test, *save, *filters, *model, *export_path;
    const char *ckpt_dir, *resume; /* --checkpoint-dir, --resume (NULL: none) */
    const char *predict_out; /* --predict-out: one probability per test example */
    const char *label_col;   /* --label-col (csv) */
    int bias;            /* --bias: libsvm examples get the bias key too */
    lin_format fmt;
    int algo, iters, epochs, blocks, tau, minibatch, kkt, eval_every, predict, json, skip_bad;
    int ckpt_every;      /* --checkpoint-every: iterations between checkpoints (0: off) */
    int replication;     /* --replication: backups of every key range (table option) */
    int bits;
    double l1, l2, lr, beta, kkt_slack;
    double tol;          /* --tol: bpg stops on a relative objective decrease (0: off) */
    double delay_step;   /* --delay-step: bpg tau > 0 divides the step by 1 + delay_step d */
    int delay_rule;      /* --delay-rule: DELAY_SEEN (d: pulls in flight) or DELAY_BOUND (d = tau) */
    int delay_comp;      /* --delay-comp: bpg tau > 0 moves margins by each pull's estimate */
    int straggle;        /* --straggle: STRAGGLE_NONE / _HEAVY / _SLOW / _LOGNORMAL (bpg only) */
    double straggle_ms;  /* heavy: mean delay; slow: worker rank 0's delay per iteration */
    uint64_t straggle_seed;
} lin_cfg;

enum { STRAGGLE_NONE = 0, STRAGGLE_HEAVY = 1, STRAGGLE_SLOW = 2, STRAGGLE_LOGNORMAL = 3 };
enum { DELAY_SEEN = 0, DELAY_BOUND = 1 };

/* A worker's shard (train + test) and solver state. */
typedef struct lin_worker {
    lin_cfg *cfg;
    ps_table *w;
    int width;           /* values per key in table w (BPG 2, FTRL/SGD 1) */
    lin_data tr, te;
    uint64_t *uk, *tk;   /* sorted distinct keys of train / test */
    size_t nu, ntu;
    uint32_t *cols, *tcols; /* entry -> index in uk / tk */
    double ntotal;       /* examples over all workers */
    double wait_s, busy_s; /* time waiting in pulls / total handler time */
    uint64_t grad_keys;  /* gradient entries offered to pushes (before filters) */
    double delay_sum, delay_n; /* bpg: the delays d of the gradients computed, and their number */
    /* BPG */
    /* per block b: the shard's rows with features in b (brow[b], bnrow[b] of
     * them) and, from boff[b][r] to boff[b][r + 1], row r's entries in b (their
     * columns in bent[b], values in bval[b], NULL while the data is binary) */
    uint32_t **brow, **bent;
    uint64_t **boff;
    float **bval;
    size_t *bnrow;
    uint64_t **bkeys;    /* per block: its keys (sorted) and their columns */
    uint32_t **bcols;
    size_t *bn;
    double *m, *g, *h;   /* margins [n]; per-column gradient / curvature [nu] */
    float *wl;           /* last pulled weight per column (or its estimate, --delay-comp) */
    double *mr;          /* --delay-comp: the margins of the pulled weights only [n] */
    float *wr;           /* --delay-comp: the last pulled weight per column [nu] */
    float *buf;          /* push buffer */
    int cur_block;       /* block being pushed (for the KKT filter) */
    struct bpg_pend *pend; /* pulls not yet applied to the margins, oldest first */
    int npend, cap_pend;
} lin_worker;

/* The reply of "iter" / "epoch" calls; hist[2][LIN_NB] follows if has_hist. */
typedef struct lin_rep {
    double loss, n, wait_s, busy_s, tloss, tn, delay_sum, delay_n;
    uint64_t keys_sent, keys_filtered, bytes_sent, grad_keys, has_hist;
} lin_rep;

/* The reply of "info": a worker's train examples, positives, test examples. */
typedef struct lin_info {
    double n, pos, tn;
} lin_info;

/* The request of "iter" / "epoch" calls. */
typedef struct lin_req {
    int64_t t;
    int32_t block, eval;
    double ntotal;
    int32_t sync, pad;   /* sync: apply every outstanding pull before replying */
} lin_req;

double lin_now(void);
double lin_softplus(double x);
double lin_sigmoid(double z);
/* Fill *rep with traffic and times, and (if eval) the test histogram; the
 * reply buffer is malloc'ed into *out / *len. */
int lin_reply(lin_worker *lw, double loss, int eval, void **out, size_t *len);
/* AUC and logloss from merged histograms. */
double lin_auc(const double *hist);

/* A weight of the model as the scheduler gathers it. */
typedef struct lin_kw { uint64_t k; float w; } lin_kw;
/* The reply of "model" / "resume": (u64 key, f32 weight) records of the non-zero
 * weights w[c * stride] of the worker's keys uk[c]; malloc'ed into *out / *len. */
int lin_model_reply(const lin_worker *lw, const float *w, size_t stride, void **out,
                    size_t *len);
/* Scheduler: call `fn` on every worker and merge their model records into a
 * malloc'ed array sorted by key, one entry per key (*out, *n; the caller frees). */
int lin_gather_model(const char *fn, lin_kw **out, size_t *n);

/* model.c: write the model file of --save (m sorted by key, n weights), with
 * feature names from a pass over c->train; 0 or a ps_err (said on stderr).
 * lin_predict: the --predict mode; the process exit status. */
int lin_model_save(const lin_cfg *c, const lin_kw *m, size_t n);
int lin_predict(const lin_cfg *c);

/* bpg.c */
int bpg_table_opts(const lin_cfg *c, ps_table_opts *o);
int bpg_worker_setup(lin_worker *lw);
int bpg_iter(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
             size_t *reply_len);
/* The "sync" call (after a stop on --tol): apply every outstanding pull, then
 * reply as "iter" does with the test histogram. */
int bpg_sync(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
             size_t *reply_len);
int bpg_wstat(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
              size_t *reply_len);
/* Worker "resume" call: pull the weights of the shard's keys, rebuild the margins
 * from them; replies with the non-zero weights (lin_model_reply). */
int bpg_resume(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
               size_t *reply_len);
/* Scheduler: stats of the weights (nnz, |w|_1, |w|^2), summed over the servers'
 * "wstat" answers (each reads the keys it serves). */
int bpg_server_stats(double *nnz, double *l1norm, double *sqnorm);
void bpg_set_l1(double l1);

/* ckpt.c: see there.  lin_ckpt_open: every node, right after opening table w
 * (servers restore it, the scheduler finds the iteration); 0 or a ps_err
 * (printed).  lin_ckpt_resume: the scheduler, before the first iteration; sets
 * *start to the first iteration to run (0 without --resume).  lin_ckpt_due:
 * whether a checkpoint follows iteration t; lin_ckpt_write: write it, print a
 * progress line; 0 or a ps_err (printed). */
int lin_ckpt_open(const lin_cfg *c, ps_table *w);
int lin_ckpt_restored(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                      size_t *reply_len);
int lin_ckpt_resume(const lin_cfg *c, int *start);
int lin_ckpt_due(const lin_cfg *c, int t);
int lin_ckpt_write(const lin_cfg *c, int t);

#endif
