"""Bad input gets a clear error naming the argument; the model and the inputs stay as they were."""

import io

import numpy as np
import pytest

import xpmlp
from xpmlp.backend import all_finite


@pytest.fixture
def net():
    return xpmlp.MLP([2, 3, 1], seed=0, dtype="float64")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(10, 2)), rng.normal(size=(10, 1))


@pytest.mark.parametrize(
    ("sizes", "error", "match"),
    [
        ([2], ValueError, r"at least \[D, K\]"),
        ([2, 0, 1], ValueError, "every size must be an int >= 1, got 0"),
        ([2, -3, 1], ValueError, "got -3"),
        ([2, 2.5, 1], ValueError, "got 2.5"),
        ("2,3,1", TypeError, "layer_sizes must be a list of ints"),
        (3, TypeError, "layer_sizes must be a list of ints"),
        ({10, 3, 1}, TypeError, "layer_sizes must be a list of ints"),  # no order
        ({2: 0, 1: 0}, TypeError, "layer_sizes must be a list of ints"),
        ([3, 2**63, 1], ValueError, r"asks for 4.61e\+19 weights; accepted: at most"),
    ],
)
def test_bad_layer_sizes(sizes, error, match):
    with pytest.raises(error, match=match):
        xpmlp.MLP(sizes)


@pytest.mark.parametrize(
    ("pair", "error", "match"),
    [
        ((np.tanh, lambda a, z: 1 - z * z), TypeError, r"dh\(a, z\) does not take one arg"),
        ((lambda a, b: a, np.cosh), TypeError, r"activation's h\(a, b\) does not take one"),
    ],
)
def test_a_custom_pair_must_take_the_one_array(pair, error, match):
    """dh(A, Z, xp=xp) is the built-ins' form; a user's pair takes a alone."""
    with pytest.raises(error, match=match):
        xpmlp.MLP([1, 3, 1], activation=pair)


@pytest.mark.parametrize(
    ("pair", "match"),
    [
        ((np.tanh, lambda a: (1 - np.tanh(a) ** 2)[:1]), r"dh\(a\) gave shape \(1, 3\) for a"),
        ((np.tanh, lambda a: 1.0), r"dh\(a\) gave float for a of shape \(8, 3\)"),
        ((lambda a: np.tanh(a)[:, :1], np.cosh), r"h\(a\) gave shape \(8, 1\) for a of shape"),
    ],
)
def test_a_custom_function_of_another_shape_is_refused_not_broadcast(pair, match):
    """A dh of the wrong shape broadcast into delta: training went on, on wrong gradients."""
    X = np.linspace(-1, 1, 8)[:, None]
    net = xpmlp.MLP([1, 3, 1], activation=pair, dtype="float64")
    snap = snapshot(net)
    with pytest.raises(ValueError, match=match):
        net.fit(X, np.sin(3 * X), epochs=1, batch_size=None)
    assert_unchanged(net, snap)


def test_a_custom_function_of_another_backend_is_refused_and_of_another_dtype_cast():
    """NumPy's float64 of a float32 a trained and predicted in float64, silently; NumPy's
    functions on another backend's arrays failed far from the activation. A bool or float64
    result is cast to a's dtype (a bool h'(a) > 0 trained so before)."""
    pytest.importorskip("array_api_strict")
    X = np.linspace(-1, 1, 8)[:, None]
    f64 = lambda a: np.tanh(np.asarray(a, dtype=np.float64))  # noqa: E731
    relu = (lambda a: a * (a > 0), lambda a: a > 0)
    for pair in ((f64, lambda a: 1 - f64(a) ** 2), relu):
        net = xpmlp.MLP([1, 3, 1], activation=pair, dtype="float32", seed=0)
        net.fit(X, np.sin(3 * X), epochs=2, batch_size=None)
        assert net.predict(X).dtype == np.float32
        assert all(W.dtype == np.float32 for W in net.weights)
    same = xpmlp.MLP([1, 3, 1], activation="relu", dtype="float32", seed=0)
    same.fit(X, np.sin(3 * X), epochs=2, batch_size=None)
    np.testing.assert_array_equal(net.predict(X), same.predict(X))
    for backend, pair, error in [
        ("array_api_strict", (np.tanh, np.cosh), "h\\(a\\) gave a numpy.ndarray for a array_api"),
        ("numpy", (np.tanh, lambda a: np.cosh(a) + 0j), "dh\\(a\\) gave complex64 for a of"),
    ]:
        net = xpmlp.MLP([1, 3, 1], activation=pair, dtype="float32", backend=backend)
        snap = snapshot(net)
        with pytest.raises(TypeError, match=error):
            net.fit(X, np.sin(3 * X), epochs=1, batch_size=None)
        assert_unchanged(net, snap)


