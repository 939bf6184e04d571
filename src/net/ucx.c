/*
 * ucx.c -- the production transport: UCX active messages over a listener.
 *
 * Design.  One UCP context and one worker per transport, in single-thread
 * mode: only the transport's I/O thread ever touches UCX.  Application
 * threads hand it work (listen, connect, send, disconnect, close) through a
 * mutex-protected op list and an eventfd; the I/O thread progresses the
 * worker, drains the op list, arms the worker and sleeps in epoll on both the
 * UCX event fd and the eventfd.  One hop per send, no busy polling.
 *
 * Each message is one active message: the 104-byte encoded header is the AM
 * header, the non-empty segments are the payload.  Segments adjacent in
 * memory go as one contiguous region (UCX picks eager or rendezvous; a
 * contiguous rendezvous send is zero-copy on the sender).  Segments in
 * several places would go as an iovec, which UCX 1.13 sends through its
 * bounce buffers, so when every segment but the largest is small (at most
 * PSI_NET_INLINE_MAX bytes together: a zero-copy push's keys and aux) those
 * ride in the AM header after the 104 bytes and the largest alone is the
 * payload; the receiver knows the layout from the header's length.  On
 * receive, the header is validated before anything is allocated, and the
 * payload lands in one block for all segments: eager payloads with one
 * copy, rendezvous payloads received straight into it.
 *
 * Connections: one outbound endpoint per peer id, made lazily on first send,
 * with peer error handling on.  Inbound endpoints (accepted from the
 * listener) only receive.  A failed outbound endpoint is closed, reported
 * once through on_peer_failure, and re-made on the next send.
 *
 * Never: call UCX from any thread but the I/O thread; block in a callback;
 * trust a length from the wire before checking it.
 *
 * Lock order: t->lock only (guards the op list and `closing`).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ucp/api/ucp.h>

#include "net/transport.h"
#include "util/log.h"
#include "util/util.h"

#define AM_ID 7

typedef enum op_kind { OP_LISTEN, OP_CONNECT, OP_SEND, OP_DISCONNECT, OP_CLOSE } op_kind;

typedef struct ucx_op {
    struct ucx_op *next;
    op_kind kind;
    uint32_t peer;
    psi_msg *msg;
    struct sockaddr_storage sa;
    char addr[64];
    int *result; /* OP_LISTEN: where to write the status; signalled by done */
} ucx_op;

typedef struct ucx_peer {
    uint32_t id;
    int known;               /* connect() was called and not disconnected */
    char addr[64];
    struct sockaddr_storage sa;
    ucp_ep_h ep;             /* NULL until first send, or after failure */
    struct ucx_transport *t;
    int connecting;          /* ep made, wire-up flush not yet complete */
    uint64_t gen;            /* bumped per endpoint made, to spot stale flushes */
    psi_msg **held;          /* sends queued while connecting, in order */
    size_t nheld, capheld;
} ucx_peer;

/* The wire-up flush of one endpoint. */
typedef struct connect_ctx {
    struct ucx_peer *p;
    uint64_t gen;
} connect_ctx;

typedef struct inbound_ep {
    struct inbound_ep *next;
    ucp_ep_h ep;
    struct ucx_transport *t;
} inbound_ep;

/* One in-flight send: the encoded header and iovec must live until done. */
typedef struct send_ctx {
    psi_msg *msg;
    uint8_t hdr[PSI_HDR_SIZE + PSI_NET_INLINE_MAX]; /* and the inlined segments */
    ucp_dt_iov_t iov[PSI_NSEG];
    struct ucx_transport *t;
} send_ctx;

/* One in-flight rendezvous receive. */
typedef struct recv_ctx {
    psi_msg *msg;
    struct ucx_transport *t;
} recv_ctx;

typedef struct ucx_transport {
    psi_transport base;
    psi_net_config cfg;
    ucp_context_h ctx;
    ucp_worker_h worker;
    ucp_listener_h listener;
    int ucx_fd, wake_fd, epoll_fd;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t done;
    ucx_op *ops_head, *ops_tail;
    int closing;             /* set by close(); sends refused after */
    psi_idmap known;         /* ids passed to connect(), for send() (under lock) */
    /* I/O thread only: */
    ucx_peer **peers;        /* sorted by id */
    size_t npeers, cappeers;
    inbound_ep *inbound;
    long inflight;           /* sends + rendezvous receives outstanding */
    ucp_ep_h *zombies;       /* failed endpoints to close outside callbacks */
    size_t nzombies, capzombies;
    int stop;
    int closing_eps;         /* at stop: outbound endpoints closed in flush mode */
    void **close_reqs;       /* their close requests still in progress */
    size_t nclose_reqs;
    uint64_t flush_deadline_ms;
    char listen_addr[64];
    uint64_t dropped;        /* invalid messages received */
} ucx_transport;

