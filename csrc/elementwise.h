/*
 * elementwise.h: the vector plumbing shared by the element-wise families (regression.c,
 * binary.c): the compensated per-lane loss sum and non-temporal (streaming) stores.
 * Built on vecmath.h; everything is static, compiled per target like its includers.
 *
 * Loss sums: each step's loss vectors are widened to double (fl_widen_f32 for float32)
 * and added as a small balanced tree into one double vector of partials; the partial is
 * added to per-lane compensated accumulators with TwoSum (exact), so the sum is within a
 * few eps of the exact sum of the losses however long the array (no n eps growth).  The
 * lanes are combined at the end, in lane order, with accumulate.h's fl_acc; an infinite
 * or NaN lane sum propagates as in fl_acc.  The grouping depends only on n (steps from
 * element 0 of the call), never on pointer alignment; targets with different vector
 * widths group differently and may differ in the last bits of the sum.
 *
 * Streaming stores: an output of at least FL_EW_NT_MIN_BYTES (1 MiB, the per-core L2 of
 * Zen 3 / Zen 5) in one call is written with non-temporal stores: no read-for-ownership
 * (a third less memory traffic for a two-input, one-output kernel) and the result does
 * not displace the inputs from the caches, but it is in DRAM, not in the cache, when the
 * caller reads it.  Measured on Zen 5 (Huber float32, gradient only, 16M elements): 0.24
 * vs 0.31 ns per element; with the gradient read back right after the call, regular
 * stores win while inputs and output fit in the L3 (up to 2.8x at 64K elements).  The
 * kernels see only their own n: the caller, which knows the whole array, picks block
 * sizes so that blocks of small arrays stay below this size and blocks of huge arrays are
 * above it.  Override with -DFL_EW_NT_MIN_BYTES=...
 * fl_ew_store's stores go out 16 bytes at a time (_mm_stream_ps / _mm_stream_pd; the
 * write-combining buffers merge them into whole lines), so an output only needs 16-byte
 * alignment, which NumPy's large arrays have; fl_ew_nts (below) writes whole lines with
 * AVX-512 whatever the output's position in its line.
 */
#ifndef FASTLOSS_ELEMENTWISE_H
#define FASTLOSS_ELEMENTWISE_H
#include <math.h>
#include <stdint.h>
#include "accumulate.h"
#include "vecmath.h"

#define FL_EW_INLINE static inline __attribute__((always_inline))

#ifndef FL_EW_NT_MIN_BYTES
#define FL_EW_NT_MIN_BYTES (1 << 20)
#endif

#if defined(__SSE2__)
#include <immintrin.h>
#define FL_EW_HAVE_NT 1
#else
#define FL_EW_HAVE_NT 0
#endif

/* what a call writes: loss_out / grad_out present, streaming or regular stores */
enum { FL_EW_LOSS = 1, FL_EW_GRAD = 2, FL_EW_NT = 4 };

/* Which outputs, and streaming stores when every written output is large and 16-byte
 * aligned (else regular stores). */
static inline int fl_ew_what(int64_t n, int itemsize, const void *loss_out, const void *grad_out)
{
    int what = (loss_out ? FL_EW_LOSS : 0) | (grad_out ? FL_EW_GRAD : 0);
    (void)n;
    (void)itemsize;
#if FL_EW_HAVE_NT
    if (what && n >= (int64_t)(FL_EW_NT_MIN_BYTES / itemsize) &&
        ((uintptr_t)loss_out & 15) == 0 && ((uintptr_t)grad_out & 15) == 0)
        what |= FL_EW_NT;
#endif
    return what;
}

/* streaming stores are weakly ordered: publish them before the kernel returns */
FL_EW_INLINE void fl_ew_fence(int what)
{
#if FL_EW_HAVE_NT
    if (what & FL_EW_NT) _mm_sfence();
#else
    (void)what;
#endif
}

/* float32 loss vector -> double vector of partials: the sum of its halves (exact
 * widening, one rounding).  float64: itself. */
FL_EW_INLINE fl_v_f64 fl_ew_widen_sum_f32(fl_v_f32 l)
{
    fl_v_f64 w[2];
    fl_widen_f32(l, w);
    return w[0] + w[1];
}
FL_EW_INLINE fl_v_f64 fl_ew_widen_sum_f64(fl_v_f64 l) { return l; }

/* TwoSum: *s + p = new *s + error exactly (Knuth; no precondition on magnitudes) */
FL_EW_INLINE void fl_ew_twosum(fl_v_f64 *s, fl_v_f64 *c, fl_v_f64 p)
{
    const fl_v_f64 t = *s + p;
    const fl_v_f64 bp = t - *s;
    const fl_v_f64 ap = t - bp;
    *c += (*s - ap) + (p - bp);
    *s = t;
}

