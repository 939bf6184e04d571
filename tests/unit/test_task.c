/*
 * test_task.c -- unit tests of src/task/task.c, the task queue: timestamps,
 * the three consistency models (sequential, bounded delay tau, eventual),
 * explicit dependencies, statuses kept below the window's base, completion
 * callbacks, wait / wait_all, the trace hook, window growth and wrap-around,
 * synchronous completion chains, and multi-threaded stress.
 *
 * Single-threaded tests drive the queue through a recording fake executor
 * (R below) whose start function only records, unless the task was marked
 * to finish synchronously inside its own start.  Threaded tests hand started
 * tasks to executor threads through a mutex + condition variable and never
 * sleep to wait for a condition; cmocka assertions run only on the main
 * thread (threads count errors, the main thread checks the counts).  Every
 * test runs under a SIGALRM watchdog set in its setup.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ps/ps.h"
#include "task/task.h"
#include "util/util.h"

#define WATCHDOG_S 60 /* per test: kill the process if a test hangs */
#define MAXT 4096     /* tasks a single-threaded test may submit */
#define NO_AUTO 1     /* auto_status value: do not finish inside start */

/* ---- the recording fake executor --------------------------------------------- */

typedef struct rec {
    psi_tq *q;
    int64_t nsub;              /* the timestamp the next sub() expects */
    int64_t tag[MAXT];         /* tag[k] = k: start's ctx is &tag[ts] */
    int auto_status[MAXT];     /* != NO_AUTO: start finishes with it */
    int starts[MAXT];          /* start calls per ts */
    int64_t order[MAXT];       /* timestamps in start order */
    int nstarted;
    int ndone[MAXT];           /* callback calls per ts */
    int done_status[MAXT];
    int done_finished[MAXT];   /* psi_tq_finished(q, ts) inside the callback */
    int done_wait[MAXT];       /* psi_tq_wait(q, ts) inside the callback */
    int bad_ctx;               /* start called with a ctx for another ts */
} rec;

static rec R;

static void rec_start(void *ctx, int64_t ts)
{
    if (ts < 0 || ts >= MAXT || ctx != &R.tag[ts] || *(int64_t *)ctx != ts) {
        R.bad_ctx++;
        return;
    }
    R.starts[ts]++;
    R.order[R.nstarted++] = ts;
    if (R.auto_status[ts] != NO_AUTO) psi_tq_finish(R.q, ts, R.auto_status[ts]);
}

static void rec_done(void *arg, int64_t ts, int status)
{
    rec *r = arg;
    if (ts < 0 || ts >= MAXT) {
        r->bad_ctx++;
        return;
    }
    r->ndone[ts]++;
    r->done_status[ts] = status;
    r->done_finished[ts] = psi_tq_finished(r->q, ts);
    r->done_wait[ts] = psi_tq_wait(r->q, ts); /* would deadlock under the lock */
}

/* Submit the next task with deps; `auto_status` as in rec.  Asserts the
 * timestamp is the next one. */
static int64_t sub_deps(const int64_t *deps, int ndeps, int auto_status)
{
    int64_t k = R.nsub;
    assert_true(k < MAXT);
    R.tag[k] = k;
    R.auto_status[k] = auto_status;
    int64_t ts = psi_tq_submit(R.q, rec_start, &R.tag[k], deps, ndeps, rec_done, &R);
    assert_int_equal(ts, k);
    R.nsub++;
    return ts;
}

static int64_t sub(void) { return sub_deps(NULL, 0, NO_AUTO); }

/* Every task in [0, n) started exactly once, and none in [n, nsub) yet. */
static void assert_started_prefix(int64_t n)
{
    for (int64_t i = 0; i < R.nsub; i++) assert_int_equal(R.starts[i], i < n ? 1 : 0);
}

static int setup_queue(psi_tq *q)
{
    memset(&R, 0, sizeof(R));
    R.q = q;
    alarm(WATCHDOG_S);
    return q ? 0 : -1;
}

static int setup_eventual(void **state) { return setup_queue(psi_tq_new(-1)); }
static int setup_sequential(void **state) { return setup_queue(psi_tq_new(0)); }
static int setup_tau2(void **state) { return setup_queue(psi_tq_new(2)); }
static int setup_watchdog(void **state)
{
    setup_queue(NULL);
    return 0;
}

static int teardown_queue(void **state)
{
    psi_tq_free(R.q);
    R.q = NULL;
    alarm(0);
    return 0;
}

/* ---- timestamps ----------------------------------------------------------------- */

static int64_t simple_starts;
static void count_start(void *ctx, int64_t ts) { simple_starts++; }

