"""The command line: ``xpmlp demo | train | predict | evaluate | info``.

``xpmlp train`` reads a table (CSV with a header row, ``.npz`` with arrays ``X`` and ``y``
or ``T``, or ``.npy`` whose last column is the target), standardises the features, fits an
:class:`~xpmlp.MLP` and reports the held-out score; without data it learns scikit-learn's
handwritten digits. ``--save model.npz`` writes the network with ``MLP.save`` and, next to
it, ``model.npz.cli.json``: what the command line needs to use the network on raw tables
again (feature and target names, task, class labels, the features' mean and standard
deviation, the regression targets' mean and standard deviation). ``xpmlp predict`` and
``xpmlp evaluate`` read both files.

Bad input ends with one line ``xpmlp: error: ...`` on standard error and exit status 2 (1
for a failure during training); set ``XPMLP_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .activations import ACTIVATIONS
from .activations import ALIASES as ACTIVATION_ALIASES
from .backend import BACKENDS, BackendError, resolve, to_numpy
from .objectives import OUTPUTS
from .optim import OPTIMIZERS
from .progress import write

MAX_CLASSES = 20  # integer targets with at most this many values are class labels
SIDECAR_SUFFIX = ".cli.json"


class CLIError(Exception):
    """A one-line message for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (``xpmlp: error: ...``)."""

    def error(self, message: str):  # type: ignore[override]
        raise CLIError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------------- tables


@dataclass
class Table:
    """A data set as read from disk.

    ``X`` (N, D) holds the features as float64; ``targets`` one (N,) array per target column,
    float64 when the column is numeric, else strings.
    """

    X: np.ndarray
    targets: list[np.ndarray]
    feature_names: list[str]
    target_names: list[str]
    name: str


def read_table(
    path: str,
    *,
    target: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    n_features: int | None = None,
    need_target: bool = False,
) -> Table:
    """Read a CSV, ``.npz`` or ``.npy`` file.

    Parameters
    ----------
    path : the file
    target : CSV target column names; empty when no target is needed (``predict``)
    features : CSV feature column names; default every column that is not a target
    n_features : D for ``.npy`` files, whose last column is the target when they hold D + 1
    need_target : a ``.npy`` file's last column is the target whatever its width
    """
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"no such file: {path}")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        return _read_npz(p)
    if suffix == ".npy":
        return _read_npy(p, need_target, n_features)
    return _read_csv(p, list(target or ()), features)


def _read_csv(path: Path, target: list[str], features: Sequence[str] | None) -> Table:
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [(n, r) for n, r in enumerate(csv.reader(f, delimiter=delimiter), 1) if r]
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path} is not a text CSV file ({exc.reason})") from exc
    except csv.Error as exc:
        raise CLIError(f"{path} is not a readable CSV file: {exc}") from exc
    if len(rows) < 2:
        raise CLIError(f"{path} needs a header row and at least one data row")
    header = [h.strip() for h in rows[0][1]]
    if len(set(header)) != len(header):
        raise CLIError(f"{path}: the header repeats a column name: {', '.join(header)}")
    for n, r in rows[1:]:
        if len(r) != len(header):
            raise CLIError(f"{path}, line {n}: {len(r)} fields, the header has {len(header)}")
    for name in target:
        if name not in header:
            raise CLIError(
                f"target column {name!r} is not in {path}; columns: {', '.join(header)}"
            )
    if features is None:
        features = [h for h in header if h not in target]
    for name in features:
        if name not in header:
            raise CLIError(f"feature column {name!r} that the model needs is not in {path}")
    if not features:
        raise CLIError(f"{path} has no feature columns besides the target")
    lines = [n for n, _ in rows[1:]]
    column = {h: [r[i].strip() for _, r in rows[1:]] for i, h in enumerate(header)}
    X = np.stack([_numbers(column[h], h, path, lines) for h in features], axis=1)
    targets = [_target_column(column[h], h, path, lines) for h in target]
    return Table(X, targets, list(features), target, path.name)


def _numbers(values: list[str], name: str, path: Path, lines: list[int]) -> np.ndarray:
    """A feature column as float64, or a :class:`CLIError` naming the first bad value."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except ValueError:
        i = next(i for i, v in enumerate(values) if not _is_number(v))
        what = "a missing value" if values[i] == "" else f"the value {values[i]!r}"
        raise CLIError(
            f"feature column {name!r} of {path} is not numeric ({what} on line {lines[i]}); "
            "features must be numbers"
        ) from None
    if not np.isfinite(x).all():
        i = int(np.flatnonzero(~np.isfinite(x))[0])
        raise CLIError(
            f"feature column {name!r} of {path} holds {values[i]!r} on line {lines[i]}; "
            "features must be finite numbers"
        )
    return x


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _target_column(values: list[str], name: str, path: Path, lines: list[int]) -> np.ndarray:
    if "" in values:
        i = values.index("")
        raise CLIError(f"target column {name!r} of {path} misses a value on line {lines[i]}")
    if all(_is_number(v) for v in values):
        t = np.asarray(values, dtype=np.float64)
        if np.isfinite(t).all():
            return t
    return np.asarray(values, dtype=str)


