/*
 * regression.c: element-wise regression losses (Huber, smooth L1), float32 and float64
 * from one template: this file includes itself once per dtype (see real.h), and setup.py
 * compiles it once per CPU target (vector width from vecmath.h: 16 / 32 / 64 bytes).
 *
 * Memory-bound kernels (two streams read, one or two written, a handful of flops per
 * element), so the vector body is built to run at the memory bandwidth:
 *  - branch-free: both branches of the loss are computed and selected per lane, with
 *    exactly the scalar formulas (same roundings, same bits as the 0.1 scalar code:
 *    0.5 d^2 is (0.5 d) d, smooth L1 divides by beta as before).  Lanes whose branch
 *    is not taken feed harmless values to the other formula (0 into 0.5 d^2, delta/2
 *    into the linear part), so finite inputs raise no overflow / underflow the scalar
 *    code would not.  NaN d compares false everywhere and propagates through both loss
 *    branches and the gradient select; like the scalar code (COMISS), a NaN d raises
 *    "invalid" in the comparisons.
 *  - loss_out / grad_out NULL and the store kind are decided once per call: the body is
 *    one always-inline template (reg_run) instantiated per case, no per-element tests.
 *  - U = 4 vectors per step, each stored before the next is loaded (so grad_out or
 *    loss_out may be x or y itself, as the scalar loop allowed).
 *  - the tail (< U vectors) is the same step with masked loads (fill 0: loss +0, no FP
 *    flags) and masked stores: same bits as the body, nothing read or written out of
 *    bounds.
 *  - large outputs are written with non-temporal (streaming) stores (see FL_REG_NT_MIN_BYTES).
 *
 * The loss sum: per step the U loss vectors are widened to double (float32: each vector
 * as two halves) and added as a balanced tree, giving one double vector of partials
 * (2U or U nonnegative terms per lane, relative error <= 3 eps); the partial is added
 * to per-lane compensated accumulators with TwoSum (exact), so the sum is within a few
 * eps of the exact sum of the rounded losses however long the array (no n eps growth),
 * i.e. it agrees with NumPy's pairwise sum to ~1e-16 relative.  The lanes are combined
 * at the end with accumulate.h's fl_acc; an infinite or NaN lane sum propagates as in
 * fl_acc.  The grouping (steps of U vectors from element 0 of the call, tail zero-filled)
 * depends only on n, never on the alignment of the pointers; different targets (vector
 * widths) group differently and may differ in the last bits of the sum.
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "fastloss.h"
#include "accumulate.h"
#include "vecmath.h"
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#define FL_REG_INLINE static inline __attribute__((always_inline))

/* Vectors per step of the main loop. */
#define FL_REG_U 4

/*
 * Non-temporal stores: an output of at least FL_REG_NT_MIN_BYTES (1 MiB, the per-core L2
 * of Zen 3 / Zen 5) in one call is written with streaming stores: no read-for-ownership
 * (a third less memory traffic for Huber with a gradient) and the result does not
 * displace x and y from the caches, but it is in DRAM, not in the cache, when the caller
 * reads it.  Measured on Zen 5 (Huber float32, gradient only, 16M elements): 0.24 vs
 * 0.31 ns per element.  With the gradient read back right after the call, regular stores
 * win while x, y and the output fit in the L3 (total under ~2M elements: up to 2.8x at
 * 64K elements), streaming stores beyond (~4M elements and up).
 * The kernel sees only its own n: the caller, which knows the whole array, picks the
 * block size so that blocks of small arrays stay below this size and blocks of huge
 * arrays are above it.  Override with -DFL_REG_NT_MIN_BYTES=...
 */
#ifndef FL_REG_NT_MIN_BYTES
#define FL_REG_NT_MIN_BYTES (1 << 20)
#endif

/* Streaming stores are done 16 bytes at a time (_mm_stream_ps / _mm_stream_pd, the
 * pieces of a wider vector go out one after another and the write-combining buffers
 * merge them into whole lines), so an output only needs 16-byte alignment: NumPy's large
 * arrays are 16 mod 64, and this needs no shuffling of results across vectors.  Measured:
 * as fast as aligned 64-byte streaming stores after a cross-vector shift. */
