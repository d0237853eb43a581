/*
 * vecmath.h: vector exp / log / log1p / softplus / sigmoid for float32 and float64,
 * written once, compiled for whatever target the including translation unit is built for.
 *
 * How it is built
 * ---------------
 * The code uses GCC/Clang vector extensions: fl_v_f32 is `float __attribute__((vector_size
 * (FL_VEC_BYTES)))`, so the same source becomes SSE2 (16 bytes, the x86-64 baseline),
 * AVX2+FMA (32), AVX-512F (64), aarch64 NEON (16), or plain C lanes on anything else.
 * FL_VEC_BYTES defaults from the TU's target macros (__AVX512F__ -> 64, __AVX2__ -> 32,
 * else 16); an includer may define it first (e.g. 32 in an AVX-512 TU).  The target is
 * chosen by per-file flags (-mavx2 -mfma, -mavx512f -mavx512bw -mavx512dq -mavx512vl)
 * or `#pragma GCC target` before the #include.  Everything is `static`, so TUs built
 * for different targets can be linked together.  One target per TU (include guard).
 * A handful of helpers (fl_fma, fl_select, fl_any, masked tails, max/min) use target
 * intrinsics where they are clearly better; every other line is target-independent.
 *
 * Naming: the dtype comes last (fl_exp_u1_f32, fl_v_f64, fl_lanes_f32), the accuracy
 * before it, so a kernel template can write FL(fl_exp_u1)(x) and FL(fl_v) with the FL()
 * macro of real.h -- the family files are templates over the dtype.  `_uN` = maximum
 * error N ulp (SLEEF's convention, with N in whole ulps).
 *
 * API (T = f32 | f64; V = fl_v_T; every function is static inline)
 * ---
 *   types      fl_v_f32, fl_v_f64 (lanes), fl_vi_f32 / fl_vi_f64 (int32 / int64 lanes, and
 *              the type of a comparison: all-ones / all-zeros per lane)
 *   constants  fl_lanes_f32, fl_lanes_f64, FL_VEC_BYTES, FL_VEC_TARGET ("sse2", "avx2",
 *              "avx512", "neon", "generic"), FL_HAVE_FMA
 *   memory     fl_load_T(p), fl_store_T(p, v)                    unaligned
 *              fl_load_partial_T(p, n, fill), fl_store_partial_T(p, v, n)
 *                  tails: touch only p[0..n), other lanes = fill (n >= 0)
 *   lanes      fl_set1_T(c), fl_fma_T(a, b, c), fl_abs_T, fl_max_T, fl_min_T,
 *              fl_select_T(mask, a, b), fl_any_T(mask), fl_hsum_T, fl_hmax_T
 *              fl_widen_f32(v, w[2]), fl_narrow_f64(lo, hi)   float32 <-> float64 lanes
 *   math       measured max error (float32: all 2^32 inputs; float64: 6M inputs incl.
 *              +-65536 ulps around every threshold), unfused (sse2) / fused (avx2, avx512):
 *     V fl_exp_u1_T(V x)              exp                      f32 0.92/0.90  f64 0.93/0.92
 *     V fl_log_u1_T(V x)              log                      f32 0.88/0.84  f64 0.82/0.82
 *     V fl_log1p_u1_T(V x)            log1p                    f32 0.91/0.84  f64 0.88/0.87
 *     V fl_softplus_u1_T(V x)         log(1 + e^x), stable     f32 0.94/0.85  f64 0.83/0.82
 *     V fl_sigmoid_u1_T(V x)          1 / (1 + e^-x), stable   f32 0.84/0.82  f64 0.82/0.84
 *     V fl_softplus_sigmoid_u1_T(V x, V *sig)   both from one exp (same bits as above)
 *     V fl_exp_negabs_T(V x, V *lo); V fl_softplus_from_exp_u1_T(V x, V hi, V lo);
 *     V fl_sigmoid_from_exp_u1_T(V x, V hi, V lo)   the same, split in two stages for
 *                                     software pipelining / blocking (see there)
 *     V fl_logistic_T(V x, V *L, V *r, V *er)    exp(-|x|), softplus(-|x|), sigmoid(+-|x|)
 *                                     with one range check (see there)
 *     V fl_logistic_u2_f32(V x, V *L, V *r, V *er)  the same with half the operations,
 *                                     L, er within 2 ulp, r within 1 (see there)
 *   Log-sum-exp: m = fl_hmax_T of fl_max_T over the row, then fl_exp_u1_T(x - m) summed
 *   (fl_hsum_T), then m + log(sum) -- or an online max/rescale with the same pieces.
 *
 * Floating-point rules
 * --------------------
 * - Never -ffast-math (refused below).  Build with -ffp-contract=off, as setup.py does:
 *   fusing is decided here, by fl_fma_*, which is a real fused multiply-add where the
 *   target has one (FMA3 with __FMA__, AVX-512F at 64 bytes, aarch64) and a*b+c (two
 *   roundings) elsewhere.  Note GCC's -mavx512f does not define __FMA__: add -mfma when
 *   an AVX-512 TU sets FL_VEC_BYTES to 32 or 16.  The stated bounds hold for fused and
 *   unfused targets; their results differ in the last bit for some inputs.
 * - IEEE special values are exact (see each function); subnormal inputs and outputs are
 *   handled (gradual underflow), assuming the FPU is not in flush-to-zero / DAZ mode.
 * - Round-to-nearest is assumed (the reductions use the 1.5*2^p "shift" rounding trick).
 * - No spurious "invalid", "divide-by-zero" or "overflow" flags: quiet NaN and infinite
 *   inputs raise none, finite inputs raise only what the result calls for, and the tail
 *   fill values 0 and 1 are harmless for every function.  "underflow" may be raised by
 *   intermediates for tiny arguments (f*f in log1p(1e-30)) even when the result is
 *   normal (NumPy ignores underflow by default).  log(0) does not raise "divide-by-zero"
 *   and log(<0) does not raise "invalid" (the results are blended in).  fl_max/fl_min
 *   follow x86 MAXPS semantics and raise "invalid" on a NaN operand there.
 * - Each function has a fast body with no blends; inputs that need care (|x| large,
 *   subnormal, zero, negative, inf, NaN, depending on the function) are detected with
 *   integer compares on the bit patterns, and a vector holding any of them takes a
 *   separate, out-of-line path that blends the special results in.  Both paths compute
 *   the same bits for ordinary lanes, so a lane's result does not depend on its
 *   neighbours, and a scalar (a one-lane partial load) gets the same bits as in a vector.
 * - FL_VEC_FORCE_GENERIC (defined before the #include) disables all intrinsics: the
 *   plain vector-extension path, which the tests also run.
 */
#ifndef FASTLOSS_VECMATH_H
#define FASTLOSS_VECMATH_H

#if !defined(__GNUC__)
#error "vecmath.h needs GCC or Clang (vector extensions)"
#endif
#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "vecmath.h must not be compiled with -ffast-math / -ffinite-math-only"
#endif
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "vecmath.h assumes a little-endian target"
#endif

#include <stdint.h>

/* ------------------------------------------------------------------ target selection */

#ifndef FL_VEC_BYTES
#if defined(__AVX512F__)
#define FL_VEC_BYTES 64
#elif defined(__AVX2__)
#define FL_VEC_BYTES 32
#else
#define FL_VEC_BYTES 16
#endif
#endif

#if FL_VEC_BYTES != 16 && FL_VEC_BYTES != 32 && FL_VEC_BYTES != 64
#error "FL_VEC_BYTES must be 16, 32 or 64"
#endif

/* FL__ISA: which intrinsics the helpers may use (0 = none, plain vector extensions). */
#define FL__ISA_GENERIC 0
#define FL__ISA_SSE2 1
#define FL__ISA_AVX2 2
#define FL__ISA_AVX512 3
#define FL__ISA_NEON 4

#if defined(FL_VEC_FORCE_GENERIC) /* no intrinsics: as on non-x86, non-aarch64 */
#define FL__ISA FL__ISA_GENERIC
#define FL_VEC_TARGET "generic"
#elif defined(__AVX512F__) && FL_VEC_BYTES == 64
#define FL__ISA FL__ISA_AVX512
#define FL_VEC_TARGET "avx512"
#elif defined(__AVX2__) && FL_VEC_BYTES == 32
#define FL__ISA FL__ISA_AVX2
#define FL_VEC_TARGET "avx2"
#elif defined(__SSE2__) && FL_VEC_BYTES == 16
#define FL__ISA FL__ISA_SSE2
#define FL_VEC_TARGET "sse2"
#elif defined(__aarch64__) && defined(__ARM_NEON) && FL_VEC_BYTES == 16
#define FL__ISA FL__ISA_NEON
#define FL_VEC_TARGET "neon"
#else
#define FL__ISA FL__ISA_GENERIC
#define FL_VEC_TARGET "generic"
#endif

#if FL__ISA == FL__ISA_AVX512 || FL__ISA == FL__ISA_AVX2 || FL__ISA == FL__ISA_SSE2
#include <immintrin.h>
#elif FL__ISA == FL__ISA_NEON
#include <arm_neon.h>
#endif

/* FL_HAVE_FMA: 1 when fl_fma_* is a fused multiply-add (one rounding). */
#if FL__ISA == FL__ISA_AVX512 || FL__ISA == FL__ISA_NEON || \
    ((FL__ISA == FL__ISA_AVX2 || FL__ISA == FL__ISA_SSE2) && defined(__FMA__))
#define FL_HAVE_FMA 1
#else
#define FL_HAVE_FMA 0
#endif

/* ---------------------------------------------------------------------------- types */

/* fl_v_f32: float lanes; fl_vi_f32: int32 lanes of the same count (also the type of a
 * comparison of two fl_v_f32: all-ones / all-zeros per lane).  Same for f64 / int64. */
typedef float fl_v_f32 __attribute__((vector_size(FL_VEC_BYTES)));
typedef double fl_v_f64 __attribute__((vector_size(FL_VEC_BYTES)));
typedef int32_t fl_vi_f32 __attribute__((vector_size(FL_VEC_BYTES)));
typedef int64_t fl_vi_f64 __attribute__((vector_size(FL_VEC_BYTES)));
typedef uint32_t fl__vu32 __attribute__((vector_size(FL_VEC_BYTES)));
typedef uint64_t fl__vu64 __attribute__((vector_size(FL_VEC_BYTES)));

enum { fl_lanes_f32 = FL_VEC_BYTES / 4, fl_lanes_f64 = FL_VEC_BYTES / 8 };

#define FL__INLINE static inline __attribute__((always_inline))
#define FL__COLD static __attribute__((noinline, cold, unused))
#define FL__LIKELY(c) __builtin_expect(!!(c), 1)
#define FL__UNLIKELY(c) __builtin_expect(!!(c), 0)

/* broadcast constants (short names for the polynomial coefficients) */
#define FL__K32(c) fl_set1_f32(c)
#define FL__K64(c) fl_set1_f64(c)

/* bit casts (same-size vector casts reinterpret the bits) */
#define FL__I32(v) ((fl_vi_f32)(v))
#define FL__F32(v) ((fl_v_f32)(v))
#define FL__U32(v) ((fl__vu32)(v))
#define FL__I64(v) ((fl_vi_f64)(v))
#define FL__F64(v) ((fl_v_f64)(v))
#define FL__U64(v) ((fl__vu64)(v))

/* ------------------------------------------------------------------- basic helpers */

FL__INLINE fl_v_f32 fl_set1_f32(float c)
{
    fl_v_f32 v;
    for (int i = 0; i < fl_lanes_f32; i++) v[i] = c;
    return v;
}
FL__INLINE fl_v_f64 fl_set1_f64(double c)
{
    fl_v_f64 v;
    for (int i = 0; i < fl_lanes_f64; i++) v[i] = c;
    return v;
}
FL__INLINE fl_vi_f32 fl__set1_i32(int32_t c)
{
    fl_vi_f32 v;
    for (int i = 0; i < fl_lanes_f32; i++) v[i] = c;
    return v;
}
FL__INLINE fl_vi_f64 fl__set1_i64(int64_t c)
{
    fl_vi_f64 v;
    for (int i = 0; i < fl_lanes_f64; i++) v[i] = c;
    return v;
}

