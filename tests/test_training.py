"""Optimisation: optimizer steps by hand, L2, schedules, clipping, initial weights, early
stopping, callbacks, sample weights, host synchronisation and optimizer state across fits."""

import copy
import math
import os
import pickle
import warnings

import numpy as np
import pytest

import xpmlp
from xpmlp import network, optim, train
from xpmlp.activations import get_activation
from xpmlp.objectives import get_output

from conftest import to_np

EXACT = {"rtol": 1e-12, "atol": 1e-12}


def problem(N=12, D=3, K=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    T = np.stack([np.sin(X[:, 0]) * X[:, 1], np.cos(X[:, -1])][:K], axis=1)
    return X, T


def net64(backend="numpy", sizes=(3, 4, 2), **kw):
    return xpmlp.MLP(list(sizes), "tanh", backend=backend, dtype="float64", seed=5, **kw)


def weights_np(net):
    return [np.array(to_np(W)) for W in net.weights]  # copies, never views


def assert_weights_equal(A, B, **tol):
    assert len(A) == len(B)
    for W, W_ref in zip(A, B):
        np.testing.assert_allclose(to_np(W), to_np(W_ref), **(tol or EXACT))


def recording(opt, rates):
    """``opt`` with the same name and hyper-parameters, logging each update's rate."""

    def update(grads, state, weights, *, learning_rate, xp):
        rates.append(learning_rate)
        return opt.update(grads, state, weights, learning_rate=learning_rate, xp=xp)

    return optim.Optimizer(opt.name, opt.init, update, opt.hyperparams)


# ---------------------------------------------------------------- optimizer steps by hand


def hand_steps(kind, W0, Gs, eta, mu=0.9, b1=0.9, b2=0.999, eps=1e-8):
    """Three steps of each rule in NumPy float64, written out from its equations."""
    W = [w.copy() for w in W0]
    V = [np.zeros_like(w) for w in W0]
    m = [np.zeros_like(w) for w in W0]
    v = [np.zeros_like(w) for w in W0]
    out = []
    for t, G in enumerate(Gs, start=1):
        for l in range(len(W)):
            g = G[l]
            if kind == "sgd":
                W[l] = W[l] - eta * g
            elif kind in ("momentum", "nesterov"):
                V[l] = mu * V[l] - eta * g  # scikit-learn's velocity
                W[l] = W[l] + (V[l] if kind == "momentum" else mu * V[l] - eta * g)
            else:  # Kingma & Ba, Algorithm 1, efficient form
                m[l] = b1 * m[l] + (1 - b1) * g
                v[l] = b2 * v[l] + (1 - b2) * g * g
                eta_t = eta * math.sqrt(1 - b2**t) / (1 - b1**t)
                W[l] = W[l] - eta_t * m[l] / (np.sqrt(v[l]) + eps)
        out.append([w.copy() for w in W])
    return out


OPTIMIZERS = {
    "sgd": lambda: optim.sgd(),
    "momentum": lambda: optim.sgd(momentum=0.9),
    "nesterov": lambda: optim.sgd(momentum=0.9, nesterov=True),
    "adam": lambda: optim.adam(),
}


def random_steps(seed=0, shapes=((4, 4), (2, 5)), n=3):
    rng = np.random.default_rng(seed)
    W0 = [rng.normal(size=s) for s in shapes]
    Gs = [[rng.normal(size=s) for s in shapes] for _ in range(n)]
    return W0, Gs


def run_updates(opt, W0, Gs, eta, *, xp):
    weights = [xp.asarray(W, dtype=xp.float64, copy=True) for W in W0]  # W0 stays as it is
    state = opt.init(weights, xp=xp)
    out = []
    for G in Gs:
        grads = [xp.asarray(g, dtype=xp.float64) for g in G]
        weights, state = opt.update(grads, state, weights, learning_rate=eta, xp=xp)
        out.append([np.array(to_np(W)) for W in weights])  # copies: updates work in place
    return out, weights, state


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_three_optimizer_steps_equal_the_hand_computed_ones(backend, xp, kind):
    W0, Gs = random_steps()
    got, _, _ = run_updates(OPTIMIZERS[kind](), W0, Gs, 0.05, xp=xp)
    for step, ref in zip(got, hand_steps(kind, W0, Gs, 0.05)):
        assert_weights_equal(step, ref)


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_in_place_and_functional_updates_give_the_same_numbers(monkeypatch, kind):
    import array_api_compat.numpy as xp

    W0, Gs = random_steps(seed=1)
    in_place, weights, _ = run_updates(OPTIMIZERS[kind](), W0, Gs, 0.1, xp=xp)
    given = [np.array(W) for W in W0]
    new, _ = OPTIMIZERS[kind]().update(
        Gs[0], OPTIMIZERS[kind]().init(given, xp=xp), given, learning_rate=0.1, xp=xp
    )
    assert all(a is b for a, b in zip(new, given))  # NumPy: updated in place
    monkeypatch.setattr(optim, "is_writeable", lambda x: False)  # the JAX path
    given = [np.array(W) for W in W0]
    functional, _, _ = run_updates(OPTIMIZERS[kind](), W0, Gs, 0.1, xp=xp)
    new, _ = OPTIMIZERS[kind]().update(
        Gs[0], OPTIMIZERS[kind]().init(given, xp=xp), given, learning_rate=0.1, xp=xp
    )
    assert not any(a is b for a, b in zip(new, given))
    for W, W0_l in zip(given, W0):  # and the inputs are left alone
        np.testing.assert_array_equal(W, W0_l)
    for a, b in zip(in_place, functional):
        for W, W_ref in zip(a, b):
            np.testing.assert_array_equal(W, W_ref)


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_torch_parameters_are_stepped_in_place_as_torch_optim_steps_them(kind):
    """An ``nn.Parameter`` (a leaf that requires grad) had refused the in-place step."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xp

    W0, Gs = random_steps(seed=2)
    params = [torch.nn.Parameter(torch.tensor(W)) for W in W0]
    opt = OPTIMIZERS[kind]()
    weights, state = params, opt.init(params, xp=xp)
    for G in Gs:
        grads = [torch.tensor(g) for g in G]
        weights, state = opt.update(grads, state, weights, learning_rate=0.05, xp=xp)
    assert all(a is b for a, b in zip(weights, params))
    assert all(p.requires_grad and p.grad_fn is None for p in params)  # leaves still
    for W, W_ref in zip(params, hand_steps(kind, W0, Gs, 0.05)[-1]):
        assert_weights_equal([W.detach().numpy()], [W_ref])


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_jax_functional_updates_match_numpy_in_place(kind):
    pytest.importorskip("jax")
    jxp = xpmlp.resolve("jax")[0]
    import array_api_compat.numpy as nxp

    W0, Gs = random_steps(seed=2)
    ref, _, _ = run_updates(OPTIMIZERS[kind](), W0, Gs, 0.1, xp=nxp)
    got, weights, _ = run_updates(OPTIMIZERS[kind](), W0, Gs, 0.1, xp=jxp)
    for a, b in zip(got, ref):
        assert_weights_equal(a, b)


@pytest.mark.parametrize(
    "kind, sk",
    [
        ("momentum", dict(momentum=0.9, nesterov=False)),
        ("nesterov", dict(momentum=0.9, nesterov=True)),
        ("adam", None),
    ],
)
def test_optimizers_match_scikit_learns_own(kind, sk):
    so = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    import array_api_compat.numpy as xp

    W0, Gs = random_steps(seed=3)
    params = [W.copy() for W in W0]
    if sk is None:
        ref = so.AdamOptimizer(params, learning_rate_init=0.05)
    else:
        ref = so.SGDOptimizer(params, learning_rate_init=0.05, lr_schedule="constant", **sk)
    got, _, _ = run_updates(OPTIMIZERS[kind](), W0, Gs, 0.05, xp=xp)
    for G, step in zip(Gs, got):
        ref.update_params(params, G)
        assert_weights_equal(step, params)


# ---------------------------------------------------------------- L2 penalty


def penalised(weights, X, T, sw, alpha):
    import array_api_compat.numpy as xp

    return train.loss_and_gradients(
        weights,
        X,
        T,
        activation=get_activation("tanh"),
        output=get_output("identity"),
        sample_weight=sw,
        alpha=alpha,
        xp=xp,
    )


@pytest.mark.parametrize("weighted", [False, True], ids=["mean", "sample_weight"])
def test_l2_gradient_equals_finite_differences_of_the_penalised_loss(weighted):
    X, T = problem(N=7)
    sw = np.random.default_rng(1).uniform(0.5, 2.0, size=7) if weighted else None
    W = network.init_weights([3, 4, 2], rng=np.random.default_rng(0))
    _, grads = penalised(W, X, T, sw, alpha=0.7)
    eps = 1e-6
    for l, G in enumerate(grads):
        for idx in np.ndindex(G.shape):
            up = [w.copy() for w in W]
            up[l][idx] += eps
            down = [w.copy() for w in W]
            down[l][idx] -= eps
            fd = float(penalised(up, X, T, sw, 0.7)[0]) - float(penalised(down, X, T, sw, 0.7)[0])
            assert G[idx] == pytest.approx(fd / (2 * eps), rel=1e-6, abs=1e-9)


def test_l2_penalises_the_weights_and_not_the_bias_columns(backend, xp):
    X, T = problem(N=8)
    net = net64(backend)
    alpha, S = 0.5, 8 * 1.5
    sw = np.full(8, 1.5)
    loss0, G0 = net.loss_and_gradients(X, T, sample_weight=sw)
    loss, G = net.loss_and_gradients(X, T, sample_weight=sw, alpha=alpha)
    W = weights_np(net)
    for W_l, G_l, G0_l in zip(W, G, G0):
        np.testing.assert_allclose(to_np(G_l)[:, 0], to_np(G0_l)[:, 0], **EXACT)  # bias
        np.testing.assert_allclose(
            to_np(G_l)[:, 1:], to_np(G0_l)[:, 1:] + alpha / S * W_l[:, 1:], **EXACT
        )
    penalty = 0.5 * sum(np.sum(W_l[:, 1:] ** 2) for W_l in W)
    assert loss == pytest.approx(loss0 + alpha / S * penalty, rel=1e-12)


def test_fit_with_alpha_takes_the_penalised_step():
    X, T = problem(N=10)
    net = net64()
    W = weights_np(net)
    _, G = net.loss_and_gradients(X, T, alpha=0.3)
    net.fit(X, T, epochs=1, batch_size=None, learning_rate=0.2, alpha=0.3)
    assert_weights_equal(net.weights, [w - 0.2 * to_np(g) for w, g in zip(W, G)])


# ---------------------------------------------------------------- schedules


def test_constant_schedule_keeps_the_rate():
    X, T = problem()
    rates = []
    net64().fit(
        X, T, epochs=3, batch_size=5, learning_rate=0.1, optimizer=recording(optim.sgd(), rates)
    )
    assert rates == [0.1] * 9


def test_invscaling_divides_by_samples_seen_after_each_epoch():
    X, T = problem(N=10)
    rates = []
    opt = recording(optim.sgd(), rates)
    net = net64()
    kw = dict(batch_size=5, learning_rate=0.5, schedule="invscaling", power_t=0.25, optimizer=opt)
    net.fit(X, T, epochs=3, **kw)
    net.fit(X, T, epochs=1, **kw)  # the same optimizer: t carries on
    expected = [0.5 / (t + 1) ** 0.25 for t in (0, 10, 20, 30) for _ in range(2)]
    assert rates == pytest.approx(expected, rel=1e-12, abs=0)
    assert net.state.t == 40
    assert net.state.learning_rate == pytest.approx(0.5 / 41**0.25, rel=1e-12, abs=0)


def test_invscaling_counts_only_the_training_samples():
    X, T = problem(N=40)
    net = net64()
    net.fit(X, T, epochs=2, schedule="invscaling", validation_fraction=0.25, learning_rate=0.1)
    assert net.state.t == 2 * 30
    assert net.state.learning_rate == pytest.approx(0.1 / 61**0.5)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_schedules_give_the_same_training_on_every_backend(backend, optimizer, schedule):
    X, T = problem(N=30)
    kw = dict(epochs=8, batch_size=7, learning_rate=0.3, optimizer=optimizer, schedule=schedule)
    if schedule == "adaptive":
        kw.update(tol=1e-2, n_iter_no_change=1)
    ref, net = net64(), net64(backend)
    h_ref = ref.fit(X, T, **kw)
    h = net.fit(X, T, **kw)
    np.testing.assert_allclose(h["loss"], h_ref["loss"], rtol=1e-10)
    assert net.state.learning_rate == pytest.approx(ref.state.learning_rate, rel=1e-12)
    assert net.state.learning_rate < 0.3
    assert_weights_equal(net.weights, ref.weights, rtol=1e-10, atol=1e-12)


def scripted_losses(monkeypatch, losses):
    """Make epoch ``e``'s training loss ``losses[e - 1]`` (full batch: one call per epoch);
    returns the list of losses handed out, to check that the script did run."""
    real = train.loss_and_gradients
    calls = iter(losses)
    given = []

    def fake(*args, **kwargs):
        loss, grads = real(*args, **kwargs)
        given.append(next(calls))
        return loss * 0.0 + given[-1], grads

    monkeypatch.setattr(train, "loss_and_gradients", fake)
    return given


def test_adaptive_divides_by_5_after_n_iter_no_change_epochs_without_tol_gain(monkeypatch):
    X, T = problem()
    # Gains of 0.05 < tol: each epoch after the first counts; n_iter_no_change=2 means the
    # third such epoch divides the rate (scikit-learn's ``> n_iter_no_change``).
    given = scripted_losses(monkeypatch, [1.0 - 0.05 * e for e in range(10)])
    rates = []
    net = net64()
    net.fit(
        X,
        T,
        epochs=10,
        batch_size=None,
        learning_rate=0.1,
        schedule="adaptive",
        tol=0.1,
        n_iter_no_change=2,
        optimizer=recording(optim.sgd(), rates),
    )
    assert rates == pytest.approx([0.1] * 4 + [0.02] * 3 + [0.004] * 3, rel=1e-12, abs=0)
    assert len(given) == 10


def test_adaptive_stops_once_the_rate_is_below_1e_6(monkeypatch):
    X, T = problem()
    given = scripted_losses(monkeypatch, [1.0] * 100)
    rates = []
    hist = net64().fit(
        X,
        T,
        epochs=100,
        batch_size=None,
        learning_rate=1e-5,
        schedule="adaptive",
        tol=0.5,
        n_iter_no_change=2,
        optimizer=recording(optim.sgd(), rates),
    )
    # 1e-5 for epochs 1-4, 2e-6 for 5-7, 4e-7 for 8-10: then no rate is left to divide.
    assert len(hist["loss"]) == len(given) == 10
    assert rates == pytest.approx([1e-5] * 4 + [2e-6] * 3 + [4e-7] * 3, rel=1e-12, abs=0)


def test_adaptive_without_tol_still_adapts_and_never_stops(monkeypatch):
    X, T = problem()
    given = scripted_losses(monkeypatch, [1.0 + e for e in range(20)])  # never a gain
    rates = []
    hist = net64().fit(
        X,
        T,
        epochs=20,
        batch_size=None,
        learning_rate=1e-5,
        schedule="adaptive",
        n_iter_no_change=2,
        optimizer=recording(optim.sgd(), rates),
    )
    assert len(hist["loss"]) == len(given) == 20  # tol=None: no stop at a rate of 1e-6
    expected = [1e-5] * 4 + [2e-6] * 3 + [4e-7] * 13
    assert rates == pytest.approx(expected, rel=1e-12, abs=0)


# ---------------------------------------------------------------- gradient clipping


def test_clipping_scales_large_gradients_to_the_bound_and_leaves_small_ones(backend, xp):
    rng = np.random.default_rng(0)
    G = [rng.normal(size=(4, 4)), rng.normal(size=(2, 5))]
    norm = math.sqrt(sum(np.sum(g * g) for g in G))
    grads = [xp.asarray(g, dtype=xp.float64) for g in G]
    clipped = train.clip_by_global_norm(grads, norm / 3, xp=xp)
    after = math.sqrt(sum(np.sum(to_np(g) ** 2) for g in clipped))
    assert after == pytest.approx(norm / 3, rel=1e-10)
    for g, c in zip(G, clipped):  # the direction is kept
        np.testing.assert_allclose(to_np(c), g / 3, rtol=1e-10)
    for g, c in zip(G, train.clip_by_global_norm(grads, norm * 1.01, xp=xp)):
        np.testing.assert_allclose(to_np(c), g, **EXACT)


def test_fit_clips_the_gradient_before_the_step():
    X, T = problem()
    net = net64()
    W = weights_np(net)
    _, G = net.loss_and_gradients(X, T)
    G = [to_np(g) for g in G]
    norm = math.sqrt(sum(np.sum(g * g) for g in G))
    net.fit(X, T, epochs=1, batch_size=None, learning_rate=0.5, clip_norm=norm / 4)
    assert_weights_equal(net.weights, [w - 0.5 * g / 4 for w, g in zip(W, G)], rtol=1e-10)


# ---------------------------------------------------------------- initial weights


@pytest.mark.parametrize("activation, factor", [("tanh", 6.0), ("logistic", 2.0)])
def test_glorot_uses_scikit_learns_bound(activation, factor):
    W = network.init_weights(
        [300, 200, 10], rng=np.random.default_rng(0), init="glorot", activation=activation
    )
    for W_l, (fan_in, fan_out) in zip(W, [(300, 200), (200, 10)]):
        b = math.sqrt(factor / (fan_in + fan_out))
        assert np.abs(W_l).max() <= b
        assert np.abs(W_l).max() > 0.99 * b
        assert np.var(W_l) == pytest.approx(b * b / 3, rel=0.05)  # U(-b, b)
        assert np.abs(W_l[:, 0]).max() > 0.5 * b  # biases drawn as well


def test_he_draws_normal_weights_with_variance_2_over_fan_in_and_zero_biases():
    W = network.init_weights([400, 300, 10], rng=np.random.default_rng(0), init="he")
    for W_l, fan_in in zip(W, [400, 300]):
        np.testing.assert_array_equal(W_l[:, 0], 0.0)
        assert np.std(W_l[:, 1:]) == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
        assert np.mean(W_l[:, 1:]) == pytest.approx(0.0, abs=0.01)


def test_torch_init_uses_nn_linears_bound_1_over_sqrt_fan_in():
    W = network.init_weights([400, 100], rng=np.random.default_rng(0), init="torch")[0]
    b = 1 / math.sqrt(400)
    for part in (W[:, 1:], W[:, 0]):
        assert np.abs(part).max() <= b
        assert np.abs(part).max() > 0.95 * b
    assert np.std(W[:, 1:]) == pytest.approx(b / math.sqrt(3), rel=0.03)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lin = torch.nn.Linear(400, 100, dtype=torch.float64)
    for ours, theirs in [(W[:, 1:], lin.weight), (W[:, 0], lin.bias)]:
        theirs = theirs.detach().numpy()
        assert np.abs(theirs).max() <= b
        assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=0.05)
        assert np.std(ours) == pytest.approx(np.std(theirs), rel=0.1)


@pytest.mark.parametrize("activation", ["tanh", "logistic"])
def test_sklearn_init_replays_scikit_learns_initial_weights(activation):
    nn = pytest.importorskip("sklearn.neural_network")
    from sklearn.exceptions import ConvergenceWarning

    X, T = problem(N=6)
    ref = nn.MLPRegressor(
        hidden_layer_sizes=(5, 4),
        activation=activation,
        solver="sgd",
        learning_rate_init=1e-300,  # one step that leaves the initial weights as they were
        momentum=0.0,
        alpha=0.0,
        max_iter=1,
        shuffle=False,
        batch_size=6,
        random_state=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref.fit(X, T)
    net = xpmlp.MLP([3, 5, 4, 2], activation, dtype="float64", seed=3, init="sklearn")
    for W, coef, intercept in zip(weights_np(net), ref.coefs_, ref.intercepts_):
        np.testing.assert_array_equal(W[:, 0], intercept)
        np.testing.assert_array_equal(W[:, 1:], coef.T)


def test_a_user_init_callable_is_called_per_layer_with_the_models_generator():
    calls = []

    def init(fan_in, fan_out, *, rng, activation):
        calls.append((fan_in, fan_out, activation, rng))
        return np.full((fan_out, fan_in + 1), rng.uniform())

    net = xpmlp.MLP([3, 4, 2], "relu", dtype="float64", seed=1, init=init)
    assert [c[:3] for c in calls] == [(3, 4, "relu"), (4, 2, "relu")]
    assert all(c[3] is net.rng for c in calls)
    u = np.random.default_rng(1).uniform(size=2)
    for W, u_l in zip(weights_np(net), u):
        np.testing.assert_array_equal(W, u_l)
    with pytest.raises(ValueError, match=r"init returned shape \(4, 3\)"):
        xpmlp.MLP([3, 4, 2], init=lambda fan_in, fan_out, **kw: np.zeros((fan_out, fan_in)))


@pytest.mark.parametrize("init", ["glorot", "he", "torch", "sklearn"])
def test_the_same_seed_gives_the_same_initial_weights_on_every_backend(backend, init):
    net = xpmlp.MLP([3, 5, 2], "tanh", backend=backend, dtype="float64", seed=11, init=init)
    rng = np.random.RandomState(11) if init == "sklearn" else np.random.default_rng(11)
    ref = network.init_weights([3, 5, 2], rng=rng, init=init, activation="tanh")
    for W, W_ref in zip(weights_np(net), ref):
        np.testing.assert_array_equal(W, W_ref)


# ---------------------------------------------------------------- early stopping


def capture(store):
    """A callback that keeps a NumPy copy of every epoch's weights."""

    def cb(epoch, loss, score, model):
        store[epoch] = weights_np(model)

    return cb


def scripted_scores(monkeypatch, net, scores):
    calls = iter(scores)
    monkeypatch.setattr(net, "_score", lambda W, X, T, sw=None: next(calls))


def test_early_stopping_stops_after_n_iter_no_change_and_restores_the_best(monkeypatch):
    X, T = problem(N=20)
    net = net64()
    scripted_scores(monkeypatch, net, [0.1, 0.5, 0.3, 0.4, 0.2, 0.9, 0.9])
    seen = {}
    hist = net.fit(
        X, T, epochs=50, early_stopping=True, n_iter_no_change=2, callbacks=[capture(seen)]
    )
    # Epochs 3, 4, 5 do not beat epoch 2; the third of them (> n_iter_no_change) stops.
    assert hist["val_score"] == [0.1, 0.5, 0.3, 0.4, 0.2]
    assert len(hist["loss"]) == 5
    assert_weights_equal(net.weights, seen[2])
    assert not np.allclose(seen[2][0], seen[5][0])


def test_early_stopping_counts_gains_below_tol_but_keeps_the_best(monkeypatch):
    X, T = problem(N=20)
    net = net64()
    scripted_scores(monkeypatch, net, [0.1, 0.2, 0.3, 0.4, 0.5])
    seen = {}
    hist = net.fit(
        X,
        T,
        epochs=50,
        early_stopping=True,
        tol=0.15,
        n_iter_no_change=2,
        callbacks=[capture(seen)],
    )
    assert len(hist["loss"]) == 4
    assert_weights_equal(net.weights, seen[4])


def test_early_stopping_restores_the_best_weights_when_validation_gets_worse():
    X, T = problem(N=30)
    net = net64()
    seen = {}
    # Learning T makes the model worse on -T: the validation score falls every epoch.
    hist = net.fit(
        X,
        T,
        epochs=100,
        learning_rate=0.1,
        early_stopping=True,
        validation_data=(X, -T),
        n_iter_no_change=3,
        callbacks=[capture(seen)],
    )
    best = int(np.argmax(hist["val_score"])) + 1
    assert len(hist["loss"]) == best + 4 < 100
    assert hist["loss"][-1] < hist["loss"][0]
    assert_weights_equal(net.weights, seen[best])
    assert net.score(X, -T) == pytest.approx(max(hist["val_score"]), rel=1e-12)


def test_a_second_fit_restores_its_own_best_weights_not_the_first_fits():
    X, T = problem(N=30)
    net = net64()
    net.fit(X, T, epochs=30, learning_rate=0.1, early_stopping=True, validation_data=(X, T))
    first = weights_np(net)
    seen = {}
    hist = net.fit(
        X,
        T,
        epochs=30,
        learning_rate=0.1,
        early_stopping=True,
        validation_data=(X, -T),  # every score below the first fit's best
        n_iter_no_change=2,
        callbacks=[capture(seen)],
    )
    epoch0 = net.state.epochs - len(hist["loss"])
    best = epoch0 + int(np.argmax(hist["val_score"])) + 1
    assert_weights_equal(net.weights, seen[best])
    assert not np.allclose(weights_np(net)[0], first[0])


def test_validation_fraction_holds_out_that_share_of_the_samples():
    X, T = problem(N=40)
    net = net64()
    hist = net.fit(X, T, epochs=3, validation_fraction=0.25)  # scored, no stopping
    assert net.state.t == 3 * 30
    assert len(hist["val_score"]) == 3
    hist = net.fit(X, T, epochs=2, early_stopping=True)  # default fraction 0.1
    assert net.state.t == 3 * 30 + 2 * 36
    assert len(hist["val_score"]) == 2


def test_validation_data_is_scored_on_the_weights_of_each_epoch(backend):
    X, T = problem(N=20)
    Xv, Tv = problem(N=9, seed=1)
    net = net64(backend)
    scores = []

    def cb(epoch, loss, score, model):
        scores.append((score, model.score(Xv, Tv)))

    hist = net.fit(X, T, epochs=4, validation_data=(Xv, Tv), callbacks=[cb])
    assert hist["val_score"] == [s for s, _ in scores]
    for s, ref in scores:
        assert s == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError, match="not both"):
        net.fit(X, T, validation_data=(Xv, Tv), validation_fraction=0.2)


