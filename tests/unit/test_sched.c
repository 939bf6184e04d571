/*
 * test_sched.c -- unit tests of src/node/sched.c, the scheduler's membership
 * state machine, driven through fake psi_sched_io callbacks that record
 * every send (peer, type, arg, key_lo, and the decoded view of a VIEW), ACK,
 * connect, forget, locally installed view and local barrier completion.
 *
 * The cluster is S = 2 servers and W = 3 workers, so node ids are
 * 0 (scheduler), 1..2 (servers rank 0..1) and 3..5 (workers rank 0..2).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "node/sched.h"
#include "node/view.h"
#include "ps/ps.h"

#define S 2
#define W 3
#define NNODES (S + W)
#define TIMEOUT_MS 1000
#define SCHED_ADDR "10.0.0.1:9000"
#define MAXREC 128
#define TEMP_ID_MIN 0x80000000u

/* ---- the fake io ------------------------------------------------------------ */

typedef struct sent {
    uint32_t peer;
    uint8_t type;
    uint16_t flags;
    uint32_t arg;
    uint64_t key_lo, key_hi;
    int has_view;
    psi_view view; /* decoded aux of a VIEW */
} sent;

typedef struct ack {
    uint32_t peer;
    uint64_t ts;
    int status;
} ack;

typedef struct conn {
    uint32_t peer;
    char addr[PSI_ADDR_MAX];
} conn;

typedef struct bdone {
    int group;
    uint64_t seq;
} bdone;

typedef struct fake {
    psi_sched *s;
    sent sends[MAXREC];
    int nsends;
    ack acks[MAXREC];
    int nacks;
    conn conns[MAXREC];
    int nconns;
    uint32_t forgets[MAXREC];
    int nforgets;
    psi_view views[MAXREC]; /* installed locally, deep copies */
    int nviews;
    bdone bdones[MAXREC];
    int nbdones;
} fake;

static void f_send(void *arg, uint32_t peer, psi_msg *m)
{
    fake *f = arg;
    assert_true(f->nsends < MAXREC);
    sent *e = &f->sends[f->nsends++];
    memset(e, 0, sizeof(*e));
    e->peer = peer;
    e->type = m->hdr.type;
    e->flags = m->hdr.flags;
    e->arg = m->hdr.arg;
    e->key_lo = m->hdr.key_lo;
    e->key_hi = m->hdr.key_hi;
    if (m->hdr.type == PSI_MSG_VIEW) {
        assert_int_equal(psi_view_decode(m->seg[PSI_SEG_AUX], m->hdr.seg_len[PSI_SEG_AUX],
                                         &e->view),
                         PS_OK);
        e->has_view = 1;
    }
    psi_msg_free(m); /* send_reliable takes ownership */
}

static void f_ack(void *arg, uint32_t peer, uint64_t ts, int status)
{
    fake *f = arg;
    assert_true(f->nacks < MAXREC);
    f->acks[f->nacks++] = (ack){.peer = peer, .ts = ts, .status = status};
}

static void f_connect(void *arg, uint32_t peer, const char *addr)
{
    fake *f = arg;
    assert_true(f->nconns < MAXREC);
    conn *c = &f->conns[f->nconns++];
    c->peer = peer;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
}

static void f_forget(void *arg, uint32_t peer)
{
    fake *f = arg;
    assert_true(f->nforgets < MAXREC);
    f->forgets[f->nforgets++] = peer;
}

static void f_install(void *arg, const psi_view *v)
{
    fake *f = arg;
    assert_true(f->nviews < MAXREC);
    psi_view *dst = &f->views[f->nviews++];
    memset(dst, 0, sizeof(*dst));
    assert_int_equal(psi_view_copy(dst, v), PS_OK);
}

static void f_bdone(void *arg, int group, uint64_t seq)
{
    fake *f = arg;
    assert_true(f->nbdones < MAXREC);
    f->bdones[f->nbdones++] = (bdone){.group = group, .seq = seq};
}

/* Forget everything recorded so far. */
static void reset(fake *f)
{
    for (int i = 0; i < f->nsends; i++)
        if (f->sends[i].has_view) psi_view_free(&f->sends[i].view);
    for (int i = 0; i < f->nviews; i++) psi_view_free(&f->views[i]);
    f->nsends = f->nacks = f->nconns = f->nforgets = f->nviews = f->nbdones = 0;
}

