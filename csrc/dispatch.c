/*
 * dispatch.c: which compiled target each public kernel name points at.
 *
 * Every family file is compiled once per target of FL_TARGETS (fastloss.h) with that
 * target's flags and -DFL_TARGET=<name>, giving fl_<kernel>_<dtype>_<target>.  The public
 * names fl_<kernel>_<dtype> are function pointers, initialised to the baseline and
 * re-pointed once, at import, by fl_dispatch_init() to the best target the CPU supports
 * (or the one FASTLOSS_TARGET asks for).  Features come from CPUID, trusted only when
 * XGETBV says the OS saves the matching register state (never by catching SIGILL).
 * This file is compiled for the baseline only.
 */
#include <stddef.h>
#include <string.h>

#include "fastloss.h"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FL_X86 1
#include <cpuid.h>
#endif

/* ---------------------------------------------------------------- declarations */

/* prototypes of every target's kernels */
#define FL_AS_POINTER_INIT(R, name, params) R (*name) params = name##_baseline;

#define FL_X_DECLARE(name, decl)                                                       \
    decl(float, _f32_baseline, FL_AS_FUNCTION) decl(double, _f64_baseline, FL_AS_FUNCTION)
FL_KERNELS(FL_X_DECLARE)
#if defined(FL_X86)
#define FL_X_DECLARE_AVX2(name, decl)                                                  \
    decl(float, _f32_avx2, FL_AS_FUNCTION) decl(double, _f64_avx2, FL_AS_FUNCTION)
#define FL_X_DECLARE_AVX512(name, decl)                                                \
    decl(float, _f32_avx512, FL_AS_FUNCTION) decl(double, _f64_avx512, FL_AS_FUNCTION)
FL_KERNELS(FL_X_DECLARE_AVX2)
FL_KERNELS(FL_X_DECLARE_AVX512)
#endif

/* the public pointers, pointing at the baseline until fl_dispatch_init() runs */
#define FL_X_DEFINE(name, decl)                                                        \
    decl(float, _f32, FL_AS_POINTER_INIT) decl(double, _f64, FL_AS_POINTER_INIT)
FL_KERNELS(FL_X_DEFINE)

/* ---------------------------------------------------------------- CPU features */

enum {
    FL_F_SSE2 = 1 << 0,
    FL_F_AVX2 = 1 << 1,
    FL_F_FMA = 1 << 2,
    FL_F_AVX512F = 1 << 3,
    FL_F_AVX512BW = 1 << 4,
    FL_F_AVX512DQ = 1 << 5,
    FL_F_AVX512VL = 1 << 6,
    FL_F_NEON = 1 << 7,
};

static const struct {
    int bit;
    const char *name;
} feature_names[] = {
    {FL_F_SSE2, "sse2"},         {FL_F_AVX2, "avx2"},         {FL_F_FMA, "fma"},
    {FL_F_AVX512F, "avx512f"},   {FL_F_AVX512BW, "avx512bw"}, {FL_F_AVX512DQ, "avx512dq"},
    {FL_F_AVX512VL, "avx512vl"}, {FL_F_NEON, "neon"},
};

#if defined(FL_X86)
static unsigned long long xgetbv0(void)
{
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

static int detect_features(void)
{
    int f = 0;
#if defined(FL_X86)
    unsigned int a, b, c, d;
    f |= FL_F_SSE2; /* x86-64 baseline */
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return f;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx)
        return f;
    const unsigned long long xcr0 = xgetbv0();
    const int ymm_ok = (xcr0 & 0x6) == 0x6;      /* XMM and YMM state saved by the OS */
    const int zmm_ok = (xcr0 & 0xe6) == 0xe6;    /* ... and opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_ok || !__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return f;
    if ((b >> 5) & 1)
        f |= FL_F_AVX2;
    if (fma)
        f |= FL_F_FMA;
    if (zmm_ok) {
        if ((b >> 16) & 1) f |= FL_F_AVX512F;
        if ((b >> 17) & 1) f |= FL_F_AVX512DQ;
        if ((b >> 30) & 1) f |= FL_F_AVX512BW;
        if ((b >> 31) & 1) f |= FL_F_AVX512VL;
    }
#elif defined(__aarch64__)
    f |= FL_F_NEON; /* part of the aarch64 baseline */
#endif
    return f;
}

