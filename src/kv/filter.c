/*
 * filter.c -- the built-in message filters of a table (see filter.h):
 *
 *   fp16, int8  quantize f32 values (codec.c; stochastic rounding, so the
 *               error is unbiased; bounds in codec.h);
 *   keycache    a key list the receiver already holds travels as its 128-bit
 *               signature (XXH3) instead: the first time a list goes to a
 *               peer it is sent whole and the receiver remembers it (the
 *               last KC_KEEP lists per peer); a receiver that does not hold a
 *               signature answers PSI_ERR_KEYCACHE_MISS and the sender resends
 *               the full list, so a wrong key is never used;
 *   zstd        compresses keys (delta-encoded first) and values; each
 *               segment carries a one-byte tag saying whether it paid, and
 *               the filter is left out of the message when nothing did.
 *
 * Every encoded segment starts with a format byte, so a decoder checks what
 * it got before it trusts any length.  State is per table and per peer; the
 * caller holds the table lock.  Never: hand the kv layer keys that did not
 * come from the sender; read past a segment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xxhash.h>

#include "kv/codec.h"
#include "kv/filter.h"
#include "node/view.h"
#include "util/log.h"
#include "util/util.h"

#define KC_KEEP 64         /* key lists remembered per peer, each side */
#define SIG_BYTES 16
#define KC_MIN_KEYS 3      /* shorter lists are cheaper than their signature */

enum { KC_FULL = 0, KC_SIG = 1 };
enum { Z_RAW = 0, Z_BYTES = 1, Z_KEYS = 2 };

typedef struct kc_entry {
    XXH128_hash_t sig;
    uint64_t n;
    uint64_t *keys;        /* receiver side only */
} kc_entry;

typedef struct kc_peer {
    kc_entry sent[KC_KEEP], held[KC_KEEP];
    int nsent, nheld, next_sent, next_held;
} kc_peer;

struct psi_chain {
    int quant;             /* 0, PSI_FILTER_FP16 or PSI_FILTER_INT8 */
    int keycache, zstd;
    ps_dtype dtype;
    psi_rng rng;
    kc_peer *peers[PSI_MAX_NODES];
};

/* Replace segment `seg` of `m` with `data` (malloc'ed, `len` bytes), which
 * the message then owns.  (A message method only the filters need: kept
 * here, file-local, rather than in src/wire under a psi_msg_ name.) */
static void take_seg(psi_msg *m, int seg, void *data, size_t len)
{
    if (!(m->borrowed & (1u << seg))) free(m->seg[seg]);
    m->borrowed &= ~(1u << seg);
    m->seg[seg] = data;
    m->hdr.seg_len[seg] = len;
}

/* ---- the chain ------------------------------------------------------------------ */

static int parse_item(psi_chain *c, const char *item, double *sigmod)
{
    char *end;
    if (!strcasecmp(item, "keycache")) c->keycache = 1;
    else if (!strcasecmp(item, "zstd")) c->zstd = 1;
    else if (!strcasecmp(item, "fp16")) c->quant = PSI_FILTER_FP16;
    else if (!strcasecmp(item, "int8")) c->quant = PSI_FILTER_INT8;
    else if (!strncasecmp(item, "sigmod=", 7) && (*sigmod = strtod(item + 7, &end)) >= 0 &&
             end != item + 7 && !*end) {
        return PS_OK;
    } else {
        PSI_ERROR("filter \"%s\": expected keycache, zstd, fp16, int8 or sigmod=THRESHOLD", item);
        return PS_ERR_INVAL;
    }
    return PS_OK;
}

