"""The training loop: batches, shuffling, schedules, stopping, history, callbacks. The only loop.

One epoch takes the batches of a host-drawn permutation (gathered on the device with
``xp.take``), runs forward -> backward -> optimizer on each, and accumulates the loss on the
device; one loss value per epoch reaches the host.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from numbers import Real
from typing import Any

import numpy as np

from . import _fast, _interrupt, network
from ._checks import (
    check_bool,
    check_choice,
    check_int,
    check_nonneg,
    check_positive,
)
from .activations import Activation, get_activation
from .backend import all_finite, copy_array, device_of, is_writeable
from .objectives import Output, get_output
from .optim import Optimizer, get_optimizer

SCHEDULES = ("constant", "invscaling", "adaptive")


def loss_and_gradients(
    weights,
    X,
    T,
    *,
    activation: Activation,
    output: Output,
    sample_weight=None,
    alpha: float = 0.0,
    loss_scale: float = 1.0,
    xp: Any,
):
    """Batch loss (0-d array) and gradients of ``sum_n w_n L_n + alpha/(2 S) sum ||W||^2``.

    ``w_n = 1/N`` without ``sample_weight``; with it, ``w_n = s_n / S``, ``S = sum_n s_n``.
    The L2 term (bias columns excluded) is scaled by ``1/S`` as in scikit-learn, where S is
    the batch size or its total sample weight. ``loss_scale`` multiplies the data term of the
    returned loss only, a reporting convention (scikit-learn reports the squared error
    averaged over the K outputs: ``loss_scale = 1/K``); the gradients stay unscaled.
    """
    if sample_weight is None:
        S, w = X.shape[0], None
    else:
        if not xp.isdtype(sample_weight.dtype, "real floating"):  # integer weights: the
            sample_weight = xp.astype(sample_weight, X.dtype)  # fractions w_n, S = inf below
        S = xp.sum(sample_weight)
        # A batch whose weights are all zero adds nothing: S = inf makes w = 0 and alpha/S = 0.
        S = xp.where(S > 0, S, xp.full_like(S, math.inf))
        w = sample_weight / S
    cache = network.forward(weights, X, activation=activation, output=output, xp=xp)
    loss = network.batch_loss(cache, T, output=output, sample_weight=w, xp=xp)
    if loss_scale != 1.0:
        loss = loss * loss_scale
    _, grads = network.backward(weights, cache, T, activation=activation, sample_weight=w, xp=xp)
    if alpha:
        c = alpha / S
        loss = loss + c * network.l2_penalty(weights, xp=xp)
        grads = [_add_weight_decay(G, W, c, xp=xp) for G, W in zip(grads, weights)]
    return loss, grads


def _add_weight_decay(G, W, c, *, xp):
    """``G[:, 1:] + c W[:, 1:]``: the L2 gradient, bias column untouched."""
    if is_writeable(G):
        G[:, 1:] += c * W[:, 1:]
        return G
    return xp.concat([G[:, :1], G[:, 1:] + c * W[:, 1:]], axis=1)


def clip_by_global_norm(grads, max_norm: float, *, xp):
    """Scale all gradients by ``min(1, max_norm / ||g||)``, ``||g||`` over every layer."""
    if isinstance(max_norm, Real):  # not a traced value (jax.jit)
        max_norm = check_positive(max_norm, "max_norm")
    norm = xp.sqrt(sum(xp.sum(G * G) for G in grads))
    scale = xp.minimum(max_norm / (norm + 1e-12), xp.ones_like(norm))
    return [G * scale for G in grads]


@dataclass
class LoopState:
    """What training carries from one call of :func:`train` to the next (``partial_fit``)."""

    opt_state: Any = None
    learning_rate: float | None = None  # current rate (schedules change it)
    t: int = 0  # samples seen, scikit-learn's ``t_``
    epochs: int = 0
    best_loss: float = math.inf
    best_score: float = -math.inf
    no_improvement: int = 0
    best_weights: list | None = None
    history: dict = field(default_factory=lambda: {"loss": [], "val_score": []})


@dataclass
class Config:
    """The training's settings (see ``MLP.fit``), checked when made: a ``ValueError`` or
    ``TypeError`` names a setting outside its range."""

    epochs: int = 100
    batch_size: int | None = 32
    learning_rate: float = 0.01
    schedule: str = "constant"
    power_t: float = 0.5
    alpha: float = 0.0
    clip_norm: float | None = None
    shuffle: bool = True
    tol: float | None = None  # None: no stopping on a plateau
    n_iter_no_change: int = 10
    early_stopping: bool = False  # stop on the validation score, restore its best weights
    loss_scale: float = 1.0  # reported loss: loss_scale * data term + L2 term (for reporting)
    # with sample weights, the epoch loss averages the batch losses by batch size
    # (scikit-learn's) instead of by total sample weight (the weighted mean over all samples)
    loss_by_batch_size: bool = False

    def __post_init__(self):
        optional = lambda check, v, *a: None if v is None else check(v, *a)  # noqa: E731
        self.epochs = check_int(self.epochs, "epochs", 0)
        self.batch_size = optional(
            check_int, self.batch_size, "batch_size", 1, "an int >= 1, or None (the full batch)"
        )
        self.learning_rate = check_positive(self.learning_rate, "learning_rate")
        self.schedule = check_choice(self.schedule, "schedule", SCHEDULES)
        self.power_t = check_nonneg(self.power_t, "power_t")
        self.alpha = check_nonneg(self.alpha, "alpha")
        self.clip_norm = optional(check_positive, self.clip_norm, "clip_norm")
        self.shuffle = check_bool(self.shuffle, "shuffle")
        self.tol = optional(check_nonneg, self.tol, "tol")
        if self.n_iter_no_change != math.inf:  # inf: never (scikit-learn takes it)
            self.n_iter_no_change = check_int(
                self.n_iter_no_change, "n_iter_no_change", 1, "an int >= 1, or inf"
            )
        self.early_stopping = check_bool(self.early_stopping, "early_stopping")
        self.loss_scale = check_positive(self.loss_scale, "loss_scale")
        self.loss_by_batch_size = check_bool(self.loss_by_batch_size, "loss_by_batch_size")


def _batches(N: int, batch_size: int | None):
    B = N if batch_size is None else min(batch_size, N)
    return [(s, min(s + B, N)) for s in range(0, N, B)]


def train(
    weights: list,
    X: Any,
    T: Any,
    *,
    activation: Activation,
    output: Output,
    optimizer: Optimizer,
    config: Config,
    state: LoopState,
    rng: Any,
    sample_weight: Any = None,
    validate: Callable[[list], float] | None = None,
    on_epoch: Callable[[int, float, float | None, list], bool | None] | None = None,
    order: Callable[[Any, int], np.ndarray] | None = None,
    xp: Any,
) -> tuple[list, LoopState]:
    """Train ``weights`` (updated in place where the backend allows) for ``config.epochs``.

    Parameters
    ----------
    X, T : arrays (N, D), (N, K) in namespace ``xp``
    activation, output, optimizer : names ("tanh", "identity", "sgd") or the objects
    rng : host random generator; ``order(rng, N)`` (default ``rng.permutation``) draws each
        epoch's sample order when ``config.shuffle``.
    validate : ``validate(weights) -> score`` (higher is better), called once per epoch.
    on_epoch : ``on_epoch(epoch, loss, val_score, weights)``; returning True stops training.
        Arrays it puts into the list ``weights`` are the ones the next epoch trains.

    A ``KeyboardInterrupt`` goes on up, with the list given as ``weights`` holding the weights
    trained so far and ``state.opt_state`` their optimizer state, part-way through the
    interrupted epoch; the epoch count, ``t`` and the history agree, counting the epochs
    completed.

    Returns
    -------
    weights, state : the trained weights and the updated :class:`LoopState`.
    """
    activation, output = get_activation(activation), get_output(output)
    optimizer = get_optimizer(optimizer)
    N = X.shape[0]
    # layers that chain, X entering them, T and the sample weights row for row with X: the
    # fast path's products and gather do not check them
    network.check_network(weights, X)
    K = weights[-1].shape[0]
    if tuple(T.shape) != (N, K):
        raise ValueError(f"T has shape {tuple(T.shape)}; accepted: ({N}, {K}), a row per sample")
    if sample_weight is not None:
        if tuple(sample_weight.shape) != (N,):
            raise ValueError(
                f"sample_weight has shape {tuple(sample_weight.shape)}; accepted: ({N},)"
            )
        if not xp.isdtype(sample_weight.dtype, "real floating"):  # once, not per batch; the
            sample_weight = xp.astype(sample_weight, X.dtype)  # fast path takes X's dtype
    c = config
    if state.opt_state is None:
        state.opt_state = optimizer.init(weights, xp=xp)
    if state.learning_rate is None:
        state.learning_rate = c.learning_rate
    order = order or (lambda r, n: r.permutation(n))
    device = device_of(X)
    # NumPy: the same steps with preallocated buffers and in-place updates (_fast.py)
    fast = _fast.plan(
        weights, X, T, sample_weight=sample_weight, activation=activation, output=output,
        optimizer=optimizer, opt_state=state.opt_state, config=c, xp=xp,
    )  # fmt: skip
    if fast is not None:
        epoch = fast.epoch
    else:
        epoch = partial(
            _epoch, X=X, T=T, sample_weight=sample_weight, bounds=_batches(N, c.batch_size),
            activation=activation, output=output, optimizer=optimizer, config=c, xp=xp,
        )  # fmt: skip
    by_size = sample_weight is None or c.loss_by_batch_size
    S = N if by_size else xp.sum(sample_weight)  # the epoch loss is total / S
    trained, progress = weights, {}  # the caller's list; an interrupted epoch's progress
    # exp(-|a|) of a saturated unit underflows to 0, rightly, also under np.seterr(all="raise")
    # Ctrl-C is held while a step runs and raised between steps (_interrupt)
    with np.errstate(under="ignore"), _interrupt.held():
        try:
            for _ in range(c.epochs):
                idx = None
                if c.shuffle:  # a fast plan takes the host order as it is
                    idx = np.asarray(order(rng, N), dtype=np.int64)
                    idx = idx if fast is not None else xp.asarray(idx, device=device)
                progress.clear()
                with _arithmetic(state.epochs + 1):
                    weights, state.opt_state, total = epoch(
                        weights, idx, state.opt_state, state.learning_rate, progress
                    )
                weights = list(weights)  # on_epoch may replace its entries for the next epoch
                epoch_loss = float(total / S)  # the one host synchronisation of the epoch
                if not math.isfinite(epoch_loss):
                    raise FloatingPointError(
                        f"the training loss became {epoch_loss} at epoch {state.epochs + 1}; "
                        "lower learning_rate or scale the inputs"
                    )
                with _arithmetic(state.epochs + 1):
                    score = None if validate is None else float(validate(weights))
                # the epoch is complete: its counts and history, together (an interrupt
                # before here leaves the epoch's training uncounted, as one within it)
                state.t += N
                state.epochs += 1
                state.history["loss"].append(epoch_loss)
                if score is not None:
                    state.history["val_score"].append(score)
                stop = _plateau(weights, epoch_loss, score, c, state, xp=xp)
                if c.schedule == "invscaling":
                    state.learning_rate = _invscaling(c.learning_rate, state.t, c.power_t)
                if on_epoch is not None and on_epoch(state.epochs, epoch_loss, score, weights):
                    stop = True
                _interrupt.check()  # one held since the epoch's last step: scoring, callbacks
                if stop:
                    break
        except KeyboardInterrupt:
            if progress:  # the weights and optimizer state part-way through the epoch
                weights, state.opt_state = progress["weights"], progress["opt_state"]
            trained[:] = weights
            raise
    if c.early_stopping and state.best_weights is not None:
        weights = [copy_array(W, xp=xp) for W in state.best_weights]
    # the epoch loss precedes each update, so the last update's overflow shows only here
    # (one host synchronisation per call)
    if not all_finite(*weights, xp=xp):
        raise FloatingPointError(
            f"the weights became non-finite at epoch {state.epochs}; "
            "lower learning_rate or scale the inputs"
        )
    return weights, state


@contextlib.contextmanager
def _arithmetic(epoch: int):
    """A floating-point error of NumPy's under ``-W error`` or ``np.seterr(all="raise")`` as
    the training's own, naming the epoch."""
    try:
        yield
    except (RuntimeWarning, FloatingPointError) as exc:
        raise FloatingPointError(
            f"the training arithmetic failed at epoch {epoch} ({exc}); "
            "lower learning_rate or scale the inputs"
        ) from exc


