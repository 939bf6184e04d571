/*
 * test_update.c -- unit tests of src/kv/update.c: every update rule against
 * hand-computed values (f32 and f64), FTRL against a straightforward
 * reference implementation over a sequence of gradients, PROX soft
 * thresholding (values inside the threshold become exactly zero), wrapping
 * i64 ADD and ASSIGN, option validation, block layout, the initializers
 * (RANDOM reproducible, in range, different per key and seed) and CUSTOM
 * rules keeping their per-key state across calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "kv/update.h"
#include "ps/ps.h"

/* ---- helpers ---------------------------------------------------------------- */

/* The documented defaults of ps_table_opts, without linking table.c's. */
static ps_table_opts opts_of(ps_update kind, ps_dtype dtype, int width)
{
    ps_table_opts o;
    memset(&o, 0, sizeof(o));
    o.update = kind;
    o.dtype = dtype;
    o.width = width;
    o.lr = 0.1;
    o.beta = 1;
    o.eps = 1e-8;
    return o;
}

static psi_update make(const ps_table_opts *o)
{
    psi_update u;
    assert_int_equal(psi_update_from_opts(&u, o), 0);
    return u;
}

static void near(double got, double want, double tol)
{
    if (!(fabs(got - want) <= tol)) fail_msg("got %.17g, want %.17g (tol %g)", got, want, tol);
}

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static double rng_sym(uint64_t *state) { return (double)(rng_next(state) >> 11) * 0x1p-52 - 1; }

/* ---- simple rules -------------------------------------------------------------- */

static void test_add_assign_sgd(void **state)
{
    ps_table_opts o = opts_of(PS_UPDATE_ADD, PS_F32, 3);
    psi_update u = make(&o);
    float w[3] = {1, 2, 3}, g[3] = {0.5f, -1, 2};
    double wd[3] = {1, 2, 3}, gd[3] = {0.5, -1, 2};
    psi_update_apply(&u, 1, w, g);
    assert_true(w[0] == 1.5f && w[1] == 1.0f && w[2] == 5.0f);
    o.update = PS_UPDATE_ASSIGN;
    u = make(&o);
    psi_update_apply(&u, 1, w, g);
    assert_memory_equal(w, g, sizeof(w));
    o = opts_of(PS_UPDATE_SGD, PS_F64, 3);
    o.lr = 0.25;
    u = make(&o);
    psi_update_apply(&u, 1, wd, gd);
    near(wd[0], 0.875, 1e-15);
    near(wd[1], 2.25, 1e-15);
    near(wd[2], 2.5, 1e-15);
    o.dtype = PS_F32;
    u = make(&o);
    w[0] = 1;
    w[1] = 2;
    w[2] = 3;
    psi_update_apply(&u, 1, w, g);
    assert_float_equal(w[0], 0.875f, 1e-7);
    assert_float_equal(w[2], 2.5f, 1e-7);
}

static void test_adagrad(void **state)
{
    ps_table_opts o = opts_of(PS_UPDATE_ADAGRAD, PS_F64, 1);
    psi_update u;
    double b[2] = {1, 0}, g;
    float bf[2] = {1, 0}, gf;
    o.lr = 0.5;
    u = make(&o);
    g = 2;
    psi_update_apply(&u, 1, b, &g); /* n = 4, w = 1 - 0.5 * 2 / 2 */
    near(b[1], 4, 0);
    near(b[0], 0.5, 1e-8);
    g = -1;
    psi_update_apply(&u, 1, b, &g); /* n = 5, w = 0.5 + 0.5 / sqrt(5) */
    near(b[1], 5, 0);
    near(b[0], 0.5 + 0.5 / sqrt(5.0), 1e-8);
    o.dtype = PS_F32;
    u = make(&o);
    gf = 2;
    psi_update_apply(&u, 1, bf, &gf);
    gf = -1;
    psi_update_apply(&u, 1, bf, &gf);
    near(bf[1], 5, 0);
    near(bf[0], 0.5 + 0.5 / sqrt(5.0), 1e-6);
}

/* ---- FTRL ----------------------------------------------------------------------- */

