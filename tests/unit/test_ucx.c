/*
 * test_ucx.c -- unit tests of the UCX transport (src/net/ucx.c).
 *
 * Two or three real transports in one process talk over loopback, each
 * listening on 127.0.0.1 port 0.  A sink per transport records what its
 * callbacks report: sink_on_receive appends the message under a mutex and
 * broadcasts a condition variable, sink_on_failure does the same with
 * (peer, err).  Tests wait on the condition variable with a deadline and
 * never sleep to wait; a SIGALRM watchdog set in each test's setup bounds
 * anything that could still hang (a close that never returns).
 *
 * Garbage on the wire is sent with the raw UCP API (its own context, worker
 * and client endpoint to the transport's listener), using the transport's
 * active-message id, so the tests can send what the transport never would.
 *
 * "No message was delivered" is proven without waiting for nothing: a valid
 * message is sent after the bad ones on the same endpoint, and once it has
 * arrived the receiver's handler has already run for everything before it.
 *
 * Run under ASan, the close tests prove that queued and in-flight sends are
 * freed.
 *
 * Most tests first send one message and wait for it (warm_up), so the
 * endpoint is connected before the messages under test go out; the two
 * regression tests test_sends_while_connecting_keep_order and
 * test_close_flush_delivers_queued_sends pin down what goes wrong otherwise.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ucp/api/ucp.h>

#include "net/transport.h"
#include "net_sink.h"
#include "ps/ps.h"
#include "util/util.h"
#include "wire/msg.h"

#define WAIT_MS 10000     /* deadline for anything that should happen */
#define WATCHDOG_S 60     /* per test: kill the process if a test hangs */
#define UCX_AM_ID 7       /* the active-message id ucx.c registers */
#define MIB (1024u * 1024u)

/* The sink, its waits, and make_msg/check_msg: net_sink.h */

/* ---- nodes: a transport, its sink and its address --------------------------------- */

typedef struct node {
    psi_transport *t;
    sink s;
    char addr[64];
} node;

