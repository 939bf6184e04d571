/*
 * spawn.c -- start one psrun node and signal node process groups.
 *
 * Design: each node is forked with two close-on-exec pipes (its stdout and
 * stderr), stdin from /dev/null (or, for a remote node, a third pipe that
 * starts with the secret and stays open for the node's life), and becomes the leader of its own process
 * group (set by both parent and child, so neither order of scheduling races),
 * so that psr_signal_node reaches every process the node started, shells'
 * children included.  The child asks for SIGKILL when psrun dies
 * (PR_SET_PDEATHSIG) and then checks getppid() to close the race with a
 * psrun that died before the prctl.  The parent-death signal reaches only the
 * node itself; grandchildren are reached by psrun's group kills, which cover
 * every exit path of psrun except its own SIGKILL.  Between fork and exec the
 * child only sets up fds, signals and the environment (psrun is
 * single-threaded, so setenv is safe there) and restores the signal mask and
 * the SIGPIPE disposition and open-file limit psrun changed for itself.
 *
 * Must never: return in the child (it execs or _exits), leave a pipe end open
 * in the parent after a failed spawn, or let a pipe end leak into another
 * node (all fds are O_CLOEXEC until dup2 onto 1 and 2).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "psrun.h"

static const char *const role_env[] = {
    [PSR_SCHEDULER] = "scheduler",
    [PSR_SERVER] = "server",
    [PSR_WORKER] = "worker",
};

static struct rlimit nofile_orig; /* restored in every node */
static int nofile_raised;

int psr_raise_fd_limit(int needed)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)needed) return 0;
    nofile_orig = rl;
    rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= (rlim_t)needed)
                      ? (rlim_t)needed
                      : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -errno;
    nofile_raised = 1;
    return rl.rlim_cur >= (rlim_t)needed ? 0 : -EMFILE;
}

/* Lowest port of the kernel's ephemeral range (where port-0 binds land). */
static int ephemeral_low(void)
{
    int lo = 32768, hi;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d %d", &lo, &hi) != 2) lo = 32768;
        fclose(f);
    }
    return lo;
}

