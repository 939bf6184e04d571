/*
 * call.c -- remote functions: ps_register, ps_call, ps_call_group,
 * ps_call_wait, ps_call_release.
 *
 * Design.  Calls are tasks of one per-process task queue (eventual
 * consistency; explicit dependencies still apply).  A started call sends
 * one CALL request per target (function id = FNV-1a of the name, payload in
 * the aux segment) and finishes when every target answered or was declared
 * dead.  Unanswered requests are resent every PS_RESEND_MS.
 *
 * On the target, requests are queued to one executor thread, so handlers
 * never run on the transport's I/O thread and may themselves push, pull and
 * call.  A request already queued or running is not queued again; the last
 * REPLY_CACHE answers per caller are kept, so a resent request whose answer
 * was lost gets the same answer again without running twice.
 *
 * Resends run on the timer service (util/timer.h), so a long handler does
 * not hold them up.  Lock: cs.lock guards all state; handlers and sends run
 * without it.
 *
 * Never: run a handler on the I/O thread or with cs.lock held; run one
 * request twice while its answer is cached.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"
#include "task/task.h"
#include "util/log.h"
#include "util/timer.h"
#include "util/util.h"

#define MAX_FUNCS 128
#define NAME_MAX_LEN 64
#define REPLY_CACHE 256
#define TICK_MS 10

typedef struct func {
    char name[NAME_MAX_LEN];
    uint32_t id;
    ps_func fn;
    void *arg;
} func;

typedef struct target {
    ps_reply r;
    int done;
    uint64_t sent_ms;
    void *data;
} target;

typedef struct out_call {
    struct out_call *next;
    int64_t ts;
    uint32_t fid;
    void *payload;
    size_t len;
    target *targets;
    ps_reply *replies;   /* built by ps_call_wait, freed by ps_call_release */
    int ntargets, pending, started, status;
} out_call;

typedef struct in_req {
    struct in_req *next;
    psi_msg *msg;
} in_req;

typedef struct cached {
    int used;
    uint32_t caller;
    uint64_t ts;
    int status, running; /* running: queued or executing, no answer yet */
    void *data;
    size_t len;
} cached;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    func funcs[MAX_FUNCS];
    int nfuncs;
    psi_tq *tq;
    out_call *calls;
    in_req *queue, *queue_tail;
    cached cache[REPLY_CACHE];
    size_t cache_next;
    pthread_t thread;
    psi_timer *timer; /* calls_tick */
    int started, stop;
    uint64_t resend_ms;
} cs = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};


static const func *do_find_func(uint32_t id)
{
    for (int i = 0; i < cs.nfuncs; i++)
        if (cs.funcs[i].id == id) return &cs.funcs[i];
    return NULL;
}

/* ---- answering requests (executor thread) ----------------------------------- */

static void send_answer(uint32_t to, uint64_t ts, int status, const void *data, size_t len)
{
    psi_msg *m = psi_msg_new(PSI_MSG_CALL);
    if (!m) return;
    m->hdr.flags = PSI_F_RESPONSE;
    m->hdr.timestamp = ts;
    m->hdr.arg = (uint32_t)status;
    if (len && psi_msg_set_seg(m, PSI_SEG_AUX, data, len) != 0) m->hdr.arg = (uint32_t)PS_ERR_NOMEM;
    psi_node_send(to, m);
}

static cached *do_cache_find(uint32_t caller, uint64_t ts)
{
    for (size_t i = 0; i < REPLY_CACHE; i++)
        if (cs.cache[i].used && cs.cache[i].caller == caller && cs.cache[i].ts == ts)
            return &cs.cache[i];
    return NULL;
}

static cached *do_cache_add(uint32_t caller, uint64_t ts)
{
    cached *c = &cs.cache[cs.cache_next];
    cs.cache_next = (cs.cache_next + 1) % REPLY_CACHE;
    if (c->running) return NULL; /* every slot busy: the caller resends later */
    free(c->data);
    *c = (cached){.used = 1, .caller = caller, .ts = ts, .running = 1};
    return c;
}