static void node_open(node *n, uint64_t max_payload)
{
    psi_net_config cfg = {.max_payload = max_payload};
    sink_init(&n->s);
    psi_transport_cbs cbs = {.on_receive = sink_on_receive, .on_peer_failure = sink_on_failure,
                             .arg = &n->s};
    assert_int_equal(psi_ucx_open(&cfg, &cbs, &n->t), PS_OK);
    assert_non_null(n->t);
    assert_string_equal(n->t->ops->name, "ucx");
    assert_int_equal(n->t->ops->listen(n->t, "127.0.0.1", 0, n->addr, sizeof(n->addr)), PS_OK);
    char host[32];
    int port = 0;
    assert_int_equal(psi_split_hostport(n->addr, host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_true(port > 0 && port < 65536);
}

static void node_close(node *n, uint64_t flush_ms)
{
    if (n->t) n->t->ops->close(n->t, flush_ms);
    n->t = NULL;
    sink_destroy(&n->s);
}

/* A and B, each told where the other listens. */
static node A, B, C;

static void pair_open(uint64_t b_max_payload)
{
    node_open(&A, 0);
    node_open(&B, b_max_payload);
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    assert_int_equal(B.t->ops->connect(B.t, ID_A, A.addr), PS_OK);
}

static int watchdog_on(void **state)
{
    alarm(WATCHDOG_S);
    return 0;
}

/* Close whatever a test left open (also after a failed assertion). */
static int teardown_nodes(void **state)
{
    node *all[] = {&A, &B, &C};
    for (size_t i = 0; i < PSI_ARRAY_LEN(all); i++)
        if (all[i]->t) node_close(all[i], 0);
    alarm(0);
    return 0;
}

/* ---- messages ------------------------------------------------------------------ */

static void send_ok(node *from, uint32_t peer, psi_msg *m)
{
    assert_int_equal(from->t->ops->send(from->t, peer, m), PS_OK);
}

/* Send one header-only message A -> B and wait for it: afterwards A's
 * endpoint to B is connected (wire-up done).  The message is removed from
 * B's sink so tests count from zero. */
static void warm_up(void)
{
    psi_msg *m = psi_msg_new(PSI_MSG_HEARTBEAT);
    assert_non_null(m);
    m->hdr.sender = ID_A;
    m->hdr.timestamp = 999999;
    send_ok(&A, ID_B, m);
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);
    pthread_mutex_lock(&B.s.mu);
    size_t n = B.s.n;
    psi_msg *got = B.s.msgs[0];
    B.s.n = 0;
    pthread_mutex_unlock(&B.s.mu); /* no cmocka assert while holding it */
    assert_int_equal(n, 1);
    assert_int_equal(got->hdr.type, PSI_MSG_HEARTBEAT);
    psi_msg_free(got);
}

/* ---- basic delivery ------------------------------------------------------------- */

/* 100 small messages with a 1-segment aux payload, in order (one endpoint,
 * already connected), every header field and byte intact; and a reply. */
static void test_hundred_small_in_order(void **state)
{
    pair_open(0);
    warm_up();
    for (uint64_t i = 0; i < 100; i++) {
        size_t len[PSI_NSEG] = {0, 0, 0, 16 + (size_t)i};
        send_ok(&A, ID_B, make_msg(1000 + i, len));
    }
    assert_int_equal(wait_msgs(&B.s, 100, WAIT_MS), 100);
    for (size_t i = 0; i < 100; i++) {
        size_t len[PSI_NSEG] = {0, 0, 0, 16 + i};
        check_msg(sink_msg(&B.s, i), 1000 + i, len);
    }
    /* And back: B -> A over B's own outbound endpoint. */
    psi_msg *m = psi_msg_new(PSI_MSG_ACK);
    m->hdr.sender = ID_B;
    m->hdr.timestamp = 77;
    send_ok(&B, ID_A, m);
    assert_int_equal(wait_msgs(&A.s, 1, WAIT_MS), 1);
    assert_int_equal(sink_msg(&A.s, 0)->hdr.type, PSI_MSG_ACK);
    assert_int_equal(sink_msg(&A.s, 0)->hdr.timestamp, 77);
    assert_int_equal(fail_count(&A.s) + fail_count(&B.s), 0);
    assert_int_equal(msg_count(&B.s), 100);
}

/*
 * Regression: messages sent while the endpoint is still connecting (the
 * first sends to a peer, before UCX wire-up completes) arrive after later
 * ones.  UCX parks the early requests in the wire-up endpoint's pending
 * queue; once its async thread has switched the endpoint to ready, new sends
 * go straight out while the parked ones are replayed later.  Observed: B
 * receives 15..99 then 0..14.  To hit the moment wire-up completes every
 * time, A keeps sending until B has received something, then 100 more.
 */
static void test_sends_while_connecting_keep_order(void **state)
{
    pair_open(0);
    static const size_t len[PSI_NSEG] = {0, 0, 0, 8};
    uint64_t n = 0, extra = 0;
    while (extra < 100 && n < 20000) {
        send_ok(&A, ID_B, make_msg(1 + n++, len));
        if (extra || (n % 16 == 0 && msg_count(&B.s) > 0)) extra++;
    }
    assert_int_equal(wait_msgs(&B.s, n, WAIT_MS), n);
    for (size_t i = 0; i < n; i++) {
        uint64_t ts = sink_msg(&B.s, i)->hdr.timestamp;
        if (ts != 1 + i)
            fail_msg("of %llu messages, the %zu-th received is ts=%llu, expected %zu (reordered)",
                     (unsigned long long)n, i, (unsigned long long)ts, i + 1);
    }
}

static void test_zero_segment_messages(void **state)
{
    pair_open(0);
    warm_up();
    static const size_t none[PSI_NSEG] = {0};
    for (uint64_t i = 0; i < 10; i++) send_ok(&A, ID_B, make_msg(i + 1, none));
    assert_int_equal(wait_msgs(&B.s, 10, WAIT_MS), 10);
    for (size_t i = 0; i < 10; i++) {
        psi_msg *m = sink_msg(&B.s, i);
        check_msg(m, i + 1, none);
        for (int s = 0; s < PSI_NSEG; s++) assert_null(m->seg[s]);
    }
}

/*
 * Every segment size in {0, 1, 8, 4096, 65536+3, 8 MiB, 32 MiB} (keys only in
 * multiples of 8), one-segment and multi-segment, small (eager, copied out of
 * the AM data) and large (rendezvous, received straight into the segment
 * buffers: contiguous for one segment, an iovec for several).
 */
static const size_t size_cases[][PSI_NSEG] = {
    /* keys              vals              lens          aux */
    {0, 1, 0, 0},                                 /* one byte, one segment */
    {8, 0, 0, 0},                                 /* one key */
    {0, 0, 4096, 0},                              /* one segment, 4 KiB */
    {0, 65536 + 3, 0, 0},                         /* one segment, 64 KiB + 3 */
    {0, 8 * MIB, 0, 0},                           /* one segment, rendezvous */
    {0, 0, 0, 32 * MIB},                          /* one segment, 32 MiB rendezvous */
    {8, 1, 4096, 65536 + 3},                      /* four small segments */
    {8, 32 * MIB, 0, 0},                          /* one key, big values */
    {4096, 8 * MIB, 4096 / 8 * 4, 1},             /* keys, values, lens, aux */
    {8 * MIB, 32 * MIB, 65536 + 3, 4096},         /* everything large */
    {65536, 0, 0, 8 * MIB},                       /* segments with gaps */
    {0, 1, 1, 1},                                 /* three one-byte segments */
    {0, 0, 8 * MIB, 8 * MIB},                     /* two rendezvous-size segments */
    /* several regions, all but the largest in the AM header (PSI_NET_INLINE_MAX) */
    {8, 10 * MIB, 0, 24},                         /* a zero-copy push's shape */
    {8, 0, 0, 8 * MIB},                           /* the largest last */
    {1000, 4 * MIB, 0, 24},                       /* exactly PSI_NET_INLINE_MAX inlined */
    {1008, 4 * MIB, 0, 24},                       /* 8 bytes over: an iovec */
};

static void test_sizes_arrive_intact(void **state)
{
    pair_open(0);
    warm_up(); /* sent before wire-up, big messages go eager instead of rendezvous */
    size_t n = PSI_ARRAY_LEN(size_cases);
    for (size_t i = 0; i < n; i++) send_ok(&A, ID_B, make_msg(i + 1, size_cases[i]));
    /* Rendezvous completions may overtake eager ones: match by timestamp. */
    assert_int_equal(wait_msgs(&B.s, n, WAIT_MS), n);
    int seen[PSI_ARRAY_LEN(size_cases)] = {0};
    for (size_t k = 0; k < n; k++) {
        psi_msg *m = sink_msg(&B.s, k);
        uint64_t ts = m->hdr.timestamp;
        assert_true(ts >= 1 && ts <= n);
        assert_false(seen[ts - 1]);
        seen[ts - 1] = 1;
        check_msg(m, ts, size_cases[ts - 1]);
    }
    assert_int_equal(msg_count(&B.s), n);
}

/* Segments the sender does not own (borrowed) go out the same way. */
static void test_borrowed_segments(void **state)
{
    pair_open(0);
    warm_up(); /* sent before wire-up, big messages go eager instead of rendezvous */
    size_t len[PSI_NSEG] = {16, 8 * MIB, 0, 3};
    psi_msg *m = make_msg(42, len);
    uint8_t *vals = m->seg[PSI_SEG_VALS];
    m->borrowed = 1u << PSI_SEG_VALS;
    send_ok(&A, ID_B, m);
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);
    check_msg(sink_msg(&B.s, 0), 42, len);
    /* Not freed by the transport; the receiver's copy is its own. */
    assert_ptr_not_equal(sink_msg(&B.s, 0)->seg[PSI_SEG_VALS], vals);
    assert_true(sink_msg(&B.s, 0)->borrowed == 0 || sink_msg(&B.s, 0)->on_free != NULL);
    node_close(&A, 1000); /* the send has completed: the buffer is ours again */
    free(vals);
}

