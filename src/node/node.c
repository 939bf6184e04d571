/*
 * node.c -- the post office: this process's place in the cluster.  Reads
 * the configuration from the environment, opens the transport, joins (or, on
 * the scheduler, runs the membership state machine of sched.c), keeps the
 * current view, sends heartbeats, runs barriers and leaves cleanly.
 *
 * Threads: the transport's I/O thread delivers messages to on_receive; a
 * timer thread wakes every TICK_MS to resend unacknowledged control
 * messages, send heartbeats and (scheduler) detect silent nodes; application
 * threads call the public functions.  All state is guarded by po.lock; the
 * view callback and the DATA handler run without it.
 *
 * Reliability: control messages go through reliable.c (resent until ACKed,
 * duplicates dropped), so membership works over a transport that drops,
 * duplicates and reorders.  Heartbeats are fire-and-forget.
 *
 * Never: call the user's callbacks with po.lock held; block in on_receive.
 *
 * Lock order: hook_lock, then po.lock (flush_view_note); po.lock, then a
 * transport's own lock (do_send queues into it).  The transports call
 * on_receive and on_peer_failure without their lock held, and the beat
 * thread (beat.c) takes po.lock alone, so neither closes a cycle.
 *
 * Reports and the status page (report.h, status.h): every node's reporter
 * thread sends a REPORT about once a second, holding no lock but po.lock
 * inside psi_node_send; the scheduler stores them under po.lock, then the
 * store's leaf lock (report_store.h).  The page's HTTP thread takes a
 * snapshot: po.lock alone (psi_node_view), released, then the store's lock
 * alone, and renders with none.  Both threads are stopped (joined) with
 * po.lock NOT held, first thing in shutdown_all, so that neither waits on a
 * lock their stopper holds.
 */
#define _GNU_SOURCE /* sched_getaffinity */
#include <pthread.h>
#include <sched.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include "net/transport.h"
#include "node/beat.h"
#include "node/node.h"
#include "node/reliable.h"
#include "node/report.h"
#include "node/report_store.h"
#include "node/sched.h"
#include "node/status.h"
#include "util/log.h"
#include "util/util.h"

#define TICK_MS 5
#define LEAVE_WAIT_MS 1000
#define JOIN_HINT_MS 3000   /* no answer to a join this long: say what to check */
#define FLUSH_MS 500

enum { ST_IDLE, ST_STARTING, ST_RUNNING, ST_CLOSING, ST_CLOSED };

typedef struct po_config {
    ps_role role;
    long rank, nservers, nworkers;
    long hb_timeout_ms, connect_timeout_ms, max_msg, poll_us, handshake_ms, insecure;
    char sched_addr[PSI_ADDR_MAX];
    char host[PSI_ADDR_MAX];
    const char *fault;
    int ucx;                /* PS_TRANSPORT=ucx */
    psi_gate_key key;       /* from PS_SECRET / PS_SECRET_FILE */
    int status_on;          /* scheduler with PS_STATUS: serve the status page */
    psi_status_opts status;
} po_config;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int state;
    int fatal;              /* set when the cluster is lost: barriers fail */
    po_config cfg;
    uint32_t id;
    int rank;
    char my_addr[PSI_ADDR_MAX];
    psi_transport *tr;
    psi_transport *ctl;     /* a node's own path to the scheduler (tcp): every
                             * message to node 0 leaves through its own I/O
                             * thread, so heartbeats never wait behind data */
    psi_beat *beat;         /* heartbeats over UDP (beat.h): sent by the timer
                             * thread, read by the scheduler's beat thread */
    psi_rel *rel;
    psi_sched *sched;
    psi_view view;
    int join_status;        /* 1 pending, 0 accepted, <0 refused */
    int sched_unreachable;  /* joining: the scheduler's connection failed (logged once) */
    uint64_t sched_first_fail_ms;
    int evicted;            /* declared dead or cut off (kept after ps_finalize) */
    uint64_t join_ts, leave_ts;
    int leave_acked;
    int left_early;               /* ps_leave: out of the cluster, ranges handed over */
    int detached;                 /* shutdown_all closes the transports: drop, don't send */
    uint64_t barrier_seq[8], barrier_done[8];
    uint64_t last_hb_ms, hb_interval_ms;
    uint64_t last_sched_ms;       /* last message from the scheduler (nodes) */
    pthread_t timer;
    int timer_started, timer_stop;
    ps_view_cb view_cb;
    void *view_arg;
    struct {
        psi_data_handler fn;
        void *arg;
    } handlers[2]; /* DATA, CALL */
    psi_data_place place; /* where large DATA answers go (kv), or NULL */
    void *place_arg;
    struct {
        ps_view_cb fn;
        void *arg;
    } hooks[8];
    int nhooks;
    void (*on_shutdown[4])(void);
    int shutdown_stage[4];
    int nshutdown;
    psi_status_server *status; /* the scheduler's status page (PS_STATUS) */
} po = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

const char *ps_role_name(ps_role role)
{
    switch (role) {
    case PS_ROLE_SCHEDULER: return "scheduler";
    case PS_ROLE_SERVER: return "server";
    case PS_ROLE_WORKER: return "worker";
    }
    return "?";
}

/* ---- configuration ---------------------------------------------------------- */

static int parse_role(po_config *c)
{
    static const char *const names[] = {"PS_ROLE", "DMLC_ROLE", NULL};
    const char *v = psi_env_str(names);
    if (!v) {
        PSI_ERROR("PS_ROLE is not set: expected scheduler, server or worker");
        return PS_ERR_CONFIG;
    }
    for (int r = PS_ROLE_SCHEDULER; r <= PS_ROLE_WORKER; r++)
        if (strcasecmp(v, ps_role_name((ps_role)r)) == 0) {
            c->role = (ps_role)r;
            return PS_OK;
        }
    PSI_ERROR("PS_ROLE=\"%s\": expected scheduler, server or worker", v);
    return PS_ERR_CONFIG;
}

static int parse_scheduler(po_config *c)
{
    static const char *const addr_names[] = {"PS_SCHEDULER", NULL};
    static const char *const uri_names[] = {"DMLC_PS_ROOT_URI", NULL};
    static const char *const port_names[] = {"DMLC_PS_ROOT_PORT", NULL};
    const char *a = psi_env_str(addr_names), *uri = psi_env_str(uri_names);
    char host[PSI_ADDR_MAX];
    long port;
    int p;

    if (!a && uri) {
        if (psi_env_long(port_names, -1, 1, 65535, &port) != 0 || port < 0) {
            PSI_ERROR("DMLC_PS_ROOT_URI is set but DMLC_PS_ROOT_PORT is missing or bad");
            return PS_ERR_CONFIG;
        }
        snprintf(c->sched_addr, sizeof(c->sched_addr), "%s:%ld", uri, port);
    } else if (a) {
        snprintf(c->sched_addr, sizeof(c->sched_addr), "%s", a);
    } else {
        PSI_ERROR("PS_SCHEDULER is not set: expected host:port of the scheduler");
        return PS_ERR_CONFIG;
    }
    if (psi_split_hostport(c->sched_addr, host, sizeof(host), &p) != 0 || p == 0) {
        PSI_ERROR("PS_SCHEDULER=\"%s\": expected host:port with a port in 1..65535",
                  c->sched_addr);
        return PS_ERR_CONFIG;
    }
    return PS_OK;
}

/* Whether `host` (a name or an IPv4 address) is in 127.0.0.0/8. */
static int is_loopback(const char *host)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (strncmp(host, "127.", 4) == 0 || strcmp(host, "localhost") == 0) return 1;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return 0;
    const struct sockaddr_in *sa = (const struct sockaddr_in *)(const void *)res->ai_addr;
    int lo = (ntohl(sa->sin_addr.s_addr) >> 24) == 127;
    freeaddrinfo(res);
    return lo;
}

static int is_wildcard(const char *host)
{
    return strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0 || strcmp(host, "::") == 0 ||
           strcmp(host, "") == 0;
}

