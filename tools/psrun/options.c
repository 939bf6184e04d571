/*
 * options.c -- psrun's command line: `psrun -s S -w W [options] -- COMMAND`,
 * in one of its modes: local (the default), --hostfile (ssh), --slurm,
 * --mpi or --k8s.
 *
 * Design: one table lists every option once, with its getopt_long entry and
 * the handler that checks and stores its argument; the getopt loop only looks
 * the returned code up in that table.  Numbers are parsed strictly (the whole
 * argument, inside a stated range).  The command must follow a literal `--`,
 * so a mistyped psrun flag can never be taken for the start of the command.
 * Which flags a mode needs or refuses is checked once, after the scan, by
 * check_mode.
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

enum {
    OPT_TIMEOUT = 256, OPT_GRACE, OPT_PORT, OPT_HOST, OPT_NO_PREFIX, OPT_ENV, OPT_STATS,
    OPT_STATUS,
    OPT_SLURM, OPT_MPI, OPT_K8S, OPT_HOSTFILE, OPT_SSH_KEY, OPT_SSH_OPT, OPT_ROLE,
    OPT_RANK, OPT_KEY_FILE
};

typedef int (*opt_fn)(psr_opts *o, const char *arg);

typedef struct opt_def {
    struct option lo; /* name, has_arg, flag (unused), code */
    opt_fn fn;
} opt_def;

static const char usage_text[] =
    "Usage: psrun -s SERVERS -w WORKERS [options] -- COMMAND [ARGS...]\n"
    "       psrun --hostfile FILE -s SERVERS -w WORKERS [options] -- COMMAND...\n"
    "       srun -n N psrun --slurm -s SERVERS [-w WORKERS] [options] -- COMMAND...\n"
    "       mpirun -n N psrun --mpi -s SERVERS [-w WORKERS] [options] -- COMMAND...\n"
    "       psrun --k8s --role ROLE --scheduler HOST -s S -w W [options] -- COMMAND...\n"
    "\n"
    "Start a libps cluster: one scheduler, SERVERS servers and WORKERS workers,\n"
    "each running COMMAND with PS_ROLE, PS_RANK, PS_SCHEDULER, PS_NUM_SERVERS and\n"
    "PS_NUM_WORKERS set on top of psrun's own environment, and PS_SECRET: a fresh\n"
    "random cluster secret, unless PS_SECRET or PS_SECRET_FILE is already set (in\n"
    "the environment or with --env).  Every line a node prints is printed by\n"
    "psrun as \"[role rank] line\".  By default every node runs on this machine.\n"
    "\n"
    "Options:\n"
    "  -s, --servers N     number of servers, 0..1024 (required)\n"
    "  -w, --workers N     number of workers, 1..1024 (required, except with\n"
    "                      --slurm and --mpi: the tasks left after the servers)\n"
    "      --timeout SECS  stop the cluster and exit 124 after SECS seconds\n"
    "      --grace SECS    once the workers have exited 0, wait this long for\n"
    "                      the scheduler and servers to exit (default 30)\n"
    "      --port P        scheduler port (default: a free port; --slurm: one\n"
    "                      derived from the job id; --mpi, --k8s: 9000)\n"
    "      --host H, --scheduler H\n"
    "                      scheduler host (default 127.0.0.1; --hostfile: the\n"
    "                      host the scheduler is placed on; --slurm: the first\n"
    "                      host of the step; --mpi: 127.0.0.1 when every rank is\n"
    "                      on one host, else required; --k8s: required)\n"
    "      --env K=V       extra environment for every node (repeatable)\n"
    "      --no-prefix     print node output without the [role rank] prefix\n"
    "      --stats         each node prints its traffic per table (messages, keys,\n"
    "                      bytes before and after filters) when it finalizes\n"
    "      --status [HOST:]PORT\n"
    "                      the scheduler serves a live status page (/), JSON\n"
    "                      (/status.json) and Prometheus metrics (/metrics)\n"
    "                      there (HOST default 127.0.0.1; PORT 0: a free one,\n"
    "                      printed); beyond loopback it asks for the cluster\n"
    "                      secret, so give PS_SECRET yourself\n"
    "  -q, --quiet         do not print psrun's own status lines\n"
    "  -h, --help          print this help and exit\n"
    "\n"
    "Over ssh (every node a child `ssh HOST` of this psrun):\n"
    "      --hostfile FILE lines 'HOST [slots=N] [role=R[,R...]]' (# comments);\n"
    "                      nodes (scheduler, servers, workers in rank order) go\n"
    "                      round-robin to the hosts that take their role and\n"
    "                      have a free slot (slots: no cap unless given)\n"
    "      --ssh-key FILE  ssh identity file (-i FILE, IdentitiesOnly=yes)\n"
    "      --ssh-opt OPT   extra ssh -o option, e.g. Port=2222 (repeatable; these\n"
    "                      win over psrun's ConnectTimeout=10 and keepalives)\n"
    "  The secret reaches each node on ssh's stdin, never on a command line;\n"
    "  a guard on each host stops the node when that stdin closes (psrun ends,\n"
    "  dies or loses the connection).  PS_*, DMLC_* and UCX_* variables and\n"
    "  --env values are passed on; the node starts in psrun's working directory\n"
    "  if the host has it, else in the home directory.\n"
    "\n"
    "One psrun per node, started by a launcher (each supervises its own node):\n"
    "      --slurm         role and rank from SLURM_PROCID and SLURM_NTASKS (task 0:\n"
    "                      scheduler, then servers, then workers); the scheduler\n"
    "                      on the first host of SLURM_STEP_NODELIST\n"
    "      --mpi           rank and size from OMPI_COMM_WORLD_RANK/SIZE (Open MPI)\n"
    "                      or PMI_RANK/PMI_SIZE (MPICH Hydra), roles as --slurm\n"
    "      --key-file FILE (--slurm, --mpi) per-user key from which each job's\n"
    "                      secret is derived when none is given (default\n"
    "                      ~/.config/libps/psrun.key, made on first use)\n"
    "      --k8s           one pod: PS_SECRET or PS_SECRET_FILE required; PS_HOST\n"
    "                      from POD_IP when set\n"
    "      --role ROLE     (--k8s) scheduler, server or worker\n"
    "      --rank N        (--k8s) the rank; default JOB_COMPLETION_INDEX, else\n"
    "                      the number that ends the pod's HOSTNAME (StatefulSet)\n"
    "\n"
    "Exit status: 0 when every node exits 0; otherwise the status of the first\n"
    "node that failed (128+N if killed by signal N; 75 for a node the scheduler\n"
    "declared dead; 255 when ssh could not reach a host or lost a node), 124\n"
    "on --timeout, 130 or 143 on SIGINT or SIGTERM, 1 when the scheduler or\n"
    "servers outlive the grace period, 2 on a usage error or on bad input found\n"
    "before any node starts (a malformed hostfile, a missing --ssh-key, a job\n"
    "with the wrong number of tasks).  psrun never leaves a node running.  In\n"
    "the per-task modes each psrun applies these rules to its own node.\n";

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

