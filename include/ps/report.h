/*
 * ps/report.h -- the application's own figures on the scheduler's status
 * page (docs/status.md).
 *
 * Every node sends the scheduler a small report about once a second: its
 * tables' counters and the latest value of each series the program named
 * with ps_report.  The scheduler keeps the last 600 values of each series
 * and shows them on its page (PS_STATUS=host:port), in /status.json and in
 * /metrics (as libps_app_value{series="NAME",...}).  Reports are
 * best-effort: one lost on the network is simply replaced by the next, so
 * a series shows the latest value at about one-second resolution, not
 * every value recorded.
 */
#ifndef PS_REPORT_H
#define PS_REPORT_H

#ifdef __cplusplus
extern "C" {
#endif

/* libps is built with -fvisibility=hidden: what is declared here is its ABI. */
#pragma GCC visibility push(default)

/* A series name is 1..PS_REPORT_NAME_MAX-1 bytes of [A-Za-z0-9_.:-]. */
#define PS_REPORT_NAME_MAX 48
/* Distinct names a node may report. */
#define PS_REPORT_MAX_SERIES 32

/*
 * Record `value` as the latest of series `name` on this node (it replaces
 * the previous value; the next report carries it).  Thread-safe, cheap (no
 * I/O), callable before ps_start.  Returns 0; PS_ERR_INVAL for a bad name
 * or a value that is not finite (NaN, infinity); PS_ERR_TOOBIG when the
 * name is new and this node already has PS_REPORT_MAX_SERIES names.
 */
int ps_report(const char *name, double value);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* PS_REPORT_H */
