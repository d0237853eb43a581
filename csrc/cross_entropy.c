/*
 * cross_entropy.c: softmax cross-entropy (class-index and class-probability targets),
 * softmax focal loss and the "mean" denominator of class-index cross-entropy, float32
 * and float64 from one template: this file includes itself once per dtype (see real.h).
 *
 * Layout (fastloss.h): x is (outer, C, inner); class c of sample (o, s) is at
 * x[(o * C + c) * inner + s], the sample's label at labels[o * inner + s].
 *
 * Algorithm, per sample row (three sweeps, the row staying in cache between them):
 *   1. m   = max_c x_c
 *   2. S1  = sum_c exp(x_c - m) leaving out one term of the maximum (it is exactly 1),
 *            accumulated in double for both dtypes, plus the target / smoothing sums;
 *      L   = log1p(S1), so lse = m + L and logp_c = (x_c - m) - L.
 *            log1p(S1) keeps -logp small and accurate when one class dominates
 *            (e.g. -logp_y = 1e-12 comes out with full relative precision).
 *      With grad_out, sweep 2 also stores e_c = exp(x_c - m) in grad_out (used as
 *      scratch: each gradient element is written twice, never read before written;
 *      grad_out == x also works, x is not read after sweep 2 overwrote it).
 *   3. (only with grad_out) g_j = e_j * (A / S) - E w_j in place, S = 1 + S1 (so no
 *      second exp: p_j = e_j / S, and no rounding of (x_j - m) - L).
 * inner == 1: the sweeps walk one contiguous row.  inner > 1 (NCHW-like): a block of
 * consecutive positions s is processed together, each sweep reading, for every class,
 * the contiguous run x[(o*C + c)*inner + s0 .. s0 + nb), with per-position running
 * max / sums in small stack arrays.  The block is sized so that its C runs stay in L2
 * between the sweeps; memory is read sequentially and no scratch is allocated.  Both
 * paths do the same operations in the same order per sample, so the results do not
 * depend on the layout (bit-identical for the same row values).
 *
 * Precision.  The sums over classes (exp terms, weighted target / smoothing sums) and
 * all per-row scalar work (log1p, the loss, the label-column gradient, the focal factor)
 * are done in double for both dtypes; the per-element work (x_c - m, exp, the gradient
 * e_j A / S - E w_j) is done in the dtype (expf for float32).  Summing 32000 exp terms in
 * float would cost up to ~1e-3 relative (~10 ulp typical) in the loss; in double it is
 * ~1 ulp, so float32 losses are within ~1 ulp of correctly rounded (relative to the
 * magnitude of the logits) and float64 within a few ulp.
 *
 * The label column: p_y - 1 is computed without cancellation: -S1 / S when x_y is the
 * maximum, else p_y = exp(x_y - m) / S <= 1/2 and p_y - 1 is exact-ish.  So it is
 * accurate also when p_y -> 1 (torch computes exp(logp_y) - 1, which has only absolute
 * accuracy there); the focal factor uses q = 1 - p_y from the same quantity.
 *
 * Non-finite values (a deliberate, documented choice):
 *   - A NaN anywhere in a (non-ignored) row makes that row's loss and every element of
 *     its gradient NaN (as torch).
 *   - A row containing +inf, or whose entries are all -inf, has no defined softmax:
 *     loss and gradient are NaN (as torch: inf - inf in the max subtraction).
 *   - -inf entries in an otherwise finite row are fine: p_c = 0, logp_c = -inf.  A term
 *     coef * (-logp_c) whose coefficient is exactly 0 (zero weight, zero target
 *     probability, eps = 0) contributes exactly 0 (the limit), not 0 * inf = NaN as in
 *     torch; a nonzero coefficient on such a class gives loss +inf (as torch).  The
 *     gradient stays finite.  For finite logits this only differs from torch where torch
 *     produces NaN from overflowed x_c - m.
 *   - Ignored samples (label == ignore_index) give loss 0 and gradient 0 without looking
 *     at the logits (torch also gives loss 0, but its gradient of an ignored row with a
 *     NaN/inf logit is NaN).
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <float.h>
#include <math.h>
#include <stddef.h>
#include "fastloss.h"
#include "accumulate.h"

/* Positions per block in the inner > 1 path: at most FL_CE_BMAX (size of the stack
 * arrays), otherwise as many as keep the block's C runs (of x, grad_out, and t for prob
 * targets) within FL_CE_BLOCK_BYTES (L2), but at least FL_CE_BMIN so each run spans a
 * few cache lines. */