def _read_npz(path: Path) -> Table:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            data = {k: arrays[k] for k in arrays.files}
    except (ValueError, OSError) as exc:
        raise CLIError(f"{path} is not a readable .npz file: {exc}") from exc
    if "X" not in data:
        raise CLIError(f"{path} has no array 'X'; it holds: {', '.join(data) or 'nothing'}")
    X = _features_array(data["X"], path)
    key = next((k for k in ("y", "T", "t") if k in data), None)
    targets, names = [], []
    if key is not None:
        Y = data[key]
        Y = Y[:, None] if Y.ndim == 1 else Y
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise CLIError(f"{path}: {key} has shape {data[key].shape}; X has {X.shape[0]} rows")
        targets = [_target_array(Y[:, k]) for k in range(Y.shape[1])]
        names = [key] if Y.shape[1] == 1 else [f"{key}{k}" for k in range(Y.shape[1])]
    return Table(X, targets, [f"x{i}" for i in range(X.shape[1])], names, path.name)


def _read_npy(path: Path, with_target: bool, n_features: int | None) -> Table:
    try:
        A = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CLIError(f"{path} is not a readable .npy file: {exc}") from exc
    if A.ndim != 2:
        raise CLIError(f"{path} holds an array of shape {A.shape}; a 2-d table is needed")
    split = with_target or (n_features is not None and A.shape[1] == n_features + 1)
    if split and A.shape[1] < 2:
        raise CLIError(f"{path} has one column; features and a last target column are needed")
    X = _features_array(A[:, :-1] if split else A, path)
    targets = [_target_array(A[:, -1])] if split else []
    return Table(
        X, targets, [f"x{i}" for i in range(X.shape[1])], ["y"] if split else [], path.name
    )


def _features_array(X: np.ndarray, path: Path) -> np.ndarray:
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2:
        raise CLIError(f"{path}: the features have shape {X.shape}; a 2-d table is needed")
    if X.dtype.kind not in "biuf":
        raise CLIError(f"{path}: the features are not numeric (dtype {X.dtype})")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise CLIError(f"{path}: the features hold NaN or inf; they must be finite numbers")
    return X


def _target_array(t: np.ndarray) -> np.ndarray:
    if t.dtype.kind in "biuf":
        return t.astype(np.float64)
    return t.astype(str)


