/*
 * tcp.c -- the default transport: libps frames over TCP connections that
 * are authenticated (gate.h) before a byte of them is parsed.
 *
 * Why not UCX's listener: UCX 1.13's sockaddr listener and its TCP
 * interface's own listening socket both assert on malformed connection
 * packets, so one crafted packet ends the process.  Nothing of UCX faces
 * the network here; this file's only parser of unproven bytes is the
 * fixed-size handshake.
 *
 * Design.  One I/O thread per transport owns every socket and sleeps in
 * epoll (level-triggered) on them, on the listener and on an eventfd.
 * Application threads queue ops (connect, send, disconnect, close) under
 * t->lock and wake it; names are resolved in the caller's thread.
 *
 * Connections: one outbound connection per peer id, made lazily on the
 * first send; it carries every message to that peer, in order.  Inbound
 * connections (accepted) only receive.  Either kind first runs the gate
 * handshake, with a deadline (PS_HANDSHAKE_TIMEOUT_MS); at most
 * MAX_PENDING inbound connections may be unproven at once (a new one closes
 * the oldest), so idle, half-open and slow connections cost a bounded
 * number of sockets for a bounded time.  A failed outbound connection is
 * closed, its queued messages dropped (the layers above resend), the
 * failure reported once through on_peer_failure, and it is re-made on the
 * next send.
 *
 * Frames: the 104-byte header (wire/msg.h), then the segments back to back.
 * A sender writes header and segments with one sendmsg per batch of frames
 * (no copy of a segment).  A receiver reads into a 64 KiB buffer (mapped,
 * outside the heap, and only once a byte comes: rbuf_ready), validates
 * each header before allocating, and reads large payloads straight into the
 * message's block, or into memory the layer above names for a large answer
 * (transport.h, place: a pull's values land in the caller's array).  A
 * frame that fails validation closes the connection (a
 * proven peer that sends one is broken; the stream cannot be resynced).
 *
 * Never: parse a byte of an unproven connection beyond the handshake's
 * fixed sizes; block the I/O thread (every socket is non-blocking); call
 * a callback with t->lock held; raise SIGPIPE (MSG_NOSIGNAL).
 *
 * Lock order: t->lock only (guards the op list, `closing` and `known`).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/gate.h"
#include "net/seal.h"
#include "net/transport.h"
#include "util/idmap.h"
#include "util/log.h"
#include "util/util.h"

#define RBUF_SIZE (64u << 10)
#define MAX_PENDING 64         /* unproven inbound connections at once */
#define MAX_IOV 64             /* iovecs per sendmsg */
#define TXQ_KEEP 64            /* a send ring of more frames is freed once empty
                                * (a burst's, 112 bytes a frame, would stay) */
#define READ_BUDGET (8u << 20) /* bytes read from one connection per wake-up */
#define SWEEP_MS 50            /* deadline check period while handshakes run */
#define TXQ_MAX (256ull << 20) /* bytes queued to one peer: past it, messages are
                                * dropped (their senders resend), so a reader slower
                                * than its requests' resends cannot grow this node */

typedef enum op_kind { OP_CONNECT, OP_SEND, OP_DISCONNECT, OP_CLOSE } op_kind;

typedef struct tcp_op {
    struct tcp_op *next;
    op_kind kind;
    uint32_t peer;
    psi_msg *msg;
    struct sockaddr_in sa;
    char addr[64];
    uint64_t flush_ms;
} tcp_op;

/* A frame queued on a connection: the message and its encoded header. */
typedef struct txitem {
    psi_msg *m;
    uint8_t hdr[PSI_HDR_SIZE];
} txitem;

enum { CS_CONNECTING, CS_HANDSHAKE, CS_OPEN };

struct tcp_peer;

typedef struct conn {
    struct conn *prev, *next;  /* t->conns, oldest first */
    struct tcp_transport *t;
    struct tcp_peer *peer;     /* outbound: its peer; inbound: NULL */
    int fd, state;
    uint32_t armed;            /* epoll events registered */
    uint64_t deadline_ms;      /* the handshake must end by then */
    psi_gate_hs hs;
    uint8_t hsin[PSI_GATE_REPLY];
    size_t hsin_len, hsin_want;
    uint8_t hsout[PSI_GATE_REPLY];
    size_t hsout_len, hsout_off;
    txitem *q;                 /* ring of frames to send */
    size_t qhead, qn, qcap, txoff;
    uint64_t qbytes;           /* their header and payload bytes */
    uint8_t *rbuf;             /* received bytes not yet parsed: [rpos, rlen); mapped
                                * when the first byte after the handshake comes
                                * (rbuf_ready: an unproven or an outbound connection
                                * costs no buffer) */
    size_t rpos, rlen;
    psi_msg *rmsg;             /* the frame whose payload is arriving */
    uint8_t *rdst;
    uint64_t rleft;
    int dead;                  /* closed; freed at the end of the loop pass */
    /* PS_ENCRYPT=1 (seal.h): outbound connections seal what they send,
     * inbound ones open what they receive; NULL otherwise */
    psi_seal *seal;
    int seal_hdr;              /* inbound: the stream header is still to come */
    uint8_t *cbuf;             /* out: the record being sent [coff, clen);
                                * in: ciphertext received [0, clen) */
    size_t clen, coff;
    uint8_t *plain;            /* PSI_SEAL_CHUNK bytes of staging */
    char name[96];             /* for logs: "node 3 at 10.0.0.2:4000" or "10.0.0.9:51234" */
} conn;

typedef struct tcp_peer {
    uint32_t id;
    int known;
    int warned;                /* a failure was logged since the last success */
    int ever;                  /* a connection to it was ever proven (before that,
                                * failures are the caller's to report: a peer that
                                * is still starting refuses connections) */
    char addr[64];
    struct sockaddr_in sa;
    conn *c;
} tcp_peer;

typedef struct tcp_transport {
    psi_transport base;
    psi_net_config cfg;
    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;
    tcp_op *ops_head, *ops_tail;
    int closing;
    psi_idmap known;           /* under lock: ids passed to connect() */
    int wake_fd, epoll_fd, listen_fd, spare_fd;
    /* I/O thread only: */
    psi_idmap peers;           /* id -> tcp_peer */
    conn *conns, *conns_tail;
    conn *graveyard;           /* closed connections, linked by next */
    int npending;              /* inbound connections still in the handshake */
    int nhandshake;            /* connections of either kind in the handshake */
    int stop;
    uint64_t flush_deadline_ms;
    uint64_t last_refusal_log_ms, refusals_unlogged;
    uint64_t dropped;          /* frames that failed validation */
    uint64_t qdropped;         /* messages dropped: their peer's queue was full */
    int drained;               /* I/O thread: the last pass took every ready event */
    /* read_mark (transport.h): set by the I/O thread, read by any */
    _Atomic uint64_t mark_ms;  /* a pass began with everything before it handled */
    _Atomic int waiting;       /* ... and is blocked in epoll_wait: caught up now */
} tcp_transport;

static int ev_wake, ev_listen; /* epoll tags: their addresses */

/* ---- small helpers ------------------------------------------------------------ */

static void wake(tcp_transport *t)
{
    uint64_t one = 1;
    ssize_t w = write(t->wake_fd, &one, sizeof(one));
    (void)w;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void fmt_sa(const struct sockaddr_in *sa, char *out, size_t cap)
{
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip));
    snprintf(out, cap, "%s:%d", ip, ntohs(sa->sin_port));
}

