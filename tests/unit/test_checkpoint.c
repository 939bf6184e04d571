/*
 * test_checkpoint.c -- unit tests of the checkpoint file format
 * (src/replica/ckpt_file.c): table files round-trip across several blocks;
 * a flipped byte, a truncation (inside a block and at a block boundary) and
 * trailing bytes are detected; MANIFEST round-trips and refuses corruption;
 * a checkpoint without MANIFEST is ignored and the newest valid one is
 * chosen, falling back past a corrupt one.  Files live in a fresh folder
 * under $TMPDIR, removed afterwards.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "replica/checkpoint.h"
#include "util/util.h"

#define WATCHDOG_S 100 /* per test: kill the process if a test hangs (ctest's cap is 120) */
#define BB 12u         /* block bytes: three f32 values */
#define NREC 150000u   /* spans three blocks of PSI_CKPT_BLOCK_RECS */

static char root[256];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    alarm(WATCHDOG_S);
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/ckpt-unit.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    alarm(0);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

static psi_ckpt_meta meta_of(const char *table, uint32_t rank, uint64_t iter)
{
    psi_ckpt_meta m;
    memset(&m, 0, sizeof(m));
    snprintf(m.table, sizeof(m.table), "%s", table);
    m.dtype = PS_F32;
    m.width = 3;
    m.update = PS_UPDATE_ADD;
    m.block_bytes = BB;
    m.rank = rank;
    m.iter = iter;
    return m;
}

/* n records: key = seed + 7 i, block bytes = low bytes of key * 3 + j. */
static uint8_t *make_recs(uint64_t n, uint64_t seed)
{
    uint8_t *r = malloc(n * (8 + BB) + 1);
    assert_non_null(r);
    for (uint64_t i = 0; i < n; i++) {
        uint8_t *p = r + i * (8 + BB);
        uint64_t key = seed + 7 * i;
        psi_put_u64(p, key);
        for (unsigned j = 0; j < BB; j++) p[8 + j] = (uint8_t)(key * 3 + j);
    }
    return r;
}

typedef struct seen {
    uint64_t n, seed;
    int bad;
} seen;

static int check_rec(void *arg, uint64_t key, const uint8_t *block)
{
    seen *s = arg;
    s->bad |= key != s->seed + 7 * s->n;
    for (unsigned j = 0; j < BB; j++) s->bad |= block[j] != (uint8_t)(key * 3 + j);
    s->n++;
    return 0;
}

static void path_of(char *buf, size_t cap, uint64_t iter, const char *name)
{
    char d[512];
    assert_int_equal(psi_ckpt_dir_path(d, sizeof(d), root, iter), PS_OK);
    snprintf(buf, cap, "%s/%s", d, name);
}

/* Write checkpoint `iter` of table "w" from `servers` servers, n records
 * each; with `manifest` also its MANIFEST. */
static void make_ckpt(uint64_t iter, uint32_t servers, uint64_t n, int manifest)
{
    char d[512], path[1024];
    psi_ckpt_manifest m = {.iter = iter, .nservers = servers};
    assert_int_equal(psi_ckpt_dir_path(d, sizeof(d), root, iter), PS_OK);
    assert_int_equal(mkdir(d, 0755), 0);
    m.files = calloc(servers, sizeof(m.files[0]));
    for (uint32_t r = 0; r < servers; r++) {
        psi_ckpt_meta meta = meta_of("w", r, iter);
        char name[PSI_CKPT_NAME_MAX];
        uint8_t *recs = make_recs(n, 1000000ull * r);
        assert_int_equal(psi_ckpt_file_name(name, sizeof(name), "w", r), PS_OK);
        snprintf(path, sizeof(path), "%s/%s", d, name);
        assert_int_equal(psi_ckpt_write_file(path, &meta, recs, n, &m.files[m.nfiles++]), PS_OK);
        free(recs);
    }
    if (manifest) assert_int_equal(psi_ckpt_manifest_write(d, &m), PS_OK);
    free(m.files);
}

static void flip_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    int c = fgetc(f);
    assert_int_equal(fseek(f, off, SEEK_SET), 0);
    fputc(c ^ 0x40, f);
    fclose(f);
}

