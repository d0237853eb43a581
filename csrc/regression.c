/*
 * regression.c: element-wise regression losses (Huber, smooth L1), float32 and float64
 * from one template: this file includes itself once per dtype (see real.h).
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <float.h>
#include <math.h>
#include "fastloss.h"
#include "accumulate.h"

#define FL_REAL_F32
#include "regression.c"
#undef FL_REAL_F32
#define FL_REAL_F64
#include "regression.c"
#undef FL_REAL_F64

#else /* one template pass: real, FL(), R_*() come from real.h */
#include "real.h"

/* Huber (torch): d = x - y; 0.5 d^2 inside |d| < delta, delta (|d| - delta/2) outside;
 * gradient d clamped to [-delta, delta].  NaN d propagates (both comparisons false). */
double FLK(fl_huber)(int64_t n, const real *x, const real *y, double delta_,
                    real *loss_out, real *grad_out, double grad_scale_)
{
    const real delta = (real)delta_, half_delta = RC(0.5) * (real)delta_;
    const real gs = (real)grad_scale_;
    fl_acc acc;
    fl_acc_init(&acc);
    for (int64_t i = 0; i < n; i++) {
        const real d = x[i] - y[i];
        const real ad = R_FABS(d);
        real loss, g;
        if (ad < delta) {
            loss = RC(0.5) * d * d;
            g = d;
        } else {
            loss = delta * (ad - half_delta);
            g = d > 0 ? delta : (d < 0 ? -delta : d); /* d is NaN here if not +-delta-ish */
        }
        if (loss_out) loss_out[i] = loss;
        if (grad_out) grad_out[i] = g * gs;
        fl_acc_add(&acc, (double)loss);
    }
    return fl_acc_result(&acc);
}

/* Smooth L1 (torch): 0.5 d^2 / beta inside |d| < beta, |d| - beta/2 outside; beta = 0 is
 * L1 with gradient sign(d) (0 at d = 0, as torch).  Gradient clamp(d / beta, -1, 1). */
double FLK(fl_smooth_l1)(int64_t n, const real *x, const real *y, double beta_,
                        real *loss_out, real *grad_out, double grad_scale_)
{
    const real beta = (real)beta_, half_beta = RC(0.5) * (real)beta_;
    const real gs = (real)grad_scale_;
    fl_acc acc;
    fl_acc_init(&acc);
    for (int64_t i = 0; i < n; i++) {
        const real d = x[i] - y[i];
        const real ad = R_FABS(d);
        real loss, g;
        if (ad < beta) {
            loss = RC(0.5) * d * d / beta;
            g = d / beta;
        } else {
            loss = ad - half_beta;
            g = d > 0 ? RC(1.0) : (d < 0 ? RC(-1.0) : d); /* sign, 0 at 0, NaN stays NaN */
        }
        if (loss_out) loss_out[i] = loss;
        if (grad_out) grad_out[i] = g * gs;
        fl_acc_add(&acc, (double)loss);
    }
    return fl_acc_result(&acc);
}

#endif /* FL_TEMPLATE_PASS */
