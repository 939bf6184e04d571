/*
 * test_codec.c -- unit tests of src/kv/codec.c: key lists round trip exactly
 * (adversarial and random, with the sizes and compression ratios printed),
 * generic zstd round trips and rejects corrupt, truncated, trailing and
 * over-cap input; fp16 is exact on every representable value, within its
 * stated bound on random values, matches the compiler's _Float16 rounding,
 * saturates and keeps inf/NaN, and is unbiased when stochastic; int8 stays
 * within its bound, is unbiased when stochastic, handles zeros and tiny and
 * huge scales and rejects malformed input.  The last test prints MB/s of
 * every encoder and decoder.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>

#include <cmocka.h>

#include "kv/codec.h"
#include "ps/ps.h"
#include "util/util.h"

/* ---- helpers ---------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Encode, decode, compare; returns the encoded size. */
static size_t keys_roundtrip(const uint64_t *k, size_t n)
{
    uint8_t *enc;
    uint64_t *dec;
    size_t len;

    assert_int_equal(psi_codec_keys_encode(k, n, &enc, &len), 0);
    assert_int_equal(psi_codec_keys_decode(enc, len, n, &dec), 0);
    if (n) assert_memory_equal(dec, k, n * sizeof(*k));
    free(dec);
    /* A wrong expected count is refused. */
    assert_int_equal(psi_codec_keys_decode(enc, len, n + 1, &dec), PS_ERR_PROTO);
    assert_null(dec);
    if (n) assert_int_equal(psi_codec_keys_decode(enc, len, n - 1, &dec), PS_ERR_PROTO);
    free(enc);
    return len;
}

static uint64_t *random_sorted(psi_rng *r, size_t n, uint64_t mask)
{
    uint64_t *k = malloc((n ? n : 1) * sizeof(*k));
    assert_non_null(k);
    for (size_t i = 0; i < n; i++) k[i] = psi_rng_next(r) & mask;
    qsort(k, n, sizeof(*k), cmp_u64);
    return k;
}

static float bits_f(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof(f));
    return f;
}

/* Uniform-ish float with a random exponent in [lo, hi] and a random sign. */
static float rand_float(psi_rng *r, int lo, int hi)
{
    uint64_t x = psi_rng_next(r);
    int e = lo + (int)(x % (uint64_t)(hi - lo + 1));
    float m = 1.0f + (float)((x >> 20) & 0x7fffff) * 0x1p-23f;
    float f = ldexpf(m, e);
    return (x >> 63) ? -f : f;
}

/* ---- keys ------------------------------------------------------------------------ */

static void test_keys_adversarial(void **state)
{
    static const uint64_t one0[] = {0}, onemax[] = {UINT64_MAX}, ends[] = {0, UINT64_MAX};
    static const uint64_t maxmax[] = {UINT64_MAX, UINT64_MAX, UINT64_MAX};
    static const uint64_t gaps[] = {0, 1, 1ull << 32, 1ull << 63, UINT64_MAX - 1, UINT64_MAX};
    static const uint64_t dups[] = {5, 5, 5, 7, 7, 1ull << 40, 1ull << 40};
    uint64_t pow2[64], *dense = malloc(10000 * sizeof(*dense)), *same = malloc(1000 * 8);
    size_t len;

    assert_true(dense && same);
    assert_int_equal(keys_roundtrip(NULL, 0), 2);
    keys_roundtrip(one0, 1);
    keys_roundtrip(onemax, 1);
    keys_roundtrip(ends, 2);
    keys_roundtrip(maxmax, 3);
    keys_roundtrip(gaps, PSI_ARRAY_LEN(gaps));
    keys_roundtrip(dups, PSI_ARRAY_LEN(dups));
    for (int i = 0; i < 64; i++) pow2[i] = 1ull << i;
    keys_roundtrip(pow2, 64);
    for (size_t i = 0; i < 1000; i++) same[i] = 0xdeadbeefcafeull;
    keys_roundtrip(same, 1000);
    for (size_t i = 0; i < 10000; i++) dense[i] = i;
    len = keys_roundtrip(dense, 10000);
    printf("keys dense 0..9999: %zu bytes for 80000 raw, ratio %.0fx\n", len, 80000.0 / len);
    assert_true(len < 200);
    for (size_t i = 0; i < 10000; i++) dense[i] = UINT64_MAX - 9999 + i;
    assert_true(keys_roundtrip(dense, 10000) < 200);
    free(dense);
    free(same);
}

