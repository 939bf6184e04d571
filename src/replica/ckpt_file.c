/*
 * ckpt_file.c -- the checkpoint file format of replica/checkpoint.h: table
 * files (header, CRC'ed blocks, trailer), the MANIFEST, and finding the newest
 * complete and valid checkpoint in a folder.
 *
 * Design: every file is written under "NAME.tmp", fsync'ed, then renamed over
 * NAME, so a reader sees an old file or a whole new one, never a torn one
 * from this writer; torn or corrupt files from elsewhere (a crash before the
 * folder's fsync, a bad disk, a hand edit) are caught by the per-block CRCs,
 * the counts in header and trailer, and the sizes and checksums in MANIFEST.
 * A reader validates every length before it allocates.
 *
 * Pure file I/O: no locks, no networking, no table access, so the unit tests
 * drive it directly.  Must never: trust a count or length read from a file,
 * report a checkpoint valid before every byte of it was checked.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "replica/checkpoint.h"
#include "util/log.h"
#include "util/util.h"

static const uint8_t MAGIC[8] = {'P', 'S', 'C', 'K', 'P', 'T', '\r', '\n'};
#define TAG_BLOCK 0x314b4c42u   /* "BLK1" */
#define TAG_END 0x31444e45u     /* "END1" */
#define MANIFEST_MAX (64u << 20)

/* Header offsets. */
enum {
    H_MAGIC = 0, H_VERSION = 8, H_DTYPE = 12, H_WIDTH = 16, H_UPDATE = 20, H_BB = 24,
    H_RANK = 28, H_ITER = 32, H_RECORDS = 40, H_DLO = 48, H_DHI = 56, H_TABLE = 64,
    H_CRC = H_TABLE + PSI_CKPT_TABLE_MAX, H_PAD = H_CRC + 4,
};
static_assert(H_CRC == 128 && H_PAD + 4 == PSI_CKPT_HDR_SIZE, "checkpoint header layout");
/* Block header offsets: the CRC covers the count and the records after it. */
enum { B_TAG = 0, B_CRC = 4, B_COUNT = 8 };
static_assert(B_COUNT + 4 == PSI_CKPT_BLK_HDR_SIZE, "checkpoint block header layout");
/* Trailer offsets. */
enum { T_TAG = 0, T_BLOCKS = 4, T_RECORDS = 8, T_CHAIN = 16, T_CRC = 20 };
static_assert(T_CRC + 4 == PSI_CKPT_TRAILER_SIZE, "checkpoint trailer layout");

static int why_set(char *why, size_t cap, int rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int why_set(char *why, size_t cap, int rv, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (why && cap) vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return rv;
}

static uint32_t chain_crc(uint32_t h, uint32_t block_crc)
{
    uint8_t b[8];
    psi_put_u32(b, h);
    psi_put_u32(b + 4, block_crc);
    return psi_crc32c(b, sizeof(b));
}

/* ---- names ------------------------------------------------------------------------ */

int psi_ckpt_dir_path(char *buf, size_t cap, const char *dir, uint64_t iter)
{
    int n = snprintf(buf, cap, "%s/ckpt-%020" PRIu64, dir, iter);
    return n < 0 || (size_t)n >= cap ? PS_ERR_TOOBIG : PS_OK;
}

static int safe_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

int psi_ckpt_file_name(char *buf, size_t cap, const char *table, uint32_t rank)
{
    size_t o = 0;
    for (const uint8_t *p = (const uint8_t *)table; *p; p++) {
        if (o + 4 > cap) return PS_ERR_TOOBIG;
        if (safe_char(*p)) buf[o++] = (char)*p;
        else o += (size_t)snprintf(buf + o, cap - o, "%%%02X", *p);
    }
    int n = snprintf(buf + o, cap - o, ".%" PRIu32, rank);
    return n < 0 || o + (size_t)n >= cap ? PS_ERR_TOOBIG : PS_OK;
}

static int hex_val(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int psi_ckpt_parse_name(const char *name, char *table, size_t cap, uint32_t *rank)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || !dot[1] || strlen(dot + 1) > 9) return PS_ERR_PROTO;
    uint32_t r = 0;
    for (const char *p = dot + 1; *p; p++) {
        if (*p < '0' || *p > '9') return PS_ERR_PROTO;
        r = r * 10 + (uint32_t)(*p - '0');
    }
    size_t o = 0;
    for (const char *p = name; p < dot; p++) {
        int c = (uint8_t)*p;
        if (c == '%') {
            int hi = p + 2 < dot ? hex_val(p[1]) : -1, lo = hi >= 0 ? hex_val(p[2]) : -1;
            if (lo < 0 || safe_char(hi * 16 + lo) || hi * 16 + lo == 0) return PS_ERR_PROTO;
            c = hi * 16 + lo;
            p += 2;
        } else if (!safe_char(c)) {
            return PS_ERR_PROTO;
        }
        if (o + 1 >= cap) return PS_ERR_PROTO;
        table[o++] = (char)c;
    }
    table[o] = '\0';
    *rank = r;
    return PS_OK;
}

