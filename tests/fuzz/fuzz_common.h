/*
 * fuzz_common.h: shared pieces of the libFuzzer harnesses in tests/fuzz/ (one per kernel
 * family).  The harnesses call the per-target C kernels directly (fl_<kernel>_<dtype>_<target>,
 * declared by csrc/fastloss.h's FL_DECLARE_TARGET), so only the public C contract is used.
 *
 * Input decoding: a fuzz input is a byte string read front to back (fz_u8, fz_range, ...);
 * once it is used up, the bytes come from a splitmix64 stream seeded by the bytes read so
 * far, so a short input can still describe a large call and every input is reproducible.
 *
 * Values: each array is filled in one of two modes, chosen per call by the harness:
 *   tame  finite values in a range where every target's result is defined to within the
 *         ulp bounds the harness states (cross-target comparison applies);
 *   wild  arbitrary bit patterns mixed with special values (NaN, +-inf, +-0, subnormals,
 *         +-FLT_MAX/DBL_MAX, +-1e30, ...): only memory safety, the NaN rules, label
 *         validation and same-target invariants are checked.
 *
 * Buffers: every array (inputs, and outputs through fz_alloc_out) gets its own allocation that ends exactly where the array ends
 * (ASan reports any read or write past it), starts at a fuzzer-chosen offset of 0..15
 * elements from a 64-byte boundary (so every vector alignment is exercised), with the
 * bytes before it poisoned for ASan.
 *
 * Failure: fz_fail() prints what was violated and aborts, so libFuzzer keeps the input.
 *
 * Built two ways (see .ci/fuzz and tests/fuzz/test_fuzz_replay.py):
 *   clang -fsanitize=fuzzer,address,undefined     libFuzzer drives LLVMFuzzerTestOneInput
 *   cc -DFZ_STANDALONE                            a main() that replays files / directories
 *                                                 given as arguments (and, with -r N, runs N
 *                                                 pseudo-random inputs): no libFuzzer needed
 */
#ifndef FASTLOSS_FUZZ_COMMON_H
#define FASTLOSS_FUZZ_COMMON_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* posix_memalign, under -std=c11 */
#endif

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastloss.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FZ_ASAN 1
#endif
#ifdef FZ_ASAN
#include <sanitizer/asan_interface.h>
#define FZ_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define FZ_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define FZ_POISON(p, n) ((void)(p), (void)(n))
#define FZ_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define FZ_X86 1
#endif

/* ------------------------------------------------------------------ failure */

static const char *fz_context = ""; /* what the harness was doing: printed on failure */

__attribute__((noreturn, format(printf, 1, 2))) static void fz_fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\nFUZZ INVARIANT VIOLATED [%s]: ", fz_context);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
    abort();
}

#define FZ_CHECK(cond, ...)                                                               \
    do {                                                                                  \
        if (!(cond)) fz_fail(__VA_ARGS__);                                                \
    } while (0)

/* ------------------------------------------------------------------ input */

typedef struct {
    const uint8_t *data;
    size_t size, pos;
    uint64_t state; /* splitmix64, seeded by the bytes read */
} fz_in;

static inline void fz_init(fz_in *in, const uint8_t *data, size_t size)
{
    in->data = data;
    in->size = size;
    in->pos = 0;
    in->state = 0x9E3779B97F4A7C15ull ^ size;
}

static inline uint64_t fz_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint8_t fz_u8(fz_in *in)
{
    if (in->pos < in->size) {
        const uint8_t b = in->data[in->pos++];
        in->state = fz_mix(in->state + b + 0x9E3779B97F4A7C15ull);
        return b;
    }
    in->state += 0x9E3779B97F4A7C15ull;
    return (uint8_t)(fz_mix(in->state) >> 56);
}

static inline uint64_t fz_bytes(fz_in *in, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v |= (uint64_t)fz_u8(in) << (8 * i);
    return v;
}

