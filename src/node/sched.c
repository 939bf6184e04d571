/*
 * sched.c -- the scheduler's membership state machine (see sched.h).
 *
 * State: one slot per node id (1 + S + W slots, more as nodes join the
 * running cluster), each with its role, rank, address, state (PSI_NODE_*),
 * whether it left cleanly and when it was last heard from; the current
 * epoch; and per barrier group the number of the last completed barrier and
 * who has arrived at the next one.
 *
 * Joins are idempotent: a join from an address already known gets the same
 * id back.  A node joining the running cluster waits on standby until it
 * asks to serve; servers then join one at a time (JOINING, then ALIVE),
 * a late node's barrier numbers are offset to the cluster's.  A barrier completes when every alive, not-left member of its
 * group has arrived; a death or a leave re-checks every open barrier, so a
 * crashed node never blocks the survivors.
 *
 * Liveness is an accrual detector bounded by the timeout T: every message
 * from a node is a sample of the gaps between its messages (an exponentially
 * weighted mean and variance, the phi accrual idea of Hayashibara et al.).
 * A node silent past T is first *suspected*; the verdict waits while its
 * silence is still within Z standard deviations of its usual gaps (a node
 * whose recent history has stalls of nearly T is given more room), and
 * falls at the latest at 2 T, so a real death is detected within 2 T and a
 * node with steady heartbeats within T, as before.  The nodes of a cluster
 * share machines and their stalls (an oversubscribed host stops them all at
 * once), so the gaps of every node are also pooled, weighted so that the
 * pool spans about as much time as one node's history, and the larger of
 * the node's and the pool's spread counts.  Too few samples (a node that
 * just joined, in a cluster with no history): the verdict falls at T.
 *
 * Never: block, lock, or touch the transport directly (all via psi_sched_io).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/sched.h"
#include "util/log.h"
#include "util/util.h"

typedef struct gap_stats {
    double mean, var;  /* gaps between messages (ms), exponentially weighted */
    int n;             /* samples (capped at GAP_MIN_SAMPLES) */
} gap_stats;

typedef struct slot {
    int present, alive, left; /* alive: PSI_NODE_* */
    int wants;         /* a server on standby asked for its share (ps_join) */
    uint64_t bar_base[8]; /* joined late: its barrier n is the cluster's base + n */
    uint8_t role;
    int32_t rank;
    char addr[PSI_ADDR_MAX];
    uint64_t last_seen_ms;
    uint64_t told_ms;  /* when a dead node that still talks was last told */
    gap_stats gaps;    /* its gaps between messages */
    int suspected;     /* silent past the timeout, not yet judged (logged once) */
} slot;

/* Accrual detector (see above): weight of a new gap, the samples needed
 * before the history is trusted, and the verdict's distance in standard
 * deviations (5.6: a gap that long has probability ~1e-8 under a normal
 * law, phi = 8 in the accrual detector's terms). */
#define GAP_WEIGHT (1.0 / 16)
#define GAP_MIN_SAMPLES 8
#define GAP_Z 5.6

typedef struct barrier {
    uint64_t done;     /* number of the last completed barrier */
    uint8_t *arrived;  /* by node id, for barrier done + 1 */
} barrier;

struct psi_sched {
    int nservers, nworkers, nslots, joined;
    gap_stats pool;    /* every node's gaps (see the top of this file) */
    int next_rank;     /* the rank of the next server that joins late */
    int next_wrank;    /* ... and of a late worker when no shard is free */
    uint32_t epoch;
    uint64_t timeout_ms;
    slot *slots;
    barrier bar[8];
    psi_sched_io io;
};

psi_sched *psi_sched_new(int nservers, int nworkers, const char *my_addr,
                         uint64_t hb_timeout_ms, const psi_sched_io *io)
{
    psi_sched *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->nservers = nservers;
    s->nworkers = nworkers;
    s->nslots = 1 + nservers + nworkers; /* grows as servers join late */
    s->next_rank = nservers;
    s->next_wrank = nworkers;
    s->timeout_ms = hb_timeout_ms;
    s->io = *io;
    s->slots = calloc(PSI_MAX_NODES, sizeof(slot));
    for (int g = 0; g < 8; g++) s->bar[g].arrived = calloc(PSI_MAX_NODES, 1);
    if (!s->slots || !s->bar[7].arrived) goto fail;
    for (int g = 1; g < 8; g++)
        if (!s->bar[g].arrived) goto fail;
    s->slots[0] = (slot){.present = 1, .alive = 1, .role = PS_ROLE_SCHEDULER};
    snprintf(s->slots[0].addr, PSI_ADDR_MAX, "%s", my_addr);
    return s;
fail:
    psi_sched_free(s);
    return NULL;
}

