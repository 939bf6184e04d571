/*
 * fault.c -- a transport decorator that injects network faults into the
 * sends of any other transport, so that tests can make rare paths common.
 *
 * What: psi_fault_open wraps an inner psi_transport.  listen, connect and
 * disconnect pass straight through; send runs each message past a seeded
 * RNG and may drop it, duplicate it, hold it back for a random time (delay)
 * or hold it until the next message to the same peer has gone (reorder).  A
 * partition drops every message whose sender and receiver sit on different
 * sides of a cut.  Receive and peer-failure callbacks are never touched: the
 * inner transport calls them directly (our cbs are a copy of the inner's).
 *
 * Design: one mutex guards the RNG and the two lists of held messages, so a
 * given seed and a given sequence of sends from one thread always produce
 * the same faults.  Delayed messages sit in a list ordered by due time;
 * reorder-held messages (at most one per peer) sit in a FIFO that is ordered
 * by due time too, since each is due delay_ms after it was held.  A
 * dedicated delay thread sleeps on a condition variable with a timed wait
 * for the earliest due time and hands due messages to the inner transport.
 * The thread only exists when the spec can hold messages (delay or reorder
 * set).  Counters are relaxed atomics.
 *
 * Never: call the inner transport with the mutex held (its callbacks may
 * send through us again), sleep-poll, or touch a message after handing it to
 * the inner transport.  No message is leaked: on close, held messages due
 * within the flush window are sent and the rest freed.
 *
 * Lock order: f->mu is the only lock in this file; no other lock is taken
 * while it is held.  Functions named do_* expect the caller to hold it.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/transport.h"
#include "util/log.h"
#include "util/util.h"

#define FAULT_DEFAULT_DELAY_MS 20
#define FAULT_MAX_DELAY_MS 3600000ull /* an hour: longer is surely a typo */

typedef struct fault_cfg {
    double drop, dup, delay, reorder;
    uint64_t delay_ms;
    uint64_t seed;
    uint32_t *part; /* node ids on one side of the cut; NULL = no partition */
    size_t npart;
} fault_cfg;

/* A held message and the list it sits on (doubly linked, head = earliest). */
typedef struct held {
    struct held *prev, *next;
    uint64_t due_ns;
    uint32_t peer;
    bool reorder; /* on f->reorder: its delivery releases nothing */
    psi_msg *m;
} held;

typedef struct held_list {
    held *head, *tail;
} held_list;

typedef struct fault_t {
    psi_transport base; /* first: a psi_transport * is a fault_t * */
    psi_transport *inner;
    fault_cfg cfg;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC; signalled on a new earliest or stop */
    psi_rng rng;
    held_list delayed; /* sorted by due_ns */
    held_list reorder; /* FIFO, hence sorted by due_ns */
    bool closing;
    bool has_thread;
    pthread_t thread;

    _Atomic uint64_t sent, dropped, duplicated, delayed_n, reordered;
} fault_t;

static const psi_transport_ops fault_ops;

/* ---- spec parsing ---------------------------------------------------------- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    return s;
}

static int parse_prob(const char *v, double *out)
{
    char *end;
    errno = 0;
    double p = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !isfinite(p) || p < 0.0 || p > 1.0)
        return PS_ERR_INVAL;
    *out = p;
    return 0;
}

static int parse_u64(const char *v, uint64_t max, uint64_t *out)
{
    char *end;
    if (*v < '0' || *v > '9') return PS_ERR_INVAL; /* no sign, no space */
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || x > max) return PS_ERR_INVAL;
    *out = x;
    return 0;
}

/* "A+B+C" into a fresh array of node ids. */
static int parse_partition(const char *v, fault_cfg *cfg)
{
    size_t n = 1;
    for (const char *p = v; *p; p++) n += *p == '+';
    uint32_t *ids = calloc(n, sizeof(*ids));
    if (ids == NULL) return PS_ERR_NOMEM;

    const char *p = v;
    for (size_t i = 0; i < n; i++) {
        char tok[24];
        size_t len = strcspn(p, "+");
        uint64_t id;
        if (len == 0 || len >= sizeof(tok)) goto bad;
        memcpy(tok, p, len);
        tok[len] = '\0';
        if (parse_u64(tok, UINT32_MAX, &id) != 0) goto bad;
        ids[i] = (uint32_t)id;
        p += len + (p[len] == '+');
    }
    free(cfg->part);
    cfg->part = ids;
    cfg->npart = n;
    return 0;
bad:
    free(ids);
    return PS_ERR_INVAL;
}