static inline uint32_t fz_u32(fz_in *in) { return (uint32_t)fz_bytes(in, 4); }
static inline uint64_t fz_u64(fz_in *in) { return fz_bytes(in, 8); }

/* a value in [lo, hi] (hi - lo < 2^32), small values more likely (coverage of edge sizes) */
static inline int64_t fz_range(fz_in *in, int64_t lo, int64_t hi)
{
    if (hi <= lo) return lo;
    const uint64_t span = (uint64_t)(hi - lo) + 1;
    const uint8_t how = fz_u8(in);
    uint64_t r = fz_u32(in);
    if (how < 96) { /* a small value near lo */
        const uint64_t small = span < 70 ? span : 70;
        return lo + (int64_t)(r % small);
    }
    if (how < 128) /* near hi */
        return hi - (int64_t)(r % (span < 70 ? span : 70));
    return lo + (int64_t)(r % span);
}

/* uniform double in [0, 1) */
static inline double fz_unit(fz_in *in) { return (double)(fz_u64(in) >> 11) * 0x1p-53; }

static inline double fz_uniform(fz_in *in, double lo, double hi) { return lo + (hi - lo) * fz_unit(in); }

/* ------------------------------------------------------------------ values */

static const double fz_special[] = {
    NAN, -NAN, INFINITY, -INFINITY, 0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -2.0, 1e30, -1e30,
    1e-30, -1e-30, 100.0, -100.0, 1e-7, 1.0 - 1e-7, 88.7, -88.7, 709.8, -709.8, 1e300, -1e300,
};
#define FZ_N_SPECIAL ((int)(sizeof(fz_special) / sizeof(fz_special[0])))

/* A wild value of the given dtype (4 or 8 bytes): raw bits, specials, extremes, subnormals. */
static inline double fz_wild(fz_in *in, int is_f32)
{
    const uint8_t sel = fz_u8(in);
    if (sel < 48) { /* raw bit pattern */
        if (is_f32) {
            const uint32_t b = fz_u32(in);
            float f;
            memcpy(&f, &b, 4);
            return f;
        }
        const uint64_t b = fz_u64(in);
        double d;
        memcpy(&d, &b, 8);
        return d;
    }
    if (sel < 96) return fz_special[fz_u8(in) % FZ_N_SPECIAL];
    if (sel < 104) { /* extremes of the dtype */
        const int k = fz_u8(in) % 6;
        const double mx = is_f32 ? FLT_MAX : DBL_MAX, mn = is_f32 ? FLT_MIN : DBL_MIN;
        const double tr = is_f32 ? (double)FLT_TRUE_MIN : DBL_TRUE_MIN;
        const double v[6] = {mx, -mx, mn, -mn, tr, -tr};
        return v[k];
    }
    if (sel < 112) { /* a subnormal */
        const double tr = is_f32 ? (double)FLT_TRUE_MIN : DBL_TRUE_MIN;
        return tr * (double)(1 + fz_u32(in) % (1u << 22)) * (fz_u8(in) & 1 ? -1 : 1);
    }
    /* an ordinary value, sign and magnitude spread over a few decades */
    return (fz_unit(in) * 2.0 - 1.0) * pow(10.0, (double)((int)(fz_u8(in) % 13) - 6));
}

/* ------------------------------------------------------------------ buffers */

/* One array: `n` elements of `size` bytes at `ptr`, its allocation `base` ending exactly at
 * the array's end; the `off` elements before it poisoned. */
typedef struct {
    void *base;
    void *ptr;
    size_t n, size, off;
} fz_buf;

#define FZ_MAX_BUFS 128
static fz_buf fz_bufs[FZ_MAX_BUFS];
static int fz_nbufs;

/* A fresh array (contents: a sentinel byte pattern 0xA5); `off` elements of alignment
 * offset.  n == 0 gives a valid, one-past-the-end-sized non-NULL pointer. */
