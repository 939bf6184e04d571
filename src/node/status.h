/*
 * status.h -- the scheduler's status page: a snapshot of the cluster's
 * health and progress, its renderings (HTML page, JSON, Prometheus text),
 * and the HTTP server that serves them (libmicrohttpd) on PS_STATUS.
 *
 * Design: rendering (status.c) takes a snapshot (psi_status_snap), plain
 * data that the caller owns, so it is unit-tested without a network
 * (tests/unit/test_status.c).  The server (status_http.c) asks its
 * snapshot function for a fresh one per request; node.c's copies the view
 * under po.lock and the reports under the store's lock (report_store.h),
 * and the rendering runs with no lock held.
 *
 * Guard: a page bound to loopback is open; bound beyond loopback it asks for
 * the cluster secret (HTTP Basic auth, any user name, password = the
 * secret), and without a secret it refuses to start unless PS_INSECURE=1.
 * PS_STATUS_AUTH=1 asks for the secret on loopback too (shared hosts).
 */
#ifndef PSI_NODE_STATUS_H
#define PSI_NODE_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "net/gate.h"
#include "node/report.h"
#include "node/view.h"

/* A node's state as the page shows it. */
enum {
    PSI_ST_ALIVE = 0,
    PSI_ST_SUSPECTED = 1, /* alive in the view, silent past the heartbeat timeout */
    PSI_ST_DEAD = 2,
    PSI_ST_LEFT = 3,      /* said it leaves (end of job, or ps_leave) */
    PSI_ST_JOINING = 4,   /* joined the running cluster, not serving yet */
};
const char *psi_status_state_name(int st);

typedef struct psi_status_node {
    uint32_t id;
    int role, rank, state;
    char addr[PSI_ADDR_MAX];
    double hb_age_s;      /* since the scheduler last heard from it; < 0: never */
    double report_age_s;  /* since its last report; < 0: none yet */
    uint32_t segs;        /* servers: ring segments it owns */
    double share;         /* servers: its fraction of the key space */
} psi_status_node;

/* One table on one node. */
typedef struct psi_status_table {
    psi_report_table c;   /* the counters of its last report */
    uint32_t node;
    int role, rank;
    double push_rate, pull_rate; /* per second, between its last two reports */
} psi_status_table;

/* One series of one node: its last points, oldest first (t in seconds since
 * the scheduler started). */
typedef struct psi_status_series {
    char name[PS_REPORT_NAME_MAX];
    uint32_t node;
    int role, rank;
    size_t n;
    double *t, *v;        /* owned by the snapshot */
} psi_status_series;

typedef struct psi_status_snap {
    uint32_t epoch;
    double uptime_s;
    int nservers, nworkers;   /* as configured */
    uint32_t nsegs;           /* ring segments in all */
    psi_status_node *nodes;   /* sorted by id; owned */
    size_t nnodes;
    psi_status_table *tables; /* by node, then as reported; owned */
    size_t ntables;
    psi_status_series *series; /* by node, then as reported; owned */
    size_t nseries;
} psi_status_snap;

void psi_status_snap_free(psi_status_snap *s);

/* Renderings: a malloc'ed NUL-terminated text (the caller frees it) and its
 * length in *len, or NULL on no memory. */
char *psi_status_json(const psi_status_snap *s, size_t *len);
char *psi_status_metrics(const psi_status_snap *s, size_t *len);
char *psi_status_html(const psi_status_snap *s, size_t *len);

/* ---- the server ---------------------------------------------------------------- */

typedef struct psi_status_opts {
    char host[PSI_ADDR_MAX];
    int port;                 /* 0: any free port */
    int need_auth;            /* Basic auth against `key` */
    psi_gate_key key;
} psi_status_opts;

/*
 * Parse PS_STATUS's value `spec` (host:port, an IPv4 address or localhost)
 * and apply the guard, given the cluster key (key->secret: one is set),
 * PS_INSECURE and PS_STATUS_AUTH.  0, or PS_ERR_CONFIG with the reason
 * logged, naming PS_STATUS.
 */
int psi_status_config(const char *spec, const psi_gate_key *key, int insecure, int force_auth,
                      psi_status_opts *out);

/* Fill *out (zeroed first); 0 or a ps_err.  Called on the server's thread. */
typedef int (*psi_status_snap_fn)(void *arg, psi_status_snap *out);

typedef struct psi_status_server psi_status_server;
/*
 * Listen on o->host:o->port and serve /, /status.json and /metrics from a
 * thread of the server's own.  *port gets the port bound.  0, or
 * PS_ERR_CONFIG (the address is in use or cannot be bound: logged, naming
 * PS_STATUS and the address) or PS_ERR_SYS.
 */
int psi_status_start(const psi_status_opts *o, psi_status_snap_fn fn, void *arg,
                     psi_status_server **out, int *port);
/* Stop serving and free; waits for a request being answered (so the caller
 * must not hold a lock the snapshot function takes).  NULL is fine. */
void psi_status_stop(psi_status_server *s);

#endif /* PSI_NODE_STATUS_H */
