"""One code path on every backend: the same seed gives the same numbers as NumPy float64."""

import os
import subprocess
import sys

import array_api_compat
import numpy as np
import pytest

import xpmlp

from conftest import to_np, tolerance


def problem(seed=0, N=20):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    T = np.stack([np.sin(X[:, 0]) * X[:, 1], np.cos(X[:, 2])], axis=1)
    return X, T


def reference(**kw):
    return xpmlp.MLP([3, 5, 4, 2], "tanh", backend="numpy", dtype="float64", seed=7, **kw)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forward_gradients_and_20_updates_agree_with_numpy_float64(backend, xp, dtype):
    X, T = problem()
    ref = reference()
    net = xpmlp.MLP([3, 5, 4, 2], "tanh", backend=backend, dtype=dtype, seed=7)
    tol = tolerance(dtype)
    for W, W_ref in zip(net.weights, ref.weights):  # same host draw on every backend
        np.testing.assert_allclose(to_np(W), W_ref, **tol)
    Xb, Tb = xp.asarray(X), xp.asarray(T)
    Y = net.predict(Xb)
    assert array_api_compat.array_namespace(Y) is xp  # in the input's namespace
    np.testing.assert_allclose(to_np(Y), ref.predict(X), **tol)
    loss, grads = net.loss_and_gradients(Xb, Tb)
    loss_ref, grads_ref = ref.loss_and_gradients(X, T)
    assert isinstance(loss, float)
    assert loss == pytest.approx(loss_ref, rel=tol["rtol"])
    for G, G_ref in zip(grads, grads_ref):
        assert array_api_compat.array_namespace(G) is xp
        np.testing.assert_allclose(to_np(G), G_ref, **tol)
    fit = dict(epochs=5, batch_size=4, learning_rate=0.05)  # 5 x 20/4 = 20 updates
    hist = net.fit(Xb, Tb, **fit)
    hist_ref = ref.fit(X, T, **fit)
    np.testing.assert_allclose(hist["loss"], hist_ref["loss"], **tol)
    for W, W_ref in zip(net.weights, ref.weights):
        np.testing.assert_allclose(to_np(W), W_ref, **tol)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_output_pair_trains_alike_on_every_backend(backend, xp, optimizer):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 3))
    T = np.eye(3)[rng.integers(0, 3, size=12)]
    kw = dict(epochs=3, batch_size=5, learning_rate=0.01, optimizer=optimizer, alpha=1e-3)
    for output in ["softmax", "logistic"]:
        ref = xpmlp.MLP([3, 4, 3], "relu", output, dtype="float64", seed=1)
        net = xpmlp.MLP([3, 4, 3], "relu", output, backend=backend, dtype="float64", seed=1)
        ref.fit(X, T, **kw)
        net.fit(xp.asarray(X), xp.asarray(T), **kw)
        for W, W_ref in zip(net.weights, ref.weights):
            np.testing.assert_allclose(to_np(W), W_ref, **tolerance("float64"))


def test_arrays_of_another_backend_are_converted_on_entry(backend, xp):
    X, T = problem()
    net = xpmlp.MLP([3, 4, 2], backend=backend, dtype="float64", seed=0)
    Y = net.predict(X)  # NumPy input to any backend
    assert array_api_compat.array_namespace(Y) is xp
    np.testing.assert_allclose(to_np(Y), reference_two_layer().predict(X), rtol=1e-12)


def reference_two_layer():
    return xpmlp.MLP([3, 4, 2], backend="numpy", dtype="float64", seed=0)


def test_backend_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("XPMLP_BACKEND", "array_api_strict")
    assert xpmlp.MLP([2, 1]).backend == "array_api_strict"
    monkeypatch.delenv("XPMLP_BACKEND")
    assert xpmlp.MLP([2, 1]).backend == "numpy"


