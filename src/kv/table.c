/*
 * table.c -- the registry of open tables: ps_table_open, option checks,
 * dispatch of DATA messages to the worker or server half of a table, and
 * the timer service's client that resends unacknowledged requests.
 *
 * Design: a table's id is a 32-bit FNV-1a hash of its name, so every node
 * derives the same id without coordination; two names colliding is refused
 * at open.  Tables live until the process exits (ps_finalize tears them
 * down), so a table pointer handed to the application never dangles while
 * the node runs.  The registry is a small array scanned linearly: a job
 * has a handful of tables.  Opening a table sets up its worker or server
 * half, then its plug-ins (plugins.c: replication's ops, checkpoints), then
 * the server's request stages (server.c); view changes, acknowledgements of
 * forwards and the timer reach replication only through the halves or
 * t->repl.
 *
 * Never: hold the registry lock while calling into a table's halves.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv_repl.h"
#include "kv/hints.h"
#include "kv/server.h"
#include "kv/table.h"
#include "kv/worker.h"
#include "node/node.h"
#include "util/log.h"
#include "util/timer.h"
#include "util/util.h"

#define TICK_MS 10

static void kv_shutdown(void);

static struct {
    pthread_mutex_t lock;
    ps_table *tables[PSI_MAX_TABLES];
    int n;
    int hooked;
    psi_timer *timer;
    uint64_t resend_ms;
    uint64_t window;        /* PS_WINDOW_BYTES: per table, 0 = unbounded */
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER, .resend_ms = 1000}; /* do_hook reads the environment at the first open */

void ps_table_opts_init(ps_table_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->dtype = PS_F32;
    o->width = 1;
    o->update = PS_UPDATE_ADD;
    o->lr = 0.1;
    o->beta = 1.0;
    o->eps = 1e-8;
    o->consistency = PS_EVENTUAL;
}


ps_table *psi_kv_find(uint32_t id)
{
    ps_table *t = NULL;
    pthread_mutex_lock(&reg.lock);
    for (int i = 0; i < reg.n && !t; i++)
        if (reg.tables[i]->id == id) t = reg.tables[i];
    pthread_mutex_unlock(&reg.lock);
    return t;
}

uint64_t psi_kv_resend_ms(void) { return reg.resend_ms; }
uint64_t psi_kv_window_bytes(void) { return reg.window; }

int psi_kv_tables(ps_table **out, int cap)
{
    pthread_mutex_lock(&reg.lock);
    int n = PSI_MIN(reg.n, cap);
    memcpy(out, reg.tables, (size_t)n * sizeof(*out));
    pthread_mutex_unlock(&reg.lock);
    return n;
}

/* Whether server `n` of a view is on table t's ring.  A replicated table
 * (not BSP) takes in a server that joins a running cluster as soon as it
 * starts receiving its ranges (the plug-in's join protocol), so its ring grows; the
 * others keep the servers of the first view, whose ranks are the first
 * ps_num_servers().  A dead server stays on every ring: the live chains
 * skip it, so its points change no key's chain. */
static int ring_member(const ps_table *t, const psi_node *n)
{
    if (n->role != PS_ROLE_SERVER) return 0;
    if (t->opts.replication > 0 && !t->opts.bsp) return n->alive != PSI_NODE_STANDBY;
    return n->rank < psi_kv_nservers();
}

int psi_kv_ring_next(const ps_table *t, const psi_view *v, psi_ring **next, uint32_t *ids,
                     int *n)
{
    int *ranks = malloc(PSI_MAX_NODES * sizeof(int)), same;
    *next = NULL;
    *n = 0;
    if (!ranks) return PS_ERR_NOMEM;
    for (uint32_t i = 0; i < v->n; i++)
        if (ring_member(t, &v->nodes[i]) && *n < PSI_MAX_NODES) {
            ranks[*n] = v->nodes[i].rank;
            ids[(*n)++] = v->nodes[i].id;
        }
    same = t->ring && *n == t->nservers && !memcmp(ids, t->servers, (size_t)*n * sizeof(*ids));
    int rv = PS_OK;
    if (*n == 0) {
        PSI_ERROR("table %s: the cluster has no servers to push to", t->name);
        rv = PS_ERR_STATE;
    } else if (!same && !(*next = psi_ring_new(ranks, ids, *n, PSI_RING_DEFAULT_VNODES))) {
        rv = PS_ERR_NOMEM;
    }
    free(ranks);
    return rv;
}