/* Refusals of strangers are logged at most once a second, with a count of
 * those not logged, so a flood of garbage cannot flood the log. */
static void log_refusal(tcp_transport *t, const conn *c, const char *why)
{
    uint64_t now = psi_now_ms();
    if (now - t->last_refusal_log_ms < 1000) {
        t->refusals_unlogged++;
        return;
    }
    if (t->refusals_unlogged)
        PSI_WARN("refused a connection from %s: %s (and %llu more refused in the last second)",
                 c->name, why, (unsigned long long)t->refusals_unlogged);
    else PSI_WARN("refused a connection from %s: %s", c->name, why);
    t->last_refusal_log_ms = now;
    t->refusals_unlogged = 0;
}

/* ---- connections (I/O thread) --------------------------------------------------- */

static void arm(conn *c, uint32_t events)
{
    if (c->armed == events) return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(c->t->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
    c->armed = events;
}

static conn *conn_new(tcp_transport *t, int fd, tcp_peer *peer)
{
    conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->t = t;
    c->fd = fd;
    c->peer = peer;
    c->armed = EPOLLIN;
    struct epoll_event ev = {.events = c->armed, .data.ptr = c};
    if (epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        free(c);
        return NULL;
    }
    c->prev = t->conns_tail;
    if (t->conns_tail) t->conns_tail->next = c;
    else t->conns = c;
    t->conns_tail = c;
    c->deadline_ms = psi_now_ms() + t->cfg.handshake_ms;
    t->nhandshake++;
    if (!peer) t->npending++;
    return c;
}

static void set_open(conn *c)
{
    c->state = CS_OPEN;
    c->t->nhandshake--;
    if (!c->peer) c->t->npending--;
}

/* The receive buffer is mapped, not taken from malloc: it lives as long as
 * its connection, and a connection ends when its peer dies, at any moment;
 * a 64 KiB hole left in the heap then would fill with small long-lived
 * blocks and keep the heap from shrinking (bench/README.md, soak.sh).
 * Unmapped, its pages go back to the system at once.  NULL if none. */
static _Atomic size_t nrbufs; /* psi_tcp_rbufs */

static uint8_t *rbuf_new(void)
{
    void *p = mmap(NULL, RBUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    atomic_fetch_add(&nrbufs, 1);
    return p;
}

static void rbuf_free(uint8_t *p)
{
    if (!p) return;
    munmap(p, RBUF_SIZE);
    atomic_fetch_sub(&nrbufs, 1);
}

size_t psi_tcp_rbufs(void) { return atomic_load(&nrbufs); }

/* Close `c` and drop what it holds; its memory goes to the graveyard,
 * freed after the loop pass (a later event of the same pass may name it).
 * Reports nothing. */
static void conn_free(conn *c)
{
    tcp_transport *t = c->t;
    if (c->state != CS_OPEN) set_open(c); /* uncount the handshake */
    epoll_ctl(t->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    if (c->prev) c->prev->next = c->next;
    else t->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    else t->conns_tail = c->prev;
    for (size_t i = 0; i < c->qn; i++) psi_msg_free(c->q[(c->qhead + i) % c->qcap].m);
    c->qn = 0;
    psi_msg_free(c->rmsg);
    c->rmsg = NULL;
    if (c->peer && c->peer->c == c) c->peer->c = NULL;
    c->dead = 1;
    c->next = t->graveyard;
    t->graveyard = c;
}

static void bury(tcp_transport *t)
{
    while (t->graveyard) {
        conn *c = t->graveyard;
        t->graveyard = c->next;
        free(c->q);
        rbuf_free(c->rbuf);
        free(c->seal);
        free(c->cbuf);
        free(c->plain);
        free(c);
    }
}

/* An outbound connection failed: close it, drop its queue, report once. */
static void conn_fail(conn *c, int err, const char *why)
{
    tcp_transport *t = c->t;
    tcp_peer *p = c->peer;
    if (!p) {
        PSI_DEBUG("inbound connection from %s closed: %s", c->name, why);
        conn_free(c);
        return;
    }
    if (err == PS_ERR_AUTH || err == PS_ERR_PROTO) PSI_ERROR("%s: %s", c->name, why);
    else if (c->state == CS_OPEN && !c->qn) /* idle: the peer went away, nothing lost here */
        PSI_INFO("connection to %s closed: %s", c->name, why);
    else if (!p->warned && !t->stop && p->ever) PSI_WARN("connection to %s failed: %s", c->name, why);
    else if (!p->warned && !t->stop) PSI_INFO("connection to %s failed: %s", c->name, why);
    else PSI_DEBUG("connection to %s failed: %s", c->name, why);
    p->warned = 1;
    uint32_t id = p->id;
    int known = p->known;
    conn_free(c);
    if (known && !t->stop && t->base.cbs.on_peer_failure)
        t->base.cbs.on_peer_failure(t->base.cbs.arg, id, err);
}

static int conn_push(conn *c, psi_msg *m)
{
    uint64_t len = PSI_HDR_SIZE + psi_msg_payload_len(&m->hdr);
    if (c->qn && c->qbytes + len > TXQ_MAX) {
        c->t->qdropped++;
        if (c->t->qdropped == 1 || c->t->qdropped % 1000 == 0)
            PSI_WARN("%s reads slower than it is sent to: %llu MiB queued, %llu messages "
                     "dropped so far (their senders resend them)", c->name,
                     (unsigned long long)(c->qbytes >> 20), (unsigned long long)c->t->qdropped);
        return PS_ERR_TOOBIG;
    }
    if (c->qn == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 16;
        txitem *q = malloc(cap * sizeof(*q));
        if (!q) return PS_ERR_NOMEM;
        for (size_t i = 0; i < c->qn; i++) q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    txitem *it = &c->q[(c->qhead + c->qn) % c->qcap];
    it->m = m;
    psi_hdr_encode(&m->hdr, it->hdr);
    c->qn++;
    c->qbytes += len;
    return PS_OK;
}

/* Describe the unsent bytes of up to MAX_IOV pieces, head first. */
static int fill_iov(conn *c, struct iovec *iov)
{
    int n = 0;
    size_t skip = c->txoff;
    for (size_t i = 0; i < c->qn && n < MAX_IOV - PSI_NSEG; i++) {
        txitem *it = &c->q[(c->qhead + i) % c->qcap];
        const psi_hdr *h = &it->m->hdr;
        struct iovec parts[1 + PSI_NSEG] = {{it->hdr, PSI_HDR_SIZE}};
        int np = 1;
        for (int s = 0; s < PSI_NSEG; s++)
            if (h->seg_len[s]) parts[np++] = (struct iovec){it->m->seg[s], h->seg_len[s]};
        for (int k = 0; k < np; k++) {
            if (skip >= parts[k].iov_len) {
                skip -= parts[k].iov_len;
                continue;
            }
            iov[n].iov_base = (uint8_t *)parts[k].iov_base + skip;
            iov[n++].iov_len = parts[k].iov_len - skip;
            skip = 0;
        }
    }
    return n;
}

/* Account `sent` bytes: free the frames that are out. */
static void consume(conn *c, size_t sent)
{
    c->txoff += sent;
    while (c->qn) {
        txitem *it = &c->q[c->qhead];
        size_t len = PSI_HDR_SIZE + psi_msg_payload_len(&it->m->hdr);
        if (c->txoff < len) break;
        c->txoff -= len;
        c->qbytes -= len;
        psi_msg_free(it->m);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qn--;
    }
    if (!c->qn && c->qcap > TXQ_KEEP) { /* a burst is out: let its ring go */
        free(c->q);
        c->q = NULL;
        c->qcap = c->qhead = 0;
    }
}

/* Sealed sending: frames' bytes, PSI_SEAL_CHUNK at a time, become records. */
static int seal_flush(conn *c)
{
    while (c->state == CS_OPEN && (c->coff < c->clen || c->qn)) {
        if (c->coff == c->clen) {
            struct iovec iov[MAX_IOV];
            int n = fill_iov(c, iov);
            size_t got = 0;
            for (int i = 0; i < n && got < PSI_SEAL_CHUNK; i++) {
                size_t k = PSI_MIN(iov[i].iov_len, PSI_SEAL_CHUNK - got);
                memcpy(c->plain + got, iov[i].iov_base, k);
                got += k;
            }
            c->clen = psi_seal_record(c->seal, c->plain, got, c->cbuf);
            c->coff = 0;
            consume(c, got);
        }
        ssize_t w = send(c->fd, c->cbuf + c->coff, c->clen - c->coff, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            arm(c, EPOLLIN | EPOLLOUT);
            return PS_OK;
        }
        if (w < 0) return PS_ERR_PEER;
        c->coff += (size_t)w;
    }
    arm(c, EPOLLIN);
    return PS_OK;
}

/* Write what can be written without blocking.  0, or a ps_err after which
 * the caller fails the connection. */
static int conn_flush(conn *c)
{
    while (c->hsout_off < c->hsout_len) {
        ssize_t w = send(c->fd, c->hsout + c->hsout_off, c->hsout_len - c->hsout_off,
                         MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            arm(c, EPOLLIN | EPOLLOUT);
            return PS_OK;
        }
        if (w < 0) return PS_ERR_PEER;
        c->hsout_off += (size_t)w;
    }
    if (c->seal) return seal_flush(c);
    while (c->state == CS_OPEN && c->qn) {
        struct iovec iov[MAX_IOV];
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)fill_iov(c, iov)};
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            arm(c, EPOLLIN | EPOLLOUT);
            return PS_OK;
        }
        if (w < 0) return PS_ERR_PEER;
        consume(c, (size_t)w);
    }
    arm(c, EPOLLIN);
    return PS_OK;
}

/* ---- the handshake (I/O thread) ---------------------------------------------- */

static void hs_send(conn *c, const uint8_t *buf, size_t len)
{
    memcpy(c->hsout, buf, len);
    c->hsout_len = len;
    c->hsout_off = 0;
}

/* PS_ENCRYPT=1: set up sealing once the handshake is done.  Outbound: the
 * stream header follows the PROOF in hsout.  0 or PS_ERR_NOMEM. */
static int seal_start(conn *c)
{
    const psi_gate_key *key = &c->t->cfg.key;
    uint8_t sk[32];
    if (!key->encrypt) return PS_OK;
    size_t cap = 2 * PSI_SEAL_REC_MAX; /* seal_read's; sending needs half of it */
    if (!(c->seal = malloc(sizeof(*c->seal))) || !(c->cbuf = malloc(cap)) ||
        !(c->plain = malloc(PSI_SEAL_CHUNK)))
        return PS_ERR_NOMEM;
    psi_gate_session_key(&c->hs, key, c->peer != NULL, sk);
    if (c->peer) {
        psi_seal_init_push(c->seal, sk, c->hsout + c->hsout_len);
        c->hsout_len += PSI_SEAL_HDR;
    } else {
        c->seal_hdr = 1;
        memcpy(c->plain, sk, sizeof(sk)); /* kept until the header comes */
    }
    sodium_memzero(sk, sizeof(sk));
    return PS_OK;
}

/* A handshake message of hsin_want bytes is complete: act on it. */
static int hs_step(conn *c)
{
    tcp_transport *t = c->t;
    const psi_gate_key *key = &t->cfg.key;
    uint8_t out[PSI_GATE_REPLY];
    int rv;
    c->hsin_len = 0;
    if (c->peer) { /* connector: the REPLY came */
        if ((rv = psi_gate_proof(&c->hs, key, c->hsin, out)) != 0) {
            conn_fail(c, rv, rv == PS_ERR_AUTH
                                 ? "refused: it does not know this cluster's secret "
                                   "(PS_SECRET / PS_SECRET_FILE differ, or PS_ENCRYPT)"
                                 : "refused: not a libps node (bad handshake)");
            return rv;
        }
        hs_send(c, out, PSI_GATE_PROOF);
        if (seal_start(c) != 0) {
            conn_fail(c, PS_ERR_NOMEM, "out of memory");
            return PS_ERR_NOMEM;
        }
        set_open(c);
        c->peer->warned = 0;
        c->peer->ever = 1;
        return PS_OK;
    }
    if (c->hsin_want == PSI_GATE_HELLO) { /* acceptor: the HELLO came */
        if (psi_gate_reply(&c->hs, key, c->hsin, out) != 0) {
            log_refusal(t, c, "not a libps handshake");
            conn_free(c);
            return PS_ERR_PROTO;
        }
        hs_send(c, out, PSI_GATE_REPLY);
        c->hsin_want = PSI_GATE_PROOF;
        return PS_OK;
    }
    if (psi_gate_check(&c->hs, key, c->hsin) != 0) { /* acceptor: the PROOF came */
        log_refusal(t, c, key->encrypt ? "wrong cluster secret, or PS_ENCRYPT differs"
                                        : "wrong cluster secret (PS_SECRET / PS_SECRET_FILE)");
        conn_free(c);
        return PS_ERR_AUTH;
    }
    if (seal_start(c) != 0) {
        conn_free(c);
        return PS_ERR_NOMEM;
    }
    set_open(c);
    return PS_OK;
}

/* Read handshake bytes, never more than the step wants.  0: go on (the
 * connection may now be open); else the connection is gone. */
static int hs_read(conn *c)
{
    while (c->state == CS_HANDSHAKE) {
        ssize_t r = recv(c->fd, c->hsin + c->hsin_len, c->hsin_want - c->hsin_len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return PS_OK;
        if (r <= 0) {
            if (c->peer)
                conn_fail(c, PS_ERR_PEER, r == 0 ? "closed during the handshake (wrong cluster "
                                                   "secret on the other side?)"
                                                 : strerror(errno));
            else {
                /* hung up right after our reply: our proof did not convince it */
                if (c->hsin_want == PSI_GATE_PROOF && c->hsin_len == 0)
                    log_refusal(c->t, c, "it hung up on our proof: it does not share the "
                                         "cluster secret (PS_SECRET / PS_SECRET_FILE)");
                conn_free(c);
            }
            return PS_ERR_PEER;
        }
        c->hsin_len += (size_t)r;
        if (c->hsin_len == c->hsin_want) {
            int rv = hs_step(c);
            if (rv != 0) return rv;
            if (conn_flush(c) != 0) {
                conn_fail(c, PS_ERR_PEER, "write failed during the handshake");
                return PS_ERR_PEER;
            }
        }
    }
    return PS_OK;
}

/* ---- receiving frames (I/O thread) -------------------------------------------- */

static void deliver(tcp_transport *t, psi_msg *m)
{
    if (t->base.cbs.on_receive) t->base.cbs.on_receive(t->base.cbs.arg, m);
    else psi_msg_free(m);
}

/* A message whose payload the layer above asked to have read into its own
 * memory (transport.h, place), or NULL: then it gets a block. */
static psi_msg *placed(tcp_transport *t, const psi_hdr *h, uint8_t **dst)
{
    psi_place pl = {0};
    uint64_t len = h->seg_len[PSI_SEG_VALS];
    if (!t->base.cbs.place || h->type != PSI_MSG_DATA || !(h->flags & PSI_F_RESPONSE) ||
        len < PSI_NET_PLACE_MIN || psi_msg_payload_len(h) != len ||
        !t->base.cbs.place(t->base.cbs.arg, h, &pl))
        return NULL;
    psi_msg *m = psi_msg_new((psi_msg_type)h->type);
    if (!m) {
        pl.release(pl.arg);
        return NULL;
    }
    m->hdr = *h;
    m->seg[PSI_SEG_VALS] = pl.dst;
    m->borrowed = (1u << PSI_NSEG) - 1;
    m->on_free = pl.release;
    m->on_free_arg = pl.arg;
    *dst = pl.dst;
    return m;
}

/* Parse complete headers and payload bytes out of rbuf.  0, or a ps_err
 * (invalid frame, no memory) after which the connection must close. */
static int parse(conn *c)
{
    tcp_transport *t = c->t;
    for (;;) {
        size_t avail = c->rlen - c->rpos;
        if (c->rmsg) {
            size_t n = (size_t)PSI_MIN((uint64_t)avail, c->rleft);
            if (n) { /* rdst is NULL for a header-only message */
                memcpy(c->rdst, c->rbuf + c->rpos, n);
                c->rpos += n;
                c->rdst += n;
                c->rleft -= n;
            }
            if (c->rleft) return PS_OK;
            psi_msg *m = c->rmsg;
            c->rmsg = NULL;
            deliver(t, m);
            continue;
        }
        if (avail < PSI_HDR_SIZE) return PS_OK;
        psi_hdr h;
        int rv = psi_hdr_decode(c->rbuf + c->rpos, PSI_HDR_SIZE, t->cfg.max_payload, &h);
        if (rv != 0) {
            t->dropped++;
            PSI_WARN("invalid frame from %s (%s): closing the connection", c->name,
                     ps_strerror(rv));
            return rv;
        }
        c->rpos += PSI_HDR_SIZE;
        uint8_t *block;
        if ((c->rmsg = placed(t, &h, &block))) {
            c->rdst = block;
            c->rleft = psi_msg_payload_len(&h);
            continue;
        }
        if (!(c->rmsg = psi_net_msg_alloc(&h, &block))) {
            PSI_ERROR("out of memory receiving %llu bytes from %s",
                      (unsigned long long)psi_msg_payload_len(&h), c->name);
            return PS_ERR_NOMEM;
        }
        c->rdst = block;
        c->rleft = psi_msg_payload_len(&h);
    }
}

/* Hand n plaintext bytes to the frame parser.  0 or its error. */
static int feed(conn *c, const uint8_t *data, size_t n)
{
    while (n) {
        if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
        else if (c->rpos) { /* parse leaves less than a header */
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        size_t m = PSI_MIN(n, RBUF_SIZE - c->rlen);
        memcpy(c->rbuf + c->rlen, data, m);
        c->rlen += m;
        data += m;
        n -= m;
        int rv = parse(c);
        if (rv != 0) return rv;
    }
    return PS_OK;
}

/* Open the complete records in cbuf and parse their plaintext.  0, or a
 * ps_err after which the connection must close. */
static int open_records(conn *c)
{
    size_t pos = 0;
    if (c->seal_hdr) {
        if (c->clen < PSI_SEAL_HDR) return PS_OK;
        if (psi_seal_init_pull(c->seal, c->plain, c->cbuf) != 0) return PS_ERR_PROTO;
        sodium_memzero(c->plain, 32);
        c->seal_hdr = 0;
        pos = PSI_SEAL_HDR;
    }
    for (;;) {
        if (c->clen - pos < 4) break;
        size_t len = psi_seal_rec_len(c->cbuf + pos), n;
        if (!len) return PS_ERR_PROTO;
        if (c->clen - pos < 4 + len) break;
        if (psi_seal_open(c->seal, c->cbuf + pos + 4, len, c->plain, &n) != 0) return PS_ERR_PROTO;
        pos += 4 + len;
        int rv = feed(c, c->plain, n);
        if (rv != 0) return rv;
    }
    memmove(c->cbuf, c->cbuf + pos, c->clen - pos);
    c->clen -= pos;
    return PS_OK;
}

/* Sealed receiving: read records, open them, parse the frames inside. */
static void seal_read(conn *c)
{
    size_t budget = READ_BUDGET;
    while (budget) {
        ssize_t r = recv(c->fd, c->cbuf + c->clen, 2 * PSI_SEAL_REC_MAX - c->clen, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return;
        if (r <= 0) {
            conn_fail(c, PS_ERR_PEER, r == 0 ? "closed by the peer" : strerror(errno));
            return;
        }
        c->clen += (size_t)r;
        budget -= PSI_MIN((size_t)r, budget);
        if (open_records(c) != 0) {
            PSI_WARN("%s: a sealed record failed to open or to parse: closing the connection",
                     c->name);
            conn_fail(c, PS_ERR_PROTO, "sent a bad sealed record");
            return;
        }
    }
}

/* 1 when c has a receive buffer and bytes to put in it; 0 when there is
 * nothing to read yet, or the connection ended (then it is gone).  The
 * buffer is made when the first byte after the handshake is there, so an
 * outbound connection, which carries frames only away from here and reads
 * nothing but its end, never has one. */
static int rbuf_ready(conn *c)
{
    uint8_t b;
    if (c->rbuf) return 1;
    ssize_t r = recv(c->fd, &b, 1, MSG_PEEK);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) return 0; /* epoll calls again */
    if (r <= 0) {
        conn_fail(c, PS_ERR_PEER, r == 0 ? "closed by the peer" : strerror(errno));
        return 0;
    }
    if (!(c->rbuf = rbuf_new())) {
        conn_fail(c, PS_ERR_NOMEM, "out of memory for its receive buffer");
        return 0;
    }
    return 1;
}

/* Read and parse what the socket has, up to READ_BUDGET bytes. */
static void conn_read(conn *c)
{
    size_t budget = READ_BUDGET;
    if (!rbuf_ready(c)) return;
    if (c->seal) {
        seal_read(c);
        return;
    }
    while (budget) {
        ssize_t r;
        if (c->rmsg && c->rpos == c->rlen && c->rleft >= RBUF_SIZE) {
            r = recv(c->fd, c->rdst, (size_t)PSI_MIN(c->rleft, (uint64_t)budget), 0);
            if (r > 0) {
                c->rdst += r;
                c->rleft -= (uint64_t)r;
                if (!c->rleft) {
                    psi_msg *m = c->rmsg;
                    c->rmsg = NULL;
                    deliver(c->t, m);
                }
            }
        } else {
            if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
            else if (c->rpos > RBUF_SIZE / 2) {
                memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
                c->rlen -= c->rpos;
                c->rpos = 0;
            }
            r = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, 0);
            if (r > 0) {
                c->rlen += (size_t)r;
                if (parse(c) != 0) {
                    conn_fail(c, PS_ERR_PROTO, "sent an invalid frame");
                    return;
                }
            }
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno == EAGAIN) return;
        if (r <= 0) {
            conn_fail(c, PS_ERR_PEER, r == 0 ? "closed by the peer" : strerror(errno));
            return;
        }
        budget -= PSI_MIN((size_t)r, budget);
    }
}

/* ---- outbound (I/O thread) --------------------------------------------------- */

/* The non-blocking connect finished (or failed): start the handshake. */
static void connected(conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err) {
        conn_fail(c, PS_ERR_PEER, strerror(err));
        return;
    }
    uint8_t hello[PSI_GATE_HELLO];
    psi_gate_hello(&c->hs, hello);
    hs_send(c, hello, sizeof(hello));
    c->state = CS_HANDSHAKE;
    c->hsin_want = PSI_GATE_REPLY;
    if (conn_flush(c) != 0) conn_fail(c, PS_ERR_PEER, "write failed during the handshake");
}

static int peer_connect(tcp_transport *t, tcp_peer *p)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        PSI_WARN("cannot connect to node %u at %s: socket: %s", p->id, p->addr, strerror(errno));
        return PS_ERR_SYS;
    }
    set_nodelay(fd);
    if (connect(fd, (struct sockaddr *)&p->sa, sizeof(p->sa)) != 0 && errno != EINPROGRESS) {
        if (!p->warned)
            psi_log(p->ever ? PSI_LOG_WARN : PSI_LOG_INFO, "cannot connect to node %u at %s: %s",
                    p->id, p->addr, strerror(errno));
        p->warned = 1;
        close(fd);
        return PS_ERR_PEER;
    }
    conn *c = conn_new(t, fd, p);
    if (!c) {
        close(fd);
        return PS_ERR_NOMEM;
    }
    snprintf(c->name, sizeof(c->name), "node %u at %s", p->id, p->addr);
    c->state = CS_CONNECTING;
    arm(c, EPOLLOUT);
    p->c = c;
    return PS_OK;
}

