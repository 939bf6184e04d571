/*
 * test_wire.c -- unit tests of src/wire/msg.c: header and frame round trips,
 * the byte layout of msg.h, and rejection of every malformed input we can
 * think of (truncations, extra bytes, bad lengths, bad fields, flipped bits).
 *
 * Headers with a bad field are made by patching an encoded header with the
 * util.h helpers and resealing the CRC, so each test reaches the check it
 * means to test instead of stopping at the CRC.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/util.h"
#include "wire/msg.h"

#define CAP (1ull << 20)

/* A header with a distinct, non-trivial value in every field. */
static psi_hdr sample_hdr(void)
{
    psi_hdr h;

    memset(&h, 0, sizeof(h));
    h.version = PSI_WIRE_VERSION;
    h.type = PSI_MSG_DATA;
    h.flags = PSI_F_REQUEST | PSI_F_PUSH | PSI_F_RELIABLE;
    h.table = 0xA1B2C3D4u;
    h.sender = 0x01020304u;
    h.receiver = 0xFFFFFFFEu;
    h.epoch = 77;
    h.timestamp = 0x0123456789ABCDEFull;
    h.key_lo = 0x1111111122222222ull;
    h.key_hi = 0xFEDCBA9876543210ull;
    h.key_count = 3;
    for (int i = 0; i < PSI_MAX_FILTERS; i++) h.filters[i] = (uint8_t)(0x10 * i + 7);
    h.seg_len[PSI_SEG_KEYS] = 24;
    h.seg_len[PSI_SEG_VALS] = 0x100;
    h.seg_len[PSI_SEG_LENS] = 12;
    h.seg_len[PSI_SEG_AUX] = 5;
    h.arg = 0xDEADBEEFu;
    return h;
}

static void reseal(uint8_t *buf)
{
    psi_put_u32(buf + 100, psi_crc32c(buf, 100));
}

/* Encodes `h`, overwrites the u64 at `off` with `v`, reseals, decodes. */
static int decode_patched64(psi_hdr h, size_t off, uint64_t v, uint64_t cap)
{
    uint8_t buf[PSI_HDR_SIZE];
    psi_hdr out;

    psi_hdr_encode(&h, buf);
    psi_put_u64(buf + off, v);
    reseal(buf);
    return psi_hdr_decode(buf, sizeof(buf), cap, &out);
}

/* A message with all four segments filled with recognisable bytes. */
static psi_msg *sample_msg(int with_seg[PSI_NSEG])
{
    static const size_t len[PSI_NSEG] = {32, 40, 16, 7};
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);
    uint8_t data[64];

    assert_non_null(m);
    m->hdr = sample_hdr();
    for (int i = 0; i < PSI_NSEG; i++) {
        size_t n = with_seg[i] ? len[i] : 0;
        for (size_t j = 0; j < n; j++) data[j] = (uint8_t)(i * 50 + j + 1);
        assert_int_equal(psi_msg_set_seg(m, i, data, n), PS_OK);
    }
    m->hdr.key_count = m->hdr.seg_len[PSI_SEG_KEYS] / 8;
    return m;
}

/* Encodes `m` into a fresh buffer; returns it and its size in *size. */
static uint8_t *encode(const psi_msg *m, size_t *size)
{
    uint8_t *buf;
    long n;

    *size = psi_frame_size(m);
    buf = malloc(*size);
    assert_non_null(buf);
    n = psi_frame_encode(m, buf, *size);
    assert_int_equal(n, (long)*size);
    return buf;
}

