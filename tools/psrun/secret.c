/*
 * secret.c -- the cluster secret psrun gives its nodes.
 *
 * Three sources, in this order: the user's (PS_SECRET or PS_SECRET_FILE, in
 * psrun's environment or with --env), which psrun leaves alone; a fresh
 * random one (local and ssh modes: psrun starts every node, so it can hand
 * each the same secret); or, in the per-task modes (--slurm, --mpi), one
 * derived from a per-user key file and the launcher's job id.  In those
 * modes no process sees the others before the nodes meet, so the tasks
 * cannot agree on a random value; they can compute the same value from
 * something they all have.  The job id alone is public (squeue, ps), so
 * it is keyed: secret = BLAKE2b-256(key = the user's key file, "libps psrun
 * v1" || launcher || job id), in hex.  The key file (32 random bytes in
 * hex, mode 0600, in a 0700 directory) is made on first use and must be
 * the same file on every host: a home directory on a shared file system,
 * as SLURM clusters have.  It is created atomically with link(2) (atomic
 * on NFS too), so tasks that race to make it all end up reading one file.
 * Trade-off: whoever can read the key file (the user, root) can compute
 * every job's secret; a job's secret seen in a log reveals neither the key
 * nor another job's secret.  Without a shared home, give PS_SECRET or
 * PS_SECRET_FILE instead (srun and mpiexec pass the environment on).
 *
 * Must never: print a secret, put one on a command line, or leave a key
 * file readable by others.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "psrun.h"

#define KEY_HEX 64              /* 32 bytes as hex */
#define SECRET_FILE_MAX 4096    /* as the library reads PS_SECRET_FILE */

/* The value of K from --env (last one wins), else from the environment. */
static const char *env_value(const psr_opts *o, const char *key)
{
    size_t k = strlen(key);
    for (int i = o->nenv - 1; i >= 0; i--)
        if (strncmp(o->env[i], key, k) == 0 && o->env[i][k] == '=') return o->env[i] + k + 1;
    return getenv(key);
}

int psr_has_secret(const psr_opts *o)
{
    return env_value(o, "PS_SECRET") != NULL || env_value(o, "PS_SECRET_FILE") != NULL;
}

static void to_hex(const uint8_t *raw, size_t n, char *hex)
{
    for (size_t i = 0; i < n; i++) snprintf(hex + 2 * i, 3, "%02x", raw[i]);
}

static int fresh_secret(void)
{
    uint8_t raw[32];
    char hex[2 * sizeof(raw) + 1];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        fprintf(stderr, "psrun: cannot make a cluster secret: %s\n", strerror(errno));
        return -1;
    }
    to_hex(raw, sizeof(raw), hex);
    return setenv("PS_SECRET", hex, 1);
}

/* The key file's path: --key-file, else ~/.config/libps/psrun.key (making
 * the directories, mode 0700).  0 or -1 (printed). */
static int key_path(const psr_opts *o, char *path, size_t cap)
{
    if (o->key_file) {
        snprintf(path, cap, "%s", o->key_file);
        return 0;
    }
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0') {
        fprintf(stderr, "psrun: HOME is not set: give --key-file, PS_SECRET or "
                        "PS_SECRET_FILE\n");
        return -1;
    }
    snprintf(path, cap, "%s/.config", home);
    mkdir(path, 0700);
    snprintf(path, cap, "%s/.config/libps", home);
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "psrun: cannot make %s: %s\n", path, strerror(errno));
        return -1;
    }
    snprintf(path, cap, "%s/.config/libps/psrun.key", home);
    return 0;
}

/* Write a new key to a file of its own, then link it to `path` (which
 * fails with EEXIST if another task was first: fine).  0 or -1 (printed). */
static int make_key(const char *path)
{
    char tmp[PATH_MAX + 64], hex[KEY_HEX + 2];
    uint8_t raw[KEY_HEX / 2];
    snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) return -1;
    to_hex(raw, sizeof(raw), hex);
    strcat(hex, "\n");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write(fd, hex, strlen(hex)) == (ssize_t)strlen(hex) && fsync(fd) == 0;
    int e = errno;
    if (fd >= 0) close(fd);
    if (ok && link(tmp, path) != 0 && errno != EEXIST) {
        e = errno;
        ok = 0;
    }
    unlink(tmp);
    sodium_memzero(hex, sizeof(hex));
    if (!ok) fprintf(stderr, "psrun: cannot make the key file %s: %s\n", path, strerror(e));
    return ok ? 0 : -1;
}

