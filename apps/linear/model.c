/*
 * model.c -- pslinear's model files and the local --predict mode.
 *
 * A model file (--save) is text, readable and read back by --predict:
 *   # pslinear model: bpg, format flights, 27392 non-zero weights, l1 3.7e-07 l2 0
 *   # key<TAB>weight<TAB>feature
 *   1234567890123<TAB>-0.0412<TAB>origin=LAS
 *   ...
 *   987654321<TAB>-1.53<TAB>bias
 * one line per non-zero weight, sorted by key (the u64 the feature hashes
 * to, which is what --predict joins on).  The feature column is the string
 * the reader hashed (data.h, lin_name_fn): "origin=LAS", "w=free",
 * "C3=68fd1e64", the libsvm index "17", and "bias" for the bias.  The names
 * come from one pass of the scheduler over the training file (it must be
 * readable where the scheduler runs; if not, the column says "?" and a
 * warning says why).  Lines starting with '#' are comments; a line of just
 * "key<TAB>weight" (the older format) reads too.
 *
 * --predict scores every example of --test with the model: totals (logloss,
 * AUC) on stdout and, with --predict-out FILE, one probability P(label 1) per
 * example, in the order of the test file, one per line.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lin.h"

static int kw_cmp(const void *a, const void *b)
{
    uint64_t x = ((const lin_kw *)a)->k, y = ((const lin_kw *)b)->k;
    return x < y ? -1 : x > y;
}

/* ---- names: one pass over the training file ---------------------------------- */

typedef struct names {
    const lin_kw *m;
    size_t n;
    char **name; /* [n], strdup'ed, NULL until seen */
} names;

static void on_name(void *arg, uint64_t key, const char *s, size_t len)
{
    names *nm = arg;
    lin_kw k = {key, 0}, *hit = bsearch(&k, nm->m, nm->n, sizeof(lin_kw), kw_cmp);
    if (!hit) return;
    size_t i = (size_t)(hit - nm->m);
    if (nm->name[i] || !(nm->name[i] = malloc(len + 1))) return;
    memcpy(nm->name[i], s, len);
    nm->name[i][len] = '\0';
}

/* Fill nm->name from the training file; 0 or a ps_err (a warning printed). */
static int find_names(const lin_cfg *c, names *nm)
{
    char err[512];
    lin_read_opts o = {.skip_bad = 1, .bias = c->bias, .label_col = c->label_col,
                       .names = on_name, .names_arg = nm};
    lin_reader *r;
    lin_data d;
    lin_data_init(&d);
    int rv = lin_reader_open_opts(c->train, c->fmt, 0, 1, &o, &r, err, sizeof err);
    while (rv == 0 && (rv = lin_reader_next(r, 65536, &d, err, sizeof err)) == 0 && d.n > 0)
        lin_data_clear(&d);
    if (rv == 0) lin_reader_close(r);
    lin_data_free(&d);
    if (rv != 0)
        fprintf(stderr, "pslinear: warning: no feature names in %s (%s)\n", c->save, err);
    return rv;
}

int lin_model_save(const lin_cfg *c, const lin_kw *m, size_t n)
{
    names nm = {m, n, calloc(n + 1, sizeof(char *))};
    if (!nm.name) return PS_ERR_NOMEM;
    find_names(c, &nm);
    FILE *f = fopen(c->save, "w");
    int rv = 0;
    if (!f) {
        fprintf(stderr, "pslinear: %s: %s\n", c->save, strerror(errno));
        rv = PS_ERR_SYS;
    } else {
        fprintf(f, "# pslinear model: %s, format %s, %zu non-zero weights, l1 %g l2 %g\n"
                   "# key\tweight\tfeature\n",
                c->algo == ALGO_BPG ? "bpg" : c->algo == ALGO_FTRL ? "ftrl" : "sgd",
                lin_format_name(c->fmt), n, c->l1, c->l2);
        for (size_t i = 0; i < n; i++)
            fprintf(f, "%" PRIu64 "\t%.9g\t%s\n", m[i].k, m[i].w, nm.name[i] ? nm.name[i] : "?");
        if (fclose(f) != 0) rv = PS_ERR_SYS;
    }
    for (size_t i = 0; i < n; i++) free(nm.name[i]);
    free(nm.name);
    return rv;
}

/* ---- --predict ------------------------------------------------------------------- */