# ---------------------------------------------------------------- callbacks and history


def test_callbacks_receive_epoch_loss_score_and_the_current_model():
    X, T = problem()
    net = net64()
    log = []

    def cb(epoch, loss, score, model):
        assert model is net
        log.append((epoch, loss, score, model.history["loss"][-1], model.state.epochs))

    h1 = net.fit(X, T, epochs=3, callbacks=[cb])
    h2 = net.fit(X, T, epochs=2, callbacks=[cb])
    assert [e for e, *_ in log] == [1, 2, 3, 4, 5]  # counted over every fit
    assert [loss for _, loss, *_ in log] == h1["loss"] + h2["loss"]
    assert all(score is None for _, _, score, *_ in log)
    assert all(loss == last and e == n for e, loss, _, last, n in log)  # the live history
    assert net.history["loss"] == h1["loss"] + h2["loss"]
    assert h1["val_score"] == h2["val_score"] == []


def test_a_callback_returning_true_stops_and_every_callback_still_runs():
    X, T = problem()
    net = net64()
    seen = []
    stop = lambda epoch, *_: epoch == 3
    hist = net.fit(X, T, epochs=10, callbacks=[stop, lambda e, *_: seen.append(e)])
    assert len(hist["loss"]) == 3 == len(net.history["loss"])
    assert seen == [1, 2, 3]


