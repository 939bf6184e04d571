/*
 * test_status.c -- unit tests of the status page: the REPORT body's codec
 * and the decoder's refusals (src/node/report.c), ps_report's checks, the
 * scheduler's store (rates, the last 600 points in order, suspected and left
 * states, ring segments; report_store.c), the three renderings of a
 * snapshot (JSON checked by a small validating parser, every /metrics line a
 * comment or a well-formed sample with HELP and TYPE before it, the HTML's
 * rows, escaping and charts; status.c), the PS_STATUS guard, and the HTTP
 * server on loopback: 401 without the secret, 200 with it, a port in use.
 * Every test runs under a watchdog alarm.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "node/report.h"
#include "node/report_store.h"
#include "node/status.h"
#include "util/util.h"

#define WATCHDOG_S 30

static int setup(void **state)
{
    (void)state;
    alarm(WATCHDOG_S);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    alarm(0);
    return 0;
}

/* ---- the codec ----------------------------------------------------------------------- */

static psi_report *sample_report(void)
{
    psi_report *r = calloc(1, sizeof(*r));
    r->ntables = 2;
    snprintf(r->tables[0].name, sizeof(r->tables[0].name), "weights");
    r->tables[0].keys = 1000, r->tables[0].bytes = 8000, r->tables[0].pushes = 42;
    r->tables[0].pulls = 7, r->tables[0].resends = 3, r->tables[0].sent_raw = 1u << 20;
    r->tables[0].sent_wire = 1u << 18, r->tables[0].recv_wire = 5, r->tables[0].recv_raw = 6;
    snprintf(r->tables[1].name, sizeof(r->tables[1].name), "we\"ird\x01<b>");
    r->nvalues = 2;
    snprintf(r->values[0].name, sizeof(r->values[0].name), "iteration");
    r->values[0].value = 12;
    snprintf(r->values[1].name, sizeof(r->values[1].name), "loss:train");
    r->values[1].value = -0.125;
    return r;
}

static void test_codec_roundtrip(void **state)
{
    (void)state;
    psi_report *r = sample_report(), *d = calloc(1, sizeof(*d));
    uint8_t *buf = malloc(PSI_REPORT_MAX_BYTES);
    size_t len;
    assert_int_equal(psi_report_encode(r, buf, PSI_REPORT_MAX_BYTES, &len), 0);
    assert_int_equal(psi_report_decode(buf, len, d), 0);
    assert_int_equal(d->ntables, 2);
    assert_int_equal(d->nvalues, 2);
    assert_memory_equal(&d->tables[0], &r->tables[0], sizeof(d->tables[0]));
    assert_string_equal(d->tables[1].name, "we\"ird?<b>"); /* control byte replaced */
    assert_string_equal(d->values[1].name, "loss:train");
    assert_true(d->values[1].value == -0.125);
    /* every truncation and one trailing byte are refused */
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(psi_report_decode(buf, cut, d), PS_ERR_PROTO);
    buf[len] = 0;
    assert_int_equal(psi_report_decode(buf, len + 1, d), PS_ERR_PROTO);
    assert_int_equal(d->ntables, 0);
    free(buf), free(r), free(d);
}

