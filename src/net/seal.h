/*
 * seal.h -- opt-in encryption of a connection's bytes (PS_ENCRYPT=1): one
 * direction of one TCP connection is one libsodium secretstream
 * (XChaCha20-Poly1305), keyed by a session key both ends derive from the
 * cluster key and the handshake's nonces (psi_gate_session_key).
 *
 * On the wire: the stream's 24-byte header once, then records, each a
 * little-endian u32 length L (the ciphertext's, 17..PSI_SEAL_CHUNK + 17)
 * and L bytes.  A record decrypts to at most PSI_SEAL_CHUNK plaintext bytes
 * of the frame stream; records that fail authentication, come out of order
 * or claim a bad length end the connection.  Pure buffer functions: tcp.c
 * does the I/O.
 *
 * Never: hand out plaintext that failed authentication.
 */
#ifndef PSI_NET_SEAL_H
#define PSI_NET_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#define PSI_SEAL_CHUNK (64u << 10)
#define PSI_SEAL_HDR crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define PSI_SEAL_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define PSI_SEAL_REC_MAX (4 + PSI_SEAL_CHUNK + PSI_SEAL_ABYTES)

typedef struct psi_seal {
    crypto_secretstream_xchacha20poly1305_state st;
} psi_seal;

/* Sender: start a stream; writes the header to send first. */
void psi_seal_init_push(psi_seal *s, const uint8_t key[32], uint8_t header[PSI_SEAL_HDR]);
/* Receiver: start from the sender's header.  0 or PS_ERR_PROTO. */
int psi_seal_init_pull(psi_seal *s, const uint8_t key[32], const uint8_t header[PSI_SEAL_HDR]);
/* Seal n (1..PSI_SEAL_CHUNK) plaintext bytes as one record into out
 * (PSI_SEAL_REC_MAX bytes).  Returns the record's size. */
size_t psi_seal_record(psi_seal *s, const uint8_t *plain, size_t n, uint8_t *out);
/* The ciphertext length a record header announces, or 0 if impossible. */
size_t psi_seal_rec_len(const uint8_t hdr[4]);
/* Open a record's `len` ciphertext bytes into plain (PSI_SEAL_CHUNK
 * bytes); *n is the plaintext size.  0 or PS_ERR_PROTO. */
int psi_seal_open(psi_seal *s, const uint8_t *ct, size_t len, uint8_t *plain, size_t *n);

#endif /* PSI_NET_SEAL_H */
