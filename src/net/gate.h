/*
 * gate.h -- the door of every libps connection: a challenge-response
 * handshake that proves both ends know the cluster secret before a single
 * frame is parsed.
 *
 * The key K is BLAKE2b-256 of the secret (PS_SECRET's bytes, or the
 * contents of PS_SECRET_FILE); with no secret, K is BLAKE2b-256 of nothing,
 * which anyone can compute (insecure mode: loopback or PS_INSECURE=1).
 *
 *   connector -> acceptor  HELLO  "PSGATE01" nonce_c[32]                 40 B
 *   acceptor -> connector  REPLY  "PSGATE01" nonce_a[32] tag_a[32]       72 B
 *   connector -> acceptor  PROOF  tag_c[32]                              32 B
 *
 *   tag_a = HMAC-SHA256(K, "acceptor"  || nonce_c || nonce_a)
 *   tag_c = HMAC-SHA256(K, "connector" || nonce_a || nonce_c)
 *
 * With PS_ENCRYPT=1 the labels are "acceptor+seal" and "connector+seal"
 * (ends that disagree fail as if their secrets differed), and the bytes
 * after PROOF, connector to acceptor, are sealed with the session key
 * BLAKE2b-256(key K, "session" || nonce_c || nonce_a) (seal.h).
 *
 * Each side proves the secret over a nonce the other chose, so a recorded
 * handshake replays to nothing, and a connector never sends a frame to an
 * impostor listening at a peer's old address.  The sizes are fixed: an
 * acceptor reads exactly 40 and then 32 bytes from an unproven peer, and
 * nothing else.  Pure functions over buffers (no I/O): unit-tested in
 * tests/unit/test_gate.c; the I/O lives in tcp.c.  The primitives are
 * libsodium's; nothing here is cryptography written by hand.
 *
 * Never: compare tags with memcmp (sodium_memcmp is constant time); log
 * the secret or the key.
 */
#ifndef PSI_NET_GATE_H
#define PSI_NET_GATE_H

#include <stddef.h>
#include <stdint.h>

#define PSI_GATE_KEY 32
#define PSI_GATE_NONCE 32
#define PSI_GATE_HELLO 40
#define PSI_GATE_REPLY 72
#define PSI_GATE_PROOF 32

typedef struct psi_gate_key {
    uint8_t k[PSI_GATE_KEY];
    int secret;            /* 1: derived from a real secret; 0: the public empty key */
    int encrypt;           /* PS_ENCRYPT=1: the tags say so (both ends must agree), and
                            * the connection's bytes are sealed (seal.h) */
} psi_gate_key;

/* One side's state during a handshake. */
typedef struct psi_gate_hs {
    uint8_t mine[PSI_GATE_NONCE], theirs[PSI_GATE_NONCE];
} psi_gate_hs;

/*
 * Read the cluster secret: PS_SECRET (its bytes), else PS_SECRET_FILE (the
 * file's contents without trailing newlines, 1..4096 bytes).  Both set, an
 * unreadable or empty file: PS_ERR_CONFIG, logged.  Neither: key->secret = 0.
 */
int psi_gate_key_from_env(psi_gate_key *key);
/* Derive the key from `len` bytes of secret (len 0: the public key);
 * encrypt is left 0. */
void psi_gate_key_derive(psi_gate_key *key, const void *secret, size_t len);

/* Connector: pick a nonce, write HELLO. */
void psi_gate_hello(psi_gate_hs *hs, uint8_t out[PSI_GATE_HELLO]);
/* Acceptor: check HELLO's magic (PS_ERR_PROTO if wrong), pick a nonce,
 * write REPLY. */
int psi_gate_reply(psi_gate_hs *hs, const psi_gate_key *key,
                   const uint8_t hello[PSI_GATE_HELLO], uint8_t out[PSI_GATE_REPLY]);
/* Connector: check REPLY (PS_ERR_PROTO: not a libps gate; PS_ERR_AUTH: the
 * acceptor does not know the secret), then write PROOF. */
int psi_gate_proof(psi_gate_hs *hs, const psi_gate_key *key,
                   const uint8_t reply[PSI_GATE_REPLY], uint8_t out[PSI_GATE_PROOF]);
/* Acceptor: check PROOF.  0, or PS_ERR_AUTH. */
int psi_gate_check(const psi_gate_hs *hs, const psi_gate_key *key,
                   const uint8_t proof[PSI_GATE_PROOF]);
/* After a handshake: the key that seals the connector's bytes to the
 * acceptor.  `connector`: 1 on the connector's side. */
void psi_gate_session_key(const psi_gate_hs *hs, const psi_gate_key *key, int connector,
                          uint8_t out[32]);

#endif /* PSI_NET_GATE_H */