/* ---- writing ------------------------------------------------------------------------ */

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int psi_ckpt_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        PSI_ERROR("checkpoint: fsync of folder %s failed: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return PS_ERR_SYS;
    }
    close(fd);
    return PS_OK;
}

/* Write path through "path.tmp" (fill writes the content to fd; 0 or -1 with
 * errno set, or 0 for no memory), fsync, rename.  0 or PS_ERR_SYS (logged). */
typedef int (*fill_fn)(void *arg, int fd);

static int write_atomic(const char *path, fill_fn fill, void *arg)
{
    char tmp[4096];
    const char *op = "open";
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) return PS_ERR_TOOBIG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) goto fail;
    op = "write";
    if (fill(arg, fd) != 0) goto fail;
    op = "fsync";
    if (fsync(fd) != 0) goto fail;
    op = "close";
    int c = close(fd);
    fd = -1;
    if (c != 0) goto fail;
    op = "rename";
    if (rename(tmp, path) != 0) goto fail;
    return PS_OK;
fail:
    PSI_ERROR("checkpoint: %s of %s failed: %s", op, fd < 0 && !strcmp(op, "open") ? tmp : path,
              errno ? strerror(errno) : "no memory");
    if (fd >= 0) close(fd);
    unlink(tmp);
    return PS_ERR_SYS;
}

typedef struct file_job {
    const psi_ckpt_meta *m;
    const uint8_t *recs;
    uint64_t n;
    psi_ckpt_file *out;
} file_job;

static void encode_header(uint8_t *h, const psi_ckpt_meta *m, uint64_t n)
{
    memset(h, 0, PSI_CKPT_HDR_SIZE);
    memcpy(h + H_MAGIC, MAGIC, sizeof(MAGIC));
    psi_put_u32(h + H_VERSION, PSI_CKPT_VERSION);
    psi_put_u32(h + H_DTYPE, m->dtype);
    psi_put_u32(h + H_WIDTH, m->width);
    psi_put_u32(h + H_UPDATE, m->update);
    psi_put_u32(h + H_BB, m->block_bytes);
    psi_put_u32(h + H_RANK, m->rank);
    psi_put_u64(h + H_ITER, m->iter);
    psi_put_u64(h + H_RECORDS, n);
    psi_put_u64(h + H_DLO, m->dense_lo);
    psi_put_u64(h + H_DHI, m->dense_hi);
    memcpy(h + H_TABLE, m->table, strnlen(m->table, PSI_CKPT_TABLE_MAX - 1));
    psi_put_u32(h + H_CRC, psi_crc32c(h, H_CRC));
}

static uint64_t recs_per_block(size_t rec)
{
    uint64_t k = PSI_CKPT_BLOCK_CAP / rec;
    return k < 1 ? 1 : k > PSI_CKPT_BLOCK_RECS ? PSI_CKPT_BLOCK_RECS : k;
}

