/*
 * cross_entropy.c: softmax cross-entropy (class-index and class-probability targets),
 * softmax focal loss and the "mean" denominator of class-index cross-entropy, float32
 * and float64 from one template: this file includes itself once per dtype (see real.h),
 * and is compiled once per CPU target (vector width and math from vecmath.h).
 *
 * Layout (fastloss.h): x is (outer, C, inner); class c of sample (o, s) is at
 * x[(o * C + c) * inner + s], the sample's label at labels[o * inner + s].
 *
 * Algorithm, per sample (three sweeps, the sample's logits staying in cache between them):
 *   1. m   = max_c x_c
 *   2. e_c = exp(x_c - m) (vecmath fl_exp_u1: <= 1 ulp), kept for sweep 3;
 *      S1  = sum of the e_c with x_c != m, plus (ties - 1) where ties counts the
 *            x_c == m (each such term is exactly 1): the sum with one maximum term left
 *            out; plus the target / label-smoothing sums.  All sums in double;
 *      L   = log1p(S1), so lse = m + L and logp_c = (x_c - m) - L.
 *            log1p(S1) keeps -logp small and accurate when one class dominates
 *            (e.g. -logp_y = 1e-12 comes out with full relative precision).
 *   3. (only with grad_out) g_j = e_j * (A / S) - E w_j, S = 1 + S1 (no second exp:
 *      p_j = e_j / S, and no rounding of (x_j - m) - L); the label column gets its
 *      exact-form value (below).
 * The per-sample scalar work (log1p, p_y, the loss, the gradient coefficients, the focal
 * factor) is done in double, vectorised over samples (fl_ce_finish: fl_log1p_u1_f64, one
 * division; p_y = e_y / S, with float32 index targets from sweep 2's float e_y like every
 * other p_j, else from fl_exp_u1_f64(x_y - m)).
 *
 * Two engines, chosen by the layout (the same for both dtypes):
 *  - Row engine, inner == 1 and C > FL_CE_TRANSPOSE_MAX: vectors run along each row.
 *    Rows are taken in groups of G (G * C elements within FL_CE_SCRATCH_BYTES, at most
 *    FL_CE_GMAX): sweeps 1-2 row by row with the e_c going to a scratch buffer (stack;
 *    malloc'ed for a single row above FL_CE_SCRATCH_BYTES; if that fails grad_out itself
 *    is the scratch), then the group's per-sample stage, then sweep 3 writes each
 *    gradient row once.  So x is read once from memory and grad_out written once; large
 *    gradients (>= FL_CE_NT_MIN_BYTES per call) are computed into the scratch and streamed
 *    out with non-temporal stores (no read-for-ownership).
 *  - Block engine, vectors running across samples (one lane per sample): a block of up
 *    to FL_CE_BMAX samples whose class c values are a contiguous run, class runs at a
 *    fixed stride.  inner > 1 (NCHW) is exactly that (runs x[(o*C + c)*inner + s0 ...],
 *    the e_c kept in grad_out between the sweeps); small rows (inner == 1,
 *    C <= FL_CE_TRANSPOSE_MAX, e.g. C = 10) are transposed into that form in registers
 *    (RW x RW transposes, RW = lanes), 64 rows at a time, and the gradient transposed
 *    back: no horizontal operation and no per-row scalar work, which would otherwise
 *    dominate short rows.
 * grad_out == x works in both: a sample's gradient is written after its logits were read.
 *
 * Same bits for every layout.  Every sum over classes is taken in one canonical order,
 * whichever way the vectors run: with K = lanes of the target's real vector (16/8/4
 * float32, 8/4/2 float64 for AVX-512/AVX2/SSE2), class c goes to slot c mod K, each slot
 * adds its classes in increasing c starting from +0, and the K slots are combined by a
 * fixed halving tree (slot k += slot k + w, w = K/2, ..., 1).  The row engine keeps one
 * slot per vector lane; the block engine keeps K slot arrays per sample, or for small
 * rows one vector's K slots in registers (ce_rows_sweep2).  float64 slots
 * are compensated: plain partial sums over chunks of FL_CE_CHUNK classes are added into a
 * per-slot Neumaier sum (s, z), each slot taken as s + z before the tree.  Everything else
 * is the same lane-wise arithmetic in both engines, so a sample gets the same bits in the
 * (N, C) and (N, C, d...) layouts, alone or in a batch, at any position.  Different
 * targets (different K, fused or unfused multiply-adds in vecmath) differ in the last bits.
 *
 * Precision.  float32: e_c in float (1 ulp), the sums in double (error <= C 2^-53
 * relative, far below a float ulp), per-sample scalars in double: float32 losses are
 * within ~1 ulp of correctly rounded relative to the magnitude of the logits.  float64:
 * compensated slot sums (a few ulp for C = 32000; uncompensated they would be
 * ~sqrt(C / K) ulp), per-sample scalars with 1-ulp log1p / exp: a few ulp.
 *
 * The label column: p_y - 1 is computed without cancellation: -S1 / S when x_y is the
 * maximum, else p_y = e_y / S <= 1/2 and p_y - 1 is exact-ish (within an ulp of the float
 * e_y for float32 index targets).  So it is
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
 *   - Ignored samples (label == ignore_index) give loss 0 and gradient 0 whatever their
 *     logits (their values are replaced by 0 where an engine loads them with their
 *     neighbours); torch also gives loss 0, but its gradient of an ignored row with a
 *     NaN/inf logit is NaN.
 * Labels are all checked before any logit of their group / block is read; a bad label
 * stops the kernel with *err_index set (outputs of earlier groups written).
 * Floating-point flags: finite inputs raise at most inexact / underflow (vecmath's
 * rules); lanes that are not in use (tails, ignored samples) hold harmless values, and
 * products that could be 0 * inf are masked before they are formed.
 *
 * Reentrant: no mutable static state; scratch on the stack or malloc'ed per call.
 */
#ifndef FL_TEMPLATE_PASS
#define FL_TEMPLATE_PASS
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "fastloss.h"
#include "accumulate.h"
#include "vecmath.h"

#define FL_CE_INLINE static inline __attribute__((always_inline))
#define FL_CE_NOINLINE static __attribute__((noinline))

/* Row engine: rows per group, as many as fit FL_CE_SCRATCH_BYTES of scratch (the e_c of
 * the group, L1/L2-resident), at most FL_CE_GMAX. */
#define FL_CE_GMAX 64
#define FL_CE_SCRATCH_BYTES (32 * 1024)

/* Rows of at most this many classes go through the block engine (transposed). */
#define FL_CE_TRANSPOSE_MAX 32

/* Block engine: samples per block, at most FL_CE_BMAX (size of the stack arrays; a
 * multiple of every target's lane count), for inner > 1 otherwise as many as keep the
 * block's C runs (of x, grad_out, and t for prob targets) within FL_CE_BLOCK_BYTES (L2),
 * but at least FL_CE_BMIN so each run spans a few cache lines. */
#define FL_CE_BMAX 64
#define FL_CE_BMIN 32
#define FL_CE_BLOCK_BYTES (384 * 1024)

/* float64 slot sums are flushed into their compensated sums every FL_CE_CHUNK classes
 * (a multiple of every target's lane count). */
#define FL_CE_CHUNK 32

/* Gradients of at least this many bytes per call are streamed out with non-temporal
 * stores (as in regression.c: regular stores win while the output stays in the L3).  The
 * call sees only its own rows: a caller splitting a huge batch into blocks should keep
 * blocks above this size to get streaming stores (fastloss/_core.pyx does for inputs of
 * 8 MiB or more: CE_STREAM_BLOCK_BYTES).  Measured on a Sapphire-Rapids-class Xeon, one
 * thread, (65536, 1000) float32 with gradient: 0.61 ns per element in 4 MiB calls (the
 * row engine's prefetch and overlapped streaming, below) against 0.97 in 256 KiB calls
 * with regular stores. */
#ifndef FL_CE_NT_MIN_BYTES
#define FL_CE_NT_MIN_BYTES (4 << 20)
#endif

#if defined(__SSE2__)
#include <immintrin.h>
#define FL_CE_HAVE_NT 1
#else
#define FL_CE_HAVE_NT 0
#endif

#define FL_CE_DW fl_lanes_f64 /* lanes of a double vector */

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

/* Lane-wise Neumaier step (fl_acc_add on every lane): (s, z) += v */
FL_CE_INLINE void fl_ce_neum(fl_v_f64 *s, fl_v_f64 *z, fl_v_f64 v)
{
    const fl_v_f64 t = *s + v;
    const fl_vi_f64 big = fl_abs_f64(*s) >= fl_abs_f64(v);
    *z = *z + fl_select_f64(big, (*s - t) + v, (v - t) + *s);
    *s = t;
}

/* A compensated slot as one value (fl_acc_result on every lane) */
FL_CE_INLINE fl_v_f64 fl_ce_neum_result(fl_v_f64 s, fl_v_f64 z)
{
    return fl_select_f64(fl_abs_f64(s) <= DBL_MAX, s + z, s);
}

/* The halving tree over the lanes of v (lane i += lane i + w, w = lanes/2, ..., 1). */
FL_CE_INLINE double fl_ce_tree_f64(fl_v_f64 v)
{
    union { fl_v_f64 v; double a[FL_CE_DW]; } u;
    u.v = v;
    for (int w = FL_CE_DW / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) u.a[i] = u.a[i] + u.a[i + w];
    return u.a[0];
}

static void fl_ce_stream_fence(void)
{
#if FL_CE_HAVE_NT
    _mm_sfence();
#endif
}

/* A copy from scratch to the output with non-temporal stores where dst is aligned to the
 * vector size and regular ones at the ends, either at once (fl_ce_stream) or one vector
 * at a time (fl_ce_streamer_step) between the arithmetic of the next group's sweep 2, so
 * that the write traffic overlaps with computation instead of stalling in a burst on the
 * write-combining buffers; fl_ce_streamer_rest finishes it.  Callers fence once at the
 * end (fl_ce_stream_fence). */
typedef struct {
    char *d;
    const char *s;
    int64_t i, n;
} fl_ce_streamer;

static void fl_ce_streamer_start(fl_ce_streamer *st, void *dst, const void *src, int64_t nbytes)
{
    st->d = (char *)dst;
    st->s = (const char *)src;
    st->n = nbytes;
    const int64_t mis = (int64_t)((uintptr_t)st->d & (FL_VEC_BYTES - 1));
    int64_t head = mis ? FL_VEC_BYTES - mis : 0;
    if (head > nbytes) head = nbytes;
    __builtin_memcpy(st->d, st->s, (size_t)head);
    st->i = head;
}

