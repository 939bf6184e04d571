/*
 * codec.c -- the encoders and decoders of kv/codec.h: delta-varint-zstd key
 * lists, zstd bytes with a size header, f32 <-> fp16 and f32 <-> int8.
 *
 * Design: key lists become LEB128 varints of their differences (dense runs
 * are one byte a key, random 64-bit keys about 64 - log2(n) bits), then one
 * zstd frame (level 1, content size and checksum in the frame) when that is
 * smaller.  Decoders parse the fixed header, check every stated length
 * against the caller's bound (expect_n, max_out, n) and against what the
 * bytes can hold, and only then allocate; zstd input must be exactly one
 * frame with our magic, a stated content size equal to the one expected,
 * and nothing after it.  The quantizers are bit-exact scalar loops: fp16
 * rounds the dropped mantissa bits (nearest-even, or up when random bits
 * fall below them, which is exactly unbiased); int8 computes in double.
 *
 * The only state is scratch: one zstd compression and one decompression
 * context per thread, kept for the next call and freed at thread exit.
 *
 * Must never: read past `in + len` or write past what it allocated; allocate
 * from a length not yet checked; return a half-filled output on failure;
 * let one call's result depend on an earlier call.
 */
#include "kv/codec.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define VARINT_MAX 10 /* bytes of a 64-bit LEB128 varint */
#define ZSTD_LEVEL 1
#define KEYS_HDR_MAX (1 + VARINT_MAX)
#define KEYS_MAX ((SIZE_MAX - 2 * KEYS_HDR_MAX) / VARINT_MAX)

/* ---- varints ------------------------------------------------------------------ */

/* Write v at p (room for VARINT_MAX bytes); returns the bytes written. */
static inline size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t i = 0;
    for (; v >= 0x80; v >>= 7) p[i++] = (uint8_t)(v | 0x80);
    p[i++] = (uint8_t)v;
    return i;
}

/* Read one varint from [*p, end) and advance *p.  0, or PS_ERR_PROTO when it
 * is truncated, over 64 bits, or not canonical (a redundant zero last byte). */
static inline int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *q = *p;
    uint64_t x = 0;

    for (unsigned shift = 0; q < end && shift < 64; shift += 7) {
        uint8_t b = *q++;
        if (shift == 63 && b > 1) return PS_ERR_PROTO;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            if (b == 0 && shift) return PS_ERR_PROTO;
            *p = q;
            *v = x;
            return 0;
        }
    }
    return PS_ERR_PROTO;
}

/* ---- zstd frames ---------------------------------------------------------------- */

/* Per-thread zstd contexts, made on first use and freed at thread exit:
 * making one costs about 10 us, as much as compressing 4 KB. */
typedef struct zctx {
    ZSTD_CCtx *c; /* level 1, content size and checksum set once */
    ZSTD_DCtx *d;
} zctx;

static pthread_key_t zkey;
static pthread_once_t zonce = PTHREAD_ONCE_INIT;
static int zkey_ok;

static void zctx_free(void *p)
{
    zctx *z = p;
    ZSTD_freeCCtx(z->c);
    ZSTD_freeDCtx(z->d);
    free(z);
}

static void zkey_init(void) { zkey_ok = pthread_key_create(&zkey, zctx_free) == 0; }

/* This thread's contexts, or NULL (no memory). */
static zctx *zctx_get(void)
{
    zctx *z;

    pthread_once(&zonce, zkey_init);
    if (!zkey_ok) return NULL;
    if ((z = pthread_getspecific(zkey)) != NULL) return z;
    if (!(z = calloc(1, sizeof(*z)))) return NULL;
    z->c = ZSTD_createCCtx();
    z->d = ZSTD_createDCtx();
    if (!z->c || !z->d ||
        ZSTD_isError(ZSTD_CCtx_setParameter(z->c, ZSTD_c_compressionLevel, ZSTD_LEVEL)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(z->c, ZSTD_c_checksumFlag, 1)) ||
        pthread_setspecific(zkey, z) != 0) {
        zctx_free(z);
        return NULL;
    }
    return z;
}

/* Compress src into dst (cap bytes): one level-1 frame with its content size
 * and checksum.  Returns the frame's size, or 0 on failure (no memory). */
static size_t zstd_frame(void *dst, size_t cap, const void *src, size_t len)
{
    zctx *z = zctx_get();
    size_t r;

    if (!z) return 0;
    r = ZSTD_compress2(z->c, dst, cap, src, len);
    return ZSTD_isError(r) ? 0 : r;
}

/* Check that [in, in+len) is exactly one zstd frame (not a skippable one)
 * that states its content size; *size gets it.  0 or PS_ERR_PROTO. */
