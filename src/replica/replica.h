/*
 * replica.h -- what the files of the replication plug-in share: chain
 * replication and failover (chain.c) and servers joining (join.c).  kv
 * knows none of it: it calls the plug-in only through psi_repl_chain_ops
 * (kv/kv_repl.h), which src/kv/plugins.c installs on a replicated table.
 *
 * Everything here runs with the table lock held unless said otherwise.
 */
#ifndef PSI_REPLICA_REPLICA_H
#define PSI_REPLICA_REPLICA_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv_repl.h"

/* The ops of chain replication (chain.c). */
extern const struct psi_kv_repl_ops psi_repl_chain_ops;

/* Chains (chain.c), both sides: see the ops' compute. */
int psi_repl_compute(ps_table *t, const uint32_t *dead, int ndead, uint32_t **old_rows);
/* Send `to` an empty forward marked `kind` on this node's ordered forward
 * stream to it: it arrives after everything sent there before. */
int psi_repl_send_marker(ps_table *t, uint32_t to, int kind);
/* Whether a forward numbered at or below snap[backup] is unacknowledged. */
int psi_repl_fwds_below(const ps_table *t, const uint64_t *snap);
/* Send `to` the pushes this node holds (its clock per worker, its seen
 * sets), as a forward of entries marked `marker` (0: after a copy). */
int psi_repl_send_held(ps_table *t, uint32_t to, int marker);

/* After a view change: rebuild the store without the keys of segments whose
 * row does not name this node (prune.c), now and again at the tick after each
 * of the delays in prune.c (forwards sent before the change may still land). */
void psi_repl_prune_on_view(ps_table *t, uint64_t now_ms);
void psi_repl_prune_tick(ps_table *t, uint64_t now_ms);
/* Of a forward's n keys and their bb-byte blocks, those of segments whose
 * row names this node (the others would be stale here at once: a head sent
 * them before this node left their chains), compacted into malloc'd
 * *keys_out and *vals_out; both stay NULL when every key is kept.  Returns
 * how many are kept, SIZE_MAX without memory. */
size_t psi_repl_only_mine(const ps_table *t, const uint64_t *keys, const uint8_t *vals,
                          size_t n, size_t bb, uint64_t **keys_out, uint8_t **vals_out);

/* Joins (join.c), server side. */
#define PSI_MARK_COPIED 1  /* forward marker: what this head holds of the joiner's
                            * future segments was all sent before it */
#define PSI_MARK_DRAINED 2 /* forward marker: the joiner's new segments' forwards
                            * of this old head are acknowledged everywhere */
#define PSI_MARK_HANDED 3  /* forward of entries: the pushes this old head held
                            * when it handed segments over (chain.c, HANDED) */
int psi_join_init(ps_table *t);
void psi_join_free(ps_table *t);
/* After a view change (`old`: the rows before): markers, drains, waits. */
void psi_join_on_view(ps_table *t, const uint32_t *old);
/* A forward marker from m->hdr.sender arrived, in its stream's order. */
void psi_join_on_marker(ps_table *t, const psi_msg *m);
/* A backup acknowledged a forward: a drain may be complete. */
void psi_join_on_ack(ps_table *t);
/* Whether this node, a new head, still waits for old heads to drain:
 * requests wait with it (the ops' join_waiting). */
int psi_join_waiting(const ps_table *t);
/* Whether that wait just ended (once): then run the deferred requests. */
int psi_join_take_run(ps_table *t);

#endif /* PSI_REPLICA_REPLICA_H */