static int setup(void **state)
{
    fake *f = calloc(1, sizeof(*f));
    if (!f) return -1;
    psi_sched_io io = {
        .arg = f,
        .send_reliable = f_send,
        .send = f_send,
        .send_ack = f_ack,
        .connect = f_connect,
        .forget = f_forget,
        .install_view = f_install,
        .barrier_done = f_bdone,
    };
    f->s = psi_sched_new(S, W, SCHED_ADDR, TIMEOUT_MS, &io);
    if (!f->s) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fake *f = *state;
    reset(f);
    psi_sched_free(f->s);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static void join(fake *f, int role, int rank, const char *addr, uint64_t ts, uint64_t now)
{
    psi_join j;
    memset(&j, 0, sizeof(j));
    j.role = (uint8_t)role;
    j.rank = rank;
    snprintf(j.addr, sizeof(j.addr), "%s", addr);
    psi_sched_on_join(f->s, &j, ts, now);
}

static const char *node_addr(uint32_t id)
{
    static const char *addrs[NNODES + 1] = {SCHED_ADDR, "s0:1", "s1:1", "w0:1", "w1:1", "w2:1"};
    return addrs[id];
}

/* Join all five nodes with explicit ranks at time `now`; clear records. */
static void form(fake *f, uint64_t now)
{
    for (int r = 0; r < S; r++)
        join(f, PS_ROLE_SERVER, r, node_addr(1 + (uint32_t)r), 100 + (uint64_t)r, now);
    for (int r = 0; r < W; r++)
        join(f, PS_ROLE_WORKER, r, node_addr(1 + S + (uint32_t)r), 200 + r, now);
    assert_true(psi_sched_ready(f->s));
    assert_int_equal(f->nviews, 1);
    reset(f);
}

/* How many sends of `type` to `peer` (or to anyone when peer is ~0). */
static int count_sends(const fake *f, int type, uint32_t peer)
{
    int n = 0;
    for (int i = 0; i < f->nsends; i++)
        if (f->sends[i].type == type && (peer == ~0u || f->sends[i].peer == peer)) n++;
    return n;
}

static const sent *find_send(const fake *f, int type, uint32_t peer)
{
    for (int i = 0; i < f->nsends; i++)
        if (f->sends[i].type == type && f->sends[i].peer == peer) return &f->sends[i];
    return NULL;
}

/* Every BARRIER_DONE recorded is for (group, seq) and goes to exactly the
 * peers in `to` (a bitmask of ids), once each. */
static void assert_done_sent(const fake *f, int group, uint64_t seq, unsigned to)
{
    unsigned got = 0;
    for (int i = 0; i < f->nsends; i++) {
        const sent *e = &f->sends[i];
        if (e->type != PSI_MSG_BARRIER_DONE) continue;
        assert_int_equal(e->arg, group);
        assert_int_equal(e->key_lo, seq);
        assert_true(e->flags & PSI_F_CONTROL);
        assert_true(e->peer < 32);
        assert_false(got & (1u << e->peer)); /* once each */
        got |= 1u << e->peer;
    }
    assert_int_equal(got, to);
}

static void all_alive(fake *f, uint64_t now, uint32_t except)
{
    for (uint32_t id = 1; id <= NNODES; id++)
        if (id != except) psi_sched_on_alive(f->s, id, now);
}

/* ---- joins ---------------------------------------------------------------------- */

static void test_join_explicit_ranks_get_ids(void **state)
{
    fake *f = *state;
    struct {
        int role, rank;
        uint32_t id;
    } order[NNODES] = {
        {PS_ROLE_WORKER, 2, 5}, {PS_ROLE_SERVER, 1, 2}, {PS_ROLE_WORKER, 0, 3},
        {PS_ROLE_SERVER, 0, 1}, {PS_ROLE_WORKER, 1, 4},
    };

    assert_false(psi_sched_ready(f->s));
    assert_int_equal(psi_sched_active(f->s), 0);
    for (int i = 0; i < NNODES; i++) {
        uint32_t id = order[i].id;
        join(f, order[i].role, order[i].rank, node_addr(id), 1000 + (uint64_t)i, 5);
        assert_int_equal(f->nacks, i + 1);
        assert_int_equal(f->acks[i].peer, id);
        assert_int_equal(f->acks[i].ts, 1000 + (uint64_t)i);
        assert_int_equal(f->acks[i].status, 0);
        assert_int_equal(f->nconns, i + 1);
        assert_int_equal(f->conns[i].peer, id);
        assert_string_equal(f->conns[i].addr, node_addr(id));
        assert_int_equal(psi_sched_active(f->s), i + 1);
        if (i < NNODES - 1) {
            assert_false(psi_sched_ready(f->s));
            assert_int_equal(f->nviews, 0);
            assert_int_equal(f->nsends, 0);
        }
    }
    assert_true(psi_sched_ready(f->s));
    assert_int_equal(f->nviews, 1);
}

static void test_repeated_join_same_id_no_new_view(void **state)
{
    fake *f = *state;

    /* before the cluster forms */
    join(f, PS_ROLE_SERVER, 1, "s1:1", 7, 0);
    join(f, PS_ROLE_SERVER, 1, "s1:1", 8, 0);
    join(f, PS_ROLE_SERVER, -1, "s1:1", 9, 0); /* resend with other fields: same answer */
    assert_int_equal(f->nacks, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(f->acks[i].peer, 2);
        assert_int_equal(f->acks[i].ts, 7 + (uint64_t)i);
        assert_int_equal(f->acks[i].status, 0);
    }
    assert_int_equal(psi_sched_active(f->s), 1);
    assert_int_equal(f->nviews, 0);
    reset(f);

    /* the other four still complete the cluster: the repeats took no slot */
    join(f, PS_ROLE_SERVER, 0, "s0:1", 1, 0);
    join(f, PS_ROLE_WORKER, 0, "w0:1", 2, 0);
    join(f, PS_ROLE_WORKER, 1, "w1:1", 3, 0);
    assert_int_equal(f->nviews, 0);
    join(f, PS_ROLE_WORKER, 2, "w2:1", 4, 0);
    assert_int_equal(f->nviews, 1);
    assert_int_equal(f->views[0].epoch, 1);
    reset(f);

    /* after: a resent join (its ACK was lost) gets its id back, no view */
    join(f, PS_ROLE_WORKER, 1, "w1:1", 3, 10);
    assert_int_equal(f->nacks, 1);
    assert_int_equal(f->acks[0].peer, 4);
    assert_int_equal(f->acks[0].ts, 3);
    assert_int_equal(f->acks[0].status, 0);
    assert_int_equal(f->nviews, 0);
    assert_int_equal(f->nsends, 0);
    assert_int_equal(f->nconns, 0);
}

static void test_view_published_when_last_joins(void **state)
{
    fake *f = *state;
    for (uint32_t id = 1; id < NNODES; id++)
        join(f, id <= S ? PS_ROLE_SERVER : PS_ROLE_WORKER,
             id <= S ? (int)id - 1 : (int)(id - 1 - S), node_addr(id), id, 0);
    assert_int_equal(f->nsends, 0);
    assert_int_equal(f->nviews, 0);
    join(f, PS_ROLE_WORKER, 2, node_addr(5), 5, 0);

    /* 5 VIEW sends, one to each node, never to the scheduler itself */
    assert_int_equal(f->nsends, NNODES);
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, ~0u), NNODES);
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, 0), 0);
    for (uint32_t id = 1; id <= NNODES; id++) {
        const sent *e = find_send(f, PSI_MSG_VIEW, id);
        assert_non_null(e);
        assert_int_equal(count_sends(f, PSI_MSG_VIEW, id), 1);
        assert_true(e->flags & PSI_F_CONTROL);
        assert_int_equal(e->view.epoch, 1);
        assert_int_equal(e->view.n, NNODES + 1);
    }

    /* installed locally, epoch 1, with every node right */
    assert_int_equal(f->nviews, 1);
    const psi_view *v = &f->views[0];
    assert_int_equal(v->epoch, 1);
    assert_int_equal(v->n, NNODES + 1);
    const int roles[NNODES + 1] = {PS_ROLE_SCHEDULER, PS_ROLE_SERVER, PS_ROLE_SERVER,
                                   PS_ROLE_WORKER, PS_ROLE_WORKER, PS_ROLE_WORKER};
    const int ranks[NNODES + 1] = {0, 0, 1, 0, 1, 2};
    for (uint32_t id = 0; id <= NNODES; id++) {
        const psi_node *nd = psi_view_find(v, id);
        assert_non_null(nd);
        assert_int_equal(nd->role, roles[id]);
        assert_int_equal(nd->rank, ranks[id]);
        assert_int_equal(nd->alive, 1);
        assert_string_equal(nd->addr, node_addr(id));
    }
    /* the sent views equal the installed one */
    const sent *e = find_send(f, PSI_MSG_VIEW, 3);
    for (uint32_t i = 0; i < v->n; i++) {
        assert_int_equal(e->view.nodes[i].id, v->nodes[i].id);
        assert_string_equal(e->view.nodes[i].addr, v->nodes[i].addr);
    }
    assert_int_equal(psi_view_count(v, PS_GROUP_ALL, 1), NNODES + 1);
}