int psi_chain_new(const char *spec, ps_dtype dtype, psi_chain **out, double *sigmod)
{
    psi_chain *c = calloc(1, sizeof(*c));
    char buf[256], *save = NULL;
    int rv = PS_OK;
    *sigmod = 0;
    if (!c) return PS_ERR_NOMEM;
    c->dtype = dtype;
    psi_rng_seed(&c->rng, 0x5eedULL ^ (uint64_t)(uintptr_t)c);
    if (spec && strlen(spec) >= sizeof(buf)) rv = PS_ERR_INVAL;
    snprintf(buf, sizeof(buf), "%s", spec && rv == 0 ? spec : "");
    for (char *it = strtok_r(buf, ",", &save); rv == 0 && it; it = strtok_r(NULL, ",", &save))
        rv = parse_item(c, it, sigmod);
    if (rv == 0 && c->quant && dtype != PS_F32) {
        PSI_ERROR("filters fp16 and int8 apply to f32 tables only");
        rv = PS_ERR_INVAL;
    }
    if (rv != 0) {
        free(c);
        return rv;
    }
    *out = c;
    return PS_OK;
}

static void kc_free(kc_peer *p)
{
    if (!p) return;
    for (int i = 0; i < KC_KEEP; i++) free(p->held[i].keys);
    free(p);
}

void psi_chain_forget_peer(psi_chain *c, uint32_t peer)
{
    if (!c || peer >= PSI_MAX_NODES) return;
    kc_free(c->peers[peer]);
    c->peers[peer] = NULL;
}

void psi_chain_free(psi_chain *c)
{
    if (!c) return;
    for (int i = 0; i < PSI_MAX_NODES; i++) kc_free(c->peers[i]);
    free(c);
}

int psi_chain_active(const psi_chain *c) { return c && (c->quant || c->keycache || c->zstd); }

static int add_id(psi_msg *m, uint8_t id)
{
    for (int i = 0; i < PSI_MAX_FILTERS; i++)
        if (!m->hdr.filters[i]) {
            m->hdr.filters[i] = id;
            return PS_OK;
        }
    return PS_ERR_TOOBIG;
}

static int has_id(const psi_msg *m, uint8_t id)
{
    for (int i = 0; i < PSI_MAX_FILTERS; i++)
        if (m->hdr.filters[i] == id) return 1;
    return 0;
}

/* ---- quantization ------------------------------------------------------------------ */

static int quant_encode(psi_chain *c, psi_msg *m)
{
    size_t len = m->hdr.seg_len[PSI_SEG_VALS], n = len / 4, olen = 0;
    void *out = NULL;
    if (!len || len % 4) return 1;
    int rv = c->quant == PSI_FILTER_FP16
                 ? psi_codec_fp16_encode(m->seg[PSI_SEG_VALS], n, &c->rng, (uint16_t **)&out)
                 : psi_codec_int8_encode(m->seg[PSI_SEG_VALS], n, &c->rng, (uint8_t **)&out, &olen);
    if (rv == PS_ERR_INVAL) return 1; /* inf or NaN: send the values as they are */
    if (rv != 0) return rv;
    /* tag byte, then for fp16 a pad byte so the halves stay 2-byte aligned */
    size_t head = c->quant == PSI_FILTER_FP16 ? 2 : 1, body = c->quant == PSI_FILTER_FP16 ? n * 2 : olen;
    uint8_t *seg = malloc(head + body);
    if (!seg) {
        free(out);
        return PS_ERR_NOMEM;
    }
    seg[0] = (uint8_t)c->quant;
    seg[head - 1] = seg[0];
    if (c->quant == PSI_FILTER_FP16) /* little-endian halves, whatever the host */
        for (size_t i = 0; i < n; i++) psi_put_u16(seg + head + 2 * i, ((const uint16_t *)out)[i]);
    else
        memcpy(seg + head, out, body);
    free(out);
    take_seg(m, PSI_SEG_VALS, seg, head + body);
    return add_id(m, (uint8_t)c->quant);
}

