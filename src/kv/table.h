/*
 * table.h -- the table object of the key-value layer (struct ps_table), the
 * registry of open tables (table.c) and what every half of a table shares:
 * the ring and the live chain of each of its segments, the push's aux
 * header (push_aux.h), traffic accounting and replies (send.c).
 *
 * Design.  A table's fields are grouped by the feature that owns them: the
 * worker half (win, tq, reqs, push_seq), the server half (pipe: its request
 * stages; store, dense, applied, parked, refused, deferred), BSP (bsp.c),
 * trains (trains: train.c),
 * filters, and replication (repl: the plug-in's ops, installed at open by
 * plugins.c; rs: its state, which only the plug-in touches, except the
 * chains kv routes by, read with psi_kv_chain).  k, eff_epoch and dead are
 * shared by the worker half and the plug-in and stay at the top level.
 *
 * Lock order: registry lock, then a table's lock, then the task queue's;
 * t->win.lock is a leaf.  Never: touch a table's fields without its lock,
 * except the immutable ones set at open (name, id, opts, upd, vbytes, var,
 * repl).
 */
#ifndef PSI_KV_TABLE_H
#define PSI_KV_TABLE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "kv/env.h"
#include "kv/filter.h"
#include "kv/push_aux.h"
#include "kv/store.h"
#include "kv/update.h"
#include "node/ring.h"
#include "node/view.h"
#include "ps/ps.h"
#include "task/task.h"
#include "wire/msg.h"

#define PSI_TABLE_NAME_MAX 64
#define PSI_MAX_TABLES 256

typedef struct kv_req kv_req;
typedef struct kv_parked kv_parked;
typedef struct kv_bsp kv_bsp;
typedef struct kv_fwd kv_fwd;
typedef struct kv_pend kv_pend;
typedef struct kv_join kv_join;
typedef struct kv_train kv_train;
struct psi_kv_repl_ops; /* kv/kv_repl.h */

/* Internal status: these keys are not (or no longer) this server's; the
 * worker sends them again by the chains of the view in the answer's epoch. */
#define PSI_ERR_MOVED (-101)

struct ps_table {
    char name[PSI_TABLE_NAME_MAX];
    uint32_t id;
    ps_table_opts opts;
    psi_update upd;
    size_t vbytes;               /* bytes of one key's values (one element if var) */
    int var;                     /* width 0: variable-length values (var.c) */
    pthread_mutex_t lock;
    /* worker side */
    struct {                     /* backpressure: bytes of requests in flight */
        pthread_mutex_t lock;    /* a leaf lock: nothing is taken while held */
        pthread_cond_t cv;
        uint64_t bytes;
    } win;
    psi_tq *tq;
    kv_req *reqs;                /* in flight, for responses and resends */
    uint64_t *push_seq;          /* per server node id: last sequence sent */
    psi_ring *ring;              /* the servers of the first view, and those that joined
                                  * since if the table is replicated (both sides) */
    uint32_t servers[PSI_MAX_NODES]; /* server ids of the ring */
    int nservers;
    /* replication, both sides when opts.replication > 0: the plug-in's ops
     * (NULL: not replicated; set once at open, never changed) */
    const struct psi_kv_repl_ops *repl;
    int k;                       /* backups per segment: opts.replication */
    uint32_t eff_epoch;          /* view epoch rs.eff was computed for */
    uint8_t *dead;               /* per node id: declared dead */
    struct {                     /* the plug-in's state (src/replica) */
        int w;                   /* ids per segment in eff: k + 2 */
        uint32_t *eff;           /* per segment: its live chain (k + 1 ids, PSI_ID_NONE
                                  * pads), then the joining server if it will be in it */
        uint32_t joiner;         /* the server joining now (join.c), or PSI_ID_NONE */
        uint32_t *handed;        /* per segment: the live head that handed it to this
                                  * node (join.c), or PSI_ID_NONE; NULL: none did */
        kv_join *join;           /* the join protocol's state (join.c), server side */
        uint64_t *fwd_seq;       /* per backup id: last forward sequence sent */
        kv_fwd *fwds;            /* forwards waiting for their backup's ack */
        kv_pend *pends;          /* pushes waiting for their forwards' acks */
        psi_store *seen;         /* (origin << 32 | sender) -> pushes a backup holds */
        uint64_t pruned_ms;      /* when the last view change pruned the store (prune.c) */
        int prunes;              /* prunes made since then, of prune.c's delays */
    } rs;
    /* server side */
    struct {                     /* the request pipeline, chosen at open (server.c) */
        int (*gate[6])(ps_table *t, psi_msg *m); /* in order; 1: took m */
        int ngates;
        int (*apply)(ps_table *t, const psi_msg *m, uint64_t seq); /* a push, next in order */
        int (*settle)(ps_table *t, psi_msg *m, int st, uint64_t seq, const kv_push_aux *a);
        int (*pull_here)(ps_table *t, const psi_msg *m); /* 0: answer PSI_ERR_MOVED */
    } pipe;
    psi_store *store;
    struct psi_hints *hints;     /* slot hints of the key lists seen (hints.h) */
    psi_dense *dense;
    int64_t *applied;            /* per sender node id: last sequence applied */
    kv_parked *parked;           /* early pushes waiting for a predecessor */
    struct kv_refused **refused; /* per sender: its pushes that failed (server.c) */
    kv_bsp *bsp;                 /* BSP aggregation state (bsp.c) */
    struct {                     /* large pushes in fragments (train.c) */
        kv_train *open;          /* the one being received, or NULL */
        pthread_cond_t cv;       /* signalled when it is closed */
        int readers;             /* readers waiting for no train (foreach, checkpoint) */
        struct kv_resume *resume; /* per sender: how far a broken train got */
    } trains;
    struct {                     /* requests from a newer view than eff_epoch, behind a
                                  * join's drain or an open train (server.c) */
        psi_msg **msgs;
        size_t n;
        uint64_t bytes;          /* their payloads: bounded, like their number */
    } deferred;
    ps_table_stats stats;
    /* filters (filter.c; drop filters in worker.c) */
    psi_chain *chain;
    double sigmod;               /* > 0: significantly-modified threshold */
    psi_store *sigmod_resid;     /* per key: what was pushed but not yet sent */
    ps_keep_fn keep;
    void *keep_arg;
    ps_traffic traffic;
    kv_req *lingering;           /* zero-copy requests answered, waiting for their
                                  * messages to let go of the caller's values (zcopy.c) */
};