static void test_join_any_rank_gets_lowest_free(void **state)
{
    fake *f = *state;

    join(f, PS_ROLE_SERVER, 1, "sA", 1, 0);  /* explicit rank 1 -> id 2 */
    join(f, PS_ROLE_SERVER, -1, "sB", 2, 0); /* lowest free: rank 0 -> id 1 */
    join(f, PS_ROLE_WORKER, 1, "wA", 3, 0);  /* id 4 */
    join(f, PS_ROLE_WORKER, -1, "wB", 4, 0); /* rank 0 -> id 3 */
    join(f, PS_ROLE_WORKER, -1, "wC", 5, 0); /* rank 2 -> id 5 */
    assert_int_equal(f->nacks, 5);
    const uint32_t ids[5] = {2, 1, 4, 3, 5};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(f->acks[i].peer, ids[i]);
        assert_int_equal(f->acks[i].status, 0);
    }
    assert_int_equal(f->nviews, 1);
    const psi_view *v = &f->views[0];
    assert_string_equal(psi_view_find(v, 1)->addr, "sB");
    assert_int_equal(psi_view_find(v, 1)->rank, 0);
    assert_int_equal(psi_view_find(v, 3)->rank, 0);
    assert_string_equal(psi_view_find(v, 3)->addr, "wB");
    assert_int_equal(psi_view_find(v, 5)->rank, 2);
    assert_string_equal(psi_view_find(v, 5)->addr, "wC");
}

/* The ACK of a refused join: negative status, to a temporary id that is no
 * real node, after a connect to that id at the joiner's address. */
static void assert_refused(const fake *f, int nack, const char *addr, uint64_t ts)
{
    assert_int_equal(f->nacks, nack + 1);
    const ack *a = &f->acks[nack];
    assert_true(a->status < 0);
    assert_int_equal(a->ts, ts);
    assert_true(a->peer >= TEMP_ID_MIN);
    int found = 0;
    for (int i = 0; i < f->nconns; i++)
        if (f->conns[i].peer == a->peer) {
            assert_string_equal(f->conns[i].addr, addr);
            found = 1;
        }
    assert_true(found);
}