/* Read the key file into key[KEY_HEX], making it first if it is missing;
 * refuse one that others can read.  0 or -1 (printed). */
static int read_key(const char *path, char key[KEY_HEX])
{
    struct stat st;
    if (stat(path, &st) != 0 && (errno != ENOENT || make_key(path) != 0)) {
        if (errno != ENOENT) fprintf(stderr, "psrun: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        fprintf(stderr, "psrun: cannot read the key file %s: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    ssize_t n = (st.st_mode & 077) ? -2 : read(fd, key, KEY_HEX);
    close(fd);
    if (n == -2)
        fprintf(stderr, "psrun: the key file %s is readable by others: chmod 600 it\n", path);
    else if (n != KEY_HEX)
        fprintf(stderr, "psrun: the key file %s is not %d hex digits: remove it and run "
                        "again\n", path, KEY_HEX);
    return n == KEY_HEX ? 0 : -1;
}

/* PS_SECRET = hex(BLAKE2b-256 keyed by the key file, of the job id). */
static int derived_secret(const psr_opts *o, const char *job)
{
    char path[PATH_MAX], key[KEY_HEX], hex[65], msg[256];
    uint8_t out[32];
    if (key_path(o, path, sizeof(path)) != 0 || read_key(path, key) != 0) return -1;
    int m = snprintf(msg, sizeof(msg), "libps psrun v1|%s", job);
    crypto_generichash(out, sizeof(out), (const uint8_t *)msg, (size_t)m,
                       (const uint8_t *)key, sizeof(key));
    sodium_memzero(key, sizeof(key));
    to_hex(out, sizeof(out), hex);
    int rv = setenv("PS_SECRET", hex, 1);
    sodium_memzero(hex, sizeof(hex));
    return rv;
}

int psr_setup_secret(const psr_opts *o, const char *job)
{
    if (psr_has_secret(o)) return 0;
    if (job == NULL) return fresh_secret();
    if (sodium_init() < 0) {
        fprintf(stderr, "psrun: libsodium failed to initialize\n");
        return -1;
    }
    return derived_secret(o, job);
}

/* The contents of PS_SECRET_FILE without its trailing line breaks, as the
 * library reads it; a malloc'd string, or NULL (printed). */
static char *read_secret_file(const char *path)
{
    char *buf = calloc(1, SECRET_FILE_MAX + 2);
    FILE *f = fopen(path, "rb");
    if (buf == NULL || f == NULL) {
        fprintf(stderr, "psrun: PS_SECRET_FILE=%s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        free(buf);
        return NULL;
    }
    size_t n = fread(buf, 1, SECRET_FILE_MAX + 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    buf[n] = '\0';
    if (n == 0 || n > SECRET_FILE_MAX || strlen(buf) != n || strpbrk(buf, "\r\n")) {
        fprintf(stderr, "psrun: PS_SECRET_FILE=%s: for --hostfile the secret must be one "
                        "line of at most %d bytes with no NUL\n", path, SECRET_FILE_MAX);
        free(buf);
        return NULL;
    }
    return buf;
}

char *psr_secret_line(const psr_opts *o)
{
    const char *s = env_value(o, "PS_SECRET"), *file = env_value(o, "PS_SECRET_FILE");
    char *v = s ? strdup(s) : file ? read_secret_file(file) : NULL;
    if (v == NULL) {
        if (s || !file) fprintf(stderr, "psrun: no cluster secret to send\n");
        return NULL;
    }
    if (strpbrk(v, "\r\n") != NULL) {
        fprintf(stderr, "psrun: PS_SECRET has a line break: for --hostfile it must be "
                        "one line\n");
        free(v);
        return NULL;
    }
    size_t n = strlen(v);
    char *line = malloc(n + 2);
    if (line) {
        memcpy(line, v, n);
        memcpy(line + n, "\n", 2);
    }
    sodium_memzero(v, n);
    free(v);
    return line;
}