def test_the_pure_functions_refuse_targets_and_weights_of_another_shape():
    """A 1-D T or an (N, 1) sample_weight broadcast to (N, N): a wrong loss, silently."""
    from xpmlp import network

    W = network.init_weights([2, 3, 1], rng=0)
    cache = network.forward(W, np.ones((4, 2)), activation="tanh", output="identity", xp=np)
    T = np.arange(4.0)[:, None]
    kw = dict(output="identity", xp=np)
    assert np.isfinite(network.batch_loss(cache, T, **kw))
    with pytest.raises(ValueError, match=r"T has shape \(4,\); accepted: the outputs' \(4, 1\)"):
        network.batch_loss(cache, T[:, 0], **kw)
    with pytest.raises(ValueError, match=r"sample_weight has shape \(4, 1\); accepted: \(4,\)"):
        network.batch_loss(cache, T, sample_weight=np.ones((4, 1)), **kw)
    with pytest.raises(ValueError, match=r"T has shape \(1, 1\)"):
        network.backward(W, cache, T[:1], activation="tanh", xp=np)


@pytest.mark.parametrize(
    ("args", "kw", "match"),
    [
        ([[2]], {}, r"layer_sizes=\[2\] needs at least"),
        ([[0, 2]], {"init": "he"}, "every size must be an int >= 1, got 0"),
        ([[2, 3]], {"activation": "bogus"}, "activation='bogus' is unknown"),
        ([[2, 3]], {"rng": -1}, "rng=-1 .*; accepted: a NumPy Generator or RandomState, a seed"),
    ],
)
def test_init_weights_checks_its_arguments(args, kw, match):
    from xpmlp import network

    with pytest.raises(ValueError, match=match):
        network.init_weights(*args, **kw)


def test_softmax_needs_two_outputs():
    """A softmax over one unit is 1 whatever the input: nothing to learn."""
    with pytest.raises(ValueError, match="softmax' over 1 output unit; accepted: K >= 2"):
        xpmlp.MLP([3, 4, 1], output="softmax")
    assert xpmlp.MLP([3, 2], output="softmax").layer_sizes == [3, 2]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"activation": "swish"}, ValueError, "activation='swish' is unknown; accepted: identity"),
        ({"activation": 3}, TypeError, "activation must be a name"),
        ({"output": "tanh"}, ValueError, "output='tanh' is unknown; accepted: identity"),
        ({"dtype": "float16"}, ValueError, "dtype='float16' is not supported"),
        ({"init": "orthogonal"}, ValueError, "init='orthogonal' is unknown; .* or a callable"),
        ({"init": 3}, TypeError, r"init=3 \(int\); accepted: glorot, .* or a callable"),
        ({"backend": "mxnet"}, ValueError, "backend='mxnet' is unknown"),
    ],
)
def test_bad_constructor_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        xpmlp.MLP([2, 3, 1], **kwargs)


def snapshot(net):
    return [np.array(W, copy=True) for W in net.weights], list(net.history["loss"])


