/*
 * test_linear_data.c -- unit tests of apps/linear/data.c and keys.c, the
 * data pipeline of pslinear: each format (libsvm, flights TSV, Criteo TSV,
 * text) parses to the expected labels, keys and values; the shards 0..k-1 of
 * a file read every line exactly once and in order for k = 1..7 (lines
 * crossing boundaries, no trailing newline, CRLF, blank lines, tiny files;
 * Criteo lines with missing values for k = 1..5); bad lines give
 * "file:line: what" or are skipped and counted; empty files; streaming in
 * chunks equals loading at once; lin_data_append; distinct keys are sorted
 * and unique and lin_data_columns maps every entry to its key's position.
 * gzip files (written here with zlib) read exactly as the plain text, in one
 * member or several (split mid-line), and their line-modulo shards read
 * every line once; a gzip file cut short at any byte, or with bytes flipped
 * (in the middle, in the CRC, in the header), is an error naming the file,
 * never a shorter file.
 *
 * data.c and keys.c are compiled into this test (the app folder builds into
 * its own executable).  Fixtures are written into a fresh temporary
 * directory.
 */
#define _GNU_SOURCE /* data.c's fopencookie: before the first system header */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "../../apps/linear/data.h"
#include "../../apps/linear/data.c"
#include "../../apps/linear/keys.c"

static char tmpdir[256];
static char errbuf[512];

/* ---- helpers ---------------------------------------------------------------- */

