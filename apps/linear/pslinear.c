/*
 * pslinear.c -- placeholder main of the sparse logistic regression app
 * (issue 5).  The data pipeline (data.c) is in; the solver lands later and
 * replaces this file.  Until then the folder builds into a pslinear binary
 * that says so and exits with status 2.
 */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "pslinear: solver not yet implemented\n");
    return 2;
}
