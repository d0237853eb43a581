/*
 * accumulate.h: the double-precision accumulator every kernel sums its losses with.
 *
 * Neumaier's compensated summation: the error of a sum of n terms is about
 * 2 eps |sum| instead of n eps sum|x_i|, so "sum" and "mean" of float64 losses match a
 * pairwise (NumPy) sum to ~1e-16 relative however long the array.  inf and NaN terms
 * propagate: the compensation is dropped once the running sum is not finite.
 */
#ifndef FASTLOSS_ACCUMULATE_H
#define FASTLOSS_ACCUMULATE_H

#include <math.h>

typedef struct {
    double sum;
    double comp;
} fl_acc;

static inline void fl_acc_init(fl_acc *a) { a->sum = 0.0; a->comp = 0.0; }

static inline void fl_acc_add(fl_acc *a, double v)
{
    double t = a->sum + v;
    if (fabs(a->sum) >= fabs(v))
        a->comp += (a->sum - t) + v;
    else
        a->comp += (v - t) + a->sum;
    a->sum = t;
}

static inline double fl_acc_result(const fl_acc *a)
{
    return isfinite(a->sum) ? a->sum + a->comp : a->sum;
}

#endif