/* McMahan et al. 2013, Algorithm 1, one coordinate, w computed from (z, n)
 * at "prediction" time rather than kept. */
typedef struct ftrl_ref {
    double z, n;
} ftrl_ref;

static double ftrl_ref_w(const ftrl_ref *r, double a, double b, double l1, double l2)
{
    double sgn = r->z < 0 ? -1 : 1;
    if (fabs(r->z) <= l1) return 0;
    return -(r->z - sgn * l1) / ((b + sqrt(r->n)) / a + l2);
}

static void ftrl_ref_step(ftrl_ref *r, double g, double a, double b, double l1, double l2)
{
    double w = ftrl_ref_w(r, a, b, l1, l2);
    double sigma = (sqrt(r->n + g * g) - sqrt(r->n)) / a;
    r->z += g - sigma * w;
    r->n += g * g;
}

static void test_ftrl_first_step_by_hand(void **state)
{
    ps_table_opts o = opts_of(PS_UPDATE_FTRL, PS_F64, 1);
    double b[3] = {0, 0, 0}, g = 1;
    psi_update u;
    o.lr = 0.1;
    u = make(&o);
    psi_update_apply(&u, 1, b, &g); /* sigma 10, z 1, n 1, w = -1 / ((1 + 1) / 0.1) */
    near(b[1], 1, 1e-15);
    near(b[2], 1, 0);
    near(b[0], -0.05, 1e-15);
    o.l1 = 2; /* |z| <= l1: w is exactly zero */
    u = make(&o);
    memset(b, 0, sizeof(b));
    psi_update_apply(&u, 1, b, &g);
    assert_true(b[0] == 0.0);
}

static void test_ftrl_matches_reference(void **state)
{
    const int width = 4;
    const double a = 0.2, beta = 1, l1 = 0.3, l2 = 0.1;
    ps_table_opts o = opts_of(PS_UPDATE_FTRL, PS_F64, width);
    psi_update u, uf;
    ftrl_ref ref[4] = {{0, 0}};
    double blk[12] = {0}, g[4];
    float blkf[12] = {0}, gf[4];
    uint64_t rng = 99;
    int zeros = 0;
    o.lr = a;
    o.beta = beta;
    o.l1 = l1;
    o.l2 = l2;
    u = make(&o);
    o.dtype = PS_F32;
    uf = make(&o);
    for (int step = 0; step < 300; step++) {
        for (int j = 0; j < width; j++) {
            g[j] = rng_sym(&rng) * (j + 1) * 0.5 + (j == 2 ? 0.3 : 0);
            gf[j] = (float)g[j];
            ftrl_ref_step(&ref[j], g[j], a, beta, l1, l2);
        }
        psi_update_apply(&u, 5, blk, g);
        psi_update_apply(&uf, 5, blkf, gf);
        for (int j = 0; j < width; j++) {
            double w = ftrl_ref_w(&ref[j], a, beta, l1, l2);
            near(blk[j], w, 1e-9);
            near(blk[width + j], ref[j].z, 1e-9 * (1 + fabs(ref[j].z)));
            near(blk[2 * width + j], ref[j].n, 1e-9 * ref[j].n);
            near(blkf[j], w, 2e-3 * (1 + fabs(w)));
            zeros += blk[j] == 0.0;
        }
    }
    assert_true(zeros > 0); /* the L1 region was exercised */
    assert_true(zeros < 300 * width);
}

/* ---- PROX ------------------------------------------------------------------------ */

static void prox_case(const psi_update *u, double w0, double g, double want)
{
    double w = w0;
    float wf = (float)w0, gf = (float)g;
    psi_update u32 = *u;
    psi_update_apply(u, 1, &w, &g);
    if (want == 0)
        assert_true(w == 0.0);
    else
        near(w, want, 1e-12);
    u32.dtype = PS_F32;
    psi_update_apply(&u32, 1, &wf, &gf);
    if (want == 0)
        assert_true(wf == 0.0f);
    else
        near(wf, want, 1e-6);
}

