/*
 * overlap.c: overlap-based segmentation losses (Dice / Jaccard, MONAI DiceLoss semantics),
 * float32 and float64 from one template: this file includes itself once per dtype (see
 * real.h).
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
 * Sums: plain double over blocks of at most FL_DICE_SB positions, the block sums added
 * with Neumaier compensation (accumulate.h), so the error does not grow with S.
 * Softmax (class stride S) is done in blocks of SB spatial positions: each channel's
 * block is a contiguous run, so memory is read sequentially, never with stride S.
 *
 * Per kept class c (c0 <= c < C), with w = weight[c - c0] (1 if weight is NULL):
 *   D = G + P (jaccard: 2 (G + P - I)),  N = 2 I + smooth_nr,  Dn = D + smooth_dr
 *   f = (1 - N / Dn) w
 *   df/dp = w (-2 t / Dn + (N / Dn^2) dD/dp),  dD/dp = 1 or 2p  (jaccard: 2 (1 - t), 2 (2p - t))
 * written as df/dp = A t + Bc + Cp p with per-class A, Bc, Cp (grad_scale folded in).
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "fastloss.h"
#include "accumulate.h"

#define FL_DICE_SB 256            /* spatial positions per block (max) */
#define FL_DICE_SB_MIN 16         /* ... (min, for very many classes) */
#define FL_DICE_BLOCK_ELEMS 32768 /* softmax: C * SB kept near this (cache footprint) */
#define FL_DICE_STACK_C 64        /* per-class scratch on the stack up to this many classes */
#define FL_DICE_STACK_BUF 2048    /* softmax without grad_out: block buffer on the stack */

typedef struct {
    fl_acc I, G, P;
} fl_dice_sums;

/* df/dp = A t + Bc + Cp p  (already times weight and grad_scale) */
typedef struct {
    double A, Bc, Cp;
} fl_dice_coef;

/* First flat index of a label outside [0, C), or -1. */
static int64_t fl_dice_first_bad_label(int64_t n, const int64_t *labels, int64_t C)
{
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= C) return i;
    return -1;
}

static void fl_dice_sums_init(fl_dice_sums *s, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        fl_acc_init(&s[i].I);
        fl_acc_init(&s[i].G);
        fl_acc_init(&s[i].P);
    }
}

