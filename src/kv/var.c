/*
 * var.c -- tables whose keys hold vectors of their own length (width 0).
 *
 * Wire: a push carries the keys, a LENS segment of u32 lengths and the
 * values back to back in VALS; a pull's answer carries LENS and VALS for
 * its keys in order.  On the worker, a slice's shared buffer holds keys,
 * lengths (padded to 8 bytes) and values; pull answers are kept per slice
 * until the last arrives, then assembled in the caller's key order into a
 * ps_var_vals.  On the server, each key's block holds a pointer to its own
 * heap array and its length; ADD adds element-wise (a push whose length
 * differs from a stored key's is refused before anything changes), ASSIGN
 * replaces.
 *
 * Never: trust LENS without checking that it matches VALS; apply part of
 * a refused push.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/server.h"
#include "kv/worker.h"
#include "util/log.h"
#include "util/util.h"

typedef struct var_val {
    void *data;
    uint32_t len;
} var_val;
_Static_assert(sizeof(var_val) == 16, "server.c sizes var blocks as 16 bytes");

#define PAD8(x) (((x) + 7) & ~(size_t)7)

/* ---- worker side ------------------------------------------------------------ */

int psi_kv_var_prepare(kv_req *r, const uint32_t *lens, const void *vals)
{
    size_t n = r->n, esz = r->t->vbytes;
    int rv = psi_kv_check_unique(r);
    if (rv != 0) return rv;
    size_t *coffs = malloc((n + 1) * sizeof(size_t));
    r->lens = malloc(PSI_MAX(n, 1) * sizeof(uint32_t));
    r->voffs = malloc((n + 1) * sizeof(size_t));
    if (!coffs || !r->lens || !r->voffs) {
        free(coffs);
        return PS_ERR_NOMEM;
    }
    coffs[0] = r->voffs[0] = 0;
    for (size_t i = 0; i < n; i++) coffs[i + 1] = coffs[i] + lens[i];
    for (size_t i = 0; i < n; i++) {
        r->lens[i] = lens[r->perm ? r->perm[i] : i];
        r->voffs[i + 1] = r->voffs[i] + r->lens[i];
    }
    if (!(r->vals = malloc(PSI_MAX(r->voffs[n] * esz, 1)))) {
        free(coffs);
        return PS_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        memcpy(r->vals + r->voffs[i] * esz,
               (const uint8_t *)vals + coffs[r->perm ? r->perm[i] : i] * esz, r->lens[i] * esz);
    free(coffs);
    return PS_OK;
}

static size_t slice_elems(const kv_req *r, const kv_slice *s)
{
    size_t e = 0;
    if (!(r->flags & PSI_F_PUSH)) return 0;
    for (size_t i = 0; i < s->nruns; i++) e += r->voffs[s->runs[i].end] - r->voffs[s->runs[i].begin];
    return e;
}

size_t psi_kv_var_buf_len(const kv_req *r, const kv_slice *s)
{
    if (!(r->flags & PSI_F_PUSH)) return s->nkeys * 8;
    return s->nkeys * 8 + PAD8(s->nkeys * 4) + slice_elems(r, s) * r->t->vbytes;
}

void psi_kv_var_fill(kv_req *r, kv_slice *s)
{
    size_t esz = r->t->vbytes;
    uint8_t *k = s->buf->data;
    uint8_t *l = k + s->nkeys * 8, *v = l + PAD8(s->nkeys * 4);
    s->elems = slice_elems(r, s);
    for (size_t i = 0; i < s->nruns; i++) {
        size_t b = s->runs[i].begin, e = s->runs[i].end;
        memcpy(k, r->keys + b, (e - b) * 8);
        k += (e - b) * 8;
        if (!(r->flags & PSI_F_PUSH)) continue;
        memcpy(l, r->lens + b, (e - b) * 4);
        l += (e - b) * 4;
        size_t bytes = (r->voffs[e] - r->voffs[b]) * esz;
        memcpy(v, r->vals + r->voffs[b] * esz, bytes);
        v += bytes;
    }
}

void psi_kv_var_segments(const kv_req *r, const kv_slice *s, psi_msg *m)
{
    if (!(r->flags & PSI_F_PUSH)) return;
    uint8_t *l = s->buf->data + s->nkeys * 8;
    m->seg[PSI_SEG_LENS] = l;
    m->hdr.seg_len[PSI_SEG_LENS] = s->nkeys * 4;
    m->seg[PSI_SEG_VALS] = l + PAD8(s->nkeys * 4);
    m->hdr.seg_len[PSI_SEG_VALS] = s->elems * r->t->vbytes;
    m->borrowed |= 1u << PSI_SEG_LENS | 1u << PSI_SEG_VALS;
}

/* Whether VALS holds exactly the elements LENS announces for n keys. */
static int lens_match(const psi_msg *m, size_t n, size_t esz)
{
    if (m->hdr.seg_len[PSI_SEG_LENS] != n * 4) return 0;
    const uint8_t *l = m->seg[PSI_SEG_LENS];
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) total += psi_get_u32(l + 4 * i);
    return total * esz == m->hdr.seg_len[PSI_SEG_VALS];
}

