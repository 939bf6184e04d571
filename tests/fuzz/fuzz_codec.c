/*
 * fuzz_codec.c -- libFuzzer target for the filter codecs (src/kv/codec.c).
 *
 * The first input byte is the expected count (keys, int8 values); the rest
 * goes to every decoder: keys, zstd (1 MiB cap), int8 (with that count and
 * with the count the length implies) and fp16.  Whatever decodes must
 * survive a round trip: keys and zstd bytes re-encode and decode to the same
 * values; fp16 values re-encode (nearest) to the same bits (NaNs to a NaN);
 * int8 values re-encode within the stated error bound.  Sanitizers catch
 * any read past the input; the target abort()s on a broken round trip.
 *
 * With PS_FUZZ_SEED_DIR set, LLVMFuzzerInitialize first writes a few valid
 * inputs made by the real encoders into that folder (scripts/fuzz.sh uses
 * this to seed the corpus).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/codec.h"

#define FUZZ_CAP (1u << 20)

static void check_keys(const uint8_t *in, size_t len, size_t n)
{
    uint64_t *k, *k2;
    uint8_t *enc;
    size_t elen;

    if (psi_codec_keys_decode(in, len, n, &k) != 0) {
        if (k) abort();
        return;
    }
    for (size_t i = 1; i < n; i++)
        if (k[i] < k[i - 1]) abort();
    if (psi_codec_keys_encode(k, n, &enc, &elen) != 0) abort();
    if (psi_codec_keys_decode(enc, elen, n, &k2) != 0) abort();
    if (n && memcmp(k, k2, n * sizeof(*k)) != 0) abort();
    free(k2);
    free(enc);
    free(k);
}

static void check_zstd(const uint8_t *in, size_t len)
{
    uint8_t *d, *enc, *d2;
    size_t dlen, elen, dlen2;

    if (psi_codec_zstd_decode(in, len, FUZZ_CAP, &d, &dlen) != 0) {
        if (d) abort();
        return;
    }
    if (dlen > FUZZ_CAP) abort();
    if (psi_codec_zstd_encode(d, dlen, &enc, &elen) != 0) abort();
    if (psi_codec_zstd_decode(enc, elen, dlen, &d2, &dlen2) != 0 || dlen2 != dlen) abort();
    if (dlen && memcmp(d, d2, dlen) != 0) abort();
    free(d2);
    free(enc);
    free(d);
}

static void check_int8(const uint8_t *in, size_t len, size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof(*v)), *w = malloc((n ? n : 1) * sizeof(*w)), scale;
    uint32_t bits;
    uint8_t *enc;
    size_t elen;

    if (!v || !w) abort();
    if (psi_codec_int8_decode(in, len, n, v) == 0) {
        for (size_t i = 0; i < n; i++)
            if (!isfinite(v[i])) abort();
        if (psi_codec_int8_encode(v, n, NULL, &enc, &elen) != 0 || elen != 4 + n) abort();
        if (psi_codec_int8_decode(enc, elen, n, w) != 0) abort();
        bits = psi_get_u32(enc);
        memcpy(&scale, &bits, sizeof(scale));
        for (size_t i = 0; i < n; i++)
            if (fabs((double)w[i] - v[i]) > psi_codec_int8_max_err(scale, v[i], 0)) abort();
        free(enc);
    }
    free(w);
    free(v);
}

static void check_fp16(const uint8_t *in, size_t len)
{
    size_t n = len / 2;
    uint16_t *h = malloc((n ? n : 1) * sizeof(*h)), *back;
    float *f = malloc((n ? n : 1) * sizeof(*f));

    if (!h || !f) abort();
    for (size_t i = 0; i < n; i++) h[i] = psi_get_u16(in + 2 * i);
    psi_codec_fp16_decode(h, n, f);
    if (psi_codec_fp16_encode(f, n, NULL, &back) != 0) abort();
    for (size_t i = 0; i < n; i++)
        if (isnan(f[i]) ? (back[i] & 0x7fff) != 0x7e00 : back[i] != h[i]) abort();
    free(back);
    free(f);
    free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n;

    if (size < 1) return 0;
    n = data[0], data++, size--;
    check_keys(data, size, n);
    check_zstd(data, size);
    check_int8(data, size, n);
    if (size >= 4) check_int8(data, size, size - 4);
    check_fp16(data, size);
    return 0;
}

/* Write one seed: the count byte, then an encoding. */
static void write_seed(const char *dir, const char *name, uint8_t n, const uint8_t *b, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/seed-%s", dir, name);
    if (!(f = fopen(path, "wb"))) return;
    fputc(n, f);
    fwrite(b, 1, len, f);
    fclose(f);
}

static void write_seeds(const char *dir)
{
    uint64_t dense[40], sparse[5] = {0, 7, 1ull << 40, UINT64_MAX - 1, UINT64_MAX};
    float v[6] = {1.5f, -2, 0.25f, 1e-3f, 0, -7};
    uint8_t *b;
    size_t len;

    for (int i = 0; i < 40; i++) dense[i] = 1000 + 3 * (uint64_t)i;
    if (psi_codec_keys_encode(dense, 40, &b, &len) == 0) write_seed(dir, "keys-zstd", 40, b, len);
    free(b);
    if (psi_codec_keys_encode(sparse, 5, &b, &len) == 0) write_seed(dir, "keys-raw", 5, b, len);
    free(b);
    if (psi_codec_zstd_encode("weight gradient weight gradient", 31, &b, &len) == 0)
        write_seed(dir, "zstd", 0, b, len);
    free(b);
    if (psi_codec_int8_encode(v, 6, NULL, &b, &len) == 0) write_seed(dir, "int8", 6, b, len);
    free(b);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("PS_FUZZ_SEED_DIR");

    if (dir && *dir) write_seeds(dir);
    return 0;
}
