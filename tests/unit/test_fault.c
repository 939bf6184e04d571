/*
 * test_fault.c -- unit tests of the fault transport decorator (src/net/fault.c).
 *
 * The decorator wraps an in-memory mock transport defined here: its send
 * records (peer, sender, timestamp) under a mutex, frees the message and
 * broadcasts a condition variable, so a test waits for N arrivals with a
 * deadline instead of sleeping.  The mock's close records the flush time it
 * was given.  Run under ASan, the close tests also prove that held messages
 * are freed.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/transport.h"
#include "util/util.h"

#define WAIT_MS 10000 /* generous deadline for anything the delay thread does */

/* ---- the mock inner transport ---------------------------------------------- */

typedef struct rec {
    uint32_t peer, sender;
    uint64_t ts;
} rec;

static struct mock_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    rec *recs;
    size_t n, cap;
    int listens, connects, disconnects, closed;
    uint64_t close_flush_ms;
} g = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static int mock_listen(psi_transport *t, const char *host, int port, char *addr, size_t cap)
{
    pthread_mutex_lock(&g.mu);
    g.listens++;
    pthread_mutex_unlock(&g.mu);
    snprintf(addr, cap, "%s:%d", host, port ? port : 4242);
    return 0;
}

static int mock_connect(psi_transport *t, uint32_t peer, const char *addr)
{
    pthread_mutex_lock(&g.mu);
    g.connects++;
    pthread_mutex_unlock(&g.mu);
    return 0;
}

static int mock_disconnect(psi_transport *t, uint32_t peer)
{
    pthread_mutex_lock(&g.mu);
    g.disconnects++;
    pthread_mutex_unlock(&g.mu);
    return 0;
}

static int mock_send(psi_transport *t, uint32_t peer, psi_msg *m)
{
    pthread_mutex_lock(&g.mu);
    if (g.n == g.cap) {
        g.cap = g.cap ? 2 * g.cap : 1024;
        g.recs = realloc(g.recs, g.cap * sizeof(*g.recs));
        assert_non_null(g.recs);
    }
    g.recs[g.n++] = (rec){ .peer = peer, .sender = m->hdr.sender, .ts = m->hdr.timestamp };
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    psi_msg_free(m);
    return 0;
}

static void mock_close(psi_transport *t, uint64_t flush_ms)
{
    pthread_mutex_lock(&g.mu);
    g.closed++;
    g.close_flush_ms = flush_ms;
    pthread_mutex_unlock(&g.mu);
    free(t);
}

static const psi_transport_ops mock_ops = {
    .name = "mock",
    .listen = mock_listen,
    .connect = mock_connect,
    .send = mock_send,
    .disconnect = mock_disconnect,
    .close = mock_close,
};

static void cb_receive(void *arg, psi_msg *m) { psi_msg_free(m); }
static void cb_failure(void *arg, uint32_t peer, int err) {}
static int cb_arg;

static psi_transport *mock_new(void)
{
    psi_transport *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    t->ops = &mock_ops;
    t->cbs = (psi_transport_cbs){ .on_receive = cb_receive, .on_peer_failure = cb_failure,
                                  .arg = &cb_arg };
    return t;
}

static int reset(void **state)
{
    pthread_mutex_lock(&g.mu);
    free(g.recs);
    g.recs = NULL;
    g.n = g.cap = 0;
    g.listens = g.connects = g.disconnects = g.closed = 0;
    g.close_flush_ms = 0;
    pthread_mutex_unlock(&g.mu);
    return 0;
}

/* Messages delivered so far. */
static size_t delivered(void)
{
    pthread_mutex_lock(&g.mu);
    size_t n = g.n;
    pthread_mutex_unlock(&g.mu);
    return n;
}

/* Wait until at least `n` messages arrived or WAIT_MS passed; returns the count. */
static size_t wait_for(size_t n)
{
    struct timespec dl = psi_deadline_in(WAIT_MS);
    pthread_mutex_lock(&g.mu);
    while (g.n < n && pthread_cond_timedwait(&g.cv, &g.mu, &dl) == 0) {}
    size_t got = g.n;
    pthread_mutex_unlock(&g.mu);
    return got;
}

