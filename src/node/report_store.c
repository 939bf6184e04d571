/*
 * report_store.c -- the scheduler's store of reports and series for the
 * status page (see report_store.h).
 *
 * Design: a node's record is allocated when it is first heard from; its
 * series are ring buffers of PSI_RSTORE_POINTS (time, value) pairs, so a
 * report costs O(tables + values) and no allocation once a series exists.
 * The snapshot copies what it needs (the lock is held for copies only) and
 * derives each node's state: the view's, turned "suspected" when an alive
 * node has been silent past the heartbeat timeout and "left" when it said it
 * leaves; and the ring's segments per server, for the servers of the view.
 *
 * Lock order: po.lock (node.c, when it notes or ingests), then st.lock,
 * which is a leaf: nothing is taken while it is held.
 *
 * Never: take another lock or call out under st.lock.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/report_store.h"
#include "node/ring.h"
#include "util/util.h"

typedef struct rs_series {
    char name[PS_REPORT_NAME_MAX];
    double *t, *v;       /* PSI_RSTORE_POINTS each */
    size_t head, n;      /* next slot to write; points held */
} rs_series;

typedef struct rs_node {
    uint64_t seen_ms, report_ms, prev_report_ms;
    uint64_t seq;
    int left, reported;
    int ntables;
    psi_report_table *tables;  /* last report's */
    double *push_rate, *pull_rate;
    int nseries;
    rs_series series[PS_REPORT_MAX_SERIES];
} rs_node;

static struct {
    pthread_mutex_t lock;
    uint64_t start_ms, timeout_ms;
    int nservers, nworkers;
    int total_series;
    rs_node *nodes[PSI_MAX_NODES];
} st = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- recording --------------------------------------------------------------- */

static void node_free(rs_node *n)
{
    if (!n) return;
    for (int i = 0; i < n->nseries; i++) {
        free(n->series[i].t);
        free(n->series[i].v);
    }
    free(n->tables);
    free(n->push_rate);
    free(n->pull_rate);
    free(n);
}

static void do_free_all(void)
{
    for (int i = 0; i < PSI_MAX_NODES; i++) {
        node_free(st.nodes[i]);
        st.nodes[i] = NULL;
    }
    st.total_series = 0;
}

void psi_rstore_init(uint64_t now_ms, uint64_t hb_timeout_ms, int nservers, int nworkers)
{
    pthread_mutex_lock(&st.lock);
    do_free_all();
    st.start_ms = now_ms;
    st.timeout_ms = hb_timeout_ms;
    st.nservers = nservers;
    st.nworkers = nworkers;
    pthread_mutex_unlock(&st.lock);
}

void psi_rstore_free(void)
{
    pthread_mutex_lock(&st.lock);
    do_free_all();
    pthread_mutex_unlock(&st.lock);
}

/* Node id's record, created if absent; NULL for a bad id or no memory. */
static rs_node *do_node(uint32_t id)
{
    if (id >= PSI_MAX_NODES) return NULL;
    if (!st.nodes[id]) st.nodes[id] = calloc(1, sizeof(rs_node));
    return st.nodes[id];
}

void psi_rstore_seen(uint32_t id, uint64_t now_ms)
{
    pthread_mutex_lock(&st.lock);
    rs_node *n = do_node(id);
    if (n && now_ms > n->seen_ms) n->seen_ms = now_ms;
    pthread_mutex_unlock(&st.lock);
}

void psi_rstore_left(uint32_t id)
{
    pthread_mutex_lock(&st.lock);
    rs_node *n = do_node(id);
    if (n) n->left = 1;
    pthread_mutex_unlock(&st.lock);
}

/* Per second between two counter readings; 0 if the counter went back. */
static double rate(uint64_t now, uint64_t before, double dt_s)
{
    return now >= before && dt_s > 0 ? (double)(now - before) / dt_s : 0;
}

/* Install report r's tables in n, with rates against the previous report. */
static int do_tables(rs_node *n, const psi_report *r, uint64_t now_ms)
{
    size_t k = (size_t)(r->ntables ? r->ntables : 1);
    psi_report_table *t = malloc(k * sizeof(*t));
    double *pr = calloc(k, sizeof(double)), *lr = calloc(k, sizeof(double));
    if (!t || !pr || !lr) {
        free(t), free(pr), free(lr);
        return PS_ERR_NOMEM;
    }
    double dt = n->reported ? (double)(now_ms - n->report_ms) / 1000.0 : 0;
    memcpy(t, r->tables, (size_t)r->ntables * sizeof(*t));
    for (int i = 0; i < r->ntables; i++)
        for (int j = 0; j < n->ntables; j++)
            if (strcmp(n->tables[j].name, t[i].name) == 0) {
                pr[i] = rate(t[i].pushes, n->tables[j].pushes, dt);
                lr[i] = rate(t[i].pulls, n->tables[j].pulls, dt);
            }
    free(n->tables), free(n->push_rate), free(n->pull_rate);
    n->tables = t, n->push_rate = pr, n->pull_rate = lr;
    n->ntables = r->ntables;
    return PS_OK;
}

