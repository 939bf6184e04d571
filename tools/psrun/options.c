/*
 * options.c -- psrun's command line: `psrun -s S -w W [options] -- COMMAND`.
 *
 * Design: one table lists every option once, with its getopt_long entry and
 * the handler that checks and stores its argument; the getopt loop only looks
 * the returned code up in that table.  Numbers are parsed strictly (the whole
 * argument, inside a stated range).  The command must follow a literal `--`,
 * so a mistyped psrun flag can never be taken for the start of the command.
 *
 * Must never: exit the process (the caller decides the status), or print
 * anything but the usage text to stdout.  Errors go to stderr with a hint.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psrun.h"

#define MAX_SECONDS 1e7 /* about 115 days; keeps deadlines far from overflow */

enum { OPT_TIMEOUT = 256, OPT_GRACE, OPT_PORT, OPT_HOST, OPT_NO_PREFIX, OPT_ENV, OPT_STATS };

typedef int (*opt_fn)(psr_opts *o, const char *arg);

typedef struct opt_def {
    struct option lo; /* name, has_arg, flag (unused), code */
    opt_fn fn;
} opt_def;

static const char usage_text[] =
    "Usage: psrun -s SERVERS -w WORKERS [options] -- COMMAND [ARGS...]\n"
    "\n"
    "Start a libps cluster on this machine: one scheduler, SERVERS servers and\n"
    "WORKERS workers, each running COMMAND with PS_ROLE, PS_RANK, PS_SCHEDULER,\n"
    "PS_NUM_SERVERS and PS_NUM_WORKERS set on top of psrun's own environment,\n"
    "and PS_SECRET: a fresh random cluster secret, unless PS_SECRET or\n"
    "PS_SECRET_FILE is already set (in the environment or with --env).\n"
    "Every line a node prints is printed by psrun as \"[role rank] line\".\n"
    "\n"
    "Options:\n"
    "  -s, --servers N     number of servers, 0..1024 (required)\n"
    "  -w, --workers N     number of workers, 1..1024 (required)\n"
    "      --timeout SECS  stop the cluster and exit 124 after SECS seconds\n"
    "      --grace SECS    once the workers have exited 0, wait this long for\n"
    "                      the scheduler and servers to exit (default 30)\n"
    "      --port P        scheduler port (default: a free port)\n"
    "      --host H        scheduler host (default 127.0.0.1)\n"
    "      --env K=V       extra environment for every node (repeatable)\n"
    "      --no-prefix     print node output without the [role rank] prefix\n"
    "      --stats         each node prints its traffic per table (messages, keys,\n"
    "                      bytes before and after filters) when it finalizes\n"
    "  -q, --quiet         do not print psrun's own status lines\n"
    "  -h, --help          print this help and exit\n"
    "\n"
    "Exit status: 0 when every node exits 0; otherwise the status of the first\n"
    "node that failed (128+N if killed by signal N; 75 for a node the scheduler\n"
    "declared dead), 124 on --timeout, 130 or\n"
    "143 on SIGINT or SIGTERM, 1 when the scheduler or servers outlive the\n"
    "grace period, 2 on a usage error.  psrun never leaves a node running.\n";

static void usage_hint(void)
{
    fprintf(stderr, "Try 'psrun --help' for more information.\n");
}

/* Parse all of arg as an integer in [lo, hi] into *out; 0 or -1 (printed). */
static int parse_int(const char *arg, long lo, long hi, const char *what, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "psrun: %s must be an integer in %ld..%ld, got '%s'\n",
                what, lo, hi, arg);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Parse all of arg as seconds (decimals allowed) into *out; 0 or -1 (printed).
 * Zero is accepted only when allow_zero is set. */
static int parse_seconds(const char *arg, int allow_zero, const char *what,
                         double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno != 0 || end == arg || *end != '\0' || !isfinite(v) || v < 0 ||
        v > MAX_SECONDS || (v == 0 && !allow_zero)) {
        fprintf(stderr, "psrun: %s must be a number of seconds (%s, at most %g), "
                "got '%s'\n", what, allow_zero ? "0 or more" : "more than 0",
                MAX_SECONDS, arg);
        return -1;
    }
    *out = v;
    return 0;
}

static int opt_servers(psr_opts *o, const char *arg)
{
    return parse_int(arg, 0, PSR_MAX_NODES, "--servers", &o->servers);
}

static int opt_workers(psr_opts *o, const char *arg)
{
    return parse_int(arg, 1, PSR_MAX_NODES, "--workers", &o->workers);
}

static int opt_timeout(psr_opts *o, const char *arg)
{
    return parse_seconds(arg, 0, "--timeout", &o->timeout_s);
}

static int opt_grace(psr_opts *o, const char *arg)
{
    return parse_seconds(arg, 1, "--grace", &o->grace_s);
}

static int opt_port(psr_opts *o, const char *arg)
{
    return parse_int(arg, 1, 65535, "--port", &o->port);
}