/* ---------------------------------------------------------------- the table */

typedef struct {
    const char *name;
    int required; /* feature bits the target's code may use */
    void (*point)(void);
} fl_target;

#define FL_ASSIGN(name, tgt)                                                           \
    fl_##name##_f32 = fl_##name##_f32_##tgt;                                           \
    fl_##name##_f64 = fl_##name##_f64_##tgt;
#define FL_X_POINT_BASELINE(name, decl) FL_ASSIGN(name, baseline)
static void point_baseline(void) { FL_KERNELS(FL_X_POINT_BASELINE) }

#if defined(FL_X86)
#define FL_X_POINT_AVX2(name, decl) FL_ASSIGN(name, avx2)
#define FL_X_POINT_AVX512(name, decl) FL_ASSIGN(name, avx512)
static void point_avx2(void) { FL_KERNELS(FL_X_POINT_AVX2) }
static void point_avx512(void) { FL_KERNELS(FL_X_POINT_AVX512) }
#endif

static const fl_target targets[] = { /* worst first, as FL_TARGETS */
    {"baseline", 0, point_baseline},
#if defined(FL_X86)
    {"avx2", FL_F_AVX2 | FL_F_FMA, point_avx2},
    {"avx512", FL_F_AVX2 | FL_F_FMA | FL_F_AVX512F | FL_F_AVX512BW | FL_F_AVX512DQ | FL_F_AVX512VL,
     point_avx512},
#endif
};
#define N_TARGETS ((int)(sizeof(targets) / sizeof(targets[0])))

static int features = -1;
static const char *chosen = "baseline";

static int cpu_features(void)
{
    if (features < 0)
        features = detect_features();
    return features;
}

static int find_target(const char *name)
{
    for (int i = 0; i < N_TARGETS; i++)
        if (strcmp(targets[i].name, name) == 0)
            return i;
    return -1;
}

int fl_target_supported(const char *name)
{
    const int i = find_target(name);
    if (i < 0)
        return -1;
    return (cpu_features() & targets[i].required) == targets[i].required;
}

int fl_dispatch_init(const char *name)
{
    int i;
    if (name == NULL || name[0] == '\0') {
        for (i = N_TARGETS - 1; i > 0; i--)
            if (fl_target_supported(targets[i].name) == 1)
                break;
    } else {
        i = find_target(name);
        if (i < 0)
            return -1;
        if (fl_target_supported(name) != 1)
            return -2;
    }
    targets[i].point();
    chosen = targets[i].name;
    return 0;
}

const char *fl_dispatch_target(void) { return chosen; }

const char *fl_target_names(void)
{
#define FL_X_NAME(tgt) #tgt " "
    return FL_TARGETS(FL_X_NAME);
#undef FL_X_NAME
}

const char *fl_kernel_names(void)
{
#define FL_X_KNAME(name, decl) #name " "
    return FL_KERNELS(FL_X_KNAME);
#undef FL_X_KNAME
}

const char *fl_cpu_features(void)
{
    static char buf[128];
    size_t len = 0;
    const int f = cpu_features();
    buf[0] = '\0';
    for (size_t k = 0; k < sizeof(feature_names) / sizeof(feature_names[0]); k++) {
        if (!(f & feature_names[k].bit))
            continue;
        const size_t n = strlen(feature_names[k].name);
        if (len + n + 2 > sizeof(buf))
            break;
        if (len)
            buf[len++] = ' ';
        memcpy(buf + len, feature_names[k].name, n + 1);
        len += n;
    }
    return buf;
}

const char *fl_compiler(void)
{
#if defined(__clang__)
    return "Clang " __clang_version__;
#elif defined(__GNUC__)
    return "GCC " __VERSION__;
#elif defined(_MSC_VER)
    return "MSVC";
#else
    return "unknown C compiler";
#endif
}
