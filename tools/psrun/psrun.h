/*
 * psrun.h -- shared types of psrun, the libps cluster launcher.
 *
 * psrun starts one scheduler, S servers and W workers of a libps cluster,
 * all running the same command with PS_ROLE, PS_RANK, PS_SCHEDULER,
 * PS_NUM_SERVERS and PS_NUM_WORKERS set, forwards their output line by line
 * with a "[role rank] " prefix, and turns the nodes' exit statuses into its
 * own.  Modes: local (every node a child of psrun on this machine), ssh
 * (--hostfile: every node a child `ssh HOST ...` of psrun), and the
 * per-task modes --slurm, --mpi and --k8s, in which the launcher (srun,
 * mpirun, Kubernetes) starts one psrun per node and each psrun works out its
 * own role and rank and supervises that one node.
 *
 * Design: one file per concern.  options.c parses the command line into a
 * psr_opts; task.c turns a per-task launcher's environment into one node's
 * place; secret.c finds, makes or derives the cluster secret; hostfile.c
 * parses a hostfile and places nodes on hosts; remote.c builds the ssh
 * command that starts and guards a node on another host; spawn.c forks and
 * execs one node (pipes, process group, parent-death signal, environment)
 * and signals node groups; output.c turns the bytes of one captured pipe
 * into whole prefixed lines; psrun.c owns the single-threaded event loop
 * (poll over every pipe plus a signalfd) and the phase machine that decides
 * the exit status, the same in every mode.  Nothing here uses threads, and
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

enum psr_mode { PSR_LOCAL, PSR_SSH, PSR_SLURM, PSR_MPI, PSR_K8S };

/* The parsed command line.  cmd and the strings in env point into argv. */
typedef struct psr_opts {
    enum psr_mode mode;
    int servers;      /* 0..PSR_MAX_NODES */
    int workers;      /* 1..PSR_MAX_NODES; 0: from the task count (per-task) */
    double timeout_s; /* <= 0: no timeout */
    double grace_s;   /* wait for scheduler and servers after the workers */
    int port;         /* 0: pick a free one (local, ssh) or the mode's default */
    const char *host; /* scheduler host; NULL: the mode's default */
    const char *role; /* --role (--k8s); NULL: none given */
    int rank;         /* --rank (--k8s); -1: none given */
    const char *hostfile; /* --hostfile (ssh mode) */
    const char *ssh_key;  /* --ssh-key FILE */
    char **ssh_opts;      /* nssh_opts "-o" values (array is malloc'd) */
    int nssh_opts;
    const char *key_file; /* --key-file: per-user key for derived secrets */
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
    const char *host; /* ssh mode: where it runs (points into the hostfile) */
    char **argv;      /* what to exec: NULL for the command itself (malloc'd) */
    int in_fd;        /* write end of its stdin (ssh: carries the secret), -1 */
    pid_t pid;  /* also its process group id; 0 if it was never started */
    int alive;  /* started and not yet reaped */
    int code;   /* exit status, 128+signo if killed; valid once reaped */
    int signo;  /* the signal that killed it, 0 if it exited */
    char name[32];   /* "worker 3" */
    char prefix[40]; /* "[worker 3] " */
    psr_stream out;
    psr_stream err;
} psr_node;

/* --- task.c: the per-task modes (--slurm, --mpi, --k8s) --- */

/* One node's place in the cluster, as a per-task launcher gives it. */
typedef struct psr_task {
    enum psr_role role;
    int rank;
    int servers, workers;
    char sched[300];  /* "host:port" the node joins */
    char host[256];   /* PS_HOST to set, "" to leave it alone */
    char job[128];    /* the launcher's job id ("" if none): salts the secret */
} psr_task;

/* Work out this task's node from the launcher's environment and *o (which
 * may get its worker count filled in).  0, or -1 after printing why. */
int psr_task_place(psr_opts *o, psr_task *t);

/* --- secret.c --- */

/* Did the user give the cluster secret, in the environment or with --env? */
int psr_has_secret(const psr_opts *o);

/* Set PS_SECRET in psrun's environment: a fresh random one (job == NULL) or
 * one derived from the per-user key file and the launcher's job id, so that
 * every task of one job computes the same.  Does nothing if the user gave a
 * secret.  0, or -1 after printing why. */
int psr_setup_secret(const psr_opts *o, const char *job);

/* The secret every node must get, as one line for a remote node's stdin
 * (from PS_SECRET, or the contents of PS_SECRET_FILE).  Returns a malloc'd
 * "SECRET\n", or NULL after printing why. */
char *psr_secret_line(const psr_opts *o);

/* --- hostfile.c --- */

typedef struct psr_host {
    char *name;     /* as given: [user@]host */
    char *addr;     /* the host part: what PS_SCHEDULER names */
    int slots;      /* 0: no cap */
    unsigned roles; /* bit per enum psr_role that may run here */
    int used;
} psr_host;

/* Parse FILE into a malloc'd array of *n hosts; NULL after printing why. */
psr_host *psr_hostfile_read(const char *path, int *n);
void psr_hostfile_free(psr_host *h, int n);

/* Place nodes[0..n) (roles set, in launch order) on hosts, round-robin over
 * the hosts that take each role and have a free slot.  0, or -1 after
 * printing which node found no place. */
int psr_hostfile_place(psr_host *h, int nh, psr_node *nodes, int n);

/* --- remote.c --- */

/* The argv (malloc'd, NULL-terminated, free with psr_argv_free) of
 * `ssh ... HOST -- sh -c GUARD ...` that runs o->cmd on nd->host with its
 * PS_* environment and sched as the scheduler.  NULL when out of memory. */
char **psr_remote_argv(const psr_node *nd, const psr_opts *o, const char *sched);
void psr_argv_free(char **argv);

/* --- spawn.c --- */

/* Raise the soft open-file limit to `needed` (two pipes per node) as far as
 * the hard limit allows; nodes get the original limit back.  0 if enough,
 * else -errno (-EMFILE: raised, but not enough). */
int psr_raise_fd_limit(int needed);

/* A free TCP port on 127.0.0.1 (bound, read back, closed).  0 or -errno. */
int psr_pick_port(int *port);

/*
 * Fork node n running n->argv (or o->cmd) with its PS_* environment; sched
 * is "host:port".  origmask is the signal mask the node must run with.  With
 * stdin_line, the node's stdin is a pipe that starts with it and stays open
 * (n->in_fd) until psr_close_stdin; else /dev/null.  On success n->pid,
 * n->alive and both streams are set and 0 is returned; on failure nothing is
 * left open and -errno is returned.
 */
int psr_spawn(psr_node *n, const psr_opts *o, const char *sched,
              const sigset_t *origmask, const char *stdin_line);

/* Close n's stdin pipe, if any (a remote node's guard then stops it). */
void psr_close_stdin(psr_node *n);

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
