# cython: language_level=3
"""Real numpy.ufunc objects over the fused C kernels, registered the way scipy.special
registers its ufuncs (PyUFunc_FromFuncAndData[AndSignature]).

Element-wise ufuncs share one inner loop, `_elem_loop`, driven by an `_ElemSpec` (which
kernel adapter, how many scalar parameters, one or two outputs, item size).  When x, y and
the outputs are contiguous and the parameters are broadcast scalars (stride 0), the loop
hands the whole inner dimension to the kernel; otherwise it calls the same kernel one
element at a time, so both paths give the same bits.

Floating-point flags: the kernels compare NaNs and pass through intermediate infinities
on purpose (stable formulations), which sets FP status flags that NumPy would turn into
spurious warnings.  Each loop therefore saves the FP environment, runs the kernel, and
restores it; then invalid values (a probability outside [0, 1], delta <= 0, gamma < 0, a
class index out of range) give NaN and raise the "invalid" flag, so NumPy warns exactly
as it does for np.log(-1) (and obeys np.errstate), while quiet NaN inputs propagate
silently as in np.exp(np.nan).
"""
import numpy as np

cimport numpy as cnp
from cpython.mem cimport PyMem_Malloc
from libc.math cimport NAN, isnan
from libc.stdint cimport int64_t, INT64_MIN
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from numpy cimport (PyUFunc_FromFuncAndData, PyUFunc_FromFuncAndDataAndSignature,
                    PyUFunc_None, PyUFuncGenericFunction, npy_intp)

from fastloss._kernels cimport *

cdef extern from "<fenv.h>" nogil:
    ctypedef struct fenv_t:
        pass
    int FE_INVALID
    int feraiseexcept(int excepts)
    int fegetenv(fenv_t *envp)
    int fesetenv(const fenv_t *envp)

cnp.import_array()
cnp.import_ufunc()
init_dispatch()


# ------------------------------------------------------------------ element-wise kernels

# An adapter runs one kernel on n contiguous elements with up to two scalar parameters and
# returns nonzero when it produced NaN from an invalid value (the loop then raises
# FE_INVALID).  grad may be NULL.
ctypedef int (*elem_fn)(int64_t n, const char *x, const char *y, double p1, double p2,
                        char *loss, char *grad) noexcept nogil

ctypedef struct _ElemSpec:
    elem_fn fn
    int nparams
    int nout
    int itemsize


cdef inline int _fill_nan(int64_t n, int itemsize, char *loss, char *grad) noexcept nogil:
    cdef int64_t i
    for i in range(n):
        if itemsize == 4:
            (<float *>loss)[i] = NAN
            if grad != NULL:
                (<float *>grad)[i] = NAN
        else:
            (<double *>loss)[i] = NAN
            if grad != NULL:
                (<double *>grad)[i] = NAN
    return 1


cdef int _bce_logits_f32(int64_t n, const char *x, const char *y, double p1, double p2,
                         char *loss, char *grad) noexcept nogil:
    fl_bce_logits_f32(n, <const float *>x, <const float *>y, NULL, 1, 1, NULL, 1, 1,
                      <float *>loss, <float *>grad, 1.0)
    return 0

cdef int _bce_logits_f64(int64_t n, const char *x, const char *y, double p1, double p2,
                         char *loss, char *grad) noexcept nogil:
    fl_bce_logits_f64(n, <const double *>x, <const double *>y, NULL, 1, 1, NULL, 1, 1,
                      <double *>loss, <double *>grad, 1.0)
    return 0

cdef int _bce_f32(int64_t n, const char *x, const char *y, double p1, double p2,
                  char *loss, char *grad) noexcept nogil:
    cdef int64_t err = -1
    fl_bce_f32(n, <const float *>x, <const float *>y, NULL, 1, 1, <float *>loss,
               <float *>grad, 1.0, &err)
    return err >= 0

cdef int _bce_f64(int64_t n, const char *x, const char *y, double p1, double p2,
                  char *loss, char *grad) noexcept nogil:
    cdef int64_t err = -1
    fl_bce_f64(n, <const double *>x, <const double *>y, NULL, 1, 1, <double *>loss,
               <double *>grad, 1.0, &err)
    return err >= 0

