"""The fast path on torch CPU tensors (``_fast.ViewsPlan``, ``_fast.TorchPlan``) gives the pure
path's numbers."""

import numpy as np
import pytest
from test_fastpath import OPTIMIZERS, RTOL, problem  # the NumPy fast path's cases

import xpmlp
from xpmlp import _fast, backend, optim, train

torch = pytest.importorskip("torch")

ATOL = 1e-15  # for weights near 0, where the paths' additions cancel (torch's products)


@pytest.fixture(autouse=True, params=["torch-ops", "numpy-ops", "numpy-blas"])
def route(request, monkeypatch):
    """Every test thrice: where torch's BLAS wins, every product, h and gather on torch,
    and every one on NumPy (that plan's choice for small arrays); and the plan where
    NumPy's BLAS wins, a NumPy plan throughout."""
    size = 10**12 if request.param == "numpy-ops" else 0  # numpy-blas: for any size
    monkeypatch.setattr(_fast, "TORCH_GEMM_SIZE", size)
    monkeypatch.setattr(_fast, "TORCH_PASS_SIZE", size)
    monkeypatch.setattr(backend, "TORCH_BLAS", request.param != "numpy-blas")
    return request.param


PLANS = {"torch-ops": _fast.TorchPlan, "numpy-ops": _fast.TorchPlan, "numpy-blas": _fast.ViewsPlan}


def spy(monkeypatch):
    """The plans :func:`_fast.plan` returns, in order."""
    plans, real = [], _fast.plan
    monkeypatch.setattr(_fast, "plan", lambda *a, **k: plans.append(real(*a, **k)) or plans[-1])
    return plans


def train_both(monkeypatch, sizes, *, sample_weight=None, epochs=3, state=None, **config):
    """``train.train`` of the same torch weights on the pure path and on the fast path."""
    X, T = problem(D=sizes[0], K=sizes[-1])
    activation = config.pop("activation", "tanh")
    net = xpmlp.MLP(sizes, activation, backend="torch", dtype="float64", seed=1)
    X, T = net._array(X), net._array(T)
    sw = None if sample_weight is None else torch.as_tensor(sample_weight)
    optimizer = OPTIMIZERS[config.pop("optimizer", "sgd")]()
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        W0 = [W.clone() for W in net.weights]
        W, st = train.train(
            W0, X, T, activation=net.activation, output=net.output, optimizer=optimizer,
            config=train.Config(epochs=epochs, **config), state=train.LoopState(),
            rng=np.random.default_rng(0), sample_weight=sw, xp=net.xp,
        )  # fmt: skip
        runs.append((st.history["loss"], W, W0, st))
    return runs