#if defined(__SSE2__)
#define FL_REG_HAVE_NT 1
#else
#define FL_REG_HAVE_NT 0
#endif

/* what a call writes: loss_out / grad_out present, streaming or regular stores */
enum { FL_REG_LOSS = 1, FL_REG_GRAD = 2, FL_REG_NT = 4 };
/* which loss */
enum { FL_REG_HUBER = 0, FL_REG_SMOOTH_L1 = 1 };

/* float32 vector -> its low / high halves as double vectors (exact) */
#if defined(__AVX512F__) && FL_VEC_BYTES == 64
FL_REG_INLINE fl_v_f64 fl_reg_lo_f64(fl_v_f32 v)
{
    return (fl_v_f64)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v));
}
FL_REG_INLINE fl_v_f64 fl_reg_hi_f64(fl_v_f32 v)
{
    return (fl_v_f64)_mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd((__m512)v), 1)));
}
#elif defined(__AVX2__) && FL_VEC_BYTES == 32
FL_REG_INLINE fl_v_f64 fl_reg_lo_f64(fl_v_f32 v)
{
    return (fl_v_f64)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v));
}
FL_REG_INLINE fl_v_f64 fl_reg_hi_f64(fl_v_f32 v)
{
    return (fl_v_f64)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1));
}
#elif defined(__SSE2__) && FL_VEC_BYTES == 16
FL_REG_INLINE fl_v_f64 fl_reg_lo_f64(fl_v_f32 v) { return (fl_v_f64)_mm_cvtps_pd((__m128)v); }
FL_REG_INLINE fl_v_f64 fl_reg_hi_f64(fl_v_f32 v)
{
    return (fl_v_f64)_mm_cvtps_pd(_mm_movehl_ps((__m128)v, (__m128)v));
}
#else
FL_REG_INLINE fl_v_f64 fl_reg_lo_f64(fl_v_f32 v)
{
    fl_v_f64 r;
    for (int i = 0; i < fl_lanes_f64; i++) r[i] = v[i];
    return r;
}
FL_REG_INLINE fl_v_f64 fl_reg_hi_f64(fl_v_f32 v)
{
    fl_v_f64 r;
    for (int i = 0; i < fl_lanes_f64; i++) r[i] = v[i + fl_lanes_f64];
    return r;
}
#endif

/* TwoSum: *s + p = new *s + error exactly (Knuth; no precondition on magnitudes) */
FL_REG_INLINE void fl_reg_twosum(fl_v_f64 *s, fl_v_f64 *c, fl_v_f64 p)
{
    const fl_v_f64 t = *s + p;
    const fl_v_f64 bp = t - *s;
    const fl_v_f64 ap = t - bp;
    *c += (*s - ap) + (p - bp);
    *s = t;
}

/* the per-lane compensated sums, combined in lane order */
static double fl_reg_lanes_result(fl_v_f64 s, fl_v_f64 c)
{
    fl_acc acc;
    fl_acc_init(&acc);
    for (int i = 0; i < fl_lanes_f64; i++)
        fl_acc_add(&acc, s[i]);
    for (int i = 0; i < fl_lanes_f64; i++)
        if (isfinite(s[i]))
            fl_acc_add(&acc, c[i]);
    return fl_acc_result(&acc);
}

/* 16-byte streaming stores of a whole vector (p 16-byte aligned) */
#if FL_REG_HAVE_NT
FL_REG_INLINE void fl_reg_stream_f32(float *p, fl_v_f32 v)
{
    union { fl_v_f32 v; __m128 q[FL_VEC_BYTES / 16]; } u;
    u.v = v;
    for (int i = 0; i < FL_VEC_BYTES / 16; i++)
        _mm_stream_ps(p + 4 * i, u.q[i]);
}
FL_REG_INLINE void fl_reg_stream_f64(double *p, fl_v_f64 v)
{
    union { fl_v_f64 v; __m128d q[FL_VEC_BYTES / 16]; } u;
    u.v = v;
    for (int i = 0; i < FL_VEC_BYTES / 16; i++)
        _mm_stream_pd(p + 2 * i, u.q[i]);
}
#endif

