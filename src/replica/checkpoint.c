/*
 * checkpoint.c -- checkpoints of a cluster's tables (ps/checkpoint.h): the
 * scheduler asks every live server, through the remote function
 * CKPT_FUNC, to write the keys it owns of every table it checkpoints, then
 * writes MANIFEST from their answers; a server restores a table by loading,
 * from every file of the newest valid checkpoint, the keys it now holds.
 *
 * Design.  Ownership is decided by the table's own ring and live chains,
 * the ones its workers route by (src/kv/table.c, src/replica/chain.c): a
 * key is written by the head of its segment's chain (a table without
 * replicas: its ring owner), so every key is written once even after a
 * failover or a join; it is loaded by every server of the first
 * 1 + replication of the chain, so a cluster with any number of servers
 * can resume.  Dense tables follow the
 * workers' contiguous split of their range over the servers instead (one
 * copy per key, the part's server).  A server snapshots a
 * table's owned blocks into memory under the table lock and writes the file
 * outside it.  A restore loads into a fresh store, then swaps it in under
 * the table lock, so a failed restore leaves the table untouched.
 *
 * The set of tables a server checkpoints is every fixed-width table it
 * opened (src/kv/plugins.c calls psi_ckpt_enable at open); tables live until
 * ps_finalize, so the pointers kept here stay valid while the remote
 * function can run.
 *
 * Lock order: ck.lock, then a table's lock.  Never: write a file or wait on
 * the network with a table lock held; change a table unless its whole
 * checkpoint was read and checked.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kv/kv_repl.h"
#include "node/node.h"
#include "replica/checkpoint.h"
#include "util/log.h"
#include "util/util.h"

#define CKPT_FUNC "psi.checkpoint.write"
#define PATH_CAP 4096

static struct {
    pthread_mutex_t lock;
    ps_table *tables[PSI_MAX_TABLES];
    int n;
    int registered;
} ck = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- ownership ------------------------------------------------------------------------ */

/* Whether this node serves `key` of a dense table: the workers' contiguous
 * split of its range (worker.c, dense_slices) over the table's ring
 * servers, in view order. */
static int dense_mine(const ps_table *t, uint64_t key)
{
    const ps_table_opts *o = &t->opts;
    uint64_t len = o->dense_hi - o->dense_lo, off = key - o->dense_lo;
    unsigned n = (unsigned)t->nservers;
#define PART_END(p) ((uint64_t)((unsigned __int128)len * (unsigned)(p) / n))
    unsigned p = (unsigned)((unsigned __int128)off * n / len);
    while (p + 1 < n && off >= PART_END(p + 1)) p++;
    while (p > 0 && off < PART_END(p)) p--;
#undef PART_END
    return t->servers[p] == psi_kv_id();
}

/* Whether this node writes (copies = 1) or loads (1 + replication) `key`
 * of table t (its lock held, its ring built): by the table's own ring and
 * live chains, exactly as the workers route.  Dense tables have one copy
 * per key. */
static int mine(const ps_table *t, uint64_t key, size_t copies)
{
    if (t->opts.dense_hi > t->opts.dense_lo) return dense_mine(t, key);
    uint32_t seg = psi_ring_seg_of(t->ring, key);
    if (!t->k) return psi_ring_seg_owner(t->ring, seg) == psi_kv_id();
    const uint32_t *c = psi_kv_chain(t, seg);
    for (size_t i = 0; i < copies && i <= (size_t)t->k; i++)
        if (c[i] == psi_kv_id()) return 1;
    return 0;
}

/* ---- server: writing a table ------------------------------------------------------------ */

typedef struct snap {
    const ps_table *t;
    size_t rec;
    uint8_t *recs;
    uint64_t n, cap;
} snap;

static int snap_one(void *arg, uint64_t key, void *block)
{
    snap *s = arg;
    if (!mine(s->t, key, 1)) return 0;
    if (s->n == s->cap) {
        uint64_t cap = s->cap ? 2 * s->cap : 1024;
        uint8_t *p = realloc(s->recs, cap * s->rec);
        if (!p) return PS_ERR_NOMEM;
        s->recs = p;
        s->cap = cap;
    }
    uint8_t *p = s->recs + s->n++ * s->rec;
    psi_put_u64(p, key);
    memcpy(p + 8, block, s->rec - 8);
    return 0;
}

