/*
 * chain.c -- chain replication of a table's key ranges, and failover.
 *
 * Design.  The ring is built once from every server of the first view; a
 * segment's chain is the first k + 1 LIVE servers met walking the ring from
 * its point (psi_ring_seg_chain), so when a server dies its segments fall to
 * their first live successor, which was their first backup, and the rest of
 * the ring does not move.  Both workers and servers keep that live chain per
 * segment (t->rs.eff), recomputed on every view change.
 *
 * The owner applies a push, then forwards the resulting blocks (values and
 * update state, so a backup needs no update function and stays identical to
 * its owner) of each key to the k backups of its segment, and answers the
 * worker only when every backup acknowledged: an acknowledged push is on
 * k + 1 servers.  The owner fans out to its k backups in parallel rather
 * than down a line: the same guarantee (the "tail" has it before the
 * acknowledgement) with one hop of latency instead of k.  Forwards from one
 * owner to one backup carry their own sequence numbers (t->rs.fwd_seq at the
 * owner, t->applied[owner] at the backup, the same in-order / dedup / park
 * logic as workers' pushes), so a backup applies them exactly once, in the
 * owner's order, even when the transport drops, duplicates or delays them.
 *
 * Exactly once across a failover.  A worker numbers its pushes per server;
 * a forward also carries that push's (origin server, worker, sequence
 * number) and the worker's low watermark, and the backup records them in a
 * "seen" set per (forwarder, origin, worker): the pushes counted for that
 * origin whose keys of the forwarder's ranges it holds.  When a server dies,
 * the worker resends each push still unacknowledged there to the new heads
 * of its keys' chains, still counted for its origin and now naming the dead
 * server ("via"); a new head applies that part unless it applied it already
 * (its own seen sets, per via), or via forwarded it, or the origin did (two
 * deaths at once, k >= 2: the server between may never have told us).
 * Keying by the forwarder, and keeping a head's own applies apart, matters:
 * after a death two new heads each take over part of one push, and one
 * part, applied here or forwarded here, must not make another look held.
 * A seen set stays small: everything at or below the worker's watermark is
 * pruned.
 *
 * Restoring k: after a view change, the head of each segment sends the
 * segment's blocks to every backup new in its chain (to every backup, if
 * the head changed), through the same ordered forward stream, so later
 * forwards land on top of the copy; then what those blocks hold (its clock
 * per worker and its seen sets), so that the backup, once head, does not
 * apply one of them again.
 *
 * A server joining the cluster (join.c) puts its points on the ring and is
 * first an extra, last member of the chains it will be in (eff[k + 1]):
 * heads copy to it and forward to it like to a backup.  When it takes
 * over, a segment's head changes while the old head lives: nothing is
 * copied then (the old head drains its forwards first), and the old head
 * refuses the segment's requests (PSI_ERR_MOVED) instead of serving them.
 *
 * Everything here runs under the table lock (the I/O thread, the view hook
 * and the timer).  Never: answer a push before its backups have it; accept a
 * forward from a server declared dead (it may be a stale one resumed after a
 * pause); apply a push a backup already held.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "replica/replica.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

#define COPY_CHUNK 65536 /* keys per message when copying a segment */
#define MAX_BACKUPS 64   /* distinct backups one push or copy fans out to */

/* The ops (psi_repl_chain_ops, at the end of this file): contracts in kv/kv_repl.h. */
static int psi_repl_init(ps_table *t);
static void psi_repl_free(ps_table *t);
static int psi_repl_heads(ps_table *t, const uint64_t *keys, size_t n);
static int psi_repl_apply(ps_table *t, const psi_msg *m);
static int psi_repl_after_apply(ps_table *t, psi_msg *m, int st, const kv_push_aux *a);
static int psi_repl_pending(const ps_table *t, uint32_t origin, uint32_t sender, uint64_t seq);
static void psi_repl_takeover_push(ps_table *t, psi_msg *m, const kv_push_aux *a);
static int psi_repl_bsp_forward(ps_table *t, psi_store *sum, psi_msg **msgs, int nmsgs,
                                void *iteration);
static void psi_repl_note_applied(ps_table *t, uint32_t via, uint32_t origin, uint32_t sender,
                                  uint64_t seq, uint64_t lo);
static void psi_repl_on_ack(ps_table *t, const psi_msg *m);
static void psi_repl_tick(ps_table *t, uint64_t now_ms);
static void psi_repl_server_on_view(ps_table *t, const uint32_t *dead, int ndead);
/* Record that `via` forwarded push (origin, sender, seq) here. */
static void psi_repl_note_held(ps_table *t, uint32_t via, uint32_t origin, uint32_t sender,
                               uint64_t seq, uint64_t lo);

/* The pushes counted for one (origin, sender) that this node holds. */
typedef struct kv_seen {
    uint64_t lo;    /* every seq <= lo is held or will never be resent */
    uint64_t *seqs; /* held seqs above lo, ascending */
    uint32_t n, cap;
} kv_seen;

/* A push, or a BSP iteration, waiting for its backups' acknowledgements. */
struct kv_pend {
    kv_pend *next;
    psi_msg *req;    /* the push, answered then; NULL for an iteration */
    void *iteration; /* the BSP iteration made durable then (bsp.c) */
    int left, st;
    kv_push_aux aux;
};

/* A forward not yet acknowledged; kept for resends. */
struct kv_fwd {
    kv_fwd *next;
    kv_pend *p; /* NULL: a segment copy nobody waits for */
    uint32_t to;
    uint64_t q;
    psi_msg *msg;
    uint64_t sent_ms;
};

/* One backup's share of a forward being built. */
typedef struct part {
    uint32_t to;
    size_t n, cap, want; /* want: the keys it will hold, counted first (part_reserve) */
    uint64_t *keys;
    uint8_t *blocks;
} part;

/* Serving: not dead, and not the server still joining. */
static int is_live(void *arg, uint32_t id)
{
    const ps_table *t = arg;
    return id < PSI_MAX_NODES && !t->dead[id] && id != t->rs.joiner;
}

