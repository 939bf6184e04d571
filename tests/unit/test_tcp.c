/*
 * test_tcp.c -- unit tests of the TCP transport (src/net/tcp.c) and its
 * gate (src/net/gate.c) over real sockets on 127.0.0.1.
 *
 * Two or three transports in one process, each listening on 127.0.0.1
 * port 0.  A sink per transport records what its callbacks report
 * (messages, and (peer, err) failures) under a mutex and broadcasts a
 * condition variable; tests wait on it with a deadline and never sleep to
 * wait.  Raw sockets play the strangers: garbage, truncated handshakes,
 * idle connections, and full handshakes made here with gate.h and the
 * right key followed by frames the transport would never send.  A raw
 * socket's fate is read with poll() against a deadline: "closed" is EOF or
 * ECONNRESET.
 *
 * "Nothing was delivered" is proven without waiting for nothing: after the
 * bad input a legitimate message is sent, and once it has arrived the sink
 * must hold exactly it.
 *
 * A SIGALRM watchdog set in each test's setup bounds anything that could
 * still hang; teardown closes every transport and raw socket a test left,
 * also after a failed assertion.  Run under ASan, the close tests prove
 * that queued frames are freed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "net/gate.h"
#include "net/seal.h"
#include "net/transport.h"
#include "net_sink.h"
#include "ps/ps.h"
#include "util/util.h"
#include "wire/msg.h"

#define WAIT_MS 10000 /* deadline for anything that should happen */
#define WATCHDOG_S 90 /* per test: kill the process if a test hangs */
#define MIB (1024u * 1024u)
#define NRAW_MAX 256

/* The sink, its waits, and make_msg/check_msg: net_sink.h */

/* ---- nodes: a transport, its sink and its address --------------------------------- */

typedef struct node {
    psi_transport *t;
    sink s;
    char addr[64];
    int port;
} node;

static node A, B, C;

typedef struct node_opts {
    const char *secret;    /* NULL: the public key */
    uint64_t max_payload;  /* 0: the default */
    uint64_t handshake_ms; /* 0: the default */
    int encrypt;           /* PS_ENCRYPT=1 */
} node_opts;

static psi_gate_key key_for(const char *secret)
{
    psi_gate_key k;
    psi_gate_key_derive(&k, secret, secret ? strlen(secret) : 0);
    return k;
}

static void node_open(node *n, node_opts o)
{
    psi_net_config cfg = {.max_payload = o.max_payload, .handshake_ms = o.handshake_ms,
                          .key = key_for(o.secret)};
    cfg.key.encrypt = o.encrypt;
    sink_init(&n->s);
    psi_transport_cbs cbs = {.on_receive = sink_on_receive, .on_peer_failure = sink_on_failure,
                             .arg = &n->s};
    assert_int_equal(psi_tcp_open(&cfg, &cbs, &n->t), PS_OK);
    assert_non_null(n->t);
    assert_string_equal(n->t->ops->name, "tcp");
    assert_int_equal(n->t->ops->listen(n->t, "127.0.0.1", 0, n->addr, sizeof(n->addr)), PS_OK);
    char host[32];
    assert_int_equal(psi_split_hostport(n->addr, host, sizeof(host), &n->port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_true(n->port > 0 && n->port < 65536);
}

static void node_close(node *n, uint64_t flush_ms)
{
    if (n->t) n->t->ops->close(n->t, flush_ms);
    n->t = NULL;
    sink_destroy(&n->s);
}

#define SECRET "the cluster secret"

/* ---- raw sockets ------------------------------------------------------------------ */

static int raws[NRAW_MAX];
static size_t nraws;

/* A blocking client socket connected to 127.0.0.1:port, closed at teardown. */
static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_true(nraws < NRAW_MAX);
    raws[nraws++] = fd;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* A listener that never accepts: the kernel completes connections to it and
 * they then hear nothing.  Returns the fd (closed at teardown), *port set. */
static int raw_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_true(nraws < NRAW_MAX);
    raws[nraws++] = fd;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 16), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A port on 127.0.0.1 where nothing listens (bound, then released). */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static void raw_send(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        assert_true(w > 0);
        p += w;
        len -= (size_t)w;
    }
}

static int poll_in(int fd, uint64_t deadline_ms)
{
    uint64_t now = psi_now_ms();
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int left = now < deadline_ms ? (int)(deadline_ms - now) : 0;
    int r = poll(&p, 1, left);
    return r > 0;
}

