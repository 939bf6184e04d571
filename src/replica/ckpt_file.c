/*
 * ckpt_file.c -- the table files of a checkpoint (replica/checkpoint.h):
 * header, CRC'ed blocks and trailer, written atomically and read back with
 * every byte checked; the names of checkpoint folders and files.
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
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

int psi_ckpt_why(char *why, size_t cap, int rv, const char *fmt, ...)
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

int psi_ckpt_write_all(int fd, const uint8_t *p, size_t n)
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

int psi_ckpt_write_atomic(const char *path, int (*fill)(void *arg, int fd), void *arg)
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
    if (!blk || psi_ckpt_write_all(fd, h, sizeof(h)) != 0) goto fail;
    for (uint64_t i = 0; i < j->n; i += per, nblocks++) {
        uint64_t k = PSI_MIN(per, j->n - i);
        psi_put_u32(blk + B_TAG, TAG_BLOCK);
        psi_put_u32(blk + B_COUNT, (uint32_t)k);
        memcpy(blk + PSI_CKPT_BLK_HDR_SIZE, j->recs + i * rec, k * rec);
        uint32_t crc = psi_crc32c(blk + B_COUNT, 4 + k * rec);
        psi_put_u32(blk + B_CRC, crc);
        chain = chain_crc(chain, crc);
        if (psi_ckpt_write_all(fd, blk, PSI_CKPT_BLK_HDR_SIZE + k * rec) != 0) goto fail;
    }
    psi_put_u32(t + T_TAG, TAG_END);
    psi_put_u32(t + T_BLOCKS, (uint32_t)nblocks);
    psi_put_u64(t + T_RECORDS, j->n);
    psi_put_u32(t + T_CHAIN, chain);
    psi_put_u32(t + T_CRC, psi_crc32c(t, T_CRC));
    if (psi_ckpt_write_all(fd, t, sizeof(t)) != 0) goto fail;
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
    return psi_ckpt_write_atomic(path, fill_table_file, &j);
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
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_SYS, "%s: read error at offset %" PRIu64 ": %s",
                       r->path, r->off + got, strerror(errno));
    return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: truncated in the %s at offset %" PRIu64,
                   r->path, what, r->off + got);
}

static int decode_header(reader *r, const uint8_t *h, psi_ckpt_meta *m)
{
    if (memcmp(h + H_MAGIC, MAGIC, sizeof(MAGIC)) != 0)
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: not a libps checkpoint file", r->path);
    if (psi_get_u32(h + H_CRC) != psi_crc32c(h, H_CRC))
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: header CRC mismatch", r->path);
    if (psi_get_u32(h + H_VERSION) != PSI_CKPT_VERSION)
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: format version %" PRIu32
                       ", this libps reads %d", r->path, psi_get_u32(h + H_VERSION),
                       PSI_CKPT_VERSION);
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
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: bad table name or block size in "
                       "the header", r->path);
    return PS_OK;
}

static int check_expect(reader *r, const psi_ckpt_meta *m, const psi_ckpt_meta *e)
{
    if (strcmp(m->table, e->table) != 0)
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_INVAL, "%s: holds table '%s', not '%s'", r->path,
                       m->table, e->table);
    if (m->dtype != e->dtype || m->width != e->width || m->update != e->update ||
        m->block_bytes != e->block_bytes)
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_INVAL, "%s: table '%s' was saved with dtype %"
                       PRIu32 " width %" PRIu32 " update %" PRIu32 " (%" PRIu32 " bytes per key); "
                       "it is now open with dtype %" PRIu32 " width %" PRIu32 " update %" PRIu32
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
    if (n == 0 || n > PSI_CKPT_BLOCK_RECS || r->off > r->size || n * rec > r->size - r->off ||
        s->records + n > s->m->records)
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: block at offset %" PRIu64 " claims %"
                       PRIu64 " records, more than the file or header hold", r->path, at, n);
    if (4 + n * rec > s->bufcap) {
        uint8_t *b = realloc(s->buf, 4 + n * rec);
        if (!b) return psi_ckpt_why(r->why, r->whycap, PS_ERR_NOMEM, "%s: no memory", r->path);
        s->buf = b;
        s->bufcap = 4 + n * rec;
    }
    memcpy(s->buf, h + 4, 4);
    if ((rv = rd(r, s->buf + 4, n * rec, "block records")) != 0) return rv;
    uint32_t crc = psi_crc32c(s->buf, 4 + n * rec);
    if (crc != psi_get_u32(h + B_CRC - 4))
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: block %" PRIu64 " at offset %" PRIu64
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
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: the trailer does not match the "
                       "blocks (%" PRIu64 " records of %" PRIu64 " found: truncated or corrupt)",
                       r->path, s->records, s->m->records);
    if (r->off != r->size)
        return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: %" PRIu64 " bytes after the trailer",
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
            return psi_ckpt_why(r->why, r->whycap, PS_ERR_PROTO, "%s: no block at offset %" PRIu64
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
        return psi_ckpt_why(why, whycap, e == ENOENT ? PS_ERR_NOTFOUND : PS_ERR_SYS, "%s: %s", path,
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
