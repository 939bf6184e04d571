/*
 * log.h -- leveled logging to stderr, each line prefixed with the node's
 * role and rank ("[server 1] ..."), a wall-clock timestamp and the level.
 *
 * Design: the level comes from PS_LOG_LEVEL (error, warn, info, debug;
 * default warn) read once.  A line is formatted into a stack buffer and
 * written with one write(2), so concurrent threads never interleave within a
 * line.  Never allocates; safe to call from any thread, not from signal
 * handlers.
 */
#ifndef PSI_LOG_H
#define PSI_LOG_H

enum { PSI_LOG_ERROR = 0, PSI_LOG_WARN = 1, PSI_LOG_INFO = 2, PSI_LOG_DEBUG = 3 };

/* Set the prefix printed on every line (e.g. "worker 3"). */
void psi_log_set_prefix(const char *prefix);
int psi_log_enabled(int level);
void psi_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define PSI_ERROR(...) psi_log(PSI_LOG_ERROR, __VA_ARGS__)
#define PSI_WARN(...) psi_log(PSI_LOG_WARN, __VA_ARGS__)
#define PSI_INFO(...) psi_log(PSI_LOG_INFO, __VA_ARGS__)
#define PSI_DEBUG(...)                                                    \
    do {                                                                   \
        if (psi_log_enabled(PSI_LOG_DEBUG)) psi_log(PSI_LOG_DEBUG, __VA_ARGS__); \
    } while (0)

#endif /* PSI_LOG_H */
