/*
 * bpg.c -- Block Proximal Gradient for L1/L2-regularized logistic regression
 * (Li et al., OSDI 2014, section 5.1), on top of libps.
 *
 * Objective: (1/N) sum_i logloss(y_i, x_i.w) + l1 |w|_1 + l2/2 |w|^2.
 * Features are split into B blocks by key (key % B).  The scheduler runs
 * iteration t on block t % B as a remote call to every worker, each call
 * depending on call t - tau - 1 (bounded delay).  A worker keeps the margins
 * x_i.w of its shard; per iteration it computes the block's gradient g and a
 * diagonal curvature bound h, pushes (g, h) for the block's keys of its shard
 * (the KKT filter drops keys whose weight is 0 and whose partial gradient is
 * within its share of l1: the server would leave them at 0), pulls the new
 * weights of those keys and updates its margins by X_b (w_new - w_old).
 *
 * Table "w" is BSP (the servers sum every worker's push of an iteration and
 * apply the sum once), width 2 (value: weight, last curvature; push:
 * gradient, curvature), with a custom update: the proximal step with a
 * diagonal metric,  w = soft(h w - g, l1) / (h + l2),  i.e. a proximal
 * gradient step whose step size per coordinate is 1/h (eta = --lr scales h).
 * The curvature h_j = sum_i p_i(1-p_i) x_ij^2 k_i / N, with k_i the number of
 * features of example i in the block, majorizes the block's quadratic model
 * separably, so a whole block moves at once without overshooting.
 * On --resume (ckpt.c) the "resume" call rebuilds a worker's margins and last
 * pulled weights from the weights the servers restored.
 *
 * Bounded delay on the worker: a handler returns right after its push and
 * leaves its pull outstanding; handler t first applies (waiting if needed)
 * the pulls of iterations <= t - tau - 1, in order, so its gradient sees
 * every update but those of the last tau iterations, and meanwhile the
 * worker computes instead of waiting for the slowest worker's push.  With
 * --delay-rule bound and tau < B the result is deterministic (a pull of
 * block b is answered before any worker can push block b again); tau = 0 waits for its own pull,
 * as do evaluation iterations (so replies with test metrics, and the last
 * one, see every update), and iterations before a checkpoint (req sync).
 * The loss a tau > 0 reply carries is that of the margins it has, i.e. up
 * to tau iterations old (with --delay-rule seen, after folding in the pulls
 * that have arrived by then).  The step: the curvature h majorizes a block's own
 * quadratic model, not the error of margins that miss other blocks'
 * updates, so with tau > 0 every h is scaled by 1 + delay_step * d
 * (--delay-step, default 1): the step 1/(1 + d) of the delayed proximal
 * gradient analyses (the paper's section 5.1 shrinks the step with the delay
 * the same way).  d is the delay this gradient really has (--delay-rule
 * seen, the default): before computing it, the worker also folds in the
 * later pulls that have already arrived, without waiting, and d counts
 * those still in flight (0..tau); so a worker that is behind (a straggler,
 * whose peers' pushes are in) takes a full step, and only one that ran
 * ahead pays for it.  Measured on flights (bench/paper/README.md), tau 1-4
 * see a mean d of 0.3-1.6.  --delay-rule bound takes d = tau, deterministic
 * for tau < B (the reference test's rule), but costs ~2x the iterations at
 * tau 1.  Full steps (delay_step 0) diverge on flights at tau 1: every block
 * can move the mean margin, and stale blocks correct the same residual twice.
 *
 * Delay compensation (--delay-comp 1, the default; predict_step): right after
 * pushing block b, a worker moves its margins by the step the servers are
 * about to take, as its own shard estimates it (its pushed g and h scaled
 * from the shard to the whole data, through the same prox step), and the
 * pull, when it arrives, moves them by the true step minus that estimate.
 * So the next blocks' gradients see the residual as corrected by an
 * estimate of the updates in flight instead of not at all, and the newest
 * pull in flight costs no shrink: the step is 1/(1 + delay_step (d - 1)).
 * The loss a reply carries is that of the pulled weights only (lw->mr,
 * margins without the estimates), so progress lines never report the
 * estimate's optimism.  Measured on flights with 4 workers
 * (bench/paper/README.md): tau 1 needs 17-18 iterations to the target
 * against tau 0's 16 (23-25 without the estimate).
 *
 * tau 0 is today's algorithm, bit for bit.  --straggle simulates
 * slow workers (see straggle()).
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lin.h"

/* ---- server side: the update and the weight statistics ---------------------------- */