/* Field by field: struct copies need not preserve padding bytes. */
static void assert_same_hdr(const psi_hdr *a, const psi_hdr *b)
{
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->table, b->table);
    assert_int_equal(a->sender, b->sender);
    assert_int_equal(a->receiver, b->receiver);
    assert_int_equal(a->epoch, b->epoch);
    assert_int_equal(a->timestamp, b->timestamp);
    assert_int_equal(a->key_lo, b->key_lo);
    assert_int_equal(a->key_hi, b->key_hi);
    assert_int_equal(a->key_count, b->key_count);
    assert_memory_equal(a->filters, b->filters, PSI_MAX_FILTERS);
    for (int i = 0; i < PSI_NSEG; i++) assert_int_equal(a->seg_len[i], b->seg_len[i]);
    assert_int_equal(a->arg, b->arg);
}

static void assert_same_msg(const psi_msg *a, const psi_msg *b)
{
    assert_same_hdr(&a->hdr, &b->hdr);
    for (int i = 0; i < PSI_NSEG; i++) {
        if (a->hdr.seg_len[i] == 0) {
            assert_null(b->seg[i]);
            continue;
        }
        assert_non_null(b->seg[i]);
        assert_memory_equal(a->seg[i], b->seg[i], a->hdr.seg_len[i]);
    }
}

/* ---- CRC, header --------------------------------------------------------- */

static void test_crc32c_known_vector(void **state)
{
    assert_int_equal(psi_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(psi_crc32c("", 0), 0);
}

static void test_hdr_round_trip_every_field(void **state)
{
    psi_hdr h = sample_hdr(), out;
    uint8_t buf[PSI_HDR_SIZE];

    memset(&out, 0x5A, sizeof(out));
    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_OK);
    assert_int_equal(out.version, PSI_WIRE_VERSION);
    assert_int_equal(out.type, PSI_MSG_DATA);
    assert_int_equal(out.flags, h.flags);
    assert_int_equal(out.table, 0xA1B2C3D4u);
    assert_int_equal(out.sender, 0x01020304u);
    assert_int_equal(out.receiver, 0xFFFFFFFEu);
    assert_int_equal(out.epoch, 77);
    assert_int_equal(out.timestamp, 0x0123456789ABCDEFull);
    assert_int_equal(out.key_lo, h.key_lo);
    assert_int_equal(out.key_hi, h.key_hi);
    assert_int_equal(out.key_count, 3);
    assert_memory_equal(out.filters, h.filters, PSI_MAX_FILTERS);
    for (int i = 0; i < PSI_NSEG; i++) assert_int_equal(out.seg_len[i], h.seg_len[i]);
    assert_int_equal(out.arg, 0xDEADBEEFu);
}

/* The byte layout is the one documented in msg.h, little-endian. */
static void test_hdr_layout_matches_msg_h(void **state)
{
    psi_hdr h = sample_hdr();
    uint8_t buf[PSI_HDR_SIZE];

    psi_hdr_encode(&h, buf);
    assert_memory_equal(buf, "PSM1", 4);
    assert_int_equal(buf[4], PSI_WIRE_VERSION);
    assert_int_equal(buf[5], PSI_MSG_DATA);
    assert_int_equal(buf[6], h.flags & 0xFF);
    assert_int_equal(buf[8], 0xD4);
    assert_int_equal(buf[11], 0xA1);
    assert_int_equal(buf[12], 0x04);
    assert_int_equal(buf[19], 0xFF);
    assert_int_equal(buf[20], 77);
    assert_int_equal(buf[24], 0xEF);
    assert_int_equal(buf[31], 0x01);
    assert_int_equal(buf[40], 0x10);
    assert_int_equal(buf[48], 3);
    assert_int_equal(buf[57], 0x17);
    assert_int_equal(buf[64], 24);
    assert_int_equal(buf[72 + 1], 0x01);
    assert_int_equal(buf[96], 0xEF);
    assert_int_equal(psi_get_u32(buf + 100), psi_crc32c(buf, 100));
}