#define FL_REAL_F32
#include "regression.c"
#undef FL_REAL_F32
#define FL_REAL_F64
#include "regression.c"
#undef FL_REAL_F64

#else /* one template pass: real, FL(), R_*() come from real.h */
#include "real.h"

#undef V
#undef VI
#undef VL
#define V FL(fl_v)
#define VI FL(fl_vi)
#define VL FL(fl_lanes)

/* the call's constants, broadcast once */
typedef struct {
    V p;        /* delta / beta: |d| < p is the quadratic branch */
    V hp;       /* p / 2 */
    V hin;      /* Huber: what |d| is replaced by inside, p / 2 (or 0 when p = inf) */
    V pos, neg; /* the gradient outside: +-delta (Huber), +-1 (smooth L1) */
    V div;      /* smooth L1: beta where beta > 0, else 1 (never used then: no lane is inside) */
    V gs;       /* grad_scale */
} FL(reg_k);

/* One vector of d = x - y: the losses and (want_grad) the gradients, with exactly the
 * scalar code's formulas:
 *   inside (|d| < p):  Huber  0.5 d^2,            grad d
 *                      SL1    0.5 d^2 / beta,     grad d / beta
 *   outside:           Huber  delta (|d| - delta/2),  SL1  |d| - beta/2
 *                      grad   d > 0 ? pos : d < 0 ? neg : d   (0 and NaN stay)
 * then grad * grad_scale. */
FL_REG_INLINE V FL(reg_eval)(const int kind, const FL(reg_k) *k, V x, V y, V *grad,
                         const int want_grad)
{
    const V d = x - y;
    const V ad = FL(fl_abs)(d);
    const VI in = ad < k->p;                      /* NaN: false */
    const V dz = (V)((VI)d & in);                 /* d inside, +0 outside */
    V sq = (RC(0.5) * dz) * dz;                   /* 0.5 d^2, 0 outside: no overflow */
    V lin, loss;
    if (kind == FL_REG_HUBER) {
        /* outside: delta (|d| - delta/2); inside lanes get |d| := k->hin, which makes the
         * product 0 (delta/2: no overflow for huge delta) or -inf (delta = inf: no
         * inf - inf), never a flag */
        lin = k->p * (FL(fl_select)(in, k->hin, ad) - k->hp);
    } else {
        sq = sq / k->div;
        lin = ad - k->hp;
    }
    loss = FL(fl_select)(in, sq, lin);
    if (want_grad) {
        if (kind == FL_REG_HUBER) {
            /* clamp(d, -delta, delta); MAXPS / MINPS return their second operand when
             * either is NaN, so a NaN d comes through */
            *grad = FL(fl_min)(k->p, FL(fl_max)(k->neg, d)) * k->gs;
        } else {
            /* sign(d) outside (0 and NaN stay: beta = 0 is L1 with sign(0) = 0), d / beta
             * inside */
            const V out = FL(fl_select)(d > RC(0.0), k->pos,
                                        FL(fl_select)(d < RC(0.0), k->neg, d));
            *grad = FL(fl_select)(in, dz / k->div, out) * k->gs;
        }
    }
    return loss;
}

/* Loss vector -> double vector of partials (float32: the sum of its halves, exact
 * widening, one rounding). */
FL_REG_INLINE fl_v_f64 FL(reg_widen)(V l)
{
#if defined(FL_REAL_F32)
    return fl_reg_lo_f64(l) + fl_reg_hi_f64(l);
#else
    return l;
#endif
}

/* One vector at p[0..VL) (tail: p[0..rem), rem < VL, other lanes loss +0, not stored):
 * loads, evaluates, stores; returns the loss vector. */