/* The spec's keys: how each value parses and what a bad one is told. */
enum key_kind { KEY_PROB, KEY_MS, KEY_SEED, KEY_PART };

static const struct spec_key {
    const char *name;
    enum key_kind kind;
    size_t off; /* of the field in fault_cfg */
} spec_keys[] = {
    { "drop", KEY_PROB, offsetof(fault_cfg, drop) },
    { "dup", KEY_PROB, offsetof(fault_cfg, dup) },
    { "delay", KEY_PROB, offsetof(fault_cfg, delay) },
    { "reorder", KEY_PROB, offsetof(fault_cfg, reorder) },
    { "delay_ms", KEY_MS, offsetof(fault_cfg, delay_ms) },
    { "seed", KEY_SEED, offsetof(fault_cfg, seed) },
    { "partition", KEY_PART, 0 },
};

static const char *const kind_want[] = {
    [KEY_PROB] = "a probability in [0,1]",
    [KEY_MS] = "milliseconds in [0,3600000]",
    [KEY_SEED] = "an unsigned 64-bit integer",
    [KEY_PART] = "node ids joined by '+'",
};

/* Parse one "key=value" (modified in place).  Returns 0, PS_ERR_NOMEM, or
 * PS_ERR_INVAL with *why set to what was expected. */
static int parse_item(char *item, fault_cfg *cfg, const char **why)
{
    char *eq = strchr(item, '=');
    *why = "key=value";
    if (eq == NULL) return PS_ERR_INVAL;
    *eq = '\0';
    const char *k = trim(item), *v = trim(eq + 1);

    *why = "a known key (drop, dup, delay, delay_ms, reorder, seed, partition)";
    for (size_t i = 0; i < PSI_ARRAY_LEN(spec_keys); i++) {
        const struct spec_key *sk = &spec_keys[i];
        if (strcmp(k, sk->name) != 0) continue;
        void *field = (char *)cfg + sk->off;
        *why = kind_want[sk->kind];
        switch (sk->kind) {
        case KEY_PROB: return parse_prob(v, field);
        case KEY_MS: return parse_u64(v, FAULT_MAX_DELAY_MS, field);
        case KEY_SEED: return parse_u64(v, UINT64_MAX, field);
        case KEY_PART: return parse_partition(v, cfg);
        }
    }
    return PS_ERR_INVAL;
}

/*
 * Parse `spec` (NULL or "" = no faults) into *cfg.  Returns 0, PS_ERR_NOMEM,
 * or PS_ERR_INVAL after logging the offending item.  On failure cfg->part is
 * freed; on success the caller frees it.
 */
static int parse_spec(const char *spec, fault_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->delay_ms = FAULT_DEFAULT_DELAY_MS;
    cfg->seed = 1;
    if (spec == NULL || *spec == '\0') return 0;

    char *copy = strdup(spec), *save = NULL;
    if (copy == NULL) return PS_ERR_NOMEM;
    int rv = 0;
    for (char *it = strtok_r(copy, ",", &save); it != NULL; it = strtok_r(NULL, ",", &save)) {
        char shown[128];
        snprintf(shown, sizeof(shown), "%s", trim(it));
        if (*shown == '\0') continue; /* "a=1,,b=2" or a trailing comma */
        const char *why;
        if ((rv = parse_item(it, cfg, &why)) != 0) {
            if (rv == PS_ERR_INVAL)
                PSI_ERROR("fault: bad spec item '%s': want %s", shown, why);
            break;
        }
    }
    free(copy);
    if (rv != 0) {
        free(cfg->part);
        cfg->part = NULL;
    }
    return rv;
}

/* ---- held lists (caller holds f->mu) --------------------------------------- */