static int is_live_or_joining(void *arg, uint32_t id)
{
    const ps_table *t = arg;
    return id < PSI_MAX_NODES && !t->dead[id];
}

static size_t block_bytes(const ps_table *t) { return psi_update_block_bytes(&t->upd); }

/* ---- chains ------------------------------------------------------------------------ */

/* One segment's row of eff: its live chain, then the joiner if it will be
 * in that chain once it serves. */
static void chain_row(ps_table *t, uint32_t seg, uint32_t *row)
{
    size_t w = (size_t)t->rs.w, n = psi_ring_seg_chain(t->ring, seg, is_live, t, row, w - 1);
    uint32_t f[8];
    for (size_t j = n; j < w; j++) row[j] = PSI_ID_NONE;
    if (t->rs.joiner == PSI_ID_NONE) return;
    n = psi_ring_seg_chain(t->ring, seg, is_live_or_joining, t, f, PSI_MIN(w - 1, 8));
    for (size_t j = 0; j < n; j++)
        if (f[j] == t->rs.joiner) row[w - 1] = t->rs.joiner;
}

int psi_repl_compute(ps_table *t, const uint32_t *dead, int ndead, uint32_t **old_rows)
{
    psi_view v;
    psi_ring *next = NULL;
    int nids = 0;
    uint32_t *ids = malloc(PSI_MAX_NODES * sizeof(uint32_t)), *eff = NULL;
    int rv = ids ? psi_kv_view(&v) : PS_ERR_NOMEM;
    if (rv != 0) {
        free(ids);
        return rv;
    }
    for (int i = 0; i < ndead; i++)
        if (dead[i] < PSI_MAX_NODES) t->dead[dead[i]] = 1;
    t->rs.joiner = PSI_ID_NONE;
    for (uint32_t i = 0; i < v.n; i++) {
        const psi_node *nd = &v.nodes[i];
        if (nd->alive == PSI_NODE_DEAD) t->dead[nd->id] = 1;
        else if (nd->alive == PSI_NODE_JOINING && nd->role == PS_ROLE_SERVER) t->rs.joiner = nd->id;
    }
    if (v.epoch > t->eff_epoch) t->eff_epoch = v.epoch;
    rv = psi_kv_ring_next(t, &v, &next, ids, &nids);
    psi_view_free(&v);
    const psi_ring *ring = next ? next : t->ring;
    size_t w = (size_t)t->rs.w, nsegs = ring ? psi_ring_nsegs(ring) : 0;
    if (rv == 0 && !(eff = malloc(nsegs * w * sizeof(uint32_t)))) rv = PS_ERR_NOMEM;
    if (rv == 0 && old_rows && !(*old_rows = malloc(nsegs * w * sizeof(uint32_t))))
        rv = PS_ERR_NOMEM;
    if (rv != 0) {
        psi_ring_free(next);
        free(ids);
        free(eff);
        return rv;
    }
    uint32_t *handed = next && t->rs.handed ? malloc(nsegs * sizeof(uint32_t)) : NULL;
    for (uint32_t seg = 0; (old_rows || handed) && seg < nsegs; seg++) {
        uint64_t lo, hi; /* a new ring's segments cut the old ones finer */
        psi_ring_seg_bounds(ring, seg, &lo, &hi);
        uint32_t oseg = psi_ring_seg_of(t->ring, lo);
        const uint32_t *o = t->rs.eff ? psi_kv_chain(t, oseg) : NULL;
        for (size_t j = 0; old_rows && j < w; j++) (*old_rows)[seg * w + j] = o ? o[j] : PSI_ID_NONE;
        if (handed) handed[seg] = t->rs.handed[oseg];
    }
    if (next && t->rs.handed) { /* (no memory: forgotten, as if nothing had been handed) */
        free(t->rs.handed);
        t->rs.handed = handed;
    }
    if (next) {
        psi_kv_ring_install(t, next, ids, nids);
        PSI_INFO("table %s: the ring holds %d servers now", t->name, nids);
    }
    free(ids);
    free(t->rs.eff);
    t->rs.eff = eff;
    for (uint32_t seg = 0; seg < nsegs; seg++) chain_row(t, seg, eff + seg * w);
    return PS_OK;
}

static int psi_repl_init(ps_table *t)
{
    int rv = psi_kv_ring(t);
    if (rv != 0) return rv;
    t->k = t->opts.replication;
    t->rs.w = t->k + 2;
    t->rs.joiner = PSI_ID_NONE;
    if (t->k + 1 > t->nservers) {
        PSI_ERROR("table %s: replication %d needs at least %d servers (the cluster has %d)",
                  t->name, t->k, t->k + 1, t->nservers);
        return PS_ERR_INVAL;
    }
    if (!(t->dead = calloc(PSI_MAX_NODES, 1))) return PS_ERR_NOMEM;
    if (!t->tq && (!(t->rs.fwd_seq = calloc(PSI_MAX_NODES, sizeof(uint64_t))) ||
                   !(t->rs.seen = psi_store_new(sizeof(kv_seen))) || psi_join_init(t) != 0))
        return PS_ERR_NOMEM;
    return psi_repl_compute(t, NULL, 0, NULL);
}

static int free_seen(void *arg, uint64_t key, void *block)
{
    (void)arg, (void)key;
    free(((kv_seen *)block)->seqs);
    return 0;
}

static void psi_repl_free(ps_table *t)
{
    while (t->rs.fwds) {
        kv_fwd *f = t->rs.fwds;
        t->rs.fwds = f->next;
        psi_msg_free(f->msg);
        free(f);
    }
    while (t->rs.pends) {
        kv_pend *p = t->rs.pends;
        t->rs.pends = p->next;
        psi_msg_free(p->req);
        free(p);
    }
    if (t->rs.seen) psi_store_foreach(t->rs.seen, free_seen, NULL);
    psi_store_free(t->rs.seen);
    psi_join_free(t);
    free(t->rs.handed);
    t->rs.handed = NULL;
    free(t->rs.eff);
    free(t->dead);
    free(t->rs.fwd_seq);
    t->rs.seen = NULL;
    t->rs.eff = NULL;
    t->dead = NULL;
    t->rs.fwd_seq = NULL;
}

