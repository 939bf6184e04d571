/*
 * test_beat.c -- UDP heartbeats (src/node/beat.c) on 127.0.0.1: a node's
 * beats reach the scheduler's callback and are answered; beats under
 * another key, malformed datagrams and replays are dropped unread and
 * never answered.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "node/beat.h"
#include "util/util.h"

#define WAIT_MS 3000

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int nbeats;
static uint32_t last_id, last_epoch;
static int answer = 1;

static int on_beat(void *arg, uint32_t id, uint32_t epoch)
{
    (void)arg;
    pthread_mutex_lock(&mu);
    nbeats++;
    last_id = id;
    last_epoch = epoch;
    int a = answer;
    pthread_mutex_unlock(&mu);
    return a;
}

static int beats(void)
{
    pthread_mutex_lock(&mu);
    int n = nbeats;
    pthread_mutex_unlock(&mu);
    return n;
}

static uint32_t seen_id(void)
{
    pthread_mutex_lock(&mu);
    uint32_t id = last_id;
    pthread_mutex_unlock(&mu);
    return id;
}

static uint32_t seen_epoch(void)
{
    pthread_mutex_lock(&mu);
    uint32_t e = last_epoch;
    pthread_mutex_unlock(&mu);
    return e;
}

static void set_answer(int a)
{
    pthread_mutex_lock(&mu);
    answer = a;
    nbeats = 0;
    pthread_mutex_unlock(&mu);
}

static int wait_beats(int n)
{
    uint64_t end = psi_now_ms() + WAIT_MS;
    while (beats() < n && psi_now_ms() < end) poll(NULL, 0, 2);
    return beats();
}

/* Poll a node for answers to `id` until `n` came or the wait ends. */
static int wait_answers(psi_beat *node, uint32_t id, int n, uint64_t ms)
{
    int got = 0;
    uint64_t end = psi_now_ms() + ms;
    while (got < n && psi_now_ms() < end) {
        got += psi_beat_poll(node, id);
        if (got < n) poll(NULL, 0, 2);
    }
    return got;
}

static psi_gate_key key_of(const char *s)
{
    psi_gate_key k;
    psi_gate_key_derive(&k, s, strlen(s));
    return k;
}

/* A free UDP port on 127.0.0.1 (bound and released). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_beats_reach_and_are_answered(void **state)
{
    (void)state;
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", free_port());
    psi_gate_key k = key_of("s3cret");
    psi_beat *sched, *node;
    set_answer(1);
    assert_int_equal(psi_beat_listen(addr, &k, on_beat, NULL, &sched), 0);
    assert_int_equal(psi_beat_open(addr, &k, &node), 0);
    for (int i = 0; i < 5; i++) psi_beat_send(node, 7, 3);
    assert_int_equal(wait_beats(5), 5);
    assert_int_equal(seen_id(), 7);
    assert_int_equal(seen_epoch(), 3);
    assert_int_equal(wait_answers(node, 7, 5, WAIT_MS), 5);
    /* answers for another id do not count for this node */
    psi_beat_send(node, 8, 3);
    assert_int_equal(wait_beats(6), 6);
    assert_int_equal(wait_answers(node, 7, 1, 300), 0);
    /* a refused beat (the callback says no) is not answered */
    pthread_mutex_lock(&mu);
    answer = 0;
    pthread_mutex_unlock(&mu);
    psi_beat_send(node, 7, 3);
    assert_int_equal(wait_beats(7), 7);
    assert_int_equal(wait_answers(node, 7, 1, 300), 0);
    psi_beat_close(node);
    psi_beat_close(sched);
}

static void test_strangers_and_replays_dropped(void **state)
{
    (void)state;
    char addr[64];
    int port = free_port();
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    psi_gate_key k = key_of("s3cret"), other = key_of("guess");
    psi_beat *sched, *node, *stranger;
    set_answer(1);
    assert_int_equal(psi_beat_listen(addr, &k, on_beat, NULL, &sched), 0);
    assert_int_equal(psi_beat_open(addr, &other, &stranger), 0);
    for (int i = 0; i < 20; i++) psi_beat_send(stranger, 5, 1);
    /* raw junk, a short datagram, a long one, and a replay of a captured beat */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    uint8_t junk[2000];
    memset(junk, 0xab, sizeof(junk));
    memcpy(junk, "PSHB\x01", 5);
    for (size_t len = 0; len < 80; len += 7) send(fd, junk, len, 0);
    send(fd, junk, sizeof(junk), 0);
    assert_int_equal(psi_beat_open(addr, &k, &node), 0);
    psi_beat_send(node, 9, 2);
    assert_int_equal(wait_beats(1), 1); /* only the real one */
    assert_int_equal(seen_id(), 9);
    assert_int_equal(wait_answers(stranger, 5, 1, 300), 0);
    /* a replay: capture a real beat at a socket of ours, then send its
     * exact bytes to the scheduler twice: counted once */
    int cap = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ca = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t cl = sizeof(ca);
    assert_int_equal(bind(cap, (struct sockaddr *)&ca, sizeof(ca)), 0);
    assert_int_equal(getsockname(cap, (struct sockaddr *)&ca, &cl), 0);
    char caddr[64];
    snprintf(caddr, sizeof(caddr), "127.0.0.1:%d", ntohs(ca.sin_port));
    psi_beat *again;
    assert_int_equal(psi_beat_open(caddr, &k, &again), 0);
    psi_beat_send(again, 11, 4);
    uint8_t captured[64];
    struct pollfd pf = {.fd = cap, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, WAIT_MS), 1);
    ssize_t clen = recv(cap, captured, sizeof(captured), 0);
    assert_int_equal(clen, 40);
    send(fd, captured, (size_t)clen, 0);
    assert_int_equal(wait_beats(2), 2);
    assert_int_equal(seen_id(), 11);
    send(fd, captured, (size_t)clen, 0);
    send(fd, captured, (size_t)clen, 0);
    poll(NULL, 0, 300);
    assert_int_equal(beats(), 2);
    psi_beat_close(again);
    close(cap);
    psi_beat_close(stranger);
    psi_beat_close(node);
    psi_beat_close(sched);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beats_reach_and_are_answered),
        cmocka_unit_test(test_strangers_and_replays_dropped),
    };
    alarm(60);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
