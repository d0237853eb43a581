/*
 * libFuzzer harness: overlap family (csrc/overlap.c): fl_dice (Dice / Jaccard, MONAI
 * DiceLoss semantics).
 *
 * Per input: dtype, B (0..5), C (0..40: per-class scratch on the stack up to 16, malloc'ed
 * above), S (0..700), dense targets t or label maps, activation (none / sigmoid / softmax),
 * c0 (include_background), squared_pred, jaccard, batch, smooth_nr / smooth_dr, per-class
 * weights or NULL, grad_scale, alignment offsets of every array, tame or wild values; and
 * one call in eight with invalid arguments (negative sizes, c0 outside [0, C], both or
 * neither of t / labels, an unknown activation).
 *
 * Invariants, for every target this CPU runs:
 *   - no ASan / UBSan report; inputs unchanged;
 *   - invalid arguments: returns -3, writes nothing, *err_index = -1;
 *   - a label outside [0, C): returns -1, *err_index = the first such flat index b * S + s,
 *     and writes nothing ("labels are all checked before any output is written");
 *   - valid input: returns 0; a NaN in x or t at a kept class makes that sample's (or,
 *     with batch, that class's) f NaN, and with softmax (which couples the classes' p, not
 *     their targets) a NaN in x makes every kept class's f NaN;
 *   - one output only, or grad_out == x: the same bits;
 *   - without batch, a sample recomputed alone (B = 1) gives bitwise the same f and
 *     gradient (overlap.c: results depend only on the target's lane count);
 *   - tame inputs (|x| <= 20, t and label maps valid, weights in [0, 4], smooth_dr >= 1e-5):
 *     every target agrees with the baseline: f within 16 ulp (of the dtype) of
 *     |w| + |w - f|, the gradient within 16 ulp of the largest gradient magnitude of the
 *     sample (of the batch, with batch).
 */
#include "fuzz_common.h"

FZ_DECLARE_ALL(FL_DECL_DICE)

typedef int (*dice_f32)(int64_t, int64_t, int64_t, const float *, const float *, const int64_t *,
                        int, int64_t, int, int, double, double, int, const float *, double *,
                        float *, double, int64_t *);
typedef int (*dice_f64)(int64_t, int64_t, int64_t, const double *, const double *,
                        const int64_t *, int, int64_t, int, int, double, double, int,
                        const double *, double *, double *, double, int64_t *);

static const dice_f32 k_f32[FZ_N_TARGETS] = FZ_PTRS(fl_dice, f32);
static const dice_f64 k_f64[FZ_N_TARGETS] = FZ_PTRS(fl_dice, f64);

typedef struct {
    int f32, act, sq, jac, batch;
    int64_t c0;
    double snr, sdr, gs;
    const void *w;
} opts;