static void *fz_alloc(size_t n, size_t size, size_t off)
{
    FZ_CHECK(fz_nbufs < FZ_MAX_BUFS, "harness: too many buffers");
    const size_t bytes = (off + n) * size;
    void *base = NULL;
    if (posix_memalign(&base, 64, bytes ? bytes : 1) != 0 || base == NULL)
        fz_fail("harness: out of memory (%zu bytes)", bytes);
    memset(base, 0xA5, bytes ? bytes : 1);
    char *p = (char *)base + off * size;
    if (off) FZ_POISON(base, off * size);
    fz_buf *b = &fz_bufs[fz_nbufs++];
    b->base = base;
    b->ptr = p;
    b->n = n;
    b->size = size;
    b->off = off;
    return p;
}

/* An output array for a call whose outputs are all read afterwards.  Built with
 * -DFZ_UNINIT_OUTPUTS (.ci/valgrind) its contents are left uninitialised, so memcheck
 * reports a kernel that reads an output element before writing it (fastloss.h: "an
 * element is never read before this call wrote it") and, through the harness's checks
 * that read every element, an element the kernel never wrote.  Otherwise fz_alloc. */
static void *fz_alloc_out(size_t n, size_t size, size_t off)
{
#ifdef FZ_UNINIT_OUTPUTS
    FZ_CHECK(fz_nbufs < FZ_MAX_BUFS, "harness: too many buffers");
    const size_t bytes = (off + n) * size;
    void *base = NULL;
    if (posix_memalign(&base, 64, bytes ? bytes : 1) != 0 || base == NULL)
        fz_fail("harness: out of memory (%zu bytes)", bytes);
    if (off) memset(base, 0xA5, off * size); /* (the bytes before the array: not output) */
    fz_buf *b = &fz_bufs[fz_nbufs++];
    b->base = base;
    b->ptr = (char *)base + off * size;
    b->n = n;
    b->size = size;
    b->off = off;
    return b->ptr;
#else
    return fz_alloc(n, size, off);
#endif
}

/* a copy of `src` (n elements of `size` bytes) in a fresh array */
static void *fz_dup(const void *src, size_t n, size_t size, size_t off)
{
    void *p = fz_alloc(n, size, off);
    if (n) memcpy(p, src, n * size);
    return p;
}

static inline void fz_free_all(void)
{
    for (int i = 0; i < fz_nbufs; i++) {
        if (fz_bufs[i].off) FZ_UNPOISON(fz_bufs[i].base, fz_bufs[i].off * fz_bufs[i].size);
        free(fz_bufs[i].base);
    }
    fz_nbufs = 0;
}

/* ------------------------------------------------------------------ comparison */

/* bits equal, or both NaN (any payload / sign) */
static inline int fz_same_f64(double a, double b)
{
    if (isnan(a) && isnan(b)) return 1;
    return memcmp(&a, &b, sizeof a) == 0;
}

static inline int fz_same_f32(float a, float b)
{
    if (isnan(a) && isnan(b)) return 1;
    return memcmp(&a, &b, sizeof a) == 0;
}

/* element i of a float32/float64 array as double */
static inline double fz_get(const void *p, int is_f32, size_t i)
{
    return is_f32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

static inline void fz_set(void *p, int is_f32, size_t i, double v)
{
    if (is_f32) ((float *)p)[i] = (float)v;
    else ((double *)p)[i] = v;
}

/* |a - b| <= tol, NaN only against NaN, an infinity only against the same infinity */
static inline int fz_close(double a, double b, double tol)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b)) return a == b;
    return fabs(a - b) <= tol;
}

/* Bitwise comparison of two arrays (NaN == NaN); on a difference, fails with `what`. */
static inline void fz_expect_same(const char *what, const void *a, const void *b, size_t n, int is_f32)
{
    for (size_t i = 0; i < n; i++) {
        const int same = is_f32 ? fz_same_f32(((const float *)a)[i], ((const float *)b)[i])
                                : fz_same_f64(((const double *)a)[i], ((const double *)b)[i]);
        if (!same)
            fz_fail("%s: element %zu differs: %.17g vs %.17g", what, i, fz_get(a, is_f32, i),
                    fz_get(b, is_f32, i));
    }
}

