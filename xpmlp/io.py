"""Saving and loading models: plain NumPy arrays and JSON metadata in one ``.npz``, no pickle.

The file holds

- ``W0 .. W{L-1}``: the weights, ``W[l]`` of shape (n_{l+1}, n_l + 1), bias in column 0;
- ``opt_{field}{l}``: each list-of-arrays field of the optimizer's state, e.g. ``opt_m{l}``,
  ``opt_v{l}`` (Adam's moments), each shaped like ``W[l]``;
- ``best_W{l}``: the best weights kept by early stopping, if any;
- ``metadata``: a UTF-8 JSON document stored as a 1-d ``uint8`` array. It names the format
  and its version, the layer sizes, activation, output, dtype, the optimizer with its
  hyper-parameters and scalar state (Adam's ``t``), the training loop's scalars and history,
  and the host random generator's state, so that ``fit`` continues exactly where it stopped.

Every array is a NumPy array, so a model trained on a GPU loads where CuPy is missing.
:func:`load` reads with ``allow_pickle=False`` and checks every name, dtype and shape against
the metadata before it builds the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import math
import os
import re
import secrets
import stat
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from numbers import Integral
from typing import IO, Any

import numpy as np

from . import train
from ._checks import check_choice, check_int, check_layer_sizes, check_nonneg, check_positive
from .activations import ACTIVATIONS
from .backend import dtype_name, get_dtype, to_numpy
from .model import MLP, check_storable, optimizer_key, rng_state
from .optim import OPTIMIZERS

FORMAT = "xpmlp.MLP"
VERSION = 1
METADATA = "metadata"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # what numpy.load takes for an .npz
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
MAX_COUNT = 2**63  # step and sample counts at or above it are not ones a run can reach
# the loop's scalars; its arrays (optimizer state, best weights) and history travel apart
LOOP_SCALARS = [
    f
    for f in dataclasses.fields(train.LoopState)
    if f.name not in ("opt_state", "best_weights", "history")
]


def save(net: MLP, path: str | os.PathLike | IO[bytes]) -> None:
    """Write ``net`` to ``path`` as an ``.npz`` of NumPy arrays and JSON metadata.

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
        pair or output, or an optimizer other than ``"sgd"``/``"adam"``.

    A regular file is written whole or not at all: the model goes to a temporary file beside
    it, which then replaces it, so a failure (a full disk, Ctrl-C) leaves the old file as it
    was (a hard link to the old file keeps the old model). A read-only file is refused as
    ``open`` refuses it; a device or pipe (``/dev/stdout``), or a folder where no temporary
    file can be made, is written in place, in one write from memory.
    """
    _check_path(path, "write")
    arrays, meta = _to_arrays(net)
    arrays[METADATA] = np.frombuffer(
        json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8
    )
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    with replacing(path, lambda f: np.savez(f, **arrays)):
        pass


def check_writable(path: str | os.PathLike) -> os.stat_result | None:
    """The ``os.stat`` of ``path`` (None if it does not exist yet) after checking that it can
    be written: a folder in its place, a missing folder above it or a file that may not be
    written raises the ``OSError`` that writing would, naming ``path``."""
    given = os.fsdecode(os.fspath(path))
    try:
        st = os.stat(given)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(given) or "."):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", given) from None
        return None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", given)
    if not os.access(given, os.W_OK):
        raise PermissionError(errno.EACCES, "Permission denied", given)
    return st


@contextmanager
def replacing(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Iterator[None]:
    """Write the new content of ``path`` aside with ``write(file)``, and put it in place when
    the ``with`` block ends without an error (else drop it): a regular file is replaced in one
    step by a temporary file beside it; a device, a pipe, or a file in a folder that takes no
    new file is written in place, in one write from memory. Errors name ``path``."""
    given = os.fsdecode(os.fspath(path))
    st = check_writable(given)
    regular = st is None or stat.S_ISREG(st.st_mode)
    tmp = _temporary_beside(given, st) if regular else None
    if tmp is None:
        buffer = io.BytesIO()
        write(buffer)
        yield
        with open(given, "wb") as f:
            f.write(buffer.getbuffer())
        return
    fd, tmp, target = tmp
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # on disk before it replaces the old file
        yield
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and tmp in (exc.filename, exc.filename2):
            raise OSError(exc.errno, exc.strerror, given) from exc
        raise


def _temporary_beside(given: str, st: os.stat_result | None) -> tuple[int, str, str] | None:
    """A new file next to the file ``given`` names, through links (open for writing, with the
    old file's permissions, else those the umask leaves), its name and the file's own path;
    None where the folder takes no new file."""
    target = os.path.realpath(given)  # through a link, as open() goes
    folder, name = os.path.split(target)
    mode = 0o666 if st is None else stat.S_IMODE(st.st_mode)  # the kernel applies the umask
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    token = secrets.token_hex(6)
    try:
        try:
            tmp = os.path.join(folder, f".{name}.{token}.tmp")
            fd = os.open(tmp, flags, mode)
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:
                raise
            tmp = os.path.join(folder, f".{token}.tmp")  # a name near the limit
            fd = os.open(tmp, flags, mode)
    except PermissionError:
        return None  # a read-only folder: the file itself may still be writable
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, given) from exc
    if st is not None:
        os.fchmod(fd, mode)  # the old file's own bits, whatever the umask
    return fd, tmp, target


def _to_arrays(net: MLP) -> tuple[dict, dict]:
    """The file's arrays (NumPy) and metadata (JSON-able) for ``net``; raises before writing."""
    check_storable(net, "cannot save: ")
    dtype = dtype_name(net.dtype)
    host = lambda prefix, xs: {  # cast only where the backend's dtype differs
        f"{prefix}{l}": np.asarray(to_numpy(x), dtype=dtype) for l, x in enumerate(xs)
    }
    arrays = host("W", net.weights)
    state, optimizer = net.state, None
    if net._optimizer_key is not None and state.opt_state is not None:
        label, _, learning_rate, schedule, power_t, rule = net._optimizer_key
        # the rule and hyper-parameters the update computed with; a user's functions: none
        name, hyperparams = rule if rule[0] in OPTIMIZERS else (label, None)
        opt = state.opt_state
        try:
            template = _template(name, hyperparams, len(net.weights))
        except (KeyError, TypeError, ValueError):
            template = None
        if type(opt) is not type(template):
            what = type(opt).__name__ if hyperparams is not None else "its own functions"
            raise ValueError(
                f"cannot save the state of optimizer {name!r} ({what}); "
                f"accepted: {', '.join(OPTIMIZERS)} (xpmlp.optim.sgd or xpmlp.optim.adam)"
            )
        scalars = {}
        for field, v in zip(opt._fields, opt):
            if isinstance(v, list):
                arrays.update(host(f"opt_{field}", v))
            elif v is not None:
                scalars[field] = int(v)
        optimizer = {
            "name": name,
            "hyperparams": {
                k: bool(v) if isinstance(v, (bool, np.bool_)) else float(v)
                for k, v in hyperparams.items()
            },
            "learning_rate": float(learning_rate),
            "schedule": schedule,
            "power_t": float(power_t),
            "state": scalars,
        }
    if state.best_weights is not None:
        arrays.update(host("best_W", state.best_weights))
    from . import __version__

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
        "optimizer": optimizer,
        "loop": {f.name: _to_json(getattr(state, f.name)) for f in LOOP_SCALARS},
        "history": {k: [_to_json(x) for x in v] for k, v in state.history.items()},
        "rng": _rng_to_json(net.rng),
    }
    return arrays, meta