/* Unaligned full-vector load / store. */
FL__INLINE fl_v_f32 fl_load_f32(const float *p)
{
    fl_v_f32 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
FL__INLINE fl_v_f64 fl_load_f64(const double *p)
{
    fl_v_f64 v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}
FL__INLINE void fl_store_f32(float *p, fl_v_f32 v) { __builtin_memcpy(p, &v, sizeof v); }
FL__INLINE void fl_store_f64(double *p, fl_v_f64 v) { __builtin_memcpy(p, &v, sizeof v); }

/* fl_fma_*(a, b, c) = a * b + c: fused (one rounding) when FL_HAVE_FMA, else two. */
FL__INLINE fl_v_f32 fl_fma_f32(fl_v_f32 a, fl_v_f32 b, fl_v_f32 c)
{
#if FL__ISA == FL__ISA_AVX512
    return (fl_v_f32)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif FL__ISA == FL__ISA_AVX2 && FL_HAVE_FMA
    return (fl_v_f32)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#elif FL__ISA == FL__ISA_SSE2 && FL_HAVE_FMA
    return (fl_v_f32)_mm_fmadd_ps((__m128)a, (__m128)b, (__m128)c);
#elif FL__ISA == FL__ISA_NEON
    return (fl_v_f32)vfmaq_f32((float32x4_t)c, (float32x4_t)a, (float32x4_t)b);
#else
    return a * b + c;
#endif
}
FL__INLINE fl_v_f64 fl_fma_f64(fl_v_f64 a, fl_v_f64 b, fl_v_f64 c)
{
#if FL__ISA == FL__ISA_AVX512
    return (fl_v_f64)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif FL__ISA == FL__ISA_AVX2 && FL_HAVE_FMA
    return (fl_v_f64)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#elif FL__ISA == FL__ISA_SSE2 && FL_HAVE_FMA
    return (fl_v_f64)_mm_fmadd_pd((__m128d)a, (__m128d)b, (__m128d)c);
#elif FL__ISA == FL__ISA_NEON
    return (fl_v_f64)vfmaq_f64((float64x2_t)c, (float64x2_t)a, (float64x2_t)b);
#else
    return a * b + c;
#endif
}

/* fl_select_*(m, a, b): per lane, m ? a : b.  m must be all-ones / all-zeros per lane
 * (a comparison result). */
FL__INLINE fl_v_f32 fl_select_f32(fl_vi_f32 m, fl_v_f32 a, fl_v_f32 b)
{
#if FL__ISA == FL__ISA_AVX2
    return (fl_v_f32)_mm256_blendv_ps((__m256)b, (__m256)a, (__m256)m);
#elif FL__ISA == FL__ISA_SSE2 && defined(__SSE4_1__)
    return (fl_v_f32)_mm_blendv_ps((__m128)b, (__m128)a, (__m128)m);
#elif FL__ISA == FL__ISA_NEON
    return (fl_v_f32)vbslq_f32((uint32x4_t)m, (float32x4_t)a, (float32x4_t)b);
#else
    return FL__F32((m & FL__I32(a)) | (~m & FL__I32(b)));
#endif
}
FL__INLINE fl_v_f64 fl_select_f64(fl_vi_f64 m, fl_v_f64 a, fl_v_f64 b)
{
#if FL__ISA == FL__ISA_AVX2
    return (fl_v_f64)_mm256_blendv_pd((__m256d)b, (__m256d)a, (__m256d)m);
#elif FL__ISA == FL__ISA_SSE2 && defined(__SSE4_1__)
    return (fl_v_f64)_mm_blendv_pd((__m128d)b, (__m128d)a, (__m128d)m);
#elif FL__ISA == FL__ISA_NEON
    return (fl_v_f64)vbslq_f64((uint64x2_t)m, (float64x2_t)a, (float64x2_t)b);
#else
    return FL__F64((m & FL__I64(a)) | (~m & FL__I64(b)));
#endif
}

/* fl_any_*(m): nonzero if any lane of the mask is set (looks at whole lanes' sign bits on
 * x86, at any bit elsewhere; comparison results have both). */
FL__INLINE int fl__any_bits(fl_vi_f32 m)
{
#if FL__ISA == FL__ISA_AVX512
    return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0;
#elif FL__ISA == FL__ISA_AVX2
    return _mm256_movemask_ps((__m256)m) != 0;
#elif FL__ISA == FL__ISA_SSE2
    return _mm_movemask_ps((__m128)m) != 0;
#elif FL__ISA == FL__ISA_NEON
    return vmaxvq_u32((uint32x4_t)m) != 0;
#else
    int32_t acc = 0;
    for (int i = 0; i < fl_lanes_f32; i++) acc |= m[i];
    return acc != 0;
#endif
}
FL__INLINE int fl_any_f32(fl_vi_f32 m) { return fl__any_bits(m); }
FL__INLINE int fl_any_f64(fl_vi_f64 m) { return fl__any_bits(FL__I32(m)); }

/* Lane-index vectors and the "first n lanes" masks used by the tails. */
FL__INLINE fl_vi_f32 fl__iota_i32(void)
{
    fl_vi_f32 v;
    for (int i = 0; i < fl_lanes_f32; i++) v[i] = i;
    return v;
}
FL__INLINE fl_vi_f64 fl__iota_i64(void)
{
    fl_vi_f64 v;
    for (int i = 0; i < fl_lanes_f64; i++) v[i] = i;
    return v;
}

/* Partial (tail) load: lanes [0, n) from p, lanes [n, lanes) = fill; reads only p[0..n).
 * n >= 0 (n >= lanes loads a full vector).  Choose a fill the following math is
 * harmless on: 0 and 1 raise no flag in any function here (1 keeps log on its fast
 * path). */
FL__INLINE fl_v_f32 fl_load_partial_f32(const float *p, int64_t n, float fill)
{
    if (n > fl_lanes_f32) n = fl_lanes_f32;
#if FL__ISA == FL__ISA_AVX512
    return (fl_v_f32)_mm512_mask_loadu_ps(_mm512_set1_ps(fill),
                                          (__mmask16)((1u << (unsigned)n) - 1u), p);
#elif FL__ISA == FL__ISA_AVX2
    fl_vi_f32 m = fl__iota_i32() < (int32_t)n;
    fl_v_f32 v = (fl_v_f32)_mm256_maskload_ps(p, (__m256i)m);
    return fl_select_f32(m, v, fl_set1_f32(fill));
#else
    union { fl_v_f32 v; float a[fl_lanes_f32]; } u;
    u.v = fl_set1_f32(fill);
    for (int64_t i = 0; i < n; i++) u.a[i] = p[i];
    return u.v;
#endif
}
FL__INLINE fl_v_f64 fl_load_partial_f64(const double *p, int64_t n, double fill)
{
    if (n > fl_lanes_f64) n = fl_lanes_f64;
#if FL__ISA == FL__ISA_AVX512
    return (fl_v_f64)_mm512_mask_loadu_pd(_mm512_set1_pd(fill),
                                          (__mmask8)((1u << (unsigned)n) - 1u), p);
#elif FL__ISA == FL__ISA_AVX2
    fl_vi_f64 m = fl__iota_i64() < (int64_t)n;
    fl_v_f64 v = (fl_v_f64)_mm256_maskload_pd(p, (__m256i)m);
    return fl_select_f64(m, v, fl_set1_f64(fill));
#else
    union { fl_v_f64 v; double a[fl_lanes_f64]; } u;
    u.v = fl_set1_f64(fill);
    for (int64_t i = 0; i < n; i++) u.a[i] = p[i];
    return u.v;
#endif
}

/* Partial (tail) store: writes lanes [0, n) to p[0..n) and nothing else (n >= 0).
 * AVX2: 16-, 8- and 4-byte stores by the bits of n, not VMASKMOVPS: AMD Zen 2 / Zen 3
 * microcode a masked store to memory (42 uops, one per 12 cycles, uops.info), and the
 * small-row cross-entropy transposes end every row with one (C = 10: a row per 10
 * elements).  Masked loads are single uops there and stay. */
FL__INLINE void fl_store_partial_f32(float *p, fl_v_f32 v, int64_t n)
{
    if (n > fl_lanes_f32) n = fl_lanes_f32;
#if FL__ISA == FL__ISA_AVX512
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << (unsigned)n) - 1u), (__m512)v);
#elif FL__ISA == FL__ISA_AVX2
    if (n == 8) {
        _mm256_storeu_ps(p, (__m256)v);
        return;
    }
    __m128 h = _mm256_castps256_ps128((__m256)v);
    if (n & 4) {
        _mm_storeu_ps(p, h);
        h = _mm256_extractf128_ps((__m256)v, 1);
        p += 4;
    }
    if (n & 2) {
        _mm_storel_pi((__m64 *)(void *)p, h);
        h = _mm_movehl_ps(h, h);
        p += 2;
    }
    if (n & 1) _mm_store_ss(p, h);
#else
    union { fl_v_f32 v; float a[fl_lanes_f32]; } u;
    u.v = v;
    for (int64_t i = 0; i < n; i++) p[i] = u.a[i];
#endif
}
FL__INLINE void fl_store_partial_f64(double *p, fl_v_f64 v, int64_t n)
{
    if (n > fl_lanes_f64) n = fl_lanes_f64;
#if FL__ISA == FL__ISA_AVX512
    _mm512_mask_storeu_pd(p, (__mmask8)((1u << (unsigned)n) - 1u), (__m512d)v);
#elif FL__ISA == FL__ISA_AVX2 /* as fl_store_partial_f32 */
    if (n == 4) {
        _mm256_storeu_pd(p, (__m256d)v);
        return;
    }
    __m128d h = _mm256_castpd256_pd128((__m256d)v);
    if (n & 2) {
        _mm_storeu_pd(p, h);
        h = _mm256_extractf128_pd((__m256d)v, 1);
        p += 2;
    }
    if (n & 1) _mm_store_sd(p, h);
#else
    union { fl_v_f64 v; double a[fl_lanes_f64]; } u;
    u.v = v;
    for (int64_t i = 0; i < n; i++) p[i] = u.a[i];
#endif
}

/* |x| (clears the sign bit; exact, NaN stays NaN). */
FL__INLINE fl_v_f32 fl_abs_f32(fl_v_f32 x) { return FL__F32(FL__I32(x) & 0x7fffffff); }
FL__INLINE fl_v_f64 fl_abs_f64(fl_v_f64 x)
{
    return FL__F64(FL__I64(x) & (int64_t)0x7fffffffffffffffLL);
}
/* -|x| (sets the sign bit) */
FL__INLINE fl_v_f32 fl__negabs_f32(fl_v_f32 x)
{
    return FL__F32(FL__I32(x) | (int32_t)0x80000000);
}
FL__INLINE fl_v_f64 fl__negabs_f64(fl_v_f64 x)
{
    return FL__F64(FL__I64(x) | (int64_t)0x8000000000000000ULL);
}

/* fl_max_*(a, b) = a > b ? a : b and fl_min_*(a, b) = a < b ? a : b, exactly x86
 * MAXPS/MINPS: if either is NaN the result is b; max(+0, -0) = -0 (b).  Same semantics on
 * every target.  Put the value that must win ties / NaN second. */
FL__INLINE fl_v_f32 fl_max_f32(fl_v_f32 a, fl_v_f32 b)
{
#if FL__ISA == FL__ISA_AVX512
    return (fl_v_f32)_mm512_max_ps((__m512)a, (__m512)b);
#elif FL__ISA == FL__ISA_AVX2
    return (fl_v_f32)_mm256_max_ps((__m256)a, (__m256)b);
#elif FL__ISA == FL__ISA_SSE2
    return (fl_v_f32)_mm_max_ps((__m128)a, (__m128)b);
#else
    return fl_select_f32(a > b, a, b);
#endif
}
FL__INLINE fl_v_f32 fl_min_f32(fl_v_f32 a, fl_v_f32 b)
{
#if FL__ISA == FL__ISA_AVX512
    return (fl_v_f32)_mm512_min_ps((__m512)a, (__m512)b);
#elif FL__ISA == FL__ISA_AVX2
    return (fl_v_f32)_mm256_min_ps((__m256)a, (__m256)b);
#elif FL__ISA == FL__ISA_SSE2
    return (fl_v_f32)_mm_min_ps((__m128)a, (__m128)b);
#else
    return fl_select_f32(a < b, a, b);
#endif
}
FL__INLINE fl_v_f64 fl_max_f64(fl_v_f64 a, fl_v_f64 b)
{
#if FL__ISA == FL__ISA_AVX512
    return (fl_v_f64)_mm512_max_pd((__m512d)a, (__m512d)b);
#elif FL__ISA == FL__ISA_AVX2
    return (fl_v_f64)_mm256_max_pd((__m256d)a, (__m256d)b);
#elif FL__ISA == FL__ISA_SSE2
    return (fl_v_f64)_mm_max_pd((__m128d)a, (__m128d)b);
#else
    return fl_select_f64(a > b, a, b);
#endif
}
FL__INLINE fl_v_f64 fl_min_f64(fl_v_f64 a, fl_v_f64 b)
{
#if FL__ISA == FL__ISA_AVX512
    return (fl_v_f64)_mm512_min_pd((__m512d)a, (__m512d)b);
#elif FL__ISA == FL__ISA_AVX2
    return (fl_v_f64)_mm256_min_pd((__m256d)a, (__m256d)b);
#elif FL__ISA == FL__ISA_SSE2
    return (fl_v_f64)_mm_min_pd((__m128d)a, (__m128d)b);
#else
    return fl_select_f64(a < b, a, b);
#endif
}

/* Horizontal reductions in a fixed order (a halving tree: lane i += lane i + w for
 * w = lanes/2, lanes/4, ..., 1), so a given target always gives the same bits.  Different
 * targets (lane counts) sum in different orders. */
FL__INLINE float fl_hsum_f32(fl_v_f32 v)
{
    union { fl_v_f32 v; float a[fl_lanes_f32]; } u;
    u.v = v;
    for (int w = fl_lanes_f32 / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) u.a[i] = u.a[i] + u.a[i + w];
    return u.a[0];
}
FL__INLINE double fl_hsum_f64(fl_v_f64 v)
{
    union { fl_v_f64 v; double a[fl_lanes_f64]; } u;
    u.v = v;
    for (int w = fl_lanes_f64 / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) u.a[i] = u.a[i] + u.a[i + w];
    return u.a[0];
}
/* float32 <-> float64 lanes: fl_widen_f32 puts v's lanes [0, lanes/2) in w[0] and
 * [lanes/2, lanes) in w[1] (exact); fl_narrow_f64 is the inverse (one rounding each). */
FL__INLINE void fl_widen_f32(fl_v_f32 v, fl_v_f64 w[2])
{
#if FL__ISA == FL__ISA_AVX512
    w[0] = (fl_v_f64)_mm512_cvtps_pd(_mm512_castps512_ps256((__m512)v));
    w[1] = (fl_v_f64)_mm512_cvtps_pd(
        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd((__m512)v), 1)));
#elif FL__ISA == FL__ISA_AVX2
    w[0] = (fl_v_f64)_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)v));
    w[1] = (fl_v_f64)_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)v, 1));
#elif FL__ISA == FL__ISA_SSE2
    w[0] = (fl_v_f64)_mm_cvtps_pd((__m128)v);
    w[1] = (fl_v_f64)_mm_cvtps_pd(_mm_movehl_ps((__m128)v, (__m128)v));