static void test_codec_refusals(void **state)
{
    (void)state;
    psi_report *r = sample_report(), *d = calloc(1, sizeof(*d));
    uint8_t *buf = malloc(PSI_REPORT_MAX_BYTES);
    size_t len;
    r->ntables = 0;
    r->nvalues = 1;
    assert_int_equal(psi_report_encode(r, buf, PSI_REPORT_MAX_BYTES, &len), 0);
    assert_int_equal(len, 4 + 1 + 9 + 8);
    uint8_t ok[32];
    memcpy(ok, buf, len);
    buf[5] = ' '; /* a space in a series name */
    assert_int_equal(psi_report_decode(buf, len, d), PS_ERR_PROTO);
    memcpy(buf, ok, len);
    buf[4] = 0; /* empty name */
    assert_int_equal(psi_report_decode(buf, len, d), PS_ERR_PROTO);
    memcpy(buf, ok, len);
    buf[4] = PS_REPORT_NAME_MAX; /* too long */
    assert_int_equal(psi_report_decode(buf, len, d), PS_ERR_PROTO);
    memcpy(buf, ok, len);
    psi_put_u64(buf + len - 8, 0x7FF8000000000000ull); /* NaN */
    assert_int_equal(psi_report_decode(buf, len, d), PS_ERR_PROTO);
    memcpy(buf, ok, len);
    psi_put_u16(buf + 2, PS_REPORT_MAX_SERIES + 1); /* over the cap */
    assert_int_equal(psi_report_decode(buf, len, d), PS_ERR_PROTO);
    psi_put_u16(buf, PSI_REPORT_MAX_TABLES + 1);
    assert_int_equal(psi_report_decode(buf, len, d), PS_ERR_PROTO);
    assert_int_equal(psi_report_decode(NULL, 0, d), PS_ERR_PROTO);
    /* the encoder refuses what the decoder would */
    r->values[0].value = INFINITY;
    assert_int_equal(psi_report_encode(r, buf, PSI_REPORT_MAX_BYTES, &len), PS_ERR_INVAL);
    r->values[0].value = 1;
    assert_int_equal(psi_report_encode(r, buf, 100, &len), PS_ERR_TOOBIG);
    free(buf), free(r), free(d);
}

static void test_ps_report_checks(void **state)
{
    (void)state;
    char name[64];
    assert_int_equal(ps_report(NULL, 1), PS_ERR_INVAL);
    assert_int_equal(ps_report("", 1), PS_ERR_INVAL);
    assert_int_equal(ps_report("has space", 1), PS_ERR_INVAL);
    assert_int_equal(ps_report("x", NAN), PS_ERR_INVAL);
    assert_int_equal(ps_report("x", -INFINITY), PS_ERR_INVAL);
    memset(name, 'a', sizeof(name));
    name[PS_REPORT_NAME_MAX - 1] = 0; /* 47 bytes: fine; 48: too long */
    assert_int_equal(ps_report(name, 1), 0);
    name[PS_REPORT_NAME_MAX - 1] = 'a';
    name[PS_REPORT_NAME_MAX] = 0;
    assert_int_equal(ps_report(name, 1), PS_ERR_INVAL);
    for (int i = 1; i < PS_REPORT_MAX_SERIES; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        assert_int_equal(ps_report(name, i), 0);
    }
    assert_int_equal(ps_report("one-too-many", 1), PS_ERR_TOOBIG);
    assert_int_equal(ps_report("s5", 55.5), 0); /* an existing name still updates */
    psi_report *r = calloc(1, sizeof(*r));
    psi_report_values(r);
    assert_int_equal(r->nvalues, PS_REPORT_MAX_SERIES);
    assert_string_equal(r->values[5].name, "s5");
    assert_true(r->values[5].value == 55.5);
    free(r);
}

static void test_pull_count(void **state)
{
    (void)state;
    psi_hdr h = {.type = PSI_MSG_DATA, .table = 77, .flags = PSI_F_REQUEST | PSI_F_PULL};
    uint64_t before = psi_report_pulls(77);
    psi_report_count_data(&h);
    h.flags = PSI_F_REQUEST | PSI_F_PUSH; /* a push */
    psi_report_count_data(&h);
    h.flags = PSI_F_RESPONSE | PSI_F_PULL; /* an answer */
    psi_report_count_data(&h);
    h.flags = PSI_F_REQUEST | PSI_F_PULL | PSI_F_REPL; /* a forward */
    psi_report_count_data(&h);
    assert_int_equal(psi_report_pulls(77) - before, 1);
    assert_int_equal(psi_report_pulls(78), 0);
}

/* ---- the store ------------------------------------------------------------------------- */

static psi_view *test_view(void)
{
    static psi_node nodes[5];
    static psi_view v = {.epoch = 3, .n = 5, .nodes = nodes};
    static const struct { int role, rank, alive; } spec[] = {
        {PS_ROLE_SCHEDULER, 0, PSI_NODE_ALIVE}, {PS_ROLE_SERVER, 0, PSI_NODE_ALIVE},
        {PS_ROLE_SERVER, 1, PSI_NODE_ALIVE},   {PS_ROLE_WORKER, 0, PSI_NODE_ALIVE},
        {PS_ROLE_WORKER, 1, PSI_NODE_DEAD}};
    for (uint32_t i = 0; i < 5; i++) {
        nodes[i] = (psi_node){.id = i, .role = (uint8_t)spec[i].role, .rank = spec[i].rank,
                              .alive = (uint8_t)spec[i].alive};
        snprintf(nodes[i].addr, sizeof(nodes[i].addr), "127.0.0.1:%u", 9000 + i);
    }
    return &v;
}

