/*
 * push_aux.h -- the aux segment of a push and of a forward: the wire codec
 * of the fields that make pushes exactly-once (push_aux.c).
 *
 * A push's aux segment (PSI_PUSH_AUX bytes, little-endian): its sequence
 * number; the server that number counts for (the receiver, or the dead
 * server it was first sent to) in the low 32 bits of the second word and,
 * for a push moved off a dead server, that server ("via": the one whose
 * keys the receiver took over; 0 otherwise) in the high 32 bits; and the
 * sender's low watermark for the origin (every push with a smaller or
 * equal number is acknowledged, so will never be resent).  A forward's aux
 * (PSI_FWD_AUX, the replication plug-in's forwards) is a push's, then the
 * worker that sent it.
 *
 * Never: trust a node id from the wire: the getters map one out of range
 * to PSI_ID_NONE, which callers refuse.
 */
#ifndef PSI_KV_PUSH_AUX_H
#define PSI_KV_PUSH_AUX_H

#include <stdint.h>

#define PSI_PUSH_AUX 24
#define PSI_FWD_AUX 32

typedef struct kv_push_aux {
    uint64_t seq;
    uint32_t origin;
    uint32_t sender; /* forwards only */
    uint64_t lo;
    uint32_t via;    /* moved pushes: the dead server it was moved off */
} kv_push_aux;

/* Write / read PSI_PUSH_AUX bytes at p. */
void psi_kv_aux_put(uint8_t *p, const kv_push_aux *a);
void psi_kv_aux_get(const uint8_t *p, kv_push_aux *a);
/* Write / read PSI_FWD_AUX bytes at p; an unknown sender also clears origin. */
void psi_kv_fwd_aux_put(uint8_t *p, const kv_push_aux *a);
void psi_kv_fwd_aux_get(const uint8_t *p, kv_push_aux *a);

#endif /* PSI_KV_PUSH_AUX_H */
