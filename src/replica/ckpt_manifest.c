/*
 * ckpt_manifest.c -- a checkpoint's MANIFEST (replica/checkpoint.h), checking
 * a whole checkpoint folder against it, and finding the newest complete and
 * valid checkpoint under a folder.
 *
 * Design: MANIFEST is small text, written last and atomically (temp, fsync,
 * rename, fsync the folder) and closed by a CRC line over everything before
 * it, so a torn or edited one is refused.  A checkpoint is valid only when
 * every file it lists exists with the listed size and checksum and every
 * block of it passes its CRC: a checkpoint is used whole or not at all, so
 * all tables of a restarted job resume from the same iteration.
 *
 * Pure file I/O, like ckpt_file.c.  Must never: accept a MANIFEST whose CRC
 * line is missing, or call a checkpoint valid without reading all of it.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "replica/checkpoint.h"
#include "util/log.h"
#include "util/util.h"

#define MANIFEST_MAX (64u << 20)

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
    return psi_ckpt_write_all(fd, (const uint8_t *)t->p, t->len);
}

int psi_ckpt_manifest_write(const char *ckdir, const psi_ckpt_manifest *m)
{
    char path[4096];
    text t = {.cap = 128 + m->nfiles * (PSI_CKPT_NAME_MAX + 64)};
    if (snprintf(path, sizeof(path), "%s/MANIFEST", ckdir) >= (int)sizeof(path))
        return PS_ERR_TOOBIG;
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
    int rv = psi_ckpt_write_atomic(path, fill_text, &t);
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
        return psi_ckpt_why(why, whycap, errno == ENOENT ? PS_ERR_NOTFOUND : PS_ERR_SYS, "%s: %s", path,
                       errno == ENOENT ? "missing (incomplete checkpoint)" : strerror(errno));
    int rv = PS_OK;
    if (fstat(fileno(f), &st) != 0 || (uint64_t)st.st_size > MANIFEST_MAX)
        rv = psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: unreadable or over %u bytes", path,
                     MANIFEST_MAX);
    else if (!(*buf = malloc((size_t)st.st_size + 1)))
        rv = psi_ckpt_why(why, whycap, PS_ERR_NOMEM, "%s: no memory", path);
    else if ((*len = fread(*buf, 1, (size_t)st.st_size, f)) != (size_t)st.st_size)
        rv = psi_ckpt_why(why, whycap, PS_ERR_SYS, "%s: short read", path);
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
                return psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: file %s is listed twice", path,
                               m->files[j].name);
        if (j - i != m->nservers)
            return psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: table '%s' has %zu files for %" PRIu32
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
        return psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: not a version %d manifest", path,
                       PSI_CKPT_VERSION);
    line = strtok_r(NULL, "\n", &save);
    if (!line || sscanf(line, "iteration %" SCNu64 "%n", &m->iter, &used) != 1 || line[used])
        return psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: bad iteration line", path);
    line = strtok_r(NULL, "\n", &save);
    if (!line || sscanf(line, "servers %" SCNu32 "%n", &m->nservers, &used) != 1 || line[used] ||
        m->nservers == 0 || m->nservers > 65536)
        return psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: bad servers line", path);
    if (!(m->files = calloc(PSI_MAX(nl, 1), sizeof(m->files[0]))))
        return psi_ckpt_why(why, whycap, PS_ERR_NOMEM, "%s: no memory", path);
    while ((line = strtok_r(NULL, "\n", &save)))
        if (parse_file_line(line, &m->files[m->nfiles++]) != 0)
            return psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: bad line '%.80s'", path, line);
    return check_tables(m, path, why, whycap);
}

int psi_ckpt_manifest_read(const char *ckdir, psi_ckpt_manifest *m, char *why, size_t whycap)
{
    char path[4096], *buf;
    size_t len;
    memset(m, 0, sizeof(*m));
    if (snprintf(path, sizeof(path), "%s/MANIFEST", ckdir) >= (int)sizeof(path))
        return PS_ERR_TOOBIG;
    int rv = slurp(path, &buf, &len, why, whycap);
    if (rv != 0) return rv;
    /* the last line is "crc XXXXXXXX\n" over every byte before it */
    const size_t crc_line = 13;
    uint32_t crc;
    int used = -1;
    if (len < crc_line || strlen(buf) != len || buf[len - 1] != '\n' ||
        (len > crc_line && buf[len - crc_line - 1] != '\n') ||
        sscanf(buf + len - crc_line, "crc %8" SCNx32 "%n", &crc, &used) != 1 || used != 12) {
        rv = psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: no crc line at the end (torn)", path);
    } else if (crc != psi_crc32c(buf, len - crc_line)) {
        rv = psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: CRC mismatch (corrupt)", path);
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
        return psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: listed in MANIFEST but unreadable (%s)",
                       path, strerror(errno));
    if ((uint64_t)st.st_size != f->size)
        return psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: %" PRIu64 " bytes, MANIFEST says %" PRIu64
                       " (torn)", path, (uint64_t)st.st_size, f->size);
    int rv = psi_ckpt_read_file(path, NULL, NULL, NULL, &meta, &got, why, whycap);
    if (rv != 0) return rv == PS_ERR_NOTFOUND ? PS_ERR_PROTO : rv;
    if (got.crc != f->crc || got.records != f->records || meta.iter != m->iter ||
        meta.rank != f->rank || strcmp(meta.table, f->table) != 0)
        return psi_ckpt_why(why, whycap, PS_ERR_PROTO, "%s: content differs from what MANIFEST lists "
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