static void test_hdr_decode_wrong_length(void **state)
{
    psi_hdr h = sample_hdr(), out;
    uint8_t buf[PSI_HDR_SIZE + 1] = {0};

    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, PSI_HDR_SIZE - 1, CAP, &out), PS_ERR_PROTO);
    assert_int_equal(psi_hdr_decode(buf, PSI_HDR_SIZE + 1, CAP, &out), PS_ERR_PROTO);
    assert_int_equal(psi_hdr_decode(NULL, 0, CAP, &out), PS_ERR_PROTO);
    assert_int_equal(psi_hdr_decode(buf, PSI_HDR_SIZE, CAP, NULL), PS_ERR_INVAL);
}

static void test_hdr_bad_magic_version_crc(void **state)
{
    psi_hdr h = sample_hdr(), out;
    uint8_t buf[PSI_HDR_SIZE];

    psi_hdr_encode(&h, buf);
    buf[3] = '2';
    reseal(buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_ERR_PROTO);
    for (int v = 0; v < 256; v++) {
        if (v == PSI_WIRE_VERSION) continue;
        psi_hdr_encode(&h, buf);
        buf[4] = (uint8_t)v;
        reseal(buf);
        assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_ERR_PROTO);
    }
    psi_hdr_encode(&h, buf);
    buf[100] ^= 1;
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_ERR_PROTO);
}

static void test_hdr_bad_type(void **state)
{
    psi_hdr h = sample_hdr(), out;
    uint8_t buf[PSI_HDR_SIZE];

    for (int t = 0; t < 256; t++) {
        int valid = t > PSI_MSG_INVALID && t < PSI_MSG_TYPE_MAX;
        psi_hdr_encode(&h, buf);
        buf[5] = (uint8_t)t;
        reseal(buf);
        assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out),
                         valid ? PS_OK : PS_ERR_PROTO);
    }
}

static void test_hdr_bad_flags(void **state)
{
    psi_hdr h = sample_hdr(), out;
    uint8_t buf[PSI_HDR_SIZE];

    for (int bit = 0; bit < 16; bit++) {
        h.flags = (uint16_t)(1u << bit);
        psi_hdr_encode(&h, buf);
        assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out),
                         (1u << bit) & PSI_F_ALL ? PS_OK : PS_ERR_PROTO);
    }
    h.flags = PSI_F_ALL;
    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_OK);
}

static void test_hdr_key_range(void **state)
{
    psi_hdr h = sample_hdr(), out;
    uint8_t buf[PSI_HDR_SIZE];

    h.key_lo = 10, h.key_hi = 9;
    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_ERR_PROTO);
    h.key_lo = 9;
    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_OK);
    h.key_lo = 0, h.key_hi = 0;
    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_OK);
}

/* ---- lengths --------------------------------------------------------------- */

static void test_seg_len_over_cap_is_toobig(void **state)
{
    psi_hdr h = sample_hdr();

    h.seg_len[PSI_SEG_KEYS] = 0, h.key_count = 0;
    for (int i = 0; i < PSI_NSEG; i++) {
        size_t off = 64 + 8 * (size_t)i;
        assert_int_equal(decode_patched64(h, off, CAP + 1, CAP), PS_ERR_TOOBIG);
        assert_int_equal(decode_patched64(h, off, UINT64_MAX, CAP), PS_ERR_TOOBIG);
    }
    /* exactly at the cap is fine when the others are empty */
    memset(h.seg_len, 0, sizeof(h.seg_len));
    assert_int_equal(decode_patched64(h, 64 + 8 * PSI_SEG_AUX, CAP, CAP), PS_OK);
}

static void test_seg_sum_over_cap_is_toobig(void **state)
{
    psi_hdr h = sample_hdr(), out;
    uint8_t buf[PSI_HDR_SIZE];

    h.key_count = 0;
    for (int i = 0; i < PSI_NSEG; i++) h.seg_len[i] = i == 0 ? 0 : CAP / 2;
    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_ERR_TOOBIG);
    h.seg_len[PSI_SEG_AUX] = 0;
    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), CAP, &out), PS_OK);
}

