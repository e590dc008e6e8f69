"""scikit-learn estimators: scikit-learn's own estimator checks, Pipeline and GridSearchCV,
parity with scikit-learn's MLP as an external oracle (``init="sklearn"``), digits accuracy,
results in the input's namespace, partial_fit, class_weight, stratified early stopping and
sample weights."""

import os
import subprocess
import sys
import warnings

import array_api_compat
import numpy as np
import pytest

try:  # a module skipped, not a collection error, without scikit-learn
    import sklearn  # noqa: F401
except ImportError:
    pytest.skip("scikit-learn is not installed", allow_module_level=True)

from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from xpmlp.model import MLP  # noqa: E402
from xpmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

IGNORE_CONVERGENCE = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def relative_error(A, B) -> float:
    """``max |A - B| / max |B|`` of one array against its reference."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    return float(np.max(np.abs(A - B)) / np.max(np.abs(B)))


def worst_error(ours, ref) -> float:
    """Largest relative error over coefs_, intercepts_ and every epoch of loss_curve_."""
    errors = [relative_error(A, B) for A, B in zip(ours.coefs_, ref.coefs_)]
    errors += [relative_error(a, b) for a, b in zip(ours.intercepts_, ref.intercepts_)]
    assert len(ours.loss_curve_) == len(ref.loss_curve_)
    errors += [abs(a - b) / abs(b) for a, b in zip(ours.loss_curve_, ref.loss_curve_)]
    return max(errors)


def problem(task: str):
    if task == "regression":
        X, y = make_regression(150, 6, noise=1.0, random_state=0)
        return X, y / y.std()
    if task == "multioutput":
        X, Y = make_regression(150, 6, n_targets=3, noise=1.0, random_state=1)
        return X, Y / Y.std(axis=0)
    if task == "binary":
        return make_classification(150, 6, random_state=0)
    return make_classification(150, 6, n_informative=4, n_classes=3, random_state=0)


def estimators(task: str):
    """(xpmlp estimator, scikit-learn estimator) classes for a task."""
    if task in ("regression", "multioutput"):
        return MLPRegressor, sk.MLPRegressor
    return MLPClassifier, sk.MLPClassifier


# ---------------------------------------------------------------- scikit-learn's own checks

BALANCED_PARTIAL_FIT = (
    "class_weight='balanced' needs the class counts of the whole data, which partial_fit "
    "does not see; it raises a ValueError there (as SGDClassifier does)"
)


def expected_failed_checks(estimator) -> dict:
    if getattr(estimator, "class_weight", None) == "balanced":
        return {
            "check_fit_score_takes_y": BALANCED_PARTIAL_FIT,
            "check_n_features_in_after_fitting": BALANCED_PARTIAL_FIT,
            "check_estimators_partial_fit_n_features": BALANCED_PARTIAL_FIT,
        }
    return {}


@IGNORE_CONVERGENCE
@parametrize_with_checks(
    [
        MLPRegressor(),
        MLPClassifier(),
        MLPRegressor(solver="sgd", activation="tanh", init="sklearn", random_state=0),
        MLPClassifier(solver="sgd", learning_rate="adaptive", class_weight="balanced"),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_parameters_and_defaults_are_sklearns():
    for ours, ref in [(MLPRegressor(), sk.MLPRegressor()), (MLPClassifier(), sk.MLPClassifier())]:
        mine, theirs = ours.get_params(), ref.get_params()
        not_offered = {"max_fun", "loss"}  # L-BFGS's budget; Poisson regression
        assert {k: theirs[k] for k in theirs if k not in not_offered} == {
            k: mine[k] for k in theirs if k not in not_offered
        }
        assert {k: mine[k] for k in set(mine) - set(theirs)} == {
            "backend": None,
            "device": None,
            "dtype": "float64",
            "init": "glorot",
            **({"class_weight": None} if isinstance(ours, MLPClassifier) else {}),
        }


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
@pytest.mark.parametrize("early_stopping", [False, True])
@IGNORE_CONVERGENCE
def test_fitted_attributes_are_sklearns(task, early_stopping):
    X, y = problem(task)
    Ours, Ref = estimators(task)
    kw = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0, early_stopping=early_stopping)
    ours, ref = Ours(**kw).fit(X, y), Ref(**kw).fit(X, y)
    public = {a for a in vars(ref) if a.endswith("_") and not a.startswith("_")}
    assert {name for name in public if not hasattr(ours, name)} == set()
    for name in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(ours, name) == getattr(ref, name), name
    assert [C.shape for C in ours.coefs_] == [C.shape for C in ref.coefs_]
    assert [b.shape for b in ours.intercepts_] == [b.shape for b in ref.intercepts_]
    assert (ours.best_loss_ is None) == early_stopping
    assert (ours.validation_scores_ is None) != early_stopping


def test_lbfgs_is_refused_with_the_accepted_solvers():
    with pytest.raises(ValueError, match=r"solver='lbfgs' is not offered.*'sgd', 'adam'"):
        MLPClassifier(solver="lbfgs").fit([[0.0], [1.0]], [0, 1])


def test_convergence_warning_when_max_iter_is_reached():
    X, y = problem("binary")
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        clf = MLPClassifier((4,), max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        stopped = MLPClassifier((4,), max_iter=500, tol=0.1, random_state=0).fit(X, y)
    assert stopped.n_iter_ < 500


@IGNORE_CONVERGENCE
def test_verbose_prints_sklearns_lines(capsys):
    X, y = problem("regression")
    MLPRegressor((4,), max_iter=2, verbose=True, random_state=0).fit(X, y)
    assert capsys.readouterr().out.startswith("Iteration 1, loss = ")


# ---------------------------------------------------------------- Pipeline and GridSearchCV


@pytest.mark.parametrize("task", ["regression", "multiclass"])
@IGNORE_CONVERGENCE
def test_pipeline_inside_grid_search(task):
    X, y = problem(task)
    Ours, _ = estimators(task)
    step = Ours.__name__.lower()
    pipe = make_pipeline(StandardScaler(), Ours(max_iter=150, random_state=0))
    grid = {f"{step}__hidden_layer_sizes": [(2,), (32,)], f"{step}__learning_rate_init": [0.01]}
    search = GridSearchCV(pipe, grid, cv=3).fit(X, y)
    assert search.best_params_[f"{step}__hidden_layer_sizes"] == (32,)
    assert search.best_score_ > 0.7
    assert search.predict(X).shape == y.shape
    assert search.score(X, y) > 0.9


# ---------------------------------------------------------------- parity with scikit-learn

SOLVERS = {
    "sgd": dict(solver="sgd", momentum=0.0),
    "momentum": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    "nesterov": dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
    "invscaling": dict(solver="sgd", learning_rate="invscaling", power_t=0.25),
    "adam": dict(solver="adam"),
}


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("task", ["regression", "multioutput", "binary", "multiclass"])
def test_parity_with_sklearn_after_20_epochs(task, solver):
    X, y = problem(task)
    Ours, Ref = estimators(task)
    params = dict(
        hidden_layer_sizes=(7, 5),
        activation="tanh",
        alpha=1e-3,
        batch_size=32,  # 5 minibatches, the last one short
        learning_rate_init=0.01,
        max_iter=20,
        random_state=3,
        tol=0.0,
        n_iter_no_change=1000,
        **SOLVERS[solver],
    )
    with pytest.warns(ConvergenceWarning):
        ref = Ref(**params).fit(X, y)
    with pytest.warns(ConvergenceWarning):
        ours = Ours(init="sklearn", **params).fit(X, y)
    assert worst_error(ours, ref) < 1e-8
    assert (ours.n_iter_, ours.t_) == (ref.n_iter_, ref.t_) == (20, 20 * len(y))


STOPPING = {
    "tol": dict(tol=1e-2),
    "adaptive": dict(solver="sgd", learning_rate="adaptive", tol=1e-2, n_iter_no_change=2),
    "early_stopping": dict(early_stopping=True, validation_fraction=0.2),
}


@pytest.mark.parametrize("rule", STOPPING)
@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
@IGNORE_CONVERGENCE
def test_parity_with_sklearn_stopping_rules(task, rule):
    X, y = problem(task)
    Ours, Ref = estimators(task)
    params = dict(hidden_layer_sizes=(7,), max_iter=60, random_state=3, learning_rate_init=0.01)
    params.update(STOPPING[rule])
    ref, ours = Ref(**params).fit(X, y), Ours(init="sklearn", **params).fit(X, y)
    assert ours.n_iter_ == ref.n_iter_ < 60
    assert worst_error(ours, ref) < 1e-8
    if rule == "early_stopping":
        assert ours.best_validation_score_ == pytest.approx(ref.best_validation_score_, 1e-12)
        assert ours.validation_scores_ == pytest.approx(ref.validation_scores_, rel=1e-12)
    else:
        assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=1e-12)


@pytest.mark.parametrize("task", ["regression", "multiclass"])
@IGNORE_CONVERGENCE
def test_parity_with_sklearn_warm_start_and_partial_fit(task):
    X, y = problem(task)
    Ours, Ref = estimators(task)
    params = dict(hidden_layer_sizes=(7,), max_iter=10, random_state=3, warm_start=True)
    ref = Ref(**params).fit(X, y).fit(X, y)
    ours = Ours(init="sklearn", **params).fit(X, y).fit(X, y)
    assert worst_error(ours, ref) < 1e-8
    kw = {"classes": np.unique(y)} if Ours is MLPClassifier else {}
    ref, ours = Ref(**params), Ours(init="sklearn", **params)
    for _ in range(4):
        ref.partial_fit(X, y, **kw)
        ours.partial_fit(X, y, **kw)
    assert worst_error(ours, ref) < 1e-8


# ---------------------------------------------------------------- a real task: digits


@IGNORE_CONVERGENCE
def test_digits_accuracy_at_least_sklearns():
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    params = dict(hidden_layer_sizes=(64,), max_iter=100, random_state=0)
    reference = sk.MLPClassifier(**params).fit(X_tr, y_tr).score(X_te, y_te)
    # scikit-learn's random draws: the same training, hence at least the same accuracy
    replayed = MLPClassifier(init="sklearn", **params).fit(X_tr, y_tr).score(X_te, y_te)
    assert replayed >= reference > 0.95
    # xpmlp's own draws: other initial weights and shuffles, the same accuracy up to the
    # spread between seeds (about one test sample in a hundred)
    own = MLPClassifier(**params).fit(X_tr, y_tr).score(X_te, y_te)
    assert own >= reference - 0.01


# ---------------------------------------------------------------- namespaces


def small_problem():
    return make_classification(80, 4, n_informative=3, n_redundant=0, random_state=2)


@pytest.mark.parametrize("module", ["array_api_strict", "torch"])
@IGNORE_CONVERGENCE
def test_results_come_back_in_the_input_namespace(module):
    xp = pytest.importorskip(module)
    X, y = small_problem()
    Xb, yb = xp.asarray(X), xp.asarray(y)
    params = dict(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    clf, clf_np = MLPClassifier(**params).fit(Xb, yb), MLPClassifier(**params).fit(X, y)
    reg = MLPRegressor(**params).fit(Xb, xp.asarray(X[:, 0]))
    reg_np = MLPRegressor(**params).fit(X, X[:, 0])
    is_ours = getattr(array_api_compat, f"is_{module}_namespace")
    # trained on the input's backend, from the same host-drawn weights as on NumPy
    assert is_ours(array_api_compat.array_namespace(clf.coefs_[0]))
    for est, est_np, methods in [
        (clf, clf_np, ["predict", "predict_proba", "predict_log_proba"]),
        (reg, reg_np, ["predict"]),
    ]:
        for method in methods:
            out = getattr(est, method)(Xb)
            assert is_ours(array_api_compat.array_namespace(out)), method
            expected = getattr(est_np, method)(X)
            np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-9, atol=1e-12)
    assert clf.score(Xb, yb) == clf_np.score(X, y)
    # NumPy input to a model on another backend: NumPy results
    assert isinstance(clf.predict_proba(X), np.ndarray)


@pytest.mark.parametrize(
    ("module", "labels"),
    [("jax.numpy", np.array([0, 1, 2]) + 2**40), ("array_api_strict", np.array([0, 1, 2.5]))],
    ids=["int64-on-jax", "float16-on-strict"],
)
@IGNORE_CONVERGENCE
def test_labels_the_input_namespace_cannot_hold_come_back_as_numpy(module, labels):
    """JAX without 64-bit ints cut int64 labels to their low 32 bits (score 0.0); a namespace
    without float16 made predict raise."""
    xp = pytest.importorskip(module)
    X, y = small_problem()
    y = labels.astype(np.float16 if labels.dtype.kind == "f" else np.int64)[y]
    params = dict(hidden_layer_sizes=(8,), max_iter=30, random_state=0, dtype="float32")
    clf = MLPClassifier(**params).fit(xp.asarray(X.astype(np.float32)), y)
    ref = MLPClassifier(**params).fit(X.astype(np.float32), y)
    pred = clf.predict(xp.asarray(X.astype(np.float32)))
    assert set(np.asarray(pred).tolist()) <= set(y.tolist())
    np.testing.assert_array_equal(np.asarray(pred), ref.predict(X.astype(np.float32)))
    assert clf.score(xp.asarray(X.astype(np.float32)), y) == ref.score(X.astype(np.float32), y)


@pytest.mark.parametrize("module", ["array_api_strict", "torch"])
@IGNORE_CONVERGENCE
def test_sample_weight_beside_backend_arrays_follows_sklearn(module):
    """A number weighs every sample alike (it was refused); an (N, 1) array is refused (it was
    taken), as _check_sample_weight does for NumPy input."""
    xp = pytest.importorskip(module)
    X, y = small_problem()
    params = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=0)
    ref = MLPClassifier(**params).fit(X, y, sample_weight=np.full(len(y), 2.0))
    for w in (2.0, np.float32(2.0), np.int64(2)):
        two = MLPClassifier(**params).fit(xp.asarray(X), xp.asarray(y), sample_weight=w)
        np.testing.assert_allclose(np.asarray(two.coefs_[0]), ref.coefs_[0], rtol=1e-9)
    with pytest.raises(ValueError, match="Sample weights must be 1D array or scalar"):
        MLPClassifier(**params).fit(xp.asarray(X), xp.asarray(y), sample_weight=np.ones((80, 1)))
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(3,\), expected \(80,\)"):
        MLPClassifier(**params).fit(xp.asarray(X), xp.asarray(y), sample_weight=np.ones(3))


@IGNORE_CONVERGENCE
def test_numpy_input_trains_on_the_backend_asked_for():
    pytest.importorskip("torch")
    X, y = small_problem()
    clf = MLPClassifier((8,), max_iter=20, random_state=0, backend="torch").fit(X, y)
    assert array_api_compat.is_torch_array(clf.coefs_[0])
    assert isinstance(clf.predict(X), np.ndarray)
    ref = MLPClassifier((8,), max_iter=20, random_state=0).fit(X, y)
    np.testing.assert_allclose(clf.predict_proba(X), ref.predict_proba(X), rtol=1e-9)


# ---------------------------------------------------------------- partial_fit


def test_partial_fit_needs_classes_first_then_continues():
    X, y = problem("multiclass")
    clf = MLPClassifier((16,), learning_rate_init=0.05, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:50], y[:50], classes=[0, 1, 2])
    before = clf.score(X, y)
    for _ in range(30):
        clf.partial_fit(X, y)
    assert (clf.n_iter_, len(clf.loss_curve_), clf.t_) == (1, 31, 50 + 30 * 150)
    assert clf.loss_curve_[-1] < clf.loss_curve_[1]
    assert clf.score(X, y) > max(before + 0.3, 0.8)
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X[:3], [0, 1, 7])


def test_bad_targets_are_named_y_as_in_fit():
    X, _ = problem("regression")
    with pytest.raises(TypeError, match="^y must hold numbers"):
        MLPRegressor(max_iter=1).fit(X, np.array(["a"] * len(X)))


def test_without_scikit_learn_the_import_names_the_extra():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "try:\n    import xpmlp.sklearn\nexcept ImportError as e:\n    print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "xpmlp[sklearn]"' in out.stdout


def test_scikit_learns_array_api_check_passes():
    """The estimators take array API input, but their tag said not, so scikit-learn's own
    check of it never ran on them (it needs SCIPY_ARRAY_API=1 before SciPy's import)."""
    assert MLPRegressor().__sklearn_tags__().array_api_support
    assert MLPClassifier().__sklearn_tags__().array_api_support
    code = """if True:
        import importlib.util, warnings
        from sklearn.utils.estimator_checks import check_array_api_input
        from xpmlp.sklearn import MLPClassifier, MLPRegressor
        warnings.simplefilter("ignore")  # convergence
        spaces = [("array_api_strict", None), ("torch", "cpu")]
        for est in (MLPRegressor((4,), max_iter=5), MLPClassifier((4,), max_iter=5)):
            for ns, device in spaces:
                if importlib.util.find_spec(ns) is None:
                    continue
                for dtype in ("float32", "float64"):
                    check_array_api_input(
                        type(est).__name__, est, array_namespace=ns, device_name=device,
                        dtype_name=dtype, check_values=True, check_sample_weight=True,
                    )
                    print(type(est).__name__, ns, dtype)
    """
    env = {**os.environ, "SCIPY_ARRAY_API": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "MLPClassifier array_api_strict float64" in out.stdout.splitlines()


@IGNORE_CONVERGENCE
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_column_vector_y_warns_as_sklearn_at_the_callers_line(backend):
    """A (N, 1) torch y trained without scikit-learn's DataConversionWarning; on NumPy the
    warning pointed into xpmlp instead of at the call."""
    from sklearn.exceptions import DataConversionWarning

    X, y = problem("regression")
    if backend == "torch":
        torch = pytest.importorskip("torch")
        X, y = torch.asarray(X), torch.asarray(y)
    fits = [
        lambda: MLPRegressor((3,), max_iter=2).fit(X, y[:, None]),
        lambda: MLPRegressor((3,), max_iter=2).partial_fit(X, y[:, None]),
        lambda: MLPClassifier((3,), max_iter=2).fit(X, (y > 0)[:, None]),
    ]
    for fit in fits:
        with pytest.warns(DataConversionWarning, match="column-vector y") as seen:
            est = fit()
        assert seen[0].filename == __file__
        assert est.n_outputs_ == 1 and tuple(est.predict(X).shape) == (len(X),)


def test_partial_fit_with_warm_start_checks_the_classes_as_sklearn():
    # scikit-learn's rule: with warm_start, every call's y holds exactly classes_
    X, y = problem("multiclass")
    two = y != 2
    for est in (MLPClassifier((4,), warm_start=True), sk.MLPClassifier((4,), warm_start=True)):
        est.partial_fit(X, y, classes=[0, 1, 2])
        with pytest.raises(ValueError, match="warm_start can only be used where `y` has"):
            est.partial_fit(X[two], y[two])


def test_partial_fit_epochs_equal_fit_epochs():
    """k calls of partial_fit continue one optimizer: k epochs of fit, without shuffling."""
    X, y = problem("multioutput")
    kw = dict(hidden_layer_sizes=(6,), shuffle=False, batch_size=40, tol=0.0)
    once = MLPRegressor(max_iter=7, n_iter_no_change=100, random_state=1, **kw)
    with pytest.warns(ConvergenceWarning):
        once.fit(X, y)
    steps = MLPRegressor(random_state=1, **kw)
    for _ in range(7):
        steps.partial_fit(X, y)
    for A, B in zip(steps.coefs_ + steps.intercepts_, once.coefs_ + once.intercepts_):
        np.testing.assert_allclose(A, B, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(steps.loss_curve_, once.loss_curve_, rtol=1e-12)


def test_partial_fit_refuses_early_stopping():
    X, y = problem("regression")
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)


@pytest.mark.parametrize("early_stopping", [False, True])
@IGNORE_CONVERGENCE
def test_an_interrupted_fit_keeps_the_training_and_warns_as_sklearn(monkeypatch, early_stopping):
    """scikit-learn catches KeyboardInterrupt, warns and keeps the weights (with early
    stopping, the best ones); the estimator was put back as before the call."""
    import xpmlp.sklearn

    def interrupt_at_3(*printer_args):
        def cb(epoch, loss, score, model):
            if epoch == 3:
                raise KeyboardInterrupt

        return cb

    monkeypatch.setattr(xpmlp.sklearn, "_printer", interrupt_at_3)
    X, y = problem("multiclass")
    kw = dict(hidden_layer_sizes=(6,), random_state=0, early_stopping=early_stopping)
    clf = MLPClassifier(max_iter=50, verbose=True, **kw)
    with pytest.warns(UserWarning, match="Training interrupted by user"):
        assert clf.fit(X, y) is clf
    ref = MLPClassifier(max_iter=3, n_iter_no_change=50, **kw).fit(X, y)
    assert clf.n_iter_ == 3 and clf.loss_curve_ == ref.loss_curve_
    for A, B in zip(clf.coefs_, ref.coefs_):
        np.testing.assert_array_equal(A, B)
    assert clf.score(X, y) == ref.score(X, y)


@pytest.mark.parametrize(
    "params",
    [
        dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.5, tol=1e-2),
        dict(solver="sgd", learning_rate="adaptive", early_stopping=True, tol=0.05),
        dict(solver="adam", tol=1e-2),
        dict(solver="sgd", early_stopping=True, validation_fraction=0.2, tol=0.05),
        dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, tol=1e-2),
    ],
    ids=["adaptive", "adaptive-early-stopping", "adam", "sgd-early-stopping", "invscaling"],
)
@IGNORE_CONVERGENCE
def test_verbose_prints_what_sklearn_prints(capsys, params):
    """The rate's falls and the reason for stopping were missing."""
    X, y = problem("multiclass")
    kw = dict(hidden_layer_sizes=(6,), max_iter=60, random_state=0, init="sklearn", **params)
    MLPClassifier(verbose=True, **kw).fit(X, y)
    ours = capsys.readouterr().out
    kw.pop("init")
    sk.MLPClassifier(verbose=True, **kw).fit(X, y)
    theirs = capsys.readouterr().out
    assert "Stopping." in theirs or "Setting learning rate" in theirs
    assert ours == theirs


