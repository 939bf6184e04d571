/*
 * pslinear.c -- sparse logistic regression on libps (issue 5): flags, data,
 * the scheduler's driver and progress lines, evaluation (test AUC and
 * logloss from per-worker score histograms), asynchronous FTRL / SGD, and
 * the local mode --export-libsvm.  The BPG solver is bpg.c; model files and
 * --predict are model.c.
 *
 * Run under psrun (every role runs this binary):
 *   psrun -s 2 -w 2 -- pslinear --algo bpg --train T --test E --format flights
 * The scheduler drives the solver with remote calls and prints progress; each
 * worker reads shard `rank` of W of the train and test files.  --save PATH:
 * at the end the scheduler gathers from every worker the non-zero weights
 * of the keys of its shard (the union is the whole model) and writes it
 * (model.c).  --checkpoint-dir / --checkpoint-every
 * / --resume (bpg only) are ckpt.c.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lin.h"
#define FLAGS_PROG "pslinear"
#include "../common/flags.h"

/* BPG defaults: an iteration cap and the tolerance (bench/linear.md) */
#define LIN_ITERS 2000
#define LIN_TOL 1e-4

static lin_cfg cfg;
static lin_worker W;

double lin_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double lin_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
double lin_sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

static int bucket(double p)
{
    int k = (int)(p * LIN_NB);
    return k < 0 ? 0 : k >= LIN_NB ? LIN_NB - 1 : k;
}

double lin_auc(const double *hist)
{
    const double *neg = hist, *pos = hist + LIN_NB;
    double P = 0, N = 0, below = 0, a = 0;
    for (int k = 0; k < LIN_NB; k++) P += pos[k], N += neg[k];
    for (int k = 0; k < LIN_NB; k++) {
        a += pos[k] * (below + 0.5 * neg[k]);
        below += neg[k];
    }
    return P > 0 && N > 0 ? a / (P * N) : 0.5;
}

/* ---- flags ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: psrun -s S -w W -- pslinear --train PATH [--test PATH] [options]\n"
        "       pslinear --predict --model PATH --test PATH [--format F] [--json]\n"
        "                [--predict-out FILE]\n"
        "       pslinear --export-libsvm OUT --train PATH [--format F] [--bits 24]\n\n"
        "L1/L2-regularized logistic regression on a libps cluster.\n"
        "  --format F        libsvm | flights | text | criteo | csv (default libsvm):\n"
        "                    libsvm  `label idx:val ...`, label 0/1 or -1/+1, idx an integer\n"
        "                    flights `label TAB origin TAB dest TAB hour TAB weekday TAB month`\n"
        "                    text    `label TAB words...` (bag of words)\n"
        "                    criteo  `label TAB I1..I13 TAB C1..C26` (Criteo TSV)\n"
        "                    csv     a header line, then comma-separated rows: numbers are\n"
        "                            numeric features, other text categorical (col=value)\n"
        "                    Every format but libsvm adds a bias feature (libsvm: --bias).\n"
        "                    A gzip file (any format, several members too) is read with zlib.\n"
        "  --label-col C     csv: the label column, a header name or a 1-based number\n"
        "                    (default: the column named label, else the first)\n"
        "  --algo A          bpg (block proximal gradient, default) | ftrl | sgd\n"
        "  --l1 X, --l2 X    regularization; bpg: of the mean loss (default l1 = 1/N,\n"
        "                    liblinear -c 1), ftrl/sgd: per example (default l1 = 1)\n"
        "  --lr X            bpg: step scale eta (default 1); ftrl: alpha (0.1); sgd: lr (0.1)\n"
        "  --beta X          ftrl beta (default 1)\n"
        "  --iters N         bpg: at most N iterations (default %d); --epochs N: ftrl/sgd\n"
        "                    (default 2)\n"
        "  --tol X           bpg: stop once the objective fell by at most X (relative) over\n"
        "                    the last B iterations, one sweep of the blocks (default %g;\n"
        "                    0: run all --iters)\n"
        "  --blocks B        bpg feature blocks, key %% B (default 4, at most 65535)\n"
        "  --tau N           bounded delay (bpg: a worker computes block t+1 while the\n"
        "                    updates of the last N blocks are outstanding, default 0;\n"
        "                    ftrl/sgd: table tasks, default 4)\n"
        "  --delay-step X    bpg with tau > 0: the step is divided by 1 + X d (default 1)\n"
        "  --delay-rule R    bpg with tau > 0: d of --delay-step: seen (default; a worker\n"
        "                    first applies the updates that have arrived, d is the number\n"
        "                    still in flight, 0..tau) or bound (d = tau, deterministic)\n"
        "  --delay-comp 0|1  bpg with tau > 0: move the margins by each pull in flight as the\n"
        "                    worker's shard estimates it, and shrink the step for the pulls\n"
        "                    in flight but the newest (1 + X (d - 1)); the pull corrects the\n"
        "                    estimate when it arrives (default 1; 0: no estimate, 1 + X d)\n"
        "  --straggle S      bpg: simulated stragglers, for benchmarks: heavy:MS (every worker\n"
        "                    sleeps a seeded Pareto(1.5) time of mean MS ms per iteration),\n"
        "                    lognormal:MS (a seeded lognormal time, sigma 1, mean MS ms)\n"
        "                    or slow:MS (worker rank 0 sleeps MS ms per iteration)\n"
        "  --straggle-seed N the seed of heavy and lognormal (default 1)\n"
        "  --minibatch N     ftrl/sgd examples per push (default: 1/100 of the worker's\n"
        "                    shard, at least 1 and at most 1000, so that a small shard\n"
        "                    still gets ~100 updates per epoch)\n"
        "  --filters SPEC    ps_table_set_filters spec on the workers, e.g. keycache,zstd\n"
        "  --kkt | --no-kkt  the KKT filter (bpg; default on), --kkt-slack X (default 1)\n"
        "  --eval-every N    test metrics every N iterations / epochs (default 10; 0: end only)\n"
        "  --save PATH       write the model: key<TAB>weight<TAB>feature lines, the\n"
        "                    feature as read (origin=LAS, w=free, the libsvm index, bias)\n"
        "  --model PATH      the model for --predict (a --save file)\n"
        "  --predict-out F   --predict: also write P(label 1) of every test example to F,\n"
        "                    one per line, in the order of the test file\n"
        "  --bias            libsvm: add a bias feature to every example (the other\n"
        "                    formats always have one); give it to --predict too\n"
        "  --json            also print each progress line as JSON (full-precision\n"
        "                    objective) and a final JSON summary line\n"
        "  --skip-bad-lines  skip (and count) malformed lines instead of failing\n"
        "  --checkpoint-dir DIR\n"
        "                    bpg: write checkpoints of the model into DIR\n"
        "  --checkpoint-every N\n"
        "                    a checkpoint after every N iterations (default 0: none;\n"
        "                    needs --checkpoint-dir)\n"
        "  --resume DIR      bpg: go on from the newest complete checkpoint in DIR, with\n"
        "                    any number of servers and workers (--iters: the total)\n"
        "  --replication K   every key range is also held by K more servers, so training\n"
        "                    survives K server deaths with no update lost (default 0)\n"
        "  --help            this text\n", LIN_ITERS, LIN_TOL);
}

/* The combinations of --checkpoint-dir, --checkpoint-every and --resume. */
static void check_ckpt_flags(void)
{
    if (cfg.ckpt_dir && !*cfg.ckpt_dir) bad_flag("%s: empty folder name", "--checkpoint-dir");
    if (cfg.resume && !*cfg.resume) bad_flag("%s: empty folder name", "--resume");
    if (cfg.ckpt_every > 0 && !cfg.ckpt_dir) bad_flag("%s needs --checkpoint-dir DIR",
                                                      "--checkpoint-every");
    if (cfg.ckpt_dir && cfg.ckpt_every == 0)
        bad_flag("%s needs --checkpoint-every N (N > 0)", "--checkpoint-dir");
    const char *ck = cfg.resume ? "--resume" : cfg.ckpt_dir ? "--checkpoint-dir" : NULL;
    if (ck && (cfg.predict || cfg.export_path))
        bad_flag("%s only applies to training", ck);
    if (ck && cfg.algo != ALGO_BPG) bad_flag("%s needs --algo bpg", ck);
}

