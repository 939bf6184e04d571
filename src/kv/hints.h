/*
 * hints.h -- the server's half of the paper's key caching: a table
 * remembers, for a key list it is sent again (the same minibatch pushed
 * after it was pulled, the same block of features every iteration), where
 * each key of the list sits in its hash store, so that the next push or
 * pull of that list finds every key at the first slot it reads.
 *
 * Design: per table, at most HINTS_MAX lists, each one u32 per key (the
 * slot where the key was found: store.h's hints), recognised by the
 * list's length and a fingerprint of its first, last and 64 evenly spaced
 * keys.  Nothing here has to be exact: the store takes a key from a hinted
 * slot only if that slot holds the key, so a list that only looks like a
 * remembered one, or hints made stale by a growth, cost a compare per key
 * and are corrected by the lookup itself.  A list is remembered the first
 * time it is seen (its hints start unknown and are filled by that lookup);
 * the least recently used list makes room.  Memory: 4 bytes per key of a
 * list, at most a sixteenth of the store's bytes plus HINTS_SLACK (1 MiB)
 * over all lists of a table: a large table's bytes per key rise by at most
 * 1/16 (a list too long for that goes without hints: 500k keys pushed into
 * a server of 7.5 MB have none, and stay at 15 B/key), a small one's by at
 * most 1 MiB (100k keys hinted: 15 + 4 = 19 B/key).  Single-threaded: the
 * table lock.
 *
 * Never: hand out hints for a list of another length; hold more than the
 * bound above.
 */
#ifndef PSI_KV_HINTS_H
#define PSI_KV_HINTS_H

#include <stddef.h>
#include <stdint.h>

#define PSI_HINTS_MIN_KEYS 256 /* shorter lists probe fast enough */

typedef struct psi_hints psi_hints;

psi_hints *psi_hints_new(void);
void psi_hints_free(psi_hints *h);
/* The hints (n slots) for the key list keys[0..n), new ones (all unknown)
 * if it was not remembered and `store_bytes` leaves room; NULL: look the
 * keys up without hints.  Valid until the next call. */
uint32_t *psi_hints_for(psi_hints *h, const uint64_t *keys, size_t n, size_t store_bytes);
/* Bytes held (for the table's memory figure). */
size_t psi_hints_bytes(const psi_hints *h);

#endif /* PSI_KV_HINTS_H */
