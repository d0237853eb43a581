/*
 * overlap.c: overlap-based segmentation losses (Dice / Jaccard, MONAI DiceLoss semantics),
 * float32 and float64 from one template: this file includes itself once per dtype (see
 * real.h), and setup.py compiles it once per CPU target (vecmath.h gives the vectors).
 *
 * Layout: x is (B, C, S), S = product of the spatial dims; class c of sample b at position
 * s is x[(b * C + c) * S + s].  Target: dense t (same layout) or labels (B, S), one-hot
 * encoded on the fly (never materialised).
 *
 * Two passes per sample (or over the whole batch when batch != 0, since the sums then
 * span all samples):
 *   pass 1: activation p, and per class I = sum p t, G = sum t (t^2), P = sum p (p^2).
 *           The activation is stashed into grad_out (when given) so pass 2 needs no
 *           exp(): softmax p, sigmoid exp(-|x|) with the sign of x (gives p and an
 *           accurate p (1 - p)).
 *   pass 2: gradient, chained through the activation.
 *
 * Vectorisation: along S, which is contiguous within a channel.  One step takes a vector
 * of positions (RL = lanes of the real type) and handles every class there: the C values
 * of a position are C contiguous loads, one per channel row, and the label vector is
 * loaded once per step whatever C is.  The softmax over C is then lane-wise: max, exp,
 * sum, normalise, all in registers (the exp values wait in a C * RL scratch in L1).
 * The last, partial step uses masked loads and stores (fill values harmless for the
 * math, tail lanes zeroed before they reach a sum), so it reads and writes nothing out
 * of bounds and gives every lane the bits a full step would.
 *
 * Precision.  Everything after the activation is double: for float32 each real vector is
 * widened to NH = 2 double vectors (the f32 lanes [0, RL/2) and [RL/2, RL)), and the
 * softmax denominator z, 1 / z, p = e / z, the sums and the gradient are double, rounded
 * to float once at the store; the labels are compared as int64 in the double lanes.  So
 * float32 keeps the accuracy of the former scalar code: p is float(e * (1 / z)) from a
 * float exp (fl_exp_u1: <= 1 ulp, and the rounding of x - max, as before), and the sums
 * see the double p (before its rounding to float).  The sigmoid stays float as before
 * (e = exp(-|x|), r = 1 / (1 + e), p = r or e r), its chain factor e r^2 is double.
 * FMA: the sums and the gradient use fl_fma_f64 (fused where the target has FMA), so the
 * last bits differ between the baseline and the FMA targets (within the tests' bounds).
 *
 * Sums: per-lane double accumulators, one vector per class and quantity, take at most
 * FL_DICE_FLUSH_TERMS terms per lane, then are added into per-lane Neumaier accumulators
 * (fl_dice_vacc), whose lanes are combined with fl_acc at the end: the error does not grow
 * with S, and the result does not depend on the alignment of any pointer (only on the
 * target's lane count).  G of a label map is an exact count.
 *
 * Per kept class c (c0 <= c < C), with w = weight[c - c0] (1 if weight is NULL):
 *   D = G + P (jaccard: 2 (G + P - I)),  N = 2 I + smooth_nr,  Dn = D + smooth_dr
 *   f = (1 - N / Dn) w
 *   df/dp = w (-2 t / Dn + (N / Dn^2) dD/dp),  dD/dp = 1 or 2p  (jaccard: 2 (1 - t), 2 (2p - t))
 * written as df/dp = A t + Bc + Cp p with per-class A, Bc, Cp (grad_scale folded in).
 * Softmax: dx_j = p_j (g_j - sum_k g_k p_k) with g = df/dp (0 for dropped channels).
 *
 * Reentrant: all scratch is on the stack or malloc'ed per call.
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "fastloss.h"
#include "accumulate.h"
#include "vecmath.h"

#define FL_DICE_FLUSH_TERMS 32 /* plain double terms per accumulator lane before a flush */
#define FL_DICE_STACK_C 16     /* per-class scratch on the stack up to this many classes */
#define FL_DICE_REG_C 4        /* per-class values in local arrays up to this many classes */
#define FL_DICE_VALIDATE_CHUNK 1024 /* labels checked per vector chunk */

#define FL_DICE_INLINE static inline __attribute__((always_inline))
/* loops over the classes of one step: unrolled (completely when C is a constant) */
#define FL_DICE_UNROLL_C _Pragma("GCC unroll 4")

/* df/dp = A t + Bc + Cp p  (already times weight and grad_scale) */
typedef struct {
    double A, Bc, Cp;
} fl_dice_coef;

/* Per-lane Neumaier accumulator: lane l holds sum s[l] + c[l]. */
typedef struct {
    fl_v_f64 s, c;
} fl_dice_vacc;

/* I, G, P of one class */
typedef struct {
    fl_dice_vacc I, G, P;
} fl_dice_sums;

