/*
 * status.c -- the status page's renderings (see status.h): a snapshot as an
 * HTML page, as JSON and as Prometheus text.  The HTTP server that serves
 * them is status_http.c.
 *
 * Design: pure functions of a snapshot, so they are unit-tested without a
 * network (tests/unit/test_status.c); each writes into a growable buffer
 * and returns it.  The page is one HTML document with inline CSS and inline
 * SVG charts, no script and no external fetch, which reloads itself every
 * 2 s.  Every string that came from the network (table names) is escaped
 * for where it goes: HTML text, JSON string, Prometheus label value.
 *
 * Never: lock anything (the server calls these with no lock held, on a
 * snapshot it owns); trust a name to be markup-free.
 */
#include <math.h> /* isfinite, INFINITY: macros, no libm */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/status.h"
#include "util/util.h"

/* ---- a growable text buffer -------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_grow(sbuf *b, size_t more)
{
    if (b->oom || b->len + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return;
    }
    b->p = p;
    b->cap = cap;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    sb_grow(b, (size_t)n);
    if (b->oom) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void sb_puts(sbuf *b, const char *s) { sb_printf(b, "%s", s); }

/* `s` escaped for HTML text and attribute values. */
static void sb_html(sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': sb_puts(b, "&amp;"); break;
        case '<': sb_puts(b, "&lt;"); break;
        case '>': sb_puts(b, "&gt;"); break;
        case '"': sb_puts(b, "&quot;"); break;
        case '\'': sb_puts(b, "&#39;"); break;
        default: sb_printf(b, "%c", (unsigned char)*s < 0x20 ? '?' : *s);
        }
    }
}

/* Control bytes never reach these (report.c's decoder refuses them); should
 * one, it is written as '?'. */

/* `s` as a JSON string, quotes included. */
static void sb_json(sbuf *b, const char *s)
{
    sb_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') sb_printf(b, "\\%c", c);
        else sb_printf(b, "%c", c < 0x20 ? '?' : c);
    }
    sb_puts(b, "\"");
}

/* `s` as a Prometheus label value, quotes included. */
static void sb_label(sbuf *b, const char *s)
{
    sb_puts(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_printf(b, "\\%c", *s);
        else sb_printf(b, "%c", (unsigned char)*s < 0x20 ? '?' : *s);
    }
    sb_puts(b, "\"");
}

/* A finite number (JSON and Prometheus have no NaN here). */
static double fin(double x) { return isfinite(x) ? x : 0; }

/* floor() without libm (the installed static library names no -lm), for
 * |x| < 9e15; other values come back as they are. */
static double dfloor(double x)
{
    if (!(x > -9e15 && x < 9e15)) return x;
    double i = (double)(long long)x; /* toward zero */
    return i > x ? i - 1 : i;
}
static double dmin(double a, double b) { return a < b ? a : b; }
static double dmax(double a, double b) { return a > b ? a : b; }

static char *sb_done(sbuf *b, size_t *len)
{
    sb_grow(b, 0);
    if (b->oom) {
        free(b->p);
        return NULL;
    }
    b->p[b->len] = 0;
    *len = b->len;
    return b->p;
}

/* ---- shared helpers ------------------------------------------------------------ */

const char *psi_status_state_name(int st)
{
    static const char *const names[] = {"alive", "suspected", "dead", "left", "joining"};
    return st >= 0 && st < (int)PSI_ARRAY_LEN(names) ? names[st] : "?";
}

void psi_status_snap_free(psi_status_snap *s)
{
    for (size_t i = 0; s->series && i < s->nseries; i++) {
        free(s->series[i].t);
        free(s->series[i].v);
    }
    free(s->nodes);
    free(s->tables);
    free(s->series);
    memset(s, 0, sizeof(*s));
}

static const char *role(int r) { return ps_role_name((ps_role)r); }

static uint64_t saved(const psi_report_table *t)
{
    return t->sent_raw > t->sent_wire ? t->sent_raw - t->sent_wire : 0;
}

/* A table's figures summed over the nodes that report it. */
typedef struct table_sum {
    const char *name;
    uint64_t keys, bytes, pushes, pulls, resends, raw, wire, saved;
    double push_rate, pull_rate;
    int nodes;
} table_sum;