static void test_prox_soft_threshold(void **state)
{
    ps_table_opts o = opts_of(PS_UPDATE_PROX, PS_F64, 1);
    psi_update u;
    o.lr = 0.5;
    o.l1 = 0.25; /* threshold lr * l1 = 0.125 */
    u = make(&o);
    prox_case(&u, 0, 0.1, 0);       /* -0.05: inside */
    prox_case(&u, 0.1, 0, 0);       /* 0.1: inside */
    prox_case(&u, -0.12, 0, 0);     /* inside, negative */
    prox_case(&u, 0.125, 0, 0);     /* exactly on the threshold */
    prox_case(&u, 1, 0, 0.875);     /* shrunk toward zero */
    prox_case(&u, -1, 0, -0.875);
    prox_case(&u, 1, 1, 0.375);     /* 1 - 0.5 = 0.5, minus 0.125 */
    prox_case(&u, 0, -2, 0.875);    /* 0 + 1 = 1, minus 0.125 */
    o.l2 = 1; /* and divided by 1 + lr * l2 = 1.5 */
    u = make(&o);
    prox_case(&u, 1, 0, 0.875 / 1.5);
    prox_case(&u, 0.05, 0, 0);
}

/* ---- i64 ---------------------------------------------------------------------------- */

static void test_i64_add_assign(void **state)
{
    ps_table_opts o = opts_of(PS_UPDATE_ADD, PS_I64, 2);
    psi_update u = make(&o);
    int64_t w[2] = {5, INT64_MAX}, g[2] = {-7, 1};
    psi_update_apply(&u, 1, w, g);
    assert_true(w[0] == -2);
    assert_true(w[1] == INT64_MIN); /* wraps, no UB */
    o.update = PS_UPDATE_ASSIGN;
    u = make(&o);
    g[0] = 123456789012345LL;
    g[1] = -1;
    psi_update_apply(&u, 1, w, g);
    assert_memory_equal(w, g, sizeof(w));
    assert_int_equal(psi_update_value_bytes(&u), 16);
    assert_int_equal(psi_update_block_bytes(&u), 16);
}

/* ---- validation --------------------------------------------------------------------- */

static void dummy_apply(void *arg, uint64_t key, void *val, void *st, const void *push,
                        int width)
{
}

static int from(ps_table_opts o)
{
    psi_update u;
    return psi_update_from_opts(&u, &o);
}

static void test_validation_errors(void **state)
{
    ps_table_opts o = opts_of(PS_UPDATE_ADD, PS_F32, 1), b;
    ps_update_ops no_apply = {8, NULL, NULL}, ok_ops = {0, dummy_apply, NULL};
    ps_update grad[4] = {PS_UPDATE_SGD, PS_UPDATE_ADAGRAD, PS_UPDATE_FTRL, PS_UPDATE_PROX};
    assert_int_equal(from(o), 0);
#define BAD(field, value)                                                   \
    do {                                                                    \
        b = o;                                                              \
        b.field = value;                                                    \
        assert_int_equal(from(b), PS_ERR_INVAL);                            \
    } while (0)
    BAD(width, 0);
    BAD(width, -3);
    BAD(width, PSI_UPDATE_MAX_WIDTH + 1);
    BAD(dtype, (ps_dtype)3);
    BAD(update, (ps_update)42);
    BAD(init, (ps_init)7);
    BAD(l1, -0.1);
    BAD(l2, -1e-9);
    BAD(l1, NAN);
    BAD(lr, INFINITY);
    BAD(init_value, 1e300); /* not a float */
    b = o;
    b.width = PSI_UPDATE_MAX_WIDTH;
    assert_int_equal(from(b), 0);
    b = o;
    b.lr = 0; /* ADD ignores lr */
    assert_int_equal(from(b), 0);
    for (int i = 0; i < 4; i++) {
        o.update = grad[i];
        assert_int_equal(from(o), 0);
        BAD(dtype, PS_I64);
        BAD(lr, 0);
        BAD(lr, -1);
        BAD(lr, NAN);
    }
    o.update = PS_UPDATE_FTRL;
    BAD(beta, -1);
    BAD(beta, 0); /* with l2 = 0 */
    b = o;
    b.beta = 0;
    b.l2 = 0.5;
    assert_int_equal(from(b), 0);
    o.update = PS_UPDATE_ADAGRAD;
    BAD(eps, 0);
    o.update = PS_UPDATE_CUSTOM;
    BAD(custom, NULL);
    BAD(custom, &no_apply);
    o.custom = &ok_ops;
    assert_int_equal(from(o), 0);
    o.dtype = PS_I64;
    assert_int_equal(from(o), 0);
    o = opts_of(PS_UPDATE_ADD, PS_F64, 1);
    o.init = PS_INIT_RANDOM;
    BAD(init_scale, -1);
    o.dtype = PS_I64;
    BAD(init_value, 1e19);
#undef BAD
}

