/*
 * test_gate.c -- unit tests of the gate handshake (src/net/gate.c).
 *
 * The gate is pure functions over buffers, so every test drives both ends
 * in one thread: a connector state and an acceptor state pass HELLO, REPLY
 * and PROOF to each other through local arrays.  The tags are recomputed
 * here with libsodium's HMAC-SHA256 straight from the formulas in gate.h,
 * so the tests pin the documented wire format and can forge what a real
 * peer never would: a proof under another key, a replayed proof, the
 * acceptor's own tag reflected back.
 *
 * Key tests set and unset PS_SECRET / PS_SECRET_FILE and write temporary
 * files; teardown_env unsets both and removes the file, also after a
 * failed assertion.  No test waits on anything; a SIGALRM watchdog bounds
 * each one anyway.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "net/gate.h"
#include "ps/ps.h"
#include "util/util.h"

#define WATCHDOG_S 20
#define MAGIC_LEN 8

static const char magic[MAGIC_LEN + 1] = "PSGATE01";

/* ---- helpers ------------------------------------------------------------------ */

static psi_gate_key key_of(const char *secret)
{
    psi_gate_key k;
    memset(&k, 0xEE, sizeof(k));
    psi_gate_key_derive(&k, secret, strlen(secret));
    return k;
}

/* HMAC-SHA256(K, label || a || b), written out independently of gate.c. */
static void expect_tag(const psi_gate_key *k, const char *label, const uint8_t *a,
                       const uint8_t *b, uint8_t out[32])
{
    uint8_t msg[16 + 2 * PSI_GATE_NONCE];
    size_t ll = strlen(label);
    assert_true(ll <= 16);
    memcpy(msg, label, ll);
    memcpy(msg + ll, a, PSI_GATE_NONCE);
    memcpy(msg + ll + PSI_GATE_NONCE, b, PSI_GATE_NONCE);
    assert_int_equal(crypto_auth_hmacsha256_BYTES, 32);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, k->k, sizeof(k->k));
    crypto_auth_hmacsha256_update(&st, msg, ll + 2 * PSI_GATE_NONCE);
    crypto_auth_hmacsha256_final(&st, out);
}

/* One handshake's messages. */
typedef struct hs_run {
    psi_gate_hs con, acc;
    uint8_t hello[PSI_GATE_HELLO], reply[PSI_GATE_REPLY], proof[PSI_GATE_PROOF];
} hs_run;

/* HELLO then REPLY (acceptor under `ka`); returns psi_gate_reply's result. */
static int run_to_reply(hs_run *r, const psi_gate_key *ka)
{
    memset(r, 0, sizeof(*r));
    psi_gate_hello(&r->con, r->hello);
    return psi_gate_reply(&r->acc, ka, r->hello, r->reply);
}

/* ---- round trip ---------------------------------------------------------------- */

/* Both ends under the same key: the connector accepts the acceptor's REPLY
 * and the acceptor accepts the connector's PROOF; every byte is where gate.h
 * says, and each tag is the documented HMAC. */
static void test_round_trip_same_key(void **state)
{
    psi_gate_key k = key_of("cluster secret");
    assert_int_equal(k.secret, 1);
    hs_run r;
    assert_int_equal(run_to_reply(&r, &k), PS_OK);

    /* HELLO = magic || nonce_c */
    assert_memory_equal(r.hello, magic, MAGIC_LEN);
    assert_memory_equal(r.hello + MAGIC_LEN, r.con.mine, PSI_GATE_NONCE);
    /* REPLY = magic || nonce_a || tag_a, the acceptor remembers nonce_c */
    assert_memory_equal(r.acc.theirs, r.con.mine, PSI_GATE_NONCE);
    assert_memory_equal(r.reply, magic, MAGIC_LEN);
    assert_memory_equal(r.reply + MAGIC_LEN, r.acc.mine, PSI_GATE_NONCE);
    uint8_t want[32];
    expect_tag(&k, "acceptor", r.con.mine, r.acc.mine, want);
    assert_memory_equal(r.reply + MAGIC_LEN + PSI_GATE_NONCE, want, 32);

    assert_int_equal(psi_gate_proof(&r.con, &k, r.reply, r.proof), PS_OK);
    assert_memory_equal(r.con.theirs, r.acc.mine, PSI_GATE_NONCE);
    expect_tag(&k, "connector", r.acc.mine, r.con.mine, want);
    assert_memory_equal(r.proof, want, 32);

    assert_int_equal(psi_gate_check(&r.acc, &k, r.proof), PS_OK);
    /* The nonces are random: not the same on both sides, not all zero. */
    static const uint8_t zero[PSI_GATE_NONCE];
    assert_memory_not_equal(r.con.mine, r.acc.mine, PSI_GATE_NONCE);
    assert_memory_not_equal(r.con.mine, zero, PSI_GATE_NONCE);
    assert_memory_not_equal(r.acc.mine, zero, PSI_GATE_NONCE);
}

