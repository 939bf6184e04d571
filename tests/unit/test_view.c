/*
 * test_view.c -- unit tests of src/node/view.c: cluster view and join
 * request encodings (round trips and rejection of every malformed input:
 * truncations, trailing bytes, unsorted or duplicate ids, out-of-range
 * fields, bad addresses, impossible counts) and the view queries
 * (find, count, newly_dead, is_newer, copy).
 *
 * Malformed encodings are made by patching a valid encoding at the offset
 * of one field (view.c's layout: u32 epoch, u32 n, then per node u32 id,
 * u8 role, u8 alive, i32 rank, u16 addr_len, addr), so each case reaches the
 * check it means to test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node/view.h"
#include "util/util.h"

#define NODE_FIXED 12

/*
 * Largest calloc() request made while `calloc_track` is set, to check that
 * the decoder sizes its allocation by the bytes it was given and not by an
 * untrusted count.  The library is linked statically into this program, so
 * its calls resolve to this wrapper.  Left out under ASan, whose allocator
 * must not be bypassed; those builds still check the PS_ERR_PROTO answer.
 */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_CALLOC_PROBE 1
#endif
#endif
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__) && !defined(NO_CALLOC_PROBE)
#define HAVE_CALLOC_PROBE 1
extern void *__libc_calloc(size_t n, size_t size);
static int calloc_track;
static size_t calloc_max;
void *calloc(size_t n, size_t size)
{
    size_t bytes;
    if (calloc_track) {
        if (__builtin_mul_overflow(n, size, &bytes)) bytes = SIZE_MAX;
        if (bytes > calloc_max) calloc_max = bytes;
    }
    return __libc_calloc(n, size);
}
#endif
#define LONGEST_ADDR "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:"

/* ---- helpers ---------------------------------------------------------------- */

static void set_node(psi_node *nd, uint32_t id, int role, int alive, int32_t rank,
                     const char *addr)
{
    memset(nd, 0, sizeof(*nd));
    nd->id = id;
    nd->role = (uint8_t)role;
    nd->alive = (uint8_t)alive;
    nd->rank = rank;
    snprintf(nd->addr, sizeof(nd->addr), "%s", addr);
}

/* Five nodes with every role, both alive values, several ranks and
 * addresses of length 0, ordinary and PSI_ADDR_MAX - 1. */
static psi_node sample_nodes[5];
static psi_view sample_view(void)
{
    set_node(&sample_nodes[0], 0, PS_ROLE_SCHEDULER, 1, 0, "10.0.0.1:9000");
    set_node(&sample_nodes[1], 1, PS_ROLE_SERVER, 1, 0, "server-a.example:7001");
    set_node(&sample_nodes[2], 2, PS_ROLE_SERVER, 0, 1, "");
    set_node(&sample_nodes[3], 7, PS_ROLE_WORKER, 1, 4, LONGEST_ADDR);
    set_node(&sample_nodes[4], 0x12345678u, PS_ROLE_WORKER, 0, 0x7FFFFFFF, "[::1]:1");
    return (psi_view){.epoch = 0xA1B2C3D4u, .n = 5, .nodes = sample_nodes};
}

/* Offset of node record `i` in the encoding of sample_view(). */
static size_t rec_off(int i)
{
    size_t off = 8;
    for (int k = 0; k < i; k++) off += NODE_FIXED + strlen(sample_nodes[k].addr);
    return off;
}

static void encode_sample(uint8_t **buf, size_t *len)
{
    psi_view v = sample_view();
    assert_int_equal(psi_view_encode(&v, buf, len), PS_OK);
}

/* Decoding must fail with PS_ERR_PROTO and leave `out` empty. */
static void assert_view_rejected(const uint8_t *buf, size_t len)
{
    psi_view out;
    memset(&out, 0xAB, sizeof(out));
    assert_int_equal(psi_view_decode(buf, len, &out), PS_ERR_PROTO);
    assert_null(out.nodes);
    assert_int_equal(out.n, 0);
}

/* ---- view encoding -------------------------------------------------------- */