#define FL_CE_BMAX 256
#define FL_CE_BMIN 32
#define FL_CE_BLOCK_BYTES (384 * 1024)

/* Sums over classes are taken in chunks of FL_CE_CHUNK classes: a plain double partial
 * per chunk, the partials added with compensation (fl_acc).  For C = 32000 this keeps
 * the float64 sums at a few ulp instead of ~sqrt(C)/2 ulp, at no measurable cost. */
#define FL_CE_CHUNK 32

static int64_t fl_ce_block_len(int64_t C, int64_t inner, int64_t bytes_per_class)
{
    int64_t B = FL_CE_BMAX;
    const int64_t per_pos = C * bytes_per_class;
    if (per_pos > 0 && per_pos * B > FL_CE_BLOCK_BYTES) {
        B = (FL_CE_BLOCK_BYTES / per_pos) & ~(int64_t)15;
        if (B < FL_CE_BMIN) B = FL_CE_BMIN;
    }
    return B < inner ? B : inner;
}

#define FL_REAL_F32
#include "cross_entropy.c"
#undef FL_REAL_F32
#define FL_REAL_F64
#include "cross_entropy.c"
#undef FL_REAL_F64

#else /* one template pass: real, FL(), R_*() come from real.h */
#include "real.h"

/* ------------------------------------------------------------------ helpers */

/* Sweep 1 on a contiguous row.  NaN handling: a NaN at x[0] sticks in m, a later NaN
 * is skipped here but poisons the exp sum of sweep 2. */
static inline real FL(ce_row_max)(const real *x, int64_t C)
{
    real m = x[0];
    for (int64_t c = 1; c < C; c++) m = x[c] > m ? x[c] : m;
    return m;
}

/* Row normaliser from the sweep-2 results: S accumulates the exp terms with x_c != m,
 * ties counts the terms with x_c == m (each exactly 1).  Sets *S1 = S - 1 (sum without
 * one max term) and returns L = log(S) = log1p(S1); L is NaN when the max is not finite
 * (+inf present, all -inf, or a NaN at the first element) or a NaN was summed.
 * log1p(S1) is evaluated as log(s) + r / s with s = fl(1 + S1) and r = (1 + S1) - s
 * exactly (Fast2Sum): as accurate as log1p (<= ~1 ulp, also for tiny S1) but several
 * times cheaper than glibc's log1p, which dominated rows with small C. */
static inline double FL(ce_norm)(real m, fl_acc S, int64_t ties, double *S1)
{
    fl_acc_add(&S, (double)(ties - 1));
    const double s1 = fl_acc_result(&S);
    *S1 = s1;
    if (!isfinite(m)) return NAN;
    const double s = 1.0 + s1;
    const double r = s1 <= 1.0 ? s1 - (s - 1.0) : 1.0 - (s - s1);
    return log(s) + r / s;
}

/* Label-class quantities from dy = x_y - m (double), S1 and L:
 * u = -logp_y, py = p_y, pm1 = p_y - 1 (the latter without cancellation, see top). */
typedef struct {
    double u, py, pm1;
} FL(ce_lab);

static inline FL(ce_lab) FL(ce_label)(double dy, double S1, double L)
{
    FL(ce_lab) r;
    const double S = 1.0 + S1;
    r.u = L - dy;
    if (isnan(L)) {
        r.py = r.pm1 = NAN;
    } else if (dy == 0) {
        r.py = 1.0 / S;
        r.pm1 = -S1 / S;
    } else {
        r.py = exp(dy) / S; /* <= 1/2 here */
        r.pm1 = r.py - 1.0;
    }
    return r;
}

/* Per-sample coefficients of the class-index losses: the loss (without the
 * label-smoothing part) and the gradient as
 *   g_j = gs (A p_j - E w_j) for j != y,  g_y = gs * gy. */
typedef struct {
    double loss, A, gy;
} FL(ce_coef);

/* Cross-entropy: cy = (1 - eps) w_y, e = eps / C, W = sum w.
 *   loss = cy u;  A = cy + e W;  gy = cy (p_y - 1) + e (W p_y - w_y) */