static rs_series *do_series(rs_node *n, const char *name)
{
    for (int i = 0; i < n->nseries; i++)
        if (strcmp(n->series[i].name, name) == 0) return &n->series[i];
    if (n->nseries == PS_REPORT_MAX_SERIES || st.total_series >= PSI_RSTORE_MAX_SERIES)
        return NULL;
    rs_series *s = &n->series[n->nseries];
    s->t = malloc(PSI_RSTORE_POINTS * sizeof(double));
    s->v = malloc(PSI_RSTORE_POINTS * sizeof(double));
    if (!s->t || !s->v) {
        free(s->t), free(s->v);
        s->t = s->v = NULL;
        return NULL;
    }
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->head = s->n = 0;
    n->nseries++;
    st.total_series++;
    return s;
}

void psi_rstore_ingest(uint32_t id, uint64_t seq, const psi_report *r, uint64_t now_ms)
{
    pthread_mutex_lock(&st.lock);
    rs_node *n = do_node(id);
    if (!n || (n->reported && seq == n->seq) || do_tables(n, r, now_ms) != 0) {
        pthread_mutex_unlock(&st.lock);
        return;
    }
    n->seq = seq;
    n->report_ms = now_ms;
    n->reported = 1;
    double t = (double)(now_ms - st.start_ms) / 1000.0;
    for (int i = 0; i < r->nvalues; i++) {
        rs_series *s = do_series(n, r->values[i].name);
        if (!s) continue;
        s->t[s->head] = t;
        s->v[s->head] = r->values[i].value;
        s->head = (s->head + 1) % PSI_RSTORE_POINTS;
        if (s->n < PSI_RSTORE_POINTS) s->n++;
    }
    pthread_mutex_unlock(&st.lock);
}

/* ---- the snapshot ------------------------------------------------------------- */

static double age_s(uint64_t now_ms, uint64_t then_ms, int known)
{
    if (!known) return -1;
    return now_ms > then_ms ? (double)(now_ms - then_ms) / 1000.0 : 0;
}

static int node_state(const psi_node *v, const rs_node *n, uint64_t now_ms)
{
    if (n && n->left) return PSI_ST_LEFT;
    switch (v->alive) {
    case PSI_NODE_DEAD: return PSI_ST_DEAD;
    case PSI_NODE_STANDBY:
    case PSI_NODE_JOINING: return PSI_ST_JOINING;
    default: break;
    }
    if (v->id != PSI_SCHEDULER_ID && n && n->seen_ms && now_ms > n->seen_ms + st.timeout_ms)
        return PSI_ST_SUSPECTED;
    return PSI_ST_ALIVE;
}

static void fill_node(psi_status_node *o, const psi_node *v, uint64_t now_ms)
{
    const rs_node *n = st.nodes[v->id];
    memset(o, 0, sizeof(*o));
    o->id = v->id;
    o->role = v->role;
    o->rank = v->rank;
    o->state = node_state(v, n, now_ms);
    snprintf(o->addr, sizeof(o->addr), "%s", v->addr);
    o->hb_age_s = v->id == PSI_SCHEDULER_ID ? 0
                                            : age_s(now_ms, n ? n->seen_ms : 0, n && n->seen_ms);
    o->report_age_s = age_s(now_ms, n ? n->report_ms : 0, n && n->reported);
}

/* Count what the snapshot's arrays need (st.lock held). */
static void do_count(const psi_view *v, size_t *nt, size_t *ns)
{
    *nt = *ns = 0;
    for (uint32_t i = 0; i < v->n; i++) {
        const rs_node *n = v->nodes[i].id < PSI_MAX_NODES ? st.nodes[v->nodes[i].id] : NULL;
        if (!n) continue;
        *nt += (size_t)n->ntables;
        *ns += (size_t)n->nseries;
    }
}

