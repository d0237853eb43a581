/*
 * fastloss C API: fused forward+backward loss kernels over contiguous arrays.
 *
 * Plain C11 (also valid C99), no Python. Every kernel exists as _f32 (float) and _f64 (double),
 * expanded from one template per family (see real.h).
 *
 * Conventions shared by all kernels
 * ---------------------------------
 * - All arrays are C-contiguous, of the kernel's real type unless stated; labels are int64_t.
 * - Lengths, counts and indices are int64_t (64-bit indexing everywhere).
 * - loss_out (per-element / per-row losses) may be NULL: then only the sum is computed.
 * - grad_out may be NULL: then no gradient is computed. When given, it receives
 *   grad_scale * d(loss_i)/d(input).  Softmax and Dice kernels use it as scratch between
 *   their sweeps (an element is never read before this call wrote it), so grad_out may be
 *   input itself but must not partly overlap an input.  grad_scale carries the
 *   reduction (1 for "sum"/"none", 1/denominator for "mean").
 * - The return value is the sum of the per-element losses (as written to loss_out,
 *   i.e. including weights), accumulated in double with compensated summation.
 *   NaN in any input propagates to the affected losses, gradients and to the sum.
 * - A broadcast operand (weight, pos_weight) is given as (ptr, inner, len): element i of
 *   the flattened input uses ptr[(i / inner) % len], with inner >= 1 and len >= 1 when ptr
 *   is not NULL.  ptr == NULL means "all ones".
 *   inner = 1, len = n: same shape; len = 1: a scalar; inner = 1, len = K: along the
 *   last axis; inner = K, len = M: along a leading axis.
 * - Kernels that validate data report the first offending flat index through
 *   *err_index (-1 when all is well) and never read or write out of bounds.
 * - Row-wise (softmax) kernels see the input as (outer, C, inner): class c of
 *   sample (o, s) is at x[(o * C + c) * inner + s]; labels/targets per sample are at
 *   [o * inner + s].  inner == 1 is the contiguous-rows case.
 */
#ifndef FASTLOSS_H
#define FASTLOSS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every kernel is declared once, by a macro FL_DECL_<KERNEL>(T, S, D) that hands its
 * return type, name (fl_<kernel> with suffix S) and parameter list to the declarator D:
 *   FL_AS_FUNCTION        a function: the per-target kernels, e.g. fl_huber_f32_avx2
 *   FL_AS_EXTERN_POINTER  a function pointer: the public names, e.g. fl_huber_f32, which
 *                         dispatch.c points at the best target once (fl_dispatch_init).
 * Callers (the Cython layer, C users) call the public names like functions.
 */
#define FL_AS_FUNCTION(R, name, params) R name params;
#define FL_AS_EXTERN_POINTER(R, name, params) extern R (*name) params;

/* the public pointers, both dtypes */
#define FL_DECLARE_BOTH(decl) decl(float, _f32, FL_AS_EXTERN_POINTER)                     \
                              decl(double, _f64, FL_AS_EXTERN_POINTER)
/* the kernels of one target, both dtypes (tgt may be a macro, e.g. FL_TARGET) */
#define FL_DECLARE_TARGET(decl, tgt) FL_DECLARE_TARGET_(decl, tgt)
#define FL_DECLARE_TARGET_(decl, tgt) decl(float, _f32_##tgt, FL_AS_FUNCTION)             \
                                      decl(double, _f64_##tgt, FL_AS_FUNCTION)

/* ---------------------------------------------------------------- binary.c */

/* Binary cross-entropy with logits, torch semantics:
 *   lw     = 1 + (pw - 1) * y
 *   loss_i = w * ((1 - y) * x + lw * softplus(-x))
 *   dloss/dx = w * ((1 - y) - lw * sigmoid(-x))
 * evaluated as w * ((1 - y) softplus(x) + pw y softplus(-x)), the same function without
 * cancellation (both terms >= 0 for y in [0, 1], pw >= 0).  At x = +-inf a term whose
 * coefficient is 0 contributes 0 (its limit), not 0 * inf = NaN.
 */
#define FL_DECL_BCE_LOGITS(T, S, D)                                                       \
    D(double, fl_bce_logits##S, (int64_t n, const T *x, const T *y, const T *w,           \
      int64_t w_inner, int64_t w_len, const T *pw, int64_t pw_inner, int64_t pw_len,      \
      T *loss_out, T *grad_out, double grad_scale))
