"""Bad input never crashes or lies (issue 5, "Bad input"): every bad argument gets the
documented exception type and a message naming the argument; awkward but valid input
(aliased outputs, zero-size arrays, 64-bit sizes and label values, memory-mapped and
read-only inputs) gives correct results.

What test_api.py already checks is not repeated here: TypeError for a non-real *input*,
negative gamma / non-positive delta / label_smoothing outside [0, 1] / unknown reduction
naming the parameter, target shape mismatches naming both shapes, labels 5, -1, 10**12
and -100 raising IndexError, empty (0, C) inputs, huber out= aliasing its input.

Decision documented (README "Common rules"): an out= / grad_out= that overlaps an input is
accepted and the result is computed into a temporary and then copied, so aliasing gives
the same result as fresh outputs (NumPy's ufunc rule), never a ValueError.
"""
import re

import numpy as np
import pytest

import fastloss
from cases import CASES, ELEMENTWISE, FUNCTIONS, func_name, make_case, none_shape
from conftest import seed_of

ref = fastloss.reference


def _rng(*key):
    return np.random.default_rng(seed_of("bad_input", *key))


def _call(fn, x, t, kw, **extra):
    return getattr(fastloss, fn)(x, t, **{**kw, **extra})


def _bad_dtype_array(a, bad):
    a = np.asarray(a)
    if bad == "complex":
        return a.astype(np.complex128)
    if bad == "bool":
        return a > 0
    if bad == "object":
        return a.astype(object)
    return a.astype(str)


BAD_KINDS = ["complex", "bool", "object", "str"]

# (case, argument) pairs: every float operand of every function other than `input`
# (test_api covers input's TypeError, but not that the message names it: included here).
DTYPE_ARGS = (
    [(c, "input") for c in CASES]
    + [(c, "target") for c in CASES]
    + [("cross_entropy", "weight"), ("cross_entropy_probs", "weight"),
       ("binary_cross_entropy", "weight"), ("binary_cross_entropy_with_logits", "weight"),
       ("binary_cross_entropy_with_logits", "pos_weight"), ("softmax_focal_loss", "alpha"),
       ("dice_loss", "weight")]
)


@pytest.mark.parametrize("bad", BAD_KINDS)
@pytest.mark.parametrize("case,arg", DTYPE_ARGS, ids=[f"{c}-{a}" for c, a in DTYPE_ARGS])
def test_non_real_dtype_type_error_names_argument(case, arg, bad):
    fn, x, t, kw = make_case(case, _rng(case, arg, bad))
    if arg == "input":
        x = _bad_dtype_array(x, bad)
    elif arg == "target":
        t = _bad_dtype_array(t, bad)
    else:
        kw = {**kw, arg: _bad_dtype_array(kw[arg], bad)}
    with pytest.raises(TypeError, match=rf"\b{arg}\b"):
        _call(fn, x, t, kw)


@pytest.mark.parametrize("fn,param", [
    ("sigmoid_focal_loss", "gamma"), ("sigmoid_focal_loss", "alpha"),
    ("softmax_focal_loss", "gamma"), ("softmax_focal_loss", "alpha"),
    ("huber_loss", "delta"), ("smooth_l1_loss", "beta"),
    ("cross_entropy", "label_smoothing"), ("dice_loss", "smooth_nr"), ("dice_loss", "smooth_dr"),
])
@pytest.mark.parametrize("value", [True, np.True_, "abc", None, 1 + 2j, [1.0, 2.0]],
                         ids=["True", "np.True_", "str", "None", "complex", "list"])
def test_non_real_scalar_parameter_type_error_names_it(fn, param, value):
    """A bool where a float is expected is a TypeError, as for arrays (True is not 1.0 of
    a focusing parameter); so are strings, None (where None is not documented), complex
    and sequences.  alpha=None is documented ('no alpha weighting') and is skipped."""
    if value is None and param == "alpha":
        pytest.skip("alpha=None is documented: no alpha weighting")
    if isinstance(value, list) and fn == "softmax_focal_loss" and param == "alpha":
        pytest.skip("softmax_focal_loss takes a per-class alpha sequence")
    _, x, t, kw = make_case(fn, _rng(fn, param))
    kw = {**kw, param: value}
    with pytest.raises(TypeError, match=param):
        _call(fn, x, t, kw)


# ------------------------------------------------------------------ shapes

@pytest.mark.parametrize("fn,arg,bad_shape,x_shape", [
    ("binary_cross_entropy", "weight", (5,), (6, 4)),
    ("binary_cross_entropy", "weight", (6, 1, 4), (6, 4)),      # more dims than input
    ("binary_cross_entropy_with_logits", "weight", (3, 4), (6, 4)),
    ("binary_cross_entropy_with_logits", "pos_weight", (6,), (6, 4)),  # not the last axis
    ("binary_cross_entropy_with_logits", "pos_weight", (2, 6, 4), (6, 4)),
])
def test_broadcast_operand_shape_error_names_both_shapes(fn, arg, bad_shape, x_shape):
    _, x, t, kw = make_case(fn, _rng(fn, arg, bad_shape))
    kw = {**kw, arg: np.ones(bad_shape)}
    with pytest.raises(ValueError) as exc:
        _call(fn, x, t, kw)
    msg = str(exc.value)
    assert arg in msg and "input" in msg, msg
    assert str(bad_shape) in msg and str(x_shape) in msg, msg