void psi_kv_ring_install(ps_table *t, psi_ring *next, const uint32_t *ids, int n)
{
    psi_ring_free(t->ring);
    t->ring = next;
    memcpy(t->servers, ids, (size_t)n * sizeof(uint32_t));
    t->nservers = n;
}

int psi_kv_ring(ps_table *t)
{
    if (t->ring) return PS_OK;
    psi_view v;
    psi_ring *next;
    int n;
    uint32_t *ids = malloc(PSI_MAX_NODES * sizeof(uint32_t));
    int rv = !ids ? PS_ERR_NOMEM : psi_kv_view(&v);
    if (rv != 0) {
        free(ids);
        return rv;
    }
    if ((rv = psi_kv_ring_next(t, &v, &next, ids, &n)) == 0) psi_kv_ring_install(t, next, ids, n);
    psi_view_free(&v);
    free(ids);
    return rv;
}

/* ---- dispatch ------------------------------------------------------------------ */

void psi_kv_deliver(ps_table *t, psi_msg *m)
{
    if ((m->hdr.flags & PSI_F_RESPONSE) && (m->hdr.flags & PSI_F_REPL)) {
        if (t && t->repl && !t->tq) t->repl->on_ack(t, m);
        psi_msg_free(m);
        return;
    }
    if (m->hdr.flags & PSI_F_RESPONSE) {
        if (t && t->tq) psi_kv_worker_on_response(t, m);
        else psi_msg_free(m);
        return;
    }
    if (!t || !(t->store || t->dense)) {
        PSI_WARN("request from node %u for table %08x, which this node does not serve",
                 m->hdr.sender, m->hdr.table);
        psi_kv_reply(t, m, t ? PS_ERR_STATE : PS_ERR_NOTFOUND, NULL, 0);
        psi_msg_free(m);
        return;
    }
    psi_kv_server_on_request(t, m);
}

static void on_data(void *arg, psi_msg *m)
{
    (void)arg;
    psi_kv_deliver(psi_kv_find(m->hdr.table), m);
}

/* Large pull answers straight into the caller's array (zcopy.c). */
static int on_place(void *arg, const psi_hdr *h, struct psi_place *out)
{
    (void)arg;
    ps_table *t = psi_kv_find(h->table);
    return t && t->tq ? psi_kv_zcopy_place(t, h, out) : 0;
}

static void on_view(uint32_t epoch, const uint32_t *dead, int ndead, void *arg)
{
    (void)arg, (void)epoch;
    pthread_mutex_lock(&reg.lock);
    int n = reg.n;
    ps_table *ts[PSI_MAX_TABLES];
    memcpy(ts, reg.tables, (size_t)n * sizeof(ts[0]));
    pthread_mutex_unlock(&reg.lock);
    for (int i = 0; i < n; i++) {
        if (ts[i]->tq) psi_kv_worker_on_view(ts[i], dead, ndead);
        else psi_kv_server_on_view(ts[i], dead, ndead);
    }
}

/* The timer service's client (util/timer.h): resends, stalled trains,
 * forwards and prunes, every TICK_MS. */
static void kv_tick(void *arg, uint64_t now_ms)
{
    (void)arg;
    ps_table *ts[PSI_MAX_TABLES];
    pthread_mutex_lock(&reg.lock);
    int n = reg.n;
    memcpy(ts, reg.tables, (size_t)n * sizeof(ts[0]));
    pthread_mutex_unlock(&reg.lock);
    for (int i = 0; i < n; i++) {
        if (ts[i]->tq) psi_kv_worker_tick(ts[i], now_ms);
        else psi_kv_server_tick(ts[i], now_ms);
    }
}

