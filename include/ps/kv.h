/*
 * ps/kv.h -- tables of (u64 key, value) pairs held by the servers, and the
 * asynchronous tasks that push to and pull from them.  Included by ps/ps.h.
 *
 * Every node (scheduler, servers, workers) opens a table with the same name
 * and options, then calls ps_barrier(PS_GROUP_ALL) before the first push:
 * servers hold the data and apply the table's update function, workers push
 * and pull.  Keys are spread over the servers by a consistent-hash ring;
 * applications hash raw feature ids into the key space with ps_hash_key().
 *
 * Tasks.  ps_push, ps_pull and ps_pushpull never block: each returns the
 * task's timestamp (>= 0, increasing per table on this node) or a negative
 * ps_err.  ps_wait(t, ts) blocks until that task finished and returns its
 * status.  Push copies the keys and values before returning, so the caller
 * may reuse them at once (unless it asks for a zero-copy push:
 * ps_task_opts.zero_copy); pull writes into `vals` until the task finishes
 * (large answers are received straight into it, so its contents are
 * undefined while the task runs and after it fails), so that buffer must
 * stay valid, and untouched, until then.  A task starts only once the
 * table's consistency model and its own dependencies (opts->deps) allow it.
 * Completion callbacks run on a library thread: keep them short, and do not
 * call ps_wait from them.
 *
 * Pushes are atomic: a pull, ps_table_foreach or a checkpoint sees a push
 * whole or not at all.  A large push to a table without replication, BSP,
 * filters or a CUSTOM update travels as a train of fragments (PS_PUSH_FRAG
 * bytes each, 248 KiB by default) that the server applies as they arrive
 * while its other requests to the table wait; if the pushing worker dies in
 * the middle of one, the part received stays applied.
 */
#ifndef PS_KV_H
#define PS_KV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libps is built with -fvisibility=hidden: what is declared here is its ABI. */
#pragma GCC visibility push(default)

typedef enum ps_dtype { PS_F32 = 0, PS_F64 = 1, PS_I64 = 2 } ps_dtype;

/* How the servers apply a pushed value g to the stored value w. */
typedef enum ps_update {
    PS_UPDATE_ADD = 0,    /* w += g (the default) */
    PS_UPDATE_ASSIGN,     /* w = g */
    PS_UPDATE_SGD,        /* w -= lr * g */
    PS_UPDATE_ADAGRAD,    /* n += g^2; w -= lr * g / (sqrt(n) + eps) */
    PS_UPDATE_FTRL,       /* FTRL-proximal (McMahan et al. 2013): alpha=lr, beta, l1, l2 */
    PS_UPDATE_PROX,       /* w = soft_threshold(w - lr * g, lr * l1) / (1 + lr * l2) */
    PS_UPDATE_CUSTOM,     /* opts.custom */
} ps_update;

typedef enum ps_init {
    PS_INIT_ZERO = 0,
    PS_INIT_CONST,        /* every value = init_value */
    PS_INIT_RANDOM,       /* uniform in [-init_scale, init_scale], a function of
                           * (init_seed, key, index): the same on every server */
} ps_init;

typedef enum ps_consistency {
    PS_SEQUENTIAL = 0,    /* task t starts after task t-1 finished (tau = 0) */
    PS_BOUNDED_DELAY,     /* task t starts after every task <= t - tau - 1 finished */
    PS_EVENTUAL,          /* no ordering between tasks (tau = infinity) */
} ps_consistency;

/*
 * A user-defined update function (PS_UPDATE_CUSTOM).  Values are f32/f64/i64
 * per the table's dtype; `state` is state_bytes of per-key scratch, zeroed
 * when the key is first created.  apply() runs on a server's I/O thread with
 * no lock held that it could deadlock on; it must not block.
 */
typedef struct ps_update_ops {
    size_t state_bytes;
    /* Apply the pushed values `push[0..width)` to `val[0..width)`. */
    void (*apply)(void *arg, uint64_t key, void *val, void *state, const void *push,
                  int width);
    void *arg;
} ps_update_ops;