/* A sum of doubles to well beyond double precision (double-double, TwoSum per term;
 * no long double: valgrind evaluates long double in double precision), the sum of the
 * magnitudes, and (fz_sum_loss) whether a NaN, +inf or -inf loss was seen. */
typedef struct {
    double hi, lo, mag;
    int nan, pinf, ninf;
} fz_sum;

static inline void fz_sum_add(fz_sum *s, double v)
{
    const double t = s->hi + v, bp = t - s->hi;
    s->lo += (s->hi - (t - bp)) + (v - bp);
    s->hi = t;
    s->mag += fabs(v);
}

/* One loss a kernel wrote: a finite one into the sum, a non-finite one into the flags. */
static inline void fz_sum_loss(fz_sum *s, double l)
{
    s->nan |= isnan(l);
    s->pinf |= isinf(l) && l > 0;
    s->ninf |= isinf(l) && l < 0;
    if (isfinite(l)) fz_sum_add(s, l);
}

/* The return value of a kernel against the exact sum of the losses it wrote: `s` sums the
 * finite losses, its flags say whether a NaN, +inf or -inf loss was written.  Allowed
 * error: k double eps of the sum of magnitudes.  When that is beyond DBL_MAX, a double
 * accumulator may overflow on the way (the contract sums in double) and the reference
 * is not reliable either: the value is not checked then. */
static inline void fz_check_sum(double ret, const fz_sum *s, double k)
{
    const int any_nan = s->nan, pinf = s->pinf, ninf = s->ninf;
    if (any_nan || (pinf && ninf)) {
        FZ_CHECK(isnan(ret), "the losses contain NaN (or +inf and -inf) but the sum is %.17g", ret);
        return;
    }
    const double tol = k * DBL_EPSILON * s->mag + 1e-300;
    if (!(s->mag + tol < DBL_MAX)) return; /* may overflow */
    if (pinf || ninf) {
        FZ_CHECK(isinf(ret) && (ret > 0) == (pinf != 0), "the losses contain %s but the sum is %.17g",
                 pinf ? "+inf" : "-inf", ret);
        return;
    }
    const double err = fabs((ret - s->hi) - s->lo);
    FZ_CHECK(isfinite(ret) && err <= tol,
             "returned sum %.17g, exact sum of the written losses %.17g + %.3g (error %.3g, "
             "allowed %.3g)", ret, s->hi, s->lo, err, tol);
}

static inline void fz_expect_unchanged(const char *what, const void *now, const void *before, size_t bytes)
{
    if (bytes && memcmp(now, before, bytes) != 0) fz_fail("%s was modified by the call", what);
}

/* ------------------------------------------------------------------ targets */

enum { FZ_BASELINE = 0, FZ_AVX2 = 1, FZ_AVX512 = 2, FZ_N_TARGETS = 3 };
static const char *const fz_target_name[FZ_N_TARGETS] = {"baseline", "avx2", "avx512"};

/* Which targets run: those this CPU supports, restricted by FASTLOSS_FUZZ_TARGETS (a
 * space-separated list, e.g. "baseline avx2" under valgrind, which lacks AVX-512). */
static int fz_enabled[FZ_N_TARGETS];

