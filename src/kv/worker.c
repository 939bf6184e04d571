/*
 * worker.c -- the worker half of a table: ps_push, ps_pull, ps_pushpull and
 * their range variants, slicing by the ring, fan-out, merge, resend.
 *
 * A request is prepared on the caller's thread: keys are sorted (route.c's
 * radix sort, with a permutation back to the caller's order when they were
 * not; route.h says why servers need them sorted), push values
 * are gathered in that order, and the task is submitted to the table's task
 * queue.  When the queue starts it, the sorted keys are cut into the ring's
 * segments and grouped per server; each server's keys (and values) are
 * gathered into one reference-counted buffer that every send and resend of
 * that slice borrows, so a resend costs no copy.  Responses scatter pulled
 * values into the caller's buffer; the last one finishes the task.
 *
 * A slice unanswered for PS_RESEND_MS is resent (the server's vector clock
 * makes that safe).  A slice whose server the scheduler declares dead fails
 * its task with PS_ERR_PEER, unless the table is replicated: then its keys
 * are moved to the live heads of their chains (move.c).
 *
 * Lock order: t->lock, then (sending) the node's and the transport's; the
 * window's t->win.lock is a leaf: nothing else is taken while it is held.
 *
 * Never: call the task queue or send with the table lock held; write into
 * the caller's buffer after its task finished.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kv/worker.h"
#include "kv/route.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

#define KV_NODROP (1u << 15) /* internal request flag: skip the drop filters */

typedef struct user_done {
    void (*fn)(ps_table *t, int64_t ts, int status, void *arg);
    void *arg;
    ps_table *t;
} user_done;

/* Slice buffers come from the large-buffer cache (util.h, psi_buf_alloc):
 * a stream of big pushes then reuses the same pages. */
kv_buf *psi_kv_buf_new(size_t len)
{
    kv_buf *b = psi_buf_alloc(sizeof(*b) + len);
    if (b) atomic_init(&b->refs, 1);
    return b;
}

void psi_kv_buf_unref(void *arg)
{
    kv_buf *b = arg;
    if (b && atomic_fetch_sub(&b->refs, 1) == 1) psi_buf_free(b);
}

static void window_release(kv_req *r);

static void req_free(kv_req *r)
{
    if (!r) return;
    window_release(r);
    for (int i = 0; i < r->nslices; i++) {
        free(r->slices[i].runs);
        psi_kv_buf_unref(r->slices[i].buf);
        psi_msg_free(r->slices[i].resp);
    }
    free(r->slices);
    psi_kv_zcopy_req_free(r);
    free(r->keys); /* only move.c's (malloc): req_prepare released its own */
    free(r->vals);
    if (r->order) psi_route_release(r->order);
    else psi_buf_free(r->perm);
    free(r->lens);
    free(r->voffs);
    psi_chain_free(r->chain);
    free(r);
}

/* ---- preparing a request (caller's thread) --------------------------------- */

static int is_sorted(const uint64_t *k, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (k[i] < k[i - 1]) return 0;
    return 1;
}

/* Sort keys into r->keys, setting r->perm when the order changed.  Both
 * come from the large-buffer cache (psi_buf_alloc): fresh pages for every
 * request cost more than the sort (req_prepare releases r->keys, req_free
 * r->perm). */
static int sort_keys(kv_req *r, const uint64_t *keys, int mutable)
{
    size_t n = r->n;
    if (is_sorted(keys, n)) {
        if (!(r->keys = psi_buf_alloc(PSI_MAX(n, 1) * sizeof(uint64_t)))) return PS_ERR_NOMEM;
        if (n) memcpy(r->keys, keys, n * sizeof(uint64_t));
        return PS_OK;
    }
    /* a list sorted before: its order is read in place, not copied */
    if (!mutable && (r->order = psi_route_share(keys, n))) {
        r->keys = r->order->sorted;
        r->perm = r->order->perm;
        return PS_OK;
    }
    if (!(r->keys = psi_buf_alloc(PSI_MAX(n, 1) * sizeof(uint64_t)))) return PS_ERR_NOMEM;
    if (!(r->perm = psi_buf_alloc(n * sizeof(size_t)))) return PS_ERR_NOMEM;
    /* radix, or the memo of a list sorted before: route.h says why a sort */
    return psi_route_sort_cached(r->t, keys, n, r->keys, r->perm);
}

int psi_kv_check_unique(const kv_req *r)
{
    for (size_t i = 1; i < r->n; i++)
        if (r->keys[i] == r->keys[i - 1]) {
            PSI_ERROR("table %s: key %llu appears twice in one push", r->t->name,
                      (unsigned long long)r->keys[i]);
            return PS_ERR_INVAL;
        }
    return PS_OK;
}

/* sigmod: add `v` to the key's residual; returns 1 (and moves the residual
 * into `out`) once some component exceeds the threshold. */
static int do_sigmod(ps_table *t, uint64_t key, const uint8_t *v, uint8_t *out)
{
    int inserted, big = 0, w = t->opts.width;
    void *res = psi_store_upsert(t->sigmod_resid, key, &inserted);
    if (!res) { /* out of memory: send it as it is */
        memcpy(out, v, t->vbytes);
        return 1;
    }
    for (int j = 0; j < w; j++) {
        double x;
        if (t->opts.dtype == PS_F32) x = ((float *)res)[j] += ((const float *)(const void *)v)[j];
        else x = ((double *)res)[j] += ((const double *)(const void *)v)[j];
        big |= x > t->sigmod || x < -t->sigmod;
    }
    if (!big) return 0;
    memcpy(out, res, t->vbytes);
    memset(res, 0, t->vbytes);
    return 1;
}

