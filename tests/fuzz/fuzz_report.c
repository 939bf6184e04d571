/*
 * fuzz_report.c -- libFuzzer target for the REPORT body's decoder (a node's
 * report to the scheduler arrives from the network in the aux segment of a
 * PSI_MSG_REPORT; src/node/report.c).  Anything that decodes must re-encode
 * to the same bytes, and its names must be what the page may print.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/report.h"

static psi_report r;
static uint8_t buf[PSI_REPORT_MAX_BYTES];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len;
    if (psi_report_decode(data, size, &r) != 0) return 0;
    for (int i = 0; i < r.nvalues; i++)
        if (!psi_report_name_ok(r.values[i].name, strlen(r.values[i].name))) abort();
    if (psi_report_encode(&r, buf, sizeof(buf), &len) != 0 || len != size ||
        memcmp(buf, data, size) != 0)
        abort();
    return 0;
}
