/*
 * test_reliable.c -- unit tests of src/node/reliable.c: stamping, resending
 * with back-off (explicit now_ms values, never sleeping), ACK bookkeeping,
 * forgetting peers, and the per-sender duplicate filter.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <cmocka.h>

#include "node/reliable.h"
#include "ps/ps.h"

#define ANY_PEER 0xFFFFFFFFu

/* ---- a recording resend callback ------------------------------------------ */

typedef struct sent {
    uint32_t peer;
    uint64_t ts;
    uint16_t flags;
    uint8_t type;
    uint32_t arg;
    char aux[16];
} sent;

typedef struct recorder {
    int n;
    sent s[64];
} recorder;

static void record_send(void *arg, uint32_t peer, psi_msg *m)
{
    recorder *rec = arg;
    assert_true(rec->n < 64);
    sent *e = &rec->s[rec->n++];
    e->peer = peer;
    e->ts = m->hdr.timestamp;
    e->flags = m->hdr.flags;
    e->type = m->hdr.type;
    e->arg = m->hdr.arg;
    memset(e->aux, 0, sizeof(e->aux));
    if (m->hdr.seg_len[PSI_SEG_AUX] && m->hdr.seg_len[PSI_SEG_AUX] < sizeof(e->aux))
        memcpy(e->aux, m->seg[PSI_SEG_AUX], m->hdr.seg_len[PSI_SEG_AUX]);
    psi_msg_free(m); /* the callback owns the duplicate */
}

/* Track a fresh control message to `peer`; returns its stamp. */
static uint64_t track(psi_rel *r, uint32_t peer, uint32_t arg, uint64_t now)
{
    psi_msg *m = psi_msg_new(PSI_MSG_BARRIER);
    assert_non_null(m);
    m->hdr.flags = PSI_F_CONTROL;
    m->hdr.arg = arg;
    assert_int_equal(psi_msg_set_seg(m, PSI_SEG_AUX, "payload", 7), PS_OK);
    assert_int_equal(psi_rel_track(r, peer, m, now), PS_OK);
    uint64_t ts = m->hdr.timestamp;
    psi_msg_free(m); /* the caller still owns m; the tracker keeps a copy */
    return ts;
}

/* ---- sending side ----------------------------------------------------------- */

static void test_track_stamps_increasing(void **state)
{
    (void)state;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t before_us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    psi_rel *r = psi_rel_new();
    assert_non_null(r);

    psi_msg *m = psi_msg_new(PSI_MSG_VIEW);
    assert_non_null(m);
    m->hdr.flags = PSI_F_CONTROL;
    assert_int_equal(psi_rel_track(r, 3, m, 1000), PS_OK);
    assert_int_equal(m->hdr.flags, PSI_F_CONTROL | PSI_F_RELIABLE);
    assert_int_equal(m->hdr.type, PSI_MSG_VIEW);
    uint64_t t0 = m->hdr.timestamp;
    /* started from the wall clock in microseconds */
    assert_true(t0 >= before_us);
    assert_true(t0 < before_us + 60ull * 1000000u);
    psi_msg_free(m);

    uint64_t prev = t0;
    for (int i = 0; i < 10; i++) {
        uint64_t t = track(r, (uint32_t)(i % 3), (uint32_t)i, 1000);
        assert_int_equal(t, prev + 1);
        prev = t;
    }
    assert_int_equal(psi_rel_pending(r, ANY_PEER), 11);
    psi_rel_free(r);
}

static void test_resend_due_timing(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    recorder rec = {0};
    assert_non_null(r);

    uint64_t ts = track(r, 5, 42, 1000);
    assert_int_equal(psi_rel_resend_due(r, 1000, record_send, &rec), 0);
    assert_int_equal(psi_rel_resend_due(r, 1019, record_send, &rec), 0);
    assert_int_equal(rec.n, 0);
    assert_int_equal(psi_rel_resend_due(r, 1020, record_send, &rec), 1);
    assert_int_equal(rec.n, 1);
    /* the resent copy is the stamped message */
    assert_int_equal(rec.s[0].peer, 5);
    assert_int_equal(rec.s[0].ts, ts);
    assert_int_equal(rec.s[0].type, PSI_MSG_BARRIER);
    assert_int_equal(rec.s[0].flags, PSI_F_CONTROL | PSI_F_RELIABLE);
    assert_int_equal(rec.s[0].arg, 42);
    assert_string_equal(rec.s[0].aux, "payload");
    /* not again at once */
    assert_int_equal(psi_rel_resend_due(r, 1020, record_send, &rec), 0);
    assert_int_equal(psi_rel_pending(r, 5), 1);
    psi_rel_free(r);
}

