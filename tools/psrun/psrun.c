/*
 * psrun.c -- launch a libps cluster and supervise it.
 *
 * `psrun -s S -w W [options] -- COMMAND [ARGS...]` starts 1 scheduler, S
 * servers and W workers (see options.c for every flag), forwards their
 * output with a "[role rank] " prefix and exits with the cluster's status.
 * The nodes are local children, or local `ssh HOST` children (--hostfile,
 * remote.c), or, in the per-task modes (--slurm, --mpi, --k8s, task.c),
 * the one node this copy of psrun is responsible for.  The loop below is
 * the same in every mode; a run without workers (a per-task scheduler or
 * server) ends when its node does.  Stopping a remote node closes its
 * stdin, on which its guard on the far host stops it (remote.c); ssh then
 * exits by itself, or gets SIGKILL after SSH_KILL_AFTER_MS.
 *
 * Design: one thread, one poll(2) loop over every node pipe plus a signalfd
 * that carries SIGCHLD, SIGINT, SIGTERM and SIGHUP (blocked before the first
 * fork, so none is lost).  Deadlines (timeout, grace, kill escalation, output
 * drain) are poll timeouts on the monotonic clock; nothing sleeps.  The run
 * moves through phases:
 *   RUNNING   workers are running;
 *   GRACE     every worker exited 0; the scheduler and servers get --grace
 *             seconds to exit on their own;
 *   STOPPING  the exit status is decided; every node group got SIGTERM, and
 *             gets SIGKILL 2 s later if a node is still alive;
 *   DRAINING  every node is reaped; a last SIGKILL to every group removes
 *             stragglers (grandchildren), the pipes are read to the end,
 *             and the stragglers are reaped: psrun is a child subreaper, so
 *             orphaned descendants of nodes become its children, and those
 *             are killed by pid even if they left their process group;
 *   DONE.
 * The first failure decides the status: a node exiting nonzero (128+signo
 * if killed), --timeout (124), a signal to psrun (128+signo), the grace
 * period running out (1).  Once STOPPING, later node deaths change nothing.
 * SIGINT and SIGTERM are always handled, even if psrun inherited them
 * ignored (as background jobs of scripts do); an ignored SIGHUP is honoured,
 * so `nohup psrun` works.
 *
 * Must never: return from main while a node it started may still be alive,
 * block anywhere but in poll (and in writes to its own stdout/stderr), or
 * print a node's line in two pieces when the line fits in memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sodium.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "psrun.h"
#include "util/util.h"

#define KILL_AFTER_MS 2000   /* SIGTERM -> SIGKILL */
#define SSH_KILL_AFTER_MS 5000 /* stdin closed -> SIGKILL to ssh (the guard's
                                  TERM -> KILL takes 2 s on the far host) */
#define GIVE_UP_AFTER_MS 3000 /* SIGKILL -> stop waiting for unkillable nodes */
#define DRAIN_MS 1000        /* read leftover output at most this long */

enum phase { RUNNING, GRACE, STOPPING, DRAINING, DONE };

typedef struct psr_run {
    psr_opts o;
    psr_node *nodes;
    int n;             /* nodes in this run: 1 + servers + workers, or 1 */
    int nworkers;      /* worker nodes in this run */
    psr_task task;     /* per-task modes: this psrun's node */
    psr_host *hosts;   /* ssh mode: the hostfile */
    int nhosts;
    char *secret_line; /* ssh mode: what each remote node reads first */
    int started;       /* nodes[0..started) were forked */
    int alive;         /* started and not yet reaped */
    int workers_alive;
    enum phase phase;
    int code;          /* psrun's exit status once STOPPING */
    int killed;        /* SIGKILL was sent */
    int children_left; /* the last waitpid found a child still running */
    int sigfd;
    sigset_t origmask;
    uint64_t timeout_at, grace_at, kill_at, give_up_at, drain_at; /* ms */
    struct pollfd *pfd;   /* [0] the signalfd, then open node pipes */
    psr_stream **pstream; /* stream behind pfd[i] */
    psr_node **pnode;     /* its node */
    char sched[300];      /* "host:port" */
} psr_run;

