/*
 * zcopy.c -- zero-copy pushes (ps_task_opts.zero_copy): a push slice whose
 * values are one large contiguous run of the caller's array sends them from
 * there instead of gathering them into the slice buffer; and zero-copy
 * pulls: a large answer whose values go to one contiguous run of the
 * caller's array is received straight into it.
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
 * Pulls.  The transport asks, once a large answer's header is in and
 * before its payload is read (transport.h, place), where the payload
 * should go.  For an outstanding slice of a fixed-width pull with no
 * filters and no permutation, whose keys are one run of the caller's order
 * and whose answer is exactly its values with status 0, the answer is
 * placed at r->out + the run's start, and the request records the
 * placement on its list (kv_place: shared by the request and the message,
 * reference counted, `active` until the message is freed; the list is
 * freed with the request, so slices re-cut after a death (move.c) cannot
 * lose one).  While a placement is active, no other answer may settle any
 * part of the array it covers (two answers of one slice, say a resend's
 * from a server that took the keys over, may hold different values: the
 * caller must get one of them whole), and the request is not finished (the
 * transport may still be writing): it lingers like a zero-copy push, and
 * the timer finishes it once the message is freed.  The placed answer
 * itself settles the slice without a copy (worker.c, do_scatter).  A
 * placement that ended without its answer (the connection failed) is
 * inactive and ignored; the bytes it left in the caller's array are
 * overwritten by the answer that settles the slice.
 *
 * Never: finish a request while a message still points into the caller's
 * values or may still write into its array; borrow from anything but the
 * caller's array; let two answers write one slice's values.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "kv/worker.h"
#include "net/transport.h"

typedef struct kv_place {
    struct kv_place *next; /* the request's list */
    _Atomic int refs;      /* the request's and the message's */
    _Atomic int active;    /* the message is alive: it may still write */
    const uint8_t *dst;    /* where, in the caller's array */
    size_t len;
} kv_place;

static void place_unref(kv_place *p)
{
    if (p && atomic_fetch_sub(&p->refs, 1) == 1) free(p);
}

/* The message's on_free: it will write no more. */
static void place_release(void *arg)
{
    kv_place *p = arg;
    atomic_store(&p->active, 0);
    place_unref(p);
}

/* The active placement whose bytes overlap [lo, hi) of the caller's
 * array, or NULL. */
static const kv_place *writing(const kv_req *r, const uint8_t *lo, const uint8_t *hi)
{
    for (const kv_place *p = r->places; p; p = p->next)
        if (atomic_load(&p->active) && lo < p->dst + p->len && p->dst < hi) return p;
    return NULL;
}

/* Whether slice s's keys are one run of the caller's order (so its values
 * are one contiguous part of the caller's array). */
static int one_run(const kv_slice *s)
{
    for (size_t i = 1; i < s->nruns; i++)
        if (s->runs[i].begin != s->runs[i - 1].end) return 0;
    return s->nruns > 0;
}

/* Smaller slices are copied: a copy of 64 KiB costs less than a rendezvous. */
#define ZCOPY_MIN (64u << 10)

const uint8_t *psi_kv_zcopy_vals(const kv_req *r, const kv_slice *s, const uint8_t *uvals)
{
    const ps_table *t = r->t;
    size_t vb = t->vbytes;
    if (!r->zc_vals || uvals != r->zc_vals || r->perm || t->var || !(r->flags & PSI_F_PUSH) ||
        r->chain || psi_chain_active(t->chain))
        return NULL;
    if (!one_run(s) || s->nkeys * vb < ZCOPY_MIN ||
        s->nkeys * 8 + PSI_PUSH_AUX > PSI_NET_INLINE_MAX)
        return NULL;
    return uvals + s->runs[0].begin * vb;
}

/* Whether some message of r still holds a slice buffer that borrows, or
 * may still write an answer into the caller's array. */
static int still_read(const kv_req *r)
{
    for (int i = 0; i < r->nslices; i++) {
        if (r->zc_vals && r->slices[i].ext && atomic_load(&r->slices[i].buf->refs) > 1)
            return 1;
    }
    for (const kv_place *p = r->places; p; p = p->next)
        if (atomic_load(&p->active)) return 1;
    return 0;
}

int psi_kv_zcopy_linger(kv_req *r, int status)
{
    ps_table *t = r->t;
    if (r->lingered || !still_read(r)) return 0;
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
        r->lingered = 1; /* nothing borrows any more: psi_kv_finish frees it */
        psi_kv_finish(r, r->status);
    }
}

/* ---- zero-copy pulls ------------------------------------------------------------ */

static int slice_named(const kv_slice *s, const psi_hdr *h)
{
    const uint64_t *k = (const uint64_t *)(const void *)s->buf->data;
    return s->nkeys && h->key_lo == k[0] && h->key_hi == k[s->nkeys - 1];
}

int psi_kv_zcopy_place(ps_table *t, const psi_hdr *h, struct psi_place *out)
{
    size_t vb = t->vbytes;
    int placed = 0;
    if (!(h->flags & PSI_F_PULL) || (h->flags & PSI_F_REPL) || h->arg != 0 || t->var ||
        !t->tq)
        return 0;
    kv_place *p = malloc(sizeof(*p));
    if (!p) return 0;
    pthread_mutex_lock(&t->lock);
    kv_req *r = t->reqs;
    while (r && r->ts != (int64_t)h->timestamp) r = r->next;
    for (int i = 0; r && !placed && i < r->nslices; i++) {
        kv_slice *s = &r->slices[i];
        if (s->done || s->server != h->sender || !slice_named(s, h)) continue;
        if (!r->out || r->perm || r->chain || psi_chain_active(t->chain) || !one_run(s) ||
            h->seg_len[PSI_SEG_VALS] != s->nkeys * vb)
            break;
        uint8_t *dst = r->out + s->runs[0].begin * vb;
        if (writing(r, dst, dst + s->nkeys * vb)) break; /* one answer at a time */
        p->next = r->places;
        atomic_init(&p->refs, 2);
        atomic_init(&p->active, 1);
        p->dst = dst;
        p->len = s->nkeys * vb;
        r->places = p;
        t->stats.pulls_in_place++;
        *out = (psi_place){dst, place_release, p};
        placed = 1;
    }
    pthread_mutex_unlock(&t->lock);
    if (!placed) free(p);
    return placed;
}

int psi_kv_zcopy_answer_ok(const kv_req *r, const kv_slice *s, const psi_msg *m)
{
    if (!r->places || !r->out || r->perm || !s->nruns) return 1; /* (no placement then) */
    size_t vb = r->t->vbytes;
    const uint8_t *v = m->seg[PSI_SEG_VALS];
    if (v == r->out + s->runs[0].begin * vb) /* only a placed answer points there */
        for (const kv_place *p = r->places; p; p = p->next)
            if (p->dst == v && p->len == s->nkeys * vb && atomic_load(&p->active)) return 1;
    for (size_t j = 0; j < s->nruns; j++)
        if (writing(r, r->out + s->runs[j].begin * vb, r->out + s->runs[j].end * vb)) return 0;
    return 1;
}

void psi_kv_zcopy_req_free(kv_req *r)
{
    while (r->places) {
        kv_place *p = r->places;
        r->places = p->next;
        place_unref(p);
    }
}
