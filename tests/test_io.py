"""Saving, loading, pickling and moving models between backends: training resumes exactly."""

import importlib.util
import io
import json
import os
import pickle
import threading

import numpy as np
import pytest

import xpmlp
from xpmlp import optim
from xpmlp.optim import AdamState, SGDState

from conftest import to_np, tolerance

OPTIMIZERS = {
    "sgd": lambda: xpmlp.optim.sgd(),
    "momentum": lambda: xpmlp.optim.sgd(momentum=0.9),
    "nesterov": lambda: xpmlp.optim.sgd(momentum=0.9, nesterov=True),
    "adam": lambda: xpmlp.optim.adam(),
}


def problem(seed=0, N=30):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    T = np.stack([np.sin(X[:, 0]) * X[:, 1], np.cos(X[:, 2])], axis=1)
    return X, T


def make(dtype="float64", backend="numpy", **kw):
    return xpmlp.MLP([3, 5, 4, 2], "tanh", backend=backend, dtype=dtype, seed=7, **kw)


def fit(net, optimizer="momentum", epochs=3, **kw):
    X, T = problem()
    kw = {"learning_rate": 0.05, "batch_size": 8, **kw}
    return net.fit(X, T, epochs=epochs, optimizer=OPTIMIZERS[optimizer](), **kw)


def reload(net, tmp_path, **kw):
    path = tmp_path / "model.npz"
    net.save(path)
    return xpmlp.load(path, **kw)


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for A, B in zip(a, b):
        np.testing.assert_array_equal(xpmlp.to_numpy(A), xpmlp.to_numpy(B))


def opt_arrays(state):
    if isinstance(state, AdamState):
        return [*state.m, *state.v]
    return list(state.velocities or [])


# ---------------------------------------------------------------- save / load on NumPy


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_save_load_round_trip_is_bit_identical_on_numpy(tmp_path, optimizer):
    net = make()
    X, T = problem()
    fit(net, optimizer, epochs=4, early_stopping=True, validation_fraction=0.2)
    new = reload(net, tmp_path)

    assert new.backend == "numpy" and new.layer_sizes == [3, 5, 4, 2]
    assert new.activation is net.activation and new.output is net.output
    assert new.weights[0].dtype == np.float64
    assert_same_weights(new.weights, net.weights)
    np.testing.assert_array_equal(new.predict(X), net.predict(X))
    assert new.history == net.history and len(new.history["loss"]) == 4
    assert len(new.history["val_score"]) == 4
    assert_same_weights(new.state.best_weights, net.state.best_weights)
    assert type(new.state.opt_state) is type(net.state.opt_state)
    assert_same_weights(opt_arrays(new.state.opt_state), opt_arrays(net.state.opt_state))
    if optimizer == "adam":
        assert new.state.opt_state.t == net.state.opt_state.t == 12  # 4 epochs x 3 batches
    if optimizer == "sgd":
        assert new.state.opt_state == SGDState(None)
    for field in ("learning_rate", "t", "epochs", "best_loss", "best_score", "no_improvement"):
        assert getattr(new.state, field) == getattr(net.state, field), field
    assert new.state.t == 4 * 24 and new.state.epochs == 4
    assert new._optimizer_key == net._optimizer_key
    assert new.rng.bit_generator.state == net.rng.bit_generator.state


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov", "adam"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_training_after_load_equals_uninterrupted_training(tmp_path, optimizer, dtype):
    a, b, c = make(dtype), make(dtype), make(dtype)
    fit(a, optimizer, epochs=6)  # one call
    fit(b, optimizer)
    fit(b, optimizer)  # two calls, no file
    fit(c, optimizer)
    c = reload(c, tmp_path)
    fit(c, optimizer)  # two calls, through a file
    assert_same_weights(c.weights, b.weights)
    assert_same_weights(c.weights, a.weights)
    assert c.history == b.history == a.history
    assert len(c.history["loss"]) == 6 and c.history["loss"][-1] < c.history["loss"][0]