/* The distinct tables of s, summed, in first-seen order (malloc'ed). */
static table_sum *sum_tables(const psi_status_snap *s, size_t *n)
{
    table_sum *out = calloc(s->ntables ? s->ntables : 1, sizeof(*out));
    *n = 0;
    for (size_t i = 0; out && i < s->ntables; i++) {
        const psi_status_table *t = &s->tables[i];
        size_t k = 0;
        while (k < *n && strcmp(out[k].name, t->c.name) != 0) k++;
        if (k == *n) out[(*n)++].name = t->c.name;
        table_sum *u = &out[k];
        u->keys += t->c.keys, u->bytes += t->c.bytes, u->pushes += t->c.pushes;
        u->pulls += t->c.pulls, u->resends += t->c.resends, u->raw += t->c.sent_raw;
        u->wire += t->c.sent_wire, u->saved += saved(&t->c);
        u->push_rate += t->push_rate, u->pull_rate += t->pull_rate;
        u->nodes++;
    }
    return out;
}

/* ---- JSON -------------------------------------------------------------------------- */

static void json_node(sbuf *b, const psi_status_node *n)
{
    sb_printf(b, "{\"id\":%u,\"role\":\"%s\",\"rank\":%d,\"state\":\"%s\",\"addr\":", n->id,
              role(n->role), n->rank, psi_status_state_name(n->state));
    sb_json(b, n->addr);
    sb_printf(b, ",\"heartbeat_age_s\":%.3f,\"report_age_s\":%.3f,\"ring_segments\":%u,"
              "\"key_share\":%.6f}", fin(n->hb_age_s), fin(n->report_age_s), n->segs,
              fin(n->share));
}

static void json_table_row(sbuf *b, const psi_report_table *c)
{
    sb_printf(b, "\"keys\":%llu,\"bytes\":%llu,\"pushes\":%llu,\"pulls\":%llu,\"resends\":%llu,"
              "\"sent_bytes_raw\":%llu,\"sent_bytes_wire\":%llu,\"filter_saved_bytes\":%llu",
              (unsigned long long)c->keys, (unsigned long long)c->bytes,
              (unsigned long long)c->pushes, (unsigned long long)c->pulls,
              (unsigned long long)c->resends, (unsigned long long)c->sent_raw,
              (unsigned long long)c->sent_wire, (unsigned long long)saved(c));
}

static void json_table(sbuf *b, const psi_status_snap *s, const table_sum *u)
{
    psi_report_table c = {.keys = u->keys, .bytes = u->bytes, .pushes = u->pushes,
                          .pulls = u->pulls, .resends = u->resends, .sent_raw = u->raw,
                          .sent_wire = u->wire};
    sb_puts(b, "{\"name\":");
    sb_json(b, u->name);
    sb_puts(b, ",");
    json_table_row(b, &c);
    sb_printf(b, ",\"pushes_per_s\":%.3f,\"pulls_per_s\":%.3f,\"nodes\":[", fin(u->push_rate),
              fin(u->pull_rate));
    int first = 1;
    for (size_t i = 0; i < s->ntables; i++) {
        const psi_status_table *t = &s->tables[i];
        if (strcmp(t->c.name, u->name) != 0) continue;
        sb_printf(b, "%s{\"node\":%u,\"role\":\"%s\",\"rank\":%d,", first ? "" : ",", t->node,
                  role(t->role), t->rank);
        json_table_row(b, &t->c);
        sb_printf(b, ",\"pushes_per_s\":%.3f,\"pulls_per_s\":%.3f}", fin(t->push_rate),
                  fin(t->pull_rate));
        first = 0;
    }
    sb_puts(b, "]}");
}

static void json_series(sbuf *b, const psi_status_series *r)
{
    sb_puts(b, "{\"name\":");
    sb_json(b, r->name);
    sb_printf(b, ",\"node\":%u,\"role\":\"%s\",\"rank\":%d,\"last\":%.10g,\"points\":[", r->node,
              role(r->role), r->rank, r->n ? fin(r->v[r->n - 1]) : 0.0);
    for (size_t k = 0; k < r->n; k++)
        sb_printf(b, "%s[%.3f,%.10g]", k ? "," : "", fin(r->t[k]), fin(r->v[k]));
    sb_puts(b, "]}");
}

