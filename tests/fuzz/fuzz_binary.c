/*
 * libFuzzer harness: binary family (csrc/binary.c): fl_bce_logits, fl_bce, fl_sigmoid_focal.
 * Uses only the signatures of csrc/fastloss.h (the family's implementation may change).
 *
 * Per input: kernel, dtype, n (0..3000), alignment offsets of every array, broadcast weight
 * and pos_weight (NULL, or (ptr, inner, len) with inner in [1, n+1], len in [1, 64]),
 * alpha / gamma, grad_scale, tame or wild values (fuzz_common.h), outputs requested.
 *
 * Invariants, for every target this CPU runs:
 *   - no ASan / UBSan report; inputs unchanged;
 *   - NaN in x, y, or the weight / pos_weight an element uses => that loss and gradient NaN
 *     (fastloss.h: "NaN in any input propagates");
 *   - fl_bce: *err_index is the first i with p_i < 0 or p_i > 1 (NaN is not an error), -1
 *     if none; loss and gradient NaN there;
 *   - the return value is the sum of the written losses: within 8 double eps of
 *     sum |loss_i| from their exact sum; NaN if a loss is NaN;
 *   - one / no output requested: the same return value (bitwise), the same bits written;
 *     grad_out == x: the same bits;
 *   - tame inputs (|x| <= 1e4, y in [0, 1], p in [0, 1], weights in [0, 4], pos_weight in
 *     [0, 8], gamma in [0, 5], alpha in [0, 1] or -1): every target agrees with the baseline
 *     elementwise within 16 ulp (of the dtype) of the loss, and the gradient within 16 ulp
 *     of the magnitude of the terms of the documented formula (bce_logits:
 *     |gs w| (|1 - y| + lw sigmoid(-x)); bce: |gs w| (p + y) / max(p (1 - p), 1e-12); focal:
 *     |gs a| (|p - y| m^gamma + gamma ce m^(gamma-1) p (1 - p) |2y - 1| + ce m^gamma), 32 ulp),
 *     plus an absolute 16 ulp of the dtype's smallest normal times the scale factors;
 *     focal also 2 gamma (|log m| + 2) double ulp of both magnitudes: F = m^gamma is
 *     computed in double lanes as exp(gamma log m) (binary.c: "within ~|gamma log u| ulp
 *     for soft labels"), so a 1-ulp difference in log m between two targets' vector log
 *     becomes gamma |log m| ulp of F (found by this fuzzer: f64, gamma 4.65, y 0.0021,
 *     x -6.14: avx2 and baseline 23 ulp apart, regressions/binary/).
 */
#include "fuzz_common.h"

FZ_DECLARE_ALL(FL_DECL_BCE_LOGITS)
FZ_DECLARE_ALL(FL_DECL_BCE)
FZ_DECLARE_ALL(FL_DECL_SIGMOID_FOCAL)

typedef double (*bcel_f32)(int64_t, const float *, const float *, const float *, int64_t,
                           int64_t, const float *, int64_t, int64_t, float *, float *, double);
typedef double (*bcel_f64)(int64_t, const double *, const double *, const double *, int64_t,
                           int64_t, const double *, int64_t, int64_t, double *, double *, double);
typedef double (*bce_f32)(int64_t, const float *, const float *, const float *, int64_t, int64_t,
                          float *, float *, double, int64_t *);
typedef double (*bce_f64)(int64_t, const double *, const double *, const double *, int64_t,
                          int64_t, double *, double *, double, int64_t *);
typedef double (*focal_f32)(int64_t, const float *, const float *, double, double, float *,
                            float *, double);
typedef double (*focal_f64)(int64_t, const double *, const double *, double, double, double *,
                            double *, double);