def test_schedule_and_sklearn_random_state_resume_exactly(tmp_path):
    kw = {"schedule": "invscaling", "power_t": 0.25, "learning_rate": 0.2}
    a, b = make(init="sklearn"), make(init="sklearn")
    assert isinstance(a.rng, np.random.RandomState)
    fit(a, "adam", epochs=5, **kw)
    fit(b, "adam", epochs=2, **kw)
    b = reload(b, tmp_path)
    assert isinstance(b.rng, np.random.RandomState) and b.init == "sklearn"
    assert b.state.learning_rate == pytest.approx(0.2 / (2 * 30 + 1) ** 0.25, rel=1e-15)
    fit(b, "adam", epochs=3, **kw)
    assert_same_weights(b.weights, a.weights)
    assert b.history == a.history


@pytest.mark.parametrize("bits", ["MT19937", "PCG64", "Philox"])
def test_a_random_state_on_any_bit_generator_resumes_exactly(tmp_path, bits):
    """load rebuilt every RandomState on MT19937: one on another bit generator was saved,
    and its file refused."""

    def make_on_bits():
        rng = np.random.RandomState(getattr(np.random, bits)(3))
        return xpmlp.MLP([3, 5, 4, 2], "tanh", dtype="float64", init="sklearn", seed=rng)

    a, b = make_on_bits(), make_on_bits()
    a.rng.standard_normal()  # a cached normal travels too
    b.rng.standard_normal()
    fit(a, epochs=4)
    fit(b, epochs=2)
    b = reload(b, tmp_path)
    assert type(b.rng.get_state(legacy=False)) is dict
    assert b.rng.get_state(legacy=False)["bit_generator"] == bits
    fit(b, epochs=2)
    assert_same_weights(b.weights, a.weights)
    assert b.rng.standard_normal() == a.rng.standard_normal()


@pytest.mark.parametrize("before", [None, "sgd"], ids=["first-fit", "after-another-optimizer"])
def test_a_checkpoint_saved_by_a_callback_resumes_exactly(tmp_path, before):
    """During fit the model holds this fit's optimizer: the checkpoint had the previous
    fit's (none on a first fit: Adam's moments were lost; after SGD, save raised)."""
    path = tmp_path / "checkpoint.npz"
    a, b = make(), make()
    for net in (a, b) if before else ():
        fit(net, before, epochs=1)
    start = len(a.history["loss"])

    def checkpoint(epoch, loss, score, model):
        if epoch == start + 2:
            model.save(path)

    fit(a, "adam", epochs=5, callbacks=[checkpoint])
    c = xpmlp.load(path)
    assert isinstance(c.state.opt_state, AdamState) and c.state.opt_state.t > 0
    fit(c, "adam", epochs=3)
    assert_same_weights(c.weights, a.weights)
    assert c.history == a.history


def test_unfitted_model_round_trips_and_then_trains_like_a_fresh_one(tmp_path):
    fresh = make()
    new = reload(make(), tmp_path)
    assert new._optimizer_key is None and new.state.opt_state is None
    assert new.history == {"loss": [], "val_score": []}
    assert new.state.best_loss == np.inf and new.state.best_score == -np.inf
    fit(new, "adam")
    fit(fresh, "adam")
    assert_same_weights(new.weights, fresh.weights)


def test_save_and_load_work_on_file_objects():
    net = make()
    buffer = io.BytesIO()
    xpmlp.io.save(net, buffer)
    buffer.seek(0)
    new = xpmlp.load(buffer)
    assert_same_weights(new.weights, net.weights)


def test_a_different_optimizer_after_load_starts_fresh(tmp_path):
    a, b = make(), make()
    fit(a, "momentum")
    fit(b, "momentum")
    b = reload(b, tmp_path)
    fit(a, "adam")
    fit(b, "adam")
    assert a.state.opt_state.t == b.state.opt_state.t == 12  # 3 fresh epochs x 4 batches
    assert_same_weights(b.weights, a.weights)


# ---------------------------------------------------------------- other backends


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_load_on_another_backend_predicts_and_trains_like_numpy(tmp_path, backend, dtype):
    X, _ = problem()
    ref = make(dtype)
    fit(ref, "adam")
    new = reload(ref, tmp_path, backend=backend)
    assert new.backend == backend
    assert xpmlp.backend.dtype_name(new.weights[0].dtype) == dtype
    tol = tolerance(dtype)
    np.testing.assert_allclose(to_np(new.predict(X)), to_np(ref.predict(X)), **tol)
    assert_same_weights(opt_arrays(new.state.opt_state), opt_arrays(ref.state.opt_state))
    fit(ref, "adam")
    fit(new, "adam")
    for A, B in zip(new.weights, ref.weights):
        np.testing.assert_allclose(to_np(A), to_np(B), **tol)
    np.testing.assert_allclose(new.history["loss"], ref.history["loss"], **tol)