static void wake(ucx_transport *t)
{
    uint64_t one = 1;
    ssize_t w = write(t->wake_fd, &one, sizeof(one));
    (void)w;
}

static int enqueue(ucx_transport *t, ucx_op *op)
{
    int rv = PS_OK;
    pthread_mutex_lock(&t->lock);
    static const psi_net_op kinds[] = {[OP_LISTEN] = PSI_NET_OTHER, [OP_CONNECT] = PSI_NET_CONNECT,
                                       [OP_SEND] = PSI_NET_SEND, [OP_DISCONNECT] = PSI_NET_DISCONNECT,
                                       [OP_CLOSE] = PSI_NET_OTHER};
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
    if (!pthread_equal(pthread_self(), t->thread)) wake(t);
    return PS_OK;
}

/* ---- peers (I/O thread) ---------------------------------------------------- */

/* Peers sorted by id, found by binary search (ids may be sparse). */
static ucx_peer *peer_get(ucx_transport *t, uint32_t id, int create)
{
    size_t lo = 0, hi = t->npeers;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->peers[mid]->id < id) lo = mid + 1;
        else hi = mid;
    }
    if (lo < t->npeers && t->peers[lo]->id == id) return t->peers[lo];
    if (!create) return NULL;
    if (t->npeers == t->cappeers) {
        size_t n = t->cappeers ? t->cappeers * 2 : 16;
        ucx_peer **p = realloc(t->peers, n * sizeof(*p));
        if (!p) return NULL;
        t->peers = p;
        t->cappeers = n;
    }
    ucx_peer *np = calloc(1, sizeof(*np));
    if (!np) return NULL;
    np->id = id;
    np->t = t;
    memmove(t->peers + lo + 1, t->peers + lo, (t->npeers - lo) * sizeof(*t->peers));
    t->peers[lo] = np;
    t->npeers++;
    return np;
}

static void ep_close(ucx_transport *t, ucp_ep_h ep)
{
    ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                             .flags = UCP_EP_CLOSE_FLAG_FORCE};
    void *req = ucp_ep_close_nbx(ep, &p);
    if (UCS_PTR_IS_PTR(req)) {
        while (ucp_request_check_status(req) == UCS_INPROGRESS)
            ucp_worker_progress(t->worker);
        ucp_request_free(req);
    }
}

/* Endpoints fail inside ucp_worker_progress, where progress must not be
 * called again: remember them and close them from the I/O loop. */
static void defer_close(ucx_transport *t, ucp_ep_h ep)
{
    if (t->nzombies == t->capzombies) {
        size_t n = t->capzombies ? t->capzombies * 2 : 8;
        ucp_ep_h *z = realloc(t->zombies, n * sizeof(*z));
        if (!z) return; /* leaks one endpoint until the worker is destroyed */
        t->zombies = z;
        t->capzombies = n;
    }
    t->zombies[t->nzombies++] = ep;
}

static void close_zombies(ucx_transport *t)
{
    while (t->nzombies) ep_close(t, t->zombies[--t->nzombies]);
}

static void drop_held(ucx_peer *p)
{
    for (size_t i = 0; i < p->nheld; i++) psi_msg_free(p->held[i]);
    p->nheld = 0;
    p->connecting = 0;
}

static void on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    ucx_peer *p = arg;
    ucx_transport *t = p->t;

    if (p->ep != ep) return; /* a stale endpoint already replaced */
    PSI_INFO("connection to node %u (%s) failed: %s", p->id, p->addr,
             ucs_status_string(status));
    p->ep = NULL;
    drop_held(p);
    defer_close(t, ep);
    if (p->known && t->base.cbs.on_peer_failure)
        t->base.cbs.on_peer_failure(t->base.cbs.arg, p->id, PS_ERR_PEER);
}

static void send_now(ucx_transport *t, ucx_peer *p, psi_msg *m);

static void on_connected(void *req, ucs_status_t status, void *user)
{
    connect_ctx *c = user;
    ucx_peer *p = c->p;
    ucx_transport *t = p->t;
    t->inflight--;
    if (p->gen == c->gen && p->connecting) {
        p->connecting = 0;
        if (status == UCS_OK) {
            for (size_t i = 0; i < p->nheld; i++) send_now(t, p, p->held[i]);
            p->nheld = 0;
        } else drop_held(p); /* the error handler reports it */
    }
    free(c);
    ucp_request_free(req);
}