/* A status line (suppressed by --quiet). */
static void say(const psr_run *r, const char *fmt, ...)
{
    if (r->o.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("psrun: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* An error line, printed even with --quiet. */
static void complain(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("psrun: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t ms_from_now(double seconds)
{
    return psi_now_ms() + (uint64_t)(seconds * 1000.0 + 0.5);
}

/* Make sure fds 0..2 are open, so no pipe lands on them by accident. */
static void ensure_std_fds(void)
{
    int fd;
    while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2) {
    }
    if (fd > 2) close(fd);
}

/* ---- cluster control ------------------------------------------------------ */

static void signal_all(psr_run *r, int sig)
{
    for (int i = 0; i < r->started; i++) psr_signal_node(&r->nodes[i], sig);
}

/* Decide the exit status and start killing the cluster (TERM, later KILL;
 * remote nodes: their stdin closes, later KILL to ssh). */
static void stop(psr_run *r, int code)
{
    if (r->phase >= STOPPING) return;
    r->phase = STOPPING;
    r->code = code;
    for (int i = 0; i < r->started; i++) psr_close_stdin(&r->nodes[i]);
    if (r->alive > 0 && r->o.mode != PSR_SSH) signal_all(r, SIGTERM);
    r->kill_at = psi_now_ms() + (r->o.mode == PSR_SSH ? SSH_KILL_AFTER_MS : KILL_AFTER_MS);
    r->give_up_at = r->kill_at + GIVE_UP_AFTER_MS;
}

static void kill_now(psr_run *r)
{
    signal_all(r, SIGKILL);
    r->killed = 1;
}

static void describe_exit(const psr_node *nd)
{
    if (nd->host != NULL && nd->signo == 0 && nd->code == 255)
        complain("%s on %s: ssh exited with status 255: it could not reach or log in to "
                 "%s, or lost the connection (see its lines above); stopping the cluster",
                 nd->name, nd->host, nd->host);
    else if (nd->signo != 0)
        complain("%s was killed by signal %d (%s); stopping the cluster", nd->name,
                 nd->signo, strsignal(nd->signo));
    else if (nd->code == PS_EXIT_EVICTED)
        complain("%s exited with status %d: the scheduler declared it dead, or it was cut "
                 "off from the scheduler; stopping the cluster", nd->name, nd->code);
    else
        complain("%s exited with status %d; stopping the cluster", nd->name,
                 nd->code);
}

static psr_node *find_node(psr_run *r, pid_t pid)
{
    for (int i = 0; i < r->started; i++)
        if (r->nodes[i].pid == pid) return &r->nodes[i];
    return NULL;
}

/* Record a reaped node; a nonzero status while running decides the run. */
static void on_exit_status(psr_run *r, psr_node *nd, int wstatus)
{
    nd->alive = 0;
    nd->code = psr_status_code(wstatus);
    nd->signo = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    r->alive--;
    if (nd->role == PSR_WORKER) r->workers_alive--;
    if (r->phase < STOPPING && nd->code != 0) {
        describe_exit(nd);
        stop(r, nd->code);
    }
}

/*
 * SIGKILL every child psrun has.  Once all nodes are reaped these can only be
 * orphaned descendants adopted as subreaper, including any that left their
 * node's process group.  Killing by pid is safe: a child's pid cannot be
 * reused before psrun reaps it.  Without /proc/PID/task/TID/children
 * (CONFIG_PROC_CHILDREN) only the group kills remain.
 */
static void kill_adopted(void)
{
    char path[64];
    long pid;
    snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
    FILE *f = fopen(path, "re");
    if (f == NULL) return;
    while (fscanf(f, "%ld", &pid) == 1) kill((pid_t)pid, SIGKILL);
    fclose(f);
}

/* Reap every exited child: nodes, and as subreaper their orphaned
 * descendants too.  Notes whether some child is still running.  While
 * draining, each death may have orphaned more descendants: kill those. */
static void reap_all(psr_run *r)
{
    int wstatus, reaped = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
        psr_node *nd = find_node(r, pid);
        if (nd != NULL && nd->alive) on_exit_status(r, nd, wstatus);
        reaped = 1;
    }
    r->children_left = (pid == 0);
    if (reaped && r->children_left && r->phase == DRAINING) kill_adopted();
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
    }
}

static void on_interrupt(psr_run *r, int sig)
{
    if (r->phase < STOPPING) {
        say(r, "got %s; stopping the cluster", signal_name(sig));
        stop(r, 128 + sig);
    } else if (r->phase == STOPPING && !r->killed) {
        kill_now(r); /* asked twice: do not wait for the grace of SIGTERM */
    }
}

static void read_signals(psr_run *r)
{
    struct signalfd_siginfo si;
    while (read(r->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD)
            reap_all(r);
        else
            on_interrupt(r, (int)si.ssi_signo);
    }
}

/* ---- phases and deadlines ---------------------------------------------------- */

static int open_streams(const psr_run *r)
{
    int k = 0;
    for (int i = 0; i < r->started; i++)
        k += (r->nodes[i].out.fd >= 0) + (r->nodes[i].err.fd >= 0);
    return k;
}

static void enter_draining(psr_run *r, uint64_t now)
{
    kill_now(r); /* stragglers: children of nodes that are already gone */
    r->phase = DRAINING;
    kill_adopted();
    reap_all(r);
    r->drain_at = now + DRAIN_MS;
}

static void advance_stopping(psr_run *r, uint64_t now)
{
    if (r->alive == 0) {
        enter_draining(r, now);
    } else if (!r->killed && now >= r->kill_at) {
        kill_now(r);
    } else if (now >= r->give_up_at) {
        complain("%d node(s) survived SIGKILL; giving up on them", r->alive);
        enter_draining(r, now);
    }
}

static void advance_running(psr_run *r, uint64_t now)
{
    if (r->timeout_at != 0 && now >= r->timeout_at) {
        complain("timeout after %g s", r->o.timeout_s);
        stop(r, PSR_EXIT_TIMEOUT);
        return;
    }
    if (r->phase == RUNNING && r->nworkers == 0) { /* a per-task scheduler or server */
        if (r->alive == 0) stop(r, 0);
        return;
    }
    if (r->phase == RUNNING && r->workers_alive == 0) {
        r->phase = GRACE;
        r->grace_at = ms_from_now(r->o.grace_s);
        if (r->alive > 0)
            say(r, "all workers exited 0; waiting up to %g s for the scheduler "
                   "and servers", r->o.grace_s);
    }
    if (r->phase == GRACE && r->alive == 0) {
        say(r, "all nodes exited 0");
        stop(r, 0);
    } else if (r->phase == GRACE && now >= r->grace_at) {
        complain("%d scheduler/server node(s) still running %g s after the "
                 "workers finished; killing them", r->alive, r->o.grace_s);
        stop(r, 1);
    }
}

static void advance(psr_run *r)
{
    uint64_t now = psi_now_ms();
    if (r->phase < STOPPING) advance_running(r, now);
    if (r->phase == STOPPING) advance_stopping(r, now);
    if (r->phase == DRAINING &&
        ((open_streams(r) == 0 && !r->children_left) || now >= r->drain_at))
        r->phase = DONE;
}

/* The earliest pending deadline of this phase, 0 if none. */
static uint64_t next_deadline(const psr_run *r)
{
    switch (r->phase) {
    case RUNNING:
        return r->timeout_at;
    case GRACE:
        return r->timeout_at ? PSI_MIN(r->timeout_at, r->grace_at) : r->grace_at;
    case STOPPING:
        return r->killed ? r->give_up_at : r->kill_at;
    case DRAINING:
        return r->drain_at;
    default:
        return 0;
    }
}

static int poll_timeout_ms(const psr_run *r)
{
    uint64_t at = next_deadline(r);
    if (at == 0) return -1;
    uint64_t now = psi_now_ms();
    if (at <= now) return 0;
    return (int)PSI_MIN(at - now, (uint64_t)INT_MAX);
}

/* ---- the loop ------------------------------------------------------------------ */

static void add_stream(psr_run *r, int *k, psr_node *nd, psr_stream *s)
{
    if (s->fd < 0) return;
    r->pfd[*k] = (struct pollfd){.fd = s->fd, .events = POLLIN};
    r->pstream[*k] = s;
    r->pnode[*k] = nd;
    (*k)++;
}

static int build_pollfds(psr_run *r)
{
    int k = 1;
    r->pfd[0] = (struct pollfd){.fd = r->sigfd, .events = POLLIN};
    for (int i = 0; i < r->started; i++) {
        add_stream(r, &k, &r->nodes[i], &r->nodes[i].out);
        add_stream(r, &k, &r->nodes[i], &r->nodes[i].err);
    }
    return k;
}

static const char *prefix_of(const psr_run *r, const psr_node *nd)
{
    return r->o.prefix ? nd->prefix : NULL;
}

static void handle_ready(psr_run *r, int nfds)
{
    for (int i = 1; i < nfds; i++)
        if (r->pfd[i].revents != 0)
            psr_stream_read(r->pstream[i], prefix_of(r, r->pnode[i]));
    if (r->pfd[0].revents != 0) read_signals(r);
}

static void run_loop(psr_run *r)
{
    advance(r); /* a failed start may already have decided the run */
    while (r->phase != DONE) {
        int nfds = build_pollfds(r);
        int k = poll(r->pfd, (nfds_t)nfds, poll_timeout_ms(r));
        if (k < 0 && errno != EINTR) {
            complain("poll: %s", strerror(errno));
            stop(r, 1);
            if (r->phase == STOPPING && !r->killed) kill_now(r);
        }
        if (k > 0) handle_ready(r, nfds);
        advance(r);
    }
}

/* ---- setup and teardown ------------------------------------------------------ */

static void name_node(psr_node *nd, enum psr_role role, int rank)
{
    static const char *const names[] = {"scheduler", "server", "worker"};
    nd->role = role;
    nd->rank = rank;
    nd->out.fd = nd->err.fd = nd->in_fd = -1;
    if (role == PSR_SCHEDULER)
        snprintf(nd->name, sizeof(nd->name), "scheduler");
    else
        snprintf(nd->name, sizeof(nd->name), "%s %d", names[role], rank);
    snprintf(nd->prefix, sizeof(nd->prefix), "[%s] ", nd->name);
}

/* Name the nodes of this run: the whole cluster, or this task's node. */
static void name_nodes(psr_run *r)
{
    if (r->o.mode == PSR_SLURM || r->o.mode == PSR_MPI || r->o.mode == PSR_K8S) {
        name_node(&r->nodes[0], (enum psr_role)r->task.role, r->task.rank);
        r->nworkers = r->task.role == PSR_WORKER;
        return;
    }
    name_node(&r->nodes[0], PSR_SCHEDULER, 0);
    for (int i = 0; i < r->o.servers; i++)
        name_node(&r->nodes[1 + i], PSR_SERVER, i);
    for (int i = 0; i < r->o.workers; i++)
        name_node(&r->nodes[1 + r->o.servers + i], PSR_WORKER, i);
    r->nworkers = r->o.workers;
}

/* Allocate nodes and poll arrays; 0 or -1. */
static int alloc_run(psr_run *r)
{
    int per_task = r->o.mode == PSR_SLURM || r->o.mode == PSR_MPI || r->o.mode == PSR_K8S;
    r->n = per_task ? 1 : 1 + r->o.servers + r->o.workers;
    r->nodes = calloc((size_t)r->n, sizeof(*r->nodes));
    r->pfd = calloc((size_t)(2 * r->n + 1), sizeof(*r->pfd));
    r->pstream = calloc((size_t)(2 * r->n + 1), sizeof(*r->pstream));
    r->pnode = calloc((size_t)(2 * r->n + 1), sizeof(*r->pnode));
    if (!r->nodes || !r->pfd || !r->pstream || !r->pnode) {
        complain("out of memory");
        return -1;
    }
    int rv = psr_raise_fd_limit(3 * r->n + 32);
    if (rv != 0) /* not fatal: a spawn that runs out of fds says so */
        complain("cannot raise the open-file limit for %d nodes: %s", r->n,
                 strerror(-rv));
    name_nodes(r);
    return 0;
}

/* Route SIGCHLD/SIGINT/SIGTERM/SIGHUP into a signalfd and adopt orphaned
 * descendants; 0 or -1. */
static int setup_signals(psr_run *r)
{
    sigset_t set;
    struct sigaction old;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigaction(SIGHUP, NULL, &old) == 0 && old.sa_handler != SIG_IGN)
        sigaddset(&set, SIGHUP);
    signal(SIGINT, SIG_DFL); /* an inherited SIG_IGN would discard them */
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout must not kill psrun */
    prctl(PR_SET_CHILD_SUBREAPER, 1); /* orphans of nodes come to psrun */
    if (sigprocmask(SIG_BLOCK, &set, &r->origmask) != 0 ||
        (r->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        complain("cannot set up signal handling: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int setup_address(psr_run *r)
{
    int port = r->o.port, rv;
    if (port == 0 && (rv = psr_pick_port(&port)) != 0) {
        complain("cannot find a free port: %s", strerror(-rv));
        return -1;
    }
    snprintf(r->sched, sizeof(r->sched), "%.255s:%d", r->o.host ? r->o.host : "127.0.0.1",
             port);
    return 0;
}

/* Per-task modes: this task's node, its scheduler, PS_HOST and secret.
 * 0, or -1 after printing why (nothing has started). */
static int setup_task(psr_run *r)
{
    if (psr_task_place(&r->o, &r->task) != 0) return -1;
    snprintf(r->sched, sizeof(r->sched), "%s", r->task.sched);
    if (r->task.host[0] && setenv("PS_HOST", r->task.host, 1) != 0) return -1;
    return psr_setup_secret(&r->o, r->task.job[0] ? r->task.job : NULL);
}

/* The ssh command of the node on the scheduler's host's address;
 * 0 or -1 (printed). */
static int setup_remote_nodes(psr_run *r)
{
    const char *sched_host = r->o.host;
    for (int i = 0; i < r->nhosts && !sched_host; i++)
        if (r->hosts[i].name == r->nodes[0].host) sched_host = r->hosts[i].addr;
    int port = r->o.port;
    if (port == 0 && psr_pick_port(&port) != 0) port = 9000;
    snprintf(r->sched, sizeof(r->sched), "%.255s:%d", sched_host, port);
    for (int i = 0; i < r->n; i++)
        if ((r->nodes[i].argv = psr_remote_argv(&r->nodes[i], &r->o, r->sched)) == NULL) {
            complain("out of memory");
            return -1;
        }
    return 0;
}

/* ssh mode: read the hostfile, place every node, check the key, build each
 * node's ssh command, get the secret line.  0 or -1 (printed). */
static int setup_ssh(psr_run *r)
{
    if (r->o.ssh_key && access(r->o.ssh_key, R_OK) != 0) {
        complain("--ssh-key %s: %s", r->o.ssh_key, strerror(errno));
        return -1;
    }
    if ((r->hosts = psr_hostfile_read(r->o.hostfile, &r->nhosts)) == NULL ||
        psr_hostfile_place(r->hosts, r->nhosts, r->nodes, r->n) != 0 ||
        setup_remote_nodes(r) != 0 || psr_setup_secret(&r->o, NULL) != 0 ||
        (r->secret_line = psr_secret_line(&r->o)) == NULL)
        return -1;
    return 0;
}

/* Everything before the first fork, by mode.  0, -1 (exit 1), or -2 (bad
 * input: exit 2). */
static int setup_mode(psr_run *r)
{
    switch (r->o.mode) {
    case PSR_SSH: return setup_ssh(r) ? -2 : 0;
    case PSR_SLURM:
    case PSR_MPI:
    case PSR_K8S: return 0; /* setup_task ran before alloc_run */
    default: return setup_address(r) || psr_setup_secret(&r->o, NULL) ? -1 : 0;
    }
}

/* Fork every node, scheduler first; a failure stops the ones started. */
static void start_nodes(psr_run *r)
{
    if (r->n == 1 && r->o.mode != PSR_LOCAL)
        say(r, "%s of 1 scheduler, %d server(s), %d worker(s); scheduler at %s: %s",
            r->nodes[0].name, r->o.servers, r->o.workers, r->sched, r->o.cmd[0]);
    else
        say(r, "scheduler at %s; starting 1 scheduler, %d server(s), %d worker(s): %s",
            r->sched, r->o.servers, r->o.workers, r->o.cmd[0]);
    for (int i = 0; i < r->n; i++) {
        int rv = psr_spawn(&r->nodes[i], &r->o, r->sched, &r->origmask, r->secret_line);
        if (rv != 0) {
            complain("cannot start %s: %s", r->nodes[i].name, strerror(-rv));
            stop(r, 1);
            return;
        }
        r->started++;
        r->alive++;
        if (r->nodes[i].role == PSR_WORKER) r->workers_alive++;
    }
}

static void free_run(psr_run *r)
{
    for (int i = 0; i < r->started; i++) {
        psr_stream_close(&r->nodes[i].out, prefix_of(r, &r->nodes[i]));
        psr_stream_close(&r->nodes[i].err, prefix_of(r, &r->nodes[i]));
        psr_close_stdin(&r->nodes[i]);
    }
    for (int i = 0; r->nodes && i < r->n; i++) psr_argv_free(r->nodes[i].argv);
    psr_hostfile_free(r->hosts, r->nhosts);
    if (r->secret_line) sodium_memzero(r->secret_line, strlen(r->secret_line));
    free(r->secret_line);
    if (r->sigfd >= 0) close(r->sigfd);
    free(r->nodes);
    free(r->pfd);
    free(r->pstream);
    free(r->pnode);
    psr_opts_free(&r->o);
}

int main(int argc, char **argv)
{
    psr_run r;
    memset(&r, 0, sizeof(r));
    r.sigfd = -1;
    int rv = psr_parse_args(argc, argv, &r.o);
    if (rv != 0) {
        psr_opts_free(&r.o);
        return rv > 0 ? 0 : PSR_EXIT_USAGE;
    }
    ensure_std_fds();
    int per_task = r.o.mode == PSR_SLURM || r.o.mode == PSR_MPI || r.o.mode == PSR_K8S;
    if (per_task && setup_task(&r) != 0) { /* before the nodes are named */
        free_run(&r);
        return PSR_EXIT_USAGE;
    }
    if (alloc_run(&r) != 0 || setup_signals(&r) != 0 || (rv = setup_mode(&r)) != 0) {
        free_run(&r);
        return rv == -2 ? PSR_EXIT_USAGE : 1;
    }
    if (r.o.timeout_s > 0) r.timeout_at = ms_from_now(r.o.timeout_s);
    start_nodes(&r);
    run_loop(&r);
    free_run(&r);
    return r.code;
}