enum { FL_DICE_I = 0, FL_DICE_G = 1, FL_DICE_P = 2 }; /* block accumulators: 3 per class */

FL_DICE_INLINE fl_vi_f64 fl_dice_set1_i64(int64_t c)
{
    fl_vi_f64 v;
    for (int i = 0; i < fl_lanes_f64; i++) v[i] = c;
    return v;
}

FL_DICE_INLINE fl_vi_f64 fl_dice_iota_i64(void)
{
    fl_vi_f64 v;
    for (int i = 0; i < fl_lanes_f64; i++) v[i] = i;
    return v;
}

static inline void fl_dice_vacc_init(fl_dice_vacc *a)
{
    a->s = fl_set1_f64(0.0);
    a->c = fl_set1_f64(0.0);
}

/* a += v lane-wise (Neumaier).  |s| >= |v| is compared on the bits (no FP flags; a NaN
 * lane only makes its own compensation NaN, which fl_dice_vacc_result drops). */
FL_DICE_INLINE void fl_dice_vacc_add(fl_dice_vacc *a, fl_v_f64 v)
{
    const fl_v_f64 s = a->s, t = s + v;
    const fl_vi_f64 big = (fl_vi_f64)fl_abs_f64(s) >= (fl_vi_f64)fl_abs_f64(v);
    a->c += fl_select_f64(big, (s - t) + v, (v - t) + s);
    a->s = t;
}

/* The lanes combined in a fixed order: sum of the s lanes compensated, plus the c lanes. */
static double fl_dice_vacc_result(const fl_dice_vacc *a)
{
    union {
        fl_v_f64 v;
        double d[fl_lanes_f64];
    } s, c;
    s.v = a->s;
    c.v = a->c;
    fl_acc acc;
    fl_acc_init(&acc);
    for (int l = 0; l < fl_lanes_f64; l++) fl_acc_add(&acc, s.d[l]);
    for (int l = 0; l < fl_lanes_f64; l++) acc.comp += c.d[l];
    return fl_acc_result(&acc);
}

/* Lanes [0, n) of p as int64, the others -1 (never a class); reads only p[0, n); n may
 * be <= 0 (then nothing is read). */
FL_DICE_INLINE fl_vi_f64 fl_dice_load_labels(const int64_t *p, int64_t n)
{
    if (n >= fl_lanes_f64) {
        fl_vi_f64 v;
        memcpy(&v, p, sizeof v);
        return v;
    }
#if defined(__AVX512F__) && FL_VEC_BYTES == 64
    const __mmask8 k = (__mmask8)(n > 0 ? (1u << (unsigned)n) - 1u : 0u);
    return (fl_vi_f64)_mm512_mask_loadu_epi64(_mm512_set1_epi64(-1), k, p);
#elif defined(__AVX2__) && FL_VEC_BYTES == 32
    const fl_vi_f64 m = fl_dice_iota_i64() < n;
    const fl_vi_f64 v = (fl_vi_f64)_mm256_maskload_epi64((const long long *)p, (__m256i)m);
    return v | ~m;
#else
    union {
        fl_vi_f64 v;
        int64_t a[fl_lanes_f64];
    } u;
    u.v = fl_dice_set1_i64(-1);
    for (int64_t i = 0; i < n; i++) u.a[i] = p[i];
    return u.v;
#endif
}

/* First flat index of a label outside [0, C), or -1.  Vector chunks OR together
 * lab | (C - 1 - lab) (sign bit set iff lab < 0 or lab > C - 1, in uint64 arithmetic);
 * a chunk that has one is rescanned in order. */
static int64_t fl_dice_first_bad_label(int64_t n, const int64_t *labels, int64_t C)
{
    typedef uint64_t vu64 __attribute__((vector_size(FL_VEC_BYTES)));
    const int64_t L = fl_lanes_f64, CH = FL_DICE_VALIDATE_CHUNK;
    int64_t i0 = 0;
    for (; i0 + CH <= n; i0 += CH) {
        vu64 acc = (vu64)fl_dice_set1_i64(0), a1 = acc;
        const vu64 cm1 = (vu64)fl_dice_set1_i64(C - 1);
        for (int64_t i = i0; i < i0 + CH; i += 2 * L) {
            vu64 v0, v1;
            memcpy(&v0, labels + i, sizeof v0);
            memcpy(&v1, labels + i + L, sizeof v1);
            acc |= v0 | (cm1 - v0);
            a1 |= v1 | (cm1 - v1);
        }
        if (fl_any_f64((fl_vi_f64)(acc | a1) < 0)) break;
    }
    for (int64_t i = i0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= C) return i;
    return -1;
}