/* Write `len` bytes of text to a fixture file; returns its path (static). */
static const char *fixture_n(const char *name, const char *text, size_t len)
{
    static char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    assert_non_null(f = fopen(path, "wb"));
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static const char *fixture(const char *name, const char *text)
{
    return fixture_n(name, text, strlen(text));
}

static uint64_t hs(const char *s) { return ps_hash_bytes(s, strlen(s)); }

static void load_ok(const char *path, lin_format fmt, int shard, int nshards, lin_data *d)
{
    int rv = lin_data_load(path, fmt, shard, nshards, 0, d, errbuf, sizeof(errbuf));
    if (rv != 0) fail_msg("load %s shard %d/%d: %d %s", path, shard, nshards, rv, errbuf);
}

/* Loading text must fail with "path:line: ..." containing `what`. */
static void load_bad_n(const char *text, size_t len, lin_format fmt, int line, const char *what)
{
    char want[600];
    const char *path = fixture_n("bad.txt", text, len);
    lin_data d;

    assert_int_equal(lin_data_load(path, fmt, 0, 1, 0, &d, errbuf, sizeof(errbuf)), PS_ERR_INVAL);
    snprintf(want, sizeof(want), "%s:%d: ", path, line);
    if (strncmp(errbuf, want, strlen(want)) != 0 || strstr(errbuf, what) == NULL)
        fail_msg("got '%s', want '%s...%s'", errbuf, want, what);
    lin_data_free(&d);
}

static void load_bad(const char *text, lin_format fmt, int line, const char *what)
{
    load_bad_n(text, strlen(text), fmt, line, what);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "%s/ps-lindata.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- formats ---------------------------------------------------------------- */

static void test_libsvm(void **state)
{
    const char *p = fixture("a.svm", "1 3:0.5 7:1\n-1 2:2\n0\n+1 5:1 # comment 9:9\n\n  \n1.0 0:-1.5e2\n");
    lin_data d;
    lin_example ex;

    load_ok(p, LIN_FMT_LIBSVM, 0, 1, &d);
    assert_int_equal(d.n, 5);
    assert_int_equal(d.nnz, 5);
    assert_int_equal(d.lines, 7);
    assert_non_null(d.vals);
    float labels[] = {1, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) assert_true(d.labels[i] == labels[i]);
    lin_data_example(&d, 0, &ex);
    assert_int_equal(ex.nfeat, 2);
    assert_true(ex.keys[0] == ps_hash_key(3) && ex.keys[1] == ps_hash_key(7));
    assert_true(ex.vals[0] == 0.5f && ex.vals[1] == 1.0f);
    lin_data_example(&d, 2, &ex);
    assert_int_equal(ex.nfeat, 0);
    lin_data_example(&d, 3, &ex);
    assert_true(ex.nfeat == 1 && ex.keys[0] == ps_hash_key(5) && ex.vals[0] == 1.0f);
    lin_data_example(&d, 4, &ex);
    assert_true(ex.keys[0] == ps_hash_key(0) && ex.vals[0] == -150.0f);
    lin_data_free(&d);
}

static void test_libsvm_binary_has_no_vals(void **state)
{
    const char *p = fixture("b.svm", "1 3:1 4:1\n0 9:1\n");
    lin_data d;
    lin_example ex;

    load_ok(p, LIN_FMT_LIBSVM, 0, 1, &d);
    assert_int_equal(d.n, 2);
    assert_null(d.vals);
    lin_data_example(&d, 1, &ex);
    assert_true(ex.nfeat == 1 && ex.vals == NULL && ex.keys[0] == ps_hash_key(9));
    lin_data_free(&d);
}

static void test_flights(void **state)
{
    const char *p = fixture("f.tsv", "1\tLAS\tPHL\t7\t1\t3\n0\tATL\tSAV\t0\t0\t12\r\n");
    const char *want[] = {"origin=LAS", "dest=PHL", "origin=LAS&dest=PHL", "hour=7", "weekday=1",
                          "month=3", "origin=LAS&hour=7", "dest=PHL&hour=7",
                          "origin=LAS&dest=PHL&weekday=1", "bias"};
    lin_data d;
    lin_example ex;

    load_ok(p, LIN_FMT_FLIGHTS, 0, 1, &d);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.nnz, 20);
    assert_null(d.vals);
    lin_data_example(&d, 0, &ex);
    assert_true(ex.label == 1 && ex.nfeat == 10);
    for (int i = 0; i < 10; i++)
        if (ex.keys[i] != hs(want[i])) fail_msg("feature %d is not %s", i, want[i]);
    assert_true(lin_bias_key() == hs("bias"));
    lin_data_example(&d, 1, &ex);
    assert_true(ex.label == 0 && ex.nfeat == 10);
    assert_true(ex.keys[5] == hs("month=12") && ex.keys[8] == hs("origin=ATL&dest=SAV&weekday=0"));
    lin_data_free(&d);
}

static void test_text(void **state)
{
    const char *p = fixture("t.txt", "1\tHello  hello world hello\n0\t\n-1\tx\ty\n");
    uint64_t want[] = {hs("w=Hello"), hs("w=hello"), hs("w=world"), hs("bias")};
    lin_data d;
    lin_example ex;

    qsort(want, 4, sizeof(want[0]), cmp_u64);
    load_ok(p, LIN_FMT_TEXT, 0, 1, &d);
    assert_int_equal(d.n, 3);
    assert_null(d.vals);
    lin_data_example(&d, 0, &ex);
    assert_true(ex.label == 1 && ex.nfeat == 4);
    assert_memory_equal(ex.keys, want, sizeof(want));
    lin_data_example(&d, 1, &ex);
    assert_true(ex.label == 0 && ex.nfeat == 1 && ex.keys[0] == lin_bias_key());
    lin_data_example(&d, 2, &ex);
    assert_true(ex.label == 0 && ex.nfeat == 3);
    lin_data_free(&d);
}

static void test_format_names(void **state)
{
    lin_format f;

    assert_int_equal(lin_format_parse("flights", &f), 0);
    assert_int_equal(f, LIN_FMT_FLIGHTS);
    assert_int_equal(lin_format_parse("svmlight", &f), 0);
    assert_int_equal(f, LIN_FMT_LIBSVM);
    assert_int_equal(lin_format_parse("csv", &f), PS_ERR_INVAL);
    assert_string_equal(lin_format_name(LIN_FMT_TEXT), "text");
    assert_int_equal(lin_format_parse("criteo", &f), 0);
    assert_int_equal(f, LIN_FMT_CRITEO);
    assert_string_equal(lin_format_name(LIN_FMT_CRITEO), "criteo");
}

/* ---- Criteo TSV ---------------------------------------------------------------- */

/* A Criteo line: label, then 39 fields (NULL = missing), tab separated. */
static size_t criteo_line(char *out, const char *label, const char *const *fields)
{
    size_t len = (size_t)sprintf(out, "%s", label);

    for (int i = 0; i < 39; i++) len += (size_t)sprintf(out + len, "\t%s", fields[i] ? fields[i] : "");
    return len;
}

static void test_criteo(void **state)
{
    /* I1..I13, then C1..C26 (fields 13..38). */
    const char *f[39] = {"0", "1", "2", "3", "100", "-1", NULL, "5", NULL, NULL, NULL, NULL, "1000000",
                         "68fd1e64", "80e26c9b", NULL, "fb936136", "7b4723c4", "25c83c98"};
    const char *none[39] = {NULL};
    const char *want[] = {"I1=0", "I2=1", "I3=2", "I4=1", "I5=21", "I6=-1", "I8=2", "I13=190",
                          "C1=68fd1e64", "C2=80e26c9b", "C4=fb936136", "C5=7b4723c4",
                          "C6=25c83c98", "C26=deadbeef", "C1=68fd1e64&C2=80e26c9b",
                          "C5=7b4723c4&C6=25c83c98", "bias"};
    enum { NWANT = sizeof(want) / sizeof(want[0]) };
    char text[2048];
    size_t len;
    lin_data d;
    lin_example ex;

    f[38] = "deadbeef";
    len = criteo_line(text, "1", f);
    len += (size_t)sprintf(text + len, "\n\n");
    len += criteo_line(text + len, "0", none);
    len += (size_t)sprintf(text + len, "\r\n");
    f[0] = "9223372036854775807";
    len += criteo_line(text + len, "-1", f);          /* no trailing newline */
    load_ok(fixture_n("c.tsv", text, len), LIN_FMT_CRITEO, 0, 1, &d);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.lines, 4);
    assert_null(d.vals);
    lin_data_example(&d, 0, &ex);
    assert_true(ex.label == 1);
    assert_int_equal(ex.nfeat, NWANT);
    for (int i = 0; i < NWANT; i++)
        if (ex.keys[i] != hs(want[i])) fail_msg("feature %d is not %s", i, want[i]);
    lin_data_example(&d, 1, &ex);                     /* every value missing: bias only */
    assert_true(ex.label == 0 && ex.nfeat == 1 && ex.keys[0] == lin_bias_key());
    lin_data_example(&d, 2, &ex);
    assert_true(ex.label == 0 && ex.nfeat == NWANT && ex.keys[0] == hs("I1=1906"));
    lin_data_free(&d);
}

