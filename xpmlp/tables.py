"""Tables for the command line: reading them, encoding their targets, and the sidecar.

A table is a CSV with a header row, an ``.npz`` with arrays ``X`` and ``y`` (or ``T``; a
one-hot (N, K) ``T`` is one target of K classes), or an ``.npy`` whose last column is the
target. The targets become what the network learns
(one-hot classes, 0/1 columns, or standardised numbers), the features are standardised with
the training rows' statistics, and both encodings are kept in the sidecar
``model.npz.cli.json`` next to the saved network so that ``predict`` and ``evaluate`` can use
the network on raw tables again.

Bad input raises :class:`CLIError`, whose message the command line prints as one line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import array_api_compat.numpy
import numpy as np

from . import __version__
from .backend import resolve
from .io import finite_json_number, load, replacing
from .model import r2_score

MAX_CLASSES = 20  # integer targets with at most this many values are class labels
MISSING = {"na", "n/a", "null", "none", "?"}  # what tables write for a missing value
SIDECAR_SUFFIX = ".cli.json"
SIDECAR_FORMAT, SIDECAR_VERSION = "xpmlp-cli", 2  # 2: with the model file's SHA-256
TASKS = ("classification", "regression")
# what NumPy raises for a damaged or truncated .npy/.npz file
UNREADABLE = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


class CLIError(Exception):
    """A one-line message for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its type's name when the message is empty)."""
    return " ".join(str(exc).split()) or type(exc).__name__


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
    task: str | None = None,
    classes: Sequence[Sequence[str]] | None = None,
) -> Table:
    """Read a CSV, ``.npz`` or ``.npy`` file.

    Parameters
    ----------
    path : the file
    target : CSV target column names; empty when no target is needed (``predict``)
    features : CSV feature column names; default every column that is not a target
    n_features : D for ``.npy`` files, whose last column is the target when they hold D + 1
    need_target : the targets are read (train, evaluate): a ``.npy`` file's last column is
        the target whatever its width; else an ``.npz``'s and ``.npy``'s are left unread
    task : the task the targets are for, if known; a regression target must be numbers
    classes : the labels of each target column as a model learnt them, if known: a CSV
        column's values match them by their text first ("01" stays "01")
    """
    p = Path(path)
    check_file(p, TABLE_FILES)
    suffix = p.suffix.lower()
    if suffix in NOT_TABLES:
        raise CLIError(
            f"{path}: {suffix} files are not read here; accepted: a CSV file (.csv, .tsv, "
            ".txt, ...) with a header row, .npz (X, y) or .npy"
        )
    if suffix not in (".npz", ".npy"):
        return _read_csv(p, list(target or ()), features, task, classes)
    if suffix == ".npz":  # a one-hot T is one target of K classes, unless K are named
        table = _read_npz(p, need_target, task, one_hot=len(target or ()) <= 1)
    else:
        table = _read_npy(p, need_target, n_features, task)
    if not len(table.X):
        raise CLIError(f"{path} has no rows")
    if need_target and not table.targets:
        raise CLIError(f"{path} has no target (an array 'y' or 'T' beside 'X')")
    for t, name in zip(table.targets, table.target_names):
        if task == "regression" and t.dtype.kind != "f":
            raise CLIError(f"{path}: target {name!r} is not numeric; regression needs numbers")
    return table


TABLE_FILES = "a CSV, .npz or .npy file"  # what a DATA argument may name


def check_file(p: Path, accepted: str) -> None:
    """Refuse a path that is missing or a folder; a pipe (``/dev/stdin``) is read."""
    if p.is_dir():
        raise CLIError(f"{p} is a folder; accepted: {accepted}")
    if not p.exists():
        raise CLIError(f"no such file: {p}")


# formats that are not a CSV table, refused by name instead of read as one
NOT_TABLES = {
    ".json", ".xlsx", ".xls", ".ods", ".parquet", ".feather", ".pkl", ".pickle", ".h5",
    ".hdf5", ".zip", ".gz", ".bz2", ".xz", ".png", ".jpg", ".pdf",
}  # fmt: skip


