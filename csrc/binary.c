/*
 * binary.c: binary losses on logits / probabilities (BCE with logits, BCE, sigmoid focal),
 * float32 and float64 from one template: this file includes itself once per dtype (see
 * real.h), and setup.py compiles it once per CPU target (vector width from vecmath.h).
 *
 * Vector bodies, one pass, no allocation, no libm in the hot loops:
 *  - BCE with logits works in the input's precision.  Per vector, e = exp(-|x|),
 *    L = log1p(e) = softplus(-|x|), r = sigmoid(|x|) and er = sigmoid(-|x|) from
 *    vecmath's logistic pieces (float32: the lean fl_logistic_u2_f32, L and er within 2
 *    ulp, r within 1; float64: fl_logistic_f64, each within ~1.5 ulp), then
 *      softplus(+-x) = max(+-x, 0) + L      (L <= ln 2 <= the sum)
 *      sigmoid(x) = r or er
 *    so float32 losses stay within ~2.5 ulp.  Nothing overflows for any x.  Whole
 *    vectors go in blocks of FL_BIN_BLOCK with one range check (see bcel_block): this
 *    kernel is bound by its arithmetic, and one vector's evaluation alone is a chain
 *    that leaves the FMA units idle.
 *  - BCE on probabilities: log p and log1p(-p) from vecmath (< 1 ulp), torch's clamps.
 *  - Sigmoid focal must keep the focal factor's amplification of rounding errors --
 *    gamma |log m| ulps of m = 1 - p_t -- below float32's precision.  float32 with a
 *    hard label (0 or 1), |x| <= 87 and gamma 0 or an integer up to 8 (the usual case):
 *    float lanes, with m and m^gamma as double-words (fl_focal_hard_f32; losses within
 *    ~2.5 ulp).  Every other lane (soft labels, other gammas, float64): the focal factor
 *    and products in double lanes (float32: exp(-|x|) and log1p in float lanes, the rest
 *    as two double vectors, rounded once at the end; losses within ~1.5 ulp), see
 *    focal_core.  The choice is made per lane, never per vector.
 *  - Tails: masked loads / stores (same code as the body, lanes past the end hold
 *    harmless fill values and are excluded from the sum); nothing read or written out of
 *    bounds, and a lane's result never depends on its neighbours (the rare lanes that need
 *    a special formula, x = +-inf or a focal label outside [0, 1], are patched one lane at
 *    a time with scalar code that depends only on that lane).
 *  - Large calls (elementwise.h's streaming threshold) prefetch their inputs (see
 *    bcel_block) and write the whole blocks of BCE with logits and of hard-label focal
 *    with streaming stores (the rest with regular ones).  These kernels are bound by their
 *    arithmetic, but not by much: measured on a Sapphire-Rapids-class Xeon, float32, 16M
 *    elements, one thread, regular -> streaming stores: BCE with logits 0.90 -> 0.85
 *    (AVX-512) and 1.20 -> 1.15 ns per element (AVX2), focal 1.64 -> 1.54 (AVX2; 1.09
 *    either way with AVX-512).  (Before the blocks, streaming stores lost: 2.05 -> 2.32.)
 *    The loss sum is elementwise.h's compensated per-lane sum (exact to a few eps for
 *    any n).
 *  - Loss / gradient outputs and the broadcast of weights (constant or contiguous runs,
 *    see fl_bcast) are decided per run, not per element.
 *
 * Requires strict IEEE evaluation (no -ffast-math; -ffp-contract=off as in setup.py).
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "fastloss.h"
#include "elementwise.h"

#define FL_BIN_INLINE static inline __attribute__((always_inline))
#define FL_BIN_COLD static __attribute__((noinline, cold))

/* whole vectors per block in the logistic kernels (see bcel_block) */
#ifndef FL_BIN_BLOCK
#define FL_BIN_BLOCK 4
#endif

/* ------------------------------------------------------------ sigmoid focal core */

/* The call's constants for the focal kernels. */
typedef struct {
    fl_v_f64 g;      /* gamma, rounded to the kernel's dtype first (as torch does) */
    fl_v_f64 a1, a0; /* alpha_t = a1 y + a0 (1 - y): alpha, 1 - alpha */
    fl_v_f64 gs;     /* grad_scale */
    int gamma_zero, use_alpha;
    int gamma_int;   /* gamma if it is an integer in [1, 8], else 0 */
    /* float32 hard-label path (fl_focal_hard_f32) */
    int hard_ok;     /* gamma is 0 or gamma_int */
    fl_v_f32 g32;                /* gamma */
    fl_vi_f32 a0_32, ax_32;      /* a_t's bits for y = 0, and their xor with y = 1's */
    fl_vi_f32 a0gs_32, axgs_32;  /* the same for (1 - 2y) a_t grad_scale */
} fl_focal_k;

/* torchvision's sigmoid_focal_loss and its gradient for one double vector, for labels
 * y in [0, 1] and finite or NaN x (other lanes are patched by the caller), given
 * e = exp(-|x|), L = log1p(e), r = 1 / (1 + e), er = e r (see the kernel for their
 * precision):
 *   p = sigmoid(x), ce = (1 - y) softplus(x) + y softplus(-x),
 *   m = 1 - p_t = p (1 - y) + (1 - p) y,   F = m^gamma,  a_t = alpha y + (1 - alpha)(1 - y)
 *   loss = a_t ce F
 *   grad = a_t (ce' F + gamma ce F (1 - 2y) p (1 - p) / m),   ce' = (1 - y) p - y (1 - p)
 * With e = exp(-|x|), r = 1 / (1 + e):  m = u / (1 + e), u = a + b e, (a, b) = (1 - y, y)
 * for x >= 0 and (y, 1 - y) for x < 0 -- a sum of non-negative terms, no cancellation --
 * and log m = log u - L, L = log1p(e).  Hard labels (a == 0 or b == 0) need no log:
 * u = e (log u = -|x|) or u = 1.  F = exp(gamma log m) never forms m^(gamma - 1) (finite
 * for 0 < gamma < 1), underflows cleanly to 0, and p (1 - p) / m = e r / u (= r when
 * a == 0, where u = e may underflow).  Integer gamma in [1, 8] (2 is the usual one):
 * F = m^gamma by multiplication, m = u r (a few ulp of double).  Otherwise the exponent
 * gamma log m is carried as a double-word, so F is within a few ulp of double for hard
 * labels (log u exact) and within ~|gamma log u| ulp for soft ones.  Both far below
 * float32's ulp; for float64 results agree with the reference to ~1e-14. */