static inline void fz_targets_init(void)
{
    static int done;
    if (done) return;
    done = 1;
    fz_enabled[FZ_BASELINE] = 1;
#if defined(FZ_X86)
    __builtin_cpu_init();
    fz_enabled[FZ_AVX2] = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    fz_enabled[FZ_AVX512] =
#ifdef FZ_NO_AVX512
        0 &&
#endif
        fz_enabled[FZ_AVX2] && __builtin_cpu_supports("avx512f") &&
                            __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512dq") &&
                            __builtin_cpu_supports("avx512vl");
#endif
    const char *want = getenv("FASTLOSS_FUZZ_TARGETS");
    if (want && *want) {
        for (int t = 0; t < FZ_N_TARGETS; t++) {
            const char *s = strstr(want, fz_target_name[t]);
            const size_t len = strlen(fz_target_name[t]);
            const int listed = s && (s == want || s[-1] == ' ' || s[-1] == ',') &&
                               (s[len] == '\0' || s[len] == ' ' || s[len] == ',');
            if (!listed) fz_enabled[t] = 0;
        }
        fz_enabled[FZ_BASELINE] = 1; /* the reference of every comparison */
    }
}

/* Declares the kernels `decl` of every compiled target (x86-64: baseline, avx2, avx512;
 * built with -DFZ_NO_AVX512, as .ci/valgrind does -- valgrind does not run AVX-512 --
 * baseline and avx2 only). */
#if defined(FZ_X86) && defined(FZ_NO_AVX512)
#define FZ_DECLARE_ALL(decl)                                                              \
    FL_DECLARE_TARGET(decl, baseline) FL_DECLARE_TARGET(decl, avx2)
#define FZ_PTRS(kernel, dt) {kernel##_##dt##_baseline, kernel##_##dt##_avx2, NULL}
#elif defined(FZ_X86)
#define FZ_DECLARE_ALL(decl)                                                              \
    FL_DECLARE_TARGET(decl, baseline) FL_DECLARE_TARGET(decl, avx2)                       \
    FL_DECLARE_TARGET(decl, avx512)
/* {fl_k_<dtype>_baseline, _avx2, _avx512} as an array initialiser */
#define FZ_PTRS(kernel, dt) {kernel##_##dt##_baseline, kernel##_##dt##_avx2, kernel##_##dt##_avx512}
#else
#define FZ_DECLARE_ALL(decl) FL_DECLARE_TARGET(decl, baseline)
#define FZ_PTRS(kernel, dt) {kernel##_##dt##_baseline, NULL, NULL}
#endif

/* ------------------------------------------------------------------ standalone driver */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifdef FZ_STANDALONE
#include <dirent.h>
#include <sys/stat.h>

static inline int fz_run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            buf = (uint8_t *)realloc(buf, cap);
            if (!buf) abort();
        }
        const size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

static inline int fz_run_path(const char *path, int *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        ++*count;
        return fz_run_file(path);
    }
    DIR *d = opendir(path);
    if (!d) {
        perror(path);
        return 1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        rc |= fz_run_path(sub, count);
    }
    closedir(d);
    return rc;
}

/* usage: prog [-r N [-s SEED] [-l MAXLEN]] [file|dir ...] */
int main(int argc, char **argv)
{
    int rc = 0, count = 0;
    long random_runs = 0, maxlen = 256;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) random_runs = atol(argv[++i]);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc) maxlen = atol(argv[++i]);
        else rc |= fz_run_path(argv[i], &count);
    }
    uint8_t *buf = (uint8_t *)malloc((size_t)maxlen + 1);
    if (!buf) abort();
    for (long r = 0; r < random_runs; r++) {
        seed = fz_mix(seed + 0x9E3779B97F4A7C15ull);
        const size_t len = (size_t)(seed % (uint64_t)(maxlen + 1));
        uint64_t s = seed;
        for (size_t k = 0; k < len; k++) {
            s = fz_mix(s + k);
            buf[k] = (uint8_t)s;
        }
        LLVMFuzzerTestOneInput(buf, len);
        count++;
    }
    free(buf);
    fz_targets_init();
    printf("%d inputs run, %s; targets compared:", count,
           rc ? "with errors reading some" : "all passed");
    for (int t = 0; t < FZ_N_TARGETS; t++)
        if (fz_enabled[t]) printf(" %s", fz_target_name[t]);
    printf("\n");
    return rc;
}
#endif /* FZ_STANDALONE */

#endif /* FASTLOSS_FUZZ_COMMON_H */