static void run_request(psi_msg *m)
{
    const psi_hdr *h = &m->hdr;
    void *reply = NULL;
    size_t rlen = 0;
    pthread_mutex_lock(&cs.lock);
    const func *f = do_find_func(h->arg);
    ps_func fn = f ? f->fn : NULL;
    void *arg = f ? f->arg : NULL;
    pthread_mutex_unlock(&cs.lock);
    int st = PS_ERR_NOTFOUND;
    if (fn) st = fn(arg, h->sender, m->seg[PSI_SEG_AUX], h->seg_len[PSI_SEG_AUX], &reply, &rlen);
    else PSI_WARN("node %u called function %08x, which is not registered here", h->sender, h->arg);
    if (!reply) rlen = 0;
    pthread_mutex_lock(&cs.lock);
    cached *c = do_cache_find(h->sender, h->timestamp);
    if (c) {
        c->running = 0;
        c->status = st;
        c->data = reply;
        c->len = rlen;
    }
    pthread_mutex_unlock(&cs.lock);
    send_answer(h->sender, h->timestamp, st, reply, rlen);
    if (!c) free(reply);
    psi_msg_free(m);
}

/* A CALL request arrived (I/O thread): queue it once, or re-answer. */
static void do_on_request(psi_msg *m)
{
    cached *c = do_cache_find(m->hdr.sender, m->hdr.timestamp);
    if (c) {
        if (!c->running) send_answer(m->hdr.sender, m->hdr.timestamp, c->status, c->data, c->len);
        psi_msg_free(m);
        return;
    }
    if (!do_cache_add(m->hdr.sender, m->hdr.timestamp)) {
        psi_msg_free(m);
        return;
    }
    in_req *q = malloc(sizeof(*q));
    if (!q) {
        psi_msg_free(m);
        return;
    }
    *q = (in_req){NULL, m};
    if (cs.queue_tail) cs.queue_tail->next = q;
    else cs.queue = q;
    cs.queue_tail = q;
    pthread_cond_broadcast(&cs.cond);
}

/* ---- answers to our calls ---------------------------------------------------------- */

static out_call *do_find_call(int64_t ts)
{
    for (out_call *c = cs.calls; c; c = c->next)
        if (c->ts == ts) return c;
    return NULL;
}

/* Record target `t`'s answer; returns 1 when the call is complete. */
static int do_target_done(out_call *c, target *t, int status, void *data, size_t len)
{
    if (t->done) {
        free(data);
        return 0;
    }
    t->done = 1;
    t->r.status = status;
    t->data = data;
    t->r.data = data;
    t->r.len = len;
    if (status != 0 && c->status == 0) c->status = status;
    return --c->pending == 0;
}

static void do_on_response(psi_msg *m, int64_t *finished)
{
    out_call *c = do_find_call((int64_t)m->hdr.timestamp);
    for (int i = 0; c && i < c->ntargets; i++) {
        target *t = &c->targets[i];
        if (t->r.node != m->hdr.sender) continue;
        size_t len = m->hdr.seg_len[PSI_SEG_AUX];
        void *data = len ? malloc(len) : NULL; /* segments may share one block */
        if (len && !data) return;              /* the resend brings it again */
        if (len) memcpy(data, m->seg[PSI_SEG_AUX], len);
        if (do_target_done(c, t, (int)m->hdr.arg, data, len)) *finished = c->ts;
        return;
    }
}

static void on_call_msg(void *arg, psi_msg *m)
{
    (void)arg;
    int64_t finished = -1;
    pthread_mutex_lock(&cs.lock);
    if (m->hdr.flags & PSI_F_RESPONSE) {
        do_on_response(m, &finished);
        psi_msg_free(m);
    } else {
        do_on_request(m);
    }
    int status = finished >= 0 ? do_find_call(finished)->status : 0;
    pthread_mutex_unlock(&cs.lock);
    if (finished >= 0) psi_tq_finish(cs.tq, finished, status);
}