static double up_l1, up_l2;

/* The proximal step of weight w for gradient g and curvature h > 0. */
static double prox(double w, double g, double h)
{
    double z = h * w - g;
    return z > up_l1 ? (z - up_l1) / (h + up_l2) : z < -up_l1 ? (z + up_l1) / (h + up_l2) : 0.0;
}

static void prox_apply(void *arg, uint64_t key, void *val, void *state, const void *push,
                       int width)
{
    (void)arg, (void)key, (void)state, (void)width;
    float *v = val;
    const float *p = push;
    double g = p[0], h = p[1], w = v[0];
    if (h <= 0) return;
    v[0] = (float)prox(w, g, h);
    v[1] = (float)h;
}

static const ps_update_ops prox_ops = {.state_bytes = 0, .apply = prox_apply};

int bpg_table_opts(const lin_cfg *c, ps_table_opts *o)
{
    ps_table_opts_init(o);
    o->dtype = PS_F32;
    o->width = 2;
    o->update = PS_UPDATE_CUSTOM;
    o->custom = &prox_ops;
    o->bsp = 1;
    up_l1 = c->l1;
    up_l2 = c->l2;
    return 0;
}

void bpg_set_l1(double l1) { up_l1 = l1; }

static int add_norms(void *arg, uint64_t key, const void *vals)
{
    double *r = arg, w = ((const float *)vals)[0];
    (void)key;
    r[0] += w != 0;
    r[1] += fabs(w);
    r[2] += w * w;
    return 0;
}

/* nnz, |w|_1 and |w|^2 over the keys this server serves, read from the table
 * (so a restored model, or ranges taken over from a dead server, count). */
int bpg_wstat(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
              size_t *reply_len)
{
    ps_table *t = *(ps_table **)arg;
    (void)caller, (void)req, (void)len;
    double *r = calloc(3, sizeof(double));
    if (!r) return PS_ERR_NOMEM;
    int rv = t ? ps_table_foreach(t, add_norms, r) : PS_ERR_STATE;
    if (rv != 0) {
        free(r);
        return rv;
    }
    *reply = r;
    *reply_len = 3 * sizeof(double);
    return 0;
}

int bpg_server_stats(double *nnz, double *l1norm, double *sqnorm)
{
    const ps_reply *rep;
    int n;
    int64_t ts = ps_call_group(PS_GROUP_SERVERS, "wstat", NULL, 0, NULL);
    if (ts < 0) return (int)ts;
    int rv = ps_call_wait(ts, &rep, &n);
    *nnz = 0, *l1norm = 0, *sqnorm = 0;
    for (int i = 0; rv == 0 && i < n; i++) {
        if (rep[i].len != 3 * sizeof(double)) continue;
        const double *d = rep[i].data;
        *nnz += d[0];
        *l1norm += d[1];
        *sqnorm += d[2];
    }
    ps_call_release(ts);
    return rv;
}

/* ---- worker side ------------------------------------------------------------------ */