/* The local address the kernel would use to reach `host` (a UDP socket
 * "connected" there sends nothing).  0 or PS_ERR_CONFIG. */
static int route_source(const char *host, char *out, size_t cap)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *res;
    struct sockaddr_in me;
    socklen_t len = sizeof(me);
    int rv = PS_ERR_CONFIG;
    if (getaddrinfo(host, "9", &hints, &res) != 0 || !res) return PS_ERR_CONFIG;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) == 0 &&
        getsockname(fd, (struct sockaddr *)&me, &len) == 0 &&
        inet_ntop(AF_INET, &me.sin_addr, out, (socklen_t)cap))
        rv = PS_OK;
    if (fd >= 0) close(fd);
    freeaddrinfo(res);
    return rv;
}

/* Whether `host` resolves to an IPv4 address now. */
static int resolves(const char *host)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return 0;
    freeaddrinfo(res);
    return 1;
}

/* A node may start before the scheduler's name exists (a Kubernetes
 * Service, a DNS record being published): wait up to the connect timeout
 * for it to resolve, said once.  0 or PS_ERR_CONFIG. */
static int wait_resolvable(const char *host, long timeout_ms)
{
    uint64_t deadline = psi_now_ms() + (uint64_t)timeout_ms;
    int said = 0;
    while (!resolves(host)) {
        if (psi_now_ms() >= deadline) {
            PSI_ERROR("the scheduler's host %s does not resolve to an IPv4 address (waited %ld "
                      "ms, PS_CONNECT_TIMEOUT_MS): check PS_SCHEDULER", host, timeout_ms);
            return PS_ERR_CONFIG;
        }
        if (!said++)
            PSI_WARN("the scheduler's host %s does not resolve yet: retrying for up to %ld ms",
                     host, timeout_ms);
        struct timespec nap = {0, 200 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    return PS_OK;
}

static int parse_host(po_config *c)
{
    static const char *const names[] = {"PS_HOST", "DMLC_NODE_HOST", NULL};
    const char *h = psi_env_str(names);
    char sched_host[PSI_ADDR_MAX];
    int port;
    psi_split_hostport(c->sched_addr, sched_host, sizeof(sched_host), &port);
    if (c->role != PS_ROLE_SCHEDULER && wait_resolvable(sched_host, c->connect_timeout_ms) != 0)
        return PS_ERR_CONFIG;
    if (c->role == PS_ROLE_SCHEDULER) {
        snprintf(c->host, sizeof(c->host), "%s", sched_host);
    } else if (h) {
        snprintf(c->host, sizeof(c->host), "%s", h);
    } else if (is_loopback(sched_host)) {
        snprintf(c->host, sizeof(c->host), "%s", sched_host);
    } else if (route_source(sched_host, c->host, sizeof(c->host)) != 0) {
        /* Default off loopback: the address this host reaches the scheduler from. */
        PSI_ERROR("PS_HOST is not set and no route to the scheduler's host %s was found: "
                  "set PS_HOST to this node's address on the cluster network", sched_host);
        return PS_ERR_CONFIG;
    }
    if (is_wildcard(c->host)) {
        PSI_ERROR("%s=\"%s\" is a wildcard: a node listens on, and is reached at, one "
                  "address; give this host's address on the cluster network",
                  c->role == PS_ROLE_SCHEDULER ? "PS_SCHEDULER" : "PS_HOST", c->host);
        return PS_ERR_CONFIG;
    }
    if (!resolves(c->host)) {
        PSI_ERROR("%s=%s does not resolve to an IPv4 address",
                  c->role == PS_ROLE_SCHEDULER ? "PS_SCHEDULER's host" : "PS_HOST", c->host);
        return PS_ERR_CONFIG;
    }
    if (c->role != PS_ROLE_SCHEDULER && is_loopback(c->host) != is_loopback(sched_host)) {
        PSI_ERROR("PS_HOST=%s and the scheduler at %s: one is a loopback address and the "
                  "other is not, so they cannot reach each other; set PS_HOST to this node's "
                  "address on the scheduler's network", c->host, sched_host);
        return PS_ERR_CONFIG;
    }
    return PS_OK;
}

/* A node that listens beyond loopback needs the cluster secret, or an
 * explicit PS_INSECURE=1; the UCX transport's listener must not face a
 * network at all (UCX 1.13 aborts on malformed connection requests). */
static int check_exposure(const po_config *c)
{
    if (is_loopback(c->host) || c->insecure) return PS_OK;
    if (c->ucx) {
        PSI_ERROR("PS_TRANSPORT=ucx listens with UCX's own listener, which a malformed packet "
                  "can crash: it is for loopback or a private network only (set PS_INSECURE=1 "
                  "to accept that), or use the default transport (PS_TRANSPORT=tcp)");
        return PS_ERR_CONFIG;
    }
    if (!c->key.secret) {
        PSI_ERROR("this node listens on %s, beyond loopback, and no cluster secret is set: "
                  "anyone who reaches the port could join and read or write the model. Set "
                  "PS_SECRET or PS_SECRET_FILE on every node (psrun makes one), or "
                  "PS_INSECURE=1 on a network you trust", c->host);
        return PS_ERR_CONFIG;
    }
    return PS_OK;
}

/*
 * Busy-polling 30 us after each burst of traffic saves a thread wake-up per
 * round trip (about 60 us -> 20 us on a 2-vCPU VM), but steals the core from
 * a peer when a local cluster has more processes than cores.  So: on for a
 * cluster spread over hosts or one that fits this host's cores, off else.
 */
static long default_poll_us(const po_config *c)
{
    char host[PSI_ADDR_MAX];
    int port;
    cpu_set_t set;
    long ncpu = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
    psi_split_hostport(c->sched_addr, host, sizeof(host), &port);
    int local = is_loopback(host);
    /* the scheduler sleeps between control messages: count servers and workers */
    return !local || c->nservers + c->nworkers <= ncpu ? 30 : 0;
}

/* The scheduler's status page: PS_STATUS=host:port (off when unset). */
static int parse_status(po_config *c)
{
    static const char *const st[] = {"PS_STATUS", NULL};
    static const char *const au[] = {"PS_STATUS_AUTH", NULL};
    const char *spec = psi_env_str(st);
    long force;
    int rv;
    if (c->role != PS_ROLE_SCHEDULER || !spec) return PS_OK;
    if ((rv = psi_env_long(au, 0, 0, 1, &force)) != 0 ||
        (rv = psi_status_config(spec, &c->key, (int)c->insecure, (int)force, &c->status)) != 0)
        return rv;
    c->status_on = 1;
    return PS_OK;
}

static int parse_config(po_config *c)
{
    static const char *const ns[] = {"PS_NUM_SERVERS", "DMLC_NUM_SERVER", NULL};
    static const char *const nw[] = {"PS_NUM_WORKERS", "DMLC_NUM_WORKER", NULL};
    static const char *const rk[] = {"PS_RANK", NULL};
    static const char *const hb[] = {"PS_HEARTBEAT_TIMEOUT_MS", NULL};
    static const char *const ct[] = {"PS_CONNECT_TIMEOUT_MS", NULL};
    static const char *const mm[] = {"PS_MAX_MSG_BYTES", NULL};
    static const char *const ft[] = {"PS_FAULT", NULL};
    static const char *const pu[] = {"PS_POLL_US", NULL};
    static const char *const hs[] = {"PS_HANDSHAKE_TIMEOUT_MS", NULL};
    static const char *const in[] = {"PS_INSECURE", NULL};
    static const char *const tr[] = {"PS_TRANSPORT", NULL};
    static const char *const en[] = {"PS_ENCRYPT", NULL};
    long encrypt;
    int rv;
    memset(c, 0, sizeof(*c));
    if ((rv = parse_role(c)) || (rv = parse_scheduler(c))) return rv;
    if ((rv = psi_env_long(ns, -1, 0, 1024, &c->nservers)) ||
        (rv = psi_env_long(nw, -1, 1, 1024, &c->nworkers)) ||
        (rv = psi_env_long(rk, -1, 0, 1023, &c->rank)) ||
        (rv = psi_env_long(hb, 1000, 50, 3600000, &c->hb_timeout_ms)) ||
        (rv = psi_env_long(ct, 30000, 100, 3600000, &c->connect_timeout_ms)) ||
        (rv = psi_env_long(mm, 1L << 30, 4096, 1L << 40, &c->max_msg)) ||
        (rv = psi_env_long(pu, -1, 0, 1000000, &c->poll_us)) ||
        (rv = psi_env_long(hs, 5000, 100, 600000, &c->handshake_ms)) ||
        (rv = psi_env_long(in, 0, 0, 1, &c->insecure)) ||
        (rv = psi_env_long(en, 0, 0, 1, &encrypt)))
        return rv;
    const char *tname = psi_env_str(tr);
    if (tname && strcmp(tname, "tcp") != 0 && strcmp(tname, "ucx") != 0) {
        PSI_ERROR("PS_TRANSPORT=\"%s\": expected tcp (the default) or ucx", tname);
        return PS_ERR_CONFIG;
    }
    c->ucx = tname && strcmp(tname, "ucx") == 0;
    if ((rv = psi_gate_key_from_env(&c->key)) != 0) return rv;
    c->key.encrypt = (int)encrypt;
    if (encrypt && c->ucx) {
        PSI_ERROR("PS_ENCRYPT=1 needs the default transport (PS_TRANSPORT=tcp)");
        return PS_ERR_CONFIG;
    }
    if (c->nservers < 0 || c->nworkers < 0) {
        PSI_ERROR("PS_NUM_SERVERS and PS_NUM_WORKERS must both be set");
        return PS_ERR_CONFIG;
    }
    c->fault = psi_env_str(ft);
    if ((rv = parse_host(c)) != 0 || (rv = check_exposure(c)) != 0 ||
        (rv = parse_status(c)) != 0)
        return rv;
    if (c->poll_us < 0) c->poll_us = default_poll_us(c);
    return PS_OK;
}

/* ---- sending ---------------------------------------------------------------- */

/* Fill the routing fields and hand `m` to the transport.  Caller holds lock. */
static int do_send(uint32_t peer, psi_msg *m)
{
    m->hdr.sender = po.id;
    m->hdr.receiver = peer;
    m->hdr.epoch = po.view.epoch;
    if (po.detached) { /* the transports are being closed and freed */
        psi_msg_free(m);
        return PS_ERR_CLOSED;
    }
    psi_transport *tr = peer == PSI_SCHEDULER_ID && po.ctl ? po.ctl : po.tr;
    return tr->ops->send(tr, peer, m);
}

static void do_send_cb(void *arg, uint32_t peer, psi_msg *m)
{
    (void)arg;
    do_send(peer, m);
}

static void do_send_reliable(uint32_t peer, psi_msg *m)
{
    if (psi_rel_track(po.rel, peer, m, psi_now_ms()) != 0) {
        psi_msg_free(m);
        return;
    }
    do_send(peer, m);
}

static void do_send_ack(uint32_t peer, uint64_t ts, int status)
{
    psi_msg *m = psi_msg_new(PSI_MSG_ACK);
    if (!m) return;
    m->hdr.flags = PSI_F_CONTROL | PSI_F_RESPONSE;
    m->hdr.timestamp = ts;
    m->hdr.arg = (uint32_t)status;
    do_send(peer, m);
}

int psi_node_send(uint32_t peer, psi_msg *m)
{
    int rv;
    pthread_mutex_lock(&po.lock);
    if (po.state != ST_RUNNING && po.state != ST_CLOSING) {
        rv = po.state == ST_CLOSED ? PS_ERR_CLOSED : PS_ERR_STATE;
        psi_msg_free(m);
    } else {
        rv = do_send(peer, m);
    }
    pthread_mutex_unlock(&po.lock);
    return rv;
}

int psi_node_set_handler(int type, psi_data_handler fn, void *arg)
{
    if (type != PSI_MSG_DATA && type != PSI_MSG_CALL) return PS_ERR_INVAL;
    pthread_mutex_lock(&po.lock);
    po.handlers[type - PSI_MSG_DATA].fn = fn;
    po.handlers[type - PSI_MSG_DATA].arg = arg;
    pthread_mutex_unlock(&po.lock);
    return PS_OK;
}

int psi_node_view(psi_view *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&po.lock);
    int rv = psi_view_copy(out, &po.view);
    pthread_mutex_unlock(&po.lock);
    return rv;
}

/* ---- scheduler glue ------------------------------------------------------------ */

typedef struct view_note { /* a view change to report after unlocking */
    int pending;
    uint32_t epoch;
    uint32_t dead[64];
    int ndead;
} view_note;

static view_note note;

/* Install `v` as the current view (caller holds lock); connects to the
 * living, forgets the dead, and records the change for the callback. */
static void do_install_view(const psi_view *v)
{
    /* a view not yet reported adds its dead to the earlier one's */
    int have = note.pending ? note.ndead : 0, cap = (int)PSI_ARRAY_LEN(note.dead) - have;
    int nd = have + psi_view_newly_dead(&po.view, v, note.dead + have, cap);
    if (psi_view_copy(&po.view, v) != 0) return;
    for (uint32_t i = 0; i < v->n; i++) {
        const psi_node *n = &v->nodes[i];
        if (n->id == po.id) continue;
        if (n->alive) po.tr->ops->connect(po.tr, n->id, n->addr);
        else if (po.cfg.role != PS_ROLE_SCHEDULER) po.tr->ops->disconnect(po.tr, n->id);
    }
    const psi_node *me = psi_view_find(v, po.id);
    if (me && !me->alive && !po.left_early) {
        PSI_ERROR("the scheduler declared this node dead (view %u): leaving the cluster",
                  v->epoch);
        po.fatal = PS_ERR_EVICTED;
        po.evicted = 1;
    }
    note.pending = 1;
    note.epoch = v->epoch;
    note.ndead = PSI_MIN(nd, (int)PSI_ARRAY_LEN(note.dead));  /* (more than 64 at once: lost) */
    pthread_cond_broadcast(&po.cond);
}

static void sio_send_reliable(void *a, uint32_t peer, psi_msg *m) { (void)a; do_send_reliable(peer, m); }
static void sio_send_ack(void *a, uint32_t peer, uint64_t ts, int st) { (void)a; do_send_ack(peer, ts, st); }
static void sio_send(void *a, uint32_t peer, psi_msg *m)
{
    (void)a;
    do_send(peer, m); /* the transport owns m, sent or not */
}
static void sio_connect(void *a, uint32_t peer, const char *addr)
{
    (void)a;
    po.tr->ops->connect(po.tr, peer, addr);
}
static void sio_forget(void *a, uint32_t peer)
{
    (void)a;
    psi_rel_forget_peer(po.rel, peer);
}
static void sio_install_view(void *a, const psi_view *v) { (void)a; do_install_view(v); }
static void sio_barrier_done(void *a, int group, uint64_t seq)
{
    (void)a;
    if (seq > po.barrier_done[group]) po.barrier_done[group] = seq;
    pthread_cond_broadcast(&po.cond);
}

static const psi_sched_io sched_io = {
    .send_reliable = sio_send_reliable,
    .send = sio_send,
    .send_ack = sio_send_ack,
    .connect = sio_connect,
    .forget = sio_forget,
    .install_view = sio_install_view,
    .barrier_done = sio_barrier_done,
};

/* Report pending view changes to the hooks and the user's callback, without
 * the lock.  The I/O and timer threads both call this; hook_lock makes one
 * of them report every pending change, in the order the views were
 * installed, while the other goes on (the timer must keep heartbeating). */
static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;

static int take_note(view_note *n, ps_view_cb *cb, void **arg, int *nh)
{
    pthread_mutex_lock(&po.lock);
    *n = note;
    note.pending = 0;
    *cb = po.view_cb;
    *arg = po.view_arg;
    *nh = po.nhooks;
    pthread_mutex_unlock(&po.lock);
    return n->pending;
}

static void flush_view_note(void)
{
    view_note n;
    ps_view_cb cb;
    void *arg;
    int nh;
    for (;;) {
        if (pthread_mutex_trylock(&hook_lock) != 0) return; /* the holder reports it */
        while (take_note(&n, &cb, &arg, &nh)) {
            for (int i = 0; i < nh; i++) po.hooks[i].fn(n.epoch, n.dead, n.ndead, po.hooks[i].arg);
            if (cb) cb(n.epoch, n.dead, n.ndead, arg);
        }
        pthread_mutex_unlock(&hook_lock);
        pthread_mutex_lock(&po.lock);
        int again = note.pending; /* installed after our last look */
        pthread_mutex_unlock(&po.lock);
        if (!again) return;
    }
}

int psi_node_add_view_hook(ps_view_cb fn, void *arg)
{
    pthread_mutex_lock(&po.lock);
    int rv = po.nhooks < (int)PSI_ARRAY_LEN(po.hooks) ? PS_OK : PS_ERR_NOMEM;
    if (rv == 0) {
        po.hooks[po.nhooks].fn = fn;
        po.hooks[po.nhooks].arg = arg;
        po.nhooks++;
    }
    pthread_mutex_unlock(&po.lock);
    return rv;
}

void psi_node_on_shutdown(void (*fn)(void), int stage)
{
    pthread_mutex_lock(&po.lock);
    for (int i = 0; i < po.nshutdown; i++)
        if (po.on_shutdown[i] == fn) fn = NULL;
    if (fn && po.nshutdown < (int)PSI_ARRAY_LEN(po.on_shutdown)) {
        po.shutdown_stage[po.nshutdown] = stage;
        po.on_shutdown[po.nshutdown++] = fn;
    }
    pthread_mutex_unlock(&po.lock);
}

uint64_t psi_node_max_payload(void)
{
    return po.cfg.max_msg > 0 ? (uint64_t)po.cfg.max_msg : PSI_DEFAULT_MAX_PAYLOAD;
}

int psi_node_fatal(void)
{
    pthread_mutex_lock(&po.lock);
    int f = po.fatal;
    pthread_mutex_unlock(&po.lock);
    return f;
}

int psi_node_running(void)
{
    pthread_mutex_lock(&po.lock);
    int r = po.state == ST_RUNNING;
    pthread_mutex_unlock(&po.lock);
    return r;
}

/* ---- receiving --------------------------------------------------------------- */

static void handle_ack(const psi_msg *m)
{
    psi_rel_acked(po.rel, m->hdr.sender, m->hdr.timestamp);
    if (m->hdr.sender != PSI_SCHEDULER_ID) return;
    if (po.join_status == 1 && m->hdr.timestamp == po.join_ts) {
        int st = (int)m->hdr.arg;
        if (st == 0) po.id = m->hdr.receiver;
        po.join_status = st == 0 ? 0 : (st < 0 ? st : PS_ERR_PROTO);
        pthread_cond_broadcast(&po.cond);
    } else if (m->hdr.timestamp == po.leave_ts) {
        po.leave_acked = 1;
        pthread_cond_broadcast(&po.cond);
    }
}

static void handle_view(const psi_msg *m)
{
    psi_view v;
    if (po.cfg.role == PS_ROLE_SCHEDULER || m->hdr.sender != PSI_SCHEDULER_ID) return;
    if (psi_view_decode(m->seg[PSI_SEG_AUX], m->hdr.seg_len[PSI_SEG_AUX], &v) != 0) {
        PSI_WARN("dropped a malformed view from node %u", m->hdr.sender);
        return;
    }
    if (psi_view_is_newer(&po.view, v.epoch)) do_install_view(&v);
    psi_view_free(&v);
}

static void handle_join(const psi_msg *m)
{
    psi_join j;
    if (!po.sched) return;
    if (psi_join_decode(m->seg[PSI_SEG_AUX], m->hdr.seg_len[PSI_SEG_AUX], &j) != 0) {
        PSI_WARN("dropped a malformed join request");
        return;
    }
    psi_sched_on_join(po.sched, &j, m->hdr.timestamp, psi_now_ms());
}

/* A node's report (unreliable: one lost is replaced by the next).  Kept
 * only while the status page is on. */
static void handle_report(const psi_msg *m)
{
    static psi_report r; /* 30 KiB, used under po.lock only */
    static uint64_t warned_ms;
    const psi_hdr *h = &m->hdr;
    if (!po.sched || !po.cfg.status_on || h->sender == PSI_ID_NONE ||
        h->arg != PSI_REPORT_FORMAT)
        return;
    if (psi_report_decode(m->seg[PSI_SEG_AUX], h->seg_len[PSI_SEG_AUX], &r) != 0) {
        uint64_t now = psi_now_ms();
        if (now - warned_ms >= 10000) /* said at most every 10 s */
            PSI_WARN("dropped a malformed report from node %u", h->sender);
        warned_ms = now;
        return;
    }
    psi_rstore_ingest(h->sender, h->key_lo, &r, psi_now_ms());
}

static void handle_barrier_done(const psi_msg *m)
{
    int g = (int)m->hdr.arg;
    if (g < 1 || g > 7 || m->hdr.sender != PSI_SCHEDULER_ID) return;
    if (m->hdr.key_lo > po.barrier_done[g]) po.barrier_done[g] = m->hdr.key_lo;
    pthread_cond_broadcast(&po.cond);
}

/* Handle one control message; caller holds the lock. */
static void do_control(const psi_msg *m)
{
    const psi_hdr *h = &m->hdr;
    if (po.sched) psi_sched_on_alive(po.sched, h->sender, psi_now_ms());
    if (po.sched && po.cfg.status_on) psi_rstore_seen(h->sender, psi_now_ms());
    if (h->type == PSI_MSG_ACK) {
        handle_ack(m);
        return;
    }
    if (h->sender != PSI_ID_NONE && h->sender >= PSI_MAX_NODES) {
        PSI_WARN("dropped a %s from impossible node id %u", psi_msg_type_name(h->type), h->sender);
        return;
    }
    if ((h->flags & PSI_F_RELIABLE) && h->sender != PSI_ID_NONE) {
        do_send_ack(h->sender, h->timestamp, 0);
        if (psi_rel_seen(po.rel, h->sender, h->timestamp) == 1) return;
    }
    switch (h->type) {
    case PSI_MSG_JOIN: handle_join(m); break;
    case PSI_MSG_VIEW: handle_view(m); break;
    case PSI_MSG_BARRIER:
        if (po.sched) psi_sched_on_barrier(po.sched, h->sender, (int)h->arg, h->key_lo);
        break;
    case PSI_MSG_BARRIER_DONE: handle_barrier_done(m); break;
    case PSI_MSG_LEAVE:
        if (po.sched) psi_sched_on_leave(po.sched, h->sender, (int)h->arg == 1);
        if (po.sched && po.cfg.status_on) psi_rstore_left(h->sender);
        break;
    case PSI_MSG_REPORT: handle_report(m); break;
    case PSI_MSG_SERVE:
        if (po.sched) psi_sched_on_serve(po.sched, h->sender, (int)h->arg, (uint32_t)h->key_lo);
        break;
    case PSI_MSG_HEARTBEAT: /* answered, so that a node can tell it is cut off */
        if (po.sched && h->sender != PSI_ID_NONE) {
            psi_msg *r = psi_msg_new(PSI_MSG_HEARTBEAT);
            if (r) {
                r->hdr.flags = PSI_F_CONTROL | PSI_F_RESPONSE;
                do_send(h->sender, r);
            }
        }
        break;
    default: break;
    }
}

static int on_place(void *arg, const psi_hdr *h, psi_place *out)
{
    (void)arg;
    pthread_mutex_lock(&po.lock);
    psi_data_place fn = po.detached ? NULL : po.place;
    void *parg = po.place_arg;
    pthread_mutex_unlock(&po.lock);
    return fn ? fn(parg, h, out) : 0;
}

void psi_node_set_place(psi_data_place fn, void *arg)
{
    pthread_mutex_lock(&po.lock);
    po.place = fn;
    po.place_arg = arg;
    pthread_mutex_unlock(&po.lock);
}

static void on_receive(void *arg, psi_msg *m)
{
    (void)arg;
    pthread_mutex_lock(&po.lock);
    if (po.detached) { /* shutting down: the other transport may be gone already */
        pthread_mutex_unlock(&po.lock);
        psi_msg_free(m);
        return;
    }
    if (m->hdr.sender == PSI_SCHEDULER_ID) po.last_sched_ms = psi_now_ms();
    if (m->hdr.type == PSI_MSG_DATA || m->hdr.type == PSI_MSG_CALL) {
        psi_data_handler cb = po.handlers[m->hdr.type - PSI_MSG_DATA].fn;
        void *darg = po.handlers[m->hdr.type - PSI_MSG_DATA].arg;
        if (po.sched) psi_sched_on_alive(po.sched, m->hdr.sender, psi_now_ms());
        pthread_mutex_unlock(&po.lock);
        if (m->hdr.type == PSI_MSG_DATA) psi_report_count_data(&m->hdr);
        if (cb) cb(darg, m);
        else psi_msg_free(m);
        return;
    }
    do_control(m);
    pthread_mutex_unlock(&po.lock);
    psi_msg_free(m);
    flush_view_note();
}

/* Joining: a scheduler that refuses our proof fails the join at once; one
 * that cannot be reached is said once, then tried until the timeout. */
static void do_join_failure(int err)
{
    if (err == PS_ERR_AUTH) {
        PSI_ERROR("the scheduler at %s and this node do not share the cluster secret "
                  "(PS_SECRET / PS_SECRET_FILE)", po.cfg.sched_addr);
        po.join_status = PS_ERR_AUTH;
        pthread_cond_broadcast(&po.cond);
    } else if (!po.sched_unreachable) {
        /* said once the scheduler has refused us for a second: a cluster
         * started all at once has nodes up before the scheduler listens */
        uint64_t now = psi_now_ms();
        if (!po.sched_first_fail_ms) po.sched_first_fail_ms = now;
        if (now - po.sched_first_fail_ms < 1000) return;
        po.sched_unreachable = 1;
        PSI_WARN("cannot reach the scheduler at %s (%s); retrying for up to %ld ms "
                 "(PS_CONNECT_TIMEOUT_MS)", po.cfg.sched_addr, ps_strerror(err),
                 po.cfg.connect_timeout_ms);
    }
}

static void on_peer_failure(void *arg, uint32_t peer, int err)
{
    (void)arg;
    pthread_mutex_lock(&po.lock);
    if (peer == PSI_SCHEDULER_ID && po.join_status == 1) do_join_failure(err);
    if (peer == PSI_SCHEDULER_ID && po.view.epoch > 0 && po.state == ST_RUNNING &&
        po.cfg.role != PS_ROLE_SCHEDULER && !po.fatal) {
        PSI_ERROR("lost the connection to the scheduler (%s): %s", po.cfg.sched_addr,
                  ps_strerror(err));
        po.fatal = PS_ERR_PEER;
        pthread_cond_broadcast(&po.cond);
    }
    pthread_mutex_unlock(&po.lock);
}

/* ---- timer ----------------------------------------------------------------- */

static void do_heartbeat(uint64_t now)
{
    if (po.cfg.role == PS_ROLE_SCHEDULER || po.id == PSI_ID_NONE) return;
    if (now - po.last_hb_ms < po.hb_interval_ms) return;
    psi_msg *m = psi_msg_new(PSI_MSG_HEARTBEAT);
    if (!m) return;
    m->hdr.flags = PSI_F_CONTROL;
    po.last_hb_ms = now;
    do_send(PSI_SCHEDULER_ID, m);
    if (po.beat) psi_beat_send(po.beat, po.id, po.view.epoch);
}

/* A node that hears nothing from the scheduler for twice the heartbeat
 * timeout is cut off (the scheduler has declared it dead by then); a
 * scheduler that saw every server or every worker declared dead has lost
 * the job (or is the one cut off).  Either way: fatal, said once. */
static void do_watchdog(uint64_t now)
{
    if (po.fatal || po.state != ST_RUNNING || po.left_early || po.leave_ts) return;
    if (po.sched) {
        int lost = psi_sched_lost(po.sched);
        if (!lost) return;
        PSI_ERROR("every %s was declared dead: the job cannot go on (or this scheduler is cut "
                  "off from the network)", ps_role_name((ps_role)lost));
        po.fatal = PS_ERR_PEER;
        pthread_cond_broadcast(&po.cond);
        return;
    }
    uint64_t limit = 2 * (uint64_t)po.cfg.hb_timeout_ms;
    if (po.last_sched_ms && now - po.last_sched_ms > limit) {
        PSI_ERROR("no word from the scheduler at %s for %llu ms: this node is cut off from the "
                  "cluster; leaving", po.cfg.sched_addr,
                  (unsigned long long)(now - po.last_sched_ms));
        po.fatal = PS_ERR_EVICTED;
        po.evicted = 1;
        pthread_cond_broadcast(&po.cond);
    }
}

/* Time this process did not run (starved of CPU, stopped) is nobody's
 * silence: a timer tick far later than TICK_MS credits it to every
 * deadline that counts silence, here and (scheduler) in sched.c. */
static void do_credit_stall(uint64_t now)
{
    static uint64_t last;
    uint64_t gap = last ? now - last : 0;
    last = now;
    if (gap <= (uint64_t)po.cfg.hb_timeout_ms / 4) return;
    PSI_WARN("this process did not run for %llu ms: no one is judged on that time",
             (unsigned long long)gap);
    if (po.sched) psi_sched_credit(po.sched, gap, now);
    if (po.last_sched_ms) po.last_sched_ms = PSI_MIN(po.last_sched_ms + gap, now);
}

/* After a view change (a peer died or joined: its connection, buffers and
 * copies are freed), hand the allocator's free pages back to the system.
 * glibc keeps them in its per-thread arenas otherwise: a soak with a kill and
 * a join a minute saw a server's heap in use stay flat (1.0-1.7 MB) while
 * its free-but-resident part and so its RSS crept up with every change
 * (bench/README.md, soak).  The tables react to a view after this thread
 * publishes it (copies to new backups, handovers, their messages freed once
 * written; the last prune of the stores, src/replica/prune.c, 30 s after),
 * so one trim at the change comes too early: it is repeated at the delays of
 * TRIM_AFTER_MS.  (A soak that trimmed only up to 10 s after each change saw
 * server RSS rise by 1 MB at a kill and fall back only at the next one.)
 * Called without a lock; views change rarely, and a trim of a small heap
 * takes well under a millisecond. */
static const uint32_t TRIM_AFTER_MS[] = {0, 2000, 10000, 40000};
#define NTRIMS (sizeof(TRIM_AFTER_MS) / sizeof(TRIM_AFTER_MS[0]))

static struct {
    uint64_t since; /* when the last view change was published */
    size_t done;    /* trims made since then: NTRIMS when none is due */
} trims = {.done = NTRIMS};

static int trim_due(uint64_t now)
{
    return trims.done < NTRIMS && now >= trims.since + TRIM_AFTER_MS[trims.done];
}

static void release_free_memory(uint64_t now)
{
    while (trim_due(now)) trims.done++; /* one trim serves every delay passed */
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* glibc gives an allocation of 128 KiB or more a mapping of its own, but
 * raises that threshold to the size of any such block freed, up to 32 MiB:
 * after a join's copy or a store rebuilt by a prune (src/replica/prune.c),
 * blocks of 100-250 KiB came from the heap, and each one freed left a hole
 * that small blocks settled in, so the heap only grew (a soak's server 0:
 * threshold 176 KiB after the first join).  So the threshold is fixed at
 * 64 KiB at start, which also stops it moving, unless the user chose one
 * (MALLOC_MMAP_THRESHOLD_, or glibc.malloc.mmap_threshold in
 * GLIBC_TUNABLES).  Message buffers of that size come from bufpool.c
 * anyway; what is left above it is rare and long-lived. */
static void set_mmap_threshold(void)
{
#ifdef __GLIBC__
    const char *tun = getenv("GLIBC_TUNABLES");
    if (getenv("MALLOC_MMAP_THRESHOLD_") || (tun && strstr(tun, "mmap_threshold"))) return;
    mallopt(M_MMAP_THRESHOLD, 64 << 10);
#endif
}

static void *timer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&po.lock);
    while (!po.timer_stop) {
        uint64_t now = psi_now_ms();
        do_credit_stall(now);
        psi_rel_resend_due(po.rel, now, do_send_cb, NULL);
        /* a leave in flight is not silence: beat until it is acked */
        if (!po.leave_acked) do_heartbeat(now);
        if (po.beat && po.id != PSI_ID_NONE && psi_beat_poll(po.beat, po.id) > 0)
            po.last_sched_ms = PSI_MAX(po.last_sched_ms, now);
        /* silence is judged up to what the I/O thread has read (a
         * scheduler behind on its input must not blame the senders) */
        if (po.sched) psi_sched_tick(po.sched, psi_transport_read_mark(po.tr, now));
        do_watchdog(now);
        if (note.pending) {
            trims.since = now;
            trims.done = 0;
            pthread_mutex_unlock(&po.lock);
            flush_view_note();
            pthread_mutex_lock(&po.lock);
        }
        if (trim_due(now)) { /* trims is the timer thread's alone */
            pthread_mutex_unlock(&po.lock);
            release_free_memory(now);
            pthread_mutex_lock(&po.lock);
        }
        struct timespec ts = psi_deadline_in(TICK_MS);
        pthread_cond_timedwait(&po.cond, &po.lock, &ts);
    }
    pthread_mutex_unlock(&po.lock);
    return NULL;
}