FL_BIN_INLINE void fl_focal_core(const fl_focal_k *k, fl_v_f64 x, fl_v_f64 y, fl_v_f64 e,
                                 fl_v_f64 L, fl_v_f64 r, fl_v_f64 er,
                                 fl_v_f64 *loss_o, fl_v_f64 *grad_o, const int want_grad)
{
    const fl_v_f64 zero = fl_set1_f64(0.0), one = fl_set1_f64(1.0);
    const fl_vi_f64 ix = (fl_vi_f64)x, xpos = x >= zero;
    const fl_v_f64 spx = (fl_v_f64)(ix & ~(ix >> 63)) + L;             /* max(x, 0) + L */
    const fl_v_f64 spmx = (fl_v_f64)(ix & ((ix >> 63) & 0x7fffffffffffffffLL)) + L; /* max(-x, 0) + L */
    const fl_v_f64 oy = one - y;
    const fl_v_f64 ce = oy * spx + y * spmx;
    const fl_v_f64 at = k->use_alpha ? k->a1 * y + k->a0 * oy : one;
    fl_v_f64 F = one, t2 = zero;
    if (!k->gamma_zero) {
        const fl_v_f64 a = fl_select_f64(xpos, oy, y), b = fl_select_f64(xpos, y, oy);
        const fl_vi_f64 a0 = a == zero;
        const fl_vi_f64 soft = (y != zero) & (y != one);
        const int any_soft = fl_any_f64(soft);
        fl_v_f64 u = one, ratio;
        if (FL__UNLIKELY(any_soft)) {
            u = fl_fma_f64(b, e, a);
            ratio = fl_select_f64(a0, r, er / u);
        } else { /* u = e (a == 0) or exactly 1 */
            ratio = fl_select_f64(a0, r, er);
        }
        if (k->gamma_int > 0) {
            /* integer gamma (2 is the usual one): m^gamma by multiplication, m = u r
             * (= e r where a == 0: u = e may underflow, e r does not before m does) */
            const fl_v_f64 m = any_soft ? fl_select_f64(a0, er, u * r) : fl_select_f64(a0, er, r);
            F = m;
            for (int j = 1; j < k->gamma_int; j++) F = F * m;
        } else {
            /* F = exp(gamma log m), log m = log u - L, with the exponent as a double-word:
             * its rounding (~|gamma log m| ulps of F when log m is large, e.g. hard labels
             * at |x| = 45) is carried in the correction term; exact when F underflows. */
            const fl_v_f64 ax = fl_abs_f64(x);
            const fl_v_f64 logu = any_soft ? fl_select_f64(a0, -ax, fl_log_u1_f64(u))
                                           : fl_select_f64(a0, -ax, zero);
            const fl_v_f64 lmh = logu - L, lmb = lmh - logu;
            const fl_v_f64 lml = (logu - (lmh - lmb)) + (-L - lmb); /* logu - L = lmh + lml */
            const fl_v_f64 ph = k->g * lmh, pl = -fl__fnma_exact_f64(k->g, lmh, ph);
            const fl_v_f64 eh = fl_exp_u1_f64(ph);
            F = fl_select_f64(eh == zero, zero, fl_fma_f64(eh, fl_fma_f64(k->g, lml, pl), eh));
        }
        if (want_grad) t2 = (k->g * (one - (y + y))) * (ce * (F * ratio));
    }
    *loss_o = at * (ce * F);
    if (want_grad) {
        const fl_v_f64 sig_x = fl_select_f64(xpos, r, er), sig_mx = fl_select_f64(xpos, er, r);
        const fl_v_f64 dce = oy * sig_x - y * sig_mx;
        *grad_o = (at * (dce * F + t2)) * k->gs;
    }
}

/* Sigmoid focal, float32, hard labels (y in {0, 1}), |x| <= 87, gamma 0 or an integer in
 * [1, 8] -- the usual case -- in float lanes, twice as many per instruction as the double
 * core.  With z = x for y = 1 and -x for y = 0:
 *   p_t = sigmoid(z), m = 1 - p_t = sigmoid(-z), ce = softplus(-z) = max(-z, 0) + L
 *   loss = a_t ce m^gamma
 *   grad = (1 - 2y) a_t m^gamma (m + gamma ce p_t)      (= torchvision's; every term >= 0)
 * m comes as a double-word from fl__logistic_m_dw_f32 (sigmoid(|x|) where z < 0, else
 * sigmoid(-|x|)), with p_t = 1 - m within ~2 ulp, and m^gamma is a double-word product, so
 * the float-sized errors left are ce's (L's, ~1 ulp, or 0.5 ulp of max(-z, 0) + L) and
 * the last two roundings: losses within ~2.5 ulp, gradients within a few (p_t's ~2 ulp
 * weigh in the gamma term only).  a_t and (1 - 2y) a_t grad_scale are picked by label with bit
 * operations (a0 ^ (y1 & (a0 ^ a1))): a blend is 3 uops on some x86 cores.  The caller
 * guarantees the lanes' conditions (focal_hardmask). */
static inline __attribute__((always_inline)) void
fl_focal_hard_f32(const fl_focal_k *k, const int nv /* vectors: 1 or FL_BIN_BLOCK */,
                  const fl_v_f32 *x, const fl_v_f32 *y, fl_v_f32 *loss, fl_v_f32 *grad,
                  int want_grad, int gi /* gamma, 0 to 8 (a constant where the caller can) */)
{
    const fl_v_f32 zero = fl_set1_f32(0.0f), one = fl_set1_f32(1.0f);
    fl_vi_f32 y1[FL_BIN_BLOCK], zneg[FL_BIN_BLOCK];
    fl_v_f32 L[FL_BIN_BLOCK], mh[FL_BIN_BLOCK], ml[FL_BIN_BLOCK], pt[FL_BIN_BLOCK];
    /* the vectors' logistic pieces first, then their products: the core overlaps the
     * independent chains better in that order (AVX2, in L2: 1.55 -> 1.40 ns/el) */
#pragma GCC unroll 16
    for (int v = 0; v < nv; v++) {
        y1[v] = y[v] == one;
        zneg[v] = (x[v] >= zero) ^ y1[v]; /* z < 0: m = sigmoid(|x|) */
        (void)fl__logistic_m_dw_f32(x[v], zneg[v], &L[v], &mh[v], &ml[v], &pt[v]);
    }
#pragma GCC unroll 16
    for (int v = 0; v < nv; v++) {
        const fl_v_f32 ce = (fl_v_f32)(zneg[v] & (fl_vi_f32)fl_abs_f32(x[v])) + L[v];
        fl_v_f32 Fh = one, Fl = zero;
        if (gi > 0) {
            Fh = mh[v];
            Fl = ml[v];
            if (gi > 1) { /* m^2 = mh^2 + 2 mh ml, double-word */
                Fh = mh[v] * mh[v];
                Fl = fl_fma_f32(mh[v] + mh[v], ml[v], -fl__fnma_exact_f32(mh[v], mh[v], Fh));
            }
            for (int j = 2; j < gi; j++) { /* (Fh + Fl)(mh + ml), double-word */
                const fl_v_f32 h = Fh * mh[v];
                Fl = fl_fma_f32(Fh, ml[v], Fl * mh[v]) - fl__fnma_exact_f32(Fh, mh[v], h);
                Fh = h;
            }
        }
        const fl_v_f32 at = (fl_v_f32)(k->a0_32 ^ (y1[v] & k->ax_32));
        if (want_grad) { /* m and F each rounded once from their double-words */
            const fl_v_f32 inner = fl_fma_f32(k->g32 * ce, pt[v], mh[v] + ml[v]);
            /* (1 - 2y) a_t grad_scale: the label's sign is in the constant */
            grad[v] = ((Fh + Fl) * inner) * (fl_v_f32)(k->a0gs_32 ^ (y1[v] & k->axgs_32));
        } else {
            grad[v] = zero;
        }
        loss[v] = at * fl_fma_f32(ce, Fh, ce * Fl);
    }
}