/* the per-lane compensated sums, combined in lane order */
static inline double fl_ew_lanes_result(fl_v_f64 s, fl_v_f64 c)
{
    fl_acc acc;
    fl_acc_init(&acc);
    for (int i = 0; i < fl_lanes_f64; i++)
        fl_acc_add(&acc, s[i]);
    for (int i = 0; i < fl_lanes_f64; i++)
        if (isfinite(s[i]))
            fl_acc_add(&acc, c[i]);
    return fl_acc_result(&acc);
}

/* Store a whole vector: streaming (p 16-byte aligned) when nt, else regular. */
FL_EW_INLINE void fl_ew_store_f32(float *p, fl_v_f32 v, int nt)
{
#if FL_EW_HAVE_NT
    if (nt) {
        union { fl_v_f32 v; __m128 q[FL_VEC_BYTES / 16]; } u;
        u.v = v;
        for (int i = 0; i < FL_VEC_BYTES / 16; i++)
            _mm_stream_ps(p + 4 * i, u.q[i]);
        return;
    }
#else
    (void)nt;
#endif
    fl_store_f32(p, v);
}
FL_EW_INLINE void fl_ew_store_f64(double *p, fl_v_f64 v, int nt)
{
#if FL_EW_HAVE_NT
    if (nt) {
        union { fl_v_f64 v; __m128d q[FL_VEC_BYTES / 16]; } u;
        u.v = v;
        for (int i = 0; i < FL_VEC_BYTES / 16; i++)
            _mm_stream_pd(p + 2 * i, u.q[i]);
        return;
    }
#else
    (void)nt;
#endif
    fl_store_f64(p, v);
}

/* Memory-bound loops over large inputs (the streaming-store calls of regression.c and
 * stream.c) prefetch their inputs this far ahead into L1: more lines in flight than the
 * hardware prefetchers keep for one core.  Measured with a C driver (Huber, float32,
 * gradient, 1 MiB calls, one thread, Sapphire-Rapids-class Xeon): 0.68 ns per element
 * against 0.83-0.87 without; 2 and 4 KiB ahead or into L2 only gained half of that,
 * non-temporal prefetches lost.
 * Measured again with the arrays on 2 MiB pages, as NumPy's large arrays are (it asks
 * for transparent huge pages), variants interleaved in one process, medians of 50:
 * 0.60 without, 0.46 at 1 KiB, 0.46-0.47 at 2-3 KiB, 0.49 at 4 KiB.  (With 4 KiB pages
 * 2 KiB was 2-5% ahead of 1 KiB.)
 * AVX2 (half the elements per step, twice the instructions per element) wants more lines
 * in flight: huber_loss on NumPy arrays (16 bytes past a page, huge pages), 16M float32,
 * medians of 25 calls, six runs of each build alternated, means of the medians, 1 KiB ->
 * 3 KiB: 1 thread 0.559 -> 0.531 ns per element, 2 threads 0.294 -> 0.273.  The same
 * change with AVX-512: 1 thread 0.525 -> 0.535, 2 threads 0.278 -> 0.262; it stays at
 * 1 KiB, for the one-thread case.
 * Prefetching past the end of an array is harmless (no fault, no access). */
#ifndef FL_EW_PREFETCH_BYTES
#if FL_VEC_BYTES == 32
#define FL_EW_PREFETCH_BYTES 3072
#else
#define FL_EW_PREFETCH_BYTES 1024
#endif
#endif

/* the lines of [x, x + bytes) and [y, y + bytes), FL_EW_PREFETCH_BYTES ahead, into L1 */
FL_EW_INLINE void fl_ew_prefetch2(const void *x, const void *y, int64_t bytes)
{
    for (int64_t b = 0; b < bytes; b += 64) {
        __builtin_prefetch((const char *)x + FL_EW_PREFETCH_BYTES + b, 0, 3);
        __builtin_prefetch((const char *)y + FL_EW_PREFETCH_BYTES + b, 0, 3);
    }
}

/* A run of streaming stores: the vectors of consecutive elements from p on, put one
 * after the other (fl_ew_nts_put), then fl_ew_nts_finish.  With 64-byte vectors the
 * output's cache lines are written whole, one aligned 64-byte store each, also when p is
 * not 64-byte aligned (NumPy's large arrays start 16 bytes past a page): each line is
 * built from the lanes of two consecutive vectors (one two-source permute), the lanes
 * before p's first line boundary go out with a masked regular store from the first
 * vector, and those after the last full line with one at finish.  Against four 16-byte
 * streaming stores per vector, which spread every vector over two lines: Huber float32,
 * gradient, one thread, 16M elements, 0.463 -> 0.435 ns per element (C driver, gradient
 * at +16 bytes, 1 MiB calls) and 0.55-0.59 -> 0.47-0.53 (huber_loss on NumPy arrays,
 * runs of the two builds alternated; two threads 0.28-0.29 -> 0.27).  The stores run one
 * vector behind the loads, never ahead: an output that is one of the inputs is still read
 * before it is written.  Other vector widths: fl_ew_store's 16-byte streaming stores.
 * Only what is stored changes, never which lanes are computed together: same bits for
 * any alignment. */