def test_load_on_torch_returns_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    net = reload(make(), tmp_path, backend="torch", device="cpu")
    assert all(isinstance(W, torch.Tensor) and W.dtype == torch.float64 for W in net.weights)


def test_to_moves_every_array_and_training_continues(backend):
    ref, net = make(), make()
    fit(ref, "adam", early_stopping=True, validation_fraction=0.2)
    fit(net, "adam", early_stopping=True, validation_fraction=0.2)
    assert net.to(backend) is net
    xp = net.xp
    assert net.backend == backend
    for A in [*net.weights, *opt_arrays(net.state.opt_state), *net.state.best_weights]:
        assert xpmlp.backend.namespace_of(A) is xp
    assert_same_weights(net.state.best_weights, ref.state.best_weights)
    fit(ref, "adam", tol=0.0)
    fit(net, "adam", tol=0.0)  # the optimizer state went along: t continues
    assert net.state.opt_state.t == ref.state.opt_state.t == 9 + 12
    for A, B in zip(net.weights, ref.weights):
        np.testing.assert_allclose(to_np(A), to_np(B), **tolerance("float64"))
    net.to("numpy")
    assert net.backend == "numpy" and isinstance(net.weights[0], np.ndarray)


def test_to_and_back_is_bit_identical(backend):
    net = make()
    fit(net, "momentum")
    before = [np.array(W) for W in net.weights]
    velocities = [np.array(V) for V in net.state.opt_state.velocities]
    net.to(backend).to("numpy")
    assert_same_weights(net.weights, before)
    assert_same_weights(net.state.opt_state.velocities, velocities)


# ---------------------------------------------------------------- pickle


def test_pickle_round_trip_continues_training(backend):
    a, b = make(backend=backend), make(backend=backend)
    fit(a, "nesterov")
    fit(b, "nesterov")
    state = b.__getstate__()
    assert state["xp"] == backend and state["dtype"] == "float64"
    assert all(isinstance(W, np.ndarray) for W in state["_weights"])
    assert all(isinstance(V, np.ndarray) for V in state["state"].opt_state.velocities)
    b = pickle.loads(pickle.dumps(b))
    assert b.backend == backend and xpmlp.backend.namespace_of(b.weights[0]) is a.xp
    assert_same_weights(b.weights, a.weights)
    fit(a, "nesterov")
    fit(b, "nesterov")
    assert_same_weights(b.weights, a.weights)
    assert b.history == a.history


def test_a_model_pickled_on_a_missing_backend_unpickles_on_numpy():
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    original = make()
    state = original.__getstate__()
    state["xp"], state["device"] = "cupy", 0  # as if it had been trained on a GPU
    net = xpmlp.MLP.__new__(xpmlp.MLP)
    with pytest.warns(UserWarning, match=r"pickled on backend='cupy'.*unpickled on NumPy"):
        net.__setstate__(state)
    assert net.backend == "numpy" and net.device is None
    assert_same_weights(net.weights, original.weights)


def test_custom_activation_cannot_be_saved_or_pickled(tmp_path):
    net = xpmlp.MLP([2, 3, 1], activation=(lambda a: a * a, lambda a: 2 * a))
    with pytest.raises(ValueError, match="activation='custom:<lambda>'.*accepted: identity"):
        net.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    with pytest.raises(ValueError, match="cannot pickle: activation='custom"):
        pickle.dumps(net)


def test_a_callable_init_is_pickled_as_saved_none_not_refused(tmp_path):
    """A lambda init (used once, in the constructor) made pickling fail with a bare
    PicklingError, where save stores init=None."""
    net = xpmlp.MLP(
        [2, 3, 1], init=lambda fi, fo, *, rng, activation: rng.normal(size=(fo, fi + 1))
    )
    back = pickle.loads(pickle.dumps(net))
    net.save(tmp_path / "m.npz")
    assert back.init is None and xpmlp.load(tmp_path / "m.npz").init is None
    for W, V in zip(back.weights, net.weights):
        np.testing.assert_array_equal(W, V)
    assert callable(net.init)  # the model pickled keeps its own