/* one aligned vector, if a whole one is left; returns whether it stored one */
static inline __attribute__((always_inline)) int fl_ce_streamer_step(fl_ce_streamer *st)
{
#if FL_CE_HAVE_NT
    if (st->i + FL_VEC_BYTES > st->n) return 0;
    char *d = st->d + st->i;
    const char *s = st->s + st->i;
#if defined(__AVX512F__) && FL_VEC_BYTES == 64
    _mm512_stream_si512((void *)d, _mm512_loadu_si512((const void *)s));
#elif defined(__AVX__) && FL_VEC_BYTES == 32
    _mm256_stream_si256((__m256i *)d, _mm256_loadu_si256((const __m256i *)s));
#else
    for (int k = 0; k < FL_VEC_BYTES; k += 16)
        _mm_stream_si128((__m128i *)(d + k), _mm_loadu_si128((const __m128i *)(s + k)));
#endif
    st->i += FL_VEC_BYTES;
    return 1;
#else
    (void)st;
    return 0;
#endif
}

static void fl_ce_streamer_rest(fl_ce_streamer *st)
{
    while (fl_ce_streamer_step(st)) {
    }
    __builtin_memcpy(st->d + st->i, st->s + st->i, (size_t)(st->n - st->i));
    st->i = st->n;
}

static void fl_ce_stream(void *dst, const void *src, int64_t nbytes)
{
    fl_ce_streamer st;
    fl_ce_streamer_start(&st, dst, src, nbytes);
    fl_ce_streamer_rest(&st);
}

/* The returned sum of the losses: sample f (flat index from the start of the call) goes
 * to lane f mod 8, each lane a Neumaier sum (fl_acc_add), the lanes combined in order at
 * the end.  Eight independent dependency chains instead of one (a single compensated sum
 * costs ~12 cycles per sample, which dominated short rows); the result depends only on
 * the sequence of losses, not on the layout, the engine or the pointers' alignment. */
#define FL_CE_SUM_LANES 8
typedef struct {
    double s[FL_CE_SUM_LANES] __attribute__((aligned(64)));
    double z[FL_CE_SUM_LANES] __attribute__((aligned(64)));
    int64_t pos; /* flat index of the next sample */
} fl_ce_sum;

static void fl_ce_sum_init(fl_ce_sum *a)
{
    for (int k = 0; k < FL_CE_SUM_LANES; k++) a->s[k] = a->z[k] = 0.0;
    a->pos = 0;
}

static double fl_ce_sum_result(const fl_ce_sum *a)
{
    fl_acc acc;
    fl_acc_init(&acc);
    for (int k = 0; k < FL_CE_SUM_LANES; k++) fl_acc_add(&acc, a->s[k]);
    for (int k = 0; k < FL_CE_SUM_LANES; k++)
        if (isfinite(a->s[k])) fl_acc_add(&acc, a->z[k]);
    return fl_acc_result(&acc);
}

/* ------------------------------------------------------ the per-sample stage */

enum { FL_CE_MODE_CE = 0, FL_CE_MODE_FOCAL = 1, FL_CE_MODE_PROB = 2 };

/* Per-call parameters. */
typedef struct {
    int mode;   /* FL_CE_MODE_* */
    int smooth; /* CE: label smoothing on */
    int ey;     /* CE: the engines give e_y = exp(x_y - m) as computed in sweep 2 */
    double one_m_eps, e, W, gamma, gs;
} fl_ce_par;

/* Per-sample inputs and outputs of the per-sample stage, for a group / block of samples.
 * Inputs: m (the max), S (sum of the non-maximum e_c), ties, dy = x_y - m, ey = e_y
 * (with P->ey; only needed for the gradient), wy (w[y] or
 * alpha[y]), A, B (CE: A = smoothing sum sum_{w_c != 0} w_c (x_c - m); prob: A = Tw,
 * B = TD), ok (-1: a sample in use, 0: ignored or not a sample).  Outputs: loss (+0 where
 * not ok), coef (multiplier of e_j in the gradient: gs A / S), gy (the label column's
 * gradient). */
typedef struct {
    double m[FL_CE_BMAX], S[FL_CE_BMAX], ties[FL_CE_BMAX], dy[FL_CE_BMAX], ey[FL_CE_BMAX];
    double wy[FL_CE_BMAX];
    double A[FL_CE_BMAX], B[FL_CE_BMAX];
    double loss[FL_CE_BMAX], coef[FL_CE_BMAX], gy[FL_CE_BMAX];
    int64_t ok[FL_CE_BMAX];
} fl_ce_grp;

/* Harmless inputs for an entry not in use (ignored sample, vector tail). */
FL_CE_INLINE void fl_ce_grp_blank(fl_ce_grp *g, int64_t i)
{
    g->m[i] = 0.0;
    g->S[i] = 0.0;
    g->ties[i] = 1.0;
    g->dy[i] = 0.0;
    g->ey[i] = 1.0;
    g->wy[i] = 1.0;
    g->A[i] = 0.0;
    g->B[i] = 0.0;
    g->ok[i] = 0;
}

/* The per-sample stage for entries [0, n) (n a multiple of the double lanes),
 * vectorised over samples; every lane independent of its neighbours.  MODE, EY and
 * SMOOTH are P->mode, P->ey and P->smooth as constants (P is read through a local copy:
 * stores to g cannot change it, so its fields stay in registers). */
FL_CE_INLINE void fl_ce_finish_body(const int MODE, const int EY, const int SMOOTH,
                                    fl_ce_grp *g, int64_t n, const fl_ce_par *Pp)
{
    const fl_ce_par Pl = *Pp, *const P = &Pl;
    const fl_v_f64 zero = fl_set1_f64(0.0), one = fl_set1_f64(1.0);
    const fl_v_f64 qnan = fl_set1_f64(NAN);
    const double gs = P->gs;
    for (int64_t i = 0; i < n; i += FL_CE_DW) {
        const fl_v_f64 m = fl_load_f64(g->m + i), ties = fl_load_f64(g->ties + i);
        const fl_v_f64 dy = fl_load_f64(g->dy + i);
        /* S1 = S + (ties - 1), the sum with one maximum term left out; a non-finite
         * maximum (+inf present, all -inf, NaN) has no softmax: NaN. */
        fl_v_f64 S1 = fl_load_f64(g->S + i) + (ties - 1.0);
        S1 = fl_select_f64(fl_abs_f64(m) <= DBL_MAX, S1, qnan);
        const fl_v_f64 L = fl_log1p_u1_f64(S1); /* log S, S = 1 + S1 */
        const fl_vi_f64 nanL = L != L;
        const fl_v_f64 r = 1.0 / (1.0 + S1); /* 1 / S */
        fl_v_f64 loss, coef, gy;
        if (MODE == FL_CE_MODE_PROB) {
            /* loss = Tw L - TD;  g_j = e_j (gs Tw / S) - w_j (gs t'_j) */
            const fl_v_f64 Tw = fl_load_f64(g->A + i), TD = fl_load_f64(g->B + i);
            loss = Tw * L - TD;
            coef = (gs * Tw) * r;
            gy = zero;
        } else {
            /* label quantities: u = -logp_y, py = p_y, pm1 = p_y - 1 (no cancellation;
             * exp(0) = 1 exactly) */
            const fl_v_f64 wy = fl_load_f64(g->wy + i);
            const fl_v_f64 u = L - dy;
            const fl_v_f64 ey = EY ? fl_load_f64(g->ey + i) : fl_exp_u1_f64(dy);
            const fl_v_f64 py = ey * r;
            const fl_v_f64 pm1 = fl_select_f64(dy == 0.0, -S1 * r, py - 1.0);
            fl_v_f64 A;
            if (MODE == FL_CE_MODE_CE) {
                /* cy = (1 - eps) w_y, e = eps / C, W = sum w:
                 *   loss = cy u;  A = cy + e W;  gy = cy (p_y - 1) + e (W p_y - w_y) */
                const fl_v_f64 cy = P->one_m_eps * wy;
                const fl_vi_f64 cnz = cy != 0.0;
                loss = fl_select_f64(cnz, cy * fl_select_f64(cnz, u, zero), zero);
                A = cy + P->e * P->W;
                gy = cy * pm1;
                if (SMOOTH && P->e != 0) gy = gy + P->e * ((P->W * py) - wy);
                if (SMOOTH) /* + e (W L - sum_{w_c != 0} w_c (x_c - m)) */
                    loss = loss + P->e * ((P->W * L) - fl_load_f64(g->A + i));
            } else {
                /* focal, q = 1 - p_y, a = alpha_y:
                 *   loss = a q^gamma u;  F = q^gamma (1 + gamma p_y u / q)
                 *   A = a F;  gy = a F (p_y - 1)
                 * This is the log-space form: u / q -> 1 as p_y -> 1 (u = log1p(S1), q =
                 * S1 / (1 + S1) both ~ S1), taken as 1 at u = 0 where q^gamma = 0 kills F
                 * for gamma > 0; so F is finite for every gamma > 0, 0 < gamma < 1
                 * included.  p_y u -> 0 as u -> inf (taken as 0 once p_y = 0).
                 * gamma == 0: F = 1 and q^0 = 1 exactly (alpha-weighted cross-entropy);
                 * gamma 1, 2: q, q * q; other gamma: pow per lane. */
                const double gamma = P->gamma;
                const fl_v_f64 q = -pm1;
                fl_v_f64 qg = one, F = one;
                if (gamma != 0) {
                    if (gamma == 1.0) {
                        qg = q;
                    } else if (gamma == 2.0) {
                        qg = q * q;
                    } else {
                        union { fl_v_f64 v; double a[FL_CE_DW]; } uq, ur;
                        uq.v = q;
                        for (int k = 0; k < FL_CE_DW; k++) ur.a[k] = pow(uq.a[k], gamma);
                        qg = ur.v;
                    }
                    const fl_vi_f64 u0 = u == 0.0;
                    const fl_v_f64 ratio = fl_select_f64(u0, one, u / fl_select_f64(u0, one, q));
                    const fl_vi_f64 p0 = py == 0.0;
                    const fl_v_f64 t = (gamma * fl_select_f64(p0, zero, py)) *
                                       fl_select_f64(p0, zero, ratio);
                    F = qg * (1.0 + t);
                }
                const fl_vi_f64 anz = wy != 0.0;
                loss = fl_select_f64(anz, (wy * qg) * fl_select_f64(anz, u, zero), zero);
                A = wy * F;
                gy = A * pm1;
            }
            coef = (gs * A) * r;
            gy = gs * gy;
        }
        loss = fl_select_f64(nanL, qnan, loss);
        fl_vi_f64 ok;
        __builtin_memcpy(&ok, g->ok + i, sizeof ok);
        fl_store_f64(g->loss + i, fl_select_f64(ok, loss, zero));
        fl_store_f64(g->coef + i, fl_select_f64(nanL, qnan, coef));
        fl_store_f64(g->gy + i, gy);
    }
}

static void fl_ce_finish(fl_ce_grp *g, int64_t n, const fl_ce_par *P)
{
    const int ey = P->ey, sm = P->smooth;
    if (P->mode == FL_CE_MODE_PROB) fl_ce_finish_body(FL_CE_MODE_PROB, 0, 0, g, n, P);
    else if (P->mode == FL_CE_MODE_FOCAL) fl_ce_finish_body(FL_CE_MODE_FOCAL, 0, 0, g, n, P);
    else if (ey && sm) fl_ce_finish_body(FL_CE_MODE_CE, 1, 1, g, n, P);
    else if (ey) fl_ce_finish_body(FL_CE_MODE_CE, 1, 0, g, n, P);
    else if (sm) fl_ce_finish_body(FL_CE_MODE_CE, 0, 1, g, n, P);
    else fl_ce_finish_body(FL_CE_MODE_CE, 0, 0, g, n, P);
}