# sigmoid_focal(x, y, alpha, gamma): alpha < 0 switches alpha weighting off (torchvision);
# alpha > 1, gamma < 0 or NaN parameters are invalid.
cdef inline bint _focal_params_bad(double alpha, double gamma) noexcept nogil:
    return isnan(alpha) or alpha > 1.0 or isnan(gamma) or gamma < 0.0 or gamma == 1.0 / 0.0

cdef int _sigmoid_focal_f32(int64_t n, const char *x, const char *y, double alpha,
                            double gamma, char *loss, char *grad) noexcept nogil:
    if _focal_params_bad(alpha, gamma):
        return _fill_nan(n, 4, loss, grad)
    fl_sigmoid_focal_f32(n, <const float *>x, <const float *>y, alpha, gamma,
                         <float *>loss, <float *>grad, 1.0)
    return 0

cdef int _sigmoid_focal_f64(int64_t n, const char *x, const char *y, double alpha,
                            double gamma, char *loss, char *grad) noexcept nogil:
    if _focal_params_bad(alpha, gamma):
        return _fill_nan(n, 8, loss, grad)
    fl_sigmoid_focal_f64(n, <const double *>x, <const double *>y, alpha, gamma,
                         <double *>loss, <double *>grad, 1.0)
    return 0

cdef int _huber_f32(int64_t n, const char *x, const char *y, double delta, double p2,
                    char *loss, char *grad) noexcept nogil:
    if not delta > 0.0:
        return _fill_nan(n, 4, loss, grad)
    fl_huber_f32(n, <const float *>x, <const float *>y, delta, <float *>loss, <float *>grad, 1.0)
    return 0

cdef int _huber_f64(int64_t n, const char *x, const char *y, double delta, double p2,
                    char *loss, char *grad) noexcept nogil:
    if not delta > 0.0:
        return _fill_nan(n, 8, loss, grad)
    fl_huber_f64(n, <const double *>x, <const double *>y, delta, <double *>loss,
                 <double *>grad, 1.0)
    return 0

cdef int _smooth_l1_f32(int64_t n, const char *x, const char *y, double beta, double p2,
                        char *loss, char *grad) noexcept nogil:
    if not beta >= 0.0:
        return _fill_nan(n, 4, loss, grad)
    fl_smooth_l1_f32(n, <const float *>x, <const float *>y, beta, <float *>loss,
                     <float *>grad, 1.0)
    return 0

cdef int _smooth_l1_f64(int64_t n, const char *x, const char *y, double beta, double p2,
                        char *loss, char *grad) noexcept nogil:
    if not beta >= 0.0:
        return _fill_nan(n, 8, loss, grad)
    fl_smooth_l1_f64(n, <const double *>x, <const double *>y, beta, <double *>loss,
                     <double *>grad, 1.0)
    return 0


cdef inline double _read_real(const char *p, int itemsize) noexcept nogil:
    return (<const float *>p)[0] if itemsize == 4 else (<const double *>p)[0]


cdef void _elem_loop(char **args, const npy_intp *dims, const npy_intp *steps,
                     void *data) noexcept nogil:
    cdef const _ElemSpec *spec = <const _ElemSpec *>data
    cdef npy_intp n = dims[0], i
    cdef int k, nin = 2 + spec.nparams, sz = spec.itemsize
    cdef char *grad = args[nin + 1] if spec.nout == 2 else NULL
    cdef bint whole = steps[0] == sz and steps[1] == sz and steps[nin] == sz
    cdef int bad = 0
    cdef double p1 = 0.0, p2 = 0.0
    cdef fenv_t env
    fegetenv(&env)
    if spec.nout == 2:
        whole = whole and steps[nin + 1] == sz
    for k in range(spec.nparams):
        whole = whole and steps[2 + k] == 0
    if whole and n > 0:
        if spec.nparams > 0:
            p1 = _read_real(args[2], sz)
        if spec.nparams > 1:
            p2 = _read_real(args[3], sz)
        bad = spec.fn(n, args[0], args[1], p1, p2, args[nin], grad)
    else:
        for i in range(n):
            if spec.nparams > 0:
                p1 = _read_real(args[2] + i * steps[2], sz)
            if spec.nparams > 1:
                p2 = _read_real(args[3] + i * steps[3], sz)
            bad |= spec.fn(1, args[0] + i * steps[0], args[1] + i * steps[1], p1, p2,
                           args[nin] + i * steps[nin],
                           grad + i * steps[nin + 1] if grad != NULL else NULL)
    fesetenv(&env)
    if bad:
        feraiseexcept(FE_INVALID)