#define FL_REAL_F32
#include "binary.c"
#undef FL_REAL_F32
#define FL_REAL_F64
#include "binary.c"
#undef FL_REAL_F64

#else /* one template pass: real, FL(), R_*() come from real.h */
#include "real.h"

#undef V
#undef VI
#undef VL
#define V FL(fl_v)
#define VI FL(fl_vi)
#define VL FL(fl_lanes)

#undef FL_BIN_IOTA
#undef FL_BIN_SET1I
#undef FL_BIN_INF_BITS
#undef FL_BIN_ABS_MASK
#if defined(FL_REAL_F32)
#define FL_BIN_IOTA() fl__iota_i32()
#define FL_BIN_SET1I(c) fl__set1_i32((int32_t)(c))
#define FL_BIN_INF_BITS 0x7f800000
#define FL_BIN_ABS_MASK 0x7fffffff
#else
#define FL_BIN_IOTA() fl__iota_i64()
#define FL_BIN_SET1I(c) fl__set1_i64((int64_t)(c))
#define FL_BIN_INF_BITS 0x7ff0000000000000LL
#define FL_BIN_ABS_MASK 0x7fffffffffffffffLL
#endif

/* lanes [0, rem) of a vector as a mask */
FL_BIN_INLINE VI FL(bin_first)(int64_t rem)
{
    return FL_BIN_IOTA() < FL_BIN_SET1I(rem < VL ? rem : VL);
}

/* ------------------------------------------------------------ broadcast cursor */

/* Walks a broadcast operand (ptr, inner, len) from element 0 without any division:
 * element i uses ptr[(i / inner) % len].  The loop is cut into runs in which the operand
 * is either constant (stride 0) or contiguous (stride 1). */
typedef struct {
    const real *p; /* NULL: all ones */
    int64_t inner, len;
    int64_t j;     /* current index into p */
    int64_t c;     /* position inside the current block of `inner` equal elements */
} FL(fl_bcast);

static const real FL(fl_one_) = RC(1.0);

FL_BIN_INLINE void FL(bc_init)(FL(fl_bcast) *b, const real *p, int64_t inner, int64_t len)
{
    /* inner, len >= 1 is the caller's contract; clamp so that a bad call cannot loop. */
    b->p = p;
    b->inner = inner < 1 ? 1 : inner;
    b->len = len < 1 ? 1 : len;
    b->j = 0;
    b->c = 0;
}

/* Current run: *ptr, *stride (0 or 1) and how many elements it lasts (INT64_MAX: forever). */
FL_BIN_INLINE int64_t FL(bc_run)(const FL(fl_bcast) *b, const real **ptr, int *stride)
{
    if (!b->p) { *ptr = &FL(fl_one_); *stride = 0; return INT64_MAX; }
    *ptr = b->p + b->j;
    if (b->len == 1) { *stride = 0; return INT64_MAX; }
    if (b->inner == 1) { *stride = 1; return b->len - b->j; }
    *stride = 0;
    return b->inner - b->c;
}

FL_BIN_INLINE void FL(bc_advance)(FL(fl_bcast) *b, int64_t m)
{
    if (!b->p || b->len == 1) return;
    if (b->inner == 1) {
        b->j += m;
        if (b->j == b->len) b->j = 0;
    } else {
        b->c += m;
        if (b->c == b->inner) {
            b->c = 0;
            if (++b->j == b->len) b->j = 0;
        }
    }
}

/* A weight vector from a run: constant (stride 0) or contiguous; tail lanes get fill. */
FL_BIN_INLINE V FL(bin_wload)(const real *w, int stride, int64_t o, int64_t rem, int tail)
{
    if (!stride) return FL(fl_set1)(w[0]);
    return tail ? FL(fl_load_partial)(w + o, rem, RC(1.0)) : FL(fl_load)(w + o);
}

/* Store one loss / gradient vector (whole, possibly streaming, or the first rem lanes). */
FL_BIN_INLINE void FL(bin_store)(real *p, V v, int64_t rem, int tail, int nt)
{
    if (tail) FL(fl_store_partial)(p, v, rem);
    else FL(fl_ew_store)(p, v, nt);
}

/* ------------------------------------------------------------ BCE with logits */

/* Algebraically identical to torch's (1 - y) x + lw softplus(-x), lw = 1 + (pw - 1) y:
 *   loss = w ((1 - y) softplus(x) + pw y softplus(-x))
 *   grad = w ((1 - y) sigmoid(x) - pw y sigmoid(-x))
 * For y in [0, 1], pw >= 0 both loss terms are >= 0, so there is no cancellation
 * (torch's form loses everything for x << 0, y = 0: x + softplus(-x) = softplus(x)).
 * 1 - y is carried as c1 + c1l exactly (y = 0.1 in float32: 1 - y rounds).
 * x = +-inf (cold, per lane, bcel_inf): the infinite softplus contributes its limit: 0 if
 * its coefficient is 0, else +-inf; a zero weight times an infinite term is 0. */
FL_BIN_COLD V FL(bcel_inf)(V x, V loss, V c1, V c2, V w)
{
    for (int i = 0; i < VL; i++) {
        if (R_FABS(x[i]) != (real)INFINITY) continue;
        const real c_inf = x[i] > 0 ? c1[i] : c2[i], c_zero = x[i] > 0 ? c2[i] : c1[i];
        const real t = (c_inf == 0 ? RC(0.0) : c_inf * (real)INFINITY) + c_zero * RC(0.0);
        loss[i] = (w[i] == 0 && R_FABS(t) == (real)INFINITY) ? RC(0.0) : w[i] * t;
    }
    return loss;
}