def _to_json(x) -> int | float | str | None:
    """JSON has no infinities or NaN: they travel as the strings ``"inf"``, ``"nan"``, ..."""
    if x is None or isinstance(x, Integral):
        return None if x is None else int(x)
    x = float(x)
    return x if math.isfinite(x) else str(x)


def finite_json_number(x: Any) -> bool:
    """Whether a JSON value is a finite number (not a bool, nor an int beyond float range)."""
    return type(x) in (int, float) and abs(x) <= sys.float_info.max


def _number(x, name: str, *, nan: bool = True) -> float:
    """The inverse of :func:`_to_json` for a float; ``nan=False`` refuses NaN."""
    if isinstance(x, (int, float)) and not isinstance(x, bool) or x in ("inf", "-inf", "nan"):
        if nan or not math.isnan(float(x)):
            return float(x)
    raise ValueError(f"{name}={x!r:.40}; accepted: a number" + ("" if nan else ", not NaN"))


def _template(name: str, hyperparams: dict, n_layers: int) -> Any:
    """A fresh state of ``OPTIMIZERS[name]`` for empty weights, allocating nothing: which of
    its fields are lists of per-layer arrays and which are ints holds for every state."""
    return OPTIMIZERS[name](**hyperparams).init([np.zeros((0, 0))] * n_layers, xp=np)


