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
 * It does nothing for dense or variable-length tables (pages, and values
 * that own buffers), while a large push is open in fragments (its blocks are
 * pointed into; the next view change prunes), when nothing is stale, and when
 * the new store cannot be allocated (stale keys are harmless; logged).
 * Table lock held by the caller.
 */
#include <string.h>

#include "replica/replica.h"
#include "kv/store.h"
#include "kv/update.h"
#include "node/node.h"
#include "util/log.h"

typedef struct {
    ps_table *t;
    uint32_t me;
    psi_store *to; /* NULL: only count */
    size_t bb, kept, dropped;
    int rv;
} prune_walk;

/* Whether this node is in the row of key's segment. */
static int mine(const prune_walk *p, uint64_t key)
{
    const uint32_t *row = psi_kv_chain(p->t, psi_ring_seg_of(p->t->ring, key));
    for (int i = 0; i < p->t->rs.w; i++)
        if (row[i] == p->me) return 1;
    return 0;
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

size_t psi_repl_prune(ps_table *t)
{
    if (!t->store || t->var || t->trains.open || !t->ring || !t->rs.eff) return 0;
    prune_walk p = {.t = t, .me = ps_my_id(), .bb = psi_update_block_bytes(&t->upd)};
    psi_store_foreach(t->store, walk_key, &p);
    if (p.dropped == 0) return 0;
    size_t dropped = p.dropped;
    p.kept = p.dropped = 0;
    if (!(p.to = psi_store_new(p.bb))) {
        PSI_WARN("table %s: out of memory: keeps %zu keys it holds for no chain", t->name,
                 dropped);
        return 0;
    }
    if (t->opts.max_bytes) psi_store_set_limit(p.to, t->opts.max_bytes);
    if (psi_store_foreach(t->store, walk_key, &p) != 0 || p.rv != 0) {
        PSI_WARN("table %s: out of memory: keeps %zu keys it holds for no chain", t->name,
                 dropped);
        psi_store_free(p.to);
        return 0;
    }
    psi_store_free(t->store);
    t->store = p.to;
    PSI_INFO("table %s: let go of %zu keys it holds for no chain (%zu kept)", t->name, dropped,
             p.kept);
    return dropped;
}
