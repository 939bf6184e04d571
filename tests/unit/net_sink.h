/*
 * net_sink.h -- for the transport unit tests (test_tcp.c, test_ucx.c): a
 * sink that records what one transport's callbacks report, the messages it
 * received and the peer failures, under a mutex and a condition the tests
 * wait on; and the test messages both send (every header field and every
 * payload byte derived from a timestamp, so that a receiver can check them
 * all).  Header-only, included after cmocka.h; the callbacks run on the
 * transport's I/O thread, record, and never assert.
 */
#ifndef PSI_TESTS_NET_SINK_H
#define PSI_TESTS_NET_SINK_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "wire/msg.h"

typedef struct fail_rec {
    uint32_t peer;
    int err;
} fail_rec;

typedef struct sink {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    psi_msg **msgs;
    size_t n, cap;
    fail_rec fails[256];
    size_t nfails;
} sink;

static void sink_init(sink *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
}

static void sink_destroy(sink *s)
{
    for (size_t i = 0; i < s->n; i++) psi_msg_free(s->msgs[i]);
    free(s->msgs);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    memset(s, 0, sizeof(*s));
}

static void sink_on_receive(void *arg, psi_msg *m)
{
    sink *s = arg;
    pthread_mutex_lock(&s->mu);
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        psi_msg **p = realloc(s->msgs, cap * sizeof(*p));
        if (!p) {
            pthread_mutex_unlock(&s->mu);
            psi_msg_free(m);
            return;
        }
        s->msgs = p;
        s->cap = cap;
    }
    s->msgs[s->n++] = m;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void sink_on_failure(void *arg, uint32_t peer, int err)
{
    sink *s = arg;
    pthread_mutex_lock(&s->mu);
    if (s->nfails < PSI_ARRAY_LEN(s->fails)) s->fails[s->nfails++] = (fail_rec){peer, err};
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Wait until *count >= n or `ms` passed; returns *count. */
static inline size_t wait_count(sink *s, const size_t *count, size_t n, uint64_t ms)
{
    struct timespec dl = psi_deadline_in(ms);
    pthread_mutex_lock(&s->mu);
    while (*count < n && pthread_cond_timedwait(&s->cv, &s->mu, &dl) == 0) {
    }
    size_t got = *count;
    pthread_mutex_unlock(&s->mu);
    return got;
}

static inline size_t wait_msgs(sink *s, size_t n, uint64_t ms)
{
    return wait_count(s, &s->n, n, ms);
}
static inline size_t wait_fails(sink *s, size_t n, uint64_t ms)
{
    return wait_count(s, &s->nfails, n, ms);
}
static inline size_t msg_count(sink *s) { return wait_msgs(s, 0, 0); }
static inline size_t fail_count(sink *s) { return wait_fails(s, 0, 0); }

/* The i-th record (stable once counted: only appended to). */
static inline psi_msg *sink_msg(sink *s, size_t i)
{
    pthread_mutex_lock(&s->mu);
    psi_msg *m = i < s->n ? s->msgs[i] : NULL;
    pthread_mutex_unlock(&s->mu);
    return m;
}

static inline fail_rec sink_fail(sink *s, size_t i)
{
    pthread_mutex_lock(&s->mu);
    fail_rec f = i < s->nfails ? s->fails[i] : (fail_rec){0, 0};
    pthread_mutex_unlock(&s->mu);
    return f;
}

/* ---- test messages ------------------------------------------------------------ */

enum { ID_A = 1, ID_B = 2, ID_C = 3, ID_DEAD = 9 };

static inline uint8_t pattern_byte(uint64_t ts, int seg, size_t i)
{
    return (uint8_t)(i * 31u + (i >> 9) + (size_t)seg * 101u + ts * 7u);
}

/* A DATA message from A to B with `len[seg]` bytes per segment of a pattern
 * derived from (ts, seg), and key_count matching the keys segment. */
static inline psi_msg *make_msg(uint64_t ts, const size_t len[PSI_NSEG])
{
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);
    assert_non_null(m);
    m->hdr.flags = PSI_F_REQUEST | PSI_F_PUSH;
    m->hdr.table = 5;
    m->hdr.sender = ID_A;
    m->hdr.receiver = ID_B;
    m->hdr.epoch = 3;
    m->hdr.timestamp = ts;
    m->hdr.key_lo = 10;
    m->hdr.key_hi = 10 + ts;
    m->hdr.arg = (uint32_t)(ts ^ 0xA5A5u);
    m->hdr.filters[0] = 1;
    m->hdr.filters[7] = 8;
    for (int s = 0; s < PSI_NSEG; s++) {
        if (!len[s]) continue;
        uint8_t *buf = malloc(len[s]);
        assert_non_null(buf);
        for (size_t i = 0; i < len[s]; i++) buf[i] = pattern_byte(ts, s, i);
        m->seg[s] = buf;
        m->hdr.seg_len[s] = len[s];
    }
    assert_int_equal(len[PSI_SEG_KEYS] % 8, 0);
    m->hdr.key_count = len[PSI_SEG_KEYS] / 8;
    return m;
}

/* Check every header field and every payload byte of a received make_msg. */
static inline void check_msg(const psi_msg *m, uint64_t ts, const size_t len[PSI_NSEG])
{
    assert_non_null(m);
    assert_int_equal(m->hdr.version, PSI_WIRE_VERSION);
    assert_int_equal(m->hdr.type, PSI_MSG_DATA);
    assert_int_equal(m->hdr.flags, PSI_F_REQUEST | PSI_F_PUSH);
    assert_int_equal(m->hdr.table, 5);
    assert_int_equal(m->hdr.sender, ID_A);
    assert_int_equal(m->hdr.receiver, ID_B);
    assert_int_equal(m->hdr.epoch, 3);
    assert_int_equal(m->hdr.timestamp, ts);
    assert_int_equal(m->hdr.key_lo, 10);
    assert_int_equal(m->hdr.key_hi, 10 + ts);
    assert_int_equal(m->hdr.arg, (uint32_t)(ts ^ 0xA5A5u));
    assert_int_equal(m->hdr.filters[0], 1);
    assert_int_equal(m->hdr.filters[7], 8);
    assert_int_equal(m->hdr.key_count, len[PSI_SEG_KEYS] / 8);
    for (int s = 0; s < PSI_NSEG; s++) {
        assert_int_equal(m->hdr.seg_len[s], len[s]);
        if (!len[s]) continue;
        const uint8_t *p = m->seg[s];
        assert_non_null(p);
        for (size_t i = 0; i < len[s]; i++)
            if (p[i] != pattern_byte(ts, s, i))
                fail_msg("message ts=%llu segment %d byte %zu of %zu corrupted",
                         (unsigned long long)ts, s, i, len[s]);
    }
}

#endif /* PSI_TESTS_NET_SINK_H */
