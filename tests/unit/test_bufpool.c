/*
 * test_bufpool.c -- unit tests of src/util/bufpool.c (the large-buffer
 * cache): a freed large buffer is handed out again to a request it fits,
 * not to one more than twice smaller or larger than it, small buffers are
 * never cached, every buffer is 16-byte aligned and fully writable, the
 * cache never holds more than its caps, and mid-size buffers are reused
 * within their size class and their own cap.  Under AddressSanitizer the cache
 * is off, and only the allocation contract is checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/util.h"


#define MIB ((size_t)1 << 20)

static int setup(void **state)
{
    (void)state;
    psi_buf_pool_drain();
    return 0;
}

static void test_alloc_is_aligned_and_writable(void **state)
{
    size_t sizes[] = {0, 1, 100, PSI_BUFPOOL_MIN - 1, PSI_BUFPOOL_MIN, 3 * MIB + 5};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = psi_buf_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, sizes[i]);
        psi_buf_free(p);
    }
    psi_buf_free(NULL);
}

static void test_large_buffer_is_reused(void **state)
{
    uint8_t *a = psi_buf_alloc(10 * MIB);
    assert_non_null(a);
    a[10 * MIB - 1] = 7;
    psi_buf_free(a);
    uint8_t *b = psi_buf_alloc(10 * MIB - 100); /* fits: the same buffer */
    assert_non_null(b);
    if (psi_buf_pool_enabled()) assert_ptr_equal(a, b);
    memset(b, 1, 10 * MIB - 100);
    psi_buf_free(b);
}

static void test_no_reuse_when_far_apart_in_size(void **state)
{
    uint8_t *a = psi_buf_alloc(8 * MIB);
    psi_buf_free(a);
    uint8_t *small = psi_buf_alloc(1 * MIB); /* 8 MiB is more than twice 1 MiB */
    uint8_t *big = psi_buf_alloc(9 * MIB);   /* 8 MiB is too small */
    assert_non_null(small);
    assert_non_null(big);
    assert_ptr_not_equal(small, a);
    assert_ptr_not_equal(big, a);
    memset(big, 2, 9 * MIB);
    psi_buf_free(small);
    psi_buf_free(big);
}

static void test_smallest_fitting_buffer_wins(void **state)
{
    uint8_t *a = psi_buf_alloc(4 * MIB), *b = psi_buf_alloc(3 * MIB);
    psi_buf_free(a);
    psi_buf_free(b);
    uint8_t *c = psi_buf_alloc(2 * MIB);
    if (psi_buf_pool_enabled()) assert_ptr_equal(c, b);
    uint8_t *d = psi_buf_alloc(2 * MIB + 1);
    if (psi_buf_pool_enabled()) assert_ptr_equal(d, a);
    psi_buf_free(c);
    psi_buf_free(d);
}

static void test_small_buffers_are_not_cached(void **state)
{
    /* Nothing to observe but that many small frees and allocations work
     * and that a large cached buffer is not handed out for a small one. */
    uint8_t *big = psi_buf_alloc(PSI_BUFPOOL_MIN);
    psi_buf_free(big);
    for (int i = 0; i < 1000; i++) {
        uint8_t *p = psi_buf_alloc(64);
        assert_non_null(p);
        assert_ptr_not_equal(p, big);
        psi_buf_free(p);
    }
}

static void test_caps_bound_the_cache(void **state)
{
    /* Twelve 16 MiB buffers freed: at most 96 MiB (six) stay cached, the
     * most recently freed, and are handed out again. */
    uint8_t *p[12];
    for (int i = 0; i < 12; i++) assert_non_null(p[i] = psi_buf_alloc(16 * MIB));
    for (int i = 0; i < 12; i++) psi_buf_free(p[i]);
    int reused = 0;
    uint8_t *q[12];
    for (int i = 0; i < 12; i++) {
        assert_non_null(q[i] = psi_buf_alloc(16 * MIB));
        for (int j = 0; j < 12; j++) reused += q[i] == p[j];
        q[i][16 * MIB - 1] = 1;
    }
    if (psi_buf_pool_enabled()) assert_true(reused >= 6); /* an evicted one may come back from malloc */
    for (int i = 0; i < 12; i++) psi_buf_free(q[i]);
    psi_buf_pool_drain();
}

/* Mid-size buffers (a page up to PSI_BUFPOOL_MIN) come back to a request
 * of their size class, idle ones up to their cap, never twice at once. */
static void test_mid_size_buffers_reused_within_their_cap(void **state)
{
    uint8_t *a = psi_buf_alloc(40 << 10);
    assert_non_null(a);
    memset(a, 3, 40 << 10);
    psi_buf_free(a);
    uint8_t *b = psi_buf_alloc(50 << 10); /* the 64 KiB class, as a's */
    if (psi_buf_pool_enabled()) assert_ptr_equal(a, b);
    memset(b, 4, 50 << 10);
    uint8_t *c = psi_buf_alloc(20 << 10); /* the 32 KiB class: not b */
    assert_ptr_not_equal(b, c);
    psi_buf_free(b);
    psi_buf_free(c);
    psi_buf_pool_drain();
    enum { N = 40 };
    uint8_t *p[N], *q[N];
    for (int i = 0; i < N; i++) assert_non_null(p[i] = psi_buf_alloc(20 << 10));
    for (int i = 0; i < N; i++) psi_buf_free(p[i]);
    int reused = 0;
    for (int i = 0; i < N; i++) {
        assert_non_null(q[i] = psi_buf_alloc(20 << 10));
        for (int j = 0; j < N; j++) reused += q[i] == p[j];
        memset(q[i], 5, 20 << 10);
    }
    /* 32 KiB mappings: 256 KiB idle holds 8 (an unmapped one's address may
     * come back from mmap: no upper bound) */
    if (psi_buf_pool_enabled()) assert_true(reused >= 8);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < i; j++) assert_ptr_not_equal(q[i], q[j]);
    for (int i = 0; i < N; i++) psi_buf_free(q[i]);
    psi_buf_pool_drain();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_alloc_is_aligned_and_writable, setup),
        cmocka_unit_test_setup(test_large_buffer_is_reused, setup),
        cmocka_unit_test_setup(test_no_reuse_when_far_apart_in_size, setup),
        cmocka_unit_test_setup(test_smallest_fitting_buffer_wins, setup),
        cmocka_unit_test_setup(test_small_buffers_are_not_cached, setup),
        cmocka_unit_test_setup(test_caps_bound_the_cache, setup),
        cmocka_unit_test_setup(test_mid_size_buffers_reused_within_their_cap, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