def test_backend_given_as_a_module():
    import array_api_strict

    assert xpmlp.MLP([2, 1], backend=array_api_strict).backend == "array_api_strict"
    assert xpmlp.MLP([2, 1], backend=np).backend == "numpy"


def test_unknown_backend_names_the_accepted_ones():
    with pytest.raises(ValueError, match=r"backend='tensorflow' is unknown; accepted: numpy"):
        xpmlp.MLP([2, 1], backend="tensorflow")
    with pytest.raises(TypeError, match="backend must be a name"):
        xpmlp.MLP([2, 1], backend=3)


def test_missing_cupy_says_which_extra_to_install():
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    with pytest.raises(xpmlp.BackendError, match=r"pip install xpmlp\[cuda12\]"):
        xpmlp.MLP([2, 1], backend="cupy")


def test_numpy_rejects_a_gpu_device():
    with pytest.raises(ValueError, match="device='cuda:1'"):
        xpmlp.MLP([2, 1], backend="numpy", device="cuda:1")


def test_torch_device_is_honoured():
    pytest.importorskip("torch")
    net = xpmlp.MLP([2, 1], backend="torch", device="cpu")
    assert str(net.weights[0].device) == "cpu"
    with pytest.raises(ValueError, match="not a torch device"):
        xpmlp.MLP([2, 1], backend="torch", device="nonsense:x")


def test_importing_xpmlp_never_imports_cupy():
    code = "import sys, xpmlp; xpmlp.MLP([2, 3, 1]); print('cupy' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "XPMLP_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _array_of(library, dtype, shape=(2, 3)):
    """An array of ones from ``library`` with ``dtype`` ("complex64" or "bool")."""
    mod = pytest.importorskip({"jax": "jax.numpy"}.get(library, library))
    return mod.ones(shape, dtype=getattr(mod, dtype))


@pytest.mark.parametrize("library", ["numpy", "torch", "jax", "array_api_strict"])
def test_complex_arrays_of_every_library_are_rejected_and_bool_accepted(backend, library):
    net = xpmlp.MLP([3, 1], backend=backend, seed=0)
    Z = _array_of(library, "complex64")
    with pytest.raises(TypeError, match="X must hold numbers .* got dtype .*complex64"):
        net.predict(Z)
    with pytest.raises(TypeError, match=r"weights\[0\] must hold numbers .*complex64"):
        net.weights = [_array_of(library, "complex64", (1, 4))]
    B = _array_of(library, "bool")
    np.testing.assert_allclose(to_np(net.predict(B)), to_np(net.predict(np.ones((2, 3)))))


def test_torch_tensors_that_require_grad_stay_out_of_autograd():
    torch = pytest.importorskip("torch")
    net = xpmlp.MLP([2, 3, 1], backend="torch", seed=0)
    X = torch.ones((4, 2), requires_grad=True)
    net.fit(X, torch.ones((4, 1), requires_grad=True), epochs=2, batch_size=2)
    assert not any(W.requires_grad for W in net.weights)
    assert not net.predict(X).requires_grad
    W0 = torch.zeros((3, 3), requires_grad=True)
    net.weights = [W0, torch.zeros((1, 4))]
    assert not net.weights[0].requires_grad and net.weights[0].grad_fn is None
    net.fit(X, torch.ones((4, 1)), epochs=1)
    assert W0.grad is None and not bool(W0.any())  # the caller's tensor is untouched
    np_net = xpmlp.MLP([2, 3, 1], backend="numpy", seed=0)
    assert np_net.predict(X).shape == (4, 1)


def test_a_device_that_cannot_be_used_raises_backend_error_at_construction():
    pytest.importorskip("torch")
    with pytest.raises(xpmlp.BackendError, match="device='cuda:99' cannot be used with .*torch"):
        xpmlp.MLP([2, 1], backend="torch", device="cuda:99")
    with pytest.raises(xpmlp.BackendError, match="device='nowhere' cannot be used"):
        xpmlp.MLP([2, 1], backend="array_api_strict", device="nowhere")
