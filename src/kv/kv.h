/*
 * kv.h -- internals shared by the key-value layer: the table object, the
 * registry of open tables, and the worker and server halves of the
 * push/pull protocol.
 *
 * Protocol (PSI_MSG_DATA).  A request carries the table id, the task's
 * timestamp, PSI_F_REQUEST plus PSI_F_PUSH and/or PSI_F_PULL, the sorted
 * keys of one server's slice and, for pushes, their values.  A push also
 * carries in its aux segment the sender's sequence number for that server
 * and table (1, 2, 3, ...): the server's vector clock holds the last
 * sequence number it applied per sender, applies a push only when it is the
 * next one (an early one is parked until its predecessor arrives), and
 * acknowledges without applying one it already applied.  So a worker may
 * resend any unacknowledged request at any time.  The response echoes the
 * timestamp and the key range (key_lo, key_hi: with the sender they name the
 * slice answered), sets PSI_F_RESPONSE, carries the status in `arg` and, for
 * pulls, the values in key order.  Replicated tables (opts.replication = k
 * > 0) add forwards between servers (PSI_F_REPL) and failover: see
 * src/replica/chain.c; and servers joining (src/replica/join.c): a server
 * answers PSI_ERR_MOVED for keys it handed over, and the worker sends them
 * again by the chains of the answer's view.
 *
 * Lock order: registry lock, then a table's lock, then the task queue's.
 */
#ifndef PSI_KV_KV_H
#define PSI_KV_KV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "kv/filter.h"
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
    /* replication (src/replica/chain.c), both sides when opts.replication > 0 */
    int k;                       /* backups per segment: opts.replication */
    int w;                       /* ids per segment in eff: k + 2 */
    uint32_t *eff;               /* per segment: its live chain (k + 1 ids, PSI_ID_NONE
                                  * pads), then the joining server if it will be in it */
    uint32_t joiner;             /* the server joining now (join.c), or PSI_ID_NONE */
    uint32_t *handed;            /* per segment: the live head that handed it to this
                                  * node (join.c), or PSI_ID_NONE; NULL: none did */
    kv_join *join;               /* the join protocol's state (join.c), server side */
    uint32_t eff_epoch;          /* view epoch eff was computed for */
    uint8_t *dead;               /* per node id: declared dead */
    /* server side */
    psi_store *store;
    psi_dense *dense;
    int64_t *applied;            /* per sender node id: last sequence applied */
    kv_parked *parked;           /* early pushes waiting for a predecessor */
    struct kv_refused **refused; /* per sender: its pushes that failed (server.c) */
    kv_bsp *bsp;                 /* BSP aggregation state (bsp.c) */
    uint64_t *fwd_seq;           /* per backup id: last forward sequence sent */
    kv_fwd *fwds;                /* forwards waiting for their backup's ack */
    kv_pend *pends;              /* pushes waiting for their forwards' acks */
    psi_store *seen;             /* (origin << 32 | sender) -> pushes a backup holds */
    kv_train *train;             /* the large push being received in fragments (train.c) */
    pthread_cond_t train_cv;     /* signalled when it is closed */
    int train_readers;           /* readers waiting for no train (foreach, checkpoint) */
    struct kv_resume *resume;    /* per sender: how far a broken train got (train.c) */
    psi_msg **deferred;          /* requests from a newer view than eff_epoch, or
                                  * behind an open train */
    size_t ndeferred;
    uint64_t deferred_bytes;     /* their payloads: bounded, like their number */
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

/* Keys then values of one slice, shared by every send of it. */
typedef struct kv_buf {
    atomic_int refs;
    _Alignas(16) uint8_t data[]; /* keys are read as u64 */
} kv_buf;

typedef struct kv_run {
    size_t begin, end; /* positions in the sorted key array */
} kv_run;

typedef struct kv_slice {
    uint32_t server;
    uint32_t origin;   /* push: the server its sequence number counts for */
    uint32_t via;      /* moved slice: the dead server it was moved off; 0 if not */
    int done;
    uint64_t seq;      /* push sequence number for this server */
    uint64_t iter;     /* BSP pull: iterations pushed to this server so far */
    size_t nkeys;
    kv_run *runs;
    size_t nruns;
    kv_buf *buf;
    uint64_t sent_ms;
    uint32_t moved;    /* refused with PSI_ERR_MOVED: the view epoch to resend it by */
    size_t elems;      /* variable-length push: values in this slice */
    psi_msg *resp;     /* variable-length pull: the answer, kept until done */
    const uint8_t *ext; /* zero-copy push: the values, in the caller's array (then
                         * buf holds keys and aux only) */
} kv_slice;