/* in-register transposes of RW x RW blocks: index lists of the butterfly steps
 * (vector i and i + b exchange their b-blocks) */
#define FL_CE_TA_2_1 0, 2
#define FL_CE_TB_2_1 1, 3
#define FL_CE_TA_4_2 0, 1, 4, 5
#define FL_CE_TB_4_2 2, 3, 6, 7
#define FL_CE_TA_4_1 0, 4, 2, 6
#define FL_CE_TB_4_1 1, 5, 3, 7
#define FL_CE_TA_8_4 0, 1, 2, 3, 8, 9, 10, 11
#define FL_CE_TB_8_4 4, 5, 6, 7, 12, 13, 14, 15
#define FL_CE_TA_8_2 0, 1, 8, 9, 4, 5, 12, 13
#define FL_CE_TB_8_2 2, 3, 10, 11, 6, 7, 14, 15
#define FL_CE_TA_8_1 0, 8, 2, 10, 4, 12, 6, 14
#define FL_CE_TB_8_1 1, 9, 3, 11, 5, 13, 7, 15
#define FL_CE_TA_16_8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define FL_CE_TB_16_8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define FL_CE_TA_16_4 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define FL_CE_TB_16_4 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define FL_CE_TA_16_2 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define FL_CE_TB_16_2 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define FL_CE_TA_16_1 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define FL_CE_TB_16_1 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define FL_CE_TSTEP(v, W, b)                                                              \
    for (int i_ = 0; i_ < (W); i_++)                                                      \
        if (!(i_ & (b))) {                                                                \
            const __typeof__(v[0]) a_ = v[i_], c_ = v[i_ + (b)];                          \
            v[i_] = __builtin_shufflevector(a_, c_, FL_CE_TA_##W##_##b);                  \
            v[i_ + (b)] = __builtin_shufflevector(a_, c_, FL_CE_TB_##W##_##b);            \
        }

#define FL_REAL_F32
#include "cross_entropy.c"
#undef FL_REAL_F32
#define FL_REAL_F64
#include "cross_entropy.c"
#undef FL_REAL_F64

#else /* one template pass: real, FL(), R_*() come from real.h */
#include "real.h"

/* the target's real vector in this pass: RV (RW lanes), RVI (its lane mask / ints) */
#undef RV
#undef RVI
#undef RW
#undef CE_NH
#undef CE_COMP
#undef CE_TW
#define RV FL(fl_v)
#define RVI FL(fl_vi)
#define RW FL(fl_lanes)
#if defined(FL_REAL_F32)
#define CE_NH 2   /* double vectors per real vector */
#define CE_COMP 0 /* compensated slots */
#define CE_TW (FL_VEC_BYTES / 4)
#else
#define CE_NH 1
#define CE_COMP 1
#define CE_TW (FL_VEC_BYTES / 8)
#endif

/* ------------------------------------------------------------------ helpers */

/* a real vector as CE_NH double vectors (lanes in order) */
FL_CE_INLINE void FL(ce_widen)(RV v, fl_v_f64 out[CE_NH])
{
#if defined(FL_REAL_F32)
    fl_widen_f32(v, out);
#else
    out[0] = v;
#endif
}

/* RW doubles rounded to a real vector */
FL_CE_INLINE RV FL(ce_narrow)(const double *p)
{
#if defined(FL_REAL_F32)
    return fl_narrow_f64(fl_load_f64(p), fl_load_f64(p + FL_CE_DW));
#else
    return fl_load_f64(p);
#endif
}

/* lanes [0, n) of a real vector (n <= RW) */
FL_CE_INLINE RVI FL(ce_valid)(int64_t n)
{
    RVI io;
    for (int k = 0; k < RW; k++) io[k] = k;
    return io < (RVI){0} + (int)n;
}

/* the same, in the CE_NH double vectors of the widened vector */
FL_CE_INLINE void FL(ce_valid_d)(int64_t n, fl_vi_f64 out[CE_NH])
{
    fl_vi_f64 io;
    for (int k = 0; k < FL_CE_DW; k++) io[k] = k;
    for (int h = 0; h < CE_NH; h++) out[h] = io < (n - (int64_t)h * FL_CE_DW);
}

/* sum of the lanes of an integer vector (exact) */
FL_CE_INLINE int64_t FL(ce_isum)(RVI v)
{
    typedef __typeof__(v[0]) lane_t;
    typedef lane_t q_t __attribute__((vector_size(16)));
    q_t a;
    __builtin_memcpy(&a, &v, 16);
    for (int k = 16; k < FL_VEC_BYTES; k += 16) {
        q_t b;
        __builtin_memcpy(&b, (const char *)&v + k, 16);
        a += b;
    }
    int64_t s = 0;
    for (int k = 0; k < (int)(16 / sizeof(lane_t)); k++) s += a[k];
    return s;
}

/* RW x RW transpose in place: v[i][l] <- v[l][i] */
FL_CE_INLINE void FL(ce_transpose)(RV *v)
{
#if CE_TW == 16
    FL_CE_TSTEP(v, 16, 8) FL_CE_TSTEP(v, 16, 4) FL_CE_TSTEP(v, 16, 2) FL_CE_TSTEP(v, 16, 1)
#elif CE_TW == 8
    FL_CE_TSTEP(v, 8, 4) FL_CE_TSTEP(v, 8, 2) FL_CE_TSTEP(v, 8, 1)
#elif CE_TW == 4
    FL_CE_TSTEP(v, 4, 2) FL_CE_TSTEP(v, 4, 1)
#elif CE_TW == 2
    FL_CE_TSTEP(v, 2, 1)
#else
#error "unsupported lane count"
#endif
}

/* --------------------------------------------------- per-element terms (shared) */

/* e = exp(x - m), the exp-sum term in the input's precision (e where x != m, else 0;
 * NaN stays) and the ties.  full == 0: only lanes of valid are in use (the others get
 * d = 0 and contribute nothing). */
FL_CE_INLINE RV FL(ce_exp_rterm)(RV x, RV m, RVI valid, int full, RV *term, RVI *ties)
{
    const RV zero = FL(fl_set1)(0);
    RV d = x - m;
    if (!full) d = FL(fl_select)(valid, d, zero);
    const RV e = FL(fl_exp_u1)(d);
    RVI tie = d == zero;
    if (!full) tie &= valid;
    *ties -= tie;
    *term = FL(fl_select)(d != zero, e, zero);
    return e;
}

/* as ce_exp_rterm, the term widened to double */
FL_CE_INLINE RV FL(ce_exp_term)(RV x, RV m, RVI valid, int full, fl_v_f64 term[CE_NH],
                                RVI *ties)
{
    RV t;
    const RV e = FL(ce_exp_rterm)(x, m, valid, full, &t, ties);
    FL(ce_widen)(t, term);
    return e;
}

/* smoothing term w_c (x_c - m) in double (xd, md widened), 0 where w_c == 0;
 * wd NULL: no weights */
FL_CE_INLINE void FL(ce_smooth_term)(const fl_v_f64 *xd, const fl_v_f64 *md,
                                     const fl_v_f64 *wd, const fl_vi_f64 *validd,
                                     fl_v_f64 term[CE_NH])
{
    for (int h = 0; h < CE_NH; h++) {
        fl_v_f64 t = xd[h] - md[h];
        if (wd) t = wd[h] * fl_select_f64(wd[h] != 0.0, t, fl_set1_f64(0.0));
        else if (validd) t = fl_select_f64(validd[h], t, fl_set1_f64(0.0));
        term[h] = t;
    }
}

/* probability-target terms in double: k = w (a1 t + e) -> Tw term, k (x - m) -> TD
 * term (0 where k == 0) */
FL_CE_INLINE void FL(ce_prob_terms)(const fl_v_f64 *xd, const fl_v_f64 *md,
                                    const fl_v_f64 *tdd, const fl_v_f64 *wd,
                                    const fl_vi_f64 *validd, double a1, double e,
                                    fl_v_f64 tw[CE_NH], fl_v_f64 td[CE_NH])
{
    for (int h = 0; h < CE_NH; h++) {
        fl_v_f64 k = a1 * tdd[h] + e;
        if (wd) k = wd[h] * k;
        if (validd) k = fl_select_f64(validd[h], k, fl_set1_f64(0.0));
        tw[h] = k;
        td[h] = k * fl_select_f64(k != 0.0, xd[h] - md[h], fl_set1_f64(0.0));
    }
}

/* ================================================================ row engine */

/* One sum over classes, one slot per lane (see the top). */
typedef struct {
    fl_v_f64 p[CE_NH];
#if CE_COMP
    fl_v_f64 s[CE_NH], z[CE_NH];
#endif
} FL(ce_acc);

FL_CE_INLINE void FL(ce_acc_init)(FL(ce_acc) *a)
{
    for (int h = 0; h < CE_NH; h++) {
        a->p[h] = fl_set1_f64(0.0);
#if CE_COMP
        a->s[h] = fl_set1_f64(0.0);
        a->z[h] = fl_set1_f64(0.0);
#endif
    }
}

FL_CE_INLINE void FL(ce_acc_add)(FL(ce_acc) *a, const fl_v_f64 t[CE_NH])
{
    for (int h = 0; h < CE_NH; h++) a->p[h] = a->p[h] + t[h];
}

FL_CE_INLINE void FL(ce_acc_flush)(FL(ce_acc) *a)
{
#if CE_COMP
    for (int h = 0; h < CE_NH; h++) {
        fl_ce_neum(&a->s[h], &a->z[h], a->p[h]);
        a->p[h] = fl_set1_f64(0.0);
    }
#else
    (void)a;
#endif
}

/* after the last flush */
FL_CE_INLINE double FL(ce_acc_result)(const FL(ce_acc) *a)
{
#if CE_COMP
    fl_v_f64 v = fl_ce_neum_result(a->s[0], a->z[0]);
#else
    fl_v_f64 v = a->p[0];
#endif
#if CE_NH == 2
    v = v + a->p[1]; /* first tree level: slot k + slot k + K/2 */
#endif
    return fl_ce_tree_f64(v);
}

/* Sweep 1 on a contiguous row.  NaN: a NaN lane may or may not win the max; either a
 * NaN max or a NaN exp term makes the row NaN later. */
FL_CE_INLINE real FL(ce_row_max)(const real *x, int64_t C)
{
    const RV ninf = FL(fl_set1)(-INFINITY);
    RV m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t c = 0;
    for (; c + 4 * RW <= C; c += 4 * RW) {
        m0 = FL(fl_max)(FL(fl_load)(x + c), m0);
        m1 = FL(fl_max)(FL(fl_load)(x + c + RW), m1);
        m2 = FL(fl_max)(FL(fl_load)(x + c + 2 * RW), m2);
        m3 = FL(fl_max)(FL(fl_load)(x + c + 3 * RW), m3);
    }
    for (; c + RW <= C; c += RW) m0 = FL(fl_max)(FL(fl_load)(x + c), m0);
    if (c < C) m1 = FL(fl_max)(FL(fl_load_partial)(x + c, C - c, -INFINITY), m1);
    return FL(fl_hmax)(FL(fl_max)(FL(fl_max)(m0, m1), FL(fl_max)(m2, m3)));
}

/* Sweep 2 of a contiguous row: exp terms (stored to eo if HAS_EO), and
 * PROB == 0: the smoothing sum if SMOOTH (weights if HAS_W);
 * PROB == 1: the target sums Tw, TD (t row tr, weights if HAS_W).
 * Results into group entry i.
 * pf (and pft with PROB), if not NULL: the next row's logits (targets), prefetched into
 * L2 one cache line per vector while this compute-bound sweep runs, so that the next
 * row's memory-bound sweep 1 overlaps with this one's arithmetic instead of following
 * it (the hardware prefetchers see no misses during this sweep: its row is in cache). */
FL_CE_INLINE void FL(ce_row_sums)(const int PROB, const int HAS_EO, const int SMOOTH,
                                  const int HAS_W, const real *xr, const real *tr,
                                  int64_t C, real m, const real *w, double a1, double e,
                                  real *eo, fl_ce_grp *g, int64_t i,
                                  const real *pf, const real *pft, fl_ce_streamer *st)
{
    const RV mb = FL(fl_set1)(m);
    const double md = (double)m;
    fl_v_f64 mdv[CE_NH];
    for (int h = 0; h < CE_NH; h++) mdv[h] = fl_set1_f64(md);
    const int EXTRA = PROB || SMOOTH;
    FL(ce_acc) S, A, B;
    FL(ce_acc_init)(&S);
    FL(ce_acc_init)(&A);
    FL(ce_acc_init)(&B);
    RVI ties = (RVI){0};
    const RVI all = ~(RVI){0};
    fl_v_f64 t[CE_NH], wd[CE_NH], xd[CE_NH], tdd[CE_NH], ta[CE_NH], tb[CE_NH];
    const int64_t Q = CE_COMP ? FL_CE_CHUNK : C;
    for (int64_t c0 = 0; c0 < C; c0 += Q) {
        const int64_t c1 = C - c0 < Q ? C : c0 + Q;
        int64_t c = c0;
        for (; c + RW <= c1; c += RW) {
            if (pf) { /* one line per 64 bytes: RW * sizeof(real) is 16, 32 or 64 */
                __builtin_prefetch(pf + c, 0, 2);
                if (PROB) __builtin_prefetch(pft + c, 0, 2);
            }
            if (st) fl_ce_streamer_step(st); /* the previous group's gradient */
            const RV x = FL(fl_load)(xr + c);
            const RV ex = FL(ce_exp_term)(x, mb, all, 1, t, &ties);
            if (HAS_EO) FL(fl_store)(eo + c, ex);
            FL(ce_acc_add)(&S, t);
            if (EXTRA) {
                FL(ce_widen)(x, xd);
                if (HAS_W) FL(ce_widen)(FL(fl_load)(w + c), wd);
                if (PROB) {
                    FL(ce_widen)(FL(fl_load)(tr + c), tdd);
                    FL(ce_prob_terms)(xd, mdv, tdd, HAS_W ? wd : NULL, NULL, a1, e, ta, tb);
                    FL(ce_acc_add)(&B, tb);
                } else {
                    FL(ce_smooth_term)(xd, mdv, HAS_W ? wd : NULL, NULL, ta);
                }
                FL(ce_acc_add)(&A, ta);
            }
        }
        if (c < c1) {
            const int64_t n = c1 - c;
            const RV x = FL(fl_load_partial)(xr + c, n, 0);
            const RV ex = FL(ce_exp_term)(x, mb, FL(ce_valid)(n), 0, t, &ties);
            if (HAS_EO) FL(fl_store_partial)(eo + c, ex, n);
            FL(ce_acc_add)(&S, t);
            if (EXTRA) {
                fl_vi_f64 vd[CE_NH];
                FL(ce_valid_d)(n, vd);
                FL(ce_widen)(x, xd);
                if (HAS_W) FL(ce_widen)(FL(fl_load_partial)(w + c, n, 0), wd);
                if (PROB) {
                    FL(ce_widen)(FL(fl_load_partial)(tr + c, n, 0), tdd);
                    FL(ce_prob_terms)(xd, mdv, tdd, HAS_W ? wd : NULL, vd, a1, e, ta, tb);
                    FL(ce_acc_add)(&B, tb);
                } else {
                    FL(ce_smooth_term)(xd, mdv, HAS_W ? wd : NULL, vd, ta);
                }
                FL(ce_acc_add)(&A, ta);
            }
        }
        FL(ce_acc_flush)(&S);
        if (EXTRA) FL(ce_acc_flush)(&A);
        if (PROB) FL(ce_acc_flush)(&B);
    }
    g->m[i] = md;
    g->S[i] = FL(ce_acc_result)(&S);
    g->ties[i] = (double)FL(ce_isum)(ties);
    g->A[i] = EXTRA ? FL(ce_acc_result)(&A) : 0.0;
    g->B[i] = PROB ? FL(ce_acc_result)(&B) : 0.0;
}

/* Sweep 3 of a row, index targets: dst_j = src_j a - E_j (E_j = Er w_j with smoothing
 * and weights, else Er), then dst_y = gy.  src may be dst. */
FL_CE_INLINE void FL(ce_grad_index_row)(const real *src, real *dst, int64_t C, real a,
                                        real Er, const real *w, int64_t y, real gy)
{
    const RV av = FL(fl_set1)(a), ev = FL(fl_set1)(Er);
    int64_t c = 0;
    if (w) {
        for (; c + RW <= C; c += RW)
            FL(fl_store)(dst + c, FL(fl_load)(src + c) * av - ev * FL(fl_load)(w + c));
    } else {
        for (; c + RW <= C; c += RW) FL(fl_store)(dst + c, FL(fl_load)(src + c) * av - ev);
    }
    if (c < C) {
        const int64_t n = C - c;
        RV ec = ev;
        if (w) ec = ev * FL(fl_load_partial)(w + c, n, 0);
        FL(fl_store_partial)(dst + c, FL(fl_load_partial)(src + c, n, 0) * av - ec, n);
    }
    dst[y] = gy;
}

/* Sweep 3 of a row, probability targets: dst_j = src_j a - w_j (a1g t_j + eg). */
FL_CE_INLINE void FL(ce_grad_prob_row)(const real *src, const real *tr, real *dst,
                                       int64_t C, real a, real a1g, real eg, const real *w)
{
    const RV av = FL(fl_set1)(a), a1v = FL(fl_set1)(a1g), egv = FL(fl_set1)(eg);
    int64_t c = 0;
    if (w) {
        for (; c + RW <= C; c += RW)
            FL(fl_store)(dst + c, FL(fl_load)(src + c) * av -
                                      FL(fl_load)(w + c) * (a1v * FL(fl_load)(tr + c) + egv));
    } else {
        for (; c + RW <= C; c += RW)
            FL(fl_store)(dst + c, FL(fl_load)(src + c) * av - (a1v * FL(fl_load)(tr + c) + egv));
    }
    if (c < C) {
        const int64_t n = C - c;
        RV k = a1v * FL(fl_load_partial)(tr + c, n, 0) + egv;
        if (w) k = FL(fl_load_partial)(w + c, n, 0) * k;
        FL(fl_store_partial)(dst + c, FL(fl_load_partial)(src + c, n, 0) * av - k, n);
    }
}

FL_CE_INLINE void FL(ce_zero)(real *dst, int64_t n)
{
    const RV z = FL(fl_set1)(0);
    int64_t c = 0;
    for (; c + RW <= n; c += RW) FL(fl_store)(dst + c, z);
    if (c < n) FL(fl_store_partial)(dst + c, z, n - c);
}

/* Losses of entries [0, n) of a finished group / block into loss_out[0 .. n) and the
 * running sum (in sample order). */
FL_CE_INLINE void FL(ce_emit_losses)(const fl_ce_grp *g, int64_t n, real *loss_out,
                                     fl_ce_sum *acc)
{
    /* g->loss is +0 where not ok, and defined up to a whole real vector past n */
    if (loss_out)
        for (int64_t i = 0; i < n; i += RW)
            FL(fl_store_partial)(loss_out + i, FL(ce_narrow)(g->loss + i), n - i);
    const int64_t pos = acc->pos;
    if (pos % FL_CE_DW == 0) { /* whole double vectors map to lanes of the sum */
        for (int64_t i = 0; i < n; i += FL_CE_DW) {
            const int64_t l = (pos + i) & (FL_CE_SUM_LANES - 1);
            fl_v_f64 v = fl_load_f64(g->loss + i);
#if defined(FL_REAL_F32) /* the loss as returned: rounded to float */
            typedef float half_t __attribute__((vector_size(FL_VEC_BYTES / 2)));
            v = __builtin_convertvector(__builtin_convertvector(v, half_t), fl_v_f64);
#endif
            fl_v_f64 sv = fl_load_f64(acc->s + l), zv = fl_load_f64(acc->z + l);
            fl_ce_neum(&sv, &zv, v); /* +0 adds exactly nothing */
            fl_store_f64(acc->s + l, sv);
            fl_store_f64(acc->z + l, zv);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            const int l = (int)((pos + i) & (FL_CE_SUM_LANES - 1));
            const double v = (double)(real)g->loss[i], s = acc->s[l], t = s + v;
            acc->z[l] += fabs(s) >= fabs(v) ? (s - t) + v : (v - t) + s;
            acc->s[l] = t;
        }
    }
    acc->pos = pos + n;
}

/* Everything the row engine needs to know about a call. */
typedef struct {
    int prob, smooth;
    const real *x, *t, *w, *wgrad; /* wgrad: w_j in the gradient (CE with smoothing) */
    const int64_t *labels;
    int64_t ignore_index;
    double a1, e;                  /* prob: t' = a1 t + e */
    real Er, a1g, eg;              /* gradient constants */
    real *loss_out, *grad_out;
    const fl_ce_par *P;
} FL(ce_call);

/* sweep 2 with the flags as constants */
static void FL(ce_row_sums_any)(const FL(ce_call) *k, const real *xr, const real *tr,
                                int64_t C, real m, real *eo, fl_ce_grp *g, int64_t i,
                                const real *pf, const real *pft, fl_ce_streamer *st)
{
    const int f = (k->prob ? 8 : 0) | (eo ? 4 : 0) | (k->smooth ? 2 : 0) | (k->w ? 1 : 0);
#define FL_CE_RS(P_, E_, S_, W_)                                                          \
    FL(ce_row_sums)(P_, E_, S_, W_, xr, tr, C, m, k->w, k->a1, k->e, eo, g, i, pf, pft, st); \
    return;
    switch (f) {
    case 0: case 1: FL_CE_RS(0, 0, 0, 0)
    case 2: FL_CE_RS(0, 0, 1, 0)
    case 3: FL_CE_RS(0, 0, 1, 1)
    case 4: case 5: FL_CE_RS(0, 1, 0, 0)
    case 6: FL_CE_RS(0, 1, 1, 0)
    case 7: FL_CE_RS(0, 1, 1, 1)
    case 8: case 10: FL_CE_RS(1, 0, 0, 0)
    case 9: case 11: FL_CE_RS(1, 0, 0, 1)
    case 12: case 14: FL_CE_RS(1, 1, 0, 0)
    default: FL_CE_RS(1, 1, 0, 1)
    }
#undef FL_CE_RS
}

/* The row engine over rows [0, outer) (inner == 1). */
FL_CE_NOINLINE double FL(ce_rows)(const FL(ce_call) *k, int64_t outer, int64_t C,
                                  int64_t *err_index)
{
    fl_ce_sum acc;
    fl_ce_sum_init(&acc);
    fl_ce_grp grp;
    real stackbuf[FL_CE_SCRATCH_BYTES / sizeof(real)] __attribute__((aligned(64)));
    const int64_t row = C * (int64_t)sizeof(real);
    int64_t G = FL_CE_SCRATCH_BYTES / row;
    if (G > FL_CE_GMAX) G = FL_CE_GMAX;
    if (G < 1) G = 1;
    real *scr = NULL; /* the e_c of a group; NULL: grad_out is the scratch */
    real *scr2 = NULL; /* streaming: the other half of a double buffer (see below) */
    void *heap = NULL;
    int nt = 0;
    real *const grad_out = k->grad_out;
    if (grad_out && outer > 0) { /* no rows: nothing to size by C */
        nt = FL_CE_HAVE_NT && outer * row >= FL_CE_NT_MIN_BYTES &&
             ((uintptr_t)grad_out % sizeof(real)) == 0;
        if (nt) {
            /* Streaming (large calls only, so the allocation does not matter): group g's
             * gradient is computed in one buffer and streamed out during group g + 1's
             * sweep 2, which computes into the other buffer. */
            heap = malloc((size_t)(2 * G * row) + 64);
            if (heap) {
                scr = (real *)(((uintptr_t)heap + 63) & ~(uintptr_t)63);
                scr2 = scr + G * C;
            } else {
                nt = 0;
            }
        }
        if (!nt) {
            if (G * row <= FL_CE_SCRATCH_BYTES) {
                scr = stackbuf;
            } else {
                heap = malloc((size_t)(G * row) + 64);
                if (heap) scr = (real *)(((uintptr_t)heap + 63) & ~(uintptr_t)63);
            }
        }
    }
    fl_ce_streamer st; /* the previous group's gradient, being streamed out */
    int streaming = 0;
    const real *x = k->x, *w = k->w;
    for (int64_t o0 = 0; o0 < outer; o0 += G) {
        const int64_t nr = outer - o0 < G ? outer - o0 : G;
        if (!k->prob) { /* labels first: nothing of the group is read before they are checked */
            const int64_t *lab = k->labels + o0;
            for (int64_t i = 0; i < nr; i++)
                if (lab[i] != k->ignore_index && (lab[i] < 0 || lab[i] >= C)) {
                    *err_index = o0 + i;
                    goto done;
                }
        }
        /* sweeps 1-2 */
        for (int64_t i = 0; i < nr; i++) {
            const int64_t y = k->prob ? 0 : k->labels[o0 + i];
            if (!k->prob && y == k->ignore_index) {
                fl_ce_grp_blank(&grp, i);
                continue;
            }
            const real *xr = x + (o0 + i) * C;
            real *eo = grad_out ? (scr ? scr + i * C : grad_out + (o0 + i) * C) : NULL;
            const real m = FL(ce_row_max)(xr, C);
            const int next = o0 + i + 1 < outer; /* prefetched during this row's sweep 2 */
            FL(ce_row_sums_any)(k, xr, k->prob ? k->t + (o0 + i) * C : NULL, C, m, eo, &grp, i,
                                next ? xr + C : NULL,
                                next && k->prob ? k->t + (o0 + i + 1) * C : NULL,
                                streaming ? &st : NULL);
            grp.dy[i] = k->prob ? 0.0 : (double)xr[y] - (double)m;
            /* e_y, from the stored e_c: only the gradient needs it */
            grp.ey[i] = k->P->ey && eo ? (double)eo[y] : 1.0;
            grp.wy[i] = !k->prob && w ? (double)w[y] : 1.0;
            grp.ok[i] = -1;
        }
        if (streaming) { /* what this group's sweeps did not cover (ignored rows, tails) */
            fl_ce_streamer_rest(&st);
            streaming = 0;
        }
        const int64_t nrv = ((nr + RW - 1) / RW) * RW; /* whole real vectors */
        for (int64_t i = nr; i < nrv; i++) fl_ce_grp_blank(&grp, i);
        fl_ce_finish(&grp, nrv, k->P);
        FL(ce_emit_losses)(&grp, nr, k->loss_out ? k->loss_out + o0 : NULL, &acc);
        /* sweep 3 */
        if (grad_out) {
            for (int64_t i = 0; i < nr; i++) {
                real *gr = grad_out + (o0 + i) * C;
                const real *src = scr ? scr + i * C : gr;
                real *dst = nt ? scr + i * C : gr;
                if (!grp.ok[i])
                    FL(ce_zero)(dst, C);
                else if (k->prob)
                    FL(ce_grad_prob_row)(src, k->t + (o0 + i) * C, dst, C, (real)grp.coef[i],
                                         k->a1g, k->eg, w);
                else
                    FL(ce_grad_index_row)(src, dst, C, (real)grp.coef[i], k->Er, k->wgrad,
                                          k->labels[o0 + i], (real)grp.gy[i]);
            }
            if (nt) { /* streamed during the next group's sweep 2; swap the buffers */
                fl_ce_streamer_start(&st, grad_out + o0 * C, scr, nr * row);
                streaming = 1;
                real *tmp = scr;
                scr = scr2;
                scr2 = tmp;
            }
        }
    }
done:
    if (streaming) fl_ce_streamer_rest(&st);
    if (nt) fl_ce_stream_fence();
    free(heap);
    return fl_ce_sum_result(&acc);
}

/* ============================================================== block engine */

/* One sum over classes for a block of samples: slot k of sample i at [k * BMAX + i].
 * Only slots [0, min(C, K)) are ever touched; the others stay +0 and drop out of the
 * tree exactly (no slot value is ever -0). */
typedef struct {
    double p[RW * FL_CE_BMAX];
#if CE_COMP
    double s[RW * FL_CE_BMAX], z[RW * FL_CE_BMAX];
#endif
} FL(ce_pacc);

/* the compensated sums to 0 (the partial sums start with their first class) */
static void FL(ce_pacc_init)(FL(ce_pacc) *a, int64_t ns, int64_t nv)
{
#if CE_COMP
    for (int64_t k = 0; k < ns * FL_CE_BMAX; k += FL_CE_BMAX)
        for (int64_t i = 0; i < nv; i += FL_CE_DW) {
            fl_store_f64(a->s + k + i, fl_set1_f64(0.0));
            fl_store_f64(a->z + k + i, fl_set1_f64(0.0));
        }
#else
    (void)a;
    (void)ns;
    (void)nv;
#endif
}

/* adds the widened terms t of samples [i, i + RW) to slot k (first: the slot's first
 * class, the partial sum is +0 + t) */
FL_CE_INLINE void FL(ce_pacc_add)(FL(ce_pacc) *a, int first, int64_t k, int64_t i,
                                  const fl_v_f64 t[CE_NH])
{
    double *p = a->p + k * FL_CE_BMAX + i;
    for (int h = 0; h < CE_NH; h++)
        fl_store_f64(p + h * FL_CE_DW,
                     (first ? fl_set1_f64(0.0) : fl_load_f64(p + h * FL_CE_DW)) + t[h]);
}

static void FL(ce_pacc_flush)(FL(ce_pacc) *a, int64_t ns, int64_t nv)
{
#if CE_COMP
    for (int64_t k = 0; k < ns * FL_CE_BMAX; k += FL_CE_BMAX)
        for (int64_t i = 0; i < nv; i += FL_CE_DW) {
            fl_v_f64 s = fl_load_f64(a->s + k + i), z = fl_load_f64(a->z + k + i);
            fl_ce_neum(&s, &z, fl_load_f64(a->p + k + i));
            fl_store_f64(a->s + k + i, s);
            fl_store_f64(a->z + k + i, z);
            fl_store_f64(a->p + k + i, fl_set1_f64(0.0));
        }
#else
    (void)a;
    (void)ns;
    (void)nv;
#endif
}

/* after the last flush: the sums of samples [0, nv) into out[] */
static void FL(ce_pacc_result)(FL(ce_pacc) *a, int64_t ns, int64_t nv, double *out)
{
    double *T = a->p;
#if CE_COMP
    for (int64_t k = 0; k < ns * FL_CE_BMAX; k += FL_CE_BMAX)
        for (int64_t i = 0; i < nv; i += FL_CE_DW)
            fl_store_f64(T + k + i, fl_ce_neum_result(fl_load_f64(a->s + k + i),
                                                      fl_load_f64(a->z + k + i)));
#endif
    for (int64_t w = RW / 2; w >= 1; w /= 2)
        for (int64_t k = 0; k < w && k + w < ns; k++)
            for (int64_t i = 0; i < nv; i += FL_CE_DW)
                fl_store_f64(T + k * FL_CE_BMAX + i,
                             fl_load_f64(T + k * FL_CE_BMAX + i) +
                                 fl_load_f64(T + (k + w) * FL_CE_BMAX + i));
    /* nv <= FL_CE_BMAX, out[]'s size: the second bound says so to gcc 12, which otherwise
     * warns of stores past out[] (-Wstringop-overflow) */
    for (int64_t i = 0; i < nv && i <= FL_CE_BMAX - FL_CE_DW; i += FL_CE_DW)
        fl_store_f64(out + i, fl_load_f64(T + i));
}

/* label / mask lanes of a real vector */
typedef __typeof__(((RVI){0})[0]) FL(ce_lane);

/* Workspace of the block engine. */
typedef struct {
    real mx[FL_CE_BMAX] __attribute__((aligned(64)));
    real cf[FL_CE_BMAX] __attribute__((aligned(64)));
    RV xy[FL_CE_BMAX / RW]; /* x_y of each sample */
    RV ey[FL_CE_BMAX / RW]; /* e_y (float32) */
    real term[FL_CE_TRANSPOSE_MAX * RW] __attribute__((aligned(64))); /* ce_rows_sweep2 */
    RVI ties[FL_CE_BMAX / RW];
    int64_t yy[FL_CE_BMAX];             /* label, -1: ignored */
    FL(ce_lane) yl[FL_CE_BMAX] __attribute__((aligned(64))); /* the same as lanes, -1 past nb */
    FL(ce_pacc) S, A, B;
    fl_ce_grp grp;
} FL(ce_bws);

/* Sweep 2 of the small-rows block engine (PAD and MXG) for the RW samples at i, sample
 * by sample vector instead of class by class: the slot sums of the vector stay in
 * registers instead of ce_pacc's arrays.  Two passes over the vector's classes:
 *  1. class by class: e_c (to gb), the ties, x_y and e_y, and the exp-sum term (e_c where
 *     x_c != m, else 0) to ws->term;
 *  2. slot by slot: slot k adds its classes c = k, k + RW, ... from +0 as ce_pacc does
 *     (the terms from ws->term, the smoothing / target terms from x and t), and the
 *     halving tree (slot k += slot k + w, w = RW/2, ..., 1) is the pairwise sum of the
 *     slots taken in bit-reversed order, so the slots are visited in that order and
 *     combined on a stack: the same additions, the same bits.
 * (One pass in slot order costs ~60% more instructions: each slot's loop sets up the exp
 * constants again, and the stack and exp compete for the 16 AVX2 registers.)  Slots past
 * C are +0 (no slot value is ever -0, so adding them is exact).  C <= FL_CE_TRANSPOSE_MAX
 * <= FL_CE_CHUNK: float64's compensated sums have a single chunk, whose Neumaier step
 * from (0, 0) returns the partial sum exactly, so plain sums give the same bits.
 * Sums to g->S / A / B [i ...]; ties, x_y and e_y to ws. */
#define CE_LOGK (RW == 16 ? 4 : RW == 8 ? 3 : RW == 4 ? 2 : 1)
FL_CE_INLINE void FL(ce_rows_sweep2)(const int PROB, const int SMOOTH, const int HAS_W,
                                     const int LAB, const FL(ce_call) *k, const real *xb,
                                     const real *tb, real *gb, int64_t C, int64_t i,
                                     RVI okm, RVI ylv, FL(ce_bws) *ws, fl_ce_grp *g)
{
    const RV zero = FL(fl_set1)(0);
    const int EXTRA = PROB || SMOOTH;
    const real *w = k->w;
    const RV m = FL(fl_load)(ws->mx + i);
    /* pass 1 */
    RVI ties = (RVI){0};
    RV xy = zero, ey = FL(fl_set1)(1);
    RVI cl = (RVI){0};
    const RVI all = ~(RVI){0};
    for (int64_t c = 0; c < C; c++) {
        const RV xv = FL(fl_select)(okm, FL(fl_load)(xb + c * FL_CE_BMAX + i), zero);
        RV t;
        const RV ex = FL(ce_exp_rterm)(xv, m, all, 1, &t, &ties);
        FL(fl_store)(ws->term + c * RW, t);
        if (gb) FL(fl_store)(gb + c * FL_CE_BMAX + i, ex);
        if (LAB) {
            const RVI isy = ylv == cl;
            xy = FL(fl_select)(isy, xv, xy);
            if (CE_NH == 2) ey = FL(fl_select)(isy, ex, ey);
            cl = cl + 1;
        }
    }
    ws->ties[i / RW] = ties;
    ws->xy[i / RW] = xy;
    ws->ey[i / RW] = ey;
    /* pass 2 */
    fl_v_f64 md[CE_NH];
    if (EXTRA) FL(ce_widen)(m, md);
    fl_v_f64 stS[CE_LOGK + 1][CE_NH], stA[CE_LOGK + 1][CE_NH], stB[CE_LOGK + 1][CE_NH];
#pragma GCC unroll 16
    for (int j = 0; j < RW; j++) {
        int ks = 0; /* slot: j bit-reversed */
        for (int b = 0; b < CE_LOGK; b++) ks |= ((j >> b) & 1) << (CE_LOGK - 1 - b);
        fl_v_f64 pS[CE_NH], pA[CE_NH], pB[CE_NH];
        for (int h = 0; h < CE_NH; h++) pS[h] = pA[h] = pB[h] = fl_set1_f64(0.0);
        for (int64_t c = ks; c < C; c += RW) {
            fl_v_f64 t[CE_NH], xd[CE_NH], wd[CE_NH], tdd[CE_NH], ta[CE_NH], tbb[CE_NH];
            FL(ce_widen)(FL(fl_load)(ws->term + c * RW), t);
            for (int h = 0; h < CE_NH; h++) pS[h] = pS[h] + t[h];
            if (!EXTRA) continue;
            const RV xv = FL(fl_select)(okm, FL(fl_load)(xb + c * FL_CE_BMAX + i), zero);
            const double wc = HAS_W ? (double)w[c] : 1.0;
            for (int h = 0; h < CE_NH; h++) wd[h] = fl_set1_f64(wc);
            if (PROB) {
                FL(ce_widen)(xv, xd);
                FL(ce_widen)(FL(fl_load)(tb + c * FL_CE_BMAX + i), tdd);
                FL(ce_prob_terms)(xd, md, tdd, HAS_W ? wd : NULL, NULL, k->a1, k->e, ta, tbb);
                for (int h = 0; h < CE_NH; h++) {
                    pA[h] = pA[h] + ta[h];
                    pB[h] = pB[h] + tbb[h];
                }
            } else if (wc != 0 || c < RW) { /* smoothing; w_c == 0 adds nothing (+0) */
                FL(ce_widen)(xv, xd);
                FL(ce_smooth_term)(xd, md, HAS_W ? wd : NULL, NULL, ta);
                for (int h = 0; h < CE_NH; h++) pA[h] = pA[h] + ta[h];
            }
        }
        int l = 0;
        for (; (j >> l) & 1; l++)
            for (int h = 0; h < CE_NH; h++) {
                pS[h] = stS[l][h] + pS[h];
                if (EXTRA) pA[h] = stA[l][h] + pA[h];
                if (PROB) pB[h] = stB[l][h] + pB[h];
            }
        for (int h = 0; h < CE_NH; h++) {
            stS[l][h] = pS[h];
            stA[l][h] = pA[h];
            stB[l][h] = pB[h];
        }
    }
    for (int h = 0; h < CE_NH; h++) {
        fl_store_f64(g->S + i + h * FL_CE_DW, stS[CE_LOGK][h]);
        if (EXTRA) fl_store_f64(g->A + i + h * FL_CE_DW, stA[CE_LOGK][h]);
        if (PROB) fl_store_f64(g->B + i + h * FL_CE_DW, stB[CE_LOGK][h]);
    }
}
#undef CE_LOGK

/* The block engine on samples [0, nb) (nb <= FL_CE_BMAX): class c of sample i at
 * xb[c * xs + i] (t likewise), its e_c then gradient at gb[c * xs + i] (gb may be NULL).
 * Index targets: ws->yy / ws->yl hold the (checked) labels, -1 for ignored samples.
 * PAD: the runs may be read and written as whole vectors past nb (internal buffers).
 * MXG: ws->mx already holds the maxima (sweep 1 done by the caller, same rules).
 * WIDE: labels do not fit the lanes (C > 2^31 with float32 lanes): scalar label work.
 * Losses to loss_out[0 .. nb) (may be NULL) and the running sum. */
FL_CE_INLINE void FL(ce_block)(const int PROB, const int SMOOTH, const int HAS_W,
                               const int PAD, const int MXG, const int WIDE, const FL(ce_call) *k,
                               const real *xb, const real *tb, int64_t xs, real *gb,
                               int64_t nb, int64_t C, real *loss_out, fl_ce_sum *acc,
                               FL(ce_bws) *ws)
{
    const int64_t nv = ((nb + RW - 1) / RW) * RW; /* whole vectors */
    const int64_t ns = C < RW ? C : RW;           /* slots in use */
    const real *w = k->w;
    const RV zero = FL(fl_set1)(0);
    const int EXTRA = PROB || SMOOTH;
    const int LAB = !PROB && !WIDE; /* label work in lanes */
#define FL_CE_LD(p, i) (PAD ? FL(fl_load)((p) + (i)) : FL(fl_load_partial)((p) + (i), nb - (i), 0))
#define FL_CE_ST(p, i, v)                                                                \
    do {                                                                                 \
        if (PAD) FL(fl_store)((p) + (i), v);                                             \
        else FL(fl_store_partial)((p) + (i), v, nb - (i));                               \
    } while (0)
    RVI okm[FL_CE_BMAX / RW], ylv[FL_CE_BMAX / RW];
    if (PROB)
        for (int64_t i = 0; i < nv; i++) ws->yl[i] = i < nb ? 0 : -1;
    else
        for (int64_t i = nb; i < nv; i++) ws->yl[i] = -1;
    for (int64_t v = 0; v < nv / RW; v++) {
        RVI yv; /* one vector load (copied into ylv[v] piecewise, a later whole-vector
                 * load of it would wait for the pieces: no store forwarding) */
        __builtin_memcpy(&yv, ws->yl + v * RW, sizeof yv);
        ylv[v] = yv;
        okm[v] = ylv[v] >= 0;
    }
    /* sweep 1: max; ignored samples and lanes past nb see zeros */
    for (int64_t i = 0; !MXG && i < nv; i += RW)
        FL(fl_store)(ws->mx + i, FL(fl_select)(okm[i / RW], FL_CE_LD(xb, i), zero));
    for (int64_t c = 1; !MXG && c < C; c++) {
        const real *row = xb + c * xs;
        for (int64_t i = 0; i < nv; i += RW)
            FL(fl_store)(ws->mx + i, FL(fl_max)(FL(fl_select)(okm[i / RW], FL_CE_LD(row, i), zero),
                                                FL(fl_load)(ws->mx + i)));
    }
    fl_ce_grp *g = &ws->grp;
    if (PAD && MXG) { /* small rows: sample-major */
        for (int64_t i = 0; i < nv; i += RW)
            FL(ce_rows_sweep2)(PROB, SMOOTH, HAS_W, LAB, k, xb, tb, gb, C, i, okm[i / RW],
                               ylv[i / RW], ws, g);
        goto per_sample;
    }
    /* sweep 2: exp terms (stored into gb), target / smoothing sums, x_y */
    for (int64_t v = 0; v < nv / RW; v++) {
        ws->ties[v] = (RVI){0};
        ws->xy[v] = zero;
        ws->ey[v] = FL(fl_set1)(1);
    }
    if (CE_COMP) {
        FL(ce_pacc_init)(&ws->S, ns, nv);
        if (EXTRA) FL(ce_pacc_init)(&ws->A, ns, nv);
        if (PROB) FL(ce_pacc_init)(&ws->B, ns, nv);
    }
    const RVI all = ~(RVI){0};
    for (int64_t c = 0; c < C; c++) {
        const real *row = xb + c * xs;
        real *gc = gb ? gb + c * xs : NULL;
        const int64_t kslot = c % RW;
        const int first = c < RW; /* the slot's first class: 0 + t, nothing to load */
        const double wc = HAS_W ? (double)w[c] : 1.0;
        const FL(ce_lane) cl = (FL(ce_lane))c;
        fl_v_f64 t[CE_NH], wd[CE_NH], xd[CE_NH], md[CE_NH], tdd[CE_NH], ta[CE_NH], tbb[CE_NH];
        for (int h = 0; h < CE_NH; h++) wd[h] = fl_set1_f64(wc);
        for (int64_t i = 0; i < nv; i += RW) {
            const RV xv = FL(fl_select)(okm[i / RW], FL_CE_LD(row, i), zero);
            const RV m = FL(fl_load)(ws->mx + i);
            const RV ex = FL(ce_exp_term)(xv, m, all, 1, t, &ws->ties[i / RW]);
            if (gc) FL_CE_ST(gc, i, ex);
            FL(ce_pacc_add)(&ws->S, first, kslot, i, t);
            if (LAB) {
                const RVI isy = ylv[i / RW] == cl;
                ws->xy[i / RW] = FL(fl_select)(isy, xv, ws->xy[i / RW]);
                if (CE_NH == 2) ws->ey[i / RW] = FL(fl_select)(isy, ex, ws->ey[i / RW]);
            }
            if (PROB) {
                FL(ce_widen)(xv, xd);
                FL(ce_widen)(m, md);
                FL(ce_widen)(FL_CE_LD(tb + c * xs, i), tdd);
                FL(ce_prob_terms)(xd, md, tdd, HAS_W ? wd : NULL, NULL, k->a1, k->e, ta, tbb);
                FL(ce_pacc_add)(&ws->A, first, kslot, i, ta);
                FL(ce_pacc_add)(&ws->B, first, kslot, i, tbb);
            } else if (SMOOTH && (wc != 0 || first)) { /* w_c == 0 adds nothing (+0) */
                FL(ce_widen)(xv, xd);
                FL(ce_widen)(m, md);
                FL(ce_smooth_term)(xd, md, HAS_W ? wd : NULL, NULL, ta);
                FL(ce_pacc_add)(&ws->A, first, kslot, i, ta);
            }
        }
        if (CE_COMP && ((c + 1) % FL_CE_CHUNK == 0 || c == C - 1)) {
            FL(ce_pacc_flush)(&ws->S, ns, nv);
            if (EXTRA) FL(ce_pacc_flush)(&ws->A, ns, nv);
            if (PROB) FL(ce_pacc_flush)(&ws->B, ns, nv);
        }
    }
    FL(ce_pacc_result)(&ws->S, ns, nv, g->S);
    if (EXTRA) FL(ce_pacc_result)(&ws->A, ns, nv, g->A);
    if (PROB) FL(ce_pacc_result)(&ws->B, ns, nv, g->B);
per_sample: /* per-sample inputs */
    for (int64_t i = 0; i < nv; i += RW) {
        fl_v_f64 d[CE_NH], d2[CE_NH];
        const RV m = FL(fl_load)(ws->mx + i);
        FL(ce_widen)(m, d);
        for (int h = 0; h < CE_NH; h++) fl_store_f64(g->m + i + h * FL_CE_DW, d[h]);
        if (LAB) {
            FL(ce_widen)(ws->xy[i / RW], d2);
            for (int h = 0; h < CE_NH; h++) fl_store_f64(g->dy + i + h * FL_CE_DW, d2[h] - d[h]);
            FL(ce_widen)(ws->ey[i / RW], d2);
            for (int h = 0; h < CE_NH; h++) fl_store_f64(g->ey + i + h * FL_CE_DW, d2[h]);
        }
        FL(ce_widen)(__builtin_convertvector(ws->ties[i / RW], RV), d);
        for (int h = 0; h < CE_NH; h++) fl_store_f64(g->ties + i + h * FL_CE_DW, d[h]);
        for (int h = 0; h < CE_NH; h++) {
            const fl_v_f64 z = fl_set1_f64(0.0), o = fl_set1_f64(1.0);
            if (!EXTRA) fl_store_f64(g->A + i + h * FL_CE_DW, z);
            if (!PROB) fl_store_f64(g->B + i + h * FL_CE_DW, z);
            if (PROB || !HAS_W) fl_store_f64(g->wy + i + h * FL_CE_DW, o);
            if (PROB) fl_store_f64(g->dy + i + h * FL_CE_DW, z);
            if (PROB) fl_store_f64(g->ey + i + h * FL_CE_DW, o);
        }
    }
    for (int64_t i = 0; i < nv; i++) g->ok[i] = ws->yl[i] >= 0 ? -1 : 0;
    if (!PROB && (HAS_W || WIDE))
        for (int64_t i = 0; i < nv; i++) {
            const int64_t y = i < nb ? ws->yy[i] : -1;
            if (HAS_W) g->wy[i] = y >= 0 ? (double)w[y] : 1.0;
            if (WIDE) g->dy[i] = y >= 0 ? (double)xb[y * xs + i] - (double)ws->mx[i] : 0.0;
            if (WIDE) g->ey[i] = y >= 0 && gb ? (double)gb[y * xs + i] : 1.0;
        }
    fl_ce_finish(g, nv, k->P);
    FL(ce_emit_losses)(g, nb, loss_out, acc);
    /* sweep 3: gradient, in place over the stored exp terms */
    if (!gb) return;
    for (int64_t i = 0; i < nv; i += RW) FL(fl_store)(ws->cf + i, FL(ce_narrow)(g->coef + i));
    if (PROB) {
        const RV a1v = FL(fl_set1)(k->a1g), egv = FL(fl_set1)(k->eg);
        for (int64_t c = 0; c < C; c++) {
            const real *trow = tb + c * xs;
            real *gc = gb + c * xs;
            const RV wc = FL(fl_set1)(HAS_W ? w[c] : RC(1.0));
            for (int64_t i = 0; i < nv; i += RW) {
                RV kk = a1v * FL_CE_LD(trow, i) + egv;
                if (HAS_W) kk = wc * kk;
                FL_CE_ST(gc, i, FL_CE_LD(gc, i) * FL(fl_load)(ws->cf + i) - kk);
            }
        }
        return;
    }
    RV gyv[FL_CE_BMAX / RW];
    for (int64_t i = 0; i < nv; i += RW) gyv[i / RW] = FL(ce_narrow)(g->gy + i);
    for (int64_t c = 0; c < C; c++) {
        real *gc = gb + c * xs;
        const RV Ec = FL(fl_set1)(k->wgrad ? k->Er * k->wgrad[c] : k->Er);
        const FL(ce_lane) cl = (FL(ce_lane))c;
        for (int64_t i = 0; i < nv; i += RW) {
            RV v = FL_CE_LD(gc, i) * FL(fl_load)(ws->cf + i) - Ec;
            if (LAB) v = FL(fl_select)(ylv[i / RW] == cl, gyv[i / RW], v);
            FL_CE_ST(gc, i, FL(fl_select)(okm[i / RW], v, zero));
        }
    }
    if (WIDE)
        for (int64_t i = 0; i < nb; i++)
            if (ws->yy[i] >= 0) gb[ws->yy[i] * xs + i] = (real)g->gy[i];
#undef FL_CE_LD
#undef FL_CE_ST
}

/* the block engine with the flags as constants */
/* rows: the transposed small-rows buffers (padded, maxima given) */
static void FL(ce_block_any)(const FL(ce_call) *k, int rows, const real *xb, const real *tb,
                             int64_t xs, real *gb, int64_t nb, int64_t C, real *loss_out,
                             fl_ce_sum *acc, FL(ce_bws) *ws)
{
#if defined(FL_REAL_F32)
    const int wide = !k->prob && C > INT32_MAX;
#else
    const int wide = 0;
#endif
    const int f = (k->prob ? 4 : 0) | (k->smooth ? 2 : 0) | (k->w ? 1 : 0);
    if (wide) { /* never in practice (a sample of 2^31 classes): one general instance */
        FL(ce_block)(0, k->smooth, k->w != NULL, 0, 0, 1, k, xb, tb, xs, gb, nb, C, loss_out,
                     acc, ws);
        return;
    }
#define FL_CE_BL(P_, S_, W_)                                                              \
    if (rows) FL(ce_block)(P_, S_, W_, 1, 1, 0, k, xb, tb, xs, gb, nb, C, loss_out, acc, ws); \
    else FL(ce_block)(P_, S_, W_, 0, 0, 0, k, xb, tb, xs, gb, nb, C, loss_out, acc, ws);     \
    return;
    switch (f) {
    case 0: FL_CE_BL(0, 0, 0)
    case 1: FL_CE_BL(0, 0, 1)
    case 2: FL_CE_BL(0, 1, 0)
    case 3: FL_CE_BL(0, 1, 1)
    case 4: case 6: FL_CE_BL(1, 0, 0)
    default: FL_CE_BL(1, 0, 1)
    }
#undef FL_CE_BL
}

/* Checks the labels of samples [0, n) (flat index base + i): yy = label or -1 for an
 * ignored sample, yl the same as lanes.  Returns the first bad flat index or -1. */
FL_CE_INLINE int64_t FL(ce_check_labels)(const int64_t *lab, int64_t n, int64_t C,
                                         int64_t ign, int64_t base, int64_t *yy,
                                         FL(ce_lane) *yl)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) { /* no early exit: vectorisable */
        const int64_t y = lab[i], keep = y != ign;
        bad |= keep & ((uint64_t)y >= (uint64_t)C);
        yy[i] = keep ? y : -1;
        /* as a lane: exact unless C > 2^31 with float32 lanes, where only its sign is
         * used (see ce_block_any) */
        yl[i] = (FL(ce_lane))(!keep ? -1 : (sizeof(FL(ce_lane)) == 4 && y > INT32_MAX) ? INT32_MAX : y);
    }
    if (bad)
        for (int64_t i = 0; i < n; i++)
            if (lab[i] != ign && (lab[i] < 0 || lab[i] >= C)) return base + i;
    return -1;
}

