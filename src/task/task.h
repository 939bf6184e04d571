/*
 * task.h -- timestamps, dependencies and consistency for asynchronous tasks.
 *
 * A task queue (psi_tq) belongs to one table (or the remote-call channel) on
 * one node.  Submitting a task gives it the next timestamp (0, 1, 2, ...).
 * The task starts -- its start function is called -- only when
 *   - the consistency model allows it: sequential means every earlier task
 *     finished; bounded delay tau means every task <= ts - tau - 1
 *     finished; eventual means no constraint; and
 *   - every explicit dependency (an earlier timestamp) finished.
 * Whoever executes the task calls psi_tq_finish() once, with its status;
 * waiters wake, the completion callback runs, and tasks that became runnable
 * start.
 *
 * Design: one mutex per queue.  Active tasks sit in a window indexed by
 * ts - base, where every task below `base` finished; statuses of finished
 * tasks below the base are kept only when they failed (a sorted list), so
 * memory is proportional to the tasks in flight, not to the tasks ever run.
 * Start functions and callbacks are called without the lock, on the thread
 * that submitted or finished the task that made them runnable.
 *
 * Never: call a start function or callback with the lock held; start a task
 * twice; lose a failure status.
 */
#ifndef PSI_TASK_TASK_H
#define PSI_TASK_TASK_H

#include <stdint.h>

#include "ps/ps.h"

typedef struct psi_tq psi_tq;

/* Start the task `ts`; `ctx` is what was given to psi_tq_submit.  Must not
 * block; may call psi_tq_finish (directly or later, from any thread). */
typedef void (*psi_task_start_fn)(void *ctx, int64_t ts);
/* Completion callback (from ps_task_opts). */
typedef void (*psi_task_done_fn)(void *arg, int64_t ts, int status);
/* Trace hook for tests: called at start (finished = 0) and at finish. */
typedef void (*psi_task_trace_fn)(void *arg, int64_t ts, int finished, uint64_t now_ns);

/* tau < 0 means eventual consistency; 0 sequential; > 0 bounded delay. */
psi_tq *psi_tq_new(int tau);
/* Free the queue; tasks still in flight are abandoned (callers first wait). */
void psi_tq_free(psi_tq *q);
void psi_tq_set_trace(psi_tq *q, psi_task_trace_fn fn, void *arg);

/*
 * Submit a task.  deps[0..ndeps) must be timestamps already issued (else
 * PS_ERR_INVAL).  Returns the task's timestamp (>= 0) or a negative ps_err;
 * on success `start(ctx, ts)` is called exactly once, maybe before this
 * returns.  `done` (may be NULL) is called once after the task finished.
 */
int64_t psi_tq_submit(psi_tq *q, psi_task_start_fn start, void *ctx, const int64_t *deps,
                      int ndeps, psi_task_done_fn done, void *done_arg);
/* Record that task `ts` finished with `status`.  Idempotent per ts. */
void psi_tq_finish(psi_tq *q, int64_t ts, int status);
/* Block until task `ts` finished; returns its status, PS_ERR_INVAL for a
 * timestamp never issued. */
int psi_tq_wait(psi_tq *q, int64_t ts);
/* Block until every task submitted so far finished; first failure or 0. */
int psi_tq_wait_all(psi_tq *q);
/* Whether `ts` finished (1), not yet (0), or was never issued (-1). */
int psi_tq_finished(psi_tq *q, int64_t ts);

#endif /* PSI_TASK_TASK_H */