/* Sums that wrap a u64 must not sneak under even the largest cap. */
static void test_seg_sum_overflow_rejected(void **state)
{
    psi_hdr h = sample_hdr(), out;
    uint8_t buf[PSI_HDR_SIZE];

    h.key_count = 0, h.seg_len[PSI_SEG_KEYS] = 0;
    h.seg_len[PSI_SEG_VALS] = 1ull << 63;
    h.seg_len[PSI_SEG_LENS] = 1ull << 63;
    h.seg_len[PSI_SEG_AUX] = 16;
    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), UINT64_MAX, &out), PS_ERR_TOOBIG);
    h.seg_len[PSI_SEG_VALS] = UINT64_MAX, h.seg_len[PSI_SEG_LENS] = 0;
    h.seg_len[PSI_SEG_AUX] = 1;
    psi_hdr_encode(&h, buf);
    assert_int_equal(psi_hdr_decode(buf, sizeof(buf), UINT64_MAX, &out), PS_ERR_TOOBIG);
    /* psi_msg_payload_len saturates rather than wrapping */
    h.seg_len[PSI_SEG_VALS] = 1ull << 63, h.seg_len[PSI_SEG_LENS] = (1ull << 63) + 5;
    h.seg_len[PSI_SEG_AUX] = 0;
    assert_int_equal(psi_msg_payload_len(&h), UINT64_MAX);
    h.seg_len[PSI_SEG_LENS] = (1ull << 63) - 1;
    assert_int_equal(psi_msg_payload_len(&h), UINT64_MAX);
    h.seg_len[PSI_SEG_LENS] = 7;
    assert_int_equal(psi_msg_payload_len(&h), (1ull << 63) + 7);
}

static void test_key_count_mismatch_is_proto(void **state)
{
    psi_hdr h = sample_hdr(); /* 24 bytes of keys, key_count 3 */

    /* with filters applied the keys are encoded: the kv layer checks them */
    assert_int_equal(decode_patched64(h, 48, 2, CAP), PS_OK);
    memset(h.filters, 0, sizeof(h.filters)); /* no filters: checked here */

    assert_int_equal(decode_patched64(h, 48, 3, CAP), PS_OK);
    assert_int_equal(decode_patched64(h, 48, 2, CAP), PS_ERR_PROTO);
    assert_int_equal(decode_patched64(h, 48, 4, CAP), PS_ERR_PROTO);
    /* 8 * 2^61 wraps to 0: must not match an empty keys segment */
    h.seg_len[PSI_SEG_KEYS] = 0;
    assert_int_equal(decode_patched64(h, 48, 1ull << 61, CAP), PS_ERR_PROTO);
    assert_int_equal(decode_patched64(h, 48, UINT64_MAX, CAP), PS_ERR_PROTO);
    /* a keys segment that is not a whole number of keys */
    h.seg_len[PSI_SEG_KEYS] = 25;
    assert_int_equal(decode_patched64(h, 48, 3, CAP), PS_ERR_PROTO);
}

/* ---- frames ------------------------------------------------------------------ */

static void frame_round_trip(int with_seg[PSI_NSEG])
{
    psi_msg *m = sample_msg(with_seg), *d = (psi_msg *)1;
    size_t size;
    uint8_t *buf = encode(m, &size);
    uint64_t payload = 0;

    for (int i = 0; i < PSI_NSEG; i++) payload += m->hdr.seg_len[i];
    assert_int_equal(size, PSI_HDR_SIZE + payload);
    assert_int_equal(psi_frame_decode(buf, size, CAP, &d), PS_OK);
    assert_non_null(d);
    assert_int_equal(d->borrowed, 0);
    assert_same_msg(m, d);
    psi_msg_free(d);
    psi_msg_free(m);
    free(buf);
}

static void test_frame_round_trip_all_segments(void **state)
{
    frame_round_trip((int[PSI_NSEG]){1, 1, 1, 1});
}

