"""fastloss: machine-learning losses and their gradients, fused in one pass, in C.

Functions (torch-style, with ``reduction``, weights and ``return_grad``):
    cross_entropy, binary_cross_entropy, binary_cross_entropy_with_logits,
    sigmoid_focal_loss, softmax_focal_loss, huber_loss, smooth_l1_loss, dice_loss

Submodules, available right after ``import fastloss``:
    fastloss.ufuncs     real numpy.ufunc objects for the element-wise and row-wise kernels
    fastloss.reference  the NumPy twin of every function (the tests' oracle)
"""
from fastloss._core import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    dice_loss,
    huber_loss,
    sigmoid_focal_loss,
    smooth_l1_loss,
    softmax_focal_loss,
)
from fastloss import reference, ufuncs

__version__ = "0.1.0"

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dice_loss",
    "huber_loss",
    "reference",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "softmax_focal_loss",
    "ufuncs",
]
