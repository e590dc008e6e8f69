"""Output activation ``f`` and loss pairs whose output error is ``delta_k = y_k - t_k``.

For each canonical pair (Bishop, PRML 5.2) the derivative of the per-sample loss with
respect to the output pre-activation is ``dL_n/da_k = y_k - t_k``, so backward starts from
``Y - T`` whatever the pair. Losses are computed from the pre-activations ``A`` (the logits),
not from ``Y``, so that no ``log(0)`` or overflow occurs, the softmax loss from the logits less
their row maximum, so that it depends on their differences only, as it should.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from .activations import ALIASES, identity, logistic, softplus


class Output(NamedTuple):
    """``f(A, *, xp) -> Y`` and the per-sample loss ``loss(A, Y, T, *, xp) -> (N,)``."""

    name: str
    f: Callable[..., Any]
    loss: Callable[..., Any]


def _squared_error(A, Y, T, *, xp):
    R = Y - T
    return 0.5 * xp.sum(R * R, axis=1)  # L_n = 1/2 ||y_n - t_n||^2


def _bce_terms(A, T, *, xp):
    # per target: -t log(sigma(a)) - (1 - t) log(1 - sigma(a)) = softplus(a) - t a
    return softplus(A, xp=xp) - T * A


def _binary_cross_entropy(A, Y, T, *, xp):
    return xp.sum(_bce_terms(A, T, xp=xp), axis=1)


def _softmax(A, *, xp):
    E = xp.exp(A - xp.max(A, axis=1, keepdims=True))
    return E / xp.sum(E, axis=1, keepdims=True)


def _neg_log_softmax(A, *, xp):
    """``-log softmax(a)_k = log sum_j exp(c_j) - c_k`` of the logits less their row maximum,
    ``c = a - max_j a_j``: a function of the logits' differences only, as the loss is (on
    the logits themselves, ``logsumexp(a) - a_k`` of two large numbers lost the digits of
    their difference: logits ``[1e8, 1e8]`` had a loss of 0, not log 2, in float32)."""
    C = A - xp.max(A, axis=1, keepdims=True)
    return xp.log(xp.sum(xp.exp(C), axis=1, keepdims=True)) - C


def _categorical_cross_entropy(A, Y, T, *, xp):
    return xp.sum(T * _neg_log_softmax(A, xp=xp), axis=1)  # -sum_k t_k log softmax(a)_k


OUTPUTS = {
    o.name: o
    for o in (
        Output("identity", identity, _squared_error),
        Output("logistic", logistic, _binary_cross_entropy),
        Output("softmax", _softmax, _categorical_cross_entropy),
    )
}


def _clip_log_loss(L, *, xp):
    """``-log p`` from ``L = -log p`` for ``p`` clipped to ``[eps, 1 - eps]``, eps of the dtype."""
    eps = float(xp.finfo(L.dtype).eps)
    # maximum and minimum of Python floats (rounded to L's dtype, as clip rounds them; no
    # arrays made for them): array-api-compat's CuPy clip assigns through boolean masks,
    # which read a count back to the host twice per bound, each step
    return xp.minimum(xp.maximum(L, -math.log1p(-eps)), -math.log(eps))


def _binary_cross_entropy_clipped(A, Y, T, *, xp):
    return xp.sum(_clip_log_loss(_bce_terms(A, T, xp=xp), xp=xp), axis=1)


def _categorical_cross_entropy_clipped(A, Y, T, *, xp):
    return xp.sum(T * _clip_log_loss(_neg_log_softmax(A, xp=xp), xp=xp), axis=1)


# scikit-learn's log-losses clip every probability to [eps, 1 - eps]: per target, a loss of at
# most -log(eps) (36.04 in float64) however wrong the logits. The same outputs and output
# errors Y - T as above, hence the same gradients; only the reported loss differs, and only
# where a probability is within eps of 0 or 1.
CLIPPED = {
    "identity": OUTPUTS["identity"],
    "logistic": Output("logistic", logistic, _binary_cross_entropy_clipped),
    "softmax": Output("softmax", _softmax, _categorical_cross_entropy_clipped),
}


def get_output(output: Any) -> Output:
    """Resolve an output name (``"identity"``, ``"logistic"``, ``"softmax"``)."""
    if isinstance(output, Output):
        return output
    if isinstance(output, str):
        name = ALIASES.get(output, output)
        if name in OUTPUTS:
            return OUTPUTS[name]
        raise ValueError(f"output={output!r} is unknown; accepted: {', '.join(OUTPUTS)}")
    raise TypeError(
        f"output={output!r} ({type(output).__name__}); accepted: one of the names "
        f"{', '.join(OUTPUTS)}"
    )
