/*
 * train.c -- large pushes as trains: the values of a push travel in
 * fragments of PS_PUSH_FRAG bytes (248 KiB by default), and the server
 * applies each fragment as it arrives, while it is still in the cache.
 *
 * Why.  A 10 MiB push sent whole lands in a 10 MiB receive block, which the
 * update then reads back: on a machine whose memory bandwidth is shared by
 * both ends of a loopback transfer, those two extra passes over cold memory
 * cost a third of the throughput (bench/README.md).  A train's fragments
 * arrive one at a time in a small buffer the transport reuses, so the
 * update reads them from the cache.
 *
 * Protocol.  The head is the push request itself (keys, aux, PSI_F_TRAIN)
 * without its values; fragments follow on the same connection, each a
 * PSI_F_FRAG message carrying the head's table and timestamp, the push's
 * sequence number in key_lo and key_hi, its byte offset in the values in
 * `arg`, and its bytes.  The worker sends a train as one unbroken run of
 * messages.  The server opens the train when the head is the sender's next
 * push (a resend of an applied one is answered at once; one that is ahead
 * of its predecessor waits with its fragments, deferred, until the
 * predecessor is applied), applies
 * fragments in order, and when the last one is applied records the push
 * and answers it, as for a push sent whole.  Meanwhile every other request
 * to the table waits (it is deferred and run after), so a pull still sees
 * whole pushes only and pushes stay in order.
 *
 * Loss.  A fragment ahead of the next expected byte (one before it was
 * lost or is late) is dropped, and the train waits, still holding the
 * table, for the worker's resend of the whole push (after its resend
 * timeout): the resent head is dropped and its fragments fill in from the
 * first byte missing; bytes already applied (duplicates, the resend's
 * start) are skipped.  So every byte is applied exactly once and no reader
 * sees a push in part.  The train is closed without an answer only if its
 * sender is declared dead, which leaves that push applied in part (its
 * worker will never resend it), or makes no progress for 30 resend
 * periods; then what was applied is remembered per sender as (sequence
 * number, bytes applied), so that a resend still completes it exactly once.
 *
 * Used for fixed-width pushes (and pushpulls) of at least 4 fragments to
 * tables without replication, BSP, filters or a CUSTOM update rule; the
 * others send a push whole.  PS_PUSH_FRAG=0 turns trains off.  The worker
 * decides here (psi_kv_train_wanted) and sends in send.c (psi_kv_send); the
 * server's half is the rest of this file.
 *
 * Never: apply a byte of a push twice; answer a train before its last byte
 * is applied; let another request see a train in part.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/server.h"
#include "kv/worker.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

#define FRAG_DEFAULT (248u << 10) /* fits UCX's TCP receive segment (ucx.c) */
#define FRAG_MIN 4096u
#define FRAG_MAX (1u << 20)
#define TRAIN_MIN_FRAGS 4 /* a smaller push goes whole */
#define STALL_RESENDS 30   /* resend periods without progress before a train is closed */

struct kv_train {
    psi_msg *head;    /* the push request, answered when done */
    uint32_t sender;
    uint64_t seq, ts;
    uint64_t total;   /* bytes of values */
    uint64_t next;    /* bytes applied */
    uint64_t last_ms; /* progress, for the timeout */
    int stalled;      /* a fragment went missing: waiting for the resend */
    void *blocks[];   /* per key of the head */
};

/* Per sender: the push a closed train left applied in part, and how far. */
struct kv_resume {
    uint64_t seq, next;
};

static pthread_once_t frag_once = PTHREAD_ONCE_INIT;
static size_t frag_bytes = FRAG_DEFAULT;

static void read_frag(void)
{
    static const char *const names[] = {"PS_PUSH_FRAG", NULL};
    long v;
    if (psi_env_long(names, FRAG_DEFAULT, 0, FRAG_MAX, &v) != 0) {
        PSI_WARN("PS_PUSH_FRAG: using %u", FRAG_DEFAULT);
        v = FRAG_DEFAULT;
    }
    if (v && v < (long)FRAG_MIN) v = FRAG_MIN;
    frag_bytes = (size_t)v & ~(size_t)7; /* whole values of any dtype */
}

size_t psi_kv_train_frag_bytes(void)
{
    pthread_once(&frag_once, read_frag);
    return frag_bytes;
}

int psi_kv_train_ok(const ps_table *t)
{
    return !t->var && !t->k && !t->opts.bsp && t->upd.kind != PS_UPDATE_CUSTOM;
}

int psi_kv_train_size(const ps_table *t, uint64_t val_bytes, uint64_t key_bytes)
{
    uint64_t f = psi_kv_train_frag_bytes();
    return f && psi_kv_train_ok(t) && val_bytes >= TRAIN_MIN_FRAGS * f &&
           val_bytes <= UINT32_MAX &&   /* offsets are u32 */
           val_bytes >= 8 * key_bytes;  /* values, not keys, make it large */
}