/* The user's keep function and sigmod drop (key, value) pairs of a push
 * before it is sliced: r->keys/r->vals become the survivors, in key order. */
static int drop_filters(kv_req *r, const uint8_t *push)
{
    ps_table *t = r->t;
    size_t vb = t->vbytes, m = 0;
    uint8_t *vals = malloc(PSI_MAX(r->n * vb, 1));
    if (!vals) return PS_ERR_NOMEM;
    pthread_mutex_lock(&t->lock);
    for (size_t i = 0; i < r->n; i++) {
        const uint8_t *v = push + (r->perm ? r->perm[i] : i) * vb;
        if (t->keep && !t->keep(t->keep_arg, r->keys[i], v)) continue;
        if (t->sigmod > 0 ? !do_sigmod(t, r->keys[i], v, vals + m * vb) : 0) continue;
        if (t->sigmod <= 0) memcpy(vals + m * vb, v, vb);
        r->keys[m++] = r->keys[i];
    }
    t->traffic.keys_filtered += r->n - m;
    pthread_mutex_unlock(&t->lock);
    psi_buf_free(r->perm);
    r->perm = NULL;
    r->n = m;
    r->vals = vals;
    return PS_OK;
}

static int slice_keys(kv_req *r, const uint8_t *uvals);

static kv_req *req_prepare(ps_table *t, unsigned flags, const uint64_t *keys, size_t n,
                           const uint32_t *lens, const void *push, void *pull, int zc, int *rv)
{
    kv_req *r = calloc(1, sizeof(*r));
    *rv = PS_ERR_NOMEM;
    if (!r) return NULL;
    r->t = t;
    r->flags = flags;
    r->n = n;
    r->zc_vals = zc ? push : NULL; /* zcopy.c decides per slice */
    if (t->var) r->vout = pull;
    else r->out = pull;
    /* KV_NODROP makes flags differ from a plain push: ps_push_flush skips the drops */
    int drops = flags == PSI_F_PUSH && !t->var && (t->keep || t->sigmod > 0);
    if ((*rv = sort_keys(r, keys, drops)) == 0 && (flags & PSI_F_PUSH) &&
        (t->var || !r->order || !r->order->unique)) /* a shared order knows */
        *rv = t->var ? psi_kv_var_prepare(r, lens, push) : psi_kv_check_unique(r);
    r->flags &= ~KV_NODROP;
    if (*rv == 0 && drops) *rv = drop_filters(r, push);
    if (*rv == 0) {
        pthread_mutex_lock(&t->lock);
        if ((*rv = psi_kv_ring(t)) == 0) *rv = slice_keys(r, drops ? r->vals : push);
        pthread_mutex_unlock(&t->lock);
    }
    if (!r->order) psi_buf_free(r->keys); /* sort_keys's: slices and runs say where every key went */
    r->keys = NULL;
    if (*rv != 0) {
        req_free(r);
        return NULL;
    }
    return r;
}

/* ---- slicing (when the task starts) ----------------------------------------------- */

static kv_slice *slice_for(kv_req *r, uint32_t server)
{
    for (int i = 0; i < r->nslices; i++)
        if (r->slices[i].server == server) return &r->slices[i];
    kv_slice *s = &r->slices[r->nslices++];
    memset(s, 0, sizeof(*s));
    s->server = s->origin = server;
    return s;
}

static int add_run(kv_slice *s, size_t begin, size_t end)
{
    kv_run *runs = realloc(s->runs, (s->nruns + 1) * sizeof(*runs));
    if (!runs) return PS_ERR_NOMEM;
    s->runs = runs;
    s->runs[s->nruns++] = (kv_run){begin, end};
    s->nkeys += end - begin;
    return PS_OK;
}

/* Where a fixed-width slice's aux (a push's kv_push_aux, a BSP pull's
 * iteration) lives: right after its values, so the payload is one region. */
uint8_t *psi_kv_slice_aux(const kv_req *r, const kv_slice *s)
{
    size_t vb = (r->flags & PSI_F_PUSH) && !s->ext ? r->t->vbytes : 0;
    return s->buf->data + s->nkeys * (8 + vb);
}

const uint8_t *psi_kv_slice_vals(const kv_req *r, const kv_slice *s)
{
    (void)r;
    return s->ext ? s->ext : s->buf->data + s->nkeys * 8;
}

size_t psi_kv_aux_len(const kv_req *r) { return (r->flags & PSI_F_PUSH) ? PSI_PUSH_AUX : 8; }

/* Write a slice's aux: a push's sequence number, origin and low watermark
 * `lo`, or the iteration a BSP pull waits for. */
static void put_aux(const kv_req *r, const kv_slice *s, uint64_t lo, uint8_t *out)
{
    if (r->flags & PSI_F_PUSH)
        psi_kv_aux_put(out, &(kv_push_aux){.seq = s->seq, .origin = s->origin, .lo = lo,
                                            .via = s->via});
    else psi_put_u64(out, s->iter);
}

/* dst[i] = src[perm[i]] for n values of vb bytes; the common widths get
 * fixed-size copies (a call to memcpy per value cost more than the sort). */
