"""NumPy reference implementations of every public fastloss function.

This module is the test oracle and the benchmark baseline of fastloss.  Each function has
exactly the signature, defaults and semantics of its compiled twin in ``fastloss``
(loss *and* gradient) and is written as a competent NumPy user would write it:
vectorised (no Python loop over elements), numerically stable (max-subtracted
log-sum-exp with the dominant term kept out of the sum, softplus through
``log1p(exp(-|x|))``, ``1 - p_t`` never formed by subtraction, focal factors in log space
where they underflow) and with in-place operations on its own temporaries.  Losses and
gradients have *relative* accuracy of a few ulp wherever the problem allows it, also for
confident predictions where torch's formulas only have absolute accuracy ~1e-16.  It
depends on NumPy only and can be imported standalone.

Conventions shared by every function
------------------------------------
* dtype: float32 and float64 inputs compute in their own precision and return that
  dtype; float16 computes in float32; integer dtypes are converted to float64.
  Complex, bool, object, string... inputs raise ``TypeError``.  Targets, weights and
  other float operands are cast to the computing dtype (which is chosen by ``input``
  alone).  Scalar parameters (gamma, delta, ...) are applied as Python floats, i.e.
  rounded to the computing dtype like a C ``(real)`` cast.
* ``reduction``: ``"mean"`` (default), ``"sum"`` or ``"none"``.  A reduced loss is a
  NumPy scalar of the computing dtype (``np.float32`` / ``np.float64``); the sum is
  accumulated in float64 (``np.sum(..., dtype=np.float64)``) and the mean is that sum
  divided (in float64) by the denominator, then rounded to the computing dtype.
* ``return_grad=True`` returns ``(loss, grad)``.  ``grad`` has the input's shape and the
  computing dtype and is the gradient of the *returned* loss with respect to ``input``
  (for ``"none"``: of the sum of the returned losses).  The reduction enters as a
  factor ``scale`` (1 for "sum"/"none", ``1 / denominator`` rounded to the computing
  dtype for "mean") multiplied into the per-element gradient last.
* ``out=`` (only with ``reduction="none"``) and ``grad_out=`` (only with
  ``return_grad=True``) must be writeable ``numpy.ndarray`` of exactly the result's
  shape and the computing dtype, in either byte order (``ValueError`` otherwise);
  the result is written into them and they are returned.  Giving ``out`` with a reduced
  loss, or ``grad_out`` without ``return_grad``, raises ``ValueError``.
* Inputs are never modified; non-contiguous and read-only inputs are fine.
* Shapes that do not fit raise ``ValueError`` naming both arguments and their shapes.
  Scalar parameters follow the compiled boundary's rule exactly (``_param``): a value
  that is not a real number (str, None where not documented, complex, a sequence, bool)
  raises ``TypeError``; NaN, +-inf and values outside the parameter's domain raise
  ``ValueError`` naming the parameter.
* ``"mean"`` with a zero denominator (an empty array; for ``cross_entropy`` and
  ``softmax_focal_loss`` also every target ignored or of weight 0) is 0.0 with a zero
  gradient, whatever the logits (NaN and inf included): documented deviation from
  torch's NaN.
"""

import functools
import operator
import warnings
from typing import NamedTuple

import numpy as np

__all__ = [
    "cross_entropy",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "huber_loss",
    "smooth_l1_loss",
    "dice_loss",
]

_REDUCTIONS = ("mean", "sum", "none")
_F64 = np.dtype(np.float64)


# --------------------------------------------------------------------------- helpers


def _compute_dtype(dtype, name="input"):
    """The dtype a computation on an array of ``dtype`` runs in."""
    if dtype.kind == "f":  # any byte order; float16 computes in float32
        return np.dtype(np.float32) if dtype.itemsize <= 4 else _F64
    if dtype.kind in "iu":
        return _F64
    raise TypeError(f"{name} must be an array of real numbers (float32 or float64), "
                    f"got dtype {dtype}")


def _as_input(input):
    """``input`` as an array of its computing dtype (no copy when already float32/64)."""
    a = np.asarray(input)
    return a.astype(_compute_dtype(a.dtype), copy=False)


def _as_operand(value, dtype, name):
    """A real operand (target, weight, ...) as an array of the computing dtype."""
    a = np.asarray(value)
    _compute_dtype(a.dtype, name)  # rejects complex / object / str
    return a.astype(dtype, copy=False)


def _check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of 'mean', 'sum', 'none'; got {reduction!r}")


def _check_out(out, shape, dtype, reduction):
    if out is None:
        return None
    if reduction != "none":
        raise ValueError(
            f"out= is only supported with reduction='none' (got reduction={reduction!r})")
    return _check_array_arg(out, shape, dtype, "out")


def _check_grad_out(grad_out, shape, dtype, return_grad):
    if grad_out is None:
        return None
    if not return_grad:
        raise ValueError("grad_out= requires return_grad=True")
    return _check_array_arg(grad_out, shape, dtype, "grad_out")


def _check_array_arg(arr, shape, dtype, name):
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(arr).__name__}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape}, expected {tuple(shape)}")
    if arr.dtype.newbyteorder("=") != dtype:  # either byte order, as NumPy's ufuncs
        raise ValueError(f"{name} must have dtype {dtype}, got {arr.dtype}")
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return arr


def _check_same_shape(x, t, tname="target"):
    if t.shape != x.shape:
        raise ValueError(f"{tname} shape {t.shape} does not match input shape {x.shape}")


def _check_broadcast_to_input(w, x, name):
    try:
        ok = np.broadcast_shapes(w.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} shape {w.shape} does not broadcast to input shape {x.shape}")


def _class_axis(x, axis):
    """Normalised class axis: 0 for 1-D input (axis 1, 0 or -1 accepted), else ``axis``."""
    nd = x.ndim
    if nd == 0:
        raise ValueError("input must have at least 1 dimension (the class axis), got a 0-d array")
    axis = operator.index(axis)
    if nd == 1:
        if axis not in (0, 1, -1):
            raise ValueError(f"axis {axis} is out of bounds for 1-D input (the class axis is 0)")
        return 0
    if not -nd <= axis < nd:
        raise ValueError(f"axis {axis} is out of bounds for input with {nd} dimensions")
    return axis % nd