FL_REG_INLINE V FL(reg_vec)(const int kind, const int what, const int tail, int64_t rem,
                        const real *x, const real *y, const FL(reg_k) *k, real *loss_out,
                        real *grad_out)
{
    V xv, yv, l, g;
    if (tail) {
        xv = FL(fl_load_partial)(x, rem, RC(0.0));
        yv = FL(fl_load_partial)(y, rem, RC(0.0));
    } else {
        xv = FL(fl_load)(x);
        yv = FL(fl_load)(y);
    }
    l = FL(reg_eval)(kind, k, xv, yv, &g, what & FL_REG_GRAD);
    if (tail) {
        if (what & FL_REG_LOSS) FL(fl_store_partial)(loss_out, l, rem);
        if (what & FL_REG_GRAD) FL(fl_store_partial)(grad_out, g, rem);
#if FL_REG_HAVE_NT
    } else if (what & FL_REG_NT) {
        if (what & FL_REG_LOSS) FL(fl_reg_stream)(loss_out, l);
        if (what & FL_REG_GRAD) FL(fl_reg_stream)(grad_out, g);
#endif
    } else {
        if (what & FL_REG_LOSS) FL(fl_store)(loss_out, l);
        if (what & FL_REG_GRAD) FL(fl_store)(grad_out, g);
    }
    return l;
}

/* One step of U = 4 vectors from element 0 of x, y, loss_out, grad_out; the tail step
 * (tail = 1) covers rem < 4 VL elements, its missing lanes and vectors are loss +0.  Each
 * vector is stored before the next one is loaded (outputs may be x or y themselves).
 * The losses are added as the tree ((v0 + v1) + (v2 + v3)) in double, then to the
 * per-lane compensated sum (s, c). */
FL_REG_INLINE void FL(reg_step)(const int kind, const int what, const int tail, int64_t rem,
                            const real *x, const real *y, const FL(reg_k) *k,
                            real *loss_out, real *grad_out, fl_v_f64 *s, fl_v_f64 *c)
{
    fl_v_f64 p[FL_REG_U];
    for (int j = 0; j < FL_REG_U; j++) {
        const int64_t o = (int64_t)j * VL;
        if (!tail)
            p[j] = FL(reg_widen)(FL(reg_vec)(kind, what, 0, VL, x + o, y + o, k,
                                             (what & FL_REG_LOSS) ? loss_out + o : 0,
                                             (what & FL_REG_GRAD) ? grad_out + o : 0));
        else if (rem > o)
            p[j] = FL(reg_widen)(FL(reg_vec)(kind, what, rem - o < VL, rem - o, x + o,
                                             y + o, k,
                                             (what & FL_REG_LOSS) ? loss_out + o : 0,
                                             (what & FL_REG_GRAD) ? grad_out + o : 0));
        else
            p[j] = fl_set1_f64(0.0);
    }
    fl_reg_twosum(s, c, (p[0] + p[1]) + (p[2] + p[3]));
}

FL_REG_INLINE double FL(reg_run)(const int kind, const int what, int64_t n, const real *x,
                             const real *y, const FL(reg_k) *k, real *loss_out,
                             real *grad_out)
{
    const int64_t step = (int64_t)FL_REG_U * VL;
    fl_v_f64 s = fl_set1_f64(0.0), c = fl_set1_f64(0.0);
    int64_t i = 0;
    for (; i <= n - step; i += step)
        FL(reg_step)(kind, what, 0, step, x + i, y + i, k,
                     (what & FL_REG_LOSS) ? loss_out + i : 0,
                     (what & FL_REG_GRAD) ? grad_out + i : 0, &s, &c);
    if (i < n)
        FL(reg_step)(kind, what, 1, n - i, x + i, y + i, k,
                     (what & FL_REG_LOSS) ? loss_out + i : 0,
                     (what & FL_REG_GRAD) ? grad_out + i : 0, &s, &c);
#if FL_REG_HAVE_NT
    if (what & FL_REG_NT)
        _mm_sfence(); /* streaming stores are weakly ordered: publish them before returning */
#endif
    return fl_reg_lanes_result(s, c);
}

/* Which outputs, and streaming stores when every written output is large and 16-byte
 * aligned (else regular stores). */
