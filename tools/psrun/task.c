/*
 * task.c -- the per-task modes: one psrun per node, started by a launcher.
 *
 * Under `srun -n N psrun --slurm ...` and `mpirun -n N psrun --mpi ...` the
 * launcher starts N copies of psrun; each reads its task number and the
 * task count from the launcher's environment and becomes one node: task 0
 * the scheduler, tasks 1..S the servers of rank 0..S-1, the rest the workers
 * (W = N - 1 - S unless -w says; N must be exactly 1 + S + W).  Under
 * Kubernetes (`psrun --k8s --role R`) each pod is one node and its rank is
 * the pod's index.  Every copy must reach the same scheduler address, port
 * and secret without talking to the others, so each is a function of what
 * all tasks see:
 *   SLURM  host: the first host of SLURM_STEP_NODELIST (or the job's list),
 *          where srun's default distributions put task 0, which checks it;
 *          port: 12000 + hash(job id, step id) mod 20000 (below the
 *          ephemeral range); secret: derived from the job and step ids
 *          (secret.c).
 *   MPI    Open MPI puts no host list in the environment: the host is
 *          --scheduler (or PS_SCHEDULER), and 127.0.0.1 only when every rank
 *          is on this host (local size == size); port 9000 (a job id, which
 *          Open MPI gives, salts the secret only: two jobs on one host need
 *          their own --port); secret: derived from the job id
 *          (PMIX_NAMESPACE / OMPI_MCA_ess_base_jobid), or given.
 *   k8s    host: --scheduler (a headless Service's name, which a server or
 *          worker waits for to resolve); the scheduler listens on its
 *          pod's address (POD_IP); port 9000; secret: given (a Kubernetes
 *          Secret), never derived.
 * --host/--scheduler and --port override every default; PS_SCHEDULER in
 * the environment counts as both.  The checks run in every task before any
 * node starts, so bad input starts nothing.
 *
 * Must never: start a node whose role or rank it had to guess.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "psrun.h"

#define DEFAULT_PORT 9000
#define K8S_DNS_WAIT_MS 300000 /* default wait for the scheduler's name */
#define K8S_DNS_POLL_MS 500

/* Read integer variable `name` (>= lo) into *out; 1 if set, 0 if not, -1
 * (printed) if set but bad. */
static int env_int(const char *name, long lo, long *out)
{
    const char *v = getenv(name);
    char *end;
    if (v == NULL || v[0] == '\0') return 0;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || x < lo || x > 1000000) {
        fprintf(stderr, "psrun: %s=\"%s\" is not a number >= %ld\n", name, v, lo);
        return -1;
    }
    *out = x;
    return 1;
}

/* Roles by task number: 0 scheduler, 1..S servers, then workers.  Checks
 * that ntasks is 1 + S + W (filling in W if 0).  0 or -1 (printed). */
static int assign_role(psr_opts *o, psr_task *t, long id, long ntasks, const char *what)
{
    int derived = o->workers == 0;
    if (derived) o->workers = (int)(ntasks - 1 - o->servers);
    if (o->workers < 1 || ntasks != 1 + o->servers + o->workers) {
        if (derived)
            fprintf(stderr, "psrun: %s: the job has %ld task(s), but 1 scheduler + %d "
                    "server(s) + at least 1 worker need at least %d\n", what, ntasks,
                    o->servers, o->servers + 2);
        else
            fprintf(stderr, "psrun: %s: the job has %ld task(s), but 1 scheduler + %d "
                    "server(s) + %d worker(s) need exactly %d\n", what, ntasks, o->servers,
                    o->workers, 1 + o->servers + o->workers);
        return -1;
    }
    t->servers = o->servers;
    t->workers = o->workers;
    if (id == 0) {
        t->role = PSR_SCHEDULER;
        t->rank = 0;
    } else if (id <= o->servers) {
        t->role = PSR_SERVER;
        t->rank = (int)id - 1;
    } else {
        t->role = PSR_WORKER;
        t->rank = (int)(id - 1 - o->servers);
    }
    return 0;
}

/* The scheduler address from the flags, PS_SCHEDULER, or the mode's
 * defaults (def_host NULL: none).  0 or -1 (printed). */
static int set_sched(const psr_opts *o, psr_task *t, const char *def_host, int def_port,
                     const char *need)
{
    const char *env = getenv("PS_SCHEDULER");
    char host[256] = "";
    int port = def_port;
    if (env && env[0]) {
        const char *colon = strrchr(env, ':');
        if (colon == NULL || sscanf(colon + 1, "%d", &port) != 1 || port < 1 || port > 65535) {
            fprintf(stderr, "psrun: PS_SCHEDULER=\"%s\": expected host:port\n", env);
            return -1;
        }
        snprintf(host, sizeof(host), "%.*s", (int)(colon - env), env);
    } else if (def_host) {
        snprintf(host, sizeof(host), "%s", def_host);
    }
    if (o->host) snprintf(host, sizeof(host), "%s", o->host);
    if (o->port) port = o->port;
    if (host[0] == '\0') {
        fprintf(stderr, "psrun: %s\n", need);
        return -1;
    }
    snprintf(t->sched, sizeof(t->sched), "%s:%d", host, port);
    return 0;
}