static void gather(uint8_t *dst, const uint8_t *src, const size_t *perm, size_t n, size_t vb)
{
    switch (vb) {
    case 4:
        for (size_t i = 0; i < n; i++) memcpy(dst + i * 4, src + perm[i] * 4, 4);
        break;
    case 8:
        for (size_t i = 0; i < n; i++) memcpy(dst + i * 8, src + perm[i] * 8, 8);
        break;
    default:
        for (size_t i = 0; i < n; i++) memcpy(dst + i * vb, src + perm[i] * vb, vb);
    }
}

/* dst[perm[i]] = src[i], the other way round. */
static void scatter(uint8_t *dst, const uint8_t *src, const size_t *perm, size_t n, size_t vb)
{
    switch (vb) {
    case 4:
        for (size_t i = 0; i < n; i++) memcpy(dst + perm[i] * 4, src + i * 4, 4);
        break;
    case 8:
        for (size_t i = 0; i < n; i++) memcpy(dst + perm[i] * 8, src + i * 8, 8);
        break;
    default:
        for (size_t i = 0; i < n; i++) memcpy(dst + perm[i] * vb, src + i * vb, vb);
    }
}

/* Gather one slice's keys (and the caller's values, `uvals`, through the
 * permutation) into its shared buffer: the only copy a push makes. */
static int fill_buf(kv_req *r, kv_slice *s, const uint8_t *uvals)
{
    if (r->t->var) {
        if (!(s->buf = psi_kv_buf_new(psi_kv_var_buf_len(r, s)))) return PS_ERR_NOMEM;
        psi_kv_var_fill(r, s);
        return PS_OK;
    }
    size_t vb = (r->flags & PSI_F_PUSH) ? r->t->vbytes : 0;
    /* keys, values, then the aux (psi_kv_slice_aux): one contiguous region;
     * a zero-copy slice leaves its values where they are (zcopy.c) */
    if (vb && (s->ext = psi_kv_zcopy_vals(r, s, uvals))) vb = 0;
    if (!(s->buf = psi_kv_buf_new(s->nkeys * (8 + vb) + psi_kv_aux_len(r)))) return PS_ERR_NOMEM;
    uint8_t *k = s->buf->data, *v = k + s->nkeys * 8;
    for (size_t i = 0; i < s->nruns; i++) {
        size_t len = s->runs[i].end - s->runs[i].begin;
        memcpy(k, r->keys + s->runs[i].begin, len * 8);
        k += len * 8;
        if (vb && !r->perm) {
            memcpy(v, uvals + s->runs[i].begin * vb, len * vb);
        } else if (vb) {
            gather(v, uvals, r->perm + s->runs[i].begin, len, vb);
        }
        v += len * vb;
    }
    return PS_OK;
}

/* A dense table's range [lo, hi) is cut into one contiguous part per
 * server, in rank order (the ring would put small consecutive keys on one
 * server).  Returns the number of slices, or PS_ERR_INVAL for a key
 * outside the range. */
static long dense_slices(const ps_table *t, const uint64_t *keys, size_t n, psi_ring_slice *ss)
{
    uint64_t lo = t->opts.dense_lo, len = t->opts.dense_hi - lo;
    size_t ns = 0, begin = 0;
    if (n && (keys[0] < lo || keys[n - 1] >= t->opts.dense_hi)) {
        PSI_ERROR("table %s: key outside the dense range [%llu, %llu)", t->name,
                  (unsigned long long)lo, (unsigned long long)t->opts.dense_hi);
        return PS_ERR_INVAL;
    }
    for (int p = 0; p < t->nservers && begin < n; p++) {
        uint64_t part_hi = lo + (uint64_t)((unsigned __int128)len * (unsigned)(p + 1) /
                                           (unsigned)t->nservers);
        size_t end = p + 1 == t->nservers ? n : psi_search_u64(keys, 0, n, part_hi, 0);
        if (end > begin) ss[ns++] = (psi_ring_slice){0, t->servers[p], begin, end};
        begin = end;
    }
    return (long)ns;
}

/* BSP, replicated: for every dead server, an empty part of this iteration
 * counted for it, to every live server.  A worker that sent its push of
 * this iteration to the dead server before learning of the death moves it
 * to the live ones instead (psi_kv_worker_on_view); either way every live
 * server gets one part per worker per dead server, and can tell when the
 * dead server's share of an iteration is complete (bsp.c). */
static void add_dead_parts(kv_req *r)
{
    ps_table *t = r->t;
    for (int x = 0; t->dead && x < t->nservers; x++) {
        if (!t->dead[t->servers[x]]) continue;
        for (int h = 0; h < t->nservers; h++) {
            if (t->dead[t->servers[h]]) continue;
            kv_slice *s = &r->slices[r->nslices++];
            memset(s, 0, sizeof(*s));
            s->server = t->servers[h];
            s->origin = s->via = t->servers[x];
        }
    }
}

/* A slice whose request or answer cannot fit the receivers' size cap
 * (PS_MAX_MSG_BYTES) would be dropped there and resent forever: refuse the
 * whole task now, with PS_ERR_TOOBIG.  A push that goes as a train of
 * fragments (train.c) only needs its keys to fit.  Fixed-width tables. */