def _rng_to_json(rng) -> dict:
    if isinstance(rng, (np.random.RandomState, np.random.Generator)):
        return {"kind": type(rng).__name__, "state": _plain(rng_state(rng))}
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


def load(path: str | os.PathLike | IO[bytes], backend: Any = None, device: Any = None) -> MLP:
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
    _check_path(path, "read")
    where = _where(path)
    arrays = _read(path, where)
    try:
        net = _restore(arrays)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return net.to(backend, device)


def _check_path(path, method: str) -> None:
    """Refuse a ``path`` that names no file and is no file object with ``method``."""
    named = isinstance(path, (str, bytes, os.PathLike))
    mode = getattr(path, "mode", "b")  # a text file: TextIOBase, or a wrapper's mode
    text = isinstance(path, io.TextIOBase) or (isinstance(mode, str) and "b" not in mode)
    if not (named or hasattr(path, method)) or (not named and text):
        raise TypeError(
            f"path={path!r:.60}; accepted: a file name (str or os.PathLike) or a binary file "
            f"object with .{method}() (open(..., '{method[0]}b'), io.BytesIO)"
        )


def _where(path) -> str:
    """How error messages name the file: its path, or an open file's name."""
    name = getattr(path, "name", None) if hasattr(path, "read") else os.fspath(path)
    return repr(name) if isinstance(name, (str, bytes)) else "the file"


def _restore(arrays: dict) -> MLP:
    """The model (on NumPy) that the file's arrays and metadata describe, all checked."""
    meta = _metadata(arrays.pop(METADATA, None))
    with _metadata_errors():
        sizes = check_layer_sizes(meta["layer_sizes"])
        dtype = np.dtype(get_dtype(meta["dtype"], xp=np))
        shapes = [(n_out, n_in + 1) for n_in, n_out in zip(sizes, sizes[1:])]
        key, template = _optimizer(_section(meta, "optimizer", none=True), len(shapes))
    # the template's list fields, and best_W0 if present, say which arrays the file holds
    fields = template._asdict().items() if template is not None else ()
    prefixes = ["W", *(f"opt_{f}" for f, v in fields if isinstance(v, list))]
    prefixes += ["best_W"] if "best_W0" in arrays else []
    expected = {f"{p}{l}": shape for p in prefixes for l, shape in enumerate(shapes)}
    _check_arrays(arrays, expected, dtype)
    host = {p: [arrays[f"{p}{l}"] for l in range(len(shapes))] for p in prefixes}
    with _metadata_errors():
        if str(meta["activation"]).startswith("custom"):
            raise ValueError(
                f"activation={meta['activation']!r} is a custom activation, which a file "
                f"cannot restore; accepted: {', '.join(ACTIVATIONS)}"
            )
        net = MLP(
            sizes,
            meta["activation"],
            meta["output"],
            backend="numpy",
            dtype=dtype.name,
            seed=meta["seed"],
            init=meta["init"] or "glorot",
        )
        if meta["init"] is None:
            net.init = None  # a callable init, which cannot be stored
        net.rng = _rng_from_json(_section(meta, "rng"))
        opt_state = None if template is None else _fill(template, meta["optimizer"], host)
        net.state = _loop_state(meta, opt_state, host.get("best_W"))
    net._weights = host["W"]  # checked above: the model's dtype and shapes, on the host
    net._optimizer_key = key
    return net