def assert_same(runs):
    (loss_pure, W_pure, *_), (loss_fast, W_fast, *_) = runs
    np.testing.assert_allclose(loss_fast, loss_pure, rtol=RTOL)
    for W, W_ref in zip(W_fast, W_pure):
        np.testing.assert_allclose(W.numpy(), W_ref.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("activation", ["tanh", "logistic", "relu", "identity"])
@pytest.mark.parametrize("batch_size", [1, 5, None])
@pytest.mark.parametrize("shuffle", [True, False])
def test_sgd_on_torch_matches_pure_path(monkeypatch, route, activation, batch_size, shuffle):
    plans = spy(monkeypatch)
    runs = train_both(
        monkeypatch, [3, 6, 4, 2], activation=activation, batch_size=batch_size,
        learning_rate=0.05, shuffle=shuffle,
    )  # fmt: skip
    assert_same(runs)
    assert plans[0] is None and type(plans[1]) is PLANS[route]
    (*_, W_fast, W0, _) = runs[1]
    # the caller's tensors, trained in place
    assert all(W is W_in for W, W_in in zip(W_fast, W0))


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("pregather", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_every_optimizer_and_l2_on_torch_match_pure_path(monkeypatch, optimizer, pregather, alpha):
    if not pregather:
        monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)  # batch by batch
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)  # SGD and momentum inside the GEMM
    plans = spy(monkeypatch)
    runs = train_both(
        monkeypatch, [3, 6, 4, 2], optimizer=optimizer, batch_size=5, learning_rate=0.05,
        alpha=alpha, epochs=6,
    )  # fmt: skip
    assert_same(runs)
    # a tensor for each array the plan was handed or made, not one per step
    assert len(plans[1].views._tensors) <= 2 + 3 * 3
    (*_, st_pure), (*_, st_fast) = runs
    pure, fast = (
        [A for g in _fast._state_groups(st.opt_state) for A in g] for st in (st_pure, st_fast)
    )
    assert len(fast) == len(pure) == {"sgd": 0, "adam": 6}.get(optimizer, 3)
    for A, A_ref in zip(fast, pure):  # the optimizer's state comes back as torch tensors
        assert type(A) is torch.Tensor
        np.testing.assert_allclose(A.numpy(), A_ref.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("pregather", [True, False])
def test_sample_weights_on_torch_match_pure_path(monkeypatch, pregather):
    if not pregather:
        monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
    sw = np.linspace(0.5, 2.0, 23)
    sw[5:10] = 0.0
    runs = train_both(
        monkeypatch, [3, 6, 2], sample_weight=sw, optimizer="adam", batch_size=5,
        learning_rate=0.05, alpha=0.1,
    )  # fmt: skip
    assert_same(runs)


def test_fit_after_fit_and_a_callback_on_torch_match_pure_path(monkeypatch):
    """Training carried on from call to call, and weights a callback replaces with tensors the
    plan cannot write in place (a transposed copy: not C-contiguous)."""

    def replace(epoch, loss, score, model):
        model.weights = [torch.clamp(W, -0.3, 0.3).T.contiguous().T for W in model.weights]

    X, T = problem(N=30)
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        net = xpmlp.MLP([3, 5, 2], backend="torch", dtype="float64", seed=3)
        for _ in range(2):
            net.fit(X, T, epochs=1, batch_size=7, optimizer="adam", learning_rate=0.05)
        hist = net.fit(X, T, epochs=3, batch_size=4, learning_rate=0.1, callbacks=[replace])
        runs.append((hist["loss"], [W.clone() for W in net.weights]))
    assert_same(runs)


@pytest.mark.parametrize("shuffle", [True, False])
def test_torch_data_in_any_memory_order(monkeypatch, shuffle):
    """Column-major X: gathered row by row (NumPy's take or torch's index_select), or, in
    order, copied a batch at a time."""
    monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)
    X, T = problem(N=40, D=4)
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        net = xpmlp.MLP([4, 6, 2], backend="torch", dtype="float64", seed=2)
        Xt = torch.as_tensor(X).T.contiguous().T
        hist = net.fit(Xt, torch.as_tensor(T), epochs=3, batch_size=8, shuffle=shuffle)
        runs.append((hist["loss"], [W.clone() for W in net.weights]))
    assert_same(runs)


def test_float32_on_torch_matches_pure_path(monkeypatch):
    X, T = problem(N=64, D=5)
    runs = []
    for enabled in (False, True):
        monkeypatch.setattr(_fast, "ENABLED", enabled)
        net = xpmlp.MLP([5, 16, 2], backend="torch", dtype="float32", seed=4)
        hist = net.fit(X, T, epochs=5, batch_size=16, learning_rate=0.05)
        runs.append((hist["loss"], [W.clone() for W in net.weights]))
    (loss_pure, W_pure), (loss_fast, W_fast) = runs
    np.testing.assert_allclose(loss_fast, loss_pure, rtol=1e-5)
    for W, W_ref in zip(W_fast, W_pure):
        assert W.dtype == torch.float32
        np.testing.assert_allclose(W.numpy(), W_ref.numpy(), rtol=1e-4, atol=1e-6)


def test_plan_takes_plain_cpu_tensors_only(monkeypatch, route):
    monkeypatch.setattr(_fast, "ENABLED", True)
    X, T = torch.ones((6, 3), dtype=torch.float64), torch.ones((6, 2), dtype=torch.float64)
    W = [torch.zeros((4, 4), dtype=torch.float64), torch.zeros((2, 5), dtype=torch.float64)]
    act, out = xpmlp.MLP([3, 4, 2]).activation, xpmlp.MLP([3, 4, 2]).output

    def plan(weights, X=X, T=T, sample_weight=None):
        return _fast.plan(
            weights, X, T, sample_weight=sample_weight, activation=act, output=out,
            optimizer=optim.sgd(), opt_state=optim.SGDState(None),
            config=train.Config(batch_size=2), xp=None,
        )  # fmt: skip

    assert type(plan(W)) is PLANS[route]
    grad = [W[0].clone().requires_grad_(), W[1]]
    assert plan(grad) is None  # autograd's tensors stay with torch
    assert plan([torch.nn.Parameter(W[0]), W[1]]) is None
    assert plan([w.half() for w in W], X.half(), T.half()) is None
    assert plan(W, X.float()) is None  # mixed dtypes
    assert plan(W, X.numpy()) is None  # mixed libraries
    assert plan(W, sample_weight=np.ones(6)) is None
    assert plan(W, sample_weight=torch.ones(6, dtype=torch.float64)) is not None