typedef struct ps_table_opts {
    ps_dtype dtype;               /* default PS_F32 */
    int width;                    /* values per key, 1..2^26 (default 1); 0: every key
                                   * holds a vector of its own length, pushed and
                                   * pulled with ps_push_var / ps_pull_var (update
                                   * ADD: element-wise, lengths must match; ASSIGN:
                                   * replaces) */
    ps_update update;             /* default PS_UPDATE_ADD */
    double lr, l1, l2, beta, eps; /* update parameters (defaults 0.1, 0, 0, 1, 1e-8) */
    const ps_update_ops *custom;  /* for PS_UPDATE_CUSTOM */
    ps_init init;                 /* default PS_INIT_ZERO */
    double init_value, init_scale;
    uint64_t init_seed;
    ps_consistency consistency;   /* default PS_EVENTUAL */
    int tau;                      /* for PS_BOUNDED_DELAY */
    int bsp;                      /* servers aggregate each iteration's pushes of
                                   * all live workers, then apply the sum once;
                                   * a worker's pull waits until every iteration
                                   * it pushed is applied (see ps_push) */
    int replication;              /* k: each key range is also held by the next k
                                   * live servers on the ring; a push is acknowledged
                                   * once all of them have it, and when a server dies
                                   * its successor takes over with nothing acknowledged
                                   * lost (fixed-width sparse tables; default 0) */
    uint64_t dense_lo, dense_hi;  /* if hi > lo: keys are [lo, hi), stored in flat
                                   * arrays instead of a hash table */
    size_t max_bytes;             /* per server memory cap for this table; 0 = none */
} ps_table_opts;

/* Fill `o` with the defaults above. */
void ps_table_opts_init(ps_table_opts *o);

typedef struct ps_table ps_table;

/* Open (or, if this node already opened it, return) the table `name` (at
 * most 63 bytes).  0, PS_ERR_INVAL for bad options (logged), PS_ERR_STATE
 * before ps_start. */
int ps_table_open(const char *name, const ps_table_opts *opts, ps_table **out);

/* Per-task options; NULL means none. */
typedef struct ps_task_opts {
    const int64_t *deps;          /* start only after these tasks of this table */
    int ndeps;
    void (*done)(ps_table *t, int64_t ts, int status, void *arg); /* completion */
    void *arg;
    /* Override the table's filters for this request: "" or "none" sends it
     * unfiltered; otherwise a spec of stateless filters (zstd, fp16, int8).
     * NULL: the table's chain.  Not for remote calls. */
    const char *filters;
    /* Push, pushpull: nonzero lets the library send large values straight
     * from the caller's `vals` instead of copying them first (where one
     * server's values are one contiguous run of `vals` of at least 64 KiB:
     * keys handed over sorted, fixed width, no filters, few keys, and for
     * pushpull a pull buffer other than `vals`; otherwise they are copied
     * as usual).  The caller must then leave `vals` unchanged and
     * allocated until the task finished (ps_wait returned it or the done
     * callback ran); the task may finish a little after its last answer
     * if a resend of it was still queued.  Keys are still copied. */
    int zero_copy;
} ps_task_opts;

/*
 * Push `n` keys with `n * width` values (dtype of the table).  Keys may be
 * in any order; a key repeated within one push is an error (PS_ERR_INVAL).
 * Returns the timestamp or a negative ps_err (only workers may push).
 * In a BSP table a worker's k-th push is its contribution to iteration k:
 * every worker pushes once per iteration (n may be 0).
 */
int64_t ps_push(ps_table *t, const uint64_t *keys, size_t n, const void *vals,
                const ps_task_opts *opts);
/* Pull the values of `n` keys into vals[n * width] (caller's key order;
 * repeated keys allowed).  Keys never pushed read as the initializer. */
int64_t ps_pull(ps_table *t, const uint64_t *keys, size_t n, void *vals,
                const ps_task_opts *opts);
/* Push `push_vals`, then pull the updated values into `pull_vals` (may be
 * the same buffer), as one round trip per server. */
int64_t ps_pushpull(ps_table *t, const uint64_t *keys, size_t n, const void *push_vals,
                    void *pull_vals, const ps_task_opts *opts);
/* Range variants: every key in [lo, hi), values in key order. */
int64_t ps_push_range(ps_table *t, uint64_t lo, uint64_t hi, const void *vals,
                      const ps_task_opts *opts);
int64_t ps_pull_range(ps_table *t, uint64_t lo, uint64_t hi, void *vals,
                      const ps_task_opts *opts);

/* Values of a variable-length table (width 0), in the caller's key order:
 * key i has lens[i] values starting at element offs[i] of vals. */
typedef struct ps_var_vals {
    uint32_t *lens;
    size_t *offs;
    void *vals;
    size_t total;                 /* elements in vals */
} ps_var_vals;

/* Push key i with lens[i] values; vals holds them back to back. */
int64_t ps_push_var(ps_table *t, const uint64_t *keys, size_t n, const uint32_t *lens,
                    const void *vals, const ps_task_opts *opts);
/* Pull into *out, filled when the task finishes (free with ps_var_free).
 * Keys never pushed have length 0. */
int64_t ps_pull_var(ps_table *t, const uint64_t *keys, size_t n, ps_var_vals *out,
                    const ps_task_opts *opts);