/* ---- receiver limits ------------------------------------------------------------ */

static void test_payload_over_max_dropped(void **state)
{
    pair_open(4096);
    warm_up();
    size_t big[PSI_NSEG] = {0, 8192, 0, 0};        /* eager, over the cap */
    size_t huge[PSI_NSEG] = {8, 8 * MIB, 0, 0};    /* rendezvous, over the cap */
    size_t edge[PSI_NSEG] = {0, 4096, 0, 0};       /* exactly the cap */
    size_t ok[PSI_NSEG] = {8, 100, 0, 1};
    send_ok(&A, ID_B, make_msg(1, big));
    send_ok(&A, ID_B, make_msg(2, huge));
    send_ok(&A, ID_B, make_msg(3, edge));
    send_ok(&A, ID_B, make_msg(4, ok));
    assert_int_equal(wait_msgs(&B.s, 2, WAIT_MS), 2);
    check_msg(sink_msg(&B.s, 0), 3, edge);
    check_msg(sink_msg(&B.s, 1), 4, ok);
    /* The connection survived the drops: more still flows both ways. */
    send_ok(&A, ID_B, make_msg(5, ok));
    assert_int_equal(wait_msgs(&B.s, 3, WAIT_MS), 3);
    check_msg(sink_msg(&B.s, 2), 5, ok);
    assert_int_equal(fail_count(&A.s) + fail_count(&B.s), 0);
}

/* ---- garbage from a raw UCP client ------------------------------------------------- */

typedef struct raw_client {
    ucp_context_h ctx;
    ucp_worker_h w;
    ucp_ep_h ep;
    int failed;
} raw_client;