def builtin_named_impostors():
    from xpmlp.activations import Activation
    from xpmlp.objectives import OUTPUTS, Output

    square = Activation("tanh", lambda a, *, xp: a * a, lambda a, z, *, xp: 2 * a)
    huber = Output("huber", OUTPUTS["identity"].f, OUTPUTS["identity"].loss)
    other = Output("identity", lambda a, *, xp: 2 * a, OUTPUTS["identity"].loss)
    return {"tanh that is not tanh": {"activation": square}, "custom output": {"output": huber},
            "identity that is not identity": {"output": other}}  # fmt: skip


@pytest.mark.parametrize("name", list(builtin_named_impostors()))
def test_functions_a_name_would_not_restore_are_refused_by_save_and_pickle(tmp_path, name):
    # restored by name, they would come back as other functions, or not at all
    net = xpmlp.MLP([2, 3, 1], **builtin_named_impostors()[name])
    with pytest.raises(ValueError, match="cannot save: .* which cannot be restored by name"):
        net.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="cannot pickle: "):
        pickle.dumps(net)


def test_a_failed_save_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    small = xpmlp.MLP([2, 3, 1], seed=1)
    small.save(path)
    before = path.read_bytes()

    def full_disk(file, **arrays):
        file.write(b"PK\x03\x04 half a model")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(OSError, match="No space left"):
        xpmlp.MLP([20, 30, 1], seed=2).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left
    np.testing.assert_array_equal(xpmlp.load(path).weights[0], small.weights[0])


def test_save_keeps_the_permissions_and_writes_through_a_link(tmp_path):
    real, link = tmp_path / "real.npz", tmp_path / "link.npz"
    xpmlp.MLP([2, 3, 1]).save(real)
    os.chmod(real, 0o640)
    link.symlink_to(real)
    net = xpmlp.MLP([2, 3, 1], seed=7)
    net.save(link)
    assert link.is_symlink() and oct(real.stat().st_mode & 0o777) == "0o640"
    np.testing.assert_array_equal(xpmlp.load(real).weights[0], net.weights[0])


@pytest.mark.parametrize(
    ("offset", "says"),
    [(8, "is encrypted"), (10, "compression method is not supported")],
)
def test_flipped_bits_in_the_zip_directory_are_a_damaged_file(offset, says):
    b = io.BytesIO()
    xpmlp.MLP([2, 3, 1]).save(b)
    r = bytearray(b.getvalue())
    entry = r.rfind(b"PK\x01\x02", 0, r.rfind(b"W0.npy"))  # W0's central directory entry
    r[entry + offset] ^= 1  # its flags (8) or its compression method (10)
    with pytest.raises(ValueError, match=f"the file is damaged: .*{says}"):
        xpmlp.load(io.BytesIO(bytes(r)))


def test_a_member_that_is_not_npy_data_is_named():
    import zipfile

    arrays, _ = xpmlp.io._to_arrays(xpmlp.MLP([2, 3, 1]))
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for k, v in arrays.items():
            with z.open(k + ".npy", "w") as f:
                np.save(f, v)
        z.writestr("metadata.npy", b"not an npy")
    b.seek(0)
    with pytest.raises(ValueError, match="member 'metadata' is not a NumPy array"):
        xpmlp.load(b)


def test_a_stream_loads_the_model_at_its_position_and_refuses_a_second_after_it():
    """zipfile reads the last archive of a stream: load returned the model saved after."""
    b = io.BytesIO()
    b.write(b"head")
    xpmlp.MLP([3, 4, 2], seed=1).save(b)
    b.seek(4)
    assert xpmlp.load(b).layer_sizes == [3, 4, 2]  # one model after other bytes: read
    xpmlp.MLP([3, 9, 1]).save(b)
    b.seek(4)
    with pytest.raises(ValueError, match="another archive after the model"):
        xpmlp.load(b)


def test_a_text_mode_file_is_refused_naming_path(tmp_path):
    """open(..., "r") got a UnicodeDecodeError, "w" the write's own TypeError."""
    xpmlp.MLP([2, 3, 1]).save(tmp_path / "m.npz")
    with open(tmp_path / "m.npz") as fh, pytest.raises(TypeError, match=r"path=.*'rb'"):
        xpmlp.load(fh)
    with open(tmp_path / "t.npz", "w") as fh, pytest.raises(TypeError, match=r"path=.*'wb'"):
        xpmlp.MLP([2, 3, 1]).save(fh)
    with pytest.raises(TypeError, match="path="):
        xpmlp.load(io.StringIO("x"))