@pytest.mark.parametrize("fn,arg,length,expected", [
    ("cross_entropy", "weight", 4, 5),      # make_case: 5 classes
    ("softmax_focal_loss", "alpha", 6, 5),
    ("dice_loss", "weight", 3, 2),          # 3 channels, include_background=False keeps 2
])
def test_class_vector_shape_error_names_both_shapes(fn, arg, length, expected):
    _, x, t, kw = make_case(fn, _rng(fn, arg, length))
    kw = {**kw, arg: np.ones(length)}
    with pytest.raises(ValueError) as exc:
        _call(fn, x, t, kw)
    msg = str(exc.value)
    assert arg in msg, msg
    assert f"({expected},)" in msg and f"({length},)" in msg, msg


def _out_cases():
    return [c for c in CASES if c != "dice_loss"]


@pytest.mark.parametrize("which", ["out", "grad_out"])
@pytest.mark.parametrize("case", CASES)
def test_out_of_wrong_shape_value_error_names_both_shapes(case, which):
    if case == "dice_loss" and which == "out":
        pytest.skip("dice_loss has no out=")
    fn, x, t, kw = make_case(case, _rng(case, which))
    good = none_shape(fn, x, kw) if which == "out" else x.shape
    for bad_shape in (good + (1,), good[:-1] + (good[-1] + 1,), good[::-1]):
        if bad_shape == good:
            continue
        arr = np.empty(bad_shape)
        with pytest.raises(ValueError) as exc:
            _call(fn, x, t, kw, reduction="none" if fn != "dice_loss" else "mean",
                  return_grad=True, **{which: arr})
        msg = str(exc.value)
        assert which in msg, msg
        assert str(tuple(good)) in msg and str(tuple(bad_shape)) in msg, msg


@pytest.mark.parametrize("which", ["out", "grad_out"])
@pytest.mark.parametrize("case", CASES)
def test_out_of_wrong_dtype_is_value_error(case, which):
    """The computing dtype exactly: float32 for float32 and float16 input, float64 for
    float64 and integer input; no silent casting of the result."""
    if case == "dice_loss" and which == "out":
        pytest.skip("dice_loss has no out=")
    fn, x, t, kw = make_case(case, _rng(case, which))
    red = "none" if fn != "dice_loss" else "mean"
    shape = none_shape(fn, x, kw) if which == "out" else x.shape
    for xin, bad_dt in ((x, np.float32), (x.astype(np.float32), np.float64),
                        (x.astype(np.float16), np.float16), (x, np.int64)):
        with pytest.raises(ValueError, match=which):
            _call(fn, xin, t, kw, reduction=red, return_grad=True,
                  **{which: np.empty(shape, dtype=bad_dt)})


@pytest.mark.parametrize("which", ["out", "grad_out"])
@pytest.mark.parametrize("case", CASES)
def test_read_only_out_is_value_error_and_untouched(case, which):
    if case == "dice_loss" and which == "out":
        pytest.skip("dice_loss has no out=")
    fn, x, t, kw = make_case(case, _rng(case, which))
    red = "none" if fn != "dice_loss" else "mean"
    shape = none_shape(fn, x, kw) if which == "out" else x.shape
    base = np.full(shape, -7.0)
    ro = base.view()
    ro.setflags(write=False)  # a read-only view of a writeable buffer
    for arr in (ro, np.broadcast_to(np.float64(-7.0), shape)):
        with pytest.raises(ValueError, match=which):
            _call(fn, x, t, kw, reduction=red, return_grad=True, **{which: arr})
    assert np.all(base == -7.0)


@pytest.mark.parametrize("case", _out_cases())
def test_out_with_reduced_loss_and_grad_out_without_grad_are_value_errors(case):
    fn, x, t, kw = make_case(case, _rng(case))
    with pytest.raises(ValueError, match="out"):
        _call(fn, x, t, kw, reduction="mean", out=np.empty(none_shape(fn, x, kw)))
    with pytest.raises(ValueError, match="grad_out"):
        _call(fn, x, t, kw, reduction="none", grad_out=np.empty(x.shape))


# ------------------------------------------------------------------ aliasing