static void raw_err(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    ((raw_client *)arg)->failed = 1;
}

static void raw_open(raw_client *r, const char *addr)
{
    char host[32];
    int port = 0;
    memset(r, 0, sizeof(*r));
    assert_int_equal(psi_split_hostport(addr, host, sizeof(host), &port), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    assert_int_equal(inet_pton(AF_INET, host, &sa.sin_addr), 1);

    ucp_params_t up = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_AM};
    assert_int_equal(ucp_init(&up, NULL, &r->ctx), UCS_OK);
    ucp_worker_params_t wp = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
                              .thread_mode = UCS_THREAD_MODE_SINGLE};
    assert_int_equal(ucp_worker_create(r->ctx, &wp, &r->w), UCS_OK);
    ucp_ep_params_t ep = {
        .field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
        .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
        .sockaddr = {.addr = (struct sockaddr *)&sa, .addrlen = sizeof(sa)},
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = raw_err, .arg = r},
    };
    assert_int_equal(ucp_ep_create(r->w, &ep, &r->ep), UCS_OK);
}

/* Progress until `req` completes or the deadline; returns its status. */
static ucs_status_t raw_wait(raw_client *r, void *req)
{
    if (req == NULL) return UCS_OK;
    if (UCS_PTR_IS_ERR(req)) return UCS_PTR_STATUS(req);
    uint64_t deadline = psi_now_ms() + WAIT_MS;
    ucs_status_t st;
    while ((st = ucp_request_check_status(req)) == UCS_INPROGRESS && psi_now_ms() < deadline)
        ucp_worker_progress(r->w);
    if (st == UCS_INPROGRESS) ucp_request_cancel(r->w, req);
    while (ucp_request_check_status(req) == UCS_INPROGRESS) ucp_worker_progress(r->w);
    ucp_request_free(req);
    return st == UCS_INPROGRESS ? UCS_ERR_TIMED_OUT : st;
}

/* Send one active message with the transport's id; wait for local completion. */
static void raw_send(raw_client *r, const void *hdr, size_t hlen, const void *data, size_t len,
                     int force_rndv)
{
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_FLAGS,
                             .datatype = ucp_dt_make_contig(1),
                             .flags = force_rndv ? UCP_AM_SEND_FLAG_RNDV : 0};
    void *req = ucp_am_send_nbx(r->ep, UCX_AM_ID, hdr, hlen, data, len, &p);
    assert_int_equal(raw_wait(r, req), UCS_OK);
}

static void raw_close(raw_client *r)
{
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                             .flags = r->failed ? UCP_EP_CLOSE_FLAG_FORCE : 0};
    void *req = ucp_ep_close_nbx(r->ep, &p);
    if (raw_wait(r, req) == UCS_ERR_TIMED_OUT) {
        p.flags = UCP_EP_CLOSE_FLAG_FORCE;
        raw_wait(r, ucp_ep_close_nbx(r->ep, &p));
    }
    ucp_worker_destroy(r->w);
    ucp_cleanup(r->ctx);
    memset(r, 0, sizeof(*r));
}

/* A valid header for `len` bytes of aux payload. */
static void encode_aux_hdr(uint8_t out[PSI_HDR_SIZE], uint64_t ts, uint64_t declared)
{
    psi_hdr h = {.version = PSI_WIRE_VERSION, .type = PSI_MSG_DATA, .sender = 77,
                 .receiver = ID_B, .timestamp = ts};
    h.seg_len[PSI_SEG_AUX] = declared;
    psi_hdr_encode(&h, out);
}

