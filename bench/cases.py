"""The standard benchmark cases, shared by the pytest-benchmark suite (bench/test_bench.py)
and the report script (bench/report.py).

Every case is float32 (or float64), "mean" reduction, loss + gradient, and offers callables
for each contender on the same data:
  fastloss        the fused call into a preallocated grad_out (how a throughput user calls
                  it), on 1 thread
  fastloss_alloc  the same call allocating its gradient (reported beside it), 1 thread
  fastloss_mt     the preallocated call on `threads` threads
  reference       fastloss.reference, the NumPy twin (allocates as NumPy code does)
  torch           forward + autograd backward (when torch is installed), on whatever
                  torch.set_num_threads the caller chose (the report uses `threads`)
  sklearn         sklearn's private _loss loss_gradient, where it has the loss (when installed)
and the bytes a single pass must move (inputs read once, gradient written once), for the
memory-roofline fraction.
"""
import importlib
import os
import sys

import numpy as np

try:
    import fastloss
except ImportError:  # run from a source tree built in place (setup.py build_ext --inplace)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fastloss
from fastloss import reference


def optional(name):
    try:
        return importlib.import_module(name)
    except Exception:  # not installed, or broken install: that contender is skipped
        return None


class Case:
    def __init__(self, name, elements, nbytes, fast, fast_alloc, ref, torch_fn=None,
                 sklearn_fn=None):
        """fast and fast_alloc take n_threads."""
        self.name = name
        self.elements = elements
        self.nbytes = nbytes
        self.contenders = {"fastloss": lambda: fast(1), "fastloss_alloc": lambda: fast_alloc(1),
                           "fastloss_mt": lambda: fast(Case.threads), "reference": ref}
        if torch_fn is not None:
            self.contenders["torch"] = torch_fn
        if sklearn_fn is not None:
            self.contenders["sklearn"] = sklearn_fn

    threads = 2  # for fastloss_mt; set by the caller (bench/report.py --threads)


def _torch_call(torch, loss_of, *arrays):
    """forward + backward in torch; the first array is the differentiated input."""
    tensors = [torch.from_numpy(a) for a in arrays]
    x = tensors[0].requires_grad_(True)

    def run():
        x.grad = None
        loss = loss_of(x, *tensors[1:])
        loss.backward()
        return loss.item(), x.grad
    return run


def _elementwise(name, fn, n, dtype, rng, make_target, kwargs, torch_loss=None,
                 sklearn_loss=None):
    x = (rng.standard_normal(n) * 3).astype(dtype)
    y = make_target(x, rng).astype(dtype)
    g = np.empty_like(x)
    fast = lambda k: getattr(fastloss, fn)(x, y, return_grad=True, grad_out=g, n_threads=k,
                                           **kwargs)
    alloc = lambda k: getattr(fastloss, fn)(x, y, return_grad=True, n_threads=k, **kwargs)
    ref = lambda: getattr(reference, fn)(x, y, return_grad=True, **kwargs)
    torch = optional("torch")
    tf = _torch_call(torch, torch_loss(torch), x, y) if torch and torch_loss else None
    sk = sklearn_loss(x, y) if sklearn_loss else None
    return Case(name, n, 3 * n * x.itemsize, fast, alloc, ref, tf, sk)


def _sk_binomial(x, y):
    mod = optional("sklearn._loss.loss")
    if mod is None:
        return None
    loss = mod.HalfBinomialLoss()
    yd = y.astype(x.dtype)
    lo = np.empty_like(x)
    go = np.empty_like(x)
    return lambda: loss.loss_gradient(yd, x, loss_out=lo, gradient_out=go)


def _sk_multinomial(x, t):
    mod = optional("sklearn._loss.loss")
    if mod is None:
        return None
    loss = mod.HalfMultinomialLoss(n_classes=x.shape[1])
    yd = t.astype(x.dtype)
    lo = np.empty(x.shape[0], dtype=x.dtype)
    go = np.empty_like(x)
    return lambda: loss.loss_gradient(yd, x, loss_out=lo, gradient_out=go)


