/*
 * test_filter.c -- unit tests of the filter chain (src/kv/filter.c).
 *
 * Messages are built as the worker and the server build them (a request
 * borrows one buffer of keys then values, plus an AUX segment, which no
 * filter touches; a response carries values only), encoded by a sender chain,
 * carried through a real frame (psi_frame_encode / psi_frame_decode) and
 * decoded by a separate receiver chain.  Covered: spec parsing; exact round
 * trips of keycache, zstd and both over adversarial and random key lists; the
 * repeated list that travels as its signature; key-cache misses (receiver
 * restarted, another peer, the two ends' lists out of step after eviction, a
 * random history of restarts, forgets and lost messages) that never yield
 * keys; the fp16 and int8 error bounds on requests and responses,
 * quantization leaving pulls and empty answers alone, and fp16's layout on
 * the wire; every byte of every encoded segment flipped and every truncation
 * decoded without a crash and without keys that were not sent; unknown filter
 * ids; a node without a chain (reverses zstd and quantization, refuses
 * keycache); zstd left out when it does not pay.  The last three are
 * regression tests of bugs found while writing these, all fixed in filter.c
 * and passing: a key count that wraps the length check is refused; int8 sends
 * non-finite values unquantized instead of failing the message forever; a
 * message whose segments share one block, as the UCX transport delivers them,
 * decodes exactly as one with separate segments (before the fix, an fp16 load
 * at an odd address that UBSan reports under PS_SANITIZE).
 *
 * A name given as the first argument runs only the tests matching it
 * (cmocka_set_test_filter), e.g. `test_filter 'corrupt*'`.
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
#include <unistd.h>

#include <cmocka.h>

#include "kv/codec.h"
#include "kv/filter.h"
#include "ps/ps.h"
#include "util/util.h"
#include "wire/msg.h"

#define WATCHDOG_S 100 /* per test: kill the process if a test hangs (ctest's cap is 120) */
#define WRK 7u         /* node id of the worker (the server's peer) */
#define SRV 3u         /* node id of the server (the worker's peer) */

/* filter.c's private segment formats, as they appear on the wire. */
#define KC_MIN_KEYS 3 /* shorter lists are never keycached */
#define KC_KEEP 64    /* lists remembered per peer */
#define KC_SIG_LEN 17 /* format byte + 128-bit signature */
enum { KC_FULL = 0, KC_SIG = 1 };
enum { Z_RAW = 0, Z_BYTES = 1, Z_KEYS = 2 };

static int arm(void **state)
{
    alarm(WATCHDOG_S);
    return 0;
}

static int disarm(void **state)
{
    alarm(0);
    return 0;
}

/* ---- messages ------------------------------------------------------------------ */

/* A request as worker.c's slice_msg builds it: one buffer holding the keys
 * then the values, which the message borrows (and frees via on_free, as the
 * worker drops its reference), and an AUX segment: 8 bytes here, where a
 * real push carries PSI_PUSH_AUX (24: sequence number, origin|via, low
 * watermark); the filters pass it through untouched.  No values: a pull. */
static psi_msg *new_request(const uint64_t *keys, const float *vals, size_t n)
{
    uint8_t *buf = malloc(n * 12 + 8);
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);
    uint8_t seq[8];

    assert_true(buf && m);
    if (n) memcpy(buf, keys, n * 8);
    if (vals && n) memcpy(buf + n * 8, vals, n * 4);
    m->hdr.flags = (uint16_t)(PSI_F_REQUEST | (vals ? PSI_F_PUSH : PSI_F_PULL));
    m->hdr.table = 42;
    m->hdr.sender = WRK;
    m->hdr.receiver = SRV;
    m->hdr.timestamp = 1234;
    m->hdr.key_count = n;
    if (n) {
        m->hdr.key_lo = keys[0];
        m->hdr.key_hi = keys[n - 1];
    }
    m->seg[PSI_SEG_KEYS] = n ? buf : NULL;
    m->hdr.seg_len[PSI_SEG_KEYS] = n * 8;
    m->borrowed = 1u << PSI_SEG_KEYS;
    if (vals) {
        m->seg[PSI_SEG_VALS] = n ? buf + n * 8 : NULL;
        m->hdr.seg_len[PSI_SEG_VALS] = n * 4;
        m->borrowed |= 1u << PSI_SEG_VALS;
        psi_put_u64(seq, 77);
        assert_int_equal(psi_msg_set_seg(m, PSI_SEG_AUX, seq, 8), 0);
    }
    m->on_free = free;
    m->on_free_arg = buf;
    return m;
}

/* An answer to a pull as server.c builds it: values only, key_count 0. */
static psi_msg *new_response(const float *vals, size_t n)
{
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);

    assert_non_null(m);
    m->hdr.flags = PSI_F_RESPONSE | PSI_F_PULL;
    m->hdr.table = 42;
    m->hdr.sender = SRV;
    m->hdr.receiver = WRK;
    m->hdr.timestamp = 1234;
    if (n) assert_int_equal(psi_msg_set_seg(m, PSI_SEG_VALS, vals, n * 4), 0);
    return m;
}

/* What the receiver gets: `m` through a contiguous frame. */
static psi_msg *wire(const psi_msg *m)
{
    size_t size = psi_frame_size(m);
    uint8_t *f = malloc(size);
    psi_msg *r = NULL;

    assert_non_null(f);
    assert_int_equal(psi_frame_encode(m, f, size), (long)size);
    assert_int_equal(psi_frame_decode(f, size, PSI_DEFAULT_MAX_PAYLOAD, &r), 0);
    free(f);
    return r;
}

static int has_filter(const psi_msg *m, uint8_t id)
{
    for (int i = 0; i < PSI_MAX_FILTERS; i++)
        if (m->hdr.filters[i] == id) return 1;
    return 0;
}

static void assert_no_filters(const psi_msg *m)
{
    for (int i = 0; i < PSI_MAX_FILTERS; i++) assert_int_equal(m->hdr.filters[i], 0);
}

static const uint8_t *seg_u8(const psi_msg *m, int seg) { return m->seg[seg]; }

/* A decoded request holds exactly these keys, values and AUX bytes. */
static void check_request(const psi_msg *m, const uint64_t *keys, const float *vals, size_t n)
{
    assert_no_filters(m);
    assert_int_equal(m->hdr.key_count, n);
    assert_int_equal(m->hdr.seg_len[PSI_SEG_KEYS], n * 8);
    if (n) assert_memory_equal(m->seg[PSI_SEG_KEYS], keys, n * 8);
    if (vals) {
        assert_int_equal(m->hdr.seg_len[PSI_SEG_VALS], n * 4);
        if (n) assert_memory_equal(m->seg[PSI_SEG_VALS], vals, n * 4);
        assert_int_equal(m->hdr.seg_len[PSI_SEG_AUX], 8);
        assert_int_equal(psi_get_u64(m->seg[PSI_SEG_AUX]), 77);
    } else {
        assert_int_equal(m->hdr.seg_len[PSI_SEG_VALS], 0);
    }
}

static psi_chain *chain(const char *spec)
{
    psi_chain *c = NULL;
    double sig;
    assert_int_equal(psi_chain_new(spec, PS_F32, &c, &sig), 0);
    assert_non_null(c);
    return c;
}

/* ---- data -------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

enum { K_RANDOM, K_DENSE, K_CLUSTER, K_SPARSE, K_TOP, K_NKINDS };
static const char *const kind_name[K_NKINDS] = {"random", "dense", "cluster", "sparse", "top"};

/* n sorted distinct keys of a kind into k; returns how many (RANDOM drops
 * duplicates, which 64-bit random keys practically never have). */
static size_t gen_keys(psi_rng *r, int kind, size_t n, uint64_t *k)
{
    uint64_t cur = psi_rng_next(r) >> 8;
    size_t m = 0;

    switch (kind) {
    case K_RANDOM:
        for (size_t i = 0; i < n; i++) k[i] = psi_rng_next(r);
        qsort(k, n, 8, cmp_u64);
        for (size_t i = 0; i < n; i++)
            if (!m || k[i] != k[m - 1]) k[m++] = k[i];
        return m;
    case K_DENSE:
        cur &= 0xffffffffu;
        for (size_t i = 0; i < n; i++) k[i] = cur + i;
        return n;
    case K_CLUSTER: /* runs of nearby keys with big jumps between them */
        for (size_t i = 0; i < n; i++) {
            uint64_t x = psi_rng_next(r);
            cur += (x & 15) == 0 ? 1 + ((x >> 8) & 0xffffffffu) : 1 + ((x >> 8) % 3);
            k[i] = cur;
        }
        return n;
    case K_SPARSE: /* random gaps up to 2^20 */
        cur >>= 16;
        for (size_t i = 0; i < n; i++) k[i] = cur += 1 + (psi_rng_next(r) & 0xfffff);
        return n;
    default: /* ending at 2^64-1 */
        for (size_t i = 0; i < n; i++) k[i] = UINT64_MAX - 3 * (uint64_t)(n - 1 - i);
        return n;
    }
}