static const psi_status_node *snap_node(const psi_status_snap *s, uint32_t id)
{
    for (size_t i = 0; i < s->nnodes; i++)
        if (s->nodes[i].id == id) return &s->nodes[i];
    return NULL;
}

static void test_store_snapshot(void **state)
{
    (void)state;
    psi_report *r = sample_report();
    psi_status_snap s;
    psi_rstore_init(1000, 500, 2, 2);
    for (uint32_t id = 1; id <= 3; id++) psi_rstore_seen(id, 1000);
    r->tables[0].pushes = 100, r->tables[0].pulls = 10;
    psi_rstore_ingest(3, 1, r, 2000);
    r->tables[0].pushes = 300, r->tables[0].pulls = 30;
    psi_rstore_ingest(3, 1, r, 2500); /* a repeat of report 1: ignored */
    psi_rstore_ingest(3, 2, r, 3000);
    for (int i = 0; i < 700; i++) { /* more points than kept */
        r->values[0].value = i;
        psi_rstore_ingest(1, (uint64_t)i + 1, r, 4000 + (uint64_t)i);
    }
    psi_rstore_seen(3, 4650);
    psi_rstore_left(2);
    assert_int_equal(psi_rstore_snapshot(test_view(), 4700, &s), 0);
    assert_int_equal(s.epoch, 3);
    assert_int_equal(s.nnodes, 5);
    assert_int_equal(snap_node(&s, 0)->state, PSI_ST_ALIVE);
    assert_int_equal(snap_node(&s, 1)->state, PSI_ST_SUSPECTED); /* silent 3.7 s > 0.5 s */
    assert_int_equal(snap_node(&s, 2)->state, PSI_ST_LEFT);
    assert_int_equal(snap_node(&s, 3)->state, PSI_ST_ALIVE);
    assert_int_equal(snap_node(&s, 4)->state, PSI_ST_DEAD);
    assert_true(fabs(snap_node(&s, 3)->hb_age_s - 0.05) < 1e-9);
    assert_true(snap_node(&s, 4)->hb_age_s < 0); /* never heard */
    assert_int_equal(snap_node(&s, 1)->segs + snap_node(&s, 2)->segs, s.nsegs);
    assert_true(fabs(snap_node(&s, 1)->share + snap_node(&s, 2)->share - 1) < 1e-9);
    /* node 3's table rates: 200 pushes, 20 pulls in 1 s */
    const psi_status_table *t = NULL;
    for (size_t i = 0; i < s.ntables; i++)
        if (s.tables[i].node == 3 && !strcmp(s.tables[i].c.name, "weights")) t = &s.tables[i];
    assert_non_null(t);
    assert_true(fabs(t->push_rate - 200) < 1e-9 && fabs(t->pull_rate - 20) < 1e-9);
    /* node 1's "iteration": the last 600 values, oldest first */
    const psi_status_series *it = NULL;
    for (size_t i = 0; i < s.nseries; i++)
        if (s.series[i].node == 1 && !strcmp(s.series[i].name, "iteration")) it = &s.series[i];
    assert_non_null(it);
    assert_int_equal(it->n, PSI_RSTORE_POINTS);
    for (size_t k = 0; k < it->n; k++) assert_true(it->v[k] == (double)(100 + k));
    assert_true(it->t[0] < it->t[it->n - 1]);
    psi_status_snap_free(&s);
    psi_rstore_free();
    free(r);
}

/* ---- renderings -------------------------------------------------------------------------- */