void psi_sched_free(psi_sched *s)
{
    if (!s) return;
    for (int g = 0; g < 8; g++) free(s->bar[g].arrived);
    free(s->slots);
    free(s);
}

static const char *role_name(int role) { return ps_role_name((ps_role)role); }

/* ---- views ---------------------------------------------------------------- */

static int build_view(const psi_sched *s, psi_view *v)
{
    v->epoch = s->epoch;
    v->n = 0;
    v->nodes = calloc((size_t)s->nslots, sizeof(psi_node));
    if (!v->nodes) return PS_ERR_NOMEM;
    for (int id = 0; id < s->nslots; id++) {
        const slot *sl = &s->slots[id];
        if (!sl->present) continue;
        psi_node *nd = &v->nodes[v->n++];
        nd->id = (uint32_t)id;
        nd->role = sl->role;
        nd->alive = (uint8_t)sl->alive;
        nd->rank = sl->rank;
        memcpy(nd->addr, sl->addr, PSI_ADDR_MAX);
    }
    return PS_OK;
}

/* A VIEW message carrying the encoded view buf[0, len), or NULL. */
static psi_msg *view_msg(const uint8_t *buf, size_t len)
{
    psi_msg *m = psi_msg_new(PSI_MSG_VIEW);
    if (m && psi_msg_set_seg(m, PSI_SEG_AUX, buf, len) == 0) {
        m->hdr.flags = PSI_F_CONTROL;
        return m;
    }
    psi_msg_free(m);
    return NULL;
}

/* Epoch + 1, then send the new view to every live node that has not left. */
static void publish(psi_sched *s)
{
    psi_view v;
    uint8_t *buf;
    size_t len;

    s->epoch++;
    if (build_view(s, &v) != 0 || psi_view_encode(&v, &buf, &len) != 0) {
        PSI_ERROR("out of memory publishing view %u", s->epoch);
        psi_view_free(&v);
        return;
    }
    for (int id = 1; id < s->nslots; id++) {
        const slot *sl = &s->slots[id];
        if (!sl->present || !sl->alive || sl->left) continue;
        psi_msg *m = view_msg(buf, len);
        if (m) s->io.send_reliable(s->io.arg, (uint32_t)id, m);
    }
    s->io.install_view(s->io.arg, &v);
    PSI_INFO("published view %u: %d of %d nodes alive", s->epoch, psi_view_count(&v, PS_GROUP_ALL, 1),
             (int)v.n);
    free(buf);
    psi_view_free(&v);
}

/* ---- barriers ------------------------------------------------------------- */

static int is_member(const psi_sched *s, int id, int group)
{
    const slot *sl = &s->slots[id];
    return sl->present && sl->alive && !sl->left && psi_group_has(group, sl->role);
}

static void check_barrier(psi_sched *s, int group)
{
    barrier *b = &s->bar[group];
    int any = 0;
    for (int id = 0; id < s->nslots; id++) {
        if (b->arrived[id]) any = 1;
        if (is_member(s, id, group) && !b->arrived[id]) return;
    }
    if (!any) return; /* nobody is waiting */
    b->done++;
    for (int id = 0; id < s->nslots; id++) {
        int member = is_member(s, id, group) && b->arrived[id];
        b->arrived[id] = 0;
        if (!member) continue;
        if (id == 0) {
            s->io.barrier_done(s->io.arg, group, b->done);
            continue;
        }
        psi_msg *m = psi_msg_new(PSI_MSG_BARRIER_DONE);
        if (!m) continue;
        m->hdr.flags = PSI_F_CONTROL;
        m->hdr.arg = (uint32_t)group;
        m->hdr.key_lo = m->hdr.key_hi = b->done - s->slots[id].bar_base[group];
        s->io.send_reliable(s->io.arg, (uint32_t)id, m);
    }
}

static void check_all_barriers(psi_sched *s)
{
    for (int g = 1; g < 8; g++) check_barrier(s, g);
}