/* ---- helpers ---------------------------------------------------------------- */

static psi_transport *open_ok(const char *spec)
{
    psi_transport *f = NULL;
    assert_int_equal(psi_fault_open(mock_new(), spec, &f), 0);
    assert_non_null(f);
    return f;
}

/* A message from `sender` stamped `ts`, with an owned segment so that frees
 * and duplicates are visible to ASan. */
static psi_msg *make_msg(uint32_t sender, uint64_t ts)
{
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);
    assert_non_null(m);
    m->hdr.sender = sender;
    m->hdr.timestamp = ts;
    assert_int_equal(psi_msg_set_seg(m, PSI_SEG_AUX, &ts, sizeof(ts)), 0);
    return m;
}

static void send_n(psi_transport *f, uint32_t peer, uint64_t first, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(f->ops->send(f, peer, make_msg(1, first + i)), 0);
}

/* Number of times each timestamp in [0, n) was delivered, into counts[n]. */
static void count_ts(size_t n, unsigned *counts)
{
    memset(counts, 0, n * sizeof(*counts));
    pthread_mutex_lock(&g.mu);
    for (size_t i = 0; i < g.n; i++) {
        assert_true(g.recs[i].ts < n);
        counts[g.recs[i].ts]++;
    }
    pthread_mutex_unlock(&g.mu);
}

/* ---- spec parsing ------------------------------------------------------------ */

static void test_bad_specs_rejected(void **state)
{
    static const char *bad[] = {
        "drop=2", "drop=x", "bogus=1", "partition=abc", "drop=-0.1", "drop=0.5x",
        "drop", "=0.5", "seed=-1", "seed=1.5", "delay_ms=abc", "delay_ms=99999999999",
        "partition=1+", "partition=+1", "partition=1++2", "partition=", "dup=nan",
        "reorder=1.01", "drop=0.1,delay=7",
    };
    psi_transport *inner = mock_new();
    for (size_t i = 0; i < PSI_ARRAY_LEN(bad); i++) {
        psi_transport *f = NULL;
        int rv = psi_fault_open(inner, bad[i], &f);
        if (rv != PS_ERR_INVAL) fail_msg("spec '%s' gave %d", bad[i], rv);
        assert_null(f);
    }
    inner->ops->close(inner, 0); /* a failed open leaves inner with us */
    assert_int_equal(g.closed, 1);
}

static void test_good_specs_accepted(void **state)
{
    static const char *good[] = {
        "", "drop=0", "drop=1", "drop=0.25,dup=0.5,delay=0.1,delay_ms=5,reorder=0.2,seed=42",
        "partition=1+2+3", "partition=7", " drop = 0.1 , seed=18446744073709551615 ,",
        "seed=0,delay_ms=0",
    };
    for (size_t i = 0; i < PSI_ARRAY_LEN(good); i++) {
        psi_transport *f = NULL;
        int rv = psi_fault_open(mock_new(), good[i], &f);
        if (rv != 0) fail_msg("spec '%s' gave %d", good[i], rv);
        f->ops->close(f, 0);
    }
    psi_transport *f = NULL;
    assert_int_equal(psi_fault_open(mock_new(), NULL, &f), 0);
    f->ops->close(f, 0);
    assert_int_equal(g.closed, (int)PSI_ARRAY_LEN(good) + 1);
}

/* ---- pass-through ------------------------------------------------------------ */

