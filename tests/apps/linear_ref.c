/*
 * linear_ref.c -- a single-process reference implementation of pslinear's
 * Block Proximal Gradient (apps/linear/bpg.c, the comment at its top), for
 * tests/integration/test_pslinear_ref.sh.  Plain arrays, no libps: it reads
 * a libsvm file, simulates W workers and the servers in one loop, and prints
 * the objective after every iteration, which the test compares with
 * `pslinear --json` under psrun.
 *
 * The algorithm, written out from bpg.c's documentation (N examples, B
 * blocks, block of a feature = key % B, key = XXH3-64 of the 8
 * little-endian bytes of the libsvm index, as ps_hash_key documents):
 *   iteration t works on block b = t % B; each worker r, over its shard:
 *     g_j = sum_i (p_i - y_i) x_ij / N,
 *     h_j = sum_i p_i (1 - p_i) x_ij^2 k_i / N / lr,  k_i = #entries of i in b,
 *   p_i = sigmoid(margin_i); the KKT filter (if on) drops (g_j, h_j) of a
 *   worker when w_j == 0 and |g_j| <= slack * l1 * n_r / N; the servers sum
 *   what was sent and set w_j = soft(h w_j - g_j, l1) / (h + l2) where h > 0;
 *   every worker adds X_b (w_new - w_old) to its margins.
 *   objective = sum_i softplus(-/+ margin_i) / N + l1 |w|_1 + l2/2 |w|^2.
 * Bounded delay (--tau): the margin update of iteration t is applied at the
 * start of iteration t + tau + 1 (at once for tau 0 and for the last
 * iteration), so a gradient misses the updates of the last tau iterations,
 * its curvature is scaled by 1 + delay_step * tau (--delay-step, default 1),
 * and the KKT filter sees the weights the worker last applied.
 * Worker r's shard is the lines that start in the byte range
 * [size r / W, size (r + 1) / W) (apps/linear/data.h).
 *
 * Float32: the table stores weights as f32 and workers push f32, so a
 * double-only reference would drift from pslinear by about 1e-7 per
 * iteration.  By default this program rounds to float at exactly the points
 * pslinear does (a worker's g_j and h_j before the push, the servers' sum
 * of the workers' pushes, the stored weight) so that the trajectories agree
 * to rounding of the double sums (about 1e-15); --f64 turns the rounding off
 * to show how far float32 storage moves the objective.  The servers' sum
 * adds the workers' pushes in rank order; with 2 workers that equals any
 * arrival order (float addition commutes), with more it may differ in the
 * last bit.
 *
 * Usage: linear_ref --train PATH [--workers W] [--blocks B] [--iters T] [--tau N] [--delay-step X]
 *        [--l1 X] [--l2 X] [--lr X] [--kkt | --no-kkt] [--kkt-slack X] [--f64]
 * (defaults: 1 worker; the rest as pslinear's: 4 blocks, 40 iterations, tau 0,
 * l1 = 1/N, l2 0, lr 1, KKT on, slack 1).  Prints "iter T objective X nnz K"
 * per iteration; exits 2 on bad arguments or input it does not read.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

typedef struct ref {
    int W, B, T, tau, kkt, f64;
    double l1, l2, lr, slack, dstep;
    /* data: n examples, entries off[i]..off[i+1]-1 with column col[] and value val[] */
    size_t n, nnz, ncols;
    double *y;
    size_t *off, *col;
    double *val;
    int *blk;          /* [ncols] block of each column */
    size_t *shard;     /* [W + 1] examples of worker r: shard[r]..shard[r+1]-1 */
    /* state */
    double *m;         /* [n] margins */
    double *w;         /* [ncols] the servers' weights */
    double *wa;        /* [ncols] the weights the workers' margins include */
    double **snap;     /* [T] the servers' weights after iteration t, until applied */
    int applied;       /* iterations < applied are in the margins */
} ref;

static void die(const char *what)
{
    fprintf(stderr, "linear_ref: %s\n", what);
    exit(2);
}

static void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz);
    if (!p) die("out of memory");
    return p;
}

static double rnd(const ref *R, double x) { return R->f64 ? x : (double)(float)x; }
static double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static uint64_t hash_key(uint64_t raw)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(raw >> (8 * i));
    return (uint64_t)XXH3_64bits(le, sizeof le);
}

/* ---- reading: labels, raw indices and values; columns = distinct indices ---- */

typedef struct raw { uint64_t idx; size_t col; } raw;

static int raw_cmp(const void *a, const void *b)
{
    uint64_t x = ((const raw *)a)->idx, y = ((const raw *)b)->idx;
    return x < y ? -1 : x > y;
}