static void test_keys_unsorted_rejected(void **state)
{
    uint64_t k[] = {3, 2};
    uint8_t *out = (uint8_t *)1;
    size_t len;

    assert_int_equal(psi_codec_keys_encode(k, 2, &out, &len), PS_ERR_INVAL);
    assert_null(out);
    assert_int_equal(psi_codec_keys_encode(NULL, 1, &out, &len), PS_ERR_INVAL);
}

static void test_keys_random(void **state)
{
    static const size_t sizes[] = {1, 2, 3, 10, 100, 1000, 10000, 100000, 1000000};
    static const uint64_t masks[] = {UINT64_MAX, 0xffffffffull, 0xfffff, 0xff};
    psi_rng r;

    psi_rng_seed(&r, 42);
    for (size_t s = 0; s < PSI_ARRAY_LEN(sizes); s++)
        for (size_t m = 0; m < PSI_ARRAY_LEN(masks); m++) {
            uint64_t *k = random_sorted(&r, sizes[s], masks[m]);
            size_t len = keys_roundtrip(k, sizes[s]);
            if (sizes[s] >= 10000 && (masks[m] == UINT64_MAX || masks[m] == 0xffffffffull))
                printf("keys random n=%zu below 2^%d: %zu bytes, %.2f bytes/key, ratio %.2fx\n",
                       sizes[s], masks[m] == UINT64_MAX ? 64 : 32, len,
                       (double)len / sizes[s], 8.0 * sizes[s] / len);
            free(k);
        }
}

/* Truncate and flip bits of both key forms: nothing crashes, truncations are
 * rejected, and whatever still decodes is n non-decreasing keys (for the
 * checksummed zstd form, the original keys). */
static void test_keys_corrupt(void **state)
{
    uint64_t k[300], *dec;
    uint8_t *enc, *bad;
    size_t len, n;
    psi_rng r;

    psi_rng_seed(&r, 7);
    for (int form = 0; form < 2; form++) {
        n = form ? 300 : 8; /* a few random keys stay raw; an arithmetic run compresses */
        for (size_t i = 0; i < n; i++) k[i] = form ? i * 3 : psi_rng_next(&r);
        qsort(k, n, sizeof(*k), cmp_u64);
        assert_int_equal(psi_codec_keys_encode(k, n, &enc, &len), 0);
        assert_int_equal(enc[0], form ? PSI_CODEC_KEYS_ZSTD : PSI_CODEC_KEYS_RAW);
        for (size_t cut = 0; cut < len; cut++) {
            assert_int_not_equal(psi_codec_keys_decode(enc, cut, n, &dec), 0);
            assert_null(dec);
        }
        assert_non_null(bad = malloc(len));
        for (size_t i = 0; i < len; i++)
            for (int bit = 0; bit < 8; bit++) {
                memcpy(bad, enc, len);
                bad[i] ^= (uint8_t)(1u << bit);
                if (psi_codec_keys_decode(bad, len, n, &dec) != 0) continue;
                for (size_t j = 1; j < n; j++) assert_true(dec[j - 1] <= dec[j]);
                /* The zstd form has a checksum: a flip that decodes is one
                 * the frame ignores (an unused header bit). */
                if (form) assert_memory_equal(dec, k, n * sizeof(*k));
                free(dec);
            }
        free(bad);
        free(enc);
    }
}