static void test_garbage_dropped_listener_survives(void **state)
{
    node_open(&B, 0);
    raw_client r;
    raw_open(&r, B.addr);

    uint8_t junk[PSI_HDR_SIZE], hdr[PSI_HDR_SIZE];
    uint8_t payload[100];
    uint64_t seed = 12345;
    for (size_t i = 0; i < sizeof(junk); i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        junk[i] = (uint8_t)(seed >> 56);
    }
    for (size_t i = 0; i < sizeof(payload); i++) payload[i] = (uint8_t)(i * 3 + 1);

    /* (a) a 10-byte header: too short to be one. */
    raw_send(&r, junk, 10, NULL, 0, 0);
    /* (b) 104 random bytes: bad magic / CRC. */
    raw_send(&r, junk, sizeof(junk), payload, 16, 0);
    /* (c) a valid header claiming 100 payload bytes, 50 sent. */
    encode_aux_hdr(hdr, 1, 100);
    raw_send(&r, hdr, sizeof(hdr), payload, 50, 0);
    /* (d) the same lie through the rendezvous protocol, and the reverse. */
    raw_send(&r, hdr, sizeof(hdr), payload, 50, 1);
    encode_aux_hdr(hdr, 2, 10);
    raw_send(&r, hdr, sizeof(hdr), payload, 100, 0);
    /* (e) a correct header one byte too long, and a header with no payload
     * that declares some. */
    encode_aux_hdr(hdr, 3, 100);
    raw_send(&r, hdr, sizeof(hdr) - 1, payload, 100, 0);
    raw_send(&r, hdr, sizeof(hdr), NULL, 0, 0);
    /* (f) a well-formed, CRC-valid header with a bad type. */
    psi_hdr bad = {.version = PSI_WIRE_VERSION, .type = PSI_MSG_TYPE_MAX, .receiver = ID_B};
    psi_hdr_encode(&bad, hdr);
    raw_send(&r, hdr, sizeof(hdr), NULL, 0, 0);
    /* (g) valid CRC, key_count disagreeing with the keys segment. */
    psi_hdr kc = {.version = PSI_WIRE_VERSION, .type = PSI_MSG_DATA, .key_count = 3};
    kc.seg_len[PSI_SEG_KEYS] = 16;
    psi_hdr_encode(&kc, hdr);
    raw_send(&r, hdr, sizeof(hdr), payload, 16, 0);

    /* Then valid messages on the same endpoint: eager, and forced rendezvous
     * (received into the buffer through ucp_am_recv_data_nbx). */
    encode_aux_hdr(hdr, 100, 100);
    raw_send(&r, hdr, sizeof(hdr), payload, 100, 0);
    encode_aux_hdr(hdr, 101, 100);
    raw_send(&r, hdr, sizeof(hdr), payload, 100, 1);

    assert_int_equal(wait_msgs(&B.s, 2, WAIT_MS), 2);
    for (size_t i = 0; i < 2; i++) {
        psi_msg *m = sink_msg(&B.s, i);
        assert_int_equal(m->hdr.sender, 77);
        assert_int_equal(m->hdr.seg_len[PSI_SEG_AUX], 100);
        assert_memory_equal(m->seg[PSI_SEG_AUX], payload, 100);
    }
    /* Order of the two may differ (rendezvous completes later); both there. */
    assert_int_equal(sink_msg(&B.s, 0)->hdr.timestamp + sink_msg(&B.s, 1)->hdr.timestamp, 201);
    assert_int_equal(msg_count(&B.s), 2);
    raw_close(&r);

    /* The listener still accepts a real transport afterwards. */
    node_open(&A, 0);
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    size_t len[PSI_NSEG] = {8, 1, 0, 0};
    send_ok(&A, ID_B, make_msg(7, len));
    assert_int_equal(wait_msgs(&B.s, 3, WAIT_MS), 3);
    check_msg(sink_msg(&B.s, 2), 7, len);
    assert_int_equal(fail_count(&B.s), 0);
}

/* A raw client that vanishes mid-rendezvous (RTS sent, the data pull cut
 * off by a forced close and a destroyed worker) must not crash the receiver,
 * and the receiver still serves real peers. */
static void test_raw_client_vanishes_mid_rendezvous(void **state)
{
    node_open(&B, 0);
    raw_client r;
    raw_open(&r, B.addr);
    uint8_t hdr[PSI_HDR_SIZE], one = 1;
    encode_aux_hdr(hdr, 1, 1);
    raw_send(&r, hdr, sizeof(hdr), &one, 1, 0); /* connected, first delivered */
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);

    size_t big = 16 * MIB;
    uint8_t *data = calloc(1, big);
    assert_non_null(data);
    encode_aux_hdr(hdr, 2, big);
    ucp_request_param_t sp = {.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_FLAGS,
                              .datatype = ucp_dt_make_contig(1),
                              .flags = UCP_AM_SEND_FLAG_RNDV};
    void *req = ucp_am_send_nbx(r.ep, UCX_AM_ID, hdr, sizeof(hdr), data, big, &sp);
    assert_false(UCS_PTR_IS_ERR(req));
    for (int i = 0; i < 50; i++) ucp_worker_progress(r.w); /* let the RTS go out */
    ucp_request_param_t cp = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                              .flags = UCP_EP_CLOSE_FLAG_FORCE};
    raw_wait(&r, ucp_ep_close_nbx(r.ep, &cp));
    if (req) raw_wait(&r, req); /* completed (or cancelled) by the forced close */
    ucp_worker_destroy(r.w);
    ucp_cleanup(r.ctx);
    free(data);

    node_open(&A, 0);
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    size_t len[PSI_NSEG] = {0, 0, 0, 5};
    send_ok(&A, ID_B, make_msg(3, len));
    /* The cut-off message may or may not have made it; the new one does. */
    uint64_t deadline = psi_now_ms() + WAIT_MS;
    psi_msg *got = NULL;
    for (size_t i = 1; !got && psi_now_ms() < deadline; i++) {
        if (wait_msgs(&B.s, i + 1, deadline - psi_now_ms()) < i + 1) break;
        psi_msg *m = sink_msg(&B.s, i);
        if (m->hdr.timestamp == 3) got = m;
        else assert_int_equal(m->hdr.timestamp, 2);
    }
    assert_non_null(got);
    check_msg(got, 3, len);
}

