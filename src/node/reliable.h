/*
 * reliable.h -- at-least-once delivery with duplicate suppression for
 * control messages (join, view, barrier, leave) over a lossy transport.
 *
 * Design: the sender stamps each reliable message with the next sequence
 * number of this process (started from the wall clock in microseconds, so a
 * restarted process never reuses a number), keeps a copy and resends it with
 * exponential back-off (20 ms doubling to 500 ms) until the receiver's ACK
 * names that number.  The receiver ACKs every copy it gets and handles only
 * the first: per sender it keeps a watermark below which every number was
 * seen, plus a 4096-entry bitmap above it.
 *
 * Not thread-safe: the node layer calls it under its own lock.  Never frees
 * or keeps a message it was not given.
 */
#ifndef PSI_NODE_RELIABLE_H
#define PSI_NODE_RELIABLE_H

#include <stddef.h>
#include <stdint.h>

#include "wire/msg.h"

typedef struct psi_rel psi_rel;

psi_rel *psi_rel_new(void);
void psi_rel_free(psi_rel *r);

/* Stamp `m` (timestamp, PSI_F_RELIABLE) for `peer` and keep a copy for
 * resending.  The caller still owns and sends `m`.  0 or PS_ERR_NOMEM. */
int psi_rel_track(psi_rel *r, uint32_t peer, psi_msg *m, uint64_t now_ms);
/* An ACK for (peer, ts) arrived: forget the copy.  Returns 1 if one was
 * pending, 0 otherwise (a duplicate or stale ACK). */
int psi_rel_acked(psi_rel *r, uint32_t peer, uint64_t ts);
/* Resend every copy whose back-off expired: `send` gets a fresh duplicate
 * it then owns.  Returns how many were resent. */
int psi_rel_resend_due(psi_rel *r, uint64_t now_ms,
                       void (*send)(void *arg, uint32_t peer, psi_msg *m), void *arg);
/* Drop every pending copy to `peer` (it died or left). */
void psi_rel_forget_peer(psi_rel *r, uint32_t peer);
/* Pending copies to `peer`, or to anyone when peer is 0xFFFFFFFF. */
size_t psi_rel_pending(const psi_rel *r, uint32_t peer);
/* Duplicate check: returns 1 if (sender, ts) was seen before; otherwise
 * records it and returns 0.  -1 on no memory (treat as not seen). */
int psi_rel_seen(psi_rel *r, uint32_t sender, uint64_t ts);

#endif /* PSI_NODE_RELIABLE_H */