/* Shards 0..k-1 of a Criteo file, concatenated, equal the whole file. */
static void test_criteo_shards(void **state)
{
    static char buf[1 << 18];
    size_t len = 0;
    uint64_t x = 99;
    lin_data all, d;

    for (int i = 0; i < 150; i++) {
        char vals[39][24];
        const char *f[39];
        for (int j = 0; j < 39; j++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            if ((x >> 60) < 5) f[j] = NULL;                         /* missing */
            else if (j < 13) sprintf(vals[j], "%lld", (long long)(x >> 40) % 5000 - 3), f[j] = vals[j];
            else sprintf(vals[j], "%08llx", (unsigned long long)(x >> 32)), f[j] = vals[j];
        }
        len += criteo_line(buf + len, i % 3 ? "0" : "1", f);
        len += (size_t)sprintf(buf + len, i % 17 == 4 ? "\n\n" : "\n");
    }
    const char *p = fixture_n("cs.tsv", buf, len);
    load_ok(p, LIN_FMT_CRITEO, 0, 1, &all);
    assert_int_equal(all.n, 150);
    for (int k = 1; k <= 5; k++) {
        size_t n = 0, nnz = 0;
        for (int s = 0; s < k; s++) {
            load_ok(p, LIN_FMT_CRITEO, s, k, &d);
            if (n + d.n > all.n) fail_msg("k=%d: too many examples", k);
            assert_memory_equal(d.labels, all.labels + n, d.n * sizeof(float));
            assert_memory_equal(d.keys, all.keys + nnz, d.nnz * sizeof(uint64_t));
            for (size_t i = 0; i <= d.n; i++) assert_true(d.offsets[i] + nnz == all.offsets[n + i]);
            n += d.n;
            nnz += d.nnz;
            lin_data_free(&d);
        }
        if (n != all.n || nnz != all.nnz) fail_msg("k=%d: %zu of %zu examples", k, n, all.n);
    }
    lin_data_free(&all);
}

static void test_criteo_bad_lines(void **state)
{
    const char *f[39] = {"1", NULL};
    char ok[512], text[2048];
    struct {
        const char *label, *i3, *c26;
        int cut;
        const char *what;
    } cases[] = {
        {"1", "1.5", NULL, 0, "bad I3 '1.5' (want an integer)"},
        {"1", "abc", NULL, 0, "bad I3 'abc'"},
        {"1", "-", NULL, 0, "bad I3 '-'"},
        {"1", "+3", NULL, 0, "bad I3 '+3'"},
        {"1", " 3", NULL, 0, "bad I3 ' 3'"},
        {"1", "99999999999999999999", NULL, 0, "bad I3"},
        {"2", NULL, NULL, 0, "bad label '2'"},
        {"", NULL, NULL, 0, "bad label ''"},
        {"1", NULL, "x\textra", 0, "expected 40 tab-separated fields, got 41"},
        {"1", NULL, NULL, 1, "expected 40 tab-separated fields, got 39"},
    };

    criteo_line(ok, "1", f);

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *g[39] = {"1", NULL};
        size_t len = (size_t)sprintf(text, "%s\n\n", ok);
        g[2] = cases[c].i3;
        g[38] = cases[c].c26;
        len += criteo_line(text + len, cases[c].label, g);
        if (cases[c].cut) while (text[--len] != '\t') {}   /* drop the last field */
        len += (size_t)sprintf(text + len, "\n%s\n", ok);
        load_bad_n(text, len, LIN_FMT_CRITEO, 3, cases[c].what);
    }
    load_bad("1\t2\t3\n", LIN_FMT_CRITEO, 1, "got 3");

    /* skip_bad: the bad lines are counted, the good ones kept. */
    size_t len = (size_t)sprintf(text, "%s\nbad\n%s\n", ok, ok);
    f[0] = "x";
    len += criteo_line(text + len, "0", f);
    len += (size_t)sprintf(text + len, "\n");
    lin_data d;
    const char *p = fixture_n("cskip.tsv", text, len);
    assert_int_equal(lin_data_load(p, LIN_FMT_CRITEO, 0, 1, 1, &d, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.bad_lines, 2);
    assert_non_null(strstr(errbuf, ":2: expected 40 tab-separated fields, got 1"));
    lin_data_free(&d);
}