/* --straggle heavy:MS | lognormal:MS | slow:MS | none (bpg.c's straggle()). */
static void parse_straggle(const char *a)
{
    const char *colon = strchr(a, ':');
    size_t k = colon ? (size_t)(colon - a) : strlen(a);
    if (!strcmp(a, "none")) {
        cfg.straggle = STRAGGLE_NONE;
        return;
    }
    if (colon && k == 5 && !strncmp(a, "heavy", 5)) cfg.straggle = STRAGGLE_HEAVY;
    else if (colon && k == 4 && !strncmp(a, "slow", 4)) cfg.straggle = STRAGGLE_SLOW;
    else if (colon && k == 9 && !strncmp(a, "lognormal", 9)) cfg.straggle = STRAGGLE_LOGNORMAL;
    else bad_flag("bad --straggle '%s' (want heavy:MS, lognormal:MS, slow:MS or none)", a);
    cfg.straggle_ms = num("straggle", colon + 1, 0, 1e6);
}

static void parse_flags(int argc, char **argv)
{
    enum { O_L1 = 256, O_L2, O_LR, O_BETA, O_ITERS, O_EPOCHS, O_BLOCKS, O_TAU, O_MB,
           O_FILTERS, O_KKT, O_NOKKT, O_SLACK, O_EVAL, O_SAVE, O_PREDICT, O_JSON, O_SKIP,
           O_MODEL, O_EXPORT, O_BITS, O_ALGO, O_FMT, O_TRAIN, O_TEST, O_CKDIR, O_CKEVERY,
           O_RESUME, O_REPL, O_STRAGGLE, O_SSEED, O_DSTEP, O_DRULE, O_DCOMP, O_TOL, O_POUT, O_BIAS, O_LABEL };
    static const struct option opts[] = {
        {"train", 1, 0, O_TRAIN}, {"test", 1, 0, O_TEST}, {"format", 1, 0, O_FMT},
        {"algo", 1, 0, O_ALGO}, {"l1", 1, 0, O_L1}, {"l2", 1, 0, O_L2}, {"lr", 1, 0, O_LR},
        {"alpha", 1, 0, O_LR}, {"beta", 1, 0, O_BETA}, {"iters", 1, 0, O_ITERS},
        {"epochs", 1, 0, O_EPOCHS}, {"blocks", 1, 0, O_BLOCKS}, {"tau", 1, 0, O_TAU},
        {"minibatch", 1, 0, O_MB}, {"filters", 1, 0, O_FILTERS}, {"kkt", 0, 0, O_KKT},
        {"no-kkt", 0, 0, O_NOKKT}, {"kkt-slack", 1, 0, O_SLACK}, {"eval-every", 1, 0, O_EVAL},
        {"save", 1, 0, O_SAVE}, {"predict", 0, 0, O_PREDICT}, {"json", 0, 0, O_JSON},
        {"skip-bad-lines", 0, 0, O_SKIP}, {"model", 1, 0, O_MODEL},
        {"export-libsvm", 1, 0, O_EXPORT}, {"bits", 1, 0, O_BITS}, {"help", 0, 0, 'h'},
        {"checkpoint-dir", 1, 0, O_CKDIR}, {"checkpoint-every", 1, 0, O_CKEVERY},
        {"resume", 1, 0, O_RESUME}, {"replication", 1, 0, O_REPL},
        {"straggle", 1, 0, O_STRAGGLE}, {"straggle-seed", 1, 0, O_SSEED},
        {"delay-step", 1, 0, O_DSTEP}, {"delay-rule", 1, 0, O_DRULE},
        {"delay-comp", 1, 0, O_DCOMP}, {"tol", 1, 0, O_TOL},
        {"predict-out", 1, 0, O_POUT},
        {"bias", 0, 0, O_BIAS}, {"label-col", 1, 0, O_LABEL},
        {0, 0, 0, 0}};
    cfg = (lin_cfg){.fmt = LIN_FMT_LIBSVM, .algo = ALGO_BPG, .iters = LIN_ITERS, .epochs = 2,
                    .blocks = 4, .tau = -1, .minibatch = 0, .kkt = 1, .eval_every = 10,
                    .bits = 24, .l1 = -1, .l2 = 0, .lr = -1, .beta = 1, .kkt_slack = 1,
                    .delay_step = 1, .delay_comp = 1, .straggle_seed = 1, .tol = LIN_TOL};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_TRAIN: cfg.train = optarg; break;
        case O_TEST: cfg.test = optarg; break;
        case O_FMT:
            if (!strcmp(optarg, "csv")) cfg.fmt = LIN_FMT_CSV;
            else if (lin_format_parse(optarg, &cfg.fmt) != 0)
                bad_flag("unknown --format '%s' (libsvm, flights, text, criteo or csv)", optarg);
            break;
        case O_ALGO:
            if (!strcmp(optarg, "bpg")) cfg.algo = ALGO_BPG;
            else if (!strcmp(optarg, "ftrl")) cfg.algo = ALGO_FTRL;
            else if (!strcmp(optarg, "sgd")) cfg.algo = ALGO_SGD;
            else bad_flag("unknown --algo '%s' (bpg, ftrl or sgd)", optarg);
            break;
        case O_L1: cfg.l1 = num("l1", optarg, 0, 1e9); break;
        case O_L2: cfg.l2 = num("l2", optarg, 0, 1e9); break;
        case O_LR: cfg.lr = num("lr", optarg, 1e-9, 1e9); break;
        case O_BETA: cfg.beta = num("beta", optarg, 0, 1e9); break;
        case O_ITERS: cfg.iters = (int)num("iters", optarg, 1, 1e7); break;
        case O_EPOCHS: cfg.epochs = (int)num("epochs", optarg, 1, 1e5); break;
        case O_BLOCKS: cfg.blocks = (int)num("blocks", optarg, 1, 65535); break;
        case O_TAU: cfg.tau = (int)num("tau", optarg, 0, 1e6); break;
        case O_MB: cfg.minibatch = (int)num("minibatch", optarg, 1, 1e8); break;
        case O_FILTERS: cfg.filters = optarg; break;
        case O_KKT: cfg.kkt = 1; break;
        case O_NOKKT: cfg.kkt = 0; break;
        case O_SLACK: cfg.kkt_slack = num("kkt-slack", optarg, 0, 1e6); break;
        case O_EVAL: cfg.eval_every = (int)num("eval-every", optarg, 0, 1e7); break;
        case O_SAVE: cfg.save = optarg; break;
        case O_PREDICT: cfg.predict = 1; break;
        case O_JSON: cfg.json = 1; break;
        case O_SKIP: cfg.skip_bad = 1; break;
        case O_MODEL: cfg.model = optarg; break;
        case O_EXPORT: cfg.export_path = optarg; break;
        case O_BITS: cfg.bits = (int)num("bits", optarg, 1, 63); break;
        case O_CKDIR: cfg.ckpt_dir = optarg; break;
        case O_CKEVERY: cfg.ckpt_every = (int)num("checkpoint-every", optarg, 0, 1e7); break;
        case O_RESUME: cfg.resume = optarg; break;
        case O_REPL: cfg.replication = (int)num("replication", optarg, 0, 7); break;
        case O_STRAGGLE: parse_straggle(optarg); break;
        case O_SSEED: cfg.straggle_seed = (uint64_t)num("straggle-seed", optarg, 0, 1e15); break;
        case O_DSTEP: cfg.delay_step = num("delay-step", optarg, 0, 1e6); break;
        case O_DRULE:
            if (!strcmp(optarg, "seen")) cfg.delay_rule = DELAY_SEEN;
            else if (!strcmp(optarg, "bound")) cfg.delay_rule = DELAY_BOUND;
            else bad_flag("--delay-rule %s: want seen or bound", optarg);
            break;
        case O_TOL: cfg.tol = num("tol", optarg, 0, 1); break;
        case O_DCOMP: cfg.delay_comp = (int)num("delay-comp", optarg, 0, 1); break;
        case O_POUT: cfg.predict_out = optarg; break;
        case O_BIAS: cfg.bias = 1; break;
        case O_LABEL: cfg.label_col = optarg; break;
        case 'h': usage(stdout); exit(0);
        default:
            bad_flag("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) bad_flag("unexpected argument '%s'", argv[optind]);
    if (cfg.predict && (!cfg.model || !cfg.test)) bad_flag("%s needs --model and --test", "--predict");
    if (cfg.predict_out && !cfg.predict) bad_flag("%s needs --predict", "--predict-out");
    if (cfg.export_path && !cfg.train) bad_flag("%s needs --train", "--export-libsvm");
    if (!cfg.predict && !cfg.export_path && !cfg.train) bad_flag("%s is required", "--train");
    check_ckpt_flags();
    if (cfg.straggle && cfg.algo != ALGO_BPG) bad_flag("%s needs --algo bpg", "--straggle");
    if (cfg.lr < 0) cfg.lr = cfg.algo == ALGO_BPG ? 1.0 : 0.1;
    if (cfg.tau < 0) cfg.tau = cfg.algo == ALGO_BPG ? 0 : 4;
    if (cfg.algo != ALGO_BPG) cfg.kkt = 0;
    if (cfg.l1 < 0 && cfg.algo != ALGO_BPG) cfg.l1 = cfg.algo == ALGO_FTRL ? 1.0 : 0.0;
}

/* ---- data ------------------------------------------------------------------------- */

static void load_or_die(const char *path, int shard, int nshards, lin_data *d)
{
    char err[512];
    lin_read_opts o = {.skip_bad = cfg.skip_bad, .bias = cfg.bias, .label_col = cfg.label_col,
                       .progress_s = 2};
    if (lin_data_load_opts(path, cfg.fmt, shard, nshards, &o, d, err, sizeof err) != 0) {
        fprintf(stderr, "pslinear: %s\n", err);
        fflush(NULL);
        _exit(1);
    }
    if (d->bad_lines)
        fprintf(stderr, "pslinear: %s: skipped %" PRIu64 " bad lines (first: %s)\n", path,
                d->bad_lines, err);
}

static int index_data(const lin_data *d, uint64_t **uk, size_t *nu, uint32_t **cols)
{
    int rv = lin_data_unique_keys(d, uk, nu);
    if (rv != 0) return rv;
    if (!(*cols = malloc((d->nnz + 1) * sizeof(uint32_t)))) return PS_ERR_NOMEM;
    return lin_data_columns(d, *uk, *nu, *cols);
}

/* ---- evaluation and replies ----------------------------------------------------------- */

/* Pull the weights of the test keys and score the test shard into hist. */
static int evaluate(lin_worker *lw, uint32_t *hist, double *loss)
{
    float *tw = malloc((lw->ntu * (size_t)lw->width + 1) * sizeof(float));
    if (!tw) return PS_ERR_NOMEM;
    int rv = ps_wait(lw->w, ps_pull(lw->w, lw->tk, lw->ntu, tw, NULL));
    const lin_data *d = &lw->te;
    *loss = 0;
    for (size_t i = 0; rv == 0 && i < d->n; i++) {
        double z = 0;
        for (uint64_t j = d->offsets[i]; j < d->offsets[i + 1]; j++)
            z += tw[(size_t)lw->tcols[j] * lw->width] * (d->vals ? d->vals[j] : 1.0);
        int y = d->labels[i] > 0.5;
        *loss += lin_softplus(y ? -z : z);
        hist[y * LIN_NB + bucket(lin_sigmoid(z))]++;
    }
    free(tw);
    return rv;
}

int lin_reply(lin_worker *lw, double loss, int eval, void **out, size_t *len)
{
    eval = eval && lw->te.n > 0;
    size_t n = sizeof(lin_rep) + (eval ? 2 * LIN_NB * sizeof(uint32_t) : 0);
    uint8_t *buf = calloc(1, n);
    if (!buf) return PS_ERR_NOMEM;
    lin_rep r = {.loss = loss, .n = (double)lw->tr.n, .wait_s = lw->wait_s,
                 .busy_s = lw->busy_s, .grad_keys = lw->grad_keys, .has_hist = (uint64_t)eval,
                 .delay_sum = lw->delay_sum, .delay_n = lw->delay_n};
    ps_traffic tr;
    if (ps_table_traffic(lw->w, &tr) == 0) {
        r.keys_sent = tr.keys_sent;
        r.keys_filtered = tr.keys_filtered;
        r.bytes_sent = tr.bytes_sent_wire;
    }
    if (eval) {
        int rv = evaluate(lw, (uint32_t *)(buf + sizeof r), &r.tloss);
        if (rv != 0) {
            free(buf);
            return rv;
        }
        r.tn = (double)lw->te.n;
    }
    memcpy(buf, &r, sizeof r);
    *out = buf;
    *len = n;
    return 0;
}

/* ---- FTRL / SGD: asynchronous minibatches ------------------------------------------- */

static int ftrl_epoch(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                      size_t *reply_len)
{
    (void)caller;
    lin_worker *lw = arg;
    if (len != sizeof(lin_req)) return PS_ERR_INVAL;
    lin_req q;
    memcpy(&q, req, sizeof q);
    const lin_data *d = &lw->tr;
    size_t mb = (size_t)lw->cfg->minibatch, cap = 0;
    if (mb == 0) mb = d->n / 100 < 1 ? 1 : d->n / 100 > 1000 ? 1000 : d->n / 100;
    for (size_t s = 0; s < d->n; s += mb) {
        size_t e = s + mb < d->n ? s + mb : d->n;
        if (d->offsets[e] - d->offsets[s] > cap) cap = d->offsets[e] - d->offsets[s];
    }
    int32_t *pos = malloc((lw->nu + 1) * sizeof(int32_t));
    uint32_t *mc = malloc((cap + 1) * sizeof(uint32_t));
    uint64_t *mk = malloc((cap + 1) * sizeof(uint64_t));
    float *mw = malloc((cap + 1) * sizeof(float)), *mg = calloc(cap + 1, sizeof(float));
    int rv = pos && mc && mk && mw && mg ? 0 : PS_ERR_NOMEM;
    double t0 = lin_now(), loss = 0;
    if (pos) memset(pos, 0xff, (lw->nu + 1) * sizeof(int32_t));
    for (size_t s = 0; rv == 0 && s < d->n; s += mb) {
        size_t e = s + mb < d->n ? s + mb : d->n, nk = 0;
        for (uint64_t j = d->offsets[s]; j < d->offsets[e]; j++) {
            uint32_t c = lw->cols[j];
            if (pos[c] < 0) {
                pos[c] = (int32_t)nk;
                mc[nk] = c;
                mk[nk++] = lw->uk[c];
            }
        }
        double tw = lin_now();
        if ((rv = ps_wait(lw->w, ps_pull(lw->w, mk, nk, mw, NULL))) != 0) break;
        lw->wait_s += lin_now() - tw;
        double scale = lw->cfg->algo == ALGO_SGD ? 1.0 / (double)(e - s) : 1.0;
        for (size_t i = s; i < e; i++) {
            double z = 0;
            for (uint64_t j = d->offsets[i]; j < d->offsets[i + 1]; j++)
                z += mw[pos[lw->cols[j]]] * (d->vals ? d->vals[j] : 1.0);
            int y = d->labels[i] > 0.5;
            loss += lin_softplus(y ? -z : z);
            double r = (lin_sigmoid(z) - y) * scale;
            for (uint64_t j = d->offsets[i]; j < d->offsets[i + 1]; j++)
                mg[pos[lw->cols[j]]] += (float)(r * (d->vals ? d->vals[j] : 1.0));
        }
        lw->grad_keys += nk;
        int64_t ts = ps_push(lw->w, mk, nk, mg, NULL); /* async; the table bounds the delay */
        if (ts < 0) rv = (int)ts;
        for (size_t k = 0; k < nk; k++) pos[mc[k]] = -1, mg[k] = 0;
    }
    if (rv == 0) rv = ps_wait_all(lw->w);
    free(pos), free(mc), free(mk), free(mw), free(mg);
    lw->busy_s += lin_now() - t0;
    return rv ? rv : lin_reply(lw, loss, q.eval, reply, reply_len);
}

/* "info": this worker's shard sizes, lin_info. */
static int info_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                     size_t *reply_len)
{
    (void)caller, (void)req, (void)len;
    lin_worker *lw = arg;
    lin_info *r = calloc(1, sizeof *r);
    if (!r) return PS_ERR_NOMEM;
    r->n = (double)lw->tr.n;
    for (size_t i = 0; i < lw->tr.n; i++) r->pos += lw->tr.labels[i] > 0.5;
    r->tn = (double)lw->te.n;
    *reply = r;
    *reply_len = sizeof *r;
    return 0;
}

