/*
 * node.h -- the membership layer's internal interface ("post office"): this
 * process's identity, the current view, and sending to other nodes by id.
 * Layers above (src/task, src/kv) use these; applications use ps/ps.h.
 *
 * Design: one post office per process, a module-level singleton guarded by
 * one mutex, as the process has one place in one cluster.  Control traffic
 * (join, views, barriers, heartbeats, leave) is handled here; DATA messages
 * go to the handler a higher layer registers.
 */
#ifndef PSI_NODE_NODE_H
#define PSI_NODE_NODE_H

#include <stdint.h>

#include "node/view.h"
#include "wire/msg.h"

/* Send `m` to node `peer`, filling sender, receiver and epoch.  Takes
 * ownership of `m`.  0, PS_ERR_STATE before start, PS_ERR_CLOSED after. */
int psi_node_send(uint32_t peer, psi_msg *m);

/* Register the handler of DATA or CALL messages (called on the I/O thread,
 * without the post-office lock; it owns `m`).  Replaces any earlier one. */
typedef void (*psi_data_handler)(void *arg, psi_msg *m);
int psi_node_set_handler(int type, psi_data_handler fn, void *arg);
/* Register where large DATA answers may be received (transport.h's place
 * callback, passed through on the I/O thread without the post-office
 * lock).  Replaces any earlier one; NULL: none. */
struct psi_place;
typedef int (*psi_data_place)(void *arg, const psi_hdr *h, struct psi_place *out);
void psi_node_set_place(psi_data_place fn, void *arg);

/* Internal view-change hooks (for src/kv): called like the user's
 * ps_view_cb, before it, without the post-office lock.  At most 8. */
int psi_node_add_view_hook(ps_view_cb fn, void *arg);

/* Called by ps_finalize once the transport is closed (no callback can run
 * any more), for the layers above to free their state.  Up to 4 hooks.
 * Stages run in order, whatever the order of registration: first
 * PSI_SHUTDOWN_APP (threads that run the application's code, such as the
 * remote-function executor: a handler may still be using a table), then
 * PSI_SHUTDOWN_DATA (the tables); within a stage, reverse order. */
enum { PSI_SHUTDOWN_APP = 0, PSI_SHUTDOWN_DATA = 1 };
void psi_node_on_shutdown(void (*fn)(void), int stage);

/* Leave the running cluster at once (ps_leave, after the kv layer checked
 * that nothing would be lost): the scheduler publishes a view without this
 * node.  0 once it acknowledged; ps_finalize then skips the final barrier. */
int psi_node_leave(void);
/* A server joining a running cluster asks the scheduler to stream its
 * share to it (phase 1) or to let it serve (phase 2: it holds its share as
 * of view `epoch`); see src/replica/join.c. */
int psi_node_serve(int phase, uint32_t epoch);
/* This node's state in the current view (PSI_NODE_*), and that view's epoch. */
int psi_node_my_state(uint32_t *epoch);

/* 1 once ps_start succeeded and until ps_finalize began. */
/* 0 while this node is in the cluster; the ps_err that took it out (declared
 * dead, cut off, the scheduler lost) after.  No answer can come then. */
int psi_node_fatal(void);
/* The largest payload a node accepts (PS_MAX_MSG_BYTES). */
uint64_t psi_node_max_payload(void);
int psi_node_running(void);

/* Copy of the current view into *out (caller frees with psi_view_free). */
int psi_node_view(psi_view *out);

#endif /* PSI_NODE_NODE_H */
