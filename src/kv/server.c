/*
 * server.c -- the server half of a table: validates requests, applies
 * pushes through the table's update function exactly once (vector clock of
 * push sequence numbers per sender), answers pulls (keys never pushed read
 * as the initializer, without being inserted), and parks pushes that
 * arrive ahead of a predecessor.
 *
 * Design: a request goes through a pipeline whose stages each table
 * chooses once, at open (psi_kv_server_stages), by its features: gates
 * (replaced, fragments, trains, newer view, join, dead forwarder: each may
 * take the request to hold, defer or drop it), admit (filters and
 * validation), order (the vector clock: apply now, answer a duplicate, or
 * park), apply (fixed width, owned keys only when replicated, var.c, BSP
 * aggregation) and settle (answer now, or once the backups acknowledged).
 * Replication is reached only through t->repl (kv/kv_repl.h).
 *
 * Runs on the transport's I/O thread under the table lock, so a table's
 * updates are serialised and a pull sees whole pushes only (a large push
 * that comes in fragments holds every other request back until its last
 * fragment is applied: train.c).
 *
 * Never: apply a push twice or out of its sender's order; apply part of a
 * push (a push that cannot get memory for every key changes nothing but
 * new keys' initial values, and fails with PS_ERR_TOOBIG); trust a length
 * from the wire.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/hints.h"
#include "kv/server.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

struct kv_parked {
    kv_parked *next;
    psi_msg *msg;
    uint64_t seq;
    kv_push_aux aux;
};

/* A sender's pushes that failed (PSI_ERR_MOVED after a join, a full
 * store...): a resend must get the same answer, not "applied".  Kept until
 * the sender's low watermark passes them (replicated tables; the others
 * keep the last REFUSED_KEEP). */
#define REFUSED_KEEP 64
#define REFUSED_KEEP_REPL 65536 /* a bound for forwards, which carry no watermark */
typedef struct kv_refused {
    uint32_t n, cap;
    struct { uint64_t seq; int st; } *e;
} kv_refused;

void psi_kv_refused_note(ps_table *t, uint32_t sender, uint64_t seq, int st)
{
    kv_refused *r = t->refused[sender];
    if (!r && !(r = t->refused[sender] = calloc(1, sizeof(*r)))) return;
    if (r->n == (t->k ? REFUSED_KEEP_REPL : REFUSED_KEEP))
        memmove(r->e, r->e + 1, --r->n * sizeof(r->e[0]));
    if (r->n == r->cap) {
        uint32_t nc = r->cap ? 2 * r->cap : 8;
        void *e = realloc(r->e, nc * sizeof(r->e[0]));
        if (!e) {
            PSI_ERROR("table %s: out of memory remembering a refused push", t->name);
            return;
        }
        r->e = e;
        r->cap = nc;
    }
    r->e[r->n].seq = seq;
    r->e[r->n++].st = st;
}

static int refused_status(const ps_table *t, uint32_t sender, uint64_t seq)
{
    const kv_refused *r = t->refused[sender];
    for (uint32_t i = 0; r && i < r->n; i++)
        if (r->e[i].seq == seq) return r->e[i].st;
    return PS_OK;
}

/* The sender will never resend a push numbered lo or below. */
static void refused_prune(ps_table *t, uint32_t sender, uint64_t lo)
{
    kv_refused *r = t->refused[sender];
    uint32_t k = 0;
    for (uint32_t i = 0; r && i < r->n; i++)
        if (r->e[i].seq > lo) r->e[k++] = r->e[i];
    if (r) r->n = k;
}

static void init_block(void *arg, uint64_t key, void *block)
{
    psi_update_init_block(arg, key, block);
}