/* ---- seen sets ------------------------------------------------------------------------ */

/* The seen set of (via, origin, sender): what `via` forwarded (or copied) to
 * this node; with APPLIED, what this node applied itself of the parts moved
 * here off `via`.  Two namespaces: a head's own part of a push must not make
 * another part of it, moved here later off another server, look held. */
#define APPLIED (1ull << 63)
/* ... and with HANDED, what a live head held when it handed segments to
 * this node (a join), sent at that moment (psi_repl_send_held): later
 * forwards from it say nothing of the keys it no longer heads. */
#define HANDED (1ull << 62)

static kv_seen *seen_key(ps_table *t, uint64_t key);

static kv_seen *seen_get(ps_table *t, uint32_t via, uint32_t origin, uint32_t sender)
{
    return seen_key(t, (uint64_t)via << 40 | (uint64_t)origin << 20 | sender); /* ids < 2^20 */
}

static kv_seen *seen_key(ps_table *t, uint64_t key)
{
    int inserted;
    _Static_assert(PSI_MAX_NODES <= (1 << 20), "node ids fit 20 bits");
    kv_seen *s = psi_store_upsert(t->rs.seen, key, &inserted);
    if (s && inserted) memset(s, 0, sizeof(*s));
    return s;
}

static int seen_has(const kv_seen *s, uint64_t seq)
{
    if (seq <= s->lo) return 1;
    size_t i = psi_search_u64(s->seqs, 0, s->n, seq, 0);
    return i < s->n && s->seqs[i] == seq;
}

/* Record that push `seq` is held, and that nothing <= lo will be resent. */
static void seen_note(kv_seen *s, uint64_t seq, uint64_t lo)
{
    if (lo > s->lo) {
        size_t cut = psi_search_u64(s->seqs, 0, s->n, lo, 1);
        if (cut) memmove(s->seqs, s->seqs + cut, (s->n - cut) * sizeof(uint64_t));
        s->n -= (uint32_t)cut;
        s->lo = lo;
    }
    if (seen_has(s, seq)) return;
    if (s->n == s->cap) {
        uint32_t nc = s->cap ? s->cap * 2 : 8;
        uint64_t *q = realloc(s->seqs, nc * sizeof(uint64_t));
        if (!q) return; /* a resend would then be applied again: log it */
        s->seqs = q;
        s->cap = nc;
    }
    size_t i = psi_search_u64(s->seqs, 0, s->n, seq, 0);
    memmove(s->seqs + i + 1, s->seqs + i, (s->n - i) * sizeof(uint64_t));
    s->seqs[i] = seq;
    s->n++;
}

/* ---- forwards ------------------------------------------------------------------------ */

static part *part_for(part *ps, int *np, uint32_t to)
{
    for (int i = 0; i < *np; i++)
        if (ps[i].to == to) return &ps[i];
    if (*np == MAX_BACKUPS) return NULL;
    ps[*np] = (part){.to = to};
    return &ps[(*np)++];
}

/* A buffer of `len` bytes holding the first `keep` bytes of `old`, which is
 * freed (psi_buf_alloc: forwards' arrays are mid-size buffers, outside the
 * heap); NULL on no memory, `old` then kept. */
static void *buf_grow(void *old, size_t keep, size_t len)
{
    void *p = psi_buf_alloc(len);
    if (!p) return NULL;
    if (keep) memcpy(p, old, keep);
    psi_buf_free(old);
    return p;
}

/* Make room in p for `cap` keys; 0 or PS_ERR_NOMEM. */
static int part_grow(part *p, size_t cap, size_t bb)
{
    uint64_t *k = buf_grow(p->keys, p->n * sizeof(uint64_t), cap * sizeof(uint64_t));
    if (k) p->keys = k;
    uint8_t *b = buf_grow(p->blocks, p->n * bb, cap * bb);
    if (b) p->blocks = b;
    if (!k || !b) return PS_ERR_NOMEM;
    p->cap = cap;
    return PS_OK;
}

static int part_add(part *p, uint64_t key, const void *block, size_t bb)
{
    if (p->n == p->cap && part_grow(p, p->cap ? p->cap * 2 : 256, bb) != 0) return PS_ERR_NOMEM;
    p->keys[p->n] = key;
    memcpy(p->blocks + p->n * bb, block, bb);
    p->n++;
    return PS_OK;
}

/* Size p's arrays for its `want` keys at once: a forward of a push built by
 * doubling left a trail of freed arrays of every size below its own, and
 * arrays up to twice too large held until the backup acknowledged, the
 * largest share of a server's heap that comes and goes (heaptrack over a
 * soak).  0 or PS_ERR_NOMEM. */
static int part_reserve(part *p, size_t bb)
{
    return p->want <= p->cap ? PS_OK : part_grow(p, p->want, bb);
}

static void parts_free(part *ps, int np)
{
    for (int i = 0; i < np; i++) {
        psi_buf_free(ps[i].keys);
        psi_buf_free(ps[i].blocks);
    }
}

/* The bytes of one forward, shared by the copy kept for resends and every
 * message sent (their segments borrow them): no copy per send. */
typedef struct fwd_bytes {
    atomic_int refs;
    uint64_t *keys;
    uint8_t *blocks, *aux;
} fwd_bytes;

static void fwd_bytes_unref(void *arg)
{
    fwd_bytes *b = arg;
    if (atomic_fetch_sub(&b->refs, 1) != 1) return;
    psi_buf_free(b->keys);
    psi_buf_free(b->blocks);
    free(b->aux);
    free(b);
}