char *psi_status_json(const psi_status_snap *s, size_t *len)
{
    sbuf b = {0};
    size_t nt;
    table_sum *u = sum_tables(s, &nt);
    if (!u) return NULL;
    sb_printf(&b, "{\"epoch\":%u,\"uptime_s\":%.3f,\"servers\":%d,\"workers\":%d,"
              "\"ring_segments\":%u,\"nodes\":[", s->epoch, fin(s->uptime_s), s->nservers,
              s->nworkers, s->nsegs);
    for (size_t i = 0; i < s->nnodes; i++) {
        if (i) sb_puts(&b, ",");
        json_node(&b, &s->nodes[i]);
    }
    sb_puts(&b, "],\"tables\":[");
    for (size_t i = 0; i < nt; i++) {
        if (i) sb_puts(&b, ",");
        json_table(&b, s, &u[i]);
    }
    sb_puts(&b, "],\"series\":[");
    for (size_t i = 0; i < s->nseries; i++) {
        if (i) sb_puts(&b, ",");
        json_series(&b, &s->series[i]);
    }
    sb_puts(&b, "]}\n");
    free(u);
    return sb_done(&b, len);
}

/* ---- Prometheus ----------------------------------------------------------------------- */

static void prom_head(sbuf *b, const char *name, const char *type, const char *help)
{
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{node="",role="",rank=""[,key="val"]} value */
static void prom_node(sbuf *b, const char *name, uint32_t node, int r, int rank,
                      const char *key, const char *val, double v)
{
    sb_printf(b, "%s{node=\"%u\",role=\"%s\",rank=\"%d\"", name, node, role(r), rank);
    if (key) {
        sb_printf(b, ",%s=", key);
        sb_label(b, val);
    }
    v = fin(v);
    if (v > -9e15 && v < 9e15 && v == dfloor(v)) sb_printf(b, "} %.0f\n", v); /* exact */
    else sb_printf(b, "} %.9g\n", v);
}

static void prom_nodes(sbuf *b, const psi_status_snap *s)
{
    prom_head(b, "libps_nodes", "gauge", "Nodes of the view in each state.");
    for (int st = PSI_ST_ALIVE; st <= PSI_ST_JOINING; st++) {
        int n = 0;
        for (size_t i = 0; i < s->nnodes; i++) n += s->nodes[i].state == st;
        sb_printf(b, "libps_nodes{state=\"%s\"} %d\n", psi_status_state_name(st), n);
    }
    prom_head(b, "libps_node_up", "gauge", "1 while the node is alive (or suspected, or joining).");
    for (size_t i = 0; i < s->nnodes; i++) {
        const psi_status_node *n = &s->nodes[i];
        int up = n->state != PSI_ST_DEAD && n->state != PSI_ST_LEFT;
        prom_node(b, "libps_node_up", n->id, n->role, n->rank, NULL, NULL, up);
    }
    prom_head(b, "libps_node_heartbeat_age_seconds", "gauge",
              "Seconds since the scheduler last heard from the node.");
    for (size_t i = 0; i < s->nnodes; i++) {
        const psi_status_node *n = &s->nodes[i];
        if (n->hb_age_s >= 0)
            prom_node(b, "libps_node_heartbeat_age_seconds", n->id, n->role, n->rank, NULL,
                      NULL, n->hb_age_s);
    }
    prom_head(b, "libps_server_ring_segments", "gauge", "Ring segments the server owns.");
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i].role == PS_ROLE_SERVER)
            prom_node(b, "libps_server_ring_segments", s->nodes[i].id, s->nodes[i].role,
                      s->nodes[i].rank, NULL, NULL, s->nodes[i].segs);
    prom_head(b, "libps_server_key_share", "gauge", "Fraction of the key space the server owns.");
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i].role == PS_ROLE_SERVER)
            prom_node(b, "libps_server_key_share", s->nodes[i].id, s->nodes[i].role,
                      s->nodes[i].rank, NULL, NULL, s->nodes[i].share);
}

typedef struct prom_table_metric {
    const char *name, *type, *help;
    int field; /* index into the counters, or -1 push rate, -2 pull rate, -3 saved */
} prom_table_metric;

static double table_field(const psi_status_table *t, int field)
{
    const psi_report_table *c = &t->c;
    const uint64_t v[] = {c->keys, c->bytes, c->pushes, c->pulls, c->resends,
                          c->sent_raw, c->sent_wire, c->recv_wire};
    if (field == -1) return t->push_rate;
    if (field == -2) return t->pull_rate;
    if (field == -3) return (double)saved(c);
    return (double)v[field];
}