static inline FL(ce_coef) FL(ce_coef_ce)(FL(ce_lab) l, double wy, double one_m_eps,
                                         double e, double W)
{
    FL(ce_coef) r;
    const double cy = one_m_eps * wy;
    r.loss = cy != 0 ? cy * l.u : 0.0;
    r.A = cy + e * W;
    r.gy = cy * l.pm1 + (e != 0 ? e * (W * l.py - wy) : 0.0);
    return r;
}

/* Focal: q = 1 - p_y, u = -logp_y.
 *   loss = a q^gamma u
 *   F = q^gamma - gamma p_y logp_y q^(gamma-1) = q^gamma (1 + gamma p_y u / q)
 *   A = a F;  gy = a F (p_y - 1)
 * This is the log-space form: q^(gamma-1) u = q^gamma (u / q) with u / q -> 1 as
 * p_y -> 1 (u = log1p(S1), q = S1 / (1 + S1) both ~ S1), taken as 1 at u = 0 where
 * q^gamma = 0 kills F for gamma > 0; so F is finite for every gamma > 0, including
 * 0 < gamma < 1.  p_y u -> 0 as u -> inf (taken as 0 once p_y underflows to 0).
 * gamma == 0: F = 1 and q^0 = 1 exactly, i.e. plain (alpha-weighted) cross-entropy. */
static inline FL(ce_coef) FL(ce_coef_focal)(FL(ce_lab) l, double a, double gamma)
{
    FL(ce_coef) r;
    const double q = -l.pm1;
    double qg = 1.0, F = 1.0;
    if (gamma != 0) {
        qg = pow(q, gamma);
        const double ratio = l.u == 0 ? 1.0 : l.u / q;
        F = qg * (1.0 + (l.py == 0 ? 0.0 : gamma * l.py * ratio));
    }
    r.loss = a != 0 ? a * qg * l.u : 0.0;
    r.A = a * F;
    r.gy = r.A * l.pm1;
    return r;
}

/* ------------------------------------------------------------ index targets */

double FLK(fl_class_target_weight_sum)(int64_t n, const int64_t *labels, int64_t C,
                                      const real *weight, int64_t ignore_index,
                                      int64_t *err_index)
{
    fl_acc acc;
    fl_acc_init(&acc);
    *err_index = -1;
    for (int64_t i = 0; i < n; i++) {
        const int64_t y = labels[i];
        if (y == ignore_index) continue;
        if (y < 0 || y >= C) {
            *err_index = i;
            return 0.0;
        }
        fl_acc_add(&acc, weight ? (double)weight[y] : 1.0);
    }
    return fl_acc_result(&acc);
}

/* Shared driver of fl_softmax_ce_index (focal == 0; w = weight, eps = label smoothing)
 * and fl_softmax_focal (focal != 0; w = alpha, gamma). */