/* Any finite f32 bit pattern (incompressible). */
static float rand_finite(psi_rng *r)
{
    for (;;) {
        uint32_t b = (uint32_t)psi_rng_next(r);
        float f;
        memcpy(&f, &b, 4);
        if (isfinite(f)) return f;
    }
}

/* Values as gradients often look: few distinct small values (compressible)
 * or random bits (incompressible). */
static void gen_vals(psi_rng *r, int smooth, size_t n, float *v)
{
    for (size_t i = 0; i < n; i++)
        v[i] = smooth ? (float)(psi_rng_next(r) % 5) * 0.25f - 0.5f : rand_finite(r);
}

/* A value with a random sign and a magnitude in [2^lo, 2^(hi+1)). */
static float rand_mag(psi_rng *r, int lo, int hi)
{
    uint64_t x = psi_rng_next(r);
    int e = lo + (int)(x % (uint64_t)(hi - lo + 1));
    float f = ldexpf(1.0f + (float)((x >> 20) & 0x7fffff) * 0x1p-23f, e);
    return (x >> 63) ? -f : f;
}

/* ---- spec parsing ----------------------------------------------------------------- */

static void test_spec_good(void **state)
{
    static const char *const good[] = {
        "",          "keycache", "zstd",         "zstd,fp16",     "int8,keycache,zstd",
        "fp16,zstd,keycache", "KEYCACHE,ZStd", "Int8",     ",,keycache,,", "sigmod=0.5,int8",
    };
    psi_chain *c = NULL;
    double sig = -1;

    assert_int_equal(psi_chain_new(NULL, PS_F32, &c, &sig), 0);
    assert_false(psi_chain_active(c));
    assert_true(sig == 0);
    psi_chain_free(c);
    for (size_t i = 0; i < PSI_ARRAY_LEN(good); i++) {
        c = NULL;
        sig = -1;
        if (psi_chain_new(good[i], PS_F32, &c, &sig) != 0) fail_msg("spec \"%s\" refused", good[i]);
        assert_non_null(c);
        assert_int_equal(psi_chain_active(c), good[i][0] != 0);
        assert_true(sig == (strstr(good[i], "sigmod") ? 0.5 : 0));
        psi_chain_free(c);
    }
    /* sigmod alone filters nothing in the chain (it runs when a push is
     * prepared); its threshold comes back, in any case. */
    assert_int_equal(psi_chain_new("sigmod=0.5", PS_F32, &c, &sig), 0);
    assert_true(sig == 0.5);
    assert_false(psi_chain_active(c));
    psi_chain_free(c);
    assert_int_equal(psi_chain_new("keycache,SIGMOD=2.5e-3", PS_F64, &c, &sig), 0);
    assert_true(sig == 2.5e-3);
    assert_true(psi_chain_active(c));
    psi_chain_free(c);
    assert_int_equal(psi_chain_new("sigmod=0", PS_F32, &c, &sig), 0);
    assert_true(sig == 0);
    psi_chain_free(c);
    /* lossless filters on any dtype */
    assert_int_equal(psi_chain_new("keycache,zstd", PS_F64, &c, &sig), 0);
    psi_chain_free(c);
    assert_int_equal(psi_chain_new("keycache,zstd", PS_I64, &c, &sig), 0);
    psi_chain_free(c);
}

static void test_spec_bad(void **state)
{
    static const char *const bad[] = {
        "gzip",       "keycache,gzip", "sigmod=",   "sigmod=-1", "sigmod=x", "sigmod=1x",
        "sigmod",     "sigmod=nan",    " zstd",     "zstd ",     "fp 16",    "keycache;zstd",
        "sigmod=-0.5", "int16",
    };
    psi_chain *c = NULL;
    double sig;
    char longspec[300];

    for (size_t i = 0; i < PSI_ARRAY_LEN(bad); i++) {
        c = NULL;
        if (psi_chain_new(bad[i], PS_F32, &c, &sig) != PS_ERR_INVAL)
            fail_msg("spec \"%s\" accepted", bad[i]);
        assert_null(c);
    }
    assert_int_equal(psi_chain_new("fp16", PS_F64, &c, &sig), PS_ERR_INVAL);
    assert_int_equal(psi_chain_new("int8", PS_F64, &c, &sig), PS_ERR_INVAL);
    assert_int_equal(psi_chain_new("keycache,zstd,fp16", PS_I64, &c, &sig), PS_ERR_INVAL);
    assert_null(c);
    /* 255 characters are accepted, 256 are not (whatever they hold) */
    memset(longspec, ',', sizeof(longspec));
    memcpy(longspec, "zstd", 4);
    longspec[255] = 0;
    assert_int_equal(psi_chain_new(longspec, PS_F32, &c, &sig), 0);
    assert_true(psi_chain_active(c));
    psi_chain_free(c);
    c = NULL;
    longspec[255] = ',';
    longspec[256] = 0;
    assert_int_equal(psi_chain_new(longspec, PS_F32, &c, &sig), PS_ERR_INVAL);
    assert_null(c);
    longspec[299] = 0;
    assert_int_equal(psi_chain_new(longspec, PS_F32, &c, &sig), PS_ERR_INVAL);
}

/* ---- lossless round trips --------------------------------------------------------- */

static const char *const lossless[] = {"", "keycache", "zstd", "keycache,zstd", "zstd,keycache"};

/* Sends the list three times (values v, v, then w) from one sender to one
 * receiver, and an answer of v back: each decodes exactly; the second push of
 * a keycached list carries its signature only and is smaller; the borrowed
 * buffer is never touched. */
static void roundtrip(const char *spec, const uint64_t *keys, size_t n, const float *v,
                      const float *w)
{
    psi_chain *snd = chain(spec), *rcv = chain(spec);
    size_t keys_len[3], frame[3];
    int kc = strstr(spec, "keycache") != NULL;

    for (int rep = 0; rep < 3; rep++) {
        const float *vals = rep < 2 ? v : w;
        psi_msg *m = new_request(keys, vals, n), *got;
        const uint8_t *buf = m->on_free_arg;

        assert_int_equal(psi_chain_encode(snd, SRV, m), 0);
        if (n) assert_memory_equal(buf, keys, n * 8); /* borrowed: left alone */
        if (n) assert_memory_equal(buf + n * 8, vals, n * 4);
        assert_int_equal(has_filter(m, PSI_FILTER_KEYCACHE), kc && n >= KC_MIN_KEYS);
        assert_false(has_filter(m, PSI_FILTER_FP16) || has_filter(m, PSI_FILTER_INT8));
        keys_len[rep] = m->hdr.seg_len[PSI_SEG_KEYS];
        frame[rep] = psi_frame_size(m);
        got = wire(m);
        psi_msg_free(m);
        if (psi_chain_decode(rcv, WRK, got) != 0)
            fail_msg("%s, %zu keys, push %d: decode failed", spec, n, rep);
        check_request(got, keys, vals, n);
        psi_msg_free(got);
    }
    if (kc && n >= KC_MIN_KEYS) {
        /* the signature, tagged raw by zstd when the values paid */
        assert_true(keys_len[1] <= KC_SIG_LEN + 1 && keys_len[2] <= KC_SIG_LEN + 1);
        assert_true(keys_len[1] < keys_len[0]);
        assert_true(frame[1] < frame[0]);
    } else {
        assert_int_equal(keys_len[1], keys_len[0]);
    }
    /* the answer: values only, from the receiver's chain to the sender's */
    psi_msg *a = new_response(v, n), *got;
    assert_int_equal(psi_chain_encode(rcv, WRK, a), 0);
    assert_false(has_filter(a, PSI_FILTER_KEYCACHE));
    got = wire(a);
    psi_msg_free(a);
    assert_int_equal(psi_chain_decode(snd, SRV, got), 0);
    assert_no_filters(got);
    assert_int_equal(got->hdr.key_count, 0);
    assert_int_equal(got->hdr.seg_len[PSI_SEG_KEYS], 0);
    assert_int_equal(got->hdr.seg_len[PSI_SEG_VALS], n * 4);
    if (n) assert_memory_equal(got->seg[PSI_SEG_VALS], v, n * 4);
    psi_msg_free(got);
    psi_chain_free(snd);
    psi_chain_free(rcv);
}

static void roundtrip_all(const uint64_t *keys, size_t n, psi_rng *r)
{
    float *v = malloc((n + 1) * 4), *w = malloc((n + 1) * 4);

    assert_true(v && w);
    for (int smooth = 0; smooth < 2; smooth++) {
        gen_vals(r, smooth, n, v);
        gen_vals(r, smooth, n, w);
        for (size_t c = 0; c < PSI_ARRAY_LEN(lossless); c++) roundtrip(lossless[c], keys, n, v, w);
    }
    free(v);
    free(w);
}