def test_the_history_loss_is_the_mean_training_loss_of_the_epoch():
    X, T = problem()
    net = net64()
    W = weights_np(net)
    hist = net.fit(X, T, epochs=1, batch_size=None, learning_rate=0.1, alpha=0.2)
    ref = net64()
    ref.weights = W
    assert hist["loss"][0] == pytest.approx(ref.loss_and_gradients(X, T, alpha=0.2)[0], rel=1e-12)


# ---------------------------------------------------------------- sample weights


def test_integer_sample_weights_equal_repeated_rows(backend, xp):
    X, T = problem(N=9)
    k = np.array([1, 2, 0, 3, 1, 1, 2, 1, 4])
    kw = dict(epochs=3, batch_size=None, learning_rate=0.1, alpha=0.1, shuffle=False)
    a, b = net64(backend), net64(backend)
    ha = a.fit(xp.asarray(X), xp.asarray(T), sample_weight=xp.asarray(k), **kw)
    hb = b.fit(np.repeat(X, k, axis=0), np.repeat(T, k, axis=0), **kw)
    np.testing.assert_allclose(ha["loss"], hb["loss"], **EXACT)
    assert_weights_equal(a.weights, b.weights)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_zero_sample_weight_equals_dropping_the_sample(backend, optimizer):
    X, T = problem(N=10)
    sw = np.ones(10)
    sw[[2, 7]] = 0
    keep = sw > 0
    kw = dict(epochs=3, batch_size=None, learning_rate=0.1, alpha=0.1, optimizer=optimizer)
    a, b = net64(backend), net64(backend)
    ha = a.fit(X, T, sample_weight=sw, **kw)
    hb = b.fit(X[keep], T[keep], **kw)
    np.testing.assert_allclose(ha["loss"], hb["loss"], **EXACT)
    assert_weights_equal(a.weights, b.weights)