/* ---- start ------------------------------------------------------------------- */

/* The scheduler's beat thread: a valid UDP beat from node `id`. */
static int beat_alive(void *arg, uint32_t id, uint32_t epoch)
{
    (void)arg, (void)epoch;
    pthread_mutex_lock(&po.lock);
    int ok = po.sched != NULL && po.state != ST_CLOSED;
    if (ok) psi_sched_on_alive(po.sched, id, psi_now_ms());
    if (ok && po.cfg.status_on) psi_rstore_seen(id, psi_now_ms());
    pthread_mutex_unlock(&po.lock);
    return ok;
}

static int open_one(psi_transport **out)
{
    psi_net_config nc = {.max_payload = (uint64_t)po.cfg.max_msg,
                         .poll_us = (uint64_t)po.cfg.poll_us,
                         .key = po.cfg.key,
                         .handshake_ms = (uint64_t)po.cfg.handshake_ms};
    psi_transport_cbs cbs = {.on_receive = on_receive, .on_peer_failure = on_peer_failure,
                             .place = on_place};
    psi_transport *t;
    int rv = po.cfg.ucx ? psi_ucx_open(&nc, &cbs, &t) : psi_tcp_open(&nc, &cbs, &t);
    if (rv != 0) return rv;
    if (po.cfg.fault && (rv = psi_fault_open(t, po.cfg.fault, out)) != 0) {
        t->ops->close(t, 0);
        return rv;
    }
    if (!po.cfg.fault) *out = t;
    return PS_OK;
}