static void on_view(uint32_t epoch, const uint32_t *dead, int ndead, void *arg)
{
    (void)epoch;
    (void)arg;
    int64_t fin[64];
    int status[64], nfin = 0;
    pthread_mutex_lock(&cs.lock);
    for (out_call *c = cs.calls; c; c = c->next)
        for (int i = 0; i < c->ntargets; i++)
            for (int d = 0; d < ndead; d++)
                if (c->targets[i].r.node == dead[d] &&
                    do_target_done(c, &c->targets[i], PS_ERR_PEER, NULL, 0) && nfin < 64) {
                    fin[nfin] = c->ts;
                    status[nfin++] = c->status;
                }
    pthread_mutex_unlock(&cs.lock);
    for (int i = 0; i < nfin; i++) psi_tq_finish(cs.tq, fin[i], status[i]);
}

/* ---- executor thread --------------------------------------------------------------- */

static psi_msg *request_msg(const out_call *c, uint32_t to)
{
    psi_msg *m = psi_msg_new(PSI_MSG_CALL);
    if (!m) return NULL;
    m->hdr.flags = PSI_F_REQUEST;
    m->hdr.timestamp = (uint64_t)c->ts;
    m->hdr.arg = c->fid;
    if (c->len && psi_msg_set_seg(m, PSI_SEG_AUX, c->payload, c->len) != 0) {
        psi_msg_free(m);
        return NULL;
    }
    m->hdr.receiver = to;
    return m;
}

/* Collect the requests due for a resend (lock held). */
static int do_resends(psi_msg **out, int cap, uint64_t now)
{
    int n = 0;
    for (out_call *c = cs.calls; c && n < cap; c = c->next)
        for (int i = 0; c->started && i < c->ntargets && n < cap; i++) {
            target *t = &c->targets[i];
            if (t->done || now < t->sent_ms + cs.resend_ms) continue;
            t->sent_ms = now;
            if ((out[n] = request_msg(c, t->r.node))) n++;
        }
    return n;
}

static void *executor_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cs.lock);
    while (!cs.stop) {
        if (!cs.queue) {
            pthread_cond_wait(&cs.cond, &cs.lock);
            continue;
        }
        in_req *q = cs.queue;
        if (!(cs.queue = q->next)) cs.queue_tail = NULL;
        pthread_mutex_unlock(&cs.lock);
        run_request(q->msg);
        free(q);
        pthread_mutex_lock(&cs.lock);
    }
    pthread_mutex_unlock(&cs.lock);
    return NULL;
}

/* The timer service's client (util/timer.h): resend what is unanswered. */
static void calls_tick(void *arg, uint64_t now_ms)
{
    (void)arg;
    psi_msg *msgs[32];
    int n;
    do {
        pthread_mutex_lock(&cs.lock);
        n = do_resends(msgs, 32, now_ms);
        pthread_mutex_unlock(&cs.lock);
        for (int i = 0; i < n; i++) psi_node_send(msgs[i]->hdr.receiver, msgs[i]);
    } while (n == 32);
}

static void calls_shutdown(void)
{
    psi_timer_remove(cs.timer); /* no resend runs after this */
    cs.timer = NULL;
    pthread_mutex_lock(&cs.lock);
    int started = cs.started;
    cs.stop = 1;
    pthread_cond_broadcast(&cs.cond);
    pthread_mutex_unlock(&cs.lock);
    if (started) pthread_join(cs.thread, NULL);
    while (cs.queue) {
        in_req *q = cs.queue;
        cs.queue = q->next;
        psi_msg_free(q->msg);
        free(q);
    }
    while (cs.calls) {
        out_call *c = cs.calls;
        cs.calls = c->next;
        for (int i = 0; i < c->ntargets; i++) free(c->targets[i].data);
        free(c->targets);
        free(c->replies);
        free(c->payload);
        free(c);
    }
    for (size_t i = 0; i < REPLY_CACHE; i++) free(cs.cache[i].data);
    memset(cs.cache, 0, sizeof(cs.cache));
    psi_tq_free(cs.tq);
    cs.tq = NULL;
    cs.started = 0;
}