static void test_join_refusals(void **state)
{
    fake *f = *state;

    join(f, PS_ROLE_SERVER, S, "s-too-high", 11, 0); /* rank >= count */
    assert_refused(f, 0, "s-too-high", 11);
    join(f, PS_ROLE_WORKER, 0x7FFFFFFF, "w-too-high", 12, 0);
    assert_refused(f, 1, "w-too-high", 12);
    join(f, PS_ROLE_SCHEDULER, 0, "another-sched", 13, 0); /* role scheduler */
    assert_refused(f, 2, "another-sched", 13);
    join(f, PS_ROLE_SCHEDULER, -1, "another-sched2", 14, 0);
    assert_refused(f, 3, "another-sched2", 14);
    join(f, PS_ROLE_WORKER, 1, "w1:1", 15, 0); /* takes rank 1 */
    assert_int_equal(f->acks[4].peer, 4);
    assert_int_equal(f->acks[4].status, 0);
    join(f, PS_ROLE_WORKER, 1, "w1-impostor", 16, 0); /* taken, other address */
    assert_refused(f, 5, "w1-impostor", 16);
    /* temporary ids are distinct */
    for (int i = 0; i < 6; i++)
        for (int k = i + 1; k < 6; k++)
            if (f->acks[i].status < 0 && f->acks[k].status < 0)
                assert_int_not_equal(f->acks[i].peer, f->acks[k].peer);
    assert_int_equal(psi_sched_active(f->s), 1);
    assert_int_equal(f->nviews, 0);
    assert_int_equal(f->nsends, 0);

    /* refusals took no slot: the real nodes still form the cluster */
    join(f, PS_ROLE_SERVER, 0, "s0:1", 21, 0);
    join(f, PS_ROLE_SERVER, 1, "s1:1", 22, 0);
    join(f, PS_ROLE_WORKER, 0, "w0:1", 23, 0);
    join(f, PS_ROLE_WORKER, 2, "w2:1", 24, 0);
    assert_int_equal(f->nviews, 1);
    assert_int_equal(psi_view_count(&f->views[0], PS_GROUP_ALL, 0), NNODES + 1);
    assert_null(psi_view_find(&f->views[0], 6));
    reset(f);

    /* after the cluster formed, with a rank: refused, no new view (without
     * one a node may join: test_late_*) */
    join(f, PS_ROLE_WORKER, 1, "late:1", 31, 0);
    assert_refused(f, 0, "late:1", 31);
    join(f, PS_ROLE_SERVER, 0, "late:2", 32, 0);
    assert_refused(f, 1, "late:2", 32);
    assert_int_equal(f->nviews, 0);
    assert_int_equal(f->nsends, 0);
    assert_int_equal(psi_sched_active(f->s), NNODES);
}

/* State of node `id` in the last view installed. */
static int state_of(const fake *f, uint32_t id)
{
    assert_true(f->nviews > 0);
    const psi_node *n = psi_view_find(&f->views[f->nviews - 1], id);
    return n ? n->alive : -1;
}

/* Servers without a rank join a running cluster on standby, with new ids
 * and ranks; one at a time is published JOINING when it asks for its
 * share, then ALIVE when it holds it; the next one waiting follows. */
static void test_late_servers_join_one_at_a_time(void **state)
{
    fake *f = *state;
    form(f, 0); /* view 1, ids 1..5 */
    join(f, PS_ROLE_SERVER, -1, "s2:1", 40, 10);
    assert_int_equal(f->acks[0].peer, NNODES + 1);
    assert_int_equal(f->acks[0].status, 0);
    assert_int_equal(f->nviews, 1); /* view 2 shows it on standby */
    assert_int_equal(f->views[0].epoch, 2);
    assert_int_equal(state_of(f, NNODES + 1), PSI_NODE_STANDBY);
    assert_int_equal(psi_view_find(&f->views[0], NNODES + 1)->rank, S);
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, NNODES + 1), 1); /* it gets the view */
    join(f, PS_ROLE_SERVER, -1, "s3:1", 41, 10);
    join(f, PS_ROLE_SERVER, -1, "s3:1", 41, 10); /* a resent join: same id, no view */
    assert_int_equal(f->acks[2].peer, NNODES + 2);
    assert_int_equal(f->nviews, 2);
    assert_int_equal(psi_view_find(&f->views[1], NNODES + 2)->rank, S + 1);
    reset(f);

    psi_sched_on_serve(f->s, NNODES + 2, 1, 0); /* the second asks first: it goes first */
    psi_sched_on_serve(f->s, NNODES + 1, 1, 0);
    assert_int_equal(f->nviews, 1);
    assert_int_equal(state_of(f, NNODES + 2), PSI_NODE_JOINING);
    assert_int_equal(state_of(f, NNODES + 1), PSI_NODE_STANDBY);
    uint32_t joining_epoch = f->views[0].epoch;
    psi_sched_on_serve(f->s, NNODES + 1, 2, joining_epoch); /* not joining yet: ignored */
    assert_int_equal(f->nviews, 1);
    psi_sched_on_serve(f->s, NNODES + 2, 2, joining_epoch - 1); /* ready for an older view */
    assert_int_equal(f->nviews, 1);
    reset(f);

    psi_sched_on_serve(f->s, NNODES + 2, 2, joining_epoch);
    assert_int_equal(f->nviews, 2); /* it serves; then the next one joins */
    assert_int_equal(psi_view_find(&f->views[0], NNODES + 2)->alive, PSI_NODE_ALIVE);
    assert_int_equal(psi_view_find(&f->views[0], NNODES + 1)->alive, PSI_NODE_STANDBY);
    assert_int_equal(state_of(f, NNODES + 1), PSI_NODE_JOINING);
    reset(f);

    /* a joiner that dies lets nobody wait: it is dead, nothing else joins */
    all_alive(f, 500, 0);
    psi_sched_on_alive(f->s, NNODES + 2, 500); /* the joiner, last heard at 10, is not */
    psi_sched_tick(f->s, 10 + TIMEOUT_MS + 1);
    assert_int_equal(state_of(f, NNODES + 1), PSI_NODE_DEAD);
    assert_int_equal(state_of(f, NNODES + 2), PSI_NODE_ALIVE);
}

/* A worker joining late takes the shard (rank) of a worker that died, else
 * a new rank; it works (ALIVE) as soon as it asks, with no copy. */
