/*
 * bufpool.c -- a small process-wide cache of large message buffers.
 *
 * Why: a push of 10 MiB allocates a 10 MiB slice buffer on the worker and a
 * 10 MiB receive block on the server, and frees each once the message is
 * done.  As soon as two such buffers are alive at once, glibc serves them
 * with mmap and unmaps them on free, so every push pays ~2,500 first-touch
 * page faults (and the kernel's page zeroing) per side.  Buffers of at least
 * PSI_BUFPOOL_MIN bytes are therefore kept on free and handed out again to
 * the next request they fit.
 *
 * Mid-size buffers (a page up to PSI_BUFPOOL_MIN: a push of a few hundred
 * or thousand keys, a forward, a pull's answer) come and go by the thousand
 * a second and in bursts (a server death makes every worker resend at
 * once).  From malloc they spread the heap of the I/O thread to its
 * largest burst, and small long-lived blocks then settle in the holes, so
 * that heap never shrinks back: a soak's server grew its resident heap by
 * 1-2 MB over ten minutes of kills and joins with 1 MB in use
 * (bench/README.md, soak.sh).
 * So each is a mapping of its own, of a power-of-two size class from 4 to
 * 256 KiB (only the pages written are resident), kept on free in its
 * class's list up to MID_KEEP idle bytes for all classes and unmapped
 * beyond: a steady stream reuses the same pages, a burst costs mappings
 * that go back to the system when it ends.
 *
 * Design: a mutex-protected array of at most POOL_MAX buffers holding at
 * most POOL_BYTES bytes together.  psi_buf_alloc takes the smallest cached
 * buffer whose capacity is >= the request and <= twice it (so a small
 * request does not pin a huge buffer); psi_buf_free caches the buffer,
 * evicting the oldest ones while the caps would be exceeded.  Each buffer
 * carries its capacity and whether it is a mid-size mapping in a 16-byte
 * header in front of the pointer handed out, so the pointer keeps malloc's
 * 16-byte alignment.  Small requests bypass the cache (plain malloc behind
 * the same header).
 *
 * Under AddressSanitizer the cache is off, and mid-size buffers come from
 * malloc, so use-after-free of a message buffer is still caught.
 *
 * Never: hand out a buffer smaller than asked; hold more than POOL_BYTES
 * (large) or MID_KEEP (mid-size) idle; call back into anything with the
 * lock held.
 */
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "util/util.h"

#define POOL_MAX 8
#define POOL_BYTES ((size_t)96 << 20)
#define HDR 16
#define MID_MIN ((size_t)4 << 10)      /* the smallest mid-size buffer, header included */
#define MID_CLASSES 7                  /* mappings of 4, 8, ... 256 KiB */
#define MID_KEEP ((size_t)256 << 10)   /* idle mid-size bytes kept, all classes */
#define KIND_HEAP 0                    /* header word 1: malloc'ed */
#define KIND_MAP 1                     /* ... a mid-size mapping of cap + HDR bytes */

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ON 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ON 0
#endif
#endif
#ifndef POOL_ON
#define POOL_ON 1
#endif

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static void *pool[POOL_MAX]; /* header addresses, oldest first */
static size_t npool, pool_bytes;

static void *mid_idle[MID_CLASSES]; /* header addresses, linked through their payload */
static size_t mid_idle_bytes;

static size_t cap_of(const void *h) { return *(const size_t *)h; }
static size_t kind_of(const void *h) { return ((const size_t *)h)[1]; }

static void *set_hdr(void *h, size_t cap, size_t kind)
{
    ((size_t *)h)[0] = cap;
    ((size_t *)h)[1] = kind;
    return (uint8_t *)h + HDR;
}

/* The class of a mid-size request, or -1 when len is not mid-size. */
static int mid_class(size_t len)
{
    if (!POOL_ON || len > PSI_BUFPOOL_MIN - HDR || len + HDR < MID_MIN) return -1;
    int c = 0;
    while ((MID_MIN << c) < len + HDR) c++;
    return c;
}

