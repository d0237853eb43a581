"""pytest-benchmark suite: `pytest bench --benchmark-only`.

Times every contender of every standard case (bench/cases.py), float32 and float64:
fastloss on 1 thread (preallocated gradient, and allocating), fastloss on all cores, the
NumPy reference, and torch (at all cores too) and scikit-learn when installed.
Set FASTLOSS_BENCH_SCALE=0.1 for a quick run on smaller inputs.
"""
import os

import numpy as np
import pytest

from cases import Case, optional, standard_cases

SCALE = float(os.environ.get("FASTLOSS_BENCH_SCALE", "1.0"))
Case.threads = os.cpu_count() or 1
_torch = optional("torch")
if _torch is not None:
    _torch.set_num_threads(Case.threads)
_CACHE = {}


def _cases(dtype):
    if dtype not in _CACHE:
        _CACHE.clear()  # keep one dtype's arrays in memory at a time
        _CACHE[dtype] = {c.name: c for c in standard_cases(dtype, scale=SCALE)}
    return _CACHE[dtype]


# test ids, in standard_cases() order (select with -k, e.g. -k "bce and float32")
_SLUGS = ["ce_1M_x10", "ce_65536_x1000", "ce_2048_x32000", "bce_logits_16M",
          "sigmoid_focal_16M", "huber_16M", "dice_16x4x256x256", "ce_small_32x10"]
assert len(_SLUGS) == len(standard_cases(np.float32, scale=1e-6))
_PARAMS = [(d, i, who) for d in ("float32", "float64") for i in range(len(_SLUGS))
           for who in ("fastloss", "fastloss_alloc", "fastloss_mt", "reference", "torch",
                       "sklearn")]


@pytest.mark.parametrize("dtype,index,who", _PARAMS,
                         ids=[f"{d}-{_SLUGS[i]}-{w}" for d, i, w in _PARAMS])
def test_case(benchmark, dtype, index, who):
    case = list(_cases(np.dtype(dtype)).values())[index]
    fn = case.contenders.get(who)
    if fn is None:
        pytest.skip(f"{who} has no implementation of {case.name} here (not installed)")
    benchmark.group = f"{dtype} {case.name}"
    benchmark.extra_info["elements"] = case.elements
    benchmark(fn)
