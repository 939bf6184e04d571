/*
 * timer.h -- the library's periodic work on one thread: the key-value
 * tables' resends and stall checks (src/kv/table.c), the remote calls'
 * resends (src/task/call.c) and the node's reports to the scheduler
 * (src/node/report_send.c) are clients of one timer service instead of
 * each polling on a thread of its own.
 *
 * Design.  A client is a function and a period; the service thread sleeps
 * until the earliest client is due (not a fixed tick), runs every client
 * that is due, one at a time and without the service's lock, and sets its
 * next time one period after the run began.  The thread starts with the
 * first client and ends with the last.  A late run is not repeated to catch
 * up: a client gets the current time and does what is due now.
 *
 * The node's own loop (heartbeats, the watchdog, view changes: src/node/
 * node.c) is deliberately not a client: the failure detector must not wait
 * behind data-plane work, and a table's tick may run long (a store rebuilt
 * after a view change, segments copied to new backups).
 *
 * Never: call psi_timer_add or psi_timer_remove from a client's function
 * (remove waits for the running function to return); block in a client's
 * function on something only another client can release.
 */
#ifndef PSI_UTIL_TIMER_H
#define PSI_UTIL_TIMER_H

#include <stdint.h>

typedef struct psi_timer psi_timer;
typedef void (*psi_timer_fn)(void *arg, uint64_t now_ms);

/* Run fn(arg, now) every period_ms (>= 1) from now on, on the service
 * thread.  0, PS_ERR_NOMEM or PS_ERR_SYS (no thread). */
int psi_timer_add(uint32_t period_ms, psi_timer_fn fn, void *arg, psi_timer **out);
/* Stop t (NULL is fine): when this returns, its function is not running
 * and will not run again.  The last one removed stops the thread. */
void psi_timer_remove(psi_timer *t);

#endif /* PSI_UTIL_TIMER_H */