def _param(value, name, lo, lo_open, hi=np.inf, hi_open=False):
    """A finite real scalar parameter in [lo, hi] (open ends where asked), as a Python
    float: the same rule and exception types as the compiled boundary.  Not a real number
    (str, None, complex, a sequence, bool) -> TypeError; NaN, +-inf or out of the domain
    -> ValueError naming the parameter."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not (np.isfinite(v) and (v > lo if lo_open else v >= lo)
            and (v < hi if hi_open else v <= hi)):
        raise ValueError(f"{name} must be a finite number in {'(' if lo_open else '['}{lo:g}, "
                         f"{hi:g}{')' if hi_open else ']'}, got {value!r}")
    return v


def _reduce(loss, reduction, denom, dtype, out):
    """Apply the reduction to per-element losses ``loss`` (computing dtype)."""
    if reduction == "none":
        if out is not None and out is not loss:
            np.copyto(out, loss)
            return out
        return loss
    total = np.sum(loss, dtype=np.float64)
    if reduction == "sum":
        return dtype.type(total)
    if denom == 0:  # empty input, or every target ignored: 0.0, not NaN
        return dtype.type(0.0)
    return dtype.type(total / denom)


def _mean_scale(reduction, denom):
    """Gradient factor of the reduction (Python float, 1.0 = no multiply needed)."""
    if reduction == "mean" and denom != 0:
        return 1.0 / denom
    return 1.0


def _scale_into(g, scale, dtype, grad_out):
    """``g * scale`` (scale rounded to dtype), in place or into ``grad_out``."""
    if scale != 1.0:
        return np.multiply(g, dtype.type(scale), out=grad_out if grad_out is not None else g)
    if grad_out is not None:
        np.copyto(grad_out, g)
        return grad_out
    return g


def _sigmoid(x, negate=False):
    """``sigmoid(x)`` (``sigmoid(-x)`` with ``negate``) as ``1 / (1 + exp(-x))``.

    A sum of positive terms, so accurate to a few ulp for every x; where ``exp``
    overflows the result is the limit 0 (callers run under ``np.errstate(all="ignore")``).
    """
    s = np.exp(x) if negate else np.exp(np.negative(x))
    s += 1
    return np.reciprocal(s, out=s)


def _softplus_pair(x):
    """``(softplus(x), softplus(-x))`` with ``softplus(+-x) = max(+-x, 0) + log1p(exp(-|x|))``."""
    lg = np.abs(x)
    np.negative(lg, out=lg)
    np.exp(lg, out=lg)
    np.log1p(lg, out=lg)
    spp = np.maximum(x, 0, dtype=x.dtype)
    spp += lg
    spn = np.minimum(x, 0, dtype=x.dtype)
    np.subtract(lg, spn, out=spn)
    return spp, spn, lg


def _zero_times_inf(c):
    """``c * inf`` with ``0 * inf = 0`` (limit of ``c * softplus(x)`` for infinite x)."""
    return np.where(c == 0, 0, c * np.inf)


def _quiet(fn):
    """Run ``fn`` under ``np.errstate(all="ignore")``: like the C kernels, the reference
    never warns about the IEEE special values it produces or propagates (exp overflow to
    the limit 0, NaN inputs, ...)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return wrapper


def _check_labels(t, C, ignore_index):
    """Validate integer class targets; return (safe intp labels, valid mask or None)."""
    if t.dtype.kind not in "iu":
        raise TypeError(f"class-index target must have an integer dtype, got {t.dtype}")
    ignore_index = operator.index(ignore_index)
    valid = t != ignore_index
    bad = (t < 0) | (t >= C)
    bad &= valid
    if bad.any():
        value = t[bad].flat[0]
        raise IndexError(
            f"Target {int(value)} is out of bounds: class-index targets must be in [0, {C}) "
            f"or equal to ignore_index={ignore_index}"
        )
    if valid.all():
        return t.astype(np.intp, copy=False), None
    return np.where(valid, t, 0).astype(np.intp, copy=False), valid


def _lifted(fn, args, kwargs, reduction, return_grad, out, grad_out, loss_shape, grad_shape):
    """Run ``fn`` on operands given one leading axis of length 1 and drop it again.

    Used for 0-d inputs of element-wise losses and 1-D (single-sample) inputs of the
    softmax losses, so the implementations only ever see arrays with a sample axis.
    """
    kwargs = dict(kwargs, reduction=reduction, return_grad=return_grad,
                  out=None if out is None else out[np.newaxis],
                  grad_out=None if grad_out is None else grad_out[np.newaxis])
    res = fn(*[a[np.newaxis] for a in args], **kwargs)
    loss, grad = res if return_grad else (res, None)
    if reduction == "none":
        loss = out if out is not None else loss.reshape(loss_shape)
    if not return_grad:
        return loss
    return loss, (grad_out if grad_out is not None else grad.reshape(grad_shape))


def _softmax_rows(x, ax):
    """Pieces of a max-subtracted log-softmax over axis ``ax`` that keeps full relative
    accuracy when one class dominates.

    Returns ``m = max(x)``, ``z = x - m``, ``e = exp(z)`` (computing dtype) and, per row
    (float64, ``keepdims``), ``S1`` and ``L = log1p(S1)`` where ``S1 = sum(e) - 1`` is
    accumulated in float64 from the non-maximal terms alone, plus ``k - 1`` for ``k``
    tied maxima (each exactly 1).  Then ``log p = z - L``, ``softmax = e / (1 + S1)`` and
    for a maximal class ``p - 1 = -S1 / (1 + S1)``.  The textbook ``z - log(sum(e))``
    rounds the sum to ``1 + S1`` and so has only *absolute* accuracy ~ulp(1) in
    ``-log p_max`` and ``p_max - 1``, which are tiny for confident rows (same math;
    torch's ``log_softmax`` does that).  A row with NaN or +inf, or only -inf, gives NaN.
    """
    m = np.max(x, axis=ax, keepdims=True)
    z = np.subtract(x, m)
    e = np.exp(z)
    S1 = np.sum(np.multiply(e, z < 0), axis=ax, keepdims=True, dtype=np.float64)
    k = np.sum(e, axis=ax, keepdims=True, dtype=np.float64)  # k + S1, k = number of maxima
    k -= S1
    np.rint(k, out=k)
    k -= 1
    S1 += k
    return m, z, e, S1, np.log1p(S1)


def _label_terms(x, m, yk, S1, L, ax):
    """Per-row float64 quantities at the label: ``u = -log p_y``, ``p_y`` and ``p_y - 1``
    (the latter as ``-S1 / (1 + S1)`` when ``y`` is a maximal class: no cancellation)."""
    dy = np.take_along_axis(x, yk, ax).astype(np.float64)
    dy -= m                                   # x_y - max, exact for float32 input
    u = np.subtract(L, dy)
    S = S1 + 1
    py = np.exp(dy)
    py /= S
    pm1 = py - 1
    top = dy == 0
    if top.any():
        np.copyto(pm1, -S1 / S, where=top)
    return u, py, pm1, S


class _LabelRows(NamedTuple):
    """The log-softmax of a softmax loss at its integer labels (see _label_log_softmax)."""
    y: np.ndarray        # labels as intp, ignored ones replaced by 0
    yk: np.ndarray       # y with the class axis kept (length 1), for take/put_along_axis
    valid: "np.ndarray | None"  # non-ignored rows, None when none is ignored
    vk: "np.ndarray | None"     # valid with the class axis kept
    n_valid: int         # number of non-ignored rows
    z: np.ndarray        # x - max (computing dtype)
    e: np.ndarray        # exp(x - max) (computing dtype)
    L: np.ndarray        # log1p(S1) per row (float64, keepdims)
    u: np.ndarray        # -log p_y per row (float64)
    py: np.ndarray       # p_y
    pm1: np.ndarray      # p_y - 1, accurate when y is a maximal class
    S: np.ndarray        # 1 + S1 = sum(e)


def _label_log_softmax(x, t, ax, C, ignore_index):
    """Validated labels and the accurate log-softmax of ``x`` over ``ax`` at them: the
    block shared by :func:`cross_entropy` and :func:`softmax_focal_loss` (see
    ``_softmax_rows`` and ``_label_terms`` for the numerics)."""
    y, valid = _check_labels(t, C, ignore_index)
    yk = np.expand_dims(y, ax)
    m, z, e, S1, L = _softmax_rows(x, ax)
    u, py, pm1, S = _label_terms(x, m, yk, S1, L, ax)          # per row, float64
    vk = None if valid is None else np.expand_dims(valid, ax)
    n_valid = y.size if valid is None else int(np.count_nonzero(valid))
    return _LabelRows(y, yk, valid, vk, n_valid, z, e, L, u, py, pm1, S)


