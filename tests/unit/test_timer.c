/*
 * test_timer.c -- unit tests of src/util/timer.c, the one thread that runs
 * the library's periodic work: a client added after a slow one is not made
 * to wait for the slow one's period; a removed client never runs again,
 * while the others go on; removing a client whose function is running waits
 * for it to return; the last client's removal stops the thread and the next
 * add starts one (many times over, clients added and removed from several
 * threads at once).  Waits are for conditions, each with a deadline.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "ps/ps.h"
#include "util/timer.h"
#include "util/util.h"

static void count(void *arg, uint64_t now)
{
    (void)now;
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* Poll (1 ms apart) until *n >= want, for at most 10 s; whether it did. */
static int wait_count(atomic_int *n, int want)
{
    uint64_t end = psi_now_ms() + 10000;
    struct timespec ms = {0, 1000000};
    while (atomic_load(n) < want && psi_now_ms() < end) nanosleep(&ms, NULL);
    return atomic_load(n) >= want;
}

static void test_new_client_does_not_wait_for_a_slow_one(void **state)
{
    (void)state;
    atomic_int slow = 0, fast = 0;
    psi_timer *a, *b;
    assert_int_equal(psi_timer_add(60000, count, &slow, &a), 0);
    assert_int_equal(psi_timer_add(1, count, &fast, &b), 0);
    assert_true(wait_count(&fast, 20));
    assert_int_equal(atomic_load(&slow), 0); /* not due for a minute */
    psi_timer_remove(b);
    psi_timer_remove(a);
}

static void test_removed_client_never_runs_again(void **state)
{
    (void)state;
    atomic_int x = 0, y = 0;
    psi_timer *a, *b;
    assert_int_equal(psi_timer_add(1, count, &x, &a), 0);
    assert_int_equal(psi_timer_add(1, count, &y, &b), 0);
    assert_true(wait_count(&x, 3));
    psi_timer_remove(a);
    int after = atomic_load(&x), yb = atomic_load(&y);
    assert_true(wait_count(&y, yb + 20)); /* the service went on ... */
    assert_int_equal(atomic_load(&x), after); /* ... without it */
    psi_timer_remove(b);
}

typedef struct blocker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered, release, returned;
    psi_timer *t;
    atomic_int remover_saw_returned;
} blocker;

static void block_fn(void *arg, uint64_t now)
{
    (void)now;
    blocker *b = arg;
    pthread_mutex_lock(&b->mu);
    if (b->returned) { /* one run only */
        pthread_mutex_unlock(&b->mu);
        return;
    }
    b->entered = 1;
    pthread_cond_broadcast(&b->cv);
    while (!b->release) pthread_cond_wait(&b->cv, &b->mu);
    b->returned = 1;
    pthread_mutex_unlock(&b->mu);
}

static void *remover(void *arg)
{
    blocker *b = arg;
    psi_timer_remove(b->t);
    pthread_mutex_lock(&b->mu);
    atomic_store(&b->remover_saw_returned, b->returned);
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

/* The function is held inside its run while another thread removes it:
 * psi_timer_remove returns only after the function has. */
static void test_remove_waits_for_a_running_function(void **state)
{
    (void)state;
    blocker b = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    assert_int_equal(psi_timer_add(1, block_fn, &b, &b.t), 0);
    pthread_mutex_lock(&b.mu);
    while (!b.entered) pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, remover, &b), 0);
    pthread_mutex_lock(&b.mu);
    b.release = 1;
    pthread_cond_broadcast(&b.cv);
    pthread_mutex_unlock(&b.mu);
    pthread_join(th, NULL);
    assert_int_equal(atomic_load(&b.remover_saw_returned), 1);
}

static void *churn(void *arg)
{
    atomic_int *runs = arg;
    for (int i = 0; i < 50; i++) {
        psi_timer *t;
        atomic_int mine = 0;
        if (psi_timer_add(1, count, &mine, &t) != 0) return (void *)1;
        if (!wait_count(&mine, 1)) return (void *)1; /* a thread is there to run it */
        psi_timer_remove(t);
        atomic_fetch_add(runs, atomic_load(&mine));
    }
    return NULL;
}

/* Four threads add a client, see it run, remove it, 50 times each: the
 * thread stops and starts again under them, and every client runs. */
static void test_thread_stops_and_starts_with_its_clients(void **state)
{
    (void)state;
    atomic_int runs = 0;
    pthread_t th[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, churn, &runs), 0);
    for (int i = 0; i < 4; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    assert_true(atomic_load(&runs) >= 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_client_does_not_wait_for_a_slow_one),
        cmocka_unit_test(test_removed_client_never_runs_again),
        cmocka_unit_test(test_remove_waits_for_a_running_function),
        cmocka_unit_test(test_thread_stops_and_starts_with_its_clients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
