/*
 * binary.c: binary losses on logits / probabilities (BCE with logits, BCE, sigmoid focal),
 * float32 and float64 from one template: this file includes itself once per dtype
 * (see real.h).  Scalar, one pass, no allocation.
 *
 * Shared pieces per element (x = logit):
 *   e = exp(-|x|), l = log1p(e), r = 1 / (1 + e)
 *   softplus(x) = max(x, 0) + l,  softplus(-x) = max(-x, 0) + l
 *   sigmoid(|x|) = r,  sigmoid(-|x|) = e r
 * Nothing overflows for any x; x = +-inf gives e = 0, l = 0, exact 0/1 sigmoids, and the
 * only non-finite quantity is the softplus that goes to +inf (handled in cold branches so
 * that a zero coefficient times it is the limit 0, never 0 * inf = NaN).
 *
 * Precision: the float32 kernels compute in float throughout (expf, log1pf, powf); where
 * a rounding would be amplified (the focal factor m^gamma) they use float double-words
 * (Dekker/Knuth) instead of double intermediates.  Measured against 256-bit references:
 * loss within ~3 ulp for hard labels, ~4-6 ulp for soft labels with gamma up to 5.
 *
 * Requires strict IEEE evaluation (no -ffast-math, -ffp-contract=off as in setup.py, and
 * FLT_EVAL_METHOD == 0, i.e. SSE not x87 on 32-bit x86): the focal kernel uses Dekker's
 * exact product, which FMA contraction or excess precision could break.
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <float.h>
#include <math.h>
#include <stddef.h>
#include "fastloss.h"
#include "accumulate.h"

#if defined(__GNUC__) || defined(__clang__)
#define FL_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define FL_INLINE static __forceinline
#else
#define FL_INLINE static inline
#endif

#define FL_REAL_F32
#include "binary.c"
#undef FL_REAL_F32
#define FL_REAL_F64
#include "binary.c"
#undef FL_REAL_F64

#else /* one template pass: real, FL(), R_*() come from real.h */
#include "real.h"

/* Dekker splitting constant 2^ceil(p/2) + 1 and the largest magnitude it may split. */
#undef FL_SPLITTER
#undef FL_SPLIT_MAX
#if defined(FL_REAL_F32)
#define FL_SPLITTER 4097.0f
#define FL_SPLIT_MAX 1e34f
#else
#define FL_SPLITTER 134217729.0
#define FL_SPLIT_MAX 1e300
#endif

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

FL_INLINE void FL(bc_init)(FL(fl_bcast) *b, const real *p, int64_t inner, int64_t len)
{
    /* inner, len >= 1 is the caller's contract; clamp so that a bad call cannot loop. */
    b->p = p;
    b->inner = inner < 1 ? 1 : inner;
    b->len = len < 1 ? 1 : len;
    b->j = 0;
    b->c = 0;
}

/* Current run: *ptr, *stride (0 or 1) and how many elements it lasts (INT64_MAX: forever). */
FL_INLINE int64_t FL(bc_run)(const FL(fl_bcast) *b, const real **ptr, int *stride)
{
    if (!b->p) { *ptr = &FL(fl_one_); *stride = 0; return INT64_MAX; }
    *ptr = b->p + b->j;
    if (b->len == 1) { *stride = 0; return INT64_MAX; }
    if (b->inner == 1) { *stride = 1; return b->len - b->j; }
    *stride = 0;
    return b->inner - b->c;
}

FL_INLINE void FL(bc_advance)(FL(fl_bcast) *b, int64_t m)
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

/* ------------------------------------------------------------ BCE with logits */

/* Algebraically identical to torch's (1 - y) x + lw softplus(-x), lw = 1 + (pw - 1) y:
 *   loss = w ((1 - y) softplus(x) + pw y softplus(-x))
 *   grad = w ((1 - y) sigmoid(x) - pw y sigmoid(-x))
 * For y in [0, 1], pw >= 0 both loss terms are >= 0, so there is no cancellation
 * (torch's form loses everything for x << 0, y = 0: x + softplus(-x) = softplus(x)).
 * x = +-inf: the infinite softplus contributes its limit: 0 if its coefficient is 0,
 * else +-inf; a zero weight w times an infinite term is 0 (its limit in x). */