static int check_size(const kv_req *r)
{
    const ps_table *t = r->t;
    uint64_t cap = psi_node_max_payload();
    if (t->var) return PS_OK;
    for (int i = 0; i < r->nslices; i++) {
        const kv_slice *s = &r->slices[i];
        uint64_t keys = (uint64_t)s->nkeys * 8, vals = (uint64_t)s->nkeys * t->vbytes;
        uint64_t aux = psi_kv_aux_len(r), req = keys + aux, ans = vals + aux;
        if ((r->flags & PSI_F_PUSH) && !psi_kv_train_size(t, vals, keys)) req += vals;
        uint64_t need = PSI_MAX(req, (r->flags & PSI_F_PULL) ? ans : 0);
        if (need > cap) {
            PSI_ERROR("table %s: %zu keys for node %u need a %llu-byte message, over "
                      "PS_MAX_MSG_BYTES (%llu): split the request, or raise the cap on every "
                      "node", t->name, s->nkeys, s->server, (unsigned long long)need,
                      (unsigned long long)cap);
            return PS_ERR_TOOBIG;
        }
    }
    return PS_OK;
}

/* Cut the sorted keys into per-server slices and fill their buffers
 * (lock held; runs on the caller's thread, so `uvals` is still valid);
 * r->keys stays (psi_kv_slice frees it). */
static int slice_keys(kv_req *r, const uint8_t *uvals)
{
    ps_table *t = r->t;
    size_t nseg = psi_ring_nsegs(t->ring);
    psi_ring_slice *ss = malloc(PSI_MAX(PSI_MIN(nseg, r->n), 1) * sizeof(*ss));
    int rv = ss ? PS_OK : PS_ERR_NOMEM;
    size_t ns = 0;
    if (ss && t->opts.dense_hi > t->opts.dense_lo) {
        long d = dense_slices(t, r->keys, r->n, ss);
        if (d < 0) rv = (int)d;
        else ns = (size_t)d;
    } else if (ss) {
        ns = psi_ring_slice_keys(t->ring, r->keys, r->n, ss, PSI_MIN(nseg, r->n));
    }
    int every = t->opts.bsp && (r->flags & PSI_F_PUSH); /* BSP: one push per server */
    size_t cap = every ? ns + (size_t)t->nservers * (size_t)(t->nservers + 1) : ns;
    if (rv == 0 && !(r->slices = calloc(PSI_MAX(cap, 1), sizeof(kv_slice)))) rv = PS_ERR_NOMEM;
    for (size_t i = 0; rv == 0 && i < ns; i++) {
        uint32_t owner = t->k ? psi_kv_chain(t, ss[i].seg)[0] : ss[i].owner;
        if (owner >= PSI_MAX_NODES || (t->dead && t->dead[owner])) {
            PSI_ERROR("table %s: the server of key %llu is dead%s", t->name,
                      (unsigned long long)r->keys[ss[i].begin],
                      t->k ? " and so are its backups" : " (the table has no replicas)");
            rv = PS_ERR_PEER;
        } else {
            rv = add_run(slice_for(r, owner), ss[i].begin, ss[i].end);
        }
    }
    for (int i = 0; rv == 0 && every && i < t->nservers; i++)
        if (!t->dead || !t->dead[t->servers[i]]) slice_for(r, t->servers[i]);
    if (rv == 0 && every && t->k) add_dead_parts(r);
    if (rv == 0) rv = check_size(r);
    for (int i = 0; rv == 0 && i < r->nslices; i++) rv = fill_buf(r, &r->slices[i], uvals);
    free(ss);
    free(r->vals); /* variable-length values: now in the slices' buffers */
    r->vals = NULL;
    r->pending = r->nslices;
    return rv;
}

/* move.c's slicing of its own (malloc'ed) sorted keys, which it frees. */
int psi_kv_slice(kv_req *r, const uint8_t *uvals)
{
    int rv = slice_keys(r, uvals);
    free(r->keys); /* slices and runs say where every key went */
    r->keys = NULL;
    return rv;
}

/* A message for one (re)send of a slice, borrowing its buffer. */
psi_msg *psi_kv_slice_msg(const kv_req *r, kv_slice *s)
{
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);
    if (!m) return NULL;
    psi_hdr *h = &m->hdr;
    h->flags = (uint16_t)(PSI_F_REQUEST | (r->flags & (PSI_F_PUSH | PSI_F_PULL)));
    h->table = r->t->id;
    h->timestamp = (uint64_t)r->ts;
    h->key_count = s->nkeys;
    if (s->nkeys) { /* the answer echoes the range: it names the slice */
        h->key_lo = ((const uint64_t *)(const void *)s->buf->data)[0];
        h->key_hi = ((const uint64_t *)(const void *)s->buf->data)[s->nkeys - 1];
    }
    m->seg[PSI_SEG_KEYS] = s->buf->data;
    h->seg_len[PSI_SEG_KEYS] = s->nkeys * 8;
    m->borrowed = 1u << PSI_SEG_KEYS;
    if (r->t->var) {
        psi_kv_var_segments(r, s, m);
    } else if (r->flags & PSI_F_PUSH) {
        m->seg[PSI_SEG_VALS] = (void *)psi_kv_slice_vals(r, s);
        h->seg_len[PSI_SEG_VALS] = s->nkeys * r->t->vbytes;
        m->borrowed |= 1u << PSI_SEG_VALS;
    }
    if (r->t->var && ((r->flags & PSI_F_PUSH) || r->t->opts.bsp)) {
        uint8_t aux[PSI_PUSH_AUX];
        put_aux(r, s, s->seq - 1, aux);
        if (psi_msg_set_seg(m, PSI_SEG_AUX, aux, psi_kv_aux_len(r)) != 0) {
            psi_msg_free(m);
            return NULL;
        }
    } else if ((r->flags & PSI_F_PUSH) || r->t->opts.bsp) {
        m->seg[PSI_SEG_AUX] = psi_kv_slice_aux(r, s); /* written once, in kv_start */
        h->seg_len[PSI_SEG_AUX] = psi_kv_aux_len(r);
        m->borrowed |= 1u << PSI_SEG_AUX;
    }
    atomic_fetch_add(&s->buf->refs, 1);
    m->on_free = psi_kv_buf_unref;
    m->on_free_arg = s->buf;
    psi_kv_count_sent(r->t, m, 0);
    if (psi_chain_encode(r->chain ? r->chain : r->t->chain, s->server, m) != 0) {
        psi_msg_free(m); /* resent, encoded again, on the next tick */
        return NULL;
    }
    psi_kv_count_sent(r->t, m, 1);
    if (psi_kv_train_wanted(r->t, m)) m->hdr.flags |= PSI_F_TRAIN; /* psi_kv_send splits it */
    return m;
}