def _label_row_loss(lossk, r, row_shape, dt, reduction, denom, out):
    """The returned loss from per-row float64 losses ``lossk`` (class axis kept): NaN for
    a row whose log-softmax is NaN, 0 for ignored rows, written to ``out``, reduced; a
    "mean" with a zero denominator is 0.0."""
    lossk[np.isnan(r.L)] = np.nan
    if r.vk is not None:
        lossk[~r.vk] = 0.0
    loss = lossk.reshape(row_shape).astype(dt)
    if out is not None:
        np.copyto(out, loss)
        loss = out
    if reduction == "mean" and denom == 0:
        return dt.type(0.0)
    return _reduce(loss, reduction, denom, dt, out)


def _zero_grad(x, grad_out):
    """The gradient of a "mean" with a zero denominator: 0 whatever the logits."""
    if grad_out is not None:
        grad_out[...] = 0
        return grad_out
    return np.zeros_like(x)


def _label_row_grad(g, r, gy, ax, dt):
    """Finish a softmax-loss gradient: ``gy`` (per row) at the label column, ignored rows
    0 whatever their logits."""
    np.put_along_axis(g, r.yk, gy.astype(dt), ax)
    if r.vk is not None:
        np.copyto(g, 0, where=~r.vk)
    return g


def _into(a, dest):
    """``a`` itself, or ``dest`` after copying ``a`` into it (to continue in place there)."""
    if dest is None:
        return a
    np.copyto(dest, a)
    return dest


def _zero_coef_times(coef, v):
    """``coef * v`` with a zero coefficient contributing exactly 0 even where ``v`` is
    infinite (a -inf logit with zero weight / target): the limit, not NaN."""
    return np.multiply(coef, v, out=np.zeros(np.broadcast_shapes(np.shape(coef), np.shape(v))),
                       where=coef != 0)


# ------------------------------------------------------------------ cross-entropy


@_quiet
def cross_entropy(input, target, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                  reduction="mean", axis=1, return_grad=False, out=None, grad_out=None):
    """Softmax cross-entropy on logits (torch ``F.cross_entropy`` semantics).

    Parameters
    ----------
    input : array_like
        Logits, (N, C) or (N, C, d1, ...) with classes on ``axis``; (C,) for one sample
        (then the class axis is 0 whatever ``axis`` among 1, 0, -1 is given).
    target : array_like
        Either integer class indices (any integer dtype) of the input's shape without
        the class axis, or float class probabilities of exactly the input's shape.
    weight : array_like of shape (C,), optional
        Per-class weight (torch ``weight``).
    ignore_index : int
        Class-index targets equal to it contribute loss 0 and gradient 0 and are left
        out of the "mean" denominator (not used with probability targets).
    label_smoothing : float in [0, 1]
        Mixes the target with the uniform distribution as torch does.
    reduction : {"mean", "sum", "none"}
    axis : int
        Class axis (negative values allowed; ``axis=-1`` for channels-last).
    return_grad, out, grad_out
        See the module docstring; "none" losses have the input's shape without the
        class axis.

    Returns
    -------
    loss or (loss, grad)

    Semantics (torch 2.x)
    ---------------------
    With ``logp = log_softmax(input)``, ``eps = label_smoothing``, ``w = weight`` (ones
    when None):

    * class indices: ``loss_i = (1 - eps) * w[y_i] * (-logp[y_i])
      + (eps / C) * sum_c w[c] * (-logp[c])``; 0 for ignored samples.  "mean" divides
      the sum by ``sum_i w[y_i]`` over non-ignored samples (torch divides the smoothing
      term by the same weighted denominator).  Gradient
      ``(1 - eps) w[y] (p_j - [j == y]) + (eps / C) (W p_j - w[j])``, ``W = sum_c w[c]``.
    * probabilities: ``t' = (1 - eps) t + eps / C``; ``loss_i = -sum_c w[c] t'_c logp_c``;
      "mean" divides by the number of samples (N * d1 * ...), *not* by weights, as torch.
      Gradient ``p_j * sum_c w[c] t'_c - w[j] t'_j``.

    Deviation from torch: when the "mean" denominator is 0 (every target ignored, no
    samples, or all-zero weights of the targets) the loss is 0.0 and the gradient zero
    instead of NaN.  A class index outside [0, C) that is not ``ignore_index`` raises
    ``IndexError`` naming the value.  Ignored samples get loss 0 and gradient 0 even when
    their logits are NaN.  A row containing +inf (or only -inf) logits gives NaN, as torch.

    Numerics: ``log p = (x - max) - log1p(delta)`` with ``delta`` the sum of the
    non-maximal ``exp(x - max)`` (see ``_softmax_rows``), so the loss of a confident
    row (~1e-10, say) and ``p_y - 1`` keep full *relative* precision; torch's
    ``log(sum(exp))`` is only accurate to ~1e-16 absolute there.  The smoothing term is
    ``-sum_c w_c (x_c - max) + W log1p(delta)``, two non-negative terms.
    """
    _check_reduction(reduction)
    eps = _param(label_smoothing, "label_smoothing", 0.0, False, 1.0)
    x = _as_input(input)
    ax = _class_axis(x, axis)
    dt = x.dtype
    C = x.shape[ax]
    if C == 0:
        raise ValueError(f"input has 0 classes along axis {ax} (input shape {x.shape})")
    t = np.asarray(target)
    row_shape = x.shape[:ax] + x.shape[ax + 1:]
    if t.dtype.kind == "f":
        if t.shape != x.shape:
            raise ValueError(
                f"target shape {t.shape} does not match input shape {x.shape}: float "
                f"(probability) targets must have the input's shape; class-index targets "
                f"must be integers of shape {row_shape}")
        prob = True
    elif t.dtype.kind in "iu":
        if t.shape != row_shape:
            raise ValueError(
                f"target shape {t.shape} does not match input shape {x.shape}: class-index "
                f"targets must have the input's shape without the class axis {ax}, i.e. "
                f"{row_shape}")
        prob = False
    else:
        raise TypeError(
            f"target must hold integer class indices or float probabilities, got dtype {t.dtype}")
    w = None
    if weight is not None:
        w = _as_operand(weight, dt, "weight")
        if w.shape != (C,):
            raise ValueError(f"weight must have shape ({C},) (one entry per class), got {w.shape}")
    out = _check_out(out, row_shape, dt, reduction)
    grad_out = _check_grad_out(grad_out, x.shape, dt, return_grad)
    if x.ndim == 1:  # one sample: run on (1, C)
        return _lifted(cross_entropy, (x, t),
                       dict(weight=w, ignore_index=ignore_index, label_smoothing=eps, axis=1),
                       reduction, return_grad, out, grad_out, (), x.shape)
    wshape = [1] * x.ndim
    wshape[ax] = C
    wb = None if w is None else w.reshape(wshape)

    if prob:
        return _ce_prob(x, t.astype(dt, copy=False), wb, eps, C, ax, reduction,
                        return_grad, out, grad_out)

    r = _label_log_softmax(x, t, ax, C, ignore_index)
    y, vk, z, e, L, u, py, pm1, S = r.y, r.vk, r.z, r.e, r.L, r.u, r.py, r.pm1, r.S
    wy = 1.0 if w is None else np.expand_dims(w[y], ax).astype(np.float64)
    # "mean" denominator: summed weight (or count) of non-ignored targets
    if w is None:
        denom = float(r.n_valid)
    else:
        denom = float(np.sum(w[y], where=r.valid, dtype=np.float64) if r.valid is not None
                      else np.sum(w[y], dtype=np.float64))
    E = eps / C
    W = float(C) if w is None else float(np.sum(w, dtype=np.float64))
    cy = (1.0 - eps) * wy                                     # coefficient of -log p_y
    if np.ndim(cy) == 0:
        cy = np.full(u.shape, cy)
    if vk is not None:
        cy = np.where(vk, cy, 0.0)

    # loss = cy u + (eps / C) (W L - sum_c w_c (x_c - max)): non-negative terms
    lossk = _zero_coef_times(cy, u)
    if eps:
        if w is None:
            SD = np.sum(z, axis=ax, keepdims=True, dtype=np.float64)
        else:
            # zero-weight classes are left out (a -inf logit there must not give NaN)
            SD = np.sum(np.multiply(z, wb, out=z), axis=ax, keepdims=True, dtype=np.float64,
                        where=True if w.all() else wb != 0)
        lossk += E * (W * L - SD)
    lval = _label_row_loss(lossk, r, row_shape, dt, reduction, denom, out)
    if not return_grad:
        return lval
    if reduction == "mean" and denom == 0:
        return lval, _zero_grad(x, grad_out)

    # grad_j = gs (A p_j - E w_j),  A = cy + E W;  label column gs (cy (p_y - 1) + E (W p_y - w_y))
    gs = _mean_scale(reduction, denom)
    A = cy + E * W
    if vk is not None:
        A[~vk] = 0.0
    g = _into(e, grad_out)
    g *= (gs * A / S).astype(dt)
    if eps:
        if w is None:
            g -= dt.type(gs * E)
        else:
            g -= (gs * E * wb).astype(dt)
    gy = cy * pm1
    if eps:
        gy += E * (W * py - wy)
    gy *= gs
    if vk is not None:
        gy[~vk] = 0.0
    return lval, _label_row_grad(g, r, gy, ax, dt)