/* Read exactly `len` bytes within `ms`.  0, or -1 (closed, error, late). */
static int raw_read_exact(int fd, void *buf, size_t len, uint64_t ms)
{
    uint64_t dl = psi_now_ms() + ms;
    uint8_t *p = buf;
    while (len) {
        if (!poll_in(fd, dl)) return -1;
        ssize_t r = recv(fd, p, len, MSG_DONTWAIT);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (r <= 0) return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* Wait up to `ms` for the other end to close `fd` (EOF or ECONNRESET),
 * discarding any bytes before it.  1 if closed, 0 if still open. */
static int raw_closed_within(int fd, uint64_t ms)
{
    uint64_t dl = psi_now_ms() + ms;
    uint8_t junk[4096];
    for (;;) {
        if (!poll_in(fd, dl)) return 0;
        ssize_t r = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) return 1;
        if (r < 0 && errno != EINTR && errno != EAGAIN) return 1;
    }
}

/* Whether the other end has closed `fd` by now (nothing is waited for). */
static int raw_closed_now(int fd) { return raw_closed_within(fd, 0); }

/* Run the connector's side of the gate on `fd` with `key`.  Returns
 * psi_gate_proof's result, or PS_ERR_PEER if no REPLY came. */
static int raw_handshake(int fd, const psi_gate_key *key)
{
    psi_gate_hs hs;
    uint8_t hello[PSI_GATE_HELLO], reply[PSI_GATE_REPLY], proof[PSI_GATE_PROOF];
    psi_gate_hello(&hs, hello);
    raw_send(fd, hello, sizeof(hello));
    if (raw_read_exact(fd, reply, sizeof(reply), WAIT_MS) != 0) return PS_ERR_PEER;
    int rv = psi_gate_proof(&hs, key, reply, proof);
    if (rv == 0) raw_send(fd, proof, sizeof(proof));
    return rv;
}

/* ---- setup and teardown ------------------------------------------------------------ */

static int setup(void **state)
{
    alarm(WATCHDOG_S);
    nraws = 0;
    return 0;
}

static int teardown(void **state)
{
    node *all[] = {&A, &B, &C};
    for (size_t i = 0; i < PSI_ARRAY_LEN(all); i++)
        if (all[i]->t) node_close(all[i], 0);
    for (size_t i = 0; i < nraws; i++) close(raws[i]);
    nraws = 0;
    alarm(0);
    return 0;
}

/* ---- messages ------------------------------------------------------------------ */

static void send_ok(node *from, uint32_t peer, psi_msg *m)
{
    assert_int_equal(from->t->ops->send(from->t, peer, m), PS_OK);
}

/* A message with one aux segment of `aux` bytes. */
static psi_msg *small_msg(uint64_t ts, size_t aux)
{
    size_t len[PSI_NSEG] = {0, 0, 0, aux};
    return make_msg(ts, len);
}

/* A sends one small message to B and B gets exactly it, as its n-th. */
static void legit_delivery(node *from, uint32_t to, node *dst, uint64_t ts, size_t nth)
{
    send_ok(from, to, small_msg(ts, 33));
    assert_int_equal(wait_msgs(&dst->s, nth + 1, WAIT_MS), nth + 1);
    size_t len[PSI_NSEG] = {0, 0, 0, 33};
    check_msg(sink_msg(&dst->s, nth), ts, len);
}

/* A raw frame of `m` (then freed); *len set.  The caller frees it. */
static uint8_t *raw_frame(psi_msg *m, size_t *len)
{
    *len = psi_frame_size(m);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    assert_int_equal(psi_frame_encode(m, buf, *len), (long)*len);
    psi_msg_free(m);
    return buf;
}

/* ---- (1) delivery ------------------------------------------------------------------ */

static const size_t size_cases[][PSI_NSEG] = {
    /* keys     vals            lens       aux */
    {8, 1, 4, 1},                           /* four tiny segments */
    {8, 65536 + 3, 4096, 100},              /* larger than the 64 KiB read buffer */
    {4096, 8 * MIB, 4096 / 8 * 4, 77},      /* four segments, one of 8 MiB */
    {0, 0, 0, 8 * MIB + 1},                 /* one segment just over 8 MiB */
    {16, 3, 0, 0},                          /* two segments, the rest empty */
};

/* Every case arrives once, whole, in the order sent; then again after the
 * connection is up (the first batch was queued during the handshake). */
static void test_segments_arrive_intact(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    size_t nc = PSI_ARRAY_LEN(size_cases);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < nc; i++) send_ok(&A, ID_B, make_msg(round * 100 + i + 1,
                                                                   size_cases[i]));
        assert_int_equal(wait_msgs(&B.s, (round + 1) * nc, WAIT_MS), (round + 1) * nc);
        for (size_t i = 0; i < nc; i++) {
            psi_msg *m = sink_msg(&B.s, round * nc + i);
            check_msg(m, round * 100 + i + 1, size_cases[i]);
            for (int s = 0; s < PSI_NSEG; s++)
                if (!size_cases[i][s]) assert_null(m->seg[s]);
        }
    }
    assert_int_equal(fail_count(&A.s), 0);
    assert_int_equal(fail_count(&B.s), 0);
    assert_int_equal(msg_count(&A.s), 0);
}

