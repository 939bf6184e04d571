/*
 * filter.h -- the filter chain of a table: transforms applied to a message's
 * keys and values on send and reversed on receive, their state per peer,
 * and the traffic counters they feed.
 *
 * A chain is parsed from a spec ("keycache,zstd", "fp16", "int8,zstd"...)
 * and always applied in a fixed order, whatever the spec's order:
 * quantization (fp16 | int8), then key caching, then zstd.  Each filter that
 * changed a message writes its id into the next free slot of hdr.filters;
 * the receiver reverses them from the last slot to the first, so a receiver
 * needs no configuration: it reverses whatever ids arrive (an unknown id
 * fails the message with PS_ERR_PROTO).  Filters that drop (key, value)
 * pairs before anything is sent (sigmod, the user's keep function) run when
 * a push is prepared, not here.
 *
 * Ownership: encode and decode replace segments with buffers they allocate
 * and the message then owns; the old ones are freed as the message's
 * ownership rules say (borrowed ones are left alone).
 */
#ifndef PSI_KV_FILTER_H
#define PSI_KV_FILTER_H

#include <stdint.h>

#include "ps/ps.h"
#include "wire/msg.h"

enum {
    PSI_FILTER_KEYCACHE = 1,
    PSI_FILTER_ZSTD = 2,
    PSI_FILTER_FP16 = 3,
    PSI_FILTER_INT8 = 4,
    PSI_FILTER_MAX_ID = 5,
};

/* A reply status (internal, never returned to users): the receiver does not
 * hold the key list a keycache signature names; the sender resends it whole. */
#define PSI_ERR_KEYCACHE_MISS (-100)

typedef struct psi_chain psi_chain;

/* Parse a spec: comma list of keycache, zstd, fp16, int8, sigmod=T.  An
 * empty or NULL spec is a chain that does nothing.  *sigmod gets the sigmod
 * threshold (0 if absent).  PS_ERR_INVAL (logged, naming the item) on a bad
 * spec. */
int psi_chain_new(const char *spec, ps_dtype dtype, psi_chain **out, double *sigmod);
void psi_chain_free(psi_chain *c);
/* Whether the chain transforms messages at all. */
int psi_chain_active(const psi_chain *c);

/* Encode `m` for `peer` (`m` still holds sorted raw keys and raw values).
 * 0 or a ps_err (then `m` is unchanged and may be sent raw). */
int psi_chain_encode(psi_chain *c, uint32_t peer, psi_msg *m);
/* Reverse every filter named in m->hdr.filters, for messages from `peer`.
 * `c` may be NULL (a node without a chain still decodes).  0,
 * PS_ERR_PROTO (corrupt or unknown id), PSI_ERR_KEYCACHE_MISS, PS_ERR_NOMEM.
 * Afterwards the keys segment holds key_count raw keys. */
int psi_chain_decode(psi_chain *c, uint32_t peer, psi_msg *m);
/* The peer lost its state (restart, miss): forget what it was sent. */
void psi_chain_forget_peer(psi_chain *c, uint32_t peer);

#endif /* PSI_KV_FILTER_H */
