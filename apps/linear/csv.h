/*
 * csv.h -- the CSV pieces of pslinear's reader (data.c, LIN_FMT_CSV): split a
 * line into comma-separated fields (RFC 4180 quoting: a field in double
 * quotes may hold commas, and "" is a quote) and read the header line that
 * names the columns and picks the label column.
 */
#ifndef PSLINEAR_CSV_H
#define PSLINEAR_CSV_H

#include <stddef.h>

typedef struct lin_csv {
    char **names;  /* [n] column names (owned) */
    int n;         /* columns */
    int label;     /* index of the label column */
} lin_csv;

/* Split s in place into at most max fields (f[i] point into s, unquoted).
 * Returns the number of fields (which may exceed max: then only max are
 * set), or -1 for a quote that does not close or text after a closing one. */
int lin_csv_split(char *s, char **f, int max);

/* Parse the header line s (modified) into *h; label_col is a column name, a
 * 1-based column number, or NULL (the column named "label", else the first).
 * 0, or -1 with `what` saying why (no columns, repeated name, no such label
 * column); PS_ERR_NOMEM. */
int lin_csv_header(char *s, const char *label_col, lin_csv *h, char *what, size_t cap);
void lin_csv_free(lin_csv *h);

#endif