#else
    fl_v_f64 lo = {0}, hi = {0}; /* whole vectors: filled lane by lane, w[] would be
                                  * read uninitialised first (gcc warns) */
    for (int i = 0; i < fl_lanes_f64; i++) {
        lo[i] = (double)v[i];
        hi[i] = (double)v[i + fl_lanes_f64];
    }
    w[0] = lo;
    w[1] = hi;
#endif
}
FL__INLINE fl_v_f32 fl_narrow_f64(fl_v_f64 lo, fl_v_f64 hi)
{
#if FL__ISA == FL__ISA_AVX512
    return (fl_v_f32)_mm512_castpd_ps(_mm512_insertf64x4(
        _mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps((__m512d)lo))),
        _mm256_castps_pd(_mm512_cvtpd_ps((__m512d)hi)), 1));
#elif FL__ISA == FL__ISA_AVX2
    return (fl_v_f32)_mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps((__m256d)lo)),
                                          _mm256_cvtpd_ps((__m256d)hi), 1);
#elif FL__ISA == FL__ISA_SSE2
    return (fl_v_f32)_mm_movelh_ps(_mm_cvtpd_ps((__m128d)lo), _mm_cvtpd_ps((__m128d)hi));
#else
    fl_v_f32 v;
    for (int i = 0; i < fl_lanes_f64; i++) {
        v[i] = (float)lo[i];
        v[i + fl_lanes_f64] = (float)hi[i];
    }
    return v;
#endif
}

/* Horizontal max with fl_max semantics, same tree (NaN lanes may be dropped). */
FL__INLINE float fl_hmax_f32(fl_v_f32 v)
{
    union { fl_v_f32 v; float a[fl_lanes_f32]; } u;
    u.v = v;
    for (int w = fl_lanes_f32 / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) u.a[i] = u.a[i + w] > u.a[i] ? u.a[i + w] : u.a[i];
    return u.a[0];
}
FL__INLINE double fl_hmax_f64(fl_v_f64 v)
{
    union { fl_v_f64 v; double a[fl_lanes_f64]; } u;
    u.v = v;
    for (int w = fl_lanes_f64 / 2; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) u.a[i] = u.a[i + w] > u.a[i] ? u.a[i + w] : u.a[i];
    return u.a[0];
}

/* ============================================================== float32 exp (1 ulp) */
/*
 * exp(x) = 2^n * exp(r),  n = round(x / ln2),  r = x - n ln2 in [-0.3466, 0.3466]
 * (slightly wider when x*log2e rounds unfused).  n ln2 is split Cody-Waite style:
 * LN2_HI has 15 significant bits, so n * LN2_HI is exact for |n| < 2^9 and x - n LN2_HI
 * is exact (Sterbenz).  exp(r) = 1 + (r + r^2 Q(r)), Q a degree-4 minimax polynomial
 * (relative error 2^-28.3 on |r| <= 0.3471, fitted with a Remez exchange in mpmath).
 * n is obtained with the shift trick: t = x*log2e + 1.5*2^23 holds n in its low mantissa
 * bits, and (bits(t) << 23) is n << 23, ready to add to the exponent of exp(r).
 * Fast path |x| <= 87: 2^n exp(r) is normal.  Slow path: clamps |x| to 150, scales by
 * 2^n1 * 2^n2 (n1 = n >> 1) so results round once into the subnormals (gradual
 * underflow) or overflow to +inf, and blends exp(NaN) = NaN, exp(+inf) = +inf,
 * exp(-inf) = +0.
 */
#define FL__EXPF_LOG2E 0x1.715476p+0f
#define FL__EXPF_SHIFT 0x1.8p+23f         /* bits 0x4b400000 */
#define FL__LN2F_HI 0x1.62e4p-1f          /* 0.693145751953125, 15 bits */
#define FL__LN2F_LO 0x1.7f7d1cp-20f       /* ln2 - LN2F_HI */

/* any lane with |x| > 87, inf or NaN */
#define FL__BIG87_F32(x) fl_any_f32((FL__I32(x) & 0x7fffffff) > 0x42ae0000)

/* p = exp(r) (p = ph + pl to ~2^-48 when pl_out is not NULL) and t (n in the low
 * bits) for x, |x| <= 150 */
FL__INLINE fl_v_f32 fl__expf_kernel(fl_v_f32 x, fl_v_f32 *t_out, fl_v_f32 *pl_out)
{
    const fl_v_f32 shift = fl_set1_f32(FL__EXPF_SHIFT);
    fl_v_f32 t = fl_fma_f32(x, fl_set1_f32(FL__EXPF_LOG2E), shift);
    fl_v_f32 n = t - shift;
    fl_v_f32 rhi = fl_fma_f32(n, fl_set1_f32(-FL__LN2F_HI), x); /* exact */
    fl_v_f32 rlo = n * -FL__LN2F_LO;
    fl_v_f32 r = rhi + rlo;
    fl_v_f32 r2 = r * r;
    /* Q(r) = c2 + c3 r + c4 r^2 + c5 r^3 + c6 r^4, Estrin's scheme (short chain) */
    fl_v_f32 q = fl_fma_f32(r2, fl_set1_f32(0x1.6a22e2p-10f),
                            fl_fma_f32(FL__K32(0x1.123aaep-7f), r, FL__K32(0x1.5558f6p-5f)));
    q = fl_fma_f32(r2, q, fl_fma_f32(FL__K32(0x1.55549p-3f), r, FL__K32(0x1.fffffcp-2f)));
    *t_out = t;
    /* 1 + (rhi + (rlo + r^2 Q)): the rounding of r never enters the result */
    fl_v_f32 u = fl_fma_f32(r2, q, rlo);
    fl_v_f32 s = rhi + u;
    fl_v_f32 ph = s + 1.0f;
    if (pl_out) /* the two roundings above, recovered (Fast2Sum; |rhi| >= |u| or tiny) */
        *pl_out = ((1.0f - ph) + s) + (u - (s - rhi));
    return ph;
}

FL__COLD fl_v_f32 fl__exp_slow_f32(fl_v_f32 x)
{
    const fl_vi_f32 ix = FL__I32(x), ax = ix & 0x7fffffff;
    const fl_vi_f32 nonfinite = ax >= 0x7f800000;
    const fl_vi_f32 big = ax > 0x43160000; /* |x| > 150, or inf / NaN */
    fl_v_f32 xs = fl_select_f32(big, FL__F32((ix & (int32_t)0x80000000) | 0x43160000), x);
    xs = fl_select_f32(nonfinite, fl_set1_f32(0.0f), xs);
    fl_v_f32 t;
    fl_v_f32 p = fl__expf_kernel(xs, &t, 0);
    fl_vi_f32 n = FL__I32(t) - 0x4b400000;
    fl_vi_f32 n1 = n >> 1, n2 = n - n1;
    fl_v_f32 y = (p * FL__F32((n1 + 127) << 23)) * FL__F32((n2 + 127) << 23);
    /* exp(+inf) = +inf, exp(NaN) = NaN (x + x quiets it), exp(-inf) = +0 */
    fl_v_f32 special = fl_select_f32(ix == (int32_t)0xff800000, fl_set1_f32(0.0f), x + x);
    return fl_select_f32(nonfinite, special, y);
}

/* exp(x), float32.  Max error 1 ulp (measured: see tests/c/test_vecmath.c).
 * exp(+-0) = 1, exp(-inf) = +0, exp(+inf) = +inf, NaN -> NaN, exp(x > 88.72) = +inf,
 * gradual underflow below -87.34, +0 below -103.97. */
FL__INLINE fl_v_f32 fl_exp_u1_f32(fl_v_f32 x)
{
    if (FL__UNLIKELY(FL__BIG87_F32(x))) /* |x| > 87 */
        return fl__exp_slow_f32(x);
    fl_v_f32 t;
    fl_v_f32 p = fl__expf_kernel(x, &t, 0);
    return FL__F32(FL__I32(p) + (FL__I32(t) << 23));
}

/* exp(x) = eh + el (el ~ the rounding error of eh, to ~2^-48 relative) for |x| <= 87 */
FL__INLINE fl_v_f32 fl__exp_dd_f32(fl_v_f32 x, fl_v_f32 *el)
{
    fl_v_f32 t, pl;
    fl_v_f32 ph = fl__expf_kernel(x, &t, &pl);
    fl_vi_f32 nb = FL__I32(t) << 23; /* n << 23 */
    *el = pl * FL__F32(nb + 0x3f800000);
    return FL__F32(FL__I32(ph) + nb);
}

/* ====================================================== float32 log, log1p (1 ulp) */
/*
 * With u = 2^k (1 + f), 1 + f in (0.75, 1.5] and f EXACT:
 *   log(u) = k LN2_HI + (f - (f^2/2 - (f^3 P(f) + k LN2_LO)))
 * P a degree-7 minimax polynomial (relative error of log1p(f) 2^-27.6 on
 * [-0.2501, 0.5001]; no division).  k LN2_HI is exact and, when log1p(f) and the result
 * share a binade, a multiple of ulp(log1p(f)), so the last addition rounds only when the
 * result is in a higher binade.  The sum is written as inner - (-k) LN2_HI so that k = 0,
 * f = -0 gives -0 (log1p(-0) = -0).
 * log: f = m - 1 (exact).  log1p(x): m = fl(1 + x) gives k; then
 *   f = x 2^-k - (1 - 2^-k)
 * is exact for k <= 24 (both terms are exact, and the sum is a multiple of 2^-24 below 1:
 * k is taken with (0.75, 1.5] rather than [0.75, 1.5) so that x = 0.5 - 2^-25, whose
 * 1 + x rounds up to 1.5, keeps k = 0), so the rounding of 1 + x never enters (no
 * log1p correction term needed).  For k > 24 (x > 2^24) the error of 1 - 2^-k is far
 * below an ulp of the result.
 */
#define FL__LOGF_OFF 0x3f400001 /* bits of 0.75, + 1: k = 0 for m in (0.75, 1.5] */

/* inner = log1p(f) + k LN2_LO (+ corr) with one final rounding; nk = -k */
FL__INLINE fl_v_f32 fl__log1pf_inner(fl_v_f32 f, fl_v_f32 nk, fl_v_f32 corr, int with_corr)
{
    fl_v_f32 f2 = f * f, f4 = f2 * f2;
    /* P(f) = c0 + c1 f + ... + c7 f^7, Estrin's scheme */
    fl_v_f32 p01 = fl_fma_f32(fl_set1_f32(-0x1.000042p-2f), f, fl_set1_f32(0x1.5555a4p-2f));
    fl_v_f32 p23 = fl_fma_f32(fl_set1_f32(-0x1.54ef82p-3f), f, fl_set1_f32(0x1.99699cp-3f));
    fl_v_f32 p45 = fl_fma_f32(fl_set1_f32(-0x1.0d8f2ep-3f), f, fl_set1_f32(0x1.288510p-3f));
    fl_v_f32 p67 = fl_fma_f32(fl_set1_f32(-0x1.714b52p-5f), f, fl_set1_f32(0x1.ac9e64p-4f));
    fl_v_f32 p = fl_fma_f32(f4, fl_fma_f32(f2, p67, p45), fl_fma_f32(f2, p23, p01));
    fl_v_f32 lo = fl_fma_f32(nk, fl_set1_f32(-FL__LN2F_LO), (f2 * f) * p);
    if (with_corr) lo = lo + corr;
    return f - fl_fma_f32(0.5f * f, f, -lo);
}

/* log of a positive normal float given by its bits; kadj is added to the exponent */
FL__INLINE fl_v_f32 fl__logf_core(fl_vi_f32 ix, fl_vi_f32 kadj)
{
    fl_vi_f32 im = ix - FL__LOGF_OFF;
    fl_v_f32 f = FL__F32(ix - (im & (int32_t)0xff800000)) - 1.0f;
    fl_v_f32 nk = __builtin_convertvector(-((im >> 23) + kadj), fl_v_f32);
    fl_v_f32 inner = fl__log1pf_inner(f, nk, f, 0);
    return fl_fma_f32(nk, fl_set1_f32(-FL__LN2F_HI), inner);
}

FL__COLD fl_v_f32 fl__log_slow_f32(fl_v_f32 x)
{
    const fl_vi_f32 ix = FL__I32(x);
    const fl_vi_f32 sub = (ix > 0) & (ix < 0x00800000);
    /* subnormals: scale by 2^23 (exact), take 23 off the exponent */
    const fl_v_f32 xsub = fl_select_f32(sub, x, fl_set1_f32(0.0f)) * 0x1p23f;
    fl_vi_f32 ix2 = FL__I32(fl_select_f32(sub, xsub, x));
    const fl_vi_f32 bad = (ix2 < 0x00800000) | (ix2 >= 0x7f800000);
    ix2 = FL__I32(fl_select_f32(bad, fl_set1_f32(1.0f), FL__F32(ix2)));
    fl_v_f32 y = fl__logf_core(ix2, sub & -23);
    /* log(+-0) = -inf, log(<0) = NaN, log(+inf) = +inf, log(NaN) = NaN */
    fl_v_f32 s = fl_select_f32(ix < 0, FL__F32(fl__set1_i32(0x7fc00000)), x + x);
    s = fl_select_f32((ix & 0x7fffffff) == 0, fl_set1_f32(-__builtin_inff()), s);
    s = fl_select_f32((ix & 0x7fffffff) > 0x7f800000, x + x, s);
    return fl_select_f32(bad, s, y);
}

/* log(x), float32.  Max error 1 ulp.  log(+-0) = -inf, log(x < 0) = NaN,
 * log(+inf) = +inf, log(NaN) = NaN, log(1) = +0, subnormal x within the bound. */