def _invscaling(learning_rate: float, t: int, power_t: float) -> float:
    """scikit-learn's ``eta / (t + 1)**power_t``; 0 where the power overflows."""
    try:
        return learning_rate / (t + 1) ** power_t
    except OverflowError:
        return 0.0


def _epoch(
    weights, idx, opt_state, learning_rate, progress, *, X, T, sample_weight, bounds, activation,
    output, optimizer, config, xp,
):  # fmt: skip
    """One pass over the batches ``bounds`` in the order ``idx`` (None: as stored); returns
    ``(weights, opt_state, total)``, ``total`` the epoch's loss sum as a 0-d array. An
    interrupt leaves the weights and optimizer state trained so far in ``progress``."""
    c, total = config, _PairwiseSum()  # each batch's n_b * loss
    try:
        for s, e in bounds:
            if idx is not None:
                i = idx[s:e]
                Xb, Tb = xp.take(X, i, axis=0), xp.take(T, i, axis=0)
                sw = None if sample_weight is None else xp.take(sample_weight, i, axis=0)
            else:
                Xb, Tb = X[s:e, ...], T[s:e, ...]
                sw = None if sample_weight is None else sample_weight[s:e]
            loss, grads = loss_and_gradients(
                weights, Xb, Tb, activation=activation, output=output, sample_weight=sw,
                alpha=c.alpha, loss_scale=c.loss_scale, xp=xp,
            )  # fmt: skip
            if c.clip_norm is not None:
                grads = clip_by_global_norm(grads, c.clip_norm, xp=xp)
            weights, opt_state = optimizer.update(
                grads, opt_state, weights, learning_rate=learning_rate, xp=xp
            )
            n_b = (e - s) if sw is None or c.loss_by_batch_size else xp.sum(sw)
            total.add(loss * n_b)
            _interrupt.check()
    except KeyboardInterrupt:
        progress.update(weights=weights, opt_state=opt_state)
        raise
    return weights, opt_state, total.value()