static int peer_connect(ucx_transport *t, ucx_peer *p)
{
    ucp_ep_params_t ep = {
        .field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
        .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
        .sockaddr = {.addr = (struct sockaddr *)&p->sa, .addrlen = sizeof(struct sockaddr_in)},
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = on_ep_error, .arg = p},
    };
    ucs_status_t st = ucp_ep_create(t->worker, &ep, &p->ep);
    if (st != UCS_OK) {
        PSI_WARN("cannot connect to node %u at %s: %s", p->id, p->addr,
                 ucs_status_string(st));
        p->ep = NULL;
        return PS_ERR_PEER;
    }
    /* UCX reorders sends made during wire-up: hold them until a flush of
     * the new endpoint completes, then send them in order. */
    connect_ctx *c = malloc(sizeof(*c));
    if (!c) return PS_OK;
    c->p = p;
    c->gen = ++p->gen;
    ucp_request_param_t fp = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                              .cb.send = on_connected, .user_data = c};
    void *req = ucp_ep_flush_nbx(p->ep, &fp);
    if (UCS_PTR_IS_PTR(req)) {
        p->connecting = 1;
        t->inflight++;
    } else free(c);
    return PS_OK;
}

/* ---- sending (I/O thread) ---------------------------------------------------- */

static void send_done(void *req, ucs_status_t status, void *user)
{
    send_ctx *s = user;
    if (status != UCS_OK && status != UCS_ERR_CANCELED)
        PSI_DEBUG("send of %s to node %u failed: %s", psi_msg_type_name(s->msg->hdr.type),
                  s->msg->hdr.receiver, ucs_status_string(status));
    s->t->inflight--;
    psi_msg_free(s->msg);
    free(s);
    ucp_request_free(req);
}

static void do_send(ucx_transport *t, uint32_t peer, psi_msg *m)
{
    ucx_peer *p = peer_get(t, peer, 0);

    if (!p || !p->known) {
        PSI_DEBUG("send to unknown node %u dropped", peer);
        psi_msg_free(m);
        return;
    }
    if (!p->ep && peer_connect(t, p) != 0) {
        psi_msg_free(m);
        if (t->base.cbs.on_peer_failure) t->base.cbs.on_peer_failure(t->base.cbs.arg, peer, PS_ERR_PEER);
        return;
    }
    if (p->connecting) {
        if (p->nheld == p->capheld) {
            size_t n = p->capheld ? p->capheld * 2 : 16;
            psi_msg **h = realloc(p->held, n * sizeof(*h));
            if (!h) {
                psi_msg_free(m);
                return;
            }
            p->held = h;
            p->capheld = n;
        }
        p->held[p->nheld++] = m;
        return;
    }
    send_now(t, p, m);
}

/* The segment that goes alone as the payload when the others ride in the
 * AM header: the largest, the first of equal ones.  Both sides compute it
 * from the header. */
static int largest_seg(const psi_hdr *h)
{
    int big = 0;
    for (int i = 1; i < PSI_NSEG; i++)
        if (h->seg_len[i] > h->seg_len[big]) big = i;
    return big;
}

/* If every segment of `m` but the largest fits in PSI_NET_INLINE_MAX bytes,
 * copy them, in order, after the encoded header in s->hdr and return the
 * largest segment's index; else -1. */
static int inline_small(send_ctx *s, const psi_msg *m)
{
    const psi_hdr *h = &m->hdr;
    int big = largest_seg(h);
    uint64_t extra = psi_msg_payload_len(h) - h->seg_len[big];
    if (!extra || extra > PSI_NET_INLINE_MAX) return -1;
    uint8_t *p = s->hdr + PSI_HDR_SIZE;
    for (int i = 0; i < PSI_NSEG; i++) {
        if (i == big || !h->seg_len[i]) continue;
        memcpy(p, m->seg[i], h->seg_len[i]);
        p += h->seg_len[i];
    }
    return big;
}

