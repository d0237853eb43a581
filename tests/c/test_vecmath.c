/*
 * test_vecmath.c: accuracy, special values, tails and FP flags of csrc/vecmath.h, for the
 * target this file is compiled for (the flags pick it: none = SSE2 baseline, -mavx2 -mfma,
 * -mavx512f -mavx512bw -mavx512dq -mavx512vl, or an aarch64 compiler for NEON).
 *
 *   cc -O2 -std=c11 -ffp-contract=off [target flags] -Icsrc tests/c/test_vecmath.c -lm
 *   ./a.out [--f32-log2 N] [--f64 N] [--dense R] [--bench] [--seed S]
 *
 * --f32-log2 N  float32 functions: 2^N bit patterns spread evenly over all 2^32 (N = 32:
 *               every float; ~10-20 s per function on one core, the reference is libm in
 *               double) plus R patterns either side of each interesting point
 *               (thresholds, 0, 1, -1, binade edges, subnormal edges).  Default 22.
 * --f64 N       float64 functions: N inputs (a quarter random bit patterns, the rest
 *               log-uniform magnitudes and uniform over the interesting range) plus R
 *               around each interesting point; reference in long double (x87 80-bit on
 *               x86, binary128 on aarch64 -- slow, use small N there).  Default 400000.
 * --dense R     neighbourhood size for the interesting points.  Default 4096.
 * --bench       also print a throughput microbenchmark (ns per element, in L1).
 *
 * Errors are measured in ulps of the exact result's binade (the ulp of a subnormal is the
 * smallest subnormal; results beyond the largest finite value count as 2^128 / 2^1024).
 * NaN, infinities and zeros (with their sign) must match exactly.  Exit status 1 if any
 * bound or exact value fails.
 */
#define _GNU_SOURCE
#include <fenv.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vecmath.h"

static int g_failures = 0;

#define FAIL(...)                                                                        \
    do {                                                                                 \
        if (g_failures++ < 40) {                                                         \
            printf("FAIL: ");                                                            \
            printf(__VA_ARGS__);                                                         \
            printf("\n");                                                                \
        }                                                                                \
    } while (0)

/* ------------------------------------------------------------------ bits and rng */

