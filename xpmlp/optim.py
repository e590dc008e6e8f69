"""Optimizers as ``(init, update)`` pairs with small NamedTuple states (after optax).

``init(weights, *, xp) -> state`` and
``update(grads, state, weights, *, learning_rate, xp) -> (weights, state)``.

``update`` returns the new weights. Where the backend's arrays are writeable
(``array_api_compat.is_writeable_array``) it updates ``weights`` and the state in place (a
torch tensor that requires grad, such as an ``nn.Parameter``, under ``torch.no_grad()``) and
returns the same arrays; on JAX it builds new ones. Both paths compute the same numbers.
The learning rate is an argument, so that schedules (``train.py``) stay outside.

The rules are scikit-learn's (its ``_stochastic_optimizers``), step for step, where
``torch.optim`` differs: momentum keeps the rate inside the velocity (``V <- mu V - eta G``:
a new rate reaches new gradients only), and Adam adds epsilon inside the bias-corrected
step (``epsilon / sqrt(1 - beta_2**t)`` in PyTorch's form).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from ._checks import check_bool, check_in
from .backend import is_writeable, updating


class Optimizer(NamedTuple):
    name: str
    init: Callable[..., Any]
    update: Callable[..., Any]
    hyperparams: dict


def _optimizer(name, init, update, **hyperparams) -> Optimizer:
    """The :class:`Optimizer`, its ``update`` carrying, read-only, the rule's ``name`` and
    the hyper-parameters its closure computes with: the NumPy fast path repeats its steps
    from them (the tuple's fields may be edited or replaced, the closure's may not)."""
    update.rule, update.hyperparams = name, MappingProxyType(hyperparams)
    return Optimizer(name, init, update, dict(hyperparams))


def rule_of(optimizer: Optimizer) -> tuple[str, Mapping] | None:
    """``(rule, hyper-parameters)`` that an optimizer of this module computes with (its
    ``update`` carries them, whatever the tuple's fields say); None for a user's own."""
    fn = optimizer.update
    if getattr(fn, "__module__", None) != __name__ or not hasattr(fn, "rule"):
        return None
    return fn.rule, fn.hyperparams


def _add(X, Y):
    """``X + Y``, in place when ``X`` is writeable."""
    if is_writeable(X):
        with updating(X):
            X += Y
        return X
    return X + Y


def _scale_add(a, X, b, Y):
    """``a X + b Y``, in place when ``X`` is writeable."""
    if is_writeable(X):
        with updating(X):
            X *= a
            X += b * Y
        return X
    return a * X + b * Y


def _check_like(grads, weights, *state) -> None:
    """``grads`` and each list of ``state`` one array per layer, and the gradients shaped like
    ``weights``: ``zip`` would drop layers, and a gradient would broadcast, silently. (Per
    step: lengths and shapes compared as they are; a message only on a mismatch.)"""
    L = len(weights)
    if len(grads) != L or any(len(arrays) != L for _, arrays in state):
        name, arrays = next((n, a) for n, a in (("grads", grads), *state) if len(a) != L)
        raise ValueError(
            f"{name} holds {len(arrays)} arrays for {L} layers; accepted: one per layer"
        )
    for l in range(L):
        if grads[l].shape != weights[l].shape:
            raise ValueError(
                f"grads[{l}] has shape {tuple(grads[l].shape)}; accepted: weights[{l}]'s "
                f"{tuple(weights[l].shape)}"
            )


class SGDState(NamedTuple):
    velocities: list | None  # V[l]; None without momentum


def sgd(momentum: float = 0.0, nesterov: bool = False) -> Optimizer:
    """Gradient descent, the notes' rule ``W <- W - eta G``, with optional momentum.

    With momentum ``mu`` (scikit-learn's and Sutskever et al.'s form)::

        V <- mu V - eta G
        W <- W + V                     (classical)
        W <- W + mu V - eta G          (Nesterov)
    """
    momentum = check_in(momentum, "momentum", lambda f: 0 <= f <= 1, "a number in [0, 1]")
    nesterov = check_bool(nesterov, "nesterov")

    def init(weights, *, xp):
        if momentum == 0.0:
            return SGDState(None)
        return SGDState([xp.zeros_like(W) for W in weights])

    def update(grads, state, weights, *, learning_rate, xp):
        velocities = () if state.velocities is None else (("velocities", state.velocities),)
        _check_like(grads, weights, *velocities)
        if state.velocities is None:
            return [_add(W, -learning_rate * G) for W, G in zip(weights, grads)], state
        V = [_scale_add(momentum, V, -learning_rate, G) for V, G in zip(state.velocities, grads)]
        if nesterov:
            U = [momentum * V_l - learning_rate * G for V_l, G in zip(V, grads)]
        else:
            U = V
        return [_add(W, U_l) for W, U_l in zip(weights, U)], SGDState(V)

    return _optimizer("sgd", init, update, momentum=momentum, nesterov=nesterov)


class AdamState(NamedTuple):
    t: int  # steps taken, on the host
    m: list  # first-moment estimates
    v: list  # second-moment estimates


def adam(beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8) -> Optimizer:
    """Adam (Kingma & Ba, 2015, Algorithm 1 with the efficient step-size form of Sec. 2)::

    t <- t + 1
    m <- beta_1 m + (1 - beta_1) G
    v <- beta_2 v + (1 - beta_2) G**2
    eta_t = eta sqrt(1 - beta_2**t) / (1 - beta_1**t)
    W <- W - eta_t m / (sqrt(v) + epsilon)
    """
    beta_1, beta_2 = (
        check_in(b, name, lambda f: 0 <= f < 1, "a number in [0, 1)")
        for name, b in (("beta_1", beta_1), ("beta_2", beta_2))
    )
    epsilon = check_in(epsilon, "epsilon", lambda f: f > 0, "a number > 0")

    def init(weights, *, xp):
        return AdamState(
            0, [xp.zeros_like(W) for W in weights], [xp.zeros_like(W) for W in weights]
        )

    def update(grads, state, weights, *, learning_rate, xp):
        _check_like(grads, weights, ("m", state.m), ("v", state.v))
        t = state.t + 1
        m = [_scale_add(beta_1, m_l, 1 - beta_1, G) for m_l, G in zip(state.m, grads)]
        v = [_scale_add(beta_2, v_l, 1 - beta_2, G * G) for v_l, G in zip(state.v, grads)]
        eta = adam_step_size(learning_rate, t, beta_1, beta_2)
        new = [
            _add(W, -eta * m_l / (xp.sqrt(v_l) + epsilon)) for W, m_l, v_l in zip(weights, m, v)
        ]
        return new, AdamState(t, m, v)

    return _optimizer("adam", init, update, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)


def adam_step_size(learning_rate: float, t: int, beta_1: float, beta_2: float) -> float:
    """Adam's ``eta_t = eta sqrt(1 - beta_2**t) / (1 - beta_1**t)`` at step ``t``."""
    return learning_rate * math.sqrt(1 - beta_2**t) / (1 - beta_1**t)


OPTIMIZERS = {"sgd": sgd, "adam": adam}


def get_optimizer(optimizer: Any) -> Optimizer:
    """Resolve ``"sgd"``/``"adam"`` (default hyper-parameters) or pass an :class:`Optimizer`."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    accepted = f"{', '.join(OPTIMIZERS)} or an xpmlp.optim.Optimizer such as optim.sgd(0.9)"
    if isinstance(optimizer, str):
        if optimizer in OPTIMIZERS:
            return OPTIMIZERS[optimizer]()
        raise ValueError(f"optimizer={optimizer!r} is unknown; accepted: {accepted}")
    raise TypeError(f"optimizer={optimizer!r} ({type(optimizer).__name__}); accepted: {accepted}")