def cross_entropy_case(n, c, dtype, rng):
    x = (rng.standard_normal((n, c)) * 2).astype(dtype)
    t = rng.integers(0, c, n)
    g = np.empty_like(x)
    fast = lambda k: fastloss.cross_entropy(x, t, return_grad=True, grad_out=g, n_threads=k)
    alloc = lambda k: fastloss.cross_entropy(x, t, return_grad=True, n_threads=k)
    ref = lambda: reference.cross_entropy(x, t, return_grad=True)
    torch = optional("torch")
    tf = None
    if torch:
        F = torch.nn.functional
        tf = _torch_call(torch, lambda xx, tt: F.cross_entropy(xx, tt), x, t)
    nbytes = 2 * x.nbytes + t.nbytes
    return Case(f"cross_entropy ({n}, {c})", n * c, nbytes, fast, alloc, ref, tf,
                _sk_multinomial(x, t))


def dice_case(shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    lab = rng.integers(0, shape[1], (shape[0],) + tuple(shape[2:]))
    g = np.empty_like(x)
    kw = dict(activation="softmax")
    fast = lambda k: fastloss.dice_loss(x, lab, return_grad=True, grad_out=g, n_threads=k, **kw)
    alloc = lambda k: fastloss.dice_loss(x, lab, return_grad=True, n_threads=k, **kw)
    ref = lambda: reference.dice_loss(x, lab, return_grad=True, **kw)
    tf = None
    monai = optional("monai.losses")
    torch = optional("torch")
    if monai and torch:
        loss_mod = monai.DiceLoss(softmax=True, to_onehot_y=True)
        lab_t = lab[:, None]
        tf = _torch_call(torch, lambda xx, tt: loss_mod(xx, tt), x, lab_t)
    # pass 1 reads x and the labels, pass 2 rereads x (stashed activation) and writes grad
    nbytes = 3 * x.nbytes + lab.nbytes
    return Case(f"dice_loss softmax {tuple(shape)}", x.size, nbytes, fast, alloc, ref, tf)


def standard_cases(dtype=np.float32, seed=0, scale=1.0):
    """The issue's standard cases; `scale` shrinks them for quick runs."""
    rng = np.random.default_rng(seed)
    s = lambda n: max(1, int(n * scale))
    n16 = s(16 * 2**20)
    binary = lambda x, r: (r.random(x.shape) < 0.3)
    noisy = lambda x, r: x + r.standard_normal(x.shape)
    cases = [
        cross_entropy_case(s(1_000_000), 10, dtype, rng),
        cross_entropy_case(s(65_536), 1000, dtype, rng),
        cross_entropy_case(s(2048), 32_000, dtype, rng),
        _elementwise(f"bce_with_logits ({n16},)", "binary_cross_entropy_with_logits", n16,
                     dtype, rng, binary, {},
                     lambda t: (lambda x, y: t.nn.functional.binary_cross_entropy_with_logits(x, y)),
                     _sk_binomial),
        _elementwise(f"sigmoid_focal ({n16},)", "sigmoid_focal_loss", n16, dtype, rng, binary,
                     {"alpha": 0.25, "gamma": 2.0}, _torch_sigmoid_focal),
        _elementwise(f"huber ({n16},)", "huber_loss", n16, dtype, rng, noisy, {"delta": 1.0},
                     lambda t: (lambda x, y: t.nn.functional.huber_loss(x, y, delta=1.0))),
        dice_case((max(1, s(16)), 4, 256, 256), dtype, rng),
        cross_entropy_case(32, 10, dtype, rng),
    ]
    cases[-1].name = "cross_entropy small call (32, 10)"
    return cases


def _torch_sigmoid_focal(torch):
    """torchvision.ops.sigmoid_focal_loss (mean), written out: there is no CPU torchvision."""
    F = torch.nn.functional

    def loss(x, y, alpha=0.25, gamma=2.0):
        p = torch.sigmoid(x)
        ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        out = ce * ((1 - p_t) ** gamma)
        out = (alpha * y + (1 - alpha) * (1 - y)) * out
        return out.mean()
    return loss