def test_a_file_keeps_the_rule_the_optimizer_stepped_with(tmp_path):
    """save wrote the Optimizer tuple's name and hyperparams fields, not the rule its update
    computed with: a file of momentum 0.9 loaded as momentum 0.5, and a user's functions
    named "sgd" as xpmlp's sgd."""
    X, T = problem()
    s9 = optim.sgd(0.9)
    relabelled = s9._replace(hyperparams={"momentum": 0.5, "nesterov": False})
    net = make()
    net.fit(X, T, epochs=1, optimizer=relabelled)
    back = reload(net, tmp_path)
    rule = ("sgd", {"momentum": 0.9, "nesterov": False})
    assert net._optimizer_key[5] == back._optimizer_key[5] == rule
    assert back._optimizer_key[1] == rule[1]  # and goes on with momentum 0.9's velocities
    own = optim.Optimizer("sgd", s9.init, lambda *a, **k: s9.update(*a, **k), s9.hyperparams)
    net.fit(X, T, epochs=1, optimizer=own)
    with pytest.raises(ValueError, match="optimizer 'sgd' \\(its own functions\\)"):
        net.save(tmp_path / "own.npz")
    assert not (tmp_path / "own.npz").exists()


def test_text_files_of_any_kind_are_refused_naming_path(tmp_path):
    """Only io.TextIOBase was: a text-mode NamedTemporaryFile or SpooledTemporaryFile got
    a UnicodeDecodeError or write()'s TypeError."""
    import tempfile

    net = xpmlp.MLP([2, 3, 1])
    for make_file in (
        lambda: tempfile.NamedTemporaryFile("w+", dir=tmp_path),
        lambda: tempfile.SpooledTemporaryFile(mode="w+"),
    ):
        with make_file() as fh:
            with pytest.raises(TypeError, match="path=.*'rb'"):
                xpmlp.load(fh)
            with pytest.raises(TypeError, match="path=.*'wb'"):
                net.save(fh)
    with tempfile.SpooledTemporaryFile() as fh:  # binary: taken
        net.save(fh)
        fh.seek(0)
        assert xpmlp.load(fh).layer_sizes == [2, 3, 1]


def test_save_takes_bytes_paths_and_writes_devices_in_place(tmp_path):
    net = xpmlp.MLP([2, 3, 1], seed=3)
    net.save(os.fsencode(tmp_path / "b.npz"))
    np.testing.assert_array_equal(xpmlp.load(tmp_path / "b.npz").weights[0], net.weights[0])
    fifo = tmp_path / "pipe"  # as `save("/dev/stdout") | ...`: written into, never replaced
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    net.save(fifo)
    reader.join(timeout=30)
    assert fifo.is_fifo() and sorted(os.listdir(tmp_path)) == ["b.npz", "pipe"]
    np.testing.assert_array_equal(xpmlp.load(io.BytesIO(got[0])).weights[0], net.weights[0])


@pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="needs /dev/fd")
def test_save_writes_devices_and_pipes_in_place_and_load_reads_a_pipe():
    """/dev/null: the zip writer seeked in it; a pipe: a temporary file beside 'pipe:[...]'."""
    net = xpmlp.MLP([2, 3, 1], seed=4)
    net.save("/dev/null")
    read, write = os.pipe()
    writer = threading.Thread(target=lambda: (net.save(f"/dev/fd/{write}"), os.close(write)))
    writer.start()
    try:
        got = xpmlp.load(f"/dev/fd/{read}")  # read once, to the end: a pipe cannot seek
    finally:
        writer.join(timeout=30)
        os.close(read)
    np.testing.assert_array_equal(got.weights[0], net.weights[0])


def test_save_takes_a_name_near_the_length_limit(tmp_path):
    path = tmp_path / ("m" * 251 + ".npz")  # 255 characters: no room for a longer one beside
    net = xpmlp.MLP([2, 3, 1], seed=5)
    net.save(path)
    net.save(path)  # and replaces it
    assert os.listdir(tmp_path) == [path.name]
    np.testing.assert_array_equal(xpmlp.load(path).weights[0], net.weights[0])