int psi_kv_server_init(ps_table *t)
{
    /* a variable-length key's block is a pointer and a length (var.c) */
    size_t bb = t->var ? 16 : psi_update_block_bytes(&t->upd);
    if (t->opts.dense_hi > t->opts.dense_lo) {
        /* A page of keys is created at once: every key in it starts at the
         * table's initializer, not just the one that made the page. */
        if ((t->dense = psi_dense_new(t->opts.dense_lo, t->opts.dense_hi, bb))) {
            psi_dense_set_init(t->dense, init_block, &t->upd);
            if (t->opts.max_bytes) psi_dense_set_limit(t->dense, t->opts.max_bytes);
        }
    } else {
        if ((t->store = psi_store_new(bb)) && t->opts.max_bytes)
            psi_store_set_limit(t->store, t->opts.max_bytes);
        t->hints = psi_hints_new(); /* NULL: lookups go without hints */
    }
    t->applied = calloc(PSI_MAX_NODES, sizeof(int64_t));
    t->refused = calloc(PSI_MAX_NODES, sizeof(*t->refused));
    if (!(t->store || t->dense) || !t->applied || !t->refused) return PS_ERR_NOMEM;
    return t->opts.bsp ? psi_kv_bsp_init(t) : PS_OK;
}

void psi_kv_server_free(ps_table *t)
{
    while (t->parked) {
        kv_parked *p = t->parked;
        t->parked = p->next;
        psi_msg_free(p->msg);
        free(p);
    }
    psi_kv_bsp_free(t);
    psi_kv_train_free(t);
    for (size_t i = 0; i < t->deferred.n; i++) psi_msg_free(t->deferred.msgs[i]);
    free(t->deferred.msgs); /* behind a join (join.c) or a train (train.c) */
    t->deferred.msgs = NULL;
    t->deferred.n = 0;
    t->deferred.bytes = 0;
    psi_kv_var_free_store(t);
    psi_store_free(t->store);
    psi_hints_free(t->hints);
    t->hints = NULL;
    psi_dense_free(t->dense);
    free(t->applied);
    for (uint32_t i = 0; t->refused && i < PSI_MAX_NODES; i++)
        if (t->refused[i]) {
            free(t->refused[i]->e);
            free(t->refused[i]);
        }
    free(t->refused);
    t->refused = NULL;
    t->store = NULL;
    t->dense = NULL;
    t->applied = NULL;
}



/* ---- validation ----------------------------------------------------------------- */





/* A forward from a backup's owner: its blocks and the pushes they carry
 * (PSI_FWD_AUX bytes each); *seq gets the forward's sequence number. */
static int check_forward(const ps_table *t, const psi_msg *m, uint64_t *seq, kv_push_aux *a)
{
    const psi_hdr *h = &m->hdr;
    const uint64_t *k = m->seg[PSI_SEG_KEYS];
    /* keys need not be sorted (segment copies come in hash order); a repeated
     * key is stored twice with the same block */
    if (!t->k || t->var || (uintptr_t)k & 7 || h->timestamp == 0) return PS_ERR_PROTO;
    if (h->seg_len[PSI_SEG_VALS] != h->key_count * psi_update_block_bytes(&t->upd))
        return PS_ERR_PROTO;
    if (h->seg_len[PSI_SEG_AUX] % PSI_FWD_AUX) return PS_ERR_PROTO; /* the pushes it carries */
    (void)a;
    *seq = h->timestamp;
    return PS_OK;
}

/* Checks a request; *seq gets a push's sequence number or, for a pull of a
 * BSP table, the iteration it must see; a push's aux goes to *a. */