static void table_meta(const ps_table *t, psi_ckpt_meta *m, uint64_t iter)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->table, sizeof(m->table), "%s", t->name);
    m->dtype = (uint32_t)t->opts.dtype;
    m->width = (uint32_t)t->opts.width;
    m->update = (uint32_t)t->opts.update;
    m->block_bytes = (uint32_t)psi_update_block_bytes(&t->upd);
    m->rank = (uint32_t)ps_my_rank();
    m->iter = iter;
    m->dense_lo = t->opts.dense_lo;
    m->dense_hi = t->opts.dense_hi;
}

/* Snapshot the owned keys of `t` under its lock, then write its file. */
static int write_table(ps_table *t, const char *ckdir, uint64_t iter, psi_ckpt_file *out)
{
    psi_ckpt_meta m;
    char name[PSI_CKPT_NAME_MAX], path[PATH_CAP];
    if (t->var) {
        PSI_ERROR("checkpoint: table %s has variable-length values, which checkpoints do not "
                  "support", t->name);
        return PS_ERR_INVAL;
    }
    table_meta(t, &m, iter);
    if (psi_ckpt_file_name(name, sizeof(name), t->name, m.rank) != 0 ||
        snprintf(path, sizeof(path), "%s/%s", ckdir, name) >= (int)sizeof(path))
        return PS_ERR_TOOBIG;
    snap s = {.t = t, .rec = 8 + (size_t)m.block_bytes};
    pthread_mutex_lock(&t->lock);
    psi_kv_train_wait(t); /* no push in part */
    int rv = psi_kv_ring(t);
    if (rv == 0)
        rv = t->store ? psi_store_foreach(t->store, snap_one, &s)
                      : psi_dense_foreach(t->dense, snap_one, &s);
    psi_kv_train_read_done(t);
    pthread_mutex_unlock(&t->lock);
    if (rv == 0) rv = psi_ckpt_write_file(path, &m, s.recs, s.n, out);
    free(s.recs);
    return rv;
}

/* Reply: u32 file count, then per file u8 name length, name, u64 size,
 * u64 records, u32 checksum. */
static int encode_reply(const psi_ckpt_file *f, int n, void **reply, size_t *len)
{
    uint8_t *p = malloc(4 + (size_t)n * (1 + PSI_CKPT_NAME_MAX + 20)), *q = p;
    if (!p) return PS_ERR_NOMEM;
    psi_put_u32(q, (uint32_t)n);
    q += 4;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(f[i].name);
        *q++ = (uint8_t)l;
        memcpy(q, f[i].name, l);
        psi_put_u64(q + l, f[i].size);
        psi_put_u64(q + l + 8, f[i].records);
        psi_put_u32(q + l + 16, f[i].crc);
        q += l + 20;
    }
    *reply = p;
    *len = (size_t)(q - p);
    return PS_OK;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return PS_OK;
    PSI_ERROR("checkpoint: cannot create folder %s: %s", path, strerror(errno));
    return PS_ERR_SYS;
}

/* The remote function: request = u64 iteration, then the folder's path. */
static int on_write(void *arg, uint32_t caller, const void *req, size_t len, void **reply,
                    size_t *reply_len)
{
    char dir[PATH_CAP], ckdir[PATH_CAP];
    ps_table *ts[PSI_MAX_TABLES];
    static psi_ckpt_file files[PSI_MAX_TABLES]; /* the executor thread runs one call at a time */
    if (len <= 8 || len - 8 >= sizeof(dir) || memchr((const uint8_t *)req + 8, 0, len - 8))
        return PS_ERR_PROTO;
    uint64_t iter = psi_get_u64(req);
    memcpy(dir, (const uint8_t *)req + 8, len - 8);
    dir[len - 8] = '\0';
    pthread_mutex_lock(&ck.lock);
    int n = ck.n;
    memcpy(ts, ck.tables, (size_t)n * sizeof(ts[0]));
    pthread_mutex_unlock(&ck.lock);
    int rv = psi_ckpt_dir_path(ckdir, sizeof(ckdir), dir, iter);
    if (rv == 0) rv = make_dir(ckdir);
    if (rv != 0) return rv;
    for (int i = 0; i < n && rv == 0; i++) rv = write_table(ts[i], ckdir, iter, &files[i]);
    if (rv == 0) rv = psi_ckpt_fsync_dir(ckdir);
    if (rv == 0) rv = encode_reply(files, n, reply, reply_len);
    PSI_INFO("checkpoint %" PRIu64 " for node %u: %d tables written to %s: %s", iter, caller, n,
             ckdir, ps_strerror(rv));
    return rv;
}

