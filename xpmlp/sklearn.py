"""scikit-learn estimators ``MLPRegressor`` and ``MLPClassifier`` over :class:`xpmlp.MLP`.

They take the parameters of ``sklearn.neural_network``'s estimators of the same names, with
the same defaults, and set the same fitted attributes; the solvers are "sgd" and "adam"
("lbfgs" is not offered). Training runs xpmlp's one loop, :func:`xpmlp.train.train`, and
prediction its one forward pass, on any Array API backend:

- an input that lives on an Array API backend other than NumPy (a PyTorch, CuPy, JAX or
  array-api-strict array) is trained on there, on its device, whatever ``backend`` says,
  by a fit that starts afresh; ``partial_fit`` and a warm-started ``fit`` go on training
  the fitted network where it lives (its input is moved there);
- NumPy-like input (arrays, lists, data frames) is checked by scikit-learn's
  ``validate_data`` and trained on ``backend`` (``None``: ``XPMLP_BACKEND``, else NumPy);
- predictions come back in the namespace, and on the device, of the input; the
  classifier's labels too where they are numbers that namespace holds as they are (JAX
  without 64-bit ints keeps int64 labels in NumPy), and ``classes_`` is NumPy's.

With ``init="sklearn"``, the same ``random_state``, float64 data and no early stopping, the
fitted ``coefs_``, ``intercepts_`` and ``loss_curve_`` are scikit-learn's to rounding: that
mode replays scikit-learn's random draws (initial weights, cumulative shuffles, validation
split) and its clipped log-loss. Other modes draw from a ``numpy.random.Generator``. As
scikit-learn's, ``loss_curve_`` averages the batch losses of an epoch by batch size, also
with ``sample_weight``.

A call of ``fit`` or ``partial_fit`` that raises leaves the estimator as it was.
"""

from __future__ import annotations

import copy
import math
import warnings
from contextlib import contextmanager
from numbers import Integral, Number, Real
from typing import Any

import numpy as np

try:
    import sklearn  # noqa: F401
except ImportError as exc:
    raise ImportError(
        "xpmlp.sklearn needs scikit-learn, which is not installed here: "
        'pip install "xpmlp[sklearn]"'
    ) from exc
import scipy.sparse  # scikit-learn's own dependency
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, shuffle
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
    unique_labels,
)
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import network, optim, train
from .activations import get_activation
from .backend import (
    DTYPES,
    asarray,
    backend_name,
    check_readable,
    copy_array,
    device_of,
    dtype_name,
    namespace_of,
    to_numpy,
)
from .model import MLP, computing
from .objectives import CLIPPED, get_output

__all__ = ["MLPClassifier", "MLPRegressor"]

_SOLVERS = ("sgd", "adam")


def _array_api_namespace(x: Any) -> Any | None:
    """The namespace of ``x`` if it is an array of a backend other than NumPy, else None."""
    xp = namespace_of(x)
    if xp is None or backend_name(xp) == "numpy":
        return None
    return xp


def _to_input_namespace(A: Any, xp_in: Any | None, device: Any) -> Any:
    """``A`` in the input's namespace and on its device (NumPy for NumPy-like input)."""
    return to_numpy(A) if xp_in is None else asarray(A, xp=xp_in, device=device)


def _array_api_sample_weight(sample_weight: Any, N: int) -> Any:
    """scikit-learn's rules for ``sample_weight`` beside an array that stays on its backend:
    a number weighs every sample alike; an array must have shape (N,)."""
    if isinstance(sample_weight, Number):  # np.float32(2) too, as _check_sample_weight
        return np.full(N, float(sample_weight))
    shape = tuple(getattr(sample_weight, "shape", np.shape(sample_weight)))
    if len(shape) != 1:
        raise ValueError("Sample weights must be 1D array or scalar")
    if shape != (N,):
        raise ValueError(f"sample_weight.shape == {shape}, expected {(N,)}!")
    return sample_weight


