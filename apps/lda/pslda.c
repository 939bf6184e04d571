/*
 * pslda.c -- topic modeling (LDA by collapsed Gibbs sampling) on libps:
 * flags, the servers' walks over their counts, and main.  The scheduler's
 * driver is driver.c, a worker's sweeps worker.c, the sampler sampler.c, the
 * corpus corpus.c, evaluation and model files eval.c.
 *
 * Run under psrun (every role runs this binary):
 *   psrun -s 2 -w 2 -- pslda --train T [--test E] -k 20 --sweeps 100
 * The servers hold the word-topic counts and the topic totals (lda.h); each
 * worker holds every W-th document and its topics.  The scheduler drives
 * the sweeps with remote calls, as pslinear does: by default (eventual
 * consistency) it sends every sweep at once and each worker runs them as
 * fast as it can; with --tau N, sweep t starts only once every worker
 * finished sweep t - N - 1 (bounded delay; --tau 0 is bulk synchronous).
 * Every --eval-every sweeps (and the last) the scheduler prints the
 * collapsed log-likelihood per token (the document part from the workers,
 * the word part from the servers) and, with --test, the held-out
 * perplexity.  --check: at the end, the counts on the servers must sum,
 * per topic, to the topics the workers hold, and to the number of tokens;
 * pslda exits 3 if not.
 *
 * Bad input never crashes a node: the scheduler and the workers read the
 * training file (to build the vocabulary) before joining, and a bad flag, a
 * missing, empty or binary file exits nonzero with one clear message.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lda.h"
#define FLAGS_PROG "pslda"
#include "../common/flags.h"

static lda_cfg cfg;
static lda_worker W;
static ps_table *wt, *tt; /* this node's handles (servers walk them) */