/* ---- shards ------------------------------------------------------------------- */

/* A libsvm file of n lines, line i = "1 i:1" padded to a pseudo-random
 * length (some longer than a shard), with blank lines mixed in; `eol` ends
 * each line, the last one only if `trailing`.  want[i] = key of line i. */
static size_t make_lines(char *buf, int n, const char *eol, int trailing, uint64_t *want)
{
    size_t len = 0;
    uint64_t x = 12345;

    for (int i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        int pad = (int)(x >> 59) == 0 ? 700 : (int)((x >> 33) % 40);
        len += (size_t)sprintf(buf + len, "1 %d:1", i);
        for (int j = 0; j < pad; j++) len += (size_t)sprintf(buf + len, " ");
        if (i % 11 == 5) len += (size_t)sprintf(buf + len, "%s  ", eol);   /* a blank line */
        if (i + 1 < n || trailing) len += (size_t)sprintf(buf + len, "%s", eol);
        want[i] = ps_hash_key((uint64_t)i);
    }
    return len;
}

/* Shards 0..k-1 of path, concatenated, must be exactly want[0..n). */
static void check_shards(const char *path, int k, const uint64_t *want, int n)
{
    int got = 0;

    for (int s = 0; s < k; s++) {
        lin_data d;
        load_ok(path, LIN_FMT_LIBSVM, s, k, &d);
        for (size_t i = 0; i < d.n; i++, got++) {
            if (got >= n || d.keys[d.offsets[i]] != want[got])
                fail_msg("k=%d shard %d: example %zu is not line %d", k, s, i, got);
        }
        lin_data_free(&d);
    }
    if (got != n) fail_msg("k=%d: %d lines read, want %d", k, got, n);
}

static void test_shards_cover_every_line_once(void **state)
{
    static char buf[1 << 20];
    static uint64_t want[1000];
    const char *eols[] = {"\n", "\r\n"};

    for (int n = 1; n <= 200; n = n < 4 ? n + 1 : n * 3)
        for (int e = 0; e < 2; e++)
            for (int trailing = 0; trailing < 2; trailing++) {
                size_t len = make_lines(buf, n, eols[e], trailing, want);
                const char *p = fixture_n("shard.svm", buf, len);
                for (int k = 1; k <= 7; k++) check_shards(p, k, want, n);
            }
}

static void test_shard_boundaries_at_every_byte(void **state)
{
    /* 3 lines; with nshards = len every byte offset is a boundary. */
    const char *text = "1 0:1\n1 1:1\n1 2:1";
    uint64_t want[3] = {ps_hash_key(0), ps_hash_key(1), ps_hash_key(2)};
    const char *p = fixture("tiny.svm", text);

    for (int k = 1; k <= (int)strlen(text) + 3; k++) check_shards(p, k, want, 3);
}

static void test_empty_files(void **state)
{
    const char *files[] = {"", "\n\n  \n", "\r\n"};
    lin_data d;

    for (int f = 0; f < 3; f++) {
        const char *p = fixture("empty.txt", files[f]);
        for (int k = 1; k <= 3; k++)
            for (int s = 0; s < k; s++) {
                load_ok(p, LIN_FMT_TEXT, s, k, &d);
                assert_int_equal(d.n, 0);
                assert_int_equal(d.bad_lines, 0);
                lin_data_free(&d);
            }
    }
}

static void test_stream_chunks_equal_load(void **state)
{
    static char buf[1 << 20];
    static uint64_t want[600];
    size_t len = make_lines(buf, 500, "\n", 1, want);
    const char *p = fixture_n("chunks.svm", buf, len);
    lin_reader *r;
    lin_data d;
    int got = 0;

    assert_int_equal(lin_reader_open(p, LIN_FMT_LIBSVM, 1, 3, 0, &r, errbuf, sizeof(errbuf)), 0);
    lin_data_init(&d);
    for (;;) {
        lin_data_clear(&d);
        assert_int_equal(lin_reader_next(r, 7, &d, errbuf, sizeof(errbuf)), 0);
        if (d.n == 0) break;
        assert_true(d.n <= 7);
        got += (int)d.n;
    }
    lin_reader_close(r);
    lin_data_free(&d);
    load_ok(p, LIN_FMT_LIBSVM, 1, 3, &d);
    assert_int_equal(got, d.n);
    assert_true(got > 100);
    lin_data_free(&d);
}

/* ---- gzip -------------------------------------------------------------------- */

/* Write text[0..len) to name gzipped, as `members` gzip members cut at
 * arbitrary bytes (so lines cross members); returns its path (static). */