def test_a_batch_of_zero_weights_changes_nothing(backend):
    X, T = problem(N=15)
    sw = np.r_[np.zeros(5), np.ones(10)]
    kw = dict(epochs=2, batch_size=5, learning_rate=0.1, alpha=0.1, shuffle=False)
    a, b = net64(backend), net64(backend)
    ha = a.fit(X, T, sample_weight=sw, **kw)  # the first batch weighs nothing
    hb = b.fit(X[5:], T[5:], **kw)
    np.testing.assert_allclose(ha["loss"], hb["loss"], **EXACT)
    assert_weights_equal(a.weights, b.weights)


# ---------------------------------------------------------------- host synchronisation


@pytest.mark.parametrize(
    "kw, per_epoch",
    [
        ({}, 1),
        ({"optimizer": "adam", "alpha": 0.1, "clip_norm": 0.5, "schedule": "invscaling"}, 1),
        ({"sample_weight": np.arange(1.0, 25.0), "optimizer": optim.sgd(0.9, True)}, 1),
        ({"schedule": "adaptive", "tol": 1e-4, "n_iter_no_change": 1}, 1),
        ({"validation_data": "val"}, 2),  # the loss and the score the user asked for
        ({"early_stopping": True, "validation_data": "val"}, 2),
    ],
    ids=["plain", "adam-l2-clip", "weights-nesterov", "adaptive", "validation", "early"],
)
def test_one_loss_value_reaches_the_host_per_epoch(monkeypatch, kw, per_epoch):
    Array = type(xpmlp.resolve("array_api_strict")[0].asarray(0.0))
    counts = {"n": 0, "active": False}

    def counting(name):
        real = getattr(Array, name)

        def method(self, *args, **kwargs):
            counts["n"] += counts["active"]
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Array, name, method)

    for name in ["__float__", "__bool__", "__int__", "__index__", "__array__", "__dlpack__"]:
        counting(name)
    real_train = train.train

    def counted_train(*args, **kwargs):
        counts["active"] = True
        try:
            return real_train(*args, **kwargs)
        finally:
            counts["active"] = False

    monkeypatch.setattr(train, "train", counted_train)
    X, T = problem(N=24)
    if kw.get("validation_data") == "val":
        kw = {**kw, "validation_data": problem(N=6, seed=1)}
    net = net64("array_api_strict")
    hist = net.fit(X, T, epochs=3, batch_size=4, **kw)  # 6 batches per epoch
    assert len(hist["loss"]) == 3
    assert counts["n"] == 3 * per_epoch + 1  # and one check that the weights are finite


