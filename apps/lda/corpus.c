/*
 * corpus.c -- pslda's input: one document per line of plain text.
 *
 * Tokenizing: ASCII letters are lower-cased; every other byte (digits,
 * punctuation, UTF-8 sequences) separates words; words shorter than
 * --min-len letters (default 3) or longer than 40, and stop words
 * (--stopwords FILE, one per line), are dropped.  The vocabulary is built
 * from the whole training file, deterministically: words seen at least
 * --vocab-min-count times, the --vocab-max most frequent of them (ties by
 * byte order), id 0 the most frequent.  Every node that needs it builds the
 * same one by reading the file (a few million tokens take well under a
 * second), so no word list travels over the network.  Documents are then the
 * lines i with i % W == rank; a line with no word of the vocabulary is
 * skipped and counted (lda_docs.empty).  A NUL byte is an error (a binary
 * file), named with its file and line.  Never: a partial vocabulary on one
 * node and another on the next (the build is a pure function of the flags and
 * the file).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "lda.h"

#define MAX_WORD 40

static uint64_t hash_word(const char *w, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)w[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static int fail(char *err, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- a growable word -> count map ---------------------------------------------- */

typedef struct wmap {
    char **w;
    uint64_t *cnt;
    size_t n, cap;   /* entries, slots (power of two) */
    uint32_t *slot;  /* entry index + 1, 0 empty */
} wmap;

static int wmap_grow(wmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint32_t *s = calloc(cap, sizeof *s);
    char **w = realloc(m->w, cap / 2 * sizeof *w);
    uint64_t *c = realloc(m->cnt, cap / 2 * sizeof *c);
    if (w) m->w = w;
    if (c) m->cnt = c;
    if (!s || !w || !c) {
        free(s);
        return -1;
    }
    for (size_t i = 0; i < m->n; i++) {
        size_t j = hash_word(m->w[i], strlen(m->w[i])) & (cap - 1);
        while (s[j]) j = (j + 1) & (cap - 1);
        s[j] = (uint32_t)i + 1;
    }
    free(m->slot);
    m->slot = s;
    m->cap = cap;
    return 0;
}

/* The entry of word w[0..len), added with count 0 if `add`; -1 if absent
 * (or out of memory when adding: *oom set). */
static long wmap_get(wmap *m, const char *w, size_t len, int add, int *oom)
{
    if (add && (m->n + 1) * 2 > m->cap && wmap_grow(m) != 0) return *oom = 1, -1;
    if (!m->cap) return -1;
    size_t j = hash_word(w, len) & (m->cap - 1);
    for (; m->slot[j]; j = (j + 1) & (m->cap - 1)) {
        const char *x = m->w[m->slot[j] - 1];
        if (strncmp(x, w, len) == 0 && x[len] == 0) return (long)m->slot[j] - 1;
    }
    if (!add) return -1;
    char *copy = malloc(len + 1);
    if (!copy) return *oom = 1, -1;
    memcpy(copy, w, len);
    copy[len] = 0;
    m->w[m->n] = copy;
    m->cnt[m->n] = 0;
    m->slot[j] = (uint32_t)++m->n;
    return (long)m->n - 1;
}

static void wmap_free(wmap *m, int keep_words)
{
    if (!keep_words)
        for (size_t i = 0; i < m->n; i++) free(m->w[i]);
    free(m->w), free(m->cnt), free(m->slot);
    memset(m, 0, sizeof *m);
}

/* ---- reading lines and words ---------------------------------------------------- */

typedef int (*word_fn)(void *arg, const char *w, size_t len);

/* Call fn on every word of line[0..len) (lower-cased in place). */
static int each_word(char *line, size_t len, int min_len, word_fn fn, void *arg)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && !isalpha((unsigned char)line[i])) i++;
        size_t s = i;
        for (; i < len && isalpha((unsigned char)line[i]); i++)
            line[i] = (char)tolower((unsigned char)line[i]);
        if (i - s >= (size_t)min_len && i - s <= MAX_WORD) {
            int rv = fn(arg, line + s, i - s);
            if (rv) return rv;
        }
    }
    return 0;
}