static void test_lossless_adversarial(void **state)
{
    static const uint64_t k0[] = {0}, kmax[] = {UINT64_MAX}, two[] = {5, 9};
    static const uint64_t ends[] = {0, UINT64_MAX}, three[] = {0, 1, 2};
    static const uint64_t ends3[] = {0, 1, UINT64_MAX};
    static const uint64_t top3[] = {UINT64_MAX - 2, UINT64_MAX - 1, UINT64_MAX};
    static const uint64_t gaps[] = {0, 1, 1ull << 32, 1ull << 63, UINT64_MAX - 1, UINT64_MAX};
    const size_t big = 100000;
    uint64_t *k = malloc(big * 8), pow2[64];
    psi_rng r;

    assert_non_null(k);
    psi_rng_seed(&r, 1);
    roundtrip_all(NULL, 0, &r);
    roundtrip_all(k0, 1, &r);
    roundtrip_all(kmax, 1, &r);
    roundtrip_all(two, 2, &r);
    roundtrip_all(ends, 2, &r);
    roundtrip_all(three, 3, &r);
    roundtrip_all(ends3, 3, &r);
    roundtrip_all(top3, 3, &r);
    roundtrip_all(gaps, PSI_ARRAY_LEN(gaps), &r);
    for (int i = 0; i < 64; i++) pow2[i] = 1ull << i;
    roundtrip_all(pow2, 64, &r);
    for (size_t i = 0; i < 10000; i++) k[i] = i; /* dense run from 0 */
    roundtrip_all(k, 10000, &r);
    for (size_t i = 0; i < 10000; i++) k[i] = UINT64_MAX - 9999 + i; /* up to 2^64-1 */
    roundtrip_all(k, 10000, &r);
    for (int kind = 0; kind < K_NKINDS; kind++) { /* 10^5 keys */
        size_t n = gen_keys(&r, kind, big, k);
        roundtrip_all(k, n, &r);
    }
    free(k);
}

static void test_lossless_random(void **state)
{
    uint64_t *k = malloc(5000 * 8);
    psi_rng r;

    assert_non_null(k);
    psi_rng_seed(&r, 2);
    for (int i = 0; i < 60; i++) {
        size_t n = gen_keys(&r, i % K_NKINDS, 1 + psi_rng_next(&r) % 5000, k);
        roundtrip_all(k, n, &r);
    }
    free(k);
}

/* The sizes a realistic repeated sparse push takes (printed, for the record). */
static void test_lossless_sizes(void **state)
{
    const size_t n = 10000;
    uint64_t *k = malloc(n * 8);
    float *v = malloc(n * 4);
    psi_rng r;

    assert_true(k && v);
    psi_rng_seed(&r, 3);
    for (int kind = 0; kind < K_NKINDS; kind++) {
        size_t m = gen_keys(&r, kind, n, k);
        gen_vals(&r, 1, m, v);
        for (size_t c = 1; c < PSI_ARRAY_LEN(lossless) - 1; c++) {
            psi_chain *s = chain(lossless[c]);
            size_t sz[2];
            for (int rep = 0; rep < 2; rep++) {
                psi_msg *msg = new_request(k, v, m);
                assert_int_equal(psi_chain_encode(s, SRV, msg), 0);
                sz[rep] = psi_frame_size(msg);
                psi_msg_free(msg);
            }
            printf("sizes %-7s keys, %-13s: raw %zu, first push %zu, repeated %zu bytes\n",
                   kind_name[kind], lossless[c], PSI_HDR_SIZE + 12 * m + 8, sz[0], sz[1]);
            psi_chain_free(s);
        }
    }
    free(k);
    free(v);
}

/* ---- key caching ------------------------------------------------------------------ */

/* Encode a push of keys (values 1..n) for SRV on `snd`; the encoded message. */
static psi_msg *kc_push(psi_chain *snd, const uint64_t *keys, size_t n)
{
    float *v = malloc(n * 4);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = (float)i + 1;
    psi_msg *m = new_request(keys, v, n);
    free(v);
    assert_int_equal(psi_chain_encode(snd, SRV, m), 0);
    return m;
}

/* The format byte of an encoded key list of a keycache-only chain. */
static int kc_format(const psi_msg *m)
{
    assert_true(has_filter(m, PSI_FILTER_KEYCACHE));
    return seg_u8(m, PSI_SEG_KEYS)[0];
}

/* Decode on `rcv` from `peer`; 0 with exactly the keys, or a MISS that left
 * the signature in place (no keys). */
static int kc_deliver(psi_chain *rcv, uint32_t peer, const psi_msg *m, const uint64_t *keys,
                      size_t n)
{
    psi_msg *got = wire(m);
    int rc = psi_chain_decode(rcv, peer, got);

    if (rc == 0) {
        assert_int_equal(got->hdr.key_count, n);
        assert_int_equal(got->hdr.seg_len[PSI_SEG_KEYS], n * 8);
        assert_memory_equal(got->seg[PSI_SEG_KEYS], keys, n * 8);
        assert_no_filters(got);
    } else {
        assert_int_equal(rc, PSI_ERR_KEYCACHE_MISS);
        assert_int_equal(got->hdr.seg_len[PSI_SEG_KEYS], KC_SIG_LEN); /* no keys */
        assert_true(has_filter(got, PSI_FILTER_KEYCACHE));
    }
    psi_msg_free(got);
    return rc;
}

static void test_keycache_miss_after_restart(void **state)
{
    static const uint64_t keys[] = {3, 10, 11, 12, 1000, 1ull << 50};
    const size_t n = PSI_ARRAY_LEN(keys);
    psi_chain *snd = chain("keycache"), *rcv = chain("keycache");
    psi_msg *m;

    m = kc_push(snd, keys, n);
    assert_int_equal(kc_format(m), KC_FULL);
    assert_int_equal(kc_deliver(rcv, WRK, m, keys, n), 0);
    psi_msg_free(m);
    m = kc_push(snd, keys, n);
    assert_int_equal(kc_format(m), KC_SIG);
    assert_int_equal(m->hdr.seg_len[PSI_SEG_KEYS], KC_SIG_LEN);
    assert_int_equal(kc_deliver(rcv, WRK, m, keys, n), 0);
    /* the server restarts: its fresh chain does not hold the list */
    psi_chain_free(rcv);
    rcv = chain("keycache");
    assert_int_equal(kc_deliver(rcv, WRK, m, keys, n), PSI_ERR_KEYCACHE_MISS);
    assert_int_equal(kc_deliver(rcv, WRK, m, keys, n), PSI_ERR_KEYCACHE_MISS); /* still */
    psi_msg_free(m);
    /* the worker forgets what it sent there and resends the list whole */
    psi_chain_forget_peer(snd, SRV);
    m = kc_push(snd, keys, n);
    assert_int_equal(kc_format(m), KC_FULL);
    assert_int_equal(kc_deliver(rcv, WRK, m, keys, n), 0);
    psi_msg_free(m);
    m = kc_push(snd, keys, n);
    assert_int_equal(kc_format(m), KC_SIG);
    assert_int_equal(kc_deliver(rcv, WRK, m, keys, n), 0);
    psi_msg_free(m);
    /* a node without a chain cannot resolve a signature, nor take a full list */
    m = kc_push(snd, keys, n);
    psi_msg *got = wire(m);
    assert_int_equal(psi_chain_decode(NULL, WRK, got), PS_ERR_PROTO);
    psi_msg_free(got);
    psi_msg_free(m);
    psi_chain_forget_peer(snd, SRV);
    m = kc_push(snd, keys, n);
    assert_int_equal(kc_format(m), KC_FULL);
    got = wire(m);
    assert_int_equal(psi_chain_decode(NULL, WRK, got), PS_ERR_PROTO);
    psi_msg_free(got);
    psi_msg_free(m);
    /* forgetting unknown or out-of-range peers is harmless */
    psi_chain_forget_peer(snd, 4095);
    psi_chain_forget_peer(snd, 100000);
    psi_chain_forget_peer(NULL, 1);
    psi_chain_free(snd);
    psi_chain_free(rcv);
}

