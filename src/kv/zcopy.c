/*
 * zcopy.c -- zero-copy pushes (ps_task_opts.zero_copy): a push slice whose
 * values are one large contiguous run of the caller's array sends them from
 * there instead of gathering them into the slice buffer.
 *
 * Design.  The slice buffer (kv_buf) then holds the keys and the aux only,
 * and the slice's `ext` points into the caller's values; every message of
 * the slice borrows both and holds a reference on the buffer, so the
 * buffer's reference count also counts the messages that may still read
 * the caller's memory (sends queued in the transport, resends, messages the
 * fault transport holds back).  The caller may reuse its array once the task
 * finished, so a request answered while such a message is alive is not
 * finished yet: it waits on the table's `lingering` list, and the worker's
 * timer (psi_kv_worker_tick, every 10 ms) finishes it once the counts are
 * back to the request's own.  Usually the send completed before the answer
 * came, and the request finishes at once.  Keys and aux are small and go in
 * the transport's header (PSI_NET_INLINE_MAX), so the values are the only
 * payload region, sent zero-copy by a rendezvous.
 *
 * Only the request's first slicing, from the caller's array (r->zc_vals),
 * borrows: re-slicing after a server died (move.c) copies, as do requests
 * with a permutation, filters, or variable-length values.
 *
 * Never: finish a request while a message still points into the caller's
 * values; borrow from anything but the caller's array.
 */
#include <stdatomic.h>

#include "kv/worker.h"
#include "net/transport.h"

/* Smaller slices are copied: a copy of 64 KiB costs less than a rendezvous. */
#define ZCOPY_MIN (64u << 10)

const uint8_t *psi_kv_zcopy_vals(const kv_req *r, const kv_slice *s, const uint8_t *uvals)
{
    const ps_table *t = r->t;
    size_t vb = t->vbytes;
    if (!r->zc_vals || uvals != r->zc_vals || r->perm || t->var || !(r->flags & PSI_F_PUSH) ||
        r->chain || psi_chain_active(t->chain))
        return NULL;
    if (!s->nruns || s->nkeys * vb < ZCOPY_MIN ||
        s->nkeys * 8 + PSI_PUSH_AUX > PSI_NET_INLINE_MAX)
        return NULL;
    for (size_t i = 1; i < s->nruns; i++)
        if (s->runs[i].begin != s->runs[i - 1].end) return NULL;
    return uvals + s->runs[0].begin * vb;
}

/* Whether some message of r still holds a slice buffer that borrows. */
static int still_read(const kv_req *r)
{
    for (int i = 0; i < r->nslices; i++)
        if (r->slices[i].ext && atomic_load(&r->slices[i].buf->refs) > 1) return 1;
    return 0;
}

int psi_kv_zcopy_linger(kv_req *r, int status)
{
    ps_table *t = r->t;
    if (!r->zc_vals || !still_read(r)) return 0;
    r->status = status;
    pthread_mutex_lock(&t->lock);
    r->next = t->lingering;
    t->lingering = r;
    pthread_mutex_unlock(&t->lock);
    return 1;
}

void psi_kv_zcopy_poll(ps_table *t, int all)
{
    kv_req *done = NULL;
    pthread_mutex_lock(&t->lock);
    for (kv_req **pp = &t->lingering; *pp;) {
        kv_req *r = *pp;
        if (!all && still_read(r)) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->next = done;
        done = r;
    }
    pthread_mutex_unlock(&t->lock);
    while (done) {
        kv_req *r = done;
        done = r->next;
        r->zc_vals = NULL; /* nothing borrows any more: psi_kv_finish frees it */
        psi_kv_finish(r, r->status);
    }
}