/* 1000 small messages of varying size arrive exactly once and in order. */
static void test_thousand_small_in_order(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    for (uint64_t i = 1; i <= 1000; i++) send_ok(&A, ID_B, small_msg(i, 1 + i % 200));
    assert_int_equal(wait_msgs(&B.s, 1000, WAIT_MS), 1000);
    for (size_t i = 0; i < 1000; i++) {
        psi_msg *m = sink_msg(&B.s, i);
        assert_non_null(m);
        if (m->hdr.timestamp != i + 1)
            fail_msg("message %zu has timestamp %llu", i, (unsigned long long)m->hdr.timestamp);
        size_t len[PSI_NSEG] = {0, 0, 0, 1 + (i + 1) % 200};
        check_msg(m, i + 1, len);
    }
    /* And the reverse direction over B's own connection. */
    assert_int_equal(B.t->ops->connect(B.t, ID_A, A.addr), PS_OK);
    send_ok(&B, ID_A, small_msg(7, 5));
    assert_int_equal(wait_msgs(&A.s, 1, WAIT_MS), 1);
    assert_int_equal(sink_msg(&A.s, 0)->hdr.timestamp, 7);
    assert_int_equal(msg_count(&B.s), 1000);
}

/*
 * Regression: a header-only message (every segment empty: HEARTBEAT, ACK,
 * BARRIER...).  tcp.c's parse() copies its zero payload bytes with
 * memcpy(c->rdst, ..., 0) while c->rdst is NULL (psi_net_msg_alloc gives no
 * block for an empty payload): undefined behaviour, and under the sanitizer
 * build (-fno-sanitize-recover=undefined) it aborts the receiving process.
 * Last in the list, since under UBSan it ends the run.
 */
static void test_header_only_messages(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    static const size_t none[PSI_NSEG] = {0};
    for (uint64_t i = 1; i <= 10; i++) send_ok(&A, ID_B, make_msg(i, none));
    assert_int_equal(wait_msgs(&B.s, 10, WAIT_MS), 10);
    for (size_t i = 0; i < 10; i++) {
        psi_msg *m = sink_msg(&B.s, i);
        check_msg(m, i + 1, none);
        for (int s = 0; s < PSI_NSEG; s++) assert_null(m->seg[s]);
    }
}

/* ---- (2) wrong key -------------------------------------------------------------- */

/* A holds another secret: A's sends fail with PS_ERR_AUTH, once per attempt,
 * and B receives nothing from it (C, with B's secret, gets through). */