static const char *gz_fixture(const char *name, const char *text, size_t len, int members)
{
    static char path[512];
    gzFile z;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    for (int m = 0; m < members; m++) {
        size_t a = len * (size_t)m / (size_t)members, b = len * (size_t)(m + 1) / (size_t)members;
        assert_non_null(z = gzopen(path, m == 0 ? "wb" : "ab")); /* "ab": a new member */
        if (b > a) assert_int_equal(gzwrite(z, text + a, (unsigned)(b - a)), (int)(b - a));
        assert_int_equal(gzclose(z), Z_OK);
    }
    return path;
}

/* The bytes of path into buf (cap bytes at most); returns their number. */
static size_t slurp(const char *path, char *buf, size_t cap)
{
    FILE *f;
    size_t n;

    assert_non_null(f = fopen(path, "rb"));
    n = fread(buf, 1, cap, f);
    assert_true(n < cap);
    fclose(f);
    return n;
}

static void assert_same_data(const lin_data *a, const lin_data *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->nnz, b->nnz);
    assert_int_equal(a->lines, b->lines);
    assert_int_equal(a->bad_lines, b->bad_lines);
    assert_memory_equal(a->labels, b->labels, a->n * sizeof(float));
    assert_memory_equal(a->offsets, b->offsets, (a->n + 1) * sizeof(uint64_t));
    assert_memory_equal(a->keys, b->keys, a->nnz * sizeof(uint64_t));
    assert_true((a->vals == NULL) == (b->vals == NULL));
    if (a->vals) assert_memory_equal(a->vals, b->vals, a->nnz * sizeof(float));
}

/* Loading `gz` must fail with PS_ERR_SYS and "gz: " then `what`. */
static void load_gz_bad(const char *gz, lin_format fmt, int skip_bad, const char *what)
{
    char want[600];
    lin_data d;
    int rv = lin_data_load(gz, fmt, 0, 1, skip_bad, &d, errbuf, sizeof(errbuf));

    snprintf(want, sizeof(want), "%s: %s", gz, what);
    if (rv != PS_ERR_SYS || strncmp(errbuf, want, strlen(want)) != 0 || !strstr(errbuf, "(zlib: "))
        fail_msg("%s: got %d '%s', want %d '%s... (zlib: ...)'", gz, rv, errbuf, PS_ERR_SYS, want);
    lin_data_free(&d);
}

static void test_gzip_reads_as_plain(void **state)
{
    static char buf[1 << 20];
    static uint64_t want[400];
    const char *eols[] = {"\n", "\r\n"};
    char gz[512];
    lin_data plain, d;

    for (int e = 0; e < 2; e++) {
        size_t len = make_lines(buf, 400, eols[e], e, want);
        load_ok(fixture_n("p.svm", buf, len), LIN_FMT_LIBSVM, 0, 1, &plain);
        for (int members = 1; members <= 3; members += 2) {
            snprintf(gz, sizeof(gz), "%s", gz_fixture("p.svm.gz", buf, len, members));
            load_ok(gz, LIN_FMT_LIBSVM, 0, 1, &d);
            assert_same_data(&plain, &d);
            lin_data_free(&d);
        }
        lin_data_free(&plain);
    }
    /* two members, "1 7:1 8:" and "2\n0 9:1\n": both, and the line across them */
    load_ok(gz_fixture("two.svm.gz", "1 7:1 8:2\n0 9:1\n", 16, 2), LIN_FMT_LIBSVM, 0, 1, &d);
    assert_true(d.n == 2 && d.nnz == 3 && d.labels[0] == 1 && d.labels[1] == 0);
    assert_true(d.keys[0] == ps_hash_key(7) && d.keys[1] == ps_hash_key(8) &&
                d.keys[2] == ps_hash_key(9));
    assert_true(d.vals != NULL && d.vals[1] == 2.0f);
    lin_data_free(&d);
    load_ok(gz_fixture("empty.gz", "", 0, 1), LIN_FMT_LIBSVM, 0, 1, &d);
    assert_true(d.n == 0 && d.lines == 0);
    lin_data_free(&d);
}

/* Shard s of k of a gzip file holds the lines whose number is s modulo k:
 * together they hold every line once. */
static void test_gzip_shards_cover_every_line_once(void **state)
{
    static char buf[1 << 20];
    static uint64_t want[200];
    size_t len = make_lines(buf, 200, "\n", 1, want);
    const char *gz = gz_fixture("shard.svm.gz", buf, len, 2);

    for (int k = 1; k <= 4; k++) {
        int seen[200] = {0}, got = 0;
        for (int s = 0; s < k; s++) {
            lin_data d;
            load_ok(gz, LIN_FMT_LIBSVM, s, k, &d);
            assert_true(d.n >= 200 / (size_t)k - 20); /* about its share */
            for (size_t i = 0; i < d.n; i++, got++) {
                int j = 0;
                while (j < 200 && want[j] != d.keys[d.offsets[i]]) j++;
                if (j == 200 || seen[j]++)
                    fail_msg("k=%d shard %d: example %zu unknown or twice", k, s, i);
            }
            lin_data_free(&d);
        }
        if (got != 200) fail_msg("k=%d: %d lines read, want 200", k, got);
    }
}