def _ce_prob(x, t, wb, eps, C, ax, reduction, return_grad, out, grad_out):
    """cross_entropy with float class-probability targets (see cross_entropy)."""
    dt = x.dtype
    # T = w * ((1 - eps) t + eps / C)
    if eps:
        T = np.multiply(t, 1.0 - eps)
        T += eps / C
        if wb is not None:
            T *= wb
    elif wb is not None:
        T = np.multiply(t, wb)
    else:
        T = t  # read only below
    # loss = -sum_c T_c log p_c = L sum_c T_c - sum_{T_c != 0} T_c (x_c - max)
    _, z, e, S1, L = _softmax_rows(x, ax)
    Tw = np.sum(T, axis=ax, keepdims=True, dtype=np.float64)
    # zero targets are left out where a logit is -inf (0 * -inf must not give NaN)
    mask = (T != 0) if np.isinf(z).any() else True
    z *= T
    STD = np.sum(z, axis=ax, keepdims=True, dtype=np.float64, where=mask)
    lossk = Tw * L
    lossk -= STD
    lossk[np.isnan(L)] = np.nan
    loss = lossk.reshape(z.shape[:ax] + z.shape[ax + 1:]).astype(dt)
    if out is not None:
        np.copyto(out, loss)
        loss = out
    n_rows = x.size // C
    zero_mean = reduction == "mean" and n_rows == 0
    lval = dt.type(0.0) if zero_mean else _reduce(loss, reduction, float(n_rows), dt, out)
    if not return_grad:
        return lval
    # grad_j = gs (p_j sum_c T_c - T_j)
    gs = _mean_scale(reduction, float(n_rows))
    g = _into(e, grad_out)
    g *= (gs * Tw / (1 + S1)).astype(dt)
    if gs != 1.0:
        T = np.multiply(T, dt.type(gs))
    g -= T
    return lval, g


# ------------------------------------------------------------------ binary losses


@_quiet
def binary_cross_entropy(input, target, *, weight=None, reduction="mean", return_grad=False,
                         out=None, grad_out=None):
    """Binary cross-entropy on probabilities (torch ``F.binary_cross_entropy``).

    Parameters
    ----------
    input : array_like
        Probabilities in [0, 1], any shape.
    target : array_like
        Targets (usually 0/1, soft values allowed) of exactly the input's shape.
    weight : array_like, optional
        Element weight broadcastable to the input's shape (torch ``weight``).
    reduction, return_grad, out, grad_out
        See the module docstring; "none" losses have the input's shape.

    Returns
    -------
    loss or (loss, grad)

    Semantics (torch)
    -----------------
    ``loss = -w * (y * max(log p, -100) + (1 - y) * max(log1p(-p), -100))`` (torch uses
    ``log1p(-p)``, so p = 1e-17, y = 0 gives 1e-17, not 0) and gradient
    ``w * (p - y) / max((1 - p) * p, 1e-12)``.  "mean" divides by the number of elements.
    A finite or infinite input outside [0, 1] raises ``ValueError`` (suggesting
    ``binary_cross_entropy_with_logits``; torch raises RuntimeError); NaN propagates.
    """
    _check_reduction(reduction)
    p = _as_input(input)
    dt = p.dtype
    y = _as_operand(target, dt, "target")
    _check_same_shape(p, y)
    w = None
    if weight is not None:
        w = _as_operand(weight, dt, "weight")
        _check_broadcast_to_input(w, p, "weight")
    out = _check_out(out, p.shape, dt, reduction)
    grad_out = _check_grad_out(grad_out, p.shape, dt, return_grad)
    if p.ndim == 0:
        return _lifted(binary_cross_entropy, (p, y), dict(weight=w),
                       reduction, return_grad, out, grad_out, (), ())
    bad = p < 0
    bad |= p > 1
    if bad.any():
        raise ValueError(
            f"binary_cross_entropy: input must be probabilities in [0, 1], found "
            f"{float(p[bad].flat[0])!r}; for logits use binary_cross_entropy_with_logits")
    del bad
    lp = np.log(p)
    l1p = np.negative(p)
    np.log1p(l1p, out=l1p)
    np.maximum(lp, -100, out=lp)
    np.maximum(l1p, -100, out=l1p)
    omy = np.subtract(1, y, dtype=dt)
    lp *= y
    l1p *= omy
    lp += l1p
    if w is None:
        loss = np.negative(lp, out=lp if out is None else out)
    else:
        np.negative(lp, out=lp)
        loss = np.multiply(lp, w, out=lp if out is None else out)
    lval = _reduce(loss, reduction, float(p.size), dt, out)
    if not return_grad:
        return lval
    # grad = w * (p - y) / max((1 - p) * p, 1e-12)
    g = np.subtract(p, y, out=omy)
    den = np.subtract(1, p, out=l1p)
    den *= p
    np.maximum(den, 1e-12, out=den)
    g /= den
    if w is not None:
        g *= w
    return lval, _scale_into(g, _mean_scale(reduction, p.size), dt, grad_out)