/* ---- task life cycle ---------------------------------------------------------- */

static void do_link(ps_table *t, kv_req *r)
{
    r->next = t->reqs;
    t->reqs = r;
}

void psi_kv_unlink(ps_table *t, kv_req *r)
{
    for (kv_req **pp = &t->reqs; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            return;
        }
}

void psi_kv_finish(kv_req *r, int status)
{
    psi_tq *q = r->t->tq;
    int64_t ts = r->ts;
    if (status == 0 && r->vout) status = psi_kv_var_assemble(r);
    if (psi_kv_zcopy_linger(r, status)) return; /* a message still reads the caller's values */
    req_free(r);
    psi_tq_finish(q, ts, status);
}

static void send_slices(kv_req *r, psi_msg **msgs, uint32_t *to, int n)
{
    (void)r;
    for (int i = 0; i < n; i++)
        if (msgs[i]) psi_kv_send(to[i], msgs[i]);
}

/* The low watermark of pushes counted for `origin`: below the oldest one
 * still unacknowledged (lock held). */
uint64_t psi_kv_low_mark(ps_table *t, uint32_t origin, uint64_t seq)
{
    uint64_t lo = seq;
    for (kv_req *r = t->reqs; r; r = r->next)
        for (int i = 0; (r->flags & PSI_F_PUSH) && i < r->nslices; i++)
            if (!r->slices[i].done && r->slices[i].origin == origin && r->slices[i].seq < lo)
                lo = r->slices[i].seq;
    return lo - 1;
}

static void kv_start(void *ctx, int64_t ts)
{
    kv_req *r = ctx;
    ps_table *t = r->t;
    r->ts = ts;
    if (r->n == 0 && !(t->opts.bsp && (r->flags & PSI_F_PUSH))) {
        psi_kv_finish(r, PS_OK);
        return;
    }
    pthread_mutex_lock(&t->lock);
    int rv = psi_kv_redirect(r);
    if (rv != 0) {
        pthread_mutex_unlock(&t->lock);
        psi_kv_finish(r, rv);
        return;
    }
    for (int i = 0; i < r->nslices; i++) { /* sequence numbers in send order */
        kv_slice *s = &r->slices[i];
        if (s->server >= PSI_MAX_NODES) continue;
        if (s->via) { /* a dead server's part (add_dead_parts): one number for all */
            for (int j = 0; j < i && !s->seq; j++)
                if (r->slices[j].via == s->via) s->seq = r->slices[j].seq;
            if (!s->seq) s->seq = ++t->push_seq[s->origin];
            s->iter = s->seq;
        } else {
            if (r->flags & PSI_F_PUSH) s->seq = ++t->push_seq[s->server];
            s->iter = t->push_seq[s->server];
        }
        if (!t->var) put_aux(r, s, t->k ? psi_kv_low_mark(t, s->origin, s->seq) : s->seq - 1,
                             psi_kv_slice_aux(r, s));
    }
    int n = r->nslices;
    size_t cnt = n > 0 ? (size_t)n : 1;
    psi_msg **msgs = calloc(cnt, sizeof(*msgs));
    uint32_t *to = calloc(cnt, sizeof(*to));
    uint64_t now = psi_kv_now();
    for (int i = 0; msgs && to && i < n; i++) {
        msgs[i] = psi_kv_slice_msg(r, &r->slices[i]);
        to[i] = r->slices[i].server;
        r->slices[i].sent_ms = now;
    }
    do_link(t, r); /* from here on, responses and the timer may psi_kv_finish it */
    pthread_mutex_unlock(&t->lock);
    if (msgs && to) send_slices(r, msgs, to, n);
    free(msgs);
    free(to);
}

static void on_done(void *arg, int64_t ts, int status)
{
    user_done *u = arg;
    u->fn(u->t, ts, status, u->arg);
    free(u);
}

/* The chain of a per-request filter override: stateless filters only
 * (keycache and sigmod keep state per table). */
static int request_chain(ps_table *t, const char *spec, psi_chain **out)
{
    double sigmod;
    const char *s = strcmp(spec, "none") == 0 ? "" : spec;
    int rv = psi_chain_new(s, t->opts.dtype, out, &sigmod);
    if (rv == 0 && (sigmod > 0 || strstr(s, "keycache"))) {
        PSI_ERROR("table %s: a request's filters cannot use keycache or sigmod", t->name);
        psi_chain_free(*out);
        *out = NULL;
        rv = PS_ERR_INVAL;
    }
    return rv;
}