/* Cut short at any byte: an error, never a shorter file (gzread alone reads
 * a cut stream as a short one); a cut csv header too. */
static void test_gzip_cut_short(void **state)
{
    static char buf[1 << 16], gzbuf[1 << 16];
    static uint64_t want[100];
    size_t len = make_lines(buf, 100, "\n", 1, want), glen;

    glen = slurp(gz_fixture("cut.svm.gz", buf, len, 1), gzbuf, sizeof(gzbuf));
    assert_true(glen > 100);
    for (size_t cut = 2; cut < glen; cut++)
        load_gz_bad(fixture_n("cut.svm.gz", gzbuf, cut), LIN_FMT_LIBSVM, 0, "gzip data cut short");
    const char *csv = "aaaaaaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbbbbbbbbbb,label\n1,2,1\n";
    glen = slurp(gz_fixture("cut.csv.gz", csv, strlen(csv), 1), gzbuf, sizeof(gzbuf));
    load_gz_bad(fixture_n("cut.csv.gz", gzbuf, glen / 2), LIN_FMT_CSV, 0, "gzip data cut short");
}

/* Flipped bytes: in the middle of the compressed data (zlib's reason varies:
 * a bad code, a bad CRC, or a stream that now ends early), in the CRC of
 * intact data, and in the header. */
static void test_gzip_corrupt(void **state)
{
    static char buf[1 << 16], gzbuf[1 << 16];
    static uint64_t want[100];
    size_t len = make_lines(buf, 100, "\n", 1, want);
    size_t glen = slurp(gz_fixture("bad.svm.gz", buf, len, 1), gzbuf, sizeof(gzbuf));
    const char *p;

    for (size_t i = glen / 2; i < glen / 2 + 4; i++) gzbuf[i] ^= 0x55;
    p = fixture_n("mid.svm.gz", gzbuf, glen);
    load_gz_bad(p, LIN_FMT_LIBSVM, 1, "");              /* skip_bad: garbage lines are not it */
    assert_non_null(strstr(errbuf, "gzip data"));
    for (size_t i = glen / 2; i < glen / 2 + 4; i++) gzbuf[i] ^= 0x55;
    gzbuf[glen - 8] ^= 1;                               /* the CRC-32 of the data */
    load_gz_bad(fixture_n("crc.svm.gz", gzbuf, glen), LIN_FMT_LIBSVM, 0, "corrupt gzip data");
    gzbuf[glen - 8] ^= 1;
    gzbuf[2] = 7;                                       /* compression method: not deflate */
    load_gz_bad(fixture_n("hdr.svm.gz", gzbuf, glen), LIN_FMT_LIBSVM, 0, "corrupt gzip data");
}

/* ---- bad lines ---------------------------------------------------------------- */

static void test_bad_lines_name_file_and_line(void **state)
{
    load_bad("1 1:1\nx 1:1\n", LIN_FMT_LIBSVM, 2, "bad label 'x'");
    load_bad("2 1:1\n", LIN_FMT_LIBSVM, 1, "bad label '2'");
    load_bad("1 1:1\n\n1 a:1\n", LIN_FMT_LIBSVM, 3, "bad feature 'a:1'");
    load_bad("1 3\n", LIN_FMT_LIBSVM, 1, "bad feature '3'");
    load_bad("1 3:\n", LIN_FMT_LIBSVM, 1, "bad feature");
    load_bad("1 -3:1\n", LIN_FMT_LIBSVM, 1, "bad feature");
    load_bad("1 3:nan\n", LIN_FMT_LIBSVM, 1, "bad feature");
    load_bad("1 no tab here\n", LIN_FMT_TEXT, 1, "missing tab");
    load_bad("0\tok\r\nyes\tword\n", LIN_FMT_TEXT, 2, "bad label 'yes'");
    load_bad("1\tA\tB\t1\t1\t1\textra\n", LIN_FMT_FLIGHTS, 1, "expected 6 tab-separated fields, got 7");
    load_bad("1\tA\tB\t1\t1\n", LIN_FMT_FLIGHTS, 1, "got 5");
    load_bad("1\tA\tB\t24\t1\t1\n", LIN_FMT_FLIGHTS, 1, "bad hour '24'");
    load_bad("1\tA\tB\t2\t7\t1\n", LIN_FMT_FLIGHTS, 1, "bad weekday");
    load_bad("1\tA\tB\t2\t1\t0\n", LIN_FMT_FLIGHTS, 1, "bad month '0'");
    load_bad("1\t\tB\t2\t1\t1\n", LIN_FMT_FLIGHTS, 1, "bad origin");
    load_bad("0.5\tA\tB\t2\t1\t1\n", LIN_FMT_FLIGHTS, 1, "bad label");
    load_bad("1\tA\tB\t1\t1\t1\n1 A B 1 1 1\n", LIN_FMT_FLIGHTS, 2, "got 1");
    load_bad_n("1 1:1\n1 2:1\0junk\n", 18, LIN_FMT_LIBSVM, 2, "NUL byte");
}