/* Hand-made malformed encodings. */
static void test_keys_malformed(void **state)
{
    static const struct {
        uint8_t b[16];
        size_t len, n;
    } cases[] = {
        {{1, 1}, 2, 1},                           /* no varint for the key */
        {{1, 1, 0x80}, 3, 1},                     /* truncated varint */
        {{1, 1, 0x80, 0x00}, 4, 1},               /* non-canonical varint */
        {{1, 0x81, 0x00}, 3, 1},                  /* non-canonical count */
        {{1, 1, 5, 5}, 4, 1},                     /* trailing byte */
        {{1, 0, 0}, 3, 0},                        /* trailing byte, empty list */
        {{3, 0}, 2, 0},                           /* unknown tag */
        {{0, 0}, 2, 0},                           /* unknown tag */
        {{1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1}, 13, 2}, /* wraps */
        {{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, 12, 1}, /* > 64 bits */
        {{2, 1, 1}, 3, 1},                        /* zstd tag, no frame */
        {{1}, 1, 0},                              /* no count */
    };
    uint64_t *dec;

    for (size_t i = 0; i < PSI_ARRAY_LEN(cases); i++) {
        int rv = psi_codec_keys_decode(cases[i].b, cases[i].len, cases[i].n, &dec);
        if (rv != PS_ERR_PROTO) fail_msg("case %zu: %d", i, rv);
        assert_null(dec);
    }
    /* The largest key: 2^64-1 as a ten-byte varint decodes. */
    static const uint8_t max[] = {1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1};
    assert_int_equal(psi_codec_keys_decode(max, sizeof(max), 1, &dec), 0);
    assert_true(dec[0] == UINT64_MAX);
    free(dec);
    assert_int_equal(psi_codec_keys_decode(NULL, 0, 0, &dec), PS_ERR_PROTO);
}

/* ---- zstd ------------------------------------------------------------------------- */

static void zstd_roundtrip(const void *in, size_t len)
{
    uint8_t *enc, *dec;
    size_t elen, dlen;

    assert_int_equal(psi_codec_zstd_encode(in, len, &enc, &elen), 0);
    assert_int_equal(psi_codec_zstd_decode(enc, elen, len, &dec, &dlen), 0);
    assert_int_equal(dlen, len);
    if (len) assert_memory_equal(dec, in, len);
    free(dec);
    if (len) {
        assert_int_equal(psi_codec_zstd_decode(enc, elen, len - 1, &dec, &dlen), PS_ERR_TOOBIG);
        assert_null(dec);
    }
    free(enc);
}

static uint8_t *text_like(size_t len, uint64_t seed)
{
    static const char *words[] = {"weight ", "gradient ", "key ", "server ", "0.125 ", "\n"};
    uint8_t *b = malloc(len ? len : 1);
    psi_rng r;

    assert_non_null(b);
    psi_rng_seed(&r, seed);
    for (size_t i = 0; i < len;) {
        const char *w = words[psi_rng_next(&r) % PSI_ARRAY_LEN(words)];
        for (; *w && i < len; w++) b[i++] = (uint8_t)*w;
    }
    return b;
}

static void test_zstd_roundtrip(void **state)
{
    static const size_t sizes[] = {0, 1, 2, 100, 4096, 100000, 1 << 20, 3 << 20};
    psi_rng r;

    psi_rng_seed(&r, 3);
    for (size_t s = 0; s < PSI_ARRAY_LEN(sizes); s++) {
        uint8_t *t = text_like(sizes[s], s), *z = calloc(1, sizes[s] + 1);
        uint8_t *rnd = malloc(sizes[s] + 1);
        assert_true(z && rnd);
        for (size_t i = 0; i < sizes[s]; i++) rnd[i] = (uint8_t)psi_rng_next(&r);
        zstd_roundtrip(t, sizes[s]);
        zstd_roundtrip(z, sizes[s]);
        zstd_roundtrip(rnd, sizes[s]);
        free(t);
        free(z);
        free(rnd);
    }
}

/* Every single-bit flip is rejected or decodes to the original bytes (a
 * change the frame does not depend on); every truncation and any trailing
 * byte is rejected; nothing crashes. */
static void test_zstd_corrupt(void **state)
{
    size_t len = 3000, elen, dlen, rejected = 0, flips = 0;
    uint8_t *t = text_like(len, 9), *enc, *bad, *dec;

    assert_int_equal(psi_codec_zstd_encode(t, len, &enc, &elen), 0);
    assert_non_null(bad = malloc(elen + 1));
    for (size_t cut = 0; cut < elen; cut++) {
        assert_int_not_equal(psi_codec_zstd_decode(enc, cut, 1 << 20, &dec, &dlen), 0);
        assert_null(dec);
    }
    memcpy(bad, enc, elen);
    bad[elen] = 0;
    assert_int_equal(psi_codec_zstd_decode(bad, elen + 1, 1 << 20, &dec, &dlen), PS_ERR_PROTO);
    for (size_t i = 0; i < elen; i++)
        for (int bit = 0; bit < 8; bit++, flips++) {
            memcpy(bad, enc, elen);
            bad[i] ^= (uint8_t)(1u << bit);
            if (psi_codec_zstd_decode(bad, elen, 1 << 20, &dec, &dlen) != 0) {
                rejected++;
                continue;
            }
            assert_int_equal(dlen, len);
            assert_memory_equal(dec, t, len);
            free(dec);
        }
    printf("zstd corrupt: %zu of %zu single-bit flips rejected, the rest decode unchanged\n",
           rejected, flips);
    assert_true(rejected * 100 >= flips * 99);
    free(bad);
    free(enc);
    free(t);
}

static void test_zstd_cap(void **state)
{
    /* A header stating 2^40 bytes is refused before any frame is looked at. */
    static const uint8_t huge[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x28, 0xb5, 0x2f, 0xfd};
    static const uint8_t junk[] = {0x05, 1, 2, 3, 4, 5, 6, 7};
    uint8_t *t = text_like(5000, 1), *enc, *dec;
    size_t elen, dlen;

    assert_int_equal(psi_codec_zstd_decode(huge, sizeof(huge), 1 << 20, &dec, &dlen),
                     PS_ERR_TOOBIG);
    assert_int_equal(psi_codec_zstd_decode(junk, sizeof(junk), 1 << 20, &dec, &dlen),
                     PS_ERR_PROTO);
    assert_int_equal(psi_codec_zstd_encode(t, 5000, &enc, &elen), 0);
    assert_int_equal(psi_codec_zstd_decode(enc, elen, 4999, &dec, &dlen), PS_ERR_TOOBIG);
    assert_int_equal(psi_codec_zstd_decode(enc, elen, 0, &dec, &dlen), PS_ERR_TOOBIG);
    assert_int_equal(psi_codec_zstd_decode(enc, elen, 5000, &dec, &dlen), 0);
    free(dec);
    /* A header that disagrees with the frame's content size. */
    enc[0] ^= 1;
    assert_int_equal(psi_codec_zstd_decode(enc, elen, 1 << 20, &dec, &dlen), PS_ERR_PROTO);
    free(enc);
    free(t);
}

/* ---- fp16 ------------------------------------------------------------------------- */

static uint16_t h1(float f, psi_rng *r)
{
    uint16_t *h, v;
    assert_int_equal(psi_codec_fp16_encode(&f, 1, r, &h), 0);
    v = h[0];
    free(h);
    return v;
}

static float f1(uint16_t h)
{
    float f;
    psi_codec_fp16_decode(&h, 1, &f);
    return f;
}

/* Every one of the 65536 fp16 values decodes to an f32 that encodes back to
 * the same bits (NaNs to a NaN), nearest and stochastic. */
static void test_fp16_exact(void **state)
{
    static uint16_t all[65536], *back;
    static float f[65536];
    psi_rng r;

    psi_rng_seed(&r, 5);
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    psi_codec_fp16_decode(all, 65536, f);
    for (int stoch = 0; stoch < 2; stoch++) {
        assert_int_equal(psi_codec_fp16_encode(f, 65536, stoch ? &r : NULL, &back), 0);
        for (uint32_t i = 0; i < 65536; i++) {
            if ((i & 0x7c00) == 0x7c00 && (i & 0x3ff)) {
                assert_true(isnan(f[i]) && (back[i] & 0x7fff) == 0x7e00);
                assert_int_equal(back[i] >> 15, i >> 15);
            } else if (back[i] != i) {
                fail_msg("fp16 0x%04x -> %g -> 0x%04x", i, f[i], back[i]);
            }
        }
        free(back);
    }
    assert_true(f1(0x3c00) == 1.0f && f1(0x0001) == 0x1p-24f && f1(0x7bff) == 65504.0f);
    assert_true(f1(0x8000) == 0 && signbit(f1(0x8000)) && isinf(f1(0xfc00)) && f1(0xfc00) < 0);
}

static void test_fp16_special(void **state)
{
    assert_int_equal(h1(1e5f, NULL), 0x7bff);
    assert_int_equal(h1(-1e30f, NULL), 0xfbff);
    assert_int_equal(h1(FLT_MAX, NULL), 0x7bff);
    assert_int_equal(h1(65519.0f, NULL), 0x7bff);
    assert_int_equal(h1(65520.0f, NULL), 0x7bff); /* IEEE would round to inf */
    assert_int_equal(h1(65535.0f, NULL), 0x7bff);
    assert_int_equal(h1(INFINITY, NULL), 0x7c00);
    assert_int_equal(h1(-INFINITY, NULL), 0xfc00);
    assert_int_equal(h1(NAN, NULL), 0x7e00);
    assert_int_equal(h1(-NAN, NULL), 0xfe00);
    assert_int_equal(h1(bits_f(0x7f800001), NULL), 0x7e00); /* signalling NaN */
    assert_int_equal(h1(-0.0f, NULL), 0x8000);
    assert_int_equal(h1(0x1p-24f, NULL), 0x0001);
    assert_int_equal(h1(0x1p-25f, NULL), 0x0000);       /* tie to even */
    assert_int_equal(h1(0x1.8p-24f, NULL), 0x0002);     /* tie to even */
    assert_int_equal(h1(0x1.000002p-25f, NULL), 0x0001);
    assert_int_equal(h1(0x1p-14f, NULL), 0x0400);       /* smallest normal */
    assert_int_equal(h1(0x1.ffcp-15f, NULL), 0x0400);   /* tie, carry into normal */
    assert_int_equal(h1(0x1.ff8p-15f, NULL), 0x03ff);   /* largest subnormal */
    assert_int_equal(h1(1e-40f, NULL), 0x0000);         /* f32 subnormal */
    assert_int_equal(h1(-1e-40f, NULL), 0x8000);
    assert_int_equal(h1(1.0f + 0x1p-11f, NULL), 0x3c00); /* tie to even (down) */
    assert_int_equal(h1(1.0f + 0x3p-11f, NULL), 0x3c02); /* tie to even (up) */
    assert_int_equal(h1(2047.5f, NULL), 0x67ff + 1);     /* carry into exponent */
    psi_rng r;
    psi_rng_seed(&r, 1);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(h1(1e6f, &r), 0x7bff);
        assert_int_equal(h1(65505.0f, &r), 0x7bff);
        assert_int_equal(h1(-INFINITY, &r), 0xfc00);
        assert_int_equal(h1(NAN, &r) & 0x7fff, 0x7e00);
    }
}