static void test_wrong_key_auth_failure(void **state)
{
    node_open(&A, (node_opts){.secret = "not the secret"});
    node_open(&B, (node_opts){.secret = SECRET});
    node_open(&C, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    send_ok(&A, ID_B, small_msg(1, 10));
    send_ok(&A, ID_B, small_msg(2, 10));
    assert_int_equal(wait_fails(&A.s, 1, WAIT_MS), 1);
    fail_rec f = sink_fail(&A.s, 0);
    assert_int_equal(f.peer, ID_B);
    assert_int_equal(f.err, PS_ERR_AUTH);
    /* The next send tries again and fails the same way. */
    send_ok(&A, ID_B, small_msg(3, 10));
    assert_int_equal(wait_fails(&A.s, 2, WAIT_MS), 2);
    f = sink_fail(&A.s, 1);
    assert_int_equal(f.peer, ID_B);
    assert_int_equal(f.err, PS_ERR_AUTH);

    assert_int_equal(C.t->ops->connect(C.t, ID_B, B.addr), PS_OK);
    legit_delivery(&C, ID_B, &B, 42, 0);
    assert_int_equal(msg_count(&B.s), 1);
    assert_int_equal(fail_count(&B.s), 0);
    assert_int_equal(fail_count(&C.s), 0);
    assert_int_equal(msg_count(&A.s), 0);
    assert_int_equal(fail_count(&A.s), 2);
}

/* The public key against a secret cluster fails too (and the reverse). */
static void test_public_key_vs_secret(void **state)
{
    node_open(&A, (node_opts){.secret = NULL});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    assert_int_equal(B.t->ops->connect(B.t, ID_A, A.addr), PS_OK);
    send_ok(&A, ID_B, small_msg(1, 10));
    send_ok(&B, ID_A, small_msg(1, 10));
    assert_int_equal(wait_fails(&A.s, 1, WAIT_MS), 1);
    assert_int_equal(wait_fails(&B.s, 1, WAIT_MS), 1);
    assert_int_equal(sink_fail(&A.s, 0).err, PS_ERR_AUTH);
    assert_int_equal(sink_fail(&B.s, 0).err, PS_ERR_AUTH);
    assert_int_equal(sink_fail(&B.s, 0).peer, ID_A);
    assert_int_equal(msg_count(&A.s), 0);
    assert_int_equal(msg_count(&B.s), 0);
}

/* ---- (3) garbage --------------------------------------------------------------- */

/* Strangers and broken peers, each on its own raw connection: each is
 * closed, none is delivered, and afterwards a legitimate transport still
 * gets a message through.  A raw handshake with the right key followed by
 * a valid frame is delivered: the control that the raw handshake works. */
static void test_garbage_refused_listener_survives(void **state)
{
    const uint64_t max_payload = 1 * MIB;
    node_open(&B, (node_opts){.secret = SECRET, .max_payload = max_payload,
                              .handshake_ms = 1000});
    psi_gate_key key = key_for(SECRET), wrong = key_for("wrong");

    /* Random bytes. */
    uint8_t rnd[4096];
    for (size_t i = 0; i < sizeof(rnd); i++) rnd[i] = (uint8_t)(rand() ^ (i * 13));
    rnd[0] = 'X'; /* never the magic */
    int fd_rnd = raw_connect(B.port);
    raw_send(fd_rnd, rnd, sizeof(rnd));
    /* 17 bytes, then end of stream; 17 bytes, then silence. */
    int fd_17eof = raw_connect(B.port), fd_17idle = raw_connect(B.port);
    raw_send(fd_17eof, "PSGATE01abcdefghi", 17);
    shutdown(fd_17eof, SHUT_WR);
    raw_send(fd_17idle, "PSGATE01abcdefghi", 17);
    /* A correct HELLO, then junk in place of the PROOF. */
    int fd_hello = raw_connect(B.port);
    psi_gate_hs hs;
    uint8_t hello[PSI_GATE_HELLO], reply[PSI_GATE_REPLY], proof[PSI_GATE_PROOF];
    psi_gate_hello(&hs, hello);
    raw_send(fd_hello, hello, sizeof(hello));
    assert_int_equal(raw_read_exact(fd_hello, reply, sizeof(reply), WAIT_MS), 0);
    assert_int_equal(psi_gate_proof(&hs, &key, reply, proof), PS_OK); /* B is genuine */
    raw_send(fd_hello, rnd, 64);
    /* A full handshake under the wrong key: the REPLY does not verify; send
     * the proof anyway. */
    int fd_wrong = raw_connect(B.port);
    assert_int_equal(raw_handshake(fd_wrong, &wrong), PS_ERR_AUTH);
    raw_send(fd_wrong, proof, sizeof(proof));

    /* Full handshakes, then: a bad CRC; a header claiming max_payload + 1;
     * a valid frame (delivered) then a bad one. */
    size_t flen;
    int fd_crc = raw_connect(B.port);
    assert_int_equal(raw_handshake(fd_crc, &key), PS_OK);
    uint8_t *frame = raw_frame(small_msg(500, 20), &flen);
    frame[100] ^= 0xFF; /* the CRC field */
    raw_send(fd_crc, frame, flen);
    free(frame);

    int fd_big = raw_connect(B.port);
    assert_int_equal(raw_handshake(fd_big, &key), PS_OK);
    psi_msg *big = small_msg(501, 0);
    big->hdr.seg_len[PSI_SEG_VALS] = max_payload + 1; /* no such segment is attached */
    uint8_t hdr[PSI_HDR_SIZE];
    psi_hdr_encode(&big->hdr, hdr);
    psi_msg_free(big);
    raw_send(fd_big, hdr, sizeof(hdr));
    raw_send(fd_big, rnd, sizeof(rnd)); /* the start of a "payload" */

    int fd_ok = raw_connect(B.port);
    assert_int_equal(raw_handshake(fd_ok, &key), PS_OK);
    frame = raw_frame(small_msg(502, 20), &flen);
    raw_send(fd_ok, frame, flen);
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);
    size_t len20[PSI_NSEG] = {0, 0, 0, 20};
    check_msg(sink_msg(&B.s, 0), 502, len20);
    assert_false(raw_closed_now(fd_ok)); /* a proven peer stays */
    frame[PSI_HDR_SIZE - 1] ^= 0x01;     /* then a bad CRC on the same stream */
    raw_send(fd_ok, frame, flen);
    free(frame);

    int fds[] = {fd_rnd, fd_17eof, fd_17idle, fd_hello, fd_wrong, fd_crc, fd_big, fd_ok};
    const char *names[] = {"random", "17+eof", "17+idle", "hello+junk",
                           "wrong key", "bad crc", "over max_payload", "good then bad crc"};
    for (size_t i = 0; i < PSI_ARRAY_LEN(fds); i++)
        if (!raw_closed_within(fds[i], WAIT_MS)) fail_msg("%s: not closed", names[i]);

    /* The listener survived: a legitimate transport still delivers, and it
     * is the only message after the raw control. */
    node_open(&A, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    legit_delivery(&A, ID_B, &B, 77, 1);
    assert_int_equal(msg_count(&B.s), 2);
    assert_int_equal(fail_count(&B.s), 0);
    assert_int_equal(fail_count(&A.s), 0);
}

/* ---- (4) the cap on unproven connections ---------------------------------------- */

/* 200 idle strangers: the oldest are closed as new ones come (64 may wait
 * at once), a legitimate transport still delivers, and exactly the oldest
 * 137 (200 - 64, plus one for A's own connection) were closed. */
static void test_pending_cap_evicts_oldest(void **state)
{
    enum { NIDLE = 200, CAP = 64 };
    node_open(&B, (node_opts){.secret = SECRET, .handshake_ms = 60000});
    int fds[NIDLE];
    for (int i = 0; i < NIDLE; i++) fds[i] = raw_connect(B.port);
    /* The first are closed while the rest are accepted. */
    assert_true(raw_closed_within(fds[0], WAIT_MS));

    node_open(&A, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    legit_delivery(&A, ID_B, &B, 1, 0);
    assert_int_equal(fail_count(&A.s), 0);

    const int nclosed = NIDLE - CAP + 1;
    uint64_t dl = psi_now_ms() + WAIT_MS;
    for (int i = 0; i < nclosed; i++)
        if (!raw_closed_within(fds[i], dl > psi_now_ms() ? dl - psi_now_ms() : 0))
            fail_msg("idle connection %d of %d was not closed", i, NIDLE);
    for (int i = nclosed; i < NIDLE; i++)
        if (raw_closed_now(fds[i])) fail_msg("idle connection %d of %d closed", i, NIDLE);

    /* The 63 left are still counted (A's connection, proven, is not): the
     * 64th newcomer fits, the 65th closes the oldest of them. */
    int late1 = raw_connect(B.port), late2 = raw_connect(B.port);
    assert_true(raw_closed_within(fds[nclosed], WAIT_MS));
    assert_false(raw_closed_now(fds[nclosed + 1]));
    assert_false(raw_closed_now(late1));
    assert_false(raw_closed_now(late2));
}

/* ---- (5) handshake timeout ---------------------------------------------------- */

/* With handshake_ms = 300 an idle stranger is closed after about 300 ms
 * (not before), and so is one that sent HELLO and never the PROOF. */
static void test_handshake_timeout_closes_idle(void **state)
{
    node_open(&B, (node_opts){.secret = SECRET, .handshake_ms = 300});
    uint64_t t0 = psi_now_ms();
    int idle = raw_connect(B.port);
    int half = raw_connect(B.port);
    psi_gate_hs hs;
    uint8_t hello[PSI_GATE_HELLO], reply[PSI_GATE_REPLY];
    psi_gate_hello(&hs, hello);
    raw_send(half, hello, sizeof(hello));
    assert_int_equal(raw_read_exact(half, reply, sizeof(reply), WAIT_MS), 0);

    assert_true(raw_closed_within(idle, 2000));
    uint64_t took = psi_now_ms() - t0;
    assert_true(raw_closed_within(half, 2000));
    assert_true(took >= 250);
    assert_true(took <= 2000);

    /* A proven connection is not subject to the deadline. */
    node_open(&A, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    legit_delivery(&A, ID_B, &B, 1, 0);
    int ok = raw_connect(B.port);
    psi_gate_key key = key_for(SECRET);
    assert_int_equal(raw_handshake(ok, &key), PS_OK);
    assert_false(raw_closed_within(ok, 700));
    legit_delivery(&A, ID_B, &B, 2, 1);
    assert_int_equal(fail_count(&A.s), 0);
}

/* The connector's side: a listener that accepts and never answers.  The
 * send fails with PS_ERR_TIMEOUT after handshake_ms. */
static void test_handshake_timeout_connector(void **state)
{
    int port;
    raw_listener(&port);
    node_open(&A, (node_opts){.secret = SECRET, .handshake_ms = 300});
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(A.t->ops->connect(A.t, ID_B, addr), PS_OK);
    uint64_t t0 = psi_now_ms();
    send_ok(&A, ID_B, small_msg(1, 10));
    assert_int_equal(wait_fails(&A.s, 1, WAIT_MS), 1);
    uint64_t took = psi_now_ms() - t0;
    assert_int_equal(sink_fail(&A.s, 0).peer, ID_B);
    assert_int_equal(sink_fail(&A.s, 0).err, PS_ERR_TIMEOUT);
    assert_true(took >= 250 && took <= 3000);
}

/* ---- (6) listen ---------------------------------------------------------------- */

static void test_listen_wildcard_refused(void **state)
{
    psi_net_config cfg = {.key = key_for(SECRET)};
    psi_transport_cbs cbs = {.on_receive = sink_on_receive, .on_peer_failure = sink_on_failure,
                             .arg = &A.s};
    sink_init(&A.s);
    assert_int_equal(psi_tcp_open(&cfg, &cbs, &A.t), PS_OK);
    char addr[64] = "untouched";
    assert_int_equal(A.t->ops->listen(A.t, "0.0.0.0", 0, addr, sizeof(addr)), PS_ERR_CONFIG);
    assert_int_equal(A.t->ops->listen(A.t, "0.0.0.0", 4567, addr, sizeof(addr)),
                     PS_ERR_CONFIG);
    assert_int_equal(A.t->ops->listen(A.t, "no-such-host.invalid", 0, addr, sizeof(addr)),
                     PS_ERR_CONFIG);
    assert_string_equal(addr, "untouched");
    /* The transport is still usable: loopback works. */
    assert_int_equal(A.t->ops->listen(A.t, "127.0.0.1", 0, A.addr, sizeof(A.addr)), PS_OK);
    assert_int_equal(psi_split_hostport(A.addr, addr, sizeof(addr), &A.port), 0);
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(B.t->ops->connect(B.t, ID_A, A.addr), PS_OK);
    legit_delivery(&B, ID_A, &A, 1, 0);
}

/* ---- (7) unknown and unreachable peers ------------------------------------------ */

static void test_send_unknown_peer_notfound(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->send(A.t, ID_B, small_msg(1, 10)), PS_ERR_NOTFOUND);
    /* Known, then disconnected: unknown again. */
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    legit_delivery(&A, ID_B, &B, 2, 0);
    assert_int_equal(A.t->ops->disconnect(A.t, ID_B), PS_OK);
    assert_int_equal(A.t->ops->disconnect(A.t, ID_B), PS_OK); /* idempotent */
    assert_int_equal(A.t->ops->send(A.t, ID_B, small_msg(3, 10)), PS_ERR_NOTFOUND);
    /* And known again. */
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    legit_delivery(&A, ID_B, &B, 4, 1);
    assert_int_equal(fail_count(&A.s), 0);
    assert_int_equal(msg_count(&B.s), 2);
}

/* Nothing listens at the peer's address: each send attempt is reported
 * once with PS_ERR_PEER, for that peer. */
static void test_unreachable_peer_failure(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET});
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", dead_port());
    assert_int_equal(A.t->ops->connect(A.t, ID_DEAD, addr), PS_OK);
    assert_int_equal(fail_count(&A.s), 0); /* connect alone reports nothing */
    send_ok(&A, ID_DEAD, small_msg(1, 10));
    assert_int_equal(wait_fails(&A.s, 1, WAIT_MS), 1);
    assert_int_equal(sink_fail(&A.s, 0).peer, ID_DEAD);
    assert_int_equal(sink_fail(&A.s, 0).err, PS_ERR_PEER);
    send_ok(&A, ID_DEAD, small_msg(2, 10));
    assert_int_equal(wait_fails(&A.s, 2, WAIT_MS), 2);
    assert_int_equal(sink_fail(&A.s, 1).peer, ID_DEAD);
    assert_int_equal(sink_fail(&A.s, 1).err, PS_ERR_PEER);
    /* Other peers are unaffected. */
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    legit_delivery(&A, ID_B, &B, 3, 0);
    assert_int_equal(fail_count(&A.s), 2);
}