static int setl1_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                      size_t *reply_len)
{
    (void)arg, (void)caller, (void)reply, (void)reply_len;
    if (len != sizeof(double)) return PS_ERR_INVAL;
    memcpy(&cfg.l1, req, sizeof(double));
    bpg_set_l1(cfg.l1);
    return 0;
}

int lin_model_reply(const lin_worker *lw, const float *w, size_t stride, void **out,
                    size_t *len)
{
    uint8_t *buf = malloc(lw->nu * 12 + 1);
    if (!buf) return PS_ERR_NOMEM;
    size_t n = 0;
    for (size_t c = 0; c < lw->nu; c++) {
        float v = w[c * stride];
        if (v == 0) continue;
        memcpy(buf + n * 12, &lw->uk[c], 8);
        memcpy(buf + n * 12 + 8, &v, 4);
        n++;
    }
    *out = buf;
    *len = n * 12;
    return 0;
}

/* "model": the non-zero weights of this worker's keys (lin_model_reply). */
static int model_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                      size_t *reply_len)
{
    (void)caller, (void)req, (void)len;
    lin_worker *lw = arg;
    float *w = malloc((lw->nu * (size_t)lw->width + 1) * sizeof(float));
    if (!w) return PS_ERR_NOMEM;
    int rv = ps_wait(lw->w, ps_pull(lw->w, lw->uk, lw->nu, w, NULL));
    if (rv == 0) rv = lin_model_reply(lw, w, (size_t)lw->width, reply, reply_len);
    free(w);
    return rv;
}