/* Random values over the whole range: within the stated bound, and nearest
 * agrees bit for bit with the compiler's _Float16 conversion where that
 * exists (it differs only beyond 65504, where it rounds to inf). */
static void test_fp16_bound(void **state)
{
    enum { N = 200000 };
    float *v = malloc(N * sizeof(*v)), *d = malloc(N * sizeof(*d));
    uint16_t *h;
    double worst[2] = {0, 0};
    psi_rng r;

    assert_true(v && d);
    psi_rng_seed(&r, 11);
    for (size_t i = 0; i < N; i++) v[i] = rand_float(&r, -30, 15);
    for (int stoch = 0; stoch < 2; stoch++) {
        assert_int_equal(psi_codec_fp16_encode(v, N, stoch ? &r : NULL, &h), 0);
        psi_codec_fp16_decode(h, N, d);
        for (size_t i = 0; i < N; i++) {
            double err = fabs((double)d[i] - v[i]);
            if (err > psi_codec_fp16_max_err(v[i], stoch))
                fail_msg("fp16 %s: %a -> %a", stoch ? "stoch" : "nearest", v[i], d[i]);
            if (fabsf(v[i]) >= 0x1p-14f) worst[stoch] = PSI_MAX(worst[stoch], err / fabsf(v[i]));
#ifdef __FLT16_MAX__
            _Float16 ref = (_Float16)v[i];
            uint16_t rb;
            memcpy(&rb, &ref, 2);
            if (!stoch && fabsf(v[i]) <= 65504 && h[i] != rb) fail_msg("fp16 %a: 0x%04x, _Float16 0x%04x", v[i], h[i], rb);
#endif
        }
        free(h);
    }
    printf("fp16 worst relative error (normal range): nearest 2^%.3f, stochastic 2^%.3f\n",
           log2(worst[0]), log2(worst[1]));
    free(v);
    free(d);
}