static void do_send(tcp_transport *t, uint32_t id, psi_msg *m)
{
    tcp_peer *p = psi_idmap_get(&t->peers, id);
    if (!p || !p->known) {
        PSI_DEBUG("send to unknown node %u dropped", id);
        psi_msg_free(m);
        return;
    }
    if (!p->c) {
        int rv = peer_connect(t, p);
        if (rv != 0) {
            psi_msg_free(m);
            if (t->base.cbs.on_peer_failure) t->base.cbs.on_peer_failure(t->base.cbs.arg, id, rv);
            return;
        }
    }
    conn *c = p->c;
    if (conn_push(c, m) != 0) {
        psi_msg_free(m);
        return;
    }
    if (c->state == CS_OPEN && c->qn == 1 && conn_flush(c) != 0)
        conn_fail(c, PS_ERR_PEER, strerror(errno));
}

static void drop_conn(tcp_peer *p)
{
    if (p->c) conn_free(p->c);
}

static void do_connect(tcp_transport *t, tcp_op *op)
{
    tcp_peer *p = psi_idmap_get(&t->peers, op->peer);
    if (!p) {
        if (!(p = calloc(1, sizeof(*p)))) return;
        p->id = op->peer;
        if (psi_idmap_put(&t->peers, p->id, p) != 0) {
            free(p);
            return;
        }
    }
    if (p->known && strcmp(p->addr, op->addr) == 0) return;
    drop_conn(p);
    p->known = 1;
    p->sa = op->sa;
    snprintf(p->addr, sizeof(p->addr), "%s", op->addr);
}