struct kv_req {
    kv_req *next;
    ps_table *t;
    int64_t ts;
    unsigned flags;    /* PSI_F_PUSH and/or PSI_F_PULL */
    size_t n;
    uint64_t *keys;    /* sorted */
    uint8_t *vals;     /* push values in sorted order */
    size_t *perm;      /* sorted position -> caller position; NULL: same */
    uint8_t *out;      /* caller's pull buffer */
    uint32_t *lens;    /* variable-length push: lengths in sorted order */
    size_t *voffs;     /* ... and element offsets of each key in vals (n + 1) */
    ps_var_vals *vout; /* variable-length pull: the caller's result */
    psi_chain *chain;  /* this request's own filters (ps_task_opts.filters), or NULL */
    const uint8_t *zc_vals; /* ps_task_opts.zero_copy: the caller's push values */
    kv_slice *slices;
    int nslices, pending;
    int status;
    uint64_t wbytes;   /* what it holds of the table's window (released when freed) */
};

/*
 * A push's aux segment (PSI_PUSH_AUX bytes, little-endian): its sequence
 * number; the server that number counts for (the receiver, or the dead
 * server it was first sent to) in the low 32 bits of the second word and,
 * for a push moved off a dead server, that server ("via": the one whose
 * keys the receiver took over; 0 otherwise) in the high 32 bits; and the
 * sender's low watermark for the origin (every push with a smaller or
 * equal number is acknowledged, so will never be resent).
 */
#define PSI_PUSH_AUX 24
/* A forward's aux (chain.c): the push's aux, then the worker that sent it. */
#define PSI_FWD_AUX 32
typedef struct kv_push_aux {
    uint64_t seq;
    uint32_t origin;
    uint32_t sender; /* forwards only */
    uint64_t lo;
    uint32_t via;    /* moved pushes: the dead server it was moved off */
} kv_push_aux;
void psi_kv_aux_put(uint8_t *p, const kv_push_aux *a);
void psi_kv_aux_get(const uint8_t *p, kv_push_aux *a);
void psi_kv_fwd_aux_put(uint8_t *p, const kv_push_aux *a);
void psi_kv_fwd_aux_get(const uint8_t *p, kv_push_aux *a);

/* Registry (table.c). */
ps_table *psi_kv_find(uint32_t id);
/* Timeout after which a worker resends an unacknowledged request. */
/* Bytes of requests a worker may have in flight per table (PS_WINDOW_BYTES;
 * 0: no bound).  A push or pull that would pass it waits (worker.c). */
uint64_t psi_kv_window_bytes(void);
uint64_t psi_kv_resend_ms(void);
/* Build t->ring from the current view's servers, once (table lock held). */
int psi_kv_ring(ps_table *t);
/* The ring t should have in view v: *next = a new ring (its server ids in
 * ids[0..*n), ids holding PSI_MAX_NODES) when its servers changed, else
 * NULL.  psi_kv_ring_install then makes it t's (freeing the old one). */
int psi_kv_ring_next(const ps_table *t, const psi_view *v, psi_ring **next, uint32_t *ids,
                     int *n);
void psi_kv_ring_install(ps_table *t, psi_ring *next, const uint32_t *ids, int n);

/* Worker half (worker.c), and what move.c (failover) shares of it, table
 * lock held unless said otherwise: */
kv_buf *psi_kv_buf_new(size_t len);
void psi_kv_buf_unref(void *arg);            /* a kv_buf, as a psi_msg on_free hook */
uint8_t *psi_kv_slice_aux(const kv_req *r, const kv_slice *s);
/* A fixed-width push slice's values (in its buffer, or the caller's). */
const uint8_t *psi_kv_slice_vals(const kv_req *r, const kv_slice *s);
size_t psi_kv_aux_len(const kv_req *r);
/* Slice r's sorted keys (r->keys, values `uvals` in sorted order) by the ring. */
int psi_kv_slice(kv_req *r, const uint8_t *uvals);
/* A message for one (re)send of slice s, borrowing its buffer (NULL: resend later). */
psi_msg *psi_kv_slice_msg(const kv_req *r, kv_slice *s);
/* Mark slice s answered with `status`; 1 when the request is done. */
int psi_kv_slice_done(kv_req *r, kv_slice *s, int status);
void psi_kv_unlink(ps_table *t, kv_req *r);
/* Free r and finish its task (table lock NOT held). */
void psi_kv_finish(kv_req *r, int status);
/* Zero-copy pushes (zcopy.c).  The caller's values for slice s, if s may
 * send them from there (`uvals` is r->zc_vals, one run, large); else NULL. */
