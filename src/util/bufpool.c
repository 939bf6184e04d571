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
 * Design: a mutex-protected array of at most POOL_MAX buffers holding at
 * most POOL_BYTES bytes together.  psi_buf_alloc takes the smallest cached
 * buffer whose capacity is >= the request and <= twice it (so a small
 * request does not pin a huge buffer); psi_buf_free caches the buffer,
 * evicting the oldest ones while the caps would be exceeded.  Each buffer
 * carries its capacity in a 16-byte header in front of the pointer handed
 * out, so the pointer keeps malloc's 16-byte alignment.  Small requests
 * bypass the cache (plain malloc behind the same header).
 *
 * Under AddressSanitizer the cache is off, so use-after-free of a message
 * buffer is still caught.
 *
 * Never: hand out a buffer smaller than asked; hold more than POOL_BYTES
 * idle; call back into anything with the lock held.
 */
#include <pthread.h>
#include <stdlib.h>

#include "util/util.h"

#define POOL_MAX 8
#define POOL_BYTES ((size_t)96 << 20)
#define HDR 16

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

static size_t cap_of(const void *h) { return *(const size_t *)h; }

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
    if (POOL_ON && len >= PSI_BUFPOOL_MIN) {
        pthread_mutex_lock(&pool_lock);
        h = do_take(len);
        pthread_mutex_unlock(&pool_lock);
    }
    if (!h) {
        if (len > SIZE_MAX - HDR || !(h = malloc(HDR + len))) return NULL;
        *(size_t *)h = len;
    }
    return (uint8_t *)h + HDR;
}

void psi_buf_free(void *p)
{
    if (!p) return;
    void *h = (uint8_t *)p - HDR, *evict[POOL_MAX + 1];
    size_t c = cap_of(h), nevict = 0;
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
    pthread_mutex_unlock(&pool_lock);
}