static void test_keycache_per_peer(void **state)
{
    static const uint64_t keys[] = {1, 2, 3, 4, 5, 6, 7, 8};
    const size_t n = PSI_ARRAY_LEN(keys);
    psi_chain *a = chain("keycache"), *rcv = chain("keycache");
    psi_msg *m;

    m = kc_push(a, keys, n);
    assert_int_equal(kc_deliver(rcv, 1, m, keys, n), 0); /* from peer 1 */
    psi_msg_free(m);
    m = kc_push(a, keys, n);
    assert_int_equal(kc_format(m), KC_SIG);
    assert_int_equal(kc_deliver(rcv, 1, m, keys, n), 0);
    /* the same signature claimed by peer 2 is not resolved with peer 1's list */
    assert_int_equal(kc_deliver(rcv, 2, m, keys, n), PSI_ERR_KEYCACHE_MISS);
    assert_int_equal(kc_deliver(rcv, 0, m, keys, n), PSI_ERR_KEYCACHE_MISS);
    /* a peer id past the node table is refused, not indexed */
    psi_msg *got = wire(m);
    assert_int_not_equal(psi_chain_decode(rcv, 100000, got), 0);
    psi_msg_free(got);
    psi_msg_free(m);
    /* forgetting peer 2 on the receiver leaves peer 1's lists */
    psi_chain_forget_peer(rcv, 2);
    m = kc_push(a, keys, n);
    assert_int_equal(kc_deliver(rcv, 1, m, keys, n), 0);
    psi_msg_free(m);
    /* the sender keeps its state per destination too */
    float v[8] = {0};
    m = new_request(keys, v, n);
    assert_int_equal(psi_chain_encode(a, SRV + 1, m), 0);
    assert_int_equal(kc_format(m), KC_FULL);
    psi_msg_free(m);
    psi_chain_free(a);
    psi_chain_free(rcv);
}

/* List i of the eviction tests: 5 keys of its own. */
static void list_i(uint64_t i, uint64_t k[5])
{
    for (int j = 0; j < 5; j++) k[j] = i * 1000 + (uint64_t)j * 7;
}

static void test_keycache_eviction(void **state)
{
    psi_chain *snd = chain("keycache"), *rcv = chain("keycache");
    uint64_t k[5];
    psi_msg *m;

    /* In step: 65 lists; both ends drop the oldest (list 0) together. */
    for (uint64_t i = 0; i <= KC_KEEP; i++) {
        list_i(i, k);
        m = kc_push(snd, k, 5);
        assert_int_equal(kc_format(m), KC_FULL);
        assert_int_equal(kc_deliver(rcv, WRK, m, k, 5), 0);
        psi_msg_free(m);
    }
    for (uint64_t i = 1; i <= KC_KEEP; i++) { /* the last 64 still travel as signatures */
        list_i(i, k);
        m = kc_push(snd, k, 5);
        assert_int_equal(kc_format(m), KC_SIG);
        assert_int_equal(kc_deliver(rcv, WRK, m, k, 5), 0);
        psi_msg_free(m);
    }
    list_i(0, k);
    m = kc_push(snd, k, 5); /* evicted by the sender: sent whole again */
    assert_int_equal(kc_format(m), KC_FULL);
    assert_int_equal(kc_deliver(rcv, WRK, m, k, 5), 0);
    psi_msg_free(m);
    m = kc_push(snd, k, 5);
    assert_int_equal(kc_format(m), KC_SIG);
    assert_int_equal(kc_deliver(rcv, WRK, m, k, 5), 0);
    psi_msg_free(m);
    psi_chain_free(snd);
    psi_chain_free(rcv);

    /* Out of step: the receiver holds lists 0..63 (0 the oldest); the sender
     * forgets them (as after a miss), sends list 0 whole (the receiver already
     * holds it, so it stays the oldest there), then a new list 100, which
     * evicts list 0 on the receiver only.  The sender still believes list 0
     * known: its signature must miss, never resolve to other keys, and the
     * resend after forget_peer must work. */
    snd = chain("keycache");
    rcv = chain("keycache");
    for (uint64_t i = 0; i < KC_KEEP; i++) {
        list_i(i, k);
        m = kc_push(snd, k, 5);
        assert_int_equal(kc_deliver(rcv, WRK, m, k, 5), 0);
        psi_msg_free(m);
    }
    psi_chain_forget_peer(snd, SRV);
    list_i(0, k);
    m = kc_push(snd, k, 5);
    assert_int_equal(kc_format(m), KC_FULL);
    assert_int_equal(kc_deliver(rcv, WRK, m, k, 5), 0);
    psi_msg_free(m);
    list_i(100, k);
    m = kc_push(snd, k, 5);
    assert_int_equal(kc_format(m), KC_FULL);
    assert_int_equal(kc_deliver(rcv, WRK, m, k, 5), 0);
    psi_msg_free(m);
    list_i(0, k);
    m = kc_push(snd, k, 5);
    assert_int_equal(kc_format(m), KC_SIG); /* the sender thinks it is known */
    int rc = kc_deliver(rcv, WRK, m, k, 5);
    printf("keycache out of step after eviction: %s\n",
           rc ? "MISS (resent whole)" : "resolved");
    assert_int_equal(rc, PSI_ERR_KEYCACHE_MISS);
    psi_msg_free(m);
    psi_chain_forget_peer(snd, SRV);
    m = kc_push(snd, k, 5);
    assert_int_equal(kc_format(m), KC_FULL);
    assert_int_equal(kc_deliver(rcv, WRK, m, k, 5), 0);
    psi_msg_free(m);
    psi_chain_free(snd);
    psi_chain_free(rcv);
}

/* A long random history over 100 lists (more than either end keeps) with
 * receiver restarts, sender forgets and lost messages: every delivery gives
 * exactly the keys sent or a miss, and the worker's reaction to a miss
 * (forget the peer, resend) always succeeds. */
static void test_keycache_random_history(void **state)
{
    enum { NLISTS = 100, STEPS = 4000 };
    uint64_t *lists[NLISTS];
    size_t lens[NLISTS];
    psi_chain *snd = chain("keycache,zstd"), *rcv = chain("keycache,zstd");
    long miss = 0, ok = 0, restarts = 0, forgets = 0, lost = 0;
    psi_rng r;

    psi_rng_seed(&r, 4);
    for (int i = 0; i < NLISTS; i++) {
        lens[i] = 1 + psi_rng_next(&r) % 60;
        lists[i] = malloc(lens[i] * 8);
        assert_non_null(lists[i]);
        lens[i] = gen_keys(&r, i % K_NKINDS, lens[i], lists[i]);
    }
    for (int step = 0; step < STEPS; step++) {
        uint64_t x = psi_rng_next(&r) % 1000;
        /* mostly recent lists, sometimes any */
        int i = (int)(x < 700 ? psi_rng_next(&r) % 40 : psi_rng_next(&r) % NLISTS);
        if (x < 5) {
            psi_chain_free(rcv);
            rcv = chain("keycache,zstd");
            restarts++;
            continue;
        }
        if (x < 10) {
            psi_chain_forget_peer(snd, SRV);
            forgets++;
            continue;
        }
        psi_msg *m = kc_push(snd, lists[i], lens[i]);
        if (x < 25) { /* lost on the way */
            psi_msg_free(m);
            lost++;
            continue;
        }
        psi_msg *got = wire(m);
        int rc = psi_chain_decode(rcv, WRK, got);
        psi_msg_free(m);
        if (rc == PSI_ERR_KEYCACHE_MISS) {
            miss++;
            psi_msg_free(got);
            psi_chain_forget_peer(snd, SRV);
            m = kc_push(snd, lists[i], lens[i]);
            got = wire(m);
            psi_msg_free(m);
            rc = psi_chain_decode(rcv, WRK, got);
        }
        assert_int_equal(rc, 0);
        assert_int_equal(got->hdr.seg_len[PSI_SEG_KEYS], lens[i] * 8);
        assert_memory_equal(got->seg[PSI_SEG_KEYS], lists[i], lens[i] * 8);
        psi_msg_free(got);
        ok++;
    }
    printf("keycache history: %ld delivered, %ld misses, %ld restarts, %ld forgets, %ld lost\n",
           ok, miss, restarts, forgets, lost);
    assert_true(miss > 0);
    for (int i = 0; i < NLISTS; i++) free(lists[i]);
    psi_chain_free(snd);
    psi_chain_free(rcv);
}

/* ---- lossy ------------------------------------------------------------------------ */

/* Encode on `spec` (a request of keys+v, or an answer of v), decode on a
 * second chain; the decoded values into out. */
static void lossy_trip(const char *spec, int response, const uint64_t *keys, const float *v,
                       size_t n, float *out, uint8_t quant_id)
{
    psi_chain *s = chain(spec), *rcv = chain(spec);
    psi_msg *m = response ? new_response(v, n) : new_request(keys, v, n), *got;

    assert_int_equal(psi_chain_encode(s, response ? WRK : SRV, m), 0);
    assert_int_equal(has_filter(m, quant_id), n > 0);
    if (!strchr(spec, ',') && n) /* quantization alone: id, pad, n halves; or id, scale, n q */
        assert_int_equal(m->hdr.seg_len[PSI_SEG_VALS],
                         quant_id == PSI_FILTER_FP16 ? 2 + 2 * n : 1 + 4 + n);
    got = wire(m);
    psi_msg_free(m);
    assert_int_equal(psi_chain_decode(rcv, response ? SRV : WRK, got), 0);
    assert_no_filters(got);
    assert_int_equal(got->hdr.key_count, response ? 0 : n);
    if (!response && n) assert_memory_equal(got->seg[PSI_SEG_KEYS], keys, n * 8);
    assert_int_equal(got->hdr.seg_len[PSI_SEG_VALS], n * 4);
    if (n) memcpy(out, got->seg[PSI_SEG_VALS], n * 4);
    psi_msg_free(got);
    psi_chain_free(s);
    psi_chain_free(rcv);
}