/* A small JSON validator: returns the position after one value, or NULL. */
static const char *json_ws(const char *p)
{
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    return p;
}
static const char *json_value(const char *p);
static const char *json_string(const char *p)
{
    if (*p++ != '"') return NULL;
    for (; *p && *p != '"'; p++) {
        if ((unsigned char)*p < 0x20) return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!p[i] || !strchr("0123456789abcdefABCDEF", p[i])) return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return *p == '"' ? p + 1 : NULL;
}
static const char *json_number(const char *p)
{
    const char *q = p;
    if (*q == '-') q++;
    if (*q < '0' || *q > '9') return NULL;
    char *end;
    strtod(p, &end);
    return end > p ? end : NULL;
}
static const char *json_list(const char *p, char close, int keyed)
{
    p = json_ws(p + 1);
    if (*p == close) return p + 1;
    for (;;) {
        if (keyed) {
            if (!(p = json_string(json_ws(p)))) return NULL;
            p = json_ws(p);
            if (*p++ != ':') return NULL;
        }
        if (!(p = json_value(p))) return NULL;
        p = json_ws(p);
        if (*p == close) return p + 1;
        if (*p++ != ',') return NULL;
    }
}
static const char *json_value(const char *p)
{
    p = json_ws(p);
    if (*p == '{') return json_list(p, '}', 1);
    if (*p == '[') return json_list(p, ']', 0);
    if (*p == '"') return json_string(p);
    if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4)) return p + 4;
    if (!strncmp(p, "false", 5)) return p + 5;
    return json_number(p);
}

static void test_json_validator_itself(void **state)
{
    (void)state;
    assert_non_null(json_value("{\"a\":[1,-2.5e3,\"x\\\"y\"],\"b\":{}}"));
    assert_null(json_value("{\"a\":nan}"));
    assert_null(json_value("{\"a\":1,}"));
    assert_null(json_value("[\"a\x01\"]"));
}

/* A snapshot with a table whose name needs escaping and two series. */
static void render_snapshot(psi_status_snap *s)
{
    psi_report *r = sample_report();
    psi_rstore_init(0, 1000, 2, 2);
    for (int i = 0; i < 5; i++) {
        r->values[0].value = i * i;
        for (uint32_t id = 1; id <= 3; id++) {
            psi_rstore_seen(id, (uint64_t)i * 1000);
            psi_rstore_ingest(id, (uint64_t)i + 1, r, (uint64_t)i * 1000);
        }
    }
    assert_int_equal(psi_rstore_snapshot(test_view(), 4200, s), 0);
    psi_rstore_free();
    free(r);
}

static void test_render_json(void **state)
{
    (void)state;
    psi_status_snap s;
    size_t len;
    render_snapshot(&s);
    char *j = psi_status_json(&s, &len);
    assert_non_null(j);
    assert_int_equal(strlen(j), len);
    const char *end = json_value(j);
    assert_non_null(end);
    assert_string_equal(json_ws(end), "");
    assert_non_null(strstr(j, "\"epoch\":3"));
    assert_non_null(strstr(j, "\"name\":\"we\\\"ird?<b>\""));
    assert_non_null(strstr(j, "{\"id\":4,\"role\":\"worker\",\"rank\":1,\"state\":\"dead\""));
    assert_non_null(strstr(j, "\"name\":\"iteration\",\"node\":3,\"role\":\"worker\","
                              "\"rank\":0,\"last\":16,"));
    /* the table summed over its three nodes, saved bytes = raw - wire */
    assert_non_null(strstr(j, "\"name\":\"weights\",\"keys\":3000,"));
    assert_non_null(strstr(j, "\"filter_saved_bytes\":2359296,"));
    free(j);
    psi_status_snap_free(&s);
}

/* Whether `line` is `name{k="v",...} number` or `name number`. */
static int sample_line(const char *p, char *name, size_t cap)
{
    size_t n = 0;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == ':' ||
           (n && *p >= '0' && *p <= '9')) {
        if (n + 1 < cap) name[n++] = *p;
        p++;
    }
    name[n] = 0;
    if (!n) return 0;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            while ((*p >= 'a' && *p <= 'z') || *p == '_') p++;
            if (*p++ != '=' || *p++ != '"') return 0;
            for (; *p && *p != '"'; p++)
                if (*p == '\\' && !strchr("\\\"n", *++p)) return 0;
            if (*p++ != '"') return 0;
            if (*p == ',') p++;
            else if (*p != '}') return 0;
        }
        p++;
    }
    if (*p++ != ' ') return 0;
    char *end;
    double v = strtod(p, &end);
    return end > p && *end == 0 && isfinite(v);
}

