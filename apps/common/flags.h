/*
 * flags.h -- command-line helpers shared by the apps (pslinear, pslda,
 * pssketch): a bad flag is said on stderr with the program's name and a
 * pointer to --help, and the program exits 2; a number must be the whole
 * argument and lie in its range.  Header-only, included by the one file of
 * an app that parses its flags, after defining FLAGS_PROG (the program's
 * name, a string literal).  No library calls: the apps' own code.
 */
#ifndef APPS_COMMON_FLAGS_H
#define APPS_COMMON_FLAGS_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef FLAGS_PROG
#error "define FLAGS_PROG (the program's name) before including flags.h"
#endif

/* Say `fmt` (one %s: `a`) as the program's usage error and exit 2. */
static void bad_flag(const char *fmt, const char *a)
{
    fprintf(stderr, FLAGS_PROG ": ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, " (see --help)\n");
    exit(2);
}

/* The value of --name: all of `s` as a number in [lo, hi], else bad_flag. */
static double num(const char *name, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) {
        char m[160];
        snprintf(m, sizeof m, "bad value for --%s: '%%s' (want %g..%g)", name, lo, hi);
        bad_flag(m, s);
    }
    return v;
}

#endif /* APPS_COMMON_FLAGS_H */