static int check_request(const ps_table *t, const psi_msg *m, uint64_t *seq, kv_push_aux *a)
{
    const psi_hdr *h = &m->hdr;
    const uint64_t *k = m->seg[PSI_SEG_KEYS];
    int push = (h->flags & PSI_F_PUSH) != 0;
    if (h->sender >= PSI_MAX_NODES || !(h->flags & (PSI_F_PUSH | PSI_F_PULL))) return PS_ERR_PROTO;
    if (h->flags & PSI_F_REPL) return check_forward(t, m, seq, a);
    if ((h->key_count == 0 && !(t->bsp && push)) || ((uintptr_t)k & 7)) return PS_ERR_PROTO;
    for (uint64_t i = 1; i < h->key_count; i++)
        if (k[i] < k[i - 1] || (push && k[i] == k[i - 1])) return PS_ERR_PROTO;
    if (t->dense && h->key_count &&
        (k[0] < t->opts.dense_lo || k[h->key_count - 1] >= t->opts.dense_hi))
        return PS_ERR_INVAL;
    if (!push && t->bsp) {
        if (h->seg_len[PSI_SEG_AUX] != 8) return PS_ERR_PROTO;
        *seq = psi_get_u64(m->seg[PSI_SEG_AUX]);
    }
    if (!push) return PS_OK;
    if (t->var) {
        int rv = psi_kv_var_check(t, m);
        if (rv != 0) return rv;
    } else if (h->flags & PSI_F_TRAIN) { /* the values follow (train.c) */
        if (h->seg_len[PSI_SEG_VALS] || !psi_kv_train_ok(t)) return PS_ERR_PROTO;
    } else if (h->seg_len[PSI_SEG_VALS] != h->key_count * t->vbytes) {
        return PS_ERR_PROTO;
    }
    if (h->seg_len[PSI_SEG_AUX] != PSI_PUSH_AUX) return PS_ERR_PROTO;
    psi_kv_aux_get(m->seg[PSI_SEG_AUX], a);
    *seq = a->seq;
    if (a->origin == PSI_ID_NONE || a->via == PSI_ID_NONE ||
        ((a->origin != psi_kv_id() || a->via) && !t->k))
        return PS_ERR_PROTO;
    return *seq ? PS_OK : PS_ERR_PROTO;
}

/* ---- storage access ------------------------------------------------------------- */

/* Blocks for every key of the push (inserting and initialising new ones);
 * PS_ERR_TOOBIG if any could not be had. */
int psi_kv_blocks(ps_table *t, const uint64_t *keys, size_t n, void **blocks)
{
    if (t->dense) {
        for (size_t i = 0; i < n; i++) {
            if (!(blocks[i] = psi_dense_get(t->dense, keys[i], 0))) {
                if (!(blocks[i] = psi_dense_get(t->dense, keys[i], 1))) return PS_ERR_TOOBIG;
                psi_update_init_block(&t->upd, keys[i], blocks[i]);
            }
        }
        return PS_OK;
    }
    uint8_t *ins = psi_buf_alloc(n);
    if (!ins) return PS_ERR_NOMEM;
    uint32_t *hint = psi_hints_for(t->hints, keys, n, psi_store_bytes(t->store));
    size_t missing = psi_store_upsert_batch_hint(t->store, keys, n, blocks, ins, hint);
    for (size_t i = 0; i < n; i++)
        if (ins[i] && blocks[i]) psi_update_init_block(&t->upd, keys[i], blocks[i]);
    psi_buf_free(ins);
    return missing ? PS_ERR_TOOBIG : PS_OK;
}

/* ---- apply stages (one chosen at open: psi_kv_server_stages) ---------------------- */

/* A fixed-width push: every key's block, then the update function. */
static int apply_fixed(ps_table *t, const psi_msg *m, uint64_t seq)
{
    (void)seq;
    size_t n = m->hdr.key_count;
    void **blocks = psi_buf_alloc(PSI_MAX(n, 1) * sizeof(void *));
    if (!blocks) return PS_ERR_NOMEM;
    int rv = psi_kv_blocks(t, m->seg[PSI_SEG_KEYS], n, blocks);
    if (rv == 0) psi_update_apply_batch(&t->upd, m->seg[PSI_SEG_KEYS], blocks, m->seg[PSI_SEG_VALS], n);
    else PSI_ERROR("table %s: push of %zu keys refused: %s", t->name, n, ps_strerror(rv));
    psi_buf_free(blocks);
    return rv;
}

/* Replicated: only keys whose segments this node heads. */
static int apply_owned(ps_table *t, const psi_msg *m, uint64_t seq)
{
    if (!t->repl->heads(t, m->seg[PSI_SEG_KEYS], m->hdr.key_count))
        return PSI_ERR_MOVED; /* handed to a server that joined: the worker resends */
    return apply_fixed(t, m, seq);
}

static int apply_var(ps_table *t, const psi_msg *m, uint64_t seq)
{
    (void)seq;
    return psi_kv_var_apply(t, m);
}