/*
 * Backpressure.  A request holds its bytes (keys, values pushed, values to
 * be pulled) of the table's window from submit until it is freed; a submit
 * that would pass the window waits for earlier requests to finish, so a
 * worker that pushes faster than the servers apply holds a bounded amount
 * of memory and queues a bounded amount at them.  A request larger than
 * the window alone still goes (when nothing else is in flight).  The
 * transports' I/O threads never wait (answers come through them), and no
 * one waits once this node is out of the cluster.
 */
static uint64_t request_bytes(const ps_table *t, unsigned flags, size_t n)
{
    uint64_t per = 8 + ((flags & PSI_F_PUSH) ? t->vbytes : 0) + ((flags & PSI_F_PULL) ? t->vbytes : 0);
    return (uint64_t)n * per;
}

static void window_acquire(kv_req *r, uint64_t bytes)
{
    ps_table *t = r->t;
    uint64_t win = psi_kv_window_bytes();
    int may_wait = win && !psi_thread_is_io();
    pthread_mutex_lock(&t->win.lock);
    while (may_wait && t->win.bytes && t->win.bytes + bytes > win) {
        struct timespec dl = psi_deadline_in(100);
        pthread_cond_timedwait(&t->win.cv, &t->win.lock, &dl);
        pthread_mutex_unlock(&t->win.lock); /* a leaf lock: ask the node without it */
        may_wait = !psi_kv_fatal();
        pthread_mutex_lock(&t->win.lock);
    }
    t->win.bytes += bytes;
    r->wbytes = bytes;
    pthread_mutex_unlock(&t->win.lock);
}

static void window_release(kv_req *r)
{
    if (!r->wbytes) return;
    ps_table *t = r->t;
    pthread_mutex_lock(&t->win.lock);
    t->win.bytes -= r->wbytes;
    r->wbytes = 0;
    pthread_cond_broadcast(&t->win.cv);
    pthread_mutex_unlock(&t->win.lock);
}

/* var_api: called through ps_push_var / ps_pull_var. */
static int64_t submit(ps_table *t, unsigned flags, int var_api, const uint64_t *keys, size_t n,
                      const uint32_t *lens, const void *push, void *pull,
                      const ps_task_opts *o)
{
    int rv;
    if (!t || (n && !keys) || ((flags & PSI_F_PUSH) && n && (!push || (var_api && !lens))) ||
        ((flags & PSI_F_PULL) && !pull && (n || var_api)))
        return PS_ERR_INVAL;
    if (t->var != var_api) {
        PSI_ERROR("table %s: use ps_push_var/ps_pull_var on variable-length tables (width 0) "
                  "and ps_push/ps_pull on the others", t->name);
        return PS_ERR_INVAL;
    }
    if (!t->tq) {
        PSI_ERROR("table %s: only workers push and pull", t->name);
        return PS_ERR_STATE;
    }
    if ((rv = psi_kv_fatal()) != 0) return rv; /* out of the cluster: no answer can come */
    /* zero-copy: not when a pushpull's answers land in the array being sent */
    int zc = o && o->zero_copy && !o->filters && (const void *)pull != push;
    kv_req *r = req_prepare(t, flags, keys, n, lens, push, pull, zc, &rv);
    if (!r) return rv;
    if (o && o->filters && (rv = request_chain(t, o->filters, &r->chain)) != 0) {
        req_free(r);
        return rv;
    }
    user_done *u = NULL;
    if (o && o->done) {
        if (!(u = malloc(sizeof(*u)))) {
            req_free(r);
            return PS_ERR_NOMEM;
        }
        *u = (user_done){o->done, o->arg, t};
    }
    window_acquire(r, request_bytes(t, flags, n));
    int64_t ts = psi_tq_submit(t->tq, kv_start, r, o ? o->deps : NULL, o ? o->ndeps : 0,
                               u ? on_done : NULL, u);
    if (ts < 0) {
        req_free(r);
        free(u);
    }
    return ts;
}

int64_t ps_push(ps_table *t, const uint64_t *keys, size_t n, const void *vals,
                const ps_task_opts *opts)
{
    return submit(t, PSI_F_PUSH, 0, keys, n, NULL, vals, NULL, opts);
}

typedef struct resid_list {
    uint64_t *keys;
    uint8_t *vals;
    size_t n, cap, vb;
} resid_list;

static int collect_resid(void *arg, uint64_t key, void *block)
{
    resid_list *l = arg;
    static const uint8_t zero[64];
    if (l->vb <= sizeof(zero) && !memcmp(block, zero, l->vb)) return 0;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 1024;
        uint64_t *k = realloc(l->keys, nc * 8);
        if (k) l->keys = k;
        uint8_t *v = realloc(l->vals, nc * l->vb);
        if (v) l->vals = v;
        if (!k || !v) return 1;
        l->cap = nc;
    }
    l->keys[l->n] = key;
    memcpy(l->vals + l->n * l->vb, block, l->vb);
    memset(block, 0, l->vb);
    l->n++;
    return 0;
}

int64_t ps_push_flush(ps_table *t, const ps_task_opts *opts)
{
    if (!t) return PS_ERR_INVAL;
    resid_list l = {.vb = t->vbytes};
    pthread_mutex_lock(&t->lock);
    if (t->sigmod_resid) psi_store_foreach(t->sigmod_resid, collect_resid, &l);
    pthread_mutex_unlock(&t->lock);
    static const uint8_t none[1];
    const void *vals = l.n ? (const void *)l.vals : (const void *)none;
    int64_t ts = submit(t, PSI_F_PUSH | KV_NODROP, 0, l.keys, l.n, NULL, vals, NULL, opts);
    free(l.keys);
    free(l.vals);
    return ts;
}