/* inner > 1 */
FL_CE_NOINLINE double FL(ce_blocks)(const FL(ce_call) *k, int64_t outer, int64_t C,
                                    int64_t inner, int64_t *err_index)
{
    fl_ce_sum acc;
    fl_ce_sum_init(&acc);
    FL(ce_bws) ws;
    const int64_t B = fl_ce_block_len(
        C, inner, ((k->grad_out ? 2 : 1) + (k->prob ? 1 : 0)) * (int64_t)sizeof(real));
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t s0 = 0; s0 < inner; s0 += B) {
            const int64_t nb = inner - s0 < B ? inner - s0 : B;
            const int64_t flat0 = o * inner + s0, off = o * C * inner + s0;
            if (!k->prob) {
                const int64_t bad = FL(ce_check_labels)(k->labels + flat0, nb, C,
                                                        k->ignore_index, flat0, ws.yy, ws.yl);
                if (bad >= 0) {
                    *err_index = bad;
                    return fl_ce_sum_result(&acc);
                }
            }
            FL(ce_block_any)(k, 0, k->x + off, k->prob ? k->t + off : NULL, inner,
                             k->grad_out ? k->grad_out + off : NULL, nb, C,
                             k->loss_out ? k->loss_out + flat0 : NULL, &acc, &ws);
        }
    }
    return fl_ce_sum_result(&acc);
}