static void test_resend_backoff_doubles_to_500(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    recorder rec = {0};
    assert_non_null(r);

    track(r, 1, 0, 0);
    /* Expected gaps between resends: 20, 40, 80, 160, 320, then 500 capped. */
    const uint64_t gaps[] = {20, 40, 80, 160, 320, 500, 500, 500};
    uint64_t now = 0;
    for (size_t i = 0; i < sizeof(gaps) / sizeof(gaps[0]); i++) {
        assert_int_equal(psi_rel_resend_due(r, now + gaps[i] - 1, record_send, &rec), 0);
        assert_int_equal(rec.n, (int)i);
        now += gaps[i];
        assert_int_equal(psi_rel_resend_due(r, now, record_send, &rec), 1);
        assert_int_equal(rec.n, (int)i + 1);
    }
    psi_rel_free(r);
}

static void test_resend_late_tick_schedules_from_now(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    recorder rec = {0};
    assert_non_null(r);

    track(r, 1, 0, 0);
    /* A tick long after the first deadline resends once, not once per
     * missed period, and the next one is 40 ms after that tick. */
    assert_int_equal(psi_rel_resend_due(r, 10000, record_send, &rec), 1);
    assert_int_equal(psi_rel_resend_due(r, 10039, record_send, &rec), 0);
    assert_int_equal(psi_rel_resend_due(r, 10040, record_send, &rec), 1);
    assert_int_equal(rec.n, 2);
    psi_rel_free(r);
}

static void test_resend_each_on_own_schedule(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    recorder rec = {0};
    assert_non_null(r);

    uint64_t a = track(r, 1, 1, 0);
    uint64_t b = track(r, 2, 2, 10);
    assert_int_equal(psi_rel_resend_due(r, 20, record_send, &rec), 1);
    assert_int_equal(rec.s[0].ts, a);
    assert_int_equal(psi_rel_resend_due(r, 30, record_send, &rec), 1);
    assert_int_equal(rec.s[1].ts, b);
    assert_int_equal(rec.s[1].peer, 2);
    /* a at 60, b at 70: both due at 70 */
    assert_int_equal(psi_rel_resend_due(r, 70, record_send, &rec), 2);
    psi_rel_free(r);
}

static void test_acked_removes_exactly_one(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    recorder rec = {0};
    assert_non_null(r);

    uint64_t a = track(r, 1, 0, 0);
    uint64_t b = track(r, 1, 0, 0);
    uint64_t c = track(r, 2, 0, 0);
    assert_int_equal(psi_rel_pending(r, ANY_PEER), 3);

    assert_int_equal(psi_rel_acked(r, 2, b), 0); /* wrong peer for b */
    assert_int_equal(psi_rel_acked(r, 1, c), 0); /* wrong peer for c */
    assert_int_equal(psi_rel_pending(r, ANY_PEER), 3);

    assert_int_equal(psi_rel_acked(r, 1, b), 1);
    assert_int_equal(psi_rel_pending(r, 1), 1);
    assert_int_equal(psi_rel_pending(r, 2), 1);
    assert_int_equal(psi_rel_acked(r, 1, b), 0); /* duplicate ACK */
    assert_int_equal(psi_rel_pending(r, ANY_PEER), 2);

    /* only a and c are resent */
    assert_int_equal(psi_rel_resend_due(r, 20, record_send, &rec), 2);
    assert_true((rec.s[0].ts == a && rec.s[1].ts == c) || (rec.s[0].ts == c && rec.s[1].ts == a));

    assert_int_equal(psi_rel_acked(r, 1, a), 1);
    assert_int_equal(psi_rel_acked(r, 2, c), 1);
    assert_int_equal(psi_rel_pending(r, ANY_PEER), 0);
    assert_int_equal(psi_rel_resend_due(r, 100000, record_send, &rec), 0);
    assert_int_equal(psi_rel_acked(r, 9, 12345), 0);
    psi_rel_free(r);
}