static void test_late_workers_take_free_shards(void **state)
{
    fake *f = *state;
    form(f, 0);
    join(f, PS_ROLE_WORKER, -1, "w3:1", 50, 10); /* no shard free: rank W */
    assert_int_equal(f->acks[0].status, 0);
    assert_int_equal(psi_view_find(&f->views[0], NNODES + 1)->rank, W);
    assert_int_equal(state_of(f, NNODES + 1), PSI_NODE_STANDBY);
    assert_int_equal(psi_view_count(&f->views[0], PS_GROUP_WORKERS, 1), W); /* not counted */
    psi_sched_on_serve(f->s, NNODES + 1, 1, 0);
    assert_int_equal(state_of(f, NNODES + 1), PSI_NODE_ALIVE);
    assert_int_equal(psi_view_count(&f->views[f->nviews - 1], PS_GROUP_WORKERS, 1), W + 1);
    reset(f);
    /* worker rank 1 (node 4) dies: the next late worker takes its shard */
    all_alive(f, 500, 4);
    psi_sched_on_alive(f->s, NNODES + 1, 500);
    psi_sched_tick(f->s, 10 + TIMEOUT_MS + 1);
    assert_int_equal(state_of(f, 4), PSI_NODE_DEAD);
    join(f, PS_ROLE_WORKER, -1, "w4:1", 51, 600);
    assert_int_equal(psi_view_find(&f->views[f->nviews - 1], NNODES + 2)->rank, 1);
}

/* A late server's barrier numbers count from the cluster's: its first
 * barrier is the next one the others enter, and it is told its own number. */
static void test_late_server_barriers(void **state)
{
    fake *f = *state;
    form(f, 0);
    for (uint32_t id = 0; id <= NNODES; id++) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 1);
    reset(f);
    join(f, PS_ROLE_SERVER, -1, "s2:1", 40, 10); /* after barrier 1 completed */
    for (uint32_t id = 0; id <= NNODES; id++) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 2);
    assert_int_equal(count_sends(f, PSI_MSG_BARRIER_DONE, ~0u), 0); /* waits for the new one */
    psi_sched_on_barrier(f->s, NNODES + 1, PS_GROUP_ALL, 1); /* its first */
    const sent *e = find_send(f, PSI_MSG_BARRIER_DONE, NNODES + 1);
    assert_non_null(e);
    assert_int_equal(e->key_lo, 1);
    e = find_send(f, PSI_MSG_BARRIER_DONE, 1);
    assert_non_null(e);
    assert_int_equal(e->key_lo, 2);
}

/* ---- barriers ----------------------------------------------------------------- */

static void test_barrier_all_needs_everyone_and_scheduler(void **state)
{
    fake *f = *state;
    form(f, 0);

    for (uint32_t id = 1; id <= NNODES; id++) {
        psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 1);
        assert_int_equal(f->nsends, 0);
        assert_int_equal(f->nbdones, 0);
    }
    psi_sched_on_barrier(f->s, 0, PS_GROUP_ALL, 1); /* the scheduler, last */
    assert_int_equal(f->nsends, NNODES);
    assert_done_sent(f, PS_GROUP_ALL, 1, 0x3Eu); /* ids 1..5 */
    assert_int_equal(f->nbdones, 1);
    assert_int_equal(f->bdones[0].group, PS_GROUP_ALL);
    assert_int_equal(f->bdones[0].seq, 1);
    reset(f);

    /* barrier 2: scheduler first, completes on the last node */
    psi_sched_on_barrier(f->s, 0, PS_GROUP_ALL, 2);
    for (uint32_t id = NNODES; id >= 2; id--) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 2);
    assert_int_equal(f->nsends, 0);
    assert_int_equal(f->nbdones, 0);
    psi_sched_on_barrier(f->s, 1, PS_GROUP_ALL, 2);
    assert_done_sent(f, PS_GROUP_ALL, 2, 0x3Eu);
    assert_int_equal(f->nbdones, 1);
    assert_int_equal(f->bdones[0].seq, 2);
}

static void test_barrier_group_servers(void **state)
{
    fake *f = *state;
    form(f, 0);

    psi_sched_on_barrier(f->s, 3, PS_GROUP_SERVERS, 1); /* a worker: not a member */
    psi_sched_on_barrier(f->s, 0, PS_GROUP_SERVERS, 1); /* nor the scheduler */
    psi_sched_on_barrier(f->s, 1, PS_GROUP_SERVERS, 1);
    assert_int_equal(f->nsends, 0);
    psi_sched_on_barrier(f->s, 2, PS_GROUP_SERVERS, 1);
    assert_done_sent(f, PS_GROUP_SERVERS, 1, 0x06u); /* ids 1, 2 */
    assert_int_equal(f->nbdones, 0);
    reset(f);

    /* groups are independent: workers' barrier 1 is still open */
    psi_sched_on_barrier(f->s, 3, PS_GROUP_WORKERS, 1);
    psi_sched_on_barrier(f->s, 4, PS_GROUP_WORKERS, 1);
    assert_int_equal(f->nsends, 0);
    psi_sched_on_barrier(f->s, 5, PS_GROUP_WORKERS, 1);
    assert_done_sent(f, PS_GROUP_WORKERS, 1, 0x38u); /* ids 3, 4, 5 */
}

static void test_barrier_duplicate_or_old_ignored(void **state)
{
    fake *f = *state;
    form(f, 0);

    for (uint32_t id = 0; id <= NNODES; id++) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 1);
    assert_int_equal(count_sends(f, PSI_MSG_BARRIER_DONE, ~0u), NNODES);
    reset(f);

    /* a resent request for the released barrier: nothing, and it does not
     * count as an arrival at barrier 2 */
    psi_sched_on_barrier(f->s, 3, PS_GROUP_ALL, 1);
    psi_sched_on_barrier(f->s, 3, PS_GROUP_ALL, 0);
    assert_int_equal(f->nsends, 0);
    assert_int_equal(f->nbdones, 0);
    for (uint32_t id = 0; id <= NNODES; id++)
        if (id != 3) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 2);
    assert_int_equal(f->nsends, 0);
    assert_int_equal(f->nbdones, 0);
    /* a duplicate arrival at the open barrier changes nothing */
    psi_sched_on_barrier(f->s, 4, PS_GROUP_ALL, 2);
    assert_int_equal(f->nsends, 0);
    psi_sched_on_barrier(f->s, 3, PS_GROUP_ALL, 2);
    assert_done_sent(f, PS_GROUP_ALL, 2, 0x3Eu);
    assert_int_equal(f->nbdones, 1);
    assert_int_equal(f->bdones[0].seq, 2);
}