/* ---- flags ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
        "Usage: psrun -s S -w W -- pslda --train FILE [--test FILE] [options]\n\n"
        "Topic modeling: LDA by collapsed Gibbs sampling (SparseLDA) on a libps cluster.\n"
        "Input: one document per line of plain text; words are runs of ASCII letters,\n"
        "lower-cased; a line with no word of the vocabulary is skipped and counted.\n"
        "  -k, --topics K        number of topics, 2..10000 (default 20)\n"
        "  --alpha X             document-topic prior (default 0.1)\n"
        "  --beta X              topic-word prior (default 0.01)\n"
        "  --sweeps N            Gibbs sweeps over the corpus (default 100)\n"
        "  --seed N              random seed (default 1)\n"
        "  --train FILE          training documents (required)\n"
        "  --test FILE           held-out documents: perplexity by document completion\n"
        "  --stopwords FILE      words to drop, one per line\n"
        "  --min-len N           drop words shorter than N letters (default 3)\n"
        "  --vocab-min-count N   keep words seen at least N times (default 5)\n"
        "  --vocab-max N         keep the N most frequent words (default 0: all)\n"
        "  --tau N               bounded delay: sweep t waits until every worker finished\n"
        "                        sweep t-N-1 (default: eventual consistency, no wait)\n"
        "  --blocks B            pull the word-topic rows in B blocks of the vocabulary\n"
        "                        (less memory per worker; default 1)\n"
        "  --eval-every N        log-likelihood (and held-out perplexity) every N sweeps\n"
        "                        and after the last (default 10; 0: the last only)\n"
        "  --fold-iters N        fixed-point rounds of document completion (default 30)\n"
        "  --save PREFIX         write PREFIX.topics.txt (top words per topic) and\n"
        "                        PREFIX.phi.tsv (word, then p(word | topic) per topic)\n"
        "  --top N               words per topic in PREFIX.topics.txt (default 20)\n"
        "  --filters SPEC        ps_table_set_filters spec of both tables on every node\n"
        "                        (default zstd: rows of counts are mostly zeros; none: off)\n"
        "  --check               verify at the end that the servers' counts sum to the\n"
        "                        workers' topics and to the number of tokens (exit 3 if not)\n"
        "  --json                also print each progress line and a summary as JSON\n"
        "  -h, --help            this text\n");
}

static void parse_flags(int argc, char **argv)
{
    enum { O_ALPHA = 256, O_BETA, O_SWEEPS, O_SEED, O_TRAIN, O_TEST, O_VMIN, O_VMAX, O_STOP,
           O_SAVE, O_JSON, O_CHECK, O_BLOCKS, O_TAU, O_MINLEN, O_TOP, O_EVAL, O_FOLD, O_FILTERS };
    static const struct option opts[] = {
        {"topics", 1, 0, 'k'}, {"alpha", 1, 0, O_ALPHA}, {"beta", 1, 0, O_BETA},
        {"sweeps", 1, 0, O_SWEEPS}, {"seed", 1, 0, O_SEED}, {"train", 1, 0, O_TRAIN},
        {"test", 1, 0, O_TEST}, {"vocab-min-count", 1, 0, O_VMIN},
        {"vocab-max", 1, 0, O_VMAX}, {"stopwords", 1, 0, O_STOP}, {"save", 1, 0, O_SAVE},
        {"json", 0, 0, O_JSON}, {"check", 0, 0, O_CHECK}, {"blocks", 1, 0, O_BLOCKS},
        {"tau", 1, 0, O_TAU}, {"min-len", 1, 0, O_MINLEN}, {"top", 1, 0, O_TOP},
        {"eval-every", 1, 0, O_EVAL}, {"fold-iters", 1, 0, O_FOLD},
        {"filters", 1, 0, O_FILTERS}, {"help", 0, 0, 'h'},
        {0, 0, 0, 0}};
    cfg = (lda_cfg){.K = 20, .alpha = 0.1, .beta = 0.01, .sweeps = 100, .seed = 1,
                    .vocab_min = 5, .blocks = 1, .tau = -1, .min_len = 3, .top = 20,
                    .eval_every = 10, .fold_iters = 30, .filters = "zstd"};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hk:", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            if (num("topics", optarg, -1e9, 1e9) < 2)
                bad_flag("-k/--topics %s: LDA needs at least 2 topics", optarg);
            cfg.K = (int)num("topics", optarg, 2, 10000);
            break;
        case O_ALPHA: cfg.alpha = num("alpha", optarg, 1e-9, 1e6); break;
        case O_BETA: cfg.beta = num("beta", optarg, 1e-9, 1e6); break;
        case O_SWEEPS: cfg.sweeps = (int)num("sweeps", optarg, 1, 1e6); break;
        case O_SEED: cfg.seed = (uint64_t)num("seed", optarg, 0, 9e15); break;
        case O_TRAIN: cfg.train = optarg; break;
        case O_TEST: cfg.test = optarg; break;
        case O_VMIN: cfg.vocab_min = (long)num("vocab-min-count", optarg, 1, 1e12); break;
        case O_VMAX: cfg.vocab_max = (long)num("vocab-max", optarg, 0, 1e9); break;
        case O_STOP: cfg.stopwords = optarg; break;
        case O_SAVE: cfg.save = optarg; break;
        case O_JSON: cfg.json = 1; break;
        case O_CHECK: cfg.check = 1; break;
        case O_BLOCKS: cfg.blocks = (int)num("blocks", optarg, 1, 4096); break;
        case O_TAU: cfg.tau = (int)num("tau", optarg, 0, 1e6); break;
        case O_MINLEN: cfg.min_len = (int)num("min-len", optarg, 1, 40); break;
        case O_TOP: cfg.top = (int)num("top", optarg, 1, 1e6); break;
        case O_EVAL: cfg.eval_every = (int)num("eval-every", optarg, 0, 1e6); break;
        case O_FILTERS: cfg.filters = strcmp(optarg, "none") ? optarg : ""; break;
        case O_FOLD: cfg.fold_iters = (int)num("fold-iters", optarg, 1, 1e5); break;
        case 'h': usage(stdout); exit(0);
        default: bad_flag("unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) bad_flag("unexpected argument '%s'", argv[optind]);
    if (!cfg.train) bad_flag("%s is required", "--train FILE");
    if (cfg.save && !*cfg.save) bad_flag("%s: empty prefix", "--save");
}

/* ---- servers: walks over the counts they hold ------------------------------------------- */