/* Row of segment `seg` of a replicated table: its live chain (k + 1 ids,
 * PSI_ID_NONE for missing members; [0] is the head), then at [k + 1] the
 * server joining the cluster if the segment will be its, else PSI_ID_NONE.
 * Table lock held. */
static inline const uint32_t *psi_kv_chain(const ps_table *t, uint32_t seg)
{
    return t->rs.eff + (size_t)seg * (size_t)t->rs.w;
}

/* Registry (table.c). */
ps_table *psi_kv_find(uint32_t id);
/* A DATA message for table t (NULL: none here by its id), as the node's
 * handler hands it over: a response to the worker half, a forward's
 * acknowledgement to replication, a request to the server half.  Takes m. */
void psi_kv_deliver(ps_table *t, psi_msg *m);
/* A table of this node's role (psi_kv_role()) outside the registry, and its
 * end: for tests that drive tables without a node (env.h).  ps_table_open
 * is the way in for everyone else. */
int psi_kv_table_new(const char *name, const ps_table_opts *o, ps_table **out);
void psi_kv_table_free(ps_table *t);
/* The open tables (at most cap). */
int psi_kv_tables(ps_table **out, int cap);
/* Timeout after which a worker resends an unacknowledged request. */
uint64_t psi_kv_resend_ms(void);
/* Bytes of requests a worker may have in flight per table (PS_WINDOW_BYTES;
 * 0: no bound).  A push or pull that would pass it waits (worker.c). */
uint64_t psi_kv_window_bytes(void);
/* Build t->ring from the current view's servers, once (table lock held). */
int psi_kv_ring(ps_table *t);
/* The ring t should have in view v: *next = a new ring (its server ids in
 * ids[0..*n), ids holding PSI_MAX_NODES) when its servers changed, else
 * NULL.  psi_kv_ring_install then makes it t's (freeing the old one). */
int psi_kv_ring_next(const ps_table *t, const psi_view *v, psi_ring **next, uint32_t *ids,
                     int *n);
void psi_kv_ring_install(ps_table *t, psi_ring *next, const uint32_t *ids, int n);
/* The table-open hook (plugins.c, the one place that names kv's plug-ins):
 * install replication's ops on a replicated table and register a server's
 * fixed-width tables for checkpoints.  0 or the error that fails the open
 * (the table is then freed, with t->repl->free if it was installed). */
int psi_kv_plugins_open(ps_table *t);

/* Whether the table's pushes may come as trains: fixed width, no
 * replication, no BSP, no CUSTOM update (train.c). */
int psi_kv_train_ok(const ps_table *t);

/* Messages in and out of a table (send.c).  Reply to request `req` with
 * `status` and optional values (copied), through table `t`'s filters (t
 * may be NULL: no filters). */
void psi_kv_reply(ps_table *t, const psi_msg *req, int status, const void *vals, size_t len);
/* Send `m` (segments filled by the caller; owned by this call) as the
 * answer to `req`. */
void psi_kv_reply_msg(ps_table *t, const psi_msg *req, psi_msg *m);
/* Traffic accounting (table lock held): `m` is about to be sent / was
 * received, before (wire = 0) or after (wire = 1) the filters. */
void psi_kv_count_sent(ps_table *t, const psi_msg *m, int wire);
void psi_kv_count_recv(ps_table *t, const psi_msg *m, int wire);
/* Reverse the filters of a received message (table lock held), counting
 * it; 0 or the decode error (logged and counted). */
int psi_kv_decode(ps_table *t, psi_msg *m);

#endif /* PSI_KV_TABLE_H */