static int fill_table_file(void *arg, int fd)
{
    file_job *j = arg;
    size_t rec = 8 + (size_t)j->m->block_bytes;
    uint64_t per = recs_per_block(rec), nblocks = 0;
    uint8_t h[PSI_CKPT_HDR_SIZE], t[PSI_CKPT_TRAILER_SIZE];
    encode_header(h, j->m, j->n);
    uint32_t chain = psi_get_u32(h + H_CRC);
    uint8_t *blk = malloc(PSI_CKPT_BLK_HDR_SIZE + PSI_MIN(per, PSI_MAX(j->n, 1)) * rec);
    if (!blk || write_all(fd, h, sizeof(h)) != 0) goto fail;
    for (uint64_t i = 0; i < j->n; i += per, nblocks++) {
        uint64_t k = PSI_MIN(per, j->n - i);
        psi_put_u32(blk + B_TAG, TAG_BLOCK);
        psi_put_u32(blk + B_COUNT, (uint32_t)k);
        memcpy(blk + PSI_CKPT_BLK_HDR_SIZE, j->recs + i * rec, k * rec);
        uint32_t crc = psi_crc32c(blk + B_COUNT, 4 + k * rec);
        psi_put_u32(blk + B_CRC, crc);
        chain = chain_crc(chain, crc);
        if (write_all(fd, blk, PSI_CKPT_BLK_HDR_SIZE + k * rec) != 0) goto fail;
    }
    psi_put_u32(t + T_TAG, TAG_END);
    psi_put_u32(t + T_BLOCKS, (uint32_t)nblocks);
    psi_put_u64(t + T_RECORDS, j->n);
    psi_put_u32(t + T_CHAIN, chain);
    psi_put_u32(t + T_CRC, psi_crc32c(t, T_CRC));
    if (write_all(fd, t, sizeof(t)) != 0) goto fail;
    free(blk);
    j->out->crc = chain;
    j->out->records = j->n;
    j->out->size = PSI_CKPT_HDR_SIZE + nblocks * PSI_CKPT_BLK_HDR_SIZE + j->n * rec +
                   PSI_CKPT_TRAILER_SIZE;
    return 0;
fail:
    free(blk);
    return -1;
}

int psi_ckpt_write_file(const char *path, const psi_ckpt_meta *m, const uint8_t *recs,
                        uint64_t n, psi_ckpt_file *out)
{
    memset(out, 0, sizeof(*out));
    const char *base = strrchr(path, '/');
    snprintf(out->name, sizeof(out->name), "%s", base ? base + 1 : path);
    snprintf(out->table, sizeof(out->table), "%s", m->table);
    out->rank = m->rank;
    file_job j = {m, recs, n, out};
    errno = 0;
    return write_atomic(path, fill_table_file, &j);
}

/* ---- reading ------------------------------------------------------------------------ */

typedef struct reader {
    FILE *f;
    const char *path;
    uint64_t off, size;
    char *why;
    size_t whycap;
} reader;

/* Read exactly n bytes of `what`; a short read means a torn file. */
static int rd(reader *r, void *p, size_t n, const char *what)
{
    size_t got = fread(p, 1, n, r->f);
    if (got == n) {
        r->off += n;
        return PS_OK;
    }
    if (ferror(r->f))
        return why_set(r->why, r->whycap, PS_ERR_SYS, "%s: read error at offset %" PRIu64 ": %s",
                       r->path, r->off + got, strerror(errno));
    return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: truncated in the %s at offset %" PRIu64,
                   r->path, what, r->off + got);
}