static void test_view_round_trip(void **state)
{
    (void)state;
    psi_view v = sample_view(), out;
    uint8_t *buf;
    size_t len;

    assert_int_equal(psi_view_encode(&v, &buf, &len), PS_OK);
    size_t want = 8;
    for (int i = 0; i < 5; i++) want += NODE_FIXED + strlen(sample_nodes[i].addr);
    assert_int_equal(len, want);
    /* Spot-check the layout: epoch, n, first record. */
    assert_int_equal(psi_get_u32(buf), 0xA1B2C3D4u);
    assert_int_equal(psi_get_u32(buf + 4), 5);
    assert_int_equal(psi_get_u32(buf + 8), 0);
    assert_int_equal(psi_get_u16(buf + 8 + 10), strlen("10.0.0.1:9000"));
    assert_memory_equal(buf + 8 + NODE_FIXED, "10.0.0.1:9000", 13);

    assert_int_equal(psi_view_decode(buf, len, &out), PS_OK);
    assert_int_equal(out.epoch, 0xA1B2C3D4u);
    assert_int_equal(out.n, 5);
    assert_non_null(out.nodes);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(out.nodes[i].id, sample_nodes[i].id);
        assert_int_equal(out.nodes[i].role, sample_nodes[i].role);
        assert_int_equal(out.nodes[i].alive, sample_nodes[i].alive);
        assert_int_equal(out.nodes[i].rank, sample_nodes[i].rank);
        assert_string_equal(out.nodes[i].addr, sample_nodes[i].addr);
    }
    psi_view_free(&out);
    assert_null(out.nodes);
    assert_int_equal(out.n, 0);
    free(buf);
}

static void test_view_empty_round_trip(void **state)
{
    (void)state;
    psi_view v = {.epoch = 3, .n = 0, .nodes = NULL}, out;
    uint8_t *buf;
    size_t len;

    assert_int_equal(psi_view_encode(&v, &buf, &len), PS_OK);
    assert_int_equal(len, 8);
    assert_int_equal(psi_view_decode(buf, len, &out), PS_OK);
    assert_int_equal(out.epoch, 3);
    assert_int_equal(out.n, 0);
    assert_null(out.nodes);
    free(buf);
}

static void test_view_every_truncation_rejected(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;

    encode_sample(&buf, &len);
    for (size_t l = 0; l < len; l++) {
        /* A copy of exactly l bytes so ASan catches any read past it. */
        uint8_t *t = malloc(l ? l : 1);
        assert_non_null(t);
        memcpy(t, buf, l);
        assert_view_rejected(t, l);
        free(t);
    }
    free(buf);
}

static void test_view_trailing_bytes_rejected(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;

    encode_sample(&buf, &len);
    uint8_t *t = malloc(len + NODE_FIXED);
    assert_non_null(t);
    memcpy(t, buf, len);
    memset(t + len, 0, NODE_FIXED);
    assert_view_rejected(t, len + 1);
    /* Even a whole zero record's worth of garbage after the last node. */
    assert_view_rejected(t, len + NODE_FIXED);
    free(t);
    free(buf);
}

static void test_view_unsorted_ids_rejected(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;

    encode_sample(&buf, &len);
    /* Node 3 (id 7) gets id 1 < previous id 2. */
    psi_put_u32(buf + rec_off(3), 1);
    assert_view_rejected(buf, len);
    free(buf);
}

static void test_view_duplicate_ids_rejected(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;

    encode_sample(&buf, &len);
    psi_put_u32(buf + rec_off(2), 1); /* same id as node 1 */
    assert_view_rejected(buf, len);
    free(buf);

    encode_sample(&buf, &len);
    psi_put_u32(buf + rec_off(1), 0); /* same id as node 0 */
    assert_view_rejected(buf, len);
    free(buf);
}

static void test_view_bad_role_rejected(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;

    for (int bad = 3; bad <= 255; bad += 252) {
        encode_sample(&buf, &len);
        psi_put_u8(buf + rec_off(4) + 4, (uint8_t)bad);
        assert_view_rejected(buf, len);
        free(buf);
    }
    /* Role 2 at the same place is fine (control for the patching). */
    encode_sample(&buf, &len);
    psi_put_u8(buf + rec_off(1) + 4, PS_ROLE_WORKER);
    psi_view out;
    assert_int_equal(psi_view_decode(buf, len, &out), PS_OK);
    assert_int_equal(out.nodes[1].role, PS_ROLE_WORKER);
    psi_view_free(&out);
    free(buf);
}

