/*
 * ps/ps.h -- the public API of libps, a parameter server in C.
 *
 * A libps program runs as one of three roles: the scheduler (membership,
 * barriers, failure detection), a server (holds part of the model) or a
 * worker (computes, pushes and pulls).  The same binary usually plays every
 * role; `psrun` starts a local cluster and tells each process its role through
 * the environment (see README.md).  Every call here is thread-safe.
 *
 * Errors: every function that can fail returns 0 (PS_OK) or a negative
 * ps_err value; ps_strerror() names it.  Nothing here aborts the process on
 * bad input.
 */
#ifndef PS_PS_H
#define PS_PS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libps is built with -fvisibility=hidden: what is declared here is its ABI. */
#pragma GCC visibility push(default)

#define PS_VERSION_MAJOR 0
#define PS_VERSION_MINOR 1

/* One error enum for the whole library: 0 is success, failures negative. */
typedef enum ps_err {
    PS_OK = 0,
    PS_ERR_NOMEM = -1,     /* allocation failed */
    PS_ERR_INVAL = -2,     /* bad argument or flag */
    PS_ERR_PROTO = -3,     /* malformed or unexpected message */
    PS_ERR_TOOBIG = -4,    /* over a configured size cap */
    PS_ERR_TIMEOUT = -5,   /* a deadline passed */
    PS_ERR_CLOSED = -6,    /* the object was closed or is shutting down */
    PS_ERR_PEER = -7,      /* the remote peer failed or is unreachable */
    PS_ERR_TRANSPORT = -8, /* the transport (UCX) reported an error */
    PS_ERR_SYS = -9,       /* an operating-system call failed (errno kept) */
    PS_ERR_STATE = -10,    /* call not valid in the current state */
    PS_ERR_CONFIG = -11,   /* bad or missing configuration (environment) */
    PS_ERR_NOTFOUND = -12, /* no such node, table or key */
    PS_ERR_AUTH = -13,     /* a peer does not prove the cluster secret (PS_SECRET) */
    PS_ERR_EVICTED = -14,  /* the scheduler declared this node dead, or it was cut off */
} ps_err;

/* Human-readable text for an error code; never NULL. */
const char *ps_strerror(int err);

typedef enum ps_role {
    PS_ROLE_SCHEDULER = 0,
    PS_ROLE_SERVER = 1,
    PS_ROLE_WORKER = 2,
} ps_role;

/* Groups for barriers: a bit per role; PS_GROUP_ALL is every live node. */
enum {
    PS_GROUP_SCHEDULER = 1,
    PS_GROUP_SERVERS = 2,
    PS_GROUP_WORKERS = 4,
    PS_GROUP_ALL = 7,
};

/*
 * Start this process as a node of the cluster described by the environment
 * (PS_ROLE, PS_SCHEDULER=host:port, PS_NUM_SERVERS, PS_NUM_WORKERS,
 * optional PS_RANK, PS_HEARTBEAT_TIMEOUT_MS, PS_FAULT...; ps-lite's DMLC_*
 * names are accepted too).  Returns once every expected node has joined and
 * this node has the first cluster view, or with PS_ERR_TIMEOUT after
 * PS_CONNECT_TIMEOUT_MS (default 30000).  Call once per process.
 */
int ps_start(void);

/*
 * Leave the cluster cleanly: a barrier over every live node, then the
 * transport is closed.  Safe to call after ps_start() failed.
 */
int ps_finalize(void);

/*
 * The exit status for a program that `failed` (nonzero) or not: 0, or
 * PS_EXIT_EVICTED when this node was declared dead by the scheduler or cut
 * off from it (also after ps_finalize), else 1.  psrun names the first.
 * Typical last line: `return ps_exit_code(rv != 0 || ps_finalize() != 0);`
 */
#define PS_EXIT_EVICTED 75
int ps_exit_code(int failed);

/*
 * Leave a running cluster now, without waiting for the others (a server
 * handing its key ranges over, a worker done early).  The scheduler
 * publishes a view without this node: a server's ranges fall to their
 * replicas exactly as if it had died, with no timeout, and requests it did
 * not answer move there.  Refused (PS_ERR_STATE, logged) on a server that
 * holds keys of a table without replicas, which would be lost.  Then call
 * ps_finalize, which skips its final barrier.  0, or a ps_err.
 */
int ps_leave(void);

