/*
 * view.h -- the cluster view (which nodes exist, their roles, ranks,
 * addresses and liveness, stamped with an epoch) and the join request, with
 * their wire encodings.
 *
 * Design: the scheduler owns the authoritative view and publishes a new one
 * (epoch + 1) on every membership change; nodes install a view only if its
 * epoch is newer than the one they hold, so reordered or duplicated VIEW
 * messages are harmless.  Encodings are explicit little-endian; decoders
 * check every length and count before allocating.  Pure data: no locks, no
 * I/O, so it is unit-testable on its own.
 */
#ifndef PSI_NODE_VIEW_H
#define PSI_NODE_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include "ps/ps.h"

#define PSI_ADDR_MAX 64
#define PSI_MAX_NODES 4096
#define PSI_ID_NONE 0xFFFFFFFFu
#define PSI_SCHEDULER_ID 0u

/* A node's state in a view (psi_node.alive).  A server that joins a running
 * cluster is STANDBY (connected, on no ring) until it asks to take its share,
 * then JOINING (an extra member of the chains it will be in, receiving their
 * keys) and finally ALIVE; one server joins at a time (src/replica/chain.c). */
enum { PSI_NODE_DEAD = 0, PSI_NODE_ALIVE = 1, PSI_NODE_STANDBY = 2, PSI_NODE_JOINING = 3 };

typedef struct psi_node {
    uint32_t id;
    uint8_t role;  /* ps_role */
    uint8_t alive; /* PSI_NODE_*: nonzero while it lives */
    int32_t rank;
    char addr[PSI_ADDR_MAX];
} psi_node;

typedef struct psi_view {
    uint32_t epoch;
    uint32_t n;
    psi_node *nodes; /* owned, sorted by id */
} psi_view;

/* Encode into a malloc'ed buffer; returns 0 or PS_ERR_NOMEM. */
int psi_view_encode(const psi_view *v, uint8_t **buf, size_t *len);
/* Decode and validate; on success `out` owns its nodes.  PS_ERR_PROTO on
 * any inconsistency (counts, lengths, unsorted or duplicate ids, bad role). */
int psi_view_decode(const uint8_t *buf, size_t len, psi_view *out);
void psi_view_free(psi_view *v);
/* Deep copy `src` into `dst` (dst's old nodes freed). */
int psi_view_copy(psi_view *dst, const psi_view *src);

/* Node with this id, or NULL. */
const psi_node *psi_view_find(const psi_view *v, uint32_t id);
/* Is role `r` a member of the PS_GROUP_* mask? */
static inline int psi_group_has(int group, int role) { return (group >> role) & 1; }
/* Number of nodes whose role is in `group` (with alive_only, those that
 * serve or are joining: not the dead, nor those on standby). */
int psi_view_count(const psi_view *v, int group, int alive_only);
/* Whether a view with epoch `epoch` should replace `cur` (strictly newer). */
static inline int psi_view_is_newer(const psi_view *cur, uint32_t epoch)
{
    return epoch > cur->epoch;
}
/* Ids alive in `old` but dead or missing in `cur`; writes up to `cap`,
 * returns how many there are. */
int psi_view_newly_dead(const psi_view *old, const psi_view *cur, uint32_t *out, int cap);

/* The join request a node sends to the scheduler. */
typedef struct psi_join {
    uint8_t role;
    int32_t rank; /* -1: let the scheduler choose */
    char addr[PSI_ADDR_MAX];
    int sizes;    /* 1: nservers and nworkers are the node's configuration */
    uint16_t nservers, nworkers;
} psi_join;

int psi_join_encode(const psi_join *j, uint8_t *buf, size_t cap, size_t *len);
int psi_join_decode(const uint8_t *buf, size_t len, psi_join *out);

#endif /* PSI_NODE_VIEW_H */