#if FL_EW_HAVE_NT && FL_VEC_BYTES == 64
#define FL_EW_NTS_DEFINE(T, S, VT, IT, PERM)                                            \
    typedef struct {                                                                     \
        T *p;      /* the next whole line (after the first put) or p itself */          \
        VT prev;   /* the vector put last, its upper k lanes not stored yet */          \
        __m512i idx; /* line = prev[L - k .. L) ++ v[0 .. L - k) */                     \
        int k;     /* p sits k lanes past the start of its line (0: aligned); its first \
                    * L - k lanes come before the first line boundary */                \
        int started;                                                                     \
    } fl_ew_nts##S;                                                                      \
    FL_EW_INLINE void fl_ew_nts_init##S(fl_ew_nts##S *st, T *p)                          \
    {                                                                                    \
        const int L = (int)(64 / sizeof(T));                                             \
        st->p = p;                                                                       \
        st->k = (int)(((uintptr_t)p & 63) / sizeof(T));                                  \
        st->started = 0;                                                                 \
        st->prev = (VT){0};                                                              \
        IT io = {0};                                                                     \
        for (int l = 0; l < L; l++) io[l] = L - st->k + l;                               \
        st->idx = (__m512i)io;                                                           \
    }                                                                                    \
    FL_EW_INLINE void fl_ew_nts_put##S(fl_ew_nts##S *st, VT v)                           \
    {                                                                                    \
        const int L = (int)(64 / sizeof(T));                                             \
        if (st->k == 0) {                                                                \
            _mm512_stream_##S##_(st->p, v);                                              \
            st->p += L;                                                                  \
        } else if (st->started) {                                                        \
            _mm512_stream_##S##_(st->p, (VT)PERM(st->prev, st->idx, v));                 \
            st->p += L;                                                                  \
            st->prev = v;                                                                \
        } else {                                                                         \
            fl_store_partial##S(st->p, v, L - st->k);                                    \
            st->p += L - st->k;                                                          \
            st->prev = v;                                                                \
            st->started = 1;                                                             \
        }                                                                                \
    }                                                                                    \
    FL_EW_INLINE void fl_ew_nts_finish##S(fl_ew_nts##S *st)                              \
    {                                                                                    \
        if (st->k != 0 && st->started)                                                   \
            fl_store_partial##S(st->p, (VT)PERM(st->prev, st->idx, st->prev), st->k);   \
    }
#define _mm512_stream__f32_(p, v) _mm512_stream_ps((p), (__m512)(v))
#define _mm512_stream__f64_(p, v) _mm512_stream_pd((p), (__m512d)(v))
#define FL_EW_PERM_F32(a, i, b) _mm512_permutex2var_ps((__m512)(a), (i), (__m512)(b))
#define FL_EW_PERM_F64(a, i, b) _mm512_permutex2var_pd((__m512d)(a), (i), (__m512d)(b))
FL_EW_NTS_DEFINE(float, _f32, fl_v_f32, fl_vi_f32, FL_EW_PERM_F32)
FL_EW_NTS_DEFINE(double, _f64, fl_v_f64, fl_vi_f64, FL_EW_PERM_F64)
#undef FL_EW_NTS_DEFINE
#else
#define FL_EW_NTS_DEFINE(T, S, VT)                                                      \
    typedef struct { T *p; } fl_ew_nts##S;                                              \
    FL_EW_INLINE void fl_ew_nts_init##S(fl_ew_nts##S *st, T *p) { st->p = p; }           \
    FL_EW_INLINE void fl_ew_nts_put##S(fl_ew_nts##S *st, VT v)                           \
    {                                                                                    \
        fl_ew_store##S(st->p, v, 1);                                                     \
        st->p += sizeof(VT) / sizeof(T);                                                 \
    }                                                                                    \
    FL_EW_INLINE void fl_ew_nts_finish##S(fl_ew_nts##S *st) { (void)st; }
FL_EW_NTS_DEFINE(float, _f32, fl_v_f32)
FL_EW_NTS_DEFINE(double, _f64, fl_v_f64)
#undef FL_EW_NTS_DEFINE
#endif

#endif /* FASTLOSS_ELEMENTWISE_H */
