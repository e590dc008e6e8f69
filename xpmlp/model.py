"""``MLP``: the stateful shell around the pure core (weights, backend, configuration)."""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import warnings
import weakref
from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

import array_api_compat
import numpy as np

from . import network, optim, train
from ._checks import (
    check_bool,
    check_callbacks,
    check_layer_sizes,
    check_nonneg,
    check_positive,
    check_shape,
)
from .activations import ACTIVATIONS, get_activation
from .backend import (
    BackendError,
    all_finite,
    asarray,
    backend_name,
    check_readable,
    copy_array,
    device_of,
    device_scope,
    dtype_name,
    get_dtype,
    namespace_of,
    numpy_views,
    resolve,
    take_rows,
    to_numpy,
)
from .objectives import CLIPPED, OUTPUTS, get_output
from .optim import Optimizer, get_optimizer

_TRAINING: weakref.WeakSet = weakref.WeakSet()  # the models whose fit is running


def own_functions(net: MLP) -> tuple[bool, bool]:
    """Whether the activation and the output are xpmlp's own of their names (not a custom
    ``(h, dh)`` pair or another function object): restorable by name, and written for
    any namespace."""
    a, o = net.activation, net.output
    return ACTIVATIONS.get(a.name) is a, OUTPUTS.get(o.name) is o or CLIPPED.get(o.name) is o


def check_storable(net: MLP, prefix: str = "") -> None:
    """Refuse a model whose activation or output a file or pickle cannot restore by name:
    a custom ``(h, dh)`` pair, or any function object other than the one of its name."""
    a, o = net.activation, net.output
    own_a, own_o = own_functions(net)
    if not own_a:
        raise ValueError(
            f"{prefix}activation={a.name!r} is a custom activation, which cannot be restored "
            f"by name (its functions are not stored); accepted: {', '.join(ACTIVATIONS)}"
        )
    if not own_o:
        raise ValueError(
            f"{prefix}output={o.name!r} is a custom output, which cannot be restored by name "
            f"(its functions are not stored); accepted: {', '.join(OUTPUTS)}"
        )


@contextlib.contextmanager
def computing(net: MLP):
    """The context ``net`` computes in: its device current (CuPy launches kernels on the
    current device, not the arrays') and NumPy's underflows ignored (the stable forms'
    ``exp(-|a|)`` of a saturated unit underflows to 0, rightly, also under
    ``np.seterr(all="raise")``). Entered by the public methods that compute."""
    with device_scope(net.xp, net._home()), np.errstate(under="ignore"):
        yield


def _on_device(method: Callable) -> Callable:
    """``method`` run in :func:`computing`."""

    @functools.wraps(method)
    def on_device(self, *args, **kwargs):
        with computing(self):
            return method(self, *args, **kwargs)

    return on_device