/* Index of key in the current block's sorted keys, or -1. */
static long find_key(const uint64_t *k, size_t n, uint64_t key)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (k[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && k[lo] == key ? (long)lo : -1;
}

/* The KKT filter: drop a gradient entry of a zero weight whose partial
 * gradient is within this worker's share of l1 (if every worker drops it,
 * the summed gradient is within l1 and the prox step keeps the weight 0). */
static int kkt_keep(void *arg, uint64_t key, const void *vals)
{
    lin_worker *lw = arg;
    int b = lw->cur_block;
    long q = find_key(lw->bkeys[b], lw->bn[b], key);
    if (q < 0) return 1;
    if ((lw->wr ? lw->wr : lw->wl)[lw->bcols[b][q]] != 0) return 1; /* the servers' weight */
    double share = (double)lw->tr.n / lw->ntotal;
    return fabs(((const float *)vals)[0]) > lw->cfg->kkt_slack * lw->cfg->l1 * share;
}

/* The shard's entries by block (lw->brow, boff, bent, bval), in row order
 * and, within a row, in the data's order: a block's gradient and margin
 * passes then touch its entries only, in the order a scan of every entry
 * would (same sums, bit for bit).  0 or PS_ERR_NOMEM. */
static int index_blocks(lin_worker *lw)
{
    const lin_data *d = &lw->tr;
    size_t B = (size_t)lw->cfg->blocks;
    size_t *nent = calloc(B, sizeof(size_t)), *last = malloc(B * sizeof(size_t));
    lw->brow = calloc(B, sizeof(*lw->brow));
    lw->bent = calloc(B, sizeof(*lw->bent));
    lw->boff = calloc(B, sizeof(*lw->boff));
    lw->bval = calloc(B, sizeof(*lw->bval));
    lw->bnrow = calloc(B, sizeof(size_t));
    int rv = nent && last && lw->brow && lw->bent && lw->boff && lw->bval && lw->bnrow
                 ? 0 : PS_ERR_NOMEM;
    for (int pass = 0; rv == 0 && pass < 2; pass++) {
        for (size_t b = 0; b < B; b++) last[b] = SIZE_MAX;
        if (pass == 1) {
            for (size_t b = 0; b < B; b++) {
                lw->brow[b] = malloc((lw->bnrow[b] + 1) * sizeof(uint32_t));
                lw->boff[b] = malloc((lw->bnrow[b] + 1) * sizeof(uint64_t));
                lw->bent[b] = malloc((nent[b] + 1) * sizeof(uint32_t));
                if (d->vals) lw->bval[b] = malloc((nent[b] + 1) * sizeof(float));
                if (!lw->brow[b] || !lw->boff[b] || !lw->bent[b] || (d->vals && !lw->bval[b]))
                    rv = PS_ERR_NOMEM;
                else
                    lw->boff[b][lw->bnrow[b]] = nent[b]; /* the end of the last row */
                lw->bnrow[b] = nent[b] = 0;
            }
            if (rv != 0) break;
        }
        for (size_t i = 0; i < d->n; i++)
            for (uint64_t j = d->offsets[i]; j < d->offsets[i + 1]; j++) {
                size_t b = (size_t)(d->keys[j] % B);
                if (last[b] != i) {
                    if (pass == 1) {
                        lw->brow[b][lw->bnrow[b]] = (uint32_t)i;
                        lw->boff[b][lw->bnrow[b]] = nent[b];
                    }
                    lw->bnrow[b]++;
                    last[b] = i;
                }
                if (pass == 1) {
                    lw->bent[b][nent[b]] = lw->cols[j];
                    if (d->vals) lw->bval[b][nent[b]] = d->vals[j];
                }
                nent[b]++;
            }
    }
    free(nent);
    free(last);
    return rv;
}

int bpg_worker_setup(lin_worker *lw)
{
    const lin_data *d = &lw->tr;
    int B = lw->cfg->blocks;
    lw->bkeys = calloc((size_t)B, sizeof(*lw->bkeys));
    lw->bcols = calloc((size_t)B, sizeof(*lw->bcols));
    lw->bn = calloc((size_t)B, sizeof(size_t));
    lw->m = calloc(d->n + 1, sizeof(double));
    lw->g = calloc(lw->nu + 1, sizeof(double));
    lw->h = calloc(lw->nu + 1, sizeof(double));
    lw->wl = calloc(lw->nu + 1, sizeof(float));
    lw->buf = malloc((2 * lw->nu + 2) * sizeof(float));
    if (!lw->bkeys || !lw->bcols || !lw->bn || !lw->m || !lw->g || !lw->h || !lw->wl ||
        !lw->buf || index_blocks(lw) != 0)
        return PS_ERR_NOMEM;
    if (lw->cfg->tau > 0 && lw->cfg->delay_comp &&
        (!(lw->mr = calloc(d->n + 1, sizeof(double))) || !(lw->wr = calloc(lw->nu + 1, sizeof(float)))))
        return PS_ERR_NOMEM;
    for (size_t c = 0; c < lw->nu; c++) lw->bn[lw->uk[c] % (uint64_t)B]++;
    for (int b = 0; b < B; b++) {
        lw->bkeys[b] = malloc((lw->bn[b] + 1) * sizeof(uint64_t));
        lw->bcols[b] = malloc((lw->bn[b] + 1) * sizeof(uint32_t));
        if (!lw->bkeys[b] || !lw->bcols[b]) return PS_ERR_NOMEM;
        lw->bn[b] = 0;
    }
    for (size_t c = 0; c < lw->nu; c++) { /* uk is sorted, so each block's keys are */
        int b = (int)(lw->uk[c] % (uint64_t)B);
        lw->bkeys[b][lw->bn[b]] = lw->uk[c];
        lw->bcols[b][lw->bn[b]++] = (uint32_t)c;
    }
    if (lw->cfg->kkt) return ps_table_set_keep(lw->w, kkt_keep, lw);
    return 0;
}


/* Gradient and curvature of block b over the shard into lw->g / lw->h. */
static void block_gradient(lin_worker *lw, int b)
{
    const lin_data *d = &lw->tr;
    const uint32_t *row = lw->brow[b], *col = lw->bent[b];
    const uint64_t *off = lw->boff[b];
    const float *val = lw->bval[b];
    for (size_t q = 0; q < lw->bnrow[b]; q++) {
        size_t i = row[q];
        uint64_t s = off[q], e = off[q + 1];
        double k = (double)(e - s); /* the row's features in the block */
        double p = lin_sigmoid(lw->m[i]), r = p - d->labels[i], c = p * (1 - p) * k;
        for (uint64_t j = s; j < e; j++) {
            double v = val ? val[j] : 1.0;
            lw->g[col[j]] += r * v;
            lw->h[col[j]] += c * v * v;
        }
    }
}

/* m += X_b (w_new - w_old), with the deltas in lw->g (zeroed after); and
 * if `real`, mr += X_b (the pulled deltas in lw->h, zeroed after). */
static void update_margins(lin_worker *lw, int b, int real)
{
    const uint32_t *row = lw->brow[b], *col = lw->bent[b];
    const uint64_t *off = lw->boff[b];
    const float *val = lw->bval[b];
    for (size_t q = 0; q < lw->bnrow[b]; q++) {
        size_t i = row[q];
        for (uint64_t j = off[q]; j < off[q + 1]; j++) {
            double v = val ? val[j] : 1.0;
            lw->m[i] += lw->g[col[j]] * v;
            if (real) lw->mr[i] += lw->h[col[j]] * v;
        }
    }
    for (size_t q = 0; q < lw->bn[b]; q++) lw->g[lw->bcols[b][q]] = lw->h[lw->bcols[b][q]] = 0;
}

/* The training loss of the weights pulled so far (not of the estimates). */
static double train_loss(const lin_worker *lw)
{
    const double *m = lw->mr ? lw->mr : lw->m;
    double s = 0;
    for (size_t i = 0; i < lw->tr.n; i++)
        s += lin_softplus(lw->tr.labels[i] > 0.5 ? -m[i] : m[i]);
    return s;
}

/* A pull of iteration t not yet applied to the margins; buf (owned) gets
 * the weights of block `block` when the task ts finishes. */
typedef struct bpg_pend {
    int64_t t, ts;
    int block;
    float *buf;
    atomic_int *done;    /* set by pull_done when the pull finished (owned) */
} bpg_pend;

/* The pull's completion callback (a library thread): its last act is the
 * store, so once the flag reads 1 the callback no longer touches it. */
static void pull_done(ps_table *t, int64_t ts, int status, void *arg)
{
    (void)t, (void)ts, (void)status;
    atomic_store_explicit((atomic_int *)arg, 1, memory_order_release);
}

/* Wait for pending pull p and fold it into the margins; 0 or its ps_err. */
static int apply_one(lin_worker *lw, bpg_pend *p)
{
    double tw = lin_now();
    int rv = ps_wait(lw->w, p->ts);
    /* ps_wait may return before the callback ran: the flag is freed below */
    while (!atomic_load_explicit(p->done, memory_order_acquire)) sched_yield();
    lw->wait_s += lin_now() - tw;
    if (rv == 0) {
        for (size_t q = 0; q < lw->bn[p->block]; q++) {
            uint32_t c = lw->bcols[p->block][q];
            lw->g[c] = (double)p->buf[2 * q] - lw->wl[c]; /* minus the estimate, if one */
            lw->wl[c] = p->buf[2 * q];
            if (lw->wr) {
                lw->h[c] = (double)p->buf[2 * q] - lw->wr[c];
                lw->wr[c] = p->buf[2 * q];
            }
        }
        update_margins(lw, p->block, lw->mr != NULL);
    }
    free(p->buf);
    free(p->done);
    return rv;
}

/* Apply the outstanding pulls of iterations <= upto, oldest first (waiting
 * for each), then, if ready_too, those after it that have already finished
 * (without waiting; stops at the first still in flight, so margins always
 * hold a prefix of the iterations).  0 or the first pull's ps_err. */
static int apply_pulls(lin_worker *lw, int64_t upto, int ready_too)
{
    int k = 0, rv = 0;
    for (; k < lw->npend && rv == 0; k++) {
        bpg_pend *p = &lw->pend[k];
        if (p->t > upto &&
            (!ready_too || !atomic_load_explicit(p->done, memory_order_acquire)))
            break;
        rv = apply_one(lw, p);
    }
    if (k == 0) return rv;
    lw->npend -= k;
    memmove(lw->pend, lw->pend + k, (size_t)lw->npend * sizeof(bpg_pend));
    return rv;
}

/* With tau > 0, no step moves a weight by more than about DELAY_TRUST: a
 * gradient computed on margins that miss (or estimate) updates can come
 * with a curvature near 0 (margins pushed into the sigmoid's flat tails),
 * and g / h would throw the weight, and every margin it touches, far
 * away.  Each worker's h is raised to at least |g| / DELAY_TRUST, so the
 * servers' summed step, (|G| + l1 + l2 |w|) / (H + l2), stays within it
 * plus the regularizers' pull.  Flights' weights stay within +-3; a
 * normal step is far below it.  tau 0 is untouched (bit for bit). */
#define DELAY_TRUST 1.0

/* Push block b's (g, h) from lw->g / lw->h, then pull its weights after the
 * push into a new pending entry for iteration t. */
static int push_pull(lin_worker *lw, int64_t t, int b, double ntotal, double damp)
{
    size_t nb = lw->bn[b];
    double inv_n = 1.0 / ntotal, inv_lr = damp / lw->cfg->lr;
    int trust = lw->cfg->tau > 0;
    for (size_t q = 0; q < nb; q++) {
        uint32_t c = lw->bcols[b][q];
        double g = lw->g[c] * inv_n, h = lw->h[c] * inv_n * inv_lr;
        if (trust && h < fabs(g) / DELAY_TRUST) h = fabs(g) / DELAY_TRUST;
        lw->buf[2 * q] = (float)g;
        lw->buf[2 * q + 1] = (float)h;
        lw->g[c] = lw->h[c] = 0;
    }
    lw->cur_block = b;
    lw->grad_keys += nb;
    if (lw->npend == lw->cap_pend) {
        int cap = lw->cap_pend ? 2 * lw->cap_pend : 4;
        bpg_pend *np = realloc(lw->pend, (size_t)cap * sizeof(bpg_pend));
        if (!np) return PS_ERR_NOMEM;
        lw->pend = np, lw->cap_pend = cap;
    }
    bpg_pend *p = &lw->pend[lw->npend];
    p->buf = malloc((2 * nb + 2) * sizeof(float));
    p->done = malloc(sizeof(atomic_int));
    if (!p->buf || !p->done) {
        free(p->buf), free(p->done);
        return PS_ERR_NOMEM;
    }
    atomic_init(p->done, 0);
    int64_t ts = ps_push(lw->w, lw->bkeys[b], nb, lw->buf, NULL); /* KKT filter runs here */
    ps_task_opts after = {.deps = &ts, .ndeps = 1, .done = pull_done, .arg = p->done};
    int64_t tp = ts < 0 ? ts : ps_pull(lw->w, lw->bkeys[b], nb, p->buf, &after);
    if (tp < 0) {
        free(p->buf), free(p->done);
        return (int)tp;
    }
    *p = (bpg_pend){.t = t, .ts = tp, .block = b, .buf = p->buf, .done = p->done};
    lw->npend++;
    return 0;
}

/* Delay compensation (tau > 0): while block b's pull is in flight, move the
 * margins by the step the servers will take as this worker's shard
 * estimates it: the pushed (g, h), scaled from the shard to the whole
 * data, through the servers' prox().  lw->wl takes the
 * estimate, so the pull, when applied, moves the margins by the true
 * weights minus the estimate (apply_one): margins stay exact up to the
 * pulls in flight, and the gradients of the next tau blocks see an
 * estimate of those instead of nothing. */
static void predict_step(lin_worker *lw, int b, double ntotal)
{
    double scale = ntotal / (double)(lw->tr.n ? lw->tr.n : 1);
    for (size_t q = 0; q < lw->bn[b]; q++) {
        uint32_t c = lw->bcols[b][q];
        double g = lw->buf[2 * q] * scale, h = lw->buf[2 * q + 1] * scale, w = lw->wl[c];
        if (h <= 0) continue;
        double nw = prox(w, g, h);
        lw->g[c] = (double)(float)nw - w;
        lw->wl[c] = (float)nw;
    }
    update_margins(lw, b, 0);
}

/* splitmix64: the straggler simulation's random numbers, a pure function
 * of (seed, worker rank, iteration), so a run's delays are reproducible. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A uniform (0, 1) draw number k of worker rank's iteration t. */
static double unif(const lin_cfg *c, int64_t t, uint64_t k)
{
    uint64_t x = mix64(c->straggle_seed ^ mix64((uint64_t)ps_my_rank() << 32 ^ (uint64_t)t) ^ k);
    return ((double)(x >> 11) + 0.5) / 9007199254740992.0;
}

/* --straggle: a simulated slow computation before iteration t's gradient.
 * heavy: every worker sleeps a Pareto(shape 1.5) time of mean straggle_ms
 * (median 0.53x the mean; one iteration in 100 takes 7x it or longer; the
 * variance is infinite, so a run's time is often one draw's);
 * lognormal: every worker sleeps exp(N(0, 1)) times straggle_ms / e^0.5
 * (the same mean; median 0.61x it; one in 100 takes 6.3x it or longer,
 * with a finite variance); slow: worker rank 0 sleeps straggle_ms every
 * iteration.  The sleep counts as busy time, not idle. */
static void straggle(const lin_worker *lw, int64_t t)
{
    const lin_cfg *c = lw->cfg;
    double ms = 0;
    if (c->straggle == STRAGGLE_SLOW && ps_my_rank() == 0) ms = c->straggle_ms;
    if (c->straggle == STRAGGLE_HEAVY)
        ms = c->straggle_ms / 3.0 * pow(unif(c, t, 0), -1.0 / 1.5); /* xm = mean/3 */
    if (c->straggle == STRAGGLE_LOGNORMAL) {                       /* Box-Muller */
        double z = sqrt(-2.0 * log(unif(c, t, 0))) * cos(2.0 * M_PI * unif(c, t, 1));
        ms = c->straggle_ms * exp(z - 0.5);
    }
    if (ms <= 0) return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(fmod(ms, 1000.0) * 1e6)};
    while (nanosleep(&ts, &ts) != 0) {}
}