/* Stochastic rounding is unbiased: the mean of many encodings of x is x within
 * 5 standard errors (one encoding is off by at most a step q, variance <=
 * q^2/4), while nearest is off by the full rounding error. */
static void test_fp16_unbiased(void **state)
{
    static const float xs[] = {1.0f + 0x1p-12f, 1.0f + 0x1.8p-11f, -3.14159f, 1000.3f,
                               0x1.4cp-20f /* fp16 subnormal */, 0x1.3p-26f /* below 2^-25 */,
                               65503.0f, 0x1.fffp-15f};
    enum { T = 100000 };
    float f[T], d[T];
    uint16_t *h;
    psi_rng r;

    psi_rng_seed(&r, 99);
    for (size_t k = 0; k < PSI_ARRAY_LEN(xs); k++) {
        double sum = 0, step = psi_codec_fp16_max_err(xs[k], 1);
        for (int i = 0; i < T; i++) f[i] = xs[k];
        assert_int_equal(psi_codec_fp16_encode(f, T, &r, &h), 0);
        psi_codec_fp16_decode(h, T, d);
        for (int i = 0; i < T; i++) sum += d[i];
        double bias = fabs(sum / T - xs[k]), se = step / 2 / sqrt(T);
        if (bias > 5 * se) fail_msg("fp16 stochastic %a: bias %g > 5 * %g", xs[k], bias, se);
        free(h);
    }
}