static void test_timestamps_count_from_zero_start_once(void **state)
{
    for (int i = 0; i < 10; i++) sub();
    assert_int_equal(R.bad_ctx, 0);
    assert_started_prefix(10); /* eventual: all started at submit */
    for (int i = 0; i < 10; i++) assert_int_equal(R.order[i], i);
    for (int i = 9; i >= 0; i--) psi_tq_finish(R.q, i, PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_OK);
    assert_started_prefix(10); /* finishing starts nothing twice */
    for (int i = 0; i < 10; i++) assert_int_equal(R.ndone[i], 1);

    /* Another queue numbers its own tasks from 0. */
    psi_tq *q2 = psi_tq_new(0);
    assert_non_null(q2);
    simple_starts = 0;
    assert_int_equal(psi_tq_submit(q2, count_start, NULL, NULL, 0, NULL, NULL), 0);
    assert_int_equal(psi_tq_submit(q2, count_start, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(simple_starts, 1);
    assert_int_equal(sub(), 10); /* and the first queue goes on */
    psi_tq_finish(q2, 0, PS_OK);
    psi_tq_finish(q2, 1, PS_OK);
    assert_int_equal(simple_starts, 2);
    assert_int_equal(psi_tq_wait_all(q2), PS_OK);
    psi_tq_free(q2);
}

/* Tasks that finish inside their own start: each started exactly once under
 * every model. */
static void test_immediate_tasks_start_once_each_model(void **state)
{
    int taus[] = {-1, 0, 1, 2, 5};
    for (size_t m = 0; m < PSI_ARRAY_LEN(taus); m++) {
        psi_tq_free(R.q);
        setup_queue(psi_tq_new(taus[m]));
        for (int i = 0; i < 200; i++) sub_deps(NULL, 0, i % 3 == 0 ? PS_ERR_PEER : PS_OK);
        assert_int_equal(R.bad_ctx, 0);
        assert_started_prefix(200);
        for (int i = 0; i < 200; i++) {
            assert_int_equal(R.order[i], i);
            assert_int_equal(R.ndone[i], 1);
            assert_int_equal(psi_tq_wait(R.q, i), i % 3 == 0 ? PS_ERR_PEER : PS_OK);
        }
        assert_int_equal(psi_tq_wait_all(R.q), PS_ERR_PEER);
    }
}

/* ---- sequential ------------------------------------------------------------------- */

static void test_sequential_starts_one_at_a_time(void **state)
{
    for (int i = 0; i < 5; i++) sub();
    assert_started_prefix(1);
    for (int k = 0; k < 5; k++) {
        /* only k runs: none after it started, all before it finished */
        assert_started_prefix(k + 1);
        for (int i = 0; i < 5; i++) assert_int_equal(psi_tq_finished(R.q, i), i < k ? 1 : 0);
        psi_tq_finish(R.q, k, PS_OK);
        assert_int_equal(R.ndone[k], 1);
    }
    assert_started_prefix(5);
    for (int i = 0; i < 5; i++) assert_int_equal(R.order[i], i);
    assert_int_equal(psi_tq_wait_all(R.q), PS_OK);
    /* a task submitted after everything finished starts right away */
    sub();
    assert_started_prefix(6);
}

/* Under sequential consistency only the oldest unfinished task is running,
 * so an executor can never finish a later one first.  A finish for a task
 * that has not started (a caller error) must not mark it finished: its start
 * would then never be called, breaking "start is called exactly once", and
 * waiters would see a task finished that never ran. */
static void test_sequential_finish_before_start_is_ignored(void **state)
{
    for (int i = 0; i < 4; i++) sub();
    assert_started_prefix(1);
    psi_tq_finish(R.q, 2, PS_ERR_PEER); /* 2 is waiting, not running */
    assert_int_equal(psi_tq_finished(R.q, 2), 0);
    assert_int_equal(R.ndone[2], 0);
    psi_tq_finish(R.q, 0, PS_OK);
    psi_tq_finish(R.q, 1, PS_OK);
    assert_int_equal(R.starts[2], 1); /* 2 still runs, after 1 */
    assert_int_equal(R.starts[3], 0);
    psi_tq_finish(R.q, 2, PS_OK);
    psi_tq_finish(R.q, 3, PS_OK);
    assert_started_prefix(4);
    assert_int_equal(psi_tq_wait(R.q, 2), PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_OK);
}

/* ---- bounded delay -------------------------------------------------------------------- */

static void test_bounded_delay_tau2(void **state)
{
    for (int i = 0; i < 5; i++) sub();
    assert_started_prefix(3); /* 0, 1, 2: nothing at or below ts - 3 */
    psi_tq_finish(R.q, 1, PS_OK);
    assert_started_prefix(3); /* 3 needs 0 */
    assert_int_equal(R.ndone[1], 1);
    psi_tq_finish(R.q, 0, PS_OK); /* 0 and 1 finished: 3 and 4 may start */
    assert_started_prefix(5);
    assert_int_equal(R.order[3], 3);
    assert_int_equal(R.order[4], 4);
    sub(); /* 5 needs 0..2 */
    assert_int_equal(R.starts[5], 0);
    psi_tq_finish(R.q, 3, PS_OK);
    psi_tq_finish(R.q, 4, PS_OK);
    assert_int_equal(R.starts[5], 0);
    psi_tq_finish(R.q, 2, PS_ERR_TIMEOUT); /* a failure counts as finished */
    assert_int_equal(R.starts[5], 1);
    psi_tq_finish(R.q, 5, PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_ERR_TIMEOUT);
    assert_int_equal(psi_tq_wait(R.q, 2), PS_ERR_TIMEOUT);
}

/* ---- eventual --------------------------------------------------------------------------- */

static void test_eventual_all_start_finish_any_order(void **state)
{
    enum { N = 8 };
    const int order[N] = {5, 2, 7, 0, 3, 6, 1, 4};
    for (int i = 0; i < N; i++) sub();
    assert_started_prefix(N);
    for (int k = 0; k < N; k++) {
        int ts = order[k];
        int st = ts % 3 == 0 ? PS_ERR_PEER : PS_OK;
        psi_tq_finish(R.q, ts, st);
        assert_int_equal(psi_tq_finished(R.q, ts), 1);
        assert_int_equal(psi_tq_wait(R.q, ts), st);
        assert_int_equal(R.ndone[ts], 1);
        assert_int_equal(R.done_status[ts], st);
    }
    assert_started_prefix(N);
    for (int ts = 0; ts < N; ts++)
        assert_int_equal(psi_tq_wait(R.q, ts), ts % 3 == 0 ? PS_ERR_PEER : PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_ERR_PEER);
}

/* ---- explicit dependencies ------------------------------------------------------------- */

static void test_deps_start_after_all_listed_finished(void **state)
{
    for (int i = 0; i < 3; i++) sub();
    const int64_t deps[] = {0, 2};
    int64_t ts = sub_deps(deps, 2, NO_AUTO);
    assert_int_equal(ts, 3);
    assert_int_equal(R.starts[3], 0);
    psi_tq_finish(R.q, 1, PS_OK); /* not a dependency */
    assert_int_equal(R.starts[3], 0);
    psi_tq_finish(R.q, 2, PS_OK);
    assert_int_equal(R.starts[3], 0);
    sub(); /* 4: no deps, eventual: runs at once */
    assert_int_equal(R.starts[4], 1);
    psi_tq_finish(R.q, 0, PS_ERR_PEER); /* failed still means finished */
    assert_int_equal(R.starts[3], 1);
    assert_int_equal(R.order[R.nstarted - 1], 3);
    psi_tq_finish(R.q, 3, PS_OK);
    psi_tq_finish(R.q, 4, PS_OK);
    assert_int_equal(psi_tq_wait(R.q, 3), PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_ERR_PEER);

    /* deps below the base (finished long ago), a failed one included, and a
     * repeated one: start at once */
    const int64_t old[] = {0, 1, 1, 4};
    sub_deps(old, 4, NO_AUTO);
    assert_int_equal(R.starts[5], 1);
    psi_tq_finish(R.q, 5, PS_OK);
}

/* A diamond: 1 and 2 depend on 0, 3 on both 1 and 2. */
static void test_deps_chain_and_diamond(void **state)
{
    sub();                       /* 0 */
    int64_t d0[] = {0};
    sub_deps(d0, 1, NO_AUTO);    /* 1 <- 0 */
    sub_deps(d0, 1, NO_AUTO);    /* 2 <- 0 */
    int64_t d12[] = {1, 2};
    sub_deps(d12, 2, NO_AUTO);   /* 3 <- 1, 2 */
    assert_started_prefix(1);
    psi_tq_finish(R.q, 0, PS_OK);
    assert_int_equal(R.starts[1], 1);
    assert_int_equal(R.starts[2], 1);
    assert_int_equal(R.starts[3], 0);
    psi_tq_finish(R.q, 2, PS_OK);
    assert_int_equal(R.starts[3], 0);
    psi_tq_finish(R.q, 1, PS_OK);
    assert_int_equal(R.starts[3], 1);
    psi_tq_finish(R.q, 3, PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_OK);
}

/* Dependencies and bounded delay together: both must hold. */
static void test_deps_with_bounded_delay(void **state)
{
    psi_tq_free(R.q);
    setup_queue(psi_tq_new(1));
    sub();                          /* 0 */
    sub();                          /* 1 */
    int64_t d1[] = {1};
    sub_deps(d1, 1, NO_AUTO);       /* 2 <- 1, and tau: needs 0 */
    assert_started_prefix(2);
    psi_tq_finish(R.q, 1, PS_OK);   /* dep done, 0 not */
    assert_int_equal(R.starts[2], 0);
    psi_tq_finish(R.q, 0, PS_OK);
    assert_int_equal(R.starts[2], 1);
    psi_tq_finish(R.q, 2, PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_OK);
}

static void test_deps_invalid_rejected_nothing_submitted(void **state)
{
    sub(); /* 0 */
    sub(); /* 1 */
    int64_t future[] = {0, 2};
    int64_t self[] = {2};
    int64_t neg[] = {-1};
    int64_t far[] = {INT64_MAX};
    R.tag[2] = 2;
    assert_int_equal(psi_tq_submit(R.q, rec_start, &R.tag[2], future, 2, rec_done, &R),
                     PS_ERR_INVAL);
    assert_int_equal(psi_tq_submit(R.q, rec_start, &R.tag[2], self, 1, rec_done, &R),
                     PS_ERR_INVAL);
    assert_int_equal(psi_tq_submit(R.q, rec_start, &R.tag[2], neg, 1, rec_done, &R),
                     PS_ERR_INVAL);
    assert_int_equal(psi_tq_submit(R.q, rec_start, &R.tag[2], far, 1, rec_done, &R),
                     PS_ERR_INVAL);
    assert_int_equal(psi_tq_submit(R.q, rec_start, &R.tag[2], future, -1, rec_done, &R),
                     PS_ERR_INVAL);
    assert_int_equal(psi_tq_submit(R.q, rec_start, &R.tag[2], NULL, 1, rec_done, &R),
                     PS_ERR_INVAL);
    assert_int_equal(psi_tq_submit(R.q, rec_start, &R.tag[2], NULL, INT32_MIN, rec_done, &R),
                     PS_ERR_INVAL);
    /* nothing was submitted: 2 was never issued, nothing started */
    assert_int_equal(psi_tq_finished(R.q, 2), -1);
    assert_int_equal(psi_tq_wait(R.q, 2), PS_ERR_INVAL);
    assert_int_equal(R.starts[2], 0);
    assert_int_equal(R.nstarted, 2);
    /* the next good submit still gets 2; NULL deps with ndeps 0 is fine */
    assert_int_equal(sub_deps(NULL, 0, NO_AUTO), 2);
    for (int i = 0; i < 3; i++) psi_tq_finish(R.q, i, PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_OK);
    for (int i = 0; i < 3; i++) assert_int_equal(R.ndone[i], 1);
}

/* ---- statuses, wait, wait_all ------------------------------------------------------------ */

static void test_failure_status_kept_below_base(void **state)
{
    sub();
    psi_tq_finish(R.q, 0, PS_ERR_PEER);
    for (int i = 1; i < 2000; i++) {
        sub();
        psi_tq_finish(R.q, i, i == 777 ? PS_ERR_TIMEOUT : PS_OK);
    }
    /* every task is below the base now */
    assert_int_equal(psi_tq_wait(R.q, 0), PS_ERR_PEER);
    assert_int_equal(psi_tq_wait(R.q, 777), PS_ERR_TIMEOUT);
    assert_int_equal(psi_tq_wait(R.q, 1), PS_OK);
    assert_int_equal(psi_tq_wait(R.q, 776), PS_OK);
    assert_int_equal(psi_tq_wait(R.q, 778), PS_OK);
    assert_int_equal(psi_tq_wait(R.q, 1999), PS_OK);
    assert_int_equal(psi_tq_finished(R.q, 0), 1);
    assert_int_equal(psi_tq_finished(R.q, 1999), 1);
    assert_int_equal(psi_tq_wait_all(R.q), PS_ERR_PEER); /* the first failure */
}

static void test_wait_all_success_and_empty(void **state)
{
    assert_int_equal(psi_tq_wait_all(R.q), PS_OK); /* nothing submitted */
    for (int i = 0; i < 100; i++) sub();
    for (int i = 99; i >= 0; i--) psi_tq_finish(R.q, i, PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_OK);
    for (int i = 0; i < 100; i++) assert_int_equal(psi_tq_wait(R.q, i), PS_OK);
}

static void test_wait_never_issued_is_inval(void **state)
{
    assert_int_equal(psi_tq_wait(R.q, 0), PS_ERR_INVAL);
    assert_int_equal(psi_tq_finished(R.q, 0), -1);
    sub();
    sub();
    assert_int_equal(psi_tq_wait(R.q, 2), PS_ERR_INVAL);
    assert_int_equal(psi_tq_wait(R.q, -1), PS_ERR_INVAL);
    assert_int_equal(psi_tq_wait(R.q, INT64_MAX), PS_ERR_INVAL);
    assert_int_equal(psi_tq_wait(R.q, INT64_MIN), PS_ERR_INVAL);
    assert_int_equal(psi_tq_finished(R.q, -1), -1);
    assert_int_equal(psi_tq_finished(R.q, 2), -1);
    assert_int_equal(psi_tq_finished(R.q, 1), 0);
    psi_tq_finish(R.q, 0, PS_OK);
    psi_tq_finish(R.q, 1, PS_OK);
}

static void test_finish_twice_is_ignored(void **state)
{
    sub(); /* 0 */
    sub(); /* 1 */
    /* twice while in the window (0 holds the base) */
    psi_tq_finish(R.q, 1, PS_ERR_PEER);
    psi_tq_finish(R.q, 1, PS_OK);
    assert_int_equal(R.ndone[1], 1);
    assert_int_equal(R.done_status[1], PS_ERR_PEER);
    assert_int_equal(psi_tq_wait(R.q, 1), PS_ERR_PEER);
    /* twice after it slid below the base */
    psi_tq_finish(R.q, 0, PS_OK);
    psi_tq_finish(R.q, 0, PS_ERR_TIMEOUT);
    psi_tq_finish(R.q, 1, PS_OK);
    assert_int_equal(R.ndone[0], 1);
    assert_int_equal(R.done_status[0], PS_OK);
    assert_int_equal(psi_tq_wait(R.q, 0), PS_OK);
    assert_int_equal(R.ndone[1], 1);
    assert_int_equal(psi_tq_wait(R.q, 1), PS_ERR_PEER);
    /* never issued: ignored, no callback, nothing starts */
    psi_tq_finish(R.q, 2, PS_ERR_PEER);
    psi_tq_finish(R.q, -1, PS_ERR_PEER);
    psi_tq_finish(R.q, INT64_MAX, PS_ERR_PEER);
    assert_int_equal(R.ndone[2], 0);
    assert_int_equal(psi_tq_finished(R.q, 2), -1);
    assert_int_equal(sub(), 2); /* and 2 is fresh */
    assert_int_equal(psi_tq_finished(R.q, 2), 0);
    psi_tq_finish(R.q, 2, PS_OK);
    assert_int_equal(psi_tq_wait(R.q, 2), PS_OK);
    assert_int_equal(psi_tq_wait_all(R.q), PS_ERR_PEER);
    assert_int_equal(R.nstarted, 3);
}

/* ---- completion callbacks ------------------------------------------------------------------ */

static void test_callback_once_after_marked_finished(void **state)
{
    for (int i = 0; i < 4; i++) sub();
    psi_tq_finish(R.q, 2, PS_ERR_PEER); /* in the window */
    psi_tq_finish(R.q, 0, PS_OK);       /* at the base */
    psi_tq_finish(R.q, 1, PS_OK);       /* slides the base over 2 */
    psi_tq_finish(R.q, 3, PS_ERR_CLOSED);
    const int want[] = {PS_OK, PS_OK, PS_ERR_PEER, PS_ERR_CLOSED};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(R.ndone[i], 1);
        assert_int_equal(R.done_status[i], want[i]);
        assert_int_equal(R.done_finished[i], 1);
        assert_int_equal(R.done_wait[i], want[i]);
    }
    /* a NULL callback is fine */
    assert_int_equal(psi_tq_submit(R.q, count_start, NULL, NULL, 0, NULL, NULL), 4);
    psi_tq_finish(R.q, 4, PS_OK);
    assert_int_equal(psi_tq_wait(R.q, 4), PS_OK);
}

/* Callbacks and starts run without the lock: they may submit and finish. */
static psi_tq *reentrant_q;
static int reentrant_starts, reentrant_done;
static void reentrant_start(void *ctx, int64_t ts)
{
    reentrant_starts++;
    if (ts < 50) /* a start that submits the next task */
        psi_tq_submit(reentrant_q, reentrant_start, NULL, NULL, 0, NULL, NULL);
}
static void reentrant_cb(void *arg, int64_t ts, int status)
{
    reentrant_done++;
    if (ts < 100) { /* a callback that submits and finishes */
        int64_t nts = psi_tq_submit(reentrant_q, count_start, NULL, NULL, 0, reentrant_cb, NULL);
        psi_tq_finish(reentrant_q, nts, PS_OK);
    }
}

static void test_start_and_callback_may_reenter(void **state)
{
    reentrant_q = R.q;
    reentrant_starts = reentrant_done = 0;
    assert_int_equal(psi_tq_submit(R.q, reentrant_start, NULL, NULL, 0, NULL, NULL), 0);
    assert_int_equal(reentrant_starts, 51); /* eventual: each nested submit started */
    for (int i = 0; i <= 50; i++) psi_tq_finish(R.q, i, PS_OK);
    int64_t ts = psi_tq_submit(R.q, count_start, NULL, NULL, 0, reentrant_cb, NULL);
    assert_int_equal(ts, 51);
    psi_tq_finish(R.q, ts, PS_OK);
    assert_int_equal(reentrant_done, 100 - 51 + 1);
    assert_int_equal(psi_tq_wait_all(R.q), PS_OK);
}

/* ---- synchronous completion chains ------------------------------------------------------- */

/* Task 0 blocks a sequential queue while `n` tasks that finish inside their
 * own start queue up behind it; finishing 0 releases the whole chain. */
typedef struct chain {
    psi_tq *q;
    int64_t n, runs, bad;
    uintptr_t lo, hi; /* stack frame addresses seen by the starts */
} chain;

static void chain_start(void *ctx, int64_t ts)
{
    chain *c = ctx;
    uintptr_t fp = (uintptr_t)__builtin_frame_address(0);
    if (ts != c->runs) c->bad++;
    c->runs++;
    if (ts == 0) return; /* the blocker */
    if (!c->lo || fp < c->lo) c->lo = fp;
    if (fp > c->hi) c->hi = fp;
    psi_tq_finish(c->q, ts, PS_OK);
}

static int run_chain(chain *c)
{
    if (!(c->q = psi_tq_new(0))) return 1;
    for (int64_t i = 0; i <= c->n; i++)
        if (psi_tq_submit(c->q, chain_start, c, NULL, 0, NULL, NULL) != i) return 2;
    if (c->runs != 1) return 3;
    psi_tq_finish(c->q, 0, PS_OK);
    if (psi_tq_wait_all(c->q) != PS_OK) return 4;
    if (c->runs != c->n + 1 || c->bad) return 5;
    psi_tq_free(c->q);
    return 0;
}

/* The stack used by a chain of synchronous completions must not grow with
 * its length: start -> finish -> start -> ... recursion overflows the stack
 * of whichever thread finishes the blocker (an I/O thread, say). */
static void test_sync_finish_chain_stack_bounded(void **state)
{
    chain c = {.n = 5000};
    assert_int_equal(run_chain(&c), 0);
    uintptr_t depth = c.hi - c.lo;
    if (depth >= 64 * 1024)
        fail_msg("a chain of %lld synchronous completions used %lu KiB of stack: "
                 "psi_tq_finish recurses through run_starts", (long long)c.n,
                 (unsigned long)(depth / 1024));
}

#define CHAIN_LONG 100000
#define CHAIN_LIMIT_S 10

static void *chain_thread(void *arg)
{
    chain *c = arg;
    return (void *)(intptr_t)run_chain(c);
}

/* 100000 synchronous completions queued behind a blocker, on a thread with a
 * fixed 8 MiB stack, in a child process so that a stack overflow or a
 * runaway (quadratic) run reports instead of killing the test binary. */
static void test_sync_finish_chain_100k(void **state)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(CHAIN_LIMIT_S);
        chain c = {.n = CHAIN_LONG};
        pthread_attr_t a;
        pthread_t th;
        void *rv = (void *)(intptr_t)9;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 8u << 20);
        if (pthread_create(&th, &a, chain_thread, &c) == 0) pthread_join(th, &rv);
        _exit((int)(intptr_t)rv);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        fail_msg("a chain of %d queued tasks took more than %d s "
                 "(the window is rescanned on every submit and finish)", CHAIN_LONG,
                 CHAIN_LIMIT_S);
    if (WIFSIGNALED(st))
        fail_msg("a chain of %d synchronous completions died of signal %d "
                 "(stack overflow: start -> finish -> start recursion)", CHAIN_LONG,
                 WTERMSIG(st));
    if (WEXITSTATUS(st) != 0)
        fail_msg("chain child exited %d (1 = sanitizer report, e.g. stack-overflow; "
                 "2..5 = wrong result)", WEXITSTATUS(st));
}

