"""The mathematics: initial weights, forward pass, backward pass. Pure functions.

Notation (DESIGN.md, Bishop PRML ch. 5), for a network ``[D, n_1, ..., K]`` with ``L`` weight
layers and a batch of ``N`` samples as rows:

- ``weights[l]`` is ``W`` of layer ``l + 1``, shape ``(n_{l+1}, n_l + 1)``; column 0 is the
  bias (``x_0 = 1``). For two layers, ``weights == [W1, W2]``, ``W1`` is M x (D+1),
  ``W2`` is K x (M+1).
- ``A[l] = Z[l] @ W[l][:, 1:].T + W[l][:, 0]``: pre-activations ``a_j = sum_i w_ji z_i``.
- ``Z[0] = X``; ``Z[l + 1] = h(A[l])`` for hidden layers and ``Y = Z[L] = f(A[L - 1])``.
- ``delta[L - 1] = Y - T`` (times the sample weights, see :func:`backward`) and
  ``delta[l] = h'(A[l]) * (delta[l + 1] @ W[l + 1][:, 1:])``: ``delta_j = h'(a_j) sum_k w_kj
  delta_k``.
- ``grads[l][:, 0] = sum_n delta[l]_n`` and ``grads[l][:, 1:] = delta[l].T @ Z[l]``: the
  gradient is delta times input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._checks import check_layer_sizes
from .activations import Activation, get_activation
from .objectives import Output, get_output


class Cache(NamedTuple):
    """What the forward pass stores for backward: ``A`` (L arrays) and ``Z`` (L + 1 arrays,
    ``Z[0] = X`` and ``Z[L] = Y``)."""

    A: list
    Z: list


# ---------------------------------------------------------------- initial weights (host)


def _glorot_bound(fan_in, fan_out, activation):
    # scikit-learn's form: b = sqrt(6 / (fan_in + fan_out)), 2 instead of 6 for logistic units
    return np.sqrt((2.0 if activation == "logistic" else 6.0) / (fan_in + fan_out))


def _glorot(fan_in, fan_out, *, rng, activation):
    # U(-b, b) for the weights and the biases alike
    b = _glorot_bound(fan_in, fan_out, activation)
    return rng.uniform(-b, b, size=(fan_out, fan_in + 1))


def _he(fan_in, fan_out, *, rng, activation):
    # He et al. (2015): w ~ N(0, 2 / fan_in), biases zero.
    W = np.zeros((fan_out, fan_in + 1))
    W[:, 1:] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_out, fan_in))
    return W


def _torch(fan_in, fan_out, *, rng, activation):
    # torch.nn.Linear.reset_parameters: weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    b = 1.0 / np.sqrt(fan_in)
    W = np.empty((fan_out, fan_in + 1))
    W[:, 1:] = rng.uniform(-b, b, size=(fan_out, fan_in))
    W[:, 0] = rng.uniform(-b, b, size=fan_out)
    return W


def _sklearn(fan_in, fan_out, *, rng, activation):
    # scikit-learn's exact draw order: coef (fan_in, fan_out), then intercept (fan_out).
    b = _glorot_bound(fan_in, fan_out, activation)
    coef = rng.uniform(-b, b, (fan_in, fan_out))
    intercept = rng.uniform(-b, b, fan_out)
    return np.concatenate([intercept[:, None], coef.T], axis=1)


INITS: dict[str, Callable[..., np.ndarray]] = {
    "glorot": _glorot,
    "xavier": _glorot,
    "he": _he,
    "kaiming": _he,
    "torch": _torch,
    "sklearn": _sklearn,
}


def init_weights(
    layer_sizes: Sequence[int],
    *,
    rng: Any = None,
    init: str | Callable[..., np.ndarray] = "glorot",
    activation: str | Activation = "tanh",
) -> list[np.ndarray]:
    """Draw initial weights on the host, float64, so every backend starts from the same ones.

    Parameters
    ----------
    layer_sizes : [D, n_1, ..., K]
    rng : numpy Generator (RandomState for ``init="sklearn"``, which replays its draws), or
        a seed (int or None) for one
    init : "glorot" (default; "xavier"), "he" ("kaiming"), "torch", "sklearn" or a callable
        ``init(fan_in, fan_out, *, rng, activation) -> array (fan_out, fan_in + 1)``.
    activation : the hidden activation's name (or the activation), which "glorot" and
        "sklearn" read: their bound for "logistic" is ``sqrt(2 / (fan_in + fan_out))``,
        scikit-learn's, instead of ``sqrt(6 / ...)``.

    Returns
    -------
    list of NumPy arrays, ``W[l]`` of shape (n_{l+1}, n_l + 1), bias in column 0.
    """
    if isinstance(init, str) and init not in INITS:
        raise ValueError(
            f"init={init!r} is unknown; accepted: {', '.join(INITS)} or a callable "
            "init(fan_in, fan_out, *, rng, activation)"
        )
    if not isinstance(init, str) and not callable(init):
        raise TypeError(
            f"init={init!r} ({type(init).__name__}); accepted: {', '.join(INITS)} or a "
            "callable init(fan_in, fan_out, *, rng, activation)"
        )
    fn = INITS[init] if isinstance(init, str) else init
    layer_sizes = check_layer_sizes(layer_sizes)
    if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
        try:
            rng = np.random.RandomState(rng) if init == "sklearn" else np.random.default_rng(rng)
        except (TypeError, ValueError) as exc:
            raise type(exc)(
                f"rng={rng!r} ({exc}); accepted: a NumPy Generator or RandomState, a seed (an "
                "int >= 0) or None"
            ) from None
    activation = get_activation(activation).name  # "sigmoid" draws as "logistic"
    weights = []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        W = np.asarray(fn(fan_in, fan_out, rng=rng, activation=activation), dtype=np.float64)
        if W.shape != (fan_out, fan_in + 1):
            raise ValueError(
                f"init returned shape {W.shape} for a layer {fan_in} -> {fan_out}; "
                f"expected {(fan_out, fan_in + 1)}"
            )
        weights.append(W)
    return weights


# ---------------------------------------------------------------- forward and backward


def forward(
    weights: Sequence[Any],
    X: Any,
    *,
    activation: Activation | str,
    output: Output | str,
    xp: Any,
) -> Cache:
    """Forward pass storing ``A`` and ``Z`` of every layer.

    Parameters
    ----------
    weights : list of arrays, ``W[l]`` of shape (n_{l+1}, n_l + 1)
    X : array (N, D)
    activation, output : names ("tanh", "identity", ...) or the objects they name
    xp : the arrays' Array API namespace (``array_api_compat.array_namespace(X)``)

    Returns
    -------
    Cache with ``A[l]`` (N, n_{l+1}) and ``Z[l]`` (N, n_l); ``Z[-1]`` is ``Y`` (N, K).
    """
    activation, output = get_activation(activation), get_output(output)
    check_network(weights, X)
    A, Z = [], [X]
    last = len(weights) - 1
    for l, W in enumerate(weights):
        A.append(_pre_activation(Z[l], W))
        Z.append(output.f(A[l], xp=xp) if l == last else activation.h(A[l], xp=xp))
    return Cache(A, Z)


def predict(
    weights: Sequence[Any],
    X: Any,
    *,
    activation: Activation | str,
    output: Output | str,
    xp: Any,
) -> Any:
    """The output ``Y`` (N, K) of :func:`forward` (the same arguments), keeping only the
    layer at hand: on a large ``X`` a fraction of the memory of every layer's ``A`` and
    ``Z``."""
    activation, output = get_activation(activation), get_output(output)
    check_network(weights, X)
    Z, last = X, len(weights) - 1
    for l, W in enumerate(weights):
        A = _pre_activation(Z, W)
        Z = output.f(A, xp=xp) if l == last else activation.h(A, xp=xp)
    return Z


def check_network(weights: Sequence[Any], X: Any) -> None:
    """``weights`` a chain of 2-d layers ``W[l]`` (n_{l+1}, n_l + 1) that ``X`` (N, D)
    enters: else a ``ValueError`` naming the array (a 1-d ``X`` broadcast as one sample)."""
    if len(weights) == 0:
        raise ValueError("weights is empty; accepted: a list of L >= 1 arrays W[l]")
    for l, W in enumerate(weights):
        width = None if l == 0 else weights[l - 1].shape[0] + 1
        if getattr(W, "ndim", None) != 2 or W.shape[1] != (width or W.shape[1]):
            need = "2-d" if width is None else f"(n_{l + 1}, {width}) after weights[{l - 1}]"
            raise ValueError(f"weights[{l}] has shape {tuple(W.shape)}; accepted: {need}")
    D = weights[0].shape[1] - 1
    if getattr(X, "ndim", None) != 2 or X.shape[1] != D:
        shape = tuple(getattr(X, "shape", ()))
        raise ValueError(f"X has shape {shape}; accepted: (N, {D}) for weights[0]")


def _pre_activation(Z: Any, W: Any) -> Any:
    """``A = Z @ W[:, 1:].T + w_0``: the bias from column 0, as a row, without a ``[1 | Z]``
    copy."""
    return Z @ W[:, 1:].T + W[:, :1].T


def output_error(Y: Any, T: Any, sample_weight: Any = None, *, xp: Any) -> Any:
    """``delta = w_n (y_n - t_n)``, the error of the batch loss ``sum_n w_n L_n``.

    With ``sample_weight=None`` the weights are ``w_n = 1/N``: the batch loss is the mean of
    the per-sample losses and this is the single place where the 1/N of the mean enters.
    """
    _check_targets(Y, T, sample_weight)
    if sample_weight is None:
        return (Y - T) * (1.0 / Y.shape[0])
    return (Y - T) * sample_weight[:, None]


def _check_targets(Y: Any, T: Any, sample_weight: Any) -> None:
    """``T`` shaped as the outputs ``Y`` (N, K) and ``sample_weight`` as (N,): a broadcast
    of either would be a wrong loss, silently."""
    if tuple(T.shape) != tuple(Y.shape):
        raise ValueError(f"T has shape {tuple(T.shape)}; accepted: the outputs' {tuple(Y.shape)}")
    if sample_weight is not None and tuple(sample_weight.shape) != (Y.shape[0],):
        raise ValueError(
            f"sample_weight has shape {tuple(sample_weight.shape)}; accepted: ({Y.shape[0]},)"
        )


def backward(
    weights: Sequence[Any],
    cache: Cache,
    T: Any,
    *,
    activation: Activation | str,
    sample_weight: Any = None,
    xp: Any,
) -> tuple[list, list]:
    """Backpropagate the output error and return every layer's ``delta`` and gradient.

    Parameters
    ----------
    weights : list of arrays, ``W[l]`` of shape (n_{l+1}, n_l + 1)
    cache : the :class:`Cache` of ``forward(weights, X, ...)``
    T : array (N, K)
    sample_weight : array (N,), optional
        Per-sample weights ``w_n`` of the batch loss ``sum_n w_n L_n``; ``None`` means
        ``w_n = 1/N`` (the mean). They scale each sample's delta, hence its gradient.
    xp : the arrays' Array API namespace

    Returns
    -------
    deltas : list of arrays, ``delta[l]`` (N, n_{l+1}) = dL/dA[l] of the batch loss;
        for one sample (N = 1) exactly the notes' ``delta_k = y_k - t_k`` and
        ``delta_j = h'(a_j) sum_k w_kj delta_k``.
    grads : list of arrays shaped like ``weights``: dL/dW[l].
    """
    activation = get_activation(activation)
    A, Z = cache
    L = len(weights)
    deltas: list = [None] * L
    grads: list = [None] * L
    delta = output_error(Z[L], T, sample_weight, xp=xp)
    for l in range(L - 1, -1, -1):
        deltas[l] = delta
        # delta times input; the bias's input is x_0 = 1.
        grads[l] = xp.concat([xp.sum(delta, axis=0)[:, None], delta.T @ Z[l]], axis=1)
        if l > 0:
            delta = activation.dh(A[l - 1], Z[l], xp=xp) * (delta @ weights[l][:, 1:])
    return deltas, grads


def batch_loss(cache: Cache, T: Any, *, output: Output | str, sample_weight: Any = None, xp: Any):
    """The batch loss ``sum_n w_n L_n`` (``w_n = 1/N`` by default) as a 0-d array (a NumPy
    scalar on NumPy; :func:`xpmlp.to_numpy` reads either)."""
    _check_targets(cache.Z[-1], T, sample_weight)
    L_n = get_output(output).loss(cache.A[-1], cache.Z[-1], T, xp=xp)
    if sample_weight is None:
        return xp.mean(L_n)
    return xp.sum(L_n * sample_weight)


def l2_penalty(weights: Sequence[Any], *, xp: Any):
    """``1/2 sum_l ||W[l][:, 1:]||^2``: the squared weights, bias columns excluded. (Not
    ``vecdot``: CuPy has none, and array-api-compat's stands in with copies and a batched
    product; ``torch.func.vmap`` fails in it.)"""
    return 0.5 * sum(xp.sum(W[:, 1:] * W[:, 1:]) for W in weights)