def assert_unchanged(net, snap):
    weights, losses = snap
    for W, W0 in zip(net.weights, weights):
        np.testing.assert_array_equal(W, W0)
    assert net.history["loss"] == losses


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            lambda X, T: (X[:, :1], T),
            ValueError,
            r"X has shape \(10, 1\); the network needs \(N, 2\)",
        ),
        (lambda X, T: (X, T[:7]), ValueError, "same number of rows, got 10 and 7"),
        (lambda X, T: (X, np.hstack([T, T])), ValueError, r"T has shape \(10, 2\)"),
        (lambda X, T: (X[0], T), ValueError, r"X has shape \(2,\)"),
        (lambda X, T: (np.where(X > 1, np.nan, X), T), ValueError, "X contains NaN or inf"),
        (lambda X, T: (X, np.where(T > 1, np.inf, T)), ValueError, "T contains NaN or inf"),
        (lambda X, T: (X.astype(str), T), TypeError, "X must hold numbers"),
        (lambda X, T: ("data.csv", T), TypeError, "X must be an array of numbers"),
        (lambda X, T: (X[:0], T[:0]), ValueError, "X is empty"),
    ],
)
def test_bad_data_leaves_the_model_unchanged(net, data, change, error, match):
    X, T = change(*data)
    snap = snapshot(net)
    with pytest.raises(error, match=match):
        net.fit(X, T, epochs=2)
    assert_unchanged(net, snap)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_finite_check_sees_nan_and_inf_and_accepts_huge_finite_values(dtype, backend):
    """The quick check (a sum of squares) overflows on huge values; the exact one decides.
    Torch CPU tensors are checked through NumPy views of their memory."""
    if backend == "torch":
        torch = pytest.importorskip("torch")
        to, order = torch.from_numpy, lambda X: torch.from_numpy(X).T.contiguous().T
    else:
        to, order = (lambda X: X), np.asfortranarray
    net = xpmlp.MLP([2, 3, 1], dtype=dtype, backend=backend)
    big = 1e20 if dtype == "float32" else 1e160  # its square overflows, itself does not
    X = np.full((4, 2), big, dtype=dtype)
    Y = xpmlp.to_numpy(net.predict(to(X)))
    assert Y.shape == (4, 1) and np.all(np.isfinite(Y))  # accepted, and tanh saturates
    for bad in (np.nan, np.inf, -np.inf):
        X[3, 1] = bad
        with pytest.raises(ValueError, match="X contains NaN or inf"):
            net.predict(to(X))
        with pytest.raises(ValueError, match="X contains NaN or inf"):
            net.predict(order(X))  # not contiguous: the plain sum


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"learning_rate": 0}, "learning_rate=0; accepted: a finite number > 0"),
        ({"learning_rate": -0.1}, "learning_rate=-0.1"),
        ({"learning_rate": float("nan")}, "learning_rate=nan"),
        ({"epochs": -1}, "epochs=-1; accepted: an int >= 0"),
        ({"epochs": 2.5}, "epochs=2.5"),
        ({"batch_size": 0}, r"batch_size=0; accepted: an int >= 1, or None \(the full batch\)"),
        ({"optimizer": "lbfgs"}, "optimizer='lbfgs' is unknown; accepted: sgd, adam or an"),
        ({"schedule": "cosine"}, "schedule='cosine' is unknown"),
        ({"alpha": -1.0}, "alpha=-1.0"),
        ({"validation_fraction": 1.5}, "validation_fraction=1.5"),
        (
            {"sample_weight": -np.ones(10)},
            "sample_weight has minimum -1 and sum -10 in the model's dtype float64; accepted",
        ),
        ({"sample_weight": np.zeros(10)}, "minimum 0 and sum 0 in .*; accepted: weights >= 0"),
        (  # each weight finite, their sum not: no batch could be weighed
            {"sample_weight": np.full(10, 1e308)},
            "sum inf in the model's dtype float64; accepted: weights >= 0 with a positive, fin",
        ),
        ({"sample_weight": np.ones(3)}, "sample_weight has 3 entries for 10 samples"),
        (  # it had said "the network needs (N, 1)"
            {"sample_weight": np.ones((10, 2))},
            r"sample_weight has shape \(10, 2\); accepted: \(N,\), one weight per sample",
        ),
    ],
)
def test_bad_hyper_parameters_leave_the_model_unchanged(net, data, kwargs, match):
    snap = snapshot(net)
    with pytest.raises(ValueError, match=match):
        net.fit(*data, epochs=kwargs.pop("epochs", 2), **kwargs)
    assert_unchanged(net, snap)


def test_divergence_raises_and_restores_the_weights(net, data):
    X, T = data
    snap = snapshot(net)
    with pytest.raises(FloatingPointError, match="lower learning_rate"):
        with np.errstate(all="ignore"):
            net.fit(X * 1e3, T * 1e6, epochs=50, learning_rate=1e3, batch_size=None)
    assert_unchanged(net, snap)


@pytest.mark.parametrize("mode", ["warnings-as-errors", "seterr-raise"])
def test_divergence_under_strict_float_errors_is_the_same_error(net, data, mode):
    # pytest runs with warnings as errors: numpy's overflow RuntimeWarning (or, under
    # np.seterr(all="raise"), its FloatingPointError) must not replace the loop's message
    X, T = data
    snap = snapshot(net)
    strict = np.errstate(all="raise") if mode == "seterr-raise" else np.errstate()
    with pytest.raises(FloatingPointError, match="at epoch .*lower learning_rate"), strict:
        net.fit(X * 1e3, T * 1e6, epochs=50, learning_rate=1e3, batch_size=None)
    assert_unchanged(net, snap)


def test_an_overflow_in_the_validation_score_is_the_loops_error(net, data):
    """Scoring the validation data each epoch is the training's arithmetic too."""
    X, T = data
    net = xpmlp.MLP([2, 3, 1], "identity", seed=0, dtype="float64")
    snap = snapshot(net)
    with pytest.raises(FloatingPointError, match="failed at epoch 1 .*overflow"):
        with np.errstate(all="raise"):
            net.fit(X, T, epochs=2, validation_data=(X * 1e200, T))
    assert_unchanged(net, snap)


