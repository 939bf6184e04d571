/*
 * join.c -- a server joining a running cluster: its share of every
 * replicated table is streamed to it, then ownership switches, with no
 * acknowledged push lost and none applied twice.
 *
 * Design.  A server started into a running cluster is admitted on STANDBY
 * (view.h): connected, on no ring.  Its program opens its tables and calls
 * ps_join(), and the scheduler (one joiner at a time) publishes it JOINING.
 * Every replicated table (not BSP) then puts it on its ring, but as an
 * extra, last member of the chains it will be in (eff[k + 1], chain.c): the
 * heads copy those segments to it and forward every later push to it too,
 * on their ordered forward streams, and after each view change send it a
 * COPIED marker on the same stream.  When the joiner holds a COPIED marker
 * from the head of each of its future segments, for its current view, it
 * has everything, and asks to serve; the scheduler publishes it ALIVE.
 *
 * The switch.  In that view the joiner heads its segments.  An old head
 * refuses requests for them from then on (PSI_ERR_MOVED: the worker sends
 * them again by the new view's chains), and sends the joiner a DRAINED
 * marker once every forward it sent before the switch is acknowledged by
 * every backup.  The new head serves nothing (requests wait) until it has a
 * DRAINED marker from each old head of its segments that is still alive:
 * so no forward of an old head can land on a backup, or on the new head,
 * after one of the new head's own.  The old head's pushes that were applied
 * before the switch were forwarded to the joiner, and its clock per worker
 * came with the copy (chain.c, send_held), so a push resent later finds
 * itself held.  Backups that stay in a chain keep their data; the one the
 * joiner pushed out of it lets its copy go (prune.c).
 *
 * Tables that are not replicated, or BSP, keep the servers of the first
 * view: a joiner takes no part of them.
 *
 * A worker that joins holds nothing: the scheduler gives it the rank (so
 * the data shard) of a worker that died, and publishes it ALIVE as soon as
 * it calls ps_join -- unless it has a BSP table open, whose iterations
 * count every worker from the first one: that is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "replica/replica.h"
#include "node/node.h"
#include "util/log.h"
#include "util/util.h"

#define MAX_DRAIN 8 /* joiners one old head owes a DRAINED marker at once */

struct kv_join {
    uint32_t *copied;   /* per sender: epoch + 1 of its last COPIED marker */
    uint8_t *drained;   /* per sender: its DRAINED marker arrived */
    uint32_t await[64]; /* old heads this new head waits to drain */
    int nawait;
    int run;            /* the wait ended: run the deferred requests */
    uint32_t drain_to[MAX_DRAIN]; /* new heads this old head owes a DRAINED marker */
    int ndrain;
    uint64_t *snap;     /* fwd_seq when the last drain began */
};

static pthread_mutex_t jn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t jn_cond = PTHREAD_COND_INITIALIZER;

static void wake(void)
{
    pthread_mutex_lock(&jn_lock);
    pthread_cond_broadcast(&jn_cond);
    pthread_mutex_unlock(&jn_lock);
}

int psi_join_init(ps_table *t)
{
    if (t->opts.bsp) return PS_OK; /* stays on the first view's servers */
    kv_join *j = calloc(1, sizeof(*j));
    if (!j) return PS_ERR_NOMEM;
    t->rs.join = j;
    j->copied = calloc(PSI_MAX_NODES, sizeof(uint32_t));
    j->drained = calloc(PSI_MAX_NODES, 1);
    j->snap = calloc(PSI_MAX_NODES, sizeof(uint64_t));
    return j->copied && j->drained && j->snap ? PS_OK : PS_ERR_NOMEM;
}

void psi_join_free(ps_table *t)
{
    if (!t->rs.join) return;
    free(t->rs.join->copied);
    free(t->rs.join->drained);
    free(t->rs.join->snap);
    free(t->rs.join);
    t->rs.join = NULL;
}

/* Send the DRAINED markers owed once no forward of the snapshot is left. */
static void check_drain(ps_table *t)
{
    kv_join *j = t->rs.join;
    if (!j->ndrain || psi_repl_fwds_below(t, j->snap)) return;
    for (int i = 0; i < j->ndrain; i++) {
        if (psi_repl_send_marker(t, j->drain_to[i], PSI_MARK_DRAINED) != 0)
            return; /* out of memory: tried again on the next acknowledgement */
        PSI_INFO("table %s: handed its segments over to node %u", t->name, j->drain_to[i]);
        j->drain_to[i] = PSI_ID_NONE;
    }
    j->ndrain = 0;
}

static void add_id(uint32_t *set, int *n, int cap, uint32_t id)
{
    for (int i = 0; i < *n; i++)
        if (set[i] == id) return;
    if (*n < cap) set[(*n)++] = id;
    else PSI_ERROR("join: more than %d servers to wait for; node %u left out", cap, id);
}

