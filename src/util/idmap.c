/*
 * idmap.c -- the sorted-array id map of idmap.h.
 */
#include <stdlib.h>
#include <string.h>

#include "ps/ps.h"
#include "util/idmap.h"

/* Index of the first id >= `id`. */
static size_t pos(const psi_idmap *m, uint32_t id)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (m->ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int psi_idmap_has(const psi_idmap *m, uint32_t id)
{
    size_t i = pos(m, id);
    return i < m->n && m->ids[i] == id;
}

void *psi_idmap_get(const psi_idmap *m, uint32_t id)
{
    size_t i = pos(m, id);
    return i < m->n && m->ids[i] == id ? m->vals[i] : NULL;
}

int psi_idmap_put(psi_idmap *m, uint32_t id, void *val)
{
    size_t i = pos(m, id);
    if (i < m->n && m->ids[i] == id) {
        m->vals[i] = val;
        return PS_OK;
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        uint32_t *ids = realloc(m->ids, cap * sizeof(*ids));
        if (!ids) return PS_ERR_NOMEM;
        m->ids = ids;
        void **vals = realloc(m->vals, cap * sizeof(*vals));
        if (!vals) return PS_ERR_NOMEM;
        m->vals = vals;
        m->cap = cap;
    }
    memmove(m->ids + i + 1, m->ids + i, (m->n - i) * sizeof(*m->ids));
    memmove(m->vals + i + 1, m->vals + i, (m->n - i) * sizeof(*m->vals));
    m->ids[i] = id;
    m->vals[i] = val;
    m->n++;
    return PS_OK;
}

void psi_idmap_del(psi_idmap *m, uint32_t id)
{
    size_t i = pos(m, id);
    if (i >= m->n || m->ids[i] != id) return;
    memmove(m->ids + i, m->ids + i + 1, (m->n - i - 1) * sizeof(*m->ids));
    memmove(m->vals + i, m->vals + i + 1, (m->n - i - 1) * sizeof(*m->vals));
    m->n--;
}

void psi_idmap_free(psi_idmap *m)
{
    free(m->ids);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}
