"""Backpropagation against central finite differences, float64."""

import math

import numpy as np
import pytest

import xpmlp
from xpmlp.activations import ACTIVATIONS
from xpmlp.objectives import OUTPUTS

from conftest import to_np


def data(output, D=3, K=2, N=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    if output == "identity":
        T = rng.normal(size=(N, K))
    elif output == "logistic":
        T = rng.integers(0, 2, size=(N, K)).astype(float)
    else:
        T = np.eye(K)[rng.integers(0, K, size=N)]
    return X, T


@pytest.mark.parametrize("hidden", [[], [4], [4, 3], [5, 4, 3]], ids=lambda h: f"hidden{h}")
@pytest.mark.parametrize("output", list(OUTPUTS))
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_gradients_match_finite_differences(activation, output, hidden):
    X, T = data(output)
    net = xpmlp.MLP([3, *hidden, 2], activation, output, dtype="float64", seed=1)
    assert xpmlp.check_gradients(net, X, T) < 1e-6


def test_custom_activation_pair_is_differentiated_through_its_dh():
    h = lambda a: a * a * a  # noqa: E731
    dh = lambda a: 3 * a * a  # noqa: E731
    X, T = data("identity")
    net = xpmlp.MLP([3, 4, 2], (h, dh), "identity", dtype="float64", seed=2)
    assert xpmlp.check_gradients(net, X, T) < 1e-6
    wrong = xpmlp.MLP([3, 4, 2], (h, lambda a: 2 * a), "identity", dtype="float64", seed=2)
    assert xpmlp.check_gradients(wrong, X, T) > 1e-2  # the check does catch a wrong h'


def test_a_custom_pair_is_checked_on_the_models_backend(backend, xp):
    """The user's h and dh are written for the model's backend: the check runs them there
    (it ran them on NumPy copies, and torch's tanh refused those)."""
    h = lambda a: xp.tanh(a) * 2  # noqa: E731
    dh = lambda a: 2 * (1 - xp.tanh(a) ** 2)  # noqa: E731
    X, T = data("identity")
    for dtype in ("float32", "float64"):
        net = xpmlp.MLP([3, 4, 2], (h, dh), backend=backend, dtype=dtype, seed=2)
        assert xpmlp.check_gradients(net, X, T) < 1e-6
    wrong = xpmlp.MLP([3, 4, 2], (h, lambda a: xp.tanh(a) * 0), backend=backend, seed=2)
    assert xpmlp.check_gradients(wrong, X, T) > 1e-2


def test_check_gradients_ignores_underflow_as_the_model_does():
    """exp(-800) underflows to 0, rightly: no FloatingPointError under np.seterr."""
    net = xpmlp.MLP([1, 2], output="softmax", dtype="float64")
    net.weights = [np.array([[0.0, 0.0], [0.0, 800.0]])]
    with np.errstate(all="raise"):
        assert xpmlp.check_gradients(net, [[1.0]], [[0.0, 1.0]]) < 1e-6


def test_l2_penalty_gradient_matches_finite_differences():
    X, T = data("identity")
    net = xpmlp.MLP([3, 4, 2], "tanh", dtype="float64", seed=3)
    alpha, eps = 0.3, 1e-6
    _, grads = net.loss_and_gradients(X, T, alpha=alpha)
    W = [np.array(w) for w in net.weights]
    for l, (i, j) in [(0, (1, 0)), (0, (2, 3)), (1, (0, 2))]:

        def loss_at(v, l=l, i=i, j=j):
            Wv = [w.copy() for w in W]
            Wv[l][i, j] = v
            net.weights = Wv
            return net.loss_and_gradients(X, T, alpha=alpha)[0]

        fd = (loss_at(W[l][i, j] + eps) - loss_at(W[l][i, j] - eps)) / (2 * eps)
        assert grads[l][i, j] == pytest.approx(fd, rel=1e-7)
    net.weights = W


@pytest.mark.parametrize("output", ["logistic", "softmax"])
def test_losses_are_finite_for_huge_logits(output):
    from xpmlp.objectives import get_output

    out = get_output(output)
    xp = xpmlp.resolve("numpy")[0]
    A = np.array([[1e4, -1e4], [-1e4, 1e4], [0.0, 0.0]])
    T = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    Y = out.f(A, xp=xp)
    L = out.loss(A, Y, T, xp=xp)
    assert np.all(np.isfinite(Y)) and np.all(np.isfinite(L))
    assert L[0] == pytest.approx(0.0, abs=1e-9)
    assert L[1] == pytest.approx(2e4, rel=1e-12)
    assert L[2] == pytest.approx(np.log(2) * (1 if output == "softmax" else 2), rel=1e-12)


@pytest.mark.parametrize("clipped", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_softmax_loss_depends_on_the_logits_differences_only(backend, xp, clipped, dtype):
    """Logits with one large offset lost their difference to cancellation: ``[1e8, 1e8]``
    had a loss of 0 (not log 2) in float32, ``[1001, 1000]`` 1.31323 (not 1.3132617)."""
    from xpmlp.objectives import CLIPPED, OUTPUTS

    out = (CLIPPED if clipped else OUTPUTS)["softmax"]
    dt = xpmlp.backend.get_dtype(dtype, xp=xp)
    T = xp.asarray([[1.0, 0.0], [0.0, 1.0]], dtype=dt)
    for c in (0.0, 1e3, 1e4, 1e6, 1e8, 1e30):
        # [c, c] and [c + 1, c] with targets c: log 2 and log(1 + e), where c + 1 is a float
        d = float(np.asarray(c + 1, dtype=dtype) - np.asarray(c, dtype=dtype))
        A = xp.asarray([[c, c], [c + d, c]], dtype=dt)
        got = to_np(out.loss(A, out.f(A, xp=xp), T, xp=xp))
        want = [math.log(2), math.log1p(math.exp(d))]
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-14)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_clipped_log_loss_caps_each_term_as_scikit_learn_without_clip(backend, xp, dtype):
    """scikit-learn's log-loss caps -log p at -log(eps) and floors it at -log(1 - eps); the
    bounds are maximum and minimum, not xp.clip (array-api-compat's CuPy clip assigns through
    boolean masks, each a read back to the host: four per step)."""
    from xpmlp.objectives import _clip_log_loss

    eps = float(np.finfo(dtype).eps)
    lo, hi = -math.log1p(-eps), -math.log(eps)
    L = np.array([[0.0, lo / 2, lo, 1.0], [hi, 2 * hi, np.inf, np.nan]], dtype=dtype)
    dt = xpmlp.backend.get_dtype(dtype, xp=xp)
    clip = xp.clip
    try:
        xp.clip = None  # not called
        got = _clip_log_loss(xp.asarray(L, dtype=dt), xp=xp)
    finally:
        xp.clip = clip
    assert got.dtype == dt
    want = np.clip(L, np.asarray(lo, dtype), np.asarray(hi, dtype))
    np.testing.assert_array_equal(to_np(got), want)


def test_check_gradients_tells_a_wrong_derivative_from_a_right_one_at_a_large_loss():
    """With targets x 1e4 (loss 1.9e7) the differences' rounding made a right network score
    4.3e-3, as much as a derivative 1 % wrong."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    T = 1e4 * np.sin(X[:, :1])
    right = (np.tanh, lambda a: 1 - np.tanh(a) ** 2)
    wrong = (np.tanh, lambda a: 1.01 * (1 - np.tanh(a) ** 2))
    score = {}
    for name, pair in (("right", right), ("wrong", wrong)):
        net = xpmlp.MLP([2, 3, 1], pair, dtype="float64", seed=0)
        W1, W2 = (np.array(W) for W in net.weights)
        W1[0] = [8.0, 0.5, 0.5]  # a saturated unit: tanh' ~ 1e-6
        net.weights = [W1, W2]
        score[name] = xpmlp.check_gradients(net, X, T)
    assert score["right"] < 2e-4 and score["wrong"] > 3e-3


def test_a_nan_gradient_is_reported_as_nan_not_as_a_pass():
    X, T = data("identity")
    nan_dh = (lambda a: a * a * a, lambda a: a * float("nan"))
    net = xpmlp.MLP([3, 4, 2], nan_dh, "identity", dtype="float64", seed=2)
    err = xpmlp.check_gradients(net, X, T)
    assert isinstance(err, float) and math.isnan(err)
    assert not err < 1e-6  # a threshold test fails


@pytest.mark.parametrize(
    ("X", "T", "kw", "match"),
    [
        (np.ones((7, 3)), np.ones((1, 2)), {}, "same number of rows, got 7 and 1"),
        (np.ones((0, 3)), np.ones((0, 2)), {}, "X is empty"),
        (np.ones((7, 3)), np.full((7, 2), np.nan), {}, "T contains NaN"),
        (np.ones((7, 3)), np.ones((7, 2)), {"eps": 0}, "eps=0; accepted: a finite number > 0"),
        (np.ones((7, 3)), np.ones((7, 2)), {"eps": -1e-5}, "eps=-1e-05"),
        (np.ones((7, 3)), np.ones((7, 2)), {"eps": float("nan")}, "eps=nan"),
        (np.ones((7, 3)), np.ones((7, 2)), {"eps": "a"}, "eps='a'"),
    ],
)
def test_check_gradients_checks_its_data_and_eps(X, T, kw, match):
    net = xpmlp.MLP([3, 4, 2], dtype="float64", seed=0)
    with pytest.raises(ValueError, match=match):
        xpmlp.check_gradients(net, X, T, **kw)


def test_the_pure_functions_take_names_and_seeds_as_the_model_does():
    from xpmlp import network

    W = network.init_weights([2, 3, 1], rng=0)
    for Wa, Wb in zip(W, network.init_weights([2, 3, 1], rng=np.random.default_rng(0))):
        np.testing.assert_array_equal(Wa, Wb)
    sk = network.init_weights([2, 3, 1], rng=5, init="sklearn", activation="sigmoid")
    ref = network.init_weights(
        [2, 3, 1], rng=np.random.RandomState(5), init="sklearn", activation="logistic"
    )
    np.testing.assert_array_equal(sk[0], ref[0])
    X = np.linspace(-1, 1, 8).reshape(4, 2)
    T = X[:, :1] ** 2
    by_name = network.forward(W, X, activation="tanh", output="identity", xp=np)
    act, out = xpmlp.activations.get_activation("tanh"), xpmlp.objectives.get_output("identity")
    by_object = network.forward(W, X, activation=act, output=out, xp=np)
    np.testing.assert_array_equal(by_name.Z[-1], by_object.Z[-1])
    g_name = network.backward(W, by_name, T, activation="tanh", xp=np)[1]
    g_object = network.backward(W, by_object, T, activation=act, xp=np)[1]
    for a, b in zip(g_name, g_object):
        np.testing.assert_array_equal(a, b)
    assert float(network.batch_loss(by_name, T, output="identity", xp=np)) == float(
        network.batch_loss(by_object, T, output=out, xp=np)
    )
