/*
 * move.c -- the worker side of failover: a request whose server died.
 *
 * Without replicas its slices for the dead server fail with PS_ERR_PEER.
 * With them (opts.replication > 0), on the view change that declares a
 * server dead, every unanswered slice for it is cut again by the live
 * chains and sent to their heads (which held those keys as backups), still
 * counted for the server it was first sent to ("origin") and naming the
 * dead one ("via"), so that a new head applies exactly the pushes it did not
 * hold (the replication plug-in).  Requests are moved oldest first, so a
 * worker's moved push reaches a new head before its pulls.  A BSP push goes
 * to every live server, empty if need be: each completes the dead server's
 * share of the iteration with every worker's part (bsp.c).  A request that
 * was sliced before the death and starts after it is simply sliced again.
 *
 * Runs under the table lock (the view hook, kv_start); sends after it.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/kv_repl.h"
#include "kv/worker.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

/* A request sliced before a server died (it waited for its dependencies)
 * and starting now: if a slice is for a dead server, slice it again, from
 * the keys and values its slices hold, for the live chains (lock held);
 * without replicas it fails. */
int psi_kv_redirect(kv_req *r)
{
    ps_table *t = r->t;
    int stale = 0;
    for (int i = 0; t->dead && i < r->nslices; i++)
        stale |= r->slices[i].server < PSI_MAX_NODES && t->dead[r->slices[i].server];
    if (!stale) return PS_OK;
    if (!t->k) {
        PSI_ERROR("table %s: a server of this request died (the table has no replicas)",
                  t->name);
        return PS_ERR_PEER;
    }
    size_t vb = (r->flags & PSI_F_PUSH) ? t->vbytes : 0;
    uint64_t *keys = malloc(PSI_MAX(r->n, 1) * sizeof(uint64_t));
    uint8_t *vals = malloc(PSI_MAX(r->n * vb, 1));
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return PS_ERR_NOMEM;
    }
    for (int i = 0; i < r->nslices; i++) {
        kv_slice *s = &r->slices[i];
        const uint8_t *k = s->buf->data, *v = psi_kv_slice_vals(r, s);
        for (size_t x = 0, j = 0; x < s->nruns; x++)
            for (size_t p = s->runs[x].begin; p < s->runs[x].end; p++, j++) {
                memcpy(&keys[p], k + j * 8, 8);
                memcpy(vals + p * vb, v + j * vb, vb);
            }
        free(s->runs);
        psi_kv_buf_unref(s->buf);
    }
    free(r->slices);
    r->slices = NULL;
    r->nslices = 0;
    r->keys = keys;
    size_t *perm = r->perm; /* vals are in sorted order already */
    r->perm = NULL;
    int rv = psi_kv_slice(r, vals);
    r->perm = perm;
    free(vals);
    t->stats.slices_moved++;
    return rv;
}

/* How a part of a slice is counted at its new server: */
enum {
    MOVE_DEAD,  /* off a dead server: same origin and number, via that server */
    MOVE_KEEP,  /* a moved push refused by a live server (a join): same origin and
                 * number, via that server, so the new head looks up what it held */
    MOVE_FRESH, /* refused, never applied anywhere: a new push of the new head */
};

/* Keys (and values) of slice `s` that go to `owner`, as a new slice of `r`
 * counted as `mode` says.  `pos[i]` is the sorted position of the slice's
 * i-th key, `own[i]` its new owner. */
