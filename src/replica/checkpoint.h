/*
 * checkpoint.h -- internals of checkpoints: the file format (ckpt_file.c,
 * ckpt_manifest.c) and the cluster protocol that writes and restores tables
 * (checkpoint.c).  The
 * public API is ps/checkpoint.h.
 *
 * Table file `<table>.<rank>` (integers little-endian, offsets static_assert'ed
 * in ckpt_file.c):
 *   header, PSI_CKPT_HDR_SIZE bytes: magic "PSCKPT\r\n", version, dtype,
 *     width, update rule, block bytes, writer's rank, iteration, records,
 *     dense_lo, dense_hi, table name (64 bytes, NUL padded), CRC32C of the
 *     bytes before it, 4 zero bytes;
 *   blocks: tag "BLK1", CRC32C of the 4 + n * (8 + block bytes) bytes that
 *     follow it, record count n (1..PSI_CKPT_BLOCK_RECS), then n records of
 *     (u64 key, the raw server block: values then update state, in the
 *     host's float format, which libps assumes little-endian IEEE 754);
 *   trailer, PSI_CKPT_TRAILER_SIZE bytes: tag "END1", block count, records,
 *     the file's chain checksum, CRC32C of the trailer bytes before it.
 * The chain checksum is h = header CRC, then h = CRC32C(le32 h, le32 block
 * CRC) for every block in order: it names the whole content of the file and
 * is what MANIFEST records for it.  Keys appear at most once per file.
 *
 * MANIFEST (text, written last; the checkpoint is complete iff it is valid):
 *   "libps checkpoint 1\n" "iteration I\n" "servers N\n"
 *   one "file NAME SIZE RECORDS CHECKSUM(8 hex)\n" per table file, then
 *   "crc C\n": CRC32C (8 hex) of every byte before that line.
 * Table names are encoded into file names: [A-Za-z0-9_-] stay, every other
 * byte becomes %XX, so the last '.' of a file name separates the rank.
 *
 * Errors: functions return 0 or a ps_err and, where they take `why`, write
 * the reason there (file name included) instead of logging it.
 */
#ifndef PSI_REPLICA_CHECKPOINT_H
#define PSI_REPLICA_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "ps/ps.h"

#define PSI_CKPT_VERSION 1
#define PSI_CKPT_HDR_SIZE 136
#define PSI_CKPT_BLK_HDR_SIZE 12
#define PSI_CKPT_TRAILER_SIZE 24
#define PSI_CKPT_BLOCK_RECS 65536          /* records per block at most */
#define PSI_CKPT_BLOCK_CAP (8u << 20)      /* bytes of records per block, unless one is bigger */
#define PSI_CKPT_MAX_BLOCK_BYTES (1u << 30) /* sanity cap on a header's block bytes */
#define PSI_CKPT_NAME_MAX 200              /* a file name inside a checkpoint folder */
#define PSI_CKPT_TABLE_MAX 64
#define PSI_CKPT_WHY 512                   /* size of a `why` buffer */

/* What a table file's header says. */
typedef struct psi_ckpt_meta {
    char table[PSI_CKPT_TABLE_MAX];
    uint32_t dtype, width, update, block_bytes, rank;
    uint64_t iter, records;
    uint64_t dense_lo, dense_hi;
} psi_ckpt_meta;

/* One table file as MANIFEST lists it. */
typedef struct psi_ckpt_file {
    char name[PSI_CKPT_NAME_MAX];
    char table[PSI_CKPT_TABLE_MAX]; /* decoded from name */
    uint32_t rank;                  /* decoded from name */
    uint64_t size, records;
    uint32_t crc;                   /* the chain checksum */
} psi_ckpt_file;

typedef struct psi_ckpt_manifest {
    uint64_t iter;
    uint32_t nservers;
    size_t nfiles;
    psi_ckpt_file *files; /* owned; psi_ckpt_manifest_free */
} psi_ckpt_manifest;

/* ---- names and table files (ckpt_file.c) ---------------------------------------------------------- */

/* "DIR/ckpt-<iter, 20 digits>" into buf; PS_ERR_TOOBIG if it does not fit. */
int psi_ckpt_dir_path(char *buf, size_t cap, const char *dir, uint64_t iter);
/* "<encoded table>.<rank>"; PS_ERR_TOOBIG if it does not fit. */
int psi_ckpt_file_name(char *buf, size_t cap, const char *table, uint32_t rank);
/* Split a file name into table and rank; PS_ERR_PROTO if it is not one. */
int psi_ckpt_parse_name(const char *name, char *table, size_t cap, uint32_t *rank);