static int quant_decode(psi_msg *m, uint8_t id)
{
    size_t len = m->hdr.seg_len[PSI_SEG_VALS];
    const uint8_t *in = m->seg[PSI_SEG_VALS];
    if (len < 2 || in[0] != id) return PS_ERR_PROTO;
    size_t n = id == PSI_FILTER_FP16 ? (len - 2) / 2 : (len >= 5 ? len - 5 : 0);
    if ((id == PSI_FILTER_FP16 && (len % 2 || in[1] != id)) || (id == PSI_FILTER_INT8 && len < 5))
        return PS_ERR_PROTO;
    float *out = malloc(PSI_MAX(n, 1) * sizeof(float));
    uint16_t *halves = id == PSI_FILTER_FP16 ? malloc(PSI_MAX(n, 1) * 2) : NULL;
    int rv = out && (halves || id != PSI_FILTER_FP16) ? PS_OK : PS_ERR_NOMEM;
    if (rv == 0 && id == PSI_FILTER_FP16) { /* the segment may sit at any offset */
        for (size_t i = 0; i < n; i++) halves[i] = psi_get_u16(in + 2 + 2 * i);
        psi_codec_fp16_decode(halves, n, out);
    } else if (rv == 0) {
        rv = psi_codec_int8_decode(in + 1, len - 1, n, out);
    }
    free(halves);
    if (rv != 0) {
        free(out);
        return rv == PS_ERR_NOMEM ? rv : PS_ERR_PROTO;
    }
    take_seg(m, PSI_SEG_VALS, out, n * sizeof(float));
    return PS_OK;
}

/* ---- key caching -------------------------------------------------------------------- */

static kc_peer *kc_get(psi_chain *c, uint32_t peer)
{
    if (peer >= PSI_MAX_NODES) return NULL;
    if (!c->peers[peer]) c->peers[peer] = calloc(1, sizeof(kc_peer));
    return c->peers[peer];
}

static int kc_find(const kc_entry *e, int n, XXH128_hash_t sig, uint64_t nkeys)
{
    for (int i = 0; i < n; i++)
        if (XXH128_isEqual(e[i].sig, sig) && e[i].n == nkeys) return i;
    return -1;
}

static int kc_encode(psi_chain *c, uint32_t peer, psi_msg *m)
{
    uint64_t n = m->hdr.key_count;
    kc_peer *p = kc_get(c, peer);
    if (!p || n < KC_MIN_KEYS || m->hdr.seg_len[PSI_SEG_KEYS] != n * 8) return 1;
    XXH128_hash_t sig = XXH3_128bits(m->seg[PSI_SEG_KEYS], n * 8);
    int known = kc_find(p->sent, p->nsent, sig, n) >= 0;
    size_t len = 1 + SIG_BYTES + (known ? 0 : n * 8);
    uint8_t *seg = malloc(len);
    if (!seg) return PS_ERR_NOMEM;
    seg[0] = known ? KC_SIG : KC_FULL;
    psi_put_u64(seg + 1, sig.low64);
    psi_put_u64(seg + 9, sig.high64);
    if (!known) {
        memcpy(seg + 1 + SIG_BYTES, m->seg[PSI_SEG_KEYS], n * 8);
        p->sent[p->next_sent] = (kc_entry){sig, n, NULL};
        p->next_sent = (p->next_sent + 1) % KC_KEEP;
        p->nsent = PSI_MIN(p->nsent + 1, KC_KEEP);
    }
    take_seg(m, PSI_SEG_KEYS, seg, len);
    return add_id(m, PSI_FILTER_KEYCACHE);
}

static int kc_remember(kc_peer *p, XXH128_hash_t sig, uint64_t n, const uint8_t *keys)
{
    if (kc_find(p->held, p->nheld, sig, n) >= 0) return PS_OK;
    kc_entry *e = &p->held[p->next_held];
    uint64_t *copy = malloc(PSI_MAX(n, 1) * 8);
    if (!copy) return PS_ERR_NOMEM;
    memcpy(copy, keys, n * 8);
    free(e->keys);
    *e = (kc_entry){sig, n, copy};
    p->next_held = (p->next_held + 1) % KC_KEEP;
    p->nheld = PSI_MIN(p->nheld + 1, KC_KEEP);
    return PS_OK;
}