/*
 * The data transport listens on PS_HOST (the scheduler: on PS_SCHEDULER).
 * A node also opens, with the TCP transport, a second one that only
 * connects out to the scheduler: its heartbeats, joins and barriers leave
 * through their own I/O thread, never behind a large push being sent or a
 * slow apply on the data thread.
 */
static int open_transport(void)
{
    int rv = open_one(&po.tr);
    if (rv != 0) return rv;
    int port = 0;
    char host[PSI_ADDR_MAX];
    if (po.cfg.role == PS_ROLE_SCHEDULER)
        psi_split_hostport(po.cfg.sched_addr, host, sizeof(host), &port);
    rv = po.tr->ops->listen(po.tr, po.cfg.role == PS_ROLE_SCHEDULER ? host : po.cfg.host, port,
                            po.my_addr, sizeof(po.my_addr));
    if (rv != 0) return rv;
    if (po.cfg.role == PS_ROLE_SCHEDULER) {
        psi_beat_listen(po.my_addr, &po.cfg.key, beat_alive, NULL, &po.beat); /* logged */
        return PS_OK;
    }
    if (psi_beat_open(po.cfg.sched_addr, &po.cfg.key, &po.beat) != 0)
        PSI_WARN("heartbeats over UDP to %s are off: TCP heartbeats only", po.cfg.sched_addr);
    if (!po.cfg.ucx && (rv = open_one(&po.ctl)) != 0) return rv;
    psi_transport *to = po.ctl ? po.ctl : po.tr;
    return to->ops->connect(to, PSI_SCHEDULER_ID, po.cfg.sched_addr);
}