/* ---- peers --------------------------------------------------------------------- */

/* A TCP port on 127.0.0.1 where nothing listens (bound, then closed). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void test_peer_failure_reported_and_retried(void **state)
{
    pair_open(0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", dead_port());
    assert_int_equal(A.t->ops->connect(A.t, ID_DEAD, addr), PS_OK);
    static const size_t len[PSI_NSEG] = {0, 0, 0, 4};

    send_ok(&A, ID_DEAD, make_msg(1, len));
    assert_int_equal(wait_fails(&A.s, 1, WAIT_MS), 1);
    assert_int_equal(A.s.fails[0].peer, ID_DEAD);
    assert_true(A.s.fails[0].err < 0);

    /* The next send tries again and fails again. */
    send_ok(&A, ID_DEAD, make_msg(2, len));
    assert_int_equal(wait_fails(&A.s, 2, WAIT_MS), 2);
    assert_int_equal(A.s.fails[1].peer, ID_DEAD);
    assert_true(A.s.fails[1].err < 0);

    /* The good peer is unaffected. */
    send_ok(&A, ID_B, make_msg(3, len));
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);
    check_msg(sink_msg(&B.s, 0), 3, len);

    /* Once disconnected, a dead peer is never reported again: the send to it
     * is refused or dropped.  The I/O thread runs ops in order, so once the
     * message to B after it arrived, the send to 9 has been handled. */
    assert_int_equal(A.t->ops->disconnect(A.t, ID_DEAD), PS_OK);
    int rv = A.t->ops->send(A.t, ID_DEAD, make_msg(4, len));
    assert_true(rv == PS_OK || rv == PS_ERR_NOTFOUND);
    send_ok(&A, ID_B, make_msg(5, len));
    assert_int_equal(wait_msgs(&B.s, 2, WAIT_MS), 2);
    check_msg(sink_msg(&B.s, 1), 5, len);
    assert_int_equal(fail_count(&A.s), 2);
    assert_int_equal(fail_count(&B.s), 0);
}

/* A peer that was reachable and then closed is reported on the next send. */
static void test_peer_closed_reported(void **state)
{
    pair_open(0);
    static const size_t len[PSI_NSEG] = {0, 0, 0, 4};
    send_ok(&A, ID_B, make_msg(1, len));
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);
    node_close(&B, 0);
    send_ok(&A, ID_B, make_msg(2, len));
    assert_true(wait_fails(&A.s, 1, WAIT_MS) >= 1);
    assert_int_equal(A.s.fails[0].peer, ID_B);
    assert_true(A.s.fails[0].err < 0);
}

/* transport.h: send "Returns PS_ERR_NOTFOUND for a peer never connected". */
static void test_send_to_unknown_peer_notfound(void **state)
{
    pair_open(0);
    static const size_t len[PSI_NSEG] = {0, 0, 0, 4};
    int rv = A.t->ops->send(A.t, 55, make_msg(1, len)); /* message freed either way */
    /* Whatever it returned, nothing was reported and the transport works. */
    send_ok(&A, ID_B, make_msg(2, len));
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);
    check_msg(sink_msg(&B.s, 0), 2, len);
    assert_int_equal(fail_count(&A.s), 0);
    /* A peer id beyond any table the transport has grown so far. */
    int rv2 = A.t->ops->send(A.t, 1000000, make_msg(3, len));
    assert_int_equal(rv, PS_ERR_NOTFOUND);
    assert_int_equal(rv2, PS_ERR_NOTFOUND);
}