/* A proven peer that closes: the sender hears PS_ERR_PEER, and its next
 * send reconnects to the peer's new incarnation at the same address. */
static void test_peer_closed_reported_then_reconnects(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    legit_delivery(&A, ID_B, &B, 1, 0);
    node_close(&B, 0);
    assert_int_equal(wait_fails(&A.s, 1, WAIT_MS), 1);
    assert_int_equal(sink_fail(&A.s, 0).peer, ID_B);
    assert_int_equal(sink_fail(&A.s, 0).err, PS_ERR_PEER);
    node_open(&C, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, C.addr), PS_OK);
    legit_delivery(&A, ID_B, &C, 2, 0);
    assert_int_equal(fail_count(&A.s), 1);
}

/* Regression (soak, issue 13): every outbound connection held a 64 KiB
 * receive buffer, though frames only leave over it.  Now only a connection
 * that received a frame has one, and closing frees it. */
static void test_outbound_connection_has_no_receive_buffer(void **state)
{
    size_t before = psi_tcp_rbufs();
    node_open(&A, (node_opts){.secret = SECRET});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    legit_delivery(&A, ID_B, &B, 1, 0);
    legit_delivery(&A, ID_B, &B, 2, 1);
    assert_int_equal(psi_tcp_rbufs(), before + 1); /* B's inbound only */
    assert_int_equal(B.t->ops->connect(B.t, ID_A, A.addr), PS_OK);
    legit_delivery(&B, ID_A, &A, 3, 0);
    assert_int_equal(psi_tcp_rbufs(), before + 2);
    node_close(&A, 0);
    node_close(&B, 0);
    assert_int_equal(psi_tcp_rbufs(), before);
}

