/*
 * view.c -- encoding, decoding and queries of cluster views and join
 * requests (see view.h).
 *
 * View encoding: u32 epoch, u32 n, then n records of
 *   u32 id, u8 role, u8 alive, i32 rank, u16 addr_len, addr bytes.
 * Join encoding: u8 role, i32 rank, u16 addr_len, addr bytes.
 * Addresses are at most PSI_ADDR_MAX - 1 bytes and carry no NUL.
 */
#include <stdlib.h>
#include <string.h>

#include "node/view.h"
#include "util/util.h"

#define NODE_FIXED 12 /* id 4, role 1, alive 1, rank 4, addr_len 2 */

int psi_view_encode(const psi_view *v, uint8_t **buf, size_t *len)
{
    size_t n = 8;
    for (uint32_t i = 0; i < v->n; i++) n += NODE_FIXED + strlen(v->nodes[i].addr);
    uint8_t *p = malloc(n), *q = p;
    if (!p) return PS_ERR_NOMEM;
    psi_put_u32(q, v->epoch);
    psi_put_u32(q + 4, v->n);
    q += 8;
    for (uint32_t i = 0; i < v->n; i++) {
        const psi_node *nd = &v->nodes[i];
        size_t al = strlen(nd->addr);
        psi_put_u32(q, nd->id);
        psi_put_u8(q + 4, nd->role);
        psi_put_u8(q + 5, nd->alive);
        psi_put_u32(q + 6, (uint32_t)nd->rank);
        psi_put_u16(q + 10, (uint16_t)al);
        memcpy(q + NODE_FIXED, nd->addr, al);
        q += NODE_FIXED + al;
    }
    *buf = p;
    *len = n;
    return PS_OK;
}

/* Decode one address of `al` bytes at p into dst; rejects NULs and overlong. */
static int get_addr(const uint8_t *p, size_t al, char *dst)
{
    if (al >= PSI_ADDR_MAX || memchr(p, 0, al)) return PS_ERR_PROTO;
    memcpy(dst, p, al);
    dst[al] = '\0';
    return PS_OK;
}

static int decode_node(const uint8_t **pp, const uint8_t *end, psi_node *nd)
{
    const uint8_t *p = *pp;
    if ((size_t)(end - p) < NODE_FIXED) return PS_ERR_PROTO;
    nd->id = psi_get_u32(p);
    nd->role = psi_get_u8(p + 4);
    nd->alive = psi_get_u8(p + 5);
    nd->rank = (int32_t)psi_get_u32(p + 6);
    size_t al = psi_get_u16(p + 10);
    if (nd->role > PS_ROLE_WORKER || nd->alive > PSI_NODE_JOINING || nd->rank < 0) return PS_ERR_PROTO;
    if ((size_t)(end - p - NODE_FIXED) < al) return PS_ERR_PROTO;
    if (get_addr(p + NODE_FIXED, al, nd->addr) != 0) return PS_ERR_PROTO;
    *pp = p + NODE_FIXED + al;
    return PS_OK;
}

int psi_view_decode(const uint8_t *buf, size_t len, psi_view *out)
{
    const uint8_t *p = buf, *end = buf + len;
    memset(out, 0, sizeof(*out));
    if (len < 8) return PS_ERR_PROTO;
    uint32_t epoch = psi_get_u32(p), n = psi_get_u32(p + 4);
    p += 8;
    if (n > PSI_MAX_NODES || n > (len - 8) / NODE_FIXED) return PS_ERR_PROTO;
    psi_node *nodes = n ? calloc(n, sizeof(*nodes)) : NULL;
    if (n && !nodes) return PS_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) {
        if (decode_node(&p, end, &nodes[i]) != 0 ||
            (i > 0 && nodes[i].id <= nodes[i - 1].id)) {
            free(nodes);
            return PS_ERR_PROTO;
        }
    }
    if (p != end) {
        free(nodes);
        return PS_ERR_PROTO;
    }
    out->epoch = epoch;
    out->n = n;
    out->nodes = nodes;
    return PS_OK;
}

void psi_view_free(psi_view *v)
{
    free(v->nodes);
    v->nodes = NULL;
    v->n = 0;
}

int psi_view_copy(psi_view *dst, const psi_view *src)
{
    psi_node *nodes = NULL;
    if (src->n) {
        if (!(nodes = malloc(src->n * sizeof(*nodes)))) return PS_ERR_NOMEM;
        memcpy(nodes, src->nodes, src->n * sizeof(*nodes));
    }
    free(dst->nodes);
    dst->nodes = nodes;
    dst->n = src->n;
    dst->epoch = src->epoch;
    return PS_OK;
}

const psi_node *psi_view_find(const psi_view *v, uint32_t id)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (v->nodes[mid].id == id) return &v->nodes[mid];
        if (v->nodes[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int psi_view_count(const psi_view *v, int group, int alive_only)
{
    int c = 0;
    for (uint32_t i = 0; i < v->n; i++)
        if (psi_group_has(group, v->nodes[i].role) &&
            (!alive_only || v->nodes[i].alive == PSI_NODE_ALIVE ||
             v->nodes[i].alive == PSI_NODE_JOINING))
            c++;
    return c;
}

int psi_view_newly_dead(const psi_view *old, const psi_view *cur, uint32_t *out, int cap)
{
    int c = 0;
    for (uint32_t i = 0; i < old->n; i++) {
        if (!old->nodes[i].alive) continue;
        const psi_node *nd = psi_view_find(cur, old->nodes[i].id);
        if (nd && nd->alive) continue;
        if (c < cap) out[c] = old->nodes[i].id;
        c++;
    }
    return c;
}

int psi_join_encode(const psi_join *j, uint8_t *buf, size_t cap, size_t *len)
{
    size_t al = strlen(j->addr), tail = j->sizes ? 4 : 0;
    if (al >= PSI_ADDR_MAX || cap < 7 + al + tail) return PS_ERR_INVAL;
    psi_put_u8(buf, j->role);
    psi_put_u32(buf + 1, (uint32_t)j->rank);
    psi_put_u16(buf + 5, (uint16_t)al);
    memcpy(buf + 7, j->addr, al);
    if (tail) { /* the cluster sizes this node was started with */
        psi_put_u16(buf + 7 + al, j->nservers);
        psi_put_u16(buf + 9 + al, j->nworkers);
    }
    *len = 7 + al + tail;
    return PS_OK;
}

int psi_join_decode(const uint8_t *buf, size_t len, psi_join *out)
{
    if (len < 7) return PS_ERR_PROTO;
    out->role = psi_get_u8(buf);
    out->rank = (int32_t)psi_get_u32(buf + 1);
    size_t al = psi_get_u16(buf + 5);
    if (out->role > PS_ROLE_WORKER || out->rank < -1 || (len != 7 + al && len != 11 + al))
        return PS_ERR_PROTO;
    out->sizes = len == 11 + al;
    out->nservers = out->sizes ? psi_get_u16(buf + 7 + al) : 0;
    out->nworkers = out->sizes ? psi_get_u16(buf + 9 + al) : 0;
    return get_addr(buf + 7, al, out->addr);
}