static void test_disconnect_then_send(void **state)
{
    pair_open(0);
    static const size_t len[PSI_NSEG] = {0, 0, 0, 4};
    send_ok(&A, ID_B, make_msg(1, len));
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);

    assert_int_equal(A.t->ops->disconnect(A.t, ID_B), PS_OK);
    assert_int_equal(A.t->ops->disconnect(A.t, ID_B), PS_OK); /* idempotent */
    assert_int_equal(A.t->ops->disconnect(A.t, 4242), PS_OK); /* never known */
    int rv = A.t->ops->send(A.t, ID_B, make_msg(2, len));
    assert_true(rv == PS_OK || rv == PS_ERR_NOTFOUND);

    /* Connect again: a new endpoint carries later messages; the one sent
     * while disconnected never arrives. */
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    send_ok(&A, ID_B, make_msg(3, len));
    assert_int_equal(wait_msgs(&B.s, 2, WAIT_MS), 2);
    check_msg(sink_msg(&B.s, 0), 1, len);
    check_msg(sink_msg(&B.s, 1), 3, len);
    assert_int_equal(fail_count(&A.s), 0);
}

/* connect: same address is a no-op, a new address moves the peer. */
static void test_connect_readdress(void **state)
{
    pair_open(0);
    node_open(&C, 0);
    static const size_t len[PSI_NSEG] = {0, 0, 0, 4};
    assert_int_equal(A.t->ops->connect(A.t, ID_B, "not-an-address"), PS_ERR_INVAL);
    send_ok(&A, ID_B, make_msg(1, len));
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK); /* same: kept */
    send_ok(&A, ID_B, make_msg(2, len));
    assert_int_equal(wait_msgs(&B.s, 2, WAIT_MS), 2);

    assert_int_equal(A.t->ops->connect(A.t, ID_B, C.addr), PS_OK); /* moved */
    send_ok(&A, ID_B, make_msg(3, len));
    assert_int_equal(wait_msgs(&C.s, 1, WAIT_MS), 1);
    check_msg(sink_msg(&C.s, 0), 3, len);
    assert_int_equal(msg_count(&B.s), 2);
    assert_int_equal(fail_count(&A.s), 0);
}

/* ---- close --------------------------------------------------------------------- */

/* Close with sends queued and in flight, no flush: returns, frees them (ASan). */
static void test_close_with_queued_sends(void **state)
{
    pair_open(0);
    size_t big[PSI_NSEG] = {8, 4 * MIB, 0, 0};
    size_t small[PSI_NSEG] = {0, 0, 0, 64};
    for (uint64_t i = 0; i < 16; i++) send_ok(&A, ID_B, make_msg(i + 1, big));
    for (uint64_t i = 0; i < 500; i++) send_ok(&A, ID_B, make_msg(100 + i, small));
    /* And to a dead peer, whose endpoint is still connecting. */
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", dead_port());
    assert_int_equal(A.t->ops->connect(A.t, ID_DEAD, addr), PS_OK);
    for (uint64_t i = 0; i < 10; i++) send_ok(&A, ID_DEAD, make_msg(1000 + i, small));
    uint64_t t0 = psi_now_ms();
    node_close(&A, 0);
    assert_true(psi_now_ms() - t0 < 5000);
    /* B may have got some; whatever it got is intact. */
    size_t got = msg_count(&B.s);
    for (size_t i = 0; i < got; i++) {
        psi_msg *m = sink_msg(&B.s, i);
        uint64_t ts = m->hdr.timestamp;
        check_msg(m, ts, ts < 100 ? big : small);
    }
}

/* Close the receiver while rendezvous receives are in flight. */
static void test_close_receiver_mid_transfer(void **state)
{
    pair_open(0);
    size_t big[PSI_NSEG] = {0, 16 * MIB, 0, 0};
    for (uint64_t i = 0; i < 4; i++) send_ok(&A, ID_B, make_msg(i + 1, big));
    node_close(&B, 0);
    node_close(&A, 0);
}

/*
 * Regression: close(t, flush_ms) must deliver what was queued before it.
 * The I/O thread stops once every send request has completed locally, then
 * force-closes the endpoints; but a local completion only means UCX has
 * handed the data on (eager: copied into the transport's buffers;
 * rendezvous: data put, the final ack to the receiver still queued), so the
 * forced close resets the connection and the tail is lost.  Observed: B
 * logs "receive from node 1 failed: Connection reset by remote peer" for
 * the last rendezvous message (ts 4), sometimes loses the small ones too.
 * One round loses something about half the time, so run up to eight.
 */