/* A message with header `h` borrowing `b` (one more reference); NULL on no memory. */
static psi_msg *fwd_msg(const psi_hdr *h, fwd_bytes *b)
{
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);
    if (!m) return NULL;
    m->hdr = *h;
    m->seg[PSI_SEG_KEYS] = b->keys;
    m->seg[PSI_SEG_VALS] = b->blocks;
    m->seg[PSI_SEG_AUX] = b->aux;
    m->borrowed = 1u << PSI_SEG_KEYS | 1u << PSI_SEG_VALS | 1u << PSI_SEG_AUX;
    atomic_fetch_add(&b->refs, 1);
    m->on_free = fwd_bytes_unref;
    m->on_free_arg = b;
    return m;
}

/* The bytes of p's keys [from, from + n) and `aux`: p's own arrays when the
 * forward is all of p (p is left empty), copies otherwise. */
static fwd_bytes *fwd_bytes_of(part *p, size_t from, size_t n, size_t bb, const uint8_t *aux,
                               size_t alen)
{
    fwd_bytes *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    atomic_init(&b->refs, 1);
    if (from == 0 && n == p->n) {
        b->keys = p->keys, b->blocks = p->blocks;
        p->keys = NULL, p->blocks = NULL, p->n = p->cap = 0;
    } else if (n) {
        b->keys = psi_buf_alloc(n * 8);
        b->blocks = psi_buf_alloc(n * bb);
        if (b->keys) memcpy(b->keys, p->keys + from, n * 8);
        if (b->blocks) memcpy(b->blocks, p->blocks + from * bb, n * bb);
    }
    if (alen && (b->aux = malloc(alen))) memcpy(b->aux, aux, alen);
    if ((n && (!b->keys || !b->blocks)) || (alen && !b->aux)) {
        fwd_bytes_unref(b);
        return NULL;
    }
    return b;
}

/* Send one forward of p's keys [from, from + n) to p->to, carrying the
 * pushes `aux` (na entries of PSI_FWD_AUX bytes; none for a copy); 0 or an
 * error. */
static int send_forward(ps_table *t, part *p, size_t from, size_t n, kv_pend *pend,
                        const uint8_t *aux, size_t na, int marker)
{
    size_t bb = block_bytes(t);
    psi_hdr h = {.version = PSI_WIRE_VERSION, .type = PSI_MSG_DATA,
                 .flags = PSI_F_REQUEST | PSI_F_PUSH | PSI_F_REPL,
                 .table = t->id, .key_count = n, .key_lo = n ? UINT64_MAX : 0,
                 .arg = (uint32_t)marker};
    for (size_t i = from; i < from + n; i++) { /* copies come in hash order */
        h.key_lo = PSI_MIN(h.key_lo, p->keys[i]);
        h.key_hi = PSI_MAX(h.key_hi, p->keys[i]);
    }
    if (marker) h.key_hi = t->eff_epoch; /* the view the marker speaks for */
    h.seg_len[PSI_SEG_KEYS] = n * 8;
    h.seg_len[PSI_SEG_VALS] = n * bb;
    h.seg_len[PSI_SEG_AUX] = na * PSI_FWD_AUX;
    fwd_bytes *b = fwd_bytes_of(p, from, n, bb, aux, na * PSI_FWD_AUX);
    kv_fwd *f = malloc(sizeof(*f));
    h.timestamp = t->rs.fwd_seq[p->to] + 1;
    psi_msg *keep = b && f ? fwd_msg(&h, b) : NULL, *send = keep ? fwd_msg(&h, b) : NULL;
    if (b) fwd_bytes_unref(b); /* the messages hold it now */
    if (!send) {
        /* the stream would have a hole: the backup would park every later forward */
        PSI_ERROR("table %s: out of memory forwarding to node %u", t->name, p->to);
        psi_msg_free(keep);
        free(f);
        return PS_ERR_NOMEM;
    }
    t->rs.fwd_seq[p->to]++;
    *f = (kv_fwd){t->rs.fwds, pend, p->to, h.timestamp, keep, psi_kv_now()};
    t->rs.fwds = f;
    t->stats.forwards++;
    if (pend) t->stats.keys_forwarded += n;
    psi_kv_net(p->to, send);
    return PS_OK;
}

static int psi_repl_after_apply(ps_table *t, psi_msg *m, int st, const kv_push_aux *a)
{
    size_t n = m->hdr.key_count, bb = block_bytes(t);
    const uint64_t *keys = m->seg[PSI_SEG_KEYS];
    if (st != 0 || n == 0) return 0;
    psi_ring_slice *ss = malloc(PSI_MIN(n, psi_ring_nsegs(t->ring)) * sizeof(*ss));
    part ps[MAX_BACKUPS];
    int np = 0, rv = ss ? PS_OK : PS_ERR_NOMEM;
    size_t ns = ss ? psi_ring_slice_keys(t->ring, keys, n, ss,
                                         PSI_MIN(n, psi_ring_nsegs(t->ring))) : 0;
    for (size_t i = 0; rv == 0 && i < ns; i++) { /* count each backup's keys */
        const uint32_t *c = psi_kv_chain(t, ss[i].seg);
        for (int j = 1; rv == 0 && j < t->rs.w; j++) {
            part *p = c[j] == PSI_ID_NONE ? NULL : part_for(ps, &np, c[j]);
            if (p) p->want += ss[i].end - ss[i].begin;
            else if (c[j] != PSI_ID_NONE) rv = PS_ERR_NOMEM;
        }
    }
    for (int i = 0; rv == 0 && i < np; i++) rv = part_reserve(&ps[i], bb);
    for (size_t i = 0; rv == 0 && i < ns; i++) {
        const uint32_t *c = psi_kv_chain(t, ss[i].seg);
        for (int j = 1; rv == 0 && j < t->rs.w; j++) {
            if (c[j] == PSI_ID_NONE) continue;
            part *p = part_for(ps, &np, c[j]);
            for (size_t x = ss[i].begin; p && rv == 0 && x < ss[i].end; x++)
                rv = part_add(p, keys[x], psi_store_find(t->store, keys[x]), bb);
            if (!p) rv = PS_ERR_NOMEM;
        }
    }
    free(ss);
    kv_pend *pend = np && rv == 0 ? malloc(sizeof(*pend)) : NULL;
    if (pend) {
        uint8_t aux[PSI_FWD_AUX];
        *pend = (kv_pend){t->rs.pends, m, NULL, np, PS_OK, *a};
        pend->aux.sender = m->hdr.sender;
        psi_kv_fwd_aux_put(aux, &pend->aux);
        t->rs.pends = pend;
        for (int i = 0; i < np; i++)
            if (send_forward(t, &ps[i], 0, ps[i].n, pend, aux, 1, 0) != 0) pend->left--;
        if (pend->left == 0) { /* nothing went out: answer now */
            t->rs.pends = pend->next;
            free(pend);
            pend = NULL;
        }
    } else if (np) {
        PSI_ERROR("table %s: out of memory replicating a push; answered unreplicated", t->name);
    }
    parts_free(ps, np);
    return pend != NULL;
}

