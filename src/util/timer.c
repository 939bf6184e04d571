/*
 * timer.c -- the timer service of timer.h: a list of clients, one thread.
 *
 * Lock: svc.lock guards the list, each client's due time and `running`;
 * client functions run without it.  svc.cv wakes the thread (a client was
 * added, or it must stop) and the removers waiting for a running function
 * to return.
 */
#include <pthread.h>
#include <stdlib.h>

#include "ps/ps.h"
#include "util/timer.h"
#include "util/util.h"

struct psi_timer {
    psi_timer *next;
    uint32_t period;
    uint64_t due;
    psi_timer_fn fn;
    void *arg;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    psi_timer *list;
    psi_timer *running; /* the client whose function runs now, or NULL */
    pthread_t thread;
    int started, stop;
    int joining; /* the last client's remover is joining the thread */
} svc = {.lock = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* The first client due at `now`, or NULL; *next is the earliest due time. */
static psi_timer *due_client(uint64_t now, uint64_t *next)
{
    *next = UINT64_MAX;
    for (psi_timer *t = svc.list; t; t = t->next) {
        if (t->due <= now) return t;
        if (t->due < *next) *next = t->due;
    }
    return NULL;
}

static void *service_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&svc.lock);
    while (!svc.stop) {
        uint64_t now = psi_now_ms(), next;
        psi_timer *t = due_client(now, &next);
        if (t) {
            t->due = now + t->period;
            svc.running = t;
            pthread_mutex_unlock(&svc.lock);
            t->fn(t->arg, now);
            pthread_mutex_lock(&svc.lock);
            svc.running = NULL;
            pthread_cond_broadcast(&svc.cv); /* a remover may wait for it */
            continue;
        }
        struct timespec dl = psi_deadline_in(next == UINT64_MAX ? 1000 : next - now);
        pthread_cond_timedwait(&svc.cv, &svc.lock, &dl);
    }
    pthread_mutex_unlock(&svc.lock);
    return NULL;
}

int psi_timer_add(uint32_t period_ms, psi_timer_fn fn, void *arg, psi_timer **out)
{
    psi_timer *t = calloc(1, sizeof(*t));
    *out = NULL;
    if (!t) return PS_ERR_NOMEM;
    *t = (psi_timer){.period = period_ms ? period_ms : 1, .fn = fn, .arg = arg};
    pthread_mutex_lock(&svc.lock);
    while (svc.joining) pthread_cond_wait(&svc.cv, &svc.lock); /* the old thread ends first */
    if (!svc.started) {
        svc.stop = 0;
        if (pthread_create(&svc.thread, NULL, service_main, NULL) != 0) {
            pthread_mutex_unlock(&svc.lock);
            free(t);
            return PS_ERR_SYS;
        }
        svc.started = 1;
    }
    t->due = psi_now_ms() + t->period;
    t->next = svc.list;
    svc.list = t;
    pthread_cond_broadcast(&svc.cv); /* its due time may be the earliest now */
    pthread_mutex_unlock(&svc.lock);
    *out = t;
    return PS_OK;
}

void psi_timer_remove(psi_timer *t)
{
    if (!t) return;
    pthread_mutex_lock(&svc.lock);
    for (psi_timer **p = &svc.list; *p; p = &(*p)->next)
        if (*p == t) {
            *p = t->next;
            break;
        }
    while (svc.running == t) pthread_cond_wait(&svc.cv, &svc.lock);
    int last = svc.list == NULL && svc.started;
    if (last) {
        svc.stop = 1;
        svc.started = 0;
        svc.joining = 1;
        pthread_cond_broadcast(&svc.cv);
    }
    pthread_t th = svc.thread;
    pthread_mutex_unlock(&svc.lock);
    free(t);
    if (!last) return;
    pthread_join(th, NULL);
    pthread_mutex_lock(&svc.lock);
    svc.joining = 0;
    pthread_cond_broadcast(&svc.cv);
    pthread_mutex_unlock(&svc.lock);
}