const uint8_t *psi_kv_zcopy_vals(const kv_req *r, const kv_slice *s, const uint8_t *uvals);
/* From psi_kv_finish: 1 if a message still reads r's caller values, and r
 * was kept to be finished by psi_kv_zcopy_poll (table lock NOT held). */
int psi_kv_zcopy_linger(kv_req *r, int status);
/* Finish the kept requests that nothing reads any more; all of them if
 * `all` (table lock NOT held). */
void psi_kv_zcopy_poll(ps_table *t, int all);
/* move.c: slice again, at start, a request sliced before a server died. */
int psi_kv_redirect(kv_req *r);
/* move.c: send slice si, refused with PSI_ERR_MOVED, by the current chains;
 * messages to send go to msgs/to (at most cap); 1 when r is done. */
int psi_kv_reroute(kv_req *r, int si, psi_msg **msgs, uint32_t *to, int *nmsg, int cap);
/* The low watermark of the pushes counted for `origin` (worker.c). */
uint64_t psi_kv_low_mark(ps_table *t, uint32_t origin, uint64_t seq);
/* Worker half (worker.c). */
void psi_kv_worker_on_response(ps_table *t, psi_msg *m);
void psi_kv_worker_tick(ps_table *t, uint64_t now_ms);
void psi_kv_worker_on_view(ps_table *t, const uint32_t *dead, int ndead);
void psi_kv_worker_free(ps_table *t);

/* Server half (server.c). */
int psi_kv_server_init(ps_table *t);
void psi_kv_server_on_request(ps_table *t, psi_msg *m);
void psi_kv_server_free(ps_table *t);
/* Run the requests deferred until this node installed their view, or
 * behind a train. */
void psi_kv_server_run_deferred(ps_table *t);
/* What train.c shares of server.c (table lock held): keep m to run later
 * (returns 1: it always takes m, and drops it, for its sender to resend,
 * when it cannot be kept); answer a
 * push applied before (1 if m was kept); apply the sender's parked pushes
 * that are next now; remember that push seq of sender failed with st. */
int psi_kv_defer(ps_table *t, psi_msg *m);
int psi_kv_answer_dup(ps_table *t, psi_msg *m, uint64_t seq, const kv_push_aux *a);
void psi_kv_drain(ps_table *t, uint32_t sender);
void psi_kv_refused_note(ps_table *t, uint32_t sender, uint64_t seq, int st);

/* Trains (train.c): a large push's values in fragments, applied as they
 * arrive.  Worker: whether message m of table t goes as a train (it is
 * then marked PSI_F_TRAIN), and psi_kv_send, which sends a marked message
 * as its head and fragments (anything else as it is). */
size_t psi_kv_train_frag_bytes(void);
int psi_kv_train_ok(const ps_table *t);
int psi_kv_train_wanted(const ps_table *t, const psi_msg *m);
int psi_kv_send(uint32_t to, psi_msg *m);
/* Server, table lock held: a train's head (a valid push request) and its
 * fragments; both take m. */
void psi_kv_train_open(ps_table *t, psi_msg *m, uint64_t seq, const kv_push_aux *a);
void psi_kv_train_frag(ps_table *t, psi_msg *m);
/* Any other request while a train is open: deferred until it is closed. */
void psi_kv_train_hold(ps_table *t, psi_msg *m);
/* Server, table lock NOT held: close a train that stalled or whose sender died. */
void psi_kv_train_tick(ps_table *t, uint64_t now_ms);
void psi_kv_train_on_view(ps_table *t, const uint32_t *dead, int ndead);
void psi_kv_train_free(ps_table *t);
/* Wait until no train is open (table lock held; never on the I/O thread),
 * for readers outside the request stream (foreach, checkpoints); no train
 * opens until the reader calls psi_kv_train_read_done (lock still held). */
void psi_kv_train_wait(ps_table *t);
void psi_kv_train_read_done(ps_table *t);