static int psi_repl_pending(const ps_table *t, uint32_t origin, uint32_t sender, uint64_t seq)
{
    for (const kv_pend *p = t->rs.pends; p; p = p->next)
        if (p->req && p->aux.origin == origin && p->aux.sender == sender && p->aux.seq == seq)
            return 1;
    return 0;
}

/* Every backup of a segment this node heads, into parts (none if k = 0). */
static int backups_of_mine(ps_table *t, part *ps, int *np)
{
    size_t w = (size_t)t->rs.w, nsegs = psi_ring_nsegs(t->ring);
    for (size_t seg = 0; seg < nsegs; seg++) {
        const uint32_t *c = t->rs.eff + seg * w;
        for (size_t j = 1; c[0] == psi_kv_id() && j < w; j++)
            if (c[j] != PSI_ID_NONE && !part_for(ps, np, c[j])) return PS_ERR_NOMEM;
    }
    return PS_OK;
}

typedef struct bsp_parts {
    ps_table *t;
    part *ps;
    int np, rv;
} bsp_parts;

static int bsp_part_key(void *arg, uint64_t key, void *sum)
{
    bsp_parts *b = arg;
    ps_table *t = b->t;
    const uint32_t *c = psi_kv_chain(t, psi_ring_seg_of(t->ring, key));
    const void *block = psi_store_find(t->store, key);
    (void)sum;
    for (int j = 1; j < t->rs.w && block && b->rv == 0; j++) {
        if (c[j] == PSI_ID_NONE) continue;
        part *p = part_for(b->ps, &b->np, c[j]);
        b->rv = p ? part_add(p, key, block, block_bytes(t)) : PS_ERR_NOMEM;
    }
    return b->rv;
}

static int psi_repl_bsp_forward(ps_table *t, psi_store *sum, psi_msg **msgs, int nmsgs,
                                void *iteration)
{
    part ps[MAX_BACKUPS];
    bsp_parts b = {t, ps, 0, PS_OK};
    uint8_t *aux = malloc((size_t)PSI_MAX(nmsgs, 1) * PSI_FWD_AUX);
    kv_pend *pend = malloc(sizeof(*pend));
    /* every backup hears of the pushes, keys or not: if this node dies, the
     * workers move their parts of this iteration to all of them */
    int sent = 0;
    if (!aux || !pend || backups_of_mine(t, ps, &b.np) != 0 ||
        psi_store_foreach(sum, bsp_part_key, &b) != 0 || b.rv != 0) {
        PSI_ERROR("table %s: out of memory replicating an iteration; not replicated", t->name);
    } else if (b.np) {
        for (int i = 0; i < nmsgs; i++) {
            kv_push_aux a;
            psi_kv_aux_get(msgs[i]->seg[PSI_SEG_AUX], &a);
            a.sender = msgs[i]->hdr.sender;
            psi_kv_fwd_aux_put(aux + (size_t)i * PSI_FWD_AUX, &a);
        }
        *pend = (kv_pend){.next = t->rs.pends, .iteration = iteration, .left = b.np};
        t->rs.pends = pend;
        for (int i = 0; i < b.np; i++)
            if (send_forward(t, &ps[i], 0, ps[i].n, pend, aux, (size_t)nmsgs, 0) != 0) pend->left--;
        sent = pend->left > 0;
        if (!sent) t->rs.pends = pend->next;
    }
    if (!sent) free(pend);
    free(aux);
    parts_free(ps, b.np);
    return sent;
}

/* ---- the backup's side ------------------------------------------------------------------ */

static int psi_repl_apply(ps_table *t, const psi_msg *m)
{
    int handed = m->hdr.arg == PSI_MARK_HANDED;
    if (m->hdr.arg && !handed && m->hdr.key_count == 0) {
        psi_join_on_marker(t, m);
        return PS_OK;
    }
    size_t bb = block_bytes(t);
    const uint64_t *keys = m->seg[PSI_SEG_KEYS];
    const uint8_t *src = m->seg[PSI_SEG_VALS];
    uint64_t *mk = NULL; /* the keys of this node's segments, when not all are */
    uint8_t *mv = NULL;
    size_t n = psi_repl_only_mine(t, keys, src, m->hdr.key_count, bb, &mk, &mv);
    if (mk) keys = mk, src = mv;
    void **blocks = n != SIZE_MAX ? malloc(PSI_MAX(n, 1) * sizeof(void *)) : NULL;
    int rv = blocks ? psi_kv_blocks(t, keys, n, blocks) : PS_ERR_NOMEM;
    for (size_t i = 0; rv == 0 && i < n; i++) memcpy(blocks[i], src + i * bb, bb);
    free(blocks);
    free(mk);
    free(mv);
    for (size_t off = 0; rv == 0 && off < m->hdr.seg_len[PSI_SEG_AUX]; off += PSI_FWD_AUX) {
        kv_push_aux a;
        psi_kv_fwd_aux_get((const uint8_t *)m->seg[PSI_SEG_AUX] + off, &a);
        kv_seen *h = handed && a.origin != PSI_ID_NONE
                         ? seen_key(t, HANDED | (uint64_t)m->hdr.sender << 40 |
                                           (uint64_t)a.origin << 20 | a.sender)
                         : NULL;
        if (h) seen_note(h, a.seq, a.lo);
        else if (a.origin != PSI_ID_NONE)
            psi_repl_note_held(t, m->hdr.sender, a.origin, a.sender, a.seq, a.lo);
    }
    if (rv != 0)
        PSI_ERROR("table %s: could not store a forward from node %u: %s", t->name,
                  m->hdr.sender, ps_strerror(rv));
    return rv;
}