static void test_fp16_bound(void **state)
{
    static const char *const specs[] = {"fp16", "fp16,zstd", "fp16,keycache,zstd", "fp16,keycache"};
    const size_t n = 4096;
    uint64_t *k = malloc(n * 8);
    float *v = malloc(n * 4), *d = malloc(n * 4);
    double worst = 0;
    psi_rng r;

    assert_true(k && v && d);
    psi_rng_seed(&r, 5);
    for (size_t s = 0; s < PSI_ARRAY_LEN(specs); s++)
        for (int response = 0; response < 2; response++) {
            size_t m = gen_keys(&r, K_CLUSTER, n, k);
            for (size_t i = 0; i < m; i++) v[i] = rand_mag(&r, -14, 14); /* normal range */
            v[0] = 65504.0f;
            v[1] = -0x1p-14f;
            v[2] = 1.0f;
            lossy_trip(specs[s], response, k, v, m, d, PSI_FILTER_FP16);
            for (size_t i = 0; i < m; i++) {
                double err = fabs((double)d[i] - (double)v[i]);
                double rel = err / fabs((double)v[i]);
                if (rel > PSI_FP16_REL_ERR_STOCH)
                    fail_msg("%s: fp16 of %a decoded as %a, relative error %g > 2^-10",
                             specs[s], (double)v[i], (double)d[i], rel);
                assert_true(err <= psi_codec_fp16_max_err(v[i], 1));
                worst = PSI_MAX(worst, rel);
            }
        }
    printf("fp16: worst relative error %.3g (bound 2^-10 = %.3g)\n", worst, 0x1p-10);
    free(k);
    free(v);
    free(d);
}

static void test_int8_bound(void **state)
{
    static const char *const specs[] = {"int8", "int8,zstd", "int8,keycache,zstd"};
    static const float ranges[] = {1e-30f, 1e-3f, 1.0f, 3e5f, 1e30f};
    const size_t n = 3000;
    uint64_t *k = malloc(n * 8);
    float *v = malloc(n * 4), *d = malloc(n * 4);
    psi_rng r;

    assert_true(k && v && d);
    psi_rng_seed(&r, 6);
    for (size_t s = 0; s < PSI_ARRAY_LEN(specs); s++)
        for (size_t g = 0; g < PSI_ARRAY_LEN(ranges); g++)
            for (int response = 0; response < 2; response++) {
                size_t m = gen_keys(&r, K_SPARSE, n, k);
                float mx = 0;
                double worst = 0;
                for (size_t i = 0; i < m; i++) {
                    v[i] = (float)((psi_rng_double(&r) * 2 - 1) * ranges[g]);
                    mx = PSI_MAX(mx, fabsf(v[i]));
                }
                lossy_trip(specs[s], response, k, v, m, d, PSI_FILTER_INT8);
                for (size_t i = 0; i < m; i++) {
                    double err = fabs((double)d[i] - (double)v[i]);
                    /* max|v|/127 (the scale is rounded up by at most an ulp)
                     * plus the f32 rounding of q * scale */
                    double bound = (double)mx / 127 * (1 + 0x1p-20) + 0x1p-23 * fabs((double)v[i]);
                    if (err > bound)
                        fail_msg("%s: int8 of %a decoded as %a, error %g > %g", specs[s],
                                 (double)v[i], (double)d[i], err, bound);
                    worst = PSI_MAX(worst, err / ((double)mx / 127));
                }
                if (s == 0 && response == 0)
                    printf("int8 range %g: worst error %.3f * max|v|/127\n", (double)ranges[g],
                           worst);
            }
    /* all zeros stay zeros */
    memset(v, 0, n * 4);
    lossy_trip("int8", 1, NULL, v, 100, d, PSI_FILTER_INT8);
    for (size_t i = 0; i < 100; i++) assert_true(d[i] == 0);
    free(k);
    free(v);
    free(d);
}

/* Quantization leaves messages without values alone (pulls, empty answers). */
static void test_quant_skips_empty_vals(void **state)
{
    static const char *const specs[] = {"fp16", "int8", "int8,keycache,zstd", "fp16,zstd"};
    static const uint64_t keys[] = {1, 2, 3, 4, 5, 6};

    for (size_t s = 0; s < PSI_ARRAY_LEN(specs); s++) {
        psi_chain *snd = chain(specs[s]), *rcv = chain(specs[s]);
        psi_msg *m = new_request(keys, NULL, 6), *got; /* a pull */
        assert_int_equal(psi_chain_encode(snd, SRV, m), 0);
        assert_false(has_filter(m, PSI_FILTER_FP16) || has_filter(m, PSI_FILTER_INT8));
        assert_int_equal(m->hdr.seg_len[PSI_SEG_VALS], 0);
        got = wire(m);
        psi_msg_free(m);
        assert_int_equal(psi_chain_decode(rcv, WRK, got), 0);
        check_request(got, keys, NULL, 6);
        psi_msg_free(got);
        m = new_response(NULL, 0); /* an answer without values */
        assert_int_equal(psi_chain_encode(rcv, WRK, m), 0);
        assert_no_filters(m);
        got = wire(m);
        psi_msg_free(m);
        assert_int_equal(psi_chain_decode(snd, SRV, got), 0);
        assert_int_equal(got->hdr.seg_len[PSI_SEG_VALS], 0);
        psi_msg_free(got);
        psi_chain_free(snd);
        psi_chain_free(rcv);
    }
}

/* fp16 on the wire: the id byte, a pad byte (the id again) so the halves are
 * 2-byte aligned in a malloc'ed block, then the halves little-endian
 * (codec.h: the caller puts them on the wire with psi_put_u16). */
static void test_fp16_wire_format(void **state)
{
    static const float v[] = {1.0f, -2.0f, 0.5f, 65504.0f, 0.0f, 3.0f, -0x1p-24f};
    static const uint16_t h[] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0000, 0x4200, 0x8001};
    psi_chain *c = chain("fp16");
    psi_msg *m = new_response(v, PSI_ARRAY_LEN(v));

    assert_int_equal(psi_chain_encode(c, WRK, m), 0);
    assert_int_equal(m->hdr.seg_len[PSI_SEG_VALS], 2 + 2 * PSI_ARRAY_LEN(v));
    assert_int_equal(seg_u8(m, PSI_SEG_VALS)[0], PSI_FILTER_FP16);
    assert_int_equal(seg_u8(m, PSI_SEG_VALS)[1], PSI_FILTER_FP16);
    for (size_t i = 0; i < PSI_ARRAY_LEN(v); i++)
        assert_int_equal(psi_get_u16(seg_u8(m, PSI_SEG_VALS) + 2 + 2 * i), h[i]);
    psi_msg_free(m);
    psi_chain_free(c);
}

/* ---- corruption --------------------------------------------------------------------- */

/* What decode may do with a corrupt segment: fail (PS_ERR_PROTO, or a miss for
 * a keycached list), or succeed with exactly what was sent, or -- only where
 * the corrupt bytes carry no integrity check -- succeed with other values.
 * Keys are protected by keycache (signature checked) and by zstd's compressed
 * form (content checksum); values by zstd's compressed form.  Raw-tagged
 * segments, raw varint key lists and quantized values are not, and a decoded
 * value segment whose length differs from what was sent is refused by the kv
 * layer's length check (server.c check_request, worker.c do_scatter). */
typedef struct cstats {
    long variants, proto, miss, same, unprotected_keys, unprotected_vals, other_len;
} cstats;

static int keys_protected(const psi_msg *enc)
{
    const uint8_t *k = enc->seg[PSI_SEG_KEYS];
    size_t len = enc->hdr.seg_len[PSI_SEG_KEYS];
    if (has_filter(enc, PSI_FILTER_KEYCACHE)) return 1;
    return has_filter(enc, PSI_FILTER_ZSTD) && len >= 2 && k[0] == Z_KEYS &&
           k[1] == PSI_CODEC_KEYS_ZSTD;
}

static int vals_protected(const psi_msg *enc)
{
    const uint8_t *v = enc->seg[PSI_SEG_VALS];
    return has_filter(enc, PSI_FILTER_ZSTD) && enc->hdr.seg_len[PSI_SEG_VALS] >= 1 &&
           v[0] == Z_BYTES;
}

/* Decode a copy of `enc` whose segment `seg` is its first `len` bytes (in a
 * block of exactly that size, so ASan sees any over-read) with byte `pos`
 * xor `mask` (pos < 0: none); the other segments are borrowed from `enc`.
 * Returns the decoded message when asked (`keep`), else checks it against
 * `ref` (the decode of `enc` itself) and frees it. */