FL_DECLARE_BOTH(FL_DECL_BCE_LOGITS)

/* Binary cross-entropy on probabilities, torch semantics:
 *   loss_i = -w * (y * max(log p, -100) + (1 - y) * max(log1p(-p), -100))
 *   dloss/dp = w * (p - y) / max(p * (1 - p), 1e-12)
 * p outside [0, 1] (not NaN): loss and grad are NaN there, and *err_index is the first
 * such index (-1 if none).  The kernel does not stop at a bad p. */
#define FL_DECL_BCE(T, S, D)                                                              \
    D(double, fl_bce##S, (int64_t n, const T *p, const T *y, const T *w,                  \
      int64_t w_inner, int64_t w_len, T *loss_out, T *grad_out, double grad_scale,        \
      int64_t *err_index))
FL_DECLARE_BOTH(FL_DECL_BCE)

/* Sigmoid focal loss, torchvision semantics (log space or double-word arithmetic where
 * needed for accuracy):
 *   p = sigmoid(x), ce = bce_with_logits(x, y), p_t = p y + (1 - p)(1 - y)
 *   loss_i = ce * (1 - p_t)^gamma * (alpha >= 0 ? alpha y + (1 - alpha)(1 - y) : 1)
 * Finite loss and grad for every finite x and every gamma >= 0 (gamma = 0: (1-p_t)^0 = 1). */
#define FL_DECL_SIGMOID_FOCAL(T, S, D)                                                    \
    D(double, fl_sigmoid_focal##S, (int64_t n, const T *x, const T *y, double alpha,      \
      double gamma, T *loss_out, T *grad_out, double grad_scale))
FL_DECLARE_BOTH(FL_DECL_SIGMOID_FOCAL)

/* ------------------------------------------------------------ regression.c */

/* Huber, torch semantics (delta > 0): d = x - y;
 *   loss = 0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta);  dloss/dx = clamp(d, -delta, delta) */
#define FL_DECL_HUBER(T, S, D)                                                            \
    D(double, fl_huber##S, (int64_t n, const T *x, const T *y, double delta,              \
      T *loss_out, T *grad_out, double grad_scale))
FL_DECLARE_BOTH(FL_DECL_HUBER)

/* Smooth L1, torch semantics (beta >= 0; beta == 0 is L1 with gradient sign(d), sign(0) = 0):
 *   loss = 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta;  dloss/dx = clamp(d / beta, -1, 1) */
#define FL_DECL_SMOOTH_L1(T, S, D)                                                        \
    D(double, fl_smooth_l1##S, (int64_t n, const T *x, const T *y, double beta,           \
      T *loss_out, T *grad_out, double grad_scale))
FL_DECLARE_BOTH(FL_DECL_SMOOTH_L1)

/* --------------------------------------------------------- cross_entropy.c */

/* Validates class-index targets and returns the "mean" denominator of torch's
 * cross_entropy / nll_loss: sum over non-ignored samples of weight[label] (count when
 * weight is NULL).  A label outside [0, C) that is not ignore_index sets *err_index to
 * its flat index and the function returns 0. */
#define FL_DECL_CLASS_TARGET_WEIGHT_SUM(T, S, D)                                          \
    D(double, fl_class_target_weight_sum##S, (int64_t n, const int64_t *labels, int64_t C, \
      const T *weight, int64_t ignore_index, int64_t *err_index))
FL_DECLARE_BOTH(FL_DECL_CLASS_TARGET_WEIGHT_SUM)

/* Softmax cross-entropy with class-index targets (torch F.cross_entropy):
 *   logp = log_softmax(x_row); eps = label_smoothing; w = weight (NULL: ones)
 *   loss_row = (1 - eps) * w[y] * (-logp[y]) + (eps / C) * sum_c w[c] * (-logp[c])
 *   ignored rows (label == ignore_index): loss 0, gradient 0.
 *   dloss/dx_j = (1 - eps) * w[y] * (p_j - [j == y]) + (eps / C) * (W p_j - w[j]),  W = sum_c w[c]
 * Bad label: *err_index = flat sample index, return value undefined, outputs partly written. */
#define FL_DECL_CE_INDEX(T, S, D)                                                         \
    D(double, fl_softmax_ce_index##S, (int64_t outer, int64_t C, int64_t inner,           \
      const T *x, const int64_t *labels, const T *weight, int64_t ignore_index,           \
      double label_smoothing, T *loss_out, T *grad_out, double grad_scale,                \
      int64_t *err_index))