/* Wait on po.cond (lock held) until done() is true, the cluster is lost or
 * the deadline passes.  Returns 0, po.fatal or PS_ERR_TIMEOUT. */
static int wait_for(int (*done)(void), uint64_t deadline_ms)
{
    while (!done() && !po.fatal) {
        uint64_t now = psi_now_ms();
        if (now >= deadline_ms) return PS_ERR_TIMEOUT;
        struct timespec ts = psi_deadline_in(PSI_MIN(deadline_ms - now, 100));
        pthread_cond_timedwait(&po.cond, &po.lock, &ts);
    }
    return po.fatal ? po.fatal : PS_OK;
}

static int join_answered(void) { return po.join_status != 1; }
static int have_view(void) { return po.view.epoch > 0; }
static int leave_done(void) { return po.leave_acked; }

static int send_join(void)
{
    psi_join j = {.role = (uint8_t)po.cfg.role, .rank = (int32_t)po.cfg.rank, .sizes = 1,
                  .nservers = (uint16_t)po.cfg.nservers, .nworkers = (uint16_t)po.cfg.nworkers};
    uint8_t buf[128];
    size_t len;
    psi_msg *m = psi_msg_new(PSI_MSG_JOIN);
    snprintf(j.addr, sizeof(j.addr), "%s", po.my_addr);
    if (!m || psi_join_encode(&j, buf, sizeof(buf), &len) != 0 ||
        psi_msg_set_seg(m, PSI_SEG_AUX, buf, len) != 0) {
        psi_msg_free(m);
        return PS_ERR_NOMEM;
    }
    m->hdr.flags = PSI_F_CONTROL;
    if (psi_rel_track(po.rel, PSI_SCHEDULER_ID, m, psi_now_ms()) != 0) {
        psi_msg_free(m);
        return PS_ERR_NOMEM;
    }
    po.join_ts = m->hdr.timestamp;
    po.join_status = 1;
    return do_send(PSI_SCHEDULER_ID, m);
}