static void send_now(ucx_transport *t, ucx_peer *p, psi_msg *m)
{
    uint32_t peer = p->id;
    send_ctx *s;
    if (!(s = calloc(1, sizeof(*s)))) {
        psi_msg_free(m);
        return;
    }
    s->msg = m;
    s->t = t;
    psi_hdr_encode(&m->hdr, s->hdr);
    size_t n = 0;
    for (int i = 0; i < PSI_NSEG; i++) {
        if (!m->hdr.seg_len[i]) continue;
        if (n && (uint8_t *)s->iov[n - 1].buffer + s->iov[n - 1].length == (uint8_t *)m->seg[i]) {
            s->iov[n - 1].length += m->hdr.seg_len[i]; /* adjacent in memory: one region */
            continue;
        }
        s->iov[n].buffer = m->seg[i];
        s->iov[n++].length = m->hdr.seg_len[i];
    }
    /* One region goes as a contiguous buffer; several either as the largest
     * segment with the others in the header, or as an iovec. */
    size_t hlen = PSI_HDR_SIZE;
    int big = n > 1 ? inline_small(s, m) : -1;
    if (big >= 0) {
        hlen += psi_msg_payload_len(&m->hdr) - m->hdr.seg_len[big];
        s->iov[0] = (ucp_dt_iov_t){m->seg[big], m->hdr.seg_len[big]};
        n = 1;
    }
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                        UCP_OP_ATTR_FIELD_DATATYPE,
        .cb.send = send_done,
        .user_data = s,
        .datatype = n > 1 ? ucp_dt_make_iov() : ucp_dt_make_contig(1),
    };
    /* A large push's head and fragments (src/kv/train.c; a fragment is at
     * most 1 MiB) go eagerly: the receiver gets a fragment in a small buffer
     * it reuses, and applies it from the cache; and a train arrives in
     * order (a rendezvous message completes after later eager ones). */
    if (m->hdr.flags & (PSI_F_FRAG | PSI_F_TRAIN)) {
        prm.op_attr_mask |= UCP_OP_ATTR_FIELD_FLAGS;
        prm.flags = UCP_AM_SEND_FLAG_EAGER;
    }
    const void *buf = n > 1 ? (const void *)s->iov : n == 1 ? s->iov[0].buffer : NULL;
    size_t count = n > 1 ? n : n == 1 ? s->iov[0].length : 0;
    void *req = ucp_am_send_nbx(p->ep, AM_ID, s->hdr, hlen, buf, count, &prm);
    if (UCS_PTR_IS_PTR(req)) {
        t->inflight++;
        return;
    }
    if (UCS_PTR_IS_ERR(req))
        PSI_DEBUG("send to node %u failed: %s", peer, ucs_status_string(UCS_PTR_STATUS(req)));
    psi_msg_free(m);
    free(s);
}

/* ---- receiving (I/O thread) ------------------------------------------------- */

static void deliver(ucx_transport *t, psi_msg *m)
{
    if (t->base.cbs.on_receive) t->base.cbs.on_receive(t->base.cbs.arg, m);
    else psi_msg_free(m);
}

static void recv_done(void *req, ucs_status_t status, size_t length, void *user)
{
    recv_ctx *r = user;
    r->t->inflight--;
    if (status == UCS_OK) deliver(r->t, r->msg);
    else {
        PSI_WARN("receive from node %u failed: %s", r->msg->hdr.sender, ucs_status_string(status));
        psi_msg_free(r->msg);
    }
    free(r);
    if (req) ucp_request_free(req);
}

/* Where the payload of a message with `extra` inlined header bytes goes in
 * its block: the largest segment's place, after copying the inlined
 * segments into theirs. */
static uint8_t *place_inlined(const psi_hdr *h, const uint8_t *extra, uint8_t *block)
{
    int big = largest_seg(h);
    uint8_t *dst = block, *payload = block;
    for (int i = 0; i < PSI_NSEG; i++) {
        if (i == big) payload = dst;
        else if (h->seg_len[i]) memcpy(dst, extra, h->seg_len[i]);
        if (i != big) extra += h->seg_len[i];
        dst += h->seg_len[i];
    }
    return payload;
}

/* Validate an AM header: the 104 bytes, then either nothing (the payload
 * is every segment) or the inlined segments (the payload is the largest). */
static int check_am(const ucx_transport *t, const void *header, size_t header_len,
                    size_t length, psi_hdr *h)
{
    if (header_len < PSI_HDR_SIZE || header_len > PSI_HDR_SIZE + PSI_NET_INLINE_MAX)
        return PS_ERR_PROTO;
    int rv = psi_hdr_decode(header, PSI_HDR_SIZE, t->cfg.max_payload, h);
    if (rv != 0) return rv;
    size_t extra = header_len - PSI_HDR_SIZE;
    if (psi_msg_payload_len(h) != extra + length) return PS_ERR_PROTO;
    if (extra && length != h->seg_len[largest_seg(h)]) return PS_ERR_PROTO;
    return PS_OK;
}

static ucs_status_t recv_rndv(ucx_transport *t, psi_msg *m, void *desc, uint8_t *block,
                              size_t length)
{
    recv_ctx *r = calloc(1, sizeof(*r));
    if (!r) {
        psi_msg_free(m);
        return UCS_ERR_NO_MEMORY;
    }
    r->msg = m;
    r->t = t;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
                        UCP_OP_ATTR_FIELD_DATATYPE,
        .cb.recv_am = recv_done,
        .user_data = r,
        .datatype = ucp_dt_make_contig(1),
    };
    t->inflight++;
    void *req = ucp_am_recv_data_nbx(t->worker, desc, block, length, &prm);
    if (UCS_PTR_IS_ERR(req)) recv_done(NULL, UCS_PTR_STATUS(req), 0, r);
    else if (req == NULL) recv_done(NULL, UCS_OK, 0, r);
    return UCS_OK;
}

