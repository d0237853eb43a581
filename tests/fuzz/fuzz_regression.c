/*
 * libFuzzer harness: regression family (csrc/regression.c): fl_huber, fl_smooth_l1.
 *
 * Per input: kernel, dtype, n (0..4000, rarely ~300k to reach the streaming-store path),
 * alignment offsets of x, y, loss_out, grad_out, delta / beta, grad_scale, value mode
 * (tame / wild, see fuzz_common.h), and which outputs are requested.
 *
 * Invariants, for every target this CPU runs:
 *   - no ASan / UBSan report; inputs unchanged;
 *   - NaN rule: d = x - y NaN (a NaN input, or inf - inf) => loss and gradient NaN there;
 *   - the return value is the sum of the written losses: within 4 double eps (relative) of
 *     their exact sum (losses are >= 0, so this is a relative bound);
 *   - loss_out / grad_out bitwise identical to the baseline target's (regression.c: "same
 *     bits as the scalar code" for every target; only the sum's grouping differs);
 *   - the same call with only one or no output: the same return value (bitwise) and the
 *     same bits in the output given;
 *   - grad_out == x (allowed by fastloss.h): the same bits as separate arrays.
 */
#include "fuzz_common.h"

FZ_DECLARE_ALL(FL_DECL_HUBER)
FZ_DECLARE_ALL(FL_DECL_SMOOTH_L1)

typedef double (*reg_f32)(int64_t, const float *, const float *, double, float *, float *,
                          double);
typedef double (*reg_f64)(int64_t, const double *, const double *, double, double *, double *,
                          double);

static const reg_f32 huber_f32[FZ_N_TARGETS] = FZ_PTRS(fl_huber, f32);
static const reg_f64 huber_f64[FZ_N_TARGETS] = FZ_PTRS(fl_huber, f64);
static const reg_f32 sl1_f32[FZ_N_TARGETS] = FZ_PTRS(fl_smooth_l1, f32);
static const reg_f64 sl1_f64[FZ_N_TARGETS] = FZ_PTRS(fl_smooth_l1, f64);