static void test_bad_line_number_is_absolute_in_a_shard(void **state)
{
    static char buf[20000];
    size_t len = 0;
    lin_data d;
    char want[600];

    for (int i = 0; i < 1000; i++) len += (size_t)sprintf(buf + len, i == 900 ? "z 1:1\n" : "1 %d:1\n", i);
    const char *p = fixture_n("late.svm", buf, len);
    load_ok(p, LIN_FMT_LIBSVM, 0, 2, &d);
    lin_data_free(&d);
    assert_int_equal(lin_data_load(p, LIN_FMT_LIBSVM, 1, 2, 0, &d, errbuf, sizeof(errbuf)),
                     PS_ERR_INVAL);
    snprintf(want, sizeof(want), "%s:901: bad label 'z'", p);
    assert_string_equal(errbuf, want);
    lin_data_free(&d);
}

static void test_skip_bad_counts(void **state)
{
    const char *p = fixture("skip.svm", "1 1:1\nx\n0 2:1\n1 a:b\n\n1 3:1\n1 4\n");
    lin_data d;
    char want[600];

    assert_int_equal(lin_data_load(p, LIN_FMT_LIBSVM, 0, 1, 1, &d, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.bad_lines, 3);
    assert_int_equal(d.lines, 7);
    snprintf(want, sizeof(want), "%s:2: bad label 'x'", p);
    assert_string_equal(errbuf, want);
    assert_true(d.keys[2] == ps_hash_key(3));
    lin_data_free(&d);
    p = fixture("clean.svm", "1 1:1\n");
    assert_int_equal(lin_data_load(p, LIN_FMT_LIBSVM, 0, 1, 1, &d, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(d.bad_lines, 0);
    assert_string_equal(errbuf, "");
    lin_data_free(&d);
}

static void test_bad_arguments(void **state)
{
    lin_data d;
    const char *p = fixture("ok.svm", "1 1:1\n");

    assert_int_equal(lin_data_load(p, LIN_FMT_LIBSVM, 2, 2, 0, &d, errbuf, sizeof(errbuf)), PS_ERR_INVAL);
    lin_data_free(&d);
    assert_int_equal(lin_data_load(p, LIN_FMT_LIBSVM, 0, 0, 0, &d, errbuf, sizeof(errbuf)), PS_ERR_INVAL);
    lin_data_free(&d);
    assert_int_equal(lin_data_load(p, (lin_format)7, 0, 1, 0, &d, errbuf, sizeof(errbuf)), PS_ERR_INVAL);
    lin_data_free(&d);
    assert_int_equal(lin_data_load("/nonexistent/x.svm", LIN_FMT_LIBSVM, 0, 1, 0, &d, errbuf,
                                   sizeof(errbuf)), PS_ERR_SYS);
    assert_non_null(strstr(errbuf, "/nonexistent/x.svm: "));
    lin_data_free(&d);
    assert_int_equal(lin_data_load("/dev/null", LIN_FMT_LIBSVM, 0, 2, 0, &d, errbuf, sizeof(errbuf)),
                     PS_ERR_INVAL);
    lin_data_free(&d);
}

/* ---- the container ---------------------------------------------------------- */

static void test_append(void **state)
{
    uint64_t k1[] = {4, 5}, k2[] = {6};
    float v2[] = {2.5f};
    lin_data d;
    lin_example ex;

    lin_data_init(&d);
    assert_int_equal(lin_data_append(&d, 1, k1, NULL, 2), 0);
    assert_null(d.vals);
    assert_int_equal(lin_data_append(&d, 0, NULL, NULL, 0), 0);
    assert_int_equal(lin_data_append(&d, 0, k2, v2, 1), 0);
    assert_non_null(d.vals);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.nnz, 3);
    lin_data_example(&d, 0, &ex);
    assert_true(ex.label == 1 && ex.nfeat == 2 && ex.keys[1] == 5 && ex.vals[1] == 1.0f);
    lin_data_example(&d, 1, &ex);
    assert_int_equal(ex.nfeat, 0);
    lin_data_example(&d, 2, &ex);
    assert_true(ex.keys[0] == 6 && ex.vals[0] == 2.5f);
    assert_int_equal(lin_data_append(&d, 1, k1, NULL, 2), 0);  /* vals NULL once values are stored */
    lin_data_example(&d, 3, &ex);
    assert_true(ex.vals[0] == 1.0f && ex.vals[1] == 1.0f);
    lin_data_free(&d);
}

/* ---- distinct keys ------------------------------------------------------------ */

static void test_unique_keys_sorted_and_columns(void **state)
{
    uint64_t keys[] = {5, 0, 3, 5, 0, 9, UINT64_MAX, 3}, want[] = {0, 3, 5, 9, UINT64_MAX};
    uint64_t offsets[] = {0, 4, 8};
    float labels[] = {1, 0};
    lin_data d = {.n = 2, .nnz = 8, .labels = labels, .offsets = offsets, .keys = keys};
    uint64_t *u;
    size_t n;
    uint32_t cols[8];

    assert_int_equal(lin_data_unique_keys(&d, &u, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(u, want, sizeof(want));
    assert_int_equal(lin_data_columns(&d, u, n, cols), 0);
    for (int j = 0; j < 8; j++) assert_true(u[cols[j]] == keys[j]);
    assert_int_equal(lin_data_columns(&d, u + 1, n - 1, cols), PS_ERR_NOTFOUND);
    free(u);
}

static void test_unique_keys_many(void **state)
{
    enum { NNZ = 200000, DISTINCT = 30000 };
    uint64_t *keys = malloc(NNZ * sizeof(*keys)), *ref = malloc(NNZ * sizeof(*ref)), *u;
    uint32_t *cols = malloc(NNZ * sizeof(*cols));
    uint64_t offsets[2] = {0, NNZ}, x = 7;
    float label = 1;
    lin_data d = {.n = 1, .nnz = NNZ, .labels = &label, .offsets = offsets, .keys = keys};
    size_t n, m = 0;

    for (int j = 0; j < NNZ; j++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        keys[j] = ps_hash_key((x >> 33) % DISTINCT);
    }
    memcpy(ref, keys, NNZ * sizeof(*ref));
    qsort(ref, NNZ, sizeof(*ref), cmp_u64);
    for (int j = 0; j < NNZ; j++)
        if (m == 0 || ref[j] != ref[m - 1]) ref[m++] = ref[j];
    assert_int_equal(lin_data_unique_keys(&d, &u, &n), 0);
    assert_int_equal(n, m);
    assert_memory_equal(u, ref, m * sizeof(*u));
    assert_int_equal(lin_data_columns(&d, u, n, cols), 0);
    for (int j = 0; j < NNZ; j++) assert_true(u[cols[j]] == keys[j]);
    free(u);
    free(cols);
    free(ref);
    free(keys);
}

static void test_unique_keys_empty(void **state)
{
    lin_data d;
    uint64_t *u;
    size_t n = 99;

    lin_data_init(&d);
    assert_int_equal(lin_data_unique_keys(&d, &u, &n), 0);
    assert_int_equal(n, 0);
    free(u);
}

/* ---- export ------------------------------------------------------------------ */

static void test_write_libsvm(void **state)
{
    uint64_t keys[] = {7, (1ull << 24) + 5, 5, 3, UINT64_MAX};
    float vals[] = {1, 2, 0.5f, -1, 4}, labels[] = {1, 0};
    uint64_t offsets[] = {0, 3, 5};
    lin_data d = {.n = 2, .nnz = 5, .labels = labels, .offsets = offsets, .keys = keys};
    char path[512], text[256] = {0};
    FILE *f;

    snprintf(path, sizeof(path), "%s/out.svm", tmpdir);
    assert_non_null(f = fopen(path, "w"));
    assert_int_equal(lin_data_write_libsvm(&d, f, 24), 0);
    d.vals = vals;
    assert_int_equal(lin_data_write_libsvm(&d, f, 24), 0);
    assert_int_equal(lin_data_write_libsvm(&d, f, 64), PS_ERR_INVAL);
    assert_int_equal(fclose(f), 0);
    assert_non_null(f = fopen(path, "r"));
    assert_true(fread(text, 1, sizeof(text) - 1, f) > 0);
    fclose(f);
    assert_string_equal(text, "+1 6:2 8:1\n-1 4:1 16777216:1\n"
                              "+1 6:2.5 8:1\n-1 4:-1 16777216:4\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libsvm),
        cmocka_unit_test(test_libsvm_binary_has_no_vals),
        cmocka_unit_test(test_flights),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_criteo),
        cmocka_unit_test(test_criteo_shards),
        cmocka_unit_test(test_criteo_bad_lines),
        cmocka_unit_test(test_shards_cover_every_line_once),
        cmocka_unit_test(test_shard_boundaries_at_every_byte),
        cmocka_unit_test(test_empty_files),
        cmocka_unit_test(test_stream_chunks_equal_load),
        cmocka_unit_test(test_gzip_reads_as_plain),
        cmocka_unit_test(test_gzip_shards_cover_every_line_once),
        cmocka_unit_test(test_gzip_cut_short),
        cmocka_unit_test(test_gzip_corrupt),
        cmocka_unit_test(test_bad_lines_name_file_and_line),
        cmocka_unit_test(test_bad_line_number_is_absolute_in_a_shard),
        cmocka_unit_test(test_skip_bad_counts),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_unique_keys_sorted_and_columns),
        cmocka_unit_test(test_unique_keys_many),
        cmocka_unit_test(test_unique_keys_empty),
        cmocka_unit_test(test_write_libsvm),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