# ------------------------------------------------------------------ softmax cross-entropy rows

ctypedef double (*ce_fn)(int64_t outer, int64_t C, int64_t inner, const char *x,
                         const int64_t *labels, char *loss, char *grad) noexcept nogil

ctypedef struct _RowSpec:
    ce_fn fn
    int nout
    int itemsize


cdef double _ce_f32(int64_t outer, int64_t C, int64_t inner, const char *x,
                    const int64_t *labels, char *loss, char *grad) noexcept nogil:
    cdef int64_t err = -1
    return fl_softmax_ce_index_f32(outer, C, inner, <const float *>x, labels, NULL, INT64_MIN,
                                   0.0, <float *>loss, <float *>grad, 1.0, &err)

cdef double _ce_f64(int64_t outer, int64_t C, int64_t inner, const char *x,
                    const int64_t *labels, char *loss, char *grad) noexcept nogil:
    cdef int64_t err = -1
    return fl_softmax_ce_index_f64(outer, C, inner, <const double *>x, labels, NULL, INT64_MIN,
                                   0.0, <double *>loss, <double *>grad, 1.0, &err)


cdef void _row_loop(char **args, const npy_intp *dims, const npy_intp *steps,
                    void *data) noexcept nogil:
    """(c),()->() and (c),()->(),(c).  Contiguous rows, labels, losses (and gradient rows)
    go to the kernel in one call; anything else goes row by row through a contiguous
    scratch row.  A class index outside [0, c) gives a NaN loss (and gradient row)."""
    cdef const _RowSpec *spec = <const _RowSpec *>data
    cdef npy_intp N = dims[0], C = dims[1], i, j
    cdef int sz = spec.itemsize
    cdef bint with_grad = spec.nout == 2
    cdef npy_intp sx = steps[0], sl = steps[1], so = steps[2]
    cdef npy_intp sg = steps[3] if with_grad else 0
    cdef npy_intp cx = steps[4] if with_grad else steps[3]
    cdef npy_intp cg = steps[5] if with_grad else 0
    cdef char *x = args[0]
    cdef char *lab = args[1]
    cdef char *loss = args[2]
    cdef char *grad = args[3] if with_grad else NULL
    cdef int64_t label
    cdef bint bad = 0, whole
    cdef char *row = NULL
    cdef char *grow = NULL
    whole = (cx == sz and sx == C * sz and sl == sizeof(int64_t) and so == sz
             and (not with_grad or (cg == sz and sg == C * sz)))
    if whole:
        for i in range(N):
            label = (<const int64_t *>lab)[i]
            if label < 0 or label >= C:
                whole = 0
                break
    cdef fenv_t env
    fegetenv(&env)
    if whole:
        spec.fn(N, C, 1, x, <const int64_t *>lab, loss, grad)
        fesetenv(&env)
        return
    row = <char *>malloc(2 * C * sz + 1)
    if row == NULL:
        bad = 1  # no memory: NaN everywhere, flagged (cannot raise MemoryError from here)
    grow = row + C * sz if row != NULL else NULL
    for i in range(N):
        label = (<const int64_t *>(lab + i * sl))[0]
        if row == NULL or label < 0 or label >= C:
            bad = 1
            _fill_nan(1, sz, loss + i * so, NULL)
            if with_grad:
                for j in range(C):
                    _fill_nan(1, sz, grad + i * sg + j * cg, NULL)
            continue
        for j in range(C):
            memcpy(row + j * sz, x + i * sx + j * cx, sz)
        spec.fn(1, C, 1, row, &label, loss + i * so, grow)
        if with_grad:
            for j in range(C):
                memcpy(grad + i * sg + j * cg, grow + j * sz, sz)
    free(row)
    fesetenv(&env)
    if bad:
        feraiseexcept(FE_INVALID)