/* ---- SLURM -------------------------------------------------------------------- */

/* The first host of a SLURM host list: "n[01-04,7],gpu2" -> "n01". */
static int first_host(const char *list, char *out, size_t cap)
{
    size_t i = 0, k = 0;
    while (list[i] && list[i] != ',' && list[i] != '[' && k + 1 < cap) out[k++] = list[i++];
    if (list[i] == '[') /* the first number of the range, zero padding kept */
        for (i++; isdigit((unsigned char)list[i]) && k + 1 < cap; i++) out[k++] = list[i];
    out[k] = '\0';
    return k > 0 ? 0 : -1;
}

static unsigned slurm_port(long job, long step)
{
    unsigned h = 2166136261u; /* FNV-1a over both ids */
    long v[2] = {job, step};
    for (int i = 0; i < 2; i++)
        for (int b = 0; b < 8; b++) h = (h ^ (unsigned)((unsigned long)v[i] >> (8 * b) & 255)) * 16777619u;
    return 12000 + h % 20000;
}

/* Task 0 must run where the others look for it. */
static int slurm_check_host(const psr_opts *o, const psr_task *t, const char *first)
{
    const char *me = getenv("SLURMD_NODENAME");
    if (t->role != PSR_SCHEDULER || o->host || getenv("PS_SCHEDULER") || me == NULL ||
        strcmp(me, first) == 0)
        return 0;
    fprintf(stderr, "psrun: --slurm: task 0 (the scheduler) runs on %s, not on %s, the "
                    "first host of the step; give --scheduler %s\n", me, first, me);
    return -1;
}

static int slurm_place(psr_opts *o, psr_task *t)
{
    long id, ntasks, job = 0, step = 0;
    const char *list = getenv("SLURM_STEP_NODELIST");
    char first[256] = "";
    if (list == NULL) list = getenv("SLURM_JOB_NODELIST");
    if (env_int("SLURM_PROCID", 0, &id) != 1 || env_int("SLURM_NTASKS", 1, &ntasks) != 1 ||
        list == NULL) {
        fprintf(stderr, "psrun: --slurm: SLURM_PROCID, SLURM_NTASKS and SLURM_JOB_NODELIST "
                        "must be set: start psrun --slurm with srun\n");
        return -1;
    }
    if (env_int("SLURM_JOB_ID", 0, &job) < 0 || env_int("SLURM_STEP_ID", 0, &step) < 0 ||
        assign_role(o, t, id, ntasks, "--slurm") != 0)
        return -1;
    if (first_host(list, first, sizeof(first)) != 0) {
        fprintf(stderr, "psrun: --slurm: cannot read a host from \"%s\"\n", list);
        return -1;
    }
    snprintf(t->job, sizeof(t->job), "slurm|%ld.%ld", job, step);
    if (set_sched(o, t, first, (int)slurm_port(job, step), "--slurm: no scheduler host") != 0)
        return -1;
    return slurm_check_host(o, t, first);
}

/* ---- MPI ---------------------------------------------------------------------- */

/* Rank, size and local size of Open MPI or MPICH Hydra; 0 or -1 (printed). */
static int mpi_env(long *rank, long *size, long *local)
{
    *local = -1;
    if (env_int("OMPI_COMM_WORLD_RANK", 0, rank) == 1 &&
        env_int("OMPI_COMM_WORLD_SIZE", 1, size) == 1) {
        if (env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1, local) != 1) *local = -1;
        return 0;
    }
    if (env_int("PMI_RANK", 0, rank) == 1 && env_int("PMI_SIZE", 1, size) == 1) {
        if (env_int("MPI_LOCALNRANKS", 1, local) != 1) *local = -1;
        return 0;
    }
    fprintf(stderr, "psrun: --mpi: neither OMPI_COMM_WORLD_RANK/SIZE (Open MPI) nor "
                    "PMI_RANK/PMI_SIZE (MPICH) is set: start psrun --mpi with mpirun\n");
    return -1;
}

static void mpi_job(psr_task *t)
{
    const char *names[] = {"PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "PMI_KVSNAME", NULL};
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        if (v && v[0]) {
            snprintf(t->job, sizeof(t->job), "mpi|%s", v);
            return;
        }
    }
}

static int mpi_place(psr_opts *o, psr_task *t)
{
    long rank, size, local;
    if (mpi_env(&rank, &size, &local) != 0 || assign_role(o, t, rank, size, "--mpi") != 0)
        return -1;
    mpi_job(t);
    if (t->job[0] == '\0' && !psr_has_secret(o)) {
        fprintf(stderr, "psrun: --mpi: this launcher gives no job id to derive a secret "
                        "from: set PS_SECRET or PS_SECRET_FILE (mpiexec passes it on)\n");
        return -1;
    }
    return set_sched(o, t, local == size ? "127.0.0.1" : NULL, DEFAULT_PORT,
                     "--mpi: the ranks span hosts and Open MPI/MPICH do not say where "
                     "rank 0 runs: give --scheduler HOST (rank 0's host) or PS_SCHEDULER");
}

