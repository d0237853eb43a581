/*
 * stream.c: STREAM's triad a = b + s c, the memory roofline bench/report.py measures
 * the kernels against ("of bandwidth": the bytes a single pass of a loss must move over
 * its time, against the triad's 3 x itemsize bytes per element over its time).
 *
 * Compiled per target like the loss families and written as the memory-bound ones are
 * (regression.c): vectors of the target's width, inputs prefetched as far ahead into L1
 * (FL_EW_PREFETCH_BYTES), streaming stores for outputs of >= FL_EW_NT_MIN_BYTES per call
 * (fl_ew_nts: whole lines with AVX-512; both in elementwise.h), a masked tail.  So it
 * measures what a loop of this package can draw from memory on one core, not what NumPy
 * can: a triad in NumPy is two passes with ordinary stores (a read-for-ownership per
 * written line), and reached less than half of this one's bandwidth on the CI machine
 * (11.6 against 26 GB/s, Sapphire-Rapids-class Xeon), so every memory-bound kernel
 * looked like 150-200% of "the bandwidth".
 * s c + b is a multiply and an add (no FMA: FP contraction is off), as STREAM's C.
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <stdint.h>
#include "fastloss.h"
#include "elementwise.h"

#define FL_REAL_F32
#include "stream.c"
#undef FL_REAL_F32
#define FL_REAL_F64
#include "stream.c"
#undef FL_REAL_F64

#else /* one template pass: real, FL(), R_*() come from real.h */
#include "real.h"

#undef V
#undef VL
#define V FL(fl_v)
#define VL FL(fl_lanes)

static inline __attribute__((always_inline)) void
FL(stream_triad_run)(const int nt, int64_t n, real *a, const real *b, const real *c,
                     real s)
{
    const V sv = FL(fl_set1)(s);
    const int64_t step = 4 * (int64_t)VL;
    FL(fl_ew_nts) st = {0};
    if (nt) FL(fl_ew_nts_init)(&st, a);
    int64_t i = 0;
    for (; i <= n - step; i += step) {
        if (nt) fl_ew_prefetch2(b + i, c + i, step * (int64_t)sizeof(real));
        for (int j = 0; j < 4; j++) {
            const int64_t o = i + (int64_t)j * VL;
            const V v = FL(fl_load)(b + o) + sv * FL(fl_load)(c + o);
            if (nt) FL(fl_ew_nts_put)(&st, v);
            else FL(fl_store)(a + o, v);
        }
    }
    if (nt) FL(fl_ew_nts_finish)(&st);
    for (; i < n; i += VL) {
        const int64_t m = n - i < VL ? n - i : VL;
        FL(fl_store_partial)(a + i, FL(fl_load_partial)(b + i, m, RC(0.0)) +
                                        sv * FL(fl_load_partial)(c + i, m, RC(0.0)), m);
    }
}

void FLK(fl_stream_triad)(int64_t n, real *a, const real *b, const real *c, double s)
{
    const int what = fl_ew_what(n, sizeof(real), 0, a);
    if (what & FL_EW_NT)
        FL(stream_triad_run)(1, n, a, b, c, (real)s);
    else
        FL(stream_triad_run)(0, n, a, b, c, (real)s);
    fl_ew_fence(what);
}
#endif /* FL_TEMPLATE_PASS */