static ucs_status_t on_am(void *arg, const void *header, size_t header_len, void *data,
                          size_t length, const ucp_am_recv_param_t *param)
{
    ucx_transport *t = arg;
    psi_hdr h;
    int rv;

    if ((rv = check_am(t, header, header_len, length, &h)) != 0) {
        t->dropped++;
        PSI_WARN("dropped an invalid message (%zu header bytes, %zu payload bytes): %s",
                 header_len, length, ps_strerror(rv));
        return UCS_OK;
    }
    uint8_t *block;
    psi_msg *m = psi_net_msg_alloc(&h, &block);
    if (!m) {
        PSI_ERROR("out of memory receiving %zu bytes from node %u", length, h.sender);
        return UCS_OK;
    }
    if (header_len > PSI_HDR_SIZE)
        block = place_inlined(&h, (const uint8_t *)header + PSI_HDR_SIZE, block);
    if (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) return recv_rndv(t, m, data, block, length);
    if (length) memcpy(block, data, length);
    deliver(t, m);
    return UCS_OK;
}

static void on_inbound_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
    inbound_ep *in = arg;
    ucx_transport *t = in->t;
    PSI_DEBUG("inbound connection closed: %s", ucs_status_string(status));
    for (inbound_ep **pp = &t->inbound; *pp; pp = &(*pp)->next)
        if (*pp == in) {
            *pp = in->next;
            break;
        }
    defer_close(t, ep);
    free(in);
}

static void on_conn_request(ucp_conn_request_h req, void *arg)
{
    ucx_transport *t = arg;
    inbound_ep *in = calloc(1, sizeof(*in));
    if (!in || t->stop) {
        free(in);
        ucp_listener_reject(t->listener, req);
        return;
    }
    in->t = t;
    ucp_ep_params_t ep = {
        .field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLER |
                      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
        .conn_request = req,
        .err_mode = UCP_ERR_HANDLING_MODE_PEER,
        .err_handler = {.cb = on_inbound_error, .arg = in},
    };
    if (ucp_ep_create(t->worker, &ep, &in->ep) != UCS_OK) {
        free(in);
        return;
    }
    in->next = t->inbound;
    t->inbound = in;
}

/* ---- ops (I/O thread) ------------------------------------------------------- */

static int do_listen(ucx_transport *t, ucx_op *op)
{
    ucp_listener_params_t lp = {
        .field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
        .sockaddr = {.addr = (struct sockaddr *)&op->sa, .addrlen = sizeof(struct sockaddr_in)},
        .conn_handler = {.cb = on_conn_request, .arg = t},
    };
    ucp_listener_attr_t attr = {.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR};
    ucs_status_t st = ucp_listener_create(t->worker, &lp, &t->listener);
    if (st != UCS_OK) {
        PSI_ERROR("cannot listen on %s: %s", op->addr, ucs_status_string(st));
        return PS_ERR_TRANSPORT;
    }
    if (ucp_listener_query(t->listener, &attr) != UCS_OK) return PS_ERR_TRANSPORT;
    char host[48];
    int port = ntohs(((struct sockaddr_in *)&attr.sockaddr)->sin_port);
    psi_split_hostport(op->addr, host, sizeof(host), &(int){0});
    snprintf(t->listen_addr, sizeof(t->listen_addr), "%s:%d", host, port);
    return PS_OK;
}

static void do_connect(ucx_transport *t, ucx_op *op)
{
    ucx_peer *p = peer_get(t, op->peer, 1);
    if (!p) return;
    if (p->known && strcmp(p->addr, op->addr) == 0) return;
    drop_held(p);
    if (p->ep) {
        ucp_ep_h ep = p->ep;
        p->ep = NULL;
        ep_close(t, ep);
    }
    p->known = 1;
    p->sa = op->sa;
    snprintf(p->addr, sizeof(p->addr), "%s", op->addr);
}

static void do_disconnect(ucx_transport *t, uint32_t id)
{
    ucx_peer *p = peer_get(t, id, 0);
    if (!p) return;
    p->known = 0;
    drop_held(p);
    if (p->ep) {
        ucp_ep_h ep = p->ep;
        p->ep = NULL;
        ep_close(t, ep);
    }
}