static void psi_repl_note_held(ps_table *t, uint32_t via, uint32_t origin, uint32_t sender,
                               uint64_t seq, uint64_t lo)
{
    kv_seen *s = seen_get(t, via, origin, sender);
    if (s) seen_note(s, seq, lo);
}

static void psi_repl_note_applied(ps_table *t, uint32_t via, uint32_t origin, uint32_t sender,
                                  uint64_t seq, uint64_t lo)
{
    kv_seen *s = seen_key(t, APPLIED | (uint64_t)via << 40 | (uint64_t)origin << 20 | sender);
    if (s) seen_note(s, seq, lo);
}

/* Whether this node holds the part of push a (from `sender`) moved here off
 * a->via: it applied that part already (a resend), or a->via forwarded it,
 * or its origin did (the first head of those keys: after two deaths at once,
 * k >= 2, the one between may never have told us). */
static int held_here(ps_table *t, const kv_push_aux *a, uint32_t sender)
{
    uint64_t key = (uint64_t)a->via << 40 | (uint64_t)a->origin << 20 | sender;
    kv_seen *s = seen_key(t, APPLIED | key);
    if (s && seen_has(s, a->seq)) return 1;
    /* a live via refused this part (a join): what it forwarded is another */
    if (t->dead[a->via] && (s = seen_key(t, key)) && seen_has(s, a->seq)) return 1;
    s = a->via != a->origin ? seen_get(t, a->origin, a->origin, sender) : NULL;
    return s && seen_has(s, a->seq);
}

/* BSP: the part of iteration a->seq moved here joins the iteration of that
 * number moved off a->via, unless this node holds it or has it already. */
static void takeover_bsp(ps_table *t, psi_msg *m, const kv_push_aux *a, int held)
{
    uint32_t sender = m->hdr.sender;
    if (held) { /* the dead server's aggregate reached us */
        t->stats.takeovers_held++;
        if (!psi_kv_answer(t, m, PS_OK, a->seq)) psi_msg_free(m);
    } else if (psi_kv_bsp_waiting(t, (uint64_t)a->via << 32 | a->origin, sender, a->seq)) {
        psi_msg_free(m); /* a resend: the first copy will be answered */
    } else if (!psi_kv_bsp_push_kept(t, m, a->seq, (uint64_t)a->via << 32 | a->origin)) {
        psi_msg_free(m); /* no memory: the worker resends it */
    } else {
        t->stats.takeovers_applied++;
    }
}

static int ring_server(const ps_table *t, uint32_t id)
{
    for (int i = 0; i < t->nservers; i++)
        if (t->servers[i] == id) return 1;
    return 0;
}

/* Whether key's segment came to this node from a live head (a join) that
 * held push a: that head forwarded or copied it here (seen under it). */
static int handed_held(ps_table *t, uint64_t key, const kv_push_aux *a, uint32_t sender)
{
    uint32_t from = t->rs.handed ? t->rs.handed[psi_ring_seg_of(t->ring, key)] : PSI_ID_NONE;
    if (from == PSI_ID_NONE || from == a->via) return 0; /* held_here looked there */
    kv_seen *s = seen_key(t, HANDED | (uint64_t)from << 40 | (uint64_t)a->origin << 20 | sender);
    return s && seen_has(s, a->seq);
}

/* Apply the keys of takeover push m that no head this node took them
 * over from held already (all of them, unless a server joined); PS_OK or
 * an error with nothing applied. */
static int takeover_apply(ps_table *t, const psi_msg *m, const kv_push_aux *a)
{
    size_t n = m->hdr.key_count, vb = t->vbytes, k = 0;
    const uint64_t *keys = m->seg[PSI_SEG_KEYS];
    const uint8_t *vals = m->seg[PSI_SEG_VALS];
    uint64_t *ks = malloc(PSI_MAX(n, 1) * 8);
    uint8_t *vs = malloc(PSI_MAX(n * vb, 1));
    void **blocks = malloc(PSI_MAX(n, 1) * sizeof(void *));
    int st = ks && vs && blocks ? PS_OK : PS_ERR_NOMEM;
    for (size_t i = 0; st == 0 && i < n; i++) {
        if (handed_held(t, keys[i], a, m->hdr.sender)) continue;
        ks[k] = keys[i];
        memcpy(vs + k * vb, vals + i * vb, vb);
        k++;
    }
    if (st == 0) st = psi_kv_blocks(t, ks, k, blocks);
    if (st == 0) psi_update_apply_batch(&t->upd, ks, blocks, vs, k);
    if (st == 0 && k < n) t->stats.takeovers_held++; /* in part */
    free(ks);
    free(vs);
    free(blocks);
    return st;
}