def _alias_targets(case, fn, x, t, kw):
    """(name, function building (x, t, kw, extra) where an output overlaps an input)."""
    out = []
    red = "none" if fn != "dice_loss" else "mean"

    def grad_is_x():
        x2 = x.copy()
        return x2, t, kw, dict(reduction=red, return_grad=True, grad_out=x2)
    out.append(("grad_out=input", grad_is_x))
    if t.dtype.kind == "f" and t.shape == x.shape:
        def grad_is_t():
            t2 = t.copy()
            return x, t2, kw, dict(reduction=red, return_grad=True, grad_out=t2)
        out.append(("grad_out=target", grad_is_t))
    if fn in ELEMENTWISE:
        def out_is_x():
            x2 = x.copy()
            return x2, t, kw, dict(reduction="none", return_grad=True, out=x2)
        out.append(("out=input", out_is_x))

        def out_is_t():
            t2 = t.copy()
            return x, t2, kw, dict(reduction="none", return_grad=True, out=t2)
        out.append(("out=target", out_is_t))

        def out_shifted():
            # out starts one element after input in the same buffer: every element of out
            # but the last is an element of input the kernel has yet to read
            buf = np.concatenate([x.ravel(), [0.0]]).astype(x.dtype)
            xv = buf[:-1].reshape(x.shape)
            ov = buf[1:].reshape(x.shape)
            return xv, t, kw, dict(reduction="none", return_grad=True, out=ov)
        out.append(("out=input shifted by one", out_shifted))

        def grad_reversed():
            x2 = x.copy()
            return x2, t, kw, dict(reduction="none", return_grad=True, grad_out=x2[::-1, ::-1])
        out.append(("grad_out=input reversed", grad_reversed))
    if fn == "binary_cross_entropy_with_logits":
        def grad_is_weight():
            w2 = kw["weight"].copy()  # make_case: weight of input's full shape
            return x, t, {**kw, "weight": w2}, dict(reduction="none", return_grad=True,
                                                    grad_out=w2)
        out.append(("grad_out=weight", grad_is_weight))
    if fn in ("cross_entropy", "softmax_focal_loss"):
        def out_in_grad():
            # the per-row loss written into column 0 of the logits themselves
            x2 = x.copy()
            return x2, t, kw, dict(reduction="none", return_grad=True, out=x2[:, 0])
        out.append(("out=input column", out_in_grad))
    return out