int psi_ckpt_enable(ps_table *t)
{
    int rv = PS_OK, known = 0;
    pthread_mutex_lock(&ck.lock);
    if (!ck.registered && (rv = ps_register(CKPT_FUNC, on_write, NULL)) == 0) ck.registered = 1;
    for (int i = 0; i < ck.n; i++) known |= ck.tables[i] == t;
    if (rv == 0 && !known) {
        if (ck.n == PSI_MAX_TABLES) rv = PS_ERR_TOOBIG;
        else ck.tables[ck.n++] = t;
    }
    pthread_mutex_unlock(&ck.lock);
    return rv;
}

/* ---- scheduler: ps_checkpoint -------------------------------------------------------------- */

/* Create DIR and its ckpt folder, and remove an old MANIFEST of the same
 * iteration, so the checkpoint is incomplete until this one finishes. */
static int prepare_dir(const char *dir, const char *ckdir)
{
    char path[PATH_CAP];
    int rv = make_dir(dir);
    if (rv == 0) rv = make_dir(ckdir);
    if (rv != 0) return rv;
    if (snprintf(path, sizeof(path), "%s/MANIFEST", ckdir) >= (int)sizeof(path))
        return PS_ERR_TOOBIG;
    if (unlink(path) != 0 && errno != ENOENT) {
        PSI_ERROR("checkpoint: cannot remove the old %s: %s", path, strerror(errno));
        return PS_ERR_SYS;
    }
    rv = psi_ckpt_fsync_dir(ckdir);
    return rv ? rv : psi_ckpt_fsync_dir(dir);
}

/* Append the files of one server's answer (see encode_reply) to m. */
static int add_reply(psi_ckpt_manifest *m, const ps_reply *r)
{
    const uint8_t *p = r->data, *end = p + r->len;
    uint32_t n = r->len >= 4 ? psi_get_u32(p) : UINT32_MAX;
    psi_ckpt_file *f = n <= PSI_MAX_TABLES
                           ? realloc(m->files, (m->nfiles + n + 1) * sizeof(*f)) : NULL;
    if (!f) return n <= PSI_MAX_TABLES ? PS_ERR_NOMEM : PS_ERR_PROTO;
    m->files = f;
    for (p += 4; n--; ) {
        f = &m->files[m->nfiles];
        memset(f, 0, sizeof(*f));
        size_t l = p < end ? *p++ : 0;
        if (l == 0 || l >= sizeof(f->name) || (size_t)(end - p) < l + 20) return PS_ERR_PROTO;
        memcpy(f->name, p, l);
        f->size = psi_get_u64(p + l);
        f->records = psi_get_u64(p + l + 8);
        f->crc = psi_get_u32(p + l + 16);
        p += l + 20;
        if (psi_ckpt_parse_name(f->name, f->table, sizeof(f->table), &f->rank) != 0)
            return PS_ERR_PROTO;
        m->nfiles++;
    }
    return p == end ? PS_OK : PS_ERR_PROTO;
}

/* Every server answered OK: build the manifest from their answers. */
static int collect(uint64_t iter, const ps_reply *rs, int n, psi_ckpt_manifest *m)
{
    char why[PSI_CKPT_WHY];
    int rv = PS_OK;
    memset(m, 0, sizeof(*m));
    m->iter = iter;
    m->nservers = (uint32_t)n;
    for (int i = 0; i < n && rv == 0; i++) {
        if (rs[i].status == PS_ERR_NOTFOUND)
            PSI_ERROR("checkpoint %" PRIu64 ": server node %u does not serve checkpoints: it "
                      "has opened no fixed-width table", iter, rs[i].node);
        else if (rs[i].status != 0)
            PSI_ERROR("checkpoint %" PRIu64 ": server node %u failed: %s (see its log)", iter,
                      rs[i].node, ps_strerror(rs[i].status));
        if ((rv = rs[i].status) == 0 && (rv = add_reply(m, &rs[i])) != 0)
            PSI_ERROR("checkpoint %" PRIu64 ": bad answer from server node %u", iter, rs[i].node);
    }
    if (rv == 0 && (rv = psi_ckpt_manifest_validate(m, why, sizeof(why))) != 0)
        PSI_ERROR("checkpoint %" PRIu64 ": %s (every server must open the same tables)", iter, why);
    return rv;
}