static void test_empty_spec_passes_all_in_order(void **state)
{
    psi_transport *f = open_ok("");
    char addr[64];

    assert_string_equal(f->ops->name, "fault");
    assert_ptr_equal(f->cbs.on_receive, cb_receive);
    assert_ptr_equal(f->cbs.on_peer_failure, cb_failure);
    assert_ptr_equal(f->cbs.arg, &cb_arg);
    assert_int_equal(f->ops->listen(f, "127.0.0.1", 0, addr, sizeof(addr)), 0);
    assert_string_equal(addr, "127.0.0.1:4242");
    assert_int_equal(f->ops->connect(f, 2, "127.0.0.1:1"), 0);
    assert_int_equal(f->ops->disconnect(f, 2), 0);
    assert_int_equal(g.listens + g.connects + g.disconnects, 3);

    send_n(f, 2, 0, 1000);
    assert_int_equal(delivered(), 1000); /* synchronous: no thread involved */
    for (size_t i = 0; i < 1000; i++) {
        assert_int_equal(g.recs[i].ts, i);
        assert_int_equal(g.recs[i].peer, 2);
    }
    psi_fault_stats st;
    psi_fault_stats_get(f, &st);
    assert_int_equal(st.sent, 1000);
    assert_int_equal(st.dropped + st.duplicated + st.delayed + st.reordered, 0);
    f->ops->close(f, 123);
    assert_int_equal(g.closed, 1);
    assert_true(g.close_flush_ms <= 123);
}

/* ---- drop ---------------------------------------------------------------------- */

static void test_drop_all(void **state)
{
    psi_transport *f = open_ok("drop=1");
    send_n(f, 2, 0, 500);
    psi_fault_stats st;
    psi_fault_stats_get(f, &st);
    f->ops->close(f, 0);
    assert_int_equal(delivered(), 0);
    assert_int_equal(st.dropped, 500);
    assert_int_equal(st.sent, 0);
}

/* Send 10000 messages through "drop=0.3,seed=S" and return what arrived. */
static uint64_t *drop_run(const char *spec, size_t *n)
{
    reset(NULL);
    psi_transport *f = open_ok(spec);
    send_n(f, 3, 0, 10000);
    psi_fault_stats st;
    psi_fault_stats_get(f, &st);
    f->ops->close(f, 0);

    *n = delivered();
    assert_int_equal(st.sent, *n);
    assert_int_equal(st.dropped + st.sent, 10000);
    uint64_t *ts = calloc(*n + 1, sizeof(*ts));
    assert_non_null(ts);
    for (size_t i = 0; i < *n; i++) {
        ts[i] = g.recs[i].ts;
        if (i > 0) assert_true(ts[i] > ts[i - 1]); /* order kept */
    }
    return ts;
}

static void test_drop_fraction_and_determinism(void **state)
{
    size_t n1, n2, n3;
    uint64_t *a = drop_run("drop=0.3,seed=7", &n1);
    uint64_t *b = drop_run("seed=7,drop=0.3", &n2);
    uint64_t *c = drop_run("drop=0.3,seed=8", &n3);

    /* 3000 expected drops, sd ~46: allow about 6.5 sd either way. */
    assert_in_range(10000 - n1, 2700, 3300);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1 * sizeof(*a)); /* same seed, same pattern */
    assert_in_range(10000 - n3, 2700, 3300);
    assert_true(n1 != n3 || memcmp(a, c, n1 * sizeof(*a)) != 0);
    free(a);
    free(b);
    free(c);
}

/* ---- dup, delay, reorder ------------------------------------------------------- */

static void test_dup_all_delivers_twice(void **state)
{
    enum { N = 500 };
    unsigned counts[N];
    psi_transport *f = open_ok("dup=1");
    send_n(f, 2, 0, N);
    psi_fault_stats st;
    psi_fault_stats_get(f, &st);
    f->ops->close(f, 0);

    assert_int_equal(delivered(), 2 * N);
    count_ts(N, counts);
    for (size_t i = 0; i < N; i++) assert_int_equal(counts[i], 2);
    assert_int_equal(st.duplicated, N);
    assert_int_equal(st.sent, 2 * N);
}

static void test_delay_delivers_everything(void **state)
{
    enum { N = 2000 };
    unsigned counts[N];
    psi_transport *f = open_ok("delay=0.5,delay_ms=10,seed=3");
    send_n(f, 2, 0, N);

    assert_int_equal(wait_for(N), N);
    psi_fault_stats st;
    psi_fault_stats_get(f, &st);
    assert_int_equal(st.sent, N);
    assert_in_range(st.delayed, N / 4, 3 * N / 4);
    f->ops->close(f, 0);

    assert_int_equal(delivered(), N); /* nothing extra at close */
    count_ts(N, counts);
    for (size_t i = 0; i < N; i++) assert_int_equal(counts[i], 1);
}