static void test_frame_round_trip_some_empty(void **state)
{
    frame_round_trip((int[PSI_NSEG]){1, 0, 1, 0});
    frame_round_trip((int[PSI_NSEG]){0, 1, 0, 1});
    frame_round_trip((int[PSI_NSEG]){0, 0, 0, 1});
}

static void test_frame_round_trip_no_segments(void **state)
{
    psi_msg *m = psi_msg_new(PSI_MSG_HEARTBEAT), *d = NULL;
    uint8_t buf[PSI_HDR_SIZE];

    assert_non_null(m);
    m->hdr.sender = 5, m->hdr.flags = PSI_F_CONTROL;
    assert_int_equal(psi_frame_size(m), PSI_HDR_SIZE);
    assert_int_equal(psi_frame_encode(m, buf, sizeof(buf)), PSI_HDR_SIZE);
    assert_int_equal(psi_frame_decode(buf, sizeof(buf), CAP, &d), PS_OK);
    assert_non_null(d);
    assert_same_msg(m, d);
    for (int i = 0; i < PSI_NSEG; i++) assert_null(d->seg[i]);
    psi_msg_free(d);
    psi_msg_free(m);
}

static void test_frame_every_truncation_rejected(void **state)
{
    psi_msg *m = sample_msg((int[PSI_NSEG]){1, 1, 1, 1});
    size_t size;
    uint8_t *buf = encode(m, &size);

    for (size_t len = 0; len < size; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees overreads */
        psi_msg *d = (psi_msg *)1;
        assert_non_null(copy);
        memcpy(copy, buf, len);
        assert_int_equal(psi_frame_decode(copy, len, CAP, &d), PS_ERR_PROTO);
        assert_null(d);
        free(copy);
    }
    psi_msg_free(m);
    free(buf);
}

static void test_frame_extra_byte_rejected(void **state)
{
    psi_msg *m = sample_msg((int[PSI_NSEG]){1, 1, 0, 1}), *d = (psi_msg *)1;
    size_t size = psi_frame_size(m);
    uint8_t *buf = malloc(size + 1);

    assert_non_null(buf);
    assert_int_equal(psi_frame_encode(m, buf, size + 1), (long)size);
    buf[size] = 0;
    assert_int_equal(psi_frame_decode(buf, size + 1, CAP, &d), PS_ERR_PROTO);
    assert_null(d);
    assert_int_equal(psi_frame_decode(buf, size, CAP, &d), PS_OK);
    psi_msg_free(d);
    psi_msg_free(m);
    free(buf);
}

static void test_frame_over_cap_rejected(void **state)
{
    psi_msg *m = sample_msg((int[PSI_NSEG]){1, 1, 1, 1}), *d = (psi_msg *)1;
    size_t size;
    uint8_t *buf = encode(m, &size);

    assert_int_equal(psi_frame_decode(buf, size, size - PSI_HDR_SIZE - 1, &d),
                     PS_ERR_TOOBIG);
    assert_null(d);
    assert_int_equal(psi_frame_decode(buf, size, size - PSI_HDR_SIZE, &d), PS_OK);
    psi_msg_free(d);
    psi_msg_free(m);
    free(buf);
}