/* The curvature scale of this iteration's push (its step is 1/damp of the
 * undelayed one).  --delay-rule bound: 1 + delay_step * tau, whatever the
 * pulls did.  seen: first fold in every pull that has already finished
 * (without waiting), then 1 + delay_step * d with d the pulls still in
 * flight, the delay this gradient really has (summed into lw->delay_sum
 * for the mean the summary prints).  0 or a pull's ps_err. */
static int delay_damping(lin_worker *lw, double *damp)
{
    const lin_cfg *c = lw->cfg;
    int rv = 0;
    if (c->tau > 0 && c->delay_rule == DELAY_SEEN) rv = apply_pulls(lw, -1, 1);
    int d = c->delay_rule == DELAY_SEEN ? lw->npend : c->tau;
    lw->delay_sum += d;
    lw->delay_n++;
    /* --delay-comp: the newest pull in flight is in the margins as an estimate */
    int shrink = lw->mr && d > 0 ? d - 1 : d;
    *damp = c->tau > 0 ? 1.0 + c->delay_step * shrink : 1.0;
    return rv;
}

/* The "iter" call: one BPG iteration of this worker on block req->block. */
int bpg_iter(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
             size_t *reply_len)
{
    (void)caller;
    lin_worker *lw = arg;
    if (len != sizeof(lin_req)) return PS_ERR_INVAL;
    lin_req r;
    memcpy(&r, req, sizeof r);
    double t0 = lin_now();
    int rv, tau = lw->cfg->tau;
    double damp;
    lw->ntotal = r.ntotal;
    if ((rv = apply_pulls(lw, r.t - tau - 1, 0)) != 0) return rv;
    straggle(lw, r.t);
    if ((rv = delay_damping(lw, &damp)) != 0) return rv;
    block_gradient(lw, r.block);
    if ((rv = push_pull(lw, r.t, r.block, r.ntotal, damp)) != 0) return rv;
    if ((tau == 0 || r.eval || r.sync) && (rv = apply_pulls(lw, r.t, 0)) != 0) return rv;
    if (lw->mr && !r.eval && !r.sync) predict_step(lw, r.block, r.ntotal);
    /* seen: the loss of the freshest margins there are, without waiting */
    if (tau > 0 && lw->cfg->delay_rule == DELAY_SEEN && (rv = apply_pulls(lw, -1, 1)) != 0)
        return rv;
    double loss = train_loss(lw);
    lw->busy_s += lin_now() - t0;
    return lin_reply(lw, loss, r.eval, reply, reply_len);
}