static void do_disconnect(tcp_transport *t, uint32_t id)
{
    tcp_peer *p = psi_idmap_get(&t->peers, id);
    if (!p) return;
    p->known = 0;
    drop_conn(p);
}

/* ---- inbound (I/O thread) ------------------------------------------------------ */

/* Close the oldest unproven inbound connection (the table is full). */
static void evict_oldest_pending(tcp_transport *t)
{
    for (conn *c = t->conns; c; c = c->next)
        if (!c->peer && c->state != CS_OPEN) {
            log_refusal(t, c, "too many unauthenticated connections; closed the oldest");
            conn_free(c);
            return;
        }
}

static void on_accept(tcp_transport *t)
{
    for (int i = 0; i < 64; i++) {
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);
        int fd = accept4(t->listen_fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && errno == EINTR) continue;
        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && t->spare_fd >= 0) {
            /* Out of descriptors: accept with the spare and close at once,
             * or the listener would stay readable and spin. */
            close(t->spare_fd);
            fd = accept(t->listen_fd, NULL, NULL);
            if (fd >= 0) close(fd);
            t->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            PSI_WARN("out of file descriptors: refused a connection");
            return;
        }
        if (fd < 0) return; /* EAGAIN, or a connection reset before accept */
        if (t->stop) {
            close(fd);
            continue;
        }
        if (t->npending >= MAX_PENDING) evict_oldest_pending(t);
        set_nodelay(fd);
        conn *c = conn_new(t, fd, NULL);
        if (!c) {
            close(fd);
            continue;
        }
        fmt_sa(&sa, c->name, sizeof(c->name));
        c->state = CS_HANDSHAKE;
        c->hsin_want = PSI_GATE_HELLO;
    }
}