FL_INLINE void FL(bcel_elem)(real x, real y, real w, real pw, real gs,
                             real *loss_o, real *grad_o)
{
    const real ax = R_FABS(x);
    const real e = R_EXP(-ax), l = R_LOG1P(e), r = RC(1.0) / (RC(1.0) + e);
    const real er = e * r;
    const real sig_x = x >= 0 ? r : er, sig_mx = x >= 0 ? er : r;
    const real spx = (x > 0 ? x : RC(0.0)) + l, spmx = (x < 0 ? -x : RC(0.0)) + l;
    const real c1 = RC(1.0) - y, c1l = -y - (c1 - RC(1.0)), c2 = pw * y; /* 1 - y = c1 + c1l */
    real loss = w * ((c1 * spx + c2 * spmx) + c1l * spx);
    if (ax == (real)INFINITY) { /* cold: limits at x = +-inf */
        const real c_inf = x > 0 ? c1 : c2, c_zero = x > 0 ? c2 : c1;
        const real t = (c_inf == 0 ? RC(0.0) : c_inf * (real)INFINITY) + c_zero * RC(0.0);
        loss = (w == 0 && R_FABS(t) == (real)INFINITY) ? RC(0.0) : w * t;
    }
    *loss_o = loss;
    *grad_o = (w * (c1 * sig_x - c2 * sig_mx)) * gs;
}

/* One run of m elements with constant-or-contiguous w and pw (ws, ps in {0, 1}; constant
 * after inlining into the four call sites). */
FL_INLINE void FL(bcel_run)(int64_t m, const real *x, const real *y,
                            const real *w, int ws, const real *pw, int ps,
                            real *loss_out, real *grad_out, real gs, fl_acc *acc)
{
    for (int64_t k = 0; k < m; k++) {
        real loss, g;
        FL(bcel_elem)(x[k], y[k], w[k * ws], pw[k * ps], gs, &loss, &g);
        if (loss_out) loss_out[k] = loss;
        if (grad_out) grad_out[k] = g;
        fl_acc_add(acc, (double)loss);
    }
}

double FLK(fl_bce_logits)(int64_t n, const real *x, const real *y,
                         const real *w, int64_t w_inner, int64_t w_len,
                         const real *pw, int64_t pw_inner, int64_t pw_len,
                         real *loss_out, real *grad_out, double grad_scale_)
{
    const real gs = (real)grad_scale_;
    FL(fl_bcast) bw, bp;
    fl_acc acc;
    fl_acc_init(&acc);
    FL(bc_init)(&bw, w, w_inner, w_len);
    FL(bc_init)(&bp, pw, pw_inner, pw_len);
    for (int64_t i = 0; i < n;) {
        const real *wp, *pwp;
        int ws, ps;
        int64_t m = n - i, mw = FL(bc_run)(&bw, &wp, &ws), mp = FL(bc_run)(&bp, &pwp, &ps);
        if (mw < m) m = mw;
        if (mp < m) m = mp;
        real *lo = loss_out ? loss_out + i : NULL, *go = grad_out ? grad_out + i : NULL;
        switch (ws * 2 + ps) {
        case 0: FL(bcel_run)(m, x + i, y + i, wp, 0, pwp, 0, lo, go, gs, &acc); break;
        case 1: FL(bcel_run)(m, x + i, y + i, wp, 0, pwp, 1, lo, go, gs, &acc); break;
        case 2: FL(bcel_run)(m, x + i, y + i, wp, 1, pwp, 0, lo, go, gs, &acc); break;
        default: FL(bcel_run)(m, x + i, y + i, wp, 1, pwp, 1, lo, go, gs, &acc); break;
        }
        FL(bc_advance)(&bw, m);
        FL(bc_advance)(&bp, m);
        i += m;
    }
    return fl_acc_result(&acc);
}

/* ------------------------------------------------------------ BCE on probabilities */

/* torch: loss = w ((y - 1) max(log1p(-p), -100) - y max(log p, -100))
 *        grad = w (p - y) / max((1 - p) p, 1e-12)
 * p = 0 or 1 is fine (the -100 clamp; 0 * -100 = 0).  p outside [0, 1], not NaN: NaN
 * loss/grad, first such index in *err; NaN p propagates without being an error. */
