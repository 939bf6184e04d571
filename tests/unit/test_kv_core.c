/*
 * test_kv_core.c -- unit tests of the key-value core's logic (the worker and
 * server halves of src/kv, chain replication in src/replica) without a node,
 * sockets or threads.
 *
 * Design.  One process plays a whole cluster through the seam of
 * src/kv/env.h: every node's table is made with psi_kv_table_new while that
 * node is "running" (sim.cur, what psi_kv_id() and psi_kv_role() answer), and
 * every message a table sends is encoded as a wire frame and held in one
 * queue.  The test decides what the network does with it -- deliver it in
 * order or in a random order, deliver it twice, drop it, drop everything to
 * and from a dead node -- and when time passes (the clock is the test's;
 * the halves' timer hooks run when it says).  A message is delivered by
 * decoding its frame (so it passes the wire checks) and handing it to
 * psi_kv_deliver as the receiving node.  Nothing is timed and nothing
 * sleeps: each case runs the network until it is quiet, then checks what
 * the servers hold and what the worker's tasks returned.
 *
 * Cases: exactly once under duplicates and reordering; under lost requests
 * and answers (resends); a push a server refuses (over its memory cap) is
 * answered with the same error when resent and never applied later; a
 * large push sent as a train whose fragments arrive in any order, some
 * twice; BSP iterations of two workers read exactly W * i; a replicated
 * table loses nothing acknowledged when a server dies with pushes in
 * flight (takeover), and its backups hold what the heads hold.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kv/kv.h"
#include "wire/msg.h"

/* ---- the simulated cluster -------------------------------------------------------- */

#define MAXN 8
#define MAX_SENT 500000 /* messages a case may send in all: more is a livelock */

typedef struct held {
    uint32_t to;
    uint8_t *frame;
    size_t len;
} held;

typedef struct net {
    double drop, dup; /* chance a delivery is lost / repeated */
    int shuffle;      /* deliver in a random order */
} net;

static struct {
    uint32_t cur; /* the node now running */
    uint64_t now; /* ms */
    uint32_t epoch;
    int nnodes, nservers;
    psi_node nodes[MAXN]; /* the view, by id: ids 1..W workers, then servers */
    ps_table *t[MAXN];
    held *q;
    size_t nq, capq;
    uint64_t rng;
    size_t sent, delivered, dropped;
} sim;

