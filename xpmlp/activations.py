"""Hidden-unit activations ``h`` with their derivatives ``h'``, side by side.

Each pair is written against the Array API: ``h(A, xp=xp) -> Z`` and
``dh(A, Z, xp=xp) -> h'(A)``. The derivative receives both the pre-activation ``A`` and the
stored output ``Z = h(A)`` so it can use whichever is cheaper (tanh: ``1 - Z**2``), and
backward never recomputes the forward pass.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

from .backend import device_of, namespace_of


class Activation(NamedTuple):
    """A hidden activation: ``h(A, *, xp) -> Z`` and ``dh(A, Z, *, xp) -> h'(A)``."""

    name: str
    h: Callable[..., Any]
    dh: Callable[..., Any]


def identity(A, *, xp):
    return A


def _identity_d(A, Z, *, xp):
    return xp.ones_like(A)


def _tanh(A, *, xp):
    return xp.tanh(A)


def _tanh_d(A, Z, *, xp):
    return 1 - Z * Z  # tanh' = 1 - tanh^2


def logistic(A, *, xp):
    """sigma(a) = 1 / (1 + exp(-a)), evaluated without overflow for any sign of ``a``."""
    E = xp.exp(-xp.abs(A))  # in (0, 1]
    return xp.where(A >= 0, 1 / (1 + E), E / (1 + E))


def _logistic_d(A, Z, *, xp):
    return Z * (1 - Z)  # sigma' = sigma (1 - sigma)


def _relu(A, *, xp):
    return xp.maximum(A, xp.zeros((), dtype=A.dtype, device=device_of(A)))


def _relu_d(A, Z, *, xp):
    return xp.astype(A > 0, A.dtype)  # h'(0) taken as 0, as in scikit-learn and PyTorch


LEAKY_SLOPE = 0.01  # PyTorch's default negative_slope


def _leaky_relu(A, *, xp):
    return xp.where(A > 0, A, LEAKY_SLOPE * A)


def _leaky_relu_d(A, Z, *, xp):
    one = xp.ones((), dtype=A.dtype, device=device_of(A))
    return xp.where(A > 0, one, LEAKY_SLOPE * one)


def softplus(A, *, xp):
    """log(1 + exp(a)) = max(a, 0) + log1p(exp(-|a|)), stable for large |a|."""
    return xp.maximum(A, xp.zeros((), dtype=A.dtype, device=device_of(A))) + xp.log1p(
        xp.exp(-xp.abs(A))
    )


def _softplus_d(A, Z, *, xp):
    return logistic(A, xp=xp)  # d/da log(1 + e^a) = sigma(a)


ACTIVATIONS = {
    a.name: a
    for a in (
        Activation("identity", identity, _identity_d),
        Activation("tanh", _tanh, _tanh_d),
        Activation("logistic", logistic, _logistic_d),
        Activation("relu", _relu, _relu_d),
        Activation("leaky_relu", _leaky_relu, _leaky_relu_d),
        Activation("softplus", softplus, _softplus_d),
    )
}
ALIASES = {"linear": "identity", "sigmoid": "logistic"}


def get_activation(activation: Any) -> Activation:
    """Resolve a name, an :class:`Activation` or a user pair ``(h, dh)``.

    A user pair holds two callables of the pre-activation array ``a``: ``h(a)`` and its
    derivative ``dh(a)``; both must use only Array API operations to run on every backend.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        name = ALIASES.get(activation, activation)
        if name not in ACTIVATIONS:
            raise ValueError(
                f"activation={activation!r} is unknown; accepted: {', '.join(ACTIVATIONS)} "
                "or a pair (h, dh) of callables"
            )
        return ACTIVATIONS[name]
    if (
        isinstance(activation, tuple)
        and len(activation) == 2
        and all(callable(f) for f in activation)
    ):
        h, dh = (_user_function(f, what) for f, what in zip(activation, ("h", "dh")))
        name = f"custom:{getattr(activation[0], '__name__', 'h')}"
        return Activation(name, lambda A, *, xp: h(A), lambda A, Z, *, xp: dh(A))
    raise TypeError(
        f"activation must be a name ({', '.join(ACTIVATIONS)}) or a pair (h, dh) of "
        f"callables, got {activation!r}"
    )


def _user_function(f: Callable, what: str) -> Callable:
    """A user's ``h`` or ``dh``: it must take the one array ``a`` (checked now where Python
    can tell) and give an array of its shape (checked at each call: a broadcast would train
    on wrong gradients, silently)."""
    try:
        inspect.signature(f).bind(None)
    except TypeError:
        raise TypeError(
            f"activation's {what}{inspect.signature(f)} does not take one argument; accepted: "
            "a pair (h, dh) of callables h(a), dh(a) of the pre-activation array a"
        ) from None
    except ValueError:  # no signature to read (NumPy's ufuncs, torch's builtins)
        pass

    def checked(A):
        out = f(A)
        if getattr(out, "shape", None) != A.shape:
            got = f"shape {tuple(out.shape)}" if hasattr(out, "shape") else type(out).__name__
            raise ValueError(
                f"activation's {what}(a) gave {got} for a of shape {tuple(A.shape)}; "
                "accepted: an array of a's shape"
            )
        # another library's array fails far from here; another dtype (NumPy's float64 of a
        # float32 a) would train and predict in it: numbers (a bool h'(a) > 0 too) are cast
        # to a's dtype, as the model casts its inputs
        if type(out) is not type(A) and namespace_of(out) is not namespace_of(A):
            raise TypeError(
                f"activation's {what}(a) gave a {type(out).__module__}.{type(out).__name__} "
                f"for a {type(A).__module__}.{type(A).__name__}; accepted: an array of a's "
                "backend (Array API operations on a)"
            )
        if out.dtype != A.dtype:
            xp = namespace_of(A)
            if not xp.isdtype(out.dtype, ("bool", "integral", "real floating")):
                raise TypeError(
                    f"activation's {what}(a) gave {out.dtype} for a of {A.dtype}; accepted: "
                    "real numbers (bool, int or float)"
                )
            out = xp.astype(out, A.dtype)
        return out

    return checked
