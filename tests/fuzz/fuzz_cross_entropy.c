/*
 * libFuzzer harness: cross-entropy family (csrc/cross_entropy.c): fl_softmax_ce_index,
 * fl_softmax_ce_prob, fl_softmax_focal, fl_class_target_weight_sum.
 *
 * Per input: kernel, dtype, layout (outer, C, inner): C from 0 to ~80 (the transposed
 * small-row engine up to 32, the row engine above), sometimes up to 12000 (a single row
 * larger than the stack scratch), inner 1 (rows) or up to 24 (NCHW, the block engine);
 * alignment offsets of every array; labels (valid, ignore_index, or out of range: C, -1,
 * INT64_MIN, INT64_MAX, ...), ignore_index (-100, or a valid class), per-class weights /
 * alpha or NULL, label smoothing, gamma, grad_scale; tame or wild values (fuzz_common.h).
 *
 * Invariants, for every target this CPU runs:
 *   - no ASan / UBSan report; inputs unchanged;
 *   - *err_index is the flat sample index of the first label outside [0, C) that is not
 *     ignore_index, -1 if none (fl_class_target_weight_sum then returns 0);
 *   - fl_class_target_weight_sum: the exact sum of weight[label] (count) within 4 eps;
 *   - with valid labels: ignored samples have loss 0 and gradient 0; a non-ignored row with
 *     a NaN or +inf logit, or all logits -inf, has NaN loss and all-NaN gradient; a NaN
 *     in a probability-target row makes its loss NaN;
 *   - the return value is the sum of the written losses, within 8 double eps of sum |loss|;
 *   - one / no output: the same return value and bits; grad_out == x: the same bits;
 *   - layout independence (cross_entropy.c: "a sample gets the same bits in the (N, C)
 *     and (N, C, d...) layouts, alone or in a batch, at any position"): up to four samples
 *     recomputed alone as a (1, C, 1) call give bitwise the same loss and gradient;
 *   - tame inputs (finite logits up to ~300 in magnitude, a few -inf, weights in [0, 4],
 *     targets in [0, 1], gamma in [0, 5]): every target agrees with the baseline within
 *     16 ulp (of the dtype) of W (2 max|x_row| + log C + 1) for the loss, W the sum of
 *     the row's loss coefficients, and within 16 ulp of (max |grad_row| + |gs| W) for the
 *     gradient.
 */
#include "fuzz_common.h"

FZ_DECLARE_ALL(FL_DECL_CLASS_TARGET_WEIGHT_SUM)
FZ_DECLARE_ALL(FL_DECL_CE_INDEX)
FZ_DECLARE_ALL(FL_DECL_CE_PROB)
FZ_DECLARE_ALL(FL_DECL_SOFTMAX_FOCAL)

typedef double (*cws_f32)(int64_t, const int64_t *, int64_t, const float *, int64_t, int64_t *);
typedef double (*cws_f64)(int64_t, const int64_t *, int64_t, const double *, int64_t, int64_t *);
typedef double (*cei_f32)(int64_t, int64_t, int64_t, const float *, const int64_t *,
                          const float *, int64_t, double, float *, float *, double, int64_t *);
typedef double (*cei_f64)(int64_t, int64_t, int64_t, const double *, const int64_t *,
                          const double *, int64_t, double, double *, double *, double, int64_t *);
typedef double (*cep_f32)(int64_t, int64_t, int64_t, const float *, const float *, const float *,
                          double, float *, float *, double);
typedef double (*cep_f64)(int64_t, int64_t, int64_t, const double *, const double *,
                          const double *, double, double *, double *, double);
typedef double (*sf_f32)(int64_t, int64_t, int64_t, const float *, const int64_t *, const float *,
                         double, int64_t, float *, float *, double, int64_t *);
typedef double (*sf_f64)(int64_t, int64_t, int64_t, const double *, const int64_t *,
                         const double *, double, int64_t, double *, double *, double, int64_t *);