static void test_close_flush_delivers_queued_sends(void **state)
{
    size_t big[PSI_NSEG] = {8, 2 * MIB, 0, 0};
    size_t small[PSI_NSEG] = {0, 0, 0, 64};
    for (int round = 0; round < 8; round++) {
        pair_open(0);
        warm_up();
        for (uint64_t i = 0; i < 100; i++) send_ok(&A, ID_B, make_msg(100 + i, small));
        for (uint64_t i = 0; i < 4; i++) send_ok(&A, ID_B, make_msg(i + 1, big));
        node_close(&A, WAIT_MS);
        size_t got = wait_msgs(&B.s, 104, 3000); /* A has flushed: B needs moments */
        int seen[200] = {0};
        for (size_t i = 0; i < got; i++) {
            psi_msg *m = sink_msg(&B.s, i);
            uint64_t ts = m->hdr.timestamp;
            assert_true(ts < 200);
            seen[ts] = 1;
            check_msg(m, ts, ts < 100 ? big : small);
        }
        if (got != 104) {
            char missing[256] = "";
            for (uint64_t ts = 1; ts < 200; ts++)
                if ((ts <= 4 || ts >= 100) && !seen[ts])
                    snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing),
                             " %llu", (unsigned long long)ts);
            fail_msg("round %d: close with flush lost %zu of 104 messages: ts%s", round,
                     104 - got, missing);
        }
        node_close(&B, 0);
    }
}

/* Close right after open, without ever listening. */
static void test_open_close(void **state)
{
    psi_net_config cfg = {0};
    psi_transport_cbs cbs = {0};
    psi_transport *t = NULL;
    assert_int_equal(psi_ucx_open(&cfg, &cbs, &t), PS_OK);
    t->ops->close(t, 0);
}

/* Concurrent senders on one transport: every message arrives once. */
#define NTHREADS 4
#define PER_THREAD 200

static void *sender_thread(void *arg)
{
    uintptr_t k = (uintptr_t)arg;
    for (uint64_t i = 0; i < PER_THREAD; i++) {
        size_t len[PSI_NSEG] = {0, 0, 0, 8 + (size_t)(i % 64)};
        psi_msg *m = make_msg(k * PER_THREAD + i + 1, len);
        if (A.t->ops->send(A.t, ID_B, m) != PS_OK) return (void *)1;
    }
    return NULL;
}

static void test_concurrent_senders(void **state)
{
    pair_open(0);
    warm_up(); /* per-thread order is only kept once connected, see above */
    pthread_t th[NTHREADS];
    for (uintptr_t k = 0; k < NTHREADS; k++)
        assert_int_equal(pthread_create(&th[k], NULL, sender_thread, (void *)k), 0);
    for (int k = 0; k < NTHREADS; k++) {
        void *res;
        pthread_join(th[k], &res);
        assert_null(res);
    }
    size_t total = NTHREADS * PER_THREAD;
    assert_int_equal(wait_msgs(&B.s, total, WAIT_MS), total);
    char *seen = calloc(total, 1);
    assert_non_null(seen);
    uint64_t last[NTHREADS] = {0};
    for (size_t j = 0; j < total; j++) {
        psi_msg *m = sink_msg(&B.s, j);
        uint64_t ts = m->hdr.timestamp;
        assert_true(ts >= 1 && ts <= total);
        assert_false(seen[ts - 1]);
        seen[ts - 1] = 1;
        size_t k = (ts - 1) / PER_THREAD, i = (ts - 1) % PER_THREAD;
        size_t len[PSI_NSEG] = {0, 0, 0, 8 + i % 64};
        check_msg(m, ts, len);
        assert_true(ts > last[k]); /* each thread's messages in its order */
        last[k] = ts;
    }
    free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hundred_small_in_order, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_sends_while_connecting_keep_order, watchdog_on,
                                        teardown_nodes),
        cmocka_unit_test_setup_teardown(test_zero_segment_messages, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_sizes_arrive_intact, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_borrowed_segments, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_payload_over_max_dropped, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_garbage_dropped_listener_survives, watchdog_on,
                                        teardown_nodes),
        cmocka_unit_test_setup_teardown(test_raw_client_vanishes_mid_rendezvous, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_peer_failure_reported_and_retried, watchdog_on,
                                        teardown_nodes),
        cmocka_unit_test_setup_teardown(test_peer_closed_reported, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_send_to_unknown_peer_notfound, watchdog_on,
                                        teardown_nodes),
        cmocka_unit_test_setup_teardown(test_disconnect_then_send, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_connect_readdress, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_close_with_queued_sends, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_close_receiver_mid_transfer, watchdog_on,
                                        teardown_nodes),
        cmocka_unit_test_setup_teardown(test_close_flush_delivers_queued_sends, watchdog_on,
                                        teardown_nodes),
        cmocka_unit_test_setup_teardown(test_open_close, watchdog_on, teardown_nodes),
        cmocka_unit_test_setup_teardown(test_concurrent_senders, watchdog_on, teardown_nodes),
    };
    const char *filter = getenv("TEST_FILTER"); /* e.g. TEST_FILTER='*close*' */
    if (filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
