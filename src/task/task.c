/*
 * task.c -- the task queue of task.h.
 *
 * State: `next` is the next timestamp to hand out; every task below `base`
 * finished; win[ts - base] describes tasks in [base, next).  A task is
 * WAITING (not yet allowed to start), RUNNING or DONE.  When the task at
 * `base` finishes, the base slides forward over every finished task; only
 * failed statuses are remembered below the base.
 *
 * Lock: q->lock guards everything; q->cond signals finishes.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "task/task.h"
#include "util/util.h"

enum { T_FREE = 0, T_WAITING, T_RUNNING, T_DONE };

typedef struct task {
    int state;
    int status;
    int ndeps;
    int64_t *deps;
    psi_task_start_fn start;
    void *ctx;
    psi_task_done_fn done;
    void *done_arg;
} task;

typedef struct failure {
    int64_t ts;
    int status;
} failure;

struct psi_tq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int tau;                 /* < 0: eventual */
    int64_t next, base;
    size_t nwaiting;         /* tasks in state T_WAITING */
    task *win;               /* win[(ts - base + head) % cap] */
    size_t head, cap;
    failure *fails;          /* failed tasks below base, sorted by ts */
    size_t nfails, capfails;
    int first_failure;
    psi_task_trace_fn trace;
    void *trace_arg;
};

/* A start to run after unlocking. */
typedef struct start_item {
    psi_task_start_fn fn;
    void *ctx;
    int64_t ts;
} start_item;

psi_tq *psi_tq_new(int tau)
{
    psi_tq *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->tau = tau;
    return q;
}

void psi_tq_free(psi_tq *q)
{
    if (!q) return;
    for (size_t i = 0; i < q->cap; i++) free(q->win[i].deps);
    free(q->win);
    free(q->fails);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q);
}

void psi_tq_set_trace(psi_tq *q, psi_task_trace_fn fn, void *arg)
{
    pthread_mutex_lock(&q->lock);
    q->trace = fn;
    q->trace_arg = arg;
    pthread_mutex_unlock(&q->lock);
}

static task *slot(psi_tq *q, int64_t ts)
{
    return &q->win[(q->head + (size_t)(ts - q->base)) % q->cap];
}

/* Make room for one more task in the window (lock held). */
static int do_grow(psi_tq *q)
{
    size_t used = (size_t)(q->next - q->base);
    if (used < q->cap) return PS_OK;
    size_t cap = q->cap ? q->cap * 2 : 64;
    task *w = calloc(cap, sizeof(*w));
    if (!w) return PS_ERR_NOMEM;
    for (size_t i = 0; i < used; i++) w[i] = q->win[(q->head + i) % q->cap];
    free(q->win);
    q->win = w;
    q->cap = cap;
    q->head = 0;
    return PS_OK;
}

static int do_status_below_base(const psi_tq *q, int64_t ts)
{
    size_t lo = 0, hi = q->nfails;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (q->fails[mid].ts == ts) return q->fails[mid].status;
        if (q->fails[mid].ts < ts) lo = mid + 1;
        else hi = mid;
    }
    return PS_OK;
}

static int do_is_done(psi_tq *q, int64_t ts)
{
    return ts < q->base || slot(q, ts)->state == T_DONE;
}

static int do_can_start(psi_tq *q, int64_t ts)
{
    if (q->tau >= 0 && q->base < ts - q->tau) return 0;
    task *t = slot(q, ts);
    for (int i = 0; i < t->ndeps; i++)
        if (!do_is_done(q, t->deps[i])) return 0;
    return 1;
}

static void do_trace(psi_tq *q, int64_t ts, int finished)
{
    if (q->trace) q->trace(q->trace_arg, ts, finished, psi_now_ns());
}

/* Collect the waiting tasks that may now start, marking them RUNNING.
 * Returns a malloc'ed array (or NULL) and its length in *n. */
static start_item *do_collect_starts(psi_tq *q, size_t *n)
{
    start_item *items = NULL;
    size_t cap = 0;
    *n = 0;
    if (!q->nwaiting) return NULL;
    /* tasks above base + tau cannot start yet: do not scan them */
    int64_t end = q->tau >= 0 && q->next - q->base > q->tau + 1 ? q->base + q->tau + 1 : q->next;
    for (int64_t ts = q->base; ts < end; ts++) {
        task *t = slot(q, ts);
        if (t->state != T_WAITING || !do_can_start(q, ts)) continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            start_item *ni = realloc(items, nc * sizeof(*ni));
            if (!ni) break; /* the rest start on the next finish */
            items = ni;
            cap = nc;
        }
        t->state = T_RUNNING;
        q->nwaiting--;
        do_trace(q, ts, 0);
        items[(*n)++] = (start_item){t->start, t->ctx, ts};
    }
    return items;
}

/* Starts that a start function made runnable (by finishing its own task
 * synchronously, say) are queued here and run by the outermost run_starts of
 * this thread, so a chain of synchronous completions uses constant stack. */
static _Thread_local struct {
    start_item *v;
    size_t head, n, cap;
    int draining;
} tl_starts;

static int defer_start(start_item it)
{
    if (tl_starts.n == tl_starts.cap) {
        size_t nc = tl_starts.cap ? tl_starts.cap * 2 : 16;
        start_item *v = realloc(tl_starts.v, nc * sizeof(*v));
        if (!v) return PS_ERR_NOMEM;
        tl_starts.v = v;
        tl_starts.cap = nc;
    }
    tl_starts.v[tl_starts.n++] = it;
    return PS_OK;
}