/* Join (or, on the scheduler, wait for everyone) and wait for view 1. */
static int do_join(void)
{
    uint64_t deadline = psi_now_ms() + (uint64_t)po.cfg.connect_timeout_ms;
    int rv = 0;
    if (po.cfg.role != PS_ROLE_SCHEDULER) {
        if ((rv = send_join()) != 0) return rv;
        /* the answer comes over the scheduler's own connection to us: if
         * none came soon, say what to check, then go on waiting */
        rv = wait_for(join_answered, PSI_MIN(deadline, psi_now_ms() + JOIN_HINT_MS));
        if (rv == PS_ERR_TIMEOUT && psi_now_ms() < deadline) {
            if (!po.sched_unreachable)
                PSI_WARN("the scheduler at %s has not answered in %d ms: if it runs, check that "
                         "it can reach this node at %s (PS_HOST) and that the port is open",
                         po.cfg.sched_addr, JOIN_HINT_MS, po.my_addr);
            rv = wait_for(join_answered, deadline);
        }
        if (rv == 0 && po.join_status < 0) rv = po.join_status;
        if (rv == PS_ERR_TIMEOUT)
            PSI_ERROR("no answer from the scheduler at %s after %ld ms", po.cfg.sched_addr,
                      po.cfg.connect_timeout_ms);
        else if (rv == PS_ERR_CONFIG)
            PSI_ERROR("the scheduler refused this node's configuration (PS_NUM_SERVERS, "
                      "PS_NUM_WORKERS or PS_RANK; its log says which)");
        else if (rv != 0)
            PSI_ERROR("the scheduler refused this node: %s", ps_strerror(rv));
        if (rv != 0) return rv;
    }
    rv = wait_for(have_view, deadline);
    if (rv == PS_ERR_TIMEOUT)
        PSI_ERROR("the cluster did not form within %ld ms (%ld servers, %ld workers expected)",
                  po.cfg.connect_timeout_ms, po.cfg.nservers, po.cfg.nworkers);
    return rv;
}

