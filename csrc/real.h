/*
 * real.h: the per-dtype half of the kernel templates.
 *
 * A family file (binary.c, ...) includes itself once per dtype with FL_REAL_F32 or
 * FL_REAL_F64 defined; each pass includes this header, which (re)defines
 *   real            the element type
 *   FL(name)        name with the dtype suffix (_f32 / _f64): internal helpers, vecmath
 *   FLK(name)       name with the dtype and target suffixes (_f32_avx2): the exported
 *                   kernels, one set per target (FL_TARGET, default baseline), which
 *                   dispatch.c chooses from
 *   R_EXP, R_LOG, R_LOG1P, R_EXPM1, R_POW, R_FABS, R_SQRT   libm in that precision
 *   RC(c)           a literal in that precision
 * No -ffast-math: NaN/inf semantics are IEEE.  FP contraction is off (see setup.py),
 * so float32 results do not depend on whether the compiler fuses a*b+c.
 */
#undef real
#undef FL
#undef FLK
#undef FL_CAT3
#undef FL_CAT
#undef FL_CAT2
#undef R_EXP
#undef R_LOG
#undef R_LOG1P
#undef R_EXPM1
#undef R_POW
#undef R_FABS
#undef R_SQRT
#undef RC
#undef R_MAX

#define FL_CAT2(a, b) a##b
#define FL_CAT(a, b) FL_CAT2(a, b)
#define FL_CAT3(a, b, c) FL_CAT(FL_CAT(a, b), c)
#ifndef FL_TARGET
#define FL_TARGET baseline
#endif

#if defined(FL_REAL_F32)
#define real float
#define FL(name) FL_CAT(name, _f32)
#define FLK(name) FL_CAT3(name, _f32_, FL_TARGET)
#define R_EXP expf
#define R_LOG logf
#define R_LOG1P log1pf
#define R_EXPM1 expm1f
#define R_POW powf
#define R_FABS fabsf
#define R_SQRT sqrtf
#define RC(c) ((float)(c))
#define R_MAX FLT_MAX
#elif defined(FL_REAL_F64)
#define real double
#define FL(name) FL_CAT(name, _f64)
#define FLK(name) FL_CAT3(name, _f64_, FL_TARGET)
#define R_EXP exp
#define R_LOG log
#define R_LOG1P log1p
#define R_EXPM1 expm1
#define R_POW pow
#define R_FABS fabs
#define R_SQRT sqrt
#define RC(c) ((double)(c))
#define R_MAX DBL_MAX
#else
#error "define FL_REAL_F32 or FL_REAL_F64 before including real.h"
#endif