static double FL(ce_index_core)(int64_t outer, int64_t C, int64_t inner, const real *x,
                                const int64_t *labels, const real *w, int64_t ignore_index,
                                double eps, double gamma, int focal, real *loss_out,
                                real *grad_out, double gs, int64_t *err_index)
{
    fl_acc acc;
    fl_acc_init(&acc);
    *err_index = -1;
    const int64_t n = outer * inner;

    if (C <= 0) { /* no class is valid: every non-ignored label is an error */
        for (int64_t i = 0; i < n; i++) {
            if (labels[i] != ignore_index) {
                *err_index = i;
                return 0.0;
            }
            if (loss_out) loss_out[i] = 0;
        }
        return 0.0;
    }

    /* torch smooths only when label_smoothing > 0 (it rejects < 0); != 0 lets NaN
     * propagate */
    const int smooth = !focal && eps != 0;
    const double one_m_eps = smooth ? 1.0 - eps : 1.0;
    const double e = smooth ? eps / (double)C : 0.0;
    double W = (double)C;
    if (smooth && w) {
        fl_acc wa;
        fl_acc_init(&wa);
        for (int64_t c = 0; c < C; c++) fl_acc_add(&wa, (double)w[c]);
        W = fl_acc_result(&wa);
    }
    const real Er = (real)(gs * e);

    if (inner == 1) {
        for (int64_t o = 0; o < outer; o++) {
            const real *xr = x + o * C;
            real *gr = grad_out ? grad_out + o * C : NULL;
            const int64_t y = labels[o];
            if (y == ignore_index) {
                if (loss_out) loss_out[o] = 0;
                if (gr)
                    for (int64_t j = 0; j < C; j++) gr[j] = 0;
                continue;
            }
            if (y < 0 || y >= C) {
                *err_index = o;
                return fl_acc_result(&acc);
            }
            /* sweep 1 */
            const real m = FL(ce_row_max)(xr, C);
            const double dy = (double)xr[y] - (double)m;
            /* sweep 2: exp sum (stored into gr), smoothing sum sum_{w_c != 0} w_c (x_c - m) */
            fl_acc S, SD;
            fl_acc_init(&S);
            fl_acc_init(&SD);
            int64_t ties = 0;
            const double md = (double)m;
            for (int64_t c0 = 0; c0 < C; c0 += FL_CE_CHUNK) {
                const int64_t c1 = C - c0 < FL_CE_CHUNK ? C : c0 + FL_CE_CHUNK;
                double s = 0.0, sd = 0.0;
                if (smooth) { /* before the exp loop: gr may alias x */
                    if (w) {
                        for (int64_t c = c0; c < c1; c++)
                            if (w[c] != 0) sd += (double)w[c] * ((double)xr[c] - md);
                    } else {
                        for (int64_t c = c0; c < c1; c++) sd += (double)xr[c] - md;
                    }
                    fl_acc_add(&SD, sd);
                }
                if (gr) {
                    for (int64_t c = c0; c < c1; c++) {
                        const real d = xr[c] - m, ex = R_EXP(d);
                        gr[c] = ex;
                        if (d == 0) ties++;
                        else s += (double)ex;
                    }
                } else {
                    for (int64_t c = c0; c < c1; c++) {
                        const real d = xr[c] - m;
                        if (d == 0) ties++;
                        else s += (double)R_EXP(d);
                    }
                }
                fl_acc_add(&S, s);
            }
            double S1;
            const double L = FL(ce_norm)(m, S, ties, &S1);
            const FL(ce_lab) lab = FL(ce_label)(dy, S1, L);
            const double wy = w ? (double)w[y] : 1.0;
            const FL(ce_coef) k = focal ? FL(ce_coef_focal)(lab, wy, gamma)
                                        : FL(ce_coef_ce)(lab, wy, one_m_eps, e, W);
            double loss = k.loss;
            if (smooth) loss += e * (W * L - fl_acc_result(&SD));
            if (isnan(L)) loss = NAN;
            const real lr = (real)loss;
            if (loss_out) loss_out[o] = lr;
            fl_acc_add(&acc, (double)lr);
            /* sweep 3 */
            if (gr) {
                const real Ap = (real)(isnan(L) ? NAN : gs * k.A / (1.0 + S1));
                if (smooth && w) { /* w_j (j != y) enters only via smoothing */
                    for (int64_t j = 0; j < C; j++) gr[j] = gr[j] * Ap - Er * w[j];
                } else {
                    for (int64_t j = 0; j < C; j++) gr[j] = gr[j] * Ap - Er;
                }
                gr[y] = (real)(gs * k.gy);
            }
        }
        return fl_acc_result(&acc);
    }

    /* inner > 1: blocks of nb consecutive positions, class runs read contiguously */
    const int64_t B =
        fl_ce_block_len(C, inner, (grad_out ? 2 : 1) * (int64_t)sizeof(real));
    real mx[FL_CE_BMAX], Ap[FL_CE_BMAX], gyr[FL_CE_BMAX];
    double ps[FL_CE_BMAX], pw[FL_CE_BMAX], dy[FL_CE_BMAX];
    fl_acc S[FL_CE_BMAX], SW[FL_CE_BMAX];
    int64_t ties[FL_CE_BMAX], yy[FL_CE_BMAX];
    unsigned char ok[FL_CE_BMAX];

    for (int64_t o = 0; o < outer; o++) {
        for (int64_t s0 = 0; s0 < inner; s0 += B) {
            const int64_t nb = inner - s0 < B ? inner - s0 : B;
            const int64_t flat0 = o * inner + s0;
            const real *xb = x + o * C * inner + s0; /* class c run: xb + c * inner */
            real *gb = grad_out ? grad_out + o * C * inner + s0 : NULL;
            int64_t nvalid = 0;
            for (int64_t i = 0; i < nb; i++) {
                const int64_t y = labels[flat0 + i];
                if (y == ignore_index) {
                    ok[i] = 0;
                    yy[i] = -1;
                } else if (y < 0 || y >= C) {
                    *err_index = flat0 + i;
                    return fl_acc_result(&acc);
                } else {
                    ok[i] = 1;
                    yy[i] = y;
                    nvalid++;
                }
            }
            if (nvalid == 0) {
                if (loss_out)
                    for (int64_t i = 0; i < nb; i++) loss_out[flat0 + i] = 0;
                if (gb)
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t i = 0; i < nb; i++) gb[c * inner + i] = 0;
                continue;
            }

            /* sweep 1: max */
            for (int64_t i = 0; i < nb; i++) mx[i] = xb[i];
            for (int64_t c = 1; c < C; c++) {
                const real *row = xb + c * inner;
                for (int64_t i = 0; i < nb; i++) mx[i] = row[i] > mx[i] ? row[i] : mx[i];
            }
            for (int64_t i = 0; i < nb; i++)
                dy[i] = ok[i] ? (double)xb[yy[i] * inner + i] - (double)mx[i] : 0.0;
            /* sweep 2: exp sum (stored into gb), smoothing sum */
            for (int64_t i = 0; i < nb; i++) {
                fl_acc_init(&S[i]);
                fl_acc_init(&SW[i]);
                ties[i] = 0;
            }
            for (int64_t c0 = 0; c0 < C; c0 += FL_CE_CHUNK) {
                const int64_t c1 = C - c0 < FL_CE_CHUNK ? C : c0 + FL_CE_CHUNK;
                for (int64_t i = 0; i < nb; i++) {
                    ps[i] = 0.0;
                    pw[i] = 0.0;
                }
                if (smooth) {
                    for (int64_t c = c0; c < c1; c++) {
                        const real *row = xb + c * inner;
                        const real wc = w ? w[c] : RC(1.0);
                        if (wc != 0)
                            for (int64_t i = 0; i < nb; i++)
                                pw[i] += (double)wc * ((double)row[i] - (double)mx[i]);
                    }
                    for (int64_t i = 0; i < nb; i++) fl_acc_add(&SW[i], pw[i]);
                }
                for (int64_t c = c0; c < c1; c++) {
                    const real *row = xb + c * inner;
                    if (gb) {
                        real *g = gb + c * inner;
                        for (int64_t i = 0; i < nb; i++) {
                            const real d = row[i] - mx[i], ex = R_EXP(d);
                            g[i] = ex;
                            if (d == 0) ties[i]++;
                            else ps[i] += (double)ex;
                        }
                    } else {
                        for (int64_t i = 0; i < nb; i++) {
                            const real d = row[i] - mx[i];
                            if (d == 0) ties[i]++;
                            else ps[i] += (double)R_EXP(d);
                        }
                    }
                }
                for (int64_t i = 0; i < nb; i++) fl_acc_add(&S[i], ps[i]);
            }
            /* per-sample scalars: loss and gradient coefficients */
            for (int64_t i = 0; i < nb; i++) {
                Ap[i] = 0;
                gyr[i] = 0;
                if (!ok[i]) {
                    if (loss_out) loss_out[flat0 + i] = 0;
                    continue;
                }
                double S1;
                const double L = FL(ce_norm)(mx[i], S[i], ties[i], &S1);
                const FL(ce_lab) lab = FL(ce_label)(dy[i], S1, L);
                const double wy = w ? (double)w[yy[i]] : 1.0;
                const FL(ce_coef) k = focal ? FL(ce_coef_focal)(lab, wy, gamma)
                                            : FL(ce_coef_ce)(lab, wy, one_m_eps, e, W);
                double loss = k.loss;
                if (smooth) loss += e * (W * L - fl_acc_result(&SW[i]));
                if (isnan(L)) loss = NAN;
                const real lr = (real)loss;
                if (loss_out) loss_out[flat0 + i] = lr;
                fl_acc_add(&acc, (double)lr);
                Ap[i] = (real)(isnan(L) ? NAN : gs * k.A / (1.0 + S1));
                gyr[i] = (real)(gs * k.gy);
            }
            /* sweep 3: gradient, in place over the stored exp terms */
            if (gb) {
                for (int64_t c = 0; c < C; c++) {
                    real *g = gb + c * inner;
                    const real Ec = smooth && w ? Er * w[c] : Er;
                    for (int64_t i = 0; i < nb; i++) {
                        real v = g[i] * Ap[i] - Ec;
                        v = c == yy[i] ? gyr[i] : v;
                        g[i] = ok[i] ? v : RC(0.0);
                    }
                }
            }
        }
    }
    return fl_acc_result(&acc);
}

