/*
 * transport.h -- the transport ops table: how libps moves messages between
 * nodes.  Everything above src/net talks to a psi_transport and never to UCX.
 *
 * Peers are named by node id.  A node first tells the transport where a peer
 * listens (connect), then sends to it by id; the connection is made lazily
 * by the transport's I/O thread.  Received messages arrive, validated and
 * decoded, through on_receive; a connection that fails (peer died, refused,
 * reset) is reported once through on_peer_failure, after which the next send
 * to that peer tries to connect again.
 *
 * Implementations: tcp.c (the default: frames over TCP connections that
 * prove the cluster secret first, gate.h), ucx.c (UCX active messages over
 * UCX's own listener: shared memory and RDMA, but its listener must not face
 * an untrusted network) and fault.c (a decorator that drops, duplicates,
 * delays, reorders and partitions the sends of any other transport, for
 * tests).
 *
 * Threads: callbacks run on the transport's I/O thread (the fault decorator
 * never calls them itself: its inner transport does); they must not block
 * for long and must not call close().
 */
#ifndef PSI_NET_TRANSPORT_H
#define PSI_NET_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>

#include "net/gate.h"
#include "util/idmap.h"
#include "wire/msg.h"

typedef struct psi_transport psi_transport;

/* A message whose segments lie in several places but all except the
 * largest add up to at most this many bytes travels with those in the
 * transport's own header, so the largest goes as one contiguous region
 * (zero-copy where the transport can: ucx.c).  Zero-copy pushes (kv) keep
 * their keys and aux under it. */
#define PSI_NET_INLINE_MAX 1024

/* Where a large answer's values may be received (the place callback). */
typedef struct psi_place {
    void *dst;                 /* the payload's bytes go here */
    void (*release)(void *arg); /* run once when the message is freed */
    void *arg;
} psi_place;

/* Answers with fewer value bytes are received into a block as usual. */
#define PSI_NET_PLACE_MIN (256u << 10)

typedef struct psi_transport_cbs {
    /* A validated message arrived.  The callee owns `m` (psi_msg_free). */
    void (*on_receive)(void *arg, psi_msg *m);
    /* Optional: for a DATA answer whose payload is one VALS segment of at
     * least PSI_NET_PLACE_MIN bytes, asked once its header is validated and
     * before any of its payload is read: return 1 and fill `out` to have the
     * payload read straight into out->dst (the message then borrows it and
     * runs out->release when it is freed: after on_receive's callee frees
     * it, or when the connection fails before the payload is complete);
     * return 0 for a block of its own.  Receive-side zero copy: a large
     * pull lands in the caller's array (kv/worker.c). */
    int (*place)(void *arg, const psi_hdr *h, psi_place *out);
    /* The connection to `peer` failed with `err` (a ps_err).  May repeat
     * after a reconnect fails again; never for a peer that was disconnected. */
    void (*on_peer_failure)(void *arg, uint32_t peer, int err);
    void *arg;
} psi_transport_cbs;

typedef struct psi_transport_ops {
    const char *name;
    /* Listen on host:port (0 = any free port).  Writes the bound "host:port"
     * into addr[cap].  Blocks until bound.  Once per transport. */
    int (*listen)(psi_transport *t, const char *host, int port, char *addr,
                  size_t cap);
    /* Record that `peer` listens at `addr` ("host:port").  Idempotent for the
     * same address; a new address closes the old connection.  Non-blocking. */
    int (*connect)(psi_transport *t, uint32_t peer, const char *addr);
    /* Queue `m` for `peer`.  Always takes ownership of `m` (freed even on
     * error).  Non-blocking, thread-safe.  Returns PS_ERR_NOTFOUND for a peer
     * never connected, PS_ERR_CLOSED after close; a later delivery failure
     * is reported through on_peer_failure, not here. */
    int (*send)(psi_transport *t, uint32_t peer, psi_msg *m);
    /* Forget `peer` and close its connection.  Idempotent. */
    int (*disconnect)(psi_transport *t, uint32_t peer);
    /* Flush queued sends for at most flush_ms, stop the I/O thread, free
     * everything including `t`.  No callback runs after it returns. */
    void (*close)(psi_transport *t, uint64_t flush_ms);
    /* Optional (NULL: `now_ms`): the latest moment up to which everything
     * that reached this transport has been handed to on_receive, given the
     * time now; it lags when the I/O thread is behind (busy, or not run by
     * the OS).  A failure detector judges silence only up to it, so that
     * it never blames a peer for messages still unread here.  Any thread. */
    uint64_t (*read_mark)(psi_transport *t, uint64_t now_ms);
} psi_transport_ops;


