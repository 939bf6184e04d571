/*
 * report.h -- the REPORT message a node sends the scheduler about once a
 * second (for the status page, src/node/status.h): its tables' counters and
 * the application's named values (ps_report).
 *
 * Pieces: the decoded record (psi_report) and its wire encoding, pure and
 * fuzzed (tests/fuzz/fuzz_report.c); the node's registry of named values
 * (ps_report) and of pull requests counted per table as they arrive
 * (report.c); and the reporter thread that gathers the tables' counters and
 * sends the message (report_send.c).
 *
 * Encoding (the aux segment of a PSI_MSG_REPORT; hdr.arg = PSI_REPORT_FORMAT,
 * hdr.key_lo = the report's number, counting from 1 per node), little-endian:
 *
 *   u16 ntables, u16 nvalues
 *   ntables times: u8 name length (1..63), the name (bytes 0x20..0x7e),
 *                  PSI_REPORT_NCOUNT x u64 counters (psi_report_table order)
 *   nvalues times: u8 name length (1..47), the name ([A-Za-z0-9_.:-]),
 *                  f64 value (IEEE-754 bits as u64; finite)
 *
 * and nothing after.  The decoder checks every count against its cap and
 * every length against the bytes left before reading, and refuses bad
 * names, non-finite values and trailing bytes.
 */
#ifndef PSI_NODE_REPORT_H
#define PSI_NODE_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "ps/report.h"
#include "wire/msg.h"

#define PSI_REPORT_FORMAT 1
#define PSI_REPORT_TABLE_NAME_MAX 64
#define PSI_REPORT_MAX_TABLES 256
#define PSI_REPORT_NCOUNT 9
/* Largest encoded body: every table and value at its longest name. */
#define PSI_REPORT_MAX_BYTES                                                             \
    (4 + PSI_REPORT_MAX_TABLES * (1 + 63 + 8 * PSI_REPORT_NCOUNT) +                    \
     PS_REPORT_MAX_SERIES * (1 + PS_REPORT_NAME_MAX - 1 + 8))

/* One table's counters on the reporting node (ps_table_stats and
 * ps_traffic; pulls are pull requests this node received as a server). */
typedef struct psi_report_table {
    char name[PSI_REPORT_TABLE_NAME_MAX];
    uint64_t keys, bytes, pushes, pulls, resends;
    uint64_t sent_raw, sent_wire, recv_wire, recv_raw; /* bytes around the filters */
} psi_report_table;

typedef struct psi_report_value {
    char name[PS_REPORT_NAME_MAX];
    double value;
} psi_report_value;

typedef struct psi_report {
    int ntables, nvalues;
    psi_report_table tables[PSI_REPORT_MAX_TABLES];
    psi_report_value values[PS_REPORT_MAX_SERIES];
} psi_report;

/* Whether `name` is a valid series name (see ps_report). */
int psi_report_name_ok(const char *name, size_t len);

/* Encode `r` into `buf` of `cap` bytes (PSI_REPORT_MAX_BYTES always
 * suffices); *len gets the size.  Table names outside 0x20..0x7e are
 * written with '?' in their place.  0, PS_ERR_INVAL (a count over its cap,
 * a bad series name) or PS_ERR_TOOBIG. */
int psi_report_encode(const psi_report *r, uint8_t *buf, size_t cap, size_t *len);
/* Decode and validate `len` bytes from the network into *out (whose names
 * are then NUL-terminated).  0 or PS_ERR_PROTO; allocates nothing. */
int psi_report_decode(const uint8_t *buf, size_t len, psi_report *out);

/* This node's named values as of now, into r->values / r->nvalues. */
void psi_report_values(psi_report *r);
/* Count an arriving DATA message (the node's I/O thread, before kv sees
 * it): a pull request is counted for its table id.  Cheap; a leaf lock. */
void psi_report_count_data(const psi_hdr *h);
/* Pull requests counted for table id `id`. */
uint64_t psi_report_pulls(uint32_t id);

/* The reporter thread (report_send.c): every PSI_REPORT_INTERVAL_MS it
 * gathers the counters of the open tables and this node's values and
 * hands them to `sink` (node.c: sends a REPORT to the scheduler, or on the
 * scheduler stores it).  Runs with no lock held and takes the tables' locks
 * (through ps_table_stats_get), so the caller must not hold po.lock when it
 * starts or stops it.  Start returns 0 or PS_ERR_SYS; stop joins the
 * thread and is safe when none runs. */
#define PSI_REPORT_INTERVAL_MS 1000
typedef void (*psi_report_sink)(const psi_report *r, uint64_t seq);
int psi_reporter_start(psi_report_sink sink);
void psi_reporter_stop(void);
/* Gather a report now (for the sink, the tests and the scheduler's own). */
void psi_report_gather(psi_report *r);

#endif /* PSI_NODE_REPORT_H */