FL__INLINE fl_v_f32 fl_log_u1_f32(fl_v_f32 x)
{
    fl_vi_f32 ix = FL__I32(x);
    if (FL__UNLIKELY(fl_any_f32(FL__U32(ix) - 0x00800000u >= 0x7f000000u))) /* unsigned: wraps */
        return fl__log_slow_f32(x);
    return fl__logf_core(ix, fl__set1_i32(0));
}

/* log1p argument reduction: returns f (exact), *nk = -k, for -1 < x < +inf */
FL__INLINE fl_v_f32 fl__log1pf_reduce(fl_v_f32 x, fl_v_f32 *nk)
{
    fl_vi_f32 im = FL__I32(x + 1.0f) - FL__LOGF_OFF;
    fl_vi_f32 kb = im & (int32_t)0xff800000;                 /* k << 23, k in [-24, 128] */
    fl_v_f32 xs = FL__F32(FL__I32(x) - kb);                  /* x 2^-k, exact */
    fl_v_f32 s4 = FL__F32(0x40800000 - kb);                  /* 4 2^-k, normal */
    *nk = __builtin_convertvector(-(im >> 23), fl_v_f32);
    return xs - fl_fma_f32(s4, fl_set1_f32(-0.25f), fl_set1_f32(1.0f));
}

FL__INLINE fl_v_f32 fl__log1pf_core(fl_v_f32 x)
{
    fl_v_f32 nk;
    fl_v_f32 f = fl__log1pf_reduce(x, &nk);
    fl_v_f32 inner = fl__log1pf_inner(f, nk, f, 0);
    return fl_fma_f32(nk, fl_set1_f32(-FL__LN2F_HI), inner);
}

/* log1p special inputs: x <= -1 (incl. -inf, -NaN), +inf, +NaN */
#define FL__LOG1PF_SPECIAL(ix) \
    ((ix >= 0x7f800000) | (FL__U32(ix) >= 0xbf800000u))

FL__COLD fl_v_f32 fl__log1p_slow_f32(fl_v_f32 x)
{
    const fl_vi_f32 ix = FL__I32(x);
    const fl_vi_f32 bad = FL__LOG1PF_SPECIAL(ix);
    fl_v_f32 y = fl__log1pf_core(fl_select_f32(bad, fl_set1_f32(0.0f), x));
    /* log1p(-1) = -inf, log1p(x < -1) = NaN, log1p(+inf) = +inf, NaN -> NaN */
    fl_v_f32 s = fl_select_f32(ix == (int32_t)0xbf800000, fl_set1_f32(-__builtin_inff()),
                               FL__F32(fl__set1_i32(0x7fc00000)));
    s = fl_select_f32((ix >= 0x7f800000) | ((ix & 0x7fffffff) > 0x7f800000), x + x, s);
    return fl_select_f32(bad, s, y);
}

/* log1p(x), float32.  Max error 1 ulp.  log1p(+-0) = +-0, log1p(x) = x for |x| < 2^-24,
 * log1p(-1) = -inf, log1p(x < -1) = NaN, log1p(+inf) = +inf, NaN -> NaN. */
FL__INLINE fl_v_f32 fl_log1p_u1_f32(fl_v_f32 x)
{
    fl_vi_f32 ix = FL__I32(x);
    if (FL__UNLIKELY(fl_any_f32(FL__LOG1PF_SPECIAL(ix)))) return fl__log1p_slow_f32(x);
    return fl__log1pf_core(x);
}

/* ======================================================= float32 softplus, sigmoid */
/*
 * Both start from e = exp(-|x|) carried as eh + el (the exp kernel's last two roundings
 * recovered with Fast2Sum, ~6 extra operations), so that the error of exp does not add
 * to the error of what follows: that is what keeps them within 1 ulp instead of 2-3.
 * Fast body for |x| <= 87; beyond (and for inf / NaN) a slow path blends in the limits.
 */

/* a - b c with the product b c exact: FMA, or Dekker's product (no FMA); a - RN(b c) must
 * be exact (it is when b c ~ a) */
FL__INLINE fl_v_f32 fl__fnma_exact_f32(fl_v_f32 b, fl_v_f32 c, fl_v_f32 a)
{
#if FL_HAVE_FMA
    return fl_fma_f32(-b, c, a);
#else
    fl_v_f32 p = b * c;
    fl_v_f32 bs = b * 4097.0f, bh = bs - (bs - b), bl = b - bh;
    fl_v_f32 cs = c * 4097.0f, ch = cs - (cs - c), cl = c - ch;
    fl_v_f32 err = ((bh * ch - p) + bh * cl + bl * ch) + bl * cl; /* b c = p + err */
    return (a - p) - err;
#endif
}

FL__INLINE fl_v_f32 fl__softplus_tail_f32(fl_v_f32 x, fl_v_f32 eh, fl_v_f32 el)
{
    const fl_vi_f32 ix = FL__I32(x);
    fl_v_f32 nk;
    /* log1p(eh + el) = log1p(eh) + el / (1 + eh); 1 / (1 + eh) to 1% is plenty */
    fl_v_f32 f = fl__log1pf_reduce(eh, &nk); /* k in {0, 1} */
    fl_v_f32 inv = fl_fma_f32(fl_fma_f32(fl_set1_f32(0x1.4afd78p-2f), eh,
                                         fl_set1_f32(-0x1.9dbcd6p-1f)),
                              eh, fl_set1_f32(0x1.fad412p-1f));
    fl_v_f32 inner = fl__log1pf_inner(f, nk, el * inv, 1);
    /* max(x, 0) + k LN2_HI + inner, rounded once: TwoSum of the two big terms */
    fl_v_f32 a = FL__F32(ix & ~(ix >> 31)), b = nk * -FL__LN2F_HI; /* both exact */
    fl_v_f32 s = a + b, bb = s - a;
    fl_v_f32 err = (a - (s - bb)) + (b - bb);
    return s + (err + inner);
}

/* softplus for |x| <= 87 */
FL__INLINE fl_v_f32 fl__softplus_body_f32(fl_v_f32 x)
{
    fl_v_f32 el;
    fl_v_f32 eh = fl__exp_dd_f32(fl__negabs_f32(x), &el); /* exp(-|x|) */
    return fl__softplus_tail_f32(x, eh, el);
}

FL__COLD fl_v_f32 fl__softplus_slow_f32(fl_v_f32 x)
{
    const fl_vi_f32 ix = FL__I32(x);
    const fl_vi_f32 big = (ix & 0x7fffffff) > 0x42ae0000; /* |x| > 87, inf, NaN */
    fl_v_f32 y = fl__softplus_body_f32(fl_select_f32(big, fl_set1_f32(0.0f), x));
    /* x > 87: x (+inf, NaN stay);  x < -87: log1p(e^x) = e^x to << 1 ulp */
    fl_v_f32 e = fl_exp_u1_f32(fl_select_f32(ix < 0, x, fl_set1_f32(0.0f)));
    return fl_select_f32(big, fl_select_f32(ix < 0, e, x), y);
}

/* softplus(x) = log(1 + e^x) = max(x, 0) + log1p(exp(-|x|)), float32.  Max error 1 ulp.
 * softplus(-inf) = +0, softplus(+inf) = +inf, NaN -> NaN, gradual underflow for x < -87,
 * softplus(x) = x for large x. */
FL__INLINE fl_v_f32 fl_softplus_u1_f32(fl_v_f32 x)
{
    if (FL__UNLIKELY(FL__BIG87_F32(x)))
        return fl__softplus_slow_f32(x);
    return fl__softplus_body_f32(x);
}

FL__INLINE fl_v_f32 fl__sigmoid_tail_f32(fl_v_f32 x, fl_v_f32 eh, fl_v_f32 el)
{
    const fl_vi_f32 ix = FL__I32(x);
    fl_v_f32 d = eh + 1.0f;
    fl_v_f32 dl = ((1.0f - d) + eh) + el; /* 1 + e = d + dl */
    fl_v_f32 inv = 1.0f / d;
    /* x >= 0: 1 / (1 + e);  x < 0: e / (1 + e) */
    fl_vi_f32 neg = ix >> 31;
    fl_v_f32 num = fl_select_f32(neg, eh, fl_set1_f32(1.0f));
    fl_v_f32 numl = FL__F32(neg & FL__I32(el));
    fl_v_f32 q = num * inv;
    /* one correction step: (num + numl) / (d + dl) = q + (num - q d + numl - q dl) / d */
    fl_v_f32 corr = fl_fma_f32(-q, dl, fl__fnma_exact_f32(q, d, num) + numl);
    return fl_fma_f32(corr, inv, q);
}

/* sigmoid for |x| <= 87 */
FL__INLINE fl_v_f32 fl__sigmoid_body_f32(fl_v_f32 x)
{
    fl_v_f32 el;
    fl_v_f32 eh = fl__exp_dd_f32(fl__negabs_f32(x), &el); /* exp(-|x|) */
    return fl__sigmoid_tail_f32(x, eh, el);
}

FL__COLD fl_v_f32 fl__sigmoid_slow_f32(fl_v_f32 x)
{
    const fl_vi_f32 ix = FL__I32(x);
    const fl_vi_f32 big = (ix & 0x7fffffff) > 0x42ae0000; /* |x| > 87, inf, NaN */
    fl_v_f32 y = fl__sigmoid_body_f32(fl_select_f32(big, fl_set1_f32(0.0f), x));
    /* x > 87: 1 (NaN stays);  x < -87: e^x / (1 + e^x) = e^x exactly rounded */
    fl_v_f32 e = fl_exp_u1_f32(fl_select_f32(ix < 0, x, fl_set1_f32(0.0f)));
    fl_v_f32 pos = fl_select_f32((ix & 0x7fffffff) > 0x7f800000, x + x, fl_set1_f32(1.0f));
    return fl_select_f32(big, fl_select_f32(ix < 0, e, pos), y);
}

/* sigmoid(x) = 1 / (1 + e^-x), float32.  Max error 1 ulp.  sigmoid(-inf) = +0,
 * sigmoid(+inf) = 1, sigmoid(+-0) = 0.5, NaN -> NaN, gradual underflow for x < -87. */
FL__INLINE fl_v_f32 fl_sigmoid_u1_f32(fl_v_f32 x)
{
    if (FL__UNLIKELY(FL__BIG87_F32(x)))
        return fl__sigmoid_slow_f32(x);
    return fl__sigmoid_body_f32(x);
}

/* softplus(x) and sigmoid(x) together (one exp): returns fl_softplus_u1_f32(x) and
 * stores fl_sigmoid_u1_f32(x) in *sig, the same bits as the separate calls.  For the
 * logistic losses: loss from softplus(+-x), gradient from sigmoid(x). */
FL__INLINE fl_v_f32 fl_softplus_sigmoid_u1_f32(fl_v_f32 x, fl_v_f32 *sig)
{
    if (FL__UNLIKELY(FL__BIG87_F32(x))) {
        *sig = fl__sigmoid_slow_f32(x);
        return fl__softplus_slow_f32(x);
    }
    fl_v_f32 el;
    fl_v_f32 eh = fl__exp_dd_f32(fl__negabs_f32(x), &el); /* exp(-|x|) */
    *sig = fl__sigmoid_tail_f32(x, eh, el);
    return fl__softplus_tail_f32(x, eh, el);
}

/* Two-stage form, for software pipelining or blocking (a whole softplus is one long
 * dependency chain, so a loop of it is latency-bound; computing stage 1 for the next
 * vector, or for a block of vectors into L1 scratch, before stage 2 of this one lets
 * the two overlap -- about 1.5x faster).  Same bits as the one-call functions.
 *   hi = fl_exp_negabs_f32(x, &lo):  exp(-|x|) = hi + lo (to ~2^-48 relative);
 *                                       hi is exactly fl_exp_u1_f32(-|x|); lanes with
 *                                       |x| > 87 (or inf, NaN) have lo = 0, and no lane's
 *                                       hi, lo depend on its neighbours
 *   fl_softplus_from_exp_u1_f32(x, hi, lo) = fl_softplus_u1_f32(x)
 *   fl_sigmoid_from_exp_u1_f32(x, hi, lo)  = fl_sigmoid_u1_f32(x) */
/* a vector with some |x| > 87 (or inf, NaN): those lanes get lo = 0 (stage 2 takes its
 * slow path for them), the others the same hi and lo as in the fast path */
FL__COLD fl_v_f32 fl__exp_negabs_slow_f32(fl_v_f32 x, fl_v_f32 *lo)
{
    const fl_v_f32 nx = fl__negabs_f32(x);
    const fl_vi_f32 big = (FL__I32(x) & 0x7fffffff) > 0x42ae0000;
    fl_v_f32 l;
    const fl_v_f32 h = fl__exp_dd_f32(fl_select_f32(big, fl_set1_f32(0.0f), nx), &l);
    *lo = fl_select_f32(big, fl_set1_f32(0.0f), l);
    return fl_select_f32(big, fl_exp_u1_f32(nx), h);
}
FL__INLINE fl_v_f32 fl_exp_negabs_f32(fl_v_f32 x, fl_v_f32 *lo)
{
    if (FL__UNLIKELY(FL__BIG87_F32(x))) return fl__exp_negabs_slow_f32(x, lo);
    return fl__exp_dd_f32(fl__negabs_f32(x), lo);
}
FL__INLINE fl_v_f32 fl_softplus_from_exp_u1_f32(fl_v_f32 x, fl_v_f32 hi, fl_v_f32 lo)
{
    if (FL__UNLIKELY(FL__BIG87_F32(x))) return fl__softplus_slow_f32(x);
    return fl__softplus_tail_f32(x, hi, lo);
}
FL__INLINE fl_v_f32 fl_sigmoid_from_exp_u1_f32(fl_v_f32 x, fl_v_f32 hi, fl_v_f32 lo)
{
    if (FL__UNLIKELY(FL__BIG87_F32(x))) return fl__sigmoid_slow_f32(x);
    return fl__sigmoid_tail_f32(x, hi, lo);
}