/* f of one class from its sums; fills the gradient coefficients. */
static double fl_dice_finish(const fl_dice_sums *s, double w, int squared, int jaccard,
                             double smooth_nr, double smooth_dr, double gs, fl_dice_coef *cf)
{
    const double I = fl_dice_vacc_result(&s->I), G = fl_dice_vacc_result(&s->G),
                 P = fl_dice_vacc_result(&s->P);
    double D = G + P;
    if (jaccard) D = 2.0 * (D - I);
    const double N = 2.0 * I + smooth_nr, Dn = D + smooth_dr;
    const double r = N / Dn;
    const double f = (1.0 - r) * w; /* MONAI: (1 - N / Dn), then * class weight */
    const double a = -2.0 * w * gs / Dn; /* d/dI (through N) */
    const double b = r / Dn * w * gs;    /* coefficient of dD/dp */
    if (!jaccard) {
        cf->A = a;
        cf->Bc = squared ? 0.0 : b;
        cf->Cp = squared ? 2.0 * b : 0.0;
    } else {
        cf->A = a - 2.0 * b;
        cf->Bc = squared ? 0.0 : 2.0 * b;
        cf->Cp = squared ? 4.0 * b : 0.0;
    }
    return f;
}

/* float32 <-> double lanes, as the template needs them (vecmath's conversions): v's lanes
 * [0, RL/2) go to w[0], [RL/2, RL) to w[1]; float64 is one vector as is. */
FL_DICE_INLINE void fl_dice_wide_f32(fl_v_f32 v, fl_v_f64 w[2]) { fl_widen_f32(v, w); }
FL_DICE_INLINE fl_v_f32 fl_dice_narrow_f32(const fl_v_f64 w[2]) { return fl_narrow_f64(w[0], w[1]); }
FL_DICE_INLINE void fl_dice_wide_f64(fl_v_f64 v, fl_v_f64 w[1]) { w[0] = v; }
FL_DICE_INLINE fl_v_f64 fl_dice_narrow_f64(const fl_v_f64 w[1]) { return w[0]; }

/* Label tests: lab == c as a mask in the form the target handles best (an AVX-512 mask
 * register, else all-ones lanes), and the two uses of it. */
#if defined(__AVX512F__) && FL_VEC_BYTES == 64
typedef __mmask8 fl_dice_mask;
FL_DICE_INLINE fl_dice_mask fl_dice_is(fl_vi_f64 lab, int64_t c)
{
    return _mm512_cmpeq_epi64_mask((__m512i)lab, _mm512_set1_epi64(c));
}
/* acc + (m ? v : 0) */
FL_DICE_INLINE fl_v_f64 fl_dice_add_if(fl_v_f64 acc, fl_dice_mask m, fl_v_f64 v)
{
    return (fl_v_f64)_mm512_mask_add_pd((__m512d)acc, m, (__m512d)acc, (__m512d)v);
}
/* m ? a : b */
FL_DICE_INLINE fl_v_f64 fl_dice_pick(fl_dice_mask m, fl_v_f64 a, fl_v_f64 b)
{
    return (fl_v_f64)_mm512_mask_blend_pd(m, (__m512d)b, (__m512d)a);
}
#else
typedef fl_vi_f64 fl_dice_mask;
FL_DICE_INLINE fl_dice_mask fl_dice_is(fl_vi_f64 lab, int64_t c) { return lab == c; }
FL_DICE_INLINE fl_v_f64 fl_dice_add_if(fl_v_f64 acc, fl_dice_mask m, fl_v_f64 v)
{
    return acc + (fl_v_f64)((fl_vi_f64)v & m);
}
FL_DICE_INLINE fl_v_f64 fl_dice_pick(fl_dice_mask m, fl_v_f64 a, fl_v_f64 b)
{
    return fl_select_f64(m, a, b);
}
#endif

/* Scratch of one call, aligned for the vector types: per-class sums and coefficients,
 * and FL_DICE_VPC(NH) double vectors per class for the passes' per-class values (pass 1:
 * 3 block sums and the NH widened exp values; pass 2: p and g, NH each), used when C is
 * above FL_DICE_REG_C (below, local arrays hold them). */
#define FL_DICE_VPC(nh) (3 + 2 * (nh))
typedef struct {
    fl_dice_sums *sums; /* C */
    fl_dice_coef *coef; /* C */
    fl_v_f64 *vec;      /* FL_DICE_VPC(NH) C */
} fl_dice_scratch;

/* FL_DICE_SPECIALISE(CALL): CALL(activation, dense, squared, C) with constant arguments
 * for the cases that matter (each becomes its own inlined copy of the loops): the
 * activation, dense target or labels, squared_pred, and for softmax C = 2..FL_DICE_REG_C
 * (the C values of one position stay in registers, the loops over C unroll).  Uses act,
 * t, sq, C of the caller. */