/* The public (empty) key works too, and successive handshakes pick fresh
 * nonces on both sides. */
static void test_round_trip_public_key_fresh_nonces(void **state)
{
    psi_gate_key k;
    psi_gate_key_derive(&k, NULL, 0);
    assert_int_equal(k.secret, 0);
    hs_run r1, r2;
    assert_int_equal(run_to_reply(&r1, &k), PS_OK);
    assert_int_equal(psi_gate_proof(&r1.con, &k, r1.reply, r1.proof), PS_OK);
    assert_int_equal(psi_gate_check(&r1.acc, &k, r1.proof), PS_OK);
    assert_int_equal(run_to_reply(&r2, &k), PS_OK);
    assert_int_equal(psi_gate_proof(&r2.con, &k, r2.reply, r2.proof), PS_OK);
    assert_int_equal(psi_gate_check(&r2.acc, &k, r2.proof), PS_OK);
    assert_memory_not_equal(r1.con.mine, r2.con.mine, PSI_GATE_NONCE);
    assert_memory_not_equal(r1.acc.mine, r2.acc.mine, PSI_GATE_NONCE);
    assert_memory_not_equal(r1.proof, r2.proof, PSI_GATE_PROOF);
}

/* ---- wrong key ------------------------------------------------------------------- */

/* The acceptor knows another secret: the connector refuses its REPLY. */
static void test_wrong_key_connector_refuses_reply(void **state)
{
    psi_gate_key kc = key_of("secret one"), ka = key_of("secret two");
    assert_memory_not_equal(kc.k, ka.k, PSI_GATE_KEY);
    hs_run r;
    assert_int_equal(run_to_reply(&r, &ka), PS_OK);
    assert_int_equal(psi_gate_proof(&r.con, &kc, r.reply, r.proof), PS_ERR_AUTH);
    /* Nor does the public key pass for a secret one. */
    psi_gate_key kp;
    psi_gate_key_derive(&kp, "", 0);
    assert_int_equal(run_to_reply(&r, &kp), PS_OK);
    assert_int_equal(psi_gate_proof(&r.con, &kc, r.reply, r.proof), PS_ERR_AUTH);
}

/* A proof made under another key is refused by the acceptor: both a proof
 * forged with the documented formula under the wrong key, and a real proof
 * checked by an acceptor state holding another key. */
static void test_wrong_key_acceptor_refuses_proof(void **state)
{
    psi_gate_key k = key_of("right"), other = key_of("wrong");
    hs_run r;
    assert_int_equal(run_to_reply(&r, &k), PS_OK);
    uint8_t forged[32];
    expect_tag(&other, "connector", r.acc.mine, r.con.mine, forged);
    assert_int_equal(psi_gate_check(&r.acc, &k, forged), PS_ERR_AUTH);
    /* Control: the same formula under the right key passes. */
    uint8_t good[32];
    expect_tag(&k, "connector", r.acc.mine, r.con.mine, good);
    assert_int_equal(psi_gate_check(&r.acc, &k, good), PS_OK);

    /* A genuine proof from a connector holding key `k`, checked under `other`. */
    assert_int_equal(psi_gate_proof(&r.con, &k, r.reply, r.proof), PS_OK);
    assert_int_equal(psi_gate_check(&r.acc, &other, r.proof), PS_ERR_AUTH);
    assert_int_equal(psi_gate_check(&r.acc, &k, r.proof), PS_OK);
}