static void *mid_alloc(int c)
{
    size_t size = MID_MIN << c;
    pthread_mutex_lock(&pool_lock);
    void *h = mid_idle[c];
    if (h) {
        mid_idle[c] = *(void **)((uint8_t *)h + HDR);
        mid_idle_bytes -= size;
    }
    pthread_mutex_unlock(&pool_lock);
    if (!h && (h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
                        0)) == MAP_FAILED)
        return NULL;
    return set_hdr(h, size - HDR, KIND_MAP);
}

static void mid_free(void *h)
{
    size_t size = cap_of(h) + HDR;
    int c = 0;
    while ((MID_MIN << c) < size) c++;
    pthread_mutex_lock(&pool_lock);
    int keep = mid_idle_bytes + size <= MID_KEEP;
    if (keep) {
        *(void **)((uint8_t *)h + HDR) = mid_idle[c];
        mid_idle[c] = h;
        mid_idle_bytes += size;
    }
    pthread_mutex_unlock(&pool_lock);
    if (!keep) munmap(h, size);
}

/* Take the smallest cached buffer that fits `len` (lock held); NULL if none. */
static void *do_take(size_t len)
{
    size_t best = npool;
    for (size_t i = 0; i < npool; i++) {
        size_t c = cap_of(pool[i]);
        if (c >= len && c / 2 <= len && (best == npool || c < cap_of(pool[best]))) best = i;
    }
    if (best == npool) return NULL;
    void *h = pool[best];
    pool_bytes -= cap_of(h);
    for (size_t i = best + 1; i < npool; i++) pool[i - 1] = pool[i];
    npool--;
    return h;
}

void *psi_buf_alloc(size_t len)
{
    void *h = NULL;
    int c = mid_class(len);
    if (c >= 0) return mid_alloc(c);
    if (POOL_ON && len >= PSI_BUFPOOL_MIN) {
        pthread_mutex_lock(&pool_lock);
        h = do_take(len);
        pthread_mutex_unlock(&pool_lock);
    }
    if (!h) {
        if (len > SIZE_MAX - HDR || !(h = malloc(HDR + len))) return NULL;
        return set_hdr(h, len, KIND_HEAP);
    }
    return (uint8_t *)h + HDR;
}

void psi_buf_free(void *p)
{
    if (!p) return;
    void *h = (uint8_t *)p - HDR, *evict[POOL_MAX + 1];
    size_t c = cap_of(h), nevict = 0;
    if (kind_of(h) == KIND_MAP) {
        mid_free(h);
        return;
    }
    if (!POOL_ON || c < PSI_BUFPOOL_MIN || c > POOL_BYTES) {
        free(h);
        return;
    }
    pthread_mutex_lock(&pool_lock);
    while (npool && (npool == POOL_MAX || pool_bytes + c > POOL_BYTES)) {
        evict[nevict++] = pool[0];
        pool_bytes -= cap_of(pool[0]);
        for (size_t i = 1; i < npool; i++) pool[i - 1] = pool[i];
        npool--;
    }
    pool[npool++] = h;
    pool_bytes += c;
    pthread_mutex_unlock(&pool_lock);
    while (nevict) free(evict[--nevict]);
}

int psi_buf_pool_enabled(void) { return POOL_ON; }

void psi_buf_pool_drain(void)
{
    pthread_mutex_lock(&pool_lock);
    while (npool) free(pool[--npool]);
    pool_bytes = 0;
    for (int c = 0; c < MID_CLASSES; c++)
        while (mid_idle[c]) {
            void *h = mid_idle[c];
            mid_idle[c] = *(void **)((uint8_t *)h + HDR);
            munmap(h, MID_MIN << c);
        }
    mid_idle_bytes = 0;
    pthread_mutex_unlock(&pool_lock);
}