/* ---- window growth and wrap-around ----------------------------------------------------------- */

static int wrap_status(int64_t ts) { return ts % 7 == 3 ? PS_ERR_PEER : PS_OK; }

/* tau 10: tasks wait in the window while its head is in the middle of the
 * array, then the window grows (copying wrapped slots) and the waiting
 * tasks start with their own ctx, in order. */
static void test_window_grows_while_wrapped(void **state)
{
    psi_tq_free(R.q);
    setup_queue(psi_tq_new(10));
    for (int i = 0; i < 50; i++) sub();
    assert_started_prefix(11);
    for (int i = 0; i < 40; i++) psi_tq_finish(R.q, i, wrap_status(i));
    assert_started_prefix(50); /* base 40: head is 40 slots into the array */
    for (int i = 50; i < 150; i++) { /* grows at 64 in use, then 128, wrapped */
        int64_t d[] = {45, i - 5};      /* every tenth task also has deps */
        sub_deps(i % 10 == 0 ? d : NULL, i % 10 == 0 ? 2 : 0, NO_AUTO);
    }
    /* 50 is allowed by tau (base 40) but waits for 45; 51.. wait for tau */
    assert_started_prefix(50);
    assert_int_equal(R.bad_ctx, 0);
    for (int i = 40; i < 150; i++) {
        assert_int_equal(R.starts[i], 1);
        for (int j = i + 11; j < 150; j++) assert_int_equal(R.starts[j], 0);
        psi_tq_finish(R.q, i, wrap_status(i));
    }
    assert_started_prefix(150);
    assert_int_equal(R.bad_ctx, 0); /* each start got its own ctx back */
    for (int i = 0; i < 150; i++) {
        if (i < 50) assert_int_equal(R.order[i], i);
        assert_int_equal(R.ndone[i], 1);
        assert_int_equal(psi_tq_wait(R.q, i), wrap_status(i));
    }
    assert_int_equal(psi_tq_wait_all(R.q), PS_ERR_PEER);
}

