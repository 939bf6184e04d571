/*
 * codec.h -- the pure encoders and decoders behind the built-in filters
 * (src/kv/filter.c): sorted key lists (delta + LEB128 varints + zstd),
 * generic bytes through zstd with a size header and a cap, and the lossy
 * f32 quantizers (IEEE fp16; int8 with one scale per message), each with
 * round-to-nearest or unbiased stochastic rounding.
 *
 * Design: plain functions over buffers, no state kept between calls, safe
 * from any thread (an rng is the caller's and used by one thread at a time).
 * Every function returns 0 or a negative ps_err; every output buffer is
 * malloc'ed here and owned (freed) by the caller, also for empty inputs (a
 * non-NULL block); on failure nothing is allocated and *out is NULL.
 * Compressed forms carry a zstd content checksum, so a corrupt frame is
 * rejected instead of decoding to wrong values.
 *
 * Must never: modify an input; read or write outside the bytes given,
 * whatever they hold; allocate before the lengths that size the allocation
 * have been checked (against expect_n, max_out or n, which the caller caps).
 *
 * Encoded forms (all integers little-endian, varints LEB128 and canonical):
 *   keys:  tag u8 (1 = raw varints, 2 = zstd frame of them), count varint,
 *          then the varints of keys[0], keys[1]-keys[0], ... (raw or zstd);
 *   zstd:  decompressed size varint, then exactly one zstd frame;
 *   fp16:  n IEEE binary16 values in host order (the caller puts them
 *          on the wire with psi_put_u16);
 *   int8:  scale f32 (4 bytes LE), then n int8 q[i]; value = q[i] * scale,
 *          q[i] in [-127, 127].
 */
#ifndef PSI_KV_CODEC_H
#define PSI_KV_CODEC_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* Format tags of an encoded key list. */
enum { PSI_CODEC_KEYS_RAW = 1, PSI_CODEC_KEYS_ZSTD = 2 };

/* Keys: `keys` sorted non-decreasing (else PS_ERR_INVAL).  The zstd form is
 * used only when it is smaller than the raw varints.  out gets the encoded
 * bytes.  0, PS_ERR_INVAL, PS_ERR_NOMEM or PS_ERR_TOOBIG. */
int psi_codec_keys_encode(const uint64_t *keys, size_t n, uint8_t **out, size_t *out_len);
/* Decode exactly expect_n keys (the count inside must match) that come out
 * non-decreasing from exactly len bytes.  The caller bounds expect_n: the
 * work and memory are O(expect_n) even for a tiny input.  *keys gets an
 * array of expect_n keys.  0, PS_ERR_PROTO (malformed, corrupt, wrong count,
 * trailing bytes), PS_ERR_NOMEM or PS_ERR_INVAL (NULL arguments). */
int psi_codec_keys_decode(const uint8_t *in, size_t len, size_t expect_n, uint64_t **keys);

/* Generic bytes through zstd (level 1).  0, PS_ERR_NOMEM or PS_ERR_TOOBIG
 * (over zstd's input limit). */
int psi_codec_zstd_encode(const void *in, size_t len, uint8_t **out, size_t *out_len);
/* Decode; a stated size above max_out gives PS_ERR_TOOBIG before anything is
 * allocated; a malformed or corrupt frame, or one whose content size differs
 * from the stated size, PS_ERR_PROTO. */
int psi_codec_zstd_decode(const uint8_t *in, size_t len, size_t max_out, uint8_t **out,
                          size_t *out_len);

/*
 * fp16: round to nearest, ties to even (rng == NULL), or stochastically (up
 * with probability equal to the fraction of the step, so E[decode] = v).
 * Finite values beyond +-65504 saturate to +-65504; +-inf stay infinite;
 * NaN becomes the quiet NaN 0x7e00 with v's sign; fp16 subnormals are kept
 * (nearest: |v| <= 2^-25 becomes +-0; stochastic: |v| < 2^-24 becomes
 * +-2^-24 with probability |v| / 2^-24, except below 2^-64: always +-0).
 * out gets n values.  0, PS_ERR_INVAL, PS_ERR_NOMEM or PS_ERR_TOOBIG.
 * Decoding is exact (every fp16 value is an f32 value).
 */
int psi_codec_fp16_encode(const float *v, size_t n, psi_rng *rng, uint16_t **out);
void psi_codec_fp16_decode(const uint16_t *in, size_t n, float *out);

/* Relative error of fp16 for |x| in the normal range [2^-14, 65504]. */
#define PSI_FP16_REL_ERR_NEAREST 0x1p-11
#define PSI_FP16_REL_ERR_STOCH 0x1p-10
/* The largest |decode(encode(x)) - x| for x: relative bound above in the
 * normal range, 2^-25 (nearest) or 2^-24 (stochastic) absolute below it,
 * |x| - 65504 when saturated, 0 for inf and NaN. */
static inline double psi_codec_fp16_max_err(float x, int stochastic)
{
    double a = fabs((double)x);
    if (!isfinite(a)) return 0;
    if (a > 65504) return a - 65504;
    if (a < 0x1p-14) return stochastic ? 0x1p-24 : 0x1p-25;
    return a * (stochastic ? PSI_FP16_REL_ERR_STOCH : PSI_FP16_REL_ERR_NEAREST);
}

/*
 * int8: scale = max|v| / 127 (rounded up so no value clips; 0 for an all-zero
 * vector), q = v / scale rounded to nearest (rng == NULL) or stochastically
 * (floor(v/scale + u), u uniform in [0,1): E[decode] = v).  Every v must be
 * finite (else PS_ERR_INVAL).  out gets 4 + n bytes.
 * Decoding needs len == 4 + n, a finite non-negative scale with 127*scale
 * finite, and no q of -128; else PS_ERR_PROTO.  out[] holds n floats.
 */
int psi_codec_int8_encode(const float *v, size_t n, psi_rng *rng, uint8_t **out,
                          size_t *out_len);
int psi_codec_int8_decode(const uint8_t *in, size_t len, size_t n, float *out);

/* The largest |decode(encode(x)) - x| with the message's scale: scale/2
 * (nearest) or scale (stochastic; strictly less), plus the f32 rounding of
 * the decoded product (2^-24 relative, counted generously as 2^-23 |x|). */
static inline double psi_codec_int8_max_err(float scale, float x, int stochastic)
{
    return (stochastic ? (double)scale : 0.5 * (double)scale) + 0x1p-23 * fabs((double)x);
}

#endif /* PSI_KV_CODEC_H */