int bpg_sync(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
             size_t *reply_len)
{
    (void)caller, (void)req, (void)len;
    lin_worker *lw = arg;
    int rv = apply_pulls(lw, INT64_MAX, 0);
    return rv ? rv : lin_reply(lw, train_loss(lw), 1, reply, reply_len);
}

/* The "resume" call, once before the first resumed iteration: the weights the
 * servers restored become the last pulled ones, and the margins x_i.w. */
int bpg_resume(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
               size_t *reply_len)
{
    (void)caller, (void)req, (void)len;
    lin_worker *lw = arg;
    const lin_data *d = &lw->tr;
    int rv = ps_wait(lw->w, ps_pull(lw->w, lw->uk, lw->nu, lw->buf, NULL));
    if (rv != 0) return rv;
    for (size_t c = 0; c < lw->nu; c++) lw->wl[c] = lw->buf[2 * c];
    if (lw->wr) memcpy(lw->wr, lw->wl, lw->nu * sizeof(float));
    for (size_t i = 0; i < d->n; i++) {
        double z = 0;
        for (uint64_t j = d->offsets[i]; j < d->offsets[i + 1]; j++)
            z += (double)lw->wl[lw->cols[j]] * (d->vals ? d->vals[j] : 1.0);
        lw->m[i] = z;
        if (lw->mr) lw->mr[i] = z;
    }
    return lin_model_reply(lw, lw->wl, 1, reply, reply_len);
}