# ---------------------------------------------------------------- state across fits


def opt_state_np(net):
    def flat(x):
        if isinstance(x, (list, tuple)):
            return [v for item in x for v in flat(item)]
        return [] if x is None else [to_np(x) if hasattr(x, "shape") else x]

    return flat(net.state.opt_state)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_fit_continues_the_optimizer_state_with_the_same_optimizer(backend, optimizer):
    X, T = problem(N=20)
    make = {"adam": lambda: "adam", "momentum": lambda: optim.sgd(momentum=0.9)}[optimizer]
    kw = dict(batch_size=6, learning_rate=0.05)
    a, b = net64(backend), net64(backend)
    a.fit(X, T, epochs=2, optimizer=make(), **kw)
    a.fit(X, T, epochs=1, optimizer=make(), **kw)
    b.fit(X, T, epochs=3, optimizer=make(), **kw)
    assert_weights_equal(a.weights, b.weights)
    assert a.history["loss"] == pytest.approx(b.history["loss"], rel=1e-12)
    for s, s_ref in zip(opt_state_np(a), opt_state_np(b)):
        np.testing.assert_allclose(s, s_ref, **EXACT)


def test_optimizers_of_one_name_are_told_apart_by_their_rule():
    """Two Optimizers named alike with the same hyperparams field shared their state: Adam's
    went into SGD (AttributeError), momentum 0.9's velocities into momentum 0.5's."""
    X, T = problem(N=20)
    kw = dict(epochs=1, batch_size=None, shuffle=False, learning_rate=0.05)
    a, s9, s5 = optim.adam(), optim.sgd(0.9), optim.sgd(0.5)
    net = net64()
    net.fit(X, T, optimizer=optim.Optimizer("mine", a.init, a.update, {}), **kw)
    net.fit(X, T, optimizer=optim.Optimizer("mine", s9.init, s9.update, {}), **kw)
    W = weights_np(net)
    net.fit(X, T, optimizer=optim.Optimizer("mine", s5.init, s5.update, {}), **kw)
    fresh = net64()
    fresh.weights = W
    fresh.fit(X, T, optimizer=s5, **kw)  # momentum 0.5 from a fresh state
    assert_weights_equal(net.weights, fresh.weights)
    # a user's own functions: the same ones go on, others start afresh, and a pickle keeps
    # no functions (a fit after it starts afresh)
    own = optim.Optimizer("own", s9.init, lambda *a, **k: s9.update(*a, **k), {})
    twice, once = net64(), net64()
    twice.fit(X, T, optimizer=own, **kw)
    twice.fit(X, T, optimizer=own, **kw)
    once.fit(X, T, optimizer=s9, epochs=2, batch_size=None, shuffle=False, learning_rate=0.05)
    assert_weights_equal(twice.weights, once.weights)
    back = pickle.loads(pickle.dumps(twice))
    W = weights_np(back)
    back.fit(X, T, optimizer=own, **kw)
    fresh = net64()
    fresh.weights = W
    fresh.fit(X, T, optimizer=s9, **kw)
    assert_weights_equal(back.weights, fresh.weights)