#define FL_DICE_BY_C(CALL, A, D, Q)                                                      \
    do {                                                                                 \
        switch (C) {                                                                     \
        case 2: CALL(A, D, Q, 2); break;                                                 \
        case 3: CALL(A, D, Q, 3); break;                                                 \
        case 4: CALL(A, D, Q, 4); break;                                                 \
        default: CALL(A, D, Q, C); break;                                                \
        }                                                                                \
    } while (0)
#define FL_DICE_BY_SQ(CALL, A, D)                                                        \
    do {                                                                                 \
        if (sq) CALL(A, D, 1, C); else CALL(A, D, 0, C);                                 \
    } while (0)
#define FL_DICE_BY_SQ_C(CALL, A, D)                                                      \
    do {                                                                                 \
        if (sq) FL_DICE_BY_C(CALL, A, D, 1); else FL_DICE_BY_C(CALL, A, D, 0);           \
    } while (0)
#define FL_DICE_SPECIALISE(CALL)                                                         \
    do {                                                                                 \
        if (act == FL_ACT_SOFTMAX) {                                                     \
            if (t) FL_DICE_BY_SQ_C(CALL, FL_ACT_SOFTMAX, 1);                             \
            else FL_DICE_BY_SQ_C(CALL, FL_ACT_SOFTMAX, 0);                               \
        } else if (act == FL_ACT_SIGMOID) {                                              \
            if (t) FL_DICE_BY_SQ(CALL, FL_ACT_SIGMOID, 1);                               \
            else FL_DICE_BY_SQ(CALL, FL_ACT_SIGMOID, 0);                                 \
        } else {                                                                         \
            if (t) FL_DICE_BY_SQ(CALL, FL_ACT_NONE, 1);                                  \
            else FL_DICE_BY_SQ(CALL, FL_ACT_NONE, 0);                                    \
        }                                                                                \
    } while (0)

#define FL_REAL_F32
#include "overlap.c"
#undef FL_REAL_F32
#define FL_REAL_F64
#include "overlap.c"
#undef FL_REAL_F64

#else /* one template pass: real, FL(), R_*() come from real.h */
#include "real.h"

#undef RV
#undef RVI
#undef RL
#undef NH
#undef FL_DICE_SIGN
#define RV FL(fl_v)       /* vector of reals */
#define RVI FL(fl_vi)     /* integer lanes of the same width */
#define RL FL(fl_lanes)   /* reals per vector */
#define NH (FL(fl_lanes) / fl_lanes_f64) /* double vectors per real vector */
#if defined(FL_REAL_F32)
#define FL_DICE_SIGN INT32_MIN
#else
#define FL_DICE_SIGN INT64_MIN
#endif

/* Stable logistic: e = exp(-|x|) (never overflows), r = 1 / (1 + e), p = r for x >= 0,
 * e r for x < 0 (sign bit set); NaN stays NaN.  *stash receives e carrying the sign of
 * x: pass 2 gets from it both p and dp/dx = p (1 - p) = e r^2, accurate even where 1 - p
 * would cancel. */
FL_DICE_INLINE RV FL(fl_dice_sigmoid)(RV x, RV *stash)
{
    const RV e = FL(fl_exp_u1)(-FL(fl_abs)(x));
    const RV r = RC(1.0) / (RC(1.0) + e);
    const RVI neg = (RVI)x < 0;
    *stash = (RV)((RVI)e | ((RVI)x & FL_DICE_SIGN));
    return FL(fl_select)(neg, e * r, r);
}

/* From a stash (signed e): p and the two factors of dp/dx = (e r) r. */
FL_DICE_INLINE RV FL(fl_dice_sigmoid_back)(RV s, RV *er, RV *r)
{
    const RV e = FL(fl_abs)(s);
    *r = RC(1.0) / (RC(1.0) + e);
    *er = e * *r;
    return FL(fl_select)((RVI)s < 0, *er, *r);
}

/* Adds one step of class c to its block sums blk[I, G, P]: pw = p in double lanes (NH
 * vectors), t from the dense row tc (fill 0 past n) or from the label lanes lab.  On the
 * tail step (tail != 0) lanes >= n of p are zeroed first (t is 0 there already). */