static void do_list_unlink(held_list *l, held *h)
{
    if (h->prev) h->prev->next = h->next;
    else l->head = h->next;
    if (h->next) h->next->prev = h->prev;
    else l->tail = h->prev;
    h->prev = h->next = NULL;
}

/* Insert by due time, after any entry with the same due time (stable). */
static void do_list_insert(held_list *l, held *h)
{
    held *after = l->tail;
    while (after != NULL && after->due_ns > h->due_ns) after = after->prev;
    h->prev = after;
    h->next = after ? after->next : l->head;
    if (h->next) h->next->prev = h;
    else l->tail = h;
    if (after) after->next = h;
    else l->head = h;
}

/* The earliest held message of both lists, still linked; NULL if none. */
static held *do_earliest(fault_t *f)
{
    held *a = f->delayed.head, *b = f->reorder.head;
    if (a == NULL) return b;
    if (b == NULL) return a;
    return a->due_ns <= b->due_ns ? a : b;
}

static void do_unlink(fault_t *f, held *h)
{
    do_list_unlink(h->reorder ? &f->reorder : &f->delayed, h);
}

static held *do_find_reorder(fault_t *f, uint32_t peer)
{
    for (held *h = f->reorder.head; h != NULL; h = h->next)
        if (h->peer == peer) return h;
    return NULL;
}

/* ---- delivery (caller does not hold f->mu) --------------------------------- */

/* Hand `m` to the inner transport, which owns it from here on. */
static int pass(fault_t *f, uint32_t peer, psi_msg *m)
{
    atomic_fetch_add_explicit(&f->sent, 1, memory_order_relaxed);
    int rv = f->inner->ops->send(f->inner, peer, m);
    if (rv != 0) PSI_DEBUG("fault: inner send to %" PRIu32 " failed: %d", peer, rv);
    return rv;
}

/*
 * Send `m` (a regular message, not a reorder release) and then the message
 * held for reordering to the same peer, if any: it goes right after.
 */
static int deliver(fault_t *f, uint32_t peer, psi_msg *m)
{
    int rv = pass(f, peer, m);
    if (f->cfg.reorder == 0.0) return rv; /* nothing is ever held for it */

    pthread_mutex_lock(&f->mu);
    held *h = f->reorder.head ? do_find_reorder(f, peer) : NULL;
    if (h != NULL) do_list_unlink(&f->reorder, h);
    pthread_mutex_unlock(&f->mu);
    if (h != NULL) {
        pass(f, h->peer, h->m);
        free(h);
    }
    return rv;
}

/* ---- the delay thread ------------------------------------------------------ */

/* Deliver a chain (linked through next) of due messages, freeing the nodes. */
static void deliver_chain(fault_t *f, held *chain)
{
    while (chain != NULL) {
        held *h = chain;
        chain = h->next;
        if (h->reorder) pass(f, h->peer, h->m); /* a release releases nothing */
        else deliver(f, h->peer, h->m);
        free(h);
    }
}

/* Unlink every message due by `now`, in due order, into a chain. */
static held *do_take_due(fault_t *f, uint64_t now)
{
    held *chain = NULL, **tail = &chain, *h;
    while ((h = do_earliest(f)) != NULL && h->due_ns <= now) {
        do_unlink(f, h);
        *tail = h;
        tail = &h->next;
    }
    return chain;
}

/* Sleeps until the earliest held message is due, sends what is due without
 * the lock, and repeats until close. */
