"""Checks of the arguments users pass: each returns the value as used, or raises a
``ValueError``/``TypeError`` naming the argument, what it received and what is accepted."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Set
from numbers import Integral, Real

import numpy as np


def check_callbacks(callbacks) -> list:
    """``callbacks`` as a list of callables (``None``: no callbacks)."""
    if callbacks is None:
        return []
    if (
        callable(callbacks)
        or isinstance(callbacks, (str, bytes))
        or not isinstance(callbacks, Iterable)
    ):
        raise TypeError(
            f"callbacks must be a list of callables cb(epoch, loss, val_score, model), got "
            f"{type(callbacks).__name__}; one callback goes in a list: callbacks=[cb]"
        )
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise TypeError(f"callbacks must be callables, got {cb!r}")
    return callbacks


def check_layer_sizes(layer_sizes) -> list[int]:
    unordered = isinstance(layer_sizes, (Set, Mapping))  # a set's order is no layer order
    if unordered or isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
        raise TypeError(
            f"layer_sizes must be a list of ints [D, n_1, ..., K], got {layer_sizes!r}"
        )
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes={sizes!r} needs at least [D, K] (inputs and outputs)")
    for n in sizes:
        if isinstance(n, bool) or not isinstance(n, Integral) or n < 1:
            raise ValueError(f"layer_sizes={sizes!r}: every size must be an int >= 1, got {n!r}")
    sizes = [int(n) for n in sizes]
    count, most = sum((n + 1) * m for n, m in zip(sizes, sizes[1:])), np.iinfo(np.intp).max // 8
    if count > most:  # the weights' bytes must be addressable
        many = f"{count:.3g}" if count < 10**300 else "more than 1e300"  # past a float's range
        raise ValueError(
            f"layer_sizes={sizes!r} asks for {many} weights; accepted: at most {most:.3g}"
        )
    return sizes


def check_shape(shape, name, width):
    if len(shape) != 2 or shape[1] != width:
        raise ValueError(f"{name} has shape {tuple(shape)}; the network needs (N, {width})")


def check_int(v, name, low, accepted=None):
    if isinstance(v, bool) or not isinstance(v, Integral) or v < low:
        raise ValueError(f"{name}={v!r}; accepted: {accepted or f'an int >= {low}'}")
    return int(v)


def check_bool(v, name) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}={v!r}; accepted: True or False")
    return bool(v)


def check_in(v, name, ok, accepted) -> float:
    """``v`` as a finite float for which ``ok`` holds, else a ValueError naming ``name`` and
    what is ``accepted``."""
    f = finite_float(v, name, accepted)
    if not ok(f):
        raise ValueError(f"{name}={v!r}; accepted: {accepted}")
    return f


def check_positive(v, name):
    return check_in(v, name, lambda f: f > 0, "a finite number > 0")


def check_nonneg(v, name):
    return check_in(v, name, lambda f: f >= 0, "a finite number >= 0")


def finite_float(v, name, accepted) -> float:
    """``v`` as a finite float, else a ValueError naming ``name`` and what is ``accepted``."""
    if isinstance(v, bool) or not isinstance(v, Real):
        raise ValueError(f"{name}={v!r}; accepted: {accepted}")
    try:
        f = float(v)
    except OverflowError:  # an int such as 10**400
        raise ValueError(f"{name} is too large for a float; accepted: {accepted}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name}={v!r}; accepted: {accepted}")
    return f


def check_choice(v, name, choices):
    if v not in choices:
        raise ValueError(f"{name}={v!r} is unknown; accepted: {', '.join(choices)}")
    return v


def env_off(name: str) -> bool:
    """Whether the environment variable ``name`` switches something off: 0, false, no, off."""
    return os.environ.get(name, "").strip().lower() in ("0", "false", "no", "off")