/* ---- the scheduler ----------------------------------------------------------------------- */

typedef lin_kw kw;
static int kw_cmp(const void *a, const void *b)
{
    uint64_t x = ((const kw *)a)->k, y = ((const kw *)b)->k;
    return x < y ? -1 : x > y;
}

typedef struct summary {
    double loss, n, wait, tloss, tn, auc, elapsed, delay_sum, delay_n;
    uint64_t keys_sent, keys_filtered, bytes, grad_keys;
    int has_test;
} summary;

static double *hist;

/* Workers that die are left out: their shard no longer counts (the BSP
 * table stops waiting for them too), and training goes on with the rest.
 * A worker that joins the running job (FTRL/SGD; it takes the shard of a
 * dead one) counts from its first answer on. */
#define MAX_IDS 4096
static double shard_n[MAX_IDS]; /* examples per worker node id ("info") */
static uint8_t gone[MAX_IDS];
static double n_live;           /* examples of the live workers' shards */

/* The status of a call to the workers, forgiving workers that died. */
static int survive(int rv, const ps_reply *rep, int n)
{
    if (rv != PS_ERR_PEER || n == 0) return rv;
    for (int i = 0; i < n; i++) {
        uint32_t id = rep[i].node;
        if (rep[i].status == 0) continue;
        if (rep[i].status != PS_ERR_PEER || id >= MAX_IDS) return rep[i].status;
        if (gone[id]) continue;
        gone[id] = 1;
        n_live -= shard_n[id];
        printf("pslinear: worker node %u died; its %.0f examples are left out from here on\n",
               id, shard_n[id]);
    }
    return 0;
}

