/*
 * report.c -- the REPORT body's encoding (report.h), the node's registry of
 * named values (ps_report) and its count of pull requests per table.
 *
 * Design: the codec is pure (no locks, no I/O) so the fuzzer and unit
 * tests drive it directly; the decoder reads through a cursor that checks
 * the bytes left before every field.  The registry is a fixed array of
 * PS_REPORT_MAX_SERIES names and a small open-addressed map of table id ->
 * pulls, both under one leaf mutex (`reg.lock`: nothing else is taken while
 * it is held), so ps_report and the I/O thread's count cost one uncontended
 * lock.
 *
 * Never: trust a length or count from the network before checking it
 * against the bytes left and its cap; take another lock under reg.lock.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "node/report.h"
#include "util/util.h"

#define PULL_SLOTS 512 /* > PSI_REPORT_MAX_TABLES: the map never fills */

static struct {
    pthread_mutex_t lock;
    psi_report_value values[PS_REPORT_MAX_SERIES];
    int nvalues;
    struct {
        uint32_t id;
        int used;
        uint64_t pulls;
    } pulls[PULL_SLOTS];
} reg = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- names ------------------------------------------------------------------ */

static int series_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == ':' || c == '-';
}

int psi_report_name_ok(const char *name, size_t len)
{
    if (len == 0 || len >= PS_REPORT_NAME_MAX) return 0;
    for (size_t i = 0; i < len; i++)
        if (!series_char((unsigned char)name[i])) return 0;
    return 1;
}

static int table_char(unsigned char c) { return c >= 0x20 && c <= 0x7e; }

/* ---- the application's values --------------------------------------------------- */

int ps_report(const char *name, double value)
{
    if (!name || !psi_report_name_ok(name, strnlen(name, PS_REPORT_NAME_MAX)) ||
        !isfinite(value))
        return PS_ERR_INVAL;
    int rv = PS_OK;
    pthread_mutex_lock(&reg.lock);
    int i = 0;
    while (i < reg.nvalues && strcmp(reg.values[i].name, name) != 0) i++;
    if (i == reg.nvalues && reg.nvalues == PS_REPORT_MAX_SERIES) {
        rv = PS_ERR_TOOBIG;
    } else {
        if (i == reg.nvalues)
            snprintf(reg.values[reg.nvalues++].name, PS_REPORT_NAME_MAX, "%s", name);
        reg.values[i].value = value;
    }
    pthread_mutex_unlock(&reg.lock);
    return rv;
}

void psi_report_values(psi_report *r)
{
    pthread_mutex_lock(&reg.lock);
    r->nvalues = reg.nvalues;
    memcpy(r->values, reg.values, (size_t)reg.nvalues * sizeof(reg.values[0]));
    pthread_mutex_unlock(&reg.lock);
}

/* ---- pulls per table -------------------------------------------------------------- */

/* The slot of table `id` (reg.lock held); with `add`, claimed if absent.
 * -1: absent (or, never in practice, no free slot). */
static int pull_slot(uint32_t id, int add)
{
    uint32_t h = (uint32_t)psi_mix64(id) % PULL_SLOTS;
    for (uint32_t i = 0; i < PULL_SLOTS; i++) {
        uint32_t s = (h + i) % PULL_SLOTS;
        if (reg.pulls[s].used && reg.pulls[s].id == id) return (int)s;
        if (!reg.pulls[s].used) {
            if (!add) return -1;
            reg.pulls[s].used = 1;
            reg.pulls[s].id = id;
            return (int)s;
        }
    }
    return -1;
}

void psi_report_count_data(const psi_hdr *h)
{
    unsigned want = PSI_F_REQUEST | PSI_F_PULL;
    if ((h->flags & want) != want || (h->flags & (PSI_F_REPL | PSI_F_FRAG))) return;
    pthread_mutex_lock(&reg.lock);
    int s = pull_slot(h->table, 1);
    if (s >= 0) reg.pulls[s].pulls++;
    pthread_mutex_unlock(&reg.lock);
}

uint64_t psi_report_pulls(uint32_t id)
{
    pthread_mutex_lock(&reg.lock);
    int s = pull_slot(id, 0);
    uint64_t n = s >= 0 ? reg.pulls[s].pulls : 0;
    pthread_mutex_unlock(&reg.lock);
    return n;
}

/* ---- encoding ----------------------------------------------------------------------- */

static void table_counts(const psi_report_table *t, uint64_t c[PSI_REPORT_NCOUNT])
{
    uint64_t v[PSI_REPORT_NCOUNT] = {t->keys,     t->bytes,     t->pushes,
                                     t->pulls,    t->resends,   t->sent_raw,
                                     t->sent_wire, t->recv_wire, t->recv_raw};
    memcpy(c, v, sizeof(v));
}

static void table_set_counts(psi_report_table *t, const uint64_t c[PSI_REPORT_NCOUNT])
{
    t->keys = c[0], t->bytes = c[1], t->pushes = c[2], t->pulls = c[3], t->resends = c[4];
    t->sent_raw = c[5], t->sent_wire = c[6], t->recv_wire = c[7], t->recv_raw = c[8];
}