/* Any single flipped bit in the REPLY's nonce or tag, or in the PROOF, is
 * refused with PS_ERR_AUTH. */
static void test_tampered_bits_refused(void **state)
{
    psi_gate_key k = key_of("tamper");
    for (size_t byte = MAGIC_LEN; byte < PSI_GATE_REPLY; byte += 5) {
        hs_run r;
        assert_int_equal(run_to_reply(&r, &k), PS_OK);
        r.reply[byte] ^= (uint8_t)(1u << (byte % 8));
        assert_int_equal(psi_gate_proof(&r.con, &k, r.reply, r.proof), PS_ERR_AUTH);
    }
    for (size_t byte = 0; byte < PSI_GATE_PROOF; byte += 3) {
        hs_run r;
        assert_int_equal(run_to_reply(&r, &k), PS_OK);
        assert_int_equal(psi_gate_proof(&r.con, &k, r.reply, r.proof), PS_OK);
        r.proof[byte] ^= 0x80;
        assert_int_equal(psi_gate_check(&r.acc, &k, r.proof), PS_ERR_AUTH);
    }
}

/* ---- bad magic ------------------------------------------------------------------ */

/* A HELLO or REPLY whose magic differs in any byte is not a libps gate:
 * PS_ERR_PROTO at both steps. */
static void test_bad_magic_proto(void **state)
{
    psi_gate_key k = key_of("magic");
    for (int i = 0; i < MAGIC_LEN; i++) {
        psi_gate_hs con, acc;
        uint8_t hello[PSI_GATE_HELLO], reply[PSI_GATE_REPLY], proof[PSI_GATE_PROOF];
        psi_gate_hello(&con, hello);
        hello[i] ^= 0x20;
        assert_int_equal(psi_gate_reply(&acc, &k, hello, reply), PS_ERR_PROTO);

        psi_gate_hello(&con, hello);
        assert_int_equal(psi_gate_reply(&acc, &k, hello, reply), PS_OK);
        reply[i] ^= 0x01;
        assert_int_equal(psi_gate_proof(&con, &k, reply, proof), PS_ERR_PROTO);
    }
    /* An HTTP request is not a HELLO. */
    psi_gate_hs acc;
    uint8_t http[PSI_GATE_HELLO] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n", reply[PSI_GATE_REPLY];
    assert_int_equal(psi_gate_reply(&acc, &k, http, reply), PS_ERR_PROTO);
}

/* ---- replay and reflection ------------------------------------------------------ */

/* An eavesdropper replays a whole recorded connector side (HELLO, then
 * PROOF) to a new acceptor state: the acceptor picked a fresh nonce, so the
 * old proof does not verify. */
static void test_replayed_proof_refused(void **state)
{
    psi_gate_key k = key_of("replay");
    hs_run rec;
    assert_int_equal(run_to_reply(&rec, &k), PS_OK);
    assert_int_equal(psi_gate_proof(&rec.con, &k, rec.reply, rec.proof), PS_OK);
    assert_int_equal(psi_gate_check(&rec.acc, &k, rec.proof), PS_OK);

    for (int i = 0; i < 4; i++) {
        psi_gate_hs acc2;
        uint8_t reply2[PSI_GATE_REPLY];
        assert_int_equal(psi_gate_reply(&acc2, &k, rec.hello, reply2), PS_OK);
        assert_memory_not_equal(acc2.mine, rec.acc.mine, PSI_GATE_NONCE);
        assert_memory_not_equal(reply2, rec.reply, PSI_GATE_REPLY);
        assert_int_equal(psi_gate_check(&acc2, &k, rec.proof), PS_ERR_AUTH);
    }
    /* A replayed REPLY does not fool a new connector either (fresh nonce_c). */
    psi_gate_hs con2;
    uint8_t hello2[PSI_GATE_HELLO], proof2[PSI_GATE_PROOF];
    psi_gate_hello(&con2, hello2);
    assert_int_equal(psi_gate_proof(&con2, &k, rec.reply, proof2), PS_ERR_AUTH);
}