# ---------------------------------------------------------------- class_weight


@IGNORE_CONVERGENCE
def test_class_weight_dict_equals_sample_weight():
    X, y = problem("multiclass")
    kw = dict(hidden_layer_sizes=(6,), max_iter=15, random_state=0)
    weighted = MLPClassifier(class_weight={0: 1.0, 1: 3.0, 2: 0.5}, **kw).fit(X, y)
    sample = MLPClassifier(**kw).fit(X, y, sample_weight=np.array([1.0, 3.0, 0.5])[y])
    for A, B in zip(weighted.coefs_, sample.coefs_):
        np.testing.assert_allclose(A, B, rtol=1e-12)
    s = np.random.default_rng(0).uniform(0.5, 2.0, size=len(y))  # times sample_weight
    both = MLPClassifier(class_weight={0: 1.0, 1: 3.0, 2: 0.5}, **kw).fit(X, y, sample_weight=s)
    product = MLPClassifier(**kw).fit(X, y, sample_weight=np.array([1.0, 3.0, 0.5])[y] * s)
    np.testing.assert_allclose(both.coefs_[0], product.coefs_[0], rtol=1e-12)


def test_partial_fit_weighs_classes_over_every_class_not_the_batch():
    """A batch without a class the dict weighs raised "The classes, [0], are not in
    class_weight"; SGDClassifier weighs over classes_."""
    X, y = problem("multiclass")
    batch = y != 1  # classes 0 and 2 only
    kw = dict(hidden_layer_sizes=(6,), random_state=0)
    weighted = MLPClassifier(class_weight={1: 3.0, 2: 0.5}, **kw)
    weighted.partial_fit(X[batch], y[batch], classes=[0, 1, 2])
    sample, sw = MLPClassifier(**kw), np.where(y[batch] == 2, 0.5, 1.0)
    sample.partial_fit(X[batch], y[batch], classes=[0, 1, 2], sample_weight=sw)
    for A, B in zip(weighted.coefs_, sample.coefs_):
        np.testing.assert_allclose(A, B, rtol=1e-12)
    MLPClassifier(class_weight={1: 10.0}, **kw).partial_fit(X[:20], 0 * y[:20], classes=[0, 1])