/* ---- int8 --------------------------------------------------------------------------- */

static float scale_of(const uint8_t *enc)
{
    return bits_f(psi_get_u32(enc));
}

static void int8_check(const float *v, size_t n, psi_rng *r)
{
    uint8_t *enc;
    size_t len;
    float *d = malloc((n ? n : 1) * sizeof(*d)), scale, m = 0;

    assert_non_null(d);
    assert_int_equal(psi_codec_int8_encode(v, n, r, &enc, &len), 0);
    assert_int_equal(len, 4 + n);
    assert_int_equal(psi_codec_int8_decode(enc, len, n, d), 0);
    scale = scale_of(enc);
    for (size_t i = 0; i < n; i++) m = PSI_MAX(m, fabsf(v[i]));
    /* 127 * scale covers max |v| (up to the f32 limit) and is tight unless
     * the scale is subnormal. */
    assert_true((double)scale * 127 >= (double)m * (1 - 0x1p-23));
    if (scale >= FLT_MIN) assert_true((double)scale * 127 <= (double)m * (1 + 0x1p-22));
    for (size_t i = 0; i < n; i++)
        if (fabs((double)d[i] - v[i]) > psi_codec_int8_max_err(scale, v[i], r != NULL))
            fail_msg("int8 %s: %a -> %a (scale %a)", r ? "stoch" : "nearest", v[i], d[i], scale);
    free(enc);
    free(d);
}

static void test_int8_bound(void **state)
{
    static const int ranges[][2] = {{-20, 0}, {-149, -130}, {100, 127}, {-60, 60}};
    enum { N = 50000 };
    float *v = malloc(N * sizeof(*v));
    psi_rng r;

    assert_non_null(v);
    psi_rng_seed(&r, 13);
    for (size_t k = 0; k < PSI_ARRAY_LEN(ranges); k++) {
        for (size_t i = 0; i < N; i++) v[i] = rand_float(&r, ranges[k][0], ranges[k][1]);
        int8_check(v, N, NULL);
        int8_check(v, N, &r);
    }
    v[0] = FLT_MAX, v[1] = -FLT_MAX, v[2] = 1, v[3] = FLT_MAX / 3;
    int8_check(v, 4, NULL);
    int8_check(v, 4, &r);
    v[0] = 0x1p-149f, v[1] = -0x1p-149f, v[2] = 0;
    int8_check(v, 3, NULL);
    v[0] = 190 * 0x1p-149f, v[1] = 37 * 0x1p-149f; /* m/127 rounds down to one ulp */
    int8_check(v, 3, NULL);
    int8_check(v, 3, &r);
    /* 127 * scale lands exactly on the largest values: they are exact. */
    v[0] = 127, v[1] = -127, v[2] = 5;
    int8_check(v, 3, NULL);
    free(v);
}

static void test_int8_zero(void **state)
{
    float v[100] = {0}, d[100];
    uint8_t *enc;
    size_t len;

    v[7] = -0.0f;
    for (int stoch = 0; stoch < 2; stoch++) {
        psi_rng r;
        psi_rng_seed(&r, 1);
        assert_int_equal(psi_codec_int8_encode(v, 100, stoch ? &r : NULL, &enc, &len), 0);
        assert_true(len == 104 && scale_of(enc) == 0);
        for (int i = 4; i < 104; i++) assert_int_equal(enc[i], 0);
        memset(d, 0xff, sizeof(d));
        assert_int_equal(psi_codec_int8_decode(enc, len, 100, d), 0);
        for (int i = 0; i < 100; i++) assert_true(d[i] == 0);
        free(enc);
    }
    assert_int_equal(psi_codec_int8_encode(v, 0, NULL, &enc, &len), 0);
    assert_int_equal(len, 4);
    assert_int_equal(psi_codec_int8_decode(enc, len, 0, d), 0);
    free(enc);
}