int64_t ps_pull(ps_table *t, const uint64_t *keys, size_t n, void *vals, const ps_task_opts *opts)
{
    return submit(t, PSI_F_PULL, 0, keys, n, NULL, NULL, vals, opts);
}

int64_t ps_pushpull(ps_table *t, const uint64_t *keys, size_t n, const void *push_vals,
                    void *pull_vals, const ps_task_opts *opts)
{
    return submit(t, PSI_F_PUSH | PSI_F_PULL, 0, keys, n, NULL, push_vals, pull_vals, opts);
}

static int64_t submit_range(ps_table *t, unsigned flags, uint64_t lo, uint64_t hi,
                            const void *push, void *pull, const ps_task_opts *o)
{
    if (hi <= lo || hi - lo > (1ull << 32)) return PS_ERR_INVAL;
    size_t n = (size_t)(hi - lo);
    uint64_t *keys = malloc(n * sizeof(*keys));
    if (!keys) return PS_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) keys[i] = lo + i;
    int64_t ts = submit(t, flags, 0, keys, n, NULL, push, pull, o);
    free(keys);
    return ts;
}

int64_t ps_push_range(ps_table *t, uint64_t lo, uint64_t hi, const void *vals,
                      const ps_task_opts *opts)
{
    return submit_range(t, PSI_F_PUSH, lo, hi, vals, NULL, opts);
}

int64_t ps_pull_range(ps_table *t, uint64_t lo, uint64_t hi, void *vals,
                      const ps_task_opts *opts)
{
    return submit_range(t, PSI_F_PULL, lo, hi, NULL, vals, opts);
}

int64_t ps_push_var(ps_table *t, const uint64_t *keys, size_t n, const uint32_t *lens,
                    const void *vals, const ps_task_opts *opts)
{
    return submit(t, PSI_F_PUSH, 1, keys, n, lens, vals, NULL, opts);
}

int64_t ps_pull_var(ps_table *t, const uint64_t *keys, size_t n, ps_var_vals *out,
                    const ps_task_opts *opts)
{
    if (out) memset(out, 0, sizeof(*out));
    return submit(t, PSI_F_PULL, 1, keys, n, NULL, NULL, out, opts);
}

void ps_var_free(ps_var_vals *v)
{
    if (!v) return;
    free(v->lens);
    free(v->offs);
    free(v->vals);
    memset(v, 0, sizeof(*v));
}

int ps_wait(ps_table *t, int64_t ts)
{
    if (!t || !t->tq) return PS_ERR_INVAL;
    return psi_tq_wait(t->tq, ts);
}

int ps_wait_all(ps_table *t)
{
    if (!t || !t->tq) return PS_ERR_INVAL;
    return psi_tq_wait_all(t->tq);
}

/* ---- responses, resends, deaths (I/O and timer threads) ----------------------------- */

static kv_req *do_find(ps_table *t, int64_t ts)
{
    for (kv_req *r = t->reqs; r; r = r->next)
        if (r->ts == ts) return r;
    return NULL;
}

static int do_scatter(kv_req *r, kv_slice *s, const psi_msg *m)
{
    size_t vb = r->t->vbytes;
    if (m->hdr.seg_len[PSI_SEG_VALS] != s->nkeys * vb) return PS_ERR_PROTO;
    const uint8_t *src = m->seg[PSI_SEG_VALS];
    for (size_t i = 0; i < s->nruns; i++) {
        size_t b = s->runs[i].begin, e = s->runs[i].end;
        if (!r->perm) {
            if (src != r->out + b * vb) /* else received in place (zcopy.c) */
                memcpy(r->out + b * vb, src, (e - b) * vb);
            src += (e - b) * vb;
            continue;
        }
        scatter(r->out, src, r->perm + b, e - b, vb);
        src += (e - b) * vb;
    }
    return PS_OK;
}

/* Mark slice `s` answered with `status`; returns 1 when the request is done. */
int psi_kv_slice_done(kv_req *r, kv_slice *s, int status)
{
    if (s->done) return 0;
    s->done = 1;
    if (status != 0 && r->status == 0) r->status = status;
    return --r->pending == 0;
}

/* Whether answer `m` names slice `s`: by its first and last key and, when
 * it echoes a push's aux, by that push's sequence number and "via". */
static int slice_is(const kv_slice *s, const psi_msg *m)
{
    const psi_hdr *h = &m->hdr;
    const uint64_t *k = (const uint64_t *)(const void *)s->buf->data;
    if (s->nkeys ? h->key_lo != k[0] || h->key_hi != k[s->nkeys - 1]
                 : h->key_lo != 0 || h->key_hi != 0)
        return 0;
    if (h->seg_len[PSI_SEG_AUX] != PSI_PUSH_AUX || !s->seq) return 1;
    kv_push_aux a;
    psi_kv_aux_get(m->seg[PSI_SEG_AUX], &a);
    return a.seq == s->seq && a.via == s->via;
}