/* A server's walk for "counts" (reply layout: lda.h). */
typedef struct walk {
    int K;
    double beta, wll;    /* sum over counts n > 0 of lgG(beta + n) - lgG(beta) */
    int64_t neg, has_tot; /* negative counts seen; the totals key is here */
    int64_t *col, *tot;  /* [K] column sums of lda_wt; lda_t's totals */
} walk;

static int walk_wt(void *arg, uint64_t key, const void *vals)
{
    (void)key;
    walk *w = arg;
    const int64_t *v = vals;
    double lgb = lgamma(w->beta);
    for (int k = 0; k < w->K; k++) {
        w->col[k] += v[k];
        if (v[k] < 0) w->neg++;
        else if (v[k] > 0) w->wll += lgamma(w->beta + (double)v[k]) - lgb;
    }
    return 0;
}

static int walk_tt(void *arg, uint64_t key, const void *vals)
{
    walk *w = arg;
    if (key != LDA_TOTALS_KEY) return 0;
    memcpy(w->tot, vals, (size_t)w->K * sizeof(int64_t));
    w->has_tot = 1;
    return 0;
}

/* "counts": sums over the keys this server serves (lda.h). */
static int counts_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                       size_t *reply_len)
{
    (void)arg, (void)caller, (void)req, (void)len;
    size_t K = (size_t)cfg.K, n = (3 + 2 * K) * 8;
    uint8_t *buf = calloc(1, n);
    if (!buf) return PS_ERR_NOMEM;
    walk w = {.K = cfg.K, .beta = cfg.beta, .col = (int64_t *)(void *)(buf + 24),
              .tot = (int64_t *)(void *)(buf + 24 + 8 * K)};
    int rv = ps_table_foreach(wt, walk_wt, &w);
    if (rv == 0) rv = ps_table_foreach(tt, walk_tt, &w);
    if (rv != 0) return free(buf), rv;
    memcpy(buf, &w.wll, 8);
    memcpy(buf + 8, &w.neg, 8);
    memcpy(buf + 16, &w.has_tot, 8);
    *reply = buf;
    *reply_len = n;
    return 0;
}

/* ---- workers' calls ------------------------------------------------------------------------ */

static lda_info my_info;

static int info_call(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                     size_t *reply_len)
{
    (void)arg, (void)caller, (void)req, (void)len;
    lda_info *r = malloc(sizeof *r);
    if (!r) return PS_ERR_NOMEM;
    *r = my_info;
    *reply = r;
    *reply_len = sizeof *r;
    return 0;
}

/* ---- main ---------------------------------------------------------------------------------- */

static void die_input(const char *err)
{
    fprintf(stderr, "pslda: %s\n", err);
    fflush(NULL);
    exit(1);
}

/* Before joining: the vocabulary (scheduler and workers), and a worker's
 * documents; every input error ends the process here. */
static void read_input(ps_role role, int rank, int nw)
{
    char err[512];
    uint64_t ntok;
    if (lda_vocab_build(&cfg, &W.voc, &ntok, err, sizeof err) != 0) die_input(err);
    my_info.vocab = (double)W.voc.n;
    my_info.corpus_tokens = (double)ntok;
    if (role != PS_ROLE_WORKER) return;
    if (lda_docs_load(&cfg, cfg.train, &W.voc, rank, nw, &W.tr, err, sizeof err) != 0)
        die_input(err);
    if (cfg.test && lda_docs_load(&cfg, cfg.test, &W.voc, rank, nw, &W.te, err, sizeof err))
        die_input(err);
    my_info = (lda_info){.vocab = (double)W.voc.n, .tokens = (double)W.tr.ntok,
                         .docs = (double)W.tr.n, .empty = (double)W.tr.empty,
                         .test_docs = (double)W.te.n, .test_tokens = (double)W.te.ntok,
                         .test_empty = (double)W.te.empty, .corpus_tokens = (double)ntok};
}