/* rows [0, rw) x classes [cb, cb + cw) of a row-major (., C) array -> columns of the
 * (C, BMAX) buffer at [(cb + j) * BMAX + r0] (lanes past rw are 0); *m = lane-wise max
 * with the classes */
FL_CE_INLINE void FL(ce_tin)(const real *src, int64_t C, int64_t rw, int64_t cb,
                             int64_t cw, real *buf, int64_t r0, RV *m)
{
    RV v[RW];
    for (int l = 0; l < RW; l++)
        v[l] = l < rw ? FL(fl_load_partial)(src + l * C + cb, cw, 0) : FL(fl_set1)(0);
    FL(ce_transpose)(v);
    for (int j = 0; j < cw; j++) {
        FL(fl_store)(buf + (cb + j) * FL_CE_BMAX + r0, v[j]);
        if (m) *m = FL(fl_max)(v[j], *m);
    }
}

/* the inverse: buffer columns -> rows [0, rw) x classes [cb, cb + cw) of dst */
FL_CE_INLINE void FL(ce_tout)(const real *buf, int64_t r0, int64_t cb, int64_t cw,
                              real *dst, int64_t C, int64_t rw)
{
    RV v[RW];
    for (int j = 0; j < RW; j++)
        v[j] = j < cw ? FL(fl_load)(buf + (cb + j) * FL_CE_BMAX + r0) : FL(fl_set1)(0);
    FL(ce_transpose)(v);
    for (int l = 0; l < rw; l++) FL(fl_store_partial)(dst + l * C + cb, v[l], cw);
}