/* The receiver closes in the middle of large transfers: it frees the
 * half-received message (ASan), and the sender hears PS_ERR_PEER once and
 * drops what it still had queued. */
static void test_receiver_closes_mid_transfer(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    size_t big[PSI_NSEG] = {8, 8 * MIB, 0, 3};
    for (uint64_t i = 1; i <= 6; i++) send_ok(&A, ID_B, make_msg(i, big));
    assert_true(wait_msgs(&B.s, 1, WAIT_MS) >= 1);
    check_msg(sink_msg(&B.s, 0), 1, big);
    node_close(&B, 0);
    assert_int_equal(wait_fails(&A.s, 1, WAIT_MS), 1);
    assert_int_equal(sink_fail(&A.s, 0).peer, ID_B);
    assert_int_equal(sink_fail(&A.s, 0).err, PS_ERR_PEER);
}

/* ---- (8) close ------------------------------------------------------------------ */

/* Queued frames to a peer that never completes the handshake: close
 * returns once the flush bound has passed (not before, not much after),
 * and frees them (ASan). */
static void test_close_with_queued_returns_within_bound(void **state)
{
    int port;
    raw_listener(&port);
    node_open(&A, (node_opts){.secret = SECRET});
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(A.t->ops->connect(A.t, ID_B, addr), PS_OK);
    size_t big[PSI_NSEG] = {8, 8 * MIB, 4, 1};
    send_ok(&A, ID_B, make_msg(1, big));
    for (uint64_t i = 2; i <= 50; i++) send_ok(&A, ID_B, small_msg(i, 100));
    uint64_t t0 = psi_now_ms();
    node_close(&A, 300);
    uint64_t took = psi_now_ms() - t0;
    if (took < 250 || took > 2000) fail_msg("close(300 ms) took %llu ms",
                                            (unsigned long long)took);
    /* A flush bound of 0 returns at once. */
    node_open(&A, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, addr), PS_OK);
    for (uint64_t i = 1; i <= 50; i++) send_ok(&A, ID_B, small_msg(i, 100));
    t0 = psi_now_ms();
    node_close(&A, 0);
    took = psi_now_ms() - t0;
    if (took > 1000) fail_msg("close(0) took %llu ms", (unsigned long long)took);
}