static const bcel_f32 k_bcel_f32[FZ_N_TARGETS] = FZ_PTRS(fl_bce_logits, f32);
static const bcel_f64 k_bcel_f64[FZ_N_TARGETS] = FZ_PTRS(fl_bce_logits, f64);
static const bce_f32 k_bce_f32[FZ_N_TARGETS] = FZ_PTRS(fl_bce, f32);
static const bce_f64 k_bce_f64[FZ_N_TARGETS] = FZ_PTRS(fl_bce, f64);
static const focal_f32 k_focal_f32[FZ_N_TARGETS] = FZ_PTRS(fl_sigmoid_focal, f32);
static const focal_f64 k_focal_f64[FZ_N_TARGETS] = FZ_PTRS(fl_sigmoid_focal, f64);

enum { K_BCEL = 0, K_BCE = 1, K_FOCAL = 2 };
static const char *const kname[3] = {"bce_logits", "bce", "sigmoid_focal"};

typedef struct {
    int kernel, f32;
    int64_t n;
    const void *x, *y;         /* x: logits or probabilities */
    const void *w, *pw;        /* NULL or broadcast operands */
    int64_t w_inner, w_len, pw_inner, pw_len;
    double alpha, gamma, gs;
} call_args;

static double call(const call_args *a, int tgt, const void *x, void *loss, void *grad,
                   int64_t *err)
{
    *err = -1;
    switch (a->kernel) {
    case K_BCEL:
        if (a->f32)
            return k_bcel_f32[tgt](a->n, x, a->y, a->w, a->w_inner, a->w_len, a->pw, a->pw_inner,
                                   a->pw_len, loss, grad, a->gs);
        return k_bcel_f64[tgt](a->n, x, a->y, a->w, a->w_inner, a->w_len, a->pw, a->pw_inner,
                               a->pw_len, loss, grad, a->gs);
    case K_BCE:
        if (a->f32)
            return k_bce_f32[tgt](a->n, x, a->y, a->w, a->w_inner, a->w_len, loss, grad, a->gs, err);
        return k_bce_f64[tgt](a->n, x, a->y, a->w, a->w_inner, a->w_len, loss, grad, a->gs, err);
    default:
        if (a->f32)
            return k_focal_f32[tgt](a->n, x, a->y, a->alpha, a->gamma, loss, grad, a->gs);
        return k_focal_f64[tgt](a->n, x, a->y, a->alpha, a->gamma, loss, grad, a->gs);
    }
}