/* ---- layout and initializers ---------------------------------------------------------- */

static void test_block_layout(void **state)
{
    ps_update_ops ops = {5, dummy_apply, NULL};
    ps_table_opts o = opts_of(PS_UPDATE_ADD, PS_F32, 3);
    psi_update u = make(&o);
    assert_int_equal(psi_update_value_bytes(&u), 12);
    assert_int_equal(psi_update_block_bytes(&u), 12);
    o.update = PS_UPDATE_ADAGRAD;
    u = make(&o);
    assert_int_equal(psi_update_block_bytes(&u), 24);
    o = opts_of(PS_UPDATE_FTRL, PS_F64, 2);
    u = make(&o);
    assert_int_equal(psi_update_block_bytes(&u), 48);
    o = opts_of(PS_UPDATE_CUSTOM, PS_F32, 3);
    o.custom = &ops;
    u = make(&o);
    assert_int_equal(psi_update_block_bytes(&u), 24); /* 12 -> 16, + 5 -> 24 */
    ops.state_bytes = 0;
    assert_int_equal(psi_update_block_bytes(&u), 12);
}

static void test_init_const_and_zero_state(void **state)
{
    ps_table_opts o = opts_of(PS_UPDATE_FTRL, PS_F32, 2);
    psi_update u;
    float blk[6];
    int64_t iv[3];
    o.init = PS_INIT_CONST;
    o.init_value = 0.25;
    u = make(&o);
    memset(blk, 0xff, sizeof(blk));
    psi_update_init_block(&u, 77, blk);
    assert_true(blk[0] == 0.25f && blk[1] == 0.25f);
    for (int j = 2; j < 6; j++) assert_true(blk[j] == 0.0f);
    o = opts_of(PS_UPDATE_ADD, PS_I64, 3);
    o.init = PS_INIT_CONST;
    o.init_value = -5;
    u = make(&o);
    psi_update_init_values(&u, 1, iv);
    assert_true(iv[0] == -5 && iv[2] == -5);
    o.init = PS_INIT_ZERO;
    u = make(&o);
    psi_update_init_values(&u, 1, iv);
    assert_true(iv[0] == 0 && iv[1] == 0 && iv[2] == 0);
}

static void test_init_random(void **state)
{
    ps_table_opts o = opts_of(PS_UPDATE_ADD, PS_F64, 16);
    psi_update u, u2, other_seed;
    double a[16], b[16], c[16], sum = 0;
    float f[16];
    o.init = PS_INIT_RANDOM;
    o.init_scale = 0.5;
    o.init_seed = 1234;
    u = make(&o);
    u2 = make(&o); /* another server */
    o.init_seed = 1235;
    other_seed = make(&o);
    psi_update_init_values(&u, 42, a);
    psi_update_init_values(&u2, 42, b);
    assert_memory_equal(a, b, sizeof(a));
    psi_update_init_values(&u, 43, b);
    psi_update_init_values(&other_seed, 42, c);
    for (int j = 0; j < 16; j++) {
        assert_true(a[j] != b[j]);
        assert_true(a[j] != c[j]);
        assert_true(j == 0 || a[j] != a[j - 1]);
    }
    for (uint64_t k = 0; k < 2000; k++) {
        psi_update_init_values(&u, k, a);
        for (int j = 0; j < 16; j++) {
            assert_true(a[j] >= -0.5 && a[j] <= 0.5);
            sum += a[j];
        }
    }
    near(sum / 32000, 0, 0.01);
    o.dtype = PS_F32;
    o.init_seed = 1234;
    u = make(&o);
    psi_update_init_values(&u, 42, f);
    psi_update_init_values(&u2, 42, a);
    for (int j = 0; j < 16; j++) near(f[j], a[j], 1e-7);
}