static void run_op(ucx_transport *t, ucx_op *op)
{
    switch (op->kind) {
    case OP_LISTEN: {
        /* ucp_listener_create takes UCX's worker lock, which UCX also holds
         * when it calls on_ep_error (-> po.lock): never under t->lock */
        int rv = do_listen(t, op);
        pthread_mutex_lock(&t->lock);
        *op->result = rv;
        pthread_cond_broadcast(&t->done);
        pthread_mutex_unlock(&t->lock);
        break;
    }
    case OP_CONNECT: do_connect(t, op); break;
    case OP_SEND: do_send(t, op->peer, op->msg); break;
    case OP_DISCONNECT: do_disconnect(t, op->peer); break;
    case OP_CLOSE:
        t->stop = 1;
        t->flush_deadline_ms = psi_now_ms() + op->peer; /* peer holds flush ms */
        break;
    }
    free(op);
}

/* Run queued ops until none is left (ops may queue more, e.g. a callback
 * that sends). */
static void drain_ops(ucx_transport *t)
{
    for (;;) {
        pthread_mutex_lock(&t->lock);
        ucx_op *op = t->ops_head;
        t->ops_head = t->ops_tail = NULL;
        pthread_mutex_unlock(&t->lock);
        if (!op) return;
        while (op) {
            ucx_op *next = op->next;
            run_op(t, op);
            op = next;
        }
    }
}

static void wait_events(ucx_transport *t, int timeout_ms)
{
    struct epoll_event ev[4];
    int n = epoll_wait(t->epoll_fd, ev, 4, timeout_ms);
    for (int i = 0; i < n; i++)
        if (ev[i].data.fd == t->wake_fd) {
            uint64_t v;
            ssize_t r = read(t->wake_fd, &v, sizeof(v));
            (void)r;
        }
}

static void on_ep_closed(void *req, ucs_status_t status, void *user)
{
    ucx_transport *t = user;
    for (size_t i = 0; i < t->nclose_reqs; i++)
        if (t->close_reqs[i] == req) {
            t->close_reqs[i] = t->close_reqs[--t->nclose_reqs];
            t->inflight--;
            break;
        }
    ucp_request_free(req);
}

/* At stop, once every send has completed locally, close the outbound
 * endpoints gracefully (flush mode: UCX delivers what it has buffered and
 * disconnects), counting each close as in flight.  Returns 1 when done. */
static int stop_flushed(ucx_transport *t)
{
    if (t->inflight != 0) return 0;
    if (!t->closing_eps) {
        t->closing_eps = 1;
        if (psi_now_ms() >= t->flush_deadline_ms) return 1; /* no time: force-close */
        t->close_reqs = calloc(t->npeers + 1, sizeof(void *));
        if (!t->close_reqs) return 1;
        for (size_t i = 0; i < t->npeers; i++) {
            ucx_peer *p = t->peers[i];
            if (!p->ep) continue;
            ucp_ep_h ep = p->ep;
            p->ep = NULL;
            ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
                                       .cb.send = on_ep_closed, .user_data = t};
            void *req = ucp_ep_close_nbx(ep, &prm);
            if (UCS_PTR_IS_PTR(req)) {
                t->close_reqs[t->nclose_reqs++] = req;
                t->inflight++;
            }
        }
    }
    return t->inflight == 0;
}

/* Progress and drain until idle; returns 1 if anything happened. */
static int run_once(ucx_transport *t)
{
    int busy = 0;
    while (ucp_worker_progress(t->worker)) busy = 1;
    close_zombies(t);
    pthread_mutex_lock(&t->lock);
    busy |= t->ops_head != NULL;
    pthread_mutex_unlock(&t->lock);
    drain_ops(t);
    return busy;
}

/* Keep polling for poll_us after the last activity before sleeping: a
 * reply that comes back within it costs no thread wake-up (PS_POLL_US). */
static void poll_window(ucx_transport *t)
{
    if (!t->cfg.poll_us || t->stop) return;
    uint64_t until = psi_now_ns() + t->cfg.poll_us * 1000;
    while (psi_now_ns() < until && !t->stop)
        if (run_once(t)) until = psi_now_ns() + t->cfg.poll_us * 1000;
}

static void *io_thread(void *arg)
{
    ucx_transport *t = arg;
    psi_thread_mark_io();
    for (;;) {
        if (run_once(t)) poll_window(t);
        if (t->stop && (stop_flushed(t) || psi_now_ms() >= t->flush_deadline_ms)) break;
        ucs_status_t st = ucp_worker_arm(t->worker);
        if (st == UCS_ERR_BUSY) continue;
        wait_events(t, t->stop ? 5 : -1);
    }
    return NULL;
}

