/*
 * report_store.h -- the scheduler's store of what the status page shows
 * beyond the view: when each node was last heard from, who said it leaves,
 * each node's last report, the rates between its last two, and the last
 * PSI_RSTORE_POINTS values of every named series.
 *
 * Design: one store per process (the scheduler's), under a leaf lock of its
 * own: node.c calls the note/ingest functions under po.lock (po.lock, then
 * the store's lock), and the snapshot is built from a view copied earlier,
 * never holding po.lock.  Memory is bounded: at most PS_REPORT_MAX_SERIES
 * series per node and PSI_RSTORE_MAX_SERIES in all, PSI_RSTORE_POINTS
 * points each.
 */
#ifndef PSI_NODE_REPORT_STORE_H
#define PSI_NODE_REPORT_STORE_H

#include <stdint.h>

#include "node/report.h"
#include "node/status.h"
#include "node/view.h"

#define PSI_RSTORE_POINTS 600
#define PSI_RSTORE_MAX_SERIES 4096

/* Start afresh (the scheduler's ps_start): times count from now_ms; a node
 * alive in the view but silent for hb_timeout_ms shows as suspected. */
void psi_rstore_init(uint64_t now_ms, uint64_t hb_timeout_ms, int nservers, int nworkers);
/* Free everything (ps_finalize). */
void psi_rstore_free(void);
/* Node `id` was heard from / said it leaves. */
void psi_rstore_seen(uint32_t id, uint64_t now_ms);
void psi_rstore_left(uint32_t id);
/* Node `id`'s report number `seq` arrived (a repeat of the last number is
 * ignored).  Series past the caps are dropped. */
void psi_rstore_ingest(uint32_t id, uint64_t seq, const psi_report *r, uint64_t now_ms);
/* Build a snapshot of view `v` with the store's figures (see status.h).
 * 0 or PS_ERR_NOMEM (then *out is empty). */
int psi_rstore_snapshot(const psi_view *v, uint64_t now_ms, psi_status_snap *out);

#endif /* PSI_NODE_REPORT_STORE_H */