def test_a_pickle_whose_optimizer_key_lacks_the_rule_goes_on_with_its_optimizer(tmp_path):
    """Pickles made before the key held the optimizer's rule keep their optimizer."""
    X, T = problem(N=20)
    kw = dict(optimizer="adam", epochs=2, batch_size=5)
    net = net64()
    net.fit(X, T, **kw)
    for fields in (5, 4):  # before the rule; before power_t as well (then 0.5, its default)
        state = net.__getstate__()
        state["_optimizer_key"] = state["_optimizer_key"][:fields]  # the older forms
        old = xpmlp.MLP.__new__(xpmlp.MLP)
        old.__setstate__(state)
        pickle.loads(pickle.dumps(old))  # the 4-field key's failed here
        ref = copy.deepcopy(net)
        old.fit(X, T, **kw)
        ref.fit(X, T, **kw)
        assert_weights_equal(old.weights, ref.weights)
        old.save(tmp_path / "m.npz")
        assert xpmlp.load(tmp_path / "m.npz")._optimizer_key == old._optimizer_key


def test_a_different_optimizer_starts_from_a_fresh_state():
    X, T = problem(N=20)
    kw = dict(epochs=1, batch_size=None, shuffle=False, learning_rate=0.05)
    a = net64()
    a.fit(X, T, optimizer="adam", **kw)
    a.fit(X, T, optimizer="adam", **kw)
    W2 = weights_np(a)
    a.fit(X, T, optimizer=optim.adam(beta_1=0.5), **kw)  # another optimizer
    fresh = net64()
    fresh.weights = W2
    fresh.fit(X, T, optimizer=optim.adam(beta_1=0.5), **kw)
    assert_weights_equal(a.weights, fresh.weights)
    assert a.state.opt_state.t == 1
    same = net64()
    same.fit(X, T, optimizer="adam", **kw)
    same.fit(X, T, optimizer="adam", **kw)
    same.fit(X, T, optimizer="adam", **kw)  # the same one carries on: a different step
    started = net64()
    started.weights = W2
    started.fit(X, T, optimizer="adam", **kw)
    assert not np.allclose(weights_np(same)[0], weights_np(started)[0])


def snapshot(net):
    s = net.state
    return (
        weights_np(net),
        opt_state_np(net),
        {k: list(v) for k, v in s.history.items()},
        (s.t, s.epochs, s.learning_rate, s.best_loss, s.no_improvement),
    )


def assert_unchanged(net, snap):
    W, opt_state, history, scalars = snapshot(net)
    assert_weights_equal(W, snap[0])
    assert len(opt_state) == len(snap[1])
    for s, s_ref in zip(opt_state, snap[1]):
        np.testing.assert_array_equal(s, s_ref)
    assert history == snap[2]
    assert scalars == snap[3]


def test_a_callback_raising_leaves_weights_and_state_unchanged(backend):
    X, T = problem(N=20)
    kw = dict(batch_size=None, shuffle=False, learning_rate=0.05, optimizer="adam")
    a, b = net64(backend), net64(backend)
    for net in (a, b):
        net.fit(X, T, epochs=2, tol=1e-3, **kw)
    snap = snapshot(a)

    def boom(epoch, loss, score, model):
        if epoch == 4:
            raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        a.fit(X, T, epochs=5, callbacks=[boom], **kw)
    assert_unchanged(a, snap)
    a.fit(X, T, epochs=1, **kw)  # as if the failed fit never ran
    b.fit(X, T, epochs=1, **kw)
    assert_weights_equal(a.weights, b.weights)
    assert a.history == b.history


def test_divergence_leaves_weights_and_optimizer_state_unchanged(backend):
    X, T = problem(N=20)
    net = net64(backend)
    net.fit(X, T, epochs=2, optimizer=optim.sgd(momentum=0.9), learning_rate=0.01)
    snap = snapshot(net)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError, match="lower"):
        net.fit(
            X * 1e3,
            T * 1e6,
            epochs=50,
            batch_size=None,
            learning_rate=1e3,
            optimizer=optim.sgd(momentum=0.9),
        )
    assert_unchanged(net, snap)