/* Sends queued before the connection is even made are flushed by close, in
 * order, well before a generous bound; and send after close is refused. */
static void test_close_flushes_queued_sends(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    size_t big[PSI_NSEG] = {8, 2 * MIB, 0, 0};
    for (uint64_t i = 1; i <= 200; i++)
        send_ok(&A, ID_B, i == 100 ? make_msg(i, big) : small_msg(i, 1 + i % 50));
    uint64_t t0 = psi_now_ms();
    psi_transport *t = A.t;
    t->ops->close(t, 20000);
    A.t = NULL;
    uint64_t took = psi_now_ms() - t0;
    assert_true(took < 15000);
    assert_int_equal(wait_msgs(&B.s, 200, WAIT_MS), 200);
    for (size_t i = 0; i < 200; i++) {
        psi_msg *m = sink_msg(&B.s, i);
        assert_int_equal(m->hdr.timestamp, i + 1);
        if (i + 1 == 100) check_msg(m, 100, big);
        else {
            size_t len[PSI_NSEG] = {0, 0, 0, 1 + (i + 1) % 50};
            check_msg(m, i + 1, len);
        }
    }
    assert_int_equal(fail_count(&A.s), 0);
    sink_destroy(&A.s);
}

/* ---- (9) sealed connections (PS_ENCRYPT=1) ----------------------------------------- */

/* Every size case arrives whole through the seal, in order, and no byte of
 * a payload crosses the wire in the clear. */
static void test_sealed_round_trip(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET, .encrypt = 1});
    node_open(&B, (node_opts){.secret = SECRET, .encrypt = 1});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    size_t nc = PSI_ARRAY_LEN(size_cases);
    for (size_t i = 0; i < nc; i++) send_ok(&A, ID_B, make_msg(i + 1, size_cases[i]));
    for (uint64_t i = 1; i <= 300; i++) send_ok(&A, ID_B, small_msg(1000 + i, 1 + i % 50));
    assert_int_equal(wait_msgs(&B.s, nc + 300, WAIT_MS), nc + 300);
    for (size_t i = 0; i < nc; i++) check_msg(sink_msg(&B.s, i), i + 1, size_cases[i]);
    for (size_t i = 0; i < 300; i++) {
        size_t len[PSI_NSEG] = {0, 0, 0, 1 + (i + 1) % 50};
        check_msg(sink_msg(&B.s, nc + i), 1000 + i + 1, len);
    }
    assert_int_equal(fail_count(&A.s), 0);
}

/* One end sealed, the other not: refused like a wrong secret, both ways. */
static void test_sealed_mismatch_refused(void **state)
{
    node_open(&A, (node_opts){.secret = SECRET, .encrypt = 1});
    node_open(&B, (node_opts){.secret = SECRET});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    assert_int_equal(B.t->ops->connect(B.t, ID_A, A.addr), PS_OK);
    send_ok(&A, ID_B, small_msg(1, 10));
    send_ok(&B, ID_A, small_msg(2, 10));
    assert_int_equal(wait_fails(&A.s, 1, WAIT_MS), 1);
    assert_int_equal(wait_fails(&B.s, 1, WAIT_MS), 1);
    assert_int_equal(sink_fail(&A.s, 0).err, PS_ERR_AUTH);
    assert_int_equal(sink_fail(&B.s, 0).err, PS_ERR_AUTH);
    assert_int_equal(msg_count(&A.s), 0);
    assert_int_equal(msg_count(&B.s), 0);
}