/* Forwards (valid only on replicated tables) go to the plug-in; pushes to
 * the table's apply stage. */
static int do_apply(ps_table *t, const psi_msg *m, uint64_t seq)
{
    if (m->hdr.flags & PSI_F_REPL) return t->repl->apply(t, m); /* checked: t->repl */
    return t->pipe.apply(t, m, seq);
}

/* Copy the first vb bytes of each found block to out, in order; a key
 * never pushed reads as the table's initializer.  The common value widths
 * get a copy of constant size (a move, not a call). */
static void gather_values(const ps_table *t, const uint64_t *keys, void *const *blocks, size_t n,
                          size_t vb, uint8_t *out)
{
    int zero = t->upd.init == PS_INIT_ZERO;
    for (size_t i = 0; i < n; i++) {
        uint8_t *o = out + i * vb;
        if (!blocks[i] && zero && vb == 4) memset(o, 0, 4);
        else if (!blocks[i]) psi_update_init_values(&t->upd, keys[i], o);
        else if (vb == 4) memcpy(o, blocks[i], 4);
        else if (vb == 8) memcpy(o, blocks[i], 8);
        else memcpy(o, blocks[i], vb);
    }
}

/* The current values of the request's keys, in order, into `out`.  A
 * sparse table looks its keys up in one prefetched batch.  Returns 0 or
 * PS_ERR_NOMEM. */
static int do_read(ps_table *t, const psi_msg *m, uint8_t *out)
{
    size_t n = m->hdr.key_count, vb = t->vbytes;
    const uint64_t *keys = m->seg[PSI_SEG_KEYS];
    if (t->dense) {
        for (size_t i = 0; i < n; i++) {
            const void *b = psi_dense_get(t->dense, keys[i], 0);
            if (b) memcpy(out + i * vb, b, vb);
            else psi_update_init_values(&t->upd, keys[i], out + i * vb);
        }
        return 0;
    }
    void **blocks = psi_buf_alloc(n * sizeof(void *));
    if (!blocks) return PS_ERR_NOMEM;
    uint32_t *hint = psi_hints_for(t->hints, keys, n, psi_store_bytes(t->store));
    psi_store_find_batch_hint(t->store, keys, n, blocks, hint);
    gather_values(t, keys, blocks, n, vb, out);
    psi_buf_free(blocks);
    return 0;
}

/* The values are read straight into the answer's segment, a buffer of the
 * large-buffer cache that the message returns when it is freed (after the
 * transport has sent it): one copy of the values on the server, not two,
 * and no fresh pages for a large answer. */
void psi_kv_answer_pull(ps_table *t, const psi_msg *m)
{
    if (t->var) {
        psi_kv_var_answer_pull(t, m);
        return;
    }
    size_t len = m->hdr.key_count * t->vbytes;
    psi_msg *r = psi_msg_new(PSI_MSG_DATA);
    if (!r) return; /* the worker resends */
    uint8_t *vals = len ? psi_buf_alloc(len) : NULL;
    if (len && (!vals || do_read(t, m, vals) != 0)) {
        psi_buf_free(vals);
        r->hdr.arg = (uint32_t)PS_ERR_NOMEM;
    } else if (len) {
        r->seg[PSI_SEG_VALS] = vals;
        r->hdr.seg_len[PSI_SEG_VALS] = len;
        r->borrowed = 1u << PSI_SEG_VALS;
        r->on_free = psi_buf_free;
        r->on_free_arg = vals;
    }
    psi_kv_reply_msg(t, m, r);
}

/* Answer a request whose push part (if any) is settled with `status`;
 * `iter` is the iteration a BSP pull must see.  Returns 1 if the request
 * was kept to be answered later (BSP), 0 if the caller still owns it. */
int psi_kv_answer(ps_table *t, psi_msg *m, int status, uint64_t iter)
{
    if (status != 0 || !(m->hdr.flags & PSI_F_PULL)) {
        psi_kv_reply(t, m, status, NULL, 0);
        return 0;
    }
    if (t->bsp) return psi_kv_bsp_pull(t, m, iter);
    psi_kv_answer_pull(t, m);
    return 0;
}