static void test_forget_peer_drops_only_that_peer(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    recorder rec = {0};
    assert_non_null(r);

    track(r, 1, 0, 0);
    uint64_t keep = track(r, 2, 0, 0);
    track(r, 1, 0, 0);
    track(r, 3, 0, 0);
    track(r, 1, 0, 0);
    assert_int_equal(psi_rel_pending(r, 1), 3);
    assert_int_equal(psi_rel_pending(r, 2), 1);
    assert_int_equal(psi_rel_pending(r, 3), 1);
    assert_int_equal(psi_rel_pending(r, 4), 0);
    assert_int_equal(psi_rel_pending(r, ANY_PEER), 5);

    psi_rel_forget_peer(r, 1);
    assert_int_equal(psi_rel_pending(r, 1), 0);
    assert_int_equal(psi_rel_pending(r, 2), 1);
    assert_int_equal(psi_rel_pending(r, 3), 1);
    assert_int_equal(psi_rel_pending(r, ANY_PEER), 2);
    psi_rel_forget_peer(r, 7); /* nobody: no-op */
    assert_int_equal(psi_rel_pending(r, ANY_PEER), 2);

    assert_int_equal(psi_rel_resend_due(r, 20, record_send, &rec), 2);
    for (int i = 0; i < rec.n; i++) assert_int_not_equal(rec.s[i].peer, 1);
    assert_int_equal(psi_rel_acked(r, 2, keep), 1);
    psi_rel_free(r);
}

static void test_free_with_pending_is_clean(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    assert_non_null(r);
    for (uint32_t i = 0; i < 20; i++) track(r, i % 4, i, i);
    assert_int_equal(psi_rel_seen(r, 3, 100), 0);
    assert_int_equal(psi_rel_seen(r, 40, 100), 0);
    assert_int_equal(psi_rel_pending(r, ANY_PEER), 20);
    psi_rel_free(r); /* ASan/LSan: no leak, no double free */
    psi_rel_free(NULL);
}

/* ---- receiving side: duplicate filter --------------------------------------- */

static void test_seen_first_and_duplicate(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    assert_non_null(r);
    assert_int_equal(psi_rel_seen(r, 1, 1000), 0);
    assert_int_equal(psi_rel_seen(r, 1, 1000), 1);
    assert_int_equal(psi_rel_seen(r, 1, 1000), 1);
    assert_int_equal(psi_rel_seen(r, 1, 1001), 0);
    assert_int_equal(psi_rel_seen(r, 1, 1001), 1);
    assert_int_equal(psi_rel_seen(r, 0, 0), 0); /* sender 0, ts 0 */
    assert_int_equal(psi_rel_seen(r, 0, 0), 1);
    psi_rel_free(r);
}

static void test_seen_out_of_order(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    assert_non_null(r);
    const uint64_t ts[] = {10, 12, 11, 12, 10};
    const int want[] = {0, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) assert_int_equal(psi_rel_seen(r, 4, ts[i]), want[i]);

    /* Same with wall-clock sized stamps, far from zero. */
    const uint64_t base = 1700000000000000ull;
    const uint64_t ts2[] = {base + 10, base + 12, base + 11, base + 12, base + 10, base + 9,
                            base - 2000, base - 2000};
    const int want2[] = {0, 0, 0, 1, 1, 0, 0, 1};
    for (int i = 0; i < 8; i++) assert_int_equal(psi_rel_seen(r, 5, ts2[i]), want2[i]);
    psi_rel_free(r);
}

static void test_seen_senders_independent(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    assert_non_null(r);
    assert_int_equal(psi_rel_seen(r, 1, 500), 0);
    assert_int_equal(psi_rel_seen(r, 2, 500), 0);
    assert_int_equal(psi_rel_seen(r, 300, 500), 0); /* grows the sender table */
    assert_int_equal(psi_rel_seen(r, 1, 500), 1);
    assert_int_equal(psi_rel_seen(r, 2, 500), 1);
    assert_int_equal(psi_rel_seen(r, 300, 500), 1);
    assert_int_equal(psi_rel_seen(r, 3, 500), 0);
    /* a big jump of one sender does not move another's window */
    assert_int_equal(psi_rel_seen(r, 1, 1000000), 0);
    assert_int_equal(psi_rel_seen(r, 2, 501), 0);
    assert_int_equal(psi_rel_seen(r, 2, 500), 1);
    psi_rel_free(r);
}

/*
 * Documented behaviour: the first stamp seen from a sender centres the
 * window, so stamps down to first - 2048 still count as new (they may have
 * been overtaken), but anything older than that is treated as already seen
 * (returns 1, i.e. dropped as a duplicate) even though it never arrived.
 */
static void test_seen_older_than_half_window_is_seen(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    assert_non_null(r);
    const uint64_t first = 100000;
    assert_int_equal(psi_rel_seen(r, 7, first), 0);
    assert_int_equal(psi_rel_seen(r, 7, first - 2048), 0);     /* oldest still new */
    assert_int_equal(psi_rel_seen(r, 7, first - 2048), 1);
    assert_int_equal(psi_rel_seen(r, 7, first - 2049), 1);     /* never seen, yet "seen" */
    assert_int_equal(psi_rel_seen(r, 7, 0), 1);
    assert_int_equal(psi_rel_seen(r, 7, first - 1), 0);
    assert_int_equal(psi_rel_seen(r, 7, first + 2047), 0);     /* top of the window */

    /* A first stamp below 2048 puts the window at 0: nothing is lost. */
    assert_int_equal(psi_rel_seen(r, 8, 100), 0);
    assert_int_equal(psi_rel_seen(r, 8, 0), 0);
    assert_int_equal(psi_rel_seen(r, 8, 0), 1);
    psi_rel_free(r);
}