void psi_sched_on_barrier(psi_sched *s, uint32_t from, int group, uint64_t seq)
{
    if (group < 1 || group > 7 || from >= (uint32_t)s->nslots || !s->slots[from].present) {
        PSI_WARN("barrier request from node %u for bad group %d ignored", from, group);
        return;
    }
    barrier *b = &s->bar[group];
    seq += s->slots[from].bar_base[group];
    if (seq <= b->done) return; /* already released; the DONE is being resent */
    if (seq != b->done + 1 || !psi_group_has(group, s->slots[from].role)) {
        PSI_WARN("node %u entered barrier %llu of group %d, expected %llu: ignored", from,
                 (unsigned long long)seq, group, (unsigned long long)(b->done + 1));
        return;
    }
    b->arrived[from] = 1;
    check_barrier(s, group);
}

/* ---- joins ---------------------------------------------------------------- */

static int find_addr(const psi_sched *s, const char *addr)
{
    for (int id = 1; id < s->nslots; id++)
        if (s->slots[id].present && strcmp(s->slots[id].addr, addr) == 0) return id;
    return -1;
}

/* Pick the rank for a join: the requested one if free, else the lowest
 * free one.  Returns the rank or a ps_err (and logs why). */
static int pick_rank(const psi_sched *s, const psi_join *j)
{
    int n = j->role == PS_ROLE_SERVER ? s->nservers : s->nworkers;
    int base = j->role == PS_ROLE_SERVER ? 1 : 1 + s->nservers;
    if (j->rank >= n) {
        PSI_ERROR("%s at %s asked for rank %d but the cluster has %d %ss: refused",
                  role_name(j->role), j->addr, j->rank, n, role_name(j->role));
        return PS_ERR_CONFIG;
    }
    if (j->rank >= 0) {
        if (!s->slots[base + j->rank].present) return j->rank;
        PSI_ERROR("%s rank %d at %s is already taken by %s: refused", role_name(j->role),
                  j->rank, j->addr, s->slots[base + j->rank].addr);
        return PS_ERR_CONFIG;
    }
    for (int r = 0; r < n; r++)
        if (!s->slots[base + r].present) return r;
    PSI_ERROR("%s at %s cannot join: all %d %s slots are taken", role_name(j->role), j->addr, n,
              role_name(j->role));
    return PS_ERR_CONFIG;
}

/* The rank of a worker joining late: that of a worker that died or left,
 * whose data shard nobody works on now, else a new one (>= W: the program
 * decides what it works on). */
static int late_worker_rank(psi_sched *s)
{
    for (int r = 0; r < s->nworkers; r++) {
        int taken = 0;
        for (int id = 1; id < s->nslots && !taken; id++) {
            const slot *sl = &s->slots[id];
            taken = sl->present && sl->role == PS_ROLE_WORKER && sl->rank == r && sl->alive &&
                    !sl->left;
        }
        if (!taken) return r;
    }
    return s->next_wrank++;
}

/* A node joining the running cluster: a new id, and a new rank (a server)
 * or a free shard's (a worker), on standby until it asks to serve
 * (psi_sched_on_serve).  Its barriers count from the cluster's current ones. */
static void join_late(psi_sched *s, const psi_join *j, uint64_t ts, uint64_t now_ms)
{
    static uint32_t temp = 0xC0000000u;
    if (s->nslots == PSI_MAX_NODES) {
        PSI_ERROR("%s at %s cannot join: the cluster has %d node ids", role_name(j->role),
                  j->addr, PSI_MAX_NODES);
        s->io.connect(s->io.arg, temp, j->addr);
        s->io.send_ack(s->io.arg, temp++, ts, PS_ERR_TOOBIG);
        return;
    }
    int rank = j->role == PS_ROLE_SERVER ? s->next_rank++ : late_worker_rank(s);
    int id = s->nslots++;
    slot *sl = &s->slots[id];
    *sl = (slot){.present = 1, .alive = PSI_NODE_STANDBY, .role = j->role, .rank = rank,
                 .last_seen_ms = now_ms};
    for (int g = 0; g < 8; g++) sl->bar_base[g] = s->bar[g].done;
    snprintf(sl->addr, PSI_ADDR_MAX, "%s", j->addr);
    PSI_INFO("%s %d joined the running cluster from %s as node %d, on standby",
             role_name(j->role), sl->rank, j->addr, id);
    s->io.connect(s->io.arg, (uint32_t)id, j->addr);
    s->io.send_ack(s->io.arg, (uint32_t)id, ts, 0);
    publish(s);
}

