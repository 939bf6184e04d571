/*
 * report_send.c -- the reporter thread: about once a second it gathers this
 * node's tables' counters and named values and hands them to node.c's sink
 * (a REPORT to the scheduler; on the scheduler, its own store).
 *
 * Design: a thread of its own rather than a step of node.c's timer, because
 * reading a table's counters takes that table's lock, which a large push
 * being applied holds for a while, and the timer thread must keep
 * heartbeating; and node.c's timer holds po.lock, which the kv layer takes
 * under a table's lock (a send), so reading tables from there would invert
 * that order.  This is the one file of src/node that reads the kv layer,
 * read-only: the list of open tables (psi_kv_tables: tables live until
 * ps_finalize tears kv down, which happens after this thread is joined)
 * and their public counters.
 *
 * Threads / locks: the thread holds only `rep.lock` (its stop flag) while
 * waiting, and nothing while gathering or calling the sink.
 *
 * Never: hold rep.lock while gathering or calling the sink.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "kv/table.h"
#include "node/report.h"
#include "util/util.h"

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    int started, stop;
    psi_report_sink sink;
} rep = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

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

static void *reporter_main(void *arg)
{
    (void)arg;
    static psi_report r; /* 30 KiB: not on the thread's stack; one reporter */
    uint64_t seq = 0;
    pthread_mutex_lock(&rep.lock);
    while (!rep.stop) {
        struct timespec ts = psi_deadline_in(PSI_REPORT_INTERVAL_MS);
        pthread_cond_timedwait(&rep.cond, &rep.lock, &ts);
        if (rep.stop) break;
        pthread_mutex_unlock(&rep.lock);
        psi_report_gather(&r);
        rep.sink(&r, ++seq);
        pthread_mutex_lock(&rep.lock);
    }
    pthread_mutex_unlock(&rep.lock);
    return NULL;
}

int psi_reporter_start(psi_report_sink sink)
{
    pthread_mutex_lock(&rep.lock);
    int rv = PS_OK;
    if (!rep.started) {
        rep.sink = sink;
        rep.stop = 0;
        rep.started = pthread_create(&rep.thread, NULL, reporter_main, NULL) == 0;
        rv = rep.started ? PS_OK : PS_ERR_SYS;
    }
    pthread_mutex_unlock(&rep.lock);
    return rv;
}

void psi_reporter_stop(void)
{
    pthread_mutex_lock(&rep.lock);
    int started = rep.started;
    rep.started = 0;
    rep.stop = 1;
    pthread_cond_broadcast(&rep.cond);
    pthread_mutex_unlock(&rep.lock);
    if (started) pthread_join(rep.thread, NULL);
}
