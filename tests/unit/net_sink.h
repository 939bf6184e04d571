/*
 * net_sink.h -- for the transport unit tests (test_tcp.c, test_ucx.c): a
 * sink that records what one transport's callbacks report, the messages it
 * received and the peer failures, under a mutex and a condition the tests
 * wait on.  Header-only; the callbacks run on the transport's I/O thread,
 * record, and never assert.
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

#endif /* PSI_TESTS_NET_SINK_H */
