/*
 * psbench.h -- shared declarations of the psbench tool: its options, the
 * result of one worker's run, and the helpers split over options.c
 * (flags), report.c (statistics, JSON and text output, the wire-bytes
 * model) and psbench.c (the cluster program).
 *
 * psbench uses only the public API (ps/ps.h).  It never changes library
 * state beyond its own two tables ("psbench" and "psbench.report").
 */
#ifndef PSBENCH_H
#define PSBENCH_H

#include <stddef.h>
#include <stdint.h>

#include "ps/ps.h"

typedef enum pb_op { PB_PUSH = 0, PB_PULL, PB_PUSHPULL } pb_op;

typedef struct pb_opts {
    pb_op op;
    uint64_t keys;       /* N: keys per request */
    int val_len;         /* L: f32 values per key (the table's width) */
    long iters;          /* measured iterations */
    long warmup;         /* iterations before measuring; -1 until defaulted */
    int inflight;        /* K: most tasks in flight */
    int random_keys;     /* N random u64 keys instead of 0..N-1 */
    int sort_keys;       /* hand random keys over sorted */
    int orders;          /* key lists: the same keys in this many orders, in turn */
    int store;           /* sparse (hash) table; else dense over [0, N) */
    int json;            /* JSON result line instead of text */
    int zero_copy;       /* --zero-copy: ps_task_opts.zero_copy on every task */
    uint64_t seed;       /* RNG seed for --random-keys */
    double progress_s;   /* seconds between progress lines on stderr */
    const char *filters; /* filter chain of the table ("" = none) */
} pb_opts;

/* What one worker measured over the measured iterations. */
typedef struct pb_result {
    double wall_s;       /* first submit to last completion */
    double *lat_us;      /* per-task latency, submit to completion callback */
    double *sub_us;      /* time inside the ps_push/ps_pull/ps_pushpull call */
    long nlat;
    long errors;         /* tasks that failed */
    int first_error;     /* status of the first failure (0: none) */
    double wire_bytes;   /* model of bytes this worker sent (report.c) */
    double resends;      /* requests the library resent (ps_table_stats) */
} pb_result;

/* One worker's figures as shared through the report table (rank order). */
typedef struct pb_worker {
    double wall_s, value_bytes, keys, p50_us, submit_p50_us;
} pb_worker;

/* Totals over every worker, gathered through the report table. */
typedef struct pb_total {
    double wall_s;       /* the slowest worker's wall time */
    double value_bytes;  /* bytes of values moved, all workers */
    double keys;         /* keys moved, all workers */
    double wire_bytes;
    double errors;
    double resends;
    int nworkers;
    pb_worker *per;      /* nworkers entries, by rank */
} pb_total;

/* options.c: parse argv into `o`.  Returns 0 to run, 1 after --help was
 * printed (exit 0), 2 after a usage error was printed (exit 2). */
int pb_parse(int argc, char **argv, pb_opts *o);
const char *pb_op_name(pb_op op);

/* report.c */
double pb_now_s(void);
/* Bytes of requests one worker puts on the wire per iteration (model). */
double pb_wire_bytes_per_iter(const pb_opts *o, int servers);
/* Sort r->lat_us and r->sub_us (ascending). */
void pb_sort_results(pb_result *r);
/* Nearest-rank percentile p of sorted v[0..n); 0 when n == 0. */
double pb_pct(const double *v, long n, double p);
/* Sort r->lat_us and print the result line(s) of worker rank 0: totals
 * over all workers, then (several workers) each worker's own figures. */
void pb_report(const pb_opts *o, pb_result *r, const pb_total *tot);
/* Print a server's storage line (JSON on stderr). */
void pb_report_server(const pb_opts *o, ps_table *t);

#endif /* PSBENCH_H */