double FLK(fl_softmax_ce_index)(int64_t outer, int64_t C, int64_t inner, const real *x,
                               const int64_t *labels, const real *weight,
                               int64_t ignore_index, double label_smoothing,
                               real *loss_out, real *grad_out, double grad_scale,
                               int64_t *err_index)
{
    return FL(ce_index_core)(outer, C, inner, x, labels, weight, ignore_index,
                             label_smoothing, 0.0, 0, loss_out, grad_out, grad_scale,
                             err_index);
}

double FLK(fl_softmax_focal)(int64_t outer, int64_t C, int64_t inner, const real *x,
                            const int64_t *labels, const real *alpha, double gamma,
                            int64_t ignore_index, real *loss_out, real *grad_out,
                            double grad_scale, int64_t *err_index)
{
    return FL(ce_index_core)(outer, C, inner, x, labels, alpha, ignore_index, 0.0, gamma,
                             1, loss_out, grad_out, grad_scale, err_index);
}

/* ------------------------------------------------------ probability targets */

/* t'_c = (1 - eps) t_c + eps / C, k_c = w_c t'_c (double);
 *   Tw = sum_c k_c,  TD = sum_{k_c != 0} k_c (x_c - m)
 *   loss = -sum_c k_c logp_c = Tw L - TD
 *   g_j = gs (p_j Tw - w_j t'_j) = e_j (gs Tw / S) - w_j (gs t'_j) */