/* ---- pushes in sender order ------------------------------------------------------ */

/* Settle stages: answer an applied push now or, when it has backups to
 * reach first, once they acknowledged it; 1 if `m` was kept. */
static int settle_now(ps_table *t, psi_msg *m, int st, uint64_t seq, const kv_push_aux *a)
{
    (void)a;
    return psi_kv_answer(t, m, st, seq);
}

static int settle_backups(ps_table *t, psi_msg *m, int st, uint64_t seq, const kv_push_aux *a)
{
    if (!(m->hdr.flags & PSI_F_REPL) && t->repl->after_apply(t, m, st, a)) return 1;
    return psi_kv_answer(t, m, st, seq);
}

/* Apply push `m`, the next of its sender, and answer it or keep it until
 * its backups have it; *kept says which.  PS_ERR_NOMEM if it could not even
 * be kept (replicated BSP): nothing applied, the sender resends it. */
static int apply_push(ps_table *t, psi_msg *m, uint64_t seq, const kv_push_aux *a, int *kept)
{
    /* read m's header first: a kept push may be answered, and freed, at once */
    uint32_t sender = m->hdr.sender;
    int repl = (m->hdr.flags & PSI_F_REPL) != 0;
    uint64_t nkeys = m->hdr.key_count;
    if (t->bsp && t->k && !repl) {
        *kept = psi_kv_bsp_push_kept(t, m, seq, 0);
        if (!*kept) return PS_ERR_NOMEM;
    } else {
        int st = do_apply(t, m, seq);
        if (st != 0) psi_kv_refused_note(t, sender, seq, st); /* a resend is refused too */
        *kept = t->pipe.settle(t, m, st, seq, a);
    }
    t->applied[sender] = (int64_t)seq;
    t->stats.pushes_applied++;
    if (!repl) t->stats.keys_pushed += nkeys;
    return PS_OK;
}

/* A push already applied came again: answer it, unless the first copy is
 * still waiting for its backups (that one will be answered). */
int psi_kv_answer_dup(ps_table *t, psi_msg *m, uint64_t seq, const kv_push_aux *a)
{
    uint32_t s = m->hdr.sender;
    t->stats.pushes_deduped++;
    if (t->repl && !(m->hdr.flags & PSI_F_REPL) &&
        (t->bsp ? psi_kv_bsp_waiting(t, 0, s, seq) : t->repl->pending(t, a->origin, s, seq)))
        return 0;
    return psi_kv_answer(t, m, refused_status(t, s, seq), seq);
}

static void do_park(ps_table *t, psi_msg *m, uint64_t seq, const kv_push_aux *a)
{
    kv_parked *p = malloc(sizeof(*p));
    if (!p) { /* the sender resends it */
        psi_msg_free(m);
        return;
    }
    *p = (kv_parked){t->parked, m, seq, *a};
    t->parked = p;
}

/* Apply parked pushes of `sender` that are now next in line. */
void psi_kv_drain(ps_table *t, uint32_t sender)
{
    for (int progress = 1; progress;) {
        progress = 0;
        for (kv_parked **pp = &t->parked; *pp;) {
            kv_parked *p = *pp;
            int64_t last = t->applied[sender];
            if (p->msg->hdr.sender != sender || p->seq > (uint64_t)last + 1) {
                pp = &p->next;
                continue;
            }
            *pp = p->next;
            int kept = 0;
            if (p->seq == (uint64_t)last + 1) {
                if (apply_push(t, p->msg, p->seq, &p->aux, &kept) != 0) {
                    psi_msg_free(p->msg); /* resent by its sender */
                    free(p);
                    return;
                }
                progress = 1;
            } else {
                kept = psi_kv_answer_dup(t, p->msg, p->seq, &p->aux);
            }
            if (!kept) psi_msg_free(p->msg);
            free(p);
        }
    }
}