static void test_view_bad_alive_rejected(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;

    encode_sample(&buf, &len);
    psi_put_u8(buf + rec_off(0) + 5, PSI_NODE_JOINING + 1); /* past the last state */
    assert_view_rejected(buf, len);
    free(buf);
    encode_sample(&buf, &len);
    psi_put_u8(buf + rec_off(2) + 5, 0xFF);
    assert_view_rejected(buf, len);
    free(buf);
}

static void test_view_negative_rank_rejected(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;

    encode_sample(&buf, &len);
    psi_put_u32(buf + rec_off(1) + 6, 0xFFFFFFFFu); /* -1 */
    assert_view_rejected(buf, len);
    free(buf);
    encode_sample(&buf, &len);
    psi_put_u32(buf + rec_off(3) + 6, 0x80000000u); /* INT32_MIN */
    assert_view_rejected(buf, len);
    free(buf);
}

static void test_view_addr_with_nul_rejected(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;

    /* NUL in the middle, at the start and as the last byte. */
    size_t at[3] = {3, 0, strlen("server-a.example:7001") - 1};
    for (int k = 0; k < 3; k++) {
        encode_sample(&buf, &len);
        buf[rec_off(1) + NODE_FIXED + at[k]] = 0;
        assert_view_rejected(buf, len);
        free(buf);
    }
}

/* A one-node view whose address field is `al` bytes of 'x'. */
static size_t one_node_with_addr_len(uint8_t *buf, size_t al)
{
    psi_put_u32(buf, 1);
    psi_put_u32(buf + 4, 1);
    psi_put_u32(buf + 8, 5);
    psi_put_u8(buf + 12, PS_ROLE_SERVER);
    psi_put_u8(buf + 13, 1);
    psi_put_u32(buf + 14, 0);
    psi_put_u16(buf + 18, (uint16_t)al);
    memset(buf + 20, 'x', al);
    return 20 + al;
}

static void test_view_addr_too_long_rejected(void **state)
{
    (void)state;
    uint8_t buf[20 + 0x10000];
    psi_view out;

    size_t len = one_node_with_addr_len(buf, PSI_ADDR_MAX - 1); /* longest valid */
    assert_int_equal(psi_view_decode(buf, len, &out), PS_OK);
    assert_int_equal(strlen(out.nodes[0].addr), PSI_ADDR_MAX - 1);
    psi_view_free(&out);

    len = one_node_with_addr_len(buf, PSI_ADDR_MAX);
    assert_view_rejected(buf, len);
    len = one_node_with_addr_len(buf, PSI_ADDR_MAX + 1);
    assert_view_rejected(buf, len);
    len = one_node_with_addr_len(buf, 0xFFFF);
    assert_view_rejected(buf, len);
}

static void test_view_addr_len_past_end_rejected(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;

    /* The last node claims one more address byte than there is. */
    encode_sample(&buf, &len);
    size_t off = rec_off(4) + 10;
    psi_put_u16(buf + off, (uint16_t)(psi_get_u16(buf + off) + 1));
    assert_view_rejected(buf, len);
    free(buf);
}

/* Decode `buf` expecting PS_ERR_PROTO, and (where the probe exists) no
 * allocation bigger than what the bytes could describe. */
static void assert_rejected_small_alloc(const uint8_t *buf, size_t len)
{
#ifdef HAVE_CALLOC_PROBE
    calloc_max = 0;
    calloc_track = 1;
#endif
    assert_view_rejected(buf, len);
#ifdef HAVE_CALLOC_PROBE
    calloc_track = 0;
    size_t fit = len >= 8 ? (len - 8) / NODE_FIXED : 0;
    assert_true(calloc_max <= fit * sizeof(psi_node));
#endif
}

static void test_view_huge_count_rejected(void **state)
{
    (void)state;
    uint8_t hdr[8 + NODE_FIXED];
    uint8_t *buf;
    size_t len;

    /* A count no buffer of this size can hold.  Were it trusted, calloc of
     * 4G nodes would fail (NOMEM) or be huge; it must be PROTO, cheaply. */
    memset(hdr, 0, sizeof(hdr));
    psi_put_u32(hdr, 1);
    psi_put_u32(hdr + 4, 0xFFFFFFFFu);
    assert_rejected_small_alloc(hdr, 8);
    assert_rejected_small_alloc(hdr, sizeof(hdr));
    /* Within PSI_MAX_NODES but far more than 12 bytes can hold. */
    psi_put_u32(hdr + 4, PSI_MAX_NODES);
    assert_rejected_small_alloc(hdr, 8);
    assert_rejected_small_alloc(hdr, sizeof(hdr));
    psi_put_u32(hdr + 4, 2);
    assert_rejected_small_alloc(hdr, sizeof(hdr));

    /* A valid encoding whose count is one more than its records. */
    encode_sample(&buf, &len);
    psi_put_u32(buf + 4, 6);
    assert_rejected_small_alloc(buf, len);
    psi_put_u32(buf + 4, 4);
    assert_view_rejected(buf, len); /* one record left over */
    free(buf);
}

