/*
 * push_aux.c -- encode and decode a push's and a forward's aux segment
 * (layout in kv/push_aux.h), field by field, little-endian.
 *
 * Never: return a node id at or above PSI_MAX_NODES (PSI_ID_NONE instead).
 */
#include "kv/push_aux.h"

#include "node/view.h"
#include "util/util.h"

void psi_kv_aux_put(uint8_t *p, const kv_push_aux *a)
{
    psi_put_u64(p, a->seq);
    psi_put_u64(p + 8, a->origin | (uint64_t)a->via << 32);
    psi_put_u64(p + 16, a->lo);
}

void psi_kv_aux_get(const uint8_t *p, kv_push_aux *a)
{
    uint64_t o = psi_get_u64(p + 8);
    uint32_t origin = (uint32_t)o, via = (uint32_t)(o >> 32);
    a->seq = psi_get_u64(p);
    a->origin = origin < PSI_MAX_NODES ? origin : PSI_ID_NONE;
    a->via = via < PSI_MAX_NODES ? via : PSI_ID_NONE;
    a->lo = psi_get_u64(p + 16);
}

void psi_kv_fwd_aux_put(uint8_t *p, const kv_push_aux *a)
{
    psi_kv_aux_put(p, a);
    psi_put_u64(p + PSI_PUSH_AUX, a->sender);
}

void psi_kv_fwd_aux_get(const uint8_t *p, kv_push_aux *a)
{
    uint64_t s = psi_get_u64(p + PSI_PUSH_AUX);
    psi_kv_aux_get(p, a);
    a->sender = s < PSI_MAX_NODES ? (uint32_t)s : PSI_ID_NONE;
    if (a->sender == PSI_ID_NONE) a->origin = PSI_ID_NONE; /* recorded nowhere */
}