void ps_var_free(ps_var_vals *v);

/*
 * Filters.  A chain per table cuts traffic: `spec` is a comma list of
 *   keycache      a key list sent before travels as a 128-bit signature;
 *   zstd          lossless compression (keys delta-encoded first), skipped
 *                 per segment when it does not pay;
 *   fp16 | int8   lossy quantization of f32 values with stochastic rounding:
 *                 relative error <= 2^-10 (fp16, normal range), absolute
 *                 error <= max|v| / 127 per message (int8), unbiased;
 *   sigmod=T      a worker sends a key's pushed value only once what it has
 *                 accumulated since it last sent that key exceeds T in some
 *                 component (the rest is kept and sent later: sums stay
 *                 exact once flushed).
 * Set it on the workers (servers reverse whatever arrives and answer pulls
 * through the same chain if they set it too).  Call after ps_table_open,
 * before the first push; "" removes every filter.  PS_ERR_INVAL (logged) on
 * a bad spec.  sigmod and keep apply to ps_push only (not ps_pushpull).
 */
int ps_table_set_filters(ps_table *t, const char *spec);
/* Push now whatever sigmod is still holding back (a normal push task). */
int64_t ps_push_flush(ps_table *t, const ps_task_opts *opts);

/* A user filter on the worker: called for every (key, values) of a push
 * before anything is sent; return 0 to drop the pair (the KKT filter of
 * the linear app is one).  NULL removes it. */
typedef int (*ps_keep_fn)(void *arg, uint64_t key, const void *vals);
int ps_table_set_keep(ps_table *t, ps_keep_fn fn, void *arg);

/* Traffic of this node for one table, before (raw) and after (wire) the
 * filters.  Keys dropped by filters count in keys_filtered. */
typedef struct ps_traffic {
    uint64_t msgs_sent, bytes_sent_raw, bytes_sent_wire, keys_sent;
    uint64_t msgs_recv, bytes_recv_wire, bytes_recv_raw, keys_recv;
    uint64_t keys_filtered, filter_errors;
} ps_traffic;
int ps_table_traffic(ps_table *t, ps_traffic *out);

/* Block until task `ts` finished; returns its status (0 or a ps_err).  It
 * may return while that task's completion callback is still running on a
 * library thread: do not free what the callback uses right after ps_wait. */
int ps_wait(ps_table *t, int64_t ts);
/* Block until every task of this table issued so far finished. */
int ps_wait_all(ps_table *t);

/* Spread a raw id (feature id, word id, ...) over the u64 key space. */
uint64_t ps_hash_key(uint64_t raw);
/* The same for a byte string (feature names, crosses). */
uint64_t ps_hash_bytes(const void *data, size_t len);

/* Counters of this node for the table (for tests and progress lines). */
typedef struct ps_table_stats {
    uint64_t keys;                /* server: keys stored */
    uint64_t bytes;               /* server: bytes of the store */
    uint64_t pushes_applied, pushes_deduped, resends;
    /* chain replication: worker slices moved to a dead server's successor;
     * server forwards sent to backups, keys copied to new backups, and
     * pushes for a dead server this server applied / already held */
    uint64_t slices_moved, forwards, keys_copied, takeovers_applied, takeovers_held;
    /* keys the applied pushes carried, and keys forwarded to backups (without
     * copies): in a BSP table the second is well under k times the first
     * (replication after aggregation forwards each touched key once) */
    uint64_t keys_pushed, keys_forwarded;
    /* server: pushes that came as trains of fragments (large pushes,
     * PS_PUSH_FRAG), and those of them that lost a fragment and waited for
     * the worker's resend to complete them */
    uint64_t trains, trains_stalled;
    /* worker: pull answers of at least 256 KiB of values received straight
     * into the caller's array (the default TCP transport; one contiguous
     * run of it, no filters) */
    uint64_t pulls_in_place;
} ps_table_stats;
int ps_table_stats_get(ps_table *t, ps_table_stats *out);

/*
 * Server side: call fn(arg, key, vals) for every key this server serves now
 * (in a replicated table, the key ranges it heads, not those it backs up),
 * with the key's values (width values of the table's dtype).  Runs under
 * the table's lock, so it sees whole pushes only and fn must not call into
 * the table.  Order is unspecified.  Returns 0, fn's nonzero return (which
 * stops the walk), or PS_ERR_STATE on a node that is not a server.  Not for
 * variable-length tables.
 */
int ps_table_foreach(ps_table *t, int (*fn)(void *arg, uint64_t key, const void *vals),
                     void *arg);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* PS_KV_H */