class _Layers(list):
    """``coefs_`` or ``intercepts_``: item assignment sets the estimator's attribute to the
    list with that item replaced (checked as assigning a whole list); copies are plain lists."""

    def __init__(self, items, est, name: str):
        super().__init__(items)
        self._est, self._name = est, name

    def __setitem__(self, index, value) -> None:
        new = list(self)
        new[index] = value
        setattr(self._est, self._name, new)
        super().__setitem__(slice(None), getattr(self._est, self._name))

    def __reduce_ex__(self, protocol):
        return list, (list(self),)


def _column_to_1d(y):
    """``y`` of shape (N, 1) as (N,) on its backend, with scikit-learn's warning (that of
    its ``column_or_1d``, here pointing at the caller's ``fit``)."""
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change the "
            "shape of y to (n_samples, ), for example using ravel().",
            DataConversionWarning,
            stacklevel=5,  # fit -> _fit -> _targets -> here
        )
        return y[:, 0]
    return y


def _host(x: Any) -> Any:
    """An Array API array as NumPy's (detached, from any device); anything else, None
    included, as it is."""
    return to_numpy(x) if namespace_of(x) is not None else x


def _replays_sklearn(init) -> bool:
    """``init="sklearn"``: replay scikit-learn's random draws throughout."""
    return isinstance(init, str) and init == "sklearn"


def _cumulative_shuffle():
    """scikit-learn's epoch order: ``idx = shuffle(idx, random_state=rng)`` each epoch, the
    permutations compounding from ``arange(N)``."""
    idx = None

    def order(rng, N):
        nonlocal idx
        idx = shuffle(np.arange(N) if idx is None else idx, random_state=rng)
        return idx

    return order


@contextmanager
def _unchanged_on_error(est):
    """Put back every attribute of ``est`` if the block raises (a failed fit changes nothing)."""
    saved = dict(est.__dict__)
    try:
        yield
    except BaseException:
        est.__dict__.clear()
        est.__dict__.update(saved)
        raise


def _printer(est, learning_rate: float):
    """A callback printing scikit-learn's verbose lines: each epoch's loss and validation
    score, and why the rate falls (an adaptive schedule) or training stops, the rate
    starting at ``learning_rate``."""
    n, rate = 0, learning_rate

    def cb(epoch, loss, score, model):
        nonlocal n, rate
        n += 1
        print(f"Iteration {n}, loss = {loss:.8f}")
        if score is not None:
            print(f"Validation score: {score:f}")
        what = "Validation score" if est.early_stopping else "Training loss"
        msg = (
            f"{what} did not improve more than tol={est.tol:f} for {est.n_iter_no_change} "
            "consecutive epochs."
        )
        state = model.state
        adaptive = est.solver == "sgd" and est.learning_rate == "adaptive"
        if adaptive and state.learning_rate < rate:  # the plateau rule divided it by 5
            print(f"{msg} Setting learning rate to {state.learning_rate:f}")
        elif state.no_improvement > est.n_iter_no_change:  # the rule stops here
            small = " Learning rate too small." if adaptive else ""
            print(f"{msg}{small} Stopping.")
        rate = state.learning_rate

    return cb