static int decode_header(reader *r, const uint8_t *h, psi_ckpt_meta *m)
{
    if (memcmp(h + H_MAGIC, MAGIC, sizeof(MAGIC)) != 0)
        return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: not a libps checkpoint file", r->path);
    if (psi_get_u32(h + H_CRC) != psi_crc32c(h, H_CRC))
        return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: header CRC mismatch", r->path);
    if (psi_get_u32(h + H_VERSION) != PSI_CKPT_VERSION)
        return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: format version %" PRIu32
                       ", this libps reads %d", r->path, psi_get_u32(h + H_VERSION), PSI_CKPT_VERSION);
    memset(m, 0, sizeof(*m));
    memcpy(m->table, h + H_TABLE, PSI_CKPT_TABLE_MAX);
    m->dtype = psi_get_u32(h + H_DTYPE);
    m->width = psi_get_u32(h + H_WIDTH);
    m->update = psi_get_u32(h + H_UPDATE);
    m->block_bytes = psi_get_u32(h + H_BB);
    m->rank = psi_get_u32(h + H_RANK);
    m->iter = psi_get_u64(h + H_ITER);
    m->records = psi_get_u64(h + H_RECORDS);
    m->dense_lo = psi_get_u64(h + H_DLO);
    m->dense_hi = psi_get_u64(h + H_DHI);
    if (m->table[PSI_CKPT_TABLE_MAX - 1] || !m->table[0] || m->block_bytes == 0 ||
        m->block_bytes > PSI_CKPT_MAX_BLOCK_BYTES)
        return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: bad table name or block size in "
                       "the header", r->path);
    return PS_OK;
}

static int check_expect(reader *r, const psi_ckpt_meta *m, const psi_ckpt_meta *e)
{
    if (strcmp(m->table, e->table) != 0)
        return why_set(r->why, r->whycap, PS_ERR_INVAL, "%s: holds table '%s', not '%s'", r->path,
                       m->table, e->table);
    if (m->dtype != e->dtype || m->width != e->width || m->update != e->update ||
        m->block_bytes != e->block_bytes)
        return why_set(r->why, r->whycap, PS_ERR_INVAL, "%s: table '%s' was saved with dtype %" PRIu32
                       " width %" PRIu32 " update %" PRIu32 " (%" PRIu32 " bytes per key); it is "
                       "now open with dtype %" PRIu32 " width %" PRIu32 " update %" PRIu32
                       " (%" PRIu32 ")", r->path, m->table, m->dtype, m->width, m->update,
                       m->block_bytes, e->dtype, e->width, e->update, e->block_bytes);
    return PS_OK;
}

typedef struct scan {
    const psi_ckpt_meta *m;
    psi_ckpt_rec_fn fn;
    void *arg;
    uint8_t *buf;
    size_t bufcap;
    uint64_t records, blocks;
    uint32_t chain;
} scan;

/* One block after its tag: CRC, count, records (passed to fn). */
static int read_block(reader *r, scan *s)
{
    uint8_t h[8];
    uint64_t at = r->off - 4;
    size_t rec = 8 + (size_t)s->m->block_bytes;
    int rv = rd(r, h, sizeof(h), "block header");
    if (rv != 0) return rv;
    uint64_t n = psi_get_u32(h + B_COUNT - 4);
    if (n == 0 || n > PSI_CKPT_BLOCK_RECS || n * rec > r->size - r->off ||
        s->records + n > s->m->records)
        return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: block at offset %" PRIu64 " claims %"
                       PRIu64 " records, more than the file or header hold", r->path, at, n);
    if (4 + n * rec > s->bufcap) {
        uint8_t *b = realloc(s->buf, 4 + n * rec);
        if (!b) return why_set(r->why, r->whycap, PS_ERR_NOMEM, "%s: no memory", r->path);
        s->buf = b;
        s->bufcap = 4 + n * rec;
    }
    memcpy(s->buf, h + 4, 4);
    if ((rv = rd(r, s->buf + 4, n * rec, "block records")) != 0) return rv;
    uint32_t crc = psi_crc32c(s->buf, 4 + n * rec);
    if (crc != psi_get_u32(h + B_CRC - 4))
        return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: block %" PRIu64 " at offset %" PRIu64
                       ": CRC mismatch (corrupt data)", r->path, s->blocks, at);
    s->chain = chain_crc(s->chain, crc);
    s->records += n;
    s->blocks++;
    for (uint64_t i = 0; s->fn && i < n; i++) {
        const uint8_t *p = s->buf + 4 + i * rec;
        if ((rv = s->fn(s->arg, psi_get_u64(p), p + 8)) != 0) return rv;
    }
    return PS_OK;
}