static double call(int kernel, int tgt, int f32, int64_t n, const void *x, const void *y,
                   double param, void *loss, void *grad, double gs)
{
    if (f32) {
        const reg_f32 f = (kernel ? sl1_f32 : huber_f32)[tgt];
        return f(n, (const float *)x, (const float *)y, param, (float *)loss, (float *)grad, gs);
    }
    const reg_f64 f = (kernel ? sl1_f64 : huber_f64)[tgt];
    return f(n, (const double *)x, (const double *)y, param, (double *)loss, (double *)grad, gs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_targets_init();
    fz_in in;
    fz_init(&in, data, size);

    const uint8_t flags = fz_u8(&in);
    const int f32 = flags & 1, tame = (flags >> 1) & 1, kernel = (flags >> 2) & 1;
    const size_t es = f32 ? sizeof(float) : sizeof(double);
    int64_t n = fz_range(&in, 0, 4000);
    if (fz_u8(&in) < 1) n = fz_range(&in, 250000, 300000); /* >= 1 MiB output: streaming stores */
    const size_t ox = fz_u8(&in) % 16, oy = fz_u8(&in) % 16, ol = fz_u8(&in) % 16,
                 og = fz_u8(&in) % 16;

    double param, gs;
    if (tame) {
        param = pow(10.0, fz_uniform(&in, -3.0, 3.0));
        if (kernel && fz_u8(&in) < 32) param = 0.0; /* smooth L1 with beta = 0: L1 */
        gs = fz_u8(&in) < 128 ? 1.0 : fz_uniform(&in, -2.0, 2.0);
    } else {
        /* the contract's domain: delta > 0, beta >= 0, finite; any finite grad_scale */
        param = fabs(fz_wild(&in, f32));
        if (!isfinite(param) || (!kernel && param == 0.0)) param = 1.0;
        gs = fz_wild(&in, 0);
        if (!isfinite(gs)) gs = 1.0;
    }
    fz_context = kernel ? "smooth_l1" : "huber";

    void *x = fz_alloc((size_t)n, es, ox), *y = fz_alloc((size_t)n, es, oy);
    const double scale = tame ? pow(10.0, fz_uniform(&in, -2.0, 2.0)) * param : 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (tame) {
            fz_set(x, f32, (size_t)i, fz_uniform(&in, -3.0, 3.0) * scale);
            fz_set(y, f32, (size_t)i, fz_uniform(&in, -3.0, 3.0) * scale);
        } else {
            fz_set(x, f32, (size_t)i, fz_wild(&in, f32));
            fz_set(y, f32, (size_t)i, fz_wild(&in, f32));
        }
    }
    const void *x0 = fz_dup(x, (size_t)n, es, 0), *y0 = fz_dup(y, (size_t)n, es, 0);

    void *bl = NULL, *bg = NULL; /* baseline outputs */
    double bret = 0.0;
    for (int t = 0; t < FZ_N_TARGETS; t++) {
        if (!fz_enabled[t]) continue;
        static char ctx[96]; /* (static: fz_context outlives this call) */
        snprintf(ctx, sizeof ctx, "%s %s n=%lld param=%.17g gs=%.17g target=%s",
                 kernel ? "smooth_l1" : "huber", f32 ? "f32" : "f64", (long long)n, param, gs,
                 fz_target_name[t]);
        fz_context = ctx;
        void *loss = fz_alloc_out((size_t)n, es, ol), *grad = fz_alloc_out((size_t)n, es, og);
        const double ret = call(kernel, t, f32, n, x, y, param, loss, grad, gs);
        fz_expect_unchanged("input x", x, x0, (size_t)n * es);
        fz_expect_unchanged("input y", y, y0, (size_t)n * es);

        /* NaN rule and the sum */
        fz_sum sum = {0};
        for (int64_t i = 0; i < n; i++) {
            const double d = f32 ? (double)(((float *)x)[i] - ((float *)y)[i])
                                 : ((double *)x)[i] - ((double *)y)[i];
            const double l = fz_get(loss, f32, (size_t)i), g = fz_get(grad, f32, (size_t)i);
            if (isnan(d))
                FZ_CHECK(isnan(l) && isnan(g), "element %lld: d = x - y is NaN but loss=%g grad=%g",
                         (long long)i, l, g);
            FZ_CHECK(isnan(l) || l >= 0, "element %lld: negative loss %g", (long long)i, l);
            FZ_CHECK(!isinf(l) || l > 0, "element %lld: loss %g", (long long)i, l);
            fz_sum_loss(&sum, l);
        }
        fz_check_sum(ret, &sum, 4);

        if (t == FZ_BASELINE) {
            bl = loss;
            bg = grad;
            bret = ret;
        } else {
            fz_expect_same("loss_out vs baseline", loss, bl, (size_t)n, f32);
            fz_expect_same("grad_out vs baseline", grad, bg, (size_t)n, f32);
            (void)bret;
        }

        /* one or no output: same return value, same bits */
        const uint8_t modes = fz_u8(&in);
        if (modes & 1) {
            void *l2 = fz_alloc_out((size_t)n, es, ol);
            const double r2 = call(kernel, t, f32, n, x, y, param, l2, NULL, gs);
            FZ_CHECK(fz_same_f64(r2, ret), "loss only: returned %.17g, with both outputs %.17g", r2, ret);
            fz_expect_same("loss only: loss_out", l2, loss, (size_t)n, f32);
        }
        if (modes & 2) {
            void *g2 = fz_alloc_out((size_t)n, es, og);
            const double r2 = call(kernel, t, f32, n, x, y, param, NULL, g2, gs);
            FZ_CHECK(fz_same_f64(r2, ret), "grad only: returned %.17g, with both outputs %.17g", r2, ret);
            fz_expect_same("grad only: grad_out", g2, grad, (size_t)n, f32);
        }
        if (modes & 4) {
            const double r2 = call(kernel, t, f32, n, x, y, param, NULL, NULL, gs);
            FZ_CHECK(fz_same_f64(r2, ret), "no output: returned %.17g, with both outputs %.17g", r2, ret);
        }
        if (modes & 8) { /* grad_out == x */
            void *xa = fz_dup(x, (size_t)n, es, ox), *l2 = fz_alloc_out((size_t)n, es, ol);
            const double r2 = call(kernel, t, f32, n, xa, y, param, l2, xa, gs);
            FZ_CHECK(fz_same_f64(r2, ret), "grad_out == x: returned %.17g, separate %.17g", r2, ret);
            fz_expect_same("grad_out == x: grad", xa, grad, (size_t)n, f32);
            fz_expect_same("grad_out == x: loss", l2, loss, (size_t)n, f32);
        }
    }
    fz_free_all();
    return 0;
}