/* Close every endpoint and drop what is still in flight (I/O thread gone). */
static void teardown(ucx_transport *t)
{
    /* Graceful closes still running at the deadline: let UCX finish them
     * without telling us (the worker destroy completes them). */
    while (t->nclose_reqs) ucp_request_free(t->close_reqs[--t->nclose_reqs]);
    free(t->close_reqs);
    for (size_t i = 0; i < t->npeers; i++) {
        ucx_peer *p = t->peers[i];
        if (p && p->ep) {
            ucp_ep_h ep = p->ep;
            p->ep = NULL;
            ep_close(t, ep);
        }
    }
    while (t->inbound) {
        inbound_ep *in = t->inbound;
        t->inbound = in->next;
        ep_close(t, in->ep);
        free(in);
    }
    if (t->listener) ucp_listener_destroy(t->listener);
    for (int i = 0; i < 100 && ucp_worker_progress(t->worker); i++) {
    }
    close_zombies(t);
    free(t->zombies);
    for (ucx_op *op = t->ops_head, *next; op; op = next) {
        next = op->next;
        psi_msg_free(op->msg);
        free(op);
    }
    for (size_t i = 0; i < t->npeers; i++) {
        drop_held(t->peers[i]);
        free(t->peers[i]->held);
        free(t->peers[i]);
    }
    free(t->peers);
    psi_idmap_free(&t->known);
}

/* ---- ops table ------------------------------------------------------------- */

static int ucx_listen(psi_transport *bt, const char *host, int port, char *addr, size_t cap)
{
    ucx_transport *t = (ucx_transport *)bt;
    ucx_op *op = calloc(1, sizeof(*op));
    int result = 1, rv;
    if (!op) return PS_ERR_NOMEM;
    op->kind = OP_LISTEN;
    op->result = &result;
    snprintf(op->addr, sizeof(op->addr), "%s:%d", host, port);
    if ((rv = psi_net_resolve(op->addr, (struct sockaddr_in *)&op->sa)) != 0) {
        PSI_ERROR("cannot resolve listen address %s", op->addr);
        free(op);
        return rv;
    }
    if ((rv = enqueue(t, op)) != 0) return rv;
    pthread_mutex_lock(&t->lock);
    while (result == 1) pthread_cond_wait(&t->done, &t->lock);
    pthread_mutex_unlock(&t->lock);
    if (result == 0) snprintf(addr, cap, "%s", t->listen_addr);
    return result;
}

static int ucx_connect(psi_transport *bt, uint32_t peer, const char *addr)
{
    ucx_op *op = calloc(1, sizeof(*op));
    int rv;
    if (!op) return PS_ERR_NOMEM;
    op->kind = OP_CONNECT;
    op->peer = peer;
    snprintf(op->addr, sizeof(op->addr), "%s", addr);
    if ((rv = psi_net_resolve(addr, (struct sockaddr_in *)&op->sa)) != 0) {
        PSI_ERROR("bad address for node %u: \"%s\"", peer, addr);
        free(op);
        return rv;
    }
    return enqueue((ucx_transport *)bt, op);
}

static int ucx_send(psi_transport *bt, uint32_t peer, psi_msg *m)
{
    ucx_op *op = calloc(1, sizeof(*op));
    if (!op) {
        psi_msg_free(m);
        return PS_ERR_NOMEM;
    }
    op->kind = OP_SEND;
    op->peer = peer;
    op->msg = m;
    return enqueue((ucx_transport *)bt, op);
}

static int ucx_disconnect(psi_transport *bt, uint32_t peer)
{
    ucx_op *op = calloc(1, sizeof(*op));
    if (!op) return PS_ERR_NOMEM;
    op->kind = OP_DISCONNECT;
    op->peer = peer;
    return enqueue((ucx_transport *)bt, op);
}

static void ucx_close(psi_transport *bt, uint64_t flush_ms)
{
    ucx_transport *t = (ucx_transport *)bt;
    ucx_op *op = calloc(1, sizeof(*op));

    pthread_mutex_lock(&t->lock);
    t->closing = 1;
    pthread_mutex_unlock(&t->lock);
    if (op) {
        op->kind = OP_CLOSE;
        op->peer = (uint32_t)PSI_MIN(flush_ms, 600000);
        enqueue(t, op);
    } else {
        t->stop = 1; /* degraded: the thread sees it on its next wake-up */
        wake(t);
    }
    pthread_join(t->thread, NULL);
    teardown(t);
    ucp_worker_destroy(t->worker);
    ucp_cleanup(t->ctx);
    close(t->epoll_fd);
    close(t->wake_fd);
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->done);
    if (t->dropped) PSI_INFO("ucx: %llu invalid messages were dropped", (unsigned long long)t->dropped);
    free(t);
}

static const psi_transport_ops ucx_ops = {
    .name = "ucx",
    .listen = ucx_listen,
    .connect = ucx_connect,
    .send = ucx_send,
    .disconnect = ucx_disconnect,
    .close = ucx_close,
};