static int move_part(kv_req *r, const kv_slice *s, const size_t *pos, const uint32_t *own,
                     uint32_t owner, int mode)
{
    ps_table *t = r->t;
    size_t vb = (r->flags & PSI_F_PUSH) ? t->vbytes : 0, n = 0;
    for (size_t i = 0; i < s->nkeys; i++) n += own[i] == owner;
    kv_slice *d = &r->slices[r->nslices];
    memset(d, 0, sizeof(*d));
    *d = (kv_slice){.server = owner, .origin = s->origin,
                    .via = mode == MOVE_FRESH ? 0 : s->server, .seq = s->seq,
                    .iter = s->iter, .nkeys = n, .sent_ms = psi_kv_now()};
    if (!(d->buf = psi_kv_buf_new(n * (8 + vb) + psi_kv_aux_len(r)))) return PS_ERR_NOMEM;
    const uint8_t *sk = s->buf->data, *sv = psi_kv_slice_vals(r, s);
    uint8_t *k = d->buf->data, *v = k + n * 8;
    for (size_t i = 0; i < s->nkeys; i++) {
        if (own[i] != owner) continue;
        memcpy(k, sk + i * 8, 8);
        memcpy(v, sv + i * vb, vb);
        k += 8, v += vb;
        if (d->nruns && d->runs[d->nruns - 1].end == pos[i]) {
            d->runs[d->nruns - 1].end++;
            continue;
        }
        kv_run *runs = realloc(d->runs, (d->nruns + 1) * sizeof(*runs));
        if (!runs) {
            free(d->runs);
            psi_kv_buf_unref(d->buf);
            return PS_ERR_NOMEM;
        }
        d->runs = runs;
        d->runs[d->nruns++] = (kv_run){pos[i], pos[i] + 1};
    }
    memcpy(psi_kv_slice_aux(r, d), psi_kv_slice_aux(r, s), psi_kv_aux_len(r)); /* same seq, origin, mark */
    if (r->flags & PSI_F_PUSH) {
        kv_push_aux a;
        psi_kv_aux_get(psi_kv_slice_aux(r, d), &a);
        a.via = d->via;
        if (mode == MOVE_FRESH) {
            d->origin = owner;
            d->seq = a.seq = ++t->push_seq[owner];
            a.origin = owner;
            a.lo = psi_kv_low_mark(t, owner, d->seq);
        }
        psi_kv_aux_put(psi_kv_slice_aux(r, d), &a);
    }
    r->nslices++;
    r->pending++;
    return PS_OK;
}

/* Slice `s` went to a dead server: send its keys to the heads of their live
 * chains (which held them as backups), still counted for the dead server, so
 * the new owners apply what they did not hold yet and nothing twice.  A BSP
 * push goes to every one of `bsp_heads` (every live server), with no keys if
 * need be: each completes the dead server's share of the iteration only with
 * every worker's part (see add_dead_parts).  New slices are appended to r
 * (lock held); returns 0 or the error that fails it. */
static int do_move(kv_req *r, int si, const uint32_t *bsp_heads, int nbsp, int mode)
{
    ps_table *t = r->t;
    kv_slice *s = &r->slices[si];
    size_t n = s->nkeys, j = 0;
    size_t *pos = malloc(PSI_MAX(n, 1) * sizeof(*pos));
    uint32_t *own = malloc(PSI_MAX(n, 1) * sizeof(*own)), heads[64];
    int nh = 0, rv = pos && own ? PS_OK : PS_ERR_NOMEM;
    const uint64_t *keys = (const uint64_t *)(const void *)s->buf->data;
    for (size_t i = 0; rv == 0 && i < s->nruns; i++)
        for (size_t p = s->runs[i].begin; p < s->runs[i].end; p++) pos[j++] = p;
    for (size_t i = 0; rv == 0 && i < n; i++) {
        own[i] = psi_kv_chain(t, psi_ring_seg_of(t->ring, keys[i]))[0];
        if (own[i] == PSI_ID_NONE) rv = PS_ERR_PEER; /* the whole chain is gone */
        int known = 0;
        for (int h = 0; h < nh && !known; h++) known = heads[h] == own[i];
        if (!known && nh < 64) heads[nh++] = own[i];
        else if (!known) rv = PS_ERR_NOMEM;
    }
    int bsp_push = t->opts.bsp && (r->flags & PSI_F_PUSH);
    for (int b = 0; rv == 0 && bsp_push && b < nbsp; b++) {
        int known = 0;
        for (int h = 0; h < nh && !known; h++) known = heads[h] == bsp_heads[b];
        if (!known && nh < 64) heads[nh++] = bsp_heads[b];
        else if (!known) rv = PS_ERR_NOMEM;
    }
    kv_slice *grown = rv == 0 ? realloc(r->slices, (size_t)(r->nslices + nh) * sizeof(*grown))
                              : NULL;
    if (rv == 0 && !grown) rv = PS_ERR_NOMEM;
    if (grown) r->slices = grown;
    for (int h = 0; rv == 0 && h < nh; h++)
        rv = move_part(r, &r->slices[si], pos, own, heads[h], mode);
    free(pos);
    free(own);
    return rv;
}

/* Move slice si (do_move, `mode`) and queue the messages of its parts;
 * returns 1 when r is done. */