/* inner == 1, C <= FL_CE_TRANSPOSE_MAX: blocks of BMAX rows transposed (in registers,
 * RW x RW at a time) into the block engine's layout, the maxima taken on the way, and the
 * gradient transposed back. */
FL_CE_NOINLINE double FL(ce_small_rows)(const FL(ce_call) *k, int64_t outer, int64_t C,
                                        int64_t *err_index)
{
    fl_ce_sum acc;
    fl_ce_sum_init(&acc);
    FL(ce_bws) ws;
    real xbuf[FL_CE_TRANSPOSE_MAX * FL_CE_BMAX] __attribute__((aligned(64)));
    real gbuf[FL_CE_TRANSPOSE_MAX * FL_CE_BMAX] __attribute__((aligned(64)));
    real tbuf[FL_CE_TRANSPOSE_MAX * FL_CE_BMAX] __attribute__((aligned(64)));
    real obuf[FL_CE_TRANSPOSE_MAX * FL_CE_BMAX] __attribute__((aligned(64)));
    real *const grad_out = k->grad_out;
    const int nt = FL_CE_HAVE_NT && grad_out &&
                   outer * C * (int64_t)sizeof(real) >= FL_CE_NT_MIN_BYTES &&
                   ((uintptr_t)grad_out % sizeof(real)) == 0;
    for (int64_t o0 = 0; o0 < outer; o0 += FL_CE_BMAX) {
        const int64_t nb = outer - o0 < FL_CE_BMAX ? outer - o0 : FL_CE_BMAX;
        if (!k->prob) { /* the block's labels before any of its logits */
            const int64_t bad = FL(ce_check_labels)(k->labels + o0, nb, C, k->ignore_index,
                                                    o0, ws.yy, ws.yl);
            if (bad >= 0) {
                *err_index = bad;
                break;
            }
        }
        for (int64_t r0 = 0; r0 < nb; r0 += RW) {
            const int64_t rw = nb - r0 < RW ? nb - r0 : RW;
            const real *xs = k->x + (o0 + r0) * C, *ts = k->prob ? k->t + (o0 + r0) * C : NULL;
            RV m = FL(fl_set1)(-INFINITY);
            for (int64_t cb = 0; cb < C; cb += RW) {
                const int64_t cw = C - cb < RW ? C - cb : RW;
                if (rw == RW && cw == RW) {
                    FL(ce_tin)(xs, C, RW, cb, RW, xbuf, r0, &m);
                    if (ts) FL(ce_tin)(ts, C, RW, cb, RW, tbuf, r0, NULL);
                } else if (rw == RW) {
                    FL(ce_tin)(xs, C, RW, cb, cw, xbuf, r0, &m);
                    if (ts) FL(ce_tin)(ts, C, RW, cb, cw, tbuf, r0, NULL);
                } else {
                    FL(ce_tin)(xs, C, rw, cb, cw, xbuf, r0, &m);
                    if (ts) FL(ce_tin)(ts, C, rw, cb, cw, tbuf, r0, NULL);
                }
            }
            /* the block engine's sweep 1: ignored samples and lanes past nb get 0 */
            RVI okm;
            if (k->prob) {
                okm = FL(ce_valid)(rw);
            } else {
                RVI ylv;
                __builtin_memcpy(&ylv, ws.yl + r0, sizeof ylv);
                okm = ylv >= 0;
                if (rw < RW) okm &= FL(ce_valid)(rw);
            }
            FL(fl_store)(ws.mx + r0, FL(fl_select)(okm, m, FL(fl_set1)(0)));
        }
        FL(ce_block_any)(k, 1, xbuf, tbuf, FL_CE_BMAX, grad_out ? gbuf : NULL, nb, C,
                         k->loss_out ? k->loss_out + o0 : NULL, &acc, &ws);
        if (!grad_out) continue;
        real *dst = nt ? obuf : grad_out + o0 * C;
        for (int64_t r0 = 0; r0 < nb; r0 += RW) {
            const int64_t rw = nb - r0 < RW ? nb - r0 : RW;
            for (int64_t cb = 0; cb < C; cb += RW) {
                const int64_t cw = C - cb < RW ? C - cb : RW;
                if (rw == RW && cw == RW)
                    FL(ce_tout)(gbuf, r0, cb, RW, dst + r0 * C, C, RW);
                else if (rw == RW)
                    FL(ce_tout)(gbuf, r0, cb, cw, dst + r0 * C, C, RW);
                else
                    FL(ce_tout)(gbuf, r0, cb, cw, dst + r0 * C, C, rw);
            }
        }
        if (nt) fl_ce_stream(grad_out + o0 * C, obuf, nb * C * (int64_t)sizeof(real));
    }
    if (nt) fl_ce_stream_fence();
    return fl_ce_sum_result(&acc);
}