static int read_trailer(reader *r, scan *s)
{
    uint8_t t[PSI_CKPT_TRAILER_SIZE];
    psi_put_u32(t, TAG_END);
    int rv = rd(r, t + 4, sizeof(t) - 4, "trailer");
    if (rv != 0) return rv;
    if (psi_get_u32(t + T_CRC) != psi_crc32c(t, T_CRC) || psi_get_u32(t + T_BLOCKS) != s->blocks ||
        psi_get_u64(t + T_RECORDS) != s->records || s->records != s->m->records ||
        psi_get_u32(t + T_CHAIN) != s->chain)
        return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: the trailer does not match the "
                       "blocks (%" PRIu64 " records of %" PRIu64 " found: truncated or corrupt)",
                       r->path, s->records, s->m->records);
    if (r->off != r->size)
        return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: %" PRIu64 " bytes after the trailer",
                       r->path, r->size - r->off);
    return PS_OK;
}

static int read_body(reader *r, scan *s)
{
    for (;;) {
        uint8_t tag[4];
        int rv = rd(r, tag, 4, "block tag");
        if (rv != 0) return rv;
        if (psi_get_u32(tag) == TAG_END) return read_trailer(r, s);
        if (psi_get_u32(tag) != TAG_BLOCK)
            return why_set(r->why, r->whycap, PS_ERR_PROTO, "%s: no block at offset %" PRIu64
                           " (corrupt data)", r->path, r->off - 4);
        if ((rv = read_block(r, s)) != 0) return rv;
    }
}

int psi_ckpt_read_file(const char *path, const psi_ckpt_meta *expect, psi_ckpt_rec_fn fn,
                       void *arg, psi_ckpt_meta *meta, psi_ckpt_file *out, char *why,
                       size_t whycap)
{
    reader r = {.path = path, .why = why, .whycap = whycap};
    struct stat st;
    psi_ckpt_meta m;
    uint8_t h[PSI_CKPT_HDR_SIZE];
    if (!(r.f = fopen(path, "rb")) || fstat(fileno(r.f), &st) != 0) {
        int e = errno;
        if (r.f) fclose(r.f);
        return why_set(why, whycap, e == ENOENT ? PS_ERR_NOTFOUND : PS_ERR_SYS, "%s: %s", path,
                       strerror(e));
    }
    r.size = (uint64_t)st.st_size;
    scan s = {.m = &m, .fn = fn, .arg = arg};
    int rv = rd(&r, h, sizeof(h), "header");
    if (rv == 0) rv = decode_header(&r, h, &m);
    if (rv == 0 && expect) rv = check_expect(&r, &m, expect);
    s.chain = psi_get_u32(h + H_CRC);
    if (rv == 0) rv = read_body(&r, &s);
    fclose(r.f);
    free(s.buf);
    if (rv != 0) return rv;
    if (meta) *meta = m;
    if (out) {
        out->size = r.size;
        out->records = s.records;
        out->crc = s.chain;
    }
    return PS_OK;
}

/* ---- MANIFEST ------------------------------------------------------------------------- */

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n > 0) t->len += PSI_MIN((size_t)n, t->cap - t->len - 1);
}

static int fill_text(void *arg, int fd)
{
    const text *t = arg;
    return write_all(fd, (const uint8_t *)t->p, t->len);
}

