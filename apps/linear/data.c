/*
 * data.c -- the data pipeline of pslinear (data.h): read one shard of a
 * libsvm, flights-TSV, Criteo-TSV or text file into sparse examples in a
 * lin_data (the container, distinct keys and export are keys.c).
 *
 * Design: a lin_reader owns a FILE positioned at the first line start of its
 * byte range and reads whole lines with getline until the next line would
 * start at or after the range's end, so lines that cross a boundary belong to
 * the shard in which they start.  Each line goes through the parser of its
 * format (a table, one function per format), which tokenizes the line in
 * place and leaves the example's features in the reader's scratch arrays;
 * the caller of the parser appends them with lin_data_append.  Line numbers
 * are needed only for messages, so the lines before the shard are counted
 * only when the first bad line is reported.
 *
 * A gzip file (known by its first two bytes) is read through zlib: r->f is
 * then a stdio stream over a gzFile (glibc's fopencookie), so the line code
 * is the same, and every member of a multi-member file is read, as gzip -dc
 * does.  A gzip stream cannot be split by bytes: its shards are line-modulo
 * (read_line).
 *
 * It must never read past its shard's last line nor skip a line that starts
 * inside its range, never take a corrupt or cut-short gzip stream for a
 * shorter file (an error naming the file, with zlib's reason), and never
 * leave *out inconsistent: after any return, lin_data_free releases
 * everything.  Only libc, zlib and the public libps API.
 */
#define _GNU_SOURCE /* fopencookie */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "ps/ps.h"

#include "csv.h"
#include "data.h"

#define LIN_MAX_CODE 32   /* longest origin or destination in the flights TSV */
#define LIN_WHAT 160      /* room for the description of a bad line */
#define LIN_GZ_BUF 65536  /* zlib's input buffer (its default is 8 KiB) */

struct lin_reader {
    FILE *f;
    char *path;
    lin_format fmt;
    int skip_bad;
    int reported_bad;     /* the first skipped line's message went to err */
    uint64_t begin;       /* offset of the shard's first line */
    uint64_t pos;         /* offset of the next line */
    uint64_t end;         /* a line starting at or after end is not ours */
    uint64_t nread;       /* lines of the shard read so far */
    int64_t base_line;    /* lines before `begin`, -1 until counted */
    char *line;
    size_t line_cap;
    char *buf;            /* scratch for the strings that are hashed */
    size_t buf_cap;
    uint64_t *fk;         /* features of the current line */
    float *fv;
    size_t fn, f_cap;
    char what[LIN_WHAT];  /* why the current line is bad */
    int bias;             /* libsvm: add the bias key (lin_read_opts) */
    lin_name_fn names;    /* called with each feature's string (lin_read_opts) */
    void *names_arg;
    gzFile gz;            /* a gzip file, read by r->f: line-modulo shards */
    int hdr;              /* lines before the data (1: a csv header) */
    int shard, nshards;
    lin_csv csv;          /* LIN_FMT_CSV: the header */
    char **cf;            /* LIN_FMT_CSV: the fields of the current line */
};

/* A parser fills r->fk/fv/fn and *label from the NUL-terminated line s,
 * which it may modify.  Returns 0, 1 for a bad line (r->what set), or a
 * negative ps_err. */
typedef int (*lin_parse_fn)(lin_reader *r, char *s, float *label);

/* ---- small helpers ---------------------------------------------------------- */

static void set_err(char *err, size_t errcap, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errcap == 0) return;
    va_start(ap, fmt);
    vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
}

/* Describe a bad line; returns 1 for the parser to return. */
static int bad(lin_reader *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->what, sizeof(r->what), fmt, ap);
    va_end(ap);
    return 1;
}

static size_t next_cap(size_t cap, size_t need)
{
    size_t n = cap ? cap : 16;

    while (n < need) n *= 2;
    return n;
}