static void load(ref *R, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open the train file");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *text = xcalloc((size_t)size + 1, 1);
    if (fread(text, 1, (size_t)size, f) != (size_t)size) die("short read");
    fclose(f);
    size_t cap = (size_t)size / 2 + 1, lines = 0;
    R->y = xcalloc(cap, sizeof(double));
    R->off = xcalloc(cap + 1, sizeof(size_t));
    R->val = xcalloc(cap, sizeof(double));
    raw *ix = xcalloc(cap, sizeof(raw));
    size_t *start = xcalloc(cap, sizeof(size_t)); /* byte offset of each example's line */
    for (char *s = text; s < text + size; lines++) {
        char *nl = strchr(s, '\n'), *end;
        if (nl) *nl = '\0';
        start[R->n] = (size_t)(s - text);
        double lab = strtod(s, &end);
        if (end == s) die("a line without a label (the reference reads plain libsvm only)");
        R->y[R->n] = lab > 0 ? 1.0 : 0.0;
        for (s = end; *s;) {
            while (*s == ' ' || *s == '\t') s++;
            if (!*s) break;
            uint64_t idx = strtoull(s, &end, 10);
            if (*end != ':') die("bad feature");
            ix[R->nnz].idx = idx;
            R->val[R->nnz++] = (double)strtof(end + 1, &s);
        }
        R->off[++R->n] = R->nnz;
        s = nl ? nl + 1 : text + size;
    }
    (void)lines;
    /* shards: worker r owns the examples whose line starts in [size r/W, size (r+1)/W) */
    R->shard = xcalloc((size_t)R->W + 1, sizeof(size_t));
    for (int r = 1; r <= R->W; r++) {
        uint64_t lo = r == R->W ? UINT64_MAX : (uint64_t)size * (uint64_t)r / (uint64_t)R->W;
        size_t i = 0;
        while (i < R->n && start[i] < lo) i++;
        R->shard[r] = i;
    }
    /* columns: sort (index, entry) pairs, number distinct indices */
    raw *sorted = xcalloc(R->nnz, sizeof(raw));
    for (size_t j = 0; j < R->nnz; j++) sorted[j] = (raw){ix[j].idx, j};
    qsort(sorted, R->nnz, sizeof(raw), raw_cmp);
    R->col = xcalloc(R->nnz, sizeof(size_t));
    R->blk = xcalloc(R->nnz, sizeof(int));
    for (size_t j = 0; j < R->nnz; j++) {
        if (j == 0 || sorted[j].idx != sorted[j - 1].idx) {
            R->blk[R->ncols] = (int)(hash_key(sorted[j].idx) % (uint64_t)R->B);
            R->ncols++;
        }
        R->col[sorted[j].col] = R->ncols - 1;
    }
    free(sorted), free(ix), free(start), free(text);
}

/* ---- one iteration ---------------------------------------------------------- */

/* The workers apply the updates of iterations applied..upto to their margins:
 * margins += X_b (w after t - w applied before), in order. */
static void apply(ref *R, int upto)
{
    for (; R->applied <= upto; R->applied++) {
        int t = R->applied, b = t % R->B;
        double *wn = R->snap[t];
        for (size_t i = 0; i < R->n; i++)
            for (size_t j = R->off[i]; j < R->off[i + 1]; j++)
                if (R->blk[R->col[j]] == b) R->m[i] += (wn[R->col[j]] - R->wa[R->col[j]]) * R->val[j];
        for (size_t c = 0; c < R->ncols; c++)
            if (R->blk[c] == b) R->wa[c] = wn[c];
        free(wn);
        R->snap[t] = NULL;
    }
}

static void iteration(ref *R, int t, double *G, double *H, double *sg, double *sh, char *sent,
                      char *has)
{
    int b = t % R->B;
    apply(R, t - R->tau - 1);
    double N = (double)R->n, inv_n = 1.0 / N, inv_lr = 1.0 / R->lr;
    if (R->tau > 0) inv_lr = (1.0 + R->dstep * R->tau) / R->lr; /* the delayed step */
    memset(sg, 0, R->ncols * sizeof(double));
    memset(sh, 0, R->ncols * sizeof(double));
    memset(sent, 0, R->ncols);
    for (int r = 0; r < R->W; r++) {
        memset(G, 0, R->ncols * sizeof(double));
        memset(H, 0, R->ncols * sizeof(double));
        memset(has, 0, R->ncols);
        for (size_t i = R->shard[r]; i < R->shard[r + 1]; i++) {
            double k = 0;
            for (size_t j = R->off[i]; j < R->off[i + 1]; j++) {
                has[R->col[j]] = 1;
                k += R->blk[R->col[j]] == b;
            }
            if (k == 0) continue;
            double p = sigmoid(R->m[i]), res = p - R->y[i], c = p * (1 - p) * k;
            for (size_t j = R->off[i]; j < R->off[i + 1]; j++) {
                if (R->blk[R->col[j]] != b) continue;
                G[R->col[j]] += res * R->val[j];
                H[R->col[j]] += c * R->val[j] * R->val[j];
            }
        }
        double share = (double)(R->shard[r + 1] - R->shard[r]) / N;
        for (size_t c = 0; c < R->ncols; c++) {
            if (!has[c] || R->blk[c] != b) continue;
            double g = rnd(R, G[c] * inv_n), h = rnd(R, H[c] * inv_n * inv_lr);
            if (R->kkt && R->wa[c] == 0 && !(fabs(g) > R->slack * R->l1 * share)) continue;
            sg[c] = rnd(R, sg[c] + g);
            sh[c] = rnd(R, sh[c] + h);
            sent[c] = 1;
        }
    }
    for (size_t c = 0; c < R->ncols; c++) { /* the servers: the proximal step */
        if (!sent[c] || sh[c] <= 0) continue;
        double h = sh[c], z = h * R->w[c] - sg[c];
        double nw = z > R->l1 ? (z - R->l1) / (h + R->l2)
                  : z < -R->l1 ? (z + R->l1) / (h + R->l2) : 0.0;
        R->w[c] = rnd(R, nw);
    }
    R->snap[t] = xcalloc(R->ncols, sizeof(double)); /* what the workers pull */
    memcpy(R->snap[t], R->w, R->ncols * sizeof(double));
    if (R->tau == 0 || t == R->T - 1) apply(R, t);
}