/* Start the executor and hook into the post office (lock held). */
static int do_init(void)
{
    static const char *const rs[] = {"PS_RESEND_MS", NULL};
    long resend;
    int rv;
    if (cs.started) return PS_OK;
    if ((rv = psi_env_long(rs, 1000, 1, 3600000, &resend)) != 0) return rv;
    cs.resend_ms = (uint64_t)resend;
    if (!(cs.tq = psi_tq_new(-1))) return PS_ERR_NOMEM;
    psi_node_set_handler(PSI_MSG_CALL, on_call_msg, NULL);
    psi_node_on_shutdown(calls_shutdown, PSI_SHUTDOWN_APP);
    if ((rv = psi_node_add_view_hook(on_view, NULL)) != 0) return rv;
    cs.stop = 0;
    if (pthread_create(&cs.thread, NULL, executor_main, NULL) != 0) return PS_ERR_SYS;
    cs.started = 1;
    if ((rv = psi_timer_add(TICK_MS, calls_tick, NULL, &cs.timer)) != 0) return rv;
    return PS_OK;
}

/* ---- public API ------------------------------------------------------------------------ */

int ps_register(const char *name, ps_func fn, void *arg)
{
    if (!name || !*name || strlen(name) >= NAME_MAX_LEN || !fn) return PS_ERR_INVAL;
    uint32_t id = psi_name_id(name);
    pthread_mutex_lock(&cs.lock);
    int rv = do_init(); /* this node must now answer CALL messages */
    func *f = (func *)do_find_func(id);
    if (rv != 0) {
        /* reported below */
    } else if (f && strcmp(f->name, name) != 0) {
        PSI_ERROR("function names %s and %s collide: rename one", f->name, name);
        rv = PS_ERR_INVAL;
    } else if (!f && cs.nfuncs == MAX_FUNCS) {
        rv = PS_ERR_TOOBIG;
    } else {
        if (!f) f = &cs.funcs[cs.nfuncs++];
        snprintf(f->name, sizeof(f->name), "%s", name);
        f->id = id;
        f->fn = fn;
        f->arg = arg;
    }
    pthread_mutex_unlock(&cs.lock);
    return rv;
}

static void call_start(void *ctx, int64_t ts)
{
    out_call *c = ctx;
    psi_msg *msgs[PSI_MAX_NODES];
    int n = 0;
    pthread_mutex_lock(&cs.lock);
    c->ts = ts;
    c->started = 1;
    uint64_t now = psi_now_ms();
    for (int i = 0; i < c->ntargets; i++) {
        c->targets[i].sent_ms = now;
        if ((msgs[n] = request_msg(c, c->targets[i].r.node))) n++;
    }
    c->next = cs.calls;
    cs.calls = c;
    int empty = c->ntargets == 0;
    pthread_mutex_unlock(&cs.lock);
    for (int i = 0; i < n; i++) psi_node_send(msgs[i]->hdr.receiver, msgs[i]);
    if (empty) psi_tq_finish(cs.tq, ts, PS_OK);
}

typedef struct call_done {
    void (*fn)(ps_table *t, int64_t ts, int status, void *arg);
    void *arg;
} call_done;

static void on_call_done(void *arg, int64_t ts, int status)
{
    call_done *d = arg;
    d->fn(NULL, ts, status, d->arg);
    free(d);
}