static void test_reorder_swaps_without_loss(void **state)
{
    enum { N = 1000 };
    unsigned counts[N];
    psi_transport *f = open_ok("reorder=1");
    send_n(f, 2, 0, N);

    assert_int_equal(wait_for(N), N); /* the last one goes after delay_ms */
    psi_fault_stats st;
    psi_fault_stats_get(f, &st);
    f->ops->close(f, 0);

    size_t inversions = 0;
    for (size_t i = 1; i < N; i++) inversions += g.recs[i].ts < g.recs[i - 1].ts;
    assert_true(inversions > 0);
    count_ts(N, counts);
    for (size_t i = 0; i < N; i++) assert_int_equal(counts[i], 1);
    assert_true(st.reordered > 0);
    assert_int_equal(st.sent, N);
    assert_int_equal(delivered(), N);
}

/* Held messages wait for their own peer's next message, not another's. */
static void test_reorder_is_per_peer(void **state)
{
    psi_transport *f = open_ok("reorder=1,delay_ms=60000");
    assert_int_equal(f->ops->send(f, 2, make_msg(1, 0)), 0); /* held */
    assert_int_equal(f->ops->send(f, 3, make_msg(1, 1)), 0); /* held */
    assert_int_equal(delivered(), 0);
    assert_int_equal(f->ops->send(f, 2, make_msg(1, 2)), 0); /* releases ts 0 */
    assert_int_equal(delivered(), 2);
    assert_int_equal(g.recs[0].ts, 2);
    assert_int_equal(g.recs[1].ts, 0);
    f->ops->close(f, 0); /* ts 1 is not due for a minute: freed */
    assert_int_equal(delivered(), 2);
}

/* ---- partition ------------------------------------------------------------------ */

static void test_partition_cuts(void **state)
{
    psi_transport *f = open_ok("partition=1+2");
    assert_int_equal(f->ops->send(f, 3, make_msg(1, 10)), 0); /* 1 -> 3: cut */
    assert_int_equal(f->ops->send(f, 2, make_msg(1, 11)), 0); /* 1 -> 2 */
    assert_int_equal(f->ops->send(f, 4, make_msg(3, 12)), 0); /* 3 -> 4 */
    assert_int_equal(f->ops->send(f, 1, make_msg(3, 13)), 0); /* 3 -> 1: cut */
    assert_int_equal(f->ops->send(f, 1, make_msg(2, 14)), 0); /* 2 -> 1 */
    psi_fault_stats st;
    psi_fault_stats_get(f, &st);
    f->ops->close(f, 0);

    assert_int_equal(delivered(), 3);
    assert_int_equal(g.recs[0].ts, 11);
    assert_int_equal(g.recs[0].peer, 2);
    assert_int_equal(g.recs[1].ts, 12);
    assert_int_equal(g.recs[1].peer, 4);
    assert_int_equal(g.recs[2].ts, 14);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(st.sent, 3);
}

/* ---- close ------------------------------------------------------------------------ */

static void test_close_frees_held(void **state)
{
    psi_transport *f = open_ok("delay=1,delay_ms=60000,dup=0.5");
    send_n(f, 2, 0, 200);
    psi_fault_stats st;
    psi_fault_stats_get(f, &st);
    assert_int_equal(st.delayed, 200);
    f->ops->close(f, 0); /* ASan's leak check proves the held ones are freed */
    assert_int_equal(g.closed, 1);
    assert_int_equal(g.close_flush_ms, 0);
    assert_int_equal(delivered(), st.duplicated); /* only the copies went */
}