ALIAS_CASES = []
for _c in CASES:
    _fn, _x, _t, _kw = make_case(_c, _rng("alias-ids", _c))
    for _name, _ in _alias_targets(_c, _fn, _x, _t, _kw):
        ALIAS_CASES.append(pytest.param(_c, _name, id=f"{_c}-{_name.replace(' ', '_')}"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case,alias", ALIAS_CASES)
def test_output_overlapping_an_input_gives_fresh_results(case, alias, dtype):
    """Documented decision: an overlapping out=/grad_out= is computed into a temporary and
    copied, so the result equals the call with fresh outputs on the original values, bit
    for bit, and the returned arrays are the user's."""
    fn, x, t, kw = make_case(case, _rng("alias", case, alias), dtype)
    red = "none" if fn != "dice_loss" else "mean"
    want_l, want_g = _call(fn, x.copy(), t.copy(), {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                                   for k, v in kw.items()},
                           reduction=red, return_grad=True)
    build = dict(_alias_targets(case, fn, x, t, kw))[alias]
    x2, t2, kw2, extra = build()
    loss, grad = _call(fn, x2, t2, kw2, **extra)
    if "out" in extra:
        assert loss is extra["out"]
    if "grad_out" in extra:
        assert grad is extra["grad_out"]
    np.testing.assert_array_equal(loss, want_l)
    np.testing.assert_array_equal(grad, want_g)


# ------------------------------------------------------------------ labels

LABEL_FNS = ["cross_entropy", "softmax_focal_loss", "dice_loss"]


@pytest.mark.parametrize("fn", LABEL_FNS)
@pytest.mark.parametrize("bad", [2**31, 2**32 + 1, 2**32 + 3, -2**31 - 1, -2**32 + 1, 2**63 - 1,
                                 -2**63])
def test_64_bit_label_values_index_error_names_value(fn, bad):
    """Values that a 32-bit (or 16-bit) truncation would turn into a valid class
    (2**32 + 1 -> 1, 2**32 + 3 -> 3, -2**32 + 1 -> 1) must raise like any other bad label,
    naming the full 64-bit value."""
    _, x, t, kw = make_case(fn, _rng("label64", fn, bad))
    t = t.copy()
    t.flat[2] = bad
    with pytest.raises(IndexError, match=rf"(?<![\d-]){re.escape(str(bad))}(?!\d)"):
        _call(fn, x, t, kw)


@pytest.mark.parametrize("fn", LABEL_FNS)
@pytest.mark.parametrize("value", [2**64 - 1, 2**63, 2**63 + 1])
def test_uint64_labels_beyond_int64_index_error_names_value(fn, value):
    """uint64 labels above 2**63 - 1 must not wrap to negative numbers: 2**64 - 1 is not -1
    (with ignore_index=-1 a wrapped value would be silently ignored) and the message names
    the label as given."""
    _, x, t, kw = make_case(fn, _rng("uint64", fn, value))
    t = np.abs(t).astype(np.uint64)
    t[t == 100] = 0  # default ignore_index entries of make_case -> class 0
    t.flat[2] = value
    if fn != "dice_loss":
        kw = {**kw, "ignore_index": -1}
    with pytest.raises(IndexError, match=rf"(?<![\d-]){value}(?!\d)"):
        _call(fn, x, t, kw)


@pytest.mark.parametrize("fn", ["cross_entropy", "softmax_focal_loss"])
def test_ignore_index_is_compared_in_64_bits(fn):
    """ignore_index = 2**32 + 1 ignores nothing in [0, C) (a 32-bit comparison would ignore
    class 1); ignore_index = 2**32 - 100 does not make the label -100 valid."""
    x = np.zeros((3, 4))
    # uniform logits over 4 classes: every row loss is log 4 (focal: (3/4)^2 log 4)
    y = np.array([1, 0, 1])
    row = np.log(4.0) * (1.0 if fn == "cross_entropy" else 0.75 ** 2)
    loss = getattr(fastloss, fn)(x, y, ignore_index=2**32 + 1, reduction="none")
    np.testing.assert_allclose(loss, [row] * 3, rtol=1e-15)
    with pytest.raises(IndexError, match="-100"):
        getattr(fastloss, fn)(x, np.array([1, -100, 0]), ignore_index=2**32 - 100)


@pytest.mark.parametrize("ltype", [np.float16, np.float32, np.float64])
def test_float_labels_for_softmax_focal_are_type_error(ltype):
    x = np.zeros((3, 4))
    with pytest.raises(TypeError, match="target"):
        fastloss.softmax_focal_loss(x, np.array([0.0, 1.0, 3.0], dtype=ltype))


def test_float_labels_of_label_shape_for_cross_entropy_are_value_error():
    """A float target is class probabilities and must have input's shape: float class
    indices of the label shape are rejected, naming both shapes (never truncated)."""
    x = np.zeros((3, 4))
    with pytest.raises(ValueError) as exc:
        fastloss.cross_entropy(x, np.array([0.0, 1.0, 3.0]))
    assert "(3, 4)" in str(exc.value) and "(3,)" in str(exc.value)


def test_float_label_map_for_dice_is_value_error():
    x = np.full((2, 3, 4), 0.5)
    with pytest.raises(ValueError) as exc:
        fastloss.dice_loss(x, np.zeros((2, 4)))
    assert "(2, 3, 4)" in str(exc.value) and "(2, 4)" in str(exc.value)


# ------------------------------------------------------------------ parameters

NAN_INF = [np.nan, np.inf, -np.inf, np.float32("nan"), np.float64("inf"), np.array(np.nan)]
PARAM_BAD = (
    [("sigmoid_focal_loss", "gamma", v) for v in NAN_INF + [-1e-300, -2.0]]
    + [("softmax_focal_loss", "gamma", v) for v in NAN_INF + [-0.5]]
    # sigmoid alpha: < 0 means 'off' (documented), but not -inf; > 1 is out of domain
    + [("sigmoid_focal_loss", "alpha", v) for v in NAN_INF + [1.0000001, 2.0]]
    + [("softmax_focal_loss", "alpha", v) for v in NAN_INF]
    + [("huber_loss", "delta", v) for v in NAN_INF + [0.0, -0.0, -1.0, 5e-324 * -1]]
    + [("smooth_l1_loss", "beta", v) for v in NAN_INF + [-1e-300, -1.0]]
    + [("cross_entropy", "label_smoothing", v) for v in NAN_INF + [-1e-300, 1.0000001, 2.0]]
    + [("dice_loss", "smooth_nr", v) for v in NAN_INF + [-1e-5]]
    + [("dice_loss", "smooth_dr", v) for v in NAN_INF + [-1e-5]]
)


@pytest.mark.parametrize("fn,param,value", PARAM_BAD,
                         ids=[f"{f}-{p}={v!r}".replace(" ", "") for f, p, v in PARAM_BAD])
def test_non_finite_or_out_of_domain_parameter_value_error_names_it(fn, param, value):
    _, x, t, kw = make_case(fn, _rng("param", fn, param))
    kw = {**kw, param: value}
    with pytest.raises(ValueError, match=param):
        _call(fn, x, t, kw)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_alpha_vector_value_error_names_it(value):
    _, x, t, kw = make_case("softmax_focal_loss", _rng("alpha-vec"))
    alpha = kw["alpha"].copy()
    alpha[3] = value
    with pytest.raises(ValueError, match="alpha"):
        fastloss.softmax_focal_loss(x, t, **{**kw, "alpha": alpha})


PARAM_EDGES = [
    ("sigmoid_focal_loss", "gamma", 0.0), ("sigmoid_focal_loss", "alpha", 1.0),
    ("sigmoid_focal_loss", "alpha", 0.0), ("sigmoid_focal_loss", "alpha", -1.0),
    ("softmax_focal_loss", "gamma", 0.0),
    ("smooth_l1_loss", "beta", 0.0), ("huber_loss", "delta", 5e-324),
    ("cross_entropy", "label_smoothing", 0.0), ("cross_entropy", "label_smoothing", 1.0),
    ("dice_loss", "smooth_nr", 0.0),
]


@pytest.mark.parametrize("fn,param,value", PARAM_EDGES,
                         ids=[f"{f}-{p}={v!r}" for f, p, v in PARAM_EDGES])
def test_parameters_at_the_edge_of_their_domain_are_accepted(fn, param, value):
    """The closed ends of each domain are valid and give the reference's values (the
    rejection tests above could otherwise pass with an over-strict check)."""
    _, x, t, kw = make_case(fn, _rng("edge", fn, param))
    kw = {**kw, param: value}
    got_l, got_g = _call(fn, x, t, kw, reduction="sum", return_grad=True)
    want_l, want_g = getattr(ref, fn)(x, t, **kw, reduction="sum", return_grad=True)
    np.testing.assert_allclose(got_l, want_l, rtol=1e-12)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-12, atol=1e-12 * np.max(np.abs(want_g)))


# ------------------------------------------------------------------ reduction / activation / axis

@pytest.mark.parametrize("reduction", ["avg", "Mean", "", "none ", 0])
@pytest.mark.parametrize("fn", FUNCTIONS)
def test_unknown_reduction_message_lists_the_valid_ones(fn, reduction):
    _, x, t, kw = make_case(fn, _rng("red", fn))
    with pytest.raises(ValueError) as exc:
        _call(fn, x, t, kw, reduction=reduction)
    msg = str(exc.value)
    assert "reduction" in msg, msg
    for valid in ("'mean'", "'sum'", "'none'"):
        assert valid in msg, msg


@pytest.mark.parametrize("activation", ["relu", "Sigmoid", "", "none", 1])
def test_unknown_activation_message_lists_the_valid_ones(activation):
    _, x, t, kw = make_case("dice_loss", _rng("act"))
    with pytest.raises(ValueError) as exc:
        fastloss.dice_loss(x, t, **{**kw, "activation": activation})
    msg = str(exc.value)
    assert "activation" in msg, msg
    for valid in ("None", "'sigmoid'", "'softmax'"):
        assert valid in msg, msg


def _lists_axis_range(msg, nd):
    """True when msg lists the valid axes of an nd-dim input, -nd ... nd - 1, in any of the
    usual forms: '[-2, 2)', '-2 <= axis < 2', '-2..1', '-2, -1, 0, 1', 'from -2 to 1'."""
    lo = re.search(rf"(?<![\w.]){-nd}(?![\d.])", msg)
    hi = re.search(rf"(?<![\w.-]){nd - 1}(?![\d.])", msg) or re.search(rf"(?<![\w.-]){nd}\)", msg) \
        or re.search(rf"<\s*{nd}(?!\d)", msg)
    return bool(lo and hi)


@pytest.mark.parametrize("fn", ["cross_entropy", "softmax_focal_loss"])
@pytest.mark.parametrize("shape,axis", [((3, 4), 2), ((3, 4), -3), ((2, 4, 5), 3),
                                        ((2, 4, 5), -4), ((2, 4, 5), 10**6)])
def test_axis_out_of_range_message_lists_the_valid_ones(fn, shape, axis):
    x = np.zeros(shape)
    t = np.zeros(shape[:1] + shape[2:], dtype=np.int64)
    with pytest.raises(ValueError) as exc:
        getattr(fastloss, fn)(x, t, axis=axis)
    msg = str(exc.value)
    assert "axis" in msg, msg
    assert _lists_axis_range(msg, len(shape)), (
        f"the message does not list the valid axes {-len(shape)} .. {len(shape) - 1}: {msg!r}")


@pytest.mark.parametrize("fn", ["cross_entropy", "softmax_focal_loss"])
@pytest.mark.parametrize("axis", [1.5, 1.0, "1", None, [1]], ids=["1.5", "1.0", "str", "None", "list"])
def test_non_integer_axis_is_rejected(fn, axis):
    """axis must be an integer: 1.5 must not be truncated to 1 (NumPy: TypeError)."""
    x = np.zeros((3, 4))
    t = np.zeros(3, dtype=np.int64)
    with pytest.raises((TypeError, ValueError), match="axis"):
        getattr(fastloss, fn)(x, t, axis=axis)


def test_integer_like_axis_is_accepted():
    """NumPy integer scalars are valid axes (operator.index), with the same result."""
    rng = _rng("axis-int")
    x = rng.standard_normal((3, 4, 2))
    t = rng.integers(0, 4, (3, 2))
    want = fastloss.cross_entropy(x, t, axis=1, reduction="none")
    for ax in (np.int64(1), np.int32(1), np.intp(-2)):
        np.testing.assert_array_equal(fastloss.cross_entropy(x, t, axis=ax, reduction="none"), want)


def test_dice_two_dimensional_input_agrees_with_reference():
    """(B, C) input without a spatial axis: the reference raises ValueError (MONAI's DiceLoss
    sums over *every* axis there, torch.sum(dim=[])); fastloss must do the same, not compute
    a per-element Dice of its own."""
    x = np.full((2, 3), 0.5)
    t = np.array([0, 2])
    with pytest.raises(ValueError):
        ref.dice_loss(x, t)
    with pytest.raises(ValueError, match="input"):
        fastloss.dice_loss(x, t)


# ------------------------------------------------------------------ zero-size arrays

ZERO_SHAPES = {
    # element-wise: zero rows, zero columns, 1-D, a zero axis in the middle
    "elementwise": [(0,), (4, 0), (0, 4), (2, 0, 3)],
    # (input shape, axis): zero samples, zero inner positions, channels-last
    "softmax": [((0, 5), 1), ((3, 5, 0), 1), ((0, 5, 4), 1), ((2, 0, 5), -1), ((0, 5), -1)],
    "dice": [(0, 3, 4), (2, 3, 0), (2, 3, 0, 5), (0, 1, 4)],
}


def _zero_cases():
    out = []
    for case in CASES:
        fn = func_name(case)
        if fn in ELEMENTWISE:
            out += [pytest.param(case, s, None, id=f"{case}-{'x'.join(map(str, s))}")
                    for s in ZERO_SHAPES["elementwise"]]
        elif fn == "dice_loss":
            out += [pytest.param(case, s, None, id=f"{case}-{'x'.join(map(str, s))}")
                    for s in ZERO_SHAPES["dice"]]
        else:
            out += [pytest.param(case, s, a, id=f"{case}-{'x'.join(map(str, s))}-axis{a}")
                    for s, a in ZERO_SHAPES["softmax"]]
    return out


def _zero_case(case, shape, axis, dtype):
    fn, x0, t0, kw = make_case(case, _rng("zero", case, shape), dtype)
    x = np.zeros(shape, dtype)
    if fn in ELEMENTWISE:
        t = np.zeros(shape, dtype)
        kw = {k: (np.ones(shape[-1:], dtype) if isinstance(v, np.ndarray) else v)
              for k, v in kw.items()}
    elif fn == "dice_loss":
        t = np.zeros(shape[:1] + shape[2:], np.int64)
        if shape[1] == 1:
            kw = {**kw, "activation": "sigmoid", "include_background": True}
            kw.pop("weight")
    else:
        ax = axis % len(shape)
        kw = {**kw, "axis": axis}
        if case == "cross_entropy_probs":
            t = np.zeros(shape, dtype)
        else:
            t = np.zeros(shape[:ax] + shape[ax + 1:], np.int64)
    return fn, x, t, kw


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case,shape,axis", _zero_cases())
def test_zero_size_input_every_reduction(case, shape, axis, dtype):
    """"sum" and "mean" give 0.0 of the computing dtype (mean: the all-ignored rule), "none"
    an empty array of the per-sample shape, the gradient an empty array of input's shape;
    also into zero-size out= / grad_out=."""
    fn, x, t, kw = _zero_case(case, shape, axis, dtype)
    for red in ("sum", "mean"):
        loss, grad = _call(fn, x, t, kw, reduction=red, return_grad=True)
        assert type(loss) is np.dtype(dtype).type and loss == 0.0, (red, loss)
        assert grad.shape == x.shape and grad.dtype == dtype
    loss, grad = _call(fn, x, t, kw, reduction="none", return_grad=True)
    want_shape = none_shape(fn, x, kw)
    assert loss.shape == want_shape and loss.dtype == dtype
    assert grad.shape == x.shape and grad.dtype == dtype
    if fn == "dice_loss":
        if 0 in shape[:2]:
            assert loss.size == 0
        else:
            # (B, C, 0...): empty masks, loss 1 - smooth_nr / smooth_dr = 0 per (b, class)
            np.testing.assert_array_equal(loss, np.zeros(want_shape, dtype))
    else:
        assert loss.size == 0
        out = np.empty(want_shape, dtype)
        gout = np.empty(x.shape, dtype)
        l2, g2 = _call(fn, x, t, kw, reduction="none", return_grad=True, out=out, grad_out=gout)
        assert l2 is out and g2 is gout


BIG = 2**33 + 3  # a side whose products with the others overflow 32 (and 33) bits


@pytest.mark.parametrize("fn,shape,tshape,extra", [
    ("huber_loss", (BIG, 0), (BIG, 0), {}),
    ("binary_cross_entropy_with_logits", (0, BIG), (0, BIG), {"pos_weight": np.ones(1)}),
    ("cross_entropy", (0, BIG), (0,), {}),                 # C = 2**33 + 3 classes
    ("cross_entropy", (3, BIG, 0), (3, 0), {}),             # C * inner: 0, C huge
    ("cross_entropy", (BIG, 3, 0), (BIG, 0), {}),           # 2**33 samples of 0 positions
    ("softmax_focal_loss", (0, BIG), (0,), {}),
    ("dice_loss", (0, 3, BIG), (0, 3, BIG), {}),
    ("dice_loss", (0, BIG, 4), (0, 4), {}),                 # 2**33 channels, no sample
], ids=["huber-BIGx0", "bcel-0xBIG", "ce-0xBIG", "ce-3xBIGx0", "ce-BIGx3x0", "sfl-0xBIG",
        "dice-0x3xBIG", "dice-0xBIGx4"])
def test_zero_size_with_sides_beyond_32_bits(fn, shape, tshape, extra):
    """Zero-size arrays whose other sides multiply past 2**32 cost no memory: the call
    must still return 0.0 / empty arrays (no MemoryError from sizing scratch space by the
    huge side, no overflowing index arithmetic)."""
    x = np.empty(shape, np.float32)
    t = np.empty(tshape, np.int64 if len(tshape) < len(shape) else np.float32)
    for red in ("sum", "mean"):
        loss, grad = getattr(fastloss, fn)(x, t, reduction=red, return_grad=True, **extra)
        assert type(loss) is np.float32 and loss == 0.0
        assert grad.shape == shape and grad.dtype == np.float32
    loss = getattr(fastloss, fn)(x, t, reduction="none", **extra)
    assert loss.size == 0


# ------------------------------------------------------------------ many classes (64-bit indexing)

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_70000_classes_analytic(dtype):
    """C = 70000 (> 2**16: no 16-bit class index survives).  Row i: every logit 0 except
    x[i, c_i] = a.  With S = (C - 1) + e^a:
        loss_i = log S - x[i, y_i],  p_j = 1 / S (j != c_i), p_{c_i} = e^a / S,
        grad = p - onehot(y_i)  (reduction "sum").
    Labels and hot classes sit beyond 65535 and at the last class."""
    C = 70000
    a = 3.0
    hot = np.array([69999, 65536, 12, 65535])
    y = np.array([69999, 3, 65537, 69998])
    x = np.zeros((4, C), dtype)
    x[np.arange(4), hot] = a
    S = (C - 1) + np.exp(a)
    want = np.log(S) - np.where(y == hot, a, 0.0)
    loss, grad = fastloss.cross_entropy(x, y, reduction="none", return_grad=True)
    rtol = 1e-13 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(loss, want, rtol=rtol)
    p = np.full((4, C), 1.0 / S)
    p[np.arange(4), hot] = np.exp(a) / S
    p[np.arange(4), y] -= 1.0
    np.testing.assert_allclose(grad, p, rtol=rtol, atol=1e-6 * (1.0 / S) if dtype == np.float32 else 0)
    # softmax focal, gamma = 0 and alpha None, is the same loss
    fl = fastloss.softmax_focal_loss(x, y, gamma=0.0, reduction="none")
    np.testing.assert_allclose(fl, want, rtol=rtol)


def test_70000_classes_with_inner_positions_against_reference():
    """(N, C, d) with C = 70000 and d = 3: class stride 3, row stride 210000."""
    rng = _rng("70000-inner")
    x = rng.standard_normal((2, 70000, 3))
    y = rng.integers(0, 70000, (2, 3))
    y[0, 2] = 69999
    for fn in ("cross_entropy", "softmax_focal_loss"):
        got = getattr(fastloss, fn)(x, y, reduction="none", return_grad=True)
        want = getattr(ref, fn)(x, y, reduction="none", return_grad=True)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12 * 12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------ memory maps and read-only inputs

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_memory_mapped_read_only_inputs(case, dtype, tmp_path):
    """Every array argument as a read-only np.memmap (mode 'r': writing would fault) gives
    the bit-identical result of the in-memory arrays; out=/grad_out= may be writeable
    memory maps too."""
    fn, x, t, kw = make_case(case, _rng("memmap", case), dtype)
    red = "none" if fn != "dice_loss" else "mean"
    want_l, want_g = _call(fn, x, t, kw, reduction=red, return_grad=True)

    def mapped(name, a):
        if not isinstance(a, np.ndarray):
            return a
        path = tmp_path / f"{name}.bin"
        a.tofile(path)
        return np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)

    xm, tm = mapped("x", x), mapped("t", t)
    kwm = {k: mapped(k, v) for k, v in kw.items()}
    assert not xm.flags.writeable
    got_l, got_g = _call(fn, xm, tm, kwm, reduction=red, return_grad=True)
    np.testing.assert_array_equal(got_l, want_l)
    np.testing.assert_array_equal(got_g, want_g)
    gout = np.memmap(tmp_path / "g.bin", dtype=dtype, mode="w+", shape=x.shape)
    extra = {"grad_out": gout}
    if fn != "dice_loss":
        extra["out"] = np.memmap(tmp_path / "o.bin", dtype=dtype, mode="w+",
                                 shape=none_shape(fn, x, kw))
    l3, g3 = _call(fn, xm, tm, kwm, reduction=red, return_grad=True, **extra)
    assert g3 is gout
    np.testing.assert_array_equal(np.asarray(gout), want_g)
    np.testing.assert_array_equal(np.asarray(l3), want_l)
    # the mapped inputs still hold what was written to the files
    np.testing.assert_array_equal(np.asarray(xm), x)
    np.testing.assert_array_equal(np.asarray(tm), t)