static void do_push(ps_table *t, psi_msg *m, uint64_t seq, const kv_push_aux *a)
{
    uint32_t s = m->hdr.sender;
    uint64_t last = (uint64_t)t->applied[s];
    int kept = 0;
    if (t->k && !(m->hdr.flags & PSI_F_REPL) && a->origin == psi_kv_id())
        refused_prune(t, s, a->lo);
    if (m->hdr.flags & PSI_F_TRAIN) {
        psi_kv_train_open(t, m, seq, a);
        return;
    }
    if (seq <= last) { /* a resend or duplicate: already applied */
        kept = psi_kv_answer_dup(t, m, seq, a);
    } else if (seq == last + 1) {
        if (apply_push(t, m, seq, a, &kept) != 0) {
            psi_msg_free(m);
            return;
        }
        psi_kv_drain(t, s);
        if (!t->k && t->deferred.n && !t->trains.open) /* a train waiting for this push */
            psi_kv_server_run_deferred(t);
    } else {
        do_park(t, m, seq, a);
        return;
    }
    if (!kept) psi_msg_free(m);
}

/* Requests from a view this node has not installed yet wait for it: the
 * sender may already route to this node keys it takes over in that view.
 * Always takes m (kept, or dropped for the sender to resend). */
#define MAX_DEFERRED 65536 /* beyond, requests are dropped: their senders resend them */
#define MAX_DEFERRED_BYTES (256ull << 20) /* ... and beyond this much payload: a slow
                                           * server must not hold every resend it is sent */
int psi_kv_defer(ps_table *t, psi_msg *m)
{
    uint64_t len = psi_msg_payload_len(&m->hdr);
    int fits = t->deferred.n < MAX_DEFERRED && t->deferred.bytes + len <= MAX_DEFERRED_BYTES;
    psi_msg **d = fits ? realloc(t->deferred.msgs, (t->deferred.n + 1) * sizeof(*d)) : NULL;
    if (!d) {
        psi_msg_free(m);
        return 1;
    }
    t->deferred.msgs = d;
    d[t->deferred.n++] = m;
    t->deferred.bytes += len;
    return 1;
}

/* ---- gate stages (chosen at open): 1 if the stage took m -------------------------- */

/* Replaced by a live successor: serve nothing stale. */
static int gate_replaced(ps_table *t, psi_msg *m)
{
    if (!t->dead[psi_kv_id()]) return 0;
    psi_msg_free(m);
    return 1;
}

/* A fragment of a large push (train.c). */
static int gate_frag(ps_table *t, psi_msg *m)
{
    if (!(m->hdr.flags & PSI_F_FRAG)) return 0;
    psi_kv_train_frag(t, m);
    return 1;
}

/* A push in fragments is being applied: everything else waits. */
static int gate_train(ps_table *t, psi_msg *m)
{
    if (!t->trains.open) return 0;
    psi_kv_train_hold(t, m);
    return 1;
}

/* From a view this node has not installed yet. */
static int gate_view(ps_table *t, psi_msg *m)
{
    return m->hdr.epoch > t->eff_epoch && psi_kv_defer(t, m);
}

/* A new head waits until the old heads' forwards are everywhere (join). */
static int gate_join(ps_table *t, psi_msg *m)
{
    return !(m->hdr.flags & PSI_F_REPL) && t->repl->join_waiting(t) && psi_kv_defer(t, m);
}

/* A forward from a server declared dead: it may be stale. */
static int gate_dead_forwarder(ps_table *t, psi_msg *m)
{
    if (!(m->hdr.flags & PSI_F_REPL) ||
        (m->hdr.sender < PSI_MAX_NODES && !t->dead[m->hdr.sender]))
        return 0;
    psi_msg_free(m);
    return 1;
}

/* Pull stages: whether this node serves the keys of pull `m`. */
static int pull_any(ps_table *t, const psi_msg *m)
{
    (void)t, (void)m;
    return 1;
}

static int pull_owned(ps_table *t, const psi_msg *m)
{
    return t->repl->heads(t, m->seg[PSI_SEG_KEYS], m->hdr.key_count);
}