FL_INLINE void FL(bce_run)(int64_t m, int64_t i0, const real *p, const real *y,
                           const real *w, int ws, real *loss_out, real *grad_out,
                           real gs, fl_acc *acc, int64_t *err)
{
    for (int64_t k = 0; k < m; k++) {
        const real pk = p[k], yk = y[k], wk = w[k * ws];
        real loss, g;
        if (pk < 0 || pk > 1) { /* cold */
            if (*err < 0) *err = i0 + k;
            loss = g = (real)NAN;
        } else {
            real lp = R_LOG(pk), lq = R_LOG1P(-pk);
            if (lp < RC(-100.0)) lp = RC(-100.0); /* NaN stays NaN */
            if (lq < RC(-100.0)) lq = RC(-100.0);
            loss = wk * ((yk - RC(1.0)) * lq - yk * lp);
            real den = (RC(1.0) - pk) * pk;
            if (den < RC(1e-12)) den = RC(1e-12);
            g = ((gs * (pk - yk)) / den) * wk;
        }
        if (loss_out) loss_out[k] = loss;
        if (grad_out) grad_out[k] = g;
        fl_acc_add(acc, (double)loss);
    }
}

double FLK(fl_bce)(int64_t n, const real *p, const real *y,
                  const real *w, int64_t w_inner, int64_t w_len,
                  real *loss_out, real *grad_out, double grad_scale_, int64_t *err_index)
{
    const real gs = (real)grad_scale_;
    int64_t err = -1;
    FL(fl_bcast) bw;
    fl_acc acc;
    fl_acc_init(&acc);
    FL(bc_init)(&bw, w, w_inner, w_len);
    for (int64_t i = 0; i < n;) {
        const real *wp;
        int ws;
        int64_t m = n - i, mw = FL(bc_run)(&bw, &wp, &ws);
        if (mw < m) m = mw;
        real *lo = loss_out ? loss_out + i : NULL, *go = grad_out ? grad_out + i : NULL;
        if (ws) FL(bce_run)(m, i, p + i, y + i, wp, 1, lo, go, gs, &acc, &err);
        else FL(bce_run)(m, i, p + i, y + i, wp, 0, lo, go, gs, &acc, &err);
        FL(bc_advance)(&bw, m);
        i += m;
    }
    if (err_index) *err_index = err;
    return fl_acc_result(&acc);
}

/* ------------------------------------------------------------ sigmoid focal */

/* Exact products and sums (Dekker / Knuth): hi + lo == a * b (resp. a + b) exactly,
 * barring over/underflow.  |a|, |b| <= FL_SPLIT_MAX for two_prod. */
FL_INLINE void FL(two_prod)(real a, real b, real *hi, real *lo)
{
    const real p = a * b;
    const real ca = FL_SPLITTER * a, ah = ca - (ca - a), al = a - ah;
    const real cb = FL_SPLITTER * b, bh = cb - (cb - b), bl = b - bh;
    *hi = p;
    *lo = (((ah * bh - p) + ah * bl) + al * bh) + al * bl;
}

FL_INLINE void FL(two_sum)(real a, real b, real *hi, real *lo)
{
    const real s = a + b, bb = s - a;
    *hi = s;
    *lo = (a - (s - bb)) + (b - bb);
}

typedef struct {
    real g;          /* gamma, rounded to the kernel's precision (as torch does) */
    real gm1;        /* gamma - 1 */
    int gamma_zero;
    int use_alpha;   /* alpha >= 0 */
    real a1, a0;     /* alpha_t = a1 y + a0 (1 - y) with a1 = alpha, a0 = 1 - alpha */
} FL(focal_par);

/* (hi + lo)^g for a double-word hi + lo (|lo| <~ ulp(hi), hi > 0): pow's own error plus a
 * first-order correction, so the rounding of hi + lo is not amplified by g. */
FL_INLINE real FL(pow_dw)(real hi, real lo, real g)
{
    return R_POW(hi, g) * (RC(1.0) + g * (lo / hi));
}

/* sigmoid(s)^g for g != 0, given e = exp(-|s|) and l = log1p(e).
 * s >= 0: sigmoid(s) = 1 / (1 + e) with 1 + e kept exactly as a double-word: F = (1 + e)^-g.
 * s < 0:  log sigmoid(s) = s - l and F = exp(g s - g l), the exponent formed as a
 *         double-word (g s exact by Dekker, g l nearly so): a plain exp(g log m) has a
 *         relative error ~ |g log m| ulp (~100 ulp at s = -50, g = 2), this one ~2 ulp.
 * Underflows cleanly to 0 for s -> -inf. */