@IGNORE_CONVERGENCE
def test_class_weight_balanced_recovers_the_minority_class():
    X, y = make_classification(400, 5, weights=[0.92], flip_y=0, class_sep=0.6, random_state=0)
    kw = dict(hidden_layer_sizes=(8,), max_iter=60, random_state=0)
    plain = MLPClassifier(**kw).fit(X, y)
    balanced = MLPClassifier(class_weight="balanced", **kw).fit(X, y)
    recall = lambda clf: np.mean(clf.predict(X[y == 1]) == 1)  # noqa: E731
    assert recall(balanced) > recall(plain) + 0.1
    with pytest.raises(ValueError, match="not supported by partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="multilabel"):
        MLPClassifier(class_weight="balanced").fit(X, np.stack([y, 1 - y], axis=1))


@IGNORE_CONVERGENCE
@pytest.mark.filterwarnings("ignore:batch_size=1000 is larger")  # full batch on both sides
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_class_weight_balanced_counts_samples_by_their_weight(backend):
    """Balanced class weights came from the plain class counts: integer sample weights
    trained otherwise than the rows repeated (scikit-learn's sample-weight equivalence)."""
    if backend == "torch":
        torch = pytest.importorskip("torch")
    X, y = make_classification(60, 4, weights=[0.7], flip_y=0, random_state=0)
    w = np.where(np.arange(60) % 3 == 0, 3, 1)
    w[y == 1] *= 2  # the weights change the class balance: 0.73/1.58 unweighted
    kw = dict(hidden_layer_sizes=(5,), max_iter=30, random_state=0, shuffle=False,
              batch_size=1000, solver="sgd", class_weight="balanced")  # fmt: skip
    Xw, yw, ww = (X, y, w) if backend == "numpy" else map(torch.asarray, (X, y, w))
    weighted = MLPClassifier(**kw).fit(Xw, yw, sample_weight=ww)
    repeated = MLPClassifier(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    got = np.asarray(weighted.predict_proba(Xw))
    np.testing.assert_allclose(got, repeated.predict_proba(X), rtol=1e-10, atol=1e-12)
    # a class whose samples all weigh 0 keeps weight 0 (not 0 * inf)
    zero = MLPClassifier(**kw).fit(X, y, sample_weight=np.where(y == 1, 0.0, w))
    assert np.isfinite(zero.loss_)


# ---------------------------------------------------------------- early stopping


@IGNORE_CONVERGENCE
def test_early_stopping_splits_by_class_and_keeps_the_best_epoch(monkeypatch):
    X, y = make_classification(
        200, 6, n_informative=4, n_classes=3, weights=[0.5, 0.3], flip_y=0, random_state=0
    )
    counts = np.bincount(y)  # 100, 60, 40
    held_out = []
    split = MLP._hold_out

    def spy(self, *args, **kwargs):
        out = split(self, *args, **kwargs)
        held_out.append(out[3])
        return out

    monkeypatch.setattr(MLP, "_hold_out", spy)
    clf = MLPClassifier((16,), early_stopping=True, validation_fraction=0.2, random_state=0)
    clf.fit(X, y)
    X_val, T_val, _ = held_out[0]
    val_counts = np.sum(np.asarray(T_val), axis=0)
    np.testing.assert_array_equal(val_counts, np.round(counts * 0.2))  # stratified
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.best_loss_ is None
    # the weights kept are those of the best validation epoch
    accuracy = np.mean(clf.predict(np.asarray(X_val)) == np.argmax(np.asarray(T_val), axis=1))
    assert accuracy == clf.best_validation_score_


def test_early_stopping_needs_two_validation_samples():
    with pytest.raises(ValueError, match="validation set of 1"):
        MLPRegressor(early_stopping=True).fit(np.ones((10, 2)), np.arange(10.0))


# ---------------------------------------------------------------- sample weights


@pytest.mark.parametrize("task", ["regression", "binary"])
@IGNORE_CONVERGENCE
def test_integer_sample_weights_equal_repeated_rows(task):
    """Full-batch gradient descent: weight n_k is row k repeated n_k times (0: removed)."""
    X, y = problem(task)
    X, y = X[:60], y[:60]
    counts = np.random.default_rng(0).integers(0, 4, size=len(y))
    Ours, _ = estimators(task)
    kw = dict(hidden_layer_sizes=(5,), solver="sgd", momentum=0.0, learning_rate_init=0.05)
    kw.update(max_iter=30, tol=0.0, n_iter_no_change=100, random_state=0)  # full batch: N < 200
    weighted = Ours(**kw).fit(X, y, sample_weight=counts)
    repeated = Ours(**kw).fit(np.repeat(X, counts, axis=0), np.repeat(y, counts))
    for A, B in zip(
        weighted.coefs_ + weighted.intercepts_, repeated.coefs_ + repeated.intercepts_
    ):
        np.testing.assert_allclose(A, B, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-10)


@IGNORE_CONVERGENCE
def test_coefs_can_be_set_and_predictions_follow():
    X, y = problem("regression")
    reg = MLPRegressor((3,), max_iter=5, random_state=0).fit(X, y)
    reg.coefs_ = [np.zeros_like(C) for C in reg.coefs_]
    reg.intercepts_ = [np.zeros_like(b) for b in reg.intercepts_[:-1]] + [np.array([2.5])]
    np.testing.assert_array_equal(reg.predict(X[:4]), np.full(4, 2.5))


@IGNORE_CONVERGENCE
def test_item_assignment_into_coefs_and_intercepts_takes_effect_as_in_sklearn():
    """Each access built a new list from the weights: ``coefs_[1] = A`` changed nothing."""
    import copy
    import pickle

    X, y = problem("regression")
    reg = MLPRegressor((3,), max_iter=5, random_state=0).fit(X, y)
    coefs = reg.coefs_
    coefs[1] = np.zeros((3, 1))
    coefs[0][:] = 0  # the list assigned into views the new weights
    np.testing.assert_array_equal(reg.coefs_[0], 0.0)
    reg.intercepts_[1] = np.array([7.0])
    np.testing.assert_array_equal(reg.predict(X[:4]), np.full(4, 7.0))
    reg.coefs_[1][:] = 1.0  # in-place edits still take effect
    hidden = np.maximum(reg.intercepts_[0], 0.0).sum()
    np.testing.assert_allclose(reg.predict(X[:4]), np.full(4, 7.0 + hidden), rtol=1e-12)
    with pytest.raises(ValueError, match=r"weights\[1\] has shape"):
        reg.coefs_[1] = np.zeros((2, 1))
    np.testing.assert_array_equal(reg.coefs_[1], 1.0)
    for copied in (copy.copy(coefs), copy.deepcopy(coefs), pickle.loads(pickle.dumps(coefs))):
        assert type(copied) is list
    back = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(back.predict(X[:4]), reg.predict(X[:4]))


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("method", ["fit", "partial_fit"])
def test_sparse_y_is_refused_naming_y_and_toarray(Est, method):
    """A sparse multilabel y failed with "Unknown label type: unknown"."""
    sparse = pytest.importorskip("scipy.sparse")
    X, _ = problem("regression")
    Y = sparse.csr_matrix((X[:, :3] > 0).astype(np.int64))
    kwargs = {"classes": [0, 1]} if method == "partial_fit" and Est is MLPClassifier else {}
    with pytest.raises(TypeError, match=r"^y is a sparse csr_matrix; .*dense.*y\.toarray\(\)"):
        getattr(Est((3,), max_iter=2), method)(X, Y, **kwargs)
    with pytest.raises(TypeError, match="^Sparse data was passed for X"):
        Est((3,), max_iter=2).fit(sparse.csr_matrix(X), X[:, 0] > 0)


@IGNORE_CONVERGENCE
def test_multilabel_predict_on_array_api_strict_input():
    """``out[:1]`` of the 2-D indicators is outside the Array API: predict raised IndexError."""
    xp = pytest.importorskip("array_api_strict")
    X, _ = small_problem()
    Y = (X[:, :2] > 0).astype(np.int64)
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0)
    clf = MLPClassifier(**params).fit(xp.asarray(X), xp.asarray(Y))
    pred = clf.predict(xp.asarray(X))
    assert array_api_compat.is_array_api_strict_namespace(array_api_compat.array_namespace(pred))
    assert pred.shape == Y.shape
    np.testing.assert_array_equal(np.asarray(pred), MLPClassifier(**params).fit(X, Y).predict(X))


@IGNORE_CONVERGENCE
def test_a_failed_warm_start_fit_keeps_the_optimizer_state():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    reg = MLPRegressor((5,), solver="sgd", max_iter=3, warm_start=True, random_state=0)
    reg.fit(X, y)
    V0 = [np.array(V) for V in reg._net.state.opt_state.velocities]
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="non-finite"):
        reg.fit(X * 1e20, y * 1e20)  # diverges in its first epoch
    for V, V_kept in zip(V0, reg._net.state.opt_state.velocities):
        np.testing.assert_array_equal(V_kept, V)