# ------------------------------------------------------------------ registration

cdef object _register(str name, PyUFuncGenericFunction loop, void *data_f32, void *data_f64,
                      int nin, int nout, bytes types, str doc, bytes signature=None):
    """One ufunc with a float32 and a float64 loop.  `types` lists both loops' type codes
    (2 * (nin + nout) NumPy type numbers); the storage lives as long as the process, as
    the ufunc does."""
    cdef int nargs = nin + nout, k
    cdef PyUFuncGenericFunction *funcs = <PyUFuncGenericFunction *>PyMem_Malloc(
        2 * sizeof(PyUFuncGenericFunction))
    cdef void **data = <void **>PyMem_Malloc(2 * sizeof(void *))
    cdef char *tps = <char *>PyMem_Malloc(2 * nargs)
    # name, doc and signature must outlive the ufunc too: keep them in C memory.
    bname = name.encode()
    bdoc = doc.encode()
    cdef char *cname = <char *>PyMem_Malloc(len(bname) + 1)
    cdef char *cdoc = <char *>PyMem_Malloc(len(bdoc) + 1)
    cdef char *csig = NULL
    if funcs == NULL or data == NULL or tps == NULL or cname == NULL or cdoc == NULL:
        raise MemoryError()
    memcpy(cname, <char *>bname, len(bname) + 1)
    memcpy(cdoc, <char *>bdoc, len(bdoc) + 1)
    funcs[0] = loop
    funcs[1] = loop
    data[0] = data_f32
    data[1] = data_f64
    for k in range(2 * nargs):
        tps[k] = types[k]
    if signature is None:
        return PyUFunc_FromFuncAndData(funcs, data, tps, 2, nin, nout, PyUFunc_None,
                                       cname, cdoc, 0)
    csig = <char *>PyMem_Malloc(len(signature) + 1)
    if csig == NULL:
        raise MemoryError()
    memcpy(csig, <char *>signature, len(signature) + 1)
    return PyUFunc_FromFuncAndDataAndSignature(funcs, data, tps, 2, nin, nout, PyUFunc_None,
                                               cname, cdoc, 0, csig)


# The loop data must outlive the ufuncs: module-level C storage, one slot per (ufunc, dtype).
cdef elem_fn _adapters[10]
_adapters[0] = _bce_logits_f32
_adapters[1] = _bce_logits_f64
_adapters[2] = _bce_f32
_adapters[3] = _bce_f64
_adapters[4] = _sigmoid_focal_f32
_adapters[5] = _sigmoid_focal_f64
_adapters[6] = _huber_f32
_adapters[7] = _huber_f64
_adapters[8] = _smooth_l1_f32
_adapters[9] = _smooth_l1_f64
cdef _ElemSpec _elem_specs[20]
cdef _RowSpec _row_specs[4]

# (name, number of scalar parameters, doc); entry k uses _adapters[2k] (f32), [2k+1] (f64).
_ELEMENTWISE = [
    ("bce_with_logits", 0,
     "bce_with_logits(x, y, /, out=None, *, where=True, ...)\n\n"
     "Binary cross-entropy on logits, elementwise: (1 - y) x + softplus(-x), in the stable\n"
     "softplus form (torch F.binary_cross_entropy_with_logits with reduction='none')."),
    ("bce", 0,
     "bce(p, y, /, out=None, *, where=True, ...)\n\n"
     "Binary cross-entropy on probabilities, elementwise: -(y max(log p, -100) +\n"
     "(1 - y) max(log(1 - p), -100)) as torch; gradient (p - y) / max(p (1 - p), 1e-12).\n"
     "p outside [0, 1] gives NaN with an 'invalid value' warning."),
    ("sigmoid_focal", 2,
     "sigmoid_focal(x, y, alpha, gamma, /, out=None, *, where=True, ...)\n\n"
     "Sigmoid focal loss on logits, elementwise (torchvision sigmoid_focal_loss with\n"
     "reduction='none'); alpha < 0 switches alpha weighting off; alpha > 1 or gamma < 0\n"
     "give NaN with an 'invalid value' warning.  Computed in log space."),
    ("huber", 1,
     "huber(x, y, delta, /, out=None, *, where=True, ...)\n\n"
     "Huber loss, elementwise (torch F.huber_loss, reduction='none'); delta <= 0 gives NaN\n"
     "with an 'invalid value' warning."),
    ("smooth_l1", 1,
     "smooth_l1(x, y, beta, /, out=None, *, where=True, ...)\n\n"
     "Smooth L1 loss, elementwise (torch F.smooth_l1_loss, reduction='none'); beta = 0 is\n"
     "L1; beta < 0 gives NaN with an 'invalid value' warning."),
]
_GRAD_NOTE = "\n\nReturns (loss, dloss/dx), both from one fused pass."