void psi_kv_server_stages(ps_table *t)
{
    int n = 0;
    if (t->repl) t->pipe.gate[n++] = gate_replaced;
    t->pipe.gate[n++] = gate_frag;
    t->pipe.gate[n++] = gate_train;
    if (t->repl) {
        t->pipe.gate[n++] = gate_view;
        t->pipe.gate[n++] = gate_join;
        t->pipe.gate[n++] = gate_dead_forwarder;
    }
    t->pipe.ngates = n;
    t->pipe.apply = t->bsp ? psi_kv_bsp_push : t->var ? apply_var
                  : t->repl ? apply_owned : apply_fixed;
    t->pipe.settle = t->repl ? settle_backups : settle_now;
    t->pipe.pull_here = t->repl && !t->bsp ? pull_owned : pull_any;
}

/* ---- the pipeline ---------------------------------------------------------------- */

/* Decode and validate m (the stage between the gates and the order):
 * 0, or m was answered or dropped here. */
static int admit(ps_table *t, psi_msg *m, uint64_t *seq, kv_push_aux *a)
{
    int rv = (m->hdr.flags & PSI_F_REPL) ? 0 : psi_kv_decode(t, m);
    if (rv == PSI_ERR_KEYCACHE_MISS) {
        psi_kv_reply(NULL, m, rv, NULL, 0); /* the worker resends the key list */
        psi_msg_free(m);
        return rv;
    }
    if (rv == 0) rv = check_request(t, m, seq, a);
    if (rv != 0) {
        PSI_WARN("table %s: bad request from node %u (%llu keys): %s", t->name, m->hdr.sender,
                 (unsigned long long)m->hdr.key_count, ps_strerror(rv));
        if (m->hdr.sender < PSI_MAX_NODES) psi_kv_reply(t, m, rv, NULL, 0);
        psi_msg_free(m);
    }
    return rv;
}

/* gate, admit, then a push is ordered (do_push: apply and settle) and a
 * pull answered. */
static void do_request(ps_table *t, psi_msg *m)
{
    uint64_t seq = 0;
    kv_push_aux a = {0};
    for (int i = 0; i < t->pipe.ngates; i++)
        if (t->pipe.gate[i](t, m)) return;
    if (admit(t, m, &seq, &a) != 0) return;
    if ((m->hdr.flags & PSI_F_PUSH) && !(m->hdr.flags & PSI_F_REPL) && a.via) {
        t->repl->takeover_push(t, m, &a); /* checked: a.via needs t->k */
    } else if (m->hdr.flags & PSI_F_PUSH) {
        do_push(t, m, seq, &a);
    } else if (!t->pipe.pull_here(t, m)) {
        psi_kv_reply(t, m, PSI_ERR_MOVED, NULL, 0); /* handed over: asked again elsewhere */
        psi_msg_free(m);
    } else if (!psi_kv_answer(t, m, PS_OK, seq)) {
        psi_msg_free(m);
    }
}

void psi_kv_server_on_request(ps_table *t, psi_msg *m)
{
    pthread_mutex_lock(&t->lock);
    do_request(t, m);
    if (t->repl && t->repl->join_take_run(t)) psi_kv_server_run_deferred(t);
    pthread_mutex_unlock(&t->lock);
}

void psi_kv_server_run_deferred(ps_table *t)
{
    psi_msg **d = t->deferred.msgs;
    size_t n = t->deferred.n;
    t->deferred.msgs = NULL;
    t->deferred.n = 0;
    t->deferred.bytes = 0;
    for (size_t i = 0; i < n; i++) do_request(t, d[i]);
    free(d);
}

/* ---- view changes and the timer ---------------------------------------------------- */

void psi_kv_server_on_view(ps_table *t, const uint32_t *dead, int ndead)
{
    if (t->bsp) psi_kv_bsp_on_view(t, dead, ndead);
    if (t->repl) t->repl->on_view(t, dead, ndead);
    else psi_kv_train_on_view(t, dead, ndead);
}

void psi_kv_server_tick(ps_table *t, uint64_t now_ms)
{
    if (t->repl) t->repl->tick(t, now_ms);
    else psi_kv_train_tick(t, now_ms);
}