def _optimizer(opt: dict | None, n_layers: int) -> tuple:
    """The optimizer's key (as ``MLP.fit`` compares it) and a fresh state as template."""
    if opt is None:
        return None, None
    name = check_choice(opt["name"], "optimizer name", OPTIMIZERS)
    saved, defaults = _section(opt, "hyperparams"), OPTIMIZERS[name]().hyperparams
    for k, v in saved.items():  # flags stay flags, numbers finite numbers
        if isinstance(defaults.get(k), bool):
            if not isinstance(v, bool):
                raise ValueError(f"{k}={v!r:.40}; accepted: true or false")
        elif not finite_json_number(v):
            raise ValueError(f"{k}={v!r:.40}; accepted: a finite number")
    built = OPTIMIZERS[name](**saved)
    learning_rate = check_positive(opt["learning_rate"], "learning_rate")
    schedule = check_choice(opt["schedule"], "schedule", train.SCHEDULES)
    power_t = check_nonneg(opt.get("power_t", train.Config.power_t), "power_t")  # 0.5 before
    key = optimizer_key(built, learning_rate, schedule, power_t)
    return key, _template(name, built.hyperparams, n_layers)


def _fill(template: Any, opt: dict, host: dict) -> Any:
    """``template`` with the file's arrays in its list fields, its ints from the metadata."""
    saved = _section(opt, "state")
    for field, v in template._asdict().items():
        if isinstance(v, list):
            template = template._replace(**{field: host[f"opt_{field}"]})
        elif v is not None:
            template = template._replace(**{field: _count(saved[field], field)})
    return template


def _count(v, name: str) -> int:
    """A saved step or sample count: an int in [0, 2**63)."""
    v = check_int(v, name, 0)
    if v >= MAX_COUNT:
        raise ValueError(f"{name} is a {v.bit_length()}-bit int; accepted: an int < 2**63")
    return v


def _loop_state(meta: dict, opt_state: Any, best_weights: list | None) -> train.LoopState:
    loop, scalars = _section(meta, "loop"), {}
    for f in LOOP_SCALARS:
        v = loop[f.name]
        if isinstance(f.default, int):
            scalars[f.name] = _count(v, f.name)
        else:
            scalars[f.name] = None if v is None else _number(v, f.name, nan=False)
    if scalars["learning_rate"] is not None:
        check_nonneg(scalars["learning_rate"], "learning_rate")  # invscaling falls to 0
    saved, history = _section(meta, "history"), {}
    for k in train.LoopState().history:  # the lists fit appends to, and no others
        if not isinstance(saved.get(k), list):
            got = f"{saved[k]!r:.40}" if k in saved else "missing"
            raise ValueError(f"history[{k!r}] is {got}; accepted: a list of numbers")
        history[k] = [_number(x, f"history[{k!r}]") for x in saved[k]]
    if set(saved) - set(history):
        raise ValueError(
            f"history holds {sorted(set(saved) - set(history))}; accepted: {sorted(history)}"
        )
    return train.LoopState(
        opt_state=opt_state, best_weights=best_weights, history=history, **scalars
    )


# what zipfile and numpy raise for archives that are damaged in one way or another
DAMAGED = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def _read(path, where: str) -> dict[str, np.ndarray]:
    """Every member of the ``.npz``, read into memory; nothing is ever unpickled."""
    with nullcontext(path) if hasattr(path, "read") else open(os.fspath(path), "rb") as fh:
        if hasattr(fh, "seekable") and not fh.seekable():  # a pipe: read once, into memory
            fh = io.BytesIO(fh.read())
        start = fh.tell()
        if fh.read(4) not in ZIP_MAGIC:
            raise ValueError(f"{where} is not an xpmlp model file: not an .npz (zip) archive")
        fh.seek(start)
        try:
            f = np.load(fh, allow_pickle=False)
        except (ValueError, *DAMAGED) as exc:
            raise ValueError(
                f"{where} is not a readable .npz archive (truncated?): {exc}"
            ) from exc
        out = {}
        with f:
            # zipfile reads the last archive of the stream: one written after the model
            # (two saves to one stream) would be loaded in its place
            if min((i.header_offset for i in f.zip.infolist()), default=start) != start:
                raise ValueError(
                    f"{where} holds another archive after the model at its position; "
                    "accepted: one model per file or stream (save each to its own)"
                )
            try:  # every member against its CRC-32: a changed byte is not a model
                bad = f.zip.testzip()
            except DAMAGED as exc:  # e.g. flags that claim encryption or another compression
                raise ValueError(f"{where} is damaged: {exc}") from exc
            if bad is not None:
                raise ValueError(f"{where} is damaged: member {bad!r} fails its checksum")
            for name in f.files:
                try:
                    out[name] = f[name]
                except ValueError as exc:  # object arrays need pickle, which is refused
                    raise ValueError(f"{where}: array {name!r} cannot be read: {exc}") from exc
                except (*DAMAGED, KeyError) as exc:
                    raise ValueError(
                        f"{where} is damaged or truncated at {name!r}: {exc}"
                    ) from exc
                if not isinstance(out[name], np.ndarray):  # numpy hands such members as bytes
                    raise ValueError(f"{where}: member {name!r} is not a NumPy array (.npy)")
    return out