int psi_kv_var_check_answer(const kv_req *r, const kv_slice *s, const psi_msg *m)
{
    return lens_match(m, s->nkeys, r->t->vbytes) ? PS_OK : PS_ERR_PROTO;
}

/* Lengths of every key into out->lens (caller order); returns 0 or error. */
static void scatter_lens(kv_req *r, ps_var_vals *out)
{
    for (int i = 0; i < r->nslices; i++) {
        const kv_slice *s = &r->slices[i];
        const uint8_t *l = s->resp->seg[PSI_SEG_LENS];
        for (size_t j = 0; j < s->nruns; j++)
            for (size_t k = s->runs[j].begin; k < s->runs[j].end; k++, l += 4)
                out->lens[r->perm ? r->perm[k] : k] = psi_get_u32(l);
    }
}

static void scatter_vals(kv_req *r, ps_var_vals *out)
{
    size_t esz = r->t->vbytes;
    for (int i = 0; i < r->nslices; i++) {
        const kv_slice *s = &r->slices[i];
        const uint8_t *v = s->resp->seg[PSI_SEG_VALS];
        for (size_t j = 0; j < s->nruns; j++)
            for (size_t k = s->runs[j].begin; k < s->runs[j].end; k++) {
                size_t p = r->perm ? r->perm[k] : k;
                if (out->lens[p]) memcpy((uint8_t *)out->vals + out->offs[p] * esz, v, out->lens[p] * esz);
                v += out->lens[p] * esz;
            }
    }
}

int psi_kv_var_assemble(kv_req *r)
{
    ps_var_vals *out = r->vout;
    size_t n = r->n;
    out->lens = calloc(PSI_MAX(n, 1), sizeof(uint32_t));
    out->offs = calloc(PSI_MAX(n, 1), sizeof(size_t));
    if (!out->lens || !out->offs) goto nomem;
    scatter_lens(r, out);
    out->total = 0;
    for (size_t i = 0; i < n; i++) {
        out->offs[i] = out->total;
        out->total += out->lens[i];
    }
    if (!(out->vals = malloc(PSI_MAX(out->total * r->t->vbytes, 1)))) goto nomem;
    scatter_vals(r, out);
    return PS_OK;
nomem:
    ps_var_free(out);
    return PS_ERR_NOMEM;
}

/* ---- server side (table lock held) ------------------------------------------------ */

int psi_kv_var_check(const ps_table *t, const psi_msg *m)
{
    if (!(m->hdr.flags & PSI_F_PUSH)) return PS_OK;
    if (m->hdr.seg_len[PSI_SEG_AUX] != PSI_PUSH_AUX ||
        !lens_match(m, m->hdr.key_count, t->vbytes))
        return PS_ERR_PROTO;
    return PS_OK;
}

/* Element-wise a += b over n elements of the table's dtype. */
static void add_elems(ps_dtype dt, void *a, const void *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (dt == PS_F32) ((float *)a)[i] += ((const float *)b)[i];
        else if (dt == PS_F64) ((double *)a)[i] += ((const double *)b)[i];
        else ((int64_t *)a)[i] += ((const int64_t *)b)[i];
    }
}