/* Merge the replies of call ts into *s (and print a failure). */
static int gather(int64_t ts, summary *s)
{
    const ps_reply *rep;
    int n, rv = ps_call_wait(ts, &rep, &n);
    rv = survive(rv, rep, n);
    memset(s, 0, sizeof *s);
    if (rv != 0) {
        fprintf(stderr, "pslinear: a worker failed: %s\n", ps_strerror(rv));
        ps_call_release(ts);
        return rv;
    }
    memset(hist, 0, 2 * LIN_NB * sizeof(double));
    for (int i = 0; i < n; i++) {
        lin_rep r;
        if (rep[i].len < sizeof r) continue;
        memcpy(&r, rep[i].data, sizeof r);
        uint32_t id = rep[i].node;
        if (id < MAX_IDS && !shard_n[id] && !gone[id] && r.n > 0) { /* joined (ps_join) */
            shard_n[id] = r.n;
            n_live += r.n;
            printf("pslinear: worker node %u joined; its %.0f examples count from here on\n",
                   id, r.n);
        }
        s->loss += r.loss, s->n += r.n, s->wait += r.wait_s, s->tloss += r.tloss, s->tn += r.tn;
        s->keys_sent += r.keys_sent, s->keys_filtered += r.keys_filtered;
        s->bytes += r.bytes_sent, s->grad_keys += r.grad_keys;
        s->delay_sum += r.delay_sum, s->delay_n += r.delay_n;
        if (r.has_hist && rep[i].len == sizeof r + 2 * LIN_NB * sizeof(uint32_t)) {
            const uint8_t *h = (const uint8_t *)rep[i].data + sizeof r;
            for (int k = 0; k < 2 * LIN_NB; k++) {
                uint32_t v;
                memcpy(&v, h + 4 * (size_t)k, 4);
                hist[k] += v;
            }
            s->has_test = 1;
        }
    }
    if (s->has_test) s->auc = lin_auc(hist);
    ps_call_release(ts);
    return 0;
}

