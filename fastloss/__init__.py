"""fastloss: machine-learning losses and their gradients, fused in one pass, in C.

Functions (torch-style, with ``reduction``, weights and ``return_grad``):
    cross_entropy, binary_cross_entropy, binary_cross_entropy_with_logits,
    sigmoid_focal_loss, softmax_focal_loss, huber_loss, smooth_l1_loss, dice_loss

Every function takes ``n_threads`` (None: one thread for small inputs, all cores or
``set_num_threads(n)`` for large ones); results are bitwise identical for any count.

``fastloss.show_config()`` prints the version, compiler, CPU features and the SIMD
target chosen for each kernel (``FASTLOSS_TARGET=baseline|avx2|avx512`` in the
environment forces a lower one at import).

Submodules, available right after ``import fastloss``:
    fastloss.ufuncs     real numpy.ufunc objects for the element-wise and row-wise kernels
    fastloss.reference  the NumPy twin of every function (the tests' oracle)
"""
from fastloss._core import (
    dispatch_info as _dispatch_info,
    stream_triad as _stream_triad,
    get_num_threads,
    set_num_threads,
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


def show_config(file=None):
    """Print the version, the compiler, the CPU features the dispatcher detected, the
    targets compiled and supported, and the target each kernel runs."""
    import platform
    import sys

    import numpy

    info = _dispatch_info()
    out = file if file is not None else sys.stdout
    lines = [
        f"fastloss {__version__}",
        f"  numpy {numpy.__version__}, python {platform.python_version()}, "
        f"{platform.machine()}",
        f"  compiler: {info['compiler']}",
        f"  CPU features: {' '.join(info['cpu_features']) or '(none detected)'}",
        f"  targets compiled: {' '.join(info['targets'])}; supported here: "
        f"{' '.join(info['supported'])}",
        f"  target in use: {info['target']}",
        f"  threads for large inputs: {get_num_threads()}",
        "  kernels:",
    ]
    lines += [f"    {k:26s} {info['target']}" for k in info["kernels"]]
    print("\n".join(lines), file=out)

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dice_loss",
    "get_num_threads",
    "huber_loss",
    "reference",
    "set_num_threads",
    "show_config",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "softmax_focal_loss",
    "ufuncs",
]