static int opt_host(psr_opts *o, const char *arg)
{
    if (arg[0] == '\0') {
        fprintf(stderr, "psrun: --host must not be empty\n");
        return -1;
    }
    o->host = arg;
    return 0;
}

static int opt_no_prefix(psr_opts *o, const char *arg)
{
    o->prefix = 0;
    return 0;
}

static int opt_env(psr_opts *o, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg) {
        fprintf(stderr, "psrun: --env expects K=V, got '%s'\n", arg);
        return -1;
    }
    char **env = realloc(o->env, (size_t)(o->nenv + 1) * sizeof(*env));
    if (env == NULL) {
        fprintf(stderr, "psrun: out of memory\n");
        return -1;
    }
    o->env = env;
    o->env[o->nenv++] = (char *)arg;
    return 0;
}

/* --stats: every node prints its traffic per table when it finalizes
 * (PS_STATS=1), so the summary comes out prefixed with the node's name. */
static int opt_stats(psr_opts *o, const char *arg)
{
    (void)arg;
    return opt_env(o, "PS_STATS=1");
}

static int opt_quiet(psr_opts *o, const char *arg)
{
    o->quiet = 1;
    return 0;
}

static int opt_help(psr_opts *o, const char *arg)
{
    o->help = 1;
    return 0;
}

static const opt_def opt_table[] = {
    {{"servers", required_argument, NULL, 's'}, opt_servers},
    {{"workers", required_argument, NULL, 'w'}, opt_workers},
    {{"timeout", required_argument, NULL, OPT_TIMEOUT}, opt_timeout},
    {{"grace", required_argument, NULL, OPT_GRACE}, opt_grace},
    {{"port", required_argument, NULL, OPT_PORT}, opt_port},
    {{"host", required_argument, NULL, OPT_HOST}, opt_host},
    {{"no-prefix", no_argument, NULL, OPT_NO_PREFIX}, opt_no_prefix},
    {{"env", required_argument, NULL, OPT_ENV}, opt_env},
    {{"stats", no_argument, NULL, OPT_STATS}, opt_stats},
    {{"quiet", no_argument, NULL, 'q'}, opt_quiet},
    {{"help", no_argument, NULL, 'h'}, opt_help},
};
#define NOPTS (sizeof(opt_table) / sizeof(opt_table[0]))

static const opt_def *find_opt(int code)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (opt_table[i].lo.val == code) return &opt_table[i];
    return NULL;
}

/* Report what getopt_long rejected: c is '?' (unknown) or ':' (missing
 * argument), arg the command-line word it was in.  Returns -1. */
static int bad_flag(int c, const char *arg)
{
    if (c == ':')
        fprintf(stderr, "psrun: option '%s' needs an argument\n", arg);
    else if (optopt != 0)
        fprintf(stderr, "psrun: unknown option '-%c'\n", optopt);
    else
        fprintf(stderr, "psrun: unknown option '%s'\n", arg);
    return -1;
}

/* Run getopt_long over argv; returns 0, or -1 after printing an error. */
static int scan_flags(int argc, char **argv, psr_opts *o)
{
    struct option longopts[NOPTS + 1];
    for (size_t i = 0; i < NOPTS; i++) longopts[i] = opt_table[i].lo;
    memset(&longopts[NOPTS], 0, sizeof(longopts[NOPTS]));

    int c;
    optind = 1;
    opterr = 0; /* our own messages, without argv[0]'s path */
    while ((c = getopt_long(argc, argv, "+:s:w:qh", longopts, NULL)) != -1) {
        const opt_def *d = find_opt(c);
        if (d == NULL) return bad_flag(c, argv[optind - 1]);
        if (d->fn(o, optarg) != 0) return -1;
    }
    return 0;
}

/* Check what the flags alone cannot: required counts and the command. */
static int check_command(int argc, char **argv, psr_opts *o)
{
    if (o->servers < 0 || o->workers < 1) {
        fprintf(stderr, "psrun: both -s/--servers and -w/--workers are required\n");
        return -1;
    }
    if (optind >= argc) {
        fprintf(stderr, "psrun: missing '-- COMMAND [ARGS...]'\n");
        return -1;
    }
    if (strcmp(argv[optind - 1], "--") != 0) {
        fprintf(stderr, "psrun: expected '--' before the command, got '%s'\n",
                argv[optind]);
        return -1;
    }
    o->cmd = &argv[optind];
    return 0;
}

int psr_parse_args(int argc, char **argv, psr_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->servers = -1;
    o->workers = -1;
    o->grace_s = 30;
    o->host = "127.0.0.1";
    o->prefix = 1;

    if (scan_flags(argc, argv, o) != 0) {
        usage_hint();
        return -1;
    }
    if (o->help) {
        fputs(usage_text, stdout);
        return 1;
    }
    if (check_command(argc, argv, o) != 0) {
        usage_hint();
        return -1;
    }
    return 0;
}

void psr_opts_free(psr_opts *o)
{
    free(o->env);
    o->env = NULL;
    o->nenv = 0;
}