static uint32_t bits32(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static float from32(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static uint64_t bits64(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
static double from64(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }

static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd64(void) /* splitmix64 */
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double rnd_unit(void) { return (double)(rnd64() >> 11) * 0x1p-53; }

/* ------------------------------------------------------- the functions under test */

#define DEF_APPLY(NAME, FN, T, S)                                                        \
    static __attribute__((noinline)) void NAME(const T *x, T *y, int64_t n)              \
    {                                                                                    \
        int64_t i = 0;                                                                   \
        for (; i + fl_lanes##S <= n; i += fl_lanes##S)                                   \
            fl_store##S(y + i, FN(fl_load##S(x + i)));                                   \
        if (i < n)                                                                       \
            fl_store_partial##S(y + i, FN(fl_load_partial##S(x + i, n - i, (T)1)), n - i); \
    }

DEF_APPLY(apply_exp_f32, fl_exp_u1_f32, float, _f32)
DEF_APPLY(apply_log_f32, fl_log_u1_f32, float, _f32)
DEF_APPLY(apply_log1p_f32, fl_log1p_u1_f32, float, _f32)
DEF_APPLY(apply_softplus_f32, fl_softplus_u1_f32, float, _f32)
DEF_APPLY(apply_sigmoid_f32, fl_sigmoid_u1_f32, float, _f32)
DEF_APPLY(apply_exp_f64, fl_exp_u1_f64, double, _f64)
DEF_APPLY(apply_log_f64, fl_log_u1_f64, double, _f64)
DEF_APPLY(apply_log1p_f64, fl_log1p_u1_f64, double, _f64)
DEF_APPLY(apply_softplus_f64, fl_softplus_u1_f64, double, _f64)
DEF_APPLY(apply_sigmoid_f64, fl_sigmoid_u1_f64, double, _f64)

/* references: double for float32 (error ~2^-52, i.e. ~2^-29 ulp of a float), long double
 * for float64 */
static double ref_exp_d(double x) { return exp(x); }
static double ref_log_d(double x) { return log(x); }
static double ref_log1p_d(double x) { return log1p(x); }
static double ref_softplus_d(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}
static double ref_sigmoid_d(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}
static long double ref_exp_l(long double x) { return expl(x); }
static long double ref_log_l(long double x) { return logl(x); }
static long double ref_log1p_l(long double x) { return log1pl(x); }
static long double ref_softplus_l(long double x)
{
    return x > 0 ? x + log1pl(expl(-x)) : log1pl(expl(x));
}
static long double ref_sigmoid_l(long double x)
{
    if (x >= 0) return 1.0L / (1.0L + expl(-x));
    long double e = expl(x);
    return e / (1.0L + e);
}

typedef struct {
    const char *name;
    void (*apply32)(const float *, float *, int64_t);
    void (*apply64)(const double *, double *, int64_t);
    double (*ref32)(double);
    long double (*ref64)(long double);
    double bound32, bound64; /* the _uN in the name */
    double centers32[16];    /* interesting points (both signs are swept); 0 ends */
    double centers64[16];
    double lo, hi;           /* uniform range for float64 sampling */
    int emin, emax;          /* log-uniform magnitude range for float64 sampling */
} fn_t;

/* centers: the value 0 is always swept; list ends at the first 0 after index 0 */
static const fn_t FNS[] = {
    {"exp", apply_exp_f32, apply_exp_f64, ref_exp_d, ref_exp_l, 1.0, 1.0,
     {0, 87.0, 88.72283935546875, 87.33654022216797, 103.27892303466797, 103.97207641601562,
      150.0, 0.34657359, 1.0, 1e-7, 0},
     {0, 708.0, 709.782712893384, 708.3964185322641, 744.4400719213812, 745.1332191019411,
      1100.0, 0.34657359027997264, 1.0, 1e-16, 0},
     -750, 712, -80, 11},
    {"log", apply_log_f32, apply_log_f64, ref_log_d, ref_log_l, 1.0, 1.0,
     {0, 1.0, 0.75, 1.5, 0x1p-126, 0x1p-149, 0x1.fffffep127, 2.0, 0.5, 0},
     {0, 1.0, 0.75, 1.5, 0x1p-1022, 0x1p-1074, 0x1.fffffffffffffp1023, 2.0, 0.5, 0},
     0, 4, -1074, 1023},
    {"log1p", apply_log1p_f32, apply_log1p_f64, ref_log1p_d, ref_log1p_l, 1.0, 1.0,
     {0, 1.0, 0.5, 0.25, 0x1p24, 0x1p25, 0x1.fffffep127, 0x1p-24, 2.0, 0},
     {0, 1.0, 0.5, 0.25, 0x1p53, 0x1p54, 0x1.fffffffffffffp1023, 0x1p-53, 2.0, 0},
     -1, 4, -1074, 1023},
    {"softplus", apply_softplus_f32, apply_softplus_f64, ref_softplus_d, ref_softplus_l,
     1.0, 1.0,
     {0, 1.0, 16.0, 17.0, 87.0, 88.72283935546875, 103.97207641601562, 1e8, 0},
     {0, 1.0, 36.0, 37.0, 708.0, 709.782712893384, 745.1332191019411, 1e17, 0},
     -760, 760, -80, 11},
    {"sigmoid", apply_sigmoid_f32, apply_sigmoid_f64, ref_sigmoid_d, ref_sigmoid_l,
     1.0, 1.0,
     {0, 1.0, 16.0, 17.0, 87.0, 88.72283935546875, 103.97207641601562, 1e8, 0},
     {0, 1.0, 36.0, 37.0, 708.0, 709.782712893384, 745.1332191019411, 1e17, 0},
     -760, 760, -80, 11},
};
#define NFNS ((int)(sizeof FNS / sizeof FNS[0]))

/* ------------------------------------------------------------- error accounting */

typedef struct {
    double max_ulp;
    double worst_x;
    double worst_y;
    long double worst_ref;
    uint64_t n;
    int bad; /* exact-value mismatches */
} stats_t;

static double ulp32(double r) /* ulp of a float in r's binade (r finite, nonzero) */
{
    int e = (int)((bits64(r) >> 52) & 0x7ff) - 1023; /* r is far from double subnormals */
    if (e < -126) e = -126;
    if (e > 127) e = 127;
    return from64((uint64_t)(e - 23 + 1023) << 52);
}

/* |y - ref| in ulps of ref's float binade (0 for y == ref == 0) */
static double ulp_err32(float y, double ref)
{
    if (ref == 0) return y == 0 ? 0 : 1e9;
    return fabs((double)y - ref) / ulp32(ref);
}

static void check32(stats_t *st, const char *name, float x, float y, double ref)
{
    st->n++;
    if (isnan(ref) || isnan(y) || isinf(ref) || ref == 0) {
        int ok = (isnan(ref) && isnan(y)) ||
                 (!isnan(ref) && !isnan(y) && y == ref && !signbit(y) == !signbit(ref));
        if (!ok && st->bad++ < 5)
            FAIL("%s_f32(%a) = %a, expected %a", name, (double)x, (double)y, ref);
        else if (!ok) g_failures++;
        return;
    }
    double r = fabs(ref) >= 0x1p128 ? copysign(0x1p128, ref) : ref;
    double yd = isinf(y) ? copysign(0x1p128, (double)y) : (double)y;
    double e = fabs(yd - r) / ulp32(r);
    if (e > st->max_ulp) {
        st->max_ulp = e;
        st->worst_x = x;
        st->worst_y = y;
        st->worst_ref = ref;
    }
}

static long double ulp64(long double r)
{
    int e = ilogbl(r);
    if (e < -1022) e = -1022;
    if (e > 1023) e = 1023;
    return ldexpl(1.0L, e - 52);
}

static void check64(stats_t *st, const char *name, double x, double y, long double ref)
{
    st->n++;
    if (isnan(ref) || isnan(y) || isinf(ref) || ref == 0) {
        int ok = (isnan(ref) && isnan(y)) ||
                 (!isnan(ref) && !isnan(y) && y == ref && !signbit(y) == !signbit(ref));
        if (!ok && st->bad++ < 5)
            FAIL("%s_f64(%a) = %a, expected %La", name, x, y, ref);
        else if (!ok) g_failures++;
        return;
    }
    long double r = fabsl(ref) >= 0x1p1024L ? copysignl(0x1p1024L, ref) : ref;
    long double yd = isinf(y) ? copysignl(0x1p1024L, (long double)y) : (long double)y;
    double e = (double)(fabsl(yd - r) / ulp64(r));
    if (e > st->max_ulp) {
        st->max_ulp = e;
        st->worst_x = x;
        st->worst_y = y;
        st->worst_ref = ref;
    }
}

/* ---------------------------------------------------------------- float32 sweeps */

#define BLK 4096

static void run_block32(const fn_t *f, stats_t *st, const float *x, int64_t n)
{
    float y[BLK];
    f->apply32(x, y, n);
    for (int64_t i = 0; i < n; i++) check32(st, f->name, x[i], y[i], f->ref32((double)x[i]));
}

/* all bit patterns in [b0, b1] (inclusive, same sign half) */
static void sweep_range32(const fn_t *f, stats_t *st, uint32_t b0, uint32_t b1)
{
    float x[BLK];
    int64_t n = 0;
    for (uint64_t b = b0; b <= b1; b++) {
        x[n++] = from32((uint32_t)b);
        if (n == BLK) { run_block32(f, st, x, n); n = 0; }
    }
    if (n) run_block32(f, st, x, n);
}

static void test_f32(const fn_t *f, int log2n, uint32_t dense)
{
    stats_t st = {0};
    /* 2^log2n patterns evenly over the 2^32: b = k * stride (+ k, so low bits vary) */
    float x[BLK];
    int64_t n = 0;
    uint64_t count = 1ULL << log2n, shift = 32 - log2n;
    for (uint64_t k = 0; k < count; k++) {
        uint32_t b = (uint32_t)((k << shift) + (shift ? (k * 2654435761ULL) & ((1ULL << shift) - 1) : 0));
        x[n++] = from32(b);
        if (n == BLK) { run_block32(f, &st, x, n); n = 0; }
    }
    if (n) run_block32(f, &st, x, n);
    /* neighbourhoods of the interesting points, both signs */
    for (int c = 0; c < 16 && (c == 0 || f->centers32[c] != 0); c++) {
        uint32_t b = bits32((float)f->centers32[c]);
        uint32_t lo = b > dense ? b - dense : 0;
        uint32_t hi = b + dense < 0x7f800000u ? b + dense : 0x7f800000u;
        sweep_range32(f, &st, lo, hi);
        sweep_range32(f, &st, lo | 0x80000000u, hi | 0x80000000u);
    }
    /* the specials */
    static const uint32_t sp[] = {0, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                  0xffc00000u, 0x7f800001u, 0x7fffffffu, 0xffffffffu, 1,
                                  0x80000001u, 0x007fffffu, 0x00800000u, 0x3f800000u,
                                  0xbf800000u, 0x7f7fffffu, 0xff7fffffu};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) x[i] = from32(sp[i]);
    run_block32(f, &st, x, (int64_t)(sizeof sp / sizeof sp[0]));

    int ok = st.max_ulp <= f->bound32 && st.bad == 0;
    printf("  %-9s f32  max %.4f ulp (bound %.0f) at x=%a (got %a, exact %.9g)  n=%llu%s\n",
           f->name, st.max_ulp, f->bound32, st.worst_x, st.worst_y, (double)st.worst_ref,
           (unsigned long long)st.n, ok ? "" : "  <-- FAIL");
    if (st.max_ulp > f->bound32) g_failures++;
}

/* ---------------------------------------------------------------- float64 sweeps */

static void run_block64(const fn_t *f, stats_t *st, const double *x, int64_t n)
{
    double y[BLK];
    f->apply64(x, y, n);
    for (int64_t i = 0; i < n; i++) check64(st, f->name, x[i], y[i], f->ref64((long double)x[i]));
}

static void test_f64(const fn_t *f, int64_t count, uint64_t dense)
{
    stats_t st = {0};
    double x[BLK];
    int64_t n = 0;
#define PUSH(v)                                                                          \
    do {                                                                                 \
        x[n++] = (v);                                                                    \
        if (n == BLK) { run_block64(f, &st, x, n); n = 0; }                              \
    } while (0)
    for (int64_t k = 0; k < count; k++) {
        double v;
        switch (k & 3) {
        case 0: /* any bit pattern */
            v = from64(rnd64());
            break;
        case 1: /* uniform over the interesting range */
            v = f->lo + (f->hi - f->lo) * rnd_unit();
            break;
        default: { /* log-uniform magnitude, random sign (non-negative for log) */
            int e = f->emin + (int)(rnd64() % (uint64_t)(f->emax - f->emin + 1));
            v = ldexp(1.0 + rnd_unit(), e);
            if ((rnd64() & 1) && f->lo < 0) v = -v;
            if (f->lo == -1 && v < 0) v = -ldexp(1.0 + rnd_unit(), -(int)(rnd64() % 60)) / 2;
            break;
        }
        }
        PUSH(v);
    }
    for (int c = 0; c < 16 && (c == 0 || f->centers64[c] != 0); c++) {
        uint64_t b = bits64(f->centers64[c]);
        uint64_t lo = b > dense ? b - dense : 0;
        uint64_t hi = b + dense < 0x7ff0000000000000ULL ? b + dense : 0x7ff0000000000000ULL;
        for (uint64_t u = lo; u <= hi; u++) {
            PUSH(from64(u));
            PUSH(from64(u | 0x8000000000000000ULL));
        }
    }
    /* near -1 from above, for log1p */
    for (uint64_t u = 0; u < dense; u++) PUSH(-1.0 + ldexp((double)(u + 1), -53));
    static const uint64_t sp[] = {0, 0x8000000000000000ULL, 0x7ff0000000000000ULL,
                                  0xfff0000000000000ULL, 0x7ff8000000000000ULL,
                                  0xfff8000000000000ULL, 0x7ff0000000000001ULL, 1,
                                  0x8000000000000001ULL, 0x000fffffffffffffULL,
                                  0x0010000000000000ULL, 0x3ff0000000000000ULL,
                                  0xbff0000000000000ULL, 0x7fefffffffffffffULL,
                                  0xffefffffffffffffULL};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) PUSH(from64(sp[i]));
    if (n) run_block64(f, &st, x, n);
#undef PUSH
    int ok = st.max_ulp <= f->bound64 && st.bad == 0;
    printf("  %-9s f64  max %.4f ulp (bound %.0f) at x=%a (got %a, exact %.17Lg)  n=%llu%s\n",
           f->name, st.max_ulp, f->bound64, st.worst_x, st.worst_y, st.worst_ref,
           (unsigned long long)st.n, ok ? "" : "  <-- FAIL");
    if (st.max_ulp > f->bound64) g_failures++;
}

/* ------------------------------------------------------------- exact special values */

#define NAN32 from32(0x7fc00000u)
#define NAN64 from64(0x7ff8000000000000ULL)

static int same32(float a, float b)
{
    return (isnan(a) && isnan(b)) || bits32(a) == bits32(b);
}
static int same64(double a, double b)
{
    return (isnan(a) && isnan(b)) || bits64(a) == bits64(b);
}

static void special32(const char *name, void (*ap)(const float *, float *, int64_t),
                      float x, float want)
{
    float y;
    ap(&x, &y, 1);
    if (!same32(y, want)) FAIL("special %s_f32(%a) = %a, want %a", name, x, y, want);
}
static void special64(const char *name, void (*ap)(const double *, double *, int64_t),
                      double x, double want)
{
    double y;
    ap(&x, &y, 1);
    if (!same64(y, want)) FAIL("special %s_f64(%a) = %a, want %a", name, x, y, want);
}

static void test_specials(void)
{
    const float inf = INFINITY;
    /* exp */
    special32("exp", apply_exp_f32, 0.0f, 1.0f);
    special32("exp", apply_exp_f32, -0.0f, 1.0f);
    special32("exp", apply_exp_f32, -inf, 0.0f);
    special32("exp", apply_exp_f32, inf, inf);
    special32("exp", apply_exp_f32, NAN32, NAN32);
    special32("exp", apply_exp_f32, 89.0f, inf);
    special32("exp", apply_exp_f32, FLT_MAX, inf);
    special32("exp", apply_exp_f32, -FLT_MAX, 0.0f);
    special32("exp", apply_exp_f32, -104.0f, 0.0f);
    special32("exp", apply_exp_f32, 0x1p-149f, 1.0f);
    special32("exp", apply_exp_f32, -0x1p-149f, 1.0f);
    special32("exp", apply_exp_f32, -103.5f, 0x1p-149f); /* e^-103.5 = 1.6 * 2^-149 */
    special64("exp", apply_exp_f64, 0.0, 1.0);
    special64("exp", apply_exp_f64, -0.0, 1.0);
    special64("exp", apply_exp_f64, -INFINITY, 0.0);
    special64("exp", apply_exp_f64, INFINITY, INFINITY);
    special64("exp", apply_exp_f64, NAN64, NAN64);
    special64("exp", apply_exp_f64, 710.0, INFINITY);
    special64("exp", apply_exp_f64, DBL_MAX, INFINITY);
    special64("exp", apply_exp_f64, -DBL_MAX, 0.0);
    special64("exp", apply_exp_f64, -746.0, 0.0);
    special64("exp", apply_exp_f64, 0x1p-1074, 1.0);
    special64("exp", apply_exp_f64, -744.5, 0x1p-1074); /* 1.4 * 2^-1074 */
    /* log */
    special32("log", apply_log_f32, 0.0f, -inf);
    special32("log", apply_log_f32, -0.0f, -inf);
    special32("log", apply_log_f32, 1.0f, 0.0f);
    special32("log", apply_log_f32, -1.0f, NAN32);
    special32("log", apply_log_f32, -0x1p-149f, NAN32);
    special32("log", apply_log_f32, -inf, NAN32);
    special32("log", apply_log_f32, inf, inf);
    special32("log", apply_log_f32, NAN32, NAN32);
    special64("log", apply_log_f64, 0.0, -INFINITY);
    special64("log", apply_log_f64, -0.0, -INFINITY);
    special64("log", apply_log_f64, 1.0, 0.0);
    special64("log", apply_log_f64, -1.0, NAN64);
    special64("log", apply_log_f64, -0x1p-1074, NAN64);
    special64("log", apply_log_f64, -INFINITY, NAN64);
    special64("log", apply_log_f64, INFINITY, INFINITY);
    special64("log", apply_log_f64, NAN64, NAN64);
    /* log1p */
    special32("log1p", apply_log1p_f32, 0.0f, 0.0f);
    special32("log1p", apply_log1p_f32, -0.0f, -0.0f);
    special32("log1p", apply_log1p_f32, -1.0f, -inf);
    special32("log1p", apply_log1p_f32, -1.0000001f, NAN32);
    special32("log1p", apply_log1p_f32, -inf, NAN32);
    special32("log1p", apply_log1p_f32, inf, inf);
    special32("log1p", apply_log1p_f32, NAN32, NAN32);
    special64("log1p", apply_log1p_f64, 0.0, 0.0);
    special64("log1p", apply_log1p_f64, -0.0, -0.0);
    special64("log1p", apply_log1p_f64, -1.0, -INFINITY);
    special64("log1p", apply_log1p_f64, -1.0000000000000002, NAN64);
    special64("log1p", apply_log1p_f64, -INFINITY, NAN64);
    special64("log1p", apply_log1p_f64, INFINITY, INFINITY);
    special64("log1p", apply_log1p_f64, NAN64, NAN64);
    /* log1p(tiny) = tiny: every |x| < 2^-24 (f32; there the rounded result is x) ... */
    {
        static float xs[BLK], ys[BLK];
        int64_t n = 0;
        for (uint32_t b = 1; b < 0x33800000u; b += 997) {
            xs[n++] = from32(b);
            xs[n++] = -from32(b);
            if (n == BLK) {
                apply_log1p_f32(xs, ys, n);
                for (int64_t i = 0; i < n; i++)
                    if (ys[i] != xs[i]) FAIL("log1p_f32(%a) = %a, not x", xs[i], ys[i]);
                n = 0;
            }
        }
    }
    /* ... and |x| < 2^-53 (f64) */
    for (int i = 0; i < 20000; i++) {
        double x = ldexp(1.0 + rnd_unit(), -54 - (int)(rnd64() % 1020)), y;
        if (i & 1) x = -x;
        apply_log1p_f64(&x, &y, 1);
        if (y != x) FAIL("log1p_f64(%a) = %a, not x", x, y);
    }
    /* softplus, sigmoid */
    special32("softplus", apply_softplus_f32, -inf, 0.0f);
    special32("softplus", apply_softplus_f32, inf, inf);
    special32("softplus", apply_softplus_f32, NAN32, NAN32);
    special32("softplus", apply_softplus_f32, -200.0f, 0.0f);
    special32("softplus", apply_softplus_f32, 1e30f, 1e30f);
    special32("sigmoid", apply_sigmoid_f32, -inf, 0.0f);
    special32("sigmoid", apply_sigmoid_f32, inf, 1.0f);
    special32("sigmoid", apply_sigmoid_f32, NAN32, NAN32);
    special32("sigmoid", apply_sigmoid_f32, 0.0f, 0.5f);
    special32("sigmoid", apply_sigmoid_f32, -0.0f, 0.5f);
    special32("sigmoid", apply_sigmoid_f32, 200.0f, 1.0f);
    special64("softplus", apply_softplus_f64, -INFINITY, 0.0);
    special64("softplus", apply_softplus_f64, INFINITY, INFINITY);
    special64("softplus", apply_softplus_f64, NAN64, NAN64);
    special64("softplus", apply_softplus_f64, -800.0, 0.0);
    special64("softplus", apply_softplus_f64, 1e300, 1e300);
    special64("sigmoid", apply_sigmoid_f64, -INFINITY, 0.0);
    special64("sigmoid", apply_sigmoid_f64, INFINITY, 1.0);
    special64("sigmoid", apply_sigmoid_f64, NAN64, NAN64);
    special64("sigmoid", apply_sigmoid_f64, 0.0, 0.5);
    special64("sigmoid", apply_sigmoid_f64, -0.0, 0.5);
    special64("sigmoid", apply_sigmoid_f64, 800.0, 1.0);
}

/* A lane's result must not depend on its neighbours: the fast body and the slow path
 * (taken when any lane is special) give the same bits for ordinary lanes. */
static void test_lane_independence(void)
{
    static const float sp32[] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, -1.0f, -2.0f,
                                 0x1p-149f, 1e30f, -1e30f, 100.0f, -100.0f};
    static const double sp64[] = {INFINITY, -INFINITY, NAN, 0.0, -0.0, -1.0, -2.0,
                                  0x1p-1074, 1e300, -1e300, 1000.0, -1000.0};
    for (int fi = 0; fi < NFNS; fi++) {
        const fn_t *f = &FNS[fi];
        for (int rep = 0; rep < 200; rep++) {
            float x[64], base[64], y[64], one[1], yone[1];
            double xd[64], based[64], yd[64], oned[1], yoned[1];
            for (int i = 0; i < fl_lanes_f32; i++) x[i] = (float)(rnd_unit() * 4 + 0.01);
            for (int i = 0; i < fl_lanes_f64; i++) xd[i] = rnd_unit() * 4 + 0.01;
            f->apply32(x, base, fl_lanes_f32);
            f->apply64(xd, based, fl_lanes_f64);
            int lane = rep % fl_lanes_f32, s = (rep / fl_lanes_f32) % 12;
            float save = x[lane];
            x[lane] = sp32[s];
            f->apply32(x, y, fl_lanes_f32);
            one[0] = sp32[s];
            f->apply32(one, yone, 1);
            for (int i = 0; i < fl_lanes_f32; i++) {
                float want = i == lane ? yone[0] : base[i];
                if (!same32(y[i], want))
                    FAIL("%s_f32 lane %d with %a in lane %d: %a != %a", f->name, i, sp32[s],
                         lane, y[i], want);
            }
            x[lane] = save;
            lane = rep % fl_lanes_f64;
            xd[lane] = sp64[s];
            f->apply64(xd, yd, fl_lanes_f64);
            oned[0] = sp64[s];
            f->apply64(oned, yoned, 1);
            for (int i = 0; i < fl_lanes_f64; i++) {
                double want = i == lane ? yoned[0] : based[i];
                if (!same64(yd[i], want))
                    FAIL("%s_f64 lane %d with %a in lane %d: %a != %a", f->name, i, sp64[s],
                         lane, yd[i], want);
            }
        }
    }
}

/* fl_softplus_sigmoid_u1: the same bits as fl_softplus_u1 and fl_sigmoid_u1 */
static __attribute__((noinline)) void apply_pair_f32(const float *x, float *sp, float *sg,
                                                     int64_t n)
{
    int64_t i = 0;
    for (; i + fl_lanes_f32 <= n; i += fl_lanes_f32) {
        fl_v_f32 g;
        fl_store_f32(sp + i, fl_softplus_sigmoid_u1_f32(fl_load_f32(x + i), &g));
        fl_store_f32(sg + i, g);
    }
    if (i < n) {
        fl_v_f32 g;
        fl_store_partial_f32(sp + i, fl_softplus_sigmoid_u1_f32(
                                 fl_load_partial_f32(x + i, n - i, 0.0f), &g), n - i);
        fl_store_partial_f32(sg + i, g, n - i);
    }
}
static __attribute__((noinline)) void apply_pair_f64(const double *x, double *sp,
                                                     double *sg, int64_t n)
{
    int64_t i = 0;
    for (; i + fl_lanes_f64 <= n; i += fl_lanes_f64) {
        fl_v_f64 g;
        fl_store_f64(sp + i, fl_softplus_sigmoid_u1_f64(fl_load_f64(x + i), &g));
        fl_store_f64(sg + i, g);
    }
    if (i < n) {
        fl_v_f64 g;
        fl_store_partial_f64(sp + i, fl_softplus_sigmoid_u1_f64(
                                 fl_load_partial_f64(x + i, n - i, 0.0), &g), n - i);
        fl_store_partial_f64(sg + i, g, n - i);
    }
}

/* the two-stage form, blocked: stage 1 over a block of 256 elements into scratch, then
 * stage 2 over the block */
#define TWOSTAGE(T, S)                                                                   \
    static __attribute__((noinline)) void apply_twostage##S(const T *x, T *sp, T *sg,    \
                                                            int64_t n)                   \
    {                                                                                    \
        enum { L = fl_lanes##S, NV = 256 / L };                                          \
        fl_v##S hi[NV], lo[NV];                                                          \
        for (int64_t b = 0; b < n; b += NV * L) {                                        \
            int64_t m = n - b < NV * L ? n - b : NV * L, nv = (m + L - 1) / L;           \
            for (int64_t v = 0; v < nv; v++)                                             \
                hi[v] = fl_exp_negabs##S(LOAD##S(x + b + v * L, m - v * L), &lo[v]);     \
            for (int64_t v = 0; v < nv; v++) {                                           \
                fl_v##S xv = LOAD##S(x + b + v * L, m - v * L);                          \
                fl_v##S a = fl_softplus_from_exp_u1##S(xv, hi[v], lo[v]);                \
                fl_v##S g = fl_sigmoid_from_exp_u1##S(xv, hi[v], lo[v]);                 \
                if (m - v * L >= L) {                                                    \
                    fl_store##S(sp + b + v * L, a);                                      \
                    fl_store##S(sg + b + v * L, g);                                      \
                } else {                                                                 \
                    fl_store_partial##S(sp + b + v * L, a, m - v * L);                   \
                    fl_store_partial##S(sg + b + v * L, g, m - v * L);                   \
                }                                                                        \
            }                                                                            \
        }                                                                                \
    }
#define LOAD_f32(p, k) ((k) >= fl_lanes_f32 ? fl_load_f32(p) : fl_load_partial_f32(p, k, 0))
#define LOAD_f64(p, k) ((k) >= fl_lanes_f64 ? fl_load_f64(p) : fl_load_partial_f64(p, k, 0))
TWOSTAGE(float, _f32)
TWOSTAGE(double, _f64)

static void test_pair(int log2n)
{
    static float x[BLK], a[BLK], b[BLK], c[BLK], d[BLK];
    static double xd[BLK], ad[BLK], bd[BLK], cd[BLK], dd[BLK];
    uint64_t count = 1ULL << (log2n < 24 ? (log2n < 15 ? 15 : log2n) : 24);
    int bad = 0;
    for (uint64_t k = 0; k < count; k += BLK) {
        for (int i = 0; i < BLK; i++) {
            /* alternate blocks: any bit pattern / the range where the fast body runs */
            x[i] = (k / BLK) % 2 ? from32((uint32_t)rnd64()) : (float)(-100 + 200 * rnd_unit());
            xd[i] = (k / BLK) % 2 ? from64(rnd64()) : -800 + 1600 * rnd_unit();
        }
        apply_softplus_f32(x, c, BLK);
        apply_sigmoid_f32(x, d, BLK);
        apply_softplus_f64(xd, cd, BLK);
        apply_sigmoid_f64(xd, dd, BLK);
        if ((k / BLK) % 3 == 2) {
            apply_twostage_f32(x, a, b, BLK);
            apply_twostage_f64(xd, ad, bd, BLK);
        } else {
            apply_pair_f32(x, a, b, BLK);
            apply_pair_f64(xd, ad, bd, BLK);
        }
        for (int i = 0; i < BLK; i++) {
            if ((!same32(a[i], c[i]) || !same32(b[i], d[i])) && bad++ < 5)
                FAIL("softplus_sigmoid_f32(%a) = %a, %a; separately %a, %a", x[i], a[i],
                     b[i], c[i], d[i]);
            if ((!same64(ad[i], cd[i]) || !same64(bd[i], dd[i])) && bad++ < 5)
                FAIL("softplus_sigmoid_f64(%a) = %a, %a; separately %a, %a", xd[i], ad[i],
                     bd[i], cd[i], dd[i]);
        }
    }
    printf("  softplus_sigmoid and the two-stage form = separate calls, bitwise: %s\n",
           bad ? "NO" : "yes");
}

/* fl_logistic: e, L, r the same bits as exp(-|x|), softplus(-|x|), sigmoid(|x|); er within
 * 2 ulp of sigmoid(-|x|); every lane the same bits as that element alone (one-lane
 * partial load), so no lane depends on its neighbours (slow-path vectors included). */
#define LOGISTIC(T, S, SAME, ULPS)                                                       \
    static int check_logistic##S(const T *x, int64_t n)                                 \
    {                                                                                    \
        enum { L = fl_lanes##S };                                                        \
        int bad = 0;                                                                     \
        for (int64_t b = 0; b + L <= n; b += L) {                                        \
            fl_v##S xv = fl_load##S(x + b), lv, rv, erv;                                 \
            fl_v##S ev = fl_logistic##S(xv, &lv, &rv, &erv);                             \
            fl_v##S ax = fl_abs##S(xv);                                                  \
            fl_v##S e2 = fl_exp_u1##S(-ax), l2 = fl_softplus_u1##S(-ax);                 \
            fl_v##S r2 = fl_sigmoid_u1##S(ax), er2 = fl_sigmoid_u1##S(-ax);              \
            for (int i = 0; i < L; i++) {                                                \
                fl_v##S l1, r1, er1;                                                     \
                fl_v##S e1 = fl_logistic##S(fl_load_partial##S(x + b + i, 1, 0), &l1, &r1, \
                                            &er1);                                       \
                int ok = SAME(ev[i], e2[i]) && SAME(lv[i], l2[i]) && SAME(rv[i], r2[i]) && \
                         SAME(e1[0], ev[i]) && SAME(l1[0], lv[i]) && SAME(r1[0], rv[i]) && \
                         SAME(er1[0], erv[i]) &&                                         \
                         (erv[i] != erv[i] ? er2[i] != er2[i]                             \
                                           : ULPS(erv[i], er2[i]) <= 2);                   \
                if (!ok && bad++ < 5)                                                    \
                    FAIL("logistic" #S "(%a): e %a L %a r %a er %a; expected %a %a %a %a", \
                         (double)x[b + i], (double)ev[i], (double)lv[i], (double)rv[i],  \
                         (double)erv[i], (double)e2[i], (double)l2[i], (double)r2[i],    \
                         (double)er2[i]);                                                \
            }                                                                            \
        }                                                                                \
        return bad;                                                                      \
    }
static double ulps_apart32(float a, float b)
{
    if (a == b) return 0;
    return fabs((double)a - (double)b) / (double)(nextafterf(fmaxf(fabsf(a), fabsf(b)), INFINITY) -
                                                  fmaxf(fabsf(a), fabsf(b)));
}
static double ulps_apart64(double a, double b)
{
    if (a == b) return 0;
    double m = fmax(fabs(a), fabs(b));
    return fabs(a - b) / (nextafter(m, INFINITY) - m);
}
LOGISTIC(float, _f32, same32, ulps_apart32)
LOGISTIC(double, _f64, same64, ulps_apart64)

static void test_logistic(int log2n)
{
    static float x[BLK];
    static double xd[BLK];
    uint64_t count = 1ULL << (log2n < 22 ? (log2n < 15 ? 15 : log2n) : 22);
    int bad = 0;
    for (uint64_t k = 0; k < count; k += BLK) {
        for (int i = 0; i < BLK; i++) {
            /* any bit pattern (slow-path vectors) / the fast range / mostly fast, some big */
            int kind = (int)((k / BLK) % 3);
            x[i] = kind == 0 ? from32((uint32_t)rnd64())
                 : kind == 1 ? (float)(-90 + 180 * rnd_unit())
                 : (rnd_unit() < 0.05 ? from32((uint32_t)rnd64()) : (float)(-20 + 40 * rnd_unit()));
            xd[i] = kind == 0 ? from64(rnd64())
                  : kind == 1 ? -720 + 1440 * rnd_unit()
                  : (rnd_unit() < 0.05 ? from64(rnd64()) : -40 + 80 * rnd_unit());
        }
        bad += check_logistic_f32(x, BLK);
        bad += check_logistic_f64(xd, BLK);
    }
    printf("  logistic = exp/softplus/sigmoid bitwise, er within 2 ulp, lane-independent: %s\n",
           bad ? "NO" : "yes");
}

/* fl_logistic_u2_f32 over 2^log2n float patterns spread over all 2^32 (both signs, every
 * binade, inf, NaN): e within 2 ulp of e^-|x|; L, r, er within their stated 2 / 1 / 2
 * ulp of log1p(e^-|x|), 1 / (1 + e^-|x|), e^-|x| / (1 + e^-|x|) (double reference); NaN
 * for NaN x; every lane the same bits as that element alone. */
static void test_logistic_u2(int log2n)
{
    enum { L = fl_lanes_f32 };
    uint64_t count = 1ULL << log2n, stride = 1ULL << (32 - log2n);
    double mL = 0, mr = 0, mer = 0;
    float xL = 0, xr = 0, xer = 0;
    int bad = 0;
    for (uint64_t k = 0; k < count; k += L) {
        float xs[L];
        for (int i = 0; i < L; i++)
            xs[i] = from32((uint32_t)(((k + (uint64_t)i) * stride + k + (uint64_t)i) & 0xffffffffu));
        fl_v_f32 xv = fl_load_f32(xs), lv, rv, erv;
        fl_v_f32 ev = fl_logistic_u2_f32(xv, &lv, &rv, &erv);
        for (int i = 0; i < L; i++) {
            fl_v_f32 l1, r1, er1;
            fl_v_f32 e1 = fl_logistic_u2_f32(fl_load_partial_f32(xs + i, 1, 0), &l1, &r1, &er1);
            int ok = same32(e1[0], ev[i]) && same32(l1[0], lv[i]) &&
                     same32(r1[0], rv[i]) && same32(er1[0], erv[i]);
            if (xs[i] != xs[i]) {
                ok = ok && ev[i] != ev[i] && lv[i] != lv[i] && rv[i] != rv[i] && erv[i] != erv[i];
            } else {
                const double a = fabs((double)xs[i]), ed = exp(-a);
                const double u1 = ulp_err32(lv[i], log1p(ed)), u2 = ulp_err32(rv[i], 1 / (1 + ed)),
                             u3 = ulp_err32(erv[i], ed / (1 + ed));
                if (u1 > mL) { mL = u1; xL = xs[i]; }
                if (u2 > mr) { mr = u2; xr = xs[i]; }
                if (u3 > mer) { mer = u3; xer = xs[i]; }
                ok = ok && ulp_err32(ev[i], ed) <= 2 && u1 <= 2 && u2 <= 1 && u3 <= 2;
            }
            if (!ok && bad++ < 5)
                FAIL("logistic_u2_f32(%a): e %a L %a r %a er %a (lane alone: %a %a %a %a)",
                     (double)xs[i], (double)ev[i], (double)lv[i], (double)rv[i], (double)erv[i],
                     (double)e1[0], (double)l1[0], (double)r1[0], (double)er1[0]);
        }
    }
    printf("  logistic_u2_f32: max ulp L %.3f (x = %a), r %.3f (%a), er %.3f (%a); "
           "e within 2 ulp, lane-independent: %s\n",
           mL, (double)xL, mr, (double)xr, mer, (double)xer, bad ? "NO" : "yes");
}

/* ------------------------------------------------------------------------- tails */

static void test_tails(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    char *mem = mmap(NULL, 2 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (mem == MAP_FAILED || mprotect(mem + pg, (size_t)pg, PROT_NONE) != 0) {
        FAIL("mmap/mprotect for the guard page");
        return;
    }
    char *end = mem + pg; /* first byte of the guard page: reading it segfaults */
    for (int n = 0; n <= fl_lanes_f32; n++) {
        float *p = (float *)end - n;
        for (int i = 0; i < n; i++) p[i] = (float)(i + 1);
        fl_v_f32 v = fl_load_partial_f32(p, n, -7.0f);
        for (int i = 0; i < fl_lanes_f32; i++)
            if (v[i] != (i < n ? (float)(i + 1) : -7.0f))
                FAIL("load_partial_f32 n=%d lane %d = %g", n, i, v[i]);
        /* lane i holds 42 + i: each lane lands at its own index */
        fl_v_f32 w = __builtin_convertvector(fl__iota_i32(), fl_v_f32) + 42.0f;
        fl_store_partial_f32(p, w, n); /* writes past n would hit the guard page */
        for (int i = 0; i < n; i++)
            if (p[i] != 42.0f + (float)i) FAIL("store_partial_f32 n=%d lane %d", n, i);
        /* does not write beyond n: store into the middle of a buffer */
        float buf[128];
        for (int i = 0; i < 128; i++) buf[i] = -1.0f;
        fl_store_partial_f32(buf + 8, w, n);
        for (int i = 0; i < 128; i++)
            if (buf[i] != ((i >= 8 && i < 8 + n) ? 42.0f + (float)(i - 8) : -1.0f))
                FAIL("store_partial_f32 n=%d wrote index %d", n, i - 8);
    }
    for (int n = 0; n <= fl_lanes_f64; n++) {
        double *p = (double *)end - n;
        for (int i = 0; i < n; i++) p[i] = (double)(i + 1);
        fl_v_f64 v = fl_load_partial_f64(p, n, -7.0);
        for (int i = 0; i < fl_lanes_f64; i++)
            if (v[i] != (i < n ? (double)(i + 1) : -7.0))
                FAIL("load_partial_f64 n=%d lane %d = %g", n, i, v[i]);
        fl_v_f64 w = __builtin_convertvector(fl__iota_i64(), fl_v_f64) + 42.0;
        fl_store_partial_f64(p, w, n);
        for (int i = 0; i < n; i++)
            if (p[i] != 42.0 + (double)i) FAIL("store_partial_f64 n=%d lane %d", n, i);
        double buf[64];
        for (int i = 0; i < 64; i++) buf[i] = -1.0;
        fl_store_partial_f64(buf + 8, w, n);
        for (int i = 0; i < 64; i++)
            if (buf[i] != ((i >= 8 && i < 8 + n) ? 42.0 + (double)(i - 8) : -1.0))
                FAIL("store_partial_f64 n=%d wrote index %d", n, i - 8);
    }
    /* the apply loops (full vectors + partial tail) on arrays ending at the guard page */
    for (int fi = 0; fi < NFNS; fi++) {
        for (int n = 0; n <= 3 * fl_lanes_f32; n++) {
            float *x = (float *)end - n, y[256], yy[1];
            for (int i = 0; i < n; i++) x[i] = (float)i * 0.37f - 1.3f;
            FNS[fi].apply32(x, y, n);
            for (int i = 0; i < n; i++) {
                FNS[fi].apply32(x + i, yy, 1);
                if (!same32(y[i], yy[0])) FAIL("%s_f32 tail n=%d i=%d", FNS[fi].name, n, i);
            }
        }
        for (int n = 0; n <= 3 * fl_lanes_f64; n++) {
            double *x = (double *)end - n, y[256], yy[1];
            for (int i = 0; i < n; i++) x[i] = (double)i * 0.37 - 1.3;
            FNS[fi].apply64(x, y, n);
            for (int i = 0; i < n; i++) {
                FNS[fi].apply64(x + i, yy, 1);
                if (!same64(y[i], yy[0])) FAIL("%s_f64 tail n=%d i=%d", FNS[fi].name, n, i);
            }
        }
    }
    munmap(mem, 2 * (size_t)pg);
}

/* ------------------------------------------------------------ helpers: max, hsum */

static void test_helpers(void)
{
    float a[64], b[64];
    for (int i = 0; i < fl_lanes_f32; i++) { a[i] = (float)i - 3.0f; b[i] = 1.5f; }
    a[0] = NAN;
    fl_v_f32 m = fl_max_f32(fl_load_f32(a), fl_load_f32(b));
    for (int i = 0; i < fl_lanes_f32; i++) {
        float want = i == 0 ? 1.5f : (a[i] > 1.5f ? a[i] : 1.5f);
        if (m[i] != want) FAIL("max_f32 lane %d", i);
    }
    fl_v_f32 mn = fl_min_f32(fl_set1_f32(0.0f), fl_set1_f32(-0.0f));
    if (!signbit(mn[0])) FAIL("min_f32(+0, -0) should be the second operand");
    float s = 0;
    for (int i = 0; i < fl_lanes_f32; i++) { a[i] = (float)(i + 1); s += a[i]; }
    if (fl_hsum_f32(fl_load_f32(a)) != s) FAIL("hsum_f32");
    if (fl_hmax_f32(fl_load_f32(a)) != (float)fl_lanes_f32) FAIL("hmax_f32");
    double d[32], ds = 0;
    for (int i = 0; i < fl_lanes_f64; i++) { d[i] = (double)(i + 1); ds += d[i]; }
    if (fl_hsum_f64(fl_load_f64(d)) != ds) FAIL("hsum_f64");
    if (fl_hmax_f64(fl_load_f64(d)) != (double)fl_lanes_f64) FAIL("hmax_f64");
    fl_v_f64 fm = fl_fma_f64(fl_set1_f64(1.0 + 0x1p-30), fl_set1_f64(1.0 - 0x1p-30),
                             fl_set1_f64(-1.0));
    if (FL_HAVE_FMA ? fm[0] != -0x1p-60 : fm[0] != 0.0) FAIL("fma_f64 fused=%d", FL_HAVE_FMA);
    /* float32 <-> float64 lanes: widen is exact and in lane order, narrow rounds back */
    for (int i = 0; i < fl_lanes_f32; i++) a[i] = (float)(i + 1) * (1.0f + 0x1p-23f) - 100.0f;
    fl_v_f64 w[2];
    fl_widen_f32(fl_load_f32(a), w);
    for (int i = 0; i < fl_lanes_f32; i++)
        if (w[i / fl_lanes_f64][i % fl_lanes_f64] != (double)a[i]) FAIL("widen_f32 lane %d", i);
    fl_v_f32 nw = fl_narrow_f64(w[0], w[1]);
    for (int i = 0; i < fl_lanes_f32; i++)
        if (bits32(nw[i]) != bits32(a[i])) FAIL("narrow_f64 lane %d", i);
    w[0] = w[0] + fl_set1_f64(0x1p-40); /* not a float: narrow rounds to nearest */
    nw = fl_narrow_f64(w[0], w[1]);
    for (int i = 0; i < fl_lanes_f64; i++)
        if (nw[i] != (float)(w[0][i])) FAIL("narrow_f64 rounding, lane %d", i);
}

/* ------------------------------------------------------------ floating-point flags */

/* "underflow" is not checked: intermediate products of tiny arguments (f*f in log1p of
 * 1e-30) may underflow while the result is normal; NumPy ignores underflow by default. */
#define BAD_FLAGS (FE_INVALID | FE_DIVBYZERO | FE_OVERFLOW)

static void flags_case32(const fn_t *f, const float *x, int64_t n, const char *what)
{
    static float y[BLK];
    feclearexcept(FE_ALL_EXCEPT);
    f->apply32(x, y, n);
    int fl = fetestexcept(BAD_FLAGS);
    if (fl)
        FAIL("%s_f32 on %s raised%s%s%s%s", f->name, what, fl & FE_INVALID ? " invalid" : "",
             fl & FE_DIVBYZERO ? " divbyzero" : "", fl & FE_OVERFLOW ? " overflow" : "", "");
}
static void flags_case64(const fn_t *f, const double *x, int64_t n, const char *what)
{
    static double y[BLK];
    feclearexcept(FE_ALL_EXCEPT);
    f->apply64(x, y, n);
    int fl = fetestexcept(BAD_FLAGS);
    if (fl)
        FAIL("%s_f64 on %s raised%s%s%s%s", f->name, what, fl & FE_INVALID ? " invalid" : "",
             fl & FE_DIVBYZERO ? " divbyzero" : "", fl & FE_OVERFLOW ? " overflow" : "", "");
}

static void test_flags(void)
{
    static float x[BLK];
    static double xd[BLK];
    for (int fi = 0; fi < NFNS; fi++) {
        const fn_t *f = &FNS[fi];
        int is_log = !strcmp(f->name, "log"), is_log1p = !strcmp(f->name, "log1p");
        /* tail fill values (and whole vectors of them) */
        for (int i = 0; i < BLK; i++) { x[i] = (float)(i & 1); xd[i] = (double)(i & 1); }
        flags_case32(f, x, BLK, "0/1 fill values");
        flags_case64(f, xd, BLK, "0/1 fill values");
        /* ordinary inputs with normal results: at most "inexact" */
        for (int i = 0; i < BLK; i++) {
            double u = rnd_unit();
            if (is_log) { x[i] = (float)ldexp(1 + u, (int)(rnd64() % 200) - 100); }
            else if (is_log1p) { x[i] = (float)(u < 0.5 ? -0.99 * u * 2 : ldexp(1 + u, (int)(rnd64() % 100))); }
            else x[i] = (float)(-80 + 160 * u);
            if (is_log) xd[i] = ldexp(1 + u, (int)(rnd64() % 2000) - 1000);
            else if (is_log1p) xd[i] = u < 0.5 ? -0.99 * u * 2 : ldexp(1 + u, (int)(rnd64() % 1000));
            else xd[i] = -700 + 1400 * u;
        }
        flags_case32(f, x, BLK, "ordinary inputs");
        flags_case64(f, xd, BLK, "ordinary inputs");
        /* quiet NaN and infinities: nothing (no "invalid" from inf - inf inside) */
        float s32[] = {NAN, -NAN, INFINITY, 0.5f, 2.0f, 1.0f};
        double s64[] = {NAN, -NAN, INFINITY, 0.5, 2.0, 1.0};
        int ns = 3;
        if (!is_log && !is_log1p) {
            s32[3] = -INFINITY;
            s64[3] = -INFINITY;
            ns = 4;
        }
        for (int i = 0; i < BLK; i++) { x[i] = s32[i % ns]; xd[i] = s64[i % ns]; }
        flags_case32(f, x, BLK, "NaN / inf");
        flags_case64(f, xd, BLK, "NaN / inf");
    }
}

/* ------------------------------------------------------------------ benchmark */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define BENCH_N 4096
static void bench(void)
{
    static float x[BENCH_N], y[BENCH_N];
    static double xd[BENCH_N], yd[BENCH_N];
    printf("throughput (ns/element, %d elements in L1, best of 5):\n", BENCH_N);
    for (int fi = 0; fi < NFNS; fi++) {
        const fn_t *f = &FNS[fi];
        for (int i = 0; i < BENCH_N; i++) {
            double u = rnd_unit();
            double v = !strcmp(f->name, "log") ? ldexp(1 + u, (int)(rnd64() % 40) - 20)
                       : !strcmp(f->name, "log1p") ? ldexp(1 + u, (int)(rnd64() % 40) - 30)
                       : -20 + 40 * u;
            x[i] = (float)v;
            xd[i] = v;
        }
        double best32 = 1e30, best64 = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            int iters = 400;
            double t0 = now();
            for (int it = 0; it < iters; it++) {
                f->apply32(x, y, BENCH_N);
                __asm__ volatile("" ::: "memory");
            }
            double t = (now() - t0) / ((double)iters * BENCH_N) * 1e9;
            if (t < best32) best32 = t;
            t0 = now();
            for (int it = 0; it < iters; it++) {
                f->apply64(xd, yd, BENCH_N);
                __asm__ volatile("" ::: "memory");
            }
            t = (now() - t0) / ((double)iters * BENCH_N) * 1e9;
            if (t < best64) best64 = t;
        }
        printf("  %-9s f32 %7.3f   f64 %7.3f\n", f->name, best32, best64);
    }
    /* softplus and sigmoid of the same x: one call, and the two-stage form (blocked) */
    static float y2[BENCH_N];
    static double yd2[BENCH_N];
    for (int i = 0; i < BENCH_N; i++) xd[i] = x[i] = (float)(-20 + 40 * rnd_unit());
    for (int variant = 0; variant < 2; variant++) {
        double best32 = 1e30, best64 = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            int iters = 400;
            double t0 = now();
            for (int it = 0; it < iters; it++) {
                if (variant) apply_twostage_f32(x, y, y2, BENCH_N);
                else apply_pair_f32(x, y, y2, BENCH_N);
                __asm__ volatile("" ::: "memory");
            }
            double t = (now() - t0) / ((double)iters * BENCH_N) * 1e9;
            if (t < best32) best32 = t;
            t0 = now();
            for (int it = 0; it < iters; it++) {
                if (variant) apply_twostage_f64(xd, yd, yd2, BENCH_N);
                else apply_pair_f64(xd, yd, yd2, BENCH_N);
                __asm__ volatile("" ::: "memory");
            }
            t = (now() - t0) / ((double)iters * BENCH_N) * 1e9;
            if (t < best64) best64 = t;
        }
        printf("  %-20s f32 %7.3f   f64 %7.3f\n",
               variant ? "softplus+sigmoid, 2-stage" : "softplus+sigmoid", best32, best64);
    }
}

