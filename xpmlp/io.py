"""Saving and loading models: plain NumPy arrays and JSON metadata in one ``.npz``, no pickle.

The file holds

- ``W0 .. W{L-1}``: the weights, ``W[l]`` of shape (n_{l+1}, n_l + 1), bias in column 0;
- the optimizer's arrays: ``opt_V{l}`` (SGD velocities) or ``opt_m{l}``, ``opt_v{l}`` (Adam
  moments), each shaped like ``W[l]``;
- ``best_W{l}``: the best weights kept by early stopping, if any;
- ``metadata``: a UTF-8 JSON document stored as a 1-d ``uint8`` array. It names the format
  and its version, the layer sizes, activation, output, dtype, the optimizer with its
  hyper-parameters and scalar state, the training loop's scalars and history, and the host
  random generator's state, so that ``fit`` continues exactly where it stopped.

Every array is a NumPy array, so a model trained on a GPU loads where CuPy is missing.
:func:`load` reads with ``allow_pickle=False`` and checks every name, dtype and shape against
the metadata before it builds the model.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from io import BytesIO
from typing import IO, Any

import numpy as np

from . import network, train
from .activations import ACTIVATIONS
from .backend import DTYPES, dtype_name, to_numpy
from .objectives import OUTPUTS
from .optim import OPTIMIZERS, AdamState, SGDState

FORMAT = "xpmlp.MLP"
VERSION = 1
METADATA = "metadata"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # what numpy.load takes for an .npz
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
# the optimizer's arrays in the file, per layer l: file prefix -> state field
OPT_ARRAYS = {"sgd": {"opt_V": "velocities"}, "adam": {"opt_m": "m", "opt_v": "v"}}


# ---------------------------------------------------------------- save


def save(net: Any, path: str | os.PathLike | IO[bytes]) -> None:
    """Write ``net`` (an :class:`xpmlp.MLP`) to ``path`` as an ``.npz`` of NumPy arrays.

    Parameters
    ----------
    net : MLP
        Any backend; its arrays are copied to host memory.
    path : str, path or binary file
        Written as given (no suffix is added).

    Raises
    ------
    ValueError
        If the model holds something that cannot be restored by name: a custom activation
        pair or an optimizer other than ``"sgd"``/``"adam"``.
    """
    arrays, meta = _to_arrays(net)
    arrays[METADATA] = np.frombuffer(
        json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8
    )
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    with open(os.fspath(path), "wb") as f:
        np.savez(f, **arrays)


def _to_arrays(net: Any) -> tuple[dict, dict]:
    """The file's arrays (NumPy) and metadata (JSON-able) for ``net``; raises before writing."""
    if net.activation.name not in ACTIVATIONS:
        raise ValueError(
            f"cannot save a model with activation={net.activation.name!r}: a custom (h, dh) "
            f"pair cannot be restored from a file; accepted: {', '.join(ACTIVATIONS)}"
        )
    dtype = dtype_name(net.dtype)
    host = lambda xs: [np.array(to_numpy(x), dtype=dtype) for x in xs]  # noqa: E731
    arrays = {f"W{l}": W for l, W in enumerate(host(net.weights))}
    state = net.state
    key = net._optimizer_key
    optimizer = None
    if key is not None and state.opt_state is not None:
        name, hyperparams, learning_rate, schedule = key
        opt = state.opt_state
        expected = {"sgd": SGDState, "adam": AdamState}.get(name)
        if expected is None or not isinstance(opt, expected):
            raise ValueError(
                f"cannot save the state of optimizer {name!r} ({type(opt).__name__}); "
                f"accepted: {', '.join(OPTIMIZERS)} (xpmlp.optim.sgd or xpmlp.optim.adam)"
            )
        optimizer = {
            "name": name,
            "hyperparams": {k: _scalar(v) for k, v in hyperparams.items()},
            "learning_rate": float(learning_rate),
            "schedule": schedule,
            "t": int(opt.t) if name == "adam" else None,
            "has_arrays": name == "adam" or opt.velocities is not None,
        }
        if optimizer["has_arrays"]:
            for prefix, field in OPT_ARRAYS[name].items():
                for l, A in enumerate(host(getattr(opt, field))):
                    arrays[f"{prefix}{l}"] = A
    if state.best_weights is not None:
        for l, W in enumerate(host(state.best_weights)):
            arrays[f"best_W{l}"] = W
    from . import __version__

    classes = getattr(net, "classes", None)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "xpmlp_version": __version__,
        "layer_sizes": [int(n) for n in net.layer_sizes],
        "activation": net.activation.name,
        "output": net.output.name,
        "dtype": dtype,
        "init": net.init if isinstance(net.init, str) else None,
        "seed": int(net.seed) if isinstance(net.seed, (int, np.integer)) else None,
        "backend": net.backend,
        "classes": None if classes is None else _classes_to_json(classes),
        "optimizer": optimizer,
        "loop": {
            "learning_rate": None if state.learning_rate is None else float(state.learning_rate),
            "t": int(state.t),
            "epochs": int(state.epochs),
            "best_loss": _float(state.best_loss),
            "best_score": _float(state.best_score),
            "no_improvement": int(state.no_improvement),
            "has_best_weights": state.best_weights is not None,
        },
        "history": {k: [_float(x) for x in v] for k, v in state.history.items()},
        "rng": _rng_to_json(net.rng),
    }
    return arrays, meta