# ---------------------------------------------------------------- failed calls


FAILED_CALLS = {
    # checked before the network is built, after the new data and labels were read
    "hidden_layer_sizes": lambda clf, X, y: clf.set_params(hidden_layer_sizes=(0,)).fit(X, y),
    "backend": lambda clf, X, y: clf.set_params(backend="nope").fit(X, y),
    # training diverges (non-finite loss) in the new call
    "fit": lambda clf, X, y: clf.set_params(**DIVERGE).fit(X * 1e150, y),
    "warm_start": lambda clf, X, y: clf.set_params(warm_start=True, **DIVERGE).fit(X * 1e150, y),
    "partial_fit": lambda clf, X, y: clf.set_params(**DIVERGE).partial_fit(X * 1e150, y),
}
DIVERGE = dict(solver="sgd", momentum=0.0, learning_rate_init=1e300, batch_size=1)


def fitted_attributes(est) -> dict:
    return {k: v for k, v in vars(est).items() if k not in est.get_params()}


@pytest.mark.parametrize("how", FAILED_CALLS)
@IGNORE_CONVERGENCE
def test_a_failed_call_leaves_the_fitted_estimator_as_it_was(how):
    X, y = problem("multiclass")
    clf = MLPClassifier((5,), max_iter=5, random_state=0).fit(X, y)
    fitted = fitted_attributes(clf)
    coefs, curve = [np.array(C) for C in clf.coefs_], list(clf.loss_curve_)
    proba = clf.predict_proba(X)
    if how in ("hidden_layer_sizes", "backend", "fit"):  # new features and new labels
        X, y = np.hstack([X, X]), np.array(["x", "y", "z"])[y]
    with np.errstate(all="ignore"), pytest.raises(ValueError):
        FAILED_CALLS[how](clf, X, y)
    assert fitted_attributes(clf).keys() == fitted.keys()
    assert all(getattr(clf, k) is v for k, v in fitted.items())  # the same objects
    for C, C0 in zip(clf.coefs_, coefs):
        np.testing.assert_array_equal(C, C0)
    assert clf.loss_curve_ == curve and clf.loss_ == curve[-1]
    clf.set_params(backend=None, hidden_layer_sizes=(5,), learning_rate_init=1e-3)
    X, y = problem("multiclass")
    np.testing.assert_array_equal(clf.predict_proba(X), proba)
    clf.partial_fit(X, y)  # and it goes on
    assert len(clf.loss_curve_) == len(curve) + 1