/* ------------------------------------------------------------------------- main */

int main(int argc, char **argv)
{
    int log2n = 22, do_bench = 0;
    int64_t n64 = 400000;
    uint32_t dense = 4096;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--f32-log2") && i + 1 < argc) log2n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--f64") && i + 1 < argc) n64 = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--dense") && i + 1 < argc) dense = (uint32_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) g_rng = strtoull(argv[++i], 0, 0);
        else if (!strcmp(argv[i], "--bench")) do_bench = 1;
        else {
            fprintf(stderr, "usage: %s [--f32-log2 N] [--f64 N] [--dense R] [--seed S] [--bench]\n",
                    argv[0]);
            return 2;
        }
    }
    if (log2n < 0) log2n = 0;
    if (log2n > 32) log2n = 32;
    printf("vecmath target %s: %d-byte vectors, %d f32 / %d f64 lanes, fma %s; "
           "f32 2^%d sweep, f64 %lld samples, +-%u around thresholds\n",
           FL_VEC_TARGET, FL_VEC_BYTES, fl_lanes_f32, fl_lanes_f64,
           FL_HAVE_FMA ? "fused" : "unfused", log2n, (long long)n64, dense);

    test_specials();
    test_lane_independence();
    test_tails();
    test_helpers();
    test_flags();
    test_pair(log2n);
    test_logistic(log2n);
    test_logistic_u2(log2n);
    for (int fi = 0; fi < NFNS; fi++) test_f32(&FNS[fi], log2n, dense);
    for (int fi = 0; fi < NFNS; fi++) test_f64(&FNS[fi], n64, dense);
    if (do_bench) bench();
    printf("%s (%d failures)\n", g_failures ? "FAILED" : "OK", g_failures);
    return g_failures ? 1 : 0;
}