/* ---- ops and the loop (I/O thread) -------------------------------------------- */

static void run_op(tcp_transport *t, tcp_op *op)
{
    switch (op->kind) {
    case OP_CONNECT: do_connect(t, op); break;
    case OP_SEND: do_send(t, op->peer, op->msg); break;
    case OP_DISCONNECT: do_disconnect(t, op->peer); break;
    case OP_CLOSE:
        t->stop = 1;
        t->flush_deadline_ms = psi_now_ms() + op->flush_ms;
        if (t->listen_fd >= 0) {
            epoll_ctl(t->epoll_fd, EPOLL_CTL_DEL, t->listen_fd, NULL);
            close(t->listen_fd);
            t->listen_fd = -1;
        }
        break;
    }
    free(op);
}

static int drain_ops(tcp_transport *t)
{
    int any = 0;
    for (;;) {
        pthread_mutex_lock(&t->lock);
        tcp_op *op = t->ops_head;
        t->ops_head = t->ops_tail = NULL;
        pthread_mutex_unlock(&t->lock);
        if (!op) return any;
        any = 1;
        while (op) {
            tcp_op *next = op->next;
            run_op(t, op);
            op = next;
        }
    }
}

static void on_event(tcp_transport *t, conn *c, uint32_t ev)
{
    (void)t;
    if (c->state == CS_CONNECTING) {
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) connected(c);
        return;
    }
    if (ev & EPOLLOUT) {
        if (conn_flush(c) != 0) {
            conn_fail(c, PS_ERR_PEER, strerror(errno));
            return;
        }
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        if (c->state == CS_HANDSHAKE) {
            if (hs_read(c) != 0 || c->state != CS_OPEN) return;
        }
        conn_read(c);
    }
}