@pytest.mark.parametrize("case", CASES)
def test_inputs_unchanged_on_error_paths(case):
    """A call that fails late (bad label, probability outside [0, 1], wrong grad_out) still
    leaves every input untouched."""
    fn, x, t, kw = make_case(case, _rng("err-unchanged", case))
    if fn in ("cross_entropy", "softmax_focal_loss", "dice_loss") and t.dtype.kind in "iu":
        t = t.copy()
        t.flat[-1] = 10**6
    elif fn == "binary_cross_entropy":
        x = x.copy()
        x.flat[-1] = 1.5
    else:
        kw = {**kw, "grad_out": np.empty(x.shape + (1,))}
    arrays = [x, t] + [v for v in kw.values() if isinstance(v, np.ndarray) and v is not kw.get("grad_out")]
    before = [a.copy() for a in arrays]
    with pytest.raises((IndexError, ValueError)):
        _call(fn, x, t, kw, reduction="none" if fn != "dice_loss" else "mean", return_grad=True)
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ errors leave grad_out alone

@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("where", ["first", "last"])
def test_dice_bad_label_in_a_later_block_leaves_grad_out_untouched(where, n_threads):
    """Dice runs in blocks of samples; a bad label in one block must raise before any block
    writes the user's grad_out (labels are checked in a pre-pass), on one thread or many."""
    rng = _rng("dice-late-label", where, n_threads)
    x = rng.standard_normal((8, 3, 128, 96))   # 36864 elements per sample: 1 sample a block
    y = rng.integers(0, 3, (8, 128, 96))
    y[0 if where == "first" else 7, 127, 95] = 3
    g = np.full(x.shape, -7.0)
    with pytest.raises(IndexError, match=r"(?<![\d-])3(?!\d)"):
        fastloss.dice_loss(x, y, activation="softmax", return_grad=True, grad_out=g,
                           n_threads=n_threads)
    assert np.all(g == -7.0)