int psi_ckpt_manifest_write(const char *ckdir, const psi_ckpt_manifest *m)
{
    char path[4096];
    text t = {.cap = 128 + m->nfiles * (PSI_CKPT_NAME_MAX + 64)};
    if (snprintf(path, sizeof(path), "%s/MANIFEST", ckdir) >= (int)sizeof(path)) return PS_ERR_TOOBIG;
    if (!(t.p = malloc(t.cap))) return PS_ERR_NOMEM;
    text_add(&t, "libps checkpoint %d\niteration %" PRIu64 "\nservers %" PRIu32 "\n",
             PSI_CKPT_VERSION, m->iter, m->nservers);
    for (size_t i = 0; i < m->nfiles; i++) {
        const psi_ckpt_file *f = &m->files[i];
        text_add(&t, "file %s %" PRIu64 " %" PRIu64 " %08" PRIx32 "\n", f->name, f->size,
                 f->records, f->crc);
    }
    text_add(&t, "crc %08" PRIx32 "\n", psi_crc32c(t.p, t.len));
    errno = 0;
    int rv = write_atomic(path, fill_text, &t);
    free(t.p);
    return rv == 0 ? psi_ckpt_fsync_dir(ckdir) : rv;
}

void psi_ckpt_manifest_free(psi_ckpt_manifest *m)
{
    free(m->files);
    memset(m, 0, sizeof(*m));
}

/* The whole of file `path`, NUL-terminated, into *buf (malloc'ed). */
static int slurp(const char *path, char **buf, size_t *len, char *why, size_t whycap)
{
    struct stat st;
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return why_set(why, whycap, errno == ENOENT ? PS_ERR_NOTFOUND : PS_ERR_SYS, "%s: %s", path,
                       errno == ENOENT ? "missing (incomplete checkpoint)" : strerror(errno));
    int rv = PS_OK;
    if (fstat(fileno(f), &st) != 0 || (uint64_t)st.st_size > MANIFEST_MAX)
        rv = why_set(why, whycap, PS_ERR_PROTO, "%s: unreadable or over %u bytes", path,
                     MANIFEST_MAX);
    else if (!(*buf = malloc((size_t)st.st_size + 1)))
        rv = why_set(why, whycap, PS_ERR_NOMEM, "%s: no memory", path);
    else if ((*len = fread(*buf, 1, (size_t)st.st_size, f)) != (size_t)st.st_size)
        rv = why_set(why, whycap, PS_ERR_SYS, "%s: short read", path);
    fclose(f);
    if (rv != 0) {
        free(*buf);
        *buf = NULL;
        return rv;
    }
    (*buf)[*len] = '\0';
    return PS_OK;
}

/* Parse one "file ..." line into f; 0 or -1. */
static int parse_file_line(const char *line, psi_ckpt_file *f)
{
    int used = -1;
    memset(f, 0, sizeof(*f));
    if (sscanf(line, "file %199s %" SCNu64 " %" SCNu64 " %8" SCNx32 "%n", f->name, &f->size,
               &f->records, &f->crc, &used) != 4 || line[used] != '\0')
        return -1;
    return psi_ckpt_parse_name(f->name, f->table, sizeof(f->table), &f->rank) == 0 ? 0 : -1;
}