/* BSP (bsp.c), server side, table lock held. */
int psi_kv_bsp_init(ps_table *t);
void psi_kv_bsp_free(ps_table *t);
/* Aggregate a push that is next in its sender's order. */
int psi_kv_bsp_push(ps_table *t, const psi_msg *m, uint64_t iter);
/* Answer a pull now if iteration `min_iter` is applied, else keep it;
 * returns 1 if it kept `m` (the caller must not free it). */
int psi_kv_bsp_pull(ps_table *t, psi_msg *m, uint64_t min_iter);
/* Replicated tables: keep push `m` (for iteration `iter`; src 0, or for a
 * push moved off a dead server, via << 32 | origin) until its iteration is
 * durable; 0 if it could not be kept (nothing applied: the worker resends). */
int psi_kv_bsp_push_kept(ps_table *t, psi_msg *m, uint64_t iter, uint64_t src);
int psi_kv_bsp_push_via(ps_table *t, const psi_msg *m, uint64_t iter, uint64_t src);
/* Whether iteration (src, iter) still holds a push from `sender`. */
int psi_kv_bsp_waiting(const ps_table *t, uint64_t src, uint32_t sender, uint64_t iter);
/* The last iteration of this server's own that is applied and durable. */
uint64_t psi_kv_bsp_durable_iter(const ps_table *t);
/* The backups acknowledged an applied iteration (chain.c calls this). */
void psi_kv_bsp_durable(ps_table *t, void *iteration);
/* Workers died: fewer contributions complete an iteration. */
void psi_kv_server_on_view(ps_table *t, const uint32_t *dead, int ndead);
/* Answer a pull request (server.c). */
void psi_kv_answer_pull(ps_table *t, const psi_msg *m);
/* Answer a request whose push part is settled with `status` (server.c);
 * 1 if it was kept to be answered later (BSP), 0 if the caller owns it. */
int psi_kv_answer(ps_table *t, psi_msg *m, int status, uint64_t iter);
/* Blocks of the keys of a push, created at their initial value (server.c). */
int psi_kv_blocks(ps_table *t, const uint64_t *keys, size_t n, void **blocks);

/*
 * Chain replication (src/replica/chain.c).  Both sides: */
int psi_repl_init(ps_table *t);
void psi_repl_free(ps_table *t);
/* Recompute t->ring (a server joined) and t->eff from the current view,
 * `dead` adding to the dead it names (table lock held).  With old_rows, it
 * gets (malloc'ed) each new segment's row of eff before the change. */
int psi_repl_compute(ps_table *t, const uint32_t *dead, int ndead, uint32_t **old_rows);
/* Row of segment `seg` in eff: its live chain (k + 1 ids, PSI_ID_NONE for
 * missing members; [0] is the head), then at [k + 1] the server joining
 * the cluster if the segment will be its (join.c), else PSI_ID_NONE. */
static inline const uint32_t *psi_repl_chain(const ps_table *t, uint32_t seg)
{
    return t->eff + (size_t)seg * (size_t)t->w;
}
/* Whether this node heads the segments of every one of the sorted keys. */
int psi_repl_heads(ps_table *t, const uint64_t *keys, size_t n);
/* Send `to` an empty forward marked `kind` (join.c) on this node's ordered
 * forward stream to it: it arrives after everything sent there before. */
int psi_repl_send_marker(ps_table *t, uint32_t to, int kind);
/* Whether a forward numbered at or below snap[backup] is unacknowledged. */
int psi_repl_fwds_below(const ps_table *t, const uint64_t *snap);
/* Server side, table lock held.  After push `m` (from sender, counted for
 * `a->origin`) was applied with status `st`: forward the new blocks of its
 * keys to their backups; returns 1 if `m` is kept until they acknowledge
 * (then answered with psi_kv_answer), 0 if the caller answers now. */
int psi_repl_after_apply(ps_table *t, psi_msg *m, int st, const kv_push_aux *a);
/* Whether push (origin, sender, seq) is waiting for its backups. */
int psi_repl_pending(const ps_table *t, uint32_t origin, uint32_t sender, uint64_t seq);
/* A push counted for a dead server (origin != this node): apply it unless
 * this node holds it already (as that server's backup); answers or keeps m. */