/* A non-empty string argument for the flag `what`; 0 or -1 (printed). */
static int set_str(const char **dst, const char *arg, const char *what)
{
    if (arg[0] == '\0') {
        fprintf(stderr, "psrun: %s must not be empty\n", what);
        return -1;
    }
    *dst = arg;
    return 0;
}

static int opt_host(psr_opts *o, const char *arg)
{
    return set_str(&o->host, arg, "--host/--scheduler");
}

/* The launcher mode; giving two of them is an error. */
static int set_mode(psr_opts *o, enum psr_mode m)
{
    if (o->mode != PSR_LOCAL && o->mode != m) {
        fprintf(stderr, "psrun: --hostfile, --slurm, --mpi and --k8s exclude each other\n");
        return -1;
    }
    o->mode = m;
    return 0;
}

static int opt_slurm(psr_opts *o, const char *arg)
{
    (void)arg;
    return set_mode(o, PSR_SLURM);
}

static int opt_mpi(psr_opts *o, const char *arg)
{
    (void)arg;
    return set_mode(o, PSR_MPI);
}

static int opt_k8s(psr_opts *o, const char *arg)
{
    (void)arg;
    return set_mode(o, PSR_K8S);
}

static int opt_hostfile(psr_opts *o, const char *arg)
{
    return set_mode(o, PSR_SSH) ? -1 : set_str(&o->hostfile, arg, "--hostfile");
}

static int opt_ssh_key(psr_opts *o, const char *arg)
{
    return set_str(&o->ssh_key, arg, "--ssh-key");
}

static int opt_ssh_opt(psr_opts *o, const char *arg)
{
    if (strchr(arg, '=') == NULL || arg[0] == '=') {
        fprintf(stderr, "psrun: --ssh-opt expects Name=value, got '%s'\n", arg);
        return -1;
    }
    char **v = realloc(o->ssh_opts, (size_t)(o->nssh_opts + 1) * sizeof(*v));
    if (v == NULL) {
        fprintf(stderr, "psrun: out of memory\n");
        return -1;
    }
    o->ssh_opts = v;
    o->ssh_opts[o->nssh_opts++] = (char *)arg;
    return 0;
}