/* The logistic pieces of x from one exp, one log1p and one division, with one range
 * check (for the logistic losses: BCE with logits, focal):
 *   *L  = log1p(exp(-|x|)) = softplus(-|x|)   the same bits as fl_softplus_u1_f32(-|x|)
 *   *r  = sigmoid(|x|) = 1 / (1 + e)          the same bits as fl_sigmoid_u1_f32(|x|)
 *   *er = sigmoid(-|x|) = e r                 from the double-word e: <= ~1.5 ulp
 * so softplus(+-x) = max(+-x, 0) + L (one more rounding: L <= ln 2 <= the sum) and
 * sigmoid(x) = x >= 0 ? r : er.  Returns e = exp(-|x|) (= fl_exp_u1_f32(-|x|)).
 * Lanes with |x| beyond the fast range (inf, NaN) take the cold path lane by lane;
 * no lane's results depend on its neighbours.  |x| = inf: L = 0, r = 1, er = 0. */
FL__COLD fl_v_f32 fl__logistic_slow_f32(fl_v_f32 x, fl_v_f32 *L, fl_v_f32 *r, fl_v_f32 *er)
{
    fl_v_f32 lo;
    const fl_v_f32 nx = fl__negabs_f32(x), ax = -nx;
    const fl_v_f32 e = fl_exp_negabs_f32(x, &lo); /* lo = 0 in the big lanes */
    *L = fl_softplus_u1_f32(nx);
    *r = fl_sigmoid_u1_f32(ax);
    *er = fl_select_f32((FL__I32(x) & 0x7fffffff) > 0x42ae0000, fl_sigmoid_u1_f32(nx), fl_fma_f32(e, *r, lo * *r));
    return e;
}
FL__INLINE fl_v_f32 fl_logistic_f32(fl_v_f32 x, fl_v_f32 *L, fl_v_f32 *r, fl_v_f32 *er)
{
    if (FL__UNLIKELY(FL__BIG87_F32(x))) return fl__logistic_slow_f32(x, L, r, er);
    fl_v_f32 lo;
    const fl_v_f32 nx = fl__negabs_f32(x);
    const fl_v_f32 e = fl__exp_dd_f32(nx, &lo);
    *L = fl__softplus_tail_f32(nx, e, lo);
    *r = fl__sigmoid_tail_f32(-nx, e, lo);
    *er = fl_fma_f32(e, *r, lo * *r);
    return e;
}

/* ------------------------------------------- float32 logistic pieces, lean (u2) */
/*
 * fl_logistic_u2_f32(x, &L, &r, &er): the same four results as fl_logistic_f32 with about
 * half its operations, for the float32 logistic losses (BCE with logits), which are
 * bound by their arithmetic:
 *   returns e = exp(-|x|)             within 2 ulp (a double-word's high part)
 *   *L  = log1p(e) = softplus(-|x|)   within 2 ulp  } of the exact functions of x;
 *   *r  = 1 / (1 + e) = sigmoid(|x|)  within 1 ulp  } measured over every float: see
 *   *er = e r = sigmoid(-|x|)         within 2 ulp  } the table below
 * e = exp(-|x|) = eh + el comes from fl__exp_dw_f32 (to ~2^-30 relative), so that its
 * rounding does not count in L and er; 1 + e = d + dl with dl ~ 2^-24 d:
 *   r = 1 / (d + dl): an estimate r0 of 1 / d (AVX-512: VRCP14, relative error < 2^-14;
 *       elsewhere the division) and one Newton step that includes dl:
 *       r = r0 + r0 (1 - d r0 - dl r0), 1 - d r0 exact (FMA).
 *   er = eh r + el r.
 *   L = log(d) + dl r (fl__log_1pe_f32): a table where a lane permute makes it cheap
 *       (AVX-512: 32 entries, VPERMT2PS; AVX2: 8 entries, VPERMPS), else a polynomial.
 * Measured maxima over every float (ulp; tests/c/test_vecmath.c checks the bounds above
 * on 2^22 patterns per target):
 *                     L      r      er    (every third float with |x| <= 87)
 *   AVX-512          1.38   0.53   1.25
 *   AVX2             1.39   0.52   1.26
 *   SSE2 (no FMA)    1.38   0.54   1.54
 * (before the double-word e: 1.57 / 0.77 / 1.96, e's rounding counting in L and er)
 * Lanes with |x| > 87 (or inf, NaN) take a cold path, lane by lane, the other lanes
 * getting the same bits as in the fast body: there e < 2^-125 (subnormal or 0), where
 * log1p(e) = e / (1 + e) = e exactly rounded, so L = er = e and r = 1; NaN gives NaN
 * in all four.
 *
 * fl__logistic_m_dw_f32 gives focal what it raises to a power: m = sigmoid(-|x|) or
 * sigmoid(|x|), chosen per lane, as a double-word, with 1 - m and L.
 */
#if FL__ISA == FL__ISA_AVX512
/* c_j: 7-bit approximation of 1 / (1 + (j + 1/2) / 32), c_0 = 1 */
static const float fl__logtab_c_f32[32] __attribute__((aligned(64), unused)) = {
    0x1p+0f, 0x1.e8p-1f, 0x1.dcp-1f, 0x1.ccp-1f,
    0x1.cp-1f, 0x1.b4p-1f, 0x1.a8p-1f, 0x1.ap-1f,
    0x1.94p-1f, 0x1.8cp-1f, 0x1.8p-1f, 0x1.78p-1f,
    0x1.7p-1f, 0x1.68p-1f, 0x1.6p-1f, 0x1.58p-1f,
    0x1.5p-1f, 0x1.4cp-1f, 0x1.44p-1f, 0x1.4p-1f,
    0x1.38p-1f, 0x1.34p-1f, 0x1.2cp-1f, 0x1.28p-1f,
    0x1.2p-1f, 0x1.1cp-1f, 0x1.18p-1f, 0x1.14p-1f,
    0x1.1p-1f, 0x1.0cp-1f, 0x1.08p-1f, 0x1.04p-1f,
};
/* -log(c_j) = hi + lo (to ~2^-48 relative; mpmath, 200 bits) */
static const float fl__logtab_hi_f32[32] __attribute__((aligned(64), unused)) = {
    0.0f, 0x1.894aa2p-5f, 0x1.2aa04ap-4f, 0x1.b6ac88p-4f,
    0x1.1178e8p-3f, 0x1.4913d8p-3f, 0x1.823c16p-3f, 0x1.a93ed4p-3f,
    0x1.e530fp-3f, 0x1.071386p-2f, 0x1.269622p-2f, 0x1.3c2528p-2f,
    0x1.522aep-2f, 0x1.68ac84p-2f, 0x1.7fafa4p-2f, 0x1.973a34p-2f,
    0x1.af5296p-2f, 0x1.bb9612p-2f, 0x1.d49024p-2f, 0x1.e148a2p-2f,
    0x1.fb358ap-2f, 0x1.04360cp-1f, 0x1.11af82p-1f, 0x1.188ee4p-1f,
    0x1.269622p-1f, 0x1.2dbf56p-1f, 0x1.35028ap-1f, 0x1.3c608p-1f,
    0x1.43dap-1f, 0x1.4b6fd6p-1f, 0x1.5322e2p-1f, 0x1.5af406p-1f,
};
static const float fl__logtab_lo_f32[32] __attribute__((aligned(64), unused)) = {
    0.0f, -0x1.6c0998p-30f, 0x1.11c5eap-30f, 0x1.b5ab64p-29f,
    0x1.13f23ep-30f, 0x1.99dabp-30f, 0x1.5468fp-29f, -0x1.ba930ep-30f,
    -0x1.8efedep-35f, 0x1.35618ap-32f, -0x1.d9648ep-27f, -0x1.1999dp-27f,
    0x1.ce28f6p-28f, -0x1.6395ecp-30f, -0x1.09fabap-28f, 0x1.89ab56p-29f,
    -0x1.b6e646p-27f, -0x1.1fc742p-28f, 0x1.b7be9ap-28f, -0x1.76364cp-28f,
    0x1.ef491p-27f, -0x1.89fc54p-29f, 0x1.e3ad54p-28f, 0x1.e4794cp-30f,
    -0x1.d9648ep-26f, -0x1.09e418p-26f, 0x1.b3b19p-26f, 0x1.86d7f6p-26f,
    -0x1.a0db88p-26f, 0x1.f2e184p-26f, 0x1.a19e16p-27f, -0x1.e4db1p-28f,
};
/* 2^(j / 32) = hi + lo (to ~2^-48 relative; mpmath, 200 bits) */
static const float fl__exptab_hi_f32[32] __attribute__((aligned(64), unused)) = {
    0x1p+0f, 0x1.059b0ep+0f, 0x1.0b5586p+0f, 0x1.11301ep+0f,
    0x1.172b84p+0f, 0x1.1d4874p+0f, 0x1.2387a6p+0f, 0x1.29e9ep+0f,
    0x1.306fep+0f, 0x1.371a74p+0f, 0x1.3dea64p+0f, 0x1.44e086p+0f,
    0x1.4bfdaep+0f, 0x1.5342b6p+0f, 0x1.5ab07ep+0f, 0x1.6247ecp+0f,
    0x1.6a09e6p+0f, 0x1.71f75ep+0f, 0x1.7a1148p+0f, 0x1.82589ap+0f,
    0x1.8ace54p+0f, 0x1.93737cp+0f, 0x1.9c4918p+0f, 0x1.a5503cp+0f,
    0x1.ae89fap+0f, 0x1.b7f77p+0f, 0x1.c199bep+0f, 0x1.cb720ep+0f,
    0x1.d5818ep+0f, 0x1.dfc974p+0f, 0x1.ea4afap+0f, 0x1.f50766p+0f,
};
static const float fl__exptab_lo_f32[32] __attribute__((aligned(64), unused)) = {
    0.0f, -0x1.9d4f52p-25f, 0x1.9f3122p-25f, -0x1.fdb496p-25f,
    -0x1.c15742p-27f, -0x1.d2e8cap-25f, 0x1.ceac48p-25f, -0x1.5c0424p-25f,
    0x1.4636e2p-25f, -0x1.18aac6p-25f, 0x1.824684p-25f, 0x1.8624b4p-30f,
    -0x1.593abcp-25f, -0x1.2c561p-25f, -0x1.5bd5ecp-27f, -0x1.f8b55p-25f,
    0x1.9fcef4p-26f, 0x1.1d8beep-25f, -0x1.829fdp-25f, -0x1.accc7cp-26f,
    0x1.15506ep-27f, -0x1.e64744p-25f, 0x1.51f848p-27f, -0x1.b83b54p-25f,
    -0x1.a94b14p-26f, -0x1.a09438p-25f, -0x1.3d56b2p-27f, -0x1.8837ccp-27f,
    -0x1.822dbcp-27f, -0x1.908c94p-25f, 0x1.52486cp-27f, -0x1.246ebp-26f,
};
/* t[j] for j = the low 5 bits of each lane of idx */
FL__INLINE fl_v_f32 fl__lut32_f32(const float *t, fl_vi_f32 idx)
{
    return (fl_v_f32)_mm512_permutex2var_ps(_mm512_load_ps(t), (__m512i)idx,
                                            _mm512_load_ps(t + 16));
}
#endif

#if FL__ISA == FL__ISA_AVX2
/* The AVX2 tables: 8 entries, one register each (VPERMPS reads the low 3 bits of each
 * index lane).  log: 8 intervals of d in [1, 2], [1, 17/16) then 1/8 wide, then the
 * last one [29/16, 2]; c_j ~ 1 / its centre with 5 bits (c_0 = 1), so that
 * f = d c_j - 1 in [-0.0704, 0.0665] is a multiple of 2^-28: exact for |f| < 1/16, else
 * within 2^-28 (one bit); -log(c_j) = hi + lo to ~2^-48 relative (mpmath, 200 bits). */
static const float fl__logtab8_c_f32[8] __attribute__((aligned(32), unused)) = {
    0x1p+0f, 0x1.cp-1f, 0x1.ap-1f, 0x1.7p-1f, 0x1.5p-1f, 0x1.4p-1f, 0x1.2p-1f, 0x1.1p-1f,
};
static const float fl__logtab8_hi_f32[8] __attribute__((aligned(32), unused)) = {
    0.0f, 0x1.1178e8p-3f, 0x1.a93ed4p-3f, 0x1.522aep-2f,
    0x1.af5296p-2f, 0x1.e148a2p-2f, 0x1.269622p-1f, 0x1.43dap-1f,
};
static const float fl__logtab8_lo_f32[8] __attribute__((aligned(32), unused)) = {
    0.0f, 0x1.13f23ep-30f, -0x1.ba930ep-30f, 0x1.ce28f6p-28f,
    -0x1.b6e646p-27f, -0x1.76364cp-28f, -0x1.d9648ep-26f, -0x1.a0db88p-26f,
};
/* 2^(j / 8) = hi + lo (to ~2^-48 relative; mpmath, 200 bits) */
static const float fl__exptab8_hi_f32[8] __attribute__((aligned(32), unused)) = {
    0x1p+0f, 0x1.172b84p+0f, 0x1.306fep+0f, 0x1.4bfdaep+0f,
    0x1.6a09e6p+0f, 0x1.8ace54p+0f, 0x1.ae89fap+0f, 0x1.d5818ep+0f,
};
static const float fl__exptab8_lo_f32[8] __attribute__((aligned(32), unused)) = {
    0.0f, -0x1.c15742p-27f, 0x1.4636e2p-25f, -0x1.593abcp-25f,
    0x1.9fcef4p-26f, 0x1.15506ep-27f, -0x1.a94b14p-26f, -0x1.822dbcp-27f,
};
/* t[j] for j = the low 3 bits of each lane of idx */
FL__INLINE fl_v_f32 fl__lut8_f32(const float *t, fl_vi_f32 idx)
{
    return (fl_v_f32)_mm256_permutevar8x32_ps(_mm256_load_ps(t), (__m256i)idx);
}
#endif

