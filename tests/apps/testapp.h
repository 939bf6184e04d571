/*
 * testapp.h -- what the cluster test programs of tests/apps share: the
 * PASS/FAIL line the shell tests grep, and reading "--flag value" options.
 * Header-only (every program here is one .c file, see CMakeLists.txt).
 */
#ifndef PS_TESTAPP_H
#define PS_TESTAPP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CHECKs that failed; the program exits nonzero if any (unused by some) */
static int failures __attribute__((unused));

/* Print "PASS name" or "FAIL name: why" (printf arguments) and count failures. */
#define CHECK(cond, name, ...)                                         \
    do {                                                                \
        if (cond) {                                                     \
            printf("PASS %s\n", name);                                  \
        } else {                                                        \
            printf("FAIL %s: ", name);                                  \
            printf(__VA_ARGS__);                                        \
            printf("\n");                                               \
            failures++;                                                 \
        }                                                               \
        fflush(stdout);                                                 \
    } while (0)

/* The value after `flag` in argv, or `def`. */
static inline const char *arg_str(int argc, char **argv, const char *flag, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], flag)) return argv[i + 1];
    return def;
}

static inline long arg_long(int argc, char **argv, const char *flag, long def)
{
    const char *s = arg_str(argc, argv, flag, NULL);
    return s ? strtol(s, NULL, 10) : def;
}

#endif /* PS_TESTAPP_H */