static int zstd_frame_size(const uint8_t *in, size_t len, uint64_t *size)
{
    unsigned long long cs;
    size_t fl;

    if (len < 4 || psi_get_u32(in) != ZSTD_MAGICNUMBER) return PS_ERR_PROTO;
    fl = ZSTD_findFrameCompressedSize(in, len);
    if (ZSTD_isError(fl) || fl != len) return PS_ERR_PROTO;
    cs = ZSTD_getFrameContentSize(in, len);
    if (cs == ZSTD_CONTENTSIZE_UNKNOWN || cs == ZSTD_CONTENTSIZE_ERROR) return PS_ERR_PROTO;
    *size = cs;
    return 0;
}

/* Decompress a frame checked by zstd_frame_size into a new block of exactly
 * `size` bytes (its content size).  0, PS_ERR_NOMEM or PS_ERR_PROTO (corrupt,
 * checksum mismatch). */
static int zstd_inflate(const uint8_t *in, size_t len, size_t size, uint8_t **out)
{
    zctx *z = zctx_get();
    uint8_t *buf;
    size_t r;

    if (!z || !(buf = malloc(size ? size : 1))) return PS_ERR_NOMEM;
    r = ZSTD_decompressDCtx(z->d, buf, size, in, len);
    if (ZSTD_isError(r) || r != size) {
        free(buf);
        return PS_ERR_PROTO;
    }
    *out = buf;
    return 0;
}

/* Shrink an over-allocated output to its final length (keep it on failure). */
static uint8_t *shrink(uint8_t *buf, size_t len)
{
    uint8_t *p = realloc(buf, len ? len : 1);
    return p ? p : buf;
}

/* ---- keys ----------------------------------------------------------------------- */

static int keys_sorted(const uint64_t *k, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (k[i] < k[i - 1]) return 0;
    return 1;
}

/* Varints of keys[0] and the differences into buf (n * VARINT_MAX bytes of
 * room); returns the bytes written. */
static size_t keys_to_varints(const uint64_t *k, size_t n, uint8_t *buf)
{
    size_t len = 0;
    uint64_t prev = 0;

    for (size_t i = 0; i < n; i++) {
        len += put_varint(buf + len, k[i] - prev);
        prev = k[i];
    }
    return len;
}

/* Exactly n keys from exactly the varints in [p, p+len), non-decreasing
 * (a difference that wraps past 2^64-1 is malformed).  *keys gets them. */
static int keys_from_varints(const uint8_t *p, size_t len, size_t n, uint64_t **keys)
{
    const uint8_t *end = p + len;
    uint64_t *k, prev = 0, d;

    if (len < n || len > n * VARINT_MAX) return PS_ERR_PROTO;
    if (!(k = malloc(n ? n * sizeof(*k) : 1))) return PS_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (get_varint(&p, end, &d) != 0 || d > UINT64_MAX - prev) goto bad;
        k[i] = prev += d;
    }
    if (p != end) goto bad;
    *keys = k;
    return 0;
bad:
    free(k);
    return PS_ERR_PROTO;
}

/* The zstd form: one frame whose content is the varints of n keys. */
static int keys_from_zstd(const uint8_t *in, size_t len, size_t n, uint64_t **keys)
{
    uint64_t size;
    uint8_t *raw;
    int rv;

    if ((rv = zstd_frame_size(in, len, &size)) != 0) return rv;
    if (size < n || size > (uint64_t)n * VARINT_MAX) return PS_ERR_PROTO;
    if ((rv = zstd_inflate(in, len, (size_t)size, &raw)) != 0) return rv;
    rv = keys_from_varints(raw, (size_t)size, n, keys);
    free(raw);
    return rv;
}

/* The zstd form of the raw form in raw[0..hdr+vlen) (header then varints),
 * if it is smaller; NULL if not (or no memory: the raw form still works). */
static uint8_t *keys_zstd_form(const uint8_t *raw, size_t hdr, size_t vlen, size_t *len)
{
    size_t cap = ZSTD_compressBound(vlen), zlen;
    uint8_t *z;

    if (vlen == 0 || ZSTD_isError(cap) || cap > SIZE_MAX - hdr) return NULL;
    if (!(z = malloc(hdr + cap))) return NULL;
    zlen = zstd_frame(z + hdr, cap, raw + hdr, vlen);
    if (zlen == 0 || zlen >= vlen) {
        free(z);
        return NULL;
    }
    memcpy(z, raw, hdr);
    z[0] = PSI_CODEC_KEYS_ZSTD;
    *len = hdr + zlen;
    return shrink(z, *len);
}