static const cws_f32 k_cws_f32[FZ_N_TARGETS] = FZ_PTRS(fl_class_target_weight_sum, f32);
static const cws_f64 k_cws_f64[FZ_N_TARGETS] = FZ_PTRS(fl_class_target_weight_sum, f64);
static const cei_f32 k_cei_f32[FZ_N_TARGETS] = FZ_PTRS(fl_softmax_ce_index, f32);
static const cei_f64 k_cei_f64[FZ_N_TARGETS] = FZ_PTRS(fl_softmax_ce_index, f64);
static const cep_f32 k_cep_f32[FZ_N_TARGETS] = FZ_PTRS(fl_softmax_ce_prob, f32);
static const cep_f64 k_cep_f64[FZ_N_TARGETS] = FZ_PTRS(fl_softmax_ce_prob, f64);
static const sf_f32 k_sf_f32[FZ_N_TARGETS] = FZ_PTRS(fl_softmax_focal, f32);
static const sf_f64 k_sf_f64[FZ_N_TARGETS] = FZ_PTRS(fl_softmax_focal, f64);

enum { K_INDEX = 0, K_PROB = 1, K_FOCAL = 2, K_WSUM = 3 };
static const char *const kname[4] = {"softmax_ce_index", "softmax_ce_prob", "softmax_focal",
                                     "class_target_weight_sum"};

typedef struct {
    int kernel, f32;
    int64_t outer, C, inner;
    const int64_t *labels;
    const void *t, *w;
    int64_t ignore_index;
    double eps, gamma, gs;
} call_args;

/* one kernel call; x, labels, t may differ from a's (alias / single-sample calls) */
static double call(const call_args *a, int tgt, int64_t outer, int64_t inner, const void *x,
                   const int64_t *labels, const void *t, void *loss, void *grad, int64_t *err)
{
    *err = -1;
    const int64_t C = a->C;
    switch (a->kernel) {
    case K_INDEX:
        if (a->f32)
            return k_cei_f32[tgt](outer, C, inner, x, labels, a->w, a->ignore_index, a->eps, loss,
                                  grad, a->gs, err);
        return k_cei_f64[tgt](outer, C, inner, x, labels, a->w, a->ignore_index, a->eps, loss,
                              grad, a->gs, err);
    case K_PROB:
        if (a->f32)
            return k_cep_f32[tgt](outer, C, inner, x, t, a->w, a->eps, loss, grad, a->gs);
        return k_cep_f64[tgt](outer, C, inner, x, t, a->w, a->eps, loss, grad, a->gs);
    default:
        if (a->f32)
            return k_sf_f32[tgt](outer, C, inner, x, labels, a->w, a->gamma, a->ignore_index, loss,
                                 grad, a->gs, err);
        return k_sf_f64[tgt](outer, C, inner, x, labels, a->w, a->gamma, a->ignore_index, loss,
                             grad, a->gs, err);
    }
}

