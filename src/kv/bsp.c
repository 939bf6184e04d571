/*
 * bsp.c -- bulk-synchronous tables on the server side: the pushes of one
 * iteration from every live worker are summed in a scratch store, and the
 * sum is applied through the table's update function once, when the last
 * worker's push for that iteration arrived.  Pulls that name an iteration
 * not yet applied wait here and are answered when it is.
 *
 * A worker's k-th push to a table is its push for iteration k (workers send
 * every server a push each iteration, empty if it has no keys there), and
 * the push sequence numbers of the vector clock are exactly those k, so
 * dedup and ordering come from server.c for free.  A worker declared dead
 * stops being waited for; if it had pushed an iteration ahead of the others,
 * that iteration completes without them, and their pushes for it, arriving
 * late, are applied on their own rather than waited on forever.
 *
 * Replicated tables ("replication after aggregation"): the pushes of an
 * iteration are kept, not answered; once the iteration is applied, the new
 * blocks of the keys it touched go to the backups once (t->repl->bsp_forward),
 * and only when they acknowledged is the iteration durable: its pushes are
 * answered, pulls may see it, and the next iteration may apply.  After a
 * server died, the parts of its pushes that workers move here form iterations
 * of their own (per dead server and origin), aggregated over every live worker
 * the same way -- every worker sends every live server such a part for every
 * dead server each iteration, empty if need be (worker.c), so the count is
 * always "all live workers" -- and pulls wait until no such iteration at or
 * below theirs is still open.
 *
 * Runs under the table lock (server.c and the view hook).  Never applies
 * an iteration twice or before every live worker contributed.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/server.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

typedef struct agg {
    struct agg *next;
    uint64_t iter;
    uint64_t src;      /* 0: this server's own; else moved pushes: via << 32 | origin */
    int count;
    int applying;      /* replicated: applied, forwards in flight */
    psi_store *sum;
    psi_msg **msgs;    /* replicated: the pushes, answered once durable */
    int nmsgs, cap;
} agg;

typedef struct pull_wait {
    struct pull_wait *next;
    psi_msg *msg;
    uint64_t min_iter;
} pull_wait;

struct kv_bsp {
    uint64_t applied;   /* every iteration <= applied is in the table */
    int workers;        /* live workers */
    psi_update add;     /* sums values of the table's dtype and width */
    agg *aggs;
    pull_wait *pulls;
};

int psi_kv_bsp_init(ps_table *t)
{
    kv_bsp *b = calloc(1, sizeof(*b));
    ps_table_opts o;
    if (!b) return PS_ERR_NOMEM;
    ps_table_opts_init(&o);
    o.dtype = t->opts.dtype;
    o.width = t->opts.width;
    if (psi_update_from_opts(&b->add, &o) != 0) {
        free(b);
        return PS_ERR_INVAL;
    }
    b->workers = psi_kv_nworkers();
    t->bsp = b;
    return PS_OK;
}

static void agg_free(agg *a)
{
    for (int i = 0; i < a->nmsgs; i++) psi_msg_free(a->msgs[i]);
    free(a->msgs);
    psi_store_free(a->sum);
    free(a);
}

void psi_kv_bsp_free(ps_table *t)
{
    kv_bsp *b = t->bsp;
    if (!b) return;
    while (b->aggs) {
        agg *a = b->aggs;
        b->aggs = a->next;
        agg_free(a);
    }
    while (b->pulls) {
        pull_wait *p = b->pulls;
        b->pulls = p->next;
        psi_msg_free(p->msg);
        free(p);
    }
    free(b);
    t->bsp = NULL;
}

static agg *agg_get(kv_bsp *b, uint64_t src, uint64_t iter, int create, size_t vbytes)
{
    for (agg *a = b->aggs; a; a = a->next)
        if (a->iter == iter && a->src == src) return a;
    if (!create) return NULL;
    agg *a = calloc(1, sizeof(*a));
    if (!a || !(a->sum = psi_store_new(vbytes))) {
        free(a);
        return NULL;
    }
    a->iter = iter;
    a->src = src;
    a->next = b->aggs;
    b->aggs = a;
    return a;
}