typedef int (*line_fn)(void *arg, uint64_t lineno, char *line, size_t len);

/* Call fn on every line of path; 0, fn's nonzero return, or -1 (err set). */
static int each_line(const char *path, line_fn fn, void *arg, char *err, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, n, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t ln = 0;
    int rv = 0;
    while (rv == 0 && (len = getline(&line, &cap, f)) >= 0) {
        ln++;
        if (memchr(line, 0, (size_t)len)) {
            rv = fail(err, n, "%s:%llu: a NUL byte: this looks like a binary file, not "
                      "text with one document per line", path, (unsigned long long)ln);
            break;
        }
        rv = fn(arg, ln - 1, line, (size_t)len);
        if (rv > 0) rv = fail(err, n, "%s:%llu: out of memory", path, (unsigned long long)ln);
    }
    if (rv == 0 && ferror(f)) rv = fail(err, n, "%s: read error: %s", path, strerror(errno));
    free(line);
    fclose(f);
    return rv;
}

/* ---- the vocabulary --------------------------------------------------------------- */

typedef struct count_ctx {
    wmap all, stop;
    int min_len;
    uint64_t tokens;
} count_ctx;

static int count_word(void *arg, const char *w, size_t len)
{
    count_ctx *c = arg;
    int oom = 0;
    if (wmap_get(&c->stop, w, len, 0, &oom) >= 0) return 0;
    long e = wmap_get(&c->all, w, len, 1, &oom);
    if (e < 0) return 1;
    c->all.cnt[e]++;
    c->tokens++;
    return 0;
}

static int count_line(void *arg, uint64_t ln, char *line, size_t len)
{
    (void)ln;
    count_ctx *c = arg;
    return each_word(line, len, c->min_len, count_word, c);
}

static int stop_word(void *arg, const char *w, size_t len)
{
    int oom = 0;
    return wmap_get(arg, w, len, 1, &oom) < 0;
}

static int stop_line(void *arg, uint64_t ln, char *line, size_t len)
{
    (void)ln;
    return each_word(line, len, 1, stop_word, arg);
}

static const wmap *sort_map;
static int by_freq(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    uint64_t cx = sort_map->cnt[x], cy = sort_map->cnt[y];
    if (cx != cy) return cx > cy ? -1 : 1;
    return strcmp(sort_map->w[x], sort_map->w[y]);
}

/* Keep the entries of m that pass the pruning flags, by frequency, into v. */
static int vocab_from(const lda_cfg *c, wmap *m, lda_vocab *v)
{
    uint32_t *ord = malloc((m->n + 1) * sizeof *ord);
    if (!ord) return -1;
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->cnt[i] >= (uint64_t)c->vocab_min) ord[k++] = (uint32_t)i;
    sort_map = m;
    qsort(ord, k, sizeof *ord, by_freq);
    if (c->vocab_max > 0 && k > (size_t)c->vocab_max) k = (size_t)c->vocab_max;
    size_t cap = 16;
    while (cap < 2 * k + 2) cap *= 2;
    v->words = malloc((k + 1) * sizeof(char *));
    v->freq = malloc((k + 1) * sizeof(uint64_t));
    v->slots = calloc(cap, sizeof(uint32_t));
    v->mask = cap - 1;
    if (!v->words || !v->freq || !v->slots) return free(ord), -1;
    for (size_t i = 0; i < k; i++) {
        v->words[i] = m->w[ord[i]];
        m->w[ord[i]] = NULL; /* moved */
        v->freq[i] = m->cnt[ord[i]];
        size_t j = hash_word(v->words[i], strlen(v->words[i])) & v->mask;
        while (v->slots[j]) j = (j + 1) & v->mask;
        v->slots[j] = (uint32_t)i + 1;
    }
    v->n = k;
    free(ord);
    return 0;
}