static uint64_t rnd(void)
{
    uint64_t z = (sim.rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double unif(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static int sim_send(uint32_t to, psi_msg *m)
{
    m->hdr.sender = sim.cur;
    m->hdr.receiver = to;
    m->hdr.epoch = sim.epoch;
    size_t len = psi_frame_size(m);
    uint8_t *f = malloc(len);
    assert_non_null(f);
    assert_int_equal(psi_frame_encode(m, f, len), (long)len);
    psi_msg_free(m);
    if (sim.sent >= MAX_SENT) fail_msg("%zu messages sent: a livelock", sim.sent);
    if (sim.nq == sim.capq) {
        sim.capq = sim.capq ? 2 * sim.capq : 256;
        sim.q = realloc(sim.q, sim.capq * sizeof(held));
        assert_non_null(sim.q);
    }
    sim.q[sim.nq++] = (held){to, f, len};
    sim.sent++;
    return 0;
}

static uint64_t sim_now(void) { return sim.now; }
static uint32_t sim_id(void) { return sim.cur; }
static int sim_nservers(void) { return sim.nservers; }
static int sim_nworkers(void) { return sim.nnodes - sim.nservers; }
static int sim_fatal(void) { return 0; }

static ps_role sim_role(void)
{
    return sim.cur < MAXN ? (ps_role)sim.nodes[sim.cur].role : PS_ROLE_SCHEDULER;
}

static int sim_view(psi_view *out)
{
    out->epoch = sim.epoch;
    out->n = (uint32_t)sim.nnodes;
    out->nodes = malloc((size_t)sim.nnodes * sizeof(psi_node));
    if (!out->nodes) return PS_ERR_NOMEM;
    memcpy(out->nodes, sim.nodes + 1, (size_t)sim.nnodes * sizeof(psi_node));
    return 0;
}

static const psi_kv_env sim_env = {
    .send = sim_send,
    .now_ms = sim_now,
    .view = sim_view,
    .my_id = sim_id,
    .my_role = sim_role,
    .num_servers = sim_nservers,
    .num_workers = sim_nworkers,
    .fatal = sim_fatal,
};

static int is_alive(uint32_t id) { return sim.nodes[id].alive != PSI_NODE_DEAD; }

/* W workers (ids 1..W) and S servers (ids W+1..W+S), each with table "t". */
static void sim_start(int w, int s, const ps_table_opts *o, uint64_t seed)
{
    memset(&sim, 0, sizeof(sim));
    sim.rng = seed;
    sim.now = 1000;
    sim.epoch = 1;
    sim.nnodes = w + s;
    sim.nservers = s;
    assert_true(sim.nnodes < MAXN);
    for (int i = 1; i <= sim.nnodes; i++) {
        psi_node *n = &sim.nodes[i];
        n->id = (uint32_t)i;
        n->role = i <= w ? PS_ROLE_WORKER : PS_ROLE_SERVER;
        n->rank = i <= w ? i - 1 : i - 1 - w;
        n->alive = PSI_NODE_ALIVE;
        snprintf(n->addr, sizeof(n->addr), "sim:%d", i);
    }
    psi_kv_env_set(&sim_env);
    for (int i = sim.nnodes; i >= 1; i--) { /* servers first: replication reads the ring */
        sim.cur = (uint32_t)i;
        assert_int_equal(psi_kv_table_new("t", o, &sim.t[i]), 0);
    }
    sim.cur = 0;
}

static void sim_stop(void)
{
    for (int i = 1; i <= sim.nnodes; i++) {
        sim.cur = (uint32_t)i;
        psi_kv_table_free(sim.t[i]);
    }
    for (size_t i = 0; i < sim.nq; i++) free(sim.q[i].frame);
    free(sim.q);
    sim.q = NULL;
    sim.nq = 0;
    psi_kv_env_set(NULL);
}

/* Take message i off the queue and deliver it (or lose it) as `n` says. */
static void deliver(size_t i, const net *n)
{
    held h = sim.q[i];
    memmove(sim.q + i, sim.q + i + 1, (sim.nq - i - 1) * sizeof(held));
    sim.nq--;
    int copies = !is_alive(h.to) || unif() < n->drop ? 0 : unif() < n->dup ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        psi_msg *m = NULL;
        assert_int_equal(psi_frame_decode(h.frame, h.len, PSI_DEFAULT_MAX_PAYLOAD, &m), 0);
        if (!is_alive(m->hdr.sender)) { /* sent before it died, delivered after: lost */
            psi_msg_free(m);
            continue;
        }
        sim.cur = h.to;
        psi_kv_deliver(sim.t[h.to], m);
        sim.cur = 0;
        sim.delivered++;
    }
    sim.dropped += copies == 0;
    free(h.frame);
}

/* Deliver until nothing is in flight. */
static void run(const net *n)
{
    while (sim.nq > 0) deliver(n->shuffle ? (size_t)(rnd() % sim.nq) : 0, n);
}

/* Deliver (lose) every message in flight to node `to`, in order. */
static void deliver_to(uint32_t to, int lose)
{
    static const net all = {0, 0, 0}, none = {1.0, 0, 0};
    for (size_t i = 0; i < sim.nq;)
        if (sim.q[i].to == to) deliver(i, lose ? &none : &all);
        else i++;
}

/* Let `ms` pass and run every live node's timer hook. */
static void tick(uint64_t ms)
{
    sim.now += ms;
    for (int i = 1; i <= sim.nnodes; i++) {
        if (!is_alive((uint32_t)i)) continue;
        sim.cur = (uint32_t)i;
        if (sim.nodes[i].role == PS_ROLE_WORKER) psi_kv_worker_tick(sim.t[i], sim.now);
        else psi_kv_server_tick(sim.t[i], sim.now);
    }
    sim.cur = 0;
}

/* Run the network, with resends on the clock, until worker w's task ts
 * finished; its status. */
static int settle(uint32_t w, int64_t ts, const net *n)
{
    if (ts < 0) fail_msg("the task was refused at once: %s", ps_strerror((int)ts));
    for (int rounds = 0; !psi_tq_finished(sim.t[w]->tq, ts); rounds++) {
        assert_true(rounds < 1000);
        run(n);
        if (!psi_tq_finished(sim.t[w]->tq, ts)) tick(psi_kv_resend_ms() + 1);
    }
    sim.cur = w;
    int st = ps_wait(sim.t[w], ts); /* finished: returns at once */
    sim.cur = 0;
    return st;
}

static const net RELIABLE = {0, 0, 0};

static int64_t push(uint32_t w, const uint64_t *keys, size_t n, const void *vals)
{
    sim.cur = w;
    int64_t ts = ps_push(sim.t[w], keys, n, vals, NULL);
    sim.cur = 0;
    return ts;
}

static int64_t pull(uint32_t w, const uint64_t *keys, size_t n, void *vals)
{
    sim.cur = w;
    int64_t ts = ps_pull(sim.t[w], keys, n, vals, NULL);
    sim.cur = 0;
    return ts;
}

static ps_table_stats stats(uint32_t id)
{
    ps_table_stats st;
    sim.cur = id;
    assert_int_equal(ps_table_stats_get(sim.t[id], &st), 0);
    sim.cur = 0;
    return st;
}

/* n distinct random keys, unsorted, as users pass them. */
static uint64_t *random_keys(size_t n)
{
    uint64_t *k = malloc(n * sizeof(uint64_t));
    assert_non_null(k);
    for (size_t i = 0; i < n; i++) {
        k[i] = rnd() >> 1 | 1;
        for (size_t j = 0; j < i; j++)
            if (k[j] == k[i]) i--; /* draw again */
    }
    return k;
}

/* A cluster of w workers and s servers, and n random keys for it. */
static uint64_t *begin(int w, int s, const ps_table_opts *o, uint64_t seed, size_t n)
{
    sim_start(w, s, o, seed);
    return random_keys(n);
}

static void finish(uint64_t *keys)
{
    free(keys);
    sim_stop();
}

/* Every key of worker w's pull reads `want` (f32). */
static void expect_all(uint32_t w, const uint64_t *keys, size_t n, float want)
{
    float *got = calloc(n, sizeof(float));
    assert_non_null(got);
    assert_int_equal(settle(w, pull(w, keys, n, got), &RELIABLE), 0);
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want) fail_msg("key %zu of %zu reads %g, want %g", i, n, got[i], want);
    }
    free(got);
}

