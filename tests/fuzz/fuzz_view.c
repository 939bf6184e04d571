/*
 * fuzz_view.c -- libFuzzer target for the membership decoders: the cluster
 * view and the join request (both arrive from the network in the aux
 * segment of control messages).  Anything that decodes must re-encode to
 * the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    psi_view v;
    if (psi_view_decode(data, size, &v) == 0) {
        uint8_t *buf;
        size_t len;
        if (psi_view_encode(&v, &buf, &len) != 0 || len != size || memcmp(buf, data, size))
            abort();
        free(buf);
        psi_view_free(&v);
    }
    psi_join j;
    if (psi_join_decode(data, size, &j) == 0) {
        uint8_t buf[128];
        size_t len;
        if (psi_join_encode(&j, buf, sizeof(buf), &len) != 0 || len != size ||
            memcmp(buf, data, size))
            abort();
    }
    return 0;
}