double FLK(fl_softmax_ce_prob)(int64_t outer, int64_t C, int64_t inner, const real *x,
                              const real *t, const real *weight, double label_smoothing,
                              real *loss_out, real *grad_out, double grad_scale)
{
    fl_acc acc;
    fl_acc_init(&acc);
    const int64_t n = outer * inner;
    if (C <= 0) {
        if (loss_out)
            for (int64_t i = 0; i < n; i++) loss_out[i] = 0;
        return 0.0;
    }
    const double eps = label_smoothing, gs = grad_scale;
    const int smooth = eps != 0;
    const double a1 = smooth ? 1.0 - eps : 1.0, e = smooth ? eps / (double)C : 0.0;
    /* per-element gradient target term gs * t'_j = a1g t_j + eg (times w_j) */
    const real a1g = (real)(gs * a1), eg = (real)(gs * e);
    const real *w = weight;

    if (inner == 1) {
        for (int64_t o = 0; o < outer; o++) {
            const real *xr = x + o * C, *tr = t + o * C;
            real *gr = grad_out ? grad_out + o * C : NULL;
            const real m = FL(ce_row_max)(xr, C);
            const double md = (double)m;
            fl_acc S, STw, STD;
            fl_acc_init(&S);
            fl_acc_init(&STw);
            fl_acc_init(&STD);
            int64_t ties = 0;
            for (int64_t c0 = 0; c0 < C; c0 += FL_CE_CHUNK) {
                const int64_t c1 = C - c0 < FL_CE_CHUNK ? C : c0 + FL_CE_CHUNK;
                double s = 0.0, tw = 0.0, td = 0.0;
                for (int64_t c = c0; c < c1; c++) {
                    const real xc = xr[c], d = xc - m, ex = R_EXP(d);
                    if (gr) gr[c] = ex;
                    if (d == 0) ties++;
                    else s += (double)ex;
                    const double tp = a1 * (double)tr[c] + e;
                    const double k = w ? (double)w[c] * tp : tp;
                    tw += k;
                    if (k != 0) td += k * ((double)xc - md);
                }
                fl_acc_add(&S, s);
                fl_acc_add(&STw, tw);
                fl_acc_add(&STD, td);
            }
            double S1;
            const double L = FL(ce_norm)(m, S, ties, &S1);
            const double Tw = fl_acc_result(&STw);
            double loss = Tw * L - fl_acc_result(&STD);
            if (isnan(L)) loss = NAN;
            const real lr = (real)loss;
            if (loss_out) loss_out[o] = lr;
            fl_acc_add(&acc, (double)lr);
            if (gr) {
                const real Tp = (real)(isnan(L) ? NAN : gs * Tw / (1.0 + S1));
                if (w) {
                    for (int64_t j = 0; j < C; j++)
                        gr[j] = gr[j] * Tp - w[j] * (a1g * tr[j] + eg);
                } else {
                    for (int64_t j = 0; j < C; j++) gr[j] = gr[j] * Tp - (a1g * tr[j] + eg);
                }
            }
        }
        return fl_acc_result(&acc);
    }

    const int64_t B =
        fl_ce_block_len(C, inner, (grad_out ? 3 : 2) * (int64_t)sizeof(real));
    real mx[FL_CE_BMAX], Tp[FL_CE_BMAX];
    double ps[FL_CE_BMAX], ptw[FL_CE_BMAX], ptd[FL_CE_BMAX];
    fl_acc S[FL_CE_BMAX], STw[FL_CE_BMAX], STD[FL_CE_BMAX];
    int64_t ties[FL_CE_BMAX];

    for (int64_t o = 0; o < outer; o++) {
        for (int64_t s0 = 0; s0 < inner; s0 += B) {
            const int64_t nb = inner - s0 < B ? inner - s0 : B;
            const int64_t flat0 = o * inner + s0;
            const real *xb = x + o * C * inner + s0, *tb = t + o * C * inner + s0;
            real *gb = grad_out ? grad_out + o * C * inner + s0 : NULL;

            for (int64_t i = 0; i < nb; i++) mx[i] = xb[i];
            for (int64_t c = 1; c < C; c++) {
                const real *row = xb + c * inner;
                for (int64_t i = 0; i < nb; i++) mx[i] = row[i] > mx[i] ? row[i] : mx[i];
            }
            for (int64_t i = 0; i < nb; i++) {
                fl_acc_init(&S[i]);
                fl_acc_init(&STw[i]);
                fl_acc_init(&STD[i]);
                ties[i] = 0;
            }
            for (int64_t c0 = 0; c0 < C; c0 += FL_CE_CHUNK) {
                const int64_t c1 = C - c0 < FL_CE_CHUNK ? C : c0 + FL_CE_CHUNK;
                for (int64_t i = 0; i < nb; i++) {
                    ps[i] = 0.0;
                    ptw[i] = 0.0;
                    ptd[i] = 0.0;
                }
                for (int64_t c = c0; c < c1; c++) {
                    const real *row = xb + c * inner, *trow = tb + c * inner;
                    real *g = gb ? gb + c * inner : NULL;
                    const double wc = w ? (double)w[c] : 1.0;
                    for (int64_t i = 0; i < nb; i++) {
                        const real xc = row[i], d = xc - mx[i], ex = R_EXP(d);
                        if (g) g[i] = ex;
                        if (d == 0) ties[i]++;
                        else ps[i] += (double)ex;
                        const double tp = a1 * (double)trow[i] + e;
                        const double k = w ? wc * tp : tp;
                        ptw[i] += k;
                        if (k != 0) ptd[i] += k * ((double)xc - (double)mx[i]);
                    }
                }
                for (int64_t i = 0; i < nb; i++) {
                    fl_acc_add(&S[i], ps[i]);
                    fl_acc_add(&STw[i], ptw[i]);
                    fl_acc_add(&STD[i], ptd[i]);
                }
            }
            for (int64_t i = 0; i < nb; i++) {
                double S1;
                const double L = FL(ce_norm)(mx[i], S[i], ties[i], &S1);
                const double Tw = fl_acc_result(&STw[i]);
                double loss = Tw * L - fl_acc_result(&STD[i]);
                if (isnan(L)) loss = NAN;
                const real lr = (real)loss;
                if (loss_out) loss_out[flat0 + i] = lr;
                fl_acc_add(&acc, (double)lr);
                Tp[i] = (real)(isnan(L) ? NAN : gs * Tw / (1.0 + S1));
            }
            if (gb) {
                for (int64_t c = 0; c < C; c++) {
                    const real *trow = tb + c * inner;
                    real *g = gb + c * inner;
                    if (w) {
                        const real wc = w[c];
                        for (int64_t i = 0; i < nb; i++)
                            g[i] = g[i] * Tp[i] - wc * (a1g * trow[i] + eg);
                    } else {
                        for (int64_t i = 0; i < nb; i++)
                            g[i] = g[i] * Tp[i] - (a1g * trow[i] + eg);
                    }
                }
            }
        }
    }
    return fl_acc_result(&acc);
}

#endif /* FL_TEMPLATE_PASS */