/* PSI_MAX_NODES nodes decode; PSI_MAX_NODES + 1 (with all the bytes
 * present) do not. */
static void test_view_max_nodes_boundary(void **state)
{
    (void)state;
    uint32_t n = PSI_MAX_NODES + 1;
    psi_node *nodes = calloc(n, sizeof(*nodes));
    psi_view v = {.epoch = 9, .n = n, .nodes = nodes}, out;
    uint8_t *buf;
    size_t len;

    assert_non_null(nodes);
    for (uint32_t i = 0; i < n; i++)
        set_node(&nodes[i], i, PS_ROLE_WORKER, 1, (int32_t)i, "");
    assert_int_equal(psi_view_encode(&v, &buf, &len), PS_OK);
    assert_int_equal(len, 8 + (size_t)n * NODE_FIXED);
    assert_view_rejected(buf, len);
    free(buf);

    v.n = PSI_MAX_NODES;
    assert_int_equal(psi_view_encode(&v, &buf, &len), PS_OK);
    assert_int_equal(psi_view_decode(buf, len, &out), PS_OK);
    assert_int_equal(out.n, PSI_MAX_NODES);
    assert_int_equal(out.nodes[PSI_MAX_NODES - 1].id, PSI_MAX_NODES - 1);
    assert_int_equal(out.nodes[PSI_MAX_NODES - 1].rank, PSI_MAX_NODES - 1);
    psi_view_free(&out);
    free(buf);
    free(nodes);
}

/* ---- view queries --------------------------------------------------------- */

static void test_view_find(void **state)
{
    (void)state;
    psi_view v = sample_view();

    for (int i = 0; i < 5; i++) {
        const psi_node *nd = psi_view_find(&v, sample_nodes[i].id);
        assert_ptr_equal(nd, &sample_nodes[i]);
    }
    assert_null(psi_view_find(&v, 3));          /* between 2 and 7 */
    assert_null(psi_view_find(&v, 8));          /* between 7 and 0x12345678 */
    assert_null(psi_view_find(&v, 0x12345679u)); /* above the largest */
    assert_null(psi_view_find(&v, PSI_ID_NONE));

    psi_view one = {.epoch = 1, .n = 1, .nodes = &sample_nodes[3]};
    assert_ptr_equal(psi_view_find(&one, 7), &sample_nodes[3]);
    assert_null(psi_view_find(&one, 6));
    assert_null(psi_view_find(&one, 0));

    psi_view empty = {.epoch = 1, .n = 0, .nodes = NULL};
    assert_null(psi_view_find(&empty, 0));
}

static void test_view_count(void **state)
{
    (void)state;
    /* scheduler alive; servers: 1 alive, 1 dead; workers: 1 alive, 1 dead */
    psi_view v = sample_view();

    assert_int_equal(psi_view_count(&v, PS_GROUP_ALL, 0), 5);
    assert_int_equal(psi_view_count(&v, PS_GROUP_ALL, 1), 3);
    assert_int_equal(psi_view_count(&v, PS_GROUP_SCHEDULER, 0), 1);
    assert_int_equal(psi_view_count(&v, PS_GROUP_SCHEDULER, 1), 1);
    assert_int_equal(psi_view_count(&v, PS_GROUP_SERVERS, 0), 2);
    assert_int_equal(psi_view_count(&v, PS_GROUP_SERVERS, 1), 1);
    assert_int_equal(psi_view_count(&v, PS_GROUP_WORKERS, 0), 2);
    assert_int_equal(psi_view_count(&v, PS_GROUP_WORKERS, 1), 1);
    assert_int_equal(psi_view_count(&v, PS_GROUP_SERVERS | PS_GROUP_WORKERS, 0), 4);
    assert_int_equal(psi_view_count(&v, PS_GROUP_SERVERS | PS_GROUP_WORKERS, 1), 2);
    assert_int_equal(psi_view_count(&v, PS_GROUP_SCHEDULER | PS_GROUP_WORKERS, 1), 2);
    assert_int_equal(psi_view_count(&v, 0, 0), 0);

    sample_nodes[1].alive = 0; /* now no server is alive */
    assert_int_equal(psi_view_count(&v, PS_GROUP_SERVERS, 1), 0);
    assert_int_equal(psi_view_count(&v, PS_GROUP_SERVERS, 0), 2);

    psi_view empty = {.epoch = 1, .n = 0, .nodes = NULL};
    assert_int_equal(psi_view_count(&empty, PS_GROUP_ALL, 0), 0);
}