static int port_is_free(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/*
 * Pick the scheduler's port below the ephemeral range: the nodes listen on
 * port 0 at the same moment the scheduler binds, and a port from the
 * ephemeral range could be handed to one of them first.
 */
int psr_pick_port(int *port)
{
    int lo = 10000, hi = ephemeral_low() - 1;
    if (hi <= lo) hi = lo + 1000;
    unsigned seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    for (int tries = 0; tries < 500; tries++) {
        int p = lo + (int)(rand_r(&seed) % (unsigned)(hi - lo));
        if (port_is_free(p)) {
            *port = p;
            return 0;
        }
    }
    return -EADDRINUSE;
}

static int set_env_int(const char *key, int v)
{
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", v);
    return setenv(key, buf, 1);
}

/* The node's environment: --env values first, then PS_* (which win). */
static int child_env(const psr_node *n, const psr_opts *o, const char *sched)
{
    for (int i = 0; i < o->nenv; i++)
        if (putenv(o->env[i]) != 0) return -1;
    if (setenv("PS_ROLE", role_env[n->role], 1) != 0 ||
        setenv("PS_SCHEDULER", sched, 1) != 0 ||
        set_env_int("PS_NUM_SERVERS", o->servers) != 0 ||
        set_env_int("PS_NUM_WORKERS", o->workers) != 0 ||
        set_env_int("PS_RANK", n->rank) != 0)
        return -1;
    return 0;
}

static int devnull = -1; /* opened once in psrun, O_CLOEXEC: the nodes' stdin */

/* stdin from inr (or /dev/null), stdout and stderr into the pipes; 0 or -1. */
static int child_fds(int inr, int outw, int errw)
{
    if (dup2(inr >= 0 ? inr : devnull, 0) < 0 || dup2(outw, 1) < 0 || dup2(errw, 2) < 0)
        return -1;
    return 0;
}

/* In the forked child: set up and exec; never returns.  fds: out read, out
 * write, err read, err write, stdin read, stdin write (-1 if none). */
static void child_main(const psr_node *n, const psr_opts *o, const char *sched,
                       const int fds[6], pid_t parent, const sigset_t *origmask)
{
    char **argv = n->argv ? n->argv : o->cmd;
    setpgid(0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
    if (child_fds(fds[4], fds[1], fds[3]) != 0) {
        dprintf(fds[3], "psrun: cannot set up fds: %s\n", strerror(errno));
        _exit(127);
    }
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, origmask, NULL);
    if (nofile_raised) setrlimit(RLIMIT_NOFILE, &nofile_orig);
    if (child_env(n, o, sched) != 0) {
        dprintf(2, "psrun: cannot set the environment: %s\n", strerror(errno));
        _exit(127);
    }
    execvp(argv[0], argv);
    int e = errno;
    dprintf(2, "psrun: cannot run '%s': %s\n", argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) close(fds[i]);
}

/* O_CLOEXEC pipes into fds[0..5] (out read, out write, err read, err
 * write, and with `in` stdin read, stdin write), the ends psrun reads
 * non-blocking.  0 or -errno with nothing left open. */
static int make_pipes(int fds[6], int in)
{
    for (int i = 0; i < 6; i++) fds[i] = -1;
    if (pipe2(&fds[0], O_CLOEXEC) != 0 || pipe2(&fds[2], O_CLOEXEC) != 0 ||
        (in && pipe2(&fds[4], O_CLOEXEC) != 0) ||
        fcntl(fds[0], F_SETFL, O_NONBLOCK) != 0 ||
        fcntl(fds[2], F_SETFL, O_NONBLOCK) != 0) {
        int e = errno;
        close_fds(fds, 6);
        return -e;
    }
    return 0;
}

/* Put line into the fresh stdin pipe w (it fits: far below the pipe's
 * buffer) and keep w open as the node's lifeline.  0 or -errno. */
static int feed_stdin(psr_node *n, int w, const char *line)
{
    size_t len = strlen(line);
    n->in_fd = w;
    if (write(w, line, len) != (ssize_t)len) return errno ? -errno : -EPIPE;
    return 0;
}

int psr_spawn(psr_node *n, const psr_opts *o, const char *sched,
              const sigset_t *origmask, const char *stdin_line)
{
    int fds[6];
    n->in_fd = -1;
    if (devnull < 0 && (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
        return -errno;
    int rv = make_pipes(fds, stdin_line != NULL);
    if (rv != 0) return rv;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        rv = -errno;
        close_fds(fds, 6);
        return rv;
    }
    if (pid == 0) child_main(n, o, sched, fds, parent, origmask);
    setpgid(pid, pid); /* may fail once the child has exec'd: it set it itself */
    close(fds[1]);
    close(fds[3]);
    if (fds[4] >= 0) close(fds[4]);
    if (stdin_line) feed_stdin(n, fds[5], stdin_line); /* a failure shows as ssh's */
    n->pid = pid;
    n->alive = 1;
    psr_stream_init(&n->out, fds[0], 1);
    psr_stream_init(&n->err, fds[2], 2);
    return 0;
}

void psr_close_stdin(psr_node *n)
{
    if (n->in_fd >= 0) close(n->in_fd);
    n->in_fd = -1;
}

void psr_signal_node(const psr_node *n, int sig)
{
    if (n->pid <= 0) return;
    /* The group outlives its leader while grandchildren remain (and its id
     * cannot be reused meanwhile); ESRCH once it is empty.  If setpgid has
     * not taken effect, signal the node itself. */
    if (kill(-n->pid, sig) != 0 && n->alive) kill(n->pid, sig);
}

int psr_status_code(int wstatus)
{
    if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
    if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
    return 1;
}