def test_invscaling_with_a_large_power_falls_to_zero():
    """eta / (t + 1)**power_t: a power too large for a float is a rate of 0, not an
    OverflowError; the model saves and loads with it."""
    X = np.random.default_rng(0).normal(size=(20, 3))
    net = xpmlp.MLP([3, 4, 1], seed=0, dtype="float64")
    kw = dict(schedule="invscaling", power_t=400.0, batch_size=5)
    net.fit(X, X[:, :1], epochs=1, **kw)
    W = [w.copy() for w in net.weights]
    net.fit(X, X[:, :1], epochs=1, **kw)
    assert net.state.learning_rate == 0.0
    for A, B in zip(W, net.weights):
        np.testing.assert_array_equal(A, B)
    buf = io.BytesIO()
    net.save(buf)
    buf.seek(0)
    assert xpmlp.load(buf).state.learning_rate == 0.0


@pytest.mark.parametrize("activation", ["logistic", "softplus"])
def test_saturated_units_train_and_predict_under_seterr_raise(activation):
    # exp(-|a|) of a saturated unit underflows to 0: rightly, not an arithmetic failure
    X = np.linspace(-1, 1, 12).reshape(6, 2)
    net = xpmlp.MLP([2, 4, 1], activation, "logistic", seed=0)
    net.weights = [W * 1000 for W in net.weights]
    with np.errstate(all="raise"):
        net.fit(X, (X[:, :1] > 0) * 1.0, epochs=2, batch_size=3, learning_rate=1e-3)
        assert np.isfinite(net.predict(X)).all()


def test_class_labels_for_a_softmax_say_how_to_give_them():
    net = xpmlp.MLP([2, 3, 2], output="softmax", seed=0)
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="needs \\(N, 2\\); class labels go in as one-hot rows"):
        net.fit(X, np.array([0, 1, 1, 0]), epochs=1)


def test_inputs_are_never_modified(net, data):
    X, T = data
    X0, T0 = X.copy(), T.copy()
    W = [np.array(w) for w in net.weights]
    W_given = [w.copy() for w in W]
    net.weights = W_given
    net.fit(X, T, epochs=3, optimizer="adam", alpha=0.1, batch_size=3)
    net.loss_and_gradients(X, T)
    net.predict(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(T, T0)
    for a, b in zip(W_given, W):  # the model copied the weights it was given
        np.testing.assert_array_equal(a, b)


def test_weights_are_assignable_and_checked(net):
    new = [np.zeros((3, 3)), np.ones((1, 4))]
    net.weights = new
    np.testing.assert_array_equal(
        net.predict(np.ones((2, 2))), [[1.0], [1.0]]
    )  # tanh(0) = 0: bias only
    with pytest.raises(
        ValueError, match=r"weights\[0\] has shape \(3, 2\); layer 1 needs \(3, 3\)"
    ):
        net.weights = [np.zeros((3, 2)), np.ones((1, 4))]
    with pytest.raises(ValueError, match="list of 2 arrays, got 1"):
        net.weights = [np.zeros((3, 3))]
    with pytest.raises(ValueError, match=r"weights\[1\] contains NaN"):
        net.weights = [np.zeros((3, 3)), np.full((1, 4), np.nan)]
    np.testing.assert_array_equal(net.weights[1], np.ones((1, 4)))


def test_values_that_overflow_the_model_dtype_are_rejected_after_the_cast():
    """1e300 is a finite float64 but inf in a float32 model: checked after the cast."""
    net = xpmlp.MLP([2, 3, 1], seed=0, dtype="float32")
    snap = snapshot(net)
    X, T = np.full((4, 2), 1e300), np.ones((4, 1))
    match = "X contains NaN or inf after the cast to the model's dtype float32"
    with pytest.raises(ValueError, match=match):
        net.predict(X)
    with pytest.raises(ValueError, match=match):
        net.fit(X, T, epochs=1)
    with pytest.raises(ValueError, match="T contains NaN or inf after the cast"):
        net.loss_and_gradients(np.ones((4, 2)), np.full((4, 1), 1e39))
    with pytest.raises(ValueError, match="X contains NaN or inf after the cast"):
        net._pair(X, T, check_finite=False)  # the caller checked X: the cast is still checked
    with pytest.raises(ValueError, match=r"weights\[0\] contains NaN or inf after the cast"):
        net.weights = [np.full((3, 3), 1e300), np.zeros((1, 4))]
    assert_unchanged(net, snap)
    with pytest.raises(ValueError, match="X contains NaN or inf; accepted"):  # NaN itself
        net.predict(np.full((4, 2), np.nan))
    with pytest.raises(
        ValueError, match="float32: values beyond .*range \\(or a float64 model\\)$"
    ):
        net.predict(X)
    if np.finfo(np.longdouble).max > np.finfo(np.float64).max:  # a float64 model: no advice
        big = np.full((2, 2), np.longdouble("1e400"))
        with pytest.raises(ValueError, match="float64: values beyond .*within that range$"):
            xpmlp.MLP([2, 3, 1], dtype="float64").predict(big)


@pytest.mark.parametrize(
    ("W0", "error", "match"),
    [
        (np.full((3, 3), "1.5"), TypeError, r"weights\[0\] must hold numbers .* got dtype <U3"),
        (np.full((3, 3), 1 + 5j), TypeError, r"weights\[0\] must hold numbers .* complex128"),
        (np.full((3, 3), 1, dtype=object), TypeError, r"weights\[0\] must hold numbers"),
        ([["1"] * 3] * 3, TypeError, r"weights\[0\] must hold numbers"),
        ([[1, 2, 3], [1, 2]], ValueError, r"weights\[0\] must be an array, or lists of"),
    ],
    ids=["strings", "complex", "object", "nested-strings", "ragged"],
)
def test_weights_setter_rejects_what_is_not_an_array_of_real_numbers(net, W0, error, match):
    snap = snapshot(net)
    with pytest.raises(error, match=match):
        net.weights = [W0, np.zeros((1, 4))]
    assert_unchanged(net, snap)


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: xpmlp.optim.sgd(momentum="0.9"),
            ValueError,
            "momentum='0.9'; accepted: a number",
        ),
        (lambda: xpmlp.optim.sgd(momentum=1.5), ValueError, r"momentum=1.5; accepted: .*\[0, 1\]"),
        (lambda: xpmlp.optim.sgd(nesterov="yes"), TypeError, "nesterov='yes'; accepted: True"),
        (lambda: xpmlp.optim.adam(beta_1=None), ValueError, "beta_1=None; accepted: a number"),
        (lambda: xpmlp.optim.adam(epsilon=0.0), ValueError, "epsilon=0.0; accepted: a number > 0"),
    ],
)
def test_bad_optimizer_hyper_parameters_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_an_optimizer_of_the_wrong_type_is_a_type_error(net, data):
    with pytest.raises(TypeError, match=r"optimizer=3 \(int\); accepted: sgd, adam or an"):
        net.fit(*data, epochs=1, optimizer=3)