static double objective(const ref *R, size_t *nnz)
{
    double loss = 0, l1n = 0, sq = 0;
    for (int r = 0; r < R->W; r++) { /* per worker, then summed, as the scheduler does */
        double s = 0;
        for (size_t i = R->shard[r]; i < R->shard[r + 1]; i++)
            s += softplus(R->y[i] > 0.5 ? -R->m[i] : R->m[i]);
        loss += s;
    }
    *nnz = 0;
    for (size_t c = 0; c < R->ncols; c++) {
        l1n += fabs(R->w[c]);
        sq += R->w[c] * R->w[c];
        *nnz += R->w[c] != 0;
    }
    return loss / (double)R->n + R->l1 * l1n + 0.5 * R->l2 * sq;
}

static double arg_num(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) die("a flag lacks its value");
    char *end;
    double v = strtod(argv[++*i], &end);
    if (*end) die("bad number");
    return v;
}

int main(int argc, char **argv)
{
    ref R = {.W = 1, .B = 4, .T = 40, .kkt = 1, .l1 = -1, .l2 = 0, .lr = 1, .slack = 1, .dstep = 1};
    const char *train = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--train") && i + 1 < argc) train = argv[++i];
        else if (!strcmp(a, "--workers")) R.W = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--blocks")) R.B = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--iters")) R.T = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--tau")) R.tau = (int)arg_num(argc, argv, &i);
        else if (!strcmp(a, "--l1")) R.l1 = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--l2")) R.l2 = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--lr")) R.lr = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--delay-step")) R.dstep = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--kkt-slack")) R.slack = arg_num(argc, argv, &i);
        else if (!strcmp(a, "--kkt")) R.kkt = 1;
        else if (!strcmp(a, "--no-kkt")) R.kkt = 0;
        else if (!strcmp(a, "--f64")) R.f64 = 1;
        else die("usage: linear_ref --train PATH [--workers W] [--blocks B] [--iters T] [--tau N] [--delay-step X] "
                 "[--l1 X] [--l2 X] [--lr X] [--kkt|--no-kkt] [--kkt-slack X] [--f64]");
    }
    if (!train || R.W < 1 || R.B < 1 || R.T < 1 || R.tau < 0 || R.lr <= 0)
        die("bad or missing arguments");
    load(&R, train);
    if (R.l1 < 0) R.l1 = R.n ? 1.0 / (double)R.n : 0;
    R.m = xcalloc(R.n, sizeof(double));
    R.w = xcalloc(R.ncols, sizeof(double));
    R.wa = xcalloc(R.ncols, sizeof(double));
    R.snap = xcalloc((size_t)R.T, sizeof(double *));
    double *G = xcalloc(R.ncols, sizeof(double)), *H = xcalloc(R.ncols, sizeof(double));
    double *sg = xcalloc(R.ncols, sizeof(double)), *sh = xcalloc(R.ncols, sizeof(double));
    char *sent = xcalloc(R.ncols, 1), *has = xcalloc(R.ncols, 1);
    for (int t = 0; t < R.T; t++) {
        size_t nnz;
        iteration(&R, t, G, H, sg, sh, sent, has);
        double obj = objective(&R, &nnz);
        printf("iter %d objective %.17g nnz %zu\n", t, obj, nnz);
    }
    free(G), free(H), free(sg), free(sh), free(sent), free(has), free(R.snap), free(R.wa);
    free(R.y), free(R.off), free(R.col), free(R.val), free(R.blk), free(R.shard), free(R.m),
        free(R.w);
    return 0;
}