/* ---- Kubernetes ------------------------------------------------------------------- */

/* The number that ends HOSTNAME ("ps-server-3" -> 3), a StatefulSet's ordinal. */
static int hostname_ordinal(long *out)
{
    const char *h = getenv("HOSTNAME");
    if (h == NULL || (h = strrchr(h, '-')) == NULL || !isdigit((unsigned char)h[1])) return 0;
    char *end;
    long v = strtol(h + 1, &end, 10);
    if (*end != '\0' || v >= PSR_MAX_NODES) return 0;
    *out = v;
    return 1;
}

static int k8s_rank(const psr_opts *o, psr_task *t)
{
    long r = 0;
    int got = 1;
    if (t->role == PSR_SCHEDULER) r = 0;
    else if (o->rank >= 0) r = o->rank;
    else if ((got = env_int("JOB_COMPLETION_INDEX", 0, &r)) == 0) got = hostname_ordinal(&r);
    int n = t->role == PSR_SERVER ? t->servers : t->workers;
    if (got < 0) return -1;
    if (got == 0 || (t->role != PSR_SCHEDULER && r >= n)) {
        fprintf(stderr, got == 0 ? "psrun: --k8s: no rank: give --rank, or run in an indexed "
                                   "Job (JOB_COMPLETION_INDEX) or a StatefulSet (HOSTNAME "
                                   "ending in -N)\n"
                                 : "psrun: --k8s: rank %ld, but there are %d %ss\n",
                r, n, t->role == PSR_SERVER ? "server" : "worker");
        return -1;
    }
    t->rank = (int)r;
    return 0;
}

/* Whether host resolves to an IPv4 address now. */
static int resolves(const char *host)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return 0;
    freeaddrinfo(res);
    return 1;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/*
 * A headless Service's name resolves only once the scheduler's pod has an
 * address, and libps treats a name that does not resolve as a bad
 * configuration, not as a scheduler still starting.  So a server or worker
 * pod polls the name (every 0.5 s, up to PS_CONNECT_TIMEOUT_MS, default
 * 300 s) before it starts its node.  0, or -1 (printed) at the deadline.
 */
static int k8s_wait_scheduler(const psr_task *t)
{
    char host[256];
    long wait_ms = K8S_DNS_WAIT_MS, said = 0;
    env_int("PS_CONNECT_TIMEOUT_MS", 1, &wait_ms);
    snprintf(host, sizeof(host), "%.*s", (int)(strrchr(t->sched, ':') - t->sched), t->sched);
    for (long end = now_ms() + wait_ms; !resolves(host); said = 1) {
        if (now_ms() >= end) {
            fprintf(stderr, "psrun: --k8s: the scheduler's name %s did not resolve within "
                            "%ld ms (is its Service there, and its pod scheduled?)\n",
                    host, wait_ms);
            return -1;
        }
        if (!said)
            fprintf(stderr, "psrun: --k8s: waiting for %s to resolve (up to %ld ms)\n", host,
                    wait_ms);
        struct timespec d = {0, K8S_DNS_POLL_MS * 1000000L};
        nanosleep(&d, NULL);
    }
    return 0;
}

static int k8s_place(psr_opts *o, psr_task *t)
{
    const char *pod_ip = getenv("POD_IP");
    t->role = strcmp(o->role, "scheduler") == 0 ? PSR_SCHEDULER
              : strcmp(o->role, "server") == 0  ? PSR_SERVER
                                                : PSR_WORKER;
    t->servers = o->servers;
    t->workers = o->workers;
    if (k8s_rank(o, t) != 0) return -1;
    if (!psr_has_secret(o)) {
        fprintf(stderr, "psrun: --k8s: set PS_SECRET or PS_SECRET_FILE (from a Kubernetes "
                        "Secret); pods share no other secret\n");
        return -1;
    }
    if (set_sched(o, t, NULL, DEFAULT_PORT, "--k8s: give --scheduler HOST (the scheduler's "
                  "Service name)") != 0)
        return -1;
    if (pod_ip && pod_ip[0]) snprintf(t->host, sizeof(t->host), "%s", pod_ip);
    if (t->role == PSR_SCHEDULER && t->host[0]) /* it listens on its own address */
        snprintf(t->sched, sizeof(t->sched), "%s%s", t->host, strrchr(t->sched, ':'));
    return t->role == PSR_SCHEDULER ? 0 : k8s_wait_scheduler(t);
}

int psr_task_place(psr_opts *o, psr_task *t)
{
    memset(t, 0, sizeof(*t));
    switch (o->mode) {
    case PSR_SLURM: return slurm_place(o, t);
    case PSR_MPI: return mpi_place(o, t);
    case PSR_K8S: return k8s_place(o, t);
    default: return -1;
    }
}