def test_validation_score_weighs_samples_like_scikit_learn():
    """The held-out score of a weighted fit weighs its samples: scikit-learn's r2_score
    and accuracy_score with ``sample_weight``."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    X, w = rng.normal(size=(30, 2)), rng.random(30)
    reg = net64(sizes=(2, 4, 1))
    T = rng.normal(size=(30, 1))
    Y = np.asarray(reg.predict(X))
    got = float(reg._score(reg.weights, X, T, w))
    assert got == pytest.approx(metrics.r2_score(T, Y, sample_weight=w), rel=1e-12)
    assert float(reg._score(reg.weights, X, T)) == pytest.approx(metrics.r2_score(T, Y))
    clf = xpmlp.MLP([2, 4, 3], output="softmax", dtype="float64", seed=0)
    T = np.eye(3)[rng.integers(0, 3, 30)]
    pred = np.argmax(np.asarray(clf.predict(X)), axis=1)
    want = metrics.accuracy_score(np.argmax(T, axis=1), pred, sample_weight=w)
    assert float(clf._score(clf.weights, X, T, w)) == pytest.approx(want, rel=1e-12)


def _raise_at_epoch_2(epoch, loss, score, model):
    if epoch == 2:
        raise KeyError("stop here")


@pytest.mark.parametrize("init", ["glorot", "sklearn"])  # a Generator, a RandomState
@pytest.mark.parametrize(
    "failing",
    [
        dict(callbacks=[42]),  # rejected before the validation split draws
        dict(callbacks=[_raise_at_epoch_2], early_stopping=False, validation_fraction=None),
        dict(callbacks=[_raise_at_epoch_2]),  # after the split and one epoch's shuffle
        dict(learning_rate=1e300),  # diverges
    ],
    ids=["bad-callback", "raising-callback", "raising-after-split", "divergence"],
)
def test_a_failed_fit_leaves_the_random_generator_as_it_was(init, failing):
    X, T = problem(N=20)
    kw = dict(epochs=3, batch_size=4, early_stopping=True, validation_fraction=0.2)
    ref = net64(init=init)
    ref.fit(X, T, **kw)
    net = net64(init=init)
    state = pickle.dumps(net.rng)
    with np.errstate(all="ignore"), pytest.raises((TypeError, KeyError, FloatingPointError)):
        scale = 1e3 if "learning_rate" in failing else 1.0
        net.fit(X * scale, T * scale**2, **{**kw, **failing})
    assert pickle.dumps(net.rng) == state
    net.fit(X, T, **kw)  # as on a fresh model
    assert_weights_equal(net.weights, ref.weights)
    assert net.history == ref.history


def test_an_overflow_in_the_last_update_raises_and_leaves_the_model_unchanged(backend):
    """The epoch loss is computed before each update: the weights are checked at the end."""
    X = np.random.default_rng(0).normal(size=(60, 3))
    net = net64(backend, sizes=(3, 5, 1))
    snap = snapshot(net)
    with np.errstate(all="ignore"), pytest.raises(FloatingPointError) as err:
        net.fit(X, 1e3 * X[:, :1], epochs=1, batch_size=None, learning_rate=1e308)
    assert str(err.value) == (
        "the weights became non-finite at epoch 1; lower learning_rate or scale the inputs"
    )
    assert_unchanged(net, snap)


def test_each_fit_counts_its_own_plateau_from_its_own_best_loss():
    """A second fit whose loss is higher than the first fit's best (a new penalty, new data)
    does not stop at once: it compares its epochs with its own best."""
    X, T = problem(N=30)
    net = net64()
    net.fit(X, T, epochs=200, batch_size=10, learning_rate=0.1, tol=1e-4, n_iter_no_change=3)
    hist = net.fit(X, 3 * T, epochs=40, batch_size=10, learning_rate=0.01, tol=1e-6,
                   n_iter_no_change=3)  # fmt: skip
    assert hist["loss"][0] > net.state.best_loss  # it started above its own best ...
    assert len(hist["loss"]) > 4  # ... and went on while it improved


def test_a_new_power_t_starts_a_fresh_rate():
    X, T = problem(N=12)
    a, b = net64(), net64()
    a.fit(X, T, epochs=3, batch_size=4, schedule="invscaling", power_t=0.5)
    b.fit(X, T, epochs=3, batch_size=4, schedule="invscaling", power_t=0.5)
    a.fit(X, T, epochs=1, batch_size=4, schedule="invscaling", power_t=0.0)
    b.fit(X, T, epochs=1, batch_size=4, schedule="constant")  # eta / (t + 1)**0 = eta
    assert_weights_equal(a.weights, b.weights)


def test_a_split_that_leaves_no_sample_weight_on_one_side_is_refused():
    """One weighted sample: whichever side of the split it lands on, the other has none."""
    X, T = problem(N=20)
    net = net64()
    snap = snapshot(net)
    sw = np.zeros(20)
    sw[7] = 1.0
    with pytest.raises(ValueError, match="sample_weight is 0 on every sample of the"):
        net.fit(X, T, epochs=2, sample_weight=sw, validation_fraction=0.2)
    assert_unchanged(net, snap)


@pytest.mark.parametrize("flag", ["shuffle", "early_stopping", "verbose"])
def test_flags_must_be_booleans(flag):
    X, T = problem(N=8)
    with pytest.raises(TypeError, match=f"{flag}='no'; accepted: True or False"):
        net64().fit(X, T, epochs=1, **{flag: "no"})


def test_an_interrupt_keeps_the_epochs_done_and_goes_on_up():
    """Ctrl-C is no failure: the model keeps what it trained (it was rolled back)."""
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))

    def interrupt(epoch, loss, score, model):
        if epoch == 3:
            raise KeyboardInterrupt

    net = xpmlp.MLP([3, 5, 2], dtype="float64", seed=1)
    ref = xpmlp.MLP([3, 5, 2], dtype="float64", seed=1)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, T, epochs=10, batch_size=8, optimizer="adam", callbacks=[interrupt])
    ref.fit(X, T, epochs=3, batch_size=8, optimizer="adam")
    assert net.history == ref.history and len(net.history["loss"]) == 3
    for A, B in zip(net.weights, ref.weights):
        np.testing.assert_array_equal(A, B)
    for m in (net, ref):  # and training goes on from there as from an uninterrupted run
        m.fit(X, T, epochs=2, batch_size=8, optimizer="adam")
    for A, B in zip(net.weights, ref.weights):
        np.testing.assert_array_equal(A, B)


@pytest.mark.parametrize("path", ["fast", "pure"])
@pytest.mark.parametrize("epoch", [1, 3])
def test_an_interrupt_mid_epoch_keeps_the_steps_done(backend, monkeypatch, path, epoch):
    """Ctrl-C in the middle of an epoch: the model holds the weights and the optimizer state
    (Adam's step count included) of the steps done, and training goes on from there as after
    those steps; the history counts the epochs completed."""
    from xpmlp import _fast

    if path == "pure":
        monkeypatch.setattr(_fast, "ENABLED", False)
    X, T = problem(N=12)
    steps = {"n": 0, "stop": 3 * (epoch - 1) + 2}  # 3 batches an epoch: 2 of this one done

    def count(f):
        def wrapped(*args, **kw):
            steps["n"] += 1
            if steps["n"] > steps["stop"]:
                raise KeyboardInterrupt
            return f(*args, **kw)

        return wrapped

    monkeypatch.setattr(_fast.Plan, "_step", count(_fast.Plan._step))
    monkeypatch.setattr(train, "loss_and_gradients", count(train.loss_and_gradients))
    kw = dict(batch_size=4, optimizer="adam", shuffle=False, learning_rate=0.05)
    net = net64(backend)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, T, epochs=5, **kw)
    monkeypatch.undo()
    if path == "pure":
        monkeypatch.setattr(_fast, "ENABLED", False)
    ref = net64(backend)
    if epoch > 1:
        ref.fit(X, T, epochs=epoch - 1, **kw)
    ref.fit(X[:8], T[:8], epochs=1, **kw)  # the two steps; the same optimizer goes on
    assert len(net.history["loss"]) == epoch - 1 == net.state.epochs
    assert net.state.opt_state.t == ref.state.opt_state.t == 3 * (epoch - 1) + 2
    assert_weights_equal(net.weights, ref.weights)
    for A, B in zip(opt_state_np(net), opt_state_np(ref)):
        np.testing.assert_allclose(A, B, **EXACT)
    for m in (net, ref):
        m.fit(X, T, epochs=1, **kw)
    assert_weights_equal(net.weights, ref.weights)


@pytest.mark.parametrize("path", ["fast", "pure"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_ctrl_c_within_a_step_takes_effect_once_the_step_is_done(backend, monkeypatch, path):
    """A real SIGINT during a step's forward pass: the step completes (every layer and
    Adam's count) and the interrupt is raised after it. Raised where it landed, it had kept
    Adam's step count one ahead of its updates on the fast path."""
    import signal

    from xpmlp import _fast, objectives

    pytest.importorskip(backend)
    if path == "pure":
        monkeypatch.setattr(_fast, "ENABLED", False)
    logistic = objectives.OUTPUTS["logistic"]
    calls = {"n": 0}

    def f(A, *, xp):  # the output function, called once in each step's forward pass
        calls["n"] += 1
        if calls["n"] == 2:
            signal.raise_signal(signal.SIGINT)
        return logistic.f(A, xp=xp)

    X, T = problem(N=12)
    T = (T > 0) * 1.0
    kw = dict(batch_size=4, optimizer="adam", shuffle=False, learning_rate=0.05)
    monkeypatch.setitem(objectives.OUTPUTS, "logistic", logistic._replace(f=f))
    net = net64(backend, output="logistic")
    assert net.output.f is f
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, T, epochs=3, **kw)
    assert calls["n"] == 2  # none after the interrupted step
    monkeypatch.setitem(objectives.OUTPUTS, "logistic", logistic)
    ref = net64(backend, output="logistic")
    ref.fit(X[:8], T[:8], epochs=1, **kw)  # the two steps
    assert net.state.opt_state.t == ref.state.opt_state.t == 2
    assert_weights_equal(net.weights, ref.weights)
    for A, B in zip(opt_state_np(net), opt_state_np(ref)):
        np.testing.assert_allclose(A, B, **EXACT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_second_ctrl_c_within_a_step_is_raised_at_once():
    import signal

    from xpmlp import _interrupt

    reached = []
    with pytest.raises(KeyboardInterrupt), _interrupt.held():
        signal.raise_signal(signal.SIGINT)
        reached.append("held")  # the first is held
        signal.raise_signal(signal.SIGINT)
        reached.append("not reached")
    assert reached == ["held"]
    with _interrupt.held():  # raised by check, between steps
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            _interrupt.check()
        _interrupt.check()  # once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_held_for_the_main_threads_training_is_not_taken_by_another_thread():
    """Trainings in other threads check between steps too: they took the held Ctrl-C, so
    the main thread's fit trained on (a second Ctrl-C as well) and the other one stopped."""
    import signal
    import threading

    from xpmlp import _interrupt

    taken = []

    def other():
        try:
            _interrupt.check()
        except KeyboardInterrupt:
            taken.append("other")

    with _interrupt.held():
        signal.raise_signal(signal.SIGINT)
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        with pytest.raises(KeyboardInterrupt):
            _interrupt.check()  # still held for the main thread
    assert taken == []
    X, T = problem(N=40)  # a whole fit in another thread leaves a held Ctrl-C alone
    with _interrupt.held():
        signal.raise_signal(signal.SIGINT)
        worker = threading.Thread(target=lambda: net64().fit(X, T, epochs=3, batch_size=1))
        worker.start()
        worker.join()
        with pytest.raises(KeyboardInterrupt):
            _interrupt.check()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_ctrl_c_held_in_a_child_forked_from_a_thread_is_raised_there():
    """check() took the main thread to be the parent's; held() the child's own (the forking
    thread): the child's Ctrl-C was held and never raised. (In a fresh process: forking
    beside JAX's threads warns.)"""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import os, signal, threading
        from xpmlp import _interrupt

        def child():
            pid = os.fork()
            if pid == 0:  # the child: the forking thread is its main thread
                code = 1
                try:
                    with _interrupt.held():
                        signal.raise_signal(signal.SIGINT)
                        _interrupt.check()
                except KeyboardInterrupt:
                    code = 0
                finally:
                    os._exit(code)
            print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

        worker = threading.Thread(target=child)
        worker.start()
        worker.join()
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


def test_an_interrupt_while_scoring_keeps_the_counts_and_history_in_step():
    """Ctrl-C in an epoch's validation scoring: that epoch's training is kept, uncounted,
    as an interrupt within it (the counts had gone on while its loss was cut)."""
    X, T = problem(N=40)
    calls = {"n": 0}
    net = net64()
    score = net._score

    def interrupting(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return score(*args)

    net._score = interrupting
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, T, epochs=5, batch_size=8, validation_fraction=0.25)
    assert net.state.epochs == 2 and net.state.t == 2 * 30
    assert len(net.history["loss"]) == len(net.history["val_score"]) == 2


def test_a_fit_from_a_callback_is_refused_and_the_outer_fit_rolled_back():
    X, T = problem(N=12)
    net = net64()
    snap = snapshot(net)

    def nested(epoch, loss, score, model):
        if epoch == 2:
            model.fit(X, T, epochs=2)

    with pytest.raises(RuntimeError, match="fit cannot train a model while its fit runs"):
        net.fit(X, T, epochs=4, callbacks=[nested])
    assert_unchanged(net, snap)
    net.fit(X, T, epochs=1)  # and the model trains as before
    assert net.state.epochs == 1


@pytest.mark.parametrize("early_stopping", [True, False])
def test_a_validation_split_of_one_sample_is_refused(early_stopping):
    """R^2 of one sample is 0 whatever the fit: early stopping kept the first epoch's
    weights for good."""
    X, T = problem(N=14)
    net = net64()
    kw = dict(early_stopping=True) if early_stopping else dict(validation_fraction=0.1)
    with pytest.raises(ValueError, match="of 14 samples holds out 1; accepted: .*at least 2"):
        net.fit(X, T, epochs=2, **kw)
    assert net.state.epochs == 0


# ---------------------------------------------------------------- boundaries


def test_relu_derivative_is_zero_at_zero():
    dh = get_activation("relu").dh
    A = np.array([[-1.0, 0.0, -0.0, 2.0]])
    np.testing.assert_array_equal(dh(A, np.maximum(A, 0), xp=np), [[0, 0, 0, 1]])


def test_plateau_loss_exactly_tol_below_best_is_an_improvement():
    c = train.Config(tol=0.25, n_iter_no_change=1)
    s = train.LoopState(best_loss=1.0, no_improvement=1)
    train._plateau(None, 0.75, None, c, s, xp=np)  # 0.75 > 1.0 - 0.25 is False: reset
    assert s.no_improvement == 0
    train._plateau(None, 0.75, None, c, s, xp=np)  # equal to best: no gain
    assert s.no_improvement == 1


def test_validation_fraction_rounds_to_nearest():
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(17, 3)), rng.normal(size=(17, 1))
    net = xpmlp.MLP([3, 4, 1], "tanh", dtype="float64", seed=0)
    net.fit(X, T, epochs=1, validation_fraction=0.1)  # round(1.7) = 2 held out
    assert net.state.t == 15