FL_DECLARE_BOTH(FL_DECL_CE_INDEX)

/* Softmax cross-entropy with class-probability targets t (same layout as x); torch's
 * "mean" divides by the number of samples (outer * inner), not by the weights:
 *   t' = (1 - eps) t + eps / C;  loss_row = -sum_c w[c] t'_c logp_c
 *   dloss/dx_j = p_j * sum_c w[c] t'_c - w[j] t'_j */
#define FL_DECL_CE_PROB(T, S, D)                                                          \
    D(double, fl_softmax_ce_prob##S, (int64_t outer, int64_t C, int64_t inner,            \
      const T *x, const T *t, const T *weight, double label_smoothing, T *loss_out,       \
      T *grad_out, double grad_scale))
FL_DECLARE_BOTH(FL_DECL_CE_PROB)

/* Softmax focal loss with class-index targets:
 *   loss_row = -a[y] (1 - p_y)^gamma logp_y   (a = alpha per class, NULL: ones)
 *   dloss/dx_j = -a[y] ([j == y] - p_j) ((1 - p_y)^gamma - gamma p_y logp_y (1 - p_y)^(gamma - 1))
 * gamma >= 0; finite for 0 < gamma < 1 as p_y -> 1; ignored rows get loss 0 and gradient 0
 * even when their logits are NaN (torch gives NaN there).  err_index must not be NULL. */
#define FL_DECL_SOFTMAX_FOCAL(T, S, D)                                                    \
    D(double, fl_softmax_focal##S, (int64_t outer, int64_t C, int64_t inner,              \
      const T *x, const int64_t *labels, const T *alpha, double gamma,                    \
      int64_t ignore_index, T *loss_out, T *grad_out, double grad_scale,                  \
      int64_t *err_index))
FL_DECLARE_BOTH(FL_DECL_SOFTMAX_FOCAL)

/* --------------------------------------------------------------- overlap.c */

enum fl_activation { FL_ACT_NONE = 0, FL_ACT_SIGMOID = 1, FL_ACT_SOFTMAX = 2 };

/* Dice loss, MONAI DiceLoss semantics.  x is (B, C, S) (S = prod of spatial dims).
 * Target: either t (B, C, S) dense (one-hot or soft), or labels (B, S) int64 class
 * indices (exactly one of t / labels is non-NULL).  After the activation, channels
 * c < c0 are dropped (c0 = 1 for include_background=False, else 0); K = C - c0.
 * Per kept (b, c) (or per c summed over b when batch != 0):
 *   I = sum p t;  G = sum t (sum t^2 if squared_pred);  P = sum p (sum p^2 if squared_pred)
 *   D = G + P;  if jaccard: D = 2 (D - I)
 *   f = 1 - (2 I + smooth_nr) / (D + smooth_dr);  f *= weight[c - c0] if weight
 * f_out (may be NULL) receives f: B*K values ((b, k) row-major), or K values when batch.
 * grad_out (same shape as x; may be NULL; may be x itself but must not partly overlap it)
 * receives grad_scale * d(sum f)/dx (w.r.t. the logits when an activation is used; zero
 * for dropped channels unless softmax couples them).
 * A label outside [0, C) sets *err_index to its flat index (b * S + s); labels are all
 * checked before any output is written.
 * Returns 0 on success, -1 on bad label, -2 if scratch memory could not be allocated,
 * -3 on invalid arguments (negative sizes, c0 outside [0, C], not exactly one of t/labels,
 * unknown activation). */
#define FL_DECL_DICE(T, S, D)                                                             \
    D(int, fl_dice##S, (int64_t B, int64_t C, int64_t Sp, const T *x, const T *t,         \
      const int64_t *labels, int activation, int64_t c0, int squared_pred,                \
      int jaccard, double smooth_nr, double smooth_dr, int batch, const T *weight,        \
      double *f_out, T *grad_out, double grad_scale, int64_t *err_index))
FL_DECLARE_BOTH(FL_DECL_DICE)

/* ----------------------------------------------------------------- stream.c */

/* STREAM's triad a = b + s c over n elements (not a loss: the memory roofline of
 * bench/report.py).  a must not overlap b or c. */