static void run_starts(start_item *items, size_t n)
{
    if (tl_starts.draining) {
        for (size_t i = 0; i < n; i++)
            if (defer_start(items[i]) != 0) items[i].fn(items[i].ctx, items[i].ts); /* no memory: recurse */
        free(items);
        return;
    }
    tl_starts.draining = 1;
    for (size_t i = 0; i < n; i++) items[i].fn(items[i].ctx, items[i].ts);
    free(items);
    while (tl_starts.head < tl_starts.n) {
        start_item it = tl_starts.v[tl_starts.head++];
        it.fn(it.ctx, it.ts);
    }
    free(tl_starts.v);
    tl_starts.v = NULL;
    tl_starts.head = tl_starts.n = tl_starts.cap = 0;
    tl_starts.draining = 0;
}

int64_t psi_tq_submit(psi_tq *q, psi_task_start_fn start, void *ctx, const int64_t *deps,
                      int ndeps, psi_task_done_fn done, void *done_arg)
{
    int64_t *d = NULL;
    if (ndeps < 0 || (ndeps > 0 && !deps)) return PS_ERR_INVAL;
    if (ndeps > 0 && !(d = malloc((size_t)ndeps * sizeof(*d)))) return PS_ERR_NOMEM;
    pthread_mutex_lock(&q->lock);
    for (int i = 0; i < ndeps; i++) {
        if (deps[i] < 0 || deps[i] >= q->next) {
            pthread_mutex_unlock(&q->lock);
            free(d);
            return PS_ERR_INVAL;
        }
        d[i] = deps[i];
    }
    if (do_grow(q) != 0) {
        pthread_mutex_unlock(&q->lock);
        free(d);
        return PS_ERR_NOMEM;
    }
    int64_t ts = q->next++;
    task *t = slot(q, ts);
    *t = (task){.state = T_WAITING, .ndeps = ndeps, .deps = d, .start = start,
                .ctx = ctx, .done = done, .done_arg = done_arg};
    /* a submit makes no other task runnable: check only this one */
    int now = do_can_start(q, ts);
    if (now) {
        t->state = T_RUNNING;
        do_trace(q, ts, 0);
    } else {
        q->nwaiting++;
    }
    pthread_mutex_unlock(&q->lock);
    if (now) {
        start_item *it = malloc(sizeof(*it));
        if (it) *it = (start_item){start, ctx, ts};
        if (it) run_starts(it, 1);
        else start(ctx, ts);
    }
    return ts;
}

static void do_remember_failure(psi_tq *q, int64_t ts, int status)
{
    if (!q->first_failure) q->first_failure = status;
    if (q->nfails == q->capfails) {
        size_t nc = q->capfails ? q->capfails * 2 : 16;
        failure *f = realloc(q->fails, nc * sizeof(*f));
        if (!f) return; /* the status is lost for ps_wait, kept in first_failure */
        q->fails = f;
        q->capfails = nc;
    }
    q->fails[q->nfails++] = (failure){ts, status};
}

/* Slide the base over finished tasks, remembering failures (lock held). */
static void do_advance(psi_tq *q)
{
    while (q->base < q->next && slot(q, q->base)->state == T_DONE) {
        task *t = slot(q, q->base);
        if (t->status != 0) do_remember_failure(q, q->base, t->status);
        free(t->deps);
        *t = (task){0};
        q->head = (q->head + 1) % q->cap;
        q->base++;
    }
}

void psi_tq_finish(psi_tq *q, int64_t ts, int status)
{
    pthread_mutex_lock(&q->lock);
    if (ts < q->base || ts >= q->next || slot(q, ts)->state != T_RUNNING) {
        pthread_mutex_unlock(&q->lock);
        return;
    }
    task *t = slot(q, ts);
    t->state = T_DONE;
    t->status = status;
    psi_task_done_fn done = t->done;
    void *done_arg = t->done_arg;
    do_trace(q, ts, 1);
    do_advance(q);
    size_t n;
    start_item *items = do_collect_starts(q, &n);
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    if (done) done(done_arg, ts, status);
    run_starts(items, n);
}

int psi_tq_wait(psi_tq *q, int64_t ts)
{
    pthread_mutex_lock(&q->lock);
    if (ts < 0 || ts >= q->next) {
        pthread_mutex_unlock(&q->lock);
        return PS_ERR_INVAL;
    }
    while (!do_is_done(q, ts)) pthread_cond_wait(&q->cond, &q->lock);
    int st = ts < q->base ? do_status_below_base(q, ts) : slot(q, ts)->status;
    pthread_mutex_unlock(&q->lock);
    return st;
}

int psi_tq_wait_all(psi_tq *q)
{
    pthread_mutex_lock(&q->lock);
    int64_t until = q->next;
    while (q->base < until) pthread_cond_wait(&q->cond, &q->lock);
    int st = q->first_failure;
    pthread_mutex_unlock(&q->lock);
    return st;
}

int psi_tq_finished(psi_tq *q, int64_t ts)
{
    pthread_mutex_lock(&q->lock);
    int r = ts < 0 || ts >= q->next ? -1 : do_is_done(q, ts);
    pthread_mutex_unlock(&q->lock);
    return r;
}
