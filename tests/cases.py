"""One representative call per public function (with its options switched on), shared by
the generic API tests (dtypes, shapes, out=, read-only inputs, threads, ...)."""
import numpy as np

from conftest import binary_targets, class_labels, class_probs, logits, probabilities

FUNCTIONS = [
    "cross_entropy",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "sigmoid_focal_loss",
    "softmax_focal_loss",
    "huber_loss",
    "smooth_l1_loss",
    "dice_loss",
]

# Calls whose result is an element-wise loss of input's shape.
ELEMENTWISE = {"binary_cross_entropy", "binary_cross_entropy_with_logits",
               "sigmoid_focal_loss", "huber_loss", "smooth_l1_loss"}

# Case names: the function names, plus cross_entropy with probability targets.
CASES = FUNCTIONS[:1] + ["cross_entropy_probs"] + FUNCTIONS[1:]


def func_name(case):
    return "cross_entropy" if case == "cross_entropy_probs" else case


def make_case(case, rng, dtype=np.float64, shape=None):
    """(function name, input, target, kwargs): random arrays of `dtype` with the function's
    options switched on.  `shape` is the input's shape (a default is used when None)."""
    fn = func_name(case)
    kw = {}
    if fn in ("cross_entropy", "softmax_focal_loss"):
        shape = shape or (7, 5)
        C = shape[1] if len(shape) > 1 else shape[0]
        x = logits(rng, shape, dtype=dtype)
        sample_shape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        if case == "cross_entropy_probs":
            t = class_probs(rng, shape, axis=1 if len(shape) > 1 else 0, dtype=dtype)
            kw = dict(weight=rng.uniform(0.5, 2.0, C).astype(dtype), label_smoothing=0.1)
        elif fn == "cross_entropy":
            t = class_labels(rng, sample_shape, C, ignore_frac=0.2)
            kw = dict(weight=rng.uniform(0.5, 2.0, C).astype(dtype), label_smoothing=0.1,
                      ignore_index=-100)
        else:
            t = class_labels(rng, sample_shape, C, ignore_frac=0.2)
            kw = dict(alpha=rng.uniform(0.2, 1.0, C).astype(dtype), gamma=2.0)
    elif fn == "dice_loss":
        shape = shape or (2, 3, 4, 5)
        x = logits(rng, shape, dtype=dtype)
        t = rng.integers(0, shape[1], size=shape[:1] + shape[2:]).astype(np.int64)
        kw = dict(activation="softmax", include_background=False,
                  weight=rng.uniform(0.5, 2.0, shape[1] - 1).astype(dtype))
    else:
        shape = shape or (6, 4)
        if fn == "binary_cross_entropy":
            x = probabilities(rng, shape, dtype=dtype)
            t = binary_targets(rng, shape, dtype=dtype)
            kw = dict(weight=rng.uniform(0.5, 2.0, shape[-1:]).astype(dtype))
        elif fn == "binary_cross_entropy_with_logits":
            x = logits(rng, shape, dtype=dtype)
            t = binary_targets(rng, shape, dtype=dtype)
            kw = dict(weight=rng.uniform(0.5, 2.0, shape).astype(dtype),
                      pos_weight=rng.uniform(0.5, 3.0, shape[-1:]).astype(dtype))
        elif fn == "sigmoid_focal_loss":
            x = logits(rng, shape, dtype=dtype)
            t = binary_targets(rng, shape, dtype=dtype)
            kw = dict(alpha=0.3, gamma=1.5)
        else:
            x = logits(rng, shape, dtype=dtype)
            t = logits(rng, shape, dtype=dtype)
            kw = {"delta": 1.3} if fn == "huber_loss" else {"beta": 1.3}
    return fn, x, t, kw


def none_shape(fn, x, kw):
    """Shape of the reduction="none" loss of a make_case call."""
    if fn in ELEMENTWISE:
        return x.shape
    if fn == "dice_loss":
        K = x.shape[1] - (0 if kw.get("include_background", True) else 1)
        return (K,) if kw.get("batch") else (x.shape[0], K)
    ax = kw.get("axis", 1) % x.ndim if x.ndim > 1 else 0
    return x.shape[:ax] + x.shape[ax + 1:]