int psi_codec_keys_encode(const uint64_t *keys, size_t n, uint8_t **out, size_t *out_len)
{
    uint8_t *raw, *z;
    size_t hdr, vlen;

    if (!out || !out_len) return PS_ERR_INVAL;
    *out = NULL;
    if ((n && !keys) || !keys_sorted(keys, n)) return PS_ERR_INVAL;
    if (n > KEYS_MAX) return PS_ERR_TOOBIG;
    if (!(raw = malloc(KEYS_HDR_MAX + n * VARINT_MAX))) return PS_ERR_NOMEM;
    raw[0] = PSI_CODEC_KEYS_RAW;
    hdr = 1 + put_varint(raw + 1, n);
    vlen = keys_to_varints(keys, n, raw + hdr);
    if ((z = keys_zstd_form(raw, hdr, vlen, out_len)) != NULL) {
        free(raw);
        *out = z;
    } else {
        *out = shrink(raw, *out_len = hdr + vlen);
    }
    return 0;
}

int psi_codec_keys_decode(const uint8_t *in, size_t len, size_t expect_n, uint64_t **keys)
{
    const uint8_t *p, *end;
    uint64_t n;
    uint8_t tag;

    if (!keys) return PS_ERR_INVAL;
    *keys = NULL;
    if (len && !in) return PS_ERR_INVAL;
    if (len < 2) return PS_ERR_PROTO;
    tag = in[0], p = in + 1, end = in + len;
    if (get_varint(&p, end, &n) != 0 || n != expect_n) return PS_ERR_PROTO;
    if (expect_n > KEYS_MAX) return PS_ERR_TOOBIG;
    if (tag == PSI_CODEC_KEYS_RAW) return keys_from_varints(p, (size_t)(end - p), expect_n, keys);
    if (tag == PSI_CODEC_KEYS_ZSTD) return keys_from_zstd(p, (size_t)(end - p), expect_n, keys);
    return PS_ERR_PROTO;
}

/* ---- generic zstd ------------------------------------------------------------- */

int psi_codec_zstd_encode(const void *in, size_t len, uint8_t **out, size_t *out_len)
{
    size_t hdr, cap = ZSTD_compressBound(len), zlen;
    uint8_t *buf;

    if (!out || !out_len) return PS_ERR_INVAL;
    *out = NULL;
    if (len && !in) return PS_ERR_INVAL;
    if (ZSTD_isError(cap) || cap > SIZE_MAX - VARINT_MAX) return PS_ERR_TOOBIG;
    if (!(buf = malloc(VARINT_MAX + cap))) return PS_ERR_NOMEM;
    hdr = put_varint(buf, len);
    if (!(zlen = zstd_frame(buf + hdr, cap, in, len))) {
        free(buf);
        return PS_ERR_NOMEM;
    }
    *out = shrink(buf, *out_len = hdr + zlen);
    return 0;
}

int psi_codec_zstd_decode(const uint8_t *in, size_t len, size_t max_out, uint8_t **out,
                          size_t *out_len)
{
    const uint8_t *p = in;
    uint64_t size, cs;
    int rv;

    if (!out || !out_len) return PS_ERR_INVAL;
    *out = NULL;
    *out_len = 0;
    if (len && !in) return PS_ERR_INVAL;
    if (len == 0 || get_varint(&p, in + len, &size) != 0) return PS_ERR_PROTO;
    if (size > max_out) return PS_ERR_TOOBIG;
    if ((rv = zstd_frame_size(p, len - (size_t)(p - in), &cs)) != 0) return rv;
    if (cs != size) return PS_ERR_PROTO;
    if ((rv = zstd_inflate(p, len - (size_t)(p - in), (size_t)size, out)) != 0) return rv;
    *out_len = (size_t)size;
    return 0;
}

/* ---- fp16 ----------------------------------------------------------------------- */

/*
 * The fp16 bits of f.  The magnitude is written as base >> s: for results in
 * fp16's normal range base is f's bits rebiased (so a carry out of the
 * mantissa bumps the exponent), s = 13; below it base is f's 24-bit
 * significand and s shifts it to units of 2^-24.  Rounding adds to base
 * before the shift: half a step less one plus the kept low bit (nearest,
 * ties to even), or s random bits (up with probability rem / 2^s, exactly
 * the fraction of the step the dropped bits rem make).
 */
static inline uint16_t f_to_h(float f, int stoch, uint64_t rnd)
{
    uint32_t x, ax, e, base, sign;
    unsigned s;
    uint64_t add;

    memcpy(&x, &f, sizeof(x));
    sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu, e = ax >> 23;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u));
    if (ax > 0x477fe000u) return (uint16_t)(sign | 0x7bffu); /* beyond 65504 */
    if (e >= 113) base = ax - (112u << 23), s = 13;
    else base = (ax & 0x7fffffu) | (e ? 0x800000u : 0), s = 126 - (e ? e : 1);
    if (s > 63) return (uint16_t)sign;
    if (stoch) add = rnd & ((1ull << s) - 1);
    else add = (1ull << (s - 1)) - 1 + (((uint64_t)base >> s) & 1);
    return (uint16_t)(sign | (((uint64_t)base + add) >> s));
}