def _names(header) -> str:
    """The column names as ``--target`` and ``--features`` take them: a name holding a
    comma or a double quote in double quotes, as in a CSV."""
    quote = lambda n: '"' + n.replace('"', '""') + '"' if "," in n or '"' in n else n  # noqa: E731
    return ", ".join(quote(n) for n in header)


def _header_hint(header: list[str]) -> str:
    """Why a column may be missing: a first line of numbers (no header row), or a
    separator other than the comma."""
    try:
        [float(h) for h in header]
        return "; the first line holds numbers: the file needs a header row of column names"
    except ValueError:
        pass
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        return "; the columns are separated by ',' here (a tab in .tsv files)"
    return ""


def _read_csv(
    path: Path,
    target: list[str],
    features: Sequence[str] | None,
    task: str | None,
    classes: Sequence[Sequence[str]] | None,
) -> Table:
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    rows, blank, start = [], [], 1  # (physical line a record starts on, its fields)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter, strict=True)
            for r in reader:
                if r:
                    rows.append((start, r))
                else:
                    blank.append(start)
                start = reader.line_num + 1
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1].hex()
        raise CLIError(
            f"{path} is not UTF-8 text (byte 0x{byte}: {exc.reason}); accepted: CSV files "
            "in UTF-8 (save it as UTF-8)"
        ) from exc
    except csv.Error as exc:
        raise CLIError(f"{path}, line {start}: not a readable CSV record: {exc}") from exc
    if len(rows) < 2:
        raise CLIError(f"{path} needs a header row and at least one data row")
    header = [h.strip() for h in rows[0][1]]
    gap = next((n for n in blank if rows[0][0] < n < rows[-1][0]), None)
    if len(header) == 1 and gap is not None:  # an empty line is an empty field here
        raise CLIError(
            f"{path}, line {gap}: an empty line, in a one-column file a missing value of "
            f"{header[0]!r}; every row needs a value"
        )
    named = [h for h in header if h]  # columns without a name: refused below if read
    if len(set(named)) != len(named):
        raise CLIError(f"{path}: the header repeats a column name: {_names(header)}")
    for n, r in rows[1:]:
        if len(r) != len(header):
            raise CLIError(
                f"{path}, line {n}: {len(r)} fields, the header has {len(header)}"
                + _header_hint(header)  # "a;b;y" then "1,5;2,25;1": another separator
            )
    for kind, names in (("target", target), ("feature", features or ())):
        twice = next((c for i, c in enumerate(names) if c in names[:i]), None)
        if twice is not None:
            raise CLIError(f"{kind} column {twice!r} is named twice")
    both = next((c for c in features or () if c in target), None)
    if both is not None:
        raise CLIError(f"column {both!r} cannot be both the target and a feature")
    for name in target:
        if name not in header:
            raise CLIError(
                f"target column {name!r} is not in {path}; columns: {_names(header)}"
                + _header_hint(header)
            )
    if features is None:
        features = [h for h in header if h not in target]
        if "" in features:  # every other column is a feature: one without a name too
            i = header.index("")
            why = (
                "a separator at the end of the row?"
                if i == len(header) - 1
                else "a row index? pandas' to_csv(index=False) leaves it out"
            )
            raise CLIError(
                f"{path}: column {i + 1} has no name in the header row ({why}); accepted: a "
                "name for every column, or --features naming the ones to read"
            )
    for name in features:
        if name not in header:
            made_up = all(f == f"x{i}" for i, f in enumerate(features))
            raise CLIError(
                f"feature column {name!r} is not in {path}; columns: {_names(header)}"
                + _header_hint(header)
                + (
                    " (x0, x1, ... are the names a model trained on an .npz or .npy file "
                    "gives its features: name the CSV's columns so, or give an .npz/.npy)"
                    if made_up
                    else ""
                )
            )
    if not features:
        raise CLIError(f"{path} has no feature columns besides the target")
    lines = [n for n, _ in rows[1:]]
    column = {h: [r[i].strip() for _, r in rows[1:]] for i, h in enumerate(header)}
    X = np.stack([_numbers(column[h], h, path, lines) for h in features], axis=1)
    known = list(classes or ())
    targets = [
        _target_column(column[h], h, path, lines, task, known[j] if j < len(known) else None)
        for j, h in enumerate(target)
    ]
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


