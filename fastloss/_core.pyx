# cython: language_level=3
"""The torch-style functions: validation once at the boundary, then one C call with the
GIL released.  Each public function follows the same path:

    _as_real(input) -> computing dtype (float32 / float64), C-contiguous
    target, weights and parameters checked against it
    _Outputs: the loss array ("none") and the gradient, preallocated or the user's
    one fused kernel call (nogil)
    _finish: reduce the returned sum, copy back to a non-contiguous out= if needed
"""
import math
import warnings

import numpy as np

cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport PyThread_get_thread_ident
from cpython.ref cimport PyObject, Py_XDECREF, Py_INCREF
from libc.math cimport INFINITY, fabs, isfinite
from libc.stdint cimport int64_t

cdef extern from "Python.h":
    # o.__index__() clipped to the Py_ssize_t range (exc NULL); TypeError for non-integers
    Py_ssize_t PyNumber_AsSsize_t(object o, PyObject *exc) except? -1

from fastloss._kernels cimport *

cnp.import_array()
init_dispatch()


def dispatch_info():
    """What the kernels were built with and which target this process uses."""
    return {
        "target": fl_dispatch_target().decode(),
        "targets": fl_target_names().decode().split(),
        "supported": [t for t in fl_target_names().decode().split()
                      if fl_target_supported(t.encode()) == 1],
        "cpu_features": fl_cpu_features().decode().split(),
        "kernels": fl_kernel_names().decode().split(),
        "compiler": fl_compiler().decode(),
    }


def stream_triad(a, b, c, scalar):
    """STREAM's triad ``a[:] = b + scalar * c`` with the dispatched target's memory-bound
    loop (csrc/stream.c): the memory roofline ``bench/report.py`` measures the kernels
    against.  ``a``, ``b``, ``c``: 1-D C-contiguous arrays of one dtype (float32 or
    float64) and one length, ``a`` writable and not overlapping ``b`` or ``c``.  One thread,
    the GIL released."""
    for name, arr in (("a", a), ("b", b), ("c", c)):
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or not arr.flags.c_contiguous \
                or arr.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be a 1-D C-contiguous float32 or float64 array, "
                            f"got {type(arr).__name__}"
                            + (f" {arr.dtype} of shape {arr.shape}"
                               if isinstance(arr, np.ndarray) else ""))
    if b.dtype != a.dtype or c.dtype != a.dtype or b.shape != a.shape or c.shape != a.shape:
        raise ValueError(f"a, b and c must have one dtype and length, got {a.dtype} "
                         f"{a.shape}, {b.dtype} {b.shape}, {c.dtype} {c.shape}")
    if not a.flags.writeable:
        raise ValueError("a must be writable")
    if np.may_share_memory(a, b) or np.may_share_memory(a, c):
        raise ValueError("a must not overlap b or c")
    cdef double s = float(scalar)
    cdef int64_t n = a.shape[0]
    cdef void *pa = _ptr(a)
    cdef const void *pb = _ptr(b)
    cdef const void *pc = _ptr(c)
    cdef bint f32 = a.dtype == np.float32
    with nogil:
        if f32:
            fl_stream_triad_f32(n, <float *>pa, <const float *>pb, <const float *>pc, s)
        else:
            fl_stream_triad_f64(n, <double *>pa, <const double *>pb, <const double *>pc, s)
    return a

_REDUCTIONS = ("mean", "sum", "none")
_ACTIVATIONS = (None, "sigmoid", "softmax")


# ------------------------------------------------------------------ validation helpers

cdef object _real_dtype(object dt, str name):
    """The computing dtype for an input of dtype dt: float32/float64 as given, float16 ->
    float32, other real (integer) dtypes -> float64; anything else is a TypeError."""
    kind = dt.kind
    if kind == "f":
        return np.dtype(np.float32) if dt.itemsize <= 4 else np.dtype(np.float64)
    if kind == "i" or kind == "u":
        return np.dtype(np.float64)
    raise TypeError(f"{name} must be an array of real numbers (float32 or float64), "
                    f"got dtype {dt}")


cdef object _as_real(object a, str name, object dt):
    """a as a C-contiguous native-order array of dtype dt (a view when it already is)."""
    arr = np.asarray(a)
    _real_dtype(arr.dtype, name)  # the TypeError for complex/bool/object/str
    return np.asarray(arr, dtype=dt, order="C")