void psi_join_on_view(ps_table *t, const uint32_t *old)
{
    kv_join *j = t->rs.join;
    uint32_t me = psi_kv_id(), w = (uint32_t)t->rs.w, nsegs = psi_ring_nsegs(t->ring);
    int copy_mark = 0, ndrain = j ? j->ndrain : 0, nfrom = 0;
    uint32_t from[64]; /* the old heads that handed segments to this node */
    if (!j) return;
    for (uint32_t seg = 0; seg < nsegs; seg++) {
        const uint32_t *c = psi_kv_chain(t, seg), *o = old + (size_t)seg * w;
        copy_mark |= t->rs.joiner != PSI_ID_NONE && c[0] == me && c[w - 1] == t->rs.joiner;
        int handoff = o[0] != c[0] && o[0] != PSI_ID_NONE && c[0] != PSI_ID_NONE &&
                      !t->dead[o[0]] && !t->dead[c[0]];
        if (handoff && o[0] == me) add_id(j->drain_to, &j->ndrain, MAX_DRAIN, c[0]);
        if (handoff && c[0] == me) {
            add_id(from, &nfrom, (int)PSI_ARRAY_LEN(from), o[0]);
            if (!t->rs.handed && (t->rs.handed = malloc(nsegs * sizeof(uint32_t))))
                for (uint32_t x = 0; x < nsegs; x++) t->rs.handed[x] = PSI_ID_NONE;
            if (t->rs.handed) t->rs.handed[seg] = o[0]; /* what it held, this node holds */
            else PSI_ERROR("table %s: out of memory taking segments over", t->name);
        }
    }
    for (int i = 0; i < nfrom; i++) { /* a marker that came first is used up */
        if (j->drained[from[i]]) j->drained[from[i]] = 0;
        else add_id(j->await, &j->nawait, (int)PSI_ARRAY_LEN(j->await), from[i]);
    }
    if (copy_mark && psi_repl_send_marker(t, t->rs.joiner, PSI_MARK_COPIED) != 0)
        PSI_ERROR("table %s: could not tell joining node %u its copy is complete", t->name,
                  t->rs.joiner);
    if (j->ndrain > ndrain) { /* a new drain: everything forwarded until now */
        memcpy(j->snap, t->rs.fwd_seq, PSI_MAX_NODES * sizeof(uint64_t));
        PSI_INFO("table %s: draining forwards before handing segments over", t->name);
    }
    for (int i = ndrain; i < j->ndrain; i++) /* what it holds now, before any new apply */
        if (psi_repl_send_held(t, j->drain_to[i], PSI_MARK_HANDED) != 0)
            PSI_ERROR("table %s: could not tell node %u which pushes it held", t->name,
                      j->drain_to[i]);
    check_drain(t);
    for (int i = 0; i < j->nawait;) /* a dead old head drains nothing: failover */
        if (t->dead[j->await[i]]) j->await[i] = j->await[--j->nawait];
        else i++;
    wake();
}

void psi_join_on_marker(ps_table *t, const psi_msg *m)
{
    kv_join *j = t->rs.join;
    uint32_t from = m->hdr.sender;
    if (!j || from >= PSI_MAX_NODES) return;
    if (m->hdr.arg == PSI_MARK_COPIED) {
        uint32_t e = (uint32_t)m->hdr.key_hi + 1;
        if (e > j->copied[from]) j->copied[from] = e;
    } else if (m->hdr.arg == PSI_MARK_DRAINED) {
        int awaited = 0;
        for (int i = 0; i < j->nawait && !awaited; i++)
            if ((awaited = j->await[i] == from)) {
                j->await[i] = j->await[--j->nawait];
                j->run |= j->nawait == 0;
            }
        if (!awaited) j->drained[from] = 1; /* ahead of this node's view change */
    }
    wake();
}

void psi_join_on_ack(ps_table *t)
{
    if (t->rs.join) check_drain(t);
}

int psi_join_waiting(const ps_table *t) { return t->rs.join && t->rs.join->nawait > 0; }

int psi_join_take_run(ps_table *t)
{
    if (!t->rs.join || !t->rs.join->run) return 0;
    t->rs.join->run = 0;
    return 1;
}

/* ---- ps_join -------------------------------------------------------------------------- */

/* Whether table t (lock held) holds what this joiner needs: in phase 1, a
 * COPIED marker, for its current view, from the head of each segment it
 * will be in; in phase 2, the chains of view `epoch` or later, and no old
 * head left to drain (phase 0, a worker, never asks). */