@IGNORE_CONVERGENCE
def test_a_failed_first_fit_leaves_the_estimator_unfitted():
    X, y = problem("multiclass")
    clf = MLPClassifier((5,), backend="nope")
    with pytest.raises(ValueError, match="backend='nope'"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="backend='nope'"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    assert fitted_attributes(clf) == {}
    assert not hasattr(clf, "classes_") and not hasattr(clf, "loss_")
    reg = MLPRegressor((3,), max_iter=1).fit(X, y)
    reg._net.state.history["loss"].clear()  # a network without a training epoch
    assert not hasattr(reg, "loss_")


# ---------------------------------------------------------------- warm start and partial_fit


def test_partial_fit_carries_the_stopping_state_as_sklearn():
    """The epochs without improvement add up over the calls: "adaptive" lowers the rate."""
    X, y = problem("regression")
    params = dict(hidden_layer_sizes=(5,), solver="sgd", learning_rate="adaptive", tol=0.5)
    params.update(learning_rate_init=0.1, n_iter_no_change=2, random_state=0)
    ref, ours = sk.MLPRegressor(**params), MLPRegressor(init="sklearn", **params)
    rates = []
    for _ in range(12):
        ref.partial_fit(X, y)
        ours.partial_fit(X, y)
        rates.append((ref._optimizer.learning_rate, ours._net.state.learning_rate))
    assert [a for a, _ in rates] == pytest.approx([b for _, b in rates], rel=1e-12)
    assert rates[-1][0] < 0.1 / 25  # lowered at least twice
    assert worst_error(ours, ref) < 1e-8
    assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=1e-12)