int lin_gather_model(const char *fn, lin_kw **out, size_t *nout)
{
    const ps_reply *rep;
    int n;
    int64_t ts = ps_call_group(PS_GROUP_WORKERS, fn, NULL, 0, NULL);
    int rv = ts < 0 ? (int)ts : ps_call_wait(ts, &rep, &n);
    if (ts >= 0) rv = survive(rv, rep, n);
    if (rv != 0) {
        if (ts >= 0) ps_call_release(ts);
        return rv;
    }
    size_t tot = 0, k = 0;
    for (int i = 0; i < n; i++) tot += rep[i].len / 12;
    kw *all = malloc((tot + 1) * sizeof(kw));
    if (!all) {
        ps_call_release(ts);
        return PS_ERR_NOMEM;
    }
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < rep[i].len / 12; j++) {
            const uint8_t *p = (const uint8_t *)rep[i].data + 12 * j;
            memcpy(&all[k].k, p, 8);
            memcpy(&all[k++].w, p + 8, 4);
        }
    ps_call_release(ts);
    qsort(all, k, sizeof(kw), kw_cmp);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || all[u - 1].k != all[i].k) all[u++] = all[i];
    *out = all;
    *nout = u;
    return 0;
}

/* Collect the model from the workers: nnz of the union, and --save. */
static int collect_model(double *nnz)
{
    kw *all;
    size_t u;
    int rv = lin_gather_model("model", &all, &u);
    if (rv != 0) return rv;
    *nnz = (double)u;
    if (cfg.save) rv = lin_model_save(&cfg, all, u);
    free(all);
    return rv;
}

/* The objective of the summary: mean loss + l1 |w|_1 + l2/2 |w|^2.  bpg: l1
 * and l2 regularize the mean loss; ftrl/sgd: they are per example (FTRL
 * applies them to the summed gradients), so in mean units they are l1 / N and
 * l2 / N, and the loss is the epoch's progressive loss (each example scored
 * before its minibatch's update). */
static double objective(const summary *s, double l1n, double sq)
{
    double n = s->n > 0 ? s->n : 1, k = cfg.algo == ALGO_BPG ? 1.0 : 1.0 / n;
    return s->loss / n + k * (cfg.l1 * l1n + 0.5 * cfg.l2 * sq);
}

/* A JSON number, or null for nan / inf (JSON has neither). */
static const char *jnum(char *buf, size_t cap, const char *fmt, double v)
{
    if (!isfinite(v)) return "null";
    snprintf(buf, cap, fmt, v);
    return buf;
}

/* The progress figures for the scheduler's status page (PS_STATUS; psrun
 * --status): best effort, a value that is not finite is refused and left out. */
static void report(const summary *s, double obj, double nnz, double filtered_pct)
{
    ps_report("objective", obj);
    ps_report("nnz", nnz);
    ps_report("keys_filtered_pct", filtered_pct);
    if (s->has_test) {
        ps_report("test_auc", s->auc);
        ps_report("test_logloss", s->tloss / s->tn);
    }
}

static void progress(const char *what, long t, const summary *s, double obj, double nnz)
{
    double off = (double)s->grad_keys;
    report(s, obj, nnz, off > 0 ? 100.0 * (double)s->keys_filtered / off : 0.0);
    printf("%s %4ld  objective %.6f  nnz %7.0f", what, t, obj, nnz);
    if (s->has_test) printf("  test logloss %.5f auc %.5f", s->tloss / s->tn, s->auc);
    printf("  keys sent %" PRIu64 " filtered %.1f%%  %.1fs  idle %.1f%%\n", s->keys_sent,
           off > 0 ? 100.0 * (double)s->keys_filtered / off : 0.0, s->elapsed,
           s->elapsed > 0 ? 100.0 * s->wait / (ps_num_workers() * s->elapsed) : 0.0);
    if (cfg.json) /* full precision, for tests that compare trajectories */
    {
        char b[40];
        printf("{\"%s\": %ld, \"objective\": %s, \"nnz\": %.0f}\n", what, t,
               jnum(b, sizeof b, "%.17g", obj), nnz);
    }
    fflush(stdout);
}

/* Refuse training sets a model cannot be fit on, and an empty test set:
 * 0 or PS_ERR_INVAL (said on stderr). */
static int check_sets(const lin_info *t)
{
    const char *why = NULL;
    if (t->n == 0) why = "no examples: the training set is empty";
    else if (t->pos == 0) why = "every training example has label 0 (one class): nothing to learn";
    else if (t->pos == t->n) why = "every training example has label 1 (one class): nothing to learn";
    if (why) {
        fprintf(stderr, "pslinear: %s: %s\n", cfg.train, why);
        return PS_ERR_INVAL;
    }
    if (cfg.test && t->tn == 0) {
        fprintf(stderr, "pslinear: %s: no examples: the test set is empty\n", cfg.test);
        return PS_ERR_INVAL;
    }
    return 0;
}

/* The last lines: "final: ..." and with --json one JSON object (null for
 * what has no value: the test metrics without --test, a non-finite number). */
static void final_summary(const summary *s, const summary *last, double train_s, double nnz,
                          double obj, int iters)
{
    double off = (double)s->grad_keys, ll = last->tn ? last->tloss / last->tn : NAN;
    double fpct = off > 0 ? 100.0 * (double)s->keys_filtered / off : 0.0;
    double idle = train_s > 0 ? 100.0 * s->wait / (ps_num_workers() * train_s) : 0.0;
    printf("final:");
    if (last->has_test) printf(" test logloss %.5f auc %.5f ", ll, last->auc);
    printf(" objective %.6f  train %.1fs  nnz %.0f  keys filtered %.1f%%  idle %.1f%%  "
           "sent %.1f MB\n", obj, train_s, nnz, fpct, idle, (double)s->bytes / 1e6);
    if (!cfg.json) return;
    char a[40], l[40], o[40];
    printf("{\"algo\": \"%s\", \"test_auc\": %s, \"test_logloss\": %s, "
           "\"train_seconds\": %.3f, \"nnz\": %.0f, \"keys_filtered_pct\": %.2f, "
           "\"idle_pct\": %.2f, \"bytes_sent\": %" PRIu64 ", \"keys_sent\": %" PRIu64
           ", \"objective\": %s, \"examples\": %.0f, \"iterations\": %d, \"mean_delay\": %.3f}\n",
           cfg.algo == ALGO_BPG ? "bpg" : cfg.algo == ALGO_FTRL ? "ftrl" : "sgd",
           last->has_test ? jnum(a, sizeof a, "%.6f", last->auc) : "null",
           last->has_test ? jnum(l, sizeof l, "%.6f", ll) : "null", train_s, nnz, fpct, idle,
           s->bytes, s->keys_sent, jnum(o, sizeof o, "%.8f", obj), s->n, iters,
           s->delay_n > 0 ? s->delay_sum / s->delay_n : 0.0);
}

