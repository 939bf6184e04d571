/*
 * data.h -- the data pipeline of pslinear: read a shard of a text file into
 * sparse examples (label in {0, 1}, u64 feature keys, optional values).
 *
 * Formats (one example per line; blank lines are skipped; a trailing \r is
 * dropped, so CRLF files read like LF files):
 *   LIN_FMT_LIBSVM   `label idx:val idx:val ... [# comment]`, label -1, 0, 1
 *                    or +1 (any spelling strtof reads as one of them; -1
 *                    becomes 0), idx a decimal u64, val a finite float.
 *                    key = ps_hash_key(idx); the bias key is added only with
 *                    lin_read_opts.bias (pslinear --bias).
 *   LIN_FMT_FLIGHTS  `label TAB origin TAB dest TAB hour TAB weekday TAB month`
 *                    as written by scripts/data/convert_flights.mjs (hour
 *                    0-23, weekday 0-6 with 0 = Sunday, month 1-12; origin
 *                    and dest 1-32 bytes).  Ten binary features, each key =
 *                    ps_hash_bytes of a string: "origin=LAS", "dest=PHL",
 *                    "hour=7", "weekday=1", "month=3", the crosses
 *                    "origin=LAS&dest=PHL" (route), "origin=LAS&hour=7",
 *                    "dest=PHL&hour=7", "origin=LAS&dest=PHL&weekday=1", and
 *                    the bias key.
 *   LIN_FMT_TEXT     `label TAB word word ...` (words separated by blanks) as
 *                    written by scripts/data/convert_spam.mjs.  Bag of words,
 *                    binary: key = ps_hash_bytes("w=" word), each distinct
 *                    word once per example (keys of an example are sorted),
 *                    plus the bias key.
 *   LIN_FMT_CRITEO   Criteo TSV: `label TAB I1 .. TAB I13 TAB C1 .. TAB C26`,
 *                    40 fields, label 0 or 1 (as above), I1..I13 integers
 *                    (optional '-', decimal digits, fits a long long),
 *                    C1..C26 categorical (any bytes but tab, usually 8 hex
 *                    digits); an empty field is a missing value and gives no
 *                    feature.  Binary features: integer column i with value v
 *                    -> ps_hash_bytes("I<i>=<b>") with the bucket b = v if
 *                    v <= 2, else floor(log(v)^2) (e.g. "I1=3", "I2=-1");
 *                    categorical column j -> "C<j>=<value>" (e.g.
 *                    "C3=68fd1e64"); the crosses C1xC2, C3xC4 and C5xC6 ->
 *                    "C1=a&C2=b" (only when both are present; the list is
 *                    criteo_cross in data.c); and the bias key.  Keys are in
 *                    that order, not sorted.
 *   LIN_FMT_CSV      comma-separated values with a header line naming the
 *                    columns (RFC 4180 quotes: "a,b" and "" inside quotes);
 *                    the label column (lin_read_opts.label_col, default the
 *                    column "label", else the first) as above; every other
 *                    non-empty cell is a feature: a number v (strtof, finite)
 *                    -> key ps_hash_bytes(column name) with value v (0: no
 *                    feature), any other text t -> binary "name=t"; plus the
 *                    bias key.  Every line has the header's number of fields.
 * The bias key is ps_hash_bytes("bias"); no "field=value" string equals it.
 *
 * Gzip: a file that starts with gzip's magic bytes is read with zlib, in
 * any format, every member of a multi-member file; a corrupt or cut-short
 * stream is an error "path: corrupt gzip data (zlib: why)" or "path: gzip
 * data cut short (...)", PS_ERR_SYS.  A gzip stream cannot be split by
 * bytes, so shard s of n keeps the lines whose number (from 0, after a csv
 * header) is s modulo n, and each reader decompresses the whole file.
 *
 * Sharding: shard s of n owns the lines that START in the byte range
 * [size*s/n, size*(s+1)/n), so the n shards of a file cover every line
 * exactly once and W workers read disjoint shards in parallel.  A bad line is
 * an error "path:line: what" (line numbers count from 1 over the whole file),
 * or, with skip_bad, skipped and counted in lin_data.bad_lines.
 *
 * Every function returns 0 or a negative ps_err (PS_ERR_INVAL: bad argument
 * or bad line, PS_ERR_SYS: I/O, errno kept; PS_ERR_NOMEM).
 */
#ifndef PSLINEAR_DATA_H
#define PSLINEAR_DATA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum lin_format {
    LIN_FMT_LIBSVM = 0,
    LIN_FMT_FLIGHTS = 1,
    LIN_FMT_TEXT = 2,
    LIN_FMT_CRITEO = 3,
    LIN_FMT_CSV = 4,
} lin_format;

/* One example, pointing into a lin_data (valid until that data changes). */
typedef struct lin_example {
    float label;          /* 0 or 1 */
    uint32_t nfeat;
    const uint64_t *keys; /* nfeat keys */
    const float *vals;    /* nfeat values, or NULL: every value is 1 */
} lin_example;