@_quiet
def binary_cross_entropy_with_logits(input, target, *, weight=None, pos_weight=None,
                                     reduction="mean", return_grad=False, out=None,
                                     grad_out=None):
    """Binary cross-entropy on logits (torch ``F.binary_cross_entropy_with_logits``).

    Parameters
    ----------
    input : array_like
        Logits, any shape.
    target : array_like
        Targets in [0, 1] of exactly the input's shape.
    weight : array_like, optional
        Element weight broadcastable to the input's shape.
    pos_weight : array_like, optional
        Weight of the positive term, broadcast against the input by NumPy rules, i.e. a
        (C,) vector applies along the last axis (torch).
    reduction, return_grad, out, grad_out
        See the module docstring; "none" losses have the input's shape.

    Returns
    -------
    loss or (loss, grad)

    Semantics
    ---------
    torch's ``loss = w * ((1 - y) x + (1 + (pw - 1) y) softplus(-x))``, evaluated in the
    algebraically identical symmetric form
    ``w * ((1 - y) softplus(x) + pw y softplus(-x))`` with
    ``softplus(+-x) = max(+-x, 0) + log1p(exp(-|x|))``; gradient
    ``w * ((1 - y) sigmoid(x) - pw y sigmoid(-x))`` (= torch's
    ``w * ((1 - y) - (1 + (pw - 1) y) sigmoid(-x))``).  The symmetric form has no
    cancellation for targets in [0, 1]: e.g. x = -40, y = 0 gives 4.25e-18 where torch's
    form returns 0 (torch is only accurate to ~1e-16 * |x| absolute there).  Infinite
    logits give the limits (x = -inf, y = 0 and x = +inf, y = 1: loss 0, where torch's
    form gives NaN; a zero weight times an infinite term is 0, torch: NaN); gradients
    there are the exact limits as in torch.
    """
    _check_reduction(reduction)
    x = _as_input(input)
    dt = x.dtype
    y = _as_operand(target, dt, "target")
    _check_same_shape(x, y)
    w = pw = None
    if weight is not None:
        w = _as_operand(weight, dt, "weight")
        _check_broadcast_to_input(w, x, "weight")
    if pos_weight is not None:
        pw = _as_operand(pos_weight, dt, "pos_weight")
        _check_broadcast_to_input(pw, x, "pos_weight")
    out = _check_out(out, x.shape, dt, reduction)
    grad_out = _check_grad_out(grad_out, x.shape, dt, return_grad)
    if x.ndim == 0:
        return _lifted(binary_cross_entropy_with_logits, (x, y), dict(weight=w, pos_weight=pw),
                       reduction, return_grad, out, grad_out, (), ())

    spp, spn, _ = _softplus_pair(x)        # softplus(x), softplus(-x)
    omy = np.subtract(1, y, dtype=dt)
    ypw = y if pw is None else np.multiply(y, pw)
    spp *= omy
    spn *= ypw
    inf = np.isinf(x)
    if inf.any():  # +-inf logits: a zero coefficient times an infinite softplus is 0 (the limit)
        np.copyto(spp, 0, where=inf & (omy == 0))
        np.copyto(spn, 0, where=inf & (ypw == 0))
    if w is None:
        loss = np.add(spp, spn, out=spp if out is None else out)
    else:
        spp += spn
        # a zero weight times an infinite (x = +-inf) term is 0, its limit, as the kernels
        zero_inf = inf & np.isinf(spp) & (np.broadcast_to(w, x.shape) == 0) if inf.any() else None
        loss = np.multiply(spp, w, out=spp if out is None else out)
        if zero_inf is not None:
            np.copyto(loss, 0, where=zero_inf)
    lval = _reduce(loss, reduction, float(x.size), dt, out)
    if not return_grad:
        return lval
    # grad = (1 - y) sigmoid(x) - pw y sigmoid(-x)
    sig = _sigmoid(x)
    sig *= omy
    e = _sigmoid(x, negate=True)
    e *= ypw
    sig -= e
    if w is not None:
        sig *= w
    return lval, _scale_into(sig, _mean_scale(reduction, x.size), dt, grad_out)


@_quiet
def sigmoid_focal_loss(input, target, *, alpha=0.25, gamma=2.0, reduction="mean",
                       return_grad=False, out=None, grad_out=None):
    """Sigmoid focal loss on logits (torchvision ``ops.sigmoid_focal_loss`` semantics).

    Parameters
    ----------
    input : array_like
        Logits, any shape.
    target : array_like
        Binary (or soft, in [0, 1]) targets of exactly the input's shape.
    alpha : float or None
        Weight of positives; ``alpha < 0`` or None disables the alpha weighting.
    gamma : float >= 0
        Focusing exponent.
    reduction, return_grad, out, grad_out
        See the module docstring.  Note the default reduction is "mean" (torchvision's
        default is "none").

    Returns
    -------
    loss or (loss, grad)

    Semantics
    ---------
    torchvision: ``p = sigmoid(x)``, ``ce = bce_with_logits(x, y)``,
    ``p_t = p y + (1 - p)(1 - y)``, ``loss = ce (1 - p_t)^gamma``, times
    ``alpha y + (1 - alpha)(1 - y)`` when ``alpha >= 0``; "mean" is over all elements.

    Evaluated without cancellation: ``ce = (1 - y) softplus(x) + y softplus(-x)`` (as in
    :func:`binary_cross_entropy_with_logits`), ``q = 1 - p_t = (1 - y) sigmoid(x) +
    y sigmoid(-x)`` (a sum of positive terms, never ``1 - p_t`` by subtraction), and the
    gradient ``a_t q^gamma ((1 - y) sigmoid(x) - y sigmoid(-x) + gamma ce q'/q)`` with
    ``q'/q = (1 - 2y) sigmoid(x) sigmoid(-x) / q`` -- the ``q^(gamma - 1)`` factor of the
    naive derivative never appears.  Where q underflows (|x| beyond ~87 in float32, ~708
    in float64, prediction confidently right) ``log q``, ``q^gamma`` and ``q'/q`` switch to
    log space: ``log q = logaddexp(log(1 - y) - softplus(-x), log(y) - softplus(x))``,
    ``q^gamma = exp(gamma log q)``, ``q'/q = (1 - 2y) exp(-softplus(x) - softplus(-x) -
    log q)``.  So loss and gradient are finite for every finite logit and every
    gamma >= 0, including 0 < gamma < 1 where torchvision's autograd gives NaN once
    ``1 - p_t`` rounds to 0; gamma = 0 equals alpha-weighted BCE with logits.  Infinite
    logits give the limits (e.g. x = +inf, y = 1: loss 0, gradient 0; torch gives NaN):
    with c = 1 - y at +inf (y at -inf) the loss is ``a_t c^gamma c |x|`` -> inf for
    c > 0 and a_t > 0 (even where c^gamma underflows), 0 for c = 0 or a_t = 0; the
    gradient ``+-a_t c^(gamma + 1)``.  Targets are expected in [0, 1].
    """
    _check_reduction(reduction)
    gamma = _param(gamma, "gamma", 0.0, False)
    if alpha is not None:  # < 0: no alpha weighting (documented); > 1 is out of the domain
        alpha = _param(alpha, "alpha", -np.inf, True, 1.0)
    x = _as_input(input)
    dt = x.dtype
    y = _as_operand(target, dt, "target")
    _check_same_shape(x, y)
    out = _check_out(out, x.shape, dt, reduction)
    grad_out = _check_grad_out(grad_out, x.shape, dt, return_grad)
    if x.ndim == 0:
        return _lifted(sigmoid_focal_loss, (x, y), dict(alpha=alpha, gamma=gamma),
                       reduction, return_grad, out, grad_out, (), ())

    spp, spn, lg = _softplus_pair(x)        # softplus(x) = -log sigmoid(-x), softplus(-x)
    omy = np.subtract(1, y, dtype=dt)
    # ce = (1 - y) softplus(x) + y softplus(-x)
    ce = np.multiply(omy, spp)
    ce += np.multiply(y, spn, out=lg)
    inf = np.isinf(x)
    if not inf.any():
        inf = None
    else:  # +-inf logits: the limit of ce (a zero coefficient times an infinite softplus is 0)
        ce[inf] = np.where(x[inf] > 0, _zero_times_inf(omy[inf]), _zero_times_inf(y[inf]))
    # q = 1 - p_t = (1 - y) sigmoid(x) + y sigmoid(-x): positive terms, a few ulp accurate
    sp = _sigmoid(x)
    sn = _sigmoid(x, negate=True)
    q = np.multiply(omy, sp)
    q += np.multiply(y, sn, out=lg)
    # q below the normal range (underflow, confident correct predictions): exact log space
    small = q < np.finfo(dt).tiny
    if not small.any():
        small = None
    else:
        ys, omys = y[small], omy[small]
        logq_s = np.logaddexp(np.log(omys) - spn[small], np.log(ys) - spp[small])
    mod = None
    if gamma != 0:
        mod = np.power(q, gamma, dtype=dt)    # (1 - p_t)^gamma
        if small is not None:
            mod[small] = np.exp(gamma * logq_s)
    at = None
    if alpha is not None and alpha >= 0:
        at = np.multiply(y, alpha)
        at += np.multiply(omy, 1.0 - alpha, out=lg)
    if mod is None and at is None:
        loss = ce  # copied into out by _reduce
    else:
        loss = np.multiply(ce, mod if mod is not None else at, out=out)
        if mod is not None and at is not None:
            loss *= at
        if inf is not None:
            # +-inf logits: the limit, not the rounded product.  With c = 1 - y (x = +inf)
            # or y (x = -inf), q -> c and ce -> c |x|: loss -> a_t c^gamma c |x|, i.e. inf
            # for c > 0 and a_t > 0 even where c^gamma underflows to 0 (a positive
            # number), and 0 for c = 0 or a_t = 0 (inf * 0 would give NaN); NaN stays NaN.
            c = np.where(x[inf] > 0, omy[inf], y[inf])
            lim = _zero_times_inf(c)
            if at is not None:
                lim = _zero_coef_times(at[inf], lim)
            loss[inf] = lim
    lval = _reduce(loss, reduction, float(x.size), dt, out)
    if not return_grad:
        return lval
    # d/dx = a_t q^g ((1 - y) sigmoid(x) - y sigmoid(-x) + g ce q'/q),
    # q'/q = (1 - 2y) sigmoid(x) sigmoid(-x) / q
    g = np.multiply(omy, sp)
    if gamma != 0:
        r = np.multiply(sp, sn, out=sp)
        r /= q
        np.subtract(omy, y, out=omy)             # 1 - 2y
        r *= omy
        if small is not None:
            r[small] = (omys - ys) * np.exp(-(spp[small] + spn[small]) - logq_s)
        r *= ce
        r *= gamma
        if inf is not None:
            r[inf] = 0  # ce q'/q -> 0 as |x| -> inf
    sn *= y
    g -= sn
    if gamma != 0:
        g += r
        g *= mod
    if at is not None:
        g *= at
    return lval, _scale_into(g, _mean_scale(reduction, x.size), dt, grad_out)