int psi_kv_train_wanted(const ps_table *t, const psi_msg *m)
{
    if (!(m->hdr.flags & PSI_F_PUSH) || (m->hdr.flags & (PSI_F_REPL | PSI_F_TRAIN)))
        return 0;
    for (int i = 0; i < PSI_MAX_FILTERS; i++)
        if (m->hdr.filters[i]) return 0;
    return psi_kv_train_size(t, m->hdr.seg_len[PSI_SEG_VALS], m->hdr.seg_len[PSI_SEG_KEYS]) &&
           m->on_free == psi_kv_buf_unref && m->on_free_arg;
}

/* ---- server: receive and apply ---------------------------------------------------- */

static void resume_set(ps_table *t, uint32_t s, uint64_t seq, uint64_t next)
{
    if (!t->trains.resume && !(t->trains.resume = calloc(PSI_MAX_NODES, sizeof(*t->trains.resume)))) return;
    t->trains.resume[s] = (struct kv_resume){seq, next};
}

static uint64_t resume_get(const ps_table *t, uint32_t s, uint64_t seq)
{
    return t->trains.resume && t->trains.resume[s].seq == seq ? t->trains.resume[s].next : 0;
}

/* Close the open train without answering it (the sender resends). */
static void train_abort(ps_table *t, const char *why)
{
    kv_train *tr = t->trains.open;
    t->trains.open = NULL;
    PSI_DEBUG("table %s: push %llu of node %u stopped at byte %llu of %llu: %s", t->name,
              (unsigned long long)tr->seq, tr->sender, (unsigned long long)tr->next,
              (unsigned long long)tr->total, why);
    if (tr->next) resume_set(t, tr->sender, tr->seq, tr->next);
    psi_msg_free(tr->head);
    free(tr);
    pthread_cond_broadcast(&t->trains.cv);
    psi_kv_server_run_deferred(t);
}

/* Record push seq of m's sender as applied (or refused with st), answer
 * it, then run what waited for it: the sender's parked pushes and the
 * deferred requests. */
static void settle(ps_table *t, psi_msg *m, uint64_t seq, int st)
{
    uint32_t s = m->hdr.sender;
    if (st != 0) psi_kv_refused_note(t, s, seq, st); /* a resend is refused too */
    t->applied[s] = (int64_t)seq;
    t->stats.pushes_applied++;
    t->stats.keys_pushed += m->hdr.key_count;
    if (!psi_kv_answer(t, m, st, seq)) psi_msg_free(m);
    psi_kv_drain(t, s);
    if (t->deferred.n && !t->trains.open) psi_kv_server_run_deferred(t);
}

static void train_finish(ps_table *t)
{
    kv_train *tr = t->trains.open;
    psi_msg *head = tr->head;
    uint64_t seq = tr->seq;
    t->trains.open = NULL;
    if (t->trains.resume && t->trains.resume[tr->sender].seq == seq)
        t->trains.resume[tr->sender] = (struct kv_resume){0, 0};
    free(tr);
    pthread_cond_broadcast(&t->trains.cv);
    settle(t, head, seq, PS_OK);
}

void psi_kv_train_open(ps_table *t, psi_msg *m, uint64_t seq, const kv_push_aux *a)
{
    uint32_t s = m->hdr.sender;
    uint64_t last = (uint64_t)t->applied[s];
    size_t n = m->hdr.key_count;
    if (seq <= last) { /* applied already: its fragments find no train */
        if (!psi_kv_answer_dup(t, m, seq, a)) psi_msg_free(m);
        return;
    }
    if (seq > last + 1 || t->trains.readers) {
        /* ahead of a predecessor (a rendezvous one still arriving, or one
         * lost), or a reader waits for the table: it waits, with its
         * fragments */
        psi_kv_defer(t, m);
        return;
    }
    kv_train *tr = calloc(1, sizeof(*tr) + n * sizeof(void *));
    if (!tr) { /* the sender resends it */
        psi_msg_free(m);
        return;
    }
    int rv = psi_kv_blocks(t, m->seg[PSI_SEG_KEYS], n, tr->blocks);
    if (rv != 0) {
        PSI_ERROR("table %s: push of %zu keys refused: %s", t->name, n, ps_strerror(rv));
        free(tr);
        settle(t, m, seq, rv);
        return;
    }
    tr->head = m;
    tr->sender = s;
    tr->seq = seq;
    tr->ts = m->hdr.timestamp;
    tr->total = (uint64_t)n * t->vbytes;
    tr->next = resume_get(t, s, seq);
    tr->last_ms = psi_kv_now();
    t->trains.open = tr;
    t->stats.trains++;
}

/* Apply bytes [off, off + len) of the train's values. */
static void train_apply(ps_table *t, kv_train *tr, uint64_t off, const uint8_t *p, size_t len)
{
    const uint64_t *keys = tr->head->seg[PSI_SEG_KEYS];
    size_t vb = t->vbytes, esz = vb / (size_t)t->upd.width;
    while (len) {
        size_t i = off / vb, in = off % vb;
        if (in == 0 && len >= vb) { /* whole keys at once */
            size_t nk = len / vb;
            psi_update_apply_batch(&t->upd, keys + i, tr->blocks + i, p, nk);
            off += nk * vb, p += nk * vb, len -= nk * vb;
            continue;
        }
        size_t take = PSI_MIN(len, vb - in);
        if (tr->blocks[i])
            psi_update_apply_range(&t->upd, keys[i], tr->blocks[i], p, in / esz, take / esz);
        off += take, p += take, len -= take;
    }
}