static inline float h_to_f(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    float f;

    if (e == 0) {
        f = (float)m * 0x1p-24f;
        return sign ? -f : f;
    }
    bits = sign | (e == 31 ? 0x7f800000u : (e + 112) << 23) | (m << 13);
    memcpy(&f, &bits, sizeof(f));
    return f;
}

int psi_codec_fp16_encode(const float *v, size_t n, psi_rng *rng, uint16_t **out)
{
    uint16_t *h;

    if (!out) return PS_ERR_INVAL;
    *out = NULL;
    if (n && !v) return PS_ERR_INVAL;
    if (n > SIZE_MAX / sizeof(*h)) return PS_ERR_TOOBIG;
    if (!(h = malloc(n ? n * sizeof(*h) : 1))) return PS_ERR_NOMEM;
    if (rng)
        for (size_t i = 0; i < n; i++) h[i] = f_to_h(v[i], 1, psi_rng_next(rng));
    else
        for (size_t i = 0; i < n; i++) h[i] = f_to_h(v[i], 0, 0);
    *out = h;
    return 0;
}

void psi_codec_fp16_decode(const uint16_t *in, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = h_to_f(in[i]);
}

/* ---- int8 ------------------------------------------------------------------------ */

/* max |v[i]| into *m; 0, or PS_ERR_INVAL if some value is not finite. */
static int abs_max(const float *v, size_t n, float *m)
{
    float mx = 0;
    int bad = 0;

    for (size_t i = 0; i < n; i++) {
        float a = fabsf(v[i]);
        bad |= !(a <= FLT_MAX);
        mx = a > mx ? a : mx;
    }
    *m = mx;
    return bad ? PS_ERR_INVAL : 0;
}

/* m / 127, rounded up so that 127 * scale >= m (no value clips), but down
 * where 127 * scale would overflow f32 (m within 2^-23 of FLT_MAX: the
 * largest values then clip by less than the f32 rounding of the decode). */
static float int8_scale(float m)
{
    float s = (float)((double)m / 127.0);

    if ((double)s * 127.0 < (double)m) s = nextafterf(s, INFINITY);
    if ((double)s * 127.0 > FLT_MAX) s = nextafterf(s, 0);
    return s;
}

static void quantize(const float *v, size_t n, float scale, psi_rng *rng, int8_t *q)
{
    double inv = scale > 0 ? 1.0 / (double)scale : 0, t;

    for (size_t i = 0; i < n; i++) {
        t = PSI_MAX(-127.0, PSI_MIN(127.0, (double)v[i] * inv));
        t = rng ? floor(t + psi_rng_double(rng)) : nearbyint(t);
        q[i] = (int8_t)PSI_MIN(127.0, t); /* t + u may round up to 128 */
    }
}

int psi_codec_int8_encode(const float *v, size_t n, psi_rng *rng, uint8_t **out,
                          size_t *out_len)
{
    float m, scale;
    uint32_t bits;
    uint8_t *buf;
    int rv;

    if (!out || !out_len) return PS_ERR_INVAL;
    *out = NULL;
    if (n && !v) return PS_ERR_INVAL;
    if ((rv = abs_max(v, n, &m)) != 0) return rv;
    if (n > SIZE_MAX - 4) return PS_ERR_TOOBIG;
    if (!(buf = malloc(4 + n))) return PS_ERR_NOMEM;
    scale = int8_scale(m);
    memcpy(&bits, &scale, sizeof(bits));
    psi_put_u32(buf, bits);
    quantize(v, n, scale, rng, (int8_t *)(buf + 4));
    *out = buf;
    *out_len = 4 + n;
    return 0;
}

int psi_codec_int8_decode(const uint8_t *in, size_t len, size_t n, float *out)
{
    uint32_t bits;
    float scale;

    if ((len && !in) || (n && !out)) return PS_ERR_INVAL;
    if (n > SIZE_MAX - 4 || len != 4 + n) return PS_ERR_PROTO;
    bits = psi_get_u32(in);
    memcpy(&scale, &bits, sizeof(scale));
    if (!(scale >= 0) || (double)scale * 127.0 > FLT_MAX) return PS_ERR_PROTO;
    if (memchr(in + 4, 0x80, n)) return PS_ERR_PROTO; /* -128: never encoded */
    for (size_t i = 0; i < n; i++) out[i] = (float)(int8_t)in[4 + i] * scale;
    return 0;
}