static void prom_tables(sbuf *b, const psi_status_snap *s)
{
    static const prom_table_metric ms[] = {
        {"libps_table_keys", "gauge", "Keys the server stores.", 0},
        {"libps_table_bytes", "gauge", "Bytes of the server's store.", 1},
        {"libps_table_pushes_total", "counter", "Pushes the server applied.", 2},
        {"libps_table_pulls_total", "counter", "Pull requests the server received.", 3},
        {"libps_table_resends_total", "counter", "Requests the worker sent again.", 4},
        {"libps_table_sent_raw_bytes_total", "counter", "Bytes sent, before the filters.", 5},
        {"libps_table_sent_bytes_total", "counter", "Bytes sent, after the filters.", 6},
        {"libps_table_received_bytes_total", "counter", "Bytes received, on the wire.", 7},
        {"libps_table_filter_saved_bytes_total", "counter", "Bytes the filters saved.", -3},
        {"libps_table_pushes_per_second", "gauge", "Pushes applied per second, lately.", -1},
        {"libps_table_pulls_per_second", "gauge", "Pull requests per second, lately.", -2},
    };
    for (size_t m = 0; m < PSI_ARRAY_LEN(ms); m++) {
        prom_head(b, ms[m].name, ms[m].type, ms[m].help);
        for (size_t i = 0; i < s->ntables; i++) {
            const psi_status_table *t = &s->tables[i];
            prom_node(b, ms[m].name, t->node, t->role, t->rank, "table", t->c.name,
                      table_field(t, ms[m].field));
        }
    }
}

char *psi_status_metrics(const psi_status_snap *s, size_t *len)
{
    sbuf b = {0};
    prom_head(&b, "libps_view_epoch", "gauge", "Epoch of the scheduler's current view.");
    sb_printf(&b, "libps_view_epoch %u\n", s->epoch);
    prom_head(&b, "libps_uptime_seconds", "gauge", "Seconds since the scheduler started.");
    sb_printf(&b, "libps_uptime_seconds %.3f\n", fin(s->uptime_s));
    prom_nodes(&b, s);
    prom_tables(&b, s);
    prom_head(&b, "libps_app_value", "gauge", "Latest value of a series the program reports "
              "with ps_report.");
    for (size_t i = 0; i < s->nseries; i++) {
        const psi_status_series *r = &s->series[i];
        if (r->n)
            prom_node(&b, "libps_app_value", r->node, r->role, r->rank, "series", r->name,
                      r->v[r->n - 1]);
    }
    return sb_done(&b, len);
}

/* ---- HTML ------------------------------------------------------------------------------- */

static const char page_css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}"
    "header{background:#1d2330;color:#fff;padding:14px 24px;display:flex;align-items:baseline;"
    "gap:24px}header h1{margin:0;font-size:20px}header span{color:#b8c0d0}"
    "main{padding:8px 24px 24px}h2{font-size:15px;margin:18px 0 8px;color:#3a4356}"
    "table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;min-width:60%}"
    "th,td{padding:5px 12px;text-align:right;border-bottom:1px solid #e6e8ee}"
    "th{background:#eef0f4;font-weight:600}td:first-child,th:first-child,.l{text-align:left}"
    ".badge{padding:1px 8px;border-radius:9px;font-size:12px;color:#fff}"
    ".alive{background:#2e8b57}.suspected{background:#d98e04}.dead{background:#c0392b}"
    ".left{background:#7f8c8d}.joining{background:#2f6fbd}"
    ".charts{display:flex;flex-wrap:wrap;gap:16px}"
    "figure{margin:0;background:#fff;box-shadow:0 1px 2px #0002;padding:8px}"
    "figcaption{font-weight:600;margin-bottom:4px}svg text{font:11px system-ui,sans-serif;"
    "fill:#555}.muted{color:#7a8194}";

static const char *const colors[] = {"#2f6fbd", "#c0392b", "#2e8b57", "#d98e04",
                                     "#8e44ad", "#16a085", "#7f8c8d", "#d35400"};

/* 1234567 -> "1.2 MiB" */
static void sb_bytes(sbuf *b, double x)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (x >= 1024 && u < 4) x /= 1024, u++;
    sb_printf(b, u ? "%.1f %s" : "%.0f %s", x, unit[u]);
}

static void sb_age(sbuf *b, double s)
{
    if (s < 0) sb_puts(b, "<span class=\"muted\">never</span>");
    else sb_printf(b, "%.1f s", s);
}

