/*
 * csv.h -- the CSV pieces of pslinear's reader (data.c, LIN_FMT_CSV): split a
 * line into comma-separated fields (RFC 4180 quoting: a field in double
 * quotes may hold commas, and "" is a quote) and read the header line that
 * names the columns and picks the label column.  Pure string work on a line
 * the caller owns; no I/O; never reads past the line's NUL.
 *
 * Header-only (static functions), included by data.c alone:
 * tests/unit/test_linear_data.c compiles data.c by #include, so whatever
 * data.c calls must come with it.  (A csv.c would need that test to include
 * it too.)
 */
#ifndef PSLINEAR_CSV_H
#define PSLINEAR_CSV_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps/ps.h"

typedef struct lin_csv {
    char **names;  /* [n] column names (owned) */
    int n;         /* columns */
    int label;     /* index of the label column */
} lin_csv;

/* Split s in place into at most max fields (f[i] point into s, unquoted).
 * Returns the number of fields (which may exceed max: then only max are
 * set), or -1 for a quote that does not close or text after a closing one. */
static int lin_csv_split(char *s, char **f, int max);

/* Parse the header line s (modified) into *h; label_col is a column name, a
 * 1-based column number, or NULL (the column named "label", else the first).
 * 0, or -1 with `what` saying why (no columns, repeated name, no such label
 * column); PS_ERR_NOMEM. */
static int lin_csv_header(char *s, const char *label_col, lin_csv *h, char *what, size_t cap);
static void lin_csv_free(lin_csv *h);

/* Unquote the field starting at s (a '"'), in place; *next gets the
 * character after it.  0, or -1 for a bad quote. */
static int unquote(char *s, char **next)
{
    char *w = s, *p = s + 1;
    for (;;) {
        if (*p == '\0') return -1;
        if (*p == '"' && p[1] == '"') *w++ = '"', p += 2;
        else if (*p == '"') break;
        else *w++ = *p++;
    }
    *w = '\0';
    p++;
    if (*p != ',' && *p != '\0') return -1;
    *next = p;
    return 0;
}

static int lin_csv_split(char *s, char **f, int max)
{
    int n = 0;
    for (;;) {
        char *start = s, *end;
        if (*s == '"') {
            if (unquote(s, &end) != 0) return -1;
        } else {
            end = s + strcspn(s, ",");
        }
        if (n < max) f[n] = start;
        n++;
        if (*end == '\0') return n;
        *end = '\0';
        s = end + 1;
    }
}

static void lin_csv_free(lin_csv *h)
{
    for (int i = 0; h->names && i < h->n; i++) free(h->names[i]);
    free(h->names);
    memset(h, 0, sizeof *h);
}

/* The label column: by name, by 1-based number, or "label", else column 1. */
static int pick_label(const lin_csv *h, const char *col)
{
    for (int i = 0; i < h->n; i++)
        if (!strcmp(h->names[i], col ? col : "label")) return i;
    if (!col) return 0;
    char *end;
    long k = strtol(col, &end, 10);
    return *col && !*end && k >= 1 && k <= h->n ? (int)k - 1 : -1;
}

static int lin_csv_header(char *s, const char *label_col, lin_csv *h, char *what, size_t cap)
{
    memset(h, 0, sizeof *h);
    int max = 1;
    for (const char *c = s; *c; c++) max += *c == ',';   /* at least the field count */
    char **f = calloc((size_t)max, sizeof(char *));
    if (!f || !(h->names = calloc((size_t)max, sizeof(char *)))) {
        free(f);
        return PS_ERR_NOMEM;
    }
    int n = lin_csv_split(s, f, max), rv = 0;
    if (n < 0) rv = -1, snprintf(what, cap, "bad quoting in the header");
    for (int i = 0; rv == 0 && i < n; i++)
        if (!(h->names[h->n++] = strdup(f[i]))) rv = PS_ERR_NOMEM;
    free(f);
    for (int i = 0; rv == 0 && i < h->n; i++) {
        if (!h->names[i][0]) rv = -1, snprintf(what, cap, "column %d has no name", i + 1);
        for (int j = 0; rv == 0 && j < i; j++)
            if (!strcmp(h->names[i], h->names[j]))
                rv = -1, snprintf(what, cap, "column name '%.32s' repeated", h->names[i]);
    }
    if (rv == 0 && (h->label = pick_label(h, label_col)) < 0)
        rv = -1, snprintf(what, cap, "no label column '%.32s' (want a header name or a number "
                          "1..%d)", label_col, h->n);
    if (rv == 0 && h->n < 2) rv = -1, snprintf(what, cap, "one column: no features beside the label");
    return rv;
}

#endif