static double FL(ce_dispatch)(const FL(ce_call) *k, int64_t outer, int64_t C,
                              int64_t inner, int64_t *err_index)
{
    if (inner != 1) return FL(ce_blocks)(k, outer, C, inner, err_index);
    if (C <= FL_CE_TRANSPOSE_MAX) return FL(ce_small_rows)(k, outer, C, err_index);
    return FL(ce_rows)(k, outer, C, err_index);
}

/* ------------------------------------------------------------ index targets */

double FLK(fl_class_target_weight_sum)(int64_t n, const int64_t *labels, int64_t C,
                                      const real *weight, int64_t ignore_index,
                                      int64_t *err_index)
{
    *err_index = -1;
    if (!weight) {
        /* a count (exact): blocks checked without branches, a bad one scanned */
        int64_t count = 0;
        for (int64_t i0 = 0; i0 < n; i0 += 256) {
            const int64_t i1 = n - i0 < 256 ? n : i0 + 256;
            int64_t bad = 0, kept = 0;
            for (int64_t i = i0; i < i1; i++) {
                const int64_t y = labels[i];
                const int64_t keep = y != ignore_index;
                kept += keep;
                bad |= keep & ((uint64_t)y >= (uint64_t)C);
            }
            if (bad) {
                for (int64_t i = i0; i < i1; i++) {
                    const int64_t y = labels[i];
                    if (y != ignore_index && (y < 0 || y >= C)) {
                        *err_index = i;
                        return 0.0;
                    }
                }
            }
            count += kept;
        }
        return (double)count;
    }
    fl_acc acc;
    fl_acc_init(&acc);
    for (int64_t i = 0; i < n; i++) {
        const int64_t y = labels[i];
        if (y == ignore_index) continue;
        if (y < 0 || y >= C) {
            *err_index = i;
            return 0.0;
        }
        fl_acc_add(&acc, (double)weight[y]);
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
    fl_ce_par P;
    P.mode = focal ? FL_CE_MODE_FOCAL : FL_CE_MODE_CE;
    P.smooth = smooth;
    P.one_m_eps = smooth ? 1.0 - eps : 1.0;
    P.e = smooth ? eps / (double)C : 0.0;
    P.W = (double)C;
    P.gamma = gamma;
    P.gs = gs;
#if defined(FL_REAL_F32)
    /* float32: p_y from the float e_y (as every other p_j of the gradient), not a second
     * exp in double (the focal factor keeps the double one) */
    P.ey = !focal;
#else
    P.ey = 0;
#endif
    if (smooth && w) {
        fl_acc wa;
        fl_acc_init(&wa);
        for (int64_t c = 0; c < C; c++) fl_acc_add(&wa, (double)w[c]);
        P.W = fl_acc_result(&wa);
    }
    FL(ce_call) k;
    k.prob = 0;
    k.smooth = smooth;
    k.x = x;
    k.t = NULL;
    k.w = w;
    k.wgrad = smooth && w ? w : NULL; /* w_j (j != y) enters only via smoothing */
    k.labels = labels;
    k.ignore_index = ignore_index;
    k.a1 = 0.0;
    k.e = 0.0;
    k.Er = (real)(gs * P.e);
    k.a1g = 0;
    k.eg = 0;
    k.loss_out = loss_out;
    k.grad_out = grad_out;
    k.P = &P;
    return FL(ce_dispatch)(&k, outer, C, inner, err_index);
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
    const int64_t n = outer * inner;
    if (C <= 0) {
        if (loss_out)
            for (int64_t i = 0; i < n; i++) loss_out[i] = 0;
        return 0.0;
    }
    const double eps = label_smoothing, gs = grad_scale;
    const int smooth = eps != 0;
    const double a1 = smooth ? 1.0 - eps : 1.0, e = smooth ? eps / (double)C : 0.0;
    fl_ce_par P;
    P.mode = FL_CE_MODE_PROB;
    P.smooth = smooth;
    P.one_m_eps = a1;
    P.e = e;
    P.W = 0.0;
    P.gamma = 0.0;
    P.gs = gs;
    P.ey = 0;
    FL(ce_call) k;
    k.prob = 1;
    k.smooth = 0;
    k.x = x;
    k.t = t;
    k.w = weight;
    k.wgrad = NULL;
    k.labels = NULL;
    k.ignore_index = 0;
    k.a1 = a1;
    k.e = e;
    k.Er = 0;
    /* per-element gradient target term gs * t'_j = a1g t_j + eg (times w_j) */
    k.a1g = (real)(gs * a1);
    k.eg = (real)(gs * e);
    k.loss_out = loss_out;
    k.grad_out = grad_out;
    k.P = &P;
    int64_t err = -1;
    return FL(ce_dispatch)(&k, outer, C, inner, &err);
}

#undef RV
#undef RVI
#undef RW
#undef CE_NH
#undef CE_COMP
#undef CE_TW

#endif /* FL_TEMPLATE_PASS */