/* Close connections whose handshake ran past its deadline. */
static void sweep(tcp_transport *t)
{
    uint64_t now = psi_now_ms();
    for (conn *c = t->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CS_OPEN || now < c->deadline_ms) continue;
        if (c->peer) conn_fail(c, PS_ERR_TIMEOUT, "no handshake within the timeout "
                                                  "(PS_HANDSHAKE_TIMEOUT_MS)");
        else {
            PSI_DEBUG("closed %s: no handshake within %llu ms", c->name,
                      (unsigned long long)t->cfg.handshake_ms);
            conn_free(c);
        }
    }
}

/* One pass: wait (at most timeout_ms) and handle what came.  1 if anything did. */
static int run_once(tcp_transport *t, int timeout_ms)
{
    struct epoll_event ev[64];
    if (t->nhandshake && (timeout_ms < 0 || timeout_ms > SWEEP_MS)) timeout_ms = SWEEP_MS;
    if (t->drained) { /* the last pass left nothing ready: caught up as of now */
        atomic_store(&t->mark_ms, psi_now_ms());
        atomic_store(&t->waiting, 1);
    }
    int n = epoll_wait(t->epoll_fd, ev, 64, timeout_ms);
    atomic_store(&t->waiting, 0);
    t->drained = n < (int)PSI_ARRAY_LEN(ev);
    int busy = n > 0;
    for (int i = 0; i < n; i++) {
        void *tag = ev[i].data.ptr;
        if (tag == &ev_wake) {
            uint64_t v;
            ssize_t r = read(t->wake_fd, &v, sizeof(v));
            (void)r;
        } else if (tag == &ev_listen) {
            if (t->listen_fd >= 0) on_accept(t);
        } else if (!((conn *)tag)->dead) {
            on_event(t, tag, ev[i].events);
        }
    }
    busy |= drain_ops(t);
    if (t->nhandshake) sweep(t);
    bury(t);
    return busy;
}