def test_torch_plan_kernels_keep_to_one_thread(monkeypatch, route):
    """Beside torch's spinning threads the BLAS's threads cost far more than they give:
    a TorchPlan's kernels never run in parts beside torch's products, where a NumPy plan's
    would; with NumPy's products they do."""
    if _fast.KERNELS is None:
        pytest.skip("xpmlp._kernels was not compiled (no C compiler at install)")
    from test_fastpath import _blas_threads

    from xpmlp import _kernels

    monkeypatch.setattr(_fast, "PASS_PART_BYTES", 1)  # any op of two elements or more
    X, T = problem(N=40, D=3, K=2)
    parts = {}
    for name in ("torch", "numpy"):
        net = xpmlp.MLP([3, 40, 2], backend=name, dtype="float64", seed=1)
        p = _fast.plan(
            net.weights, net._array(X), net._array(T), sample_weight=None,
            activation=net.activation, output=net.output, optimizer=optim.sgd(),
            opt_state=optim.SGDState(None), config=train.Config(batch_size=40), xp=net.xp,
        )  # fmt: skip
        Z = p.Z1[0].reshape(-1)
        ((_, args),) = p._delta_ops(Z, p.P[40].reshape(-1))
        with _blas_threads(2):
            parts[name] = _kernels.parts(args[0])
    assert parts == {"torch": 1 if route != "numpy-blas" else 2, "numpy": 2}


def test_plan_on_numpy_blas_makes_no_torch_call(monkeypatch, route):
    """Where NumPy's BLAS wins, no product, h or gather goes to torch, large as they are:
    torch's spinning threads would slow NumPy's BLAS beside them."""
    if route != "numpy-blas":
        pytest.skip("the plan where NumPy's BLAS wins")
    monkeypatch.setattr(_fast, "PREGATHER_BYTES", 0)  # batch by batch, shuffled: gathers
    monkeypatch.setattr(_fast, "GEMM_UPDATE_SIZE", 1)
    calls = []
    for name in ("tanh", "index_select"):
        real = getattr(torch, name)
        spy = lambda *a, real=real, **k: calls.append(1) or real(*a, **k)  # noqa: E731
        monkeypatch.setattr(torch, name, spy)
    monkeypatch.setattr(_fast._TorchGemm, "__call__", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(_fast, "ENABLED", True)
    X, T = problem(N=40, D=4)
    net = xpmlp.MLP([4, 6, 2], backend="torch", dtype="float64", seed=2)
    W0 = [W.clone() for W in net.weights]
    net.fit(X, T, epochs=2, batch_size=8)
    assert calls == []
    assert all(not torch.equal(W, W_0) for W, W_0 in zip(net.weights, W0))  # it trained


@pytest.mark.parametrize(
    ("mkl", "cpuinfo", "wins"),
    [
        (True, "vendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)\n", True),
        (True, "vendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n", False),
        (False, "vendor_id\t: GenuineIntel\n", False),
        (True, None, False),  # no /proc/cpuinfo, no vendor named
        (True, "Intel64 Family 6 Model 158 Stepping 10, GenuineIntel", True),  # Windows
    ],
)
def test_torch_blas_wins_for_mkl_on_intel_only(monkeypatch, mkl, cpuinfo, wins):
    import io

    windows = cpuinfo is not None and "vendor_id" not in cpuinfo

    def fake_open(path, *args, **kwargs):
        assert path == "/proc/cpuinfo"
        if cpuinfo is None or windows:
            raise FileNotFoundError(path)
        return io.StringIO(cpuinfo)

    monkeypatch.setattr(backend, "open", fake_open, raising=False)
    monkeypatch.setattr(backend.platform, "processor", lambda: cpuinfo if windows else "")
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: mkl)
    monkeypatch.setattr(backend, "TORCH_BLAS", None)
    backend._cpu_vendors.cache_clear()
    try:
        assert backend.torch_blas_wins(torch) is wins
        assert backend.torch_blas() is wins
    finally:
        backend._cpu_vendors.cache_clear()