static void test_seen_jump_beyond_window_slides(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    assert_non_null(r);
    const uint64_t first = 10000; /* window base 10000 - 2048 = 7952 */
    assert_int_equal(psi_rel_seen(r, 1, first), 0);
    assert_int_equal(psi_rel_seen(r, 1, first + 1), 0);

    /* Partial slide: ts = base + 4096 + 10 moves the base up by 11; the
     * marks still inside the window survive the shift. */
    const uint64_t base = first - 2048;
    const uint64_t far = base + 4096 + 10;
    assert_int_equal(psi_rel_seen(r, 1, far), 0);
    assert_int_equal(psi_rel_seen(r, 1, far), 1);
    assert_int_equal(psi_rel_seen(r, 1, first), 1);
    assert_int_equal(psi_rel_seen(r, 1, first + 1), 1);
    assert_int_equal(psi_rel_seen(r, 1, first + 2), 0);
    assert_int_equal(psi_rel_seen(r, 1, base + 10), 1); /* fell below the base */
    assert_int_equal(psi_rel_seen(r, 1, base + 11), 0); /* new base, never seen */
    assert_int_equal(psi_rel_seen(r, 1, base + 11), 1);

    /* Full slide: a jump of several windows clears everything. */
    const uint64_t jump = far + 3 * 4096;
    assert_int_equal(psi_rel_seen(r, 1, jump), 0);
    assert_int_equal(psi_rel_seen(r, 1, jump), 1);
    assert_int_equal(psi_rel_seen(r, 1, far), 1);       /* below the new base */
    assert_int_equal(psi_rel_seen(r, 1, jump - 4095), 0); /* new base: in window */
    assert_int_equal(psi_rel_seen(r, 1, jump - 4096), 1);
    assert_int_equal(psi_rel_seen(r, 1, jump - 1), 0);
    assert_int_equal(psi_rel_seen(r, 1, jump - 1), 1);
    /* and keeps working for in-order traffic after that */
    for (uint64_t t = jump + 1; t < jump + 10000; t++) assert_int_equal(psi_rel_seen(r, 1, t), 0);
    assert_int_equal(psi_rel_seen(r, 1, jump + 9999), 1);
    assert_int_equal(psi_rel_seen(r, 1, jump + 5000), 1);
    psi_rel_free(r);
}

/*
 * Regression: a reliable message whose header names a sender near
 * UINT32_MAX (any peer can put anything there; PSI_ID_NONE is filtered by
 * node.c but 0xFFFFFFF0..0xFFFFFFFE are not) made window_for() compute
 * `sender + 16` in 32 bits, wrap to a tiny table and index it out of bounds.
 * It must answer 0 (new) or -1 (cannot track), never crash.
 */
static void test_seen_sender_near_uint32_max(void **state)
{
    (void)state;
    psi_rel *r = psi_rel_new();
    assert_non_null(r);
    int first = psi_rel_seen(r, 0xFFFFFFFEu, 1);
    assert_true(first == 0 || first == -1);
    int again = psi_rel_seen(r, 0xFFFFFFFEu, 1);
    assert_true(again == 1 || again == -1);
    assert_int_equal(psi_rel_seen(r, 2, 1), 0); /* others still work */
    assert_int_equal(psi_rel_seen(r, 2, 1), 1);
    psi_rel_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_track_stamps_increasing),
        cmocka_unit_test(test_resend_due_timing),
        cmocka_unit_test(test_resend_backoff_doubles_to_500),
        cmocka_unit_test(test_resend_late_tick_schedules_from_now),
        cmocka_unit_test(test_resend_each_on_own_schedule),
        cmocka_unit_test(test_acked_removes_exactly_one),
        cmocka_unit_test(test_forget_peer_drops_only_that_peer),
        cmocka_unit_test(test_free_with_pending_is_clean),
        cmocka_unit_test(test_seen_first_and_duplicate),
        cmocka_unit_test(test_seen_out_of_order),
        cmocka_unit_test(test_seen_senders_independent),
        cmocka_unit_test(test_seen_older_than_half_window_is_seen),
        cmocka_unit_test(test_seen_jump_beyond_window_slides),
        /* last: crashes the process until window_for() is fixed */
        cmocka_unit_test(test_seen_sender_near_uint32_max),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