/* ---- construction ------------------------------------------------------------ */

static int ucx_init_context(ucx_transport *t)
{
    ucp_params_t up = {
        .field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME,
        .features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP,
        .name = "libps",
    };
    ucp_worker_params_t wp = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
    };
    ucp_am_handler_param_t ap = {
        .field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                      UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS,
        .id = AM_ID,
        .cb = on_am,
        .arg = t,
        .flags = UCP_AM_FLAG_WHOLE_MSG,
    };
    ucs_status_t st;
    /* Peer error handling is on, and UCX 1.13 then leaves shared memory out
     * unless its transports are told they may report errors.  PS_SHM=1 lets
     * them (unless the user set UCX's own variables).  Not the default: with
     * it, a rendezvous send queued just before close() can be lost by the
     * receiver (tests/unit/test_ucx.c, test_close_flush_delivers_queued_sends). */
    const char *shm = getenv("PS_SHM");
    if (shm && strcmp(shm, "1") == 0) {
        setenv("UCX_POSIX_ERROR_HANDLING", "y", 0);
        setenv("UCX_SYSV_ERROR_HANDLING", "y", 0);
    }
    /* UCX 1.13's TCP PUT zero-copy (its rendezvous over TCP) can abort the
     * process on an internal assertion (tcp_ep.c:939, "PUT_TX_WAITING_ACK")
     * when the peer dies in the middle of one: seen when a test killed a
     * server while a worker's large pushes were in flight.  A parameter
     * server must survive a peer's death, so it is off unless the user sets
     * UCX_TCP_PUT_ENABLE (large transfers then use UCX's other rendezvous:
     * 10 MiB pushes on loopback measured 0-20% slower, in noisy runs). */
    setenv("UCX_TCP_PUT_ENABLE", "n", 0);
    /* TCP receives into segments of this size: 256 KiB (UCX's default is
     * 64) holds a whole fragment of a large push (src/kv/train.c sends
     * 248 KiB ones), which the server then applies from the cache: 10 MiB
     * pushes measured 25-50% faster than with 64 KiB segments and 56 KiB
     * fragments (bench/README.md). */
    setenv("UCX_TCP_RX_SEG_SIZE", "256k", 0);
    if ((st = ucp_init(&up, NULL, &t->ctx)) != UCS_OK) goto fail;
    if ((st = ucp_worker_create(t->ctx, &wp, &t->worker)) != UCS_OK) goto fail_ctx;
    if ((st = ucp_worker_set_am_recv_handler(t->worker, &ap)) != UCS_OK) goto fail_worker;
    if ((st = ucp_worker_get_efd(t->worker, &t->ucx_fd)) != UCS_OK) goto fail_worker;
    return PS_OK;
fail_worker:
    ucp_worker_destroy(t->worker);
fail_ctx:
    ucp_cleanup(t->ctx);
fail:
    PSI_ERROR("UCX initialisation failed: %s", ucs_status_string(st));
    return PS_ERR_TRANSPORT;
}

static int ucx_init_fds(ucx_transport *t)
{
    struct epoll_event ev = {.events = EPOLLIN};
    if ((t->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) return PS_ERR_SYS;
    if ((t->epoll_fd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        close(t->wake_fd);
        return PS_ERR_SYS;
    }
    ev.data.fd = t->wake_fd;
    epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->wake_fd, &ev);
    ev.data.fd = t->ucx_fd;
    epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->ucx_fd, &ev);
    return PS_OK;
}

int psi_ucx_open(const psi_net_config *cfg, const psi_transport_cbs *cbs, psi_transport **out)
{
    ucx_transport *t = calloc(1, sizeof(*t));
    int rv;
    if (!t) return PS_ERR_NOMEM;
    t->base.ops = &ucx_ops;
    t->base.cbs = *cbs;
    t->cfg = *cfg;
    if (!t->cfg.max_payload) t->cfg.max_payload = PSI_DEFAULT_MAX_PAYLOAD;
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->done, NULL);
    if ((rv = ucx_init_context(t)) != 0) goto fail;
    if ((rv = ucx_init_fds(t)) != 0) goto fail_ucx;
    if (pthread_create(&t->thread, NULL, io_thread, t) != 0) {
        rv = PS_ERR_SYS;
        goto fail_fds;
    }
    *out = &t->base;
    return PS_OK;
fail_fds:
    close(t->epoll_fd);
    close(t->wake_fd);
fail_ucx:
    ucp_worker_destroy(t->worker);
    ucp_cleanup(t->ctx);
fail:
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->done);
    free(t);
    return rv;
}