class _BaseMLP(BaseEstimator):
    """What the regressor and the classifier share: parameters, fit, forward, attributes."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions(set(_SOLVERS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(train.SCHEDULES))],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        # a name or alias (checked by xpmlp.backend), not a module: clone deep-copies params
        "backend": [str, None],
        "device": "no_validation",
        "dtype": [StrOptions(set(DTYPES))],
        "init": [StrOptions(set(network.INITS)), callable],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        backend=None,
        device=None,
        dtype="float64",
        init="glorot",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.init = init

    # ------------------------------------------------------------ fitted weights

    @property
    def coefs_(self) -> list:
        """``coefs_[l]`` of shape (n_l, n_{l+1}): ``W[l][:, 1:].T``, in the model's backend."""
        return _Layers([W[:, 1:].T for W in self._fitted_net().weights], self, "coefs_")

    @coefs_.setter
    def coefs_(self, coefs: list) -> None:
        self._set_weights(coefs, self.intercepts_)

    @property
    def intercepts_(self) -> list:
        """``intercepts_[l]`` of shape (n_{l+1},): the bias column ``W[l][:, 0]``."""
        return _Layers([W[:, 0] for W in self._fitted_net().weights], self, "intercepts_")

    @intercepts_.setter
    def intercepts_(self, intercepts: list) -> None:
        self._set_weights(self.coefs_, intercepts)

    # fitted attributes read from the model, not copied from it after every fit

    @property
    def loss_curve_(self) -> list:
        """Mean training loss per epoch, over every fit since the weights were drawn."""
        return self._fitted_net().history["loss"]

    @property
    def loss_(self) -> float:
        """The last epoch's mean training loss."""
        curve = self.loss_curve_
        if not curve:
            raise AttributeError(f"{type(self).__name__} has no loss before fit")
        return curve[-1]

    @property
    def t_(self) -> int:
        """Training samples seen, scikit-learn's ``t_``."""
        return int(self._fitted_net().state.t)

    @property
    def n_layers_(self) -> int:
        return len(self._fitted_net().layer_sizes)

    @property
    def out_activation_(self) -> str:
        return self._fitted_net().output.name

    def _fitted_net(self) -> MLP:
        net = self.__dict__.get("_net")
        if net is None:
            raise AttributeError(f"{type(self).__name__} has no weights before fit")
        return net

    def _set_weights(self, coefs, intercepts) -> None:
        self._fitted_net().weights = [
            np.concatenate([to_numpy(b)[:, None], to_numpy(C).T], axis=1)
            for C, b in zip(coefs, intercepts)
        ]

    # ------------------------------------------------------------ inputs

    def _check_params(self) -> None:
        if isinstance(self.solver, str) and self.solver == "lbfgs":
            raise ValueError(
                "solver='lbfgs' is not offered by xpmlp, which trains with minibatch "
                f"gradient steps only; accepted: {', '.join(map(repr, _SOLVERS))}"
            )
        self._validate_params()

    def _check_array_api_X(self, X, *, reset: bool) -> None:
        """scikit-learn's checks of ``X`` for arrays that stay on their backend."""
        check_readable(X, "X")  # sparse and meta tensors, named before their device is
        if X.ndim != 2:
            raise ValueError(
                f"Expected a 2D array X of shape (n_samples, n_features), got shape "
                f"{tuple(X.shape)}"
            )
        if X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"X of shape {tuple(X.shape)} is empty; at least 1 sample needed")
        if reset:
            self.n_features_in_ = int(X.shape[1])
            self.__dict__.pop("feature_names_in_", None)
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True  # scikit-learn's check_array_api_input runs on them
        return tags

    def _fit_inputs(self, X, y, sample_weight, *, reset: bool):
        if scipy.sparse.issparse(y):
            raise TypeError(
                f"y is a sparse {type(y).__name__}; {type(self).__name__} accepts dense arrays "
                "only: pass y.toarray()"
            )
        xp_in = _array_api_namespace(X)
        if xp_in is None:  # scikit-learn's checks, on the host: a tensor's values, detached
            y, sample_weight = _host(y), _host(sample_weight)
            X, y = validate_data(
                self,
                X,
                y,
                multi_output=True,
                dtype=(np.float64, np.float32),
                y_numeric=not isinstance(self, ClassifierMixin),
                reset=reset,
            )
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        else:
            self._check_array_api_X(X, reset=reset)
            if y is None:
                raise ValueError(
                    f"{type(self).__name__} requires y to be passed, but the target y is None."
                )
            if sample_weight is not None:
                sample_weight = _array_api_sample_weight(sample_weight, int(X.shape[0]))
        return X, y, sample_weight, xp_in

    def _float(self, name: str) -> float:
        """Parameter ``name`` as a float (scikit-learn's checks let ints past the float range
        through: 10**400)."""
        try:
            return float(getattr(self, name))
        except OverflowError:
            raise ValueError(f"{name} is too large for a float; accepted: a float") from None

    def _hidden_sizes(self) -> list[int]:
        h = self.hidden_layer_sizes
        sizes = list(h) if hasattr(h, "__iter__") else [h]
        accepted = "accepted: an int >= 1 or a sequence of them"
        # a bool is an Integral, not a size; a float is refused as scikit-learn refuses it
        if not all(isinstance(n, Integral) and not isinstance(n, bool) for n in sizes):
            raise TypeError(f"hidden_layer_sizes={h!r}; {accepted}")
        if not all(n > 0 for n in sizes):
            raise ValueError(f"hidden_layer_sizes={h!r}; {accepted}")
        return [int(n) for n in sizes]

    def _seed(self):
        """The model's seed: a RandomState as scikit-learn's for ``init="sklearn"``."""
        rs = self.random_state
        if _replays_sklearn(self.init):
            return check_random_state(rs)
        if rs is None or isinstance(rs, Integral):
            return rs
        return int(check_random_state(rs).randint(np.iinfo(np.int32).max))

    # ------------------------------------------------------------ training

    def _fit(self, X, y, sample_weight=None, *, incremental: bool, classes=None):
        """``fit`` (``max_iter`` epochs) or ``partial_fit`` (one epoch, ``incremental``).

        All or nothing: a call that raises leaves every fitted attribute as it was."""
        self._check_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        hidden = self._hidden_sizes()
        # scikit-learn's first pass: new weights, labels and stopping state
        first = "_net" not in self.__dict__ or (not self.warm_start and not incremental)
        with _unchanged_on_error(self):
            X, y, sample_weight, xp_in = self._fit_inputs(X, y, sample_weight, reset=first)
            T, stratify, class_sw = self._targets(
                y, xp_in, incremental=incremental, classes=classes, sample_weight=sample_weight
            )
            K = 1 if T.ndim == 1 else int(T.shape[1])
            net = self._network(X, xp_in, [*hidden, K], first)
            with computing(net):  # its device current, as MLP's own methods
                # validate_data has checked NumPy-like X and y for NaN and inf; the targets of
                # the classifier are its own 0/1 indicators
                Xd, Td = net._pair(X, T, check_finite=xp_in is not None, names=("X", "y"))
                N = int(Xd.shape[0])
                sw = None if sample_weight is None else net._sample_weight(sample_weight, N)
                if class_sw is not None:
                    class_sw = net._array(class_sw)
                    sw = net._sample_weight(class_sw if sw is None else sw * class_sw, N)

                val = None
                if self.early_stopping:
                    Xd, Td, sw, val = self._hold_out(net, Xd, Td, sw, stratify)
                config, opt = self._config(int(Xd.shape[0]), K, incremental)
                order = (
                    _cumulative_shuffle() if _replays_sklearn(net.init) and self.shuffle else None
                )
                rate = net.state.learning_rate if incremental else None
                callbacks = [_printer(self, rate or config.learning_rate)] if self.verbose else []
                before = len(net.history["loss"])
                try:
                    history = net._train(
                        Xd, Td, sw, val, opt, config, callbacks, False, order=order,
                        reset_optimizer=not incremental,  # each fit starts a new optimizer
                        keep_plateau=not first,  # the count and the best go on, as in sklearn
                    )  # fmt: skip
                except KeyboardInterrupt:  # scikit-learn keeps what was trained, and says so
                    warnings.warn("Training interrupted by user.", stacklevel=3)
                    history = {"loss": net.history["loss"][before:]}
                    best = net.state.best_weights
                    if self.early_stopping and best is not None:
                        net._weights = [copy_array(W, xp=net.xp) for W in best]
                except FloatingPointError as exc:
                    raise ValueError(
                        f"{exc}. The solver produced non-finite weights: the input may "
                        "contain large values that need scaling (e.g. "
                        "sklearn.preprocessing.StandardScaler)"
                    ) from exc
                self._net = net
                self._record(len(history["loss"]), K)
        stopped = net.state.no_improvement > self.n_iter_no_change
        if not incremental and self.n_iter_ == self.max_iter and not stopped:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    def _network(self, X, xp_in, sizes: list[int], first: bool) -> MLP:
        """A new network ``[D, *sizes]``, or a copy of the fitted one to train on: its weights
        and state are only read, its generator and history copied, and it takes the current
        ``activation`` and ``dtype`` (scikit-learn's warm start keeps the weights and uses
        the current parameters). ``init`` only draws new weights: a copy keeps the draws
        of the weights it continues, scikit-learn's or its own."""
        if first:
            on_input = xp_in is not None  # the backend follows the input's namespace
            return MLP(
                [int(X.shape[1]), *sizes],
                activation=self.activation,
                output=self._output(_replays_sklearn(self.init)),
                backend=backend_name(xp_in) if on_input else self.backend,
                device=device_of(X) if on_input else self.device,
                dtype=self.dtype,
                seed=self._seed(),
                init=self.init,
            )
        held, hidden = self._net.layer_sizes[1:-1], list(sizes[:-1])
        if held != hidden:  # the fitted layers go on training: not another network
            raise ValueError(
                f"hidden_layer_sizes={tuple(hidden)} differs from the fitted network's "
                f"{tuple(held)}, which warm_start and partial_fit go on training; accepted: "
                "the fitted sizes, or a fit with warm_start=False for new layers"
            )
        net = copy.copy(self._net)  # its own loop state and history
        replay = _replays_sklearn(net.init)
        # scikit-learn draws from a fresh check_random_state each fit
        net.rng = check_random_state(self.random_state) if replay else copy.deepcopy(net.rng)
        net.activation = get_activation(self.activation)
        net.output = get_output(self._output(replay))  # also after unpickling
        if dtype_name(net.dtype) != self.dtype:
            net.dtype = self.dtype
            net.to(net.xp, net.device)  # weights, optimizer state and best weights
        return net

    def _output(self, replay: bool):
        """The output layer; replaying scikit-learn, with its clipped log-loss."""
        name = self._output_name()
        return CLIPPED[name] if replay else name

    def _hold_out(self, net: MLP, X, T, sw, stratify):
        """scikit-learn's validation split: ``ceil(validation_fraction N)`` samples,
        stratified by the labels ``stratify`` where scikit-learn's split can do so, else at
        random; replaying scikit-learn, stratified for a single output only, as it does."""
        N = int(X.shape[0])
        n_val = math.ceil(self.validation_fraction * N)
        if n_val < 2 or n_val >= N:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} of {N} samples gives a "
                f"validation set of {n_val}; it needs at least 2 samples and must leave some "
                "for training: change validation_fraction or add samples"
            )
        if _replays_sklearn(net.init):
            stratify = stratify if T.shape[1] == 1 else None
        elif stratify is not None:
            counts = np.unique(stratify, return_counts=True)[1]
            if counts.min() < 2 or min(n_val, N - n_val) < len(counts):
                stratify = None
        return net._hold_out(X, T, sw, n_val, stratify)

    def _config(self, N: int, K: int, incremental: bool):
        """The loop's :class:`~xpmlp.train.Config` and the optimizer, from the parameters."""
        if self.batch_size == "auto":
            batch_size = min(200, N)
        else:
            if self.batch_size > N:
                warnings.warn(
                    f"batch_size={self.batch_size} is larger than the {N} training samples; "
                    f"it is clipped to {N}",
                    UserWarning,
                    stacklevel=4,
                )
            batch_size = min(self.batch_size, N)
        config = train.Config(
            epochs=1 if incremental else self.max_iter,
            batch_size=batch_size,
            learning_rate=self._float("learning_rate_init"),
            # scikit-learn's Adam ignores the schedule
            schedule=self.learning_rate if self.solver == "sgd" else "constant",
            power_t=self._float("power_t"),
            alpha=self._float("alpha"),
            shuffle=bool(self.shuffle),
            tol=self._float("tol"),
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=bool(self.early_stopping),
            loss_scale=self._loss_scale(K),
            loss_by_batch_size=True,  # scikit-learn's epoch loss under sample weights
        )
        if self.solver == "sgd":
            opt = optim.sgd(momentum=self.momentum, nesterov=self.nesterovs_momentum)
        else:
            opt = optim.adam(beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon)
        return config, opt

    def _record(self, n_iter: int, K: int) -> None:
        """Set scikit-learn's fitted attributes."""
        state = self._net.state
        self.n_iter_ = n_iter
        if self.early_stopping:
            self.validation_scores_ = list(state.history["val_score"])
            self.best_validation_score_ = float(state.best_score)
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = float(state.best_loss)
        self.n_outputs_ = K

    def fit(self, X, y, sample_weight=None):
        """Train from scratch (or from the last weights with ``warm_start=True``).

        Parameters
        ----------
        X : array (N, D), NumPy-like or of any Array API backend
        y : array (N,) or (N, K): targets, or class labels for the classifier
        sample_weight : array (N,), optional
            Weights ``s_n >= 0`` of the samples in the loss ``sum_n s_n L_n / sum_n s_n``.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    # ------------------------------------------------------------ prediction

    def _forward(self, X):
        """Network output ``Y`` (N, K) in the model's backend, and where to return results."""
        check_is_fitted(self)
        xp_in = _array_api_namespace(X)
        if xp_in is None:
            X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
            device = None
        else:
            self._check_array_api_X(X, reset=False)
            device = device_of(X)
        return self._net.predict(X), xp_in, device

    def _score(self, X, y, sample_weight, metric) -> float:
        y_pred = self.predict(X)
        return float(metric(_host(y), _host(y_pred), sample_weight=_host(sample_weight)))


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor: squared error, identity output, any backend.

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units ``n_1, ..., n_{L-1}`` of the hidden layers.
    activation : {"identity", "logistic", "tanh", "relu"}, default="relu"
        Hidden activation ``h``.
    solver : {"sgd", "adam"}, default="adam"
        "lbfgs", offered by scikit-learn, raises a ``ValueError``.
    alpha : float, default=1e-4
        L2 penalty ``alpha / (2 S) sum ||W[l][:, 1:]||^2`` (biases excluded), S the batch
        size or its total sample weight.
    batch_size : int or "auto", default="auto"
        "auto" is ``min(200, N)``; larger than N is clipped to N with a warning.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Schedule of the "sgd" step size; "adam" keeps ``learning_rate_init``.
    learning_rate_init : float, default=1e-3
    power_t : float, default=0.5
        Exponent of "invscaling": ``eta_t = learning_rate_init / (t + 1)**power_t``.
    max_iter : int, default=200
        Epochs (passes over the training data).
    shuffle : bool, default=True
    random_state : int, RandomState or None, default=None
    tol : float, default=1e-4
        Stop (or, "adaptive", divide the step by 5) after more than ``n_iter_no_change``
        epochs in a row that improve the loss, or the validation score, by less than ``tol``.
    verbose : bool, default=False
        Print the loss of every epoch.
    warm_start : bool, default=False
        ``fit`` continues from the last weights instead of drawing new ones (``init`` is not
        used), with the current ``activation`` and ``dtype``, and goes on counting the
        epochs without improvement, as ``partial_fit`` does.
    momentum : float, default=0.9
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop on its R^2 score and keep the
        weights of its best epoch.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's hyper-parameters.
    n_iter_no_change : int, default=10
    backend : {"numpy", "cupy", "torch", "jax", "array_api_strict"} or None, default=None
        Backend for NumPy-like input; an input of another backend is trained there (by a
        fresh fit; partial_fit and warm starts stay where the network lives).
    device : str, int or None, default=None
        Device on ``backend`` (``"cuda:1"``, ...); an array input's own device wins.
    dtype : {"float32", "float64"}, default="float64"
    init : {"glorot", "he", "torch", "sklearn"} or callable, default="glorot"
        Initial weights; "sklearn" replays scikit-learn's random draws throughout.

    Attributes
    ----------
    coefs_ : list of arrays (n_l, n_{l+1}), ``W[l][:, 1:].T`` in the model's backend
    intercepts_ : list of arrays (n_{l+1},), ``W[l][:, 0]``
    loss_ : float
        Last epoch's loss: the half squared error averaged over samples and outputs (as
        scikit-learn reports it) plus the L2 term.
    loss_curve_ : list of float
    best_loss_ : float or None
    validation_scores_ : list of float or None
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last call.
    t_ : int
        Samples seen in training, the time step of "invscaling".
    n_features_in_, feature_names_in_, n_layers_, n_outputs_, out_activation_

    Examples
    --------
    >>> import numpy as np
    >>> from xpmlp.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 64)[:, None]
    >>> reg = MLPRegressor((16,), "tanh", learning_rate_init=0.05, max_iter=1000,
    ...                    random_state=0).fit(X, np.sin(3 * X[:, 0]))
    >>> reg.score(X, np.sin(3 * X[:, 0])) > 0.9
    True
    """

    def _targets(self, y, xp_in, *, incremental, classes, sample_weight):
        if xp_in is not None and namespace_of(y) is None:
            y = np.asarray(y, dtype=np.float64)
        y = _column_to_1d(y)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must have shape (N,) or (N, K), got {tuple(y.shape)}")
        return y, None, None

    @staticmethod
    def _output_name() -> str:
        return "identity"

    @staticmethod
    def _loss_scale(K: int) -> float:
        return 1.0 / K  # scikit-learn reports the squared error averaged over the outputs

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, continuing the weights and the optimizer.

        Parameters
        ----------
        X : array (N, D)
        y : array (N,) or (N, K)
        sample_weight : array (N,), optional

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted targets, (N,) or (N, K), in the namespace and on the device of ``X``."""
        Y, xp_in, device = self._forward(X)
        if self.n_outputs_ == 1:
            Y = Y[:, 0]
        return _to_input_namespace(Y, xp_in, device)

    def score(self, X, y, sample_weight=None) -> float:
        """R^2 of the prediction, averaged over outputs (scikit-learn's ``r2_score``)."""
        return self._score(X, y, sample_weight, r2_score)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier: cross-entropy with logistic or softmax output.

    Binary and multilabel targets get logistic outputs and binary cross-entropy, multiclass
    targets a softmax output and categorical cross-entropy; for each the output error is
    ``Y - T``. Parameters and attributes are those of :class:`MLPRegressor`, plus:

    Parameters
    ----------
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, applied as sample weights (times ``sample_weight``):
        ``{label: weight}``, or "balanced", ``N / (n_classes * count(label))`` of the data
        of ``fit``, each sample counted by its ``sample_weight`` where given (as
        ``LogisticRegression``): ``partial_fit``, which sees one batch, refuses "balanced"
        (as scikit-learn's ``SGDClassifier`` does).

    Attributes
    ----------
    classes_ : array (n_classes,)
    loss_ : float
        Last epoch's cross-entropy (mean over samples) plus the L2 term; for
        ``init="sklearn"`` with every probability clipped to [eps, 1 - eps], as scikit-learn.

    Early stopping scores the accuracy on a validation set stratified by class where each
    class can have samples on both sides (``init="sklearn"``: as scikit-learn, which
    stratifies binary targets only).

    Examples
    --------
    >>> import numpy as np
    >>> from xpmlp.sklearn import MLPClassifier
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 10)
    >>> y = np.array(["no", "yes", "yes", "no"] * 10)
    >>> clf = MLPClassifier((8,), "tanh", learning_rate_init=0.05, max_iter=500,
    ...                     random_state=0).fit(X, y)
    >>> clf.predict([[0.0, 1.0], [1.0, 1.0]]).tolist()
    ['yes', 'no']
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        class_weight=None,
        backend=None,
        device=None,
        dtype="float64",
        init="glorot",
    ):
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            backend=backend,
            device=device,
            dtype=dtype,
            init=init,
        )
        self.class_weight = class_weight

    def _targets(self, y, xp_in, *, incremental, classes, sample_weight):
        """Labels -> indicator targets ``T`` (N, K), stratification labels, class weights
        (per sample; "balanced" counts each sample by its ``sample_weight``)."""
        y = _column_to_1d(np.asarray(_host(y)))
        classes = _host(classes)  # CuPy's refuse np.asarray
        check_classification_targets(y)
        if incremental and _check_partial_fit_first_call(self, classes):
            lb = LabelBinarizer()
            lb.fit(y if type_of_target(y).startswith("multilabel") else classes)
            self._label_binarizer = lb
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            labels = unique_labels(y)
            if self.warm_start:  # partial_fit too, as scikit-learn checks it
                if set(labels) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{labels}"
                    )
            elif len(np.setdiff1d(labels, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {labels}."
                )
        lb = self._label_binarizer
        T = lb.transform(y).astype(np.float64)
        multilabel = lb.y_type_.startswith("multilabel")
        stratify = None if multilabel else y  # the labels of the validation split
        class_sw = None
        if self.class_weight is not None:
            if multilabel:
                raise ValueError(
                    f"class_weight={self.class_weight!r} is not supported for multilabel y; "
                    "pass sample_weight instead"
                )
            if incremental and isinstance(self.class_weight, str):
                raise ValueError(
                    "class_weight='balanced' is not supported by partial_fit, which sees one "
                    "batch at a time; pass a dict, e.g. from "
                    "sklearn.utils.class_weight.compute_class_weight"
                )
            # over every class the estimator knows, as SGDClassifier: a partial_fit batch
            # may lack a class that the dict weighs
            index = np.searchsorted(self.classes_, y)
            if isinstance(self.class_weight, str) and sample_weight is not None:
                # "balanced" over the weighted counts, as repeated samples count (scikit-
                # learn's compute_class_weight with sample_weight=, from version 1.7); a
                # class of weight 0 gets 0: its samples have no weight to scale
                sw = np.asarray(_host(sample_weight), dtype=np.float64)
                counts = np.bincount(index, weights=sw, minlength=len(self.classes_))
                with np.errstate(divide="ignore"):
                    weights = np.sum(counts) / (len(self.classes_) * counts)
                weights[counts == 0] = 0.0
            else:
                weights = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
            class_sw = weights[index]
        return T, stratify, class_sw

    def _output_name(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    @staticmethod
    def _loss_scale(K: int) -> float:
        return 1.0

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``, continuing the weights and the optimizer.

        Parameters
        ----------
        X : array (N, D)
        y : array (N,) of labels, or (N, n_classes) indicators for multilabel
        sample_weight : array (N,), optional
        classes : array (n_classes,)
            Every label of the whole data set; required on the first call only.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _proba(self, X, log=False):
        """Class probabilities (or their logs) in the model's backend, computed on its
        device (CuPy launches on the current one), and where to return them."""
        Y, xp_in, device = self._forward(X)
        xp = self._net.xp
        with computing(self._net):
            if self.n_outputs_ == 1:  # binary: the one output is P(classes_[1])
                Y = xp.concat([1 - Y, Y], axis=1)
            return (xp.log(Y) if log else Y), xp_in, device

    def predict_proba(self, X):
        """Class probabilities (N, n_classes), ordered as ``classes_``, in ``X``'s namespace."""
        return _to_input_namespace(*self._proba(X))

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``, in ``X``'s namespace."""
        return _to_input_namespace(*self._proba(X, log=True))

    def predict(self, X):
        """Predicted labels (N,), or (N, n_classes) indicators for multilabel ``y``, in
        ``X``'s namespace where the labels are numbers."""
        Y, xp_in, device = self._forward(X)
        Y = to_numpy(Y)
        labels = self._label_binarizer.inverse_transform(Y[:, 0] if Y.shape[1] == 1 else Y)
        if xp_in is None or labels.dtype.kind not in "biuf":
            return labels
        try:
            out = asarray(labels, xp=xp_in, device=device)
        except (TypeError, ValueError):  # a dtype the namespace lacks (float16 labels)
            return labels
        # where the namespace would change the labels' dtype (JAX without 64-bit ints cut
        # int64 labels to their low 32 bits), they stay NumPy
        return out if to_numpy(out[:1, ...]).dtype == labels.dtype else labels

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy of the predicted labels (scikit-learn's ``accuracy_score``)."""
        return self._score(X, y, sample_weight, accuracy_score)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = self.class_weight is None
        return tags