def test_validation_data_that_is_not_a_pair_says_what_it_is(net, data):
    with pytest.raises(TypeError, match=r"validation_data is a tuple of 3; accepted: a pair"):
        net.fit(*data, epochs=1, validation_data=(1, 2, 3))


def test_validation_data_errors_name_x_val_and_t_val(net, data):
    X, T = data
    snap = snapshot(net)
    for val, match in [
        ((np.ones((3, 5)), np.ones((3, 1))), r"X_val has shape \(3, 5\)"),
        ((np.ones((3, 2)), np.full((3, 1), np.nan)), "T_val contains NaN or inf"),
        ((np.ones((3, 2)), np.ones((2, 1))), "X_val and T_val must have the same number of rows"),
        ((np.ones((0, 2)), np.ones((0, 1))), "X_val is empty"),
    ]:
        with pytest.raises(ValueError, match=match):
            net.fit(X, T, epochs=1, validation_data=val)
    assert_unchanged(net, snap)


@pytest.mark.parametrize(
    ("seed", "init", "error", "match"),
    [
        (-1, "glorot", ValueError, "seed=-1; accepted: None, an int >= 0"),
        (1.5, "glorot", TypeError, r"seed=1.5 \(float\); accepted"),
        ("abc", "glorot", TypeError, r"seed='abc' \(str\); accepted"),
        (True, "glorot", TypeError, r"seed=True \(bool\)"),
        (2**32, "sklearn", ValueError, r"seed=4294967296; accepted: None, an int in \[0, 2"),
        (np.random.default_rng(0), "sklearn", TypeError, r"\(Generator\); accepted: None"),
    ],
)
def test_bad_seed_names_seed_and_what_is_accepted(seed, init, error, match):
    with pytest.raises(error, match=match):
        xpmlp.MLP([2, 3, 1], seed=seed, init=init)


def test_every_accepted_seed_kind_seeds_the_same_weights():
    ref = xpmlp.MLP([2, 3, 1], seed=3).weights
    for seed in (np.int64(3), np.random.default_rng(3)):
        for W, W_ref in zip(xpmlp.MLP([2, 3, 1], seed=seed).weights, ref):
            np.testing.assert_array_equal(W, W_ref)
    ref = xpmlp.MLP([2, 3, 1], seed=2**32 - 1, init="sklearn").weights
    rs = np.random.RandomState(2**32 - 1)
    for W, W_ref in zip(xpmlp.MLP([2, 3, 1], seed=rs, init="sklearn").weights, ref):
        np.testing.assert_array_equal(W, W_ref)
    assert xpmlp.MLP([2, 3, 1], seed=None).weights[0].shape == (3, 3)