static uint8_t *put_table(uint8_t *p, const psi_report_table *t)
{
    size_t n = strnlen(t->name, PSI_REPORT_TABLE_NAME_MAX - 1);
    uint64_t c[PSI_REPORT_NCOUNT];
    *p++ = (uint8_t)n;
    for (size_t i = 0; i < n; i++)
        *p++ = table_char((unsigned char)t->name[i]) ? (uint8_t)t->name[i] : '?';
    table_counts(t, c);
    for (int i = 0; i < PSI_REPORT_NCOUNT; i++, p += 8) psi_put_u64(p, c[i]);
    return p;
}

static uint8_t *put_value(uint8_t *p, const psi_report_value *v)
{
    size_t n = strlen(v->name);
    uint64_t bits;
    *p++ = (uint8_t)n;
    memcpy(p, v->name, n);
    memcpy(&bits, &v->value, 8);
    psi_put_u64(p + n, bits);
    return p + n + 8;
}

int psi_report_encode(const psi_report *r, uint8_t *buf, size_t cap, size_t *len)
{
    if (r->ntables < 0 || r->ntables > PSI_REPORT_MAX_TABLES || r->nvalues < 0 ||
        r->nvalues > PS_REPORT_MAX_SERIES)
        return PS_ERR_INVAL;
    for (int i = 0; i < r->nvalues; i++) {
        const psi_report_value *v = &r->values[i];
        if (!psi_report_name_ok(v->name, strnlen(v->name, PS_REPORT_NAME_MAX)) ||
            !isfinite(v->value))
            return PS_ERR_INVAL;
    }
    if (cap < PSI_REPORT_MAX_BYTES) return PS_ERR_TOOBIG; /* simpler than exact sizing */
    uint8_t *p = buf;
    psi_put_u16(p, (uint16_t)r->ntables);
    psi_put_u16(p + 2, (uint16_t)r->nvalues);
    p += 4;
    for (int i = 0; i < r->ntables; i++) p = put_table(p, &r->tables[i]);
    for (int i = 0; i < r->nvalues; i++) p = put_value(p, &r->values[i]);
    *len = (size_t)(p - buf);
    return PS_OK;
}

/* ---- decoding ------------------------------------------------------------------------ */

typedef struct cursor {
    const uint8_t *p;
    size_t left;
} cursor;

static int take(cursor *c, size_t n, const uint8_t **out)
{
    if (c->left < n) return PS_ERR_PROTO;
    *out = c->p;
    c->p += n;
    c->left -= n;
    return PS_OK;
}

/* A name: u8 length in 1..max-1, then the bytes, each accepted by ok(). */
static int take_name(cursor *c, char *out, size_t max, int (*ok)(unsigned char))
{
    const uint8_t *p;
    if (take(c, 1, &p) != 0 || p[0] == 0 || p[0] >= max) return PS_ERR_PROTO;
    size_t n = p[0];
    if (take(c, n, &p) != 0) return PS_ERR_PROTO;
    for (size_t i = 0; i < n; i++)
        if (!ok(p[i])) return PS_ERR_PROTO;
    memcpy(out, p, n);
    out[n] = 0;
    return PS_OK;
}

static int take_table(cursor *c, psi_report_table *t)
{
    const uint8_t *p;
    uint64_t v[PSI_REPORT_NCOUNT];
    if (take_name(c, t->name, sizeof(t->name), table_char) != 0 ||
        take(c, 8 * PSI_REPORT_NCOUNT, &p) != 0)
        return PS_ERR_PROTO;
    for (int i = 0; i < PSI_REPORT_NCOUNT; i++) v[i] = psi_get_u64(p + 8 * i);
    table_set_counts(t, v);
    return PS_OK;
}

static int take_value(cursor *c, psi_report_value *v)
{
    const uint8_t *p;
    if (take_name(c, v->name, sizeof(v->name), series_char) != 0 || take(c, 8, &p) != 0)
        return PS_ERR_PROTO;
    uint64_t bits = psi_get_u64(p);
    memcpy(&v->value, &bits, 8);
    return isfinite(v->value) ? PS_OK : PS_ERR_PROTO;
}

int psi_report_decode(const uint8_t *buf, size_t len, psi_report *out)
{
    cursor c = {buf, len};
    const uint8_t *p;
    out->ntables = out->nvalues = 0;
    if (!buf || take(&c, 4, &p) != 0) return PS_ERR_PROTO;
    int nt = psi_get_u16(p), nv = psi_get_u16(p + 2);
    if (nt > PSI_REPORT_MAX_TABLES || nv > PS_REPORT_MAX_SERIES) return PS_ERR_PROTO;
    for (int i = 0; i < nt; i++)
        if (take_table(&c, &out->tables[i]) != 0) return PS_ERR_PROTO;
    for (int i = 0; i < nv; i++)
        if (take_value(&c, &out->values[i]) != 0) return PS_ERR_PROTO;
    if (c.left != 0) return PS_ERR_PROTO;
    out->ntables = nt;
    out->nvalues = nv;
    return PS_OK;
}