static int copy_series(psi_status_series *o, const rs_series *s, const psi_node *v)
{
    snprintf(o->name, sizeof(o->name), "%s", s->name);
    o->node = v->id, o->role = v->role, o->rank = v->rank;
    o->n = s->n;
    o->t = malloc((s->n ? s->n : 1) * sizeof(double));
    o->v = malloc((s->n ? s->n : 1) * sizeof(double));
    if (!o->t || !o->v) return PS_ERR_NOMEM;
    size_t first = (s->head + PSI_RSTORE_POINTS - s->n) % PSI_RSTORE_POINTS;
    for (size_t k = 0; k < s->n; k++) {
        o->t[k] = s->t[(first + k) % PSI_RSTORE_POINTS];
        o->v[k] = s->v[(first + k) % PSI_RSTORE_POINTS];
    }
    return PS_OK;
}

/* Copy node v's tables and series into out (st.lock held). */
static int do_copy_node(const psi_node *v, psi_status_snap *out)
{
    const rs_node *n = v->id < PSI_MAX_NODES ? st.nodes[v->id] : NULL;
    if (!n) return PS_OK;
    for (int i = 0; i < n->ntables; i++) {
        psi_status_table *t = &out->tables[out->ntables++];
        t->c = n->tables[i];
        t->node = v->id, t->role = v->role, t->rank = v->rank;
        t->push_rate = n->push_rate[i];
        t->pull_rate = n->pull_rate[i];
    }
    for (int i = 0; i < n->nseries; i++) {
        psi_status_series *s = &out->series[out->nseries++];
        if (copy_series(s, &n->series[i], v) != 0) return PS_ERR_NOMEM;
    }
    return PS_OK;
}

/* Segments and share of each server of the view (no lock needed). */
static void fill_ring(const psi_view *v, psi_status_snap *out)
{
    int ranks[PSI_MAX_NODES], ns = 0;
    uint32_t ids[PSI_MAX_NODES];
    for (uint32_t i = 0; i < v->n; i++)
        if (v->nodes[i].role == PS_ROLE_SERVER && v->nodes[i].alive != PSI_NODE_STANDBY) {
            ranks[ns] = v->nodes[i].rank;
            ids[ns++] = v->nodes[i].id;
        }
    psi_ring *r = ns ? psi_ring_new(ranks, ids, ns, PSI_RING_DEFAULT_VNODES) : NULL;
    double *share = r ? calloc((size_t)ns, sizeof(double)) : NULL;
    if (!share) {
        psi_ring_free(r);
        return;
    }
    out->nsegs = psi_ring_nsegs(r);
    psi_ring_shares(r, share); /* by rank order */
    for (uint32_t seg = 0; seg < out->nsegs; seg++) {
        uint32_t owner = psi_ring_seg_owner(r, seg);
        for (size_t k = 0; k < out->nnodes; k++)
            if (out->nodes[k].id == owner) out->nodes[k].segs++;
    }
    for (size_t k = 0; k < out->nnodes; k++) {
        psi_status_node *nd = &out->nodes[k];
        if (nd->role != PS_ROLE_SERVER || (!nd->segs)) continue;
        int below = 0; /* its place among the ring's ranks */
        for (int j = 0; j < ns; j++) below += ranks[j] < nd->rank;
        nd->share = share[below];
    }
    free(share);
    psi_ring_free(r);
}

int psi_rstore_snapshot(const psi_view *v, uint64_t now_ms, psi_status_snap *out)
{
    size_t nt, ns;
    int rv = PS_OK;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st.lock);
    out->epoch = v->epoch;
    out->uptime_s = age_s(now_ms, st.start_ms, 1);
    out->nservers = st.nservers, out->nworkers = st.nworkers;
    do_count(v, &nt, &ns);
    out->nodes = calloc(v->n ? v->n : 1, sizeof(*out->nodes));
    out->tables = calloc(nt ? nt : 1, sizeof(*out->tables));
    out->series = calloc(ns ? ns : 1, sizeof(*out->series));
    if (!out->nodes || !out->tables || !out->series) rv = PS_ERR_NOMEM;
    for (uint32_t i = 0; rv == 0 && i < v->n; i++) {
        if (v->nodes[i].id >= PSI_MAX_NODES) continue;
        fill_node(&out->nodes[out->nnodes++], &v->nodes[i], now_ms);
        rv = do_copy_node(&v->nodes[i], out);
    }
    pthread_mutex_unlock(&st.lock);
    if (rv == 0) fill_ring(v, out);
    else psi_status_snap_free(out);
    return rv;
}
