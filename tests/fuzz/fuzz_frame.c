/*
 * fuzz_frame.c -- libFuzzer target for the wire decoder (src/wire/msg.c).
 *
 * Each input is decoded three ways with a 1 MiB payload cap: as a whole
 * frame; as a frame whose header CRC has been recomputed (otherwise almost
 * no mutation would get past the CRC and the checks behind it would go
 * unexplored); and its first PSI_HDR_SIZE bytes as a standalone header.
 * Whatever decodes must re-encode to exactly the bytes it came from; the
 * target abort()s if not.  Sanitizers catch any read past the input.
 *
 * With PS_FUZZ_SEED_DIR set, LLVMFuzzerInitialize first writes a few valid
 * frames made by the real encoder into that folder (scripts/fuzz.sh uses
 * this to seed the corpus).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "wire/msg.h"

#define FUZZ_CAP (1ull << 20)

/* Decode a frame; on success it must re-encode to the same bytes. */
static void check_frame(const uint8_t *data, size_t size)
{
    psi_msg *m = NULL, *d;
    uint8_t *buf;

    if (psi_frame_decode(data, size, FUZZ_CAP, &m) != 0) {
        if (m) abort();
        return;
    }
    if (psi_frame_size(m) != size || !(d = psi_msg_dup(m))) abort();
    buf = malloc(size);
    if (!buf || psi_frame_encode(d, buf, size) != (long)size) abort();
    if (memcmp(buf, data, size) != 0) abort();
    free(buf);
    psi_msg_free(d);
    psi_msg_free(m);
}

static void check_header(const uint8_t *data)
{
    uint8_t buf[PSI_HDR_SIZE];
    psi_hdr h;

    if (psi_hdr_decode(data, PSI_HDR_SIZE, FUZZ_CAP, &h) != 0) return;
    psi_hdr_encode(&h, buf);
    if (memcmp(buf, data, PSI_HDR_SIZE) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *fixed;

    check_frame(data, size);
    if (size < PSI_HDR_SIZE) return 0;
    check_header(data);
    if (!(fixed = malloc(size))) abort();
    memcpy(fixed, data, size);
    psi_put_u32(fixed + PSI_HDR_SIZE - 4, psi_crc32c(fixed, PSI_HDR_SIZE - 4));
    check_frame(fixed, size);
    check_header(fixed);
    free(fixed);
    return 0;
}

/* ---- corpus seeds ------------------------------------------------------------ */

static void write_seed(const char *dir, int n, const psi_msg *m)
{
    uint8_t buf[256];
    char path[4096];
    long len = psi_frame_encode(m, buf, sizeof(buf));
    FILE *f;

    snprintf(path, sizeof(path), "%s/seed-%d", dir, n);
    if (len < 0 || !(f = fopen(path, "wb"))) return;
    fwrite(buf, 1, (size_t)len, f);
    fclose(f);
}

/* A DATA push with all four segments, and a bare control message. */
static void write_seeds(const char *dir)
{
    static const uint64_t keys[3] = {3, 17, 99};
    static const float vals[3] = {1.5f, -2.0f, 0.25f};
    psi_msg *m = psi_msg_new(PSI_MSG_DATA);

    if (!m) return;
    m->hdr.flags = PSI_F_REQUEST | PSI_F_PUSH;
    m->hdr.table = 1, m->hdr.sender = 9, m->hdr.receiver = 2, m->hdr.epoch = 4;
    m->hdr.timestamp = 42, m->hdr.key_lo = 0, m->hdr.key_hi = 100;
    m->hdr.key_count = 3, m->hdr.filters[0] = 1;
    psi_msg_set_seg(m, PSI_SEG_KEYS, keys, sizeof(keys));
    psi_msg_set_seg(m, PSI_SEG_VALS, vals, sizeof(vals));
    psi_msg_set_seg(m, PSI_SEG_LENS, "\1\0\0\0\1\0\0\0\1\0\0\0", 12);
    psi_msg_set_seg(m, PSI_SEG_AUX, "aux", 3);
    write_seed(dir, 0, m);
    psi_msg_free(m);
    if (!(m = psi_msg_new(PSI_MSG_HEARTBEAT))) return;
    m->hdr.flags = PSI_F_CONTROL, m->hdr.sender = 3;
    write_seed(dir, 1, m);
    psi_msg_free(m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *dir = getenv("PS_FUZZ_SEED_DIR");

    if (dir && *dir) write_seeds(dir);
    return 0;
}
