"""One code path on every backend: the same seed gives the same numbers as NumPy float64."""

import copy
import os
import subprocess
import sys
import textwrap
import warnings

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
    with pytest.raises(xpmlp.BackendError, match=r'pip install "xpmlp\[cuda12\]"'):
        xpmlp.MLP([2, 1], backend="cupy")


def test_numpy_rejects_a_gpu_device():
    with pytest.raises(xpmlp.BackendError, match="device='cuda:1' cannot be used with .*numpy"):
        xpmlp.MLP([2, 1], backend="numpy", device="cuda:1")


def test_torch_device_is_honoured():
    pytest.importorskip("torch")
    net = xpmlp.MLP([2, 1], backend="torch", device="cpu")
    assert str(net.weights[0].device) == "cpu"
    with pytest.raises(xpmlp.BackendError, match="device='nonsense:x' .*accepted: 'cpu', 'cuda'"):
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
    with pytest.raises(xpmlp.BackendError, match=r"present here: cpu(, cuda:\d+)*$"):
        xpmlp.MLP([2, 1], backend="torch", device="cuda:99")
    with pytest.raises(xpmlp.BackendError, match="device='nowhere' cannot be used"):
        xpmlp.MLP([2, 1], backend="array_api_strict", device="nowhere")
    # torch's "meta" device holds no values: no model can live there
    with pytest.raises(xpmlp.BackendError, match="device='meta' cannot be used with .*torch"):
        xpmlp.MLP([2, 1], backend="torch", device="meta")


def test_a_jax_device_needs_a_platform():
    pytest.importorskip("jax")
    for device in ("", ":0"):
        with pytest.raises(xpmlp.BackendError, match=f"device={device!r} cannot be used"):
            xpmlp.MLP([2, 1], backend="jax", device=device)


def test_a_list_of_tensors_that_require_grad_is_refused_naming_x():
    torch = pytest.importorskip("torch")
    X = list(torch.rand(4, 2, requires_grad=True))
    with pytest.raises(ValueError, match="X must be an array, or lists .*requires grad"):
        xpmlp.MLP([2, 3, 1]).predict(X)


@pytest.mark.parametrize("backend", ["numpy", "torch", "array_api_strict"])
def test_torch_tensors_without_dense_values_are_refused_naming_the_argument(backend):
    """Sparse and meta tensors had failed inside torch (NotImplementedError, or no X named);
    a sparse COO X had trained on the torch backend, a CSR one had not."""
    torch = pytest.importorskip("torch")
    net = xpmlp.MLP([3, 2, 1], backend=backend, seed=0)
    X, T = torch.rand(4, 3, dtype=torch.float64), torch.rand(4, 1, dtype=torch.float64)
    before = [to_np(W) for W in net.weights]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Sparse CSR tensor support is in beta"
        csr = X.to_sparse_csr()
    for sparse in (X.to_sparse(), csr):
        with pytest.raises(TypeError, match=r"X is a sparse torch tensor .*\.to_dense\(\)"):
            net.fit(sparse, T, epochs=1)
    with pytest.raises(ValueError, match="sample_weight is on torch's 'meta' device"):
        net.fit(X, T, sample_weight=torch.ones(4, device="meta"), epochs=1)
    with pytest.raises(ValueError, match=r"weights\[0\] is on torch's 'meta' device"):
        net.weights = [torch.empty(2, 4, device="meta"), torch.empty(1, 3, device="meta")]
    for A, B in zip(net.weights, before):
        np.testing.assert_array_equal(to_np(A), B)


@pytest.mark.parametrize("backend", ["numpy", "jax", "array_api_strict", "torch"])
def test_torch_views_with_the_negative_or_conjugate_bit_are_read_by_value(backend):
    """``c.imag`` of a conjugated complex tensor carries torch's negative bit, which NumPy
    refused to view ("Can't call numpy() on Tensor that has negative bit set")."""
    torch = pytest.importorskip("torch")
    pytest.importorskip(backend)
    c = torch.complex(torch.rand(5, 3, dtype=torch.float64), torch.rand(5, 3, dtype=torch.float64))
    X = c.conj().imag
    assert X.is_neg()
    net = xpmlp.MLP([3, 2, 1], backend=backend, dtype="float64", seed=0)
    np.testing.assert_array_equal(to_np(net.predict(X)), to_np(net.predict(-c.imag.numpy())))