static void set_log_prefix(void)
{
    char p[48];
    if (po.cfg.role == PS_ROLE_SCHEDULER) snprintf(p, sizeof(p), "scheduler");
    else if (po.rank < 0) snprintf(p, sizeof(p), "%s ?", ps_role_name(po.cfg.role));
    else snprintf(p, sizeof(p), "%s %d", ps_role_name(po.cfg.role), po.rank);
    psi_log_set_prefix(p);
}

/* ---- reports and the status page ---------------------------------------------- */

/* The reporter thread's sink (no lock held): a node sends its report to the
 * scheduler like a heartbeat (po.ctl, unreliable); the scheduler stores its
 * own. */
static void report_sink(const psi_report *r, uint64_t seq)
{
    static uint8_t buf[PSI_REPORT_MAX_BYTES]; /* the one reporter thread's */
    size_t len;
    if (po.cfg.role == PS_ROLE_SCHEDULER) {
        psi_rstore_ingest(PSI_SCHEDULER_ID, seq, r, psi_now_ms()); /* its own lock */
        return;
    }
    psi_msg *m = psi_msg_new(PSI_MSG_REPORT);
    if (!m || psi_report_encode(r, buf, sizeof(buf), &len) != 0 ||
        psi_msg_set_seg(m, PSI_SEG_AUX, buf, len) != 0) {
        psi_msg_free(m);
        return;
    }
    m->hdr.flags = PSI_F_CONTROL;
    m->hdr.arg = PSI_REPORT_FORMAT;
    m->hdr.key_lo = m->hdr.key_hi = seq;
    psi_node_send(PSI_SCHEDULER_ID, m); /* takes m; lost if the node is closing */
}

/* The status page's snapshot (its HTTP thread; no lock held on entry). */
static int status_snapshot(void *arg, psi_status_snap *out)
{
    psi_view v;
    (void)arg;
    if (psi_node_view(&v) != 0) return PS_ERR_NOMEM; /* po.lock, released */
    int rv = psi_rstore_snapshot(&v, psi_now_ms(), out);
    psi_view_free(&v);
    return rv;
}

/* Scheduler with PS_STATUS: open the page (before the cluster forms, so it
 * shows the formation).  0 or PS_ERR_CONFIG (logged). */
static int start_status(void)
{
    int port;
    if (!po.cfg.status_on) return PS_OK;
    psi_rstore_init(psi_now_ms(), (uint64_t)po.cfg.hb_timeout_ms, (int)po.cfg.nservers,
                    (int)po.cfg.nworkers);
    int rv = psi_status_start(&po.cfg.status, status_snapshot, NULL, &po.status, &port);
    if (rv != 0) return rv;
    /* said whatever PS_LOG_LEVEL: the user asked for it (and port 0 picks one) */
    fprintf(stderr, "status page at http://%s:%d/ (also /status.json, /metrics)%s\n",
            po.cfg.status.host, port, po.cfg.status.need_auth ? "; password: the cluster secret" : "");
    return PS_OK;
}

/* Nodes always report (the scheduler keeps reports only while its page is
 * on); the scheduler reports to itself when the page is on. */
static void start_reporter(void)
{
    if (po.cfg.role == PS_ROLE_SCHEDULER && !po.cfg.status_on) return;
    if (psi_reporter_start(report_sink) != 0)
        PSI_WARN("no reporter thread: this node's figures will not reach the status page");
}

static void shutdown_all(void);

int ps_start(void)
{
    int rv;
    pthread_mutex_lock(&po.lock);
    if (po.state != ST_IDLE) {
        pthread_mutex_unlock(&po.lock);
        return PS_ERR_STATE;
    }
    po.state = ST_STARTING;
    pthread_mutex_unlock(&po.lock);
    set_mmap_threshold();
    if ((rv = parse_config(&po.cfg)) != 0 || (rv = start_status()) != 0) goto fail;
    po.rank = po.cfg.role == PS_ROLE_SCHEDULER ? 0 : (int)po.cfg.rank;
    po.id = po.cfg.role == PS_ROLE_SCHEDULER ? PSI_SCHEDULER_ID : PSI_ID_NONE;
    po.hb_interval_ms = (uint64_t)PSI_MAX(po.cfg.hb_timeout_ms / 5, 10);
    set_log_prefix();
    if (!(po.rel = psi_rel_new())) {
        rv = PS_ERR_NOMEM;
        goto fail;
    }
    if ((rv = open_transport()) != 0) goto fail;
    pthread_mutex_lock(&po.lock);
    if (po.cfg.role == PS_ROLE_SCHEDULER &&
        !(po.sched = psi_sched_new((int)po.cfg.nservers, (int)po.cfg.nworkers, po.my_addr,
                                   (uint64_t)po.cfg.hb_timeout_ms, &sched_io))) {
        pthread_mutex_unlock(&po.lock);
        rv = PS_ERR_NOMEM;
        goto fail;
    }
    po.timer_started = pthread_create(&po.timer, NULL, timer_main, NULL) == 0;
    rv = po.timer_started ? do_join() : PS_ERR_SYS;
    if (rv == 0) {
        const psi_node *me = psi_view_find(&po.view, po.id);
        po.rank = me ? me->rank : po.rank;
        po.state = ST_RUNNING;
        po.last_sched_ms = psi_now_ms();
    }
    pthread_mutex_unlock(&po.lock);
    if (rv != 0) goto fail;
    set_log_prefix();
    PSI_INFO("node %u up at %s, view %u", po.id, po.my_addr, po.view.epoch);
    flush_view_note();
    start_reporter();
    return PS_OK;
fail:
    PSI_ERROR("ps_start failed: %s", ps_strerror(rv));
    shutdown_all();
    return rv;
}

/* ---- barriers, finalize -------------------------------------------------- */

int ps_barrier(int group)
{
    int rv;
    if (group < 1 || group > 7) return PS_ERR_INVAL;
    pthread_mutex_lock(&po.lock);
    if (po.state != ST_RUNNING) {
        pthread_mutex_unlock(&po.lock);
        return PS_ERR_STATE;
    }
    if (!psi_group_has(group, po.cfg.role)) {
        pthread_mutex_unlock(&po.lock);
        return PS_ERR_INVAL;
    }
    uint64_t seq = ++po.barrier_seq[group];
    if (po.sched) {
        psi_sched_on_barrier(po.sched, PSI_SCHEDULER_ID, group, seq);
    } else {
        psi_msg *m = psi_msg_new(PSI_MSG_BARRIER);
        if (!m) {
            pthread_mutex_unlock(&po.lock);
            return PS_ERR_NOMEM;
        }
        m->hdr.flags = PSI_F_CONTROL;
        m->hdr.arg = (uint32_t)group;
        m->hdr.key_lo = m->hdr.key_hi = seq;
        do_send_reliable(PSI_SCHEDULER_ID, m);
    }
    while (po.barrier_done[group] < seq && !po.fatal && po.state == ST_RUNNING)
        pthread_cond_wait(&po.cond, &po.lock);
    rv = po.barrier_done[group] >= seq ? PS_OK : (po.fatal ? po.fatal : PS_ERR_CLOSED);
    pthread_mutex_unlock(&po.lock);
    return rv;
}