#define FL_DECL_STREAM_TRIAD(T, S, D)                                                     \
    D(void, fl_stream_triad##S, (int64_t n, T *a, const T *b, const T *c, double s))
FL_DECLARE_BOTH(FL_DECL_STREAM_TRIAD)

/* ---------------------------------------------------------------- threads.c */

typedef void (*fl_task_fn)(void *ctx, int64_t task);

/* Runs fn(ctx, t) for every t in [0, n_tasks) on up to n_threads threads, the caller
 * included, and returns how many took part.  One process-wide pool: a call that finds
 * it in use by another thread runs its tasks serially (no oversubscription).  Fork-safe.
 * Results must not depend on which thread runs a task: callers split work into blocks
 * fixed by the data and combine per-block results in block order. */
int fl_parallel_for(int64_t n_tasks, int n_threads, fl_task_fn fn, void *ctx);

/* Returns nonzero to stop a parallel loop (fl_parallel_for_poll). */
typedef int (*fl_poll_fn)(void *poll_ctx);

/* fl_parallel_for that can be stopped: the calling thread calls poll(poll_ctx) between
 * the tasks it runs, and while it waits for its helpers, at most every interval_ms
 * milliseconds (never from a helper thread, never while holding a pool lock).  When poll
 * returns nonzero no further task is started anywhere, the tasks already running finish,
 * and the call returns -1 (some tasks were not run).  Otherwise as fl_parallel_for.
 * poll == NULL: exactly fl_parallel_for.  Used to stop a long call on a pending signal
 * (Ctrl-C): the poll function may take the GIL. */
int fl_parallel_for_poll(int64_t n_tasks, int n_threads, fl_task_fn fn, void *ctx,
                         fl_poll_fn poll, void *poll_ctx, int interval_ms);
/* Online CPUs (at least 1). */
int fl_num_cores(void);

/* --------------------------------------------------------------- dispatch.c */

/* Every kernel: X(name, FL_DECL macro).  Adding a kernel = its FL_DECL macro + one line. */
#define FL_KERNELS(X)                                                                     \
    X(bce_logits, FL_DECL_BCE_LOGITS)                                                     \
    X(bce, FL_DECL_BCE)                                                                   \
    X(sigmoid_focal, FL_DECL_SIGMOID_FOCAL)                                               \
    X(huber, FL_DECL_HUBER)                                                               \
    X(smooth_l1, FL_DECL_SMOOTH_L1)                                                       \
    X(class_target_weight_sum, FL_DECL_CLASS_TARGET_WEIGHT_SUM)                           \
    X(softmax_ce_index, FL_DECL_CE_INDEX)                                                 \
    X(softmax_ce_prob, FL_DECL_CE_PROB)                                                   \
    X(softmax_focal, FL_DECL_SOFTMAX_FOCAL)                                               \
    X(dice, FL_DECL_DICE)                                                                 \
    X(stream_triad, FL_DECL_STREAM_TRIAD)

/* The CPU targets every family file is compiled for (setup.py's TARGETS must match),
 * worst first.  Adding a target = one entry here, its flags in setup.py, its feature
 * test in dispatch.c. */
#if defined(__x86_64__) || defined(_M_X64)
#define FL_TARGETS(X) X(baseline) X(avx2) X(avx512)
#else
#define FL_TARGETS(X) X(baseline)
#endif

/* A family file compiled for a target (-DFL_TARGET=avx2, as setup.py does) sees the
 * prototypes of the kernels it defines, so their signatures are checked. */
#ifdef FL_TARGET
#define FL_DECLARE_CURRENT(name, decl) FL_DECLARE_TARGET(decl, FL_TARGET)
FL_KERNELS(FL_DECLARE_CURRENT)
#endif

/* Points every public kernel name at the given target ("" or NULL: the best one this
 * CPU supports).  Returns 0, -1 for an unknown target name, -2 for a target this CPU
 * (or OS: XSAVE state) does not support.  Called once at import; idempotent. */
int fl_dispatch_init(const char *target);
/* The target the public names point at ("baseline", "avx2", "avx512"). */
const char *fl_dispatch_target(void);
/* Whether this CPU supports a target (1/0; -1 for an unknown name). */
int fl_target_supported(const char *target);
/* Space-separated names of all compiled targets, worst first. */
const char *fl_target_names(void);
/* Space-separated names of the kernels (FL_KERNELS order). */
const char *fl_kernel_names(void);
/* Space-separated CPU features the dispatcher detected (e.g. "sse2 avx2 fma avx512f"). */
const char *fl_cpu_features(void);
/* The compiler that built the kernels, e.g. "GCC 12.2.0". */
const char *fl_compiler(void);

#ifdef __cplusplus
}
#endif
#endif /* FASTLOSS_H */