/* Every single-bit flip in the header is caught, standalone and in a frame. */
static void test_header_bit_flips_rejected(void **state)
{
    psi_msg *m = sample_msg((int[PSI_NSEG]){1, 1, 1, 1});
    size_t size;
    uint8_t *buf = encode(m, &size);
    psi_hdr out;

    for (int bit = 0; bit < PSI_HDR_SIZE * 8; bit++) {
        psi_msg *d = (psi_msg *)1;
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_not_equal(psi_hdr_decode(buf, PSI_HDR_SIZE, CAP, &out), PS_OK);
        assert_int_not_equal(psi_frame_decode(buf, size, CAP, &d), PS_OK);
        assert_null(d);
        buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(psi_hdr_decode(buf, PSI_HDR_SIZE, CAP, &out), PS_OK);
    psi_msg_free(m);
    free(buf);
}

static void test_frame_encode_small_cap(void **state)
{
    psi_msg *m = sample_msg((int[PSI_NSEG]){1, 0, 0, 1});
    size_t size = psi_frame_size(m);
    uint8_t *buf = calloc(1, size);

    assert_non_null(buf);
    assert_int_equal(psi_frame_encode(m, buf, size - 1), PS_ERR_TOOBIG);
    assert_int_equal(psi_frame_encode(m, buf, 0), PS_ERR_TOOBIG);
    assert_int_equal(psi_frame_encode(m, buf, size), (long)size);
    psi_msg_free(m);
    free(buf);
}

/* ---- messages in memory ------------------------------------------------------ */

static void test_msg_new_zeroed(void **state)
{
    psi_msg *m = psi_msg_new(PSI_MSG_VIEW);
    psi_hdr want;

    assert_non_null(m);
    memset(&want, 0, sizeof(want));
    want.version = PSI_WIRE_VERSION;
    want.type = PSI_MSG_VIEW;
    assert_same_hdr(&want, &m->hdr);
    for (int i = 0; i < PSI_NSEG; i++) assert_null(m->seg[i]);
    assert_int_equal(m->borrowed, 0);
    psi_msg_free(m);
    psi_msg_free(NULL);
}

static void test_msg_dup_deep_copies(void **state)
{
    psi_msg *m = sample_msg((int[PSI_NSEG]){1, 1, 0, 1}), *d;
    uint8_t stack_aux[3] = {9, 8, 7};

    assert_int_equal(psi_msg_set_seg(m, PSI_SEG_AUX, NULL, 0), PS_OK);
    m->seg[PSI_SEG_AUX] = stack_aux;
    m->hdr.seg_len[PSI_SEG_AUX] = sizeof(stack_aux);
    m->borrowed = 1u << PSI_SEG_AUX;
    d = psi_msg_dup(m);
    assert_non_null(d);
    assert_same_msg(m, d);
    assert_int_equal(d->borrowed, 0);
    for (int i = 0; i < PSI_NSEG; i++)
        if (m->seg[i]) assert_ptr_not_equal(d->seg[i], m->seg[i]);
    ((uint8_t *)m->seg[PSI_SEG_KEYS])[0] ^= 0xFF;
    stack_aux[0] = 0;
    assert_int_not_equal(((uint8_t *)d->seg[PSI_SEG_KEYS])[0],
                         ((uint8_t *)m->seg[PSI_SEG_KEYS])[0]);
    assert_int_equal(((uint8_t *)d->seg[PSI_SEG_AUX])[0], 9);
    psi_msg_free(m); /* must not free stack_aux */
    psi_msg_free(d); /* must free its own copy */
    assert_null(psi_msg_dup(NULL));
}

static void test_borrowed_segments_not_freed(void **state)
{
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);
    uint64_t keys[2] = {1, 2};
    uint8_t vals[4] = {1, 2, 3, 4};

    assert_non_null(m);
    m->seg[PSI_SEG_KEYS] = keys, m->hdr.seg_len[PSI_SEG_KEYS] = sizeof(keys);
    m->seg[PSI_SEG_VALS] = vals, m->hdr.seg_len[PSI_SEG_VALS] = sizeof(vals);
    m->borrowed = (1u << PSI_SEG_KEYS) | (1u << PSI_SEG_VALS);
    assert_int_equal(psi_msg_set_seg(m, PSI_SEG_AUX, "owned", 5), PS_OK);
    /* replacing a borrowed segment leaves the old buffer alone */
    assert_int_equal(psi_msg_set_seg(m, PSI_SEG_VALS, "abcd", 4), PS_OK);
    assert_int_equal(m->borrowed, 1u << PSI_SEG_KEYS);
    assert_int_equal(vals[0], 1);
    assert_memory_equal(m->seg[PSI_SEG_VALS], "abcd", 4);
    psi_msg_free(m);
    assert_int_equal(keys[1], 2);
}