int ps_checkpoint(const char *dir, uint64_t iter)
{
    char ckdir[PATH_CAP];
    const ps_reply *rs;
    int n = 0;
    psi_ckpt_manifest m = {0};
    size_t dl = dir ? strlen(dir) : 0;
    if (!dl || psi_ckpt_dir_path(ckdir, sizeof(ckdir) - PSI_CKPT_NAME_MAX, dir, iter) != 0)
        return PS_ERR_INVAL;
    if (!psi_node_running() || psi_kv_role() == PS_ROLE_SERVER) return PS_ERR_STATE;
    int rv = prepare_dir(dir, ckdir);
    if (rv != 0) return rv;
    uint8_t *req = malloc(8 + dl);
    if (!req) return PS_ERR_NOMEM;
    psi_put_u64(req, iter);
    memcpy(req + 8, dir, dl);
    int64_t ts = ps_call_group(PS_GROUP_SERVERS, CKPT_FUNC, req, 8 + dl, NULL);
    free(req);
    if (ts < 0) return (int)ts;
    ps_call_wait(ts, &rs, &n);
    rv = n > 0 ? collect(iter, rs, n, &m) : PS_ERR_STATE;
    if (n == 0) PSI_ERROR("checkpoint %" PRIu64 ": no live server", iter);
    ps_call_release(ts);
    if (rv == 0) rv = psi_ckpt_manifest_write(ckdir, &m);
    if (rv == 0) PSI_INFO("checkpoint %s complete: %zu files from %d servers", ckdir, m.nfiles, n);
    psi_ckpt_manifest_free(&m);
    return rv;
}

/* ---- servers: ps_table_restore ------------------------------------------------------------- */

typedef struct loader {
    ps_table *t;
    size_t copies, bb;
    psi_store *store; /* one of these two, fresh, swapped in at the end */
    psi_dense *dense;
    uint64_t loaded;
} loader;

static void init_block(void *arg, uint64_t key, void *block)
{
    psi_update_init_block(arg, key, block);
}

static int load_one(void *arg, uint64_t key, const uint8_t *block)
{
    loader *l = arg;
    const ps_table_opts *o = &l->t->opts;
    if (l->dense && (key < o->dense_lo || key >= o->dense_hi)) {
        PSI_ERROR("restore of table %s: key %" PRIu64 " lies outside the dense range [%" PRIu64
                  ", %" PRIu64 ")", l->t->name, key, o->dense_lo, o->dense_hi);
        return PS_ERR_INVAL;
    }
    pthread_mutex_lock(&l->t->lock);
    int keep = psi_kv_ring(l->t) == 0 && mine(l->t, key, l->copies);
    pthread_mutex_unlock(&l->t->lock);
    if (!keep) return 0;
    void *b = l->store ? psi_store_upsert(l->store, key, NULL) : psi_dense_get(l->dense, key, 1);
    if (!b) {
        PSI_ERROR("restore of table %s: over its max_bytes %zu or out of memory", l->t->name,
                  o->max_bytes);
        return PS_ERR_TOOBIG;
    }
    memcpy(b, block, l->bb);
    l->loaded++;
    return 0;
}

static int loader_init(loader *l, ps_table *t)
{
    const ps_table_opts *o = &t->opts;
    memset(l, 0, sizeof(*l));
    l->t = t;
    l->copies = 1 + (size_t)(o->replication > 0 ? o->replication : 0);
    l->bb = psi_update_block_bytes(&t->upd);
    if (t->dense && (l->dense = psi_dense_new(o->dense_lo, o->dense_hi, l->bb))) {
        psi_dense_set_init(l->dense, init_block, &t->upd);
        psi_dense_set_limit(l->dense, o->max_bytes);
    } else if (!t->dense && (l->store = psi_store_new(l->bb))) {
        psi_store_set_limit(l->store, o->max_bytes);
    }
    return l->store || l->dense ? PS_OK : PS_ERR_NOMEM;
}

static void loader_fini(loader *l)
{
    psi_store_free(l->store);
    psi_dense_free(l->dense);
}