/* The acceptor's own tag, sent back as the proof, is refused (the role
 * label differs); so is a reflection where the attacker chose nonce_c equal
 * to nonce_a, which makes the two HMAC inputs differ only by the label. */
static void test_reflected_tag_refused(void **state)
{
    psi_gate_key k = key_of("mirror");
    hs_run r;
    assert_int_equal(run_to_reply(&r, &k), PS_OK);
    const uint8_t *tag_a = r.reply + MAGIC_LEN + PSI_GATE_NONCE;
    assert_int_equal(psi_gate_check(&r.acc, &k, tag_a), PS_ERR_AUTH);

    /* Second connection: HELLO carries the first acceptor's nonce. */
    psi_gate_hs acc2;
    uint8_t hello2[PSI_GATE_HELLO], reply2[PSI_GATE_REPLY];
    memcpy(hello2, magic, MAGIC_LEN);
    memcpy(hello2 + MAGIC_LEN, r.acc.mine, PSI_GATE_NONCE);
    assert_int_equal(psi_gate_reply(&acc2, &k, hello2, reply2), PS_OK);
    assert_int_equal(psi_gate_check(&r.acc, &k, reply2 + MAGIC_LEN + PSI_GATE_NONCE),
                     PS_ERR_AUTH);
    assert_int_equal(psi_gate_check(&acc2, &k, reply2 + MAGIC_LEN + PSI_GATE_NONCE),
                     PS_ERR_AUTH);
    /* An all-zero proof is refused as well. */
    static const uint8_t zero[PSI_GATE_PROOF];
    assert_int_equal(psi_gate_check(&r.acc, &k, zero), PS_ERR_AUTH);
}

/* ---- keys ------------------------------------------------------------------------ */

static void test_key_derive_is_blake2b(void **state)
{
    assert_true(sodium_init() >= 0);
    uint8_t want[32];
    assert_int_equal(crypto_generichash(want, sizeof(want), (const uint8_t *)"abc", 3, NULL, 0),
                     0);
    psi_gate_key k = key_of("abc");
    assert_memory_equal(k.k, want, 32);
    assert_int_equal(k.secret, 1);
    /* BLAKE2b-256("abc"), the published test vector, spelled out. */
    static const uint8_t vec[32] = {0xbd, 0xdd, 0x81, 0x3c, 0x63, 0x42, 0x39, 0x72,
                                    0x31, 0x71, 0xef, 0x3f, 0xee, 0x98, 0x57, 0x9b,
                                    0x94, 0x96, 0x4e, 0x3b, 0xb1, 0xcb, 0x3e, 0x42,
                                    0x72, 0x62, 0xc8, 0xc0, 0x68, 0xd5, 0x23, 0x19};
    assert_memory_equal(k.k, vec, 32);

    psi_gate_key e;
    memset(&e, 0xEE, sizeof(e));
    psi_gate_key_derive(&e, "", 0);
    assert_int_equal(crypto_generichash(want, sizeof(want), NULL, 0, NULL, 0), 0);
    assert_memory_equal(e.k, want, 32);
    assert_int_equal(e.secret, 0);
    psi_gate_key abd = key_of("abd");
    assert_memory_not_equal(abd.k, k.k, 32);
}

/* ---- keys from the environment --------------------------------------------------- */

static char tmpfile_path[64];

static int setup_env(void **state)
{
    alarm(WATCHDOG_S);
    unsetenv("PS_SECRET");
    unsetenv("PS_SECRET_FILE");
    tmpfile_path[0] = 0;
    return 0;
}

static int teardown_env(void **state)
{
    unsetenv("PS_SECRET");
    unsetenv("PS_SECRET_FILE");
    if (tmpfile_path[0]) unlink(tmpfile_path);
    tmpfile_path[0] = 0;
    alarm(0);
    return 0;
}