/* All examples read so far, in flat CSR arrays owned by the struct. */
typedef struct lin_data {
    size_t n;            /* examples */
    size_t nnz;          /* features over all examples */
    float *labels;       /* [n], 0 or 1 */
    uint64_t *offsets;   /* [n + 1]: example i has entries offsets[i] .. offsets[i+1]-1 */
    uint64_t *keys;      /* [nnz] */
    float *vals;         /* [nnz], or NULL while every value is 1 (binary data) */
    uint64_t lines;      /* lines read, blank and bad ones included */
    uint64_t bad_lines;  /* lines skipped as bad (skip_bad only) */
    size_t cap_n, cap_nnz; /* internal: allocated sizes */
} lin_data;

/* A shard being read (opaque). */
typedef struct lin_reader lin_reader;

/* Called for every feature of every line read, with the string whose hash
 * is its key (not NUL-terminated; valid during the call): "origin=LAS",
 * "w=free", "C3=68fd1e64", "bias", and for libsvm the decimal index "17". */
typedef void (*lin_name_fn)(void *arg, uint64_t key, const char *name, size_t len);

/* Options of a reader. */
typedef struct lin_read_opts {
    int skip_bad;        /* skip (and count) bad lines instead of failing */
    int bias;            /* libsvm: add the bias key to every example */
    const char *label_col; /* csv: the label column's name or 1-based number (NULL:
                          * the column named "label", else the first) */
    lin_name_fn names;   /* NULL: none */
    void *names_arg;
    double progress_s;   /* lin_data_load_opts: a progress line on stderr (lines,
                          * share of the shard, rate, elapsed, time left) every
                          * this many seconds of a long load; 0: none */
} lin_read_opts;

/* "libsvm" (or "svmlight"), "flights", "text", "criteo" -> *out;
 * PS_ERR_INVAL if unknown. */
int lin_format_parse(const char *name, lin_format *out);
const char *lin_format_name(lin_format fmt);
/* "csv" is LIN_FMT_CSV, which pslinear's --format maps itself: lin_format_parse
 * leaves it out while tests/unit/test_linear_data.c asserts that "csv" is
 * unknown (to fold in once that test changes). */
uint64_t lin_bias_key(void);

/* Read shard `shard` of `nshards` of `path` (nshards == 1 also reads pipes)
 * into *out, which the call initializes; free it with lin_data_free even on
 * failure.  On failure err holds "path:line: what" (or the OS error); with
 * skip_bad, on success, err holds the first skipped line's message or "". */
int lin_data_load(const char *path, lin_format fmt, int shard, int nshards, int skip_bad,
                  lin_data *out, char *err, size_t errcap);
/* The same with options (lin_data_load: only skip_bad). */
int lin_data_load_opts(const char *path, lin_format fmt, int shard, int nshards,
                       const lin_read_opts *o, lin_data *out, char *err, size_t errcap);

/* Streaming: open the shard, then append at most `max` examples per call to
 * *out (lin_data_init it first; lin_data_clear between chunks to reuse it).
 * lin_reader_next returns 0 with nothing appended at the end of the shard.
 * err as for lin_data_load.  The reader owns its file and buffers. */
int lin_reader_open(const char *path, lin_format fmt, int shard, int nshards, int skip_bad,
                    lin_reader **out, char *err, size_t errcap);
int lin_reader_next(lin_reader *r, size_t max, lin_data *out, char *err, size_t errcap);
void lin_reader_close(lin_reader *r);
int lin_reader_open_opts(const char *path, lin_format fmt, int shard, int nshards,
                         const lin_read_opts *o, lin_reader **out, char *err, size_t errcap);

/* ---- the container (keys.c) ---- */

void lin_data_init(lin_data *d);
/* Drop the examples and counters, keep the memory. */
void lin_data_clear(lin_data *d);
void lin_data_free(lin_data *d);
/* Example i (< d->n) as pointers into d. */
void lin_data_example(const lin_data *d, size_t i, lin_example *ex);
/* Append an example of nf features (keys copied; vals NULL: every value 1).
 * 0 or PS_ERR_NOMEM, after which d is unchanged but for its capacity. */
int lin_data_append(lin_data *d, float label, const uint64_t *keys, const float *vals, size_t nf);

/* ---- distinct keys and export (keys.c) ---- */

/* The sorted distinct keys of d in a new array *keys (caller frees), *n of
 * them: the keys whose weights a worker pulls. */
int lin_data_unique_keys(const lin_data *d, uint64_t **keys, size_t *n);
/* cols[j] = index of d->keys[j] in uniq[0..nuniq) (cols has d->nnz entries,
 * caller-owned), so that weights pulled for uniq can be read by position.
 * PS_ERR_NOTFOUND if a key is missing from uniq. */
int lin_data_columns(const lin_data *d, const uint64_t *uniq, size_t nuniq, uint32_t *cols);

/* Write d to f as libsvm lines "+1|-1 idx:val ..." for other tools
 * (liblinear-train): idx = 1 + (key mod 2^bits), ascending, the values of
 * keys that share an idx in one example summed.  bits in 1..63.  Returns 0,
 * PS_ERR_INVAL, PS_ERR_NOMEM or PS_ERR_SYS (write error). */
int lin_data_write_libsvm(const lin_data *d, FILE *f, unsigned bits);

#endif
