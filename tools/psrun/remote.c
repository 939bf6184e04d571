/*
 * remote.c -- the ssh command that runs one node on another host.
 *
 * psrun --hostfile starts each node as a local child `ssh -T -o
 * BatchMode=yes ... HOST CMD`, so the existing machinery (pipes, prefixes,
 * exit statuses, group kills) applies unchanged: ssh's exit status is the
 * remote node's (255 when ssh itself fails).  CMD is one string the remote
 * login shell parses, every word single-quoted:
 *
 *   exec env PS_ROLE=.. PS_RANK=.. (PS_*, DMLC_*, UCX_*, --env) sh -c GUARD
 *        psrun-guard DIR COMMAND ARGS...
 *
 * GUARD, a few lines of POSIX sh, reads the cluster secret as the first
 * line of its stdin (so it is never on a command line, which any user of
 * the host can read in ps), exports it as PS_SECRET, changes to DIR (psrun's
 * working directory) if the host has it, and starts the node with setsid in
 * a process group of its own with stdin from /dev/null.  A watcher then
 * reads the rest of stdin, which psrun holds open for the node's life: when
 * it closes -- psrun stopped the cluster, psrun died (its ssh children get
 * SIGKILL with it), or sshd saw the connection end -- the watcher sends
 * SIGTERM to the node's group and SIGKILL 2 s later.  (A connection that
 * drops silently: psrun's ssh gives up within 15 s, ServerAliveInterval,
 * and psrun stops the cluster; the far sshd notices only with its own
 * ClientAliveInterval, and libps makes a node cut off from its scheduler
 * exit by itself.)  When the node exits by itself, the guard kills what is left of
 * its group and exits with the node's status.  So no node outlives psrun's
 * connection to its host.
 *
 * Must never: put the secret (PS_SECRET, PS_SECRET_FILE) into CMD, or build
 * a word the remote shell could split or expand.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psrun.h"

extern char **environ;

/* An asynchronous list's stdin is /dev/null in sh without job control, so
 * the watcher reads the real one through fd 3. */
static const char guard[] =
    "IFS= read -r PS_SECRET || { echo 'psrun: no cluster secret on stdin' >&2; exit 255; }\n"
    "export PS_SECRET\n"
    "cd \"$1\" 2>/dev/null\n"
    "shift\n"
    "exec 3<&0\n"
    "setsid \"$@\" </dev/null 3<&- &\n"
    "node=$!\n"
    "(while IFS= read -r _ <&3; do :; done\n"
    " kill -TERM -$node 2>/dev/null || kill -TERM $node 2>/dev/null\n"
    " sleep 2; kill -KILL -$node 2>/dev/null || kill -KILL $node 2>/dev/null) &\n"
    "exec 3<&-\n"
    "watch=$!\n"
    "wait $node\n"
    "rc=$?\n"
    "exec 2>/dev/null\n" /* no "Terminated" for the watcher */
    "kill $watch\n"
    "kill -KILL -$node 2>/dev/null\n"
    "exit $rc\n";

static const char *const role_env[] = {"scheduler", "server", "worker"};

/* A growing string. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (p == NULL) {
            b->oom = 1;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

/* Append ' word' single-quoted: every byte literal to the remote shell. */
static void put_word(sbuf *b, const char *w)
{
    put(b, " '", 2);
    for (const char *p = w; *p; p++) {
        if (*p == '\'') put(b, "'\\''", 4);
        else put(b, p, 1);
    }
    put(b, "'", 1);
}

static void put_kv(sbuf *b, const char *k, const char *v)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s=%s", k, v);
    put_word(b, buf);
}

/* Variables a remote node inherits from psrun's environment: the library's,
 * ps-lite's and UCX's, less those psrun sets per node or sends on stdin. */
static int forwarded(const char *kv)
{
    static const char *const skip[] = {"PS_SECRET=", "PS_SECRET_FILE=", "PS_ROLE=",
                                       "PS_RANK=", "PS_SCHEDULER=", "PS_NUM_SERVERS=",
                                       "PS_NUM_WORKERS=", "PS_HOST=", NULL};
    if (strncmp(kv, "PS_", 3) != 0 && strncmp(kv, "DMLC_", 5) != 0 &&
        strncmp(kv, "UCX_", 4) != 0)
        return 0;
    for (int i = 0; skip[i]; i++)
        if (strncmp(kv, skip[i], strlen(skip[i])) == 0) return 0;
    return 1;
}

/* The remote command string for node nd. */
static void remote_cmd(sbuf *b, const psr_node *nd, const psr_opts *o, const char *sched)
{
    char num[16], cwd[PATH_MAX];
    put(b, "exec env", 8);
    for (char **e = environ; *e; e++)
        if (forwarded(*e)) put_word(b, *e);
    for (int i = 0; i < o->nenv; i++)
        if (strncmp(o->env[i], "PS_SECRET", 9) != 0) put_word(b, o->env[i]);
    put_kv(b, "PS_ROLE", role_env[nd->role]);
    snprintf(num, sizeof(num), "%d", nd->rank);
    put_kv(b, "PS_RANK", num);
    put_kv(b, "PS_SCHEDULER", sched);
    snprintf(num, sizeof(num), "%d", o->servers);
    put_kv(b, "PS_NUM_SERVERS", num);
    snprintf(num, sizeof(num), "%d", o->workers);
    put_kv(b, "PS_NUM_WORKERS", num);
    put(b, " sh -c", 6);
    put_word(b, guard);
    put_word(b, "psrun-guard");
    put_word(b, getcwd(cwd, sizeof(cwd)) ? cwd : "/nonexistent");
    for (char **c = o->cmd; *c; c++) put_word(b, *c);
}

/* ssh's own arguments, up to and including the host.  ssh keeps the first
 * value it is given for an option, so the user's --ssh-opt come before
 * psrun's defaults for timeouts and keepalives, and after BatchMode. */
static int ssh_args(char **argv, int k, const psr_node *nd, const psr_opts *o)
{
    static const char *const first[] = {"ssh", "-T", "-o", "BatchMode=yes", NULL};
    static const char *const defaults[] = {"-o", "ConnectTimeout=10", "-o",
                                           "ServerAliveInterval=5", "-o",
                                           "ServerAliveCountMax=3", NULL};
    for (int i = 0; first[i]; i++) argv[k++] = (char *)first[i];
    if (o->ssh_key) {
        argv[k++] = "-i";
        argv[k++] = (char *)o->ssh_key;
        argv[k++] = "-o";
        argv[k++] = "IdentitiesOnly=yes";
    }
    for (int i = 0; i < o->nssh_opts; i++) {
        argv[k++] = "-o";
        argv[k++] = o->ssh_opts[i];
    }
    for (int i = 0; defaults[i]; i++) argv[k++] = (char *)defaults[i];
    argv[k++] = (char *)nd->host;
    return k;
}

char **psr_remote_argv(const psr_node *nd, const psr_opts *o, const char *sched)
{
    sbuf b = {0};
    char **argv = calloc((size_t)(2 * o->nssh_opts + 24), sizeof(*argv));
    remote_cmd(&b, nd, o, sched);
    if (argv == NULL || b.oom) {
        free(argv);
        free(b.s);
        return NULL;
    }
    int k = ssh_args(argv, 0, nd, o);
    argv[k++] = b.s; /* the one string psr_argv_free frees */
    argv[k] = NULL;
    return argv;
}

void psr_argv_free(char **argv)
{
    if (argv == NULL) return;
    int k = 0;
    while (argv[k + 1] != NULL) k++;
    free(argv[k]);
    free(argv);
}
