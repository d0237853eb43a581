"""dice_loss: against the reference, finite differences and MONAI's DiceLoss (loss and
autograd gradient) for every option: activation None / sigmoid / softmax,
include_background, squared_pred, jaccard, batch, weight, and one-hot / soft / label-map
targets (label maps through MONAI's to_onehot_y)."""
import warnings

import numpy as np
import pytest

import fastloss
from conftest import (RTOL64, assert_close, assert_grad_fd, assert_ulp_close, get_impl,
                      implementations, pick_coords, seed_of)

ref = fastloss.reference

ACTIVATIONS = [None, "sigmoid", "softmax"]
TARGETS = ["onehot", "soft", "labels", "labels_b1"]
# Flag sets: every flag alone, all together, and a mixed set (a full product would be
# 2^5 per activation/target pair; each flag's code path is hit alone and in combination).
FLAGS = {
    "default": {},
    "no_bg": {"include_background": False},
    "squared": {"squared_pred": True},
    "jaccard": {"jaccard": True},
    "batch": {"batch": True},
    "weight": {"weight": True},
    "squared_jaccard_weight": {"squared_pred": True, "jaccard": True, "weight": True},
    "all": {"include_background": False, "squared_pred": True, "jaccard": True,
            "batch": True, "weight": True},
}
SHAPES = [(2, 3, 4, 5), (3, 4, 7), (2, 3, 2, 3, 2)]

CASES = []
for _i, (_act, _tgt, _fl) in enumerate((a, t, f) for a in ACTIVATIONS for t in TARGETS for f in FLAGS):
    CASES.append(pytest.param(_act, _tgt, _fl, SHAPES[_i % len(SHAPES)],
                              id=f"{_act or 'none'}-{_tgt}-{_fl}-{'x'.join(map(str, SHAPES[_i % len(SHAPES)]))}"))


def make(rng, act, tgt, flags, shape, dtype=np.float64):
    """(input, target, kwargs).  Without an activation the input is probabilities in
    [0.05, 0.95]; with one, logits.  Soft targets are random in [0, 1]; label maps are
    (B, spatial...) or (B, 1, spatial...) int64."""
    B, C = shape[:2]
    sp = shape[2:]
    if act is None:
        x = rng.uniform(0.05, 0.95, shape)
    else:
        x = rng.standard_normal(shape) * 2.0
    labels = rng.integers(0, C, size=(B,) + sp)
    if tgt == "onehot":
        t = np.moveaxis(np.eye(C)[labels], -1, 1)
    elif tgt == "soft":
        t = rng.uniform(0.0, 1.0, shape)
    elif tgt == "labels":
        t = labels
    else:
        t = labels[:, None]
    kw = {k: v for k, v in FLAGS[flags].items() if k != "weight"}
    kw["activation"] = act
    if FLAGS[flags].get("weight"):
        K = C - (0 if kw.get("include_background", True) else 1)
        kw["weight"] = rng.uniform(0.3, 2.0, K)
    x = x.astype(dtype)
    if t.dtype.kind == "f":
        t = t.astype(dtype)
    return x, t, kw


def none_shape(x, kw):
    K = x.shape[1] - (0 if kw.get("include_background", True) else 1)
    return (K,) if kw.get("batch") else (x.shape[0], K)


def wmax(kw):
    return float(np.max(kw["weight"])) if kw.get("weight") is not None else 1.0


# ------------------------------------------------------------------ vs the reference

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("act,tgt,flags,shape", CASES)
def test_float64_matches_reference(act, tgt, flags, shape, reduction, rng):
    x, t, kw = make(rng, act, tgt, flags, shape)
    loss, grad = fastloss.dice_loss(x, t, reduction=reduction, return_grad=True, **kw)
    rloss, rgrad = ref.dice_loss(x, t, reduction=reduction, return_grad=True, **kw)
    assert np.shape(loss) == np.shape(rloss)
    if reduction == "none":
        assert loss.shape == none_shape(x, kw)
    # f = 1 - N / D: the ratio is ~1 when the prediction is good, so f's absolute error is
    # ~eps * (N / D) * weight: atol 1e-12 * weight, on top of 1e-12 relative.
    np.testing.assert_allclose(loss, rloss, rtol=RTOL64, atol=1e-12 * wmax(kw))
    # gradient entries A t + B (+ C p): a difference of terms of size ~(2 / D) weight;
    # per batch item the largest entry sets that magnitude
    gscale = np.max(np.abs(rgrad), axis=tuple(range(1, x.ndim)), keepdims=True)
    assert_close(grad, rgrad, rtol=RTOL64, atol=1e-12 * gscale)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("act,tgt,flags,shape", CASES)