/* The logistic pieces (see vecmath.h): float32 from the lean fl_logistic_u2_f32 (L, er
 * within 2 ulp, r within 1: these kernels are bound by their arithmetic), float64 from
 * fl_logistic_f64.  FL_BIN_BIG(x): lanes that need the one-vector path (bcel_one: the
 * logistic's slow path, the patch for infinite x), so that a block of vectors can be
 * checked once and then evaluated without branches. */
#undef FL_BIN_LOGISTIC
#undef FL_BIN_LOGISTIC_FAST
#undef FL_BIN_BIG
#if defined(FL_REAL_F32)
#define FL_BIN_LOGISTIC fl_logistic_u2_f32
#define FL_BIN_LOGISTIC_FAST fl__logistic_u2_body_f32
#define FL_BIN_BIG(x) fl_logistic_u2_big_f32(x)
#else
#define FL_BIN_LOGISTIC fl_logistic_f64
#define FL_BIN_LOGISTIC_FAST fl_logistic_f64 /* checks its own range */
#define FL_BIN_BIG(x) (((VI)(x) & FL_BIN_ABS_MASK) >= FL_BIN_INF_BITS) /* bcel_one patches inf */
#endif

/* Loss and gradient from the logistic pieces.  plain (no weight, no pos_weight):
 *   loss = (max(x, 0) - y x) + L      max(x, 0) - y x = (1 - y) max(x, 0) + y max(-x, 0)
 *                                     with the product exact (FMA, or Dekker's product on
 *                                     targets without one): for y in [0, 1] the two terms
 *                                     are >= 0, so no cancellation
 *   grad = x >= 0 ? (1 - y) - er : er - y      (= sigmoid(x) - y; for hard labels no
 *                                     cancellation: -er or er where the result is small)
 * otherwise the weighted form above.  x = +-inf is patched by the caller (bcel_inf). */
FL_BIN_INLINE V FL(bcel_formula)(V x, V y, V w, V pw, V gs, V L, V r, V er, V *grad,
                                 int want_grad, int plain)
{
    const V zero = FL(fl_set1)(RC(0.0)), one = FL(fl_set1)(RC(1.0));
    const VI ix = (VI)x;
    const V relu = (V)(ix & ~(ix >> (8 * sizeof(real) - 1)));                  /* max(x, 0) */
    if (plain) {
        if (want_grad) {
            const V c1 = one - y;
            *grad = FL(fl_select)(x >= zero, c1 - er, er - y) * gs;
        }
        return FL(fl__fnma_exact)(y, x, relu) + L;
    }
    const V spx = relu + L;                                                       /* softplus(x) */
    const V spmx = (V)(ix & ((ix >> (8 * sizeof(real) - 1)) & FL_BIN_ABS_MASK)) + L; /* softplus(-x) */
    const V c1 = one - y, c1l = -y - (c1 - one), c2 = pw * y; /* 1 - y = c1 + c1l */
    if (want_grad) {
        const VI xpos = x >= zero;
        const V sig_x = FL(fl_select)(xpos, r, er), sig_mx = FL(fl_select)(xpos, er, r);
        *grad = (w * (c1 * sig_x - c2 * sig_mx)) * gs;
    }
    return w * ((c1 * spx + c2 * spmx) + c1l * spx);
}

/* One vector at element i of a run (tail: only rem < VL elements), any x: loads,
 * evaluates, patches infinite x, stores; returns the loss vector with lanes past the end
 * zeroed. */
FL_BIN_INLINE V FL(bcel_one)(int64_t i, int64_t rem, int tail, const real *x, const real *y,
                             const real *w, int ws, const real *pw, int ps,
                             real *loss_out, real *grad_out, int what, V gs, int plain)
{
    const V one = FL(fl_set1)(RC(1.0));
    V xv, yv, g = FL(fl_set1)(RC(0.0)), L, r, er;
    if (tail) {
        xv = FL(fl_load_partial)(x + i, rem, RC(0.0));
        yv = FL(fl_load_partial)(y + i, rem, RC(0.0));
    } else {
        xv = FL(fl_load)(x + i);
        yv = FL(fl_load)(y + i);
    }
    const V wv = plain ? one : FL(bin_wload)(w, ws, i, rem, tail);
    const V pwv = plain ? one : FL(bin_wload)(pw, ps, i, rem, tail);
    FL_BIN_LOGISTIC(xv, &L, &r, &er);
    V l = FL(bcel_formula)(xv, yv, wv, pwv, gs, L, r, er, &g, what & FL_EW_GRAD, plain);
    if (FL__UNLIKELY(FL(fl_any)(((VI)xv & FL_BIN_ABS_MASK) == FL_BIN_INF_BITS)))
        l = FL(bcel_inf)(xv, l, one - yv, pwv * yv, wv);
    if (tail) l = FL(fl_select)(FL(bin_first)(rem), l, FL(fl_set1)(RC(0.0)));
    if (what & FL_EW_LOSS) FL(bin_store)(loss_out + i, l, rem, tail, what & FL_EW_NT);
    if (what & FL_EW_GRAD) FL(bin_store)(grad_out + i, g, rem, tail, what & FL_EW_NT);
    return l;
}

/* FL_BIN_BLOCK whole vectors at element i: one range check for all of them, then, in the
 * usual case, their evaluations in one branch-free stretch, which the core overlaps (one
 * vector's evaluation is a long dependency chain: alone, it leaves the FMA units idle
 * most of the time).  The same bits per element as bcel_one.  Measured, float32 BCE
 * with logits, AVX-512 on a Xeon with one 512-bit FMA port, in L2: 2.14 ns per element
 * one vector at a time with fl_logistic_f32; 1.04 with fl_logistic_u2_f32; 0.68 with it in
 * blocks of 4 (0.79 in blocks of 2, 0.70 in blocks of 8).
 * pf: the call is large (fl_ew_what's streaming threshold), so its inputs come from DRAM:
 * prefetch them FL_BIN_PREFETCH_BYTES ahead into L1, since one core's demand loads alone
 * leave bandwidth unused (16M elements: 1.15-1.21 -> 0.94-0.97 ns per element). */