def test_cpu_is_a_device_of_every_cpu_backend(backend):
    if backend == "cupy":
        pytest.skip("CuPy arrays live on CUDA devices")
    net = xpmlp.MLP([2, 3, 1], backend=backend, device="cpu", dtype="float64", seed=0)
    ref = xpmlp.MLP([2, 3, 1], dtype="float64", seed=0)
    np.testing.assert_allclose(to_np(net.predict(np.ones((2, 2)))), ref.predict(np.ones((2, 2))))
    if backend == "array_api_strict":
        import array_api_strict

        assert net.device == array_api_strict.Device("CPU_DEVICE")


def test_a_jax_model_turns_on_64_bit_floats_only_for_float64():
    """Run in a fresh process: jax_enable_x64 is process-wide and stays on once set."""
    pytest.importorskip("jax")
    code = textwrap.dedent(
        """
        import io, jax, jax.numpy as jnp, numpy as np, xpmlp
        X = np.linspace(-1, 1, 10).reshape(5, 2)
        xpmlp.MLP([2, 1], backend="jax", dtype="float32").fit(X, X[:, :1], epochs=1)
        xpmlp.MLP([2, 1], backend=jnp, dtype="float32")
        assert not jax.config.jax_enable_x64  # float32 leaves the user's JAX as it was
        buf = io.BytesIO()
        xpmlp.MLP([2, 3, 1], dtype="float64").save(buf)
        for make in [
            lambda: xpmlp.MLP([2, 3, 1], backend=jnp, dtype="float64"),  # a module
            lambda: xpmlp.MLP([2, 3, 1], backend=jax, dtype="float64"),  # the package
            lambda: xpmlp.MLP([2, 3, 1], dtype="float64").to(jnp),
            lambda: xpmlp.load(io.BytesIO(buf.getvalue()), backend=jnp),
        ]:
            jax.config.update("jax_enable_x64", False)
            net = make()
            assert [str(W.dtype) for W in net.weights] == ["float64"] * 2, net.weights
        jax.config.update("jax_enable_x64", False)  # switched off after the model was made
        assert str(net.predict(X).dtype) == "float64"
        jax.config.update("jax_enable_x64", False)
        net.fit(X, X[:, :1], epochs=2)
        assert [str(W.dtype) for W in net.weights] == ["float64"] * 2, net.weights
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XPMLP_BACKEND", "JAX_ENABLE_X64")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert "truncated to dtype float32" not in out.stderr


def test_the_jax_package_is_taken_as_jax_numpy():
    jax = pytest.importorskip("jax")
    assert xpmlp.MLP([2, 1], backend=jax).backend == "jax"


def _field(X):
    """``X`` as the field of a record array whose rows also hold an int32 (np.genfromtxt's):
    strides of no whole number of elements."""
    rec = np.zeros(X.shape[0], dtype=[("x", "f8", X.shape[1:]), ("label", "i4")])
    rec["x"] = X
    return rec["x"]


@pytest.mark.parametrize(
    "layout",
    [
        lambda X: X[::-1],
        lambda X: np.flip(X, 1),
        lambda X: X.astype(">f8"),
        lambda X: X.astype(np.longdouble),
        lambda X: X.astype(">i4"),
        _field,
    ],
    ids=[
        "reversed-rows",
        "flipped-columns",
        "big-endian",
        "longdouble",
        "big-endian-int",
        "record-field",
    ],
)
def test_numpy_layouts_torch_cannot_share_are_copied(layout):
    pytest.importorskip("torch")
    X = np.random.default_rng(0).normal(size=(6, 3)) * 3
    X = layout(X)
    X0 = X.copy()
    net = xpmlp.MLP([3, 4, 1], backend="torch", dtype="float64", seed=0)
    ref = xpmlp.MLP([3, 4, 1], dtype="float64", seed=0)
    expected = ref.predict(np.asarray(X, dtype=np.float64))
    np.testing.assert_allclose(to_np(net.predict(X)), expected, rtol=1e-12)
    net.fit(X, X[:, :1], epochs=1, batch_size=2)
    ref.fit(
        np.asarray(X, dtype=np.float64),
        np.asarray(X[:, :1], dtype=np.float64),
        epochs=1,
        batch_size=2,
    )
    for W, W_ref in zip(net.weights, ref.weights):
        np.testing.assert_allclose(to_np(W), W_ref, rtol=1e-12)
    np.testing.assert_array_equal(X, X0)


def _bfloat16(library):
    mod = pytest.importorskip({"jax": "jax.numpy"}.get(library, library))
    return mod.full((2, 3), 0.5, dtype=mod.bfloat16)


@pytest.mark.parametrize("library", ["torch", "jax"])
def test_bfloat16_arrays_cross_backends_as_float32(backend, library):
    B = _bfloat16(library)
    assert xpmlp.to_numpy(B).dtype == np.float32
    net = xpmlp.MLP([3, 1], backend=backend, seed=0)
    ref = xpmlp.MLP([3, 1], seed=0).predict(np.full((2, 3), 0.5, dtype=np.float32))
    np.testing.assert_allclose(to_np(net.predict(B)), ref, rtol=1e-6)


def test_float8_tensors_reach_numpy_as_float32():
    torch = pytest.importorskip("torch")
    x = torch.full((2, 3), 0.5, dtype=torch.float8_e4m3fn)
    np.testing.assert_array_equal(xpmlp.to_numpy(x), np.full((2, 3), 0.5, dtype=np.float32))


def test_a_float_of_another_width_casts_without_a_warning(backend, xp):
    """finfo(...).max of two libraries compared as NumPy scalars warned of an overflow."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xpmlp.MLP([3, 1], backend=backend, dtype="float64").predict(np.ones((2, 3), np.float32))
        X = xp.asarray(np.ones((2, 3)), dtype=xp.float64)  # JAX: a float64 model came first
        xpmlp.MLP([3, 1], backend="numpy", dtype="float32").predict(X)
        xpmlp.MLP([3, 1], backend=backend, dtype="float32").predict(np.ones((2, 3)))


@pytest.mark.parametrize(("backend", "device"), [("jax", "gpu:99"), ("torch", "cuda:99")])
def test_a_model_pickled_on_a_device_missing_here_unpickles_on_numpy(backend, device):
    pytest.importorskip(backend)
    original = xpmlp.MLP([2, 3, 1], backend=backend, seed=0)
    state = original.__getstate__()
    state["device"] = device  # as written on a machine with that accelerator
    net = xpmlp.MLP.__new__(xpmlp.MLP)
    with pytest.warns(UserWarning, match=rf"pickled on backend='{backend}'.*unpickled on NumPy"):
        net.__setstate__(state)
    assert net.backend == "numpy"
    for W, W0 in zip(net.weights, original.weights):
        np.testing.assert_array_equal(W, to_np(W0).astype(np.float32))


def test_deepcopy_shares_functions_and_namespace_and_copies_the_rest(backend):
    h, dh = (lambda a: a * a), (lambda a: 2 * a)  # a custom pair, which pickling refuses
    X, T = problem()
    net = xpmlp.MLP([3, 4, 2], (h, dh), backend=backend, dtype="float64", seed=0)
    net.fit(X, T, epochs=2, batch_size=5, optimizer="adam")
    twin = copy.deepcopy(net)
    assert twin.activation is net.activation and twin.xp is net.xp and twin.device is net.device
    assert twin.rng is not net.rng and twin.state.history is not net.state.history
    n = len(net.history["loss"])
    hist = twin.fit(X, T, epochs=2, batch_size=5, optimizer="adam")
    assert len(net.history["loss"]) == n  # the original did not move
    again = net.fit(X, T, epochs=2, batch_size=5, optimizer="adam")  # from the same point
    np.testing.assert_array_equal(hist["loss"], again["loss"])
    for W, W0 in zip(twin.weights, net.weights):
        np.testing.assert_array_equal(to_np(W), to_np(W0))


def test_copy_is_shallow_and_keeps_a_custom_activation(backend):
    net = xpmlp.MLP([3, 4, 2], (lambda a: a * a, lambda a: 2 * a), backend=backend, seed=0)
    twin = copy.copy(net)
    assert twin is not net and twin.__dict__ == net.__dict__
    assert twin.activation is net.activation and twin.rng is net.rng


def test_a_shallow_copys_fits_keep_to_its_own_history():
    """The copies shared the history lists, which each fit appends to: either model's
    history gained the other's epochs."""
    X, T = np.full((6, 3), 0.5), np.ones((6, 2))
    a = xpmlp.MLP([3, 4, 2], seed=0)
    a.fit(X, T, epochs=3)
    b = copy.copy(a)
    b.fit(X, T, epochs=2)
    a.fit(X, T, epochs=1)
    assert (a.state.epochs, len(a.history["loss"])) == (4, 4)
    assert (b.state.epochs, len(b.history["loss"])) == (5, 5)
    assert a.history["loss"][:3] == b.history["loss"][:3]


def test_arrays_on_another_device_move_to_the_models():
    """With no device named, arrays of the model's backend on another device were left
    there and failed in the first product; weights so placed were taken."""
    aas = pytest.importorskip("array_api_strict")
    other = aas.Device("device1")
    net = xpmlp.MLP([3, 4, 2], backend="array_api_strict", seed=0)
    home = net.weights[0].device
    assert home != other
    X = np.full((5, 3), 0.5)
    ref = to_np(net.predict(X))
    Y = net.predict(aas.asarray(X, device=other))
    assert Y.device == home
    np.testing.assert_array_equal(to_np(Y), ref)
    net.weights = [aas.asarray(to_np(W), device=other) for W in net.weights]
    assert all(W.device == home for W in net.weights)
    net.fit(aas.asarray(X, device=other), aas.asarray(np.ones((5, 2)), device=other), epochs=1)


def test_host_data_goes_to_the_weights_device_where_none_was_named():
    """NumPy input went to the backend's default (CuPy: the current) device, not to the
    weights', for a model whose weights were made elsewhere (under a CuPy device context):
    predict mixed two devices."""
    aas = pytest.importorskip("array_api_strict")
    other = aas.Device("device1")
    net = xpmlp.MLP([3, 4, 2], backend="array_api_strict", seed=0)
    X, T = np.full((5, 3), 0.5), np.ones((5, 2))
    ref = to_np(net.predict(X))
    net._weights = [aas.asarray(W, copy=True, device=other) for W in net._weights]
    assert net.device is None
    Y = net.predict(X)
    assert Y.device == other
    np.testing.assert_array_equal(to_np(Y), ref)
    net.fit(X, T, epochs=2, validation_fraction=0.4)  # the split's indices go there too
    assert all(W.device == other for W in net.weights)


def test_to_without_a_device_moves_to_the_backends_default():
    """to(backend) on the same backend kept the arrays on their device but recorded none,
    so NumPy inputs went to the default device and predict and fit failed."""
    aas = pytest.importorskip("array_api_strict")
    other, home = aas.Device("device1"), aas.Device("CPU_DEVICE")
    X, T = np.full((5, 3), 0.5), np.ones((5, 2))
    net = xpmlp.MLP([3, 4, 2], backend="array_api_strict", device=other, seed=0)
    net.fit(X, T, epochs=2, optimizer="adam", early_stopping=True, validation_fraction=0.4)
    ref = to_np(net.predict(X))
    assert net.to("array_api_strict") is net and net.device is None
    arrays = [*net.weights, *net.state.opt_state.m, *net.state.opt_state.v]
    assert all(A.device == home for A in arrays + list(net.state.best_weights or []))
    np.testing.assert_array_equal(to_np(net.predict(X)), ref)
    net.fit(X, T, epochs=1, optimizer="adam")


def test_jax_arrays_pinned_to_another_device_move():
    """jnp.asarray(x, device=d) refuses an array committed to another device: to(), predict
    and the weights setter failed between two JAX devices."""
    pytest.importorskip("jax")
    code = textwrap.dedent(
        """
        import numpy as np, jax, xpmlp
        d0, d1 = jax.devices()
        net = xpmlp.MLP([3, 4, 2], backend="jax", device="cpu:0", seed=0)
        ref = np.asarray(net.predict(np.ones((5, 3))))
        net.to("jax", "cpu:1")
        Y = net.predict(jax.device_put(np.ones((5, 3), np.float32), d0))
        net.weights = [jax.device_put(W, d0) for W in net.weights]
        assert np.array_equal(np.asarray(Y), ref)
        print(sorted(str(d) for W in net.weights for d in W.devices()), Y.devices())
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    env.pop("XPMLP_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['cpu:1', 'cpu:1'] {CpuDevice(id=1)}"


@pytest.mark.parametrize("library", ["numpy", "jax.numpy", "array_api_strict", "torch"])
def test_a_dtype_may_be_any_librarys_float_type(library):
    """np.float64 and array_api_strict.float64 were refused ("dtype=<class
    'numpy.float64'> is not supported; accepted: float32, float64")."""
    mod = pytest.importorskip(library)
    for name in ("float32", "float64"):
        net = xpmlp.MLP([3, 2], dtype=getattr(mod, name))
        assert net.dtype == getattr(np, name)
    with pytest.raises(ValueError, match="accepted: float32, float64"):
        xpmlp.MLP([3, 2], dtype=mod.int64)
    with pytest.raises(ValueError, match="dtype=None is not supported"):  # not np.dtype(None)
        xpmlp.MLP([3, 2], dtype=None)


def test_numpy_arrays_of_ml_dtypes_floats_cast_to_float32():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    B = np.full((2, 3), 0.5, dtype=ml_dtypes.bfloat16)  # as np.asarray(a JAX bfloat16 array)
    net = xpmlp.MLP([3, 1], seed=0)
    np.testing.assert_array_equal(net.predict(B), net.predict(np.full((2, 3), 0.5)))


class _Kind:
    def __init__(self, kind):
        self.kind = kind


class _NullableFrame:
    """What pandas' nullable Float64/Int64 frames give NumPy: an object array; ``kind``
    "O" is a column of strings, which ``to_numpy(dtype=float)`` would parse."""

    def __init__(self, values, kind="f"):
        self.values = np.asarray(values, dtype=object)
        self.dtypes = [_Kind(kind)] * self.values.shape[-1]

    def __array__(self, dtype=None, copy=None):
        return self.values

    def to_numpy(self, dtype=None, na_value=None):
        return self.values.astype(dtype)


def test_a_table_of_nullable_numbers_is_read_as_floats():
    X = np.full((2, 3), 0.5)
    net = xpmlp.MLP([3, 1], seed=0)
    np.testing.assert_array_equal(net.predict(_NullableFrame(X)), net.predict(X))
    with pytest.raises(ValueError, match="X contains NaN or inf"):  # a missing value: NA
        net.predict(_NullableFrame([[np.nan, 1, 2]]))
    with pytest.raises(TypeError, match="X must hold numbers"):  # text is not parsed
        net.predict(_NullableFrame([["1.5", "2", "3"]], kind="O"))


def test_weights_moved_from_jax_to_numpy_are_writeable():
    pytest.importorskip("jax")
    net = xpmlp.MLP([3, 4, 2], backend="jax", seed=0)
    net.fit(np.ones((4, 3)), np.ones((4, 2)), epochs=1, optimizer="adam")
    net.to("numpy")
    for A in [*net.weights, *net.state.opt_state.m, *net.state.opt_state.v]:
        assert A.flags.writeable
    net.weights[0][0, 0] = 1.0


@pytest.mark.gpu
def test_a_model_on_the_second_gpu_trains_and_predicts_there():
    # CuPy launches kernels on its current device: fit and predict must make cuda:1 current
    from conftest import _cuda_devices

    if _cuda_devices() < 2:
        pytest.skip("needs two CUDA devices")
    X = np.random.default_rng(0).standard_normal((16, 2))
    T = np.sin(X[:, :1])
    net = xpmlp.MLP([2, 3, 1], backend="cupy", device="cuda:1", dtype="float64", seed=0)
    ref = xpmlp.MLP([2, 3, 1], backend="numpy", dtype="float64", seed=0)
    for m in (net, ref):
        m.fit(X, T, epochs=3, batch_size=4, validation_fraction=0.25)
    Y = net.predict(X)
    assert Y.device.id == 1 and all(W.device.id == 1 for W in net.weights)
    np.testing.assert_allclose(to_np(Y), ref.predict(X), rtol=1e-10)
    import cupy

    with cupy.cuda.Device(0):  # a strided view on cuda:0, moved to cuda:1 by value
        X0 = cupy.asarray(np.asfortranarray(X))[:, ::-1][:, ::-1]
    np.testing.assert_allclose(to_np(net.predict(X0)), ref.predict(X), rtol=1e-10)
    net.weights = [np.asarray(to_np(W)) for W in net.weights]  # assigned weights stay there
    assert all(W.device.id == 1 for W in net.weights)


@pytest.mark.gpu
def test_a_classifier_on_the_second_gpu_gives_its_probabilities_there():
    """predict_proba joined 1 - Y and Y (binary), and predict_log_proba took the log, on the
    current device (cuda:0) with Y on cuda:1: no peer access, or a PerformanceWarning."""
    pytest.importorskip("sklearn")
    from xpmlp.sklearn import MLPClassifier

    from conftest import _cuda_devices

    if _cuda_devices() < 2:
        pytest.skip("needs two CUDA devices")
    import cupy

    X = np.random.default_rng(0).standard_normal((40, 2))
    for y in ((X[:, 0] > 0).astype(int), np.digitize(X[:, 0], [-0.5, 0.5])):
        kw = dict(hidden_layer_sizes=(3,), max_iter=3, random_state=0, dtype="float64")
        gpu = MLPClassifier(backend="cupy", device="cuda:1", **kw).fit(cupy.asarray(X), y)
        cpu = MLPClassifier(backend="numpy", **kw).fit(X, y)
        with cupy.cuda.Device(0):  # another device current, as in a user's program
            P, logP = gpu.predict_proba(cupy.asarray(X)), gpu.predict_log_proba(X)
        np.testing.assert_allclose(to_np(P), cpu.predict_proba(X), rtol=1e-10)
        np.testing.assert_allclose(to_np(logP), cpu.predict_log_proba(X), rtol=1e-10)


def test_predict_is_forwards_output_without_its_stored_layers(backend):
    """predict had kept every layer's A and Z of the whole X (forward's cache)."""
    import tracemalloc

    pytest.importorskip(backend)
    net = xpmlp.MLP([20, *[64] * 6, 3], "tanh", "softmax", backend=backend, seed=0)
    X = np.random.default_rng(0).normal(size=(2000, 20))
    np.testing.assert_array_equal(to_np(net.predict(X)), to_np(net.forward(X).Z[-1]))
    if backend != "numpy":
        return
    peaks = {}
    for name, f in (("forward", net.forward), ("predict", net.predict)):
        tracemalloc.start()
        f(X)
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks["predict"] < 0.5 * peaks["forward"], peaks  # about 3 layers' arrays, not 12


@pytest.mark.parametrize("torch_blas", [False, True])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("layout", ["C", "F", "negative", "empty", "0-d"])
def test_copy_array_of_torch_cpu_tensors_is_an_independent_copy(
    monkeypatch, torch_blas, dtype, layout
):
    """Through NumPy where torch tensors train on NumPy's BLAS, by torch where on torch's,
    or where NumPy cannot view them (the negative bit): the same values, dtype, device and
    layout, and no shared memory."""
    torch = pytest.importorskip("torch")
    from xpmlp import backend

    monkeypatch.setattr(backend, "TORCH_BLAS", torch_blas)
    xp, _ = xpmlp.resolve("torch")
    A = torch.arange(12, dtype=getattr(torch, dtype)).reshape(3, 4)
    if layout == "F":
        A = A.T.contiguous().T
    elif layout == "negative":  # A viewed with the negative bit: -(-A)
        A = torch._neg_view(-A)
        assert A.is_neg()
    elif layout == "empty":
        A = A[:0]
    elif layout == "0-d":
        A = A[1, 1]
    B = backend.copy_array(A, xp=xp)
    assert type(B) is torch.Tensor and B.dtype == A.dtype and B.device == A.device
    assert torch.equal(B, A) and not B.requires_grad
    if B.numel():
        assert B.stride() == A.stride()
        B.reshape(-1)[0] = 99
        assert A.reshape(-1)[0] != 99  # not a view


def test_all_finite_of_no_arrays_ints_bools_and_mixed_dtypes():
    from xpmlp.backend import all_finite

    for name in ("numpy", "array_api_strict"):
        xp, _ = xpmlp.resolve(name)
        assert all_finite(xp=xp)
        f32 = xp.asarray([1.0, 2.0], dtype=xp.float32)
        f64 = xp.asarray([[3.0]], dtype=xp.float64)
        ints, flags = xp.asarray([1, 2]), xp.asarray([True, False])
        assert all_finite(f32, ints, flags, f64, xp=xp)
        assert not all_finite(ints, flags, xp.asarray([1.0, float("nan")]), f32, xp=xp)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("output", ["identity", "softmax", "logistic"])
def test_torch_cpu_scores_go_through_numpy_where_training_does(
    monkeypatch, output, dtype, weighted
):
    """On NumPy's BLAS a torch model's validation split, validation scores and ``score``
    make no torch product or row gather (its threads would spin beside NumPy's BLAS), and
    agree with torch's own to a rounding; an overflow stays silent, as on torch."""
    torch = pytest.importorskip("torch")
    from xpmlp import backend

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    T = np.eye(2)[rng.integers(0, 2, 60)] if output != "identity" else rng.normal(size=(60, 2))
    sw = rng.uniform(0.5, 2.0, size=60) if weighted else None
    runs = {}
    for on_torch in (True, False):
        monkeypatch.setattr(backend, "TORCH_BLAS", on_torch)
        net = xpmlp.MLP([3, 5, 2], "relu", output, backend="torch", dtype=dtype, seed=1)
        calls, reals = [], {}
        for cls, name in ((torch.Tensor, "__matmul__"), (torch, "index_select")):
            reals[cls, name] = real = getattr(cls, name)
            spy = lambda *a, real=real, calls=calls, **k: calls.append(1) or real(*a, **k)  # noqa: E731
            setattr(cls, name, spy)
        try:
            kw = {"validation_fraction": 0.2, "sample_weight": sw}
            hist = net.fit(X, T, epochs=3, batch_size=10, **kw)
            score = net.score(X, T)
            big = net.score(X * 1e25, T)  # float32 overflows, silently (pytest: errors)
        finally:
            for (cls, name), real in reals.items():
                setattr(cls, name, real)
        assert (len(calls) > 0) is on_torch
        runs[on_torch] = (hist["val_score"], score, big)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(runs[False][0], runs[True][0], rtol=rtol)
    assert runs[False][1] == pytest.approx(runs[True][1], rel=rtol)


@pytest.mark.parametrize("torch_blas", [False, True])
def test_take_rows_and_all_finite_of_torch_tensors_in_either_mode(monkeypatch, torch_blas):
    torch = pytest.importorskip("torch")
    from xpmlp import backend

    monkeypatch.setattr(backend, "TORCH_BLAS", torch_blas)
    xp, _ = xpmlp.resolve("torch")
    A = torch.arange(12.0, dtype=torch.float32).reshape(4, 3).T.contiguous().T  # column-major
    idx = np.array([3, 0, 2])
    rows = backend.take_rows(A, idx, xp=xp)
    assert type(rows) is torch.Tensor and rows.dtype == A.dtype
    assert torch.equal(rows, A[torch.as_tensor(idx)])
    G = torch.ones((4, 2), requires_grad=True)
    assert backend.take_rows(G, idx, xp=xp).requires_grad  # autograd's tensors stay torch's
    assert backend.all_finite(xp=xp)
    assert backend.all_finite(A, rows, xp=xp)
    assert not backend.all_finite(A, torch.tensor([1.0, float("inf")]), xp=xp)