@pytest.mark.parametrize("early_stopping", [False, True])
@IGNORE_CONVERGENCE
def test_warm_start_carries_the_stopping_state_as_sklearn(early_stopping):
    X, y = problem("regression")
    params = dict(hidden_layer_sizes=(5,), warm_start=True, learning_rate_init=0.05, tol=1e-3)
    params.update(max_iter=300, random_state=0, early_stopping=early_stopping)
    ref, ours = sk.MLPRegressor(**params), MLPRegressor(init="sklearn", **params)
    for fit in range(3 if not early_stopping else 2):
        ref.fit(X, y)
        ours.fit(X, y)
        assert (ours.n_iter_, ours.t_) == (ref.n_iter_, ref.t_)
        if fit:  # still on the plateau reached by the first fit: one epoch and stop
            assert ours.n_iter_ == 1
    if early_stopping:
        assert ours.validation_scores_ == pytest.approx(ref.validation_scores_, rel=1e-12)
        assert ours.best_validation_score_ == pytest.approx(ref.best_validation_score_, 1e-12)
        # scikit-learn's last fit trains its best weights in place (coefs_ is _best_coefs);
        # here the best weights stay those of the best validation score
        first = MLPRegressor(init="sklearn", **{**params, "warm_start": False}).fit(X, y)
        for C, C0 in zip(ours.coefs_, first.coefs_):
            np.testing.assert_array_equal(C, C0)
    else:
        assert worst_error(ours, ref) < 1e-8
        assert ours.best_loss_ == pytest.approx(ref.best_loss_, rel=1e-12)