static void test_barrier_wrong_seq_ignored(void **state)
{
    fake *f = *state;
    form(f, 0);

    psi_sched_on_barrier(f->s, 2, PS_GROUP_ALL, 3); /* expected 1 */
    psi_sched_on_barrier(f->s, 2, PS_GROUP_ALL, UINT64_MAX);
    for (uint32_t id = 0; id <= NNODES; id++)
        if (id != 2) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 1);
    assert_int_equal(f->nsends, 0); /* node 2 has not really arrived */
    assert_int_equal(f->nbdones, 0);

    /* bad groups and unknown nodes are ignored too */
    psi_sched_on_barrier(f->s, 2, 0, 1);
    psi_sched_on_barrier(f->s, 2, 8, 1);
    psi_sched_on_barrier(f->s, 2, -1, 1);
    psi_sched_on_barrier(f->s, NNODES + 1, PS_GROUP_ALL, 1);
    psi_sched_on_barrier(f->s, 0xFFFFFFFFu, PS_GROUP_ALL, 1);
    assert_int_equal(f->nsends, 0);

    psi_sched_on_barrier(f->s, 2, PS_GROUP_ALL, 1);
    assert_done_sent(f, PS_GROUP_ALL, 1, 0x3Eu);
    assert_int_equal(f->nbdones, 1);
}

/* ---- liveness ----------------------------------------------------------------- */

/* A node that resends its join (its answer is late: it cannot beat before
 * it knows its id) is alive: the resend counts as hearing from it, and a
 * credit for time the scheduler did not run is nobody's silence either. */
static void test_resent_join_and_stall_are_not_silence(void **state)
{
    fake *f = *state;
    form(f, 0);
    all_alive(f, TIMEOUT_MS - 10, 4);
    join(f, PS_ROLE_WORKER, 0, node_addr(4), 9999, TIMEOUT_MS - 10); /* w0 asks again */
    psi_sched_tick(f->s, TIMEOUT_MS + 5);
    assert_int_equal(f->nforgets, 0);
    /* the scheduler itself stalled 3 timeouts: credited, nobody judged */
    psi_sched_credit(f->s, 3 * TIMEOUT_MS, 4 * TIMEOUT_MS);
    psi_sched_tick(f->s, 4 * TIMEOUT_MS);
    assert_int_equal(f->nforgets, 0);
    /* and silence after that still counts */
    psi_sched_tick(f->s, 5 * TIMEOUT_MS);
    assert_int_equal(f->nforgets, NNODES);
}

/* Forming is not silence: a node admitted early and not heard from since
 * (it cannot beat before it knows its id) is not judged while the others
 * join, and its clock starts with view 1. */
static void test_forming_is_not_silence(void **state)
{
    fake *f = *state;
    join(f, PS_ROLE_SERVER, 0, node_addr(1), 100, 0); /* admitted at 0, then silent */
    psi_sched_tick(f->s, 2 * TIMEOUT_MS);
    assert_int_equal(f->nforgets, 0);
    join(f, PS_ROLE_SERVER, 1, node_addr(2), 101, 3 * TIMEOUT_MS);
    for (int r = 0; r < W; r++)
        join(f, PS_ROLE_WORKER, r, node_addr(1 + S + (uint32_t)r), 200 + r, 3 * TIMEOUT_MS);
    assert_true(psi_sched_ready(f->s));
    psi_sched_tick(f->s, 4 * TIMEOUT_MS); /* T after view 1: not yet */
    assert_int_equal(f->nforgets, 0);
    all_alive(f, 4 * TIMEOUT_MS, 1);      /* everyone but server 0 speaks */
    psi_sched_tick(f->s, 4 * TIMEOUT_MS + 1);
    assert_int_equal(f->nforgets, 1);
    assert_int_equal(f->forgets[0], 1);
}

static void test_tick_declares_silent_node_dead(void **state)
{
    fake *f = *state;
    form(f, 0);

    all_alive(f, 900, 4); /* node 4 last heard at 0 (its join) */
    psi_sched_tick(f->s, TIMEOUT_MS); /* silent exactly the timeout: alive */
    assert_int_equal(f->nforgets, 0);
    assert_int_equal(f->nviews, 0);
    psi_sched_tick(f->s, TIMEOUT_MS + 1);
    assert_int_equal(f->nforgets, 1);
    assert_int_equal(f->forgets[0], 4);

    /* epoch 2 installed with node 4 dead, the others alive */
    assert_int_equal(f->nviews, 1);
    const psi_view *v = &f->views[0];
    assert_int_equal(v->epoch, 2);
    assert_int_equal(v->n, NNODES + 1);
    assert_int_equal(psi_view_find(v, 4)->alive, 0);
    for (uint32_t id = 0; id <= NNODES; id++)
        if (id != 4) assert_int_equal(psi_view_find(v, id)->alive, 1);
    assert_int_equal(psi_view_count(v, PS_GROUP_WORKERS, 1), W - 1);

    /* VIEW to the four survivors, not to the dead one */
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, ~0u), NNODES - 1);
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, 4), 0);
    for (uint32_t id = 1; id <= NNODES; id++) {
        if (id == 4) continue;
        const sent *e = find_send(f, PSI_MSG_VIEW, id);
        assert_non_null(e);
        assert_int_equal(e->view.epoch, 2);
        assert_int_equal(psi_view_find(&e->view, 4)->alive, 0);
    }
    assert_int_equal(psi_sched_active(f->s), NNODES - 1);
    reset(f);

    /* nothing more changes: no view, no second forget */
    psi_sched_tick(f->s, 1500);
    psi_sched_tick(f->s, 1899);
    assert_int_equal(f->nforgets, 0);
    assert_int_equal(f->nviews, 0);
    assert_int_equal(f->nsends, 0);

    /* two die in one tick: one view (epoch 3) */
    psi_sched_on_alive(f->s, 1, 2500);
    psi_sched_on_alive(f->s, 3, 2500);
    psi_sched_tick(f->s, 2500);
    assert_int_equal(f->nforgets, 2);
    assert_int_equal(f->nviews, 1);
    assert_int_equal(f->views[0].epoch, 3);
    assert_int_equal(psi_view_find(&f->views[0], 2)->alive, 0);
    assert_int_equal(psi_view_find(&f->views[0], 5)->alive, 0);
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, ~0u), 2); /* to 1 and 3 */
    assert_int_equal(psi_sched_active(f->s), 2);
}