static void psi_repl_takeover_push(ps_table *t, psi_msg *m, const kv_push_aux *a)
{
    uint32_t sender = m->hdr.sender;
    /* moved off a dead server, or refused by a live one that handed the
     * keys over (a join: PSI_ERR_MOVED, the worker names it as via) */
    if (a->via >= PSI_MAX_NODES || !ring_server(t, a->via) || t->var) {
        PSI_WARN("table %s: push from node %u moved off node %u refused", t->name, sender,
                 a->via);
        psi_kv_reply(t, m, PS_ERR_PROTO, NULL, 0);
        psi_msg_free(m);
        return;
    }
    int held = held_here(t, a, sender);
    if (t->bsp) {
        takeover_bsp(t, m, a, held);
        return;
    }
    if (held) { /* held as the dead server's backup, or applied here already */
        t->stats.takeovers_held++;
        if (psi_repl_pending(t, a->origin, sender, a->seq) || !psi_kv_answer(t, m, PS_OK, a->seq))
            psi_msg_free(m);
        return;
    }
    if (!psi_repl_heads(t, m->seg[PSI_SEG_KEYS], m->hdr.key_count)) {
        psi_kv_reply(t, m, PSI_ERR_MOVED, NULL, 0); /* handed to a server that joined */
        psi_msg_free(m);
        return;
    }
    int st = takeover_apply(t, m, a);
    if (st == 0) psi_repl_note_applied(t, a->via, a->origin, sender, a->seq, a->lo);
    t->stats.takeovers_applied++;
    if (!psi_repl_after_apply(t, m, st, a) && !psi_kv_answer(t, m, st, a->seq)) psi_msg_free(m);
}

/* ---- acknowledgements, resends, view changes ---------------------------------------------- */

/* One acknowledgement fewer for pend `p`; answers its push after the last. */
static void pend_ack(ps_table *t, kv_pend *p)
{
    if (!p || --p->left > 0) return;
    for (kv_pend **pp = &t->rs.pends; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    if (p->iteration) psi_kv_bsp_durable(t, p->iteration);
    else if (!psi_kv_answer(t, p->req, p->st, p->aux.seq)) psi_msg_free(p->req);
    free(p);
}

static void psi_repl_on_ack(ps_table *t, const psi_msg *m)
{
    pthread_mutex_lock(&t->lock);
    for (kv_fwd **fp = &t->rs.fwds; *fp; fp = &(*fp)->next) {
        kv_fwd *f = *fp;
        if (f->to != m->hdr.sender || f->q != m->hdr.timestamp) continue;
        *fp = f->next;
        if (m->hdr.arg != 0)
            PSI_WARN("table %s: backup %u could not store forward %llu: %s", t->name, f->to,
                     (unsigned long long)f->q, ps_strerror((int)m->hdr.arg));
        pend_ack(t, f->p);
        psi_msg_free(f->msg);
        free(f);
        psi_join_on_ack(t);
        break;
    }
    pthread_mutex_unlock(&t->lock);
}

static void psi_repl_tick(ps_table *t, uint64_t now_ms)
{
    uint64_t wait = psi_kv_resend_ms();
    pthread_mutex_lock(&t->lock);
    for (kv_fwd *f = t->rs.fwds; f; f = f->next) {
        if (now_ms < f->sent_ms + wait) continue;
        psi_msg *copy = fwd_msg(&f->msg->hdr, f->msg->on_free_arg);
        f->sent_ms = now_ms;
        if (copy) psi_kv_net(f->to, copy);
    }
    psi_join_on_ack(t); /* a DRAINED marker that found no memory is sent again */
    psi_repl_prune_tick(t, now_ms);
    pthread_mutex_unlock(&t->lock);
}

typedef struct copy_job {
    ps_table *t;
    uint32_t *to; /* per segment: w - 1 new backups (PSI_ID_NONE: none) */
    part ps[MAX_BACKUPS];
    int np, rv;
} copy_job;

static int copy_flush(copy_job *j, part *p)
{
    size_t n = p->n; /* a chunk that is all of p takes p's arrays */
    for (size_t i = 0; i < n && j->rv == 0; i += COPY_CHUNK)
        j->rv = send_forward(j->t, p, i, PSI_MIN(COPY_CHUNK, n - i), NULL, NULL, 0, 0);
    j->t->stats.keys_copied += n;
    p->n = 0;
    return j->rv;
}

static int copy_key(void *arg, uint64_t key, void *block)
{
    copy_job *j = arg;
    size_t nb = (size_t)j->t->rs.w - 1;
    const uint32_t *to = j->to + (size_t)psi_ring_seg_of(j->t->ring, key) * nb;
    for (size_t i = 0; i < nb && to[i] != PSI_ID_NONE && j->rv == 0; i++) {
        part *p = part_for(j->ps, &j->np, to[i]);
        if (!p) return j->rv = PS_ERR_NOMEM;
        if ((j->rv = part_add(p, key, block, block_bytes(j->t))) == 0 && p->n == COPY_CHUNK)
            copy_flush(j, p);
    }
    return j->rv;
}

/* Push entries (PSI_FWD_AUX bytes each) being gathered. */
typedef struct entries {
    uint8_t *p;
    size_t n, cap;
    int rv;
} entries;

static void ent_add(entries *e, uint32_t origin, uint32_t sender, uint64_t seq, uint64_t lo)
{
    if (e->rv || !seq) return;
    if (e->n == e->cap) {
        size_t nc = e->cap ? 2 * e->cap : 64;
        uint8_t *q = realloc(e->p, nc * PSI_FWD_AUX);
        if (!q) {
            e->rv = PS_ERR_NOMEM;
            return;
        }
        e->p = q;
        e->cap = nc;
    }
    psi_kv_fwd_aux_put(e->p + e->n++ * PSI_FWD_AUX,
                       &(kv_push_aux){.seq = seq, .origin = origin, .sender = sender, .lo = lo});
}

static int seen_entries(void *arg, uint64_t key, void *block)
{
    entries *e = arg;
    const kv_seen *s = block;
    uint32_t origin = (uint32_t)(key >> 20) & 0xFFFFF, sender = (uint32_t)key & 0xFFFFF;
    ent_add(e, origin, sender, s->lo, s->lo);
    for (uint32_t i = 0; i < s->n; i++) ent_add(e, origin, sender, s->seqs[i], s->lo);
    return e->rv;
}

/* After a copy to `to`: which pushes the copied blocks hold, so that `to`,
 * if this node dies, does not apply one of them again when a worker moves
 * it there -- every push this node applied (its own clock: per worker, all
 * up to the last applied, or the last durable BSP iteration) and what its
 * own seen sets hold, all noted at `to` under this node. */
int psi_repl_send_held(ps_table *t, uint32_t to, int marker)
{
    entries e = {0};
    uint64_t durable = t->bsp ? psi_kv_bsp_durable_iter(t) : UINT64_MAX;
    for (uint32_t id = 0; id < PSI_MAX_NODES; id++) {
        uint64_t last = (uint64_t)PSI_MAX(t->applied[id], 0);
        if (!ring_server(t, id)) ent_add(&e, psi_kv_id(), id, PSI_MIN(last, durable), PSI_MIN(last, durable));
    }
    if (e.rv == 0) psi_store_foreach(t->rs.seen, seen_entries, &e);
    part p = {.to = to};
    int rv = e.rv ? e.rv : e.n ? send_forward(t, &p, 0, 0, NULL, e.p, e.n, marker) : PS_OK;
    free(e.p);
    return rv;
}

/* Send the segments this node heads to the backups new in their chains
 * (`old`: each segment's chain before the view change). */
static void copy_segments(ps_table *t, const uint32_t *old)
{
    size_t w = (size_t)t->rs.w, nb = w - 1, nsegs = psi_ring_nsegs(t->ring);
    copy_job j = {.t = t, .to = malloc(nsegs * nb * sizeof(uint32_t))};
    int any = 0;
    if (!j.to) {
        PSI_ERROR("table %s: out of memory restoring replicas", t->name);
        return;
    }
    for (size_t seg = 0; seg < nsegs; seg++) {
        const uint32_t *c = t->rs.eff + seg * w, *o = old + seg * w;
        uint32_t *to = j.to + seg * nb;
        /* a head that took over from a dead one copies to every backup: one
         * of them may have missed a forward of the dead head that this node
         * held.  One handed the segment by a live head (a join) copies only
         * to new members: the old head drained its forwards first (join.c). */
        int dead_head = o[0] == PSI_ID_NONE || t->dead[o[0]];
        size_t m = 0;
        for (size_t x = 1; x < w && c[0] == psi_kv_id(); x++) {
            int was = 0;
            for (size_t y = 0; y < w && !was; y++) was = o[y] == c[x];
            if (c[x] != PSI_ID_NONE && (!was || (o[0] != c[0] && dead_head))) to[m++] = c[x];
        }
        for (size_t x = m; x < nb; x++) to[x] = PSI_ID_NONE;
        any |= m > 0;
    }
    if (any) psi_store_foreach(t->store, copy_key, &j);
    for (int i = 0; i < j.np && j.rv == 0; i++) copy_flush(&j, &j.ps[i]);
    for (int i = 0; i < j.np && j.rv == 0; i++) j.rv = psi_repl_send_held(t, j.ps[i].to, 0);
    if (j.rv != 0) PSI_ERROR("table %s: restoring replicas failed: %s", t->name, ps_strerror(j.rv));
    else if (any) PSI_INFO("table %s: copied %llu keys to new backups", t->name,
                           (unsigned long long)t->stats.keys_copied);
    parts_free(j.ps, j.np);
    free(j.to);
}

int psi_repl_send_marker(ps_table *t, uint32_t to, int kind)
{
    part p = {.to = to};
    return send_forward(t, &p, 0, 0, NULL, NULL, 0, kind);
}

int psi_repl_fwds_below(const ps_table *t, const uint64_t *snap)
{
    for (const kv_fwd *f = t->rs.fwds; f; f = f->next)
        if (f->q <= snap[f->to]) return 1;
    return 0;
}

static int psi_repl_heads(ps_table *t, const uint64_t *keys, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint32_t seg = psi_ring_seg_of(t->ring, keys[i]);
        uint64_t lo, hi;
        if (psi_kv_chain(t, seg)[0] != psi_kv_id()) return 0;
        psi_ring_seg_bounds(t->ring, seg, &lo, &hi);
        while (i < n && keys[i] >= lo && keys[i] <= hi) i++; /* sorted: the segment's run */
    }
    return 1;
}

