/*
 * hostfile.c -- where psrun --hostfile puts each node.
 *
 * A hostfile lists one host per line: `HOST [slots=N] [role=R[,R...]]`,
 * where HOST is `[user@]name` as ssh takes it, slots caps how many nodes
 * the host gets (no cap when absent), role (scheduler, server, worker)
 * limits which roles it takes (all when absent); `#` starts a comment and
 * blank lines are skipped.  Placement is round-robin: the nodes, in launch
 * order (the scheduler, servers by rank, workers by rank), each go to the
 * next host after the previous node's that takes the role and has a free
 * slot.  So a plain list of hosts spreads the nodes evenly; slots and roles
 * pin them.  Every error names the file, the line and what is wrong, and
 * comes before anything starts.
 *
 * Must never: accept a host name ssh could take for an option (a leading
 * '-') or one with characters no host name has.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "psrun.h"

#define ALL_ROLES 7u

static const char *const role_names[] = {"scheduler", "server", "worker"};

static int bad(const char *path, int line, const char *what, const char *word)
{
    fprintf(stderr, "psrun: %s:%d: %s '%s'\n", path, line, what, word);
    return -1;
}

static int valid_host(const char *h)
{
    if (h[0] == '-' || h[0] == '@' || h[0] == '\0') return 0;
    for (const char *p = h; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr(".-_@:[]%", *p)) return 0;
    return 1;
}

/* Parse "R[,R...]" into a role mask; 0 if a name is unknown. */
static unsigned parse_roles(const char *v)
{
    unsigned mask = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", v);
    for (char *save, *r = strtok_r(buf, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
        unsigned bit = 0;
        for (int i = 0; i < 3; i++)
            if (strcmp(r, role_names[i]) == 0) bit = 1u << i;
        if (bit == 0) return 0;
        mask |= bit;
    }
    return mask;
}

/* One `key=value` word of a host line into *h; 0 or -1 (printed). */
static int parse_attr(psr_host *h, char *word, const char *path, int line)
{
    char *eq = strchr(word, '='), *end;
    if (eq == NULL) return bad(path, line, "expected slots=N or role=R, got", word);
    *eq = '\0';
    if (strcmp(word, "slots") == 0) {
        errno = 0;
        long v = strtol(eq + 1, &end, 10);
        if (errno || end == eq + 1 || *end || v < 1 || v > 4096)
            return bad(path, line, "slots must be 1..4096, got", eq + 1);
        h->slots = (int)v;
    } else if (strcmp(word, "role") == 0 || strcmp(word, "roles") == 0) {
        if ((h->roles = parse_roles(eq + 1)) == 0)
            return bad(path, line, "role must be scheduler, server or worker, got", eq + 1);
    } else {
        return bad(path, line, "unknown attribute", word);
    }
    return 0;
}

/* Parse one line (comment stripped) into *h, which is zeroed first; 1 if it
 * held a host, 0 if blank, -1 (printed) if malformed. */
static int parse_line(char *s, psr_host *h, const char *path, int line)
{
    char *save, *word = strtok_r(s, " \t\r\n", &save);
    memset(h, 0, sizeof(*h)); /* freed by the caller even when malformed */
    if (word == NULL) return 0;
    if (!valid_host(word)) return bad(path, line, "not a host name", word);
    h->roles = ALL_ROLES;
    h->name = strdup(word);
    const char *at = strrchr(word, '@');
    h->addr = strdup(at ? at + 1 : word);
    if (h->name == NULL || h->addr == NULL) {
        fprintf(stderr, "psrun: out of memory\n");
        return -1;
    }
    while ((word = strtok_r(NULL, " \t\r\n", &save)) != NULL)
        if (parse_attr(h, word, path, line) != 0) return -1;
    return 1;
}

static int read_lines(FILE *f, const char *path, psr_host **hosts, int *n)
{
    char buf[1024];
    int line = 0, cap = 0;
    while (fgets(buf, sizeof(buf), f)) {
        line++;
        if (strchr(buf, '\n') == NULL && !feof(f)) return bad(path, line, "line too long:", "...");
        char *hash = strchr(buf, '#');
        if (hash) *hash = '\0';
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            psr_host *h = realloc(*hosts, (size_t)cap * sizeof(*h));
            if (h == NULL) return bad(path, line, "out of memory at", "");
            *hosts = h;
        }
        int rv = parse_line(buf, &(*hosts)[*n], path, line);
        if (rv < 0) {
            (*n)++; /* its strings are freed with the rest */
            return -1;
        }
        *n += rv;
    }
    return 0;
}

psr_host *psr_hostfile_read(const char *path, int *n)
{
    psr_host *hosts = NULL;
    *n = 0;
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        fprintf(stderr, "psrun: --hostfile %s: %s\n", path, strerror(errno));
        return NULL;
    }
    int rv = read_lines(f, path, &hosts, n);
    fclose(f);
    if (rv == 0 && *n == 0) {
        fprintf(stderr, "psrun: %s: no hosts in the file\n", path);
        rv = -1;
    }
    if (rv != 0) {
        psr_hostfile_free(hosts, *n);
        return NULL;
    }
    return hosts;
}

void psr_hostfile_free(psr_host *h, int n)
{
    if (h == NULL) return;
    for (int i = 0; i < n; i++) {
        free(h[i].name);
        free(h[i].addr);
    }
    free(h);
}

int psr_hostfile_place(psr_host *h, int nh, psr_node *nodes, int n)
{
    int next = 0;
    for (int i = 0; i < n; i++) {
        int k, found = -1;
        for (k = 0; k < nh && found < 0; k++) {
            psr_host *c = &h[(next + k) % nh];
            if ((c->roles & (1u << nodes[i].role)) && (c->slots == 0 || c->used < c->slots))
                found = (next + k) % nh;
        }
        if (found < 0) {
            fprintf(stderr, "psrun: the hostfile has no free slot for %s (%d node(s) to "
                            "place: 1 scheduler, servers, workers)\n", nodes[i].name, n);
            return -1;
        }
        h[found].used++;
        nodes[i].host = h[found].name;
        next = found + 1;
    }
    return 0;
}