def test_save_errors_name_the_path_given(tmp_path):
    net = xpmlp.MLP([2, 3, 1])
    missing = str(tmp_path / "nodir" / "m.npz")
    with pytest.raises(FileNotFoundError) as e:
        net.save(missing)
    assert e.value.filename == missing and ".tmp" not in str(e.value)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(IsADirectoryError) as e:
        net.save(tmp_path / "dir.npz")
    assert e.value.filename == str(tmp_path / "dir.npz")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write read-only files")
def test_save_refuses_a_read_only_file_as_open_does(tmp_path):
    path = tmp_path / "ro.npz"
    xpmlp.MLP([2, 3, 1]).save(path)
    os.chmod(path, 0o444)
    before = path.read_bytes()
    with pytest.raises(PermissionError):
        xpmlp.MLP([2, 3, 1], seed=9).save(path)
    assert path.read_bytes() == before


def test_an_infinite_momentum_velocity_is_refused_on_load(tmp_path):
    net = xpmlp.MLP([2, 3, 1], dtype="float32")
    net.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, optimizer=xpmlp.optim.sgd(0.9))
    net.state.opt_state.velocities[0][0, 0] = np.inf  # only Adam's v may be +inf
    net.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match="array 'opt_velocities0' contains NaN or inf"):
        xpmlp.load(tmp_path / "m.npz")


def test_load_errors_name_the_file(tmp_path):
    net = xpmlp.MLP([2, 3, 1])
    arrays, meta = xpmlp.io._to_arrays(net)
    arrays["W0"] = np.full_like(arrays["W0"], np.nan)
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "nan.npz", **arrays)
    with pytest.raises(ValueError, match=r"^'.*nan.npz': array 'W0' contains NaN or inf"):
        xpmlp.load(tmp_path / "nan.npz")
    with open(tmp_path / "nan.npz", "rb") as f, pytest.raises(ValueError, match=r"^'.*nan.npz': "):
        xpmlp.load(f)


def test_adams_overflowed_second_moment_saves_and_loads(tmp_path):
    net = xpmlp.MLP([2, 3, 1], activation="identity", dtype="float32")
    net.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=1, optimizer="adam")
    net.state.opt_state.v[0][0, 0] = np.inf  # G**2 beyond float32's range: steps of 0
    net.save(tmp_path / "m.npz")
    assert np.isposinf(xpmlp.load(tmp_path / "m.npz").state.opt_state.v[0][0, 0])


def test_a_model_cannot_be_moved_while_it_trains():
    net = xpmlp.MLP([2, 3, 1], seed=0)
    W = [np.array(w) for w in net.weights]
    with pytest.raises(RuntimeError, match="cannot move a model while fit trains it"):
        net.fit(np.ones((4, 2)), np.ones((4, 1)), epochs=3,
                callbacks=[lambda e, l, s, m: e == 2 and m.to("array_api_strict")])  # fmt: skip
    assert net.backend == "numpy"
    for a, b in zip(net.weights, W):
        np.testing.assert_array_equal(a, b)
    net.to("array_api_strict")  # after fit, it moves
    assert net.backend == "array_api_strict"


# ---------------------------------------------------------------- damaged and hostile files

TRIPPED = []


def _trip():
    TRIPPED.append(True)
    return "unpickled"


class Tripwire:
    """Records a call if anything ever unpickles it."""

    def __reduce__(self):
        return (_trip, ())


def entries(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("metadata").tobytes().decode())
    return arrays, meta


def write(path, arrays, meta):
    data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, metadata=data, **arrays)
    return path


@pytest.fixture
def saved(tmp_path):
    net = make()
    fit(net, "adam")
    path = tmp_path / "model.npz"
    net.save(path)
    return path


def corrupt_arrays(change):
    def apply(arrays, meta):
        change(arrays)

    return apply


def corrupt_meta(change):
    def apply(arrays, meta):
        change(meta)

    return apply