/* ---- cases ------------------------------------------------------------------------- */

/* 30 pushes of +1 to 300 keys on 3 servers, all in flight at once, over a
 * network that repeats a third of its messages and delivers in any order:
 * each key reads 30, and the servers saw and dropped duplicates. */
static void test_exactly_once_under_dups_and_reordering(void **state)
{
    (void)state;
    enum { N = 300, PUSHES = 30 };
    ps_table_opts o;
    ps_table_opts_init(&o);
    uint64_t *keys = begin(1, 3, &o, 11, N);
    float ones[N];
    for (int i = 0; i < N; i++) ones[i] = 1;
    int64_t ts[PUSHES];
    for (int p = 0; p < PUSHES; p++) ts[p] = push(1, keys, N, ones);
    net n = {.dup = 0.35, .shuffle = 1};
    for (int p = 0; p < PUSHES; p++) assert_int_equal(settle(1, ts[p], &n), 0);
    expect_all(1, keys, N, PUSHES);
    uint64_t applied = 0, deduped = 0;
    for (uint32_t s = 2; s <= 4; s++) {
        ps_table_stats st = stats(s);
        applied += st.pushes_applied;
        deduped += st.pushes_deduped;
        assert_true(st.keys > 0); /* every server holds a share */
    }
    assert_int_equal(applied, 3 * PUSHES); /* one slice per server per push */
    assert_true(deduped > 0);
    finish(keys);
}

/* A quarter of all messages lost, requests and answers alike: the worker's
 * timer resends what is unanswered, servers answer a push they applied
 * without applying it again. */