static psi_msg *variant(const char *what, psi_chain *rcv, uint32_t peer, const psi_msg *enc,
                        const psi_msg *ref, int seg, size_t len, long pos, uint8_t mask,
                        cstats *st, int keep)
{
    psi_msg *v = psi_msg_new(PSI_MSG_DATA);
    uint8_t *b = len ? malloc(len) : NULL;

    assert_non_null(v);
    assert_true(b || !len);
    v->hdr = enc->hdr;
    for (int i = 0; i < PSI_NSEG; i++)
        if (i != seg) {
            v->seg[i] = enc->seg[i];
            v->borrowed |= 1u << i;
        }
    if (len) memcpy(b, enc->seg[seg], len);
    if (pos >= 0) b[pos] ^= mask;
    v->seg[seg] = b;
    v->hdr.seg_len[seg] = len;
    int rc = psi_chain_decode(rcv, peer, v);
    if (keep) {
        if (rc != 0) fail_msg("%s: the intact message does not decode (%d)", what, rc);
        return v;
    }
    st->variants++;
    if (rc == PS_ERR_PROTO) {
        st->proto++;
    } else if (rc == PSI_ERR_KEYCACHE_MISS) {
        if (!has_filter(enc, PSI_FILTER_KEYCACHE))
            fail_msg("%s: seg %d len %zu pos %ld ^%02x: a miss without keycache", what, seg, len,
                     pos, mask);
        st->miss++;
    } else if (rc != 0) {
        fail_msg("%s: seg %d len %zu pos %ld ^%02x: decode returned %d", what, seg, len, pos,
                 mask, rc);
    } else {
        size_t nk = v->hdr.key_count;
        assert_no_filters(v);
        assert_int_equal(v->hdr.seg_len[PSI_SEG_KEYS], nk * 8);
        int keys_same = !nk || !memcmp(v->seg[PSI_SEG_KEYS], ref->seg[PSI_SEG_KEYS], nk * 8);
        size_t vl = v->hdr.seg_len[PSI_SEG_VALS], rl = ref->hdr.seg_len[PSI_SEG_VALS];
        int vals_same =
            vl == rl && (!vl || !memcmp(v->seg[PSI_SEG_VALS], ref->seg[PSI_SEG_VALS], vl));
        if (!keys_same && keys_protected(enc))
            fail_msg("%s: seg %d len %zu pos %ld ^%02x: decoded keys that were not sent", what,
                     seg, len, pos, mask);
        if (!vals_same && vl == rl && vals_protected(enc))
            fail_msg("%s: seg %d len %zu pos %ld ^%02x: decoded values that were not sent",
                     what, seg, len, pos, mask);
        if (keys_same && vals_same) st->same++;
        else if (!keys_same) st->unprotected_keys++;
        else if (vl == rl) st->unprotected_vals++;
        else st->other_len++;
    }
    psi_msg_free(v);
    return NULL;
}

/* Every flip (two masks a byte; or `sample` random positions and masks) and
 * every truncation (or `sample / 10` of them) of both segments of `enc`. */
static void corrupt_msg(const char *what, psi_chain *rcv, uint32_t peer, const psi_msg *enc,
                        psi_rng *r, size_t sample, cstats *st)
{
    psi_msg *ref = variant(what, rcv, peer, enc, NULL, PSI_SEG_KEYS,
                           enc->hdr.seg_len[PSI_SEG_KEYS], -1, 0, st, 1);
    for (int seg = PSI_SEG_KEYS; seg <= PSI_SEG_VALS; seg++) {
        size_t len = enc->hdr.seg_len[seg];
        if (!len) continue;
        if (len <= sample) {
            for (size_t p = 0; p < len; p++) {
                variant(what, rcv, peer, enc, ref, seg, len, (long)p, 0xff, st, 0);
                variant(what, rcv, peer, enc, ref, seg, len, (long)p, (uint8_t)(1u << (p % 8)),
                        st, 0);
            }
            for (size_t l = 0; l < len; l++)
                variant(what, rcv, peer, enc, ref, seg, l, -1, 0, st, 0);
        } else {
            for (size_t i = 0; i < sample; i++) {
                size_t p = i < 40 ? i : i < 80 ? len - 1 - (i - 40) : psi_rng_next(r) % len;
                uint8_t mask = (uint8_t)(1 + psi_rng_next(r) % 255);
                variant(what, rcv, peer, enc, ref, seg, len, (long)p, mask, st, 0);
            }
            for (size_t i = 0; i < sample / 10; i++) {
                size_t l = i < 20 ? i : i < 40 ? len - 1 - (i - 20) : psi_rng_next(r) % len;
                variant(what, rcv, peer, enc, ref, seg, l, -1, 0, st, 0);
            }
        }
    }
    psi_msg_free(ref);
}

static const char *const corrupt_specs[] = {
    "",          "keycache",           "zstd",          "keycache,zstd", "fp16",
    "int8",      "fp16,zstd",          "int8,keycache", "int8,keycache,zstd",
    "fp16,keycache,zstd",
};

/* For one chain: a push (full list), the same push again (a signature, on a
 * keycache chain) and an answer, each corrupted every way. */
static void corrupt_chain(const char *spec, const uint64_t *keys, const float *vals, size_t n,
                          psi_rng *r, size_t sample, const char *label)
{
    psi_chain *snd = chain(spec), *rcv = chain(spec);
    cstats st = {0};
    char what[160];
    int kc = strstr(spec, "keycache") != NULL;

    for (int rep = 0; rep < 2 + kc; rep++) {
        int response = rep == 1 + kc;
        psi_msg *m = response ? new_response(vals, n) : new_request(keys, vals, n);
        assert_int_equal(psi_chain_encode(response ? rcv : snd, response ? WRK : SRV, m), 0);
        snprintf(what, sizeof(what), "\"%s\" %s %s", spec, label,
                 response ? "answer" : rep ? "push (signature)" : "push (full list)");
        psi_msg *enc = wire(m);
        psi_msg_free(m);
        corrupt_msg(what, response ? snd : rcv, response ? SRV : WRK, enc, r, sample, &st);
        psi_msg_free(enc);
    }
    printf("corrupt %-20s %-22s %6ld variants: %6ld refused, %5ld misses, %4ld intact, "
           "unprotected %4ld keys %5ld values, %5ld wrong length\n",
           spec[0] ? spec : "(none)", label, st.variants, st.proto, st.miss, st.same,
           st.unprotected_keys, st.unprotected_vals, st.other_len);
    psi_chain_free(snd);
    psi_chain_free(rcv);
}

static void test_corrupt_small(void **state)
{
    static const int kinds[] = {K_CLUSTER, K_RANDOM, K_SPARSE};
    const size_t n = 100;
    uint64_t k[100];
    float v[100];
    char label[64];
    psi_rng r;

    psi_rng_seed(&r, 7);
    for (size_t c = 0; c < PSI_ARRAY_LEN(corrupt_specs); c++)
        for (size_t kind = 0; kind < PSI_ARRAY_LEN(kinds); kind++)
            for (int smooth = 0; smooth < 2; smooth++) {
                size_t m = gen_keys(&r, kinds[kind], n, k);
                gen_vals(&r, smooth, m, v);
                snprintf(label, sizeof(label), "%s/%s", kind_name[kinds[kind]],
                         smooth ? "smooth" : "random");
                corrupt_chain(corrupt_specs[c], k, v, m, &r, SIZE_MAX, label);
            }
}

/* Tiny messages: 1 to 3 keys, every flip and truncation. */
static void test_corrupt_tiny(void **state)
{
    static const uint64_t k[] = {0, 1, UINT64_MAX};
    static const float v[] = {1.5f, -2.0f, 3.25f};
    char label[32];
    psi_rng r;

    psi_rng_seed(&r, 8);
    for (size_t c = 0; c < PSI_ARRAY_LEN(corrupt_specs); c++)
        for (size_t n = 1; n <= 3; n++) {
            snprintf(label, sizeof(label), "%zu keys", n);
            corrupt_chain(corrupt_specs[c], n == 3 ? k : k + 3 - n, v, n, &r, SIZE_MAX, label);
        }
}

/* 20000 keys: a sample of 2000 flips and 200 truncations per segment. */
static void test_corrupt_big(void **state)
{
    static const char *const specs[] = {"zstd", "keycache,zstd", "int8,keycache,zstd", "fp16,zstd"};
    const size_t n = 20000;
    uint64_t *k = malloc(n * 8);
    float *v = malloc(n * 4);
    psi_rng r;

    assert_true(k && v);
    psi_rng_seed(&r, 9);
    for (size_t s = 0; s < PSI_ARRAY_LEN(specs); s++) {
        size_t m = gen_keys(&r, K_CLUSTER, n, k);
        gen_vals(&r, 1, m, v);
        corrupt_chain(specs[s], k, v, m, &r, 2000, "20000 cluster/smooth");
    }
    free(k);
    free(v);
}