CORRUPTIONS = {
    "wrong shape": (
        corrupt_arrays(lambda a: a.update(W1=np.zeros((4, 5)))),
        r"'W1' has shape \(4, 5\); the network needs \(4, 6\)",
    ),
    "wrong dtype": (
        corrupt_arrays(lambda a: a.update(W0=a["W0"].astype(np.float32))),
        "'W0' has dtype float32; the metadata says float64",
    ),
    "non-finite weight": (
        corrupt_arrays(lambda a: a["W2"].__setitem__((0, 0), np.nan)),
        "'W2' contains NaN or inf",
    ),
    "missing optimizer array": (
        corrupt_arrays(lambda a: a.pop("opt_v1")),
        r"lacks the arrays \['opt_v1'\]",
    ),
    "extra array": (
        corrupt_arrays(lambda a: a.update(W3=np.zeros((1, 1)))),
        r"holds arrays \['W3'\] that its metadata does not announce",
    ),
    "unknown activation": (
        corrupt_meta(lambda m: m.update(activation="swish")),
        "activation='swish' is unknown.*accepted: identity, tanh",
    ),
    "custom activation": (
        corrupt_meta(lambda m: m.update(activation="custom:h")),
        "activation='custom:h' is a custom activation",
    ),
    "unknown output": (
        corrupt_meta(lambda m: m.update(output="poisson")),
        "output='poisson' is unknown",
    ),
    "unknown dtype": (
        corrupt_meta(lambda m: m.update(dtype="float16")),
        "dtype='float16' is not supported",
    ),
    "unknown format": (
        corrupt_meta(lambda m: m.update(format="keras")),
        "format='keras' is unknown",
    ),
    "newer version": (
        corrupt_meta(lambda m: m.update(version=99)),
        "version=99 is not supported",
    ),
    "layer sizes": (
        corrupt_meta(lambda m: m.update(layer_sizes=[3, 5, 2])),
        "lacks the arrays|does not announce",
    ),
    "missing key": (
        corrupt_meta(lambda m: m.pop("loop")),
        "metadata is missing 'loop'",
    ),
    "unknown optimizer": (
        corrupt_meta(lambda m: m["optimizer"].update(name="rmsprop")),
        "optimizer name='rmsprop' is unknown",
    ),
    "bad hyper-parameter": (
        corrupt_meta(lambda m: m["optimizer"]["hyperparams"].update(beta_1=2.0)),
        r"beta_1=2.0; accepted: a number in \[0, 1\)",
    ),
    "bad rng": (
        corrupt_meta(lambda m: m["rng"]["state"].update(bit_generator="os.system")),
        "bit_generator='os.system' is unknown",
    ),
    "negative optimizer step": (
        corrupt_meta(lambda m: m["optimizer"]["state"].update(t=-1)),
        "t=-1; accepted: an int >= 0",
    ),
    "huge optimizer step": (
        corrupt_meta(lambda m: m["optimizer"]["state"].update(t=10**400)),
        r"t is a 1329-bit int; accepted: an int < 2\*\*63",
    ),
    "huge epoch count": (
        corrupt_meta(lambda m: m["loop"].update(epochs=2**63)),
        r"epochs is a 64-bit int; accepted: an int < 2\*\*63",
    ),
    "NaN best loss": (
        corrupt_meta(lambda m: m["loop"].update(best_loss="nan")),
        "best_loss='nan'; accepted: a number, not NaN",
    ),
    "infinite epsilon": (
        corrupt_meta(lambda m: m["optimizer"]["hyperparams"].update(epsilon=float("inf"))),
        "epsilon=inf; accepted: a finite number",
    ),
    "hyper-parameter true": (
        corrupt_meta(lambda m: m["optimizer"]["hyperparams"].update(beta_2=True)),
        "beta_2=True; accepted: a finite number",
    ),
    "flag as a number": (
        corrupt_meta(lambda m: m["optimizer"].update(name="sgd", hyperparams={"nesterov": 1})),
        "nesterov=1; accepted: true or false",
    ),
    "history without loss": (
        corrupt_meta(lambda m: m.update(history={})),
        r"history\['loss'\] is missing; accepted: a list of numbers",
    ),
    "history loss not a list": (
        corrupt_meta(lambda m: m["history"].update(loss=0.5)),
        r"history\['loss'\] is 0.5; accepted: a list of numbers",
    ),
    "unknown history list": (
        corrupt_meta(lambda m: m["history"].update(accuracy=[0.5])),
        r"history holds \['accuracy'\]; accepted: \['loss', 'val_score'\]",
    ),
    "version true": (
        corrupt_meta(lambda m: m.update(version=True)),
        "version=True is not supported",
    ),
    "version a float": (
        corrupt_meta(lambda m: m.update(version=1.0)),
        "version=1.0 is not supported",
    ),
    "moments under plain sgd": (
        corrupt_meta(lambda m: m["optimizer"].update(name="sgd", hyperparams={})),
        r"holds arrays \['opt_m0', .*'opt_v2'\] that its metadata does not announce",
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_a_damaged_file_raises_value_error_naming_the_problem(saved, name):
    change, message = CORRUPTIONS[name]
    arrays, meta = entries(saved)
    change(arrays, meta)
    write(saved, arrays, meta)
    with pytest.raises(ValueError, match=message):
        xpmlp.load(saved)


def test_random_bytes_and_truncated_files_raise_value_error(saved, tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError, match="not an xpmlp model file: not an .npz"):
        xpmlp.load(junk)
    data = saved.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        saved.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="truncated"):
            xpmlp.load(saved)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not an .npz"):
        xpmlp.load(tmp_path / "one.npy")


def test_a_changed_byte_inside_a_stored_array_raises_value_error(saved):
    """Each member is checked against its CRC-32: a flipped bit in the weights would load
    as other weights."""
    net = xpmlp.load(saved)
    W = np.asarray(net.weights[0])
    data = bytearray(saved.read_bytes())
    at = bytes(data).index(W.tobytes()[:16]) + 3  # inside W0's stored bytes
    data[at] ^= 0x40
    saved.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged: member 'W0.npy' fails its checksum"):
        xpmlp.load(saved)


def test_metadata_that_is_not_utf8_json_raises_value_error(saved):
    arrays, _ = entries(saved)
    np.savez(saved, metadata=np.frombuffer(b"\xff{not json", dtype=np.uint8), **arrays)
    with pytest.raises(ValueError, match="not valid JSON"):
        xpmlp.load(saved)
    np.savez(saved, metadata=np.zeros(3), **arrays)
    with pytest.raises(ValueError, match="'metadata' must be a 1-d uint8 array"):
        xpmlp.load(saved)
    np.savez(saved, **arrays)
    with pytest.raises(ValueError, match="has no 'metadata' entry"):
        xpmlp.load(saved)


def test_nothing_in_the_file_is_ever_unpickled(saved, tmp_path):
    TRIPPED.clear()
    bomb = np.empty(1, dtype=object)
    bomb[0] = Tripwire()
    arrays, meta = entries(saved)
    np.savez(
        saved,
        metadata=np.frombuffer(json.dumps(meta).encode(), np.uint8),
        W0=bomb,
        **{k: v for k, v in arrays.items() if k != "W0"},
    )
    with pytest.raises(ValueError, match="array 'W0' cannot be read"):
        xpmlp.load(saved)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Tripwire()))
    with pytest.raises(ValueError, match="not an xpmlp model file"):
        xpmlp.load(raw)
    pickle.loads(pickle.dumps(Tripwire()))  # the tripwire works
    assert TRIPPED == [True]


