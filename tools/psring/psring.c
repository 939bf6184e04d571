/*
 * psring -- measure the balance of the consistent-hash ring (src/node/ring.c)
 * to choose PSI_RING_DEFAULT_VNODES; the tables in bench/ring-balance.md are
 * its output.
 *
 * Usage: psring [trials]   (default 200)
 *
 * For S servers (ranks 0..S-1) and V virtual points each it prints max share
 * / mean share (1.0 is perfect): first of the ring libps really builds
 * (positions fixed by rank, v and the ring's salt), then the worst of that
 * ring after any one server left (the set a cluster runs with after a
 * failure), then the mean and the worst over `trials` rings of uniformly
 * random points, which show what any other salt or rank set would give, so
 * the first tables are not read as luck.  Pure
 * computation: it opens no sockets and writes only to stdout.
 */
#include <stdio.h>
#include <stdlib.h>

#include "node/ring.h"
#include "util/util.h"

static const int servers[] = {2, 4, 8, 16, 32};
static const int vnodes[] = {16, 32, 64, 128, 256, 512};
#define NS ((int)PSI_ARRAY_LEN(servers))
#define NV ((int)PSI_ARRAY_LEN(vnodes))

/* max / mean of shares[0..n) (their mean is 1/n). */
static double max_over_mean(const double *shares, int n)
{
    double mx = 0;
    for (int i = 0; i < n; i++) mx = PSI_MAX(mx, shares[i]);
    return mx * n;
}

/*
 * max / mean of the libps ring of s servers with v points each, ranks 0..s-1
 * except `skip` (-1: none; else the ring after server `skip` left); < 0 on
 * no memory.
 */
static double ring_balance(int s, int v, int skip)
{
    int ranks[64] = {0}, n = 0;
    uint32_t ids[64] = {0};
    double shares[64];
    psi_ring *r;

    for (int i = 0; i < s; i++) {
        if (i == skip) continue;
        ranks[n] = i;
        ids[n++] = (uint32_t)(i + 1);
    }
    if (!(r = psi_ring_new(ranks, ids, n, v))) return -1;
    psi_ring_shares(r, shares);
    psi_ring_free(r);
    return max_over_mean(shares, n);
}

/* The worst ring_balance over the s rings that lack one of the s servers. */
static double ring_balance_less_one(int s, int v)
{
    double worst = 0;
    for (int k = 0; k < s; k++) {
        double b = ring_balance(s, v, k);
        if (b < 0) return -1;
        worst = PSI_MAX(worst, b);
    }
    return worst;
}

struct point {
    uint64_t pos;
    int srv;
};

static int cmp_point(const void *a, const void *b)
{
    const struct point *x = a, *y = b;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* max / mean of a ring of s * v uniformly random points (same ownership rule). */
static double random_balance(psi_rng *rng, struct point *p, int s, int v)
{
    double shares[64] = {0};
    int m = s * v;

    for (int i = 0; i < m; i++) p[i] = (struct point){psi_rng_next(rng), i / v};
    qsort(p, (size_t)m, sizeof(*p), cmp_point);
    /* The arc (p_{j-1}, p_j] belongs to p_j's server; the wrap arc to p_0's. */
    shares[p[0].srv] += ((double)p[0].pos + (0x1p64 - (double)p[m - 1].pos)) / 0x1p64;
    for (int j = 1; j < m; j++) shares[p[j].srv] += (double)(p[j].pos - p[j - 1].pos) / 0x1p64;
    return max_over_mean(shares, s);
}

static void print_header(const char *title)
{
    printf("\n%s\n\n| S \\ V |", title);
    for (int j = 0; j < NV; j++) printf(" %d |", vnodes[j]);
    printf("\n|---|");
    for (int j = 0; j < NV; j++) printf("---|");
    printf("\n");
}

/* One table of the libps ring: all S servers, or the worst ring of S - 1. */
static int print_ring_table(int less_one)
{
    print_header(less_one ? "worst max/mean of the libps ring after any one server left "
                            "(S - 1 servers remain):"
                          : "max share / mean share of the libps ring (ranks 0..S-1):");
    for (int i = 0; i < NS; i++) {
        printf("| %d |", servers[i]);
        for (int j = 0; j < NV; j++) {
            double b = less_one ? ring_balance_less_one(servers[i], vnodes[j])
                                : ring_balance(servers[i], vnodes[j], -1);
            if (b < 0) return -1;
            printf(" %.3f |", b);
        }
        printf("\n");
    }
    return 0;
}

static int print_random_table(int trials)
{
    struct point *p = malloc(32 * 512 * sizeof(*p));
    psi_rng rng;

    if (!p) return -1;
    psi_rng_seed(&rng, 20140601);
    print_header("mean (worst) max/mean over random rings:");
    for (int i = 0; i < NS; i++) {
        printf("| %d |", servers[i]);
        for (int j = 0; j < NV; j++) {
            double sum = 0, worst = 0;
            for (int t = 0; t < trials; t++) {
                double b = random_balance(&rng, p, servers[i], vnodes[j]);
                sum += b;
                worst = PSI_MAX(worst, b);
            }
            printf(" %.3f (%.3f) |", sum / trials, worst);
        }
        printf("\n");
    }
    free(p);
    return 0;
}

int main(int argc, char **argv)
{
    int trials = argc > 1 ? atoi(argv[1]) : 200;

    if (argc > 2 || trials < 1) {
        fprintf(stderr, "usage: psring [trials >= 1]\n");
        return 2;
    }
    printf("psring: S servers x V virtual points; %d random rings per cell\n", trials);
    if (print_ring_table(0) != 0 || print_ring_table(1) != 0 || print_random_table(trials) != 0) {
        fprintf(stderr, "psring: out of memory\n");
        return 1;
    }
    return 0;
}