FL_DICE_INLINE void FL(fl_dice_add_step)(fl_v_f64 *blk, const fl_v_f64 *pw, int dense,
                                          int sq, const real *tc, const fl_vi_f64 *lab,
                                          int64_t c, int64_t n, int tail)
{
    const fl_v_f64 one = fl_set1_f64(1.0), zero = fl_set1_f64(0.0);
    fl_v_f64 I = blk[FL_DICE_I], G = blk[FL_DICE_G], P = blk[FL_DICE_P];
    fl_v_f64 tw[NH];
    if (dense) FL(fl_dice_wide)(FL(fl_load_partial)(tc, n, RC(0.0)), tw);
    for (int h = 0; h < NH; h++) {
        fl_v_f64 p = pw[h];
        if (tail) p = fl_select_f64(fl_dice_iota_i64() < n - h * fl_lanes_f64, p, zero);
        if (dense) {
            const fl_v_f64 t = tw[h];
            I = fl_fma_f64(p, t, I);
            G = sq ? fl_fma_f64(t, t, G) : G + t;
        } else { /* one-hot: t = t^2, G counts */
            const fl_dice_mask hit = fl_dice_is(lab[h], c);
            I = fl_dice_add_if(I, hit, p);
            G = fl_dice_add_if(G, hit, one);
        }
        P = sq ? fl_fma_f64(p, p, P) : P + p;
    }
    blk[FL_DICE_I] = I;
    blk[FL_DICE_G] = G;
    blk[FL_DICE_P] = P;
}

/* g = df/dp = A t + Bc + Cp p of class c, in double lanes.  use_cp = 0 drops Cp p when
 * Cp = 0 (not squared_pred) and p cannot be infinite (softmax, sigmoid: p in [0, 1] or
 * NaN, and a NaN p makes the gradient NaN through its other factor anyway). */
FL_DICE_INLINE void FL(fl_dice_dfdp)(fl_v_f64 *g, const fl_v_f64 *pw, int dense, int use_cp,
                                      const real *tc, const fl_vi_f64 *lab, int64_t c,
                                      int64_t n, const fl_dice_coef *cf)
{
    const fl_v_f64 A = fl_set1_f64(cf->A), B = fl_set1_f64(cf->Bc), Cp = fl_set1_f64(cf->Cp);
    fl_v_f64 base[NH];
    if (dense) {
        fl_v_f64 tw[NH];
        FL(fl_dice_wide)(FL(fl_load_partial)(tc, n, RC(0.0)), tw);
        for (int h = 0; h < NH; h++) base[h] = fl_fma_f64(A, tw[h], B);
    } else {
        /* A t + Bc with t = [lab == c]: A + Bc or Bc (as fma(A, t, Bc) gives) */
        const fl_v_f64 AB = fl_set1_f64(cf->A + cf->Bc);
        for (int h = 0; h < NH; h++) base[h] = fl_dice_pick(fl_dice_is(lab[h], c), AB, B);
    }
    for (int h = 0; h < NH; h++) g[h] = use_cp ? fl_fma_f64(Cp, pw[h], base[h]) : base[h];
}

FL_DICE_INLINE void FL(fl_dice_load_lab_step)(fl_vi_f64 *lab, const int64_t *lb, int64_t j,
                                               int64_t n)
{
    for (int h = 0; h < NH; h++)
        lab[h] = fl_dice_load_labels(lb + j + h * fl_lanes_f64, n - h * fl_lanes_f64);
}

/* Pass 1, one step: positions [j, j + min(n, RL)) of one sample, every kept class added
 * to its block sums blk (3 per class).  gb: grad_out of the sample (the stash) or NULL;
 * ew: C * NH vectors (softmax: the exp values, widened). */
FL_DICE_INLINE void FL(fl_dice_pass1_step)(int64_t C, int64_t S, int64_t j, int64_t n,
                                            int tail, int act, int dense, int sq, int64_t c0,
                                            const real *xb, const real *tb,
                                            const int64_t *lb, real *gb, fl_v_f64 *blk,
                                            fl_v_f64 *ew)
{
    fl_vi_f64 lab[NH];
    if (!dense) FL(fl_dice_load_lab_step)(lab, lb, j, n);
    fl_v_f64 pw[NH];
    if (act == FL_ACT_SOFTMAX) {
        /* p = e / z, e = exp(x - max), z = sum e (z and 1 / z in double) */
        RV m = FL(fl_load_partial)(xb + j, n, RC(0.0));
        FL_DICE_UNROLL_C
        for (int64_t c = 1; c < C; c++)
            m = FL(fl_max)(FL(fl_load_partial)(xb + c * S + j, n, RC(0.0)), m);
        fl_v_f64 z[NH], rz[NH];
        for (int h = 0; h < NH; h++) z[h] = fl_set1_f64(0.0);
        FL_DICE_UNROLL_C
        for (int64_t c = 0; c < C; c++) {
            FL(fl_dice_wide)(FL(fl_exp_u1)(FL(fl_load_partial)(xb + c * S + j, n, RC(0.0)) - m),
                             ew + c * NH);
            for (int h = 0; h < NH; h++) z[h] += ew[c * NH + h];
        }
        for (int h = 0; h < NH; h++) rz[h] = 1.0 / z[h];
        FL_DICE_UNROLL_C
        for (int64_t c = 0; c < C; c++) {
            if (c < c0 && !gb) continue; /* p of a dropped channel is not needed */
            for (int h = 0; h < NH; h++) pw[h] = ew[c * NH + h] * rz[h];
            if (gb) FL(fl_store_partial)(gb + c * S + j, FL(fl_dice_narrow)(pw), n);
            if (c >= c0)
                FL(fl_dice_add_step)(blk + 3 * c, pw, dense, sq,
                                     dense ? tb + c * S + j : NULL, lab, c, n, tail);
        }
    } else {
        FL_DICE_UNROLL_C
        for (int64_t c = 0; c < C; c++) {
            if (c < c0) continue;
            RV p = FL(fl_load_partial)(xb + c * S + j, n, RC(0.0));
            if (act == FL_ACT_SIGMOID) {
                RV stash;
                p = FL(fl_dice_sigmoid)(p, &stash);
                if (gb) FL(fl_store_partial)(gb + c * S + j, stash, n);
            }
            FL(fl_dice_wide)(p, pw);
            FL(fl_dice_add_step)(blk + 3 * c, pw, dense, sq, dense ? tb + c * S + j : NULL,
                                 lab, c, n, tail);
        }
    }
}

