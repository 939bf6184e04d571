/*
 * log.c -- see log.h.  The prefix lives in a fixed buffer set at start-up
 * (before threads exist); the level is read from the environment once.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "log.h"

static char log_prefix[48] = "ps";
static int log_level = PSI_LOG_WARN;
static pthread_once_t level_once = PTHREAD_ONCE_INIT;

static void level_init(void)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    const char *v = getenv("PS_LOG_LEVEL");
    if (!v) return;
    for (int i = 0; i < 4; i++)
        if (strcmp(v, names[i]) == 0) log_level = i;
}

void psi_log_set_prefix(const char *prefix)
{
    snprintf(log_prefix, sizeof(log_prefix), "%s", prefix);
}

int psi_log_enabled(int level)
{
    pthread_once(&level_once, level_init);
    return level <= log_level;
}

void psi_log(int level, const char *fmt, ...)
{
    static const char *const tag[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    char line[1024];
    struct timeval tv;
    struct tm tm;
    va_list ap;

    if (!psi_log_enabled(level)) return;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld [%s] %s ", tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (long)tv.tv_usec / 1000, log_prefix,
                     tag[level]);
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof(line) - 1) n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