static int kc_decode(psi_chain *c, uint32_t peer, psi_msg *m)
{
    const uint8_t *in = m->seg[PSI_SEG_KEYS];
    size_t len = m->hdr.seg_len[PSI_SEG_KEYS];
    uint64_t n = m->hdr.key_count;
    kc_peer *p = kc_get(c, peer);
    if (!p) return PS_ERR_NOMEM;
    if (len < 1 + SIG_BYTES || in[0] > KC_SIG) return PS_ERR_PROTO;
    XXH128_hash_t sig = {psi_get_u64(in + 1), psi_get_u64(in + 9)};
    if (in[0] == KC_FULL) {
        if (n > (len - 1 - SIG_BYTES) / 8 || len != 1 + SIG_BYTES + n * 8) return PS_ERR_PROTO;
        XXH128_hash_t got = XXH3_128bits(in + 1 + SIG_BYTES, n * 8);
        if (!XXH128_isEqual(got, sig)) return PS_ERR_PROTO;
        int rv = kc_remember(p, sig, n, in + 1 + SIG_BYTES);
        uint8_t *keys = malloc(PSI_MAX(n, 1) * 8);
        if (rv != 0 || !keys) {
            free(keys);
            return PS_ERR_NOMEM;
        }
        memcpy(keys, in + 1 + SIG_BYTES, n * 8);
        take_seg(m, PSI_SEG_KEYS, keys, n * 8);
        return PS_OK;
    }
    int i = len == 1 + SIG_BYTES ? kc_find(p->held, p->nheld, sig, n) : -2;
    if (i == -2) return PS_ERR_PROTO;
    if (i < 0) return PSI_ERR_KEYCACHE_MISS;
    uint64_t *keys = malloc(PSI_MAX(n, 1) * 8);
    if (!keys) return PS_ERR_NOMEM;
    memcpy(keys, p->held[i].keys, n * 8);
    take_seg(m, PSI_SEG_KEYS, keys, n * 8);
    return PS_OK;
}

/* ---- zstd ----------------------------------------------------------------------------- */

/* Compress segment `seg` (keys delta-coded when raw); returns 1 if it paid. */
static int z_segment(psi_msg *m, int seg, int raw_keys, int *rv)
{
    size_t len = m->hdr.seg_len[seg], olen = 0;
    uint8_t *out = NULL, *tagged;
    *rv = PS_OK;
    if (!len) return 0;
    if (raw_keys) *rv = psi_codec_keys_encode(m->seg[seg], m->hdr.key_count, &out, &olen);
    else *rv = psi_codec_zstd_encode(m->seg[seg], len, &out, &olen);
    if (*rv != 0 || olen + 1 >= len) {
        free(out);
        return 0;
    }
    if (!(tagged = malloc(olen + 1))) {
        free(out);
        *rv = PS_ERR_NOMEM;
        return 0;
    }
    tagged[0] = raw_keys ? Z_KEYS : Z_BYTES;
    memcpy(tagged + 1, out, olen);
    free(out);
    take_seg(m, seg, tagged, olen + 1);
    return 1;
}

/* A segment that did not pay still gets its tag byte. */
static int z_tag_raw(psi_msg *m, int seg)
{
    size_t len = m->hdr.seg_len[seg];
    if (!len) return PS_OK;
    uint8_t *t = malloc(len + 1);
    if (!t) return PS_ERR_NOMEM;
    t[0] = Z_RAW;
    memcpy(t + 1, m->seg[seg], len);
    take_seg(m, seg, t, len + 1);
    return PS_OK;
}