def test_power_t_travels_with_the_optimizer_state(tmp_path):
    """The optimizer state goes on only for the same power_t: the file keeps it (files
    without it are read with the default 0.5)."""
    X = np.random.default_rng(0).normal(size=(12, 3))
    T = X[:, :2] ** 2
    net = xpmlp.MLP([3, 4, 2], dtype="float64", seed=1)
    net.fit(X, T, epochs=2, batch_size=4, schedule="invscaling", power_t=0.25)
    net.save(tmp_path / "m.npz")
    back = xpmlp.load(tmp_path / "m.npz")
    assert back._optimizer_key == net._optimizer_key
    arrays, meta = entries(tmp_path / "m.npz")
    del meta["optimizer"]["power_t"]
    write(tmp_path / "m.npz", arrays, meta)
    assert xpmlp.load(tmp_path / "m.npz")._optimizer_key[4] == 0.5


@pytest.mark.parametrize("path", [None, 3, ["m.npz"]])
def test_a_path_that_names_no_file_is_refused_naming_path(tmp_path, path):
    """It had got open()'s "expected str, bytes or os.PathLike object, not NoneType"."""
    net = xpmlp.MLP([2, 3, 1], seed=0)
    with pytest.raises(TypeError, match=r"path=.*; accepted: a file name .* with \.write\(\)"):
        net.save(path)
    with pytest.raises(TypeError, match=r"path=.*; accepted: a file name .* with \.read\(\)"):
        xpmlp.load(path)