static void test_int8_unbiased(void **state)
{
    enum { T = 20000, N = 16 };
    float v[N], d[N];
    double sum[N] = {0};
    uint8_t *enc;
    size_t len;
    psi_rng r;

    psi_rng_seed(&r, 17);
    for (int i = 0; i < N; i++) v[i] = (float)(i - 5) * 0.37f;
    v[N - 1] = 10; /* scale = 10/127: the others sit between steps */
    for (int t = 0; t < T; t++) {
        assert_int_equal(psi_codec_int8_encode(v, N, &r, &enc, &len), 0);
        assert_int_equal(psi_codec_int8_decode(enc, len, N, d), 0);
        for (int i = 0; i < N; i++) sum[i] += d[i];
        free(enc);
    }
    double se = (10.0 / 127) / 2 / sqrt(T);
    for (int i = 0; i < N; i++)
        if (fabs(sum[i] / T - v[i]) > 5 * se)
            fail_msg("int8 stochastic %g: mean %.9g (se %g)", v[i], sum[i] / T, se);
}

static void test_int8_malformed(void **state)
{
    float v[8] = {1, -2, 3, -4, 5, -6, 7, -8}, d[8];
    uint8_t *enc, bad[12];
    size_t len;

    assert_int_equal(psi_codec_int8_encode(v, 8, NULL, &enc, &len), 0);
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(psi_codec_int8_decode(enc, cut, 8, d), PS_ERR_PROTO);
    assert_int_equal(psi_codec_int8_decode(enc, len, 7, d), PS_ERR_PROTO);
    assert_int_equal(psi_codec_int8_decode(enc, len, 9, d), PS_ERR_PROTO);
    assert_int_equal(psi_codec_int8_decode(enc, len, SIZE_MAX, d), PS_ERR_PROTO);
    static const uint32_t scales[] = {0x7fc00000, 0x7f800000, 0xff800000, 0xbf800000,
                                      0x7f7fffff, 0x7c020000 /* 127 * s > FLT_MAX */};
    for (size_t i = 0; i < PSI_ARRAY_LEN(scales); i++) {
        memcpy(bad, enc, len);
        psi_put_u32(bad, scales[i]);
        assert_int_equal(psi_codec_int8_decode(bad, len, 8, d), PS_ERR_PROTO);
    }
    memcpy(bad, enc, len);
    bad[9] = 0x80;
    assert_int_equal(psi_codec_int8_decode(bad, len, 8, d), PS_ERR_PROTO);
    free(enc);
    v[3] = NAN;
    assert_int_equal(psi_codec_int8_encode(v, 8, NULL, &enc, &len), PS_ERR_INVAL);
    v[3] = -INFINITY;
    assert_int_equal(psi_codec_int8_encode(v, 8, NULL, &enc, &len), PS_ERR_INVAL);
    assert_null(enc);
}

/* ---- speed ---------------------------------------------------------------------------- */

/* MB/s of each encoder and decoder on 8 MB of input, best of 3 runs (MB of
 * the uncompressed form: 8-byte keys, f32 values, bytes). */
#define SPEED_BYTES (8u << 20)
#define SPEED_RUNS 3

typedef struct speed_case {
    const char *name;
    size_t n;              /* items: keys, floats or bytes */
    const void *in;        /* the uncompressed input */
    psi_rng *rng;          /* for the stochastic quantizers */
    size_t enc_len;        /* set by the last encode */
} speed_case;

typedef void (*speed_fn)(speed_case *c, void **enc);

static void enc_keys(speed_case *c, void **e)
{
    assert_int_equal(psi_codec_keys_encode(c->in, c->n, (uint8_t **)e, &c->enc_len), 0);
}
static void dec_keys(speed_case *c, void **e)
{
    uint64_t *k;
    assert_int_equal(psi_codec_keys_decode(*e, c->enc_len, c->n, &k), 0);
    free(k);
}
static void enc_zstd(speed_case *c, void **e)
{
    assert_int_equal(psi_codec_zstd_encode(c->in, c->n, (uint8_t **)e, &c->enc_len), 0);
}
static void dec_zstd(speed_case *c, void **e)
{
    uint8_t *d;
    size_t len;
    assert_int_equal(psi_codec_zstd_decode(*e, c->enc_len, c->n, &d, &len), 0);
    free(d);
}
static void enc_fp16(speed_case *c, void **e)
{
    assert_int_equal(psi_codec_fp16_encode(c->in, c->n, c->rng, (uint16_t **)e), 0);
    c->enc_len = c->n * 2;
}
static void dec_fp16(speed_case *c, void **e)
{
    float *d = malloc(c->n * sizeof(*d));
    assert_non_null(d);
    psi_codec_fp16_decode(*e, c->n, d);
    free(d);
}
static void enc_int8(speed_case *c, void **e)
{
    assert_int_equal(psi_codec_int8_encode(c->in, c->n, c->rng, (uint8_t **)e, &c->enc_len), 0);
}
static void dec_int8(speed_case *c, void **e)
{
    float *d = malloc(c->n * sizeof(*d));
    assert_non_null(d);
    assert_int_equal(psi_codec_int8_decode(*e, c->enc_len, c->n, d), 0);
    free(d);
}

