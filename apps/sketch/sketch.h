/*
 * sketch.h -- the pieces of pssketch (apps/sketch), a CountMin sketch held
 * by the servers of a libps cluster (the third application of the OSDI 2014
 * Parameter Server paper).
 *
 * cm.c: the sketch's geometry (width and depth from eps and delta), its row
 * hashes (pairwise independent, one seed pair per row), the table key of a
 * cell, and the batch that aggregates a worker's inserts before a push.
 * stream.c: the input streams (flight routes, "word TAB count" lists
 * replayed in a shuffled order, one key per line), read into a key table of
 * distinct keys and a stream of indices into it.
 * pssketch.c: flags, roles, the insert loop, --check, --query and the
 * summary.
 *
 * A key is identified by the 64-bit ps_hash_bytes of its text: two distinct
 * keys of one run share a hash with probability about n^2 / 2^65 (1e-10
 * for the 74K SUBTLEX words), which the check would count as one key.
 */
#ifndef SKETCH_H
#define SKETCH_H

#include <stddef.h>
#include <stdint.h>

#include "ps/ps.h"

/* ---- cm.c: geometry, hashing, batches ----------------------------------------------- */

typedef struct cm_geom {
    uint32_t width, depth;
    double eps, delta;            /* the guarantee: est <= true + eps * N with
                                   * probability >= 1 - delta, per key */
    uint64_t a[32], b[32];        /* row r's hash: ((a x + b) mod (2^61 - 1)) mod width */
} cm_geom;

#define CM_MAX_DEPTH 32
#define CM_MAX_WIDTH (1u << 26)

/* Fill g from eps, delta (width = ceil(e / eps), depth = ceil(ln(1 / delta)))
 * or, when width and depth are nonzero, from those (eps = e / width, delta =
 * exp(-depth)); seed picks the row hashes.  0, or -1 with *why set. */
int cm_geom_init(cm_geom *g, double eps, double delta, uint32_t width, uint32_t depth,
                 uint64_t seed, const char **why);
/* The column of key hash h in row r. */
uint32_t cm_col(const cm_geom *g, uint32_t r, uint64_t h);
/* The table key of cell (r, c): spread over the ring by ps_hash_key. */
uint64_t cm_cell_key(const cm_geom *g, uint32_t r, uint32_t c);

/*
 * A batch: the inserts of up to `cap` stream items, aggregated per key
 * (cm_batch_add), then expanded into the distinct cells they touch with
 * their summed counts (cm_batch_cells), ready for one push.
 */
typedef struct cm_batch {
    const cm_geom *g;
    size_t cap, items;            /* stream items added since the last reset */
    uint64_t *kcount;             /* per key index: count in this batch */
    uint32_t *touched;            /* key indices with kcount > 0 */
    size_t ntouched;
    size_t ncells, slots;         /* cells filled; open-addressing slots */
    uint64_t *skey;               /* slot -> cell key (0: empty) */
    uint32_t *spos;               /* slot -> the cell's index in cells / vals */
    uint64_t *cells;              /* the push: ncells keys and values */
    int64_t *vals;
} cm_batch;

int cm_batch_init(cm_batch *b, const cm_geom *g, size_t nkeys, size_t cap);
void cm_batch_free(cm_batch *b);
static inline void cm_batch_add(cm_batch *b, uint32_t k)
{
    if (b->kcount[k]++ == 0) b->touched[b->ntouched++] = k;
    b->items++;
}
/* Expand the touched keys (hashes `hash`) into b->cells / b->vals. */
void cm_batch_cells(cm_batch *b, const uint64_t *hash);
void cm_batch_reset(cm_batch *b);

/* ---- stream.c: inputs ---------------------------------------------------------------- */

typedef enum sk_format { SK_ROUTES = 0, SK_COUNTS, SK_LINES } sk_format;

typedef struct sk_stream {
    size_t nkeys;                 /* distinct keys of this worker's shard */
    uint64_t *hash;               /* key index -> ps_hash_bytes of its text */
    uint64_t *count;              /* key index -> occurrences in the shard */
    uint32_t *items;              /* the stream: key indices in arrival order */
    size_t n;                     /* stream length (items) */
    size_t cap_keys, cap_items;
    struct sk_index *index;       /* hash -> key index while loading */
} sk_stream;

int sk_format_parse(const char *s, sk_format *f);
/* Read shard `shard` of `nshards` of `path` (lines with index % nshards ==
 * shard; every line is validated).  Counts lists are expanded and shuffled
 * with `seed`.  0, or -1 with a message in err. */
int sk_stream_load(const char *path, sk_format f, int shard, int nshards, uint64_t seed,
                   sk_stream *s, char *err, size_t errlen);
/* Check that `path` can be opened and is not empty (every role, before
 * joining the cluster).  0, or -1 with a message in err. */
int sk_file_check(const char *path, char *err, size_t errlen);
void sk_stream_free(sk_stream *s);
/* The hash of a key's text, as the stream uses it. */
uint64_t sk_key_hash(const char *text, size_t len);

/* ---- pssketch.c / work.c: the job --------------------------------------------------- */

typedef struct sk_cfg {
    double eps, delta;
    uint32_t width, depth;
    size_t batch;                 /* stream items per push */
    int inflight;                 /* pushes in flight per worker */
    int passes;                   /* replay the shard this many times */
    const char *input, *query;
    sk_format fmt;
    int check, replicas, json;
    uint64_t seed;
    double progress_s;            /* seconds between progress lines (0: none) */
} sk_cfg;

/* Per-worker figures, pushed to the "stats" table (one row per worker and
 * phase) and summed or maxed by worker 0. */
enum { ST_ITEMS, ST_ACKED, ST_FAILED, ST_ELAPSED_US, ST_PUSHES, ST_CELLS, ST_DEAD_MS,
       ST_RECOVERED_MS, ST_KEYS, ST_NSTAT };
enum { ST_CHECKED = 0, ST_UNDER, ST_WITHIN, ST_ERR_SUM, ST_ERR_MAX, ST_EXACT_MASS };

typedef struct sk_job {
    const sk_cfg *cfg;
    cm_geom g;
    ps_table *cm, *exact, *stats;
    sk_stream s;
    int64_t st[ST_NSTAT];         /* phase 1 (inserts) of this worker */
    int64_t chk[ST_NSTAT];        /* phase 2 (check) of this worker */
} sk_job;

/* work.c */
int sk_insert(sk_job *j);                       /* the stream into the sketch */
int sk_push_exact(sk_job *j);                   /* --check: local exact counts */
int sk_check(sk_job *j, int64_t total);         /* --check: after the barrier */
int sk_query(sk_job *j);                        /* --query: worker 0 */
int sk_row_mass(sk_job *j, int64_t *lo, int64_t *hi); /* min / max row total */
int sk_push_stats(sk_job *j, int phase, const int64_t *v);
int sk_pull_stats(sk_job *j, int phase, int64_t *sum, int64_t *max);
void sk_on_view(uint32_t epoch, const uint32_t *dead, int ndead, void *arg);
double sk_now(void);
uint64_t sk_wall_ms(void);

#endif /* SKETCH_H */