/* More than 64 tasks in flight, the base stuck at 0 until the end. */
static void test_window_holds_many_in_flight(void **state)
{
    enum { N = 1000 };
    for (int i = 0; i < N; i++) sub();
    assert_started_prefix(N);
    for (int i = N - 1; i >= 1; i--) psi_tq_finish(R.q, i, wrap_status(i));
    for (int i = 1; i < N; i++) {
        assert_int_equal(psi_tq_finished(R.q, i), 1);
        assert_int_equal(psi_tq_wait(R.q, i), wrap_status(i));
    }
    assert_int_equal(psi_tq_finished(R.q, 0), 0);
    psi_tq_finish(R.q, 0, PS_ERR_CLOSED);
    for (int i = 0; i < N; i++) {
        assert_int_equal(R.ndone[i], 1);
        assert_int_equal(psi_tq_wait(R.q, i), i ? wrap_status(i) : PS_ERR_CLOSED);
    }
    assert_int_equal(psi_tq_wait_all(R.q), PS_ERR_CLOSED);
}

/* A steady window of 60 in flight wraps around its 64 slots many times. */
static void test_window_wraps_many_times(void **state)
{
    enum { N = MAXT, INFLIGHT = 60 };
    for (int i = 0; i < N; i++) {
        sub();
        if (i >= INFLIGHT) psi_tq_finish(R.q, i - INFLIGHT, wrap_status(i - INFLIGHT));
    }
    for (int i = N - INFLIGHT; i < N; i++) psi_tq_finish(R.q, i, wrap_status(i));
    assert_started_prefix(N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(R.ndone[i], 1);
        assert_int_equal(R.done_status[i], wrap_status(i));
        assert_int_equal(psi_tq_wait(R.q, i), wrap_status(i));
    }
    assert_int_equal(psi_tq_wait_all(R.q), PS_ERR_PEER);
}