@_quiet
def softmax_focal_loss(input, target, *, alpha=None, gamma=2.0, ignore_index=-100,
                       reduction="mean", axis=1, return_grad=False, out=None, grad_out=None):
    """Multi-class focal loss on logits with integer class targets.

    Parameters
    ----------
    input : array_like
        Logits, (N, C) or (N, C, d1, ...) with classes on ``axis``; (C,) for one sample.
    target : array_like of int
        Class indices of the input's shape without the class axis.
    alpha : None, float or array_like of shape (C,)
        Class weight ``a``: None means 1, a scalar applies to every class, a vector per
        class.  Values are used as given (no sign rule, unlike the sigmoid variant).
    gamma : float >= 0
        Focusing exponent.
    ignore_index : int
        Targets equal to it contribute loss 0 and gradient 0 and are not counted.
    reduction, axis, return_grad, out, grad_out
        As :func:`cross_entropy`.

    Returns
    -------
    loss or (loss, grad)

    Semantics
    ---------
    ``p = softmax(input)``, ``loss_i = -a[y_i] (1 - p[y_i])^gamma log p[y_i]``; "mean"
    divides by the number of non-ignored samples (not by alpha), 0.0 (and zero gradient)
    when there are none.  Gradient
    ``a[y] (p_j - [j == y]) (1 - p_y)^gamma (1 - gamma p_y log p_y / (1 - p_y))`` with
    ``1 - p_y = -expm1(log p_y)`` and the limit ``log p_y / (1 - p_y) -> -1`` at p_y = 1,
    so loss and gradient are finite for every finite logit and gamma >= 0.  With
    gamma = 0 and alpha None it equals :func:`cross_entropy` (without weight/smoothing).
    A class index outside [0, C) that is not ``ignore_index`` raises ``IndexError``.
    ``log p_y`` comes from the same accurate log-softmax as :func:`cross_entropy`, so
    ``1 - p_y`` has full relative precision for confident rows.
    """
    _check_reduction(reduction)
    gamma = _param(gamma, "gamma", 0.0, False)
    x = _as_input(input)
    ax = _class_axis(x, axis)
    dt = x.dtype
    C = x.shape[ax]
    if C == 0:
        raise ValueError(f"input has 0 classes along axis {ax} (input shape {x.shape})")
    t = np.asarray(target)
    row_shape = x.shape[:ax] + x.shape[ax + 1:]
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    if t.shape != row_shape:
        raise ValueError(
            f"target shape {t.shape} does not match input shape {x.shape}: targets must have "
            f"the input's shape without the class axis {ax}, i.e. {row_shape}")
    a_vec = None
    a_scalar = None
    if alpha is not None:
        a = np.asarray(alpha)
        _compute_dtype(a.dtype, "alpha")
        if a.ndim == 0:
            a_scalar = _param(alpha, "alpha", -np.inf, True)
        elif a.shape == (C,):
            a_vec = a.astype(dt, copy=False)
            if not np.isfinite(a_vec).all():
                raise ValueError("alpha must be finite")
        else:
            raise ValueError(
                f"alpha must be None, a scalar or have shape ({C},), got shape {a.shape}")
    out = _check_out(out, row_shape, dt, reduction)
    grad_out = _check_grad_out(grad_out, x.shape, dt, return_grad)

    if x.ndim == 1:  # one sample: run on (1, C)
        return _lifted(softmax_focal_loss, (x, t),
                       dict(alpha=alpha, gamma=gamma, ignore_index=ignore_index, axis=1),
                       reduction, return_grad, out, grad_out, (), x.shape)
    r = _label_log_softmax(x, t, ax, C, ignore_index)
    y, vk, e, u, py, pm1, S = r.y, r.vk, r.e, r.u, r.py, r.pm1, r.S
    denom = float(r.n_valid)
    q = np.negative(pm1)                                       # 1 - p_y, accurate
    qg = np.power(q, gamma) if gamma != 0 else np.ones_like(q)  # (1 - p_y)^gamma
    if a_vec is not None:
        a = np.expand_dims(a_vec[y], ax).astype(np.float64)
    else:
        a = np.full(u.shape, 1.0 if a_scalar is None else a_scalar)
    if vk is not None:
        a[~vk] = 0.0
    # loss = a (1 - p_y)^gamma (-log p_y); a zero coefficient gives 0 even if u = inf
    lossk = _zero_coef_times(a * qg, u)
    lval = _label_row_loss(lossk, r, row_shape, dt, reduction, denom, out)
    if not return_grad:
        return lval
    if reduction == "mean" and denom == 0:
        return lval, _zero_grad(x, grad_out)
    # F = q^g (1 + g p_y u / q), with u / q -> 1 at u = 0 and p_y u -> 0 at p_y = 0;
    # grad_j = gs a F (p_j - [j == y])
    F = qg
    if gamma != 0:
        ratio = np.divide(u, q, out=np.ones_like(u), where=u != 0)
        ratio *= py
        ratio[py == 0] = 0.0
        ratio *= gamma
        ratio += 1
        F = qg * ratio
    gs = _mean_scale(reduction, denom)
    A = a * F
    A *= gs
    g = _into(e, grad_out)
    g *= (A / S).astype(dt)
    return lval, _label_row_grad(g, r, A * pm1, ax, dt)