void psi_kv_worker_on_response(ps_table *t, psi_msg *m)
{
    pthread_mutex_lock(&t->lock);
    kv_req *r = do_find(t, (int64_t)m->hdr.timestamp);
    kv_slice *s = NULL;
    for (int i = 0; r && i < r->nslices && !s; i++)
        if (!r->slices[i].done && r->slices[i].server == m->hdr.sender &&
            slice_is(&r->slices[i], m))
            s = &r->slices[i];
    if (s && !psi_kv_zcopy_answer_ok(r, s, m)) s = NULL; /* another answer is being placed */
    int complete = 0, nmoved = 0;
    psi_msg *again = NULL, *moved[64];
    uint32_t moved_to[64];
    if (s && t->k && (int)m->hdr.arg == PSI_ERR_MOVED) {
        /* the server handed these keys over (a server joined): send them by
         * the chains of its view, now if this node has it, else when it comes */
        s->moved = PSI_MAX(m->hdr.epoch, 1);
        if (t->eff_epoch >= s->moved)
            complete = psi_kv_reroute(r, (int)(s - r->slices), moved, moved_to, &nmoved, 64);
        s = NULL; /* r->slices may have moved */
        if (complete) psi_kv_unlink(t, r);
    } else if (s && !s->done && (int)m->hdr.arg == PSI_ERR_KEYCACHE_MISS) {
        /* the server lost the key lists we sent it: send this one whole */
        psi_chain_forget_peer(t->chain, s->server);
        s->sent_ms = psi_kv_now();
        again = psi_kv_slice_msg(r, s);
    } else if (s && !s->done && psi_kv_decode(t, m) == 0) {
        int st = (int)m->hdr.arg;
        if (st == 0 && (r->flags & PSI_F_PULL) && t->var) {
            if ((st = psi_kv_var_check_answer(r, s, m)) == 0) {
                s->resp = m; /* assembled when every slice answered */
                m = NULL;
            }
        } else if (st == 0 && (r->flags & PSI_F_PULL)) {
            st = do_scatter(r, s, m);
        }
        if (st != 0)
            PSI_WARN("table %s: task %lld failed on node %u: %s", t->name,
                     (long long)r->ts, m->hdr.sender, ps_strerror(st));
        complete = psi_kv_slice_done(r, s, st);
        if (complete) psi_kv_unlink(t, r);
    }
    uint32_t to = s ? s->server : 0;
    pthread_mutex_unlock(&t->lock);
    psi_msg_free(m);
    if (again) psi_kv_send(to, again);
    for (int i = 0; i < nmoved; i++) psi_kv_send(moved_to[i], moved[i]);
    if (complete) psi_kv_finish(r, r->status);
}

/* This node is out of the cluster (declared dead, cut off, the scheduler
 * gone): no answer can come, so every outstanding request fails with `err`
 * instead of waiting and resending forever. */
static void fail_all(ps_table *t, int err)
{
    kv_req *done[64];
    int n;
    do {
        n = 0;
        pthread_mutex_lock(&t->lock);
        for (kv_req *r = t->reqs, *next; r && n < 64; r = next) {
            next = r->next;
            int complete = 0;
            for (int i = 0; i < r->nslices; i++) complete |= psi_kv_slice_done(r, &r->slices[i], err);
            if (r->nslices == 0 || complete) {
                psi_kv_unlink(t, r);
                done[n++] = r;
            }
        }
        pthread_mutex_unlock(&t->lock);
        for (int i = 0; i < n; i++) psi_kv_finish(done[i], done[i]->status ? done[i]->status : err);
    } while (n == 64);
}

/* The timer: resend what is unanswered.  A slice's n-th resend waits
 * PS_RESEND_MS << min(n, 3): a server that is slow rather than unreachable
 * (a large push applied under a sanitizer, a train of fragments on a busy
 * link) is not buried under copies of what it is still reading (a train
 * resent every 50 ms filled a 255 MiB send queue under ASan); a lost message
 * is still resent after PS_RESEND_MS the first time.  The cap (8 periods)
 * stays well inside the 30 periods a server waits for a stalled train's
 * resend before it lets pulls see the push in part (train.c). */
void psi_kv_worker_tick(ps_table *t, uint64_t now_ms)
{
    uint64_t wait = psi_kv_resend_ms();
    psi_msg *msgs[64];
    uint32_t to[64];
    int n = 0;
    int fatal = psi_kv_fatal();
    if (fatal) {
        fail_all(t, fatal);
        psi_kv_zcopy_poll(t, 0); /* those kept while a message still held the caller's array */
        return;
    }
    psi_kv_zcopy_poll(t, 0);
    pthread_mutex_lock(&t->lock);
    for (kv_req *r = t->reqs; r && n < 64; r = r->next)
        for (int i = 0; i < r->nslices && n < 64; i++) {
            kv_slice *s = &r->slices[i];
            if (s->done || s->moved || now_ms < s->sent_ms + (wait << PSI_MIN(s->resends, 3)))
                continue;
            s->sent_ms = now_ms;
            s->resends++;
            if ((msgs[n] = psi_kv_slice_msg(r, s))) {
                to[n++] = s->server;
                t->stats.resends++;
            }
        }
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < n; i++) psi_kv_send(to[i], msgs[i]);
}

void psi_kv_worker_free(ps_table *t)
{
    while (t->reqs) {
        kv_req *r = t->reqs;
        t->reqs = r->next;
        req_free(r);
    }
    psi_kv_zcopy_poll(t, 1);
    psi_route_forget(t);
    free(t->push_seq);
    t->push_seq = NULL;
    psi_tq_free(t->tq);
    t->tq = NULL;
}