static int read_plain(const char *path, char *why)
{
    return psi_ckpt_read_file(path, NULL, NULL, NULL, NULL, NULL, why, PSI_CKPT_WHY);
}

/* ---- table files ------------------------------------------------------------------- */

static void test_file_round_trip(void **state)
{
    (void)state;
    char path[600], why[PSI_CKPT_WHY];
    psi_ckpt_meta m = meta_of("weights", 3, 42), got;
    psi_ckpt_file out, rd;
    uint8_t *recs = make_recs(NREC, 5);
    snprintf(path, sizeof(path), "%s/weights.3", root);
    assert_int_equal(psi_ckpt_write_file(path, &m, recs, NREC, &out), PS_OK);
    free(recs);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, out.size);
    assert_int_equal(out.records, NREC);
    assert_string_equal(out.name, "weights.3");
    seen s = {.seed = 5};
    assert_int_equal(psi_ckpt_read_file(path, &m, check_rec, &s, &got, &rd, why, sizeof(why)),
                     PS_OK);
    assert_int_equal(s.n, NREC);
    assert_false(s.bad);
    assert_string_equal(got.table, "weights");
    assert_int_equal(got.iter, 42);
    assert_int_equal(got.rank, 3);
    assert_int_equal(rd.crc, out.crc);
    assert_int_equal(rd.size, out.size);
    /* an empty file (a server that owns no key) is valid too */
    snprintf(path, sizeof(path), "%s/empty.0", root);
    assert_int_equal(psi_ckpt_write_file(path, &m, NULL, 0, &out), PS_OK);
    assert_int_equal(read_plain(path, why), PS_OK);
    /* no temporary file is left behind */
    snprintf(path, sizeof(path), "%s/weights.3.tmp", root);
    assert_int_not_equal(access(path, F_OK), 0);
}

static void test_file_flipped_byte(void **state)
{
    (void)state;
    char path[600], why[PSI_CKPT_WHY];
    psi_ckpt_meta m = meta_of("t", 0, 1);
    psi_ckpt_file out;
    uint8_t *recs = make_recs(NREC, 9);
    snprintf(path, sizeof(path), "%s/t.0", root);
    assert_int_equal(psi_ckpt_write_file(path, &m, recs, NREC, &out), PS_OK);
    free(recs);
    /* a value byte in the second block */
    long off = PSI_CKPT_HDR_SIZE + PSI_CKPT_BLK_HDR_SIZE + (long)PSI_CKPT_BLOCK_RECS * (8 + BB) +
               PSI_CKPT_BLK_HDR_SIZE + 1000;
    flip_byte(path, off);
    assert_int_equal(read_plain(path, why), PS_ERR_PROTO);
    assert_non_null(strstr(why, "CRC mismatch"));
    assert_non_null(strstr(why, path));
    flip_byte(path, off);
    assert_int_equal(read_plain(path, why), PS_OK);
    flip_byte(path, 70); /* the table name in the header */
    assert_int_equal(read_plain(path, why), PS_ERR_PROTO);
    assert_non_null(strstr(why, "header CRC"));
}

static void test_file_truncated(void **state)
{
    (void)state;
    char path[600], why[PSI_CKPT_WHY];
    psi_ckpt_meta m = meta_of("t", 0, 1);
    psi_ckpt_file out;
    uint8_t *recs = make_recs(NREC, 9);
    snprintf(path, sizeof(path), "%s/t.0", root);
    assert_int_equal(psi_ckpt_write_file(path, &m, recs, NREC, &out), PS_OK);
    free(recs);
    off_t block1_end =
        PSI_CKPT_HDR_SIZE + PSI_CKPT_BLK_HDR_SIZE + (off_t)PSI_CKPT_BLOCK_RECS * (8 + BB);
    assert_int_equal(truncate(path, block1_end + 100), 0); /* inside block 2 */
    assert_int_equal(read_plain(path, why), PS_ERR_PROTO);
    assert_non_null(strstr(why, "claims"));
    assert_int_equal(truncate(path, block1_end), 0); /* exactly at a block boundary */
    assert_int_equal(read_plain(path, why), PS_ERR_PROTO);
    assert_non_null(strstr(why, "truncated"));
    assert_int_equal(truncate(path, 50), 0); /* inside the header */
    assert_int_equal(read_plain(path, why), PS_ERR_PROTO);
    assert_int_equal(truncate(path, (off_t)out.size + 3), 0); /* grown: zeros appended */
    assert_int_equal(read_plain(path, why), PS_ERR_PROTO);
}