def digits_or_synthetic() -> Table:
    """scikit-learn's 8x8 handwritten digits (1797 x 64, 10 classes) when scikit-learn is
    installed, else three interleaved spirals (600 x 2, 3 classes) drawn from a fixed seed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        rng = np.random.default_rng(20240501)
        n = 200
        r = np.tile(np.linspace(0.1, 1.0, n), 3)
        c = np.repeat(np.arange(3), n)
        angle = 4.0 * r + c * 2 * np.pi / 3 + rng.normal(0.0, 0.15, size=3 * n)
        X = np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)
        return Table(X, [c.astype(np.float64)], ["x0", "x1"], ["arm"], "spirals (synthetic)")
    digits = load_digits()
    return Table(
        digits.data.astype(np.float64),
        [digits.target.astype(np.float64)],
        list(digits.feature_names),
        ["digit"],
        "digits (scikit-learn)",
    )


# ------------------------------------------------------------------------- targets


def _labels(t: np.ndarray) -> np.ndarray:
    """Class labels as strings: integral numbers without a decimal point ("3", not "3.0")."""
    if t.dtype.kind == "f":
        return np.asarray([str(int(v)) if v == int(v) else repr(float(v)) for v in t], dtype=str)
    return t.astype(str)


def _sorted_classes(labels: np.ndarray) -> list[str]:
    classes = sorted(set(labels.tolist()))
    if all(_is_number(c) for c in classes):
        classes.sort(key=float)
    return classes


def infer_task(targets: Sequence[np.ndarray]) -> str:
    """Classification for non-numeric targets or integers with few values, else regression."""
    for t in targets:
        if t.dtype.kind not in "f":
            return "classification"
    few = all(np.all(t == np.round(t)) and np.unique(t).size <= MAX_CLASSES for t in targets)
    return "classification" if few else "regression"


def target_encoding(table: Table, task: str, output: str) -> dict:
    """The sidecar's description of the targets: task, output, classes, scaling."""
    names = table.target_names
    if task == "regression":
        for t, name in zip(table.targets, names):
            if t.dtype.kind != "f":
                raise CLIError(
                    f"target column {name!r} is not numeric; regression needs numbers "
                    "(use --task classification)"
                )
        if output not in ("auto", "identity"):
            raise CLIError(f"--output {output} does not fit regression; use identity or auto")
        return {"task": task, "output": "identity", "classes": None, "onehot": False}
    classes = [_sorted_classes(_labels(t)) for t in table.targets]
    for c, name in zip(classes, names):
        if len(c) < 2:
            raise CLIError(f"target column {name!r} has a single class ({c[0]!r})")
    if len(classes) == 1:
        K = len(classes[0])
        if output == "auto":
            output = "logistic" if K == 2 else "softmax"
        onehot = not (K == 2 and output != "softmax")
    else:
        wide = [n for c, n in zip(classes, names) if len(c) > 2]
        if wide:
            raise CLIError(
                f"target column {wide[0]!r} has more than two classes; several target "
                "columns must each be binary (or give one target column)"
            )
        if output == "softmax":
            raise CLIError("--output softmax needs one target column; use logistic")
        output = "logistic" if output == "auto" else output
        onehot = False
    return {"task": task, "output": output, "classes": classes, "onehot": onehot}


def encode_targets(table: Table, enc: dict) -> np.ndarray:
    """The targets ``T`` (N, K) the network learns: one-hot, 0/1 or (unscaled) numbers."""
    if enc["task"] == "regression":
        return np.stack(table.targets, axis=1)
    columns = []
    for t, classes, name in zip(table.targets, enc["classes"], table.target_names):
        index = {c: i for i, c in enumerate(classes)}
        labels = _labels(t)
        unknown = sorted(set(labels.tolist()) - set(index))
        if unknown:
            raise CLIError(
                f"target column {name!r} holds {unknown[0]!r}, a class the model never saw; "
                f"its classes: {', '.join(classes)}"
            )
        columns.append(np.asarray([index[v] for v in labels], dtype=np.int64))
    if enc["onehot"]:
        return np.eye(len(enc["classes"][0]))[columns[0]]
    return np.stack(columns, axis=1).astype(np.float64)


