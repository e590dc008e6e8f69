"""The NumPy fast path (xpmlp/_fast.py) gives the pure Array API path's numbers."""

import gc
import weakref

import numpy as np
import pytest

import xpmlp
from xpmlp import _fast, optim, train

RTOL = 1e-12  # float64: the paths differ only in the order of a few additions
PASS_PART_BYTES = _fast.PASS_PART_BYTES  # the install's, before the fixture sets its own


@pytest.fixture(autouse=True, params=["kernels", "pooled", "ufuncs"])
def kernels(request, monkeypatch):
    """Every test three times: with the compiled kernels of ``_kernels.c`` on one thread,
    with them in parts on the BLAS's threads wherever an op has two elements (rows), and
    with the ufunc passes that stand in for them where the install could not compile them."""
    if request.param == "ufuncs":
        monkeypatch.setattr(_fast, "KERNELS", None)
    elif _fast.KERNELS is None:
        pytest.skip("xpmlp._kernels was not compiled (no C compiler at install)")
    monkeypatch.setattr(_fast, "PASS_PART_BYTES", 1 if request.param == "pooled" else 0)
    return request.param


def problem(N=23, D=3, K=2, seed=0, output="identity"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D))
    if output == "softmax":
        T = np.eye(K)[rng.integers(0, K, size=N)]
    elif output == "logistic":
        T = (rng.random((N, K)) > 0.5).astype(float)
    else:
        T = np.stack([np.sin(X[:, 0] * (k + 1)) * X[:, -1] for k in range(K)], axis=1)
    return X, T


def fit_both(monkeypatch, sizes, activation="tanh", output="identity", dtype="float64", **fit):
    """Train the same network from the same seed on the pure path and on the fast path."""
    X, T = problem(D=sizes[0], K=sizes[-1], output=getattr(output, "name", output))
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        net = xpmlp.MLP(sizes, activation, output, dtype=dtype, seed=5)
        hist = net.fit(X, T, **fit)
        runs.append((hist["loss"], [np.asarray(W, dtype=np.float64) for W in net.weights]))
    return runs