class _PairwiseSum:
    """A sum of 0-d arrays in pairs, as a binary counter carries: the partial sums of 1, 2,
    4, ... terms, each added to its equal when one comes. As many additions as a running
    sum, with a running sum's rounding error over log2(n) terms instead of n (a float32 sum
    of 20,000 per-sample losses was 3.0e-6 off in turn, 5.7e-8 in pairs), and no join of n
    arrays (JAX compiles one per length: 4 s for 5,000)."""

    def __init__(self):
        self.partials = []  # (terms, sum), fewest terms last

    def add(self, x) -> None:
        n = 1
        while self.partials and self.partials[-1][0] == n:
            m, s = self.partials.pop()
            x, n = s + x, n + m
        self.partials.append((n, x))

    def value(self):
        """The sum: the partials added from the smallest."""
        terms = [s for _, s in self.partials]
        total = terms.pop()
        while terms:
            total = terms.pop() + total
        return total


def _plateau(weights, loss, score, c: Config, state: LoopState, *, xp) -> bool:
    """scikit-learn's rule: count epochs without an improvement of ``tol``; after
    ``n_iter_no_change`` of them, divide an adaptive rate by 5 or stop."""
    if c.tol is None and not c.early_stopping and c.schedule != "adaptive":
        return False
    tol = c.tol or 0.0  # tol=None: an adaptive rate still counts epochs without a decrease
    if c.early_stopping and score is not None:
        state.no_improvement = state.no_improvement + 1 if score < state.best_score + tol else 0
        if score > state.best_score:
            state.best_score = score
            state.best_weights = [copy_array(W, xp=xp) for W in weights]
    else:
        state.no_improvement = state.no_improvement + 1 if loss > state.best_loss - tol else 0
    state.best_loss = min(state.best_loss, loss)
    if state.no_improvement > c.n_iter_no_change:
        if c.schedule == "adaptive" and state.learning_rate > 1e-6:
            state.learning_rate /= 5.0
            state.no_improvement = 0
            return False
        return c.tol is not None or c.early_stopping  # tol=None never stops
    return False