static int table_ready(ps_table *t, int phase, uint32_t epoch)
{
    uint32_t me = psi_kv_id(), nsegs = psi_ring_nsegs(t->ring);
    if (t->eff_epoch < epoch) return 0;
    if (phase == 2) return t->rs.joiner != me && t->rs.join->nawait == 0;
    if (t->rs.joiner != me) return 0;
    for (uint32_t seg = 0; seg < nsegs; seg++) {
        const uint32_t *c = psi_kv_chain(t, seg);
        if (c[t->rs.w - 1] == me && c[0] != PSI_ID_NONE &&
            t->rs.join->copied[c[0]] < t->eff_epoch + 1)
            return 0;
    }
    return 1;
}

static int all_ready(int phase, uint32_t epoch)
{
    ps_table *ts[PSI_MAX_TABLES];
    int n = psi_kv_tables(ts, PSI_MAX_TABLES), ready = 1;
    for (int i = 0; i < n && ready && phase; i++) { /* phase 0, a worker: nothing to hold */
        if (!ts[i]->rs.join) continue;
        pthread_mutex_lock(&ts[i]->lock);
        ready = table_ready(ts[i], phase, epoch);
        pthread_mutex_unlock(&ts[i]->lock);
    }
    return ready;
}

/* Wait (bounded) until this node is in state `want` of a view (its epoch
 * to *at) and every table is ready for `phase` in it; with `after`, stop
 * (PS_ERR_STATE) as soon as a view newer than *after is not `want`. */
static int wait_phase(int want, int phase, uint64_t deadline, const uint32_t *after, uint32_t *at)
{
    for (;;) {
        uint32_t epoch;
        int st = psi_node_my_state(&epoch);
        if (st == PSI_NODE_DEAD) return PS_ERR_PEER;
        if (st == want && all_ready(phase, epoch)) {
            if (at) *at = epoch;
            return PS_OK;
        }
        if (after && epoch > *after && st != want) return PS_ERR_STATE;
        if (psi_kv_now() >= deadline) return PS_ERR_TIMEOUT;
        pthread_mutex_lock(&jn_lock);
        struct timespec ts = psi_deadline_in(50); /* views arrive without a wake */
        pthread_cond_timedwait(&jn_cond, &jn_lock, &ts);
        pthread_mutex_unlock(&jn_lock);
    }
}

/* A worker joining: it holds nothing, so it works as soon as the
 * scheduler says so -- unless a BSP table counts it in every iteration. */
static int join_worker(uint64_t deadline)
{
    ps_table *ts[PSI_MAX_TABLES];
    int n = psi_kv_tables(ts, PSI_MAX_TABLES);
    for (int i = 0; i < n; i++)
        if (ts[i]->opts.bsp) {
            PSI_ERROR("ps_join: table %s is BSP: its iterations count every worker from the "
                      "first one, so a worker cannot join it mid-run", ts[i]->name);
            return PS_ERR_STATE;
        }
    uint32_t epoch;
    psi_node_my_state(&epoch);
    int rv = psi_node_serve(1, epoch);
    if (rv == 0) rv = wait_phase(PSI_NODE_ALIVE, 0, deadline, NULL, NULL);
    if (rv == 0) PSI_INFO("joined: this worker works on shard %d", ps_my_rank());
    return rv;
}

int ps_join(void)
{
    static const char *const names[] = {"PS_JOIN_TIMEOUT_MS", NULL};
    long timeout;
    uint32_t epoch;
    int rv = psi_env_long(names, 600000, 1, 86400000, &timeout);
    if (rv != 0) return rv;
    int st = psi_node_my_state(&epoch);
    if (st == PSI_NODE_ALIVE) return 0; /* a node of the first view: nothing to do */
    if (st != PSI_NODE_STANDBY && st != PSI_NODE_JOINING) return PS_ERR_STATE;
    uint64_t deadline = psi_kv_now() + (uint64_t)timeout;
    if (psi_kv_role() == PS_ROLE_WORKER) {
        rv = join_worker(deadline);
        if (rv != 0) PSI_ERROR("ps_join failed: %s", ps_strerror(rv));
        return rv == 0 ? 1 : rv;
    }
    PSI_INFO("joining the cluster: asking for this server's share of the tables");
    rv = psi_node_serve(1, epoch);
    for (int again = 1; rv == 0 && again;) {
        uint32_t ready; /* copies complete as of view `ready`; ALIVE only in the next */
        rv = wait_phase(PSI_NODE_JOINING, 1, deadline, NULL, &ready);
        if (rv == 0) {
            PSI_INFO("joining: every segment copied (view %u); taking them over", ready);
            rv = psi_node_serve(2, ready);
        }
        if (rv == 0) rv = wait_phase(PSI_NODE_ALIVE, 2, deadline, &ready, NULL);
        again = rv == PS_ERR_STATE; /* a newer view came first: check the copies again */
        if (again) rv = 0;
    }
    if (rv == 0) PSI_INFO("joined: this server now serves its share");
    else PSI_ERROR("ps_join failed: %s", ps_strerror(rv));
    return rv == 0 ? 1 : rv;
}