static int call(const opts *o, int tgt, int64_t B, int64_t C, int64_t S, const void *x,
                const void *t, const int64_t *labels, double *f, void *grad, int64_t *err)
{
    *err = 777;
    if (o->f32)
        return k_f32[tgt](B, C, S, x, t, labels, o->act, o->c0, o->sq, o->jac, o->snr, o->sdr,
                          o->batch, o->w, f, grad, o->gs, err);
    return k_f64[tgt](B, C, S, x, t, labels, o->act, o->c0, o->sq, o->jac, o->snr, o->sdr,
                      o->batch, o->w, f, grad, o->gs, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_targets_init();
    fz_in in;
    fz_init(&in, data, size);

    opts o;
    memset(&o, 0, sizeof o);
    const uint8_t flags = fz_u8(&in);
    o.f32 = flags & 1;
    const int tame = (flags >> 1) & 1, use_labels = (flags >> 2) & 1;
    o.act = (flags >> 3) % 3;
    o.sq = (flags >> 5) & 1;
    o.jac = (flags >> 6) & 1;
    o.batch = (flags >> 7) & 1;
    const size_t es = o.f32 ? sizeof(float) : sizeof(double);

    int64_t B = fz_range(&in, 0, 5), C = fz_range(&in, 0, 40), S = fz_range(&in, 0, 700);
    while (S > 1 && B * C * S > 60000) S /= 2;
    o.c0 = C > 0 && (fz_u8(&in) & 1) ? 1 : 0;
    if (fz_u8(&in) < 16) o.c0 = fz_range(&in, 0, C);
    const int64_t K = C - o.c0;
    size_t off[8];
    for (int k = 0; k < 8; k++) off[k] = fz_u8(&in) % 16;

    /* parameters */
    const uint8_t ps = fz_u8(&in);
    if (tame) {
        o.snr = ps & 1 ? 1e-5 : fz_unit(&in);
        o.sdr = ps & 2 ? 1e-5 : fmax(fz_unit(&in), 1e-5);
        o.gs = ps & 4 ? 1.0 : fz_uniform(&in, -2.0, 2.0);
    } else {
        o.snr = fz_wild(&in, 0);
        o.sdr = fz_wild(&in, 0);
        o.gs = fz_wild(&in, 0);
        if (!isfinite(o.snr)) o.snr = 1e-5;
        if (!isfinite(o.sdr)) o.sdr = 1e-5;
        if (!isfinite(o.gs)) o.gs = 1.0;
    }
    void *w = NULL;
    if ((ps & 8) && K > 0) {
        w = fz_alloc((size_t)K, es, off[0]);
        for (int64_t k = 0; k < K; k++) {
            fz_set(w, o.f32, (size_t)k, tame ? fz_uniform(&in, 0.0, 4.0) : fz_wild(&in, o.f32));
            if (!isfinite(fz_get(w, o.f32, (size_t)k))) fz_set(w, o.f32, (size_t)k, 1.0);
        }
    }
    o.w = w;

    static char ctx[240]; /* (static: fz_context outlives this call) */
    snprintf(ctx, sizeof ctx,
             "dice %s %s B=%lld C=%lld S=%lld %s act=%d c0=%lld sq=%d jac=%d batch=%d w=%d "
             "snr=%.17g sdr=%.17g gs=%.17g",
             o.f32 ? "f32" : "f64", tame ? "tame" : "wild", (long long)B, (long long)C,
             (long long)S, use_labels ? "labels" : "dense", o.act, (long long)o.c0, o.sq, o.jac,
             o.batch, w != NULL, o.snr, o.sdr, o.gs);
    fz_context = ctx;

    /* invalid arguments: -3, nothing written */
    if (fz_u8(&in) < 32) {
        const int kind = fz_u8(&in) % 7;
        int64_t Bi = B, Ci = C, Si = S, c0 = o.c0;
        int act = o.act;
        void *dummy = fz_alloc(4, es, 0);
        int64_t *ldummy = (int64_t *)fz_alloc(4, sizeof(int64_t), 0);
        const void *ti = NULL;
        const int64_t *li = ldummy; /* exactly one of t / labels unless kind 4 or 5 */
        switch (kind) {
        case 0: Bi = -1 - (int64_t)(fz_u32(&in) % 4); break;
        case 1: Ci = fz_u8(&in) & 1 ? -1 : INT64_MIN; break;
        case 2: Si = fz_u8(&in) & 1 ? -1 : INT64_MIN; break;
        case 3: c0 = fz_u8(&in) & 1 ? -1 : C + 1; break;
        case 4: ti = dummy; break;  /* both */
        case 5: li = NULL; break;   /* neither */
        default: act = fz_u8(&in) & 1 ? -1 : 3 + fz_u8(&in); break;
        }
        double *f = (double *)fz_alloc(4, sizeof(double), 0);
        void *g = fz_alloc(4, es, 0);
        const void *f0 = fz_dup(f, 4, sizeof(double), 0), *g0 = fz_dup(g, 4, es, 0);
        for (int tg = 0; tg < FZ_N_TARGETS; tg++) {
            if (!fz_enabled[tg]) continue;
            opts oi = o;
            oi.c0 = c0;
            oi.act = act;
            oi.w = NULL;
            int64_t err;
            const int r = call(&oi, tg, Bi, Ci, Si, dummy, ti, li, f, g, &err);
            FZ_CHECK(r == -3, "invalid arguments (kind %d) returned %d, not -3", kind, r);
            FZ_CHECK(err == -1, "invalid arguments: err_index %lld", (long long)err);
            fz_expect_unchanged("f_out after -3", f, f0, 4 * sizeof(double));
            fz_expect_unchanged("grad_out after -3", g, g0, 4 * es);
        }
        fz_free_all();
        return 0;
    }

    /* x, targets */
    const int64_t nx = B * C * S, nl = B * S;
    void *x = fz_alloc((size_t)nx, es, off[1]);
    void *t = use_labels ? NULL : fz_alloc((size_t)nx, es, off[2]);
    int64_t *labels = use_labels ? (int64_t *)fz_alloc((size_t)nl, sizeof(int64_t), off[2]) : NULL;
    const double xscale = pow(10.0, fz_uniform(&in, -1.0, 1.3));
    for (int64_t i = 0; i < nx; i++) {
        double v;
        if (tame) v = o.act == FL_ACT_NONE ? fz_unit(&in) : fz_uniform(&in, -1.0, 1.0) * xscale;
        else v = fz_wild(&in, o.f32);
        fz_set(x, o.f32, (size_t)i, v);
        if (t) fz_set(t, o.f32, (size_t)i, tame ? (fz_u8(&in) < 128 ? (double)(fz_u8(&in) & 1)
                                                                     : fz_unit(&in))
                                                : fz_wild(&in, o.f32));
    }
    const int allow_bad = !tame && (fz_u8(&in) & 3) == 0;
    int64_t want_err = -1;
    for (int64_t i = 0; i < nl && labels; i++) {
        const uint8_t s = fz_u8(&in);
        if (allow_bad && s < 8) {
            const int64_t bad[6] = {C, -1, INT64_MIN, INT64_MAX, C + 1, (int64_t)fz_u64(&in)};
            labels[i] = bad[fz_u8(&in) % 6];
        } else {
            labels[i] = C > 0 ? (int64_t)(fz_u32(&in) % (uint64_t)C) : 0;
        }
        if (want_err < 0 && (labels[i] < 0 || labels[i] >= C)) want_err = i;
    }
    const void *x0 = fz_dup(x, (size_t)nx, es, 0);
    const void *t0 = t ? fz_dup(t, (size_t)nx, es, 0) : NULL;
    const void *l0 = labels ? fz_dup(labels, (size_t)nl, sizeof(int64_t), 0) : NULL;
    const void *w0 = w ? fz_dup(w, (size_t)K, es, 0) : NULL;

    const int64_t nf = o.batch ? K : B * K; /* f values */
    double *fb = NULL;
    void *gb = NULL;
    static char ctx2[300]; /* (static: fz_context outlives this call) */
    for (int tg = 0; tg < FZ_N_TARGETS; tg++) {
        if (!fz_enabled[tg]) continue;
        snprintf(ctx2, sizeof ctx2, "%s target=%s", ctx, fz_target_name[tg]);
        fz_context = ctx2;
        /* (a bad label: the outputs must keep their contents, so they get some) */
        double *f = (double *)(want_err >= 0 ? fz_alloc : fz_alloc_out)((size_t)nf, sizeof(double), off[3]);
        void *g = (want_err >= 0 ? fz_alloc : fz_alloc_out)((size_t)nx, es, off[4]);
        const void *fs = want_err >= 0 ? fz_dup(f, (size_t)nf, sizeof(double), 0) : NULL;
        const void *gs0 = want_err >= 0 ? fz_dup(g, (size_t)nx, es, 0) : NULL;
        int64_t err;
        const int r = call(&o, tg, B, C, S, x, t, labels, f, g, &err);
        fz_expect_unchanged("input x", x, x0, (size_t)nx * es);
        if (t) fz_expect_unchanged("input t", t, t0, (size_t)nx * es);
        if (labels) fz_expect_unchanged("input labels", labels, l0, (size_t)nl * sizeof(int64_t));
        if (w) fz_expect_unchanged("input weight", w, w0, (size_t)K * es);
        if (want_err >= 0) {
            FZ_CHECK(r == -1 && err == want_err, "bad label: returned %d, err_index %lld; expected -1, %lld",
                     r, (long long)err, (long long)want_err);
            fz_expect_unchanged("f_out after a bad label", f, fs, (size_t)nf * sizeof(double));
            fz_expect_unchanged("grad_out after a bad label", g, gs0, (size_t)nx * es);
            continue;
        }
        FZ_CHECK(r == 0 && err == -1, "valid call returned %d, err_index %lld", r, (long long)err);

        /* NaN rule */
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t s = 0; s < S; s++) {
                    const size_t k = (size_t)((b * C + c) * S + s);
                    const int x_nan = isnan(fz_get(x, o.f32, k));
                    if (!x_nan && !(t && isnan(fz_get(t, o.f32, k)))) continue;
                    for (int64_t cc = o.c0; cc < C; cc++) {
                        /* softmax couples the classes' p (x), not their targets t */
                        if (cc != c && !(o.act == FL_ACT_SOFTMAX && x_nan)) continue;
                        const int64_t fi = o.batch ? cc - o.c0 : b * K + (cc - o.c0);
                        FZ_CHECK(isnan(f[fi]), "NaN %s at (b=%lld, c=%lld, s=%lld) but f[%lld] = %.17g",
                                 isnan(fz_get(x, o.f32, k)) ? "x" : "t", (long long)b,
                                 (long long)c, (long long)s, (long long)fi, f[fi]);
                    }
                }

        if (tg == FZ_BASELINE) {
            fb = f;
            gb = g;
        } else if (tame) {
            const double e = o.f32 ? FLT_EPSILON : DBL_EPSILON;
            for (int64_t i = 0; i < nf; i++) {
                const double wc = w ? fz_get(w, o.f32, (size_t)(i % K)) : 1.0;
                const double tol = 16 * e * (fabs(wc) + fabs(wc - fb[i])) + 1e-300;
                FZ_CHECK(fz_close(f[i], fb[i], tol), "f[%lld] = %.17g, baseline %.17g (tolerance %.3g)",
                         (long long)i, f[i], fb[i], tol);
            }
            const int64_t groups = o.batch ? 1 : B, per = o.batch ? nx : C * S;
            for (int64_t grp = 0; grp < groups; grp++) {
                double gm = 0.0;
                for (int64_t k = grp * per; k < (grp + 1) * per; k++)
                    if (isfinite(fz_get(gb, o.f32, (size_t)k))) gm = fmax(gm, fabs(fz_get(gb, o.f32, (size_t)k)));
                const double tol = 16 * e * gm + (o.f32 ? FLT_MIN : DBL_MIN);
                for (int64_t k = grp * per; k < (grp + 1) * per; k++) {
                    const double a = fz_get(g, o.f32, (size_t)k), bb = fz_get(gb, o.f32, (size_t)k);
                    FZ_CHECK(fz_close(a, bb, tol), "grad[%lld] = %.17g, baseline %.17g (tolerance %.3g)",
                             (long long)k, a, bb, tol);
                }
            }
        }

        /* one output, grad_out == x */
        const uint8_t modes = fz_u8(&in);
        int64_t err2;
        if (modes & 1) {
            double *f2 = (double *)fz_alloc_out((size_t)nf, sizeof(double), off[3]);
            FZ_CHECK(call(&o, tg, B, C, S, x, t, labels, f2, NULL, &err2) == 0, "f only: failed");
            fz_expect_same("f only: f_out", f2, f, (size_t)nf, 0);
        }
        if (modes & 2) {
            void *g2 = fz_alloc_out((size_t)nx, es, off[4]);
            FZ_CHECK(call(&o, tg, B, C, S, x, t, labels, NULL, g2, &err2) == 0, "grad only: failed");
            fz_expect_same("grad only: grad_out", g2, g, (size_t)nx, o.f32);
        }
        if (modes & 4) {
            void *xa = fz_dup(x, (size_t)nx, es, off[1]);
            double *f2 = (double *)fz_alloc_out((size_t)nf, sizeof(double), off[3]);
            FZ_CHECK(call(&o, tg, B, C, S, xa, t, labels, f2, xa, &err2) == 0, "grad_out == x: failed");
            fz_expect_same("grad_out == x: grad", xa, g, (size_t)nx, o.f32);
            fz_expect_same("grad_out == x: f", f2, f, (size_t)nf, 0);
        }
        if ((modes & 8) && !o.batch && B > 1) { /* a sample alone */
            const int64_t b = (int64_t)(fz_u8(&in) % (uint64_t)B);
            void *xs = fz_dup((const char *)x + (size_t)(b * C * S) * es, (size_t)(C * S), es, off[5]);
            void *ts = t ? fz_dup((const char *)t + (size_t)(b * C * S) * es, (size_t)(C * S), es, off[6]) : NULL;
            int64_t *ls = labels ? (int64_t *)fz_dup(labels + b * S, (size_t)S, sizeof(int64_t), off[6]) : NULL;
            double *f1 = (double *)fz_alloc_out((size_t)K, sizeof(double), off[3]);
            void *g1 = fz_alloc_out((size_t)(C * S), es, off[7]);
            FZ_CHECK(call(&o, tg, 1, C, S, xs, ts, ls, f1, g1, &err2) == 0, "sample alone: failed");
            char what[64];
            snprintf(what, sizeof what, "sample %lld alone: f", (long long)b);
            fz_expect_same(what, f1, f + b * K, (size_t)K, 0);
            snprintf(what, sizeof what, "sample %lld alone: grad", (long long)b);
            fz_expect_same(what, g1, (const char *)g + (size_t)(b * C * S) * es, (size_t)(C * S), o.f32);
        }
    }
    fz_free_all();
    return 0;
}