/* Best-of-runs MB/s of encode then decode (allocation of outputs included). */
static void speed_run(speed_case *c, speed_fn enc, speed_fn dec)
{
    double best[2] = {0, 0};
    void *e = NULL;

    for (int run = 0; run < SPEED_RUNS; run++) {
        for (int phase = 0; phase < 2; phase++) {
            uint64_t t0 = psi_now_ns();
            if (phase == 0) free(e), e = NULL, enc(c, &e);
            else dec(c, &e);
            double s = (double)(psi_now_ns() - t0) * 1e-9;
            best[phase] = PSI_MAX(best[phase], SPEED_BYTES / (double)(1 << 20) / s);
        }
    }
    printf("speed %-13s ratio %6.2fx  encode %6.0f MB/s  decode %6.0f MB/s\n", c->name,
           (double)SPEED_BYTES / c->enc_len, best[0], best[1]);
    free(e);
}

static void test_speed(void **state)
{
    size_t nk = SPEED_BYTES / 8, nf = SPEED_BYTES / 4;
    uint64_t *k = malloc(SPEED_BYTES), x = 0;
    float *g = calloc(nf, 4), *v = malloc(SPEED_BYTES);
    psi_rng r;

    assert_true(k && g && v);
    psi_rng_seed(&r, 1);
    /* Sparse ids: about 1 in 16 of a range; sparse gradients: 1 in ~4.5
     * entries nonzero; dense values uniform in [-0.5, 0.5). */
    for (size_t i = 0; i < nk; i++) k[i] = x += 1 + psi_rng_next(&r) % 31;
    for (size_t i = 0; i < nf; i += 1 + psi_rng_next(&r) % 8) g[i] = (float)psi_rng_double(&r);
    for (size_t i = 0; i < nf; i++) v[i] = (float)(psi_rng_double(&r) - 0.5);
    speed_run(&(speed_case){"keys sparse", nk, k, NULL, 0}, enc_keys, dec_keys);
    speed_run(&(speed_case){"zstd grads", SPEED_BYTES, g, NULL, 0}, enc_zstd, dec_zstd);
    speed_run(&(speed_case){"zstd dense", SPEED_BYTES, v, NULL, 0}, enc_zstd, dec_zstd);
    speed_run(&(speed_case){"fp16 nearest", nf, v, NULL, 0}, enc_fp16, dec_fp16);
    speed_run(&(speed_case){"fp16 stoch", nf, v, &r, 0}, enc_fp16, dec_fp16);
    speed_run(&(speed_case){"int8 nearest", nf, v, NULL, 0}, enc_int8, dec_int8);
    speed_run(&(speed_case){"int8 stoch", nf, v, &r, 0}, enc_int8, dec_int8);
    free(k);
    free(g);
    free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_adversarial), cmocka_unit_test(test_keys_unsorted_rejected),
        cmocka_unit_test(test_keys_random),      cmocka_unit_test(test_keys_corrupt),
        cmocka_unit_test(test_keys_malformed),   cmocka_unit_test(test_zstd_roundtrip),
        cmocka_unit_test(test_zstd_corrupt),     cmocka_unit_test(test_zstd_cap),
        cmocka_unit_test(test_fp16_exact),       cmocka_unit_test(test_fp16_special),
        cmocka_unit_test(test_fp16_bound),       cmocka_unit_test(test_fp16_unbiased),
        cmocka_unit_test(test_int8_bound),       cmocka_unit_test(test_int8_zero),
        cmocka_unit_test(test_int8_unbiased),    cmocka_unit_test(test_int8_malformed),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