FL_INLINE real FL(sigmoid_pow)(real s, real e, real l, real g)
{
    if (s >= 0) {
        const real sh = RC(1.0) + e, sl = e - (sh - RC(1.0));
        return FL(pow_dw)(sh, sl, -g);
    }
    real ph = g * s, pl = RC(0.0), glh, gll, hi, lo;
    if (ph < RC(-1000.0)) return RC(0.0); /* exp underflows in both precisions */
    if (-s <= FL_SPLIT_MAX && g <= FL_SPLIT_MAX) FL(two_prod)(g, s, &ph, &pl);
    FL(two_prod)(g, l, &glh, &gll);
    FL(two_sum)(ph, -glh, &hi, &lo);
    lo += pl - gll;
    const real eh = R_EXP(hi);
    return eh + eh * lo;
}

/* torchvision sigmoid_focal_loss for one element:
 *   p = sigmoid(x), ce = (1 - y) softplus(x) + y softplus(-x), m = 1 - p_t = p (1 - y) + (1 - p) y
 *   loss = alpha_t ce m^gamma
 *   grad = alpha_t (ce' m^gamma + gamma ce m^(gamma-1) m'),  ce' = (1-y) p - y (1-p),
 *          m' = p (1 - p) (1 - 2 y)
 * Hard labels (y == 0 / 1, the common case): with s = x (y = 0) or -x (y = 1),
 * ce = softplus(s), m = sigmoid(s), m^gamma = F = sigmoid_pow(s) (log space for s < 0), and
 *   loss = alpha_t softplus(s) F,   dloss/ds = alpha_t F (sigmoid(s) + gamma softplus(s) sigmoid(-s))
 * a sum of non-negative terms: no cancellation, and finite for every gamma >= 0 because
 * m^(gamma-1) m' = F sigmoid(-s) never forms m^(gamma-1) (the 0 < gamma < 1 NaN trap).
 * Soft labels 0 < y < 1: m >= min(y, 1 - y) / 2 > 0, so m^gamma is finite without log
 * space; m is formed as an accurate double-word because the relative error of m^gamma is
 * gamma times that of m.  m^(gamma-1) m' = F (1 - 2y) p (1 - p) / m with p (1 - p) / m <= 1.
 * y outside [0, 1] (or NaN): torch's formula verbatim (pow; NaN where torch's pow is).
 * x = +-inf: limits (focal_inf). */
FL_INLINE void FL(focal_inf)(real x, real y, real at, const FL(focal_par) *P, real gs,
                             real *loss_o, real *grad_o)
{
    /* p = 1 (x = +inf) or 0.  ce = c * inf with c = 1 - y (x = +inf) or y; m = c too.
     * loss = at ce m^gamma: 0 if c == 0, else inf (sign of c; NaN if m^gamma is).
     * grad: the gamma term -> 0 (ce e^{-|x|} -> 0), so grad = at ce' m^gamma, ce' = 1-y / -y. */
    const real c = x > 0 ? RC(1.0) - y : y;
    const real F = P->gamma_zero ? RC(1.0) : R_POW(c, P->g);
    real core = c == 0 ? RC(0.0) : c * (real)INFINITY;
    if (F != 0) core *= F; /* F == 0 with c != 0 is underflow: the limit is still inf */
    *loss_o = (at == 0 && R_FABS(core) == (real)INFINITY) ? RC(0.0) : at * core;
    *grad_o = ((at * (x > 0 ? c : -c)) * F) * gs;
}