/* Pass 1 of one sample: steps of RL positions, the block sums flushed into the per-class
 * sums every FL_DICE_FLUSH_TERMS terms per lane (and at the end).  The per-class vectors
 * are a local array up to FL_DICE_REG_C classes (registers once C is a constant), else
 * the call's scratch vmem. */
FL_DICE_INLINE void FL(fl_dice_pass1_sample)(int64_t C, int64_t S, int act, int dense, int sq,
                                              int64_t c0, const real *xb, const real *tb,
                                              const int64_t *lb, real *gb, fl_v_f64 *vmem,
                                              fl_dice_sums *sums)
{
    fl_v_f64 vreg[(3 + NH) * FL_DICE_REG_C];
    fl_v_f64 *blk = C <= FL_DICE_REG_C ? vreg : vmem;
    fl_v_f64 *ew = blk + 3 * C;
    const int64_t span = (FL_DICE_FLUSH_TERMS / NH) * RL; /* positions per flush */
    for (int64_t j0 = 0; j0 < S; j0 += span) {
        const int64_t jend = S - j0 < span ? S : j0 + span;
        for (int64_t c = 0; c < 3 * C; c++) blk[c] = fl_set1_f64(0.0);
        int64_t j = j0;
        for (; j + RL <= jend; j += RL)
            FL(fl_dice_pass1_step)(C, S, j, RL, 0, act, dense, sq, c0, xb, tb, lb, gb, blk, ew);
        if (j < jend)
            FL(fl_dice_pass1_step)(C, S, j, jend - j, 1, act, dense, sq, c0, xb, tb, lb, gb,
                                   blk, ew);
        for (int64_t c = c0; c < C; c++) {
            fl_dice_vacc_add(&sums[c].I, blk[3 * c + FL_DICE_I]);
            fl_dice_vacc_add(&sums[c].G, blk[3 * c + FL_DICE_G]);
            fl_dice_vacc_add(&sums[c].P, blk[3 * c + FL_DICE_P]);
        }
    }
}

/* Pass 2, one step: the gradient at positions [j, j + min(n, RL)) of every class.
 * pv, gv: C * NH vectors each (softmax: p and g of every class, kept between the two
 * loops). */