static void test_file_trailing_bytes_and_expect(void **state)
{
    (void)state;
    char path[600], why[PSI_CKPT_WHY];
    psi_ckpt_meta m = meta_of("t", 0, 1), other = meta_of("t", 0, 1);
    psi_ckpt_file out;
    uint8_t *recs = make_recs(10, 1);
    snprintf(path, sizeof(path), "%s/t.0", root);
    assert_int_equal(psi_ckpt_write_file(path, &m, recs, 10, &out), PS_OK);
    free(recs);
    other.width = 2;
    assert_int_equal(psi_ckpt_read_file(path, &other, NULL, NULL, NULL, NULL, why, sizeof(why)),
                     PS_ERR_INVAL);
    assert_non_null(strstr(why, "width 3"));
    assert_int_equal(truncate(path, (off_t)out.size + 1), 0);
    assert_int_equal(read_plain(path, why), PS_ERR_PROTO);
    assert_non_null(strstr(why, "after the trailer"));
    snprintf(path, sizeof(path), "%s/none.0", root);
    assert_int_equal(read_plain(path, why), PS_ERR_NOTFOUND);
}

static void test_names(void **state)
{
    (void)state;
    const char *names[] = {"w", "emb.v2", "a b/c%d", "-_x", "\xff\x01z"};
    for (size_t i = 0; i < PSI_ARRAY_LEN(names); i++) {
        char f[PSI_CKPT_NAME_MAX], t[PSI_CKPT_TABLE_MAX];
        uint32_t r;
        assert_int_equal(psi_ckpt_file_name(f, sizeof(f), names[i], (uint32_t)i * 11), PS_OK);
        assert_null(strchr(f, '/'));
        assert_null(strchr(f, ' '));
        assert_int_equal(psi_ckpt_parse_name(f, t, sizeof(t), &r), PS_OK);
        assert_string_equal(t, names[i]);
        assert_int_equal(r, i * 11);
    }
    char t[PSI_CKPT_TABLE_MAX];
    uint32_t r;
    const char *bad[] = {"w", ".3", "w.", "w.x", "a%4.1", "a%61.1" /* 'a' needs no escape */,
                         "a b.1", "w.1234567890"};
    for (size_t i = 0; i < PSI_ARRAY_LEN(bad); i++)
        assert_int_equal(psi_ckpt_parse_name(bad[i], t, sizeof(t), &r), PS_ERR_PROTO);
    char d[64];
    assert_int_equal(psi_ckpt_dir_path(d, sizeof(d), "/x", 42), PS_OK);
    assert_string_equal(d, "/x/ckpt-00000000000000000042");
}

/* ---- MANIFEST and whole checkpoints ----------------------------------------------------- */

static void test_manifest_round_trip(void **state)
{
    (void)state;
    char d[512], why[PSI_CKPT_WHY];
    psi_ckpt_manifest m;
    make_ckpt(7, 3, 100, 1);
    assert_int_equal(psi_ckpt_dir_path(d, sizeof(d), root, 7), PS_OK);
    assert_int_equal(psi_ckpt_check(d, &m, why, sizeof(why)), PS_OK);
    assert_int_equal(m.iter, 7);
    assert_int_equal(m.nservers, 3);
    assert_int_equal(m.nfiles, 3);
    for (uint32_t r = 0; r < 3; r++) {
        assert_string_equal(m.files[r].table, "w");
        assert_int_equal(m.files[r].rank, r);
        assert_int_equal(m.files[r].records, 100);
    }
    psi_ckpt_manifest_free(&m);
    char path[600];
    path_of(path, sizeof(path), 7, "MANIFEST");
    flip_byte(path, 20);
    assert_int_equal(psi_ckpt_manifest_read(d, &m, why, sizeof(why)), PS_ERR_PROTO);
    assert_non_null(strstr(why, "CRC mismatch"));
    flip_byte(path, 20);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 5), 0);
    assert_int_equal(psi_ckpt_manifest_read(d, &m, why, sizeof(why)), PS_ERR_PROTO);
    assert_non_null(strstr(why, "torn"));
    assert_int_equal(unlink(path), 0);
    assert_int_equal(psi_ckpt_manifest_read(d, &m, why, sizeof(why)), PS_ERR_NOTFOUND);
}

