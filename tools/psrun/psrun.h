/*
 * psrun.h -- shared types of psrun, the local cluster launcher.
 *
 * psrun starts one scheduler, S servers and W workers of a libps cluster on
 * this machine, all running the same command with PS_ROLE, PS_RANK,
 * PS_SCHEDULER, PS_NUM_SERVERS and PS_NUM_WORKERS set, forwards their output
 * line by line with a "[role rank] " prefix, and turns the nodes' exit
 * statuses into its own.
 *
 * Design: four files, one per concern.  options.c parses the command line
 * into a psr_opts; spawn.c forks and execs one node (pipes, process group,
 * parent-death signal, environment) and signals node groups; output.c turns
 * the bytes of one captured pipe into whole prefixed lines; psrun.c owns the
 * single-threaded event loop (poll over every pipe plus a signalfd) and the
 * phase machine that decides the exit status.  Nothing here uses threads, and
 * nothing here may leave a node running after psrun returns from main.
 */
#ifndef PSRUN_H
#define PSRUN_H

#include <signal.h>
#include <stddef.h>
#include <sys/types.h>

#define PSR_MAX_NODES 1024 /* per role */
#define PSR_EXIT_USAGE 2
#define PSR_EXIT_TIMEOUT 124

/* The parsed command line.  cmd and the strings in env point into argv. */
typedef struct psr_opts {
    int servers;      /* 0..PSR_MAX_NODES */
    int workers;      /* 1..PSR_MAX_NODES */
    double timeout_s; /* <= 0: no timeout */
    double grace_s;   /* wait for scheduler and servers after the workers */
    int port;         /* 0: pick a free one */
    const char *host; /* scheduler host */
    int prefix;       /* print "[role rank] " before every line */
    int quiet;        /* no status lines from psrun itself */
    int help;
    char **env; /* nenv "K=V" strings from --env (array is malloc'd) */
    int nenv;
    char **cmd; /* NULL-terminated command and arguments */
} psr_opts;

/*
 * Parse argv into *o.  Returns 0 when the cluster should run, 1 when --help
 * was printed (exit 0), -1 after an error was printed to stderr (exit 2).
 * Call psr_opts_free afterwards in every case.
 */
int psr_parse_args(int argc, char **argv, psr_opts *o);
void psr_opts_free(psr_opts *o);

enum psr_role { PSR_SCHEDULER, PSR_SERVER, PSR_WORKER };

/* One captured pipe of one node: a read end and the partial line so far. */
typedef struct psr_stream {
    int fd;      /* read end, -1 once closed */
    int out;     /* where its lines go: 1 (stdout) or 2 (stderr) */
    char *buf;   /* bytes of the current line not yet printed */
    size_t len;
    size_t cap;
    int cont;    /* a line was printed in part; the rest gets no prefix */
} psr_stream;

/* One node: a child process in its own process group. */
typedef struct psr_node {
    enum psr_role role;
    int rank;
    pid_t pid;  /* also its process group id; 0 if it was never started */
    int alive;  /* started and not yet reaped */
    int code;   /* exit status, 128+signo if killed; valid once reaped */
    int signo;  /* the signal that killed it, 0 if it exited */
    char name[32];   /* "worker 3" */
    char prefix[40]; /* "[worker 3] " */
    psr_stream out;
    psr_stream err;
} psr_node;

/* --- spawn.c --- */

/* Raise the soft open-file limit to `needed` (two pipes per node) as far as
 * the hard limit allows; nodes get the original limit back.  0 if enough,
 * else -errno (-EMFILE: raised, but not enough). */
int psr_raise_fd_limit(int needed);

/* A free TCP port on 127.0.0.1 (bound, read back, closed).  0 or -errno. */
int psr_pick_port(int *port);

/*
 * Fork node n running o->cmd with its PS_* environment; sched is
 * "host:port".  origmask is the signal mask the node must run with.  On
 * success n->pid, n->alive and both streams are set and 0 is returned; on
 * failure nothing is left open and -errno is returned.
 */
int psr_spawn(psr_node *n, const psr_opts *o, const char *sched,
              const sigset_t *origmask);

/* Send sig to n's whole process group, if n was ever started. */
void psr_signal_node(const psr_node *n, int sig);

/* The exit status psrun reports for a waitpid status: code or 128+signo. */
int psr_status_code(int wstatus);

/* --- output.c --- */

void psr_stream_init(psr_stream *s, int fd, int out);

/*
 * Read what is ready on s and print every complete line with prefix (NULL:
 * none).  At end of file or on a read error, print the partial last line
 * with a newline added and close s.  Returns 1 once s is closed, else 0.
 */
int psr_stream_read(psr_stream *s, const char *prefix);

/* Print any partial line, close the fd and free the buffer. */
void psr_stream_close(psr_stream *s, const char *prefix);

#endif /* PSRUN_H */