FL_DICE_INLINE void FL(fl_dice_pass2_step)(int64_t C, int64_t S, int64_t j, int64_t n,
                                            int act, int dense, int sq, int64_t c0,
                                            const real *xb, const real *tb,
                                            const int64_t *lb, const fl_dice_coef *coef,
                                            real *gb, fl_v_f64 *pv, fl_v_f64 *gv)
{
    const int use_cp = sq || act == FL_ACT_NONE;
    fl_vi_f64 lab[NH];
    if (!dense) FL(fl_dice_load_lab_step)(lab, lb, j, n);
    fl_v_f64 pw[NH], g[NH], o[NH];
    if (act == FL_ACT_SOFTMAX) {
        /* dx_j = p_j (g_j - sum_k g_k p_k), g = 0 for dropped channels */
        fl_v_f64 dot[NH];
        for (int h = 0; h < NH; h++) dot[h] = fl_set1_f64(0.0);
        FL_DICE_UNROLL_C
        for (int64_t c = 0; c < C; c++) {
            fl_v_f64 *p = pv + c * NH, *gc = gv + c * NH;
            FL(fl_dice_wide)(FL(fl_load_partial)(gb + c * S + j, n, RC(0.0)), p);
            if (c < c0) {
                for (int h = 0; h < NH; h++) gc[h] = fl_set1_f64(0.0);
                continue;
            }
            FL(fl_dice_dfdp)(gc, p, dense, use_cp, dense ? tb + c * S + j : NULL, lab, c, n,
                             &coef[c]);
            for (int h = 0; h < NH; h++) dot[h] = fl_fma_f64(gc[h], p[h], dot[h]);
        }
        FL_DICE_UNROLL_C
        for (int64_t c = 0; c < C; c++) {
            for (int h = 0; h < NH; h++) o[h] = pv[c * NH + h] * (gv[c * NH + h] - dot[h]);
            FL(fl_store_partial)(gb + c * S + j, FL(fl_dice_narrow)(o), n);
        }
    } else {
        FL_DICE_UNROLL_C
        for (int64_t c = 0; c < C; c++) {
            if (c < c0) {
                FL(fl_store_partial)(gb + c * S + j, FL(fl_set1)(RC(0.0)), n);
                continue;
            }
            if (act == FL_ACT_SIGMOID) {
                /* gb holds the stash of pass 1 (signed e = exp(-|x|)): dx = g e r^2 */
                RV er, r;
                const RV p = FL(fl_dice_sigmoid_back)(
                    FL(fl_load_partial)(gb + c * S + j, n, RC(0.0)), &er, &r);
                fl_v_f64 erw[NH], rw[NH];
                FL(fl_dice_wide)(p, pw);
                FL(fl_dice_wide)(er, erw);
                FL(fl_dice_wide)(r, rw);
                FL(fl_dice_dfdp)(g, pw, dense, use_cp, dense ? tb + c * S + j : NULL, lab, c,
                                 n, &coef[c]);
                for (int h = 0; h < NH; h++) o[h] = g[h] * (erw[h] * rw[h]);
            } else {
                FL(fl_dice_wide)(FL(fl_load_partial)(xb + c * S + j, n, RC(0.0)), pw);
                FL(fl_dice_dfdp)(o, pw, dense, use_cp, dense ? tb + c * S + j : NULL, lab, c,
                                 n, &coef[c]);
            }
            FL(fl_store_partial)(gb + c * S + j, FL(fl_dice_narrow)(o), n);
        }
    }
}

/* Pass 2 of one sample.  Up to FL_DICE_REG_C classes the coefficients are copied to a
 * local array (then they stay in registers: the stores to gb cannot change them) and
 * the per-class vectors are local, else the call's scratch vmem. */
FL_DICE_INLINE void FL(fl_dice_pass2_sample)(int64_t C, int64_t S, int act, int dense, int sq,
                                              int64_t c0, const real *xb, const real *tb,
                                              const int64_t *lb, const fl_dice_coef *coef_mem,
                                              real *gb, fl_v_f64 *vmem)
{
    fl_dice_coef coef_reg[FL_DICE_REG_C];
    fl_v_f64 vreg[2 * NH * FL_DICE_REG_C];
    const fl_dice_coef *coef = coef_mem;
    fl_v_f64 *pv = vmem;
    if (C <= FL_DICE_REG_C) {
        for (int64_t c = 0; c < C; c++) coef_reg[c] = coef_mem[c];
        coef = coef_reg;
        pv = vreg;
    }
    fl_v_f64 *gv = pv + NH * C;
    int64_t j = 0;
    for (; j + RL <= S; j += RL)
        FL(fl_dice_pass2_step)(C, S, j, RL, act, dense, sq, c0, xb, tb, lb, coef, gb, pv, gv);
    if (j < S)
        FL(fl_dice_pass2_step)(C, S, j, S - j, act, dense, sq, c0, xb, tb, lb, coef, gb, pv,
                               gv);
}

/* The passes over samples [b0, b1), specialised (FL_DICE_SPECIALISE). */
static void FL(fl_dice_pass1)(int64_t b0, int64_t b1, int64_t C, int64_t S, int act,
                              int64_t c0, int sq, const real *x, const real *t,
                              const int64_t *labels, real *grad, const fl_dice_scratch *sc)
{
    for (int64_t b = b0; b < b1; b++) {
        const real *xb = x + b * C * S;
        const real *tb = t ? t + b * C * S : NULL;
        const int64_t *lb = labels ? labels + b * S : NULL;
        real *gb = grad ? grad + b * C * S : NULL;
#define FL_DICE_P1(A, D, Q, CC)                                                          \
    FL(fl_dice_pass1_sample)(CC, S, A, D, Q, c0, xb, tb, lb, gb, sc->vec, sc->sums)
        FL_DICE_SPECIALISE(FL_DICE_P1);
#undef FL_DICE_P1
    }
}

static void FL(fl_dice_pass2)(int64_t b0, int64_t b1, int64_t C, int64_t S, int act,
                              int64_t c0, int sq, const real *x, const real *t,
                              const int64_t *labels, real *grad, const fl_dice_scratch *sc)
{
    for (int64_t b = b0; b < b1; b++) {
        const real *xb = x + b * C * S;
        const real *tb = t ? t + b * C * S : NULL;
        const int64_t *lb = labels ? labels + b * S : NULL;
        real *gb = grad + b * C * S;
#define FL_DICE_P2(A, D, Q, CC)                                                          \
    FL(fl_dice_pass2_sample)(CC, S, A, D, Q, c0, xb, tb, lb, sc->coef, gb, sc->vec)
        FL_DICE_SPECIALISE(FL_DICE_P2);
#undef FL_DICE_P2
    }
}