/* The accrual detector: a node with steady gaps is declared dead once silent
 * past the timeout; one whose recent gaps include stalls of nearly the
 * timeout is suspected first, survives if it speaks, and is declared dead
 * at the latest at twice the timeout. */
static void test_suspicion_before_verdict(void **state)
{
    fake *f = *state;
    form(f, 0);
    uint64_t t = 0;
    /* every node beats every 200 ms for 4 s; node 2 also stalls 900 ms twice */
    for (int i = 1; i <= 20; i++) {
        t = (uint64_t)i * 200;
        for (uint32_t id = 1; id <= NNODES; id++)
            if (id != 2 || (i != 8 && i != 9 && i != 14 && i != 15 && i != 16 && i != 17))
                psi_sched_on_alive(f->s, id, t);
    }
    assert_int_equal(f->nforgets, 0);
    /* all silent from t: the steady ones die just past the timeout, node 2
     * is only suspected */
    psi_sched_tick(f->s, t + TIMEOUT_MS + 1);
    assert_int_equal(f->nforgets, NNODES - 1);
    for (int i = 0; i < f->nforgets; i++) assert_int_not_equal(f->forgets[i], 2);
    reset(f);
    /* it speaks: no verdict, and the suspicion is cleared */
    psi_sched_on_alive(f->s, 2, t + TIMEOUT_MS + 300);
    t += TIMEOUT_MS + 300;
    psi_sched_tick(f->s, t + TIMEOUT_MS);
    assert_int_equal(f->nforgets, 0);
    /* silent for good: declared dead by twice the timeout at the latest */
    uint64_t dead_at = 0;
    for (uint64_t now = t + TIMEOUT_MS; now <= t + 2 * TIMEOUT_MS + 10 && !dead_at; now += 10) {
        psi_sched_tick(f->s, now);
        if (f->nforgets) dead_at = now;
    }
    assert_true(dead_at > t + TIMEOUT_MS);
    assert_true(dead_at <= t + 2 * TIMEOUT_MS + 10);
    assert_int_equal(f->forgets[0], 2);
}

/* The cluster's stalls count for every node: when the others have been
 * stalling, a node with steady gaps of its own that falls silent is only
 * suspected at first, and still declared dead by twice the timeout. */
static void test_cluster_stalls_pooled(void **state)
{
    fake *f = *state;
    form(f, 0);
    uint64_t t = 0;
    for (int i = 1; i <= 20; i++) { /* every 200 ms; all but node 3 stall twice */
        t = (uint64_t)i * 200;
        for (uint32_t id = 1; id <= NNODES; id++)
            if (id == 3 || (i != 8 && i != 9 && i != 10 && i != 14 && i != 15 && i != 16))
                psi_sched_on_alive(f->s, id, t);
    }
    for (uint32_t id = 1; id <= NNODES; id++)
        if (id != 3) psi_sched_on_alive(f->s, id, t + TIMEOUT_MS);
    psi_sched_tick(f->s, t + TIMEOUT_MS + 1);
    assert_int_equal(f->nforgets, 0); /* node 3: suspected */
    psi_sched_tick(f->s, t + 2 * TIMEOUT_MS + 1);
    assert_int_equal(f->nforgets, 1);
    assert_int_equal(f->forgets[0], 3);
}

static void test_tick_releases_barrier_waiting_for_dead(void **state)
{
    fake *f = *state;
    form(f, 0);

    for (uint32_t id = 0; id <= NNODES; id++)
        if (id != 5) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 1);
    assert_int_equal(f->nsends, 0);
    all_alive(f, 1500, 5);
    psi_sched_tick(f->s, 1500);
    assert_int_equal(f->nforgets, 1);
    assert_int_equal(f->forgets[0], 5);
    assert_done_sent(f, PS_GROUP_ALL, 1, 0x1Eu); /* ids 1..4, not 5 */
    assert_int_equal(f->nbdones, 1);
    assert_int_equal(f->bdones[0].group, PS_GROUP_ALL);
    assert_int_equal(f->bdones[0].seq, 1);
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, ~0u), NNODES - 1);
    reset(f);

    /* the next barrier needs only the survivors */
    for (uint32_t id = 0; id <= 4; id++) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 2);
    assert_done_sent(f, PS_GROUP_ALL, 2, 0x1Eu);
    assert_int_equal(f->nbdones, 1);
}

/* A server leaving a running cluster (ps_leave) gets a new view at once, in
 * which it is gone, sent to everyone else; an end-of-job leave does not. */