/* First open: hook into the post office and the timer service. */
static int do_hook(void)
{
    static const char *const rs[] = {"PS_RESEND_MS", NULL};
    static const char *const wn[] = {"PS_WINDOW_BYTES", NULL};
    long resend, window;
    int rv;
    if (reg.hooked) return PS_OK;
    if ((rv = psi_env_long(rs, 1000, 1, 3600000, &resend)) != 0 ||
        (rv = psi_env_long(wn, 64L << 20, 0, 1L << 40, &window)) != 0)
        return rv;
    reg.resend_ms = (uint64_t)resend;
    reg.window = (uint64_t)window;
    psi_node_set_handler(PSI_MSG_DATA, on_data, NULL);
    psi_node_set_place(on_place, NULL);
    psi_node_on_shutdown(kv_shutdown, PSI_SHUTDOWN_DATA);
    if ((rv = psi_node_add_view_hook(on_view, NULL)) != 0) return rv;
    if ((rv = psi_timer_add(TICK_MS, kv_tick, NULL, &reg.timer)) != 0) return rv;
    reg.hooked = 1;
    return PS_OK;
}

/* ---- open ----------------------------------------------------------------------- */

static int check_opts(const char *name, const ps_table_opts *o)
{
    if (!name || !*name || strlen(name) >= PSI_TABLE_NAME_MAX) {
        PSI_ERROR("table name must be 1..%d bytes", PSI_TABLE_NAME_MAX - 1);
        return PS_ERR_INVAL;
    }
    if (o->consistency > PS_EVENTUAL || (o->consistency == PS_BOUNDED_DELAY && o->tau < 0)) {
        PSI_ERROR("table %s: bad consistency model or tau < 0", name);
        return PS_ERR_INVAL;
    }
    if (o->dense_hi > o->dense_lo && o->dense_hi - o->dense_lo > (1ull << 40)) {
        PSI_ERROR("table %s: dense range over 2^40 keys", name);
        return PS_ERR_INVAL;
    }
    if (o->width == 0 && (o->bsp || o->dense_hi > o->dense_lo ||
                          (o->update != PS_UPDATE_ADD && o->update != PS_UPDATE_ASSIGN))) {
        PSI_ERROR("table %s: variable-length values (width 0) support only ADD and ASSIGN, "
                  "without BSP or a dense range", name);
        return PS_ERR_INVAL;
    }
    if (o->replication < 0 || o->replication > 7) {
        PSI_ERROR("table %s: replication must be 0..7 backups", name);
        return PS_ERR_INVAL;
    }
    if (o->replication > 0 && (o->width == 0 || o->dense_hi > o->dense_lo)) {
        PSI_ERROR("table %s: replication needs a fixed-width sparse table", name);
        return PS_ERR_INVAL;
    }
    return PS_OK;
}

static int same_opts(const ps_table_opts *a, const ps_table_opts *b)
{
    return a->dtype == b->dtype && a->width == b->width && a->update == b->update &&
           a->bsp == b->bsp && a->replication == b->replication &&
           a->consistency == b->consistency && a->tau == b->tau;
}

static void table_free(ps_table *t)
{
    if (!t) return;
    psi_kv_worker_free(t);
    if (t->repl) t->repl->free(t); /* before the store: it frees what the seen sets hold */
    free(t->dead); /* a worker's table has it without replication too (move.c) */
    t->dead = NULL;
    psi_kv_server_free(t);
    psi_ring_free(t->ring);
    psi_chain_free(t->chain);
    psi_store_free(t->sigmod_resid);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->trains.cv);
    pthread_mutex_destroy(&t->win.lock);
    pthread_cond_destroy(&t->win.cv);
    free(t);
}

static int table_new(const char *name, const ps_table_opts *o, ps_table **out)
{
    ps_table *t = calloc(1, sizeof(*t));
    int rv;
    if (!t) return PS_ERR_NOMEM;
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->id = psi_name_id(name);
    t->opts = *o;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->trains.cv, NULL);
    pthread_mutex_init(&t->win.lock, NULL);
    pthread_cond_init(&t->win.cv, NULL);
    ps_table_opts uo = *o;
    t->var = o->width == 0;
    if (t->var) uo.width = 1; /* the update works on one element */
    if ((rv = psi_update_from_opts(&t->upd, &uo)) != 0) goto fail;
    t->vbytes = psi_update_value_bytes(&t->upd);
    double unused;
    if ((rv = psi_chain_new(NULL, o->dtype, &t->chain, &unused)) != 0) goto fail;
    if (psi_kv_role() == PS_ROLE_WORKER) {
        int tau = o->consistency == PS_SEQUENTIAL ? 0
                  : o->consistency == PS_BOUNDED_DELAY ? o->tau : -1;
        t->tq = psi_tq_new(tau);
        t->push_seq = calloc(PSI_MAX_NODES, sizeof(uint64_t));
        rv = t->tq && t->push_seq ? PS_OK : PS_ERR_NOMEM;
    } else if (psi_kv_role() == PS_ROLE_SERVER) {
        rv = psi_kv_server_init(t);
    }
    if (rv == 0) rv = psi_kv_plugins_open(t); /* replication, checkpoints */
    if (rv != 0) goto fail;
    if (t->store || t->dense) psi_kv_server_stages(t);
    *out = t;
    return PS_OK;
