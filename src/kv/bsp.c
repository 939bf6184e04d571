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
 * stops being waited for.
 *
 * Runs under the table lock (server.c and the view hook).  Never applies
 * an iteration twice or before every live worker contributed.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

typedef struct agg {
    struct agg *next;
    uint64_t iter;
    int count;
    psi_store *sum;
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
    b->workers = ps_num_workers();
    t->bsp = b;
    return PS_OK;
}

void psi_kv_bsp_free(ps_table *t)
{
    kv_bsp *b = t->bsp;
    if (!b) return;
    while (b->aggs) {
        agg *a = b->aggs;
        b->aggs = a->next;
        psi_store_free(a->sum);
        free(a);
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

static agg *agg_get(kv_bsp *b, uint64_t iter, int create, size_t vbytes)
{
    for (agg *a = b->aggs; a; a = a->next)
        if (a->iter == iter) return a;
    if (!create) return NULL;
    agg *a = calloc(1, sizeof(*a));
    if (!a || !(a->sum = psi_store_new(vbytes))) {
        free(a);
        return NULL;
    }
    a->iter = iter;
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

/* Answer the pulls whose iteration is now applied. */
static void do_release_pulls(ps_table *t)
{
    kv_bsp *b = t->bsp;
    for (pull_wait **pp = &b->pulls; *pp;) {
        pull_wait *p = *pp;
        if (p->min_iter > b->applied) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        psi_kv_answer_pull(t, p->msg);
        psi_msg_free(p->msg);
        free(p);
    }
}

/* Apply every complete iteration in order. */
static void do_advance(ps_table *t)
{
    kv_bsp *b = t->bsp;
    agg *a;
    while ((a = agg_get(b, b->applied + 1, 0, 0)) && a->count >= b->workers) {
        apply_ctx c = {t, PS_OK};
        psi_store_foreach(a->sum, apply_one, &c);
        if (c.rv != 0) PSI_ERROR("table %s: iteration %llu did not fit: %s", t->name,
                                 (unsigned long long)a->iter, ps_strerror(c.rv));
        do_unlink_agg(b, a);
        psi_store_free(a->sum);
        free(a);
        b->applied++;
    }
    do_release_pulls(t);
}

int psi_kv_bsp_push(ps_table *t, const psi_msg *m, uint64_t iter)
{
    kv_bsp *b = t->bsp;
    size_t n = m->hdr.key_count;
    agg *a = agg_get(b, iter, 1, t->vbytes);
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
    if (min_iter <= b->applied) {
        psi_kv_answer_pull(t, m);
        return 0;
    }
    pull_wait *p = malloc(sizeof(*p));
    if (!p) return 0; /* the worker resends */
    *p = (pull_wait){b->pulls, m, min_iter};
    b->pulls = p;
    return 1;
}

void psi_kv_server_on_view(ps_table *t, const uint32_t *dead, int ndead)
{
    psi_view v;
    if (psi_node_view(&v) != 0) return;
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