static void test_view_group_has(void **state)
{
    (void)state;
    assert_true(psi_group_has(PS_GROUP_ALL, PS_ROLE_SCHEDULER));
    assert_true(psi_group_has(PS_GROUP_ALL, PS_ROLE_WORKER));
    assert_true(psi_group_has(PS_GROUP_SERVERS, PS_ROLE_SERVER));
    assert_false(psi_group_has(PS_GROUP_SERVERS, PS_ROLE_WORKER));
    assert_false(psi_group_has(PS_GROUP_SERVERS, PS_ROLE_SCHEDULER));
    assert_false(psi_group_has(PS_GROUP_WORKERS, PS_ROLE_SERVER));
}

static void test_view_newly_dead(void **state)
{
    (void)state;
    psi_node o[6], c[5];
    /* old: 0..5 alive except 2 (already dead) */
    for (int i = 0; i < 6; i++) set_node(&o[i], (uint32_t)i, i ? 1 : 0, i != 2, i, "h");
    /* cur: 1 alive, 2 still dead, 3 died, 4 missing, 5 alive, 9 new and dead */
    set_node(&c[0], 0, 0, 1, 0, "h");
    set_node(&c[1], 1, 1, 1, 1, "h");
    set_node(&c[2], 2, 1, 0, 2, "h");
    set_node(&c[3], 3, 1, 0, 3, "h");
    set_node(&c[4], 5, 1, 1, 5, "h");
    psi_view old = {.epoch = 1, .n = 6, .nodes = o};
    psi_view cur = {.epoch = 2, .n = 5, .nodes = c};
    uint32_t out[8];

    memset(out, 0xEE, sizeof(out));
    assert_int_equal(psi_view_newly_dead(&old, &cur, out, 8), 2);
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 4);
    assert_int_equal(out[2], 0xEEEEEEEEu);

    /* cap limits what is written, not the count returned */
    memset(out, 0xEE, sizeof(out));
    assert_int_equal(psi_view_newly_dead(&old, &cur, out, 1), 2);
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 0xEEEEEEEEu);
    assert_int_equal(psi_view_newly_dead(&old, &cur, NULL, 0), 2);

    /* nothing changed: none */
    assert_int_equal(psi_view_newly_dead(&old, &old, out, 8), 0);
    /* everyone alive in old is gone from an empty view (2 was already dead) */
    psi_view empty = {.epoch = 3, .n = 0, .nodes = NULL};
    assert_int_equal(psi_view_newly_dead(&old, &empty, out, 8), 5);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[2], 3);
    assert_int_equal(out[4], 5);
}

static void test_view_is_newer(void **state)
{
    (void)state;
    psi_view cur = {.epoch = 5, .n = 0, .nodes = NULL};

    assert_false(psi_view_is_newer(&cur, 4));
    assert_false(psi_view_is_newer(&cur, 0));
    assert_false(psi_view_is_newer(&cur, 5));
    assert_true(psi_view_is_newer(&cur, 6));
    assert_true(psi_view_is_newer(&cur, UINT32_MAX));
    cur.epoch = 0; /* a node without a view takes the first one */
    assert_true(psi_view_is_newer(&cur, 1));
    assert_false(psi_view_is_newer(&cur, 0));
}