# ---------------------------------------------------------------- regression losses


@_quiet
def huber_loss(input, target, *, delta=1.0, reduction="mean", return_grad=False, out=None,
               grad_out=None):
    """Huber loss (torch ``F.huber_loss``).

    Parameters
    ----------
    input, target : array_like
        Predictions and targets of the same shape (no broadcasting).
    delta : float > 0
        Threshold between the quadratic and the linear part.
    reduction, return_grad, out, grad_out
        See the module docstring.

    Returns
    -------
    loss or (loss, grad)

    Semantics
    ---------
    ``d = input - target``; ``loss = 0.5 d^2`` if ``|d| < delta`` else
    ``delta (|d| - 0.5 delta)``; gradient w.r.t. input ``clip(d, -delta, delta)``.
    NaN propagates.  ``delta <= 0`` raises ValueError.
    """
    _check_reduction(reduction)
    delta = _param(delta, "delta", 0.0, True)
    x = _as_input(input)
    dt = x.dtype
    y = _as_operand(target, dt, "target")
    _check_same_shape(x, y)
    out = _check_out(out, x.shape, dt, reduction)
    grad_out = _check_grad_out(grad_out, x.shape, dt, return_grad)
    if x.ndim == 0:
        return _lifted(huber_loss, (x, y), dict(delta=delta),
                       reduction, return_grad, out, grad_out, (), ())
    # with c = min(|d|, delta): loss = c (|d| - c / 2), grad = copysign(c, d); bit-identical
    # to torch's two branches 0.5 d d / delta (|d| - delta / 2) and clamp(d, -delta, delta)
    d = np.subtract(x, y)
    a = np.abs(d)
    c = np.minimum(a, delta, dtype=dt)
    a -= np.multiply(c, 0.5, out=out)
    loss = np.multiply(c, a, out=a if out is None else out)
    lval = _reduce(loss, reduction, float(x.size), dt, out)
    if not return_grad:
        return lval
    g = np.copysign(c, d, out=c)
    return lval, _scale_into(g, _mean_scale(reduction, x.size), dt, grad_out)


@_quiet
def smooth_l1_loss(input, target, *, beta=1.0, reduction="mean", return_grad=False, out=None,
                   grad_out=None):
    """Smooth L1 loss (torch ``F.smooth_l1_loss``).

    Parameters
    ----------
    input, target : array_like
        Predictions and targets of the same shape (no broadcasting).
    beta : float >= 0
        Threshold; ``beta = 0`` is the L1 loss.
    reduction, return_grad, out, grad_out
        See the module docstring.

    Returns
    -------
    loss or (loss, grad)

    Semantics
    ---------
    ``d = input - target``; ``loss = 0.5 d^2 / beta`` if ``|d| < beta`` else
    ``|d| - 0.5 beta``; gradient ``clip(d / beta, -1, 1)``; for ``beta = 0`` the loss is
    ``|d|`` with gradient ``sign(d)`` (0 at d = 0, as torch's L1).  ``beta < 0`` raises
    ValueError.
    """
    _check_reduction(reduction)
    beta = _param(beta, "beta", 0.0, False)
    x = _as_input(input)
    dt = x.dtype
    y = _as_operand(target, dt, "target")
    _check_same_shape(x, y)
    out = _check_out(out, x.shape, dt, reduction)
    grad_out = _check_grad_out(grad_out, x.shape, dt, return_grad)
    if x.ndim == 0:
        return _lifted(smooth_l1_loss, (x, y), dict(beta=beta),
                       reduction, return_grad, out, grad_out, (), ())
    d = np.subtract(x, y)
    if beta > 0:
        # with c = min(|d|, beta): loss = (|d| - c / 2) (c / beta), grad = copysign(c / beta, d);
        # outside |d| < beta this is exactly torch's |d| - beta / 2 and sign(d)
        a = np.abs(d)
        c = np.minimum(a, beta, dtype=dt)
        a -= np.multiply(c, 0.5, out=out)
        c /= beta
        loss = np.multiply(a, c, out=a if out is None else out)
    else:
        loss = np.abs(d, out=out)
    lval = _reduce(loss, reduction, float(x.size), dt, out)
    if not return_grad:
        return lval
    g = np.copysign(c, d, out=c) if beta > 0 else np.sign(d, out=d)
    return lval, _scale_into(g, _mean_scale(reduction, x.size), dt, grad_out)


# ---------------------------------------------------------------------- overlap