static int opt_role(psr_opts *o, const char *arg)
{
    if (strcmp(arg, "scheduler") != 0 && strcmp(arg, "server") != 0 &&
        strcmp(arg, "worker") != 0) {
        fprintf(stderr, "psrun: --role must be scheduler, server or worker, got '%s'\n", arg);
        return -1;
    }
    o->role = arg;
    return 0;
}

static int opt_rank(psr_opts *o, const char *arg)
{
    return parse_int(arg, 0, PSR_MAX_NODES - 1, "--rank", &o->rank);
}

static int opt_key_file(psr_opts *o, const char *arg)
{
    return set_str(&o->key_file, arg, "--key-file");
}

static int opt_no_prefix(psr_opts *o, const char *arg)
{
    (void)arg;
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

/* --status [HOST:]PORT: the scheduler serves its live status page and
 * /metrics there (PS_STATUS; HOST defaults to 127.0.0.1, PORT 0 picks a
 * free one; the scheduler prints the address). */
static int opt_status(psr_opts *o, const char *arg)
{
    static char env[96];
    if (arg[0] == '\0' || strlen(arg) > 64 || strspn(arg, "0123456789abcdefghijklmnopqrstuvwxyz"
                                                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:") !=
                                                       strlen(arg)) {
        fprintf(stderr, "psrun: --status expects [HOST:]PORT, got '%s'\n", arg);
        return -1;
    }
    snprintf(env, sizeof(env), "PS_STATUS=%s%s", strchr(arg, ':') ? "" : "127.0.0.1:", arg);
    return opt_env(o, env);
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
    {{"scheduler", required_argument, NULL, OPT_HOST}, opt_host},
    {{"slurm", no_argument, NULL, OPT_SLURM}, opt_slurm},
    {{"mpi", no_argument, NULL, OPT_MPI}, opt_mpi},
    {{"k8s", no_argument, NULL, OPT_K8S}, opt_k8s},
    {{"hostfile", required_argument, NULL, OPT_HOSTFILE}, opt_hostfile},
    {{"ssh-key", required_argument, NULL, OPT_SSH_KEY}, opt_ssh_key},
    {{"ssh-opt", required_argument, NULL, OPT_SSH_OPT}, opt_ssh_opt},
    {{"role", required_argument, NULL, OPT_ROLE}, opt_role},
    {{"rank", required_argument, NULL, OPT_RANK}, opt_rank},
    {{"key-file", required_argument, NULL, OPT_KEY_FILE}, opt_key_file},
    {{"no-prefix", no_argument, NULL, OPT_NO_PREFIX}, opt_no_prefix},
    {{"env", required_argument, NULL, OPT_ENV}, opt_env},
    {{"stats", no_argument, NULL, OPT_STATS}, opt_stats},
    {{"status", required_argument, NULL, OPT_STATUS}, opt_status},
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

/* Refuse flag `what` (given when `given`) outside the modes that use it. */
static int only_in(int given, int ok, const char *what, const char *modes)
{
    if (given && !ok) {
        fprintf(stderr, "psrun: %s is for %s only\n", what, modes);
        return -1;
    }
    return 0;
}

/* Check what the flags alone cannot: required counts, flags of other modes. */
static int check_mode(psr_opts *o)
{
    int per_task = o->mode == PSR_SLURM || o->mode == PSR_MPI;
    if (o->servers < 0 || (o->workers < 1 && !per_task)) {
        fprintf(stderr, "psrun: both -s/--servers and -w/--workers are required\n");
        return -1;
    }
    if (o->workers < 0) o->workers = 0; /* from the task count */
    if (only_in(o->role != NULL, o->mode == PSR_K8S, "--role", "--k8s") ||
        only_in(o->rank >= 0, o->mode == PSR_K8S, "--rank", "--k8s") ||
        only_in(o->ssh_key || o->nssh_opts, o->mode == PSR_SSH, "--ssh-key/--ssh-opt",
                "--hostfile") ||
        only_in(o->key_file != NULL, per_task, "--key-file", "--slurm and --mpi"))
        return -1;
    if (o->mode == PSR_K8S && o->role == NULL) {
        fprintf(stderr, "psrun: --k8s needs --role scheduler|server|worker\n");
        return -1;
    }
    return 0;
}

/* Check the command after the flags. */
static int check_command(int argc, char **argv, psr_opts *o)
{
    if (check_mode(o) != 0) return -1;
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
    o->rank = -1;
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
    free(o->ssh_opts);
    o->ssh_opts = NULL;
    o->nssh_opts = 0;
}