static int move_and_send(kv_req *r, int si, const uint32_t *heads, int nheads, int mode,
                         psi_msg **msgs, uint32_t *to, int *nmsg, int cap)
{
    int first = r->nslices;
    int rv = do_move(r, si, heads, nheads, mode);
    if (rv != 0) return psi_kv_slice_done(r, &r->slices[si], rv);
    for (int i = first; i < r->nslices; i++) {
        kv_slice *d = &r->slices[i];
        psi_msg *m = *nmsg < cap ? psi_kv_slice_msg(r, d) : NULL; /* else: the resend timer */
        if (m) {
            msgs[*nmsg] = m;
            to[(*nmsg)++] = d->server;
        }
    }
    r->t->stats.slices_moved++;
    return psi_kv_slice_done(r, &r->slices[si], PS_OK); /* its parts psi_kv_finish the request */
}

/* A slice's server died: fail it, or (replicated table) move it. */
static int do_slice_dead(kv_req *r, int si, const uint32_t *heads, int nheads, psi_msg **msgs,
                         uint32_t *to, int *nmsg, int cap)
{
    if (!r->t->k) return psi_kv_slice_done(r, &r->slices[si], PS_ERR_PEER);
    return move_and_send(r, si, heads, nheads, MOVE_DEAD, msgs, to, nmsg, cap);
}

int psi_kv_reroute(kv_req *r, int si, psi_msg **msgs, uint32_t *to, int *nmsg, int cap)
{
    const kv_slice *s = &r->slices[si];
    /* a push the server refused was applied nowhere, unless it was moved
     * (then held_here decides, as for any move) */
    int mode = (r->flags & PSI_F_PUSH) && !s->via ? MOVE_FRESH : MOVE_KEEP;
    return move_and_send(r, si, NULL, 0, mode, msgs, to, nmsg, cap);
}

/* The live servers (lock held): a moved BSP push goes to every one. */
static int live_servers(const ps_table *t, uint32_t *out, int cap)
{
    int n = 0;
    for (int i = 0; i < t->nservers && n < cap; i++)
        if (!t->dead[t->servers[i]]) out[n++] = t->servers[i];
    return n;
}

static int cmp_req_ts(const void *a, const void *b)
{
    int64_t x = (*(kv_req *const *)a)->ts, y = (*(kv_req *const *)b)->ts;
    return (x > y) - (x < y);
}

void psi_kv_worker_on_view(ps_table *t, const uint32_t *dead, int ndead)
{
    kv_req *done = NULL;
    enum { CAP = 256 };
    psi_msg *msgs[CAP];
    uint32_t to[CAP], heads[64];
    int nmsg = 0, nreq = 0;
    pthread_mutex_lock(&t->lock);
    if (!t->dead) t->dead = calloc(PSI_MAX_NODES, 1); /* replicated tables have it */
    for (int d = 0; t->dead && d < ndead; d++)
        if (dead[d] < PSI_MAX_NODES) t->dead[dead[d]] = 1;
    if (t->repl) t->repl->compute(t, dead, ndead, NULL);
    /* oldest first: a worker's moved push reaches a new head before its pulls */
    for (kv_req *r = t->reqs; r; r = r->next) nreq++;
    kv_req **rs = malloc((size_t)PSI_MAX(nreq, 1) * sizeof(*rs));
    nreq = 0;
    for (kv_req *r = t->reqs; rs && r; r = r->next) rs[nreq++] = r;
    if (rs) qsort(rs, (size_t)nreq, sizeof(*rs), cmp_req_ts);
    for (int q = 0; rs && q < nreq; q++) {
        kv_req *r = rs[q];
        int complete = 0;
        for (int i = 0; i < r->nslices; i++)
            for (int d = 0; d < ndead; d++) {
                if (r->slices[i].done || r->slices[i].server != dead[d]) continue;
                int nh = live_servers(t, heads, 64);
                complete |= do_slice_dead(r, i, heads, nh, msgs, to, &nmsg, CAP);
            }
        for (int i = 0; i < r->nslices; i++) /* refused by a server that handed them over */
            if (!r->slices[i].done && r->slices[i].moved && r->slices[i].moved <= t->eff_epoch)
                complete |= psi_kv_reroute(r, i, msgs, to, &nmsg, CAP);
        if (!complete) continue;
        psi_kv_unlink(t, r);
        r->next = done;
        done = r;
    }
    if (!rs) PSI_ERROR("table %s: out of memory moving requests off a dead server", t->name);
    free(rs);
    pthread_mutex_unlock(&t->lock);
    for (int i = 0; i < nmsg; i++) psi_kv_send(to[i], msgs[i]);
    while (done) {
        kv_req *r = done;
        done = r->next;
        psi_kv_finish(r, r->status);
    }
}