static void html_nodes(sbuf *b, const psi_status_snap *s)
{
    sb_puts(b, "<h2>Nodes</h2><table id=\"nodes\"><tr><th>id</th><th class=\"l\">role</th>"
               "<th>rank</th><th class=\"l\">state</th><th class=\"l\">address</th>"
               "<th>heartbeat</th><th>last report</th><th>ring segments</th>"
               "<th>key share</th></tr>");
    for (size_t i = 0; i < s->nnodes; i++) {
        const psi_status_node *n = &s->nodes[i];
        const char *st = psi_status_state_name(n->state);
        sb_printf(b, "<tr id=\"node-%u\" data-role=\"%s\" data-rank=\"%d\"><td>%u</td>"
                  "<td class=\"l\">%s</td><td>%d</td><td class=\"l\"><span class=\"badge %s\">"
                  "%s</span></td><td class=\"l\">", n->id, role(n->role), n->rank, n->id,
                  role(n->role), n->rank, st, st);
        sb_html(b, n->addr);
        sb_puts(b, "</td><td>");
        sb_age(b, n->hb_age_s);
        sb_puts(b, "</td><td>");
        sb_age(b, n->report_age_s);
        if (n->role == PS_ROLE_SERVER)
            sb_printf(b, "</td><td>%u</td><td>%.1f %%</td></tr>", n->segs, 100 * fin(n->share));
        else
            sb_puts(b, "</td><td></td><td></td></tr>");
    }
    sb_puts(b, "</table>");
}

static void html_tables(sbuf *b, const psi_status_snap *s)
{
    size_t nt;
    table_sum *u = sum_tables(s, &nt);
    if (!u) return;
    sb_puts(b, "<h2>Tables</h2><table id=\"tables\"><tr><th>table</th><th>keys</th>"
               "<th>bytes</th><th>pushes</th><th>pushes/s</th><th>pulls</th><th>pulls/s</th>"
               "<th>resends</th><th>saved by filters</th></tr>");
    if (!nt) sb_puts(b, "<tr><td class=\"muted\" colspan=\"9\">no table reported yet</td></tr>");
    for (size_t i = 0; i < nt; i++) {
        sb_puts(b, "<tr class=\"table\" data-table=\"");
        sb_html(b, u[i].name);
        sb_puts(b, "\"><td>");
        sb_html(b, u[i].name);
        sb_printf(b, "</td><td>%llu</td><td>", (unsigned long long)u[i].keys);
        sb_bytes(b, (double)u[i].bytes);
        sb_printf(b, "</td><td>%llu</td><td>%.1f</td><td>%llu</td><td>%.1f</td><td>%llu</td><td>",
                  (unsigned long long)u[i].pushes, fin(u[i].push_rate),
                  (unsigned long long)u[i].pulls, fin(u[i].pull_rate),
                  (unsigned long long)u[i].resends);
        sb_bytes(b, (double)u[i].saved);
        if (u[i].raw) sb_printf(b, " (%.0f %%)", 100.0 * (double)u[i].saved / (double)u[i].raw);
        sb_puts(b, "</td></tr>");
    }
    sb_puts(b, "</table>");
    free(u);
}

#define CW 560 /* chart size and margins */
#define CH 200
#define ML 56
#define MR 12
#define MT 10
#define MB 24

typedef struct extent {
    double t0, t1, v0, v1;
} extent;

static void series_extent(const psi_status_snap *s, const char *name, extent *e)
{
    *e = (extent){INFINITY, -INFINITY, INFINITY, -INFINITY};
    for (size_t i = 0; i < s->nseries; i++) {
        const psi_status_series *r = &s->series[i];
        if (strcmp(r->name, name) != 0) continue;
        for (size_t k = 0; k < r->n; k++) {
            e->t0 = dmin(e->t0, r->t[k]), e->t1 = dmax(e->t1, r->t[k]);
            e->v0 = dmin(e->v0, r->v[k]), e->v1 = dmax(e->v1, r->v[k]);
        }
    }
    if (!(e->t1 > e->t0)) e->t0 = isfinite(e->t1) ? e->t1 - 1 : 0, e->t1 = e->t0 + 1;
    if (!(e->v1 > e->v0)) e->v0 = isfinite(e->v1) ? e->v1 - 1 : 0, e->v1 = e->v0 + 2;
    /* round the value axis out to 4 steps of 1, 2, 2.5 or 5 times a power of 10 */
    double raw = (e->v1 - e->v0) / 4, p = 1; /* p: the power of 10 at or below raw */
    while (p * 10 <= raw) p *= 10;
    while (p > raw) p /= 10;
    double step = 10 * p;
    static const double nice[] = {1, 2, 2.5, 5};
    for (int i = 3; i >= 0; i--)
        if (nice[i] * p >= raw) step = nice[i] * p;
    double lo = dfloor(e->v0 / step) * step;
    while (lo + 4 * step < e->v1) step = step * 2; /* rare: floor pushed it below */
    e->v0 = lo, e->v1 = lo + 4 * step;
}