static int z_encode(psi_msg *m)
{
    int rv1, rv2;
    int raw_keys = !has_id(m, PSI_FILTER_KEYCACHE) &&
                   m->hdr.seg_len[PSI_SEG_KEYS] == m->hdr.key_count * 8;
    int k = z_segment(m, PSI_SEG_KEYS, raw_keys, &rv1);
    int v = z_segment(m, PSI_SEG_VALS, 0, &rv2);
    if (rv1 || rv2) return rv1 ? rv1 : rv2;
    if (!k && !v) return 1; /* nothing paid: the message goes as it was */
    if ((!k && z_tag_raw(m, PSI_SEG_KEYS)) || (!v && z_tag_raw(m, PSI_SEG_VALS)))
        return PS_ERR_NOMEM;
    return add_id(m, PSI_FILTER_ZSTD);
}

static int z_decode_seg(psi_msg *m, int seg)
{
    size_t len = m->hdr.seg_len[seg], olen;
    const uint8_t *in = m->seg[seg];
    uint8_t *out = NULL;
    if (!len) return PS_OK;
    int rv = PS_OK;
    if (in[0] == Z_RAW) {
        if (len > 1 && !(out = malloc(len - 1))) return PS_ERR_NOMEM;
        if (len > 1) memcpy(out, in + 1, len - 1);
        olen = len - 1;
    } else if (in[0] == Z_KEYS && seg == PSI_SEG_KEYS) {
        /* key_count is from the wire: bound it before it sizes a buffer */
        if (m->hdr.key_count > PSI_DEFAULT_MAX_PAYLOAD / 8) return PS_ERR_TOOBIG;
        rv = psi_codec_keys_decode(in + 1, len - 1, m->hdr.key_count, (uint64_t **)&out);
        olen = m->hdr.key_count * 8;
    } else if (in[0] == Z_BYTES) {
        rv = psi_codec_zstd_decode(in + 1, len - 1, PSI_DEFAULT_MAX_PAYLOAD, &out, &olen);
    } else {
        return PS_ERR_PROTO;
    }
    if (rv != 0) return rv == PS_ERR_NOMEM ? rv : PS_ERR_PROTO;
    take_seg(m, seg, out, olen);
    return PS_OK;
}

/* ---- chains ------------------------------------------------------------------------------ */

int psi_chain_encode(psi_chain *c, uint32_t peer, psi_msg *m)
{
    int rv = 0;
    if (!psi_chain_active(c)) return PS_OK;
    if (c->quant && (rv = quant_encode(c, m)) < 0) return rv;
    if (c->keycache && (m->hdr.flags & PSI_F_REQUEST) && (rv = kc_encode(c, peer, m)) < 0)
        return rv;
    if (c->zstd && (rv = z_encode(m)) < 0) return rv;
    return PS_OK;
}

int psi_chain_decode(psi_chain *c, uint32_t peer, psi_msg *m)
{
    int rv = PS_OK;
    for (int i = PSI_MAX_FILTERS - 1; i >= 0 && rv == 0; i--) {
        uint8_t id = m->hdr.filters[i];
        if (!id) continue;
        if (id == PSI_FILTER_ZSTD) {
            rv = z_decode_seg(m, PSI_SEG_KEYS);
            if (rv == 0) rv = z_decode_seg(m, PSI_SEG_VALS);
        } else if (id == PSI_FILTER_KEYCACHE) {
            rv = c ? kc_decode(c, peer, m) : PS_ERR_PROTO;
        } else if (id == PSI_FILTER_FP16 || id == PSI_FILTER_INT8) {
            rv = quant_decode(m, id);
        } else {
            rv = PS_ERR_PROTO;
        }
    }
    if (rv == 0) memset(m->hdr.filters, 0, sizeof(m->hdr.filters));
    if (rv == 0 && (m->hdr.seg_len[PSI_SEG_KEYS] % 8 ||
                    m->hdr.seg_len[PSI_SEG_KEYS] / 8 != m->hdr.key_count))
        rv = PS_ERR_PROTO; /* by division: key_count * 8 could wrap */
    return rv;
}