static void test_render_metrics(void **state)
{
    (void)state;
    psi_status_snap s;
    size_t len;
    render_snapshot(&s);
    char *m = psi_status_metrics(&s, &len);
    assert_non_null(m);
    char typed[64][64];
    int ntyped = 0, samples = 0;
    for (char *line = strtok(m, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        if (!strncmp(line, "# TYPE ", 7)) {
            assert_true(ntyped < 64);
            sscanf(line + 7, "%63s", typed[ntyped++]);
            assert_true(strstr(line, " gauge") || strstr(line, " counter"));
            continue;
        }
        if (!strncmp(line, "# HELP ", 7)) continue;
        if (!sample_line(line, name, sizeof(name))) fail_msg("bad metrics line: %s", line);
        assert_int_equal(strncmp(name, "libps_", 6), 0);
        int seen = 0;
        for (int i = 0; i < ntyped; i++) seen |= !strcmp(typed[i], name);
        if (!seen) fail_msg("no TYPE before %s", line);
        samples++;
    }
    assert_true(samples > 30);
    free(m);
    m = psi_status_metrics(&s, &len);
    assert_non_null(strstr(m, "libps_table_pushes_total{node=\"1\",role=\"server\",rank=\"0\","
                              "table=\"weights\"} 42\n"));
    assert_non_null(strstr(m, "libps_table_pushes_total{node=\"1\",role=\"server\",rank=\"0\","
                              "table=\"we\\\"ird?<b>\"} 0\n"));
    assert_non_null(strstr(m, "libps_app_value{node=\"3\",role=\"worker\",rank=\"0\","
                              "series=\"iteration\"} 16\n"));
    assert_non_null(strstr(m, "libps_nodes{state=\"dead\"} 1\n"));
    assert_non_null(strstr(m, "libps_node_up{node=\"4\",role=\"worker\",rank=\"1\"} 0\n"));
    free(m);
    psi_status_snap_free(&s);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++) n++;
    return n;
}

static void test_render_html(void **state)
{
    (void)state;
    psi_status_snap s;
    size_t len;
    render_snapshot(&s);
    char *h = psi_status_html(&s, &len);
    assert_non_null(h);
    assert_non_null(strstr(h, "<meta http-equiv=\"refresh\" content=\"2\">"));
    for (int id = 0; id < 5; id++) {
        char row[32];
        snprintf(row, sizeof(row), "<tr id=\"node-%d\"", id);
        assert_non_null(strstr(h, row));
    }
    assert_non_null(strstr(h, "<span class=\"badge dead\">dead</span>"));
    assert_non_null(strstr(h, "we&quot;ird?&lt;b&gt;")); /* escaped, never markup */
    assert_null(strstr(h, "<b>"));
    assert_int_equal(count(h, "<svg"), 2);                   /* a chart per series name */
    assert_int_equal(count(h, "<polyline class=\"series\""), 6); /* a line per node */
    assert_non_null(strstr(h, "data-series=\"loss:train\" data-node=\"2\""));
    assert_null(strstr(h, "http:")); /* nothing fetched from anywhere */
    assert_null(strstr(h, "https:"));
    assert_null(strstr(h, "//"));
    assert_null(strstr(h, "src="));
    assert_null(strstr(h, "<script"));
    free(h);
    psi_status_snap_free(&s);
}

/* ---- guard and server ------------------------------------------------------------------- */