/* ---- threaded executors -------------------------------------------------------------------- */

/* Started tasks go into `pending`; executor threads take them (FIFO or at
 * random), maybe pause a few microseconds, and finish them. */
typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t *pending;
    size_t npending, cappending;
    int stop, random_order, max_pause_us;
    psi_tq *q;
    int64_t ntotal;
    int *status_of;       /* the status each task was finished with */
    atomic_int *nstart;   /* start calls per ts */
    atomic_int *ncb;      /* callbacks per ts */
    int *cb_status;
    atomic_int *issued;   /* timestamps returned by submit */
    atomic_int errors;    /* anything a thread found wrong */
    unsigned seed;
} pool;

static void pool_start(void *ctx, int64_t ts)
{
    pool *p = ctx;
    if (ts < 0 || ts >= p->ntotal) {
        atomic_fetch_add(&p->errors, 1);
        return;
    }
    atomic_fetch_add(&p->nstart[ts], 1);
    pthread_mutex_lock(&p->mu);
    if (p->npending == p->cappending) atomic_fetch_add(&p->errors, 1);
    else p->pending[p->npending++] = ts;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void pool_done(void *arg, int64_t ts, int status)
{
    pool *p = arg;
    if (ts < 0 || ts >= p->ntotal) {
        atomic_fetch_add(&p->errors, 1);
        return;
    }
    atomic_fetch_add(&p->ncb[ts], 1);
    p->cb_status[ts] = status;
    if (psi_tq_finished(p->q, ts) != 1) atomic_fetch_add(&p->errors, 1);
}

static int pick_status(unsigned r)
{
    switch (r % 16) {
    case 0: return PS_ERR_PEER;
    case 1: return PS_ERR_TIMEOUT;
    default: return PS_OK;
    }
}

static void *executor(void *arg)
{
    pool *p = arg;
    pthread_mutex_lock(&p->mu);
    unsigned seed = p->seed++;
    for (;;) {
        while (!p->npending && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        if (!p->npending) break;
        size_t i = p->random_order ? (size_t)rand_r(&seed) % p->npending : 0;
        int64_t ts = p->pending[i];
        if (p->random_order) p->pending[i] = p->pending[--p->npending];
        else memmove(p->pending, p->pending + 1, --p->npending * sizeof(*p->pending));
        pthread_mutex_unlock(&p->mu);
        unsigned r = (unsigned)rand_r(&seed);
        if (p->max_pause_us) {
            struct timespec d = {0, (long)(r % (unsigned)p->max_pause_us) * 1000};
            nanosleep(&d, NULL); /* simulated work, not a wait for a condition */
        }
        p->status_of[ts] = pick_status(r >> 8);
        psi_tq_finish(p->q, ts, p->status_of[ts]);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_init(pool *p, psi_tq *q, int64_t ntotal)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->q = q;
    p->ntotal = ntotal;
    p->cappending = (size_t)ntotal;
    p->pending = calloc((size_t)ntotal, sizeof(*p->pending));
    p->status_of = calloc((size_t)ntotal, sizeof(*p->status_of));
    p->nstart = calloc((size_t)ntotal, sizeof(*p->nstart));
    p->ncb = calloc((size_t)ntotal, sizeof(*p->ncb));
    p->cb_status = calloc((size_t)ntotal, sizeof(*p->cb_status));
    p->issued = calloc((size_t)ntotal, sizeof(*p->issued));
    p->seed = 12345;
    assert_true(p->pending && p->status_of && p->nstart && p->ncb && p->cb_status && p->issued);
}

static void pool_stop(pool *p, pthread_t *ex, int nex)
{
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < nex; i++) pthread_join(ex[i], NULL);
}

static void pool_free(pool *p)
{
    free(p->pending);
    free(p->status_of);
    free(p->nstart);
    free(p->ncb);
    free(p->cb_status);
    free(p->issued);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

/* After every executor joined: each task started, finished and called back
 * exactly once with the status it was finished with. */
static void pool_check(pool *p)
{
    assert_int_equal(atomic_load(&p->errors), 0);
    for (int64_t ts = 0; ts < p->ntotal; ts++) {
        assert_int_equal(atomic_load(&p->issued[ts]), 1);
        assert_int_equal(atomic_load(&p->nstart[ts]), 1);
        assert_int_equal(atomic_load(&p->ncb[ts]), 1);
        assert_int_equal(p->cb_status[ts], p->status_of[ts]);
        assert_int_equal(psi_tq_wait(p->q, ts), p->status_of[ts]);
        assert_int_equal(psi_tq_finished(p->q, ts), 1);
    }
    assert_int_equal(psi_tq_finished(p->q, p->ntotal), -1);
}

/* The first failure in timestamp order, or 0. */
static int pool_first_failure(pool *p)
{
    for (int64_t ts = 0; ts < p->ntotal; ts++)
        if (p->status_of[ts]) return p->status_of[ts];
    return PS_OK;
}

typedef struct submitter {
    pool *p;
    int n, throttle; /* throttle > 0: wait for own task k - throttle first */
    int64_t *mine;
} submitter;

static void *submit_thread(void *arg)
{
    submitter *s = arg;
    pool *p = s->p;
    for (int k = 0; k < s->n; k++) {
        if (s->throttle && k >= s->throttle) psi_tq_wait(p->q, s->mine[k - s->throttle]);
        int64_t ts = psi_tq_submit(p->q, pool_start, p, NULL, 0, pool_done, p);
        s->mine[k] = ts;
        if (ts < 0 || ts >= p->ntotal) atomic_fetch_add(&p->errors, 1);
        else atomic_fetch_add(&p->issued[ts], 1);
    }
    return NULL;
}

static void run_pool(pool *p, int nsub, int per_sub, int throttle, int nexec)
{
    pthread_t ex[8], su[8];
    submitter s[8];
    assert_true(nsub <= 8 && nexec <= 8);
    for (int i = 0; i < nexec; i++) assert_int_equal(pthread_create(&ex[i], NULL, executor, p), 0);
    for (int i = 0; i < nsub; i++) {
        s[i] = (submitter){p, per_sub, throttle, calloc((size_t)per_sub, sizeof(int64_t))};
        assert_non_null(s[i].mine);
        assert_int_equal(pthread_create(&su[i], NULL, submit_thread, &s[i]), 0);
    }
    for (int i = 0; i < nsub; i++) pthread_join(su[i], NULL);
    int all = psi_tq_wait_all(p->q);
    /* wait_all wakes once the last task is marked finished, which may be
     * before its callback returned: join the executors before counting */
    pool_stop(p, ex, nexec);
    for (int i = 0; i < nsub; i++) {
        for (int k = 1; k < per_sub; k++) /* each submitter's own stamps increase */
            assert_true(s[i].mine[k] > s[i].mine[k - 1]);
        free(s[i].mine);
    }
    pool_check(p);
    assert_int_equal(all, pool_first_failure(p));
    assert_int_not_equal(all, PS_OK); /* 1 in 8 fail: some did */
}

/* Each submitter keeps at most 1024 of its own tasks unfinished: without
 * that bound the executors' random order lets the window reach thousands of
 * tasks, and since every submit and finish rescans the whole window the test
 * took 7 s (Debug) instead of 1 s. */
static void test_stress_eventual_4x10000_random_order(void **state)
{
    enum { NSUB = 4, PER = 10000 };
    pool p;
    pool_init(&p, R.q, NSUB * PER);
    p.random_order = 1;
    run_pool(&p, NSUB, PER, 1024, 4);
    pool_free(&p);
}

/* Bounded delay tau = 3 under threads: the trace hook records when each task
 * started and finished (called under the queue's lock, so a plain event
 * counter orders the events exactly). */
typedef struct trace_rec {
    int64_t n;
    uint64_t *start_ns, *fin_ns;
    int64_t *start_seq, *fin_seq;
    int *nstart, *nfin;
    int64_t seq, inflight, max_inflight, bad;
} trace_rec;

static void on_trace(void *arg, int64_t ts, int finished, uint64_t now_ns)
{
    trace_rec *t = arg;
    if (ts < 0 || ts >= t->n) {
        t->bad++;
        return;
    }
    int64_t s = ++t->seq;
    if (finished) {
        t->nfin[ts]++;
        t->fin_ns[ts] = now_ns;
        t->fin_seq[ts] = s;
        t->inflight--;
    } else {
        t->nstart[ts]++;
        t->start_ns[ts] = now_ns;
        t->start_seq[ts] = s;
        if (++t->inflight > t->max_inflight) t->max_inflight = t->inflight;
    }
}

static void test_stress_bounded_delay_tau3_trace(void **state)
{
    enum { TAU = 3, NSUB = 2, PER = 5000, N = NSUB * PER };
    psi_tq_free(R.q);
    setup_queue(psi_tq_new(TAU));
    trace_rec t = {.n = N};
    t.start_ns = calloc(N, sizeof(uint64_t));
    t.fin_ns = calloc(N, sizeof(uint64_t));
    t.start_seq = calloc(N, sizeof(int64_t));
    t.fin_seq = calloc(N, sizeof(int64_t));
    t.nstart = calloc(N, sizeof(int));
    t.nfin = calloc(N, sizeof(int));
    assert_true(t.start_ns && t.fin_ns && t.start_seq && t.fin_seq && t.nstart && t.nfin);
    psi_tq_set_trace(R.q, on_trace, &t);

    pool p;
    pool_init(&p, R.q, N);
    p.random_order = 1;
    p.max_pause_us = 50;
    run_pool(&p, NSUB, PER, 256, 4);
    pool_free(&p);

    assert_int_equal(t.bad, 0);
    assert_int_equal(t.inflight, 0);
    uint64_t max_fin_ns = 0; /* over tasks 0 .. i - TAU - 1 */
    int64_t max_fin_seq = 0;
    for (int64_t i = 0; i < N; i++) {
        assert_int_equal(t.nstart[i], 1);
        assert_int_equal(t.nfin[i], 1);
        assert_true(t.start_seq[i] < t.fin_seq[i]);
        assert_true(t.start_ns[i] <= t.fin_ns[i]);
        if (i > 0) assert_true(t.start_seq[i] > t.start_seq[i - 1]); /* starts in order */
        int64_t j = i - TAU - 1;
        if (j >= 0) {
            max_fin_ns = PSI_MAX(max_fin_ns, t.fin_ns[j]);
            max_fin_seq = PSI_MAX(max_fin_seq, t.fin_seq[j]);
            if (max_fin_ns > t.start_ns[i] || max_fin_seq > t.start_seq[i])
                fail_msg("task %lld started before some task <= %lld finished", (long long)i,
                         (long long)j);
        }
    }
    assert_true(t.max_inflight <= TAU + 1); /* follows from the above */
    psi_tq_set_trace(R.q, NULL, NULL);
    free(t.start_ns);
    free(t.fin_ns);
    free(t.start_seq);
    free(t.fin_seq);
    free(t.nstart);
    free(t.nfin);
}

/* Sequential under threads: FIFO executors, every start strictly after the
 * previous task's finish. */
static void test_stress_sequential_threads(void **state)
{
    enum { N = 4000 };
    psi_tq_free(R.q);
    setup_queue(psi_tq_new(0));
    trace_rec t = {.n = N};
    t.start_ns = calloc(N, sizeof(uint64_t));
    t.fin_ns = calloc(N, sizeof(uint64_t));
    t.start_seq = calloc(N, sizeof(int64_t));
    t.fin_seq = calloc(N, sizeof(int64_t));
    t.nstart = calloc(N, sizeof(int));
    t.nfin = calloc(N, sizeof(int));
    assert_true(t.start_ns && t.fin_ns && t.start_seq && t.fin_seq && t.nstart && t.nfin);
    psi_tq_set_trace(R.q, on_trace, &t);
    pool p;
    pool_init(&p, R.q, N);
    run_pool(&p, 2, N / 2, 128, 3);
    pool_free(&p);
    assert_int_equal(t.max_inflight, 1);
    for (int64_t i = 1; i < N; i++) assert_true(t.fin_seq[i - 1] < t.start_seq[i]);
    psi_tq_set_trace(R.q, NULL, NULL);
    free(t.start_ns);
    free(t.fin_ns);
    free(t.start_seq);
    free(t.fin_seq);
    free(t.nstart);
    free(t.nfin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_timestamps_count_from_zero_start_once,
                                        setup_eventual, teardown_queue),
        cmocka_unit_test_setup_teardown(test_immediate_tasks_start_once_each_model,
                                        setup_eventual, teardown_queue),
        cmocka_unit_test_setup_teardown(test_sequential_starts_one_at_a_time, setup_sequential,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_sequential_finish_before_start_is_ignored,
                                        setup_sequential, teardown_queue),
        cmocka_unit_test_setup_teardown(test_bounded_delay_tau2, setup_tau2, teardown_queue),
        cmocka_unit_test_setup_teardown(test_eventual_all_start_finish_any_order, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_deps_start_after_all_listed_finished,
                                        setup_eventual, teardown_queue),
        cmocka_unit_test_setup_teardown(test_deps_chain_and_diamond, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_deps_with_bounded_delay, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_deps_invalid_rejected_nothing_submitted,
                                        setup_eventual, teardown_queue),
        cmocka_unit_test_setup_teardown(test_failure_status_kept_below_base, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_wait_all_success_and_empty, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_wait_never_issued_is_inval, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_finish_twice_is_ignored, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_callback_once_after_marked_finished,
                                        setup_eventual, teardown_queue),
        cmocka_unit_test_setup_teardown(test_start_and_callback_may_reenter, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_window_grows_while_wrapped, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_window_holds_many_in_flight, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_window_wraps_many_times, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_stress_eventual_4x10000_random_order,
                                        setup_eventual, teardown_queue),
        cmocka_unit_test_setup_teardown(test_stress_bounded_delay_tau3_trace, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_stress_sequential_threads, setup_eventual,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_sync_finish_chain_stack_bounded, setup_watchdog,
                                        teardown_queue),
        cmocka_unit_test_setup_teardown(test_sync_finish_chain_100k, setup_watchdog,
                                        teardown_queue),
    };
    if (getenv("TEST_FILTER")) cmocka_set_test_filter(getenv("TEST_FILTER")); /* e.g. "*stress*" */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