typedef struct apply_ctx {
    ps_table *t;
    int rv;
} apply_ctx;

static int apply_one(void *arg, uint64_t key, void *sum)
{
    apply_ctx *c = arg;
    ps_table *t = c->t;
    int inserted = 0;
    void *block = t->dense ? psi_dense_get(t->dense, key, 1)
                           : psi_store_upsert(t->store, key, &inserted);
    if (!block) {
        c->rv = PS_ERR_TOOBIG;
        return 0; /* keep going: apply what fits */
    }
    if (inserted) psi_update_init_block(&t->upd, key, block);
    psi_update_apply(&t->upd, key, block, sum);
    return 0;
}

static void do_unlink_agg(kv_bsp *b, agg *a)
{
    for (agg **pp = &b->aggs; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            return;
        }
}

/* Whether a pull that must see iteration `it` can be answered: it is
 * applied (durable) and no moved iteration at or below it is still open. */
static int pull_ready(const kv_bsp *b, uint64_t it)
{
    if (it > b->applied) return 0;
    for (const agg *a = b->aggs; a; a = a->next)
        if (a->src && a->iter <= it) return 0;
    return 1;
}

/* Answer the pulls whose iteration is now applied. */
static void do_release_pulls(ps_table *t)
{
    kv_bsp *b = t->bsp;
    for (pull_wait **pp = &b->pulls; *pp;) {
        pull_wait *p = *pp;
        if (!pull_ready(b, p->min_iter)) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        psi_kv_answer_pull(t, p->msg);
        psi_msg_free(p->msg);
        free(p);
    }
}

static void do_apply_agg(ps_table *t, agg *a)
{
    apply_ctx c = {t, PS_OK};
    psi_store_foreach(a->sum, apply_one, &c);
    if (c.rv != 0) PSI_ERROR("table %s: iteration %llu did not fit: %s", t->name,
                             (unsigned long long)a->iter, ps_strerror(c.rv));
}

/* Apply every complete iteration: this server's own in order, moved ones
 * as they complete.  A replicated iteration then waits for its backups
 * (psi_kv_bsp_durable), and the next own one waits for it. */
static void do_advance(ps_table *t)
{
    kv_bsp *b = t->bsp;
    for (int progress = 1; progress;) {
        progress = 0;
        for (agg *a = b->aggs, *next; a; a = next) {
            next = a->next;
            /* late: a push for an iteration already applied (a worker that
             * died had made it complete without this one): applied alone */
            int late = !a->src && a->iter <= b->applied;
            if (a->applying || (a->count < b->workers && !late)) continue;
            if (!a->src && a->iter > b->applied + 1) continue;
            do_apply_agg(t, a);
            progress = 1;
            if (t->repl) { /* answered from psi_kv_bsp_durable */
                a->applying = 1;
                if (!t->repl->bsp_forward(t, a->sum, a->msgs, a->nmsgs, a)) {
                    psi_kv_bsp_durable(t, a); /* nothing to wait for; advances */
                    return;
                }
                break;
            }
            do_unlink_agg(b, a);
            if (!a->src && a->iter > b->applied) b->applied = a->iter;
            agg_free(a);
            break; /* the list changed */
        }
    }
    do_release_pulls(t);
}

void psi_kv_bsp_durable(ps_table *t, void *iteration)
{
    kv_bsp *b = t->bsp;
    agg *a = iteration;
    do_unlink_agg(b, a);
    if (!a->src && a->iter > b->applied) b->applied = a->iter;
    for (int i = 0; i < a->nmsgs; i++) {
        psi_msg *m = a->msgs[i];
        kv_push_aux x;
        psi_kv_aux_get(m->seg[PSI_SEG_AUX], &x);
        if (a->src)
            t->repl->note_applied(t, (uint32_t)(a->src >> 32), x.origin, m->hdr.sender, a->iter,
                                  x.lo);
        a->msgs[i] = NULL;
        if (!psi_kv_answer(t, m, PS_OK, a->iter)) psi_msg_free(m);
    }
    a->nmsgs = 0;
    agg_free(a);
    do_advance(t);
}