static void *delay_thread(void *arg)
{
    fault_t *f = arg;

    pthread_mutex_lock(&f->mu);
    while (!f->closing) {
        held *h = do_earliest(f);
        uint64_t now = psi_now_ns();
        if (h == NULL) {
            pthread_cond_wait(&f->cv, &f->mu);
        } else if (h->due_ns > now) {
            struct timespec ts = { .tv_sec = (time_t)(h->due_ns / 1000000000ull),
                                   .tv_nsec = (long)(h->due_ns % 1000000000ull) };
            pthread_cond_timedwait(&f->cv, &f->mu, &ts);
        } else {
            held *chain = do_take_due(f, now);
            pthread_mutex_unlock(&f->mu);
            deliver_chain(f, chain);
            pthread_mutex_lock(&f->mu);
        }
    }
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* ---- ops ------------------------------------------------------------------- */

static int fault_listen(psi_transport *t, const char *host, int port, char *addr, size_t cap)
{
    fault_t *f = (fault_t *)t;
    return f->inner->ops->listen(f->inner, host, port, addr, cap);
}

static int fault_connect(psi_transport *t, uint32_t peer, const char *addr)
{
    fault_t *f = (fault_t *)t;
    return f->inner->ops->connect(f->inner, peer, addr);
}

static int fault_disconnect(psi_transport *t, uint32_t peer)
{
    fault_t *f = (fault_t *)t;
    return f->inner->ops->disconnect(f->inner, peer);
}

static bool in_partition(const fault_cfg *c, uint32_t id)
{
    for (size_t i = 0; i < c->npart; i++)
        if (c->part[i] == id) return true;
    return false;
}

static bool do_roll(fault_t *f, double p)
{
    return p > 0.0 && psi_rng_double(&f->rng) < p;
}

enum fate { FATE_SEND, FATE_DROP, FATE_HOLD };

/* Decide what happens to `m` and, for FATE_HOLD, queue it in h.  *copy gets
 * a duplicate to send too.  Caller holds f->mu. */
static enum fate do_decide(fault_t *f, uint32_t peer, psi_msg *m, held *h, psi_msg **copy)
{
    const fault_cfg *c = &f->cfg;
    if (c->npart > 0 && in_partition(c, m->hdr.sender) != in_partition(c, peer))
        return FATE_DROP;
    if (do_roll(f, c->drop)) return FATE_DROP;
    if (do_roll(f, c->dup) && (*copy = psi_msg_dup(m)) == NULL)
        PSI_WARN("fault: no memory to duplicate a message to %" PRIu32, peer);

    uint64_t now = psi_now_ns();
    if (do_roll(f, c->delay)) {
        h->due_ns = now + (uint64_t)(psi_rng_double(&f->rng) * (double)c->delay_ms * 1e6);
        do_list_insert(&f->delayed, h);
        atomic_fetch_add_explicit(&f->delayed_n, 1, memory_order_relaxed);
        return FATE_HOLD;
    }
    /* A message that finds one held for reordering is its swap partner. */
    if (do_find_reorder(f, peer) == NULL && do_roll(f, c->reorder)) {
        h->due_ns = now + c->delay_ms * 1000000ull;
        h->reorder = true;
        do_list_insert(&f->reorder, h);
        atomic_fetch_add_explicit(&f->reordered, 1, memory_order_relaxed);
        return FATE_HOLD;
    }
    return FATE_SEND;
}

static int fault_send(psi_transport *t, uint32_t peer, psi_msg *m)
{
    fault_t *f = (fault_t *)t;
    held *h = NULL;
    psi_msg *copy = NULL;

    if (f->has_thread && (h = calloc(1, sizeof(*h))) == NULL) {
        psi_msg_free(m);
        return PS_ERR_NOMEM;
    }
    pthread_mutex_lock(&f->mu);
    if (f->closing) {
        pthread_mutex_unlock(&f->mu);
        free(h);
        psi_msg_free(m);
        return PS_ERR_CLOSED;
    }
    if (h != NULL) {
        h->peer = peer;
        h->m = m;
    }
    enum fate fate = do_decide(f, peer, m, h, &copy);
    bool wake = fate == FATE_HOLD && h->prev == NULL; /* a new earliest */
    if (wake) pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);

    if (copy != NULL) { /* a spurious extra: it releases no reorder-held one */
        atomic_fetch_add_explicit(&f->duplicated, 1, memory_order_relaxed);
        pass(f, peer, copy);
    }
    if (fate == FATE_HOLD) return 0;
    free(h);
    if (fate == FATE_DROP) {
        atomic_fetch_add_explicit(&f->dropped, 1, memory_order_relaxed);
        psi_msg_free(m);
        return 0;
    }
    return deliver(f, peer, m);
}

static uint64_t sat_add(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }

