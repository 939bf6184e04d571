/*
 * report_send.c -- the reporter: about once a second it gathers this node's
 * tables' counters and named values and hands them to node.c's sink (a
 * REPORT to the scheduler; on the scheduler, its own store).
 *
 * Design: a client of the timer service (util/timer.h), which runs on its
 * own thread, rather than a step of node.c's timer, because
 * reading a table's counters takes that table's lock, which a large push
 * being applied holds for a while, and the timer thread must keep
 * heartbeating; and node.c's timer holds po.lock, which the kv layer takes
 * under a table's lock (a send), so reading tables from there would invert
 * that order.  This is the one file of src/node that reads the kv layer,
 * read-only: the list of open tables (psi_kv_tables: tables live until
 * ps_finalize tears kv down, which happens after psi_reporter_stop)
 * and their public counters.
 *
 * Threads / locks: rep.lock guards starting and stopping only; gathering
 * and the sink run on the timer service's thread with no lock held.
 *
 * Never: hold rep.lock while gathering or calling the sink.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kv/table.h"
#include "node/report.h"
#include "util/timer.h"
#include "util/util.h"

static struct {
    pthread_mutex_t lock; /* start and stop */
    psi_timer *timer;
    psi_report_sink sink;
    uint64_t seq; /* the timer service's thread's alone */
} rep = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void gather_table(ps_table *t, psi_report_table *out)
{
    ps_table_stats st;
    ps_traffic tr;
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", t->name); /* immutable after open */
    if (ps_table_stats_get(t, &st) == 0) {
        out->keys = st.keys;
        out->bytes = st.bytes;
        out->pushes = st.pushes_applied;
        out->resends = st.resends;
    }
    if (ps_table_traffic(t, &tr) == 0) {
        out->sent_raw = tr.bytes_sent_raw;
        out->sent_wire = tr.bytes_sent_wire;
        out->recv_wire = tr.bytes_recv_wire;
        out->recv_raw = tr.bytes_recv_raw;
    }
    out->pulls = psi_report_pulls(t->id);
}

void psi_report_gather(psi_report *r)
{
    ps_table *ts[PSI_MAX_TABLES];
    int n = psi_kv_tables(ts, PSI_MIN(PSI_MAX_TABLES, PSI_REPORT_MAX_TABLES));
    r->ntables = n;
    for (int i = 0; i < n; i++) gather_table(ts[i], &r->tables[i]);
    psi_report_values(r);
}

static void report_tick(void *arg, uint64_t now_ms)
{
    (void)arg, (void)now_ms;
    static psi_report r; /* 30 KiB: not on the thread's stack; one reporter */
    psi_report_gather(&r);
    rep.sink(&r, ++rep.seq);
}

int psi_reporter_start(psi_report_sink sink)
{
    pthread_mutex_lock(&rep.lock);
    int rv = PS_OK;
    if (!rep.timer) {
        rep.sink = sink;
        rv = psi_timer_add(PSI_REPORT_INTERVAL_MS, report_tick, NULL, &rep.timer);
    }
    pthread_mutex_unlock(&rep.lock);
    return rv;
}

void psi_reporter_stop(void)
{
    pthread_mutex_lock(&rep.lock);
    psi_timer *t = rep.timer;
    rep.timer = NULL;
    pthread_mutex_unlock(&rep.lock);
    psi_timer_remove(t); /* waits for a report being gathered */
}