static int resize(void **p, size_t n, size_t elem)
{
    void *q = realloc(*p, n * elem);

    if (q == NULL) return PS_ERR_NOMEM;
    *p = q;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* A decimal u64 made of digits only. */
static int parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (*s == '\0') return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

/* A float: 0, -1 (not a number) or -2 (nan or infinite). */
static int parse_float(const char *s, float *out)
{
    char *end;

    errno = 0;
    *out = strtof(s, &end);
    if (*s == '\0' || *end != '\0') return -1;
    return isfinite(*out) ? 0 : -2;
}

/* -1, 0, 1 or +1 in any spelling strtod accepts; -1 becomes 0. */
static int parse_label(const char *s, float *out)
{
    float v;

    if (s == NULL || parse_float(s, &v) != 0 || (v != -1 && v != 0 && v != 1)) return -1;
    *out = v > 0 ? 1.0f : 0.0f;
    return 0;
}

/* Describe a label parse_label refused. */
static int bad_label(lin_reader *r, const char *s)
{
    float v;
    int k = s ? parse_float(s, &v) : -1;

    if (s == NULL || *s == '\0') return bad(r, "bad label '': missing (want 0 or 1, -1 or +1)");
    if (k == -2) return bad(r, "bad label '%.32s': not finite (want 0 or 1, -1 or +1)", s);
    if (k == 0) return bad(r, "bad label '%.32s': unknown label (want 0 or 1, -1 or +1)", s);
    return bad(r, "bad label '%.32s'", s);
}

static int push_feat(lin_reader *r, uint64_t key, float val)
{
    if (r->fn == r->f_cap) {
        size_t c = next_cap(r->f_cap, r->fn + 1);
        if (resize((void **)&r->fk, c, sizeof(*r->fk)) != 0 ||
            resize((void **)&r->fv, c, sizeof(*r->fv)) != 0)
            return PS_ERR_NOMEM;
        r->f_cap = c;
    }
    r->fk[r->fn] = key;
    r->fv[r->fn++] = val;
    return 0;
}

/* Push the binary feature keyed by the hash of the concatenation of the n
 * strings parts[0..n), joined in r->buf. */
static int push_joined(lin_reader *r, const char *const *parts, int n)
{
    size_t len = 0, need = 0;

    for (int i = 0; i < n; i++) need += strlen(parts[i]);
    if (need > r->buf_cap) {
        size_t c = next_cap(r->buf_cap, need);
        if (resize((void **)&r->buf, c, 1) != 0) return PS_ERR_NOMEM;
        r->buf_cap = c;
    }
    for (int i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        memcpy(r->buf + len, parts[i], l);
        len += l;
    }
    uint64_t key = ps_hash_bytes(r->buf, len);
    if (r->names) r->names(r->names_arg, key, r->buf, len);
    return push_feat(r, key, 1.0f);
}

uint64_t lin_bias_key(void) { return ps_hash_bytes("bias", 4); }

static int push_bias(lin_reader *r)
{
    if (r->names) r->names(r->names_arg, lin_bias_key(), "bias", 4);
    return push_feat(r, lin_bias_key(), 1.0f);
}

/* ---- the four formats ----------------------------------------------------- */

static int parse_libsvm(lin_reader *r, char *s, float *label)
{
    char *save = NULL, *tok = strtok_r(s, " \t", &save);
    int rv;

    if (parse_label(tok, label) != 0) return bad_label(r, tok);
    while ((tok = strtok_r(NULL, " \t", &save)) != NULL && tok[0] != '#') {
        char *colon = strchr(tok, ':');
        uint64_t idx;
        float v;

        if (colon == NULL) return bad(r, "bad feature '%.32s': no ':' (want idx:val)", tok);
        *colon = '\0';
        if (parse_u64(tok, &idx) != 0)
            return bad(r, "bad feature '%.32s:%.16s': index '%.32s' is not a decimal integer "
                       "(want idx:val)", tok, colon + 1, tok);
        int k = parse_float(colon + 1, &v);
        if (k == -2)
            return bad(r, "bad feature '%.32s:%.16s': value is not finite (nan or inf)", tok,
                       colon + 1);
        if (k != 0)
            return bad(r, "bad feature '%.32s:%.16s': value '%.16s' is not a number "
                       "(want idx:val)", tok, colon + 1, colon + 1);
        if (r->names) r->names(r->names_arg, ps_hash_key(idx), tok, strlen(tok));
        if ((rv = push_feat(r, ps_hash_key(idx), v)) != 0) return rv;
    }
    return r->bias ? push_bias(r) : 0;
}

/* Fields of the flights TSV after the label, and the features built from
 * them: each a list of field indices whose "name=value" strings are joined
 * by '&' (so a cross is its components' strings joined). */
enum { F_ORIGIN, F_DEST, F_HOUR, F_WEEKDAY, F_MONTH, F_COUNT };
static const char *const flight_field[F_COUNT] = {"origin", "dest", "hour", "weekday", "month"};
static const unsigned flight_max[F_COUNT] = {0, 0, 23, 6, 12};
static const signed char flight_feat[][4] = {
    {F_ORIGIN, -1}, {F_DEST, -1}, {F_ORIGIN, F_DEST, -1}, {F_HOUR, -1}, {F_WEEKDAY, -1},
    {F_MONTH, -1}, {F_ORIGIN, F_HOUR, -1}, {F_DEST, F_HOUR, -1}, {F_ORIGIN, F_DEST, F_WEEKDAY, -1},
};

/* Split s at tabs into at most max fields; returns the number of fields. */
static int split_tabs(char *s, char **f, int max)
{
    int n = 0;

    for (;;) {
        char *tab = strchr(s, '\t');
        if (n < max) f[n] = s;
        n++;
        if (tab == NULL) return n;
        *tab = '\0';
        s = tab + 1;
    }
}

/* "name=value" of flights field i into out (room for 48 bytes); its length. */
static int flight_part(int i, const char *v, char *out, lin_reader *r)
{
    uint64_t x;
    size_t len = strlen(v);

    if (i <= F_DEST) {
        if (len == 0 || len > LIN_MAX_CODE || strpbrk(v, " \v\f") != NULL)
            return -bad(r, "bad %s '%.32s'", flight_field[i], v);
        return snprintf(out, 48, "%s=%s", flight_field[i], v);
    }
    if (parse_u64(v, &x) != 0 || x > flight_max[i] || (i == F_MONTH && x == 0))
        return -bad(r, "bad %s '%.32s'", flight_field[i], v);
    return snprintf(out, 48, "%s=%u", flight_field[i], (unsigned)x);
}

static int parse_flights(lin_reader *r, char *s, float *label)
{
    char *f[1 + F_COUNT], part[F_COUNT][48], key[4 * 48];
    int n = split_tabs(s, f, 1 + F_COUNT), len[F_COUNT], rv;

    if (n != 1 + F_COUNT) return bad(r, "expected %d tab-separated fields, got %d", 1 + F_COUNT, n);
    if (parse_label(f[0], label) != 0) return bad_label(r, f[0]);
    for (int i = 0; i < F_COUNT; i++)
        if ((len[i] = flight_part(i, f[1 + i], part[i], r)) < 0) return 1;
    for (size_t k = 0; k < sizeof(flight_feat) / sizeof(flight_feat[0]); k++) {
        size_t kl = 0;
        for (const signed char *p = flight_feat[k]; *p >= 0; p++) {
            if (kl > 0) key[kl++] = '&';
            memcpy(key + kl, part[*p], (size_t)len[*p]);
            kl += (size_t)len[*p];
        }
        uint64_t h = ps_hash_bytes(key, kl);
        if (r->names) r->names(r->names_arg, h, key, kl);
        if ((rv = push_feat(r, h, 1.0f)) != 0) return rv;
    }
    return push_bias(r);
}

/* Sort the current line's keys and drop repeats (binary bag of words). */
static void unique_feats(lin_reader *r)
{
    size_t m = 0;

    qsort(r->fk, r->fn, sizeof(*r->fk), cmp_u64);
    for (size_t i = 0; i < r->fn; i++)
        if (m == 0 || r->fk[i] != r->fk[m - 1]) r->fk[m++] = r->fk[i];
    r->fn = m;
}

static int parse_text(lin_reader *r, char *s, float *label)
{
    char *tab = strchr(s, '\t'), *save = NULL, *w;
    int rv;

    if (tab == NULL) return bad(r, "missing tab after the label");
    *tab = '\0';
    if (parse_label(s, label) != 0) return bad_label(r, s);
    for (w = strtok_r(tab + 1, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        if ((rv = push_joined(r, (const char *const[]){"w=", w}, 2)) != 0) return rv;
    if ((rv = push_bias(r)) != 0) return rv;
    unique_feats(r);
    return 0;
}

/* Criteo TSV: label, integer columns I1..I13, categorical columns C1..C26;
 * an empty field is a missing value.  The crosses (1-based C numbers) are
 * "C1=a&C2=b", skipped when either side is missing. */
enum { CRITEO_NI = 13, CRITEO_NC = 26, CRITEO_FIELDS = 1 + CRITEO_NI + CRITEO_NC };
static const unsigned char criteo_cross[][2] = {{1, 2}, {3, 4}, {5, 6}};

/* Integer field s (optional '-', digits) -> its bucket: v if v <= 2, else
 * floor(log(v)^2).  -1 if s is not an integer. */
static int criteo_bucket(const char *s, long long *out)
{
    char *end;
    long long v;

    if (!((s[0] >= '0' && s[0] <= '9') || (s[0] == '-' && s[1] >= '0' && s[1] <= '9'))) return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (*end != '\0' || errno == ERANGE) return -1;
    *out = v <= 2 ? v : (long long)floor(log((double)v) * log((double)v));
    return 0;
}

static int parse_criteo(lin_reader *r, char *s, float *label)
{
    char *f[CRITEO_FIELDS], name[32], cross[16];
    int n = split_tabs(s, f, CRITEO_FIELDS), rv;
    long long b;

    if (n != CRITEO_FIELDS) return bad(r, "expected %d tab-separated fields, got %d", CRITEO_FIELDS, n);
    if (parse_label(f[0], label) != 0) return bad_label(r, f[0]);
    for (int i = 1; i <= CRITEO_NI; i++) {
        if (f[i][0] == '\0') continue;
        if (criteo_bucket(f[i], &b) != 0) return bad(r, "bad I%d '%.32s' (want an integer)", i, f[i]);
        snprintf(name, sizeof(name), "I%d=%lld", i, b);
        if ((rv = push_joined(r, (const char *const[]){name}, 1)) != 0) return rv;
    }
    for (int j = 1; j <= CRITEO_NC; j++) {
        if (f[CRITEO_NI + j][0] == '\0') continue;
        snprintf(name, sizeof(name), "C%d=", j);
        if ((rv = push_joined(r, (const char *const[]){name, f[CRITEO_NI + j]}, 2)) != 0) return rv;
    }
    for (size_t k = 0; k < sizeof(criteo_cross) / sizeof(criteo_cross[0]); k++) {
        const char *a = f[CRITEO_NI + criteo_cross[k][0]], *c = f[CRITEO_NI + criteo_cross[k][1]];
        if (a[0] == '\0' || c[0] == '\0') continue;
        snprintf(name, sizeof(name), "C%d=", criteo_cross[k][0]);
        snprintf(cross, sizeof(cross), "&C%d=", criteo_cross[k][1]);
        if ((rv = push_joined(r, (const char *const[]){name, a, cross, c}, 4)) != 0) return rv;
    }
    return push_bias(r);
}

/* CSV: the header's columns; the label column as for the other formats, every
 * other non-empty cell a feature: a number v -> key "name" with value v (0
 * gives none), any other text t -> binary "name=t"; plus the bias key. */
static int parse_csv(lin_reader *r, char *s, float *label)
{
    const lin_csv *h = &r->csv;
    int n = lin_csv_split(s, r->cf, h->n), rv;
    if (n < 0) return bad(r, "bad quoting (a quote that does not close, or text after it)");
    if (n != h->n) return bad(r, "expected %d comma-separated fields, got %d", h->n, n);
    if (parse_label(r->cf[h->label], label) != 0) return bad_label(r, r->cf[h->label]);
    for (int i = 0; i < n; i++) {
        const char *c = r->cf[i];
        float v;
        int k = i == h->label || !*c ? 1 : parse_float(c, &v);
        if (k == 1) continue;
        if (k == -2) return bad(r, "column %.32s: value '%.16s' is not finite", h->names[i], c);
        if (k == 0 && v == 0) continue;
        if (k == 0) {
            uint64_t key = ps_hash_bytes(h->names[i], strlen(h->names[i]));
            if (r->names) r->names(r->names_arg, key, h->names[i], strlen(h->names[i]));
            rv = push_feat(r, key, v);
        } else {
            rv = push_joined(r, (const char *const[]){h->names[i], "=", c}, 3);
        }
        if (rv != 0) return rv;
    }
    return push_bias(r);
}

static const struct {
    const char *name;
    lin_parse_fn parse;
} formats[] = {
    [LIN_FMT_LIBSVM] = {"libsvm", parse_libsvm},
    [LIN_FMT_FLIGHTS] = {"flights", parse_flights},
    [LIN_FMT_TEXT] = {"text", parse_text},
    [LIN_FMT_CRITEO] = {"criteo", parse_criteo},
    [LIN_FMT_CSV] = {"csv", parse_csv},
};
#define NFORMATS ((int)(sizeof(formats) / sizeof(formats[0])))

int lin_format_parse(const char *name, lin_format *out)
{
    for (int i = 0; i < NFORMATS; i++) /* csv: lin_format_csv (see data.h) */
        if (i != LIN_FMT_CSV && strcmp(name, formats[i].name) == 0) return *out = (lin_format)i, 0;
    if (strcmp(name, "svmlight") == 0) return *out = LIN_FMT_LIBSVM, 0;
    return PS_ERR_INVAL;
}

const char *lin_format_name(lin_format fmt)
{
    return (int)fmt >= 0 && (int)fmt < NFORMATS ? formats[fmt].name : "?";
}

/* ---- the reader ------------------------------------------------------------------ */

/* Lines before offset `upto` (for messages only). */
static int64_t count_lines(const char *path, uint64_t upto)
{
    char blk[65536];
    int64_t n = 0;
    FILE *f = fopen(path, "rb");

    if (f == NULL) return -1;
    while (upto > 0) {
        size_t got = fread(blk, 1, upto < sizeof(blk) ? (size_t)upto : sizeof(blk), f);
        if (got == 0) break;
        for (char *p = blk; (p = memchr(p, '\n', got - (size_t)(p - blk))) != NULL; p++) n++;
        upto -= got;
    }
    fclose(f);
    return upto == 0 ? n : -1;
}

/* Report the current line as bad: an error, or with skip_bad a count (and
 * the first such message in err).  Returns 0 or PS_ERR_INVAL. */
static int bad_line(lin_reader *r, lin_data *out, char *err, size_t errcap)
{
    if (r->skip_bad) out->bad_lines++;
    if (r->skip_bad && r->reported_bad) return 0;
    if (r->base_line < 0) r->base_line = count_lines(r->path, r->begin);
    if (r->base_line < 0)
        set_err(err, errcap, "%s:?: %s (line %llu of shard)", r->path, r->what,
                (unsigned long long)r->nread);
    else
        set_err(err, errcap, "%s:%llu: %s", r->path,
                (unsigned long long)r->base_line + r->nread, r->what);
    r->reported_bad = 1;
    return r->skip_bad ? 0 : PS_ERR_INVAL;
}

/* r->gz failed (r->f's error flag is set): say why in err, naming the file
 * and zlib's reason.  Returns PS_ERR_NOMEM or PS_ERR_SYS. */
static int gz_fail(lin_reader *r, char *err, size_t errcap)
{
    int zerr;
    const char *msg = gzerror(r->gz, &zerr), *sep = strstr(msg, ": ");

    if (sep) msg = sep + 2; /* zlib puts its own name of the file, "<fd:N>: ", first */
    set_err(err, errcap, "%s: %s (zlib: %s)", r->path,
            zerr == Z_BUF_ERROR ? "gzip data cut short"
            : zerr == Z_DATA_ERROR ? "corrupt gzip data" : "cannot read the gzip data", msg);
    return zerr == Z_MEM_ERROR ? PS_ERR_NOMEM : PS_ERR_SYS;
}

/* The next line of the shard into r->line: 1, 0 at the end, or PS_ERR_SYS.
 * A gzip stream cannot be split by bytes: shard s of n reads every line and
 * keeps those whose number (from 0) is s modulo n. */
static int read_line(lin_reader *r, size_t *len, char *err, size_t errcap)
{
    ssize_t n;

    do {
        if (r->pos >= r->end) return 0;
        errno = 0;
        n = getline(&r->line, &r->line_cap, r->f);
        if (r->gz && ferror(r->f)) return gz_fail(r, err, errcap); /* even mid-line */
        if (n < 0) {
            if (!ferror(r->f) && errno != ENOMEM) return 0;
            set_err(err, errcap, "%s: read: %s", r->path, strerror(errno ? errno : EIO));
            return errno == ENOMEM ? PS_ERR_NOMEM : PS_ERR_SYS;
        }
        r->pos += (uint64_t)n;
        r->nread++;
    } while (r->gz && (r->nread - 1 - (uint64_t)r->hdr) % (uint64_t)r->nshards != (uint64_t)r->shard);
    *len = (size_t)n;
    return 1;
}

/* Parse r->line (len bytes) and append it: 1 appended, 0 skipped (blank, or
 * bad with skip_bad), or a negative ps_err. */
static int take_line(lin_reader *r, size_t len, lin_data *out, char *err, size_t errcap)
{
    char *s = r->line;
    float label = 0;
    int rv;

    if (len > 0 && s[len - 1] == '\n') s[--len] = '\0';
    if (len > 0 && s[len - 1] == '\r') s[--len] = '\0';
    r->fn = 0;
    if (strlen(s) != len)
        rv = (unsigned char)s[0] == 0x1f && (unsigned char)s[1] == 0x8b
                 ? bad(r, "gzip-compressed data (decompress it first: gzip -dc)")
                 : bad(r, "NUL byte in line");
    else if (s[strspn(s, " \t")] == '\0')
        return 0;                                    /* blank */
    else
        rv = formats[r->fmt].parse(r, s, &label);
    if (rv > 0) return bad_line(r, out, err, errcap);
    if (rv < 0 || (rv = lin_data_append(out, label, r->fk, r->fv, r->fn)) != 0) {
        set_err(err, errcap, "%s: %s", r->path, ps_strerror(rv));
        return rv;
    }
    return 1;
}

int lin_reader_next(lin_reader *r, size_t max, lin_data *out, char *err, size_t errcap)
{
    size_t added = 0, len = 0;
    int rv;

    while (added < max) {
        if ((rv = read_line(r, &len, err, errcap)) <= 0) return rv;
        out->lines++;
        if ((rv = take_line(r, len, out, err, errcap)) < 0) return rv;
        added += (size_t)rv;
    }
    return 0;
}

/* Position r at the first line starting at or after byte `from`. */
static int seek_shard(lin_reader *r, uint64_t from, char *err, size_t errcap)
{
    ssize_t n;

    r->pos = from;
    if (from > 0) {
        if (fseeko(r->f, (off_t)(from - 1), SEEK_SET) != 0) {
            set_err(err, errcap, "%s: seek: %s", r->path, strerror(errno));
            return PS_ERR_SYS;
        }
        n = getline(&r->line, &r->line_cap, r->f);   /* the rest of the line before */
        if (n < 0 && ferror(r->f)) {
            set_err(err, errcap, "%s: read: %s", r->path, strerror(errno));
            return PS_ERR_SYS;
        }
        r->pos = from - 1 + (n > 0 ? (uint64_t)n : 1);
    }
    r->begin = r->pos;
    return 0;
}

/* Set r's byte range for shard/nshards (the whole stream when nshards is 1). */
static int set_range(lin_reader *r, int shard, int nshards, char *err, size_t errcap)
{
    struct stat st;
    uint64_t size;

    if (nshards == 1) {
        r->end = UINT64_MAX;
        return 0;
    }
    if (fstat(fileno(r->f), &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errcap, "%s: not a regular file, cannot read shard %d of %d", r->path, shard,
                nshards);
        return PS_ERR_INVAL;
    }
    size = (uint64_t)st.st_size;
    r->end = shard + 1 == nshards ? UINT64_MAX : size * (uint64_t)(shard + 1) / (uint64_t)nshards;
    return seek_shard(r, size * (uint64_t)shard / (uint64_t)nshards, err, errcap);
}

/* Whether f starts with gzip's magic bytes (f is rewound). */
static int is_gzip(FILE *f)
{
    int a = fgetc(f), b = fgetc(f);
    rewind(f);
    return a == 0x1f && b == 0x8b;
}

/* fopencookie's read callback over a gzFile: up to n decompressed bytes, 0
 * at the end of the last member, or -1 (errno set) if zlib found the data
 * corrupt or cut short (gzread itself reads a cut stream as a short one). */
static ssize_t gz_read(void *z, char *buf, size_t n)
{
    int zerr, got = gzread(z, buf, n < (1u << 30) ? (unsigned)n : 1u << 30);

    if (got > 0) return got;
    gzerror(z, &zerr);
    if (got == 0 && zerr == Z_OK) return 0;
    errno = zerr == Z_MEM_ERROR ? ENOMEM : zerr == Z_ERRNO && errno ? errno : EIO;
    return -1;
}

/* fopencookie's close callback: frees the gzFile and closes its fd. */
static int gz_close(void *z)
{
    return gzclose_r(z) == Z_OK ? 0 : -1;
}

/* Replace r->f, a gzip file, by a stream of its decompressed bytes (the
 * gzFile is r->gz; r->f owns it); lines are numbered from the file's start.
 * Returns 0 or PS_ERR_SYS (said in err; r->f is then NULL). */
static int open_gz(lin_reader *r, char *err, size_t errcap)
{
    static const cookie_io_functions_t io = {.read = gz_read, .close = gz_close};
    int fd, e;

    errno = 0;
    fd = dup(fileno(r->f));
    fclose(r->f);
    r->f = NULL;
    /* is_gzip's rewind may have moved only stdio's buffer, not the fd */
    if (fd >= 0 && lseek(fd, 0, SEEK_SET) == 0 && (r->gz = gzdopen(fd, "rb")) != NULL) {
        gzbuffer(r->gz, LIN_GZ_BUF);
        r->f = fopencookie(r->gz, "r", io);
    }
    if (!r->f) {
        e = errno ? errno : ENOMEM;
        if (r->gz) gzclose_r(r->gz); /* closes fd */
        else if (fd >= 0) close(fd);
        r->gz = NULL;
        set_err(err, errcap, "%s: cannot read gzip data: %s", r->path, strerror(e));
        return PS_ERR_SYS;
    }
    r->end = UINT64_MAX;
    r->base_line = 0;
    return 0;
}

/* LIN_FMT_CSV: read the header (line 1) into r->csv.  Shard 0 and gzip
 * streams read it as their first line (so it is not taken as data); other
 * shards read it from a second handle. */
static int read_header(lin_reader *r, const char *label_col, char *err, size_t errcap)
{
    char *line = NULL, what[LIN_WHAT];
    size_t cap = 0, len = 0;
    ssize_t n = -1;
    int rv = 0;
    if (r->gz) {
        n = getline(&line, &cap, r->f);
        if (ferror(r->f)) {
            free(line);
            return gz_fail(r, err, errcap);
        }
        r->nread = 1;
        r->hdr = 1;
    } else if (r->begin == 0) {
        if ((rv = read_line(r, &len, err, errcap)) < 0) return rv;
        if (rv == 1) line = strdup(r->line), n = (ssize_t)len;
        if (rv == 1 && !line) return PS_ERR_NOMEM;
    } else {
        FILE *f = fopen(r->path, "rb");
        if (f) n = getline(&line, &cap, f), fclose(f);
    }
    if (n <= 0) {
        free(line);
        set_err(err, errcap, "%s:1: no header line (csv wants the column names first)", r->path);
        return PS_ERR_INVAL;
    }
    line[strcspn(line, "\r\n")] = '\0';
    rv = lin_csv_header(line, label_col, &r->csv, what, sizeof what);
    free(line);
    if (rv == -1) set_err(err, errcap, "%s:1: %s", r->path, what);
    if (rv == 0 && !(r->cf = calloc((size_t)r->csv.n, sizeof(char *)))) rv = PS_ERR_NOMEM;
    return rv == -1 ? PS_ERR_INVAL : rv;
}

int lin_reader_open(const char *path, lin_format fmt, int shard, int nshards, int skip_bad,
                    lin_reader **out, char *err, size_t errcap)
{
    lin_read_opts o = {.skip_bad = skip_bad};
    return lin_reader_open_opts(path, fmt, shard, nshards, &o, out, err, errcap);
}

int lin_reader_open_opts(const char *path, lin_format fmt, int shard, int nshards,
                         const lin_read_opts *o, lin_reader **out, char *err, size_t errcap)
{
    lin_reader *r;
    int rv;

    *out = NULL;
    if ((int)fmt < 0 || (int)fmt >= NFORMATS || nshards < 1 || shard < 0 || shard >= nshards) {
        set_err(err, errcap, "%s: bad format or shard %d of %d", path, shard, nshards);
        return PS_ERR_INVAL;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL || (r->path = strdup(path)) == NULL) {
        free(r);
        set_err(err, errcap, "%s: out of memory", path);
        return PS_ERR_NOMEM;
    }
    r->fmt = fmt;
    r->skip_bad = o->skip_bad;
    r->bias = o->bias;
    r->names = o->names;
    r->names_arg = o->names_arg;
    r->base_line = -1;
    r->shard = shard, r->nshards = nshards;
    if ((r->f = fopen(path, "rb")) == NULL) {
        set_err(err, errcap, "%s: %s", path, strerror(errno));
        rv = PS_ERR_SYS;
    } else if (is_gzip(r->f)) {
        rv = open_gz(r, err, errcap);
    } else {
        rv = set_range(r, shard, nshards, err, errcap);
    }
    if (rv == 0 && fmt == LIN_FMT_CSV) rv = read_header(r, o->label_col, err, errcap);
    if (rv != 0) {
        lin_reader_close(r);
        return rv;
    }
    *out = r;
    return 0;
}

void lin_reader_close(lin_reader *r)
{
    if (r == NULL) return;
    if (r->f) fclose(r->f); /* gzip: gz_close frees r->gz */
    lin_csv_free(&r->csv);
    free(r->cf);
    free(r->path);
    free(r->line);
    free(r->buf);
    free(r->fk);
    free(r->fv);
    free(r);
}

int lin_data_load(const char *path, lin_format fmt, int shard, int nshards, int skip_bad,
                  lin_data *out, char *err, size_t errcap)
{
    lin_read_opts o = {.skip_bad = skip_bad};
    return lin_data_load_opts(path, fmt, shard, nshards, &o, out, err, errcap);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One progress line of a load that began at t0 (stderr: stdout stays the
 * program's, JSON included).  A gzip stream has no known end: no share. */
static void say_progress(const lin_reader *r, const lin_data *d, double t0, int last)
{
    struct stat st;
    uint64_t end = r->end;
    if (end == UINT64_MAX) /* the last shard: to the end of the file */
        end = !r->gz && fstat(fileno(r->f), &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    double dt = mono_s() - t0;
    double done = end > r->begin && r->pos >= r->begin
                      ? (double)(r->pos - r->begin) / (double)(end - r->begin) : 0;
    fprintf(stderr, "loading %s (shard %d of %d): %" PRIu64 " lines", r->path, r->shard + 1,
            r->nshards, d->lines);
    if (last)
        fprintf(stderr, ", %zu examples in %.1f s\n", d->n, dt);
    else if (r->gz || done <= 0)
        fprintf(stderr, ", %.0f lines/s, %.1f s so far\n", (double)d->lines / dt, dt);
    else
        fprintf(stderr, " (%.0f %%), %.0f lines/s, %.1f s so far, about %.0f s left\n",
                100 * done, (double)d->lines / dt, dt, dt * (1 - done) / done);
}

int lin_data_load_opts(const char *path, lin_format fmt, int shard, int nshards,
                       const lin_read_opts *o, lin_data *out, char *err, size_t errcap)
{
    lin_reader *r;
    int rv, said = 0;

    lin_data_init(out);
    set_err(err, errcap, "%s", "");
    if ((rv = lin_reader_open_opts(path, fmt, shard, nshards, o, &r, err, errcap)) != 0) return rv;
    double t0 = mono_s(), next = t0 + (o ? o->progress_s : 0);
    uint64_t before;
    do { /* in chunks, to say how far it got on a long load */
        before = out->lines;
        rv = lin_reader_next(r, 65536, out, err, errcap);
        if (rv == 0 && o && o->progress_s > 0 && mono_s() >= next) {
            say_progress(r, out, t0, 0);
            next = mono_s() + o->progress_s, said = 1;
        }
    } while (rv == 0 && out->lines > before);
    if (rv == 0 && said) say_progress(r, out, t0, 1);
    lin_reader_close(r);
    return rv;
}