static int all_flushed(const tcp_transport *t)
{
    for (const conn *c = t->conns; c; c = c->next)
        if (c->peer && (c->qn || c->hsout_off < c->hsout_len || c->coff < c->clen)) return 0;
    return 1;
}

static void *io_thread(void *arg)
{
    tcp_transport *t = arg;
    uint64_t poll_until = 0;
    psi_thread_mark_io();
    for (;;) {
        uint64_t now_ns = psi_now_ns();
        int timeout = t->stop ? 5 : now_ns < poll_until ? 0 : -1;
        if (run_once(t, timeout) && t->cfg.poll_us)
            poll_until = psi_now_ns() + t->cfg.poll_us * 1000;
        if (t->stop && (all_flushed(t) || psi_now_ms() >= t->flush_deadline_ms)) break;
    }
    return NULL;
}

/* ---- the ops table (any thread) --------------------------------------------------- */

static int enqueue(tcp_transport *t, tcp_op *op)
{
    int rv = PS_OK;
    pthread_mutex_lock(&t->lock);
    static const psi_net_op kinds[] = {[OP_CONNECT] = PSI_NET_CONNECT, [OP_SEND] = PSI_NET_SEND,
                                       [OP_DISCONNECT] = PSI_NET_DISCONNECT, [OP_CLOSE] = PSI_NET_OTHER};
    if (t->closing && op->kind != OP_CLOSE) rv = PS_ERR_CLOSED;
    else rv = psi_net_track_known(&t->known, kinds[op->kind], op->peer);
    if (rv != 0) {
        pthread_mutex_unlock(&t->lock);
        psi_msg_free(op->msg);
        free(op);
        return rv;
    }
    op->next = NULL;
    if (t->ops_tail) t->ops_tail->next = op;
    else t->ops_head = op;
    t->ops_tail = op;
    pthread_mutex_unlock(&t->lock);
    /* The I/O thread drains its own ops before it sleeps: no wake-up. */
    if (!t->thread_started || !pthread_equal(pthread_self(), t->thread)) wake(t);
    return PS_OK;
}

static int is_wildcard(const struct sockaddr_in *sa) { return sa->sin_addr.s_addr == htonl(INADDR_ANY); }