#ifndef FL_BIN_PREFETCH_BYTES
#define FL_BIN_PREFETCH_BYTES 1024
#endif
/* the two inputs' cache lines FL_BIN_PREFETCH_BYTES past a block, into L1 */
FL_BIN_INLINE void FL(bin_prefetch_block)(const real *x, const real *y)
{
    for (int b = 0; b < FL_BIN_BLOCK * VL * (int)sizeof(real); b += 64) {
        __builtin_prefetch((const char *)x + FL_BIN_PREFETCH_BYTES + b, 0, 3);
        __builtin_prefetch((const char *)y + FL_BIN_PREFETCH_BYTES + b, 0, 3);
    }
}
FL_BIN_INLINE void FL(bcel_block)(int64_t i, const real *x, const real *y,
                                  const real *w, int ws, const real *pw, int ps,
                                  real *loss_out, real *grad_out, int what, V gs,
                                  fl_v_f64 *s, fl_v_f64 *c, int plain, int pf)
{
    const V one = FL(fl_set1)(RC(1.0));
    V xv[FL_BIN_BLOCK], L[FL_BIN_BLOCK], r[FL_BIN_BLOCK], er[FL_BIN_BLOCK];
    VI big = FL_BIN_SET1I(0) != FL_BIN_SET1I(0);
    fl_v_f64 acc = fl_set1_f64(0.0);
    if (pf) FL(bin_prefetch_block)(x + i, y + i);
#pragma GCC unroll 16
    for (int k = 0; k < FL_BIN_BLOCK; k++) {
        xv[k] = FL(fl_load)(x + i + k * VL);
        big |= FL_BIN_BIG(xv[k]);
    }
    if (FL__UNLIKELY(FL(fl_any)(big))) {
        for (int k = 0; k < FL_BIN_BLOCK; k++)
            acc += FL(fl_ew_widen_sum)(FL(bcel_one)(i + k * VL, VL, 0, x, y, w, ws, pw, ps,
                                                    loss_out, grad_out, what, gs, plain));
    } else {
#pragma GCC unroll 16
        for (int k = 0; k < FL_BIN_BLOCK; k++)
            FL_BIN_LOGISTIC_FAST(xv[k], &L[k], &r[k], &er[k]);
#pragma GCC unroll 16
        for (int k = 0; k < FL_BIN_BLOCK; k++) {
            const int64_t o = i + k * VL;
            const V yv = FL(fl_load)(y + o);
            const V wv = plain ? one : FL(bin_wload)(w, ws, o, VL, 0);
            const V pwv = plain ? one : FL(bin_wload)(pw, ps, o, VL, 0);
            V g = FL(fl_set1)(RC(0.0));
            const V l = FL(bcel_formula)(xv[k], yv, wv, pwv, gs, L[k], r[k], er[k], &g,
                                         what & FL_EW_GRAD, plain);
            if (what & FL_EW_LOSS) FL(fl_ew_store)(loss_out + o, l, pf);
            if (what & FL_EW_GRAD) FL(fl_ew_store)(grad_out + o, g, pf);
            acc += FL(fl_ew_widen_sum)(l);
        }
    }
    fl_ew_twosum(s, c, acc);
}

/* One run of m elements with constant-or-contiguous w and pw (ws, ps in {0, 1}; plain:
 * neither given): blocks of FL_BIN_BLOCK vectors (their losses added in double, then to
 * the compensated sum), then the rest one vector at a time. */
FL_BIN_INLINE void FL(bcel_run)(int64_t m, const real *x, const real *y,
                                const real *w, int ws, const real *pw, int ps,
                                real *loss_out, real *grad_out, int what, V gs,
                                fl_v_f64 *s, fl_v_f64 *c, int plain, int pf)
{
    int64_t i = 0;
    for (; i + FL_BIN_BLOCK * VL <= m; i += FL_BIN_BLOCK * VL)
        FL(bcel_block)(i, x, y, w, ws, pw, ps, loss_out, grad_out, what, gs, s, c, plain, pf);
    for (; i < m; i += VL) {
        const V l = FL(bcel_one)(i, m - i, m - i < VL, x, y, w, ws, pw, ps, loss_out, grad_out,
                                 what, gs, plain);
        fl_ew_twosum(s, c, FL(fl_ew_widen_sum)(l));
    }
}

double FLK(fl_bce_logits)(int64_t n, const real *x, const real *y,
                         const real *w, int64_t w_inner, int64_t w_len,
                         const real *pw, int64_t pw_inner, int64_t pw_len,
                         real *loss_out, real *grad_out, double grad_scale_)
{
    const V gs = FL(fl_set1)((real)grad_scale_);
    const int what0 = fl_ew_what(n, sizeof(real), loss_out, grad_out);
    const int what = what0 & ~FL_EW_NT, pf = (what0 & FL_EW_NT) != 0; /* above */
    FL(fl_bcast) bw, bp;
    fl_v_f64 s = fl_set1_f64(0.0), c = fl_set1_f64(0.0);
    FL(bc_init)(&bw, w, w_inner, w_len);
    FL(bc_init)(&bp, pw, pw_inner, pw_len);
    for (int64_t i = 0; i < n;) {
        const real *wp, *pwp;
        int ws, ps;
        int64_t m = n - i, mw = FL(bc_run)(&bw, &wp, &ws), mp = FL(bc_run)(&bp, &pwp, &ps);
        if (mw < m) m = mw;
        if (mp < m) m = mp;
        real *lo = loss_out ? loss_out + i : NULL, *go = grad_out ? grad_out + i : NULL;
        if (!w && !pw) FL(bcel_run)(m, x + i, y + i, wp, 0, pwp, 0, lo, go, what, gs, &s, &c, 1, pf);
        else switch (ws * 2 + ps) {
        case 0: FL(bcel_run)(m, x + i, y + i, wp, 0, pwp, 0, lo, go, what, gs, &s, &c, 0, pf); break;
        case 1: FL(bcel_run)(m, x + i, y + i, wp, 0, pwp, 1, lo, go, what, gs, &s, &c, 0, pf); break;
        case 2: FL(bcel_run)(m, x + i, y + i, wp, 1, pwp, 0, lo, go, what, gs, &s, &c, 0, pf); break;
        default: FL(bcel_run)(m, x + i, y + i, wp, 1, pwp, 1, lo, go, what, gs, &s, &c, 0, pf); break;
        }
        FL(bc_advance)(&bw, m);
        FL(bc_advance)(&bp, m);
        i += m;
    }
    fl_ew_fence(what0);
    return fl_ew_lanes_result(s, c);
}

/* ------------------------------------------------------------ BCE on probabilities */

/* torch: loss = w ((y - 1) max(log1p(-p), -100) - y max(log p, -100))
 *        grad = w (p - y) / max((1 - p) p, 1e-12)
 * p = 0 or 1 is fine (the -100 clamp; 0 * -100 = 0).  p outside [0, 1], not NaN: NaN
 * loss/grad, first such index in *err; NaN p propagates without being an error. */