static void fault_close(psi_transport *t, uint64_t flush_ms)
{
    fault_t *f = (fault_t *)t;
    uint64_t deadline = sat_add(psi_now_ns(), flush_ms > UINT64_MAX / 1000000ull
                                                  ? UINT64_MAX
                                                  : flush_ms * 1000000ull);
    pthread_mutex_lock(&f->mu);
    f->closing = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (f->has_thread) pthread_join(f->thread, NULL);

    /* No thread and no sender now: the lists are ours without the lock. */
    unsigned flushed = 0, freed = 0;
    held *h;
    while ((h = do_earliest(f)) != NULL) {
        do_unlink(f, h);
        if (h->due_ns <= deadline) {
            pass(f, h->peer, h->m);
            flushed++;
        } else {
            psi_msg_free(h->m);
            freed++;
        }
        free(h);
    }
    if (flushed + freed > 0)
        PSI_INFO("fault: close sent %u held messages, freed %u", flushed, freed);

    uint64_t now = psi_now_ns();
    f->inner->ops->close(f->inner, deadline > now ? (deadline - now) / 1000000ull : 0);
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    free(f->cfg.part);
    free(f);
}

static uint64_t fault_read_mark(psi_transport *t, uint64_t now_ms)
{
    return psi_transport_read_mark(((fault_t *)t)->inner, now_ms);
}

static const psi_transport_ops fault_ops = {
    .name = "fault",
    .read_mark = fault_read_mark,
    .listen = fault_listen,
    .connect = fault_connect,
    .send = fault_send,
    .disconnect = fault_disconnect,
    .close = fault_close,
};

/* ---- open and stats -------------------------------------------------------- */

static int init_sync(fault_t *f)
{
    pthread_condattr_t ca;
    if (pthread_mutex_init(&f->mu, NULL) != 0) return PS_ERR_SYS;
    if (pthread_condattr_init(&ca) != 0) goto fail_mu;
    if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&f->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        goto fail_mu;
    }
    pthread_condattr_destroy(&ca);
    return 0;
fail_mu:
    pthread_mutex_destroy(&f->mu);
    return PS_ERR_SYS;
}

/*
 * On success the decorator owns `inner` and *out is set.  On failure `inner`
 * is left untouched and still belongs to the caller.
 */
int psi_fault_open(psi_transport *inner, const char *spec, psi_transport **out)
{
    int rv;
    fault_t *f;

    if (inner == NULL || out == NULL) return PS_ERR_INVAL;
    *out = NULL;
    if ((f = calloc(1, sizeof(*f))) == NULL) return PS_ERR_NOMEM;
    if ((rv = parse_spec(spec, &f->cfg)) != 0) goto fail_free;
    if ((rv = init_sync(f)) != 0) goto fail_cfg;

    f->base.ops = &fault_ops;
    f->base.cbs = inner->cbs;
    f->inner = inner;
    psi_rng_seed(&f->rng, f->cfg.seed);
    f->has_thread = f->cfg.delay > 0.0 || f->cfg.reorder > 0.0;
    if (f->has_thread && pthread_create(&f->thread, NULL, delay_thread, f) != 0) {
        PSI_ERROR("fault: cannot start the delay thread");
        rv = PS_ERR_SYS;
        goto fail_sync;
    }
    PSI_INFO("fault: over %s: drop=%g dup=%g delay=%g delay_ms=%" PRIu64
             " reorder=%g seed=%" PRIu64 " partition of %zu ids",
             inner->ops->name, f->cfg.drop, f->cfg.dup, f->cfg.delay, f->cfg.delay_ms,
             f->cfg.reorder, f->cfg.seed, f->cfg.npart);
    *out = &f->base;
    return 0;

fail_sync:
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
fail_cfg:
    free(f->cfg.part);
fail_free:
    free(f);
    return rv;
}

void psi_fault_stats_get(psi_transport *t, psi_fault_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (t == NULL || t->ops != &fault_ops) return;
    fault_t *f = (fault_t *)t;
    out->sent = atomic_load_explicit(&f->sent, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&f->dropped, memory_order_relaxed);
    out->duplicated = atomic_load_explicit(&f->duplicated, memory_order_relaxed);
    out->delayed = atomic_load_explicit(&f->delayed_n, memory_order_relaxed);
    out->reordered = atomic_load_explicit(&f->reordered, memory_order_relaxed);
}