class MLP:
    """A multilayer perceptron ``[D, n_1, ..., K]`` trained by error backpropagation.

    "The notes" below are the classic derivation this follows: Bishop, *Pattern Recognition
    and Machine Learning*, chapter 5.

    Parameters
    ----------
    layer_sizes : sequence of int
        ``[D, M, K]`` for the notes' two-layer network: D inputs, M hidden units, K outputs.
    activation : str or (h, dh)
        Hidden activation: "identity" (alias "linear"), "tanh", "logistic" ("sigmoid"),
        "relu", "leaky_relu", "softplus", or a pair of callables ``h(a)``, ``dh(a)``
        written with Array API operations (a model with such a pair cannot be saved or
        pickled: the functions are not stored).
    output : {"identity", "logistic", "softmax"} (aliases "linear", "sigmoid")
        Output activation paired with its loss (squared error, binary or categorical
        cross-entropy); for each the output error is ``Y - T``.
    backend : {"numpy", "cupy", "torch", "jax", "array_api_strict"}, module or None
        ``None`` reads ``XPMLP_BACKEND``, else NumPy.
    device : str, int or None
        ``"cuda:1"``, a CuPy device id, ... ``None`` is the backend's default.
    dtype : {"float32", "float64"}, default "float32"
    seed : None, int >= 0, or a numpy Generator, RandomState, SeedSequence or BitGenerator
        Seeds the host generator that draws initial weights, shuffles and splits: the same
        seed gives the same initial weights on every backend. Default 0, so that two models
        made alike start alike; ``None`` draws fresh entropy. With ``init="sklearn"`` the
        generator is a ``numpy.random.RandomState`` (an int seed below 2**32, or a
        RandomState itself). A Generator or RandomState given is drawn from, not copied.
    init : {"glorot", "he", "torch", "sklearn"} or callable, default "glorot"
        Initial weights (see :func:`xpmlp.network.init_weights`; "xavier" and "kaiming"
        name "glorot" and "he"). A callable is used here only: a saved or pickled model
        keeps ``init=None`` in its place.

    Examples
    --------
    The notes' two-layer network, W1 of shape M x (D+1) and W2 of shape K x (M+1):

    >>> import numpy as np, xpmlp
    >>> x = np.linspace(-1, 1, 50)[:, None]
    >>> net = xpmlp.MLP([1, 3, 1], activation="tanh", output="identity", seed=0)
    >>> [W.shape for W in net.weights]
    [(3, 2), (1, 4)]
    >>> history = net.fit(x, np.sin(np.pi * x), epochs=10, batch_size=1, learning_rate=0.1)
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: Any = "tanh",
        output: str = "identity",
        *,
        backend: Any = None,
        device: Any = None,
        dtype: str = "float32",
        seed: int | np.random.Generator | None = 0,
        init: str | Callable[..., np.ndarray] = "glorot",
    ):
        self.layer_sizes = check_layer_sizes(layer_sizes)
        self.activation = get_activation(activation)
        self.output = get_output(output)
        if self.output.name == "softmax" and self.layer_sizes[-1] < 2:  # always 1: no loss
            raise ValueError(
                f"output='softmax' over {self.layer_sizes[-1]} output unit; accepted: K >= 2 "
                "outputs (two classes as one unit: output='logistic')"
            )
        self.init = init  # checked by network.init_weights below
        self.xp, self.device = resolve(backend, device)
        self.dtype = get_dtype(dtype, xp=self.xp)
        self.seed = seed
        self.rng = _host_rng(seed, init)
        W0 = network.init_weights(
            self.layer_sizes, rng=self.rng, init=init, activation=self.activation
        )
        try:  # checked as assigned weights are
            self.weights = W0
        except (TypeError, ValueError) as exc:  # only a callable init can give such weights
            raise type(exc)(f"init={init!r} gave weights that are not usable: {exc}") from None
        self.state = train.LoopState()
        self._optimizer_key: tuple | None = None

    # ------------------------------------------------------------ arrays and weights

    @property
    def backend(self) -> str:
        """The backend's name: "numpy", "cupy", "torch", "jax" or "array_api_strict"."""
        return backend_name(self.xp)

    def _array(self, x):
        """``x`` in the model's backend and dtype, on the model's device: where none was
        named, the weights' (an array on another device is moved, as with a named device,
        not left to fail in the first product; host data goes there too, not to the
        current device: CuPy weights made under ``with cupy.cuda.Device(1)``)."""
        home = self._home()
        there = home is None or (namespace_of(x) is self.xp and device_of(x) == home)
        return asarray(x, xp=self.xp, dtype=self.dtype, device=None if there else home)

    def _home(self):
        """The device the model computes on: the one named, else its weights' (CuPy weights
        made under ``with cupy.cuda.Device(1)``: cuda:1, whatever device is current)."""
        if self.device is not None or "_weights" not in vars(self):
            return self.device
        return device_of(self._weights[0])

    @property
    def weights(self) -> tuple:
        """``W[l]`` of shape (n_{l+1}, n_l + 1), bias in column 0, in the model's backend.

        A tuple: replace weights by assigning a whole list or tuple (``net.weights = [...]``,
        checked and copied), also from a callback, where training goes on from them."""
        return tuple(self._weights)

    @weights.setter
    @_on_device  # CuPy copies onto the current device: the model's (cuda:1's weights there)
    def weights(self, weights: Sequence[Any]) -> None:
        L = len(self.layer_sizes) - 1
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights must be a list of {L} arrays, got {type(weights).__name__}")
        if len(weights) != L:
            raise ValueError(f"weights must be a list of {L} arrays, got {len(weights)}")
        new = []
        for l, W in enumerate(weights):
            W = self._convert(W, f"weights[{l}]")
            shape = (self.layer_sizes[l + 1], self.layer_sizes[l] + 1)
            if tuple(W.shape) != shape:
                raise ValueError(
                    f"weights[{l}] has shape {tuple(W.shape)}; "
                    f"layer {l + 1} needs {shape} (n_{l + 1}, n_{l} + 1), bias in column 0"
                )
            new.append(copy_array(W, xp=self.xp))  # never alias the caller's array
        self._weights = new

    def _convert(self, X, name: str, *, check_finite: bool = True):
        """``X`` (any backend, or nested lists) as an array of the model's backend and dtype,
        finite after the cast (``check_finite=False``: the caller has checked ``X`` itself;
        a cast to a narrower float, which may overflow, is still checked)."""
        if isinstance(X, (str, bytes)) or X is None:
            raise TypeError(f"{name} must be an array of numbers, got {type(X).__name__}")
        check_readable(X, name)
        if isinstance(X, np.ma.MaskedArray) and np.ma.is_masked(X):  # np.asarray drops it
            raise ValueError(
                f"{name} is a masked array with masked entries; accepted: arrays of values "
                f"({name}.filled(value), or without the masked rows)"
            )
        src = namespace_of(X)
        if src is None or backend_name(src) == "numpy":
            try:
                A = np.asarray(X)
            except (ValueError, TypeError, RuntimeError) as exc:  # ragged; tensors with grad
                raise ValueError(
                    f"{name} must be an array, or lists of numbers with rows of equal length; "
                    f"NumPy cannot convert it ({type(exc).__name__}: {exc})"
                ) from None
            if A.dtype == object and hasattr(X, "to_numpy") and _numeric_columns(X):
                try:  # pandas' nullable Float64, Int64, boolean: NA becomes NaN
                    A = X.to_numpy(dtype=np.float64, na_value=np.nan)
                except (TypeError, ValueError):
                    pass  # not numbers: refused below
            X = to_numpy(A)  # ml_dtypes' bfloat16, float8 as float32
            src = namespace_of(X)
        if not src.isdtype(X.dtype, ("bool", "integral", "real floating")):
            raise TypeError(f"{name} must hold numbers (bool, int or float), got dtype {X.dtype}")
        floating = src.isdtype(X.dtype, "real floating")
        narrows = floating and float(src.finfo(X.dtype).max) > float(self.xp.finfo(self.dtype).max)
        with np.errstate(over="ignore"):  # reported below, naming the argument
            A = self._array(X)
        if floating and (check_finite or narrows) and not all_finite(A, xp=self.xp):
            if narrows and all_finite(X, xp=src):
                big = float(self.xp.finfo(self.dtype).max)
                raise ValueError(
                    f"{name} contains NaN or inf after the cast to the model's dtype "
                    f"{dtype_name(self.dtype)}: values beyond +-{big:.4g} overflow; accepted: "
                    "finite numbers within that range"
                    + ("" if dtype_name(self.dtype) == "float64" else " (or a float64 model)")
                )
            raise ValueError(f"{name} contains NaN or inf; accepted: finite numbers")
        return A

    def _input(self, X, name: str, width: int, *, check_finite: bool = True):
        """``X`` as a finite (N, width) array of the model's backend and dtype (see
        :meth:`_convert`); a 1-D ``X`` is a column when ``width`` is 1."""
        A = self._convert(X, name, check_finite=check_finite)
        if A.ndim == 1 and width == 1:
            A = A[:, None]
        check_shape(tuple(A.shape), name, width)
        return A

    def _pair(self, X, T, *, check_finite: bool = True, names=("X", "T")):
        nx, nt = names
        X = self._input(X, nx, self.layer_sizes[0], check_finite=check_finite)
        try:
            T = self._input(T, nt, self.layer_sizes[-1], check_finite=check_finite)
        except ValueError as exc:
            if self.output.name == "softmax" and len(np.shape(T)) == 1:
                raise ValueError(
                    f"{exc}; class labels go in as one-hot rows "
                    "(xpmlp.sklearn.MLPClassifier takes the labels themselves)"
                ) from None
            raise
        if X.shape[0] != T.shape[0]:
            raise ValueError(
                f"{nx} and {nt} must have the same number of rows, "
                f"got {X.shape[0]} and {T.shape[0]}"
            )
        if X.shape[0] == 0:
            raise ValueError(f"{nx} is empty; at least one sample is needed")
        if self.output.name == "softmax" and not _distributions(T, xp=self.xp):
            # y - t is the cross-entropy's gradient only where every row of t sums to 1
            raise ValueError(
                f"{nt} must hold one distribution per row for a softmax output; accepted: "
                "numbers >= 0 summing to 1 in each row (one-hot or soft labels)"
            )
        if self.output.name == "logistic" and not bool(self.xp.all((T >= 0) & (T <= 1))):
            # below 0 or above 1 the cross-entropy has no minimum: the logits grow for ever
            lo, hi = float(self.xp.min(T)), float(self.xp.max(T))
            raise ValueError(
                f"{nt} holds values in [{lo:g}, {hi:g}] for a logistic output; accepted: "
                "numbers in [0, 1] (0/1 labels or probabilities)"
            )
        return X, T

    # ------------------------------------------------------------ maths

    @_on_device
    def forward(self, X) -> network.Cache:
        """The forward pass with everything it stores (``A``, ``Z``); see :mod:`network`."""
        X = self._input(X, "X", self.layer_sizes[0])
        return network.forward(
            self._weights, X, activation=self.activation, output=self.output, xp=self.xp
        )

    @_on_device
    def predict(self, X) -> Any:
        """Network output ``Y`` (N, K), an array of the model's backend (computed keeping only
        the layer at hand, unlike :meth:`forward`)."""
        X = self._input(X, "X", self.layer_sizes[0])
        return self._predict(self._weights, X)

    def _predict(self, weights, X):
        return network.predict(
            weights, X, activation=self.activation, output=self.output, xp=self.xp
        )

    @_on_device
    def loss_and_gradients(self, X, T, *, sample_weight=None, alpha: float = 0.0):
        """The loss (a float) and its gradients ``grads``, shaped like ``weights``: the mean
        of the per-sample losses (weighted by ``sample_weight``, if given) plus the L2 term
        ``alpha`` (see ``fit``)."""
        X, T = self._pair(X, T)
        sw = None if sample_weight is None else self._sample_weight(sample_weight, X.shape[0])
        loss, grads = train.loss_and_gradients(
            self._weights,
            X,
            T,
            activation=self.activation,
            output=self.output,
            sample_weight=sw,
            alpha=check_nonneg(alpha, "alpha"),
            xp=self.xp,
        )
        return float(loss), grads

    @_on_device
    def score(self, X, T) -> float:
        """R^2 (averaged over outputs) for regression; accuracy for logistic/softmax output."""
        X, T = self._pair(X, T)
        return float(self._score(self._weights, X, T))

    def _score(self, weights, X, T, sw=None):
        """R^2 or accuracy of ``weights`` on ``(X, T)``, ``sw`` weighing the samples. Torch
        CPU tensors trained on NumPy's BLAS are scored through NumPy views of them
        (:func:`backend.numpy_views`) where the activation and output are xpmlp's own, so
        that the score between two epochs wakes no torch threads beside NumPy's BLAS."""
        arrays = [*weights, X, T, *([] if sw is None else [sw])]
        views = numpy_views(arrays, self.xp) if all(own_functions(self)) else None
        if views is None:
            return self._metric(weights, X, T, sw, xp=self.xp)
        n, xp = len(weights), array_api_compat.array_namespace(*views)
        X, T, *sw = views[n:]
        with np.errstate(all="ignore"):  # silent on overflow, as torch is
            return self._metric(views[:n], X, T, sw[0] if sw else None, xp=xp)

    def _metric(self, weights, X, T, sw, *, xp):
        """:meth:`_score` in namespace ``xp``."""
        Y = network.predict(weights, X, activation=self.activation, output=self.output, xp=xp)
        if self.output.name == "identity":
            return r2_score(T, Y, sw, xp=xp)
        if self.output.name == "softmax":
            hit = xp.argmax(Y, axis=1) == xp.argmax(T, axis=1)
        else:
            hit = xp.all((Y > 0.5) == (T > 0.5), axis=1)
        hit = xp.astype(hit, Y.dtype)
        return xp.mean(hit) if sw is None else xp.sum(sw * hit) / xp.sum(sw)

    def _sample_weight(self, sample_weight, N):
        sw = self._convert(sample_weight, "sample_weight")
        if sw.ndim == 2 and sw.shape[1] == 1:  # a column, as T may be
            sw = sw[:, 0]
        if sw.ndim != 1:
            raise ValueError(
                f"sample_weight has shape {tuple(sw.shape)}; accepted: (N,), one weight per sample"
            )
        if sw.shape[0] != N:
            raise ValueError(f"sample_weight has {sw.shape[0]} entries for {N} samples")
        with np.errstate(over="ignore"):  # an infinite sum is reported below
            low, total = float(self.xp.min(sw)), float(self.xp.sum(sw))
        if not (low >= 0 and 0 < total < math.inf):
            raise ValueError(
                f"sample_weight has minimum {low:g} and sum {total:g} in the model's dtype "
                f"{dtype_name(self.dtype)}; accepted: weights >= 0 with a positive, finite sum"
            )
        return sw

    # ------------------------------------------------------------ training

    @_on_device
    def fit(
        self,
        X,
        T,
        *,
        epochs: int = 100,
        batch_size: int | None = 32,
        learning_rate: float = 0.01,
        optimizer: str | Optimizer = "sgd",
        schedule: str = "constant",
        power_t: float = 0.5,
        alpha: float = 0.0,
        clip_norm: float | None = None,
        shuffle: bool = True,
        tol: float | None = None,
        n_iter_no_change: int = 10,
        early_stopping: bool = False,
        validation_fraction: float | None = None,
        validation_data: tuple | None = None,
        sample_weight=None,
        callbacks: Sequence[Callable] = (),
        verbose: bool = False,
    ) -> dict:
        """Train by backpropagation and gradient-based updates; returns this call's history.

        Parameters
        ----------
        X, T : arrays (N, D), (N, K) of any backend; converted once to the model's and never
            written. They must not change while ``fit`` runs (e.g. in a callback).
        epochs : passes over the training data.
        batch_size : samples per update; 1 is the notes' per-sample rule, None the full batch.
        learning_rate : eta > 0, the initial step size.
        optimizer : "sgd" (the notes' rule), "adam", or an :class:`~xpmlp.optim.Optimizer`
            such as ``xpmlp.optim.sgd(momentum=0.9, nesterov=True)``. Its state is kept from
            one ``fit`` to the next while the optimizer, its hyper-parameters,
            ``learning_rate``, ``schedule`` and ``power_t`` stay the same.
        schedule : "constant", "invscaling" (eta / (t + 1)**power_t after each epoch, t =
            samples seen over every fit; a fresh optimizer state starts at eta, as
            scikit-learn's warm start does) or "adaptive" (eta / 5 after more than
            ``n_iter_no_change`` epochs without a ``tol`` gain; with ``tol=None``, without any
            decrease, and training never stops early).
        power_t : the exponent of "invscaling" (default 0.5); the other schedules ignore it.
        alpha : L2 penalty on the weights (not the biases), scikit-learn's scaling.
        clip_norm : clip the gradients to this global norm.
        shuffle : draw a new sample order each epoch (from the model's host generator);
            False takes the batches in the data's order.
        tol, n_iter_no_change : stop after more than ``n_iter_no_change`` epochs in a row
            that improve the loss (or the validation score, with ``early_stopping``) by less
            than ``tol`` (scikit-learn's rule); ``tol=None`` trains all ``epochs``, unless
            ``early_stopping`` is set (it then stops with ``tol`` 0).
        early_stopping : hold out ``validation_fraction`` (default 0.1) of the data, or use
            ``validation_data``, stop on its score and restore the best weights.
        validation_fraction : hold out this share of the data (drawn from the host
            generator) and score it every epoch; without ``early_stopping`` it is scored and
            reported in the history only.
        validation_data : (X_val, T_val), scored every epoch (R^2 or accuracy).
        sample_weight : array (N,), weights of the samples in the loss.
        callbacks : list of callables ``cb(epoch, loss, val_score, model)``; returning True
            stops. ``epoch`` counts the model's epochs over every ``fit`` so far (a second
            fit goes on from the first one's count). ``model.weights`` there are the arrays
            being trained (copy them to keep them); one that sets ``model.weights`` has
            training go on from those weights; ``model.save`` writes a checkpoint of this
            epoch's weights, optimizer and schedule (a fit resumed from it counts its own
            epochs without improvement and keeps its own best, as any new fit does). They
            run, as the whole fit does, with NumPy's underflow ignored (see
            :func:`xpmlp.model.computing`).
        verbose : show progress: a bar on a terminal or in a Jupyter notebook (with tqdm),
            else about ten lines ``fit: epoch k/E, loss ...`` on standard error. A callback
            that prints should call ``xpmlp.progress.write(line)``, which prints above the
            bar instead of through it.

        Returns
        -------
        dict with lists ``"loss"`` (mean training loss per epoch) and ``"val_score"``.

        A call that raises leaves the model as it was, except for an interrupt (Ctrl-C):
        the ``KeyboardInterrupt`` goes on up, and the model keeps the training done so far
        (weights and optimizer state part-way through the interrupted epoch, as in
        scikit-learn; the history counts the epochs completed). In the main thread a Ctrl-C
        takes effect once the step under way is complete, so that no step is kept half
        done; a second one at once.
        """
        config = train.Config(  # checks each setting
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            schedule=schedule,
            power_t=power_t,
            alpha=alpha,
            clip_norm=clip_norm,
            shuffle=shuffle,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
        )
        verbose = check_bool(verbose, "verbose")
        opt = get_optimizer(optimizer)
        callbacks = check_callbacks(callbacks)
        X, T = self._pair(X, T)
        sw = None if sample_weight is None else self._sample_weight(sample_weight, X.shape[0])
        with self._unchanged_on_error():  # the split draws from self.rng
            X, T, sw, val = self._validation_split(
                X, T, sw, validation_fraction, validation_data, early_stopping
            )
            return self._train(X, T, sw, val, opt, config, callbacks, verbose)

    def _validation_split(self, X, T, sw, fraction, data, early_stopping):
        if data is not None:
            if fraction is not None:
                raise ValueError("give validation_data or validation_fraction, not both")
            if not (isinstance(data, (tuple, list)) and len(data) == 2):
                got = f"a {type(data).__name__}" + (
                    f" of {len(data)}" if isinstance(data, (tuple, list)) else ""
                )
                raise TypeError(f"validation_data is {got}; accepted: a pair (X_val, T_val)")
            return (X, T, sw, (*self._pair(*data, names=("X_val", "T_val")), None))
        if fraction is None:
            if not early_stopping:
                return X, T, sw, None
            fraction = 0.1
        if not (isinstance(fraction, Real) and 0 < fraction < 1):
            raise ValueError(f"validation_fraction={fraction!r}; accepted: a number in (0, 1)")
        N = X.shape[0]
        n_val = int(round(fraction * N))
        if n_val >= N:
            raise ValueError(
                f"validation_fraction={fraction} leaves no training samples out of {N}"
            )
        if n_val < 2:  # one sample's R^2 is 0 whatever the fit: early stopping kept epoch 1
            raise ValueError(
                f"validation_fraction={fraction} of {N} samples holds out {n_val}; accepted: "
                "a fraction that holds out at least 2 samples"
            )
        return self._hold_out(X, T, sw, n_val)

    def _hold_out(self, X, T, sw, n_val: int, stratify=None):
        """Split off ``n_val`` host-drawn samples: ``(X, T, sw)`` to train, ``(X, T, sw)`` to
        score (the validation score weighs its samples as the loss does)."""
        perm = _split_order(self.rng, X.shape[0], n_val, stratify)
        take = lambda A, i: take_rows(A, i, xp=self.xp, device=self._home())  # noqa: E731
        tr, va = perm[n_val:], perm[:n_val]
        sw_tr = None if sw is None else take(sw, tr)
        sw_va = None if sw is None else take(sw, va)
        for part, w in (("training", sw_tr), ("validation", sw_va)):
            if w is not None and not bool(self.xp.sum(w) > 0):
                raise ValueError(
                    f"sample_weight is 0 on every sample of the {part} split; accepted: "
                    "weights with a positive sum on both sides (add weight, or change the split)"
                )
        return take(X, tr), take(T, tr), sw_tr, (take(X, va), take(T, va), sw_va)

    def _train(
        self, X, T, sw, val, opt, config, callbacks, verbose, order=None, reset_optimizer=False,
        keep_plateau=False,
    ):  # fmt: skip
        """Run :func:`train.train` on copies, so that a failed run changes nothing.

        ``order(rng, N)``, if given, draws each epoch's sample order (see :func:`train.train`);
        ``reset_optimizer`` starts a fresh optimizer state even for the same optimizer;
        ``keep_plateau`` goes on counting epochs without improvement, and keeps the best
        score and weights, from the calls before (scikit-learn's warm start and partial_fit).
        """
        if self in _TRAINING:  # a callback's fit would train beside the one that calls it
            raise RuntimeError(
                "fit cannot train a model while its fit runs (a callback); fit it after, or "
                "return True from the callback to stop the running fit"
            )
        xp = self.xp
        weights = [copy_array(W, xp=xp) for W in self._weights]
        # arrays updated in place need copies; the history is only appended to
        state = _map_state(self.state, lambda A: copy_array(A, xp=xp))
        key = optimizer_key(opt, config.learning_rate, config.schedule, config.power_t)
        if reset_optimizer or key != self._optimizer_key:  # a new optimizer starts afresh
            state.opt_state, state.learning_rate = None, None
        if not keep_plateau:  # each fit counts its own epochs without gain, keeps its own best
            state.no_improvement, state.best_score, state.best_weights = 0, -np.inf, None
            state.best_loss = np.inf
        before = {k: len(v) for k, v in state.history.items()}
        validate = None if val is None else (lambda W: self._score(W, *val))
        bar = _progress(config.epochs, verbose)

        def on_epoch(epoch, loss, score, W):
            if bar is not None:
                bar.update(loss, score)
            # callbacks see this epoch's model, and this fit's optimizer (a saved checkpoint)
            self._weights, self.state, self._optimizer_key = W, state, key
            stop = any([bool(cb(epoch, loss, score, self)) for cb in callbacks])  # all called
            if self._weights is not W:  # a callback set model.weights: train those on
                W[:], self._weights = self._weights, W
            return stop

        _TRAINING.add(self)
        try:
            with self._unchanged_on_error():
                weights, state = train.train(
                    weights,
                    X,
                    T,
                    activation=self.activation,
                    output=self.output,
                    optimizer=opt,
                    config=config,
                    state=state,
                    rng=self.rng,
                    sample_weight=sw,
                    validate=validate,
                    on_epoch=on_epoch,
                    order=order,
                    xp=xp,
                )
        except KeyboardInterrupt:  # the model keeps the training done so far (see fit)
            self._weights, self.state, self._optimizer_key = weights, state, key
            raise
        finally:
            _TRAINING.discard(self)
            if bar is not None:
                bar.close()
        self._weights, self.state, self._optimizer_key = weights, state, key
        return {k: v[before[k] :] for k, v in state.history.items()}

    @contextlib.contextmanager
    def _unchanged_on_error(self):
        """Put back the weights, the loop state (history included), the optimizer's key and
        the host generator's state if the block raises: a failed call leaves the model as it
        was. An interrupt (Ctrl-C) is no failure: the model keeps the training done so far."""
        weights, state, rng, key = self._weights, self.state, self.rng, self._optimizer_key
        lengths = {k: len(v) for k, v in state.history.items()}
        saved_rng = rng_state(rng)
        try:
            yield
        except KeyboardInterrupt:
            raise
        except BaseException:
            _trim(state.history, lengths)  # the history lists are shared, not copied
            self._weights, self.state, self.rng, self._optimizer_key = weights, state, rng, key
            _set_rng_state(rng, saved_rng)
            raise

    @property
    def history(self) -> dict:
        """Loss and validation score per epoch over every ``fit`` so far."""
        return self.state.history

    def __repr__(self) -> str:
        return (
            f"MLP({list(self.layer_sizes)}, activation={self.activation.name!r}, "
            f"output={self.output.name!r}, backend={self.backend!r}, "
            f"dtype={dtype_name(self.dtype)!r})"
        )

    # ------------------------------------------------------------ persistence and backends

    def save(self, path) -> None:
        """Write the model to ``path``: an ``.npz`` of NumPy arrays and JSON metadata.

        Read it back with :func:`xpmlp.load` on any backend (see :mod:`xpmlp.io`); ``fit``
        then continues as if it had never stopped.
        """
        from .io import save

        save(self, path)

    def to(self, backend: Any, device: Any = None) -> MLP:
        """Move the weights, the optimizer state and the best weights to another backend.

        Parameters
        ----------
        backend : {"numpy", "cupy", "torch", "jax", "array_api_strict"} or module
        device : str, int or None
            ``None`` is the backend's default device.

        Returns
        -------
        self, now on ``backend``, with the same dtype; ``fit`` continues its optimizer.
        """
        if self in _TRAINING:  # the loop holds arrays of the old backend
            raise RuntimeError(
                "to() cannot move a model while fit trains it (a callback); move it before "
                "or after fit"
            )
        xp, device = resolve(backend, device)
        dtype = get_dtype(dtype_name(self.dtype), xp=xp)
        # None: where the backend makes new arrays, as for a model made with device=None
        # (arrays of this backend left on another device would meet the inputs there)
        target = device_of(xp.asarray(0.0)) if device is None else device

        def move(A):
            A = asarray(A, xp=xp, dtype=dtype, device=target)
            if isinstance(A, np.ndarray) and not A.flags.writeable:  # a view of JAX's memory
                A = A.copy()
            return A

        self._weights, self.state = _map_arrays(self._weights, move), _map_state(self.state, move)
        self.xp, self.device, self.dtype = xp, device, dtype
        return self

    def __deepcopy__(self, memo: dict) -> MLP:
        """An independent copy: arrays, loop state and generator are copied; the activation
        and output functions (a custom ``(h, dh)`` pair too), the namespace, the device and
        the dtype are shared."""
        for shared in (self.activation, self.output, self.xp, self.device, self.dtype):
            memo[id(shared)] = shared
        new = memo[id(self)] = type(self).__new__(type(self))
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def __copy__(self) -> MLP:
        """A shallow copy: the same arrays and generator, and a loop state of its own whose
        history lists are copies (each fit appends to them: a shared list would gain the
        other model's epochs); the pickling state is not used, so a custom ``(h, dh)`` pair
        is kept."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.state = copy.copy(self.state)
        new.state.history = {k: list(v) for k, v in self.state.history.items()}
        return new

    def __getstate__(self) -> dict:
        """Pickle NumPy copies of the arrays and the backend, device and dtype by name."""
        check_storable(self, "cannot pickle: ")
        return {
            **self.__dict__,
            "xp": self.backend,
            "device": _device_spec(self.backend, self.device),
            "dtype": dtype_name(self.dtype),
            "activation": self.activation.name,
            "output": self.output.name,
            "init": self.init if isinstance(self.init, str) else None,  # as save: used once
            "_optimizer_key": _storable_key(self._optimizer_key),
            "_weights": _map_arrays(self._weights, to_numpy),
            "state": _map_state(self.state, to_numpy),
        }

    def __setstate__(self, d: dict) -> None:
        name = d["xp"]
        try:
            xp, device = resolve(name, d["device"])
        except BackendError as exc:  # e.g. trained on a GPU, unpickled on a CPU-only machine
            warnings.warn(
                f"this MLP was pickled on backend={name!r}, which cannot run here ({exc}); "
                "it is unpickled on NumPy instead. net.to(backend) moves it back.",
                UserWarning,
                stacklevel=2,
            )
            xp, device = resolve("numpy")
        self.__dict__.update(d)
        self.activation = get_activation(d["activation"])
        self.output = get_output(d["output"])
        self.dtype = d["dtype"]  # a name: to() resolves it for the backend
        key = self._optimizer_key
        if key is not None and len(key) < 6:  # pickled before it held power_t (4), the rule
            name, hyperparams, learning_rate, schedule, *rest = key
            power_t = rest[0] if rest else train.Config.power_t  # its value before
            try:
                built = optim.OPTIMIZERS[name](**hyperparams)
                key = optimizer_key(built, learning_rate, schedule, power_t)
            except (KeyError, TypeError):  # a user's optimizer: a fit with it starts afresh
                key = (name, hyperparams, learning_rate, schedule, power_t, _USER_RULE)
            self._optimizer_key = key
        self.to(xp, device)


def optimizer_key(opt: Optimizer, learning_rate, schedule, power_t) -> tuple:
    """What ``fit`` compares to go on with an optimizer's state: its name, hyper-parameters,
    rate and schedule, and its rule: for :mod:`optim`'s own the rule and hyper-parameters
    its ``update`` computes with (whatever the tuple's fields say), else its functions."""
    own = optim.rule_of(opt)
    rule = (own[0], dict(own[1])) if own is not None else (opt.init, opt.update)
    return (opt.name, opt.hyperparams, learning_rate, schedule, power_t, rule)


_USER_RULE = ("a user's functions", None)  # in a pickled key: equal to no optimizer's


def _storable_key(key: tuple | None) -> tuple | None:
    """The optimizer key with a user's functions left out: after unpickling, a fit with
    them starts a fresh state."""
    if key is None or isinstance(key[5][0], str):
        return key
    return (*key[:5], _USER_RULE)


def _numeric_columns(X) -> bool:
    """Whether a table (pandas-like: ``dtypes`` or ``dtype``) holds numbers in every column,
    nullable ones included, and no strings."""
    dtypes = getattr(X, "dtypes", getattr(X, "dtype", None))
    if not isinstance(dtypes, np.dtype) and hasattr(dtypes, "__iter__"):
        dtypes = list(dtypes)
    else:
        dtypes = [dtypes]
    return all(getattr(d, "kind", "O") in "biuf" for d in dtypes)


def _map_arrays(x, fn):
    """``fn`` applied to every array in nested lists and NamedTuples (optimizer states)."""
    if isinstance(x, list):
        return [_map_arrays(v, fn) for v in x]
    if isinstance(x, tuple):
        items = [_map_arrays(v, fn) for v in x]
        return type(x)(*items) if hasattr(x, "_fields") else tuple(items)
    if namespace_of(x) is not None:
        return fn(x)
    return x


def _map_state(state: train.LoopState, fn) -> train.LoopState:
    """A shallow copy of ``state`` with ``fn`` applied to its arrays (optimizer state, best
    weights); the history is shared."""
    new = copy.copy(state)
    new.opt_state = _map_arrays(state.opt_state, fn)
    new.best_weights = _map_arrays(state.best_weights, fn)
    return new


def _device_spec(backend: str, device: Any) -> Any:
    """A device as ``resolve`` accepts it, without backend objects: ``"cuda:1"``, 1, ..."""
    if device is None or backend == "array_api_strict":
        return device
    if backend == "cupy":
        return int(device.id)
    if backend == "jax":
        return f"{device.platform}:{device.id}"
    return str(device)


def r2_score(T, Y, sw=None, *, xp):
    """R^2 = 1 - sum (t - y)^2 / sum (t - mean t)^2 per output, averaged over the outputs
    (scikit-learn's default), each sum and the mean weighted by ``sw`` if given; a constant
    target scores 1 if fitted exactly, else 0."""
    if sw is None:
        ss_res = xp.sum((T - Y) ** 2, axis=0)
        ss_tot = xp.sum((T - xp.mean(T, axis=0, keepdims=True)) ** 2, axis=0)
    else:
        w = xp.reshape(sw, (-1, 1))
        ss_res = xp.sum(w * (T - Y) ** 2, axis=0)
        ss_tot = xp.sum(w * (T - xp.sum(w * T, axis=0, keepdims=True) / xp.sum(w)) ** 2, axis=0)
    safe = xp.where(ss_tot > 0, ss_tot, xp.ones_like(ss_tot))
    r2 = xp.where(ss_tot > 0, 1 - ss_res / safe, xp.astype(ss_res == 0, Y.dtype))
    return xp.mean(r2)


def _progress(epochs, verbose):
    if not verbose:
        return None
    from .progress import ProgressBar

    return ProgressBar(epochs)


def _split_order(rng, N, n_val, stratify):
    """A host permutation whose first ``n_val`` entries are the validation samples."""
    if stratify is None:
        return rng.permutation(N)
    from sklearn.model_selection import train_test_split

    # A RandomState (init="sklearn") is handed on as scikit-learn's MLP does; else a seed.
    seed = rng if isinstance(rng, np.random.RandomState) else int(rng.integers(2**31 - 1))
    tr, va = train_test_split(np.arange(N), test_size=n_val, stratify=stratify, random_state=seed)
    return np.concatenate([va, tr])


def _distributions(T, *, xp) -> bool:
    """Whether every row of ``T`` is a probability distribution (to a float32 rounding)."""
    return bool(xp.all(T >= 0) & xp.all(xp.abs(xp.sum(T, axis=1) - 1) <= 1e-5))  # one sync


_SEED_KINDS = (
    np.random.Generator,
    np.random.RandomState,
    np.random.SeedSequence,
    np.random.BitGenerator,
)


def _host_rng(seed, init) -> np.random.Generator | np.random.RandomState:
    """The host generator for ``seed``: a RandomState for ``init="sklearn"`` (it replays
    scikit-learn's draws), else a Generator."""
    sklearn = init == "sklearn"
    kinds = (np.random.RandomState,) if sklearn else _SEED_KINDS
    accepted = (
        "None, an int in [0, 2**32) or a numpy.random.RandomState (init='sklearn')"
        if sklearn
        else "None, an int >= 0, a numpy.random Generator, RandomState, SeedSequence or "
        "BitGenerator"
    )
    if isinstance(seed, Integral) and not isinstance(seed, bool):
        if seed < 0 or (sklearn and seed >= 2**32):
            raise ValueError(f"seed={seed!r}; accepted: {accepted}")
    elif seed is not None and not isinstance(seed, kinds):
        raise TypeError(f"seed={seed!r} ({type(seed).__name__}); accepted: {accepted}")
    if sklearn:
        return seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
    return np.random.default_rng(seed)


def _trim(history: dict, lengths: dict) -> None:
    """Cut each list of ``history`` back to its length in ``lengths``, in place."""
    for k, n in lengths.items():
        del history[k][n:]


def rng_state(rng) -> Any:
    """The host generator's state (a RandomState's or its bit generator's)."""
    if isinstance(rng, np.random.RandomState):
        return rng.get_state(legacy=False)
    return rng.bit_generator.state


def _set_rng_state(rng, state) -> None:
    if isinstance(rng, np.random.RandomState):
        rng.set_state(state)
    else:
        rng.bit_generator.state = state


def check_gradients(net: MLP, X, T, *, eps: float = 1e-5) -> float:
    """Largest relative error between backprop and central finite differences, float64.

    The weights are copied to float64: NumPy's, or for a user's ``(h, dh)`` pair, which is
    written for the model's backend, that backend's (on JAX this turns on its 64-bit floats,
    as a float64 model does). Each entry ``w`` is perturbed by ``+-eps`` (1e-5 balances the
    O(eps^2) truncation and O(1e-16/eps) rounding errors for a loss near 1) and
    ``(L(w + eps) - L(w - eps)) / (2 eps)`` is compared with the backprop gradient as
    ``|g - g_fd| / max(|g| + |g_fd|, 1e-8, 1000 r)``, where ``r = u (|L(w + eps)| +
    |L(w - eps)|) / (2 eps)`` is the rounding error of ``g_fd`` (``u`` float64's epsilon): an
    entry lost in the noise of a large loss is judged on that scale, not as relative error.
    NaN if a gradient or a loss is NaN: a failure. A ReLU unit whose input is exactly at its
    kink differs from the differences by half its slope: its derivative there is one side's.
    """
    if not isinstance(net, MLP):
        raise TypeError(
            f"net is a {type(net).__name__}; accepted: an xpmlp.MLP (for weights alone: "
            "MLP(sizes, ...) with net.weights = weights)"
        )
    eps = check_positive(eps, "eps")
    with computing(net):
        X, T = (np.asarray(to_numpy(A), dtype=np.float64) for A in net._pair(X, T))
        weights = [np.array(to_numpy(W), dtype=np.float64) for W in net.weights]
        return _largest_error(net, X, T, weights, eps)


def _largest_error(net: MLP, X, T, weights: list, eps: float) -> float:
    """:func:`check_gradients` on float64 NumPy copies, computed in NumPy or, for a user's
    activation, in the model's backend."""
    import array_api_compat.numpy as xp

    f64, device = np.float64, None
    if net.activation.name not in ACTIVATIONS:
        xp, f64, device = net.xp, get_dtype("float64", xp=net.xp), net.device
    put = lambda A: xp.asarray(A, dtype=f64, device=device)  # noqa: E731
    X, T = put(X), put(T)
    kw = dict(activation=net.activation, output=net.output, xp=xp)

    def loss(ws):
        cache = network.forward([put(W) for W in ws], X, **kw)
        return float(network.batch_loss(cache, T, output=net.output, xp=xp))

    ws = [put(W) for W in weights]
    _, grads = network.backward(
        ws, network.forward(ws, X, **kw), T, activation=net.activation, xp=xp
    )
    grads = [np.asarray(to_numpy(G)) for G in grads]
    u = float(np.finfo(np.float64).eps)
    errors = []
    for W, G in zip(weights, grads):
        for idx in np.ndindex(W.shape):
            w0 = W[idx]
            W[idx] = w0 + eps
            up = loss(weights)
            W[idx] = w0 - eps
            down = loss(weights)
            W[idx] = w0
            fd = (up - down) / (2 * eps)
            noise = 1000 * u * (abs(up) + abs(down)) / (2 * eps)
            errors.append(abs(G[idx] - fd) / max(abs(G[idx]) + abs(fd), 1e-8, noise))
    return float(np.max(errors))  # np.max, unlike max, keeps a NaN
