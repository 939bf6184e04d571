/*
 * beat.h -- heartbeats on a path of their own: small UDP datagrams from
 * each node to the scheduler's address (the same port number as its TCP
 * listener), each answered by the scheduler.
 *
 * Why UDP: a heartbeat that rides a TCP connection waits behind every byte
 * queued before it and, on a lossy link, behind TCP's retransmission
 * timeouts (200 ms, then doubling; 1 s for a lost SYN), so 1 % loss or one
 * large push can silence a healthy node past the timeout.  A lost datagram
 * costs one beat of the five sent per timeout; nothing queues behind it.
 * The node's timer thread sends beats itself (no I/O thread in the way);
 * the scheduler reads them on a thread of its own.
 *
 * A datagram, 40 bytes, little-endian:
 *   0 "PSHB"  4 version 1  5 kind (0 beat, 1 answer)  6 reserved[2]
 *   8 node id  12 epoch  16 seq (u64, increasing per node)
 *  24 tag[16] = BLAKE2b-128 keyed with the cluster key, over bytes 0..23
 * Anything else, a bad tag, or a seq not above the node's last is dropped
 * unread: a stranger cannot keep a dead node alive or make the scheduler
 * answer it.
 *
 * Never: block the caller of psi_beat_send or psi_beat_poll.
 */
#ifndef PSI_NODE_BEAT_H
#define PSI_NODE_BEAT_H

#include <stdint.h>

#include "net/gate.h"

typedef struct psi_beat psi_beat;

/* Called on the scheduler's beat thread for each valid beat, before it is
 * answered; returns nonzero to answer it. */
typedef int (*psi_beat_fn)(void *arg, uint32_t id, uint32_t epoch);

/* Scheduler: bind UDP at `addr` ("host:port") and start the reader thread.
 * 0, or a ps_err (logged). */
int psi_beat_listen(const char *addr, const psi_gate_key *key, psi_beat_fn fn, void *arg,
                    psi_beat **out);
/* Node: a socket aimed at the scheduler's `addr`.  0 or a ps_err. */
int psi_beat_open(const char *addr, const psi_gate_key *key, psi_beat **out);
/* Node: send one beat (never blocks; a full socket buffer drops it). */
void psi_beat_send(psi_beat *b, uint32_t id, uint32_t epoch);
/* Node: read the answers that came; returns how many were valid for `id`. */
int psi_beat_poll(psi_beat *b, uint32_t id);
/* Stop the thread (scheduler), close, free.  NULL is fine. */
void psi_beat_close(psi_beat *b);

#endif /* PSI_NODE_BEAT_H */