@IGNORE_CONVERGENCE
def test_warm_start_uses_the_current_activation_and_dtype_and_keeps_the_draws():
    X, y = problem("regression")
    params = dict(hidden_layer_sizes=(5,), max_iter=5, random_state=0, warm_start=True)
    ref, ours = sk.MLPRegressor(**params).fit(X, y), MLPRegressor(init="sklearn", **params)
    ours.fit(X, y)
    # the activation changes, the weights go on; init draws new weights only: not here
    ref.set_params(activation="tanh").fit(X, y)
    ours.set_params(activation="tanh", init="glorot").fit(X, y)
    assert worst_error(ours, ref) < 1e-8
    # float64 -> float32: the same weights, converted, trained on in float32
    wide = MLPRegressor(**params).fit(X, y)
    narrow = MLPRegressor(**params).fit(X, y).set_params(dtype="float32")
    wide.fit(X, y)
    narrow.fit(X, y)
    assert {C.dtype for C in narrow.coefs_ + narrow.intercepts_} == {np.dtype(np.float32)}
    np.testing.assert_allclose(narrow.loss_curve_, wide.loss_curve_, rtol=1e-5)


# ---------------------------------------------------------------- validation split


@IGNORE_CONVERGENCE
def test_early_stopping_stratifies_where_it_can_and_as_sklearn_for_init_sklearn():
    X = np.random.default_rng(0).normal(size=(20, 3))
    one_c = np.array(["a"] * 9 + ["b"] * 10 + ["c"])  # class "c" has 1 member
    three = np.array(["a", "b", "c"] * 6 + ["a", "b"])  # 3 classes, 2 validation samples
    params = dict(hidden_layer_sizes=(3,), max_iter=5, early_stopping=True, random_state=0)
    for y in (one_c, three):
        ref = sk.MLPClassifier(**params).fit(X, y)
        ours = MLPClassifier(init="sklearn", **params).fit(X, y)
        assert ours.validation_scores_ == pytest.approx(ref.validation_scores_, rel=1e-12)
        MLPClassifier(**params).fit(X, y)  # not stratified: it cannot be
    one_1 = np.array([0] * 19 + [1])  # binary: scikit-learn stratifies, and fails here
    with pytest.raises(ValueError, match="only 1 member"):
        sk.MLPClassifier(**params).fit(X, one_1)
    with pytest.raises(ValueError, match="only 1 member"):
        MLPClassifier(init="sklearn", **params).fit(X, one_1)
    assert len(MLPClassifier(**params).fit(X, one_1).validation_scores_) == 5


@IGNORE_CONVERGENCE
def test_validation_fraction_zero_without_early_stopping():
    X, y = problem("regression")
    MLPRegressor((3,), max_iter=2, validation_fraction=0.0).fit(X, y)
    with pytest.raises(ValueError, match="validation_fraction=0.0 .* validation set of 0"):
        MLPRegressor((3,), early_stopping=True, validation_fraction=0.0).fit(X, y)


# ---------------------------------------------------------------- reported loss


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@IGNORE_CONVERGENCE
def test_log_loss_is_clipped_as_sklearns_for_init_sklearn(task):
    """scikit-learn clips probabilities to [eps, 1 - eps]: a confidently wrong sample costs
    at most -log(eps) per output; the gradients are those of the unclipped loss."""
    X, y = problem(task)
    params = dict(hidden_layer_sizes=(5,), solver="sgd", momentum=0.0, alpha=0.0)
    params.update(learning_rate_init=1e-3, max_iter=1, random_state=0)
    ref, ours = sk.MLPClassifier(**params).fit(X, y), MLPClassifier(init="sklearn", **params)
    ours.fit(X, y)
    for est in (ref, ours):  # huge logits: many probabilities beyond [eps, 1 - eps]
        est.coefs_ = [np.array(C) * (1e3 if l else 1) for l, C in enumerate(est.coefs_)]
        est.partial_fit(X, y)
    assert ours.loss_ == pytest.approx(ref.loss_, rel=1e-12) and ours.loss_ < 36.05
    assert worst_error(ours, ref) < 1e-8
    unclipped = MLPClassifier(**params).fit(X, y)
    unclipped.coefs_ = [np.array(C) * (1e3 if l else 1) for l, C in enumerate(ours.coefs_)]
    unclipped.intercepts_ = ours.intercepts_
    assert unclipped.partial_fit(X, y).loss_ > 40


@IGNORE_CONVERGENCE
def test_weighted_mini_batch_loss_curve_and_stop_as_sklearn():
    """With sample weights and several batches an epoch's loss averages the batch losses by
    batch size, as scikit-learn's does, so that tol stops at the same epoch."""
    X, y = make_regression(60, 3, noise=5.0, random_state=0)
    y = y / y.std()
    sw = np.where(np.arange(60) < 30, 5.0, 0.2)
    kw = dict(hidden_layer_sizes=(5,), random_state=0, max_iter=300, batch_size=16)
    ref = sk.MLPRegressor(**kw).fit(X, y, sample_weight=sw)
    got = MLPRegressor(**kw, init="sklearn").fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(got.loss_curve_, ref.loss_curve_, rtol=1e-10)
    assert got.n_iter_ == ref.n_iter_


