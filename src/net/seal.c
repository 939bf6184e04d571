/*
 * seal.c -- the record layer of seal.h over libsodium's secretstream.
 */
#include "net/seal.h"
#include "ps/ps.h"
#include "util/util.h"

void psi_seal_init_push(psi_seal *s, const uint8_t key[32], uint8_t header[PSI_SEAL_HDR])
{
    crypto_secretstream_xchacha20poly1305_init_push(&s->st, header, key);
}

int psi_seal_init_pull(psi_seal *s, const uint8_t key[32], const uint8_t header[PSI_SEAL_HDR])
{
    return crypto_secretstream_xchacha20poly1305_init_pull(&s->st, header, key) == 0
               ? PS_OK
               : PS_ERR_PROTO;
}

size_t psi_seal_record(psi_seal *s, const uint8_t *plain, size_t n, uint8_t *out)
{
    unsigned long long clen = 0;
    crypto_secretstream_xchacha20poly1305_push(&s->st, out + 4, &clen, plain, n, NULL, 0, 0);
    psi_put_u32(out, (uint32_t)clen);
    return 4 + (size_t)clen;
}

size_t psi_seal_rec_len(const uint8_t hdr[4])
{
    size_t len = psi_get_u32(hdr);
    return len > PSI_SEAL_ABYTES && len <= PSI_SEAL_CHUNK + PSI_SEAL_ABYTES ? len : 0;
}

int psi_seal_open(psi_seal *s, const uint8_t *ct, size_t len, uint8_t *plain, size_t *n)
{
    unsigned long long plen = 0;
    unsigned char tag;
    if (len <= PSI_SEAL_ABYTES || len > PSI_SEAL_CHUNK + PSI_SEAL_ABYTES) return PS_ERR_PROTO;
    if (crypto_secretstream_xchacha20poly1305_pull(&s->st, plain, &plen, &tag, ct, len, NULL,
                                                   0) != 0)
        return PS_ERR_PROTO;
    *n = (size_t)plen;
    return PS_OK;
}
