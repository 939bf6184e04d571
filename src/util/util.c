/*
 * util.c -- the out-of-line helpers of util.h: CRC32C, the RNG, deadlines,
 * environment parsing and the error strings of ps_strerror().
 *
 * Design: CRC32C is the bytewise table method (the header it protects is
 * ~100 bytes, so a table of 256 words is plenty); the table is built once
 * under pthread_once.  Environment parsing never trusts its input: numbers
 * are range checked and errors name the variable.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t psi_crc32c(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;

    pthread_once(&crc_once, crc_init);
    for (size_t i = 0; i < len; i++)
        c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void psi_rng_seed(psi_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t psi_rng_next(psi_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double psi_rng_double(psi_rng *r) { return (double)(psi_rng_next(r) >> 11) * 0x1.0p-53; }

struct timespec psi_deadline_in(uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

const char *psi_env_str(const char *const *names)
{
    for (; *names; names++) {
        const char *v = getenv(*names);
        if (v && *v) return v;
    }
    return NULL;
}

int psi_env_long(const char *const *names, long def, long lo, long hi, long *out)
{
    const char *v = NULL, *name = names[0];
    for (const char *const *n = names; *n; n++) {
        if ((v = getenv(*n)) && *v) {
            name = *n;
            break;
        }
        v = NULL;
    }
    if (!v) {
        *out = def;
        return PS_OK;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        psi_log(PSI_LOG_ERROR, "%s=\"%s\": expected an integer in [%ld, %ld]",
                name, v, lo, hi);
        return PS_ERR_CONFIG;
    }
    *out = x;
    return PS_OK;
}

int psi_split_hostport(const char *s, char *host, size_t hostcap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= hostcap) return PS_ERR_INVAL;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || p < 0 || p > 65535) return PS_ERR_INVAL;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    *port = (int)p;
    return PS_OK;
}

static const char *const err_text[] = {
    [0] = "success",
    [-PS_ERR_NOMEM] = "out of memory",
    [-PS_ERR_INVAL] = "invalid argument",
    [-PS_ERR_PROTO] = "malformed or unexpected message",
    [-PS_ERR_TOOBIG] = "over the size limit",
    [-PS_ERR_TIMEOUT] = "timed out",
    [-PS_ERR_CLOSED] = "closed or shutting down",
    [-PS_ERR_PEER] = "peer failed or unreachable",
    [-PS_ERR_TRANSPORT] = "transport error",
    [-PS_ERR_SYS] = "system call failed",
    [-PS_ERR_STATE] = "not valid in the current state",
    [-PS_ERR_CONFIG] = "bad or missing configuration",
    [-PS_ERR_NOTFOUND] = "not found",
    [-PS_ERR_AUTH] = "authentication failed (wrong or missing cluster secret)",
    [-PS_ERR_EVICTED] = "this node was declared dead by the scheduler, or cut off from it",
};

static __thread int io_thread_mark;
void psi_thread_mark_io(void) { io_thread_mark = 1; }
int psi_thread_is_io(void) { return io_thread_mark; }

const char *ps_strerror(int err)
{
    if (err > 0 || (size_t)-err >= PSI_ARRAY_LEN(err_text) || !err_text[-err])
        return "unknown error";
    return err_text[-err];
}