def decode_outputs(Y: np.ndarray, meta: dict) -> list[np.ndarray]:
    """Network outputs (N, K) back to one column per target: labels or numbers."""
    if meta.get("task") == "classification":
        if meta["onehot"]:
            return [np.asarray(meta["classes"][0])[np.argmax(Y, axis=1)]]
        return [np.asarray(c)[(Y[:, j] > 0.5).astype(int)] for j, c in enumerate(meta["classes"])]
    if meta.get("y_mean") is not None:
        Y = Y * np.asarray(meta["y_std"]) + np.asarray(meta["y_mean"])
    return [Y[:, k] for k in range(Y.shape[1])]


def metrics(table: Table, predicted: list[np.ndarray], meta: dict) -> dict:
    """Accuracy (all target columns right) for classification; R^2, RMSE, MAE otherwise."""
    if meta["task"] == "classification":
        hit = np.ones(table.X.shape[0], dtype=bool)
        for t, p in zip(table.targets, predicted):
            hit &= _labels(t) == p
        return {"accuracy": float(hit.mean()), "correct": int(hit.sum()), "n": int(hit.size)}
    T, Y = np.stack(table.targets, axis=1), np.stack(predicted, axis=1)
    ss_tot = ((T - T.mean(axis=0)) ** 2).sum(axis=0)
    ss_res = ((T - Y) ** 2).sum(axis=0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
    return {
        "r2": float(r2.mean()),
        "rmse": float(np.sqrt(((T - Y) ** 2).mean())),
        "mae": float(np.abs(T - Y).mean()),
        "n": int(T.shape[0]),
    }


def _format_metrics(m: dict) -> str:
    if "accuracy" in m:
        return f"accuracy {m['accuracy']:.4f} ({m['correct']}/{m['n']})"
    return f"R^2 {m['r2']:.4f}, RMSE {m['rmse']:.4g}, MAE {m['mae']:.4g} (n={m['n']})"


# ------------------------------------------------------------------------- models on disk


def sidecar_path(model: str | Path) -> Path:
    """``model.npz`` -> ``model.npz.cli.json``: the command line's metadata for a model."""
    return Path(f"{model}{SIDECAR_SUFFIX}")


def save_model(net: Any, path: str, meta: dict) -> Path:
    """Write the network with ``net.save`` and the command line's metadata next to it."""
    if not hasattr(net, "save"):
        raise CLIError("saving models needs xpmlp.io, which this installation lacks", code=1)
    net.save(path)
    side = sidecar_path(path)
    items = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items())
    side.write_text("{\n" + items + "\n}\n", encoding="utf-8")
    return side


def load_model(path: str, backend: str | None, device: str | None) -> tuple[Any, dict]:
    """The network (``xpmlp.load``) and its command-line metadata (``{}`` when absent)."""
    if not Path(path).is_file():
        raise CLIError(f"no such file: {path}")
    try:
        from .io import load
    except ImportError as exc:
        raise CLIError("loading models needs xpmlp.io, which this installation lacks") from exc
    try:
        net = load(path, backend=backend, device=device)
    except (KeyError, ValueError, OSError) as exc:
        if isinstance(exc, BackendError):
            raise
        raise CLIError(f"{path} is not a model saved by xpmlp: {_one_line(exc)}") from exc
    side = sidecar_path(path)
    meta = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    return net, meta


def _standardise(X: np.ndarray, meta: dict) -> np.ndarray:
    if meta.get("x_mean") is None:
        return X
    return (X - np.asarray(meta["x_mean"])) / np.asarray(meta["x_std"])


def _model_input(net: Any, X: np.ndarray, meta: dict, path: str) -> np.ndarray:
    D = net.layer_sizes[0]
    if X.shape[1] != D:
        raise CLIError(f"{path} has {X.shape[1]} feature columns; the model takes {D}")
    return _standardise(X, meta)


# ------------------------------------------------------------------------- commands


def _training_table(args: argparse.Namespace) -> Table:
    if args.data is None:
        if args.target:
            raise CLIError("--target needs a DATA file")
        return digits_or_synthetic()
    if Path(args.data).suffix.lower() not in (".npz", ".npy") and not args.target:
        raise CLIError("--target is required for a CSV file: name the column(s) to learn")
    table = read_table(args.data, target=args.target, features=args.features, need_target=True)
    if not table.targets:
        raise CLIError(f"{table.name} holds no target (an array 'y' or 'T' in an .npz file)")
    return table