FL_BIN_INLINE void FL(bce_run)(int64_t m, int64_t i0, const real *p, const real *y,
                               const real *w, int ws, real *loss_out, real *grad_out,
                               int what, V gs, fl_v_f64 *s, fl_v_f64 *c, int64_t *err)
{
    const int nt = what & FL_EW_NT;
    const V one = FL(fl_set1)(RC(1.0)), m100 = FL(fl_set1)(RC(-100.0));
    const V tiny = FL(fl_set1)(RC(1e-12)), nan = FL(fl_set1)((real)NAN);
    for (int64_t i = 0; i < m; i += VL) {
        const int64_t rem = m - i;
        const int tail = rem < VL;
        V pv, yv;
        if (tail) {
            pv = FL(fl_load_partial)(p + i, rem, RC(0.5));
            yv = FL(fl_load_partial)(y + i, rem, RC(0.0));
        } else {
            pv = FL(fl_load)(p + i);
            yv = FL(fl_load)(y + i);
        }
        const V wv = FL(bin_wload)(w, ws, i, rem, tail);
        V lp = FL(fl_log_u1)(pv), lq = FL(fl_log1p_u1)(-pv);
        lp = FL(fl_select)(lp < m100, m100, lp); /* NaN stays NaN */
        lq = FL(fl_select)(lq < m100, m100, lq);
        V l = wv * ((yv - one) * lq - yv * lp);
        V g = FL(fl_set1)(RC(0.0));
        if (what & FL_EW_GRAD) {
            V den = (one - pv) * pv;
            den = FL(fl_select)(den < tiny, tiny, den);
            g = ((gs * (pv - yv)) / den) * wv;
        }
        VI bad = (pv < RC(0.0)) | (pv > one);
        if (tail) bad &= FL(bin_first)(rem);
        if (FL__UNLIKELY(FL(fl_any)(bad))) {
            l = FL(fl_select)(bad, nan, l);
            g = FL(fl_select)(bad, nan, g);
            if (*err < 0)
                for (int k = 0; k < VL; k++)
                    if (bad[k]) { *err = i0 + i + k; break; }
        }
        if (tail) l = FL(fl_select)(FL(bin_first)(rem), l, FL(fl_set1)(RC(0.0)));
        if (what & FL_EW_LOSS) FL(bin_store)(loss_out + i, l, rem, tail, nt);
        if (what & FL_EW_GRAD) FL(bin_store)(grad_out + i, g, rem, tail, nt);
        fl_ew_twosum(s, c, FL(fl_ew_widen_sum)(l));
    }
}

double FLK(fl_bce)(int64_t n, const real *p, const real *y,
                  const real *w, int64_t w_inner, int64_t w_len,
                  real *loss_out, real *grad_out, double grad_scale_, int64_t *err_index)
{
    const V gs = FL(fl_set1)((real)grad_scale_);
    const int what = fl_ew_what(n, sizeof(real), loss_out, grad_out) & ~FL_EW_NT; /* above */
    int64_t err = -1;
    FL(fl_bcast) bw;
    fl_v_f64 s = fl_set1_f64(0.0), c = fl_set1_f64(0.0);
    FL(bc_init)(&bw, w, w_inner, w_len);
    for (int64_t i = 0; i < n;) {
        const real *wp;
        int ws;
        int64_t m = n - i, mw = FL(bc_run)(&bw, &wp, &ws);
        if (mw < m) m = mw;
        real *lo = loss_out ? loss_out + i : NULL, *go = grad_out ? grad_out + i : NULL;
        if (ws) FL(bce_run)(m, i, p + i, y + i, wp, 1, lo, go, what, gs, &s, &c, &err);
        else FL(bce_run)(m, i, p + i, y + i, wp, 0, lo, go, what, gs, &s, &c, &err);
        FL(bc_advance)(&bw, m);
        i += m;
    }
    fl_ew_fence(what);
    if (err_index) *err_index = err;
    return fl_ew_lanes_result(s, c);
}

/* ------------------------------------------------------------ sigmoid focal */

/* The lanes focal_core does not cover, in the kernel's dtype, one at a time:
 * x = +-inf: the limits.  p = 1 (x = +inf) or 0; ce = c inf with c = 1 - y (x = +inf) or
 * y, m = c too; loss = a_t ce m^gamma: 0 if c == 0, else inf (sign of c; NaN if m^gamma
 * is); grad: the gamma term -> 0 (ce e^{-|x|} -> 0), so grad = a_t ce' m^gamma.
 * y outside [0, 1] or NaN: torch's formula verbatim (pow; NaN where torch's pow is). */
FL_BIN_COLD void FL(focal_odd)(real x, real y, real alpha, real g, real gs,
                               real *loss_o, real *grad_o)
{
    const real one = RC(1.0);
    const real at = alpha >= 0 ? alpha * y + (one - alpha) * (one - y) : one;
    if (R_FABS(x) == (real)INFINITY) {
        const real cc = x > 0 ? one - y : y;
        const real F = g == 0 ? one : R_POW(cc, g);
        real core = cc == 0 ? RC(0.0) : cc * (real)INFINITY;
        if (F != 0) core *= F; /* F == 0 with c != 0 is underflow: the limit is still inf */
        *loss_o = (at == 0 && R_FABS(core) == (real)INFINITY) ? RC(0.0) : at * core;
        *grad_o = ((at * (x > 0 ? cc : -cc)) * F) * gs;
        return;
    }
    const real ax = R_FABS(x), e = R_EXP(-ax), l = R_LOG1P(e), r = one / (one + e);
    const real sig_x = x >= 0 ? r : e * r, sig_mx = x >= 0 ? e * r : r;
    const real spx = (x > 0 ? x : RC(0.0)) + l, spmx = (x < 0 ? -x : RC(0.0)) + l;
    const real ce = (one - y) * spx + y * spmx, dce = (one - y) * sig_x - y * sig_mx;
    const real m = sig_x * (one - y) + sig_mx * y;
    real F = one, t2 = RC(0.0);
    if (g != 0) {
        F = R_POW(m, g);
        t2 = ((g * ce) * (sig_x * sig_mx * (one - RC(2.0) * y))) * R_POW(m, g - one);
    } else {
        F = m == m ? one : m; /* keep NaN y propagating (ce is NaN too anyway) */
    }
    *loss_o = at * (ce * F);
    *grad_o = (at * (dce * F + t2)) * gs;
}

/* Lanes that focal_core does not cover: |x| = inf, or y outside [0, 1] (or NaN). */
FL_BIN_INLINE VI FL(focal_oddmask)(V x, V y)
{
    return (((VI)x & FL_BIN_ABS_MASK) == FL_BIN_INF_BITS) |
           ~((y >= RC(0.0)) & (y <= RC(1.0)));
}