FL_INLINE void FL(focal_elem)(real x, real y, const FL(focal_par) *P, real gs,
                              real *loss_o, real *grad_o)
{
    const real g = P->g;
    real at = P->use_alpha ? P->a1 * y + P->a0 * (RC(1.0) - y) : RC(1.0);
    const real ax = R_FABS(x);
    if (ax == (real)INFINITY) {
        FL(focal_inf)(x, y, at, P, gs, loss_o, grad_o);
        return;
    }
    const real e = R_EXP(-ax), l = R_LOG1P(e), r = RC(1.0) / (RC(1.0) + e);
    const real er = e * r;
    const real sig_x = x >= 0 ? r : er, sig_mx = x >= 0 ? er : r;
    const real spx = (x > 0 ? x : RC(0.0)) + l, spmx = (x < 0 ? -x : RC(0.0)) + l;
    if (y == 0 || y == 1) {
        const int pos = (y == 0); /* s = x for y == 0, s = -x for y == 1 */
        const real s = pos ? x : -x;
        const real sp_s = pos ? spx : spmx, sig_s = pos ? sig_x : sig_mx;
        const real sig_ms = pos ? sig_mx : sig_x;
        const real F = P->gamma_zero ? RC(1.0) : FL(sigmoid_pow)(s, e, l, g);
        /* sp_s sig_ms = s e^-s for s >> 0: no overflow even at x = +-max (gamma = 0: F sig_s) */
        const real dcore = F * (sig_s + g * (sp_s * sig_ms));
        *loss_o = at * (sp_s * F);
        *grad_o = ((pos ? at : -at) * dcore) * gs;
        return;
    }
    const real oh = RC(1.0) - y, ol = -y - (oh - RC(1.0)); /* 1 - y = oh + ol (0 < y < 1) */
    const real ce = (oh * spx + y * spmx) + ol * spx;
    const real dce = oh * sig_x - y * sig_mx;
    real F = RC(1.0), t2 = RC(0.0);
    if (y > 0 && y < 1) {
        if (P->use_alpha) at = (P->a1 * y + P->a0 * oh) + P->a0 * ol;
        if (!P->gamma_zero) {
            /* m = (a + b e) / (1 + e) with (a, b) = (1 - y, y) for x >= 0, (y, 1 - y) for
             * x < 0; u = a + b e >= a > 0.  Everything as double-words (1 - y and 1 + e
             * split exactly, b e by Dekker), then m^gamma = pow_dw(m). */
            const int xp = x >= 0;
            const real a_hi = xp ? oh : y, a_lo = xp ? ol : RC(0.0);
            const real b_hi = xp ? y : oh, b_lo = xp ? RC(0.0) : ol;
            real ph, pl, uh, ul, th, tl;
            FL(two_prod)(b_hi, e, &ph, &pl);
            FL(two_sum)(a_hi, ph, &uh, &ul);
            ul += (pl + a_lo) + b_lo * e;
            const real u = uh + ul, u_lo = ul - (u - uh);     /* u + u_lo = a + b e */
            const real sh = RC(1.0) + e, sl = e - (sh - RC(1.0)); /* sh + sl = 1 + e */
            const real mh = u / sh;
            FL(two_prod)(mh, sh, &th, &tl);
            const real ml = (((u - th) - tl) + u_lo - mh * sl) / sh;
            F = FL(pow_dw)(mh, ml, g);
            /* gamma ce m^(gamma-1) m' = gamma ce (1 - 2y) F p (1 - p) / m,  p (1 - p) / m = e r / u <= 1 */
            t2 = (g * (RC(1.0) - RC(2.0) * y)) * (ce * (F * (er / u)));
        }
    } else { /* y outside [0, 1] or NaN: torch's formula verbatim */
        const real m = sig_x * oh + sig_mx * y;
        if (!P->gamma_zero) {
            F = R_POW(m, g);
            t2 = ((g * ce) * (sig_x * sig_mx * (RC(1.0) - RC(2.0) * y))) * R_POW(m, P->gm1);
        } else {
            F = m == m ? RC(1.0) : m; /* keep NaN y propagating (ce is NaN too anyway) */
        }
    }
    *loss_o = at * (ce * F);
    *grad_o = (at * (dce * F + t2)) * gs;
}

double FLK(fl_sigmoid_focal)(int64_t n, const real *x, const real *y, double alpha,
                            double gamma, real *loss_out, real *grad_out,
                            double grad_scale_)
{
    const real gs = (real)grad_scale_;
    FL(focal_par) P;
    P.g = (real)gamma;
    P.gm1 = P.g - RC(1.0);
    P.gamma_zero = (P.g == 0);
    P.use_alpha = (alpha >= 0);
    P.a1 = (real)alpha;
    P.a0 = (real)(1.0 - alpha);
    fl_acc acc;
    fl_acc_init(&acc);
    for (int64_t i = 0; i < n; i++) {
        real loss, g;
        FL(focal_elem)(x[i], y[i], &P, gs, &loss, &g);
        if (loss_out) loss_out[i] = loss;
        if (grad_out) grad_out[i] = g;
        fl_acc_add(&acc, (double)loss);
    }
    return fl_acc_result(&acc);
}

#endif /* FL_TEMPLATE_PASS */
