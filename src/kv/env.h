/*
 * env.h -- what the key-value core (src/kv, src/replica) takes from the node
 * below it: sending a message, the clock, the view, this node's id and role,
 * how many servers and workers the job started with, and whether the node
 * was cut off from the cluster.
 *
 * Design.  One table of functions, the node's (src/node) by default.  A unit
 * test installs its own with psi_kv_env_set and drives tables directly
 * (psi_kv_table_new, psi_kv_deliver, the halves' view and timer hooks): one
 * process plays every node, one at a time, holding the messages they send
 * so that it can drop, duplicate and reorder them, and moving a clock of its
 * own (tests/unit/test_kv_core.c).  What else kv takes from the node -- the
 * message handler, view and shutdown hooks, joining and leaving -- wires a
 * live process together and is not logic a test needs to reach: it stays a
 * direct call.
 *
 * Never: change the table while tables are open (tests set it first).
 */
#ifndef PSI_KV_ENV_H
#define PSI_KV_ENV_H

#include <stdint.h>

#include "node/view.h"
#include "ps/ps.h"
#include "wire/msg.h"

typedef struct psi_kv_env {
    int (*send)(uint32_t to, psi_msg *m); /* takes m; fills its sender (psi_node_send) */
    uint64_t (*now_ms)(void);             /* a monotonic clock */
    int (*view)(psi_view *out);           /* a copy of the view: psi_view_free */
    uint32_t (*my_id)(void);
    ps_role (*my_role)(void);
    int (*num_servers)(void); /* in the first view: the ranks of a plain table's ring */
    int (*num_workers)(void); /* in the first view: a BSP iteration's pushes at first */
    int (*fatal)(void);       /* nonzero once this node is out of the cluster */
} psi_kv_env;

extern const psi_kv_env *psi_kv_env_now;

/* Install `e` (NULL: the node's again).  Tests only. */
void psi_kv_env_set(const psi_kv_env *e);

static inline int psi_kv_net(uint32_t to, psi_msg *m) { return psi_kv_env_now->send(to, m); }
static inline uint64_t psi_kv_now(void) { return psi_kv_env_now->now_ms(); }
static inline int psi_kv_view(psi_view *out) { return psi_kv_env_now->view(out); }
static inline uint32_t psi_kv_id(void) { return psi_kv_env_now->my_id(); }
static inline ps_role psi_kv_role(void) { return psi_kv_env_now->my_role(); }
static inline int psi_kv_nservers(void) { return psi_kv_env_now->num_servers(); }
static inline int psi_kv_nworkers(void) { return psi_kv_env_now->num_workers(); }
static inline int psi_kv_fatal(void) { return psi_kv_env_now->fatal(); }

#endif /* PSI_KV_ENV_H */