static void test_leave_handover(void **state)
{
    fake *f = *state;
    form(f, 0); /* view 1 */
    psi_sched_on_leave(f->s, 2, 1);
    assert_int_equal(f->nviews, 1);
    assert_int_equal(f->views[0].epoch, 2);
    assert_int_equal(psi_view_find(&f->views[0], 2)->alive, 0);
    assert_int_equal(psi_view_find(&f->views[0], 1)->alive, 1);
    for (int i = 0; i < f->nsends; i++) assert_int_not_equal(f->sends[i].peer, 2);
    assert_int_equal(f->nsends, NNODES - 1);
    reset(f);
    psi_sched_on_leave(f->s, 1, 0);
    assert_int_equal(f->nviews, 0);
    assert_int_equal(f->nsends, 0);
}

static void test_leave(void **state)
{
    fake *f = *state;
    form(f, 0);

    /* everyone but node 3 waits at barrier 1; node 3 leaves instead */
    for (uint32_t id = 0; id <= NNODES; id++)
        if (id != 3) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 1);
    assert_int_equal(f->nsends, 0);
    psi_sched_on_leave(f->s, 3, 0);
    assert_int_equal(f->nforgets, 1);
    assert_int_equal(f->forgets[0], 3);
    assert_int_equal(psi_sched_active(f->s), NNODES - 1);
    assert_done_sent(f, PS_GROUP_ALL, 1, 0x36u); /* 1, 2, 4, 5 */
    assert_int_equal(f->nbdones, 1);
    reset(f);

    psi_sched_on_leave(f->s, 3, 0); /* twice: no second forget */
    psi_sched_on_leave(f->s, 0, 0); /* the scheduler / unknown ids: ignored */
    psi_sched_on_leave(f->s, NNODES + 1, 0);
    assert_int_equal(f->nforgets, 0);
    assert_int_equal(psi_sched_active(f->s), NNODES - 1);

    /* a left node is never declared dead, however long it is silent */
    all_alive(f, 5000, 3);
    psi_sched_tick(f->s, 5000);
    assert_int_equal(f->nforgets, 0);
    assert_int_equal(f->nviews, 0);
    assert_int_equal(f->nsends, 0);

    /* nor counted for later barriers */
    for (uint32_t id = 0; id <= NNODES; id++)
        if (id != 3) psi_sched_on_barrier(f->s, id, PS_GROUP_ALL, 2);
    assert_done_sent(f, PS_GROUP_ALL, 2, 0x36u);
    assert_int_equal(f->nbdones, 1);
    reset(f);

    /* a later death publishes a view that is not sent to the left node */
    all_alive(f, 6500, 1);
    psi_sched_tick(f->s, 6500);
    assert_int_equal(f->nforgets, 1);
    assert_int_equal(f->forgets[0], 1);
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, 3), 0);
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, 1), 0);
    assert_int_equal(count_sends(f, PSI_MSG_VIEW, ~0u), 3); /* 2, 4, 5 */
    assert_int_equal(psi_sched_active(f->s), NNODES - 2);
}

static void test_active_counts(void **state)
{
    fake *f = *state;
    assert_int_equal(psi_sched_active(f->s), 0);
    join(f, PS_ROLE_WORKER, 0, "w0:1", 1, 0);
    assert_int_equal(psi_sched_active(f->s), 1);
    join(f, PS_ROLE_WORKER, 0, "w0:1", 1, 0); /* repeat */
    assert_int_equal(psi_sched_active(f->s), 1);
    join(f, PS_ROLE_SERVER, 5, "bad", 2, 0); /* refused */
    assert_int_equal(psi_sched_active(f->s), 1);
    join(f, PS_ROLE_SERVER, 0, "s0:1", 3, 0);
    join(f, PS_ROLE_SERVER, 1, "s1:1", 4, 0);
    join(f, PS_ROLE_WORKER, 1, "w1:1", 5, 0);
    join(f, PS_ROLE_WORKER, 2, "w2:1", 6, 0);
    assert_int_equal(psi_sched_active(f->s), NNODES);
    psi_sched_on_leave(f->s, 1, 0);
    assert_int_equal(psi_sched_active(f->s), NNODES - 1);
    all_alive(f, 2000, 2);
    psi_sched_tick(f->s, 2000);
    assert_int_equal(psi_sched_active(f->s), NNODES - 2);
    reset(f);
    psi_sched_on_alive(f->s, 2, 3000); /* too late: stays dead */
    psi_sched_tick(f->s, 3000);
    assert_int_equal(psi_sched_active(f->s), NNODES - 2);
    /* ... and is told so: the current view, where it is dead, once per 100 ms */
    assert_int_equal(f->nsends, 1);
    assert_int_equal(f->sends[0].peer, 2);
    assert_true(f->sends[0].has_view);
    assert_int_equal(psi_view_find(&f->sends[0].view, 2)->alive, 0);
    psi_sched_on_alive(f->s, 2, 3050);
    assert_int_equal(f->nsends, 1);
    psi_sched_on_alive(f->s, 2, 3100);
    assert_int_equal(f->nsends, 2);
    psi_sched_on_alive(f->s, 1, 3200); /* a node that left is not told anything */
    assert_int_equal(f->nsends, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_join_explicit_ranks_get_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resent_join_and_stall_are_not_silence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeated_join_same_id_no_new_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_published_when_last_joins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_join_any_rank_gets_lowest_free, setup, teardown),
        cmocka_unit_test_setup_teardown(test_join_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_servers_join_one_at_a_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_server_barriers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_late_workers_take_free_shards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_barrier_all_needs_everyone_and_scheduler, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_barrier_group_servers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_barrier_duplicate_or_old_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_barrier_wrong_seq_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tick_declares_silent_node_dead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forming_is_not_silence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_stalls_pooled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suspicion_before_verdict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tick_releases_barrier_waiting_for_dead, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_leave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leave_handover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_active_counts, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