def test_backend_is_a_name_so_that_clone_works():
    """clone deep-copies the parameters, which a module is not: the backend goes by name."""
    from sklearn.base import clone
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = make_regression(20, 2, random_state=0)
    with pytest.raises(InvalidParameterError, match="'backend' parameter .* 'str' or None"):
        MLPRegressor(backend=np).fit(X, y)
    est = MLPRegressor((4,), backend="numpy", max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert clone(est).get_params()["backend"] == "numpy"


@pytest.mark.parametrize("max_iter, warns", [(4, True), (5, False)])
def test_convergence_warning_boundary_like_sklearn(max_iter, warns):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.normal(size=40)
    kw = dict(
        hidden_layer_sizes=(3,), max_iter=max_iter, n_iter_no_change=3, tol=1e9, random_state=0
    )
    for est in (sk.MLPRegressor(**kw), MLPRegressor(**kw)):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            est.fit(X, y)
        got = any(issubclass(x.category, ConvergenceWarning) for x in w)
        assert (got, est.n_iter_) == (warns, max_iter), type(est).__module__


def test_early_stopping_holds_out_ceil_of_validation_fraction_like_sklearn():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(95, 3)), rng.normal(size=95)
    kw = dict(hidden_layer_sizes=(3,), max_iter=2, early_stopping=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref, ours = sk.MLPRegressor(**kw).fit(X, y), MLPRegressor(**kw).fit(X, y)
    assert ours.t_ == ref.t_ == 2 * (95 - 10)  # ceil(9.5) = 10 held out


@pytest.mark.parametrize("Est", [MLPClassifier, MLPRegressor])
@IGNORE_CONVERGENCE
def test_new_hidden_layer_sizes_with_warm_start_or_partial_fit_are_refused(Est):
    """They were ignored: the old layers trained on while get_params named new ones."""
    X, y = problem("regression" if Est is MLPRegressor else "binary")
    est = Est(hidden_layer_sizes=(5,), max_iter=3, random_state=0, warm_start=True).fit(X, y)
    before = [np.array(W) for W in est.coefs_]
    est.set_params(hidden_layer_sizes=(7, 4))
    for method in ("fit", "partial_fit"):
        with pytest.raises(ValueError, match=r"hidden_layer_sizes=\(7, 4\) differs from .*\(5,\)"):
            getattr(est, method)(X, y)
    for A, B in zip(est.coefs_, before):
        np.testing.assert_array_equal(A, B)
    est.set_params(warm_start=False).fit(X, y)  # a new fit makes the new layers
    assert [W.shape[1] for W in est.coefs_][:2] == [7, 4]


@pytest.mark.parametrize(
    "sizes, error",
    [((True,), TypeError), ((5.0,), TypeError), ((5, "3"), TypeError), ((0,), ValueError)],
)
def test_hidden_layer_sizes_that_are_not_sizes_are_refused_by_type(sizes, error):
    """``True`` had made a layer of one unit; a float gets scikit-learn's TypeError."""
    X, y = problem("regression")
    with pytest.raises(error, match=r"hidden_layer_sizes=.*accepted: an int >= 1"):
        MLPRegressor(hidden_layer_sizes=sizes, max_iter=2).fit(X, y)


def test_partial_fit_takes_classes_of_an_array_library_that_refuses_numpy_conversion(
    monkeypatch,
):
    """CuPy's arrays refuse ``np.asarray``: ``classes=`` had reached scikit-learn's checks
    as they were (array-api-strict's arrays stand in here, their conversion refused)."""
    xps = pytest.importorskip("array_api_strict")

    def refuse(self, *args, **kw):
        raise TypeError("Implicit conversion to a NumPy array is not allowed")

    X, y = problem("multiclass")
    classes = xps.asarray(np.unique(y))
    monkeypatch.setattr(type(classes), "__array__", refuse)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(classes)
    clf = MLPClassifier((4,), max_iter=2, random_state=0).partial_fit(X, y, classes=classes)
    np.testing.assert_array_equal(clf.classes_, np.unique(y))


@IGNORE_CONVERGENCE
def test_torch_targets_that_require_grad_are_read_with_numpy_x():
    """With NumPy X, a torch y or sample_weight that requires grad reached scikit-learn's
    validate_data and failed there ("Can't call numpy() on Tensor that requires grad")."""
    torch = pytest.importorskip("torch")
    X, y = problem("regression")
    yt = torch.tensor(y, requires_grad=True)
    sw = torch.ones(len(y), dtype=torch.float64, requires_grad=True)
    est = MLPRegressor((4,), max_iter=3, random_state=0).fit(X, yt, sample_weight=sw)
    ref = MLPRegressor((4,), max_iter=3, random_state=0).fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(est.predict(X), ref.predict(X))
    assert yt.requires_grad and yt.grad is None


def test_a_torch_x_without_dense_values_is_refused_naming_x():
    """A meta tensor had been refused as a device the user never named."""
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="X is on torch's 'meta' device"):
        MLPRegressor((4,), max_iter=2).fit(torch.empty(10, 3, device="meta"), torch.ones(10))
    with pytest.raises(TypeError, match=r"X is a sparse torch tensor"):
        MLPRegressor((4,), max_iter=2).fit(torch.ones(10, 3).to_sparse(), torch.ones(10))


def test_a_float_parameter_past_a_floats_range_is_refused_naming_it():
    """scikit-learn's checks let 10**400 through; float() then raised an OverflowError."""
    X, y = problem("regression")
    with pytest.raises(ValueError, match="alpha is too large for a float"):
        MLPRegressor(alpha=10**400).fit(X, y)


@IGNORE_CONVERGENCE
def test_n_iter_no_change_inf_never_stops_as_in_sklearn():
    """scikit-learn's constraints take n_iter_no_change=np.inf (never stop on a plateau);
    the training's own checks refused it."""
    X, y = problem("regression")
    for est in (MLPRegressor((3,), max_iter=5, n_iter_no_change=np.inf, tol=10.0),
                sk.MLPRegressor(hidden_layer_sizes=(3,), max_iter=5, n_iter_no_change=np.inf,
                                tol=10.0)):  # fmt: skip
        assert est.fit(X, y).n_iter_ == 5