static int64_t pick_label(fz_in *in, int64_t C, int64_t ignore_index, int allow_bad)
{
    const uint8_t s = fz_u8(in);
    if (s < 24) return ignore_index;
    if (allow_bad && s < 32) {
        const int64_t bad[8] = {C, C + 1, -1, -2, INT64_MIN, INT64_MAX, ignore_index - 1,
                                (int64_t)fz_u64(in)};
        return bad[fz_u8(in) % 8];
    }
    return C > 0 ? (int64_t)(fz_u32(in) % (uint64_t)C) : ignore_index;
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
    a.kernel = (flags >> 2) & 3;
    const size_t es = a.f32 ? sizeof(float) : sizeof(double);

    /* layout */
    int64_t outer, C, inner;
    const uint8_t lay = fz_u8(&in);
    C = lay < 8 ? fz_range(&in, 1000, 12000) : lay < 16 ? 0 : fz_range(&in, 1, 80);
    inner = (lay & 32) ? fz_range(&in, 1, 24) : 1;
    outer = fz_range(&in, 0, 70);
    while (outer > 0 && outer * C * inner > 60000) outer /= 2;
    while (inner > 1 && outer * C * inner > 60000) inner /= 2;
    a.outer = outer;
    a.C = C;
    a.inner = inner;
    const int64_t ns = outer * inner, nx = ns * C;
    size_t off[8];
    for (int k = 0; k < 8; k++) off[k] = fz_u8(&in) % 16;

    /* labels and ignore_index */
    const uint8_t ls = fz_u8(&in);
    a.ignore_index = ls < 160 ? -100 : ls < 200 && C > 0 ? (int64_t)(fz_u8(&in) % C)
                                     : (int64_t)fz_u64(&in);
    const int allow_bad = (ls & 7) == 0; /* one input in eight has bad labels */
    int64_t *labels = (int64_t *)fz_alloc((size_t)ns, sizeof(int64_t), off[0]);
    for (int64_t i = 0; i < ns; i++) labels[i] = pick_label(&in, C, a.ignore_index, allow_bad);
    a.labels = labels;
    const int64_t *labels0 = (const int64_t *)fz_dup(labels, (size_t)ns, sizeof(int64_t), 0);

    /* per-class weights (alpha for focal) */
    void *w = NULL;
    if (fz_u8(&in) & 1) {
        w = fz_alloc((size_t)C, es, off[1]);
        for (int64_t c = 0; c < C; c++) {
            double v = tame ? (fz_u8(&in) < 16 ? 0.0 : fz_uniform(&in, 0.0, 4.0)) : fz_wild(&in, a.f32);
            fz_set(w, a.f32, (size_t)c, v);
            if (!isfinite(fz_get(w, a.f32, (size_t)c))) /* NaN / inf weights: not checked */
                fz_set(w, a.f32, (size_t)c, 1.0);
        }
    }
    a.w = w;

    /* parameters (the contract's domain) */
    const uint8_t ps = fz_u8(&in);
    a.eps = ps < 128 ? 0.0 : ps < 144 ? 1.0 : fz_unit(&in);
    a.gamma = ps & 1 ? (double)(fz_u8(&in) % 4) : fz_uniform(&in, 0.0, tame ? 5.0 : 50.0);
    a.gs = (ps & 6) ? 1.0 : tame ? fz_uniform(&in, -2.0, 2.0) : fz_wild(&in, 0);
    if (!isfinite(a.gs)) a.gs = 1.0;

    /* logits, probability targets */
    void *x = fz_alloc((size_t)nx, es, off[2]);
    void *t = a.kernel == K_PROB ? fz_alloc((size_t)nx, es, off[3]) : NULL;
    const double xscale = pow(10.0, fz_uniform(&in, -1.0, 2.0));
    for (int64_t i = 0; i < nx; i++) {
        double v;
        if (tame) {
            const uint8_t s = fz_u8(&in);
            v = s == 0 ? -INFINITY : fz_uniform(&in, -3.0, 3.0) * xscale;
        } else {
            v = fz_wild(&in, a.f32);
        }
        fz_set(x, a.f32, (size_t)i, v);
        if (t) {
            double tv = tame ? (fz_u8(&in) < 64 ? 0.0 : fz_unit(&in)) : fz_wild(&in, a.f32);
            fz_set(t, a.f32, (size_t)i, tv);
        }
    }
    a.t = t;
    const void *x0 = fz_dup(x, (size_t)nx, es, 0);
    const void *t0 = t ? fz_dup(t, (size_t)nx, es, 0) : NULL;
    const void *w0 = w ? fz_dup(w, (size_t)C, es, 0) : NULL;

    /* the first bad label */
    int64_t want_err = -1;
    if (a.kernel != K_PROB)
        for (int64_t i = 0; i < ns && want_err < 0; i++)
            if (labels[i] != a.ignore_index && (labels[i] < 0 || labels[i] >= C)) want_err = i;

    static char ctx[200]; /* (static: fz_context outlives this call) */
    snprintf(ctx, sizeof ctx,
             "%s %s %s outer=%lld C=%lld inner=%lld ignore=%lld w=%d eps=%.17g gamma=%.17g gs=%.17g",
             kname[a.kernel], a.f32 ? "f32" : "f64", tame ? "tame" : "wild", (long long)outer,
             (long long)C, (long long)inner, (long long)a.ignore_index, w != NULL, a.eps, a.gamma,
             a.gs);
    fz_context = ctx;

    if (a.kernel == K_WSUM) {
        fz_sum sum = {0};
        for (int64_t i = 0; i < ns && want_err < 0; i++) {
            if (labels[i] == a.ignore_index) continue;
            fz_sum_add(&sum, w ? fz_get(w, a.f32, (size_t)labels[i]) : 1.0);
        }
        for (int tg = 0; tg < FZ_N_TARGETS; tg++) {
            if (!fz_enabled[tg]) continue;
            int64_t err = 12345;
            const double r = a.f32 ? k_cws_f32[tg](ns, labels, C, w, a.ignore_index, &err)
                                   : k_cws_f64[tg](ns, labels, C, w, a.ignore_index, &err);
            FZ_CHECK(err == want_err, "%s: err_index %lld, expected %lld", fz_target_name[tg],
                     (long long)err, (long long)want_err);
            if (want_err >= 0)
                FZ_CHECK(r == 0.0, "%s: bad label but returned %.17g", fz_target_name[tg], r);
            else
                fz_check_sum(r, &sum, 4);
            fz_expect_unchanged("input labels", labels, labels0, (size_t)ns * sizeof(int64_t));
        }
        fz_free_all();
        return 0;
    }

    void *bl = NULL, *bg = NULL;
    static char ctx2[260]; /* (static: fz_context outlives this call) */
    for (int tg = 0; tg < FZ_N_TARGETS; tg++) {
        if (!fz_enabled[tg]) continue;
        snprintf(ctx2, sizeof ctx2, "%s target=%s", ctx, fz_target_name[tg]);
        fz_context = ctx2;
        void *loss = fz_alloc_out((size_t)ns, es, off[4]), *grad = fz_alloc_out((size_t)nx, es, off[5]);
        int64_t err;
        const double ret = call(&a, tg, outer, inner, x, labels, t, loss, grad, &err);
        fz_expect_unchanged("input x", x, x0, (size_t)nx * es);
        if (t) fz_expect_unchanged("input t", t, t0, (size_t)nx * es);
        if (w) fz_expect_unchanged("input weight", w, w0, (size_t)C * es);
        fz_expect_unchanged("input labels", labels, labels0, (size_t)ns * sizeof(int64_t));
        FZ_CHECK(err == want_err, "err_index %lld, expected %lld (label there: %lld)",
                 (long long)err, (long long)want_err,
                 (long long)(err >= 0 && err < ns ? labels[err] : 0));
        if (want_err >= 0) continue; /* outputs and return value unspecified */

        fz_sum sum = {0};
        for (int64_t o = 0; o < outer; o++) {
            for (int64_t s = 0; s < inner; s++) {
                const int64_t i = o * inner + s;
                const double l = fz_get(loss, a.f32, (size_t)i);
                const int ignored = a.kernel != K_PROB && labels[i] == a.ignore_index;
                int has_nan = 0, has_pinf = 0, all_ninf = C > 0, t_nan = 0;
                for (int64_t c = 0; c < C; c++) {
                    const double v = fz_get(x, a.f32, (size_t)((o * C + c) * inner + s));
                    has_nan |= isnan(v);
                    has_pinf |= isinf(v) && v > 0;
                    all_ninf &= isinf(v) && v < 0;
                    if (t) t_nan |= isnan(fz_get(t, a.f32, (size_t)((o * C + c) * inner + s)));
                }
                if (ignored) {
                    FZ_CHECK(l == 0.0, "sample %lld is ignored but its loss is %.17g", (long long)i, l);
                } else if (has_nan || has_pinf || all_ninf || t_nan) {
                    FZ_CHECK(isnan(l), "sample %lld: row with %s, loss %.17g (not NaN)", (long long)i,
                             has_nan ? "NaN" : has_pinf ? "+inf" : all_ninf ? "only -inf" : "NaN target",
                             l);
                }
                for (int64_t c = 0; c < C; c++) {
                    const double g = fz_get(grad, a.f32, (size_t)((o * C + c) * inner + s));
                    if (ignored)
                        FZ_CHECK(g == 0.0, "sample %lld is ignored but grad[class %lld] = %.17g",
                                 (long long)i, (long long)c, g);
                    else if (has_nan || has_pinf || all_ninf)
                        FZ_CHECK(isnan(g), "sample %lld: row with %s, grad[class %lld] = %.17g",
                                 (long long)i, has_nan ? "NaN" : has_pinf ? "+inf" : "only -inf",
                                 (long long)c, g);
                }
                fz_sum_loss(&sum, l);
            }
        }
        fz_check_sum(ret, &sum, 8);

        if (tg == FZ_BASELINE) {
            bl = loss;
            bg = grad;
        } else if (tame) {
            const double e = a.f32 ? FLT_EPSILON : DBL_EPSILON;
            for (int64_t o = 0; o < outer; o++) {
                for (int64_t s = 0; s < inner; s++) {
                    const int64_t i = o * inner + s;
                    double xm = 0.0, W = 0.0, gm = 0.0;
                    int64_t y = a.kernel != K_PROB ? labels[i] : -1;
                    if (y == a.ignore_index && a.kernel != K_PROB) y = -1;
                    for (int64_t c = 0; c < C; c++) {
                        const size_t k = (size_t)((o * C + c) * inner + s);
                        const double v = fz_get(x, a.f32, k);
                        if (isfinite(v)) xm = fmax(xm, fabs(v));
                        const double wc = w ? fabs(fz_get(w, a.f32, (size_t)c)) : 1.0;
                        if (a.kernel == K_PROB)
                            W += wc * ((1 - a.eps) * fabs(fz_get(t, a.f32, k)) + a.eps / (double)C);
                        else if (a.kernel == K_INDEX)
                            W += wc * (a.eps / (double)C + (c == y ? 1 - a.eps : 0.0));
                        else if (c == y)
                            W += wc * (1 + a.gamma);
                        gm = fmax(gm, fabs(fz_get(bg, a.f32, k)));
                    }
                    const double sl = W * (2 * xm + log((double)(C > 1 ? C : 1)) + 1);
                    const double lb = fz_get(bl, a.f32, (size_t)i), lt = fz_get(loss, a.f32, (size_t)i);
                    FZ_CHECK(fz_close(lt, lb, 16 * e * sl),
                             "sample %lld: loss %.17g, baseline %.17g (tolerance %.3g)", (long long)i,
                             lt, lb, 16 * e * sl);
                    const double tgr = 16 * e * (gm + fabs(a.gs) * W);
                    for (int64_t c = 0; c < C; c++) {
                        const size_t k = (size_t)((o * C + c) * inner + s);
                        const double gb = fz_get(bg, a.f32, k), gt = fz_get(grad, a.f32, k);
                        FZ_CHECK(fz_close(gt, gb, tgr),
                                 "sample %lld class %lld: grad %.17g, baseline %.17g (tolerance %.3g)",
                                 (long long)i, (long long)c, gt, gb, tgr);
                    }
                }
            }
        }

        /* one / no output, grad_out == x */
        const uint8_t modes = fz_u8(&in);
        int64_t err2;
        if (modes & 1) {
            void *l2 = fz_alloc_out((size_t)ns, es, off[4]);
            const double r2 = call(&a, tg, outer, inner, x, labels, t, l2, NULL, &err2);
            FZ_CHECK(fz_same_f64(r2, ret), "loss only: returned %.17g, with both outputs %.17g", r2, ret);
            fz_expect_same("loss only: loss_out", l2, loss, (size_t)ns, a.f32);
        }
        if (modes & 2) {
            void *g2 = fz_alloc_out((size_t)nx, es, off[5]);
            const double r2 = call(&a, tg, outer, inner, x, labels, t, NULL, g2, &err2);
            FZ_CHECK(fz_same_f64(r2, ret), "grad only: returned %.17g, with both outputs %.17g", r2, ret);
            fz_expect_same("grad only: grad_out", g2, grad, (size_t)nx, a.f32);
        }
        if (modes & 4) {
            const double r2 = call(&a, tg, outer, inner, x, labels, t, NULL, NULL, &err2);
            FZ_CHECK(fz_same_f64(r2, ret), "no output: returned %.17g, with both outputs %.17g", r2, ret);
        }
        if (modes & 8) {
            void *xa = fz_dup(x, (size_t)nx, es, off[2]), *l2 = fz_alloc_out((size_t)ns, es, off[4]);
            const double r2 = call(&a, tg, outer, inner, xa, labels, t, l2, xa, &err2);
            FZ_CHECK(fz_same_f64(r2, ret), "grad_out == x: returned %.17g, separate %.17g", r2, ret);
            fz_expect_same("grad_out == x: grad", xa, grad, (size_t)nx, a.f32);
            fz_expect_same("grad_out == x: loss", l2, loss, (size_t)ns, a.f32);
        }

        /* layout independence: samples alone */
        const int nsingle = ns > 0 && C > 0 ? (int)(modes >> 4) % 5 : 0;
        for (int k = 0; k < nsingle && fz_nbufs < FZ_MAX_BUFS - 8; k++) {
            const int64_t i = (int64_t)(fz_u32(&in) % (uint64_t)ns), o = i / inner, s = i % inner;
            void *xr = fz_alloc((size_t)C, es, off[6]), *gr = fz_alloc_out((size_t)C, es, off[7]);
            void *tr = t ? fz_alloc((size_t)C, es, off[3]) : NULL;
            for (int64_t c = 0; c < C; c++) {
                const size_t src = (size_t)((o * C + c) * inner + s);
                fz_set(xr, a.f32, (size_t)c, fz_get(x, a.f32, src));
                if (t) fz_set(tr, a.f32, (size_t)c, fz_get(t, a.f32, src));
            }
            void *lr = fz_alloc_out(1, es, 0);
            const double r1 = call(&a, tg, 1, 1, xr, labels + i, tr, lr, gr, &err2);
            const double lb = fz_get(loss, a.f32, (size_t)i), l1 = fz_get(lr, a.f32, 0);
            FZ_CHECK(fz_same_f64(l1, lb), "sample %lld alone: loss %.17g, in the batch %.17g",
                     (long long)i, l1, lb);
            FZ_CHECK(r1 == l1 || (isnan(r1) && isnan(l1)), /* (a -0 loss sums to +0) */
                     "sample %lld alone: returned %.17g, loss_out %.17g",
                     (long long)i, r1, l1);
            for (int64_t c = 0; c < C; c++) {
                const double g1 = fz_get(gr, a.f32, (size_t)c);
                const double gb = fz_get(grad, a.f32, (size_t)((o * C + c) * inner + s));
                FZ_CHECK(fz_same_f64(g1, gb), "sample %lld alone: grad[class %lld] %.17g, in the batch %.17g",
                         (long long)i, (long long)c, g1, gb);
            }
        }
    }
    fz_free_all();
    return 0;
}