static int FL(reg_what)(int64_t n, const real *loss_out, const real *grad_out)
{
    int what = (loss_out ? FL_REG_LOSS : 0) | (grad_out ? FL_REG_GRAD : 0);
    (void)n;
#if FL_REG_HAVE_NT
    if (what && n >= (int64_t)(FL_REG_NT_MIN_BYTES / sizeof(real)) &&
        ((uintptr_t)loss_out & 15) == 0 && ((uintptr_t)grad_out & 15) == 0)
        what |= FL_REG_NT;
#endif
    return what;
}

/* One instance of reg_run per case: no per-element tests of loss_out / grad_out. */
#define FL_REG_DISPATCH(kind)                                                             \
    switch (FL(reg_what)(n, loss_out, grad_out)) {                                        \
    case 0: return FL(reg_run)(kind, 0, n, x, y, &k, 0, 0);                               \
    case FL_REG_LOSS: return FL(reg_run)(kind, FL_REG_LOSS, n, x, y, &k, loss_out, 0);    \
    case FL_REG_GRAD: return FL(reg_run)(kind, FL_REG_GRAD, n, x, y, &k, 0, grad_out);    \
    case FL_REG_LOSS | FL_REG_GRAD:                                                       \
        return FL(reg_run)(kind, FL_REG_LOSS | FL_REG_GRAD, n, x, y, &k, loss_out, grad_out); \
    case FL_REG_LOSS | FL_REG_NT:                                                         \
        return FL(reg_run)(kind, FL_REG_LOSS | FL_REG_NT, n, x, y, &k, loss_out, 0);      \
    case FL_REG_GRAD | FL_REG_NT:                                                         \
        return FL(reg_run)(kind, FL_REG_GRAD | FL_REG_NT, n, x, y, &k, 0, grad_out);      \
    default:                                                                              \
        return FL(reg_run)(kind, FL_REG_LOSS | FL_REG_GRAD | FL_REG_NT, n, x, y, &k,      \
                           loss_out, grad_out);                                           \
    }

/* Huber (torch): d = x - y; 0.5 d^2 inside |d| < delta, delta (|d| - delta/2) outside;
 * gradient d clamped to [-delta, delta].  NaN d propagates.  delta > 0 (+inf allowed:
 * then every finite d is inside); a NaN delta (outside the contract) gives NaN losses
 * and gradient d. */
double FLK(fl_huber)(int64_t n, const real *x, const real *y, double delta_,
                    real *loss_out, real *grad_out, double grad_scale_)
{
    const real delta = (real)delta_;
    FL(reg_k) k;
    k.p = FL(fl_set1)(delta);
    k.hp = FL(fl_set1)(RC(0.5) * delta);
    k.hin = FL(fl_set1)(RC(0.5) * delta <= R_MAX ? RC(0.5) * delta : RC(0.0));
    k.pos = FL(fl_set1)(delta);
    k.neg = FL(fl_set1)(-delta);
    k.div = FL(fl_set1)(RC(1.0));
    k.gs = FL(fl_set1)((real)grad_scale_);
    FL_REG_DISPATCH(FL_REG_HUBER)
}

/* Smooth L1 (torch): 0.5 d^2 / beta inside |d| < beta, |d| - beta/2 outside; beta = 0 is
 * L1 with gradient sign(d) (0 at d = 0, as torch).  Gradient clamp(d / beta, -1, 1). */
double FLK(fl_smooth_l1)(int64_t n, const real *x, const real *y, double beta_,
                        real *loss_out, real *grad_out, double grad_scale_)
{
    const real beta = (real)beta_;
    FL(reg_k) k;
    k.p = FL(fl_set1)(beta);
    k.hp = FL(fl_set1)(RC(0.5) * beta);
    k.hin = k.hp; /* unused */
    k.pos = FL(fl_set1)(RC(1.0));
    k.neg = FL(fl_set1)(RC(-1.0));
    k.div = FL(fl_set1)(beta > RC(0.0) ? beta : RC(1.0));
    k.gs = FL(fl_set1)((real)grad_scale_);
    FL_REG_DISPATCH(FL_REG_SMOOTH_L1)
}

#undef FL_REG_DISPATCH
#endif /* FL_TEMPLATE_PASS */