/* ---- ids and chains ------------------------------------------------------------------ */

static void test_unknown_filter_id(void **state)
{
    static const uint64_t keys[] = {10, 20, 30, 40};
    static const float v[] = {1, 2, 3, 4};
    static const uint8_t ids[] = {PSI_FILTER_MAX_ID, 6, 9, 0x80, 0xff};
    psi_chain *snd = chain("keycache,zstd"), *rcv = chain("keycache,zstd");

    for (size_t i = 0; i < PSI_ARRAY_LEN(ids); i++)
        for (int slot = 0; slot < PSI_MAX_FILTERS; slot++) {
            /* alone, on a raw message */
            psi_msg *m = new_request(keys, v, 4);
            m->hdr.filters[slot] = ids[i];
            psi_msg *got = wire(m);
            assert_int_equal(psi_chain_decode(rcv, WRK, got), PS_ERR_PROTO);
            assert_int_equal(psi_chain_decode(NULL, WRK, got), PS_ERR_PROTO);
            psi_msg_free(got);
            psi_msg_free(m);
        }
    for (size_t i = 0; i < PSI_ARRAY_LEN(ids); i++) {
        /* after the valid ids of an encoded message (reversed first), and before them */
        psi_msg *m = new_request(keys, v, 4);
        assert_int_equal(psi_chain_encode(snd, SRV, m), 0);
        int used = 0;
        while (used < PSI_MAX_FILTERS && m->hdr.filters[used]) used++;
        assert_true(used >= 1 && used < PSI_MAX_FILTERS);
        psi_msg *got = wire(m);
        got->hdr.filters[used] = ids[i];
        assert_int_equal(psi_chain_decode(rcv, WRK, got), PS_ERR_PROTO);
        psi_msg_free(got);
        got = wire(m);
        memmove(got->hdr.filters + 1, got->hdr.filters, PSI_MAX_FILTERS - 1);
        got->hdr.filters[0] = ids[i];
        assert_int_equal(psi_chain_decode(rcv, WRK, got), PS_ERR_PROTO);
        psi_msg_free(got);
        psi_msg_free(m);
    }
    psi_chain_free(snd);
    psi_chain_free(rcv);
}

/* A node without a chain (c == NULL) still reverses zstd and quantization,
 * refuses keycache; an inactive chain changes nothing. */