# ------------------------------------------------------------------ byte order of outputs

@pytest.mark.parametrize("case", CASES)
def test_byte_swapped_out_and_grad_out_are_accepted(case):
    """Documented decision (README "Common rules"): out= / grad_out= of the computing dtype
    in the non-native byte order are accepted, as by NumPy's ufuncs (written through a
    native temporary), and give the bits of native outputs; fastloss and the reference."""
    fn, x, t, kw = make_case(case, _rng("byteswap", case))
    red = "none" if fn != "dice_loss" else "mean"
    for mod in (fastloss, ref):
        want_l, want_g = _call(fn, x, t, kw, reduction=red, return_grad=True) \
            if mod is fastloss else getattr(ref, fn)(x, t, **kw, reduction=red, return_grad=True)
        swapped = np.dtype(x.dtype).newbyteorder()
        extra = {"grad_out": np.full(x.shape, -7.0, swapped)}
        if fn != "dice_loss":
            extra["out"] = np.full(none_shape(fn, x, kw), -7.0, swapped)
        loss, grad = getattr(mod, fn)(x, t, **kw, reduction=red, return_grad=True, **extra)
        assert grad is extra["grad_out"]
        np.testing.assert_array_equal(grad, want_g)
        if "out" in extra:
            assert loss is extra["out"]
        np.testing.assert_array_equal(loss, want_l)