def _metadata(raw) -> dict:
    if raw is None:
        raise ValueError(f"the file has no {METADATA!r} entry; it was not written by MLP.save")
    if not (raw.dtype == np.uint8 and raw.ndim == 1):
        raise ValueError(
            f"{METADATA!r} must be a 1-d uint8 array of JSON text, got {raw.dtype} of shape "
            f"{raw.shape}"
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
    version = meta.get("version")
    if type(version) is not int or version != VERSION:  # not True, not 1.0
        raise ValueError(
            f"metadata version={version!r} is not supported; accepted: {VERSION} "
            "(written by a newer xpmlp?)"
        )
    return meta


@contextmanager
def _metadata_errors():
    """A missing key or a value the checks refuse becomes one ``ValueError`` about the file."""
    try:
        yield
    except KeyError as exc:
        raise ValueError(f"metadata is missing {exc}") from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"metadata cannot be restored: {exc}") from exc


def _section(d: dict, key: str, *, none: bool = False) -> dict | None:
    v = d[key]
    if not (isinstance(v, dict) or (none and v is None)):
        raise ValueError(f"{key} must be a JSON object, got {v!r:.80}")
    return v


def _check_arrays(arrays: dict, expected: dict, dtype: np.dtype) -> None:
    """Names, dtypes, shapes and finiteness of every array against the metadata."""
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing:
        raise ValueError(f"the file lacks the arrays {missing} that its metadata announces")
    if extra:
        raise ValueError(f"the file holds arrays {extra} that its metadata does not announce")
    for name, shape in expected.items():
        A = arrays[name]
        if A.dtype != dtype:
            raise ValueError(f"array {name!r} has dtype {A.dtype}; the metadata says {dtype}")
        if A.shape != shape:
            raise ValueError(f"array {name!r} has shape {A.shape}; the network needs {shape}")
        # Adam's v may overflow to +inf (its steps are then 0): a state fit can go on from
        adam_v = re.fullmatch(r"opt_v\d+", name) is not None
        finite = np.isfinite(A) | (A == np.inf) if adam_v else np.isfinite(A)
        if not finite.all():
            raise ValueError(f"array {name!r} contains NaN or inf")


def _rng_from_json(rng: dict) -> np.random.Generator | np.random.RandomState:
    kind = check_choice(rng["kind"], "rng kind", ("Generator", "RandomState"))
    state = _unplain(_section(rng, "state"))
    name = check_choice(state.get("bit_generator"), "rng bit_generator", BIT_GENERATORS)
    bit_generator = getattr(np.random, name)()
    if kind == "RandomState":  # on any bit generator; its state and the cached normal
        r = np.random.RandomState(bit_generator)
        r.set_state(state)
        return r
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _unplain(x):
    """The inverse of :func:`_plain`; only integer arrays are accepted."""
    if isinstance(x, dict):
        if set(x) == {"array", "dtype"}:
            dtype = np.dtype(x["dtype"]) if isinstance(x["dtype"], str) else None
            if dtype is None or dtype.kind not in "iu" or not isinstance(x["array"], list):
                raise ValueError(f"rng state holds a bad array {x!r:.80}")
            return np.asarray(x["array"], dtype=dtype)
        return {k: _unplain(v) for k, v in x.items()}
    return x