static void test_close_flushes_due(void **state)
{
    psi_transport *f = open_ok("delay=1,delay_ms=200");
    send_n(f, 2, 0, 200);
    assert_int_equal(f->ops->send(f, 2, make_msg(1, 200)), 0);
    f->ops->close(f, 5000); /* everything is due within the window */
    assert_int_equal(delivered(), 201);
    assert_int_equal(g.closed, 1);
    assert_in_range(g.close_flush_ms, 4000, 5000);

    reset(NULL);
    f = open_ok("reorder=1"); /* due after 20 ms */
    assert_int_equal(f->ops->send(f, 2, make_msg(1, 0)), 0);
    f->ops->close(f, 1000);
    assert_int_equal(delivered(), 1);
}

/* ---- everything at once, from several threads ------------------------------------ */

typedef struct sender_arg {
    psi_transport *f;
    uint64_t first;
} sender_arg;

enum { THREADS = 4, PER_THREAD = 2000 };

static void *sender(void *arg)
{
    sender_arg *a = arg;
    for (size_t i = 0; i < PER_THREAD; i++)
        a->f->ops->send(a->f, (uint32_t)(i % 3) + 2, make_msg(1, a->first + i));
    return NULL;
}

static void test_stats_match_under_threads(void **state)
{
    enum { N = THREADS * PER_THREAD };
    psi_transport *f = open_ok("drop=0.2,dup=0.2,delay=0.2,delay_ms=5,reorder=0.3,seed=11");
    pthread_t th[THREADS];
    sender_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (sender_arg){ .f = f, .first = (uint64_t)i * PER_THREAD };
        assert_int_equal(pthread_create(&th[i], NULL, sender, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);

    psi_fault_stats st;
    psi_fault_stats_get(f, &st); /* every decision is made by now */
    size_t expect = N - st.dropped + st.duplicated;
    assert_int_equal(wait_for(expect), expect);
    psi_fault_stats_get(f, &st);
    f->ops->close(f, 0);

    assert_int_equal(delivered(), expect);
    assert_int_equal(st.sent, expect);
    assert_in_range(st.dropped, N / 10, 3 * N / 10);
    assert_true(st.duplicated > 0 && st.delayed > 0 && st.reordered > 0);

    unsigned *counts = calloc(N, sizeof(*counts));
    assert_non_null(counts);
    count_ts(N, counts);
    size_t lost = 0, twice = 0;
    for (size_t i = 0; i < N; i++) {
        assert_true(counts[i] <= 2);
        lost += counts[i] == 0;
        twice += counts[i] == 2;
    }
    free(counts);
    assert_int_equal(lost, st.dropped); /* drop is decided before dup */
    assert_int_equal(twice, st.duplicated);
}

static void test_stats_of_other_transport_are_zero(void **state)
{
    psi_transport *inner = mock_new();
    psi_fault_stats st = { 1, 1, 1, 1, 1 };
    psi_fault_stats_get(inner, &st);
    assert_int_equal(st.sent + st.dropped + st.duplicated + st.delayed + st.reordered, 0);
    inner->ops->close(inner, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_bad_specs_rejected, reset),
        cmocka_unit_test_setup(test_good_specs_accepted, reset),
        cmocka_unit_test_setup(test_empty_spec_passes_all_in_order, reset),
        cmocka_unit_test_setup(test_drop_all, reset),
        cmocka_unit_test_setup(test_drop_fraction_and_determinism, reset),
        cmocka_unit_test_setup(test_dup_all_delivers_twice, reset),
        cmocka_unit_test_setup(test_delay_delivers_everything, reset),
        cmocka_unit_test_setup(test_reorder_swaps_without_loss, reset),
        cmocka_unit_test_setup(test_reorder_is_per_peer, reset),
        cmocka_unit_test_setup(test_partition_cuts, reset),
        cmocka_unit_test_setup(test_close_frees_held, reset),
        cmocka_unit_test_setup(test_close_flushes_due, reset),
        cmocka_unit_test_setup(test_stats_match_under_threads, reset),
        cmocka_unit_test_setup(test_stats_of_other_transport_are_zero, reset),
    };
    int rv = cmocka_run_group_tests(tests, NULL, NULL);
    reset(NULL);
    return rv;
}