FL_BIN_COLD void FL(focal_patch)(VI odd, V x, V y, real alpha, real g, real gs, V *l, V *gr)
{
    for (int k = 0; k < VL; k++)
        if (odd[k]) {
            real lk, gk;
            FL(focal_odd)(x[k], y[k], alpha, g, gs, &lk, &gk);
            (*l)[k] = lk;
            (*gr)[k] = gk;
        }
}

/* One vector, any x and y: the focal core in double lanes (float32: widened), odd lanes
 * patched; float32 lanes where the hard-label path applies (hard, from focal_hardmask)
 * take its results instead, so that an element's bits never depend on its neighbours
 * (and a vector of hard lanes only, a small call's, takes that path alone). */
FL_BIN_INLINE V FL(focal_general)(const fl_focal_k *k, V xv, V yv, double alpha, real ra,
                                  real g, real rgs, V *gr_o, int want_grad, VI hard)
{
    V l, gr;
#if defined(FL_REAL_F32)
    if (!fl_any_f32(~hard)) {
        gr = fl_set1_f32(0.0f);
        fl_focal_hard_f32(k, 1, &xv, &yv, &l, &gr, want_grad, k->gamma_int);
        *gr_o = gr;
        return l;
    }
    /* e = exp(-|x|) as a float double-word and L = log1p(e) (< 1 ulp) in float lanes;
     * the rest in double lanes: e exact there (eh + el), r = 1 / (1 + e) by a double
     * division, so m and m^gamma carry no float rounding; L's (<= 1 ulp of L <= 1
     * ulp of ce) is the only float-sized error before the final rounding. */
    fl_v_f32 el;
    const fl_v_f32 eh = fl_exp_negabs_f32(xv, &el);
    const fl_v_f32 Lf = fl_softplus_from_exp_u1_f32(-fl_abs_f32(xv), eh, el);
    fl_v_f64 xw[2], yw[2], ehw[2], elw[2], Lw[2], lw[2];
    fl_v_f64 gw[2] = {fl_set1_f64(0.0), fl_set1_f64(0.0)};
    fl_widen_f32(xv, xw);
    fl_widen_f32(yv, yw);
    fl_widen_f32(eh, ehw);
    fl_widen_f32(el, elw);
    fl_widen_f32(Lf, Lw);
    for (int h = 0; h < 2; h++) {
        const fl_v_f64 e = ehw[h] + elw[h];
        const fl_v_f64 r = fl_set1_f64(1.0) / (fl_set1_f64(1.0) + e);
        fl_focal_core(k, xw[h], yw[h], e, Lw[h], r, e * r, &lw[h], &gw[h], want_grad);
    }
    l = fl_narrow_f64(lw[0], lw[1]);
    gr = fl_narrow_f64(gw[0], gw[1]);
    if (FL__UNLIKELY(fl_any_f32(hard))) {
        /* the hard lanes' own path, on inputs made harmless in the other lanes */
        fl_v_f32 gh = fl_set1_f32(0.0f), lh;
        const fl_v_f32 zero = fl_set1_f32(0.0f);
        const fl_v_f32 xh = fl_select_f32(hard, xv, zero), yh = fl_select_f32(hard, yv, zero);
        fl_focal_hard_f32(k, 1, &xh, &yh, &lh, &gh, want_grad, k->gamma_int);
        l = fl_select_f32(hard, lh, l);
        gr = fl_select_f32(hard, gh, gr);
    }
#else
    (void)hard;
    fl_v_f64 L, r, er;
    const fl_v_f64 e = fl_logistic_f64(xv, &L, &r, &er);
    gr = fl_set1_f64(0.0);
    fl_focal_core(k, xv, yv, e, L, r, er, &l, &gr, want_grad);
#endif
    const VI odd = FL(focal_oddmask)(xv, yv);
    if (FL__UNLIKELY(FL(fl_any)(odd)))
        FL(focal_patch)(odd, xv, yv, alpha >= 0 ? ra : RC(-1.0), g, rgs, &l, &gr);
    *gr_o = gr;
    return l;
}

/* Lanes for the float32 hard-label path: y in {0, 1} and |x| <= 87 (inf, NaN excluded),
 * when the call's gamma allows it (k->hard_ok); none for float64.  focal_softmask is its
 * complement, cheaper: y - y^2 is exactly 0 for y in {0, 1} only (NaN and inf give NaN;
 * elsewhere |y - y^2| >= 2^-25 or ~y, never rounded to 0, fused or not). */
FL_BIN_INLINE VI FL(focal_softmask)(const fl_focal_k *k, V xv, V yv)
{
#if defined(FL_REAL_F32)
    if (!k->hard_ok) return FL_BIN_SET1I(0) == FL_BIN_SET1I(0);
    return (fl_fma_f32(-yv, yv, yv) != RC(0.0)) | fl_logistic_u2_big_f32(xv);
#else
    (void)k;
    (void)xv;
    (void)yv;
    return FL_BIN_SET1I(0) == FL_BIN_SET1I(0);
#endif
}
FL_BIN_INLINE VI FL(focal_hardmask)(const fl_focal_k *k, V xv, V yv)
{
    return ~FL(focal_softmask)(k, xv, yv);
}

#if defined(FL_REAL_F32)
/* A block of FL_BIN_BLOCK whole vectors at element i through focal_general, out of line:
 * inlined, it made the all-hard blocks' loop slower (AVX2, in L2: 1.43 -> 1.65 ns per
 * element, register allocation for both paths at once).  Returns the block's loss sum. */
__attribute__((noinline)) static fl_v_f64 FL(focal_block_general)(
    int64_t i, const real *x, const real *y, real *loss_out, real *grad_out, int what,
    const fl_focal_k *k, double alpha, real ra, real g, real rgs)
{
    fl_v_f64 acc = fl_set1_f64(0.0);
    for (int q = 0; q < FL_BIN_BLOCK; q++) {
        const V xv = FL(fl_load)(x + i + q * VL), yv = FL(fl_load)(y + i + q * VL);
        V gr = FL(fl_set1)(RC(0.0));
        const V l = FL(focal_general)(k, xv, yv, alpha, ra, g, rgs, &gr, what & FL_EW_GRAD,
                                      FL(focal_hardmask)(k, xv, yv));
        if (what & FL_EW_LOSS) FL(fl_store)(loss_out + i + q * VL, l);
        if (what & FL_EW_GRAD) FL(fl_store)(grad_out + i + q * VL, gr);
        acc += FL(fl_ew_widen_sum)(l);
    }
    return acc;
}
#endif