/* 1 / (d + dl) for d in [1, 2], |dl| <= ulp(d): an estimate of 1 / d (AVX-512: VRCP14,
 * relative error < 2^-14; elsewhere the division) and one Newton step that includes dl */
FL__INLINE fl_v_f32 fl__recip_1pe_f32(fl_v_f32 d, fl_v_f32 dl)
{
    const fl_v_f32 one = fl_set1_f32(1.0f);
#if FL__ISA == FL__ISA_AVX512
    const fl_v_f32 r0 = (fl_v_f32)_mm512_rcp14_ps((__m512)d);
#else
    const fl_v_f32 r0 = one / d;
#endif
    const fl_v_f32 eps = fl_fma_f32(-dl, r0, fl__fnma_exact_f32(d, r0, one)); /* 1 - (d + dl) r0 */
    return fl_fma_f32(r0, eps, r0);
}

/* log(d + dl) = log1p(e) for d + dl = 1 + e exactly, e = eh + el in (0, 1] (el = 0 if e is
 * single), d in [1, 2], |dl| <= ulp(d) / 2, given rr ~ 1 / (d + dl) (to ~1 ulp):
 *   log(d) + log1p(dl / d),  log1p(dl / d) ~ dl rr.
 * Where d = 1 and L ~ dl, the neglected (dl / d)^2 / 2, rr's rounding and dl's own are up
 * to half an ulp each; when exact, the polynomial is evaluated where e is small at f = eh itself
 * (exact) plus el / (1 + e), with no d, dl or rr in it: table targets in the first
 * interval (c = 1: AVX-512 e < 2^-5 + 2^-24, AVX2 e < 2^-4 + 2^-24; in the other
 * intervals L >= 0.03 and dl rr is within 2^-48 of log1p(dl / d), below a hundredth of an
 * ulp), other targets where the reduction's k is 0 (e <= 1/2, inside the polynomial's
 * range).
 * Tables: f = d c - 1 for the interval's c (AVX-512: exact or within 2^-31; AVX2: exact
 * or within 2^-28, where |f| > 1/16 and L > 0.06), log(d) = -log(c) +
 * log1p(f), log1p(f) = f + f^2 q(f): AVX-512, |f| <= 1/32, q the degree-3 Taylor
 * polynomial (relative error < 2^-27.6); AVX2, |f| <= 0.0704, q a degree-4 minimax
 * polynomial (relative error 2^-29.8 with its float coefficients; mpmath, Lawson).  f's
 * small terms (with the dl or el term and the table's low part) are added to f with one
 * rounding, then the table's high part. */
FL__INLINE fl_v_f32 fl__log_1pe_f32(fl_v_f32 d, fl_v_f32 dl, fl_v_f32 rr, fl_v_f32 eh,
                                    fl_v_f32 el, int exact)
{
    const fl_v_f32 one = fl_set1_f32(1.0f);
#if FL__ISA == FL__ISA_AVX512
    /* interval index: the top 5 mantissa bits (VPERMT2PS reads the low 5 bits of the
     * lane); d = 2 is clamped to the bits of its predecessor, the last interval */
    const __m512i j = _mm512_srli_epi32(
        _mm512_min_epi32((__m512i)FL__I32(d), _mm512_set1_epi32(0x3fffffff)), 18);
    const fl_v_f32 lo = fl__lut32_f32(fl__logtab_lo_f32, (fl_vi_f32)j);
    fl_v_f32 f = fl_fma_f32(d, fl__lut32_f32(fl__logtab_c_f32, (fl_vi_f32)j), -one);
    fl_v_f32 corr; /* the dl or el term, plus the table's low part */
    if (exact) {
        const __mmask16 j0 = _mm512_testn_epi32_mask(j, _mm512_set1_epi32(31));
        f = (fl_v_f32)_mm512_mask_mov_ps((__m512)f, j0, (__m512)eh);
        corr = (fl_v_f32)_mm512_mask_mov_ps((__m512)(dl * rr), j0, (__m512)el) + lo;
    } else {
        corr = fl_fma_f32(dl, rr, lo);
    }
    const fl_v_f32 f2 = f * f;
    const fl_v_f32 q = fl_fma_f32(f2, fl_fma_f32(f, fl_set1_f32(0x1.99999ap-3f), fl_set1_f32(-0.25f)),
                                  fl_fma_f32(f, fl_set1_f32(0x1.555556p-2f), fl_set1_f32(-0.5f)));
    return fl__lut32_f32(fl__logtab_hi_f32, (fl_vi_f32)j) + (f + fl_fma_f32(f2, q, corr));
#elif FL__ISA == FL__ISA_AVX2
    /* interval index: the top 3 mantissa bits of d + 1/16 (exact below 2 - 1/16), which
     * is clamped to the bits of the float below 2 (j = 7) */
    const fl_vi_f32 j = FL__I32(_mm256_min_epi32((__m256i)FL__I32(d + 0.0625f),
                                                 _mm256_set1_epi32(0x3fffffff))) >> 20;
    const fl_v_f32 lo = fl__lut8_f32(fl__logtab8_lo_f32, j);
    fl_v_f32 f = fl_fma_f32(d, fl__lut8_f32(fl__logtab8_c_f32, j), -one);
    fl_v_f32 corr; /* the dl or el term, plus the table's low part */
    if (exact) {
        const fl_vi_f32 j0 = d < 1.0625f; /* the first interval */
        f = fl_select_f32(j0, eh, f);
        corr = fl_select_f32(j0, el * rr, dl * rr) + lo;
    } else {
        corr = fl_fma_f32(dl, rr, lo);
    }
    fl_v_f32 q = fl_fma_f32(fl_set1_f32(-0x1.5ac2c4p-3f), f, fl_set1_f32(0x1.9b8176p-3f));
    q = fl_fma_f32(q, f, fl_set1_f32(-0x1.fffb1ep-3f));
    q = fl_fma_f32(q, f, fl_set1_f32(0x1.5554fap-2f));
    q = fl_fma_f32(q, f, fl_set1_f32(-0.5f));
    return fl__lut8_f32(fl__logtab8_hi_f32, j) + (f + fl_fma_f32(f * f, q, corr));
#else
    /* d = 2^k (1 + f), 1 + f in (0.75, 1.5], f exact, k in {0, 1} */
    const fl_vi_f32 id = FL__I32(d), im = id - FL__LOGF_OFF;
    fl_v_f32 f = FL__F32(id - (im & (int32_t)0xff800000)) - one;
    const fl_v_f32 nk = __builtin_convertvector(-(im >> 23), fl_v_f32);
    fl_v_f32 corr = dl * rr;
    if (exact) { /* k = 0 (e <= 1/2): log1p(eh) + el / (1 + e), eh exact */
        const fl_vi_f32 k0 = (im >> 23) == 0;
        f = fl_select_f32(k0, eh, f);
        corr = fl_select_f32(k0, el * rr, corr);
    }
    return fl_fma_f32(nk, fl_set1_f32(-FL__LN2F_HI), fl__log1pf_inner(f, nk, corr, 1));
#endif
}

/* exp(x) = eh + el to ~2^-30 relative for -87 <= x <= 0 (no range check), with fewer
 * operations than fl__exp_dd_f32 where a table is cheap: x = (N k + j) ln2 / N + r,
 * exp(x) = 2^k T_j (1 + p(r)), T_j = 2^(j / N) as a double-word, the rounding of
 * T_hi (1 + p) recovered by an FMA.
 *   AVX-512: N = 32 (VPERMT2PS), |r| <= ln2 / 64, p the degree-3 Taylor polynomial of
 *            e^r - 1 (relative error 2^-30.7);
 *   AVX2:    N = 8 (VPERMPS), |r| <= ln2 / 16, p = r + r^2 (1/2 + c3 r + c4 r^2), minimax
 *            (relative error 2^-32.3 with its float coefficients; mpmath, Lawson);
 *   others:  fl__exp_dd_f32.
 * ln2 / N is split Cody-Waite style with 12 bits in the high part (n ln2/N exact for
 * |n| < 2^12).  eh is normal (exp(-87) > 2^-126; 2^k T_j (1 + p) >= 2^-126 for x >= -87:
 * the lowest k comes with j >= N / 2), el may be subnormal. */
FL__INLINE fl_v_f32 fl__exp_dw_f32(fl_v_f32 x, fl_v_f32 *el)
{
#if FL__ISA == FL__ISA_AVX512 || FL__ISA == FL__ISA_AVX2
    const fl_v_f32 shift = fl_set1_f32(FL__EXPF_SHIFT);
#if FL__ISA == FL__ISA_AVX512
    const fl_v_f32 t = fl_fma_f32(x, fl_set1_f32(0x1.715476p+5f), shift); /* 32 / ln2 */
    const fl_v_f32 n = t - shift;
    const fl_v_f32 rhi = fl_fma_f32(n, fl_set1_f32(-0x1.62ep-6f), x); /* ln2/32, 12 bits: exact */
    const fl_v_f32 r = fl_fma_f32(n, fl_set1_f32(-0x1.0bfbe8p-20f), rhi);
    const fl_v_f32 p = fl_fma_f32(r * r, fl_fma_f32(r, fl_set1_f32(0x1.555556p-3f), fl_set1_f32(0.5f)), r);
    const fl_vi_f32 it = FL__I32(t); /* n in the low bits: j = n mod 32, the table index */
    const fl_v_f32 th = fl__lut32_f32(fl__exptab_hi_f32, it), tl = fl__lut32_f32(fl__exptab_lo_f32, it);
    const fl_vi_f32 kb = (it >> 5) << 23; /* k << 23 (the shift's bits leave the word) */
#else
    const fl_v_f32 t = fl_fma_f32(x, fl_set1_f32(0x1.715476p+3f), shift); /* 8 / ln2 */
    const fl_v_f32 n = t - shift;
    const fl_v_f32 rhi = fl_fma_f32(n, fl_set1_f32(-0x1.62ep-4f), x); /* ln2/8, 12 bits: exact */
    const fl_v_f32 r = fl_fma_f32(n, fl_set1_f32(-0x1.0bfbe8p-18f), rhi);
    const fl_v_f32 q = fl_fma_f32(fl_fma_f32(fl_set1_f32(0x1.554826p-5f), r, fl_set1_f32(0x1.555c84p-3f)),
                                  r, fl_set1_f32(0.5f));
    const fl_v_f32 p = fl_fma_f32(r * r, q, r);
    const fl_vi_f32 it = FL__I32(t); /* n in the low bits: j = n mod 8, the table index */
    const fl_v_f32 th = fl__lut8_f32(fl__exptab8_hi_f32, it), tl = fl__lut8_f32(fl__exptab8_lo_f32, it);
    const fl_vi_f32 kb = (it >> 3) << 23; /* k << 23 (the shift's bits leave the word) */
#endif
    const fl_v_f32 h = fl_fma_f32(th, p, th);
    *el = (fl_fma_f32(th, p, th - h) + tl) * FL__F32(kb + 0x3f800000);
    return FL__F32(FL__I32(h) + kb);
#else
    return fl__exp_dd_f32(x, el);
#endif
}

/* fast body, |x| <= 87 */
FL__INLINE fl_v_f32 fl__logistic_u2_body_f32(fl_v_f32 x, fl_v_f32 *L, fl_v_f32 *r, fl_v_f32 *er)
{
    const fl_v_f32 one = fl_set1_f32(1.0f);
    fl_v_f32 el;
    const fl_v_f32 e = fl__exp_dw_f32(fl__negabs_f32(x), &el); /* exp(-|x|) = e + el */
    const fl_v_f32 d = one + e, dl = ((one - d) + e) + el;        /* 1 + e + el = d + dl */
    const fl_v_f32 rr = fl__recip_1pe_f32(d, dl);
    *r = rr;
    *er = fl_fma_f32(e, rr, el * rr);
    *L = fl__log_1pe_f32(d, dl, rr, e, el, 0);
    return e;
}

/* For float32 losses that raise a sigmoid to a power (focal), |x| <= 87 (no range check:
 * the caller's).  With e = exp(-|x|) = eh + el (fl__exp_dw_f32):
 *   m = mh + ml = sigmoid(|x|) = 1 / (1 + e) in the lanes of `up`,
 *                 sigmoid(-|x|) = e / (1 + e) in the others;   to ~2^-44 relative
 *   *mc = 1 - m (the other one: its numerator times r0):      within ~2 ulp
 *   *L  = log1p(e):                                            within ~1 ulp
 * m's numerator (1 or eh + el) is chosen before the division: with r0 = 1 / d (d + dl =
 * 1 + e, r0 within 1 ulp), mh = n r0 and ml = ((n - mh d) - mh dl + nl) r0, the first
 * residual exact (FMA), so r0's error enters only squared.  Returns eh. */
