/*
 * idmap.h -- a map from u32 ids (node ids) to pointers: a sorted array
 * searched by bisection.  Ids are few (nodes of a cluster) and may be
 * sparse; lookups dominate, inserts happen once per peer.
 *
 * Not thread-safe: the owner guards it.  Never owns the values.
 */
#ifndef PSI_UTIL_IDMAP_H
#define PSI_UTIL_IDMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct psi_idmap {
    uint32_t *ids;
    void **vals;
    size_t n, cap;
} psi_idmap;

/* The value stored for `id`, or NULL (also when the value is NULL). */
void *psi_idmap_get(const psi_idmap *m, uint32_t id);
/* 1 if `id` is present. */
int psi_idmap_has(const psi_idmap *m, uint32_t id);
/* Insert or replace.  0 or PS_ERR_NOMEM. */
int psi_idmap_put(psi_idmap *m, uint32_t id, void *val);
/* Remove `id` if present. */
void psi_idmap_del(psi_idmap *m, uint32_t id);
/* Free the arrays (not the values); the map is empty after. */
void psi_idmap_free(psi_idmap *m);

#endif /* PSI_UTIL_IDMAP_H */