#if defined(FL_REAL_F32)
/* The whole vectors of a float32 focal call, in blocks of FL_BIN_BLOCK: a block whose
 * lanes are all hard (focal_hardmask) goes through fl_focal_hard_f32 with no branch
 * (gi, the integer gamma, is a constant in the usual cases), any other vector through
 * focal_general.  Returns the number of elements done. */
FL_BIN_INLINE int64_t FL(focal_blocks)(int64_t n, const real *x, const real *y, real *loss_out,
                                       real *grad_out, int what, int pf, const fl_focal_k *k,
                                       double alpha, real ra, real g, real rgs,
                                       fl_v_f64 *s, fl_v_f64 *c, int gi)
{
    const int want_grad = what & FL_EW_GRAD;
    int64_t i = 0;
    for (; i + FL_BIN_BLOCK * VL <= n; i += FL_BIN_BLOCK * VL) {
        V xv[FL_BIN_BLOCK], yv[FL_BIN_BLOCK];
        VI soft = FL_BIN_SET1I(0) != FL_BIN_SET1I(0);
        fl_v_f64 acc = fl_set1_f64(0.0);
        if (pf) FL(bin_prefetch_block)(x + i, y + i);
#pragma GCC unroll 16
        for (int q = 0; q < FL_BIN_BLOCK; q++) {
            xv[q] = FL(fl_load)(x + i + q * VL);
            yv[q] = FL(fl_load)(y + i + q * VL);
            soft |= FL(focal_softmask)(k, xv[q], yv[q]);
        }
        if (FL__LIKELY(!FL(fl_any)(soft))) {
            V l[FL_BIN_BLOCK], gr[FL_BIN_BLOCK];
            fl_focal_hard_f32(k, FL_BIN_BLOCK, xv, yv, l, gr, want_grad, gi);
#pragma GCC unroll 16
            for (int q = 0; q < FL_BIN_BLOCK; q++) {
                if (what & FL_EW_LOSS) FL(fl_ew_store)(loss_out + i + q * VL, l[q], pf);
                if (want_grad) FL(fl_ew_store)(grad_out + i + q * VL, gr[q], pf);
                acc += FL(fl_ew_widen_sum)(l[q]);
            }
        } else {
            acc = FL(focal_block_general)(i, x, y, loss_out, grad_out, what, k, alpha, ra, g, rgs);
        }
        fl_ew_twosum(s, c, acc);
    }
    return i;
}
#endif

double FLK(fl_sigmoid_focal)(int64_t n, const real *x, const real *y, double alpha,
                            double gamma, real *loss_out, real *grad_out,
                            double grad_scale_)
{
    const int what0 = fl_ew_what(n, sizeof(real), loss_out, grad_out);
    const int what = what0 & ~FL_EW_NT, pf = (what0 & FL_EW_NT) != 0; /* above */
    const int want_grad = what & FL_EW_GRAD;
    const real g = (real)gamma, ra = (real)alpha, rgs = (real)grad_scale_;
    fl_focal_k k;
    k.g = fl_set1_f64((double)g);
    k.gamma_zero = g == 0;
    k.gamma_int = (g >= 1 && g <= 8 && (real)(int)g == g) ? (int)g : 0;
    k.use_alpha = alpha >= 0;
    k.a1 = fl_set1_f64((double)ra);
    k.a0 = fl_set1_f64((double)(real)(1.0 - alpha));
    k.gs = fl_set1_f64((double)rgs);
#if defined(FL_REAL_F32)
    k.hard_ok = k.gamma_zero || k.gamma_int > 0;
    k.g32 = fl_set1_f32(g);
    {
        const float a1 = k.use_alpha ? ra : 1.0f, a0 = k.use_alpha ? (real)(1.0 - alpha) : 1.0f;
        k.a0_32 = (fl_vi_f32)fl_set1_f32(a0);
        k.ax_32 = k.a0_32 ^ (fl_vi_f32)fl_set1_f32(a1);
        k.a0gs_32 = (fl_vi_f32)fl_set1_f32(a0 * rgs);
        k.axgs_32 = k.a0gs_32 ^ (fl_vi_f32)fl_set1_f32(-(a1 * rgs));
    }
#endif
    fl_v_f64 s = fl_set1_f64(0.0), c = fl_set1_f64(0.0);
    int64_t i = 0;
    (void)pf;
#if defined(FL_REAL_F32)
    switch (k.hard_ok ? k.gamma_int : -1) { /* gamma a constant in the usual cases */
    case 0: i = FL(focal_blocks)(n, x, y, loss_out, grad_out, what, pf, &k, alpha, ra, g, rgs, &s, &c, 0); break;
    case 1: i = FL(focal_blocks)(n, x, y, loss_out, grad_out, what, pf, &k, alpha, ra, g, rgs, &s, &c, 1); break;
    case 2: i = FL(focal_blocks)(n, x, y, loss_out, grad_out, what, pf, &k, alpha, ra, g, rgs, &s, &c, 2); break;
    case 3: i = FL(focal_blocks)(n, x, y, loss_out, grad_out, what, pf, &k, alpha, ra, g, rgs, &s, &c, 3); break;
    default: i = FL(focal_blocks)(n, x, y, loss_out, grad_out, what, pf, &k, alpha, ra, g, rgs, &s, &c, k.gamma_int); break;
    }
#endif
    for (; i < n; i += VL) {
        const int64_t rem = n - i;
        const int tail = rem < VL;
        V xv, yv, l, gr = FL(fl_set1)(RC(0.0));
        if (tail) {
            xv = FL(fl_load_partial)(x + i, rem, RC(0.0));
            yv = FL(fl_load_partial)(y + i, rem, RC(0.0));
        } else {
            xv = FL(fl_load)(x + i);
            yv = FL(fl_load)(y + i);
        }
        l = FL(focal_general)(&k, xv, yv, alpha, ra, g, rgs, &gr, want_grad,
                              FL(focal_hardmask)(&k, xv, yv));
        if (tail) l = FL(fl_select)(FL(bin_first)(rem), l, FL(fl_set1)(RC(0.0)));
        if (what & FL_EW_LOSS) FL(bin_store)(loss_out + i, l, rem, tail, 0);
        if (want_grad) FL(bin_store)(grad_out + i, gr, rem, tail, 0);
        /* float32: the sum of the rounded losses, as for every other kernel */
        fl_ew_twosum(&s, &c, FL(fl_ew_widen_sum)(l));
    }
    fl_ew_fence(what0);
    return fl_ew_lanes_result(s, c);
}

#endif /* FL_TEMPLATE_PASS */
