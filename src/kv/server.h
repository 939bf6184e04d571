/*
 * server.h -- the server half of a table: the request pipeline (server.c),
 * BSP aggregation (bsp.c), trains as received (train.c) and
 * variable-length values as stored (var.c).
 *
 * Protocol (PSI_MSG_DATA).  A request carries the table id, the task's
 * timestamp, PSI_F_REQUEST plus PSI_F_PUSH and/or PSI_F_PULL, the sorted
 * keys of one server's slice and, for pushes, their values and aux
 * (kv/push_aux.h).  The server's vector clock holds the last sequence
 * number it applied per sender, applies a push only when it is the next
 * one (an early one is parked until its predecessor arrives), and
 * acknowledges without applying one it already applied.  So a worker may
 * resend any unacknowledged request at any time.  The response echoes the
 * timestamp and the key range, sets PSI_F_RESPONSE, carries the status in
 * `arg` and, for pulls, the values in key order.  Replicated tables add
 * forwards between servers (PSI_F_REPL) through t->repl (kv/kv_repl.h).
 *
 * Everything here runs under the table lock unless said otherwise.
 */
#ifndef PSI_KV_SERVER_H
#define PSI_KV_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv_repl.h"
#include "kv/table.h"

/* Server half (server.c).  Table lock NOT held for init, free, the entry
 * points and the view and timer hooks. */
int psi_kv_server_init(ps_table *t);
/* Choose t's request stages by its features (t->pipe); at open, once the
 * plug-ins are installed (t->repl) and before any request. */
void psi_kv_server_stages(ps_table *t);
void psi_kv_server_free(ps_table *t);
void psi_kv_server_on_request(ps_table *t, psi_msg *m);
/* Nodes died or joined (the view hook): BSP counts, replication, trains. */
void psi_kv_server_on_view(ps_table *t, const uint32_t *dead, int ndead);
/* The timer: forwards to resend, trains that stalled. */
void psi_kv_server_tick(ps_table *t, uint64_t now_ms);
/* What train.c shares of server.c (table lock held): keep m to run later
 * (returns 1: it always takes m, and drops it, for its sender to resend,
 * when it cannot be kept); answer a push applied before (1 if m was kept);
 * apply the sender's parked pushes that are next now; remember that push
 * seq of sender failed with st. */
int psi_kv_defer(ps_table *t, psi_msg *m);
int psi_kv_answer_dup(ps_table *t, psi_msg *m, uint64_t seq, const kv_push_aux *a);
void psi_kv_drain(ps_table *t, uint32_t sender);
void psi_kv_refused_note(ps_table *t, uint32_t sender, uint64_t seq, int st);
/* Answer a pull request now. */
void psi_kv_answer_pull(ps_table *t, const psi_msg *m);

/* BSP (bsp.c). */
int psi_kv_bsp_init(ps_table *t);
void psi_kv_bsp_free(ps_table *t);
/* Aggregate a push that is next in its sender's order. */
int psi_kv_bsp_push(ps_table *t, const psi_msg *m, uint64_t iter);
/* Answer a pull now if iteration `min_iter` is applied, else keep it;
 * returns 1 if it kept `m` (the caller must not free it). */
int psi_kv_bsp_pull(ps_table *t, psi_msg *m, uint64_t min_iter);
int psi_kv_bsp_push_via(ps_table *t, const psi_msg *m, uint64_t iter, uint64_t src);
/* Workers died: fewer contributions complete an iteration (lock NOT held). */
void psi_kv_bsp_on_view(ps_table *t, const uint32_t *dead, int ndead);

/* Trains (train.c), server side, table lock held: a train's head (a valid
 * push request) and its fragments; both take m. */
void psi_kv_train_open(ps_table *t, psi_msg *m, uint64_t seq, const kv_push_aux *a);
void psi_kv_train_frag(ps_table *t, psi_msg *m);
/* Any other request while a train is open: deferred until it is closed. */
void psi_kv_train_hold(ps_table *t, psi_msg *m);
/* Table lock NOT held: close a train that stalled or whose sender died. */
void psi_kv_train_tick(ps_table *t, uint64_t now_ms);
void psi_kv_train_on_view(ps_table *t, const uint32_t *dead, int ndead);
void psi_kv_train_free(ps_table *t);

/* Variable-length values (var.c), server side. */
int psi_kv_var_check(const ps_table *t, const psi_msg *m);
int psi_kv_var_apply(ps_table *t, const psi_msg *m);
void psi_kv_var_answer_pull(ps_table *t, const psi_msg *m);
void psi_kv_var_free_store(ps_table *t);

#endif /* PSI_KV_SERVER_H */