/* --tol: BPG stops once the objective fell by at most tol (relative) over
 * one sweep of the B blocks.  tau 0: objs[done - B] to objs[done] (the
 * objective falls monotonically, so a rise is rounding at the optimum).
 * tau > 0: the objective of a progress line mixes margins up to tau
 * iterations old with the servers' current norms and wobbles, so the means
 * of the last two windows of L = B + tau iterations are compared, and only a
 * fall (>= 0) of at most tol * L / B stops. */
static int converged(const double *objs, int start, int done)
{
    int B = cfg.blocks, L = B + cfg.tau;
    if (cfg.algo != ALGO_BPG || cfg.tol <= 0) return 0;
    if (cfg.tau == 0)
        return done - B >= start && objs[done - B] - objs[done] <= cfg.tol * fabs(objs[done]);
    if (done - 2 * L + 1 < start) return 0;
    double old = 0, now = 0;
    for (int i = 0; i < L; i++) old += objs[done - 2 * L + 1 + i], now += objs[done - L + 1 + i];
    double fall = (old - now) / L;
    return fall >= 0 && fall <= cfg.tol * fabs(now / L) * L / B;
}

static int run_scheduler(void)
{
    const ps_reply *rep;
    int n;
    double N = 0, t0 = lin_now();
    int64_t ts = ps_call_group(PS_GROUP_WORKERS, "info", NULL, 0, NULL);
    int rv = ts < 0 ? (int)ts : ps_call_wait(ts, &rep, &n);
    if (rv != 0) return rv;
    lin_info tot = {0};
    for (int i = 0; i < n; i++)
        if (rep[i].len == sizeof(lin_info)) {
            lin_info in;
            memcpy(&in, rep[i].data, sizeof in);
            tot.n += in.n, tot.pos += in.pos, tot.tn += in.tn;
            if (rep[i].node < MAX_IDS) shard_n[rep[i].node] = in.n;
        }
    N = tot.n;
    n_live = N;
    ps_call_release(ts);
    if ((rv = check_sets(&tot)) != 0) return rv;
    if (!(hist = calloc(2 * LIN_NB, sizeof(double)))) return PS_ERR_NOMEM;
    if (cfg.l1 < 0) { /* bpg default: l1 = 1/N, like liblinear -s 6 -c 1 */
        cfg.l1 = N > 0 ? 1.0 / N : 0;
        ts = ps_call_group(PS_GROUP_SERVERS | PS_GROUP_WORKERS, "setl1", &cfg.l1, sizeof(double),
                           NULL);
        if ((rv = ts < 0 ? (int)ts : ps_call_wait(ts, NULL, NULL)) != 0) return rv;
        ps_call_release(ts);
    }
    printf("pslinear: %s on %.0f examples, %d workers, %d servers, l1 %.3g l2 %.3g lr %.3g "
           "tau %d%s\n", cfg.algo == ALGO_BPG ? "bpg" : cfg.algo == ALGO_FTRL ? "ftrl" : "sgd",
           N, ps_num_workers(), ps_num_servers(), cfg.l1, cfg.l2, cfg.lr, cfg.tau,
           cfg.kkt ? ", KKT filter" : "");
    summary s = {0}, last = {0};
    double nnz = 0, l1n = 0, sq = 0;
    int T = cfg.algo == ALGO_BPG ? cfg.iters : cfg.epochs, start, done;
    if ((rv = lin_ckpt_resume(&cfg, &start)) != 0) return rv;
    int64_t *calls = calloc((size_t)T, sizeof(int64_t));
    double *objs = calloc((size_t)T, sizeof(double));
    int stop = 0, t;
    if (!calls || !objs) rv = PS_ERR_NOMEM;
    for (t = done = start; t < T && rv == 0 && !stop; t++) {
        int64_t dep = t - cfg.tau - 1 >= start ? calls[t - cfg.tau - 1] : -1;
        ps_task_opts o = {.deps = &dep, .ndeps = dep >= 0};
        lin_req q = {.t = t, .block = cfg.blocks > 0 ? t % cfg.blocks : 0, .ntotal = n_live,
                     .eval = t == T - 1 || (cfg.eval_every && (t + 1) % cfg.eval_every == 0),
                     .sync = lin_ckpt_due(&cfg, t)};
        calls[t] = ps_call_group(PS_GROUP_WORKERS, cfg.algo == ALGO_BPG ? "iter" : "epoch",
                                 &q, sizeof q, &o);
        if (calls[t] < 0) rv = (int)calls[t];
        /* gather what tau allows; all of it (nothing in flight) before a checkpoint */
        int ck = lin_ckpt_due(&cfg, t);
        for (; rv == 0 && done <= t && (done <= t - cfg.tau || t == T - 1 || ck); done++) {
            if ((rv = gather(calls[done], &s)) != 0) break;
            s.elapsed = lin_now() - t0;
            bpg_server_stats(&nnz, &l1n, &sq);
            progress(cfg.algo == ALGO_BPG ? "iter" : "epoch", done, &s,
                     objs[done] = objective(&s, l1n, sq), nnz);
            if (s.has_test) last = s;
            if (!stop && converged(objs, start, done)) stop = done + 1;
        }
        if (rv == 0 && ck) rv = lin_ckpt_write(&cfg, t);
    }
    /* stopped on the tolerance: collect the iterations in flight, then one
     * "sync" call applies every update and measures the final model */
    for (; rv == 0 && stop && done < t; done++) {
        if ((rv = gather(calls[done], &s)) != 0) break;
        s.elapsed = lin_now() - t0;
        bpg_server_stats(&nnz, &l1n, &sq);
        progress("iter", done, &s, objective(&s, l1n, sq), nnz);
    }
    if (rv == 0 && stop && t < T) {
        printf("pslinear: converged at iteration %d: the objective fell by less than --tol %g "
               "(relative) over the last %d iterations\n", stop - 1, cfg.tol, cfg.blocks);
        lin_req q = {.t = t, .eval = 1, .ntotal = n_live, .sync = 1};
        int64_t sc = ps_call_group(PS_GROUP_WORKERS, "sync", &q, sizeof q, NULL);
        if ((rv = sc < 0 ? (int)sc : gather(sc, &s)) == 0) {
            bpg_server_stats(&nnz, &l1n, &sq);
            if (s.has_test) last = s;
        }
    }
    T = t;
    free(calls);
    free(objs);
    double train_s = lin_now() - t0;
    if (rv == 0) rv = collect_model(&nnz);
    if (rv != 0) {
        fprintf(stderr, "pslinear: training failed: %s\n", ps_strerror(rv));
        return rv;
    }
    final_summary(&s, &last, train_s, nnz, objective(&s, l1n, sq), T);
    fflush(stdout);
    free(hist);
    return 0;
}