/* Load every file of table t listed in m into l's fresh store. */
static int load_files(loader *l, const char *ckdir, const psi_ckpt_manifest *m)
{
    psi_ckpt_meta want;
    char path[PATH_CAP], why[PSI_CKPT_WHY];
    size_t found = 0;
    table_meta(l->t, &want, m->iter);
    for (size_t i = 0; i < m->nfiles; i++) {
        if (strcmp(m->files[i].table, l->t->name) != 0) continue;
        found++;
        if (snprintf(path, sizeof(path), "%s/%s", ckdir, m->files[i].name) >= (int)sizeof(path))
            return PS_ERR_TOOBIG;
        why[0] = '\0';
        int rv = psi_ckpt_read_file(path, &want, load_one, l, NULL, NULL, why, sizeof(why));
        if (rv != 0) {
            PSI_ERROR("restore of table %s failed: %s", l->t->name, why[0] ? why : ps_strerror(rv));
            return rv;
        }
    }
    if (found) return PS_OK;
    PSI_ERROR("restore of table %s: the newest complete checkpoint %s has no file of it",
              l->t->name, ckdir);
    return PS_ERR_NOTFOUND;
}

static int first_key(void *arg, uint64_t key, void *block)
{
    (void)arg;
    (void)key;
    (void)block;
    return 1;
}

/* Whether the table holds no key yet (lock held). */
static int do_empty(const ps_table *t)
{
    if (t->store) return psi_store_size(t->store) == 0;
    return psi_dense_foreach(t->dense, first_key, NULL) == 0;
}

/* Swap the loaded store into the table if it is still empty. */
static int swap_in(loader *l)
{
    ps_table *t = l->t;
    pthread_mutex_lock(&t->lock);
    int ok = do_empty(t);
    if (ok && l->store) {
        psi_store *old = t->store;
        t->store = l->store;
        l->store = old;
    } else if (ok) {
        psi_dense *old = t->dense;
        t->dense = l->dense;
        l->dense = old;
    }
    pthread_mutex_unlock(&t->lock);
    if (!ok)
        PSI_ERROR("restore of table %s: it already holds keys (restore before any push)", t->name);
    return ok ? PS_OK : PS_ERR_STATE;
}

static int restore_server(ps_table *t, const char *ckdir, const psi_ckpt_manifest *m)
{
    loader l;
    int rv = loader_init(&l, t);
    if (rv != 0) return rv;
    if ((rv = load_files(&l, ckdir, m)) == 0 && (rv = swap_in(&l)) == 0)
        PSI_INFO("table %s restored from %s: %" PRIu64 " keys held here", t->name, ckdir, l.loaded);
    loader_fini(&l);
    return rv;
}

static int find_latest(const char *dir, char *ckdir, psi_ckpt_manifest *m)
{
    int rv = psi_ckpt_find(dir, ckdir, PATH_CAP, m);
    if (rv == PS_ERR_NOTFOUND) PSI_WARN("no complete checkpoint in %s", dir);
    return rv;
}

int ps_table_restore(ps_table *t, const char *dir, uint64_t *iter_out)
{
    char ckdir[PATH_CAP];
    psi_ckpt_manifest m;
    int rv;
    if (!t || !dir || !*dir) return PS_ERR_INVAL;
    if (t->var) {
        PSI_ERROR("table %s has variable-length values: checkpoints support fixed-width tables "
                  "only", t->name);
        return PS_ERR_INVAL;
    }
    int server = t->store || t->dense;
    if (server && (rv = psi_ckpt_enable(t)) != 0) return rv;
    if ((rv = find_latest(dir, ckdir, &m)) != 0) return rv;
    if (server) rv = restore_server(t, ckdir, &m);
    if (rv == 0 && iter_out) *iter_out = m.iter;
    psi_ckpt_manifest_free(&m);
    return rv;
}

int ps_checkpoint_latest(const char *dir, uint64_t *iter_out)
{
    char ckdir[PATH_CAP];
    psi_ckpt_manifest m;
    if (!dir || !*dir) return PS_ERR_INVAL;
    int rv = find_latest(dir, ckdir, &m);
    if (rv == 0 && iter_out) *iter_out = m.iter;
    if (rv == 0) psi_ckpt_manifest_free(&m);
    return rv;
}
