/*
 * worker.h -- the worker half of a table: a request sliced by the ring and
 * sent to each slice's server (worker.c), moved when a server dies or
 * hands keys over (move.c), pushed from the caller's memory (zcopy.c), with
 * variable-length values (var.c) and sent as a train when large (send.c).
 *
 * A worker numbers its pushes per server and table (push_seq) and resends
 * every unacknowledged slice after the resend timeout; a server answers
 * PSI_ERR_MOVED for keys it handed over, and the worker sends them again by
 * the chains of the answer's view.
 *
 * Table lock held unless said otherwise.
 */
#ifndef PSI_KV_WORKER_H
#define PSI_KV_WORKER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/table.h"

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
    uint32_t resends;  /* the timer's resends of it: each waits twice as long (worker.c) */
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
    struct psi_route_order *order; /* keys and perm are its (shared, read-only), or NULL */
    uint8_t *out;      /* caller's pull buffer */
    uint32_t *lens;    /* variable-length push: lengths in sorted order */
    size_t *voffs;     /* ... and element offsets of each key in vals (n + 1) */
    ps_var_vals *vout; /* variable-length pull: the caller's result */
    psi_chain *chain;  /* this request's own filters (ps_task_opts.filters), or NULL */
    const uint8_t *zc_vals; /* ps_task_opts.zero_copy: the caller's push values */
    kv_slice *slices;
    int nslices, pending;
    int status;
    int lingered;      /* finished by psi_kv_zcopy_poll: do not keep it again */
    struct kv_place *places; /* zero-copy pull: answers received straight into
                              * the caller's array (zcopy.c) */
    uint64_t wbytes;   /* what it holds of the table's window (released when freed) */
};

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
/* The low watermark of the pushes counted for `origin` (worker.c). */
uint64_t psi_kv_low_mark(ps_table *t, uint32_t origin, uint64_t seq);
/* Keys must be unique in a push: PS_ERR_INVAL (logged) otherwise. */
int psi_kv_check_unique(const kv_req *r);
/* Worker half's entry points (worker.c; table lock NOT held). */
void psi_kv_worker_on_response(ps_table *t, psi_msg *m);
void psi_kv_worker_tick(ps_table *t, uint64_t now_ms);
void psi_kv_worker_free(ps_table *t);

/* Failover and hand-over (move.c).  A view changed (lock NOT held): move
 * the slices sent to the dead to the new heads of their keys. */
void psi_kv_worker_on_view(ps_table *t, const uint32_t *dead, int ndead);
/* Slice again, at start, a request sliced before a server died. */
int psi_kv_redirect(kv_req *r);
/* Send slice si, refused with PSI_ERR_MOVED, by the current chains;
 * messages to send go to msgs/to (at most cap); 1 when r is done. */
int psi_kv_reroute(kv_req *r, int si, psi_msg **msgs, uint32_t *to, int *nmsg, int cap);

/* Zero-copy pushes (zcopy.c).  The caller's values for slice s, if s may
 * send them from there (`uvals` is r->zc_vals, one run, large); else NULL. */
const uint8_t *psi_kv_zcopy_vals(const kv_req *r, const kv_slice *s, const uint8_t *uvals);
/* From psi_kv_finish: 1 if a message still reads r's caller values, and r
 * was kept to be finished by psi_kv_zcopy_poll (table lock NOT held). */
int psi_kv_zcopy_linger(kv_req *r, int status);
/* Finish the kept requests that nothing reads any more; all of them if
 * `all` (table lock NOT held). */
void psi_kv_zcopy_poll(ps_table *t, int all);
/* Zero-copy pulls: the transport's place callback for this table's answer
 * `h` (table lock NOT held; 1: out is filled, see transport.h). */
struct psi_place;
int psi_kv_zcopy_place(ps_table *t, const psi_hdr *h, struct psi_place *out);
/* Whether answer m may settle slice s: not while another answer is being
 * received into the part of the caller's array that s answers (lock
 * held). */
int psi_kv_zcopy_answer_ok(const kv_req *r, const kv_slice *s, const psi_msg *m);
void psi_kv_zcopy_req_free(kv_req *r);

/* Variable-length values (var.c), worker side. */
int psi_kv_var_prepare(kv_req *r, const uint32_t *lens, const void *vals);
size_t psi_kv_var_buf_len(const kv_req *r, const kv_slice *s);
void psi_kv_var_fill(kv_req *r, kv_slice *s);
void psi_kv_var_segments(const kv_req *r, const kv_slice *s, psi_msg *m);
int psi_kv_var_check_answer(const kv_req *r, const kv_slice *s, const psi_msg *m);
int psi_kv_var_assemble(kv_req *r);

/* Trains (train.c): a large push's values in fragments.  Whether message
 * m of table t goes as a train (it is then marked PSI_F_TRAIN); the
 * fragment size (PS_PUSH_FRAG; 0: no trains). */
size_t psi_kv_train_frag_bytes(void);
int psi_kv_train_wanted(const ps_table *t, const psi_msg *m);
/* Whether a push slice of these many value and key bytes is large enough
 * for a train (and t may send trains). */
int psi_kv_train_size(const ps_table *t, uint64_t val_bytes, uint64_t key_bytes);
/* Send m to node `to` (send.c; table lock NOT held): a message marked
 * PSI_F_TRAIN as its head and fragments, anything else as it is.  Takes m;
 * 0 or the transport's error. */
int psi_kv_send(uint32_t to, psi_msg *m);

#endif /* PSI_KV_WORKER_H */
