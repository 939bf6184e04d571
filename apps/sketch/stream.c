/*
 * stream.c -- pssketch's inputs: a worker's shard of a key stream.
 *
 * Formats (every line of the file is validated, whichever shard it is in,
 * so every worker stops on the same bad line with the same message):
 *   routes  data/cache/flights/{train,test}.tsv (scripts/data/convert_flights.mjs):
 *           label TAB origin TAB destination TAB hour TAB weekday TAB month;
 *           one event per line, key "ORIGIN-DEST", in file (date) order
 *   counts  "word TAB count" (scripts/data/convert_subtlex.mjs): the word
 *           occurs count times; the shard's occurrences are replayed in a
 *           shuffled order (Fisher-Yates, seeded), as a real stream would
 *           interleave them, not as runs that a batch would fold into one
 *   lines   one key per line (the whole line, a trailing CR dropped)
 * The shard is the lines whose 0-based index i has i % nshards == shard.
 *
 * The result is a table of the shard's distinct keys (hash and exact count)
 * and the stream as 32-bit indices into it.  Never: a silent skip; a bad
 * line (missing field, empty key, a count that is not an integer in
 * 1..2^40) fails the load with its line number.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sketch.h"

#define MAX_ITEMS ((size_t)1 << 31)   /* per worker: 8 GiB of indices at most */
#define MAX_COUNT ((uint64_t)1 << 40)

typedef struct sk_index {
    size_t slots;
    uint64_t *hash;               /* 0: empty (a key hashing to 0 is stored as 1) */
    uint32_t *idx;
} sk_index;

int sk_format_parse(const char *s, sk_format *f)
{
    static const char *names[] = {"routes", "counts", "lines"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) return *f = (sk_format)i, 0;
    return -1;
}

uint64_t sk_key_hash(const char *text, size_t len)
{
    uint64_t h = ps_hash_bytes(text, len);
    return h ? h : 1;
}

int sk_file_check(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) return snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1;
    int c = fgetc(f);
    fclose(f);
    if (c == EOF) return snprintf(err, errlen, "%s: empty file", path), -1;
    return 0;
}

/* ---- the key table ---------------------------------------------------------------------- */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q, *cap = n;
    return 0;
}

static int index_rehash(sk_stream *s, size_t slots)
{
    sk_index *x = s->index;
    uint64_t *h = calloc(slots, sizeof *h);
    uint32_t *ix = malloc(slots * sizeof *ix);
    if (!h || !ix) return free(h), free(ix), -1;
    for (size_t k = 0; k < s->nkeys; k++) {
        size_t i = (size_t)s->hash[k] & (slots - 1);
        while (h[i]) i = (i + 1) & (slots - 1);
        h[i] = s->hash[k], ix[i] = (uint32_t)k;
    }
    free(x->hash), free(x->idx);
    x->hash = h, x->idx = ix, x->slots = slots;
    return 0;
}

/* The index of key hash h, added (count 0) if new; -1 when out of memory. */
static int64_t key_index(sk_stream *s, uint64_t h)
{
    sk_index *x = s->index;
    if (2 * (s->nkeys + 1) > x->slots && index_rehash(s, x->slots ? 2 * x->slots : 4096))
        return -1;
    size_t i = (size_t)h & (x->slots - 1);
    while (x->hash[i] && x->hash[i] != h) i = (i + 1) & (x->slots - 1);
    if (x->hash[i]) return x->idx[i];
    size_t c1 = s->cap_keys, c2 = s->cap_keys;
    if (s->nkeys >= UINT32_MAX || grow((void **)&s->hash, &c1, s->nkeys + 1, 8) ||
        grow((void **)&s->count, &c2, s->nkeys + 1, 8))
        return -1;
    s->cap_keys = c1;
    x->hash[i] = h, x->idx[i] = (uint32_t)s->nkeys;
    s->hash[s->nkeys] = h, s->count[s->nkeys] = 0;
    return (int64_t)s->nkeys++;
}

static int push_item(sk_stream *s, uint32_t k)
{
    if (s->n >= MAX_ITEMS || grow((void **)&s->items, &s->cap_items, s->n + 1, 4)) return -1;
    s->items[s->n++] = k;
    return 0;
}

/* ---- lines -------------------------------------------------------------------------------- */

/* Field i (0-based) of a tab-separated line: start and length; -1 if absent. */
static int field(const char *line, int i, const char **p, size_t *len)
{
    const char *s = line;
    for (; i > 0; i--) {
        if (!(s = strchr(s, '\t'))) return -1;
        s++;
    }
    *p = s;
    *len = strcspn(s, "\t");
    return 0;
}