/* Node: tell the scheduler we leave (handover: mid-run, see
 * psi_sched_on_leave), wait (bounded) for its ACK. */
static void do_leave(int handover)
{
    psi_msg *m = psi_msg_new(PSI_MSG_LEAVE);
    if (!m) return;
    m->hdr.flags = PSI_F_CONTROL;
    m->hdr.arg = handover ? 1u : 0u;
    if (psi_rel_track(po.rel, PSI_SCHEDULER_ID, m, psi_now_ms()) != 0) {
        psi_msg_free(m);
        return;
    }
    po.leave_ts = m->hdr.timestamp;
    do_send(PSI_SCHEDULER_ID, m);
    wait_for(leave_done, psi_now_ms() + LEAVE_WAIT_MS);
}

/* Scheduler: wait until every live node has left (dead ones are detected by
 * the heartbeat timeout, so this is bounded). */
static void do_wait_leaves(void)
{
    uint64_t deadline = psi_now_ms() + 3 * (uint64_t)po.cfg.hb_timeout_ms + LEAVE_WAIT_MS;
    while (psi_sched_active(po.sched) > 0 && psi_now_ms() < deadline) {
        struct timespec ts = psi_deadline_in(20);
        pthread_cond_timedwait(&po.cond, &po.lock, &ts);
    }
    /* Linger briefly so that resent LEAVEs still get their ACK. */
    uint64_t linger = psi_now_ms() + 50;
    while (psi_now_ms() < linger) {
        struct timespec ts = psi_deadline_in(10);
        pthread_cond_timedwait(&po.cond, &po.lock, &ts);
    }
}

static void shutdown_all(void)
{
    psi_reporter_stop(); /* both take po.lock: joined without it */
    psi_status_stop(po.status);
    po.status = NULL;
    pthread_mutex_lock(&po.lock);
    int had_timer = po.timer_started;
    po.timer_started = 0;
    po.timer_stop = 1;
    pthread_cond_broadcast(&po.cond);
    pthread_mutex_unlock(&po.lock);
    if (had_timer) pthread_join(po.timer, NULL);
    psi_beat_close(po.beat); /* its thread takes po.lock: not held here */
    po.beat = NULL;
    /* Other threads (the other transport's I/O thread, the kv timer, which
     * the shutdown hooks stop only below) may still try to send: from here
     * on their sends are dropped instead of reaching a transport being freed. */
    pthread_mutex_lock(&po.lock);
    po.detached = 1;
    pthread_mutex_unlock(&po.lock);
    if (po.ctl) po.ctl->ops->close(po.ctl, FLUSH_MS);
    if (po.tr) po.tr->ops->close(po.tr, FLUSH_MS);
    for (int stage = PSI_SHUTDOWN_APP; stage <= PSI_SHUTDOWN_DATA; stage++)
        for (int i = po.nshutdown - 1; i >= 0; i--)
            if (po.shutdown_stage[i] == stage) po.on_shutdown[i]();
    pthread_mutex_lock(&po.lock);
    po.tr = po.ctl = NULL;
    psi_rel_free(po.rel);
    po.rel = NULL;
    psi_sched_free(po.sched);
    po.sched = NULL;
    psi_view_free(&po.view);
    if (po.cfg.status_on) psi_rstore_free();
    po.state = ST_CLOSED;
    pthread_cond_broadcast(&po.cond);
    pthread_mutex_unlock(&po.lock);
}

int ps_finalize(void)
{
    int rv = PS_OK;
    pthread_mutex_lock(&po.lock);
    int running = po.state == ST_RUNNING, fatal = po.fatal;
    pthread_mutex_unlock(&po.lock);
    if (!running) return po.state == ST_CLOSED ? PS_OK : PS_ERR_STATE;
    if (!fatal && !po.left_early) rv = ps_barrier(PS_GROUP_ALL);
    pthread_mutex_lock(&po.lock);
    po.state = ST_CLOSING;
    if (po.sched) do_wait_leaves();
    else if (!po.fatal && !po.left_early) do_leave(0);
    if (po.fatal && rv == 0) rv = po.fatal;
    pthread_mutex_unlock(&po.lock);
    shutdown_all();
    return rv;
}

int psi_node_leave(void)
{
    pthread_mutex_lock(&po.lock);
    int rv = po.state != ST_RUNNING ? PS_ERR_STATE : po.fatal;
    if (rv == 0 && !po.left_early) {
        po.left_early = 1;
        do_leave(1);
        rv = po.leave_acked ? PS_OK : PS_ERR_TIMEOUT;
    }
    pthread_mutex_unlock(&po.lock);
    return rv;
}

int psi_node_serve(int phase, uint32_t epoch)
{
    pthread_mutex_lock(&po.lock);
    int rv = po.state != ST_RUNNING ? PS_ERR_STATE : po.fatal;
    psi_msg *m = rv == 0 ? psi_msg_new(PSI_MSG_SERVE) : NULL;
    if (rv == 0 && !m) rv = PS_ERR_NOMEM;
    if (m) {
        m->hdr.flags = PSI_F_CONTROL;
        m->hdr.arg = (uint32_t)phase;
        m->hdr.key_lo = m->hdr.key_hi = epoch;
        do_send_reliable(PSI_SCHEDULER_ID, m);
    }
    pthread_mutex_unlock(&po.lock);
    return rv;
}

int psi_node_my_state(uint32_t *epoch)
{
    pthread_mutex_lock(&po.lock);
    const psi_node *me = po.state == ST_RUNNING ? psi_view_find(&po.view, po.id) : NULL;
    int st = me ? me->alive : PSI_NODE_DEAD;
    *epoch = po.view.epoch;
    pthread_mutex_unlock(&po.lock);
    return st;
}

/* ---- queries ------------------------------------------------------------------ */

int ps_exit_code(int failed)
{
    if (!failed) return 0;
    pthread_mutex_lock(&po.lock);
    int ev = po.evicted;
    pthread_mutex_unlock(&po.lock);
    return ev ? PS_EXIT_EVICTED : 1;
}

ps_role ps_my_role(void) { return po.cfg.role; }
int ps_my_rank(void) { return po.rank; }
uint32_t ps_my_id(void) { return po.id; }
int ps_num_servers(void) { return (int)po.cfg.nservers; }
int ps_num_workers(void) { return (int)po.cfg.nworkers; }

void ps_on_view_change(ps_view_cb cb, void *arg)
{
    pthread_mutex_lock(&po.lock);
    po.view_cb = cb;
    po.view_arg = arg;
    pthread_mutex_unlock(&po.lock);
}

int ps_view(uint32_t *epoch, ps_node_info *out, int cap)
{
    pthread_mutex_lock(&po.lock);
    int n = (int)po.view.n;
    if (epoch) *epoch = po.view.epoch;
    for (int i = 0; i < n && i < cap; i++) {
        const psi_node *nd = &po.view.nodes[i];
        out[i].id = nd->id;
        out[i].role = (ps_role)nd->role;
        out[i].rank = nd->rank;
        out[i].alive = nd->alive != PSI_NODE_DEAD;
        out[i].joining = nd->alive == PSI_NODE_STANDBY || nd->alive == PSI_NODE_JOINING;
        snprintf(out[i].addr, sizeof(out[i].addr), "%s", nd->addr);
    }
    pthread_mutex_unlock(&po.lock);
    return n;
}
