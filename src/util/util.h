/*
 * util.h -- small shared helpers for every layer: monotonic clocks, explicit
 * little-endian loads and stores, CRC32C, a seeded RNG and checked
 * environment parsing.
 *
 * Design: header-only where the helper is a few lines (inlined in hot paths),
 * with the larger pieces in util.c and log.c.  Nothing here allocates or
 * depends on a higher layer.  Internal symbols carry the `psi_` prefix.
 */
#ifndef PSI_UTIL_H
#define PSI_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "ps/ps.h"

#define PSI_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PSI_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PSI_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Monotonic time in nanoseconds / milliseconds. */
static inline uint64_t psi_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline uint64_t psi_now_ms(void) { return psi_now_ns() / 1000000ull; }

/* Absolute CLOCK_REALTIME deadline `ms` from now, for pthread_cond_timedwait. */
struct timespec psi_deadline_in(uint64_t ms);

/* Explicit little-endian stores and loads; never cast structs onto buffers. */
static inline void psi_put_u8(uint8_t *p, uint8_t v) { p[0] = v; }
static inline void psi_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void psi_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void psi_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint8_t psi_get_u8(const uint8_t *p) { return p[0]; }
static inline uint16_t psi_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t psi_get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t psi_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* The murmur3 64-bit finalizer: every input bit flips about half the output
 * bits (hash-table slots, per-key seeded initial values). */
static inline uint64_t psi_mix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

/* First j in [lo, hi] with a[j] >= x (strict: a[j] > x), given a[lo..hi)
 * ascending: a binary search. */
static inline size_t psi_search_u64(const uint64_t *a, size_t lo, size_t hi, uint64_t x,
                                    int strict)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strict ? a[mid] <= x : a[mid] < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* 32-bit FNV-1a of a NUL-terminated name; never 0 (ids of tables and
 * remote functions, derived the same way on every node). */
static inline uint32_t psi_name_id(const char *name)
{
    uint32_t h = 2166136261u;
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    return h ? h : 1;
}

/* memset(p, 0, n) with the common small block sizes inlined, so hot loops
 * over keys make no libc call per key. */
static inline void psi_zero_small(void *p, size_t n)
{
    switch (n) {
    case 4: memset(p, 0, 4); break;
    case 8: memset(p, 0, 8); break;
    case 12: memset(p, 0, 12); break;
    case 16: memset(p, 0, 16); break;
    case 24: memset(p, 0, 24); break;
    default: memset(p, 0, n); break;
    }
}

/* CRC32C (Castagnoli), as used by iSCSI/ext4; crc of "123456789" is 0xE3069283. */
uint32_t psi_crc32c(const void *data, size_t len);

/* A small seeded RNG (splitmix64 seeding xoshiro256**); not for secrets. */
typedef struct psi_rng {
    uint64_t s[4];
} psi_rng;
void psi_rng_seed(psi_rng *r, uint64_t seed);
uint64_t psi_rng_next(psi_rng *r);
/* Uniform double in [0, 1). */
double psi_rng_double(psi_rng *r);

/*
 * Environment helpers.  psi_env_str returns the first of `names` (a NULL
 * terminated list) that is set and non-empty, or NULL.  psi_env_long parses
 * it as a base-10 integer in [lo, hi]: returns 0 and sets *out (to `def` when
 * unset), or PS_ERR_CONFIG with a logged message naming the variable.
 */
const char *psi_env_str(const char *const *names);
/* Marks the calling thread as a transport's I/O thread (set once, by the
 * thread itself): code that would block until the network answers must not
 * block there, since the answer comes through that very thread. */
void psi_thread_mark_io(void);
int psi_thread_is_io(void);
int psi_env_long(const char *const *names, long def, long lo, long hi, long *out);

/*
 * Large message buffers (bufpool.c).  psi_buf_alloc returns at least `len`
 * bytes, 16-byte aligned, or NULL; free it only with psi_buf_free (NULL is
 * fine).  Buffers of PSI_BUFPOOL_MIN bytes or more are cached on free and
 * reused by the next allocation they fit, so a stream of large pushes
 * costs no page faults; at most 8 buffers and 96 MiB stay cached (off under
 * AddressSanitizer).  Buffers of a page up to PSI_BUFPOOL_MIN are mappings
 * of their own in size classes, outside the heap, 256 KiB of them kept idle.
 * psi_buf_pool_drain frees the cache.  Thread-safe.
 */
#define PSI_BUFPOOL_MIN ((size_t)256 << 10)
void *psi_buf_alloc(size_t len);
void psi_buf_free(void *p);
void psi_buf_pool_drain(void);
/* 1 if freed buffers are cached (0 under AddressSanitizer). */
int psi_buf_pool_enabled(void);

/* Parse "host:port" into parts; host gets at most hostcap-1 chars. */
int psi_split_hostport(const char *s, char *host, size_t hostcap, int *port);

#endif /* PSI_UTIL_H */