/* ---- table files ------------------------------------------------------------------- */

/*
 * Write `n` records (each u64 key little-endian then m->block_bytes bytes, back
 * to back in recs) as the table file `path`: to "path.tmp", fsync, rename.
 * The caller fsyncs the folder.  Fills out->size, records, crc (name and table
 * too).  0, or PS_ERR_SYS / PS_ERR_NOMEM (logged with the path).
 */
int psi_ckpt_write_file(const char *path, const psi_ckpt_meta *m, const uint8_t *recs,
                        uint64_t n, psi_ckpt_file *out);

/* Called for each record; a nonzero return stops the read and is returned. */
typedef int (*psi_ckpt_rec_fn)(void *arg, uint64_t key, const uint8_t *block);

/*
 * Read `path` and check it whole: header, every block's CRC, the trailer and
 * nothing after it.  If `expect` is not NULL, its table, dtype, width, update
 * and block bytes must match (else PS_ERR_INVAL) before any record is passed
 * to fn (may be NULL).  *meta (may be NULL) gets the header, *out (may be
 * NULL) size, records and crc.  0; PS_ERR_PROTO for a torn or corrupt file,
 * PS_ERR_SYS if it cannot be opened or read; the reason goes to why.
 */
int psi_ckpt_read_file(const char *path, const psi_ckpt_meta *expect, psi_ckpt_rec_fn fn,
                       void *arg, psi_ckpt_meta *meta, psi_ckpt_file *out, char *why,
                       size_t whycap);

/* ---- helpers shared by the checkpoint files ----------------------------------------- */

/* Format the reason into why (may be NULL) and return rv. */
int psi_ckpt_why(char *why, size_t cap, int rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* write(2) all n bytes, retrying on EINTR; 0 or -1 (errno set). */
int psi_ckpt_write_all(int fd, const uint8_t *p, size_t n);
/* Write `path` atomically: fill(arg, fd) writes the content of "path.tmp"
 * (0, or -1 with errno set), then fsync, close, rename over path.  The
 * caller fsyncs the folder.  0, or PS_ERR_SYS (logged with the path). */
int psi_ckpt_write_atomic(const char *path, int (*fill)(void *arg, int fd), void *arg);

/* ---- manifests and whole checkpoints (ckpt_manifest.c) ------------------------------------------------ */

/* Write ckdir/MANIFEST (temp, fsync, rename, fsync ckdir).  0 or PS_ERR_SYS (logged). */
int psi_ckpt_manifest_write(const char *ckdir, const psi_ckpt_manifest *m);
/* Parse and check ckdir/MANIFEST into *m (free with psi_ckpt_manifest_free).
 * PS_ERR_NOTFOUND if it is missing, PS_ERR_PROTO if invalid (reason in why). */
int psi_ckpt_manifest_read(const char *ckdir, psi_ckpt_manifest *m, char *why, size_t whycap);
void psi_ckpt_manifest_free(psi_ckpt_manifest *m);
/* Every table has exactly one file per server (nservers), none twice; sorts
 * the files by table and rank.  0 or PS_ERR_PROTO (reason in why). */
int psi_ckpt_manifest_validate(psi_ckpt_manifest *m, char *why, size_t whycap);

/* A complete and valid checkpoint: MANIFEST, then every file it lists with
 * its size, checksum and every block.  *m as from psi_ckpt_manifest_read. */
int psi_ckpt_check(const char *ckdir, psi_ckpt_manifest *m, char *why, size_t whycap);

/*
 * The newest complete and valid checkpoint under dir: its folder into ckdir
 * and its manifest into *m.  Incomplete or invalid ones are skipped with a
 * warning naming the file and the reason.  0, or PS_ERR_NOTFOUND (not logged)
 * when there is none, PS_ERR_SYS if dir cannot be read (logged).
 */
int psi_ckpt_find(const char *dir, char *ckdir, size_t cap, psi_ckpt_manifest *m);

/* fsync a folder (after creating, renaming or removing entries in it). */
int psi_ckpt_fsync_dir(const char *path);

/* ---- tables (checkpoint.c) ------------------------------------------------------------ */

struct ps_table;
/* On a server: answer the scheduler's checkpoint calls (registers the
 * remote function once) and include table `t` in every checkpoint from now
 * on.  Idempotent; ps_table_restore calls it, and so may ps_table_open.
 * A variable-length table makes ps_checkpoint fail with PS_ERR_INVAL.
 * 0, or the error of ps_register. */
int psi_ckpt_enable(struct ps_table *t);

#endif /* PSI_REPLICA_CHECKPOINT_H */