/* Write `len` bytes to a fresh temporary file; its path is tmpfile_path. */
static void write_secret_file(const void *data, size_t len)
{
    if (tmpfile_path[0]) unlink(tmpfile_path);
    snprintf(tmpfile_path, sizeof(tmpfile_path), "/tmp/test_gate_secret_XXXXXX");
    int fd = mkstemp(tmpfile_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* Read the key from the environment; the key is pre-filled with junk so a
 * call that leaves it alone shows. */
static int key_from_env(psi_gate_key *k)
{
    memset(k, 0xEE, sizeof(*k));
    return psi_gate_key_from_env(k);
}

static void test_env_secret(void **state)
{
    psi_gate_key k, want = key_of("s3cr3t value");
    assert_int_equal(setenv("PS_SECRET", "s3cr3t value", 1), 0);
    assert_int_equal(key_from_env(&k), PS_OK);
    assert_int_equal(k.secret, 1);
    assert_memory_equal(k.k, want.k, PSI_GATE_KEY);
}

/* The file's trailing newline is not part of the secret: the same key as
 * PS_SECRET set to the content. */
static void test_env_secret_file_strips_newline(void **state)
{
    psi_gate_key k, want = key_of("from a file");
    write_secret_file("from a file\n", 12);
    assert_int_equal(setenv("PS_SECRET_FILE", tmpfile_path, 1), 0);
    assert_int_equal(key_from_env(&k), PS_OK);
    assert_int_equal(k.secret, 1);
    assert_memory_equal(k.k, want.k, PSI_GATE_KEY);

    /* Several trailing newlines, CRLF: stripped; an inner newline is kept. */
    write_secret_file("from a file\r\n\n", 14);
    assert_int_equal(setenv("PS_SECRET_FILE", tmpfile_path, 1), 0);
    assert_int_equal(key_from_env(&k), PS_OK);
    assert_memory_equal(k.k, want.k, PSI_GATE_KEY);

    psi_gate_key two = key_of("line1\nline2");
    write_secret_file("line1\nline2\n", 12);
    assert_int_equal(setenv("PS_SECRET_FILE", tmpfile_path, 1), 0);
    assert_int_equal(key_from_env(&k), PS_OK);
    assert_memory_equal(k.k, two.k, PSI_GATE_KEY);

    /* The same file through PS_SECRET gives the same key. */
    assert_int_equal(unsetenv("PS_SECRET_FILE"), 0);
    assert_int_equal(setenv("PS_SECRET", "line1\nline2", 1), 0);
    psi_gate_key k2;
    assert_int_equal(key_from_env(&k2), PS_OK);
    assert_memory_equal(k2.k, two.k, PSI_GATE_KEY);
}

/* 4096 bytes is the longest secret a file may hold. */
static void test_env_secret_file_size_limit(void **state)
{
    char buf[4098];
    memset(buf, 'x', sizeof(buf));
    psi_gate_key k, want;
    psi_gate_key_derive(&want, buf, 4096);
    buf[4096] = '\n';
    write_secret_file(buf, 4097);
    assert_int_equal(setenv("PS_SECRET_FILE", tmpfile_path, 1), 0);
    assert_int_equal(key_from_env(&k), PS_OK);
    assert_memory_equal(k.k, want.k, PSI_GATE_KEY);

    memset(buf, 'x', sizeof(buf));
    write_secret_file(buf, 4097);
    assert_int_equal(setenv("PS_SECRET_FILE", tmpfile_path, 1), 0);
    assert_int_equal(key_from_env(&k), PS_ERR_CONFIG);
}

/*
 * Regression: a file longer than 4096 bytes whose byte 4097 is a newline,
 * e.g. a 4096-byte first line and a second line.  gate.h promises the
 * file's contents without trailing newlines, 1..4096 bytes; gate.c reads
 * only 4097 bytes, strips the newline among them and accepts the first
 * line alone as the secret, silently ignoring the rest of the file.
 */
static void test_env_secret_file_over_limit_after_newline(void **state)
{
    char buf[4098];
    memset(buf, 'x', sizeof(buf));
    buf[4096] = '\n';
    buf[4097] = 'y';
    write_secret_file(buf, sizeof(buf));
    assert_int_equal(setenv("PS_SECRET_FILE", tmpfile_path, 1), 0);
    psi_gate_key k;
    assert_int_equal(key_from_env(&k), PS_ERR_CONFIG);
}

static void test_env_both_set_config(void **state)
{
    write_secret_file("file secret\n", 12);
    assert_int_equal(setenv("PS_SECRET_FILE", tmpfile_path, 1), 0);
    assert_int_equal(setenv("PS_SECRET", "env secret", 1), 0);
    psi_gate_key k;
    assert_int_equal(key_from_env(&k), PS_ERR_CONFIG);
}

static void test_env_empty_file_config(void **state)
{
    psi_gate_key k;
    write_secret_file("", 0);
    assert_int_equal(setenv("PS_SECRET_FILE", tmpfile_path, 1), 0);
    assert_int_equal(key_from_env(&k), PS_ERR_CONFIG);
    /* Only newlines: empty once they are stripped. */
    write_secret_file("\n\r\n", 3);
    assert_int_equal(setenv("PS_SECRET_FILE", tmpfile_path, 1), 0);
    assert_int_equal(key_from_env(&k), PS_ERR_CONFIG);
}

static void test_env_missing_file_config(void **state)
{
    psi_gate_key k;
    assert_int_equal(setenv("PS_SECRET_FILE", "/nonexistent/dir/ps_secret", 1), 0);
    assert_int_equal(key_from_env(&k), PS_ERR_CONFIG);
    /* A directory is not a readable secret file either. */
    assert_int_equal(setenv("PS_SECRET_FILE", "/tmp", 1), 0);
    assert_int_equal(key_from_env(&k), PS_ERR_CONFIG);
}

/* Neither variable: PS_OK with the public key (secret == 0). */
static void test_env_neither_public_key(void **state)
{
    psi_gate_key k, pub;
    psi_gate_key_derive(&pub, NULL, 0);
    assert_int_equal(key_from_env(&k), PS_OK);
    assert_int_equal(k.secret, 0);
    assert_memory_equal(k.k, pub.k, PSI_GATE_KEY);
}

/*
 * Regression: PS_SECRET set to the empty string.  gate.c means to refuse it
 * (its "PS_SECRET is set but empty" branch returns PS_ERR_CONFIG), but
 * psi_env_str treats an empty variable as unset, so that branch is dead and
 * an empty PS_SECRET silently yields the public key (secret == 0), and with
 * PS_SECRET_FILE also set the file is used instead of "both set".
 */
static void test_env_empty_secret_config(void **state)
{
    psi_gate_key k;
    assert_int_equal(setenv("PS_SECRET", "", 1), 0);
    assert_int_equal(key_from_env(&k), PS_ERR_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_same_key, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_round_trip_public_key_fresh_nonces, setup_env,
                                        teardown_env),
        cmocka_unit_test_setup_teardown(test_wrong_key_connector_refuses_reply, setup_env,
                                        teardown_env),
        cmocka_unit_test_setup_teardown(test_wrong_key_acceptor_refuses_proof, setup_env,
                                        teardown_env),
        cmocka_unit_test_setup_teardown(test_tampered_bits_refused, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_bad_magic_proto, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_replayed_proof_refused, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_reflected_tag_refused, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_key_derive_is_blake2b, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_env_secret, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_env_secret_file_strips_newline, setup_env,
                                        teardown_env),
        cmocka_unit_test_setup_teardown(test_env_secret_file_size_limit, setup_env,
                                        teardown_env),
        cmocka_unit_test_setup_teardown(test_env_secret_file_over_limit_after_newline,
                                        setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_env_both_set_config, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_env_empty_file_config, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_env_missing_file_config, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_env_neither_public_key, setup_env, teardown_env),
        cmocka_unit_test_setup_teardown(test_env_empty_secret_config, setup_env, teardown_env),
    };
    return cmocka_run_group_tests_name("gate", tests, NULL, NULL);
}