static void test_exactly_once_under_loss_and_resends(void **state)
{
    (void)state;
    enum { N = 200, PUSHES = 20 };
    ps_table_opts o;
    ps_table_opts_init(&o);
    uint64_t *keys = begin(1, 2, &o, 12, N);
    float vals[N];
    for (int i = 0; i < N; i++) vals[i] = 0.5f;
    int64_t ts[PUSHES];
    net n = {.drop = 0.25, .dup = 0.1, .shuffle = 1};
    for (int p = 0; p < PUSHES; p++) ts[p] = push(1, keys, N, vals);
    for (int p = 0; p < PUSHES; p++) assert_int_equal(settle(1, ts[p], &n), 0);
    expect_all(1, keys, N, 0.5f * PUSHES);
    assert_true(stats(1).resends > 0);
    assert_int_equal(stats(2).pushes_applied + stats(3).pushes_applied, 2 * PUSHES);
    finish(keys);
}

/* A server over its table's memory cap refuses a push of new keys: the
 * worker gets the error even when the first answer is lost (the resend is
 * answered with the same error, not applied), duplicates apply nothing, no
 * value changed (new keys it made room for keep their initial value, as
 * server.c says), and pushes to keys it holds still go through. */
static void test_refused_push_stays_refused(void **state)
{
    (void)state;
    ps_table_opts o;
    ps_table_opts_init(&o);
    o.max_bytes = 4096;
    sim_start(1, 1, &o, 13);
    uint64_t small[8];
    float ones[20000];
    for (int i = 0; i < 8; i++) small[i] = (uint64_t)i + 1;
    for (int i = 0; i < 20000; i++) ones[i] = 1;
    assert_int_equal(settle(1, push(1, small, 8, ones), &RELIABLE), 0);
    uint64_t *big = random_keys(20000);
    int64_t ts = push(1, big, 20000, ones);
    deliver_to(2, 0); /* the server refuses it */
    deliver_to(1, 1); /* and its answer is lost */
    ps_table_stats before = stats(2);
    net n = {.dup = 1.0}; /* every message twice from here on */
    assert_int_equal(settle(1, ts, &n), PS_ERR_TOOBIG);
    assert_true(stats(1).resends > 0);
    ps_table_stats after = stats(2);
    assert_int_equal(after.keys, before.keys); /* the resend applied nothing */
    expect_all(1, big, 20000, 0); /* and the refused push changed no value (server.c) */
    assert_int_equal(settle(1, push(1, small, 8, ones), &RELIABLE), 0);
    expect_all(1, small, 8, 2);
    free(big);
    sim_stop();
}

/* A push large enough to go as a train (PS_PUSH_FRAG = 4096: 64 KiB of
 * values a server, 16+ fragments), fragments delivered in a random order
 * and some twice, others lost and resent: applied once, whole. */
static void test_train_fragments_in_any_order(void **state)
{
    (void)state;
    enum { N = 256, W = 64 };
    ps_table_opts o;
    ps_table_opts_init(&o);
    o.width = W;
    uint64_t *keys = begin(1, 2, &o, 14, N);
    float *vals = malloc(N * W * sizeof(float)), *got = malloc(N * W * sizeof(float));
    assert_non_null(vals);
    assert_non_null(got);
    for (int i = 0; i < N * W; i++) vals[i] = (float)(i % 97);
    net n = {.drop = 0.05, .dup = 0.2, .shuffle = 1};
    for (int p = 0; p < 3; p++) assert_int_equal(settle(1, push(1, keys, N, vals), &n), 0);
    assert_int_equal(settle(1, pull(1, keys, N, got), &RELIABLE), 0);
    for (int i = 0; i < N * W; i++) assert_true(got[i] == 3.0f * vals[i]);
    ps_table_stats a = stats(2), b = stats(3);
    assert_true(a.trains + b.trains >= 6); /* each push, at each server, went as a train */
    assert_int_equal(a.pushes_applied + b.pushes_applied, 6);
    free(vals);
    free(got);
    finish(keys);
}

/* BSP with two workers: in iteration i each pushes +1 to the same keys and
 * pulls; every pull reads 2 * i, however the messages of the two interleave
 * and repeat. */