/* Publish the next server that asked for its share JOINING, if none is. */
static void next_joiner(psi_sched *s)
{
    int first = 0;
    for (int id = 1; id < s->nslots; id++) {
        const slot *sl = &s->slots[id];
        if (!sl->present || sl->left) continue;
        if (sl->alive == PSI_NODE_JOINING) return; /* one at a time */
        if (!first && sl->alive == PSI_NODE_STANDBY && sl->wants) first = id;
    }
    if (!first) return;
    s->slots[first].alive = PSI_NODE_JOINING;
    PSI_INFO("server %d (node %d) joining: its share is copied to it", s->slots[first].rank,
             first);
    publish(s);
}

void psi_sched_on_serve(psi_sched *s, uint32_t from, int phase, uint32_t epoch)
{
    if (from == 0 || from >= (uint32_t)s->nslots || !s->slots[from].present) return;
    slot *sl = &s->slots[from];
    if (phase == 1 && sl->alive == PSI_NODE_STANDBY && sl->role == PS_ROLE_WORKER) {
        sl->alive = PSI_NODE_ALIVE; /* a worker holds no keys: it works at once */
        PSI_INFO("worker %d (node %u) joined: it works on shard %d", sl->rank, from, sl->rank);
        publish(s);
    } else if (phase == 1 && sl->alive == PSI_NODE_STANDBY) {
        sl->wants = 1;
        next_joiner(s);
    } else if (phase == 2 && sl->alive == PSI_NODE_JOINING && epoch != s->epoch) {
        /* its copies were complete for an older view: a death since may have
         * given some of its segments a new head, whose copy it must wait for */
        PSI_INFO("server %d (node %u) is ready as of view %u, not %u: it checks again",
                 sl->rank, from, epoch, s->epoch);
    } else if (phase == 2 && sl->alive == PSI_NODE_JOINING) {
        sl->alive = PSI_NODE_ALIVE;
        PSI_INFO("server %d (node %u) joined: it serves its share", sl->rank, from);
        publish(s);
        next_joiner(s);
    } else if (phase != 1 && phase != 2) {
        PSI_WARN("node %u sent a serve request of unknown phase %d: ignored", from, phase);
    }
}

/* The last expected node joined: publish view 1.  Forming is not silence:
 * a node admitted early may not have heard its answer yet (it cannot beat
 * before it knows its id, and the answer crosses a connection the
 * scheduler had to open and prove, among S + W others), so every clock
 * starts now, and no one was judged before (psi_sched_tick). */
static void form(psi_sched *s, uint64_t now_ms)
{
    for (int id = 1; id < s->nslots; id++)
        s->slots[id].last_seen_ms = PSI_MAX(s->slots[id].last_seen_ms, now_ms);
    publish(s);
}

void psi_sched_on_join(psi_sched *s, const psi_join *j, uint64_t ts, uint64_t now_ms)
{
    int id = find_addr(s, j->addr);
    if (id > 0) { /* a resent join: same answer, unless that node is gone */
        slot *sl = &s->slots[id];
        int st = sl->alive && !sl->left ? 0 : PS_ERR_STATE;
        /* a node that still asks is alive: it cannot beat before our answer,
         * which may be late (a lost SYN on our connection to it costs TCP
         * a second), and that is no silence */
        if (!st) sl->last_seen_ms = now_ms;
        if (st) PSI_ERROR("node %d at %s is dead or left and cannot rejoin", id, j->addr);
        s->io.send_ack(s->io.arg, (uint32_t)id, ts, st);
        return;
    }
    int mismatch = j->sizes && (j->nservers != s->nservers || j->nworkers != s->nworkers);
    if (mismatch)
        PSI_ERROR("%s at %s was started for %u servers and %u workers, this cluster has %d "
                  "and %d: refused (PS_NUM_SERVERS / PS_NUM_WORKERS must match everywhere)",
                  role_name(j->role), j->addr, j->nservers, j->nworkers, s->nservers,
                  s->nworkers);
    if (!mismatch && s->epoch > 0 && j->role != PS_ROLE_SCHEDULER && j->rank < 0) {
        join_late(s, j, ts, now_ms);
        return;
    }
    int rank = j->role == PS_ROLE_SCHEDULER || mismatch ? PS_ERR_CONFIG : pick_rank(s, j);
    if (rank < 0 || s->epoch > 0) {
        if (rank >= 0)
            PSI_ERROR("%s at %s joined after the cluster formed with rank %d: refused (a node "
                      "joins a running cluster without one: no PS_RANK)",
                      role_name(j->role), j->addr, j->rank);
        /* Tell it through a temporary id so its ps_start fails fast. */
        static uint32_t temp = 0x80000000u;
        s->io.connect(s->io.arg, temp, j->addr);
        s->io.send_ack(s->io.arg, temp++, ts, rank < 0 ? rank : PS_ERR_STATE);
        return;
    }
    id = (j->role == PS_ROLE_SERVER ? 1 : 1 + s->nservers) + rank;
    s->slots[id] = (slot){.present = 1, .alive = 1, .role = j->role, .rank = rank,
                          .last_seen_ms = now_ms};
    snprintf(s->slots[id].addr, PSI_ADDR_MAX, "%s", j->addr);
    s->joined++;
    PSI_INFO("%s %d joined from %s as node %d (%d of %d)", role_name(j->role), rank, j->addr,
             id, s->joined, s->nslots - 1);
    s->io.connect(s->io.arg, (uint32_t)id, j->addr);
    s->io.send_ack(s->io.arg, (uint32_t)id, ts, 0);
    if (s->joined == s->nslots - 1) form(s, now_ms);
}

