/*
 * plugins.c -- the one place the key-value layer names its plug-ins: at
 * ps_table_open, a replicated table gets the ops of chain replication
 * (src/replica/chain.c, through kv/kv_repl.h) and a server's fixed-width
 * table is registered for checkpoints (src/replica/checkpoint.c).  Every
 * other kv file reaches replication only through t->repl; nothing here
 * runs after open.
 *
 * Called by table.c once per table, after the worker or server half is set
 * up, with the registry lock held and the table not yet visible to any
 * other thread.  Never: install ops on a table without replication (kv
 * takes t->repl == NULL to mean "not replicated").
 */
#include <pthread.h>

#include "kv/kv_repl.h"
#include "kv/table.h"
#include "node/node.h"
#include "replica/checkpoint.h"
#include "replica/replica.h"

int psi_kv_plugins_open(ps_table *t)
{
    int rv = PS_OK, server = psi_kv_role() == PS_ROLE_SERVER;
    if (!server && psi_kv_role() != PS_ROLE_WORKER) return PS_OK; /* no half to plug into */
    if (t->opts.replication > 0) {
        t->repl = &psi_repl_chain_ops; /* freed by table_free even if init fails */
        pthread_mutex_lock(&t->lock);
        rv = t->repl->init(t);
        pthread_mutex_unlock(&t->lock);
    }
    /* every fixed-width table is in every checkpoint */
    if (rv == 0 && server && !t->var) rv = psi_ckpt_enable(t);
    return rv;
}
