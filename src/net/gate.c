/*
 * gate.c -- the handshake of gate.h: key derivation from the cluster
 * secret, and the three messages that prove it both ways.
 *
 * Design: libsodium's BLAKE2b (crypto_generichash) turns the secret into a
 * 32-byte key; HMAC-SHA256 (crypto_auth_hmacsha256) tags a role label and
 * both nonces; randombytes_buf makes the nonces; sodium_memcmp compares.
 * The role label keeps a reply from being reflected back as a proof.
 *
 * Never: keep the secret's bytes after deriving the key; branch on secret
 * data; allocate.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "net/gate.h"
#include "ps/ps.h"
#include "util/log.h"
#include "util/util.h"

static const uint8_t magic[8] = {'P', 'S', 'G', 'A', 'T', 'E', '0', '1'};

#define SECRET_FILE_MAX 4096
#define SECRET_FILE_READ (SECRET_FILE_MAX + 64) /* a few trailing newlines fit */

static int sodium_ready(void)
{
    return sodium_init() >= 0 ? PS_OK : PS_ERR_SYS; /* idempotent, thread-safe */
}

void psi_gate_key_derive(psi_gate_key *key, const void *secret, size_t len)
{
    (void)sodium_ready();
    crypto_generichash(key->k, sizeof(key->k), secret, len, NULL, 0);
    key->secret = len > 0;
    key->encrypt = 0;
}

static int read_secret_file(const char *path, uint8_t *buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        PSI_ERROR("PS_SECRET_FILE=%s: cannot open: %s", path, strerror(errno));
        return PS_ERR_CONFIG;
    }
    /* read past the limit, so a long file whose byte 4097 is a newline
     * is refused, not cut to its first 4096 bytes */
    size_t n = fread(buf, 1, SECRET_FILE_READ, f);
    int bad = ferror(f);
    int more = n == SECRET_FILE_READ && fgetc(f) != EOF; /* too long, whatever follows */
    fclose(f);
    while (!more && n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    if (bad || n == 0 || n > SECRET_FILE_MAX) {
        PSI_ERROR("PS_SECRET_FILE=%s: %s", path,
                  bad ? "read error" : n == 0 ? "empty" : "longer than 4096 bytes");
        return PS_ERR_CONFIG;
    }
    *len = n;
    return PS_OK;
}

int psi_gate_key_from_env(psi_gate_key *key)
{
    static const char *const sn[] = {"PS_SECRET", NULL};
    static const char *const fn[] = {"PS_SECRET_FILE", NULL};
    /* getenv, not psi_env_str: an empty PS_SECRET is an error, not "none" */
    const char *s = getenv(sn[0]), *file = psi_env_str(fn);
    uint8_t buf[SECRET_FILE_READ];
    size_t len = 0;
    int rv;

    if (sodium_ready() != 0) {
        PSI_ERROR("libsodium failed to initialize");
        return PS_ERR_SYS;
    }
    if (s && file) {
        PSI_ERROR("PS_SECRET and PS_SECRET_FILE are both set: give one");
        return PS_ERR_CONFIG;
    }
    if (s && !*s) {
        PSI_ERROR("PS_SECRET is set but empty");
        return PS_ERR_CONFIG;
    }
    if (file && (rv = read_secret_file(file, buf, &len)) != 0) return rv;
    if (s) psi_gate_key_derive(key, s, strlen(s));
    else psi_gate_key_derive(key, buf, len);
    sodium_memzero(buf, sizeof(buf));
    return PS_OK;
}

/* tag = HMAC-SHA256(K, label [|| "+seal"] || a || b) */
static void tag(const psi_gate_key *key, const char *label, const uint8_t a[PSI_GATE_NONCE],
                const uint8_t b[PSI_GATE_NONCE], uint8_t out[32])
{
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, key->k, sizeof(key->k));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)label, strlen(label));
    if (key->encrypt) crypto_auth_hmacsha256_update(&st, (const uint8_t *)"+seal", 5);
    crypto_auth_hmacsha256_update(&st, a, PSI_GATE_NONCE);
    crypto_auth_hmacsha256_update(&st, b, PSI_GATE_NONCE);
    crypto_auth_hmacsha256_final(&st, out);
    sodium_memzero(&st, sizeof(st));
}

void psi_gate_hello(psi_gate_hs *hs, uint8_t out[PSI_GATE_HELLO])
{
    (void)sodium_ready();
    randombytes_buf(hs->mine, sizeof(hs->mine));
    memcpy(out, magic, sizeof(magic));
    memcpy(out + sizeof(magic), hs->mine, PSI_GATE_NONCE);
}

int psi_gate_reply(psi_gate_hs *hs, const psi_gate_key *key,
                   const uint8_t hello[PSI_GATE_HELLO], uint8_t out[PSI_GATE_REPLY])
{
    if (memcmp(hello, magic, sizeof(magic)) != 0) return PS_ERR_PROTO;
    memcpy(hs->theirs, hello + sizeof(magic), PSI_GATE_NONCE);
    randombytes_buf(hs->mine, sizeof(hs->mine));
    memcpy(out, magic, sizeof(magic));
    memcpy(out + sizeof(magic), hs->mine, PSI_GATE_NONCE);
    tag(key, "acceptor", hs->theirs, hs->mine, out + sizeof(magic) + PSI_GATE_NONCE);
    return PS_OK;
}

int psi_gate_proof(psi_gate_hs *hs, const psi_gate_key *key,
                   const uint8_t reply[PSI_GATE_REPLY], uint8_t out[PSI_GATE_PROOF])
{
    uint8_t want[32];
    if (memcmp(reply, magic, sizeof(magic)) != 0) return PS_ERR_PROTO;
    memcpy(hs->theirs, reply + sizeof(magic), PSI_GATE_NONCE);
    tag(key, "acceptor", hs->mine, hs->theirs, want);
    if (sodium_memcmp(want, reply + sizeof(magic) + PSI_GATE_NONCE, sizeof(want)) != 0)
        return PS_ERR_AUTH;
    tag(key, "connector", hs->theirs, hs->mine, out);
    return PS_OK;
}

int psi_gate_check(const psi_gate_hs *hs, const psi_gate_key *key,
                   const uint8_t proof[PSI_GATE_PROOF])
{
    uint8_t want[32];
    tag(key, "connector", hs->mine, hs->theirs, want);
    return sodium_memcmp(want, proof, sizeof(want)) == 0 ? PS_OK : PS_ERR_AUTH;
}

void psi_gate_session_key(const psi_gate_hs *hs, const psi_gate_key *key, int connector,
                          uint8_t out[32])
{
    uint8_t msg[7 + 2 * PSI_GATE_NONCE];
    memcpy(msg, "session", 7);
    memcpy(msg + 7, connector ? hs->mine : hs->theirs, PSI_GATE_NONCE);
    memcpy(msg + 7 + PSI_GATE_NONCE, connector ? hs->theirs : hs->mine, PSI_GATE_NONCE);
    crypto_generichash(out, 32, msg, sizeof(msg), key->k, sizeof(key->k));
}