fail:
    table_free(t);
    return rv;
}

int psi_kv_table_new(const char *name, const ps_table_opts *o, ps_table **out)
{
    int rv = check_opts(name, o);
    return rv ? rv : table_new(name, o, out);
}

void psi_kv_table_free(ps_table *t) { table_free(t); }

int ps_table_open(const char *name, const ps_table_opts *opts, ps_table **out)
{
    ps_table_opts def;
    int rv;
    if (!out) return PS_ERR_INVAL;
    *out = NULL;
    if (!opts) ps_table_opts_init(&def);
    const ps_table_opts *o = opts ? opts : &def;
    if ((rv = check_opts(name, o)) != 0) return rv;
    if (!psi_node_running()) return PS_ERR_STATE;
    pthread_mutex_lock(&reg.lock);
    if ((rv = do_hook()) != 0) goto out;
    for (int i = 0; i < reg.n; i++) {
        ps_table *t = reg.tables[i];
        if (t->id != psi_name_id(name)) continue;
        if (strcmp(t->name, name) != 0 || !same_opts(&t->opts, o)) {
            PSI_ERROR("table %s: already open with other options or a colliding name (%s)",
                      name, t->name);
            rv = PS_ERR_INVAL;
        } else {
            *out = t;
        }
        goto out;
    }
    if (reg.n == PSI_MAX_TABLES) {
        rv = PS_ERR_TOOBIG;
        goto out;
    }
    if ((rv = table_new(name, o, out)) == 0) reg.tables[reg.n++] = *out;
out:
    pthread_mutex_unlock(&reg.lock);
    return rv;
}

int ps_table_stats_get(ps_table *t, ps_table_stats *out)
{
    if (!t || !out) return PS_ERR_INVAL;
    pthread_mutex_lock(&t->lock);
    *out = t->stats;
    if (t->store) {
        out->keys = psi_store_size(t->store);
        out->bytes = psi_store_bytes(t->store) + psi_hints_bytes(t->hints);
    } else if (t->dense) {
        out->bytes = psi_dense_bytes(t->dense);
    }
    pthread_mutex_unlock(&t->lock);
    return PS_OK;
}

typedef struct walk {
    ps_table *t;
    int (*fn)(void *arg, uint64_t key, const void *vals);
    void *arg;
} walk;

static int walk_one(void *arg, uint64_t key, void *block)
{
    walk *w = arg;
    ps_table *t = w->t;
    if (t->k && psi_kv_chain(t, psi_ring_seg_of(t->ring, key))[0] != psi_kv_id()) return 0;
    return w->fn(w->arg, key, block); /* a block starts with the values */
}

int ps_table_foreach(ps_table *t, int (*fn)(void *arg, uint64_t key, const void *vals),
                     void *arg)
{
    if (!t || !fn || t->var) return PS_ERR_INVAL;
    if (!(t->store || t->dense)) return PS_ERR_STATE;
    walk w = {t, fn, arg};
    pthread_mutex_lock(&t->lock);
    psi_kv_train_wait(t); /* no push in part */
    int rv = t->store ? psi_store_foreach(t->store, walk_one, &w)
                      : psi_dense_foreach(t->dense, walk_one, &w);
    psi_kv_train_read_done(t);
    pthread_mutex_unlock(&t->lock);
    return rv;
}