def test_float32_within_few_ulp_of_exact(impl, act, tgt, flags, shape, reduction, rng):
    mod = get_impl(impl)
    x, t, kw = make(rng, act, tgt, flags, shape, dtype=np.float32)
    loss, grad = mod.dice_loss(x, t, reduction=reduction, return_grad=True, **kw)
    t64 = t.astype(np.float64) if t.dtype.kind == "f" else t
    eloss, egrad = ref.dice_loss(x.astype(np.float64), t64, reduction=reduction,
                                 return_grad=True, **kw)
    w = wmax(kw)
    # the float32 probabilities carry ~1 ulp each; the sums are float64: f = 1 - N / D is
    # then accurate to a few ulp of 1 (times the weight), whatever its own size.
    if reduction == "none":
        assert loss.dtype == np.float32
        assert_ulp_close(loss, eloss, 4, scale=w)
    else:
        assert type(loss) is np.float32
        np.testing.assert_allclose(loss, eloss, rtol=1e-6, atol=1e-6 * w)
    assert_ulp_close(grad, egrad, 8, scale=_grad_magnitude(x, t64, kw, reduction))


def _grad_magnitude(x, t, kw, reduction):
    """Magnitude of the terms a float32 gradient entry is computed from: the gradient with
    respect to the probabilities, gp = A t + B (+ C p) per class, is bounded by M_b, the
    largest |gp| of batch item b (float64, from the reference with activation=None on the
    exact probabilities); the activation's chain rule then multiplies by p (1 - p)
    (sigmoid) or forms p_j (gp_j - sum_k p_k gp_k), bounded by 2 p_j M_b (softmax)."""
    x64 = x.astype(np.float64)
    act = kw.get("activation")
    if act == "sigmoid":
        p = 1 / (1 + np.exp(-x64))
    elif act == "softmax":
        e = np.exp(x64 - x64.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
    else:
        p = x64
    _, gp = ref.dice_loss(p, t, reduction=reduction, return_grad=True, **dict(kw, activation=None))
    M = np.max(np.abs(gp), axis=tuple(range(1, x.ndim)), keepdims=True)
    if kw.get("batch"):
        M = np.max(M)
    if act == "sigmoid":
        return M * p * (1 - p)
    if act == "softmax":
        return 2 * M * p
    return M * np.ones_like(p)


# ------------------------------------------------------------------ finite differences

@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("act,tgt,flags,shape", CASES)
def test_gradient_matches_finite_differences(impl, act, tgt, flags, shape, reduction, rng):
    mod = get_impl(impl)
    x, t, kw = make(rng, act, tgt, flags, shape)
    _, grad = mod.dice_loss(x, t, reduction=reduction, return_grad=True, **kw)
    assert_grad_fd(lambda z: np.sum(mod.dice_loss(z, t, reduction=reduction, **kw)), grad, x,
                   pick_coords(x.shape, rng, k=10))


# ------------------------------------------------------------------ vs MONAI

def monai_dice(x, t, kw, reduction):
    """MONAI DiceLoss (loss, autograd gradient) in float64 for a fastloss call."""
    torch = pytest.importorskip("torch", reason="torch not installed: cross-checks against MONAI skipped")
    monai_losses = pytest.importorskip("monai.losses", reason="monai not installed: cross-checks against MONAI skipped")
    act = kw.get("activation")
    labels = t.dtype.kind in "iu" and t.shape != x.shape
    if labels and kw.get("squared_pred") and x.shape[1] > 1:
        # MONAI's to_onehot_y builds a float32 one-hot, and squared_pred takes its vector
        # norm in float32 (~1e-8 relative error in sum t^2).  Give MONAI the same one-hot
        # in float64 instead (label maps without squared_pred go through to_onehot_y).
        t = np.moveaxis(np.eye(x.shape[1])[t.reshape((x.shape[0],) + x.shape[2:])], -1, 1)
        labels = False
    w = kw.get("weight")
    loss_fn = monai_losses.DiceLoss(
        include_background=kw.get("include_background", True), to_onehot_y=labels,
        sigmoid=act == "sigmoid", softmax=act == "softmax",
        squared_pred=kw.get("squared_pred", False), jaccard=kw.get("jaccard", False),
        reduction=reduction, smooth_nr=kw.get("smooth_nr", 1e-5), smooth_dr=kw.get("smooth_dr", 1e-5),
        batch=kw.get("batch", False), weight=None if w is None else list(np.atleast_1d(w)))
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    if labels:
        tt = torch.tensor(t.reshape((x.shape[0], 1) + x.shape[2:]), dtype=torch.int64)
    else:
        tt = torch.tensor(t, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = loss_fn(xt, tt)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("act,tgt,flags,shape", CASES)
def test_matches_monai(impl, act, tgt, flags, shape, reduction, rng):
    mod = get_impl(impl)
    x, t, kw = make(rng, act, tgt, flags, shape)
    mloss, mgrad = monai_dice(x, t, kw, reduction)
    loss, grad = mod.dice_loss(x, t, reduction=reduction, return_grad=True, **kw)
    if reduction == "none":
        mloss = mloss.reshape(none_shape(x, kw))   # MONAI keeps (B, C', 1, ...)
    # MONAI's squared_pred intersection (|p|^2 + |t|^2 - |p - t|^2) / 2 cancels: ~1e-15
    # absolute on O(1..100) sums; 1e-10 is the cross-check tolerance of the issue
    np.testing.assert_allclose(loss, mloss, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, mgrad, rtol=1e-10, atol=1e-12 * np.max(np.abs(mgrad)))


# ------------------------------------------------------------------ edge cases

@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("flags", ["default", "squared", "jaccard"])
def test_empty_prediction_and_target(impl, dtype, flags):
    """Channel 1 of batch item 0 has prediction 0 and target 0 everywhere: I = P = G = 0,
    f = 1 - smooth_nr / smooth_dr = 0 (MONAI's smoothing).  Channel 0 (prediction 0,
    target 1 on 4 voxels): I = 0, D = 4 (Jaccard: 2 (4 - 0) = 8):
    f = 1 - 1e-5 / (D + 1e-5)."""
    mod = get_impl(impl)
    kw = {k: v for k, v in FLAGS[flags].items()}
    x = np.zeros((1, 2, 2, 2), dtype=dtype)
    t = np.zeros((1, 2, 2, 2), dtype=dtype)
    t[0, 0] = 1
    loss = mod.dice_loss(x, t, reduction="none", **kw)
    D = 8.0 if kw.get("jaccard") else 4.0
    assert loss[0, 1] == 0.0
    assert_ulp_close(loss[0, 0], np.float64(1 - 1e-5 / (D + 1e-5)), 1)


def test_empty_masks_match_monai(rng):
    """Whole classes absent from target and (nearly) from prediction, through MONAI."""
    x = rng.uniform(0.0, 1.0, (2, 3, 4, 4))
    x[:, 2] = 0.0
    labels = rng.integers(0, 2, (2, 4, 4))  # class 2 never present
    for kw in ({}, {"squared_pred": True}, {"jaccard": True}, {"batch": True}):
        for red in ("none", "mean"):
            loss, grad = fastloss.dice_loss(x, labels, reduction=red, return_grad=True, **kw)
            mloss, mgrad = monai_dice(x, labels, kw, red)
            np.testing.assert_allclose(loss, mloss.reshape(np.shape(loss)), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(grad, mgrad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a or "none")
@pytest.mark.parametrize("batch", [False, True], ids=["per-item", "batch"])
def test_label_map_equals_one_hot(impl, act, batch, rng):
    """An integer label map, (B, spatial) or (B, 1, spatial), of any integer dtype, gives
    the same loss and gradient as its one-hot encoding."""
    mod = get_impl(impl)
    x, t, kw = make(rng, act, "onehot", "no_bg", (2, 4, 3, 5))
    kw["batch"] = batch
    labels = np.argmax(t, axis=1)
    want_l, want_g = mod.dice_loss(x, t, reduction="none", return_grad=True, **kw)
    for lab in (labels, labels[:, None], labels.astype(np.int32), labels.astype(np.uint8)):
        got_l, got_g = mod.dice_loss(x, lab, reduction="none", return_grad=True, **kw)
        np.testing.assert_allclose(got_l, want_l, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(got_g, want_g, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("impl", implementations())
def test_scalar_weight_equals_constant_vector(impl, rng):
    mod = get_impl(impl)
    x, t, kw = make(rng, "softmax", "labels", "no_bg", (2, 3, 4, 4))
    a = mod.dice_loss(x, t, weight=0.7, reduction="none", return_grad=True, **kw)
    b = mod.dice_loss(x, t, weight=np.full(2, 0.7), reduction="none", return_grad=True, **kw)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("act", ["sigmoid", "softmax"])
def test_dropped_background_gradient(impl, act, rng):
    """include_background=False drops channel 0 after the activation: with sigmoid its
    logits get no gradient; with softmax they do (the softmax couples the channels)."""
    mod = get_impl(impl)
    x, t, kw = make(rng, act, "labels", "no_bg", (2, 3, 4, 4))
    _, g = mod.dice_loss(x, t, return_grad=True, **kw)
    if act == "sigmoid":
        assert not np.any(g[:, 0])
    else:
        assert np.any(g[:, 0])
        # softmax gradients sum to 0 over the channels at each voxel
        np.testing.assert_allclose(np.sum(g, axis=1), 0.0, atol=1e-15)


@pytest.mark.parametrize("tgt", ["labels", "onehot"])
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a or "none")
def test_nan_in_the_dropped_background_channel(act, tgt, rng):
    """Decision (README): channel 0 dropped by include_background=False does not enter the
    loss with activation None or "sigmoid" (MONAI applies the sigmoid, then drops the
    channel), so NaN or inf there leaves the loss finite and the gradient of channel 0
    exactly 0, in fastloss and the reference alike.  (MONAI's autograd gives NaN there:
    0 * sigmoid'(NaN) -- an artifact, not a value of the derivative.)  With "softmax"
    channel 0 enters the normalisation: NaN propagates to the whole sample."""
    x, t, kw = make(rng, act, tgt, "no_bg", (2, 3, 4, 5))
    x = x.copy()
    x[0, 0, 1, 2] = np.nan
    x[1, 0, 0, 0] = np.inf if act is not None else np.nan
    res = [m.dice_loss(x, t, reduction="none", return_grad=True, **kw)
           for m in (fastloss, fastloss.reference)]
    for loss, g in res:
        if act == "softmax":
            assert np.isnan(loss[0]).all() and np.isnan(g[0]).all()
        else:
            assert np.isfinite(loss).all() and np.isfinite(g).all()
            assert not np.any(g[:, 0]), g[:, 0]
    assert_close(res[0][0], res[1][0], rtol=RTOL64)
    assert_close(res[0][1], res[1][1], rtol=RTOL64, atol=1e-15)


@pytest.mark.parametrize("impl", implementations())
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a or "none")
def test_one_channel_matches_monai(impl, act, rng):
    """C = 1: MONAI ignores softmax and include_background=False with a warning, and does
    not apply class weights."""
    mod = get_impl(impl)
    x = rng.uniform(0.05, 0.95, (2, 1, 4, 4)) if act is None else rng.standard_normal((2, 1, 4, 4))
    t = rng.integers(0, 2, (2, 1, 4, 4)).astype(np.float64)
    for kw in ({"activation": act}, {"activation": act, "include_background": False, "weight": 2.0}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss, grad = mod.dice_loss(x, t, reduction="none", return_grad=True, **kw)
        mloss, mgrad = monai_dice(x, t, kw, "none")
        np.testing.assert_allclose(loss, mloss.reshape(loss.shape), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grad, mgrad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("impl", implementations())
def test_one_channel_softmax_warns(impl, rng):
    mod = get_impl(impl)
    x = rng.standard_normal((2, 1, 4))
    t = np.ones((2, 1, 4))
    with pytest.warns(UserWarning, match="single channel"):
        mod.dice_loss(x, t, activation="softmax")
    with pytest.warns(UserWarning, match="single channel"):
        mod.dice_loss(x, t, include_background=False)


@pytest.mark.parametrize("impl", implementations())
def test_smoothing_parameters(impl, rng):
    """smooth_nr / smooth_dr enter as f = 1 - (2 I + nr) / (D + dr): check one hand-computed
    case. p = (0.5, 0.5), t = (1, 0) in one channel: I = 0.5, D = P + G = 1 + 1 = 2;
    nr = 0.1, dr = 0.3: f = 1 - 1.1 / 2.3 = 1.2 / 2.3."""
    mod = get_impl(impl)
    x = np.array([[[0.5, 0.5]]])
    t = np.array([[[1.0, 0.0]]])
    loss = mod.dice_loss(x, t, smooth_nr=0.1, smooth_dr=0.3, reduction="sum")
    np.testing.assert_allclose(loss, 1.2 / 2.3, rtol=1e-15)


def test_larger_volume_matches_reference():
    """A volume bigger than the kernel's blocking (256 positions per block, many classes):
    sums over many blocks."""
    rng = np.random.default_rng(seed_of("dice-large"))
    x = rng.standard_normal((2, 70, 1000))
    t = rng.integers(0, 70, (2, 1000))
    for kw in ({"activation": "softmax"}, {"activation": "sigmoid", "batch": True, "squared_pred": True}):
        loss, grad = fastloss.dice_loss(x, t, reduction="none", return_grad=True, **kw)
        rloss, rgrad = ref.dice_loss(x, t, reduction="none", return_grad=True, **kw)
        np.testing.assert_allclose(loss, rloss, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad, rgrad, rtol=1e-10, atol=1e-12 * np.max(np.abs(rgrad)))