static int64_t submit(const uint32_t *nodes, int n, const char *name, const void *req,
                      size_t len, const ps_task_opts *o)
{
    if (!name || !*name || strlen(name) >= NAME_MAX_LEN || (len && !req)) return PS_ERR_INVAL;
    if (!psi_node_running()) return PS_ERR_STATE;
    out_call *c = calloc(1, sizeof(*c));
    call_done *d = o && o->done ? malloc(sizeof(*d)) : NULL;
    if (!c || (o && o->done && !d) || !(c->targets = calloc((size_t)PSI_MAX(n, 1), sizeof(target))) ||
        (len && !(c->payload = malloc(len)))) {
        if (c) free(c->targets);
        free(c);
        free(d);
        return PS_ERR_NOMEM;
    }
    if (len) memcpy(c->payload, req, len);
    c->len = len;
    c->fid = psi_name_id(name);
    c->ntargets = c->pending = n;
    for (int i = 0; i < n; i++) c->targets[i].r.node = nodes[i];
    if (d) *d = (call_done){o->done, o->arg};
    pthread_mutex_lock(&cs.lock);
    int rv = do_init();
    pthread_mutex_unlock(&cs.lock);
    int64_t ts = rv != 0 ? rv : psi_tq_submit(cs.tq, call_start, c, o ? o->deps : NULL,
                                               o ? o->ndeps : 0, d ? on_call_done : NULL, d);
    if (ts < 0) {
        free(c->targets);
        free(c->payload);
        free(c);
        free(d);
    }
    return ts;
}

int64_t ps_call(uint32_t node, const char *name, const void *req, size_t len,
                const ps_task_opts *opts)
{
    psi_view v;
    if (psi_node_view(&v) != 0) return PS_ERR_NOMEM;
    const psi_node *nd = psi_view_find(&v, node);
    int ok = nd && nd->alive && node != ps_my_id();
    psi_view_free(&v);
    if (!ok) return PS_ERR_NOTFOUND;
    return submit(&node, 1, name, req, len, opts);
}

int64_t ps_call_group(int group, const char *name, const void *req, size_t len,
                      const ps_task_opts *opts)
{
    psi_view v;
    uint32_t ids[PSI_MAX_NODES];
    int n = 0;
    if (group < 1 || group > 7) return PS_ERR_INVAL;
    if (psi_node_view(&v) != 0) return PS_ERR_NOMEM;
    for (uint32_t i = 0; i < v.n; i++)
        if (v.nodes[i].alive && v.nodes[i].alive != PSI_NODE_STANDBY && /* not yet working */
            psi_group_has(group, v.nodes[i].role) && v.nodes[i].id != ps_my_id())
            ids[n++] = v.nodes[i].id;
    psi_view_free(&v);
    return submit(ids, n, name, req, len, opts);
}

int ps_call_wait(int64_t ts, const ps_reply **replies, int *n)
{
    pthread_mutex_lock(&cs.lock);
    psi_tq *q = cs.tq;
    pthread_mutex_unlock(&cs.lock);
    if (!q) return PS_ERR_INVAL;
    int rv = psi_tq_wait(q, ts);
    if (!replies) return rv;
    *replies = NULL;
    if (n) *n = 0;
    pthread_mutex_lock(&cs.lock);
    out_call *c = do_find_call(ts);
    if (c && c->ntargets && !c->replies && (c->replies = malloc((size_t)c->ntargets * sizeof(ps_reply))))
        for (int i = 0; i < c->ntargets; i++) c->replies[i] = c->targets[i].r;
    if (c && c->replies) {
        *replies = c->replies;
        if (n) *n = c->ntargets;
    }
    pthread_mutex_unlock(&cs.lock);
    return rv;
}

void ps_call_release(int64_t ts)
{
    pthread_mutex_lock(&cs.lock);
    for (out_call **pp = &cs.calls; *pp; pp = &(*pp)->next) {
        out_call *c = *pp;
        if (c->ts != ts || c->pending) continue;
        *pp = c->next;
        for (int i = 0; i < c->ntargets; i++) free(c->targets[i].data);
        free(c->targets);
        free(c->replies);
        free(c->payload);
        free(c);
        break;
    }
    pthread_mutex_unlock(&cs.lock);
}