def _exact_labels(ids: list[int], task: str | None) -> np.ndarray | None:
    """Integers past float64's exact range (2**53) as class labels to their last digit,
    where the column is labels anyway (``--task classification``, or without a task as few
    values as :func:`infer_task` takes for classes); else None: they are numbers."""
    if task == "classification" or (task is None and len(set(ids)) <= MAX_CLASSES):
        return np.asarray([str(i) for i in ids], dtype=str)
    return None


def _is_int(v: str) -> bool:
    """Whether ``v`` is an integer literal, which ``int`` reads exactly."""
    return v.strip().lstrip("+-").isdigit()


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _target_column(
    values: list[str],
    name: str,
    path: Path,
    lines: list[int],
    task: str | None,
    classes: Sequence[str] | None = None,
) -> np.ndarray:
    """A target column as float64 when every value is a finite number, else as labels (as
    a model's ``classes``, if given: see :func:`_as_classes`); a missing value (empty, or
    one of :data:`MISSING`), a column of numbers with a NaN or inf in it, a regression target
    that is not all numbers, or (without a task) a column whose numbers would be a regression
    target and whose other values would turn it into labels, is an error."""
    bad = [i for i, v in enumerate(values) if not (_is_number(v) and math.isfinite(float(v)))]
    if not bad and classes is None:
        x = np.asarray(values, dtype=np.float64)
        if np.abs(x).max() >= 2**53 and all(map(_is_int, values)):
            labels = _exact_labels([int(v) for v in values], task)
            return x if labels is None else labels
        return x
    if "" in values:
        i = values.index("")
        raise CLIError(f"target column {name!r} of {path} misses a value on line {lines[i]}")
    # "NA", "none", ...: a missing value, unless one of the model's classes (a label it
    # predicts, from an .npz's labels)
    known = set(classes or ())
    gap = next((i for i in bad if values[i] not in known and values[i].lower() in MISSING), None)
    if gap is not None:
        # a class named so is possible where the column holds labels: other text, or a task
        labels = task == "classification" or (
            task is None and any(not _is_number(v) and v.lower() not in MISSING for v in values)
        )
        why = (
            "it is none of the model's classes"
            if classes is not None
            else "a class of that name: rename it, or give the data as .npz"
            if labels
            else None
        )
        raise CLIError(
            f"target column {name!r} of {path} holds {values[gap]!r} on line {lines[gap]}, a "
            "missing value; every row needs a target" + (f" ({why})" if why else "")
        )
    if classes is not None:
        return _as_classes(values, classes)
    text = [i for i in bad if not _is_number(values[i])]
    if task == "regression" or not text:
        raise CLIError(
            f"target column {name!r} of {path} holds {values[bad[0]]!r} on line "
            f"{lines[bad[0]]}; a numeric target needs a finite number on every row"
        )
    numbers = np.asarray([v for v in values if _is_number(v)], dtype=np.float64)
    if task is None and numbers.size and infer_task([numbers]) == "regression":
        raise CLIError(
            f"target column {name!r} of {path} holds {values[text[0]]!r} on line "
            f"{lines[text[0]]}, not a number, though {numbers.size} of its {len(values)} "
            f"values are numbers; as labels it would make {len(set(values))} classes: fix "
            "the value, or give --task classification to keep the values as labels"
        )
    return np.asarray(values, dtype=str)


def _as_classes(values: list[str], classes: Sequence[str]) -> np.ndarray:
    """A target column's values as a model's class labels: each one by its text, else by its
    number ("1.0" is class "1", "01" class "01"); a value that is neither stays as it is."""
    known = set(classes)

    def label(v: str) -> str:
        if v in known or not (_is_number(v) and math.isfinite(float(v))):
            return v
        number = str(int(v)) if _is_int(v) else _labels(np.asarray([float(v)]))[0]
        return number if number in known else v

    lookup = {v: label(v) for v in set(values)}
    return np.asarray([lookup[v] for v in values], dtype=str)


def _unreadable(path: Path, exc: BaseException) -> CLIError:
    """The error for a ``.npy``/``.npz`` file that NumPy could not read."""
    if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
        return CLIError(
            f"{path} holds Python objects (an object array), which are not loaded; accepted: "
            "arrays of numbers, or of strings for labels"
        )
    return CLIError(f"{path} is not a readable {path.suffix} file (damaged or truncated?): {exc}")