static void test_view_copy_deep(void **state)
{
    (void)state;
    psi_view src = sample_view();
    psi_node *heap = malloc(5 * sizeof(*heap));
    assert_non_null(heap);
    memcpy(heap, sample_nodes, sizeof(sample_nodes));
    src.nodes = heap;

    /* dst already owns nodes: they must be freed (ASan leak check). */
    psi_view dst = {.epoch = 1, .n = 1, .nodes = calloc(1, sizeof(psi_node))};
    assert_non_null(dst.nodes);
    assert_int_equal(psi_view_copy(&dst, &src), PS_OK);
    assert_int_equal(dst.epoch, src.epoch);
    assert_int_equal(dst.n, 5);
    assert_ptr_not_equal(dst.nodes, src.nodes);

    /* Changing the source does not change the copy. */
    heap[3].alive = 0;
    heap[3].rank = 99;
    strcpy(heap[3].addr, "changed");
    src.epoch = 77;
    free(heap);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(dst.nodes[i].id, sample_nodes[i].id);
        assert_int_equal(dst.nodes[i].role, sample_nodes[i].role);
        assert_int_equal(dst.nodes[i].alive, sample_nodes[i].alive);
        assert_int_equal(dst.nodes[i].rank, sample_nodes[i].rank);
        assert_string_equal(dst.nodes[i].addr, sample_nodes[i].addr);
    }
    assert_int_equal(dst.epoch, 0xA1B2C3D4u);

    /* Copying an empty view empties dst. */
    psi_view empty = {.epoch = 12, .n = 0, .nodes = NULL};
    assert_int_equal(psi_view_copy(&dst, &empty), PS_OK);
    assert_int_equal(dst.epoch, 12);
    assert_int_equal(dst.n, 0);
    assert_null(dst.nodes);
    psi_view_free(&dst);
}

/* ---- join requests -------------------------------------------------------- */

static void test_join_round_trip(void **state)
{
    (void)state;
    psi_join cases[4];
    memset(cases, 0, sizeof(cases));
    cases[0] = (psi_join){.role = PS_ROLE_SERVER, .rank = 3};
    strcpy(cases[0].addr, "10.1.2.3:4567");
    cases[1] = (psi_join){.role = PS_ROLE_WORKER, .rank = -1};
    strcpy(cases[1].addr, LONGEST_ADDR);
    cases[2] = (psi_join){.role = PS_ROLE_SCHEDULER, .rank = 0x7FFFFFFF};
    cases[3] = (psi_join){.role = PS_ROLE_WORKER, .rank = 0};
    strcpy(cases[3].addr, "w");

    for (int i = 0; i < 4; i++) {
        uint8_t buf[7 + PSI_ADDR_MAX];
        size_t len = 0;
        psi_join out;
        assert_int_equal(psi_join_encode(&cases[i], buf, sizeof(buf), &len), PS_OK);
        assert_int_equal(len, 7 + strlen(cases[i].addr));
        assert_int_equal(buf[0], cases[i].role);
        assert_int_equal((int32_t)psi_get_u32(buf + 1), cases[i].rank);
        assert_int_equal(psi_get_u16(buf + 5), strlen(cases[i].addr));
        memset(&out, 0x55, sizeof(out));
        assert_int_equal(psi_join_decode(buf, len, &out), PS_OK);
        assert_int_equal(out.role, cases[i].role);
        assert_int_equal(out.rank, cases[i].rank);
        assert_string_equal(out.addr, cases[i].addr);
    }
}

static void test_join_encode_small_cap(void **state)
{
    (void)state;
    psi_join j = {.role = PS_ROLE_SERVER, .rank = 1};
    uint8_t buf[64];
    size_t len = 1234;

    strcpy(j.addr, "abc");
    assert_int_equal(psi_join_encode(&j, buf, 9, &len), PS_ERR_INVAL);
    assert_int_equal(len, 1234);
    assert_int_equal(psi_join_encode(&j, buf, 10, &len), PS_OK);
    assert_int_equal(len, 10);
}

static size_t sample_join(uint8_t *buf, size_t cap)
{
    psi_join j = {.role = PS_ROLE_WORKER, .rank = 2};
    size_t len;
    strcpy(j.addr, "node-7:1234");
    assert_int_equal(psi_join_encode(&j, buf, cap, &len), PS_OK);
    return len;
}