def assert_same(runs, rtol=RTOL, atol=0.0):
    (loss_pure, W_pure), (loss_fast, W_fast) = runs
    np.testing.assert_allclose(loss_fast, loss_pure, rtol=rtol, atol=atol)
    for W, W_ref in zip(W_fast, W_pure):
        np.testing.assert_allclose(W, W_ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("activation", ["tanh", "logistic", "relu", "identity"])
@pytest.mark.parametrize("batch_size", [1, 5, None])
@pytest.mark.parametrize("shuffle", [True, False])
def test_sgd_matches_pure_path_float64(monkeypatch, activation, batch_size, shuffle):
    runs = fit_both(
        monkeypatch,
        [3, 6, 4, 2],
        activation,
        epochs=4,
        batch_size=batch_size,
        learning_rate=0.05,
        shuffle=shuffle,
    )
    assert_same(runs)


@pytest.mark.parametrize("output", ["logistic", "softmax"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_classification_outputs_and_adam_match_pure_path(monkeypatch, output, optimizer):
    runs = fit_both(
        monkeypatch,
        [3, 5, 3],
        "tanh",
        output,
        epochs=3,
        batch_size=4,
        learning_rate=0.02,
        optimizer=optimizer,
    )
    assert_same(runs)


@pytest.mark.parametrize("output", ["logistic", "softmax"])
def test_scikit_learns_clipped_log_losses_take_the_fast_path(monkeypatch, output):
    from xpmlp.objectives import CLIPPED

    plans = []
    real = _fast.plan
    monkeypatch.setattr(_fast, "plan", lambda *a, **k: plans.append(real(*a, **k)) or plans[-1])
    runs = fit_both(
        monkeypatch, [3, 5, 3], "tanh", CLIPPED[output], epochs=3, batch_size=4, learning_rate=0.02
    )
    assert_same(runs)
    assert plans[0] is None and isinstance(plans[1], _fast.Plan)  # pure run, then fast


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_pure_path(monkeypatch, nesterov):
    opt = optim.sgd(momentum=0.9, nesterov=nesterov)
    runs = fit_both(monkeypatch, [3, 4, 1], epochs=3, batch_size=6, optimizer=opt)
    assert_same(runs)


OPTIMIZERS = {
    "sgd": optim.sgd,
    "momentum": lambda: optim.sgd(momentum=0.9),
    "nesterov": lambda: optim.sgd(momentum=0.8, nesterov=True),
    "adam": lambda: optim.adam(beta_1=0.8, beta_2=0.99, epsilon=1e-6),
}


def _state_arrays(opt_state):
    if isinstance(opt_state, optim.AdamState):
        return [opt_state.t, *opt_state.m, *opt_state.v]
    return list(opt_state.velocities or [])


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("pregather", [True, False])
@pytest.mark.parametrize("block", [3, 32768])
def test_l2_and_every_optimizer_match_pure_path(monkeypatch, optimizer, pregather, block):
    """The L2 term and each optimizer's step, on blocks of a few weights or on whole layers,
    give the pure path's weights, losses and optimizer state (Adam's step count included)."""
    if not pregather:
        monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)  # the L2 term turns the fused update off
    monkeypatch.setattr(_fast, "UPDATE_BLOCK", block)
    plans = []
    real = _fast.plan
    monkeypatch.setattr(_fast, "plan", lambda *a, **k: plans.append(real(*a, **k)) or plans[-1])
    X, T = problem(D=3, K=2)
    runs, states = [], []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        net = xpmlp.MLP([3, 7, 5, 2], dtype="float64", seed=2)
        hist = net.fit(
            X, T, epochs=3, batch_size=5, learning_rate=0.05, alpha=0.3,
            optimizer=OPTIMIZERS[optimizer](),
        )  # fmt: skip
        runs.append((hist["loss"], [np.asarray(W) for W in net.weights]))
        states.append(_state_arrays(net.state.opt_state))
    assert plans[0] is None and isinstance(plans[1], _fast.Plan)
    assert_same(runs)
    assert len(states[1]) == len(states[0]) > 0 or optimizer == "sgd"
    for A, A_ref in zip(states[1], states[0]):
        np.testing.assert_allclose(A, A_ref, rtol=RTOL)
    no_l2 = fit_both(monkeypatch, [3, 7, 5, 2], epochs=3, batch_size=5, learning_rate=0.05)
    assert not np.allclose(no_l2[1][0], runs[1][0])  # the L2 term changed the losses


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_optimizer_step_gives_optims_numbers_bit_for_bit(monkeypatch, optimizer, dtype, alpha):
    """One step of the fast path's update (L2 term, then the rule, on blocks of rows) on the
    same gradients, weights and state as :mod:`optim` gives exactly its numbers."""
    monkeypatch.setattr(_fast, "UPDATE_BLOCK", 10)  # blocks of 1 or 2 rows, and a tail
    rng = np.random.default_rng(4)
    sizes, n, lr = [3, 6, 4, 2], 5, 0.03
    W0 = [rng.normal(size=(m, k + 1)).astype(dtype) for k, m in zip(sizes, sizes[1:])]
    G0 = [rng.normal(size=W.shape).astype(dtype) for W in W0]
    W0[0][:, 0] = G0[0][:, 0] = -0.0  # signed zeros: W + (-eta G) is +0.0, not -0.0
    opt = OPTIMIZERS[optimizer]()
    state = opt.init(W0, xp=np)
    if isinstance(state, optim.AdamState):
        m = [rng.normal(size=W.shape).astype(dtype) for W in W0]
        v = [rng.random(size=W.shape).astype(dtype) for W in W0]
        state = optim.AdamState(3, m, v)
    elif state.velocities is not None:
        state = optim.SGDState([rng.normal(size=W.shape).astype(dtype) for W in W0])
    # optim's step on train's gradient with its L2 term
    grads = [train._add_weight_decay(np.array(G), W, alpha / n, xp=np) for G, W in zip(G0, W0)]
    W_ref, state_ref = opt.update(
        grads, _copy_state(state), [np.array(W) for W in W0], learning_rate=lr, xp=np
    )
    # the fast path's on the same numbers
    X, T = problem(D=3, K=2)
    net = xpmlp.MLP(sizes, dtype=np.dtype(dtype).name)
    p = _fast.plan(
        [np.array(W) for W in W0], X.astype(dtype), T.astype(dtype), sample_weight=None,
        activation=net.activation, output=net.output, optimizer=opt, opt_state=state,
        config=train.Config(batch_size=n, alpha=alpha), xp=net.xp,
    )  # fmt: skip
    p._bind(p.W, _state_groups(_copy_state(state)))
    p.lr, p.neg_lr[...] = lr, -lr
    if optimizer == "adam":
        p.t = state.t
    p._begin_step(0, n, None)  # alpha / n; Adam's step count and eta_t
    if optimizer == "adam":
        assert p.t == state_ref.t == 4
    for G, G_0 in zip(p.G, G0):
        G[...] = G_0
    for l in range(len(W0)):
        for f, args in p._update_ops(l, n):
            f(*args)
    for W, W_r in zip(p.W, W_ref):
        np.testing.assert_array_equal(W, W_r)
        assert np.array_equal(np.signbit(W), np.signbit(W_r))
    for S, S_r in zip(p.S, _state_groups(state_ref)):
        for A, A_r in zip(S, S_r):
            np.testing.assert_array_equal(A, A_r)


@pytest.mark.parametrize("activation", list(_fast.DELTAS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_delta_step_gives_the_ufunc_passes_numbers_bit_for_bit(kernels, activation, dtype):
    """``delta = h'(a) * P`` in one kernel pass gives the ufunc passes' numbers, signed
    zeros, infinities and NaN included."""
    if kernels == "ufuncs":
        pytest.skip("compares the kernel with the ufunc passes")
    rng = np.random.default_rng(2)
    special = [0.0, -0.0, 1.0, -1.0, 0.5, np.inf, -np.inf, np.nan, 1e-30, -3e38]
    Z0 = np.concatenate([rng.uniform(-1.5, 1.5, 97), special, rng.permutation(special)])
    P0 = np.concatenate([rng.normal(size=97), rng.permutation(special), special])
    Z0, P0 = Z0.astype(dtype), P0.astype(dtype)
    plan = _plan(xpmlp.MLP([3, 4, 2], activation, dtype=np.dtype(dtype).name), *problem())
    Z, P = Z0.copy(), P0.copy()
    (f, args), *more = plan._delta_ops(Z, P)
    assert f is _fast.KERNELS and not more
    with np.errstate(all="ignore"):  # inf * 0, reported as the ufuncs report it
        f(*args)
    Z_ref, P_ref = Z0.copy(), P0.copy()
    with np.errstate(all="ignore"):  # inf * 0
        for f, args in _fast.DELTAS[activation](Z_ref, P_ref):
            f(*args)
    np.testing.assert_array_equal(Z, Z_ref)
    assert np.array_equal(np.signbit(Z), np.signbit(Z_ref))


@pytest.mark.parametrize("activation", list(_fast.DELTAS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_delta_step_on_nan_raises_what_the_ufunc_passes_raise(kernels, activation, dtype):
    """A NaN in Z with a finite P: NumPy's passes raise nothing (NaN propagates quietly);
    nor does the kernel (relu's z > 0 compared NaN in vector code and raised "invalid")."""
    Z0 = np.array([np.nan, -np.nan, 1.0, 0.0, -0.0, 0.25, -2.0, np.inf] * 20, dtype)
    P0 = np.linspace(-2, 2, Z0.size).astype(dtype)
    plan = _plan(xpmlp.MLP([3, 4, 2], activation, dtype=np.dtype(dtype).name), *problem())
    Z, P = Z0.copy(), P0.copy()
    Z_ref, P_ref = Z0.copy(), P0.copy()
    with np.errstate(all="raise"):
        for f, args in plan._delta_ops(Z, P):
            f(*args)
        for f, args in _fast.DELTAS[activation](Z_ref, P_ref):
            f(*args)
    assert Z.tobytes() == Z_ref.tobytes()


def _blas_threads(n):
    """Let NumPy's BLAS use ``n`` threads (threadpoolctl), where the kernels can share them."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not getattr(_fast._openblas(), "gotoblas_pthread", None):
        pytest.skip("NumPy does not link OpenBLAS here: the kernels keep to one thread")
    return threadpoolctl.threadpool_limits(n, user_api="blas")


def test_passes_under_128_kib_keep_to_one_thread(kernels, monkeypatch):
    """Split from 64 KiB, small fits waited on a descheduled BLAS thread where another
    process kept a core busy (a median 1.8x, at worst 12x the time of one thread)."""
    if kernels == "ufuncs":
        pytest.skip("the kernels' parts")
    from xpmlp import _kernels

    monkeypatch.setattr(_fast, "PASS_PART_BYTES", PASS_PART_BYTES)
    p = _plan(xpmlp.MLP([3, 4, 2], dtype="float64"), *problem())
    with _blas_threads(2):
        for kib, parts in ((100, 1), (127, 1), (128, 2), (512, 2)):
            Z = np.zeros(kib * 1024 // 8)
            (_, args), (_, dargs) = *p._h_ops(Z, Z), *p._delta_ops(Z, Z.copy())
            assert _kernels.parts(args[0]) == _kernels.parts(dargs[0]) == parts, kib


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_passes_run_in_parts_one_per_blas_thread(kernels, monkeypatch, dtype):
    """An op of two least parts or more runs in as many parts as the BLAS may use threads
    (at most one per least part); a smaller op, or one BLAS thread, runs whole."""
    if kernels == "ufuncs":
        pytest.skip("counts the kernels' parts")
    from xpmlp import _kernels

    p = _plan(xpmlp.MLP([3, 4, 2], dtype=np.dtype(dtype).name), *problem())
    item = np.dtype(dtype).itemsize
    monkeypatch.setattr(_fast, "PASS_PART_BYTES", 100 * item)  # 100 elements
    for n, want in ((199, 1), (200, 2), (299, 2), (300, 3), (5000, 3)):
        Z, P = np.zeros(n, dtype), np.zeros(n, dtype)
        ((f, args),) = p._delta_ops(Z, P)
        ((_, h_args),) = p._h_ops(Z, Z)
        for words in (args[0], h_args[0]):
            for threads, parts in ((1, 1), (3, want)):
                with _blas_threads(threads):
                    assert _kernels.parts(words) == parts
    monkeypatch.setattr(_fast, "PASS_PART_BYTES", 0)  # none
    with _blas_threads(3):
        assert _kernels.parts(p._delta_ops(Z, P)[0][1][0]) == 1
    monkeypatch.setattr(_fast, "PASS_PART_BYTES", 4 * item)  # a step's least part: a row
    with _blas_threads(3):
        assert [_kernels.parts(p._kernel_step(l)[1][0]) for l in (0, 1)] == [3, 2]  # 4, 2 rows
    X = np.zeros((50, 7), dtype)  # a gather's least part in rows: 100 elements, 15 rows
    out, idx = np.empty((30, 7), dtype), np.arange(30, dtype=np.intp)
    p.X = X
    monkeypatch.setattr(_fast, "PASS_PART_BYTES", 100 * item)
    with _blas_threads(3):
        assert _kernels.parts(p._gather_kernel(out, idx)[1][0]) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_passes_in_parts_give_the_numbers_of_one_pass(kernels, monkeypatch, dtype):
    """h (NumPy's own loop), delta and the gather in parts on three threads: the ufuncs'
    and take's numbers bit for bit, specials included."""
    if kernels == "ufuncs":
        pytest.skip("compares the kernels with the ufuncs")
    from xpmlp import _kernels

    monkeypatch.setattr(_fast, "PASS_PART_BYTES", 16)
    rng = np.random.default_rng(4)
    special = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-40, -3e38, 30.0]
    Z0 = np.concatenate([rng.normal(scale=3, size=4000), special * 5]).astype(dtype)
    P0 = rng.permutation(np.concatenate([rng.normal(size=4000), special * 5])).astype(dtype)
    for activation, h in (("tanh", np.tanh), ("relu", lambda z: np.maximum(z, 0))):
        p = _plan(xpmlp.MLP([3, 4, 2], activation, dtype=np.dtype(dtype).name), *problem())
        Z, P = Z0.copy(), P0.copy()
        with _blas_threads(3), np.errstate(all="ignore"):
            for f, args in (*p._h_ops(Z, Z), *p._delta_ops(Z, P)):
                assert f is _fast.KERNELS and _kernels.parts(args[0]) == 3
                f(*args)
            Z_ref, P_ref = h(Z0), P0.copy()
            for f, args in _fast.DELTAS[activation](Z_ref, P_ref):
                f(*args)
        assert Z.tobytes() == Z_ref.tobytes()
    X = rng.normal(size=(300, 9)).astype(dtype)
    idx = rng.integers(0, 300, 200).astype(np.intp)
    p.X, out = X, np.empty((200, 9), dtype)
    f, args = p._gather_kernel(out, idx)
    with _blas_threads(3):
        f(*args)
    np.testing.assert_array_equal(out, X[idx])
    beside = np.full((200, 10), 7, dtype)  # into [1 | X_b]: rows of a strided buffer
    f, args = p._gather_kernel(beside[:, 1:], idx)
    with _blas_threads(3):
        f(*args)
    np.testing.assert_array_equal(beside[:, 1:], X[idx])
    assert np.all(beside[:, 0] == 7)
    for bad_out, bad_idx in (
        (np.empty((200, 8), dtype), idx),
        (np.empty((9, 200), dtype).T, idx),
        (out, idx.astype(np.int32)),
        (out, np.repeat(idx, 2)[::2]),
        (out.astype(np.float16), idx),
    ):
        with pytest.raises(ValueError, match="no kernel gather"):
            p._gather_kernel(bad_out, bad_idx)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_in_parts_gives_one_threads_numbers_bit_for_bit(kernels, monkeypatch, optimizer):
    """A whole fit with every pass and optimizer step in parts: the weights and losses (the
    L2 penalty's sum included) of the one-thread kernels."""
    if kernels == "ufuncs":
        pytest.skip("compares the kernels on one thread and in parts")
    X, T = problem(N=200, D=30, K=3)
    runs = []
    for part in (0, 4):
        monkeypatch.setattr(_fast, "PASS_PART_BYTES", part)
        net = xpmlp.MLP([30, 40, 20, 3], dtype="float32", seed=3)
        with _blas_threads(3):
            hist = net.fit(
                X.astype(np.float32), T.astype(np.float32), epochs=3, batch_size=64,
                optimizer=optimizer, alpha=1e-2,
            )  # fmt: skip
        runs.append((hist["loss"], [np.asarray(W) for W in net.weights]))
    (loss, weights), (loss_one, weights_one) = runs
    assert loss == loss_one
    for W, W_one in zip(weights, weights_one):
        assert W.tobytes() == W_one.tobytes()


def test_a_ufunc_loop_that_disagrees_with_its_ufunc_is_not_used(kernels, monkeypatch):
    """The kernels call NumPy's own loop only after it gave the ufunc's numbers."""
    if kernels == "ufuncs":
        pytest.skip("checks the kernels' loops")
    from xpmlp import _kernels

    assert _fast._loop(np.tanh, np.float32) == _kernels.loop(np.tanh, np.dtype("f").num)
    real = _kernels.loop
    monkeypatch.setattr(_fast, "_LOOPS", {})
    monkeypatch.setattr(_kernels, "loop", lambda ufunc, num: real(np.sin, num))
    assert _fast._loop(np.tanh, np.float64) is None
    p = _plan(xpmlp.MLP([3, 4, 2], dtype="float64"), *problem())
    Z = np.zeros(10)
    assert p._h_ops(Z, Z) == [(np.tanh, (Z, Z))]
    with pytest.raises(TypeError, match="NumPy ufunc"):
        real(np.sum, 12)


def test_kernels_load_where_compiled_and_stay_off_when_asked(monkeypatch):
    import importlib.util

    compiled = importlib.util.find_spec("xpmlp._kernels") is not None
    assert (_fast._load_kernels() is not None) == compiled
    if compiled:  # the bytes of 16 int64 words, nothing else
        from xpmlp import _kernels

        empty = np.array([1, 0] + [0] * 14, np.int64).tobytes()  # delta on 0 elements: harmless
        for bad in (b"", bytes(127), bytearray(128), 0, empty + b"\0", empty + bytes(8)):
            with pytest.raises(TypeError, match="16 int64 words"):
                _kernels.run(bad)
        for op, dtype in ((4, 0), (-1, 0), (0, 2), (1, 2), (3, -1)):
            with pytest.raises(ValueError, match="no such kernel"):
                _kernels.run(np.array([op, dtype] + [0] * 14, np.int64).tobytes())
        monkeypatch.setattr(_fast, "KERNELS_VERSION", _kernels.VERSION + 1)  # a stale build
        assert _fast._load_kernels() is None
        monkeypatch.setattr(_fast, "KERNELS_VERSION", _kernels.VERSION)  # current again
    for off in ("0", "off", "False", " no "):
        monkeypatch.setenv("XPMLP_KERNELS", off)
        assert _fast._load_kernels() is None
    monkeypatch.setenv("XPMLP_KERNELS", "1")
    assert (_fast._load_kernels() is not None) == compiled


@pytest.mark.parametrize("layout", ["read-only", "F", "float32"])
def test_optimizer_state_it_cannot_write_is_trained_as_a_copy(monkeypatch, layout):
    """An Adam state handed to ``train.train`` that the fast path cannot update in place
    (read-only, Fortran order, another dtype) is trained as a copy: both paths give the
    same numbers, the moments handed back included, and read-only arrays stay as they
    were."""
    X, T = problem()
    net = xpmlp.MLP([3, 6, 2], seed=0, dtype="float64")
    rng = np.random.default_rng(1)

    def given():
        arrays = [[0.1 * rng.random(W.shape) for W in net.weights] for _ in range(2)]
        for group in arrays:
            for i, A in enumerate(group):
                A = {"F": np.asfortranarray(A), "float32": A.astype(np.float32)}.get(layout, A)
                A.flags.writeable = layout != "read-only"
                group[i] = A
        return optim.AdamState(2, *arrays)

    runs, moments = [], []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        rng = np.random.default_rng(1)
        state = train.LoopState()
        state.opt_state = start = given()
        before = [np.array(A) for g in start[1:] for A in g]
        out, state = train.train(
            [np.array(W) for W in net.weights], X, T, activation=net.activation,
            output=net.output, optimizer=optim.adam(), state=state,
            config=train.Config(epochs=2, batch_size=5, learning_rate=0.01),
            rng=np.random.default_rng(0), xp=net.xp,
        )  # fmt: skip
        runs.append((state.history["loss"], [np.asarray(W) for W in out]))
        moments.append([np.asarray(A, np.float64) for g in state.opt_state[1:] for A in g])
        if layout == "read-only":
            for A, A0 in zip([A for g in start[1:] for A in g], before):
                np.testing.assert_array_equal(A, A0)
        assert state.opt_state.t == 2 + 2 * 5  # 23 samples in batches of 5, two epochs
    assert_same(runs, rtol=1e-6 if layout == "float32" else RTOL)
    for A, A_ref in zip(*moments[::-1]):
        # float32 m, v: the pure path keeps them float32, the fast path trains float64 copies
        np.testing.assert_allclose(A, A_ref, rtol=1e-5 if layout == "float32" else RTOL)


def _state_groups(opt_state):
    if isinstance(opt_state, optim.AdamState):
        return [opt_state.m, opt_state.v]
    return [] if opt_state.velocities is None else [opt_state.velocities]


def _copy_state(opt_state):
    if isinstance(opt_state, optim.AdamState):
        return optim.AdamState(opt_state.t, *([np.array(A) for A in g] for g in opt_state[1:]))
    V = opt_state.velocities
    return optim.SGDState(None if V is None else [np.array(A) for A in V])


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_update_inside_the_gemm_matches_pure_path(monkeypatch, optimizer):
    """Plain SGD's W <- W - eta G and momentum's V <- mu V - eta G inside the gradient GEMM
    (beta = 1 or mu); Nesterov, which needs G itself, keeps its buffer."""
    if _fast._Gemm.find(np.float64) is None:
        pytest.skip("NumPy's BLAS exposes no CBLAS symbol here; the ufunc update runs instead")
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)  # every layer through the BLAS update
    plans = []
    real = _fast.plan
    monkeypatch.setattr(_fast, "plan", lambda *a, **k: plans.append(real(*a, **k)) or plans[-1])
    for pregather in (2**20, 0):
        monkeypatch.setattr(_fast, "PREGATHER_BYTES", pregather)
        runs = fit_both(
            monkeypatch, [3, 7, 5, 2], epochs=5, batch_size=6, learning_rate=0.05,
            optimizer=OPTIMIZERS[optimizer](),
        )  # fmt: skip
        assert_same(runs)
        assert plans[-1].fused == [optimizer != "nesterov"] * 3


@pytest.mark.parametrize("sizes", [[3, 6, 2], [3, 2], [3, 6, 4, 1]])
@pytest.mark.parametrize("blas", ["ufuncs", "fused", "none"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_batch_by_batch_gather_matches_pure_path(monkeypatch, sizes, blas, optimizer):
    """Large data: each batch gathered beside the ones (shuffled, with the kernel) or
    alone, layer 0's bias then added apart from its GEMM, with the SGD update in ufuncs,
    inside the GEMM, or without NumPy's CBLAS at all."""
    monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
    if blas == "fused":
        monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)
    if blas == "none":
        monkeypatch.setattr(_fast._Gemm, "find", classmethod(lambda cls, dtype: None))
    for shuffle in (True, False):
        for activation in ("tanh", "relu", "identity"):
            runs = fit_both(
                monkeypatch, sizes, activation, epochs=3, batch_size=5, shuffle=shuffle,
                optimizer=optimizer, learning_rate=0.05,
            )  # fmt: skip
            assert_same(runs)


@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_by_batch_takes_any_memory_order(monkeypatch, shuffle):
    """In order, C-contiguous rows are used in place; other layouts are copied first."""
    monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
    X, T = problem(D=4)
    runs = []
    for enabled, order in ((False, "C"), (True, "C"), (True, "F")):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        net = xpmlp.MLP([4, 5, 2], dtype="float64", seed=3)
        Xo, To = np.asarray(X, order=order), np.asarray(T, order=order)
        hist = net.fit(Xo, To, epochs=3, batch_size=6, shuffle=shuffle, learning_rate=0.05)
        runs.append((hist["loss"], [np.asarray(W) for W in net.weights]))
    assert_same([runs[0], runs[1]])
    assert_same([runs[0], runs[2]])
    np.testing.assert_array_equal(X, problem(D=4)[0])  # the caller's data untouched


def test_batch_buffer_keeps_the_ones_where_one_copy_puts_the_rows_beside_them(
    kernels, monkeypatch
):
    monkeypatch.setattr(_fast, "ENABLED", True)
    monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
    X, T = problem()
    net = xpmlp.MLP([3, 4, 2])
    # shuffled: [1 | X_b] where the kernel copies each batch beside the ones in one pass
    # (layer 0 one GEMM, its bias inside); NumPy's take would copy twice: X_b alone
    p = _plan(net, X, T)
    assert p.ones_x == (kernels != "ufuncs")
    assert p.Xg.shape == ((4, 4) if p.ones_x else (4, 3))
    assert not p.ones_x or np.all(p.Xg[:, 0] == 1)
    p = _plan(net, X, T, shuffle=False)  # in order: X's own rows, no copy
    assert not p.ones_x and p.Xg.shape == (4, 3)
    monkeypatch.setattr(_fast, "PREGATHER_BYTES", 2**20)
    for shuffle in (True, False):
        p = _plan(net, X, T, shuffle=shuffle)
        assert p.Xg.shape == (X.shape[0], 4) and np.all(p.Xg[:, 0] == 1)  # [1 | X], per epoch


@pytest.mark.parametrize("pregather", [True, False])
def test_float32_matches_pure_path(monkeypatch, pregather):
    if not pregather:
        monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
        monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)  # sgemm for every update
    runs = fit_both(monkeypatch, [3, 8, 2], dtype="float32", epochs=3, batch_size=4)
    assert_same(runs, rtol=2e-5, atol=1e-6)


def test_weights_stay_numpy_float_and_update_in_place(monkeypatch):
    monkeypatch.setattr(_fast, "ENABLED", True)
    X, T = problem()
    net = xpmlp.MLP([3, 4, 2], seed=0, dtype="float64")
    weights = [np.array(W) for W in net.weights]
    cfg = train.Config(epochs=2, batch_size=5, learning_rate=0.1)
    out, _ = train.train(
        weights,
        X,
        T,
        activation=net.activation,
        output=net.output,
        optimizer=optim.sgd(),
        config=cfg,
        state=train.LoopState(),
        rng=np.random.default_rng(0),
        xp=net.xp,
    )
    assert all(W is W0 for W, W0 in zip(out, weights))  # the same arrays, updated in place
    assert all(W.dtype == np.float64 for W in out)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("pregather", [True, False])
def test_weights_set_by_a_callback_are_trained_on(monkeypatch, optimizer, pregather):
    """``model.weights = ...`` in a callback: both paths train the new arrays from the next
    epoch (the fast path rebinds its GEMMs and views to them)."""
    if not pregather:
        monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)

    def clip(epoch, loss, score, model):
        model.weights = [np.clip(W, -0.2, 0.2) for W in model.weights]

    runs = fit_both(
        monkeypatch, [3, 6, 2], epochs=4, batch_size=5, learning_rate=0.1,
        optimizer=optimizer, callbacks=[clip],
    )  # fmt: skip
    assert_same(runs)
    (loss_pure, W_pure), _ = runs
    assert max(float(np.abs(W).max()) for W in W_pure) <= 0.2  # the last epoch's clip kept
    unclipped = fit_both(
        monkeypatch, [3, 6, 2], epochs=4, batch_size=5, learning_rate=0.1, optimizer=optimizer
    )
    assert not np.allclose(unclipped[0][0][1:], loss_pure[1:])  # the clip changed training


@pytest.mark.parametrize("replacement", ["C", "F", "read-only", "float32"])
def test_train_on_epoch_may_replace_entries_of_the_list(monkeypatch, replacement):
    """``train.train``'s ``on_epoch`` puts arrays into its list: each path trains those,
    a copy where the fast path cannot update one in place."""
    X, T = problem()
    net = xpmlp.MLP([3, 6, 2], seed=0, dtype="float64")

    def replace(epoch, loss, score, weights):
        W = np.zeros_like(weights[0]) + 0.01 * epoch
        W = {"F": np.asfortranarray(W), "float32": W.astype(np.float32)}.get(replacement, W)
        W.flags.writeable = replacement != "read-only"
        weights[0] = W

    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)
        out, state = train.train(
            [np.array(W) for W in net.weights], X, T, activation=net.activation,
            output=net.output, optimizer=optim.sgd(), state=train.LoopState(),
            config=train.Config(epochs=3, batch_size=5, learning_rate=0.1),
            rng=np.random.default_rng(0), on_epoch=replace, xp=net.xp,
        )  # fmt: skip
        runs.append((state.history["loss"], [np.asarray(W, dtype=np.float64) for W in out]))
    assert_same(runs, rtol=1e-6 if replacement == "float32" else RTOL)


def test_weights_are_a_tuple_set_as_a_whole():
    net = xpmlp.MLP([3, 4, 2], seed=0)
    assert isinstance(net.weights, tuple)
    with pytest.raises(TypeError):
        net.weights[0] = np.full((4, 4), np.nan)  # only the checked setter replaces weights


def _plan(net, X, T, sample_weight=None, **kw):
    cfg = train.Config(**{"batch_size": 4, **kw})
    return _fast.plan(
        net.weights,
        net._array(X),
        net._array(T),
        sample_weight=sample_weight,
        activation=net.activation,
        output=net.output,
        optimizer=optim.sgd(),
        opt_state=optim.SGDState(None),
        config=cfg,
        xp=net.xp,
    )


def test_plan_covers_numpy_and_leaves_the_rest_to_the_pure_path(monkeypatch):
    monkeypatch.setattr(_fast, "ENABLED", True)
    X, T = problem()
    plan = _plan(xpmlp.MLP([3, 4, 2], backend="numpy"), X, T)
    assert plan is not None and [b.size for b in plan.scratch] == [0, 0]  # plain SGD: none
    assert _plan(xpmlp.MLP([3, 4, 2], backend="array_api_strict"), X, T) is None
    assert _plan(xpmlp.MLP([3, 4, 2], "softplus"), X, T) is None  # no in-place h' here
    custom = xpmlp.MLP([3, 4, 2], (lambda a: a * a, lambda a: 2 * a))
    assert _plan(custom, X, T) is None
    assert _plan(xpmlp.MLP([3, 4, 2]), X, T, alpha=1e-3) is not None  # the L2 term too
    assert _plan(xpmlp.MLP([3, 4, 2]), X, T, clip_norm=1.0) is None
    monkeypatch.setattr(_fast, "ENABLED", False)
    assert _plan(xpmlp.MLP([3, 4, 2]), X, T) is None


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("pregather", [True, False])
@pytest.mark.parametrize("by_size", [False, True])
def test_sample_weights_match_pure_path(monkeypatch, optimizer, alpha, pregather, by_size):
    """Sample weights on the fast path: w_n = s_n / S per batch in the output error and the
    loss, alpha / S in the L2 term, a batch of zero weights (S = 0) that moves nothing but
    Adam's moments, and the epoch loss by total weight or by batch size."""
    if not pregather:
        monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)
    monkeypatch.setattr(_fast, "UPDATE_BLOCK", 8)
    X, T = problem(N=23)
    sw = np.linspace(0.5, 2.0, X.shape[0])
    sw[5:10] = 0.0  # the second batch of 5 in order weighs nothing
    net = xpmlp.MLP([3, 6, 4, 2], seed=1, dtype="float64")
    runs, plans = [], []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        for shuffle in (False, True):
            out, state = train.train(
                [np.array(W) for W in net.weights], X, T, activation=net.activation,
                output=net.output, optimizer=OPTIMIZERS[optimizer](), state=train.LoopState(),
                config=train.Config(
                    epochs=3, batch_size=5, learning_rate=0.05, alpha=alpha, shuffle=shuffle,
                    loss_by_batch_size=by_size,
                ),
                rng=np.random.default_rng(0), sample_weight=sw, xp=net.xp,
            )  # fmt: skip
            runs.append((state.history["loss"], [np.asarray(W) for W in out]))
        plans.append(_plan(net, X, T, sample_weight=sw))
    for k in (0, 1):  # in order, shuffled
        assert_same([runs[k], runs[k + 2]])
    assert plans[1] is not None
    unweighted = fit_both(monkeypatch, [3, 6, 4, 2], epochs=3, batch_size=5, learning_rate=0.05)
    assert not np.allclose(unweighted[1][0], runs[2][0])  # the weights changed the losses


def test_sample_weights_of_another_dtype_take_the_pure_path(monkeypatch):
    monkeypatch.setattr(_fast, "ENABLED", True)
    X, T = problem()
    net = xpmlp.MLP([3, 4, 2], dtype="float64")
    assert _plan(net, X, T, sample_weight=np.ones(X.shape[0])) is not None
    assert _plan(net, X, T, sample_weight=np.ones(X.shape[0], np.float32)) is None
    assert _plan(net, X, T, sample_weight=np.ones((X.shape[0], 1))) is None


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("pregather", [True, False])
def test_a_plan_is_freed_when_training_ends(monkeypatch, optimizer, pregather):
    """No reference cycle keeps a plan, its buffers as large as the weights included,
    alive after ``fit`` until the cyclic garbage collector happens to run."""
    monkeypatch.setattr(_fast, "ENABLED", True)
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)  # the GEMM calls on the BLAS too
    if not pregather:
        monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
    refs, real = [], _fast.plan

    def spy(*args, **kw):
        p = real(*args, **kw)
        refs.append(weakref.ref(p))
        return p

    monkeypatch.setattr(_fast, "plan", spy)
    X, T = problem()
    net = xpmlp.MLP([3, 6, 2], seed=0)
    gc.collect()
    gc.disable()
    try:
        net.fit(X, T, epochs=2, batch_size=5, optimizer=OPTIMIZERS[optimizer]())
        assert len(refs) == 1 and refs[0]() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_call_takes_row_major_and_transposed_views(dtype):
    """``C <- alpha A @ B + beta C`` through NumPy's own CBLAS, on the views the plan uses."""
    fn = _fast._Gemm.find(dtype)
    if fn is None:
        pytest.skip("NumPy's BLAS exposes no CBLAS symbol here")
    rng = np.random.default_rng(0)
    W = rng.normal(size=(5, 8)).astype(dtype)  # [b | W[:, 1:]]
    d = rng.normal(size=(6, 5)).astype(dtype)
    X = rng.normal(size=(6, 7)).astype(dtype)
    ones = np.ones((6, 1), dtype=dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    cases = [
        (d.T, X, W[:, 1:]),  # transposed A, strided C (the update of W[:, 1:])
        (d.T, ones, W[:, :1]),  # a column: the bias gradient
        (X, W[:, 1:].T, np.zeros((6, 5), dtype=dtype)),  # transposed, strided B (forward)
        (d[:1].T, X[:1], W[:, 1:]),  # a batch of one
    ]
    for A, B, C in cases:
        want = -0.5 * (A @ B) + C
        _fast._GemmCall(fn, A, B, C, 1.0)(-0.5)
        np.testing.assert_allclose(C, want, rtol=rtol, atol=rtol)
    X2 = rng.normal(size=(6, 7)).astype(dtype)
    out = np.zeros((6, 5), dtype=dtype)
    call = _fast._GemmCall(fn, X, W[:, 1:].T, out, 0.0)
    call(1.0, a=X2)  # this step's batch in place of the template
    np.testing.assert_allclose(out, X2 @ W[:, 1:].T, rtol=rtol, atol=rtol)
    with pytest.raises(ValueError, match="no GEMM for shapes"):
        _fast._GemmCall(fn, X, W, out, 0.0)  # 7 columns against 5 rows
    with pytest.raises(ValueError, match="no GEMM for shapes"):
        _fast._GemmCall(fn, X, W[:, 1:].T, np.zeros((5, 6), dtype=dtype).T, 0.0)  # C row-major


def _train(net, weights, X, T, optimizer, state, epochs=2, on_epoch=None):
    return train.train(
        weights, X, T, activation=net.activation, output=net.output, optimizer=optimizer,
        state=state, config=train.Config(epochs=epochs, batch_size=5, learning_rate=0.01),
        rng=np.random.default_rng(0), on_epoch=on_epoch, xp=net.xp,
    )  # fmt: skip


def _unaligned(W):
    U = np.frombuffer(bytearray(W.nbytes + 1), dtype=W.dtype, offset=1).reshape(W.shape)
    U[...] = W
    assert not U.flags.aligned and U.flags.writeable and U.flags.c_contiguous
    return U


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_unaligned_replacement_weights_are_trained_as_a_copy(monkeypatch, optimizer):
    """A replacement the BLAS cannot take (unaligned) is trained as a copy."""
    X, T = problem()
    net = xpmlp.MLP([3, 6, 2], seed=0, dtype="float64")
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)  # W (or V) updated inside the GEMM

    def replace(epoch, loss, score, weights):
        weights[0] = _unaligned(np.zeros_like(weights[0]) + 0.01 * epoch)

    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        out, state = _train(
            net, [np.array(W) for W in net.weights], X, T, OPTIMIZERS[optimizer](),
            train.LoopState(), epochs=3, on_epoch=replace,
        )  # fmt: skip
        runs.append((state.history["loss"], [np.asarray(W) for W in out]))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=RTOL)
    for W, W_ref in zip(runs[1][1], runs[0][1]):
        np.testing.assert_allclose(W, W_ref, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_a_plan_binds_the_optimizer_state_once(monkeypatch, optimizer):
    """A plan binds its arrays when it is made and when the state first arrives, not again
    each epoch (its programs would be rebuilt every epoch)."""
    monkeypatch.setattr(_fast, "ENABLED", True)
    binds, real = [], _fast.Plan._bind
    monkeypatch.setattr(
        _fast.Plan, "_bind", lambda self, w, s: binds.append(len(s)) or real(self, w, s)
    )
    X, T = problem()
    net = xpmlp.MLP([3, 6, 2], seed=0, dtype="float64")
    net.fit(X, T, epochs=4, batch_size=5, optimizer=OPTIMIZERS[optimizer]())
    assert binds == [0, 1 if optimizer == "momentum" else 2]  # at creation; first epoch


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
@pytest.mark.parametrize("fuse", [1, 10**9])  # in the GEMM, or in the ufunc step
def test_every_update_follows_the_schedule(monkeypatch, optimizer, schedule, fuse):
    """Every update, in the GEMM or in ufuncs, reads the epoch's -eta: schedules change it
    between epochs."""
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", fuse)
    X, T = problem()
    kw = dict(epochs=6, batch_size=5, learning_rate=0.3, schedule=schedule)
    if schedule == "adaptive":
        kw.update(tol=1e-2, n_iter_no_change=1)
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        net = xpmlp.MLP([3, 7, 5, 2], dtype="float64", seed=5)
        hist = net.fit(X, T, optimizer=OPTIMIZERS[optimizer](), **kw)
        runs.append((hist["loss"], [np.asarray(W) for W in net.weights], net.state.learning_rate))
    assert runs[1][2] == runs[0][2] < 0.3  # the rate did change
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=RTOL)
    for W, W_ref in zip(runs[1][1], runs[0][1]):
        np.testing.assert_allclose(W, W_ref, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize(
    "case", ["momentum, no velocities", "no momentum, velocities", "edited", "renamed"]
)
def test_optimizers_off_their_usual_form_train_as_on_the_pure_path(monkeypatch, case):
    """A state whose form is not the optimizer's own (the pure update follows the state),
    an ``Optimizer`` whose ``hyperparams`` were edited or that is renamed with another's
    update: the fast path trains what the update computes, or leaves it to the pure path."""
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)
    X, T = problem()
    net = xpmlp.MLP([3, 6, 2], seed=0, dtype="float64")

    def make():
        if case == "momentum, no velocities":
            return optim.sgd(momentum=0.9), optim.SGDState(None)
        if case == "no momentum, velocities":
            return optim.sgd(), optim.SGDState([np.zeros_like(W) for W in net.weights])
        if case == "edited":
            opt = optim.adam()
            opt.hyperparams["beta_1"] = 0.5  # the update keeps its own 0.9
            return opt, None
        return optim.Optimizer("mine", optim.sgd(0.5).init, optim.sgd(0.5).update, {}), None

    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        opt, opt_state = make()
        state = train.LoopState()
        state.opt_state = opt_state
        out, state = _train(net, [np.array(W) for W in net.weights], X, T, opt, state)
        V = getattr(state.opt_state, "velocities", None) or []
        runs.append((state.history["loss"], [np.asarray(W) for W in (*out, *V)]))
    assert_same(runs)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_adds_the_l2_penalty_of_the_weights_it_starts_from(kernels, optimizer, dtype):
    """The epoch's L2 part: ``n_b c_b penalty_b`` added to what the epoch has summed, the
    penalty of the weights before the step (the kernel sums it in 8 lanes and a tail as it
    passes over W: rows of 8, 20 and 1 weights beside the bias)."""
    from xpmlp import network

    rng = np.random.default_rng(6)
    sizes, n, alpha = [8, 20, 1, 3], 5, 0.7  # W: (20, 9), (1, 21), (3, 2)
    X, T = problem(D=sizes[0], K=sizes[-1])
    W0 = [rng.normal(size=(m, k + 1)).astype(dtype) for k, m in zip(sizes, sizes[1:])]
    opt = OPTIMIZERS[optimizer]()
    net = xpmlp.MLP(sizes, dtype=np.dtype(dtype).name)
    p = _fast.plan(
        [np.array(W) for W in W0], X.astype(dtype), T.astype(dtype), sample_weight=None,
        activation=net.activation, output=net.output, optimizer=opt,
        opt_state=opt.init(W0, xp=np), config=train.Config(batch_size=n, alpha=alpha),
        xp=net.xp,
    )  # fmt: skip
    p._bind(p.W, _state_groups(opt.init(p.W, xp=np)))
    p.lr, p.neg_lr[...] = 0.03, -0.03
    p.penalty[0] = 0.25  # the epoch's sum so far
    p._begin_step(0, n, None)
    for G in p.G:
        G[...] = rng.normal(size=G.shape)
    for l in range(len(W0)):
        for f, args in p._update_ops(l, n):
            f(*args)
    assert not np.array_equal(p.W[0], W0[0])  # the step moved W; the penalty is W0's
    W64 = [W.astype(np.float64) for W in W0]
    expected = 0.25 + n * (alpha / n) * float(network.l2_penalty(W64, xp=np))
    # float32 squares summed in double (exact products), by the kernel or as the kernel does
    np.testing.assert_allclose(p.penalty[0], expected, rtol=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_loss_with_l2_is_the_kernels_bit_for_bit(kernels, monkeypatch, optimizer, dtype):
    """The ufunc passes sum the L2 penalty of the loss as the kernel does: the history is
    the same, bit for bit (vecdot in the array's type had differed in the last bits)."""
    if kernels == "ufuncs":
        pytest.skip("compares the kernels with the ufunc passes")
    X, T = problem(N=40, D=30, K=3)
    kw = dict(epochs=3, batch_size=8, alpha=0.5, optimizer=optimizer, learning_rate=0.01)
    runs = []
    for k in (_fast.KERNELS, None):
        monkeypatch.setattr(_fast, "KERNELS", k)
        net = xpmlp.MLP([30, 21, 3], dtype=dtype, seed=0)
        runs.append((net.fit(X, T, **kw)["loss"], [W.tobytes() for W in net.weights]))
    assert runs[0] == runs[1]


@pytest.mark.parametrize("enabled", [False, True])
def test_an_optimizer_state_of_another_shape_is_refused(monkeypatch, enabled):
    """A given Adam state shaped unlike the weights is an error on both paths; the kernel,
    which trusts W's shape for every array it passes over, must never see it."""
    monkeypatch.setattr(_fast, "ENABLED", enabled)
    X, T = problem()
    net = xpmlp.MLP([3, 4, 2], seed=0, dtype="float64")
    m, v = ([np.zeros(W.shape) for W in net.weights] for _ in range(2))
    m[1], v[1] = np.zeros((1, 5)), np.zeros((1, 5))  # W[1] is (2, 5)
    state = train.LoopState()
    state.opt_state = optim.AdamState(0, m, v)
    with pytest.raises(ValueError):
        train.train(
            [np.array(W) for W in net.weights], X, T, activation=net.activation,
            output=net.output, optimizer=optim.adam(), state=state,
            config=train.Config(epochs=1, batch_size=5), rng=np.random.default_rng(0), xp=net.xp,
        )  # fmt: skip


def test_kernel_ops_refuse_arrays_they_cannot_trust(kernels):
    """The kernels take raw addresses: another shape, dtype or layout stops in Python."""
    if kernels == "ufuncs":
        pytest.skip("checks the kernel's guards")
    X, T = problem()
    p = _plan(xpmlp.MLP([3, 4, 2], dtype="float64"), X, T, alpha=0.1)  # W[1]: (2, 5)
    assert p._kernel_step(1)[0] is _fast.KERNELS
    G = p.G[1]
    for bad in (np.empty((1, 5)), np.empty((2, 5), np.float32), np.empty((2, 5), order="F")):
        p.G[1] = bad
        with pytest.raises(ValueError, match="no kernel step"):
            p._kernel_step(1)
    p.G[1] = G
    Z = np.zeros((5, 6))
    for P in (np.zeros(29), np.zeros((5, 12))[:, ::2]):
        with pytest.raises(ValueError, match="no kernel delta"):
            p._delta_ops(Z.reshape(-1) if P.ndim == 1 else Z, P)
    with pytest.raises(ValueError, match="no kernel delta"):
        p._delta_ops(np.zeros((5, 12))[:, ::2], Z)


def test_floating_point_errors_of_the_kernels_are_reported_as_numpys(kernels):
    """Adam's g * g overflows in the step (the kernel's, or the ufunc's): under
    ``np.errstate(all="raise")`` the fit fails, under "warn" it warns once per step, on
    either path."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(8, 3)) * 1e10).astype(np.float32)
    T = (rng.normal(size=(8, 1)) * 1e9).astype(np.float32)
    fit = dict(epochs=3, learning_rate=1e-3, batch_size=None, optimizer="adam", shuffle=False)
    net = xpmlp.MLP([3, 1], dtype="float32", seed=0)
    with np.errstate(all="raise"), pytest.raises(FloatingPointError, match="overflow"):
        net.fit(X, T, **fit)
    with np.errstate(all="warn"), pytest.warns(RuntimeWarning, match="overflow") as record:
        net.fit(X, T, **fit)
    assert len(record) == 3