/*
 * Join a running cluster.  A node started after the cluster formed, without
 * PS_RANK, is admitted on standby: a server with a new rank, a worker with
 * the rank (so the data shard) of a worker that died or left, else a new
 * rank >= ps_num_workers() (the program decides what that one works on).
 * It opens its tables (all of them, with the same options as the others),
 * loads its data, then calls ps_join:
 *   - a server gets its share of every replicated table streamed to it by
 *     the current owners while they go on serving, then ownership switches
 *     in a view change with no request lost or applied twice
 *     (src/replica/join.c); servers join one at a time; tables without
 *     replicas, and BSP tables, stay on the servers of the first view;
 *   - a worker starts working: group calls reach it from then on.  Refused
 *     (PS_ERR_STATE) with a BSP table open: its iterations count every
 *     worker from the first one.
 * Returns 1 once this node serves or works, 0 at once on a node of the
 * first view (so every node may call it), PS_ERR_TIMEOUT after
 * PS_JOIN_TIMEOUT_MS (default 600000).  A late node's barriers count from
 * the cluster's current ones: its first ps_barrier is the next one the
 * others enter, so it skips the barriers it missed.
 */
int ps_join(void);

/* Who am I, and how big is the cluster (as configured, not as alive now). */
ps_role ps_my_role(void);
int ps_my_rank(void);      /* rank within my role, 0-based */
uint32_t ps_my_id(void);   /* node id given by the scheduler; scheduler is 0 */
int ps_num_servers(void);
int ps_num_workers(void);
const char *ps_role_name(ps_role role);

/*
 * Block until every live member of `group` (a PS_GROUP_* mask) has called
 * ps_barrier with the same group.  The caller must belong to the group.
 * Returns PS_ERR_CLOSED if the cluster is shutting down.
 */
int ps_barrier(int group);

/* A snapshot of one node as this process last heard of it. */
typedef struct ps_node_info {
    uint32_t id;
    ps_role role;
    int rank;
    int alive;           /* 0 once the scheduler declared it dead */
    int joining;         /* 1: a server that joined the running cluster and does
                          * not serve its share yet (ps_join) */
    char addr[64];       /* listen address, "host:port" */
} ps_node_info;

/*
 * The current view: its epoch (incremented on every membership change) and
 * up to `cap` nodes copied into `out`.  Returns the number of nodes in the
 * view (which may exceed `cap`), or a negative ps_err.
 */
int ps_view(uint32_t *epoch, ps_node_info *out, int cap);

/*
 * Called (from a library thread; keep it short, do not call ps_finalize from
 * it) every time a new view is installed.  `dead` lists the ids that the new
 * view declares dead and the previous one did not.
 */
typedef void (*ps_view_cb)(uint32_t epoch, const uint32_t *dead, int ndead,
                           void *arg);
void ps_on_view_change(ps_view_cb cb, void *arg);

/*
 * Remote functions.  A node registers a handler under a name; any node may
 * then call it on one node or on every live member of a group.  Calls are
 * tasks: ps_call returns a timestamp (>= 0, increasing per node) or a
 * negative ps_err, takes dependencies and a completion callback like
 * pushes (the `ps_table *` of the callback is NULL), and is resent until
 * answered; a call is executed at most once per target.  Handlers run on
 * one library thread per node, one at a time, and may push, pull, wait and
 * call others, but must not wait on a call to themselves.
 *
 * A handler returns 0 or a ps_err; it may set *reply to a malloc'ed buffer
 * of *reply_len bytes, which the library sends and frees.
 */
typedef int (*ps_func)(void *arg, uint32_t caller, const void *req, size_t req_len,
                       void **reply, size_t *reply_len);

/* Register `fn` under `name` (1..63 bytes) on this node; replaces an
 * earlier registration of the name.  May be called before ps_start. */
int ps_register(const char *name, ps_func fn, void *arg);

struct ps_task_opts;

/* Call `name` on node `node` (an id from ps_view). */
int64_t ps_call(uint32_t node, const char *name, const void *req, size_t len,
                const struct ps_task_opts *opts);
/* Call `name` on every live node of `group` (PS_GROUP_*), this node excluded. */
int64_t ps_call_group(int group, const char *name, const void *req, size_t len,
                      const struct ps_task_opts *opts);

/* One target's answer. */
typedef struct ps_reply {
    uint32_t node;
    int status;          /* the handler's return, or PS_ERR_NOTFOUND (no such
                          * function there), PS_ERR_PEER (the node died) */
    const void *data;    /* reply bytes, valid until ps_call_release */
    size_t len;
} ps_reply;

/* Block until call `ts` finished; returns 0 if every target returned 0,
 * else the first failure.  If `replies` is not NULL, *replies points to
 * *n answers (owned by the library until ps_call_release(ts)). */
int ps_call_wait(int64_t ts, const ps_reply **replies, int *n);
/* Free the answers of call `ts` (after ps_call_wait). */
void ps_call_release(int64_t ts);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#include "ps/kv.h"
#include "ps/checkpoint.h"
#include "ps/report.h"

#endif /* PS_PS_H */