int ps_leave(void)
{
    if (psi_kv_role() == PS_ROLE_SCHEDULER) return PS_ERR_STATE;
    int rv = PS_OK;
    pthread_mutex_lock(&reg.lock);
    for (int i = 0; i < reg.n && rv == 0; i++) {
        ps_table *t = reg.tables[i];
        pthread_mutex_lock(&t->lock);
        size_t keys = t->store ? psi_store_size(t->store) : t->dense ? 1 : 0;
        if (keys && !t->k) {
            PSI_ERROR("table %s has no replicas: leaving would lose its keys on this server",
                      t->name);
            rv = PS_ERR_STATE;
        }
        pthread_mutex_unlock(&t->lock);
    }
    pthread_mutex_unlock(&reg.lock);
    return rv ? rv : psi_node_leave();
}

/* ---- filters and traffic -------------------------------------------------------- */

int ps_table_set_filters(ps_table *t, const char *spec)
{
    psi_chain *c;
    double sigmod;
    if (!t) return PS_ERR_INVAL;
    int rv = psi_chain_new(spec, t->opts.dtype, &c, &sigmod);
    if (rv != 0) return rv;
    if (sigmod > 0 && (t->var || t->opts.dtype == PS_I64)) {
        PSI_ERROR("table %s: sigmod needs fixed-width f32 or f64 values", t->name);
        psi_chain_free(c);
        return PS_ERR_INVAL;
    }
    pthread_mutex_lock(&t->lock);
    psi_chain_free(t->chain);
    t->chain = c;
    t->sigmod = sigmod;
    if (sigmod > 0 && !t->sigmod_resid && !(t->sigmod_resid = psi_store_new(t->vbytes)))
        rv = PS_ERR_NOMEM;
    pthread_mutex_unlock(&t->lock);
    return rv;
}

int ps_table_set_keep(ps_table *t, ps_keep_fn fn, void *arg)
{
    if (!t) return PS_ERR_INVAL;
    pthread_mutex_lock(&t->lock);
    t->keep = fn;
    t->keep_arg = arg;
    pthread_mutex_unlock(&t->lock);
    return PS_OK;
}

int ps_table_traffic(ps_table *t, ps_traffic *out)
{
    if (!t || !out) return PS_ERR_INVAL;
    pthread_mutex_lock(&t->lock);
    *out = t->traffic;
    pthread_mutex_unlock(&t->lock);
    return PS_OK;
}




static void print_stats(const ps_table *t)
{
    const ps_traffic *x = &t->traffic;
    const ps_table_stats *st = &t->stats;
    if (t->k && !t->tq)
        printf("stats table %s: replication k=%d: pushes carried %llu keys, %llu keys "
               "forwarded in %llu msgs, %llu keys copied to new backups, %llu moved pushes "
               "applied, %llu already held\n", t->name, t->k,
               (unsigned long long)st->keys_pushed, (unsigned long long)st->keys_forwarded,
               (unsigned long long)st->forwards, (unsigned long long)st->keys_copied,
               (unsigned long long)st->takeovers_applied, (unsigned long long)st->takeovers_held);
    printf("stats table %s: sent %llu msgs %llu keys %llu bytes (%llu before filters, %llu keys "
           "filtered); received %llu msgs %llu keys %llu bytes (%llu after decoding); %llu filter "
           "errors\n", t->name, (unsigned long long)x->msgs_sent, (unsigned long long)x->keys_sent,
           (unsigned long long)x->bytes_sent_wire, (unsigned long long)x->bytes_sent_raw,
           (unsigned long long)x->keys_filtered, (unsigned long long)x->msgs_recv,
           (unsigned long long)x->keys_recv, (unsigned long long)x->bytes_recv_wire,
           (unsigned long long)x->bytes_recv_raw, (unsigned long long)x->filter_errors);
    fflush(stdout);
}

/* Called by ps_finalize after the transport is closed: no callbacks run. */
static void kv_shutdown(void)
{
    psi_timer_remove(reg.timer); /* no tick runs after this */
    reg.timer = NULL;
    const char *stats = getenv("PS_STATS");
    pthread_mutex_lock(&reg.lock);
    for (int i = 0; stats && !strcmp(stats, "1") && i < reg.n; i++) print_stats(reg.tables[i]);
    for (int i = 0; i < reg.n; i++) table_free(reg.tables[i]);
    reg.n = 0;
    pthread_mutex_unlock(&reg.lock);
}