struct psi_transport {
    const psi_transport_ops *ops;
    psi_transport_cbs cbs;
};

/* t's read_mark, or now_ms when it has none. */
static inline uint64_t psi_transport_read_mark(psi_transport *t, uint64_t now_ms)
{
    return t && t->ops->read_mark ? t->ops->read_mark(t, now_ms) : now_ms;
}

/* Settings shared by every transport. */
typedef struct psi_net_config {
    uint64_t max_payload; /* drop received messages with a larger payload */
    uint64_t poll_us;     /* busy-poll this long after activity (0: sleep at once) */
    psi_gate_key key;     /* tcp: the cluster key every connection proves */
    uint64_t handshake_ms;/* tcp: an unproven connection is closed after this (0: 5000) */
} psi_net_config;

/* Open the TCP transport (tcp.c).  Returns 0 or a ps_err; *out set on success. */
int psi_tcp_open(const psi_net_config *cfg, const psi_transport_cbs *cbs,
                 psi_transport **out);
/* Receive buffers the TCP transports of this process hold now (one per
 * connection that has received a byte after its handshake); for tests. */
size_t psi_tcp_rbufs(void);
/* Open the UCX transport.  Returns 0 or a ps_err; *out set on success. */
int psi_ucx_open(const psi_net_config *cfg, const psi_transport_cbs *cbs,
                 psi_transport **out);

/*
 * A received message for a validated header: one block of the payload's
 * size (from psi_buf_alloc, freed with the message) holds every segment
 * back to back, so the payload lands with one copy or one read.  *block is
 * its start (NULL for an empty payload).  NULL on no memory.
 */
psi_msg *psi_net_msg_alloc(const psi_hdr *h, uint8_t **block);

/* The caller-side set of peers passed to connect() and not disconnected,
 * kept in step with each op under the transport's lock: a send to a peer
 * not in it fails at once with PS_ERR_NOTFOUND.  0 or a ps_err. */
typedef enum psi_net_op { PSI_NET_SEND, PSI_NET_CONNECT, PSI_NET_DISCONNECT, PSI_NET_OTHER } psi_net_op;
int psi_net_track_known(psi_idmap *known, psi_net_op op, uint32_t peer);
/* "host:port" to an IPv4 address (names resolved).  0 or PS_ERR_INVAL. */
int psi_net_resolve(const char *addr, struct sockaddr_in *sa);

/*
 * Wrap `inner` in the fault decorator configured by `spec`, a comma list of
 * key=value: drop=P, dup=P, delay=P (probability a message is held back),
 * delay_ms=MS (maximum hold, default 20), reorder=P (hold a message until
 * the next one to that peer has gone), seed=N, partition=A+B+... (node ids
 * cut off from all others: messages crossing the cut are dropped).  The
 * decorator takes ownership of `inner` on success (closes it on close); on
 * failure the caller keeps it and *out is NULL.  Returns 0, PS_ERR_INVAL for
 * a bad spec (logged with the offending item), PS_ERR_NOMEM or PS_ERR_SYS.
 * Counters are readable with psi_fault_stats_get.
 */
int psi_fault_open(psi_transport *inner, const char *spec, psi_transport **out);

typedef struct psi_fault_stats {
    uint64_t sent, dropped, duplicated, delayed, reordered;
} psi_fault_stats;
void psi_fault_stats_get(psi_transport *t, psi_fault_stats *out);

#endif /* PSI_NET_TRANSPORT_H */