/* f of one class from its sums; fills the gradient coefficients. */
static double fl_dice_finish(const fl_dice_sums *s, double w, int squared, int jaccard,
                             double smooth_nr, double smooth_dr, double gs, fl_dice_coef *cf)
{
    const double I = fl_acc_result(&s->I), G = fl_acc_result(&s->G), P = fl_acc_result(&s->P);
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

/* Block sums of one channel over n positions: I += p t, G += t (t^2), P += p (p^2).
 * Four fixed lanes (element j goes to lane j % 4), then lanes combined: a fixed order, so
 * results do not depend on the compiler, yet the lanes are independent (no add-latency
 * chain, and the compiler may vectorise without reassociating).  TV(j) is the target of
 * element j as a double. */
#define FL_DICE_LANES 4
#define FL_DICE_SUMS_LOOP(TV, SQ)                                                     \
    do {                                                                            \
        double li_[FL_DICE_LANES] = {0.0}, lg_[FL_DICE_LANES] = {0.0},              \
               lp_[FL_DICE_LANES] = {0.0};                                          \
        int64_t j = 0;                                                              \
        for (; j + FL_DICE_LANES <= n; j += FL_DICE_LANES)                          \
            for (int l_ = 0; l_ < FL_DICE_LANES; l_++) {                            \
                const double q_ = (double)p[j + l_], t_ = TV(j + l_);               \
                li_[l_] += q_ * t_;                                                 \
                lg_[l_] += (SQ) ? t_ * t_ : t_;                                     \
                lp_[l_] += (SQ) ? q_ * q_ : q_;                                     \
            }                                                                       \
        for (int l_ = 0; j < n; j++, l_++) {                                        \
            const double q_ = (double)p[j], t_ = TV(j);                             \
            li_[l_] += q_ * t_;                                                     \
            lg_[l_] += (SQ) ? t_ * t_ : t_;                                         \
            lp_[l_] += (SQ) ? q_ * q_ : q_;                                         \
        }                                                                           \
        out[0] = (li_[0] + li_[1]) + (li_[2] + li_[3]);                             \
        out[1] = (lg_[0] + lg_[1]) + (lg_[2] + lg_[3]);                             \
        out[2] = (lp_[0] + lp_[1]) + (lp_[2] + lp_[3]);                             \
    } while (0)

/* Gradient of one channel over n positions: dst[j] = EXPR of g = A t + Bc + Cp p. */
#define FL_DICE_GRAD_LOOP(TV, DT, EXPR)                                               \
    do {                                                                            \
        for (int64_t j = 0; j < n; j++) {                                           \
            const double p_ = (double)p[j], t_ = TV(j);                             \
            const double g_ = A * t_ + Bc + Cp * p_;                                \
            dst[j] = (DT)(EXPR);                                                    \
        }                                                                           \
    } while (0)

#define FL_DICE_TV_DENSE(j) ((double)tr[j])
#define FL_DICE_TV_LABEL(j) fl_dice_onehot(lr[j], c)

/* [lab == c] as 0.0 / 1.0, built on the bits: the compiler turns (double)(lab == c) into
 * an unpredictable branch between two constants. */
static inline double fl_dice_onehot(int64_t lab, int64_t c)
{
    const uint64_t bits = ((uint64_t)0 - (uint64_t)(lab == c)) & UINT64_C(0x3FF0000000000000);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

#define FL_REAL_F32
#include "overlap.c"
#undef FL_REAL_F32
#define FL_REAL_F64
#include "overlap.c"
#undef FL_REAL_F64

#else /* one template pass: real, FL(), R_*() come from real.h */
#include "real.h"

#undef FL_DICE_UINT
#undef FL_DICE_SIGN
#if defined(FL_REAL_F32)
#define FL_DICE_UINT uint32_t
#define FL_DICE_SIGN UINT32_C(0x80000000)
#else
#define FL_DICE_UINT uint64_t
#define FL_DICE_SIGN UINT64_C(0x8000000000000000)
#endif

/* Branch-free select on the bits: sign ? a : b, for sign = 0 or FL_DICE_SIGN.
 * A ?: on floats stays an unpredictable branch under -ftrapping-math. */
static inline real FL(fl_dice_select)(FL_DICE_UINT sign, real a, real b)
{
    FL_DICE_UINT ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    const FL_DICE_UINT m = (FL_DICE_UINT)0 - (sign >> (sizeof(FL_DICE_UINT) * 8 - 1));
    const FL_DICE_UINT u = (ua & m) | (ub & ~m);
    real v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline FL_DICE_UINT FL(fl_dice_signbit)(real v)
{
    FL_DICE_UINT u;
    memcpy(&u, &v, sizeof u);
    return u & FL_DICE_SIGN;
}

/* Stable logistic of n <= FL_DICE_SB values: e = exp(-|x|) (never overflows),
 * r = 1 / (1 + e), p = r for x >= 0, e r for x < 0 (sign bit set); NaN stays NaN.
 * stash (may be NULL) receives e carrying the sign of x: pass 2 gets from it both p and
 * dp/dx = p (1 - p) = e r^2, accurate even where 1 - p would cancel.  The exp() calls
 * are a loop of their own so the rest is call-free and branch-free.  stash may be x
 * itself (in-place); p must not. */
static void FL(fl_dice_sigmoid_block)(int64_t n, const real *x, real *p, real *stash)
{
    real ev[FL_DICE_SB];
    for (int64_t j = 0; j < n; j++) ev[j] = R_EXP(-R_FABS(x[j]));
    for (int64_t j = 0; j < n; j++) {
        const real e = ev[j], r = RC(1.0) / (RC(1.0) + e);
        p[j] = FL(fl_dice_select)(FL(fl_dice_signbit)(x[j]), e * r, r);
    }
    if (stash)
        for (int64_t j = 0; j < n; j++) {
            FL_DICE_UINT ue;
            memcpy(&ue, &ev[j], sizeof ue);
            ue |= FL(fl_dice_signbit)(x[j]);
            memcpy(&stash[j], &ue, sizeof ue);
        }
}

/* out = block sums of p against the target of channel c (dense tr or labels lr). */
static void FL(fl_dice_block_sums)(int64_t n, const real *p, const real *tr,
                                   const int64_t *lr, int64_t c, int sq, double out[3])
{
    if (tr) {
        if (sq)
            FL_DICE_SUMS_LOOP(FL_DICE_TV_DENSE, 1);
        else
            FL_DICE_SUMS_LOOP(FL_DICE_TV_DENSE, 0);
    } else { /* one-hot of a label: t = t^2 */
        if (sq)
            FL_DICE_SUMS_LOOP(FL_DICE_TV_LABEL, 1);
        else
            FL_DICE_SUMS_LOOP(FL_DICE_TV_LABEL, 0);
    }
}

static inline void FL(fl_dice_add_block)(fl_dice_sums *sc, int64_t n, const real *p,
                                         const real *tr, const int64_t *lr, int64_t c, int sq)
{
    double out[3];
    FL(fl_dice_block_sums)(n, p, tr, lr, c, sq, out);
    fl_acc_add(&sc->I, out[0]);
    fl_acc_add(&sc->G, out[1]);
    fl_acc_add(&sc->P, out[2]);
}

/* Pass 1 of one sample without softmax (each (b, c) row is contiguous).  Dropped
 * channels are skipped.  Sigmoid: the signed exp(-|x|) is stashed into gb when given. */
static void FL(fl_dice_pass1_rows)(int64_t C, int64_t S, const real *xb, const real *tb,
                                   const int64_t *lb, int sigmoid, int64_t c0, int sq,
                                   real *gb, fl_dice_sums *sums)
{
    real pblk[FL_DICE_SB];
    for (int64_t c = c0; c < C; c++) {
        for (int64_t s0 = 0; s0 < S; s0 += FL_DICE_SB) {
            const int64_t n = S - s0 < FL_DICE_SB ? S - s0 : FL_DICE_SB;
            const real *xr = xb + c * S + s0;
            const real *p = xr;
            if (sigmoid) {
                FL(fl_dice_sigmoid_block)(n, xr, pblk, gb ? gb + c * S + s0 : NULL);
                p = pblk;
            }
            FL(fl_dice_add_block)(&sums[c], n, p, tb ? tb + c * S + s0 : NULL,
                                  lb ? lb + s0 : NULL, c, sq);
        }
    }
}

/* Pass 1 of one sample with softmax over C, in blocks of SB positions.  p goes to gb
 * (stash, same layout as x) when gb != NULL, else to buf (C * SB, per block). */
static void FL(fl_dice_pass1_softmax)(int64_t C, int64_t S, int64_t SB, const real *xb,
                                      const real *tb, const int64_t *lb, int64_t c0, int sq,
                                      real *gb, real *buf, fl_dice_sums *sums)
{
    real m[FL_DICE_SB];
    double z[FL_DICE_SB];
    for (int64_t s0 = 0; s0 < S; s0 += SB) {
        const int64_t n = S - s0 < SB ? S - s0 : SB;
        for (int64_t j = 0; j < n; j++) m[j] = xb[s0 + j];
        for (int64_t c = 1; c < C; c++) {
            const real *xr = xb + c * S + s0;
            for (int64_t j = 0; j < n; j++) m[j] = xr[j] > m[j] ? xr[j] : m[j];
        }
        for (int64_t j = 0; j < n; j++) z[j] = 0.0;
        for (int64_t c = 0; c < C; c++) {
            const real *xr = xb + c * S + s0;
            real *pc = gb ? gb + c * S + s0 : buf + c * SB;
            for (int64_t j = 0; j < n; j++) {
                const real e = R_EXP(xr[j] - m[j]);
                pc[j] = e;
                z[j] += (double)e;
            }
        }
        for (int64_t j = 0; j < n; j++) z[j] = 1.0 / z[j];
        for (int64_t c = 0; c < C; c++) {
            real *pc = gb ? gb + c * S + s0 : buf + c * SB;
            if (c < c0 && !gb) continue; /* p of a dropped channel is not needed */
            for (int64_t j = 0; j < n; j++) pc[j] = (real)((double)pc[j] * z[j]);
            if (c >= c0)
                FL(fl_dice_add_block)(&sums[c], n, pc, tb ? tb + c * S + s0 : NULL,
                                      lb ? lb + s0 : NULL, c, sq);
        }
    }
}

/* dst[j] = df/dp_j of channel c over n positions, p = x (identity). */
static void FL(fl_dice_grad_block)(int64_t n, const real *p, const real *tr,
                                   const int64_t *lr, int64_t c, const fl_dice_coef *cf,
                                   real *dst)
{
    const double A = cf->A, Bc = cf->Bc, Cp = cf->Cp;
    if (tr)
        FL_DICE_GRAD_LOOP(FL_DICE_TV_DENSE, real, g_);
    else
        FL_DICE_GRAD_LOOP(FL_DICE_TV_LABEL, real, g_);
}

/* Sigmoid: g[j] holds the stash of pass 1 (signed e = exp(-|x|)); p is recomputed exactly
 * as in pass 1 and dp/dx = e r^2.  Overwritten with the gradient. */
#define FL_DICE_SIG_GRAD_LOOP(TV)                                                     \
    do {                                                                            \
        for (int64_t j = 0; j < n; j++) {                                           \
            const FL_DICE_UINT sg_ = FL(fl_dice_signbit)(g[j]);                     \
            const real e_ = R_FABS(g[j]), r_ = RC(1.0) / (RC(1.0) + e_), er_ = e_ * r_; \
            const double p_ = (double)FL(fl_dice_select)(sg_, er_, r_), t_ = TV(j);  \
            const double d_ = A * t_ + Bc + Cp * p_;                                \
            g[j] = (real)(d_ * ((double)er_ * (double)r_));                         \
        }                                                                           \
    } while (0)

static void FL(fl_dice_grad_sigmoid)(int64_t n, const real *tr, const int64_t *lr, int64_t c,
                                     const fl_dice_coef *cf, real *g)
{
    const double A = cf->A, Bc = cf->Bc, Cp = cf->Cp;
    if (tr)
        FL_DICE_SIG_GRAD_LOOP(FL_DICE_TV_DENSE);
    else
        FL_DICE_SIG_GRAD_LOOP(FL_DICE_TV_LABEL);
}

/* dst[j] = df/dp_j of channel c in double (softmax: g enters g - sum_k g_k p_k, which can
 * cancel, so g is not rounded to real first). */
static void FL(fl_dice_grad_block_d)(int64_t n, const real *p, const real *tr,
                                     const int64_t *lr, int64_t c, const fl_dice_coef *cf,
                                     double *dst)
{
    const double A = cf->A, Bc = cf->Bc, Cp = cf->Cp;
    if (tr)
        FL_DICE_GRAD_LOOP(FL_DICE_TV_DENSE, double, g_);
    else
        FL_DICE_GRAD_LOOP(FL_DICE_TV_LABEL, double, g_);
}

/* Pass 2 of one sample without softmax.  gb holds the sigmoid stash (sigmoid) or
 * nothing (identity: p = x). */
static void FL(fl_dice_pass2_rows)(int64_t C, int64_t S, const real *xb, const real *tb,
                                   const int64_t *lb, int sigmoid, int64_t c0,
                                   const fl_dice_coef *coef, real *gb)
{
    for (int64_t c = 0; c < C; c++) {
        real *gr = gb + c * S;
        if (c < c0) {
            for (int64_t s = 0; s < S; s++) gr[s] = RC(0.0);
            continue;
        }
        if (sigmoid)
            FL(fl_dice_grad_sigmoid)(S, tb ? tb + c * S : NULL, lb, c, &coef[c], gr);
        else
            FL(fl_dice_grad_block)(S, xb + c * S, tb ? tb + c * S : NULL, lb, c, &coef[c], gr);
    }
}

/* Pass 2 of one sample with softmax: gb holds p; dx_j = p_j (g_j - sum_k g_k p_k), g = 0
 * for dropped channels. */
static void FL(fl_dice_pass2_softmax)(int64_t C, int64_t S, int64_t SB, const real *tb,
                                      const int64_t *lb, int64_t c0,
                                      const fl_dice_coef *coef, real *gb)
{
    double dot[FL_DICE_SB], gblk[FL_DICE_SB];
    for (int64_t s0 = 0; s0 < S; s0 += SB) {
        const int64_t n = S - s0 < SB ? S - s0 : SB;
        const int64_t *lr = lb ? lb + s0 : NULL;
        for (int64_t j = 0; j < n; j++) dot[j] = 0.0;
        for (int64_t c = c0; c < C; c++) {
            const real *pc = gb + c * S + s0;
            FL(fl_dice_grad_block_d)(n, pc, tb ? tb + c * S + s0 : NULL, lr, c, &coef[c], gblk);
            for (int64_t j = 0; j < n; j++) dot[j] += gblk[j] * (double)pc[j];
        }
        for (int64_t c = 0; c < C; c++) {
            real *pc = gb + c * S + s0;
            if (c < c0) {
                for (int64_t j = 0; j < n; j++) pc[j] = (real)(-(double)pc[j] * dot[j]);
                continue;
            }
            FL(fl_dice_grad_block_d)(n, pc, tb ? tb + c * S + s0 : NULL, lr, c, &coef[c], gblk);
            for (int64_t j = 0; j < n; j++) pc[j] = (real)((double)pc[j] * (gblk[j] - dot[j]));
        }
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

    const int softmax = activation == FL_ACT_SOFTMAX, sigmoid = activation == FL_ACT_SIGMOID;
    const int sq = squared_pred != 0, jac = jaccard != 0;
    const int64_t K = C - c0;

    /* softmax block width: C * SB near FL_DICE_BLOCK_ELEMS, within [SB_MIN, SB] */
    int64_t SB = FL_DICE_BLOCK_ELEMS / C;
    if (SB > FL_DICE_SB) SB = FL_DICE_SB;
    if (SB < FL_DICE_SB_MIN) SB = FL_DICE_SB_MIN;
    /* SB depends on C only, so f is bit-identical with and without grad_out */
    const int need_buf = softmax && grad_out == NULL;

    /* scratch: per-class sums and coefficients (+ the softmax block buffer) */
    fl_dice_sums sums_stack[FL_DICE_STACK_C];
    fl_dice_coef coef_stack[FL_DICE_STACK_C];
    real buf_stack[FL_DICE_STACK_BUF];
    fl_dice_sums *sums = sums_stack;
    fl_dice_coef *coef = coef_stack;
    real *buf = buf_stack;
    void *heap = NULL;
    {
        const int heap_cls = C > FL_DICE_STACK_C;
        const int heap_buf = need_buf && C * SB > FL_DICE_STACK_BUF;
        if (heap_cls || heap_buf) {
            size_t bytes = 0;
            if (heap_cls) bytes += (size_t)C * (sizeof(fl_dice_sums) + sizeof(fl_dice_coef));
            if (heap_buf) bytes += (size_t)C * (size_t)SB * sizeof(real);
            heap = malloc(bytes);
            if (!heap) return -2;
            char *h = (char *)heap;
            if (heap_cls) {
                sums = (fl_dice_sums *)h;
                h += (size_t)C * sizeof(fl_dice_sums);
                coef = (fl_dice_coef *)h;
                h += (size_t)C * sizeof(fl_dice_coef);
            }
            if (heap_buf) buf = (real *)h;
        }
    }

    const int64_t nb = batch ? 1 : B; /* groups of samples sharing the sums */
    const int64_t per = batch ? B : 1;
    for (int64_t grp = 0; grp < nb; grp++) {
        fl_dice_sums_init(sums, C);
        for (int64_t b = grp * per; b < (grp + 1) * per; b++) {
            const real *xb = x + b * C * Sp;
            const real *tb = t ? t + b * C * Sp : NULL;
            const int64_t *lb = labels ? labels + b * Sp : NULL;
            real *gb = grad_out ? grad_out + b * C * Sp : NULL;
            if (softmax)
                FL(fl_dice_pass1_softmax)(C, Sp, SB, xb, tb, lb, c0, sq, gb, buf, sums);
            else
                FL(fl_dice_pass1_rows)(C, Sp, xb, tb, lb, sigmoid, c0, sq, gb, sums);
        }
        for (int64_t c = c0; c < C; c++) {
            const double w = weight ? (double)weight[c - c0] : 1.0;
            const double f = fl_dice_finish(&sums[c], w, sq, jac, smooth_nr, smooth_dr,
                                            grad_scale, &coef[c]);
            if (f_out) f_out[grp * K + (c - c0)] = f;
        }
        if (!grad_out) continue;
        for (int64_t b = grp * per; b < (grp + 1) * per; b++) {
            const real *xb = x + b * C * Sp;
            const real *tb = t ? t + b * C * Sp : NULL;
            const int64_t *lb = labels ? labels + b * Sp : NULL;
            real *gb = grad_out + b * C * Sp;
            if (softmax)
                FL(fl_dice_pass2_softmax)(C, Sp, SB, tb, lb, c0, coef, gb);
            else
                FL(fl_dice_pass2_rows)(C, Sp, xb, tb, lb, sigmoid, c0, coef, gb);
        }
    }
    free(heap);
    return 0;
}

#endif /* FL_TEMPLATE_PASS */
