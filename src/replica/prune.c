/*
 * prune.c -- a server lets go of the keys it holds for no chain.
 *
 * Design.  A replicated table's keys move at every view change: a dead
 * head's segments pass to its successors, and a joiner takes segments from
 * live heads and pushes the last backup out of their chains.  The store has
 * no delete, so a server used to keep every key it had ever held: over kills
 * and joins each one drifted towards a stale copy of the whole model (after
 * a 5-minute soak with 3 live servers and k = 1, two servers held all 12000
 * keys where about 8000 were theirs), values nothing serves, and memory that
 * grew with every membership change.
 *
 * After a view change is applied (chains computed, copies to new backups
 * and join markers sent, all under the table lock), the server rebuilds its
 * store with only the keys of segments whose row -- the live chain and the
 * joining server's slot, psi_kv_chain() -- names it.  Rebuilding rather than
 * deleting in place also sizes the hash table to what is left.  Nothing
 * reads a dropped key afterwards: requests for it are refused as moved, and
 * should this node enter the segment's chain again its head copies the
 * segment to it whole (chain.c, copy_segments).
 *
 * Forwards a head sent before the change may still land afterwards (resent
 * until acknowledged, also by a backup pushed out of the chain: a join's
 * drain waits for them), and they put their keys back.  So the store is
 * pruned again at the table's tick after each delay of PRUNE_AFTER_MS.  A
 * message from a view newer than the one installed is deferred (server.c,
 * gate_view), so whatever the store holds was applied under this view or an
 * older one: a key outside this node's rows is stale whenever it is pruned.
 *
 * The same test keeps a forward's stale keys out in the first place
 * (psi_repl_only_mine, called by chain.c for every forward it stores).
 *
 * It does nothing for dense or variable-length tables (pages, and values
 * that own buffers), while a large push is open in fragments (its blocks are
 * pointed into; a later prune does it), when nothing is stale, and when
 * the new store cannot be allocated (stale keys are harmless; logged).
 * Table lock held by the caller.
 */
#include <stdlib.h>
#include <string.h>

#include "replica/replica.h"
#include "kv/store.h"
#include "kv/update.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

typedef struct {
    ps_table *t;
    uint32_t me;
    psi_store *to; /* NULL: only count */
    size_t bb, kept, dropped;
    int rv;
} prune_walk;

/* Whether the row of segment seg names node me. */
static int in_row(const ps_table *t, uint32_t seg, uint32_t me)
{
    const uint32_t *row = psi_kv_chain(t, seg);
    for (int i = 0; i < t->rs.w; i++)
        if (row[i] == me) return 1;
    return 0;
}

/* Whether this node is in the row of key's segment. */
static int mine(const prune_walk *p, uint64_t key)
{
    return in_row(p->t, psi_ring_seg_of(p->t->ring, key), p->me);
}

/* Whether the prune applies to table t at all. */
static int prunable(const ps_table *t)
{
    return t->store && !t->var && t->ring && t->rs.eff;
}

size_t psi_repl_only_mine(const ps_table *t, const uint64_t *keys, const uint8_t *vals,
                          size_t n, size_t bb, uint64_t **keys_out, uint8_t **vals_out)
{
    *keys_out = NULL;
    *vals_out = NULL;
    if (!prunable(t) || n == 0) return n;
    uint32_t me = psi_kv_id(), seg = UINT32_MAX;
    uint64_t lo = 1, hi = 0; /* the last segment looked up: keys come in runs */
    int keep = 1;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (keys[i] < lo || keys[i] > hi) {
            seg = psi_ring_seg_of(t->ring, keys[i]);
            psi_ring_seg_bounds(t->ring, seg, &lo, &hi);
            keep = in_row(t, seg, me);
        }
        if (!keep && !*keys_out) { /* the first key to leave out: copy the ones before */
            if (!(*keys_out = malloc(n * sizeof(uint64_t))) || !(*vals_out = malloc(n * bb))) {
                free(*keys_out);
                *keys_out = NULL;
                return SIZE_MAX;
            }
            memcpy(*keys_out, keys, i * sizeof(uint64_t));
            memcpy(*vals_out, vals, i * bb);
        }
        if (keep && *keys_out) {
            (*keys_out)[kept] = keys[i];
            memcpy(*vals_out + kept * bb, vals + i * bb, bb);
        }
        kept += keep;
    }
    return kept;
}

static int walk_key(void *arg, uint64_t key, void *block)
{
    prune_walk *p = arg;
    if (!mine(p, key)) {
        p->dropped++;
        return 0;
    }
    p->kept++;
    if (!p->to) return 0;
    void *b = psi_store_upsert(p->to, key, NULL);
    if (!b) return p->rv = PS_ERR_NOMEM;
    memcpy(b, block, p->bb);
    return 0;
}

/* Delays after a view change of the prunes that follow it (ms). */
static const uint64_t PRUNE_AFTER_MS[] = {1000, 5000, 30000};
#define NPRUNES ((int)(sizeof(PRUNE_AFTER_MS) / sizeof(PRUNE_AFTER_MS[0])))

static size_t prune(ps_table *t)
{
    if (!prunable(t) || t->trains.open) return 0;
    uint64_t t0 = psi_kv_now();
    prune_walk p = {.t = t, .me = psi_kv_id(), .bb = psi_update_block_bytes(&t->upd)};
    psi_store_foreach(t->store, walk_key, &p);
    if (p.dropped == 0) return 0;
    size_t dropped = p.dropped, kept = p.kept;
    p.kept = p.dropped = 0;
    if (!(p.to = psi_store_new(p.bb))) {
        PSI_WARN("table %s: out of memory: keeps %zu keys it holds for no chain", t->name,
                 dropped);
        return 0;
    }
    if (t->opts.max_bytes) psi_store_set_limit(p.to, t->opts.max_bytes);
    psi_store_reserve(p.to, kept); /* one allocation; if refused, it grows as it goes */
    if (psi_store_foreach(t->store, walk_key, &p) != 0 || p.rv != 0) {
        PSI_WARN("table %s: out of memory: keeps %zu keys it holds for no chain", t->name,
                 dropped);
        psi_store_free(p.to);
        return 0;
    }
    psi_store_free(t->store);
    t->store = p.to;
    PSI_INFO("table %s: let go of %zu keys it holds for no chain (%zu kept, %llu ms)", t->name,
             dropped, p.kept, (unsigned long long)(psi_kv_now() - t0));
    return dropped;
}

void psi_repl_prune_on_view(ps_table *t, uint64_t now_ms)
{
    t->rs.pruned_ms = now_ms;
    t->rs.prunes = 0;
    prune(t);
}

/* Whether the next of the prunes after the last view change is due. */
static int prune_due(const ps_table *t, uint64_t now_ms)
{
    return t->rs.pruned_ms && t->rs.prunes < NPRUNES &&
           now_ms >= t->rs.pruned_ms + PRUNE_AFTER_MS[t->rs.prunes];
}

void psi_repl_prune_tick(ps_table *t, uint64_t now_ms)
{
    if (!prune_due(t, now_ms)) return;
    while (prune_due(t, now_ms)) t->rs.prunes++; /* one prune serves every delay passed */
    prune(t);
}