/* The key text and count of one line, into buf; 0, or -1 with err set. */
static int parse_line(sk_format f, char *line, char *buf, size_t cap, size_t *klen,
                      uint64_t *count, char *err, size_t errlen)
{
    const char *a, *b;
    size_t la, lb;
    *count = 1;
    if (f == SK_LINES) {
        if (!*line) return snprintf(err, errlen, "empty key"), -1;
        a = line, la = strlen(line);
    } else if (f == SK_ROUTES) {
        if (field(line, 1, &a, &la) || field(line, 2, &b, &lb) || !la || !lb)
            return snprintf(err, errlen, "want label TAB origin TAB destination ..."), -1;
        if (la + lb + 2 > cap) return snprintf(err, errlen, "route too long"), -1;
        memcpy(buf, a, la), buf[la] = '-', memcpy(buf + la + 1, b, lb);
        *klen = la + 1 + lb;
        return 0;
    } else {
        if (field(line, 0, &a, &la) || field(line, 1, &b, &lb) || !la)
            return snprintf(err, errlen, "want word TAB count"), -1;
        char *end;
        errno = 0;
        unsigned long long c = strtoull(b, &end, 10);
        if (errno || end == b || end != b + lb || *end || c < 1 || c > MAX_COUNT || *b == '-')
            return snprintf(err, errlen, "bad count '%.*s' (want an integer 1..2^40)",
                            (int)(lb > 40 ? 40 : lb), b), -1;
        *count = c;
    }
    if (la + 1 > cap) return snprintf(err, errlen, "key too long"), -1;
    memcpy(buf, a, la);
    *klen = la;
    return 0;
}

/* Read every line; keep the shard's keys (counts summed) and, except for
 * counts lists, the stream in file order. */
static int read_lines(FILE *f, const char *path, sk_format fmt, int shard, int nshards,
                      sk_stream *s, char *err, size_t errlen)
{
    char *line = NULL, key[4096], why[160];
    size_t cap = 0;
    ssize_t len;
    uint64_t lineno = 0;
    int rv = 0;
    while (rv == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        size_t klen;
        uint64_t c;
        if (parse_line(fmt, line, key, sizeof key, &klen, &c, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: line %" PRIu64 ": %s", path, lineno, why);
            rv = -1;
        } else if ((lineno - 1) % (uint64_t)nshards == (uint64_t)shard) {
            int64_t k = key_index(s, sk_key_hash(key, klen));
            if (k < 0 || (fmt != SK_COUNTS && push_item(s, (uint32_t)k))) {
                snprintf(err, errlen, "%s: out of memory at line %" PRIu64, path, lineno);
                rv = -1;
            } else {
                s->count[k] += c;
            }
        }
    }
    free(line);
    if (rv == 0 && ferror(f)) rv = -1, snprintf(err, errlen, "%s: %s", path, strerror(errno));
    if (rv == 0 && lineno == 0) rv = -1, snprintf(err, errlen, "%s: empty file", path);
    return rv;
}

/* Counts lists: every occurrence once, in a shuffled order. */
static int expand_shuffle(sk_stream *s, uint64_t seed, char *err, size_t errlen)
{
    uint64_t total = 0;
    for (size_t k = 0; k < s->nkeys; k++) total += s->count[k];
    if (total > MAX_ITEMS)
        return snprintf(err, errlen, "%" PRIu64 " occurrences in this shard: more than "
                        "2^31 (use more workers)", total), -1;
    if (!(s->items = malloc((total + 1) * sizeof *s->items)))
        return snprintf(err, errlen, "out of memory for %" PRIu64 " items", total), -1;
    s->cap_items = total + 1;
    for (size_t k = 0; k < s->nkeys; k++)
        for (uint64_t j = 0; j < s->count[k]; j++) s->items[s->n++] = (uint32_t)k;
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (size_t i = s->n; i > 1; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;  /* xorshift64 */
        size_t j = (size_t)((unsigned __int128)x * i >> 64);
        uint32_t t = s->items[i - 1];
        s->items[i - 1] = s->items[j], s->items[j] = t;
    }
    return 0;
}

int sk_stream_load(const char *path, sk_format fmt, int shard, int nshards, uint64_t seed,
                   sk_stream *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!(s->index = calloc(1, sizeof *s->index)))
        return snprintf(err, errlen, "out of memory"), -1;
    FILE *f = fopen(path, "r");
    if (!f) return snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1;
    int rv = read_lines(f, path, fmt, shard, nshards, s, err, errlen);
    fclose(f);
    if (rv == 0 && fmt == SK_COUNTS) rv = expand_shuffle(s, seed ^ (uint64_t)shard, err, errlen);
    free(s->index->hash), free(s->index->idx), free(s->index);
    s->index = NULL;
    return rv;
}

void sk_stream_free(sk_stream *s)
{
    if (s->index) free(s->index->hash), free(s->index->idx), free(s->index);
    free(s->hash), free(s->count), free(s->items);
    memset(s, 0, sizeof *s);
}