/* ---- local modes --------------------------------------------------------------------------- */

static int run_export(void)
{
    lin_data d;
    load_or_die(cfg.train, 0, 1, &d);
    FILE *f = strcmp(cfg.export_path, "-") ? fopen(cfg.export_path, "w") : stdout;
    if (!f) {
        fprintf(stderr, "pslinear: %s: %s\n", cfg.export_path, strerror(errno));
        return 1;
    }
    int rv = lin_data_write_libsvm(&d, f, (unsigned)cfg.bits);
    if (f != stdout && fclose(f) != 0) rv = PS_ERR_SYS;
    lin_data_free(&d);
    if (rv != 0) fprintf(stderr, "pslinear: writing %s: %s\n", cfg.export_path, ps_strerror(rv));
    return rv ? 1 : 0;
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    parse_flags(argc, argv);
    if (cfg.predict) return lin_predict(&cfg);
    if (cfg.export_path) return run_export();
    W.cfg = &cfg;
    ps_register("info", info_call, &W);
    ps_register("iter", bpg_iter, &W);
    ps_register("sync", bpg_sync, &W);
    ps_register("epoch", ftrl_epoch, &W);
    ps_register("model", model_call, &W);
    ps_register("wstat", bpg_wstat, &W.w);
    ps_register("setl1", setl1_call, NULL);
    ps_register("resume", bpg_resume, &W);
    ps_register("restored", lin_ckpt_restored, NULL);
    int rv = ps_start();
    if (rv != 0) {
        fprintf(stderr, "pslinear: cannot join the cluster: %s\n", ps_strerror(rv));
        return 1;
    }
    ps_table_opts o;
    if (cfg.algo == ALGO_BPG) {
        bpg_table_opts(&cfg, &o); /* l1 auto (< 0): the scheduler sends 1/N ("setl1") */
    } else {
        ps_table_opts_init(&o);
        o.update = cfg.algo == ALGO_FTRL ? PS_UPDATE_FTRL : PS_UPDATE_SGD;
        o.lr = cfg.lr, o.beta = cfg.beta, o.l1 = cfg.l1, o.l2 = cfg.l2;
        o.consistency = PS_BOUNDED_DELAY;
        o.tau = cfg.tau;
    }
    o.replication = cfg.replication;
    W.width = o.width;
    if ((rv = ps_table_open("w", &o, &W.w)) != 0) {
        fprintf(stderr, "pslinear: cannot open table w: %s\n", ps_strerror(rv));
        ps_finalize();
        return 1;
    }
    if (lin_ckpt_open(&cfg, W.w) != 0) { /* before the barrier: no push yet */
        fflush(NULL);
        _exit(1);
    }
    if (ps_my_role() == PS_ROLE_WORKER) {
        if (cfg.filters && (rv = ps_table_set_filters(W.w, cfg.filters)) != 0) {
            fprintf(stderr, "pslinear: bad --filters '%s': %s\n", cfg.filters, ps_strerror(rv));
            fflush(NULL);
            _exit(2);
        }
        int r = ps_my_rank(), nw = ps_num_workers();
        if (r >= nw) { /* joined late with no shard free: nothing to work on */
            fprintf(stderr, "pslinear: this worker joined as rank %d, but the data has %d "
                    "shards and none is free (no worker died)\n", r, nw);
            ps_leave();
            ps_finalize();
            return 1;
        }
        load_or_die(cfg.train, r, nw, &W.tr);
        if (cfg.test) load_or_die(cfg.test, r, nw, &W.te);
        else lin_data_init(&W.te);
        rv = index_data(&W.tr, &W.uk, &W.nu, &W.cols);
        if (rv == 0) rv = index_data(&W.te, &W.tk, &W.ntu, &W.tcols);
        if (rv == 0 && cfg.algo == ALGO_BPG) rv = bpg_worker_setup(&W);
        if (rv != 0) {
            fprintf(stderr, "pslinear: worker setup: %s\n", ps_strerror(rv));
            fflush(NULL);
            _exit(1);
        }
    }
    /* a node started into the running job (no PS_RANK) joins it now; it
     * skips the barrier the others passed */
    int late = ps_my_role() == PS_ROLE_SCHEDULER ? 0 : ps_join();
    if (late < 0) {
        fprintf(stderr, "pslinear: cannot join the running job: %s\n", ps_strerror(late));
        fflush(NULL);
        _exit(1);
    }
    if (!late && (rv = ps_barrier(PS_GROUP_ALL)) != 0) {
        fprintf(stderr, "pslinear: barrier: %s\n", ps_strerror(rv));
        return 1;
    }
    int status = 0;
    if (ps_my_role() == PS_ROLE_SCHEDULER) status = run_scheduler() ? 1 : 0;
    int frv = ps_finalize();
    return ps_exit_code(status || frv);
}
