/*
 * lin.h -- shared state of pslinear: options, a worker's data, the reply a
 * worker sends the scheduler after each iteration, and the solver entry points
 * (bpg.c: Block Proximal Gradient; pslinear.c: flags, data, FTRL/SGD,
 * evaluation, model files).
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
    lin_format fmt;
    int algo, iters, epochs, blocks, tau, minibatch, kkt, eval_every, predict, json, skip_bad;
    int bits;
    double l1, l2, lr, beta, kkt_slack;
} lin_cfg;

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
    /* BPG */
    uint16_t *eblk;      /* block of each train entry */
    uint64_t **bkeys;    /* per block: its keys (sorted) and their columns */
    uint32_t **bcols;
    size_t *bn;
    double *m, *g, *h;   /* margins [n]; per-column gradient / curvature [nu] */
    float *wl;           /* last pulled weight per column */
    float *buf;          /* push / pull buffer */
    int cur_block;       /* block being pushed (for the KKT filter) */
} lin_worker;

/* The reply of "iter" / "epoch" calls; hist[2][LIN_NB] follows if has_hist. */
typedef struct lin_rep {
    double loss, n, wait_s, busy_s, tloss, tn;
    uint64_t keys_sent, keys_filtered, bytes_sent, grad_keys, has_hist;
} lin_rep;

/* The request of "iter" / "epoch" calls. */
typedef struct lin_req {
    int64_t t;
    int32_t block, eval;
    double ntotal;
} lin_req;

double lin_now(void);
double lin_softplus(double x);
double lin_sigmoid(double z);
/* Fill *rep with traffic and times, and (if eval) the test histogram; the
 * reply buffer is malloc'ed into *out / *len. */
int lin_reply(lin_worker *lw, double loss, int eval, void **out, size_t *len);
/* AUC and logloss from merged histograms. */
double lin_auc(const double *hist);

/* bpg.c */
int bpg_table_opts(const lin_cfg *c, ps_table_opts *o);
int bpg_worker_setup(lin_worker *lw);
int bpg_iter(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
             size_t *reply_len);
int bpg_wstat(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
              size_t *reply_len);
/* Scheduler: stats of the servers' weights (nnz, |w|_1, |w|^2) via "wstat". */
int bpg_server_stats(double *nnz, double *l1norm, double *sqnorm);
void bpg_set_l1(double l1);

#endif