cdef str _check_reduction(object reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none', got {reduction!r}")
    return reduction


cdef double _check_param(object value, str name, double lo, bint lo_open, double hi=INFINITY,
                         bint hi_open=False) except? -1.0:
    """A finite real scalar parameter within [lo, hi] (open ends where asked)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        lo_s = "(" if lo_open else "["
        hi_s = ")" if hi_open else "]"
        raise ValueError(f"{name} must be a finite number in {lo_s}{lo:g}, {hi:g}{hi_s}, got {value!r}")
    return v


cdef object _shape_error(str a, object sa, str b, object sb, str what=""):
    return ValueError(f"{a} and {b} must have {what or 'the same shape'}, "
                      f"got {a}.shape={tuple(sa)} and {b}.shape={tuple(sb)}")


cdef tuple _broadcast_operand(object value, str name, object x, object dt):
    """A weight that broadcasts to x, as (array, inner, len) for the kernels' rule
    element i uses w[(i // inner) % len].  The operand is copied only when its broadcast
    pattern is not one contiguous block of x's axes."""
    if value is None:
        return None, 1, 1
    w = _as_real(value, name, dt)
    shape = x.shape
    try:
        b = np.broadcast_shapes(w.shape, shape)
    except ValueError:
        b = None
    if b != shape:
        raise ValueError(f"{name} must broadcast to input's shape, "
                         f"got {name}.shape={w.shape} and input.shape={shape}")
    nd = x.ndim
    wshape = (1,) * (nd - w.ndim) + w.shape
    axes = [k for k in range(nd) if wshape[k] != 1]
    if not axes:
        return w.reshape(1), 1, 1
    a0, a1 = axes[0], axes[-1] + 1
    if all(wshape[k] == shape[k] for k in range(a0, a1)):
        inner = 1
        for k in range(a1, nd):
            inner *= shape[k]
        return w.reshape(-1), max(inner, 1), max(w.size, 1)
    full = np.ascontiguousarray(np.broadcast_to(w, shape))
    return full.reshape(-1), 1, max(full.size, 1)


cdef object _class_vector(object value, str name, int64_t C, object dt):
    """A per-class vector of length C (weight, alpha), or None."""
    if value is None:
        return None
    w = _as_real(value, name, dt)
    if w.shape != (C,):
        raise ValueError(f"{name} must have shape ({C},) (one entry per class), got {name}.shape={w.shape}")
    return w


cdef class _Outputs:
    """Where a kernel writes: `loss` (for reduction="none", else None) and `grad`, each
    either the user's array (used directly when it is C-contiguous, of the right dtype
    and does not overlap an input) or a fresh/temporary one copied back in finish()."""
    cdef public object loss, grad
    cdef object user_loss, user_grad

    def __init__(self, loss_shape, grad_shape, dt, out, grad_out, inputs, bint want_loss,
                 bint want_grad, str grad_name="grad_out"):
        self.user_loss = None
        self.user_grad = None
        self.loss = None
        self.grad = None
        if want_loss:
            self.loss, self.user_loss = _prepare_out(out, "out", loss_shape, dt, inputs)
        elif out is not None:
            raise ValueError("out is only used with reduction='none'")
        if want_grad:
            self.grad, self.user_grad = _prepare_out(grad_out, grad_name, grad_shape, dt, inputs)
        elif grad_out is not None:
            raise ValueError(f"{grad_name} is only used with return_grad=True")

    def finish(self):
        if self.user_loss is not None:
            np.copyto(self.user_loss, self.loss)
            self.loss = self.user_loss
        if self.user_grad is not None:
            np.copyto(self.user_grad, self.grad)
            self.grad = self.user_grad


cdef tuple _prepare_out(object arr, str name, object shape, object dt, tuple inputs):
    """(array the kernel writes, user array to copy into afterwards or None)."""
    if arr is None:
        return np.empty(shape, dtype=dt), None
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(arr).__name__}")
    adt = arr.dtype
    if adt != dt and adt.newbyteorder("=") != dt:
        # (a byte-swapped array of the computing dtype is accepted, as by NumPy's ufuncs:
        # written through a native temporary below)
        raise ValueError(f"{name} must have dtype {dt}, got {adt}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {name}.shape={arr.shape}")
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only")
    direct = arr.flags.c_contiguous and adt.isnative
    if direct:
        for a in inputs:
            if a is not None and np.may_share_memory(arr, a):
                direct = False
                break
    if direct:
        return arr, None
    return np.empty(shape, dtype=dt), arr


cdef inline void *_ptr(object a):
    """Data pointer of a C-contiguous ndarray, or NULL for None."""
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef object _finish(double total, double denom, str reduction, _Outputs o, object dt,
                    bint return_grad):
    o.finish()
    if reduction == "none":
        loss = o.loss
    elif reduction == "sum":
        loss = dt.type(total)
    else:
        loss = dt.type(total / denom if denom != 0 else 0.0)
    if return_grad:
        return loss, o.grad
    return loss


cdef double _grad_scale(str reduction, double denom):
    if reduction == "mean":
        return 1.0 / denom if denom != 0 else 0.0
    return 1.0


cdef tuple _pair(object input, object target, str tname="target"):
    """input and an element-wise target of the same shape, in input's computing dtype."""
    xa = np.asarray(input)
    dt = _real_dtype(xa.dtype, "input")
    x = np.asarray(xa, dtype=dt, order="C")
    t = _as_real(target, tname, dt)
    if t.shape != x.shape:
        raise _shape_error("input", x.shape, tname, t.shape)
    return x, t, dt


# ------------------------------------------------------------------ threads

# Work is split into blocks fixed by the data's shape, never by the thread count, and the
# blocks' loss sums are added in block order: every n_threads gives the same bits.
# n_threads=None uses one thread below PARALLEL_THRESHOLD units of work and all threads
# above.  A unit is an element of a light kernel (Huber, BCE with logits, Dice, softmax
# rows of more than 32 classes: ~0.5-1 ns per element); BCE on probabilities and sigmoid
# focal (~1.3-2 ns per element) count COST_LOGISTIC units per element and softmax rows of
# at most 32 classes (~1.9 ns) COST_SHORT_ROWS.  Measured by bench/threshold.py (float32,
# loss + gradient, 1 vs 2 threads, Sapphire-Rapids-class Xeon, quiet, 2026-12-05): two
# threads are at least 1.2x faster from 256K elements on for BCE, focal and cross-entropy
# with C = 10, from 512K for BCE with logits, Huber and Dice (1M for C = 1000 in one run,
# 512K in another), and slower (down to 0.52x: the pool's wake-up) at 128K for the light
# ones.  The decision depends only on the shape, and results are bitwise the same for
# any thread count.
cdef enum:
    BLOCK_ELEMENTS = 65536
    PARALLEL_THRESHOLD = 524288
    COST_LOGISTIC = 2
    COST_SHORT_ROWS = 2
    STREAM_MIN_BYTES = 8 << 20     # element-wise inputs this large use streaming blocks
    STREAM_BLOCK_BYTES = 1 << 20   # = FL_EW_NT_MIN_BYTES in csrc/elementwise.h
    # softmax losses on the row engine (inner == 1, C > FL_CE_TRANSPOSE_MAX): inputs of
    # STREAM_MIN_BYTES or more go in blocks of at least this many bytes of logits, which
    # the kernel's gradient streaming needs (= FL_CE_NT_MIN_BYTES in cross_entropy.c);
    # 65536-element blocks there ran 1.6x slower (regular stores, no overlap)
    CE_ROW_ENGINE_MIN_C = 33
    CE_STREAM_BLOCK_BYTES = 4 << 20

cdef int _max_threads = 0  # set_num_threads(); 0 = all cores


def set_num_threads(n):
    """Set how many threads ``n_threads=None`` may use for large inputs (None: all
    cores).  Small inputs always run on the calling thread."""
    global _max_threads
    if n is None:
        _max_threads = 0
        return
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be None or an integer >= 1, got {n!r}")
    _max_threads = int(n)


def get_num_threads():
    """How many threads ``n_threads=None`` uses for large inputs."""
    return _max_threads if _max_threads > 0 else fl_num_cores()


cdef int _threads(object n_threads, int64_t work) except -1:
    if n_threads is None:
        if work < PARALLEL_THRESHOLD:
            return 1
        return _max_threads if _max_threads > 0 else fl_num_cores()
    if isinstance(n_threads, (bool, np.bool_)) or not isinstance(n_threads, (int, np.integer)) \
            or n_threads < 1:
        raise ValueError(f"n_threads must be None or an integer >= 1, got {n_threads!r}")
    return min(int(n_threads), 1024)


# ------------------------------------------------------------------ Ctrl-C
#
# A call of more than one block runs its blocks through fl_parallel_for_poll: between the
# blocks it runs, the calling thread (if it is the main thread, the only one Python runs
# signal handlers in) takes the GIL every POLL_MS and runs PyErr_CheckSignals().  When a
# handler raises (KeyboardInterrupt from the default SIGINT handler), no further block is
# started, the running ones finish, and the call raises that exception.  Fresh outputs
# are dropped; the contents of a user's out= / grad_out= are then unspecified (as NumPy).
# One block is at most ~BLOCK_ELEMENTS elements (at least one softmax row / Dice sample),
# so the reaction time is POLL_MS plus one block.  Single-block calls (the small-call
# path) do not poll at all.
cdef enum:
    POLL_MS = 50

cdef unsigned long _main_ident = 0


def _set_main_thread():
    global _main_ident
    _main_ident = PyThread_get_thread_ident()


import threading as _threading
import os as _os
_main_ident = <unsigned long>_threading.main_thread().ident
if hasattr(_os, "register_at_fork"):
    # the forking thread is the child's main thread (CPython runs signal handlers there)
    _os.register_at_fork(after_in_child=_set_main_thread)


ctypedef struct _Interrupt:
    PyObject *exc    # the exception a signal handler raised (owned), or NULL


cdef int _poll_signals(void *ctx) noexcept with gil:
    cdef _Interrupt *it = <_Interrupt *>ctx
    try:
        PyErr_CheckSignals()
    except BaseException as e:
        Py_INCREF(e)
        it.exc = <PyObject *>e
        return 1
    return 0


cdef int _run_blocks(int64_t n_blocks, int threads, fl_task_fn fn, void *ctx) except -1:
    """fn over the blocks on the pool; raises what a signal handler raised meanwhile."""
    cdef _Interrupt it
    it.exc = NULL
    if n_blocks <= 1 or PyThread_get_thread_ident() != _main_ident:
        with nogil:
            fl_parallel_for(n_blocks, threads, fn, ctx)
        return 0
    with nogil:
        fl_parallel_for_poll(n_blocks, threads, fn, ctx, _poll_signals, &it, POLL_MS)
    if it.exc != NULL:
        exc = <object>it.exc
        Py_XDECREF(it.exc)
        raise exc
    return 0


cdef double _sum_partials(const double *p, int64_t n) noexcept nogil:
    """Compensated sum of the block partials, in block order."""
    cdef double s = 0.0, c = 0.0, t
    cdef int64_t i
    for i in range(n):
        t = s + p[i]
        if fabs(s) >= fabs(p[i]):
            c += (s - t) + p[i]
        else:
            c += (p[i] - t) + s
        s = t
    return s + c if isfinite(s) else s


cdef class _Partials:
    """Per-block loss sums and error indices: on the stack's worth for one block, an
    array for more (allocated before the GIL is released)."""
    cdef double one_sum
    cdef int64_t one_err
    cdef object sums_arr, errs_arr
    cdef double *sums
    cdef int64_t *errs

    def __cinit__(self, int64_t n_blocks):
        if n_blocks <= 1:
            self.sums = &self.one_sum
            self.errs = &self.one_err
        else:
            self.sums_arr = np.zeros(n_blocks, np.float64)
            self.errs_arr = np.empty(n_blocks, np.int64)
            self.sums = <double *>cnp.PyArray_DATA(self.sums_arr)
            self.errs = <int64_t *>cnp.PyArray_DATA(self.errs_arr)
        self.sums[0] = 0.0


cdef enum ElemKind:
    K_HUBER, K_SMOOTH_L1, K_BCE_LOGITS, K_BCE, K_SIGMOID_FOCAL

ctypedef struct _Bcast:  # a broadcast operand, see _broadcast_operand
    const char *ptr
    int64_t inner, len
    bint cover           # inner * len == n: blocks start at a multiple of inner

ctypedef struct _ElemJob:
    ElemKind kind
    bint f32
    int itemsize
    int64_t n, block
    const char *x
    const char *y
    _Bcast w, pw
    double p1, p2
    char *loss
    char *grad
    double scale
    double *sums
    int64_t *errs


cdef inline const char *_bcast_at(const _Bcast *b, int64_t o, int sz, int64_t *inner,
                                  int64_t *length) noexcept nogil:
    """The operand as seen from flat element o (a block start)."""
    inner[0] = b.inner
    length[0] = b.len
    if b.ptr == NULL or b.len == 1 or not b.cover:
        return b.ptr  # no phase: the block starts at a multiple of inner * len
    length[0] = b.len - o // b.inner
    return b.ptr + (o // b.inner) * sz


cdef void _elem_task(void *ctx, int64_t t) noexcept nogil:
    cdef _ElemJob *j = <_ElemJob *>ctx
    cdef int64_t o = t * j.block
    cdef int64_t m = min(j.block, j.n - o), wi, wl, pi, pl, err = -1
    cdef int sz = j.itemsize
    cdef const char *x = j.x + o * sz
    cdef const char *y = j.y + o * sz
    cdef const char *w = _bcast_at(&j.w, o, sz, &wi, &wl)
    cdef const char *pw = _bcast_at(&j.pw, o, sz, &pi, &pl)
    cdef char *loss = j.loss + o * sz if j.loss != NULL else NULL
    cdef char *grad = j.grad + o * sz if j.grad != NULL else NULL
    cdef double s
    if j.kind == K_HUBER:
        s = (fl_huber_f32(m, <float *>x, <float *>y, j.p1, <float *>loss, <float *>grad, j.scale)
             if j.f32 else
             fl_huber_f64(m, <double *>x, <double *>y, j.p1, <double *>loss, <double *>grad, j.scale))
    elif j.kind == K_SMOOTH_L1:
        s = (fl_smooth_l1_f32(m, <float *>x, <float *>y, j.p1, <float *>loss, <float *>grad, j.scale)
             if j.f32 else
             fl_smooth_l1_f64(m, <double *>x, <double *>y, j.p1, <double *>loss, <double *>grad,
                              j.scale))
    elif j.kind == K_BCE_LOGITS:
        s = (fl_bce_logits_f32(m, <float *>x, <float *>y, <float *>w, wi, wl, <float *>pw, pi, pl,
                               <float *>loss, <float *>grad, j.scale)
             if j.f32 else
             fl_bce_logits_f64(m, <double *>x, <double *>y, <double *>w, wi, wl, <double *>pw, pi,
                               pl, <double *>loss, <double *>grad, j.scale))
    elif j.kind == K_BCE:
        s = (fl_bce_f32(m, <float *>x, <float *>y, <float *>w, wi, wl, <float *>loss,
                        <float *>grad, j.scale, &err)
             if j.f32 else
             fl_bce_f64(m, <double *>x, <double *>y, <double *>w, wi, wl, <double *>loss,
                        <double *>grad, j.scale, &err))
    else:
        s = (fl_sigmoid_focal_f32(m, <float *>x, <float *>y, j.p1, j.p2, <float *>loss,
                                  <float *>grad, j.scale)
             if j.f32 else
             fl_sigmoid_focal_f64(m, <double *>x, <double *>y, j.p1, j.p2, <double *>loss,
                                  <double *>grad, j.scale))
    j.sums[t] = s
    j.errs[t] = o + err if err >= 0 else -1


cdef int64_t _gcd(int64_t a, int64_t b) noexcept:
    while b:
        a, b = b, a % b
    return a


cdef _Bcast _bcast(object arr, int64_t inner, int64_t length, int64_t n, int64_t *unit):
    """The operand for the kernels, and (through unit) the block-size multiple it needs."""
    cdef _Bcast b
    b.ptr = <const char *>_ptr(arr)
    b.inner = inner
    b.len = length
    b.cover = inner * length == n
    cdef int64_t u = 1
    if arr is not None and length > 1:
        u = inner if b.cover else inner * length
    unit[0] = u
    return b


cdef object _elementwise(ElemKind kind, object x, object y, object dt, str red, _Outputs o,
                         double p1, double p2, object n_threads, bint return_grad,
                         tuple w=(None, 1, 1), tuple pw=(None, 1, 1)):
    """One element-wise loss over x, y (same shape, C-contiguous, dtype dt): blocks of
    BLOCK_ELEMENTS (rounded to what the broadcast operands need), run on the pool."""
    cdef _ElemJob j
    cdef int64_t n = x.size, uw, upw, unit
    j.kind = kind
    j.f32 = dt == np.float32
    j.itemsize = dt.itemsize
    j.n = n
    j.x = <const char *>_ptr(x)
    j.y = <const char *>_ptr(y)
    j.w = _bcast(w[0], w[1], w[2], n, &uw)
    j.pw = _bcast(pw[0], pw[1], pw[2], n, &upw)
    unit = uw // _gcd(uw, upw) * upw
    # Large arrays go in blocks of STREAM_BLOCK_BYTES, which the kernels write with
    # streaming stores (elementwise.h: outputs of >= 1 MiB per call; binary.c: BCE with
    # logits and hard-label focal, not BCE on probabilities); smaller ones in
    # cache-sized blocks with regular stores, so a result read right after the call is
    # still in the cache.  Either way the block size depends only on n and the dtype.
    cdef int64_t block = BLOCK_ELEMENTS
    if n * dt.itemsize >= STREAM_MIN_BYTES:
        block = STREAM_BLOCK_BYTES // dt.itemsize
    j.block = (block + unit - 1) // unit * unit
    if j.block >= n:
        j.block = max(n, 1)
    j.p1 = p1
    j.p2 = p2
    j.loss = <char *>_ptr(o.loss)
    j.grad = <char *>_ptr(o.grad)
    j.scale = _grad_scale(red, n)
    cdef int64_t n_blocks = (n + j.block - 1) // j.block, b, err = -1
    cdef _Partials parts = _Partials(n_blocks)
    j.sums = parts.sums
    j.errs = parts.errs
    cdef int threads = _threads(n_threads, n * (1 if kind == K_HUBER or kind == K_SMOOTH_L1
                                                 or kind == K_BCE_LOGITS else COST_LOGISTIC))
    cdef double total
    _run_blocks(n_blocks, threads, _elem_task, &j)
    total = _sum_partials(j.sums, n_blocks)
    if kind == K_BCE:
        for b in range(n_blocks):
            if j.errs[b] >= 0:
                err = j.errs[b]
                break
    if err >= 0:
        bad = x.reshape(-1)[err]
        raise ValueError(f"input must hold probabilities in [0, 1], got {bad!r} at flat "
                         f"index {err}; for logits use binary_cross_entropy_with_logits")
    return _finish(total, n, red, o, dt, return_grad)


# ------------------------------------------------------------------ regression

def huber_loss(input, target, *, delta=1.0, reduction="mean", return_grad=False,
               out=None, grad_out=None, n_threads=None):
    """Huber loss, torch ``F.huber_loss`` semantics.

    loss = 0.5 d**2 if |d| < delta else delta * (|d| - 0.5 delta), with d = input - target.

    Parameters
    ----------
    input, target : array_like of the same shape (float32 or float64; other real dtypes
        are converted to float64, float16 computes in float32).
    delta : float > 0
    reduction : {"mean", "sum", "none"}
    return_grad : bool
        Also return the gradient of the returned loss with respect to ``input``.
    out, grad_out : ndarray, optional
        Preallocated loss (for ``reduction="none"``) and gradient arrays.
    n_threads : int, optional
        Threads to use; None: one for small inputs, ``get_num_threads()`` for large ones.
        Results are bitwise identical for every thread count.

    Returns
    -------
    loss, or (loss, grad) with ``return_grad=True``.
    """
    return _regression(K_HUBER, input, target, delta, "delta", reduction, return_grad, out,
                       grad_out, n_threads)


def smooth_l1_loss(input, target, *, beta=1.0, reduction="mean", return_grad=False,
                   out=None, grad_out=None, n_threads=None):
    """Smooth L1 loss, torch ``F.smooth_l1_loss`` semantics.

    loss = 0.5 d**2 / beta if |d| < beta else |d| - 0.5 beta, with d = input - target;
    beta = 0 is the L1 loss (gradient sign(d), 0 at d = 0, as torch).

    Parameters and returns as :func:`huber_loss`, with ``beta >= 0``.
    """
    return _regression(K_SMOOTH_L1, input, target, beta, "beta", reduction, return_grad, out,
                       grad_out, n_threads)


cdef object _regression(ElemKind kind, object input, object target, object param, str pname,
                        object reduction, bint return_grad, object out, object grad_out,
                        object n_threads):
    x, t, dt = _pair(input, target)
    red = _check_reduction(reduction)
    cdef double p = _check_param(param, pname, 0.0, kind == K_HUBER)
    cdef _Outputs o = _Outputs(x.shape, x.shape, dt, out, grad_out, (x, t),
                               red == "none", return_grad)
    return _elementwise(kind, x, t, dt, red, o, p, 0.0, n_threads, return_grad)


# ------------------------------------------------------------------ binary

def binary_cross_entropy_with_logits(input, target, *, weight=None, pos_weight=None,
                                     reduction="mean", return_grad=False, out=None,
                                     grad_out=None, n_threads=None):
    """Binary cross-entropy on logits, torch ``F.binary_cross_entropy_with_logits``.

    loss = weight * ((1 - y) x + (1 + (pos_weight - 1) y) softplus(-x)), in the stable
    softplus form (finite for every finite logit).

    Parameters
    ----------
    input : array_like, logits.
    target : array_like of input's shape, targets in [0, 1] (soft targets allowed).
    weight : array_like broadcastable to input, optional.
    pos_weight : array_like broadcastable to input (typically (C,) along the last axis),
        optional: weight of the positive term.
    reduction, return_grad, out, grad_out : as :func:`huber_loss`.
    """
    x, t, dt = _pair(input, target)
    red = _check_reduction(reduction)
    w = _broadcast_operand(weight, "weight", x, dt)
    pw = _broadcast_operand(pos_weight, "pos_weight", x, dt)
    cdef _Outputs o = _Outputs(x.shape, x.shape, dt, out, grad_out, (x, t, w[0], pw[0]),
                               red == "none", return_grad)
    return _elementwise(K_BCE_LOGITS, x, t, dt, red, o, 0.0, 0.0, n_threads, return_grad, w, pw)


def binary_cross_entropy(input, target, *, weight=None, reduction="mean",
                         return_grad=False, out=None, grad_out=None, n_threads=None):
    """Binary cross-entropy on probabilities, torch ``F.binary_cross_entropy``.

    loss = -weight (y max(log p, -100) + (1 - y) max(log(1 - p), -100)); the gradient is
    weight (p - y) / max(p (1 - p), 1e-12), as torch.  A finite input outside [0, 1]
    raises ValueError (use :func:`binary_cross_entropy_with_logits` for logits); NaN
    propagates.  Parameters as :func:`binary_cross_entropy_with_logits`.
    """
    x, t, dt = _pair(input, target)
    red = _check_reduction(reduction)
    w = _broadcast_operand(weight, "weight", x, dt)
    cdef _Outputs o = _Outputs(x.shape, x.shape, dt, out, grad_out, (x, t, w[0]),
                               red == "none", return_grad)
    return _elementwise(K_BCE, x, t, dt, red, o, 0.0, 0.0, n_threads, return_grad, w)


def sigmoid_focal_loss(input, target, *, alpha=0.25, gamma=2.0, reduction="mean",
                       return_grad=False, out=None, grad_out=None, n_threads=None):
    """Sigmoid focal loss on logits, torchvision ``ops.sigmoid_focal_loss`` semantics.

    p = sigmoid(x), ce = BCE-with-logits(x, y), p_t = p y + (1 - p)(1 - y),
    loss = ce (1 - p_t)**gamma, times alpha y + (1 - alpha)(1 - y) when alpha >= 0
    (alpha None or < 0: no alpha weighting).  Computed in log space: loss and gradient are
    finite for every finite logit and every gamma >= 0.  Note: the default reduction is
    "mean" (torchvision's is "none").
    """
    x, t, dt = _pair(input, target)
    red = _check_reduction(reduction)
    cdef double a = -1.0
    if alpha is not None:
        a = _check_param(alpha, "alpha", -math.inf, True, 1.0)
    cdef double g = _check_param(gamma, "gamma", 0.0, False)
    cdef _Outputs o = _Outputs(x.shape, x.shape, dt, out, grad_out, (x, t),
                               red == "none", return_grad)
    return _elementwise(K_SIGMOID_FOCAL, x, t, dt, red, o, a, g, n_threads, return_grad)


# ------------------------------------------------------------------ softmax rows

cdef tuple _class_layout(object x, object axis):
    """(class axis, outer, C, inner) of x seen as (outer, C, inner)."""
    cdef Py_ssize_t nd = x.ndim, ax
    if nd == 0:
        raise ValueError("input must have at least one dimension (the class axis), got a scalar")
    try:  # operator.index semantics, as NumPy: 1.5, 1.0 and "1" are not axes
        ax = PyNumber_AsSsize_t(axis, NULL)
    except TypeError:
        raise TypeError(f"axis must be an integer, got {axis!r}") from None
    if nd == 1:
        if not -1 <= ax <= 1:
            raise ValueError(f"axis {axis!r} is out of range for 1-D input (classes are on "
                             f"axis 0; valid axes: -1, 0, 1)")
        ax = 0
    else:
        if not -nd <= ax < nd:
            raise ValueError(f"axis {axis!r} is out of range for input with {nd} dimensions "
                             f"(valid axes: {-nd} to {nd - 1})")
        if ax < 0:
            ax += nd
    shape = x.shape
    outer = 1
    for k in range(ax):
        outer *= shape[k]
    inner = 1
    for k in range(ax + 1, nd):
        inner *= shape[k]
    if shape[ax] == 0:
        raise ValueError(f"input has 0 classes along axis {ax} (input.shape={shape})")
    return ax, outer, shape[ax], inner


cdef object _class_labels(object target, object x, int ax, int64_t C, int64_t ignore_index,
                          str name="target"):
    """Integer class indices of x's shape without the class axis, as C-contiguous int64."""
    t = np.asarray(target)
    tdt = t.dtype
    if tdt.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {tdt}")
    expected = x.shape[:ax] + x.shape[ax + 1:]
    if t.shape != expected:
        raise ValueError(f"input and {name} do not fit: with input.shape={x.shape} (classes "
                         f"on axis {ax}) {name} must have shape {expected}, got "
                         f"{name}.shape={t.shape}")
    if tdt.kind == "u" and tdt.itemsize == 8:
        _check_uint64_labels(t, C, ignore_index, name)
    return np.asarray(t, dtype=np.int64, order="C")


cdef int _check_uint64_labels(object t, int64_t C, object ignore_index, str name) except -1:
    """uint64 labels above 2**63 - 1 would wrap to negative int64 values (2**64 - 1 to -1,
    which could even be ignore_index): raise IndexError for the first bad label in flat
    order, as _check_labels does, naming the value as given."""
    if t.size == 0:
        return 0
    flat = t.reshape(-1)
    big = flat > np.uint64(2**63 - 1)
    if not big.any():
        return 0
    k = int(np.argmax(big))
    # a bad label before k (those fit in int64) is reported first, as in _check_labels
    head = np.asarray(flat[:k], dtype=np.int64, order="C")
    has_ignore = ignore_index is not None
    _check_labels(head, C, None, ignore_index if has_ignore else 0, False, name, has_ignore)
    raise IndexError(f"{name} holds class index {int(flat[k])} (at flat index {k}), outside "
                     f"[0, {C})" + (f" and not ignore_index={ignore_index}" if has_ignore
                                    else ""))


ctypedef struct _CountJob:
    const int64_t *labels
    int64_t n, C, ignore_index, block
    bint f32
    double *counts
    int64_t *errs


cdef void _count_task(void *ctx, int64_t t) noexcept nogil:
    cdef _CountJob *j = <_CountJob *>ctx
    cdef int64_t o = t * j.block, m = min(j.block, j.n - o), err = -1
    if j.f32:
        j.counts[t] = fl_class_target_weight_sum_f32(m, j.labels + o, j.C, NULL, j.ignore_index, &err)
    else:
        j.counts[t] = fl_class_target_weight_sum_f64(m, j.labels + o, j.C, NULL, j.ignore_index, &err)
    j.errs[t] = o + err if err >= 0 else -1


# labels per task of a threaded count (unweighted: the count is an exact integer, so any
# split gives the same value)
cdef int64_t COUNT_BLOCK = 1 << 18


cdef double _check_labels(object labels, int64_t C, object weight, int64_t ignore_index,
                          bint f32, str name="target", bint has_ignore=True,
                          int threads=1) except? -1.0:
    """Validates labels (IndexError naming the bad value) and returns the weighted count
    of non-ignored targets (torch's "mean" denominator).  has_ignore=False: every label
    must be in [0, C) (ignore_index is then unused; the count is meaningless).  threads:
    the call's thread count; an unweighted count of many labels is split over them (a
    pass over the labels that would otherwise run on one thread before the threaded
    kernel: ~5% of a two-thread cross-entropy (1M, 10))."""
    cdef int64_t n = labels.size, err = -1, nb, i
    cdef void *pl = _ptr(labels)
    cdef void *pw = _ptr(weight)
    cdef double s
    cdef _CountJob job
    if not has_ignore:
        ignore_index = 0  # a valid class: ignoring it hides no bad label
    if pw == NULL and threads > 1 and n >= 2 * COUNT_BLOCK:
        nb = (n + COUNT_BLOCK - 1) // COUNT_BLOCK
        counts = np.empty(nb, np.float64)
        errs = np.empty(nb, np.int64)
        job.labels = <const int64_t *>pl
        job.n = n
        job.C = C
        job.ignore_index = ignore_index
        job.block = COUNT_BLOCK
        job.f32 = f32
        job.counts = <double *>cnp.PyArray_DATA(counts)
        job.errs = <int64_t *>cnp.PyArray_DATA(errs)
        _run_blocks(nb, threads, _count_task, &job)
        s = 0.0
        for i in range(nb):
            s += job.counts[i]
            if err < 0 and job.errs[i] >= 0:
                err = job.errs[i]
    else:
        with nogil:
            if f32:
                s = fl_class_target_weight_sum_f32(n, <int64_t *>pl, C, <float *>pw, ignore_index, &err)
            else:
                s = fl_class_target_weight_sum_f64(n, <int64_t *>pl, C, <double *>pw, ignore_index, &err)
    if err >= 0:
        bad = int(labels.reshape(-1)[err])
        raise IndexError(f"{name} holds class index {bad} (at flat index {err}), outside "
                         f"[0, {C})" + (f" and not ignore_index={ignore_index}" if has_ignore
                                        else ""))
    return s


cdef int64_t _check_index(object value, str name) except? -1:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if not -(2**63) <= v < 2**63:
        raise ValueError(f"{name} must fit in int64, got {value!r}")
    return v


cdef enum RowKind:
    K_CE_INDEX, K_CE_PROB, K_SOFTMAX_FOCAL

ctypedef struct _RowJob:
    RowKind kind
    bint f32
    int itemsize
    int64_t outer, C, inner, block  # block: rows (outer indices) per task
    const char *x
    const char *t                   # int64 labels, or class probabilities
    const char *w                   # (C,) weight / alpha, or NULL
    int64_t ignore_index
    double param                    # label_smoothing, or gamma
    char *loss
    char *grad
    double scale
    double *sums


cdef void _row_task(void *ctx, int64_t t) noexcept nogil:
    cdef _RowJob *j = <_RowJob *>ctx
    cdef int64_t o = t * j.block, m = min(j.block, j.outer - o), err = -1
    cdef int64_t row = j.C * j.inner
    cdef int sz = j.itemsize
    cdef const char *x = j.x + o * row * sz
    cdef char *loss = j.loss + o * j.inner * sz if j.loss != NULL else NULL
    cdef char *grad = j.grad + o * row * sz if j.grad != NULL else NULL
    cdef const int64_t *lab = (<const int64_t *>j.t) + o * j.inner
    cdef const char *probs = j.t + o * row * sz
    cdef double s
    if j.kind == K_CE_INDEX:
        s = (fl_softmax_ce_index_f32(m, j.C, j.inner, <float *>x, lab, <float *>j.w,
                                     j.ignore_index, j.param, <float *>loss, <float *>grad,
                                     j.scale, &err)
             if j.f32 else
             fl_softmax_ce_index_f64(m, j.C, j.inner, <double *>x, lab, <double *>j.w,
                                     j.ignore_index, j.param, <double *>loss, <double *>grad,
                                     j.scale, &err))
    elif j.kind == K_CE_PROB:
        s = (fl_softmax_ce_prob_f32(m, j.C, j.inner, <float *>x, <float *>probs, <float *>j.w,
                                    j.param, <float *>loss, <float *>grad, j.scale)
             if j.f32 else
             fl_softmax_ce_prob_f64(m, j.C, j.inner, <double *>x, <double *>probs,
                                    <double *>j.w, j.param, <double *>loss, <double *>grad,
                                    j.scale))
    else:
        s = (fl_softmax_focal_f32(m, j.C, j.inner, <float *>x, lab, <float *>j.w, j.param,
                                  j.ignore_index, <float *>loss, <float *>grad, j.scale, &err)
             if j.f32 else
             fl_softmax_focal_f64(m, j.C, j.inner, <double *>x, lab, <double *>j.w, j.param,
                                  j.ignore_index, <double *>loss, <double *>grad, j.scale,
                                  &err))
    # labels were validated before the call (_check_labels): err stays -1
    j.sums[t] = s


cdef int _row_threads(object n_threads, int64_t outer, int64_t C, int64_t inner) except -1:
    """The thread count of a softmax loss over (outer, C, inner) (its label count too)."""
    return _threads(n_threads, outer * C * inner
                    * (COST_SHORT_ROWS if inner == 1 and C < CE_ROW_ENGINE_MIN_C else 1))


cdef object _rowwise(RowKind kind, object x, object t, object w, object dt, int64_t outer,
                     int64_t C, int64_t inner, int64_t ignore_index, double param,
                     double denom, str red, _Outputs o, object n_threads, bint return_grad):
    """A softmax loss over (outer, C, inner) in blocks of whole rows (outer indices)."""
    if denom == 0 and red == "mean":
        # nothing enters the mean (every target ignored, or of weight 0): loss 0.0 and a
        # zero gradient whatever the logits, NaN and inf included (README, cross_entropy)
        if o.grad is not None:
            o.grad.fill(0)
        return _finish(0.0, 0.0, red, o, dt, return_grad)
    cdef _RowJob j
    j.kind = kind
    j.f32 = dt == np.float32
    j.itemsize = dt.itemsize
    j.outer = outer
    j.C = C
    j.inner = inner
    j.block = max(1, BLOCK_ELEMENTS // max(1, C * inner))
    cdef int64_t row_bytes = C * <int64_t>dt.itemsize
    if inner == 1 and C >= CE_ROW_ENGINE_MIN_C and outer * row_bytes >= STREAM_MIN_BYTES:
        # depends on the shape only, never on the thread count (same bits for any)
        j.block = max(j.block, (CE_STREAM_BLOCK_BYTES + row_bytes - 1) // row_bytes)
    if j.block >= outer:
        j.block = max(outer, 1)
    j.x = <const char *>_ptr(x)
    j.t = <const char *>_ptr(t)
    j.w = <const char *>_ptr(w)
    j.ignore_index = ignore_index
    j.param = param
    j.loss = <char *>_ptr(o.loss)
    j.grad = <char *>_ptr(o.grad)
    j.scale = _grad_scale(red, denom)
    cdef int64_t n_blocks = (outer + j.block - 1) // j.block
    cdef _Partials parts = _Partials(n_blocks)
    j.sums = parts.sums
    cdef int threads = _row_threads(n_threads, outer, C, inner)
    cdef double total
    _run_blocks(n_blocks, threads, _row_task, &j)
    total = _sum_partials(j.sums, n_blocks)
    return _finish(total, denom, red, o, dt, return_grad)


cdef inline bint _overlaps(cnp.ndarray a, cnp.ndarray b):
    """Whether the memory of two C-contiguous arrays overlaps."""
    cdef char *pa = <char *>cnp.PyArray_DATA(a)
    cdef char *pb = <char *>cnp.PyArray_DATA(b)
    return pa < pb + cnp.PyArray_NBYTES(b) and pb < pa + cnp.PyArray_NBYTES(a)


cdef object _ce_small(cnp.ndarray x, cnp.ndarray t, int64_t ign, str red, bint return_grad,
                      object grad_out):
    """cross_entropy for the online-scoring call: (N, C) float32/float64 logits and (N,)
    int64 labels, both C-contiguous and native, no weight or smoothing, at most one block
    of the general path (so one thread whatever n_threads says).  The
    same kernels and the same results as the general path, without its generic
    validation machinery (a (32, 10) call: ~1 us instead of ~3).  Returns None whenever
    anything is unusual -- the general path then handles (or rejects) the call."""
    cdef int tn = cnp.PyArray_TYPE(x)
    if cnp.PyArray_NDIM(x) != 2 or cnp.PyArray_NDIM(t) != 1 \
            or (tn != cnp.NPY_FLOAT32 and tn != cnp.NPY_FLOAT64) \
            or cnp.PyArray_TYPE(t) != cnp.NPY_INT64 \
            or not cnp.PyArray_IS_C_CONTIGUOUS(x) or not cnp.PyArray_IS_C_CONTIGUOUS(t) \
            or not cnp.PyArray_ISNOTSWAPPED(x) or not cnp.PyArray_ISNOTSWAPPED(t):
        return None
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(x)
    cdef int64_t N = dims[0], C = dims[1]
    # one block of the general path (_rowwise), so the kernel sums in the same order: the
    # same bits as the general path, for every n_threads
    if N == 0 or C == 0 or cnp.PyArray_DIMS(t)[0] != N or N > max(1, BLOCK_ELEMENTS // C):
        return None
    cdef bint none = red == "none"
    if not none and red != "mean" and red != "sum":
        return None
    cdef cnp.ndarray g = None
    if return_grad:
        if grad_out is None:
            g = cnp.PyArray_EMPTY(2, dims, tn, 0)
        else:
            if type(grad_out) is not np.ndarray:
                return None
            g = <cnp.ndarray>grad_out
            if cnp.PyArray_TYPE(g) != tn or cnp.PyArray_NDIM(g) != 2 \
                    or cnp.PyArray_DIMS(g)[0] != N or cnp.PyArray_DIMS(g)[1] != C \
                    or not cnp.PyArray_IS_C_CONTIGUOUS(g) or not cnp.PyArray_ISWRITEABLE(g) \
                    or not cnp.PyArray_ISNOTSWAPPED(g) or _overlaps(g, x) or _overlaps(g, t):
                return None
    elif grad_out is not None:
        return None
    cdef cnp.ndarray loss = cnp.PyArray_EMPTY(1, dims, tn, 0) if none else None
    cdef const int64_t *lab = <const int64_t *>cnp.PyArray_DATA(t)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *pl = cnp.PyArray_DATA(loss) if none else NULL
    cdef void *pg = cnp.PyArray_DATA(g) if return_grad else NULL
    cdef int64_t err = -1
    cdef double denom, total = 0.0, scale
    cdef bint f32 = tn == cnp.NPY_FLOAT32
    with nogil:
        if f32:
            denom = fl_class_target_weight_sum_f32(N, lab, C, NULL, ign, &err)
        else:
            denom = fl_class_target_weight_sum_f64(N, lab, C, NULL, ign, &err)
        if err < 0:
            scale = (1.0 / denom if denom != 0 else 0.0) if red == "mean" else 1.0
            if f32:
                total = fl_softmax_ce_index_f32(N, C, 1, <float *>px, lab, NULL, ign, 0.0,
                                                <float *>pl, <float *>pg, scale, &err)
            else:
                total = fl_softmax_ce_index_f64(N, C, 1, <double *>px, lab, NULL, ign, 0.0,
                                                <double *>pl, <double *>pg, scale, &err)
    if err >= 0:
        return None  # a bad label: the general path raises the error
    if none:
        res = loss
    elif f32:
        res = np.float32(total if red == "sum" else (total / denom if denom != 0 else 0.0))
    else:
        res = np.float64(total if red == "sum" else (total / denom if denom != 0 else 0.0))
    return (res, g) if return_grad else res


def cross_entropy(input, target, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                  reduction="mean", axis=1, return_grad=False, out=None, grad_out=None,
                  n_threads=None):
    """Softmax cross-entropy on logits, torch ``F.cross_entropy`` semantics.

    Parameters
    ----------
    input : array_like, (N, C) or (N, C, d1, ...) logits with classes on ``axis``
        (1-D input: classes on axis 0; ``axis=-1`` for channels-last).
    target : array_like
        Integer class indices (any integer dtype) of input's shape without the class axis,
        or float class probabilities of input's shape.
    weight : (C,) array_like, optional
        Per-class weight; with class indices "mean" divides by the summed weight of the
        non-ignored targets, as torch.
    ignore_index : int
        Targets equal to it contribute nothing (class-index targets only).
    label_smoothing : float in [0, 1]
    reduction : {"mean", "sum", "none"}
    axis : int
    return_grad : bool
        Also return the gradient of the returned loss w.r.t. ``input`` (same pass).
    out, grad_out : ndarray, optional
    n_threads : int, optional
        As :func:`huber_loss`: blocks of whole rows run in parallel; same bits for any count.

    Deviation from torch: when the "mean" denominator is zero (every target ignored, or
    of weight 0), the loss is 0.0 and the gradient zero (whatever the logits) instead of
    NaN.  A class index outside [0, C)
    that is not ``ignore_index`` raises IndexError.
    """
    if type(input) is np.ndarray and type(target) is np.ndarray and weight is None \
            and out is None and (n_threads is None or (type(n_threads) is int and n_threads >= 1)) \
            and type(axis) is int \
            and (axis == 1 or axis == -1) and type(ignore_index) is int \
            and -(2**63) <= ignore_index < 2**63 and type(reduction) is str \
            and type(label_smoothing) in (float, int) and label_smoothing == 0:
        res = _ce_small(input, target, ignore_index, reduction, bool(return_grad), grad_out)
        if res is not None:
            return res
    xa = np.asarray(input)
    dt = _real_dtype(xa.dtype, "input")
    x = np.asarray(xa, dtype=dt, order="C")
    ax, outer_, C_, inner_ = _class_layout(x, axis)
    red = _check_reduction(reduction)
    cdef int64_t ign = _check_index(ignore_index, "ignore_index")
    cdef double eps = _check_param(label_smoothing, "label_smoothing", 0.0, False, 1.0)
    cdef int64_t outer = outer_, C = C_, inner = inner_
    w = _class_vector(weight, "weight", C, dt)
    cdef bint f32 = dt == np.float32
    sample_shape = x.shape[:ax] + x.shape[ax + 1:]
    t_arr = np.asarray(target)
    cdef bint probs = t_arr.dtype.kind == "f"
    cdef double denom
    if probs:
        t = _as_real(t_arr, "target", dt)
        if t.shape != x.shape:
            raise _shape_error("input", x.shape, "target", t.shape,
                               "the same shape for class-probability targets")
        denom = <double>(outer * inner)
    else:
        t = _class_labels(t_arr, x, ax, C, ign)
        denom = _check_labels(t, C, w, ign, f32, "target", True,
                              _row_threads(n_threads, outer, C, inner))
    cdef _Outputs o = _Outputs(sample_shape, x.shape, dt, out, grad_out, (x, t, w),
                               red == "none", return_grad)
    return _rowwise(K_CE_PROB if probs else K_CE_INDEX, x, t, w, dt, outer, C, inner, ign, eps,
                    denom, red, o, n_threads, return_grad)


def softmax_focal_loss(input, target, *, alpha=None, gamma=2.0, ignore_index=-100,
                       reduction="mean", axis=1, return_grad=False, out=None, grad_out=None,
                       n_threads=None):
    """Multi-class focal loss on logits with integer class targets.

    loss_i = -alpha[y_i] (1 - p_{i,y_i})**gamma log p_{i,y_i}, p = softmax over ``axis``.
    ``alpha`` is None (1 for every class), a scalar (the same for every class) or a (C,)
    array.  "mean" averages over the non-ignored samples.  gamma = 0 with alpha None
    equals :func:`cross_entropy`.  Computed in log space: finite for every gamma >= 0.
    Other parameters as :func:`cross_entropy`.
    """
    xa = np.asarray(input)
    dt = _real_dtype(xa.dtype, "input")
    x = np.asarray(xa, dtype=dt, order="C")
    ax, outer_, C_, inner_ = _class_layout(x, axis)
    red = _check_reduction(reduction)
    cdef int64_t ign = _check_index(ignore_index, "ignore_index")
    cdef double g = _check_param(gamma, "gamma", 0.0, False)
    cdef int64_t outer = outer_, C = C_, inner = inner_
    if alpha is not None and np.ndim(alpha) == 0:
        a = np.full(C, _check_param(alpha, "alpha", -math.inf, True), dtype=dt)
    else:
        a = _class_vector(alpha, "alpha", C, dt)
        if a is not None and not np.all(np.isfinite(a)):
            raise ValueError("alpha must be finite")
    cdef bint f32 = dt == np.float32
    sample_shape = x.shape[:ax] + x.shape[ax + 1:]
    t = _class_labels(target, x, ax, C, ign)
    cdef double denom = _check_labels(t, C, None, ign, f32, "target", True,
                                      _row_threads(n_threads, outer, C, inner))
    cdef _Outputs o = _Outputs(sample_shape, x.shape, dt, out, grad_out, (x, t, a),
                               red == "none", return_grad)
    return _rowwise(K_SOFTMAX_FOCAL, x, t, a, dt, outer, C, inner, ign, g, denom, red, o,
                    n_threads, return_grad)


# ------------------------------------------------------------------ Dice

ctypedef struct _DiceJob:
    bint f32
    int itemsize
    int64_t B, C, S, block          # block: samples per task
    const char *x
    const char *t
    const int64_t *labels
    int activation
    int64_t c0
    int squared_pred, jaccard, batch
    double smooth_nr, smooth_dr
    const char *w
    double *f
    char *grad
    double scale
    int64_t *status                 # per block
    int64_t *err_at                 # per block: flat index of a bad label


cdef void _dice_task(void *ctx, int64_t t) noexcept nogil:
    cdef _DiceJob *j = <_DiceJob *>ctx
    cdef int64_t b0 = t * j.block, m = min(j.block, j.B - b0), err = -1
    cdef int64_t sample = j.C * j.S, K = j.C - j.c0
    cdef int sz = j.itemsize
    cdef const char *x = j.x + b0 * sample * sz
    cdef const char *tt = j.t + b0 * sample * sz if j.t != NULL else NULL
    cdef const int64_t *lab = j.labels + b0 * j.S if j.labels != NULL else NULL
    cdef double *f = j.f + (0 if j.batch else b0 * K)
    cdef char *grad = j.grad + b0 * sample * sz if j.grad != NULL else NULL
    cdef int st
    if j.f32:
        st = fl_dice_f32(m, j.C, j.S, <float *>x, <float *>tt, lab, j.activation, j.c0,
                         j.squared_pred, j.jaccard, j.smooth_nr, j.smooth_dr, j.batch,
                         <float *>j.w, f, <float *>grad, j.scale, &err)
    else:
        st = fl_dice_f64(m, j.C, j.S, <double *>x, <double *>tt, lab, j.activation, j.c0,
                         j.squared_pred, j.jaccard, j.smooth_nr, j.smooth_dr, j.batch,
                         <double *>j.w, f, <double *>grad, j.scale, &err)
    j.status[t] = st
    j.err_at[t] = b0 * j.S + err if err >= 0 else -1


def dice_loss(input, target, *, activation=None, include_background=True,
              squared_pred=False, jaccard=False, smooth_nr=1e-5, smooth_dr=1e-5,
              batch=False, weight=None, reduction="mean", return_grad=False, grad_out=None,
              n_threads=None):
    """Dice loss, MONAI ``DiceLoss`` semantics (``soft_label=False``).

    Parameters
    ----------
    input : array_like (B, C, spatial...), at least one spatial axis
        Probabilities (``activation=None``) or logits (``"sigmoid"``, ``"softmax"`` over C;
        the gradient is then w.r.t. the logits).  A 2-D (B, C) input raises ValueError
        (MONAI reduces it over every axis).
    target : array_like
        Of input's shape (one-hot or soft), or an integer label map (B, spatial...) or
        (B, 1, spatial...), one-hot encoded internally without materialising it.
    include_background : bool
        False drops channel 0 after the activation (ignored with one channel, as MONAI);
        with activation None or "sigmoid" its gradient is then exactly 0 (NaN logits
        there included), with "softmax" it enters through the normalisation.
    squared_pred, jaccard, smooth_nr, smooth_dr, batch : as MONAI.
    weight : array_like, optional
        One non-negative entry per kept channel (or a scalar), as MONAI's ``weight``;
        ignored when only one channel is kept, as MONAI.
    reduction : {"mean", "sum", "none"}
        "none" returns the per-(batch, class) loss as (B, C') ((C',) with ``batch=True``),
        not MONAI's broadcastable (B, C', 1, ...).
    return_grad, grad_out : as the other functions.
    n_threads : int, optional
        As :func:`huber_loss`; samples run in parallel (not with ``batch=True``, which
        couples them).
    """
    xa = np.asarray(input)
    dt = _real_dtype(xa.dtype, "input")
    x = np.asarray(xa, dtype=dt, order="C")
    if x.ndim < 3:
        # MONAI's DiceLoss takes (B, C, spatial...) and reduces a 2-D input over every
        # axis, batch and channel included (not per (b, c)): rejected, as the reference
        raise ValueError(f"input must have shape (B, C, spatial...) with at least one spatial "
                         f"axis, got input.shape={x.shape} (add a trailing axis of length 1 "
                         f"for one value per (sample, class))")
    red = _check_reduction(reduction)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of None, 'sigmoid', 'softmax', got {activation!r}")
    cdef double snr = _check_param(smooth_nr, "smooth_nr", 0.0, False)
    cdef double sdr = _check_param(smooth_dr, "smooth_dr", 0.0, False)
    cdef int64_t B = x.shape[0], C = x.shape[1], S = 1
    for k in range(2, x.ndim):
        S *= x.shape[k]
    cdef int act = 0
    if activation == "sigmoid":
        act = 1
    elif activation == "softmax":
        if C == 1:
            warnings.warn("single channel prediction, activation='softmax' ignored.",
                          stacklevel=2)
        else:
            act = 2
    cdef int64_t c0 = 0
    if not include_background:
        if C == 1:
            warnings.warn("single channel prediction, include_background=False ignored.",
                          stacklevel=2)
        else:
            c0 = 1
    cdef int64_t K = C - c0
    cdef bint f32 = dt == np.float32
    t_arr = np.asarray(target)
    dense = None
    labels = None
    spatial = x.shape[2:]
    if t_arr.dtype.kind in "iu" and t_arr.shape != x.shape:
        if C == 1 and t_arr.shape == (B,) + spatial:
            # one channel: MONAI skips the one-hot encoding and uses the labels as values
            dense = _as_real(t_arr, "target", dt).reshape(x.shape)
        elif t_arr.shape == (B,) + spatial or t_arr.shape == (B, 1) + spatial:
            if t_arr.dtype.kind == "u" and t_arr.dtype.itemsize == 8:
                _check_uint64_labels(t_arr, C, None, "target")
            labels = np.asarray(t_arr, dtype=np.int64, order="C")
        else:
            raise ValueError(f"input and target do not fit: target must have input's shape "
                             f"{x.shape} or be a label map of shape {(B,) + spatial} or "
                             f"{(B, 1) + spatial}, got target.shape={t_arr.shape}")
    else:
        dense = _as_real(t_arr, "target", dt)
        if dense.shape != x.shape:
            raise _shape_error("input", x.shape, "target", dense.shape)
    w = None
    if weight is not None and K > 1:  # MONAI ignores (and does not check) it when K == 1
        w = _as_real(weight, "weight", dt)
        if w.ndim == 0:
            w = np.full(K, w, dtype=dt)
        if w.shape != (K,):
            raise ValueError(f"weight must have one entry per kept channel, shape ({K},), "
                             f"got weight.shape={w.shape}")
        if not np.all(w >= 0):
            raise ValueError("weight must hold non-negative values")
    nf = K if batch else B * K
    f = np.empty(nf, dtype=np.float64)
    cdef _Outputs o = _Outputs(None, x.shape, dt, None, grad_out, (x, dense, labels, w),
                               False, return_grad)
    cdef _DiceJob j
    j.f32 = f32
    j.itemsize = dt.itemsize
    j.B, j.C, j.S = B, C, S
    j.x = <const char *>_ptr(x)
    j.t = <const char *>_ptr(dense)
    j.labels = <const int64_t *>_ptr(labels)
    j.activation = act
    j.c0 = c0
    j.squared_pred = squared_pred
    j.jaccard = jaccard
    j.batch = batch
    j.smooth_nr, j.smooth_dr = snr, sdr
    j.w = <const char *>_ptr(w)
    j.f = <double *>_ptr(f)
    j.grad = <char *>_ptr(o.grad)
    j.scale = _grad_scale(red, nf)
    # batch=True couples the samples (sums over b before the ratio): one block
    j.block = B if batch else max(1, BLOCK_ELEMENTS // max(1, C * S))
    if j.block >= B:
        j.block = max(B, 1)
    cdef int64_t n_blocks = (B + j.block - 1) // j.block if B > 0 else 1, b, err = -1
    if labels is not None and n_blocks > 1:
        # every label checked before any block writes grad_out: a raising call leaves the
        # user's grad_out untouched (one block validates its labels before writing)
        _check_labels(labels, C, None, 0, f32, "target", False)
    outcome = np.zeros((2, n_blocks), np.int64)  # per block: kernel status, bad label index
    j.status = <int64_t *>_ptr(outcome)
    j.err_at = j.status + n_blocks
    cdef int threads = _threads(n_threads, B * C * S)
    cdef int status = 0
    _run_blocks(n_blocks, threads, _dice_task, &j)
    for b in range(n_blocks):  # the first failing block, in block order
        if j.status[b] != 0:
            status = <int>j.status[b]
            err = j.err_at[b]
            break
    if status == -1:
        bad = int(labels.reshape(-1)[err])
        raise IndexError(f"target holds class index {bad} (at flat index {err}), outside [0, {C})")
    if status == -2:
        raise MemoryError("dice_loss: could not allocate scratch memory")
    if status != 0:
        raise RuntimeError(f"internal error: dice kernel rejected its arguments ({status})")
    o.finish()
    if red == "none":
        shape_f = (<object>K,) if batch else (<object>B, <object>K)
        loss = f.astype(dt).reshape(shape_f)
    elif red == "sum":
        loss = dt.type(math.fsum(f))
    else:
        loss = dt.type(math.fsum(f) / nf if nf else 0.0)
    if return_grad:
        return loss, o.grad
    return loss