static void test_bsp_iterations_read_exact_sums(void **state)
{
    (void)state;
    enum { N = 100, ITERS = 8 };
    ps_table_opts o;
    ps_table_opts_init(&o);
    o.bsp = 1;
    uint64_t *keys = begin(2, 2, &o, 15, N);
    float ones[N], got[2][N];
    for (int i = 0; i < N; i++) ones[i] = 1;
    net n = {.dup = 0.2, .shuffle = 1};
    for (int it = 1; it <= ITERS; it++) {
        int64_t p[2], q[2];
        for (uint32_t w = 1; w <= 2; w++) {
            p[w - 1] = push(w, keys, N, ones);
            q[w - 1] = pull(w, keys, N, got[w - 1]);
        }
        for (uint32_t w = 1; w <= 2; w++) {
            assert_int_equal(settle(w, p[w - 1], &n), 0);
            assert_int_equal(settle(w, q[w - 1], &n), 0);
            for (int i = 0; i < N; i++)
                if (got[w - 1][i] != 2.0f * it)
                    fail_msg("iteration %d, worker %u, key %d: %g", it, w, i, got[w - 1][i]);
        }
    }
    finish(keys);
}

/* Kill server `victim`: it hears nothing more, its queued messages are lost,
 * and every live node applies the new view. */
static void kill_server(uint32_t victim)
{
    sim.nodes[victim].alive = PSI_NODE_DEAD;
    sim.epoch++;
    uint32_t dead[1] = {victim};
    for (int i = 1; i <= sim.nnodes; i++) {
        if (!is_alive((uint32_t)i)) continue;
        sim.cur = (uint32_t)i;
        if (sim.nodes[i].role == PS_ROLE_WORKER) psi_kv_worker_on_view(sim.t[i], dead, 1);
        else psi_kv_server_on_view(sim.t[i], dead, 1);
    }
    sim.cur = 0;
}

/* Keys the live servers hold between them, heads and backups alike. */
static size_t keys_held(void)
{
    size_t n = 0;
    for (int s = 1; s <= sim.nnodes; s++)
        if (sim.nodes[s].role == PS_ROLE_SERVER && is_alive((uint32_t)s))
            n += psi_store_size(sim.t[s]->store);
    return n;
}

/* Replication k = 1 on 3 servers: pushes in flight when a server dies
 * (some delivered to it and forwarded, some not, answers lost) are all
 * applied exactly once by the survivors, which then hold two copies of
 * every key between them. */
static void takeover_loses_nothing_acknowledged_case(uint64_t seed)
{
    enum { N = 300, BEFORE = 10, AFTER = 10 };
    ps_table_opts o;
    ps_table_opts_init(&o);
    o.replication = 1;
    uint64_t *keys = begin(1, 3, &o, seed, N);
    float ones[N];
    for (int i = 0; i < N; i++) ones[i] = 1;
    for (int p = 0; p < BEFORE; p++)
        assert_int_equal(settle(1, push(1, keys, N, ones), &RELIABLE), 0);
    assert_int_equal(keys_held(), 2 * N); /* a head and a backup for each */
    int64_t ts[AFTER];
    for (int p = 0; p < AFTER; p++) ts[p] = push(1, keys, N, ones);
    net n = {.dup = 0.1, .shuffle = 1};
    for (int i = 0; i < 25 && sim.nq > 0; i++) deliver((size_t)(rnd() % sim.nq), &n);
    kill_server(3);
    for (int p = 0; p < AFTER; p++) assert_int_equal(settle(1, ts[p], &n), 0);
    expect_all(1, keys, N, BEFORE + AFTER);
    tick(40000); /* the prunes after the view change (src/replica/prune.c) */
    run(&RELIABLE);
    assert_int_equal(keys_held(), 2 * N); /* copied to new backups, and let go by the rest */
    assert_true(stats(1).slices_moved + stats(2).takeovers_applied + stats(4).takeovers_applied +
                    stats(2).takeovers_held + stats(4).takeovers_held > 0);
    finish(keys);
}

static void test_takeover_loses_nothing_acknowledged(void **state)
{
    (void)state;
    for (uint64_t seed = 1600; seed < 1620; seed++) takeover_loses_nothing_acknowledged_case(seed);
}

/* Publish a view in which node `id` is in state `alive` (a new node: a
 * server on standby, its table opened), and let every live node apply it. */