static ps_role env_role(int *rank)
{
    const char *r = getenv("PS_ROLE"), *k = getenv("PS_RANK");
    if (!r) r = getenv("DMLC_ROLE");
    *rank = k ? atoi(k) : 0;
    if (r && !strcmp(r, "server")) return PS_ROLE_SERVER;
    if (r && !strcmp(r, "worker")) return PS_ROLE_WORKER;
    return PS_ROLE_SCHEDULER;
}

static int open_tables(void)
{
    ps_table_opts o;
    ps_table_opts_init(&o);
    o.dtype = PS_I64;
    o.width = cfg.K;
    o.update = PS_UPDATE_ADD;
    o.consistency = PS_EVENTUAL;
    int rv = ps_table_open("lda_wt", &o, &wt);
    if (rv == 0) rv = ps_table_open("lda_t", &o, &tt);
    if (rv != 0) fprintf(stderr, "pslda: cannot open the count tables: %s\n", ps_strerror(rv));
    if (rv == 0 && ps_my_role() != PS_ROLE_SCHEDULER && *cfg.filters &&
        ((rv = ps_table_set_filters(wt, cfg.filters)) != 0 ||
         (rv = ps_table_set_filters(tt, cfg.filters)) != 0))
        fprintf(stderr, "pslda: bad --filters '%s': %s\n", cfg.filters, ps_strerror(rv));
    W.wt = wt, W.tt = tt;
    return rv;
}

int main(int argc, char **argv)
{
    parse_flags(argc, argv);
    int rank;
    ps_role role = env_role(&rank);
    const char *nws = getenv("PS_NUM_WORKERS");
    int nw = nws && atoi(nws) > 0 ? atoi(nws) : 1;
    W.cfg = &cfg;
    if (role != PS_ROLE_SERVER) read_input(role, rank, nw);
    ps_register("info", info_call, NULL);
    ps_register("sweep", lda_sweep_call, &W);
    ps_register("topics", lda_topics_call, &W);
    ps_register("save", lda_save_call, &W);
    ps_register("counts", counts_call, NULL);
    int rv = ps_start();
    if (rv != 0) {
        fprintf(stderr, "pslda: cannot join the cluster: %s\n", ps_strerror(rv));
        return 1;
    }
    if (open_tables() != 0) {
        ps_finalize();
        return 1;
    }
    if (ps_my_role() == PS_ROLE_WORKER && ps_my_rank() != rank) {
        fprintf(stderr, "pslda: worker rank %d, expected %d from PS_RANK\n", ps_my_rank(), rank);
        fflush(NULL);
        _exit(1);
    }
    /* every node has the tables open before the first push (the workers'
     * first counts), and every first count is in before the first sweep */
    if ((rv = ps_barrier(PS_GROUP_ALL)) != 0) {
        fprintf(stderr, "pslda: barrier: %s\n", ps_strerror(rv));
        return 1;
    }
    if (ps_my_role() == PS_ROLE_WORKER && (rv = lda_worker_setup(&W)) != 0) {
        fprintf(stderr, "pslda: worker setup: %s\n", ps_strerror(rv));
        fflush(NULL);
        _exit(1);
    }
    if ((rv = ps_barrier(PS_GROUP_ALL)) != 0) {
        fprintf(stderr, "pslda: barrier: %s\n", ps_strerror(rv));
        return 1;
    }
    int status = 0;
    if (ps_my_role() == PS_ROLE_SCHEDULER) status = lda_run_scheduler(&cfg, &my_info);
    int frv = ps_finalize();
    return status == 3 ? 3 : ps_exit_code(status || frv);
}