def prepare(
    table: Table, *, task: str | None, output: str, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
    """Encode the targets, hold out rows and standardise with the training rows' statistics.

    Returns
    -------
    X, T : (N, D) standardised features, (N, K) targets as the network learns them
    tr, va : row indices of the training and held-out samples (a host permutation of ``seed``)
    meta : the sidecar's content
    """
    task = task or infer_task(table.targets)
    enc = target_encoding(table, task, output)
    T = encode_targets(table, enc)
    N = table.X.shape[0]
    n_val = int(round(validation_fraction * N))
    n_val = max(n_val, 1) if validation_fraction > 0 else 0
    if n_val >= N:
        raise CLIError(f"--validation-fraction {validation_fraction} leaves no training rows")
    order = np.random.default_rng(seed).permutation(N)
    va, tr = order[:n_val], order[n_val:]
    x_mean, x_std = table.X[tr].mean(axis=0), table.X[tr].std(axis=0)
    x_std[x_std == 0] = 1.0
    meta = {
        "format": "xpmlp-cli",
        "version": 1,
        "xpmlp": __version__,
        "data": table.name,
        "feature_names": table.feature_names,
        "target_names": table.target_names,
        **enc,
        "score_name": "R^2" if enc["output"] == "identity" else "accuracy",
        "x_mean": x_mean.tolist(),
        "x_std": x_std.tolist(),
        "y_mean": None,
        "y_std": None,
    }
    if task == "regression":  # learn standardised targets; predict undoes it
        y_mean, y_std = T[tr].mean(axis=0), T[tr].std(axis=0)
        y_std[y_std == 0] = 1.0
        meta["y_mean"], meta["y_std"] = y_mean.tolist(), y_std.tolist()
        T = (T - y_mean) / y_std
    return _standardise(table.X, meta), T, tr, va, meta


def cmd_train(args: argparse.Namespace) -> int:
    """Fit a network to a table and report its held-out score."""
    import xpmlp

    resolve(args.backend, args.device)  # a missing backend fails before any data is read
    if args.plot:
        from .plots import check_available

        check_available()
    table = _training_table(args)
    X, T, tr, va, meta = prepare(
        table,
        task=args.task,
        output=args.output,
        validation_fraction=args.validation_fraction,
        seed=args.seed,
    )
    n_val = len(va)
    sizes = [X.shape[1], *args.hidden, T.shape[1]]
    net = xpmlp.MLP(
        sizes,
        args.activation,
        meta["output"],
        backend=args.backend,
        device=args.device,
        dtype=args.dtype,
        seed=args.seed,
    )
    score_name = meta["score_name"]
    if not args.quiet:
        classes = meta["classes"]
        what = f"{len(classes[0])} classes" if classes and len(classes) == 1 else meta["task"]
        print(
            f"{table.name}: {len(tr)} training and {n_val} held-out samples, "
            f"{X.shape[1]} features, {what}\n"
            f"MLP {sizes} {args.activation}/{meta['output']} on {net.backend} "
            f"({args.dtype}), {args.solver} lr={args.lr:g}, batch {args.batch_size or 'full'}, "
            f"{args.epochs} epochs",
            flush=True,
        )
    every = max(1, round(args.epochs / 20))

    def report(epoch: int, loss: float, score: float | None, model: Any) -> None:
        if args.quiet or (epoch % every and epoch not in (1, args.epochs)):
            return
        val = "" if score is None else f"   val {score_name} {score:.4f}"
        write(f"epoch {epoch:>{len(str(args.epochs))}}/{args.epochs}   loss {loss:.5f}{val}")

    val_data = (X[va], T[va]) if n_val else None
    t0 = time.perf_counter()
    try:
        history = net.fit(
            X[tr],
            T[tr],
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            optimizer=args.solver,
            alpha=args.alpha,
            validation_data=val_data,
            callbacks=[report],
            verbose=not args.quiet,
        )
    except FloatingPointError as exc:
        raise CLIError(_one_line(exc), code=1) from exc
    seconds = time.perf_counter() - t0
    final = f"final training loss {history['loss'][-1]:.5f}" if history["loss"] else "no epochs"
    print(f"{final} after {seconds:.1f} s")
    if n_val:
        held = Table(table.X[va], [t[va] for t in table.targets], [], table.target_names, "")
        Y = to_numpy(net.predict(X[va]))
        print(f"held-out {_format_metrics(metrics(held, decode_outputs(Y, meta), meta))}")
    if args.save:
        side = save_model(net, args.save, meta)
        print(f"saved {args.save} (and {side.name})")
    if args.plot:
        from .plots import plot_history

        plot_history(history, args.plot, score_name=score_name)
        print(f"wrote {args.plot}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Write the model's predictions for a table as CSV."""
    net, meta = load_model(args.model, args.backend, args.device)
    table = read_table(
        args.data, features=meta.get("feature_names"), n_features=net.layer_sizes[0]
    )
    X = _model_input(net, table.X, meta, args.data)
    Y = to_numpy(net.predict(X))
    columns = decode_outputs(np.asarray(Y, dtype=np.float64), meta)
    names = meta.get("target_names") or [f"y{k}" for k in range(len(columns))]
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout
    try:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(names)
        for row in zip(*columns):
            w.writerow([v if isinstance(v, str) else f"{v:.8g}" for v in row])
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"wrote {len(table.X)} predictions to {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score the model on a labelled table."""
    net, meta = load_model(args.model, args.backend, args.device)
    if not meta:
        raise CLIError(
            f"{sidecar_path(args.model)} is missing; evaluate needs a model saved by xpmlp train"
        )
    target = args.target or meta["target_names"]
    table = read_table(
        args.data,
        target=target,
        features=meta["feature_names"],
        n_features=net.layer_sizes[0],
        need_target=True,
    )
    if len(table.targets) != len(meta["target_names"]):
        raise CLIError(
            f"the model predicts {len(meta['target_names'])} target column(s), "
            f"--target names {len(table.targets)}"
        )
    if meta["task"] == "classification":
        encode_targets(table, meta)  # unknown classes -> one clear error
    X = _model_input(net, table.X, meta, args.data)
    Y = np.asarray(to_numpy(net.predict(X)), dtype=np.float64)
    print(f"{table.name}: {_format_metrics(metrics(table, decode_outputs(Y, meta), meta))}")
    return 0


DEMO_FUNCTIONS = (
    ("x^2", r"$x^2$", lambda x: x**2),
    ("sin(pi x)", r"$\sin(\pi x)$", lambda x: np.sin(np.pi * x)),
    ("|x|", r"$|x|$", np.abs),
    ("step H(x)", r"Heaviside step $H(x)$", lambda x: (x >= 0).astype(np.float64)),
)


def cmd_demo(args: argparse.Namespace) -> int:
    """Bishop's PRML Fig. 5.3: a 1-3-1 tanh network fitted to four functions."""
    import xpmlp

    from .plots import DemoPanel, check_available, plot_demo

    check_available()
    x = np.linspace(-1.0, 1.0, 50)[:, None]
    grid = np.linspace(-1.0, 1.0, 201)[:, None]
    panels = []
    t0 = time.perf_counter()
    for name, title, f in DEMO_FUNCTIONS:
        t = f(x)
        net = xpmlp.MLP(
            [1, 3, 1],
            "tanh",
            "identity",
            backend=args.backend,
            device=args.device,
            dtype=args.dtype,
            seed=args.seed,
        )
        history = net.fit(
            x,
            t,
            epochs=args.epochs,
            batch_size=None,
            learning_rate=args.lr,
            optimizer=args.solver,
            shuffle=False,
        )
        cache = net.forward(grid)
        Z = np.asarray(to_numpy(cache.Z[1]), dtype=np.float64)
        y = np.asarray(to_numpy(cache.Z[-1]), dtype=np.float64)[:, 0]
        loss = history["loss"][-1]
        panels.append(DemoPanel(title, x[:, 0], t[:, 0], grid[:, 0], y, Z, loss))
        print(f"{name:<10} final loss {loss:.3e}")
    plot_demo(panels, args.out, dpi=args.dpi)
    print(
        f"{args.epochs} full-batch {args.solver} steps each on {net.backend} in "
        f"{time.perf_counter() - t0:.1f} s; wrote {args.out}"
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Versions, backends, CUDA devices and the BLAS in use."""
    import importlib

    print(f"xpmlp {__version__}")
    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.platform()}"
    )
    print(f"default backend: {os.environ.get('XPMLP_BACKEND') or 'numpy'}")
    print("backends:")
    modules = {}
    for name in (*BACKENDS, "array_api_compat"):
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a broken install must not stop the report
            status = "not installed" if isinstance(exc, ImportError) else _one_line(exc)
        else:
            modules[name] = mod
            status = getattr(mod, "__version__", "installed")
        print(f"  {name:<17} {status}")
    print("CUDA devices:")
    for line in _cuda_devices(modules):
        print(f"  {line}")
    print("BLAS:")
    for line in _blas():
        print(f"  {line}")
    return 0


def _cuda_devices(modules: dict) -> list[str]:
    """One line per CUDA device, via CuPy or else PyTorch; why there is none otherwise."""
    notes = []
    if "cupy" in modules:
        try:
            rt = modules["cupy"].cuda.runtime
            props = [rt.getDeviceProperties(i) for i in range(rt.getDeviceCount())]
        except Exception as exc:  # noqa: BLE001 - no driver, no device: report, never fail
            notes.append(f"CuPy: {_one_line(exc)}")
        else:
            if props:
                return [
                    f"{i}: {_text(p['name'])}, {p['totalGlobalMem'] / 2**30:.1f} GiB (via CuPy)"
                    for i, p in enumerate(props)
                ]
            notes.append("CuPy sees none")
    else:
        notes.append("CuPy not installed")
    if "torch" in modules:
        torch = modules["torch"]
        try:
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            props = [torch.cuda.get_device_properties(i) for i in range(n)]
        except Exception as exc:  # noqa: BLE001
            notes.append(f"PyTorch: {_one_line(exc)}")
        else:
            if props:
                return [
                    f"{i}: {p.name}, {p.total_memory / 2**30:.1f} GiB (via PyTorch)"
                    for i, p in enumerate(props)
                ]
            cuda = torch.version.cuda
            notes.append(f"PyTorch (CUDA {cuda}) sees none" if cuda else "PyTorch is CPU-only")
    return [f"none found ({'; '.join(notes)})"]


def _text(x: str | bytes) -> str:
    return x.decode() if isinstance(x, bytes) else x


def _blas() -> list[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["unknown (pip install threadpoolctl to see it)"]
    lines = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        layer = lib.get("threading_layer")
        lines.append(
            f"{lib.get('internal_api')} {lib.get('version') or ''}".rstrip()
            + f", {lib.get('num_threads')} threads"
            + (f" ({layer})" if layer and layer != "unknown" else "")
            + f", {Path(lib.get('filepath', '')).name}"
        )
    return lines or ["none found"]


# ------------------------------------------------------------------------- parser


def _hidden(text: str) -> list[int]:
    """``"64,64"`` -> [64, 64]; ``""`` -> [] (no hidden layer)."""
    sizes = [s.strip() for s in text.split(",") if s.strip()]
    if not all(s.isdigit() and int(s) > 0 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of layer sizes; accepted: e.g. 64,64 (ints >= 1)"
        )
    return [int(s) for s in sizes]


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}; accepted: an int >= 1")
    return int(text)


def _batch_size(text: str) -> int | None:
    if text.strip().lower() in ("full", "all", "0"):
        return None
    return _positive_int(text)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v > 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text!r}; accepted: a number > 0")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v >= 0 and np.isfinite(v)):
        raise argparse.ArgumentTypeError(f"{text!r}; accepted: a number >= 0")
    return v


def _fraction(text: str) -> float:
    v = _nonneg_float(text)
    if v >= 1:
        raise argparse.ArgumentTypeError(f"{text!r}; accepted: a number in [0, 1)")
    return v


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        default=None,
        help=f"array library: {', '.join(BACKENDS)} (default: $XPMLP_BACKEND, else numpy)",
    )
    p.add_argument("--device", default=None, help="device, e.g. cpu, cuda, cuda:1")


def build_parser() -> argparse.ArgumentParser:
    """The ``xpmlp`` argument parser with its five commands."""
    parser = _Parser(
        prog="xpmlp",
        description="Multilayer perceptrons trained by explicit error backpropagation "
        "on NumPy, CuPy, PyTorch, JAX or array-api-strict.",
    )
    parser.add_argument("--version", action="version", version=f"xpmlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    activations = [*ACTIVATIONS, *ACTIVATION_ALIASES]

    p = sub.add_parser("demo", help="fit a 1-3-1 tanh network to four curves; write a PNG")
    p.add_argument("--out", default="xpmlp-demo.png", help="picture file (default: %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=3000, help="full-batch steps")
    p.add_argument("--lr", type=_positive_float, default=0.03, help="learning rate")
    p.add_argument("--solver", choices=list(OPTIMIZERS), default="adam")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--dpi", type=_positive_int, default=100)
    _backend_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train on a CSV/.npz/.npy table (default: digits)")
    p.add_argument("data", nargs="?", metavar="DATA", help="CSV, .npz (X, y) or .npy file")
    p.add_argument("--target", type=_columns, default=[], help="target column(s), a,b")
    p.add_argument(
        "--features",
        type=_columns,
        default=None,
        help="CSV feature columns, a,b,c (default: every other column)",
    )
    p.add_argument(
        "--task",
        choices=["classification", "regression"],
        default=None,
        help="default: classification for labels or few integer values",
    )
    p.add_argument("--hidden", type=_hidden, default=[64, 64], help="hidden sizes (64,64)")
    p.add_argument("--activation", choices=activations, default="tanh")
    p.add_argument("--output", choices=["auto", *OUTPUTS], default="auto")
    p.add_argument("--solver", choices=list(OPTIMIZERS), default="adam")
    p.add_argument("--epochs", type=_positive_int, default=100)
    p.add_argument("--batch-size", type=_batch_size, default=64, help="int, or full")
    p.add_argument("--lr", type=_positive_float, default=0.001, help="learning rate")
    p.add_argument("--alpha", type=_nonneg_float, default=0.0, help="L2 penalty")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--validation-fraction",
        type=_fraction,
        default=0.1,
        help="share of rows held out and scored (default: %(default)s)",
    )
    p.add_argument("--save", metavar="MODEL", help="write the model (e.g. model.npz)")
    p.add_argument("--plot", metavar="PNG", help="write loss and validation curves")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    _backend_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict a table with a saved model, as CSV")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--out", help="CSV file (default: standard output)")
    _backend_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="score a saved model on a labelled table")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--target", type=_columns, default=None, help="default: as trained")
    _backend_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("info", help="versions, backends, CUDA devices, BLAS")
    p.set_defaults(func=cmd_info)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.func(args)
    except KeyboardInterrupt:
        print("xpmlp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `xpmlp predict ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (CLIError, ImportError, ValueError, TypeError, OSError, MemoryError) as exc:
        if os.environ.get("XPMLP_DEBUG"):
            raise
        if isinstance(exc, OSError) and exc.filename is not None:
            message = f"{exc.strerror or _one_line(exc)}: {exc.filename}"
        else:
            message = _one_line(exc)
        print(f"xpmlp: error: {message}", file=sys.stderr)
        return getattr(exc, "code", 2) if isinstance(exc, CLIError) else 2