/* ---- liveness ------------------------------------------------------------- */

/* Send the current view to node `id` (declared dead) once per 100 ms. */
static void tell_dead(psi_sched *s, int id, uint64_t now_ms)
{
    psi_view v;
    uint8_t *buf;
    size_t len;
    slot *sl = &s->slots[id];
    if (s->epoch == 0 || (sl->told_ms && now_ms - sl->told_ms < 100)) return;
    sl->told_ms = now_ms;
    if (build_view(s, &v) != 0) return;
    if (psi_view_encode(&v, &buf, &len) == 0) {
        psi_msg *m = view_msg(buf, len);
        if (m) s->io.send(s->io.arg, (uint32_t)id, m);
        free(buf);
    }
    psi_view_free(&v);
}

/* One more gap `g` (ms) into `st`, with weight w. */
static void add_gap(gap_stats *st, double g, double w)
{
    if (st->n == 0) {
        st->mean = g;
        st->var = 0;
    } else {
        double d = g - st->mean;
        st->mean += w * d;
        st->var += w * (d * d - st->var);
    }
    if (st->n < GAP_MIN_SAMPLES) st->n++;
}

/* One more gap between messages of a node: its statistics and the pool's
 * (weighted down by the number of nodes feeding it). */
static void sample_gap(psi_sched *s, slot *sl, uint64_t now_ms)
{
    /* 0 ms: the same beat over UDP and TCP, not a gap */
    if (now_ms <= sl->last_seen_ms) return;
    double g = (double)(now_ms - sl->last_seen_ms);
    add_gap(&sl->gaps, g, GAP_WEIGHT);
    add_gap(&s->pool, g, GAP_WEIGHT / PSI_MAX(1, s->nslots - 1));
}

void psi_sched_on_alive(psi_sched *s, uint32_t from, uint64_t now_ms)
{
    if (from == 0 || from >= (uint32_t)s->nslots || !s->slots[from].present) return;
    slot *sl = &s->slots[from];
    if (sl->alive && !sl->left) {
        if (sl->suspected)
            PSI_WARN("%s %d (node %u) answered after %llu ms of silence: suspected, not declared "
                     "dead", role_name(sl->role), sl->rank, from,
                     (unsigned long long)(now_ms - sl->last_seen_ms));
        sl->suspected = 0;
        sample_gap(s, sl, now_ms);
    }
    sl->last_seen_ms = PSI_MAX(sl->last_seen_ms, now_ms);
    if (!sl->alive && !sl->left) tell_dead(s, (int)from, now_ms);
}

void psi_sched_on_leave(psi_sched *s, uint32_t from, int handover)
{
    if (from == 0 || from >= (uint32_t)s->nslots || !s->slots[from].present) return;
    if (s->slots[from].left) return;
    s->slots[from].left = 1;
    s->io.forget(s->io.arg, from);
    PSI_INFO("node %u left%s", from, handover ? ", handing its ranges over" : "");
    if (handover && s->slots[from].alive && s->epoch > 0) {
        s->slots[from].alive = 0;
        publish(s);
        next_joiner(s);
    }
    check_all_barriers(s);
}