FL__INLINE fl_v_f32 fl__logistic_m_dw_f32(fl_v_f32 x, fl_vi_f32 up, fl_v_f32 *L, fl_v_f32 *mh,
                                          fl_v_f32 *ml, fl_v_f32 *mc)
{
    const fl_v_f32 one = fl_set1_f32(1.0f);
    fl_v_f32 el;
    const fl_v_f32 eh = fl__exp_dw_f32(fl__negabs_f32(x), &el); /* e = eh + el */
    const fl_v_f32 d = one + eh, dl = ((one - d) + eh) + el;     /* 1 + e = d + dl */
#if FL__ISA == FL__ISA_AVX512
    fl_v_f32 r0 = (fl_v_f32)_mm512_rcp14_ps((__m512)d);
    r0 = fl_fma_f32(r0, fl__fnma_exact_f32(d, r0, one), r0); /* 1 / d within ~1 ulp */
#else
    const fl_v_f32 r0 = one / d;
#endif
    const fl_v_f32 nh = fl_select_f32(up, one, eh), nl = FL__F32(~up & FL__I32(el));
    const fl_v_f32 h = nh * r0;
    const fl_v_f32 res = fl_fma_f32(-h, dl, fl__fnma_exact_f32(d, h, nh)) + nl;
    *mh = h;
    *ml = res * r0;
    *mc = fl_select_f32(up, eh, one) * r0;
    *L = fl__log_1pe_f32(d, dl, r0, eh, el, 1);
    return eh;
}

FL__COLD fl_v_f32 fl__logistic_u2_slow_f32(fl_v_f32 x, fl_v_f32 *L, fl_v_f32 *r, fl_v_f32 *er)
{
    const fl_vi_f32 big = (FL__I32(x) & 0x7fffffff) > 0x42ae0000; /* |x| > 87, inf, NaN */
    fl_v_f32 Lb, rb, erb;
    const fl_v_f32 e = fl__logistic_u2_body_f32(fl_select_f32(big, fl_set1_f32(0.0f), x), &Lb, &rb, &erb);
    const fl_v_f32 eb = fl_exp_u1_f32(fl__negabs_f32(x)); /* NaN stays NaN */
    const fl_v_f32 rbig = fl_select_f32(eb == eb, fl_set1_f32(1.0f), eb);
    *L = fl_select_f32(big, eb, Lb);
    *r = fl_select_f32(big, rbig, rb);
    *er = fl_select_f32(big, eb, erb);
    return fl_select_f32(big, eb, e);
}

/* lanes with |x| > 87, inf or NaN: the slow path of fl_logistic_u2_f32; the others are
 * fl__logistic_u2_body_f32's and fl__logistic_m_dw_f32's range (for callers that
 * check a block of vectors once) */
FL__INLINE fl_vi_f32 fl_logistic_u2_big_f32(fl_v_f32 x)
{
    return (FL__I32(x) & 0x7fffffff) > 0x42ae0000;
}
FL__INLINE fl_v_f32 fl_logistic_u2_f32(fl_v_f32 x, fl_v_f32 *L, fl_v_f32 *r, fl_v_f32 *er)
{
    if (FL__UNLIKELY(FL__BIG87_F32(x))) return fl__logistic_u2_slow_f32(x, L, r, er);
    return fl__logistic_u2_body_f32(x, L, r, er);
}

/* =============================================================== float64 (1 ulp) */
/*
 * Same structure as float32.  The checks that pick the fast body look at the high 32 bits
 * of each double with 32-bit compares (SSE2 has no 64-bit compare); the slow paths use
 * 64-bit compares.  No int64 <-> double conversions (AVX2 has none): n comes from the
 * shift trick, k from the magic 2^52 + k trick.
 */
#define FL__EXP_LOG2E 0x1.71547652b82fep+0
#define FL__EXP_SHIFT 0x1.8p+52           /* bits 0x4338000000000000 */
#define FL__LN2_HI 0x1.62e42feep-1        /* fdlibm ln2_hi, 32 bits */
#define FL__LN2_LO 0x1.a39ef35793c76p-33  /* ln2 - LN2_HI */

/* mask of the 32-bit lanes that are the high words of the doubles */
#define FL__HI32_MASK FL__I32(fl__set1_i64((int64_t)0xffffffff00000000LL))
FL__INLINE int fl__any_hi32(fl_vi_f32 m) { return fl__any_bits(m & FL__HI32_MASK); }

/* exp(r) for r = x - n ln2 in the same form as float32; Q of degree 9 (relative error
 * 2^-57.9 on |r| <= 0.3468). */
FL__INLINE fl_v_f64 fl__exp_kernel_f64(fl_v_f64 x, fl_v_f64 *t_out, fl_v_f64 *pl_out)
{
    const fl_v_f64 shift = fl_set1_f64(FL__EXP_SHIFT);
    fl_v_f64 t = fl_fma_f64(x, fl_set1_f64(FL__EXP_LOG2E), shift);
    fl_v_f64 n = t - shift;
    fl_v_f64 rhi = fl_fma_f64(n, fl_set1_f64(-FL__LN2_HI), x); /* exact */
    fl_v_f64 rlo = n * -FL__LN2_LO;
    fl_v_f64 r = rhi + rlo;
    /* Q(r) = c0 + c1 r + ... + c9 r^9, Estrin's scheme */
    fl_v_f64 r2 = r * r, r4 = r2 * r2;
    fl_v_f64 q01 = fl_fma_f64(FL__K64(0x1.55555555554f9p-3), r, FL__K64(0x1.000000000000ap-1));
    fl_v_f64 q23 = fl_fma_f64(FL__K64(0x1.1111111127d4ap-7), r, FL__K64(0x1.5555555550832p-5));
    fl_v_f64 q45 = fl_fma_f64(FL__K64(0x1.a01a012a008b1p-13), r, FL__K64(0x1.6c16c1843b84ap-10));
    fl_v_f64 q67 = fl_fma_f64(FL__K64(0x1.71df25c753de1p-19), r, FL__K64(0x1.a01999da42cb1p-16));
    fl_v_f64 q89 = fl_fma_f64(FL__K64(0x1.ad7f32f8413dfp-26), r, FL__K64(0x1.28ada364cc7dep-22));
    fl_v_f64 q = fl_fma_f64(r4, fl_fma_f64(r4, q89, fl_fma_f64(r2, q67, q45)),
                            fl_fma_f64(r2, q23, q01));
    *t_out = t;
    fl_v_f64 u = fl_fma_f64(r2, q, rlo);
    fl_v_f64 s = rhi + u;
    fl_v_f64 ph = s + 1.0;
    if (pl_out) *pl_out = ((1.0 - ph) + s) + (u - (s - rhi));
    return ph;
}

FL__COLD fl_v_f64 fl__exp_slow_f64(fl_v_f64 x)
{
    const fl_vi_f64 ix = FL__I64(x), ax = ix & (int64_t)0x7fffffffffffffffLL;
    const fl_vi_f64 nonfinite = ax >= (int64_t)0x7ff0000000000000LL;
    const fl_vi_f64 big = ax > (int64_t)0x4091300000000000LL; /* |x| > 1100, inf, NaN */
    fl_v_f64 xs = fl_select_f64(
        big, FL__F64((ix & (int64_t)0x8000000000000000ULL) | 0x4091300000000000LL), x);
    xs = fl_select_f64(nonfinite, fl_set1_f64(0.0), xs);
    fl_v_f64 t;
    fl_v_f64 p = fl__exp_kernel_f64(xs, &t, 0);
    fl_vi_f64 n = FL__I64(t) - (int64_t)0x4338000000000000LL;
    fl_vi_f64 n1 = n >> 1, n2 = n - n1;
    fl_v_f64 y = (p * FL__F64((n1 + 1023) << 52)) * FL__F64((n2 + 1023) << 52);
    fl_v_f64 special = fl_select_f64(ix == (int64_t)0xfff0000000000000ULL,
                                     fl_set1_f64(0.0), x + x);
    return fl_select_f64(nonfinite, special, y);
}

/* exp(x), float64.  Max error 1 ulp.  Specials as fl_exp_u1_f32; +inf above 709.78,
 * gradual underflow below -708.40, +0 below -745.13. */
FL__INLINE fl_v_f64 fl_exp_u1_f64(fl_v_f64 x)
{
    if (FL__UNLIKELY(fl__any_hi32((FL__I32(x) & 0x7fffffff) > 0x40862000))) /* |x| > 708 */
        return fl__exp_slow_f64(x);
    fl_v_f64 t;
    fl_v_f64 p = fl__exp_kernel_f64(x, &t, 0);
    return FL__F64(FL__I64(p) + (FL__I64(t) << 52));
}

/* exp(x) = eh + el for |x| <= 708 */
FL__INLINE fl_v_f64 fl__exp_dd_f64(fl_v_f64 x, fl_v_f64 *el)
{
    fl_v_f64 t, pl;
    fl_v_f64 ph = fl__exp_kernel_f64(x, &t, &pl);
    fl_vi_f64 nb = FL__I64(t) << 52;
    *el = pl * FL__F64(nb + 0x3ff0000000000000LL);
    return FL__F64(FL__I64(ph) + nb);
}

/*
 * float64 log / log1p: as float32 (1 + f in (0.75, 1.5], f exact; for log1p
 * f = x 2^-k - (1 - 2^-k), exact for k <= 53), with log1p(f) in fdlibm's form
 *   s = f / (2 + f),  log1p(f) = f - (f^2/2 - s (f^2/2 + R(s^2)))
 * R(z) = z (c0 + c1 z + ... + c7 z^7) fitted (Remez) for s in [-1/7, 1/5]: relative
 * error 2^-62.7.  One division per vector.
 */
#define FL__LOG_OFF 0x3fe8000000000001LL /* bits of 0.75, + 1 */

FL__INLINE fl_v_f64 fl__log1p_inner_f64(fl_v_f64 f, fl_v_f64 nk, fl_v_f64 corr,
                                        int with_corr)
{
    fl_v_f64 hfsq = (0.5 * f) * f;
    fl_v_f64 s = f / (f + 2.0);
    fl_v_f64 z = s * s, z2 = z * z, z4 = z2 * z2;
    /* R(z) = z (c0 + c1 z + ... + c7 z^7), Estrin's scheme */
    fl_v_f64 r01 = fl_fma_f64(FL__K64(0x1.999999999c182p-2), z, FL__K64(0x1.555555555554fp-1));
    fl_v_f64 r23 = fl_fma_f64(FL__K64(0x1.c71c7490304eap-3), z, FL__K64(0x1.24924921e3ce4p-2));
    fl_v_f64 r45 = fl_fma_f64(FL__K64(0x1.3b35c474f04bep-3), z, FL__K64(0x1.745c4ac0534dcp-3));
    fl_v_f64 r67 = fl_fma_f64(FL__K64(0x1.1b8366bd147f8p-3), z, FL__K64(0x1.0dcb54910559fp-3));
    fl_v_f64 R = z * fl_fma_f64(z4, fl_fma_f64(z2, r67, r45), fl_fma_f64(z2, r23, r01));
    fl_v_f64 lo = fl_fma_f64(s, hfsq + R, nk * -FL__LN2_LO);
    if (with_corr) lo = lo + corr;
    return f - (hfsq - lo);
}

/* -k as a double from ib = bits - FL__LOG_OFF (k = ib >> 52, arithmetic), minus kadj */
FL__INLINE fl_v_f64 fl__neg_k_f64(fl_vi_f64 ib, fl_vi_f64 kadj)
{
    /* e = k + 2048 in [0, 4096); 2^52 + e is exact as a double */
    fl_vi_f64 e = FL__I64(FL__U64(ib ^ (int64_t)0x8000000000000000ULL) >> 52) + kadj;
    return (0x1p52 + 2048.0) - FL__F64(e | 0x4330000000000000LL);
}

FL__INLINE fl_v_f64 fl__log_core_f64(fl_vi_f64 ix, fl_vi_f64 kadj)
{
    fl_vi_f64 ib = ix - FL__LOG_OFF;
    fl_v_f64 f = FL__F64(ix - (ib & (int64_t)0xfff0000000000000ULL)) - 1.0;
    fl_v_f64 nk = fl__neg_k_f64(ib, kadj);
    fl_v_f64 inner = fl__log1p_inner_f64(f, nk, f, 0);
    return fl_fma_f64(nk, fl_set1_f64(-FL__LN2_HI), inner);
}

FL__COLD fl_v_f64 fl__log_slow_f64(fl_v_f64 x)
{
    const fl_vi_f64 ix = FL__I64(x), ax = ix & (int64_t)0x7fffffffffffffffLL;
    const fl_vi_f64 sub = (ix > 0) & (ix < 0x0010000000000000LL);
    const fl_v_f64 xsub = fl_select_f64(sub, x, fl_set1_f64(0.0)) * 0x1p52;
    fl_vi_f64 ix2 = FL__I64(fl_select_f64(sub, xsub, x));
    const fl_vi_f64 bad = (ix2 < 0x0010000000000000LL) | (ix2 >= 0x7ff0000000000000LL);
    ix2 = FL__I64(fl_select_f64(bad, fl_set1_f64(1.0), FL__F64(ix2)));
    fl_v_f64 y = fl__log_core_f64(ix2, sub & -52);
    fl_v_f64 s = fl_select_f64(ix < 0, FL__F64(fl__set1_i64(0x7ff8000000000000LL)), x + x);
    s = fl_select_f64(ax == 0, fl_set1_f64(-__builtin_inf()), s);
    s = fl_select_f64(ax > 0x7ff0000000000000LL, x + x, s);
    return fl_select_f64(bad, s, y);
}

/* log(x), float64.  Max error 1 ulp.  Specials as fl_log_u1_f32. */
FL__INLINE fl_v_f64 fl_log_u1_f64(fl_v_f64 x)
{
    if (FL__UNLIKELY(fl__any_hi32(FL__U32(x) - 0x00100000u >= 0x7fe00000u))) /* unsigned: wraps */
        return fl__log_slow_f64(x);
    return fl__log_core_f64(FL__I64(x), fl__set1_i64(0));
}