def _seekable(path: Path) -> Path | io.BytesIO:
    """``path``, or the bytes of a pipe read once, which NumPy can seek in."""
    return path if path.is_file() else io.BytesIO(path.read_bytes())


def _read_npz(path: Path, with_target: bool, task: str | None, one_hot: bool = True) -> Table:
    """``X`` and, ``with_target``, the target ``y`` (or ``T``, ``t``): one target column per
    column, a one-hot ``T`` one target of K classes (where ``one_hot``)."""
    try:
        with np.load(_seekable(path), allow_pickle=False) as arrays:
            data = {k: arrays[k] for k in arrays.files}
    except UNREADABLE as exc:
        raise _unreadable(path, exc) from exc
    if "X" not in data:
        raise CLIError(f"{path} has no array 'X'; it holds: {', '.join(data) or 'nothing'}")
    X = _features_array(data["X"], path)
    key = next((k for k in ("y", "T", "t") if k in data), None) if with_target else None
    targets, names = [], []
    if key is not None:
        Y = data[key]
        Y = Y[:, None] if Y.ndim == 1 else Y
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise CLIError(f"{path}: {key} has shape {data[key].shape}; X has {X.shape[0]} rows")
        if one_hot and Y.shape[1] > 1 and _one_hot(Y):  # the notes' (N, K) T
            Y = np.argmax(Y, axis=1)[:, None]
        names = [key] if Y.shape[1] == 1 else [f"{key}{k}" for k in range(Y.shape[1])]
        targets = [_target_array(Y[:, k], path, f"array {n!r}", task) for k, n in enumerate(names)]
    return Table(X, targets, [f"x{i}" for i in range(X.shape[1])], names, path.name)


def _one_hot(Y: np.ndarray) -> bool:
    """Whether every row of ``Y`` is 0 but for a single 1."""
    return Y.dtype.kind in "biuf" and bool(np.isin(Y, (0, 1)).all() and (Y.sum(axis=1) == 1).all())


def _read_npy(path: Path, with_target: bool, n_features: int | None, task: str | None) -> Table:
    try:
        A = np.load(_seekable(path), allow_pickle=False)
    except UNREADABLE as exc:
        raise _unreadable(path, exc) from exc
    if A.ndim != 2:
        raise CLIError(f"{path} holds an array of shape {A.shape}; a 2-d table is needed")
    split = with_target or (n_features is not None and A.shape[1] == n_features + 1)
    if split and A.shape[1] < 2:
        raise CLIError(f"{path} has one column; features and a last target column are needed")
    X = _features_array(A[:, :-1] if split else A, path)
    keep = split and with_target  # else the last column is left unread (predict)
    targets = [_target_array(A[:, -1], path, "the target (last) column", task)] if keep else []
    return Table(
        X, targets, [f"x{i}" for i in range(X.shape[1])], ["y"] if keep else [], path.name
    )


def _features_array(X: np.ndarray, path: Path) -> np.ndarray:
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2 or not X.shape[1]:
        raise CLIError(
            f"{path}: the features have shape {X.shape}; a 2-d table with a column or more is "
            "needed"
        )
    if X.dtype.kind not in "biuf":
        raise CLIError(f"{path}: the features are not numeric (dtype {X.dtype})")
    X = X.astype(np.float64)
    bad = np.argwhere(~np.isfinite(X))
    if len(bad):
        i, j = bad[0]
        raise CLIError(
            f"{path}: the features hold {X[i, j]} (row {i}, column {j}, the first of "
            f"{len(bad)}); they must be finite numbers"
        )
    return X


def _target_array(t: np.ndarray, path: Path, what: str, task: str | None) -> np.ndarray:
    """Numbers as float64, which must be finite; anything else as labels, and integers past
    float64's exact range where they are labels (:func:`_exact_labels`)."""
    if t.dtype.kind not in "biuf":
        return t.astype(str)
    if t.dtype.kind in "iu" and t.size and max(-int(t.min()), int(t.max())) >= 2**53:
        labels = _exact_labels(t.tolist(), task)
        if labels is not None:
            return labels
    t = t.astype(np.float64)
    if not np.isfinite(t).all():
        i = int(np.flatnonzero(~np.isfinite(t))[0])
        raise CLIError(f"{path}: {what} holds {t[i]} in row {i}; targets must be finite numbers")
    return t


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