@pytest.mark.parametrize("name", ["learning_rate", "alpha", "clip_norm", "tol", "power_t"])
def test_ints_too_large_for_a_float_name_the_parameter(net, data, name):
    snap = snapshot(net)
    with pytest.raises(ValueError, match=f"{name} is too large for a float; accepted: a finite"):
        net.fit(*data, epochs=1, **{name: 10**400})
    assert_unchanged(net, snap)
    if name == "alpha":
        with pytest.raises(ValueError, match="alpha is too large for a float"):
            net.loss_and_gradients(*data, alpha=10**400)


def test_callbacks_must_be_a_list_of_callables(net, data):
    snap = snapshot(net)
    with pytest.raises(TypeError, match=r"callbacks must be a list of callables .*=\[cb\]"):
        net.fit(*data, epochs=1, callbacks=lambda *a: None)
    with pytest.raises(TypeError, match="callbacks must be callables, got 42"):
        net.fit(*data, epochs=1, callbacks=[42])
    assert_unchanged(net, snap)
    seen = []
    net.fit(*data, epochs=2, callbacks=(cb for cb in [lambda e, *_: seen.append(e)]))
    assert seen == [1, 2]  # a generator of callbacks serves every epoch


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_callable_init_whose_weights_are_not_finite_is_refused(value):
    def init(fan_in, fan_out, *, rng, activation):
        return np.full((fan_out, fan_in + 1), value)

    with pytest.raises(ValueError, match=r"init=<function .*> gave weights that are not usable: "):
        xpmlp.MLP([2, 3, 1], init=init)


@pytest.mark.parametrize(
    "T",
    [[[1, 1, 0], [0, 0, 1]], [[0, 0, 0], [0, 0, 1]], [[1.5, -0.5, 0], [0, 0, 1]]],
    ids=["multi-hot", "all-zero", "negative"],
)
def test_softmax_targets_must_be_distributions(T):
    """y - t is the cross-entropy's gradient only for rows of t that sum to 1."""
    net = xpmlp.MLP([2, 3], output="softmax", dtype="float64", seed=0)
    before = [np.array(W) for W in net.weights]
    X = np.ones((2, 2))
    with pytest.raises(ValueError, match="T must hold one distribution per row"):
        net.fit(X, np.array(T, dtype=float), epochs=1)
    with pytest.raises(ValueError, match="T must hold one distribution per row"):
        net.loss_and_gradients(X, np.array(T, dtype=float))
    for W, W0 in zip(net.weights, before):
        np.testing.assert_array_equal(W, W0)
    net.fit(X, np.array([[0.2, 0.3, 0.5], [0, 0, 1.0]]), epochs=1)  # soft labels are fine


@pytest.mark.parametrize("T", [[[-1.0], [1.0]], [[0.0], [5.0]]], ids=["-1/+1", "above-1"])
def test_logistic_targets_must_lie_in_0_1(T):
    """Outside [0, 1] the cross-entropy has no minimum: the loss fell below 0 for ever."""
    net = xpmlp.MLP([2, 3, 1], output="logistic", dtype="float64", seed=0)
    before = [np.array(W) for W in net.weights]
    X, T = np.ones((2, 2)), np.array(T)
    lo, hi = T.min(), T.max()
    for call in (
        lambda: net.fit(X, T, epochs=1),
        lambda: net.loss_and_gradients(X, T),
        lambda: net.score(X, T),
        lambda: net.fit(X, [[0.0], [1.0]], epochs=1, validation_data=(X, T)),
    ):
        with pytest.raises(ValueError, match=rf"holds values in \[{lo:g}, {hi:g}\].*\[0, 1\]"):
            call()
    for W, W0 in zip(net.weights, before):
        np.testing.assert_array_equal(W, W0)
    assert net.history["loss"] == []
    net.fit(X, np.array([[0.25], [1.0]]), epochs=1)  # probabilities are fine


@pytest.mark.parametrize("backend", ["numpy", "torch", "jax", "array_api_strict"])
@pytest.mark.parametrize("device", ["nonsense", "cuda:99", 7])
def test_a_bad_device_is_one_error_on_every_backend(backend, device):
    """BackendError, a ValueError (and an ImportError, as a missing backend is), naming the
    device, the backend and what is accepted."""
    pytest.importorskip(backend)
    match = rf"device={device!r} cannot be used with backend='{backend}' .*; accepted: .*'cpu'"
    with pytest.raises(xpmlp.BackendError, match=match) as info:
        xpmlp.MLP([2, 1], backend=backend, device=device)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ImportError)


