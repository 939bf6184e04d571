/*
 * kv_repl.h -- the boundary between the key-value layer and its replication
 * plug-in (src/replica): the ops a replicated table installs at open, which
 * are the only way kv calls replication, and the kv functions the plug-in
 * may call back, which are all it may call of kv.  The plug-in may read and
 * write the fields of struct ps_table named for it (k, eff_epoch, dead, rs)
 * and read the others (kv/table.h).
 *
 * Design.  kv owns the request stream: it validates, orders (vector
 * clocks), applies and answers.  Replication sits below that logic as a
 * table of hooks: the gate (heads, join_waiting), the apply of a forward
 * (apply), the settle of an applied push (after_apply, pending), pushes
 * moved off a dead server (takeover_push), BSP iterations (bsp_forward,
 * note_applied), and the control paths (on_ack, on_view, tick, compute,
 * free).  t->repl is NULL on a table without replication, so a check is
 * one load.  The one place that installs the ops is plugins.c.
 *
 * Every hook runs with the table lock held, on the transport's I/O thread,
 * the view hook or the timer, and never blocks, unless its comment says
 * otherwise (free, on_ack, tick, on_view take the lock themselves).
 * Never: call replication from kv other than through t->repl; call kv from
 * the plug-in other than through the functions listed below.
 */
#ifndef PSI_KV_KV_REPL_H
#define PSI_KV_KV_REPL_H

#include <stddef.h>
#include <stdint.h>

#include "kv/push_aux.h"
#include "kv/store.h"
#include "kv/table.h"
#include "wire/msg.h"

struct psi_kv_repl_ops {
    /* Set up t's replication state at open (table lock held; t->tq tells a
     * worker's table from a server's); 0 or an error that fails the open.
     * free is called after a failed init too. */
    int (*init)(ps_table *t);
    /* Free everything the plug-in holds of t, before its store (what the
     * seen sets hold); table lock not needed (no callbacks run). */
    void (*free)(ps_table *t);
    /* Recompute t->ring (a server joined) and the chains from the current
     * view, `dead` adding to the dead it names.  With old_rows, it gets
     * (malloc'ed, the caller frees) each new segment's row of the chains
     * before the change.  0 or PS_ERR_NOMEM (nothing changed). */
    int (*compute)(ps_table *t, const uint32_t *dead, int ndead, uint32_t **old_rows);
    /* Whether this node heads the segments of every one of the n sorted keys. */
    int (*heads)(ps_table *t, const uint64_t *keys, size_t n);
    /* Whether requests must wait (a new head waiting for old heads to
     * drain, join.c); take_run: whether that wait just ended (once), then
     * the caller runs the deferred requests. */
    int (*join_waiting)(const ps_table *t);
    int (*join_take_run)(ps_table *t);
    /* Store the blocks of a forward (a valid PSI_F_REPL request) as a
     * backup; 0 or the status to answer.  Does not take m. */
    int (*apply)(ps_table *t, const psi_msg *m);
    /* After push `m` (from m's sender, counted for a->origin) was applied
     * with status `st`: forward the new blocks of its keys to their backups;
     * 1 if it took m, answered (psi_kv_answer) once they acknowledge, 0 if
     * the caller answers now. */
    int (*after_apply)(ps_table *t, psi_msg *m, int st, const kv_push_aux *a);
    /* Whether push (origin, sender, seq) is waiting for its backups. */
    int (*pending)(const ps_table *t, uint32_t origin, uint32_t sender, uint64_t seq);
    /* A push counted for a dead server (a->via set): apply it unless this
     * node holds it already; always takes m (answers or keeps it). */
    void (*takeover_push)(ps_table *t, psi_msg *m, const kv_push_aux *a);
    /* BSP: forward the blocks of the keys iteration `iteration` touched (the
     * keys of `sum`), with the nmsgs pushes it summed (not taken), to every
     * backup; 1 if psi_kv_bsp_durable(t, iteration) will follow their
     * acknowledgements, 0 if there was nothing to send (the caller makes it
     * durable now). */
    int (*bsp_forward)(ps_table *t, psi_store *sum, psi_msg **msgs, int nmsgs, void *iteration);
    /* Record that this node applied the part of push (origin, sender, seq)
     * moved here off dead server `via`. */
    void (*note_applied)(ps_table *t, uint32_t via, uint32_t origin, uint32_t sender,
                         uint64_t seq, uint64_t lo);
    /* A backup acknowledged a forward (a PSI_F_REPL response; not taken).
     * Table lock NOT held (it takes it). */
    void (*on_ack)(ps_table *t, const psi_msg *m);
    /* Server: resend forwards unacknowledged for the resend timeout.  Table
     * lock NOT held (it takes it). */
    void (*tick)(ps_table *t, uint64_t now_ms);
    /* Server: a new view (servers died or joined): give up forwards to the
     * dead, recompute the chains, restore k copies, run the join protocol
     * and the requests that waited for this view.  Table lock NOT held. */
    void (*on_view)(ps_table *t, const uint32_t *dead, int ndead);
};

/*
 * What the plug-in may call of kv.  Registry and ring (table.c; kv/table.h):
 * psi_kv_tables, psi_kv_resend_ms, psi_kv_ring, psi_kv_ring_next,
 * psi_kv_ring_install, psi_kv_chain; the push's aux (push_aux.c;
 * kv/push_aux.h); psi_kv_reply (send.c; kv/table.h).  Then, table lock
 * held:
 */
/* Answer a request whose push part is settled with `status`; `iter` is
 * the iteration a BSP pull must see; 1 if it kept m (BSP), else the caller
 * still owns it (server.c). */
int psi_kv_answer(ps_table *t, psi_msg *m, int status, uint64_t iter);
/* Blocks of the keys of a push, created at their initial value; 0 or
 * PS_ERR_TOOBIG / PS_ERR_NOMEM (server.c). */
int psi_kv_blocks(ps_table *t, const uint64_t *keys, size_t n, void **blocks);
/* Run the requests deferred until this node installed their view, behind a
 * join's drain or behind a train (server.c). */
void psi_kv_server_run_deferred(ps_table *t);
/* BSP (bsp.c): keep push `m` (iteration `iter`; src 0, or for a push moved
 * off a dead server via << 32 | origin) until its iteration is durable; 0
 * if it could not be kept (nothing applied: the worker resends). */
int psi_kv_bsp_push_kept(ps_table *t, psi_msg *m, uint64_t iter, uint64_t src);
/* Whether iteration (src, iter) still holds a push from `sender`. */
int psi_kv_bsp_waiting(const ps_table *t, uint64_t src, uint32_t sender, uint64_t iter);
/* The last iteration of this server's own that is applied and durable. */
uint64_t psi_kv_bsp_durable_iter(const ps_table *t);
/* The backups acknowledged iteration `iteration` (from bsp_forward). */
void psi_kv_bsp_durable(ps_table *t, void *iteration);
/* Wait until no train is open (never on the I/O thread), for readers
 * outside the request stream (checkpoints); no train opens until the
 * reader calls psi_kv_train_read_done (train.c). */
void psi_kv_train_wait(ps_table *t);
void psi_kv_train_read_done(ps_table *t);

#endif /* PSI_KV_KV_REPL_H */
