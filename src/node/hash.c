/*
 * hash.c -- ps_hash_key and ps_hash_bytes (ps/kv.h): spread raw feature ids
 * and byte strings over the u64 key space, so that the consistent-hash ring
 * (ring.c) sees keys that are near-uniform even when the raw ids are
 * consecutive integers or share long prefixes.
 *
 * Design: both are XXH3-64 (libxxhash) with seed 0.  ps_hash_key(raw) hashes
 * the 8 little-endian bytes of raw, so it equals ps_hash_bytes of those bytes
 * and is the same on every host, whatever its byte order.  XXH3's output has
 * been frozen since xxHash 0.8.0, so the values -- and hence where a key
 * lives and what a checkpoint holds -- are stable across versions of libps
 * as long as xxhash's XXH3 is stable; tests/unit/test_ring.c pins a few.
 *
 * It must never change the algorithm, the seed or the byte order: keys that
 * applications have stored would then move.  Not a cryptographic hash: do
 * not use it where an adversary picks the input to collide keys.
 */
#include <stdint.h>

#include <xxhash.h>

#include "ps/kv.h"
#include "util/util.h"

#if XXH_VERSION_NUMBER < 800
#error "libps needs xxHash >= 0.8.0, whose XXH3 output is stable"
#endif

uint64_t ps_hash_key(uint64_t raw)
{
    uint8_t le[8];

    psi_put_u64(le, raw);
    return (uint64_t)XXH3_64bits(le, sizeof(le));
}

uint64_t ps_hash_bytes(const void *data, size_t len)
{
    static const uint8_t empty;

    return (uint64_t)XXH3_64bits(len ? data : &empty, len);
}