uint64_t psi_kv_bsp_durable_iter(const ps_table *t) { return t->bsp->applied; }

int psi_kv_bsp_waiting(const ps_table *t, uint64_t src, uint32_t sender, uint64_t iter)
{
    for (const agg *a = t->bsp->aggs; a; a = a->next)
        for (int i = 0; a->iter == iter && a->src == src && i < a->nmsgs; i++)
            if (a->msgs[i]->hdr.sender == sender) return 1;
    return 0;
}

static int do_keep(agg *a, psi_msg *m)
{
    if (a->nmsgs == a->cap) {
        int nc = a->cap ? a->cap * 2 : 8;
        psi_msg **q = realloc(a->msgs, (size_t)nc * sizeof(*q));
        if (!q) return PS_ERR_NOMEM;
        a->msgs = q;
        a->cap = nc;
    }
    a->msgs[a->nmsgs++] = m;
    return PS_OK;
}

int psi_kv_bsp_push_kept(ps_table *t, psi_msg *m, uint64_t iter, uint64_t src)
{
    agg *a = agg_get(t->bsp, src, iter, 1, t->vbytes);
    if (!a || do_keep(a, m) != 0) return 0; /* not kept: the worker resends */
    int rv = psi_kv_bsp_push_via(t, m, iter, src);
    if (rv != 0) PSI_WARN("table %s: iteration %llu lost a push: %s", t->name,
                          (unsigned long long)iter, ps_strerror(rv));
    return 1;
}

int psi_kv_bsp_push(ps_table *t, const psi_msg *m, uint64_t iter)
{
    return psi_kv_bsp_push_via(t, m, iter, 0);
}

int psi_kv_bsp_push_via(ps_table *t, const psi_msg *m, uint64_t iter, uint64_t src)
{
    kv_bsp *b = t->bsp;
    size_t n = m->hdr.key_count;
    agg *a = agg_get(b, src, iter, 1, t->vbytes);
    void **blocks = malloc(PSI_MAX(n, 1) * sizeof(void *));
    uint8_t *ins = malloc(PSI_MAX(n, 1));
    int rv = a && blocks && ins ? PS_OK : PS_ERR_NOMEM;
    if (rv == 0 && n) {
        const uint64_t *keys = m->seg[PSI_SEG_KEYS];
        if (psi_store_upsert_batch(a->sum, keys, n, blocks, ins) == 0)
            psi_update_apply_batch(&b->add, keys, blocks, m->seg[PSI_SEG_VALS], n);
        else
            rv = PS_ERR_NOMEM;
    }
    free(blocks);
    free(ins);
    if (a) a->count++; /* counted even on failure, so the iteration can end */
    do_advance(t);
    return rv;
}

int psi_kv_bsp_pull(ps_table *t, psi_msg *m, uint64_t min_iter)
{
    kv_bsp *b = t->bsp;
    if (pull_ready(b, min_iter)) {
        psi_kv_answer_pull(t, m);
        return 0;
    }
    pull_wait *p = malloc(sizeof(*p));
    if (!p) return 0; /* the worker resends */
    *p = (pull_wait){b->pulls, m, min_iter};
    b->pulls = p;
    return 1;
}

void psi_kv_bsp_on_view(ps_table *t, const uint32_t *dead, int ndead)
{
    psi_view v;
    if (psi_kv_view(&v) != 0) return;
    pthread_mutex_lock(&t->lock);
    if (t->bsp) {
        int before = t->bsp->workers;
        t->bsp->workers = psi_view_count(&v, PS_GROUP_WORKERS, 1);
        if (t->bsp->workers != before)
            PSI_INFO("table %s: %d live workers now complete an iteration", t->name,
                     t->bsp->workers);
        do_advance(t);
    }
    pthread_mutex_unlock(&t->lock);
    psi_view_free(&v);
    (void)dead;
    (void)ndead;
}