def _labels(values: np.ndarray) -> list[str]:
    """Class labels as strings: integral numbers without a decimal point ("3", not "3.0")."""
    if values.dtype.kind == "f":
        return [str(int(v)) if v == int(v) else repr(float(v)) for v in values.tolist()]
    return values.astype(str).tolist()


def _sorted_classes(labels: list[str]) -> list[str]:
    classes = sorted(labels)
    if all(_is_number(c) for c in classes):
        classes.sort(key=float)
    return classes


def class_codes(
    table: Table, classes: Sequence[Sequence[str]] | None = None
) -> tuple[list[list[str]], list[np.ndarray]]:
    """Each target column's class labels and every row's index into them.

    Parameters
    ----------
    table : its targets, one (N,) array per column
    classes : the labels of each column as a model learnt them; default: each column's own
        distinct labels, sorted (by value when all are numbers)

    Returns
    -------
    classes : the labels of each target column
    codes : one (N,) int array per target column, the rows' indices into its labels
    """
    all_classes, all_codes = [], []
    for j, (t, name) in enumerate(zip(table.targets, table.target_names)):
        values, inverse = np.unique(t, return_inverse=True)
        labels = _labels(values)  # one per distinct value, so few
        known = _sorted_classes(labels) if classes is None else list(classes[j])
        index = {c: i for i, c in enumerate(known)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise CLIError(
                f"target column {name!r}{f' of {table.name}' if table.name else ''} holds "
                f"{unknown[0]!r}, a class the model never saw; "
                f"its classes: {', '.join(known)}"
            )
        lookup = np.asarray([index[c] for c in labels], dtype=np.int64)
        all_classes.append(known)
        all_codes.append(lookup[inverse.reshape(-1)])
    return all_classes, all_codes


def infer_task(targets: Sequence[np.ndarray]) -> str:
    """Classification for non-numeric targets or integers with few values, else regression."""
    for t in targets:
        if t.dtype.kind not in "f":
            return "classification"
    few = all(np.all(t == np.round(t)) and np.unique(t).size <= MAX_CLASSES for t in targets)
    return "classification" if few else "regression"


def choose_output(table: Table, task: str, output: str, classes: list[list[str]] | None) -> str:
    """The output function for ``task`` (``output``, or the fitting one for ``"auto"``),
    checked against the targets and, for classification, their ``classes``."""
    names = table.target_names
    if task == "regression":  # read_table has refused targets that are not numbers
        if output not in ("auto", "identity"):
            raise CLIError(
                f"--output {output} does not fit regression; use identity or auto (or "
                "--task classification, for a numeric target of class labels)"
            )
        return "identity"
    for c, name in zip(classes, names):
        if len(c) < 2:
            raise CLIError(
                f"target column {name!r} has a single class ({c[0]!r}); classification needs "
                "two or more (--task regression fits a numeric target)"
            )
    if len(classes) == 1:
        if output == "auto":
            output = "logistic" if len(classes[0]) == 2 else "softmax"
        return output
    wide = [n for c, n in zip(classes, names) if len(c) > 2]
    if wide:
        raise CLIError(
            f"target column {wide[0]!r} has more than two classes; several target "
            "columns must each be binary (or give one target column)"
        )
    if output == "softmax":
        raise CLIError("--output softmax needs one target column; use logistic")
    return "logistic" if output == "auto" else output


def encode_targets(codes: list[np.ndarray], classes: list[list[str]], output: str) -> np.ndarray:
    """The targets ``T`` the network learns from class indices (one (N,) array per column):
    one-hot (N, K) for one column of K > 2 classes or a softmax output, else one 0/1 column
    per (binary) target column."""
    if len(classes) == 1 and (len(classes[0]) > 2 or output == "softmax"):
        return np.eye(len(classes[0]))[codes[0]]
    return np.stack(codes, axis=1).astype(np.float64)


def predicted_codes(Y: np.ndarray, classes: list[list[str]]) -> list[np.ndarray]:
    """Class indices, one (N,) array per target column, from outputs (or targets) ``Y``
    (N, K) encoded as :func:`encode_targets` does: the largest of K one-hot outputs, else
    ``y > 0.5`` in each column."""
    if Y.shape[1] != len(classes):  # one column of K classes, one-hot
        return [np.argmax(Y, axis=1)]
    return [(Y[:, j] > 0.5).astype(np.int64) for j in range(Y.shape[1])]


def decode_outputs(Y: np.ndarray, meta: dict) -> list[np.ndarray]:
    """Network outputs (N, K) back to one column per target: labels or numbers."""
    if meta.get("task") == "classification":
        return [
            np.asarray(c)[i] for c, i in zip(meta["classes"], predicted_codes(Y, meta["classes"]))
        ]
    if meta.get("y_mean") is not None:
        Y = Y * np.asarray(meta["y_std"]) + np.asarray(meta["y_mean"])
    return [Y[:, k] for k in range(Y.shape[1])]


def accuracy(correct: int, n: int) -> dict:
    """The scores of ``correct`` of ``n`` rows classified right (every target column)."""
    return {"accuracy": correct / n, "correct": correct, "n": n}


def classification_metrics(true: list[np.ndarray], predicted: list[np.ndarray]) -> dict:
    """Accuracy of class indices, one (N,) array per target column: rows with every column
    right."""
    hit = np.logical_and.reduce([t == p for t, p in zip(true, predicted)])
    return accuracy(int(hit.sum()), int(hit.size))


def regression_metrics(T: np.ndarray, Y: np.ndarray, names: Sequence[str]) -> dict:
    """R^2 (the model's own rule, :func:`xpmlp.model.r2_score`: averaged over the targets)
    and each target's RMSE and MAE, in its own units, of the predictions ``Y`` (N, K) of the
    targets ``T`` (N, K) named ``names``; taken of both divided by each target's largest
    |value| so that targets near the float range do not overflow."""
    scale = _column_scale(T)
    T, Y = T / scale, Y / scale  # R^2 is the same for each column scaled
    return {
        "r2": float(r2_score(T, Y, xp=array_api_compat.numpy)),
        "rmse": (np.sqrt(((T - Y) ** 2).mean(axis=0)) * scale).tolist(),
        "mae": (np.abs(T - Y).mean(axis=0) * scale).tolist(),
        "names": list(names),
        "n": int(T.shape[0]),
    }


def format_metrics(m: dict) -> str:
    """The scores of :func:`accuracy` or :func:`regression_metrics` as one line of text:
    the errors of each target apart when there are several (their units differ)."""
    if "accuracy" in m:
        return f"accuracy {m['accuracy']:.4f} ({m['correct']}/{m['n']})"
    errors = [f"RMSE {r:.4g}, MAE {a:.4g}" for r, a in zip(m["rmse"], m["mae"])]
    r2 = f"R^2 {m['r2']:.4f}" if m["n"] > 1 else "R^2 undefined for one row"
    if len(errors) == 1:
        return f"{r2}, {errors[0]} (n={m['n']})"
    each = "; ".join(f"{name}: {e}" for name, e in zip(m["names"], errors))
    return f"{r2} (mean over {len(errors)} targets); {each} (n={m['n']})"


# ------------------------------------------------------------------------- encoding


def _standardise(A: np.ndarray, mean: list | None, std: list | None) -> np.ndarray:
    """``(A - mean) / std`` with a sidecar's statistics; ``A`` as is without them."""
    if mean is None:
        return A
    return (A - np.asarray(mean)) / np.asarray(std)


def _column_scale(A: np.ndarray) -> np.ndarray:
    """Each column's largest |value| (1 for a column of zeros): dividing by it first keeps
    squares and sums of values near the float range (1e200) from overflowing."""
    scale = np.abs(A).max(axis=0)
    scale[scale == 0] = 1.0
    return scale


def _mean_std(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and standard deviation (1 for a constant column), taken of the
    column divided by its :func:`_column_scale`."""
    scale = _column_scale(A)
    B = A / scale
    std = B.std(axis=0) * scale
    std[std == 0] = 1.0
    return B.mean(axis=0) * scale, std


def prepare(
    table: Table, *, task: str | None, output: str, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str, dict]:
    """Encode the targets, hold out rows and standardise with the training rows' statistics.

    Returns
    -------
    X, T : (N, D) standardised features, (N, K) targets as the network learns them
    tr, va : row indices of the training and held-out samples (a host permutation of ``seed``)
    output : the network's output function
    meta : the sidecar's content
    """
    task = task or infer_task(table.targets)
    classes, codes = class_codes(table) if task == "classification" else (None, None)
    output = choose_output(table, task, output, classes)
    if classes is None:
        T = np.stack(table.targets, axis=1)
    else:
        T = encode_targets(codes, classes, output)
    N = table.X.shape[0]
    n_val = int(round(validation_fraction * N))
    n_val = max(n_val, 1) if validation_fraction > 0 else 0
    if n_val >= N:
        raise CLIError(f"--validation-fraction {validation_fraction} leaves no training rows")
    order = np.random.default_rng(seed).permutation(N)
    va, tr = order[:n_val], order[n_val:]
    x_mean, x_std = _mean_std(table.X[tr])
    meta = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "xpmlp": __version__,
        "data": table.name,
        "feature_names": table.feature_names,
        "target_names": table.target_names,
        "task": task,
        "classes": classes,
        "x_mean": x_mean.tolist(),
        "x_std": x_std.tolist(),
        "y_mean": None,
        "y_std": None,
    }
    if task == "regression":  # learn standardised targets; predict undoes it
        y_mean, y_std = _mean_std(T[tr])
        meta["y_mean"], meta["y_std"] = y_mean.tolist(), y_std.tolist()
        T = model_targets(T, meta)
    return _standardise(table.X, meta["x_mean"], meta["x_std"]), T, tr, va, output, meta


def model_targets(T: np.ndarray, meta: dict) -> np.ndarray:
    """Regression targets ``T`` (N, K) standardised as the sidecar ``meta`` says."""
    return _standardise(T, meta.get("y_mean"), meta.get("y_std"))


def model_input(net: Any, X: np.ndarray, meta: dict, path: str) -> np.ndarray:
    """A table's features ``X`` (N, D) checked against the network's D and standardised
    as the sidecar ``meta`` says; ``path`` names the table in the error."""
    D = net.layer_sizes[0]
    if X.shape[1] != D:
        raise CLIError(f"{path} has {X.shape[1]} feature columns; the model takes {D}")
    return _standardise(X, meta.get("x_mean"), meta.get("x_std"))


# ------------------------------------------------------------------------- models on disk


def sidecar_path(model: str | Path) -> Path:
    """``model.npz`` -> ``model.npz.cli.json``: the command line's metadata for a model."""
    return Path(f"{model}{SIDECAR_SUFFIX}")


def save_model(net: Any, path: str, meta: dict) -> Path:
    """Write the network with ``net.save`` and the command line's metadata next to it, with
    the SHA-256 of the model file (a side file of another save of it is refused when read):
    the sidecar is written aside first and put in place once the network is saved, so that a
    failure leaves neither file changed (each is replaced in one step)."""
    side = sidecar_path(path)
    model = io.BytesIO()
    net.save(model)
    data = model.getvalue()
    meta = {**meta, "model_sha256": hashlib.sha256(data).hexdigest()}
    items = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items())
    text = ("{\n" + items + "\n}\n").encode("utf-8")
    with replacing(side, lambda f: f.write(text)), replacing(path, lambda f: f.write(data)):
        pass
    return side


def load_model(path: str, backend: str | None, device: str | None) -> tuple[Any, dict]:
    """The network (``xpmlp.load``) and its command-line metadata (``{}`` when absent).

    A bad ``backend`` or ``device`` raises the backend's own error (``ValueError``,
    ``BackendError``) before the file is read; any error of the file names the file.
    """
    resolve(backend, device)
    check_file(Path(path), "a model file saved by xpmlp (.npz)")
    try:
        net = load(path, backend=backend, device=device)
    except (KeyError, ValueError, OSError) as exc:
        why, quoted = one_line(exc), repr(str(path))
        for named in (f"{quoted} is not an xpmlp model file: ", f"{quoted}: "):
            why = why.replace(named, "")  # the file is named once, in front
        if why.startswith(f"{quoted} "):  # "'m.npz' is damaged: ..."
            raise CLIError(f"{path}{why[len(quoted) :]}") from exc
        raise CLIError(f"{path} is not a model saved by xpmlp: {why}") from exc
    side = sidecar_path(path)
    return net, read_sidecar(side, net, Path(path)) if side.is_file() else {}


def _brief(v: Any) -> str:
    """A JSON value for a message: a long string by its start (a digest: its first 12
    digits, as the accepted one is shown), anything else in up to 60 characters."""
    if isinstance(v, str) and len(v) > 24:
        return repr(v[:12] + "...")
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def read_sidecar(side: Path, net: Any, model: Path | None = None) -> dict:
    """The command line's metadata in ``side``, checked against the network it goes with
    (and, from version 2, against the bytes of its file ``model``, where that is a regular
    file); a :class:`CLIError` names the file and the first field that is wrong."""
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except ValueError as exc:  # not UTF-8, not JSON
        raise CLIError(f"{side} is not valid JSON text: {one_line(exc)}") from exc
    if not isinstance(meta, dict):
        raise CLIError(f"{side} holds a JSON {type(meta).__name__}; accepted: an object")

    def need(field: str, ok, accepted: str) -> None:
        if field not in meta or not ok(meta[field]):
            got = _brief(meta[field]) if field in meta else "missing"
            raise CLIError(f"{side}: {field} is {got}; accepted: {accepted}")

    D, K = net.layer_sizes[0], net.layer_sizes[-1]
    need("format", lambda v: v == SIDECAR_FORMAT, repr(SIDECAR_FORMAT))
    need("version", lambda v: type(v) is int and 1 <= v <= SIDECAR_VERSION, "1 or 2")
    if meta["version"] >= 2 and model is not None and model.is_file():
        digest = hashlib.sha256(model.read_bytes()).hexdigest()
        need(
            "model_sha256",
            lambda v: v == digest,
            f"{digest[:12]}..., that of {model.name} (this side file is of another model, or "
            "of another save of it)",
        )
    output = net.output.name  # a regression model's is identity; classes take any
    tasks = TASKS if output == "identity" else [t for t in TASKS if t != "regression"]
    why = "" if output == "identity" else f" (the model's output is {output})"
    need("task", lambda v: v in tasks, " or ".join(map(repr, tasks)) + why)
    need("feature_names", lambda v: _list_of(v, D, str), f"a list of {D} column names")
    need("x_mean", lambda v: _list_of(v, D, float), f"a list of {D} finite numbers")
    need("x_std", lambda v: _list_of(v, D, float, low=0), f"a list of {D} numbers > 0")
    if meta["task"] == "regression":
        need("y_mean", lambda v: _list_of(v, K, float), f"a list of {K} finite numbers")
        need("y_std", lambda v: _list_of(v, K, float, low=0), f"a list of {K} numbers > 0")
        n_targets = K
    else:
        one = f", or one list of {K} labels" if K > 1 else ""
        need(
            "classes",
            lambda v: _classes_fit(v, K),
            f"{K} list(s) of 2 labels{one}, as the model has {K} outputs",
        )
        n_targets = len(meta["classes"])
    need("target_names", lambda v: _list_of(v, n_targets, str), f"a list of {n_targets} names")
    return meta


def _classes_fit(classes: Any, K: int) -> bool:
    """Whether ``classes`` fit K outputs as :func:`encode_targets` lays them out: K binary
    target columns, or one column of K classes (one-hot)."""
    if not isinstance(classes, list):
        return False
    if len(classes) == 1 and K > 1:
        return _list_of(classes[0], K, str)
    return len(classes) == K and all(_list_of(c, 2, str) for c in classes)


def _list_of(v: Any, n: int, kind: type, low: float | None = None) -> bool:
    """Whether ``v`` is a list of ``n`` strings (``kind=str``), or of ``n`` finite numbers
    (``kind=float``), each ``> low`` if given."""
    if not (isinstance(v, list) and len(v) == n):
        return False
    if kind is str:
        return all(isinstance(x, str) for x in v)
    return all(finite_json_number(x) and (low is None or x > low) for x in v)