static double bc_get(const void *p, int f32, int64_t inner, int64_t len, int64_t i)
{
    if (!p) return 1.0;
    return fz_get(p, f32, (size_t)((i / inner) % len));
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* the magnitude the loss and gradient of element i are compared at (tame inputs) */
static void scales(const call_args *a, int64_t i, double *sl, double *sg, double *cond)
{
    const double x = fz_get(a->x, a->f32, (size_t)i), y = fz_get(a->y, a->f32, (size_t)i);
    const double w = bc_get(a->w, a->f32, a->w_inner, a->w_len, i);
    const double gs = fabs(a->gs);
    *sl = 0.0;
    *cond = 0.0;
    if (a->kernel == K_BCEL) {
        const double pw = bc_get(a->pw, a->f32, a->pw_inner, a->pw_len, i);
        const double lw = 1.0 + (pw - 1.0) * y;
        *sg = gs * fabs(w) * (fabs(1.0 - y) + fabs(lw) * sigmoid(-x));
    } else if (a->kernel == K_BCE) {
        double den = x * (1.0 - x);
        if (den < 1e-12) den = 1e-12;
        *sg = gs * fabs(w) * (fabs(x) + fabs(y)) / den;
    } else {
        const double p = sigmoid(x), pt = p * y + (1 - p) * (1 - y), m = 1 - pt;
        const double ce = (x > 0 ? x : 0) + log1p(exp(-fabs(x))) - x * y;
        const double aw = a->alpha >= 0 ? a->alpha * y + (1 - a->alpha) * (1 - y) : 1.0;
        const double mg = pow(m, a->gamma);
        const double mg1 = m > 0 ? pow(m, a->gamma - 1) : 0.0;
        *sg = gs * fabs(aw) *
              (fabs(p - y) * mg + a->gamma * fabs(ce) * mg1 * p * (1 - p) * fabs(2 * y - 1) +
               fabs(ce) * mg);
        *sl = fabs(aw) * fabs(ce) * mg;
        /* d(F)/F = gamma d(log m): the targets' log m may differ by an ulp (of double) */
        *cond = m > 0 ? 2 * a->gamma * (fabs(log(m)) + 2) : 0.0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_targets_init();
    fz_in in;
    fz_init(&in, data, size);

    call_args a;
    memset(&a, 0, sizeof a);
    const uint8_t flags = fz_u8(&in);
    a.f32 = flags & 1;
    const int tame = (flags >> 1) & 1;
    a.kernel = ((flags >> 2) & 3) % 3;
    const size_t es = a.f32 ? sizeof(float) : sizeof(double);
    const int64_t n = a.n = fz_range(&in, 0, 3000);
    size_t off[6];
    for (int k = 0; k < 6; k++) off[k] = fz_u8(&in) % 16;

    /* broadcast operands */
    const uint8_t wsel = fz_u8(&in);
    void *w = NULL, *pw = NULL;
    a.w_inner = a.w_len = a.pw_inner = a.pw_len = 1;
    if (a.kernel != K_FOCAL && (wsel & 3)) {
        a.w_inner = fz_range(&in, 1, n + 1);
        a.w_len = fz_range(&in, 1, 64);
        w = fz_alloc((size_t)a.w_len, es, off[4]);
        for (int64_t k = 0; k < a.w_len; k++)
            fz_set(w, a.f32, (size_t)k, tame ? fz_uniform(&in, 0.0, 4.0) : fz_wild(&in, a.f32));
    }
    if (a.kernel == K_BCEL && (wsel & 12)) {
        a.pw_inner = fz_range(&in, 1, n + 1);
        a.pw_len = fz_range(&in, 1, 64);
        pw = fz_alloc((size_t)a.pw_len, es, off[5]);
        for (int64_t k = 0; k < a.pw_len; k++)
            fz_set(pw, a.f32, (size_t)k, tame ? fz_uniform(&in, 0.0, 8.0) : fz_wild(&in, a.f32));
    }
    a.w = w;
    a.pw = pw;

    /* parameters: the contract's domain (the Python layer rejects the rest) */
    if (tame) {
        a.gs = fz_u8(&in) < 128 ? 1.0 : fz_uniform(&in, -2.0, 2.0);
        a.alpha = fz_u8(&in) < 32 ? -1.0 : fz_unit(&in);
        a.gamma = fz_u8(&in) < 64 ? (double)(fz_u8(&in) % 4) : fz_uniform(&in, 0.0, 5.0);
    } else {
        a.gs = fz_wild(&in, 0);
        if (!isfinite(a.gs)) a.gs = 1.0;
        a.alpha = fz_u8(&in) < 32 ? -1.0 : fz_unit(&in);
        a.gamma = fabs(fz_wild(&in, 0));
        if (!isfinite(a.gamma) || a.gamma > 1e3) a.gamma = 2.0;
    }

    /* x (logits or probabilities) and y */
    void *x = fz_alloc((size_t)n, es, off[0]), *y = fz_alloc((size_t)n, es, off[1]);
    const double xscale = pow(10.0, fz_uniform(&in, -1.0, 1.5));
    for (int64_t i = 0; i < n; i++) {
        double xv, yv;
        if (tame) {
            const uint8_t s = fz_u8(&in);
            if (a.kernel == K_BCE) {
                xv = s < 16 ? (double)(s & 1) : s < 32 ? ldexp(1.0, -(int)(s % 40)) : fz_unit(&in);
            } else {
                xv = s < 8 ? (s & 1 ? 1e4 : -1e4) : fz_uniform(&in, -3.0, 3.0) * xscale;
            }
            const uint8_t h = fz_u8(&in);
            yv = h < 128 ? (double)(h & 1) : fz_unit(&in);
        } else {
            xv = fz_wild(&in, a.f32);
            yv = fz_wild(&in, a.f32);
        }
        fz_set(x, a.f32, (size_t)i, xv);
        fz_set(y, a.f32, (size_t)i, yv);
    }
    a.x = x;
    a.y = y;
    const void *x0 = fz_dup(x, (size_t)n, es, 0), *y0 = fz_dup(y, (size_t)n, es, 0);
    const void *w0 = w ? fz_dup(w, (size_t)a.w_len, es, 0) : NULL;
    const void *pw0 = pw ? fz_dup(pw, (size_t)a.pw_len, es, 0) : NULL;

    /* the first bad probability */
    int64_t want_err = -1;
    if (a.kernel == K_BCE)
        for (int64_t i = 0; i < n && want_err < 0; i++) {
            const double p = fz_get(x, a.f32, (size_t)i);
            if (p < 0 || p > 1) want_err = i;
        }

    void *bl = NULL, *bg = NULL;
    static char ctx[160]; /* (static: fz_context outlives this call) */
    for (int t = 0; t < FZ_N_TARGETS; t++) {
        if (!fz_enabled[t]) continue;
        snprintf(ctx, sizeof ctx,
                 "%s %s %s n=%lld w=(%d,%lld,%lld) pw=(%d,%lld,%lld) alpha=%g gamma=%.17g "
                 "gs=%.17g target=%s",
                 kname[a.kernel], a.f32 ? "f32" : "f64", tame ? "tame" : "wild", (long long)n,
                 w != NULL, (long long)a.w_inner, (long long)a.w_len, pw != NULL,
                 (long long)a.pw_inner, (long long)a.pw_len, a.alpha, a.gamma, a.gs,
                 fz_target_name[t]);
        fz_context = ctx;
        void *loss = fz_alloc_out((size_t)n, es, off[2]), *grad = fz_alloc_out((size_t)n, es, off[3]);
        int64_t err;
        const double ret = call(&a, t, x, loss, grad, &err);
        fz_expect_unchanged("input x", x, x0, (size_t)n * es);
        fz_expect_unchanged("input y", y, y0, (size_t)n * es);
        if (w) fz_expect_unchanged("input weight", w, w0, (size_t)a.w_len * es);
        if (pw) fz_expect_unchanged("input pos_weight", pw, pw0, (size_t)a.pw_len * es);
        if (a.kernel == K_BCE)
            FZ_CHECK(err == want_err, "err_index %lld, expected %lld", (long long)err,
                     (long long)want_err);

        fz_sum sum = {0};
        for (int64_t i = 0; i < n; i++) {
            const double l = fz_get(loss, a.f32, (size_t)i), g = fz_get(grad, a.f32, (size_t)i);
            int nan_in = isnan(fz_get(x, a.f32, (size_t)i)) || isnan(fz_get(y, a.f32, (size_t)i)) ||
                         isnan(bc_get(w, a.f32, a.w_inner, a.w_len, i)) ||
                         isnan(bc_get(pw, a.f32, a.pw_inner, a.pw_len, i));
            if (nan_in)
                FZ_CHECK(isnan(l) && isnan(g), "element %lld: a NaN input but loss=%g grad=%g",
                         (long long)i, l, g);
            if (a.kernel == K_BCE && i == want_err)
                FZ_CHECK(isnan(l) && isnan(g), "element %lld: p out of [0, 1] but loss=%g grad=%g",
                         (long long)i, l, g);
            fz_sum_loss(&sum, l);
        }
        fz_check_sum(ret, &sum, 8);

        if (t == FZ_BASELINE) {
            bl = loss;
            bg = grad;
        } else if (tame) {
            const double eps = a.f32 ? FLT_EPSILON : DBL_EPSILON;
            const double tiny = a.f32 ? FLT_MIN : DBL_MIN;
            const double kg = a.kernel == K_FOCAL ? 32.0 : 16.0;
            for (int64_t i = 0; i < n; i++) {
                double sl, sg, cond;
                scales(&a, i, &sl, &sg, &cond);
                const double lb = fz_get(bl, a.f32, (size_t)i), lt = fz_get(loss, a.f32, (size_t)i);
                const double gb = fz_get(bg, a.f32, (size_t)i), gt = fz_get(grad, a.f32, (size_t)i);
                const double wmax = 8.0 * (1 + fabs(a.gs));
                const double ml = fmax(fmax(fabs(lb), fabs(lt)), sl);
                const double mgr = fmax(fmax(fabs(gb), fabs(gt)), sg);
                const double tl = (16 * eps + cond * DBL_EPSILON) * ml + 16 * tiny * wmax;
                const double tg = (kg * eps + cond * DBL_EPSILON) * mgr + 16 * tiny * wmax;
                if (!fz_close(lt, lb, tl))
                    fz_fail("element %lld: loss %.17g, baseline %.17g (tolerance %.3g; x=%.17g "
                            "y=%.17g)", (long long)i, lt, lb, tl, fz_get(x, a.f32, (size_t)i),
                            fz_get(y, a.f32, (size_t)i));
                if (!fz_close(gt, gb, tg))
                    fz_fail("element %lld: grad %.17g, baseline %.17g (tolerance %.3g; x=%.17g "
                            "y=%.17g)", (long long)i, gt, gb, tg, fz_get(x, a.f32, (size_t)i),
                            fz_get(y, a.f32, (size_t)i));
            }
        }

        /* one / no output, grad_out == x */
        const uint8_t modes = fz_u8(&in);
        int64_t err2;
        if (modes & 1) {
            void *l2 = fz_alloc_out((size_t)n, es, off[2]);
            const double r2 = call(&a, t, x, l2, NULL, &err2);
            FZ_CHECK(fz_same_f64(r2, ret), "loss only: returned %.17g, with both outputs %.17g", r2, ret);
            FZ_CHECK(err2 == err, "loss only: err_index %lld vs %lld", (long long)err2, (long long)err);
            fz_expect_same("loss only: loss_out", l2, loss, (size_t)n, a.f32);
        }
        if (modes & 2) {
            void *g2 = fz_alloc_out((size_t)n, es, off[3]);
            const double r2 = call(&a, t, x, NULL, g2, &err2);
            FZ_CHECK(fz_same_f64(r2, ret), "grad only: returned %.17g, with both outputs %.17g", r2, ret);
            FZ_CHECK(err2 == err, "grad only: err_index %lld vs %lld", (long long)err2, (long long)err);
            fz_expect_same("grad only: grad_out", g2, grad, (size_t)n, a.f32);
        }
        if (modes & 4) {
            const double r2 = call(&a, t, x, NULL, NULL, &err2);
            FZ_CHECK(fz_same_f64(r2, ret), "no output: returned %.17g, with both outputs %.17g", r2, ret);
            FZ_CHECK(err2 == err, "no output: err_index %lld vs %lld", (long long)err2, (long long)err);
        }
        if (modes & 8) {
            void *xa = fz_dup(x, (size_t)n, es, off[0]), *l2 = fz_alloc_out((size_t)n, es, off[2]);
            const double r2 = call(&a, t, xa, l2, xa, &err2);
            FZ_CHECK(fz_same_f64(r2, ret), "grad_out == x: returned %.17g, separate %.17g", r2, ret);
            fz_expect_same("grad_out == x: grad", xa, grad, (size_t)n, a.f32);
            fz_expect_same("grad_out == x: loss", l2, loss, (size_t)n, a.f32);
        }
    }
    fz_free_all();
    return 0;
}
