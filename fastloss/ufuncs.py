"""NumPy ufuncs over the fused C kernels.

Element-wise (broadcasting, ``out=``, ``where=``, float32 stays float32):
    bce_with_logits(x, y), bce(p, y), sigmoid_focal(x, y, alpha, gamma),
    huber(x, y, delta), smooth_l1(x, y, beta)
and a ``*_grad`` twin of each returning ``(loss, dloss/dx)`` from one pass.

Generalised ufuncs over rows of logits with integer class labels:
    softmax_cross_entropy          (c),()->()
    softmax_cross_entropy_grad     (c),()->(),(c)

Invalid values give NaN and NumPy's "invalid value" warning, as np.log(-1) does.
"""
from fastloss._ufuncs import (
    bce,
    bce_grad,
    bce_with_logits,
    bce_with_logits_grad,
    huber,
    huber_grad,
    sigmoid_focal,
    sigmoid_focal_grad,
    smooth_l1,
    smooth_l1_grad,
    softmax_cross_entropy,
    softmax_cross_entropy_grad,
)

__all__ = [
    "bce", "bce_grad", "bce_with_logits", "bce_with_logits_grad", "huber", "huber_grad",
    "sigmoid_focal", "sigmoid_focal_grad", "smooth_l1", "smooth_l1_grad",
    "softmax_cross_entropy", "softmax_cross_entropy_grad",
]