# ------------------------------------------------------------------ zero "mean" denominator

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("how", ["zero weights", "all ignored"])
@pytest.mark.parametrize("fn", ["cross_entropy", "softmax_focal_loss"])
def test_zero_mean_denominator_gives_zero_gradient_whatever_the_logits(fn, how, dtype):
    """README: when nothing enters the "mean" (every target ignored, or every target's
    class weight 0) the loss is 0.0 and the gradient zero -- also in rows holding NaN or
    +-inf logits (the kernel's 0 * NaN would otherwise give NaN rows)."""
    if fn == "softmax_focal_loss" and how == "zero weights":
        pytest.skip("softmax_focal_loss divides by the count, not by alpha")
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 0.0, -1.0], [-np.inf, -np.inf, -np.inf],
                  [0.5, 0.25, 0.0]], dtype)
    y = np.array([1, 0, 2, 1])
    kw = {}
    if how == "zero weights":
        kw["weight"] = np.array([0.0, 0.0, 0.0], dtype)
    else:
        y = np.full(4, -100)
    for mod in (fastloss, ref):
        loss, grad = getattr(mod, fn)(x, y, return_grad=True, **kw)
        assert type(loss) is np.dtype(dtype).type and loss == 0.0
        np.testing.assert_array_equal(grad, np.zeros_like(x))
        g = np.full(x.shape, -7.0, dtype)
        loss, grad = getattr(mod, fn)(x, y, return_grad=True, grad_out=g, **kw)
        assert grad is g and not np.any(g)