static void test_chainless_receiver(void **state)
{
    static const uint64_t keys[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    static const float v[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    static const char *const specs[] = {"zstd", "fp16", "int8,zstd"};
    psi_chain *none = chain("");

    for (size_t s = 0; s < PSI_ARRAY_LEN(specs); s++) {
        psi_chain *snd = chain(specs[s]);
        psi_msg *m = new_request(keys, v, 12), *got;
        assert_int_equal(psi_chain_encode(snd, SRV, m), 0);
        assert_int_not_equal(m->hdr.filters[0], 0);
        got = wire(m);
        psi_msg_free(m);
        assert_int_equal(psi_chain_decode(NULL, WRK, got), 0);
        if (!strstr(specs[s], "int8")) {
            check_request(got, keys, v, 12); /* 1.0 is exact in fp16 */
        } else {
            assert_no_filters(got);
            assert_memory_equal(got->seg[PSI_SEG_KEYS], keys, sizeof(keys));
            assert_int_equal(got->hdr.seg_len[PSI_SEG_VALS], sizeof(v));
            for (int i = 0; i < 12; i++)
                assert_true(fabsf(((const float *)got->seg[PSI_SEG_VALS])[i] - 1.0f) <= 1.0f / 127);
        }
        psi_msg_free(got);
        psi_chain_free(snd);
    }
    psi_chain *kc = chain("keycache");
    psi_msg *m = new_request(keys, v, 12), *got;
    assert_int_equal(psi_chain_encode(kc, SRV, m), 0);
    got = wire(m);
    assert_int_equal(psi_chain_decode(NULL, WRK, got), PS_ERR_PROTO);
    psi_msg_free(got);
    got = wire(m);
    assert_int_equal(psi_chain_decode(none, WRK, got), 0); /* a chain: it has the state */
    check_request(got, keys, v, 12);
    psi_msg_free(got);
    psi_msg_free(m);
    /* inactive: encode is a no-op */
    m = new_request(keys, v, 12);
    void *k0 = m->seg[PSI_SEG_KEYS];
    assert_int_equal(psi_chain_encode(none, SRV, m), 0);
    assert_ptr_equal(m->seg[PSI_SEG_KEYS], k0);
    assert_no_filters(m);
    assert_int_equal(psi_chain_encode(NULL, SRV, m), 0);
    assert_no_filters(m);
    psi_msg_free(m);
    psi_chain_free(kc);
    psi_chain_free(none);
}

/* Incompressible values and keys: zstd leaves the message as it was (no id);
 * where only one segment pays, the other travels tagged raw. */
static void test_zstd_does_not_pay(void **state)
{
    const size_t n = 2000;
    uint64_t *k = malloc(n * 8);
    float *v = malloc(n * 4), *smooth = malloc(n * 4);
    psi_chain *snd = chain("zstd"), *rcv = chain("zstd");
    psi_rng r;

    assert_true(k && v && smooth);
    psi_rng_seed(&r, 10);
    /* 200 keys 2^55 to 2^56 + 2^55 apart: their delta varints take 8 or 9
     * bytes, more than the raw 8 (random keys pay a little: 64 - log2(n) bits) */
    size_t m = 200;
    for (size_t i = 0; i < m; i++) k[i] = i * (1ull << 56) + (psi_rng_next(&r) >> 9);
    gen_vals(&r, 0, n, v);
    gen_vals(&r, 1, n, smooth);

    /* neither pays: untouched, still borrowed, no id */
    psi_msg *msg = new_request(k, v, m), *got;
    void *k0 = msg->seg[PSI_SEG_KEYS], *v0 = msg->seg[PSI_SEG_VALS];
    assert_int_equal(psi_chain_encode(snd, SRV, msg), 0);
    assert_no_filters(msg);
    assert_ptr_equal(msg->seg[PSI_SEG_KEYS], k0);
    assert_ptr_equal(msg->seg[PSI_SEG_VALS], v0);
    assert_int_equal(msg->hdr.seg_len[PSI_SEG_KEYS], m * 8);
    assert_int_equal(msg->hdr.seg_len[PSI_SEG_VALS], m * 4);
    got = wire(msg);
    psi_msg_free(msg);
    assert_int_equal(psi_chain_decode(rcv, WRK, got), 0);
    check_request(got, k, v, m);
    psi_msg_free(got);

    /* values pay, keys do not: keys tagged raw */
    msg = new_request(k, smooth, m);
    assert_int_equal(psi_chain_encode(snd, SRV, msg), 0);
    assert_true(has_filter(msg, PSI_FILTER_ZSTD));
    assert_int_equal(seg_u8(msg, PSI_SEG_KEYS)[0], Z_RAW);
    assert_int_equal(msg->hdr.seg_len[PSI_SEG_KEYS], m * 8 + 1);
    assert_int_equal(seg_u8(msg, PSI_SEG_VALS)[0], Z_BYTES);
    got = wire(msg);
    psi_msg_free(msg);
    assert_int_equal(psi_chain_decode(rcv, WRK, got), 0);
    check_request(got, k, smooth, m);
    psi_msg_free(got);

    /* keys pay (dense), values do not: values tagged raw */
    m = gen_keys(&r, K_DENSE, n, k);
    msg = new_request(k, v, m);
    assert_int_equal(psi_chain_encode(snd, SRV, msg), 0);
    assert_true(has_filter(msg, PSI_FILTER_ZSTD));
    assert_int_equal(seg_u8(msg, PSI_SEG_KEYS)[0], Z_KEYS);
    assert_true(msg->hdr.seg_len[PSI_SEG_KEYS] < m);
    assert_int_equal(seg_u8(msg, PSI_SEG_VALS)[0], Z_RAW);
    assert_int_equal(msg->hdr.seg_len[PSI_SEG_VALS], m * 4 + 1);
    got = wire(msg);
    psi_msg_free(msg);
    assert_int_equal(psi_chain_decode(rcv, WRK, got), 0);
    check_request(got, k, v, m);
    psi_msg_free(got);

    /* an answer of random values: nothing to gain */
    msg = new_response(v, m);
    assert_int_equal(psi_chain_encode(rcv, WRK, msg), 0);
    assert_no_filters(msg);
    psi_msg_free(msg);

    /* a keycached signature with random values: no zstd either */
    psi_chain *kz = chain("keycache,zstd"), *kzr = chain("keycache,zstd");
    m = gen_keys(&r, K_RANDOM, n, k);
    for (int rep = 0; rep < 2; rep++) {
        msg = new_request(k, v, m);
        assert_int_equal(psi_chain_encode(kz, SRV, msg), 0);
        assert_true(has_filter(msg, PSI_FILTER_KEYCACHE));
        assert_false(has_filter(msg, PSI_FILTER_ZSTD));
        assert_int_equal(msg->hdr.seg_len[PSI_SEG_KEYS], rep ? KC_SIG_LEN : KC_SIG_LEN + 8 * m);
        got = wire(msg);
        psi_msg_free(msg);
        assert_int_equal(psi_chain_decode(kzr, WRK, got), 0);
        check_request(got, k, v, m);
        psi_msg_free(got);
    }
    psi_chain_free(kz);
    psi_chain_free(kzr);
    psi_chain_free(snd);
    psi_chain_free(rcv);
    free(k);
    free(v);
    free(smooth);
}

/* ---- regressions ------------------------------------------------------------------ */

/* Regression (fixed): psi_chain_decode's closing check `seg_len[KEYS] !=
 * key_count * 8` wrapped, so a message whose filters are set (msg.c leaves
 * key_count to the kv layer) with key_count 2^61 and no keys passed it, and
 * the server's check_request walked 2^61 keys of a NULL segment.  Such a
 * message must now be refused with PS_ERR_PROTO. */
static void test_decode_refuses_key_count_that_wraps(void **state)
{
    static const float v[] = {1.0f};
    psi_chain *rcv = chain("zstd");
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);

    assert_non_null(m);
    m->hdr.flags = PSI_F_REQUEST | PSI_F_PULL;
    m->hdr.sender = WRK;
    m->hdr.key_count = 1ull << 61; /* 8 * 2^61 == 0 mod 2^64 */
    m->hdr.filters[0] = PSI_FILTER_ZSTD;
    psi_msg *got = wire(m); /* the frame is valid: msg.c defers the count */
    assert_int_equal(psi_chain_decode(rcv, WRK, got), PS_ERR_PROTO);
    psi_msg_free(got);
    /* the same with quantized values and no zstd */
    psi_chain *q = chain("fp16");
    psi_msg *a = new_response(v, 1);
    assert_int_equal(psi_chain_encode(q, WRK, a), 0);
    a->hdr.key_count = 1ull << 61;
    a->hdr.flags = PSI_F_REQUEST | PSI_F_PUSH;
    got = wire(a);
    assert_int_equal(psi_chain_decode(rcv, WRK, got), PS_ERR_PROTO);
    psi_msg_free(got);
    psi_msg_free(a);
    psi_msg_free(m);
    psi_chain_free(q);
    psi_chain_free(rcv);
}

/* Regression (fixed): int8 cannot quantize a non-finite value (codec:
 * PS_ERR_INVAL); psi_chain_encode used to fail, and the worker and the server
 * dropped the message to resend it later -- encoded the same way, failing the
 * same way, forever: one inf or NaN in a push or in the stored values wedged
 * that request.  The message must go with its values unquantized (fp16
 * already carries inf and NaN). */
static void test_int8_nonfinite_values_still_sent(void **state)
{
    static const uint64_t keys[] = {1, 2, 3, 4};
    const float v[] = {1.0f, INFINITY, -2.0f, NAN};
    psi_chain *snd = chain("int8"), *rcv = chain("int8");

    for (int response = 0; response < 2; response++) {
        psi_msg *m = response ? new_response(v, 4) : new_request(keys, v, 4), *got;
        assert_int_equal(psi_chain_encode(snd, response ? WRK : SRV, m), 0);
        got = wire(m);
        psi_msg_free(m);
        assert_int_equal(psi_chain_decode(rcv, response ? SRV : WRK, got), 0);
        assert_int_equal(got->hdr.seg_len[PSI_SEG_VALS], 16);
        const float *d = got->seg[PSI_SEG_VALS];
        assert_true(isinf(d[1]) && d[1] > 0);
        assert_true(isnan(d[3]));
        assert_true(fabsf(d[0] - 1.0f) <= 2.0f / 127 && fabsf(d[2] + 2.0f) <= 2.0f / 127);
        psi_msg_free(got);
    }
    psi_chain_free(snd);
    psi_chain_free(rcv);
}

/* What the UCX transport hands the kv layer (ucx.c alloc_segments): every
 * segment borrowed from one block, back to back, so a segment after an
 * encoded key list starts at whatever offset that list's length gives. */
static psi_msg *wire_packed(const psi_msg *m)
{
    psi_msg *c = wire(m), *p = psi_msg_new((psi_msg_type)m->hdr.type);
    uint64_t len = psi_msg_payload_len(&m->hdr);
    uint8_t *block = malloc(len ? len : 1), *at = block;

    assert_true(p && block);
    p->hdr = c->hdr;
    for (int i = 0; i < PSI_NSEG; i++) {
        size_t l = c->hdr.seg_len[i];
        if (l) memcpy(at, c->seg[i], l);
        p->seg[i] = l ? at : NULL;
        at += l;
    }
    p->borrowed = (1u << PSI_NSEG) - 1;
    p->on_free = free;
    p->on_free_arg = block;
    psi_msg_free(c);
    return p;
}

/* Regression (fixed; it showed under PS_SANITIZE): the fp16 pad byte keeps
 * the halves aligned only in a block of their own.  Received from UCX, the
 * values follow the encoded keys in one block: after a 17-byte keycache
 * signature (or a full list, 17 + 8n bytes) with no zstd to copy them out,
 * quant_decode handed psi_codec_fp16_decode a uint16_t pointer at an odd
 * address -- UBSan: "load of misaligned address" in codec.c.  Every chain
 * must decode a packed message exactly as it decodes one with separate
 * segments. */
static void test_decode_from_one_block(void **state)
{
    static const char *const specs[] = {
        "",         "keycache", "zstd", "keycache,zstd", "fp16",           "int8",
        "fp16,zstd", "int8,keycache", "int8,keycache,zstd", "fp16,keycache,zstd",
        "fp16,keycache",
    };
    static const size_t sizes[] = {1, 5, 100, 1001};
    uint64_t k[1001];
    float v[1001];
    psi_rng r;

    psi_rng_seed(&r, 11);
    for (size_t s = 0; s < PSI_ARRAY_LEN(specs); s++)
        for (size_t z = 0; z < PSI_ARRAY_LEN(sizes); z++) {
            psi_chain *snd = chain(specs[s]), *r1 = chain(specs[s]), *r2 = chain(specs[s]);
            size_t n = gen_keys(&r, (int)(z % K_NKINDS), sizes[z], k);
            gen_vals(&r, (int)(s & 1), n, v);
            for (int rep = 0; rep < 3; rep++) { /* full list, signature, answer */
                psi_msg *m = rep < 2 ? new_request(k, v, n) : new_response(v, n);
                assert_int_equal(psi_chain_encode(rep < 2 ? snd : r1, rep < 2 ? SRV : WRK, m), 0);
                psi_msg *a = wire(m), *b = wire_packed(m);
                psi_chain *ra = rep < 2 ? r1 : snd, *rb = rep < 2 ? r2 : snd;
                uint32_t from = rep < 2 ? WRK : SRV;
                psi_msg_free(m);
                assert_int_equal(psi_chain_decode(ra, from, a), 0);
                assert_int_equal(psi_chain_decode(rb, from, b), 0);
                assert_no_filters(b);
                for (int i = 0; i < PSI_NSEG; i++) {
                    assert_int_equal(a->hdr.seg_len[i], b->hdr.seg_len[i]);
                    if (a->hdr.seg_len[i])
                        assert_memory_equal(a->seg[i], b->seg[i], a->hdr.seg_len[i]);
                }
                int lossy = strstr(specs[s], "fp16") || strstr(specs[s], "int8");
                if (rep < 2) check_request(b, k, lossy ? b->seg[PSI_SEG_VALS] : v, n);
                psi_msg_free(a);
                psi_msg_free(b);
            }
            psi_chain_free(snd);
            psi_chain_free(r1);
            psi_chain_free(r2);
        }
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, arm, disarm)
    const struct CMUnitTest tests[] = {
        T(test_spec_good),
        T(test_spec_bad),
        T(test_lossless_adversarial),
        T(test_lossless_random),
        T(test_lossless_sizes),
        T(test_keycache_miss_after_restart),
        T(test_keycache_per_peer),
        T(test_keycache_eviction),
        T(test_keycache_random_history),
        T(test_fp16_bound),
        T(test_int8_bound),
        T(test_quant_skips_empty_vals),
        T(test_fp16_wire_format),
        T(test_corrupt_tiny),
        T(test_corrupt_small),
        T(test_corrupt_big),
        T(test_unknown_filter_id),
        T(test_chainless_receiver),
        T(test_zstd_does_not_pay),
        T(test_decode_refuses_key_count_that_wraps),
        T(test_int8_nonfinite_values_still_sent),
        T(test_decode_from_one_block), /* last: were it to regress, UBSan aborts the run */
    };
#undef T
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