static void psi_repl_server_on_view(ps_table *t, const uint32_t *dead, int ndead)
{
    uint32_t *old = NULL;
    pthread_mutex_lock(&t->lock);
    int rv = psi_repl_compute(t, dead, ndead, &old);
    for (kv_fwd **fp = &t->rs.fwds; *fp;) { /* a dead backup acknowledges nothing */
        kv_fwd *f = *fp;
        if (!t->dead[f->to]) {
            fp = &f->next;
            continue;
        }
        *fp = f->next;
        pend_ack(t, f->p);
        psi_msg_free(f->msg);
        free(f);
    }
    if (rv == 0) {
        copy_segments(t, old);
        psi_join_on_view(t, old);
        psi_repl_prune_on_view(t, psi_kv_now());
    } else {
        PSI_ERROR("table %s: view change not applied: %s", t->name, ps_strerror(rv));
    }
    free(old);
    do /* a deferred DRAINED marker may end the wait of the requests before it */
        psi_kv_server_run_deferred(t);
    while (psi_join_take_run(t));
    pthread_mutex_unlock(&t->lock);
}

/* ---- the ops ------------------------------------------------------------------------------ */

const struct psi_kv_repl_ops psi_repl_chain_ops = {
    .init = psi_repl_init,
    .free = psi_repl_free,
    .compute = psi_repl_compute,
    .heads = psi_repl_heads,
    .join_waiting = psi_join_waiting,
    .join_take_run = psi_join_take_run,
    .apply = psi_repl_apply,
    .after_apply = psi_repl_after_apply,
    .pending = psi_repl_pending,
    .takeover_push = psi_repl_takeover_push,
    .bsp_forward = psi_repl_bsp_forward,
    .note_applied = psi_repl_note_applied,
    .on_ack = psi_repl_on_ack,
    .tick = psi_repl_tick,
    .on_view = psi_repl_server_on_view,
};