def test_a_masked_array_with_masked_entries_is_refused_not_read_unmasked(net, data):
    """np.asarray drops the mask: the masked-out values had been trained on."""
    X, T = data
    snap = snapshot(net)
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, dtype=bool))
    masked[0, 0] = np.ma.masked
    for call in (lambda: net.fit(masked, T, epochs=1), lambda: net.predict(masked)):
        with pytest.raises(ValueError, match=r"X is a masked array with masked entries"):
            call()
    assert_unchanged(net, snap)
    net.predict(np.ma.masked_array(X))  # nothing masked: its values are all there


def test_layer_sizes_past_a_floats_range_are_refused_as_too_many_weights():
    """Formatting their count as a float had raised an OverflowError."""
    with pytest.raises(ValueError, match="asks for more than 1e300 weights"):
        xpmlp.MLP([2, 10**400, 1])


# ---------------------------------------------------------------- the functional API


def functional_setup():
    from xpmlp import network

    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    return X, T, network.init_weights([3, 4, 2], rng=0)


@pytest.mark.parametrize("fast", [True, False])
def test_train_refuses_targets_and_weights_of_other_rows(monkeypatch, fast):
    """The fast path gathered a short T with mode='clip': the missing rows became copies of
    the last one, and training went on; longer ones were read in part."""
    from xpmlp import _fast, train

    monkeypatch.setattr(_fast, "ENABLED", fast)
    X, T, W = functional_setup()
    config = train.Config(epochs=2, batch_size=5)
    kw = dict(activation="tanh", output="identity", optimizer="sgd", xp=np, config=config,
              rng=np.random.default_rng(0))  # fmt: skip
    bad = [
        (dict(T=T[:10]), r"T has shape \(10, 2\); accepted: \(20, 2\)"),
        (dict(T=np.ones((20, 3))), r"T has shape \(20, 3\); accepted: \(20, 2\)"),
        (
            dict(T=T, sample_weight=np.ones(7)),
            r"sample_weight has shape \(7,\); accepted: \(20,\)",
        ),
        (dict(T=T, sample_weight=np.ones(40)), r"sample_weight has shape \(40,\)"),
    ]
    for given, match in bad:
        before = [w.copy() for w in W]
        with pytest.raises(ValueError, match=match):
            train.train(W, X, state=train.LoopState(), **given, **kw)
        for w, b in zip(W, before):
            np.testing.assert_array_equal(w, b)
    # layers that do not chain: named before any product
    broken = [W[0], np.zeros((2, 7))]
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(2, 7\); accepted: \(n_2, 5\)"):
        train.train(broken, X, T, state=train.LoopState(), **kw)
    # names resolve as MLP's: the same numbers as the objects
    from xpmlp import optim
    from xpmlp.activations import get_activation
    from xpmlp.objectives import get_output

    by_name, _ = train.train([w.copy() for w in W], X, T, state=train.LoopState(), **kw)
    kw.update(activation=get_activation("tanh"), output=get_output("identity"),
              optimizer=optim.sgd(), rng=np.random.default_rng(0))  # fmt: skip
    by_object, _ = train.train([w.copy() for w in W], X, T, state=train.LoopState(), **kw)
    for a, b in zip(by_name, by_object):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ({"clip_norm": 0}, "clip_norm=0; accepted: a finite number > 0"),  # "none" on one path
        ({"clip_norm": -1.0}, "clip_norm=-1.0; accepted"),  # gradient ascent
        ({"learning_rate": -0.01}, "learning_rate=-0.01; accepted: a finite number > 0"),
        ({"schedule": "invscalng"}, "schedule='invscalng' is unknown; accepted: constant"),
        ({"epochs": -1}, "epochs=-1; accepted: an int >= 0"),
        ({"batch_size": 0}, r"batch_size=0; accepted: an int >= 1, or None"),
        ({"batch_size": 2.5}, "batch_size=2.5; accepted"),
        ({"alpha": -1}, "alpha=-1; accepted: a finite number >= 0"),
        ({"power_t": -1}, "power_t=-1; accepted"),
        ({"tol": float("nan")}, "tol=nan; accepted"),
        ({"n_iter_no_change": 0}, "n_iter_no_change=0; accepted: an int >= 1"),
        ({"loss_scale": 0}, "loss_scale=0; accepted: a finite number > 0"),
        ({"shuffle": "yes"}, "shuffle='yes'; accepted: True or False"),
    ],
)
def test_a_training_config_checks_its_settings(setting, match):
    """train.Config took a negative rate, a misspelt schedule (trained as constant), a
    negative clip_norm (gradient ascent) or 0 (no clipping on one path, zero gradients on
    the other) without a word; MLP.fit checked them, train.train did not."""
    from xpmlp import train

    with pytest.raises((ValueError, TypeError), match=match):
        train.Config(**setting)