static void test_manifest_validate(void **state)
{
    (void)state;
    char why[PSI_CKPT_WHY];
    psi_ckpt_file f[3] = {
        {.table = "a", .rank = 1}, {.table = "a", .rank = 0}, {.table = "b", .rank = 0}};
    psi_ckpt_manifest m = {.iter = 1, .nservers = 2, .nfiles = 3, .files = f};
    assert_int_equal(psi_ckpt_manifest_validate(&m, why, sizeof(why)), PS_ERR_PROTO);
    assert_non_null(strstr(why, "table 'b' has 1 files for 2 servers"));
    f[2] = (psi_ckpt_file){.table = "a", .rank = 1};
    m.nservers = 3;
    assert_int_equal(psi_ckpt_manifest_validate(&m, why, sizeof(why)), PS_ERR_PROTO);
    m.nfiles = 2;
    m.nservers = 2;
    assert_int_equal(psi_ckpt_manifest_validate(&m, why, sizeof(why)), PS_OK);
    assert_int_equal(f[0].rank, 0); /* sorted by table and rank */
}

static void test_find_newest_valid(void **state)
{
    (void)state;
    char ck[1024], path[1024];
    psi_ckpt_manifest m;
    assert_int_equal(psi_ckpt_find(root, ck, sizeof(ck), &m), PS_ERR_NOTFOUND);
    make_ckpt(10, 2, 70000, 1);
    make_ckpt(20, 2, 70000, 1);
    make_ckpt(30, 2, 70000, 0); /* no MANIFEST: incomplete */
    assert_int_equal(psi_ckpt_find(root, ck, sizeof(ck), &m), PS_OK);
    assert_int_equal(m.iter, 20);
    assert_non_null(strstr(ck, "ckpt-00000000000000000020"));
    psi_ckpt_manifest_free(&m);
    /* a flipped byte in a block of iteration 20: fall back to 10 */
    path_of(path, sizeof(path), 20, "w.1");
    flip_byte(path, PSI_CKPT_HDR_SIZE + PSI_CKPT_BLK_HDR_SIZE + 5000);
    assert_int_equal(psi_ckpt_find(root, ck, sizeof(ck), &m), PS_OK);
    assert_int_equal(m.iter, 10);
    psi_ckpt_manifest_free(&m);
    /* a file missing from iteration 10: nothing valid is left */
    path_of(path, sizeof(path), 10, "w.0");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(psi_ckpt_find(root, ck, sizeof(ck), &m), PS_ERR_NOTFOUND);
    /* an unrelated entry and a folder that does not exist */
    snprintf(path, sizeof(path), "%s/ckpt-12", root);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(psi_ckpt_find(root, ck, sizeof(ck), &m), PS_ERR_NOTFOUND);
    snprintf(path, sizeof(path), "%s/nope", root);
    assert_int_equal(psi_ckpt_find(path, ck, sizeof(ck), &m), PS_ERR_NOTFOUND);
}

static void test_find_torn_file_size(void **state)
{
    (void)state;
    char ck[1024], path[1024], why[PSI_CKPT_WHY];
    psi_ckpt_manifest m;
    make_ckpt(5, 1, 1000, 1);
    path_of(path, sizeof(path), 5, "w.0");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 24), 0); /* lost the trailer */
    assert_int_equal(psi_ckpt_dir_path(ck, sizeof(ck), root, 5), PS_OK);
    assert_int_equal(psi_ckpt_check(ck, &m, why, sizeof(why)), PS_ERR_PROTO);
    assert_non_null(strstr(why, "torn"));
    assert_non_null(strstr(why, "w.0"));
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_file_round_trip),
        T(test_file_flipped_byte),
        T(test_file_truncated),
        T(test_file_trailing_bytes_and_expect),
        T(test_names),
        T(test_manifest_round_trip),
        T(test_manifest_validate),
        T(test_find_newest_valid),
        T(test_find_torn_file_size),
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