def test_score_of_several_logistic_outputs_needs_every_label_right():
    net = xpmlp.MLP([2, 2], "tanh", "logistic", dtype="float64", seed=0)
    net.weights = [np.zeros((2, 3))]  # y = 0.5 everywhere: predicts label 0 in both columns
    X = np.zeros((2, 2))
    T = np.array([[0.0, 1.0], [0.0, 0.0]])  # row 0 has one label wrong
    assert net.score(X, T) == 0.5


@pytest.mark.parametrize("fast", [True, False])
def test_the_float32_epoch_loss_of_many_batches_is_summed_accurately(monkeypatch, fast):
    """The pure path kept a running float32 sum of 20,000 per-sample losses: 3.0e-6 off the
    exact mean, where the fast path's sum was within 1e-7 (a tol decision could differ)."""
    from xpmlp import _fast

    monkeypatch.setattr(_fast, "ENABLED", fast)
    rng = np.random.default_rng(0)
    N = 20000
    X = rng.normal(size=(N, 3)).astype(np.float32)
    T = 3 * rng.normal(size=(N, 1)).astype(np.float32)
    net = xpmlp.MLP([3, 4, 1], dtype="float32", seed=0)
    W = [np.asarray(w, np.float64) for w in net.weights]
    Y = np.c_[np.ones(N), np.tanh(np.c_[np.ones(N), X] @ W[0].T)] @ W[1].T
    exact = 0.5 * np.mean((Y - T) ** 2)
    # a rate that leaves the weights as they are: the loss of one set of weights
    loss = net.fit(X, T, epochs=1, batch_size=1, learning_rate=1e-30, shuffle=False)["loss"][0]
    assert abs(loss - exact) / exact < 2e-7