/* Whether the head of fragment h's train waits in the deferred list. */
static int head_deferred(const ps_table *t, const psi_hdr *h)
{
    for (size_t i = t->deferred.n; i-- > 0;) {
        const psi_msg *d = t->deferred.msgs[i];
        if ((d->hdr.flags & PSI_F_TRAIN) && d->hdr.sender == h->sender &&
            d->hdr.timestamp == h->timestamp && d->hdr.seg_len[PSI_SEG_AUX] == PSI_PUSH_AUX &&
            psi_get_u64(d->seg[PSI_SEG_AUX]) == h->key_lo)
            return 1;
    }
    return 0;
}

void psi_kv_train_frag(ps_table *t, psi_msg *m)
{
    kv_train *tr = t->trains.open;
    const psi_hdr *h = &m->hdr;
    if (!tr || h->sender != tr->sender || h->timestamp != tr->ts || h->key_lo != tr->seq) {
        /* another train's, whose head waits (deferred), or a leftover of a
         * closed one */
        if (head_deferred(t, h)) psi_kv_defer(t, m);
        else psi_msg_free(m);
        return;
    }
    uint64_t off = h->arg, len = h->seg_len[PSI_SEG_VALS];
    size_t esz = t->vbytes / (size_t)t->upd.width;
    if (!len || off % esz || len % esz || off + len > tr->total) {
        PSI_WARN("table %s: bad fragment from node %u (%llu bytes at %llu of %llu)", t->name,
                 h->sender, (unsigned long long)len, (unsigned long long)off,
                 (unsigned long long)tr->total);
        psi_msg_free(m);
        train_abort(t, "bad fragment");
        return;
    }
    if (off > tr->next) { /* one before it was lost or is late: the resend fills in */
        if (!tr->stalled++) t->stats.trains_stalled++;
        psi_msg_free(m);
        return;
    }
    tr->last_ms = psi_kv_now();
    if (off + len > tr->next) {
        uint64_t skip = tr->next - off; /* its start was applied already */
        train_apply(t, tr, tr->next, (const uint8_t *)m->seg[PSI_SEG_VALS] + skip, len - skip);
        tr->next = off + len;
    }
    psi_msg_free(m);
    if (tr->next == tr->total) train_finish(t);
}

void psi_kv_train_hold(ps_table *t, psi_msg *m)
{
    const kv_train *tr = t->trains.open;
    if ((m->hdr.flags & PSI_F_TRAIN) && m->hdr.sender == tr->sender &&
        m->hdr.timestamp == tr->ts)
        psi_msg_free(m); /* the open train's resend: its fragments fill the gaps */
    else
        psi_kv_defer(t, m);
}

void psi_kv_train_tick(ps_table *t, uint64_t now_ms)
{
    pthread_mutex_lock(&t->lock);
    if (t->trains.open && now_ms > t->trains.open->last_ms + STALL_RESENDS * psi_kv_resend_ms()) {
        PSI_WARN("table %s: push %llu of node %u stalled for %d resend periods: the table "
                 "serves again, with the push applied in part until it is resent",
                 t->name, (unsigned long long)t->trains.open->seq, t->trains.open->sender, STALL_RESENDS);
        train_abort(t, "no progress");
    }
    pthread_mutex_unlock(&t->lock);
}

static int is_dead(uint32_t id, const uint32_t *dead, int ndead)
{
    for (int i = 0; i < ndead; i++)
        if (dead[i] == id) return 1;
    return 0;
}

void psi_kv_train_on_view(ps_table *t, const uint32_t *dead, int ndead)
{
    pthread_mutex_lock(&t->lock);
    /* what dead workers left waiting will never be completed by a resend */
    size_t k = 0;
    for (size_t i = 0; i < t->deferred.n; i++) {
        psi_msg *d = t->deferred.msgs[i];
        if (!is_dead(d->hdr.sender, dead, ndead)) {
            t->deferred.msgs[k++] = d;
            continue;
        }
        t->deferred.bytes -= psi_msg_payload_len(&d->hdr);
        psi_msg_free(d);
    }
    t->deferred.n = k;
    if (t->trains.open && is_dead(t->trains.open->sender, dead, ndead)) train_abort(t, "its sender died");
    pthread_mutex_unlock(&t->lock);
}

void psi_kv_train_wait(ps_table *t)
{
    t->trains.readers++; /* no new train opens meanwhile */
    while (t->trains.open) pthread_cond_wait(&t->trains.cv, &t->lock);
}

void psi_kv_train_read_done(ps_table *t)
{
    if (--t->trains.readers == 0 && !t->k && !t->trains.open && t->deferred.n)
        psi_kv_server_run_deferred(t);
}

void psi_kv_train_free(ps_table *t)
{
    if (t->trains.open) {
        psi_msg_free(t->trains.open->head);
        free(t->trains.open);
        t->trains.open = NULL;
    }
    free(t->trains.resume);
    t->trains.resume = NULL;
}
