/*
 * driver.c -- the scheduler's side of a pslda run: it asks the workers for
 * their shards ("info"), sends the sweeps ("sweep", with a dependency on
 * sweep t - tau - 1 under --tau, none under eventual consistency), gathers
 * them in order and prints one progress line per sweep (log-likelihood per
 * token on evaluating sweeps, held-out perplexity with --test, tokens per
 * second, elapsed), then has worker 0 write the model (--save) and checks
 * the servers' sums (--check).  Every number printed as JSON is finite or
 * null.  Never: a wait without the library's deadlines behind it.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lda.h"

static const lda_cfg *cfg;

typedef struct sweep_sum {
    lda_rep r;           /* summed over workers */
    double loglik;       /* per token; NAN when not evaluated */
    double perplexity;   /* held-out; NAN when not evaluated */
    int nrep;            /* workers that answered */
} sweep_sum;

/* Sum of the servers' "counts" replies: wll, neg, col[K], tot[K]. */
typedef struct counts {
    double wll;
    int64_t neg, has_tot, *col, *tot;
} counts;

static int64_t rd64(const void *p)
{
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int server_counts(counts *c)
{
    size_t K = (size_t)cfg->K;
    const ps_reply *rep;
    int n;
    memset(c->col, 0, K * 8), memset(c->tot, 0, K * 8);
    c->wll = 0, c->neg = c->has_tot = 0;
    int64_t ts = ps_call_group(PS_GROUP_SERVERS, "counts", NULL, 0, NULL);
    int rv = ts < 0 ? (int)ts : ps_call_wait(ts, &rep, &n);
    for (int i = 0; rv == 0 && i < n; i++) {
        const uint8_t *b = rep[i].data;
        if (rep[i].len != LDA_COUNTS_LEN(K)) {
            rv = PS_ERR_PROTO;
            break;
        }
        double w;
        memcpy(&w, b, 8);
        c->wll += w;
        c->neg += rd64(b + 8);
        int has = rd64(b + 16) != 0;
        c->has_tot += has;
        for (size_t k = 0; k < K; k++) {
            c->col[k] += rd64(b + 24 + 8 * k);
            if (has) c->tot[k] = rd64(b + 24 + 8 * (K + k));
        }
    }
    if (ts >= 0) ps_call_release(ts);
    return rv;
}

/* The word part of the collapsed log-likelihood from the servers. */
static double word_loglik(const counts *c, double V)
{
    double vb = V * cfg->beta, ll = c->wll;
    for (int k = 0; k < cfg->K; k++)
        ll += lgamma(vb) - lgamma(vb + (double)(c->tot[k] > 0 ? c->tot[k] : 0));
    return ll;
}

/* Wait for sweep call ts and sum its replies into *s. */
static int gather(int64_t ts, sweep_sum *s)
{
    const ps_reply *rep;
    int n, rv = ps_call_wait(ts, &rep, &n);
    memset(s, 0, sizeof *s);
    for (int i = 0; rv == 0 && i < n; i++) {
        lda_rep r;
        if (rep[i].len != sizeof r) {
            rv = PS_ERR_PROTO;
            break;
        }
        memcpy(&r, rep[i].data, sizeof r);
        s->r.doc_ll += r.doc_ll, s->r.tokens += r.tokens, s->r.wait_s += r.wait_s;
        s->r.seconds += r.seconds, s->r.hll += r.hll, s->r.htokens += r.htokens;
        s->r.hdocs += r.hdocs, s->r.hskipped += r.hskipped;
        s->nrep++;
    }
    ps_call_release(ts);
    if (rv != 0) fprintf(stderr, "pslda: a sweep failed: %s\n", ps_strerror(rv));
    return rv;
}

/* A finite number as JSON, or null. */
static void jnum(const char *name, double v, const char *sep)
{
    if (isfinite(v)) printf("\"%s\": %.8g%s", name, v, sep);
    else printf("\"%s\": null%s", name, sep);
}

static void progress(int t, const sweep_sum *s, double rate, double elapsed)
{
    printf("sweep %4d", t + 1);
    if (isfinite(s->loglik)) printf("  loglik/token %.4f", s->loglik);
    if (isfinite(s->perplexity)) printf("  test perplexity %.1f", s->perplexity);
    printf("  tokens/s %.3g  elapsed %.2fs  wait %.0f%%\n", rate, elapsed,
           s->r.seconds > 0 ? 100.0 * s->r.wait_s / s->r.seconds : 0.0);
    if (cfg->json) {
        printf("{\"sweep\": %d, ", t + 1);
        jnum("loglik_per_token", s->loglik, ", ");
        jnum("perplexity", s->perplexity, ", ");
        jnum("tokens_per_second", rate, ", ");
        jnum("elapsed", elapsed, "}\n");
    }
    fflush(stdout);
}

/* Node id of worker rank 0 (writes the model files). */
static int worker0(uint32_t *id)
{
    ps_node_info nodes[1024];
    uint32_t epoch;
    int n = ps_view(&epoch, nodes, 1024);
    for (int i = 0; i < n && i < 1024; i++)
        if (nodes[i].role == PS_ROLE_WORKER && nodes[i].rank == 0 && nodes[i].alive)
            return *id = nodes[i].id, 0;
    return PS_ERR_NOTFOUND;
}

static int save_model(void)
{
    uint32_t id;
    int rv = worker0(&id);
    int64_t ts = rv ? rv : ps_call(id, "save", cfg->save, strlen(cfg->save), NULL);
    rv = ts < 0 ? (int)ts : ps_call_wait(ts, NULL, NULL);
    if (ts >= 0) ps_call_release(ts);
    if (rv != 0) fprintf(stderr, "pslda: --save %s failed: %s\n", cfg->save, ps_strerror(rv));
    else printf("pslda: wrote %s.topics.txt and %s.phi.tsv\n", cfg->save, cfg->save);
    return rv;
}

/* --check: the servers' sums against the workers' topics; 0 when they agree. */
static int check_counts(counts *c, double tokens)
{
    size_t K = (size_t)cfg->K;
    const ps_reply *rep;
    int n, bad = 0;
    int64_t *z = calloc(K, 8), sum = 0, ts = ps_call_group(PS_GROUP_WORKERS, "topics", NULL, 0,
                                                            NULL);
    int rv = !z ? PS_ERR_NOMEM : ts < 0 ? (int)ts : ps_call_wait(ts, &rep, &n);
    for (int i = 0; rv == 0 && i < n; i++)
        for (size_t k = 0; k < K && rep[i].len == K * 8; k++)
            z[k] += rd64((const uint8_t *)rep[i].data + 8 * k);
    if (ts >= 0) ps_call_release(ts);
    if (rv == 0) rv = server_counts(c);
    for (size_t k = 0; rv == 0 && k < K; k++) {
        sum += c->tot[k];
        if (c->col[k] != z[k] || c->tot[k] != z[k]) {
            if (bad++ < 5)
                printf("check: topic %zu: workers hold %" PRId64 " tokens, servers' word "
                       "counts sum to %" PRId64 ", their total says %" PRId64 "\n", k, z[k],
                       c->col[k], c->tot[k]);
        }
    }
    free(z);
    if (rv != 0) return fprintf(stderr, "pslda: --check: %s\n", ps_strerror(rv)), -1;
    int ok = !bad && c->neg == 0 && c->has_tot == 1 && (double)sum == tokens;
    printf("check: %s: servers hold %" PRId64 " tokens (corpus %.0f), %d topics differ, "
           "%" PRId64 " negative counts, totals on %" PRId64 " server(s)\n", ok ? "ok" : "FAILED",
           sum, tokens, bad, c->neg, c->has_tot);
    return ok ? 0 : 1;
}

/* The shards of the workers, summed. */
static int ask_info(lda_info *in)
{
    const ps_reply *rep;
    int n;
    int64_t ts = ps_call_group(PS_GROUP_WORKERS, "info", NULL, 0, NULL);
    int rv = ts < 0 ? (int)ts : ps_call_wait(ts, &rep, &n);
    double V = in->vocab;
    memset(in, 0, sizeof *in);
    in->vocab = V;
    for (int i = 0; rv == 0 && i < n; i++) {
        lda_info r;
        if (rep[i].len != sizeof r) continue;
        memcpy(&r, rep[i].data, sizeof r);
        in->tokens += r.tokens, in->docs += r.docs, in->empty += r.empty;
        in->test_docs += r.test_docs, in->test_tokens += r.test_tokens;
        in->test_empty += r.test_empty;
    }
    if (ts >= 0) ps_call_release(ts);
    return rv;
}

static void header(const lda_info *in)
{
    char cons[64];
    if (cfg->tau < 0) snprintf(cons, sizeof cons, "eventual consistency");
    else snprintf(cons, sizeof cons, "bounded delay tau %d", cfg->tau);
    printf("pslda: %d topics, %.0f words, %.0f tokens in %.0f documents (%.0f skipped: no "
           "word of the vocabulary), %d workers, %d servers, alpha %g beta %g, %s\n", cfg->K,
           in->vocab, in->tokens, in->docs, in->empty, ps_num_workers(), ps_num_servers(),
           cfg->alpha, cfg->beta, cons);
    if (cfg->test)
        printf("pslda: test: %.0f tokens in %.0f documents (%.0f skipped)\n", in->test_tokens,
               in->test_docs, in->test_empty);
    fflush(stdout);
}

/* Send the sweeps, gather them in order, print progress; *last gets the
 * last sweep's sums. */
static int run_sweeps(const lda_info *in, counts *c, sweep_sum *last, double *train_s)
{
    int T = cfg->sweeps, lag = cfg->tau < 0 ? T : cfg->tau, done = 0, rv = 0;
    int64_t *calls = calloc((size_t)T, sizeof *calls);
    if (!calls) return PS_ERR_NOMEM;
    double t0 = lda_now();
    for (int t = 0; t < T && rv == 0; t++) {
        int64_t dep = cfg->tau >= 0 && t - cfg->tau - 1 >= 0 ? calls[t - cfg->tau - 1] : -1;
        ps_task_opts o = {.deps = &dep, .ndeps = dep >= 0};
        lda_sweep_req q = {.t = t, .eval = t == T - 1 ||
                                           (cfg->eval_every && (t + 1) % cfg->eval_every == 0)};
        calls[t] = ps_call_group(PS_GROUP_WORKERS, "sweep", &q, sizeof q, &o);
        if (calls[t] < 0) rv = (int)calls[t];
        for (; rv == 0 && done <= t && (done <= t - lag || t == T - 1); done++) {
            sweep_sum s;
            if ((rv = gather(calls[done], &s)) != 0) break;
            double now = lda_now();
            s.loglik = s.perplexity = NAN;
            int eval = done == T - 1 || (cfg->eval_every && (done + 1) % cfg->eval_every == 0);
            if (eval && (rv = server_counts(c)) == 0 && in->tokens > 0)
                s.loglik = (s.r.doc_ll + word_loglik(c, in->vocab)) / in->tokens;
            if (eval && s.r.htokens > 0) s.perplexity = exp(-s.r.hll / s.r.htokens);
            /* the workers' rate in this sweep: sweeps gathered late come in bunches */
            double mean_s = s.nrep ? s.r.seconds / s.nrep : 0;
            progress(done, &s, mean_s > 0 ? s.r.tokens / mean_s : 0, now - t0);
            *last = s;
        }
    }
    *train_s = lda_now() - t0;
    free(calls);
    return rv;
}

int lda_run_scheduler(const lda_cfg *c, const lda_info *mine)
{
    cfg = c;
    lda_info in = *mine;
    counts cs = {.col = calloc((size_t)c->K, 8), .tot = calloc((size_t)c->K, 8)};
    sweep_sum last = {.loglik = NAN, .perplexity = NAN};
    double train_s = 0;
    int rv = cs.col && cs.tot ? ask_info(&in) : PS_ERR_NOMEM, chk = -1;
    if (rv == 0) header(&in);
    if (rv == 0) rv = run_sweeps(&in, &cs, &last, &train_s);
    if (rv == 0 && c->save) rv = save_model();
    if (rv == 0 && c->check) chk = check_counts(&cs, in.tokens);
    if (rv != 0) fprintf(stderr, "pslda: training failed: %s\n", ps_strerror(rv));
    double rate = train_s > 0 ? in.tokens * c->sweeps / train_s : 0;
    if (rv == 0) {
        printf("final:");
        if (isfinite(last.loglik)) printf(" loglik/token %.4f", last.loglik);
        if (isfinite(last.perplexity)) printf("  test perplexity %.1f", last.perplexity);
        printf("  %d sweeps in %.2fs, %.3g tokens/s\n", c->sweeps, train_s, rate);
        if (c->json) {
            printf("{\"k\": %d, \"vocab\": %.0f, \"tokens\": %.0f, \"docs\": %.0f, "
                   "\"skipped_docs\": %.0f, \"test_docs\": %.0f, \"sweeps\": %d, \"workers\": %d, "
                   "\"servers\": %d, ", c->K, in.vocab, in.tokens, in.docs, in.empty,
                   last.r.hdocs, c->sweeps, ps_num_workers(), ps_num_servers());
            jnum("loglik_per_token", last.loglik, ", ");
            jnum("perplexity", last.perplexity, ", ");
            jnum("train_seconds", train_s, ", ");
            jnum("tokens_per_second", rate, ", ");
            printf("\"check\": %s}\n", chk < 0 ? "null" : chk == 0 ? "\"ok\"" : "\"failed\"");
        }
    }
    fflush(stdout);
    free(cs.col), free(cs.tot);
    return rv ? 1 : chk > 0 ? 3 : c->check && chk < 0 ? 1 : 0;
}
