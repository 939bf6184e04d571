/*
 * sched.h -- the scheduler's membership state machine: assigns ids and
 * ranks to joining nodes, publishes views, runs barriers and declares silent
 * nodes dead.
 *
 * Design: a pure state machine driven by node.c under the post-office lock
 * (never locks, never blocks); what it wants done -- send a message, connect
 * or forget a peer, install a view locally -- goes through the psi_sched_io
 * callbacks, which keeps it unit-testable without a network.
 *
 * Node ids: the scheduler is 0, server rank r is 1 + r, worker rank r is
 * 1 + S + r, so ids are stable and derivable from role and rank.  A node
 * that joins the running cluster (no rank asked) gets the next id after
 * those, a new server rank or a dead worker's rank, and starts on standby
 * (view.h).
 */
#ifndef PSI_NODE_SCHED_H
#define PSI_NODE_SCHED_H

#include <stdint.h>

#include "node/view.h"
#include "wire/msg.h"

typedef struct psi_sched_io {
    void *arg;
    /* Send reliably (stamped, resent until acked); takes ownership of m. */
    void (*send_reliable)(void *arg, uint32_t peer, psi_msg *m);
    /* Send unreliably (a resumed node declared dead is told its view); takes
     * ownership of m. */
    void (*send)(void *arg, uint32_t peer, psi_msg *m);
    /* Send an ACK of `ts` to `peer` with status `status` (0 or ps_err). */
    void (*send_ack)(void *arg, uint32_t peer, uint64_t ts, int status);
    void (*connect)(void *arg, uint32_t peer, const char *addr);
    void (*forget)(void *arg, uint32_t peer);         /* dead or left */
    void (*install_view)(void *arg, const psi_view *v);
    void (*barrier_done)(void *arg, int group, uint64_t seq); /* scheduler's own */
} psi_sched_io;

typedef struct psi_sched psi_sched;

psi_sched *psi_sched_new(int nservers, int nworkers, const char *my_addr,
                         uint64_t hb_timeout_ms, const psi_sched_io *io);
void psi_sched_free(psi_sched *s);

/* A join request with reliable timestamp `ts` arrived. */
void psi_sched_on_join(psi_sched *s, const psi_join *j, uint64_t ts, uint64_t now_ms);
/* Any message from `from` arrived (heartbeat or other): it is alive, or,
 * if it was declared dead (paused past the timeout, then resumed), it is
 * sent the current view so that it learns it was replaced and leaves. */
void psi_sched_on_alive(psi_sched *s, uint32_t from, uint64_t now_ms);
/* Node `from` (0 = the scheduler itself) entered barrier `seq` of `group`. */
void psi_sched_on_barrier(psi_sched *s, uint32_t from, int group, uint64_t seq);
/* Node `from` is leaving cleanly: at the end of the job, or (handover, a
 * server leaving a running cluster) at once, with a new view that shows it
 * gone so that its key ranges fall to their replicas. */
void psi_sched_on_leave(psi_sched *s, uint32_t from, int handover);
/* A node that joined the running cluster asks to serve (phase 1: a worker
 * is published ALIVE; a server JOINING, when no other server is) or, a
 * server, says it holds its share as of view `epoch` (phase 2: published
 * ALIVE, unless a newer view came since: then it must check again). */
void psi_sched_on_serve(psi_sched *s, uint32_t from, int phase, uint32_t epoch);
/* Periodic: declare nodes silent for longer than the timeout dead. */
void psi_sched_tick(psi_sched *s, uint64_t now_ms);
/* Number of nodes alive and not yet left (excluding the scheduler). */
int psi_sched_active(const psi_sched *s);
/* PS_ROLE_SERVER or PS_ROLE_WORKER when every node of that role was
 * declared dead (none alive, none left cleanly): the job cannot go on, or
 * this scheduler is the one cut off.  0 otherwise. */
int psi_sched_lost(const psi_sched *s);
/* The scheduler did not run for `gap_ms` (starved of CPU, stopped): time
 * that is nobody's silence.  Every node's last-seen moves on by the gap
 * (at most to now), so heartbeats queued meanwhile are read before anyone
 * is judged. */
void psi_sched_credit(psi_sched *s, uint64_t gap_ms, uint64_t now_ms);
/* Whether the first view has been published. */
int psi_sched_ready(const psi_sched *s);

#endif /* PSI_NODE_SCHED_H */