static void test_join_bad_fields_rejected(void **state)
{
    (void)state;
    uint8_t buf[7 + 0x10000];
    psi_join out;
    size_t len;

    len = sample_join(buf, sizeof(buf));
    buf[0] = 3;
    assert_int_equal(psi_join_decode(buf, len, &out), PS_ERR_PROTO);
    buf[0] = 0xFF;
    assert_int_equal(psi_join_decode(buf, len, &out), PS_ERR_PROTO);

    len = sample_join(buf, sizeof(buf));
    psi_put_u32(buf + 1, (uint32_t)-2);
    assert_int_equal(psi_join_decode(buf, len, &out), PS_ERR_PROTO);
    psi_put_u32(buf + 1, 0x80000000u);
    assert_int_equal(psi_join_decode(buf, len, &out), PS_ERR_PROTO);
    psi_put_u32(buf + 1, (uint32_t)-1); /* -1 is "any rank": fine */
    assert_int_equal(psi_join_decode(buf, len, &out), PS_OK);
    assert_int_equal(out.rank, -1);

    /* NUL inside the address */
    len = sample_join(buf, sizeof(buf));
    buf[7 + 4] = 0;
    assert_int_equal(psi_join_decode(buf, len, &out), PS_ERR_PROTO);

    /* an address of PSI_ADDR_MAX bytes (too long) with matching length */
    buf[0] = PS_ROLE_SERVER;
    psi_put_u32(buf + 1, 0);
    psi_put_u16(buf + 5, PSI_ADDR_MAX);
    memset(buf + 7, 'q', PSI_ADDR_MAX);
    assert_int_equal(psi_join_decode(buf, 7 + PSI_ADDR_MAX, &out), PS_ERR_PROTO);
    psi_put_u16(buf + 5, 0xFFFF);
    memset(buf + 7, 'q', 0xFFFF);
    assert_int_equal(psi_join_decode(buf, 7 + 0xFFFF, &out), PS_ERR_PROTO);
    psi_put_u16(buf + 5, PSI_ADDR_MAX - 1); /* control: longest valid */
    assert_int_equal(psi_join_decode(buf, 7 + PSI_ADDR_MAX - 1, &out), PS_OK);
    assert_int_equal(strlen(out.addr), PSI_ADDR_MAX - 1);
}

static void test_join_length_mismatch_rejected(void **state)
{
    (void)state;
    uint8_t buf[64];
    psi_join out;
    size_t len = sample_join(buf, sizeof(buf));

    buf[len] = 'z';
    assert_int_equal(psi_join_decode(buf, len + 1, &out), PS_ERR_PROTO); /* trailing */
    psi_put_u16(buf + 5, (uint16_t)(len - 7 + 1));
    assert_int_equal(psi_join_decode(buf, len, &out), PS_ERR_PROTO); /* claims more */
    psi_put_u16(buf + 5, (uint16_t)(len - 7 - 1));
    assert_int_equal(psi_join_decode(buf, len, &out), PS_ERR_PROTO); /* claims less */
}

static void test_join_every_truncation_rejected(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = sample_join(buf, sizeof(buf));

    for (size_t l = 0; l < len; l++) {
        uint8_t *t = malloc(l ? l : 1);
        psi_join out;
        assert_non_null(t);
        memcpy(t, buf, l);
        assert_int_equal(psi_join_decode(t, l, &out), PS_ERR_PROTO);
        free(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_view_round_trip),
        cmocka_unit_test(test_view_empty_round_trip),
        cmocka_unit_test(test_view_every_truncation_rejected),
        cmocka_unit_test(test_view_trailing_bytes_rejected),
        cmocka_unit_test(test_view_unsorted_ids_rejected),
        cmocka_unit_test(test_view_duplicate_ids_rejected),
        cmocka_unit_test(test_view_bad_role_rejected),
        cmocka_unit_test(test_view_bad_alive_rejected),
        cmocka_unit_test(test_view_negative_rank_rejected),
        cmocka_unit_test(test_view_addr_with_nul_rejected),
        cmocka_unit_test(test_view_addr_too_long_rejected),
        cmocka_unit_test(test_view_addr_len_past_end_rejected),
        cmocka_unit_test(test_view_huge_count_rejected),
        cmocka_unit_test(test_view_max_nodes_boundary),
        cmocka_unit_test(test_view_find),
        cmocka_unit_test(test_view_count),
        cmocka_unit_test(test_view_group_has),
        cmocka_unit_test(test_view_newly_dead),
        cmocka_unit_test(test_view_is_newer),
        cmocka_unit_test(test_view_copy_deep),
        cmocka_unit_test(test_join_round_trip),
        cmocka_unit_test(test_join_encode_small_cap),
        cmocka_unit_test(test_join_bad_fields_rejected),
        cmocka_unit_test(test_join_length_mismatch_rejected),
        cmocka_unit_test(test_join_every_truncation_rejected),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