cdef object _elem_ufunc(int k, str name, int nparams, int nout, str doc):
    cdef int slot = 4 * k + 2 * (nout - 1)
    _elem_specs[slot] = _ElemSpec(_adapters[2 * k], nparams, nout, 4)
    _elem_specs[slot + 1] = _ElemSpec(_adapters[2 * k + 1], nparams, nout, 8)
    nin = 2 + nparams
    F, D = cnp.NPY_FLOAT32, cnp.NPY_FLOAT64
    types = bytes([F] * (nin + nout) + [D] * (nin + nout))
    return _register(name, <PyUFuncGenericFunction>_elem_loop, &_elem_specs[slot],
                     &_elem_specs[slot + 1], nin, nout, types, doc)


cdef object _row_ufunc(int slot, str name, int nout, str doc):
    _row_specs[slot] = _RowSpec(_ce_f32, nout, 4)
    _row_specs[slot + 1] = _RowSpec(_ce_f64, nout, 8)
    F, D, L = cnp.NPY_FLOAT32, cnp.NPY_FLOAT64, cnp.NPY_INT64
    types = bytes([F, L, F] + [F] * (nout - 1) + [D, L, D] + [D] * (nout - 1))
    sig = b"(c),()->()" if nout == 1 else b"(c),()->(),(c)"
    return _register(name, <PyUFuncGenericFunction>_row_loop, &_row_specs[slot],
                     &_row_specs[slot + 1], 2, nout, types, doc, sig)


_made = {}
for _k, (_name, _nparams, _doc) in enumerate(_ELEMENTWISE):
    _made[_name] = _elem_ufunc(_k, _name, _nparams, 1, _doc)
    _made[_name + "_grad"] = _elem_ufunc(
        _k, _name + "_grad", _nparams, 2,
        _doc.replace(_name + "(", _name + "_grad(", 1) + _GRAD_NOTE)

_made["softmax_cross_entropy"] = _row_ufunc(
    0, "softmax_cross_entropy", 1,
    "softmax_cross_entropy(x, label, /, out=None, *, axes=None, ...)\n\n"
    "Softmax cross-entropy of logit rows x (..., c) against integer class indices label (...):\n"
    "logsumexp(x) - x[label], gufunc signature (c),()->().  A label outside [0, c) gives NaN\n"
    "with an 'invalid value' warning.")
_made["softmax_cross_entropy_grad"] = _row_ufunc(
    2, "softmax_cross_entropy_grad", 2,
    "softmax_cross_entropy_grad(x, label, /, out=(None, None), *, axes=None, ...)\n\n"
    "Softmax cross-entropy and its gradient softmax(x) - onehot(label), gufunc signature\n"
    "(c),()->(),(c), from one fused pass.")

bce_with_logits = _made["bce_with_logits"]
bce_with_logits_grad = _made["bce_with_logits_grad"]
bce = _made["bce"]
bce_grad = _made["bce_grad"]
sigmoid_focal = _made["sigmoid_focal"]
sigmoid_focal_grad = _made["sigmoid_focal_grad"]
huber = _made["huber"]
huber_grad = _made["huber_grad"]
smooth_l1 = _made["smooth_l1"]
smooth_l1_grad = _made["smooth_l1_grad"]
softmax_cross_entropy = _made["softmax_cross_entropy"]
softmax_cross_entropy_grad = _made["softmax_cross_entropy_grad"]
del _made