def _scalar(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    return float(v)


def _float(x) -> float | str:
    """JSON has no infinities: ``inf``/``-inf`` travel as strings."""
    x = float(x)
    return x if math.isfinite(x) else str(x)


def _classes_to_json(classes) -> dict:
    C = np.asarray(to_numpy(classes) if hasattr(classes, "shape") else classes)
    if C.dtype.kind == "O" and all(isinstance(c, str) for c in C.ravel()):
        C = C.astype(str)
    if C.dtype.kind not in "biufU" or C.ndim != 1:
        raise ValueError(
            f"cannot save classes of dtype {C.dtype} and shape {C.shape}; accepted: a 1-d "
            "array of bools, ints, floats or strings"
        )
    return {"values": C.tolist(), "dtype": C.dtype.str}


def _rng_to_json(rng) -> dict:
    if isinstance(rng, np.random.RandomState):
        return {"kind": "RandomState", "state": _plain(rng.get_state(legacy=False))}
    if isinstance(rng, np.random.Generator):
        return {"kind": "Generator", "state": _plain(rng.bit_generator.state)}
    raise ValueError(
        f"cannot save the random generator {type(rng).__name__}; accepted: "
        "numpy.random.Generator or numpy.random.RandomState"
    )


def _plain(x):
    """A bit generator's state as JSON: arrays become ``{"array": [...], "dtype": ...}``."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return {"array": x.tolist(), "dtype": x.dtype.str}
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return x


# ---------------------------------------------------------------- load


def load(path: str | os.PathLike | IO[bytes], backend: Any = None, device: Any = None) -> Any:
    """Read a model written by :func:`save`, on ``backend`` (and ``device``).

    Parameters
    ----------
    path : str, path or binary file
    backend : {"numpy", "cupy", "torch", "jax", "array_api_strict"}, module or None
        ``None`` is the library default (``XPMLP_BACKEND``, else NumPy), whatever backend
        the model was saved from: a model trained with CuPy loads where CuPy is missing.
    device : str, int or None

    Returns
    -------
    MLP with the saved weights, optimizer state, training history and random generator:
    ``fit`` continues as if it had never stopped.

    Raises
    ------
    ValueError
        If the file is not an xpmlp model (not an ``.npz``, truncated, pickled or object
        arrays), or any name, dtype, shape or value disagrees with its metadata.
    """
    arrays = _read(path)
    meta = _metadata(arrays.pop(METADATA, None))
    spec = _check_metadata(meta)
    _check_arrays(arrays, spec)
    return _build(arrays, meta, spec, backend, device)


def _read(path) -> dict[str, Any]:
    """Every member of the ``.npz``, read into memory; nothing is ever unpickled."""
    where = "the file" if hasattr(path, "read") else repr(os.fspath(path))
    if hasattr(path, "read"):
        data = path.read()
    else:
        with open(os.fspath(path), "rb") as fh:
            data = fh.read()
    if not isinstance(data, bytes) or data[:4] not in ZIP_MAGIC:
        raise ValueError(f"{where} is not an xpmlp model file: not an .npz (zip) archive")
    try:
        f = np.load(BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{where} is not a readable .npz archive (truncated?): {exc}") from exc
    out = {}
    with f:
        for name in f.files:
            try:
                out[name] = f[name]
            except ValueError as exc:  # object arrays need pickle, which is refused
                raise ValueError(f"{where}: array {name!r} cannot be read: {exc}") from exc
            except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
                raise ValueError(f"{where} is damaged or truncated at {name!r}: {exc}") from exc
    return out


def _metadata(raw) -> dict:
    if raw is None:
        raise ValueError(f"the file has no {METADATA!r} entry; it was not written by xpmlp.save")
    if not (isinstance(raw, np.ndarray) and raw.dtype == np.uint8 and raw.ndim == 1):
        raise ValueError(
            f"{METADATA!r} must be a 1-d uint8 array of JSON text, got "
            f"{getattr(raw, 'dtype', type(raw).__name__)} of shape {getattr(raw, 'shape', '?')}"
        )
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{METADATA!r} is not valid JSON text: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{METADATA!r} must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"metadata format={meta.get('format')!r} is unknown; accepted: {FORMAT!r}"
        )
    if meta.get("version") != VERSION:
        raise ValueError(
            f"metadata version={meta.get('version')!r} is not supported; accepted: {VERSION} "
            "(written by a newer xpmlp?)"
        )
    return meta


def _get(d: dict, key: str, where: str, types: type | tuple, *, none: bool = False):
    if not isinstance(d, dict) or key not in d:
        section = f" {where.rstrip('.')}" if where else ""
        raise ValueError(f"metadata{section} is missing {key!r}")
    v = d[key]
    if v is None and none:
        return v
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ValueError(f"metadata {where}{key}={v!r} has the wrong type")
    if not isinstance(v, types):
        raise ValueError(f"metadata {where}{key}={v!r} has the wrong type")
    return v


def _num(d: dict, key: str, where: str, *, none: bool = False, finite: bool = True):
    v = _get(d, key, where, (int, float, str), none=none)
    if v is None:
        return v
    if isinstance(v, str):
        if v not in ("inf", "-inf") or finite:
            raise ValueError(f"metadata {where}{key}={v!r} is not a number")
        return float(v)
    if not math.isfinite(v):
        raise ValueError(f"metadata {where}{key}={v!r} is not finite")
    return v


def _count(d: dict, key: str, where: str) -> int:
    v = _get(d, key, where, int)
    if v < 0:
        raise ValueError(f"metadata {where}{key}={v!r} must be >= 0")
    return v


def _check_metadata(meta: dict) -> dict:
    """Validate the metadata; returns what building needs, the expected arrays included."""
    sizes = _get(meta, "layer_sizes", "", list)
    if len(sizes) < 2 or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes
    ):
        raise ValueError(f"metadata layer_sizes={sizes!r}; accepted: [D, n_1, ..., K], ints >= 1")
    activation = _get(meta, "activation", "", str)
    if activation not in ACTIVATIONS:
        what = "a custom activation, which" if activation.startswith("custom") else "unknown; it"
        raise ValueError(
            f"metadata activation={activation!r} is {what} cannot be restored; "
            f"accepted: {', '.join(ACTIVATIONS)}"
        )
    output = _get(meta, "output", "", str)
    if output not in OUTPUTS:
        raise ValueError(f"metadata output={output!r} is unknown; accepted: {', '.join(OUTPUTS)}")
    dtype = _get(meta, "dtype", "", str)
    if dtype not in DTYPES:
        raise ValueError(
            f"metadata dtype={dtype!r} is not supported; accepted: {', '.join(DTYPES)}"
        )
    init = _get(meta, "init", "", str, none=True)
    if init is not None and init not in network.INITS:
        raise ValueError(
            f"metadata init={init!r} is unknown; accepted: {', '.join(network.INITS)}"
        )
    _get(meta, "seed", "", int, none=True)
    classes = _get(meta, "classes", "", dict, none=True)
    if classes is not None:
        _classes_from_json(classes)
    L = len(sizes) - 1
    shapes = [(sizes[l + 1], sizes[l] + 1) for l in range(L)]
    expected = {f"W{l}": shapes[l] for l in range(L)}
    optimizer = _check_optimizer(_get(meta, "optimizer", "", dict, none=True))
    if optimizer is not None and optimizer["has_arrays"]:
        for prefix in OPT_ARRAYS[optimizer["name"]]:
            expected.update({f"{prefix}{l}": shapes[l] for l in range(L)})
    loop = _get(meta, "loop", "", dict)
    w = "loop."
    _num(loop, "learning_rate", w, none=True)
    for key in ("t", "epochs", "no_improvement"):
        _count(loop, key, w)
    for key in ("best_loss", "best_score"):
        _num(loop, key, w, finite=False)
    if _get(loop, "has_best_weights", w, bool):
        expected.update({f"best_W{l}": shapes[l] for l in range(L)})
    history = _get(meta, "history", "", dict)
    for k, v in history.items():
        if not isinstance(v, list) or any(
            isinstance(x, bool)
            or not isinstance(x, (int, float, str))
            or (isinstance(x, str) and x not in ("inf", "-inf", "nan"))
            for x in v
        ):
            raise ValueError(f"metadata history[{k!r}] must be a list of numbers")
    _rng_from_json(_get(meta, "rng", "", dict))  # a trial run: raises on a bad state
    return {"dtype": dtype, "expected": expected, "optimizer": optimizer, "L": L}


def _check_optimizer(opt: dict | None) -> dict | None:
    if opt is None:
        return None
    w = "optimizer."
    name = _get(opt, "name", w, str)
    if name not in OPTIMIZERS:
        raise ValueError(
            f"metadata optimizer name={name!r} is unknown; accepted: {', '.join(OPTIMIZERS)}"
        )
    hyperparams = _get(opt, "hyperparams", w, dict)
    try:
        OPTIMIZERS[name](**hyperparams)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata optimizer hyperparams={hyperparams!r}: {exc}") from exc
    if _num(opt, "learning_rate", w) <= 0:
        raise ValueError(f"metadata optimizer learning_rate={opt['learning_rate']!r} must be > 0")
    schedule = _get(opt, "schedule", w, str)
    if schedule not in train.SCHEDULES:
        raise ValueError(
            f"metadata optimizer schedule={schedule!r} is unknown; "
            f"accepted: {', '.join(train.SCHEDULES)}"
        )
    has_arrays = _get(opt, "has_arrays", w, bool)
    if name == "adam":
        _count(opt, "t", w)
        if not has_arrays:
            raise ValueError("metadata optimizer 'adam' must have its moment arrays")
    elif has_arrays != (hyperparams.get("momentum", 0.0) != 0.0):
        raise ValueError(
            f"metadata optimizer 'sgd' with momentum={hyperparams.get('momentum', 0.0)!r} "
            f"{'cannot have' if has_arrays else 'needs'} velocity arrays"
        )
    return {"name": name, "has_arrays": has_arrays}


def _classes_from_json(classes: dict) -> np.ndarray:
    values = _get(classes, "values", "classes.", list)
    try:
        dtype = np.dtype(_get(classes, "dtype", "classes.", str))
    except TypeError as exc:
        raise ValueError(f"metadata classes dtype={classes['dtype']!r}: {exc}") from exc
    if dtype.kind not in "biufU":
        raise ValueError(
            f"metadata classes dtype={dtype.str!r}; accepted: bool, int, float or str"
        )
    try:
        C = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"metadata classes values do not fit dtype {dtype}: {exc}") from exc
    if C.ndim != 1:
        raise ValueError(f"metadata classes must be a flat list, got shape {C.shape}")
    return C


def _rng_from_json(rng: dict) -> np.random.Generator | np.random.RandomState:
    kind = _get(rng, "kind", "rng.", str)
    state = _unplain(_get(rng, "state", "rng.", dict))
    try:
        if kind == "RandomState":
            r = np.random.RandomState()
            r.set_state(state)
            return r
        if kind == "Generator":
            name = state.get("bit_generator")
            if name not in BIT_GENERATORS:
                raise ValueError(
                    f"bit_generator={name!r} is unknown; accepted: {', '.join(BIT_GENERATORS)}"
                )
            bit_generator = getattr(np.random, name)()
            bit_generator.state = state
            return np.random.Generator(bit_generator)
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"metadata rng state cannot be restored: {exc}") from exc
    raise ValueError(f"metadata rng kind={kind!r} is unknown; accepted: Generator, RandomState")


def _unplain(x):
    if isinstance(x, dict):
        if set(x) == {"array", "dtype"}:
            dtype = np.dtype(x["dtype"]) if isinstance(x["dtype"], str) else None
            if dtype is None or dtype.kind not in "iu" or not isinstance(x["array"], list):
                raise ValueError(f"metadata rng state holds a bad array {x!r:.80}")
            try:
                return np.asarray(x["array"], dtype=dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"metadata rng state holds a bad array: {exc}") from exc
        return {k: _unplain(v) for k, v in x.items()}
    return x


def _check_arrays(arrays: dict, spec: dict) -> None:
    """Names, dtypes, shapes and finiteness of every array against the metadata."""
    expected = spec["expected"]
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing:
        raise ValueError(f"the file lacks the arrays {missing} that its metadata announces")
    if extra:
        raise ValueError(f"the file holds arrays {extra} that its metadata does not announce")
    dtype = np.dtype(spec["dtype"])
    for name, shape in expected.items():
        A = arrays[name]
        if not isinstance(A, np.ndarray) or A.dtype != dtype:
            got = A.dtype if isinstance(A, np.ndarray) else type(A).__name__
            raise ValueError(f"array {name!r} has dtype {got}; the metadata says {dtype}")
        if A.shape != shape:
            raise ValueError(f"array {name!r} has shape {A.shape}; the network needs {shape}")
        if not np.isfinite(A).all():
            raise ValueError(f"array {name!r} contains NaN or inf")


def _build(arrays: dict, meta: dict, spec: dict, backend: Any, device: Any) -> Any:
    from .model import MLP

    L = spec["L"]
    layers = lambda prefix: [arrays[f"{prefix}{l}"] for l in range(L)]  # noqa: E731
    net = MLP(
        meta["layer_sizes"],
        meta["activation"],
        meta["output"],
        backend=backend,
        device=device,
        dtype=meta["dtype"],
        seed=meta["seed"],
        init=meta["init"] or "glorot",
    )
    if meta["init"] is None:
        net.init = None  # a callable init, which cannot be stored
    net.weights = layers("W")
    net.rng = _rng_from_json(meta["rng"])
    if meta["classes"] is not None:
        net.classes = _classes_from_json(meta["classes"])
    device_arrays = lambda xs: [net._array(x) for x in xs]  # noqa: E731
    loop = meta["loop"]
    opt_meta, opt_state, key = meta["optimizer"], None, None
    if opt_meta is not None:
        name = opt_meta["name"]
        if name == "adam":
            opt_state = AdamState(
                opt_meta["t"], device_arrays(layers("opt_m")), device_arrays(layers("opt_v"))
            )
        else:
            opt_state = SGDState(
                device_arrays(layers("opt_V")) if opt_meta["has_arrays"] else None
            )
        key = (name, opt_meta["hyperparams"], opt_meta["learning_rate"], opt_meta["schedule"])
    number = lambda x: float(x) if isinstance(x, str) else x  # noqa: E731
    net.state = train.LoopState(
        opt_state=opt_state,
        learning_rate=loop["learning_rate"],
        t=loop["t"],
        epochs=loop["epochs"],
        best_loss=float(number(loop["best_loss"])),
        best_score=float(number(loop["best_score"])),
        no_improvement=loop["no_improvement"],
        best_weights=device_arrays(layers("best_W")) if loop["has_best_weights"] else None,
        history={k: [number(x) for x in v] for k, v in meta["history"].items()},
    )
    net._optimizer_key = key
    return net