@_quiet
def dice_loss(input, target, *, activation=None, include_background=True, squared_pred=False,
              jaccard=False, smooth_nr=1e-5, smooth_dr=1e-5, batch=False, weight=None,
              reduction="mean", return_grad=False, grad_out=None):
    """Dice (or soft Jaccard) loss, MONAI ``DiceLoss`` semantics (``soft_label=False``).

    Parameters
    ----------
    input : array_like, shape (B, C, spatial...)
        Probabilities (``activation=None``) or logits (``"sigmoid"`` / ``"softmax"``).
    target : array_like
        Either a dense target of the input's shape (one-hot or soft; any real dtype),
        or an integer label map of shape (B, spatial...) or (B, 1, spatial...), which is
        one-hot encoded over the C channels (without materialising the one-hot array).
        With C = 1 a label map is used as the (single-channel) target itself, as MONAI's
        ``to_onehot_y=True`` is ignored for one channel.
    activation : None, "sigmoid" or "softmax"
        Applied to ``input`` first (softmax over axis 1); the gradient is then with
        respect to the logits.  ``"softmax"`` with C = 1 is ignored with MONAI's
        warning ("single channel prediction, `softmax=True` ignored.").
    include_background : bool
        False drops channel 0 after the activation.  With C = 1 it is ignored with
        MONAI's warning ("single channel prediction, `include_background=False`
        ignored.") and the channel is kept.  With activation None or "sigmoid" the
        dropped channel does not enter the loss: its gradient is exactly 0, also for
        NaN logits there (MONAI's autograd gives 0 * sigmoid'(NaN) = NaN); with
        "softmax" it enters the normalisation and NaN propagates as in MONAI.
    squared_pred : bool
        Use ``sum p^2`` and ``sum t^2`` in the denominator.
    jaccard : bool
        Soft Jaccard (IoU) instead of Dice.
    smooth_nr, smooth_dr : float
        Added to numerator and denominator.
    batch : bool
        Sum over the batch before the ratio (one value per channel).
    weight : None, float or array_like of shape (C',)
        Class weight, one entry per kept channel (C' = C - 1 when the background is
        dropped); a scalar applies to every channel; negative values raise ValueError.
        As in MONAI the weight is *not applied* when a single channel is kept
        (``C' == 1``), though it is still validated.
    reduction : {"mean", "sum", "none"}
        "none" returns shape (B, C') ((C',) with ``batch=True``); MONAI returns the
        broadcastable (B, C', 1, ...) instead.  "mean" is the plain mean over those
        values (not normalised by the weights).
    return_grad, grad_out
        See the module docstring (there is no ``out=``).

    Returns
    -------
    loss or (loss, grad)

    Semantics (MONAI 1.x)
    ---------------------
    Per kept channel c (and batch item b unless ``batch``), summing over spatial axes
    (and b when ``batch``): ``I = sum p t``, ``P = sum p`` and ``G = sum t`` (``sum p^2``,
    ``sum t^2`` with ``squared_pred``); ``D = P + G`` (Jaccard: ``D = 2 (P + G - I)``);
    ``f = 1 - (2 I + smooth_nr) / (D + smooth_dr)``, times ``weight[c]``.  Empty
    prediction and target give ``1 - smooth_nr / smooth_dr`` (0 with the defaults).
    MONAI evaluates ``squared_pred`` through vector norms (``I = (|p|^2 + |t|^2 -
    |p - t|^2) / 2``); here ``I = sum p t`` directly (same value, no cancellation).
    Sums are accumulated in float64.  A label outside [0, C) raises ``IndexError``.
    ``input`` needs at least one spatial axis (MONAI silently reduces a 2-D (B, C) input
    over every axis, including batch and channel; that case raises ``ValueError`` here).
    """
    _check_reduction(reduction)
    if activation not in (None, "sigmoid", "softmax"):
        raise ValueError(f"activation must be None, 'sigmoid' or 'softmax', got {activation!r}")
    nr = _param(smooth_nr, "smooth_nr", 0.0, False)
    dr = _param(smooth_dr, "smooth_dr", 0.0, False)
    x = _as_input(input)
    dt = x.dtype
    if x.ndim < 3:
        raise ValueError(
            f"input must have shape (B, C, spatial...) with at least one spatial axis, got "
            f"{x.shape} (MONAI reduces a 2-D input over every axis; add a trailing axis of "
            f"length 1 for per-element Dice)")
    B, C = x.shape[:2]
    sp = x.shape[2:]
    t = np.asarray(target)
    labels = None
    if t.shape == x.shape:
        tt = _as_operand(t, dt, "target")
    elif t.dtype.kind in "iu" and t.shape in ((B,) + sp, (B, 1) + sp):
        if C == 1:  # MONAI: to_onehot_y is ignored for a single channel
            tt = t.reshape(x.shape).astype(dt)
        else:
            labels = t.reshape((B,) + sp)
            bad = (labels < 0) | (labels >= C)
            if bad.any():
                raise IndexError(
                    f"label {int(labels[bad].flat[0])} in target is out of bounds for input "
                    f"with {C} channels (labels must be in [0, {C}))")
            del bad
            labels = labels.astype(np.intp, copy=False)
    else:
        raise ValueError(
            f"target shape {t.shape} does not match input shape {x.shape}: target must have "
            f"the input's shape or be an integer label map of shape {(B,) + sp} or "
            f"{(B, 1) + sp}")
    c0 = 0
    if not include_background:
        if C == 1:
            warnings.warn("single channel prediction, `include_background=False` ignored.",
                          stacklevel=3)
        else:
            c0 = 1
    K = C - c0
    w = None
    if weight is not None and K != 1:  # MONAI neither applies nor checks it when K == 1
        wa = np.asarray(weight)
        _compute_dtype(wa.dtype, "weight")
        wa = wa.astype(np.float64)
        if wa.ndim == 0:
            wa = np.full(K, float(wa))
        elif wa.shape != (K,):
            raise ValueError(
                f"weight must be a scalar or have one entry per kept channel, shape ({K},) "
                f"(include_background={include_background}), got shape {wa.shape}")
        if not (wa >= 0).all():  # NaN too
            raise ValueError("weight values must be >= 0")
        w = wa
    grad_out = _check_grad_out(grad_out, x.shape, dt, return_grad)
    act = activation
    if act == "softmax" and C == 1:
        warnings.warn("single channel prediction, `softmax=True` ignored.", stacklevel=3)
        act = None

    # ---- activation
    dp = None
    if act == "sigmoid":
        p = _sigmoid(x)
        if return_grad:
            dp = _sigmoid(x, negate=True)
            dp *= p                               # sigmoid(x) sigmoid(-x)
            if not include_background and C > 1:
                # a dropped channel does not enter the loss: its gradient is exactly 0,
                # also for NaN logits there (MONAI's autograd gives 0 * NaN = NaN)
                dp[:, :1] = 0
    elif act == "softmax":
        p = np.subtract(x, np.max(x, axis=1, keepdims=True))
        np.exp(p, out=p)
        p /= np.sum(p, axis=1, keepdims=True)
    else:
        p = x
    pk = p[:, c0:]

    # ---- per (b, c) sums (float64)
    red = tuple(range(2, x.ndim))
    if batch:
        red = (0,) + red
    P = np.sum(np.square(pk) if squared_pred else pk, axis=red, dtype=np.float64)
    if labels is None:
        tk = tt[:, c0:]
        I = np.sum(np.multiply(pk, tk), axis=red, dtype=np.float64)
        G = np.sum(np.square(tk) if squared_pred else tk, axis=red, dtype=np.float64)
    else:
        lab1 = labels[:, np.newaxis]                                   # (B, 1, spatial...)
        flat = (labels + (np.arange(B, dtype=np.intp) * C).reshape((B,) + (1,) * len(sp))).ravel()
        pl = np.take_along_axis(p, lab1, 1)                            # p at the label
        I = np.bincount(flat, weights=pl.ravel(), minlength=B * C).reshape(B, C)[:, c0:]
        G = np.bincount(flat, minlength=B * C).reshape(B, C)[:, c0:].astype(np.float64)
        del pl
        if batch:
            I = I.sum(axis=0)
            G = G.sum(axis=0)
    N = 2.0 * I + nr
    D = 2.0 * (P + G - I) + dr if jaccard else P + G + dr
    f = 1.0 - N / D
    if w is not None:
        f *= w
    if reduction == "none":
        lval = f.astype(dt)
    elif reduction == "sum":
        lval = dt.type(np.sum(f))
    else:
        lval = dt.type(np.sum(f) / f.size) if f.size else dt.type(0.0)
    if not return_grad:
        return lval

    # ---- gradient w.r.t. p:  alpha * t + beta * p^(k-1)  (k = 2 with squared_pred)
    k = 2.0 if squared_pred else 1.0
    D2 = np.square(D)
    if jaccard:
        alpha = -2.0 / D - 2.0 * N / D2
        beta = 2.0 * k * N / D2
    else:
        alpha = -2.0 / D
        beta = k * N / D2
    scale = (1.0 / f.size if f.size else 1.0) if reduction == "mean" else 1.0
    if w is not None:
        alpha *= w
        beta *= w
    if scale != 1.0:
        alpha *= scale
        beta *= scale
    cshape = ((1, K) if batch else (B, K)) + (1,) * len(sp)
    beta_b = beta.reshape(cshape).astype(dt)
    gp = grad_out if (grad_out is not None and act is None) else np.empty(x.shape, dt)
    if c0:
        gp[:, :c0] = 0
    gpk = gp[:, c0:]
    if squared_pred:
        np.multiply(pk, beta_b, out=gpk)
    else:
        gpk[...] = beta_b
    if labels is None:
        gpk += np.multiply(tk, alpha.reshape(cshape).astype(dt))
    else:
        # add alpha[b, label] at the label channel (0 for dropped channels)
        a_full = np.zeros((C,) if batch else (B, C), dtype=dt)
        a_full[..., c0:] = alpha
        if batch:
            a_at = a_full[labels]
        else:
            a_at = a_full[np.arange(B).reshape((B,) + (1,) * len(sp)), labels]
        vals = np.take_along_axis(gp, lab1, 1)
        vals += a_at[:, np.newaxis]
        np.put_along_axis(gp, lab1, vals, 1)
    # ---- chain rule through the activation
    if act == "sigmoid":
        return lval, np.multiply(gp, dp, out=grad_out if grad_out is not None else gp)
    if act == "softmax":
        s = np.sum(np.multiply(p, gp), axis=1, keepdims=True)
        gp -= s
        return lval, np.multiply(gp, p, out=grad_out if grad_out is not None else gp)
    return lval, gp