static void set_state(uint32_t id, int alive)
{
    if ((int)id > sim.nnodes) {
        assert_true(id < MAXN);
        sim.nnodes = (int)id;
        sim.nodes[id] = (psi_node){.id = id, .role = PS_ROLE_SERVER, .rank = (int32_t)id - 2,
                                   .alive = (uint8_t)alive};
        snprintf(sim.nodes[id].addr, sizeof(sim.nodes[id].addr), "sim:%u", id);
        sim.epoch++;
        sim.cur = id;
        assert_int_equal(psi_kv_table_new("t", &sim.t[sim.nnodes - 1]->opts, &sim.t[id]), 0);
    } else {
        sim.nodes[id].alive = (uint8_t)alive;
        sim.epoch++;
    }
    for (int i = 1; i <= sim.nnodes; i++) {
        if (!is_alive((uint32_t)i)) continue;
        sim.cur = (uint32_t)i;
        if (sim.nodes[i].role == PS_ROLE_WORKER) psi_kv_worker_on_view(sim.t[i], NULL, 0);
        else psi_kv_server_on_view(sim.t[i], NULL, 0);
    }
    sim.cur = 0;
}

/* A fourth server joins while pushes are in flight and more keep coming:
 * on standby, then joining (the heads copy its share to it), then alive
 * (the old heads drain their forwards and hand their segments over).  Every
 * push is applied exactly once and, with ASSIGN, in order (the drain keeps a
 * late forward from overwriting a newer push at the new head), the joiner
 * serves pushes afterwards, and once the prunes ran the four servers hold
 * two copies of every key. */
static void join_handover_mid_pushes_case(uint64_t seed, ps_update update)
{
    enum { N = 400, ROUND = 6 };
    ps_table_opts o;
    ps_table_opts_init(&o);
    o.replication = 1;
    o.update = update;
    uint64_t *keys = begin(1, 3, &o, seed, N);
    float v[N];
    net n = {.dup = 0.1, .shuffle = 1};
    int64_t ts[4 * ROUND];
    int np = 0;
    for (int phase = 0; phase < 4; phase++) {
        for (int p = 0; p < ROUND; p++, np++) { /* ADD: +1 each; ASSIGN: push i sets i */
            for (int i = 0; i < N; i++) v[i] = update == PS_UPDATE_ADD ? 1.0f : (float)np + 1;
            ts[np] = push(1, keys, N, v);
        }
        for (int i = 0; i < 20 && sim.nq > 0; i++) deliver((size_t)(rnd() % sim.nq), &n);
        if (phase < 3) set_state(5, phase == 0 ? PSI_NODE_STANDBY
                                    : phase == 1 ? PSI_NODE_JOINING : PSI_NODE_ALIVE);
        run(&n);
    }
    for (int p = 0; p < np; p++) assert_int_equal(settle(1, ts[p], &n), 0);
    /* either way every key reads np: a push applied twice, lost, or (ASSIGN) an
     * old one applied after a newer one across the handover shows */
    expect_all(1, keys, N, (float)np);
    uint64_t joiner_before = stats(5).pushes_applied;
    for (int i = 0; i < N; i++) v[i] = 1;
    assert_int_equal(settle(1, push(1, keys, N, v), &n), 0);
    assert_true(stats(5).pushes_applied > joiner_before); /* it serves its share */
    tick(40000);
    run(&RELIABLE);
    assert_int_equal(keys_held(), 2 * N);
    finish(keys);
}

static void test_join_handover_mid_pushes(void **state)
{
    (void)state;
    for (uint64_t seed = 1700; seed < 1720; seed++) {
        join_handover_mid_pushes_case(seed, PS_UPDATE_ADD);
        join_handover_mid_pushes_case(seed, PS_UPDATE_ASSIGN);
    }
}

int main(void)
{
    setenv("PS_PUSH_FRAG", "4096", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_once_under_dups_and_reordering),
        cmocka_unit_test(test_exactly_once_under_loss_and_resends),
        cmocka_unit_test(test_refused_push_stays_refused),
        cmocka_unit_test(test_train_fragments_in_any_order),
        cmocka_unit_test(test_bsp_iterations_read_exact_sums),
        cmocka_unit_test(test_takeover_loses_nothing_acknowledged),
        cmocka_unit_test(test_join_handover_mid_pushes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