/* ADD needs matching lengths for keys already stored: check them all first. */
static int check_lengths(const ps_table *t, const uint64_t *keys, const uint8_t *lens, size_t n)
{
    if (t->upd.kind != PS_UPDATE_ADD) return PS_OK;
    for (size_t i = 0; i < n; i++) {
        const var_val *v = psi_store_find(t->store, keys[i]);
        if (v && v->data && v->len != psi_get_u32(lens + 4 * i)) {
            PSI_ERROR("table %s: key %llu holds %u values, a push adds %u: push refused", t->name,
                      (unsigned long long)keys[i], v->len, psi_get_u32(lens + 4 * i));
            return PS_ERR_INVAL;
        }
    }
    return PS_OK;
}

static int set_one(ps_table *t, var_val *v, const uint8_t *src, uint32_t len)
{
    size_t bytes = (size_t)len * t->vbytes;
    if (v->data && v->len == len && t->upd.kind == PS_UPDATE_ADD) {
        add_elems(t->opts.dtype, v->data, src, len);
        return PS_OK;
    }
    void *d = bytes ? malloc(bytes) : NULL;
    if (bytes && !d) return PS_ERR_NOMEM;
    if (bytes) memcpy(d, src, bytes);
    free(v->data);
    v->data = d;
    v->len = len;
    return PS_OK;
}

int psi_kv_var_apply(ps_table *t, const psi_msg *m)
{
    size_t n = m->hdr.key_count;
    const uint64_t *keys = m->seg[PSI_SEG_KEYS];
    const uint8_t *lens = m->seg[PSI_SEG_LENS], *src = m->seg[PSI_SEG_VALS];
    int rv = check_lengths(t, keys, lens, n);
    for (size_t i = 0; rv == 0 && i < n; i++) {
        int inserted;
        var_val *v = psi_store_upsert(t->store, keys[i], &inserted);
        uint32_t len = psi_get_u32(lens + 4 * i);
        rv = v ? set_one(t, v, src, len) : PS_ERR_TOOBIG;
        src += (size_t)len * t->vbytes;
    }
    return rv;
}

void psi_kv_var_answer_pull(ps_table *t, const psi_msg *m)
{
    size_t n = m->hdr.key_count, total = 0;
    const uint64_t *keys = m->seg[PSI_SEG_KEYS];
    uint8_t *lens = malloc(PSI_MAX(n, 1) * 4);
    for (size_t i = 0; lens && i < n; i++) {
        const var_val *v = psi_store_find(t->store, keys[i]);
        uint32_t len = v ? v->len : 0;
        psi_put_u32(lens + 4 * i, len);
        total += len;
    }
    uint8_t *vals = lens ? malloc(PSI_MAX(total * t->vbytes, 1)) : NULL, *p = vals;
    psi_msg *r = vals ? psi_msg_new(PSI_MSG_DATA) : NULL;
    for (size_t i = 0; r && i < n; i++) {
        const var_val *v = psi_store_find(t->store, keys[i]);
        if (v && v->len) memcpy(p, v->data, (size_t)v->len * t->vbytes);
        p += v ? (size_t)v->len * t->vbytes : 0;
    }
    if (r && psi_msg_set_seg(r, PSI_SEG_LENS, lens, n * 4) == 0 &&
        psi_msg_set_seg(r, PSI_SEG_VALS, vals, total * t->vbytes) == 0) {
        psi_kv_reply_msg(t, m, r);
    } else {
        psi_msg_free(r);
        psi_kv_reply(t, m, PS_ERR_NOMEM, NULL, 0);
    }
    free(lens);
    free(vals);
}

static int free_one(void *arg, uint64_t key, void *block)
{
    (void)arg;
    (void)key;
    free(((var_val *)block)->data);
    return 0;
}

void psi_kv_var_free_store(ps_table *t)
{
    if (t->var && t->store) psi_store_foreach(t->store, free_one, NULL);
}