static int cmp_file(const void *a, const void *b)
{
    const psi_ckpt_file *x = a, *y = b;
    int c = strcmp(x->table, y->table);
    return c ? c : x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* Every table has exactly one file per server of the checkpoint. */
static int check_tables(psi_ckpt_manifest *m, const char *path, char *why, size_t whycap);

int psi_ckpt_manifest_validate(psi_ckpt_manifest *m, char *why, size_t whycap)
{
    return check_tables(m, "MANIFEST", why, whycap);
}

static int check_tables(psi_ckpt_manifest *m, const char *path, char *why, size_t whycap)
{
    qsort(m->files, m->nfiles, sizeof(m->files[0]), cmp_file);
    for (size_t i = 0, j; i < m->nfiles; i = j) {
        for (j = i + 1; j < m->nfiles && !strcmp(m->files[j].table, m->files[i].table); j++)
            if (m->files[j].rank == m->files[j - 1].rank)
                return why_set(why, whycap, PS_ERR_PROTO, "%s: file %s is listed twice", path,
                               m->files[j].name);
        if (j - i != m->nservers)
            return why_set(why, whycap, PS_ERR_PROTO, "%s: table '%s' has %zu files for %" PRIu32
                           " servers", path, m->files[i].table, j - i, m->nservers);
    }
    return PS_OK;
}

/* Parse the lines before the crc line (NUL-terminated by the caller). */
static int parse_manifest(char *s, psi_ckpt_manifest *m, const char *path, char *why, size_t whycap)
{
    size_t nl = 0;
    int used = -1, ver = 0;
    for (const char *p = s; *p; p++) nl += *p == '\n';
    char *save = NULL, *line = strtok_r(s, "\n", &save);
    if (!line || sscanf(line, "libps checkpoint %d%n", &ver, &used) != 1 || line[used] ||
        ver != PSI_CKPT_VERSION)
        return why_set(why, whycap, PS_ERR_PROTO, "%s: not a version %d manifest", path,
                       PSI_CKPT_VERSION);
    line = strtok_r(NULL, "\n", &save);
    if (!line || sscanf(line, "iteration %" SCNu64 "%n", &m->iter, &used) != 1 || line[used])
        return why_set(why, whycap, PS_ERR_PROTO, "%s: bad iteration line", path);
    line = strtok_r(NULL, "\n", &save);
    if (!line || sscanf(line, "servers %" SCNu32 "%n", &m->nservers, &used) != 1 || line[used] ||
        m->nservers == 0 || m->nservers > 65536)
        return why_set(why, whycap, PS_ERR_PROTO, "%s: bad servers line", path);
    if (!(m->files = calloc(PSI_MAX(nl, 1), sizeof(m->files[0]))))
        return why_set(why, whycap, PS_ERR_NOMEM, "%s: no memory", path);
    while ((line = strtok_r(NULL, "\n", &save)))
        if (parse_file_line(line, &m->files[m->nfiles++]) != 0)
            return why_set(why, whycap, PS_ERR_PROTO, "%s: bad line '%.80s'", path, line);
    return check_tables(m, path, why, whycap);
}

int psi_ckpt_manifest_read(const char *ckdir, psi_ckpt_manifest *m, char *why, size_t whycap)
{
    char path[4096], *buf;
    size_t len;
    memset(m, 0, sizeof(*m));
    if (snprintf(path, sizeof(path), "%s/MANIFEST", ckdir) >= (int)sizeof(path)) return PS_ERR_TOOBIG;
    int rv = slurp(path, &buf, &len, why, whycap);
    if (rv != 0) return rv;
    /* the last line is "crc XXXXXXXX\n" over every byte before it */
    const size_t crc_line = 13;
    uint32_t crc;
    int used = -1;
    if (len < crc_line || strlen(buf) != len || buf[len - 1] != '\n' ||
        (len > crc_line && buf[len - crc_line - 1] != '\n') ||
        sscanf(buf + len - crc_line, "crc %8" SCNx32 "%n", &crc, &used) != 1 || used != 12) {
        rv = why_set(why, whycap, PS_ERR_PROTO, "%s: no crc line at the end (torn)", path);
    } else if (crc != psi_crc32c(buf, len - crc_line)) {
        rv = why_set(why, whycap, PS_ERR_PROTO, "%s: CRC mismatch (corrupt)", path);
    } else {
        buf[len - crc_line] = '\0';
        rv = parse_manifest(buf, m, path, why, whycap);
    }
    free(buf);
    if (rv != 0) psi_ckpt_manifest_free(m);
    return rv;
}

/* ---- whole checkpoints ------------------------------------------------------------------ */

/* One listed file: present, of the listed size, every block intact, the
 * listed checksum, and a header that agrees with its name and MANIFEST. */
static int check_file(const char *ckdir, const psi_ckpt_manifest *m, const psi_ckpt_file *f,
                      char *why, size_t whycap)
{
    char path[4096];
    struct stat st;
    psi_ckpt_meta meta;
    psi_ckpt_file got;
    snprintf(path, sizeof(path), "%s/%s", ckdir, f->name);
    if (stat(path, &st) != 0)
        return why_set(why, whycap, PS_ERR_PROTO, "%s: listed in MANIFEST but unreadable (%s)", path,
                       strerror(errno));
    if ((uint64_t)st.st_size != f->size)
        return why_set(why, whycap, PS_ERR_PROTO, "%s: %" PRIu64 " bytes, MANIFEST says %" PRIu64
                       " (torn)", path, (uint64_t)st.st_size, f->size);
    int rv = psi_ckpt_read_file(path, NULL, NULL, NULL, &meta, &got, why, whycap);
    if (rv != 0) return rv == PS_ERR_NOTFOUND ? PS_ERR_PROTO : rv;
    if (got.crc != f->crc || got.records != f->records || meta.iter != m->iter ||
        meta.rank != f->rank || strcmp(meta.table, f->table) != 0)
        return why_set(why, whycap, PS_ERR_PROTO, "%s: content differs from what MANIFEST lists "
                       "(checksum, records, iteration, table or rank)", path);
    return PS_OK;
}

int psi_ckpt_check(const char *ckdir, psi_ckpt_manifest *m, char *why, size_t whycap)
{
    int rv = psi_ckpt_manifest_read(ckdir, m, why, whycap);
    for (size_t i = 0; rv == 0 && i < m->nfiles; i++)
        rv = check_file(ckdir, m, &m->files[i], why, whycap);
    if (rv != 0) psi_ckpt_manifest_free(m);
    return rv;
}

static int cmp_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Iterations of the "ckpt-<20 digits>" entries of dir, newest first. */
static int list_iters(const char *dir, uint64_t **out, size_t *n)
{
    DIR *d = opendir(dir);
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    if (!d) {
        if (errno == ENOENT) return PS_ERR_NOTFOUND;
        PSI_ERROR("checkpoint: cannot read folder %s: %s", dir, strerror(errno));
        return PS_ERR_SYS;
    }
    for (struct dirent *e; (e = readdir(d));) {
        const char *s = e->d_name;
        if (strlen(s) != 25 || strncmp(s, "ckpt-", 5) != 0 || strspn(s + 5, "0123456789") != 20)
            continue;
        if (*n == cap) {
            uint64_t *p = realloc(*out, (cap = cap ? 2 * cap : 16) * sizeof(uint64_t));
            if (!p) break;
            *out = p;
        }
        (*out)[(*n)++] = strtoull(s + 5, NULL, 10);
    }
    closedir(d);
    if (*n) qsort(*out, *n, sizeof(uint64_t), cmp_desc);
    return PS_OK;
}

/* Warn that a checkpoint was skipped, once per process for the same folder
 * and reason (a server restores several tables from one folder). */
static void warn_skipped(const char *ckdir, const char *why)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static uint32_t seen[32];
    static size_t next;
    char key[PATH_MAX + PSI_CKPT_WHY];
    snprintf(key, sizeof(key), "%s\n%s", ckdir, why);
    uint32_t h = psi_crc32c(key, strlen(key)) | 1;
    int fresh = 1;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < PSI_ARRAY_LEN(seen); i++) fresh &= seen[i] != h;
    if (fresh) seen[next++ % PSI_ARRAY_LEN(seen)] = h;
    pthread_mutex_unlock(&lock);
    if (fresh) PSI_WARN("checkpoint %s skipped: %s", ckdir, why);
}

int psi_ckpt_find(const char *dir, char *ckdir, size_t cap, psi_ckpt_manifest *m)
{
    uint64_t *iters;
    size_t n;
    char why[PSI_CKPT_WHY];
    int rv = list_iters(dir, &iters, &n);
    if (rv != 0) return rv;
    rv = PS_ERR_NOTFOUND;
    for (size_t i = 0; i < n && rv != 0; i++) {
        if (psi_ckpt_dir_path(ckdir, cap, dir, iters[i]) != 0) continue;
        int crv = psi_ckpt_check(ckdir, m, why, sizeof(why));
        if (crv == 0) rv = PS_OK;
        else warn_skipped(ckdir, why);
    }
    free(iters);
    return rv;
}