static int tcp_listen(psi_transport *base, const char *host, int port, char *addr, size_t cap)
{
    tcp_transport *t = (tcp_transport *)base;
    char hp[300];
    struct sockaddr_in sa;
    snprintf(hp, sizeof(hp), "%s:%d", host, port);
    if (psi_net_resolve(hp, &sa) != 0) {
        PSI_ERROR("cannot listen on %s: the host does not resolve to an IPv4 address", hp);
        return PS_ERR_CONFIG;
    }
    if (is_wildcard(&sa)) {
        PSI_ERROR("cannot listen on %s: a wildcard address; give the address peers reach "
                  "this node at (PS_HOST)", hp);
        return PS_ERR_CONFIG;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) return PS_ERR_SYS;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 256) != 0) {
        PSI_ERROR("cannot listen on %s: %s", hp, strerror(errno));
        close(fd);
        return errno == EADDRNOTAVAIL ? PS_ERR_CONFIG : PS_ERR_SYS;
    }
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    snprintf(addr, cap, "%s:%d", host, ntohs(sa.sin_port));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ev_listen};
    pthread_mutex_lock(&t->lock);
    t->listen_fd = fd;
    epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
    pthread_mutex_unlock(&t->lock);
    return PS_OK;
}

static tcp_op *op_new(op_kind kind, uint32_t peer, psi_msg *m)
{
    tcp_op *op = calloc(1, sizeof(*op));
    if (!op) {
        psi_msg_free(m);
        return NULL;
    }
    op->kind = kind;
    op->peer = peer;
    op->msg = m;
    return op;
}

static int tcp_connect(psi_transport *base, uint32_t peer, const char *addr)
{
    tcp_op *op = op_new(OP_CONNECT, peer, NULL);
    if (!op) return PS_ERR_NOMEM;
    if (psi_net_resolve(addr, &op->sa) != 0) {
        PSI_WARN("node %u: cannot resolve %s", peer, addr);
        free(op);
        return PS_ERR_INVAL;
    }
    snprintf(op->addr, sizeof(op->addr), "%s", addr);
    return enqueue((tcp_transport *)base, op);
}

static int tcp_send(psi_transport *base, uint32_t peer, psi_msg *m)
{
    tcp_op *op = op_new(OP_SEND, peer, m);
    return op ? enqueue((tcp_transport *)base, op) : PS_ERR_NOMEM;
}

static int tcp_disconnect(psi_transport *base, uint32_t peer)
{
    tcp_op *op = op_new(OP_DISCONNECT, peer, NULL);
    return op ? enqueue((tcp_transport *)base, op) : PS_ERR_NOMEM;
}

static void teardown(tcp_transport *t)
{
    while (t->conns) conn_free(t->conns);
    bury(t);
    for (tcp_op *op = t->ops_head, *next; op; op = next) {
        next = op->next;
        psi_msg_free(op->msg);
        free(op);
    }
    for (size_t i = 0; i < t->peers.n; i++) free(t->peers.vals[i]);
    psi_idmap_free(&t->peers);
    psi_idmap_free(&t->known);
    if (t->listen_fd >= 0) close(t->listen_fd);
    if (t->spare_fd >= 0) close(t->spare_fd);
    close(t->epoll_fd);
    close(t->wake_fd);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static void tcp_close(psi_transport *base, uint64_t flush_ms)
{
    tcp_transport *t = (tcp_transport *)base;
    tcp_op *op = op_new(OP_CLOSE, 0, NULL);
    if (op) op->flush_ms = flush_ms;
    pthread_mutex_lock(&t->lock);
    t->closing = 1;
    pthread_mutex_unlock(&t->lock);
    if (op) enqueue(t, op);
    else t->stop = 1; /* no memory for the op: stop without flushing */
    wake(t);
    if (t->thread_started) pthread_join(t->thread, NULL);
    teardown(t);
}

static uint64_t tcp_read_mark(psi_transport *base, uint64_t now_ms)
{
    tcp_transport *t = (tcp_transport *)base;
    if (atomic_load(&t->waiting)) return now_ms;
    return PSI_MIN(now_ms, atomic_load(&t->mark_ms));
}

static const psi_transport_ops tcp_ops = {
    .read_mark = tcp_read_mark,
    .name = "tcp",
    .listen = tcp_listen,
    .connect = tcp_connect,
    .send = tcp_send,
    .disconnect = tcp_disconnect,
    .close = tcp_close,
};

/* Let this process hold as many sockets as its hard limit allows (a
 * server of a large cluster holds two per peer). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int psi_tcp_open(const psi_net_config *cfg, const psi_transport_cbs *cbs, psi_transport **out)
{
    tcp_transport *t = calloc(1, sizeof(*t));
    *out = NULL;
    if (!t) return PS_ERR_NOMEM;
    t->base.ops = &tcp_ops;
    t->base.cbs = *cbs;
    t->cfg = *cfg;
    if (!t->cfg.handshake_ms) t->cfg.handshake_ms = 5000;
    if (!t->cfg.max_payload) t->cfg.max_payload = PSI_DEFAULT_MAX_PAYLOAD;
    t->listen_fd = -1;
    pthread_mutex_init(&t->lock, NULL);
    raise_fd_limit();
    t->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    t->drained = 1;
    atomic_store(&t->mark_ms, psi_now_ms());
    t->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ev_wake};
    if (t->wake_fd < 0 || t->epoll_fd < 0 ||
        epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->wake_fd, &ev) != 0 ||
        pthread_create(&t->thread, NULL, io_thread, t) != 0) {
        PSI_ERROR("cannot start the TCP transport: %s", strerror(errno));
        if (t->wake_fd >= 0) close(t->wake_fd);
        if (t->epoll_fd >= 0) close(t->epoll_fd);
        if (t->spare_fd >= 0) close(t->spare_fd);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return PS_ERR_SYS;
    }
    t->thread_started = 1;
    *out = &t->base;
    return PS_OK;
}