int FLK(fl_dice)(int64_t B, int64_t C, int64_t Sp, const real *x, const real *t,
                const int64_t *labels, int activation, int64_t c0, int squared_pred,
                int jaccard, double smooth_nr, double smooth_dr, int batch,
                const real *weight, double *f_out, real *grad_out, double grad_scale,
                int64_t *err_index)
{
    if (err_index) *err_index = -1;
    if (B < 0 || C < 0 || Sp < 0 || c0 < 0 || c0 > C || (t == NULL) == (labels == NULL) ||
        (activation != FL_ACT_NONE && activation != FL_ACT_SIGMOID &&
         activation != FL_ACT_SOFTMAX))
        return -3; /* invalid arguments (not part of the documented contract) */
    if (labels) {
        const int64_t bad = fl_dice_first_bad_label(B * Sp, labels, C);
        if (bad >= 0) {
            if (err_index) *err_index = bad;
            return -1;
        }
    }
    if (C == 0) return 0;

    const int sq = squared_pred != 0, jac = jaccard != 0;
    const int64_t K = C - c0;

    if (B == 0 || Sp == 0) {
        /* no element: every sum is 0 (empty prediction and target) and the gradient is
         * empty; no pass and no per-class scratch (C may be huge: (0, 2**33, 4)) */
        fl_dice_sums zero;
        fl_dice_coef cf;
        fl_dice_vacc_init(&zero.I);
        fl_dice_vacc_init(&zero.G);
        fl_dice_vacc_init(&zero.P);
        const int64_t ng = batch ? 1 : B;
        for (int64_t grp = 0; grp < ng; grp++)
            for (int64_t c = c0; c < C; c++) {
                const double w = weight ? (double)weight[c - c0] : 1.0;
                const double f = fl_dice_finish(&zero, w, sq, jac, smooth_nr, smooth_dr,
                                                grad_scale, &cf);
                if (f_out) f_out[grp * K + (c - c0)] = f;
            }
        return 0;
    }

    /* scratch: on the stack up to FL_DICE_STACK_C classes, else one aligned malloc */
    fl_dice_sums sums_stack[FL_DICE_STACK_C];
    fl_dice_coef coef_stack[FL_DICE_STACK_C];
    fl_v_f64 vec_stack[FL_DICE_VPC(NH) * FL_DICE_STACK_C];
    fl_dice_scratch sc = {sums_stack, coef_stack, vec_stack};
    void *heap = NULL;
    if (C > FL_DICE_STACK_C) {
        const size_t al = sizeof(fl_v_f64);
        const size_t bytes = (size_t)C * (sizeof(fl_dice_sums) + FL_DICE_VPC(NH) * sizeof(fl_v_f64) +
                                          sizeof(fl_dice_coef));
        heap = malloc(bytes + al);
        if (!heap) return -2;
        char *h = (char *)(((uintptr_t)heap + al - 1) & ~(uintptr_t)(al - 1));
        sc.sums = (fl_dice_sums *)h;
        h += (size_t)C * sizeof(fl_dice_sums);
        sc.vec = (fl_v_f64 *)h;
        h += (size_t)C * FL_DICE_VPC(NH) * sizeof(fl_v_f64);
        sc.coef = (fl_dice_coef *)h;
    }

    const int64_t nb = batch ? 1 : B; /* groups of samples sharing the sums */
    const int64_t per = batch ? B : 1;
    for (int64_t grp = 0; grp < nb; grp++) {
        for (int64_t c = 0; c < C; c++) {
            fl_dice_vacc_init(&sc.sums[c].I);
            fl_dice_vacc_init(&sc.sums[c].G);
            fl_dice_vacc_init(&sc.sums[c].P);
        }
        FL(fl_dice_pass1)(grp * per, (grp + 1) * per, C, Sp, activation, c0, sq, x, t, labels,
                          grad_out, &sc);
        for (int64_t c = c0; c < C; c++) {
            const double w = weight ? (double)weight[c - c0] : 1.0;
            const double f = fl_dice_finish(&sc.sums[c], w, sq, jac, smooth_nr, smooth_dr,
                                            grad_scale, &sc.coef[c]);
            if (f_out) f_out[grp * K + (c - c0)] = f;
        }
        if (grad_out)
            FL(fl_dice_pass2)(grp * per, (grp + 1) * per, C, Sp, activation, c0, sq, x, t,
                              labels, grad_out, &sc);
    }
    free(heap);
    return 0;
}

#endif /* FL_TEMPLATE_PASS */