/* ---- CUSTOM ------------------------------------------------------------------------- */

typedef struct custom_seen {
    int calls;
    uint64_t last_key;
} custom_seen;

/* val[j] = push[j] * (times this key was pushed); state counts pushes. */
static void count_apply(void *arg, uint64_t key, void *val, void *st, const void *push,
                        int width)
{
    custom_seen *seen = arg;
    uint64_t *count = st;
    const double *g = push;
    double *v = val;
    assert_int_equal(width, 2);
    seen->calls++;
    seen->last_key = key;
    ++*count;
    for (int j = 0; j < width; j++) v[j] = g[j] * (double)*count;
}

static void test_custom_state_persists(void **state)
{
    custom_seen seen = {0, 0};
    ps_update_ops ops = {sizeof(uint64_t), count_apply, &seen};
    ps_table_opts o = opts_of(PS_UPDATE_CUSTOM, PS_F64, 2);
    psi_update u;
    double blk[2][3], g[4] = {1, 2, 10, 20};
    void *blocks[3] = {blk[0], NULL, blk[1]};
    uint64_t keys[3] = {7, 8, 9};
    o.custom = &ops;
    u = make(&o);
    assert_int_equal(psi_update_block_bytes(&u), 24);
    psi_update_init_block(&u, 7, blk[0]);
    psi_update_init_block(&u, 9, blk[1]);
    for (int i = 1; i <= 3; i++) {
        psi_update_apply(&u, 7, blk[0], g);
        assert_int_equal(seen.last_key, 7);
        near(blk[0][1], 2.0 * i, 0);
    }
    psi_update_apply_batch(&u, keys, blocks, (double[6]){1, 1, 5, 5, 3, 4}, 3);
    assert_int_equal(seen.calls, 5); /* the NULL block is skipped */
    assert_int_equal(seen.last_key, 9);
    near(blk[0][0], 4, 0);
    near(blk[1][1], 4, 0);
}

/* ---- batch == single ------------------------------------------------------------------ */

static void test_batch_equals_single(void **state)
{
    ps_update rules[6] = {PS_UPDATE_ADD, PS_UPDATE_ASSIGN, PS_UPDATE_SGD,
                          PS_UPDATE_ADAGRAD, PS_UPDATE_FTRL, PS_UPDATE_PROX};
    uint64_t rng = 5, keys[64];
    for (int r = 0; r < 6; r++) {
        ps_table_opts o = opts_of(rules[r], PS_F32, 3);
        psi_update u;
        float a[64][9], b[64][9], g[64 * 3];
        void *blocks[64];
        o.l1 = 0.01;
        u = make(&o);
        for (int i = 0; i < 64; i++) {
            keys[i] = (uint64_t)i;
            for (int j = 0; j < 9; j++) a[i][j] = b[i][j] = (float)fabs(rng_sym(&rng));
            for (int j = 0; j < 3; j++) g[i * 3 + j] = (float)rng_sym(&rng);
            blocks[i] = i == 13 ? NULL : a[i];
        }
        psi_update_apply_batch(&u, keys, blocks, g, 64);
        for (int i = 0; i < 64; i++)
            if (i != 13) psi_update_apply(&u, keys[i], b[i], g + i * 3);
        assert_memory_equal(a, b, sizeof(a));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_assign_sgd),
        cmocka_unit_test(test_adagrad),
        cmocka_unit_test(test_ftrl_first_step_by_hand),
        cmocka_unit_test(test_ftrl_matches_reference),
        cmocka_unit_test(test_prox_soft_threshold),
        cmocka_unit_test(test_i64_add_assign),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_block_layout),
        cmocka_unit_test(test_init_const_and_zero_state),
        cmocka_unit_test(test_init_random),
        cmocka_unit_test(test_custom_state_persists),
        cmocka_unit_test(test_batch_equals_single),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