int lda_vocab_build(const lda_cfg *c, lda_vocab *v, uint64_t *ntokens, char *err, size_t n)
{
    count_ctx cc = {.min_len = c->min_len};
    memset(v, 0, sizeof *v);
    int rv = 0;
    if (c->stopwords) rv = each_line(c->stopwords, stop_line, &cc.stop, err, n);
    if (rv == 0) rv = each_line(c->train, count_line, &cc, err, n);
    if (rv == 0 && vocab_from(c, &cc.all, v) != 0) rv = fail(err, n, "out of memory");
    for (size_t i = 0; i < cc.all.n; i++) free(cc.all.w[i]);
    wmap_free(&cc.all, 1);
    wmap_free(&cc.stop, 0);
    if (rv == 0 && cc.tokens == 0)
        rv = fail(err, n, "%s: no words (an empty corpus, or every word a stop word or "
                  "shorter than %d letters)", c->train, c->min_len);
    else if (rv == 0 && v->n == 0)
        rv = fail(err, n, "%s: no word is seen --vocab-min-count %ld times (%llu tokens)",
                  c->train, c->vocab_min, (unsigned long long)cc.tokens);
    if (rv != 0) lda_vocab_free(v);
    *ntokens = cc.tokens;
    return rv;
}

long lda_vocab_find(const lda_vocab *v, const char *w, size_t len)
{
    if (!v->slots) return -1;
    for (size_t j = hash_word(w, len) & v->mask; v->slots[j]; j = (j + 1) & v->mask) {
        const char *x = v->words[v->slots[j] - 1];
        if (strncmp(x, w, len) == 0 && x[len] == 0) return (long)v->slots[j] - 1;
    }
    return -1;
}

void lda_vocab_free(lda_vocab *v)
{
    for (size_t i = 0; v->words && i < v->n; i++) free(v->words[i]);
    free(v->words), free(v->freq), free(v->slots);
    memset(v, 0, sizeof *v);
}

/* ---- documents --------------------------------------------------------------------- */

typedef struct load_ctx {
    const lda_vocab *v;
    lda_docs *d;
    size_t dcap, tcap;
    int rank, nshards, min_len;
} load_ctx;

static int add_token(void *arg, const char *w, size_t len)
{
    load_ctx *c = arg;
    long id = lda_vocab_find(c->v, w, len);
    if (id < 0) return 0;
    lda_docs *d = c->d;
    if (d->ntok == c->tcap) {
        size_t cap = c->tcap ? c->tcap * 2 : 4096;
        uint32_t *x = realloc(d->w, cap * sizeof *x);
        if (!x) return 1;
        d->w = x;
        c->tcap = cap;
    }
    d->w[d->ntok++] = (uint32_t)id;
    return 0;
}

static int load_line(void *arg, uint64_t ln, char *line, size_t len)
{
    load_ctx *c = arg;
    lda_docs *d = c->d;
    if (ln % (uint64_t)c->nshards != (uint64_t)c->rank) return 0;
    d->lines++;
    size_t before = d->ntok;
    int rv = each_word(line, len, c->min_len, add_token, c);
    if (rv) return rv;
    if (d->ntok == before) return d->empty++, 0;
    if (d->n + 2 > c->dcap) {
        size_t cap = c->dcap ? c->dcap * 2 : 256;
        size_t *x = realloc(d->off, cap * sizeof *x);
        if (!x) return 1;
        d->off = x;
        c->dcap = cap;
    }
    d->off[++d->n] = d->ntok;
    return 0;
}

int lda_docs_load(const lda_cfg *c, const char *path, const lda_vocab *v, int rank,
                  int nshards, lda_docs *d, char *err, size_t n)
{
    memset(d, 0, sizeof *d);
    load_ctx lc = {.v = v, .d = d, .dcap = 256, .rank = rank, .nshards = nshards,
                   .min_len = c->min_len};
    if (!(d->off = calloc(lc.dcap, sizeof(size_t)))) return fail(err, n, "out of memory");
    int rv = each_line(path, load_line, &lc, err, n);
    if (rv == 0 && !(d->z = calloc(d->ntok + 1, sizeof *d->z)))
        rv = fail(err, n, "out of memory");
    if (rv != 0) lda_docs_free(d);
    return rv;
}

void lda_docs_free(lda_docs *d)
{
    free(d->w), free(d->z), free(d->off);
    memset(d, 0, sizeof *d);
}