void psi_sched_credit(psi_sched *s, uint64_t gap_ms, uint64_t now_ms)
{
    for (int id = 1; id < s->nslots; id++)
        s->slots[id].last_seen_ms = PSI_MIN(s->slots[id].last_seen_ms + gap_ms, now_ms);
}

/* The gaps a silent node is judged against: its own mean, and the larger
 * of its own and the pool's variance (each counted once it has enough
 * samples; the pool's mean when it has none).  0 when neither has. */
static int judged_gaps(const psi_sched *s, const slot *sl, double *mean, double *var)
{
    int own = sl->gaps.n >= GAP_MIN_SAMPLES, pool = s->pool.n >= GAP_MIN_SAMPLES;
    *mean = own ? sl->gaps.mean : s->pool.mean;
    *var = PSI_MAX(own ? sl->gaps.var : 0, pool ? s->pool.var : 0);
    return own || pool;
}

/* A node silent for `silence` > the timeout: may the verdict still wait?
 * Past twice the timeout, no; else while the silence is within GAP_Z
 * standard deviations of the gaps it is judged against. */
static int may_wait(const psi_sched *s, const slot *sl, uint64_t silence)
{
    double mean, var;
    if (silence > 2 * s->timeout_ms || !judged_gaps(s, sl, &mean, &var)) return 0;
    double over = (double)silence - mean;
    return over < 0 || over * over < GAP_Z * GAP_Z * var;
}

/* Said once when a node becomes suspected. */
static void say_suspected(const psi_sched *s, const slot *sl, int id, uint64_t silence)
{
    double mean, var;
    judged_gaps(s, sl, &mean, &var);
    PSI_WARN("%s %d (node %d at %s) suspected: silent for %llu ms, gaps %.0f ms +- %.0f (its "
             "own or the cluster's); declared dead once the silence leaves them, at the latest "
             "after %llu ms", role_name(sl->role), sl->rank, id, sl->addr,
             (unsigned long long)silence, mean, sqrt(var),
             (unsigned long long)(2 * s->timeout_ms));
}

void psi_sched_tick(psi_sched *s, uint64_t now_ms)
{
    int changed = 0;
    if (s->epoch == 0) return; /* forming: no one is judged (see form) */
    for (int id = 1; id < s->nslots; id++) {
        slot *sl = &s->slots[id];
        if (!sl->present || !sl->alive || sl->left) continue;
        uint64_t silence = now_ms > sl->last_seen_ms ? now_ms - sl->last_seen_ms : 0;
        if (silence <= s->timeout_ms) continue;
        if (may_wait(s, sl, silence)) {
            if (!sl->suspected) say_suspected(s, sl, id, silence);
            sl->suspected = 1;
            continue;
        }
        PSI_WARN("%s %d (node %d at %s) declared dead: silent for %llu ms", role_name(sl->role),
                 sl->rank, id, sl->addr, (unsigned long long)(now_ms - sl->last_seen_ms));
        sl->alive = 0;
        s->io.forget(s->io.arg, (uint32_t)id);
        changed = 1;
    }
    if (!changed) return;
    if (s->epoch > 0) publish(s);
    next_joiner(s);
    check_all_barriers(s);
}

int psi_sched_lost(const psi_sched *s)
{
    int ok[3] = {0}, dead[3] = {0};
    for (int id = 1; id < s->nslots; id++) {
        const slot *sl = &s->slots[id];
        if (!sl->present || sl->role > PS_ROLE_WORKER) continue;
        if (sl->alive || sl->left) ok[sl->role]++;
        else dead[sl->role]++;
    }
    if (s->epoch == 0) return 0;
    if (dead[PS_ROLE_SERVER] && !ok[PS_ROLE_SERVER]) return PS_ROLE_SERVER;
    if (dead[PS_ROLE_WORKER] && !ok[PS_ROLE_WORKER]) return PS_ROLE_WORKER;
    return 0;
}

int psi_sched_active(const psi_sched *s)
{
    int n = 0;
    for (int id = 1; id < s->nslots; id++)
        if (s->slots[id].present && s->slots[id].alive && !s->slots[id].left) n++;
    return n;
}

int psi_sched_ready(const psi_sched *s) { return s->epoch > 0; }