static void svg_axes(sbuf *b, const extent *e)
{
    for (int g = 0; g <= 4; g++) {
        double y = MT + (CH - MT - MB) * g / 4.0, v = e->v1 - (e->v1 - e->v0) * g / 4.0;
        sb_printf(b, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#e6e8ee\"/>"
                  "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>", ML, y, CW - MR, y,
                  ML - 6, y + 4, v);
    }
    sb_printf(b, "<text x=\"%d\" y=\"%d\">%.0f s</text><text x=\"%d\" y=\"%d\" "
              "text-anchor=\"end\">%.0f s</text>", ML, CH - 6, e->t0, CW - MR, CH - 6, e->t1);
}

static void svg_line(sbuf *b, const psi_status_series *r, const extent *e, const char *color)
{
    sb_printf(b, "<polyline class=\"series\" data-series=\"%s\" data-node=\"%u\" fill=\"none\" "
              "stroke=\"%s\" stroke-width=\"1.8\" points=\"", r->name, r->node, color);
    for (size_t k = 0; k < r->n; k++) {
        double x = ML + (CW - ML - MR) * (r->t[k] - e->t0) / (e->t1 - e->t0);
        double y = MT + (CH - MT - MB) * (e->v1 - r->v[k]) / (e->v1 - e->v0);
        sb_printf(b, "%s%.1f,%.1f", k ? " " : "", x, y);
    }
    sb_puts(b, "\"/>");
}

/* One chart for series `name`, a line per node (names are [A-Za-z0-9_.:-]). */
static void html_chart(sbuf *b, const psi_status_snap *s, const char *name)
{
    extent e;
    int line = 0, lines = 0;
    series_extent(s, name, &e);
    for (size_t i = 0; i < s->nseries; i++) lines += strcmp(s->series[i].name, name) == 0;
    int h = CH + 18 + 14 * ((lines - 1) / 4); /* a legend row per 4 lines */
    sb_printf(b, "<figure id=\"series-%s\"><figcaption>%s</figcaption><svg "
              "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">", name, name, CW, h, CW, h);
    svg_axes(b, &e);
    for (size_t i = 0; i < s->nseries; i++) {
        const psi_status_series *r = &s->series[i];
        if (strcmp(r->name, name) != 0) continue;
        const char *c = colors[line % (int)PSI_ARRAY_LEN(colors)];
        svg_line(b, r, &e, c);
        sb_printf(b, "<text x=\"%d\" y=\"%d\" fill=\"%s\" style=\"fill:%s\">%s %d: %.6g</text>",
                  ML + 125 * (line % 4), CH + 14 + 14 * (line / 4), c, c, role(r->role),
                  r->rank, r->n ? r->v[r->n - 1] : 0.0);
        line++;
    }
    sb_puts(b, "</svg></figure>");
}

static void html_series(sbuf *b, const psi_status_snap *s)
{
    sb_puts(b, "<h2>Series</h2><div class=\"charts\">");
    if (!s->nseries) sb_puts(b, "<p class=\"muted\">no series reported yet (ps_report)</p>");
    for (size_t i = 0; i < s->nseries; i++) {
        size_t j = 0;
        while (j < i && strcmp(s->series[j].name, s->series[i].name) != 0) j++;
        if (j == i) html_chart(b, s, s->series[i].name); /* first of its name */
    }
    sb_puts(b, "</div>");
}

char *psi_status_html(const psi_status_snap *s, size_t *len)
{
    sbuf b = {0};
    int alive = 0;
    for (size_t i = 0; i < s->nnodes; i++) alive += s->nodes[i].state == PSI_ST_ALIVE;
    sb_printf(&b, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
              "<meta http-equiv=\"refresh\" content=\"2\"><title>libps status</title>"
              "<style>%s</style></head><body><header><h1>libps</h1><span>view epoch %u</span>"
              "<span>up %.0f s</span><span>%d of %zu nodes alive</span><span>%d servers, %d "
              "workers</span><span>%u ring segments</span></header><main>", page_css, s->epoch,
              fin(s->uptime_s), alive, s->nnodes, s->nservers, s->nworkers, s->nsegs);
    html_nodes(&b, s);
    html_tables(&b, s);
    html_series(&b, s);
    sb_puts(&b, "</main></body></html>\n");
    return sb_done(&b, len);
}