static void test_set_seg_replace_and_clear(void **state)
{
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);

    assert_non_null(m);
    assert_int_equal(psi_msg_set_seg(m, PSI_SEG_LENS, "0123456789", 10), PS_OK);
    assert_int_equal(m->hdr.seg_len[PSI_SEG_LENS], 10);
    /* the new data may come from the segment being replaced */
    assert_int_equal(psi_msg_set_seg(m, PSI_SEG_LENS, (char *)m->seg[PSI_SEG_LENS] + 6, 4),
                     PS_OK);
    assert_int_equal(m->hdr.seg_len[PSI_SEG_LENS], 4);
    assert_memory_equal(m->seg[PSI_SEG_LENS], "6789", 4);
    assert_int_equal(psi_msg_set_seg(m, PSI_SEG_LENS, "x", 0), PS_OK);
    assert_null(m->seg[PSI_SEG_LENS]);
    assert_int_equal(m->hdr.seg_len[PSI_SEG_LENS], 0);
    assert_int_equal(psi_msg_set_seg(m, PSI_NSEG, "x", 1), PS_ERR_INVAL);
    assert_int_equal(psi_msg_set_seg(m, -1, "x", 1), PS_ERR_INVAL);
    assert_int_equal(psi_msg_set_seg(m, PSI_SEG_AUX, NULL, 1), PS_ERR_INVAL);
    assert_null(m->seg[PSI_SEG_AUX]);
    psi_msg_free(m);
}

static void test_type_names(void **state)
{
    assert_string_equal(psi_msg_type_name(PSI_MSG_JOIN), "JOIN");
    assert_string_equal(psi_msg_type_name(PSI_MSG_BARRIER_DONE), "BARRIER_DONE");
    assert_string_equal(psi_msg_type_name(PSI_MSG_DATA), "DATA");
    assert_string_equal(psi_msg_type_name(PSI_MSG_TYPE_MAX), "?");
    assert_string_equal(psi_msg_type_name(-1), "?");
    for (int t = PSI_MSG_INVALID; t < PSI_MSG_TYPE_MAX; t++)
        assert_string_not_equal(psi_msg_type_name(t), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_known_vector),
        cmocka_unit_test(test_hdr_round_trip_every_field),
        cmocka_unit_test(test_hdr_layout_matches_msg_h),
        cmocka_unit_test(test_hdr_decode_wrong_length),
        cmocka_unit_test(test_hdr_bad_magic_version_crc),
        cmocka_unit_test(test_hdr_bad_type),
        cmocka_unit_test(test_hdr_bad_flags),
        cmocka_unit_test(test_hdr_key_range),
        cmocka_unit_test(test_seg_len_over_cap_is_toobig),
        cmocka_unit_test(test_seg_sum_over_cap_is_toobig),
        cmocka_unit_test(test_seg_sum_overflow_rejected),
        cmocka_unit_test(test_key_count_mismatch_is_proto),
        cmocka_unit_test(test_frame_round_trip_all_segments),
        cmocka_unit_test(test_frame_round_trip_some_empty),
        cmocka_unit_test(test_frame_round_trip_no_segments),
        cmocka_unit_test(test_frame_every_truncation_rejected),
        cmocka_unit_test(test_frame_extra_byte_rejected),
        cmocka_unit_test(test_frame_over_cap_rejected),
        cmocka_unit_test(test_header_bit_flips_rejected),
        cmocka_unit_test(test_frame_encode_small_cap),
        cmocka_unit_test(test_msg_new_zeroed),
        cmocka_unit_test(test_msg_dup_deep_copies),
        cmocka_unit_test(test_borrowed_segments_not_freed),
        cmocka_unit_test(test_set_seg_replace_and_clear),
        cmocka_unit_test(test_type_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