void psi_repl_takeover_push(ps_table *t, psi_msg *m, const kv_push_aux *a);
/* BSP: forward the blocks of the keys iteration `iteration` touched (the
 * keys of `sum`), with the pushes it summed, to every backup of this node's
 * segments; 1 if psi_kv_bsp_durable will follow their acknowledgements, 0
 * if there was nothing to send (the caller makes it durable now). */
int psi_repl_bsp_forward(ps_table *t, psi_store *sum, psi_msg **msgs, int nmsgs,
                         void *iteration);
/* Record that `via` forwarded push (origin, sender, seq) here... */
void psi_repl_note_held(ps_table *t, uint32_t via, uint32_t origin, uint32_t sender,
                        uint64_t seq, uint64_t lo);
/* ... or that this node applied the part of it moved here off `via`. */
void psi_repl_note_applied(ps_table *t, uint32_t via, uint32_t origin, uint32_t sender,
                           uint64_t seq, uint64_t lo);
/* Store the blocks of a forward (PSI_F_REPL request) as a backup. */
int psi_repl_apply(ps_table *t, const psi_msg *m);
/* A backup acknowledged a forward. */
void psi_repl_on_ack(ps_table *t, const psi_msg *m);
/* Resend forwards unacknowledged for the resend timeout. */
void psi_repl_tick(ps_table *t, uint64_t now_ms);
/* A new view (servers died or joined): give up forwards to the dead,
 * recompute the chains, copy the segments this node now heads to their new
 * backups, run the join protocol and the requests that waited for this view. */
void psi_repl_server_on_view(ps_table *t, const uint32_t *dead, int ndead);

/*
 * A server joining a running cluster (src/replica/join.c), server side,
 * table lock held unless said otherwise. */
#define PSI_MARK_COPIED 1  /* forward marker: what this head holds of the joiner's
                            * future segments was all sent before it */
#define PSI_MARK_DRAINED 2 /* forward marker: the joiner's new segments' forwards
                            * of this old head are acknowledged everywhere */
#define PSI_MARK_HANDED 3  /* forward of entries: the pushes this old head held
                            * when it handed segments over (chain.c, HANDED) */
/* Send `to` the pushes this node holds (its clock per worker, its seen
 * sets), as a forward of entries marked `marker` (0: after a copy). */
int psi_repl_send_held(ps_table *t, uint32_t to, int marker);
/* Internal status: these keys are not (or no longer) this server's; the
 * worker sends them again by the chains of the view in the answer's epoch. */
#define PSI_ERR_MOVED (-101)
int psi_join_init(ps_table *t);
void psi_join_free(ps_table *t);
/* After a view change (`old`: the rows before): markers, drains, waits. */
void psi_join_on_view(ps_table *t, const uint32_t *old);
/* A forward marker from m->hdr.sender arrived, in its stream's order. */
void psi_join_on_marker(ps_table *t, const psi_msg *m);
/* A backup acknowledged a forward: a drain may be complete. */
void psi_join_on_ack(ps_table *t);
/* Whether this node, a new head, still waits for old heads to drain:
 * requests wait with it (server.c). */
int psi_join_waiting(const ps_table *t);
/* Whether that wait just ended (once): then run the deferred requests. */
int psi_join_take_run(ps_table *t);
/* The open tables (at most cap), for ps_join (table.c). */
int psi_kv_tables(ps_table **out, int cap);

/* Variable-length values (var.c).  Worker side: */
int psi_kv_var_prepare(kv_req *r, const uint32_t *lens, const void *vals);
size_t psi_kv_var_buf_len(const kv_req *r, const kv_slice *s);
void psi_kv_var_fill(kv_req *r, kv_slice *s);
void psi_kv_var_segments(const kv_req *r, const kv_slice *s, psi_msg *m);
int psi_kv_var_check_answer(const kv_req *r, const kv_slice *s, const psi_msg *m);
int psi_kv_var_assemble(kv_req *r);
/* Server side (table lock held): */
int psi_kv_var_check(const ps_table *t, const psi_msg *m);
int psi_kv_var_apply(ps_table *t, const psi_msg *m);
void psi_kv_var_answer_pull(ps_table *t, const psi_msg *m);
void psi_kv_var_free_store(ps_table *t);
/* Keys must be unique in a push: PS_ERR_INVAL (logged) otherwise. */
int psi_kv_check_unique(const kv_req *r);

/* Reply to request `req` with `status` and optional values (copied),
 * through table `t`'s filters (t may be NULL: no filters). */
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

#endif /* PSI_KV_KV_H */
