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
 *  - U = 4 vectors per step, each stored before the next is loaded (streaming: held
 *    until then, see fl_ew_nts), so grad_out or loss_out may be x or y itself, as the
 *    scalar loop allowed.
 *  - the tail (< U vectors) is the same step with masked loads (fill 0: loss +0, no FP
 *    flags) and masked stores: same bits as the body, nothing read or written out of
 *    bounds.
 *  - large outputs are written with non-temporal (streaming) stores, and the loss sum is
 *    the compensated per-lane sum of elementwise.h (see there).  Per step the U loss
 *    vectors are widened to double and added as the tree ((v0 + v1) + (v2 + v3)).
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "fastloss.h"
#include "elementwise.h"

#define FL_REG_INLINE static inline __attribute__((always_inline))

/* Vectors per step of the main loop. */
#define FL_REG_U 4

/* which loss */
enum { FL_REG_HUBER = 0, FL_REG_SMOOTH_L1 = 1 };

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

/* One vector at p[0..VL) (tail: p[0..rem), rem < VL, other lanes loss +0, not stored):
 * loads, evaluates, stores; returns the loss vector. */
FL_REG_INLINE V FL(reg_vec)(const int kind, const int what, const int tail, int64_t rem,
                        const real *x, const real *y, const FL(reg_k) *k, real *loss_out,
                        real *grad_out, FL(fl_ew_nts) *ls, FL(fl_ew_nts) *gst)
{
    V xv, yv, l, g;
    if (tail) {
        xv = FL(fl_load_partial)(x, rem, RC(0.0));
        yv = FL(fl_load_partial)(y, rem, RC(0.0));
    } else {
        xv = FL(fl_load)(x);
        yv = FL(fl_load)(y);
    }
    l = FL(reg_eval)(kind, k, xv, yv, &g, what & FL_EW_GRAD);
    if (tail) {
        if (what & FL_EW_LOSS) FL(fl_store_partial)(loss_out, l, rem);
        if (what & FL_EW_GRAD) FL(fl_store_partial)(grad_out, g, rem);
    } else if (what & FL_EW_NT) { /* the streams know where */
        if (what & FL_EW_LOSS) FL(fl_ew_nts_put)(ls, l);
        if (what & FL_EW_GRAD) FL(fl_ew_nts_put)(gst, g);
    } else {
        if (what & FL_EW_LOSS) FL(fl_ew_store)(loss_out, l, 0);
        if (what & FL_EW_GRAD) FL(fl_ew_store)(grad_out, g, 0);
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
                            real *loss_out, real *grad_out, FL(fl_ew_nts) *ls,
                            FL(fl_ew_nts) *gst, fl_v_f64 *s, fl_v_f64 *c)
{
    fl_v_f64 p[FL_REG_U];
    for (int j = 0; j < FL_REG_U; j++) {
        const int64_t o = (int64_t)j * VL;
        if (!tail)
            p[j] = FL(fl_ew_widen_sum)(FL(reg_vec)(kind, what, 0, VL, x + o, y + o, k,
                                             (what & FL_EW_LOSS) ? loss_out + o : 0,
                                             (what & FL_EW_GRAD) ? grad_out + o : 0, ls,
                                             gst));
        else if (rem > o)
            p[j] = FL(fl_ew_widen_sum)(FL(reg_vec)(kind, what & ~FL_EW_NT, rem - o < VL,
                                             rem - o, x + o, y + o, k,
                                             (what & FL_EW_LOSS) ? loss_out + o : 0,
                                             (what & FL_EW_GRAD) ? grad_out + o : 0, ls,
                                             gst));
        else
            p[j] = fl_set1_f64(0.0);
    }
    fl_ew_twosum(s, c, (p[0] + p[1]) + (p[2] + p[3]));
}

FL_REG_INLINE double FL(reg_run)(const int kind, const int what, int64_t n, const real *x,
                             const real *y, const FL(reg_k) *k, real *loss_out,
                             real *grad_out)
{
    const int64_t step = (int64_t)FL_REG_U * VL;
    fl_v_f64 s = fl_set1_f64(0.0), c = fl_set1_f64(0.0);
    FL(fl_ew_nts) ls = {0}, gst = {0};
    if (what & FL_EW_NT) {
        FL(fl_ew_nts_init)(&ls, loss_out);
        FL(fl_ew_nts_init)(&gst, grad_out);
    }
    int64_t i = 0;
    for (; i <= n - step; i += step) {
        if (what & FL_EW_NT) /* large inputs (elementwise.h, FL_EW_PREFETCH_BYTES) */
            fl_ew_prefetch2(x + i, y + i, step * (int64_t)sizeof(real));
        FL(reg_step)(kind, what, 0, step, x + i, y + i, k,
                     (what & FL_EW_LOSS) ? loss_out + i : 0,
                     (what & FL_EW_GRAD) ? grad_out + i : 0, &ls, &gst, &s, &c);
    }
    if (what & FL_EW_NT) { /* the streams' last lanes, before the tail reads on */
        if (what & FL_EW_LOSS) FL(fl_ew_nts_finish)(&ls);
        if (what & FL_EW_GRAD) FL(fl_ew_nts_finish)(&gst);
    }
    if (i < n)
        FL(reg_step)(kind, what, 1, n - i, x + i, y + i, k,
                     (what & FL_EW_LOSS) ? loss_out + i : 0,
                     (what & FL_EW_GRAD) ? grad_out + i : 0, &ls, &gst, &s, &c);
    fl_ew_fence(what);
    return fl_ew_lanes_result(s, c);
}

/* One instance of reg_run per case: no per-element tests of loss_out / grad_out. */
#define FL_REG_DISPATCH(kind)                                                             \
    switch (fl_ew_what(n, sizeof(real), loss_out, grad_out)) {                                        \
    case 0: return FL(reg_run)(kind, 0, n, x, y, &k, 0, 0);                               \
    case FL_EW_LOSS: return FL(reg_run)(kind, FL_EW_LOSS, n, x, y, &k, loss_out, 0);    \
    case FL_EW_GRAD: return FL(reg_run)(kind, FL_EW_GRAD, n, x, y, &k, 0, grad_out);    \
    case FL_EW_LOSS | FL_EW_GRAD:                                                       \
        return FL(reg_run)(kind, FL_EW_LOSS | FL_EW_GRAD, n, x, y, &k, loss_out, grad_out); \
    case FL_EW_LOSS | FL_EW_NT:                                                         \
        return FL(reg_run)(kind, FL_EW_LOSS | FL_EW_NT, n, x, y, &k, loss_out, 0);      \
    case FL_EW_GRAD | FL_EW_NT:                                                         \
        return FL(reg_run)(kind, FL_EW_GRAD | FL_EW_NT, n, x, y, &k, 0, grad_out);      \
    default:                                                                              \
        return FL(reg_run)(kind, FL_EW_LOSS | FL_EW_GRAD | FL_EW_NT, n, x, y, &k,      \
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