/* Read a model file into a malloc'ed array sorted by key; 0 or 1 (said). */
static int model_load(const char *path, lin_kw **out, size_t *nout)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "pslinear: %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t n = 0, cap = 1024, lcap = 0;
    lin_kw *m = malloc(cap * sizeof(lin_kw));
    char *line = NULL;
    unsigned long ln = 0;
    int rv = m ? 0 : 1;
    while (rv == 0 && getline(&line, &lcap, f) > 0) {
        ln++;
        uint64_t k;
        float w;
        char tail;
        if (line[0] == '#' || line[0] == '\n') continue;
        int got = sscanf(line, "%" SCNu64 "\t%f%c", &k, &w, &tail);
        if (got < 2 || (got == 3 && tail != '\t' && tail != '\n') || !isfinite(w)) {
            fprintf(stderr, "pslinear: %s:%lu: bad model line (want key<TAB>weight[<TAB>feature])\n",
                    path, ln);
            rv = 1;
        } else if (n == cap && !(m = realloc(m, (cap *= 2) * sizeof(lin_kw)))) {
            rv = 1;
        } else {
            m[n++] = (lin_kw){k, w};
        }
    }
    free(line);
    fclose(f);
    if (rv != 0) {
        free(m);
        return rv;
    }
    qsort(m, n, sizeof(lin_kw), kw_cmp);
    *out = m;
    *nout = n;
    return 0;
}

/* The margin of example i of d under model m. */
static double margin(const lin_data *d, size_t i, const lin_kw *m, size_t n)
{
    double z = 0;
    for (uint64_t j = d->offsets[i]; j < d->offsets[i + 1]; j++) {
        lin_kw key = {d->keys[j], 0}, *hit = bsearch(&key, m, n, sizeof(lin_kw), kw_cmp);
        if (hit) z += hit->w * (d->vals ? d->vals[j] : 1.0);
    }
    return z;
}

/* Score d into h (AUC histogram) and *loss; probabilities to out if not NULL. */
static int score(const lin_data *d, const lin_kw *m, size_t n, double *h, double *loss, FILE *out)
{
    *loss = 0;
    for (size_t i = 0; i < d->n; i++) {
        double z = margin(d, i, m, n), p = lin_sigmoid(z);
        int y = d->labels[i] > 0.5;
        *loss += lin_softplus(y ? -z : z);
        int k = (int)(p * LIN_NB);
        h[y * LIN_NB + (k < 0 ? 0 : k >= LIN_NB ? LIN_NB - 1 : k)]++;
        if (out && fprintf(out, "%.9g\n", p) < 0) return PS_ERR_SYS;
    }
    return 0;
}

int lin_predict(const lin_cfg *c)
{
    lin_kw *m;
    size_t n;
    char err[512];
    if (model_load(c->model, &m, &n) != 0) return 1;
    lin_data d;
    lin_read_opts o = {.skip_bad = c->skip_bad, .bias = c->bias, .label_col = c->label_col};
    int rv = lin_data_load_opts(c->test, c->fmt, 0, 1, &o, &d, err, sizeof err);
    if (rv != 0) fprintf(stderr, "pslinear: %s\n", err);
    else if (d.n == 0) fprintf(stderr, "pslinear: %s: no examples: the test set is empty\n", c->test);
    double *h = calloc(2 * LIN_NB, sizeof(double)), loss = 0;
    FILE *out = NULL;
    if (rv == 0 && d.n > 0 && c->predict_out && !(out = fopen(c->predict_out, "w")))
        fprintf(stderr, "pslinear: %s: %s\n", c->predict_out, strerror(errno));
    int ok = rv == 0 && d.n > 0 && h && (!c->predict_out || out);
    if (ok && (score(&d, m, n, h, &loss, out) != 0 || (out && fclose(out) != 0))) {
        fprintf(stderr, "pslinear: writing %s: %s\n", c->predict_out, strerror(errno));
        ok = 0;
    } else if (!ok && out) {
        fclose(out);
    }
    if (ok) {
        double auc = lin_auc(h), ll = loss / (double)d.n;
        if (c->json)
            printf("{\"test_auc\": %.6f, \"test_logloss\": %.6f, \"examples\": %zu, \"nnz\": %zu}\n",
                   auc, ll, d.n, n);
        else printf("predict: %zu examples, test logloss %.5f auc %.5f (model nnz %zu)%s%s\n", d.n,
                    ll, auc, n, c->predict_out ? ", probabilities in " : "",
                    c->predict_out ? c->predict_out : "");
    }
    free(h), free(m);
    lin_data_free(&d);
    return ok ? 0 : 1;
}