static void test_guard(void **state)
{
    (void)state;
    psi_gate_key none, secret;
    psi_status_opts o;
    psi_gate_key_derive(&none, "", 0);
    psi_gate_key_derive(&secret, "s3cret", 6);
    secret.secret = 1;
    assert_int_equal(psi_status_config("127.0.0.1:8080", &none, 0, 0, &o), 0);
    assert_int_equal(o.port, 8080);
    assert_false(o.need_auth);
    assert_int_equal(psi_status_config("localhost:0", &secret, 0, 0, &o), 0);
    assert_false(o.need_auth);
    assert_int_equal(psi_status_config("10.1.2.3:8080", &none, 0, 0, &o), PS_ERR_CONFIG);
    assert_int_equal(psi_status_config("0.0.0.0:8080", &none, 0, 0, &o), PS_ERR_CONFIG);
    assert_int_equal(psi_status_config("10.1.2.3:8080", &secret, 0, 0, &o), 0);
    assert_true(o.need_auth);
    assert_int_equal(psi_status_config("10.1.2.3:8080", &none, 1, 0, &o), 0); /* PS_INSECURE */
    assert_false(o.need_auth);
    /* PS_STATUS_AUTH=1 */
    assert_int_equal(psi_status_config("127.0.0.1:8080", &secret, 0, 1, &o), 0);
    assert_true(o.need_auth);
    assert_int_equal(psi_status_config("127.0.0.1:8080", &none, 0, 1, &o), PS_ERR_CONFIG);
    const char *bad[] = {"8080", ":8080", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:65536",
                         "127.0.0.1:-1", "no.such.host.invalid:80"};
    for (size_t i = 0; i < PSI_ARRAY_LEN(bad); i++)
        assert_int_equal(psi_status_config(bad[i], &none, 0, 0, &o), PS_ERR_CONFIG);
}

static int fake_snapshot(void *arg, psi_status_snap *out)
{
    (void)arg;
    memset(out, 0, sizeof(*out));
    out->epoch = 9;
    return 0;
}

/* GET `path` from 127.0.0.1:port with an optional Authorization header;
 * the status code, and the response in resp (cap bytes). */
static int http_get(int port, const char *path, const char *auth, char *resp, size_t cap)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%s\r\n", path,
                     auth ? "Authorization: Basic " : "", auth ? auth : "", auth ? "\r\n" : "");
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t got = 0;
    ssize_t k;
    while (got + 1 < cap && (k = read(fd, resp + got, cap - 1 - got)) > 0) got += (size_t)k;
    resp[got] = 0;
    close(fd);
    int code = 0;
    sscanf(resp, "HTTP/1.%*d %d", &code);
    return code;
}

static void test_server_auth_and_port_in_use(void **state)
{
    (void)state;
    psi_gate_key key;
    psi_status_opts o;
    psi_status_server *srv, *other;
    int port, port2;
    char resp[8192];
    psi_gate_key_derive(&key, "s3cret", 6);
    key.secret = 1;
    assert_int_equal(psi_status_config("127.0.0.1:0", &key, 0, 1, &o), 0);
    assert_int_equal(psi_status_start(&o, fake_snapshot, NULL, &srv, &port), 0);
    assert_true(port > 0);
    assert_int_equal(http_get(port, "/metrics", NULL, resp, sizeof(resp)), 401);
    assert_non_null(strstr(resp, "WWW-Authenticate: Basic"));
    /* base64 of x:wrong, then of x:s3cret */
    assert_int_equal(http_get(port, "/metrics", "eDp3cm9uZw==", resp, sizeof(resp)), 401);
    assert_int_equal(http_get(port, "/metrics", "eDpzM2NyZXQ=", resp, sizeof(resp)), 200);
    assert_non_null(strstr(resp, "libps_view_epoch 9\n"));
    assert_int_equal(http_get(port, "/status.json", "eDpzM2NyZXQ=", resp, sizeof(resp)), 200);
    assert_int_equal(http_get(port, "/nope", "eDpzM2NyZXQ=", resp, sizeof(resp)), 404);
    /* the same port again: refused, clearly */
    o.port = port;
    assert_int_equal(psi_status_start(&o, fake_snapshot, NULL, &other, &port2), PS_ERR_CONFIG);
    assert_null(other);
    psi_status_stop(srv);
    /* open on loopback without PS_STATUS_AUTH */
    assert_int_equal(psi_status_config("127.0.0.1:0", &key, 0, 0, &o), 0);
    assert_int_equal(psi_status_start(&o, fake_snapshot, NULL, &srv, &port), 0);
    assert_int_equal(http_get(port, "/", NULL, resp, sizeof(resp)), 200);
    assert_non_null(strstr(resp, "Content-Security-Policy: default-src 'none'"));
    psi_status_stop(srv);
    psi_status_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_codec_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_codec_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ps_report_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_count, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_snapshot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_validator_itself, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_render_html, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_auth_and_port_in_use, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