FL__INLINE fl_v_f64 fl__log1p_reduce_f64(fl_v_f64 x, fl_v_f64 *nk)
{
    fl_vi_f64 ib = FL__I64(x + 1.0) - FL__LOG_OFF;
    fl_vi_f64 kb = ib & (int64_t)0xfff0000000000000ULL;     /* k << 52, k in [-54, 1024] */
    fl_v_f64 xs = FL__F64(FL__I64(x) - kb);                  /* x 2^-k, exact */
    fl_v_f64 s4 = FL__F64(0x4010000000000000LL - kb);        /* 4 2^-k, normal */
    *nk = fl__neg_k_f64(ib, fl__set1_i64(0));
    return xs - fl_fma_f64(s4, fl_set1_f64(-0.25), fl_set1_f64(1.0));
}

FL__INLINE fl_v_f64 fl__log1p_core_f64(fl_v_f64 x)
{
    fl_v_f64 nk;
    fl_v_f64 f = fl__log1p_reduce_f64(x, &nk);
    fl_v_f64 inner = fl__log1p_inner_f64(f, nk, f, 0);
    return fl_fma_f64(nk, fl_set1_f64(-FL__LN2_HI), inner);
}

FL__COLD fl_v_f64 fl__log1p_slow_f64(fl_v_f64 x)
{
    const fl_vi_f64 ix = FL__I64(x);
    const fl_vi_f64 bad = (ix >= 0x7ff0000000000000LL) |
                          (FL__U64(ix) >= 0xbff0000000000000ULL);
    fl_v_f64 y = fl__log1p_core_f64(fl_select_f64(bad, fl_set1_f64(0.0), x));
    fl_v_f64 s = fl_select_f64(ix == (int64_t)0xbff0000000000000ULL,
                               fl_set1_f64(-__builtin_inf()),
                               FL__F64(fl__set1_i64(0x7ff8000000000000LL)));
    s = fl_select_f64((ix >= 0x7ff0000000000000LL) |
                      ((ix & (int64_t)0x7fffffffffffffffLL) > 0x7ff0000000000000LL), x + x, s);
    return fl_select_f64(bad, s, y);
}

/* log1p(x), float64.  Max error 1 ulp.  Specials as fl_log1p_u1_f32; log1p(x) = x for
 * |x| < 2^-53. */
FL__INLINE fl_v_f64 fl_log1p_u1_f64(fl_v_f64 x)
{
    const fl_vi_f32 hx = FL__I32(x);
    if (FL__UNLIKELY(fl__any_hi32((hx >= 0x7ff00000) | (FL__U32(hx) >= 0xbff00000u))))
        return fl__log1p_slow_f64(x);
    return fl__log1p_core_f64(x);
}

/* a - b c with the product exact (FMA, or Dekker's product with 2^27 + 1 splitting) */
FL__INLINE fl_v_f64 fl__fnma_exact_f64(fl_v_f64 b, fl_v_f64 c, fl_v_f64 a)
{
#if FL_HAVE_FMA
    return fl_fma_f64(-b, c, a);
#else
    fl_v_f64 p = b * c;
    fl_v_f64 bs = b * 134217729.0, bh = bs - (bs - b), bl = b - bh;
    fl_v_f64 cs = c * 134217729.0, ch = cs - (cs - c), cl = c - ch;
    fl_v_f64 err = ((bh * ch - p) + bh * cl + bl * ch) + bl * cl;
    return (a - p) - err;
#endif
}

/* |x| > 708 (high words), inf or NaN */
#define FL__BIG708_F64(x) fl__any_hi32((FL__I32(x) & 0x7fffffff) > 0x40862000)

FL__INLINE fl_v_f64 fl__softplus_tail_f64(fl_v_f64 x, fl_v_f64 eh, fl_v_f64 el)
{
    const fl_vi_f64 ix = FL__I64(x);
    fl_v_f64 nk;
    fl_v_f64 f = fl__log1p_reduce_f64(eh, &nk);
    fl_v_f64 inv = fl_fma_f64(fl_fma_f64(fl_set1_f64(0x1.4afd78p-2), eh,
                                         fl_set1_f64(-0x1.9dbcd6p-1)),
                              eh, fl_set1_f64(0x1.fad412p-1));
    fl_v_f64 inner = fl__log1p_inner_f64(f, nk, el * inv, 1);
    fl_v_f64 a = FL__F64(ix & ~(ix >> 63)), b = nk * -FL__LN2_HI;
    fl_v_f64 s = a + b, bb = s - a;
    fl_v_f64 err = (a - (s - bb)) + (b - bb);
    return s + (err + inner);
}

/* softplus for |x| <= 708 */
FL__INLINE fl_v_f64 fl__softplus_body_f64(fl_v_f64 x)
{
    fl_v_f64 el;
    fl_v_f64 eh = fl__exp_dd_f64(fl__negabs_f64(x), &el); /* exp(-|x|) */
    return fl__softplus_tail_f64(x, eh, el);
}

FL__COLD fl_v_f64 fl__softplus_slow_f64(fl_v_f64 x)
{
    const fl_vi_f64 ix = FL__I64(x);
    const fl_vi_f64 big = (ix & (int64_t)0x7fffffffffffffffLL) > 0x4086200000000000LL;
    fl_v_f64 y = fl__softplus_body_f64(fl_select_f64(big, fl_set1_f64(0.0), x));
    fl_v_f64 e = fl_exp_u1_f64(fl_select_f64(ix < 0, x, fl_set1_f64(0.0)));
    return fl_select_f64(big, fl_select_f64(ix < 0, e, x), y);
}

/* softplus(x), float64, as fl_softplus_u1_f32 (threshold 708).  Max error 1 ulp. */
FL__INLINE fl_v_f64 fl_softplus_u1_f64(fl_v_f64 x)
{
    if (FL__UNLIKELY(FL__BIG708_F64(x))) return fl__softplus_slow_f64(x);
    return fl__softplus_body_f64(x);
}

FL__INLINE fl_v_f64 fl__sigmoid_tail_f64(fl_v_f64 x, fl_v_f64 eh, fl_v_f64 el)
{
    const fl_vi_f64 ix = FL__I64(x);
    fl_v_f64 d = eh + 1.0;
    fl_v_f64 dl = ((1.0 - d) + eh) + el;
    fl_v_f64 inv = 1.0 / d;
    fl_vi_f64 neg = ix >> 63;
    fl_v_f64 num = fl_select_f64(neg, eh, fl_set1_f64(1.0));
    fl_v_f64 numl = FL__F64(neg & FL__I64(el));
    fl_v_f64 q = num * inv;
    fl_v_f64 corr = fl_fma_f64(-q, dl, fl__fnma_exact_f64(q, d, num) + numl);
    return fl_fma_f64(corr, inv, q);
}

/* sigmoid for |x| <= 708 */
FL__INLINE fl_v_f64 fl__sigmoid_body_f64(fl_v_f64 x)
{
    fl_v_f64 el;
    fl_v_f64 eh = fl__exp_dd_f64(fl__negabs_f64(x), &el); /* exp(-|x|) */
    return fl__sigmoid_tail_f64(x, eh, el);
}

FL__COLD fl_v_f64 fl__sigmoid_slow_f64(fl_v_f64 x)
{
    const fl_vi_f64 ix = FL__I64(x), ax = ix & (int64_t)0x7fffffffffffffffLL;
    const fl_vi_f64 big = ax > 0x4086200000000000LL;
    fl_v_f64 y = fl__sigmoid_body_f64(fl_select_f64(big, fl_set1_f64(0.0), x));
    fl_v_f64 e = fl_exp_u1_f64(fl_select_f64(ix < 0, x, fl_set1_f64(0.0)));
    fl_v_f64 pos = fl_select_f64(ax > 0x7ff0000000000000LL, x + x, fl_set1_f64(1.0));
    return fl_select_f64(big, fl_select_f64(ix < 0, e, pos), y);
}

/* sigmoid(x), float64, as fl_sigmoid_u1_f32 (threshold 708).  Max error 1 ulp. */
FL__INLINE fl_v_f64 fl_sigmoid_u1_f64(fl_v_f64 x)
{
    if (FL__UNLIKELY(FL__BIG708_F64(x))) return fl__sigmoid_slow_f64(x);
    return fl__sigmoid_body_f64(x);
}

/* softplus(x) and sigmoid(x) together (one exp): returns fl_softplus_u1_f64(x) and
 * stores fl_sigmoid_u1_f64(x) in *sig, the same bits as the separate calls.  For the
 * logistic losses: loss from softplus(+-x), gradient from sigmoid(x). */
FL__INLINE fl_v_f64 fl_softplus_sigmoid_u1_f64(fl_v_f64 x, fl_v_f64 *sig)
{
    if (FL__UNLIKELY(FL__BIG708_F64(x))) {
        *sig = fl__sigmoid_slow_f64(x);
        return fl__softplus_slow_f64(x);
    }
    fl_v_f64 el;
    fl_v_f64 eh = fl__exp_dd_f64(fl__negabs_f64(x), &el); /* exp(-|x|) */
    *sig = fl__sigmoid_tail_f64(x, eh, el);
    return fl__softplus_tail_f64(x, eh, el);
}

/* Two-stage form, for software pipelining or blocking (a whole softplus is one long
 * dependency chain, so a loop of it is latency-bound; computing stage 1 for the next
 * vector, or for a block of vectors into L1 scratch, before stage 2 of this one lets
 * the two overlap -- about 1.5x faster).  Same bits as the one-call functions.
 *   hi = fl_exp_negabs_f64(x, &lo):  exp(-|x|) = hi + lo (to ~2^-48 relative);
 *                                       hi is exactly fl_exp_u1_f64(-|x|)
 *   fl_softplus_from_exp_u1_f64(x, hi, lo) = fl_softplus_u1_f64(x)
 *   fl_sigmoid_from_exp_u1_f64(x, hi, lo)  = fl_sigmoid_u1_f64(x) */
FL__COLD fl_v_f64 fl__exp_negabs_slow_f64(fl_v_f64 x, fl_v_f64 *lo)
{
    const fl_v_f64 nx = fl__negabs_f64(x);
    const fl_vi_f64 big = (FL__I64(x) & 0x7fffffffffffffffLL) > 0x4086200000000000LL;
    fl_v_f64 l;
    const fl_v_f64 h = fl__exp_dd_f64(fl_select_f64(big, fl_set1_f64(0.0), nx), &l);
    *lo = fl_select_f64(big, fl_set1_f64(0.0), l);
    return fl_select_f64(big, fl_exp_u1_f64(nx), h);
}
FL__INLINE fl_v_f64 fl_exp_negabs_f64(fl_v_f64 x, fl_v_f64 *lo)
{
    if (FL__UNLIKELY(FL__BIG708_F64(x))) return fl__exp_negabs_slow_f64(x, lo);
    return fl__exp_dd_f64(fl__negabs_f64(x), lo);
}
FL__INLINE fl_v_f64 fl_softplus_from_exp_u1_f64(fl_v_f64 x, fl_v_f64 hi, fl_v_f64 lo)
{
    if (FL__UNLIKELY(FL__BIG708_F64(x))) return fl__softplus_slow_f64(x);
    return fl__softplus_tail_f64(x, hi, lo);
}
FL__INLINE fl_v_f64 fl_sigmoid_from_exp_u1_f64(fl_v_f64 x, fl_v_f64 hi, fl_v_f64 lo)
{
    if (FL__UNLIKELY(FL__BIG708_F64(x))) return fl__sigmoid_slow_f64(x);
    return fl__sigmoid_tail_f64(x, hi, lo);
}

/* The logistic pieces of x from one exp, one log1p and one division, with one range
 * check (for the logistic losses: BCE with logits, focal):
 *   *L  = log1p(exp(-|x|)) = softplus(-|x|)   the same bits as fl_softplus_u1_f64(-|x|)
 *   *r  = sigmoid(|x|) = 1 / (1 + e)          the same bits as fl_sigmoid_u1_f64(|x|)
 *   *er = sigmoid(-|x|) = e r                 from the double-word e: <= ~1.5 ulp
 * so softplus(+-x) = max(+-x, 0) + L (one more rounding: L <= ln 2 <= the sum) and
 * sigmoid(x) = x >= 0 ? r : er.  Returns e = exp(-|x|) (= fl_exp_u1_f64(-|x|)).
 * Lanes with |x| beyond the fast range (inf, NaN) take the cold path lane by lane;
 * no lane's results depend on its neighbours.  |x| = inf: L = 0, r = 1, er = 0. */
FL__COLD fl_v_f64 fl__logistic_slow_f64(fl_v_f64 x, fl_v_f64 *L, fl_v_f64 *r, fl_v_f64 *er)
{
    fl_v_f64 lo;
    const fl_v_f64 nx = fl__negabs_f64(x), ax = -nx;
    const fl_v_f64 e = fl_exp_negabs_f64(x, &lo); /* lo = 0 in the big lanes */
    *L = fl_softplus_u1_f64(nx);
    *r = fl_sigmoid_u1_f64(ax);
    *er = fl_select_f64((FL__I64(x) & 0x7fffffffffffffffLL) > 0x4086200000000000LL, fl_sigmoid_u1_f64(nx), fl_fma_f64(e, *r, lo * *r));
    return e;
}
FL__INLINE fl_v_f64 fl_logistic_f64(fl_v_f64 x, fl_v_f64 *L, fl_v_f64 *r, fl_v_f64 *er)
{
    if (FL__UNLIKELY(FL__BIG708_F64(x))) return fl__logistic_slow_f64(x, L, r, er);
    fl_v_f64 lo;
    const fl_v_f64 nx = fl__negabs_f64(x);
    const fl_v_f64 e = fl__exp_dd_f64(nx, &lo);
    *L = fl__softplus_tail_f64(nx, e, lo);
    *r = fl__sigmoid_tail_f64(-nx, e, lo);
    *er = fl_fma_f64(e, *r, lo * *r);
    return e;
}

#endif /* FASTLOSS_VECMATH_H */