/* After a proper sealed handshake, a record that fails authentication (or
 * claims an impossible length) closes the connection; nothing is
 * delivered, and the listener goes on serving. */
static void test_sealed_bad_record_closes(void **state)
{
    psi_gate_key key = key_for(SECRET);
    key.encrypt = 1;
    node_open(&B, (node_opts){.secret = SECRET, .encrypt = 1});
    for (int kind = 0; kind < 2; kind++) {
        int fd = raw_connect(B.port);
        assert_int_equal(raw_handshake(fd, &key), PS_OK);
        uint8_t junk[64 + 4];
        memset(junk, 0x5a, sizeof(junk));
        uint8_t hdr[PSI_SEAL_HDR];
        memset(hdr, 7, sizeof(hdr)); /* any header: the first record cannot open under it */
        raw_send(fd, hdr, sizeof(hdr));
        psi_put_u32(junk, kind == 0 ? 64 : 0xFFFFFFFFu);
        raw_send(fd, junk, sizeof(junk));
        assert_true(raw_closed_within(fd, WAIT_MS));
    }
    assert_int_equal(msg_count(&B.s), 0);
    node_open(&A, (node_opts){.secret = SECRET, .encrypt = 1});
    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    legit_delivery(&A, ID_B, &B, 9, 0);
}

/* ---- read mark ------------------------------------------------------------------------ */

/* An on_receive that holds the I/O thread until released, then records. */
typedef struct holder {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered, released;
    sink *s;
} holder;

static void holding_receive(void *arg, psi_msg *m)
{
    holder *h = arg;
    pthread_mutex_lock(&h->mu);
    h->entered = 1;
    pthread_cond_broadcast(&h->cv);
    while (!h->released) pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    sink_on_receive(h->s, m);
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int caught_up(psi_transport *t)
{
    uint64_t now = psi_now_ms();
    return psi_transport_read_mark(t, now) == now;
}

/* The read mark (what a failure detector judges silence up to) is now while
 * the I/O thread waits for input, stays behind while it is held up in a
 * callback, and catches up once it is free again. */
static void test_read_mark_lags_a_busy_io_thread(void **state)
{
    (void)state;
    holder h = {.s = &B.s};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    psi_net_config cfg = {.key = key_for(NULL)};
    sink_init(&B.s);
    psi_transport_cbs cbs = {.on_receive = holding_receive, .on_peer_failure = sink_on_failure,
                             .arg = &h};
    assert_int_equal(psi_tcp_open(&cfg, &cbs, &B.t), PS_OK);
    assert_int_equal(B.t->ops->listen(B.t, "127.0.0.1", 0, B.addr, sizeof(B.addr)), PS_OK);
    node_open(&A, (node_opts){0});
    uint64_t dl = psi_now_ms() + WAIT_MS;
    while (!caught_up(B.t) && psi_now_ms() < dl) nap_ms(1);
    assert_true(caught_up(B.t)); /* idle: caught up */

    assert_int_equal(A.t->ops->connect(A.t, ID_B, B.addr), PS_OK);
    send_ok(&A, ID_B, small_msg(1, 16));
    pthread_mutex_lock(&h.mu);
    struct timespec until = psi_deadline_in(WAIT_MS);
    while (!h.entered && pthread_cond_timedwait(&h.cv, &h.mu, &until) == 0) {
    }
    int entered = h.entered;
    pthread_mutex_unlock(&h.mu);
    assert_true(entered);
    uint64_t held = psi_now_ms();
    while (psi_now_ms() < held + 60) nap_ms(5); /* time passes while it is held */
    uint64_t now = psi_now_ms();
    assert_true(psi_transport_read_mark(B.t, now) <= held);

    pthread_mutex_lock(&h.mu);
    h.released = 1;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    assert_int_equal(wait_msgs(&B.s, 1, WAIT_MS), 1);
    dl = psi_now_ms() + WAIT_MS;
    while (!caught_up(B.t) && psi_now_ms() < dl) nap_ms(1);
    assert_true(caught_up(B.t));
    check_msg(sink_msg(&B.s, 0), 1, (size_t[PSI_NSEG]){0, 0, 0, 16});
    node_close(&B, 0);
    pthread_mutex_destroy(&h.mu);
    pthread_cond_destroy(&h.cv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_segments_arrive_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_mark_lags_a_busy_io_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thousand_small_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_key_auth_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_public_key_vs_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_refused_listener_survives, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_pending_cap_evicts_oldest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout_closes_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout_connector, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_wildcard_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_unknown_peer_notfound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_peer_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_closed_reported_then_reconnects, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_receiver_closes_mid_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbound_connection_has_no_receive_buffer, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_with_queued_returns_within_bound, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_flushes_queued_sends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_mismatch_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealed_bad_record_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_only_messages, setup, teardown),
    };
    return cmocka_run_group_tests_name("tcp", tests, NULL, NULL);
}