def test_an_optimizer_step_refuses_gradients_unlike_the_weights():
    """zip dropped the layers beyond the shorter list, and a (4, 1) gradient broadcast over
    a (4, 4) layer, silently."""
    from xpmlp import optim

    _, _, W = functional_setup()
    G = [np.ones_like(w) for w in W]
    for opt in (optim.sgd(), optim.sgd(momentum=0.9), optim.adam()):
        with pytest.raises(ValueError, match="grads holds 1 arrays for 2 layers"):
            opt.update(G[:1], opt.init(W, xp=np), W, learning_rate=0.1, xp=np)
        with pytest.raises(ValueError, match=r"grads\[0\] has shape \(4, 1\); accepted"):
            opt.update([G[0][:, :1], G[1]], opt.init(W, xp=np), W, learning_rate=0.1, xp=np)
    adam = optim.adam()
    with pytest.raises(ValueError, match="m holds 1 arrays for 2 layers"):
        adam.update(G, adam.init(W[:1], xp=np), W, learning_rate=0.1, xp=np)


def test_forward_refuses_inputs_and_layers_that_do_not_chain():
    """A 1-D X went through as one sample, a 3-D X gave outputs (1, 5, 2), no weights gave
    Y = X, and a wrong width failed in matmul naming neither X nor the layer."""
    from xpmlp import network

    X, _, W = functional_setup()
    kw = dict(activation="tanh", output="identity", xp=np)
    for f in (network.forward, network.predict):
        with pytest.raises(ValueError, match=r"X has shape \(3,\); accepted: \(N, 3\)"):
            f(W, X[0], **kw)
        with pytest.raises(ValueError, match=r"X has shape \(20, 2\); accepted: \(N, 3\)"):
            f(W, X[:, :2], **kw)
        with pytest.raises(ValueError, match="weights is empty"):
            f([], X, **kw)
        with pytest.raises(ValueError, match=r"weights\[1\] has shape \(2, 4\); accepted: "):
            f([W[0], W[1][:, 1:]], X, **kw)


def test_functional_helpers_take_what_they_return():
    """to_numpy failed on the loss NumPy returns (a NumPy scalar); integer sample weights
    failed on torch (inf in an int) and gave alpha / INT_MIN when all zero; clipping took a
    negative norm; check_gradients of a weight list failed on a missing attribute."""
    from xpmlp import train

    X, T, W = functional_setup()
    kw = dict(activation="tanh", output="identity", alpha=1.0, xp=np)
    loss, _ = train.loss_and_gradients(W, X, T, **kw)
    assert xpmlp.to_numpy(loss) == loss and xpmlp.to_numpy(np.float32(2)).dtype == np.float32
    ints = np.arange(20) % 3
    got, want = (
        train.loss_and_gradients(W, X, T, sample_weight=w, **kw) for w in (ints, ints * 1.0)
    )
    assert got[0] == want[0]
    for g, h in zip(got[1], want[1]):
        np.testing.assert_array_equal(g, h)
    zero, zero_grads = train.loss_and_gradients(W, X, T, sample_weight=0 * ints, **kw)
    assert zero == 0 and all(not g.any() for g in zero_grads)
    with pytest.raises(ValueError, match="max_norm=-1.0; accepted: a finite number > 0"):
        train.clip_by_global_norm(want[1], -1.0, xp=np)
    with pytest.raises(TypeError, match="net is a list; accepted: an xpmlp.MLP"):
        xpmlp.check_gradients(W, X, T)


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict", "torch"])
def test_all_finite_sees_every_array_and_looks_closer_on_overflow(backend):
    """Several arrays in one check (the trained weights at the end of a fit): a NaN or inf in
    any of them is seen, and finite values whose squares or sums overflow are accepted."""
    if backend == "torch":
        pytest.importorskip("torch")
    xp, _ = xpmlp.resolve(backend)
    ok = [np.ones((3, 2)), np.full((2, 4), 1e200), np.arange(6.0).reshape(2, 3).T]
    assert all_finite(*(xp.asarray(A) for A in ok), xp=xp)
    for bad in (np.nan, np.inf, -np.inf):
        for i in range(3):
            arrays = [A.copy(order="K") for A in ok]  # the third one column-major
            arrays[i][1, 1] = bad
            assert not all_finite(*(xp.asarray(A) for A in arrays), xp=xp)
